//! `SendSms`, `PullSmsSendStatusByPhoneNumber` and `PullSmsSendStatus`, version 2021-01-11
//! (docs/providers/tencent-cloud.md#sms-service-sms-version-2021-01-11).
//!
//! Whole-request problems answer `Response.Error`; a bad phone number only fails that number's
//! `SendStatus`, the others are sent. Every SMS sent has its receipt at once, as
//! `PullSmsSendStatusByPhoneNumber` lists them (from the SMS record, so within `record_limit`);
//! its status report goes out as the receipt plan says (`crate::receipts`): pushed to the status
//! callback, or handed out once by `PullSmsSendStatus`.

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde_json::{Map, Value, json};

use super::api::{ActionContext, ApiError};
use crate::faults::{FaultEffect, LostAnswer, Stage};
use crate::phone::{is_mainland, normalize_phone};
use crate::records::{Provider, SentSms};

/// docs/providers/tencent-cloud.md#sendsms: `PhoneNumberSet` holds at most 200 numbers.
pub(crate) const MAX_NUMBERS: usize = 200;
/// docs/providers/tencent-cloud.md#sendsms: `SessionContext` is shorter than 512 bytes.
pub(crate) const MAX_SESSION_CONTEXT: usize = 512;

const FIELDS: [&str; 8] = [
    "PhoneNumberSet",
    "SmsSdkAppId",
    "TemplateId",
    "SignName",
    "TemplateParamSet",
    "ExtendCode",
    "SessionContext",
    "SenderId",
];

/// Country codes of `SendStatus.IsoCode`; others answer `DEF`.
const ISO_CODES: [(&str, &str); 16] = [
    ("+86", "CN"),
    ("+852", "HK"),
    ("+853", "MO"),
    ("+886", "TW"),
    ("+1", "US"),
    ("+44", "GB"),
    ("+49", "DE"),
    ("+33", "FR"),
    ("+65", "SG"),
    ("+60", "MY"),
    ("+66", "TH"),
    ("+81", "JP"),
    ("+82", "KR"),
    ("+84", "VN"),
    ("+61", "AU"),
    ("+91", "IN"),
];

fn iso_code(e164: &str) -> &'static str {
    ISO_CODES.iter().find(|(prefix, _)| e164.starts_with(prefix)).map_or("DEF", |(_, iso)| iso)
}

/// Billing units: one SMS up to 70 characters, 67 per part beyond.
fn fee(content: &str) -> u32 {
    let chars = u32::try_from(content.chars().count()).unwrap_or(u32::MAX);
    if chars <= 70 { 1 } else { chars.div_ceil(67) }
}

fn serial_no() -> String {
    let mut rng = rand::rng();
    let head: u32 = rng.random_range(1000..10_000);
    let tail: u128 = rng.random_range(0..10u128.pow(28));
    format!("{head}:{tail:028}")
}

fn wrong_type(name: &str) -> ApiError {
    ApiError::new("InvalidParameter", format!("The value type of parameter `{name}` is not valid."))
}

fn string_field(body: &Map<String, Value>, name: &str) -> Result<Option<String>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(wrong_type(name)),
    }
}

fn string_list_field(body: &Map<String, Value>, name: &str) -> Result<Option<Vec<String>>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(|| wrong_type(name)))
            .collect::<Result<_, _>>()
            .map(Some),
        Some(_) => Err(wrong_type(name)),
    }
}

/// The parsed and validated request.
struct SendSmsRequest {
    phones: Vec<String>,
    sdk_app_id: String,
    template_id: String,
    sign_name: Option<String>,
    params: Vec<String>,
    extend_code: Option<String>,
    session_context: String,
    sender_id: Option<String>,
}

/// The SmsSdkAppId must be one of the signing account's: another account's is unauthorized, an
/// unknown one does not exist.
fn check_app_id(ctx: &ActionContext<'_>, sdk_app_id: &str) -> Result<(), ApiError> {
    if ctx.account.sdk_app_ids.iter().any(|id| id == sdk_app_id) {
        return Ok(());
    }
    let elsewhere = ctx.hub.config().tencent_accounts.iter().any(|a| a.sdk_app_ids.iter().any(|id| id == sdk_app_id));
    Err(if elsewhere {
        ApiError::new(
            "UnauthorizedOperation.SmsSdkAppIdVerifyFail",
            "The SmsSdkAppId does not belong to the account of this SecretId.",
        )
    } else {
        ApiError::new("InvalidParameterValue.SdkAppIdNotExist", "The SmsSdkAppId does not exist.")
    })
}

