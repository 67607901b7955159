//! `dingtalk_robot`: DingTalk custom robot webhook (`/robot/send?access_token=`, optional 加签).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
    }
}

pub(super) const KIND: KindSpec = KindSpec {
    name: "dingtalk_robot",
    title: "钉钉群机器人 DingTalk group robot",
    // "每个机器人每分钟最多发送20条消息到群里，如果超过20条，会限流10分钟".
    default_rate_limit: "20/min",
    actions: &[
        send("send_text", schema::<DingtalkText>, "text", &[]),
        send("send_markdown", schema::<DingtalkMarkdown>, "markdown", &[]),
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct DingtalkText {
    #[schemars(length(min = 1, max = 20000))]
    pub content: String,
    /// Mobile numbers to mention (sent in `at.atMobiles`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_mobiles: Option<Vec<String>>,
    /// User ids to mention (sent in `at.atUserIds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_user_ids: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_at_all: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct DingtalkMarkdown {
    /// Shown in the conversation list.
    #[schemars(length(min = 1))]
    pub title: String,
    #[schemars(length(min = 1, max = 20000))]
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_mobiles: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_user_ids: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_at_all: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct DingtalkLink {
    #[schemars(length(min = 1))]
    pub title: String,
    #[schemars(length(min = 1))]
    pub text: String,
    #[schemars(length(min = 1))]
    pub message_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pic_url: Option<String>,
}

/// One button of a multi-button action card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct DingtalkButton {
    #[schemars(length(min = 1))]
    pub title: String,
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
pub(super) struct DingtalkActionCard {
    #[schemars(length(min = 1))]
    pub title: String,
    #[schemars(length(min = 1))]
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub single_title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub single_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub btns: Option<Vec<DingtalkButton>>,
    /// `"0"`: buttons stacked vertically, `"1"`: side by side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[01]$"))]
    pub btn_orientation: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct DingtalkFeedCard {
    #[schemars(length(min = 1))]
    pub links: Vec<DingtalkFeedLink>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct DingtalkFeedLink {
    #[schemars(length(min = 1))]
    pub title: String,
    #[schemars(length(min = 1))]
    pub message_url: String,
    #[schemars(length(min = 1))]
    pub pic_url: String,
}

#[cfg(test)]
mod tests;
