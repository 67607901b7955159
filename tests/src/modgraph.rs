//! The file-level module dependency graph of a crate, and its import cycles.
//!
//! Reads the source as text (no compiler): from each crate root (`src/lib.rs`, `src/main.rs`,
//! `src/bin/*.rs`) it follows `mod name;` to the module files, then takes every path that starts
//! with `crate::`, `super::`, `self::` or a child module's name (in `use` trees and in code, not in
//! comments or strings) as an edge to the file that defines the longest prefix of that path. A
//! parent's `mod child;` is containment, not a dependency. Inline modules (`mod tests { .. }`) are
//! part of their file, with `super::` resolved from inside them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A crate's module files (by module path, `crate`, `crate::tencent::sms`) and their dependencies.
#[derive(Debug, Default)]
pub struct ModuleGraph {
    /// Module path → the module paths it refers to (other files only).
    pub edges: BTreeMap<String, BTreeSet<String>>,
}

impl ModuleGraph {
    /// The graph of every crate root found under `src`.
    pub fn of_crate(src: &Path) -> ModuleGraph {
        let mut graph = ModuleGraph::default();
        let mut roots: Vec<(String, PathBuf)> = Vec::new();
        for (name, file) in [("lib", "lib.rs"), ("main", "main.rs")] {
            let path = src.join(file);
            if path.exists() {
                roots.push((name.to_string(), path));
            }
        }
        if let Ok(bins) = std::fs::read_dir(src.join("bin")) {
            for entry in bins.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "rs") {
                    let stem = path.file_stem().unwrap().to_string_lossy().to_string();
                    roots.push((format!("bin/{stem}"), path));
                }
            }
        }
        for (root, path) in roots {
            graph.add_root(&root, &path);
        }
        graph
    }

    fn add_root(&mut self, root: &str, path: &Path) {
        // Module path (without the root prefix) → file.
        let mut files: BTreeMap<Vec<String>, PathBuf> = BTreeMap::new();
        let mut todo = vec![(Vec::<String>::new(), path.to_path_buf(), true)];
        while let Some((module, file, owns_dir)) = todo.pop() {
            let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let dir = if owns_dir { file.parent().unwrap().to_path_buf() } else { file.with_extension("") };
            for child in declared_modules(&tokens(&text)) {
                let mut child_path = module.clone();
                child_path.push(child.clone());
                let flat = dir.join(format!("{child}.rs"));
                let nested = dir.join(&child).join("mod.rs");
                if flat.exists() {
                    todo.push((child_path, flat, false));
                } else if nested.exists() {
                    todo.push((child_path, nested, true));
                }
            }
            files.insert(module, file);
        }
        let name = |module: &[String]| {
            std::iter::once(format!("{root}:crate")).chain(module.iter().cloned()).collect::<Vec<_>>().join("::")
        };
        for (module, file) in &files {
            let text = std::fs::read_to_string(file).unwrap();
            let children: BTreeSet<String> = declared_modules(&tokens(&text)).into_iter().collect();
            let from = name(module);
            let deps = self.edges.entry(from.clone()).or_default();
            for path in referenced_paths(&tokens(&text), module, &children) {
                // The longest prefix that is a module file.
                let target = (0..=path.len()).rev().map(|n| &path[..n]).find(|p| files.contains_key(*p));
                if let Some(target) = target {
                    let to = name(target);
                    if to != from {
                        deps.insert(to);
                    }
                }
            }
        }
    }

    /// Every cycle, one per strongly connected component with more than one module: the modules of
    /// one loop through it, first module repeated at the end.
    pub fn cycles(&self) -> Vec<Vec<String>> {
        self.tangles().iter().map(|scc| self.loop_within(scc)).collect()
    }

    /// The groups of modules that all reach each other (strongly connected, more than one module).
    pub fn tangles(&self) -> Vec<BTreeSet<String>> {
        strongly_connected(&self.edges).into_iter().filter(|scc| scc.len() > 1).collect()
    }

    /// One line per tangle: its modules, then one loop through them.
    pub fn report(&self) -> Vec<String> {
        self.tangles()
            .iter()
            .map(|scc| {
                let modules: Vec<&str> = scc.iter().map(String::as_str).collect();
                format!("{{{}}}, e.g. {}", modules.join(", "), self.loop_within(scc).join(" -> "))
            })
            .collect()
    }

    /// A loop through the first module of `scc`, staying inside it (breadth-first: a shortest one).
    fn loop_within(&self, scc: &BTreeSet<String>) -> Vec<String> {
        let start = scc.iter().next().unwrap().clone();
        let mut previous: BTreeMap<String, String> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start.clone()]);
        while let Some(at) = queue.pop_front() {
            for next in self.edges.get(&at).into_iter().flatten().filter(|n| scc.contains(*n)) {
                if *next == start {
                    // Walk back from `at` to `start`, then read it forwards.
                    let mut path = vec![start.clone()];
                    let mut node = at.clone();
                    while node != start {
                        path.push(node.clone());
                        node = previous[&node].clone();
                    }
                    path.push(start);
                    path.reverse();
                    return path;
                }
                if !previous.contains_key(next) {
                    previous.insert(next.clone(), at.clone());
                    queue.push_back(next.clone());
                }
            }
        }
        scc.iter().cloned().collect()
    }
}

