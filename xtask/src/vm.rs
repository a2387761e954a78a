//! `cargo xtask vm`: the end-to-end tests that prove the daemon against a kernel, run on the
//! kernels nodes run. Debian's 5.10, 6.1 and 6.12 boot under qemu; this machine's own
//! kernel runs the same tests directly.
//!
//! A guest's root is the host's root, read-only over 9p, so the guest runs the very binaries
//! built here (the daemon, the workload, the e2e test binary). A busybox initramfs loads the
//! 9p and virtio modules of that kernel, mounts what the daemon reads (proc, sysfs, devtmpfs,
//! bpffs, tracefs, cgroup2), a tmpfs on `/run` and a second, writable 9p share at
//! `/run/results`, then chroots and runs the tests by name; each test's log and exit code come
//! back through the share.
//!
//! Only TCG works here (`/dev/kvm` belongs to a paravirtual module), so every second counts:
//! the kernel is booted from its uncompressed ELF through the PVH entry (decompressing a
//! bzImage takes about 20 s under TCG), and the VMs run one after another unless the machine
//! has the cores to run them side by side.
//!
//! Kernels and qemu come from Debian's archive through a private apt configuration under
//! [`CACHE`]; the system's apt sources are never touched and no kernel is installed. A
//! kernel, once unpacked, stays cached: remove its directory under `CACHE/kernels` to fetch
//! the newest again.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use crate::{Tool, vm_arm64};

/// Where downloads, apt state and unpacked kernels are kept between runs.
pub(crate) const CACHE: &str = "/var/cache/zombie-daemon-tests/vm";
pub(crate) const MIRROR: &str = "http://deb.debian.org/debian";
pub(crate) const SECURITY_MIRROR: &str = "http://deb.debian.org/debian-security";
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// What building the initramfs and unpacking kernels needs, from the system's own suite.
pub(crate) const VM_TOOLS: &[Tool] = &[
    Tool::new("/bin/busybox", "busybox-static"),
    Tool::new("/usr/bin/cpio", "cpio"),
    Tool::new("/usr/bin/xz", "xz-utils"),
    Tool::new("/usr/bin/zstd", "zstd"),
    Tool::new("/usr/bin/dpkg-deb", "dpkg"),
    Tool::new("/usr/bin/timeout", "coreutils"),
    Tool::new("/usr/bin/setpriv", "util-linux"),
    Tool::new("/usr/bin/prlimit", "util-linux"),
];

/// qemu from bookworm-backports: the image's qemu-utils 10.0 (from backports) breaks
/// bookworm's own qemu 7.2, so the system emulator must come from the same place. These are
/// the packages apt must take from backports for it; the rest comes from bookworm.
pub(crate) const QEMU: &str = "/usr/bin/qemu-system-x86_64";
const QEMU_FROM_BACKPORTS: &[&str] = &[
    "qemu-system-x86",
    "qemu-system-common",
    "qemu-system-data",
    "seabios",
    "libbrlapi0.8",
];

/// A kernel line the matrix boots: the newest Debian package whose name is
/// `prefix<N>suffix`, from `suites`.
pub struct Series {
    pub name: &'static str,
    pub(crate) prefix: &'static str,
    pub(crate) suffix: &'static str,
    /// Sources lines (suite, mirror) that carry it.
    pub(crate) suites: &'static [(&'static str, &'static str)],
}

pub const SERIES: &[Series] = &[
    Series {
        name: "5.10",
        prefix: "linux-image-5.10.0-",
        suffix: "-amd64",
        suites: &[("bullseye", MIRROR), ("bullseye-security", SECURITY_MIRROR)],
    },
    Series {
        name: "6.1",
        prefix: "linux-image-6.1.0-",
        suffix: "-amd64",
        suites: &[("bookworm", MIRROR), ("bookworm-security", SECURITY_MIRROR)],
    },
    Series {
        name: "6.12",
        prefix: "linux-image-6.12.",
        suffix: "+deb13-amd64",
        suites: &[("trixie", MIRROR), ("trixie-security", SECURITY_MIRROR)],
    },
];

/// The name that selects this machine's own kernel, run without a VM.
pub const HOST: &str = "host";

/// The modules a guest needs to reach the host's root (their dependencies come along).
pub(crate) const GUEST_MODULES: &[&str] = &["virtio_pci", "virtio_rng", "9pnet_virtio", "9p"];

