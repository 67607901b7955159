//! `wecom_robot`: WeCom group robot webhook (`/cgi-bin/webhook/send?key=`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::recipient::{RecipientField, RecipientKind, RecipientShape};
use super::spec::{ActionSpec, Body, Effect, Endpoint, KindSpec, Method, schema};

const fn message(msgtype: &'static str) -> Endpoint {
    Endpoint::Http { method: Method::Post, path: "/cgi-bin/webhook/send", body: Body::Message { msgtype } }
}

/// A robot posts to the one group its webhook key names, so the only person a message can target is
/// a member it mentions: `send_text` to a member is the text mentioning them (they are notified).
/// By userid, not `mentioned_mobile_list`: WeCom matches the mobile as the member registered it,
/// which the E.164 form recipients are normalized to need not be. Markdown mentions are written in
/// the content (`<@userid>`), and images, news and files mention nobody: those have no recipient.
const MENTIONED: RecipientField =
    RecipientField { field: "mentioned_list", shape: RecipientShape::List, kind: RecipientKind::UserId };

pub(super) const KIND: KindSpec = KindSpec {
    name: "wecom_robot",
    title: "企业微信群机器人 WeCom group robot",
    // WeCom: "每个机器人发送的消息不能超过20条/分钟".
    default_rate_limit: "20/min",
    actions: &[
        ActionSpec {
            name: "send_text",
            effect: Effect::Write,
            params: schema::<SendText>,
            endpoint: message("text"),
            bucket: "messages",
            per_recipient: None,
            recipient: Some(MENTIONED),
        },
        ActionSpec {
            name: "send_markdown",
            effect: Effect::Write,
            params: schema::<SendMarkdown>,
            endpoint: message("markdown"),
            bucket: "messages",
            per_recipient: None,
            recipient: None,
        },
        ActionSpec {
            name: "send_image",
            effect: Effect::Write,
            params: schema::<SendImage>,
            endpoint: message("image"),
            bucket: "messages",
            per_recipient: None,
            recipient: None,
        },
        ActionSpec {
            name: "send_news",
            effect: Effect::Write,
            params: schema::<SendNews>,
            endpoint: message("news"),
            bucket: "messages",
            per_recipient: None,
            recipient: None,
        },
        ActionSpec {
            name: "send_file",
            effect: Effect::Write,
            params: schema::<SendFile>,
            endpoint: message("file"),
            bucket: "messages",
            per_recipient: None,
            recipient: None,
        },
        ActionSpec {
            name: "upload_file",
            effect: Effect::Write,
            params: schema::<UploadFile>,
            endpoint: Endpoint::Http {
                method: Method::Post,
                path: "/cgi-bin/webhook/upload_media",
                body: Body::Upload { field: "media", media_type: "file" },
            },
            bucket: "uploads",
            per_recipient: None,
            recipient: None,
        },
    ],
};

/// Params of `send_text`: a text message (`text`) to the robot's group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendText {
    /// At most 2048 bytes of UTF-8 (the connector checks bytes; the schema can only count characters).
    #[schemars(length(min = 1, max = 2048))]
    pub content: String,
    /// User ids to mention; `@all` mentions everyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mentioned_list: Option<Vec<String>>,
    /// Phone numbers of members to mention; `@all` mentions everyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mentioned_mobile_list: Option<Vec<String>>,
}

/// Params of `send_markdown`: a markdown message (`markdown`), WeCom's markdown subset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMarkdown {
    /// At most 4096 bytes of UTF-8 (the connector checks bytes; the schema can only count characters).
    #[schemars(length(min = 1, max = 4096))]
    pub content: String,
}

/// Params of `send_image`: one image (`image`) to the robot's group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendImage {
    /// Base64 of a JPG or PNG of at most 2 MB.
    #[schemars(length(min = 1, max = 2796204))]
    pub base64: String,
    /// MD5 (hex) of the raw image; computed when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[0-9a-fA-F]{32}$"))]
    pub md5: Option<String>,
}

/// Params of `send_news`: a news message (`news`) of link cards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendNews {
    /// Link cards, 1 to 8 (WeCom answers 45008 otherwise).
    #[schemars(length(min = 1, max = 8))]
    pub articles: Vec<Article>,
}

/// One link card of a news message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Article {
    /// WeCom shows the first 128 bytes and cuts the rest (docs/providers/wecom.md#robot-news).
    #[schemars(length(min = 1))]
    pub title: String,
    /// WeCom shows the first 512 bytes and cuts the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Page opened when the card is tapped.
    #[schemars(length(min = 1))]
    pub url: String,
    /// URL of the card's picture (JPG or PNG; WeCom suggests 1068x455 large, 150x150 small).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub picurl: Option<String>,
}

/// Params of `send_file`: a file (`file`) uploaded before with `upload_file`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendFile {
    /// From `upload_file`; valid 3 days, only for the robot that uploaded it.
    #[schemars(length(min = 1))]
    pub media_id: String,
}

/// Params of `upload_file`: uploads a file for `send_file` (`upload_media`, type `file`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadFile {
    /// Name the group members see, with extension; at most 255 characters.
    #[schemars(length(min = 1, max = 255))]
    pub filename: String,
    /// The file, base64; 5 B to 20 MB once decoded. The result carries its `media_id`.
    #[schemars(length(min = 8))]
    pub content_base64: String,
}
