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

/// What readers asked for: per part, the latest time they want it taken at or after (0:
/// never asked). Read from [`Demand`] at each decision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Wanted {
    pub zombies: Ns,
    pub budget: Ns,
    pub audit: Ns,
}

impl Wanted {
    pub(super) fn of(demand: &Demand) -> Self {
        Self {
            zombies: demand.wanted(Part::Zombies),
            budget: demand.wanted(Part::Budget),
            audit: demand.wanted(Part::Audit),
        }
    }
}

/// What a decision sees of the world: the time, the table (its fingerprint and whether it
/// is empty), the runtime's names and what readers want.
#[derive(Clone, Copy, Debug)]
pub(super) struct Inputs {
    pub now: Ns,
    pub fingerprint: u64,
    pub table_empty: bool,
    pub names_generation: u64,
    pub wanted: Wanted,
}

/// A build to start: whether it takes the table's changes, and which parts it makes anew.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Plan {
    pub table: bool,
    pub parts: Parts,
}

/// When each part was last built (None: never).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Built {
    /// Every group diagnosed anew.
    refresh: Option<Ns>,
    budget: Option<Ns>,
    audit: Option<Ns>,
}

/// The publisher's scheduling state, pure: what decides when the next build starts and
/// what it makes. The clock and the world come in as [`Inputs`]; no task, no channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Schedule {
    /// The table's fingerprint when the last table build started (None: never).
    table_fp: Option<u64>,
    /// A table build is owed regardless of the fingerprint (exec leaks to count, changes
    /// left over, a lost builder).
    table_owed: bool,
    /// No table build before this (see [`MIN_GAP`]).
    hold_until: Ns,
    names_generation: u64,
    built: Built,
    /// The builder was lost with its store: the next build starts from every zombie.
    rebuild: bool,
}

impl Default for Schedule {
    fn default() -> Self {
        Self {
            table_fp: None,
            table_owed: true,
            hold_until: 0,
            names_generation: 0,
            built: Built::default(),
            rebuild: false,
        }
    }
}

impl Schedule {
    /// Build the table at the next chance even if its fingerprint did not change.
    pub(super) fn owe_table(&mut self) {
        self.table_owed = true;
    }

    fn table_changed(&self, fingerprint: u64) -> bool {
        self.table_owed || self.table_fp != Some(fingerprint)
    }

    /// The earliest time a build that waits (for [`MIN_GAP`] or [`DEMAND_GAP`]) may start
    /// (None: none waits).
    pub(super) fn next_start(&self, fingerprint: u64, wanted: Wanted) -> Option<Ns> {
        let gap = DEMAND_GAP.as_nanos() as u64;
        let asked = |want, last: Option<Ns>| {
            asked(want, last).then(|| last.map_or(0, |t| t.saturating_add(gap)))
        };
        [
            self.table_changed(fingerprint).then_some(self.hold_until),
            asked(wanted.zombies, self.built.refresh),
            asked(wanted.budget, self.built.budget),
            asked(wanted.audit, self.built.audit),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The build due now, if any.
    pub(super) fn plan(&self, i: &Inputs) -> Option<Plan> {
        let now = i.now;
        let names_changed = i.names_generation != self.names_generation;
        let since = |last: Option<Ns>, every: Duration| {
            last.is_none_or(|t| now.saturating_sub(t) >= every.as_nanos() as u64)
        };
        let demanded = |want, last: Option<Ns>| asked(want, last) && since(last, DEMAND_GAP);
        let b = &self.built;
        let refresh = names_changed
            || (!i.table_empty && since(b.refresh, TABLE_REFRESH))
            || demanded(i.wanted.zombies, b.refresh);
        let parts = Parts {
            budget: (names_changed && b.budget.is_some()) || demanded(i.wanted.budget, b.budget),
            audit: (names_changed && b.audit.is_some()) || demanded(i.wanted.audit, b.audit),
            refresh,
        };
        let table = refresh || (self.table_changed(i.fingerprint) && now >= self.hold_until);
        (table || parts != Parts::default()).then_some(Plan { table, parts })
    }

    /// A planned build starts. `more`: the tracker kept changes the build did not take.
    pub(super) fn started(&mut self, plan: Plan, i: &Inputs, more: bool) {
        let now = i.now;
        if plan.table {
            self.table_fp = Some(i.fingerprint);
            self.table_owed = more;
        }
        if plan.parts.refresh {
            self.built.refresh = Some(now);
        }
        if plan.parts.budget {
            self.built.budget = Some(now);
        }
        if plan.parts.audit {
            self.built.audit = Some(now);
        }
        self.names_generation = i.names_generation;
    }

    /// Whether the next build must start from every zombie; cleared by asking.
    pub(super) fn take_rebuild(&mut self) -> bool {
        std::mem::take(&mut self.rebuild)
    }

    /// A build finished at `now` after `took`: the next table build waits its gap.
    pub(super) fn finished(&mut self, took: Duration, now: Ns) {
        let gap = (took * BUILD_BACKOFF).clamp(MIN_GAP, MAX_GAP);
        self.hold_until = now.saturating_add(gap.as_nanos() as u64);
    }

    /// A build failed and took its builder (and store) with it.
    pub(super) fn lost_builder(&mut self) {
        self.table_owed = true;
        self.rebuild = true;
    }
}

pub(super) struct Publisher {
    /// Makes a new builder if a build panicked and took its builder with it.
    make: Box<dyn Fn() -> Builder + Send>,
    /// None while lent to a build.
    builder: Option<Builder>,
    task: Option<JoinHandle<Done>>,
    tx: watch::Sender<Arc<Snapshot>>,
    current: Arc<Snapshot>,
    schedule: Schedule,
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
            schedule: Schedule::default(),
            published_seq: None,
            exec_leaks: Vec::new(),
        }
    }

