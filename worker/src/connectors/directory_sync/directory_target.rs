//! Applying operations to another directory, `wecom.<config>` or `feishu.<config>`, through that
//! config's own catalog write actions (rate-limited like its jobs).
//!
//! - WeCom (docs/providers/wecom.md#contacts): departments `create_department` /
//!   `update_department` / `delete_department`, members `create_member` / `update_member` /
//!   `delete_member`; a DISABLE is `update_member` with `enable` 0. A member keeps its source id
//!   as `userid`; a department from a WeCom source keeps its numeric id, one from another source
//!   gets the id WeCom assigns.
//! - Feishu (docs/providers/feishu.md#contact-writes): `create_department` / `update_department` /
//!   `delete_department`, `create_user` / `update_user` / `delete_user`, every call with
//!   `department_id_type=open_department_id` and `user_id_type=open_id`; a DISABLE patches
//!   `is_frozen: true`. Creates carry a `client_token` derived from the operation id, so a create
//!   repeated after an interruption returns the object the first one made.
//!
//! The ids the target gives are recorded per source record (`department:<id>`, `member:<id>`) so
//! an UPDATE or DELETE finds the target's object; the source's root department is the target's
//! root (WeCom `1`, Feishu `0`) and is never written.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use uuid::Uuid;

use super::model::ObjectType;
use super::script::Operation;
use super::source::Caller;
use super::target::ApplyError;
use crate::connectors::call::Failure;

/// The key of a record's target id.
pub(crate) fn id_key(object: ObjectType, source_id: &str) -> String {
    format!("{}:{source_id}", object.as_str())
}

/// One operation to apply.
pub(crate) struct Change<'a> {
    /// Department or member.
    pub object: ObjectType,
    /// The record's source id.
    pub source_id: &'a str,
    /// The record as the script left it (`context.data`).
    pub record: &'a Value,
    /// What to do.
    pub operation: Operation,
    /// The operation's id, stable across retries.
    pub operation_id: &'a str,
}

/// A directory target: the target config's caller and the source's kind (whose root department
/// is the target's root).
pub(crate) struct DirectoryTarget<'a> {
    /// The target config's actions.
    pub caller: &'a Caller,
    /// `wecom` or `feishu`: the source's kind.
    pub source_kind: &'a str,
    /// Target ids known so far, by [`id_key`].
    pub ids: &'a BTreeMap<String, String>,
    /// The run's job id (rate-limit and trace context of the calls).
    pub job_id: Uuid,
}

/// A refused write fails the record; anything else (network, throttling, a lost answer) stops
/// the run, which is retried without applying what it applied already.
fn apply_error(failure: Failure) -> ApplyError {
    match failure {
        Failure::Permanent { reason, .. } => ApplyError::Record(reason),
        Failure::Transient { reason, .. }
        | Failure::Throttled { reason, .. }
        | Failure::Unreachable { reason }
        | Failure::Ambiguous { reason } => ApplyError::Unavailable(reason),
    }
}

/// Whether a refusal carries the provider's `code` (`errcode 60102`, `code 41050`).
fn refused_with(error: &ApplyError, code: &str) -> bool {
    matches!(error, ApplyError::Record(reason) if reason.contains(&format!("{code}:")))
}

fn text<'v>(record: &'v Value, field: &str) -> Option<&'v str> {
    record[field].as_str().filter(|s| !s.is_empty())
}

/// Feishu's custom ids: `^[a-zA-Z0-9][a-zA-Z0-9_\-@.]{0,63}$`, departments not `0` nor `od-…`
/// (docs/providers/feishu.md#contact-writes).
fn feishu_custom_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || "_-@.".contains(c))
}

