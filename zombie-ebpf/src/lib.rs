//! Types shared by the eBPF programs and the userspace agent.
//!
//! Both sides compile this file: the programs for `bpfel-unknown-none`, the agent for the
//! host. Everything here is `#[repr(C)]`, fixed-size and free of pointers so a ring-buffer
//! record can be reinterpreted on the other side without a serialisation step.
#![cfg_attr(not(test), no_std)]

/// Length of `task_struct.comm` (TASK_COMM_LEN), part of the kernel ABI.
pub const COMM_LEN: usize = 16;

/// What happened to a task.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The last thread of a thread group ran `do_exit` (`sched_process_exit`, group dead).
    Exit = 1,
    /// A thread group leader's `task_struct` was released (`sched_process_free`): the reap.
    Free = 2,
    /// A process entered `wait4`/`waitid` (`sched_process_wait`).
    Wait = 3,
    /// A process that starts a lineage (a container's init or a process entered into a
    /// container from outside) ran its first exec: an [`OriginEvent`], not a [`RawEvent`].
    Origin = 4,
    /// A thread group leader was released (`release_task`, in the releasing task): the
    /// reap, seen where it happens. Same meaning as [`Self::Free`], which fires later.
    Release = 5,
}

impl EventKind {
    pub const fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::Exit),
            2 => Some(Self::Free),
            3 => Some(Self::Wait),
            4 => Some(Self::Origin),
            5 => Some(Self::Release),
            _ => None,
        }
    }
}

/// Bits of [`RawEvent::flags`].
pub mod flags {
    /// The parent ignores SIGCHLD or set SA_NOCLDWAIT: the kernel releases the task at once
    /// instead of leaving a zombie.
    pub const AUTOREAP: u32 = 1 << 0;
    /// The exiting process is ptraced; its tracer, not its parent, gets to reap it first.
    pub const PTRACED: u32 = 1 << 1;
    /// Its `exit_signal` is not SIGCHLD (e.g. `clone` with exit signal 0): never autoreaped,
    /// only `__WALL`/`__WCLONE` waiters reap it.
    pub const NON_SIGCHLD: u32 = 1 << 2;
    /// A field read failed; the event carries what could be read.
    pub const PARTIAL: u32 = 1 << 3;
    /// Set on the exit of a process of an exec session (not the session's own process):
    /// its parent belongs to the same session, which may still reap it. Without it, the
    /// zombie is already left to a process outside the session (the container's init).
    pub const PARENT_IN_ORIGIN: u32 = 1 << 4;
}

/// One ring-buffer record. 8-byte aligned and a multiple of 8 bytes long, as the ring buffer
/// requires.
///
/// Field meaning by kind:
/// - `Exit`: `pid` is the thread group id (the zombie's pid), `tid` the last thread to exit,
///   `ppid`/`parent_start_ns`/`parent_comm` the real parent at exit, `start_ns` the group
///   leader's start time (CLOCK_BOOTTIME ns), `comm` the leader's comm, the three exit fields
///   the raw material of the wait status (see [`wait_status`]).
/// - `Free`, `Release`: carried by a [`ReapEvent`], never a `RawEvent`.
/// - `Wait`: `pid` is the waiting process (tgid), `tid` the waiting thread, `ppid` the pid it
///   waits for (0: any child), `comm` the waiter's comm.
///
/// The `origin_*` fields are set on `Exit` only (see [`origin`]).
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug)]
pub struct RawEvent {
    pub kind: u32,
    pub flags: u32,
    /// When it happened, CLOCK_BOOTTIME ns (`bpf_ktime_get_boot_ns`).
    pub ts_ns: u64,
    /// The process's start time, CLOCK_BOOTTIME ns (`task_struct.start_boottime`).
    pub start_ns: u64,
    pub parent_start_ns: u64,
    /// cgroup v2 id of the exiting task (the inode number of its cgroup2 directory).
    pub cgroup_id: u64,
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    /// `task_struct.exit_code` of the group leader.
    pub exit_code: u32,
    /// `signal_struct.group_exit_code`.
    pub group_exit_code: u32,
    /// `signal_struct.flags`.
    pub signal_flags: u32,
    pub comm: [u8; COMM_LEN],
    pub parent_comm: [u8; COMM_LEN],
    /// One of [`origin`]'s kinds.
    pub origin_kind: u32,
    /// The process that started the exiting process's lineage (tgid as the host sees it).
    pub origin_pid: u32,
    /// Its start time, CLOCK_BOOTTIME ns.
    pub origin_start_ns: u64,
}

