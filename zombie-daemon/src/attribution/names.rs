//! Pod and container names from the node's container runtime, cached.
//!
//! A background task keeps a [`NameCache`] filled from CRI `ListPodSandbox` and
//! `ListContainers`: every 30 s, and at once (at most once a second) when a lookup misses.
//! Containers that disappear are kept for a grace period, so that a zombie reaped after its
//! container was removed still carries its pod's name.

use std::{
    path::Path,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use rustc_hash::FxHashMap;
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use super::cri::{CriClient, CriSnapshot, detect_endpoints};

/// What the runtime says about a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    pub namespace: String,
    pub pod: String,
    pub pod_uid: String,
    pub container: String,
    /// The ID is the pod's sandbox (its pause container), not a container of the pod:
    /// `container` is then [`super::SANDBOX_CONTAINER`].
    pub sandbox: bool,
    /// Pod labels and annotations (remediation opt-in reads them).
    pub pod_labels: std::collections::BTreeMap<String, String>,
    pub pod_annotations: std::collections::BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodNames {
    pub namespace: String,
    pub pod: String,
}

struct Entry<T> {
    value: T,
    last_seen: Instant,
}

/// Shared between the refresher and the attribution.
pub struct NameCache {
    containers: RwLock<FxHashMap<String, Entry<Names>>>,
    pods: RwLock<FxHashMap<String, Entry<PodNames>>>,
    /// Bumped on every refresh that changed something; attribution caches key on it.
    generation: AtomicU64,
    missed: Notify,
    /// IDs and UIDs the runtime was asked about after a miss, and when: each triggers at
    /// most one listing per [`MISS_RETRY`] (at most [`MAX_MISSES`] remembered).
    misses: std::sync::Mutex<FxHashMap<String, Instant>>,
    grace: Duration,
}

/// An ID the runtime did not know triggers another listing at most this often. A tenant can
/// make cgroups with IDs no runtime knows (below its own delegated subtree, or containers
/// outside Kubernetes); without this every one of them would cost a full listing a second.
pub const MISS_RETRY: Duration = Duration::from_secs(60);
/// At most this many missed IDs are remembered; past it, misses no longer trigger listings
/// until the oldest age out (the periodic refresh still runs).
pub const MAX_MISSES: usize = 4096;

impl NameCache {
    pub fn new(grace: Duration) -> Self {
        Self {
            containers: RwLock::default(),
            pods: RwLock::default(),
            generation: AtomicU64::new(0),
            missed: Notify::new(),
            misses: std::sync::Mutex::default(),
            grace,
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn container(&self, id: &str) -> Option<Names> {
        let hit = self
            .containers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .map(|e| e.value.clone());
        if hit.is_none() {
            self.miss(id, Instant::now());
        }
        hit
    }

    /// Asks the refresher for a listing for `key`, unless it asked for it less than
    /// [`MISS_RETRY`] ago or [`MAX_MISSES`] keys are waiting out their retry. Returns
    /// whether it asked.
    fn miss(&self, key: &str, now: Instant) -> bool {
        let mut misses = self.misses.lock().unwrap_or_else(|e| e.into_inner());
        if misses
            .get(key)
            .is_some_and(|at| now.saturating_duration_since(*at) < MISS_RETRY)
        {
            return false;
        }
        if misses.len() >= MAX_MISSES {
            misses.retain(|_, at| now.saturating_duration_since(*at) < MISS_RETRY);
            if misses.len() >= MAX_MISSES {
                drop(misses);
                crate::bounds::reached(
                    crate::bounds::Bound::RuntimeMisses,
                    &format!(
                        "{MAX_MISSES} container IDs and pod UIDs the runtime did not know are \
                         waiting out their retry; others wait for the periodic refresh"
                    ),
                );
                return false;
            }
        }
        misses.insert(key.to_string(), now);
        drop(misses);
        self.missed.notify_one();
        true
    }

    pub fn pod(&self, uid: &str) -> Option<PodNames> {
        let hit = self
            .pods
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(uid)
            .map(|e| e.value.clone());
        if hit.is_none() {
            self.miss(uid, Instant::now());
        }
        hit
    }

    /// Merges a snapshot: updates what is there, keeps what vanished for the grace period.
    pub fn merge(&self, snap: &CriSnapshot, now: Instant) {
        let mut changed = false;
        {
            let mut containers = self.containers.write().unwrap_or_else(|e| e.into_inner());
            // A sandbox's cgroup is named by its sandbox ID, as a container's is by its
            // container ID: the runtime's ListPodSandbox says which IDs are sandboxes.
            let sandboxes = snap.pods.iter().map(|(id, p)| (id, p, None));
            let in_pods = snap.containers.iter().filter_map(|(id, c)| {
                snap.pods
                    .get(&c.sandbox_id)
                    .map(|p| (id, p, Some(c.name.as_str())))
            });
            for (id, p, container) in sandboxes.chain(in_pods) {
                let names = Names {
                    namespace: p.namespace.clone(),
                    pod: p.name.clone(),
                    pod_uid: p.uid.clone(),
                    container: container.unwrap_or(super::SANDBOX_CONTAINER).to_string(),
                    sandbox: container.is_none(),
                    pod_labels: p.labels.clone(),
                    pod_annotations: p.annotations.clone(),
                };
                match containers.get_mut(id) {
                    Some(e) => {
                        changed |= e.value != names;
                        e.value = names;
                        e.last_seen = now;
                    }
                    None => {
                        changed = true;
                        containers.insert(
                            id.clone(),
                            Entry {
                                value: names,
                                last_seen: now,
                            },
                        );
                    }
                }
            }
            let before = containers.len();
            containers.retain(|_, e| now.duration_since(e.last_seen) < self.grace);
            changed |= containers.len() != before;
        }
        {
            let mut pods = self.pods.write().unwrap_or_else(|e| e.into_inner());
            for p in snap.pods.values() {
                let names = PodNames {
                    namespace: p.namespace.clone(),
                    pod: p.name.clone(),
                };
                let fresh = pods.get(&p.uid).is_none_or(|e| e.value != names);
                changed |= fresh;
                pods.insert(
                    p.uid.clone(),
                    Entry {
                        value: names,
                        last_seen: now,
                    },
                );
            }
            let before = pods.len();
            pods.retain(|_, e| now.duration_since(e.last_seen) < self.grace);
            changed |= pods.len() != before;
        }
        if changed {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// The runtime endpoint to use: the configured one, else the first well-known socket found
/// on the node (under `/` or where the host's root or /run is mounted).
pub fn choose_endpoint(configured: Option<&str>) -> Option<String> {
    if let Some(e) = configured {
        return Some(e.to_string());
    }
    ["/", "/host"]
        .iter()
        .flat_map(|root| detect_endpoints(Path::new(root)))
        .next()
}

const REFRESH: Duration = Duration::from_secs(30);
const MIN_GAP: Duration = Duration::from_secs(1);

/// Keeps `cache` filled from the runtime at `endpoint`. Never returns; a runtime that is
/// down is retried and said once, not per attempt.
pub async fn refresh_loop(cache: Arc<NameCache>, endpoint: String) {
    let mut client: Option<CriClient> = None;
    let mut failing = false;
    let mut last = Instant::now() - MIN_GAP;
    loop {
        let since = last.elapsed();
        if since < MIN_GAP {
            tokio::time::sleep(MIN_GAP - since).await;
        }
        last = Instant::now();
        let result = async {
            if client.is_none() {
                let c = CriClient::connect(&endpoint).await?;
                let (name, version) = c.runtime();
                info!(endpoint = %endpoint, runtime = name, version, "container runtime connected: pods are named");
                client = Some(c);
            }
            client.as_mut().expect("just set").snapshot().await
        }
        .await;
        match result {
            Ok(snap) => {
                if failing {
                    info!(endpoint = %endpoint, "container runtime answers again");
                }
                failing = false;
                cache.merge(&snap, Instant::now());
            }
            Err(e) => {
                if !failing {
                    warn!(
                        "{e}; zombies are labelled with pod UID and container ID only until it answers"
                    );
                }
                // Every attempt, at debug level: the warning above is said once.
                debug!("container runtime attempt failed: {e}");
                failing = true;
                client = None;
            }
        }
        tokio::select! {
            _ = cache.missed.notified() => {}
            _ = tokio::time::sleep(REFRESH) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribution::cri::{ContainerMeta, PodMeta};

    fn snap(with_container: bool) -> CriSnapshot {
        let mut s = CriSnapshot::default();
        s.pods.insert(
            "sb1".into(),
            PodMeta {
                sandbox_id: "sb1".into(),
                uid: "uid-1".into(),
                name: "web-0".into(),
                namespace: "shop".into(),
                labels: Default::default(),
                annotations: Default::default(),
            },
        );
        if with_container {
            s.containers.insert(
                "c1".into(),
                ContainerMeta {
                    id: "c1".into(),
                    name: "app".into(),
                    sandbox_id: "sb1".into(),
                    image: "img".into(),
                    labels: Default::default(),
                    annotations: Default::default(),
                },
            );
        }
        s
    }

    /// A sandbox's cgroup carries its sandbox ID: the runtime's list of sandboxes, not the
    /// ID's shape, makes it the pod's sandbox, named `POD` (no series per pod by its ID).
    #[test]
    fn a_sandbox_id_is_named_as_the_pods_sandbox() {
        let cache = NameCache::new(Duration::from_secs(60));
        cache.merge(&snap(true), Instant::now());
        let sb = cache.container("sb1").unwrap();
        assert!(sb.sandbox);
        assert_eq!(sb.container, crate::attribution::SANDBOX_CONTAINER);
        assert_eq!((sb.namespace.as_str(), sb.pod.as_str()), ("shop", "web-0"));
        let c = cache.container("c1").unwrap();
        assert!(!c.sandbox);
        assert_eq!(c.container, "app");
    }

    #[test]
    fn merges_and_keeps_gone_containers_for_the_grace_period() {
        let cache = NameCache::new(Duration::from_secs(60));
        let t0 = Instant::now();
        cache.merge(&snap(true), t0);
        let g = cache.generation();
        assert_eq!(cache.container("c1").unwrap().pod, "web-0");
        assert_eq!(cache.pod("uid-1").unwrap().namespace, "shop");
        // The same snapshot changes nothing.
        cache.merge(&snap(true), t0);
        assert_eq!(cache.generation(), g);
        // The container is gone from the runtime but within the grace period: kept.
        cache.merge(&snap(false), t0 + Duration::from_secs(30));
        assert_eq!(cache.container("c1").unwrap().container, "app");
        // After it: forgotten.
        cache.merge(&snap(false), t0 + Duration::from_secs(61));
        assert!(cache.container("c1").is_none());
        assert!(cache.generation() > g);
    }

    /// An unknown ID asks for one listing, not one per lookup; after the retry period it
    /// may ask again; the set of remembered misses is bounded.
    #[test]
    fn an_unknown_id_triggers_one_listing_per_retry_period() {
        let cache = NameCache::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(cache.miss("deadbeef", t0));
        for i in 1..100 {
            assert!(!cache.miss("deadbeef", t0 + Duration::from_millis(i * 10)));
        }
        assert!(cache.miss("deadbeef", t0 + MISS_RETRY));
        for i in 0..MAX_MISSES {
            cache.miss(&format!("id{i}"), t0 + MISS_RETRY);
        }
        let before = crate::bounds::count(crate::bounds::Bound::RuntimeMisses);
        assert!(!cache.miss("one-too-many", t0 + MISS_RETRY));
        assert!(crate::bounds::count(crate::bounds::Bound::RuntimeMisses) > before);
        // Once they age out, new misses ask again.
        assert!(cache.miss("one-too-many", t0 + 2 * MISS_RETRY + Duration::from_secs(1)));
        // Lookups through the public API go through the same gate.
        assert!(cache.container("nope").is_none());
        assert!(cache.pod("nope-uid").is_none());
    }

    #[test]
    fn a_configured_endpoint_wins() {
        assert_eq!(
            choose_endpoint(Some("unix:///x.sock")).as_deref(),
            Some("unix:///x.sock")
        );
    }
}
