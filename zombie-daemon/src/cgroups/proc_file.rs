//! Which line of `/proc/<pid>/cgroup` names a process's cgroup.
//!
//! The file has one `hierarchy-id:controllers:path` line per hierarchy: `0::<path>` for
//! cgroup2 and one line per v1 hierarchy. procfs parses it; which line to believe depends
//! on the node ([`super::CgroupMode::prefer`]) and is decided here, for every caller.

use std::{path::Path, sync::OnceLock};

use ::procfs::{FromBufRead, FromRead, ProcessCGroup, ProcessCGroups};

/// Which hierarchy's line names a process's cgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prefer {
    /// The cgroup2 (`0::`) line; but where it says `/` and a v1 line names a cgroup, that
    /// v1 line (on a hybrid node a runtime may place a container in the v1 hierarchies
    /// only). A v1 line when there is no cgroup2 line.
    V2,
    /// The v1 `pids` line, else the first `memory` or `name=systemd` line; the cgroup2
    /// line only when there is none of them.
    V1,
}

/// The path `prefer` chooses from the text of a `/proc/<pid>/cgroup`, without the kernel's
/// " (deleted)" suffix. `None` when no line names a cgroup, or when the text is not in the
/// kernel's format (procfs rejects the whole file then).
pub fn pick(text: &str, prefer: Prefer) -> Option<String> {
    let lines = ProcessCGroups::from_buf_read(text.as_bytes()).ok()?;
    choose(&lines.0, prefer).map(str::to_string)
}

/// [`pick`] on `<proc_root>/<pid>/cgroup` (a zombie keeps the file until it is reaped), as
/// the node's cgroup namespace shows it (see [`set_namespace_root`]).
pub fn path_of_pid(proc_root: &Path, pid: u32, prefer: Prefer) -> Option<String> {
    let file = proc_root.join(pid.to_string()).join("cgroup");
    let lines = ProcessCGroups::from_file(file).ok()?;
    node_view(choose(&lines.0, prefer)?)
}

/// `path` read from a /proc/<pid>/cgroup line, as the node's cgroup namespace shows it.
pub fn node_view(path: &str) -> Option<String> {
    match NAMESPACE_ROOT.get() {
        Some(root) => to_node_view(root, path),
        None => Some(path.to_string()),
    }
}

/// Where our cgroup namespace is rooted in the node's hierarchy, when it is not the node's.
static NAMESPACE_ROOT: OnceLock<String> = OnceLock::new();

/// Makes every path read from /proc/<pid>/cgroup relative to `root` (a path in the node's
/// hierarchy): what a daemon in its own cgroup namespace (a pod on cgroup v2, where
/// containerd gives each container one) reads as `/../../pod<uid>/<id>` becomes the node's
/// `/kubepods/<qos>/pod<uid>/<id>` again. Set once, at start.
pub fn set_namespace_root(root: String) {
    let _ = NAMESPACE_ROOT.set(root);
}

/// `path` as a cgroup namespace rooted at `root` shows it, as the node's shows it; None when
/// it climbs above the node's root.
pub fn to_node_view(root: &str, path: &str) -> Option<String> {
    let mut parts: Vec<&str> = root.split('/').filter(|s| !s.is_empty()).collect();
    for segment in path.split('/').filter(|s| !s.is_empty() && *s != ".") {
        if segment == ".." {
            parts.pop()?;
        } else {
            parts.push(segment);
        }
    }
    Some(format!("/{}", parts.join("/")))
}

/// Where this process's cgroup namespace is rooted in the node's cgroup2 hierarchy (mounted
/// at `v2_mount` from the node's namespace, as the DaemonSet's hostPath mount is): None when
/// it is the node's namespace (we are where /proc/self/cgroup says), or when it cannot be
/// told. Found as the directory whose `cgroup.procs` lists us, less the
/// path our namespace shows for us (normally `/`); at most `max_dirs` directories are read.
pub fn detect_namespace_root(proc_root: &Path, v2_mount: &Path, max_dirs: usize) -> Option<String> {
    let me = std::process::id().to_string();
    let text = std::fs::read_to_string(proc_root.join(&me).join("cgroup")).ok()?;
    let seen = pick(&text, Prefer::V2)?;
    let lists_me = |dir: &Path| {
        std::fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .any(|l| l == me)
    };
    // Where our namespace says we are, we are: it is the node's (the common case, one read;
    // pid 1's namespace link, the other way to tell, may be out of reach).
    if lists_me(&v2_mount.join(seen.trim_start_matches('/'))) {
        return None;
    }
    let mut stack = vec![v2_mount.to_path_buf()];
    let mut read = 0;
    while let Some(dir) = stack.pop() {
        read += 1;
        if read > max_dirs {
            return None;
        }
        if lists_me(&dir) {
            let rel = dir
                .strip_prefix(v2_mount)
                .ok()?
                .to_string_lossy()
                .into_owned();
            let here: Vec<&str> = rel.split('/').filter(|s| !s.is_empty()).collect();
            let shown: Vec<&str> = seen.split('/').filter(|s| !s.is_empty()).collect();
            // Our own path as the namespace shows it is the tail of where we are.
            let keep = here.len().checked_sub(shown.len())?;
            if here[keep..] != shown[..] {
                return None;
            }
            return Some(format!("/{}", here[..keep].join("/")));
        }
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
    }
    None
}