impl RawEvent {
    pub const SIZE: usize = core::mem::size_of::<Self>();

    pub const fn zeroed() -> Self {
        Self {
            kind: 0,
            flags: 0,
            ts_ns: 0,
            start_ns: 0,
            parent_start_ns: 0,
            cgroup_id: 0,
            pid: 0,
            tid: 0,
            ppid: 0,
            exit_code: 0,
            group_exit_code: 0,
            signal_flags: 0,
            comm: [0; COMM_LEN],
            parent_comm: [0; COMM_LEN],
            origin_kind: 0,
            origin_pid: 0,
            origin_start_ns: 0,
        }
    }

    /// Reads a record from ring-buffer bytes; `None` if it is too short.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < Self::SIZE {
            return None;
        }
        // SAFETY: length checked; every bit pattern is a valid RawEvent (plain integers and
        // byte arrays); read_unaligned makes no alignment assumption about the slice.
        Some(unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<Self>()) })
    }
}

/// The reap of a process (`Free` or `Release`): all a reap needs, a quarter of a
/// [`RawEvent`]. 8-byte aligned, a multiple of 8 bytes.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug)]
pub struct ReapEvent {
    /// [`EventKind::Free`] or [`EventKind::Release`].
    pub kind: u32,
    /// The released leader (its tgid).
    pub pid: u32,
    /// When, CLOCK_BOOTTIME ns.
    pub ts_ns: u64,
    /// Its start time, CLOCK_BOOTTIME ns.
    pub start_ns: u64,
}

impl ReapEvent {
    pub const SIZE: usize = core::mem::size_of::<Self>();

    /// Reads a record from ring-buffer bytes; `None` if it is too short.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < Self::SIZE {
            return None;
        }
        // SAFETY: as in RawEvent::from_bytes.
        Some(unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<Self>()) })
    }
}

/// Provenance: which process started a process's lineage.
///
/// The fork program records, per thread group, the process its lineage starts from: a
/// container's init (the child is PID 1 of its PID namespace), or a process entered into a
/// container from outside (its parent is outside the child's PID namespace and it is not
/// that namespace's PID 1: what a runtime's exec, `nsenter` and exec probes do). Every other
/// child inherits its parent's record. The exit program hands the record to userspace.
pub mod origin {
    /// Descends from its PID namespace's init.
    pub const INIT: u32 = 1;
    /// Descends from a process entered into its PID namespace from outside.
    pub const EXEC: u32 = 2;
    /// In the initial PID namespace, outside any container.
    pub const HOST: u32 = 3;
    /// In a container, but its lineage was not recorded (forked before the programs ran).
    pub const UNKNOWN: u32 = 4;
    /// [`super::OriginRecord::flags`]: the origin's first exec was reported.
    pub const CAPTURED: u32 = 1;
}

/// The lineage record of one thread group, the value of the kernel's origin map.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OriginRecord {
    pub kind: u32,
    pub flags: u32,
    /// The origin's tgid as the host sees it (the record's own key when it is the origin).
    pub pid: u32,
    pub _pad: u32,
    /// The origin's start time, CLOCK_BOOTTIME ns.
    pub start_ns: u64,
}

/// Room for an origin's command line (argv, NUL-separated); the kernel copies at most one
/// byte less, cut there.
pub const CMDLINE_LEN: usize = 256;

/// The first exec of a process that starts a lineage: its comm and command line, read in
/// the kernel at once (exec probes live for milliseconds). 8-byte aligned, multiple of 8.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug)]
pub struct OriginEvent {
    /// [`EventKind::Origin`].
    pub kind: u32,
    /// [`origin::INIT`] or [`origin::EXEC`].
    pub origin_kind: u32,
    pub pid: u32,
    /// Valid bytes of `cmdline`.
    pub cmdline_len: u32,
    pub start_ns: u64,
    pub comm: [u8; COMM_LEN],
    /// argv as in /proc/<pid>/cmdline: NUL-separated.
    pub cmdline: [u8; CMDLINE_LEN],
}

impl OriginEvent {
    pub const SIZE: usize = core::mem::size_of::<Self>();

    /// Reads a record from ring-buffer bytes; `None` if it is too short.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < Self::SIZE {
            return None;
        }
        // SAFETY: as in RawEvent::from_bytes.
        Some(unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<Self>()) })
    }
}

