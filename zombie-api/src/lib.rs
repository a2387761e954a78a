//! zombie-daemon's read side: the snapshot the event loop publishes ([`snapshot`]), and the
//! readers of it: the HTTP API ([`http`]) and the Prometheus collectors ([`metrics`]).
//!
//! Readers never reach the table's owner, the probe or /proc: this crate does not depend on
//! the daemon crate, nor on aya, procfs, tonic or k8s-cri (its `Cargo.toml`), and its
//! `clippy.toml` forbids std's file, lock and process APIs. A handler answers from the last
//! published snapshot (a `watch` receiver), so a slow or hostile client never stalls the
//! loop that drains the kernel's ring buffer, and reading never acts.

pub mod bounds;
pub mod clock;
pub mod health;
pub mod http;
pub mod inflight;
pub mod metrics;
pub mod snapshot;
pub mod view;

pub(crate) use zombie_core::{attribution, audit, budget, diagnosis, store, tracker, wait_status};
