//! Publishing snapshots: when the table changed (or a part is due), the event loop lends the
//! [`Builder`] and a copy of the table to the blocking pool and publishes what comes back.

use std::{sync::Arc, time::Duration};

use tokio::{sync::watch, task::JoinHandle};
use tracing::warn;

use super::snapshot_builder::{Builder, Parts};
use crate::{
    clock::WallClock,
    snapshot::{DEMAND_GAP, Demand, Part, Snapshot},
    tracker::{Ns, Tracker},
};

/// Zombies are diagnosed anew this often while there are any, for the remediation loop (a
/// parent may start waiting, stop or exit without an event that changes the table);
/// readers of the API ask for fresher diagnoses themselves (see [`Demand`]). PID budgets
/// and the init audit are read only when a reader asks.
const TABLE_REFRESH: Duration = Duration::from_secs(10);
/// After a build, the next one waits at least this long, and `BUILD_BACKOFF` times as long
/// as the build took up to [`MAX_GAP`]: under a steady churn builds run at most 10 times a
/// second (each costs a hand-off to the blocking pool whatever it applies), and a new zombie
/// still shows within a drain, a gap and a build (the freshness bound is 250 ms).
const MIN_GAP: Duration = Duration::from_millis(100);
const BUILD_BACKOFF: u32 = 8;
/// However long builds take, the next one waits at most this long: a build applies only
/// what changed, so a long one means a storm of changes, which readers want to see.
const MAX_GAP: Duration = Duration::from_millis(150);
/// Changes one build applies at most: what a build holds of the tracker's changes is
/// bounded (a /proc bootstrap of a million zombies is published a slice at a time).
const MAX_CHANGES: usize = 16_384;

struct Done {
    builder: Builder,
    snapshot: Snapshot,
    took: Duration,
    /// The loop's change sequence number the build saw.
    seq: u64,
    with_table: bool,
    /// The tracker had more changes than the build took.
    more: bool,
}

pub(super) struct Publisher {
    /// Makes a new builder if a build panicked and took its builder with it.
    make: Box<dyn Fn() -> Builder + Send>,
    /// None while lent to a build.
    builder: Option<Builder>,
    task: Option<JoinHandle<Done>>,
    tx: watch::Sender<Arc<Snapshot>>,
    current: Arc<Snapshot>,
    /// The fingerprint of the table in the last build started (None: never).
    table_fp: Option<u64>,
    /// A table build was asked for regardless of the fingerprint.
    table_wanted: bool,
    names_generation: u64,
    last_table: Option<Ns>,
    /// When every group was last diagnosed anew.
    last_refresh: Option<Ns>,
    /// The builder was lost with its store: the next build starts from every zombie.
    rebuild: bool,
    last_budget: Option<Ns>,
    last_audit: Option<Ns>,
    /// No table build before this (see [`MIN_GAP`]).
    hold_until: Ns,
    /// The change sequence number of the last published table.
    published_seq: Option<u64>,
    /// Zombies exec sessions left, to be counted by the next build (which attributes them).
    exec_leaks: Vec<crate::tracker::Zombie>,
}

impl Publisher {
    pub(super) fn new(
        make: Box<dyn Fn() -> Builder + Send>,
        tx: watch::Sender<Arc<Snapshot>>,
    ) -> Self {
        let current = tx.borrow().clone();
        Self {
            builder: Some(make()),
            make,
            task: None,
            tx,
            current,
            table_fp: None,
            table_wanted: true,
            names_generation: 0,
            last_table: None,
            last_refresh: None,
            rebuild: false,
            last_budget: None,
            last_audit: None,
            hold_until: 0,
            published_seq: None,
            exec_leaks: Vec::new(),
        }
    }

    /// Zombies exec sessions left behind: counted per container by the next build.
    pub(super) fn exec_leaks(&mut self, zombies: Vec<crate::tracker::Zombie>) {
        if !zombies.is_empty() {
            self.exec_leaks.extend(zombies);
            self.table_wanted = true;
        }
    }

    /// Build the table at the next chance even if its fingerprint did not change.
    pub(super) fn want_table(&mut self) {
        self.table_wanted = true;
    }

    /// The change sequence number of the last published table.
    pub(super) fn published_seq(&self) -> Option<u64> {
        self.published_seq
    }

    pub(super) fn in_flight(&self) -> bool {
        self.task.is_some()
    }

