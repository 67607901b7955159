//! What a scoped token may do: the scope each route needs, the configs and tenant of submitted
//! jobs, and whose a job is when a token reads or cancels it. A plain token (no tenant) passes
//! every check here without a store round trip.

use std::collections::BTreeMap;

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use uuid::Uuid;
use yizhan_schemas::{DEFAULT_TENANT, Job};
use yizhan_state::{Millis, StateStore, StoreError};

use crate::auth::{Principal, Scope};

/// The scope a route needs (by method and route template); None: any valid token.
pub(crate) fn required_scope(method: &Method, route: &str) -> Option<Scope> {
    match (method.as_str(), route) {
        ("POST", "/v1/jobs") | ("DELETE", "/v1/jobs/{id}") => Some(Scope::Submit),
        ("GET", "/v1/jobs/{id}") => Some(Scope::Read),
        (_, route) if route.starts_with("/v1/campaigns") => Some(Scope::Campaigns),
        (_, route) if route.starts_with("/v1/dlq") => Some(Scope::Dlq),
        (_, route) if route.starts_with("/v1/admin") => Some(Scope::Admin),
        _ => None,
    }
}

/// Checks the configs and tenant of a request's jobs against the token and stamps the token's
/// tenant on them. Returns `{"index", "path", "reason"}` for each refused item (403: nothing is
/// enqueued); `items` are the request's items as sent, where an explicit `tenant` is seen.
pub(crate) fn authorize_jobs(principal: &Principal, items: &[Value], jobs: &mut [Job]) -> Vec<Value> {
    let mut refused = Vec::new();
    for (index, (item, job)) in items.iter().zip(jobs.iter_mut()).enumerate() {
        if !principal.configs.allows(&job.connector, &job.config) {
            refused.push(json!({
                "index": index,
                "path": "$.config",
                "reason": format!("this token may not submit to config {}.{}", job.connector, job.config),
            }));
        }
        let Some(own) = &principal.tenant else { continue };
        if let Some(asked) = item.get("tenant").and_then(Value::as_str)
            && asked != own
        {
            refused.push(json!({
                "index": index,
                "path": "$.tenant",
                "reason": format!("this token submits for tenant {own}, not {asked}"),
            }));
        }
        job.tenant.clone_from(own);
    }
    refused
}

/// The campaign counterpart of [`authorize_jobs`]: 403 `{"errors": [...]}` when the head's
/// config or explicit tenant is not the token's; else the token's tenant is stamped on the head
/// (and so on every job expanded from it).
pub(crate) fn authorize_campaign(
    principal: &Principal,
    asked_tenant: Option<&str>,
    head: &mut yizhan_schemas::CampaignHead,
) -> Option<Response> {
    let mut refused = Vec::new();
    if !principal.configs.allows(&head.connector, &head.config) {
        let reason = format!("this token may not submit to config {}.{}", head.connector, head.config);
        refused.push(json!({"path": "$.config", "reason": reason}));
    }
    if let Some(own) = &principal.tenant {
        if let Some(asked) = asked_tenant.filter(|asked| asked != own) {
            let reason = format!("this token submits for tenant {own}, not {asked}");
            refused.push(json!({"path": "$.tenant", "reason": reason}));
        }
        head.tenant.clone_from(own);
    }
    (!refused.is_empty()).then(|| forbidden(refused))
}

/// 403 `{"errors": [{"index"?, "path", "reason"}]}`.
pub(crate) fn forbidden(errors: Vec<Value>) -> Response {
    (StatusCode::FORBIDDEN, axum::Json(json!({"errors": errors}))).into_response()
}

/// Records accepted ids, with their tenant for those of a tenant other than `default` (which
/// scoped tokens read by), one store call per tenant of the batch.
pub(crate) async fn record_accepted(
    store: &dyn StateStore,
    jobs: &[(Uuid, &str)],
    now: Millis,
) -> Result<(), StoreError> {
    let mut by_tenant: BTreeMap<&str, Vec<Uuid>> = BTreeMap::new();
    for &(id, tenant) in jobs {
        by_tenant.entry(tenant).or_default().push(id);
    }
    for (tenant, ids) in by_tenant {
        if tenant == DEFAULT_TENANT {
            store.accept(&ids, now).await?;
        } else {
            store.accept_owned(tenant, &ids, now).await?;
        }
    }
    Ok(())
}

