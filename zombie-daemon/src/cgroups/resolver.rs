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

use super::{CgroupMode, Prefer, detect, path_of_pid};
use crate::tracker::ProcKey;

/// Resolves (process, cgroup id) to a cgroup path: cached by id where ids are meaningful,
/// else per process (a scrape must not read /proc/<pid>/cgroup for every zombie each time).
pub struct CgroupResolver {
    proc_root: PathBuf,
    mode: CgroupMode,
    root_id: Option<u64>,
    by_id: FxHashMap<u64, Arc<str>>,
    /// With the build generation that last used each entry (see [`Self::forget_unused`]).
    by_proc: FxHashMap<ProcKey, (Arc<str>, u32)>,
    generation: u32,
    /// One copy of each distinct path, shared by the per-process entries.
    interned: FxHashSet<Arc<str>>,
}

/// Bound on cached paths; a node has a few thousand cgroups at most.
const CACHE_LIMIT: usize = 16_384;
/// Bound on per-process entries (processes of cgroups whose id says nothing). A snapshot
/// build forgets the processes it no longer lists, so the cache holds the table's zombies:
/// the bound is the largest PID space (`pid_max` at most 4,194,304), so that a table of any
/// size is resolved from the cache, not by reading every zombie's /proc/<pid>/cgroup anew at
/// each build (what clearing it at a lower bound did above that many zombies).
const PROC_CACHE_LIMIT: usize = 4_194_304;

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
            generation: 0,
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
            self.by_id.get(&id).cloned()
        } else {
            self.by_proc.get_mut(&key).map(|(p, used)| {
                *used = self.generation;
                p.clone()
            })
        };
        if cached.is_some() {
            return cached;
        }
        let path: Arc<str> = path_of_pid(&self.proc_root, key.pid, self.mode.prefer())?.into();
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
        self.by_proc.insert(key, (path.clone(), self.generation));
        Some(path)
    }

    /// Forgets the processes not resolved since the last call (a build resolves every zombie
    /// it lists, so what it did not ask for is gone from the table).
    pub fn forget_unused(&mut self) {
        let current = self.generation;
        self.by_proc.retain(|_, (_, used)| *used == current);
        if self.by_proc.is_empty() {
            self.interned.clear();
        }
        self.generation = current.wrapping_add(1);
    }
}

/// The cgroup2 id of a process (the inode of its cgroup2 directory), from its
/// /proc/<pid>/cgroup; 0 when unknown. Used for zombies found by a /proc scan.
pub fn id_of_pid(proc_root: &Path, v2_root: Option<&Path>, pid: u32) -> u64 {
    let Some(root) = v2_root else { return 0 };
    let Some(path) = path_of_pid(proc_root, pid, Prefer::V2) else {
        return 0;
    };
    fs::metadata(root.join(path.trim_start_matches('/')))
        .map(|m| m.ino())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// A build forgets the processes it did not list, and keeps those it did (whatever
    /// their number), so a large table is resolved from the cache at every build.
    #[test]
    fn processes_not_resolved_since_the_last_build_are_forgotten() {
        let dir = std::env::temp_dir().join(format!("zd-resolver-{}", std::process::id()));
        for pid in [10, 11] {
            fs::create_dir_all(dir.join(pid.to_string())).unwrap();
            fs::write(dir.join(format!("{pid}/cgroup")), "0::/a/b\n").unwrap();
        }
        let mut r = CgroupResolver::new(&dir, &dir);
        let key = |pid| ProcKey {
            pid,
            start_ticks: 1,
        };
        assert_eq!(r.path(key(10), 0).as_deref(), Some("/a/b"));
        assert_eq!(r.path(key(11), 0).as_deref(), Some("/a/b"));
        r.forget_unused();
        // The next build lists only 10; then /proc no longer has either.
        assert!(r.path(key(10), 0).is_some());
        fs::remove_dir_all(&dir).unwrap();
        r.forget_unused();
        assert_eq!(
            r.path(key(10), 0).as_deref(),
            Some("/a/b"),
            "kept: still listed"
        );
        assert_eq!(
            r.path(key(11), 0),
            None,
            "forgotten: not listed by the last build"
        );
    }

    /// The id is the inode of the cgroup2 directory the process's `0::` line names: set up
    /// here (a /proc and a cgroup2 tree of the test's own), so the expected inode is the
    /// directory the test made, not what the function under test computes, and the test
    /// runs the same on a cgroup v1 host.
    #[test]
    fn a_process_cgroup_id_is_its_cgroup2_directory_inode() {
        let dir = std::env::temp_dir().join(format!("zd-cgid-{}", std::process::id()));
        let (proc_root, v2) = (dir.join("proc"), dir.join("cg"));
        let leaf = v2.join("kubepods/pod1/c1");
        fs::create_dir_all(&leaf).unwrap();
        let made = fs::metadata(&leaf).unwrap().ino();
        let procs = [
            (41, "0::/kubepods/pod1/c1\n"),
            // Hybrid: v1 lines first, the cgroup2 line decides.
            (
                42,
                "12:pids:/other\n1:name=systemd:/other\n0::/kubepods/pod1/c1\n",
            ),
            // A cgroup2 path that is not in the tree (removed since): no id.
            (44, "0::/gone\n"),
        ];
        for (pid, cgroup) in procs {
            fs::create_dir_all(proc_root.join(pid.to_string())).unwrap();
            fs::write(proc_root.join(format!("{pid}/cgroup")), cgroup).unwrap();
        }
        assert_ne!(made, 0);
        assert_eq!(id_of_pid(&proc_root, Some(&v2), 41), made);
        assert_eq!(id_of_pid(&proc_root, Some(&v2), 42), made);
        assert_eq!(id_of_pid(&proc_root, Some(&v2), 44), 0);
        // No cgroup2 hierarchy (a v1-only node), or no such process: 0.
        assert_eq!(id_of_pid(&proc_root, None, 41), 0);
        assert_eq!(id_of_pid(&proc_root, Some(&v2), 43), 0);
        fs::remove_dir_all(&dir).unwrap();
    }
}
