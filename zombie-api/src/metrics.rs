//! Prometheus metrics. Counters and the latency histogram are fed from what applying an
//! event did, in one place ([`Metrics::record`]); the per-container gauges are read from the
//! published [`Snapshot`] at scrape time, so a container whose zombies are gone has no
//! series left, and a scrape neither locks the table nor reads /proc.

use std::sync::Arc;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
    core::{Collector, Desc},
    proto::MetricFamily,
};
use tokio::sync::watch;

use crate::{
    audit, clock,
    snapshot::Snapshot,
    tracker::{Applied, Event},
};

/// What the collectors read: the last published snapshot.
type SnapshotRx = watch::Receiver<Arc<Snapshot>>;

fn current(rx: &SnapshotRx) -> Arc<Snapshot> {
    rx.borrow().clone()
}

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
    /// `events` for exit, free, wait and origin, resolved once (a label lookup per event costs).
    events_by_kind: [IntCounter; 4],
    pub programs_attached: IntGauge,
    pub scan_seconds: Histogram,
    pub remediations: IntCounterVec,
    /// Looks the remediation loop completed (each decides every target and acts): what a
    /// test waits for to know that a decision it expects not to act was taken again.
    pub remediation_passes: IntCounter,
    pub event_delay: Histogram,
    /// Zombies left by exec sessions (exec probes, `kubectl exec`), per container; fed by
    /// the snapshot builder, which attributes them and caps the series.
    pub exec_session_zombies: IntCounterVec,
    /// Bytes of HTTP answers held in memory now (see [`crate::inflight`]).
    pub http_bytes_in_flight: IntGauge,
    /// Readers closed because they stalled while the answer budget was full.
    pub http_readers_shed: IntCounter,
    /// Zombies counted but not listed in detail (above `--max-listed-zombies`).
    pub zombies_unlisted: IntGauge,
}

/// Makes metrics and registers them in one step (a name registered twice is a bug: it
/// panics at start, in every test that makes a `Metrics`).
struct Registrar<'a>(&'a Registry);

impl Registrar<'_> {
    fn add<C: Collector + Clone + 'static>(&self, c: C) -> C {
        self.0.register(Box::new(c.clone())).expect("unique metric");
        c
    }

    fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.add(IntCounter::new(name, help).expect("valid metric"))
    }

    fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.add(IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
    }

    fn gauge(&self, name: &str, help: &str) -> IntGauge {
        self.add(IntGauge::new(name, help).expect("valid metric"))
    }

    fn histogram(&self, name: &str, help: &str, buckets: &[f64]) -> Histogram {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        self.add(Histogram::with_opts(opts).expect("valid metric"))
    }
}

const REAP_LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 1800.0, 3600.0,
];
const SCAN_BUCKETS: &[f64] = &[0.001, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];
const EVENT_DELAY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0,
];

