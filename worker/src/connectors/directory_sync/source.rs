//! Reading a source directory through its config's own catalog actions, paged and rate-limited
//! like that config's jobs, into a [`Snapshot`] of records (see [`super::model`]).
//!
//! - WeCom (docs/providers/wecom.md#contacts): `list_department_ids`, then `get_department` per
//!   department; `list_member_ids` (cursor pages), then `get_member` per member. The hire date is
//!   the text attribute `hiredate` (or `入职日期`) of the member's `extattr`, `YYYY-MM-DD`.
//! - Feishu (docs/providers/feishu.md#contact-reads): `list_departments` from the root with
//!   `fetch_child`, then `list_department_users` per department (page tokens); the hire date is
//!   `join_time` (Unix seconds).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use uuid::Uuid;
use yizhan_schemas::find_action;

use super::model::Snapshot;
use crate::connectors::call::{Call, Connector, Failure};
use crate::ratelimit::{Admission, Limit, Limiter, Quota};

/// How many source reads a run has in flight at once.
const READ_CONCURRENCY: usize = 8;
/// How often one read is tried before the run gives up (transient failures only).
const READ_ATTEMPTS: u32 = 3;

/// Calls the actions of one connector config, rate-limited with the config's quotas.
pub(crate) struct Caller {
    /// The config's connector.
    pub connector: Arc<dyn Connector>,
    /// (kind, name) of the config, the limiter's key.
    pub config: (String, String),
    /// The config's limits.
    pub quotas: Vec<Quota>,
    /// The worker's (or fleet's) limiter.
    pub limiter: Arc<dyn Limiter>,
}

impl Caller {
    /// Runs `action` with `params`, waiting for a token of its bucket and retrying transient
    /// failures a few times; the result is the action's result (`null` when it has none).
    pub(crate) async fn call(&self, job_id: Uuid, action: &str, params: Value) -> Result<Value, Failure> {
        let spec = find_action(&self.config.0, action)
            .ok_or_else(|| Failure::permanent(format!("{} has no action {action}", self.config.0)))?;
        let mut attempt = 1;
        loop {
            self.take_token(spec.bucket).await?;
            let call = Call { job_id, action: spec, params: &params, attempt, progress: None };
            match self.connector.execute(call).await {
                Ok(success) => return Ok(success.result.unwrap_or(Value::Null)),
                Err(failure) => {
                    let wait = match &failure {
                        Failure::Throttled { retry_after, .. } => retry_after.unwrap_or(Duration::from_secs(1)),
                        Failure::Transient { retry_after, .. } => retry_after.unwrap_or(Duration::from_millis(200)),
                        Failure::Unreachable { .. } => Duration::from_millis(200),
                        // A lost answer of a read is simply asked again; of a write, the caller decides.
                        Failure::Ambiguous { .. } if spec.effect == yizhan_schemas::Effect::Read => {
                            Duration::from_millis(200)
                        }
                        _ => return Err(failure.map_reason(|r| format!("{action}: {r}"))),
                    };
                    if attempt >= READ_ATTEMPTS || spec.effect == yizhan_schemas::Effect::Write {
                        return Err(failure.map_reason(|r| format!("{action}: {r}")));
                    }
                    attempt += 1;
                    tokio::time::sleep(wait.min(Duration::from_secs(10))).await;
                }
            }
        }
    }

    async fn take_token(&self, bucket: &str) -> Result<(), Failure> {
        let limits = [Limit { key: bucket, quotas: &self.quotas }];
        loop {
            match self.limiter.try_acquire(&self.config, &limits, Duration::from_secs(2)).await {
                Ok(Admission::Go) => return Ok(()),
                Ok(Admission::Reserved(wait)) => {
                    tokio::time::sleep(wait).await;
                    return Ok(());
                }
                Ok(Admission::Wait(wait)) => tokio::time::sleep(wait.min(Duration::from_secs(2))).await,
                Err(e) => return Err(Failure::transient(format!("rate limiter: {e}"))),
            }
        }
    }
}

/// Reads the whole directory of a `wecom` or `feishu` config.
pub(crate) async fn read(caller: &Caller, job_id: Uuid) -> Result<Snapshot, Failure> {
    match caller.config.0.as_str() {
        "wecom" => read_wecom(caller, job_id).await,
        "feishu" => read_feishu(caller, job_id).await,
        other => Err(Failure::permanent(format!("{other} is not a directory"))),
    }
}

fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// `YYYY-MM-DD` (or Unix seconds as text) → Unix seconds of the day's start, UTC.
pub(crate) fn hiredate_seconds(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<i64>() {
        return Some(seconds);
    }
    let date: jiff::civil::Date = text.parse().ok()?;
    Some(date.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp().as_second())
}

