//! Project tasks: `cargo xtask setup | build | image | run | test | lint | soak | bench |
//! fuzz | fresh | vm | vm-cgroup2 | gen`.
//!
//! `setup` installs what a fresh Debian 12 machine lacks (Debian's Rust toolchain with the
//! prebuilt bpf `core`, LLVM for bpf-linker, bpf-linker itself, the test tools); it is
//! idempotent and takes about a second when everything is there. `run` and `test` call it
//! first, so each is the one command it claims to be.

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::Instant,
};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

mod bench;
mod containerd2;
mod fresh;
mod fuzz;
mod r#gen;
mod image;
mod vm;
mod vm_arm64;
mod vm_cgroup2;

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Run the README's test command in a root like a new machine of this kind (debootstrap
    /// bookworm + the image's basic packages + rustup's toolchains), on a clone of HEAD.
    Fresh {
        /// Leave the fresh root mounted afterwards, to look inside.
        #[arg(long)]
        keep: bool,
    },
    /// Install the eBPF toolchain and test tools when missing (needs root and apt).
    Setup {
        /// Also install what the test suite needs.
        #[arg(long)]
        test: bool,
    },
    /// Build the daemon (and, through its build.rs, the eBPF programs).
    Build {
        #[arg(long)]
        release: bool,
        /// A static, stripped release daemon for amd64 (x86_64) or arm64 (aarch64), musl
        /// and rust-lld, in target/dist/<arch>/ with its debug info beside it.
        #[arg(long)]
        target: Option<String>,
    },
    /// Build the container image from deploy/Dockerfile with buildah (amd64 and arm64, or
    /// the --arch given) into target/image/zombie-daemon.oci.tar.
    Image {
        #[arg(long = "arch", value_delimiter = ',')]
        arches: Vec<String>,
    },
    /// Set up, build in release mode and run the daemon as root; extra arguments go to
    /// `zombie-daemon run`.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, lint, and pass the whole test suite (unit, the parsers' fuzz targets,
    /// end-to-end with real eBPF, the kernel matrix in VMs, alerting rules, deployment
    /// manifests).
    Test,
    /// cargo fmt --check and clippy -D warnings on every crate, the eBPF crate included.
    Lint,
    /// Run the soak test for a chosen time: random churn of zombies, reaps, storms, orphans
    /// and threads, the daemon's table checked against /proc all along.
    Soak {
        /// How long the churn lasts (the test suite runs 30 s).
        #[arg(long, default_value_t = 600)]
        seconds: u64,
        /// Replay a run: the seed a soak printed.
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Write the PrometheusRule and the Helm chart's copies (from deploy/prometheus/rules.yaml
    /// and deploy/grafana/zombie-daemon.json) and deploy/README.md's values table (from the
    /// chart's values.yaml); with --check, only fail when one is stale.
    Gen {
        #[arg(long)]
        check: bool,
    },
    /// Build release binaries, measure the daemon on this machine (kernel time per event,
    /// exit rate without loss, CPU, detection latency, memory, peers, event-loop stall,
    /// idle cost, workload cost) and write BENCHMARKS.md.
    Bench {
        /// Run only these sections (kernel, unreported, stall, idle, cost, bounded,
        /// memory, peers) and print them instead of writing
        /// BENCHMARKS.md, which only a whole run writes.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// Fuzz the cgroup path, /proc, policy and CLI parsers (cargo-fuzz on nightly, both
    /// installed when missing). A crash fails with the target's name and the saved input.
    Fuzz {
        /// How long each target runs.
        #[arg(long, default_value_t = fuzz::DEFAULT_SECONDS)]
        seconds: u64,
        /// Targets to run (default: all of cgroup_path, proc_files, policy, cli).
        targets: Vec<String>,
    },
    /// Boot Debian's 5.10, 6.1 and 6.12 kernels (and arm64 6.1 and 6.12, with cross-built
    /// aarch64 binaries) under qemu and run the kernel-facing
    /// end-to-end tests in each, then on this machine's kernel; print a table and fail on
    /// any failure (needs root; fetches and caches qemu and the kernels).
    Vm {
        /// Kernels to run (default: all): 5.10, 6.1, 6.12, arm64-6.1, arm64-6.12, host.
        #[arg(long = "kernel")]
        kernels: Vec<String>,
        /// VMs booted side by side (default: all, as memory allows: 4 GiB each).
        #[arg(long)]
        jobs: Option<usize>,
        /// Do not rewrite the README's kernel table after a full passing run.
        #[arg(long)]
        no_readme: bool,
    },
    /// Boot a pure cgroup v2 node (Debian's 6.18 from trixie-backports under qemu) and run
    /// the container-facing end-to-end tests there with containerd 1.6, 1.7 and 2.x and
    /// runc over the host's root; print a table and fail on any failure.
    VmCgroup2 {
        /// Do not rewrite the README's cgroup v2 table with this run's results.
        #[arg(long)]
        no_readme: bool,
        /// Only install and fetch what a run needs (qemu, the kernel, the containerds).
        #[arg(long)]
        fetch_only: bool,
    },
}

/// Debian packages: Rust 1.96 with a prebuilt `core` for bpfel-unknown-none, LLVM 22 for
/// bpf-linker (the same major as that rustc's LLVM), and protoc for the CRI protos that the
/// daemon's `k8s-cri` dependency compiles in its build script.
const TOOLCHAIN: &[Tool] = &[
    Tool::new("/usr/bin/rustc", "rustc-web"),
    Tool::new("/usr/bin/cargo", "cargo-web"),
    Tool::new(
        "/usr/lib/rustlib/bpfel-unknown-none/lib",
        "libstd-rust-web-dev-bpf",
    ),
    Tool::new("/usr/lib/llvm-22/bin/llvm-config", "llvm-22-dev"),
    Tool::new("/usr/bin/protoc", "protobuf-compiler"),
];
/// Every external program the test suites run, and the Debian package that ships it. The
/// machine image ships some of them already (gcc, tar, python3, ldd); they are listed all the
/// same, so that this table is the whole truth and preflight names the package when one is
/// gone.
const TEST_TOOLS: &[Tool] = &[
    Tool::new("/usr/bin/unshare", "util-linux"),
    Tool::new("/usr/bin/nsenter", "util-linux"),
    Tool::new("/usr/bin/ps", "procps"),
    Tool::new("/usr/bin/ldd", "libc-bin"),
    Tool::new("/usr/bin/tar", "tar"),
    Tool::new("/usr/bin/bash", "bash"),
    Tool::new("/usr/bin/dash", "dash"),
    Tool::new("/usr/bin/gcc", "gcc"),
    Tool::new("/usr/include/stdio.h", "libc6-dev"),
    Tool::new("/usr/bin/python3", "python3"),
    Tool::new("/usr/bin/node", "nodejs"),
    Tool::new("/usr/bin/npm", "npm"),
    Tool::new("/usr/sbin/runc", "runc"),
    Tool::new("/usr/bin/containerd", "containerd"),
    Tool::new("/usr/bin/ctr", "containerd"),
    Tool::new("/usr/bin/umoci", "umoci"),
    Tool::new("/bin/busybox", "busybox-static"),
    Tool::new("/usr/bin/tini", "tini"),
    Tool::new("/usr/bin/tini-static", "tini"),
    Tool::new("/usr/bin/dumb-init", "dumb-init"),
    Tool::new("/usr/bin/prometheus", "prometheus"),
    Tool::new("/usr/bin/promtool", "prometheus"),
    // The image (`cargo xtask image`) and the DaemonSet test: buildah builds
    // deploy/Dockerfile, kubectl renders the kustomization, bpftool shows what stays loaded,
    // file and readelf check the static binaries, the CA bundle goes into the image.
    Tool::new("/usr/bin/buildah", "buildah"),
    Tool::new("/usr/bin/kubectl", "kubectl"),
    Tool::new("/usr/sbin/bpftool", "bpftool"),
    Tool::new("/usr/bin/file", "file"),
    Tool::new("/usr/bin/readelf", "binutils"),
    Tool::new("/usr/share/ca-certificates/mozilla", "ca-certificates"),
];
/// What `cargo xtask bench` runs besides the project's binaries: the peers it is compared
/// with and bpftool for the kernel's per-program run time.
pub const BENCH_TOOLS: &[Tool] = &[
    Tool::new("/usr/sbin/bpftool", "bpftool"),
    Tool::new(
        "/usr/bin/prometheus-node-exporter",
        "prometheus-node-exporter",
    ),
    Tool::new(
        "/usr/bin/prometheus-process-exporter",
        "prometheus-process-exporter",
    ),
];

/// A file that must exist, and the Debian package that ships it.
pub struct Tool {
    path: &'static str,
    package: &'static str,
}

impl Tool {
    const fn new(path: &'static str, package: &'static str) -> Self {
        Self { path, package }
    }
}

/// The packages of `tools` whose file is not there (each package once).
fn missing(tools: &[Tool]) -> Vec<String> {
    let mut pkgs: Vec<String> = Vec::new();
    for t in tools {
        if !Path::new(t.path).exists() && !pkgs.iter().any(|p| p == t.package) {
            pkgs.push(t.package.to_string());
        }
    }
    pkgs
}

/// Installs the packages of the tools that are missing, then checks that every one is there.
pub fn install(tools: &[Tool]) -> anyhow::Result<()> {
    apt_install(&missing(tools))?;
    preflight(tools)
}

/// After setup, every tool must be there: one line per missing one, naming its package.
fn preflight(tools: &[Tool]) -> anyhow::Result<()> {
    let gone: Vec<String> = tools
        .iter()
        .filter(|t| !Path::new(t.path).exists())
        .map(|t| format!("{} (Debian package {})", t.path, t.package))
        .collect();
    if !gone.is_empty() {
        bail!("preflight: missing after setup: {}", gone.join(", "));
    }
    Ok(())
}
const BPF_LINKER_VERSION: &str = "0.13.0";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Fresh { keep } => fresh::fresh(keep),
        Task::Setup { test } => setup(test),
        Task::Build {
            release: _,
            target: Some(t),
        } => image::Arch::parse(&t)
            .and_then(image::build_target)
            .map(|_| ()),
        Task::Build {
            release,
            target: None,
        } => build(release),
        Task::Image { arches } => arches
            .iter()
            .map(|a| image::Arch::parse(a))
            .collect::<anyhow::Result<Vec<_>>>()
            .and_then(|a| image::image(&a)),
        Task::Run { args } => run(&args),
        Task::Test => test(),
        Task::Lint => lint(),
        Task::Soak { seconds, seed } => soak(seconds, seed),
        Task::Bench { only } => bench::bench(&only),
        Task::Gen { check } => r#gen::generate(check),
        Task::Fuzz { seconds, targets } => fuzz::fuzz(seconds, &targets),
        Task::Vm {
            kernels,
            jobs,
            no_readme,
        } => vm::vm(&kernels, jobs, !no_readme),
        Task::VmCgroup2 {
            no_readme,
            fetch_only,
        } => vm_cgroup2::vm_cgroup2(!no_readme, fetch_only),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

fn status(cmd: &mut Command) -> anyhow::Result<()> {
    let shown = format!("{cmd:?}");
    eprintln!("xtask: $ {shown}");
    let st = cmd
        .status()
        .with_context(|| format!("cannot run {shown}"))?;
    if !st.success() {
        bail!("{shown} failed ({st})");
    }
    Ok(())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc_geteuid() == 0 }
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

fn apt_install(pkgs: &[String]) -> anyhow::Result<()> {
    if pkgs.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "these Debian packages are missing: {}; run `cargo xtask setup` as root",
            pkgs.join(" ")
        );
    }
    // Another apt run (unattended upgrades on a new machine) holds the lock for a while.
    let install = |pkgs: &[String]| {
        Command::new("apt-get")
            .args(["-o", "DPkg::Lock::Timeout=600"])
            .args(["install", "-y", "--no-install-recommends"])
            .args(pkgs)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    eprintln!("xtask: installing {}", pkgs.join(" "));
    if install(pkgs) {
        return Ok(());
    }
    // A fresh machine's package lists may be missing or stale.
    status(
        Command::new("apt-get")
            .args(["-o", "DPkg::Lock::Timeout=600"])
            .arg("update"),
    )?;
    if !install(pkgs) {
        bail!("apt-get install {} failed", pkgs.join(" "));
    }
    Ok(())
}

