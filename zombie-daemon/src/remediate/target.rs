//! Reading targets from /proc: who the parent of a group of zombies is, what kind of
//! process it is and which pod it belongs to, and which of its zombies /proc confirms.
//!
//! Everything here is decided by facts a tenant cannot set: the parent's identity is the
//! pid *and* start time the tracker recorded (a reused pid is another process), a zombie
//! counts only while /proc shows it in state Z with the same start time under that parent,
//! a kernel thread is told by the kernel's PF_KTHREAD flag (not by an empty argv), and a
//! node component by its executable in the host's mount namespace (not by its comm).

use std::{collections::BTreeMap, path::Path};

use super::{Policy, Target};
use crate::{
    attribution::{self, Owner, names::NameCache},
    diagnosis::Cause,
    snapshot::Entry,
    tracker::{Ns, ProcKey},
    view,
};

/// What remediation reads of one listed zombie: its identity, its parent's, its age and
/// what the diagnosis said of its reaper. Facts from the snapshot, not the `/zombies`
/// object.
#[derive(Clone, Debug, PartialEq)]
pub struct ZombieFacts {
    pub key: ProcKey,
    pub ppid: u32,
    pub parent_start_ticks: u64,
    /// Seconds since its exit, to the millisecond (as `/zombies` shows it).
    pub age_seconds: f64,
    pub cause: Option<Cause>,
    /// Its reaper is the init of its PID namespace.
    pub reaper_is_namespace_init: bool,
}

impl ZombieFacts {
    /// The facts of a snapshot's zombie, aged as of `now`.
    pub fn of(e: &Entry<'_>, now: Ns) -> Self {
        let (r, g) = (e.record, e.group);
        Self {
            key: r.key(),
            ppid: g.key.ppid,
            parent_start_ticks: g.key.parent_start_ticks,
            age_seconds: view::age_seconds(now.saturating_sub(r.exited_at)),
            cause: Some(g.diagnosis.cause),
            reaper_is_namespace_init: g
                .diagnosis
                .reaper
                .as_ref()
                .is_some_and(|r| r.namespace_init),
        }
    }
}

/// At most this many zombies of one parent are confirmed in /proc per look (a stat read
/// each): enough for any threshold, and a bound on the work at a mass leak. A parent with
/// more is reported as having at least this many.
pub const CONFIRM_LIMIT: usize = 1024;

/// Groups zombies by their recorded parent (pid and start time), reads what the guards need
/// from /proc, and counts only the zombies /proc confirms. A parent whose pid now names
/// another process is no target. Takes the zombies one at a time and keeps per parent only
/// their identities (at most what is confirmed per look is useful), so that a table of any
/// size costs memory per parent.
pub fn targets(
    zombies: impl IntoIterator<Item = ZombieFacts>,
    policy: &Policy,
    proc_root: &Path,
    names: Option<&NameCache>,
) -> Vec<Target> {
    struct Group {
        aged: Vec<(u32, u64)>,
        more_aged: usize,
        young: usize,
        first: ZombieFacts,
    }
    let mut by_parent: BTreeMap<(u32, u64), Group> = BTreeMap::new();
    for z in zombies {
        let aged = z.age_seconds >= policy.min_age_seconds;
        let key = (z.key.pid, z.key.start_ticks);
        let e = by_parent
            .entry((z.ppid, z.parent_start_ticks))
            .or_insert_with(|| Group {
                aged: Vec::new(),
                more_aged: 0,
                young: 0,
                first: z,
            });
        if !aged {
            e.young += 1;
        } else if e.aged.len() < 4 * CONFIRM_LIMIT {
            // Some may be reaped by the time they are confirmed: a margin over the limit.
            e.aged.push(key);
        } else {
            e.more_aged += 1;
        }
    }
    by_parent
        .into_iter()
        .filter_map(|((pid, start), g)| {
            let mut t = read_target(proc_root, pid, names)?;
            if t.start_ticks != start {
                return None;
            }
            let confirmed = confirm_zombies(proc_root, pid, &g.aged);
            if confirmed.len() == CONFIRM_LIMIT && g.aged.len() + g.more_aged > CONFIRM_LIMIT {
                crate::bounds::reached(
                    crate::bounds::Bound::RemediationConfirm,
                    &format!(
                        "remediation confirms at most {CONFIRM_LIMIT} zombies per parent per \
                         look; pid {pid} has {}",
                        g.aged.len() + g.more_aged
                    ),
                );
            }
            t.zombies = confirmed.len();
            t.all_zombies = confirmed.len() + g.young;
            t.zombie_keys = confirmed;
            t.cause = g.first.cause;
            t.namespace_init = g.first.reaper_is_namespace_init;
            Some(t)
        })
        .collect()
}

/// The zombies of `keys` that /proc shows now as zombies (state Z) with the same start time
/// and `parent` as their parent; at most [`CONFIRM_LIMIT`].
pub fn confirm_zombies(proc_root: &Path, parent: u32, keys: &[(u32, u64)]) -> Vec<(u32, u64)> {
    keys.iter()
        .copied()
        .filter(|&(pid, start)| {
            ::procfs::process::Process::new_with_root(proc_root.join(pid.to_string()))
                .and_then(|p| p.stat())
                .is_ok_and(|s| s.state == 'Z' && s.starttime == start && s.ppid == parent as i32)
        })
        .take(CONFIRM_LIMIT)
        .collect()
}

const PF_KTHREAD: u32 = 0x0020_0000;

