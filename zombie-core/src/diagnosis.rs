//! Diagnosis: why a zombie exists, who should reap it, and what to change.
//!
//! A zombie is reaped by its current parent: the process that forked it, or, once that one
//! died, whoever the kernel handed it to (a live thread of the dead parent's group, else the
//! nearest child-subreaper ancestor, else the PID namespace's init). So the reaper to judge
//! is the current parent. The judgement here is pure ([`diagnose`]); the daemon gathers the
//! [`ReaperFacts`] from /proc.

use serde::{Deserialize, Serialize};

/// The fixed set of causes. Names are a public contract (labels, JSON).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// A live application parent never reaps its children: an application bug.
    ParentNotWaiting,
    /// Orphans adopted by a container's PID 1 that is not an init and does not reap.
    Pid1NotInit,
    /// A shell (`sh -c`, `bash -c`) is the container's PID 1.
    ShellPid1,
    /// The parent is stopped (SIGSTOP, a debugger) and reaps nothing.
    ParentStopped,
    /// None of the above (e.g. a real init that has not got to it yet).
    Unknown,
    /// The reaper is the container runtime or one of its helpers (a shim, conmon, runc,
    /// crun): a runtime bug, not the workload's.
    Runtime,
    /// The reaper is the kubelet or another node agent that starts processes and does not
    /// reap them: a bug of that agent.
    NodeAgent,
    /// The pod shares one PID namespace and its sandbox process, that namespace's init,
    /// does not reap the orphans of the pod's containers.
    SandboxNotReaping,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ParentNotWaiting => "parent_not_waiting",
            Self::Pid1NotInit => "pid1_not_init",
            Self::ShellPid1 => "shell_pid1",
            Self::ParentStopped => "parent_stopped",
            Self::Unknown => "unknown",
            Self::Runtime => "runtime",
            Self::NodeAgent => "node_agent",
            Self::SandboxNotReaping => "sandbox_not_reaping",
        }
    }

    pub const ALL: [Cause; 8] = [
        Self::ParentNotWaiting,
        Self::Pid1NotInit,
        Self::ShellPid1,
        Self::ParentStopped,
        Self::Unknown,
        Self::Runtime,
        Self::NodeAgent,
        Self::SandboxNotReaping,
    ];

    /// One line an operator can act on.
    pub fn remedy(self) -> &'static str {
        match self {
            Self::ParentNotWaiting => {
                "the parent never calls wait() for its children: fix the application to reap \
                 them (handle SIGCHLD and waitpid), or set SIGCHLD to SIG_IGN if it never needs \
                 their exit status"
            }
            Self::Pid1NotInit => {
                "the container's PID 1 is not an init and does not reap orphans: run the pod \
                 with runtimeClassName: zombie-init (the RuntimeClass that starts it under a \
                 static init, no image rebuild), or run it under tini or dumb-init (docker run \
                 --init), or set shareProcessNamespace: true so the pod's pause process reaps \
                 them"
            }
            Self::ShellPid1 => {
                "a shell is the container's PID 1 (sh -c / bash -c): it neither reaps orphans nor \
                 forwards signals; `exec` the application at the end of the script, or run the \
                 pod with runtimeClassName: zombie-init (a static init as PID 1, signals sent to \
                 the script's process group), or run it under tini or dumb-init"
            }
            Self::ParentStopped => {
                "the parent is stopped (SIGSTOP or a debugger) and reaps nothing: resume it with \
                 SIGCONT or restart it"
            }
            Self::Unknown => {
                "no known cause: the reaper is an init or a process that reaps; if the zombie \
                 stays, look at what that process is doing"
            }
            Self::Runtime => {
                "the container runtime's own process (shim, conmon, runc or crun) does not reap \
                 its children: a runtime bug (cri-o#5500, runc#2023), not the workload's; \
                 upgrade the runtime, and delete or restart the pod to end the shim that holds \
                 them (never kill a shim of a running pod)"
            }
            Self::NodeAgent => {
                "a node agent (the kubelet, node-problem-detector, a CNI or monitoring agent) \
                 starts processes and does not reap them: a bug of that agent \
                 (Azure/acs-engine#521, node-problem-detector#726); upgrade it, or restart it \
                 so that its zombies are handed to the node's init"
            }
            Self::SandboxNotReaping => {
                "the pod's sandbox (pause) process is PID 1 of the pod's shared PID namespace \
                 (shareProcessNamespace: true) and does not reap the orphans the pod's \
                 containers hand it: the runtime's sandbox image is not a pause that reaps; set \
                 it to one that does (containerd sandbox_image, CRI-O pause_image: \
                 registry.k8s.io/pause), or turn shareProcessNamespace off and run an init in \
                 the container"
            }
        }
    }
}

