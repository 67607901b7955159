//! SES, version 2020-10-02 (docs/providers/tencent-cloud.md#ses-service-ses-version-2020-10-02):
//! sending domains (identities) and `SendEmail`.
//!
//! Identities are kept per sandbox (not per account); the configured `ses_domains` exist verified
//! from the start. `CreateEmailIdentity` adds an unverified one, `UpdateEmailIdentity` (请求验证)
//! verifies it, as if its DNS records were right. `SendEmail` needs the sender's domain verified.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Serialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::api::{ActionContext, ApiError};
use crate::faults::{FaultEffect, Stage};
use crate::hub::Own;

/// docs/providers/tencent-cloud.md#sendemail: `Destination` holds at most 50 addresses.
pub const MAX_DESTINATIONS: usize = 50;
/// docs/providers/tencent-cloud.md#sendemail: `Cc` and `Bcc` hold at most 20 addresses each.
pub const MAX_COPIES: usize = 20;
/// docs/providers/tencent-cloud.md#identities: at most 10 sending domains per account
/// (`OperationDenied.ExceedDomainLimit` beyond).
pub const MAX_DOMAINS: usize = 10;
/// docs/providers/tencent-cloud.md#sendemail: at most 10 attachments, 4 MB in all, names ≤ 255.
const MAX_ATTACHMENTS: usize = 10;
const MAX_ATTACHMENT_BYTES: usize = 4 * 1024 * 1024;
const MAX_FILE_NAME: usize = 255;
/// docs/providers/tencent-cloud.md#sendemail: `TemplateData` ≤ 800 bytes.
const MAX_TEMPLATE_DATA: usize = 800;

/// One mail the fake SES accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SentEmail {
    /// `MessageId` answered (`<uuid>@qcloud-ses`).
    pub message_id: String,
    /// `FromEmailAddress` as sent, display name included if any.
    pub from: String,
    /// `Destination` addresses, in order.
    pub destination: Vec<String>,
    /// `Subject`.
    pub subject: String,
    /// `ReplyToAddresses`; `None` when absent.
    pub reply_to: Option<String>,
    /// `Cc` addresses; empty when absent.
    pub cc: Vec<String>,
    /// `Bcc` addresses; empty when absent.
    pub bcc: Vec<String>,
    /// `Simple.Html`, base64-decoded: the HTML as its sender wrote it.
    pub html: Option<String>,
    /// `Simple.Text`, base64-decoded.
    pub text: Option<String>,
    /// `Template.TemplateID`; `None` for a `Simple` mail.
    pub template_id: Option<u64>,
    /// `TemplateData` as sent: a JSON string.
    pub template_data: Option<String>,
    /// `(FileName, decoded size)`.
    pub attachments: Vec<(String, usize)>,
    /// `RequestId` of the `SendEmail` answer.
    pub request_id: String,
    /// `SecretId` that signed the request.
    pub secret_id: String,
    /// The request's `X-TC-Region`.
    pub region: String,
    /// UNIX milliseconds: when it was accepted (its `GetSendEmailStatus` date is China's, UTC+8).
    pub sent_at_ms: i64,
}

/// The fake SES's own state.
#[derive(Debug, Default)]
pub(crate) struct SesState {
    seeded: bool,
    /// Domain → verified.
    identities: BTreeMap<String, bool>,
    emails: Vec<SentEmail>,
}

impl SesState {
    fn seed(&mut self, domains: &[String]) {
        if !self.seeded {
            self.seeded = true;
            for domain in domains {
                self.identities.insert(domain.clone(), true);
            }
        }
    }
}

impl Own<SesState> {
    /// Runs `f` on the state, seeded with the configured domains on first use.
    fn ses<R>(&self, f: impl FnOnce(&mut SesState) -> R) -> R {
        let domains = self.config().ses_domains.clone();
        self.with(|data, _| {
            data.seed(&domains);
            f(data)
        })
    }

    /// Every mail SES accepted, oldest first.
    pub(crate) fn sent_emails(&self) -> Vec<SentEmail> {
        self.ses(|d| d.emails.clone())
    }

    /// `(domain, verified)` of every SES identity.
    pub(crate) fn email_identities(&self) -> Vec<(String, bool)> {
        self.ses(|d| d.identities.iter().map(|(k, v)| (k.clone(), *v)).collect())
    }
}

