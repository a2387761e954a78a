//! `cargo xtask vm-cgroup2`: the container-facing end-to-end tests on a pure cgroup v2 node.
//!
//! The host here is cgroup v1 hybrid; nodes Kubernetes runs today are cgroup v2 only
//! (Kubernetes 1.35 refuses v1 by default). So one guest of the VM matrix ([`crate::vm`]) is
//! such a node: a kernel from 6.13 on (trixie-backports' 6.18: `pids.events` counts
//! refused forks hierarchically there and `pids.events.local` exists), cgroup2 alone at
//! `/sys/fs/cgroup` with its controllers enabled at the root as systemd does, and real
//! containerd + runc run over the host's read-only root: Debian bookworm's containerd 1.6
//! (the host's), trixie's 1.7 and sid's 2.x, the later two unpacked from their packages
//! through a private apt configuration ([`crate::containerd2`]). The tests place pods in
//! both kubelet cgroup drivers' layouts themselves.
//!
//! One boot runs everything, one test after another: the CRI tests once per containerd,
//! the others once. A test's bound on the daemon's readiness is raised for TCG
//! (`ZOMBIE_TEST_READY_SECS`): it waits on /readyz, never on a sleep.

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use crate::vm::{self, Binaries, Kernel, MIRROR, Qemu, Series, TempDir};

/// A kernel from 6.13 on, from trixie-backports (the newest 6.18 there).
static KERNEL: Series = Series {
    name: "6.18",
    prefix: "linux-image-6.18.",
    suffix: "+deb13-amd64",
    suites: &[("trixie-backports", MIRROR)],
};

/// The guest's modules: the matrix's, and overlayfs for containerd's snapshotter.
const MODULES: &[&str] = &["virtio_pci", "virtio_rng", "9pnet_virtio", "9p", "overlay"];

/// Tests that talk to a containerd: run once with each.
const CRI_TESTS: &[(&str, &str)] = &[
    (
        "CRI names, cgroupfs driver (kubelet path)",
        "containerd::containerd_pod_and_container_resolve_through_cri",
    ),
    (
        "zombies named through CRI",
        "zombies_in_a_containerd_pod_are_named_through_cri",
    ),
    (
        "systemd driver scope, named through CRI",
        "cgroup2::zombies_of_a_containerd_container_in_the_systemd_drivers_scope_are_named_through_cri",
    ),
    (
        "shared-PID pod, pause reaps",
        "node::containerd_pod_sharing_its_pid_namespace_has_its_orphans_reaped_by_the_pause",
    ),
    (
        "shared-PID pod, sandbox not reaping",
        "node::containerd_pod_sharing_its_pid_namespace_with_a_non_reaping_sandbox_lists_the_sandbox_as_cause",
    ),
];

/// Tests that need no containerd (or the host's, once): run once.
const NODE_TESTS: &[(&str, &str)] = &[
    (
        "runc at both drivers' kubelet paths",
        "zombies_in_runc_containers_are_attributed_to_their_pod_and_container",
    ),
    (
        "refused forks at the pod's pids.max (exact)",
        "node::forks_refused_at_a_pods_pids_limit_are_counted_per_pod_and_container",
    ),
    (
        "refused forks at the container's pids.max (exact)",
        "node::forks_refused_at_a_containers_pids_limit_are_counted_per_pod_and_container",
    ),
    (
        "stuck teardown: zombie forked in from outside",
        "node::a_namespace_init_held_by_a_zombie_forked_in_from_outside_is_stuck_in_teardown",
    ),
    (
        "stuck teardown: reaper frozen by cgroup.freeze",
        "node::a_namespace_init_whose_members_reaper_is_frozen_by_cgroup_freeze_is_stuck_in_teardown",
    ),
    (
        "daemon in its own cgroup namespace",
        "cgroup2::a_daemon_in_its_own_cgroup_namespace_attributes_zombies_as_the_hosts_view_does",
    ),
    (
        "DaemonSet as shipped (kustomize), containerd 1.6",
        "daemonset::the_kustomize_daemonset_runs_as_shipped",
    ),
];

