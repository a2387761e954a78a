//! The CLI's commands: argument handling, printing and exit codes. `run` (the daemon's
//! wiring) is in main.rs. The library modules they call ([`crate::text_table`], [`crate::audit`],
//! [`crate::check`]) take plain parameters and know nothing of the command line.

pub mod audit;
pub mod check;
pub mod client;
pub mod list;
