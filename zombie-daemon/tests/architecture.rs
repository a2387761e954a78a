//! The daemon crate's own module graph, which no compiler checks inside one crate: no import
//! cycle; only the daemon's wiring and the command line reach `remediate` and `cli`; readers
//! (`http`, `metrics`, `snapshot`) never reach the table's owner or the probe.
//!
//! The core's rules are not here: `zombie-core` (the tracker, diagnosis, the remediation
//! engine) cannot import tokio, aya, procfs, hyper or tonic because its Cargo.toml does not
//! list them, and its clippy.toml forbids std's files, locks, clocks and processes (`cargo
//! clippy -D warnings` fails on any). What is left here are the readers' text bans, until
//! the read side is a crate of its own.
//!
//! Read from the sources (`crate::module` paths and `use crate::{...}` groups, test modules
//! left out), so a change that breaks a rule fails here with the offending edge named.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::Path,
};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The first segment of every `crate::` path in `src`, including those inside
/// `use crate::{a::b, c}` groups.
fn crate_refs(src: &str) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut rest = src;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level items of the group.
            let (mut depth, mut start) = (0, 0);
            let bytes: Vec<char> = group.chars().collect();
            for (k, c) in bytes.iter().enumerate() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        let item: String = bytes[start..k].iter().collect();
                        refs.insert(ident(item.trim()));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        let item: String = bytes[start..k].iter().collect();
                        refs.insert(ident(item.trim()));
                        start = k + 1;
                    }
                    _ => {}
                }
            }
        } else {
            refs.insert(ident(rest));
        }
    }
    refs.retain(|r| !r.is_empty() && r != "self");
    refs
}

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut g = Graph::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if top == "main" || top == "lib" {
            continue;
        }
        let text = fs::read_to_string(&f).unwrap();
        let code = text
            .find("#[cfg(test)]\nmod tests")
            .map_or(text.as_str(), |i| &text[..i]);
        let refs = g.entry(top.clone()).or_default();
        refs.extend(crate_refs(code));
        refs.remove(&top);
    }
    g
}

fn reaches(g: &Graph, from: &str, to: &str) -> Option<Vec<String>> {
    let mut stack = vec![vec![from.to_string()]];
    let mut seen = BTreeSet::new();
    while let Some(path) = stack.pop() {
        let last = path.last().unwrap();
        for next in g.get(last).into_iter().flatten() {
            if next == to {
                let mut p = path.clone();
                p.push(next.clone());
                return Some(p);
            }
            if seen.insert(next.clone()) {
                let mut p = path.clone();
                p.push(next.clone());
                stack.push(p);
            }
        }
    }
    None
}

#[test]
fn the_module_graph_has_no_cycle() {
    let g = graph();
    assert!(g.len() > 15, "modules not found: {g:?}");
    for m in g.keys() {
        if let Some(path) = reaches(&g, m, m) {
            panic!("import cycle: {}", path.join(" -> "));
        }
    }
}

#[test]
fn only_the_wiring_and_the_command_line_reach_remediate_and_the_cli() {
    let g = graph();
    let above = ["daemon", "cli", "commands", "remediate"];
    for m in g.keys().filter(|m| !above.contains(&m.as_str())) {
        for target in ["remediate", "cli", "daemon", "commands"] {
            if let Some(path) = reaches(&g, m, target) {
                panic!("{m} reaches {target}: {}", path.join(" -> "));
            }
        }
    }
    assert!(reaches(&g, "daemon", "remediate").is_some());
}

#[test]
fn readers_never_reach_the_table_owner_or_proc() {
    let g = graph();
    for reader in ["http", "metrics", "snapshot"] {
        for owner in ["daemon", "probe"] {
            if let Some(path) = reaches(&g, reader, owner) {
                panic!("{reader} reaches {owner}: {}", path.join(" -> "));
            }
        }
    }
    // Handlers, collectors and snapshot types hold receivers and data: no lock of the core,
    // no Tracker, no Attributor, no file reads.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for file in ["http.rs", "metrics.rs", "snapshot.rs"] {
        let whole = fs::read_to_string(src.join(file)).unwrap();
        // Test modules drive the real parts (a tracker to feed the counters): not readers.
        let code = whole
            .find("#[cfg(test)]\nmod tests")
            .map_or(whole.as_str(), |i| &whole[..i]);
        let text: String = code
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        for banned in [
            "Tracker",
            "Attributor",
            "Mutex<Snapshot",
            "RwLock<",
            "fs::read",
            "read_to_string",
            "procfs::",
        ] {
            assert!(!text.contains(banned), "{file} mentions {banned}");
        }
        // http.rs has one mutex, its own registry of connections.
        if file != "http.rs" {
            assert!(!text.contains("Mutex<"), "{file} holds a mutex");
        }
    }
}

#[test]
fn crate_refs_reads_paths_and_groups() {
    let r = crate_refs("use crate::{a::b, c::{d, e}, self};\nfn f() { crate::g::h(); }");
    assert_eq!(
        r.into_iter().collect::<Vec<_>>(),
        ["a", "c", "g"].map(String::from)
    );
}
