//! `cargo xtask fuzz`: the cargo-fuzz targets in `zombie-daemon/fuzz` (the cgroup path,
//! /proc and cgroupfs files, the remediation policy, the command line), each for a while.
//!
//! The fuzz crate is its own workspace, built by nightly cargo into
//! `zombie-daemon/fuzz/target`, so it never waits on the main workspace's target-dir lock.
//! New inputs go to a scratch corpus (`fuzz/corpus/<target>`, ignored by git); the
//! committed seeds in `fuzz/seeds/<target>` are only read. A crash fails the run, naming
//! the target and the saved input.

use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context, bail};

use crate::{root, status};

/// Every target, in the order they run.
pub const TARGETS: &[&str] = &["cgroup_path", "proc_files", "policy", "cli"];
pub const DEFAULT_SECONDS: u64 = 20;
const CARGO_FUZZ_VERSION: &str = "0.13.2";
/// The daemon's parsers are safe Rust: AddressSanitizer would find nothing there. Without
/// it and with 16 codegen units (cargo-fuzz's default is one) a fresh build took 5 min
/// instead of 7 on two cores, and the targets ran 3-6x more inputs a second. Overflow
/// checks and debug assertions stay on.
const CARGO_FUZZ_FLAGS: &[&str] = &["--sanitizer", "none", "--codegen-units", "16"];
/// Inputs beyond a /proc file's size only slow the search down.
const LIBFUZZER_FLAGS: &[&str] = &[
    "-max_len=8192",
    "-rss_limit_mb=2048",
    "-timeout=10",
    "-print_final_stats=1",
];

fn fuzz_dir() -> PathBuf {
    root().join("zombie-daemon/fuzz")
}

/// Nightly cargo, with none of the outer cargo's or rustup's choices (toolchain, target
/// dir, flags) leaking in: cargo-fuzz sets its own RUSTFLAGS.
fn nightly_cargo() -> Command {
    let mut c = Command::new("cargo");
    c.current_dir(fuzz_dir());
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let keep = matches!(key.as_ref(), "CARGO_HOME" | "RUSTUP_HOME");
        if !keep
            && (key.starts_with("CARGO")
                || key.starts_with("RUSTC")
                || key.starts_with("RUSTFLAGS")
                || key == "RUSTDOCFLAGS"
                || key == "RUSTUP_TOOLCHAIN")
        {
            c.env_remove(key.as_ref());
        }
    }
    c.arg("+nightly");
    c
}

fn cargo_fuzz_ok() -> bool {
    Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(CARGO_FUZZ_VERSION))
}

/// Nightly (cargo-fuzz builds with unstable compiler flags) and cargo-fuzz, installed when
/// missing.
fn tools() -> anyhow::Result<()> {
    let nightly = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !nightly {
        status(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))
        .context("the fuzz targets need a nightly toolchain (rustup)")?;
    }
    if !cargo_fuzz_ok() {
        status(Command::new("cargo").args([
            "install",
            "--locked",
            &format!("cargo-fuzz@{CARGO_FUZZ_VERSION}"),
        ]))?;
    }
    Ok(())
}

/// The daemon's build.rs embeds the eBPF object; the fuzz build takes a prebuilt one
/// (ZOMBIE_EBPF_OBJECT) instead of building it again with Debian's toolchain. Its bytes do
/// not matter to the parsers, so one copy at a fixed path is kept: a path that changed
/// would rebuild the daemon crate.
fn ebpf_object() -> anyhow::Result<PathBuf> {
    let kept = fuzz_dir().join("target/zombie-ebpf.o");
    if kept.exists() {
        return Ok(kept);
    }
    let newest = || -> Option<PathBuf> {
        ["debug", "release"]
            .iter()
            .filter_map(|p| std::fs::read_dir(root().join("target").join(p).join("build")).ok())
            .flatten()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("zombie-daemon-")
            })
            .map(|e| e.path().join("out/zombie-ebpf.o"))
            .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
            .max()
            .map(|(_, p)| p)
    };
    let built = match newest() {
        Some(p) => p,
        None => {
            crate::build(false)?;
            newest()
                .context("the daemon built, but no zombie-ebpf.o is under target/debug/build")?
        }
    };
    std::fs::create_dir_all(kept.parent().unwrap())?;
    std::fs::copy(&built, &kept).with_context(|| format!("copy {}", built.display()))?;
    Ok(kept)
}

/// What libFuzzer said at the end of a run.
#[derive(Default)]
struct Summary {
    runs: String,
    execs_per_sec: String,
    cov: String,
    features: String,
    corpus: String,
}

