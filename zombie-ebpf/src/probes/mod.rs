//! What the programs share: maps, the offsets global, kernel reads and event submission.

pub mod floor;
pub mod release_task;
pub mod sched_process_exec;
pub mod sched_process_exit;
pub mod sched_process_fork;
pub mod sched_process_free;
pub mod sched_process_wait;

use aya_ebpf::{
    bindings::{BPF_F_MMAPABLE, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{bpf_get_smp_processor_id, bpf_probe_read_kernel},
    macros::map,
    maps::{Array, LruHashMap, RingBuf},
};
use zombie_ebpf::{Offsets, OriginRecord, control, counters};

/// Filled in by userspace at load time (`EbpfLoader::override_global`).
#[unsafe(no_mangle)]
pub(crate) static OFFSETS: Offsets = Offsets::ZERO;

/// The one ring buffer to userspace. Its size is set by userspace at load time.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 22, 0);

/// Counters: `counters::STRIDE` slots per CPU, slot `cpu * STRIDE + counters::*`, in an array
/// userspace maps into its memory (its size is set at load time to cover every possible CPU).
/// Reading them then takes no bpf() call, which kernels before 5.19 refuse to a caller
/// without CAP_BPF or CAP_SYS_ADMIN while `kernel.unprivileged_bpf_disabled` is set: to the
/// daemon after its capability drop. Each CPU writes only its own slots, as with a per-CPU
/// array.
#[map]
static COUNTERS: Array<u64> = Array::with_max_entries(counters::STRIDE, BPF_F_MMAPABLE);

/// Userspace's flags for the programs (see [`zombie_ebpf::control`]), in an array it maps
/// into its memory and writes without a bpf() call.
#[map]
static CONTROL: Array<u64> = Array::with_max_entries(control::LEN, BPF_F_MMAPABLE);

/// Which process's wait was reported last, and when (jiffies), per slot (`tgid %
/// WAIT_SLOTS`): a busy waiter is reported once per window, at the cost of a plain array
/// access (which the verifier inlines; a per-CPU array's lookup is a call on older
/// kernels). Written only when a wait is reported, so the slots stay read-mostly. Two
/// waiters sharing a slot, or two CPUs writing it at once, are only reported more often,
/// which userspace tolerates (it keeps the last wait per process).
#[map]
pub(crate) static WAIT_SEEN: Array<WaitSeen> = Array::with_max_entries(WAIT_SLOTS, 0);

pub(crate) const WAIT_SLOTS: u32 = 1024;

#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct WaitSeen {
    pub(crate) tgid: u32,
    pub(crate) _pad: u32,
    pub(crate) at: u64,
}

/// Lineage records of container processes, by tgid (see `zombie_ebpf::origin`). Written at
/// fork, consumed at the group's exit (no fork can follow it). Host processes have none: an
/// absent record in the initial PID namespace means `host`. LRU, so records whose exit was
/// never seen (the programs were not attached yet) age out.
#[map]
pub(crate) static ORIGINS: LruHashMap<u32, OriginRecord> = LruHashMap::with_max_entries(32768, 0);

/// The pid ids of a task: (pid, tgid).
#[inline(always)]
pub(crate) fn ids(task: *const u8) -> Result<(u32, u32), i32> {
    if off!(direct_reads) == 0 && off!(task_tgid) == off!(task_pid) + 4 {
        // pid and tgid are adjacent ints in task_struct: one helper call when the layout
        // allows.
        let ids: [u32; 2] = read(task, off!(task_pid))?;
        Ok((ids[0], ids[1]))
    } else {
        Ok((field(task, off!(task_pid))?, field(task, off!(task_tgid))?))
    }
}

/// A task's `struct pid` and the depth of its PID namespace (0: the initial one).
#[inline(always)]
pub(crate) fn pid_level(task: *const u8) -> Result<(*const u8, u32), i32> {
    let pid: *const u8 = field(task, off!(task_thread_pid))?;
    Ok((pid, field(pid, off!(pid_level))?))
}

/// The number a `struct pid` has in the namespace at `level` (1: that namespace's init).
#[inline(always)]
pub(crate) fn pid_nr_at(pid: *const u8, level: u32) -> Result<u32, i32> {
    // MAX_PID_NS_LEVEL is 32; the mask only keeps the offset arithmetic small.
    read(pid, off!(pid_numbers_nr) + (level & 63) * off!(upid_size))
}