/// The kind of a ring-buffer record (its first word), whatever its type.
pub fn record_kind(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(bytes.get(..4)?.try_into().ok()?))
}

/// `SIGNAL_GROUP_EXIT` from include/linux/sched/signal.h. It is a `#define`, so BTF does not
/// carry it; its value has been 0x4 since Linux 2.6.
pub const SIGNAL_GROUP_EXIT: u32 = 0x0000_0004;

/// The wait status the parent will read, computed as `wait_task_zombie()` does: the group exit
/// code when the whole group was told to exit, else the leader's own exit code.
pub const fn wait_status(exit_code: u32, group_exit_code: u32, signal_flags: u32) -> u32 {
    if signal_flags & SIGNAL_GROUP_EXIT != 0 {
        group_exit_code
    } else {
        exit_code
    }
}

/// Kernel struct member offsets and constants, read by userspace from the running kernel's
/// BTF and handed to the programs as a read-only global. Nothing of the build machine's
/// layouts is compiled in. A zero `ready` makes every program a no-op.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offsets {
    pub ready: u32,
    pub task_pid: u32,
    pub task_tgid: u32,
    pub task_real_parent: u32,
    pub task_group_leader: u32,
    pub task_signal: u32,
    pub task_sighand: u32,
    pub task_exit_code: u32,
    pub task_exit_signal: u32,
    pub task_ptrace: u32,
    pub task_start_boottime: u32,
    pub task_comm: u32,
    pub signal_live: u32,
    pub signal_flags: u32,
    pub signal_group_exit_code: u32,
    /// `sighand_struct.action[SIGCHLD - 1].sa.sa_handler`, precomputed.
    pub sighand_sigchld_handler: u32,
    /// `sighand_struct.action[SIGCHLD - 1].sa.sa_flags`, precomputed.
    pub sighand_sigchld_flags: u32,
    /// `struct pid.numbers[0].nr` (the pid number in the initial namespace).
    pub pid_numbers_nr: u32,
    /// SA_NOCLDWAIT on this architecture.
    pub sa_nocldwait: u32,
    /// SIGCHLD on this architecture.
    pub sigchld: u32,
    /// Unused (was the wait window in ns; see `wait_dedup_jiffies`). Kept so the layout
    /// stays as it was.
    pub _unused_wait_ns: u64,
    /// Emit at most one Wait event per process per this many jiffies (0: every wait).
    /// Userspace derives it from its window and the tick length, rounded down so the window
    /// in time is never longer than the one it assumes.
    pub wait_dedup_jiffies: u64,
    /// Non-zero when the kernel's `sched_process_exit` tracepoint passes `group_dead` as its
    /// second argument (newer kernels); otherwise the programs derive it from
    /// `signal_struct.live`.
    pub exit_has_group_dead: u32,
    pub _pad: u32,
    /// Fault injection for tests, inert when all zero: the free program drops the events of
    /// processes with exactly this comm, as the kernel does when it never runs the program.
    /// The comm's 16 bytes as two native-endian words (compared without a memcmp, which
    /// eBPF lacks); see [`comm_words`].
    pub fault_drop_free_comm: [u64; 2],
    /// `task_struct.thread_pid` (the `struct pid` of the task).
    pub task_thread_pid: u32,
    /// `struct pid.level`: the depth of the task's PID namespace (0: the initial one).
    pub pid_level: u32,
    /// `sizeof(struct upid)`: `numbers[level].nr` is at `pid_numbers_nr + level * upid_size`.
    pub upid_size: u32,
    pub task_mm: u32,
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    /// Non-zero: the programs load fields of the kernel objects they are handed (BTF
    /// pointers) directly, at these offsets, which the verifier knows as constants (this
    /// global is read-only and frozen), instead of through `bpf_probe_read_kernel`. Userspace
    /// sets it, and clears it again if the running kernel's verifier refuses such a load.
    pub direct_reads: u32,
    /// `task_struct.cgroups` (its `css_set`): with the three below, the chain to the
    /// task's cgroup v2 id (`cgroups->dfl_cgrp->kn->id`, what `bpf_get_current_cgroup_id`
    /// returns) as plain loads, where `direct_reads` is set.
    pub task_cgroups: u32,
    pub css_set_dfl_cgrp: u32,
    pub cgroup_kn: u32,
    pub kernfs_node_id: u32,
    pub _pad2: u32,
}

