//! Runs against a fake WeCom source (the catalog actions a run calls) and a wiremock webhook, with
//! the SQLite directory store: results, dry runs, the lease, and an interrupted run repeated.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};
use yizhan_state::{DirectoryStore, open_directory};

use super::source::Caller;
use super::target::OPERATION_HEADER;
use super::{DirectorySync, Wiring};
use crate::config::Config;
use crate::connectors::call::{Call, Connector, Failure, Success};
use crate::ratelimit::{LocalLimiter, Quota};

/// A WeCom corp's contacts reads over departments `(id, name, parent)` and members
/// `(userid, department, email)`.
#[derive(Default)]
struct FakeWecom {
    departments: Mutex<BTreeMap<u64, (String, u64)>>,
    members: Mutex<BTreeMap<String, (u64, String)>>,
}

#[async_trait::async_trait]
impl Connector for FakeWecom {
    async fn execute(&self, call: Call<'_>) -> Result<Success, Failure> {
        let result = match call.action.name {
            "list_department_ids" => {
                let ids: Vec<Value> = self
                    .departments
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|(id, (_, p))| json!({"id": id, "parentid": p}))
                    .collect();
                json!({"department_id": ids})
            }
            "get_department" => {
                let id = call.params["id"].as_u64().unwrap();
                let (name, parent) = self.departments.lock().unwrap()[&id].clone();
                json!({"department": {"id": id, "name": name, "parentid": parent, "order": 0}})
            }
            "list_member_ids" => {
                let rows: Vec<Value> = self
                    .members
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|(id, (d, _))| json!({"userid": id, "department": d}))
                    .collect();
                json!({"dept_user": rows, "next_cursor": ""})
            }
            "get_member" => {
                let id = call.params["userid"].as_str().unwrap().to_string();
                let (department, email) = self.members.lock().unwrap()[&id].clone();
                json!({"userid": id, "name": id, "department": [department], "main_department": department, "email": email, "status": 1,
                       "extattr": {"attrs": [{"type": 0, "name": "hiredate", "text": {"value": "2020-01-01"}}]}})
            }
            other => return Err(Failure::permanent(format!("unexpected {other}"))),
        };
        Ok(Success { result: Some(result), ..Default::default() })
    }
}

fn fake() -> Arc<FakeWecom> {
    let fake = FakeWecom::default();
    fake.departments.lock().unwrap().insert(1, ("Root".into(), 0));
    fake.departments.lock().unwrap().insert(2, ("Eng".into(), 1));
    for i in 0..6 {
        fake.members.lock().unwrap().insert(format!("u{i}"), (2, format!("u{i}@example.com")));
    }
    Arc::new(fake)
}

async fn sync(source: Arc<FakeWecom>, webhook: &str, store: Arc<dyn DirectoryStore>, owner: &str) -> DirectorySync {
    let text = format!(
        "[connectors.wecom.hr]\ncorp_id = \"ww\"\ncontacts_secret = \"s\"\n\n[connectors.directory_sync.hr]\nsource = \"wecom.hr\"\ntarget = \"webhook\"\nwebhook_url = \"{webhook}\"\n"
    );
    let config = Config::parse(&text, &|_| None).unwrap();
    let sync =
        DirectorySync::new(config.get("directory_sync", "hr").unwrap(), crate::connectors::http::client()).unwrap();
    sync.wire(Wiring {
        source: Caller {
            connector: source,
            config: ("wecom".into(), "hr".into()),
            quotas: Quota::parse_all("10000/min").unwrap(),
            limiter: Arc::new(LocalLimiter::default()),
        },
        target: None,
        store,
        publisher: None,
        exchange: "t.directory".into(),
        owner: owner.into(),
    });
    sync
}

async fn run(sync: &DirectorySync, params: Value) -> Result<Success, Failure> {
    let call = Call {
        job_id: uuid::Uuid::now_v7(),
        action: yizhan_schemas::find_action("directory_sync", "run").unwrap(),
        params: &params,
        attempt: 1,
        progress: None,
    };
    sync.execute(call).await
}

async fn store() -> (tempfile::TempDir, Arc<dyn DirectoryStore>) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("state.db").display());
    let store = open_directory(&url, "t-dirsync-unit").await.unwrap();
    (dir, store)
}

/// The operation ids of the requests the webhook answered 2xx, counted.
async fn accepted(server: &MockServer, accepted_first: usize) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for request in server.received_requests().await.unwrap().iter().take(accepted_first) {
        let id = request.headers.get(OPERATION_HEADER).unwrap().to_str().unwrap().to_string();
        *counts.entry(id).or_insert(0) += 1;
    }
    counts
}