/// The e2e tests run on every kernel: (short name for the table, test path).
pub const GUEST_TESTS: &[(&str, &str)] = &[
    ("check", "check_passes_here_and_bad_flags_exit_2"),
    (
        "zombies appear and vanish",
        "a_parent_that_never_waits_shows_its_zombies_until_it_reaps_them",
    ),
    (
        "non-reaping PID 1 of a PID ns",
        "a_non_reaping_pid1_of_a_new_pid_namespace_has_all_its_orphans_counted",
    ),
    (
        "zombies older than the daemon",
        "zombies_that_exist_before_the_daemon_starts_are_found_with_their_parent",
    ),
    (
        "parent ignoring SIGCHLD",
        "children_of_a_parent_that_ignores_sigchld_are_never_counted",
    ),
    (
        "threads are not zombies",
        "a_multithreaded_process_that_exits_is_one_zombie_and_no_thread_is",
    ),
    (
        "ring overflow: loss counted, resync",
        "kernel::a_forced_ring_overflow_is_counted_after_the_capability_drop_and_resynced",
    ),
    (
        "capability drop",
        "after_the_load_the_daemon_holds_only_what_it_reads_proc_with_and_still_sees_everything",
    ),
    (
        "DaemonSet caps, 64 KiB memlock",
        "kernel::the_daemonsets_capabilities_load_the_default_ring_under_a_small_memlock_limit",
    ),
    (
        "--btf-path, no /sys/kernel/btf",
        "kernel::the_daemon_loads_with_the_kernels_btf_given_as_a_file",
    ),
    (
        "SIGTERM: nothing left in kernel",
        "kernel::sigterm_leaves_no_program_link_or_map_of_the_daemon_in_the_kernel",
    ),
    (
        "provenance: init and exec origins",
        "provenance::a_pid_namespaces_init_children_and_an_entered_sessions_orphans_have_their_origins",
    ),
];

/// Per test, inside the guest or on the host.
const TEST_TIMEOUT: Duration = Duration::from_secs(120);

pub(crate) struct Outcome {
    pub(crate) passed: bool,
    seconds: f64,
}

/// One kernel's run.
pub(crate) struct KernelRun {
    pub(crate) kernel: String,
    pub(crate) release: String,
    /// Where the daemon saw reaps on this kernel (its `check`'s `reap` line).
    pub(crate) reaps: String,
    pub(crate) outcomes: BTreeMap<String, Outcome>,
    pub(crate) wall: Duration,
    /// Why the run as a whole failed (boot, timeout), if it did.
    pub(crate) error: Option<String>,
}

/// The binaries the tests run, built on the host and read by the guests over 9p.
#[derive(Clone)]
pub(crate) struct Binaries {
    pub(crate) e2e: PathBuf,
    pub(crate) daemon: PathBuf,
}

pub fn vm(kernels: &[String], jobs: Option<usize>, readme: bool) -> anyhow::Result<()> {
    if !crate::is_root() {
        bail!("the VM matrix loads eBPF programs (and installs qemu when missing): run as root");
    }
    let t = Instant::now();
    let wanted = select(kernels)?;
    crate::install(VM_TOOLS)?;
    let mut unpacked = Vec::new();
    if SERIES.iter().any(|s| wanted.contains(&s.name)) {
        install_qemu()?;
    }
    let bins = build()?;
    for s in SERIES.iter().filter(|s| wanted.contains(&s.name)) {
        unpacked.push(fetch_kernel(s)?);
    }
    let arm64 = vm_arm64::prepare(&wanted)?;
    let mut guests: Vec<Guest> = unpacked.into_iter().map(Guest::X86).collect();
    if let Some(leg) = &arm64 {
        guests.extend(leg.kernels.iter().map(Guest::Arm64));
    }

    let jobs = jobs.unwrap_or_else(default_jobs).max(1);
    eprintln!(
        "xtask: vm: {} kernel(s) in VMs, {jobs} at a time",
        guests.len()
    );
    // The host's run goes first, on its own: beside emulated VMs that keep every core busy
    // its timing-sensitive tests starve (one failed so in a fresh root). It takes seconds.
    let host = if wanted.contains(&HOST) {
        Some(run_on_host(&bins)?)
    } else {
        None
    };
    // A pool of `jobs` workers takes kernels from the queue in order.
    let mut queue: Vec<(usize, Guest)> = guests.into_iter().enumerate().collect();
    // Popped from the end: the first kernel first.
    queue.reverse();
    let queue = std::sync::Mutex::new(queue);
    let done = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                loop {
                    let next = queue.lock().unwrap().pop();
                    let Some((i, k)) = next else { break };
                    let run = match k {
                        Guest::X86(k) => boot_and_test(&k, &bins),
                        Guest::Arm64(k) => vm_arm64::boot_and_test(arm64.as_ref().unwrap(), k),
                    };
                    done.lock().unwrap().push((i, run));
                }
            });
        }
    });
    let mut done = done.into_inner().unwrap();
    done.sort_by_key(|(i, _)| *i);
    let mut runs: Vec<KernelRun> = done.into_iter().map(|(_, r)| r).collect();
    runs.extend(host);
    let table = table(&runs);
    println!("{table}");
    eprintln!("xtask: vm matrix took {:.0}s", t.elapsed().as_secs_f64());
    let failed: Vec<String> = runs
        .iter()
        .filter(|r| r.error.is_some() || !all_passed(r))
        .map(|r| r.kernel.clone())
        .collect();
    // Each table is rewritten by a passing run of all its kernels.
    let (arm, x86): (Vec<&KernelRun>, Vec<&KernelRun>) =
        runs.iter().partition(|r| vm_arm64::is_arm64(&r.kernel));
    if readme && failed.is_empty() && x86.len() == SERIES.len() + 1 {
        write_readme(&x86)?;
    }
    if readme && failed.is_empty() && arm.len() == vm_arm64::SERIES.len() {
        vm_arm64::write_readme(&arm)?;
    }
    if !failed.is_empty() {
        bail!(
            "the VM matrix failed on: {} (each test's log: {CACHE}/logs/<kernel>/)",
            failed.join(", ")
        );
    }
    Ok(())
}

