//! The repository is self-contained (issue 15, item 8): provider facts are cited from
//! `docs/providers/<provider>.md`, every such citation names a document and a heading that exist,
//! each provider connector cites its document, and nothing points at notes outside the repository.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const DOCS: &str = "docs/providers/";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The repository's text files under `dirs` (relative to the root), skipping build output.
fn files(dirs: &[&str]) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    walk(&path, out);
                }
            } else if ["rs", "md", "toml", "yaml", "yml", "py", "sh", "js"]
                .iter()
                .any(|ext| name.ends_with(&format!(".{ext}")))
            {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    for dir in dirs {
        let path = root().join(dir);
        if path.is_file() { out.push(path) } else { walk(&path, &mut out) }
    }
    out
}

const CODE: &[&str] = &[
    "broker",
    "producer",
    "sandbox",
    "schemas",
    "state",
    "telemetry",
    "tests",
    "worker",
    "deploy",
    "scripts",
    "examples",
    "README.md",
];

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Each provider document's anchors.
fn anchors() -> BTreeMap<String, BTreeSet<String>> {
    headings().into_iter().map(|(doc, headings)| (doc, headings.iter().map(|h| slug(h)).collect())).collect()
}

/// Each provider document's headings, in order.
fn headings() -> BTreeMap<String, Vec<String>> {
    files(&["docs/providers"])
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let headings =
                text.lines().filter(|l| l.starts_with('#')).map(|l| l.trim_start_matches('#').trim().to_string());
            (path.file_name().unwrap().to_string_lossy().into_owned(), headings.collect())
        })
        .collect()
}

/// Every `docs/providers/<file>.md[#anchor]` in `text`.
fn citations(text: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    for (at, _) in text.match_indices(DOCS) {
        let rest = &text[at + DOCS.len()..];
        let end =
            rest.find(|c: char| !(c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '#'))).unwrap_or(rest.len());
        let cited = rest[..end].trim_end_matches('.');
        let (doc, anchor) = match cited.split_once('#') {
            Some((doc, anchor)) => (doc, Some(anchor.to_string())),
            None => (cited, None),
        };
        // `docs/providers/` alone names the folder.
        if !doc.is_empty() {
            out.push((doc.to_string(), anchor));
        }
    }
    out
}

#[test]
fn every_citation_names_an_existing_document_and_heading() {
    let docs = anchors();
    assert!(docs.len() >= 6, "the provider documents are found: {docs:?}");
    let mut wrong = Vec::new();
    let mut count = 0;
    for path in files(CODE) {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for (doc, anchor) in citations(&text) {
            count += 1;
            let shown = path.strip_prefix(root()).unwrap_or(&path).display().to_string();
            match (docs.get(&doc), &anchor) {
                (None, _) => wrong.push(format!("{shown}: no {DOCS}{doc}")),
                (Some(anchors), Some(anchor)) if !anchors.contains(anchor) => {
                    wrong.push(format!("{shown}: no heading #{anchor} in {DOCS}{doc}"))
                }
                _ => {}
            }
        }
    }
    assert!(count > 100, "only {count} citations found: is the walk right?");
    assert!(wrong.is_empty(), "citations that lead nowhere:\n{}", wrong.join("\n"));
}

#[test]
fn no_provider_document_repeats_a_heading() {
    // A repeated heading is a copy of a section, and its second anchor gets a number suffix.
    for (doc, headings) in headings() {
        let mut seen = BTreeSet::new();
        let repeated: Vec<&String> = headings.iter().filter(|h| !seen.insert(slug(h))).collect();
        assert!(repeated.is_empty(), "{DOCS}{doc} repeats {repeated:?}");
    }
}

#[test]
fn every_provider_connector_cites_its_document() {
    let own = ["directory_sync"];
    let mut silent = Vec::new();
    for kind in yizhan_schemas::kinds().iter().map(|k| k.name).filter(|k| !own.contains(k)) {
        let cites = files(&[&format!("worker/src/connectors/{kind}")])
            .iter()
            .any(|path| std::fs::read_to_string(path).is_ok_and(|text| text.contains(DOCS)));
        if !cites {
            silent.push(kind);
        }
    }
    assert!(silent.is_empty(), "connectors citing no provider document: {silent:?}");
}

#[test]
fn nothing_points_outside_the_repository() {
    // Built from parts, so that this file does not match itself.
    let outside = [
        ["reference", "/"].concat(),
        ["../", "shared"].concat(),
        ["rust", "-notes"].concat(),
        ["providers.md ", "§"].concat(),
        ["contract ", "§"].concat(),
    ];
    let mut wrong = Vec::new();
    for path in files(CODE).into_iter().chain(files(&["docs"])) {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for (n, line) in text.lines().enumerate() {
            if let Some(what) = outside.iter().find(|what| line.contains(what.as_str())) {
                let shown = path.strip_prefix(root()).unwrap_or(&path).display().to_string();
                wrong.push(format!("{shown}:{}: {what}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(wrong.is_empty(), "references to files outside the repository:\n{}", wrong.join("\n"));
}

#[test]
fn the_checks_can_fail() {
    assert_eq!(slug(" SES (service `ses`, version 2020-10-02)"), "ses-service-ses-version-2020-10-02");
    assert_eq!(slug("Contact writes"), "contact-writes");
    let cited =
        citations("see docs/providers/wecom.md#rate-limits. And docs/providers/qq-mail.md, docs/providers/ too");
    assert_eq!(cited, [("wecom.md".to_string(), Some("rate-limits".to_string())), ("qq-mail.md".to_string(), None)]);
    assert!(!anchors()["tencent-cloud.md"].contains("ses"), "a loose anchor is not a heading");
}
