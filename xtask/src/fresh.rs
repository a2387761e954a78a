//! `cargo xtask fresh`: the README's test command, run the way CI runs it on a machine that
//! has never seen the project — the project's own proof of its setup, as `make distcheck`
//! is for autotools projects.
//!
//! A root like a new machine of this kind is built once and cached: `debootstrap
//! --variant=minbase bookworm` plus the basic packages of the machine image (see
//! [`BASE_PACKAGES`]). Each run puts a throw-away overlay on top of it, adds what the image
//! ships outside Debian's archive (rustup's toolchains, Node.js), clones the committed HEAD
//! (not the work tree) and runs `cargo xtask test` in a mount namespace of its own rooted
//! there (pivot_root, not chroot) that shares this kernel: `/proc`, `/sys` (with the
//! cgroup, bpf, BTF and tracing filesystems under it) and `/dev` are bind-mounted. Nothing the host installed by hand is visible inside, so a missing
//! install step fails here as it would on a new machine.
//!
//! Everything mounted is unmounted (deepest first) and the overlay removed when the run
//! ends, also when it fails; `--keep` leaves the root for a look.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context, bail};

use crate::{Tool, install, is_root, root, status};

/// What the host needs to build the root.
const FRESH_TOOLS: &[Tool] = &[
    Tool::new("/usr/sbin/debootstrap", "debootstrap"),
    Tool::new("/usr/bin/git", "git"),
    Tool::new("/usr/bin/unshare", "util-linux"),
    Tool::new("/usr/bin/mount", "mount"),
];

/// The Debian suite of this machine kind's image.
const SUITE: &str = "bookworm";

/// The Debian packages of the machine image that a build or test could lean on without the
/// project installing them: the toolchain's C side, git, Python, the basic userland. (The
/// image has hundreds more — Java, Chromium, docs — that nothing here uses; leaving them out
/// makes the root stricter, not looser.)
const BASE_PACKAGES: &[&str] = &[
    "ca-certificates",
    "curl",
    "gcc",
    "g++",
    "git",
    "make",
    "python3",
    "python3-pip",
    "python3-venv",
    "procps",
    "util-linux",
    "iproute2",
    "xz-utils",
    "libc6-dev",
    "pkg-config",
    "kmod",
];

/// Bumped when the way the base is built changes, so an old cache is not reused.
const BASE_VERSION: u32 = 1;

/// Host environment variables passed into the chroot when set: the image's CA settings and
/// locale. Everything else starts clean, as CI's machine environment does.
const PASS_ENV: &[&str] = &[
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
    "NODE_EXTRA_CA_CERTS",
    "REQUESTS_CA_BUNDLE",
    "PIP_CERT",
    "RUSTUP_AUTO_INSTALL",
    "LANG",
    "DEBIAN_FRONTEND",
];

fn cache_dir() -> PathBuf {
    PathBuf::from(
        std::env::var("ZOMBIE_TEST_CACHE")
            .unwrap_or_else(|_| "/var/cache/zombie-daemon-tests".into()),
    )
    .join("fresh")
}

/// The Debian archive the system's apt sources use (Deb822 `URIs:` or a one-line `deb`
/// entry, in the files apt reads; not the security archive, not a third party's).
fn mirror() -> anyhow::Result<String> {
    let mut texts = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        for e in dir.flatten() {
            let p = e.path();
            if matches!(
                p.extension().and_then(|x| x.to_str()),
                Some("sources" | "list")
            ) {
                texts.push(std::fs::read_to_string(p).unwrap_or_default());
            }
        }
    }
    texts.push(std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default());
    for text in &texts {
        for line in text.lines().map(str::trim) {
            let uri = line
                .strip_prefix("URIs:")
                .and_then(|u| u.split_whitespace().next())
                .or_else(|| {
                    let mut w = line.split_whitespace();
                    (w.next() == Some("deb")).then(|| w.find(|x| x.contains("://")))?
                });
            if let Some(uri) = uri
                && uri.trim_end_matches('/').ends_with("/debian")
            {
                return Ok(uri.to_string());
            }
        }
    }
    bail!("no Debian archive found in the system's apt sources (/etc/apt/sources.list*)")
}

