//! `tp_btf/sched_process_exit`: runs in the exiting task, before `exit_notify()` makes it a
//! zombie. Only the exit of a whole thread group is reported: threads are never zombies.
//!
//! The hot path of the daemon: every thread exit runs it. A thread exit costs two reads; a
//! process exit fills its record in place in the ring buffer with plain loads (no stack
//! copy: measured here, a record built on the stack and copied out with one
//! `bpf_ringbuf_output` cost 50 to 110 ns more than reserve, fill in place and submit).

use aya_ebpf::{
    helpers::{bpf_get_current_cgroup_id, generated::bpf_ktime_get_boot_ns},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use zombie_ebpf::{COMM_LEN, EventKind, RawEvent, flags, origin};

use super::{
    ORIGINS, comm_into, field, field_into, finish, ids, off, pid_level, read_failed, reserve,
};

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
    if off!(ready) == 0 {
        return Ok(());
    }
    let task: *const u8 = ctx.arg(0);
    let signal: *const u8 = field(task, off!(task_signal))?;
    let group_dead = if off!(exit_has_group_dead) != 0 {
        let dead: u64 = ctx.arg(1);
        dead & 0xff != 0
    } else {
        // do_exit() decrements signal->live before this tracepoint; 0 means no thread is left.
        field::<i32>(signal, off!(signal_live))? == 0
    };
    if !group_dead {
        return Ok(());
    }
    // The zombie is the group leader, which may have exited long before this last thread.
    let leader: *const u8 = field(task, off!(task_group_leader))?;
    let parent: *const u8 = field(leader, off!(task_real_parent))?;

    let Some(mut entry) = reserve() else {
        return Ok(());
    };
    let ev: *mut RawEvent = entry.as_mut_ptr();
    let filled = fill(ev, task, leader, signal, parent);
    finish(entry, filled)
}

#[inline(always)]
fn fill(
    ev: *mut RawEvent,
    task: *const u8,
    leader: *const u8,
    signal: *const u8,
    parent: *const u8,
) -> Result<(), i32> {
    // SAFETY: `ev` is a reserved, exclusively owned record of the right size; every field is
    // written before submit (the reserved memory is not zeroed).
    unsafe {
        (*ev).kind = EventKind::Exit as u32;
        (*ev).flags = 0;
        (*ev).ts_ns = bpf_ktime_get_boot_ns();
        (*ev).cgroup_id = cgroup_id(task);
        let (tid, tgid) = ids(task)?;
        (*ev).tid = tid;
        (*ev).pid = tgid;
        field_into(&raw mut (*ev).start_ns, leader, off!(task_start_boottime))?;
        field_into(&raw mut (*ev).exit_code, leader, off!(task_exit_code))?;
        field_into(
            &raw mut (*ev).group_exit_code,
            signal,
            off!(signal_group_exit_code),
        )?;
        field_into(&raw mut (*ev).signal_flags, signal, off!(signal_flags))?;
        comm_into(&mut (*ev).comm, leader, off!(task_comm))?;
        fill_origin(ev, tgid, leader)?;
        if read_parent(ev, parent, leader).is_err() {
            (*ev).flags |= flags::PARTIAL;
            (*ev).ppid = 0;
            (*ev).parent_start_ns = 0;
            (*ev).parent_comm = [0; COMM_LEN];
        } else if (*ev).origin_kind == origin::EXEC && (*ev).origin_pid != tgid {
            // Rare (a process of an exec session): is its parent in the same session?
            if let Some(p) = ORIGINS.get((*ev).ppid)
                && p.pid == (*ev).origin_pid
                && p.start_ns == (*ev).origin_start_ns
            {
                (*ev).flags |= flags::PARENT_IN_ORIGIN;
            }
        }
    }
    Ok(())
}

/// The exiting task's cgroup v2 id (it is the current task): four plain loads
/// (`cgroups->dfl_cgrp->kn->id`) where `direct_reads` is set, else the helper that reads
/// the same chain.
#[inline(always)]
fn cgroup_id(task: *const u8) -> u64 {
    if off!(direct_reads) != 0 {
        let id = || -> Result<u64, i32> {
            let cset: *const u8 = field(task, off!(task_cgroups))?;
            let cgrp: *const u8 = field(cset, off!(css_set_dfl_cgrp))?;
            let kn: *const u8 = field(cgrp, off!(cgroup_kn))?;
            field(kn, off!(kernfs_node_id))
        };
        id().unwrap_or(0)
    } else {
        // SAFETY: a helper without arguments.
        unsafe { bpf_get_current_cgroup_id() }
    }
}

/// Where the process's lineage starts. Its record is consumed: no fork can follow the
/// group's exit. Processes of the initial PID namespace never have one (the fork program
/// records container processes only), so they cost no map access.
#[inline(always)]
fn fill_origin(ev: *mut RawEvent, tgid: u32, leader: *const u8) -> Result<(), i32> {
    let in_container = pid_level(leader)?.1 != 0;
    // SAFETY: as in `fill`; the map value is copied out at once.
    unsafe {
        (*ev).origin_pid = 0;
        (*ev).origin_start_ns = 0;
        if !in_container {
            (*ev).origin_kind = origin::HOST;
        } else if let Some(r) = ORIGINS.get(tgid) {
            (*ev).origin_kind = r.kind;
            (*ev).origin_pid = r.pid;
            (*ev).origin_start_ns = r.start_ns;
            let _ = ORIGINS.remove(tgid);
        } else {
            (*ev).origin_kind = origin::UNKNOWN;
        }
    }
    Ok(())
}

/// The parent's identity, and whether the kernel will autoreap the child (do_notify_parent():
/// SIGCHLD exit signal, not ptraced, parent's SIGCHLD action SIG_IGN or SA_NOCLDWAIT).
#[inline(always)]
fn read_parent(ev: *mut RawEvent, parent: *const u8, leader: *const u8) -> Result<(), i32> {
    // The parent is a process: `real_parent` is the thread that forked the child, whose own
    // start time and comm are not the process's. Its identity is its group leader's, as
    // /proc shows it.
    let parent_leader: *const u8 = field(parent, off!(task_group_leader))?;
    // SAFETY: as in `fill`.
    unsafe {
        field_into(&raw mut (*ev).ppid, parent, off!(task_tgid))?;
        field_into(
            &raw mut (*ev).parent_start_ns,
            parent_leader,
            off!(task_start_boottime),
        )?;
        comm_into(&mut (*ev).parent_comm, parent_leader, off!(task_comm))?;
        let exit_signal: i32 = field(leader, off!(task_exit_signal))?;
        let ptrace: u32 = field(leader, off!(task_ptrace))?;
        if ptrace != 0 {
            (*ev).flags |= flags::PTRACED;
        } else if exit_signal != off!(sigchld) as i32 {
            (*ev).flags |= flags::NON_SIGCHLD;
        } else {
            let sighand: *const u8 = field(parent, off!(task_sighand))?;
            let handler: u64 = field(sighand, off!(sighand_sigchld_handler))?;
            let sa_flags: u64 = field(sighand, off!(sighand_sigchld_flags))?;
            if handler == SIG_IGN || sa_flags & off!(sa_nocldwait) as u64 != 0 {
                (*ev).flags |= flags::AUTOREAP;
            }
        }
    }
    Ok(())
}
