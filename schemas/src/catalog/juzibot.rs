//! `juzibot`: Juzibot (句子互动) hub API (`https://hub.juzibot.com/api/v1/`, `token` query parameter).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::spec::{ActionSpec, Body, Effect, Endpoint, KindSpec, Method, schema};
// Juzibot creates contact ways on the WeCom side with WeCom's own params.
use super::wecom::{AddContactWay, ConfigId};

pub(super) const KIND: KindSpec = KindSpec {
    name: "juzibot",
    title: "句子互动 Juzibot",
    // No documented limit; HTTP 429 answers are retried.
    default_rate_limit: "10/s",
    actions: &[
        ActionSpec {
            name: "list_channels",
            effect: Effect::Read,
            params: schema::<ListChannels>,
            endpoint: Endpoint::Http {
                method: Method::Get,
                path: "/api/v1/channel/list",
                body: Body::Query { renames: &[("page_size", "pageSize")] },
            },
            bucket: "api",
            per_recipient: None,
            recipient: None,
        },
        ActionSpec {
            name: "add_contact_way",
            effect: Effect::Write,
            params: schema::<AddContactWay>,
            endpoint: Endpoint::Http { method: Method::Post, path: "/api/v1/contactWay/add", body: Body::Params },
            bucket: "api",
            per_recipient: None,
            recipient: None,
        },
        ActionSpec {
            name: "get_contact_way",
            effect: Effect::Read,
            params: schema::<ConfigId>,
            endpoint: Endpoint::Http {
                method: Method::Get,
                path: "/api/v1/contactWay/get",
                body: Body::Query { renames: &[] },
            },
            bucket: "api",
            per_recipient: None,
            recipient: None,
        },
        ActionSpec {
            name: "list_contact_ways",
            effect: Effect::Read,
            params: schema::<ListContactWays>,
            endpoint: Endpoint::Http { method: Method::Post, path: "/api/v1/contactWay/list", body: Body::Params },
            bucket: "api",
            per_recipient: None,
            recipient: None,
        },
    ],
};

/// Params of `list_channels`: one page of the hub's channels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ListChannels {
    /// Page number, from 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub current: Option<u32>,
    /// Page size, 1 to 1,000 (sent as `pageSize`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub page_size: Option<u32>,
}

/// One page; the result's `next_cursor` asks for the next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ListContactWays {
    /// UNIX seconds; 90 days ago when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<i64>,
    /// UNIX seconds; contact ways created up to then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<i64>,
    /// Cursor of the next page, as the previous answer's `next_cursor`; absent for the first page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub cursor: Option<String>,
    /// Page size, 1 to 1,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub limit: Option<u32>,
}
