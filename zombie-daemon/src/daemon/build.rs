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
    diagnosis::Cause,
    snapshot::{
        Audit, Budget, ContainerZombies, Labels, MAX_CONTAINER_SERIES, Snapshot, Zombies,
        other_labels,
    },
    tracker::{Ns, Table},
    view::{self, Attributor, ZombieView},
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