/// Panics listing every import cycle among the modules of the crate whose sources are in `src`.
pub fn assert_no_cycles(src: &Path) {
    let report = ModuleGraph::of_crate(src).report();
    assert!(report.is_empty(), "import cycles in {}:\n{}", src.display(), report.join("\n"));
}

/// Tarjan's algorithm (iterative would be longer; module graphs are shallow).
fn strongly_connected(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<BTreeSet<String>> {
    struct Walk<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<BTreeSet<String>>,
    }
    fn visit<'a>(w: &mut Walk<'a>, node: &'a str) {
        let i = w.index.len();
        w.index.insert(node, i);
        w.low.insert(node, i);
        w.stack.push(node);
        w.on_stack.insert(node);
        for next in w.edges.get(node).into_iter().flatten() {
            let next = next.as_str();
            if !w.index.contains_key(next) {
                visit(w, next);
                let low = w.low[node].min(w.low[next]);
                w.low.insert(node, low);
            } else if w.on_stack.contains(next) {
                let low = w.low[node].min(w.index[next]);
                w.low.insert(node, low);
            }
        }
        if w.low[node] == w.index[node] {
            let mut scc = BTreeSet::new();
            while let Some(top) = w.stack.pop() {
                w.on_stack.remove(top);
                scc.insert(top.to_string());
                if top == node {
                    break;
                }
            }
            w.found.push(scc);
        }
    }
    let mut walk = Walk {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for node in edges.keys() {
        if !walk.index.contains_key(node.as_str()) {
            visit(&mut walk, node);
        }
    }
    walk.found
}

/// Identifiers and punctuation of Rust source, without comments, strings and char literals.
fn tokens(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == 'r' && (next == Some('#') || next == Some('"')) && raw_string_end(&chars, i).is_some() {
            i = raw_string_end(&chars, i).unwrap();
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            let close = (i + 2..(i + 12).min(chars.len())).find(|&j| chars[j] == '\'');
            let is_char = next == Some('\\') || chars.get(i + 2) == Some(&'\'');
            i = if is_char { close.map_or(i + 1, |j| j + 1) } else { i + 1 };
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
        } else if c == ':' && next == Some(':') {
            out.push("::".to_string());
            i += 2;
        } else if !c.is_whitespace() {
            out.push(c.to_string());
            i += 1;
        } else {
            i += 1;
        }
    }
    out
}

/// Where a raw string (`r"..."`, `r#"..."#`) starting at `start` ends, if it is one.
fn raw_string_end(chars: &[char], start: usize) -> Option<usize> {
    let mut i = start + 1;
    let mut hashes = 0;
    while chars.get(i) == Some(&'#') {
        hashes += 1;
        i += 1;
    }
    if chars.get(i) != Some(&'"') {
        return None;
    }
    i += 1;
    while i < chars.len() {
        if chars[i] == '"' && (1..=hashes).all(|h| chars.get(i + h) == Some(&'#')) {
            return Some(i + 1 + hashes);
        }
        i += 1;
    }
    Some(i)
}