impl Offsets {
    /// All zero: not configured, programs do nothing.
    pub const ZERO: Self = Self {
        ready: 0,
        task_pid: 0,
        task_tgid: 0,
        task_real_parent: 0,
        task_group_leader: 0,
        task_signal: 0,
        task_sighand: 0,
        task_exit_code: 0,
        task_exit_signal: 0,
        task_ptrace: 0,
        task_start_boottime: 0,
        task_comm: 0,
        signal_live: 0,
        signal_flags: 0,
        signal_group_exit_code: 0,
        sighand_sigchld_handler: 0,
        sighand_sigchld_flags: 0,
        pid_numbers_nr: 0,
        sa_nocldwait: 0,
        sigchld: 0,
        _unused_wait_ns: 0,
        wait_dedup_jiffies: 0,
        exit_has_group_dead: 0,
        _pad: 0,
        fault_drop_free_comm: [0; 2],
        task_thread_pid: 0,
        pid_level: 0,
        upid_size: 0,
        task_mm: 0,
        mm_arg_start: 0,
        mm_arg_end: 0,
        direct_reads: 0,
        task_cgroups: 0,
        css_set_dfl_cgrp: 0,
        cgroup_kn: 0,
        kernfs_node_id: 0,
        _pad2: 0,
    };
}

/// A comm as two native-endian words (a NUL-padded `[u8; COMM_LEN]` read as `[u64; 2]`).
pub fn comm_words(comm: &[u8; COMM_LEN]) -> [u64; 2] {
    let mut lo = [0u8; 8];
    let mut hi = [0u8; 8];
    lo.copy_from_slice(&comm[..8]);
    hi.copy_from_slice(&comm[8..]);
    [u64::from_ne_bytes(lo), u64::from_ne_bytes(hi)]
}

/// The counters in the `COUNTERS` array: CPU `c`'s value of counter `i` is slot
/// `c * STRIDE + i`.
pub mod counters {
    /// Events that could not be reserved in the ring buffer (it was full).
    pub const LOST: u32 = 0;
    /// Kernel memory reads that failed.
    pub const READ_ERRORS: u32 = 1;
    pub const LEN: u32 = 2;
    /// Slots per CPU: a cache line of u64s, so CPUs never write the same line.
    pub const STRIDE: u32 = 8;
    const _: () = assert!(LEN <= STRIDE);
}

/// The slots of the `CONTROL` array, which userspace writes through a shared mapping and
/// the programs read.
pub mod control {
    /// Non-zero: the consumer sleeps until woken (it stopped draining on a timer because no
    /// event came for a while). The next program to submit an event forces a wakeup and
    /// clears it, so an idle daemon wakes at once for the next event without a timer.
    pub const ASLEEP: u32 = 0;
    pub const LEN: u32 = 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_ring_buffer_friendly() {
        assert_eq!(RawEvent::SIZE % 8, 0);
        assert_eq!(core::mem::align_of::<RawEvent>(), 8);
        assert_eq!(OriginEvent::SIZE % 8, 0);
        assert_eq!(ReapEvent::SIZE, 24);
        assert_eq!(core::mem::size_of::<OriginRecord>(), 24);
        assert_eq!(core::mem::size_of::<Offsets>() % 8, 0);
    }

    #[test]
    fn records_are_told_apart_by_their_first_word() {
        let mut bytes = [0u8; OriginEvent::SIZE];
        bytes[..4].copy_from_slice(&(EventKind::Origin as u32).to_ne_bytes());
        assert_eq!(record_kind(&bytes), Some(EventKind::Origin as u32));
        assert_eq!(record_kind(&bytes[..3]), None);
        assert!(OriginEvent::from_bytes(&bytes[..RawEvent::SIZE]).is_none());
        assert_eq!(OriginEvent::from_bytes(&bytes).unwrap().kind, 4);
    }

    #[test]
    fn wait_status_prefers_group_exit_code() {
        assert_eq!(wait_status(0x100, 9, SIGNAL_GROUP_EXIT), 9);
        assert_eq!(wait_status(0x100, 9, 0), 0x100);
    }

    #[test]
    fn short_buffers_are_rejected() {
        assert!(RawEvent::from_bytes(&[0u8; 8]).is_none());
        let ev = RawEvent::from_bytes(&[0u8; RawEvent::SIZE]).unwrap();
        assert_eq!(ev.kind, 0);
    }
}
