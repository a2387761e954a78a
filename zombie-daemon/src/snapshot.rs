//! What every reader sees: an immutable picture of the zombie table and of the node, built
//! off the event loop and published on a `tokio::sync::watch` channel.
//!
//! The event loop owns the table ([`crate::tracker::Tracker`]) and the attributor; after a
//! batch that changed what readers see it hands a copy of the table and the snapshot
//! builder (which owns the attributor; see `daemon::build`) to the blocking pool, which attributes and diagnoses every
//! zombie, reads the PID budgets and audits the containers as due, and publishes a new
//! `Arc<Snapshot>`. The HTTP handlers, the metric collectors and the remediation loop hold
//! only a receiver: no reader takes a lock of the core or reads /proc on request, so a
//! scrape cannot stall the loop that drains the ring buffer, and reading never acts.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::sync::{Notify, watch};

use crate::{
    attribution::Attribution,
    audit::ContainerAudit,
    budget::{CgroupBudget, NodeBudget},
    clock::{self, WallClock},
    diagnosis::{Cause, Diagnosis},
    tracker::{Ns, OriginKind, Zombie},
    view::{self, OriginView, ZombieView},
};

/// The published picture. Its parts are shared with the snapshot before it when they were
/// not rebuilt.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub zombies: Arc<Zombies>,
    pub budget: Arc<Budget>,
    /// Every container's PID 1 (command lines redacted unless `--show-cmdlines`).
    pub audit: Arc<Audit>,
}

/// The zombie table as readers see it.
#[derive(Clone, Debug, Default)]
pub struct Zombies {
    /// CLOCK_BOOTTIME when the table was copied.
    pub taken_at: Ns,
    /// The table's fingerprint when copied (see [`crate::tracker::Tracker::fingerprint`]).
    pub fingerprint: u64,
    /// Boot-relative to wall-clock time, as of the build.
    pub wall: WallClock,
    /// Every zombie, oldest first, attributed and diagnosed.
    pub views: Vec<Listed>,
    /// Per container: how many zombies and the oldest one's exit time, at most
    /// [`MAX_CONTAINER_SERIES`] series (the rest summed into `_other`).
    pub containers: Vec<ContainerZombies>,
    /// Per container and cause, with the same cap.
    pub by_cause: Vec<(Labels, Cause, u64)>,
    /// Per container and origin kind, with the same cap.
    pub by_origin: Vec<(Labels, OriginKind, u64)>,
}

/// `namespace`, `pod`, `container` label values (empty for host processes).
pub type Labels = [String; 3];

/// One zombie as listed: its facts, and what it shares with others (attribution,
/// diagnosis, origin, labels: one each per cgroup, parent or lineage). The `/zombies`
/// object is made when read ([`Zombies::aged`]), so a snapshot of 100,000 zombies holds
/// 100,000 small records, not 100,000 objects of strings.
#[derive(Clone, Debug)]
pub struct Listed {
    pub zombie: Zombie,
    pub cgroup_path: Option<Arc<str>>,
    pub attribution: Arc<Attribution>,
    pub diagnosis: Arc<Diagnosis>,
    pub origin: Arc<OriginView>,
    pub labels: Arc<Labels>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerZombies {
    pub labels: Labels,
    pub count: u64,
    /// CLOCK_BOOTTIME of the oldest zombie's exit: its age is computed when read.
    pub oldest_exited_at: Ns,
}

impl Zombies {
    /// The `/zombies` objects, with ages as of `now`.
    pub fn aged(&self, now: Ns) -> Vec<ZombieView> {
        self.views
            .iter()
            .map(|l| {
                view::view_of(
                    &l.zombie,
                    l.cgroup_path.as_deref(),
                    &l.attribution,
                    Some(&l.diagnosis),
                    Some(OriginView::clone(&l.origin)),
                    now,
                    &self.wall,
                )
            })
            .collect()
    }
}

/// The PID budget of the node and of every pod and container cgroup.
#[derive(Clone, Debug, Default)]
pub struct Budget {
    /// CLOCK_BOOTTIME when read (0: never).
    pub taken_at: Ns,
    pub node: Option<NodeBudget>,
    /// With their labels (`container` empty for a pod's own cgroup).
    pub cgroups: Vec<(CgroupBudget, Labels)>,
}

#[derive(Clone, Debug, Default)]
pub struct Audit {
    /// CLOCK_BOOTTIME when taken (0: never).
    pub taken_at: Ns,
    /// Unredacted PID 1 names are in `pid1_comm`; `pid1_cmdline` follows `--show-cmdlines`.
    pub containers: Vec<ContainerAudit>,
}

/// The parts of a snapshot a reader can ask to be fresh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Zombies,
    Budget,
    Audit,
}

