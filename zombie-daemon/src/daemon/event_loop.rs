//! The event loop: the one owner of the zombie table.
//!
//! It drains the ring buffer and applies every change to the table through
//! [`Tracker::apply`]: the kernel's events, and what /proc reports (resync scans, new
//! parents of reparented zombies, zombies found gone). /proc is read on the blocking pool
//! while events keep flowing, and the result comes back as events. After a batch that
//! changed what readers see, a snapshot is built off the loop and published (see
//! [`super::publish`]).
//!
//! Idle, it costs next to nothing: with no event for [`IDLE_AFTER`] it stops draining on a
//! timer and asks the programs to wake it at the next event (see
//! [`Probe::set_consumer_asleep`]), waking on its own only every [`IDLE_WAKE`] for the
//! heartbeat and the periodic work.

use std::{path::PathBuf, sync::Arc, time::Duration};

use tokio::{signal::unix::SignalKind, task::JoinHandle};
use tracing::{debug, info, warn};

use crate::{
    clock::{self, TickConverter},
    health::Health,
    metrics::Metrics,
    probe::Probe,
    proc_scan::{PidCursor, ProcFs, ScanError, possibly_reused},
    snapshot::Demand,
    tracker::{Applied, Event, Hold, Ns, ProcKey, Scan, Tracker},
};

use super::{RunConfig, publish::Publisher};

/// Losses are checked after every drain; a resync starts at most once per `RESYNC_MIN_GAP`.
const RESYNC_MIN_GAP: Duration = Duration::from_secs(1);
/// Reparented zombies' parents are read, and zombies that may have been reaped unseen
/// checked for existence, this often (when there are any).
const PROC_CHECK: Duration = Duration::from_secs(1);
/// Reparented zombies re-read per check, to bound the time a check spends in /proc.
const PARENT_REFRESH_BATCH: usize = 512;
/// Zombies that may have been reaped unseen (see [`Tracker::sweep_batch`]) probed per check,
/// and how old they must be. A probe is one `kill(pid, 0)`, well under a microsecond, on
/// the blocking pool: a mass release of this many, whose frees the kernel dropped, leaves
/// the table at the next check (at 20,000 a check, 100,000 took five).
const SWEEP_BATCH: usize = 262_144;
const SWEEP_MIN_AGE: Duration = Duration::from_millis(500);
/// Every listed zombie, candidate or not, is re-confirmed at least this often: it still
/// holds its pid, and that pid is still its own (see [`crate::proc_scan::possibly_reused`]).
/// With the time a pass and a publication take, an entry outlives its zombie by at most
/// ten seconds whatever the kernel missed (the README's guarantee).
pub(crate) const CONFIRM_ALL: Duration = Duration::from_secs(5);
/// How long a free event may come after the sweep found its zombie gone from /proc and
/// still count as an ordinary reap: the free fires an RCU grace period after wait() and is
/// drained on a timer, and under heavy churn both stretch to hundreds of milliseconds.
const VANISH_GRACE: Duration = Duration::from_secs(2);
/// With no event for this long the loop stops draining on a timer and sleeps until the
/// programs wake it.
const IDLE_AFTER: Duration = Duration::from_millis(500);
/// Asleep, the loop still wakes this often: the heartbeat, periodic work, and a bound on
/// how long an event can wait if its wakeup raced with falling asleep.
const IDLE_WAKE: Duration = Duration::from_millis(500);

/// A new zombie whose parent was seen waiting just before it exited is shown this long
/// after its exit if it is still a zombie then (see [`Tracker::hold_back`]): its reap
/// usually shows within it (the free fires an RCU grace period after the reap, 10-50 ms
/// here, and is drained within [`RunConfig::drain_interval`]), so a fork/exit/wait loop does
/// not make a snapshot build per child. A leak (a parent that never waits) is never held.
pub(crate) const HOLD: Duration = Duration::from_millis(100);

/// Zombies released since the most the table held before their memory is given back.
const GIVE_BACK_AFTER: usize = 10_000;
/// ... once the table's size has not moved for this long.
const GIVE_BACK_QUIET: Duration = Duration::from_secs(2);

/// Events a drain's batch keeps room for between drains.
const BATCH: usize = 4096;

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

/// A finished resync: the scan, how long it took, and the pid allocator's position when it
/// started.
type Scanned = (Result<Scan, ScanError>, Duration, Option<PidCursor>);
type ScanTask = JoinHandle<Scanned>;

