//! `wecom`: the WeCom (企业微信) application API (`https://qyapi.weixin.qq.com/cgi-bin/`,
//! `?access_token=`), docs/providers/wecom.md.
//!
//! Every entry's bucket is its path: WeCom limits calls per corp *and API* (10,000/min), so each
//! API gets its own bucket. Which secret's token a call needs follows from its path ([`AREAS`]),
//! so a new action needs no code. Paths beyond the common summary are the official names:
//! `externalcontact/groupchat/statistic_group_by_day`, `externalcontact/get_moment_task`,
//! `externalcontact/get_moment_customer_list`, `externalcontact/get_moment_send_result`,
//! `externalcontact/get_moment_comments`.

mod contacts;
mod customers;
mod media;
mod messages;
mod oa;

use schemars::JsonSchema;

use super::recipient::{RecipientField, RecipientKind, RecipientShape};
use super::spec::{ActionSpec, Body, Effect, Endpoint, KindSpec, Method, RecipientLimit, schema};

pub use contacts::*;
pub use customers::*;
pub use media::*;
pub use messages::*;
pub use oa::*;

/// Which of a corp's secrets an API needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WecomCredential {
    /// 通讯录同步 `contacts_secret`.
    Contacts,
    /// 客户联系 `external_contact_secret`, falling back to `app_secret`.
    ExternalContact,
    /// The self-built app's `app_secret`.
    App,
}

/// An area of the API: the path prefix, the secret its calls need, and whether the config's default
/// `agentid` is added to params without one.
#[derive(Debug, Clone, Copy)]
pub struct WecomArea {
    /// Path prefix the area covers, such as `/cgi-bin/user/`; the first matching area wins.
    pub prefix: &'static str,
    /// The secret whose access token the area's calls carry.
    pub credential: WecomCredential,
    /// Whether the config's default `agentid` is filled into params that lack one.
    pub default_agentid: bool,
}

/// Every area; paths that match none use the app secret.
pub const AREAS: &[WecomArea] = &[
    WecomArea { prefix: "/cgi-bin/department/", credential: WecomCredential::Contacts, default_agentid: false },
    WecomArea { prefix: "/cgi-bin/user/", credential: WecomCredential::Contacts, default_agentid: false },
    WecomArea {
        prefix: "/cgi-bin/externalcontact/",
        credential: WecomCredential::ExternalContact,
        default_agentid: false,
    },
    WecomArea { prefix: "/cgi-bin/message/send", credential: WecomCredential::App, default_agentid: true },
];

/// The area of `path` (the app secret, no default agentid, when none matches).
pub fn wecom_area(path: &str) -> WecomArea {
    AREAS.iter().find(|a| path.starts_with(a.prefix)).copied().unwrap_or(WecomArea {
        prefix: "/cgi-bin/",
        credential: WecomCredential::App,
        default_agentid: false,
    })
}

/// One catalog entry; the bucket is the path (WeCom's per-API limit).
const fn entry<T: JsonSchema>(
    name: &'static str,
    effect: Effect,
    method: Method,
    path: &'static str,
    body: Body,
) -> ActionSpec {
    ActionSpec {
        name,
        effect,
        params: schema::<T>,
        endpoint: Endpoint::Http { method, path, body },
        bucket: path,
        per_recipient: None,
        recipient: None,
    }
}

/// WeCom drops app messages past 30 a minute to one member from one app, without an error
/// (docs/providers/wecom.md#rate-limits); a department or tag counts as one recipient, as its members are not known
/// here. Its other cap, 1,000 an hour, is not held: limits are paced, and pacing to it would space
/// a member's messages 3.6 s apart, while 30 a minute paced reaches it only for a member messaged
/// every two seconds for an hour.
const TO_MEMBERS: RecipientLimit =
    RecipientLimit { fields: &["touser", "toparty", "totag"], scope: &["agentid"], rate: "30/min" };
/// A chat's messages reach each of its members, whom the worker does not know: each chat is held to
/// the members' 30 a minute, well inside WeCom's 200 a minute per member in groups.
const TO_CHAT: RecipientLimit = RecipientLimit { fields: &["chatid"], scope: &[], rate: "30/min" };

