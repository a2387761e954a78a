//! The arm64 leg of `cargo xtask vm`: Debian's generic arm64 kernels (6.1 and 6.12) booted
//! by qemu-system-aarch64 under TCG (`-M virt -cpu max`), running the same kernel-facing
//! end-to-end tests as the x86 guests ([`vm::GUEST_TESTS`]) with the same runner.
//!
//! An x86 guest's root is the host's root; an arm64 guest cannot run those binaries, so it
//! gets an arm64 userland of its own, in three parts:
//! - the daemon, the workload and the e2e test binary, cross-built here as static
//!   aarch64-musl binaries linked by rust-lld (no C cross toolchain, as `build --target
//!   arm64` does), read over a 9p share of `target/aarch64-unknown-linux-musl` mounted at the
//!   same path in the guest: the e2e binary knows the workload by its absolute path;
//! - Debian bookworm's arm64 util-linux, coreutils and dash with the libraries they need
//!   (what the tests and the runner run: unshare, nsenter, setsid, prlimit, setpriv,
//!   timeout, sh), unpacked with `dpkg-deb -x` from the dependency closure apt computes
//!   against an empty package database, served read-only over 9p as the guest's root;
//! - busybox-static:arm64 in the initramfs, which loads the kernel's virtio and 9p modules
//!   and mounts what the daemon reads before it chroots into that root.
//!
//! qemu-system-arm comes from bookworm-backports (qemu 10, as the image's qemu-utils), the
//! kernels and the userland from Debian's archive, all through private apt configurations
//! under the VM cache: the system's apt sources are never touched and no arm64 package is
//! installed on the host. The generic flavour is taken: `-cloud-arm64` has no 9p.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use crate::{
    image::{self, Arch},
    vm::{
        self, Apt, Binaries, BootHung, CACHE, KernelRun, MIRROR, Qemu, SECURITY_MIRROR, Series,
        TempDir,
    },
};

/// The arm64 kernels of the matrix (`--kernel` names them so).
pub const SERIES: &[Series] = &[
    Series {
        name: "arm64-6.1",
        prefix: "linux-image-6.1.0-",
        suffix: "-arm64",
        suites: &[("bookworm", MIRROR), ("bookworm-security", SECURITY_MIRROR)],
    },
    Series {
        name: "arm64-6.12",
        prefix: "linux-image-6.12.",
        suffix: "+deb13-arm64",
        suites: &[("trixie", MIRROR), ("trixie-security", SECURITY_MIRROR)],
    },
];

const QEMU: &str = "/usr/bin/qemu-system-aarch64";
/// What apt must take from bookworm-backports for qemu-system-arm 10; the rest (its
/// libraries) comes from bookworm.
const QEMU_FROM_BACKPORTS: &[&str] = &["qemu-system-arm", "qemu-system-common", "qemu-system-data"];

/// The guest's userland from bookworm arm64 (plus what they depend on): the shell, the
/// runner's `timeout` and `cut`, util-linux's unshare, nsenter, setsid, prlimit and setpriv
/// (busybox's lack `--kill-child` and `--bounding-set`) and `mount`, all of which the tests
/// run, and busybox for the initramfs.
const USERLAND: &[&str] = &["busybox-static", "coreutils", "dash", "mount", "util-linux"];

/// A TCG guest of another architecture runs slower than an x86 one: the time one may take
/// to reach its test runner before it is taken for hung (a boot takes 5–15 s here).
const BOOT_LIMIT: Duration = Duration::from_secs(180);

pub fn is_arm64(kernel: &str) -> bool {
    SERIES.iter().any(|s| s.name == kernel)
}

/// An arm64 kernel, unpacked: what a boot needs.
#[derive(Clone)]
pub struct Kernel {
    series: &'static str,
    release: String,
    /// The uncompressed `Image` (qemu's `-kernel` boots it directly).
    image: PathBuf,
    /// The guest's modules, uncompressed, in load order.
    modules: Vec<PathBuf>,
}

/// Everything the arm64 guests share, made once per `cargo xtask vm`.
pub struct Leg {
    pub kernels: Vec<Kernel>,
    bins: Binaries,
    /// The directory of the cross-built binaries, shared with the guest at the same path.
    bin_dir: PathBuf,
    userland: PathBuf,
    busybox: PathBuf,
}