/// The remedy for a zombie an exec session left behind (an exec probe, `kubectl exec`):
/// names the session's command, then what to do about its reaper.
pub fn exec_remedy(command: &str, origin_pid: u32, reaper_remedy: &str) -> String {
    let command = if command.is_empty() { "?" } else { command };
    format!(
        "the exec probe or session `{command}` (pid {origin_pid}) leaves children behind: make \
         it wait for what it starts (no background `&` without `wait`, no work left past the \
         probe's timeout), or give the container an init that reaps them (runtimeClassName: \
         zombie-init); {reaper_remedy}"
    )
}

/// A zombie in a container that runs under the init the `zombie-init` RuntimeClass injected
/// (`init_pid`, PID 1 of the zombie's PID namespace): that init reaps every orphan, so what
/// is left is a live parent that does not wait (no init can help), or the init itself not
/// keeping up. Says so, so that nobody switches the class on again as the fix.
pub fn under_injected_init(mut d: Diagnosis, init_pid: u32) -> Diagnosis {
    let class = RUNTIME_CLASS;
    let Some(r) = d.reaper.as_mut() else { return d };
    let note = if r.pid == init_pid {
        // The init's comm is its mount point's name, not a known init's: the caller's fact
        // (its executable is the node's init) decides what it is.
        r.kind = ReaperKind::Init;
        r.init = Some(INJECTED_INIT.into());
        d.cause = Cause::Unknown;
        d.remedy = format!("{} (pid {})", r.comm, r.pid);
        format!(
            "the pod runs under the {class} RuntimeClass and this zombie's parent is its \
             injected init (pid {init_pid}), which reaps orphans as they come: if it stays, \
             the init is stopped or overloaded, look at that process"
        )
    } else {
        format!(
            "the pod runs under the {class} RuntimeClass (its injected init is pid \
             {init_pid}) and still leaks: the injected init reaps orphans only, and this \
             zombie's parent {} (pid {}) is alive and never waits for it; the {class} class \
             cannot fix that, the application must",
            r.comm, r.pid
        )
    };
    d.remedy = if d.cause == Cause::Unknown {
        format!("{}: {note}", d.remedy)
    } else {
        format!("{note}; {}", d.remedy)
    };
    d
}

/// The RuntimeClass whose handler injects an init into a pod's containers.
pub const RUNTIME_CLASS: &str = "zombie-init";

/// What the audit and `/zombies` call the injected init (`reaper.init`, `init`).
pub const INJECTED_INIT: &str = "zombie-init (tini)";

/// What a process does with a signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Disposition {
    Default,
    Ignored,
    Caught,
    /// Blocked and (presumably) collected with sigwait/signalfd, as tini and dumb-init do:
    /// the kernel queues a blocked signal even for a namespace's init.
    Blocked,
}

impl Disposition {
    /// From /proc/<pid>/status's SigIgn, SigCgt and SigBlk; a `sig` outside 1..=64 is
    /// `Default`.
    pub fn from_masks(sig: u32, ignored: u64, caught: u64, blocked: u64) -> Self {
        let bit = sig
            .checked_sub(1)
            .and_then(|s| 1u64.checked_shl(s))
            .unwrap_or(0);
        if caught & bit != 0 {
            Self::Caught
        } else if blocked & bit != 0 {
            Self::Blocked
        } else if ignored & bit != 0 {
            Self::Ignored
        } else {
            Self::Default
        }
    }

