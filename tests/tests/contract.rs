//! The contract's promises about bad input, metrics, health and lanes.

use serde_json::json;
use yizhan_sandbox::SandboxConfig;
use yizhan_schemas::Priority;
use yizhan_tests::{Harness, Store, WAIT, number, sms_job};

#[tokio::test(flavor = "multi_thread")]
async fn submit_rejects_bad_lines_by_number_and_publishes_only_the_valid_ones() {
    let h = Harness::start("submit", Store::Sqlite, SandboxConfig::default_accounts(), "").await;
    let valid = r#"{"connector":"tencent_sms","config":"default","action":"send_sms","params":{"phone_numbers":["+8613800000001"],"sign_name":"Yizhan","template_id":"1001","template_params":["1"]}}"#;
    let unknown_kind = r#"{"connector":"pigeon","config":"default","action":"send_sms","params":{}}"#;
    let missing_param = r#"{"connector":"tencent_sms","config":"default","action":"send_sms","params":{"phone_numbers":["+8613800000001"],"template_id":"1001"}}"#;
    let input = format!("{valid}\n{unknown_kind}\n{missing_param}\nthis is not json\n\n{valid}\n");
    let (code, stdout, stderr) = h.producer(&["submit", "-"], &input);
    assert_eq!(code, 1, "stderr: {stderr}");
    let ids: Vec<&str> = stdout.lines().collect();
    assert_eq!(ids.len(), 2, "{stdout}");
    assert!(ids.iter().all(|id| uuid::Uuid::parse_str(id).is_ok()));
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("line ")).collect();
    assert_eq!(errors.len(), 3, "{stderr}");
    assert!(errors[0].starts_with("line 2: $.connector: unknown connector kind \"pigeon\""), "{}", errors[0]);
    assert_eq!(errors[1], "line 3: $.params.sign_name: is required");
    assert!(errors[2].starts_with("line 4: $: not valid JSON"), "{}", errors[2]);
    assert_eq!(h.queue_depth(&h.names().lane(Priority::Normal)).await, 2, "only the valid lines are enqueued");

    // All valid: exit 0. Broker unreachable: exit 2.
    let (code, _, _) = h.producer(&["submit", "-"], &format!("{valid}\n"));
    assert_eq!(code, 0);
    let (code, _, stderr) =
        h.producer(&["--amqp-url", "amqp://guest:guest@127.0.0.1:1/%2f", "submit", "-"], &format!("{valid}\n"));
    assert_eq!(code, 2, "{stderr}");
    assert!(!stderr.contains("guest:guest"), "the broker password must not be printed: {stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_messages_published_directly_are_dead_lettered_as_invalid_and_the_worker_goes_on() {
    let h = Harness::start("invalid", Store::Sqlite, SandboxConfig::default_accounts(), "").await;
    let worker = h.spawn_worker(&[]).await;
    h.publish_raw(b"not json at all", Priority::Normal).await;
    let no_id = json!({"connector":"tencent_sms","config":"default","action":"send_sms","params":{"phone_numbers":["+8613800000001"],"sign_name":"Yizhan","template_id":"1001"}});
    h.publish_raw(no_id.to_string().as_bytes(), Priority::High).await;
    let mut unknown_config = serde_json::to_value(sms_job(&["+8613800000002"], None)).unwrap();
    unknown_config["config"] = json!("nope");
    h.publish_raw(unknown_config.to_string().as_bytes(), Priority::Bulk).await;

    let mut dead = h.take_dead(3, WAIT).await;
    dead.sort_by(|a, b| a.error.cmp(&b.error));
    assert!(dead.iter().all(|d| d.kind == "invalid"), "{dead:?}");
    assert!(dead[0].error.starts_with("$.config: no tencent_sms config named \"nope\""), "{}", dead[0].error);
    assert!(dead[1].error.starts_with("$.id: is required"), "{}", dead[1].error);
    assert!(dead[2].error.starts_with("$: not valid JSON"), "{}", dead[2].error);
    assert_eq!(dead[2].body, b"not json at all", "the original message goes to the dead-letter queue unchanged");

    // The worker is still consuming.
    h.submit(&[sms_job(&["+8613800000003"], None)]).await;
    h.sandbox().wait_for_sms(1, WAIT).await.unwrap();
    assert_eq!(worker.jobs_total("invalid").await, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_and_health_follow_the_contract() {
    let h = Harness::start("metrics", Store::Sqlite, SandboxConfig::default_accounts(), "").await;
    let worker = h.spawn_worker(&[]).await;
    let client = reqwest::Client::new();
    assert_eq!(client.get(format!("{}/healthz", worker.metrics)).send().await.unwrap().status(), 200);
    assert_eq!(client.get(format!("{}/readyz", worker.metrics)).send().await.unwrap().status(), 200);

    // One succeeded, one retried then succeeded, one duplicate, one dead-lettered.
    let sandbox = h.sandbox();
    sandbox.push_fault(yizhan_sandbox::Fault::tencent_error("InternalError.Timeout").for_phone(&number(2))).unwrap();
    sandbox
        .push_fault(yizhan_sandbox::Fault::tencent_error("AuthFailure.UnauthorizedOperation").for_phone(&number(3)))
        .unwrap();
    let key = format!("{}-dup", h.prefix);
    h.submit(&[sms_job(&[&number(1)], Some(&key))]).await;
    sandbox.wait_for_sms(1, WAIT).await.unwrap();
    h.submit(&[sms_job(&[&number(1)], Some(&key)), sms_job(&[&number(2)], None), sms_job(&[&number(3)], None)]).await;
    sandbox.wait_for_sms(2, WAIT).await.unwrap();
    h.take_dead(1, WAIT).await;
    yizhan_tests::eventually("outcomes counted", WAIT, || async { worker.jobs_total("succeeded").await == 2 }).await;
    assert_eq!(worker.jobs_total("retried").await, 1);
    assert_eq!(worker.jobs_total("duplicate").await, 1);
    assert_eq!(worker.jobs_total("dead_lettered").await, 1);
    let text = worker.metrics_text().await;
    for name in [
        "yizhan_job_duration_seconds_bucket",
        "yizhan_provider_requests_total{connector=\"tencent_sms\",result=\"ok\"} 2",
        "yizhan_provider_requests_total{connector=\"tencent_sms\",result=\"transient\"} 1",
        "yizhan_provider_requests_total{connector=\"tencent_sms\",result=\"permanent\"} 1",
        "yizhan_rate_limit_wait_seconds_bucket",
        "yizhan_jobs_in_flight 0",
        "yizhan_broker_connected 1",
    ] {
        assert!(text.contains(name), "missing {name} in\n{text}");
    }
    assert!(!text.contains("+86138"), "no recipient in labels");
    assert!(!text.contains(yizhan_sandbox::DEFAULT_SECRET_KEY));
    assert!(!worker.log_text().contains(yizhan_sandbox::DEFAULT_SECRET_KEY), "no secret in logs");
}

/// With one slot, a `high` job waiting next to a backlog of `bulk` jobs goes first.
#[tokio::test(flavor = "multi_thread")]
async fn high_priority_jobs_do_not_wait_behind_bulk() {
    let h = Harness::start("lanes", Store::Sqlite, SandboxConfig::default_accounts(), "").await;
    let mut jobs: Vec<_> = (0..30)
        .map(|i| {
            let mut job = sms_job(&[&number(100 + i)], None);
            job.priority = Priority::Bulk;
            job
        })
        .collect();
    let mut otp = sms_job(&[&number(1)], None);
    otp.priority = Priority::High;
    jobs.push(otp);
    h.submit(&jobs).await;
    let _worker = h.spawn_worker(&["--concurrency", "1", "--prefetch", "1"]).await;
    h.sandbox().wait_for_sms(31, WAIT).await.unwrap();
    let order: Vec<String> = h.sandbox().sent_sms().iter().map(|s| s.phone.clone()).collect();
    let position = order.iter().position(|p| *p == number(1)).unwrap();
    assert!(position <= 1, "the high job was sent at position {position} of {}", order.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn catalog_lists_every_supported_action_with_effect_and_schema() {
    let h = Harness::start("catalog", Store::Sqlite, SandboxConfig::default_accounts(), "").await;
    let (code, stdout, stderr) = h.producer(&["catalog"], "");
    assert_eq!(code, 0, "{stderr}");
    let catalog: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(catalog["tencent_sms"]["send_sms"]["effect"], "write");
    let robot = catalog["wecom_robot"].as_object().unwrap();
    let mut actions: Vec<&str> = robot.keys().map(String::as_str).collect();
    actions.sort();
    assert_eq!(actions, ["send_file", "send_image", "send_markdown", "send_news", "send_text", "upload_file"]);
    for (kind, actions) in catalog.as_object().unwrap() {
        for (action, entry) in actions.as_object().unwrap() {
            assert_eq!(entry["params_schema"]["type"], "object", "{kind}.{action}");
        }
    }
}
