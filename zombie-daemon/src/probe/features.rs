//! What this kernel does, found by trying it rather than by comparing version numbers.
//!
//! Each probe runs in a forked child (rlimits and capabilities are per process or per
//! thread, and the caller keeps its own), which only makes raw syscalls and `_exit`s with
//! what it saw.

/// What a probe saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    Yes,
    No,
    /// The probe itself failed (e.g. no privilege to create a map): cannot tell.
    Unknown,
}

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_TYPE_ARRAY: u32 = 2;

/// A one-slot array map; the fd, or the errno.
fn create_array() -> Result<i32, i32> {
    // union bpf_attr for BPF_MAP_CREATE: map_type, key_size, value_size, max_entries, ...
    let mut attr = [0u32; 16];
    attr[..4].copy_from_slice(&[BPF_MAP_TYPE_ARRAY, 4, 8, 1]);
    // SAFETY: bpf() reads a valid, zero-padded attr buffer of the given size.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_CREATE,
            attr.as_mut_ptr(),
            std::mem::size_of_val(&attr),
        )
    };
    if fd >= 0 {
        Ok(fd as i32)
    } else {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }
}

/// Runs `probe` in a forked child: its exit code 0 is Yes, 1 No, anything else Unknown.
fn in_child(probe: fn() -> i32) -> Seen {
    // SAFETY: the child makes raw syscalls only (no allocation, no locks) and `_exit`s.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Seen::Unknown;
    }
    if pid == 0 {
        let code = probe();
        // SAFETY: leaves the child without running the parent's atexit handlers.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for the child forked above.
    if unsafe { libc::waitpid(pid, &mut status, 0) } != pid || !libc::WIFEXITED(status) {
        return Seen::Unknown;
    }
    match libc::WEXITSTATUS(status) {
        0 => Seen::Yes,
        1 => Seen::No,
        _ => Seen::Unknown,
    }
}

/// Whether BPF maps are charged to RLIMIT_MEMLOCK (kernels before 5.11; later ones charge
/// the memory cgroup): with the limit at 0, creating a one-slot map fails with EPERM.
pub fn maps_charge_memlock() -> Seen {
    in_child(|| {
        let zero = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: setrlimit with a valid struct; lowering needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &zero) } != 0 {
            return 2;
        }
        match create_array() {
            Ok(_) => 1,
            Err(libc::EPERM) => 0,
            Err(_) => 2,
        }
    })
}

/// Whether the kernel refuses bpf() commands on a map the caller already holds once the
/// caller has no CAP_BPF or CAP_SYS_ADMIN (before 5.19, every command is refused while
/// `kernel.unprivileged_bpf_disabled` is set; later only map and program creation are).
/// The daemon makes no bpf() call after its capability drop, so either answer works; this
/// says which case the node is.
pub fn bpf_refused_without_capabilities() -> Seen {
    in_child(|| {
        let Ok(fd) = create_array() else { return 2 };
        if caps::clear(None, caps::CapSet::Effective).is_err() {
            return 2;
        }
        let key = 0u32;
        let mut value = 0u64;
        // union bpf_attr for BPF_MAP_LOOKUP_ELEM: map_fd (u32, padded), key, value, flags.
        let mut attr = [0u64; 4];
        attr[0] = fd as u64;
        attr[1] = &key as *const u32 as u64;
        attr[2] = &mut value as *mut u64 as u64;
        // SAFETY: a valid attr whose pointers outlive the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_ELEM,
                attr.as_mut_ptr(),
                std::mem::size_of_val(&attr),
            )
        };
        if rc == 0 {
            1
        } else if std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM) {
            0
        } else {
            2
        }
    })
}

/// Raises RLIMIT_MEMLOCK as far as this process may (to unlimited with CAP_SYS_RESOURCE,
/// else to its hard limit): kernels before 5.11 charge BPF maps to it, and the default
/// 4 MiB ring buffer alone is more than their 64 KiB default. Returns the soft limit now.
pub fn raise_memlock() -> u64 {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    let mut now = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit/getrlimit with valid structs.
    unsafe {
        if libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) != 0
            && libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut now) == 0
        {
            now.rlim_cur = now.rlim_max;
            libc::setrlimit(libc::RLIMIT_MEMLOCK, &now);
        }
        libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut now);
    }
    now.rlim_cur
}
