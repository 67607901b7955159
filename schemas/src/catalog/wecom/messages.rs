//! 应用消息 and 群聊会话 params (docs/providers/wecom.md#app-messages, #appchat).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The message types of `message/send`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AppMsgType {
    /// `text`: `{"content"}`, at most 2,048 bytes (longer is cut by WeCom).
    Text,
    /// `image`: `{"media_id"}` of an uploaded image.
    Image,
    /// `voice`: `{"media_id"}` of an uploaded AMR voice clip.
    Voice,
    /// `video`: `{"media_id", "title", "description"}` of an uploaded video.
    Video,
    /// `file`: `{"media_id"}` of an uploaded file.
    File,
    /// `textcard`: `{"title", "description", "url", "btntxt"}`, a card opening `url`.
    Textcard,
    /// `news`: `{"articles": [...]}`, 1 to 8 link cards (`title`, `url`, `description`, `picurl`).
    News,
    /// `mpnews`: `{"articles": [...]}`, 1 to 8 articles stored by WeCom (`title`, `thumb_media_id`, `content`).
    Mpnews,
    /// `markdown`: `{"content"}` in WeCom's markdown subset, at most 2,048 bytes.
    Markdown,
}

/// The message types of `appchat/send` (no voice or video in the catalog).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AppchatMsgType {
    /// `text`: `{"content"}`, at most 2,048 bytes.
    Text,
    /// `image`: `{"media_id"}` of an uploaded image.
    Image,
    /// `file`: `{"media_id"}` of an uploaded file.
    File,
    /// `textcard`: `{"title", "description", "url", "btntxt"}`, a card opening `url`.
    Textcard,
    /// `news`: `{"articles": [...]}`, 1 to 8 link cards.
    News,
    /// `mpnews`: `{"articles": [...]}`, 1 to 8 articles stored by WeCom.
    Mpnews,
    /// `markdown`: `{"content"}` in WeCom's markdown subset.
    Markdown,
}

/// `msgtype` plus the object of that name (`{"content"}` for text and markdown, `{"media_id"}` for
/// image, voice and file, ...). `agentid` defaults to the config's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendAppMessage {
    /// Id of the self-built app sending the message; the config's default `agentid` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agentid: Option<u64>,
    /// Member ids joined by `|` (`"a|b"`, at most 1,000), or `"@all"` for every member the app sees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub touser: Option<String>,
    /// Department ids joined by `|`, at most 100; ignored when `touser` is `@all`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub toparty: Option<String>,
    /// Tag ids joined by `|`, at most 100; ignored when `touser` is `@all`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub totag: Option<String>,
    /// Message type; the field of that name must hold the message object.
    pub msgtype: AppMsgType,
    /// Object of a `text` message: `{"content"}`, at most 2,048 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<Map<String, Value>>,
    /// Object of an `image` message: `{"media_id"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Map<String, Value>>,
    /// Object of a `voice` message: `{"media_id"}` of an AMR clip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<Map<String, Value>>,
    /// Object of a `video` message: `{"media_id", "title"?, "description"?}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<Map<String, Value>>,
    /// Object of a `file` message: `{"media_id"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<Map<String, Value>>,
    /// Object of a `textcard` message: `{"title", "description", "url", "btntxt"?}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub textcard: Option<Map<String, Value>>,
    /// Object of a `news` message: `{"articles": [{"title", "url", "description"?, "picurl"?}]}`, 1 to 8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub news: Option<Map<String, Value>>,
    /// Object of an `mpnews` message: `{"articles": [{"title", "thumb_media_id", "content", ...}]}`, 1 to 8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mpnews: Option<Map<String, Value>>,
    /// Object of a `markdown` message: `{"content"}`, at most 2,048 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub markdown: Option<Map<String, Value>>,
    /// 1: confidential, not shareable and shown with a watermark; 0 (default): shareable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 1))]
    pub safe: Option<u8>,
    /// 1: translate ids in the content (third-party apps only; self-built apps ignore it); default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 1))]
    pub enable_id_trans: Option<u8>,
    /// 1: refuse a message identical to one sent within `duplicate_check_interval`; default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 1))]
    pub enable_duplicate_check: Option<u8>,
    /// Window of the duplicate check, seconds; default 1,800, at most 4 hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 14400))]
    pub duplicate_check_interval: Option<u32>,
}

/// Params of `recall_app_message`: recalls an app message within 24 hours of sending.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecallAppMessage {
    /// The `msgid` the send answered.
    #[schemars(length(min = 1))]
    pub msgid: String,
}

/// Params of `create_appchat`: a group chat (群聊会话) of the app's visible members.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAppchat {
    /// Chat name, at most 50 characters (WeCom cuts longer names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 50))]
    pub name: Option<String>,
    /// Member id of the owner; absent: WeCom picks one of `userlist`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Member ids of the chat, 2 to 2,000, the owner included.
    #[schemars(length(min = 2, max = 2000))]
    pub userlist: Vec<String>,
    /// `[0-9a-zA-Z]`, ≤ 32; chosen by WeCom when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32), regex(pattern = "^[0-9a-zA-Z]+$"))]
    pub chatid: Option<String>,
}

/// Params of `update_appchat`: changes a chat's name, owner or members.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAppchat {
    /// Id of the chat, from `create_appchat`.
    #[schemars(length(min = 1, max = 32))]
    pub chatid: String,
    /// New chat name, at most 50 characters; absent: unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 50))]
    pub name: Option<String>,
    /// Member id of the new owner; absent: unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Member ids to add.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_user_list: Option<Vec<String>>,
    /// Member ids to remove.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub del_user_list: Option<Vec<String>>,
}

/// `GET appchat/get?chatid=`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatId {
    /// Id of the chat, from `create_appchat`.
    #[schemars(length(min = 1, max = 32))]
    pub chatid: String,
}

/// `msgtype` plus the object of that name, as for `send_app_message`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendAppchatMessage {
    /// Id of the chat, from `create_appchat`.
    #[schemars(length(min = 1, max = 32))]
    pub chatid: String,
    /// Message type; the field of that name must hold the message object.
    pub msgtype: AppchatMsgType,
    /// Object of a `text` message: `{"content"}`, at most 2,048 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<Map<String, Value>>,
    /// Object of an `image` message: `{"media_id"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Map<String, Value>>,
    /// Object of a `file` message: `{"media_id"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<Map<String, Value>>,
    /// Object of a `textcard` message: `{"title", "description", "url", "btntxt"?}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub textcard: Option<Map<String, Value>>,
    /// Object of a `news` message: `{"articles": [...]}`, 1 to 8 articles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub news: Option<Map<String, Value>>,
    /// Object of an `mpnews` message: `{"articles": [...]}`, 1 to 8 articles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mpnews: Option<Map<String, Value>>,
    /// Object of a `markdown` message: `{"content"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub markdown: Option<Map<String, Value>>,
    /// 1: confidential, not shareable and shown with a watermark; 0 (default): shareable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 1))]
    pub safe: Option<u8>,
}
