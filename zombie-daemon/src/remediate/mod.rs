//! Remediation: opt-in, guarded, audited. Off by default.
//!
//! A pure [`Engine`] turns targets (a non-reaping parent and its zombies) plus the policy
//! and what was already done into [`Decision`]s; a thin executor carries them out (signals
//! through a pidfd, CRI `StopContainer`). The ladder per target is chosen by whether the
//! parent is its PID namespace's init (`Target::namespace_init`), not by the cause:
//! SIGCHLD; then, for an ordinary parent, SIGTERM and SIGKILL after a grace period (its
//! zombies are adopted and reaped by the container's init); for a container's PID 1, a
//! container restart through the runtime (or SIGTERM/SIGKILL to PID 1 where configured).
//! One escalation counts as one action for the rate limits and the backoff.
//!
//! Rooms: the policy's checks and the pure engine live in `zombie_core::remediate`; here
//! [`load_policy`] (the YAML file), `target` (reading targets from /proc), `act` (pidfd signals, the CRI call, the
//! history).

mod act;
mod target;

use std::path::{Path, PathBuf};

pub use act::{HISTORY_LIMIT, Remediator, signal_exact};
pub use target::{ZombieFacts, read_target, targets};
pub use zombie_core::remediate::{
    Action, Decision, Engine, MAX_SECONDS, Mode, Outcome, Pid1Action, Policy, Target, guard,
};

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read the remediation policy {}: {source} (check --policy)", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the remediation policy {} is not valid: {detail}; fix it (keys: see deploy/kubernetes/remediation/policy-configmap.yaml)", path.display())]
    Invalid { path: PathBuf, detail: String },
}

/// Reads and checks the policy file (`--policy`).
pub fn load_policy(path: &Path) -> Result<Policy, PolicyError> {
    let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Policy::parse(&text).map_err(|detail| PolicyError::Invalid {
        path: path.to_path_buf(),
        detail,
    })
}
