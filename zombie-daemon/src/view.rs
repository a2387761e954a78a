//! What the outside sees of a zombie: the `/zombies` JSON object, made in one place
//! ([`view_of`]) from the zombie's facts, its attribution and its diagnosis. Shared by the
//! HTTP API and `list`; remediation reads the facts, not this.

use serde::{Deserialize, Serialize};

use crate::{
    attribution::Attribution,
    clock::WallClock,
    diagnosis::{Cause, Diagnosis, Reaper},
    tracker::{Ns, Source, Zombie},
    wait_status::WaitStatus,
};

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

/// A zombie's view from its attribution and diagnosis, already made.
pub fn view_of(
    z: &Zombie,
    cgroup_path: Option<&str>,
    a: &Attribution,
    diagnosis: Option<&Diagnosis>,
    origin: Option<OriginView>,
    now: Ns,
    wall: &WallClock,
) -> ZombieView {
    let status = WaitStatus::decode(z.wait_status);
    ZombieView {
        pid: z.key.pid,
        ppid: z.ppid,
        parent_start_ticks: z.parent_start_ticks,
        comm: z.comm.as_str().into_owned(),
        parent_comm: z.parent_comm.as_str().into_owned(),
        exit_code: status.exit_code,
        signal: status.signal,
        core_dumped: status.core_dumped,
        exited_at: wall.rfc3339(z.exited_at),
        exited_at_estimated: z.source == Source::Scan,
        age_seconds: age_seconds(z.age_ns(now)),
        cgroup_id: z.cgroup_id,
        cgroup_path: cgroup_path.map(|p| p.to_string()),
        start_ticks: z.key.start_ticks,
        parent_exited: z.parent_gone,
        reparented: z.reparented,
        owner: a.owner.to_string(),
        pod_uid: a.pod_uid.clone(),
        container_id: a.container_id.clone(),
        runtime: a.runtime.clone(),
        qos: a.qos.map(str::to_string),
        namespace: a.namespace.clone(),
        pod: a.pod.clone(),
        container: a.container.clone(),
        parent_at_exit: Some(ParentAtExit {
            pid: z.exit_ppid,
            comm: z.exit_parent_comm.as_str().into_owned(),
        }),
        cause: diagnosis.map(|d| d.cause),
        reaper: diagnosis.and_then(|d| d.reaper.clone()),
        remedy: diagnosis.map(|d| d.remedy.clone()),
        origin,
    }
}

/// An age as `/zombies` shows it (and remediation compares): seconds, to the millisecond.
pub fn age_seconds(age_ns: Ns) -> f64 {
    (age_ns as f64 / 1e6).round() / 1e3
}
