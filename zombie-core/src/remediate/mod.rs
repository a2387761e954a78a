//! Remediation's pure half: the policy's checks ([`policy`]) and the decision engine
//! ([`engine`]). The daemon reads targets from /proc and carries the decisions out.

mod engine;
mod policy;

use serde::Serialize;

pub use engine::{Action, Decision, Engine, Outcome, Target, guard};
pub use policy::{MAX_SECONDS, Pid1Action, Policy};

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
