//! `dingtalk_robot`: DingTalk custom robot webhook (`/robot/send?access_token=`, optional 加签).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::recipient::{RecipientField, RecipientKind, RecipientShape};
use super::spec::{ActionSpec, Body, Effect, Endpoint, KindSpec, Method, schema};

type Renames = &'static [(&'static str, &'static str)];

const fn send(
    name: &'static str,
    params: fn() -> schemars::Schema,
    msgtype: &'static str,
    renames: Renames,
) -> ActionSpec {
    ActionSpec {
        name,
        effect: Effect::Write,
        params,
        endpoint: Endpoint::Http {
            method: Method::Post,
            path: "/robot/send",
            body: Body::DingtalkMessage { msgtype, renames },
        },
        bucket: "messages",
        per_recipient: None,
        recipient: None,
    }
}

/// A robot posts to the one group its webhook names, so the only person a message can target is a
/// member it mentions: text and markdown to a member mention them in `at.atUserIds` (notified).
/// By user id, not `at_mobiles`: DingTalk matches the mobile as the member registered it, which the
/// E.164 form recipients are normalized to need not be. Links and cards mention nobody: no recipient.
const AT_USER: RecipientField =
    RecipientField { field: "at_user_ids", shape: RecipientShape::List, kind: RecipientKind::UserId };

pub(super) const KIND: KindSpec = KindSpec {
    name: "dingtalk_robot",
    title: "钉钉群机器人 DingTalk group robot",
    // "每个机器人每分钟最多发送20条消息到群里，如果超过20条，会限流10分钟".
    default_rate_limit: "20/min",
    actions: &[
        send("send_text", schema::<DingtalkText>, "text", &[]).sent_to(AT_USER),
        send("send_markdown", schema::<DingtalkMarkdown>, "markdown", &[]).sent_to(AT_USER),
        send("send_link", schema::<DingtalkLink>, "link", &[("message_url", "messageUrl"), ("pic_url", "picUrl")]),
        send(
            "send_action_card",
            schema::<DingtalkActionCard>,
            "actionCard",
            &[
                ("single_title", "singleTitle"),
                ("single_url", "singleURL"),
                ("btn_orientation", "btnOrientation"),
                ("action_url", "actionURL"),
            ],
        ),
        send(
            "send_feed_card",
            schema::<DingtalkFeedCard>,
            "feedCard",
            &[("message_url", "messageURL"), ("pic_url", "picURL")],
        ),
    ],
};

/// Params of `send_text`: a text message to the robot's group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct DingtalkText {
    /// Message text, at most 20,000 characters (our guard; DingTalk states no limit).
    #[schemars(length(min = 1, max = 20000))]
    pub content: String,
    /// Mobile numbers to mention (sent in `at.atMobiles`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_mobiles: Option<Vec<String>>,
    /// User ids to mention (sent in `at.atUserIds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_user_ids: Option<Vec<String>>,
    /// `true`: mention everyone in the group (sent as `at.isAtAll`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_at_all: Option<bool>,
}

/// Params of `send_markdown`: a markdown message (DingTalk's markdown subset).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct DingtalkMarkdown {
    /// Shown in the conversation list.
    #[schemars(length(min = 1))]
    pub title: String,
    /// Markdown text, at most 20,000 characters (our guard).
    #[schemars(length(min = 1, max = 20000))]
    pub text: String,
    /// Mobile numbers to mention (sent in `at.atMobiles`); write `@<mobile>` in `text` to place them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_mobiles: Option<Vec<String>>,
    /// User ids to mention (sent in `at.atUserIds`); write `@<userid>` in `text` to place them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_user_ids: Option<Vec<String>>,
    /// `true`: mention everyone in the group (sent as `at.isAtAll`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_at_all: Option<bool>,
}

/// Params of `send_link`: a link card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct DingtalkLink {
    /// Card title.
    #[schemars(length(min = 1))]
    pub title: String,
    /// Card text.
    #[schemars(length(min = 1))]
    pub text: String,
    /// Page opened when the card is tapped (sent as `messageUrl`).
    #[schemars(length(min = 1))]
    pub message_url: String,
    /// URL of the card's picture (sent as `picUrl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pic_url: Option<String>,
}

/// One button of a multi-button action card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct DingtalkButton {
    /// Button label.
    #[schemars(length(min = 1))]
    pub title: String,
    /// Page the button opens (sent as `actionURL`).
    #[schemars(length(min = 1))]
    pub action_url: String,
}

/// Either `single_title` + `single_url` (one button) or `btns`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [
    {"required": ["single_title", "single_url"], "not": {"required": ["btns"]}},
    {"required": ["btns"], "not": {"anyOf": [{"required": ["single_title"]}, {"required": ["single_url"]}]}}
]))]
/// Params of `send_action_card`: a card with a markdown body and one or more buttons.
pub(super) struct DingtalkActionCard {
    /// Shown in the conversation list.
    #[schemars(length(min = 1))]
    pub title: String,
    /// Card body, markdown.
    #[schemars(length(min = 1))]
    pub text: String,
    /// Label of the single button (sent as `singleTitle`); needs `single_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub single_title: Option<String>,
    /// Page the single button opens (sent as `singleURL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub single_url: Option<String>,
    /// Several buttons instead of the single one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub btns: Option<Vec<DingtalkButton>>,
    /// `"0"`: buttons stacked vertically, `"1"`: side by side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[01]$"))]
    pub btn_orientation: Option<String>,
}

/// Params of `send_feed_card`: a list of link cards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct DingtalkFeedCard {
    /// The cards, at least one.
    #[schemars(length(min = 1))]
    pub links: Vec<DingtalkFeedLink>,
}

/// One card of a feed card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct DingtalkFeedLink {
    /// Card title.
    #[schemars(length(min = 1))]
    pub title: String,
    /// Page opened when the card is tapped (sent as `messageURL`).
    #[schemars(length(min = 1))]
    pub message_url: String,
    /// URL of the card's picture (sent as `picURL`).
    #[schemars(length(min = 1))]
    pub pic_url: String,
}

#[cfg(test)]
mod tests;