fn parse(body: &[u8], fields: &[&str]) -> Result<Map<String, Value>, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new("FailedOperation.JsonParseFail", format!("The request body is not valid JSON: {e}."))
    })?;
    let Value::Object(body) = value else {
        return Err(ApiError::new("FailedOperation.JsonParseFail", "The request body must be a JSON object."));
    };
    if let Some(unknown) = body.keys().find(|k| !fields.contains(&k.as_str())) {
        return Err(ApiError::new("UnknownParameter", format!("The parameter `{unknown}` is not recognized.")));
    }
    Ok(body)
}

fn wrong_type(name: &str) -> ApiError {
    ApiError::new("InvalidParameter", format!("The value type of parameter `{name}` is not valid."))
}

fn string(body: &Map<String, Value>, name: &str) -> Result<Option<String>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(wrong_type(name)),
    }
}

fn required(body: &Map<String, Value>, name: &str) -> Result<String, ApiError> {
    string(body, name)?.filter(|s| !s.is_empty()).ok_or_else(|| ApiError::missing(name))
}

fn injected(ctx: &ActionContext<'_>) -> Result<(), ApiError> {
    match ctx.hub.take_fault(Stage::TencentRequest, ctx.facts) {
        Some(FaultEffect::TencentError { code, message }) => {
            let message = message.unwrap_or_else(|| format!("{code} (injected by yizhan-sandbox)"));
            Err(ApiError { code, message, injected: true, lost: None })
        }
        _ => Ok(()),
    }
}

