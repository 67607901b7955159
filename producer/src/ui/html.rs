//! The console's HTML: escaping, the page frame and small shared pieces.

use std::fmt::Write;
use std::time::{Duration, UNIX_EPOCH};

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

/// Text made safe for HTML content and attribute values.
pub(super) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The pages of the navigation bar: (path, title).
const NAV: &[(&str, &str)] = &[
    ("/ui", "Overview"),
    ("/ui/campaigns", "Campaigns"),
    ("/ui/jobs", "Jobs"),
    ("/ui/dead", "Dead letters"),
    ("/ui/configs", "Configs"),
];

/// A whole page: the navigation (with `active` marked), a sign-out form and `body`.
pub(super) fn page(title: &str, active: &str, csrf: &str, body: &str) -> Html<String> {
    let mut nav = String::new();
    for (path, name) in NAV {
        let class = if *path == active { " class=\"active\"" } else { "" };
        let _ = write!(nav, "<a href=\"{path}\"{class}>{name}</a>");
    }
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · yizhan</title><link rel=\"stylesheet\" href=\"/ui/static/console.css\"></head>\
         <body><header><span class=\"brand\">yizhan</span><nav>{nav}</nav>\
         <form method=\"post\" action=\"/ui/logout\" class=\"logout\">{csrf_field}\
         <button type=\"submit\">Sign out</button></form></header>\
         <main><h1>{title}</h1>{body}</main></body></html>",
        title = esc(title),
        csrf_field = csrf_field(csrf),
    ))
}

/// The hidden CSRF field every form carries.
pub(super) fn csrf_field(csrf: &str) -> String {
    format!("<input type=\"hidden\" name=\"csrf\" value=\"{}\">", esc(csrf))
}

/// The login page.
pub(super) fn login_page(csrf: &str, problem: Option<&str>) -> String {
    let problem = problem.map(|p| format!("<p class=\"error\">{}</p>", esc(p))).unwrap_or_default();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sign in · yizhan</title>\
         <link rel=\"stylesheet\" href=\"/ui/static/console.css\"></head><body class=\"login\"><main>\
         <h1>yizhan console</h1>{problem}\
         <form method=\"post\" action=\"/ui/login\" id=\"login\">{csrf}\
         <label for=\"token\">API token</label>\
         <input type=\"password\" id=\"token\" name=\"token\" autocomplete=\"current-password\" required autofocus>\
         <button type=\"submit\">Sign in</button></form></main></body></html>",
        csrf = csrf_field(csrf),
    )
}

/// A message box: `kind` is `note`, `ok` or `error`.
pub(super) fn notice(kind: &str, text: &str) -> String {
    format!("<p class=\"{kind}\">{}</p>", esc(text))
}

/// A page that says what went wrong (the text is escaped, and never carries a secret).
pub(super) fn problem_page(status: StatusCode, title: &str, active: &str, csrf: &str, text: &str) -> Response {
    (status, page(title, active, csrf, &notice("error", text))).into_response()
}

/// JSON, pretty-printed and escaped, in a `<pre>`.
pub(super) fn json_block(value: &serde_json::Value) -> String {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    format!("<pre class=\"json\">{}</pre>", esc(&text))
}

/// Milliseconds since the epoch as RFC 3339 (UTC, seconds).
pub(super) fn time(ms: i64) -> String {
    u64::try_from(ms)
        .map(|ms| humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(esc(r#"<a href="x">'&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }

    #[test]
    fn pages_carry_the_csrf_token_in_their_forms() {
        let Html(html) = page("T<", "/ui/dead", "tok\"en", "<p>b</p>");
        assert!(html.contains("name=\"csrf\" value=\"tok&quot;en\""));
        assert!(html.contains("<title>T&lt; · yizhan</title>"));
        assert!(html.contains("<a href=\"/ui/dead\" class=\"active\">"));
    }
}
