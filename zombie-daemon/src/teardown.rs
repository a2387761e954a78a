//! A PID namespace stuck in teardown (kubernetes#66892, containerd#11133).
//!
//! When a PID namespace's init exits, the kernel (`zap_pid_ns_processes`) SIGKILLs every
//! other member and the init waits, still exiting, until all of them are gone: first in
//! `kernel_wait4` for its own children, then until the namespace's last pid is freed. A
//! member that cannot die holds it there: one in uninterruptible sleep or in a frozen v1
//! cgroup, or a zombie whose parent is outside the namespace (a process that joined it with
//! `setns` and forked into it, as runtimes do for exec sessions) and does not reap it. The
//! init never becomes a zombie, its container never stops, the pod hangs in Terminating.
//!
//! In /proc such an init is a task with `PF_EXITING` in its flags that is not a zombie yet
//! (or a zombie thread-group leader whose last thread is the one waiting: a multithreaded
//! init whose main thread exited first), whose innermost `NSpid` is 1, and whose PID
//! namespace (`ns/pid`) still has other members.
//! Its cgroup no longer lists it (`cgroup.procs` skips exiting tasks) while the pids
//! controller still charges it: [`worth_a_scan`] is that cheap hint, [`scan`] the /proc
//! pass it triggers, [`judge`] the pure verdict.

use std::{fs, path::Path};

pub use zombie_core::teardown::{Member, Teardown};

/// PF_EXITING in /proc/<pid>/stat's flags.
const PF_EXITING: u32 = 0x4;

/// What the check needs of one task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskFacts {
    pub pid: u32,
    pub ppid: u32,
    pub comm: String,
    /// /proc state letter.
    pub state: char,
    /// PF_EXITING is set: it is in do_exit.
    pub exiting: bool,
    /// Threads of its group other than the leader that are exiting too (counted only for a
    /// zombie leader: its group is exiting, not merely without its main thread).
    pub threads: u64,
    /// Its pid in its innermost PID namespace.
    pub ns_pid: Option<u32>,
    /// How many PID namespaces it is in (1: the host's only).
    pub ns_depth: usize,
    /// Its PID namespace (`ns/pid` link, e.g. `pid:[4026532]`).
    pub pid_ns: Option<String>,
}

impl TaskFacts {
    /// An init of a PID namespace below the host's, in do_exit and not done: not a zombie
    /// yet, or a zombie leader whose other threads are still exiting. (A normal exit passes
    /// through this state for a moment; only one that stays is stuck.)
    pub fn is_exiting_namespace_init(&self) -> bool {
        self.exiting
            && still_exiting(self.state, self.threads)
            && self.ns_pid == Some(1)
            && self.ns_depth > 1
    }
}

/// Not done exiting: not a zombie, or a zombie leader with exiting threads left.
fn still_exiting(state: char, exiting_threads: u64) -> bool {
    state != 'Z' || exiting_threads > 0
}

/// The threads of `pid` other than the leader that are in do_exit and not dead yet.
fn exiting_threads(proc_dir: &Path, pid: u32) -> u64 {
    let Ok(tasks) =
        ::procfs::process::Process::new_with_root(proc_dir.to_path_buf()).and_then(|p| p.tasks())
    else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|t| t.tid as u32 != pid)
        .filter_map(|t| t.stat().ok())
        .filter(|s| s.flags & PF_EXITING != 0 && !matches!(s.state, 'Z' | 'X'))
        .count() as u64
}

/// A cgroup charges more tasks (`pids.current`) than it lists live ones, and no live init of
/// its processes' PID namespace is seen (neither among them nor, for a pod's shared
/// namespace, in another container): its init may be exiting. Zombies also make the counts
/// differ, so this only decides whether [`scan`] is worth its /proc pass.
pub fn worth_a_scan(pids_current: u64, live_tasks: usize, namespace_init_alive: bool) -> bool {
    !namespace_init_alive && pids_current > live_tasks as u64
}

/// The verdict on an exiting namespace init and the other tasks of its namespace: `None`
/// when it is not an exiting namespace init or has no members left (it is about to finish).
pub fn judge(init: &TaskFacts, wchan: Option<String>, others: &[TaskFacts]) -> Option<Teardown> {
    if !init.is_exiting_namespace_init() || init.pid_ns.is_none() {
        return None;
    }
    let in_ns = |t: &TaskFacts| t.pid_ns.is_some() && t.pid_ns == init.pid_ns;
    let members: Vec<Member> = others
        .iter()
        .filter(|t| t.pid != init.pid && in_ns(t))
        .map(|t| Member {
            pid: t.pid,
            comm: t.comm.clone(),
            state: t.state.to_string(),
            ppid: t.ppid,
            parent_outside_namespace: t.ppid != init.pid
                && !others.iter().any(|p| p.pid == t.ppid && in_ns(p)),
        })
        .collect();
    if members.is_empty() {
        return None;
    }
    let mut t = Teardown {
        init_pid: init.pid,
        init_comm: init.comm.clone(),
        init_state: init.state.to_string(),
        init_wchan: wchan.filter(|w| !w.is_empty() && w != "0"),
        members,
        remedy: String::new(),
    };
    t.remedy = remedy(&t, others);
    Some(t)
}

