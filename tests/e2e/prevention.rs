//! Prevention: the `zombie-init` RuntimeClass through a real containerd and runc. The
//! node is set up by `zombie-init-runtime install` itself (into a temp prefix, on the
//! harness's containerd config), pods opt in with CRI's `runtime_handler` as the kubelet
//! does for `runtimeClassName`, and the daemon reports what happens in both kinds of pod.
//!
//! Every runc call the wrapper hands over goes through a tracing shim (a two-line script
//! named by `ZOMBIE_INIT_RUNC`) that appends its arguments to a file before it execs runc:
//! that file is the proof that a command passed through the wrapper.

use std::{
    collections::HashMap,
    fs,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use k8s_cri::v1::{
    ContainerStatusRequest, LinuxContainerResources, RemoveContainerRequest, StopContainerRequest,
    UpdateContainerResourcesRequest,
};
use serde_json::Value;

use crate::{
    SECOND,
    containerd::{BUSYBOX_IMAGE, Containerd},
    harness::{self, Daemon, poll},
};

const HANDLER: &str = "zombie-init";
/// A `sh -c` PID 1 (the seeds' case): a subshell starts `N` sleepers and exits at once, so
/// they are orphans handed to PID 1; PID 1 then becomes `sleep`, which never reaps.
const ORPHANS: usize = 5;
const ORPHAN_SECONDS: &str = "2";

fn orphan_maker() -> String {
    let sleepers = format!("sleep {ORPHAN_SECONDS} & ").repeat(ORPHANS);
    format!("( {sleepers}) ; exec sleep 3600")
}

/// A node with the wrapper installed, its containerd, and the files the test reads.
struct Node {
    c: Containerd,
    scratch: Scratch,
}

/// A temp dir of ours (install prefix, logs), removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

impl Node {
    fn start() -> Self {
        Self::start_with(false)
    }

    /// With containerd 2.x (a version 3 config) when `containerd2`, else Debian's 1.6.
    fn start_with(containerd2: bool) -> Self {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let scratch = Scratch(std::env::temp_dir().join(format!(
            "zombie-prevention-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        )));
        let dir = scratch.0.clone();
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        // The tracing shim in front of the real runc.
        let runc = which("runc");
        let trace = dir.join("runc-trace");
        fs::write(
            &trace,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
                dir.join("runc-calls.log").display(),
                runc.display()
            ),
        )
        .unwrap();
        fs::set_permissions(&trace, fs::Permissions::from_mode(0o755)).unwrap();
        let log = dir.join("wrapper.log");
        let env = [
            ("ZOMBIE_INIT_RUNC", trace.as_os_str()),
            ("ZOMBIE_INIT_LOG", log.as_os_str()),
        ];
        let prefix = dir.join("opt/zombie-init");
        let install = |_: &Path, config: &Path| {
            // The README's node install, on this containerd's config.
            let out = Command::new(harness::init_runtime_bin())
                .args(["install", "--init", "/usr/bin/tini-static", "--prefix"])
                .arg(&prefix)
                .arg("--containerd-config")
                .arg(config)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "zombie-init-runtime install failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let c = if containerd2 {
            Containerd::start_containerd2(&env, install)
        } else {
            Containerd::start_prepared(crate::containerd::PAUSE_IMAGE, &env, install)
        };
        Node { c, scratch }
    }

    fn init_path(&self) -> PathBuf {
        self.scratch.0.join("opt/zombie-init/bin/tini-static")
    }

    fn wrapper(&self) -> PathBuf {
        self.scratch
            .0
            .join("opt/zombie-init/bin/zombie-init-runtime")
    }

    fn wrapper_log(&self) -> String {
        fs::read_to_string(self.scratch.0.join("wrapper.log")).unwrap_or_default()
    }

    fn runc_calls(&self) -> Vec<String> {
        fs::read_to_string(self.scratch.0.join("runc-calls.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The daemon, told where this node's injected init is.
    fn daemon(&self) -> Daemon {
        let env = format!("ZOMBIE_INJECTED_INIT={}", self.init_path().display());
        Daemon::start_wrapped(&["env", &env], &["--runtime-endpoint", &self.c.endpoint()])
    }

    /// A host-network pod run by `handler`; returns its sandbox id.
    fn pod(&mut self, name: &str, uid: &str, handler: &str, share_pids: bool) -> String {
        self.c.run_pod_with(
            name,
            "zombie-e2e",
            uid,
            &format!("/kubepods/besteffort/pod{uid}"),
            handler,
            share_pids,
            HashMap::new(),
        )
    }

    /// runc's state of a container, asked through the installed wrapper as the shim does.
    fn runc_state(&self, id: &str) -> Result<Value, String> {
        let out = Command::new(self.wrapper())
            .env("ZOMBIE_INIT_RUNC", self.scratch.0.join("runc-trace"))
            .env("ZOMBIE_INIT_LOG", self.scratch.0.join("wrapper.log"))
            .arg("--root")
            .arg(self.c.dir().join("runc/k8s.io"))
            .args(["state", id])
            .output()
            .unwrap();
        if out.status.success() {
            Ok(serde_json::from_slice(&out.stdout).unwrap())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    fn status(&self, id: &str) -> k8s_cri::v1::ContainerStatus {
        let req = ContainerStatusRequest {
            container_id: id.to_string(),
            verbose: false,
        };
        self.c
            .call("ContainerStatus", |mut s| async move {
                s.container_status(req).await
            })
            .status
            .expect("a container status")
    }

    /// StopContainer with a grace period of `grace` seconds; how long it took.
    fn stop(&self, id: &str, grace: i64) -> Duration {
        let req = StopContainerRequest {
            container_id: id.to_string(),
            timeout: grace,
        };
        let t = Instant::now();
        self.c.call("StopContainer", |mut s| async move {
            s.stop_container(req).await
        });
        t.elapsed()
    }
}

fn which(tool: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(tool))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| panic!("{tool} is missing: run cargo xtask setup --test as root"))
}

/// Waits until `pid` executes `file` (a container's PID 1 is `runc init` until it execs
/// its program, which may be just after StartContainer returns).
fn wait_exe(pid: i32, file: &Path) {
    let want = file_id(file);
    poll(
        &format!("pid {pid} to execute {}", file.display()),
        5 * SECOND,
        || {
            fs::metadata(format!("/proc/{pid}/exe"))
                .is_ok_and(|m| (m.dev(), m.ino()) == want)
                .then_some(())
        },
    );
}

/// Waits until `pid` no longer executes runc (`runc init`), then tells whether it executes
/// `file`.
fn executes(pid: i32, file: &Path) -> bool {
    let runc = file_id(&which("runc"));
    poll(
        &format!("pid {pid} to exec its program"),
        5 * SECOND,
        || {
            fs::metadata(format!("/proc/{pid}/exe"))
                .ok()
                .map(|m| (m.dev(), m.ino()))
                .filter(|id| *id != runc)
        },
    ) == file_id(file)
}

/// Device and inode of a file (a bind mount shows the same ones).
fn file_id(path: &Path) -> (u64, u64) {
    let m = fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (m.dev(), m.ino())
}

/// Live children of `pid` whose command line is `cmdline` (words joined by spaces).
fn children_running(pid: i32, cmdline: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let (state, ppid) = (f.next(), f.next().and_then(|v| v.parse::<i32>().ok()));
        let cmd = fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if ppid == Some(pid) && state != Some("Z") && cmd.trim_end() == cmdline {
            out.push(p);
        }
    }
    out
}

fn gone(pid: i32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

/// The daemon's zombies in pod `pod`.
fn zombies_in(d: &Daemon, pod: &str) -> Vec<Value> {
    d.zombies()
        .into_iter()
        .filter(|z| z["pod"] == pod)
        .collect()
}

fn audit_of(d: &Daemon, id: &str) -> Option<Value> {
    d.audit()
        .into_iter()
        .find(|a| a["container_id"].as_str() == Some(id))
}

/// The seeds' case: a `sh -c` PID 1 whose orphans are never reaped leaves N zombies under
/// the default handler and none under `zombie-init`; the daemon reports both (the zombies
/// with a remedy that names the class, the protected container by its init's file).
#[test]
fn a_pid1_that_never_reaps_leaks_under_the_default_handler_and_not_under_zombie_init() {
    let mut n = Node::start();
    let d = n.daemon();
    let script = orphan_maker();
    let cmd = ["sh", "-c", script.as_str()];

    // Under zombie-init first: its orphans are born, then reaped (gone from /proc).
    let sb_protected = n.pod(
        "protected",
        "0f3c2b1a-5d4e-4f60-8a7b-9c8d7e6f5a41",
        HANDLER,
        false,
    );
    let protected = n.c.run_container(&sb_protected, "app", BUSYBOX_IMAGE, &cmd);
    let init = n.c.container_pid(&protected);
    assert!(
        executes(init, &n.init_path()),
        "the container's PID 1 is not the installed init:\n{}",
        n.wrapper_log()
    );
    let sleepers = poll(
        "the protected pod's orphans under its init",
        5 * SECOND,
        || {
            let s = children_running(init, &format!("sleep {ORPHAN_SECONDS}"));
            (s.len() == ORPHANS).then_some(s)
        },
    );
    poll("the orphans exited and were reaped", 10 * SECOND, || {
        sleepers.iter().all(|p| gone(*p)).then_some(())
    });

    // Then under the default handler: the daemon sees N zombies of its PID 1.
    let sb = n.pod("leaky", "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d", "", false);
    let leaky = n.c.run_container(&sb, "app", BUSYBOX_IMAGE, &cmd);
    let pid1 = n.c.container_pid(&leaky);
    let zs = poll("the default pod's zombies in /zombies", 10 * SECOND, || {
        let z = zombies_in(&d, "leaky");
        (z.len() == ORPHANS).then_some(z)
    });
    for z in &zs {
        assert_eq!(z["ppid"].as_i64(), Some(i64::from(pid1)), "{z:#}");
        assert_eq!(z["cause"], "pid1_not_init", "{z:#}");
        assert!(
            z["remedy"]
                .as_str()
                .unwrap()
                .contains("runtimeClassName: zombie-init"),
            "{z:#}"
        );
    }
    // The daemon applies events in order: it has seen the protected orphans' exits and
    // reaps, which came first, and lists none of them.
    let protected_zombies = zombies_in(&d, "protected");
    assert!(protected_zombies.is_empty(), "{protected_zombies:#?}");
    for p in &sleepers {
        assert!(!d.has_pid(*p), "orphan {p} of the protected pod is listed");
    }

    // The audit names the injected init by its file, not its name; the metric counts it.
    let a = poll("the audit of the protected container", 20 * SECOND, || {
        audit_of(&d, &protected)
    });
    assert_eq!(a["injected_init"], true, "{a:#}");
    assert_eq!(a["kind"], "init", "{a:#}");
    assert_eq!(a["reaps"], true, "{a:#}");
    assert_eq!(a["verdict"], "ok", "{a:#}");
    let a = audit_of(&d, &leaky).expect("an audit of the leaky container");
    assert_eq!(a["injected_init"], false, "{a:#}");
    assert!(
        a["verdict"]
            .as_str()
            .unwrap()
            .contains("runtimeClassName: zombie-init"),
        "{a:#}"
    );
    // The pods' sandboxes (pause) are left alone: one container counts.
    let sandbox = n.c.sandbox_pid(&sb_protected);
    assert!(!executes(sandbox, &n.init_path()));
    poll("zombie_injected_init_containers = 1", 20 * SECOND, || {
        (d.metric("zombie_injected_init_containers") == 1.0).then_some(())
    });
    assert!(
        n.wrapper_log()
            .lines()
            .any(|l| l.contains(&protected) && l.contains("started under the init")),
        "{}",
        n.wrapper_log()
    );
}

/// When a pod under `zombie-init` still leaks (a live parent that never waits, which no
/// init can fix), the diagnosis says so.
#[test]
fn a_leak_under_zombie_init_is_diagnosed_as_one_the_class_cannot_fix() {
    let mut n = Node::start();
    let d = n.daemon();
    let sb = n.pod(
        "still-leaky",
        "2b3c4d5e-6f70-4a8b-9cad-bec0d1e2f3a4",
        HANDLER,
        false,
    );
    // The application (not PID 1: the init is) forks children it never waits for.
    let cid = n.c.run_container(
        &sb,
        "app",
        BUSYBOX_IMAGE,
        &["sh", "-c", "sleep 0 & sleep 0 & exec sleep 3600"],
    );
    let init = n.c.container_pid(&cid);
    wait_exe(init, &n.init_path());
    let zs = poll("2 zombies of the application", 10 * SECOND, || {
        let z = zombies_in(&d, "still-leaky");
        (z.len() == 2).then_some(z)
    });
    for z in &zs {
        assert_ne!(z["ppid"].as_i64(), Some(i64::from(init)), "{z:#}");
        assert_eq!(z["cause"], "parent_not_waiting", "{z:#}");
        let remedy = z["remedy"].as_str().unwrap();
        assert!(
            remedy.starts_with(&format!(
                "the pod runs under the zombie-init RuntimeClass (its injected init is pid {init}) and still leaks"
            )),
            "{remedy}"
        );
    }
}

/// StopContainer ends a wrapped container within its grace period, with the application's
/// own exit code, or the signal that ended it (128 + n, as runc reports an unwrapped one).
#[test]
fn stop_container_ends_a_wrapped_container_with_the_applications_exit_code() {
    let mut n = Node::start();
    let sb = n.pod(
        "stopping",
        "3c4d5e6f-7081-4b9c-8dbe-cfd0e1f2a3b4",
        HANDLER,
        false,
    );
    // A script that traps SIGTERM and exits 42; its foreground `sleep` is in the same
    // process group, so the init's -g sends it SIGTERM too and the trap runs at once.
    let trapper = n.c.run_container(
        &sb,
        "trapper",
        BUSYBOX_IMAGE,
        &["sh", "-c", "trap 'exit 42' TERM; while :; do sleep 1; done"],
    );
    // An application with no SIGTERM handler: as a namespace's PID 1 it would ignore
    // SIGTERM and be killed after the grace period; under the init, SIGTERM ends it.
    let plain =
        n.c.run_container(&sb, "plain", BUSYBOX_IMAGE, &["sleep", "3600"]);
    for id in [&trapper, &plain] {
        wait_exe(n.c.container_pid(id), &n.init_path());
    }
    // Let the trap be set before the signal comes.
    poll("the trapper's first sleep", 5 * SECOND, || {
        let init = n.c.container_pid(&trapper);
        let sh = children_running(init, "sh -c trap 'exit 42' TERM; while :; do sleep 1; done");
        sh.first()
            .and_then(|sh| children_running(*sh, "sleep 1").first().copied())
    });
    let grace = 10;
    for (id, want) in [(&trapper, 42), (&plain, 128 + libc::SIGTERM)] {
        let took = n.stop(id, grace);
        let s = n.status(id);
        assert_eq!(
            s.state,
            k8s_cri::v1::ContainerState::ContainerExited as i32,
            "{s:?}"
        );
        assert_eq!(s.exit_code, want, "{s:?}");
        assert!(
            took < Duration::from_secs(grace as u64),
            "StopContainer took {took:?}: the grace period ran out"
        );
        eprintln!(
            "prevention: StopContainer of {id} took {took:?}, exit {}",
            s.exit_code
        );
    }
}

/// An exec-probe style ExecSync leaves an orphan: under the default handler the
/// application PID 1 never reaps it, under `zombie-init` the init does.
#[test]
fn an_exec_sync_orphan_is_reaped_under_zombie_init() {
    let mut n = Node::start();
    let d = n.daemon();
    // The orphan lets go of the exec's output, or ExecSync would wait for it to exit.
    let probe = ["sh", "-c", "sleep 2 </dev/null >/dev/null 2>&1 & exit 0"];

    let sb = n.pod(
        "probed",
        "4d5e6f70-8192-4cad-9ecf-d0e1f2a3b4c5",
        HANDLER,
        false,
    );
    let protected =
        n.c.run_container(&sb, "app", BUSYBOX_IMAGE, &["sleep", "3600"]);
    let init = n.c.container_pid(&protected);
    wait_exe(init, &n.init_path());
    assert_eq!(n.c.exec_sync(&protected, &probe, 10), Ok(0));
    let orphan = poll("the probe's orphan under the init", 5 * SECOND, || {
        children_running(init, "sleep 2").first().copied()
    });
    poll("the orphan exited and was reaped", 10 * SECOND, || {
        gone(orphan).then_some(())
    });

    let sb = n.pod(
        "probed-leaky",
        "5e6f7081-92a3-4dbe-afd0-e1f2a3b4c5d6",
        "",
        false,
    );
    let leaky =
        n.c.run_container(&sb, "app", BUSYBOX_IMAGE, &["sleep", "3600"]);
    let pid1 = n.c.container_pid(&leaky);
    assert_eq!(n.c.exec_sync(&leaky, &probe, 10), Ok(0));
    let z = poll(
        "the leaky pod's exec orphan in /zombies",
        10 * SECOND,
        || zombies_in(&d, "probed-leaky").into_iter().next(),
    );
    assert_eq!(z["ppid"].as_i64(), Some(i64::from(pid1)), "{z:#}");
    assert_eq!(z["origin"]["kind"], "exec", "{z:#}");
    assert!(
        z["remedy"]
            .as_str()
            .unwrap()
            .contains("runtimeClassName: zombie-init"),
        "{z:#}"
    );
    // In order: the protected orphan's exit and reap came first.
    assert!(zombies_in(&d, "probed").is_empty());
    assert!(!d.has_pid(orphan));
}

/// Every runc command the shim and an operator use passes through the wrapper untouched:
/// create, start, state, exec, pause, resume, update, kill and delete.
#[test]
fn runc_commands_pass_through_the_wrapper() {
    let mut n = Node::start();
    let sb = n.pod(
        "passthrough",
        "6f708192-a3b4-4ecf-b0e1-f2a3b4c5d6e7",
        HANDLER,
        false,
    );
    let cid =
        n.c.run_container(&sb, "app", BUSYBOX_IMAGE, &["sleep", "3600"]);
    let pid = n.c.container_pid(&cid);

    let state = n.runc_state(&cid).unwrap();
    assert_eq!(state["status"], "running", "{state:#}");
    assert_eq!(state["pid"].as_i64(), Some(i64::from(pid)), "{state:#}");
    // The spec runc holds is the rewritten one.
    let bundle = state["bundle"].as_str().unwrap();
    let spec: Value =
        serde_json::from_slice(&fs::read(Path::new(bundle).join("config.json")).unwrap()).unwrap();
    assert_eq!(
        spec["process"]["args"],
        serde_json::json!(["/.zombie-init", "-g", "--", "sleep", "3600"])
    );

    assert_eq!(n.c.exec_sync(&cid, &["true"], 10), Ok(0));
    assert_eq!(n.c.exec_sync(&cid, &["sh", "-c", "exit 3"], 10), Ok(3));

    n.c.ctr(&["tasks", "pause", &cid]);
    assert_eq!(n.runc_state(&cid).unwrap()["status"], "paused");
    n.c.ctr(&["tasks", "resume", &cid]);
    assert_eq!(n.runc_state(&cid).unwrap()["status"], "running");

    let limit: i64 = 48 << 20;
    let req = UpdateContainerResourcesRequest {
        container_id: cid.clone(),
        linux: Some(LinuxContainerResources {
            memory_limit_in_bytes: limit,
            ..Default::default()
        }),
        ..Default::default()
    };
    n.c.call("UpdateContainerResources", |mut s| async move {
        s.update_container_resources(req).await
    });
    let cgroup = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let memory = memory_limit(&cgroup);
    assert_eq!(memory, Some(limit), "{cgroup}");

    n.stop(&cid, 10);
    let req = RemoveContainerRequest {
        container_id: cid.clone(),
    };
    n.c.call("RemoveContainer", |mut s| async move {
        s.remove_container(req).await
    });
    let e = n.runc_state(&cid).unwrap_err();
    assert!(e.contains("does not exist"), "{e}");

    let calls = n.runc_calls();
    for cmd in [
        "create", "start", "state", "exec", "pause", "resume", "update", "kill", "delete",
    ] {
        assert!(
            calls
                .iter()
                .any(|c| c.split_whitespace().any(|w| w == cmd) && c.contains(&cid)),
            "no `{cmd}` of {cid} went through the wrapper:\n{}",
            calls.join("\n")
        );
    }
}

/// The memory limit of a process's cgroup (v1 `memory.limit_in_bytes` or v2 `memory.max`).
fn memory_limit(proc_cgroup: &str) -> Option<i64> {
    for line in proc_cgroup.lines() {
        let mut f = line.splitn(3, ':');
        let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
        let file = if controllers.split(',').any(|c| c == "memory") {
            format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes")
        } else if controllers.is_empty() {
            let v2 = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
                .iter()
                .map(|r| format!("{r}{path}/memory.max"))
                .find(|p| Path::new(p).exists());
            match v2 {
                Some(p) => p,
                None => continue,
            }
        } else {
            continue;
        };
        if let Some(v) = fs::read_to_string(&file)
            .ok()
            .and_then(|t| t.trim().parse::<i64>().ok())
        {
            return Some(v);
        }
    }
    None
}

/// A read-only root filesystem: the init's mount point is made before runc makes the root
/// read-only, and orphans are reaped as anywhere.
#[test]
fn a_read_only_root_filesystem_runs_under_zombie_init() {
    let mut n = Node::start();
    let sb = n.pod(
        "readonly",
        "708192a3-b4c5-4fd0-81f2-a3b4c5d6e7f8",
        HANDLER,
        false,
    );
    let script = orphan_maker();
    let cid = n.c.run_container_with(
        &sb,
        "app",
        BUSYBOX_IMAGE,
        &["sh", "-c", script.as_str()],
        |cfg| {
            cfg.linux
                .as_mut()
                .unwrap()
                .security_context
                .as_mut()
                .unwrap()
                .readonly_rootfs = true;
        },
    );
    let init = n.c.container_pid(&cid);
    wait_exe(init, &n.init_path());
    // The root really is read-only.
    assert_ne!(n.c.exec_sync(&cid, &["touch", "/written"], 10), Ok(0));
    let sleepers = poll("the orphans under the init", 5 * SECOND, || {
        let s = children_running(init, &format!("sleep {ORPHAN_SECONDS}"));
        (s.len() == ORPHANS).then_some(s)
    });
    poll("the orphans reaped", 10 * SECOND, || {
        sleepers.iter().all(|p| gone(*p)).then_some(())
    });
    assert!(crate::containerd::zombie_children(init).is_empty());
}

/// A `shareProcessNamespace` pod: the pause process is PID 1 of the pod's namespace, so
/// the wrapper leaves the container as it is and says why in its log; the container runs.
#[test]
fn a_shared_pid_namespace_pod_is_left_alone_and_the_wrapper_says_why() {
    let mut n = Node::start();
    let sb = n.pod(
        "shared",
        "8192a3b4-c5d6-4e01-92a3-b4c5d6e7f809",
        HANDLER,
        true,
    );
    let cid =
        n.c.run_container(&sb, "app", BUSYBOX_IMAGE, &["sleep", "3600"]);
    let pid = n.c.container_pid(&cid);
    assert!(!executes(pid, &n.init_path()));
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert_eq!(cmdline, b"sleep\x003600\x00");
    let log = n.wrapper_log();
    let line = log
        .lines()
        .find(|l| l.contains(&cid))
        .unwrap_or_else(|| panic!("no log line for {cid}:\n{log}"));
    let line: Value = serde_json::from_str(line).unwrap();
    assert_eq!(line["level"], "warning", "{line:#}");
    assert!(
        line["msg"]
            .as_str()
            .unwrap()
            .contains("shareProcessNamespace"),
        "{line:#}"
    );
}

/// A user namespace (containerd 1.6's CRI has none: the wrapper runs under runc directly,
/// as the shim would call it): the init, owned by the host's root, is unmapped inside, and
/// still runs as PID 1 and reaps; the root is read-only too.
#[test]
fn a_user_namespace_container_runs_under_the_injected_init() {
    let scratch = Scratch(
        std::env::temp_dir().join(format!("zombie-prevention-userns-{}", std::process::id())),
    );
    fs::create_dir_all(&scratch.0).unwrap();
    let log = scratch.0.join("wrapper.log");
    let init = PathBuf::from("/usr/bin/tini-static");
    let script = orphan_maker();
    let uid = "a3b4c5d6-e7f8-4091-a2b3-c4d5e6f70819";
    let c = crate::runc::RuncContainer::start_with(
        "zombie-prevention-userns",
        &format!("/kubepods/besteffort/pod{uid}/{}", "ab".repeat(32)),
        &["sh", "-c", script.as_str()],
        crate::runc::Options {
            runtime: Some((
                harness::init_runtime_bin(),
                vec![
                    ("ZOMBIE_INIT_PATH".into(), init.clone()),
                    ("ZOMBIE_INIT_LOG".into(), log.clone()),
                ],
            )),
            user_namespace: true,
            ..Default::default()
        },
    );
    let uid_map = fs::read_to_string(format!("/proc/{}/uid_map", c.pid)).unwrap();
    assert_eq!(
        uid_map.split_whitespace().collect::<Vec<_>>(),
        ["0", "100000", "65536"],
        "not in a user namespace"
    );
    assert!(
        executes(c.pid, &init),
        "{}",
        fs::read_to_string(&log).unwrap_or_default()
    );
    let sleepers = poll("the orphans under the init", 5 * SECOND, || {
        let s = children_running(c.pid, &format!("sleep {ORPHAN_SECONDS}"));
        (s.len() == ORPHANS).then_some(s)
    });
    poll("the orphans reaped", 10 * SECOND, || {
        sleepers.iter().all(|p| gone(*p)).then_some(())
    });
    assert!(crate::containerd::zombie_children(c.pid).is_empty());
}

/// containerd 2.x (Debian sid's, unpacked by the test setup) with a version 3 config: the
/// same install adds the runtime under `io.containerd.cri.v1.runtime`, and a pod under the
/// class has its orphans reaped while one under the default handler keeps them.
#[test]
fn containerd_2_runs_zombie_init_from_a_version_3_config() {
    let mut n = Node::start_with(true);
    let cri =
        n.c.block_on(zombie_daemon::attribution::cri::CriClient::connect(
            &n.c.endpoint(),
        ))
        .unwrap();
    let version = cri.runtime().1.trim_start_matches('v').to_string();
    assert!(version.starts_with("2."), "containerd {version}");
    eprintln!("prevention: containerd {version}");
    let config = fs::read_to_string(n.c.dir().join("config.toml")).unwrap();
    assert!(
        config
            .contains("[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.zombie-init]"),
        "{config}"
    );
    let script = orphan_maker();
    let cmd = ["sh", "-c", script.as_str()];
    let sb = n.pod(
        "v3-protected",
        "b4c5d6e7-f809-4a1b-b2c3-d4e5f6a7b8c9",
        HANDLER,
        false,
    );
    let protected = n.c.run_container(&sb, "app", BUSYBOX_IMAGE, &cmd);
    let init = n.c.container_pid(&protected);
    assert!(executes(init, &n.init_path()), "{}", n.wrapper_log());
    let sb = n.pod(
        "v3-leaky",
        "c5d6e7f8-091a-4b2c-83d4-e5f6a7b8c9d0",
        "",
        false,
    );
    let leaky = n.c.run_container(&sb, "app", BUSYBOX_IMAGE, &cmd);
    let pid1 = n.c.container_pid(&leaky);
    let sleepers = poll(
        "the protected pod's orphans under its init",
        5 * SECOND,
        || {
            let s = children_running(init, &format!("sleep {ORPHAN_SECONDS}"));
            (s.len() == ORPHANS).then_some(s)
        },
    );
    poll(
        "the default pod's orphans as zombies of its PID 1",
        10 * SECOND,
        || (crate::containerd::zombie_children(pid1).len() == ORPHANS).then_some(()),
    );
    poll("the protected orphans reaped", 10 * SECOND, || {
        sleepers.iter().all(|p| gone(*p)).then_some(())
    });
    assert!(crate::containerd::zombie_children(init).is_empty());
    let calls = n.runc_calls();
    assert!(
        calls
            .iter()
            .any(|c| c.contains("create") && c.contains(&protected)),
        "{calls:?}"
    );
}