/// A process's identity, kind and pod, from /proc. `None` when it is gone.
pub fn read_target(proc_root: &Path, pid: u32, names: Option<&NameCache>) -> Option<Target> {
    let dir = proc_root.join(pid.to_string());
    let p = ::procfs::process::Process::new_with_root(dir.clone()).ok()?;
    let stat = p.stat().ok()?;
    let exe_path = std::fs::read_link(dir.join("exe")).ok();
    let exe = exe_path
        .as_ref()
        .and_then(|e| e.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    // A one-line file (pure cgroup2) gives the same pick either way; on hybrid nodes the
    // v1 lines name the pod where the cgroup2 line may not.
    let cgroup_path = crate::cgroups::path_of_pid(proc_root, pid, crate::cgroups::Prefer::V1);
    let a = cgroup_path
        .as_deref()
        .map(|path| attribution::attribute_path(path, names));
    let in_pod = a.as_ref().is_some_and(|a| a.owner == Owner::Pod.as_str());
    // The executable's name says what a process is only where a tenant cannot have put
    // it: outside every pod and in the node's own mount namespace.
    let node_component = (!in_pod
        && crate::diagnosis::in_host_mount_namespace(proc_root, pid) == Some(true))
    .then(|| {
        crate::diagnosis::known_runtime(&exe, &[])
            .or_else(|| crate::diagnosis::known_node_agent(&exe, &[]))
    })
    .flatten()
    .map(str::to_string);
    let mut t = Target {
        pid,
        start_ticks: stat.starttime,
        comm: stat.comm.clone(),
        exe,
        // Flags the kernel sets: a tenant cannot pass for a kernel thread with an empty argv.
        kernel_thread: stat.flags & PF_KTHREAD != 0 || stat.ppid == 2 || pid == 2,
        node_component,
        cgroup_path,
        ..Target::default()
    };
    if let Some(a) = a
        && in_pod
    {
        t.in_pod = true;
        t.namespace = a.namespace.clone();
        t.pod = a.pod.clone();
        t.pod_uid = a.pod_uid.clone();
        t.container = a.container.clone();
        t.container_id = a.container_id.clone();
        if let Some(n) = a
            .container_id
            .as_deref()
            .and_then(|id| names.and_then(|c| c.container(id)))
        {
            t.pod_labels = n.pod_labels;
            t.pod_annotations = n.pod_annotations;
        }
    }
    Some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A child that exits and is not waited for: a real zombie of this process.
    fn zombie_child() -> (u32, u64) {
        let child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        std::mem::forget(child);
        let p = ::procfs::process::Process::new(pid as i32).unwrap();
        for _ in 0..500 {
            if p.stat().unwrap().state == 'Z' {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        (pid, p.stat().unwrap().starttime)
    }

    fn reap(pid: u32) {
        // SAFETY: waits for our own child.
        unsafe { libc::waitpid(pid as i32, std::ptr::null_mut(), 0) };
    }

    #[test]
    fn only_zombies_in_state_z_with_the_same_start_and_parent_are_counted() {
        let me = std::process::id();
        let proc_root = Path::new("/proc");
        let (z, start) = zombie_child();
        assert_eq!(confirm_zombies(proc_root, me, &[(z, start)]), [(z, start)]);
        // Another start time (a reused pid), another parent, a live process: not counted.
        assert!(confirm_zombies(proc_root, me, &[(z, start + 1)]).is_empty());
        assert!(confirm_zombies(proc_root, 1, &[(z, start)]).is_empty());
        let my_start = ::procfs::process::Process::myself()
            .unwrap()
            .stat()
            .unwrap()
            .starttime;
        assert!(
            confirm_zombies(
                proc_root,
                std::os::unix::process::parent_id(),
                &[(me, my_start)]
            )
            .is_empty()
        );
        // Reaped: gone from /proc, no longer counted.
        reap(z);
        assert!(confirm_zombies(proc_root, me, &[(z, start)]).is_empty());
    }

    /// The target is the zombie's recorded parent (pid and start time): a pid that now
    /// names another process is no target, and only confirmed zombies count.
    #[test]
    fn the_target_is_the_recorded_parent_and_counts_confirmed_zombies() {
        let me = std::process::id();
        let my_start = ::procfs::process::Process::myself()
            .unwrap()
            .stat()
            .unwrap()
            .starttime;
        let (z, start) = zombie_child();
        let view = |parent_start: u64, pid: u32, start: u64| ZombieFacts {
            key: ProcKey {
                pid,
                start_ticks: start,
            },
            ppid: me,
            parent_start_ticks: parent_start,
            age_seconds: 1000.0,
            cause: None,
            reaper_is_namespace_init: false,
        };
        let policy = Policy::default();
        let proc_root = Path::new("/proc");
        let found = targets([view(my_start, z, start)], &policy, proc_root, None);
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].pid, found[0].start_ticks), (me, my_start));
        assert_eq!(found[0].zombies, 1);
        assert_eq!(found[0].zombie_keys, [(z, start)]);
        // Recorded with another start time: the pid names another process now.
        assert!(targets([view(my_start + 1, z, start)], &policy, proc_root, None).is_empty());
        // A listed zombie /proc does not confirm (reused pid): not counted.
        let found = targets([view(my_start, z, start + 1)], &policy, proc_root, None);
        assert_eq!(found[0].zombies, 0);
        reap(z);
    }

    #[test]
    fn a_process_named_like_kubelet_with_an_empty_argv_is_neither_protected_nor_a_kthread() {
        // Whatever mount namespace this test process runs in, what matters is that its comm
        // and argv play no part: a tenant sets both.
        let me = std::process::id();
        let t = read_target(Path::new("/proc"), me, None).unwrap();
        assert!(!t.kernel_thread);
        let kthreadd = read_target(Path::new("/proc"), 2, None).unwrap();
        assert!(kthreadd.kernel_thread);
    }
}
