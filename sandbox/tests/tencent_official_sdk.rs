//! Requests made by Tencent Cloud's official Python SDK (`tencentcloud-sdk-python`, installed by
//! scripts/services.sh) must pass the sandbox's strict checks: its TC3 signature, headers and field
//! names are the provider's own, so a refusal here means the sandbox is wrong.
//! The script is tests/official_sdk/tencent.py; docs/providers/tencent-cloud.md describes the API.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::start;
use serde_json::Value;
use yizhan_sandbox::{
    DEFAULT_SDK_APP_ID, DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY, DEFAULT_SES_DOMAIN, DEFAULT_SIGN_NAME,
};

const PHONE: &str = "+8613800000077";

/// Runs the SDK script against `endpoint`; returns each call's line, keyed by call name.
async fn run_sdk(endpoint: &str) -> Vec<(String, Value)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/official_sdk/tencent.py");
    let child = tokio::process::Command::new("python3")
        .arg(&script)
        .env("TENCENT_ENDPOINT", endpoint)
        .env("TENCENT_SECRET_ID", DEFAULT_SECRET_ID)
        .env("TENCENT_SECRET_KEY", DEFAULT_SECRET_KEY)
        .env("TENCENT_SDK_APP_ID", DEFAULT_SDK_APP_ID)
        .env("TENCENT_SIGN_NAME", DEFAULT_SIGN_NAME)
        .env("TENCENT_TEMPLATE_ID", "1001")
        .env("TENCENT_SES_DOMAIN", DEFAULT_SES_DOMAIN)
        .env("TENCENT_PHONE", PHONE)
        // The sandbox is on loopback: a proxy from the environment must not carry the calls.
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs (scripts/services.sh installs the SDK)");
    let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("the SDK script finishes")
        .expect("the SDK script's output is read");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the SDK script failed ({}):\n{stderr}\n{stdout}", output.status);
    stdout
        .lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}\n{stderr}"));
            (value["call"].as_str().unwrap().to_string(), value)
        })
        .collect()
}

fn answer<'a>(lines: &'a [(String, Value)], call: &str) -> &'a Value {
    let (_, line) = lines.iter().find(|(name, _)| name == call).unwrap_or_else(|| panic!("no {call} in {lines:?}"));
    assert!(line.get("error").is_none(), "{call} was refused: {line}");
    &line["response"]
}

#[tokio::test]
async fn official_python_sdk_requests_are_accepted() {
    let sandbox = start().await;
    let lines = run_sdk(&sandbox.addr().to_string()).await;

    let sms = answer(&lines, "SendSms");
    let status = &sms["SendStatusSet"][0];
    assert_eq!((status["Code"].as_str(), status["PhoneNumber"].as_str()), (Some("Ok"), Some(PHONE)), "{sms}");
    assert_eq!(status["SessionContext"], "official-sdk");
    let sent = sandbox.state().sent_sms();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].template_params, ["123456"]);

    let email = answer(&lines, "SendEmail");
    assert!(email["MessageId"].as_str().is_some_and(|id| !id.is_empty()), "{email}");
    let mails = sandbox.state().sent_emails();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].html.as_deref(), Some("<p>你好, <b>SDK</b></p>"), "Html arrives decoded");
    assert_eq!(mails[0].text.as_deref(), Some("你好, SDK"), "Text arrives decoded");
    assert_eq!(mails[0].region, "ap-hongkong");

    // The receipt of the SMS SendSms just sent, found by the official client's query.
    let pulled = answer(&lines, "PullSmsSendStatusByPhoneNumber");
    let receipts = pulled["PullSmsSendStatusSet"].as_array().unwrap_or_else(|| panic!("{pulled}"));
    assert!(receipts.iter().any(|r| r["SerialNo"] == status["SerialNo"] && r["PhoneNumber"] == PHONE), "{pulled}");

    // Its status report, from the receipt queue (docs/providers/tencent-cloud.md#pullsmssendstatus).
    let queue = answer(&lines, "PullSmsSendStatus");
    let reports = queue["PullSmsSendStatusSet"].as_array().unwrap_or_else(|| panic!("{queue}"));
    assert_eq!(reports.len(), 1, "{queue}");
    assert_eq!(reports[0]["SerialNo"], status["SerialNo"]);
    assert_eq!(
        (reports[0]["ReportStatus"].as_str(), reports[0]["PhoneNumber"].as_str()),
        (Some("SUCCESS"), Some(PHONE))
    );
    assert_eq!(sandbox.state().stats().receipts_pulled, 1);

    // The mail's status (docs/providers/tencent-cloud.md#getsendemailstatus).
    let mail = answer(&lines, "GetSendEmailStatus");
    let statuses = mail["EmailStatusList"].as_array().unwrap_or_else(|| panic!("{mail}"));
    assert_eq!(statuses.len(), 1, "{mail}");
    assert_eq!(statuses[0]["MessageId"], email["MessageId"]);
    assert_eq!(statuses[0]["ToEmailAddress"], "someone@example.com");
    assert_eq!((statuses[0]["SendStatus"].as_i64(), statuses[0]["DeliverStatus"].as_i64()), (Some(0), Some(1)));

    assert!(sandbox.state().rejected().is_empty(), "{:?}", sandbox.state().rejected());
    sandbox.shutdown().await;
}