/// Installs qemu-system-arm, cross-builds the binaries, unpacks the userland and the
/// kernels named in `wanted`. None when no arm64 kernel is wanted.
pub fn prepare(wanted: &[&str]) -> anyhow::Result<Option<Leg>> {
    let series: Vec<&'static Series> = SERIES.iter().filter(|s| wanted.contains(&s.name)).collect();
    if series.is_empty() {
        return Ok(None);
    }
    let t = Instant::now();
    install_qemu()?;
    let (bins, bin_dir) = build()?;
    let userland = userland()?;
    let mut kernels = Vec::new();
    for s in series {
        kernels.push(fetch_kernel(s)?);
    }
    // The initramfs's busybox is the userland's (arm64, static).
    let busybox = userland.join("bin/busybox");
    if !busybox.is_file() {
        bail!("{} is missing from the arm64 userland", busybox.display());
    }
    eprintln!(
        "xtask: vm: arm64 leg prepared (qemu, binaries, userland, kernels) in {:.0}s",
        t.elapsed().as_secs_f64()
    );
    Ok(Some(Leg {
        kernels,
        bins,
        bin_dir,
        userland,
        busybox,
    }))
}

fn install_qemu() -> anyhow::Result<()> {
    if Path::new(QEMU).exists() {
        return Ok(());
    }
    let t = Instant::now();
    let apt = Apt::new(
        "apt-qemu-arm64",
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
            .args(["-o", "DPkg::Lock::Timeout=600"])
            .args(["install", "-y", "--no-install-recommends"])
            .args(&pkgs),
    )?;
    if !Path::new(QEMU).exists() {
        bail!("{QEMU} is still missing after installing qemu-system-arm");
    }
    eprintln!(
        "xtask: vm: qemu-system-arm installed in {:.0}s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The daemon, the workload and the e2e tests for aarch64-unknown-linux-musl: the dev
/// profile (debug assertions, overflow checks) at opt-level 1 and without debug info.
/// Emulated arm64 runs unoptimized code slowly: at opt-level 0 the daemon's `check` took
/// 20 s in a guest and the two guests' runs 271 s and 304 s side by side, at opt-level 1
/// 96 s and 105 s, for about twice the build time (2.8 -> 6 min on this machine with 4
/// users). Debug info would only slow the build and the guest's reads of the test binary
/// (124 MB with it, 14 MB without); panics still say where.
fn build() -> anyhow::Result<(Binaries, PathBuf)> {
    let t = Instant::now();
    image::setup_targets()?;
    let arch = Arch::Arm64;
    let target = arch.rust_target();
    let lld = image::rust_lld()?;
    let env_name = |what: &str| {
        format!(
            "CARGO_TARGET_{}_{what}",
            target.to_uppercase().replace('-', "_")
        )
    };
    let cross = |c: &mut Command| {
        c.args(["--locked", "--target", target])
            .env(env_name("LINKER"), &lld)
            .env(env_name("RUSTFLAGS"), "-Cdebuginfo=0 -Copt-level=1");
    };
    let mut c = crate::cargo();
    c.args([
        "build",
        "-p",
        "zombie-daemon",
        "-p",
        "zombie-tests",
        "--bins",
    ]);
    cross(&mut c);
    crate::status(&mut c)?;
    let mut c = crate::cargo();
    c.args([
        "test",
        "-p",
        "zombie-tests",
        "--test",
        "e2e",
        "--no-run",
        "--message-format=json",
    ]);
    cross(&mut c);
    let out = c
        .stderr(Stdio::inherit())
        .output()
        .context("cargo test --no-run (aarch64)")?;
    if !out.status.success() {
        bail!("building the e2e tests for {target} failed");
    }
    let e2e = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == "e2e")
        .find_map(|v| v["executable"].as_str().map(PathBuf::from))
        .context("cargo did not name the aarch64 e2e test executable")?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::root().join("target"));
    let bin_dir = target_dir.join(target);
    let daemon = bin_dir.join("debug/zombie-daemon");
    for b in [&e2e, &daemon, &bin_dir.join("debug/zombie-workload")] {
        check_aarch64(b)?;
    }
    eprintln!(
        "xtask: vm: aarch64 binaries built in {:.0}s",
        t.elapsed().as_secs_f64()
    );
    Ok((Binaries { e2e, daemon }, bin_dir))
}