    /// The process will see the signal (a handler, or collects it while blocked).
    pub fn handled(self) -> bool {
        matches!(self, Self::Caught | Self::Blocked)
    }
}

/// What kind of program a reaper is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReaperKind {
    /// A known init that reaps (tini, dumb-init, catatonit, pause, systemd, s6, runit, ...).
    Init,
    Shell,
    Application,
    /// The container runtime or one of its helpers (see [`RUNTIMES`]).
    Runtime,
    /// The kubelet or another node agent (see [`NODE_AGENTS`]).
    #[serde(rename = "node_agent")]
    NodeAgent,
}

/// The container runtime and its helpers, by program name: the daemons, the per-container
/// shims and monitors that are a container's parent (a subreaper that must reap it), and
/// the OCI runtimes they run. `containerd-shim*` matches every shim (runc-v2, runsc-v1,
/// kata-v2, ...).
pub const RUNTIMES: &[&str] = &[
    "containerd-shim*",
    "conmon",
    "conmon-rs",
    "conmonrs",
    "runc",
    "crun",
    "youki",
    "runsc",
    "containerd",
    "crio",
    "dockerd",
    "cri-dockerd",
];

/// Node agents that start processes on the node (probes, plugins, helpers): the kubelet
/// and kube-proxy, node-problem-detector (its custom plugins), cAdvisor, and the common
/// CNI and network agents.
pub const NODE_AGENTS: &[&str] = &[
    "kubelet",
    "kube-proxy",
    "node-problem-detector",
    "cadvisor",
    "calico-node",
    "cilium-agent",
    "flanneld",
    "kindnetd",
    "aws-k8s-agent",
    "azure-cns",
    "k3s",
    "k3s-agent",
    "k3s-server",
];

/// Which entry of `names` a process is, by comm or argv[0]: `*` ends a prefix, and a
/// 15-character comm (the kernel's limit) matches a longer name it is the start of.
fn named_in(names: &[&'static str], comm: &str, cmdline: &[String]) -> Option<&'static str> {
    let prog = program(cmdline).unwrap_or(comm);
    names.iter().copied().find(|n| match n.strip_suffix('*') {
        Some(prefix) => comm.starts_with(prefix) || prog.starts_with(prefix),
        None => *n == comm || *n == prog || (comm.len() == 15 && n.starts_with(comm)),
    })
}

/// Which runtime process this is, if any (an entry of [`RUNTIMES`]).
pub fn known_runtime(comm: &str, cmdline: &[String]) -> Option<&'static str> {
    named_in(RUNTIMES, comm, cmdline)
}

/// Which node agent this is, if any (an entry of [`NODE_AGENTS`]).
pub fn known_node_agent(comm: &str, cmdline: &[String]) -> Option<&'static str> {
    named_in(NODE_AGENTS, comm, cmdline)
}

/// Known inits, by the comm or program name they run as.
const INITS: &[&str] = &[
    "tini",
    "tini-static",
    "docker-init",
    "dumb-init",
    "catatonit",
    "pause",
    "systemd",
    "init",
    "s6-svscan",
    "s6-supervise",
    "runit",
    "runsvdir",
    "runsv",
    "supervisord",
    "openrc-init",
];

const SHELLS: &[&str] = &["sh", "bash", "dash", "ash", "zsh", "ksh", "mksh", "busybox"];

/// Executables that are many programs, told apart by argv[0].
const MULTI_CALL: &[&str] = &["busybox", "toybox"];

/// The program name of a cmdline's first word (`/usr/bin/tini` -> `tini`).
fn program(cmdline: &[String]) -> Option<&str> {
    cmdline.first().map(|a| a.rsplit('/').next().unwrap_or(a))
}

/// Which known init this is, if any (by comm, or by argv[0] for inits run through a
/// wrapper with another comm).
pub fn known_init(comm: &str, cmdline: &[String]) -> Option<&'static str> {
    let prog = program(cmdline).unwrap_or(comm);
    INITS
        .iter()
        .find(|i| **i == comm || **i == prog || (comm.len() == 15 && i.starts_with(comm)))
        .copied()
}