/// A resync in flight: when it started and why.
struct Resync {
    started: Ns,
    reason: ResyncReason,
    task: ScanTask,
}

pub(super) struct EventLoop {
    cfg: RunConfig,
    procfs: ProcFs,
    v2_root: Option<PathBuf>,
    ticks: TickConverter,
    tracker: Tracker,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    publisher: Publisher,
    demand: Arc<Demand>,
    batch: Vec<Event>,
    /// Incremented with every batch of changes applied (to tell which a snapshot includes).
    seq: u64,
    /// Ready once a snapshot with at least this change is published (the startup scan's).
    ready_at_seq: Option<u64>,
    /// The resync in flight, and when the next one is due.
    resync: Option<Resync>,
    resyncs: ResyncSchedule,
    /// The /proc check of reparented and possibly reaped zombies, in flight, and when the
    /// next one is due.
    check: Option<JoinHandle<Checked>>,
    checks: CheckSchedule,
    pacing: Pacing,
    /// When to give freed memory back to the node (see [`GiveBack`]).
    give_back: GiveBack,
}

/// When the table is rebuilt from /proc: after lost events, periodically, and once more
/// after a scan that met exiting processes it did not know; at most once per
/// [`RESYNC_MIN_GAP`]. Pure: the counters and the clock come in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct ResyncSchedule {
    /// The kernel's loss and read-error counters as last seen.
    lost_seen: u64,
    errors_seen: u64,
    pending: Option<ResyncReason>,
    /// When the last finished resync started.
    last_start: Option<Ns>,
}

impl ResyncSchedule {
    /// The kernel's counters now: the new losses and read errors since the last look
    /// (None: none), each of which asks for a resync.
    fn losses(&mut self, lost: u64, errors: u64) -> Option<(u64, u64)> {
        if lost <= self.lost_seen && errors <= self.errors_seen {
            return None;
        }
        let new = (
            lost.saturating_sub(self.lost_seen),
            errors.saturating_sub(self.errors_seen),
        );
        (self.lost_seen, self.errors_seen) = (lost, errors);
        self.pending = Some(ResyncReason::LostEvents);
        Some(new)
    }

    /// Asks for a periodic resync when `interval` (0: never) passed since the last one.
    fn periodic(&mut self, now: Ns, interval: Duration) {
        if !interval.is_zero()
            && self.pending.is_none()
            && self
                .last_start
                .is_some_and(|t| now.saturating_sub(t) >= interval.as_nanos() as u64)
        {
            self.pending = Some(ResyncReason::Periodic);
        }
    }

    /// The resync to start now, if one is pending, none is in flight and the gap passed.
    fn due(&mut self, now: Ns, in_flight: bool) -> Option<ResyncReason> {
        let gap_passed = self
            .last_start
            .is_none_or(|t| now.saturating_sub(t) >= RESYNC_MIN_GAP.as_nanos() as u64);
        if in_flight || !gap_passed {
            return None;
        }
        self.pending.take()
    }

    /// The kernel's counters when the loop starts: what was lost before is not ours.
    fn baseline(&mut self, lost: u64, errors: u64) {
        (self.lost_seen, self.errors_seen) = (lost, errors);
    }

    /// A resync for `reason` found `exiting_unknown` processes exiting that the table did
    /// not know: one follow-up, not a chain (a process stuck in its exit, D state, would
    /// otherwise bring a scan every second).
    fn follow_up(&mut self, reason: ResyncReason, exiting_unknown: usize) {
        if exiting_unknown > 0 && reason != ResyncReason::Exiting {
            self.pending.get_or_insert(ResyncReason::Exiting);
        }
    }

    /// A resync that started at `started` finished (whatever its result).
    fn finished(&mut self, started: Ns) {
        self.last_start = Some(started);
    }
}

/// When freed memory goes back to the node: once the table (with the zombies found gone
/// whose late free may still come) holds [`GIVE_BACK_AFTER`] fewer than the most it held
/// since the last time, and its size has not moved for [`GIVE_BACK_QUIET`] (the release is
/// over, the build applied it, the vanished settled). Pure: sizes and the clock come in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct GiveBack {
    most: usize,
    last: usize,
    moved_at: Ns,
}

impl GiveBack {
    fn due(&mut self, held: usize, now: Ns) -> bool {
        if held != self.last {
            (self.last, self.moved_at) = (held, now);
        }
        self.most = self.most.max(held);
        let quiet = now.saturating_sub(self.moved_at) >= GIVE_BACK_QUIET.as_nanos() as u64;
        if quiet && self.most >= held + GIVE_BACK_AFTER {
            self.most = held;
            return true;
        }
        false
    }
}

