//! Dropping what the daemon no longer needs once its eBPF programs are loaded.
//!
//! Loading and attaching needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN); after that the
//! daemon only reads the ring buffer and maps through file descriptors it already holds,
//! reads world-readable /proc and cgroup files, and talks to the runtime socket as uid 0.
//! Only signalling other users' processes (`--remediate=on`) needs a capability: CAP_KILL.
//!
//! So after the load, every capability but the kept ones leaves the effective, permitted
//! and inheritable sets and the ambient set is cleared; with CAP_SETPCAP (a root shell, not
//! the DaemonSet, whose runtime already bounds the set) the bounding set is cut down too.
//! `no_new_privs` then makes sure no execve can hand anything back.
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
}

/// The capabilities the running daemon keeps for a remediation mode.
pub fn needed_after_load(remediate: crate::remediate::Mode) -> CapsHashSet {
    let mut keep = CapsHashSet::new();
    if remediate == crate::remediate::Mode::On {
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
        for index in 0..=last_cap() {
            if keep.iter().any(|c| c.index() == index) {
                continue;
            }
            // SAFETY: prctl with integer arguments only. An index the kernel does not know
            // fails with EINVAL, which is what "already gone" means here.
            unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(index), 0, 0, 0) };
        }
    }
    caps::clear(None, CapSet::Ambient)?;
    caps::clear(None, CapSet::Inheritable)?;
    // Effective before permitted: the effective set must stay a subset of the permitted one.
    caps::set(None, CapSet::Effective, &kept)?;
    caps::set(None, CapSet::Permitted, &kept)?;
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(DropError::NoNewPrivs(std::io::Error::last_os_error()));
    }
    if threads > 1 {
        return Err(DropError::Threads(threads));
    }
    Ok(Dropped {
        effective: caps::read(None, CapSet::Effective)?
            .iter()
            .map(|c| c.to_string())
            .collect(),
        bounding_dropped,
    })
}

/// The highest capability number this kernel knows (CAP_CHECKPOINT_RESTORE is 40 in 6.x).
fn last_cap() -> u8 {
    fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(63)
}

fn thread_count() -> usize {
    fs::read_dir("/proc/self/task").map_or(1, |d| d.count())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remediate::Mode;

    #[test]
    fn only_remediation_keeps_a_capability() {
        assert!(needed_after_load(Mode::Off).is_empty());
        assert!(needed_after_load(Mode::DryRun).is_empty());
        assert_eq!(
            needed_after_load(Mode::On).into_iter().collect::<Vec<_>>(),
            [Capability::CAP_KILL]
        );
    }

    #[test]
    fn a_forked_child_keeps_only_what_it_asked_for() {
        // In a child process, so the test runner keeps its capabilities. The child has one
        // thread, as the daemon has at the drop.
        // SAFETY: the child allocates (glibc makes malloc usable after fork), touches no
        // lock the runner's other threads could hold, and leaves with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let mut keep = CapsHashSet::new();
            keep.insert(Capability::CAP_KILL);
            let code = match drop_all_but(&keep) {
                Ok(d) => {
                    let had_kill = caps::has_cap(None, CapSet::Permitted, Capability::CAP_KILL)
                        .unwrap_or(false);
                    let eff = caps::read(None, CapSet::Effective).unwrap_or_default();
                    let prm = caps::read(None, CapSet::Permitted).unwrap_or_default();
                    let ok = eff.iter().all(|c| *c == Capability::CAP_KILL)
                        && prm == eff
                        && d.effective.len() == eff.len()
                        && (had_kill || eff.is_empty())
                        && caps::read(None, CapSet::Inheritable).is_ok_and(|s| s.is_empty());
                    if ok { 0 } else { 1 }
                }
                Err(_) => 2,
            };
            // SAFETY: leaves the child without running the parent's atexit handlers.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for the child forked above.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status));
        assert_eq!(libc::WEXITSTATUS(status), 0);
    }
}
