//! zombie-daemon's functional core: events in, zombie table out, with the clock passed in;
//! and the compact store the published snapshots share.
//!
//! Nothing here touches the kernel, /proc, the network or a lock: the crate depends on no
//! tokio, aya, procfs, hyper or tonic (its `Cargo.toml`), and its `clippy.toml` forbids
//! std's file, process, clock and lock APIs. The daemon's adapters feed it and publish
//! what it returns.

pub mod attribution;
pub mod audit;
pub mod budget;
pub mod diagnosis;
pub mod redact;
pub mod remediate;
pub mod store;
pub mod teardown;
pub mod tracker;
pub mod view;
pub mod wait_status;
