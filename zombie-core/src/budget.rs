//! The PID budget as readers see it: the node's and each pod's PID use against their
//! limits (the daemon's `budget` module reads them from /proc and the pids controller).

/// Node-wide use and limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeBudget {
    /// Tasks (processes and threads) that exist now.
    pub used: u64,
    pub limit: u64,
}

/// One pod or container cgroup's pids accounting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupBudget {
    /// The path relative to the hierarchy root, as /proc/<pid>/cgroup shows it.
    pub path: String,
    pub pod_uid: String,
    /// None for the pod-level cgroup.
    pub container_id: Option<String>,
    pub current: u64,
    /// None when unlimited ("max").
    pub max: Option<u64>,
    /// Forks refused at the limit (`pids.events` `max`); None when the kernel has no
    /// `pids.events`.
    pub max_events: Option<u64>,
}