/// The request body as a JSON object of known fields, refused as SMS refuses JSON it cannot read
/// and parameters it does not know.
fn object_of(body: &[u8], known: &[&str]) -> Result<Map<String, Value>, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new("FailedOperation.JsonParseFail", format!("The request body is not valid JSON: {e}."))
    })?;
    let Value::Object(body) = value else {
        return Err(ApiError::new("FailedOperation.JsonParseFail", "The request body must be a JSON object."));
    };
    if let Some(unknown) = body.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(ApiError::new("UnknownParameter", format!("The parameter `{unknown}` is not recognized.")));
    }
    Ok(body)
}

fn parse(body: &[u8]) -> Result<SendSmsRequest, ApiError> {
    let body = object_of(body, &FIELDS)?;
    Ok(SendSmsRequest {
        phones: string_list_field(&body, "PhoneNumberSet")?.ok_or_else(|| ApiError::missing("PhoneNumberSet"))?,
        sdk_app_id: string_field(&body, "SmsSdkAppId")?.ok_or_else(|| ApiError::missing("SmsSdkAppId"))?,
        template_id: string_field(&body, "TemplateId")?.ok_or_else(|| ApiError::missing("TemplateId"))?,
        sign_name: string_field(&body, "SignName")?.filter(|s| !s.is_empty()),
        params: string_list_field(&body, "TemplateParamSet")?.unwrap_or_default(),
        extend_code: string_field(&body, "ExtendCode")?,
        session_context: string_field(&body, "SessionContext")?.unwrap_or_default(),
        sender_id: string_field(&body, "SenderId")?,
    })
}

/// The `SendSms` handler.
pub(crate) fn send_sms(ctx: &ActionContext<'_>, body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let request = parse(body)?;
    let config = ctx.hub.config();

    if request.phones.is_empty() {
        return Err(ApiError::new("MissingParameter.EmptyPhoneNumberSet", "PhoneNumberSet is empty."));
    }
    if request.phones.len() > MAX_NUMBERS {
        return Err(ApiError::new(
            "LimitExceeded.PhoneNumberCountLimit",
            format!("PhoneNumberSet holds {} numbers; at most {MAX_NUMBERS} are allowed.", request.phones.len()),
        ));
    }
    check_app_id(ctx, &request.sdk_app_id)?;
    let template = config.template(&request.template_id).ok_or_else(|| {
        ApiError::new(
            "FailedOperation.TemplateIncorrectOrUnapproved",
            format!("The template {} is not approved or does not exist.", request.template_id),
        )
    })?;

    let normalized: Vec<Option<String>> = request.phones.iter().map(|p| normalize_phone(p)).collect();
    let mainland = normalized.iter().flatten().any(|p| is_mainland(p));
    let international = normalized.iter().flatten().any(|p| !is_mainland(p));
    if mainland && international {
        return Err(ApiError::new(
            "UnsupportedOperation.ContainDomesticAndInternationalPhoneNumber",
            "Chinese mainland and international numbers cannot be sent in one request.",
        ));
    }
    match &request.sign_name {
        None if mainland => {
            return Err(ApiError::new(
                "MissingParameter",
                "The request is missing a required parameter `SignName` (required for Chinese mainland numbers).",
            ));
        }
        Some(sign) if !config.sms_sign_names.contains(sign) => {
            return Err(ApiError::new(
                "FailedOperation.SignatureIncorrectOrUnapproved",
                format!("The signature `{sign}` is not approved or does not exist."),
            ));
        }
        _ => {}
    }
    if request.params.len() != template.param_count() {
        return Err(ApiError::new(
            "FailedOperation.TemplateParamSetNotMatchApprovedTemplate",
            format!(
                "Template {} takes {} parameters; TemplateParamSet has {}.",
                template.id,
                template.param_count(),
                request.params.len()
            ),
        ));
    }
    if request.session_context.len() >= MAX_SESSION_CONTEXT {
        return Err(ApiError::new(
            "InvalidParameterValue",
            format!("SessionContext must be shorter than {MAX_SESSION_CONTEXT} bytes."),
        ));
    }

    let mut partial = None;
    match ctx.hub.take_fault(Stage::TencentRequest, ctx.facts) {
        Some(FaultEffect::TencentError { code, message }) => {
            let message = message.unwrap_or_else(|| format!("{code} (injected by yizhan-sandbox)"));
            return Err(ApiError { code, message, injected: true, lost: None });
        }
        Some(FaultEffect::TencentPartialSend { sent, then }) => partial = Some((sent, then)),
        _ => {}
    }

    let rendered = template.render(&request.params);
    let content = match &request.sign_name {
        Some(sign) => format!("【{sign}】{rendered}"),
        None => rendered,
    };
    let sending = partial.as_ref().map_or(request.phones.len(), |(sent, _)| *sent);
    let statuses: Vec<Value> = request
        .phones
        .iter()
        .zip(&normalized)
        .take(sending)
        .map(|(raw, phone)| send_one(ctx, &request, &content, raw, phone.as_deref()))
        .collect();
    if let Some((sent, then)) = partial {
        // The numbers above went out; the client learns nothing about them.
        return Err(match then {
            LostAnswer::TencentError { code } => {
                let message = format!("{code} (injected by yizhan-sandbox after sending {sent} numbers)");
                ApiError { code, message, injected: true, lost: None }
            }
            lost => ApiError { code: String::new(), message: String::new(), injected: true, lost: Some(lost) },
        });
    }

    let mut response = Map::new();
    response.insert("SendStatusSet".into(), Value::Array(statuses));
    Ok(response)
}

