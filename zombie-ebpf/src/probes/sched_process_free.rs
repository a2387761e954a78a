//! `tp_btf/sched_process_free`: a task's last reference is dropped (after `release_task()`
//! and an RCU grace period). For a thread group leader this is the reap of the process.

use aya_ebpf::{
    helpers::generated::bpf_ktime_get_boot_ns, macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use zombie_ebpf::{EventKind, RawEvent};

use super::{offsets, read, read_failed, submit};

#[btf_tracepoint(function = "sched_process_free")]
pub fn sched_process_free(ctx: BtfTracePointContext) -> i32 {
    if try_free(&ctx).is_err() {
        read_failed(&ctx, "sched_process_free");
    }
    0
}

#[inline(always)]
fn try_free(ctx: &BtfTracePointContext) -> Result<(), i32> {
    let o = offsets();
    if o.ready == 0 {
        return Ok(());
    }
    let task: *const u8 = ctx.arg(0);
    let pid: u32 = read(task, o.task_pid)?;
    let tgid: u32 = read(task, o.task_tgid)?;
    // Threads (and a leader replaced by exec from another thread, whose pid was swapped)
    // are not processes.
    if pid != tgid {
        return Ok(());
    }
    let mut ev = RawEvent::zeroed();
    ev.kind = EventKind::Free as u32;
    // SAFETY: helper without arguments.
    ev.ts_ns = unsafe { bpf_ktime_get_boot_ns() };
    ev.pid = tgid;
    ev.tid = pid;
    ev.start_ns = read(task, o.task_start_boottime)?;
    submit(&ev, o.wakeup_bytes);
    Ok(())
}