fn valid_domain(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    labels.len() >= 2
        && domain.len() <= 253
        && labels
            .iter()
            .all(|l| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

fn valid_address(address: &str) -> bool {
    address
        .split_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && !local.contains(' ') && valid_domain(domain))
}

fn identity_answer(domain: &str, verified: bool) -> Map<String, Value> {
    let record = |kind: &str, name: String, value: &str| {
        json!({"Type": kind, "SendDomain": name, "ExpectedValue": value,
               "CurrentValue": if verified { value } else { "" }, "Status": verified})
    };
    let attributes = vec![
        record("MX", domain.to_string(), "mxbiz1.qq.com"),
        record("TXT", domain.to_string(), "v=spf1 include:qcloudmail.com ~all"),
        record(
            "TXT",
            format!("qcloud._domainkey.{domain}"),
            "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQC",
        ),
        record("TXT", format!("_dmarc.{domain}"), "v=DMARC1; p=none"),
    ];
    let mut answer = Map::new();
    answer.insert("IdentityType".into(), json!("DOMAIN"));
    answer.insert("VerifiedForSendingStatus".into(), json!(verified));
    answer.insert("Attributes".into(), Value::Array(attributes));
    answer
}

fn not_exist(domain: &str) -> ApiError {
    ApiError::new("InvalidParameterValue.NotExistDomain", format!("The domain `{domain}` does not exist."))
}

/// `CreateEmailIdentity`.
pub(crate) fn create_email_identity(
    ctx: &ActionContext<'_>,
    ses: &Own<SesState>,
    body: &[u8],
) -> Result<Map<String, Value>, ApiError> {
    // docs/providers/tencent-cloud.md#identities: CreateEmailIdentity's fields.
    let body = parse(body, &["EmailIdentity", "DKIMOption", "TagList"])?;
    let domain = required(&body, "EmailIdentity")?;
    if !valid_domain(&domain) {
        return Err(ApiError::new(
            "InvalidParameterValue.InvalidEmailIdentity",
            format!("`{domain}` is not a valid domain."),
        ));
    }
    // docs/providers/tencent-cloud.md#identities: DKIMOption 0 (1024-bit) or 1 (2048-bit).
    if body.get("DKIMOption").is_some_and(|o| !matches!(o.as_u64(), Some(0 | 1))) {
        return Err(wrong_type("DKIMOption"));
    }
    injected(ctx)?;
    ses.ses(|d| {
        if d.identities.contains_key(&domain) {
            return Err(ApiError::new("InvalidParameterValue.RepeatCreation", "The domain was created already."));
        }
        if d.identities.len() >= MAX_DOMAINS {
            return Err(ApiError::new("OperationDenied.ExceedDomainLimit", "At most 10 domains per account."));
        }
        d.identities.insert(domain.clone(), false);
        Ok(identity_answer(&domain, false))
    })
}

/// `GetEmailIdentity`.
pub(crate) fn get_email_identity(
    ctx: &ActionContext<'_>,
    ses: &Own<SesState>,
    body: &[u8],
) -> Result<Map<String, Value>, ApiError> {
    let body = parse(body, &["EmailIdentity"])?;
    let domain = required(&body, "EmailIdentity")?;
    injected(ctx)?;
    let verified = ses.ses(|d| d.identities.get(&domain).copied()).ok_or_else(|| not_exist(&domain))?;
    Ok(identity_answer(&domain, verified))
}

/// `UpdateEmailIdentity` (请求验证): the sandbox finds the DNS records right.
pub(crate) fn update_email_identity(
    ctx: &ActionContext<'_>,
    ses: &Own<SesState>,
    body: &[u8],
) -> Result<Map<String, Value>, ApiError> {
    // docs/providers/tencent-cloud.md#identities: UpdateEmailIdentity's fields.
    let body = parse(body, &["EmailIdentity", "NewAPI", "DKIMOption"])?;
    let domain = required(&body, "EmailIdentity")?;
    injected(ctx)?;
    ses.ses(|d| match d.identities.get_mut(&domain) {
        Some(verified) => {
            *verified = true;
            Ok(identity_answer(&domain, true))
        }
        None => Err(not_exist(&domain)),
    })
}

/// `DeleteEmailIdentity`.
pub(crate) fn delete_email_identity(
    ctx: &ActionContext<'_>,
    ses: &Own<SesState>,
    body: &[u8],
) -> Result<Map<String, Value>, ApiError> {
    let body = parse(body, &["EmailIdentity"])?;
    let domain = required(&body, "EmailIdentity")?;
    injected(ctx)?;
    ses.ses(|d| d.identities.remove(&domain)).ok_or_else(|| not_exist(&domain))?;
    Ok(Map::new())
}

/// `ListEmailIdentities`.
pub(crate) fn list_email_identities(
    ctx: &ActionContext<'_>,
    ses: &Own<SesState>,
    body: &[u8],
) -> Result<Map<String, Value>, ApiError> {
    // docs/providers/tencent-cloud.md#identities: ListEmailIdentities' fields (Limit ≤ 100).
    let body = parse(body, &["TagList", "Limit", "Offset"])?;
    for name in ["Limit", "Offset"] {
        if body.get(name).is_some_and(|v| v.as_u64().is_none()) {
            return Err(wrong_type(name));
        }
    }
    if body.get("Limit").and_then(Value::as_u64).is_some_and(|limit| limit > 100) {
        return Err(ApiError::new("FailedOperation.InvalidLimit", "Limit is at most 100."));
    }
    injected(ctx)?;
    let identities: Vec<Value> = ses
        .email_identities()
        .into_iter()
        .map(|(domain, verified)| {
            json!({"IdentityName": domain, "IdentityType": "DOMAIN", "SendingEnabled": verified,
                   "CurrentReputationLevel": 1, "DailyQuota": 500})
        })
        .collect();
    let mut answer = Map::new();
    answer.insert("EmailIdentities".into(), Value::Array(identities));
    answer.insert("MaxReputationLevel".into(), json!(1));
    answer.insert("MaxDailyQuota".into(), json!(500));
    answer.insert("Total".into(), json!(answer["EmailIdentities"].as_array().map_or(0, Vec::len)));
    Ok(answer)
}

/// `Alias <a@b.c>` or `a@b.c` → `a@b.c`.
fn sender_address(from: &str) -> Option<&str> {
    match from.rsplit_once(" <") {
        Some((alias, rest)) if !alias.contains(':') => rest.strip_suffix('>'),
        Some(_) => None,
        None => Some(from),
    }
}

/// docs/providers/tencent-cloud.md#sendemail: every request field SendEmail knows.
const SEND_EMAIL_FIELDS: &[&str] = &[
    "FromEmailAddress",
    "Destination",
    "Subject",
    "ReplyToAddresses",
    "Cc",
    "Bcc",
    "Template",
    "Simple",
    "Attachments",
    "Unsubscribe",
    "TriggerType",
    "SmtpMessageId",
    "SmtpHeaders",
    "HeaderFrom",
];

fn address_list(body: &Map<String, Value>, name: &str) -> Result<Vec<String>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => {
            items.iter().map(|v| v.as_str().map(str::to_string).ok_or_else(|| wrong_type(name))).collect()
        }
        Some(_) => Err(wrong_type(name)),
    }
}