/// What holds the namespace and what to do, in words.
fn remedy(t: &Teardown, all: &[TaskFacts]) -> String {
    let mut out = format!(
        "the PID namespace's init {} (pid {}) has exited and waits for {} member(s) that do \
         not die, so its container cannot stop and the pod hangs in Terminating \
         (kubernetes#66892, containerd#11133)",
        t.init_comm,
        t.init_pid,
        t.members.len()
    );
    let mut outside: Vec<(u32, Vec<u32>)> = Vec::new();
    for m in t
        .members
        .iter()
        .filter(|m| m.state == "Z" && m.parent_outside_namespace)
    {
        match outside.iter_mut().find(|(p, _)| *p == m.ppid) {
            Some((_, kids)) => kids.push(m.pid),
            None => outside.push((m.ppid, vec![m.pid])),
        }
    }
    for (parent, kids) in &outside {
        let comm = all
            .iter()
            .find(|p| p.pid == *parent)
            .map_or("?", |p| p.comm.as_str());
        out.push_str(&format!(
            "; zombie(s) {kids:?} were forked into the namespace from outside by {comm} (pid \
             {parent}), which does not reap them: it must wait() for them or exit"
        ));
    }
    let stuck: Vec<u32> = t
        .members
        .iter()
        .filter(|m| m.state == "D")
        .map(|m| m.pid)
        .collect();
    if !stuck.is_empty() {
        out.push_str(&format!(
            "; {stuck:?} are in uninterruptible sleep or frozen: they die once their I/O \
             completes (a hung NFS or FUSE mount, a device) or their cgroup is thawed \
             (freezer.state THAWED, cgroup.freeze 0)"
        ));
    }
    if outside.is_empty() && stuck.is_empty() {
        out.push_str(
            "; look at what the members are doing (/proc/<pid>/stack, wchan): the kernel \
             has sent them SIGKILL",
        );
    }
    out
}

/// One task's facts from /proc; `None` when it is gone.
pub fn read_task(proc_root: &Path, pid: u32) -> Option<TaskFacts> {
    let dir = proc_root.join(pid.to_string());
    let stat = ::procfs::process::Process::new_with_root(dir.clone())
        .ok()?
        .stat()
        .ok()?;
    let nspid = crate::proc_scan::read_status(&dir).and_then(|s| s.nspid);
    Some(TaskFacts {
        pid,
        ppid: stat.ppid.max(0) as u32,
        comm: stat.comm,
        state: stat.state,
        exiting: stat.flags & PF_EXITING != 0,
        threads: if stat.state == 'Z' && stat.num_threads > 1 {
            exiting_threads(&dir, pid)
        } else {
            0
        },
        ns_pid: nspid.as_ref().and_then(|v| v.last()).map(|p| *p as u32),
        ns_depth: nspid.as_ref().map_or(1, Vec::len),
        pid_ns: pid_ns(&dir),
    })
}

/// Where a thread group waits: the first of its threads that shows a wait channel (the
/// waiting thread of a multithreaded init need not be the leader).
fn wchan(proc_root: &Path, pid: u32) -> Option<String> {
    let tasks = fs::read_dir(proc_root.join(pid.to_string()).join("task")).ok()?;
    tasks
        .flatten()
        .filter_map(|t| fs::read_to_string(t.path().join("wchan")).ok())
        .find(|w| !w.is_empty() && w != "0")
}

fn pid_ns(proc_dir: &Path) -> Option<String> {
    fs::read_link(proc_dir.join("ns/pid"))
        .ok()
        .map(|l| l.to_string_lossy().into_owned())
}

