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
//! otherwise allow beyond that: ptrace itself, process_vm_readv/writev, taking another
//! process's file descriptors, and every open for writing (so neither `/proc/PID/mem`
//! read-write nor a file through `/proc/PID/root` can be written). What remains: as uid 0
//! with CAP_SYS_PTRACE the daemon can still *read* what /proc shows of any process,
//! `/proc/PID/environ` and `/proc/PID/mem` included (the README says so).
//!
//! Not Landlock: a Landlock domain also scopes ptrace access, PTRACE_MODE_READ included, to
//! processes in the same or a nested domain. Every /proc read that needs that check (the
//! exit code in `stat`, `exe`, the `ns/*` links) would then fail for every other process:
//! measured here, a daemon under a read-only Landlock ruleset no longer told a host kubelet
//! from an application. The seccomp filter is what keeps it from writing.
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
    /// Whether ptrace and friends, and every write-open, are denied by seccomp.
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

/// `fchmodat2` (Linux 6.6): numbers from 424 on are the same on every architecture, and
/// the libc crate names it on x86_64 only.
const SYS_FCHMODAT2: libc::c_long = 452;

/// Syscalls the daemon never makes after the load, denied with EPERM: those that read or
/// write another process's memory or steal its file descriptors (the part of
/// CAP_SYS_PTRACE it must never use), and those that change a file system by path (as uid
/// 0 they would reach every file of the node and, through `/proc/PID/root`, of every
/// container).
const DENIED_SYSCALLS: &[libc::c_long] = &[
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_pidfd_getfd,
    libc::SYS_mkdirat,
    libc::SYS_mknodat,
    libc::SYS_unlinkat,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_linkat,
    libc::SYS_symlinkat,
    libc::SYS_fchmodat,
    SYS_FCHMODAT2,
    libc::SYS_fchownat,
    libc::SYS_utimensat,
    libc::SYS_truncate,
    libc::SYS_setxattr,
    libc::SYS_lsetxattr,
    libc::SYS_removexattr,
    libc::SYS_lremovexattr,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_creat,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_mkdir,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_mknod,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_rmdir,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_unlink,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_rename,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_link,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_symlink,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_chmod,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_chown,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_lchown,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_utimes,
];

/// Open flags that write or create: any of them denies an open after the load. The daemon
/// only reads files from then on; as uid 0 with CAP_SYS_PTRACE a write-open could reach
/// `/proc/PID/mem`, `/proc/PID/environ`'s neighbours and every file through `/proc/PID/root`.
const WRITE_OPEN_FLAGS: u32 =
    (libc::O_WRONLY | libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC) as u32;

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xc000_00b7;

/// A classic-BPF instruction with a symbolic jump target, resolved by [`assemble`].
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[derive(Clone, Copy)]
enum Insn {
    /// A = the 32-bit word at this offset of `struct seccomp_data`.
    Load(u32),
    /// if A == k goto label
    Eq(u32, Label),
    /// if A >= k goto label
    Ge(u32, Label),
    /// if A & k goto label
    Any(u32, Label),
    Ret(u32),
    At(Label),
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[derive(Clone, Copy, PartialEq, Eq)]
enum Label {
    Native,
    Deny,
    NoSys,
    #[cfg(target_arch = "x86_64")]
    OpenFlags,
    OpenatFlags,
}

/// Resolves labels into the relative jumps classic BPF takes (all forward, under 256).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn assemble(code: &[Insn]) -> Vec<libc::sock_filter> {
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
    const JSET_K: u16 = 0x45; // BPF_JMP | BPF_JSET | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    let mut at = Vec::new();
    let mut n = 0usize;
    for i in code {
        match i {
            Insn::At(l) => at.push((*l, n)),
            _ => n += 1,
        }
    }
    let target = |l: Label, pc: usize| -> u8 {
        let to = at.iter().find(|(x, _)| *x == l).expect("label placed").1;
        u8::try_from(to - pc - 1).expect("a short forward jump")
    };
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let mut prog = Vec::new();
    for i in code {
        let pc = prog.len();
        prog.push(match *i {
            Insn::Load(off) => op(LD_W_ABS, 0, 0, off),
            Insn::Eq(k, l) => op(JEQ_K, target(l, pc), 0, k),
            Insn::Ge(k, l) => op(JGE_K, target(l, pc), 0, k),
            Insn::Any(k, l) => op(JSET_K, target(l, pc), 0, k),
            Insn::Ret(k) => op(RET_K, 0, 0, k),
            Insn::At(_) => continue,
        });
    }
    prog
}

