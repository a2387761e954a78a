//! `zombie-daemon run`: wires the probe, the tracker, /proc and the HTTP API together.
//!
//! One task owns the probe and applies events in batches; /proc scans run on the blocking
//! pool while events keep flowing, and are reconciled against the table when done.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use tokio::{signal::unix::SignalKind, task::JoinHandle, time::MissedTickBehavior};
use tracing::{debug, info, warn};

use crate::{
    attribution::names::{self, NameCache},
    clock,
    metrics::Metrics,
    probe::{Probe, ProbeConfig, TickConverter},
    procfs::{ProcFs, ScanError},
    remediate::{Engine, Mode, Remediator},
    tracker::{Event, Ns, Scan, Tracker},
    view::Attributor,
};

#[derive(Clone, Debug)]
pub struct RunConfig {
    pub listen: SocketAddr,
    pub proc_root: PathBuf,
    pub cgroup_root: PathBuf,
    pub probe: ProbeConfig,
    /// The CRI socket (`unix:///...`); None: look for a well-known one.
    pub runtime_endpoint: Option<String>,
    /// How long a container that vanished from the runtime keeps its names.
    pub names_grace: Duration,
    /// How often pending events are drained when the kernel has not asked for a wakeup.
    pub drain_interval: Duration,
    /// A full /proc resync this often, as a safety net (zero: never).
    pub resync_interval: Duration,
    pub remediate: crate::remediate::Mode,
    pub policy: crate::remediate::Policy,
    /// Full command lines in /zombies and /audit (`--show-cmdlines`); else redacted.
    pub show_cmdlines: bool,
}

/// State shared with the HTTP handlers.
pub struct Shared {
    pub tracker: Arc<Mutex<Tracker>>,
    pub attributor: Arc<Mutex<Attributor>>,
    pub metrics: Metrics,
    pub ready: AtomicBool,
    /// CLOCK_BOOTTIME of the event loop's last iteration (for /healthz).
    pub heartbeat: AtomicU64,
    pub proc_root: PathBuf,
    /// The hierarchy that lists container processes (for the init audit).
    pub pids_root: Option<PathBuf>,
    /// Recent remediation decisions (for /remediations).
    pub remediations: Arc<Mutex<std::collections::VecDeque<crate::remediate::Decision>>>,
    /// Full command lines in /audit (`--show-cmdlines`); /zombies reads the attributor's.
    pub show_cmdlines: bool,
}

impl Shared {
    /// The init audit of every container on the node, with names.
    pub fn audit(&self) -> Vec<crate::audit::ContainerAudit> {
        let Some(root) = &self.pids_root else {
            return Vec::new();
        };
        let mut audits = crate::audit::audit(&self.proc_root, root);
        let mut attributor = self.attributor.lock().unwrap_or_else(|e| e.into_inner());
        crate::audit::name(&mut audits, &mut attributor);
        crate::audit::redact(&mut audits, self.show_cmdlines);
        audits
    }
}

/// Why the table is rebuilt from /proc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ResyncReason {
    Startup,
    LostEvents,
    Periodic,
    /// A scan found processes in the middle of exiting that the table did not know.
    Exiting,
}

impl ResyncReason {
    fn as_str(self) -> &'static str {
        match self {
            Self::Startup => "startup",
            Self::LostEvents => "lost_events",
            Self::Periodic => "periodic",
            Self::Exiting => "exiting",
        }
    }
}

type ScanTask = JoinHandle<(Result<Scan, ScanError>, Duration)>;

/// A resync in flight: when it started and why.
struct Resync {
    started: Ns,
    reason: ResyncReason,
    task: ScanTask,
}

/// Losses are checked this often; a resync starts at most once per `RESYNC_MIN_GAP`.
const COUNTER_POLL: Duration = Duration::from_millis(250);
const RESYNC_MIN_GAP: Duration = Duration::from_secs(1);
const PARENT_REFRESH: Duration = Duration::from_secs(1);
/// Reparented zombies re-read per refresh, to bound the time the loop spends in /proc.
const PARENT_REFRESH_BATCH: usize = 512;
/// Zombies checked for existence per refresh (see [`sweep`]), and how old they must be.
const SWEEP_BATCH: usize = 512;
const SWEEP_MIN_AGE: Duration = Duration::from_secs(1);
/// How long a free event may come after the sweep found its zombie gone from /proc and
/// still count as an ordinary reap: the free fires an RCU grace period after wait() and is
/// drained on a timer, and under heavy churn both stretch to hundreds of milliseconds.
const VANISH_GRACE: Duration = Duration::from_secs(2);

