//! `tp_btf/sched_process_exit`: runs in the exiting task, before `exit_notify()` makes it a
//! zombie. Only the exit of a whole thread group is reported: threads are never zombies.

use aya_ebpf::{
    helpers::{bpf_get_current_cgroup_id, generated::bpf_ktime_get_boot_ns},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use zombie_ebpf::{COMM_LEN, EventKind, RawEvent, flags};

use super::{offsets, read, read_failed, submit};

/// SIG_IGN as stored in `sa_handler`.
const SIG_IGN: u64 = 1;

#[btf_tracepoint(function = "sched_process_exit")]
pub fn sched_process_exit(ctx: BtfTracePointContext) -> i32 {
    if try_exit(&ctx).is_err() {
        read_failed(&ctx, "sched_process_exit");
    }
    0
}

#[inline(always)]
fn try_exit(ctx: &BtfTracePointContext) -> Result<(), i32> {
    let o = offsets();
    if o.ready == 0 {
        return Ok(());
    }
    let task: *const u8 = ctx.arg(0);
    let signal: *const u8 = read(task, o.task_signal)?;
    let group_dead = if o.exit_has_group_dead != 0 {
        let dead: u64 = ctx.arg(1);
        dead & 0xff != 0
    } else {
        // do_exit() decrements signal->live before this tracepoint; 0 means no thread is left.
        read::<i32>(signal, o.signal_live)? == 0
    };
    if !group_dead {
        return Ok(());
    }

    // The zombie is the group leader, which may have exited long before this last thread.
    let leader: *const u8 = read(task, o.task_group_leader)?;
    let parent: *const u8 = read(leader, o.task_real_parent)?;

    let mut ev = RawEvent::zeroed();
    ev.kind = EventKind::Exit as u32;
    // SAFETY: helper without arguments.
    ev.ts_ns = unsafe { bpf_ktime_get_boot_ns() };
    ev.pid = read(task, o.task_tgid)?;
    ev.tid = read(task, o.task_pid)?;
    ev.start_ns = read(leader, o.task_start_boottime)?;
    ev.exit_code = read(leader, o.task_exit_code)?;
    ev.group_exit_code = read(signal, o.signal_group_exit_code)?;
    ev.signal_flags = read(signal, o.signal_flags)?;
    // SAFETY: helper without arguments.
    ev.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    ev.comm = read::<[u8; COMM_LEN]>(leader, o.task_comm)?;

    match read_parent(&mut ev, parent, leader) {
        Ok(()) => {}
        Err(_) => ev.flags |= flags::PARTIAL,
    }
    submit(&ev, o.wakeup_bytes);
    Ok(())
}

/// The parent's identity, and whether the kernel will autoreap the child (do_notify_parent():
/// SIGCHLD exit signal, not ptraced, parent's SIGCHLD action SIG_IGN or SA_NOCLDWAIT).
#[inline(always)]
fn read_parent(ev: &mut RawEvent, parent: *const u8, leader: *const u8) -> Result<(), i32> {
    let o = offsets();
    ev.ppid = read(parent, o.task_tgid)?;
    ev.parent_start_ns = read(parent, o.task_start_boottime)?;
    ev.parent_comm = read::<[u8; COMM_LEN]>(parent, o.task_comm)?;

    let exit_signal: i32 = read(leader, o.task_exit_signal)?;
    let ptrace: u32 = read(leader, o.task_ptrace)?;
    if ptrace != 0 {
        ev.flags |= flags::PTRACED;
    } else if exit_signal != o.sigchld as i32 {
        ev.flags |= flags::NON_SIGCHLD;
    } else {
        let sighand: *const u8 = read(parent, o.task_sighand)?;
        let handler: u64 = read(sighand, o.sighand_sigchld_handler)?;
        let sa_flags: u64 = read(sighand, o.sighand_sigchld_flags)?;
        if handler == SIG_IGN || sa_flags & o.sa_nocldwait as u64 != 0 {
            ev.flags |= flags::AUTOREAP;
        }
    }
    Ok(())
}