/// Per test inside the guest (TCG is 5-20 times slower than the host).
const TEST_TIMEOUT: Duration = Duration::from_secs(240);
/// The daemon's readiness bound in the guest (the host's tests use 30 s).
const READY_SECS: u64 = 120;
/// A guest whose runner has not started by then is taken for hung in its boot.
const BOOT_LIMIT: Duration = Duration::from_secs(180);

/// One containerd the CRI tests run with.
struct Runtime {
    /// Its binaries' directory; None: the system's (`/usr/bin`, bookworm's 1.6).
    bin_dir: Option<PathBuf>,
    /// `containerd --version`'s version, as this host reads it.
    version: String,
}

/// One test run in the guest: the test's path, the runtime's index (None: the system's).
struct Planned {
    test: &'static str,
    runtime: Option<usize>,
}

struct Outcome {
    passed: bool,
    seconds: f64,
}

/// With `fetch_only`, only what a run needs is installed and fetched (qemu, the kernel,
/// both unpacked containerds): no build, no boot.
pub fn vm_cgroup2(readme: bool, fetch_only: bool) -> anyhow::Result<()> {
    if !crate::is_root() {
        bail!("the cgroup v2 guest loads eBPF programs and runs containers: run as root");
    }
    let t = Instant::now();
    crate::install(vm::VM_TOOLS)?;
    vm::install_qemu()?;
    crate::containerd2::install()?;
    crate::containerd2::install_trixie()?;
    let runtimes = runtimes()?;
    let kernel = vm::fetch_kernel_with(&KERNEL, MODULES)?;
    if fetch_only {
        eprintln!(
            "xtask: vm-cgroup2: {} and containerd {} are here",
            kernel.release,
            runtimes
                .iter()
                .map(|r| r.version.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Ok(());
    }
    let bins = vm::build()?;
    // The DaemonSet test runs the image `cargo xtask image` leaves in target/image (the
    // suite builds it before); built here when missing.
    if !crate::root()
        .join("target/image/zombie-daemon.oci.tar")
        .exists()
    {
        crate::image::image(&[crate::image::Arch::parse(std::env::consts::ARCH)?])?;
    }
    let plan = plan(&runtimes);
    eprintln!(
        "xtask: vm-cgroup2: {} test runs on {} with containerd {}",
        plan.len(),
        kernel.release,
        runtimes
            .iter()
            .map(|r| r.version.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let (release, outcomes, error) = match boot(&kernel, &bins, &runtimes, &plan) {
        Ok((release, outcomes)) => (release, outcomes, None),
        Err(e) => (kernel.release.clone(), Vec::new(), Some(format!("{e:#}"))),
    };
    let wall = t.elapsed();
    let table = table(&plan, &runtimes, &outcomes, &release);
    println!("{table}");
    eprintln!(
        "xtask: vm-cgroup2 took {:.0}s (boot and tests {:.0}s)",
        wall.as_secs_f64(),
        outcomes
            .iter()
            .flatten()
            .map(|o: &Outcome| o.seconds)
            .sum::<f64>()
    );
    if let Some(e) = error {
        bail!(
            "the cgroup v2 guest failed: {e} (logs: {}/logs/cgroup2/)",
            vm::CACHE
        );
    }
    let failed: Vec<String> = plan
        .iter()
        .zip(&outcomes)
        .filter(|(_, o)| !o.as_ref().is_some_and(|o| o.passed))
        .map(|(p, _)| match p.runtime {
            Some(r) => format!("{} (containerd {})", p.test, runtimes[r].version),
            None => p.test.to_string(),
        })
        .collect();
    // The table says what ran, failures included (the run still fails below).
    if readme {
        write_readme(&plan, &runtimes, &outcomes, &release, wall)?;
    }
    if !failed.is_empty() {
        bail!(
            "on the cgroup v2 guest: {} failed: {} (each test's log: {}/logs/cgroup2/)",
            failed.len(),
            failed.join(", "),
            vm::CACHE
        );
    }
    Ok(())
}

fn runtimes() -> anyhow::Result<Vec<Runtime>> {
    let mut out = Vec::new();
    for bin_dir in [
        None,
        Some(crate::containerd2::dir_trixie().join("usr/bin")),
        Some(crate::containerd2::dir().join("usr/bin")),
    ] {
        let program = bin_dir
            .as_ref()
            .map_or_else(|| PathBuf::from("containerd"), |d| d.join("containerd"));
        let text = Command::new(&program)
            .arg("--version")
            .output()
            .with_context(|| format!("run {} --version", program.display()))?
            .stdout;
        let text = String::from_utf8_lossy(&text);
        let version = text
            .split_whitespace()
            .nth(2)
            .and_then(|v| v.split(['~', '+']).next())
            .with_context(|| format!("{} --version says {text:?}", program.display()))?
            .to_string();
        out.push(Runtime { bin_dir, version });
    }
    Ok(out)
}

fn plan(runtimes: &[Runtime]) -> Vec<Planned> {
    let mut out = Vec::new();
    for r in 0..runtimes.len() {
        for (_, test) in CRI_TESTS {
            out.push(Planned {
                test,
                runtime: Some(r),
            });
        }
    }
    for (_, test) in NODE_TESTS {
        out.push(Planned {
            test,
            runtime: None,
        });
    }
    out
}

/// The guest's test loop: the node set up as systemd would (controllers enabled at the
/// root), the cached test images copied to a writable cache, then each test.
fn runner_script(bins: &Binaries, runtimes: &[Runtime], plan: &[Planned]) -> String {
    let results = "/run/results";
    let tmp = "/run/tmp";
    let host_cache = std::env::var("ZOMBIE_TEST_CACHE")
        .unwrap_or_else(|_| "/var/cache/zombie-daemon-tests".into());
    let mut s = format!(
        "export TMPDIR={tmp} HOME={tmp} PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n\
         export RUST_BACKTRACE=1 ZOMBIE_TEST_READY_SECS={READY_SECS} ZOMBIE_TEST_CACHE={tmp}/cache\n\
         cd {root}\n\
         uname -r > {results}/release\n\
         for c in $(cat /sys/fs/cgroup/cgroup.controllers); do echo +$c > /sys/fs/cgroup/cgroup.subtree_control; done\n\
         grep -q '^0::/$' /proc/self/cgroup && ! grep -q ' cgroup ' /proc/mounts && echo cgroup2-only > {results}/cgroup\n\
         mkdir -p {tmp}/cache/images\n\
         cp {host_cache}/images/*.oci.tar {tmp}/cache/images/ 2>/dev/null\n\
         {daemon} check > {results}/check.log 2>&1\n",
        root = crate::root().join("tests").display(),
        daemon = bins.daemon.display(),
    );
    for (i, p) in plan.iter().enumerate() {
        let bin_dir = p
            .runtime
            .and_then(|r| runtimes[r].bin_dir.as_ref())
            .map(|d| d.display().to_string())
            .unwrap_or_default();
        writeln!(
            s,
            "s=$(cut -d' ' -f1 /proc/uptime)\n\
             ZOMBIE_TEST_CONTAINERD_BIN_DIR={bin_dir} timeout -k 5 {timeout} {e2e} --exact {t} --test-threads=1 --nocapture > {results}/{i}.log 2>&1\n\
             echo \"$? $s $(cut -d' ' -f1 /proc/uptime)\" > {results}/{i}.rc",
            timeout = TEST_TIMEOUT.as_secs(),
            e2e = bins.e2e.display(),
            t = p.test,
        )
        .unwrap();
    }
    s
}

/// Boots the guest and runs the plan: (the kernel's release, each run's outcome).
fn boot(
    k: &Kernel,
    bins: &Binaries,
    runtimes: &[Runtime],
    plan: &[Planned],
) -> anyhow::Result<(String, Vec<Option<Outcome>>)> {
    let dir = TempDir::new("cgroup2")?;
    let initrd = vm::initramfs(k, &dir.0)?;
    let share = dir.0.join("share");
    fs::create_dir_all(&share)?;
    fs::write(share.join("run.sh"), runner_script(bins, runtimes, plan))?;
    let console = dir.0.join("console.log");
    let mut c = Command::new(vm::QEMU);
    // 3 GiB: containerd's roots and the image snapshots live in the guest's tmpfs.
    c.args(["-accel", "tcg", "-cpu", "max", "-smp", "2", "-m", "3072"])
        .args(["-nographic", "-no-reboot", "-nic", "none"])
        .args(["-device", "virtio-rng-pci"])
        .arg("-kernel")
        .arg(&k.vmlinux)
        .arg("-initrd")
        .arg(&initrd)
        .args([
            "-append",
            "console=ttyS0 rdinit=/init panic=-1 quiet mitigations=off random.trust_cpu=on",
        ])
        .args([
            "-virtfs",
            "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
        ])
        .arg("-virtfs")
        .arg(format!(
            "local,path={},mount_tag=results,security_model=none,multidevs=remap",
            share.display()
        ))
        .stdin(Stdio::null())
        .stdout(fs::File::create(&console)?)
        .stderr(Stdio::from(fs::File::create(dir.0.join("qemu.err"))?));
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl with integer arguments only, between fork and exec.
    unsafe {
        // qemu dies with us, even if xtask is killed.
        c.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut q = Qemu(c.spawn().context("start qemu")?);
    let limit = TEST_TIMEOUT * plan.len() as u32 / 2 + BOOT_LIMIT;
    let start = Instant::now();
    let status = loop {
        if let Some(st) = q.0.try_wait()? {
            break Some(st);
        }
        if start.elapsed() > BOOT_LIMIT && !share.join("release").exists() {
            keep_logs(&dir.0, &share);
            bail!(
                "the guest's test runner did not start within {BOOT_LIMIT:?}; console:\n{}",
                vm::tail(&fs::read_to_string(&console).unwrap_or_default(), 30)
            );
        }
        if start.elapsed() > limit {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let outcomes = read_outcomes(&share, plan.len());
    keep_logs(&dir.0, &share);
    let release = fs::read_to_string(share.join("release"))
        .map(|r| r.trim().to_string())
        .unwrap_or_else(|_| k.release.clone());
    match status {
        None => bail!("the guest did not power off within {limit:?}"),
        Some(st) if !st.success() => bail!(
            "qemu exited with {st}: {}",
            fs::read_to_string(dir.0.join("qemu.err")).unwrap_or_default()
        ),
        Some(_) if !share.join("cgroup").exists() => bail!(
            "the guest was not a pure cgroup v2 node (the runner found a v1 mount or a \
             non-root cgroup); console:\n{}",
            vm::tail(&fs::read_to_string(&console).unwrap_or_default(), 30)
        ),
        Some(_) if outcomes.iter().any(Option::is_none) => bail!(
            "the guest ran {} of {} tests; console:\n{}",
            outcomes.iter().flatten().count(),
            plan.len(),
            vm::tail(&fs::read_to_string(&console).unwrap_or_default(), 30)
        ),
        Some(_) => Ok((release, outcomes)),
    }
}

fn read_outcomes(results: &Path, n: usize) -> Vec<Option<Outcome>> {
    (0..n)
        .map(|i| {
            let rc = fs::read_to_string(results.join(format!("{i}.rc"))).ok()?;
            let f: Vec<&str> = rc.split_whitespace().collect();
            let code: i32 = f.first().and_then(|c| c.parse().ok()).unwrap_or(-1);
            let secs = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
            let log = fs::read_to_string(results.join(format!("{i}.log"))).unwrap_or_default();
            // A name that matches no test passes with 0 tests: that is a failure.
            let ran = log.contains("test result: ok. 1 passed");
            Some(Outcome {
                passed: code == 0 && ran,
                seconds: secs(2) - secs(1),
            })
        })
        .collect()
}

/// The logs of the last run, for a look after a failure.
fn keep_logs(dir: &Path, results: &Path) {
    let keep = Path::new(vm::CACHE).join("logs/cgroup2");
    let _ = fs::remove_dir_all(&keep);
    if fs::create_dir_all(&keep).is_err() {
        return;
    }
    for d in [dir, results] {
        for e in fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.extension()
                .is_some_and(|x| x == "log" || x == "rc" || x == "err" || x == "sh")
            {
                let _ = fs::copy(&p, keep.join(e.file_name()));
            }
        }
    }
}

fn cell(o: Option<&Outcome>) -> String {
    match o {
        Some(o) if o.passed => format!("ok {:.0}s", o.seconds),
        Some(o) => format!("FAIL {:.0}s", o.seconds),
        None => "not run".into(),
    }
}

/// Rows: tests; columns: the containerd each ran with (node tests in the first).
fn rows(plan: &[Planned], runtimes: &[Runtime], outcomes: &[Option<Outcome>]) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for (name, test) in CRI_TESTS.iter().chain(NODE_TESTS) {
        let mut row = vec![name.to_string()];
        for r in 0..runtimes.len() {
            let found = plan.iter().zip(outcomes).find(|(p, _)| {
                p.test == *test && (p.runtime == Some(r) || (p.runtime.is_none() && r == 0))
            });
            row.push(match found {
                Some((_, o)) => cell(o.as_ref()),
                None => "-".into(),
            });
        }
        rows.push(row);
    }
    rows
}

fn table(
    plan: &[Planned],
    runtimes: &[Runtime],
    outcomes: &[Option<Outcome>],
    release: &str,
) -> String {
    let mut s = format!("\ncgroup v2 guest, kernel {release}\n");
    let w = CRI_TESTS
        .iter()
        .chain(NODE_TESTS)
        .map(|(n, _)| n.len())
        .max()
        .unwrap_or(10);
    write!(s, "{:<w$}", "test").unwrap();
    for r in runtimes {
        write!(s, " | containerd {:<8}", r.version).unwrap();
    }
    writeln!(s).unwrap();
    for row in rows(plan, runtimes, outcomes) {
        write!(s, "{:<w$}", row[0]).unwrap();
        for c in &row[1..] {
            write!(s, " | {c:<19}").unwrap();
        }
        writeln!(s).unwrap();
    }
    s
}

const README_START: &str = "<!-- vm-cgroup2:start (written by `cargo xtask vm-cgroup2`) -->";
const README_END: &str = "<!-- vm-cgroup2:end -->";

/// Replaces the cgroup v2 table between the README's markers with this run's results.
fn write_readme(
    plan: &[Planned],
    runtimes: &[Runtime],
    outcomes: &[Option<Outcome>],
    release: &str,
    wall: Duration,
) -> anyhow::Result<()> {
    let path = crate::root().join("README.md");
    let text = fs::read_to_string(&path)?;
    let (Some(a), Some(b)) = (text.find(README_START), text.find(README_END)) else {
        bail!("README.md has no {README_START} ... {README_END} markers");
    };
    let mut t = String::new();
    writeln!(t, "{README_START}")?;
    write!(t, "| test (kernel `{release}`, cgroup v2 only, qemu) |")?;
    for r in runtimes {
        write!(t, " containerd {} + runc |", r.version)?;
    }
    writeln!(t)?;
    writeln!(t, "|---|{}", "---|".repeat(runtimes.len()))?;
    for row in rows(plan, runtimes, outcomes) {
        write!(t, "| {} |", row[0])?;
        for c in &row[1..] {
            let c = if c.starts_with("ok") {
                "passed"
            } else if c == "-" {
                "-"
            } else {
                "FAILED"
            };
            write!(t, " {c} |")?;
        }
        writeln!(t)?;
    }
    writeln!(
        t,
        "| wall time of the run (fetch, build, boot, tests) | {:.0} s |{}",
        wall.as_secs_f64(),
        " |".repeat(runtimes.len().saturating_sub(1))
    )?;
    let new = format!("{}{}{}", &text[..a], t, &text[b..]);
    fs::write(&path, new)?;
    eprintln!("xtask: vm-cgroup2: README.md's cgroup v2 table updated");
    Ok(())
}
