//! Issue 21, directory targets: a sync whose target is another directory (`wecom.<config>`,
//! `feishu.<config>`), applied through that config's contact write APIs (real worker, RabbitMQ,
//! state store, the sandbox's strict WeCom and Feishu fakes).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use yizhan_sandbox::SandboxConfig;
use yizhan_sandbox::directory::{Directory, Member};
use yizhan_tests::{Harness, Store, job};

fn wecom_config() -> String {
    format!(
        r#"
[connectors.wecom.corp]
corp_id = "{corp}"
contacts_secret = "{secret}"
endpoint = "{{sandbox}}"
"#,
        corp = yizhan_sandbox::DEFAULT_WECOM_CORP.0,
        secret = yizhan_sandbox::DEFAULT_WECOM_CORP.2,
    )
}

fn feishu_config() -> String {
    format!(
        r#"
[connectors.feishu.tenant]
app_id = "{app}"
app_secret = "{secret}"
endpoint = "{{sandbox}}"
"#,
        app = yizhan_sandbox::DEFAULT_FEISHU_APP.0,
        secret = yizhan_sandbox::DEFAULT_FEISHU_APP.1,
    )
}

/// Runs the sync once; its result.
async fn run(h: &Harness) -> Value {
    h.succeed(job("directory_sync", "mirror", "run", json!({})), Duration::from_secs(60)).await
}

/// A directory's departments as paths of names (`Operations/SRE`), independent of ids.
fn department_paths(directory: &Directory) -> BTreeMap<String, String> {
    let path = |id: &str| {
        let mut names = Vec::new();
        let mut current = directory.departments.get(id);
        while let Some(department) = current {
            names.push(department.name.clone());
            current = directory.departments.get(&department.parent);
        }
        names.reverse();
        names.join("/")
    };
    directory.departments.keys().map(|id| (id.clone(), path(id))).collect()
}

