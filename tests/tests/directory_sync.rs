//! Issue 21 acceptance: directory sync with the seed's logic script, from the sandbox's WeCom
//! directory to a webhook receiver (real worker, RabbitMQ, state store, sandbox).

use std::time::Duration;

use serde_json::{Value, json};
use yizhan_sandbox::SandboxConfig;
use yizhan_sandbox::directory::{Directory, Member};
use yizhan_tests::webhook::Webhook;
use yizhan_tests::{Harness, Store, job};

/// The seed's example script, completed (what it does: its opening comment).
const SEED_SCRIPT: &str = include_str!("../../examples/hr.js");

const SECRET: &str = "directory-webhook-secret";

/// 3 departments, 500 members: every fifth not hired yet, every tenth a tencent.com address.
fn directory() -> Directory {
    let mut directory = Directory::default();
    directory.put_department("1", "Tencent Demo", "0", 1);
    directory.put_department("2", "Engineering", "1", 2);
    directory.put_department("3", "Sales", "1", 3);
    for i in 0..500 {
        let domain = if i % 10 == 0 { "tencent.com" } else { "example.com" };
        let hired = if i % 5 == 4 { "2099-01-01" } else { "2024-01-01" };
        let department = if i % 2 == 0 { "2" } else { "3" };
        let id = format!("m{i:03}");
        directory.put_member(Member::new(
            &id,
            &format!("Member {i}"),
            department,
            &format!("{id}@{domain}"),
            Some(hired),
        ));
    }
    directory
}

fn config(url: &str, script: &std::path::Path, on_missing: &str, extra: &str) -> String {
    format!(
        r#"
[connectors.wecom.hr]
corp_id = "{corp}"
contacts_secret = "{secret}"
endpoint = "{{sandbox}}"

[connectors.directory_sync.hr]
source = "wecom.hr"
target = "webhook"
webhook_url = "{url}"
webhook_secret = "{SECRET}"
script = "file:{script}"
on_missing = "{on_missing}"
{extra}
"#,
        corp = yizhan_sandbox::DEFAULT_WECOM_CORP.0,
        secret = yizhan_sandbox::DEFAULT_WECOM_CORP.2,
        script = script.display(),
    )
}

async fn start(test: &str, script: &str, on_missing: &str, extra: &str) -> (Harness, Webhook, std::path::PathBuf) {
    let received = Webhook::start().await;
    let url = received.url.clone();
    let dir = tempfile::tempdir().unwrap().keep();
    let path = dir.join("hr.js");
    std::fs::write(&path, script).unwrap();
    let h =
        Harness::start(test, Store::Sqlite, SandboxConfig::default_accounts(), &config(&url, &path, on_missing, extra))
            .await;
    (h, received, path)
}

/// Runs the sync once; its result.
async fn run(h: &Harness) -> Value {
    h.succeed(job("directory_sync", "hr", "run", json!({})), Duration::from_secs(30)).await
}

/// (operationType, type, id) of what the receiver got since `from`.
fn operations(received: &Webhook, from: usize) -> Vec<(String, String, String)> {
    let mut ops: Vec<_> = received.bodies_signed_with(SECRET)[from..]
        .iter()
        .map(|body| {
            let text = |f: &str| body[f].as_str().unwrap_or_default().to_string();
            (text("operationType"), text("type"), text("id"))
        })
        .collect();
    ops.sort();
    ops
}

