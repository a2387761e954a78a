//! Prometheus metrics. Counters and the latency histogram are updated as events are
//! applied; the per-container zombie gauges are computed from the table at scrape time, so a
//! container whose zombies are gone has no series left.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
    core::{Collector, Desc},
    proto::MetricFamily,
};
use rustc_hash::FxHashMap;

use crate::{
    audit, budget, clock,
    diagnosis::Cause,
    tracker::{Applied, OriginKind, Tracker},
    view::{Attributor, Diagnoser},
};

/// The labels every per-container series carries (empty for host processes).
pub const POD_LABELS: [&str; 3] = ["namespace", "pod", "container"];

pub struct Metrics {
    pub registry: Registry,
    pub exits: IntCounter,
    pub reaped: IntCounter,
    pub autoreaped: IntCounter,
    pub reap_latency: Histogram,
    pub events_lost: IntCounter,
    pub read_errors: IntCounter,
    pub reaps_unobserved: IntCounter,
    pub resyncs: IntCounterVec,
    pub events: IntCounterVec,
    pub programs_attached: IntGauge,
    pub scan_seconds: Histogram,
    pub remediations: IntCounterVec,
    /// Zombies left by exec sessions (exec probes, `kubectl exec`), per container.
    pub exec_session_zombies: IntCounterVec,
    exec_session_series: Mutex<rustc_hash::FxHashSet<[String; 3]>>,
}

fn counter(name: &str, help: &str) -> IntCounter {
    IntCounter::new(name, help).expect("valid metric")
}