/// LLVM's major version in Debian's rustc, which bpf-linker must match.
fn rustc_llvm_major() -> anyhow::Result<String> {
    let out = Command::new("/usr/bin/rustc")
        .arg("-vV")
        .output()
        .context("run /usr/bin/rustc -vV")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .context("no LLVM version in `/usr/bin/rustc -vV`")?;
    Ok(line.split('.').next().unwrap_or(line).to_string())
}

fn bpf_linker_ok() -> bool {
    Command::new("/usr/local/bin/bpf-linker")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER_VERSION))
        .unwrap_or(false)
}

fn setup(for_tests: bool) -> anyhow::Result<()> {
    let t = Instant::now();
    let mut pkgs = missing(TOOLCHAIN);
    if for_tests {
        for p in missing(TEST_TOOLS) {
            if !pkgs.contains(&p) {
                pkgs.push(p);
            }
        }
    }
    apt_install(&pkgs)?;
    let major = rustc_llvm_major()?;
    if !Path::new(&format!("/usr/lib/llvm-{major}/bin/llvm-config")).exists() {
        apt_install(&[format!("llvm-{major}-dev")])?;
    }
    if !bpf_linker_ok() {
        if !is_root() {
            bail!("bpf-linker {BPF_LINKER_VERSION} is missing; run `cargo xtask setup` as root");
        }
        status(
            Command::new("cargo")
                .args([
                    "install",
                    "--locked",
                    &format!("bpf-linker@{BPF_LINKER_VERSION}"),
                ])
                .args([
                    "--no-default-features",
                    "--features",
                    &format!("llvm-{major}"),
                ])
                .args(["--root", "/usr/local"])
                .env("LLVM_PREFIX", format!("/usr/lib/llvm-{major}")),
        )?;
    }
    preflight(TOOLCHAIN)?;
    image::setup_targets()?;
    if for_tests {
        preflight(TEST_TOOLS)?;
        containerd2::install()?;
        containerd2::install_trixie()?;
    }
    eprintln!("xtask: setup done in {:.1}s", t.elapsed().as_secs_f64());
    Ok(())
}

