//! `tp_btf/sched_process_free`: a task's last reference is dropped (after `release_task()`
//! and an RCU grace period). For a thread group leader this is the reap of the process.

use aya_ebpf::{
    helpers::generated::bpf_ktime_get_boot_ns, macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use zombie_ebpf::{EventKind, ReapEvent};

use super::{drops_free, field_into, finish, ids, off, read_failed, reserve};

#[btf_tracepoint(function = "sched_process_free")]
pub fn sched_process_free(ctx: BtfTracePointContext) -> i32 {
    if try_free(&ctx).is_err() {
        read_failed(&ctx, "sched_process_free");
    }
    0
}

#[inline(always)]
fn try_free(ctx: &BtfTracePointContext) -> Result<(), i32> {
    if off!(ready) == 0 {
        return Ok(());
    }
    let task: *const u8 = ctx.arg(0);
    let (pid, tgid) = ids(task)?;
    // Threads (and a leader replaced by exec from another thread, whose pid was swapped)
    // are not processes.
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
        (*ev).kind = EventKind::Free as u32;
        (*ev).pid = tgid;
        (*ev).ts_ns = bpf_ktime_get_boot_ns();
        field_into(&raw mut (*ev).start_ns, task, off!(task_start_boottime))
    };
    finish(entry, filled)
}