pub fn is_shell(comm: &str, cmdline: &[String]) -> bool {
    let prog = program(cmdline).unwrap_or(comm);
    SHELLS.contains(&comm) || SHELLS.contains(&prog)
}

/// Facts about a zombie's current parent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReaperFacts {
    pub pid: u32,
    pub comm: String,
    pub cmdline: Vec<String>,
    /// /proc state letter (S, R, D, T, t, Z, ...).
    pub state: String,
    /// Its pid in its own PID namespace (1: it is that namespace's init).
    pub ns_pid: Option<u32>,
    pub sigchld: Disposition,
    pub sigterm: Disposition,
    /// The file name of its executable (`/proc/PID/exe`), empty when unreadable. Unlike
    /// comm and argv, a process cannot change it without exec'ing another file.
    #[serde(default)]
    pub exe: String,
    /// It runs outside every pod's cgroup and in the node's initial mount namespace (the daemon
    /// tells), so `exe` names a file of the node, not one a tenant named.
    #[serde(default)]
    pub host: bool,
}

impl ReaperFacts {
    /// What it runs: its executable's file name; for a multi-call binary (busybox's
    /// `sleep` and `sh` are one file) or an unreadable one, argv[0]'s, else its comm. Only
    /// inits and shells are told by this; node components by the executable alone.
    fn program(&self) -> &str {
        if self.exe.is_empty() || MULTI_CALL.contains(&self.exe.as_str()) {
            program(&self.cmdline).unwrap_or(&self.comm)
        } else {
            &self.exe
        }
    }

    /// Which runtime process or node agent it is, if any: only a host process (see
    /// [`Self::host`]), by its executable. A tenant sets its comm and argv, and names the
    /// files in its own mount namespace, but cannot start a host process.
    pub fn node_component(&self) -> Option<&'static str> {
        if !self.host || self.exe.is_empty() {
            return None;
        }
        known_runtime(&self.exe, &[]).or_else(|| known_node_agent(&self.exe, &[]))
    }

    /// Which known init it is, by its executable (comm where unreadable).
    pub fn init_name(&self) -> Option<&'static str> {
        known_init(self.program(), &[])
    }

    pub fn is_namespace_init(&self) -> bool {
        self.ns_pid == Some(1)
    }

    pub fn kind(&self) -> ReaperKind {
        if self
            .node_component()
            .is_some_and(|c| known_runtime(c, &[]).is_some())
        {
            ReaperKind::Runtime
        } else if self.node_component().is_some() {
            ReaperKind::NodeAgent
        } else if self.init_name().is_some() {
            ReaperKind::Init
        } else if is_shell(self.program(), &[]) {
            ReaperKind::Shell
        } else {
            ReaperKind::Application
        }
    }
}

/// The verdict on one zombie.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnosis {
    pub cause: Cause,
    pub remedy: String,
    pub reaper: Option<Reaper>,
}

/// Who should reap the zombie now, as reported in `/zombies`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reaper {
    pub pid: u32,
    pub comm: String,
    pub cmdline: String,
    pub kind: ReaperKind,
    /// Which known init, if it is one.
    pub init: Option<String>,
    /// Which runtime process or node agent, if it is one (an entry of [`RUNTIMES`] or
    /// [`NODE_AGENTS`]).
    #[serde(default)]
    pub node_component: Option<String>,
    /// It is PID 1 of its PID namespace (a container's init).
    pub namespace_init: bool,
    pub state: String,
    pub sigchld: Disposition,
    /// It called wait() since the daemon started.
    pub has_waited: bool,
}

