//! Prevention: which containers run under the init that the `zombie-init` RuntimeClass
//! injects (the `zombie-init-runtime` wrapper bind-mounts the node's static init into the
//! container and makes it PID 1).
//!
//! A container tells this by a fact its tenant cannot forge: the file its PID 1 executes
//! (`/proc/<pid>/exe`, followed) is the node's installed init, the same device and inode.
//! A program named `tini`, or a file at the mount point's path in an image, is not.

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

/// The RuntimeClass (and containerd runtime handler) that starts containers under the init.
pub use zombie_core::diagnosis::RUNTIME_CLASS;
/// Where `zombie-init-runtime install` puts the init on a node.
pub const DEFAULT_INIT: &str = "/opt/zombie-init/bin/tini-static";
/// Another install prefix's init (a path on the node).
pub const INIT_ENV: &str = "ZOMBIE_INJECTED_INIT";

/// A file's identity: device and inode. A bind mount shows the same ones in every mount
/// namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(path: &Path) -> Option<Self> {
        let m = std::fs::metadata(path).ok()?;
        Some(Self {
            dev: m.dev(),
            ino: m.ino(),
        })
    }
}

/// The injected init's path on the node ([`INIT_ENV`], else [`DEFAULT_INIT`]).
pub fn init_path() -> PathBuf {
    std::env::var_os(INIT_ENV)
        .filter(|p| Path::new(p).is_absolute())
        .map_or_else(|| PathBuf::from(DEFAULT_INIT), PathBuf::from)
}

/// The node's installed init, or `None` when it is not installed on this node: at its
/// path in the daemon's own root (the DaemonSet mounts the node's install directory at the
/// same path), else through the root of the host's PID 1 (`<proc_root>/1/root`, which
/// needs ptrace access to it).
pub fn injected_init(proc_root: &Path) -> Option<FileId> {
    let path = init_path();
    let rel = path.strip_prefix("/").unwrap_or(&path);
    FileId::of(&path).or_else(|| FileId::of(&proc_root.join("1/root").join(rel)))
}

/// `pid` executes the injected init.
pub fn runs_init(proc_root: &Path, pid: u32, init: FileId) -> bool {
    FileId::of(&proc_root.join(pid.to_string()).join("exe")) == Some(init)
}

/// The init of `pid`'s PID namespace, found by walking up its parents (at most `MAX_DEPTH`
/// steps) to the one whose pid in its own namespace is 1; `None` if the walk leaves /proc.
fn namespace_init(proc_root: &Path, pid: u32) -> Option<u32> {
    const MAX_DEPTH: usize = 64;
    let mut pid = pid;
    for _ in 0..MAX_DEPTH {
        let dir = proc_root.join(pid.to_string());
        let status = crate::proc_scan::read_status(&dir)?;
        if status.nspid.as_ref().and_then(|v| v.last()) == Some(&1) {
            return Some(pid);
        }
        // The host's namespace has no injected init.
        if status.nspid.as_ref().is_none_or(|v| v.len() < 2) || status.ppid <= 0 {
            return None;
        }
        pid = status.ppid as u32;
    }
    None
}

/// The pid of the injected init that is PID 1 of `pid`'s PID namespace, if that one is.
pub fn injected_namespace_init(proc_root: &Path, pid: u32, init: FileId) -> Option<u32> {
    let ns_init = namespace_init(proc_root, pid)?;
    runs_init(proc_root, ns_init, init).then_some(ns_init)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_runs_the_file_its_exe_link_points_at() {
        let me = std::process::id();
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let id = FileId::of(&exe).unwrap();
        assert!(runs_init(Path::new("/proc"), me, id));
        let other = FileId::of(Path::new("/proc/self/status")).unwrap();
        assert!(!runs_init(Path::new("/proc"), me, other));
        assert!(!runs_init(Path::new("/nonexistent"), me, id));
    }

    #[test]
    fn the_host_namespace_has_no_injected_init() {
        let me = std::process::id();
        let exe = FileId::of(&std::fs::read_link("/proc/self/exe").unwrap()).unwrap();
        // The tests run in the host's PID namespace (or a container's, whose init is not
        // this test binary).
        assert_eq!(injected_namespace_init(Path::new("/proc"), me, exe), None);
    }

    #[test]
    fn the_default_init_path_is_absolute() {
        assert!(init_path().is_absolute());
    }
}
