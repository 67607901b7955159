//! The operators' console (`/ui`, issue 23) in a real browser: headless Chromium from Debian's
//! packages, driven over WebDriver (`fantoccini` against `chromedriver`, one per test binary:
//! [`ChromeDriver::shared`]). WebDriver rather than DevTools: it is the W3C protocol that
//! chromedriver keeps stable across Chromium versions, so Debian's matching pair is all it needs.
//!
//! Every wait is for an element or a condition, with a deadline. Screenshots of each page go to
//! `target/console/`.

use std::path::PathBuf;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use lapin::types::FieldTable;
use serde_json::{Value, json};
use yizhan_sandbox::SandboxConfig;
use yizhan_tests::api::{Api, TOKEN, form_body, hidden_csrf, session_set_cookie};
use yizhan_tests::shared::ChromeDriver;
use yizhan_tests::{Harness, Store, WAIT, eventually, number, sms_job};

/// How long an element may take to appear (pages are served locally; broker reads are quick).
const ELEMENT_WAIT: Duration = Duration::from_secs(20);

/// A new headless Chromium session on the shared chromedriver.
async fn browser(driver: &ChromeDriver) -> Client {
    let mut args = vec!["--headless=new", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000"];
    // Chromium's sandbox cannot start as root (CI runs as root).
    if runs_as_root() {
        args.push("--no-sandbox");
    }
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("goog:chromeOptions".into(), json!({"args": args}));
    ClientBuilder::rustls()
        .expect("TLS roots")
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

/// Whether this process runs as root (`id -u`; no libc call needed).
fn runs_as_root() -> bool {
    std::process::Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `target/console/`, next to the binaries.
fn screenshot_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let target = exe.ancestors().nth(3).expect("target/<profile>/deps/<exe>");
    let dir = target.join("console");
    std::fs::create_dir_all(&dir).expect("target/console");
    dir
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(screenshot_dir().join(format!("{name}.png")), png).expect("write the screenshot");
}

async fn wait_for(client: &Client, css: &str) -> fantoccini::elements::Element {
    client
        .wait()
        .at_most(ELEMENT_WAIT)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no element {css:?} within {ELEMENT_WAIT:?}: {e}"))
}

async fn text_of(client: &Client, css: &str) -> String {
    wait_for(client, css).await.text().await.expect("element text")
}

/// Signs in through the login form; the overview shows.
async fn sign_in(client: &Client, api: &Api) {
    client.goto(&format!("{}/ui/login", api.base)).await.unwrap();
    wait_for(client, "#token").await.send_keys(TOKEN).await.unwrap();
    wait_for(client, "#login button[type=submit]").await.click().await.unwrap();
    wait_for(client, "#lanes").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overview_dead_letters_and_replay_by_clicking() {
    // 10 of the 100 jobs name a config whose secret key is wrong: the sandbox refuses them
    // (AuthFailure, permanent), so they are dead-lettered.
    let h = Harness::start(
        "console",
        Store::Sqlite,
        SandboxConfig::default_accounts(),
        &format!(
            "[connectors.tencent_sms.bad]\nsecret_id = \"{}\"\nsecret_key = \"wrong-key\"\nsdk_app_id = \"{}\"\nendpoint = \"{{sandbox}}\"\n",
            yizhan_sandbox::DEFAULT_SECRET_ID,
            yizhan_sandbox::DEFAULT_SDK_APP_ID
        ),
    )
    .await;
    let worker = h.spawn_worker(&[]).await;
    let api = Api::start_with(&h, &[("YIZHAN_WORKER_METRICS", &format!("{}/metrics", worker.metrics))]).await;

    let numbers: Vec<String> = (0..100).map(number).collect();
    let jobs: Vec<_> = numbers
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let mut job = sms_job(&[n], None);
            if i % 10 == 0 {
                job.config = "bad".into();
            }
            job
        })
        .collect();
    let ids = h.submit(&jobs).await;
    let bad_numbers: Vec<&String> = numbers.iter().step_by(10).collect();
    let dead_queue = h.names().dead();
    eventually("90 sent and 10 dead-lettered", WAIT, || async {
        h.sandbox().sent_sms().len() >= 90 && h.queue_depth(&dead_queue).await == 10
    })
    .await;
    eventually("the worker counted 90 successes and 10 dead letters", WAIT, || async {
        worker.jobs_total("succeeded").await == 90 && worker.jobs_total("dead_lettered").await == 10
    })
    .await;

    let driver = ChromeDriver::shared().await;
    let client = browser(&driver).await;

    // No session: the login page.
    client.goto(&format!("{}/ui/dead", api.base)).await.unwrap();
    wait_for(&client, "#login").await;
    assert!(client.current_url().await.unwrap().path().ends_with("/ui/login"));
    screenshot(&client, "login").await;
    // A wrong token stays there.
    wait_for(&client, "#token").await.send_keys("not-the-token").await.unwrap();
    wait_for(&client, "#login button[type=submit]").await.click().await.unwrap();
    assert!(text_of(&client, "p.error").await.contains("not a valid API token"));
    sign_in(&client, &api).await;

    // Overview: the lanes with their consumer, the outcomes from the worker's counters.
    let lane = format!("tr[data-queue=\"{}.jobs.normal\"] td[data-col=consumers]", h.prefix);
    assert_eq!(text_of(&client, &lane).await, "1", "one worker consumes the normal lane");
    let dead_row = format!("tr[data-queue=\"{dead_queue}\"] td[data-col=ready]");
    assert_eq!(text_of(&client, &dead_row).await, "10");
    // Without --rabbit-management, unacked is unknown, and the page says how to know it.
    let unacked = format!("tr[data-queue=\"{}.jobs.normal\"] td[data-col=unacked]", h.prefix);
    assert_eq!(text_of(&client, &unacked).await, "?");
    assert!(text_of(&client, "#unacked-unknown").await.contains("set --rabbit-management"));
    assert_eq!(text_of(&client, "tr[data-outcome=succeeded] td:nth-child(2)").await, "90");
    assert_eq!(text_of(&client, "tr[data-outcome=dead_lettered] td:nth-child(2)").await, "10");
    screenshot(&client, "overview").await;

    // Dead letters: the 10, each with its reason.
    wait_for(&client, "nav a[href=\"/ui/dead\"]").await.click().await.unwrap();
    wait_for(&client, "#letters").await;
    let rows = client.find_all(Locator::Css("tr.letter")).await.unwrap();
    assert_eq!(rows.len(), 10, "the DLQ page lists the 10 dead letters");
    let source = client.source().await.unwrap();
    assert!(source.contains("permanent") && source.contains("tencent_sms"), "kind and connector are shown");
    for secret in [yizhan_sandbox::DEFAULT_SECRET_KEY, "wrong-key"] {
        assert!(!source.contains(secret), "a secret on the DLQ page");
    }
    screenshot(&client, "dead-letters").await;
    // A filter that matches none of them.
    client.goto(&format!("{}/ui/dead?kind=exhausted", api.base)).await.unwrap();
    wait_for(&client, "#letters").await;
    assert!(client.find_all(Locator::Css("tr.letter")).await.unwrap().is_empty());
    // One letter.
    let one = ids[0];
    client.goto(&format!("{}/ui/dead/letter/{one}", api.base)).await.unwrap();
    assert!(text_of(&client, "#letter").await.contains("permanent"));
    screenshot(&client, "dead-letter").await;

    // Fix the config (the right key) and restart the worker on it.
    drop(worker);
    let config = std::fs::read_to_string(&h.config_path).unwrap();
    std::fs::write(&h.config_path, config.replace("\"wrong-key\"", "\"${YIZHAN_TEST_SMS_KEY}\"")).unwrap();
    let worker = h.spawn_worker(&[]).await;

    // Replay by clicking: select every letter, then "Replay selected".
    client.goto(&format!("{}/ui/dead", api.base)).await.unwrap();
    wait_for(&client, "#letters").await;
    for checkbox in client.find_all(Locator::Css("tr.letter input[type=checkbox]")).await.unwrap() {
        checkbox.click().await.unwrap();
    }
    wait_for(&client, "#replay-selected").await.click().await.unwrap();
    let flash = text_of(&client, "#flash").await;
    assert!(flash.contains("Replayed 10"), "{flash}");
    screenshot(&client, "dead-letters-replayed").await;

    // Each replayed job is delivered once.
    eventually("the 10 replayed jobs delivered", WAIT, || async {
        bad_numbers.iter().all(|n| h.sandbox().sms_count_for(n) >= 1)
    })
    .await;
    eventually("the worker settled the 10 replays", WAIT, || async { worker.jobs_total("succeeded").await == 10 })
        .await;
    for n in &numbers {
        assert_eq!(h.sandbox().sms_count_for(n), 1, "{n} was sent exactly once");
    }
    assert_eq!(h.queue_depth(&dead_queue).await, 0);

    // Job lookup: a replayed job succeeded.
    client.goto(&format!("{}/ui/jobs", api.base)).await.unwrap();
    wait_for(&client, "#lookup input[name=id]").await.send_keys(&one.to_string()).await.unwrap();
    wait_for(&client, "#lookup button").await.click().await.unwrap();
    assert_eq!(text_of(&client, "#job-status").await, "succeeded");
    screenshot(&client, "job").await;

    // Configs: the policy of each config, never a secret.
    client.goto(&format!("{}/ui/configs", api.base)).await.unwrap();
    assert!(text_of(&client, "tr[data-config=\"wecom_robot.ops\"]").await.contains("6000/min"));
    wait_for(&client, "tr[data-config=\"tencent_sms.bad\"]").await;
    let source = client.source().await.unwrap();
    for secret in
        [yizhan_sandbox::DEFAULT_SECRET_KEY, yizhan_sandbox::DEFAULT_SECRET_ID, yizhan_sandbox::DEFAULT_ROBOT_KEYS[0]]
    {
        assert!(!source.contains(secret), "a credential on the configs page");
    }
    screenshot(&client, "configs").await;

    // Signing out ends the session.
    wait_for(&client, "form.logout button").await.click().await.unwrap();
    wait_for(&client, "#login").await;
    client.goto(&format!("{}/ui", api.base)).await.unwrap();
    wait_for(&client, "#login").await;
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_pause_and_resume_by_clicking() {
    let h = Harness::start("console-campaign", Store::Sqlite, SandboxConfig::default_accounts(), "").await;
    // No worker: the campaign's jobs wait in their lane, so it stays in progress.
    let api = Api::start(&h).await;
    let recipients: Vec<Value> = (0..5).map(|i| json!({"to": number(i)})).collect();
    let (status, created) = api
        .post(
            "/v1/campaigns",
            &json!({
                "name": "spring sale", "idempotency_key": "spring-sale",
                "connector": "tencent_sms", "config": "default", "action": "send_sms",
                "params": {"sign_name": "Yizhan", "template_id": "1001", "template_params": ["123456"]},
                "recipients": recipients,
            }),
        )
        .await;
    assert_eq!(status, 202, "{created}");
    let id = created["id"].as_str().unwrap().to_string();

    let driver = ChromeDriver::shared().await;
    let client = browser(&driver).await;
    sign_in(&client, &api).await;
    wait_for(&client, "nav a[href=\"/ui/campaigns\"]").await.click().await.unwrap();
    let row = format!("tr[data-id=\"{id}\"]");
    assert!(text_of(&client, &row).await.contains("spring sale"));
    screenshot(&client, "campaigns").await;
    wait_for(&client, &format!("{row} a")).await.click().await.unwrap();
    assert_eq!(text_of(&client, "#campaign-status").await, "running");
    screenshot(&client, "campaign").await;

    wait_for(&client, "#campaign-pause").await.click().await.unwrap();
    wait_for(&client, "#campaign-resume").await;
    assert_eq!(text_of(&client, "#campaign-status").await, "paused");
    let (_, seen) = api.call(reqwest::Method::GET, &format!("/v1/campaigns/{id}"), None).await;
    assert_eq!(seen["status"], "paused", "the API sees the pause: {seen}");
    screenshot(&client, "campaign-paused").await;

    wait_for(&client, "#campaign-resume").await.click().await.unwrap();
    wait_for(&client, "#campaign-pause").await;
    assert_eq!(text_of(&client, "#campaign-status").await, "running");
    let (_, seen) = api.call(reqwest::Method::GET, &format!("/v1/campaigns/{id}"), None).await;
    assert_eq!(seen["status"], "running", "{seen}");
    client.close().await.unwrap();
}

/// RabbitMQ's management API on this machine (`scripts/services.sh` enables the plugin).
const MANAGEMENT_URL: &str = "http://guest:guest@127.0.0.1:15672";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overview_shows_unacked_per_lane_from_the_management_api() {
    use futures::StreamExt;
    use lapin::options::{BasicConsumeOptions, BasicQosOptions};

    let h = Harness::start("console-unacked", Store::Sqlite, SandboxConfig::default_accounts(), "").await;
    let api = Api::start_with(&h, &[("YIZHAN_RABBIT_MANAGEMENT_URL", MANAGEMENT_URL)]).await;
    // Five jobs in the normal lane and no worker: a consumer of the test's own, with a prefetch of
    // 2 that never acks, holds two of them unacked, the other three stay ready.
    let numbers: Vec<String> = (0..5).map(number).collect();
    let jobs: Vec<_> = numbers.iter().map(|n| sms_job(&[n], None)).collect();
    h.submit(&jobs).await;
    let lane = format!("{}.jobs.normal", h.prefix);
    eventually("5 jobs in the normal lane", WAIT, || async { h.queue_depth(&lane).await == 5 }).await;
    let channel = h.connection.create_channel().await.unwrap();
    channel.basic_qos(2, BasicQosOptions::default()).await.unwrap();
    let mut consumer = channel
        .basic_consume(
            lane.as_str().into(),
            "console-test".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    for _ in 0..2 {
        tokio::time::timeout(WAIT, consumer.next()).await.expect("a delivery").expect("open").expect("a delivery");
    }

    let driver = ChromeDriver::shared().await;
    let client = browser(&driver).await;
    sign_in(&client, &api).await;
    // The management API's statistics lag the queue by a few seconds: view again until they show.
    let row = |col: &str| format!("tr[data-queue=\"{lane}\"] td[data-col={col}]");
    eventually("the overview shows 2 unacked, 3 ready and 1 consumer in the normal lane", WAIT, || async {
        client.goto(&format!("{}/ui", api.base)).await.unwrap();
        text_of(&client, &row("unacked")).await == "2"
            && text_of(&client, &row("ready")).await == "3"
            && text_of(&client, &row("consumers")).await == "1"
    })
    .await;
    assert_eq!(text_of(&client, "#card-unacked .value").await, "2");
    assert!(client.find_all(Locator::Css("#unacked-unknown")).await.unwrap().is_empty());
    let high = format!("tr[data-queue=\"{}.jobs.high\"] td[data-col=unacked]", h.prefix);
    assert_eq!(text_of(&client, &high).await, "0");
    assert!(!client.source().await.unwrap().contains("guest:guest"), "credentials on the page");
    screenshot(&client, "overview-unacked").await;
    client.close().await.unwrap();

    // An unreachable management API: the broker's own counts, unacked unknown and why, and
    // never the URL's password.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let unreachable = format!("http://guest:s3cret-pw@127.0.0.1:{closed}");
    let api = Api::start_with(&h, &[("YIZHAN_RABBIT_MANAGEMENT_URL", &unreachable)]).await;
    let client = browser(&driver).await;
    sign_in(&client, &api).await;
    assert_eq!(text_of(&client, &row("ready")).await, "3", "ready from a passive declare");
    assert_eq!(text_of(&client, &row("unacked")).await, "?");
    let why = text_of(&client, "#unacked-unknown").await;
    assert!(why.contains("did not answer") && why.contains(&format!("127.0.0.1:{closed}")), "{why}");
    assert!(!client.source().await.unwrap().contains("s3cret-pw"), "a password on the page");
    assert!(!std::fs::read_to_string(&api.log).unwrap().contains("s3cret-pw"), "a password in the log");
    client.close().await.unwrap();
    drop(consumer);
    channel.close(200, "done".into()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_and_api_read_the_dead_letters_one_at_a_time() {
    // Reading the queue takes every letter out and puts a copy back: a reader beside another one
    // would see only what the other has not taken. The console takes the API's lock, so
    // concurrent reads through both each see every letter. (Letters are compared by id: RabbitMQ
    // 3.10's quorum queues may return a few acked originals beside their copies,
    // rabbitmq/rabbitmq-server#10327, so a read can also show a letter twice, and the queue
    // grows; few rounds keep it below the console's 500-letter read.)
    const LETTERS: usize = 40;
    let h = Harness::start("console-dlq-lock", Store::Sqlite, SandboxConfig::default_accounts(), "").await;
    let api = Api::start(&h).await;
    let dead = h.names().dead();
    let publisher = yizhan_broker::Publisher::open(&h.connection).await.unwrap();
    let mut ids = std::collections::BTreeSet::new();
    for _ in 0..LETTERS {
        let id = uuid::Uuid::now_v7().to_string();
        let body = json!({"id": id, "connector": "tencent_sms", "config": "default", "action": "send_sms"});
        publisher
            .publish(yizhan_broker::Message {
                exchange: &dead,
                routing_key: "",
                body: body.to_string().as_bytes(),
                message_id: Some(&id),
                headers: Default::default(),
                expiration_ms: None,
            })
            .await
            .unwrap();
        ids.insert(id);
    }
    eventually("the dead letters are in", WAIT, || async { h.queue_depth(&dead).await as usize == LETTERS }).await;

    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let session = api.session_cookie(&http).await;
    let console_ids = || async {
        let page = http.get(format!("{}/ui/dead", api.base)).header("cookie", &session).send().await.unwrap();
        assert_eq!(page.status(), 200);
        let html = page.text().await.unwrap();
        html.split("<tr class=\"letter\" data-id=\"")
            .skip(1)
            .map(|row| row.split('"').next().unwrap().to_string())
            .collect::<std::collections::BTreeSet<String>>()
    };
    let api_ids = || async {
        let (status, body) = api.call(reqwest::Method::GET, "/v1/dlq", None).await;
        assert_eq!(status, 200, "{body}");
        body["letters"].as_array().unwrap().iter().map(|l| l["id"].as_str().unwrap().to_string()).collect()
    };
    for round in 0..3 {
        let (a, b, c, d) = tokio::join!(console_ids(), api_ids(), console_ids(), api_ids());
        let depth = h.queue_depth(&dead).await;
        for (reader, seen) in [("console", &a), ("API", &b), ("console", &c), ("API", &d)] {
            let missing = ids.difference(seen).count();
            assert_eq!(
                missing, 0,
                "round {round}: the {reader} missed {missing} of the {LETTERS} letters (queue: {depth})"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_csrf_guard_every_form() {
    let h = Harness::start("console-csrf", Store::Sqlite, SandboxConfig::default_accounts(), "").await;
    let api = Api::start(&h).await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    // A dead letter that a forged purge must not remove.
    let dead = h.names().dead();
    let publisher = yizhan_broker::Publisher::open(&h.connection).await.unwrap();
    publisher
        .publish(yizhan_broker::Message {
            exchange: &dead,
            routing_key: "",
            body: b"{\"connector\":\"tencent_sms\"}",
            message_id: None,
            headers: Default::default(),
            expiration_ms: None,
        })
        .await
        .unwrap();
    eventually("the dead letter is in", WAIT, || async { h.queue_depth(&dead).await == 1 }).await;

    // Without a session every page and form goes to the login page.
    for (method, path) in [("GET", "/ui"), ("GET", "/ui/dead"), ("GET", "/ui/configs"), ("POST", "/ui/dead/purge")] {
        let request = http.request(method.parse().unwrap(), format!("{}{path}", api.base));
        let response = request
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(&[("confirm", "yes")]))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303, "{method} {path}");
        assert_eq!(response.headers()["location"], "/ui/login", "{method} {path}");
    }
    // The login form itself needs its CSRF token.
    let (csrf, login_cookie) = api.login_form(&http).await;
    let forged = api.post_login(&http, None, &[("token", TOKEN)]).await;
    assert_eq!(forged.status(), 403, "a login without the CSRF cookie and field");
    let wrong = api.post_login(&http, Some(&login_cookie), &[("token", TOKEN), ("csrf", "0000")]).await;
    assert_eq!(wrong.status(), 403, "a login with a wrong CSRF token");
    let signed_in = api.post_login(&http, Some(&login_cookie), &[("token", TOKEN), ("csrf", csrf.as_str())]).await;
    assert_eq!(signed_in.status(), 303);
    let set_cookie = session_set_cookie(&signed_in);
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    assert!(!set_cookie.contains(TOKEN), "the cookie never carries the token");
    let session = set_cookie.split(';').next().unwrap().to_string();

    // With the session, pages load; the purge form's own token is on its page.
    let page = http.get(format!("{}/ui/dead/purge", api.base)).header("cookie", &session).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-security-policy"].to_str().unwrap().contains("default-src 'none'"));
    let form_csrf = hidden_csrf(&page.text().await.unwrap());
    // A form post without the CSRF token, or with another, is refused and changes nothing.
    for fields in [vec![("confirm", "yes")], vec![("confirm", "yes"), ("csrf", "f00d")]] {
        let response = http
            .post(format!("{}/ui/dead/purge", api.base))
            .header("cookie", &session)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(&fields))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{fields:?}");
    }
    assert_eq!(h.queue_depth(&dead).await, 1, "a refused purge purged nothing");
    // With it, the purge goes through.
    let response = http
        .post(format!("{}/ui/dead/purge", api.base))
        .header("cookie", &session)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[("confirm", "yes"), ("csrf", form_csrf.as_str())]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/ui/dead?purged=1");
    assert_eq!(h.queue_depth(&dead).await, 0);
}
