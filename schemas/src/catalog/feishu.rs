//! `feishu`: Feishu self-built app, contact (directory) reads and writes with a
//! `tenant_access_token` (docs/providers/feishu.md#contact-writes). A write's path may hold a
//! `{param}` filled from the params; `user_id_type`, `department_id_type` and `client_token` go in
//! the query, the other params in the JSON body.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::spec::{ActionSpec, Body, Effect, Endpoint, KindSpec, Method, schema};

const DEPARTMENTS: &str = "/open-apis/contact/v3/departments";
const DEPARTMENT: &str = "/open-apis/contact/v3/departments/{department_id}";
const USERS_BY_DEPARTMENT: &str = "/open-apis/contact/v3/users/find_by_department";
const USERS: &str = "/open-apis/contact/v3/users";
const USER: &str = "/open-apis/contact/v3/users/{user_id}";

pub(super) const KIND: KindSpec = KindSpec {
    name: "feishu",
    title: "飞书自建应用 Feishu self-built app",
    // Feishu's contact reads allow 1000/min and 50/s per app.
    default_rate_limit: "50/s",
    actions: &[
        contact::<ListDepartments>("list_departments", Method::Get, DEPARTMENTS),
        contact::<ListDepartmentUsers>("list_department_users", Method::Get, USERS_BY_DEPARTMENT),
        contact::<CreateDepartment>("create_department", Method::Post, DEPARTMENTS),
        contact::<UpdateDepartment>("update_department", Method::Patch, DEPARTMENT),
        contact::<DeleteDepartment>("delete_department", Method::Delete, DEPARTMENT),
        contact::<CreateUser>("create_user", Method::Post, USERS),
        contact::<UpdateUser>("update_user", Method::Patch, USER),
        contact::<DeleteUser>("delete_user", Method::Delete, USER),
    ],
};

/// One contact entry. A read (`GET`) sends its params as the query and shares the app's read
/// limit; a write sends a JSON body, fills the `{param}`s of its path from the params, and has a
/// bucket of its own.
const fn contact<T: JsonSchema>(name: &'static str, method: Method, path: &'static str) -> ActionSpec {
    let (effect, body, bucket) = match method {
        Method::Get => (Effect::Read, Body::Query { renames: &[] }, "contact"),
        _ => (Effect::Write, Body::Params, "contact_write"),
    };
    ActionSpec {
        name,
        effect,
        params: schema::<T>,
        endpoint: Endpoint::Http { method, path, body },
        bucket,
        per_recipient: None,
        recipient: None,
    }
}

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

/// `department_id_type`: how department ids in the path, params and answer are given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub(super) enum DepartmentIdType {
    /// The custom `department_id`.
    #[serde(rename = "department_id")]
    Custom,
    /// The `open_department_id` (`od-…`), Feishu's default.
    #[serde(rename = "open_department_id")]
    Open,
}

/// `user_id_type`: how user ids in the path, params and answer are given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub(super) enum UserIdType {
    /// The app's `open_id` (`ou_…`), Feishu's default.
    #[serde(rename = "open_id")]
    Open,
    /// The developer's `union_id`.
    #[serde(rename = "union_id")]
    Union,
    /// The tenant's `user_id`.
    #[serde(rename = "user_id")]
    Tenant,
}

/// `POST /open-apis/contact/v3/departments`; the answer's `department` carries its ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateDepartment {
    /// Department name, unique among its siblings.
    #[schemars(length(min = 1))]
    pub name: String,
    /// The parent's id; `0` is the root.
    #[schemars(length(min = 1))]
    pub parent_department_id: String,
    /// A custom id: letters, digits and `_-@.`, starting with a letter or digit, at most 64, not
    /// `od-…`; Feishu gives only the open id when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[a-zA-Z0-9][a-zA-Z0-9_\-@.]{0,63}$"))]
    pub department_id: Option<String>,
    /// Position among the siblings, as a decimal string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
    /// How the ids of this call are given (default `open_department_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department_id_type: Option<DepartmentIdType>,
    /// A token per intended create: a repeated request with it returns the first one's department.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub client_token: Option<String>,
}

/// `PATCH /open-apis/contact/v3/departments/{department_id}`: changes only the fields given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct UpdateDepartment {
    /// The department to change, as `department_id_type` says.
    #[schemars(length(min = 1))]
    pub department_id: String,
    /// New name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub name: Option<String>,
    /// New parent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub parent_department_id: Option<String>,
    /// New position among the siblings, as a decimal string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
    /// How the ids of this call are given (default `open_department_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department_id_type: Option<DepartmentIdType>,
}

/// `DELETE /open-apis/contact/v3/departments/{department_id}`: it must have no members and no
/// sub-departments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct DeleteDepartment {
    /// The department to delete, as `department_id_type` says.
    #[schemars(length(min = 1))]
    pub department_id: String,
    /// How the id is given (default `open_department_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department_id_type: Option<DepartmentIdType>,
}

/// `POST /open-apis/contact/v3/users`; the answer's `user` carries its ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateUser {
    /// A custom tenant `user_id` (Feishu assigns one when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub user_id: Option<String>,
    /// Display name.
    #[schemars(length(min = 1, max = 64))]
    pub name: String,
    /// Mobile number, unique in the tenant; required by Feishu (China) for a new user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobile: Option<String>,
    /// E-mail address, unique in the tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The user's departments, as `department_id_type` says; at least one (`0` is the root).
    #[schemars(length(min = 1, max = 50))]
    pub department_ids: Vec<String>,
    /// 1 regular, 2 intern, 3 outsourcing, 4 contractor, 5 consultant.
    #[schemars(range(min = 1))]
    pub employee_type: u32,
    /// Job title, at most 100 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100))]
    pub job_title: Option<String>,
    /// Hire date, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_time: Option<i64>,
    /// How user ids of this call are given (default `open_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id_type: Option<UserIdType>,
    /// How department ids of this call are given (default `open_department_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department_id_type: Option<DepartmentIdType>,
    /// A token per intended create: a repeated request with it returns the first one's user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub client_token: Option<String>,
}

/// `PATCH /open-apis/contact/v3/users/{user_id}`: changes only the fields given; `is_frozen`
/// suspends (true) or restores (false) the user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct UpdateUser {
    /// The user to change, as `user_id_type` says.
    #[schemars(length(min = 1))]
    pub user_id: String,
    /// New display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub name: Option<String>,
    /// New mobile number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobile: Option<String>,
    /// New e-mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// New departments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 50))]
    pub department_ids: Option<Vec<String>>,
    /// New job title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100))]
    pub job_title: Option<String>,
    /// New hire date, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_time: Option<i64>,
    /// True suspends the user, false restores them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_frozen: Option<bool>,
    /// How user ids of this call are given (default `open_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id_type: Option<UserIdType>,
    /// How department ids of this call are given (default `open_department_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department_id_type: Option<DepartmentIdType>,
}

/// `DELETE /open-apis/contact/v3/users/{user_id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct DeleteUser {
    /// The user to delete, as `user_id_type` says.
    #[schemars(length(min = 1))]
    pub user_id: String,
    /// How the id is given (default `open_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id_type: Option<UserIdType>,
}