async fn read_wecom(caller: &Caller, job_id: Uuid) -> Result<Snapshot, Failure> {
    let mut snapshot = Snapshot::default();
    let listed = caller.call(job_id, "list_department_ids", json!({})).await?;
    let ids: Vec<String> =
        listed["department_id"].as_array().into_iter().flatten().filter_map(|d| id_text(&d["id"])).collect();
    let departments: Vec<Result<Value, Failure>> = futures::stream::iter(ids)
        .map(|id| async move {
            let id_number: u64 =
                id.parse().map_err(|_| Failure::permanent(format!("department id {id} is not a number")))?;
            caller.call(job_id, "get_department", json!({"id": id_number})).await
        })
        .buffered(READ_CONCURRENCY)
        .collect()
        .await;
    for answer in departments {
        let department = &answer?["department"];
        let Some(id) = id_text(&department["id"]) else { continue };
        let record = json!({
            "type": "department", "id": id, "name": department["name"].as_str().unwrap_or_default(),
            "parentId": id_text(&department["parentid"]).unwrap_or_else(|| "0".into()),
            "order": department["order"].as_u64().unwrap_or(0),
        });
        snapshot.departments.insert(id, record);
    }

    let mut userids: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut params = json!({"limit": 10000});
        if let Some(cursor) = &cursor {
            params["cursor"] = json!(cursor);
        }
        let page = caller.call(job_id, "list_member_ids", params).await?;
        for row in page["dept_user"].as_array().into_iter().flatten() {
            if let Some(userid) = row["userid"].as_str().filter(|u| !userids.iter().any(|k| k == u)) {
                userids.push(userid.to_string());
            }
        }
        match page["next_cursor"].as_str().filter(|c| !c.is_empty()) {
            Some(next) if cursor.as_deref() != Some(next) => cursor = Some(next.to_string()),
            _ => break,
        }
    }
    let members: Vec<Result<Value, Failure>> = futures::stream::iter(userids)
        .map(|userid| async move { caller.call(job_id, "get_member", json!({"userid": userid})).await })
        .buffered(READ_CONCURRENCY)
        .collect()
        .await;
    for answer in members {
        let member = answer?;
        let Some(id) = member["userid"].as_str().map(str::to_string) else { continue };
        let departments: Vec<String> =
            member["department"].as_array().into_iter().flatten().filter_map(id_text).collect();
        let main = id_text(&member["main_department"]).or_else(|| departments.first().cloned()).unwrap_or_default();
        let hiredate = member["extattr"]["attrs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|attr| matches!(attr["name"].as_str(), Some("hiredate" | "入职日期")))
            .find_map(|attr| attr["text"]["value"].as_str().or(attr["value"].as_str()).and_then(hiredate_seconds));
        // 1 active, 4 not yet activated: enabled; 2 disabled, 5 left.
        let enabled = !matches!(member["status"].as_u64(), Some(2 | 5));
        let record = json!({
            "type": "member", "id": id, "name": member["name"].as_str().unwrap_or_default(),
            "email": member["email"].as_str().unwrap_or_default(), "mobile": member["mobile"].as_str().unwrap_or_default(),
            "position": member["position"].as_str().unwrap_or_default(), "DeptID": main, "departments": departments,
            "hiredate": hiredate, "enabled": enabled,
        });
        snapshot.members.insert(id, record);
    }
    Ok(snapshot)
}

/// Every page of a Feishu list: its `items`, following `page_token` while `has_more`.
async fn feishu_pages(caller: &Caller, job_id: Uuid, action: &str, params: Value) -> Result<Vec<Value>, Failure> {
    let mut items = Vec::new();
    let mut params = params;
    loop {
        let page = caller.call(job_id, action, params.clone()).await?;
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["page_token"].as_str().filter(|t| !t.is_empty()) {
            Some(token) if page["has_more"].as_bool() == Some(true) && params["page_token"].as_str() != Some(token) => {
                params["page_token"] = json!(token);
            }
            _ => return Ok(items),
        }
    }
}

async fn read_feishu(caller: &Caller, job_id: Uuid) -> Result<Snapshot, Failure> {
    let mut snapshot = Snapshot::default();
    let departments = feishu_pages(
        caller,
        job_id,
        "list_departments",
        json!({"parent_department_id": "0", "fetch_child": true, "page_size": 50}),
    )
    .await?;
    for department in departments {
        let Some(id) = id_text(&department["department_id"]) else { continue };
        let order =
            department["order"].as_str().and_then(|o| o.parse().ok()).or(department["order"].as_u64()).unwrap_or(0);
        let record = json!({
            "type": "department", "id": id, "name": department["name"].as_str().unwrap_or_default(),
            "parentId": id_text(&department["parent_department_id"]).unwrap_or_else(|| "0".into()), "order": order,
        });
        snapshot.departments.insert(id, record);
    }
    let scopes: Vec<String> = std::iter::once("0".to_string()).chain(snapshot.departments.keys().cloned()).collect();
    for department in scopes {
        let users = feishu_pages(
            caller,
            job_id,
            "list_department_users",
            json!({"department_id": department, "page_size": 50}),
        )
        .await?;
        for user in users {
            let Some(id) = id_text(&user["user_id"]).or_else(|| id_text(&user["open_id"])) else { continue };
            if snapshot.members.contains_key(&id) {
                continue;
            }
            let departments: Vec<String> =
                user["department_ids"].as_array().into_iter().flatten().filter_map(id_text).collect();
            let hiredate = match &user["join_time"] {
                Value::Number(n) => n.as_i64().filter(|t| *t > 0),
                Value::String(s) => hiredate_seconds(s),
                _ => None,
            };
            let frozen = user["status"]["is_frozen"].as_bool() == Some(true)
                || user["status"]["is_resigned"].as_bool() == Some(true);
            let record = json!({
                "type": "member", "id": id, "name": user["name"].as_str().unwrap_or_default(),
                "email": user["email"].as_str().unwrap_or_default(), "mobile": user["mobile"].as_str().unwrap_or_default(),
                "position": user["job_title"].as_str().unwrap_or_default(),
                "DeptID": departments.first().cloned().unwrap_or_else(|| "0".into()), "departments": departments,
                "hiredate": hiredate, "enabled": !frozen,
            });
            snapshot.members.insert(id, record);
        }
    }
    Ok(snapshot)
}

#[cfg(test)]
mod tests {
    #[test]
    fn hire_dates_are_day_starts_in_seconds() {
        assert_eq!(super::hiredate_seconds("2024-03-01"), Some(1_709_251_200));
        assert_eq!(super::hiredate_seconds(" 1709251200 "), Some(1_709_251_200));
        assert_eq!(super::hiredate_seconds("March"), None);
    }
}