pub async fn run(cfg: RunConfig) -> anyhow::Result<()> {
    // The HTTP connection cap is derived from this limit.
    let open_files = crate::http::raise_open_files_limit();
    match &open_files.error {
        None => info!(
            soft_before = ?open_files.soft_before,
            soft = ?open_files.soft,
            hard = ?open_files.hard,
            "open files limit (RLIMIT_NOFILE): soft raised to hard"
        ),
        Some(e) => warn!(
            soft = ?open_files.soft,
            hard = ?open_files.hard,
            "cannot raise the open files limit (RLIMIT_NOFILE) to its hard limit: {e}"
        ),
    }
    let listener = crate::http::bind(cfg.listen)
        .with_context(|| format!("cannot listen on {} (--listen)", cfg.listen))?;
    let local = listener.local_addr()?;

    let ticks = TickConverter::from_system();
    let procfs = ProcFs::new(&cfg.proc_root, ticks);
    let tracker = Arc::new(Mutex::new(Tracker::default()));
    let endpoint = names::choose_endpoint(cfg.runtime_endpoint.as_deref());
    let names = match endpoint.clone() {
        Some(endpoint) => {
            let cache = Arc::new(NameCache::new(cfg.names_grace));
            tokio::spawn(names::refresh_loop(cache.clone(), endpoint));
            Some(cache)
        }
        None => {
            warn!(
                "no container runtime socket found (containerd, k3s, CRI-O, cri-dockerd): zombies \
                 are labelled with pod UID and container ID only; set --runtime-endpoint"
            );
            None
        }
    };
    let mut attributor = Attributor::new(&cfg.proc_root, &cfg.cgroup_root, names.clone());
    attributor.set_show_cmdlines(cfg.show_cmdlines);
    let attributor = Arc::new(Mutex::new(attributor));
    let metrics = Metrics::new(
        tracker.clone(),
        attributor.clone(),
        &cfg.proc_root,
        &cfg.cgroup_root,
    );
    let shared = Arc::new(Shared {
        tracker,
        attributor,
        metrics,
        ready: AtomicBool::new(false),
        heartbeat: AtomicU64::new(clock::boottime_now()),
        proc_root: cfg.proc_root.clone(),
        pids_root: crate::cgroups::pids_root(&cfg.cgroup_root),
        remediations: Arc::default(),
        show_cmdlines: cfg.show_cmdlines,
    });

    let server = {
        let app = crate::http::router(shared.clone());
        let max_connections = crate::http::connection_cap(open_files.soft);
        info!(max_connections, "HTTP connection cap");
        tokio::spawn(async move {
            crate::http::serve(listener, app, max_connections).await;
        })
    };
    info!(
        listen = %local,
        show_cmdlines = cfg.show_cmdlines,
        "serving /metrics, /healthz, /readyz, /zombies, /audit, /remediations"
    );
    let remediation = (cfg.remediate != Mode::Off).then(|| {
        info!(
            mode = ?cfg.remediate,
            policy = %serde_json::to_string(&cfg.policy).unwrap_or_default(),
            "remediation enabled"
        );
        tokio::spawn(remediation_loop(
            shared.clone(),
            cfg.clone(),
            names.clone(),
            endpoint,
        ))
    });

    if let Some(comm) = &cfg.probe.fault_drop_free_comm {
        warn!(
            comm = %comm,
            "fault injection: the free events of processes with this comm are dropped in the \
             kernel (testing only)"
        );
    }
    let mut probe = Probe::load(&cfg.probe)?;
    shared
        .metrics
        .programs_attached
        .set(probe.attached() as i64);
    info!(programs = probe.attached(), "eBPF programs attached");
    seed_origins(&mut probe, &procfs, &shared, ticks);
    match crate::privileges::drop_all_but(&crate::privileges::needed_after_load(cfg.remediate)) {
        Ok(d) => info!(
            kept = ?d.effective,
            bounding_set = if d.bounding_dropped { "dropped" } else { "left to the runtime" },
            ptrace = if d.seccomp { "denied by seccomp" } else { "allowed" },
            "capabilities not needed after the load dropped"
        ),
        // Not fatal: the daemon works the same, only with more privilege than it needs.
        Err(e) => warn!("{e}"),
    }

    let result = event_loop(&cfg, &mut probe, &procfs, &shared, ticks).await;
    shared.ready.store(false, Ordering::Release);
    if let Some(task) = remediation {
        task.abort();
    }
    drop(probe); // detaches the programs
    shared.metrics.programs_attached.set(0);
    server.abort();
    info!("programs detached, exiting");
    result
}

