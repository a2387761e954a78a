//! The walk over a hierarchy's kubepods tree: every pod and container cgroup on the node,
//! and the processes in one.

use std::{
    fs,
    path::{Path, PathBuf},
};

use crate::attribution::{CgroupInfo, Owner, cgroup_path};

/// A pod or container cgroup below a hierarchy's root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodCgroup {
    /// Relative to the hierarchy root, with a leading `/`, as /proc/<pid>/cgroup shows it.
    pub path: String,
    /// Its directory.
    pub dir: PathBuf,
    /// What the path says; its owner is always [`Owner::Pod`].
    pub info: CgroupInfo,
}

/// How deep below the root a kubepods tree is looked for (nested nodes put it under a
/// prefix).
const MAX_DEPTH: usize = 8;

/// Every cgroup below `root` that the path parser places in a pod, at any depth up to
/// [`MAX_DEPTH`], below a directory whose name marks a kubepods tree. The walk reads at
/// most `max_dirs` directories and returns what it found by then. Depth first, in the
/// order the directories are listed.
pub fn pod_cgroups(root: &Path, max_dirs: usize) -> Vec<PodCgroup> {
    pod_cgroups_bounded(root, max_dirs).0
}

/// [`pod_cgroups`], and whether the walk stopped at `max_dirs` (what it returns is then
/// only part of the tree).
pub fn pod_cgroups_bounded(root: &Path, max_dirs: usize) -> (Vec<PodCgroup>, bool) {
    let mut out = Vec::new();
    let mut stack = vec![(root.to_path_buf(), 0usize, false)];
    let mut seen = 0;
    while let Some((dir, depth, in_kubepods)) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            seen += 1;
            if seen > max_dirs {
                return (out, true);
            }
            let path = e.path();
            let kube = in_kubepods || e.file_name().to_string_lossy().contains("kubepods");
            if kube {
                let rel = format!("/{}", path.strip_prefix(root).unwrap_or(&path).display());
                let info = cgroup_path::parse(&rel);
                if info.owner == Owner::Pod {
                    out.push(PodCgroup {
                        path: rel,
                        dir: path.clone(),
                        info,
                    });
                }
            }
            if depth < MAX_DEPTH {
                stack.push((path, depth + 1, kube));
            }
        }
    }
    (out, false)
}

/// The processes in the cgroup at `dir` (its `cgroup.procs`); none when it cannot be read.
pub fn cgroup_procs(dir: &Path) -> Vec<u32> {
    parse_cgroup_procs(&fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default())
}

/// The pids of a `cgroup.procs` file, one per line; lines that are not a pid are skipped.
pub fn parse_cgroup_procs(text: &str) -> Vec<u32> {
    text.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cgroup_procs() {
        assert_eq!(parse_cgroup_procs("1\n42\n 7 \n"), [1, 42, 7]);
        assert_eq!(parse_cgroup_procs("x\n-1\n\n4294967296\n5"), [5]);
        assert!(parse_cgroup_procs("").is_empty());
    }

    #[test]
    fn walks_a_kubepods_tree() {
        let root = std::env::temp_dir().join(format!("zombie-pod-tree-{}", std::process::id()));
        let uid = "11111111-2222-3333-4444-555555555555";
        let id = "c".repeat(64);
        let pod = root.join(format!("kubepods/burstable/pod{uid}"));
        let ctr = pod.join(&id);
        fs::create_dir_all(&ctr).unwrap();
        // The same names below another cgroup (a delegated subtree) are no pod.
        fs::create_dir_all(root.join(format!("nested/kubepods/burstable/pod{uid}/{id}"))).unwrap();
        fs::create_dir_all(root.join("system.slice/foo.service")).unwrap();
        fs::create_dir_all(root.join(format!("elsewhere/pod{uid}/{id}"))).unwrap();
        fs::write(ctr.join("cgroup.procs"), "12\n34\n").unwrap();
        let mut got = pod_cgroups(&root, usize::MAX);
        let procs = cgroup_procs(&ctr);
        let capped = pod_cgroups(&root, 2);
        fs::remove_dir_all(&root).unwrap();

        got.sort_by(|a, b| a.path.cmp(&b.path));
        let paths: Vec<&str> = got.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                format!("/kubepods/burstable/pod{uid}"),
                format!("/kubepods/burstable/pod{uid}/{id}"),
            ],
            "only in the kubepods tree at the top"
        );
        assert_eq!(got[1].dir, ctr);
        assert_eq!(got[0].info.container_id, None);
        assert_eq!(got[1].info.container_id.as_deref(), Some(id.as_str()));
        assert_eq!(got[1].info.pod_uid.as_deref(), Some(uid));
        assert_eq!(procs, [12, 34]);
        assert!(capped.is_empty(), "{capped:?}");
        assert!(cgroup_procs(Path::new("/nonexistent")).is_empty());
    }
}
