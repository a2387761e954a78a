//! Dropping what the daemon no longer needs once its eBPF programs are loaded.
//!
//! Loading and attaching needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN), and on kernels
//! before 5.11 CAP_SYS_RESOURCE for RLIMIT_MEMLOCK; after that the daemon only reads the
//! ring buffer and the counters from memory it mapped at load (no bpf() call, which kernels
//! before 5.19 refuse without CAP_BPF while `kernel.unprivileged_bpf_disabled` is set),
//! reads world-readable /proc and cgroup files, and talks to the runtime socket as uid 0.
//! Only signalling other users' processes (`--remediate=on`) needs a capability: CAP_KILL.
//!
//! So after the load, every capability but the kept ones leaves the effective, permitted
//! and inheritable sets and the ambient set is cleared; with CAP_SETPCAP (a root shell, not
//! the DaemonSet, whose runtime already bounds the set) the bounding set is cut down too.
//! `no_new_privs` then makes sure no execve can hand anything back. CAP_SYS_PTRACE stays for
//! reading /proc (see [`needed_after_load`]), and a seccomp filter takes away what it would
//! otherwise allow beyond that: ptrace itself, reading or writing another process's memory,
//! taking its file descriptors.
//!
//! Capabilities belong to threads. The drop runs on the only thread the process has at that
//! point (the tokio runtime is current-thread and its blocking pool starts lazily); should
//! another thread exist, that is reported, because it would keep its capabilities.

use std::{collections::BTreeSet, fs};

use caps::{CapSet, Capability, CapsHashSet};

#[derive(Debug, thiserror::Error)]
pub enum DropError {
    #[error("cannot drop capabilities: {0}")]
    Caps(#[from] caps::errors::CapsError),
    #[error("cannot set no_new_privs: {0}")]
    NoNewPrivs(std::io::Error),
    #[error("cannot install the seccomp filter that denies ptrace: {0}")]
    Seccomp(std::io::Error),
    #[error(
        "capabilities dropped on this thread only: {0} threads were running (they keep theirs)"
    )]
    Threads(usize),
}

/// What the process holds after [`drop_all_but`], as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dropped {
    pub effective: BTreeSet<String>,
    /// Whether the bounding set was cut down too (needs CAP_SETPCAP).
    pub bounding_dropped: bool,
    /// Whether ptrace and friends are denied by seccomp.
    pub seccomp: bool,
}

/// The capabilities the running daemon keeps; `signals`: it may signal processes
/// (remediation on).
///
/// CAP_SYS_PTRACE stays because /proc hides part of a process from a reader that may not
/// ptrace it (PTRACE_MODE_READ): the exit code in `stat`, the `ns/pid` link, `exe`. A root
/// reader without capabilities fails that check for every process whose permitted set is
/// not a subset of its own, i.e. for any root process in a container. The daemon never
/// calls ptrace; a seccomp filter makes sure of it (see [`deny_process_access`]).
pub fn needed_after_load(signals: bool) -> CapsHashSet {
    let mut keep = CapsHashSet::new();
    keep.insert(Capability::CAP_SYS_PTRACE);
    if signals {
        keep.insert(Capability::CAP_KILL);
    }
    keep
}

/// Drops every capability not in `keep` (and never adds one the process lacks).
pub fn drop_all_but(keep: &CapsHashSet) -> Result<Dropped, DropError> {
    let threads = thread_count();
    let permitted = caps::read(None, CapSet::Permitted)?;
    let kept: CapsHashSet = permitted.intersection(keep).copied().collect();

    let bounding_dropped = caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP)?;
    if bounding_dropped {
        // Every capability the crate and the kernel both know; one the crate does not know
        // yet would stay (the e2e suite compares CapBnd with the kept set).
        for cap in caps::read(None, CapSet::Bounding)? {
            if !keep.contains(&cap) {
                caps::drop(None, CapSet::Bounding, cap)?;
            }
        }
    }
    caps::clear(None, CapSet::Ambient)?;
    caps::clear(None, CapSet::Inheritable)?;
    // Effective before permitted: the effective set must stay a subset of the permitted one.
    caps::set(None, CapSet::Effective, &kept)?;
    caps::set(None, CapSet::Permitted, &kept)?;
    rustix::thread::set_no_new_privs(true).map_err(|e| DropError::NoNewPrivs(e.into()))?;
    let seccomp = deny_process_access().map_err(DropError::Seccomp)?;
    if threads > 1 {
        return Err(DropError::Threads(threads));
    }
    Ok(Dropped {
        effective: caps::read(None, CapSet::Effective)?
            .iter()
            .map(|c| c.to_string())
            .collect(),
        bounding_dropped,
        seccomp,
    })
}

/// Syscalls that read or write another process's memory or steal its file descriptors:
/// the part of CAP_SYS_PTRACE the daemon must never use.
const DENIED_SYSCALLS: &[libc::c_long] = &[
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_pidfd_getfd,
];

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xc000_00b7;

