//! Reloading the API process: `POST /v1/admin/reload` (scope `admin`) and SIGHUP re-read the token
//! file (tokens, scopes, quotas) and the connector config file's SMS receipt tokens; a file with an error is
//! refused with the error's path and the old tokens stay in force. The endpoint then tells every
//! worker to reload its connector config (a message on `<prefix>.control`); SIGHUP reloads only
//! the process it is sent to.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tracing::{info, warn};

use tokio::sync::OnceCell;

use super::problem::error;
use crate::Producer;
use crate::auth::{ConfigPatterns, Principal, Scopes, TokenSources, Tokens};
use crate::receipts::ReceiptTokens;
use crate::wecom_events::WecomCallbacks;

/// What a reload reads again.
#[derive(Debug, Default, Clone)]
pub struct Reload {
    /// The token list and file; None: the tokens are not reloadable (kept as they are).
    pub tokens: Option<TokenSources>,
    /// The connector config file: its SMS `receipt_token`s are read again into `receipts`.
    pub config: Option<PathBuf>,
    /// The receipt tokens the receipt route checks (the API state's, shared).
    pub receipts: Arc<ReceiptTokens>,
    /// The WeCom change-event settings the event route checks (the API state's, shared).
    pub wecom: Arc<WecomCallbacks>,
}

impl Reload {
    /// Reads everything first, then puts the new tokens in force; on an error nothing changes
    /// and the error (naming the file and the bad item, never a value) is returned.
    pub fn apply(&self, tokens: &Tokens) -> Result<(), String> {
        let (receipts, wecom) = match &self.config {
            Some(config) => (
                Some(ReceiptTokens::load(config).map_err(|e| e.to_string())?),
                Some(WecomCallbacks::load(config).map_err(|e| e.to_string())?),
            ),
            None => (None, None),
        };
        let fresh = match &self.tokens {
            Some(sources) => Some(Tokens::load(sources, &|var| std::env::var(var).ok()).map_err(|e| e.to_string())?),
            None => None,
        };
        // Everything read: now both swap.
        if let Some(fresh) = fresh {
            if fresh.is_empty() {
                warn!("the reloaded token sources hold no token: every /v1 request is refused");
            }
            tokens.replace(fresh);
        }
        if let Some(receipts) = receipts {
            self.receipts.replace(receipts);
        }
        if let Some(wecom) = wecom {
            self.wecom.replace(wecom);
        }
        Ok(())
    }
}

/// Reloads on every SIGHUP until the process ends; the audit line names the signal as the actor.
pub fn reload_on_sighup(reload: Arc<Reload>, tokens: Arc<Tokens>) {
    let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        warn!("cannot listen for SIGHUP: reload through POST /v1/admin/reload only");
        return;
    };
    tokio::spawn(async move {
        let signal = Principal { name: "SIGHUP".into(), tenant: None, can: Scopes::ALL, configs: ConfigPatterns::ALL };
        while hangups.recv().await.is_some() {
            match reload.apply(&tokens) {
                Ok(()) => {
                    info!("reloaded the token file on SIGHUP");
                    crate::audit::record(&signal, "reload", "api");
                }
                Err(reason) => {
                    warn!(%reason, "reload refused; the previous configuration stays in force");
                    crate::audit::record(&signal, "reload refused", "api");
                }
            }
        }
    });
}

/// What the reload endpoint needs of the API's state.
#[derive(Clone)]
pub struct ReloadState {
    /// What a reload reads again.
    pub reload: Arc<Reload>,
    /// The tokens a reload replaces.
    pub tokens: Arc<Tokens>,
    /// The broker connection that tells the workers.
    pub producer: Arc<OnceCell<Producer>>,
}

/// `POST /v1/admin/reload`: 200 `{"reloaded": true, "workers_notified": bool}`; 400 with the
/// error's path when a file is invalid (nothing changed, workers not told).
pub async fn post_reload(
    State(state): State<ReloadState>,
    Extension(principal): Extension<Arc<Principal>>,
) -> Response {
    if let Err(reason) = state.reload.apply(&state.tokens) {
        warn!(%reason, "reload refused; the previous configuration stays in force");
        crate::audit::record(&principal, "reload refused", "api");
        return error(StatusCode::BAD_REQUEST, reason);
    }
    let workers_notified = match state.producer.get() {
        Some(producer) => match producer.broadcast_reload().await {
            Ok(()) => true,
            Err(yizhan_broker::PublishError::Unroutable { .. }) => {
                info!("no worker is running to reload");
                false
            }
            Err(e) => {
                warn!(error = %e, "could not tell the workers to reload");
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the API reloaded; the workers could not be told (broker)",
                );
            }
        },
        None => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the API reloaded; the broker is unreachable to tell the workers",
            );
        }
    };
    crate::audit::record(&principal, "reload", "api and workers");
    Json(json!({"reloaded": true, "workers_notified": workers_notified})).into_response()
}
