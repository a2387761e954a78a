//! Builds the eBPF programs (`zombie-ebpf`) and hands the object to the daemon to embed.
//!
//! The build machines' rustup has no rust-src, so `-Z build-std=core` for bpf is impossible;
//! Debian's rustc-web ships a prebuilt `core` for bpfel-unknown-none instead (installed by
//! `cargo xtask setup`, with bpf-linker). This script runs Debian's cargo with a clean
//! environment:
//! rustup's and the outer cargo's variables (RUSTC, RUSTC_WRAPPER for clippy, RUSTFLAGS,
//! CARGO_TARGET_DIR, ...) would otherwise point the inner build at the wrong compiler.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

const DEFAULT_CARGO: &str = "/usr/bin/cargo";
const DEFAULT_RUSTC: &str = "/usr/bin/rustc";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let ebpf_dir = manifest_dir.join("../zombie-ebpf");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    let object = out_dir.join("zombie-ebpf.o");

    println!("cargo:rerun-if-changed={}", ebpf_dir.join("src").display());
    println!(
        "cargo:rerun-if-changed={}",
        ebpf_dir.join("Cargo.toml").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        ebpf_dir.join("Cargo.lock").display()
    );
    for var in [
        "ZOMBIE_BPF_CARGO",
        "ZOMBIE_BPF_RUSTC",
        "ZOMBIE_EBPF_OBJECT",
        "ZOMBIE_GIT_REVISION",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    git_revision(&manifest_dir);

    // A prebuilt object (e.g. from a container build stage) skips the inner build.
    if let Some(prebuilt) = env::var_os("ZOMBIE_EBPF_OBJECT") {
        std::fs::copy(&prebuilt, &object)
            .unwrap_or_else(|e| fail(&format!("cannot copy ZOMBIE_EBPF_OBJECT={prebuilt:?}: {e}")));
        return;
    }

    let cargo = env::var("ZOMBIE_BPF_CARGO").unwrap_or_else(|_| DEFAULT_CARGO.into());
    let rustc = env::var("ZOMBIE_BPF_RUSTC").unwrap_or_else(|_| DEFAULT_RUSTC.into());
    for tool in [&cargo, &rustc] {
        if !Path::new(tool).exists() {
            fail(&format!(
                "{tool} is missing: the eBPF programs need Debian's Rust toolchain \
                 (rustc-web with the bpf core). Run `cargo xtask setup` once, as root."
            ));
        }
    }

    let arch = match env::var("CARGO_CFG_TARGET_ARCH").unwrap().as_str() {
        "x86_64" => "x86_64",
        "aarch64" => "aarch64",
        "riscv64" => "riscv64",
        "powerpc64" => "powerpc64",
        "s390x" => "s390x",
        "loongarch64" => "loongarch64",
        other => fail(&format!("unsupported target architecture {other}")),
    };
    let rustflags = [
        format!("--cfg=bpf_target_arch=\"{arch}\""),
        "-Cdebuginfo=2".into(),
        "-Clink-arg=--btf".into(),
    ]
    .join("\x1f");

    // Shared by every profile and by clippy: the eBPF build does not depend on them.
    let target_dir = workspace_target_dir(&manifest_dir, &out_dir).join("bpf");

    let mut cmd = Command::new(&cargo);
    cmd.current_dir(&ebpf_dir);
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO") || key.starts_with("RUSTC") || key.starts_with("RUSTUP") {
            cmd.env_remove(key.as_ref());
        }
    }
    for key in [
        "RUSTFLAGS",
        "RUSTDOCFLAGS",
        "CLIPPY_ARGS",
        "CLIPPY_CONF_DIR",
        "__CARGO_FIX_PLZ",
    ] {
        cmd.env_remove(key);
    }
    // Keep the outer build's jobserver so the two builds share the machine's cores.
    if let Some(jobserver) = env::var_os("CARGO_MAKEFLAGS") {
        cmd.env("CARGO_MAKEFLAGS", jobserver);
    }
    let path = env::var_os("PATH").unwrap_or_default();
    let mut paths: Vec<PathBuf> = env::split_paths(&path).collect();
    paths.insert(0, PathBuf::from("/usr/local/bin"));
    cmd.env("PATH", env::join_paths(paths).unwrap())
        .env("RUSTC", &rustc)
        // aya-ebpf needs asm_experimental_arch on bpf; scope the bootstrap to our crates.
        .env("RUSTC_BOOTSTRAP", "zombie_ebpf,aya_ebpf")
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags)
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            "bpfel-unknown-none",
        ])
        .args([
            "--features",
            "programs",
            "--bin",
            "zombie-ebpf",
            "--target-dir",
        ])
        .arg(&target_dir);

    let status = cmd
        .status()
        .unwrap_or_else(|e| fail(&format!("cannot run {cargo}: {e}")));
    if !status.success() {
        fail(&format!(
            "building the eBPF programs failed ({status}). If bpf-linker is missing, run \
             `cargo xtask setup`."
        ));
    }
    let built = target_dir.join("bpfel-unknown-none/release/zombie-ebpf");
    std::fs::copy(&built, &object)
        .unwrap_or_else(|e| fail(&format!("cannot copy {}: {e}", built.display())));
}

/// `zombie_build_info{revision}`: the commit, from the environment (e.g. an image build) or git.
fn git_revision(manifest_dir: &Path) {
    let git = manifest_dir.join("../.git");
    for f in ["HEAD", "refs/heads"] {
        if git.join(f).exists() {
            println!("cargo:rerun-if-changed={}", git.join(f).display());
        }
    }
    let rev = env::var("ZOMBIE_GIT_REVISION").ok().or_else(|| {
        let out = Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .current_dir(manifest_dir)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    });
    println!(
        "cargo:rustc-env=ZOMBIE_GIT_REVISION={}",
        rev.unwrap_or_else(|| "unknown".into())
    );
}

/// The workspace's target dir: OUT_DIR is `<target>/<profile>/build/<pkg>-<hash>/out`.
fn workspace_target_dir(manifest_dir: &Path, out_dir: &Path) -> PathBuf {
    out_dir
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "build"))
        .and_then(|build| build.parent()?.parent())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest_dir.join("../target"))
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(1);
}
