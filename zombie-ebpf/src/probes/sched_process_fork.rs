//! `tp_btf/sched_process_fork`: records where a new process's lineage starts (see
//! `zombie_ebpf::origin`). Runs for every fork and clone, before the child first runs.
//!
//! Hot: threads and host processes cost four reads and no map access; a container process
//! one lookup and one update.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::btf_tracepoint, programs::BtfTracePointContext,
};
use zombie_ebpf::{OriginRecord, origin};

use super::{ORIGINS, field, ids, off, pid_level, pid_nr_at, read_failed};

#[btf_tracepoint(function = "sched_process_fork")]
pub fn sched_process_fork(ctx: BtfTracePointContext) -> i32 {
    if try_fork(&ctx).is_err() {
        read_failed(&ctx, "sched_process_fork");
    }
    0
}

#[inline(always)]
fn try_fork(ctx: &BtfTracePointContext) -> Result<(), i32> {
    if off!(ready) == 0 {
        return Ok(());
    }
    // The forking task (not the child's real parent, which CLONE_PARENT changes): the one
    // whose PID namespace the child was created from.
    let parent: *const u8 = ctx.arg(0);
    let child: *const u8 = ctx.arg(1);
    let (pid, tgid) = ids(child)?;
    if pid != tgid {
        // A thread: part of its group's lineage, never a start of one.
        return Ok(());
    }
    let (child_pid, level) = pid_level(child)?;
    if level == 0 {
        // The initial PID namespace: no record means `host`.
        return Ok(());
    }
    let (parent_pid, parent_level) = pid_level(parent)?;
    let record = if parent_level != level {
        // Created into a namespace its parent is not in: a container's init, or a process a
        // runtime (or nsenter) entered into the container.
        let kind = if pid_nr_at(child_pid, level)? == 1 {
            origin::INIT
        } else {
            origin::EXEC
        };
        OriginRecord {
            kind,
            flags: 0,
            pid: tgid,
            _pad: 0,
            start_ns: field(child, off!(task_start_boottime))?,
        }
    } else {
        // The forking task is the current one.
        let parent_tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
        // SAFETY: the value is copied out at once.
        match unsafe { ORIGINS.get(parent_tgid) } {
            Some(r) => OriginRecord { flags: 0, ..*r },
            // Its parent predates the programs. The namespace's init starts a lineage
            // itself; anything else stays unknown (no record).
            None if pid_nr_at(parent_pid, level)? == 1 => OriginRecord {
                kind: origin::INIT,
                flags: origin::CAPTURED,
                pid: parent_tgid,
                _pad: 0,
                start_ns: field(parent, off!(task_start_boottime))?,
            },
            None => return Ok(()),
        }
    };
    ORIGINS.insert(tgid, record, 0)
}