impl Metrics {
    pub fn new(
        tracker: Arc<Mutex<Tracker>>,
        attributor: Arc<Mutex<Attributor>>,
        proc_root: &Path,
        cgroup_root: &Path,
    ) -> Self {
        let registry = Registry::new();
        let exits = counter(
            "zombie_process_exits_total",
            "Processes (whole thread groups) that exited, seen by the eBPF exit probe.",
        );
        let reaped = counter(
            "zombie_reaped_total",
            "Zombie processes that were reaped (their parent or a reaper collected them).",
        );
        let autoreaped = counter(
            "zombie_autoreaped_total",
            "Exited processes the kernel released at once because the parent ignores SIGCHLD.",
        );
        let reap_latency = Histogram::with_opts(
            HistogramOpts::new(
                "zombie_reap_latency_seconds",
                "Time from a process's exit to its reap.",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 1800.0, 3600.0,
            ]),
        )
        .expect("valid metric");
        let events_lost = counter(
            "zombie_ebpf_events_lost_total",
            "Events the kernel could not queue because the ring buffer was full; each loss \
             triggers a resync from /proc.",
        );
        let read_errors = counter(
            "zombie_ebpf_read_errors_total",
            "Kernel memory reads that failed in the eBPF programs (the event was dropped).",
        );
        let reaps_unobserved = counter(
            "zombie_reaps_unobserved_total",
            "Zombies the /proc sweep found reaped whose free event did not arrive within the \
             grace period after (the kernel never ran the free program for them).",
        );
        let resyncs = IntCounterVec::new(
            Opts::new(
                "zombie_resyncs_total",
                "Times the zombie table was rebuilt from /proc, by reason.",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let events = IntCounterVec::new(
            Opts::new(
                "zombie_ebpf_events_total",
                "Events received from the kernel, by kind.",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let programs_attached = IntGauge::new(
            "zombie_ebpf_programs_attached",
            "eBPF programs attached (5 when healthy).",
        )
        .expect("valid metric");
        let scan_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "zombie_proc_scan_duration_seconds",
                "Duration of /proc scans.",
            )
            .buckets(vec![0.001, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]),
        )
        .expect("valid metric");
        let remediations = IntCounterVec::new(
            Opts::new(
                "zombie_remediations_total",
                "Remediation decisions, by action (sigchld, sigterm, sigkill, stop_container, \
                 none) and result (done, dry_run, refused, failed).",
            ),
            &["action", "result"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(remediations.clone()))
            .expect("unique metric");
        let build_info = IntGaugeVec::new(
            Opts::new("zombie_build_info", "Build information; always 1."),
            &["version", "revision"],
        )
        .expect("valid metric");
        build_info
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                option_env!("ZOMBIE_GIT_REVISION").unwrap_or("unknown"),
            ])
            .set(1);

        for c in [
            &exits,
            &reaped,
            &autoreaped,
            &events_lost,
            &read_errors,
            &reaps_unobserved,
        ] {
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
        }
        registry
            .register(Box::new(reap_latency.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(resyncs.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(events.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(programs_attached.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(scan_seconds.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(build_info))
            .expect("unique metric");
        // process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds, ...: the
        // daemon's own use, to watch against the pod's limits. Read from /proc/self, which
        // is this process whatever --proc-root says.
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("unique metric");
        registry
            .register(Box::new(TableCollector::new(tracker, attributor.clone())))
            .expect("unique metric");
        registry
            .register(Box::new(BudgetCollector::new(
                proc_root,
                cgroup_root,
                attributor.clone(),
            )))
            .expect("unique metric");
        registry
            .register(Box::new(InitCollector::new(
                proc_root,
                cgroup_root,
                attributor,
            )))
            .expect("unique metric");
        let exec_session_zombies = IntCounterVec::new(
            Opts::new(
                "zombie_exec_session_zombies_total",
                "Zombie processes exec sessions (exec probes, kubectl exec, docker exec, \
                 nsenter) left behind, per container: counted when one exits with its parent \
                 outside the session, or its parent in the session exits without reaping it.",
            ),
            &POD_LABELS,
        )
        .expect("valid metric");
        registry
            .register(Box::new(exec_session_zombies.clone()))
            .expect("unique metric");
        for kind in ["exit", "free", "wait", "origin"] {
            events.with_label_values(&[kind]);
        }
        for reason in ["startup", "lost_events", "periodic", "exiting"] {
            resyncs.with_label_values(&[reason]);
        }

        Self {
            registry,
            exits,
            reaped,
            autoreaped,
            reap_latency,
            events_lost,
            reaps_unobserved,
            read_errors,
            resyncs,
            events,
            programs_attached,
            scan_seconds,
            remediations,
            exec_session_zombies,
            exec_session_series: Mutex::default(),
        }
    }

    /// Counts a zombie left by an exec session. Bounded: past [`MAX_CONTAINER_SERIES`]
    /// containers, new ones count into the `_other` series.
    pub fn exec_session_zombie(&self, labels: [String; 3]) {
        let mut seen = self
            .exec_session_series
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let labels = if seen.contains(&labels) || seen.len() < MAX_CONTAINER_SERIES - 1 {
            seen.insert(labels.clone());
            labels
        } else {
            other_labels()
        };
        self.exec_session_zombies
            .with_label_values(&[labels[0].as_str(), labels[1].as_str(), labels[2].as_str()])
            .inc();
    }

    /// Records what an applied event did.
    pub fn record(&self, applied: Applied) {
        match applied {
            Applied::Zombie => self.exits.inc(),
            Applied::Refined => self.exits.inc(),
            Applied::Autoreaped => {
                self.exits.inc();
                self.autoreaped.inc();
            }
            Applied::Reaped { latency_ns } => {
                self.reaped.inc();
                if let Some(ns) = latency_ns {
                    self.reap_latency.observe(ns as f64 / 1e9);
                }
            }
            Applied::ExitAfterFree { latency_ns } => {
                self.exits.inc();
                self.reaped.inc();
                self.reap_latency.observe(latency_ns as f64 / 1e9);
            }
            Applied::Duplicate | Applied::UnknownFree | Applied::Wait | Applied::Origin => {}
        }
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let families = self.registry.gather();
        TextEncoder::new()
            .encode(&families, &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("text encoding is UTF-8")
    }
}

/// At most this many containers get their own zombie series; a node with more containers
/// with zombies is broken enough that the top ones tell the story.
pub const MAX_CONTAINER_SERIES: usize = 500;

/// The labels of the series that sums the containers beyond the cap.
fn other_labels() -> [String; 3] {
    [String::new(), "_other".into(), "_other".into()]
}

/// Keeps the `max - 1` groups with the largest first value and folds the rest into one
/// `_other` group; returns the kept keys when it had to cut.
fn cap_series<V: Default + Ord + Clone>(
    groups: &mut FxHashMap<[String; 3], V>,
    max: usize,
    merge: impl Fn(&mut V, &V),
) -> Option<rustc_hash::FxHashSet<[String; 3]>> {
    if groups.len() <= max {
        return None;
    }
    let mut all: Vec<([String; 3], V)> = groups.drain().collect();
    all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let rest = all.split_off(max - 1);
    let mut other = V::default();
    for (_, v) in &rest {
        merge(&mut other, v);
    }
    let kept = all.iter().map(|(k, _)| k.clone()).collect();
    groups.extend(all);
    groups.insert(other_labels(), other);
    Some(kept)
}

/// `zombie_processes` and `zombie_oldest_age_seconds` per container, from the table.
struct TableCollector {
    tracker: Arc<Mutex<Tracker>>,
    attributor: Arc<Mutex<Attributor>>,
    descs: Vec<Desc>,
}

impl TableCollector {
    fn new(tracker: Arc<Mutex<Tracker>>, attributor: Arc<Mutex<Attributor>>) -> Self {
        let descs = Self::vecs()
            .iter()
            .flat_map(|v| v.desc().into_iter().cloned())
            .collect();
        Self {
            tracker,
            attributor,
            descs,
        }
    }

    fn vecs() -> [prometheus::GaugeVec; 4] {
        let mut by_cause = POD_LABELS.to_vec();
        by_cause.push("cause");
        let mut by_origin = POD_LABELS.to_vec();
        by_origin.push("origin");
        [
            prometheus::GaugeVec::new(
                Opts::new("zombie_processes", "Zombie processes now, per container."),
                &POD_LABELS,
            )
            .expect("valid metric"),
            prometheus::GaugeVec::new(
                Opts::new(
                    "zombie_oldest_age_seconds",
                    "Age of the oldest zombie process, per container.",
                ),
                &POD_LABELS,
            )
            .expect("valid metric"),
            prometheus::GaugeVec::new(
                Opts::new(
                    "zombie_processes_by_cause",
                    "Zombie processes now, per container and diagnosed cause.",
                ),
                &by_cause,
            )
            .expect("valid metric"),
            prometheus::GaugeVec::new(
                Opts::new(
                    "zombie_processes_by_origin",
                    "Zombie processes now, per container and origin (init, exec, host, unknown).",
                ),
                &by_origin,
            )
            .expect("valid metric"),
        ]
    }
}

impl Collector for TableCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let now = clock::boottime_now();
        let [count, oldest, by_cause, by_origin] = Self::vecs();
        let tracker = self.tracker.lock().unwrap_or_else(|e| e.into_inner());
        let mut attributor = self.attributor.lock().unwrap_or_else(|e| e.into_inner());
        let proc_root = attributor.proc_root().to_path_buf();
        let mut diagnoser = Diagnoser::new(&proc_root, &tracker);
        let mut groups: FxHashMap<[String; 3], (u64, u64)> = FxHashMap::default();
        let mut causes: FxHashMap<([String; 3], Cause), u64> = FxHashMap::default();
        let mut origins: FxHashMap<([String; 3], OriginKind), u64> = FxHashMap::default();
        for z in tracker.zombies() {
            let labels = attributor.labels(z);
            *origins.entry((labels.clone(), z.origin.kind)).or_default() += 1;
            *causes
                .entry((labels.clone(), diagnoser.diagnose(z).cause))
                .or_default() += 1;
            let g = groups.entry(labels).or_default();
            g.0 += 1;
            g.1 = g.1.max(z.age_ns(now));
        }
        drop(diagnoser);
        drop(tracker);
        drop(attributor);
        // Bounded cardinality: the containers with the most zombies keep their own series,
        // the rest are summed into one `_other` series.
        let kept = cap_series(&mut groups, MAX_CONTAINER_SERIES, |a, b| {
            a.0 += b.0;
            a.1 = a.1.max(b.1);
        });
        let causes: FxHashMap<([String; 3], Cause), u64> =
            causes
                .into_iter()
                .fold(FxHashMap::default(), |mut m, ((l, c), n)| {
                    let l = if kept.as_ref().is_none_or(|k| k.contains(&l)) {
                        l
                    } else {
                        other_labels()
                    };
                    *m.entry((l, c)).or_default() += n;
                    m
                });
        let fold_other = |l: [String; 3]| {
            if kept.as_ref().is_none_or(|k| k.contains(&l)) {
                l
            } else {
                other_labels()
            }
        };
        let origins: FxHashMap<([String; 3], OriginKind), u64> =
            origins
                .into_iter()
                .fold(FxHashMap::default(), |mut m, ((l, o), n)| {
                    *m.entry((fold_other(l), o)).or_default() += n;
                    m
                });
        for ((l, origin), n) in &origins {
            by_origin
                .with_label_values(&[l[0].as_str(), l[1].as_str(), l[2].as_str(), origin.as_str()])
                .set(*n as f64);
        }
        for ((l, cause), n) in &causes {
            by_cause
                .with_label_values(&[l[0].as_str(), l[1].as_str(), l[2].as_str(), cause.as_str()])
                .set(*n as f64);
        }
        if groups.is_empty() {
            // One zero series so that sum() over the node is 0, not empty.
            groups.insert(Default::default(), (0, 0));
        }
        for (labels, (n, age)) in &groups {
            let l = [labels[0].as_str(), labels[1].as_str(), labels[2].as_str()];
            count.with_label_values(&l).set(*n as f64);
            oldest.with_label_values(&l).set(*age as f64 / 1e9);
        }
        let mut out = count.collect();
        out.extend(oldest.collect());
        out.extend(by_cause.collect());
        out.extend(by_origin.collect());
        out
    }
}

/// The PID budget of the node, its pods and containers, read at scrape time.
struct BudgetCollector {
    proc_root: PathBuf,
    pids_root: Option<PathBuf>,
    attributor: Arc<Mutex<Attributor>>,
    descs: Vec<Desc>,
}

struct BudgetVecs {
    node_pids: prometheus::Gauge,
    node_limit: prometheus::Gauge,
    pod_pids: prometheus::GaugeVec,
    pod_limit: prometheus::GaugeVec,
    container_pids: prometheus::GaugeVec,
    container_limit: prometheus::GaugeVec,
}

impl BudgetVecs {
    fn new() -> Self {
        let gauge =
            |name: &str, help: &str| prometheus::Gauge::new(name, help).expect("valid metric");
        let vec = |name: &str, help: &str, labels: &[&str]| {
            prometheus::GaugeVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        let pod = &POD_LABELS[..2];
        Self {
            node_pids: gauge(
                "zombie_node_pids",
                "PIDs in use on the node: every process and thread (zombies included) holds one.",
            ),
            node_limit: gauge(
                "zombie_node_pid_limit",
                "The node's effective PID limit: the smaller of kernel.pid_max and kernel.threads-max.",
            ),
            pod_pids: vec(
                "zombie_pod_pids",
                "PIDs charged to the pod's cgroup (pids.current).",
                pod,
            ),
            pod_limit: vec(
                "zombie_pod_pids_limit",
                "The pod's PID limit (pids.max); absent when unlimited.",
                pod,
            ),
            container_pids: vec(
                "zombie_container_pids",
                "PIDs charged to the container's cgroup (pids.current).",
                &POD_LABELS,
            ),
            container_limit: vec(
                "zombie_container_pids_limit",
                "The container's PID limit (pids.max); absent when unlimited.",
                &POD_LABELS,
            ),
        }
    }

    fn collectors(&self) -> [&dyn Collector; 6] {
        [
            &self.node_pids,
            &self.node_limit,
            &self.pod_pids,
            &self.pod_limit,
            &self.container_pids,
            &self.container_limit,
        ]
    }
}

impl BudgetCollector {
    fn new(proc_root: &Path, cgroup_root: &Path, attributor: Arc<Mutex<Attributor>>) -> Self {
        let descs = BudgetVecs::new()
            .collectors()
            .iter()
            .flat_map(|c| c.desc().into_iter().cloned())
            .collect();
        Self {
            proc_root: proc_root.to_path_buf(),
            pids_root: crate::cgroups::pids_root(cgroup_root),
            attributor,
            descs,
        }
    }
}

impl Collector for BudgetCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let v = BudgetVecs::new();
        let mut out = Vec::new();
        if let Some(node) = budget::node(&self.proc_root) {
            v.node_pids.set(node.used as f64);
            v.node_limit.set(node.limit as f64);
            out.extend(v.node_pids.collect());
            out.extend(v.node_limit.collect());
        }
        let Some(root) = &self.pids_root else {
            return out;
        };
        let cgroups = budget::pods(root);
        let mut attributor = self.attributor.lock().unwrap_or_else(|e| e.into_inner());
        for c in &cgroups {
            let [ns, pod, container] = attributor.for_path(&c.path).labels();
            if c.container_id.is_some() {
                let l = [ns.as_str(), pod.as_str(), container.as_str()];
                v.container_pids.with_label_values(&l).set(c.current as f64);
                if let Some(max) = c.max {
                    v.container_limit.with_label_values(&l).set(max as f64);
                }
            } else {
                let l = [ns.as_str(), pod.as_str()];
                v.pod_pids.with_label_values(&l).set(c.current as f64);
                if let Some(max) = c.max {
                    v.pod_limit.with_label_values(&l).set(max as f64);
                }
            }
        }
        drop(attributor);
        for c in [
            &v.pod_pids,
            &v.pod_limit,
            &v.container_pids,
            &v.container_limit,
        ] {
            out.extend(c.collect());
        }
        out
    }
}

/// `zombie_container_init_info`: what every container's PID 1 is, from the init audit.
/// The audit reads /proc for every container, so its result is reused for `AUDIT_TTL`.
struct InitCollector {
    proc_root: PathBuf,
    pids_root: Option<PathBuf>,
    attributor: Arc<Mutex<Attributor>>,
    cache: Mutex<Option<(std::time::Instant, Vec<audit::ContainerAudit>)>>,
    descs: Vec<Desc>,
}

const AUDIT_TTL: std::time::Duration = std::time::Duration::from_secs(15);
const INIT_LABELS: [&str; 8] = [
    "namespace",
    "pod",
    "container",
    "pid1",
    "kind",
    "reaps",
    "handles_sigterm",
    "shared_pid_namespace",
];

impl InitCollector {
    fn new(proc_root: &Path, cgroup_root: &Path, attributor: Arc<Mutex<Attributor>>) -> Self {
        Self {
            proc_root: proc_root.to_path_buf(),
            pids_root: crate::cgroups::pids_root(cgroup_root),
            attributor,
            cache: Mutex::new(None),
            descs: Self::vec().desc().into_iter().cloned().collect(),
        }
    }

    fn vec() -> prometheus::GaugeVec {
        prometheus::GaugeVec::new(
            Opts::new(
                "zombie_container_init_info",
                "A container's PID 1: what it is, whether it reaps orphans and handles SIGTERM; \
                 always 1.",
            ),
            &INIT_LABELS,
        )
        .expect("valid metric")
    }
}

impl Collector for InitCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Some(root) = &self.pids_root else {
            return Vec::new();
        };
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache
            .as_ref()
            .is_none_or(|(at, _)| at.elapsed() > AUDIT_TTL)
        {
            let mut audits = audit::audit(&self.proc_root, root);
            let mut attributor = self.attributor.lock().unwrap_or_else(|e| e.into_inner());
            audit::name(&mut audits, &mut attributor);
            *cache = Some((std::time::Instant::now(), audits));
        }
        let v = Self::vec();
        for a in cache
            .as_ref()
            .map(|(_, a)| a.as_slice())
            .unwrap_or_default()
        {
            let Some(comm) = &a.pid1_comm else { continue };
            // A container removed since the audit has no series left (one stat each).
            if !root.join(a.cgroup_path.trim_start_matches('/')).exists() {
                continue;
            }
            let [ns, pod, container] = audit::labels(a);
            let kind = match a.kind {
                Some(crate::diagnosis::ReaperKind::Init) => "init",
                Some(crate::diagnosis::ReaperKind::Shell) => "shell",
                _ => "application",
            };
            v.with_label_values(&[
                ns.as_str(),
                pod.as_str(),
                container.as_str(),
                comm.as_str(),
                kind,
                if a.reaps { "true" } else { "false" },
                if a.handles_sigterm { "true" } else { "false" },
                if a.shared_pid_namespace {
                    "true"
                } else {
                    "false"
                },
            ])
            .set(1.0);
        }
        v.collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_capped_into_other() {
        let mut groups: FxHashMap<[String; 3], (u64, u64)> = FxHashMap::default();
        for i in 0..10u64 {
            groups.insert([String::new(), format!("pod{i}"), "c".into()], (i, i * 10));
        }
        let kept = cap_series(&mut groups, 4, |a, b| {
            a.0 += b.0;
            a.1 = a.1.max(b.1);
        })
        .unwrap();
        assert_eq!(groups.len(), 4);
        assert_eq!(kept.len(), 3);
        // pods 9, 8, 7 keep their series; 0..=6 sum to 21 zombies, oldest 60.
        assert_eq!(groups[&other_labels()], (21, 60));
        assert!(groups.contains_key(&[String::new(), "pod9".into(), "c".into()]));
        let total: u64 = groups.values().map(|v| v.0).sum();
        assert_eq!(total, 45);
        assert!(cap_series(&mut groups, 4, |_, _| {}).is_none());
    }

    #[test]
    fn exec_session_zombies_are_counted_per_container_up_to_the_cap() {
        let root = Path::new("/nonexistent");
        let m = Metrics::new(
            Arc::new(Mutex::new(Tracker::default())),
            Arc::new(Mutex::new(Attributor::new(root, root, None))),
            root,
            root,
        );
        let labels = |i: usize| ["shop".to_string(), format!("web-{i}"), "app".to_string()];
        m.exec_session_zombie(labels(0));
        m.exec_session_zombie(labels(0));
        for i in 1..MAX_CONTAINER_SERIES + 10 {
            m.exec_session_zombie(labels(i));
        }
        let c = &m.exec_session_zombies;
        assert_eq!(c.with_label_values(&["shop", "web-0", "app"]).get(), 2);
        // 500 series at most: 499 containers of their own, the 11 beyond in `_other`.
        let last_kept = format!("web-{}", MAX_CONTAINER_SERIES - 2);
        assert_eq!(c.with_label_values(&["shop", &last_kept, "app"]).get(), 1);
        assert_eq!(c.with_label_values(&["", "_other", "_other"]).get(), 11);
        // A container that has its series keeps counting there.
        m.exec_session_zombie(labels(0));
        assert_eq!(c.with_label_values(&["shop", "web-0", "app"]).get(), 3);
        assert!(m.render().contains(
            "zombie_exec_session_zombies_total{container=\"app\",namespace=\"shop\",pod=\"web-0\"} 3"
        ));
    }
}
