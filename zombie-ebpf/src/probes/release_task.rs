//! `fentry/release_task`: the kernel unhashes a dead task, in the context of whoever releases
//! it: the parent in `wait()`, the exiting task itself when it is autoreaped, or a dying
//! parent handing its zombies to a reaper that ignores SIGCHLD. For a thread group leader this
//! is the reap of the process, seen at once and exactly, unlike `sched_process_free`, which
//! fires an RCU grace period later from a callback that some kernels never run for a whole
//! batch.
//!
//! Where the kernel refuses fentry (no BTF trampolines, or a policy that forbids attaching to
//! functions) userspace leaves it out and the free program is the witness.

use aya_ebpf::{macros::fentry, programs::FEntryContext};
use zombie_ebpf::EventKind;

use super::{read_failed, submit_reap};

#[fentry(function = "release_task")]
pub fn release_task(ctx: FEntryContext) -> i32 {
    if submit_reap(ctx.arg(0), EventKind::Release).is_err() {
        read_failed(&ctx, "release_task");
    }
    0
}
