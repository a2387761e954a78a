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
//! Rooms: `policy` (the YAML file and its checks), `engine` (the pure decisions),
//! `target` (reading targets from /proc), `act` (pidfd signals, the CRI call, the
//! history).

mod act;
mod engine;
mod policy;
mod target;

use serde::Serialize;

pub use act::{HISTORY_LIMIT, Remediator, signal_exact};
pub use engine::{Action, Decision, Engine, Outcome, Target, guard};
pub use policy::{MAX_SECONDS, Pid1Action, Policy, PolicyError};
pub use target::{read_target, targets};

/// `--remediate` (the flag's spelling lives in the CLI: `cli::RemediateFlag`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Observe only.
    #[default]
    Off,
    /// Decide and log, never act.
    DryRun,
    /// Act.
    On,
}
