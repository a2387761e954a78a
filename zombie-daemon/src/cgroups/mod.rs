//! The one home of cgroup knowledge: which hierarchy a node has and which one to read
//! ([`detect`], [`pids_root`]), which line of /proc/<pid>/cgroup names a process's cgroup
//! ([`proc_file`]), the walk over the kubepods tree ([`pod_tree`]) and the per-zombie path
//! cache ([`resolver`]). What a path means (pod, container, runtime) is
//! [`crate::attribution::cgroup_path`]'s job.

pub mod pod_tree;
pub mod proc_file;
pub mod resolver;

use std::{
    fs,
    path::{Path, PathBuf},
};

pub use pod_tree::{PodCgroup, cgroup_procs, parse_cgroup_procs, pod_cgroups, pod_cgroups_bounded};
pub use proc_file::{Prefer, path_of_pid, pick};
pub use resolver::{CgroupResolver, id_of_pid};

/// The cgroup filesystem layout of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupMode {
    /// cgroup2 only (most current Kubernetes nodes).
    Unified,
    /// v1 controllers plus a cgroup2 hierarchy at `<root>/unified`.
    Hybrid,
    /// v1 only: cgroup ids carry no information.
    Legacy,
    /// No cgroup filesystem found.
    None,
}

impl CgroupMode {
    /// Which line of /proc/<pid>/cgroup names a process's cgroup on a node in this mode:
    /// the cgroup2 line wherever there may be a cgroup2 hierarchy, a v1 line on a v1-only
    /// node.
    pub fn prefer(self) -> Prefer {
        match self {
            CgroupMode::Legacy => Prefer::V1,
            CgroupMode::Unified | CgroupMode::Hybrid | CgroupMode::None => Prefer::V2,
        }
    }
}

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
const CGROUP_SUPER_MAGIC: i64 = 0x0027_e0eb;
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// The filesystem type (`f_type` of statfs) of `path`, None if it cannot be read.
fn fs_magic(path: &Path) -> Option<i64> {
    // `f_type` is 64-bit here but 32-bit on some architectures.
    #[allow(clippy::unnecessary_cast)]
    rustix::fs::statfs(path).ok().map(|st| st.f_type as i64)
}

/// Finds the cgroup2 hierarchy under `root` (e.g. /sys/fs/cgroup) and the node's mode.
pub fn detect(root: &Path) -> (CgroupMode, Option<PathBuf>) {
    match fs_magic(root) {
        Some(CGROUP2_SUPER_MAGIC) => (CgroupMode::Unified, Some(root.to_path_buf())),
        Some(TMPFS_MAGIC) | Some(CGROUP_SUPER_MAGIC) => {
            let unified = root.join("unified");
            if fs_magic(&unified) == Some(CGROUP2_SUPER_MAGIC) {
                (CgroupMode::Hybrid, Some(unified))
            } else {
                (CgroupMode::Legacy, None)
            }
        }
        _ => (CgroupMode::None, None),
    }
}

/// Where the pids controller is mounted: the cgroup2 root when it has the controller, else
/// the v1 `pids` hierarchy. Its `cgroup.procs` files list processes, and its `pids.*`
/// files count them.
pub fn pids_root(cgroup_root: &Path) -> Option<PathBuf> {
    let (mode, v2) = detect(cgroup_root);
    if let Some(v2) = v2 {
        let controllers = fs::read_to_string(v2.join("cgroup.controllers")).unwrap_or_default();
        if controllers.split_whitespace().any(|c| c == "pids") {
            return Some(v2);
        }
    }
    match mode {
        CgroupMode::Hybrid | CgroupMode::Legacy => {
            let v1 = cgroup_root.join("pids");
            v1.join("cgroup.procs").exists().then_some(v1)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_this_machine() {
        let (mode, v2) = detect(Path::new("/sys/fs/cgroup"));
        assert_ne!(mode, CgroupMode::None);
        if mode != CgroupMode::Legacy {
            assert!(v2.is_some());
        }
        assert_eq!(detect(Path::new("/nonexistent")).0, CgroupMode::None);
    }

    #[test]
    fn finds_the_pids_controller_here() {
        assert!(pids_root(Path::new("/sys/fs/cgroup")).is_some());
        assert!(pids_root(Path::new("/nonexistent")).is_none());
    }

    #[test]
    fn only_a_v1_only_node_prefers_v1() {
        assert_eq!(CgroupMode::Legacy.prefer(), Prefer::V1);
        for mode in [CgroupMode::Unified, CgroupMode::Hybrid, CgroupMode::None] {
            assert_eq!(mode.prefer(), Prefer::V2, "{mode:?}");
        }
    }
}