    /// The earliest time a build that is waiting (for [`MIN_GAP`] or [`DEMAND_GAP`]) may
    /// start (None: none is waiting).
    pub(super) fn next_start(&self, tracker: &Tracker, demand: &Demand) -> Option<Ns> {
        if self.task.is_some() {
            return None;
        }
        let gap = DEMAND_GAP.as_nanos() as u64;
        let asked = |part, last: Option<Ns>| {
            asked(demand, part, last).then(|| last.map_or(0, |t| t.saturating_add(gap)))
        };
        [
            self.table_changed(tracker).then_some(self.hold_until),
            asked(Part::Zombies, self.last_refresh),
            asked(Part::Budget, self.last_budget),
            asked(Part::Audit, self.last_audit),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn table_changed(&self, tracker: &Tracker) -> bool {
        self.table_wanted || self.table_fp != Some(tracker.fingerprint())
    }

    /// Starts a build if one is due and none is in flight.
    pub(super) fn maybe_start(
        &mut self,
        tracker: &mut Tracker,
        demand: &Demand,
        now: Ns,
        seq: u64,
    ) {
        if self.task.is_some() {
            return;
        }
        let Some(mut builder) = self.builder.take() else {
            return;
        };
        let names_changed = builder.names_generation() != self.names_generation;
        let since = |last: Option<Ns>, every: Duration| {
            last.is_none_or(|t| now.saturating_sub(t) >= every.as_nanos() as u64)
        };
        let demanded =
            |part, last: Option<Ns>| asked(demand, part, last) && since(last, DEMAND_GAP);
        let refresh = names_changed
            || (!tracker.is_empty() && since(self.last_refresh, TABLE_REFRESH))
            || demanded(Part::Zombies, self.last_refresh);
        let parts = Parts {
            budget: (names_changed && self.last_budget.is_some())
                || demanded(Part::Budget, self.last_budget),
            audit: (names_changed && self.last_audit.is_some())
                || demanded(Part::Audit, self.last_audit),
            refresh,
        };
        let table = refresh || (self.table_changed(tracker) && now >= self.hold_until);
        if !table && parts == Parts::default() {
            self.builder = Some(builder);
            return;
        }
        if std::mem::take(&mut self.rebuild) {
            tracker.change_all();
        }
        let copy = table.then(|| tracker.take_changes(MAX_CHANGES));
        if table {
            self.table_fp = Some(tracker.fingerprint());
            self.table_wanted = copy.as_ref().is_some_and(|c| c.more);
            self.last_table = Some(now);
        }
        if refresh {
            self.last_refresh = Some(now);
        }
        self.names_generation = builder.names_generation();
        if parts.budget {
            self.last_budget = Some(now);
        }
        if parts.audit {
            self.last_audit = Some(now);
        }
        let prev = self.current.clone();
        let leaks = std::mem::take(&mut self.exec_leaks);
        self.task = Some(tokio::task::spawn_blocking(move || {
            let t0 = std::time::Instant::now();
            builder.count_exec_leaks(&leaks);
            let snapshot = builder.build(&prev, copy.as_ref(), parts, now, &WallClock::now());
            Done {
                builder,
                snapshot,
                took: t0.elapsed(),
                seq,
                with_table: copy.is_some(),
                more: copy.is_some_and(|c| c.more),
            }
        }));
    }

    /// Waits for the build in flight (pending forever when there is none: for `select!`),
    /// and publishes its snapshot.
    pub(super) async fn finished(&mut self) {
        let Some(task) = self.task.as_mut() else {
            return std::future::pending().await;
        };
        let result = task.await;
        self.task = None;
        let done = match result {
            Ok(done) => done,
            Err(e) => {
                warn!("building a snapshot failed: {e}; the next build starts afresh");
                self.builder = Some((self.make)());
                self.table_wanted = true;
                self.rebuild = true;
                return;
            }
        };
        tracing::debug!(
            took_us = done.took.as_micros() as u64,
            zombies = done.snapshot.zombies.store.len(),
            with_table = done.with_table,
            "snapshot published"
        );
        self.builder = Some(done.builder);
        self.current = Arc::new(done.snapshot);
        self.tx.send_replace(self.current.clone());
        let gap = (done.took * BUILD_BACKOFF).clamp(MIN_GAP, MAX_GAP);
        self.hold_until = crate::clock::boottime_now().saturating_add(gap.as_nanos() as u64);
        if done.with_table && !done.more {
            self.published_seq = Some(done.seq);
        }
    }
}

/// Whether a reader asked for `part` newer than the one taken at `last`.
fn asked(demand: &Demand, part: Part, last: Option<Ns>) -> bool {
    let wanted = demand.wanted(part);
    wanted > 0 && last.is_none_or(|t| t < wanted)
}