/// One field of the offsets global, without copying the whole struct to the stack.
macro_rules! off {
    ($field:ident) => {
        $crate::probes::volatile(core::ptr::addr_of!($crate::probes::OFFSETS.$field))
    };
}
pub(crate) use off;

/// A volatile read of a field of `OFFSETS`: volatile so the compiler cannot fold in the
/// all-zero initial value that userspace overrides at load time.
#[inline(always)]
pub(crate) fn volatile<T: Copy>(field: *const T) -> T {
    // SAFETY: `field` points into our own read-only global.
    unsafe { core::ptr::read_volatile(field) }
}

/// One field of a kernel object the program was handed (a BTF pointer: a tracepoint's or
/// fentry's argument, or a pointer field loaded from one with this same function) at a
/// constant offset. Where userspace set `direct_reads`, a plain load: the verifier knows the
/// offset (a read-only global) and checks it names a field of that size in the object's BTF
/// type, and the kernel's exception table turns a fault into a zero; no helper call. Else
/// through `bpf_probe_read_kernel`. The branch not taken is dead code the verifier drops
/// unchecked, because the flag is a known constant to it.
#[inline(always)]
pub(crate) fn field<T: Copy>(base: *const u8, off: u32) -> Result<T, i32> {
    if off!(direct_reads) != 0 {
        // SAFETY: see above; a bad address yields zero, never a fault.
        Ok(unsafe { core::ptr::read_volatile(base.wrapping_add(off as usize).cast::<T>()) })
    } else {
        read(base, off)
    }
}

/// [`field`], written straight into `dst` (ring-buffer memory).
#[inline(always)]
pub(crate) fn field_into<T: Copy>(dst: *mut T, base: *const u8, off: u32) -> Result<(), i32> {
    if off!(direct_reads) != 0 {
        // SAFETY: as in `field`; `dst` points into a reserved record.
        unsafe {
            dst.write(core::ptr::read_volatile(
                base.wrapping_add(off as usize).cast::<T>(),
            ))
        };
        Ok(())
    } else {
        read_into(dst, base, off)
    }
}

/// Reads `size_of::<T>()` bytes at `base + off` straight into `dst`.
#[inline(always)]
pub(crate) fn read_into<T>(dst: *mut T, base: *const u8, off: u32) -> Result<(), i32> {
    // SAFETY: the helper checks the source address; `dst` points into a reserved record.
    let ret = unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_kernel(
            dst.cast(),
            core::mem::size_of::<T>() as u32,
            base.wrapping_add(off as usize).cast(),
        )
    };
    if ret == 0 { Ok(()) } else { Err(ret as i32) }
}

/// Wakeup flags for a submit: none while the consumer drains on its timer (asking the ring
/// how much is pending would read the consumer's position, a cache line the consumer's CPU
/// writes, on every event), or at once when it sleeps (see [`control::ASLEEP`]).
#[inline(always)]
pub(crate) fn wakeup_flags() -> u64 {
    if let Some(asleep) = CONTROL.get_ptr_mut(control::ASLEEP) {
        // SAFETY: the map's own value slot; userspace writes it concurrently, hence the
        // volatile accesses. Two CPUs may both see it set: one extra wakeup, harmless.
        unsafe {
            if core::ptr::read_volatile(asleep) != 0 {
                core::ptr::write_volatile(asleep, 0);
                return BPF_RB_FORCE_WAKEUP as u64;
            }
        }
    }
    BPF_RB_NO_WAKEUP as u64
}

/// Copies a record filled on the stack into the ring buffer (one helper call): for the rare
/// records (waits) only; the hot ones are filled in place (see the exit program). Counts a
/// loss when the ring buffer is full.
#[inline(always)]
pub(crate) fn output<T: 'static>(ev: &T) {
    if EVENTS.output::<T>(ev, wakeup_flags()).is_err() {
        bump(counters::LOST);
    }
}

