//! containerd 2.x for the prevention tests (a version 3 config): no Debian suite these
//! machines run ships one, so Debian sid's package is downloaded through a private apt
//! configuration (never the system's sources) and unpacked, not installed, into the test
//! cache. It depends only on libc6 and runc, and runs from there. The cgroup v2 guest
//! (`vm_cgroup2`) takes trixie's containerd 1.7 the same way.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};

use crate::vm::{Apt, MIRROR};

/// Where the e2e harness looks for it (`tests/e2e/containerd.rs`, `containerd2_bin_dir`).
pub fn dir() -> PathBuf {
    PathBuf::from(
        std::env::var("ZOMBIE_TEST_CACHE")
            .unwrap_or_else(|_| "/var/cache/zombie-daemon-tests".into()),
    )
    .join("containerd2")
}

/// Where trixie's containerd 1.7 is unpacked, beside [`dir`].
pub fn dir_trixie() -> PathBuf {
    dir().with_file_name("containerd-trixie")
}

/// Downloads and unpacks containerd from sid when it is not there yet.
pub fn install() -> anyhow::Result<()> {
    unpack("sid", &dir())
}

/// Downloads and unpacks containerd 1.7 from trixie when it is not there yet.
pub fn install_trixie() -> anyhow::Result<()> {
    unpack("trixie", &dir_trixie())
}

/// Debian `suite`'s containerd package, unpacked into `dest` (its binaries in `usr/bin`).
fn unpack(suite: &str, dest: &Path) -> anyhow::Result<()> {
    let dest = dest.to_path_buf();
    if dest.join("usr/bin/containerd").is_file() {
        return Ok(());
    }
    let apt = Apt::new(&format!("apt-{suite}"), &[(suite, MIRROR)])?;
    let work = dest.with_extension("download");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work)?;
    // sid moves fast: lists from an earlier run may name a version the archive dropped.
    apt.update(false)?;
    if download(&apt, &work, suite).is_err() {
        apt.update(true)?;
        download(&apt, &work, suite)?;
    }
    let deb = fs::read_dir(&work)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .context("apt-get download left no containerd .deb")?;
    let unpacked = dest.with_extension("new");
    let _ = fs::remove_dir_all(&unpacked);
    crate::status(
        std::process::Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(&unpacked),
    )?;
    if !unpacked.join("usr/bin/containerd").is_file() {
        bail!("{} has no usr/bin/containerd", deb.display());
    }
    let _ = fs::remove_dir_all(&dest);
    fs::rename(&unpacked, &dest)?;
    let _ = fs::remove_dir_all(&work);
    eprintln!(
        "xtask: containerd from {} unpacked into {}",
        deb.file_name().unwrap_or_default().to_string_lossy(),
        dest.display()
    );
    Ok(())
}

fn download(apt: &Apt, work: &Path, suite: &str) -> anyhow::Result<()> {
    crate::status(
        apt.cmd("apt-get")
            .current_dir(work)
            .args(["-q", "download"])
            .arg(format!("containerd/{suite}")),
    )
}