impl DirectoryTarget<'_> {
    /// Applies one change; returns the target id to record for it (None: nothing new).
    pub(crate) async fn apply(&self, change: &Change<'_>) -> Result<Option<String>, ApplyError> {
        if change.object == ObjectType::Department && self.is_source_root(change.source_id) {
            return Ok(None);
        }
        match self.caller.config.0.as_str() {
            "wecom" => self.wecom(change).await,
            "feishu" => self.feishu(change).await,
            other => Err(ApplyError::Record(format!("{other} is not a directory"))),
        }
    }

    async fn call(&self, action: &str, params: Value) -> Result<Value, ApplyError> {
        self.caller.call(self.job_id, action, params).await.map_err(apply_error)
    }

    fn is_source_root(&self, id: &str) -> bool {
        id == "0" || (self.source_kind == "wecom" && id == "1")
    }

    fn target_root(&self) -> &'static str {
        if self.caller.config.0 == "wecom" { "1" } else { "0" }
    }

    fn known(&self, object: ObjectType, source_id: &str) -> Option<&str> {
        self.ids.get(&id_key(object, source_id)).map(String::as_str)
    }

    /// The target's id of a source department (the root for the source's root).
    fn department(&self, source_id: &str) -> Option<String> {
        if self.is_source_root(source_id) {
            return Some(self.target_root().to_string());
        }
        self.known(ObjectType::Department, source_id).map(str::to_string)
    }

    /// The target's ids of a member's departments, its main one first; the root when none is
    /// known there.
    fn member_departments(&self, record: &Value) -> Vec<String> {
        let main = text(record, "DeptID").map(str::to_string);
        let listed =
            record["departments"].as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_string);
        let mut out: Vec<String> = Vec::new();
        for id in main.into_iter().chain(listed) {
            if let Some(target) = self.department(&id).filter(|t| !out.contains(t)) {
                out.push(target);
            }
        }
        if out.is_empty() {
            out.push(self.target_root().to_string());
        }
        out
    }

    fn parent(&self, record: &Value) -> Result<String, ApplyError> {
        let parent = text(record, "parentId").unwrap_or("0");
        self.department(parent).ok_or_else(|| {
            ApplyError::Record(format!("the parent department {parent} has no counterpart in the target yet"))
        })
    }

    async fn wecom(&self, change: &Change<'_>) -> Result<Option<String>, ApplyError> {
        let record = change.record;
        let number = |id: &str| -> Result<u64, ApplyError> {
            id.parse().map_err(|_| ApplyError::Record(format!("the target department id {id} is not a number")))
        };
        match (change.object, change.operation) {
            (ObjectType::Department, Operation::Create | Operation::Update) => {
                let name = text(record, "name").unwrap_or(change.source_id);
                let parentid = number(&self.parent(record)?)?;
                let order = record["order"].as_u64().map(|o| o.min(u64::from(u32::MAX)));
                if let Some(target) = self.known(ObjectType::Department, change.source_id) {
                    let params = json!({"id": number(target)?, "name": name, "parentid": parentid, "order": order});
                    self.call("update_department", without_nulls(params)).await?;
                    return Ok(None);
                }
                // A WeCom source's numeric id is kept: a create repeated after an interruption
                // then finds its department (60008) instead of making a second one.
                let keep = (self.source_kind == "wecom").then(|| change.source_id.parse::<u64>().ok()).flatten();
                let params = without_nulls(json!({"name": name, "parentid": parentid, "order": order, "id": keep}));
                match self.call("create_department", params).await {
                    Ok(answer) => Ok(answer["id"].as_u64().map(|id| id.to_string())),
                    Err(e) if keep.is_some() && refused_with(&e, "errcode 60008") => Ok(keep.map(|id| id.to_string())),
                    Err(e) => Err(e),
                }
            }
            (ObjectType::Department, Operation::Delete | Operation::Disable) => {
                let Some(target) = self.known(ObjectType::Department, change.source_id) else {
                    return Ok(None);
                };
                match self.call("delete_department", json!({"id": number(target)?})).await {
                    Err(e) if !refused_with(&e, "errcode 60003") => Err(e),
                    _ => Ok(None),
                }
            }
            (ObjectType::Member, Operation::Create | Operation::Update) => {
                let departments: Vec<u64> =
                    self.member_departments(record).iter().map(|d| number(d)).collect::<Result<_, _>>()?;
                let params = without_nulls(json!({
                    "userid": change.source_id, "name": text(record, "name").unwrap_or(change.source_id),
                    "email": text(record, "email"), "mobile": text(record, "mobile"), "position": text(record, "position"),
                    "department": departments, "main_department": departments.first(),
                    "enable": u8::from(record["enabled"].as_bool() != Some(false)),
                }));
                let first = if change.operation == Operation::Create { "create_member" } else { "update_member" };
                match self.call(first, params.clone()).await {
                    // The member exists (a repeated create, or one disabled before): update it.
                    Err(e) if first == "create_member" && refused_with(&e, "errcode 60102") => {
                        self.call("update_member", params).await.map(|_| None)
                    }
                    // Gone from the target: make it again.
                    Err(e) if first == "update_member" && refused_with(&e, "errcode 60111") => {
                        self.call("create_member", params).await.map(|_| None)
                    }
                    other => other.map(|_| None),
                }
            }
            (ObjectType::Member, Operation::Delete) => {
                match self.call("delete_member", json!({"userid": change.source_id})).await {
                    Err(e) if !refused_with(&e, "errcode 60111") => Err(e),
                    _ => Ok(None),
                }
            }
            (ObjectType::Member, Operation::Disable) => {
                self.call("update_member", json!({"userid": change.source_id, "enable": 0})).await.map(|_| None)
            }
        }
    }

    async fn feishu(&self, change: &Change<'_>) -> Result<Option<String>, ApplyError> {
        let record = change.record;
        // A stable token per operation: Feishu answers a repeated create with the first one's object.
        let client_token = change.operation_id.replace(':', "-");
        match (change.object, change.operation) {
            (ObjectType::Department, Operation::Create | Operation::Update) => {
                let name = text(record, "name").unwrap_or(change.source_id);
                let parent = self.parent(record)?;
                let order = record["order"].as_u64().map(|o| o.to_string());
                if let Some(target) = self.known(ObjectType::Department, change.source_id) {
                    let params = json!({"department_id": target, "department_id_type": "open_department_id",
                                        "name": name, "parent_department_id": parent, "order": order});
                    self.call("update_department", without_nulls(params)).await?;
                    return Ok(None);
                }
                let custom = (feishu_custom_id(change.source_id) && !change.source_id.starts_with("od-"))
                    .then_some(change.source_id);
                let params = without_nulls(json!({
                    "department_id_type": "open_department_id", "client_token": client_token, "name": name,
                    "parent_department_id": parent, "order": order, "department_id": custom,
                }));
                let answer = self.call("create_department", params).await?;
                Ok(answer["department"]["open_department_id"].as_str().map(str::to_string))
            }
            (ObjectType::Department, Operation::Delete | Operation::Disable) => {
                let Some(target) = self.known(ObjectType::Department, change.source_id) else {
                    return Ok(None);
                };
                let params = json!({"department_id": target, "department_id_type": "open_department_id"});
                self.call("delete_department", params).await.map(|_| None)
            }
            (ObjectType::Member, Operation::Create | Operation::Update) => {
                let mut fields = json!({
                    "user_id_type": "open_id", "department_id_type": "open_department_id",
                    "name": text(record, "name").unwrap_or(change.source_id), "email": text(record, "email"),
                    "mobile": text(record, "mobile"), "job_title": text(record, "position"),
                    "department_ids": self.member_departments(record), "join_time": record["hiredate"].as_i64(),
                });
                if let Some(target) = self.known(ObjectType::Member, change.source_id) {
                    fields["user_id"] = json!(target);
                    fields["is_frozen"] = json!(record["enabled"].as_bool() == Some(false));
                    self.call("update_user", without_nulls(fields)).await?;
                    return Ok(None);
                }
                fields["client_token"] = json!(client_token);
                fields["employee_type"] = json!(1);
                if feishu_custom_id(change.source_id) {
                    fields["user_id"] = json!(change.source_id);
                }
                let answer = self.call("create_user", without_nulls(fields)).await?;
                Ok(answer["user"]["open_id"].as_str().map(str::to_string))
            }
            (ObjectType::Member, Operation::Delete | Operation::Disable) => {
                let Some(target) = self.known(ObjectType::Member, change.source_id) else {
                    return Err(ApplyError::Record("the member has no counterpart in the target".into()));
                };
                if change.operation == Operation::Delete {
                    self.call("delete_user", json!({"user_id": target, "user_id_type": "open_id"})).await.map(|_| None)
                } else {
                    let params = json!({"user_id": target, "user_id_type": "open_id", "is_frozen": true});
                    self.call("update_user", params).await.map(|_| None)
                }
            }
        }
    }
}

/// The object without its null fields (the catalog's params leave absent what is unknown).
fn without_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(map.into_iter().filter(|(_, v)| !v.is_null()).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feishu_custom_ids_follow_the_documented_pattern() {
        assert!(feishu_custom_id("m001"));
        assert!(feishu_custom_id("a.b-c_d@e"));
        assert!(!feishu_custom_id("-x"));
        assert!(!feishu_custom_id("a b"));
        assert!(!feishu_custom_id(&"x".repeat(65)));
    }

    #[test]
    fn refusals_are_matched_by_their_code() {
        let refused = ApplyError::Record("create_member: errcode 60102: userid existed".into());
        assert!(refused_with(&refused, "errcode 60102"));
        assert!(!refused_with(&refused, "errcode 6010"));
        assert!(!refused_with(&ApplyError::Unavailable("errcode 60102: x".into()), "errcode 60102"));
    }
}
