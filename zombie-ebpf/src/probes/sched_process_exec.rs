//! `tp_btf/sched_process_exec`: the first exec of a process that starts a lineage (a
//! container's init, or a process entered into a container) sends its comm and command line
//! to userspace at once: an exec probe lives for milliseconds, long before its orphans are
//! zombies, and /proc forgets it. Every other exec costs one map lookup.

use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use zombie_ebpf::{CMDLINE_LEN, EventKind, OriginEvent, origin};

use super::{EVENTS, ORIGINS, bump, off, read, read_failed, wakeup_flags};

const CMDLINE_MASK: u64 = CMDLINE_LEN as u64 - 1;
const _: () = assert!(CMDLINE_LEN.is_power_of_two());

#[btf_tracepoint(function = "sched_process_exec")]
pub fn sched_process_exec(ctx: BtfTracePointContext) -> i32 {
    if try_exec(&ctx).is_err() {
        read_failed(&ctx, "sched_process_exec");
    }
    0
}

#[inline(always)]
fn try_exec(ctx: &BtfTracePointContext) -> Result<(), i32> {
    if off!(ready) == 0 {
        return Ok(());
    }
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let Some(record) = ORIGINS.get_ptr_mut(tgid) else {
        return Ok(());
    };
    // SAFETY: a pointer into the map's value; this task's own record, which only its own
    // exec, fork and exit touch.
    let (kind, start_ns) = unsafe {
        if (*record).pid != tgid || (*record).flags & origin::CAPTURED != 0 {
            return Ok(());
        }
        (*record).flags |= origin::CAPTURED;
        ((*record).kind, (*record).start_ns)
    };
    // The new image's argv, set up by the binary loader before this tracepoint.
    let task: *const u8 = ctx.arg(0);
    let mm: *const u8 = read(task, off!(task_mm))?;
    let arg_start: u64 = read(mm, off!(mm_arg_start))?;
    let arg_end: u64 = read(mm, off!(mm_arg_end))?;
    // At most CMDLINE_LEN - 1 bytes. Older verifiers (5.10) lose a bound checked by a
    // comparison once the compiler spills the value; a mask applied to a volatile reload
    // right before the call is one the compiler cannot drop or move away.
    let mut len = arg_end.wrapping_sub(arg_start);
    if len > CMDLINE_MASK {
        len = CMDLINE_MASK;
    }
    // SAFETY: a read of our own local.
    let len = unsafe { core::ptr::read_volatile(&len) } & CMDLINE_MASK;

    let Some(mut entry) = EVENTS.reserve::<OriginEvent>(0) else {
        bump(zombie_ebpf::counters::LOST);
        return Ok(());
    };
    let ev: *mut OriginEvent = entry.as_mut_ptr();
    // SAFETY: a reserved, exclusively owned record; every field is written before submit.
    unsafe {
        (*ev).kind = EventKind::Origin as u32;
        (*ev).origin_kind = kind;
        (*ev).pid = tgid;
        (*ev).start_ns = start_ns;
        (*ev).comm = bpf_get_current_comm().unwrap_or([0; 16]);
        let ret = aya_ebpf::helpers::generated::bpf_probe_read_user(
            (*ev).cmdline.as_mut_ptr().cast(),
            len as u32,
            arg_start as *const _,
        );
        // Unreadable (paged out): the origin is still named by its comm. Not a read error:
        // no event is missing.
        (*ev).cmdline_len = if ret == 0 { len as u32 } else { 0 };
    }
    entry.submit(wakeup_flags());
    Ok(())
}
