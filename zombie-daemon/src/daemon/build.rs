//! Building snapshots (see [`crate::snapshot`]): the owner's side. The builder owns the
//! attributor and reads /proc and cgroupfs; it runs on the blocking pool, lent by the event
//! loop to one build at a time.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use rustc_hash::FxHashMap;

use crate::{
    audit, budget,
    clock::WallClock,
    diagnosis::{Cause, Diagnosis},
    metrics::Metrics,
    snapshot::{
        Audit, Budget, ContainerZombies, Labels, Listed, MAX_CONTAINER_SERIES, Snapshot, Zombies,
        other_labels,
    },
    tracker::{Ns, Origin, OriginKind, ProcKey, Table, Zombie},
    view::{Attributor, Diagnoser, OriginView},
};

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
    /// Counts zombies exec sessions left (see [`Self::count_exec_leaks`]).
    metrics: Option<Arc<Metrics>>,
    /// The containers with their own `zombie_exec_session_zombies_total` series.
    exec_series: rustc_hash::FxHashSet<Labels>,
    /// Zombies a snapshot lists in detail at most (see [`sample`]).
    max_listed: usize,
    /// The last snapshot left zombies without detail (for the log).
    sampling: bool,
}

/// The default of `--max-listed-zombies`: about 10 MiB of per-zombie detail in a snapshot.
pub const DEFAULT_MAX_LISTED: usize = 50_000;

impl Builder {
    pub fn new(attributor: Attributor, proc_root: &Path, pids_root: Option<PathBuf>) -> Self {
        let show_cmdlines = attributor.show_cmdlines();
        Self {
            attributor,
            proc_root: proc_root.to_path_buf(),
            pids_root,
            show_cmdlines,
            metrics: None,
            exec_series: Default::default(),
            max_listed: DEFAULT_MAX_LISTED,
            sampling: false,
        }
    }

    /// Lists at most `max` zombies in detail (`--max-listed-zombies`).
    pub fn with_max_listed(mut self, max: usize) -> Self {
        self.max_listed = max.max(2);
        self
    }