fn pids(proc_root: &Path) -> Vec<u32> {
    fs::read_dir(proc_root)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Every PID namespace stuck in teardown on the node, with the init's pid. One pass over
/// /proc's stat files; the namespaces of all tasks are read only when an exiting init is
/// found.
pub fn scan(proc_root: &Path) -> Vec<Teardown> {
    let all = pids(proc_root);
    let inits: Vec<TaskFacts> = all
        .iter()
        .filter(|pid| {
            ::procfs::process::Process::new_with_root(proc_root.join(pid.to_string()))
                .and_then(|p| p.stat())
                // A zombie leader counts itself among its threads while others are left.
                .is_ok_and(|s| s.flags & PF_EXITING != 0 && (s.state != 'Z' || s.num_threads > 1))
        })
        .filter_map(|pid| read_task(proc_root, *pid))
        .filter(TaskFacts::is_exiting_namespace_init)
        .collect();
    if inits.is_empty() {
        return Vec::new();
    }
    let wanted: Vec<&String> = inits.iter().filter_map(|i| i.pid_ns.as_ref()).collect();
    let others: Vec<TaskFacts> = all
        .iter()
        .filter(|pid| {
            pid_ns(&proc_root.join(pid.to_string())).is_some_and(|n| wanted.contains(&&n))
        })
        .filter_map(|pid| read_task(proc_root, *pid))
        .collect();
    // Parents outside the namespace are named in the remedy.
    let parents: Vec<TaskFacts> = others
        .iter()
        .map(|t| t.ppid)
        .filter(|pp| !others.iter().any(|t| t.pid == *pp))
        .filter_map(|pp| read_task(proc_root, pp))
        .collect();
    let known: Vec<TaskFacts> = others.into_iter().chain(parents).collect();
    inits
        .iter()
        .filter_map(|i| judge(i, wchan(proc_root, i.pid), &known))
        .map(|mut t| {
            // A reaper outside that is frozen would reap once thawed: say that, not "it
            // must wait()" alone. A cgroup v2 freezer (cgroup.freeze) lets SIGKILL through,
            // so there the frozen one is the reaper rather than the member.
            let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
            let mut frozen: Vec<u32> = Vec::new();
            for m in t.members.iter().filter(|m| m.parent_outside_namespace) {
                if !frozen.contains(&m.ppid) && is_frozen(proc_root, m.ppid, &mounts) {
                    frozen.push(m.ppid);
                }
            }
            t.remedy.push_str(&frozen_reapers_remedy(&frozen));
            t
        })
        .collect()
}

/// Whether `pid` sits in a frozen cgroup: cgroup2's `cgroup.events` says `frozen 1`
/// (`cgroup.freeze`, set there or on an ancestor), or the v1 freezer's `freezer.state` is
/// FROZEN; the hierarchies are those of `mounts` (a /proc/self/mounts). A frozen task's
/// wait channel says nothing of it (`get_signal` for the v2 freezer).
pub fn is_frozen(proc_root: &Path, pid: u32, mounts: &str) -> bool {
    let Ok(text) = fs::read_to_string(proc_root.join(pid.to_string()).join("cgroup")) else {
        return false;
    };
    let mount_points = |fstype: &str, option: Option<&str>| -> Vec<String> {
        mounts
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let ok = f.len() > 3
                    && f[2] == fstype
                    && option.is_none_or(|o| f[3].split(',').any(|x| x == o));
                ok.then(|| f[1].to_string())
            })
            .collect()
    };
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (id, controllers, path) = (f.next(), f.next(), f.next());
        let Some(path) = path.and_then(crate::cgroups::proc_file::node_view) else {
            continue;
        };
        let rel = path.trim_start_matches('/');
        let found = if id == Some("0") && controllers == Some("") {
            mount_points("cgroup2", None).iter().any(|m| {
                fs::read_to_string(Path::new(m).join(rel).join("cgroup.events"))
                    .is_ok_and(|e| e.lines().any(|l| l == "frozen 1"))
            })
        } else if controllers.is_some_and(|c| c.split(',').any(|c| c == "freezer")) {
            mount_points("cgroup", Some("freezer")).iter().any(|m| {
                fs::read_to_string(Path::new(m).join(rel).join("freezer.state"))
                    .is_ok_and(|s| s.trim() == "FROZEN")
            })
        } else {
            false
        };
        if found {
            return true;
        }
    }
    false
}