/// Mount points made by this run, unmounted in reverse order when dropped.
#[derive(Default)]
struct Mounts(Vec<PathBuf>);

impl Mounts {
    fn run(&mut self, args: &[&str], target: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(target).with_context(|| format!("mkdir {}", target.display()))?;
        let ok = Command::new("mount")
            .args(args)
            .arg(target)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            bail!("mount {} {} failed", args.join(" "), target.display());
        }
        self.0.push(target.to_path_buf());
        Ok(())
    }

    /// A recursive bind of a host directory, made a slave so that unmounting inside never
    /// propagates back to the host.
    fn rbind(&mut self, src: &str, root: &Path) -> anyhow::Result<()> {
        let target = root.join(src.trim_start_matches('/'));
        self.run(&["--rbind", src], &target)?;
        let _ = Command::new("mount")
            .arg("--make-rslave")
            .arg(&target)
            .status();
        Ok(())
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        for target in self.0.drain(..).rev() {
            let ok = Command::new("umount")
                .arg("-R")
                .arg(&target)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                eprintln!(
                    "xtask: umount -R {} failed; detaching it lazily",
                    target.display()
                );
                let _ = Command::new("umount")
                    .args(["-R", "-l"])
                    .arg(&target)
                    .status();
            }
        }
    }
}

/// Runs `script` with bash inside `root`: in a mount namespace of its own whose root is
/// `root` (pivot_root), not a chroot, as on a machine: the kernel refuses a chrooted process
/// a new user namespace, and runc cannot pivot_root into a container from inside a chroot
/// (its fallback left a read-only container root writable). That namespace is the node's
/// for what runs in it (its runtime, its "kubelet"), not the kernel's initial one, so the
/// daemons the suite starts are told so: `ZOMBIE_NODE_MOUNT_NAMESPACE` names it through the
/// pid of the shell that runs the suite (alive until the suite ends), as `--node-mount-
/// namespace` does for a node that runs in a container.
fn in_root(root: &Path, script: &str) -> Command {
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
        .arg(
            "set -e; mount --rbind \"$0\" \"$0\"; cd \"$0\"; mkdir -p .host-root; \
             pivot_root . .host-root; cd /; umount -l /.host-root; rmdir /.host-root; \
             exec /usr/bin/env -i \"ZOMBIE_NODE_MOUNT_NAMESPACE=/proc/$$/ns/mnt\" \"$@\"",
        )
        .arg(root);
    c.arg("HOME=/root")
        .arg("PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for key in PASS_ENV {
        if let Ok(v) = std::env::var(key) {
            c.arg(format!("{key}={v}"));
        }
    }
    c.args(["/bin/bash", "-c", script]);
    c
}

/// Copies the host's CA bundle (the image trusts extra CAs that cargo and pip need here),
/// resolver, hosts, hostname and the image's own apt settings into the root: a machine has them (no package ships
/// /etc/hosts; the image's provisioning writes it, and containerd copies it into every
/// host-network pod), a debootstrap root does not.
fn copy_host_files(root: &Path) -> anyhow::Result<()> {
    for f in [
        "/etc/resolv.conf",
        "/etc/hosts",
        "/etc/hostname",
        "/etc/ssl/certs/ca-certificates.crt",
    ] {
        let dst = root.join(f.trim_start_matches('/'));
        std::fs::create_dir_all(dst.parent().unwrap())?;
        // resolv.conf may be a dangling link in the root.
        let _ = std::fs::remove_file(&dst);
        std::fs::copy(f, &dst).with_context(|| format!("copy {f} into the root"))?;
    }
    // The image's own apt settings (no package ships them): a machine of this kind has
    // them, and the archive it reaches serves metadata past its Valid-Until date, which
    // those settings accept (the private apt configurations inherit them).
    if let Ok(dir) = std::fs::read_dir("/etc/apt/apt.conf.d") {
        let conf = root.join("etc/apt/apt.conf.d");
        std::fs::create_dir_all(&conf)?;
        for e in dir.flatten() {
            let path = e.path();
            let owned = Command::new("dpkg")
                .arg("-S")
                .arg(&path)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !owned && path.is_file() {
                std::fs::copy(&path, conf.join(e.file_name()))
                    .with_context(|| format!("copy {} into the root", path.display()))?;
            }
        }
    }
    let extra = Path::new("/usr/local/share/ca-certificates");
    if extra.is_dir() {
        status(
            Command::new("cp")
                .args(["-a", "-T"])
                .arg(extra)
                .arg(root.join("usr/local/share/ca-certificates")),
        )?;
    }
    Ok(())
}

