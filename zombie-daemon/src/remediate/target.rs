//! Reading targets from /proc: who the parent of a group of zombies is, what kind of
//! process it is and which pod it belongs to.

use std::{collections::BTreeMap, path::Path};

use super::{engine::Target, policy::Policy};
use crate::{
    attribution::{self, Owner, names::NameCache},
    view::ZombieView,
};

/// Groups zombies by their current parent and reads what the guards need from /proc.
/// Takes the zombies one at a time and keeps one per parent, so that a table of any size
/// costs memory per parent, not per zombie.
pub fn targets(
    views: impl IntoIterator<Item = ZombieView>,
    policy: &Policy,
    proc_root: &Path,
    names: Option<&NameCache>,
) -> Vec<Target> {
    let mut by_parent: BTreeMap<u32, (usize, usize, ZombieView)> = BTreeMap::new();
    for z in views {
        let parent = z.reaper.as_ref().map_or(z.ppid, |r| r.pid);
        let old_enough = z.age_seconds >= policy.min_age_seconds;
        let e = by_parent.entry(parent).or_insert((0, 0, z));
        e.1 += 1;
        if old_enough {
            e.0 += 1;
        }
    }
    by_parent
        .into_iter()
        .filter_map(|(pid, (count, all, z))| {
            let mut t = read_target(proc_root, pid, names)?;
            t.zombies = count;
            t.all_zombies = all;
            t.cause = z.cause;
            t.namespace_init = z.reaper.as_ref().is_some_and(|r| r.namespace_init);
            Some(t)
        })
        .collect()
}

const PF_KTHREAD: u32 = 0x0020_0000;

/// A process's identity, kind and pod, from /proc. `None` when it is gone.
pub fn read_target(proc_root: &Path, pid: u32, names: Option<&NameCache>) -> Option<Target> {
    let dir = proc_root.join(pid.to_string());
    let p = ::procfs::process::Process::new_with_root(dir.clone()).ok()?;
    let stat = p.stat().ok()?;
    let cmdline_empty = std::fs::read(dir.join("cmdline")).map_or(true, |c| c.is_empty());
    let exe = std::fs::read_link(dir.join("exe"))
        .ok()
        .and_then(|e| e.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    // A one-line file (pure cgroup2) gives the same pick either way; on hybrid nodes the
    // v1 lines name the pod where the cgroup2 line may not.
    let a = crate::cgroups::path_of_pid(proc_root, pid, crate::cgroups::Prefer::V1)
        .map(|path| attribution::attribute_path(&path, names));
    let mut t = Target {
        pid,
        start_ticks: stat.starttime,
        comm: stat.comm.clone(),
        exe,
        kernel_thread: stat.flags & PF_KTHREAD != 0
            || stat.ppid == 2
            || (pid == 2)
            || (cmdline_empty && stat.state != 'Z'),
        ..Target::default()
    };
    if let Some(a) = a
        && a.owner == Owner::Pod.as_str()
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