fn choose(lines: &[ProcessCGroup], prefer: Prefer) -> Option<&str> {
    let mut v2 = None;
    let mut v1 = None;
    for line in lines {
        let path = line.pathname.as_str();
        let path = path.strip_suffix(" (deleted)").unwrap_or(path);
        let has = |name: &str| line.controllers.iter().any(|c| c == name);
        if line.hierarchy == 0 && line.controllers.is_empty() {
            v2 = Some(path);
        } else if (has("pids") || has("memory") || has("name=systemd"))
            && (v1.is_none() || has("pids"))
        {
            v1 = Some(path);
        }
    }
    match (prefer, v2, v1) {
        (Prefer::V2, Some(p2), Some(p1)) if p2 == "/" && p1 != "/" => Some(p1),
        (Prefer::V2, Some(p2), _) => Some(p2),
        (_, _, Some(p1)) => Some(p1),
        (_, p2, None) => p2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_relative_paths_are_made_the_nodes() {
        let root = "/kubepods/burstable/poddaemon/ctr";
        assert_eq!(
            to_node_view(root, "/../../podabc/123").as_deref(),
            Some("/kubepods/burstable/podabc/123")
        );
        assert_eq!(to_node_view(root, "/").as_deref(), Some(root));
        assert_eq!(
            to_node_view(root, "/sub").as_deref(),
            Some("/kubepods/burstable/poddaemon/ctr/sub")
        );
        assert_eq!(
            to_node_view("/", "/kubepods/x").as_deref(),
            Some("/kubepods/x")
        );
        assert_eq!(to_node_view("/a", "/../../b"), None);
        assert_eq!(
            to_node_view(root, "/../../../../system.slice/x.service").as_deref(),
            Some("/system.slice/x.service")
        );
    }

    #[test]
    fn in_the_nodes_cgroup_namespace_there_is_no_root_to_find() {
        // The unit tests run where /proc/self/cgroup says (no namespace of their own).
        let v2 = crate::cgroups::detect(Path::new("/sys/fs/cgroup")).1;
        if let Some(v2) = v2 {
            assert_eq!(
                detect_namespace_root(Path::new("/proc"), &v2, 100_000),
                None
            );
        }
        assert_eq!(
            detect_namespace_root(Path::new("/nonexistent"), Path::new("/sys/fs/cgroup"), 10),
            None
        );
    }

    const POD: &str = "/kubepods/besteffort/podabc/123";
    const SAME_EVERYWHERE: &str = "12:pids:/kubepods/besteffort/podabc/123\n\
        11:memory:/kubepods/besteffort/podabc/123\n\
        1:name=systemd:/kubepods/besteffort/podabc/123\n\
        0::/kubepods/besteffort/podabc/123\n";

    // DataDog/datadog-agent pid_mapper_test.go, cgroupV1ProcCgroup: the pod is only in the
    // v1 lines; `0::` points at containerd.service.
    const POD_IN_V1_ONLY: &str = "12:rdma:/
11:memory:/kubepods/burstable/pod15513b48-e7a5-48fc-b9e3-92f713f36504/a51a9f7d073f848e7fc59e56e8f11524f330a2175a4ed26327da2dfe0d28015f
7:cpuset:/kubepods/burstable/pod15513b48-e7a5-48fc-b9e3-92f713f36504/a51a9f7d073f848e7fc59e56e8f11524f330a2175a4ed26327da2dfe0d28015f
2:pids:/kubepods/burstable/pod15513b48-e7a5-48fc-b9e3-92f713f36504/a51a9f7d073f848e7fc59e56e8f11524f330a2175a4ed26327da2dfe0d28015f
1:name=systemd:/kubepods/burstable/pod15513b48-e7a5-48fc-b9e3-92f713f36504/a51a9f7d073f848e7fc59e56e8f11524f330a2175a4ed26327da2dfe0d28015f
0::/system.slice/containerd.service
";

    // DataDog pid_mapper_test.go, cgroupV1ProcCgroupWithColons (abridged): controllers
    // disagree on the prefix, `0::` is `/`, and the path itself holds ':'.
    const COLONS: &str = "12:perf_event:/kubepods-burstable-pod5be537b8_3a4e_4607_af71_31598b3a4fd3.slice:cri-containerd:1c8f503430973935b7d8a80c4f58c0946b052a021e6855b358e5ec38601af120
10:pids:/kuberuntime.slice/containerd.service/kubepods-burstable-pod5be537b8_3a4e_4607_af71_31598b3a4fd3.slice:cri-containerd:1c8f503430973935b7d8a80c4f58c0946b052a021e6855b358e5ec38601af120
1:name=systemd:/kuberuntime.slice/containerd.service/kubepods-burstable-pod5be537b8_3a4e_4607_af71_31598b3a4fd3.slice:cri-containerd:1c8f503430973935b7d8a80c4f58c0946b052a021e6855b358e5ec38601af120
0::/
";

    // opencontainers/runc#4620: a v1 host whose name=systemd line points at conmon while
    // the other controllers point at the container.
    const CONMON_V1: &str = "13:freezer:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-poda5c1f8d5_1919_434d_add7_4afaafdaef89.slice/crio-5eed917563583925ffdbd40a64efb2aaffe58638e57add8becaf460fe74f5b1c.scope
11:files:/
6:memory:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-poda5c1f8d5_1919_434d_add7_4afaafdaef89.slice/crio-5eed917563583925ffdbd40a64efb2aaffe58638e57add8becaf460fe74f5b1c.scope
1:name=systemd:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-poda5c1f8d5_1919_434d_add7_4afaafdaef89.slice/crio-conmon-5eed917563583925ffdbd40a64efb2aaffe58638e57add8becaf460fe74f5b1c.scope
";

    #[test]
    fn prefers_the_v2_line() {
        assert_eq!(pick(SAME_EVERYWHERE, Prefer::V2).unwrap(), POD);
        assert_eq!(pick("0::/a/b (deleted)\n", Prefer::V2).unwrap(), "/a/b");
        // What a hybrid node's cgroup2 line says wins, even where only v1 names the pod.
        assert_eq!(
            pick(POD_IN_V1_ONLY, Prefer::V2).unwrap(),
            "/system.slice/containerd.service"
        );
    }

    #[test]
    fn falls_back_to_v1() {
        let text = "5:memory:/m\n3:pids:/p\n0::/\n";
        assert_eq!(pick(text, Prefer::V2).unwrap(), "/p");
        assert_eq!(pick(text, Prefer::V1).unwrap(), "/p");
        assert_eq!(pick("garbage\n:::\n", Prefer::V2), None);
        assert_eq!(pick("", Prefer::V2), None);
        assert_eq!(pick("4:cpu:/c\n", Prefer::V1), None);
        assert_eq!(pick("0::/only\n", Prefer::V1).unwrap(), "/only");
    }

    #[test]
    fn v1_lines_rank_pids_then_the_first_of_memory_and_systemd() {
        let pod = pick(POD_IN_V1_ONLY, Prefer::V1).unwrap();
        assert!(pod.starts_with("/kubepods/burstable/pod15513b48"), "{pod}");
        let pids = pick(COLONS, Prefer::V1).unwrap();
        assert!(pids.starts_with("/kuberuntime.slice/"), "{pids}");
        assert!(pids.ends_with(
            ":cri-containerd:1c8f503430973935b7d8a80c4f58c0946b052a021e6855b358e5ec38601af120"
        ));
        // `0::/` names no cgroup: the v1 line does, also when v2 is preferred.
        assert_eq!(pick(COLONS, Prefer::V2).unwrap(), pids);
        // memory comes first, so the container rather than its conmon.
        let ctr = pick(CONMON_V1, Prefer::V1).unwrap();
        assert!(ctr.ends_with(
            "/crio-5eed917563583925ffdbd40a64efb2aaffe58638e57add8becaf460fe74f5b1c.scope"
        ));
    }

    #[test]
    fn huge_files() {
        let lines = "0::/\n".repeat(100_000);
        assert_eq!(pick(&lines, Prefer::V2).unwrap(), "/");
    }

    #[test]
    fn reads_our_own_file() {
        let me = std::process::id();
        let text = std::fs::read_to_string(format!("/proc/{me}/cgroup")).unwrap();
        for prefer in [Prefer::V1, Prefer::V2] {
            let path = path_of_pid(Path::new("/proc"), me, prefer).unwrap();
            assert!(path.starts_with('/'), "{path}");
            assert_eq!(Some(path), pick(&text, prefer));
        }
        assert_eq!(path_of_pid(Path::new("/nonexistent"), me, Prefer::V2), None);
    }
}
