//! Fake Tencent Cloud API 3.0 (`POST /`, TC3-HMAC-SHA256), docs/providers/tencent-cloud.md.
//!
//! Every request is checked like the real gateway does: action and version, the `Authorization`
//! header, the timestamp window, the SecretId, the credential scope, and a signature recomputed from
//! the request as it arrived. Errors come back as HTTP 200 with the `Response.Error` envelope.
//!
//! Actions are a table ([`ACTIONS`]): adding SES (service `ses`, version `2020-10-02`) means adding
//! rows and their handlers, nothing else.

mod api;
pub mod ses;
pub mod sign;
pub(crate) mod sms;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::capture::Captured;
use crate::config::{SandboxConfig, TencentAccount};
use crate::faults::RequestFacts;
use crate::hub::Own;
use crate::records::Provider;
use api::{ActionContext, ApiError};
use ses::SesState;
use sign::{Authorization, UNSIGNED_PAYLOAD};

/// Largest request body read (docs/providers/tencent-cloud.md#sendemail: 8 MB packets).
const BODY_LIMIT: usize = 8 * 1024 * 1024;

/// Regions the sandbox accepts in `X-TC-Region`; anything else is `UnsupportedRegion`.
pub const REGIONS: &[&str] = &[
    "ap-guangzhou",
    "ap-beijing",
    "ap-nanjing",
    "ap-shanghai",
    "ap-chengdu",
    "ap-chongqing",
    "ap-hongkong",
    "ap-singapore",
];

