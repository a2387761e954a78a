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

    /// Its series' labels. Names when the runtime gave them; otherwise what the cgroup
    /// path says (pod UID, container ID), so a leak is still traceable; empty for host
    /// processes.
    pub fn labels(&self) -> Labels {
        if self.owner != Owner::Pod.as_str() {
            return Labels::default();
        }
        Labels {
            namespace: self.namespace.clone().unwrap_or_default(),
            pod: self
                .pod
                .clone()
                .or_else(|| self.pod_uid.clone())
                .unwrap_or_default(),
            container: self
                .container
                .clone()
                .or_else(|| self.container_id.clone())
                .unwrap_or_default(),
        }
    }
}

/// The `namespace`, `pod`, `container` label values of a container's series (all empty for
/// host processes). Ordered by namespace, then pod, then container.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels {
    pub namespace: String,
    pub pod: String,
    pub container: String,
}

impl Labels {
    pub fn new(namespace: &str, pod: &str, container: &str) -> Self {
        Self {
            namespace: namespace.into(),
            pod: pod.into(),
            container: container.into(),
        }
    }

    /// The values in the order of the series' label names (`namespace`, `pod`,
    /// `container`).
    pub fn values(&self) -> [&str; 3] {
        [&self.namespace, &self.pod, &self.container]
    }
}
