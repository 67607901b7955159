//! The sender of SMS status reports: POSTs due reports to the [`crate::ReceiptPlan`]'s callback
//! URL, the way the provider's status callback does (docs/providers/tencent-cloud.md#sms-status-callback),
//! and puts back what the receiver refused.

use std::time::Duration;

use serde_json::Value;
use tokio::time::{self, Instant};

use crate::hub::Hub;

/// How long one callback request may take.
const PUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest wait between two looks at the reports (a plan set later is seen by then).
const IDLE: Duration = Duration::from_millis(500);

/// Runs until aborted: POSTs every due report, a batch per request, in due order.
pub(crate) async fn push_loop(hub: Hub) {
    // reqwest is built without a default TLS crypto provider (an `https://` receiver needs one).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = match reqwest::Client::builder().timeout(PUSH_TIMEOUT).build() {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the receipt callback client");
            return;
        }
    };
    let mut changes = hub.changes();
    let mut plans = hub.plan_changes();
    loop {
        if let Some((url, reports)) = hub.take_push() {
            let body = Value::Array(reports.iter().map(|r| r.callback_entry()).collect());
            if accepted(&client, &url, &body).await {
                hub.pushed(reports.len());
            } else {
                hub.put_back_push(reports);
            }
            continue;
        }
        let (pushing, next_due) = hub.push_schedule();
        if !pushing {
            // Reports wait for `PullSmsSendStatus`: nothing to do until a plan names a URL.
            let _ = plans.changed().await;
            continue;
        }
        let wake = next_due.map_or(IDLE, |due| due.saturating_duration_since(Instant::now().into_std())).min(IDLE);
        tokio::select! {
            _ = time::sleep(wake) => {}
            _ = changes.changed() => {}
            _ = plans.changed() => {}
        }
    }
}

/// Whether the receiver took the reports: HTTP 200 and `{"result": 0}`.
async fn accepted(client: &reqwest::Client, url: &str, body: &Value) -> bool {
    let response = match client.post(url).json(body).send().await {
        Ok(response) => response,
        Err(e) => {
            // Without the URL: its query carries the receiver's token.
            tracing::debug!(error = %e.without_url(), "receipt callback failed");
            return false;
        }
    };
    if !response.status().is_success() {
        tracing::debug!(status = %response.status(), "receipt callback refused");
        return false;
    }
    match response.json::<Value>().await {
        Ok(answer) => answer.get("result").and_then(Value::as_i64) == Some(0),
        Err(_) => false,
    }
}
