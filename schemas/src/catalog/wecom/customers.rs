//! 客户联系 customer-contact params (docs/providers/wecom.md#customer-contact). Paged reads return `next_cursor`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `GET externalcontact/get?external_userid=&cursor=` (the cursor pages `follow_user`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetCustomer {
    /// The customer's external userid (not a member's userid).
    #[schemars(length(min = 1))]
    pub external_userid: String,
    /// Cursor of the next page of `follow_user`, as the previous answer's `next_cursor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub cursor: Option<String>,
}

/// Params of `batch_get_customers`: the customers of up to 100 members, one page at a time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchGetCustomers {
    /// Userids of the members whose customers are read, 1 to 100.
    #[schemars(length(min = 1, max = 100))]
    pub userid_list: Vec<String>,
    /// Cursor of the next page, as the previous answer's `next_cursor`; absent for the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub cursor: Option<String>,
    /// Page size, 1 to 100 (WeCom's default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub limit: Option<u32>,
}

/// Params of `get_groupchat`: details and members of one customer group chat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetGroupchat {
    /// Id of the customer group chat.
    #[schemars(length(min = 1))]
    pub chat_id: String,
    /// 1: also answer each member's name; 0 (default): not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 1))]
    pub need_name: Option<u8>,
}

/// Which group owners are counted: `{"userid_list": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OwnerFilter {
    /// Userids of the group owners to count, 1 to 100.
    #[schemars(length(min = 1, max = 100))]
    pub userid_list: Vec<String>,
}

/// Params of `get_groupchat_stat_by_owner`: customer group statistics per owner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupchatStatByOwner {
    /// UNIX seconds of the first day's 00:00 (at most 180 days back).
    pub day_begin_time: i64,
    /// UNIX seconds of the last day's 00:00.
    pub day_end_time: i64,
    /// The owners whose groups are counted.
    pub owner_filter: OwnerFilter,
    /// Sort key: 1 new groups (default), 2 groups in all, 3 new members, 4 members in all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4))]
    pub order_by: Option<u8>,
    /// 1: ascending; 0 (default): descending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 1))]
    pub order_asc: Option<u8>,
    /// Records to skip (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u32>,
    /// Page size, 1 to 1,000 (WeCom's default 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub limit: Option<u32>,
}

/// Params of `get_groupchat_stat_by_day`: customer group statistics per day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupchatStatByDay {
    /// UNIX seconds of the first day's 00:00.
    pub day_begin_time: i64,
    /// UNIX seconds of the last day's 00:00.
    pub day_end_time: i64,
    /// The owners whose groups are counted.
    pub owner_filter: OwnerFilter,
}

/// One page of moments (a span of at most 30 days).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListMoments {
    /// UNIX seconds of the earliest moment to list.
    pub start_time: i64,
    /// UNIX seconds of the latest moment to list, at most 30 days after `start_time`.
    pub end_time: i64,
    /// Userid of the member who created the moments; absent: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator: Option<String>,
    /// 0: posted by the corp, 1: by members themselves, 2 (default): all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 2))]
    pub filter_type: Option<u8>,
    /// Cursor of the next page, as the previous answer's `next_cursor`; absent for the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub cursor: Option<String>,
    /// Page size, 1 to 20 (WeCom's default 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 20))]
    pub limit: Option<u32>,
}

/// Params of `get_moment_tasks`: which members were asked to post a corp moment, and whether they did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MomentTasks {
    /// Id of a moment the corp created (members' own moments have no tasks).
    #[schemars(length(min = 1))]
    pub moment_id: String,
    /// Cursor of the next page, as the previous answer's `next_cursor`; absent for the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub cursor: Option<String>,
    /// Page size, 1 to 1,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub limit: Option<u32>,
}

/// `get_moment_customer_list` (visible to) and `get_moment_send_result` (visible after posting).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MomentUserPage {
    /// Id of the moment.
    #[schemars(length(min = 1))]
    pub moment_id: String,
    /// Userid of the member who posted it.
    #[schemars(length(min = 1))]
    pub userid: String,
    /// Cursor of the next page, as the previous answer's `next_cursor`; absent for the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub cursor: Option<String>,
    /// Page size, 1 to 5,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 5000))]
    pub limit: Option<u32>,
}

/// Params of `get_moment_comments`: likes and comments on one member's post of a moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MomentComments {
    /// Id of the moment.
    #[schemars(length(min = 1))]
    pub moment_id: String,
    /// Userid of the member whose post is read.
    #[schemars(length(min = 1))]
    pub userid: String,
}

/// Who a mass message (`add_msg_template`) goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChatType {
    /// Customers, one by one (WeCom's default).
    Single,
    /// Customer group chats.
    Group,
}

/// Text of a customer message: `{"content"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TextContent {
    /// Message text, at most 4,000 bytes.
    #[schemars(length(min = 1, max = 4000))]
    pub content: String,
}

/// Params of `add_msg_template` (企业群发): a mass message each sending member confirms first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMsgTemplate {
    /// Send to customers one by one or to customer group chats.
    pub chat_type: ChatType,
    /// External userids of the customers, at most 10,000 (`single` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_userid: Option<Vec<String>>,
    /// Userid of the member who sends it; required for `group`; for `single`, this or `external_userid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// Text of the message.
    pub text: TextContent,
    /// `[{"msgtype": "image"|"link"|"miniprogram"|"video"|"file", ...}]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 9))]
    pub attachments: Option<Vec<Map<String, Value>>>,
}