fn is_ident(token: &str) -> bool {
    token.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// The names of the out-of-line modules a file declares (`mod x;`, `pub(crate) mod x;`).
fn declared_modules(tokens: &[String]) -> Vec<String> {
    tokens.windows(3).filter(|w| w[0] == "mod" && is_ident(&w[1]) && w[2] == ";").map(|w| w[1].clone()).collect()
}

/// Every module-relative path the file refers to, resolved to an absolute module path (without the
/// root): `crate::a::b`, `super::x` and `self::x` from where they stand, and `child::x` for the
/// file's own out-of-line modules.
fn referenced_paths(tokens: &[String], module: &[String], children: &BTreeSet<String>) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    // Inline modules open at a brace depth: (name, depth inside).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i].as_str();
        match t {
            "{" => depth += 1,
            "}" => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth -= 1;
            }
            "mod" if tokens.get(i + 2).is_some_and(|t| t == "{") => {
                inline.push((tokens[i + 1].clone(), depth + 1));
            }
            _ => {}
        }
        let here: Vec<String> = module.iter().cloned().chain(inline.iter().map(|(n, _)| n.clone())).collect();
        let preceded_by_path = i > 0 && (tokens[i - 1] == "::" || tokens[i - 1] == "$");
        let starts_path = tokens.get(i + 1).is_some_and(|t| t == "::") && !preceded_by_path;
        if starts_path && (t == "crate" || t == "super" || t == "self" || (inline.is_empty() && children.contains(t))) {
            let (prefixes, end) = path_tree(tokens, i);
            for segments in prefixes {
                if let Some(resolved) = resolve(&segments, &here) {
                    out.push(resolved);
                }
            }
            i = end;
            continue;
        }
        i += 1;
    }
    out
}

/// Resolves a path's leading `crate`/`super`/`self` against the module `here`.
fn resolve(segments: &[String], here: &[String]) -> Option<Vec<String>> {
    let mut base: Vec<String> = here.to_vec();
    let mut rest = segments;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &rest[1..];
        }
        Some("self") => rest = &rest[1..],
        Some("super") => {
            while rest.first().is_some_and(|s| s == "super") {
                base.pop()?;
                rest = &rest[1..];
            }
        }
        _ => {}
    }
    base.extend(rest.iter().filter(|s| is_ident(s)).cloned());
    Some(base)
}

/// The paths of a path or `use` tree starting at `start` (`a::b::{c, d::e}` gives `a::b::c` and
/// `a::b::d::e`), and the index after it.
fn path_tree(tokens: &[String], start: usize) -> (Vec<Vec<String>>, usize) {
    let mut prefix = Vec::new();
    let mut i = start;
    loop {
        match tokens.get(i).map(String::as_str) {
            Some(t) if is_ident(t) => {
                prefix.push(t.to_string());
                i += 1;
                if tokens.get(i).is_some_and(|t| t == "::") {
                    i += 1;
                    continue;
                }
                return (vec![prefix], i);
            }
            Some("{") => {
                let mut all = Vec::new();
                i += 1;
                while i < tokens.len() && tokens[i] != "}" {
                    if tokens[i] == "," {
                        i += 1;
                        continue;
                    }
                    let (inner, end) = path_tree(tokens, i);
                    for p in inner {
                        all.push(prefix.iter().cloned().chain(p).collect());
                    }
                    // Skip `as name` and anything else up to the next item of the group.
                    i = end.max(i + 1);
                    while i < tokens.len() && tokens[i] != "," && tokens[i] != "}" {
                        i += 1;
                    }
                }
                return (all, i + 1);
            }
            // `*`, or the path ends in punctuation.
            _ => return (vec![prefix], i),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn use_trees_and_inline_paths_are_resolved() {
        let src = "use crate::a::{B, c::D};\n// crate::ignored::X\nfn f() { let s = \"crate::no\"; super::x::y(); }\n\
                   mod tests { use super::*; }\nuse child::Z;";
        let children = BTreeSet::from(["child".to_string()]);
        let paths = referenced_paths(&tokens(src), &strings(&["m", "n"]), &children);
        assert_eq!(
            paths,
            vec![
                strings(&["a", "B"]),
                strings(&["a", "c", "D"]),
                strings(&["m", "x", "y"]),
                strings(&["m", "n"]),
                strings(&["m", "n", "child", "Z"]),
            ]
        );
    }

    #[test]
    fn a_cycle_is_found_and_listed() {
        let mut graph = ModuleGraph::default();
        let edge = |g: &mut ModuleGraph, a: &str, b: &str| {
            g.edges.entry(a.to_string()).or_default().insert(b.to_string());
            g.edges.entry(b.to_string()).or_default();
        };
        edge(&mut graph, "a", "b");
        edge(&mut graph, "b", "c");
        edge(&mut graph, "c", "a");
        edge(&mut graph, "c", "d");
        assert_eq!(graph.cycles(), vec![strings(&["a", "b", "c", "a"])]);
    }
}
