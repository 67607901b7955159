//! yizhan-sandbox: a local, strict stand-in for the provider HTTP APIs yizhan calls.
//!
//! "A fake that accepts anything proves nothing": the sandbox verifies TC3-HMAC-SHA256 signatures
//! and robot keys, validates bodies, enforces the documented limits, and answers with the
//! providers' own success and error shapes. Tests program faults and read what the "providers" did
//! through [`SandboxState`] (or over HTTP under `/_sandbox/`).
//!
//! | path | provider |
//! |---|---|
//! | `POST /` | Tencent Cloud API 3.0 ([`tencent`]; `SendSms`, `PullSmsSendStatus`, SES identities, `SendEmail`, `GetSendEmailStatus`) |
//! | `POST /cgi-bin/webhook/send?key=` | WeCom group robot ([`wecom_robot`]) |
//! | `POST /cgi-bin/webhook/upload_media?key=&type=file` | WeCom group robot upload |
//! | `POST /robot/send?access_token=[&timestamp=&sign=]` | DingTalk robot ([`dingtalk_robot`]) |
//! | `POST /open-apis/bot/v2/hook/{hook_id}` | Feishu bot ([`feishu`]) |
//! | `/open-apis/auth/v3/…`, `/open-apis/contact/v3/…` | Feishu app: token, departments, users |
//! | `/api/v1/channel/list`, `/api/v1/contactWay/{add,get,list}` | Juzibot ([`juzibot`]) |
//! | `/v1/meetings`, `/v1/meetings/{id}[/cancel,/dismiss,/participants]` | Tencent Meeting ([`tencent_meeting`]) |
//! | `/_sandbox/*` | control: faults, delay, receipts, records, stats, reset |
//!
//! Delivery receipts of the SMS accepted are reported as a [`ReceiptPlan`] says: POSTed to a
//! status callback URL, or queued for `PullSmsSendStatus`, delayed, duplicated, reordered, `FAIL`
//! for the numbers it names.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use yizhan_sandbox::{Fault, Sandbox, SandboxConfig};
//! let sandbox = Sandbox::start(SandboxConfig::default_accounts(), "127.0.0.1:0".parse().unwrap()).await?;
//! sandbox.state().push_fault(Fault::tencent_number_status("+8613800000001", "LimitExceeded.PhoneNumberDailyLimit")).unwrap();
//! // ... point a connector's `endpoint` at sandbox.url() and run it ...
//! sandbox.state().wait_for_sms(1, std::time::Duration::from_secs(5)).await.unwrap();
//! sandbox.shutdown().await;
//! # Ok(()) }
//! ```

mod capture;
mod config;
mod control;
pub mod dingtalk_robot;
pub mod directory;
mod faults;
pub mod feishu;
mod hub;
pub mod juzibot;
mod phone;
mod receipt_push;
mod receipts;
mod records;
mod state;
pub mod tencent;
pub mod tencent_meeting;
mod throttle;
pub mod wecom;
mod wecom_contacts;
pub mod wecom_events;
pub mod wecom_robot;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use config::{
    DEFAULT_DINGTALK_ROBOTS, DEFAULT_FEISHU_APP, DEFAULT_FEISHU_HOOKS, DEFAULT_JUZIBOT_TOKEN, DEFAULT_ROBOT_KEYS,
    DEFAULT_SDK_APP_ID, DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY, DEFAULT_SIGN_NAME, FeishuApp, SandboxConfig,
    SignedRobot, SmsTemplate, TencentAccount,
};
pub use config::{DEFAULT_MEETING_APP, DEFAULT_SES_DOMAIN, MeetingApp};
pub use config::{DEFAULT_WECOM_CORP, WecomCorp};
pub use faults::{Fault, FaultEffect, FaultError, LostAnswer};
pub use receipts::ReceiptPlan;
pub use records::{Provider, RecordedRequest, Rejection, RobotMessage, SentSms, Stats, UploadedMedia};
pub use state::{SandboxState, WaitTimeout};

