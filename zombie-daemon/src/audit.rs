//! The init audit: for every container, what its PID 1 is and whether it will reap orphans
//! and stop on SIGTERM — before zombies pile up.
//!
//! A container's PID 1 is the init of its PID namespace. The kernel delivers a signal from
//! outside to a namespace's init only if it has a handler for it (SIGKILL aside), so a PID 1
//! that neither catches nor ignores SIGTERM is only stopped by SIGKILL after the grace
//! period. It reaps orphans only if it is an init or handles SIGCHLD.
//!
//! In a pod with a shared PID namespace the pause process is PID 1; when a container's main
//! process exits, the processes it started are handed to pause and live on in the
//! container's cgroup, keeping it from stopping. They are reported as `leftover_pids`.

use std::path::Path;

pub use zombie_core::audit::{ContainerAudit, labels};

use crate::{
    cgroups::{PodCgroup, Prefer, cgroup_procs, path_of_pid, pod_cgroups_bounded},
    diagnosis::{Disposition, ReaperKind},
    teardown,
};

struct Proc {
    pid: u32,
    ppid: u32,
    start: u64,
    ns_pid: Option<u32>,
    /// The PID namespaces it is in, outermost first (`NSpid`): one means the reader's own,
    /// the node's (the daemon runs with the host's PIDs).
    ns_depth: usize,
}

fn read_proc(proc_root: &Path, pid: u32) -> Option<Proc> {
    let dir = proc_root.join(pid.to_string());
    let p = ::procfs::process::Process::new_with_root(dir.clone()).ok()?;
    let stat = p.stat().ok()?;
    if stat.state == 'Z' {
        return None;
    }
    let status = crate::proc_scan::read_status(&dir)?;
    Some(Proc {
        pid,
        ppid: stat.ppid.max(0) as u32,
        start: stat.starttime,
        ns_depth: status.nspid.as_ref().map_or(0, |v| v.len()),
        ns_pid: status
            .nspid
            .and_then(|v| v.last().copied())
            .map(|p| p as u32),
    })
}

/// Audits every container on the node.
/// Bound on the cgroup directories one audit walks (every container of a full node is a
/// few per container).
pub const MAX_AUDIT_DIRS: usize = 20_000;

/// Audits every container on the node (those in the first [`MAX_AUDIT_DIRS`] cgroup
/// directories; reaching the bound is counted and logged).
pub fn audit(proc_root: &Path, hierarchy: &Path) -> Vec<ContainerAudit> {
    let (found, cut) = pod_cgroups_bounded(hierarchy, MAX_AUDIT_DIRS);
    if cut {
        crate::bounds::reached(
            crate::bounds::Bound::AuditWalk,
            &format!(
                "the init audit walked the first {MAX_AUDIT_DIRS} cgroup directories only; \
                 containers beyond them are not audited this time"
            ),
        );
    }
    let mut containers: Vec<PodCgroup> = found
        .into_iter()
        .filter(|c| c.info.container_id.is_some() && !c.info.is_conmon)
        .collect();
    containers.sort_by(|a, b| (&a.path, &a.dir).cmp(&(&b.path, &b.dir)));
    let injected = crate::prevention::injected_init(proc_root);
    let (mut audits, facts): (Vec<ContainerAudit>, Vec<NsFacts>) = containers
        .iter()
        .map(|c| audit_one(proc_root, c, injected))
        .unzip();
    // The /proc pass for stuck namespaces runs only when a cgroup hints at an exiting init:
    // it charges tasks it does not list as live, and no live init of its processes' PID
    // namespace is seen (in a pod's shared namespace, the init is the sandbox's).
    let pid_ns = |pid: u32| std::fs::read_link(proc_root.join(pid.to_string()).join("ns/pid")).ok();
    let candidates = facts
        .iter()
        .any(|f| teardown::worth_a_scan(f.pids_current, f.live_tasks, f.own_init));
    // The host's namespace (of /proc's pid 1, or ours when that is hidden) counts as alive:
    // hostPID containers are in it.
    let live_inits: Vec<std::path::PathBuf> = if candidates {
        audits
            .iter()
            .zip(&facts)
            .filter(|(_, f)| f.own_init)
            .filter_map(|(a, _)| pid_ns(a.pid1?))
            .chain(pid_ns(1))
            .chain(std::fs::read_link("/proc/self/ns/pid").ok())
            .collect()
    } else {
        Vec::new()
    };
    let hints: Vec<bool> = facts
        .iter()
        .map(|f| {
            let init_alive = f.own_init
                || f.member
                    .and_then(pid_ns)
                    .is_some_and(|ns| live_inits.contains(&ns));
            teardown::worth_a_scan(f.pids_current, f.live_tasks, init_alive)
        })
        .collect();
    if hints.contains(&true) {
        for t in teardown::scan(proc_root) {
            let path = cgroup_of(proc_root, t.init_pid);
            if let Some(a) = audits
                .iter_mut()
                .zip(&hints)
                .find(|(a, hint)| **hint && a.cgroup_path == path)
                .map(|(a, _)| a)
            {
                a.pid_namespace_teardown = Some(t);
                a.verdict = verdict(a);
            }
        }
    }
    audits
}

