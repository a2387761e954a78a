//! `cargo xtask build --target ARCH` (a static, stripped daemon for amd64 or arm64) and
//! `cargo xtask image` (the container image, built from deploy/Dockerfile by buildah).
//!
//! The binary is static musl linked by rust-lld, so it needs no C cross toolchain and the
//! image needs no libc: its runtime stage is `FROM scratch` with the binary and CA
//! certificates. The eBPF object embedded in it is built by zombie-daemon's build.rs with
//! Debian's toolchain, as for every other build.
//!
//! The image is built from deploy/Dockerfile itself. Its build stage (a Rust image that
//! compiles from source) needs a registry these machines cannot reach, so buildah is given
//! that stage's output as a named build context (`--build-context build=DIR`, what the
//! Dockerfile's `COPY --from=build` then reads): the same files, laid out as the stage
//! leaves them, built here by `build --target`. Every instruction of the runtime stage runs
//! as written, for both platforms, and the result is an OCI archive with an index of both.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context, bail};

use crate::{cargo, root, status};

/// The image's name, as the manifests and the chart reference it (without the tag).
pub const REPOSITORY: &str = "ghcr.io/zombie-daemon/zombie-daemon";

/// An architecture the daemon is built for: Docker's name (the Dockerfile's `TARGETARCH`)
/// and Rust's target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    Amd64,
    Arm64,
}

pub const ALL: [Arch; 2] = [Arch::Amd64, Arch::Arm64];

impl Arch {
    /// Accepts Docker's and the kernel's names.
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        match s {
            "amd64" | "x86_64" => Ok(Self::Amd64),
            "arm64" | "aarch64" => Ok(Self::Arm64),
            other => bail!("unknown target {other:?}: amd64 (x86_64) or arm64 (aarch64)"),
        }
    }

    /// Docker's name, the Dockerfile's `TARGETARCH`.
    pub fn docker(self) -> &'static str {
        match self {
            Self::Amd64 => "amd64",
            Self::Arm64 => "arm64",
        }
    }

    pub fn rust_target(self) -> &'static str {
        match self {
            Self::Amd64 => "x86_64-unknown-linux-musl",
            Self::Arm64 => "aarch64-unknown-linux-musl",
        }
    }

    /// What `file` says of the binary's machine.
    pub fn elf_machine(self) -> &'static str {
        match self {
            Self::Amd64 => "x86-64",
            Self::Arm64 => "ARM aarch64",
        }
    }

    fn linker_var(self) -> String {
        format!(
            "CARGO_TARGET_{}_LINKER",
            self.rust_target().to_uppercase().replace('-', "_")
        )
    }
}