/// A static aarch64 ELF executable: the guest has no loader for anything else.
fn check_aarch64(path: &Path) -> anyhow::Result<()> {
    let mut head = [0u8; 64];
    use std::io::Read;
    fs::File::open(path)
        .with_context(|| format!("open {}", path.display()))?
        .read_exact(&mut head)?;
    const EM_AARCH64: u16 = 183;
    let machine = u16::from_le_bytes([head[18], head[19]]);
    if &head[..4] != b"\x7fELF" || head[4] != 2 || machine != EM_AARCH64 {
        bail!("{} is not a 64-bit aarch64 ELF", path.display());
    }
    Ok(())
}

/// The userland's directory: unpacked once, again when [`USERLAND`] changes.
fn userland() -> anyhow::Result<PathBuf> {
    let dir = Path::new(CACHE).join("arm64-userland");
    let root = dir.join("root");
    let stamp = dir.join("packages");
    let want = USERLAND.join(" ");
    if root.is_dir() && fs::read_to_string(&stamp).ok().as_deref() == Some(want.as_str()) {
        return Ok(root);
    }
    let t = Instant::now();
    let apt = Apt::new(
        "apt-arm64-userland",
        &[
            ("bookworm", MIRROR),
            ("bookworm-updates", MIRROR),
            ("bookworm-security", SECURITY_MIRROR),
        ],
    )?
    .arch("arm64");
    apt.update(false)?;
    let _ = fs::remove_dir_all(&dir);
    let tmp = dir.with_file_name("arm64-userland.partial");
    let _ = fs::remove_dir_all(&tmp);
    let debs = tmp.join("debs");
    let state = tmp.join("state");
    fs::create_dir_all(debs.join("partial"))?;
    fs::create_dir_all(&state)?;
    // An empty package database: apt downloads the whole closure of the packages, and
    // neither reads nor locks the system's dpkg state.
    fs::write(state.join("status"), "")?;
    let download = |apt: &Apt| {
        crate::status(
            apt.cmd("apt-get")
                .arg("-o")
                .arg(format!("Dir::State={}", state.display()))
                .arg("-o")
                .arg(format!(
                    "Dir::State::status={}",
                    state.join("status").display()
                ))
                .arg("-o")
                .arg(format!("Dir::Cache::archives={}", debs.display()))
                .args(["install", "-q", "-y", "--download-only"])
                .args(["--no-install-recommends"])
                .args(USERLAND),
        )
    };
    if download(&apt).is_err() {
        // Stale lists name versions the mirror no longer has.
        apt.update(true)?;
        download(&apt)?;
    }
    let root_tmp = tmp.join("root");
    let mut n = 0;
    for e in fs::read_dir(&debs)? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "deb") {
            crate::status(Command::new("dpkg-deb").arg("-x").arg(&p).arg(&root_tmp))?;
            n += 1;
        }
    }
    for d in ["proc", "sys", "dev", "run", "tmp"] {
        fs::create_dir_all(root_tmp.join(d))?;
    }
    for f in [
        "bin/sh",
        "bin/busybox",
        "bin/mount",
        "usr/bin/prlimit",
        "usr/bin/setpriv",
        "usr/bin/timeout",
    ] {
        if fs::symlink_metadata(root_tmp.join(f)).is_err() {
            bail!("the arm64 userland has no /{f}");
        }
    }
    fs::remove_dir_all(&debs)?;
    fs::remove_dir_all(&state)?;
    fs::rename(&tmp, &dir)?;
    fs::write(&stamp, &want)?;
    eprintln!(
        "xtask: vm: arm64 userland ({n} packages) unpacked in {:.0}s",
        t.elapsed().as_secs_f64()
    );
    Ok(root)
}