/// The cached base root, built when missing.
fn base() -> anyhow::Result<PathBuf> {
    let mirror = mirror()?;
    let key = {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let text = format!(
            "{BASE_VERSION} {SUITE} {mirror} {}",
            BASE_PACKAGES.join(" ")
        );
        for b in text.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        format!("{SUITE}-{h:016x}")
    };
    let dir = cache_dir().join(&key);
    let root = dir.join("root");
    let done = dir.join("complete");
    if done.exists() {
        eprintln!("xtask: fresh: base root {} (cached)", root.display());
        return Ok(root);
    }
    let t = Instant::now();
    if dir.exists() {
        eprintln!(
            "xtask: fresh: removing an unfinished base root {}",
            dir.display()
        );
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    eprintln!("xtask: fresh: debootstrap --variant=minbase {SUITE} from {mirror}");
    status(
        Command::new("debootstrap")
            .args(["--variant=minbase", SUITE])
            .arg(&root)
            .arg(&mirror),
    )?;
    copy_host_files(&root)?;
    // The image's own apt sources (updates and security too), not debootstrap's one line.
    let sources = root.join("etc/apt/sources.list.d");
    std::fs::create_dir_all(&sources)?;
    std::fs::write(
        sources.join("debian.sources"),
        format!(
            "Types: deb\nURIs: {mirror}\nSuites: {SUITE} {SUITE}-updates\nComponents: main\n\
             Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n\
             Types: deb\nURIs: {sec}\nSuites: {SUITE}-security\nComponents: main\n\
             Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
            sec = mirror
                .trim_end_matches('/')
                .replace("/debian", "/debian-security"),
        ),
    )?;
    let _ = std::fs::remove_file(root.join("etc/apt/sources.list"));
    {
        let mut mounts = Mounts::default();
        mounts.rbind("/proc", &root)?;
        mounts.rbind("/dev", &root)?;
        status(&mut in_root(
            &root,
            &format!(
                "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
                 --no-install-recommends {} >/dev/null && update-ca-certificates >/dev/null && \
                 apt-get clean",
                BASE_PACKAGES.join(" ")
            ),
        ))?;
    }
    std::fs::write(&done, "")?;
    eprintln!(
        "xtask: fresh: base root built in {:.0}s",
        t.elapsed().as_secs_f64()
    );
    Ok(root)
}

/// What the machine image ships outside Debian's archive, put into the root as the image
/// has it: rustup's toolchains, the NodeSource Node.js with its npm, and kubectl.
///
/// rustup's home is an overlay on this machine's (the toolchains are gigabytes), writable as
/// on a new machine, where `rustup target add` downloads into it. The targets the project's
/// own setup adds (the musl ones) are taken out of it first: this machine has them because
/// its setup ran here, a new machine has not, and a read-only or shared home once hid that
/// the fresh root could not add them.
fn add_image_extras(root: &Path, run_dir: &Path, mounts: &mut Mounts) -> anyhow::Result<()> {
    let home = root.join("root");
    std::fs::create_dir_all(home.join(".cargo"))?;
    status(
        Command::new("cp")
            .args(["-a", "/root/.cargo/bin"])
            .arg(home.join(".cargo/bin")),
    )?;
    if Path::new("/root/.cargo/env").exists() {
        std::fs::copy("/root/.cargo/env", home.join(".cargo/env"))?;
    }
    let (upper, work) = (run_dir.join("rustup-upper"), run_dir.join("rustup-work"));
    std::fs::create_dir_all(&upper)?;
    std::fs::create_dir_all(&work)?;
    let opts = format!(
        "lowerdir=/root/.rustup,upperdir={},workdir={},redirect_dir=on",
        upper.display(),
        work.display()
    );
    // redirect_dir: rustup renames the directories it removes, and those are in the lower
    // layer (EXDEV without it).
    mounts.run(
        &["-t", "overlay", "overlay", "-o", &opts],
        &home.join(".rustup"),
    )?;
    remove_setup_targets(&home.join(".rustup"))?;
    // kubectl comes from Google's Cloud SDK repository in the image.
    if Path::new("/usr/bin/kubectl").exists() {
        std::fs::copy("/usr/bin/kubectl", root.join("usr/bin/kubectl"))?;
    }
    if Path::new("/usr/bin/node").exists() && Path::new("/usr/lib/node_modules/npm").exists() {
        std::fs::copy("/usr/bin/node", root.join("usr/bin/node"))?;
        status(
            Command::new("cp")
                .args(["-a", "/usr/lib/node_modules"])
                .arg(root.join("usr/lib/")),
        )?;
        for (link, target) in [
            ("npm", "../lib/node_modules/npm/bin/npm-cli.js"),
            ("npx", "../lib/node_modules/npm/bin/npx-cli.js"),
        ] {
            let l = root.join("usr/bin").join(link);
            let _ = std::fs::remove_file(&l);
            std::os::unix::fs::symlink(target, &l)?;
        }
    }
    Ok(())
}

/// Takes the targets `cargo xtask setup` adds out of every toolchain of the rustup home
/// `rustup_home` (an overlay: this machine's own is untouched).
fn remove_setup_targets(rustup_home: &Path) -> anyhow::Result<()> {
    let toolchains = rustup_home.join("toolchains");
    for entry in
        std::fs::read_dir(&toolchains).with_context(|| format!("read {}", toolchains.display()))?
    {
        let entry = entry?;
        // A toolchain may be a link to another (rustup's `stable` to its version, say).
        if entry.file_type()?.is_symlink() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let added: Vec<&str> = crate::image::ALL
            .iter()
            .map(|a| a.rust_target())
            .filter(|t| entry.path().join("lib/rustlib").join(t).exists())
            .collect();
        if added.is_empty() {
            continue;
        }
        eprintln!(
            "xtask: fresh: taking {} out of the root's toolchain {name} (the setup adds them)",
            added.join(", ")
        );
        status(
            Command::new("rustup")
                .env("RUSTUP_HOME", rustup_home)
                .args(["target", "remove", "--toolchain", &name])
                .args(&added),
        )?;
    }
    Ok(())
}

/// Mount points at or below `dir`, from /proc/self/mountinfo.
fn mounted_below(dir: &Path) -> Vec<String> {
    let prefix = dir.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&prefix))
        .map(str::to_string)
        .collect()
}