/// Handles a verified request; returns the `Response` members other than `RequestId`.
type Handler = fn(&ActionContext<'_>, &Own<SesState>, &[u8]) -> Result<Map<String, Value>, ApiError>;

/// One API action.
pub(crate) struct Action {
    pub name: &'static str,
    /// The `service` the credential scope must name.
    pub service: &'static str,
    pub version: &'static str,
    pub region_required: bool,
    pub handler: Handler,
}

/// The actions the sandbox implements.
pub(crate) const ACTIONS: &[Action] = &[
    Action {
        name: "SendSms",
        service: "sms",
        version: "2021-01-11",
        region_required: true,
        handler: |ctx, _, body| sms::send_sms(ctx, body),
    },
    Action {
        name: "PullSmsSendStatusByPhoneNumber",
        service: "sms",
        version: "2021-01-11",
        region_required: true,
        handler: |ctx, _, body| sms::pull_status_by_phone_number(ctx, body),
    },
    ses_action("CreateEmailIdentity", ses::create_email_identity),
    ses_action("DeleteEmailIdentity", ses::delete_email_identity),
    ses_action("GetEmailIdentity", ses::get_email_identity),
    ses_action("ListEmailIdentities", ses::list_email_identities),
    ses_action("UpdateEmailIdentity", ses::update_email_identity),
    Action {
        name: "PullSmsSendStatus",
        service: "sms",
        version: "2021-01-11",
        region_required: true,
        handler: |ctx, _, body| sms::pull_status(ctx, body),
    },
    ses_action("SendEmail", ses::send_email),
    ses_action("GetSendEmailStatus", ses::get_send_email_status),
];

/// An SES action: service `ses`, version 2020-10-02, region required.
const fn ses_action(name: &'static str, handler: Handler) -> Action {
    Action { name, service: "ses", version: "2020-10-02", region_required: true, handler }
}

/// `POST /`: the Tencent Cloud API entry point.
pub(crate) async fn handle(State(state): State<Own<SesState>>, request: Request) -> Response {
    let request = Captured::read(request, BODY_LIMIT).await;
    state.record_request(Provider::Tencent, &request);
    let facts = request_facts(&request);
    if let Some(answer) = state.before_processing(&facts).await {
        return answer;
    }

    let request_id = Uuid::new_v4().to_string();
    let body = match process(&state, &request, &facts, &request_id) {
        Ok(mut payload) => {
            payload.insert("RequestId".into(), Value::String(request_id));
            json!({ "Response": payload })
        }
        Err(ApiError { lost: Some(lost), .. }) => return sms::lost_answer(&lost),
        Err(error) => {
            if !error.injected {
                state.record_rejection(Provider::Tencent, &error.code, &error.message);
            }
            json!({ "Response": {
                "Error": { "Code": error.code, "Message": error.message },
                "RequestId": request_id,
            }})
        }
    };
    state.after_processing(&facts, Json(body).into_response()).await
}

/// What faults can match on, read leniently from the raw request.
fn request_facts(request: &Captured) -> RequestFacts {
    let phones = serde_json::from_slice::<Value>(&request.body)
        .ok()
        .and_then(|body| body.get("PhoneNumberSet").and_then(Value::as_array).cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(Value::as_str)
        .map(crate::phone::canonical)
        .collect();
    let key = request
        .header("authorization")
        .and_then(|h| h.split("Credential=").nth(1))
        .and_then(|c| c.split('/').next())
        .map(str::to_string);
    RequestFacts {
        provider: Provider::Tencent,
        path: request.path().to_string(),
        phones,
        key,
        action: request.header("x-tc-action").map(str::to_string),
    }
}

fn process(
    state: &Own<SesState>,
    request: &Captured,
    facts: &RequestFacts,
    request_id: &str,
) -> Result<Map<String, Value>, ApiError> {
    // docs/providers/tencent-cloud.md#requests: POST / with a JSON body.
    if request.method != Method::POST {
        return Err(ApiError::new(
            "UnsupportedProtocol",
            format!("The sandbox accepts only POST with a JSON body, not {}.", request.method),
        ));
    }
    if request.oversized {
        return Err(ApiError::new("RequestSizeLimitExceeded", "The request body exceeds 8 MB."));
    }
    let action_name =
        request.header("x-tc-action").filter(|a| !a.is_empty()).ok_or_else(|| ApiError::missing("Action"))?;
    let action = ACTIONS
        .iter()
        .find(|a| a.name == action_name)
        .ok_or_else(|| ApiError::new("InvalidAction", format!("The action `{action_name}` does not exist.")))?;
    let version = request.header("x-tc-version").ok_or_else(|| ApiError::missing("Version"))?;
    if version != action.version {
        return Err(ApiError::new(
            "NoSuchVersion",
            format!("The API version `{version}` of `{}` does not exist; use `{}`.", action.name, action.version),
        ));
    }

    // docs/providers/tencent-cloud.md#signing-tc3-hmac-sha256
    let account = authenticate(state.config(), request, action.service)?;

    let content_type = request.header("content-type").unwrap_or_default().to_ascii_lowercase();
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    if media_type != "application/json" {
        return Err(ApiError::new(
            "InvalidParameter",
            format!("Content-Type `{content_type}` is not supported; send application/json."),
        ));
    }

    let region = request.header("x-tc-region").unwrap_or_default().trim();
    if region.is_empty() {
        if action.region_required {
            return Err(ApiError::missing("Region"));
        }
    } else if !REGIONS.contains(&region) {
        return Err(ApiError::new("UnsupportedRegion", format!("The region `{region}` is not supported.")));
    }

    if let Some(per_second) = account.requests_per_second
        && !state.tencent_throttle(&account.secret_id, per_second)
    {
        return Err(ApiError::new(
            "RequestLimitExceeded",
            format!("Your request frequency exceeds the limit of {per_second} per second."),
        ));
    }

    let context = ActionContext { hub: state, account, request_id, region, facts };
    (action.handler)(&context, state, &request.body)
}

/// Verifies the TC3-HMAC-SHA256 signature; returns the signing account.
fn authenticate<'c>(
    config: &'c SandboxConfig,
    request: &Captured,
    service: &str,
) -> Result<&'c TencentAccount, ApiError> {
    let header = request
        .header("authorization")
        .ok_or_else(|| ApiError::invalid_authorization("the Authorization header is missing"))?;
    let auth = Authorization::parse(header).map_err(|e| ApiError::invalid_authorization(&e.to_string()))?;

    let timestamp_text = request.header("x-tc-timestamp").ok_or_else(|| ApiError::missing("Timestamp"))?;
    let timestamp: i64 = timestamp_text
        .trim()
        .parse()
        .map_err(|_| ApiError::new("InvalidParameter", "X-TC-Timestamp must be UNIX seconds."))?;
    let now = chrono::Utc::now().timestamp();
    let tolerance = i64::try_from(config.timestamp_tolerance.as_secs()).unwrap_or(i64::MAX);
    // docs/providers/tencent-cloud.md#signing-tc3-hmac-sha256: 5 minutes off is SignatureExpire.
    if now.abs_diff(timestamp) > tolerance.unsigned_abs() {
        return Err(ApiError::new(
            "AuthFailure.SignatureExpire",
            format!("Signature expired: X-TC-Timestamp {timestamp} is more than {tolerance} s from server time {now}."),
        ));
    }

    let account = config.account(&auth.secret_id).ok_or_else(|| {
        ApiError::new(
            "AuthFailure.SecretIdNotFound",
            "The SecretId is not found, please ensure that your SecretId is correct.",
        )
    })?;

    if auth.service != service {
        return Err(ApiError::invalid_authorization(&format!(
            "the credential scope names service `{}`, this action belongs to `{service}`",
            auth.service
        )));
    }
    let date = sign::utc_date(timestamp).unwrap_or_default();
    if auth.date != date {
        return Err(ApiError::new(
            "AuthFailure.SignatureFailure",
            format!("The credential date {} is not the UTC date of X-TC-Timestamp ({date}).", auth.date),
        ));
    }

    // docs/providers/tencent-cloud.md#signing-tc3-hmac-sha256: content-type and host are always signed.
    for required in ["content-type", "host"] {
        if !auth.signed_headers.iter().any(|h| h == required) {
            return Err(ApiError::invalid_authorization("SignedHeaders must include content-type and host"));
        }
    }
    let mut signed = Vec::with_capacity(auth.signed_headers.len());
    for name in &auth.signed_headers {
        let value = request.header(name).ok_or_else(|| {
            ApiError::invalid_authorization(&format!("the signed header `{name}` is not in the request"))
        })?;
        signed.push((name.as_str(), value));
    }

    let payload_hash = if request.header("x-tc-content-sha256") == Some(UNSIGNED_PAYLOAD) {
        sign::sha256_hex(UNSIGNED_PAYLOAD.as_bytes())
    } else {
        sign::sha256_hex(&request.body)
    };
    let canonical = sign::canonical_request(
        request.method.as_str(),
        request.path(),
        request.uri.query().unwrap_or_default(),
        &signed,
        &payload_hash,
    );
    let scope = sign::credential_scope(&auth.date, service);
    let string_to_sign = sign::string_to_sign(timestamp, &scope, &canonical);
    let expected = sign::signature(&account.secret_key, &auth.date, service, &string_to_sign);
    if expected != auth.signature {
        return Err(ApiError::new(
            "AuthFailure.SignatureFailure",
            "The provided credentials could not be validated. Please check your signature is correct.",
        ));
    }
    Ok(account)
}