#[tokio::test]
async fn the_seed_script_syncs_a_wecom_directory_to_a_webhook_once_per_change() {
    let (h, received, _) = start("dirsync", SEED_SCRIPT, "delete", "").await;
    h.sandbox().edit_wecom_directory(|d| *d = directory());
    let _worker = h.spawn_worker(&[]).await;

    // First run: the departments, then every hired member (400 of 500), nobody else.
    let result = run(&h).await;
    let first = operations(&received, 0);
    assert_eq!(first.iter().filter(|(op, t, _)| op == "CREATE" && t == "department").count(), 3, "{result}");
    let members: Vec<&String> =
        first.iter().filter(|(op, t, _)| op == "CREATE" && t == "member").map(|o| &o.2).collect();
    assert_eq!(members.len(), 400, "{result}");
    assert!(members.iter().all(|id| id[1..].parse::<usize>().unwrap() % 5 != 4), "only hired members");
    assert_eq!(first.len(), 403);
    assert_eq!(result["counts"]["member"]["CREATE"], 400);
    assert_eq!(result["aborted"].as_array().unwrap().len(), 100, "the unhired are aborted, and reported");
    // Departments come first, and members carry their department's name from the script.
    let bodies = received.bodies_signed_with(SECRET);
    assert!(bodies[..3].iter().all(|b| b["type"] == "department"));
    let m001 = bodies.iter().find(|b| b["id"] == "m001").unwrap();
    assert_eq!(m001["data"]["departmentName"], "Sales");

    // 5 changes (2 tencent addresses), a renamed department, 3 removals.
    h.sandbox().edit_wecom_directory(|d| {
        for id in ["m001", "m002", "m003", "m010", "m020"] {
            d.members.get_mut(id).unwrap().position = "Staff engineer".into();
        }
        d.departments.get_mut("2").unwrap().name = "R&D".into();
        for id in ["m005", "m006", "m007"] {
            d.members.remove(id);
        }
    });
    let seen = received.len();
    let result = run(&h).await;
    let second = operations(&received, seen);
    let count = |op: &str, t: &str| second.iter().filter(|(o, ty, _)| o == op && ty == t).count();
    assert_eq!(count("UPDATE", "member"), 3, "{second:?}");
    assert_eq!(count("UPDATE", "department"), 1, "{second:?}");
    assert_eq!(count("DELETE", "member"), 3, "{second:?}");
    assert_eq!(second.len(), 7, "{second:?} {result}");
    assert!(
        second.iter().all(|(_, _, id)| !["m010", "m020"].contains(&id.as_str())),
        "tencent addresses are not updated"
    );

    // Nothing changed: nothing sent.
    let seen = received.len();
    run(&h).await;
    assert_eq!(operations(&received, seen), Vec::<(String, String, String)>::new());
}

#[tokio::test]
async fn removals_become_disables_and_an_endless_loop_fails_its_record_only() {
    let script = "if (context.data.id === \"m001\") {\n  while (true) {}\n}\nreturn context;\n";
    let (h, received, _) = start("dirsync-loop", script, "disable", "script_timeout = \"200ms\"").await;
    h.sandbox().edit_wecom_directory(|d| {
        *d = Directory::default();
        d.put_department("1", "Root", "0", 1);
        for i in 0..5 {
            let id = format!("m{i:03}");
            d.put_member(Member::new(&id, &id, "1", &format!("{id}@example.com"), Some("2020-01-01")));
        }
    });
    let _worker = h.spawn_worker(&[]).await;
    let started = std::time::Instant::now();
    let result = run(&h).await;
    assert!(started.elapsed() < Duration::from_secs(20));
    let failed = result["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{result}");
    assert_eq!(failed[0]["id"], "m001");
    assert!(failed[0]["reason"].as_str().unwrap().contains("time limit"), "{result}");
    assert_eq!(operations(&received, 0).len(), 5, "the root and the four other members");

    h.sandbox().edit_wecom_directory(|d| {
        d.members.remove("m002");
    });
    let seen = received.len();
    run(&h).await;
    assert_eq!(operations(&received, seen), [("DISABLE".to_string(), "member".to_string(), "m002".to_string())]);
}

#[tokio::test]
async fn a_script_with_a_syntax_error_stops_the_worker_with_its_path() {
    let (h, _, path) = start("dirsync-bad", "if (context.data {\n  return context;\n}\n", "delete", "").await;
    let stderr = h.worker_refused_at_start().await;
    assert!(stderr.contains("connectors.directory_sync.hr.script"), "{stderr}");
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
    assert!(stderr.contains("SyntaxError"), "{stderr}");
}