/// docs/providers/tencent-cloud.md#sendemail: `Simple.Html` and `Simple.Text` are base64 (of UTF-8
/// here); anything else is `InvalidParameterValue.EmailContentIsWrong`. Returns the decoded text.
fn simple_part(simple: &Map<String, Value>, name: &str) -> Result<Option<String>, ApiError> {
    let Some(encoded) = string(simple, name)? else {
        return Ok(None);
    };
    let wrong = || {
        ApiError::new(
            "InvalidParameterValue.EmailContentIsWrong",
            format!("Simple.{name} is not base64-encoded content; encode the TEXT/HTML with base64."),
        )
    };
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded.as_bytes()).map_err(|_| wrong())?;
    String::from_utf8(bytes).map(Some).map_err(|_| wrong())
}

/// `SendEmail`.
pub(crate) fn send_email(
    ctx: &ActionContext<'_>,
    ses: &Own<SesState>,
    body: &[u8],
) -> Result<Map<String, Value>, ApiError> {
    let body = parse(body, SEND_EMAIL_FIELDS)?;
    let from = required(&body, "FromEmailAddress")?;
    let destination = address_list(&body, "Destination")?;
    let cc = address_list(&body, "Cc")?;
    let bcc = address_list(&body, "Bcc")?;
    let subject = required(&body, "Subject")?;
    let reply_to = string(&body, "ReplyToAddresses")?;
    for name in ["Unsubscribe", "SmtpMessageId", "SmtpHeaders", "HeaderFrom"] {
        string(&body, name)?;
    }
    // docs/providers/tencent-cloud.md#sendemail: TriggerType 0 (bulk, the default) or 1 (triggered).
    if body.get("TriggerType").is_some_and(|t| !matches!(t.as_u64(), Some(0 | 1))) {
        return Err(wrong_type("TriggerType"));
    }

    // docs/providers/tencent-cloud.md#sendemail: `Alias <address>`, the alias without a colon.
    let sender = sender_address(&from).filter(|a| valid_address(a)).ok_or_else(|| {
        ApiError::new("FailedOperation.IncorrectSender", format!("The sender `{from}` is not a valid address."))
    })?;
    // docs/providers/tencent-cloud.md#sendemail: at least one of Destination, Cc and Bcc.
    if destination.is_empty() && cc.is_empty() && bcc.is_empty() {
        return Err(ApiError::missing("Destination"));
    }
    if destination.len() > MAX_DESTINATIONS {
        return Err(ApiError::new("FailedOperation.TooManyRecipients", "At most 50 recipients per mail."));
    }
    if cc.len() > MAX_COPIES || bcc.len() > MAX_COPIES {
        return Err(ApiError::new("FailedOperation.TooManyRecipients", "At most 20 Cc and 20 Bcc addresses."));
    }
    let mut addresses = destination.iter().chain(&cc).chain(&bcc).chain(reply_to.iter());
    if let Some(bad) = addresses.find(|a| !valid_address(a)) {
        return Err(ApiError::new("FailedOperation.IncorrectEmail", format!("`{bad}` is not a valid address.")));
    }
    // docs/providers/tencent-cloud.md#sendemail: Subject is 1 to 100 characters.
    if subject.chars().count() > 100 {
        return Err(ApiError::new("InvalidParameterValue.SubjectLengthError", "Subject must be 1 to 100 characters."));
    }

    let (template_id, template_data) = match body.get("Template") {
        None | Some(Value::Null) => (None, None),
        Some(Value::Object(template)) => {
            if let Some(unknown) = template.keys().find(|k| !["TemplateID", "TemplateData"].contains(&k.as_str())) {
                return Err(ApiError::new(
                    "UnknownParameter",
                    format!("The parameter `Template.{unknown}` is not recognized."),
                ));
            }
            let id = template
                .get("TemplateID")
                .and_then(Value::as_u64)
                .ok_or_else(|| ApiError::missing("Template.TemplateID"))?;
            // docs/providers/tencent-cloud.md#sendemail: TemplateData is a JSON object as a string.
            let data = match template.get("TemplateData") {
                Some(Value::String(s)) => s.clone(),
                None => return Err(ApiError::missing("Template.TemplateData")),
                Some(_) => return Err(wrong_type("Template.TemplateData")),
            };
            if data.len() > MAX_TEMPLATE_DATA {
                return Err(ApiError::new(
                    "InvalidParameterValue.TemplateDataLenLimit",
                    "TemplateData exceeds 800 bytes.",
                ));
            }
            if !matches!(serde_json::from_str::<Value>(&data), Ok(Value::Object(_))) {
                return Err(ApiError::new(
                    "InvalidParameterValue.TemplateDataError",
                    "TemplateData must be a JSON object string.",
                ));
            }
            if id == 0 {
                return Err(ApiError::new("FailedOperation.InvalidTemplateID", "The template does not exist."));
            }
            (Some(id), Some(data))
        }
        Some(_) => return Err(wrong_type("Template")),
    };
    let (html, text) = match body.get("Simple") {
        None | Some(Value::Null) => (None, None),
        Some(Value::Object(simple)) => {
            if let Some(unknown) = simple.keys().find(|k| !["Html", "Text"].contains(&k.as_str())) {
                return Err(ApiError::new(
                    "UnknownParameter",
                    format!("The parameter `Simple.{unknown}` is not recognized."),
                ));
            }
            (simple_part(simple, "Html")?, simple_part(simple, "Text")?)
        }
        Some(_) => return Err(wrong_type("Simple")),
    };
    let simple = html.as_deref().is_some_and(|s| !s.is_empty()) || text.as_deref().is_some_and(|s| !s.is_empty());
    // docs/providers/tencent-cloud.md#sendemail: Template or Simple content, one of the two.
    match (simple, template_id.is_some()) {
        (false, false) => {
            return Err(ApiError::new("FailedOperation.MissingEmailContent", "Give Template or Simple content."));
        }
        (true, true) => return Err(ApiError::new("InvalidParameter", "Template and Simple cannot both be given.")),
        _ => {}
    }

    let attachments = match body.get("Attachments") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(_) => return Err(wrong_type("Attachments")),
    };
    if attachments.len() > MAX_ATTACHMENTS {
        return Err(ApiError::new("FailedOperation.TooManyAttachments", "At most 10 attachments per mail."));
    }
    let mut files = Vec::new();
    for attachment in &attachments {
        let name = attachment.get("FileName").and_then(Value::as_str).filter(|n| !n.is_empty());
        let content = attachment.get("Content").and_then(Value::as_str);
        let (Some(name), Some(content)) = (name, content) else {
            return Err(ApiError::missing("Attachments.FileName and Attachments.Content"));
        };
        if name.chars().count() > MAX_FILE_NAME {
            return Err(ApiError::new("FailedOperation.InvalidAttachName", "FileName is at most 255 characters."));
        }
        // docs/providers/tencent-cloud.md#sendemail: Content is base64.
        let bytes = base64::engine::general_purpose::STANDARD.decode(content).map_err(|_| {
            ApiError::new(
                "InvalidParameterValue.AttachContentIsWrong",
                format!("The Content of `{name}` is not base64."),
            )
        })?;
        files.push((name.to_string(), bytes.len()));
    }
    if files.iter().map(|(_, size)| size).sum::<usize>() > MAX_ATTACHMENT_BYTES {
        return Err(ApiError::new("FailedOperation.AttachContentToolarge", "Attachments exceed 4 MB."));
    }

    // docs/providers/tencent-cloud.md#identities: only a verified domain sends.
    let domain = sender.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()).unwrap_or_default();
    if ses.ses(|d| d.identities.get(&domain).copied()) != Some(true) {
        return Err(ApiError::new(
            "FailedOperation.NotAuthenticatedSender",
            format!("The sender domain `{domain}` is not verified."),
        ));
    }
    injected(ctx)?;

    let message_id = format!("{}@qcloud-ses", Uuid::new_v4());
    let email = SentEmail {
        message_id: message_id.clone(),
        from,
        destination,
        subject,
        reply_to,
        cc,
        bcc,
        html,
        text,
        template_id,
        template_data,
        attachments: files,
        request_id: ctx.request_id.to_string(),
        secret_id: ctx.account.secret_id.clone(),
        region: ctx.region.to_string(),
        sent_at_ms: chrono::Utc::now().timestamp_millis(),
    };
    tracing::info!(request_id = %email.request_id, "email accepted");
    ses.ses(|d| d.emails.push(email));
    let mut answer = Map::new();
    answer.insert("MessageId".into(), json!(message_id));
    Ok(answer)
}