/// Params of `send_welcome_msg`: a new customer's welcome, within 20 s of the add-customer event, once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendWelcomeMsg {
    /// The `welcome_code` of the add-customer event, valid 20 seconds and usable once.
    #[schemars(length(min = 1))]
    pub welcome_code: String,
    /// Text of the welcome message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<TextContent>,
    /// Attachments, at most 9: `[{"msgtype": "image"|"link"|"miniprogram"|"video"|"file", ...}]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 9))]
    pub attachments: Option<Vec<Map<String, Value>>>,
}

/// Params of `add_group_welcome_template`: a welcome message for customer group chats; the answer
/// carries its `template_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddGroupWelcomeTemplate {
    /// Text of the welcome message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<TextContent>,
    /// Image: `{"media_id"}` or `{"pic_url"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Map<String, Value>>,
    /// Link card: `{"title", "url", "picurl"?, "desc"?}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<Map<String, Value>>,
    /// Mini program card: `{"title", "pic_media_id", "appid", "page"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub miniprogram: Option<Map<String, Value>>,
    /// Only old third-party multi-app suites need it; self-built apps leave it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agentid: Option<u64>,
    /// 1 (default): tell the members to apply it to their groups; 0: do not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 1))]
    pub notify: Option<u8>,
}

/// Params of `edit_group_welcome_template`: overwrites the given parts of a group welcome message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EditGroupWelcomeTemplate {
    /// Id of the welcome message, from `add_group_welcome_template`.
    #[schemars(length(min = 1))]
    pub template_id: String,
    /// New text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<TextContent>,
    /// New image: `{"media_id"}` or `{"pic_url"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Map<String, Value>>,
    /// New link card: `{"title", "url", "picurl"?, "desc"?}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<Map<String, Value>>,
    /// New mini program card: `{"title", "pic_media_id", "appid", "page"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub miniprogram: Option<Map<String, Value>>,
    /// Only old third-party multi-app suites need it; self-built apps leave it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agentid: Option<u64>,
}

/// Params naming one group welcome message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateId {
    /// Id of the welcome message, from `add_group_welcome_template`.
    #[schemars(length(min = 1))]
    pub template_id: String,
}

/// 「联系我」: `type` 1 one member / 2 several, `scene` 1 mini program / 2 QR code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddContactWay {
    /// 1: one member, 2: several members.
    #[schemars(range(min = 1, max = 2))]
    pub r#type: u8,
    /// 1: contact from a mini program, 2: by QR code.
    #[schemars(range(min = 1, max = 2))]
    pub scene: u8,
    /// Style of the mini-program button (`scene` 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub style: Option<u32>,
    /// Note for the corp's own use, at most 30 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 30))]
    pub remark: Option<String>,
    /// Whether customers are added without the member's confirmation (WeCom's default `true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_verify: Option<bool>,
    /// The corp's channel tag, at most 30 characters, echoed in the customer's `follow_user`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 30))]
    pub state: Option<String>,
    /// Userids of the members who use it; exactly one for `type` 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100))]
    pub user: Option<Vec<String>>,
    /// Department ids whose members use it (`type` 2 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100))]
    pub party: Option<Vec<u64>>,
    /// `true`: a temporary-session QR code (default `false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_temp: Option<bool>,
    /// Seconds the temporary QR code is valid (`is_temp` only): default 7 days, at most 14.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1209600))]
    pub expires_in: Option<u32>,
    /// Seconds the temporary session lasts after adding (`is_temp` only): default 24 hours, at most 14 days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub chat_expires_in: Option<u32>,
    /// Unionid of the only customer allowed the temporary session (`is_temp` only); absent: anyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unionid: Option<String>,
    /// Closing message (结束语) sent when a temporary session ends: `text`, `image`, `link`, `miniprogram`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conclusions: Option<Map<String, Value>>,
}

/// Params naming one 「联系我」 contact way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigId {
    /// The contact way's `config_id`, from `add_contact_way`.
    #[schemars(length(min = 1))]
    pub config_id: String,
}

/// `config_id` and the fields to overwrite (lists are replaced whole).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateContactWay {
    /// The contact way's `config_id`, from `add_contact_way`.
    #[schemars(length(min = 1))]
    pub config_id: String,
    /// Note for the corp's own use, at most 30 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 30))]
    pub remark: Option<String>,
    /// Whether customers are added without the member's confirmation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_verify: Option<bool>,
    /// Style of the mini-program button.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub style: Option<u32>,
    /// The corp's channel tag, at most 30 characters, echoed in the customer's `follow_user`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 30))]
    pub state: Option<String>,
    /// Userids of the members who use it (replaces the list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100))]
    pub user: Option<Vec<String>>,
    /// Department ids whose members use it (replaces the list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100))]
    pub party: Option<Vec<u64>>,
    /// Seconds the temporary QR code is valid, at most 14 days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1209600))]
    pub expires_in: Option<u32>,
    /// Seconds the temporary session lasts after adding, at most 14 days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub chat_expires_in: Option<u32>,
    /// Unionid of the only customer allowed the temporary session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unionid: Option<String>,
    /// Closing message sent when a temporary session ends: `text`, `image`, `link`, `miniprogram`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conclusions: Option<Map<String, Value>>,
}

/// Params of `close_temp_chat`: ends a temporary session with a customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseTempChat {
    /// Userid of the member in the session.
    #[schemars(length(min = 1))]
    pub userid: String,
    /// External userid of the customer.
    #[schemars(length(min = 1))]
    pub external_userid: String,
}
