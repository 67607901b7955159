//! The JSON Schemas under `schemas/json/` are generated from the Rust types; this test fails when
//! the checked-in files drift. Regenerate with `UPDATE_SCHEMAS=1 cargo test -p yizhan-schemas`.

use std::path::PathBuf;

#[test]
fn checked_in_schemas_match_the_rust_types() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("json");
    let update = std::env::var_os("UPDATE_SCHEMAS").is_some();
    let mut stale = Vec::new();
    let expected = yizhan_schemas::schema_files();
    for (path, text) in &expected {
        let file = root.join(path);
        if update {
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, text).unwrap();
        } else if std::fs::read_to_string(&file).ok().as_deref() != Some(text.as_str()) {
            stale.push(path.clone());
        }
    }
    let on_disk = walk(&root);
    let extra: Vec<_> = on_disk.iter().filter(|p| !expected.iter().any(|(e, _)| e == *p)).collect();
    assert!(stale.is_empty(), "stale or missing schema files (run with UPDATE_SCHEMAS=1): {stale:?}");
    assert!(extra.is_empty() || update, "schema files for no catalog entry: {extra:?}");
}

fn walk(root: &PathBuf) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out
}
