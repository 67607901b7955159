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