async fn event_loop(
    cfg: &RunConfig,
    probe: &mut Probe,
    procfs: &ProcFs,
    shared: &Arc<Shared>,
    ticks: TickConverter,
) -> anyhow::Result<()> {
    let mut sigterm = tokio::signal::unix::signal(SignalKind::terminate())?;
    let mut sigint = tokio::signal::unix::signal(SignalKind::interrupt())?;
    let mut drain_tick = tokio::time::interval(cfg.drain_interval);
    drain_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);

    let mut batch: Vec<Event> = Vec::with_capacity(4096);
    let v2_root = crate::cgroups::detect(&cfg.cgroup_root).1;
    let (mut lost_seen, mut errors_seen) = probe.counters();
    let start = clock::boottime_now();
    let mut last_counter_poll = start;
    let mut last_resync_start: Option<Ns> = None;
    let mut last_parent_refresh = start;
    let mut sweep_from = 0;
    let mut pending_resync: Option<ResyncReason> = None;
    let mut resync = Some(start_resync(procfs, &v2_root, ResyncReason::Startup));

    loop {
        tokio::select! {
            _ = probe.readable() => {}
            _ = drain_tick.tick() => {}
            r = async { (&mut resync.as_mut().expect("guarded").task).await }, if resync.is_some() => {
                let Resync { started, reason, .. } = resync.take().expect("guarded");
                // Apply everything queued up to now first, so the table is current.
                drain(probe, shared, &mut batch, ticks);
                if let Some(next) = finish_resync(shared, started, reason, r) {
                    pending_resync.get_or_insert(next);
                }
                last_resync_start = Some(started);
            }
            _ = sigterm.recv() => { info!("SIGTERM: shutting down"); return Ok(()); }
            _ = sigint.recv() => { info!("SIGINT: shutting down"); return Ok(()); }
        }
        drain(probe, shared, &mut batch, ticks);
        let now = clock::boottime_now();
        shared.heartbeat.store(now, Ordering::Relaxed);

        if now.saturating_sub(last_counter_poll) >= COUNTER_POLL.as_nanos() as u64 {
            last_counter_poll = now;
            probe.flush_logs();
            let (lost, errors) = probe.counters();
            if lost > lost_seen || errors > errors_seen {
                warn!(
                    lost = lost - lost_seen,
                    read_errors = errors - errors_seen,
                    "kernel events were lost; resyncing from /proc"
                );
                shared.metrics.events_lost.inc_by(lost - lost_seen);
                shared.metrics.read_errors.inc_by(errors - errors_seen);
                lost_seen = lost;
                errors_seen = errors;
                pending_resync = Some(ResyncReason::LostEvents);
            }
            if !cfg.resync_interval.is_zero()
                && pending_resync.is_none()
                && last_resync_start
                    .is_some_and(|t| now.saturating_sub(t) >= cfg.resync_interval.as_nanos() as u64)
            {
                pending_resync = Some(ResyncReason::Periodic);
            }
        }
        if resync.is_none()
            && let Some(reason) = pending_resync
            && last_resync_start
                .is_none_or(|t| now.saturating_sub(t) >= RESYNC_MIN_GAP.as_nanos() as u64)
        {
            pending_resync = None;
            resync = Some(start_resync(procfs, &v2_root, reason));
        }
        if now.saturating_sub(last_parent_refresh) >= PARENT_REFRESH.as_nanos() as u64 {
            last_parent_refresh = now;
            refresh_parents(procfs, shared);
            sweep_from = sweep(procfs, shared, sweep_from, now, cfg.probe.wait_dedup);
        }
    }
}

/// Hands the lineage of processes older than the programs, as /proc shows it, to the
/// kernel (and their origins' command lines to the table).
fn seed_origins(probe: &mut Probe, procfs: &ProcFs, shared: &Shared, ticks: TickConverter) {
    let seeds = procfs.origin_seeds();
    let records: Vec<_> = seeds.iter().map(|(pid, o, _)| (*pid, *o)).collect();
    let written = probe.seed_origins(&records, &ticks);
    let mut tracker = shared.tracker.lock().unwrap_or_else(|e| e.into_inner());
    for (_, origin, info) in seeds {
        if let (Some(key), Some(info)) = (origin.key, info) {
            tracker.apply(&Event::Origin(Box::new(crate::tracker::OriginSeen {
                key,
                kind: origin.kind,
                info,
            })));
        }
    }
    info!(
        processes = written,
        "lineage of container processes older than the daemon seeded from /proc"
    );
}