/// Judges a zombie from its reaper's facts. `has_waited`: the reaper was seen in wait().
pub fn diagnose(reaper: Option<&ReaperFacts>, has_waited: bool, show_cmdline: bool) -> Diagnosis {
    let Some(r) = reaper else {
        return Diagnosis {
            cause: Cause::Unknown,
            remedy: "its parent is gone from /proc; it is being handed to a new one".into(),
            reaper: None,
        };
    };
    let kind = r.kind();
    let cause = if matches!(r.state.as_str(), "T" | "t") {
        Cause::ParentStopped
    } else if kind == ReaperKind::Runtime {
        Cause::Runtime
    } else if kind == ReaperKind::NodeAgent {
        Cause::NodeAgent
    } else if kind == ReaperKind::Init {
        Cause::Unknown
    } else if r.is_namespace_init() && r.pid != 1 {
        if kind == ReaperKind::Shell {
            Cause::ShellPid1
        } else {
            Cause::Pid1NotInit
        }
    } else {
        Cause::ParentNotWaiting
    };
    let who = format!("{} (pid {})", r.comm, r.pid);
    Diagnosis {
        cause,
        remedy: format!("{who}: {}", cause.remedy()),
        reaper: Some(Reaper {
            pid: r.pid,
            comm: r.comm.clone(),
            cmdline: if show_cmdline {
                r.cmdline.join(" ")
            } else {
                String::new()
            },
            kind,
            init: r.init_name().map(str::to_string),
            node_component: r.node_component().map(str::to_string),
            namespace_init: r.is_namespace_init(),
            state: r.state.clone(),
            sigchld: r.sigchld,
            has_waited,
        }),
    }
}

