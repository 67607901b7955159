//! What the fake providers saw and did: raw requests, and the side effects they accepted.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The fake providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// Tencent Cloud API 3.0 (`POST /`).
    Tencent,
    /// WeCom group robot (`/cgi-bin/webhook/*`).
    WecomRobot,
    /// DingTalk custom robot (`/robot/send`).
    DingtalkRobot,
    /// Feishu custom bot (`/open-apis/bot/v2/hook/*`).
    FeishuRobot,
    /// Feishu app API (`tenant_access_token`, contact reads).
    Feishu,
    /// Juzibot hub API (`/api/v1/*`).
    Juzibot,
    /// Tencent Meeting REST API (`/v1/meetings*`).
    TencentMeeting,
    /// WeCom application API (`/cgi-bin/gettoken` and the APIs of [`crate::wecom`]).
    Wecom,
    /// Any other path (answered 404, recorded all the same).
    Unknown,
}

impl Provider {
    /// The snake_case name, as in JSON and in the `/_sandbox` API (`"wecom_robot"`...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tencent => "tencent",
            Self::WecomRobot => "wecom_robot",
            Self::DingtalkRobot => "dingtalk_robot",
            Self::FeishuRobot => "feishu_robot",
            Self::Feishu => "feishu",
            Self::Juzibot => "juzibot",
            Self::TencentMeeting => "tencent_meeting",
            Self::Wecom => "wecom",
            Self::Unknown => "unknown",
        }
    }
}

/// One HTTP request as it reached the sandbox, recorded before it was judged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordedRequest {
    /// Which fake the path routed to ([`Provider::Unknown`] when none).
    pub provider: Provider,
    /// HTTP method, upper case (`POST`).
    pub method: String,
    /// URL path without the query, e.g. `/cgi-bin/webhook/send`.
    pub path: String,
    /// The raw query string, `""` when there is none.
    pub query: String,
    /// `(lower-case name, value)` in arrival order.
    pub headers: Vec<(String, String)>,
    /// Raw body bytes (serialized as lossy UTF-8 text).
    #[serde(serialize_with = "lossy_utf8")]
    pub body: Vec<u8>,
    /// UNIX milliseconds.
    pub received_at_ms: i64,
}

fn lossy_utf8<S: serde::Serializer>(body: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(body))
}

impl RecordedRequest {
    /// The first value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn body_json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// One SMS the fake Tencent Cloud accepted (one per phone number whose status was `Ok`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SentSms {
    /// E.164, as echoed in `SendStatus.PhoneNumber`.
    pub phone: String,
    /// The request's `SmsSdkAppId`.
    pub sdk_app_id: String,
    /// The request's `SignName`; `None` when it had none.
    pub sign_name: Option<String>,
    /// The request's `TemplateId`.
    pub template_id: String,
    /// The request's `TemplateParamSet`, in order (`{1}` first).
    pub template_params: Vec<String>,
    /// The rendered text, `【SignName】` included when a signature was given.
    pub content: String,
    /// `""` when the request had none (the API echoes `""` too).
    pub session_context: String,
    /// The request's `ExtendCode`; `None` when absent.
    pub extend_code: Option<String>,
    /// The request's `SenderId` (international SMS); `None` when absent.
    pub sender_id: Option<String>,
    /// `SendStatus.SerialNo` handed back, the key of its receipt (`NNNN:` + 28 digits).
    pub serial_no: String,
    /// `SendStatus.Fee`: billed parts, 1 up to 70 characters, else one per 67.
    pub fee: u32,
    /// `RequestId` of the `SendSms` answer that carried it.
    pub request_id: String,
    /// `SecretId` that signed the request.
    pub secret_id: String,
    /// The request's `X-TC-Region`.
    pub region: String,
    /// UNIX seconds: when it was sent (the receipt's `UserReceiveTime`, plus the
    /// [`crate::ReceiptPlan`]'s delay).
    pub sent_at: i64,
}

