//! The API's check of completion callbacks: a job or campaign whose callback URL names a host
//! `YIZHAN_CALLBACK_ALLOW` does not allow is refused at `$.callback.url` (400), rather than
//! accepted and its callback dead-lettered by the worker, which never calls such a host either.

use yizhan_broker::CallbackAllow;
use yizhan_schemas::{Callback, FieldError};

/// The error refusing `callback`, None when it may be called (or there is none).
pub fn refusal(allow: &CallbackAllow, callback: Option<&Callback>) -> Option<FieldError> {
    let callback = callback?;
    let refuse = |reason: String| Some(FieldError::new("$.callback.url", reason));
    let Ok(url) = reqwest::Url::parse(&callback.url) else {
        return refuse("is not a valid URL".into());
    };
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return refuse("has no host".into());
    };
    if allow.allows(host, port) {
        return None;
    }
    // The allowed hosts are the operator's to tell; the request learns only that this one is not.
    refuse(format!("host {host}:{port} is not one callbacks may reach (the operator's YIZHAN_CALLBACK_ALLOW)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn callback(url: &str) -> Callback {
        Callback { url: url.into(), secret: Some("s3cr3t-key".into()) }
    }

    #[test]
    fn allowed_hosts_pass_and_others_are_named_at_the_url() {
        let allow = CallbackAllow::parse("hooks.example.com,127.0.0.1:8080").unwrap();
        assert_eq!(refusal(&allow, None), None);
        assert_eq!(refusal(&allow, Some(&callback("https://hooks.example.com/done?token=t"))), None);
        assert_eq!(refusal(&allow, Some(&callback("http://127.0.0.1:8080/x"))), None);
        let error = refusal(&allow, Some(&callback("http://127.0.0.1:9090/x?token=t"))).unwrap();
        assert_eq!(error.path, "$.callback.url");
        assert_eq!(
            error.reason,
            "host 127.0.0.1:9090 is not one callbacks may reach (the operator's YIZHAN_CALLBACK_ALLOW)"
        );
        assert!(!error.to_string().contains("s3cr3t-key") && !error.to_string().contains("token"));
        // By default, no host at all.
        assert!(refusal(&CallbackAllow::default(), Some(&callback("https://hooks.example.com/"))).is_some());
        // What the URL parser makes of a tricky authority is what is checked (and what the worker calls).
        assert!(refusal(&allow, Some(&callback("https://hooks.example.com@evil.example.net/"))).is_some());
    }
}
