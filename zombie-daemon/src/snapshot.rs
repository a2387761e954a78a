//! What every reader sees: an immutable picture of the zombie table and of the node, built
//! off the event loop and published on a `tokio::sync::watch` channel.
//!
//! The event loop owns the table ([`crate::tracker::Tracker`]) and the attributor; after a
//! batch that changed what readers see it hands a copy of the table and the [`Builder`]
//! (which owns the attributor) to the blocking pool, which attributes and diagnoses every
//! zombie, reads the PID budgets and audits the containers as due, and publishes a new
//! `Arc<Snapshot>`. The HTTP handlers, the metric collectors and the remediation loop hold
//! only a receiver: no reader takes a lock of the core or reads /proc on request, so a
//! scrape cannot stall the loop that drains the ring buffer, and reading never acts.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use rustc_hash::FxHashMap;
use tokio::sync::{Notify, watch};

use crate::{
    audit::{self, ContainerAudit},
    budget::{self, CgroupBudget, NodeBudget},
    clock,
    clock::WallClock,
    diagnosis::Cause,
    tracker::{Ns, Table},
    view::{self, Attributor, ZombieView},
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
    /// CLOCK_BOOTTIME when the table was copied; ages in `views` are as of then.
    pub taken_at: Ns,
    /// The table's fingerprint when copied (see [`crate::tracker::Tracker::fingerprint`]).
    pub fingerprint: u64,
    /// Every zombie, oldest first, attributed and diagnosed.
    pub views: Vec<ZombieView>,
    /// Per container: how many zombies and the oldest one's exit time, at most
    /// [`MAX_CONTAINER_SERIES`] series (the rest summed into `_other`).
    pub containers: Vec<ContainerZombies>,
    /// Per container and cause, with the same cap.
    pub by_cause: Vec<(Labels, Cause, u64)>,
}

/// `namespace`, `pod`, `container` label values (empty for host processes).
pub type Labels = [String; 3];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerZombies {
    pub labels: Labels,
    pub count: u64,
    /// CLOCK_BOOTTIME of the oldest zombie's exit: its age is computed when read.
    pub oldest_exited_at: Ns,
}

