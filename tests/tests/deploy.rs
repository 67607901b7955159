//! deploy/ checked by its own tools: `promtool check rules` and `check config`, `promtool check
//! metrics` on a live worker's /metrics, every metric of the Grafana dashboard and the alert rules
//! present in that live /metrics, and `deploy/check.py` (yamllint, the Kubernetes schemas through
//! kubernetes-validate, the KEDA ScaledObject against its vendored CRD schema, compose and systemd).
//! The tools come from `scripts/deploy-tools.sh` (which `scripts/test.sh` runs).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use yizhan_sandbox::{Fault, SandboxConfig};
use yizhan_schemas::Priority;
use yizhan_tests::{Harness, Store, WAIT, number, sms_job};

/// Metrics of RabbitMQ's own exporter (rabbitmq_prometheus, `/metrics/per-object`) that the
/// dashboard and rules may use. The tests' broker does not run that plugin, so these names are
/// allowed by this list instead of being looked up.
const RABBITMQ_EXPORTER_METRICS: &[&str] =
    &["rabbitmq_queue_messages", "rabbitmq_queue_messages_ready", "rabbitmq_queue_consumers"];

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy").canonicalize().expect("deploy/ exists")
}

/// The venv `scripts/deploy-tools.sh` fills (yamllint, kubernetes-validate, jsonschema).
fn venv() -> PathBuf {
    std::env::var_os("YIZHAN_DEPLOY_VENV").map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME").expect("HOME is set");
        Path::new(&home).join(".cache/yizhan/deploy-venv")
    })
}

/// Runs a command; returns (success, stdout + stderr). Panics with a hint when the tool is missing.
fn run(program: impl AsRef<std::ffi::OsStr>, args: &[&str], stdin: Option<&Path>) -> (bool, String) {
    let program = program.as_ref();
    let mut command = Command::new(program);
    command.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Some(path) = stdin {
        command.stdin(std::fs::File::open(path).expect("stdin file"));
    }
    let out = command.output().unwrap_or_else(|e| {
        panic!("{}: {e}; run scripts/deploy-tools.sh to install the deploy tools", program.display())
    });
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

// ----- metric names in PromQL ----------------------------------------------------------------

/// Metric names an expression uses: identifiers starting with `yizhan_` or `rabbitmq_`, outside
/// string literals (label values such as `"$prefix.dead"` or regexes are not names).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            // Skip the string literal (backslash escapes inside " and ').
            i += 1;
            while i < chars.len() && chars[i] != c {
                if chars[i] == '\\' && c != '`' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':') {
                i += 1;
            }
            let ident: String = chars[start..i].iter().collect();
            if ident.starts_with("yizhan_") || ident.starts_with("rabbitmq_") {
                names.insert(ident);
            }
        } else if c.is_ascii_digit() {
            // A number or a duration (`5m`, `1e3`): not a name.
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    names
}