#[tokio::test]
async fn a_run_interrupted_by_its_target_applies_each_operation_once_when_repeated() {
    let server = MockServer::start().await;
    // The receiver takes 4 operations, then fails until it is back.
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .up_to_n_times(4)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(503)).with_priority(2).mount(&server).await;
    let (_dir, store) = store().await;
    let sync = sync(fake(), &format!("{}/hook", server.uri()), store.clone(), "w1").await;
    let failure = run(&sync, json!({})).await.unwrap_err();
    assert!(matches!(failure, Failure::Transient { .. }), "{failure:?}");
    assert_eq!(store.applied("hr").await.unwrap().len(), 4, "what was accepted is marked");
    let before_retry = server.received_requests().await.unwrap().len();

    server.reset().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&server).await;
    let result = run(&sync, json!({})).await.unwrap().result.unwrap();
    assert_eq!(result["already_applied"], 4);
    // 2 departments and 6 members in all; the repeated run sent only the other 4.
    let resent = server.received_requests().await.unwrap();
    assert_eq!(resent.len(), 4, "{result}");
    let ids = accepted(&server, resent.len()).await;
    assert_eq!(ids.len(), 4, "each operation once");
    assert!(before_retry >= 4);
    assert!(store.applied("hr").await.unwrap().is_empty(), "a finished run forgets its marks");
    // And a third run has nothing to do.
    server.reset().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&server).await;
    let result = run(&sync, json!({})).await.unwrap().result.unwrap();
    assert_eq!(result["proposed"], 0);
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_dry_run_plans_without_sending_and_a_refused_record_fails_alone() {
    let server = MockServer::start().await;
    let (_dir, store) = store().await;
    let source = fake();
    let sync = sync(source.clone(), &format!("{}/hook", server.uri()), store.clone(), "w1").await;
    let result = run(&sync, json!({"dry_run": true})).await.unwrap().result.unwrap();
    assert_eq!(result["planned"].as_array().unwrap().len(), 8);
    assert_eq!(result["planned"][0], json!({"type": "department", "id": "1", "operation": "CREATE"}));
    assert!(server.received_requests().await.unwrap().is_empty());
    assert_eq!(store.snapshot("hr").await.unwrap(), None, "a dry run keeps the snapshot");

    // The receiver refuses u3 (a 4xx): that record fails, the others are applied.
    Mock::given(method("POST"))
        .and(wiremock::matchers::body_partial_json(json!({"id": "u3"})))
        .respond_with(ResponseTemplate::new(422))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).with_priority(2).mount(&server).await;
    let result = run(&sync, json!({})).await.unwrap().result.unwrap();
    assert_eq!(result["counts"]["member"]["CREATE"], 5, "{result}");
    assert_eq!(result["failed"][0]["id"], "u3");
    assert!(result["failed"][0]["reason"].as_str().unwrap().contains("422"));
    // u3 is proposed again next time, nothing else.
    let result = run(&sync, json!({})).await.unwrap().result.unwrap();
    assert_eq!(result["proposed"], 1, "{result}");
    // `full` proposes everything again.
    let result = run(&sync, json!({"full": true, "dry_run": true})).await.unwrap().result.unwrap();
    assert_eq!(result["proposed"], 8);
}

#[tokio::test]
async fn one_run_per_config_at_a_time() {
    let server = MockServer::start().await;
    let (_dir, store) = store().await;
    let sync = sync(fake(), &format!("{}/hook", server.uri()), store.clone(), "w1").await;
    assert!(store.lease("run:hr", "another-worker", std::time::Duration::from_secs(30)).await.unwrap());
    let failure = run(&sync, json!({})).await.unwrap_err();
    assert!(matches!(&failure, Failure::Transient { reason, .. } if reason.contains("another run")), "{failure:?}");
    store.release("run:hr", "another-worker").await.unwrap();
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&server).await;
    run(&sync, json!({})).await.unwrap();
    assert!(
        store.lease("run:hr", "another-worker", std::time::Duration::from_secs(30)).await.unwrap(),
        "released after the run"
    );
}

#[test]
fn bad_fields_are_refused_with_their_path() {
    let parse = |fields: &str| {
        let text = format!("[connectors.directory_sync.hr]\n{fields}\n");
        let config = Config::parse(&text, &|_| None).unwrap();
        DirectorySync::new(config.get("directory_sync", "hr").unwrap(), crate::connectors::http::client())
            .unwrap_err()
            .to_string()
    };
    let at = "connectors.directory_sync.hr";
    assert!(parse("source = \"ldap.x\"\ntarget = \"amqp\"").starts_with(&format!("{at}.source: ")));
    assert!(parse("source = \"wecom.a\"\ntarget = \"ftp\"").starts_with(&format!("{at}.target: ")));
    assert!(parse("source = \"wecom.a\"\ntarget = \"webhook\"").starts_with(&format!("{at}.webhook_url: ")));
    assert!(
        parse("source = \"wecom.a\"\ntarget = \"amqp\"\nschedule = \"often\"").starts_with(&format!("{at}.schedule: "))
    );
    assert!(
        parse("source = \"wecom.a\"\ntarget = \"amqp\"\non_missing = \"keep\"")
            .starts_with(&format!("{at}.on_missing: "))
    );
    assert!(
        parse("source = \"wecom.a\"\ntarget = \"amqp\"\nscript = \"return context;\"")
            .starts_with(&format!("{at}.script: must be"))
    );
    let missing = parse("source = \"wecom.a\"\ntarget = \"amqp\"\nscript = \"file:/nonexistent/hr.js\"");
    assert!(missing.starts_with(&format!("{at}.script: /nonexistent/hr.js: cannot read")), "{missing}");
    assert!(
        parse("source = \"wecom.a\"\ntarget = \"amqp\"\nscript_timeout = \"1s\"")
            .starts_with(&format!("{at}.script_timeout: has no effect"))
    );
    assert!(parse("source = \"wecom.a\"\ntarget = \"wecom.a\"").starts_with(&format!("{at}.target: is the source")));

    // References are checked against the whole file.
    let text = "[connectors.directory_sync.hr]\nsource = \"wecom.nope\"\ntarget = \"amqp\"\n";
    let config = Config::parse(text, &|_| None).unwrap();
    let sync = Arc::new(
        DirectorySync::new(config.get("directory_sync", "hr").unwrap(), crate::connectors::http::client()).unwrap(),
    );
    let error = super::check_references(&config, &[sync]).unwrap_err().to_string();
    assert_eq!(error, format!("{at}.source: no wecom config named \"nope\""));
}
