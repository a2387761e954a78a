//! zombie-daemon: an eBPF node agent that keeps an exact, live table of a node's zombie
//! processes and tells which pod leaks them.
//!
//! The functional core ([`tracker`], from `zombie-core`) knows nothing about the kernel;
//! [`probe`] (eBPF), [`proc_scan`] (/proc), [`cgroups`] and [`http`] are thin adapters
//! around it.

pub mod attribution;
pub mod attributor;
pub mod audit;
pub mod budget;
pub mod cgroups;
pub mod check;
pub mod cli;
pub mod commands;
pub mod daemon;
pub mod diagnoser;
pub mod diagnosis;
pub mod escape;
pub mod prevention;
pub mod privileges;
pub mod probe;
pub mod proc_scan;
pub mod remediate;
pub mod teardown;
pub mod text_table;

pub use zombie_api::{bounds, clock, health, http, inflight, metrics, snapshot, view};
pub use zombie_core::{redact, store, tracker, wait_status};