/// Installs a seccomp filter on every thread that fails [`DENIED_SYSCALLS`] with EPERM, and
/// every syscall of a foreign ABI (i386 or x32 on x86_64, whose numbers differ). Needs
/// `no_new_privs`. Returns false on an architecture this filter does not know.
///
/// Written by hand because `seccompiler` (0.5) cannot say this: its filter answers a foreign
/// architecture with a fixed SECCOMP_RET_KILL_PROCESS (not EPERM), and it matches syscall
/// numbers only exactly, so it cannot deny the whole x32 range (numbers with bit 30 set).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub fn deny_process_access() -> std::io::Result<bool> {
    // Classic BPF over struct seccomp_data { int nr; __u32 arch; ... }.
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const ALLOW: u32 = 0x7fff_0000;
    const EPERM: u32 = 0x0005_0000 | libc::EPERM as u32;
    // x86_64's x32 ABI: the same arch value, numbers with this bit set.
    const X32_BIT: u32 = 0x4000_0000;
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let n = DENIED_SYSCALLS.len() as u8;
    let mut prog = vec![
        op(LD_W_ABS, 0, 0, 4),
        // A foreign ABI: to the final EPERM.
        op(JEQ_K, 0, n + 3, AUDIT_ARCH),
        op(LD_W_ABS, 0, 0, 0),
        op(JGE_K, n + 1, 0, X32_BIT),
    ];
    for (i, nr) in DENIED_SYSCALLS.iter().enumerate() {
        prog.push(op(JEQ_K, n - i as u8, 0, *nr as u32));
    }
    prog.push(op(RET_K, 0, 0, ALLOW));
    prog.push(op(RET_K, 0, 0, EPERM));
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: a valid filter program that outlives the call; the kernel copies it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            1, // SECCOMP_SET_MODE_FILTER
            1, // SECCOMP_FILTER_FLAG_TSYNC: every thread of the process
            &fprog as *const libc::sock_fprog,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(true)
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub fn deny_process_access() -> std::io::Result<bool> {
    Ok(false)
}

fn thread_count() -> usize {
    fs::read_dir("/proc/self/task").map_or(1, |d| d.count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_signalling_adds_a_capability_to_reading_proc() {
        let sorted = |signals| {
            let mut v: Vec<_> = needed_after_load(signals).into_iter().collect();
            v.sort_by_key(|c| c.index());
            v
        };
        assert_eq!(sorted(false), [Capability::CAP_SYS_PTRACE]);
        assert_eq!(
            sorted(true),
            [Capability::CAP_KILL, Capability::CAP_SYS_PTRACE]
        );
    }

    /// In a child process, so the test runner keeps its capabilities. The child has one
    /// thread, as the daemon has at the drop. Exit code 0: all held.
    fn in_child(check: fn() -> bool) {
        // SAFETY: the child allocates (glibc makes malloc usable after fork), touches no
        // lock the runner's other threads could hold, and leaves with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let code = i32::from(!check());
            // SAFETY: leaves the child without running the parent's atexit handlers.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for the child forked above.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status));
        assert_eq!(libc::WEXITSTATUS(status), 0);
    }

    #[test]
    fn a_child_keeps_only_what_it_asked_for() {
        in_child(|| {
            let mut keep = CapsHashSet::new();
            keep.insert(Capability::CAP_KILL);
            let had_kill =
                caps::has_cap(None, CapSet::Permitted, Capability::CAP_KILL).unwrap_or(false);
            let Ok(d) = drop_all_but(&keep) else {
                return false;
            };
            let eff = caps::read(None, CapSet::Effective).unwrap_or_default();
            let prm = caps::read(None, CapSet::Permitted).unwrap_or_default();
            eff.iter().all(|c| *c == Capability::CAP_KILL)
                && prm == eff
                && d.effective.len() == eff.len()
                && had_kill != eff.is_empty()
                && caps::read(None, CapSet::Inheritable).is_ok_and(|s| s.is_empty())
                && caps::read(None, CapSet::Ambient).is_ok_and(|s| s.is_empty())
        });
    }

    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    #[test]
    fn after_the_drop_ptrace_and_process_memory_access_fail_with_eperm() {
        in_child(|| {
            let mut keep = CapsHashSet::new();
            keep.insert(Capability::CAP_SYS_PTRACE);
            if !drop_all_but(&keep).is_ok_and(|d| d.seccomp) {
                return false;
            }
            let eperm = |rc: libc::c_long| {
                rc == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
            };
            // Reading our own memory works without any privilege, unless denied.
            let mut buf = [0u8; 8];
            let src = [1u8; 8];
            let local = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: 8,
            };
            let remote = libc::iovec {
                iov_base: src.as_ptr() as *mut libc::c_void,
                iov_len: 8,
            };
            // SAFETY: valid iovecs over our own buffers.
            let read = unsafe {
                libc::syscall(
                    libc::SYS_process_vm_readv,
                    libc::getpid(),
                    &local as *const libc::iovec,
                    1,
                    &remote as *const libc::iovec,
                    1,
                    0,
                )
            };
            // SAFETY: PTRACE_TRACEME takes no pointers.
            let traceme = unsafe { libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) };
            // Everything else still works.
            // SAFETY: getppid has no preconditions.
            let ppid = unsafe { libc::getppid() };
            eperm(read) && eperm(traceme) && ppid > 0 && buf == [0; 8]
        });
    }

    /// x32 numbers carry bit 30; without the filter the kernel answers ENOSYS (no x32
    /// support) or runs the call, with it every one fails with EPERM.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn after_the_drop_x32_syscalls_fail_with_eperm() {
        in_child(|| {
            if !drop_all_but(&CapsHashSet::new()).is_ok_and(|d| d.seccomp) {
                return false;
            }
            // SAFETY: getpid under its x32 number takes no arguments.
            let rc = unsafe { libc::syscall(0x4000_0000 | libc::SYS_getpid) };
            rc == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
        });
    }
}