/// Sends to one number; returns its `SendStatus`.
fn send_one(ctx: &ActionContext<'_>, request: &SendSmsRequest, content: &str, raw: &str, phone: Option<&str>) -> Value {
    let status = |phone: &str, serial: &str, fee: u32, code: &str, message: &str| {
        json!({
            "SerialNo": serial,
            "PhoneNumber": phone,
            "Fee": fee,
            "SessionContext": request.session_context,
            "Code": code,
            "Message": message,
            "IsoCode": iso_code(phone),
        })
    };
    let Some(phone) = phone else {
        let (code, message) = ("InvalidParameterValue.IncorrectPhoneNumber", "incorrect phone number format");
        ctx.hub.record_rejection(Provider::Tencent, code, message);
        return status(raw, "", 0, code, message);
    };
    if let Some(FaultEffect::TencentNumberStatus { code, message }) =
        ctx.hub.take_fault(Stage::TencentNumber, &ctx.facts.for_phone(phone))
    {
        let message = message.unwrap_or_else(|| format!("{code} (injected by yizhan-sandbox)"));
        return status(phone, "", 0, &code, &message);
    }

    let serial = serial_no();
    let fee = fee(content);
    ctx.hub.record_sms(SentSms {
        phone: phone.to_string(),
        sdk_app_id: request.sdk_app_id.clone(),
        sign_name: request.sign_name.clone(),
        template_id: request.template_id.clone(),
        template_params: request.params.clone(),
        content: content.to_string(),
        session_context: request.session_context.clone(),
        extend_code: request.extend_code.clone(),
        sender_id: request.sender_id.clone(),
        serial_no: serial.clone(),
        fee,
        request_id: ctx.request_id.to_string(),
        secret_id: ctx.account.secret_id.clone(),
        region: ctx.region.to_string(),
        sent_at: chrono::Utc::now().timestamp(),
    });
    status(phone, &serial, fee, "Ok", "send success")
}

/// The answer a client gets for a request whose answer a fault lost.
pub(crate) fn lost_answer(lost: &LostAnswer) -> Response {
    match lost {
        LostAnswer::HttpStatus { status } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let body = format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or("Error"));
            (status, [("content-type", "text/plain; charset=utf-8")], body).into_response()
        }
        // A body that fails at once: the connection breaks before any answer can be read.
        LostAnswer::Drop => Body::from_stream(futures::stream::once(async {
            Err::<Bytes, std::io::Error>(std::io::Error::other("connection dropped by yizhan-sandbox"))
        }))
        .into_response(),
        LostAnswer::TencentError { code } => {
            let body = json!({"Response": {"Error": {"Code": code, "Message": code}, "RequestId": uuid::Uuid::new_v4().to_string()}});
            axum::Json(body).into_response()
        }
    }
}

