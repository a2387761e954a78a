//! Attribution: from the cgroup a process exited in to its container and pod.
//!
//! The cgroup path names the pod UID, QoS class, container ID and runtime
//! ([`cgroup_path`]); names (pod, namespace, container) come from the node's container
//! runtime. Results are cached per cgroup id: every zombie of a container shares one.

pub mod cri;
pub mod names;

use std::sync::Arc;

pub use zombie_core::attribution::{
    Attribution, CgroupInfo, Labels, Owner, SANDBOX_CONTAINER, cgroup_path,
};

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
        assert_eq!(a.labels(), Labels::new("", UID, ID));
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
        assert_eq!(a.labels(), Labels::default());
    }
}