/// The tasks a cgroup lists as live (`cgroup.threads` on cgroup2, `tasks` on v1).
fn live_tasks(dir: &Path) -> usize {
    ["cgroup.threads", "tasks"]
        .iter()
        .find_map(|f| std::fs::read_to_string(dir.join(f)).ok())
        .map_or(0, |t| crate::cgroups::parse_cgroup_procs(&t).len())
}

/// What a container's cgroup says about its PID namespace's init.
struct NsFacts {
    /// Tasks charged to it (`pids.current`; 0 when unreadable) and the live ones it lists.
    pids_current: u64,
    live_tasks: usize,
    /// One of its live processes is its PID namespace's init.
    own_init: bool,
    /// A live process of it, when none is an init.
    member: Option<u32>,
}

/// The audit of one container, and what its cgroup says about its namespace's init.
fn audit_one(
    proc_root: &Path,
    cgroup: &PodCgroup,
    injected: Option<crate::prevention::FileId>,
) -> (ContainerAudit, NsFacts) {
    let (rel, info) = (cgroup.path.as_str(), &cgroup.info);
    let pod_uid = info.pod_uid.clone().unwrap_or_default();
    let procs: Vec<Proc> = cgroup_procs(&cgroup.dir)
        .into_iter()
        .filter_map(|p| read_proc(proc_root, p))
        .collect();
    let main = procs
        .iter()
        .find(|p| p.ns_pid == Some(1))
        .or_else(|| procs.iter().min_by_key(|p| (p.start, p.pid)));
    // A kernel fact: NSpid lists one pid when the process is in the node's PID namespace.
    let host_pid_namespace = !procs.is_empty() && procs.iter().all(|p| p.ns_depth == 1);
    let shared =
        !procs.is_empty() && !host_pid_namespace && !procs.iter().any(|p| p.ns_pid == Some(1));
    let own_init = procs.iter().any(|p| p.ns_pid == Some(1));
    let ns = NsFacts {
        pids_current: std::fs::read_to_string(cgroup.dir.join("pids.current"))
            .ok()
            .and_then(|c| crate::budget::parse_u64(&c))
            .unwrap_or(0),
        live_tasks: live_tasks(&cgroup.dir),
        own_init,
        member: (!own_init).then(|| procs.first().map(|p| p.pid)).flatten(),
    };

    // Processes of this container whose parent is in another container of the same pod
    // (the pause process of a shared PID namespace): their starter exited.
    let pod_dir = rel.rsplit_once('/').map_or("", |(d, _)| d);
    let pids: Vec<u32> = procs.iter().map(|p| p.pid).collect();
    let leftover_pids: Vec<u32> = if shared {
        let parent_outside_pod = procs
            .iter()
            .any(|p| !pids.contains(&p.ppid) && !cgroup_of(proc_root, p.ppid).starts_with(pod_dir));
        if parent_outside_pod {
            Vec::new()
        } else {
            procs
                .iter()
                .filter(|p| !pids.contains(&p.ppid))
                .map(|p| p.pid)
                .collect()
        }
    } else {
        Vec::new()
    };

    let facts = main.and_then(|m| crate::diagnosis::read_reaper_facts(proc_root, m.pid));
    let injected_init = injected.zip(main).is_some_and(|(id, m)| {
        m.ns_pid == Some(1) && crate::prevention::runs_init(proc_root, m.pid, id)
    });
    let mut a = ContainerAudit {
        pod_uid,
        container_id: info.container_id.clone().unwrap_or_default(),
        namespace: None,
        pod: None,
        container: None,
        cgroup_path: rel.to_string(),
        pid1: facts.as_ref().map(|f| f.pid),
        pid1_comm: facts.as_ref().map(|f| f.comm.clone()),
        pid1_exe: facts
            .as_ref()
            .map(|f| f.exe.clone())
            .filter(|e| !e.is_empty()),
        pid1_cmdline: facts.as_ref().map(|f| f.cmdline.join(" ")),
        // The injected init's comm is its mount point's name: the fact decides.
        kind: facts.as_ref().map(|f| {
            if injected_init {
                ReaperKind::Init
            } else {
                f.kind()
            }
        }),
        init: if injected_init {
            Some(crate::diagnosis::INJECTED_INIT.to_string())
        } else {
            facts
                .as_ref()
                .and_then(|f| f.init_name().map(str::to_string))
        },
        reaps: false,
        sigchld: facts.as_ref().map(|f| f.sigchld),
        sigterm: facts.as_ref().map(|f| f.sigterm),
        handles_sigterm: false,
        shell: facts
            .as_ref()
            .is_some_and(|f| f.kind() == ReaperKind::Shell),
        shared_pid_namespace: shared,
        host_pid_namespace,
        sandbox: false,
        leftover_pids,
        injected_init,
        verdict: String::new(),
        pid_namespace_teardown: None,
    };
    a.reaps = a.init.is_some() || a.sigchld.is_some_and(|d| d != Disposition::Default);
    // Known inits forward SIGTERM. tini and catatonit collect signals with sigtimedwait,
    // which unblocks them while it waits, so /proc shows neither a handler nor a block.
    a.handles_sigterm = a.init.is_some() || a.sigterm.is_some_and(Disposition::handled);
    a.verdict = verdict(&a);
    (a, ns)
}

