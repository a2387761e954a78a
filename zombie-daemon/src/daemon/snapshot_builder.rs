//! Building snapshots (see [`crate::snapshot`]): the owner's side. The builder owns the
//! attributor and reads /proc and cgroupfs; it runs on the blocking pool, lent by the event
//! loop to one build at a time.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use rustc_hash::{FxHashMap, FxHashSet};

use crate::{
    attribution::Attribution,
    attributor::Attributor,
    audit, budget,
    clock::WallClock,
    diagnoser::Diagnoser,
    diagnosis::{Cause, Diagnosis},
    metrics::Metrics,
    snapshot::{
        Audit, Budget, ContainerZombies, Labels, MAX_CONTAINER_SERIES, Snapshot, Zombies,
        other_labels,
    },
    store::{Group, GroupKey, Record, Writer},
    tracker::{Changes, ExitFlags, Ns, Origin, OriginInfo, OriginKind, ProcKey, Source, Zombie},
    view::OriginView,
};

/// Which parts of a snapshot a build makes anew; the others are taken from the last one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Parts {
    pub budget: bool,
    pub audit: bool,
    /// Diagnose and attribute every group of zombies anew (their parents may have started
    /// waiting, stopped or exited; the runtime may have named their containers).
    pub refresh: bool,
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
    /// The zombies as published, changed by each build (see [`crate::store`]).
    writer: Writer,
    /// Parents of zombies seen waiting, as of the last build.
    waited: FxHashSet<u32>,
    /// What the zombies' origins ran as (kept while a group has the origin).
    origins: FxHashMap<ProcKey, OriginInfo>,
    /// When every group was last diagnosed anew (the diagnoses are at least this fresh).
    refreshed_at: Ns,
    /// The injected init, looked up on each refresh (not with every build).
    injected_init: Option<crate::prevention::FileId>,
}