/// rustup's toolchain for the userspace build (the workspace's `rust-toolchain` is
/// rustup's default here).
fn rustup_sysroot() -> anyhow::Result<PathBuf> {
    let out = Command::new("rustc")
        .args(["--print", "sysroot"])
        .current_dir(root())
        .output()
        .context("run rustc --print sysroot")?;
    if !out.status.success() {
        bail!("rustc --print sysroot failed");
    }
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

/// The musl standard libraries of both targets (rustup ships them: `rustup target add`);
/// part of `cargo xtask setup`.
pub fn setup_targets() -> anyhow::Result<()> {
    let sysroot = rustup_sysroot()?;
    let missing: Vec<&str> = ALL
        .iter()
        .map(|a| a.rust_target())
        .filter(|t| !sysroot.join("lib/rustlib").join(t).join("lib").is_dir())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    status(
        Command::new("rustup")
            .args(["target", "add"])
            .args(&missing)
            .current_dir(root()),
    )
}

/// rust-lld, which rustup ships with every toolchain: it links static musl binaries of
/// either architecture without a C cross toolchain.
pub(crate) fn rust_lld() -> anyhow::Result<PathBuf> {
    let sysroot = rustup_sysroot()?;
    let host = Command::new("rustc")
        .arg("-vV")
        .current_dir(root())
        .output()
        .context("run rustc -vV")?;
    let host = String::from_utf8_lossy(&host.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .context("no host in rustc -vV")?;
    let lld = sysroot.join("lib/rustlib").join(host).join("bin/rust-lld");
    if !lld.is_file() {
        bail!("{} is missing (rustup's toolchain ships it)", lld.display());
    }
    Ok(lld)
}

/// Where `build --target` leaves the shipped files of `arch`.
pub fn dist_dir(arch: Arch) -> PathBuf {
    root().join("target/dist").join(arch.docker())
}

/// Builds the static release daemon for `arch`, then splits it: `target/dist/<arch>/
/// zombie-daemon` is stripped of debug info (what the image ships) and points by a
/// `.gnu_debuglink` at `zombie-daemon.debug` beside it, which keeps the symbols for
/// backtraces.
pub fn build_target(arch: Arch) -> anyhow::Result<PathBuf> {
    let t = Instant::now();
    // The musl targets are part of the setup; a build in a fresh container adds them here.
    setup_targets()?;
    let lld = rust_lld()?;
    status(
        cargo()
            .args(["build", "--locked", "--release", "-p", "zombie-daemon"])
            .args(["--target", arch.rust_target()])
            .env(arch.linker_var(), &lld),
    )?;
    let built = root()
        .join("target")
        .join(arch.rust_target())
        .join("release/zombie-daemon");
    let dir = dist_dir(arch);
    fs::create_dir_all(&dir)?;
    let bin = dir.join("zombie-daemon");
    let debug = dir.join("zombie-daemon.debug");
    let objcopy = llvm_objcopy()?;
    let _ = fs::remove_file(&debug);
    status(
        Command::new(&objcopy)
            .arg("--only-keep-debug")
            .arg(&built)
            .arg(&debug),
    )?;
    let _ = fs::remove_file(&bin);
    status(
        Command::new(&objcopy)
            .arg("--strip-debug")
            .arg(format!("--add-gnu-debuglink={}", debug.display()))
            .arg(&built)
            .arg(&bin),
    )?;
    check_binary(arch, &bin)?;
    eprintln!(
        "xtask: {} ({} bytes; debug info in {}, {} bytes) in {:.0}s",
        bin.display(),
        fs::metadata(&bin)?.len(),
        debug.display(),
        fs::metadata(&debug)?.len(),
        t.elapsed().as_secs_f64()
    );
    Ok(bin)
}

/// LLVM's objcopy of Debian's llvm-NN-dev (installed by setup for bpf-linker): it handles
/// both architectures, where binutils' objcopy handles only the host's.
fn llvm_objcopy() -> anyhow::Result<PathBuf> {
    let major = crate::rustc_llvm_major()?;
    let p = PathBuf::from(format!("/usr/lib/llvm-{major}/bin/llvm-objcopy"));
    if !p.is_file() {
        bail!("{} is missing: run `cargo xtask setup`", p.display());
    }
    Ok(p)
}

/// The binary must be a static ELF of `arch` with no interpreter and no debug info: `file`
/// says the machine and "statically linked" (or "static-pie linked"), readelf shows no
/// `.debug_info` section and no `PT_INTERP`, and a `.gnu_debuglink`.
fn check_binary(arch: Arch, bin: &Path) -> anyhow::Result<()> {
    let file = output(Command::new("file").arg("-b").arg(bin))?;
    let is_static = file.contains("statically linked") || file.contains("static-pie linked");
    if !file.contains(arch.elf_machine()) || !is_static {
        bail!(
            "{}: expected a static {} ELF, `file` says: {file}",
            bin.display(),
            arch.elf_machine()
        );
    }
    let headers = output(Command::new("readelf").args(["-lS", "-W"]).arg(bin))?;
    if headers.contains("INTERP") || headers.contains(".debug_info") {
        bail!(
            "{}: it has an interpreter or debug info:\n{headers}",
            bin.display()
        );
    }
    if !headers.contains(".gnu_debuglink") {
        bail!("{}: no .gnu_debuglink to its debug file", bin.display());
    }
    Ok(())
}

fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// The workspace's version (xtask's own, which it inherits): the image's tag and the chart's
/// appVersion.
pub fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// Where `cargo xtask image` writes the image: an OCI archive whose index holds one
/// manifest per architecture, named `REPOSITORY:version`.
pub fn archive_path() -> PathBuf {
    root().join("target/image/zombie-daemon.oci.tar")
}

/// Builds the binaries of `arches` and the image from deploy/Dockerfile (see the module
/// doc).
pub fn image(arches: &[Arch]) -> anyhow::Result<()> {
    let t = Instant::now();
    let arches: Vec<Arch> = if arches.is_empty() {
        ALL.to_vec()
    } else {
        arches.to_vec()
    };
    let work = root().join("target/image");
    let context = work.join("build-stage");
    let _ = fs::remove_dir_all(&context);
    fs::create_dir_all(context.join("out"))?;
    for &arch in &arches {
        let bin = build_target(arch)?;
        let dir = context.join("out").join(arch.docker());
        fs::create_dir_all(&dir)?;
        fs::copy(&bin, dir.join("zombie-daemon"))?;
    }
    write_ca_bundle(&context.join("out/ca-certificates.crt"))?;

    let version = version();
    let name = format!("{REPOSITORY}:{version}");
    let revision = output(
        Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .current_dir(root()),
    )
    .map(|s| s.trim().to_string())
    .unwrap_or_else(|_| "unknown".into());
    // A store of our own, rebuilt each time: the archive is the only product.
    let store = work.join("store");
    let _ = fs::remove_dir_all(&store);
    let buildah = |args: &[&str]| {
        let mut c = Command::new("buildah");
        c.arg("--root")
            .arg(store.join("root"))
            .arg("--runroot")
            .arg(store.join("run"))
            .args(["--storage-driver", "vfs"])
            .args(args)
            .current_dir(root());
        c
    };
    let platforms: Vec<String> = arches
        .iter()
        .map(|a| format!("linux/{}", a.docker()))
        .collect();
    // No network: nothing may be pulled (the runtime stage is FROM scratch).
    status(
        buildah(&["build", "--isolation", "chroot", "--pull=never", "--quiet"])
            .arg("--build-context")
            .arg(format!("build={}", context.display()))
            .args(["--platform", &platforms.join(",")])
            .args(["--build-arg", &format!("REVISION={revision}")])
            .args(["--build-arg", &format!("VERSION={version}")])
            .args(["--manifest", &name])
            .args(["-f", "deploy/Dockerfile", "."]),
    )?;
    let archive = archive_path();
    let _ = fs::remove_file(&archive);
    status(
        buildah(&["manifest", "push", "--all", "--format", "oci", "--quiet"])
            .arg(&name)
            .arg(format!("oci-archive:{}:{name}", archive.display())),
    )?;
    let _ = fs::remove_dir_all(&store);
    check_archive(&archive, &name, &arches)?;
    eprintln!(
        "xtask: image {name} ({}) in {} ({} bytes) in {:.0}s",
        platforms.join(", "),
        archive.display(),
        fs::metadata(&archive)?.len(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The Mozilla CA bundle as Debian's ca-certificates package ships it (what
/// `update-ca-certificates` writes on a machine without local additions), not this
/// machine's /etc/ssl/certs, which may hold local CAs.
fn write_ca_bundle(out: &Path) -> anyhow::Result<()> {
    let dir = Path::new("/usr/share/ca-certificates/mozilla");
    let mut certs: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("{} (Debian package ca-certificates)", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "crt"))
        .collect();
    certs.sort();
    if certs.is_empty() {
        bail!("no certificates in {}", dir.display());
    }
    let mut bundle = Vec::new();
    for c in certs {
        let pem = fs::read(&c)?;
        bundle.extend_from_slice(&pem);
        if !pem.ends_with(b"\n") {
            bundle.push(b'\n');
        }
    }
    fs::write(out, bundle)?;
    Ok(())
}

/// A file of the OCI archive, by its path inside it.
fn archive_file(archive: &Path, inner: &str) -> anyhow::Result<serde_json::Value> {
    let text = output(Command::new("tar").arg("-xOf").arg(archive).arg(inner))?;
    serde_json::from_str(&text).with_context(|| format!("{inner} in {}", archive.display()))
}

fn blob(archive: &Path, digest: &serde_json::Value) -> anyhow::Result<serde_json::Value> {
    let digest = digest.as_str().context("a descriptor without a digest")?;
    archive_file(
        archive,
        &format!("./blobs/{}", digest.replacen(':', "/", 1)),
    )
    .or_else(|_| archive_file(archive, &format!("blobs/{}", digest.replacen(':', "/", 1))))
}

/// The archive holds what a registry would serve for `name`: an index with one image per
/// architecture, each of that architecture, with the Dockerfile's entrypoint, and in its
/// layers the binary and the CA bundle, nothing else.
fn check_archive(archive: &Path, name: &str, arches: &[Arch]) -> anyhow::Result<()> {
    let top =
        archive_file(archive, "./index.json").or_else(|_| archive_file(archive, "index.json"))?;
    let entry = top["manifests"]
        .as_array()
        .and_then(|m| m.first())
        .context("the archive's index.json lists nothing")?;
    let ref_name = &entry["annotations"]["org.opencontainers.image.ref.name"];
    if ref_name != name {
        bail!("the archive's image is named {ref_name}, not {name}");
    }
    let index = blob(archive, &entry["digest"])?;
    let manifests = index["manifests"].as_array().context("no image index")?;
    for arch in arches {
        let m = manifests
            .iter()
            .find(|m| m["platform"]["architecture"] == arch.docker())
            .with_context(|| format!("no linux/{} image in the index", arch.docker()))?;
        let manifest = blob(archive, &m["digest"])?;
        let config = blob(archive, &manifest["config"]["digest"])?;
        if config["architecture"] != arch.docker()
            || config["config"]["Entrypoint"][0] != "/usr/local/bin/zombie-daemon"
        {
            bail!(
                "linux/{}: architecture {}, entrypoint {}",
                arch.docker(),
                config["architecture"],
                config["config"]["Entrypoint"]
            );
        }
        // Every file of every layer: the binary and the CA bundle, nothing else.
        let mut files = Vec::new();
        for layer in manifest["layers"].as_array().into_iter().flatten() {
            let digest = layer["digest"]
                .as_str()
                .context("a layer without a digest")?;
            let listing = output(Command::new("bash").arg("-c").arg(format!(
                "set -o pipefail; tar -xOf '{}' 'blobs/{}' | tar -tz",
                archive.display(),
                digest.replacen(':', "/", 1)
            )))?;
            files.extend(
                listing
                    .lines()
                    .filter(|l| !l.ends_with('/'))
                    .map(|l| l.trim_start_matches("./").to_string()),
            );
        }
        files.sort();
        if files
            != [
                "etc/ssl/certs/ca-certificates.crt",
                "usr/local/bin/zombie-daemon",
            ]
        {
            bail!("linux/{}: the image holds {files:?}", arch.docker());
        }
    }
    Ok(())
}