/// Redacts every PID 1's command line to its program (see [`crate::redact::command_line`]),
/// unless `show`. The audit reads full command lines: known inits are found by argv[0].
pub fn redact(audits: &mut [ContainerAudit], show: bool) {
    if show {
        return;
    }
    for a in audits {
        if let Some(c) = a.pid1_cmdline.as_mut() {
            *c = crate::redact::joined_command_line(c, false);
        }
    }
}

/// Fills in the runtime's names.
pub fn name(audits: &mut [ContainerAudit], attributor: &mut crate::attributor::Attributor) {
    for a in audits {
        let at = attributor.for_path(&a.cgroup_path);
        a.namespace = at.namespace.clone();
        a.pod = at.pod.clone();
        a.container = at.container.clone();
        a.sandbox = at.sandbox;
    }
}

/// `namespace`, `pod`, `container` label values, as the zombie series have them (every
/// audited container is in a pod).
fn cgroup_of(proc_root: &Path, pid: u32) -> String {
    path_of_pid(proc_root, pid, Prefer::V2).unwrap_or_default()
}

/// The problems of a container's init in words, or "ok".
pub fn verdict(a: &ContainerAudit) -> String {
    let mut problems: Vec<String> = Vec::new();
    if let Some(t) = &a.pid_namespace_teardown {
        problems.push(format!(
            "its PID namespace is stuck in teardown: {}",
            t.remedy
        ));
    }
    if a.pid1.is_none() {
        problems.push("no live process".into());
        return problems.join("; ");
    }
    // In the node's PID namespace orphans go to the node's init, and the container's main
    // process is no namespace's init: neither problem below is its.
    if !a.shared_pid_namespace && !a.host_pid_namespace {
        if !a.reaps {
            problems.push(
                "PID 1 does not reap orphans (not an init, SIGCHLD not handled): run the pod \
                 with runtimeClassName: zombie-init"
                    .into(),
            );
        }
        if !a.handles_sigterm && a.init.is_none() {
            problems.push(
                "PID 1 does not handle SIGTERM: it is stopped only by SIGKILL after the grace period"
                    .into(),
            );
        }
        if a.shell {
            problems.push(
                "a shell is PID 1: it does not forward signals to the application (`exec` it, \
                 or run the pod with runtimeClassName: zombie-init)"
                    .into(),
            );
        }
    }
    if !a.leftover_pids.is_empty() {
        problems.push(
            "its main process exited but processes it started live on (handed to the pod's \
             init): they keep the container from stopping"
                .into(),
        );
    }
    if problems.is_empty() {
        "ok".into()
    } else {
        problems.join("; ")
    }
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

/// The audit as `zombie-daemon audit` prints it.
pub fn table(audits: &[ContainerAudit]) -> String {
    let mut rows: Vec<[String; 8]> = vec![[
        "NAMESPACE/POD".into(),
        "CONTAINER".into(),
        "PID1".into(),
        "KIND".into(),
        "REAPS".into(),
        "SIGTERM".into(),
        "SHARED-PID".into(),
        "VERDICT".into(),
    ]];
    for a in audits {
        let crate::attribution::Labels {
            namespace: ns,
            pod,
            container,
        } = labels(a);
        let pod = if ns.is_empty() {
            pod
        } else {
            format!("{ns}/{pod}")
        };
        rows.push([
            pod,
            container.chars().take(20).collect(),
            a.pid1_comm.clone().unwrap_or_else(|| "-".into()),
            match a.kind {
                Some(ReaperKind::Init) => a.init.clone().unwrap_or_else(|| "init".into()),
                Some(ReaperKind::Shell) => "shell".into(),
                Some(ReaperKind::Application) => "application".into(),
                Some(ReaperKind::Runtime) => "runtime".into(),
                Some(ReaperKind::NodeAgent) => "node-agent".into(),
                None => "-".into(),
            },
            yes_no(a.reaps),
            match a.sigterm {
                Some(Disposition::Caught) => "handled".into(),
                Some(Disposition::Blocked) => "sigwait".into(),
                Some(Disposition::Ignored) => "ignored".into(),
                Some(Disposition::Default) => "default".into(),
                None => "-".into(),
            },
            yes_no(a.shared_pid_namespace),
            a.verdict.clone(),
        ]);
    }
    let mut out = crate::text_table::render_rows(&rows);
    if audits.is_empty() {
        out.push_str("(no containers found)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::teardown::Teardown;

    fn base() -> ContainerAudit {
        ContainerAudit {
            pod_uid: "u".into(),
            container_id: "c".into(),
            namespace: None,
            pod: None,
            container: None,
            cgroup_path: "/kubepods/podu/c".into(),
            pid1: Some(10),
            pid1_comm: Some("app".into()),
            pid1_exe: Some("app".into()),
            pid1_cmdline: Some("app".into()),
            kind: Some(ReaperKind::Application),
            init: None,
            reaps: false,
            sigchld: Some(Disposition::Default),
            sigterm: Some(Disposition::Default),
            handles_sigterm: false,
            shell: false,
            shared_pid_namespace: false,
            host_pid_namespace: false,
            sandbox: false,
            leftover_pids: vec![],
            injected_init: false,
            verdict: String::new(),
            pid_namespace_teardown: None,
        }
    }

    /// A hostPID container's orphans go to the node's init: its main process not being an
    /// init is no problem of the container's.
    #[test]
    fn a_host_pid_namespace_container_has_no_pid1_problems() {
        let own = ContainerAudit {
            host_pid_namespace: true,
            ..base()
        };
        assert_eq!(verdict(&own), "ok");
        assert_ne!(verdict(&base()), "ok");
    }

    #[test]
    fn labels_are_names_else_ids() {
        assert_eq!(
            labels(&base()),
            crate::attribution::Labels::new("", "u", "c")
        );
        let named = ContainerAudit {
            namespace: Some("shop".into()),
            pod: Some("cart-1".into()),
            container: Some("app".into()),
            ..base()
        };
        assert_eq!(
            labels(&named),
            crate::attribution::Labels::new("shop", "cart-1", "app")
        );
    }

    #[test]
    fn redacts_pid1_command_lines_unless_shown() {
        let mut audits = vec![
            ContainerAudit {
                pid1_cmdline: Some("/app --password hunter2".into()),
                ..base()
            },
            ContainerAudit {
                pid1_cmdline: None,
                ..base()
            },
        ];
        redact(&mut audits, true);
        assert_eq!(
            audits[0].pid1_cmdline.as_deref(),
            Some("/app --password hunter2")
        );
        redact(&mut audits, false);
        assert_eq!(audits[0].pid1_cmdline.as_deref(), Some("/app [redacted]"));
        assert_eq!(audits[1].pid1_cmdline, None);
        assert_eq!(base().pid1_cmdline.as_deref(), Some("app"));
        let mut one = vec![base()];
        redact(&mut one, false);
        assert_eq!(one[0].pid1_cmdline.as_deref(), Some("app"));
    }

    #[test]
    fn a_title_in_argv0_is_redacted_and_a_hostile_pid1_is_shown_as_text() {
        let mut audits = vec![ContainerAudit {
            pid1_comm: Some("x\x1b[2J\r\nforged".into()),
            pid1_cmdline: Some("myapp --db-password=s3cr3t --serve".into()),
            ..base()
        }];
        redact(&mut audits, false);
        assert_eq!(audits[0].pid1_cmdline.as_deref(), Some("myapp [redacted]"));
        let t = table(&audits);
        assert!(!t.chars().any(|c| c.is_control() && c != '\n'), "{t:?}");
        assert!(t.contains("x\\x1b[2J\\r\\nforged"), "{t}");
        assert_eq!(t.lines().count(), 2);
    }

    #[test]
    fn verdicts() {
        let a = base();
        let v = verdict(&a);
        assert!(v.contains("does not reap") && v.contains("SIGKILL"), "{v}");
        assert!(v.contains("runtimeClassName: zombie-init"), "{v}");
        let ok = ContainerAudit {
            init: Some("tini".into()),
            reaps: true,
            ..base()
        };
        assert_eq!(verdict(&ok), "ok");
        let sh = ContainerAudit {
            shell: true,
            reaps: true,
            handles_sigterm: true,
            ..base()
        };
        assert!(verdict(&sh).contains("shell"));
        let left = ContainerAudit {
            shared_pid_namespace: true,
            host_pid_namespace: false,
            sandbox: false,
            leftover_pids: vec![42],
            ..base()
        };
        assert!(verdict(&left).contains("keep the container from stopping"));
        let gone = ContainerAudit {
            pid1: None,
            ..base()
        };
        assert_eq!(verdict(&gone), "no live process");
        let stuck = ContainerAudit {
            pid1: None,
            pid_namespace_teardown: Some(Teardown {
                init_pid: 7,
                init_comm: "app".into(),
                init_state: "S".into(),
                init_wchan: None,
                members: vec![],
                remedy: "the PID namespace's init app (pid 7) has exited".into(),
            }),
            ..base()
        };
        assert_eq!(
            verdict(&stuck),
            "its PID namespace is stuck in teardown: the PID namespace's init app (pid 7) has \
             exited; no live process"
        );
    }
}