impl Summary {
    fn take(&mut self, line: &str) {
        let after = |key: &str| -> Option<String> {
            let rest = &line[line.find(key)? + key.len()..];
            Some(rest.split_whitespace().next()?.to_string())
        };
        if let Some(v) = line.strip_prefix("stat::number_of_executed_units:") {
            self.runs = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("stat::average_exec_per_sec:") {
            self.execs_per_sec = v.trim().to_string();
        } else if line.starts_with('#') && line.contains(" cov: ") {
            self.cov = after(" cov: ").unwrap_or_default();
            self.features = after(" ft: ").unwrap_or_default();
            self.corpus = after(" corp: ").unwrap_or_default();
        }
    }
}

/// libFuzzer's progress lines worth showing: not every new input, nor its dictionary.
fn shown(line: &str, in_dictionary: &mut bool) -> bool {
    if line.starts_with("###### Recommended dictionary") {
        *in_dictionary = true;
    }
    if *in_dictionary {
        *in_dictionary = !line.starts_with("###### End of recommended dictionary");
        return false;
    }
    if line.trim_start().starts_with("NEW_FUNC") {
        return false;
    }
    let mut words = line.split_whitespace();
    let progress = words.next().is_some_and(|w| w.starts_with('#'));
    !(progress && matches!(words.next(), Some("NEW" | "REDUCE")))
}

fn artifacts(target: &str) -> BTreeSet<PathBuf> {
    std::fs::read_dir(fuzz_dir().join("artifacts").join(target))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// Runs one target for `seconds`; the error names the saved input.
fn run_one(target: &str, seconds: u64, object: &Path) -> anyhow::Result<Summary> {
    let dir = fuzz_dir();
    let corpus = dir.join("corpus").join(target);
    std::fs::create_dir_all(&corpus)?;
    let before = artifacts(target);
    let mut cmd = nightly_cargo();
    cmd.args(["fuzz", "run"])
        .args(CARGO_FUZZ_FLAGS)
        .arg(target)
        .arg(&corpus)
        .arg(dir.join("seeds").join(target))
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .args(LIBFUZZER_FLAGS)
        .env("ZOMBIE_EBPF_OBJECT", object)
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped());
    eprintln!("xtask: fuzzing {target} for {seconds} s");
    let mut child = cmd
        .spawn()
        .context("cannot run `cargo +nightly fuzz` (is rustup installed?)")?;
    let mut summary = Summary::default();
    let mut tail = std::collections::VecDeque::new();
    let mut in_dictionary = false;
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap_or_default();
        summary.take(&line);
        if shown(&line, &mut in_dictionary) {
            eprintln!("{line}");
        }
        if tail.len() == 40 {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    let st = child.wait()?;
    if st.success() {
        return Ok(summary);
    }
    let new: Vec<_> = artifacts(target).difference(&before).cloned().collect();
    match new.first() {
        Some(input) => bail!(
            "fuzz target {target} crashed; the input is saved as {}. Reproduce with \
             `ZOMBIE_EBPF_OBJECT={} cargo +nightly fuzz run {} {target} {}` in \
             zombie-daemon/fuzz, then fix the parser and add the input as a unit test",
            input.display(),
            object.display(),
            CARGO_FUZZ_FLAGS.join(" "),
            input.display()
        ),
        None => bail!(
            "fuzz target {target} failed ({st}) without saving an input; the end of its \
             output:\n{}",
            Vec::from(tail).join("\n")
        ),
    }
}

/// `cargo xtask fuzz [--seconds N] [TARGET...]`: every target (or those named) for N
/// seconds each.
pub fn fuzz(seconds: u64, targets: &[String]) -> anyhow::Result<()> {
    let started = Instant::now();
    let targets: Vec<&str> = if targets.is_empty() {
        TARGETS.to_vec()
    } else {
        for t in targets {
            if !TARGETS.contains(&t.as_str()) {
                bail!("no fuzz target {t}; the targets are {}", TARGETS.join(", "));
            }
        }
        targets.iter().map(String::as_str).collect()
    };
    tools()?;
    let object = ebpf_object()?;
    // The workspace's lock, so the daemon's dependencies are the versions it is tested with.
    let lock = fuzz_dir().join("Cargo.lock");
    if !lock.exists() {
        std::fs::copy(root().join("Cargo.lock"), &lock)?;
    }
    let build = Instant::now();
    status(
        nightly_cargo()
            .args(["fuzz", "build"])
            .args(CARGO_FUZZ_FLAGS)
            .env("ZOMBIE_EBPF_OBJECT", &object),
    )
    .context("building the fuzz targets")?;
    let build_secs = build.elapsed().as_secs_f64();

    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for t in &targets {
        match run_one(t, seconds, &object) {
            Ok(s) => rows.push((t, s, "ok".to_string())),
            Err(e) => {
                eprintln!("xtask: {e:#}");
                failed.push(format!("{e:#}"));
                rows.push((t, Summary::default(), "CRASH".into()));
            }
        }
    }
    eprintln!("\nxtask: fuzz build {build_secs:.0} s, {seconds} s per target");
    eprintln!(
        "{:<12} {:>10} {:>8} {:>6} {:>7} {:>12}  result",
        "target", "runs", "exec/s", "cov", "ft", "corpus"
    );
    for (t, s, result) in &rows {
        eprintln!(
            "{t:<12} {:>10} {:>8} {:>6} {:>7} {:>12}  {result}",
            s.runs, s.execs_per_sec, s.cov, s.features, s.corpus
        );
    }
    eprintln!(
        "xtask: fuzzing took {:.0} s",
        started.elapsed().as_secs_f64()
    );
    if !failed.is_empty() {
        bail!("{}", failed.join("\n"));
    }
    Ok(())
}