impl Snapshot {
    /// When `part` was taken (CLOCK_BOOTTIME; 0: never).
    pub fn taken_at(&self, part: Part) -> Ns {
        match part {
            Part::Zombies => self.zombies.taken_at,
            Part::Budget => self.budget.taken_at,
            Part::Audit => self.audit.taken_at,
        }
    }
}

/// Readers' requests for fresher parts. A reader never reads /proc or the table itself: it
/// records what it wants here and waits (bounded) for the event loop to publish it. The
/// loop starts such builds at most once per [`DEMAND_GAP`] for each part, so a client that
/// floods the API costs at most one build per gap, off the loop.
#[derive(Debug, Default)]
pub struct Demand {
    /// Per part, the latest time a reader wants it taken at or after.
    wanted: [AtomicU64; 3],
    notify: Notify,
}

/// At most one build a reader asked for per part in this time.
pub const DEMAND_GAP: Duration = Duration::from_millis(250);
/// A reader waits at most this long for a fresher part, then takes what is published.
pub const DEMAND_WAIT: Duration = Duration::from_secs(2);

impl Demand {
    /// `part` is wanted taken at or after `as_of`.
    pub fn ask(&self, part: Part, as_of: Ns) {
        self.wanted[part as usize].fetch_max(as_of, Ordering::AcqRel);
        self.notify.notify_one();
    }

    /// The latest time `part` is wanted taken at or after (0: never asked).
    pub fn wanted(&self, part: Part) -> Ns {
        self.wanted[part as usize].load(Ordering::Acquire)
    }

    /// Resolves when a reader asked for something (for the event loop).
    pub async fn asked(&self) {
        self.notify.notified().await;
    }
}

/// The published snapshot, with each of `parts` taken no earlier than `max_age` before
/// now (asking the event loop for newer ones and waiting up to [`DEMAND_WAIT`] for them;
/// on timeout, what is published).
pub async fn fresh(
    rx: &watch::Receiver<Arc<Snapshot>>,
    demand: &Demand,
    parts: &[(Part, Duration)],
) -> Arc<Snapshot> {
    let now = clock::boottime_now();
    let wants: Vec<(Part, Ns)> = parts
        .iter()
        .map(|(p, age)| (*p, now.saturating_sub(age.as_nanos() as u64)))
        .collect();
    let fresh_enough = |s: &Snapshot| {
        wants
            .iter()
            .all(|(p, as_of)| s.taken_at(*p) >= *as_of && s.taken_at(*p) > 0)
    };
    let mut rx = rx.clone();
    let current = rx.borrow_and_update().clone();
    if fresh_enough(&current) {
        return current;
    }
    for (p, as_of) in &wants {
        if current.taken_at(*p) < *as_of || current.taken_at(*p) == 0 {
            demand.ask(*p, *as_of);
        }
    }
    let deadline = tokio::time::Instant::now() + DEMAND_WAIT;
    loop {
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {
                let s = rx.borrow_and_update().clone();
                if fresh_enough(&s) {
                    return s;
                }
            }
            // Timed out, or the loop is gone: what there is.
            _ => return rx.borrow().clone(),
        }
    }
}

/// At most this many containers get their own zombie series; a node with more containers
/// with zombies is broken enough that the top ones tell the story.
pub const MAX_CONTAINER_SERIES: usize = 500;

/// The labels of the series that sums the containers beyond the cap.
pub fn other_labels() -> Labels {
    [String::new(), "_other".into(), "_other".into()]
}