impl Metrics {
    /// The daemon's metrics: the counters fed by [`Self::record`] and the loops, and the
    /// collectors that read the published snapshot at scrape time.
    pub fn new(snapshot: SnapshotRx) -> Self {
        let registry = Registry::new();
        let reg = Registrar(&registry);
        let events = reg.counter_vec(
            "zombie_ebpf_events_total",
            "Events received from the kernel, by kind.",
            &["kind"],
        );
        let resyncs = reg.counter_vec(
            "zombie_resyncs_total",
            "Times the zombie table was rebuilt from /proc, by reason.",
            &["reason"],
        );
        for reason in ["startup", "lost_events", "periodic", "exiting"] {
            resyncs.with_label_values(&[reason]);
        }
        let m = Self {
            exits: reg.counter(
                "zombie_process_exits_total",
                "Processes (whole thread groups) that exited, seen by the eBPF exit probe.",
            ),
            reaped: reg.counter(
                "zombie_reaped_total",
                "Zombie processes that were reaped (their parent or a reaper collected them).",
            ),
            autoreaped: reg.counter(
                "zombie_autoreaped_total",
                "Exited processes the kernel released at once because the parent ignores \
                 SIGCHLD.",
            ),
            reap_latency: reg.histogram(
                "zombie_reap_latency_seconds",
                "Time from a process's exit to its reap.",
                REAP_LATENCY_BUCKETS,
            ),
            events_lost: reg.counter(
                "zombie_ebpf_events_lost_total",
                "Events the kernel could not queue because the ring buffer was full; each loss \
                 triggers a resync from /proc.",
            ),
            read_errors: reg.counter(
                "zombie_ebpf_read_errors_total",
                "Kernel memory reads that failed in the eBPF programs (the event was dropped).",
            ),
            reaps_unobserved: reg.counter(
                "zombie_reaps_unobserved_total",
                "Zombies the /proc sweep found reaped whose free event did not arrive within \
                 the grace period after (the kernel never ran the free program for them).",
            ),
            events_by_kind: ["exit", "free", "wait", "origin"]
                .map(|k| events.with_label_values(&[k])),
            events,
            resyncs,
            programs_attached: reg.gauge(
                "zombie_ebpf_programs_attached",
                "eBPF programs attached (5 when healthy).",
            ),
            scan_seconds: reg.histogram(
                "zombie_proc_scan_duration_seconds",
                "Duration of /proc scans.",
                SCAN_BUCKETS,
            ),
            event_delay: reg.histogram(
                "zombie_event_delay_seconds",
                "Time from a kernel event to its application to the zombie table: the wait in \
                 the ring buffer (up to the drain interval) plus any delay of the event loop.",
                EVENT_DELAY_BUCKETS,
            ),
            remediations: reg.counter_vec(
                "zombie_remediations_total",
                "Remediation decisions, by action (sigchld, sigterm, sigkill, stop_container, \
                 none) and result (done, dry_run, refused, failed).",
                &["action", "result"],
            ),
            remediation_passes: reg.counter(
                "zombie_remediation_passes_total",
                "Looks at the zombie table the remediation loop completed (each decides every \
                 target and carries the decisions out).",
            ),
            exec_session_zombies: reg.counter_vec(
                "zombie_exec_session_zombies_total",
                "Zombie processes exec sessions (exec probes, kubectl exec, docker exec, \
                 nsenter) left behind, per container: counted when one exits with its parent \
                 outside the session, or its parent in the session exits without reaping it.",
                &POD_LABELS,
            ),
            http_bytes_in_flight: reg.gauge(
                "zombie_http_bytes_in_flight",
                "Bytes of HTTP answers (/zombies chunks) held in memory for clients now; \
                 capped by --http-max-bytes-in-flight.",
            ),
            http_readers_shed: reg.counter(
                "zombie_http_readers_shed_total",
                "HTTP clients cut off because they stopped reading their answer while the \
                 answer budget (--http-max-bytes-in-flight) was full; the slowest go first.",
            ),
            zombies_unlisted: reg.gauge(
                "zombie_processes_unlisted",
                "Zombie processes counted in zombie_processes (exactly) but not listed in \
                 /zombies: above --max-listed-zombies only the oldest and the newest are kept \
                 in detail.",
            ),
            // A handle on the same registry (it is shared, not copied).
            registry: registry.clone(),
        };
        register_collectors(&reg, snapshot);
        m
    }

