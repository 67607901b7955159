//! Reading a whole request once, so it can be recorded before it is judged.

use std::collections::HashMap;

use axum::body::{Body, Bytes};
use axum::extract::{Query, Request};
use axum::http::{Extensions, HeaderMap, Method, Uri};

/// A fully read request.
#[derive(Debug)]
pub(crate) struct Captured {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The body was larger than the reader's limit; `body` is then empty.
    pub oversized: bool,
    params: HashMap<String, String>,
    /// Kept for [`Captured::to_request`] (e.g. the route's `DefaultBodyLimit`).
    extensions: Extensions,
}

impl Captured {
    /// Reads `request`, keeping at most `limit` body bytes.
    pub(crate) async fn read(request: Request, limit: usize) -> Self {
        let (parts, body) = request.into_parts();
        let (body, oversized) = match axum::body::to_bytes(body, limit).await {
            Ok(bytes) => (bytes, false),
            Err(_) => (Bytes::new(), true),
        };
        let params = Query::<HashMap<String, String>>::try_from_uri(&parts.uri).map(|q| q.0).unwrap_or_default();
        Self {
            method: parts.method,
            uri: parts.uri,
            headers: parts.headers,
            body,
            oversized,
            params,
            extensions: parts.extensions,
        }
    }

    pub(crate) fn path(&self) -> &str {
        self.uri.path()
    }

    /// A header's value, if present and visible ASCII.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A decoded query parameter.
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    /// The request again, for extractors such as `Multipart`.
    pub(crate) fn to_request(&self) -> Request {
        let mut request = Request::new(Body::from(self.body.clone()));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        *request.extensions_mut() = self.extensions.clone();
        request
    }

    pub(crate) fn to_record(&self, provider: crate::records::Provider) -> crate::records::RecordedRequest {
        crate::records::RecordedRequest {
            provider,
            method: self.method.to_string(),
            path: self.path().to_string(),
            query: self.uri.query().unwrap_or_default().to_string(),
            headers: self
                .headers
                .iter()
                .map(|(n, v)| (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                .collect(),
            body: self.body.to_vec(),
            received_at_ms: chrono::Utc::now().timestamp_millis(),
        }
    }
}