/// The default of `--max-listed-zombies`: a whole `/zombies` of about 27 MB (540 bytes of
/// JSON a zombie).
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
            writer: Writer::default(),
            waited: FxHashSet::default(),
            origins: FxHashMap::default(),
            refreshed_at: 0,
            injected_init: None,
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
                .with_label_values(&labels.values())
                .inc();
        }
    }

    /// The runtime's names changed since `generation` (labels must be made anew).
    pub fn names_generation(&self) -> u64 {
        self.attributor.names_generation()
    }

    /// A new snapshot: the zombies with `changes` applied (when given), and the budget and
    /// audit when `parts` asks; everything else is `prev`'s.
    pub fn build(
        &mut self,
        prev: &Snapshot,
        changes: Option<&Changes>,
        parts: Parts,
        now: Ns,
        wall: &WallClock,
    ) -> Snapshot {
        let zombies = match changes {
            Some(changes) => Arc::new(self.zombies(changes, parts.refresh, now, wall)),
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

    fn zombies(&mut self, delta: &Changes, refresh: bool, now: Ns, wall: &WallClock) -> Zombies {
        self.apply(delta, refresh);
        if refresh || self.writer.is_empty() {
            self.refreshed_at = now;
        }
        let w = &self.writer;
        let listed = w.len().min(self.max_listed);
        let unlisted = w.len() - listed;
        // The series count every zombie; only the detail is sampled.
        let (containers, by_cause, by_origin) = series(count(w), now);
        if let Some(m) = &self.metrics {
            m.zombies_unlisted.set(unlisted as i64);
        }
        if (unlisted > 0) != self.sampling {
            self.sampling = unlisted > 0;
            if self.sampling {
                tracing::warn!(
                    zombies = listed + unlisted,
                    listed,
                    max_listed_zombies = self.max_listed,
                    "more zombies than --max-listed-zombies: counts per container, cause and \
                     origin stay exact, /zombies lists the oldest and the newest only"
                );
            } else {
                tracing::info!("every zombie is listed in detail again");
            }
        }
        Zombies {
            // What a reader asks to be fresh is the diagnosis (the zombies themselves are
            // current with every build).
            taken_at: self.refreshed_at,
            fingerprint: delta.fingerprint,
            wall: *wall,
            store: self.writer.publish(),
            max_listed: self.max_listed,
            unlisted: unlisted as u64,
            containers,
            by_cause,
            by_origin,
        }
    }

    /// Applies the tracker's changes to the store: each changed zombie leaves its place and
    /// takes its new one, attributed, in the group of its parent, cgroup and origin (made,
    /// and diagnosed, when it is the group's first). With `refresh`, every group is
    /// attributed and diagnosed anew; otherwise only the groups whose parent's waiting or
    /// origin's command line changed. O(changes + groups), never O(zombies).
    fn apply(&mut self, delta: &Changes, refresh: bool) {
        let waited_changed: FxHashSet<u32> = self
            .waited
            .symmetric_difference(&delta.waited)
            .copied()
            .collect();
        self.waited.clone_from(&delta.waited);
        for (k, info) in &delta.origins {
            self.origins.insert(*k, info.clone());
        }
        let learnt: FxHashSet<ProcKey> = delta.learnt.iter().copied().collect();
        if refresh || self.refreshed_at == 0 {
            self.injected_init = crate::prevention::injected_init(&self.proc_root);
        }
        let Self {
            attributor,
            writer,
            waited,
            origins,
            proc_root,
            show_cmdlines,
            injected_init,
            ..
        } = self;
        let waited = &*waited;
        let mut diagnoser = Diagnoser::with_facts(proc_root, waited, origins, *injected_init)
            .show_cmdlines(*show_cmdlines);
        // One diagnosis per (parent, attribution, origin), one origin view per origin and
        // one set of labels per attribution, shared by the groups made in this build.
        let mut shared = Shared::default();
        if refresh {
            writer.forget_retired();
        } else {
            writer.retain_retired(|g| {
                g.parent_waited == waited.contains(&g.key.ppid)
                    && !g.key.origin.key.is_some_and(|k| learnt.contains(&k))
            });
        }
        let stale: Vec<(u32, GroupKey, Arc<Attribution>)> = writer
            .groups()
            .filter(|(_, g)| {
                refresh
                    || waited_changed.contains(&g.key.ppid)
                    || g.key.origin.key.is_some_and(|k| learnt.contains(&k))
            })
            .map(|(id, g)| (id, g.key.clone(), g.attribution.clone()))
            .collect();
        for (id, key, a) in stale {
            let a = match &key.cgroup_path {
                Some(path) => attributor.for_path(path),
                None => a,
            };
            let parent_waited = waited.contains(&key.ppid);
            let group = shared.group(&mut diagnoser, &representative(&key), key, a, parent_waited);
            writer.refresh_group(id, group);
        }
        // Every change leaves its old place first; then the new places in the store's
        // order, so that new zombies (the newest, mostly) fill chunks by appending.
        for c in &delta.changes {
            if let Some(at) = c.was {
                writer.remove(c.key, at);
            }
        }
        let mut added: Vec<&Zombie> = delta
            .changes
            .iter()
            .filter_map(|c| c.now.as_ref())
            .collect();
        added.sort_unstable_by_key(|z| (z.exited_at, z.key.pid, z.key.start_ticks));
        for z in added {
            let z = *z;
            let (path, a) = attributor.attribution(&z);
            let key = GroupKey {
                ppid: z.ppid,
                parent_start_ticks: z.parent_start_ticks,
                parent_comm: z.parent_comm,
                exit_ppid: z.exit_ppid,
                exit_parent_comm: z.exit_parent_comm,
                origin: z.origin,
                cgroup_path: path,
            };
            let record = Record {
                exited_at: z.exited_at,
                start_ticks: z.key.start_ticks,
                cgroup_id: z.cgroup_id,
                comm: z.comm,
                pid: z.key.pid,
                wait_status: z.wait_status,
                reparented: z.reparented,
                group: 0,
                scanned: z.source == Source::Scan,
                parent_gone: z.parent_gone,
            };
            let parent_waited = waited.contains(&z.ppid);
            writer.insert(record, key.clone(), || {
                shared.group(&mut diagnoser, &z, key, a, parent_waited)
            });
        }
        // The processes attributed in this build are cached for the next one; the others
        // are in the store already.
        attributor.forget_unused();
        if refresh {
            let used: FxHashSet<ProcKey> = writer
                .groups()
                .filter_map(|(_, g)| g.key.origin.key)
                .collect();
            origins.retain(|k, _| used.contains(k));
        }
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

/// What the groups made in one build share: one diagnosis per (parent, attribution,
/// origin), one origin view per origin, one set of labels per attribution.
#[derive(Default)]
struct Shared {
    diagnoses: FxHashMap<(u32, usize, OriginKind, Option<ProcKey>), Arc<Diagnosis>>,
    origins: FxHashMap<Origin, Arc<OriginView>>,
    labels: FxHashMap<usize, Arc<Labels>>,
}

impl Shared {
    /// The group `key` of zombie `z` (or of a representative of the group), attributed to `a`.
    fn group(
        &mut self,
        diagnoser: &mut Diagnoser<'_>,
        z: &Zombie,
        key: GroupKey,
        a: Arc<Attribution>,
        parent_waited: bool,
    ) -> Group {
        let id = Arc::as_ptr(&a) as usize;
        let diagnosis = self
            .diagnoses
            .entry((z.ppid, id, z.origin.kind, z.origin.key))
            .or_insert_with(|| Arc::new(diagnoser.diagnose_attributed(z, &a)))
            .clone();
        let origin = self
            .origins
            .entry(z.origin)
            .or_insert_with(|| Arc::new(diagnoser.origin(z)))
            .clone();
        let labels = self
            .labels
            .entry(id)
            .or_insert_with(|| Arc::new(a.labels()))
            .clone();
        Group {
            key,
            attribution: a,
            diagnosis,
            origin,
            labels,
            parent_waited,
        }
    }
}

/// A zombie of the group `key`, as far as a diagnosis reads one (its parent and origin).
fn representative(key: &GroupKey) -> Zombie {
    Zombie {
        key: ProcKey {
            pid: 0,
            start_ticks: 0,
        },
        exited_at: 0,
        source: Source::Event,
        ppid: key.ppid,
        parent_start_ticks: key.parent_start_ticks,
        parent_comm: key.parent_comm,
        comm: key.parent_comm,
        wait_status: 0,
        cgroup_id: 0,
        flags: ExitFlags::default(),
        parent_gone: false,
        reparented: 0,
        exit_ppid: key.exit_ppid,
        exit_parent_comm: key.exit_parent_comm,
        origin: key.origin,
    }
}

/// The series' counts, from the groups' exact counts; the oldest exit per container from
/// the records in order, stopping once every container's oldest is found.
fn count(w: &Writer) -> Counts {
    let mut counts = Counts::default();
    for (id, g) in w.groups() {
        counts.add(&g.labels, g.diagnosis.cause, g.key.origin.kind, w.count(id));
    }
    let mut missing = counts.containers.len();
    for r in w.records() {
        if missing == 0 {
            break;
        }
        let labels = Arc::as_ptr(&w.group(r.group).labels) as usize;
        if let Some(c) = counts.containers.get_mut(&labels)
            && c.2 == Ns::MAX
        {
            c.2 = r.exited_at;
            missing -= 1;
        }
    }
    counts
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
    fn add(&mut self, labels: &Arc<Labels>, cause: Cause, origin: OriginKind, n: u64) {
        let id = Arc::as_ptr(labels) as usize;
        let g = self
            .containers
            .entry(id)
            .or_insert_with(|| (labels.clone(), 0, Ns::MAX));
        g.1 += n;
        *self.causes.entry((id, cause)).or_default() += n;
        *self.origins.entry((id, origin)).or_default() += n;
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
    use crate::tracker::{Comm, Event, Exit, Tracker};

    fn exit(pid: u32, ppid: u32, at: Ns) -> Event {
        Event::Exit(Exit {
            key: ProcKey {
                pid,
                start_ticks: 1,
            },
            at,
            ppid,
            parent_start_ticks: 1,
            comm: Comm::new("child"),
            parent_comm: Comm::new("parent"),
            wait_status: 0,
            cgroup_id: 0,
            flags: ExitFlags::default(),
            origin: Origin::default(),
        })
    }

    fn pids(z: &Zombies) -> Vec<u32> {
        z.iter().map(|e| e.record.pid).collect()
    }

    /// Zombies of one parent share one group (one diagnosis, one label set); the
    /// `/zombies` objects are made when read, with ages as of then; a build applies only
    /// what changed since the last.
    #[test]
    fn listed_zombies_share_their_parts_and_builds_apply_what_changed() {
        // An empty /proc: no parent can be read, every diagnosis is the same "unknown".
        let dir = std::env::temp_dir().join(format!("zd-build-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let attributor = Attributor::new(&dir, &dir, None);
        let mut b = Builder::new(attributor, &dir, None);
        let mut t = Tracker::default();
        for ev in [
            exit(11, 1, 2_000_000),
            exit(10, 1, 1_000),
            exit(12, 2, 3_000_000),
        ] {
            t.apply(&ev);
        }
        let z = b.zombies(
            &t.take_changes(usize::MAX),
            true,
            3_000_001_000,
            &WallClock::now(),
        );
        // Oldest first.
        assert_eq!(pids(&z), [10, 11, 12]);
        let e: Vec<_> = z.iter().collect();
        assert_eq!(e[0].record.group, e[1].record.group);
        assert_ne!(e[0].record.group, e[2].record.group);
        assert!(Arc::ptr_eq(&e[0].group.labels, &e[2].group.labels));
        let aged = z.aged(3_000_001_000);
        assert_eq!(
            aged.iter().map(|v| v.age_seconds).collect::<Vec<_>>(),
            [3.0, 2.998, 2.997]
        );
        assert_eq!((aged[2].pid, aged[2].ppid), (12, 2));
        assert_eq!(aged[1].parent_comm, "parent");

        // 11 is reaped, 13 exits, 10's parent exits (its zombies are handed on): three
        // changes, and only those are taken.
        t.apply(&Event::Free {
            key: ProcKey {
                pid: 11,
                start_ticks: 1,
            },
            at: 4_000_000,
        });
        t.apply(&exit(13, 2, 5_000_000));
        t.apply(&exit(1, 0, 6_000_000));
        let changes = t.take_changes(usize::MAX);
        assert_eq!(changes.changes.len(), 4, "{:?}", changes.changes);
        let z = b.zombies(&changes, false, 7_000_000, &WallClock::now());
        assert_eq!(pids(&z), [10, 12, 13, 1]);
        assert!(z.aged(7_000_000)[0].parent_exited);
        assert_eq!(z.containers.iter().map(|c| c.count).sum::<u64>(), 4);
        assert_eq!(z.containers[0].oldest_exited_at, 1_000);
        // Nothing changed: nothing to take, the same list.
        let z = b.zombies(
            &t.take_changes(usize::MAX),
            false,
            8_000_000,
            &WallClock::now(),
        );
        assert_eq!(pids(&z), [10, 12, 13, 1]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A zombie found by a scan is listed at its estimated exit; its exit event then moves
    /// it to the exact time (a change of place in the store's order).
    #[test]
    fn a_refined_exit_time_moves_the_zombie() {
        use crate::tracker::{Scan, ScanEntry};
        let dir = std::env::temp_dir().join(format!("zd-refine-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut b = Builder::new(Attributor::new(&dir, &dir, None), &dir, None);
        let mut t = Tracker::default();
        let scanned = ScanEntry {
            key: ProcKey {
                pid: 21,
                start_ticks: 1,
            },
            ppid: 1,
            parent_start_ticks: 1,
            comm: Comm::new("child"),
            parent_comm: Comm::new("parent"),
            wait_status: 0,
            cgroup_id: 0,
            exited_at_estimate: 1_000,
            origin: Origin::default(),
            origin_info: None,
        };
        t.apply(&Event::Scanned {
            started: 6_000,
            scan: Arc::new(Scan {
                zombies: vec![scanned],
                exiting: vec![],
            }),
        });
        t.apply(&exit(20, 1, 5_000));
        let z = b.zombies(&t.take_changes(100), false, 7_000, &WallClock::now());
        assert_eq!(pids(&z), [21, 20]);
        assert!(z.aged(7_000)[0].exited_at_estimated);
        // Its exit event comes late, with the exact time: after 20.
        t.apply(&exit(21, 1, 5_500));
        let z = b.zombies(&t.take_changes(100), false, 8_000, &WallClock::now());
        assert_eq!(pids(&z), [20, 21]);
        assert_eq!(z.store.len(), 2);
        assert!(!z.aged(8_000)[1].exited_at_estimated);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The tracker hands over at most what a build asks for; the rest comes next time.
    #[test]
    fn changes_are_taken_a_slice_at_a_time() {
        let dir = std::env::temp_dir().join(format!("zd-slice-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut b = Builder::new(Attributor::new(&dir, &dir, None), &dir, None);
        let mut t = Tracker::default();
        for i in 0..10 {
            t.apply(&exit(100 + i, 1, u64::from(i) * 1000 + 1));
        }
        let first = t.take_changes(4);
        assert!(first.more);
        assert_eq!(
            b.zombies(&first, false, 1, &WallClock::now()).store.len(),
            4
        );
        let rest = t.take_changes(100);
        assert!(!rest.more);
        let z = b.zombies(&rest, false, 1, &WallClock::now());
        assert_eq!(pids(&z), (100..110).collect::<Vec<_>>());
        // A reader of changes that lost its store starts again from every zombie.
        t.change_all();
        let mut fresh = Builder::new(Attributor::new(&dir, &dir, None), &dir, None);
        let z = fresh.zombies(&t.take_changes(100), false, 1, &WallClock::now());
        assert_eq!(pids(&z), (100..110).collect::<Vec<_>>());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The real `count_exec_leaks`: each zombie attributed from its own
    /// /proc/<pid>/cgroup (a pod's container), counted in its container's series, at most
    /// MAX_CONTAINER_SERIES series (the rest in `_other`).
    #[test]
    fn exec_session_zombies_are_counted_per_container_up_to_the_cap() {
        let dir = std::env::temp_dir().join(format!("zd-exec-leaks-{}", std::process::id()));
        let uid = |i: u32| format!("0b5b9b5e-7d6c-4c39-9a58-{i:012x}");
        let id = |i: u32| format!("{i:064x}");
        // Container i's zombies: pids 10_000 * (k + 1) + i.
        let pid = |i: u32, k: u32| 10_000 * (k + 1) + i;
        let n = MAX_CONTAINER_SERIES as u32 + 10;
        let mut t = Tracker::default();
        let mut leak = |i: u32, k: u32| {
            let p = pid(i, k);
            std::fs::create_dir_all(dir.join(p.to_string())).unwrap();
            let path = format!("0::/kubepods/besteffort/pod{}/{}\n", uid(i), id(i));
            std::fs::write(dir.join(format!("{p}/cgroup")), path).unwrap();
            t.apply(&exit(p, 1, u64::from(p)));
        };
        // Container 0 leaks twice, every other once, container 0 once more at the end.
        leak(0, 0);
        leak(0, 1);
        for i in 1..n {
            leak(i, 0);
        }
        leak(0, 2);
        let by_pid: FxHashMap<u32, Zombie> = t
            .table()
            .zombies
            .into_iter()
            .map(|z| (z.key.pid, z))
            .collect();
        let in_order = |pids: &[u32]| -> Vec<Zombie> { pids.iter().map(|p| by_pid[p]).collect() };
        let (tx, rx) = tokio::sync::watch::channel(Arc::new(Snapshot::default()));
        let m = Arc::new(Metrics::new(rx));
        let mut b =
            Builder::new(Attributor::new(&dir, &dir, None), &dir, None).with_metrics(m.clone());
        // In two builds: a container keeps its series across builds.
        b.count_exec_leaks(&in_order(&[pid(0, 0), pid(0, 1)]));
        let rest: Vec<u32> = (1..n).map(|i| pid(i, 0)).chain([pid(0, 2)]).collect();
        b.count_exec_leaks(&in_order(&rest));
        let c = &m.exec_session_zombies;
        let series = |i: u32| c.with_label_values(&["", &uid(i), &id(i)]).get();
        assert_eq!(series(0), 3);
        // MAX_CONTAINER_SERIES series at most: 499 containers of their own, the 11 beyond
        // in `_other`.
        assert_eq!(series(MAX_CONTAINER_SERIES as u32 - 2), 1);
        assert_eq!(series(MAX_CONTAINER_SERIES as u32 - 1), 0);
        assert_eq!(c.with_label_values(&["", "_other", "_other"]).get(), 11);
        assert!(m.render().contains(&format!(
            "zombie_exec_session_zombies_total{{container=\"{}\",namespace=\"\",pod=\"{}\"}} 3",
            id(0),
            uid(0)
        )));
        // Without metrics nothing is counted, and nothing fails.
        let mut quiet = Builder::new(Attributor::new(&dir, &dir, None), &dir, None);
        quiet.count_exec_leaks(&in_order(&[pid(0, 0)]));
        assert_eq!(series(0), 3);
        drop(tx);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Above the ceiling the counts stay exact and the detail keeps the oldest and the newest.
    #[test]
    fn above_the_ceiling_counts_stay_exact_and_details_are_sampled() {
        let dir = std::env::temp_dir().join(format!("zd-sample-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut b = Builder::new(Attributor::new(&dir, &dir, None), &dir, None).with_max_listed(4);
        let mut t = Tracker::default();
        for i in 0..10 {
            t.apply(&exit(100 + i, 1, u64::from(i) * 1000));
        }
        let z = b.zombies(&t.take_changes(100), true, 1_000_000, &WallClock::now());
        assert_eq!(pids(&z), [100, 101, 108, 109]);
        assert_eq!(z.unlisted, 6);
        assert_eq!(z.containers.iter().map(|c| c.count).sum::<u64>(), 10);
        assert_eq!(z.containers[0].oldest_exited_at, 0);
        assert_eq!(z.by_cause.iter().map(|c| c.2).sum::<u64>(), 10);
        assert_eq!(z.by_origin.iter().map(|c| c.2).sum::<u64>(), 10);
        // Under the ceiling again: every zombie listed.
        let mut b = b.with_max_listed(10);
        let z = b.zombies(&t.take_changes(100), false, 1_000_000, &WallClock::now());
        assert_eq!((z.listed(), z.unlisted), (10, 0));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn series_are_capped_into_other() {
        let mut groups: FxHashMap<Labels, (u64, Ns)> = FxHashMap::default();
        for i in 0..10u64 {
            groups.insert(Labels::new("", &format!("pod{i}"), "c"), (i, 1000 - i * 10));
        }
        let kept = cap_series(&mut groups, 4).unwrap();
        assert_eq!(groups.len(), 4);
        assert_eq!(kept.len(), 3);
        // pods 9, 8, 7 keep their series; 0..=6 sum to 21 zombies, the oldest exited at 940.
        assert_eq!(groups[&other_labels()], (21, 940));
        assert!(groups.contains_key(&Labels::new("", "pod9", "c")));
        let total: u64 = groups.values().map(|v| v.0).sum();
        assert_eq!(total, 45);
        assert!(cap_series(&mut groups, 4).is_none());
    }
}