    /// Where zombies left by exec sessions are counted.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Counts zombies exec sessions left behind, per container (attributed here, where the
    /// attributor is). Bounded: past [`MAX_CONTAINER_SERIES`] containers, new ones count
    /// into the `_other` series.
    pub fn count_exec_leaks(&mut self, zombies: &[Zombie]) {
        let Some(metrics) = self.metrics.clone() else {
            return;
        };
        for z in zombies {
            let labels = capped(&mut self.exec_series, self.attributor.labels(z));
            metrics
                .exec_session_zombies
                .with_label_values(&[labels[0].as_str(), labels[1].as_str(), labels[2].as_str()])
                .inc();
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
        // The series count every zombie; only the detail is sampled.
        let (views, counts) = self.views(table, self.max_listed);
        let unlisted = table.zombies.len() - views.len();
        let (containers, by_cause, by_origin) = series(counts, now);
        if let Some(m) = &self.metrics {
            m.zombies_unlisted.set(unlisted as i64);
        }
        if (unlisted > 0) != self.sampling {
            self.sampling = unlisted > 0;
            if self.sampling {
                tracing::warn!(
                    zombies = views.len() + unlisted,
                    listed = views.len(),
                    max_listed_zombies = self.max_listed,
                    "more zombies than --max-listed-zombies: counts per container, cause and \
                     origin stay exact, /zombies lists the oldest and the newest only"
                );
            } else {
                tracing::info!("every zombie is listed in detail again");
            }
        }
        Zombies {
            taken_at: now,
            fingerprint: table.fingerprint,
            wall: *wall,
            views,
            unlisted: unlisted as u64,
            containers,
            by_cause,
            by_origin,
        }
    }

    /// Every zombie, oldest first, attributed and diagnosed (see [`view::snapshot`]), and
    /// counted; beyond `max`, only the oldest and the newest half are kept in detail (where
    /// a leak started, and what it does now, every new zombie included), and the others are
    /// counted without ever being held.
    fn views(&mut self, table: &Table, max: usize) -> (Vec<Listed>, Counts) {
        let mut zombies: Vec<&Zombie> = table.zombies.iter().collect();
        zombies.sort_by_key(|z| (z.exited_at, z.key));
        let proc_root = self.proc_root.clone();
        let mut diagnoser = Diagnoser::new(&proc_root, table).show_cmdlines(self.show_cmdlines);
        // One diagnosis per (parent, attribution, origin), one origin view per origin and
        // one set of labels per attribution, shared by the zombies that have them.
        let mut diagnoses: FxHashMap<(u32, usize, OriginKind, Option<ProcKey>), Arc<Diagnosis>> =
            FxHashMap::default();
        let mut origins: FxHashMap<Origin, Arc<OriginView>> = FxHashMap::default();
        let mut labels: FxHashMap<usize, Arc<Labels>> = FxHashMap::default();
        let n = zombies.len();
        let (keep_old, keep_new) = (max / 2, max - max / 2);
        let kept = |i: usize| n <= max || i < keep_old || i >= n - keep_new;
        let mut counts = Counts::default();
        let mut out = Vec::with_capacity(n.min(max));
        for (i, z) in zombies.into_iter().enumerate() {
            let (path, a) = self.attributor.attribution(z);
            let id = Arc::as_ptr(&a) as usize;
            let diagnosis = diagnoses
                .entry((z.ppid, id, z.origin.kind, z.origin.key))
                .or_insert_with(|| Arc::new(diagnoser.diagnose_attributed(z, &a)))
                .clone();
            let origin = origins
                .entry(z.origin)
                .or_insert_with(|| Arc::new(diagnoser.origin(z)))
                .clone();
            let labels = labels
                .entry(id)
                .or_insert_with(|| Arc::new(a.labels()))
                .clone();
            counts.add(&labels, diagnosis.cause, z.origin.kind, z.exited_at);
            if !kept(i) {
                continue;
            }
            out.push(Listed {
                zombie: *z,
                cgroup_path: path,
                attribution: a,
                diagnosis,
                origin,
                labels,
            });
        }
        // Every listed zombie was attributed: what the cache holds beyond them is gone.
        self.attributor.forget_unused();
        (out, counts)
    }

    fn budget(&mut self, now: Ns) -> Budget {
        let node = budget::node(&self.proc_root);
        let cgroups = match &self.pids_root {
            // A sandbox's PIDs are in its pod's series; a series of its own would be one
            // more per pod, named by nothing a reader knows.
            Some(root) => budget::pods(root)
                .into_iter()
                .filter_map(|c| {
                    let a = self.attributor.for_path(&c.path);
                    (!a.sandbox).then(|| (c, a.labels()))
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
type Series = (
    Vec<ContainerZombies>,
    Vec<(Labels, Cause, u64)>,
    Vec<(Labels, OriginKind, u64)>,
);

/// What the series count, gathered zombie by zombie (labels by their interned `Arc`).
#[derive(Default)]
struct Counts {
    containers: FxHashMap<usize, (Arc<Labels>, u64, Ns)>,
    causes: FxHashMap<(usize, Cause), u64>,
    origins: FxHashMap<(usize, OriginKind), u64>,
}

impl Counts {
    fn add(&mut self, labels: &Arc<Labels>, cause: Cause, origin: OriginKind, exited_at: Ns) {
        let id = Arc::as_ptr(labels) as usize;
        let g = self
            .containers
            .entry(id)
            .or_insert_with(|| (labels.clone(), 0, Ns::MAX));
        g.1 += 1;
        g.2 = g.2.min(exited_at);
        *self.causes.entry((id, cause)).or_default() += 1;
        *self.origins.entry((id, origin)).or_default() += 1;
    }
}

fn series(counts: Counts, now: Ns) -> Series {
    // Equal labels may come from different attributions (two cgroups of one container):
    // summed here.
    let mut groups: FxHashMap<Labels, (u64, Ns)> = FxHashMap::default();
    for (l, n, oldest) in counts.containers.values() {
        let g = groups.entry(Labels::clone(l)).or_insert((0, Ns::MAX));
        g.0 += n;
        g.1 = g.1.min(*oldest);
    }
    let label = |id: &usize| Labels::clone(&counts.containers[id].0);
    let mut causes: FxHashMap<(Labels, Cause), u64> = FxHashMap::default();
    for ((id, c), n) in &counts.causes {
        *causes.entry((label(id), *c)).or_default() += n;
    }
    let mut origins_by: FxHashMap<(Labels, OriginKind), u64> = FxHashMap::default();
    for ((id, o), n) in &counts.origins {
        *origins_by.entry((label(id), *o)).or_default() += n;
    }
    let kept = cap_series(&mut groups, MAX_CONTAINER_SERIES);
    let fold = |l: &Labels| {
        if kept.as_ref().is_none_or(|k| k.contains(l)) {
            l.clone()
        } else {
            other_labels()
        }
    };
    let mut by_cause: FxHashMap<(Labels, Cause), u64> = FxHashMap::default();
    for ((l, c), n) in causes {
        *by_cause.entry((fold(&l), c)).or_default() += n;
    }
    let mut by_origin: FxHashMap<(Labels, OriginKind), u64> = FxHashMap::default();
    for ((l, o), n) in origins_by {
        *by_origin.entry((fold(&l), o)).or_default() += n;
    }
    let mut by_origin: Vec<(Labels, OriginKind, u64)> =
        by_origin.into_iter().map(|((l, o), n)| (l, o, n)).collect();
    by_origin.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
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
    (containers, by_cause, by_origin)
}

/// The series a counter's labels go to: their own while fewer than
/// [`MAX_CONTAINER_SERIES`] - 1 containers have one (or this one has), else `_other`.
fn capped(seen: &mut rustc_hash::FxHashSet<Labels>, labels: Labels) -> Labels {
    if seen.contains(&labels) || seen.len() < MAX_CONTAINER_SERIES - 1 {
        seen.insert(labels.clone());
        labels
    } else {
        other_labels()
    }
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
    use crate::tracker::{Comm, ExitFlags, Source};

    fn zombie(pid: u32, ppid: u32, exited_at: Ns) -> Zombie {
        Zombie {
            key: ProcKey {
                pid,
                start_ticks: 7,
            },
            exited_at,
            source: Source::Event,
            ppid,
            parent_start_ticks: 1,
            parent_comm: Comm::new("parent"),
            comm: Comm::new("child"),
            wait_status: 0,
            cgroup_id: 0,
            flags: ExitFlags::default(),
            parent_gone: false,
            reparented: 0,
            exit_ppid: ppid,
            exit_parent_comm: Comm::new("parent"),
            origin: Origin::default(),
        }
    }

    /// Zombies of one parent share one diagnosis and one label set; the `/zombies` objects
    /// are made when read, with ages as of then.
    #[test]
    fn listed_zombies_share_their_parts_and_are_rendered_when_read() {
        // An empty /proc: no parent can be read, every diagnosis is the same "unknown".
        let dir = std::env::temp_dir().join(format!("zd-build-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let attributor = Attributor::new(&dir, &dir, None);
        let mut b = Builder::new(attributor, &dir, None);
        let mut table = Table {
            zombies: vec![zombie(11, 1, 2_000_000), zombie(10, 1, 1_000)],
            ..Table::default()
        };
        table.zombies.push(zombie(12, 2, 3_000_000));
        let (listed, _) = b.views(&table, usize::MAX);
        // Oldest first.
        let pids: Vec<u32> = listed.iter().map(|l| l.zombie.key.pid).collect();
        assert_eq!(pids, [10, 11, 12]);
        assert!(Arc::ptr_eq(&listed[0].diagnosis, &listed[1].diagnosis));
        assert!(Arc::ptr_eq(&listed[0].labels, &listed[2].labels));
        let z = Zombies {
            views: listed,
            ..Zombies::default()
        };
        let aged = z.aged(3_000_001_000);
        assert_eq!(
            aged.iter().map(|v| v.age_seconds).collect::<Vec<_>>(),
            [3.0, 2.998, 2.997]
        );
        assert_eq!((aged[2].pid, aged[2].ppid), (12, 2));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn exec_session_zombies_are_counted_per_container_up_to_the_cap() {
        let (tx, rx) = tokio::sync::watch::channel(Arc::new(Snapshot::default()));
        let m = Metrics::new(rx);
        let mut seen = rustc_hash::FxHashSet::default();
        let mut count = |l: Labels| {
            let l = capped(&mut seen, l);
            m.exec_session_zombies
                .with_label_values(&[l[0].as_str(), l[1].as_str(), l[2].as_str()])
                .inc();
        };
        let labels = |i: usize| ["shop".to_string(), format!("web-{i}"), "app".to_string()];
        count(labels(0));
        count(labels(0));
        for i in 1..MAX_CONTAINER_SERIES + 10 {
            count(labels(i));
        }
        // A container that has its series keeps counting there.
        count(labels(0));
        let c = &m.exec_session_zombies;
        assert_eq!(c.with_label_values(&["shop", "web-0", "app"]).get(), 3);
        // 500 series at most: 499 containers of their own, the 11 beyond in `_other`.
        let last_kept = format!("web-{}", MAX_CONTAINER_SERIES - 2);
        assert_eq!(c.with_label_values(&["shop", &last_kept, "app"]).get(), 1);
        assert_eq!(c.with_label_values(&["", "_other", "_other"]).get(), 11);
        assert!(m.render().contains(
            "zombie_exec_session_zombies_total{container=\"app\",namespace=\"shop\",pod=\"web-0\"} 3"
        ));
        drop(tx);
    }

    /// Above the ceiling the counts stay exact and the detail keeps the oldest and the newest.
    #[test]
    fn above_the_ceiling_counts_stay_exact_and_details_are_sampled() {
        let dir = std::env::temp_dir().join(format!("zd-sample-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut b = Builder::new(Attributor::new(&dir, &dir, None), &dir, None).with_max_listed(4);
        let table = Table {
            zombies: (0..10)
                .map(|i| zombie(100 + i, 1, u64::from(i) * 1000))
                .collect(),
            ..Table::default()
        };
        let z = b.zombies(&table, 1_000_000, &WallClock::now());
        let pids: Vec<u32> = z.views.iter().map(|l| l.zombie.key.pid).collect();
        assert_eq!(pids, [100, 101, 108, 109]);
        assert_eq!(z.unlisted, 6);
        assert_eq!(z.containers.iter().map(|c| c.count).sum::<u64>(), 10);
        assert_eq!(z.containers[0].oldest_exited_at, 0);
        assert_eq!(z.by_cause.iter().map(|c| c.2).sum::<u64>(), 10);
        assert_eq!(z.by_origin.iter().map(|c| c.2).sum::<u64>(), 10);
        // Under the ceiling again: every zombie listed.
        let z = b
            .with_max_listed(10)
            .zombies(&table, 1_000_000, &WallClock::now());
        assert_eq!((z.views.len(), z.unlisted), (10, 0));
        std::fs::remove_dir_all(&dir).unwrap();
    }

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