/// The words for reapers outside the namespace that are frozen.
fn frozen_reapers_remedy(frozen: &[u32]) -> String {
    frozen
        .iter()
        .map(|pid| {
            format!(
                "; pid {pid} is frozen: it cannot reap until its cgroup is thawed \
                 (cgroup.freeze 0, freezer.state THAWED)"
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(pid: u32, ppid: u32, comm: &str, state: char, ns: &str, ns_pid: u32) -> TaskFacts {
        TaskFacts {
            pid,
            ppid,
            comm: comm.into(),
            state,
            exiting: false,
            threads: 0,
            ns_pid: Some(ns_pid),
            ns_depth: if ns == "host" { 1 } else { 2 },
            pid_ns: Some(format!("pid:[{ns}]")),
        }
    }

    fn exiting_init(pid: u32) -> TaskFacts {
        TaskFacts {
            exiting: true,
            ..task(pid, 90, "sleep", 'S', "42", 1)
        }
    }

    #[test]
    fn frozen_reapers_are_named_with_their_thaw() {
        assert_eq!(frozen_reapers_remedy(&[]), "");
        let r = frozen_reapers_remedy(&[7]);
        assert!(
            r.contains("pid 7 is frozen") && r.contains("cgroup.freeze 0"),
            "{r}"
        );
        // This process is not frozen; a missing one is not either.
        let mounts = fs::read_to_string("/proc/self/mounts").unwrap();
        assert!(!is_frozen(Path::new("/proc"), std::process::id(), &mounts));
        assert!(!is_frozen(Path::new("/nonexistent"), 1, &mounts));
    }

    #[test]
    fn an_exiting_init_held_by_a_zombie_forked_in_from_outside() {
        let init = exiting_init(100);
        let others = vec![
            task(101, 200, "sh", 'Z', "42", 2),
            task(102, 200, "sh", 'Z', "42", 3),
            task(200, 1, "exec-shim", 'S', "host", 200),
            task(300, 1, "bystander", 'S', "7", 1),
        ];
        let t = judge(&init, Some("zap_pid_ns_processes".into()), &others).unwrap();
        assert_eq!(t.init_pid, 100);
        assert_eq!(t.init_wchan.as_deref(), Some("zap_pid_ns_processes"));
        let pids: Vec<u32> = t.members.iter().map(|m| m.pid).collect();
        assert_eq!(pids, [101, 102]);
        assert!(t.members.iter().all(|m| m.parent_outside_namespace));
        assert!(t.remedy.contains("2 member(s)"), "{}", t.remedy);
        assert!(
            t.remedy.contains("[101, 102]") && t.remedy.contains("exec-shim (pid 200)"),
            "{}",
            t.remedy
        );
    }

    #[test]
    fn an_exiting_init_held_by_a_member_in_d_state() {
        let init = exiting_init(100);
        let others = vec![task(101, 100, "fuse-reader", 'D', "42", 2)];
        let t = judge(&init, Some("do_wait".into()), &others).unwrap();
        assert!(!t.members[0].parent_outside_namespace);
        assert!(
            t.remedy
                .contains("[101] are in uninterruptible sleep or frozen")
        );
        let odd = vec![task(101, 100, "spinner", 'R', "42", 2)];
        let t = judge(&init, Some("0".into()), &odd).unwrap();
        assert_eq!(t.init_wchan, None);
        assert!(t.remedy.contains("SIGKILL"), "{}", t.remedy);
    }

    #[test]
    fn no_verdict_without_an_exiting_namespace_init_or_members() {
        let member = task(101, 100, "sh", 'Z', "42", 2);
        // A live init, a zombie init, an exiting process that is not an init, the host's
        // init: nothing to say.
        let live = task(100, 90, "sleep", 'S', "42", 1);
        let zombie = TaskFacts {
            state: 'Z',
            threads: 0,
            ..exiting_init(100)
        };
        let not_init = TaskFacts {
            ns_pid: Some(5),
            ..exiting_init(100)
        };
        let host = TaskFacts {
            ns_depth: 1,
            ..exiting_init(1)
        };
        for init in [live, zombie, not_init, host] {
            assert_eq!(
                judge(&init, None, std::slice::from_ref(&member)),
                None,
                "{init:?}"
            );
        }
        // An exiting init whose members are all gone is about to finish.
        let bystander = task(300, 1, "other", 'S', "7", 2);
        assert_eq!(judge(&exiting_init(100), None, &[bystander]), None);
    }

    #[test]
    fn a_zombie_leader_whose_last_thread_waits_is_an_exiting_init() {
        let leader = TaskFacts {
            state: 'Z',
            threads: 1,
            ..exiting_init(100)
        };
        let member = task(101, 200, "sh", 'Z', "42", 2);
        let t = judge(&leader, Some("zap_pid_ns_processes".into()), &[member]).unwrap();
        assert_eq!((t.init_state.as_str(), t.members.len()), ("Z", 1));
    }

    #[test]
    fn the_hint_needs_charged_tasks_beyond_the_live_ones_and_no_live_init() {
        assert!(worth_a_scan(2, 0, false));
        assert!(worth_a_scan(3, 2, false));
        assert!(!worth_a_scan(2, 2, false));
        assert!(!worth_a_scan(5, 1, true));
        assert!(!worth_a_scan(0, 0, false));
    }

    #[test]
    fn reads_this_process_and_finds_nothing_stuck_here() {
        let me = read_task(Path::new("/proc"), std::process::id()).unwrap();
        assert!(!me.exiting && me.pid_ns.is_some() && me.ns_pid.is_some());
        assert!(read_task(Path::new("/proc"), u32::MAX - 1).is_none());
        assert!(scan(Path::new("/nonexistent")).is_empty());
    }
}
