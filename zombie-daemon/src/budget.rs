//! The PID budget: how many PIDs the node and each pod use against their limits.
//!
//! Every thread takes a PID, so the node's use is its task count (not its process count)
//! and its effective limit is the smaller of `kernel.pid_max` and `kernel.threads-max`, as
//! the kubelet computes `pid.available`. A pod's and a container's use is their pids
//! controller's `pids.current` against `pids.max`: a zombie stays charged there until it is
//! reaped, which is how a leak turns into "fork: Resource temporarily unavailable". The
//! moment it does, the controller counts the refused fork in `pids.events` (`max N`, on
//! cgroup v2 and in the v1 pids hierarchy alike).

use std::{fs, path::Path};

use crate::cgroups::pod_cgroups_bounded;

pub use zombie_core::budget::{CgroupBudget, NodeBudget};

/// A one-number file: `pids.current`, `pids.max` (`max`, i.e. unlimited, is `None`),
/// `kernel.pid_max`, `kernel.threads-max`.
pub fn parse_u64(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// The `max` count of a `pids.events` file: forks refused because this cgroup's
/// `pids.max` (or an ancestor's) was reached. Other keys (`max.imposed` on newer kernels)
/// are not it.
pub fn parse_pids_events(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (key, value) = l.split_once(char::is_whitespace)?;
        (key == "max").then(|| parse_u64(value)).flatten()
    })
}

fn read_u64(path: &Path) -> Option<u64> {
    parse_u64(&fs::read_to_string(path).ok()?)
}

/// The task count of a `/proc/loadavg` (its fourth field is running/total tasks).
/// (`procfs::LoadAverage` has it too, but as a u32, and fails unless every field parses.)
pub fn parse_loadavg_tasks(text: &str) -> Option<u64> {
    text.split_whitespace()
        .nth(3)?
        .split('/')
        .nth(1)?
        .parse()
        .ok()
}

/// From `<proc>/loadavg` and the two sysctls.
pub fn node(proc_root: &Path) -> Option<NodeBudget> {
    let used = parse_loadavg_tasks(&fs::read_to_string(proc_root.join("loadavg")).ok()?)?;
    let pid_max = read_u64(&proc_root.join("sys/kernel/pid_max"))?;
    let limit =
        read_u64(&proc_root.join("sys/kernel/threads-max")).map_or(pid_max, |t| t.min(pid_max));
    Some(NodeBudget { used, limit })
}

/// Bound on cgroups read per scrape.
const MAX_CGROUPS: usize = 20_000;

/// Every pod and container cgroup under the pids hierarchy (see
/// [`crate::cgroups::pids_root`]) with its use and limit.
pub fn pods(pids_root: &Path) -> Vec<CgroupBudget> {
    let (cgroups, cut) = pod_cgroups_bounded(pids_root, MAX_CGROUPS);
    if cut {
        crate::bounds::reached(
            crate::bounds::Bound::BudgetWalk,
            &format!(
                "the PID budget read the first {MAX_CGROUPS} cgroup directories only; pods \
                 beyond them have no zombie_pod_pids_* series this time"
            ),
        );
    }
    cgroups
        .into_iter()
        .filter_map(|c| {
            let uid = c.info.pod_uid?;
            let current = read_u64(&c.dir.join("pids.current"))?;
            let max = fs::read_to_string(c.dir.join("pids.max"))
                .ok()
                .and_then(|m| parse_u64(&m));
            let max_events = fs::read_to_string(c.dir.join("pids.events"))
                .ok()
                .and_then(|e| parse_pids_events(&e));
            Some(CgroupBudget {
                path: c.path,
                pod_uid: uid,
                container_id: c.info.container_id,
                current,
                max,
                max_events,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_files() {
        assert_eq!(
            parse_loadavg_tasks("0.52 0.58 0.59 3/1210 123456\n"),
            Some(1210)
        );
        assert_eq!(parse_loadavg_tasks("0.52 0.58 0.59 3\n"), None);
        assert_eq!(parse_loadavg_tasks("0.52 0.58\n"), None);
        assert_eq!(parse_u64("4194304\n"), Some(4_194_304));
        assert_eq!(parse_u64("max\n"), None);
        assert_eq!(parse_u64(""), None);
        assert_eq!(parse_u64("-1"), None);
        assert_eq!(parse_pids_events("max 0\n"), Some(0));
        assert_eq!(parse_pids_events("max 17\nmax.imposed 3\n"), Some(17));
        assert_eq!(parse_pids_events("max.imposed 3\nmax 4\n"), Some(4));
        assert_eq!(parse_pids_events("max.imposed 3\n"), None);
        assert_eq!(parse_pids_events("max x\n"), None);
        assert_eq!(parse_pids_events(""), None);
    }

    #[test]
    fn node_budget_of_this_machine() {
        let b = node(Path::new("/proc")).unwrap();
        assert!(b.used > 10 && b.used < b.limit, "{b:?}");
        assert!(b.limit <= read_u64(Path::new("/proc/sys/kernel/pid_max")).unwrap());
        assert_eq!(node(Path::new("/nonexistent")), None);
    }

    #[test]
    fn walks_a_pids_tree() {
        let root = std::env::temp_dir().join(format!("zombie-budget-{}", std::process::id()));
        let uid = "11111111-2222-3333-4444-555555555555";
        let pod = root.join(format!("kubepods/burstable/pod{uid}"));
        let ctr = pod.join("c".repeat(64));
        fs::create_dir_all(&ctr).unwrap();
        fs::create_dir_all(root.join("system.slice/foo.service")).unwrap();
        fs::write(pod.join("pids.current"), "7\n").unwrap();
        fs::write(pod.join("pids.max"), "max\n").unwrap();
        fs::write(ctr.join("pids.current"), "5\n").unwrap();
        fs::write(ctr.join("pids.max"), "100\n").unwrap();
        fs::write(ctr.join("pids.events"), "max 3\n").unwrap();
        let mut got = pods(&root);
        got.sort_by(|a, b| a.path.cmp(&b.path));
        fs::remove_dir_all(&root).unwrap();
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(
            (got[0].current, got[0].max, got[0].container_id.is_none()),
            (7, None, true)
        );
        assert_eq!((got[1].current, got[1].max), (5, Some(100)));
        assert_eq!((got[0].max_events, got[1].max_events), (None, Some(3)));
        assert_eq!(got[1].pod_uid, uid);
    }
}