/// When the /proc checks run (see [`EventLoop::maybe_check`]): every [`PROC_CHECK`], a
/// pass over the whole table every [`CONFIRM_ALL`], else a batch of candidates.
#[derive(Clone, Debug)]
struct CheckSchedule {
    last_check: Ns,
    /// When the last pass over the whole table started.
    last_confirm_all: Ns,
    /// The pid allocator's position when the last pass over the whole table (or the first
    /// scan) started: pids it has not passed over since cannot have changed hands.
    pid_cursor: Option<PidCursor>,
    /// Where the next candidate batch starts.
    sweep_from: usize,
}

/// Which check is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CheckKind {
    /// Every listed zombie.
    All,
    /// The next batch of candidates.
    Candidates,
}

impl CheckSchedule {
    fn new(now: Ns) -> Self {
        Self {
            last_check: now,
            last_confirm_all: now,
            pid_cursor: None,
            sweep_from: 0,
        }
    }

    /// The check due now (None: not yet), marked as started.
    fn due(&mut self, now: Ns) -> Option<CheckKind> {
        if now.saturating_sub(self.last_check) < PROC_CHECK.as_nanos() as u64 {
            return None;
        }
        self.last_check = now;
        if now.saturating_sub(self.last_confirm_all) >= CONFIRM_ALL.as_nanos() as u64 {
            self.last_confirm_all = now;
            Some(CheckKind::All)
        } else {
            Some(CheckKind::Candidates)
        }
    }
}

/// Draining on a timer while events flow, asleep (woken by the programs) after
/// [`IDLE_AFTER`] without one.
#[derive(Clone, Debug)]
struct Pacing {
    last_event: Ns,
    asleep: bool,
    /// The next drain tick while events flow.
    next_drain: tokio::time::Instant,
}

/// What a drain changed in the pacing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pace {
    Unchanged,
    /// Events flow again: tell the programs the loop is awake.
    Woke,
    /// No event for [`IDLE_AFTER`]: tell the programs to wake the loop.
    FellAsleep,
}

impl Pacing {
    fn new(now: Ns, t: tokio::time::Instant) -> Self {
        Self {
            last_event: now,
            asleep: false,
            next_drain: t,
        }
    }

    /// The next drain tick at `t` (now): at a fixed rate while events flow, so the time an
    /// iteration takes does not stretch the interval; [`IDLE_WAKE`] from now asleep.
    fn next_tick(&mut self, t: tokio::time::Instant, interval: Duration) -> tokio::time::Instant {
        if self.asleep {
            return t + IDLE_WAKE;
        }
        if self.next_drain <= t {
            // Due now or missed: the next tick one interval after the last one, or after
            // now if late by more than an interval.
            self.next_drain += interval;
            if self.next_drain <= t {
                self.next_drain = t + interval;
            }
        }
        self.next_drain
    }

    /// After a drain of `drained` events at `now` (`t`).
    fn drained(
        &mut self,
        drained: usize,
        now: Ns,
        t: tokio::time::Instant,
        interval: Duration,
    ) -> Pace {
        if drained > 0 {
            self.last_event = now;
            if self.asleep {
                self.asleep = false;
                self.next_drain = t + interval;
                return Pace::Woke;
            }
        } else if !self.asleep
            && now.saturating_sub(self.last_event) >= IDLE_AFTER.as_nanos() as u64
        {
            self.asleep = true;
            return Pace::FellAsleep;
        }
        Pace::Unchanged
    }

    /// An event came in just as the loop fell asleep: awake again.
    fn raced(&mut self, now: Ns) {
        self.asleep = false;
        self.last_event = now;
    }
}

impl EventLoop {
    pub(super) fn new(
        cfg: RunConfig,
        ticks: TickConverter,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
        publisher: Publisher,
        demand: Arc<Demand>,
    ) -> Self {
        let now = clock::boottime_now();
        // The kernel reports a parent's waits once per wait_dedup at most, so one that keeps
        // waiting shows a wait within any window twice that long.
        let wait_window = (cfg.probe.wait_dedup * 2).max(HOLD);
        Self {
            procfs: ProcFs::new(&cfg.proc_root, ticks),
            v2_root: crate::cgroups::detect(&cfg.cgroup_root).1,
            cfg,
            ticks,
            tracker: {
                let mut t = Tracker::default();
                t.hold_back(Some(Hold {
                    for_ns: HOLD.as_nanos() as u64,
                    wait_dedup_ns: wait_window.as_nanos() as u64,
                }));
                t
            },
            metrics,
            health,
            publisher,
            demand,
            batch: Vec::with_capacity(BATCH),
            seq: 0,
            ready_at_seq: None,
            resync: None,
            resyncs: ResyncSchedule::default(),
            check: None,
            checks: CheckSchedule::new(now),
            pacing: Pacing::new(now, tokio::time::Instant::now()),
            give_back: GiveBack::default(),
        }
    }

