//! `zombie-daemon run`: wires the probe, the event loop that owns the table, the snapshot
//! it publishes, the HTTP API and the remediation loop together.
//!
//! Ownership, top to bottom: the event loop ([`event_loop`]) alone owns the tracker and,
//! through the snapshot builder it lends to the blocking pool ([`publish`]), the
//! attributor. Everything else reads the published `Arc<Snapshot>`: the HTTP handlers,
//! the metric collectors and the remediation loop ([`remediation`]).

mod event_loop;
mod publish;
mod remediation;
pub mod snapshot_builder;

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;
use axum::body::Bytes;
use tokio::sync::watch;
use tracing::{info, warn};

use snapshot_builder::Builder;
pub use snapshot_builder::DEFAULT_MAX_LISTED;

use crate::{
    attribution::names::{self, NameCache},
    attributor::Attributor,
    health::Health,
    metrics::Metrics,
    probe::{Probe, ProbeConfig, TickConverter},
    remediate::Mode,
    snapshot::{Demand, Snapshot},
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
    /// The cap on HTTP answer bytes held across connections (`--http-max-bytes-in-flight`).
    pub http_max_bytes_in_flight: usize,
    /// Zombies listed in detail at most (`--max-listed-zombies`).
    pub max_listed_zombies: usize,
}

/// Makes the memory the daemon frees go back to the node. glibc's malloc keeps an arena per
/// allocating thread (every blocking-pool thread that ever built a snapshot or answered a
/// request), and after a large block is freed it raises its mmap threshold to that size (up
/// to 32 MiB): from then on large blocks come from the arenas and stay resident when freed,
/// so the daemon's size at rest became the size of its worst moment. Two arenas, a fixed
/// mmap threshold (large blocks are mapped and unmapped) and a trim threshold of 1 MiB.
/// Call before any thread starts.
///
/// musl (the static builds of the image) needs none of it: its allocator maps every block
/// above about 128 KiB on its own and unmaps it when freed, and it has no per-thread arenas.
pub fn bound_allocator() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets the allocator's parameters; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 << 10);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 20);
    }
}

/// Gives the pages of freed blocks back to the node, wherever they lie in the heap (the
/// trim threshold only returns its top): once after the start, whose BTF parsing frees
/// tens of MiB beneath what stays allocated, and after a large release (see the event
/// loop). musl has no such call and needs none (see [`bound_allocator`]).
pub(crate) fn give_back_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free pages of the allocator's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds, ...: the
/// daemon's own use, to watch against the pod's limits. Read from /proc/self, which is this
/// process whatever --proc-root says (and so added here: the read side reads no file).
fn register_own_process(metrics: &Metrics) {
    metrics
        .registry
        .register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("unique metric");
}

