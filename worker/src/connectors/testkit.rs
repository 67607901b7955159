//! Scaffolding shared by every connector kind's unit tests: building a connector from its TOML,
//! running one action, reading what the fake HTTP server received, and checking that none of the
//! config's secrets leaks into a reason, a progress, a result or a log line.

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tracing::instrument::WithSubscriber;
use wiremock::matchers::{any, method};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::config::{Config, ConfigError, ConnectorConfig};
use crate::connectors::{Call, Connector, Failure, Success};

/// One kind under test and the secrets its test configs hold.
pub(crate) struct Kit {
    pub(crate) kind: &'static str,
    /// Everything that must never leave the connector: keys, tokens, auth codes, signatures.
    pub(crate) secrets: &'static [&'static str],
}

impl Kit {
    /// The config `name` of this kind in `toml` (one `[connectors.<kind>.<name>]` table).
    pub(crate) fn config(&self, toml: &str, name: &str) -> ConnectorConfig {
        Config::parse(toml, &|_| None).unwrap().get(self.kind, name).unwrap().clone()
    }

    /// The connector `new` builds from the config `name` in `toml`.
    pub(crate) fn build<C>(
        &self,
        toml: &str,
        name: &str,
        new: impl FnOnce(&ConnectorConfig) -> Result<C, ConfigError>,
    ) -> C {
        new(&self.config(toml, name)).unwrap()
    }

    /// The first attempt of the nil job, without progress.
    pub(crate) fn call<'a>(&self, action: &str, params: &'a Value) -> Call<'a> {
        Call {
            job_id: uuid::Uuid::nil(),
            action: yizhan_schemas::find_action(self.kind, action).unwrap(),
            params,
            attempt: 1,
            progress: None,
        }
    }

    /// Runs `action` once; see [`Kit::execute`].
    pub(crate) async fn run(
        &self,
        connector: &impl Connector,
        action: &str,
        params: &Value,
    ) -> Result<Success, Failure> {
        self.execute(connector, self.call(action, params)).await
    }

    /// Executes `call` with every log event captured, then asserts that no secret leaked into the
    /// outcome or the logs, whatever the outcome.
    pub(crate) async fn execute(&self, connector: &impl Connector, call: Call<'_>) -> Result<Success, Failure> {
        let logs = Logs::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer({
                let logs = logs.clone();
                move || logs.clone()
            })
            .finish();
        // Per poll rather than a thread-wide guard, so the future stays Send for tokio::spawn.
        let outcome = connector.execute(call).with_subscriber(subscriber).await;
        self.assert_no_leak(&outcome, &logs.text());
        outcome
    }

    /// Asserts that no secret appears in a Failure's reason or progress, a Success's result, or
    /// `logs`.
    pub(crate) fn assert_no_leak(&self, outcome: &Result<Success, Failure>, logs: &str) {
        let mut places = vec![("the logs", logs.to_owned())];
        match outcome {
            Ok(success) => places.push(("the result", text_of(success.result.as_ref()))),
            Err(failure) => {
                places.push(("the reason", failure.reason().to_owned()));
                if let Failure::Transient { progress, .. } | Failure::Permanent { progress, .. } = failure {
                    places.push(("the progress", text_of(progress.as_ref())));
                }
            }
        }
        // Anything else the outcome carries (retry hints, variants added later).
        places.push(("the outcome", format!("{outcome:?}")));
        for secret in self.secrets {
            for (place, text) in &places {
                assert!(!text.contains(secret), "{secret:?} leaked into {place}: {text}");
            }
        }
    }
}

fn text_of(value: Option<&Value>) -> String {
    value.map(Value::to_string).unwrap_or_default()
}

/// What the capturing subscriber wrote.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Answers every request with `template`.
pub(crate) async fn answer_with(server: &MockServer, template: ResponseTemplate) {
    Mock::given(any()).respond_with(template).mount(server).await;
}

/// Answers every POST with `template` (anything else gets wiremock's 404).
pub(crate) async fn answer_posts_with(server: &MockServer, template: ResponseTemplate) {
    Mock::given(method("POST")).respond_with(template).mount(server).await;
}

/// The one request the server received (fails if there were more or none).
pub(crate) async fn only_request(server: &MockServer) -> Request {
    let mut requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1, "{requests:?}");
    requests.remove(0)
}

/// A request's body as JSON.
pub(crate) fn json_body(request: &Request) -> Value {
    serde_json::from_slice(&request.body).unwrap()
}

/// The test of the kit itself: a leak is caught wherever it is.
#[cfg(test)]
mod tests {
    use super::*;

    const KIT: Kit = Kit { kind: "juzibot", secrets: &["s3cr3t"] };

    #[test]
    #[should_panic(expected = "leaked into the reason")]
    fn a_secret_in_a_reason_is_caught() {
        KIT.assert_no_leak(&Err(Failure::permanent("bad key s3cr3t")), "");
    }

    #[test]
    #[should_panic(expected = "leaked into the result")]
    fn a_secret_in_a_result_is_caught() {
        KIT.assert_no_leak(
            &Ok(Success { result: Some(serde_json::json!({"k": "s3cr3t"})), receipts: Default::default() }),
            "",
        );
    }

    #[test]
    #[should_panic(expected = "leaked into the logs")]
    fn a_secret_in_the_logs_is_caught() {
        KIT.assert_no_leak(&Ok(Success::default()), "GET /?token=s3cr3t");
    }

    /// Logs the secret, as a careless connector would.
    struct Chatty;

    #[async_trait::async_trait]
    impl Connector for Chatty {
        async fn execute(&self, _call: Call<'_>) -> Result<Success, Failure> {
            tracing::debug!(url = "https://example.com/?token=s3cr3t", "calling");
            Ok(Success::default())
        }
    }

    #[tokio::test]
    #[should_panic(expected = "leaked into the logs")]
    async fn a_secret_logged_by_the_connector_is_caught() {
        let _ = KIT.run(&Chatty, "list_channels", &serde_json::json!({})).await;
    }

    #[test]
    fn a_clean_outcome_passes() {
        KIT.assert_no_leak(&Err(Failure::permanent("bad key ***")), "GET /?token=***");
    }
}
