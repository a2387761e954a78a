//! What a cgroup v2 node adds: the daemon in its own cgroup namespace (as in a pod there),
//! and the systemd driver's scopes for a real containerd's containers. Both also run on a
//! hybrid node (the cgroup2 of the unified hierarchy, every v1 hierarchy alike); the VM
//! matrix runs them on a pure cgroup v2 guest (`cargo xtask vm-cgroup2`).

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use serde_json::Value;

use crate::{
    SECOND,
    harness::{Daemon, Workload, poll},
    runc::{create_cgroup, hierarchies},
};

/// Cgroups made in every hierarchy (paths as /proc/<pid>/cgroup shows them from the host),
/// emptied into the root and removed deepest first on drop, also when a test fails.
struct Cgroups {
    top: String,
    paths: Vec<String>,
}

impl Cgroups {
    fn new(top: &str, paths: &[&str]) -> Self {
        let me = Self {
            top: top.to_string(),
            paths: paths.iter().map(|p| p.to_string()).collect(),
        };
        for p in paths {
            for h in hierarchies() {
                create_cgroup(&h, p).unwrap_or_else(|e| panic!("mkdir {p} in {h:?}: {e}"));
            }
        }
        me
    }

    /// A shell that joins `path` in every hierarchy that takes it, then execs its arguments.
    fn join_then_exec(path: &str) -> String {
        let joins: Vec<String> = hierarchies()
            .into_iter()
            .map(|h| {
                let f = h.join(path.trim_start_matches('/')).join("cgroup.procs");
                format!("{{ echo $$ > {}; }} 2>/dev/null", f.display())
            })
            .collect();
        format!("{}; exec \"$@\"", joins.join("; "))
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        let mut dirs = Vec::new();
        for h in hierarchies() {
            walk(&h.join(self.top.trim_start_matches('/')), &mut dirs);
        }
        // Deepest first: a parent goes once its children have.
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in &dirs {
            let root = hierarchies()
                .into_iter()
                .find(|h| d.starts_with(h))
                .unwrap_or_else(|| PathBuf::from("/"));
            let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines() {
                let _ = std::fs::write(root.join("cgroup.procs"), pid);
            }
        }
        let left = crate::harness::remove_cgroup_dirs(&dirs, 5 * crate::SECOND);
        if !left.is_empty() {
            eprintln!("cgroups left behind after 5 s: {left:?}");
        }
        debug_assert!(self.top.starts_with("/zd-") && !self.paths.is_empty());
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    out.push(dir.to_path_buf());
    for e in rd.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            walk(&e.path(), out);
        }
    }
}

/// What a zombie is attributed to: the fields that must not depend on where the daemon sits.
fn attribution(z: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for k in [
        "pid",
        "ppid",
        "owner",
        "pod_uid",
        "container_id",
        "qos",
        "runtime",
        "cause",
        "namespace",
        "pod",
        "container",
        "cgroup_path",
    ] {
        out.insert(k.to_string(), z[k].clone());
    }
    Value::Object(out)
}

