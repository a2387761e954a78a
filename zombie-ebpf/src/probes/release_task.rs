//! `fentry/release_task`: the kernel unhashes a dead task, in the context of whoever releases
//! it: the parent in `wait()`, the exiting task itself when it is autoreaped, or a dying
//! parent handing its zombies to a reaper that ignores SIGCHLD. For a thread group leader this
//! is the reap of the process, seen at once and exactly, unlike `sched_process_free`, which
//! fires an RCU grace period later from a callback that some kernels never run for a whole
//! batch.
//!
//! Where the kernel refuses fentry (no BTF trampolines, or a policy that forbids attaching to
//! functions) userspace leaves it out and the free program is the witness.

use aya_ebpf::{
    helpers::generated::bpf_ktime_get_boot_ns, macros::fentry, programs::FEntryContext,
};
use zombie_ebpf::{EventKind, ReapEvent};

use super::{drops_free, field_into, finish, ids, off, read_failed, reserve};

#[fentry(function = "release_task")]
pub fn release_task(ctx: FEntryContext) -> i32 {
    if try_release(&ctx).is_err() {
        read_failed(&ctx, "release_task");
    }
    0
}

#[inline(always)]
fn try_release(ctx: &FEntryContext) -> Result<(), i32> {
    if off!(ready) == 0 {
        return Ok(());
    }
    let task: *const u8 = ctx.arg(0);
    let (pid, tgid) = ids(task)?;
    // Threads are not processes. A leader replaced by an exec from another thread is
    // released with that thread's pid (de_thread swaps them), so it is filtered here too.
    if pid != tgid {
        return Ok(());
    }
    if drops_free(task)? {
        return Ok(());
    }
    let Some(mut entry) = reserve() else {
        return Ok(());
    };
    let ev: *mut ReapEvent = entry.as_mut_ptr();
    // SAFETY: a reserved, exclusively owned record; every field is written before submit.
    let filled = unsafe {
        (*ev).kind = EventKind::Release as u32;
        (*ev).pid = tgid;
        (*ev).ts_ns = bpf_ktime_get_boot_ns();
        field_into(&raw mut (*ev).start_ns, task, off!(task_start_boottime))
    };
    finish(entry, filled)
}