/// Installs a seccomp filter on every thread that fails with EPERM: [`DENIED_SYSCALLS`],
/// every `open`/`openat` with a flag of [`WRITE_OPEN_FLAGS`], and every syscall of a
/// foreign ABI (i386 or x32 on x86_64, whose numbers differ); `openat2`, whose flags sit
/// behind a pointer the filter cannot read, fails with ENOSYS, so libc falls back to
/// `openat`. Needs `no_new_privs`. Returns false on an architecture this filter does not
/// know.
///
/// Written by hand because `seccompiler` (0.5) cannot say this: its filter answers a foreign
/// architecture with a fixed SECCOMP_RET_KILL_PROCESS (not EPERM), and it matches syscall
/// numbers only exactly, so it cannot deny the whole x32 range (numbers with bit 30 set).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub fn deny_process_access() -> std::io::Result<bool> {
    const ALLOW: u32 = 0x7fff_0000;
    const ERRNO: u32 = 0x0005_0000;
    // x86_64's x32 ABI: the same arch value, numbers with this bit set.
    const X32_BIT: u32 = 0x4000_0000;
    // struct seccomp_data { int nr; __u32 arch; __u64 ip; __u64 args[6]; }; open flags are
    // an int: the low word of the argument on these little-endian machines.
    const NR: u32 = 0;
    const ARCH: u32 = 4;
    const fn arg(i: u32) -> u32 {
        16 + 8 * i
    }
    let mut code = vec![
        Insn::Load(ARCH),
        Insn::Eq(AUDIT_ARCH, Label::Native),
        Insn::Ret(ERRNO | libc::EPERM as u32),
        Insn::At(Label::Native),
        Insn::Load(NR),
        Insn::Ge(X32_BIT, Label::Deny),
    ];
    code.extend(
        DENIED_SYSCALLS
            .iter()
            .map(|nr| Insn::Eq(*nr as u32, Label::Deny)),
    );
    code.push(Insn::Eq(libc::SYS_openat2 as u32, Label::NoSys));
    code.push(Insn::Eq(libc::SYS_openat as u32, Label::OpenatFlags));
    #[cfg(target_arch = "x86_64")]
    code.push(Insn::Eq(libc::SYS_open as u32, Label::OpenFlags));
    code.push(Insn::Ret(ALLOW));
    #[cfg(target_arch = "x86_64")]
    code.extend([
        Insn::At(Label::OpenFlags),
        Insn::Load(arg(1)),
        Insn::Any(WRITE_OPEN_FLAGS, Label::Deny),
        Insn::Ret(ALLOW),
    ]);
    code.extend([
        Insn::At(Label::OpenatFlags),
        Insn::Load(arg(2)),
        Insn::Any(WRITE_OPEN_FLAGS, Label::Deny),
        Insn::Ret(ALLOW),
        Insn::At(Label::NoSys),
        Insn::Ret(ERRNO | libc::ENOSYS as u32),
        Insn::At(Label::Deny),
        Insn::Ret(ERRNO | libc::EPERM as u32),
    ]);
    let mut prog = assemble(&code);
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

    /// After the load the daemon writes no file: every write-open fails, whatever the path
    /// (`/proc/PID/mem`, a file through `/proc/PID/root`, a new file), `openat2`, whose
    /// flags the filter cannot see, is ENOSYS, and nothing is made, removed, renamed,
    /// linked or chmod'ed by path; reading, the ptrace reads included, still works.
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    #[test]
    fn after_the_drop_no_file_can_be_opened_for_writing() {
        let scratch = std::env::temp_dir().join(format!("zd-priv-{}", std::process::id()));
        std::fs::create_dir_all(&scratch).unwrap();
        let existing = scratch.join("existing");
        std::fs::write(&existing, b"x").unwrap();
        let parent = std::process::id();
        SCRATCH.with(|s| *s.borrow_mut() = Some((scratch.clone(), parent)));
        in_child(|| {
            let Some((scratch, parent)) = SCRATCH.with(|s| s.borrow().clone()) else {
                return false;
            };
            let mut keep = CapsHashSet::new();
            keep.insert(Capability::CAP_SYS_PTRACE);
            let Ok(d) = drop_all_but(&keep) else {
                return false;
            };
            // Still reads what it is for: another process's exe and namespace links.
            let ptrace_reads = std::fs::read_link(format!("/proc/{parent}/exe")).is_ok()
                && std::fs::read_link(format!("/proc/{parent}/ns/mnt")).is_ok();
            let denied = |r: std::io::Result<std::fs::File>| {
                r.is_err_and(|e| e.raw_os_error() == Some(libc::EPERM))
            };
            let opts = |write: bool, create: bool, truncate: bool| {
                let mut o = std::fs::OpenOptions::new();
                o.read(true).write(write).create(create).truncate(truncate);
                o
            };
            let existing = scratch.join("existing");
            let writes = [
                denied(opts(true, false, false).open(&existing)),
                denied(opts(true, true, true).open(scratch.join("new"))),
                denied(std::fs::File::create(scratch.join("new2"))),
                denied(opts(true, false, false).open("/proc/self/mem")),
                denied(opts(true, false, false).open(format!("/proc/{parent}/mem"))),
                denied(
                    opts(true, false, false)
                        .open(format!("/proc/{parent}/root{}", existing.display())),
                ),
            ];
            // Through the raw syscalls too (glibc's open is openat).
            let path = std::ffi::CString::new(existing.to_str().unwrap()).unwrap();
            let errno = |rc: libc::c_long| {
                (rc == -1)
                    .then(|| std::io::Error::last_os_error().raw_os_error())
                    .flatten()
            };
            #[cfg(target_arch = "x86_64")]
            // SAFETY: a valid NUL-terminated path; a denied call opens nothing.
            let open = errno(unsafe { libc::syscall(libc::SYS_open, path.as_ptr(), libc::O_RDWR) });
            #[cfg(not(target_arch = "x86_64"))]
            let open = Some(libc::EPERM);
            // struct open_how { u64 flags; u64 mode; u64 resolve; }
            let how = [libc::O_RDONLY as u64, 0, 0];
            // SAFETY: a valid path and open_how of the size passed.
            let openat2 = errno(unsafe {
                libc::syscall(
                    libc::SYS_openat2,
                    libc::AT_FDCWD,
                    path.as_ptr(),
                    how.as_ptr(),
                    std::mem::size_of_val(&how),
                )
            });
            // Nor changed by path: made, removed, renamed, linked, chmod'ed.
            let eperm =
                |r: std::io::Result<()>| r.is_err_and(|e| e.raw_os_error() == Some(libc::EPERM));
            let through_root = format!("/proc/{parent}/root{}", scratch.display());
            let by_path = [
                eperm(std::fs::create_dir(scratch.join("dir"))),
                eperm(std::fs::remove_file(&existing)),
                eperm(std::fs::rename(&existing, scratch.join("moved"))),
                eperm(std::fs::hard_link(&existing, scratch.join("hard"))),
                eperm(std::os::unix::fs::symlink(&existing, scratch.join("soft"))),
                eperm(std::fs::set_permissions(
                    &existing,
                    std::os::unix::fs::PermissionsExt::from_mode(0o777),
                )),
                eperm(std::fs::remove_file(format!("{through_root}/existing"))),
            ];
            let unchanged = std::fs::read(&existing).is_ok_and(|b| b == b"x");
            let reads = std::fs::read_to_string("/proc/self/stat").is_ok()
                && std::fs::read_to_string(format!("/proc/{parent}/stat")).is_ok();
            d.seccomp
                && writes.iter().all(|w| *w)
                && by_path.iter().all(|w| *w)
                && open == Some(libc::EPERM)
                && openat2 == Some(libc::ENOSYS)
                && unchanged
                && reads
                && ptrace_reads
        });
        let _ = std::fs::remove_dir_all(&scratch);
    }

    thread_local! {
        /// What the forked child of the test above needs (it may not allocate much before
        /// the drop, and a closure passed as `fn` cannot capture).
        static SCRATCH: std::cell::RefCell<Option<(std::path::PathBuf, u32)>> =
            const { std::cell::RefCell::new(None) };
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