/// The daemon in its own cgroup namespace, rooted at its container's cgroup, as containerd
/// puts every container on cgroup v2 (and as the DaemonSet runs there): other pods' paths
/// in /proc/<pid>/cgroup then start with `/..`. Zombies that exist before it starts (read
/// from /proc) and that come after (from its eBPF programs) must be attributed exactly as a
/// daemon in the host's cgroup namespace attributes them.
#[test]
fn a_daemon_in_its_own_cgroup_namespace_attributes_zombies_as_the_hosts_view_does() {
    let me = std::process::id();
    let top = format!("/zd-node-{me}-cgns");
    let qos = format!("{top}/kubepods/burstable");
    let uid = format!("0de0de00-{:04x}-4000-8000-00000000c9a5", me & 0xffff);
    let id = format!("{:0>64}", format!("{me:x}c9a5"));
    let target = format!("{qos}/pod{uid}/{id}");
    let daemon_cg = format!(
        "{qos}/pod0de0de00-{:04x}-4000-8000-0000000da3e0/{:0>64}",
        me & 0xffff,
        format!("{me:x}da3e0")
    );
    let _cgroups = Cgroups::new(&top, &[&target, &daemon_cg]);
    let workload = |n: &str| {
        Workload::spawn_cmd(
            Command::new("sh")
                .args(["-c", &Cgroups::join_then_exec(&target), "sh"])
                .arg(crate::harness::workload_bin())
                .args(["never-wait", n]),
        )
        .0
    };
    let before = workload("2");
    let prefix = "--kubepods-prefix=/*";
    let host = Daemon::start_with(&[prefix]);
    // Joins its container's cgroup, then a new cgroup namespace rooted there; unshare
    // execs the daemon, so the pid stays the daemon's.
    let join = Cgroups::join_then_exec(&daemon_cg);
    let pod = Daemon::start_wrapped(
        &["sh", "-c", &join, "sh", "unshare", "--cgroup", "--"],
        &[prefix],
    );
    let ns = |pid: i32| std::fs::read_link(format!("/proc/{pid}/ns/cgroup")).unwrap();
    assert_ne!(ns(pod.pid()), ns(std::process::id() as i32));
    // From its namespace, the neighbour's cgroup lies above the root: `/../../pod<uid>/<id>`.
    let seen = Command::new("nsenter")
        .args(["-t", &pod.pid().to_string(), "--cgroup", "--", "cat"])
        .arg(format!("/proc/{}/cgroup", before.pid()))
        .output()
        .unwrap();
    let seen = String::from_utf8_lossy(&seen.stdout).to_string();
    let want = format!("/../../pod{uid}/{id}");
    assert!(
        seen.lines().any(|l| l.ends_with(&format!(":{want}"))),
        "the neighbour's cgroup from the daemon's namespace: {seen:?}"
    );
    let after = workload("3");
    for (w, n) in [(&before, 2), (&after, 3)] {
        let views = |d: &Daemon| {
            let mut z: Vec<Value> = d.children_of(w.pid()).iter().map(attribution).collect();
            z.sort_by_key(|z| z["pid"].as_i64());
            z
        };
        let from_host = poll("the host view's zombies", 5 * SECOND, || {
            let z = views(&host);
            (z.len() == n && z.iter().all(|z| z["container_id"] == id.as_str())).then_some(z)
        });
        assert_eq!(from_host[0]["pod_uid"], uid.as_str(), "{from_host:#?}");
        assert_eq!(from_host[0]["qos"], "burstable", "{from_host:#?}");
        let start = std::time::Instant::now();
        let from_pod = loop {
            let z = views(&pod);
            if z == from_host || start.elapsed() > 5 * SECOND {
                break z;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(
            from_pod, from_host,
            "the daemon in its own cgroup namespace (left) against the host's view (right)"
        );
    }
    // The per-container series agree too.
    let series = |d: &Daemon| {
        let (_, m) = d.get("/metrics").unwrap();
        m.lines()
            .filter(|l| l.starts_with("zombie_processes{") && l.contains(&id))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let host_series = series(&host);
    assert!(!host_series.is_empty());
    assert_eq!(series(&pod), host_series);
}

/// A real containerd's container moved into the systemd driver's scope, as the kubelet and
/// systemd place it (`kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>
/// .slice/cri-containerd-<id>.scope`; no systemd runs here, so the test makes the slices):
/// the zombies it makes there are named through CRI with the runtime from the scope's name.
#[test]
fn zombies_of_a_containerd_container_in_the_systemd_drivers_scope_are_named_through_cri() {
    let mut c = crate::containerd::Containerd::start();
    let d = Daemon::start_with(&["--runtime-endpoint", &c.endpoint(), "--kubepods-prefix=/*"]);
    let me = std::process::id();
    let uid = format!("0de0de00-{:04x}-4000-8000-0000005c09e0", me & 0xffff);
    let top = format!("/zd-node-{me}-systemd");
    let sandbox = c.run_pod(
        "scoped",
        "zombie-e2e",
        &uid,
        &format!("{top}/kubepods/burstable/pod{uid}"),
    );
    // It makes its zombies once it sits in the scope (its own /proc/self/cgroup says so).
    let cid = c.run_container(
        &sandbox,
        "app",
        crate::containerd::BUSYBOX_IMAGE,
        &[
            "sh",
            "-c",
            "until grep -q cri-containerd /proc/self/cgroup; do sleep 0.05; done; \
             sleep 0.2 & sleep 0.2 & exec sleep 3600",
        ],
    );
    let pid = c.container_pid(&cid);
    let slice = format!(
        "{top}/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice",
        uid.replace('-', "_")
    );
    let scope = format!("{slice}/cri-containerd-{cid}.scope");
    let _cgroups = Cgroups::new(&top, &[&scope]);
    for h in hierarchies() {
        let procs = h.join(scope.trim_start_matches('/')).join("cgroup.procs");
        // Not every v1 hierarchy takes a task (an empty cpuset): the others do.
        let _ = std::fs::write(procs, pid.to_string());
    }
    let zs = poll("2 zombies in the scope, named", 10 * SECOND, || {
        let z: Vec<_> = d
            .children_of(pid)
            .into_iter()
            .filter(|z| z["container"] == "app")
            .collect();
        (z.len() == 2).then_some(z)
    });
    for z in &zs {
        assert_eq!(z["pod"], "scoped", "{z:#}");
        assert_eq!(z["namespace"], "zombie-e2e", "{z:#}");
        assert_eq!(z["container_id"].as_str(), Some(cid.as_str()), "{z:#}");
        assert_eq!(z["pod_uid"], uid.as_str(), "{z:#}");
        assert_eq!(z["qos"], "burstable", "{z:#}");
        assert_eq!(z["runtime"], "containerd", "{z:#}");
        assert_eq!(z["cgroup_path"], scope.as_str(), "{z:#}");
    }
    let series = "zombie_processes{container=\"app\",namespace=\"zombie-e2e\",pod=\"scoped\"} 2";
    poll("the named series", 2 * SECOND, || {
        let (_, m) = d.get("/metrics").unwrap();
        m.contains(series).then_some(())
    });
    drop(d);
    // containerd stops the pod (it kills by pid, wherever the cgroup); the scope goes after.
    drop(c);
}
