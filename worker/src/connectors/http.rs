//! Shared HTTP plumbing of the HTTP connectors: the one `reqwest::Client` of the process, base URLs,
//! and the classification of transport errors and HTTP statuses into [`Failure`]s.
//!
//! Reasons built here never contain a URL: robot webhooks carry their credential in the query
//! (`?key=`), so every `reqwest::Error` is stripped of its URL and every reason is additionally
//! scrubbed of the caller's secrets.

use std::error::Error as _;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use yizhan_state::redact;

use super::call::Failure;

/// Connect timeout: a provider that does not accept a connection within it is down for us.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Whole-request timeout (connect, send, answer).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest provider answer body quoted in a reason.
const SNIPPET_CHARS: usize = 300;
/// A `Retry-After` beyond this is not believed (and would overflow nothing useful anyway).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// The HTTP client every connector shares (one connection pool per process).
///
/// reqwest is built with `rustls-no-provider`, so the ring provider is installed here first; a
/// provider installed earlier by someone else is fine too, hence the ignored result.
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        // Thousands of requests per second go to a handful of hosts: keep plenty of warm
        // connections per host, and drop them before typical server-side idle cut-offs.
        .pool_max_idle_per_host(512)
        .pool_idle_timeout(Duration::from_secs(50))
        .tcp_nodelay(true)
        .tcp_keepalive(Duration::from_secs(30))
        // Providers answer directly; a redirect would change the signed host, so it is an answer
        // to classify, not to follow.
        .redirect(reqwest::redirect::Policy::none())
        // Retrying is the pipeline's, which classifies every failure. reqwest's own layer only
        // replays HTTP/2 refusals (this client speaks HTTP/1.1), yet copies every request for it.
        .retry(reqwest::retry::never().max_retries_per_request(0))
        .build()
        .expect("the HTTP client builds once a TLS crypto provider is installed")
}

/// The base URL of a connector: the config's `endpoint` override, else the provider's default,
/// without trailing slash (paths are appended as `{base}{path}`).
pub fn base_url(endpoint: Option<&str>, default: &str) -> String {
    endpoint.unwrap_or(default).trim_end_matches('/').to_string()
}