fn build(release: bool) -> anyhow::Result<()> {
    let mut c = cargo();
    c.args(["build", "--locked", "-p", "zombie-daemon"]);
    if release {
        c.arg("--release");
    }
    status(&mut c)
}

fn run(args: &[String]) -> anyhow::Result<()> {
    if !is_root() {
        bail!("the daemon loads eBPF programs: run `cargo xtask run` as root");
    }
    setup(false)?;
    build(true)?;
    let bin = root().join("target/release/zombie-daemon");
    let mut c = Command::new(bin);
    c.arg("run").args(args);
    // The daemon handles SIGINT/SIGTERM itself; pass its exit code through.
    status(&mut c)
}

fn lint() -> anyhow::Result<()> {
    status(cargo().args(["fmt", "--all", "--check"]))?;
    status(
        Command::new("cargo")
            .current_dir(root().join("zombie-ebpf"))
            .args(["fmt", "--check"]),
    )?;
    status(cargo().args([
        "clippy",
        "--locked",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The eBPF crate, checked for the host with its programs enabled (aya-ebpf builds there).
    status(
        Command::new("cargo")
            .current_dir(root().join("zombie-ebpf"))
            .args([
                "clippy",
                "--locked",
                "--all-targets",
                "--features",
                "programs",
            ])
            .args(["--target-dir"])
            .arg(root().join("target/ebpf-clippy"))
            .args(["--", "-D", "warnings"]),
    )
}

fn soak(seconds: u64, seed: Option<u64>) -> anyhow::Result<()> {
    if !is_root() {
        bail!("the soak test loads eBPF programs for real: run `cargo xtask soak` as root");
    }
    setup(true)?;
    build(false)?;
    let mut c = cargo();
    c.args([
        "test",
        "--locked",
        "-p",
        "zombie-tests",
        "--test",
        "e2e",
        "--",
    ])
    .args([
        "--exact",
        "soak::soak_random_churn_keeps_the_table_equal_to_proc",
    ])
    .args(["--nocapture", "--test-threads=1"])
    .env("ZOMBIE_SOAK_SECONDS", seconds.to_string());
    if let Some(seed) = seed {
        c.env("ZOMBIE_SOAK_SEED", seed.to_string());
    }
    status(&mut c)
}

/// This xtask binary. Not `current_exe()`: the workspace build in `test` rebuilds xtask
/// (with the workspace's unified features) and replaces the file we run from, while the
/// kernel's link to our own executable stays valid.
const SELF: &str = "/proc/self/exe";

fn test() -> anyhow::Result<()> {
    if !is_root() {
        bail!("the test suite loads eBPF programs for real: run `cargo xtask test` as root");
    }
    let t = Instant::now();
    setup(true)?;
    let mut passed = 0;
    let mut failed = Vec::new();
    let mut suite = |name: &str, cmd: &mut Command| {
        eprintln!("\nxtask: === {name} ===");
        match status(cmd) {
            Ok(()) => passed += 1,
            Err(e) => {
                eprintln!("xtask: {name} FAILED: {e:#}");
                failed.push(name.to_string());
            }
        }
    };
    suite("lint", Command::new(SELF).arg("lint"));
    suite(
        "build",
        cargo().args(["build", "--locked", "--workspace", "--all-targets"]),
    );
    suite(
        "unit tests",
        cargo().args([
            "test",
            "--locked",
            "--workspace",
            "--exclude",
            "zombie-tests",
        ]),
    );
    suite(
        "eBPF shared types",
        Command::new("cargo")
            .current_dir(root().join("zombie-ebpf"))
            .args(["test", "--locked", "--lib", "--target-dir"])
            .arg(root().join("target/ebpf-host")),
    );
    suite(
        "fuzz (cgroup path, /proc, policy, CLI parsers)",
        Command::new(SELF).args(["fuzz", "--seconds", "15"]),
    );
    // The DaemonSet test runs this image (target/image): it must be built from this tree.
    // For this machine's architecture only: the other's cross-build of the whole daemon
    // would add 5 to 10 minutes to a suite that must stay under 45 (`cargo xtask image`
    // builds both).
    suite(
        &format!(
            "container image (deploy/Dockerfile, {})",
            std::env::consts::ARCH
        ),
        Command::new(SELF).args(["image", "--arch", std::env::consts::ARCH]),
    );
    suite(
        "end-to-end (real eBPF, real processes)",
        cargo().args([
            "test",
            "--locked",
            "-p",
            "zombie-tests",
            "--",
            "--test-threads=1",
        ]),
    );
    suite(
        "alerting rules and dashboard",
        Command::new("bash")
            .arg(root().join("tests/alerting/run.sh"))
            .current_dir(root()),
    );
    suite(
        "kernel matrix (Debian 5.10, 6.1, 6.12 and arm64 6.1, 6.12 under qemu; this kernel)",
        Command::new(SELF).args(["vm", "--no-readme"]),
    );
    suite(
        "cgroup v2 node (Debian 6.18 under qemu; containerd 1.6, 1.7, 2.x)",
        Command::new(SELF).args(["vm-cgroup2", "--no-readme"]),
    );
    // The manifests are checked against what the binary itself says it needs.
    let requirements = root().join("target/requirements.json");
    let req = Command::new(root().join("target/debug/zombie-daemon"))
        .args(["check", "--print-requirements"])
        .output()
        .context("run zombie-daemon check --print-requirements")?;
    std::fs::write(&requirements, &req.stdout)?;
    suite(
        "deployment manifests",
        Command::new("bash")
            .arg(root().join("tests/deploy/run.sh"))
            .env("ZOMBIE_REQUIREMENTS_JSON", &requirements)
            .current_dir(root()),
    );
    eprintln!(
        "\nxtask: test suites took {:.0}s",
        t.elapsed().as_secs_f64()
    );
    println!("suites: {passed} passed, {} failed", failed.len());
    if !failed.is_empty() {
        bail!("failed: {}", failed.join(", "));
    }
    Ok(())
}
