//! zombie-daemon: an eBPF node agent that keeps an exact, live table of a node's zombie
//! processes and tells which pod leaks them.
//!
//! The functional core ([`tracker`], from `zombie-core`) knows nothing about the kernel;
//! [`probe`] (eBPF), [`proc_scan`] (/proc), [`cgroups`] and [`http`] are thin adapters
//! around it.

pub mod attribution;
pub mod attributor;
pub mod audit;
pub mod bounds;
pub mod budget;
pub mod cgroups;
pub mod check;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod daemon;
pub mod diagnoser;
pub mod diagnosis;
pub mod escape;
pub mod health;
pub mod http;
pub mod inflight;
pub mod metrics;
pub mod prevention;
pub mod privileges;
pub mod probe;
pub mod proc_scan;
pub mod remediate;
pub mod snapshot;
pub mod teardown;
pub mod text_table;
pub mod view;

pub use zombie_core::{redact, store, tracker, wait_status};