/// Processes the suite left running in the root (a test that did not clean up): named,
/// then killed, so that the root can be unmounted.
fn kill_left_behind(root: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    let root_id = std::fs::metadata(root).ok().map(|m| (m.dev(), m.ino()));
    for p in procs.flatten() {
        let Ok(pid) = p.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // A process whose root is the fresh root: by its path from here (a chroot), or by
        // the root directory itself (pivoted in its own mount namespace, its root reads "/").
        let inside = std::fs::read_link(p.path().join("root")).is_ok_and(|r| r.starts_with(root))
            || std::fs::metadata(p.path().join("root"))
                .is_ok_and(|m| Some((m.dev(), m.ino())) == root_id);
        if inside {
            let comm = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
            eprintln!(
                "xtask: fresh: pid {pid} ({}) was left running in the root; killed",
                comm.trim()
            );
            // SAFETY: kill with a plain pid and signal.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
}

extern "C" fn on_signal(_: libc::c_int) {}

/// SIGINT and SIGTERM end the suite in the chroot (its processes share our process group for
/// SIGINT), not this process: it waits for the suite, then unmounts and cleans up. A
/// handler, not SIG_IGN, so the suite's processes get the default action after exec.
fn survive_signals() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: an empty handler is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
        libc::signal(libc::SIGHUP, handler);
    }
}