/// docs/providers/tencent-cloud.md#getsendemailstatus: the fields of the request.
const STATUS_FIELDS: &[&str] = &["RequestDate", "Offset", "Limit", "MessageId", "ToEmailAddress"];
/// docs/providers/tencent-cloud.md#getsendemailstatus: `Limit` is at most 100.
const MAX_STATUS_LIMIT: u64 = 100;
/// docs/providers/tencent-cloud.md#getsendemailstatus: only the last 30 days can be asked about.
const STATUS_DAYS: i64 = 30;

fn integer(body: &Map<String, Value>, name: &str) -> Result<Option<u64>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value.as_u64().map(Some).ok_or_else(|| wrong_type(name)),
    }
}

/// `GetSendEmailStatus`: one status per recipient of the mails sent on `RequestDate` (China
/// date), filtered by `MessageId` and `ToEmailAddress`, `Offset`/`Limit` paged. A recipient's
/// mail is queued (`DeliverStatus` 0) until the receipt plan's delay has passed, then delivered
/// (1) or, for the addresses the plan fails, bounced (3).
pub(crate) fn get_send_email_status(
    ctx: &ActionContext<'_>,
    ses: &Own<SesState>,
    body: &[u8],
) -> Result<Map<String, Value>, ApiError> {
    let body = parse(body, STATUS_FIELDS)?;
    // docs/providers/tencent-cloud.md#getsendemailstatus: RequestDate, Offset and Limit are required.
    let date = required(&body, "RequestDate")?;
    let offset = integer(&body, "Offset")?.ok_or_else(|| ApiError::missing("Offset"))?;
    let limit = integer(&body, "Limit")?.ok_or_else(|| ApiError::missing("Limit"))?;
    let message_id = string(&body, "MessageId")?.filter(|s| !s.is_empty());
    let to = string(&body, "ToEmailAddress")?.filter(|s| !s.is_empty());
    if !(1..=MAX_STATUS_LIMIT).contains(&limit) {
        return Err(ApiError::new("FailedOperation.InvalidLimit", "Limit must be within 1..=100."));
    }
    // docs/providers/tencent-cloud.md#getsendemailstatus: one date, YYYY-MM-DD, within 30 days.
    let day = chrono::NaiveDate::parse_from_str(&date, "%Y-%m-%d").map_err(|_| {
        ApiError::new("InvalidParameterValue.WrongDate", format!("RequestDate `{date}` is not a date (YYYY-MM-DD)."))
    })?;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let today = chrono::NaiveDate::parse_from_str(&crate::receipts::china_date(now_ms), "%Y-%m-%d")
        .expect("a formatted date parses");
    if day > today {
        return Err(ApiError::new(
            "InvalidParameterValue.WrongDate",
            format!("RequestDate `{date}` is in the future."),
        ));
    }
    if (today - day).num_days() > STATUS_DAYS {
        return Err(ApiError::new(
            "FailedOperation.NotSupportDate",
            format!("Only the last {STATUS_DAYS} days can be queried, not `{date}`."),
        ));
    }
    injected(ctx)?;
    let plan = ctx.hub.receipt_plan();
    let delay = i64::try_from(plan.delay_ms).unwrap_or(i64::MAX);
    let statuses: Vec<Value> = ses
        .sent_emails()
        .into_iter()
        .filter(|mail| crate::receipts::china_date(mail.sent_at_ms) == date)
        .filter(|mail| message_id.as_ref().is_none_or(|id| *id == mail.message_id))
        .flat_map(|mail| {
            let final_at = mail.sent_at_ms.saturating_add(delay);
            mail.destination
                .iter()
                .filter(|address| to.as_ref().is_none_or(|to| to.eq_ignore_ascii_case(address)))
                .map(|address| {
                    let (deliver, message, time) = if now_ms < final_at {
                        (0, "", 0)
                    } else if plan.fails_address(address) {
                        (3, "550 5.1.1 mailbox unavailable", final_at / 1000)
                    } else {
                        (1, "", final_at / 1000)
                    };
                    json!({
                        "MessageId": mail.message_id, "ToEmailAddress": address, "FromEmailAddress": mail.from,
                        "SendStatus": 0, "DeliverStatus": deliver, "DeliverMessage": message,
                        "RequestTime": mail.sent_at_ms / 1000, "DeliverTime": time,
                        "UserOpened": false, "UserClicked": false, "UserUnsubscribed": false,
                        "UserComplainted": false, "UserComplained": false,
                    })
                })
                .collect::<Vec<_>>()
        })
        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        .take(usize::try_from(limit).unwrap_or(usize::MAX))
        .collect();
    let mut answer = Map::new();
    answer.insert("EmailStatusList".into(), Value::Array(statuses));
    Ok(answer)
}