pub async fn run(cfg: RunConfig) -> anyhow::Result<()> {
    // The HTTP connection cap is derived from this limit.
    let open_files = crate::http::raise_open_files_limit();
    log_open_files(&open_files);
    let listener = crate::http::bind(cfg.listen)
        .with_context(|| format!("cannot listen on {} (--listen)", cfg.listen))?;
    let local = listener.local_addr()?;

    // In its own cgroup namespace (a pod on cgroup v2) the daemon reads /proc/<pid>/cgroup
    // relative to its namespace's root: find that root once, so that every path is the
    // node's, as in the host's namespace.
    if let Some(v2) = crate::cgroups::detect(&cfg.cgroup_root).1
        && let Some(root) =
            crate::cgroups::proc_file::detect_namespace_root(&cfg.proc_root, &v2, 200_000)
    {
        info!(
            root = %root,
            "own cgroup namespace: paths from /proc/<pid>/cgroup are read from its root, as \
             the node's namespace shows them"
        );
        crate::cgroups::proc_file::set_namespace_root(root);
    }
    let ticks = TickConverter::from_system();
    let endpoint = names::choose_endpoint(cfg.runtime_endpoint.as_deref());
    let names = runtime_names(&cfg, endpoint.clone());
    let (snapshot_tx, snapshot_rx) = watch::channel(Arc::new(Snapshot::default()));
    let (history_tx, history_rx) = watch::channel(Bytes::from_static(b"[]"));
    let metrics = Arc::new(Metrics::new(snapshot_rx.clone()));
    register_own_process(&metrics);
    let health = Arc::new(Health::default());
    let demand = Arc::new(Demand::default());
    let make_builder = {
        let (proc_root, cgroup_root) = (cfg.proc_root.clone(), cfg.cgroup_root.clone());
        let (names, show_cmdlines, metrics) = (names.clone(), cfg.show_cmdlines, metrics.clone());
        let max_listed = cfg.max_listed_zombies;
        move || {
            let mut attributor = Attributor::new(&proc_root, &cgroup_root, names.clone());
            attributor.set_show_cmdlines(show_cmdlines);
            Builder::new(
                attributor,
                &proc_root,
                crate::cgroups::pids_root(&cgroup_root),
            )
            .with_metrics(metrics.clone())
            .with_max_listed(max_listed)
        }
    };

    let server = {
        let app = crate::http::router(crate::http::Api {
            snapshot: snapshot_rx.clone(),
            demand: demand.clone(),
            health: health.clone(),
            metrics: metrics.clone(),
            remediations: history_rx,
            in_flight: Arc::new(
                crate::inflight::InFlight::new(cfg.http_max_bytes_in_flight).with_metrics(
                    metrics.http_bytes_in_flight.clone(),
                    metrics.http_readers_shed.clone(),
                ),
            ),
        });
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
        tokio::spawn(remediation::run(
            cfg.clone(),
            snapshot_rx.clone(),
            health.clone(),
            metrics.clone(),
            history_tx,
            names.clone(),
            endpoint,
        ))
    });

    let mut probe = load_probe(&cfg, &metrics)?;
    let publisher = publish::Publisher::new(Box::new(make_builder), snapshot_tx);
    let mut event_loop = event_loop::EventLoop::new(
        cfg.clone(),
        ticks,
        metrics.clone(),
        health.clone(),
        publisher,
        demand,
    );
    event_loop.seed_origins(&mut probe);
    drop_privileges(cfg.remediate);
    give_back_freed_memory();

    let result = event_loop.run(&mut probe).await;
    health.set_ready(false);
    if let Some(task) = remediation {
        task.abort();
    }
    drop(probe); // detaches the programs
    metrics.programs_attached.set(0);
    server.abort();
    info!("programs detached, exiting");
    result
}

/// Says whether the open-files limit could be raised (the HTTP connection cap follows it).
fn log_open_files(open_files: &crate::http::OpenFilesLimit) {
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
}

/// The container runtime's names for pods and containers, refreshed in the background;
/// None (and one warning) without a runtime socket.
fn runtime_names(cfg: &RunConfig, endpoint: Option<String>) -> Option<Arc<NameCache>> {
    match endpoint {
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
    }
}

/// Loads and attaches the programs, and says which reap witness this kernel allows.
fn load_probe(cfg: &RunConfig, metrics: &Metrics) -> anyhow::Result<Probe> {
    if let Some(comm) = &cfg.probe.fault_drop_free_comm {
        warn!(
            comm = %comm,
            "fault injection: the reap events (release and free) of processes with this comm \
             are dropped in the kernel (testing only)"
        );
    }
    let probe = Probe::load(&cfg.probe)?;
    metrics.programs_attached.set(probe.attached() as i64);
    match probe.reap_witness() {
        crate::probe::ReapWitness::Release => info!(
            programs = probe.attached(),
            direct_reads = probe.direct_reads(),
            reaps = "release_task",
            "eBPF programs attached; reaps are seen where they happen"
        ),
        crate::probe::ReapWitness::Free { release_refused } => info!(
            programs = probe.attached(),
            direct_reads = probe.direct_reads(),
            reaps = "sched_process_free",
            release_task = %release_refused,
            "eBPF programs attached; fentry/release_task refused by this kernel, reaps are \
             seen at sched_process_free and every listed zombie is confirmed from /proc"
        ),
    }
    Ok(probe)
}

/// Drops every capability the daemon no longer needs once the programs are loaded.
fn drop_privileges(remediate: Mode) {
    match crate::privileges::drop_all_but(&crate::privileges::needed_after_load(
        remediate == Mode::On,
    )) {
        Ok(d) => info!(
            kept = ?d.effective,
            bounding_set = if d.bounding_dropped { "dropped" } else { "left to the runtime" },
            ptrace = if d.seccomp { "denied by seccomp" } else { "allowed" },
            write_opens = if d.seccomp { "denied by seccomp" } else { "allowed" },
            "capabilities not needed after the load dropped"
        ),
        // Not fatal: the daemon works the same, only with more privilege than it needs.
        Err(e) => warn!("{e}"),
    }
}
