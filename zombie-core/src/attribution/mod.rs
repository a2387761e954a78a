//! Attribution types: from the cgroup a process exited in to its container and pod.
//!
//! The cgroup path names the pod UID, QoS class, container ID and runtime
//! ([`cgroup_path`]); names (pod, namespace, container) come from the node's container
//! runtime, which the daemon asks.

pub mod cgroup_path;

use serde::Serialize;

pub use cgroup_path::{CgroupInfo, Owner};

/// The `container` of a pod's sandbox (pause) cgroup, as the kubelet's cAdvisor has always
/// called it: no container can have this name (container names are lowercase DNS labels),
/// and unlike the sandbox's 64-character ID it makes no new series per pod.
pub const SANDBOX_CONTAINER: &str = "POD";

/// Who a zombie belongs to. `None` where unknown.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Attribution {
    pub owner: &'static str,
    pub pod_uid: Option<String>,
    pub container_id: Option<String>,
    pub runtime: Option<String>,
    pub qos: Option<&'static str>,
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub container: Option<String>,
    /// The cgroup is the pod's sandbox (the runtime lists its ID as a pod sandbox).
    #[serde(skip)]
    pub sandbox: bool,
}

impl Attribution {
    /// From a cgroup path alone (no runtime names).
    pub fn from_cgroup(info: &CgroupInfo) -> Self {
        Self {
            owner: info.owner.as_str(),
            pod_uid: info.pod_uid.clone(),
            container_id: info.container_id.clone(),
            runtime: info.runtime.as_ref().map(|r| r.as_str().to_string()),
            qos: info.qos.as_ref().map(|q| q.as_str()),
            namespace: None,
            pod: None,
            container: None,
            sandbox: false,
        }
    }

    /// `namespace`, `pod`, `container` label values. Names when the runtime gave them;
    /// otherwise what the cgroup path says (pod UID, container ID), so a leak is still
    /// traceable; empty for host processes.
    pub fn labels(&self) -> [String; 3] {
        if self.owner != Owner::Pod.as_str() {
            return Default::default();
        }
        [
            self.namespace.clone().unwrap_or_default(),
            self.pod
                .clone()
                .or_else(|| self.pod_uid.clone())
                .unwrap_or_default(),
            self.container
                .clone()
                .or_else(|| self.container_id.clone())
                .unwrap_or_default(),
        ]
    }
}
