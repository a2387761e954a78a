//! What the outside sees of a zombie: the `/zombies` JSON object and the labels of its
//! metrics. Shared by the HTTP API, `list` and the metrics collector.

use std::{path::Path, sync::Arc};

use serde::{Deserialize, Serialize};

use crate::{
    cgroups::CgroupResolver,
    clock::WallClock,
    status::WaitStatus,
    tracker::{Ns, Source, Tracker, Zombie},
};

/// One object of the `/zombies` array. Field names are a public contract: add, never rename.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ZombieView {
    pub pid: u32,
    pub ppid: u32,
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
}

/// Maps zombies to their cgroup and (with attribution) container.
pub struct Attributor {
    cgroups: CgroupResolver,
}

impl Attributor {
    pub fn new(proc_root: &Path, cgroup_root: &Path) -> Self {
        Self {
            cgroups: CgroupResolver::new(proc_root, cgroup_root),
        }
    }

    pub fn cgroups(&self) -> &CgroupResolver {
        &self.cgroups
    }

    pub fn cgroup_path(&mut self, z: &Zombie) -> Option<Arc<str>> {
        self.cgroups.path(z.key.pid, z.cgroup_id)
    }

    /// `namespace`, `pod`, `container` label values; empty where unknown or for host
    /// processes.
    pub fn labels(&mut self, _z: &Zombie) -> [String; 3] {
        Default::default()
    }
}

pub fn view(z: &Zombie, attributor: &mut Attributor, now: Ns, wall: &WallClock) -> ZombieView {
    let status = WaitStatus::decode(z.wait_status);
    ZombieView {
        pid: z.key.pid,
        ppid: z.ppid,
        comm: z.comm.as_str().into_owned(),
        parent_comm: z.parent_comm.as_str().into_owned(),
        exit_code: status.exit_code,
        signal: status.signal,
        core_dumped: status.core_dumped,
        exited_at: wall.rfc3339(z.exited_at),
        exited_at_estimated: z.source == Source::Scan,
        age_seconds: (z.age_ns(now) as f64 / 1e6).round() / 1e3,
        cgroup_id: z.cgroup_id,
        cgroup_path: attributor.cgroup_path(z).map(|p| p.to_string()),
        start_ticks: z.key.start_ticks,
        parent_exited: z.parent_gone,
        reparented: z.reparented,
    }
}

/// Every current zombie, oldest first.
pub fn snapshot(
    tracker: &Tracker,
    attributor: &mut Attributor,
    now: Ns,
    wall: &WallClock,
) -> Vec<ZombieView> {
    let mut zombies: Vec<&Zombie> = tracker.zombies().collect();
    zombies.sort_by_key(|z| (z.exited_at, z.key));
    zombies
        .into_iter()
        .map(|z| view(z, attributor, now, wall))
        .collect()
}
