//! Diagnosis: why a zombie exists, who should reap it, and what to change.
//!
//! A zombie is reaped by its current parent: the process that forked it, or, once that one
//! died, whoever the kernel handed it to (a live thread of the dead parent's group, else the
//! nearest child-subreaper ancestor, else the PID namespace's init). So the reaper to judge
//! is the current parent. The judgement itself is pure ([`diagnose`]); [`ReaperFacts::read`]
//! gathers the facts from /proc.

use std::path::Path;

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
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ParentNotWaiting => "parent_not_waiting",
            Self::Pid1NotInit => "pid1_not_init",
            Self::ShellPid1 => "shell_pid1",
            Self::ParentStopped => "parent_stopped",
            Self::Unknown => "unknown",
        }
    }

    pub const ALL: [Cause; 5] = [
        Self::ParentNotWaiting,
        Self::Pid1NotInit,
        Self::ShellPid1,
        Self::ParentStopped,
        Self::Unknown,
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
                "the container's PID 1 is not an init and does not reap orphans: run it under \
                 tini or dumb-init (docker run --init), or set shareProcessNamespace: true so the \
                 pod's pause process reaps them"
            }
            Self::ShellPid1 => {
                "a shell is the container's PID 1 (sh -c / bash -c): it neither reaps orphans nor \
                 forwards signals; `exec` the application at the end of the script, or run it \
                 under tini or dumb-init"
            }
            Self::ParentStopped => {
                "the parent is stopped (SIGSTOP or a debugger) and reaps nothing: resume it with \
                 SIGCONT or restart it"
            }
            Self::Unknown => {
                "no known cause: the reaper is an init or a process that reaps; if the zombie \
                 stays, look at what that process is doing"
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
         probe's timeout), or give the container an init that reaps them; {reaper_remedy}"
    )
}

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
    "containerd-shim",
    "containerd-shim-runc-v2",
    "conmon",
];

const SHELLS: &[&str] = &["sh", "bash", "dash", "ash", "zsh", "ksh", "mksh", "busybox"];

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
}

impl ReaperFacts {
    /// Reads a process's facts from /proc; `None` if it is gone.
    pub fn read(proc_root: &Path, pid: u32) -> Option<Self> {
        let dir = proc_root.join(pid.to_string());
        let p = ::procfs::process::Process::new_with_root(dir.clone()).ok()?;
        let status = crate::procfs::read_status(&dir)?;
        let cmdline = p.cmdline().unwrap_or_default();
        Some(Self::from_status(pid, status, cmdline))
    }

    /// The facts in a parsed /proc/<pid>/status and the process's command line.
    pub fn from_status(pid: u32, status: ::procfs::process::Status, cmdline: Vec<String>) -> Self {
        let masks = |sig: i32| {
            Disposition::from_masks(sig as u32, status.sigign, status.sigcgt, status.sigblk)
        };
        let (sigchld, sigterm) = (masks(libc::SIGCHLD), masks(libc::SIGTERM));
        Self {
            pid,
            comm: status.name,
            cmdline,
            state: status
                .state
                .chars()
                .next()
                .map(String::from)
                .unwrap_or_default(),
            ns_pid: status
                .nspid
                .and_then(|v| v.last().copied())
                .map(|p| p as u32),
            sigchld,
            sigterm,
        }
    }

    pub fn is_namespace_init(&self) -> bool {
        self.ns_pid == Some(1)
    }

    pub fn kind(&self) -> ReaperKind {
        if known_init(&self.comm, &self.cmdline).is_some() {
            ReaperKind::Init
        } else if is_shell(&self.comm, &self.cmdline) {
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
            init: known_init(&r.comm, &r.cmdline).map(str::to_string),
            namespace_init: r.is_namespace_init(),
            state: r.state.clone(),
            sigchld: r.sigchld,
            has_waited,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        }
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

    #[test]
    fn reads_our_own_facts() {
        let me = ReaperFacts::read(Path::new("/proc"), std::process::id()).unwrap();
        assert_eq!(me.pid, std::process::id());
        assert!(!me.comm.is_empty());
        assert!(ReaperFacts::read(Path::new("/proc"), u32::MAX - 1).is_none());
    }
}
