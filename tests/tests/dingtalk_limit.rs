//! Issue 5's acceptance at DingTalk's real default limit: a burst to one robot never goes over 20
//! messages in any rolling minute (DingTalk blocks the robot for 10 minutes when it does), and
//! every message goes out once. 22 messages are enough to cross the first minute.

use std::time::Duration;

use serde_json::json;
use yizhan_sandbox::{Provider, SandboxConfig};
use yizhan_tests::{Harness, Store, job};

#[tokio::test(flavor = "multi_thread")]
async fn a_dingtalk_burst_never_exceeds_20_in_any_rolling_minute() {
    let extra = r#"
[connectors.dingtalk_robot.alerts]
access_token = "sandbox-dingtalk-token"
secret = "SECsandbox"
endpoint = "{sandbox}"
"#;
    let h = Harness::start("dingtalk-burst", Store::Redis, SandboxConfig::default_accounts(), extra).await;
    let _a = h.spawn_worker(&[]).await;
    let _b = h.spawn_worker(&[]).await;
    let jobs: Vec<_> = (0..22)
        .map(|i| job("dingtalk_robot", "alerts", "send_text", json!({"content": format!("alert {i}")})))
        .collect();
    h.submit(&jobs).await;
    let sandbox = h.sandbox();
    sandbox
        .wait_until("22 DingTalk messages", Duration::from_secs(150), |s| {
            s.all_robot_messages().iter().filter(|m| m.provider == Provider::DingtalkRobot).count() >= 22
        })
        .await
        .unwrap();

    let mut times: Vec<i64> = sandbox.requests_for(Provider::DingtalkRobot).iter().map(|r| r.received_at_ms).collect();
    times.sort_unstable();
    assert_eq!(times.len(), 22, "every message sent once, none refused and resent");
    assert!(sandbox.rejected().is_empty(), "DingTalk's own 20/min check never fired: {:?}", sandbox.rejected());
    for (i, t) in times.iter().enumerate().skip(20) {
        assert!(t - times[i - 20] >= 60_000, "messages {} and {i} are less than a minute apart: {times:?}", i - 20);
    }
}