/// A task's comm (16 bytes) into `dst`: two plain 8-byte loads where userspace set
/// `direct_reads` (see [`field`]), else one `bpf_probe_read_kernel`.
#[inline(always)]
pub(crate) fn comm_into(
    dst: &mut [u8; zombie_ebpf::COMM_LEN],
    task: *const u8,
    off: u32,
) -> Result<(), i32> {
    if off!(direct_reads) != 0 {
        let words = dst.as_mut_ptr().cast::<u64>();
        // SAFETY: `dst` is 16 bytes; unaligned writes, so no alignment is assumed (the
        // records' comms are 8-byte aligned, so these are plain 8-byte stores).
        unsafe {
            words.write_unaligned(field(task, off)?);
            words.add(1).write_unaligned(field(task, off + 8)?);
        }
        Ok(())
    } else {
        read_into(dst, task, off)
    }
}

/// Submits a filled record, or discards it when filling failed.
#[inline(always)]
pub(crate) fn finish<T>(
    entry: aya_ebpf::maps::ring_buf::RingBufEntry<T>,
    filled: Result<(), i32>,
) -> Result<(), i32> {
    match filled {
        Ok(()) => {
            entry.submit(wakeup_flags());
            Ok(())
        }
        Err(e) => {
            entry.discard(0);
            Err(e)
        }
    }
}

/// Reserves a record; counts a loss when the ring buffer is full.
#[inline(always)]
pub(crate) fn reserve<T: 'static>() -> Option<aya_ebpf::maps::ring_buf::RingBufEntry<T>> {
    let entry = EVENTS.reserve::<T>(0);
    if entry.is_none() {
        bump(counters::LOST);
    }
    entry
}

/// Reads a `T` at `base + off` from kernel memory.
#[inline(always)]
pub(crate) fn read<T>(base: *const u8, off: u32) -> Result<T, i32> {
    // SAFETY: bpf_probe_read_kernel checks the address; a bad one yields an error, not a fault.
    unsafe { bpf_probe_read_kernel(base.wrapping_add(off as usize).cast::<T>()) }
}

/// Adds one to this CPU's slot of a counter; returns the slot's new value.
#[inline(always)]
pub(crate) fn bump(index: u32) -> u64 {
    // SAFETY: a helper without arguments.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    match COUNTERS.get_ptr_mut(cpu * counters::STRIDE + index) {
        Some(p) => {
            // SAFETY: this CPU's own slot; a program runs on one CPU without migrating, and
            // no other CPU writes it.
            unsafe {
                *p += 1;
                *p
            }
        }
        None => 0,
    }
}

/// The reap of `task` (the release or the free of a thread group leader) as a
/// [`zombie_ebpf::ReapEvent`] of `kind`; threads, and a leader replaced by an exec from
/// another thread (de_thread swaps their pids), are not processes and send nothing.
#[inline(always)]
pub(crate) fn submit_reap(task: *const u8, kind: zombie_ebpf::EventKind) -> Result<(), i32> {
    if off!(ready) == 0 {
        return Ok(());
    }
    let (pid, tgid) = ids(task)?;
    if pid != tgid || drops_free(task)? {
        return Ok(());
    }
    let Some(mut entry) = reserve() else {
        return Ok(());
    };
    let ev: *mut zombie_ebpf::ReapEvent = entry.as_mut_ptr();
    // SAFETY: a reserved, exclusively owned record; every field is written before submit.
    let filled = unsafe {
        (*ev).kind = kind as u32;
        (*ev).pid = tgid;
        (*ev).ts_ns = aya_ebpf::helpers::generated::bpf_ktime_get_boot_ns();
        field_into(&raw mut (*ev).start_ns, task, off!(task_start_boottime))
    };
    finish(entry, filled)
}

/// Fault injection for tests (inert unless userspace set a comm): whether the reap of this
/// task is to be dropped, as the kernel does when it never runs the program.
#[inline(always)]
pub(crate) fn drops_free(task: *const u8) -> Result<bool, i32> {
    let fault = off!(fault_drop_free_comm);
    if fault[0] == 0 {
        return Ok(false);
    }
    let comm: [u64; 2] = read(task, off!(task_comm))?;
    Ok(comm[0] == fault[0] && comm[1] == fault[1])
}

/// Counts a failed kernel read; the event is lost, so userspace resyncs from /proc.
#[inline(always)]
pub(crate) fn read_failed<C: aya_ebpf::EbpfContext>(ctx: &C, what: &str) {
    if bump(counters::READ_ERRORS) == 1 {
        // First failure on this CPU only: logging per event would flood the log buffer.
        aya_log_ebpf::error!(ctx, "zombie-ebpf: kernel read failed in {}", what);
    }
}
