//! The bounds on the daemon's own work, and what it says when one is reached.
//!
//! Tenants choose how many containers, cgroups and processes a node has, and how fast they
//! churn: every walk, every series and every retry has a bound so no tenant can make the
//! daemon's work or its metrics grow without end. Reaching a bound is never silent: it
//! counts in `zombie_bound_reached_total{bound}` and is logged (a warning the first time,
//! at debug level after that, so the log is not flooded either).

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus::{
    IntCounterVec, Opts,
    core::{Collector, Desc},
    proto::MetricFamily,
};

/// One bound (its name is the metric's `bound` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    /// The init audit's walk over the kubepods tree.
    AuditWalk,
    /// The PID budget's walk over the kubepods tree.
    BudgetWalk,
    /// `zombie_container_init_info` series.
    InitInfoSeries,
    /// Container IDs and pod UIDs the runtime did not know, remembered so that each one
    /// triggers at most one runtime listing per retry period.
    RuntimeMisses,
    /// Zombies of one parent confirmed in /proc per remediation look.
    RemediationConfirm,
    /// `/audit` requests answered with an audit taken before they came (one walk per
    /// `http::AUDIT_MAX_AGE`, whatever the request rate).
    AuditRequests,
}

const ALL: [Bound; 6] = [
    Bound::AuditWalk,
    Bound::BudgetWalk,
    Bound::InitInfoSeries,
    Bound::RuntimeMisses,
    Bound::RemediationConfirm,
    Bound::AuditRequests,
];

impl Bound {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuditWalk => "audit_walk",
            Self::BudgetWalk => "budget_walk",
            Self::InitInfoSeries => "init_info_series",
            Self::RuntimeMisses => "runtime_misses",
            Self::RemediationConfirm => "remediation_confirm",
            Self::AuditRequests => "audit_requests",
        }
    }
}

static HITS: [AtomicU64; ALL.len()] = [const { AtomicU64::new(0) }; ALL.len()];

/// Records that `bound` was reached; `what` says what was left out.
pub fn reached(bound: Bound, what: &str) {
    let before = HITS[bound as usize].fetch_add(1, Ordering::Relaxed);
    if before == 0 {
        tracing::warn!(
            bound = bound.as_str(),
            "{what} (counted in zombie_bound_reached_total; said once)"
        );
    } else {
        tracing::debug!(bound = bound.as_str(), "{what}");
    }
}

/// How often `bound` was reached since the start.
pub fn count(bound: Bound) -> u64 {
    HITS[bound as usize].load(Ordering::Relaxed)
}

/// `zombie_bound_reached_total{bound}`, one series per bound (0 until reached).
pub struct BoundsCollector {
    descs: Vec<Desc>,
}

impl BoundsCollector {
    pub fn new() -> Self {
        Self {
            descs: Self::vec().desc().into_iter().cloned().collect(),
        }
    }

    fn vec() -> IntCounterVec {
        IntCounterVec::new(
            Opts::new(
                "zombie_bound_reached_total",
                "Times a bound on the daemon's own work was reached (a walk cut short, a series \
                 left out, a runtime lookup not retried yet), by bound.",
            ),
            &["bound"],
        )
        .expect("valid metric")
    }
}

impl Default for BoundsCollector {
    fn default() -> Self {
        Self::new()
    }
}

impl Collector for BoundsCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let v = Self::vec();
        for b in ALL {
            v.with_label_values(&[b.as_str()]).inc_by(count(b));
        }
        v.collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bound_has_a_series_and_counts() {
        let before = count(Bound::RemediationConfirm);
        reached(Bound::RemediationConfirm, "test");
        assert_eq!(count(Bound::RemediationConfirm), before + 1);
        let families = BoundsCollector::new().collect();
        assert_eq!(families[0].get_metric().len(), ALL.len());
        let names: Vec<&str> = ALL.iter().map(|b| b.as_str()).collect();
        let mut sorted = names.clone();
        sorted.dedup();
        assert_eq!(names, sorted);
    }
}
