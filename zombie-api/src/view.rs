//! What the outside sees of a zombie: the `/zombies` JSON object (its shape is
//! `zombie_core::view`), made in one place ([`view_of`]) from the zombie's facts, its
//! attribution and its diagnosis. Shared by the HTTP API and `list`; remediation reads the
//! facts, not this.

pub use zombie_core::view::{OriginView, ParentAtExit, ZombieView};

use crate::{
    attribution::Attribution,
    clock::WallClock,
    diagnosis::Diagnosis,
    tracker::{Ns, Source, Zombie},
    wait_status::WaitStatus,
};

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
