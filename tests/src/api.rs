//! A running `yizhan-producer serve` for a test's [`Harness`]: on a free port, with the
//! harness's environment and one bearer token, ready once `/readyz` answers, killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{Harness, WAIT, binary};

/// The bearer token every [`Api`] accepts.
pub const TOKEN: &str = "test-api-token";

/// A `yizhan-producer serve` process and a client for it.
pub struct Api {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// Its stderr, shown when it does not start.
    pub log: PathBuf,
    client: reqwest::Client,
}

impl Api {
    /// Signs in to the console over plain HTTP (no browser) with [`TOKEN`]: the session cookie
    /// (`yizhan_session=...`).
    pub async fn session_cookie(&self, http: &reqwest::Client) -> String {
        let (csrf, login_cookie) = self.login_form(http).await;
        let signed_in = self.post_login(http, Some(&login_cookie), &[("token", TOKEN), ("csrf", csrf.as_str())]).await;
        assert_eq!(signed_in.status(), 303);
        session_set_cookie(&signed_in).split(';').next().unwrap().to_string()
    }

    /// `POST /ui/login` with the form `fields`, and the login form's cookie when given.
    pub async fn post_login(
        &self,
        http: &reqwest::Client,
        cookie: Option<&str>,
        fields: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut request = http
            .post(format!("{}/ui/login", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(fields));
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        request.send().await.unwrap()
    }

    /// The console's login form: its CSRF token and cookie, from `GET /ui/login`.
    pub async fn login_form(&self, http: &reqwest::Client) -> (String, String) {
        let response = http.get(format!("{}/ui/login", self.base)).send().await.unwrap();
        let cookie = response.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
        let html = response.text().await.unwrap();
        (hidden_csrf(&html), cookie)
    }

    /// Starts the API on `h`'s broker, state store and config.
    pub async fn start(h: &Harness) -> Api {
        Api::start_with(h, &[]).await
    }

    /// Starts the API with `env` on top of `h`'s environment.
    pub async fn start_with(h: &Harness, env: &[(&str, &str)]) -> Api {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = h.dir.path().join(format!("api-{port}.log"));
        let child = Command::new(binary("yizhan-producer"))
            .envs(h.env())
            .env("YIZHAN_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("YIZHAN_API_TOKENS", TOKEN)
            .envs(env.iter().copied())
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn yizhan-producer serve");
        let api = Api { child, base: format!("http://127.0.0.1:{port}"), log, client: reqwest::Client::new() };
        let deadline = Instant::now() + WAIT;
        while !api.client.get(format!("{}/readyz", api.base)).send().await.is_ok_and(|r| r.status().is_success()) {
            assert!(Instant::now() < deadline, "API not ready; log:\n{}", std::fs::read_to_string(&api.log).unwrap());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        api
    }

    /// One authenticated request; the status and the JSON body (null when it has none).
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> (u16, Value) {
        self.call_as(TOKEN, method, path, body).await
    }

    /// [`Api::call`] with another bearer token (a scoped one of a token file).
    pub async fn call_as(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let response = self.request_as(token, method, path, body).await;
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The raw response of one request with `token`, for its headers.
    pub async fn request_as(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> reqwest::Response {
        let mut request = self.client.request(method, format!("{}{path}", self.base)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.unwrap()
    }

    /// The process id, for signals (SIGHUP reloads).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// `GET /v1/jobs/{id}`: its status code and body.
    pub async fn job(&self, id: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, &format!("/v1/jobs/{id}"), None).await
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An `application/x-www-form-urlencoded` body.
pub fn form_body(fields: &[(&str, &str)]) -> String {
    let encode = |text: &str| {
        text.bytes()
            .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
            .collect::<String>()
    };
    fields.iter().map(|(name, value)| format!("{}={}", encode(name), encode(value))).collect::<Vec<_>>().join("&")
}

/// The `Set-Cookie` of a sign-in's session cookie, attributes included.
pub fn session_set_cookie(signed_in: &reqwest::Response) -> String {
    signed_in
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("yizhan_session="))
        .expect("a session cookie")
}

/// The value of a console form's hidden `csrf` field.
pub fn hidden_csrf(html: &str) -> String {
    let start = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + "name=\"csrf\" value=\"".len();
    html[start..].split('"').next().unwrap().to_string()
}