fn all_passed(r: &KernelRun) -> bool {
    GUEST_TESTS
        .iter()
        .all(|(_, t)| r.outcomes.get(*t).is_some_and(|o| o.passed))
}

/// The requested kernels, each checked against the known ones (all of them by default).
fn select(kernels: &[String]) -> anyhow::Result<Vec<&'static str>> {
    let known: Vec<&'static str> = SERIES
        .iter()
        .chain(vm_arm64::SERIES)
        .map(|s| s.name)
        .chain([HOST])
        .collect();
    if kernels.is_empty() {
        return Ok(known);
    }
    let mut out = Vec::new();
    for k in kernels {
        match known.iter().find(|n| **n == k.as_str()) {
            Some(n) if !out.contains(n) => out.push(*n),
            Some(_) => {}
            None => bail!("unknown kernel {k:?}: choose from {}", known.join(", ")),
        }
    }
    Ok(out)
}

/// All VMs at once, as memory allows (2 GiB each, plus room for the host). A guest waits
/// on its emulated devices and timers as much as it computes: on 2 cores the three guests
/// side by side took 174 s, two then one 261 s. No more than the x86 guests, though: the
/// arm64 ones queue behind them rather than crowd 2 cores with 5 guests whose tests have
/// 1 s bounds (never tried).
fn default_jobs() -> usize {
    let mem_gib = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        })
        .map_or(4, |kib| kib >> 20);
    (mem_gib / 4).clamp(1, SERIES.len())
}

pub(crate) fn build() -> anyhow::Result<Binaries> {
    crate::status(crate::cargo().args([
        "build",
        "--locked",
        "-p",
        "zombie-daemon",
        "-p",
        "zombie-tests",
        "--bins",
    ]))?;
    let out = crate::cargo()
        .args([
            "test",
            "--locked",
            "-p",
            "zombie-tests",
            "--test",
            "e2e",
            "--no-run",
            "--message-format=json",
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("cargo test --no-run")?;
    if !out.status.success() {
        bail!("building the e2e tests failed");
    }
    let e2e = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == "e2e")
        .find_map(|v| v["executable"].as_str().map(PathBuf::from))
        .context("cargo did not name the e2e test executable")?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::root().join("target"));
    Ok(Binaries {
        e2e,
        daemon: target.join("debug/zombie-daemon"),
    })
}

/// A private apt configuration: its own sources, lists and download cache under [`CACHE`].
pub(crate) struct Apt {
    dir: PathBuf,
    /// Packages of this architecture only (another than the host's: download, never install).
    arch: Option<&'static str>,
}

impl Apt {
    pub(crate) fn new(name: &str, sources: &[(&str, &str)]) -> anyhow::Result<Self> {
        let dir = Path::new(CACHE).join(name);
        for d in ["lists/partial", "cache/archives/partial"] {
            fs::create_dir_all(dir.join(d))?;
        }
        let mut list = String::new();
        for (suite, mirror) in sources {
            writeln!(list, "deb [signed-by={KEYRING}] {mirror} {suite} main")?;
        }
        let path = dir.join("sources.list");
        if fs::read_to_string(&path).ok().as_deref() != Some(list.as_str()) {
            fs::write(&path, list)?;
            // New sources: the old lists no longer describe them.
            let _ = fs::remove_file(dir.join("lists/updated"));
        }
        Ok(Self { dir, arch: None })
    }

    /// The archive's packages for `arch` instead of the host's (`apt-get download`,
    /// `--download-only`): its lists are fetched and searched instead.
    pub(crate) fn arch(mut self, arch: &'static str) -> Self {
        self.arch = Some(arch);
        self
    }

    pub(crate) fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.arg("-o")
            .arg(format!(
                "Dir::Etc::SourceList={}",
                self.dir.join("sources.list").display()
            ))
            .args(["-o", "Dir::Etc::SourceParts=/dev/null"])
            .arg("-o")
            .arg(format!(
                "Dir::State::Lists={}",
                self.dir.join("lists").display()
            ))
            .arg("-o")
            .arg(format!("Dir::Cache={}", self.dir.join("cache").display()))
            .env("DEBIAN_FRONTEND", "noninteractive");
        if let Some(arch) = self.arch {
            c.arg("-o")
                .arg(format!("APT::Architecture={arch}"))
                .arg("-o")
                .arg(format!("APT::Architectures::={arch}"));
        }
        c
    }

    /// `apt-get update` once; later runs use the lists they have.
    pub(crate) fn update(&self, force: bool) -> anyhow::Result<()> {
        let stamp = self.dir.join("lists/updated");
        if stamp.exists() && !force {
            return Ok(());
        }
        crate::status(self.cmd("apt-get").args(["-q", "update"]))?;
        fs::write(stamp, "")?;
        Ok(())
    }
}