    /// Zombies exec sessions left behind: counted per container by the next build.
    pub(super) fn exec_leaks(&mut self, zombies: Vec<crate::tracker::Zombie>) {
        if !zombies.is_empty() {
            self.exec_leaks.extend(zombies);
            self.schedule.owe_table();
        }
    }

    /// Build the table at the next chance even if its fingerprint did not change.
    pub(super) fn want_table(&mut self) {
        self.schedule.owe_table();
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
        self.schedule
            .next_start(tracker.fingerprint(), Wanted::of(demand))
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
        let inputs = Inputs {
            now,
            fingerprint: tracker.fingerprint(),
            table_empty: tracker.is_empty(),
            names_generation: builder.names_generation(),
            wanted: Wanted::of(demand),
        };
        let Some(plan) = self.schedule.plan(&inputs) else {
            self.builder = Some(builder);
            return;
        };
        if self.schedule.take_rebuild() {
            tracker.change_all();
        }
        let copy = plan.table.then(|| tracker.take_changes(MAX_CHANGES));
        let more = copy.as_ref().is_some_and(|c| c.more);
        self.schedule.started(plan, &inputs, more);
        let prev = self.current.clone();
        let leaks = std::mem::take(&mut self.exec_leaks);
        let parts = plan.parts;
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
                more,
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
                self.schedule.lost_builder();
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
        self.schedule
            .finished(done.took, crate::clock::boottime_now());
        if done.with_table && !done.more {
            self.published_seq = Some(done.seq);
        }
    }
}