#[tokio::test]
async fn a_scheduled_sync_publishes_each_operation_once_to_the_directory_exchange() {
    use lapin::options::{BasicConsumeOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;

    let extra = r#"
[connectors.wecom.hr]
corp_id = "wwsandbox"
contacts_secret = "sandbox-contacts-secret"
endpoint = "{sandbox}"

[connectors.directory_sync.hr]
source = "wecom.hr"
target = "amqp"
schedule = "1s"
"#;
    let h = Harness::start("dirsync-amqp", Store::Sqlite, SandboxConfig::default_accounts(), extra).await;
    h.sandbox().edit_wecom_directory(|d| {
        *d = Directory::default();
        d.put_department("1", "Root", "0", 1);
        d.put_member(Member::new("m1", "M1", "1", "m1@example.com", Some("2020-01-01")));
        d.put_member(Member::new("m2", "M2", "1", "m2@example.com", Some("2020-01-01")));
    });
    let exchange = format!("{}.directory", h.prefix);
    let channel = h.connection.create_channel().await.unwrap();
    channel
        .exchange_declare(
            exchange.as_str().into(),
            lapin::ExchangeKind::Topic,
            lapin::options::ExchangeDeclareOptions { durable: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let queue = channel
        .queue_declare("".into(), QueueDeclareOptions { exclusive: true, ..Default::default() }, FieldTable::default())
        .await
        .unwrap();
    channel
        .queue_bind(
            queue.name().clone(),
            exchange.as_str().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut consumer = channel
        .basic_consume(
            queue.name().clone(),
            "directory".into(),
            BasicConsumeOptions { no_ack: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let _worker = h.spawn_worker(&[]).await;

    let mut received: Vec<(String, String)> = Vec::new();
    // No job submitted: the schedule runs it.
    received.extend(take(&mut consumer, 3).await);
    received.sort();
    assert_eq!(
        received,
        [("CREATE".into(), "1".into()), ("CREATE".into(), "m1".into()), ("CREATE".into(), "m2".into())]
    );
    h.sandbox().edit_wecom_directory(|d| {
        d.members.get_mut("m2").unwrap().name = "M2 renamed".into();
    });
    assert_eq!(take(&mut consumer, 1).await, [("UPDATE".to_string(), "m2".to_string())]);
    // Later periods find nothing new: nothing more is published.
    let more = tokio::time::timeout(Duration::from_millis(2500), futures::StreamExt::next(&mut consumer)).await;
    assert!(more.is_err(), "each operation once");
    let _ = channel.exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default()).await;
}

/// The next `n` messages of `consumer` as (routing key, record id); the key is the operation.
async fn take(consumer: &mut lapin::Consumer, n: usize) -> Vec<(String, String)> {
    use futures::StreamExt;
    let mut out = Vec::new();
    while out.len() < n {
        let next = tokio::time::timeout(Duration::from_secs(20), consumer.next()).await;
        let delivery = next.expect("published").unwrap().unwrap();
        let body: Value = serde_json::from_slice(&delivery.data).unwrap();
        assert_eq!(delivery.routing_key.as_str(), body["operationType"].as_str().unwrap());
        out.push((delivery.routing_key.to_string(), body["id"].as_str().unwrap().to_string()));
    }
    out
}

#[tokio::test]
async fn a_feishu_directory_syncs_too_and_its_edits_follow() {
    let received = Webhook::start().await;
    let url = received.url.clone();
    let extra = format!(
        r#"
[connectors.feishu.hr]
app_id = "{app}"
app_secret = "{secret}"
endpoint = "{{sandbox}}"

[connectors.directory_sync.hr]
source = "feishu.hr"
target = "webhook"
webhook_url = "{url}"
webhook_secret = "{SECRET}"
"#,
        app = yizhan_sandbox::DEFAULT_FEISHU_APP.0,
        secret = yizhan_sandbox::DEFAULT_FEISHU_APP.1,
    );
    let h = Harness::start("dirsync-feishu", Store::Sqlite, SandboxConfig::default_accounts(), &extra).await;
    let _worker = h.spawn_worker(&[]).await;
    run(&h).await;
    let first = operations(&received, 0);
    let directory = h.sandbox().feishu_directory();
    assert_eq!(first.iter().filter(|(_, t, _)| t == "department").count(), directory.departments.len());
    assert_eq!(first.iter().filter(|(_, t, _)| t == "member").count(), directory.members.len(), "every page read");
    let sre = received.bodies_signed_with(SECRET).into_iter().find(|b| b["id"] == "u-sre-01").unwrap();
    assert_eq!(sre["data"]["DeptID"], "od-sandbox-sre");
    assert_eq!(sre["data"]["hiredate"], 1_614_556_800, "join_time, 2021-03-01");

    h.sandbox().edit_feishu_directory(|d| {
        d.members.get_mut("u-eng-01").unwrap().enabled = false;
        d.members.remove("u-eng-02");
    });
    let seen = received.len();
    run(&h).await;
    let second = operations(&received, seen);
    assert_eq!(
        second,
        [
            ("DELETE".to_string(), "member".to_string(), "u-eng-02".to_string()),
            ("UPDATE".into(), "member".into(), "u-eng-01".into())
        ]
    );
}