/// Every PromQL expression of a Grafana dashboard: each `expr`, and each templating query
/// (`definition`, or a string `query` of a query variable).
fn dashboard_exprs(dashboard: &serde_json::Value) -> Vec<String> {
    fn walk(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, v) in map {
                    match (key.as_str(), v) {
                        ("expr" | "definition", serde_json::Value::String(s)) => out.push(s.clone()),
                        ("query", serde_json::Value::String(s))
                            if map.get("type").and_then(|t| t.as_str()) == Some("query") =>
                        {
                            out.push(s.clone());
                        }
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(dashboard, &mut out);
    out
}

/// Every `expr:` of a Prometheus rules file: inline (`expr: a > 0`, quoted or not) or a block
/// scalar (`expr: |` / `>-` with the expression on the more-indented lines below).
fn rule_exprs(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        i += 1;
        let Some(rest) = trimmed.strip_prefix("expr:") else { continue };
        let rest = rest.trim();
        if rest.starts_with('|') || rest.starts_with('>') {
            let mut body = Vec::new();
            while i < lines.len() {
                let next = lines[i];
                let next_indent = next.len() - next.trim_start().len();
                if !next.trim().is_empty() && next_indent <= indent {
                    break;
                }
                body.push(next.trim());
                i += 1;
            }
            out.push(body.join("\n"));
        } else {
            let unquoted = if rest.len() >= 2 && (rest.starts_with('"') || rest.starts_with('\'')) {
                // YAML quoting: '' inside '…', \\ and \" inside "…".
                let inner = &rest[1..rest.len() - 1];
                if rest.starts_with('\'') {
                    inner.replace("''", "'")
                } else {
                    inner.replace("\\\\", "\\").replace("\\\"", "\"")
                }
            } else {
                rest.to_string()
            };
            out.push(unquoted);
        }
    }
    out
}

/// Sample names of a Prometheus text exposition (`name{labels} value` / `name value`).
fn exposition_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// The names `exprs` use that a scrape of `exposition` does not have, each with the expression it
/// came from. `yizhan_*` names must appear as samples (so a histogram is used through its
/// `_bucket`, `_sum` or `_count` series, which exist once it observed something); `rabbitmq_*`
/// names must be in [`RABBITMQ_EXPORTER_METRICS`].
fn missing_metrics(exprs: &[String], exposition: &str) -> Vec<String> {
    let live = exposition_names(exposition);
    let mut missing = Vec::new();
    for expr in exprs {
        for name in metric_names(expr) {
            let known = if name.starts_with("rabbitmq_") {
                RABBITMQ_EXPORTER_METRICS.contains(&name.as_str())
            } else {
                live.contains(&name)
            };
            if !known {
                missing.push(format!("{name} (in `{expr}`)"));
            }
        }
    }
    missing
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn dashboard_files() -> Vec<PathBuf> {
    let dir = deploy_dir().join("grafana");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no dashboard in {}", dir.display());
    files
}

fn rule_files() -> Vec<PathBuf> {
    let dir = deploy_dir().join("prometheus");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no rules in {}", dir.display());
    files
}

fn all_exprs() -> Vec<String> {
    let mut exprs = Vec::new();
    for file in dashboard_files() {
        let dashboard: serde_json::Value = serde_json::from_str(&read(&file)).expect("dashboard JSON");
        exprs.extend(dashboard_exprs(&dashboard));
    }
    for file in rule_files() {
        exprs.extend(rule_exprs(&read(&file)));
    }
    exprs
}

// ----- the checks ------------------------------------------------------------------------------

/// A live worker's /metrics after SMS jobs that succeeded, one dead-lettered for good and an
/// invalid message, so that every labelled series exists.
async fn live_metrics(h: &Harness) -> String {
    let worker = h.spawn_worker(&[]).await;
    let blocked = number(900);
    h.sandbox().push_fault(Fault::tencent_number_status(&blocked, "FailedOperation.PhoneNumberInBlacklist")).unwrap();
    h.submit(&[sms_job(&[&number(901)], None), sms_job(&[&number(902)], None), sms_job(&[&blocked], None)]).await;
    h.publish_raw(b"not a job", Priority::Normal).await;
    yizhan_tests::eventually("2 succeeded, 1 dead-lettered, 1 invalid", WAIT, || async {
        worker.jobs_total("succeeded").await == 2
            && worker.jobs_total("dead_lettered").await == 1
            && worker.jobs_total("invalid").await == 1
    })
    .await;
    worker.metrics_text().await
}

#[tokio::test(flavor = "multi_thread")]
async fn dashboard_and_rules_use_only_metrics_a_live_worker_exports() {
    let h = Harness::start("deploy", Store::Sqlite, SandboxConfig::default_accounts(), "").await;
    let exposition = live_metrics(&h).await;

    // promtool lints the live exposition (names, types, HELP, suffixes).
    let scrape = h.dir.path().join("metrics.txt");
    std::fs::write(&scrape, &exposition).unwrap();
    let (ok, out) = run("promtool", &["check", "metrics"], Some(&scrape));
    assert!(ok, "promtool check metrics on the live /metrics:\n{out}\n{exposition}");

    let exprs = all_exprs();
    assert!(exprs.len() >= 20, "the dashboard and rules hold PromQL: {exprs:?}");
    let used: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    for family in [
        "yizhan_jobs_total",
        "yizhan_job_duration_seconds_bucket",
        "yizhan_provider_requests_total",
        "yizhan_rate_limit_wait_seconds_bucket",
        "yizhan_jobs_in_flight",
        "yizhan_broker_connected",
    ] {
        assert!(used.contains(family), "the dashboard or rules show {family}; used: {used:?}");
    }
    let missing = missing_metrics(&exprs, &exposition);
    assert!(missing.is_empty(), "metrics not exported by the worker:\n{}\nlive:\n{exposition}", missing.join("\n"));

    // The same check on a copy of the dashboard with one name broken fails.
    let dashboard = read(&dashboard_files()[0]);
    let broken = dashboard.replacen("yizhan_jobs_in_flight", "yizhan_jobs_inflight", 1);
    assert_ne!(broken, dashboard);
    let broken: serde_json::Value = serde_json::from_str(&broken).unwrap();
    let missing = missing_metrics(&dashboard_exprs(&broken), &exposition);
    assert!(missing.iter().any(|m| m.starts_with("yizhan_jobs_inflight ")), "{missing:?}");
}

#[test]
fn prometheus_rules_and_config_pass_promtool() {
    let files = rule_files();
    let paths: Vec<&str> = files.iter().map(|p| p.to_str().unwrap()).collect();
    let (ok, out) = run("promtool", &[&["check", "rules"][..], &paths[..]].concat(), None);
    assert!(ok, "promtool check rules:\n{out}");
    // Every rule's expression was found by the extractor that checks the metric names.
    let rules: usize =
        out.lines().filter_map(|l| l.trim().strip_prefix("SUCCESS: ")?.split(' ').next()?.parse::<usize>().ok()).sum();
    let exprs: usize = files.iter().map(|f| rule_exprs(&read(f)).len()).sum();
    assert!(rules > 0, "{out}");
    assert_eq!(exprs, rules, "rule_exprs found {exprs} expressions, promtool {rules} rules:\n{out}");

    let config = deploy_dir().join("compose/prometheus.yml");
    let (ok, out) = run("promtool", &["check", "config", config.to_str().unwrap()], None);
    assert!(ok, "promtool check config:\n{out}");
}

#[test]
fn manifests_validate_offline_and_lint_clean() {
    let python = venv().join("bin/python");
    let check = deploy_dir().join("check.py");
    let (ok, out) = run(&python, &[check.to_str().unwrap()], None);
    assert!(ok, "deploy/check.py (yamllint, kubernetes-validate, KEDA schema, compose, systemd):\n{out}");
    assert!(out.contains("deploy checks: ok"), "{out}");
    // And the checks catch broken copies (an unknown KEDA field, a missing lane, a short grace
    // period, an inlined secret, a lint error...).
    let (ok, out) = run(&python, &[check.to_str().unwrap(), "--self-test"], None);
    assert!(ok, "deploy/check.py --self-test:\n{out}");
}

#[test]
fn metric_name_extractor_reads_promql_and_catches_a_broken_name() {
    let names = metric_names(
        r#"sum by (connector) (rate(yizhan_jobs_total{outcome="yizhan_not_a_metric",queue=~".+\\.dead"}[5m]))
           / on() group_left rabbitmq_queue_consumers{queue='yizhan_x'} > 1e3 and yizhan_broker_connected"#,
    );
    let expected: BTreeSet<String> =
        ["yizhan_jobs_total", "rabbitmq_queue_consumers", "yizhan_broker_connected"].map(String::from).into();
    assert_eq!(names, expected);

    let rules = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: yizhan_a_total > 0\n        for: 5m\n      \
                 - alert: B\n        expr: |\n          sum(yizhan_b_total)\n            / sum(yizhan_c_total)\n        \
                 labels: {}\n      - record: r\n        expr: \"yizhan_d{x=\\\"1\\\"}\"\n";
    assert_eq!(
        rule_exprs(rules),
        ["yizhan_a_total > 0", "sum(yizhan_b_total)\n/ sum(yizhan_c_total)", "yizhan_d{x=\"1\"}"]
    );

    // An exposition with every family the worker exports (as its /metrics renders them).
    let exposition = "# TYPE yizhan_jobs_total counter\nyizhan_jobs_total{action=\"send_sms\",connector=\"tencent_sms\",outcome=\"succeeded\"} 1\n\
                      yizhan_job_duration_seconds_bucket{action=\"send_sms\",connector=\"tencent_sms\",le=\"0.1\"} 1\n\
                      yizhan_job_duration_seconds_sum{action=\"send_sms\",connector=\"tencent_sms\"} 0.01\n\
                      yizhan_job_duration_seconds_count{action=\"send_sms\",connector=\"tencent_sms\"} 1\n\
                      yizhan_provider_requests_total{connector=\"tencent_sms\",result=\"ok\"} 1\n\
                      yizhan_rate_limit_wait_seconds_bucket{connector=\"tencent_sms\",le=\"0.5\"} 1\n\
                      yizhan_rate_limit_wait_seconds_sum{connector=\"tencent_sms\"} 0\n\
                      yizhan_rate_limit_wait_seconds_count{connector=\"tencent_sms\"} 1\n\
                      yizhan_jobs_in_flight 0\nyizhan_broker_connected 1\n";
    let exprs = all_exprs();
    assert_eq!(missing_metrics(&exprs, exposition), Vec::<String>::new());

    // Mutated copies of the real dashboard and rules: each broken name is reported.
    let dashboard = read(&dashboard_files()[0]);
    for (good, bad) in [
        ("yizhan_job_duration_seconds_bucket", "yizhan_job_duration_bucket"),
        ("yizhan_rate_limit_wait_seconds_sum", "yizhan_rate_limit_wait_sum"),
        ("rabbitmq_queue_messages_ready", "rabbitmq_queue_ready"),
    ] {
        let mutated: serde_json::Value = serde_json::from_str(&dashboard.replacen(good, bad, 1)).unwrap();
        let missing = missing_metrics(&dashboard_exprs(&mutated), exposition);
        assert!(missing.iter().any(|m| m.starts_with(&format!("{bad} "))), "{bad} not caught: {missing:?}");
    }
    let rules = read(&rule_files()[0]);
    let mutated = rules.replacen("yizhan_broker_connected", "yizhan_broker_up", 1);
    let missing = missing_metrics(&rule_exprs(&mutated), exposition);
    assert!(missing.iter().any(|m| m.starts_with("yizhan_broker_up ")), "{missing:?}");
    // A bare histogram name selects no series: it is reported too.
    assert!(!missing_metrics(&["rate(yizhan_job_duration_seconds[5m])".into()], exposition).is_empty());
}