/// Applies every pending kernel event to the table, in one lock.
fn drain(probe: &mut Probe, shared: &Shared, batch: &mut Vec<Event>, ticks: TickConverter) {
    let bad = probe.drain(batch, &ticks);
    if bad > 0 {
        warn!(records = bad, "malformed ring-buffer records skipped");
    }
    if batch.is_empty() {
        return;
    }
    let mut counts = [0u64; 4];
    let exec_zombies;
    {
        let mut tracker = shared.tracker.lock().unwrap_or_else(|e| e.into_inner());
        for ev in batch.iter() {
            let applied = tracker.apply(ev);
            shared.metrics.record(applied);
            counts[match ev {
                Event::Exit(_) => 0,
                Event::Free { .. } => 1,
                Event::Wait { .. } => 2,
                Event::Origin(_) => 3,
            }] += 1;
        }
        exec_zombies = tracker.take_left_by_exec();
    }
    if !exec_zombies.is_empty() {
        let mut attributor = shared.attributor.lock().unwrap_or_else(|e| e.into_inner());
        for z in &exec_zombies {
            shared.metrics.exec_session_zombie(attributor.labels(z));
        }
    }
    for (kind, n) in ["exit", "free", "wait", "origin"].iter().zip(counts) {
        if n > 0 {
            shared.metrics.events.with_label_values(&[kind]).inc_by(n);
        }
    }
    batch.clear();
}

fn start_resync(procfs: &ProcFs, v2_root: &Option<PathBuf>, reason: ResyncReason) -> Resync {
    let started = clock::boottime_now();
    let procfs = procfs.clone();
    let v2_root = v2_root.clone();
    debug!(reason = reason.as_str(), "resync from /proc started");
    let task = tokio::task::spawn_blocking(move || {
        let t0 = std::time::Instant::now();
        let result = procfs.scan(started, |pid| {
            crate::cgroups::id_of_pid(procfs.root(), v2_root.as_deref(), pid)
        });
        (result, t0.elapsed())
    });
    Resync {
        started,
        reason,
        task,
    }
}

/// Applies a finished scan; returns the reason for a follow-up scan, if one is needed.
fn finish_resync(
    shared: &Shared,
    started: Ns,
    reason: ResyncReason,
    result: Result<(Result<Scan, ScanError>, Duration), tokio::task::JoinError>,
) -> Option<ResyncReason> {
    let (scan, took) = match result {
        Ok(r) => r,
        Err(e) => {
            warn!("the /proc scan task failed: {e}");
            return None;
        }
    };
    shared.metrics.scan_seconds.observe(took.as_secs_f64());
    match scan {
        Ok(scan) => {
            let report = {
                let mut tracker = shared.tracker.lock().unwrap_or_else(|e| e.into_inner());
                tracker.reconcile_scan(started, &scan.zombies, &scan.exiting)
            };
            shared
                .metrics
                .resyncs
                .with_label_values(&[reason.as_str()])
                .inc();
            info!(
                reason = reason.as_str(),
                zombies_in_proc = scan.zombies.len(),
                added = report.added,
                removed = report.removed,
                exiting_unknown = report.exiting_unknown,
                took_ms = took.as_millis() as u64,
                "resynced from /proc"
            );
            if reason == ResyncReason::Startup {
                shared.ready.store(true, Ordering::Release);
                info!("ready");
            }
            // One follow-up, not a chain: a process stuck in its exit (D state) would
            // otherwise bring a scan every second.
            (report.exiting_unknown > 0 && reason != ResyncReason::Exiting)
                .then_some(ResyncReason::Exiting)
        }
        Err(e) => {
            warn!("resync from /proc failed: {e}");
            None
        }
    }
}

/// Zombies whose parent died were handed to a new parent: read who from /proc.
fn refresh_parents(procfs: &ProcFs, shared: &Shared) {
    let keys: Vec<_> = {
        let tracker = shared.tracker.lock().unwrap_or_else(|e| e.into_inner());
        tracker
            .parent_gone()
            .take(PARENT_REFRESH_BATCH)
            .map(|z| z.key)
            .collect()
    };
    if keys.is_empty() {
        return;
    }
    let updates: Vec<_> = keys
        .into_iter()
        .filter_map(|key| {
            let me = procfs.info(key.pid)?;
            if me.key != key {
                return None; // already reaped; the free event settles it
            }
            let parent = procfs.info(me.ppid);
            Some((key, me.ppid, parent))
        })
        .collect();
    let mut tracker = shared.tracker.lock().unwrap_or_else(|e| e.into_inner());
    for (key, ppid, parent) in updates {
        let (start, comm) = parent.map_or((0, Default::default()), |p| (p.key.start_ticks, p.comm));
        tracker.set_parent(&key, ppid, start, comm);
    }
}

