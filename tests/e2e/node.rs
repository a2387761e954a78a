//! What the node itself does to zombies and PIDs: reapers that are the runtime or a node
//! agent, forks refused at a pod's pids limit, a PID namespace stuck in teardown. Every
//! cgroup these tests make sits under its own `/zd-node-<pid>-<tag>` prefix, so that no
//! other test's cleanup of `/kubepods` can remove it.

use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::Value;

use crate::{
    SECOND,
    harness::{Daemon, REAP_UNSEEN_CANDIDATE, Workload, poll, reap, reap_leftovers},
    runc::hierarchies,
};

/// The kubepods trees of these tests sit below `/zd-node-<pid>-<tag>`: the daemon accepts
/// pods one level below the top, as an operator of a nested node would configure.
const NODE_PREFIX: &str = "--kubepods-prefix=/*";

/// A pod container's cgroup (cgroupfs driver names) below a prefix of this test's own, in
/// every hierarchy; processes left in it are moved out and the dirs removed on drop.
struct NodeCgroup {
    /// The container cgroup's path, as /proc/<pid>/cgroup shows it.
    path: String,
    prefix: String,
    uid: String,
    id: String,
}

impl NodeCgroup {
    fn new(tag: &str) -> Self {
        let me = std::process::id();
        // FNV-1a of the tag: each test its own pod and container.
        let h = tag.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
        let uid = format!(
            "0de0de00-{:04x}-4000-8000-{:012x}",
            me & 0xffff,
            h & 0xffff_ffff_ffff
        );
        let id = format!("{:0>64}", format!("{me:x}{h:016x}"));
        let prefix = format!("/zd-node-{me}-{tag}");
        let path = format!("{prefix}/kubepods/besteffort/pod{uid}/{id}");
        for h in hierarchies() {
            let _ = crate::runc::create_cgroup(&h, &path);
        }
        Self {
            path,
            prefix,
            uid,
            id,
        }
    }

    /// The container cgroup's dir in the pids hierarchy (the one the daemon reads).
    fn pids_dir(&self) -> PathBuf {
        hierarchies()
            .into_iter()
            .map(|h| h.join(self.path.trim_start_matches('/')))
            .find(|d| d.join("pids.max").exists())
            .expect("a pids controller")
    }

    /// The daemon's labels without names, in the exposition's (sorted) order.
    fn container_labels(&self) -> String {
        format!(
            "{{container=\"{}\",namespace=\"\",pod=\"{}\"}}",
            self.id, self.uid
        )
    }
}

impl Drop for NodeCgroup {
    fn drop(&mut self) {
        let parts: Vec<&str> = self.path.trim_matches('/').split('/').collect();
        for h in hierarchies() {
            for depth in (1..=parts.len()).rev() {
                let dir = h.join(parts[..depth].join("/"));
                let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                for pid in procs.lines() {
                    let _ = std::fs::write(h.join("cgroup.procs"), pid);
                }
            }
        }
        let dirs: Vec<PathBuf> = (1..=parts.len())
            .flat_map(|depth| {
                let rel = parts[..depth].join("/");
                hierarchies().into_iter().map(move |h| h.join(&rel))
            })
            .collect();
        let left = crate::harness::remove_cgroup_dirs(&dirs, 5 * SECOND);
        if !left.is_empty() {
            eprintln!("cgroups left behind after 5 s: {left:?}");
        }
        debug_assert!(self.prefix.starts_with("/zd-node-"));
    }
}

/// A child process killed (with its process group) and reaped on drop.
struct Proc(Child);

impl Proc {
    fn spawn(cmd: &mut Command) -> Self {
        Self(
            cmd.stdin(Stdio::null())
                .process_group(0)
                .spawn()
                .expect("spawn"),
        )
    }

    fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SAFETY: killing the process group this test made.
        unsafe { libc::kill(-self.pid(), libc::SIGKILL) };
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn children(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// A metric line's value: `name{labels} value`.
fn sample(metrics: &str, name: &str, labels: &str) -> Option<f64> {
    let head = format!("{name}{labels} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&head)?.parse().ok())
}

/// Zombies whose parent is a process named like the runtime's helpers or a node agent: the
/// same program (zombie-workload) started under those names, so comm and argv[0] are what
/// the kernel shows for the real ones.
#[test]
fn zombies_held_by_a_runtime_process_or_a_node_agent_are_their_bug() {
    let d = Daemon::start_with(&[NODE_PREFIX]);
    let node = crate::harness::NodePrograms::new("node-names");
    let cases = [
        ("containerd-shim-runc-v2", "containerd-shim", "runtime"),
        ("conmon", "conmon", "runtime"),
        ("crun", "crun", "runtime"),
        ("kubelet", "kubelet", "node_agent"),
        ("node-problem-detector", "node-problem-de", "node_agent"),
    ];
    let mut workloads = Vec::new();
    for (name, comm, cause) in cases {
        let (w, _) = Workload::spawn_cmd(node.command(name).args(["never-wait", "2"]));
        let zs = poll(&format!("2 zombies of {name}"), 2 * SECOND, || {
            let z = d.children_of(w.pid());
            (z.len() == 2).then_some(z)
        });
        for z in &zs {
            assert_eq!(z["cause"], cause, "{z:#}");
            assert_eq!(z["reaper"]["comm"], comm, "{z:#}");
            assert_eq!(z["reaper"]["kind"], cause, "{z:#}");
            assert!(z["reaper"]["node_component"].is_string(), "{z:#}");
            let remedy = z["remedy"].as_str().unwrap();
            assert!(
                remedy.starts_with(&format!("{comm} (pid {}): ", w.pid())),
                "{remedy}"
            );
            assert!(
                remedy.contains(if cause == "runtime" {
                    "runtime bug"
                } else {
                    "node agent"
                }),
                "{remedy}"
            );
        }
        workloads.push(w);
    }
    let (_, m) = d.get("/metrics").unwrap();
    for cause in ["runtime", "node_agent"] {
        assert!(m.contains(&format!("cause=\"{cause}\"")), "{m}");
    }
}

/// A node that runs in a container (kind, k3d): its kubelet runs in the node's own mount
/// namespace, not the kernel's initial one. With `--node-mount-namespace` naming it, a
/// kubelet there is the node agent; the same executable in the initial mount namespace is
/// then not a node's process, so it is an application like any other.
#[test]
fn the_node_mount_namespace_flag_names_where_node_components_run() {
    // The "node container": a mount namespace of its own, kept by a sleeper.
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let keeper = Kill(
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sleep", "600"])
            .spawn()
            .unwrap(),
    );
    let keeper_pid = keeper.0.id();
    let ns = format!("/proc/{keeper_pid}/ns/mnt");
    // unshare execs sleep once the namespace exists.
    poll("the namespace's sleeper", 5 * SECOND, || {
        let comm = std::fs::read_to_string(format!("/proc/{keeper_pid}/comm")).ok()?;
        (comm == "sleep\n").then_some(())
    });
    let d = Daemon::start_with(&[NODE_PREFIX, "--node-mount-namespace", &ns]);
    let node = crate::harness::NodePrograms::new("node-ns");
    let kubelet = node.command("kubelet");
    let (inside, _) = Workload::spawn_cmd(
        Command::new("nsenter")
            .arg(format!("--mount=/proc/{keeper_pid}/ns/mnt"))
            .arg("--")
            .arg(kubelet.get_program())
            .args(["never-wait", "2"]),
    );
    let (outside, _) = Workload::spawn_cmd(node.command("kubelet").args(["never-wait", "2"]));
    for (w, cause, kind) in [
        (&inside, "node_agent", "node_agent"),
        (&outside, "parent_not_waiting", "application"),
    ] {
        let zs = poll("2 zombies of each kubelet", 5 * SECOND, || {
            let z = d.children_of(w.pid());
            (z.len() == 2).then_some(z)
        });
        for z in &zs {
            assert_eq!(z["reaper"]["comm"], "kubelet", "{z:#}");
            assert_eq!(z["cause"], cause, "{z:#}");
            assert_eq!(z["reaper"]["kind"], kind, "{z:#}");
        }
    }
}

/// How this kernel counts a refused fork in `pids.events` (`max N`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PidsEvents {
    /// In the cgroup where the fork was tried: cgroup v1, v2 before 6.13, and v2 mounted
    /// with `pids_localevents`.
    WhereTried,
    /// In the cgroup whose `pids.max` was reached and in every ancestor of it: cgroup v2
    /// from 6.13 on, which adds `pids.events.local` (that cgroup's own limit only).
    Hierarchical,
}

impl PidsEvents {
    /// Told from the files and the mount, not from the code under test.
    pub fn of(pids_dir: &Path) -> Self {
        let local_mount = std::fs::read_to_string("/proc/self/mounts")
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains(" cgroup2 ") && l.contains("pids_localevents"));
        if pids_dir.join("pids.events.local").exists() && !local_mount {
            Self::Hierarchical
        } else {
            Self::WhereTried
        }
    }
}

/// A pod whose pids.max is reached: the forks the kernel refuses are the counters of the
/// container (where the fork was tried, or nothing on a hierarchical kernel: the limit was
/// the pod's) and of the pod, exactly, as the real daemon serves them.
#[test]
fn forks_refused_at_a_pods_pids_limit_are_counted_per_pod_and_container() {
    refused_forks("pids", false);
}

/// The same with the limit on the container: there both kinds of kernel count it in the
/// container, and a hierarchical one in the pod too.
#[test]
fn forks_refused_at_a_containers_pids_limit_are_counted_per_pod_and_container() {
    refused_forks("pids-ctr", true);
}

fn refused_forks(tag: &str, limit_on_container: bool) {
    let cg = NodeCgroup::new(tag);
    let ctr = cg.pids_dir();
    let pod = ctr.parent().unwrap().to_path_buf();
    let limited = if limit_on_container { &ctr } else { &pod };
    std::fs::write(limited.join("pids.max"), "4").unwrap();
    let kind = PidsEvents::of(&ctr);
    let d = Daemon::start_with(&[NODE_PREFIX]);
    // Joins the container, forks 10 sleepers; the limit lets 3 through. Prints how many
    // forks failed with EAGAIN, then waits.
    let script = format!(
        "import os, time\n\
         open('{}/cgroup.procs', 'w').write(str(os.getpid()))\n\
         fails = 0\n\
         for _ in range(10):\n\
         \x20   try:\n\
         \x20       if os.fork() == 0:\n\
         \x20           time.sleep(60); os._exit(0)\n\
         \x20   except BlockingIOError:\n\
         \x20       fails += 1\n\
         print(fails, flush=True)\n\
         time.sleep(60)\n",
        ctr.display()
    );
    let mut child = Command::new("python3");
    child.args(["-c", &script]).stdout(Stdio::piped());
    let mut p = Proc::spawn(&mut child);
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(p.0.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    let fails: f64 = line.trim().parse().expect("the failure count");
    assert_eq!(fails, 7.0, "4 PIDs: python and 3 children");
    // Where the kernel counts them, from what the workload did and the kind of kernel: the
    // expected values must not come from the code under test.
    let (want_ctr, want_pod) = match (kind, limit_on_container) {
        (PidsEvents::WhereTried, _) => (fails, 0.0),
        (PidsEvents::Hierarchical, false) => (0.0, fails),
        (PidsEvents::Hierarchical, true) => (fails, fails),
    };
    // The kernel's own files agree (read as the file says it, "max N").
    let kernel = |dir: &Path, file: &str| {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let max = text.lines().find_map(|l| l.strip_prefix("max "));
        max.unwrap_or_else(|| panic!("no max line in {file}: {text:?}"))
            .trim()
            .parse::<f64>()
            .unwrap()
    };
    eprintln!("pids.events counting: {kind:?}");
    assert_eq!(
        (kernel(&ctr, "pids.events"), kernel(&pod, "pids.events")),
        (want_ctr, want_pod),
        "container and pod pids.events ({kind:?})"
    );
    if kind == PidsEvents::Hierarchical {
        // The local count is the limited cgroup's own: the other has none.
        let (ctr_local, pod_local) = if limit_on_container {
            (fails, 0.0)
        } else {
            (0.0, fails)
        };
        assert_eq!(
            (
                kernel(&ctr, "pids.events.local"),
                kernel(&pod, "pids.events.local")
            ),
            (ctr_local, pod_local),
            "pids.events.local"
        );
    }
    let container = cg.container_labels();
    let pod_labels = format!("{{namespace=\"\",pod=\"{}\"}}", cg.uid);
    let served = |m: &str| {
        (
            sample(m, "zombie_container_pids_max_events_total", &container),
            sample(m, "zombie_pod_pids_max_events_total", &pod_labels),
        )
    };
    let start = std::time::Instant::now();
    let m = loop {
        let (_, m) = d.get("/metrics").unwrap();
        if served(&m) == (Some(want_ctr), Some(want_pod)) || start.elapsed() > 5 * SECOND {
            break m;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        served(&m),
        (Some(want_ctr), Some(want_pod)),
        "container and pod counters served ({kind:?}):\n{m}"
    );
    assert!(
        m.contains("# TYPE zombie_container_pids_max_events_total counter"),
        "{m}"
    );
    assert_eq!(
        sample(&m, "zombie_container_pids", &container),
        Some(4.0),
        "{m}"
    );
    drop(p);
    // Its forked children were handed to us: reap them as they die, until the container
    // lists no process.
    poll("the container's processes to exit", 5 * SECOND, || {
        reap_leftovers();
        std::fs::read_to_string(ctr.join("cgroup.procs"))
            .map_or(true, |procs| procs.trim().is_empty())
            .then_some(())
    });
    reap_leftovers();
}

/// The audit entry of a container (by its cgroup) from /audit.
fn audit_of(d: &Daemon, cg: &NodeCgroup) -> Value {
    let all = d.audit();
    all.iter()
        .find(|a| a["cgroup_path"] == cg.path.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("no audit of {} in {all:#?}", cg.path))
}

/// A namespace init in the container's cgroup (`unshare --pid --fork sleep`): (unshare, init).
fn namespace_init(cg: &NodeCgroup) -> (Proc, i32) {
    namespace_init_running(cg, &["sleep", "600"])
}

/// `program` as a namespace init in the container's cgroup: (unshare, init). The init
/// joins the cgroup itself before it execs `program` (a task that has begun to exit can no
/// longer be moved); unshare, its parent, stays outside as a runtime's shim does.
fn namespace_init_running(cg: &NodeCgroup, program: &[&str]) -> (Proc, i32) {
    let join: Vec<String> = hierarchies()
        .into_iter()
        .map(|h| {
            let f = h.join(cg.path.trim_start_matches('/')).join("cgroup.procs");
            // Not every v1 hierarchy takes a task (an empty cpuset): the others do.
            format!("{{ echo 0 > {}; }} 2>/dev/null", f.display())
        })
        .collect();
    let script = format!("{}; exec \"$@\"", join.join("; "));
    let unshare = Proc::spawn(
        Command::new("unshare")
            .args(["--pid", "--fork", "--", "sh", "-c", &script, "sh"])
            .args(program)
            .stdout(Stdio::null()),
    );
    // Until it has exec'd the program: before, its comm is unshare's (just forked), then
    // sh's (joining the cgroup). The kernel keeps 15 bytes of the name.
    let want: String = Path::new(program[0])
        .file_name()
        .map(|f| f.to_string_lossy().chars().take(15).collect())
        .unwrap_or_default();
    let init = poll("the namespace's init", 2 * SECOND, || {
        let init = children(unshare.pid()).first().copied()?;
        let comm = std::fs::read_to_string(format!("/proc/{init}/comm")).ok()?;
        (comm.trim_end() == want).then_some(init)
    });
    (unshare, init)
}

/// Checks /audit and the gauge while the namespace is stuck; returns the teardown object.
fn stuck(d: &Daemon, cg: &NodeCgroup, init: i32, members: usize) -> Value {
    stuck_as(d, cg, init, "sleep", members)
}

/// Where a thread group waits, as root reads it: the first thread with a wait channel.
fn wchan_of(pid: i32) -> String {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("wchan")).ok())
        .find(|w| !w.is_empty() && w != "0")
        .unwrap_or_default()
}

fn stuck_as(d: &Daemon, cg: &NodeCgroup, init: i32, comm: &str, members: usize) -> Value {
    let a = poll("the stuck teardown in /audit", 5 * SECOND, || {
        let a = audit_of(d, cg);
        a["pid_namespace_teardown"].is_object().then_some(a)
    });
    let t = &a["pid_namespace_teardown"];
    assert_eq!(t["init_pid"], init, "{a:#}");
    assert_eq!(t["init_comm"], comm, "{a:#}");
    assert_eq!(t["members"].as_array().unwrap().len(), members, "{a:#}");
    // The kernel's own word on where the init waits, as root reads it.
    let wchan = wchan_of(init);
    assert!(
        wchan == "zap_pid_ns_processes" || wchan == "do_wait",
        "{wchan}"
    );
    assert_eq!(t["init_wchan"], wchan.as_str(), "{a:#}");
    assert!(
        a["verdict"].as_str().unwrap().contains("stuck in teardown"),
        "{a:#}"
    );
    let (_, m) = d.get("/metrics").unwrap();
    assert_eq!(
        sample(
            &m,
            "zombie_pid_namespace_teardown_stuck",
            &cg.container_labels()
        ),
        Some(members as f64),
        "{m}"
    );
    t.clone()
}

/// After the holder lets go, the init finishes and the audit says so. A stuck init is a
/// zombie already (its leader has exited; a thread waits in zap_pid_ns_processes), so
/// finished means: no thread of it waits there any more.
fn released(d: &Daemon, cg: &NodeCgroup, init: i32) {
    poll("the init to finish", 5 * SECOND, || {
        let tasks = match std::fs::read_dir(format!("/proc/{init}/task")) {
            Ok(tasks) => tasks,
            Err(_) => return Some(()),
        };
        let waiting = tasks.flatten().any(|t| {
            std::fs::read_to_string(t.path().join("wchan"))
                .is_ok_and(|w| w == "zap_pid_ns_processes")
        });
        (!waiting).then_some(())
    });
    let a = audit_of(d, cg);
    assert!(a["pid_namespace_teardown"].is_null(), "{a:#}");
}

/// containerd#11133's mechanism: a process outside the namespace joins it (setns, as a
/// runtime does for an exec session), forks into it and never reaps its child. When the
/// namespace's init is killed it waits in zap_pid_ns_processes for that zombie, whose only
/// reaper is outside: the pod would hang in Terminating.
#[test]
fn a_namespace_init_held_by_a_zombie_forked_in_from_outside_is_stuck_in_teardown() {
    let cg = NodeCgroup::new("teardown-zombie");
    let d = Daemon::start_with(&[NODE_PREFIX]);
    let (unshare, init) = namespace_init(&cg);
    // nsenter -F: setns(pid) without forking; the shell's children land in the namespace,
    // and the shell then execs a sleep that never reaps them.
    let holder = Proc::spawn(
        Command::new("nsenter")
            .args(["-t", &init.to_string(), "--pid", "-F", "--"])
            .args(["sh", "-c", "sleep 0.1 & exec sleep 600"]),
    );
    let member = poll("the zombie forked into the namespace", 3 * SECOND, || {
        children(holder.pid()).into_iter().find(|c| {
            std::fs::read_to_string(format!("/proc/{c}/stat")).is_ok_and(|s| s.contains(") Z "))
        })
    });
    // SAFETY: killing the init this test made.
    unsafe { libc::kill(init, libc::SIGKILL) };
    let t = stuck(&d, &cg, init, 1);
    let m = &t["members"][0];
    assert_eq!(
        (
            m["pid"].as_i64(),
            m["state"].as_str(),
            m["ppid"].as_i64(),
            m["parent_outside_namespace"].as_bool()
        ),
        (
            Some(member as i64),
            Some("Z"),
            Some(holder.pid() as i64),
            Some(true)
        ),
        "{t:#}"
    );
    let remedy = t["remedy"].as_str().unwrap();
    assert!(
        remedy.contains(&format!("sleep (pid {})", holder.pid())) && remedy.contains("wait()"),
        "{remedy}"
    );
    // The holder's end hands the zombie to the holder's reaper (us, the subreaper: on a node,
    // the shim), whose reap frees the namespace's last pid.
    drop(holder);
    reap(member);
    released(&d, &cg, init);
    drop(unshare);
    reap(init);
}

/// kubernetes#66892's kind: a member that cannot die. A task in a frozen v1 freezer cgroup
/// ignores SIGKILL until it is thawed, so the exiting init waits for it.
#[test]
fn a_namespace_init_held_by_a_frozen_member_is_stuck_in_teardown() {
    let freezer_root = Path::new("/sys/fs/cgroup/freezer");
    assert!(
        freezer_root.join("cgroup.procs").exists(),
        "this test needs the cgroup v1 freezer (a v2 freezer lets SIGKILL through)"
    );
    struct Frozen(PathBuf);
    impl Drop for Frozen {
        fn drop(&mut self) {
            let _ = std::fs::write(self.0.join("freezer.state"), "THAWED");
            std::thread::sleep(Duration::from_millis(100));
            let procs = std::fs::read_to_string(self.0.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines() {
                let _ = std::fs::write(self.0.parent().unwrap().join("cgroup.procs"), pid);
            }
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let cg = NodeCgroup::new("teardown-frozen");
    let d = Daemon::start_with(&[NODE_PREFIX]);
    let (unshare, init) = namespace_init(&cg);
    let frozen = Frozen(freezer_root.join(format!("zd-node-{}-frozen", std::process::id())));
    std::fs::create_dir_all(&frozen.0).unwrap();
    // nsenter forks the member into the namespace and waits for it.
    let nsenter = Proc::spawn(
        Command::new("nsenter")
            .args(["-t", &init.to_string(), "--pid", "--"])
            .args(["sleep", "600"]),
    );
    let member = poll("the member", 3 * SECOND, || {
        children(nsenter.pid()).first().copied()
    });
    std::fs::write(frozen.0.join("cgroup.procs"), member.to_string()).unwrap();
    std::fs::write(frozen.0.join("freezer.state"), "FROZEN").unwrap();
    poll("the freeze", 3 * SECOND, || {
        (std::fs::read_to_string(frozen.0.join("freezer.state")).unwrap() == "FROZEN\n")
            .then_some(())
    });
    // SAFETY: killing the init this test made.
    unsafe { libc::kill(init, libc::SIGKILL) };
    let t = stuck(&d, &cg, init, 1);
    let m = &t["members"][0];
    assert_eq!(
        (m["pid"].as_i64(), m["state"].as_str()),
        (Some(member as i64), Some("D")),
        "{t:#}"
    );
    assert!(t["remedy"].as_str().unwrap().contains("thawed"), "{t:#}");
    drop(frozen);
    released(&d, &cg, init);
    drop(nsenter);
    drop(unshare);
    reap(init);
}

/// The cgroup v2 freezer (`cgroup.freeze`) lets SIGKILL through: a frozen member just
/// dies. What holds an init there is a frozen reaper: `nsenter` forked a member into the
/// namespace and would reap it, but it sits in a frozen cgroup outside the pod (as a
/// runtime's exec session can); the init's SIGKILL makes the member a zombie that nobody
/// reaps until the cgroup is thawed. Runs on cgroup2 wherever it is mounted (a pure v2 node,
/// or the unified hierarchy of a hybrid one).
#[test]
fn a_namespace_init_whose_members_reaper_is_frozen_by_cgroup_freeze_is_stuck_in_teardown() {
    let v2 = hierarchies()
        .into_iter()
        .find(|h| h.join("cgroup.controllers").exists())
        .expect("a cgroup2 mount");
    struct Frozen(PathBuf);
    impl Drop for Frozen {
        fn drop(&mut self) {
            let _ = std::fs::write(self.0.join("cgroup.freeze"), "0");
            let root = self.0.parent().unwrap();
            let procs = std::fs::read_to_string(self.0.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines() {
                let _ = std::fs::write(root.join("cgroup.procs"), pid);
            }
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let cg = NodeCgroup::new("teardown-v2frozen");
    let d = Daemon::start_with(&[NODE_PREFIX]);
    let (unshare, init) = namespace_init(&cg);
    let frozen = Frozen(v2.join(format!("zd-node-{}-v2frozen", std::process::id())));
    std::fs::create_dir_all(&frozen.0).unwrap();
    assert!(
        frozen.0.join("cgroup.freeze").exists(),
        "this kernel's cgroup2 has no cgroup.freeze (before 5.2)"
    );
    let nsenter = Proc::spawn(
        Command::new("nsenter")
            .args(["-t", &init.to_string(), "--pid", "--"])
            .args(["sleep", "600"]),
    );
    let member = poll("the member", 3 * SECOND, || {
        children(nsenter.pid()).first().copied()
    });
    std::fs::write(frozen.0.join("cgroup.procs"), nsenter.pid().to_string()).unwrap();
    std::fs::write(frozen.0.join("cgroup.freeze"), "1").unwrap();
    poll("the freeze (cgroup.events frozen 1)", 5 * SECOND, || {
        std::fs::read_to_string(frozen.0.join("cgroup.events"))
            .unwrap()
            .contains("frozen 1")
            .then_some(())
    });
    // SAFETY: killing the init this test made.
    unsafe { libc::kill(init, libc::SIGKILL) };
    let t = stuck(&d, &cg, init, 1);
    let m = &t["members"][0];
    assert_eq!(
        (
            m["pid"].as_i64(),
            m["state"].as_str(),
            m["ppid"].as_i64(),
            m["parent_outside_namespace"].as_bool()
        ),
        (
            Some(member as i64),
            Some("Z"),
            Some(nsenter.pid() as i64),
            Some(true)
        ),
        "{t:#}"
    );
    let remedy = t["remedy"].as_str().unwrap();
    assert!(
        remedy.contains(&format!("pid {} is frozen", nsenter.pid())) && remedy.contains("thawed"),
        "{remedy}"
    );
    // Thawed, nsenter reaps its child and the namespace's last pid is freed.
    drop(frozen);
    released(&d, &cg, init);
    drop(nsenter);
    drop(unshare);
    reap(init);
}

/// A pod of a real containerd with one PID namespace (CRI `NamespaceMode::Pod`), under a
/// cgroup prefix of this test's own; its app container's subshell leaves three `sleep`s
/// behind, orphans handed to the namespace's init: the sandbox process.
struct SharedPidPod {
    d: Daemon,
    /// Torn down after the daemon has stopped.
    _containerd: crate::containerd::Containerd,
    uid: String,
    sandbox_pid: i32,
    app_pid: i32,
    app_id: String,
}

impl SharedPidPod {
    fn start(sandbox_image: &str, name: &str, orphan_secs: &str) -> Self {
        let mut c = crate::containerd::Containerd::start_with_sandbox(sandbox_image);
        let d = Daemon::start_with(&["--runtime-endpoint", &c.endpoint(), NODE_PREFIX]);
        let me = std::process::id();
        let uid = format!("0de0de00-{:04x}-4000-8000-{:012x}", me & 0xffff, name.len());
        let parent = format!("/zd-node-{me}-{name}/kubepods/besteffort/pod{uid}");
        let sandbox = c.run_pod_sharing_pids(name, "zombie-e2e-node", &uid, &parent);
        let orphans =
            format!("(sleep {orphan_secs} & sleep {orphan_secs} & sleep {orphan_secs} &)");
        let app_id = c.run_container(
            &sandbox,
            "app",
            crate::containerd::BUSYBOX_IMAGE,
            &["sh", "-c", &format!("{orphans}; exec sleep 3600")],
        );
        let sandbox_pid = c.sandbox_pid(&sandbox);
        let app_pid = c.container_pid(&app_id);
        Self {
            d,
            _containerd: c,
            uid,
            sandbox_pid,
            app_pid,
            app_id,
        }
    }

    /// The pod's container audits: (sandbox, app), once the runtime's names are in (they
    /// are fetched over CRI on the first miss).
    fn audits(&self) -> (Value, Value) {
        poll("the pod's audits with names", 5 * SECOND, || {
            let (sandbox, app) = self.audits_now();
            (app["container"] == "app").then_some((sandbox, app))
        })
    }

    fn audits_now(&self) -> (Value, Value) {
        let mine: Vec<Value> = self
            .d
            .audit()
            .into_iter()
            .filter(|a| a["pod_uid"] == self.uid.as_str())
            .collect();
        let app = mine
            .iter()
            .find(|a| a["container_id"] == self.app_id.as_str())
            .cloned()
            .unwrap_or_else(|| panic!("no audit of the app container: {mine:#?}"));
        let sandbox = mine
            .iter()
            .find(|a| a["container_id"] != self.app_id.as_str())
            .cloned()
            .unwrap_or_else(|| panic!("no audit of the sandbox: {mine:#?}"));
        (sandbox, app)
    }
}

/// The seeds' own case with a pause that reaps as the Kubernetes pause does (SIGCHLD, then
/// waitpid until none are left): the app's orphans are adopted by the sandbox and reaped,
/// so none is listed, and /audit shows the shared namespace.
#[test]
fn containerd_pod_sharing_its_pid_namespace_has_its_orphans_reaped_by_the_pause() {
    let p = SharedPidPod::start(crate::containerd::PAUSE_IMAGE, "share-reap", "1");
    let reaps =
        |d: &Daemon| d.metric("zombie_reaped_total") + d.metric("zombie_reaps_unobserved_total");
    let seen = reaps(&p.d);
    // Alive for a second: the three sleeps are the sandbox's children now.
    let adopted = poll("the orphans adopted by the sandbox", 3 * SECOND, || {
        let kids = children(p.sandbox_pid);
        let sleeps: Vec<i32> = kids
            .into_iter()
            .filter(|k| {
                std::fs::read_to_string(format!("/proc/{k}/comm")).is_ok_and(|c| c == "sleep\n")
            })
            .filter(|k| *k != p.app_pid)
            .collect();
        (sleeps.len() == 3).then_some(sleeps)
    });
    // Then they exit, and the pause reaps them: gone from /proc, never zombies.
    poll("the orphans reaped by the pause", 5 * SECOND, || {
        adopted
            .iter()
            .all(|k| !Path::new(&format!("/proc/{k}")).exists())
            .then_some(())
    });
    assert!(
        crate::containerd::zombie_children(p.sandbox_pid).is_empty(),
        "zombies under the pause"
    );
    // The daemon saw those reaps (reported or found by its /proc confirmation); within its
    // bound for a reaped zombie, none of the pod's is listed.
    poll(
        "the 3 reaps seen by the daemon",
        REAP_UNSEEN_CANDIDATE,
        || (reaps(&p.d) - seen >= 3.0).then_some(()),
    );
    poll("no zombie of the pod listed", REAP_UNSEEN_CANDIDATE, || {
        p.d.zombies()
            .into_iter()
            .all(|z| z["pod_uid"] != p.uid.as_str())
            .then_some(())
    });
    let (sandbox, app) = p.audits();
    assert_eq!(app["shared_pid_namespace"], true, "{app:#}");
    assert_eq!(app["pid1"], p.app_pid, "{app:#}");
    assert_eq!(app["container"], "app", "{app:#}");
    assert_eq!(app["pod"], "share-reap", "{app:#}");
    assert_eq!(
        (
            sandbox["pid1"].as_i64(),
            sandbox["init"].as_str(),
            sandbox["reaps"].as_bool(),
            sandbox["shared_pid_namespace"].as_bool()
        ),
        (
            Some(p.sandbox_pid as i64),
            Some("pause"),
            Some(true),
            Some(false)
        ),
        "{sandbox:#}"
    );
    // The sandbox's parent is the real containerd-shim-runc-v2 (a subreaper): the diagnosis
    // knows it, from its /proc facts, as the runtime's.
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", p.sandbox_pid)).unwrap();
    let shim: u32 = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    // The node's mount namespace as the daemons of this suite know it (named by
    // `cargo xtask fresh`, which runs the suite in a namespace of its own).
    if let Some(ns) = std::env::var_os("ZOMBIE_NODE_MOUNT_NAMESPACE") {
        zombie_daemon::cli::set_node_mount_namespace(Path::new(&ns)).unwrap();
    }
    let facts = zombie_daemon::diagnosis::read_reaper_facts(Path::new("/proc"), shim).unwrap();
    assert_eq!(facts.comm, "containerd-shim", "{facts:?}");
    let d = zombie_daemon::diagnosis::diagnose(Some(&facts), false, false);
    assert_eq!(
        (d.cause, d.reaper.unwrap().node_component.as_deref()),
        (
            zombie_daemon::diagnosis::Cause::Runtime,
            Some("containerd-shim*")
        )
    );
    drop(p);
    reap_leftovers();
}

/// The same pod with a sandbox process that does not reap: the orphans stay zombies under
/// it, listed under the pod and the app container they exited in, with a cause and remedy
/// that name the sandbox.
#[test]
fn containerd_pod_sharing_its_pid_namespace_with_a_non_reaping_sandbox_lists_the_sandbox_as_cause()
{
    let p = SharedPidPod::start(crate::containerd::NOREAP_PAUSE_IMAGE, "share-noreap", "0");
    let zs = poll("3 zombies under the sandbox, named", 5 * SECOND, || {
        let z: Vec<Value> =
            p.d.children_of(p.sandbox_pid)
                .into_iter()
                .filter(|z| z["pod"] == "share-noreap")
                .collect();
        (z.len() == 3).then_some(z)
    });
    for z in &zs {
        assert_eq!(
            (
                z["namespace"].as_str(),
                z["pod"].as_str(),
                z["container"].as_str(),
                z["container_id"].as_str()
            ),
            (
                Some("zombie-e2e-node"),
                Some("share-noreap"),
                Some("app"),
                Some(p.app_id.as_str())
            ),
            "{z:#}"
        );
        assert_eq!(z["cause"], "sandbox_not_reaping", "{z:#}");
        assert_eq!(z["reaper"]["comm"], "pause-noreap", "{z:#}");
        assert_eq!(z["reaper"]["namespace_init"], true, "{z:#}");
        let remedy = z["remedy"].as_str().unwrap();
        assert!(
            remedy.starts_with(&format!("pause-noreap (pid {}): ", p.sandbox_pid))
                && remedy.contains("sandbox"),
            "{remedy}"
        );
    }
    assert_eq!(
        crate::containerd::zombie_children(p.sandbox_pid).len(),
        3,
        "the kernel's view"
    );
    let series = "zombie_processes_by_cause{cause=\"sandbox_not_reaping\",container=\"app\",namespace=\"zombie-e2e-node\",pod=\"share-noreap\"} 3";
    poll("the cause series", 2 * SECOND, || {
        let (_, m) = p.d.get("/metrics").unwrap();
        m.contains(series).then_some(())
    });
    let (sandbox, app) = p.audits();
    assert_eq!(app["shared_pid_namespace"], true, "{app:#}");
    assert_eq!(
        (sandbox["pid1_comm"].as_str(), sandbox["reaps"].as_bool()),
        (Some("pause-noreap"), Some(false)),
        "{sandbox:#}"
    );
    drop(p);
    reap_leftovers();
}

/// A multithreaded init whose main thread exited first (its leader is a zombie while the
/// other threads run): killed, its last thread is the one that waits in
/// zap_pid_ns_processes, and the leader's /proc entry says Z. Found all the same.
#[test]
fn a_multithreaded_namespace_init_whose_main_thread_exited_first_is_found_stuck() {
    let cg = NodeCgroup::new("teardown-threads");
    let d = Daemon::start_with(&[NODE_PREFIX]);
    let workload = crate::harness::workload_bin();
    let (unshare, init) = namespace_init_running(
        &cg,
        &[
            workload.to_str().unwrap(),
            "leader-exits-first",
            "2",
            "600000",
        ],
    );
    poll("the leader to exit first", 3 * SECOND, || {
        let stat = std::fs::read_to_string(format!("/proc/{init}/stat")).ok()?;
        stat.contains(") Z ").then_some(())
    });
    // A leader without its main thread but with live threads is not exiting: no verdict.
    let holder = Proc::spawn(
        Command::new("nsenter")
            .args(["-t", &init.to_string(), "--pid", "-F", "--"])
            .args(["sh", "-c", "sleep 0.1 & exec sleep 600"]),
    );
    let member = poll("the zombie forked into the namespace", 3 * SECOND, || {
        children(holder.pid()).into_iter().find(|c| {
            std::fs::read_to_string(format!("/proc/{c}/stat")).is_ok_and(|s| s.contains(") Z "))
        })
    });
    assert!(
        audit_of(&d, &cg)["pid_namespace_teardown"].is_null(),
        "a running init is not stuck"
    );
    // SAFETY: killing the init this test made (the whole thread group).
    unsafe { libc::kill(init, libc::SIGKILL) };
    let t = stuck_as(&d, &cg, init, "zombie-workload", 1);
    assert_eq!(t["init_state"], "Z", "{t:#}");
    assert_eq!(t["members"][0]["pid"], member, "{t:#}");
    drop(holder);
    reap(member);
    released(&d, &cg, init);
    drop(unshare);
    reap(init);
}
