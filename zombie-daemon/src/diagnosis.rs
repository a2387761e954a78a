//! Diagnosis at the edge: the facts about a zombie's reaper read from /proc (the
//! `diagnoser` judges a build's zombies with them). The judgement itself is pure and lives
//! in `zombie_core::diagnosis`, re-exported here.

use std::path::Path;

pub use zombie_core::diagnosis::*;

/// The node's mount namespace when `--node-mount-namespace` names it ("mnt:[inode]").
static NODE_MOUNT_NAMESPACE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Sets the node's mount namespace for every later [`in_host_mount_namespace`]; the first
/// call wins.
pub fn set_node_mount_namespace(id: String) {
    let _ = NODE_MOUNT_NAMESPACE.set(id);
}

/// Whether `pid` lives in the node's mount namespace: by default the initial one, that of
/// the kernel's threads, read through kthreadd (`<proc>/2`, always PID 2 of the host PID
/// namespace); the one `--node-mount-namespace` names where the node runs in a container.
/// The host's init, kubelet and the runtime live there; a container never does. None when
/// a link is unreadable.
pub fn in_host_mount_namespace(proc_root: &Path, pid: u32) -> Option<bool> {
    let ns = |p: &str| {
        std::fs::read_link(proc_root.join(p).join("ns/mnt"))
            .ok()
            .map(|l| l.to_string_lossy().into_owned())
    };
    let node = match NODE_MOUNT_NAMESPACE.get() {
        Some(id) => id.clone(),
        None => ns("2")?,
    };
    Some(ns(&pid.to_string())? == node)
}

/// Reads a process's facts from /proc; `None` if it is gone.
pub fn read_reaper_facts(proc_root: &Path, pid: u32) -> Option<ReaperFacts> {
    let dir = proc_root.join(pid.to_string());
    let p = ::procfs::process::Process::new_with_root(dir.clone()).ok()?;
    let status = crate::proc_scan::read_status(&dir)?;
    let cmdline = p.cmdline().unwrap_or_default();
    let mut facts = reaper_facts_from_status(pid, status, cmdline);
    facts.exe = std::fs::read_link(dir.join("exe"))
        .ok()
        .and_then(|e| e.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let in_pod = crate::cgroups::path_of_pid(proc_root, pid, crate::cgroups::Prefer::V1)
        .is_none_or(|path| {
            crate::attribution::cgroup_path::parse(&path).owner != crate::attribution::Owner::Host
        });
    facts.host = !in_pod && in_host_mount_namespace(proc_root, pid) == Some(true);
    Some(facts)
}

/// The facts in a parsed /proc/<pid>/status and the process's command line.
pub fn reaper_facts_from_status(
    pid: u32,
    status: ::procfs::process::Status,
    cmdline: Vec<String>,
) -> ReaperFacts {
    let masks =
        |sig: i32| Disposition::from_masks(sig as u32, status.sigign, status.sigcgt, status.sigblk);
    let (sigchld, sigterm) = (masks(libc::SIGCHLD), masks(libc::SIGTERM));
    ReaperFacts {
        pid,
        comm: status.name,
        cmdline,
        state: status
            .state
            .chars()
            .next()
            .map(String::from)
            .unwrap_or_default(),
        ns_pid: status
            .nspid
            .and_then(|v| v.last().copied())
            .map(|p| p as u32),
        sigchld,
        sigterm,
        exe: String::new(),
        host: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process in kthreadd's mount namespace is in the node's; one in a new mount namespace
    /// is not. Both are placed by the test (`nsenter` into kthreadd's, `unshare` a new one),
    /// so it holds wherever the suite runs (a machine, a chroot, a mount namespace of its own).
    #[test]
    fn the_initial_mount_namespace_is_told_by_kthreadd() {
        let proc_root = Path::new("/proc");
        let in_ns = |args: &[&str]| {
            let mut child = std::process::Command::new(args[0])
                .args(&args[1..])
                .spawn()
                .unwrap_or_else(|e| panic!("{} (util-linux) runs: {e}", args[0]));
            let pid = child.id();
            // Both exec sleep once they are in the namespace: wait for the exec.
            let sleeping = (0..500).any(|_| {
                std::thread::sleep(std::time::Duration::from_millis(5));
                std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c == "sleep\n")
            });
            let inside = in_host_mount_namespace(proc_root, pid);
            let _ = child.kill();
            let _ = child.wait();
            assert!(sleeping, "{args:?} never exec'd sleep");
            inside
        };
        assert_eq!(
            in_ns(&["nsenter", "--mount=/proc/2/ns/mnt", "--", "sleep", "5"]),
            Some(true)
        );
        assert_eq!(in_ns(&["unshare", "--mount", "sleep", "5"]), Some(false));
        assert_eq!(in_host_mount_namespace(proc_root, u32::MAX - 1), None);
    }

    #[test]
    fn reads_our_own_facts() {
        let me = read_reaper_facts(Path::new("/proc"), std::process::id()).unwrap();
        assert_eq!(me.pid, std::process::id());
        assert!(!me.comm.is_empty());
        assert!(read_reaper_facts(Path::new("/proc"), u32::MAX - 1).is_none());
    }
}
