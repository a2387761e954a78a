//! A PID namespace stuck in teardown, as readers see it (the daemon's `teardown` module
//! finds it in /proc and judges it).

use serde::{Deserialize, Serialize};

/// A member of the namespace that has not died.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub pid: u32,
    pub comm: String,
    pub state: String,
    pub ppid: u32,
    /// Its parent is not in the namespace: only that parent can reap it.
    pub parent_outside_namespace: bool,
}

/// A namespace whose init exited and waits for members that do not die.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Teardown {
    pub init_pid: u32,
    pub init_comm: String,
    pub init_state: String,
    /// Where the init waits (`/proc/<pid>/wchan`: `zap_pid_ns_processes` or `do_wait`),
    /// when the kernel shows it.
    pub init_wchan: Option<String>,
    pub members: Vec<Member>,
    pub remedy: String,
}