/// One message a robot delivered (WeCom, DingTalk or Feishu).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RobotMessage {
    /// [`Provider::WecomRobot`], [`Provider::DingtalkRobot`] or [`Provider::FeishuRobot`].
    pub provider: Provider,
    /// WeCom `key`, DingTalk `access_token`, Feishu hook id.
    pub key: String,
    /// The body's `msgtype` (Feishu: `msg_type`), e.g. `text`, `markdown`.
    pub msgtype: String,
    /// The whole JSON body as sent.
    pub body: Value,
}

/// One file uploaded through `upload_media`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UploadedMedia {
    /// The robot `key` of the upload URL.
    pub key: String,
    /// `media_id` handed back, valid for that robot's `file`/`voice` messages.
    pub media_id: String,
    /// `file` or `voice`.
    pub media_type: String,
    /// `filename` of the multipart `media` part.
    pub filename: String,
    /// Content length in bytes.
    pub size: usize,
    /// MD5 hex of the content, to check that a file arrived intact.
    pub md5: String,
    /// UNIX seconds.
    pub created_at: i64,
}

/// A request the fake provider refused on its own (not because of an injected fault).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// The fake that refused.
    pub provider: Provider,
    /// Tencent `Error.Code` / per-number `Code`, or the robot's `errcode` as a string.
    pub code: String,
    /// The message answered with it (`Error.Message`, `errmsg`, `msg`).
    pub message: String,
}

/// Counters since start (or the last reset). They keep counting when records are trimmed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// HTTP requests received, every provider and unknown paths included, valid or not.
    pub requests: u64,
    /// Requests to Tencent Cloud API 3.0 (SMS and SES), valid or not.
    pub tencent_requests: u64,
    /// Requests to the WeCom robot webhook (send and upload), valid or not.
    pub wecom_robot_requests: u64,
    /// Requests to the DingTalk robot webhook, valid or not.
    pub dingtalk_robot_requests: u64,
    /// Requests to Feishu bot hooks, valid or not.
    pub feishu_robot_requests: u64,
    /// Requests to the Feishu app API (token, contacts), valid or not.
    pub feishu_requests: u64,
    /// Requests to the Juzibot API, valid or not.
    pub juzibot_requests: u64,
    /// Requests to the WeCom application API (`gettoken` included), valid or not.
    pub wecom_requests: u64,
    /// Requests to WeCom `gettoken`, whatever their answer.
    pub wecom_gettoken_calls: u64,
    /// WeCom application and appchat messages accepted.
    pub wecom_messages: u64,
    /// Deliveries of application messages to one member that WeCom dropped without an error,
    /// because the member already had 30 in the last minute (or 1,000 in the last hour) from the app.
    pub wecom_member_drops: u64,
    /// Requests to the Tencent Meeting API, valid or not.
    pub tencent_meeting_requests: u64,
    /// Requests to a path no fake serves (answered 404).
    pub unknown_requests: u64,
    /// SMS accepted (numbers whose status was `Ok`).
    pub sms_sent: u64,
    /// Messages delivered by WeCom, DingTalk and Feishu robots (see [`RobotMessage`]).
    pub robot_messages: u64,
    /// Files accepted by WeCom robot `upload_media`.
    pub media_uploaded: u64,
    /// Feishu `tenant_access_token`s handed out (a cached token asked for again counts too).
    pub feishu_tokens_issued: u64,
    /// Juzibot contact ways created.
    pub contact_ways_created: u64,
    /// Whole requests or single numbers the providers refused (see [`Rejection`]).
    pub rejected: u64,
    /// Times a programmed fault was applied.
    pub faults_applied: u64,
    /// SMS status reports POSTed to the callback URL and accepted by its receiver.
    pub receipts_pushed: u64,
    /// SMS status reports handed out by `PullSmsSendStatus`.
    pub receipts_pulled: u64,
    /// Faults still waiting to be applied.
    pub pending_faults: usize,
}
