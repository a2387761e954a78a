//! `tp_btf/sched_process_wait`: a process entered `wait4`/`waitid`. Reported at most once per
//! process per `wait_dedup_jiffies` ticks: it only has to tell that a parent reaps at all,
//! and a parent polling with WNOHANG would otherwise flood the ring buffer.

use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid,
        generated::{bpf_jiffies64, bpf_ktime_get_boot_ns},
    },
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use zombie_ebpf::{EventKind, RawEvent};

use super::{WAIT_SEEN, WAIT_SLOTS, field, off, output, read_failed};

#[btf_tracepoint(function = "sched_process_wait")]
pub fn sched_process_wait(ctx: BtfTracePointContext) -> i32 {
    if try_wait(&ctx).is_err() {
        read_failed(&ctx, "sched_process_wait");
    }
    0
}

#[inline(always)]
fn try_wait(ctx: &BtfTracePointContext) -> Result<(), i32> {
    if off!(ready) == 0 {
        return Ok(());
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    // The window in ticks: jiffies is a plain load (the verifier inlines the helper), where
    // a clock read is a call; a busy waiter costs no more than that load and one array
    // slot (a plain array, whose lookup the verifier inlines too).
    let window = off!(wait_dedup_jiffies);
    if window != 0
        && let Some(seen) = WAIT_SEEN.get_ptr_mut(tgid % WAIT_SLOTS)
    {
        // SAFETY: helper without arguments.
        let ticks = unsafe { bpf_jiffies64() };
        // SAFETY: a slot of the map's value; two CPUs writing it at once only make a report
        // more, which userspace tolerates (it keeps the last wait per process).
        unsafe {
            if (*seen).tgid == tgid && ticks.wrapping_sub((*seen).at) < window {
                return Ok(());
            }
            (*seen).tgid = tgid;
            (*seen).at = ticks;
        }
    }
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_boot_ns() };

    // The waited-for pid: NULL (any child) or a struct pid (its number in the initial namespace).
    let target: *const u8 = ctx.arg(0);
    let target_pid: u32 = if target.is_null() {
        0
    } else {
        field(target, off!(pid_numbers_nr))?
    };
    let mut ev = RawEvent::zeroed();
    ev.kind = EventKind::Wait as u32;
    ev.ts_ns = now;
    ev.pid = tgid;
    ev.tid = pid_tgid as u32;
    ev.ppid = target_pid;
    ev.comm = bpf_get_current_comm().unwrap_or([0; 16]);
    output(&ev);
    Ok(())
}
