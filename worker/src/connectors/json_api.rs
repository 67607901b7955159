//! Small pieces shared by the JSON-over-HTTP connectors added after `wecom_robot` (DingTalk, Feishu,
//! Juzibot): base URL checks, query params from job params, answer reading.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Map, Value};
use yizhan_schemas::Method;

use super::call::Failure;
use super::http;
use crate::config::{ConfigError, ConnectorConfig};

/// The config's `endpoint` (or `default`), checked to be an http(s) URL with a host.
pub fn checked_base(config: &ConnectorConfig, default: &str) -> Result<String, ConfigError> {
    let base = http::base_url(config.common.endpoint.as_deref(), default);
    let endpoint_error = |reason: String| ConfigError::field(format!("{}.endpoint", config.path()), reason);
    let url = reqwest::Url::parse(&base).map_err(|e| endpoint_error(format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(endpoint_error("must be an http:// or https:// URL with a host".into()));
    }
    Ok(base)
}

/// The catalog's HTTP method as reqwest's.
pub fn method(method: Method) -> reqwest::Method {
    match method {
        Method::Get => reqwest::Method::GET,
        Method::Post => reqwest::Method::POST,
        Method::Put => reqwest::Method::PUT,
        Method::Delete => reqwest::Method::DELETE,
        Method::Patch => reqwest::Method::PATCH,
    }
}

/// The params as query pairs, sorted by name (whatever the map's order), each name renamed per `renames`. Strings go as they
/// are, numbers and booleans as JSON text; nulls are left out.
pub fn query_pairs(params: &Value, renames: &[(&str, &str)]) -> Result<Vec<(String, String)>, Failure> {
    let params = params.as_object().ok_or_else(|| Failure::permanent("params must be an object"))?;
    let mut pairs = Vec::with_capacity(params.len());
    for (name, value) in params {
        let wire = renames.iter().find(|(param, _)| param == name).map_or(name.as_str(), |(_, wire)| wire);
        let text = match value {
            Value::Null => continue,
            Value::String(s) => s.clone(),
            Value::Bool(_) | Value::Number(_) => value.to_string(),
            Value::Array(_) | Value::Object(_) => {
                return Err(Failure::permanent(format!("params.{name}: cannot be sent as a query parameter")));
            }
        };
        pairs.push((wire.to_string(), text));
    }
    pairs.sort();
    Ok(pairs)
}

/// `path` with each `{name}` segment replaced by the param `name` (taken out of `params`),
/// percent-encoded; a missing or empty one is a permanent failure naming it.
pub fn fill_path(path: &str, params: &mut Map<String, Value>) -> Result<String, Failure> {
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        let end = rest[start..].find('}').map_or(rest.len(), |e| start + e);
        let name = &rest[start + 1..end];
        let value = match params.remove(name) {
            Some(Value::String(s)) if !s.is_empty() => s,
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(Failure::permanent(format!("params.{name}: required in the path"))),
        };
        out.push_str(&rest[..start]);
        // A path segment: unreserved bytes as they are, the rest `%XX` (no `+` for spaces).
        for byte in value.bytes() {
            match byte {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(char::from(byte)),
                _ => out.push_str(&format!("%{byte:02X}")),
            }
        }
        rest = rest.get(end + 1..).unwrap_or_default();
    }
    out.push_str(rest);
    Ok(out)
}

/// A provider answer, read whole.
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status, before any provider code in the body is looked at.
    pub status: StatusCode,
    /// The response headers (e.g. a rate-limit reset hint).
    pub headers: HeaderMap,
    /// The raw body, whatever its content type.
    pub body: Vec<u8>,
    /// The body, when it is a JSON object.
    pub json: Option<Map<String, Value>>,
}

impl Answer {
    /// Reads the whole answer; a body cut off is [`Failure::Ambiguous`] (the request was sent), `secrets` scrubbed.
    pub async fn read(response: reqwest::Response, secrets: &[&str]) -> Result<Answer, Failure> {
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(|e| http::transport_failure(e, secrets))?.to_vec();
        let json = match serde_json::from_slice(&body) {
            Ok(Value::Object(object)) => Some(object),
            _ => None,
        };
        Ok(Answer { status, headers, body, json })
    }

    /// An integer field of the JSON body.
    pub fn code(&self, field: &str) -> Option<i64> {
        self.json.as_ref()?.get(field)?.as_i64()
    }

    /// A string field of the JSON body (`""` when absent).
    pub fn text(&self, field: &str) -> &str {
        self.json.as_ref().and_then(|j| j.get(field)).and_then(Value::as_str).unwrap_or_default()
    }

    /// A header holding a number of seconds (such as Feishu's `x-ogw-ratelimit-reset`).
    pub fn seconds_header(&self, name: &str) -> Option<Duration> {
        let seconds: u64 = self.headers.get(name)?.to_str().ok()?.trim().parse().ok()?;
        Some(Duration::from_secs(seconds.min(24 * 3600)))
    }

    /// The shared classification of a non-success status.
    pub fn status_failure(&self, secrets: &[&str]) -> Failure {
        http::status_failure(self.status, &self.headers, &self.body, secrets)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn query_pairs_render_scalars_and_rename() {
        let params = json!({"current": 2, "page_size": 50, "fetch_child": true, "id": "od-1", "gone": null});
        let pairs = query_pairs(&params, &[("page_size", "pageSize")]).unwrap();
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        assert_eq!(pairs, [("current", "2"), ("fetch_child", "true"), ("id", "od-1"), ("pageSize", "50")]);
        assert!(matches!(query_pairs(&json!({"a": [1]}), &[]), Err(Failure::Permanent { .. })));
    }

    #[test]
    fn path_params_are_filled_and_taken_out() {
        let mut params = json!({"user_id": "ou_a/b", "name": "x"}).as_object().cloned().unwrap();
        assert_eq!(
            fill_path("/open-apis/contact/v3/users/{user_id}", &mut params).unwrap(),
            "/open-apis/contact/v3/users/ou_a%2Fb"
        );
        assert_eq!(params.len(), 1);
        assert!(matches!(fill_path("/x/{user_id}", &mut params), Err(Failure::Permanent { .. })));
    }
}