/// docs/providers/tencent-cloud.md#pullsmssendstatusbyphonenumber: the fields of the request.
const PULL_FIELDS: [&str; 6] = ["BeginTime", "EndTime", "Offset", "Limit", "PhoneNumber", "SmsSdkAppId"];
/// docs/providers/tencent-cloud.md#pullsmssendstatusbyphonenumber: `Limit` is at most 100.
pub(crate) const MAX_PULL_LIMIT: u64 = 100;
/// docs/providers/tencent-cloud.md#pullsmssendstatusbyphonenumber: at most 7 days back.
const PULL_WINDOW_SECS: i64 = 7 * 24 * 3600;

fn integer_field(body: &Map<String, Value>, name: &str) -> Result<Option<u64>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| wrong_type(name)),
        Some(_) => Err(wrong_type(name)),
    }
}

/// `(CountryCode, SubscriberNumber)` of an E.164 number.
fn split_country(e164: &str) -> (String, String) {
    let prefix = if is_mainland(e164) {
        Some("+86")
    } else {
        ISO_CODES.iter().map(|(prefix, _)| *prefix).find(|prefix| e164.starts_with(prefix))
    };
    match prefix {
        Some(prefix) => (prefix[1..].to_string(), e164[prefix.len()..].to_string()),
        None => (String::new(), e164.trim_start_matches('+').to_string()),
    }
}

/// The `PullSmsSendStatusByPhoneNumber` handler: the receipts of the SMS the number was sent.
pub(crate) fn pull_status_by_phone_number(
    ctx: &ActionContext<'_>,
    body: &[u8],
) -> Result<Map<String, Value>, ApiError> {
    let body = object_of(body, &PULL_FIELDS)?;
    // docs/providers/tencent-cloud.md#pullsmssendstatusbyphonenumber: all but EndTime are required.
    let begin = integer_field(&body, "BeginTime")?.ok_or_else(|| ApiError::missing("BeginTime"))?;
    let offset = integer_field(&body, "Offset")?.ok_or_else(|| ApiError::missing("Offset"))?;
    let limit = integer_field(&body, "Limit")?.ok_or_else(|| ApiError::missing("Limit"))?;
    let phone = string_field(&body, "PhoneNumber")?.ok_or_else(|| ApiError::missing("PhoneNumber"))?;
    let sdk_app_id = string_field(&body, "SmsSdkAppId")?.ok_or_else(|| ApiError::missing("SmsSdkAppId"))?;
    let end = integer_field(&body, "EndTime")?;

    check_app_id(ctx, &sdk_app_id)?;
    // docs/providers/tencent-cloud.md#pullsmssendstatusbyphonenumber: Limit at most 100.
    if !(1..=MAX_PULL_LIMIT).contains(&limit) {
        return Err(ApiError::new(
            "InvalidParameterValue.LimitVerifyFail",
            format!("Limit must be within 1..={MAX_PULL_LIMIT}, not {limit}."),
        ));
    }
    // docs/providers/tencent-cloud.md#pullsmssendstatusbyphonenumber: Offset is fixed at 0.
    if offset != 0 {
        return Err(ApiError::new("InvalidParameterValue.OffsetVerifyFail", "Offset must be 0."));
    }
    // docs/providers/tencent-cloud.md#pullsmssendstatusbyphonenumber: at most 7 days back.
    let now = chrono::Utc::now().timestamp();
    let begin = i64::try_from(begin).unwrap_or(i64::MAX);
    if begin > now || begin < now - PULL_WINDOW_SECS {
        return Err(ApiError::new(
            "InvalidParameterValue.BeginTimeVerifyFail",
            format!("BeginTime {begin} must be within the last 7 days (server time {now})."),
        ));
    }
    let end = end.map(|e| i64::try_from(e).unwrap_or(i64::MAX));
    if end.is_some_and(|end| end < begin) {
        return Err(ApiError::new("InvalidParameterValue.EndTimeVerifyFail", "EndTime must not be before BeginTime."));
    }
    let phone = normalize_phone(&phone).ok_or_else(|| {
        ApiError::new("InvalidParameterValue.IncorrectPhoneNumber", "PhoneNumber is not an E.164 number.")
    })?;
    if let Some(FaultEffect::TencentError { code, message }) = ctx.hub.take_fault(Stage::TencentRequest, ctx.facts) {
        let message = message.unwrap_or_else(|| format!("{code} (injected by yizhan-sandbox)"));
        return Err(ApiError { code, message, injected: true, lost: None });
    }

    let (country, subscriber) = split_country(&phone);
    let plan = ctx.hub.receipt_plan();
    let receipts: Vec<Value> = ctx
        .hub
        .sent_sms()
        .into_iter()
        .filter(|sms| sms.phone == phone && sms.sdk_app_id == sdk_app_id)
        .filter(|sms| sms.sent_at >= begin && end.is_none_or(|end| sms.sent_at <= end))
        .take(usize::try_from(limit).unwrap_or(usize::MAX))
        .map(|sms| {
            let (status, description) =
                if plan.fails_phone(&sms.phone) { ("FAIL", "UNDELIV") } else { ("SUCCESS", "DELIVRD") };
            json!({
                "UserReceiveTime": sms.sent_at,
                "CountryCode": country,
                "SubscriberNumber": subscriber,
                "PhoneNumber": sms.phone,
                "SerialNo": sms.serial_no,
                "ReportStatus": status,
                "Description": description,
                "SessionContext": sms.session_context,
            })
        })
        .collect();
    let mut response = Map::new();
    response.insert("PullSmsSendStatusSet".into(), Value::Array(receipts));
    Ok(response)
}

