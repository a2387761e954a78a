//! Which cgroup a process exited in.
//!
//! The eBPF side captures the cgroup v2 id at exit (a zombie's namespaces are gone by then,
//! its cgroup is not). A path is needed to attribute it; it is read once per cgroup id from
//! the zombie's own /proc/<pid>/cgroup, which the kernel keeps until the reap. On a v1-only
//! node every id is the root's, so the path is read per process instead.

use std::{
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Arc,
};

use rustc_hash::{FxHashMap, FxHashSet};

use crate::tracker::ProcKey;

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

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
const CGROUP_SUPER_MAGIC: i64 = 0x0027_e0eb;
const TMPFS_MAGIC: i64 = 0x0102_1994;

fn fs_magic(path: &Path) -> Option<i64> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out-pointer.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_type as i64)
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

/// Resolves (process, cgroup id) to a cgroup path: cached by id where ids are meaningful,
/// else per process (a scrape must not read /proc/<pid>/cgroup for every zombie each time).
pub struct CgroupResolver {
    proc_root: PathBuf,
    mode: CgroupMode,
    root_id: Option<u64>,
    by_id: FxHashMap<u64, Arc<str>>,
    by_proc: FxHashMap<ProcKey, Arc<str>>,
    /// One copy of each distinct path, shared by the per-process entries.
    interned: FxHashSet<Arc<str>>,
}

/// Bound on cached paths; a node has a few thousand cgroups at most.
const CACHE_LIMIT: usize = 16_384;
/// Bound on per-process entries (processes of cgroups whose id says nothing).
const PROC_CACHE_LIMIT: usize = 131_072;

impl CgroupResolver {
    pub fn new(proc_root: impl Into<PathBuf>, cgroup_root: &Path) -> Self {
        let (mode, v2) = detect(cgroup_root);
        let root_id = v2
            .as_deref()
            .and_then(|p| fs::metadata(p).ok())
            .map(|m| m.ino());
        Self {
            proc_root: proc_root.into(),
            mode,
            root_id,
            by_id: FxHashMap::default(),
            by_proc: FxHashMap::default(),
            interned: FxHashSet::default(),
        }
    }

    fn id_is_meaningful(&self, id: u64) -> bool {
        matches!(self.mode, CgroupMode::Unified | CgroupMode::Hybrid)
            && id != 0
            && Some(id) != self.root_id
    }

    /// The cgroup path of process `key` that exited in cgroup `id`.
    pub fn path(&mut self, key: ProcKey, id: u64) -> Option<Arc<str>> {
        let meaningful = self.id_is_meaningful(id);
        let cached = if meaningful {
            self.by_id.get(&id)
        } else {
            self.by_proc.get(&key)
        };
        if let Some(p) = cached {
            return Some(p.clone());
        }
        let file = self.proc_root.join(key.pid.to_string()).join("cgroup");
        let text = fs::read_to_string(file).ok()?;
        let path: Arc<str> = pick_path(&text, self.mode != CgroupMode::Legacy)?.into();
        if meaningful {
            if self.by_id.len() >= CACHE_LIMIT {
                self.by_id.clear();
            }
            self.by_id.insert(id, path.clone());
            return Some(path);
        }
        if self.by_proc.len() >= PROC_CACHE_LIMIT {
            self.by_proc.clear();
            self.interned.clear();
        }
        let path = match self.interned.get(&path) {
            Some(p) => p.clone(),
            None => {
                self.interned.insert(path.clone());
                path
            }
        };
        self.by_proc.insert(key, path.clone());
        Some(path)
    }
}

/// The cgroup2 id of a process (the inode of its cgroup2 directory), from its
/// /proc/<pid>/cgroup; 0 when unknown. Used for zombies found by a /proc scan.
pub fn id_of_pid(proc_root: &Path, v2_root: Option<&Path>, pid: u32) -> u64 {
    let Some(root) = v2_root else { return 0 };
    let Ok(text) = fs::read_to_string(proc_root.join(pid.to_string()).join("cgroup")) else {
        return 0;
    };
    let Some(path) = pick_path(&text, true) else {
        return 0;
    };
    fs::metadata(root.join(path.trim_start_matches('/')))
        .map(|m| m.ino())
        .unwrap_or(0)
}

/// Picks the most telling path from /proc/<pid>/cgroup: the cgroup2 (`0::`) line when the
/// node has one, else the `pids`, `memory` or systemd v1 line. Strips " (deleted)".
pub fn pick_path(text: &str, prefer_v2: bool) -> Option<String> {
    let mut v2 = None;
    let mut v1 = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let path = path.strip_suffix(" (deleted)").unwrap_or(path);
        if id == "0" && ctrls.is_empty() {
            v2 = Some(path);
        } else if ctrls
            .split(',')
            .any(|c| c == "pids" || c == "memory" || c == "name=systemd")
            && (v1.is_none() || ctrls.split(',').any(|c| c == "pids"))
        {
            v1 = Some(path);
        }
    }
    let chosen = match (prefer_v2, v2, v1) {
        // In hybrid mode a v1 path can name a pod the v2 line does not (e.g. "/").
        (true, Some(p2), Some(p1)) if p2 == "/" && p1 != "/" => p1,
        (true, Some(p2), _) => p2,
        (_, _, Some(p1)) => p1,
        (_, p2, None) => p2?,
    };
    Some(chosen.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "12:pids:/kubepods/besteffort/podabc/123\n\
        11:memory:/kubepods/besteffort/podabc/123\n\
        1:name=systemd:/kubepods/besteffort/podabc/123\n\
        0::/kubepods/besteffort/podabc/123\n";

    #[test]
    fn prefers_the_v2_line() {
        assert_eq!(
            pick_path(HYBRID, true).unwrap(),
            "/kubepods/besteffort/podabc/123"
        );
        assert_eq!(pick_path("0::/a/b (deleted)\n", true).unwrap(), "/a/b");
    }

    #[test]
    fn falls_back_to_v1() {
        let text = "5:memory:/m\n3:pids:/p\n0::/\n";
        assert_eq!(pick_path(text, true).unwrap(), "/p");
        assert_eq!(pick_path(text, false).unwrap(), "/p");
        assert_eq!(pick_path("garbage\n:::\n", true), None);
        assert_eq!(pick_path("", true), None);
    }

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
    fn resolves_our_own_cgroup() {
        let mut r = CgroupResolver::new("/proc", Path::new("/sys/fs/cgroup"));
        let me = ProcKey {
            pid: std::process::id(),
            start_ticks: 1,
        };
        let p = r.path(me, 0).unwrap();
        assert!(p.starts_with('/'));
        // Cached per process: the same answer without /proc.
        assert_eq!(r.path(me, 0).unwrap(), p);
    }
}
