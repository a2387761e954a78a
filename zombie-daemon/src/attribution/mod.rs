//! Attribution: from the cgroup a process exited in to its container and pod.
//!
//! The cgroup path names the pod UID, QoS class, container ID and runtime
//! ([`cgroup_path`]); names (pod, namespace, container) come from the node's container
//! runtime. Results are cached per cgroup id: every zombie of a container shares one.

pub mod cgroup_path;
pub mod cri;
pub mod names;

use std::sync::Arc;

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

/// Attribution of a cgroup path, with the runtime's names when it knows them.
pub fn attribute_path(path: &str, names: Option<&names::NameCache>) -> Arc<Attribution> {
    let mut a = Attribution::from_cgroup(&cgroup_path::parse(path));
    if let Some(cache) = names
        && a.owner == Owner::Pod.as_str()
    {
        if let Some(n) = a.container_id.as_deref().and_then(|id| cache.container(id)) {
            a.namespace = Some(n.namespace);
            a.pod = Some(n.pod);
            a.container = Some(n.container);
            a.sandbox = n.sandbox;
        } else if let Some(p) = a.pod_uid.as_deref().and_then(|uid| cache.pod(uid)) {
            a.namespace = Some(p.namespace);
            a.pod = Some(p.pod);
        }
    }
    Arc::new(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "0b5b9b5e-7d6c-4c39-9a58-2a3f8b1c9d01";
    const ID: &str = "4f2a3c1e9b8d7f6a5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a21";

    #[test]
    fn cgroupfs_pod_paths_are_attributed() {
        let a = attribute_path(&format!("/kubepods/besteffort/pod{UID}/{ID}"), None);
        assert_eq!(a.owner, "pod");
        assert_eq!(a.pod_uid.as_deref(), Some(UID));
        assert_eq!(a.container_id.as_deref(), Some(ID));
        assert_eq!(a.qos, Some("besteffort"));
        assert_eq!(a.labels(), [String::new(), UID.to_string(), ID.to_string()]);
    }

    #[test]
    fn systemd_pod_paths_are_attributed() {
        let uid_ = UID.replace('-', "_");
        let a = attribute_path(
            &format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/cri-containerd-{ID}.scope"
            ),
            None,
        );
        assert_eq!(a.pod_uid.as_deref(), Some(UID));
        assert_eq!(a.runtime.as_deref(), Some("containerd"));
        assert_eq!(a.qos, Some("burstable"));
    }

    #[test]
    fn host_processes_have_empty_labels() {
        let a = attribute_path("/system.slice/containerd.service", None);
        assert_eq!(a.owner, "host");
        assert_eq!(a.labels(), <[String; 3]>::default());
    }
}