fn fetch_kernel(s: &'static Series) -> anyhow::Result<Kernel> {
    let dir = Path::new(CACHE).join("kernels").join(s.name);
    if let Some(k) = cached_kernel(s, &dir) {
        return Ok(k);
    }
    let t = Instant::now();
    let apt = Apt::new(&format!("apt-{}", s.name), s.suites)?.arch("arm64");
    let package = match vm::newest_package(&apt, s)? {
        Some(p) => p,
        None => {
            apt.update(true)?;
            vm::newest_package(&apt, s)?
                .with_context(|| format!("no {}<N>{} in {:?}", s.prefix, s.suffix, s.suites))?
        }
    };
    let _ = fs::remove_dir_all(&dir);
    let tmp = dir.with_file_name(format!("{}.partial", s.name));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(tmp.join("deb"))?;
    let mut download = apt.cmd("apt-get");
    download
        .arg("download")
        .arg(&package)
        .current_dir(tmp.join("deb"));
    if crate::status(&mut download).is_err() {
        // Lists older than the mirror's pool: the version they name is gone.
        apt.update(true)?;
        crate::status(&mut download)?;
    }
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
    let vmlinuz = root.join(format!("boot/vmlinuz-{release}"));
    arm64_image(&vmlinuz, &tmp.join("Image"))?;
    fs::create_dir_all(tmp.join("modules"))?;
    let order = vm::collect_modules(&modules_dir, &tmp.join("modules"), vm::GUEST_MODULES)?;
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
    let image = dir.join("Image");
    image.exists().then(|| Kernel {
        series: s.name,
        release: release.trim().to_string(),
        image,
        modules: order
            .lines()
            .filter(|l| !l.is_empty())
            .map(|m| dir.join("modules").join(m))
            .collect(),
    })
}

/// Debian's arm64 `vmlinuz` is the kernel's `Image`, bare or gzipped: the bare `Image` (its
/// header's magic `ARM\x64` at 0x38) is what qemu boots without unpacking anything.
fn arm64_image(vmlinuz: &Path, out: &Path) -> anyhow::Result<()> {
    let data = fs::read(vmlinuz).with_context(|| format!("read {}", vmlinuz.display()))?;
    let data = if data.starts_with(&[0x1f, 0x8b]) {
        let o = Command::new("gzip")
            .args(["-d", "-c"])
            .arg(vmlinuz)
            .output()
            .context("run gzip")?;
        if !o.status.success() {
            bail!("gzip -d {} failed", vmlinuz.display());
        }
        o.stdout
    } else {
        data
    };
    if data.get(0x38..0x3c) != Some(b"ARM\x64") {
        bail!("{} is not an arm64 kernel Image", vmlinuz.display());
    }
    fs::write(out, data)?;
    Ok(())
}

/// The guest's /init (busybox, in the initramfs): modules, the userland as root, the
/// binaries at their host path, the mounts the daemon reads, the tests.
fn init_script(bin_dir: &Path) -> String {
    format!(
        r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules/order); do insmod /modules/$m || echo "GUEST: insmod $m failed"; done
o=trans=virtio,version=9p2000.L,msize=512000
mount -t 9p -o $o,ro,cache=loose userland /root || echo "GUEST: cannot mount the userland"
mount -t 9p -o $o,ro,cache=loose bins /root{bins} || echo "GUEST: cannot mount the binaries"
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
"#,
        bins = bin_dir.display()
    )
}