pub fn fresh(keep: bool) -> anyhow::Result<()> {
    if !is_root() {
        bail!("a fresh root needs debootstrap, mounts and chroot: run `cargo xtask fresh` as root");
    }
    let total = Instant::now();
    install(FRESH_TOOLS)?;
    let head = String::from_utf8(
        Command::new("git")
            .current_dir(root())
            .args(["rev-parse", "HEAD"])
            .output()
            .context("git rev-parse HEAD")?
            .stdout,
    )?
    .trim()
    .to_string();
    let dirty = Command::new("git")
        .current_dir(root())
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .is_ok_and(|o| !o.stdout.is_empty());
    if dirty {
        eprintln!("xtask: fresh: note: uncommitted changes are not tested, only HEAD {head}");
    }
    let base = base()?;
    survive_signals();

    // On disk, not a tmpfs: the suite's builds land in the overlay's upper layer.
    let run_dir = PathBuf::from(format!("/var/tmp/zombie-fresh-{}", std::process::id()));
    let merged = run_dir.join("root");
    let mut mounts = Mounts::default();
    let result = (|| -> anyhow::Result<()> {
        std::fs::create_dir_all(run_dir.join("upper"))?;
        std::fs::create_dir_all(run_dir.join("work"))?;
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            base.display(),
            run_dir.join("upper").display(),
            run_dir.join("work").display()
        );
        mounts.run(&["-t", "overlay", "overlay", "-o", &opts], &merged)?;
        // /tmp on the machine's own disk, as on a machine: an overlayfs upper layer cannot
        // hold another overlay mount, which containerd's snapshotter makes there.
        let tmp = run_dir.join("tmp");
        std::fs::create_dir_all(&tmp)?;
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o1777))?;
        mounts.run(&["--bind", &tmp.display().to_string()], &merged.join("tmp"))?;
        copy_host_files(&merged)?;
        add_image_extras(&merged, &run_dir, &mut mounts)?;
        let repo = merged.join("work/zombie-daemon");
        status(
            Command::new("git")
                .args(["clone", "--quiet", "--no-hardlinks"])
                .arg(root())
                .arg(&repo),
        )?;
        status(
            Command::new("git")
                .arg("-C")
                .arg(&repo)
                .args(["checkout", "--quiet", "--detach", &head]),
        )?;
        for m in ["/proc", "/sys", "/dev"] {
            mounts.rbind(m, &merged)?;
        }
        eprintln!(
            "xtask: fresh: running `cargo xtask test` on a clone of {head} in {}",
            merged.display()
        );
        let t = Instant::now();
        let r = status(&mut in_root(
            &merged,
            "cd /work/zombie-daemon && CI=true cargo xtask test",
        ));
        let mut line = String::new();
        let _ = write!(
            line,
            "xtask: fresh: the suite took {:.0}s in the fresh root ({:.0}s in all)",
            t.elapsed().as_secs_f64(),
            total.elapsed().as_secs_f64()
        );
        eprintln!("{line}");
        r
    })();
    if keep {
        eprintln!("xtask: fresh: --keep: {} left mounted", merged.display());
        std::mem::forget(mounts);
    } else {
        kill_left_behind(&merged);
        drop(mounts);
        // Never delete through a mount that is still there: it could be the host's /dev.
        let left = mounted_below(&run_dir);
        if !left.is_empty() {
            eprintln!(
                "xtask: fresh: still mounted, {} not removed: {}",
                run_dir.display(),
                left.join(", ")
            );
        } else if let Err(e) = std::fs::remove_dir_all(&run_dir) {
            eprintln!("xtask: fresh: cannot remove {}: {e}", run_dir.display());
        }
    }
    result.context("the test suite failed in the fresh root")
}