impl Zombies {
    /// The views with their ages as of `now` (ages in the snapshot are as of `taken_at`).
    pub fn aged(&self, now: Ns) -> Vec<ZombieView> {
        let delta = now.saturating_sub(self.taken_at) as f64 / 1e9;
        self.views
            .iter()
            .map(|v| {
                let mut v = v.clone();
                v.age_seconds = ((v.age_seconds + delta) * 1e3).round() / 1e3;
                v
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

/// Which parts of a snapshot a build makes anew; the others are taken from the last one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Parts {
    pub budget: bool,
    pub audit: bool,
}

/// Builds snapshots. Owns the attributor (cgroup paths, runtime names and their caches);
/// the event loop lends it to one build at a time.
pub struct Builder {
    attributor: Attributor,
    proc_root: PathBuf,
    /// The hierarchy that lists container processes (budgets and the audit).
    pids_root: Option<PathBuf>,
    show_cmdlines: bool,
}

impl Builder {
    pub fn new(attributor: Attributor, proc_root: &Path, pids_root: Option<PathBuf>) -> Self {
        let show_cmdlines = attributor.show_cmdlines();
        Self {
            attributor,
            proc_root: proc_root.to_path_buf(),
            pids_root,
            show_cmdlines,
        }
    }

    /// The runtime's names changed since `generation` (labels must be made anew).
    pub fn names_generation(&self) -> u64 {
        self.attributor.names_generation()
    }

    /// A new snapshot: the zombies of `table` (when given), and the budget and audit when
    /// `parts` asks; everything else is `prev`'s.
    pub fn build(
        &mut self,
        prev: &Snapshot,
        table: Option<&Table>,
        parts: Parts,
        now: Ns,
        wall: &WallClock,
    ) -> Snapshot {
        let zombies = match table {
            Some(table) => Arc::new(self.zombies(table, now, wall)),
            None => prev.zombies.clone(),
        };
        let budget = if parts.budget {
            Arc::new(self.budget(now))
        } else {
            prev.budget.clone()
        };
        // A container started or removed since the last audit: audit now, so that its PID 1
        // is known (or its series gone) within a budget refresh, not an audit period.
        let containers_changed =
            parts.budget && container_paths(&budget) != audited_paths(&prev.audit);
        let audit = if parts.audit || containers_changed {
            Arc::new(self.audit(now))
        } else {
            prev.audit.clone()
        };
        Snapshot {
            zombies,
            budget,
            audit,
        }
    }

    fn zombies(&mut self, table: &Table, now: Ns, wall: &WallClock) -> Zombies {
        let views = view::snapshot(table, &mut self.attributor, now, wall);
        let (containers, by_cause) = series(&views, now);
        Zombies {
            taken_at: now,
            fingerprint: table.fingerprint,
            views,
            containers,
            by_cause,
        }
    }

    fn budget(&mut self, now: Ns) -> Budget {
        let node = budget::node(&self.proc_root);
        let cgroups = match &self.pids_root {
            Some(root) => budget::pods(root)
                .into_iter()
                .map(|c| {
                    let labels = self.attributor.for_path(&c.path).labels();
                    (c, labels)
                })
                .collect(),
            None => Vec::new(),
        };
        Budget {
            taken_at: now,
            node,
            cgroups,
        }
    }

    fn audit(&mut self, now: Ns) -> Audit {
        let Some(root) = &self.pids_root else {
            return Audit {
                taken_at: now,
                containers: Vec::new(),
            };
        };
        let mut containers = audit::audit(&self.proc_root, root);
        audit::name(&mut containers, &mut self.attributor);
        audit::redact(&mut containers, self.show_cmdlines);
        Audit {
            taken_at: now,
            containers,
        }
    }
}

fn container_paths(b: &Budget) -> std::collections::BTreeSet<&str> {
    b.cgroups
        .iter()
        .filter(|(c, _)| c.container_id.is_some())
        .map(|(c, _)| c.path.as_str())
        .collect()
}

fn audited_paths(a: &Audit) -> std::collections::BTreeSet<&str> {
    a.containers
        .iter()
        .map(|c| c.cgroup_path.as_str())
        .collect()
}

/// The per-container series of a table: counts and oldest exit, and counts by cause, the
/// containers with the most zombies keeping their own series and the rest summed into one
/// `_other` series (bounded cardinality). One zero series when there are no zombies, so
/// that a sum over the node is 0, not empty.
fn series(views: &[ZombieView], now: Ns) -> (Vec<ContainerZombies>, Vec<(Labels, Cause, u64)>) {
    let mut groups: FxHashMap<Labels, (u64, Ns)> = FxHashMap::default();
    let mut causes: FxHashMap<(Labels, Cause), u64> = FxHashMap::default();
    for v in views {
        let labels = labels_of(v);
        if let Some(cause) = v.cause {
            *causes.entry((labels.clone(), cause)).or_default() += 1;
        }
        let exited_at = now.saturating_sub((v.age_seconds * 1e9) as u64);
        let g = groups.entry(labels).or_insert((0, Ns::MAX));
        g.0 += 1;
        g.1 = g.1.min(exited_at);
    }
    let kept = cap_series(&mut groups, MAX_CONTAINER_SERIES);
    let mut by_cause: FxHashMap<(Labels, Cause), u64> = FxHashMap::default();
    for ((l, c), n) in causes {
        let l = if kept.as_ref().is_none_or(|k| k.contains(&l)) {
            l
        } else {
            other_labels()
        };
        *by_cause.entry((l, c)).or_default() += n;
    }
    let mut containers: Vec<ContainerZombies> = groups
        .into_iter()
        .map(|(labels, (count, oldest_exited_at))| ContainerZombies {
            labels,
            count,
            oldest_exited_at,
        })
        .collect();
    if containers.is_empty() {
        containers.push(ContainerZombies {
            labels: Labels::default(),
            count: 0,
            oldest_exited_at: now,
        });
    }
    containers.sort_by(|a, b| a.labels.cmp(&b.labels));
    let mut by_cause: Vec<(Labels, Cause, u64)> =
        by_cause.into_iter().map(|((l, c), n)| (l, c, n)).collect();
    by_cause.sort_by(|a, b| (&a.0, a.1.as_str()).cmp(&(&b.0, b.1.as_str())));
    (containers, by_cause)
}

/// The metric labels of a zombie, as [`crate::attribution::Attribution::labels`] makes them.
pub fn labels_of(v: &ZombieView) -> Labels {
    crate::attribution::Attribution {
        owner: match v.owner.as_str() {
            "pod" => crate::attribution::Owner::Pod.as_str(),
            "host" => crate::attribution::Owner::Host.as_str(),
            _ => crate::attribution::Owner::Unknown.as_str(),
        },
        pod_uid: v.pod_uid.clone(),
        container_id: v.container_id.clone(),
        namespace: v.namespace.clone(),
        pod: v.pod.clone(),
        container: v.container.clone(),
        ..Default::default()
    }
    .labels()
}

/// Keeps the `max - 1` groups with the most zombies (then the oldest) and folds the rest
/// into one `_other` group; returns the kept keys when it had to cut.
fn cap_series(
    groups: &mut FxHashMap<Labels, (u64, Ns)>,
    max: usize,
) -> Option<rustc_hash::FxHashSet<Labels>> {
    if groups.len() <= max {
        return None;
    }
    let mut all: Vec<(Labels, (u64, Ns))> = groups.drain().collect();
    all.sort_by(|a, b| {
        b.1.0
            .cmp(&a.1.0)
            .then(a.1.1.cmp(&b.1.1))
            .then_with(|| a.0.cmp(&b.0))
    });
    let rest = all.split_off(max - 1);
    let mut other = (0, Ns::MAX);
    for (_, (n, oldest)) in &rest {
        other.0 += n;
        other.1 = other.1.min(*oldest);
    }
    let kept = all.iter().map(|(k, _)| k.clone()).collect();
    groups.extend(all);
    groups.insert(other_labels(), other);
    Some(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_capped_into_other() {
        let mut groups: FxHashMap<Labels, (u64, Ns)> = FxHashMap::default();
        for i in 0..10u64 {
            groups.insert(
                [String::new(), format!("pod{i}"), "c".into()],
                (i, 1000 - i * 10),
            );
        }
        let kept = cap_series(&mut groups, 4).unwrap();
        assert_eq!(groups.len(), 4);
        assert_eq!(kept.len(), 3);
        // pods 9, 8, 7 keep their series; 0..=6 sum to 21 zombies, the oldest exited at 940.
        assert_eq!(groups[&other_labels()], (21, 940));
        assert!(groups.contains_key(&[String::new(), "pod9".into(), "c".into()]));
        let total: u64 = groups.values().map(|v| v.0).sum();
        assert_eq!(total, 45);
        assert!(cap_series(&mut groups, 4).is_none());
    }
}
