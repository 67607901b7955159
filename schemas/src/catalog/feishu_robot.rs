//! `feishu_robot`: Feishu custom bot webhook (`/open-apis/bot/v2/hook/{hook_id}`, optional signature).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::spec::{ActionSpec, Body, Effect, Endpoint, KindSpec, Method, schema};

/// The config's `hook_id` replaces `{hook_id}`.
pub(super) const HOOK_PATH: &str = "/open-apis/bot/v2/hook/{hook_id}";

const fn send(
    name: &'static str,
    params: fn() -> schemars::Schema,
    msg_type: &'static str,
    card: Option<&'static str>,
) -> ActionSpec {
    ActionSpec {
        name,
        effect: Effect::Write,
        params,
        endpoint: Endpoint::Http {
            method: Method::Post,
            path: HOOK_PATH,
            body: Body::FeishuMessage { msg_type, card },
        },
        bucket: "messages",
        per_recipient: None,
        recipient: None,
    }
}

// No action has a recipient: the bot posts to the one group its hook names, and Feishu mentions
// are markup inside the text or card (`<at user_id="...">`), not a param a campaign could fill.
pub(super) const KIND: KindSpec = KindSpec {
    name: "feishu_robot",
    title: "飞书群机器人 Feishu group bot",
    // Feishu: "单租户单机器人 100 次/分钟，5 次/秒"; a call needs a token of both.
    default_rate_limit: "100/min, 5/s",
    actions: &[
        send("send_text", schema::<FeishuText>, "text", None),
        send("send_post", schema::<FeishuPost>, "post", None),
        send("send_image", schema::<FeishuImage>, "image", None),
        send("send_share_chat", schema::<FeishuShareChat>, "share_chat", None),
        send("send_interactive", schema::<FeishuInteractive>, "interactive", Some("card")),
    ],
};

/// Params of `send_text`: a text message to the bot's group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct FeishuText {
    /// May mention with `<at user_id="all">所有人</at>`.
    #[schemars(length(min = 1))]
    pub text: String,
}

/// Params of `send_post`: a rich-text message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct FeishuPost {
    /// Rich text per locale: `{"zh_cn": {"title": "...", "content": [[{"tag": "text", "text": "..."}]]}}`.
    #[schemars(length(min = 1))]
    pub post: Map<String, Value>,
}

/// Params of `send_image`: an image uploaded to Feishu before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct FeishuImage {
    /// Key of an image uploaded with Feishu's image API (`img_...`).
    #[schemars(length(min = 1))]
    pub image_key: String,
}

/// Params of `send_share_chat`: a card inviting to a group chat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct FeishuShareChat {
    /// Id of the group chat to share (`oc_...`).
    #[schemars(length(min = 1))]
    pub share_chat_id: String,
}

/// Params of `send_interactive`: a message card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct FeishuInteractive {
    /// The message card (sent as the top-level `card`).
    #[schemars(length(min = 1))]
    pub card: Map<String, Value>,
}