/// Checks that a batch of older zombies still exist in /proc, rotating through the table,
/// and settles the ones found gone whose free event never came.
///
/// This is part of the design, not a workaround: the reap is seen at `sched_process_free`,
/// and on some kernels no program on that tracepoint runs at all for a whole RCU callback
/// batch (3 to 133 consecutive pids), with nothing counted anywhere (no run count, no
/// recursion miss, no ring-buffer loss). Without the sweep such a reaped zombie would stay
/// in the table until the next periodic resync. Candidates are zombies whose parent waited
/// since they exited or whose parent exited (see [`crate::tracker::Tracker::sweep_batch`]),
/// 512 a second at the most, a /proc stat read each. One found gone leaves the table at
/// once; its free may still be in flight (an RCU grace period plus the drain interval), so
/// it counts as reaped unobserved only after [`VANISH_GRACE`].
fn sweep(procfs: &ProcFs, shared: &Shared, from: usize, now: Ns, wait_dedup: Duration) -> usize {
    let (keys, next) = {
        let tracker = shared.tracker.lock().unwrap_or_else(|e| e.into_inner());
        tracker.sweep_batch(
            from,
            now.saturating_sub(SWEEP_MIN_AGE.as_nanos() as u64),
            wait_dedup.as_nanos() as u64,
            SWEEP_BATCH,
        )
    };
    // Gone: no /proc/<pid> at all, or one that belongs to a newer process. A /proc entry
    // that cannot be read or parsed right now proves nothing and is left for a later pass.
    let gone: Vec<_> = keys
        .into_iter()
        .filter(|key| match procfs.info(key.pid) {
            Some(p) => p.key != *key,
            None => procfs
                .root()
                .join(key.pid.to_string())
                .symlink_metadata()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound),
        })
        .collect();
    let mut tracker = shared.tracker.lock().unwrap_or_else(|e| e.into_inner());
    let vanished = gone.iter().filter(|key| tracker.vanish(key, now)).count();
    let unobserved = tracker.expire_vanished(now, VANISH_GRACE.as_nanos() as u64);
    drop(tracker);
    if vanished > 0 {
        debug!(
            zombies = vanished,
            "gone from /proc before their free event; out of the table"
        );
    }
    if unobserved > 0 {
        shared.metrics.reaps_unobserved.inc_by(unobserved as u64);
        debug!(
            zombies = unobserved,
            "no free event within the grace period: reaped unobserved"
        );
    }
    next
}

/// Looks at the zombie table every `interval_seconds` and remediates per the policy. /proc
/// reads run on the blocking pool; grace periods are states of the engine, never sleeps.
async fn remediation_loop(
    shared: Arc<Shared>,
    cfg: RunConfig,
    names: Option<Arc<NameCache>>,
    endpoint: Option<String>,
) {
    let cri = match endpoint {
        Some(ep) => match crate::attribution::cri::CriClient::connect(&ep).await {
            Ok(c) => Some(c),
            Err(e) => {
                warn!("remediation cannot restart containers: {e}");
                None
            }
        },
        None => None,
    };
    let engine = Engine::new(cfg.policy.clone(), cfg.remediate, std::process::id());
    let mut remediator = Remediator::new(
        engine,
        &cfg.proc_root,
        names,
        cri,
        shared.remediations.clone(),
    );
    let mut tick = tokio::time::interval(Duration::from_secs_f64(cfg.policy.interval_seconds));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !shared.ready.load(Ordering::Acquire) {
            continue;
        }
        let s = shared.clone();
        let views = tokio::task::spawn_blocking(move || {
            let now = clock::boottime_now();
            let wall = clock::WallClock::now();
            let tracker = s.tracker.lock().unwrap_or_else(|e| e.into_inner());
            let mut attributor = s.attributor.lock().unwrap_or_else(|e| e.into_inner());
            crate::view::snapshot(&tracker, &mut attributor, now, &wall)
        })
        .await;
        let Ok(views) = views else { continue };
        let (targets, r) = {
            let r = remediator;
            let t = tokio::task::spawn_blocking(move || {
                let t = r.targets(&views);
                (t, r)
            })
            .await;
            match t {
                Ok(x) => x,
                Err(e) => {
                    warn!("remediation task failed: {e}");
                    return;
                }
            }
        };
        remediator = r;
        let now = clock::boottime_now();
        let wall = clock::WallClock::now().rfc3339(now);
        for d in remediator.run_once(&targets, now, &wall).await {
            shared
                .metrics
                .remediations
                .with_label_values(&[d.action.as_str(), d.result.as_str()])
                .inc();
        }
    }
}
