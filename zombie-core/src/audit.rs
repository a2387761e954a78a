//! The init audit as readers see it: for every container, what its PID 1 is and whether it
//! will reap orphans and stop on SIGTERM (the daemon's `audit` module reads it from /proc).

use serde::{Deserialize, Serialize};

use crate::{
    attribution::{Attribution, Labels, Owner},
    diagnosis::{Disposition, ReaperKind},
    teardown::Teardown,
};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ContainerAudit {
    pub pod_uid: String,
    pub container_id: String,
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub container: Option<String>,
    pub cgroup_path: String,
    /// The container's main process: its PID-namespace init, or (in a shared PID
    /// namespace) its oldest process. Absent when it has no live process.
    pub pid1: Option<u32>,
    pub pid1_comm: Option<String>,
    /// The file name of its executable: what the `pid1` label of
    /// `zombie_container_init_info` shows (it changes only when it execs another file; its
    /// comm and argv it may rewrite at any time).
    #[serde(default)]
    pub pid1_exe: Option<String>,
    pub pid1_cmdline: Option<String>,
    pub kind: Option<ReaperKind>,
    pub init: Option<String>,
    /// It reaps orphans: a known init, or it handles SIGCHLD.
    pub reaps: bool,
    pub sigchld: Option<Disposition>,
    pub sigterm: Option<Disposition>,
    /// It catches SIGTERM or collects it while blocked (an ignored or default SIGTERM does
    /// not stop a namespace init).
    pub handles_sigterm: bool,
    pub shell: bool,
    /// The container shares its pod's PID namespace (its main process is not PID 1 there).
    /// A container in the host's PID namespace (`hostPID`) shares no pod's: false.
    pub shared_pid_namespace: bool,
    /// Its processes are in the node's own PID namespace (`hostPID: true`): orphans go to
    /// the node's init, not to a PID 1 of the container's.
    #[serde(default)]
    pub host_pid_namespace: bool,
    /// It is the pod's sandbox (pause), as the runtime lists it, not a container of the pod.
    #[serde(default)]
    pub sandbox: bool,
    /// Live processes whose starter is gone: handed to the pod's init, they keep the
    /// container from stopping.
    pub leftover_pids: Vec<u32>,
    /// Its PID 1 is the init the `zombie-init` RuntimeClass injected (its executable is the
    /// node's installed init: see the daemon's `prevention` module).
    #[serde(default)]
    pub injected_init: bool,
    /// "ok", or the problems in words.
    pub verdict: String,
    /// Its PID namespace's init has exited and waits for members that do not die (see
    /// the daemon's `teardown` module); absent when not so.
    #[serde(default)]
    pub pid_namespace_teardown: Option<Teardown>,
}

/// The series labels of a container the audit lists.
pub fn labels(a: &ContainerAudit) -> Labels {
    Attribution {
        owner: Owner::Pod.as_str(),
        pod_uid: Some(a.pod_uid.clone()),
        container_id: Some(a.container_id.clone()),
        namespace: a.namespace.clone(),
        pod: a.pod.clone(),
        container: a.container.clone(),
        ..Attribution::default()
    }
    .labels()
}