/// Whether a reader asked for a part newer than the one taken at `last` (`wanted`: the
/// time it wants it taken at or after; 0: never asked).
fn asked(wanted: Ns, last: Option<Ns>) -> bool {
    wanted > 0 && last.is_none_or(|t| t < wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Ns = 1_000_000;

    fn inputs(now: Ns, fingerprint: u64) -> Inputs {
        Inputs {
            now,
            fingerprint,
            table_empty: false,
            names_generation: 0,
            wanted: Wanted::default(),
        }
    }

    /// Plans and starts the build due at `i`, if any.
    fn step(s: &mut Schedule, i: &Inputs) -> Option<Plan> {
        let plan = s.plan(i)?;
        s.started(plan, i, false);
        Some(plan)
    }

    #[test]
    fn the_first_build_takes_the_table_and_an_unchanged_table_is_not_built_again() {
        let mut s = Schedule::default();
        let i = Inputs {
            table_empty: true,
            ..inputs(MS, 7)
        };
        let p = step(&mut s, &i).expect("the first build is owed");
        assert!(p.table && !p.parts.refresh && !p.parts.budget && !p.parts.audit);
        s.finished(Duration::from_millis(1), MS);
        // Same fingerprint, empty table, nothing asked: nothing, however long it waits.
        for t in [2 * MS, 500 * MS, 60_000 * MS] {
            assert_eq!(s.plan(&Inputs { now: t, ..i }), None, "at {t}");
            assert_eq!(s.next_start(7, Wanted::default()), None);
        }
    }

    #[test]
    fn a_changed_table_waits_for_the_gap_after_the_last_build() {
        let mut s = Schedule::default();
        step(&mut s, &inputs(0, 1)).unwrap();
        // A 1 ms build: the gap is MIN_GAP (8 ms is below it).
        s.finished(Duration::from_millis(1), 10 * MS);
        let hold = 10 * MS + MIN_GAP.as_nanos() as u64;
        assert_eq!(s.next_start(2, Wanted::default()), Some(hold));
        assert_eq!(s.plan(&inputs(hold - 1, 2)), None);
        assert!(s.plan(&inputs(hold, 2)).unwrap().table);
        // A 1 s build: the gap is capped at MAX_GAP.
        s.finished(Duration::from_secs(1), 10 * MS);
        assert_eq!(
            s.next_start(2, Wanted::default()),
            Some(10 * MS + MAX_GAP.as_nanos() as u64)
        );
        // A 15 ms build: 8 times as long, 120 ms.
        s.finished(Duration::from_millis(15), 10 * MS);
        assert_eq!(s.next_start(2, Wanted::default()), Some(130 * MS));
    }

    #[test]
    fn changes_left_over_or_owed_build_the_table_with_the_same_fingerprint() {
        let mut s = Schedule::default();
        let i = inputs(0, 5);
        let plan = s.plan(&i).unwrap();
        s.started(plan, &i, true);
        assert!(s.plan(&inputs(1, 5)).unwrap().table, "more changes wait");
        step(&mut s, &inputs(1, 5)).unwrap();
        assert_eq!(s.plan(&inputs(2, 5)), None);
        s.owe_table();
        assert!(s.plan(&inputs(2, 5)).unwrap().table);
    }

    #[test]
    fn zombies_are_diagnosed_anew_every_table_refresh() {
        let mut s = Schedule::default();
        let p = step(&mut s, &inputs(0, 1)).unwrap();
        assert!(p.parts.refresh, "never refreshed, zombies listed");
        let refresh = TABLE_REFRESH.as_nanos() as u64;
        assert_eq!(s.plan(&inputs(refresh - 1, 1)), None);
        let p = s.plan(&inputs(refresh, 1)).unwrap();
        assert!(p.table && p.parts.refresh);
        // An empty table is not refreshed.
        let empty = Inputs {
            table_empty: true,
            ..inputs(10 * refresh, 1)
        };
        assert_eq!(s.plan(&empty), None);
    }

    #[test]
    fn a_readers_demand_is_served_once_per_gap_and_part() {
        let mut s = Schedule::default();
        step(&mut s, &inputs(0, 1)).unwrap();
        let gap = DEMAND_GAP.as_nanos() as u64;
        let want = |budget: Ns| Wanted {
            budget,
            ..Wanted::default()
        };
        let at = |now: Ns, w: Wanted| Inputs {
            wanted: w,
            ..inputs(now, 1)
        };
        // Never built: at once, and only the budget.
        let p = step(&mut s, &at(MS, want(MS))).unwrap();
        assert!(p.parts.budget && !p.parts.audit && !p.parts.refresh && !p.table);
        // Asked again for newer: not before the gap, which next_start names.
        assert_eq!(s.plan(&at(2 * MS, want(2 * MS))), None);
        assert_eq!(s.next_start(1, want(2 * MS)), Some(MS + gap));
        assert!(s.plan(&at(MS + gap, want(2 * MS))).unwrap().parts.budget);
        // Asked for what is already built: nothing.
        assert_eq!(s.plan(&at(MS + gap, want(MS))), None);
        assert_eq!(s.next_start(1, want(MS)), None);
    }

    #[test]
    fn new_runtime_names_refresh_what_was_built() {
        let mut s = Schedule::default();
        step(&mut s, &inputs(0, 1)).unwrap();
        let audit = Inputs {
            wanted: Wanted {
                audit: MS,
                ..Wanted::default()
            },
            ..inputs(MS, 1)
        };
        step(&mut s, &audit).unwrap();
        let named = Inputs {
            names_generation: 1,
            ..inputs(2 * MS, 1)
        };
        let p = step(&mut s, &named).unwrap();
        // The audit was built before: made anew; the budget never was: still not.
        assert!(p.table && p.parts.refresh && p.parts.audit && !p.parts.budget);
        assert_eq!(
            s.plan(&Inputs {
                now: 3 * MS,
                ..named
            }),
            None
        );
    }

    #[test]
    fn a_lost_builder_rebuilds_from_every_zombie_once() {
        let mut s = Schedule::default();
        step(&mut s, &inputs(0, 1)).unwrap();
        assert!(!s.take_rebuild());
        s.lost_builder();
        assert!(s.plan(&inputs(MS, 1)).unwrap().table);
        assert!(s.take_rebuild());
        assert!(!s.take_rebuild());
    }
}