    /// Records what applying an event did: the one place the table's counters are fed.
    pub fn record(&self, ev: &Event, applied: Applied) {
        match ev {
            Event::Exit(_) => self.events_by_kind[0].inc(),
            Event::Free { .. } => self.events_by_kind[1].inc(),
            Event::Wait { .. } => self.events_by_kind[2].inc(),
            Event::Origin(_) => self.events_by_kind[3].inc(),
            _ => {}
        }
        let c = applied.counts();
        self.exits.inc_by(c.exits);
        self.autoreaped.inc_by(c.autoreaped);
        self.reaped.inc_by(c.reaped);
        self.reaps_unobserved.inc_by(c.reaps_unobserved);
        if let Some(ns) = c.reap_latency_ns {
            self.reap_latency.observe(ns as f64 / 1e9);
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

/// What is read at scrape time: the build info, the snapshot's collectors and the work
/// bounds. (The daemon adds its own process's collector: it reads /proc/self.)
fn register_collectors(reg: &Registrar<'_>, snapshot: SnapshotRx) {
    let build_info = reg.add(
        IntGaugeVec::new(
            Opts::new("zombie_build_info", "Build information; always 1."),
            &["version", "revision"],
        )
        .expect("valid metric"),
    );
    build_info
        .with_label_values(&[
            env!("CARGO_PKG_VERSION"),
            option_env!("ZOMBIE_GIT_REVISION").unwrap_or("unknown"),
        ])
        .set(1);
    let r = reg.0;
    r.register(Box::new(TableCollector::new(snapshot.clone())))
        .expect("unique metric");
    r.register(Box::new(BudgetCollector::new(snapshot.clone())))
        .expect("unique metric");
    r.register(Box::new(InitCollector::new(snapshot)))
        .expect("unique metric");
    r.register(Box::new(crate::bounds::BoundsCollector::new()))
        .expect("unique metric");
}

/// `zombie_processes`, `zombie_oldest_age_seconds` and `zombie_processes_by_cause` per
/// container, from the snapshot (capped there, see [`crate::snapshot::MAX_CONTAINER_SERIES`]).
struct TableCollector {
    snapshot: SnapshotRx,
    descs: Vec<Desc>,
}

impl TableCollector {
    fn new(snapshot: SnapshotRx) -> Self {
        let descs = Self::vecs()
            .iter()
            .flat_map(|v| v.desc().into_iter().cloned())
            .collect();
        Self { snapshot, descs }
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
        let snapshot = current(&self.snapshot);
        let z = &snapshot.zombies;
        for (l, origin, n) in &z.by_origin {
            let [namespace, pod, container] = l.values();
            by_origin
                .with_label_values(&[namespace, pod, container, origin.as_str()])
                .set(*n as f64);
        }
        for (l, cause, n) in &z.by_cause {
            let [namespace, pod, container] = l.values();
            by_cause
                .with_label_values(&[namespace, pod, container, cause.as_str()])
                .set(*n as f64);
        }
        for c in &z.containers {
            let l = c.labels.values();
            count.with_label_values(&l).set(c.count as f64);
            let age = if c.count == 0 {
                0
            } else {
                now.saturating_sub(c.oldest_exited_at)
            };
            oldest.with_label_values(&l).set(age as f64 / 1e9);
        }
        let mut out = count.collect();
        out.extend(oldest.collect());
        out.extend(by_cause.collect());
        out.extend(by_origin.collect());
        out
    }
}

/// The PID budget of the node, its pods and containers, from the snapshot.
struct BudgetCollector {
    snapshot: SnapshotRx,
    descs: Vec<Desc>,
}

struct BudgetVecs {
    node_pids: prometheus::Gauge,
    node_limit: prometheus::Gauge,
    pod_pids: prometheus::GaugeVec,
    pod_limit: prometheus::GaugeVec,
    container_pids: prometheus::GaugeVec,
    container_limit: prometheus::GaugeVec,
    pod_max_events: prometheus::CounterVec,
    container_max_events: prometheus::CounterVec,
}

impl BudgetVecs {
    fn new() -> Self {
        let gauge =
            |name: &str, help: &str| prometheus::Gauge::new(name, help).expect("valid metric");
        let vec = |name: &str, help: &str, labels: &[&str]| {
            prometheus::GaugeVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        let pod = &POD_LABELS[..2];
        // The kernel keeps these counts; a fresh counter per scrape reports its value.
        let counter = |name: &str, help: &str, labels: &[&str]| {
            prometheus::CounterVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
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
            pod_max_events: counter(
                "zombie_pod_pids_max_events_total",
                "Forks refused in the pod because a PID limit was reached (pids.events max).",
                pod,
            ),
            container_max_events: counter(
                "zombie_container_pids_max_events_total",
                "Forks refused in the container because a PID limit was reached (pids.events max).",
                &POD_LABELS,
            ),
        }
    }

    fn collectors(&self) -> [&dyn Collector; 8] {
        [
            &self.node_pids,
            &self.node_limit,
            &self.pod_pids,
            &self.pod_limit,
            &self.container_pids,
            &self.container_limit,
            &self.pod_max_events,
            &self.container_max_events,
        ]
    }
}

impl BudgetCollector {
    fn new(snapshot: SnapshotRx) -> Self {
        let descs = BudgetVecs::new()
            .collectors()
            .iter()
            .flat_map(|c| c.desc().into_iter().cloned())
            .collect();
        Self { snapshot, descs }
    }
}

impl Collector for BudgetCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let v = BudgetVecs::new();
        let mut out = Vec::new();
        let snapshot = current(&self.snapshot);
        let budget = &snapshot.budget;
        if let Some(node) = &budget.node {
            v.node_pids.set(node.used as f64);
            v.node_limit.set(node.limit as f64);
            out.extend(v.node_pids.collect());
            out.extend(v.node_limit.collect());
        }
        for (c, labels) in &budget.cgroups {
            let [ns, pod, _] = labels.values();
            if c.container_id.is_some() {
                let l = labels.values();
                v.container_pids.with_label_values(&l).set(c.current as f64);
                if let Some(max) = c.max {
                    v.container_limit.with_label_values(&l).set(max as f64);
                }
                if let Some(n) = c.max_events {
                    v.container_max_events
                        .with_label_values(&l)
                        .inc_by(n as f64);
                }
            } else {
                let l = [ns, pod];
                v.pod_pids.with_label_values(&l).set(c.current as f64);
                if let Some(max) = c.max {
                    v.pod_limit.with_label_values(&l).set(max as f64);
                }
                if let Some(n) = c.max_events {
                    v.pod_max_events.with_label_values(&l).inc_by(n as f64);
                }
            }
        }
        for c in &v.collectors()[2..] {
            out.extend(c.collect());
        }
        out
    }
}

/// At most this many `zombie_container_init_info` series (one per container; a node with
/// more containers than this is beyond any kubelet's pod limit).
pub const MAX_INIT_SERIES: usize = 5_000;

/// `zombie_container_init_info`: what every container's PID 1 is, from the snapshot's
/// init audit.
struct InitCollector {
    snapshot: SnapshotRx,
    descs: Vec<Desc>,
}
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
    fn new(snapshot: SnapshotRx) -> Self {
        Self {
            snapshot,
            descs: Self::vec()
                .desc()
                .into_iter()
                .chain(Self::teardown_vec().desc())
                .chain(Self::injected_gauge().desc())
                .cloned()
                .collect(),
        }
    }

    fn teardown_vec() -> prometheus::GaugeVec {
        prometheus::GaugeVec::new(
            Opts::new(
                "zombie_pid_namespace_teardown_stuck",
                "Members left in a container's PID namespace whose init has exited and waits \
                 for them to die (the pod hangs in Terminating); absent when none.",
            ),
            &POD_LABELS,
        )
        .expect("valid metric")
    }

    fn injected_gauge() -> IntGauge {
        IntGauge::new(
            "zombie_injected_init_containers",
            "Running containers whose PID 1 is the init the zombie-init RuntimeClass injected \
             (its executable is the node's installed init, by device and inode).",
        )
        .expect("valid metric")
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
        let snapshot = current(&self.snapshot);
        let v = Self::vec();
        let stuck = Self::teardown_vec();
        let mut series = 0usize;
        for a in &snapshot.audit.containers {
            let crate::attribution::Labels {
                namespace: ns,
                pod,
                container,
            } = audit::labels(a);
            if let Some(t) = &a.pid_namespace_teardown {
                stuck
                    .with_label_values(&[ns.as_str(), pod.as_str(), container.as_str()])
                    .set(t.members.len() as f64);
            }
            // A sandbox is the pod's machinery, not a container: one series per pod named
            // by its sandbox ID would tell nothing (its teardown above still counts).
            if a.sandbox {
                continue;
            }
            // The executable, not the comm: a PID 1 that renames itself would make a new
            // series each time.
            let Some(pid1) = a.pid1_exe.as_ref().or(a.pid1_comm.as_ref()) else {
                continue;
            };
            if series == MAX_INIT_SERIES {
                crate::bounds::reached(
                    crate::bounds::Bound::InitInfoSeries,
                    &format!(
                        "zombie_container_init_info keeps {MAX_INIT_SERIES} series; the other \
                         containers are in /audit only"
                    ),
                );
            }
            if series >= MAX_INIT_SERIES {
                continue;
            }
            series += 1;
            let kind = match a.kind {
                Some(crate::diagnosis::ReaperKind::Init) => "init",
                Some(crate::diagnosis::ReaperKind::Shell) => "shell",
                _ => "application",
            };
            v.with_label_values(&[
                ns.as_str(),
                pod.as_str(),
                container.as_str(),
                pid1.as_str(),
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
        let injected = Self::injected_gauge();
        injected.set(
            snapshot
                .audit
                .containers
                .iter()
                .filter(|a| a.injected_init)
                .count() as i64,
        );
        let mut out = v.collect();
        out.extend(stuck.collect());
        out.extend(injected.collect());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::{Comm, Exit, ExitFlags, Ns, Origin, ProcKey, Tracker};

    const MS: Ns = 1_000_000;

    fn key(pid: u32) -> ProcKey {
        ProcKey {
            pid,
            start_ticks: 1,
        }
    }

    fn exit(pid: u32, at: Ns, autoreap: bool) -> Event {
        Event::Exit(Exit {
            key: key(pid),
            at,
            ppid: 1,
            parent_start_ticks: 1,
            comm: Comm::new("child"),
            parent_comm: Comm::new("parent"),
            wait_status: 0,
            cgroup_id: 1,
            flags: ExitFlags {
                autoreap,
                ..ExitFlags::default()
            },
            origin: Origin::default(),
        })
    }

    /// Every counter `record` feeds, from a sequence applied to a real tracker; the
    /// expected values are counted by hand, not by the mapping under test.
    #[test]
    fn record_counts_what_applying_events_did() {
        let (_tx, rx) = watch::channel(Arc::new(Snapshot::default()));
        let m = Metrics::new(rx);
        let mut t = Tracker::default();
        let evs = [
            exit(10, MS, false),
            exit(11, 2 * MS, false),
            exit(12, 3 * MS, true),
            // A duplicate exit: an event, not an exit.
            exit(10, MS, false),
            Event::Wait {
                pid: 1,
                target: 0,
                at: 4 * MS,
            },
            // Reaped 250 ms after its exit.
            Event::Free {
                key: key(10),
                at: 251 * MS,
            },
            // A free of a process never seen: an event, no reap.
            Event::Free {
                key: key(99),
                at: 300 * MS,
            },
        ];
        for ev in &evs {
            m.record(ev, t.apply(ev));
        }
        assert_eq!(m.exits.get(), 3);
        assert_eq!(m.autoreaped.get(), 1);
        assert_eq!(m.reaped.get(), 1);
        assert_eq!(m.reaps_unobserved.get(), 0);
        assert_eq!(m.reap_latency.get_sample_count(), 1);
        assert!((m.reap_latency.get_sample_sum() - 0.25).abs() < 1e-9);
        let kind = |k: &str| m.events.with_label_values(&[k]).get();
        assert_eq!(
            (kind("exit"), kind("free"), kind("wait"), kind("origin")),
            (4, 2, 1, 0)
        );
        // A vanished zombie whose free never came: counted unobserved after its grace.
        let vanished = Event::Vanished {
            key: key(11),
            at: 400 * MS,
        };
        m.record(&vanished, t.apply(&vanished));
        let grace = Event::GraceElapsed {
            now: 3_000 * MS,
            grace: 2_000 * MS,
        };
        m.record(&grace, t.apply(&grace));
        assert_eq!(m.reaps_unobserved.get(), 1);
        assert_eq!(m.reaped.get(), 1);
    }
}
