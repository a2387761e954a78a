//! The remediation policy: a YAML file whose keys are a public contract
//! (deploy/kubernetes/remediation), parsed and checked once at start.

use serde::{Deserialize, Serialize};

/// What to do when the non-reaping parent is the container's PID 1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pid1Action {
    /// CRI StopContainer: the kubelet restarts it per the pod's restart policy.
    #[default]
    StopContainer,
    /// SIGTERM, then SIGKILL after the grace period, to the container's PID 1.
    Signal,
    /// Go no further than SIGCHLD.
    None,
}

fn default_deny() -> Vec<String> {
    vec!["kube-system".into()]
}

/// The policy file. Keys are a public contract (deploy/kubernetes/remediation).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// Namespaces remediation may act in (empty: all); `deny_namespaces` wins.
    pub allow_namespaces: Vec<String>,
    pub deny_namespaces: Vec<String>,
    /// Act on processes that belong to no pod.
    pub allow_host_processes: bool,
    /// A target is acted on once it has this many zombies at least `min_age_seconds` old.
    pub min_zombies: usize,
    pub min_age_seconds: f64,
    pub max_actions_per_pod_per_hour: usize,
    pub max_actions_per_node_per_hour: usize,
    /// After acting on a pod or process, wait this long before acting on it again.
    pub backoff_seconds: f64,
    /// Only pods whose annotations or labels carry this key with the value `true` (exactly:
    /// "True", "yes" or "1" do not opt in) are remediated; empty: no opt-in needed.
    pub opt_in_annotation: String,
    /// Time the parent gets to reap after SIGCHLD.
    pub sigchld_wait_seconds: f64,
    /// Time between SIGTERM and SIGKILL (and after the last rung before giving up).
    pub grace_seconds: f64,
    pub pid1_action: Pid1Action,
    /// How often the zombie table is looked at.
    pub interval_seconds: f64,
    /// Before anything is done to a pod's process, the container runtime (CRI) must confirm
    /// that the container its cgroup path names exists, runs, belongs to that pod and holds
    /// the process. Without a runtime connection, pods are then never acted on. Turn off
    /// only where no runtime socket can be reached and every cgroup path is trusted.
    pub verify_with_runtime: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            allow_namespaces: Vec::new(),
            deny_namespaces: default_deny(),
            allow_host_processes: false,
            min_zombies: 5,
            min_age_seconds: 300.0,
            max_actions_per_pod_per_hour: 2,
            max_actions_per_node_per_hour: 10,
            backoff_seconds: 600.0,
            opt_in_annotation: "zombie-daemon.io/remediate".into(),
            sigchld_wait_seconds: 30.0,
            grace_seconds: 30.0,
            pid1_action: Pid1Action::StopContainer,
            interval_seconds: 5.0,
            verify_with_runtime: true,
        }
    }
}

/// The largest number of seconds a policy may give (about 31 years): beyond it a value is a
/// typo, and the daemon's timers (`Duration`, `Instant`) would overflow.
pub const MAX_SECONDS: f64 = 1e9;

impl Policy {
    pub fn parse(text: &str) -> Result<Self, String> {
        let p: Policy = if text.trim().is_empty() {
            Policy::default()
        } else {
            serde_norway::from_str(text).map_err(|e| e.to_string())?
        };
        for (name, v) in [
            ("min_age_seconds", p.min_age_seconds),
            ("backoff_seconds", p.backoff_seconds),
            ("sigchld_wait_seconds", p.sigchld_wait_seconds),
            ("grace_seconds", p.grace_seconds),
        ] {
            if !(0.0..=MAX_SECONDS).contains(&v) {
                return Err(format!(
                    "{name} must be a number of seconds from 0 to {MAX_SECONDS:e}, not {v}"
                ));
            }
        }
        if !(0.05..=MAX_SECONDS).contains(&p.interval_seconds) {
            return Err(format!(
                "interval_seconds must be from 0.05 to {MAX_SECONDS:e}, not {}",
                p.interval_seconds
            ));
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deployed_policy_parses_with_its_keys() {
        let text = include_str!("../../../deploy/kubernetes/remediation/policy-configmap.yaml");
        let body: String = text
            .split_once("policy.yaml: |\n")
            .unwrap()
            .1
            .lines()
            .map(|l| l.strip_prefix("    ").unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n");
        let p = Policy::parse(&body).unwrap();
        assert_eq!(p.deny_namespaces, vec!["kube-system"]);
        assert_eq!(p.min_zombies, 5);
        assert_eq!(p.max_actions_per_node_per_hour, 10);
        assert_eq!(p.opt_in_annotation, "zombie-daemon.io/remediate");
        assert_eq!(p, Policy::default());
    }

    #[test]
    fn a_bad_policy_is_one_clear_error() {
        assert!(Policy::parse("min_zombies: lots").is_err());
        let e = Policy::parse("allow_namespace: [a]").unwrap_err();
        assert!(e.contains("allow_namespace"), "{e}");
        assert!(Policy::parse("backoff_seconds: -1").is_err());
        for huge in [
            "min_age_seconds: 1e300",
            "grace_seconds: .inf",
            "interval_seconds: 1e10",
            "sigchld_wait_seconds: .nan",
        ] {
            let e = Policy::parse(huge).unwrap_err();
            assert!(e.contains("seconds"), "{huge}: {e}");
        }
        assert!(Policy::parse("backoff_seconds: 1e9\ninterval_seconds: 1e9").is_ok());
    }
}