/// An app message's recipients are members named in `touser` (`|`-joined userids). `toparty` and
/// `totag` stay campaign-wide: a department or tag is a group whose members are not known here, not
/// one recipient. `send_appchat_message` has no recipient field: its `chatid` is a chat, whose
/// members each get every message, so there is no one person to fill in or to cap.
const TO_MEMBER: RecipientField =
    RecipientField { field: "touser", shape: RecipientShape::Joined('|'), kind: RecipientKind::UserId };

const R: Effect = Effect::Read;
const W: Effect = Effect::Write;
const GET: Method = Method::Get;
const POST: Method = Method::Post;
const JSON: Body = Body::Params;
const QUERY: Body = Body::Query { renames: &[] };

#[rustfmt::skip]
pub(super) const KIND: KindSpec = KindSpec {
    name: "wecom",
    title: "企业微信应用 WeCom application API",
    // "每企业调用单个cgi/api不可超过1万次/分" (docs/providers/wecom.md#rate-limits), per bucket = per API.
    default_rate_limit: "10000/min",
    actions: &[
        // 通讯录 contacts (contacts_secret)
        entry::<ListDepartments>("list_departments", R, GET, "/cgi-bin/department/list", QUERY),
        entry::<ListDepartmentIds>("list_department_ids", R, GET, "/cgi-bin/department/simplelist", QUERY),
        entry::<GetDepartment>("get_department", R, GET, "/cgi-bin/department/get", QUERY),
        entry::<CreateDepartment>("create_department", W, POST, "/cgi-bin/department/create", JSON),
        entry::<UpdateDepartment>("update_department", W, POST, "/cgi-bin/department/update", JSON),
        entry::<DeleteDepartment>("delete_department", W, GET, "/cgi-bin/department/delete", QUERY),
        entry::<ListMemberIds>("list_member_ids", R, POST, "/cgi-bin/user/list_id", JSON),
        entry::<Member>("create_member", W, POST, "/cgi-bin/user/create", JSON),
        entry::<UserId>("get_member", R, GET, "/cgi-bin/user/get", QUERY),
        entry::<Member>("update_member", W, POST, "/cgi-bin/user/update", JSON),
        entry::<UserId>("delete_member", W, GET, "/cgi-bin/user/delete", QUERY),
        entry::<BatchDeleteMembers>("batch_delete_members", W, POST, "/cgi-bin/user/batchdelete", JSON),
        entry::<DepartmentMembers>("list_department_members", R, GET, "/cgi-bin/user/simplelist", QUERY),
        entry::<DepartmentMembers>("list_department_member_details", R, GET, "/cgi-bin/user/list", QUERY),
        // 素材管理 temporary media (app_secret); the media_id serves messages and avatars.
        entry::<UploadMedia>("upload_media", W, POST, "/cgi-bin/media/upload", Body::UploadTyped { field: "media" }),
        entry::<UploadImage>("upload_image", W, POST, "/cgi-bin/media/uploadimg", Body::UploadTyped { field: "media" }),
        // 应用消息 application messages (app_secret)
        entry::<SendAppMessage>("send_app_message", W, POST, "/cgi-bin/message/send", JSON).limited_per_recipient(TO_MEMBERS).sent_to(TO_MEMBER),
        entry::<RecallAppMessage>("recall_app_message", W, POST, "/cgi-bin/message/recall", JSON),
        // 群聊会话 appchat (app_secret)
        entry::<CreateAppchat>("create_appchat", W, POST, "/cgi-bin/appchat/create", JSON),
        entry::<UpdateAppchat>("update_appchat", W, POST, "/cgi-bin/appchat/update", JSON),
        entry::<ChatId>("get_appchat", R, GET, "/cgi-bin/appchat/get", QUERY),
        entry::<SendAppchatMessage>("send_appchat_message", W, POST, "/cgi-bin/appchat/send", JSON).limited_per_recipient(TO_CHAT),
        // 客户联系 customer contact (external_contact_secret, else app_secret)
        entry::<GetCustomer>("get_customer", R, GET, "/cgi-bin/externalcontact/get", QUERY),
        entry::<BatchGetCustomers>("batch_get_customers", R, POST, "/cgi-bin/externalcontact/batch/get_by_user", JSON),
        entry::<GetGroupchat>("get_groupchat", R, POST, "/cgi-bin/externalcontact/groupchat/get", JSON),
        entry::<GroupchatStatByOwner>("get_groupchat_stat_by_owner", R, POST, "/cgi-bin/externalcontact/groupchat/statistic", JSON),
        entry::<GroupchatStatByDay>("get_groupchat_stat_by_day", R, POST, "/cgi-bin/externalcontact/groupchat/statistic_group_by_day", JSON),
        entry::<ListMoments>("list_moments", R, POST, "/cgi-bin/externalcontact/get_moment_list", JSON),
        entry::<MomentTasks>("get_moment_tasks", R, POST, "/cgi-bin/externalcontact/get_moment_task", JSON),
        entry::<MomentUserPage>("get_moment_customer_list", R, POST, "/cgi-bin/externalcontact/get_moment_customer_list", JSON),
        entry::<MomentUserPage>("get_moment_send_result", R, POST, "/cgi-bin/externalcontact/get_moment_send_result", JSON),
        entry::<MomentComments>("get_moment_comments", R, POST, "/cgi-bin/externalcontact/get_moment_comments", JSON),
        entry::<AddMsgTemplate>("add_msg_template", W, POST, "/cgi-bin/externalcontact/add_msg_template", JSON),
        entry::<SendWelcomeMsg>("send_welcome_msg", W, POST, "/cgi-bin/externalcontact/send_welcome_msg", JSON),
        entry::<AddGroupWelcomeTemplate>("add_group_welcome_template", W, POST, "/cgi-bin/externalcontact/group_welcome_template/add", JSON),
        entry::<EditGroupWelcomeTemplate>("edit_group_welcome_template", W, POST, "/cgi-bin/externalcontact/group_welcome_template/edit", JSON),
        entry::<TemplateId>("get_group_welcome_template", R, POST, "/cgi-bin/externalcontact/group_welcome_template/get", JSON),
        entry::<TemplateId>("delete_group_welcome_template", W, POST, "/cgi-bin/externalcontact/group_welcome_template/del", JSON),
        entry::<AddContactWay>("add_contact_way", W, POST, "/cgi-bin/externalcontact/add_contact_way", JSON),
        entry::<ConfigId>("get_contact_way", R, POST, "/cgi-bin/externalcontact/get_contact_way", JSON),
        entry::<UpdateContactWay>("update_contact_way", W, POST, "/cgi-bin/externalcontact/update_contact_way", JSON),
        entry::<ConfigId>("delete_contact_way", W, POST, "/cgi-bin/externalcontact/del_contact_way", JSON),
        entry::<CloseTempChat>("close_temp_chat", W, POST, "/cgi-bin/externalcontact/close_temp_chat", JSON),
        // 日程 calendars and schedules (app_secret); `agentid` stays beside the wrapped object.
        entry::<CreateCalendar>("create_calendar", W, POST, "/cgi-bin/oa/calendar/add", Body::Wrapped { field: "calendar", outside: &["agentid"] }),
        entry::<UpdateCalendar>("update_calendar", W, POST, "/cgi-bin/oa/calendar/update", Body::Wrapped { field: "calendar", outside: &[] }),
        entry::<GetCalendars>("get_calendars", R, POST, "/cgi-bin/oa/calendar/get", JSON),
        entry::<CalId>("delete_calendar", W, POST, "/cgi-bin/oa/calendar/del", JSON),
        entry::<CreateSchedule>("create_schedule", W, POST, "/cgi-bin/oa/schedule/add", Body::Wrapped { field: "schedule", outside: &["agentid"] }),
        entry::<UpdateSchedule>("update_schedule", W, POST, "/cgi-bin/oa/schedule/update", Body::Wrapped { field: "schedule", outside: &[] }),
        entry::<GetSchedules>("get_schedules", R, POST, "/cgi-bin/oa/schedule/get", JSON),
        entry::<ScheduleId>("cancel_schedule", W, POST, "/cgi-bin/oa/schedule/del", JSON),
        entry::<CalendarSchedules>("list_calendar_schedules", R, POST, "/cgi-bin/oa/schedule/get_by_calendar", JSON),
    ],
};

#[cfg(test)]
mod tests;
