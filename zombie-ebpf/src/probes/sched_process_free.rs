//! `tp_btf/sched_process_free`: a task's last reference is dropped (after `release_task()`
//! and an RCU grace period). For a thread group leader this is the reap of the process.

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use zombie_ebpf::EventKind;

use super::{read_failed, submit_reap};

#[btf_tracepoint(function = "sched_process_free")]
pub fn sched_process_free(ctx: BtfTracePointContext) -> i32 {
    if submit_reap(ctx.arg(0), EventKind::Free).is_err() {
        read_failed(&ctx, "sched_process_free");
    }
    0
}