/// A zombie handed to the init of a pod's shared PID namespace (CRI `NamespaceMode::POD`,
/// the kubelet's `shareProcessNamespace: true`): that init is the pod's sandbox process, in
/// the sandbox's cgroup, while the zombie comes from another container of the pod. A
/// non-reaping init judged as a container's PID 1 is then the sandbox's fault.
/// `zombie`: the zombie's pod UID and container ID; `reaper`: what the reaper's cgroup
/// path says.
pub fn in_shared_pod_namespace(
    mut d: Diagnosis,
    zombie: (Option<&str>, Option<&str>),
    reaper: Option<&crate::attribution::CgroupInfo>,
) -> Diagnosis {
    let (Some(pod), Some(container)) = zombie else {
        return d;
    };
    let Some(r) = d.reaper.as_ref() else { return d };
    let sandbox = reaper.is_some_and(|info| {
        info.pod_uid.as_deref() == Some(pod)
            && info.container_id.as_deref().is_some_and(|c| c != container)
    });
    if r.namespace_init && sandbox && matches!(d.cause, Cause::Pid1NotInit | Cause::ShellPid1) {
        d.cause = Cause::SandboxNotReaping;
        d.remedy = format!("{} (pid {}): {}", r.comm, r.pid, d.cause.remedy());
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remedies_name_the_runtime_class_for_what_it_fixes() {
        for c in [Cause::Pid1NotInit, Cause::ShellPid1] {
            assert!(
                c.remedy().contains("runtimeClassName: zombie-init"),
                "{c:?}"
            );
        }
        assert!(exec_remedy("sh", 1, "x").contains("runtimeClassName: zombie-init"));
        for c in [Cause::ParentNotWaiting, Cause::Runtime, Cause::NodeAgent] {
            assert!(!c.remedy().contains("zombie-init"), "{c:?}");
        }
    }

    #[test]
    fn a_leak_under_the_injected_init_says_so() {
        let app = facts(9, "app", &["/app"], 3, "S");
        let d = under_injected_init(diagnose(Some(&app), false, true), 4000);
        assert_eq!(d.cause, Cause::ParentNotWaiting);
        assert!(
            d.remedy.starts_with("the pod runs under the zombie-init RuntimeClass (its injected init is pid 4000) and still leaks"),
            "{}",
            d.remedy
        );
        assert!(d.remedy.contains("app (pid 9) is alive"), "{}", d.remedy);
        // Its comm is the mount point's name, not a known init's: the fact decides.
        let init = facts(
            4000,
            ".zombie-init",
            &["/.zombie-init", "-g", "--", "app"],
            1,
            "S",
        );
        assert_eq!(diagnose(Some(&init), false, true).cause, Cause::Pid1NotInit);
        let d = under_injected_init(diagnose(Some(&init), false, true), 4000);
        assert_eq!(d.cause, Cause::Unknown);
        let r = d.reaper.as_ref().unwrap();
        assert_eq!(
            (r.kind, r.init.as_deref()),
            (ReaperKind::Init, Some(INJECTED_INIT))
        );
        assert!(
            d.remedy.contains("its injected init (pid 4000)"),
            "{}",
            d.remedy
        );
        assert!(!d.remedy.contains("runtimeClassName"), "{}", d.remedy);
        let gone = under_injected_init(diagnose(None, false, true), 4000);
        assert_eq!(gone, diagnose(None, false, true));
    }

    #[test]
    fn an_exec_remedy_names_the_command_and_keeps_the_reapers() {
        let r = exec_remedy("sh -c sleep 0.3 & exit 0", 77, "pause (pid 9): run tini");
        assert!(
            r.starts_with(
                "the exec probe or session `sh -c sleep 0.3 & exit 0` (pid 77) leaves children \
                 behind: "
            ),
            "{r}"
        );
        assert!(r.ends_with("; pause (pid 9): run tini"), "{r}");
        assert!(exec_remedy("", 5, "x").contains("`?` (pid 5)"));
    }

    fn facts(pid: u32, comm: &str, cmdline: &[&str], ns_pid: u32, state: &str) -> ReaperFacts {
        ReaperFacts {
            pid,
            comm: comm.into(),
            cmdline: cmdline.iter().map(|s| s.to_string()).collect(),
            state: state.into(),
            ns_pid: Some(ns_pid),
            sigchld: Disposition::Default,
            sigterm: Disposition::Default,
            exe: cmdline
                .first()
                .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
                .unwrap_or_default(),
            host: ns_pid == pid,
        }
    }

    /// A tenant names its process and its binary whatever it likes: inside a pod (or in a
    /// mount namespace of its own) kubelet, containerd-shim and runc are applications.
    #[test]
    fn a_node_component_is_a_host_process_by_its_executable_never_by_name() {
        for (comm, argv0) in [
            ("kubelet", "/usr/bin/kubelet"),
            ("containerd-shim", "/usr/bin/containerd-shim-runc-v2"),
            ("runc", "runc"),
            ("k3s-agent", "k3s-agent"),
        ] {
            let in_pod = ReaperFacts {
                host: false,
                ..facts(6000, comm, &[argv0], 6000, "S")
            };
            let d = diagnose(Some(&in_pod), false, true);
            assert_eq!(d.cause, Cause::ParentNotWaiting, "{comm}");
            assert_eq!(d.reaper.unwrap().node_component, None);
            // On the host, a renamed copy of another binary is not one either.
            let renamed = ReaperFacts {
                exe: "python3".into(),
                ..facts(6001, comm, &[argv0], 6001, "S")
            };
            assert_eq!(renamed.node_component(), None, "{comm}");
            assert_ne!(renamed.kind(), ReaperKind::NodeAgent);
            assert_ne!(renamed.kind(), ReaperKind::Runtime);
        }
        // busybox is many programs: its `sleep` is no shell, its `sh` is one.
        let sleep = ReaperFacts {
            exe: "busybox".into(),
            ..facts(6003, "sleep", &["sleep", "3600"], 1, "S")
        };
        assert_eq!(sleep.kind(), ReaperKind::Application);
        let sh = ReaperFacts {
            exe: "busybox".into(),
            ..facts(6004, "sh", &["sh", "-c", "x"], 1, "S")
        };
        assert_eq!(sh.kind(), ReaperKind::Shell);
        // An empty argv changes nothing.
        let no_argv = ReaperFacts {
            host: false,
            exe: "app".into(),
            ..facts(6002, "kubelet", &[], 6002, "S")
        };
        assert_eq!(no_argv.kind(), ReaperKind::Application);
    }

    #[test]
    fn an_application_parent_that_does_not_wait() {
        let d = diagnose(
            Some(&facts(500, "python3", &["python3", "app.py"], 7, "S")),
            false,
            true,
        );
        assert_eq!(d.cause, Cause::ParentNotWaiting);
        let r = d.reaper.unwrap();
        assert_eq!(
            (r.kind, r.namespace_init, r.cmdline.as_str()),
            (ReaperKind::Application, false, "python3 app.py")
        );
        assert!(
            d.remedy
                .starts_with("python3 (pid 500): the parent never calls wait()")
        );
    }

    #[test]
    fn container_pid1_cases() {
        let app = facts(900, "sleep", &["sleep", "3600"], 1, "S");
        assert_eq!(diagnose(Some(&app), false, true).cause, Cause::Pid1NotInit);
        let sh = facts(901, "sh", &["/bin/sh", "-c", "x & exec y"], 1, "S");
        assert_eq!(diagnose(Some(&sh), false, true).cause, Cause::ShellPid1);
        let bash = facts(902, "bash", &["bash", "-c", "x"], 1, "S");
        assert_eq!(diagnose(Some(&bash), false, true).cause, Cause::ShellPid1);
        for (comm, cmd) in [
            ("tini", "/usr/bin/tini"),
            ("dumb-init", "/usr/bin/dumb-init"),
            ("pause", "/pause"),
        ] {
            let init = facts(903, comm, &[cmd, "--", "app"], 1, "S");
            let d = diagnose(Some(&init), true, true);
            assert_eq!(d.cause, Cause::Unknown, "{comm}");
            assert_eq!(d.reaper.unwrap().init.as_deref(), Some(comm));
        }
    }

    #[test]
    fn runtime_processes_are_the_runtimes_bug() {
        for (comm, argv0) in [
            ("containerd-shim", "/usr/bin/containerd-shim-runc-v2"),
            ("containerd-shim", "containerd-shim-runsc-v1"),
            ("conmon", "/usr/bin/conmon"),
            ("conmonrs", "/usr/bin/conmonrs"),
            ("runc", "runc"),
            ("crun", "/usr/bin/crun"),
        ] {
            let r = facts(4000, comm, &[argv0, "-namespace", "k8s.io"], 4000, "S");
            let d = diagnose(Some(&r), false, true);
            assert_eq!(d.cause, Cause::Runtime, "{comm}");
            assert!(
                d.remedy.starts_with(&format!("{comm} (pid 4000): ")),
                "{d:?}"
            );
            assert!(d.remedy.contains("runtime bug"), "{d:?}");
            let reaper = d.reaper.unwrap();
            assert_eq!((reaper.kind, reaper.init), (ReaperKind::Runtime, None));
            assert!(reaper.node_component.is_some(), "{comm}");
        }
        // A stopped shim is stopped first of all.
        let stopped = facts(
            4001,
            "containerd-shim",
            &["containerd-shim-runc-v2"],
            4001,
            "T",
        );
        assert_eq!(
            diagnose(Some(&stopped), false, true).cause,
            Cause::ParentStopped
        );
    }

    #[test]
    fn node_agents_are_the_agents_bug() {
        for (comm, argv0, which) in [
            ("kubelet", "/usr/bin/kubelet", "kubelet"),
            // comm is cut at 15 characters; argv[0] may be anything.
            (
                "node-problem-de",
                "/node-problem-detector",
                "node-problem-detector",
            ),
            ("kube-proxy", "/usr/local/bin/kube-proxy", "kube-proxy"),
        ] {
            let r = facts(5000, comm, &[argv0, "--v=2"], 5000, "S");
            let d = diagnose(Some(&r), false, true);
            assert_eq!(d.cause, Cause::NodeAgent, "{comm}");
            assert!(d.remedy.contains("node agent"), "{d:?}");
            let reaper = d.reaper.unwrap();
            assert_eq!(reaper.kind, ReaperKind::NodeAgent);
            assert_eq!(reaper.node_component.as_deref(), Some(which));
        }
        // Names that only look alike are not components.
        for (comm, argv0) in [
            ("containerd-sh", "containerd-sh"),
            ("kubelet-helper", "kubelet-helper"),
            ("runcible", "runcible"),
        ] {
            let r = facts(5001, comm, &[argv0], 5001, "S");
            assert!(r.host);
            assert_eq!(
                diagnose(Some(&r), false, true).cause,
                Cause::ParentNotWaiting,
                "{comm}"
            );
        }
    }

    #[test]
    fn a_non_reaping_init_of_a_shared_pod_namespace_is_the_sandbox() {
        let pod = "11111111-2222-3333-4444-555555555555";
        let (sandbox, app) = ("a".repeat(64), "b".repeat(64));
        let path = |id: &str| format!("/kubepods/besteffort/pod{pod}/{id}");
        let sandbox_cg = crate::attribution::cgroup_path::parse(&path(&sandbox));
        let app_cg = crate::attribution::cgroup_path::parse(&path(&app));
        let other_pod = crate::attribution::cgroup_path::parse(&format!(
            "/kubepods/besteffort/pod99999999-2222-3333-4444-555555555555/{sandbox}"
        ));
        let base = || {
            diagnose(
                Some(&facts(700, "sleep", &["sleep", "inf"], 1, "S")),
                false,
                true,
            )
        };
        let zombie = (Some(pod), Some(app.as_str()));
        let d = in_shared_pod_namespace(base(), zombie, Some(&sandbox_cg));
        assert_eq!(d.cause, Cause::SandboxNotReaping);
        assert!(
            d.remedy
                .starts_with("sleep (pid 700): the pod's sandbox (pause) process"),
            "{}",
            d.remedy
        );
        // The zombie in the reaper's own container, another pod, or no cgroup facts: a
        // container's PID 1 as before.
        for reaper in [Some(&app_cg), Some(&other_pod), None] {
            let d = in_shared_pod_namespace(base(), zombie, reaper);
            assert_eq!(d.cause, Cause::Pid1NotInit, "{reaper:?}");
        }
        assert_eq!(
            in_shared_pod_namespace(base(), (Some(pod), None), Some(&sandbox_cg)).cause,
            Cause::Pid1NotInit
        );
        // A reaping pause (a known init) and an application parent are left alone.
        let pause = diagnose(Some(&facts(701, "pause", &["/pause"], 1, "S")), true, true);
        assert_eq!(
            in_shared_pod_namespace(pause, zombie, Some(&sandbox_cg)).cause,
            Cause::Unknown
        );
        let app_parent = diagnose(Some(&facts(702, "app", &["app"], 5, "S")), false, true);
        assert_eq!(
            in_shared_pod_namespace(app_parent, zombie, Some(&sandbox_cg)).cause,
            Cause::ParentNotWaiting
        );
    }

    #[test]
    fn cause_names_are_unique_and_snake_case() {
        let names: std::collections::HashSet<&str> =
            Cause::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), Cause::ALL.len());
        for c in Cause::ALL {
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
    }

    #[test]
    fn a_stopped_parent() {
        let d = diagnose(Some(&facts(700, "worker", &["worker"], 3, "T")), true, true);
        assert_eq!(d.cause, Cause::ParentStopped);
    }

    #[test]
    fn command_lines_are_withheld_unless_asked() {
        let d = diagnose(
            Some(&facts(500, "app", &["app", "--token=secret"], 7, "S")),
            false,
            false,
        );
        assert_eq!(d.reaper.unwrap().cmdline, "");
    }

    #[test]
    fn host_pid1_is_an_init_by_name_or_not_judged_as_a_container() {
        // The host's PID 1 is a namespace init too, but not a container's.
        let d = diagnose(
            Some(&facts(1, "process_api", &["/process_api"], 1, "S")),
            false,
            true,
        );
        assert_eq!(d.cause, Cause::ParentNotWaiting);
    }

    #[test]
    fn signal_dispositions() {
        let chld = 1u64 << 16;
        assert_eq!(Disposition::from_masks(17, 0, chld, 0), Disposition::Caught);
        assert_eq!(
            Disposition::from_masks(17, chld, 0, 0),
            Disposition::Ignored
        );
        assert_eq!(
            Disposition::from_masks(17, 0, 0, chld),
            Disposition::Blocked
        );
        assert_eq!(Disposition::from_masks(17, 0, 0, 0), Disposition::Default);
        assert_eq!(
            Disposition::from_masks(64, 0, 1 << 63, 0),
            Disposition::Caught
        );
        for sig in [0, 65, u32::MAX] {
            assert_eq!(
                Disposition::from_masks(sig, !0, !0, !0),
                Disposition::Default
            );
        }
        assert!(Disposition::Blocked.handled() && !Disposition::Ignored.handled());
    }
}