/// Members as (id → (name, e-mail, department paths, enabled)).
fn members(directory: &Directory, skip_root: Option<&str>) -> BTreeMap<String, (String, String, Vec<String>, bool)> {
    let paths = department_paths(directory);
    directory
        .members
        .values()
        .map(|m| {
            let departments = m
                .departments
                .iter()
                .map(|d| {
                    let path = paths.get(d).cloned().unwrap_or_default();
                    // The WeCom root's name is not part of a Feishu path.
                    match skip_root.and_then(|root| path.strip_prefix(root)) {
                        Some(rest) => rest.trim_start_matches('/').to_string(),
                        None => path,
                    }
                })
                .collect();
            (m.id.clone(), (m.name.clone(), m.email.clone(), departments, m.enabled))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_feishu_directory_is_mirrored_into_wecom_and_its_edits_follow() {
    let extra = format!(
        "{}{}\n[connectors.directory_sync.mirror]\nsource = \"feishu.tenant\"\ntarget = \"wecom.corp\"\n",
        wecom_config(),
        feishu_config()
    );
    let h = Harness::start("dirsync-to-wecom", Store::Sqlite, SandboxConfig::default_accounts(), &extra).await;
    // An empty corp: its root only.
    h.sandbox().edit_wecom_directory(|d| {
        d.members.clear();
        d.departments.retain(|id, _| id == "1");
    });
    let _worker = h.spawn_worker(&[]).await;

    let first = run(&h).await;
    assert_eq!(first["failed"], json!([]), "{first}");
    let source = h.sandbox().feishu_directory();
    let target = h.sandbox().wecom_directory();
    assert_eq!(target.departments.len(), source.departments.len() + 1, "every department, under the root");
    let mut wecom_paths: Vec<String> = department_paths(&target).into_values().collect();
    wecom_paths.sort();
    assert_eq!(wecom_paths, ["Sandbox", "Sandbox/Engineering", "Sandbox/Operations", "Sandbox/Operations/SRE"]);
    assert_eq!(members(&target, Some("Sandbox")), members(&source, None), "the same members in the same departments");

    // Feishu's ids are not WeCom's: the rename finds the department WeCom numbered.
    h.sandbox().edit_feishu_directory(|d| {
        d.departments.get_mut("od-sandbox-ops").unwrap().name = "Ops".into();
        d.members.remove("u-eng-02");
        d.members.get_mut("u-eng-03").unwrap().email = "eng03@example.org".into();
    });
    let second = run(&h).await;
    assert_eq!(
        second["counts"],
        json!({"department": {"UPDATE": 1}, "member": {"DELETE": 1, "UPDATE": 1}}),
        "{second}"
    );
    let source = h.sandbox().feishu_directory();
    let target = h.sandbox().wecom_directory();
    assert_eq!(members(&target, Some("Sandbox")), members(&source, None));
    assert!(department_paths(&target).values().any(|p| p == "Sandbox/Ops/SRE"));

    let third = run(&h).await;
    assert_eq!(third["proposed"], 0, "a repeated run changes nothing: {third}");
}

/// 3 departments and 40 members with mobiles (Feishu needs one), a few not enabled.
fn wecom_directory() -> Directory {
    let mut directory = Directory::default();
    directory.put_department("1", "Tencent Demo", "0", 1);
    directory.put_department("2", "Engineering", "1", 2);
    directory.put_department("3", "Sales", "1", 3);
    directory.put_department("4", "Backend", "2", 4);
    for i in 0..40 {
        let department = ["2", "3", "4", "1"][i % 4];
        let id = format!("m{i:03}");
        let mut member = Member::new(&id, &format!("Member {i}"), department, &format!("{id}@example.com"), None);
        member.mobile = format!("+86138{i:08}");
        member.position = "Engineer".into();
        directory.put_member(member);
    }
    directory
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wecom_directory_is_mirrored_into_feishu_and_removals_freeze_users() {
    let extra = format!(
        "{}{}\n[connectors.directory_sync.mirror]\nsource = \"wecom.corp\"\ntarget = \"feishu.tenant\"\non_missing = \"disable\"\n",
        wecom_config(),
        feishu_config()
    );
    let h = Harness::start("dirsync-to-feishu", Store::Sqlite, SandboxConfig::default_accounts(), &extra).await;
    h.sandbox().edit_wecom_directory(|d| *d = wecom_directory());
    h.sandbox().edit_feishu_directory(|d| *d = Directory::default());
    let _worker = h.spawn_worker(&[]).await;

    let first = run(&h).await;
    assert_eq!(first["failed"], json!([]), "{first}");
    assert_eq!(first["counts"]["member"]["CREATE"], 40, "{first}");
    let source = h.sandbox().wecom_directory();
    let target = h.sandbox().feishu_directory();
    assert_eq!(target.departments.len(), 3, "the WeCom root is Feishu's root: {:?}", target.departments);
    assert_eq!(
        members(&target, None),
        members(&source, Some("Tencent Demo")),
        "the same members (user_id kept) in the same departments"
    );
    assert!(target.members.values().all(|m| m.mobile.starts_with("+86138")));

    h.sandbox().edit_wecom_directory(|d| {
        d.departments.get_mut("2").unwrap().name = "R&D".into();
        d.members.remove("m005");
        d.members.get_mut("m006").unwrap().name = "Renamed".into();
    });
    let second = run(&h).await;
    assert_eq!(
        second["counts"],
        json!({"department": {"UPDATE": 1}, "member": {"DISABLE": 1, "UPDATE": 1}}),
        "{second}"
    );
    let target = h.sandbox().feishu_directory();
    assert!(!target.members["m005"].enabled, "a DISABLE freezes the user");
    assert_eq!(target.members["m006"].name, "Renamed");
    assert!(target.departments.values().any(|d| d.name == "R&D"));

    let third = run(&h).await;
    assert_eq!(third["proposed"], 0, "{third}");
}