pub(crate) fn install_qemu() -> anyhow::Result<()> {
    if Path::new(QEMU).exists() {
        return Ok(());
    }
    let apt = Apt::new(
        "apt-qemu",
        &[
            ("bookworm", MIRROR),
            ("bookworm-updates", MIRROR),
            ("bookworm-security", SECURITY_MIRROR),
            ("bookworm-backports", MIRROR),
        ],
    )?;
    apt.update(true)?;
    let pkgs: Vec<String> = QEMU_FROM_BACKPORTS
        .iter()
        .map(|p| format!("{p}/bookworm-backports"))
        .collect();
    crate::status(
        apt.cmd("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&pkgs),
    )?;
    if !Path::new(QEMU).exists() {
        bail!("{QEMU} is still missing after installing qemu-system-x86");
    }
    Ok(())
}

/// A guest of the matrix: an x86 kernel, or an arm64 one of [`vm_arm64`].
enum Guest<'a> {
    X86(Kernel),
    Arm64(&'a vm_arm64::Kernel),
}

/// An unpacked kernel: what a boot needs.
#[derive(Clone)]
pub(crate) struct Kernel {
    pub(crate) series: &'static str,
    /// `uname -r` of the kernel.
    pub(crate) release: String,
    /// The uncompressed ELF image (booted through PVH).
    pub(crate) vmlinux: PathBuf,
    /// The guest's modules, uncompressed, in load order.
    pub(crate) modules: Vec<PathBuf>,
}

fn fetch_kernel(s: &'static Series) -> anyhow::Result<Kernel> {
    fetch_kernel_with(s, GUEST_MODULES)
}

/// [`fetch_kernel`] with `modules` (and what they depend on) as the guest's modules.
pub(crate) fn fetch_kernel_with(s: &'static Series, modules: &[&str]) -> anyhow::Result<Kernel> {
    let dir = Path::new(CACHE).join("kernels").join(s.name);
    if let Some(k) = cached_kernel(s, &dir) {
        return Ok(k);
    }
    let t = Instant::now();
    let apt = Apt::new(&format!("apt-{}", s.name), s.suites)?;
    let package = match newest_package(&apt, s)? {
        Some(p) => p,
        None => {
            apt.update(true)?;
            newest_package(&apt, s)?
                .with_context(|| format!("no {}<N>{} in {:?}", s.prefix, s.suffix, s.suites))?
        }
    };
    let _ = fs::remove_dir_all(&dir);
    let tmp = dir.with_file_name(format!("{}.partial", s.name));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(tmp.join("deb"))?;
    crate::status(
        apt.cmd("apt-get")
            .arg("download")
            .arg(&package)
            .current_dir(tmp.join("deb")),
    )?;
    let deb = fs::read_dir(tmp.join("deb"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("apt-get download left no .deb")?;
    let root = tmp.join("root");
    crate::status(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
    let release = package
        .strip_prefix("linux-image-")
        .unwrap_or(&package)
        .to_string();
    let modules_dir = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|d| root.join(d).join(&release))
        .find(|d| d.is_dir())
        .with_context(|| format!("{package} has no modules directory for {release}"))?;
    let bz = root.join(format!("boot/vmlinuz-{release}"));
    fs::create_dir_all(tmp.join("modules"))?;
    extract_vmlinux(&bz, &tmp.join("vmlinux"))?;
    let order = collect_modules(&modules_dir, &tmp.join("modules"), modules)?;
    fs::write(tmp.join("modules/order"), order.join("\n"))?;
    fs::write(tmp.join("release"), &release)?;
    fs::write(tmp.join("package"), &package)?;
    fs::remove_dir_all(&root)?;
    fs::remove_dir_all(tmp.join("deb"))?;
    fs::rename(&tmp, &dir)?;
    eprintln!(
        "xtask: vm: {package} fetched and unpacked in {:.0}s",
        t.elapsed().as_secs_f64()
    );
    cached_kernel(s, &dir).context("the kernel just unpacked is incomplete")
}

fn cached_kernel(s: &'static Series, dir: &Path) -> Option<Kernel> {
    let release = fs::read_to_string(dir.join("release")).ok()?;
    let order = fs::read_to_string(dir.join("modules/order")).ok()?;
    let vmlinux = dir.join("vmlinux");
    vmlinux.exists().then(|| Kernel {
        series: s.name,
        release: release.trim().to_string(),
        vmlinux,
        modules: order
            .lines()
            .filter(|l| !l.is_empty())
            .map(|m| dir.join("modules").join(m))
            .collect(),
    })
}

/// The package of the series with the highest number in its name, from the lists at hand.
pub(crate) fn newest_package(apt: &Apt, s: &Series) -> anyhow::Result<Option<String>> {
    let out = apt
        .cmd("apt-cache")
        .args(["search", "--names-only"])
        .arg(format!("^{}", s.prefix.replace('.', "\\.")))
        .output()
        .context("apt-cache search")?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|name| {
            let n: u32 = name
                .strip_prefix(s.prefix)?
                .strip_suffix(s.suffix)?
                .parse()
                .ok()?;
            Some((n, name.to_string()))
        })
        .max()
        .map(|(_, name)| name))
}

/// The ELF kernel inside a bzImage: the payload that the setup header locates, decompressed.
/// qemu boots it through its PVH note without running the decompressor under TCG.
fn extract_vmlinux(bz: &Path, out: &Path) -> anyhow::Result<()> {
    let b = fs::read(bz).with_context(|| format!("read {}", bz.display()))?;
    let u32_at =
        |o: usize| -> Option<u32> { Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?)) };
    if b.get(0x202..0x206) != Some(b"HdrS") {
        bail!("{} is not a bzImage", bz.display());
    }
    let setup_sects = match b[0x1f1] {
        0 => 4,
        n => usize::from(n),
    };
    let offset = u32_at(0x248).context("short bzImage")? as usize;
    let length = u32_at(0x24c).context("short bzImage")? as usize;
    let start = (setup_sects + 1) * 512 + offset;
    // The build appends the uncompressed size (4 bytes) to the compressed stream.
    let payload = b
        .get(start..start + length.saturating_sub(4))
        .context("bzImage payload out of bounds")?;
    let tool = if payload.starts_with(b"\xfd7zXZ\0") {
        "xz"
    } else if payload.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        "zstd"
    } else {
        bail!(
            "{}: a kernel compression this tool does not know",
            bz.display()
        );
    };
    decompress(tool, payload, out)?;
    let elf = fs::read(out)?;
    if !elf.starts_with(b"\x7fELF") {
        bail!("{}: the payload is not an ELF kernel", bz.display());
    }
    Ok(())
}