/// Whether `principal` may see job `id` (whose campaign, if known, is `campaign`): its recorded
/// owner, else its campaign's tenant, else tenant `default`. Plain tokens see every job.
pub(crate) async fn may_see_job(
    store: &dyn StateStore,
    principal: &Principal,
    id: Uuid,
    campaign: Option<Uuid>,
) -> Result<bool, StoreError> {
    let Some(own) = &principal.tenant else { return Ok(true) };
    let tenant = match store.owner(id).await? {
        Some(owner) => owner,
        None => match campaign {
            Some(campaign) => match store.campaign(campaign).await? {
                Some((record, _)) => record.tenant,
                None => DEFAULT_TENANT.to_string(),
            },
            None => DEFAULT_TENANT.to_string(),
        },
    };
    Ok(&tenant == own)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Tokens;

    #[test]
    fn routes_need_their_scopes() {
        assert_eq!(required_scope(&Method::POST, "/v1/jobs"), Some(Scope::Submit));
        assert_eq!(required_scope(&Method::GET, "/v1/jobs/{id}"), Some(Scope::Read));
        assert_eq!(required_scope(&Method::POST, "/v1/campaigns/{id}/pause"), Some(Scope::Campaigns));
        assert_eq!(required_scope(&Method::POST, "/v1/dlq/replay"), Some(Scope::Dlq));
        assert_eq!(required_scope(&Method::POST, "/v1/admin/reload"), Some(Scope::Admin));
        assert_eq!(required_scope(&Method::GET, "/v1/catalog"), None);
    }

    #[test]
    fn jobs_are_checked_and_stamped() {
        let file = std::env::temp_dir().join(format!("yizhan-scope-{}.toml", std::process::id()));
        std::fs::write(
            &file,
            "[[tokens]]\ntoken = \"t\"\ntenant = \"mkt\"\nconfigs = [\"wecom_robot.*\"]\ncan = [\"submit\"]\n",
        )
        .unwrap();
        let sources = crate::auth::TokenSources { list: Some("plain".into()), file: Some(file.clone()) };
        let tokens = Tokens::load(&sources, &|_| None).unwrap();
        std::fs::remove_file(&file).unwrap();
        let scoped = tokens.authenticate("t").unwrap();
        let job = |config: &str, tenant: Option<&str>| {
            let mut item = json!({"connector": "wecom_robot", "config": config, "action": "send_text", "params": {"content": "x"}});
            if let Some(tenant) = tenant {
                item["tenant"] = json!(tenant);
            }
            item
        };
        let items = vec![job("ops", None), job("ops", Some("mkt"))];
        let mut jobs: Vec<Job> = items
            .iter()
            .map(|i| yizhan_schemas::validate_job_value(i, yizhan_schemas::MissingId::Assign).unwrap())
            .collect();
        assert!(authorize_jobs(&scoped, &items, &mut jobs).is_empty());
        assert!(jobs.iter().all(|j| j.tenant == "mkt"));

        let items = vec![job("ops", Some("other"))];
        let mut jobs = vec![yizhan_schemas::validate_job_value(&items[0], yizhan_schemas::MissingId::Assign).unwrap()];
        let refused = authorize_jobs(&scoped, &items, &mut jobs);
        assert_eq!(refused[0]["path"], "$.tenant");
        let plain = tokens.authenticate("plain").unwrap();
        let mut jobs = vec![yizhan_schemas::validate_job_value(&items[0], yizhan_schemas::MissingId::Assign).unwrap()];
        assert!(authorize_jobs(&plain, &items, &mut jobs).is_empty());
        assert_eq!(jobs[0].tenant, "other");
    }
}