/// docs/providers/tencent-cloud.md#pullsmssendstatus: the fields of the request, both required.
const PULL_QUEUE_FIELDS: [&str; 2] = ["Limit", "SmsSdkAppId"];

/// The `PullSmsSendStatus` handler: up to `Limit` status reports of the application that are due,
/// each handed out once (docs/providers/tencent-cloud.md#pullsmssendstatus).
pub(crate) fn pull_status(ctx: &ActionContext<'_>, body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let body = object_of(body, &PULL_QUEUE_FIELDS)?;
    let limit = integer_field(&body, "Limit")?.ok_or_else(|| ApiError::missing("Limit"))?;
    let sdk_app_id = string_field(&body, "SmsSdkAppId")?.ok_or_else(|| ApiError::missing("SmsSdkAppId"))?;
    check_app_id(ctx, &sdk_app_id)?;
    // docs/providers/tencent-cloud.md#pullsmssendstatus: Limit at most 100.
    if !(1..=MAX_PULL_LIMIT).contains(&limit) {
        return Err(ApiError::new(
            "InvalidParameterValue.LimitVerifyFail",
            format!("Limit must be within 1..={MAX_PULL_LIMIT}, not {limit}."),
        ));
    }
    if let Some(FaultEffect::TencentError { code, message }) = ctx.hub.take_fault(Stage::TencentRequest, ctx.facts) {
        let message = message.unwrap_or_else(|| format!("{code} (injected by yizhan-sandbox)"));
        return Err(ApiError { code, message, injected: true, lost: None });
    }
    let reports = ctx.hub.take_pull(&sdk_app_id, usize::try_from(limit).unwrap_or(usize::MAX));
    let mut response = Map::new();
    response.insert("PullSmsSendStatusSet".into(), reports.iter().map(|r| r.pull_entry()).collect());
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_codes_and_fees() {
        assert_eq!(iso_code("+8613800000000"), "CN");
        assert_eq!(iso_code("+85261234567"), "HK");
        assert_eq!(iso_code("+14155550100"), "US");
        assert_eq!(iso_code("+99912345"), "DEF");
        assert_eq!(fee(&"x".repeat(70)), 1);
        assert_eq!(fee(&"x".repeat(71)), 2);
        assert_eq!(fee(&"x".repeat(135)), 3);
    }

    #[test]
    fn receipts_split_the_country_code() {
        assert_eq!(split_country("+8613800000000"), ("86".into(), "13800000000".into()));
        assert_eq!(split_country("+85261234567"), ("852".into(), "61234567".into()));
        assert_eq!(split_country("+99912345"), (String::new(), "99912345".into()));
    }

    #[test]
    fn serial_numbers_look_like_tencent_ones() {
        let serial = serial_no();
        let (head, tail) = serial.split_once(':').unwrap();
        assert_eq!((head.len(), tail.len()), (4, 28));
        assert_ne!(serial, serial_no());
    }
}