fn decompress(tool: &str, data: &[u8], out: &Path) -> anyhow::Result<()> {
    use std::io::Write;
    let mut c = Command::new(tool)
        .args(["-d", "-c", "-q"])
        .stdin(Stdio::piped())
        .stdout(fs::File::create(out)?)
        .spawn()
        .with_context(|| format!("run {tool}"))?;
    let mut stdin = c.stdin.take().unwrap();
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let st = c.wait()?;
    let wrote = writer.join().expect("writer thread");
    if !st.success() || wrote.is_err() {
        bail!("{tool} -d failed ({st})");
    }
    Ok(())
}

/// Copies [`GUEST_MODULES`] and what they depend on (the `depends=` of their modinfo)
/// into `to`, uncompressed; returns the file names in load order. Built-in ones are skipped.
pub(crate) fn collect_modules(
    modules_dir: &Path,
    to: &Path,
    modules: &[&str],
) -> anyhow::Result<Vec<String>> {
    let builtin = fs::read_to_string(modules_dir.join("modules.builtin")).unwrap_or_default();
    let is_builtin = |name: &str| {
        builtin.lines().any(|l| {
            Path::new(l)
                .file_name()
                .and_then(|f| f.to_str())
                .is_some_and(|f| normalize(f.trim_end_matches(".ko")) == name)
        })
    };
    let mut files: BTreeMap<String, PathBuf> = BTreeMap::new();
    index_modules(&modules_dir.join("kernel"), &mut files)?;
    let mut order = Vec::new();
    let mut stack: Vec<(String, bool)> = modules
        .iter()
        .rev()
        .map(|m| (normalize(m), false))
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    // Depth-first: a module goes after everything it depends on.
    while let Some((name, deps_done)) = stack.pop() {
        if deps_done {
            order.push(name);
            continue;
        }
        if !seen.insert(name.clone()) || is_builtin(&name) {
            continue;
        }
        let Some(path) = files.get(&name) else {
            // virtio_rng only feeds entropy; the rest are needed.
            if name == "virtio_rng" {
                continue;
            }
            bail!("module {name} is neither built in nor shipped");
        };
        let data = read_module(path)?;
        fs::write(to.join(format!("{name}.ko")), &data)?;
        stack.push((name, true));
        for dep in module_depends(&data) {
            stack.push((normalize(&dep), false));
        }
    }
    Ok(order.into_iter().map(|n| format!("{n}.ko")).collect())
}

fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

fn index_modules(dir: &Path, out: &mut BTreeMap<String, PathBuf>) -> anyhow::Result<()> {
    for e in fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            index_modules(&p, out)?;
        } else if let Some(f) = p.file_name().and_then(|f| f.to_str())
            && let Some(stem) = f.split(".ko").next().filter(|_| f.contains(".ko"))
        {
            out.insert(normalize(stem), p);
        }
    }
    Ok(())
}

fn read_module(path: &Path) -> anyhow::Result<Vec<u8>> {
    let name = path.to_string_lossy();
    let tool = if name.ends_with(".xz") {
        Some("xz")
    } else if name.ends_with(".zst") {
        Some("zstd")
    } else {
        None
    };
    match tool {
        None => Ok(fs::read(path)?),
        Some(tool) => {
            let out = Command::new(tool)
                .args(["-d", "-c", "-q"])
                .arg(path)
                .output()?;
            if !out.status.success() {
                bail!("{tool} -d {name} failed");
            }
            Ok(out.stdout)
        }
    }
}

