//! The boundaries, held by the compiler and by clippy, and checked here to stay so.
//!
//! - `zombie-core` (the tracker, diagnosis, the remediation engine, the snapshot store and
//!   the shapes readers see) cannot import tokio, aya, procfs, hyper or tonic: its
//!   Cargo.toml does not list them.
//! - `zombie-api` (the published snapshot, the HTTP API, the metrics) cannot import the
//!   daemon crate (the table's owner, the probe, /proc), aya, procfs or tonic: its
//!   Cargo.toml does not list them, and the daemon depends on it, not the other way round.
//! - Both crates' clippy.toml forbid std's files, locks and processes (`cargo clippy -D
//!   warnings` fails on any; the read side's two bookkeeping locks are allowed where they
//!   are, with the reason).
//!
//! What no compiler checks is the dependency lists themselves and the daemon crate's own
//! module graph: [`the_core_and_the_read_side_depend_on_no_kernel_proc_or_runtime_crate`]
//! reads the resolved graph (`cargo tree`), and the module tests read the daemon's sources
//! (`crate::module` paths and `use crate::{...}` groups, test modules left out): no import
//! cycle, and only the daemon's wiring and the command line reach `remediate` and `cli`.

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

/// Every crate `package` builds on (its normal dependencies, transitively), as `cargo tree`
/// resolves them from the lock file.
fn resolved_dependencies(package: &str) -> BTreeSet<String> {
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "tree",
            "--locked",
            "--offline",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .args(["--format", "{p}", "-p", package])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deps: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    assert!(
        deps.contains(package),
        "{package} not in its own tree: {deps:?}"
    );
    deps
}

#[test]
fn the_core_and_the_read_side_depend_on_no_kernel_proc_or_runtime_crate() {
    // The kernel (aya), /proc (procfs), the runtime's API (tonic, k8s-cri), capabilities,
    // and the daemon crate, which owns the table and the probe.
    let node_facing = [
        "zombie-daemon",
        "aya",
        "aya-log",
        "procfs",
        "procfs-core",
        "tonic",
        "k8s-cri",
        "caps",
        "btf-rs",
    ];
    let api = resolved_dependencies("zombie-api");
    assert!(
        api.contains("zombie-core") && api.contains("hyper"),
        "{api:?}"
    );
    for banned in node_facing {
        assert!(!api.contains(banned), "zombie-api builds on {banned}");
    }
    // The core: none of those, and no runtime, server or system interface either.
    let core = resolved_dependencies("zombie-core");
    let io = [
        "zombie-api",
        "tokio",
        "hyper",
        "axum",
        "prometheus",
        "libc",
        "rustix",
    ];
    for banned in node_facing.into_iter().chain(io) {
        assert!(!core.contains(banned), "zombie-core builds on {banned}");
    }
    // And the daemon does build on both (the rule is not met by the crates being unused).
    let daemon = resolved_dependencies("zombie-daemon");
    assert!(daemon.contains("zombie-api") && daemon.contains("zombie-core"));
}

#[test]
fn the_core_and_the_read_side_forbid_files_locks_and_processes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for krate in ["zombie-core", "zombie-api"] {
        let conf = fs::read_to_string(root.join(krate).join("clippy.toml")).unwrap();
        for path in [
            "std::fs::read_to_string",
            "std::fs::File::open",
            "std::fs::File",
            "std::sync::Mutex",
            "std::sync::RwLock",
            "std::process::Command",
            "std::thread::sleep",
        ] {
            assert!(
                conf.contains(&format!("path = \"{path}\"")),
                "{krate}/clippy.toml does not forbid {path}"
            );
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
