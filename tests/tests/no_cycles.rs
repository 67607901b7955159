//! No import cycle among the modules of any crate of the workspace (file level, see
//! `yizhan_tests::modgraph`).

use std::path::{Path, PathBuf};

use yizhan_tests::modgraph::{ModuleGraph, assert_no_cycles};

const CRATES: [&str; 7] = ["schemas", "broker", "state", "producer", "worker", "sandbox", "tests"];

/// Crates whose cycles are still being broken. A crate leaves this list when its cycles are gone:
/// the test fails until it does, so the list only shrinks.
const STILL_TANGLED: [&str; 0] = [];

fn src(krate: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(krate).join("src")
}

#[test]
fn no_crate_has_an_import_cycle() {
    let mut wrong = Vec::new();
    for krate in CRATES {
        let report = ModuleGraph::of_crate(&src(krate)).report();
        match (report.is_empty(), STILL_TANGLED.contains(&krate)) {
            (false, false) => wrong.extend(report.iter().map(|c| format!("{krate}: {c}"))),
            (true, true) => wrong.push(format!("{krate} has no cycle any more: take it off STILL_TANGLED")),
            _ => {}
        }
    }
    assert!(wrong.is_empty(), "import cycles:\n{}", wrong.join("\n"));
}

#[test]
fn the_checker_sees_the_module_files() {
    let graph = ModuleGraph::of_crate(&src("sandbox"));
    assert!(graph.edges.len() > 15, "{:?}", graph.edges.keys());
    assert!(graph.edges["lib:crate"].contains("lib:crate::state"));
    assert!(graph.edges.contains_key("main:crate"));
    assert_no_cycles(&src("broker"));
    assert_no_cycles(&src("sandbox"));
}