/// The `depends=` entry of a module's `.modinfo` strings (NUL-separated `key=value`).
fn module_depends(ko: &[u8]) -> Vec<String> {
    ko.split(|b| *b == 0)
        .find_map(|s| s.strip_prefix(b"depends="))
        .map(|d| {
            String::from_utf8_lossy(d)
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The guest's /init: modules, the host's root, the mounts the daemon reads, the tests.
pub(crate) const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules/order); do insmod /modules/$m || echo "GUEST: insmod $m failed"; done
o=trans=virtio,version=9p2000.L,msize=512000
mount -t 9p -o $o,ro,cache=loose hostroot /root || echo "GUEST: cannot mount the host's root"
mount -t tmpfs run /root/run
mkdir -p /root/run/results /root/run/tmp
mount -t 9p -o $o results /root/run/results || echo "GUEST: cannot mount the results share"
mount -t proc proc /root/proc
mount -t sysfs sys /root/sys
mount -t devtmpfs dev /root/dev
mount -t bpf bpf /root/sys/fs/bpf
mount -t tracefs tracefs /root/sys/kernel/tracing
mount -t cgroup2 cgroup2 /root/sys/fs/cgroup
# The daemon serves on 127.0.0.1; nothing else brings loopback up.
ip link set lo up
echo "GUEST: up after $(cut -d' ' -f1 /proc/uptime)s"
chroot /root /bin/sh /run/results/run.sh
echo "GUEST: tests done ($?)"
sync
poweroff -f
"#;

/// The test loop, run by the guest's chroot and, with other paths, on the host.
pub(crate) fn runner_script(bins: &Binaries, results: &str, tmp: &str) -> String {
    let mut s = format!(
        "export TMPDIR={tmp} HOME={tmp} PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n\
         export RUST_BACKTRACE=1\n\
         cd {tmp}\n\
         uname -r > {results}/release\n\
         {daemon} check > {results}/check.log 2>&1\n",
        daemon = bins.daemon.display(),
    );
    for (_, t) in GUEST_TESTS {
        writeln!(
            s,
            "s=$(cut -d' ' -f1 /proc/uptime)\n\
             timeout -k 5 {timeout} {e2e} --exact {t} --test-threads=1 --nocapture > {results}/{t}.log 2>&1\n\
             echo \"$? $s $(cut -d' ' -f1 /proc/uptime)\" > {results}/{t}.rc",
            timeout = TEST_TIMEOUT.as_secs(),
            e2e = bins.e2e.display(),
        )
        .unwrap();
    }
    s
}

/// Reads what the runner left in `results`.
pub(crate) fn read_outcomes(results: &Path) -> BTreeMap<String, Outcome> {
    let mut out = BTreeMap::new();
    for (_, t) in GUEST_TESTS {
        let Ok(rc) = fs::read_to_string(results.join(format!("{t}.rc"))) else {
            continue;
        };
        let f: Vec<&str> = rc.split_whitespace().collect();
        let code: i32 = f.first().and_then(|c| c.parse().ok()).unwrap_or(-1);
        let secs = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
        let log = fs::read_to_string(results.join(format!("{t}.log"))).unwrap_or_default();
        // A name that matches no test passes with 0 tests: count that as a failure.
        let ran = log.contains("test result: ok. 1 passed");
        out.insert(
            t.to_string(),
            Outcome {
                passed: code == 0 && ran,
                seconds: secs(2) - secs(1),
            },
        );
    }
    out
}

/// A temporary directory, removed on drop.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(what: &str) -> anyhow::Result<Self> {
        let p = std::env::temp_dir().join(format!("zombie-vm-{}-{what}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p)?;
        Ok(Self(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// qemu, killed and reaped on drop whatever happened.
pub(crate) struct Qemu(pub(crate) Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Boot, tests, power-off: the whole guest gets the tests' timeouts plus boot time.
pub(crate) fn vm_timeout() -> Duration {
    TEST_TIMEOUT * GUEST_TESTS.len() as u32 / 2 + Duration::from_secs(120)
}

/// A guest whose test runner has not started this long after qemu did is taken for hung
/// in its boot: under TCG on a loaded machine a guest kernel now and then stalls before
/// userspace (RCU stall reports on the console, CPU 0's timer never firing), and would
/// otherwise hold the matrix until [`vm_timeout`]. A normal boot takes 10–30 s here.
const BOOT_LIMIT: Duration = Duration::from_secs(180);

/// Boots that hang are retried this many times (a test that fails is never retried).
pub(crate) const BOOT_RETRIES: u32 = 1;

#[derive(Debug)]
pub(crate) struct BootHung;

impl std::fmt::Display for BootHung {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the guest's test runner did not start within {BOOT_LIMIT:?} (boot hung)"
        )
    }
}

impl std::error::Error for BootHung {}

fn boot_and_test(k: &Kernel, bins: &Binaries) -> KernelRun {
    let t = Instant::now();
    let mut run = KernelRun {
        kernel: k.series.to_string(),
        release: k.release.clone(),
        reaps: String::new(),
        outcomes: BTreeMap::new(),
        wall: Duration::ZERO,
        error: None,
    };
    let mut attempt = 0;
    loop {
        match boot(k, bins, &mut run) {
            Ok(()) => break,
            Err(e) if e.is::<BootHung>() && attempt < BOOT_RETRIES => {
                attempt += 1;
                eprintln!("xtask: vm {}: {e:#}; booting it again", k.series);
            }
            Err(e) => {
                eprintln!("xtask: vm {}: {e:#}", k.series);
                run.error = Some(format!("{e:#}"));
                break;
            }
        }
    }
    run.wall = t.elapsed();
    run
}

fn boot(k: &Kernel, bins: &Binaries, run: &mut KernelRun) -> anyhow::Result<()> {
    let dir = TempDir::new(k.series)?;
    let initrd = initramfs(k, &dir.0)?;
    let share = dir.0.join("share");
    fs::create_dir_all(&share)?;
    fs::write(
        share.join("run.sh"),
        runner_script(bins, "/run/results", "/run/tmp"),
    )?;
    let console = dir.0.join("console.log");
    let mut c = Command::new(QEMU);
    c.args(["-accel", "tcg", "-cpu", "max", "-smp", "2", "-m", "2048"])
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
        // qemu dies with the thread that waits for it, even if xtask is killed.
        c.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut q = Qemu(c.spawn().context("start qemu")?);
    let limit = vm_timeout();
    let start = Instant::now();
    let status = loop {
        if let Some(st) = q.0.try_wait()? {
            break Some(st);
        }
        if start.elapsed() > BOOT_LIMIT && !share.join("release").exists() {
            keep_logs(k.series, &dir.0, &share);
            return Err(BootHung.into()); // dropping `q` kills qemu
        }
        if start.elapsed() > limit {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    run.outcomes = read_outcomes(&share);
    run.reaps = reap_witness(&share);
    if let Ok(r) = fs::read_to_string(share.join("release")) {
        run.release = r.trim().to_string();
    }
    keep_logs(k.series, &dir.0, &share);
    match status {
        None => bail!("the VM did not power off within {limit:?}"),
        Some(st) if !st.success() => bail!(
            "qemu exited with {st}: {}",
            fs::read_to_string(dir.0.join("qemu.err")).unwrap_or_default()
        ),
        Some(_) if run.outcomes.len() < GUEST_TESTS.len() => bail!(
            "the guest ran {} of {} tests; console:\n{}",
            run.outcomes.len(),
            GUEST_TESTS.len(),
            tail(&fs::read_to_string(&console).unwrap_or_default(), 30)
        ),
        Some(_) => Ok(()),
    }
}

pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The logs of the last run of a kernel, for a look after a failure.
pub(crate) fn keep_logs(kernel: &str, dir: &Path, results: &Path) {
    let keep = Path::new(CACHE).join("logs").join(kernel);
    let _ = fs::remove_dir_all(&keep);
    if fs::create_dir_all(&keep).is_err() {
        return;
    }
    for d in [dir, results] {
        for e in fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.extension()
                .is_some_and(|x| x == "log" || x == "rc" || x == "err")
            {
                let _ = fs::copy(&p, keep.join(e.file_name()));
            }
        }
    }
}

pub(crate) fn initramfs(k: &Kernel, dir: &Path) -> anyhow::Result<PathBuf> {
    let root = dir.join("initramfs");
    for d in ["bin", "modules", "proc", "sys", "dev", "root"] {
        fs::create_dir_all(root.join(d))?;
    }
    fs::copy("/bin/busybox", root.join("bin/busybox"))?;
    let mut order = String::new();
    for m in &k.modules {
        let name = m.file_name().context("module path")?;
        fs::copy(m, root.join("modules").join(name))?;
        writeln!(order, "{}", name.to_string_lossy())?;
    }
    fs::write(root.join("modules/order"), order)?;
    fs::write(root.join("init"), INIT)?;
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(root.join("init"), fs::Permissions::from_mode(0o755))?;
    let out = dir.join("initramfs.cpio");
    let st = Command::new("sh")
        .arg("-c")
        .arg("find . | cpio -o -H newc --quiet > \"$0\"")
        .arg(&out)
        .current_dir(&root)
        .status()?;
    if !st.success() {
        bail!("cpio failed ({st})");
    }
    Ok(out)
}

/// The same tests on this machine's kernel, without a VM.
fn run_on_host(bins: &Binaries) -> anyhow::Result<KernelRun> {
    let t = Instant::now();
    let dir = TempDir::new(HOST)?;
    let results = dir.0.join("results");
    let tmp = dir.0.join("tmp");
    fs::create_dir_all(&results)?;
    fs::create_dir_all(&tmp)?;
    let script = runner_script(
        bins,
        &results.display().to_string(),
        &tmp.display().to_string(),
    );
    let st = Command::new("sh").arg("-c").arg(&script).status()?;
    let release = fs::read_to_string(results.join("release"))
        .unwrap_or_default()
        .trim()
        .to_string();
    let outcomes = read_outcomes(&results);
    let reaps = reap_witness(&results);
    keep_logs(HOST, &dir.0, &results);
    Ok(KernelRun {
        kernel: HOST.to_string(),
        release,
        reaps,
        outcomes,
        wall: t.elapsed(),
        error: (!st.success()).then(|| format!("the test runner failed ({st})")),
    })
}

/// Where the daemon saw reaps in a run, from its `check` output: the release program where
/// the kernel lets it attach, else the free tracepoint.
pub(crate) fn reap_witness(results: &Path) -> String {
    let log = fs::read_to_string(results.join("check.log")).unwrap_or_default();
    if log.contains("(fentry/release_task)") {
        "release_task".into()
    } else if log.contains("fentry/release_task refused") {
        "sched_process_free".into()
    } else {
        "unknown".into()
    }
}

fn table(runs: &[KernelRun]) -> String {
    let mut s = String::new();
    let w = GUEST_TESTS.iter().map(|(n, _)| n.len()).max().unwrap_or(10);
    write!(s, "\n{:<w$}", "test").unwrap();
    for r in runs {
        write!(s, " | {:<18}", r.kernel).unwrap();
    }
    writeln!(s).unwrap();
    for (name, test) in GUEST_TESTS {
        write!(s, "{name:<w$}").unwrap();
        for r in runs {
            let cell = match r.outcomes.get(*test) {
                Some(o) if o.passed => format!("ok   {:>5.1}s", o.seconds),
                Some(o) => format!("FAIL {:>5.1}s", o.seconds),
                None => "not run".to_string(),
            };
            write!(s, " | {cell:<18}").unwrap();
        }
        writeln!(s).unwrap();
    }
    write!(s, "{:<w$}", "release").unwrap();
    for r in runs {
        write!(s, " | {:<18}", r.release).unwrap();
    }
    writeln!(s).unwrap();
    write!(s, "{:<w$}", "reaps seen at").unwrap();
    for r in runs {
        write!(s, " | {:<18}", r.reaps).unwrap();
    }
    writeln!(s).unwrap();
    write!(s, "{:<w$}", "wall time").unwrap();
    for r in runs {
        write!(s, " | {:<18}", format!("{:.0}s", r.wall.as_secs_f64())).unwrap();
    }
    writeln!(s).unwrap();
    for r in runs {
        if let Some(e) = &r.error {
            writeln!(s, "{}: {e}", r.kernel).unwrap();
        }
    }
    s
}

const README_START: &str = "<!-- vm-matrix:start (written by `cargo xtask vm`) -->";
const README_END: &str = "<!-- vm-matrix:end -->";

/// Replaces the kernel table between the README's markers with this run's results.
fn write_readme(runs: &[&KernelRun]) -> anyhow::Result<()> {
    let path = crate::root().join("README.md");
    let text = fs::read_to_string(&path)?;
    let (Some(a), Some(b)) = (text.find(README_START), text.find(README_END)) else {
        bail!("README.md has no {README_START} ... {README_END} markers");
    };
    let mut t = String::new();
    writeln!(t, "{README_START}")?;
    write!(t, "| test |")?;
    for r in runs {
        let how = if r.kernel == HOST { "host" } else { "qemu" };
        write!(t, " {} (`{}`, {how}) |", r.kernel, r.release)?;
    }
    writeln!(t)?;
    writeln!(t, "|---|{}", "---|".repeat(runs.len()))?;
    for (name, test) in GUEST_TESTS {
        write!(t, "| {name} (`{test}`) |")?;
        for r in runs {
            let cell = match r.outcomes.get(*test) {
                Some(o) if o.passed => "passed",
                Some(_) => "FAILED",
                None => "not run",
            };
            write!(t, " {cell} |")?;
        }
        writeln!(t)?;
    }
    write!(t, "| reaps seen at (`check`) |")?;
    for r in runs {
        write!(t, " `{}` |", r.reaps)?;
    }
    writeln!(t)?;
    write!(t, "| wall time of the run |")?;
    for r in runs {
        write!(t, " {:.0} s |", r.wall.as_secs_f64())?;
    }
    writeln!(t)?;
    let new = format!("{}{}{}", &text[..a], t, &text[b..]);
    fs::write(&path, new)?;
    eprintln!("xtask: vm: README.md's kernel table updated");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_depends_reads_the_modinfo_entry() {
        let ko = b"\x7fELF...\0license=GPL\0depends=virtio,virtio_ring\0intree=Y\0";
        assert_eq!(module_depends(ko), ["virtio", "virtio_ring"]);
        assert!(module_depends(b"\0depends=\0").is_empty());
        assert!(module_depends(b"no modinfo").is_empty());
    }

    #[test]
    fn unknown_kernels_are_one_clear_error() {
        assert_eq!(
            select(&[]).unwrap().len(),
            SERIES.len() + vm_arm64::SERIES.len() + 1
        );
        assert_eq!(select(&["6.1".into(), "6.1".into()]).unwrap(), ["6.1"]);
        let e = select(&["4.19".into()]).unwrap_err().to_string();
        assert!(e.contains("unknown kernel") && e.contains("5.10"), "{e}");
    }
}
