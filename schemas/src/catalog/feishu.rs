//! `feishu`: Feishu self-built app, contact (directory) reads with a `tenant_access_token`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::spec::{ActionSpec, Body, Effect, Endpoint, KindSpec, Method, schema};

pub(super) const KIND: KindSpec = KindSpec {
    name: "feishu",
    title: "飞书自建应用 Feishu self-built app",
    // Feishu's contact reads allow 1000/min and 50/s per app.
    default_rate_limit: "50/s",
    actions: &[
        ActionSpec {
            name: "list_departments",
            effect: Effect::Read,
            params: schema::<ListDepartments>,
            endpoint: Endpoint::Http {
                method: Method::Get,
                path: "/open-apis/contact/v3/departments",
                body: Body::Query { renames: &[] },
            },
            bucket: "contact",
            per_recipient: None,
            recipient: None,
        },
        ActionSpec {
            name: "list_department_users",
            effect: Effect::Read,
            params: schema::<ListDepartmentUsers>,
            endpoint: Endpoint::Http {
                method: Method::Get,
                path: "/open-apis/contact/v3/users/find_by_department",
                body: Body::Query { renames: &[] },
            },
            bucket: "contact",
            per_recipient: None,
            recipient: None,
        },
    ],
};

/// Params of `list_departments`: the child departments of one department.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ListDepartments {
    /// `0` (the root) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub parent_department_id: Option<String>,
    /// Also list the sub-departments' descendants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch_child: Option<bool>,
    /// Token of the next page, as the previous answer's `data.page_token`; absent for the first page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub page_token: Option<String>,
    /// Page size, 1 to 50.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 50))]
    pub page_size: Option<u32>,
}

/// One page of a department's direct members; the result's `page_token` asks for the next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ListDepartmentUsers {
    /// Id of the department whose direct members are listed.
    #[schemars(length(min = 1))]
    pub department_id: String,
    /// Token of the next page, as the previous answer's `data.page_token`; absent for the first page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub page_token: Option<String>,
    /// Page size, 1 to 50.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 50))]
    pub page_size: Option<u32>,
}
