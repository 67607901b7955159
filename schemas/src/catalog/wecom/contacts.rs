//! 通讯录 contacts params (docs/providers/wecom.md#contacts).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `GET department/list[?id=]`: the subtree of `id`, every department when absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListDepartments {
    /// Department whose subtree is listed (recursively); absent: the whole organisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
}

/// Params of `create_department`; the answer carries the new department's `id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDepartment {
    /// Department name, 1 to 64 characters, unique among its siblings; none of `\:*?"<>|`.
    #[schemars(length(min = 1, max = 64))]
    pub name: String,
    /// English name, 1 to 64 characters, unique among its siblings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub name_en: Option<String>,
    /// Id of the parent department (1 is the root).
    pub parentid: u64,
    /// Position among the parent's children; larger values come first; default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<u32>,
    /// Chosen by WeCom when absent (returned as `id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 2))]
    pub id: Option<u64>,
}

/// Params of `update_department`: changes only the fields given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateDepartment {
    /// Id of the department to change.
    pub id: u64,
    /// New name, 1 to 64 characters, unique among its siblings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub name: Option<String>,
    /// New English name, 1 to 64 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub name_en: Option<String>,
    /// Id of the new parent department.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parentid: Option<u64>,
    /// New position among the parent's children; larger values come first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<u32>,
}

/// `GET department/delete?id=` (root and non-empty departments cannot be deleted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteDepartment {
    /// Id of the department to delete; it must have no members and no sub-departments.
    #[schemars(range(min = 2))]
    pub id: u64,
}

/// One page of every member's userid; the result's `next_cursor` asks for the next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListMemberIds {
    /// Cursor of the next page, as the previous page's `next_cursor`; absent for the first page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub cursor: Option<String>,
    /// Page size, 1 to 10,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub limit: Option<u32>,
}

/// `create_member` and `update_member` (which overwrites only the fields given).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// Member id (UserID): 1 to 64 bytes of letters, digits and `_-@.`, starting with a letter or
    /// digit; unique in the corp, ignoring case.
    #[schemars(length(min = 1, max = 64))]
    pub userid: String,
    /// Required by WeCom for `create_member`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub name: Option<String>,
    /// Alias, 1 to 64 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// Mobile number, unique in the corp; `create_member` needs `mobile` or `email`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobile: Option<String>,
    /// `"1"` male, `"2"` female.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gender: Option<String>,
    /// Email address, 6 to 64 bytes, unique in the corp; `create_member` needs `mobile` or `email`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Corporate mailbox address, only for corps with WeCom mail enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub biz_mail: Option<String>,
    /// Landline, at most 32 bytes of digits, `-`, `+` and `,`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telephone: Option<String>,
    /// Postal address, at most 128 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// `media_id` of an uploaded image to use as the avatar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar_mediaid: Option<String>,
    /// 1 enabled, 0 disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 1))]
    pub enable: Option<u8>,
    /// Ids of the departments the member belongs to, at most 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100))]
    pub department: Option<Vec<u64>>,
    /// Id of the member's main department, one of `department`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main_department: Option<u64>,
    /// Position in each department of `department` (same length); larger values come first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<Vec<u32>>,
    /// For each department of `department` (same length): 1 leader of it, 0 not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_leader_in_dept: Option<Vec<u8>>,
    /// UserIDs of the member's direct leaders, at most 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_leader: Option<Vec<String>>,
    /// Job title, at most 128 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<String>,
    /// Job title shown to external contacts instead of `position`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_position: Option<String>,
    /// `{"external_corp_name", "wechat_channels", "external_attr": [...]}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_profile: Option<Map<String, Value>>,
}

/// `get_member` and `delete_member`: `?userid=`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserId {
    /// Member id (UserID).
    #[schemars(length(min = 1, max = 64))]
    pub userid: String,
}

/// Params of `batch_delete_members`: deletes up to 200 members in one call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchDeleteMembers {
    /// Member ids to delete, 1 to 200; one unknown id fails the whole call.
    #[schemars(length(min = 1, max = 200))]
    pub useridlist: Vec<String>,
}

/// `?department_id=&fetch_child=` (`fetch_child` 1: also the sub-departments' members).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DepartmentMembers {
    /// Department whose members are listed.
    pub department_id: u64,
    /// 1: also list the members of every sub-department; 0: this department only.
    #[schemars(range(max = 1))]
    pub fetch_child: u8,
}

/// `GET department/simplelist[?id=]`: the ids of the subtree of `id` (every department when
/// absent), each with its `parentid` and `order`. The contacts secret's way to walk the tree
/// since `department/list` is closed to new 通讯录同步 IPs (docs/providers/wecom.md#contacts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListDepartmentIds {
    /// Department whose subtree is listed; absent: the whole organisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
}

/// `GET department/get?id=`: one department's `name`, `name_en`, `department_leader`, `parentid`
/// and `order`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetDepartment {
    /// Id of the department.
    pub id: u64,
}
