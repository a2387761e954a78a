//! Empty programs on the same hooks as the real ones, for the benchmark's calibration: what
//! the kernel charges for running any program there at all (the floor), so that the real
//! programs' cost reads as time above it. Never attached by the daemon; only by the hidden
//! `zombie-daemon calibrate` command that `cargo xtask bench` runs.

use aya_ebpf::{
    macros::{btf_tracepoint, fentry},
    programs::{BtfTracePointContext, FEntryContext},
};

#[btf_tracepoint(function = "sched_process_exit")]
pub fn floor_exit(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[btf_tracepoint(function = "sched_process_free")]
pub fn floor_free(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[btf_tracepoint(function = "sched_process_wait")]
pub fn floor_wait(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[btf_tracepoint(function = "sched_process_fork")]
pub fn floor_fork(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[btf_tracepoint(function = "sched_process_exec")]
pub fn floor_exec(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[fentry(function = "release_task")]
pub fn floor_release(_ctx: FEntryContext) -> i32 {
    0
}
