//! The `/zombies` object's shape: what readers see of a zombie (field names are a public
//! contract). The daemon's `view::view_of` is the one place that fills it from a zombie's
//! facts; the snapshot's store keeps the shared parts ([`OriginView`]) once per group.

use serde::{Deserialize, Serialize};

use crate::diagnosis::{Cause, Reaper};

/// One object of the `/zombies` array. Field names are a public contract: add, never rename.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ZombieView {
    pub pid: u32,
    pub ppid: u32,
    /// The parent's start time in clock ticks since boot (with `ppid`, its identity:
    /// remediation acts on this process only, never on a later one with the same pid).
    #[serde(default)]
    pub parent_start_ticks: u64,
    pub comm: String,
    pub parent_comm: String,
    /// Exit code when it exited normally, else null.
    pub exit_code: Option<u8>,
    /// The signal that killed it, else null.
    pub signal: Option<u8>,
    #[serde(default)]
    pub core_dumped: bool,
    /// RFC 3339, UTC.
    pub exited_at: String,
    /// True when the zombie was found in /proc (at start or on a resync), not seen exiting:
    /// the exit time is then estimated.
    #[serde(default)]
    pub exited_at_estimated: bool,
    pub age_seconds: f64,
    pub cgroup_id: u64,
    pub cgroup_path: Option<String>,
    /// The process's start time in clock ticks since boot (with `pid`, its identity).
    #[serde(default)]
    pub start_ticks: u64,
    /// Its parent at exit has died; it is being handed to a subreaper or init.
    #[serde(default)]
    pub parent_exited: bool,
    #[serde(default)]
    pub reparented: u32,
    /// `pod`, `host` or `unknown` (a cgroup layout not recognised).
    #[serde(default)]
    pub owner: String,
    pub pod_uid: Option<String>,
    pub container_id: Option<String>,
    /// containerd, cri-o, docker, ... as the cgroup path says.
    pub runtime: Option<String>,
    /// guaranteed, burstable or besteffort.
    pub qos: Option<String>,
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub container: Option<String>,
    /// The parent when it exited (`ppid` is the parent now, after any reparenting).
    #[serde(default)]
    pub parent_at_exit: Option<ParentAtExit>,
    /// Why it exists: parent_not_waiting, pid1_not_init, shell_pid1, parent_stopped, runtime,
    /// node_agent, sandbox_not_reaping, unknown.
    #[serde(default)]
    pub cause: Option<Cause>,
    /// Who should reap it now (its current parent) and what that process is.
    #[serde(default)]
    pub reaper: Option<Reaper>,
    /// What to change.
    #[serde(default)]
    pub remedy: Option<String>,
    /// Where its lineage starts: its container's init, an exec session, the host.
    #[serde(default)]
    pub origin: Option<OriginView>,
}

/// A zombie's provenance in `/zombies`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct OriginView {
    /// init, exec, host or unknown.
    pub kind: String,
    /// The process that started the lineage (for init and exec), as the host sees it.
    pub pid: Option<u32>,
    pub start_ticks: Option<u64>,
    pub comm: Option<String>,
    /// Its command line as it was run, redacted unless `--show-cmdlines` (see
    /// [`crate::redact::command_line`]).
    pub cmdline: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ParentAtExit {
    pub pid: u32,
    pub comm: String,
}