/// `err` and its sources, `: `-joined, without any URL.
fn describe(err: reqwest::Error) -> String {
    let err = err.without_url();
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // hyper-util repeats its source inside its own message sometimes; skip exact repeats.
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Classifies an error of `RequestBuilder::send` (or of reading the answer's body).
///
/// * connect errors (including connect timeouts): the request never left → [`Failure::Unreachable`];
/// * a builder error (a URL reqwest refuses) cannot succeed later → [`Failure::Permanent`];
/// * anything else (timeouts, resets and body errors once connected) may have reached the provider →
///   [`Failure::Ambiguous`].
///
/// `secrets` are scrubbed from the reason in case a nested error quotes them.
pub fn transport_failure(err: reqwest::Error, secrets: &[&str]) -> Failure {
    let connect = err.is_connect();
    let timeout = err.is_timeout();
    let builder = err.is_builder();
    let text = redact::secrets(&describe(err), secrets);
    if connect {
        Failure::Unreachable { reason: format!("cannot connect to the provider: {text}") }
    } else if builder {
        Failure::permanent(format!("cannot build the request: {text}"))
    } else if timeout {
        Failure::Ambiguous { reason: format!("no answer within the timeout after the request was sent: {text}") }
    } else {
        Failure::Ambiguous { reason: format!("the connection failed after the request was sent: {text}") }
    }
}

/// The `Retry-After` header as a delay, when it is a number of seconds.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

/// Whether an HTTP status is worth retrying: 408, 429 and 5xx.
pub fn is_retryable_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::REQUEST_TIMEOUT || status.is_server_error()
}

/// `HTTP 503 Service Unavailable: <start of the body>`, scrubbed of `secrets`.
pub fn status_reason(status: StatusCode, body: &[u8], secrets: &[&str]) -> String {
    let mut reason = format!("HTTP {status}");
    let snippet = snippet(body);
    if !snippet.is_empty() {
        reason.push_str(": ");
        reason.push_str(&snippet);
    }
    redact::secrets(&reason, secrets)
}

/// Classifies an answer whose status is not a success: 429 throttles the config, 408 and 5xx are
/// transient (both honouring `Retry-After`), anything else is permanent.
pub fn status_failure(status: StatusCode, headers: &HeaderMap, body: &[u8], secrets: &[&str]) -> Failure {
    let reason = status_reason(status, body, secrets);
    if status == StatusCode::TOO_MANY_REQUESTS {
        Failure::Throttled { reason, retry_after: retry_after(headers) }
    } else if is_retryable_status(status) {
        Failure::Transient { reason, retry_after: retry_after(headers), progress: None }
    } else {
        Failure::Permanent { reason, progress: None }
    }
}

/// [`status_failure`] of a whole answer. Its body is only quoted, so a body that cannot be read
/// changes nothing: the provider has answered.
pub async fn response_failure(response: reqwest::Response, secrets: &[&str]) -> Failure {
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.unwrap_or_default();
    status_failure(status, &headers, &body, secrets)
}

/// At most `SNIPPET_CHARS` characters of a body, on one line.
pub fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let mut out: String = text.chars().take(SNIPPET_CHARS).map(|c| if c.is_control() { ' ' } else { c }).collect();
    if text.chars().count() > SNIPPET_CHARS {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa";

    #[test]
    fn base_url_prefers_the_endpoint_and_trims_slashes() {
        assert_eq!(base_url(None, "https://qyapi.weixin.qq.com"), "https://qyapi.weixin.qq.com");
        assert_eq!(base_url(Some("http://127.0.0.1:8080/"), "https://x"), "http://127.0.0.1:8080");
        assert_eq!(base_url(Some("http://gw/prefix//"), "https://x"), "http://gw/prefix");
    }

    #[test]
    fn retry_after_reads_seconds_only() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(RETRY_AFTER, "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, "99999999".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn statuses_are_classified() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "3".parse().unwrap());
        match status_failure(StatusCode::TOO_MANY_REQUESTS, &headers, b"busy", &[]) {
            Failure::Throttled { reason, retry_after } => {
                assert_eq!(retry_after, Some(Duration::from_secs(3)));
                assert!(reason.starts_with("HTTP 429"), "{reason}");
            }
            other => panic!("429: {other:?}"),
        }
        assert_eq!(
            status_failure(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), b"", &[]),
            Failure::throttled("HTTP 429 Too Many Requests", None)
        );
        for status in [408, 500, 502, 503, 504] {
            let status = StatusCode::from_u16(status).unwrap();
            match status_failure(status, &headers, b"busy", &[]) {
                Failure::Transient { reason, retry_after, .. } => {
                    assert_eq!(retry_after, Some(Duration::from_secs(3)));
                    assert!(reason.starts_with(&format!("HTTP {}", status.as_u16())), "{reason}");
                }
                other => panic!("{status}: {other:?}"),
            }
        }
        for status in [400, 401, 403, 404, 302] {
            let status = StatusCode::from_u16(status).unwrap();
            assert!(matches!(status_failure(status, &headers, b"", &[]), Failure::Permanent { .. }), "{status}");
        }
    }

    #[test]
    fn status_reasons_are_short_and_scrubbed() {
        let body = format!("<html>bad gateway for /cgi-bin/webhook/send?key={KEY}</html>{}", "x".repeat(1000));
        let reason = status_reason(StatusCode::BAD_GATEWAY, body.as_bytes(), &[KEY]);
        assert!(!reason.contains(KEY), "{reason}");
        assert!(reason.contains("key=***"), "{reason}");
        assert!(reason.chars().count() < 400, "{reason}");
    }

    /// A refused connection is unreachable (retried, or sent to the fallback), and its reason never quotes the URL (and its key).
    #[tokio::test]
    async fn connect_errors_are_unreachable_and_never_show_the_url() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let err = client()
            .post(format!("http://127.0.0.1:{port}/cgi-bin/webhook/send"))
            .query(&[("key", KEY)])
            .send()
            .await
            .unwrap_err();
        assert!(format!("{err}").contains(KEY), "reqwest itself would leak the key: {err}");
        let failure = transport_failure(err, &[]);
        assert!(matches!(failure, Failure::Unreachable { .. }), "{failure:?}");
        assert!(!failure.reason().contains(KEY), "{}", failure.reason());
        assert!(!failure.reason().contains("webhook"), "{}", failure.reason());
    }

    /// A server that takes the request and never answers: ambiguous, and no URL in the reason.
    #[tokio::test]
    async fn timeouts_after_sending_are_ambiguous_and_never_show_the_url() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            // Accept and hold the connection open without answering.
            let (socket, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let _ = socket.readable().await;
            let _ = socket.try_read(&mut buf);
            std::future::pending::<()>().await;
            drop(socket);
        });
        let err = client()
            .post(format!("http://127.0.0.1:{port}/cgi-bin/webhook/send"))
            .query(&[("key", KEY)])
            .timeout(Duration::from_millis(200))
            .body("{}")
            .send()
            .await
            .unwrap_err();
        let failure = transport_failure(err, &[KEY]);
        assert!(matches!(failure, Failure::Ambiguous { .. }), "{failure:?}");
        assert!(!failure.reason().contains(KEY), "{}", failure.reason());
        assert!(failure.reason().contains("timeout"), "{}", failure.reason());
        server.abort();
    }

    #[test]
    fn the_client_builds_twice() {
        // Installing the provider a second time must not panic.
        let _ = client();
        let _ = client();
    }
}
