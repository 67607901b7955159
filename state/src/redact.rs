//! Redaction, the one home of it for every crate: secrets never reach logs, errors, results or
//! dead-letter headers. It lives here, in the lowest crate both binaries and the store itself use.

/// `text` with every occurrence of each non-empty secret replaced by `***`.
pub fn secrets<S: AsRef<str>>(text: &str, secrets: &[S]) -> String {
    let mut text = text.to_string();
    for secret in secrets.iter().map(AsRef::as_ref).filter(|s| !s.is_empty()) {
        if text.contains(secret) {
            text = text.replace(secret, "***");
        }
    }
    text
}

/// `url` with its credentials masked, fit for errors and logs: the userinfo before `@` becomes
/// `***`, and `pass=` / `password=` query values (Redis unix-socket URLs) become `***`.
/// Conservative: everything before the last `@` after the scheme is masked, user name included.
pub fn url_credentials(url: &str) -> String {
    // A list of URLs (the nodes of a RabbitMQ cluster): each one masked on its own.
    let parts: Vec<&str> = url.split(',').collect();
    if parts.len() > 1 && parts.iter().all(|part| part.contains("://")) {
        return parts.iter().map(|part| one_url_credentials(part)).collect::<Vec<_>>().join(",");
    }
    one_url_credentials(url)
}

fn one_url_credentials(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let rest = match rest.rfind('@') {
        Some(at) => format!("***{}", &rest[at..]),
        None => rest.to_string(),
    };
    let rest = match rest.split_once('?') {
        Some((head, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _)) if name.eq_ignore_ascii_case("pass") || name.eq_ignore_ascii_case("password") => {
                        format!("{name}=***")
                    }
                    _ => pair.to_string(),
                })
                .collect();
            format!("{head}?{}", query.join("&"))
        }
        None => rest,
    };
    format!("{scheme}{rest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_and_empty_ones_ignored() {
        assert_eq!(secrets("abc", &["", "b"]), "a***c");
        assert_eq!(secrets("key=k1&k1", &[String::from("k1")]), "key=***&***");
        assert_eq!(secrets("nothing", &[] as &[&str]), "nothing");
    }

    #[test]
    fn url_credentials_are_masked() {
        assert_eq!(url_credentials("redis://:pw@host:6379/0"), "redis://***@host:6379/0");
        assert_eq!(url_credentials("redis://user:pw@host:6379/0"), "redis://***@host:6379/0");
        assert_eq!(url_credentials("redis://host:6379/0"), "redis://host:6379/0");
        assert_eq!(url_credentials("bogus:pw@x"), "***@x");
        assert_eq!(url_credentials("redis+unix:///run/r.sock?db=1&pass=pw"), "redis+unix:///run/r.sock?db=1&pass=***");
        assert_eq!(url_credentials("sqlite::memory:"), "sqlite::memory:");
        assert!(!url_credentials("redis://:p@ss@host/0").contains("ss"));
        // The broker's URLs (formerly redacted by a copy in yizhan-broker that kept the user name).
        assert_eq!(url_credentials("amqp://guest:guest@127.0.0.1:5672/%2f"), "amqp://***@127.0.0.1:5672/%2f");
        assert_eq!(url_credentials("amqp://h:5672"), "amqp://h:5672");
        assert_eq!(
            url_credentials("amqp://u:pw@a:5672/%2f,amqp://u:pw@b:5673/%2f"),
            "amqp://***@a:5672/%2f,amqp://***@b:5673/%2f"
        );
        assert_eq!(url_credentials("amqp://u:p,w@a/v,amqp://u:p,w@b/v"), "amqp://***@b/v");
        assert_eq!(url_credentials("redis+sentinel://:pw@h:1,h:2/m/0"), "redis+sentinel://***@h:1,h:2/m/0");
    }
}