    /// Hands the lineage of container processes older than the programs, as /proc shows
    /// it, to the kernel (so that what they fork inherits it) and their origins' command
    /// lines to the table. Before the capability drop: it writes a BPF map.
    pub(super) fn seed_origins(&mut self, probe: &mut Probe) {
        let seeds = self.procfs.origin_seeds();
        let records: Vec<_> = seeds.iter().map(|(pid, o, _)| (*pid, *o)).collect();
        let written = probe.seed_origins(&records, &self.ticks);
        for (_, origin, info) in seeds {
            if let (Some(key), Some(info)) = (origin.key, info) {
                self.apply(&Event::Origin(Box::new(crate::tracker::OriginSeen {
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

    /// Runs until SIGTERM or SIGINT.
    pub(super) async fn run(&mut self, probe: &mut Probe) -> anyhow::Result<()> {
        let mut sigterm = tokio::signal::unix::signal(SignalKind::terminate())?;
        let mut sigint = tokio::signal::unix::signal(SignalKind::interrupt())?;
        let (lost, errors) = probe.counters();
        self.resyncs.baseline(lost, errors);
        self.resync = Some(self.start_resync(ResyncReason::Startup));

        loop {
            let wake = self.next_wake(clock::boottime_now());
            let (resync, check, publisher) =
                (&mut self.resync, &mut self.check, &mut self.publisher);
            let demand = self.demand.clone();
            let (resyncing, checking, building) =
                (resync.is_some(), check.is_some(), publisher.in_flight());
            tokio::select! {
                _ = probe.readable() => {}
                _ = tokio::time::sleep_until(wake) => {}
                () = demand.asked() => {}
                r = async { (&mut resync.as_mut().expect("guarded").task).await }, if resyncing => {
                    let Resync { started, reason, .. } = self.resync.take().expect("guarded");
                    // Apply everything queued up to now first, so the table is current.
                    self.drain(probe);
                    self.finish_resync(started, reason, r);
                    self.resyncs.finished(started);
                }
                r = async { check.as_mut().expect("guarded").await }, if checking => {
                    self.check = None;
                    self.drain(probe);
                    match r {
                        Ok(checked) => {
                            if checked.cursor.is_some() {
                                self.checks.pid_cursor = checked.cursor;
                            }
                            for ev in checked.events() {
                                self.apply(&ev);
                            }
                            self.seq += 1;
                            self.publisher.exec_leaks(self.tracker.take_left_by_exec());
                        }
                        Err(e) => warn!("the /proc check task failed: {e}"),
                    }
                }
                () = publisher.finished(), if building => {
                    if let Some(at) = self.ready_at_seq
                        && self.publisher.published_seq().is_some_and(|s| s >= at)
                    {
                        self.ready_at_seq = None;
                        self.health.set_ready(true);
                        info!("ready");
                    }
                }
                _ = sigterm.recv() => { info!("SIGTERM: shutting down"); return Ok(()); }
                _ = sigint.recv() => { info!("SIGINT: shutting down"); return Ok(()); }
            }
            let drained = self.drain(probe);
            let now = clock::boottime_now();
            self.health.beat(now);
            self.pace(probe, drained, now);
            self.check_losses(probe, now);
            self.maybe_resync(now);
            self.maybe_check(now);
            if self.tracker.held_len() > 0 {
                self.show_held(now);
            }
            if self.tracker.vanished_len() > 0 {
                self.apply(&Event::GraceElapsed {
                    now,
                    grace: VANISH_GRACE.as_nanos() as u64,
                });
            }
            self.give_back_after_release(now);
            self.publisher
                .maybe_start(&mut self.tracker, &self.demand, now, self.seq);
        }
    }

    /// Shows the held-back zombies whose hold ended, but first takes out those whose pid is
    /// free: reaped, and the kernel dropped their release (it does, under churn). One
    /// `kill(pid, 0)` each, no /proc read: a pid another process took since is shown and
    /// left to the next pass over the whole table.
    fn show_held(&mut self, now: Ns) {
        let gone: Vec<ProcKey> = self
            .tracker
            .held_due(now)
            .filter(|k| !self.procfs.pid_exists(k.pid))
            .collect();
        for key in gone {
            self.apply(&Event::Vanished { key, at: now });
        }
        self.apply(&Event::HoldElapsed { now });
    }

    /// Gives the pages of a large release back to the node once it is over (see
    /// [`GiveBack`]); `malloc_trim` walks the heap, so never in the middle of one.
    fn give_back_after_release(&mut self, now: Ns) {
        let held = self.tracker.len() + self.tracker.vanished_len();
        if self.give_back.due(held, now) {
            let t = std::time::Instant::now();
            super::give_back_freed_memory();
            debug!(
                zombies = held,
                took_us = t.elapsed().as_micros() as u64,
                "memory of released zombies given back"
            );
        }
    }

    /// When to wake at the latest: the next drain tick (at a fixed rate while events flow,
    /// so the time an iteration takes does not stretch the interval), or a build waiting
    /// for its gap.
    fn next_wake(&mut self, now: Ns) -> tokio::time::Instant {
        let t = tokio::time::Instant::now();
        let mut wake = self.pacing.next_tick(t, self.cfg.drain_interval);
        let held = (self.tracker.held_len() > 0)
            .then(|| self.tracker.next_shown_at())
            .flatten();
        let build = self.publisher.next_start(&self.tracker, &self.demand);
        for at in [held, build].into_iter().flatten() {
            wake = wake.min(t + Duration::from_nanos(at.saturating_sub(now)));
        }
        wake
    }

    /// Drains on a timer while events flow; asleep after [`IDLE_AFTER`] without one.
    fn pace(&mut self, probe: &mut Probe, drained: usize, now: Ns) {
        let t = tokio::time::Instant::now();
        match self
            .pacing
            .drained(drained, now, t, self.cfg.drain_interval)
        {
            Pace::Unchanged => {}
            Pace::Woke => probe.set_consumer_asleep(false),
            Pace::FellAsleep => {
                probe.set_consumer_asleep(true);
                // An event submitted just before the flag was seen did not wake us: take it
                // now.
                if self.drain(probe) > 0 {
                    self.pacing.raced(now);
                    probe.set_consumer_asleep(false);
                }
            }
        }
    }

    fn apply(&mut self, ev: &Event) -> Applied {
        let applied = self.tracker.apply(ev);
        self.metrics.record(ev, applied);
        applied
    }

    /// Applies every pending kernel event to the table; returns how many.
    fn drain(&mut self, probe: &mut Probe) -> usize {
        let bad = probe.drain(&mut self.batch, &self.ticks);
        if bad > 0 {
            warn!(records = bad, "malformed ring-buffer records skipped");
        }
        let n = self.batch.len();
        if n == 0 {
            return 0;
        }
        let batch = std::mem::take(&mut self.batch);
        let now = clock::boottime_now();
        for ev in &batch {
            if let Some(at) = ev.kernel_time() {
                self.metrics
                    .event_delay
                    .observe(now.saturating_sub(at) as f64 / 1e9);
            }
            self.apply(ev);
        }
        self.batch = batch;
        self.batch.clear();
        // A full ring drained at once (tens of thousands of events): not kept for good.
        if self.batch.capacity() > 4 * BATCH {
            self.batch.shrink_to(BATCH);
        }
        self.seq += 1;
        self.publisher.exec_leaks(self.tracker.take_left_by_exec());
        n
    }

    /// Lost or unreadable events mean the table may be wrong: resync. Losses only happen
    /// while events flow, so checking after each iteration is enough.
    fn check_losses(&mut self, probe: &mut Probe, now: Ns) {
        let (lost, errors) = probe.counters();
        if let Some((lost, errors)) = self.resyncs.losses(lost, errors) {
            probe.flush_logs();
            warn!(
                lost,
                read_errors = errors,
                "kernel events were lost; resyncing from /proc"
            );
            self.metrics.events_lost.inc_by(lost);
            self.metrics.read_errors.inc_by(errors);
        }
        self.resyncs.periodic(now, self.cfg.resync_interval);
    }

    fn maybe_resync(&mut self, now: Ns) {
        if let Some(reason) = self.resyncs.due(now, self.resync.is_some()) {
            self.resync = Some(self.start_resync(reason));
        }
    }

    fn start_resync(&self, reason: ResyncReason) -> Resync {
        let started = clock::boottime_now();
        let procfs = self.procfs.clone();
        let v2_root = self.v2_root.clone();
        debug!(reason = reason.as_str(), "resync from /proc started");
        let task = tokio::task::spawn_blocking(move || {
            let t0 = std::time::Instant::now();
            // Read before the scan: what the scan finds is its own as of this position.
            let cursor = procfs.pid_cursor();
            let result = procfs.scan(started, |pid| {
                crate::cgroups::id_of_pid(procfs.root(), v2_root.as_deref(), pid)
            });
            (result, t0.elapsed(), cursor)
        });
        Resync {
            started,
            reason,
            task,
        }
    }

    /// Applies a finished scan, and asks for a follow-up scan if one is needed.
    fn finish_resync(
        &mut self,
        started: Ns,
        reason: ResyncReason,
        result: Result<Scanned, tokio::task::JoinError>,
    ) {
        let (scan, took, cursor) = match result {
            Ok(r) => r,
            Err(e) => {
                warn!("the /proc scan task failed: {e}");
                return;
            }
        };
        self.metrics.scan_seconds.observe(took.as_secs_f64());
        let scan = match scan {
            Ok(scan) => Arc::new(scan),
            Err(e) => {
                warn!("resync from /proc failed: {e}");
                return;
            }
        };
        if self.checks.pid_cursor.is_none() {
            self.checks.pid_cursor = cursor;
        }
        let zombies_in_proc = scan.zombies.len();
        let report = self.tracker.reconcile(started, &scan);
        self.metrics.record(
            &Event::Scanned { started, scan },
            Applied::Reconciled(report),
        );
        self.seq += 1;
        self.publisher.want_table();
        self.metrics
            .resyncs
            .with_label_values(&[reason.as_str()])
            .inc();
        info!(
            reason = reason.as_str(),
            zombies_in_proc,
            added = report.added,
            removed = report.removed,
            exiting_unknown = report.exiting_unknown,
            took_ms = took.as_millis() as u64,
            "resynced from /proc"
        );
        if reason == ResyncReason::Startup {
            self.ready_at_seq = Some(self.seq);
        }
        self.resyncs.follow_up(reason, report.exiting_unknown);
    }

    /// Every [`PROC_CHECK`]: reads the new parents of zombies whose parent exited, and
    /// checks that zombies that could have been reaped unseen still exist; every
    /// [`CONFIRM_ALL`], that every listed zombie still exists and still owns its pid. On the
    /// blocking pool; what it finds comes back as events.
    ///
    /// This is part of the design, not a workaround: the reap is seen where the kernel
    /// releases the task (`release_task`, where the kernel lets a program attach there) or
    /// when it frees it (`sched_process_free`), and some kernels do not run the program on
    /// that tracepoint for a whole RCU callback batch (3 to 133 consecutive pids), with
    /// nothing counted anywhere (no run count, no recursion miss, no ring-buffer loss).
    /// Without these checks such a reaped zombie would stay listed until the next periodic
    /// resync. One found gone leaves the table at once; its free may still be in flight (an
    /// RCU grace period plus the drain interval), so it counts as reaped unobserved only after
    /// [`VANISH_GRACE`].
    fn maybe_check(&mut self, now: Ns) {
        if self.check.is_some() || self.tracker.is_empty() {
            return;
        }
        let Some(kind) = self.checks.due(now) else {
            return;
        };
        let parents: Vec<ProcKey> = self
            .tracker
            .parent_gone()
            .take(PARENT_REFRESH_BATCH)
            .map(|z| z.key)
            .collect();
        let probes = if kind == CheckKind::All {
            Probes::All {
                keys: self.tracker.keys().collect(),
                since: self.checks.pid_cursor,
            }
        } else {
            let (sweep, next) = self.tracker.sweep_batch(
                self.checks.sweep_from,
                now.saturating_sub(SWEEP_MIN_AGE.as_nanos() as u64),
                self.cfg.probe.wait_dedup.as_nanos() as u64,
                SWEEP_BATCH,
            );
            self.checks.sweep_from = next;
            Probes::Candidates(sweep)
        };
        if parents.is_empty() && probes.is_empty() {
            return;
        }
        let procfs = self.procfs.clone();
        self.check = Some(tokio::task::spawn_blocking(move || {
            check_proc(&procfs, &parents, probes, now)
        }));
    }
}

/// Which zombies a check probes.
enum Probes {
    /// Those that may have been reaped unseen: does each still hold its pid.
    Candidates(Vec<ProcKey>),
    /// Every listed zombie: does each still hold its pid, and is the pid still its own. The
    /// pid allocator's position at the last such pass (`since`) tells which pids may have
    /// changed hands since (all, when unknown).
    All {
        keys: Vec<ProcKey>,
        since: Option<PidCursor>,
    },
}

impl Probes {
    fn is_empty(&self) -> bool {
        match self {
            Self::Candidates(k) | Self::All { keys: k, .. } => k.is_empty(),
        }
    }
}

/// What a check found: reparented zombies' new parents, the zombies found gone at `at`
/// (keys only: a pass over a mass release may find the whole table gone), and the pid
/// allocator's position when a pass over the whole table started.
struct Checked {
    events: Vec<Event>,
    gone: Vec<ProcKey>,
    at: Ns,
    cursor: Option<PidCursor>,
}

impl Checked {
    /// Everything found, as the table's events.
    fn events(&self) -> impl Iterator<Item = Event> + '_ {
        let at = self.at;
        self.events.iter().cloned().chain(
            self.gone
                .iter()
                .map(move |&key| Event::Vanished { key, at }),
        )
    }
}

/// What /proc says of `parents` (zombies whose parent exited: who is their parent now) and
/// of the probed zombies (are they still there), as events.
fn check_proc(procfs: &ProcFs, parents: &[ProcKey], probes: Probes, now: Ns) -> Checked {
    let mut events = Vec::new();
    for key in parents {
        let Some(me) = procfs.info(key.pid) else {
            continue;
        };
        if me.key != *key {
            continue; // already reaped; the free event or a probe settles it
        }
        let parent = procfs.info(me.ppid);
        let (start, comm) = parent.map_or((0, Default::default()), |p| (p.key.start_ticks, p.comm));
        events.push(Event::Reparented {
            key: *key,
            ppid: me.ppid,
            parent_start_ticks: start,
            parent_comm: comm,
        });
    }
    let started = std::time::Instant::now();
    let (keys, since, cursor) = match probes {
        Probes::Candidates(keys) => (keys, None, None),
        Probes::All { keys, since } => {
            // Read before the probes: a pid that changes hands after this is in question at
            // the next pass.
            let cursor = procfs.pid_cursor();
            (keys, since, cursor)
        }
    };
    // Gone: the pid is free, or (checked where the allocator may have handed it out again)
    // it belongs to another process. A /proc entry that cannot be read or parsed right now
    // proves nothing and is left for a later pass.
    let (mut gone_keys, mut reread, probed) = (Vec::new(), 0, keys.len());
    for key in keys {
        let gone = if !procfs.pid_exists(key.pid) {
            true
        } else if cursor.is_some()
            && since.is_none_or(|prev| possibly_reused(key.pid, prev, cursor.expect("some")))
        {
            reread += 1;
            procfs.info(key.pid).is_some_and(|p| p.key != key)
        } else {
            false
        };
        if gone {
            gone_keys.push(key);
        }
    }
    let vanished = gone_keys.len();
    if vanished > 0 {
        debug!(
            zombies = vanished,
            "gone from /proc before their free event; out of the table"
        );
    }
    if cursor.is_some() {
        debug!(
            zombies = probed,
            reread,
            gone = vanished,
            took_us = started.elapsed().as_micros() as u64,
            "confirmed every listed zombie"
        );
    }
    Checked {
        events,
        gone: gone_keys,
        at: now,
        cursor,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Ns = 1_000_000;
    const S: Ns = 1_000 * MS;

    #[test]
    fn memory_goes_back_once_a_large_release_is_over() {
        let mut g = GiveBack::default();
        let quiet = GIVE_BACK_QUIET.as_nanos() as u64;
        assert!(!g.due(50_000, S));
        // Releasing: never in the middle, however much is gone.
        for (i, held) in [40_000, 20_000, 5_000].into_iter().enumerate() {
            assert!(!g.due(held, S + (i as u64 + 1) * 100 * MS));
        }
        assert!(!g.due(5_000, S + 300 * MS + quiet - 1));
        assert!(g.due(5_000, S + 300 * MS + quiet), "quiet: given back once");
        assert!(!g.due(5_000, S + 300 * MS + 10 * quiet));
        // A small release is not worth a walk of the heap.
        assert!(!g.due(0, 100 * S));
        assert!(!g.due(0, 200 * S));
    }

    #[test]
    fn losses_ask_for_one_resync_at_most_once_a_gap() {
        let mut r = ResyncSchedule::default();
        r.baseline(5, 1);
        assert_eq!(
            r.losses(5, 1),
            None,
            "what was lost before the loop is not ours"
        );
        assert_eq!(r.due(0, false), None);
        assert_eq!(r.losses(8, 1), Some((3, 0)));
        assert_eq!(r.losses(8, 2), Some((0, 1)));
        assert_eq!(r.due(0, true), None, "not while one is in flight");
        assert_eq!(r.due(0, false), Some(ResyncReason::LostEvents));
        assert_eq!(r.due(0, false), None, "taken");
        r.finished(10 * S);
        r.losses(9, 2);
        assert_eq!(r.due(10 * S + 999 * MS, false), None, "within the gap");
        assert_eq!(r.due(11 * S, false), Some(ResyncReason::LostEvents));
    }

    #[test]
    fn periodic_resyncs_follow_the_last_one_and_exits_bring_one_follow_up() {
        let mut r = ResyncSchedule::default();
        let every = Duration::from_secs(60);
        r.periodic(1000 * S, every);
        assert_eq!(r.pending, None, "none before the first (startup) resync");
        r.finished(S);
        r.periodic(60 * S, every);
        assert_eq!(r.pending, None);
        r.periodic(61 * S, every);
        assert_eq!(r.due(61 * S, false), Some(ResyncReason::Periodic));
        r.periodic(1000 * S, Duration::ZERO);
        assert_eq!(r.pending, None, "0: never");
        // Unknown exiting processes: one follow-up, and none after the follow-up itself.
        r.follow_up(ResyncReason::Periodic, 2);
        assert_eq!(r.due(1000 * S, false), Some(ResyncReason::Exiting));
        r.follow_up(ResyncReason::Exiting, 2);
        assert_eq!(r.due(1000 * S, false), None);
        r.follow_up(ResyncReason::Periodic, 0);
        assert_eq!(r.pending, None);
    }

    #[test]
    fn checks_run_every_second_and_a_whole_pass_every_five() {
        let mut c = CheckSchedule::new(0);
        assert_eq!(c.due(999 * MS), None);
        assert_eq!(c.due(S), Some(CheckKind::Candidates));
        assert_eq!(c.due(S + 500 * MS), None);
        for t in 2..5 {
            assert_eq!(c.due(t * S), Some(CheckKind::Candidates), "at {t} s");
        }
        assert_eq!(c.due(5 * S), Some(CheckKind::All));
        assert_eq!(c.due(6 * S), Some(CheckKind::Candidates));
        assert_eq!(c.due(10 * S), Some(CheckKind::All));
    }

    #[test]
    fn the_loop_sleeps_after_idle_and_wakes_with_events() {
        let t0 = tokio::time::Instant::now();
        let iv = Duration::from_millis(25);
        let mut p = Pacing::new(0, t0);
        // Fixed-rate ticks while events flow.
        assert_eq!(p.next_tick(t0, iv), t0 + iv);
        assert_eq!(p.next_tick(t0 + iv, iv), t0 + 2 * iv);
        // Late by more than an interval: one interval from now.
        let late = t0 + 10 * iv;
        assert_eq!(p.next_tick(late, iv), late + iv);
        assert_eq!(p.drained(3, 100 * MS, t0, iv), Pace::Unchanged);
        assert_eq!(p.drained(0, 599 * MS, t0, iv), Pace::Unchanged);
        assert_eq!(p.drained(0, 600 * MS, t0, iv), Pace::FellAsleep);
        assert_eq!(p.drained(0, 900 * MS, t0, iv), Pace::Unchanged, "asleep");
        assert_eq!(p.next_tick(late, iv), late + IDLE_WAKE);
        assert_eq!(p.drained(1, 901 * MS, late, iv), Pace::Woke);
        assert_eq!(p.next_tick(late, iv), late + iv);
        // An event that raced with falling asleep: awake, idle counted from it.
        assert_eq!(p.drained(0, 1401 * MS, late, iv), Pace::FellAsleep);
        p.raced(1402 * MS);
        assert_eq!(p.drained(0, 1500 * MS, late, iv), Pace::Unchanged);
        assert_eq!(p.drained(0, 1902 * MS, late, iv), Pace::FellAsleep);
    }
}