fn initramfs(leg: &Leg, k: &Kernel, dir: &Path) -> anyhow::Result<PathBuf> {
    let root = dir.join("initramfs");
    for d in ["bin", "modules", "proc", "sys", "dev", "root"] {
        fs::create_dir_all(root.join(d))?;
    }
    fs::copy(&leg.busybox, root.join("bin/busybox"))?;
    let mut order = String::new();
    for m in &k.modules {
        let name = m.file_name().context("module path")?;
        fs::copy(m, root.join("modules").join(name))?;
        writeln!(order, "{}", name.to_string_lossy())?;
    }
    fs::write(root.join("modules/order"), order)?;
    fs::write(root.join("init"), init_script(&leg.bin_dir))?;
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

/// Boots `k` and runs the tests (a hung boot is retried once, as for the x86 guests).
pub fn boot_and_test(leg: &Leg, k: &Kernel) -> KernelRun {
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
        match boot(leg, k, &mut run) {
            Ok(()) => break,
            Err(e) if e.is::<BootHung>() && attempt < vm::BOOT_RETRIES => {
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

/// A read-only or writable 9p share for qemu: `-fsdev` plus its virtio-9p-pci device.
fn share(c: &mut Command, tag: &str, path: &Path, readonly: bool) {
    c.arg("-fsdev").arg(format!(
        "local,id={tag},path={},security_model=none,multidevs=remap{}",
        path.display(),
        if readonly { ",readonly=on" } else { "" }
    ));
    c.arg("-device")
        .arg(format!("virtio-9p-pci,fsdev={tag},mount_tag={tag}"));
}

fn boot(leg: &Leg, k: &Kernel, run: &mut KernelRun) -> anyhow::Result<()> {
    let dir = TempDir::new(k.series)?;
    let initrd = initramfs(leg, k, &dir.0)?;
    let results = dir.0.join("share");
    fs::create_dir_all(&results)?;
    // The guest's e2e binary would look for the daemon in the host's debug directory.
    let script = format!(
        "export ZOMBIE_DAEMON_BIN={}\n{}",
        leg.bins.daemon.display(),
        vm::runner_script(&leg.bins, "/run/results", "/run/tmp")
    );
    fs::write(results.join("run.sh"), script)?;
    // The mount point of the binaries in the (read-only) root.
    fs::create_dir_all(
        leg.userland
            .join(leg.bin_dir.strip_prefix("/").unwrap_or(&leg.bin_dir)),
    )?;
    let console = dir.0.join("console.log");
    let mut c = Command::new(QEMU);
    // pauth-impdef: the architected pointer-authentication algorithm (QARMA) costs TCG
    // dearly on every call and return of a kernel built with it; the guest sees the same
    // features either way.
    c.args(["-M", "virt", "-accel", "tcg", "-cpu", "max,pauth-impdef=on"])
        .args(["-smp", "2", "-m", "2048"])
        .args(["-nographic", "-no-reboot", "-nic", "none"])
        .args(["-device", "virtio-rng-pci"])
        .arg("-kernel")
        .arg(&k.image)
        .arg("-initrd")
        .arg(&initrd)
        .args([
            "-append",
            "console=ttyAMA0 rdinit=/init panic=-1 quiet mitigations=off random.trust_cpu=on",
        ]);
    share(&mut c, "userland", &leg.userland, true);
    share(&mut c, "bins", &leg.bin_dir, true);
    share(&mut c, "results", &results, false);
    c.stdin(Stdio::null())
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
    let mut q = Qemu(c.spawn().context("start qemu-system-aarch64")?);
    let limit = vm::vm_timeout();
    let start = Instant::now();
    let status = loop {
        if let Some(st) = q.0.try_wait()? {
            break Some(st);
        }
        // The runner writes `release` first: until then the guest is still booting.
        if start.elapsed() > BOOT_LIMIT && !results.join("release").exists() {
            vm::keep_logs(k.series, &dir.0, &results);
            return Err(BootHung.into()); // dropping `q` kills qemu
        }
        if start.elapsed() > limit {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    run.outcomes = vm::read_outcomes(&results);
    run.reaps = vm::reap_witness(&results);
    if let Ok(r) = fs::read_to_string(results.join("release")) {
        run.release = r.trim().to_string();
    }
    vm::keep_logs(k.series, &dir.0, &results);
    match status {
        None => bail!("the VM did not power off within {limit:?}"),
        Some(st) if !st.success() => bail!(
            "qemu exited with {st}: {}",
            fs::read_to_string(dir.0.join("qemu.err")).unwrap_or_default()
        ),
        Some(_) if run.outcomes.len() < vm::GUEST_TESTS.len() => bail!(
            "the guest ran {} of {} tests; console:\n{}",
            run.outcomes.len(),
            vm::GUEST_TESTS.len(),
            vm::tail(&fs::read_to_string(&console).unwrap_or_default(), 30)
        ),
        Some(_) => Ok(()),
    }
}

/// What the daemon's `check` said of its programs on a kernel, from the kept check.log:
/// how many attached and how task fields are read, and why fentry/release_task was refused.
pub fn programs(kernel: &str) -> String {
    let log = fs::read_to_string(Path::new(CACHE).join("logs").join(kernel).join("check.log"))
        .unwrap_or_default();
    summarize_check(&log)
}

fn summarize_check(log: &str) -> String {
    let mut out = Vec::new();
    const ATTACHED: &str = " programs loaded and attached";
    match log.lines().find(|l| l.contains(ATTACHED)) {
        Some(l) => {
            let (before, rest) = l.split_once(ATTACHED).unwrap_or_default();
            let n = before.split_whitespace().last().unwrap_or("?");
            let how = if rest.contains("read with plain loads") {
                "plain loads"
            } else {
                "bpf_probe_read_kernel"
            };
            out.push(format!("{n} attached, task fields by {how}"));
        }
        None => out.push("no programs attached".into()),
    }
    if log.contains("(fentry/release_task)") {
        out.push("fentry/release_task attached".into());
    } else if let Some(why) = log
        .split_once("fentry/release_task refused (")
        .and_then(|(_, r)| r.split_once("): reaps seen"))
        .map(|(why, _)| why.to_string())
    {
        out.push(format!("fentry/release_task refused: {why}"));
    }
    out.join("; ")
}

const README_START: &str = "<!-- vm-matrix-arm64:start (written by `cargo xtask vm`) -->";
const README_END: &str = "<!-- vm-matrix-arm64:end -->";

/// Replaces the arm64 table between its README markers with this run's results.
pub fn write_readme(runs: &[&KernelRun]) -> anyhow::Result<()> {
    let path = crate::root().join("README.md");
    let text = fs::read_to_string(&path)?;
    let (Some(a), Some(b)) = (text.find(README_START), text.find(README_END)) else {
        bail!("README.md has no {README_START} ... {README_END} markers");
    };
    let mut t = String::new();
    writeln!(t, "{README_START}")?;
    write!(t, "| test |")?;
    for r in runs {
        write!(t, " {} (`{}`, qemu TCG) |", r.kernel, r.release)?;
    }
    writeln!(t)?;
    writeln!(t, "|---|{}", "---|".repeat(runs.len()))?;
    for (name, test) in vm::GUEST_TESTS {
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
    write!(t, "| programs (`check`) |")?;
    for r in runs {
        write!(t, " {} |", programs(&r.kernel).replace('|', "/"))?;
    }
    writeln!(t)?;
    write!(t, "| wall time of the run |")?;
    for r in runs {
        write!(t, " {:.0} s |", r.wall.as_secs_f64())?;
    }
    writeln!(t)?;
    let new = format!("{}{}{}", &text[..a], t, &text[b..]);
    fs::write(&path, new)?;
    eprintln!("xtask: vm: README.md's arm64 table updated");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_output_is_summarized() {
        let release = "ok    ebpf      5 programs loaded and attached (then detached); task \
                       fields read with plain loads\nok    reap      reaps seen where they \
                       happen (fentry/release_task)\n";
        assert_eq!(
            summarize_check(release),
            "5 attached, task fields by plain loads; fentry/release_task attached"
        );
        let free = "ok ebpf 4 programs loaded and attached (then detached); task fields read \
                    through bpf_probe_read_kernel (this verifier refused plain loads)\n\
                    ok reap fentry/release_task refused (ENOTSUPP: no trampoline): reaps seen \
                    at sched_process_free, which ...\n";
        assert_eq!(
            summarize_check(free),
            "4 attached, task fields by bpf_probe_read_kernel; fentry/release_task refused: \
             ENOTSUPP: no trampoline"
        );
        assert_eq!(summarize_check("FAIL ebpf ..."), "no programs attached");
    }

    #[test]
    fn only_an_arm64_image_is_taken() {
        let dir = TempDir::new("arm64-image-test").unwrap();
        let mut img = vec![0u8; 64];
        img[0x38..0x3c].copy_from_slice(b"ARM\x64");
        let good = dir.0.join("good");
        fs::write(&good, &img).unwrap();
        arm64_image(&good, &dir.0.join("out")).unwrap();
        assert_eq!(fs::read(dir.0.join("out")).unwrap(), img);
        let bz = dir.0.join("bz");
        fs::write(
            &bz,
            b"MZ not an arm64 image, long enough to have a header at 0x38....",
        )
        .unwrap();
        let e = arm64_image(&bz, &dir.0.join("out2"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not an arm64 kernel Image"), "{e}");
    }
}