/// How long [`Sandbox::shutdown`] lets in-flight requests finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The sandbox's HTTP routes around `state`.
pub fn router(state: SandboxState) -> Router {
    Router::new()
        .route("/", any(tencent::handle))
        .route(wecom_robot::SEND_PATH, any(wecom_robot::send))
        .route(
            wecom_robot::UPLOAD_PATH,
            any(wecom_robot::upload_media).layer(DefaultBodyLimit::max(wecom_robot::BODY_LIMIT)),
        )
        .route(dingtalk_robot::SEND_PATH, any(dingtalk_robot::send))
        .route(feishu::HOOK_ROUTE, any(feishu::hook))
        .route(feishu::TOKEN_PATH, any(feishu::tenant_access_token))
        .route(feishu::DEPARTMENTS_PATH, any(feishu::departments))
        .route(feishu::USERS_PATH, any(feishu::users))
        .route(feishu::USERS_ROOT, any(feishu::create_users))
        .route(feishu::DEPARTMENT_ROUTE, any(feishu::department))
        .route(feishu::USER_ROUTE, any(feishu::user))
        .route(juzibot::CHANNELS_PATH, any(juzibot::list_channels))
        .route(juzibot::ADD_PATH, any(juzibot::add_contact_way))
        .route(juzibot::GET_PATH, any(juzibot::get_contact_way))
        .route(juzibot::LIST_PATH, any(juzibot::list_contact_ways))
        .route(tencent_meeting::MEETINGS_PATH, any(tencent_meeting::handle))
        .route(tencent_meeting::MEETING_ROUTE, any(tencent_meeting::handle))
        .route(tencent_meeting::ACTION_ROUTE, any(tencent_meeting::handle))
        .merge(wecom::routes())
        .nest("/_sandbox", control::router())
        .fallback(unknown_path)
        .with_state(state)
}

/// Anything else: recorded, then 404 like an unknown path at the provider.
async fn unknown_path(State(state): State<hub::Hub>, request: Request) -> Response {
    let request = capture::Captured::read(request, 1024 * 1024).await;
    state.record_request(Provider::Unknown, &request);
    tracing::debug!(method = %request.method, path = request.path(), "unknown path");
    (StatusCode::NOT_FOUND, "404 page not found").into_response()
}

/// A running sandbox server. Dropping it stops the server too (without waiting).
#[derive(Debug)]
pub struct Sandbox {
    addr: SocketAddr,
    state: SandboxState,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    /// Sends the SMS status reports to the receipt plan's callback URL.
    receipts: JoinHandle<()>,
}

impl Sandbox {
    /// Binds `addr` (`127.0.0.1:0` picks a free port) and serves until [`Sandbox::shutdown`].
    pub async fn start(config: SandboxConfig, addr: SocketAddr) -> std::io::Result<Sandbox> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = SandboxState::new(config);
        let app = router(state.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    // Also resolves when the sender is dropped.
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "sandbox server failed");
            }
        });
        let receipts = tokio::spawn(receipt_push::push_loop(hub::Hub::from_ref(&state)));
        tracing::info!(%addr, "sandbox started");
        Ok(Sandbox { addr, state, stop: Some(stop), server: Some(server), receipts })
    }

    /// The bound address (the real port when started on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT`, the `endpoint` to give a connector config.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Handle to records and faults (cheap to clone, outlives the server).
    pub fn state(&self) -> SandboxState {
        self.state.clone()
    }

    /// Stops accepting requests, lets in-flight ones finish (up to 5 s), then returns.
    pub async fn shutdown(mut self) {
        self.receipts.abort();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let abort = server.abort_handle();
            if tokio::time::timeout(SHUTDOWN_GRACE, server).await.is_err() {
                abort.abort();
            }
        }
        tracing::info!(addr = %self.addr, "sandbox stopped");
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.receipts.abort();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
