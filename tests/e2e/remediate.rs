//! Remediation against real processes and a real runc container: each rung clears the
//! zombies it targets, and each guard holds (the protected process counts the signals it
//! received: none).

use std::{os::unix::process::CommandExt, path::PathBuf, time::Duration};

use serde_json::Value;

use crate::{
    SECOND,
    harness::{Daemon, Workload, poll, reap},
    pids, runc,
};

const UID: &str = "5e1f0a2b-3c4d-4e5f-8a6b-7c8d9e0f1a2b";

/// A policy for tests: act at once, short waits, no opt-in; `extra` lines override. The
/// pods of most tests are host processes moved into a kubepods cgroup, with no runtime to
/// vouch for them or name their namespace: the base policy trusts the cgroup path
/// (`verify_with_runtime: false`) and denies no namespace (an unknown one is denied while
/// any is); the test through containerd turns both back on.
fn policy(extra: &str) -> PathBuf {
    let base = "min_zombies: 2\nmin_age_seconds: 0\nbackoff_seconds: 600\n\
                max_actions_per_pod_per_hour: 5\nmax_actions_per_node_per_hour: 100\n\
                sigchld_wait_seconds: 1\ngrace_seconds: 1\ninterval_seconds: 0.2\n\
                verify_with_runtime: false\ndeny_namespaces: []\n";
    let mut text = String::new();
    let overridden: Vec<&str> = extra.lines().filter_map(|l| l.split(':').next()).collect();
    for line in base.lines() {
        if !overridden.contains(&line.split(':').next().unwrap()) {
            text.push_str(line);
            text.push('\n');
        }
    }
    if !extra.contains("opt_in_annotation") {
        text.push_str("opt_in_annotation: \"\"\n");
    }
    text.push_str(extra);
    let path = std::env::temp_dir().join(format!(
        "zombie-e2e-policy-{}-{}.yaml",
        std::process::id(),
        crate::harness::free_port()
    ));
    std::fs::write(&path, text).unwrap();
    path
}

/// A pod container's cgroup (cgroupfs driver names) holding a host process, removed on drop.
pub(crate) struct PodCgroup {
    path: String,
}

impl PodCgroup {
    pub(crate) fn adopt(id: &str, pid: i32) -> Self {
        Self::at(
            format!("/kubepods/besteffort/pod{UID}/{}", id.repeat(32)),
            pid,
        )
    }

    /// The cgroup of container `id` in every hierarchy, empty: a child joins it with
    /// [`Self::join_on_exec`].
    pub(crate) fn empty(id: &str) -> Self {
        let path = format!("/kubepods/besteffort/pod{UID}/{}", id.repeat(32));
        for h in runc::hierarchies() {
            std::fs::create_dir_all(h.join(path.trim_start_matches('/'))).unwrap();
        }
        Self { path }
    }

    /// Makes `cmd`'s process join this cgroup before it execs, so everything it forks is
    /// born there.
    pub(crate) fn join_on_exec(&self, cmd: &mut std::process::Command) {
        use std::os::unix::process::CommandExt;
        let procs: Vec<std::path::PathBuf> = runc::hierarchies()
            .iter()
            .map(|h| {
                h.join(self.path.trim_start_matches('/'))
                    .join("cgroup.procs")
            })
            .collect();
        // SAFETY: the closure only writes to files (no locks held across fork in this
        // single-purpose child before exec).
        unsafe {
            cmd.pre_exec(move || {
                // As `at` does: a hierarchy that refuses (a v1 cpuset without cpus) is
                // skipped; attribution reads the ones that take it.
                for p in &procs {
                    let _ = std::fs::write(p, "0");
                }
                Ok(())
            });
        }
    }

    /// Any cgroup path (created in every hierarchy), holding `pid`.
    fn at(path: String, pid: i32) -> Self {
        for h in runc::hierarchies() {
            let dir = h.join(path.trim_start_matches('/'));
            if std::fs::create_dir_all(&dir).is_ok() {
                let _ = std::fs::write(dir.join("cgroup.procs"), pid.to_string());
            }
        }
        Self { path }
    }
}

impl Drop for PodCgroup {
    fn drop(&mut self) {
        std::thread::sleep(Duration::from_millis(100));
        // The process may outlive us (drop order, or a failed test): back to the root
        // cgroup, or the directories could not be removed.
        for h in runc::hierarchies() {
            let dir = h.join(self.path.trim_start_matches('/'));
            let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines() {
                let _ = std::fs::write(h.join("cgroup.procs"), pid);
            }
        }
        let parts: Vec<&str> = self.path.trim_matches('/').split('/').collect();
        for depth in (1..=parts.len()).rev() {
            let rel = parts[..depth].join("/");
            for h in runc::hierarchies() {
                let _ = std::fs::remove_dir(h.join(&rel));
            }
        }
    }
}

fn remediations(d: &Daemon) -> Vec<Value> {
    let (status, body) = d.get("/remediations").expect("GET /remediations");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("/remediations is a JSON array")
}

/// Waits for a decision about `pid` with this action and result.
fn decision(d: &Daemon, pid: i32, action: &str, result: &str, timeout: Duration) -> Value {
    poll(
        &format!("{action}/{result} for {pid} in /remediations"),
        timeout,
        || {
            remediations(d).into_iter().find(|r| {
                r["pid"].as_i64() == Some(pid as i64)
                    && r["action"] == action
                    && r["result"] == result
            })
        },
    )
}

/// `zombie_remediation_passes_total`: looks the remediation loop completed.
fn passes(d: &Daemon) -> u64 {
    let (status, m) = d.get("/metrics").expect("GET /metrics");
    assert_eq!(status, 200, "{m}");
    m.lines()
        .find_map(|l| l.strip_prefix("zombie_remediation_passes_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no zombie_remediation_passes_total in /metrics:\n{m}"))
}

/// Waits until the remediation loop has decided (and carried out what it decided) `n`
/// more times from now: what it would have sent, it has sent. The pass in progress when
/// this starts may have read the table before the caller's last step, so it does not
/// count.
fn after_passes(d: &Daemon, n: u64) {
    let from = passes(d);
    poll(
        &format!("{n} more remediation passes after {from}"),
        10 * SECOND,
        || (passes(d) > from + n).then_some(()),
    );
}

fn counts(w: &mut Workload) -> (u64, u64) {
    w.send("counts");
    let c = w.read_json();
    (
        c["sigchld"].as_u64().unwrap(),
        c["sigterm"].as_u64().unwrap(),
    )
}

fn start(mode: &str, policy_extra: &str) -> Daemon {
    start_with(mode, policy_extra, &[])
}

fn start_with(mode: &str, policy_extra: &str, args: &[&str]) -> Daemon {
    let path = policy(policy_extra);
    let p = path.to_str().unwrap().to_string();
    let mut all = vec!["--remediate", mode, "--policy", &p];
    all.extend_from_slice(args);
    let d = Daemon::start_with(&all);
    let _ = std::fs::remove_file(path);
    d
}

#[test]
fn rung1_sigchld_through_a_pidfd_clears_a_parent_that_reaps_when_told() {
    let (mut w, hello) = Workload::spawn(&["signals", "3", "reap-on-sigchld"]);
    let _cg = PodCgroup::adopt("d1", w.pid());
    let d = start("on", "");
    let r = decision(&d, w.pid(), "sigchld", "done", 5 * SECOND);
    assert_eq!(r["cause"], "parent_not_waiting", "{r}");
    assert_eq!(r["zombies"], 3, "{r}");
    // Counted only after /proc confirmed each one, and again just before the signal.
    assert_eq!(r["confirmed_zombies"], 3, "{r}");
    assert!(
        r["reason"]
            .as_str()
            .unwrap()
            .contains("3 zombies confirmed in /proc just before"),
        "{r}"
    );
    assert!(r["time"].as_str().unwrap().ends_with('Z'));
    poll("the zombies reaped", 3 * SECOND, || {
        pids(&hello, "children")
            .iter()
            .all(|p| !d.has_pid(*p))
            .then_some(())
    });
    let cleared = decision(&d, w.pid(), "none", "done", 3 * SECOND);
    assert!(
        cleared["reason"]
            .as_str()
            .unwrap()
            .contains("cleared after sigchld")
    );
    assert_eq!(counts(&mut w), (1, 0), "one SIGCHLD, never a SIGTERM");
    let (_, m) = d.get("/metrics").unwrap();
    assert!(
        m.contains("zombie_remediations_total{action=\"sigchld\",result=\"done\"} 1"),
        "{m}"
    );
}

/// After the load the daemon keeps CAP_KILL (and CAP_SYS_PTRACE, for /proc) and nothing
/// else, and that is what it takes to signal another user's process.
#[test]
fn with_only_cap_kill_left_another_users_parent_is_nudged() {
    let (mut w, hello) = Workload::spawn_cmd(
        std::process::Command::new(crate::harness::workload_bin())
            .args(["signals", "3", "reap-on-sigchld"])
            .uid(65534)
            .gid(65534),
    );
    let _cg = PodCgroup::adopt("f1", w.pid());
    let d = start("on", "");
    const CAP_KILL: u64 = 1 << 5;
    const CAP_SYS_PTRACE: u64 = 1 << 19;
    for (task, fields) in d.privileges() {
        for (k, v) in fields {
            let want = match k.as_str() {
                "CapEff" | "CapPrm" | "CapBnd" => CAP_KILL | CAP_SYS_PTRACE,
                "NoNewPrivs" => 1,
                "Seccomp" => 2,
                _ => 0,
            };
            assert_eq!(v, want, "{task}: {k} is {v:#x}");
        }
    }
    decision(&d, w.pid(), "sigchld", "done", 5 * SECOND);
    poll("the zombies reaped", 3 * SECOND, || {
        pids(&hello, "children")
            .iter()
            .all(|p| !d.has_pid(*p))
            .then_some(())
    });
    assert_eq!(counts(&mut w), (1, 0), "one SIGCHLD");
}

#[test]
fn rung2_sigterm_then_sigkill_hands_the_zombies_to_the_reaper() {
    let (mut w, hello) = Workload::spawn(&["signals", "3", "deaf"]);
    let kids = pids(&hello, "children");
    let _cg = PodCgroup::adopt("d2", w.pid());
    let d = start("on", "");
    decision(&d, w.pid(), "sigchld", "done", 5 * SECOND);
    decision(&d, w.pid(), "sigterm", "done", 5 * SECOND);
    // It counts SIGTERM and lives on: SIGKILL after the grace period.
    decision(&d, w.pid(), "sigkill", "done", 5 * SECOND);
    assert_eq!(w.wait(), None, "killed by a signal");
    // Its zombies were handed to us (the subreaper, as a container's init): we reap them,
    // and we, a host process, were never signalled.
    for pid in &kids {
        reap(*pid);
    }
    poll("the zombies gone", 3 * SECOND, || {
        kids.iter().all(|p| !d.has_pid(*p)).then_some(())
    });
    let order: Vec<String> = remediations(&d)
        .iter()
        .filter(|r| r["pid"].as_i64() == Some(w.pid() as i64))
        .map(|r| {
            format!(
                "{}/{}",
                r["action"].as_str().unwrap(),
                r["result"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        &order[..3],
        ["sigchld/done", "sigterm/done", "sigkill/done"],
        "{order:?}"
    );
}

#[test]
fn rung3_a_non_reaping_pid1_is_ended_so_its_container_restarts() {
    let wl = crate::harness::workload_bin().display().to_string();
    let c = runc::RuncContainer::start_with(
        "zombie-remediate-d3",
        &format!("/kubepods/besteffort/pod{UID}/{}", "d3".repeat(32)),
        &["/bin/zombie-workload", "pid1-orphans", "3"],
        runc::Options {
            bins: &[wl.as_str()],
            ..Default::default()
        },
    );
    let d = start("on", "pid1_action: signal\n");
    poll("4 zombies under the container's PID 1", 5 * SECOND, || {
        (d.children_of(c.pid).len() == 4).then_some(())
    });
    let r = decision(&d, c.pid, "sigchld", "done", 5 * SECOND);
    assert_eq!(r["cause"], "pid1_not_init", "{r}");
    // A namespace's init ignores SIGTERM without a handler; SIGKILL ends it.
    decision(&d, c.pid, "sigkill", "done", 5 * SECOND);
    poll("the PID 1's zombies gone", 5 * SECOND, || {
        d.children_of(c.pid).is_empty().then_some(())
    });
}

/// A real containerd and real pod names: a non-reaping PID 1 in an opted-in pod is stopped
/// through CRI StopContainer; the same in a kube-system pod (denied) is left alone.
#[test]
fn rung3_stop_container_through_cri_and_a_denied_namespace_is_left_alone() {
    use crate::containerd::{BUSYBOX_IMAGE, Containerd, zombie_children};
    let mut c = Containerd::start();
    let opt_in = std::collections::HashMap::from([(
        "zombie-daemon.io/remediate".to_string(),
        "true".to_string(),
    )]);
    let leaky = |c: &mut Containerd, ns: &str, uid: &str| {
        let parent = format!("/kubepods/besteffort/pod{uid}");
        let sandbox = c.run_pod_annotated("leaky", ns, uid, &parent, opt_in.clone());
        // Two children exit before PID 1 becomes `sleep`, which never waits.
        let id = c.run_container(
            &sandbox,
            "app",
            BUSYBOX_IMAGE,
            &["sh", "-c", "sleep 0 & sleep 0 & exec sleep 3600"],
        );
        let pid = c.container_pid(&id);
        poll("2 zombies under PID 1", 5 * SECOND, || {
            (zombie_children(pid).len() == 2).then_some(())
        });
        (id, pid)
    };
    let (id, pid) = leaky(&mut c, "zombie-e2e", "7d1e2f3a-4b5c-4d6e-9f70-8a9b0c1d2e3f");
    let (_, denied) = leaky(
        &mut c,
        "kube-system",
        "8e2f3a4b-5c6d-4e7f-a081-9b0c1d2e3f40",
    );
    let d = start_with(
        "on",
        "opt_in_annotation: zombie-daemon.io/remediate\nverify_with_runtime: true\n\
         deny_namespaces: [kube-system]\n",
        &["--runtime-endpoint", &c.endpoint()],
    );
    let r = decision(&d, pid, "stop_container", "done", 15 * SECOND);
    // Each action confirmed its zombies in /proc first, and said so; the runtime vouched
    // for the container (else the action would have failed).
    let first = decision(&d, pid, "sigchld", "done", SECOND);
    assert_eq!(first["confirmed_zombies"], 2, "{first}");
    assert!(
        first["reason"]
            .as_str()
            .unwrap()
            .contains("2 zombies confirmed in /proc"),
        "{first}"
    );
    assert_eq!(r["confirmed_zombies"], 2, "{r}");
    assert_eq!(r["namespace"], "zombie-e2e", "{r}");
    assert_eq!(r["pod"], "leaky", "{r}");
    assert_eq!(r["container"], "app", "{r}");
    assert_eq!(r["container_id"], id.as_str(), "{r}");
    assert_eq!(r["cause"], "pid1_not_init", "{r}");
    poll("the stopped container's zombies gone", 10 * SECOND, || {
        d.children_of(pid).is_empty().then_some(())
    });
    // Until the runtime's names are known the pod cannot show its opt-in either, so the
    // first refusals may say that; once named, the denied namespace is the reason.
    poll(
        "the denied pod refused for its namespace",
        10 * SECOND,
        || {
            remediations(&d).into_iter().find(|r| {
                r["pid"].as_i64() == Some(denied as i64)
                    && r["action"] == "sigchld"
                    && r["result"] == "refused"
                    && r["reason"]
                        .as_str()
                        .is_some_and(|s| s.contains("kube-system"))
            })
        },
    );
    // The denied pod's PID 1 was never stopped: still there, with its zombies.
    assert_eq!(zombie_children(denied).len(), 2);
    assert!(
        remediations(&d)
            .iter()
            .all(|r| r["pid"].as_i64() != Some(denied as i64) || r["result"] == "refused")
    );
}

/// A process in a delegated subtree (here a top-level cgroup that is not the kubepods root)
/// names a pod and a container in its own path: it is no pod, so with host processes not
/// allowed nothing is done to it, and `/zombies` does not credit the pod.
#[test]
fn a_pod_path_forged_below_another_cgroup_is_no_pod_and_is_left_alone() {
    let (mut w, hello) = Workload::spawn(&["signals", "3", "deaf"]);
    let kids = pids(&hello, "children");
    let _cg = PodCgroup::at(
        format!(
            "/zombie-e2e-delegated.slice/kubepods/besteffort/pod{UID}/{}",
            "fb".repeat(32)
        ),
        w.pid(),
    );
    let d = start("on", "");
    let r = decision(&d, w.pid(), "sigchld", "refused", 5 * SECOND);
    assert!(
        r["reason"].as_str().unwrap().contains("not in a pod"),
        "{r}"
    );
    assert_eq!(r["pod"], Value::Null, "{r}");
    let z = poll("a zombie of the forged parent listed", 5 * SECOND, || {
        d.zombies()
            .into_iter()
            .find(|z| z["pid"].as_i64() == Some(kids[0] as i64))
    });
    assert_ne!(z["owner"], "pod", "{z}");
    assert_eq!(z["pod_uid"], Value::Null, "{z}");
    assert_eq!(z["container_id"], Value::Null, "{z}");
    after_passes(&d, 3);
    assert_eq!(
        counts(&mut w),
        (0, 0),
        "the forged pod's process was signalled"
    );
    w.send("reap");
    w.read_json();
}

/// A parent whose name (its executable's, so its comm) carries a newline and a terminal
/// sequence: the text log shows them as text, on the one line of its decision.
#[test]
fn a_hostile_comm_cannot_forge_a_text_log_line() {
    const NAME: &str = "p\nFORGED\x1b[2J";
    let dir = std::env::temp_dir().join(format!("zombie-e2e-logname-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join(NAME);
    std::fs::copy(crate::harness::workload_bin(), &exe).unwrap();
    let (w, _) =
        Workload::spawn_cmd(std::process::Command::new(&exe).args(["signals", "3", "deaf"]));
    let _cg = PodCgroup::adopt("d9", w.pid());
    let d = start_with("dry-run", "", &["--log-format", "text"]);
    let r = decision(&d, w.pid(), "sigchld", "dry_run", 5 * SECOND);
    assert_eq!(r["comm"], NAME, "JSON carries it exactly: {r}");
    let log = poll("the decision in the log", 5 * SECOND, || {
        let log = d.log_text();
        log.contains("remediation decision").then_some(log)
    });
    assert!(!log.contains('\x1b'), "{log:?}");
    assert!(!log.lines().any(|l| l.starts_with("FORGED")), "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("remediation decision"))
        .unwrap();
    assert!(line.contains("p\\nFORGED\\x1b[2J"), "{line}");
    drop(d);
    drop(w);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn dry_run_decides_the_whole_ladder_and_signals_nothing() {
    let (mut w, _) = Workload::spawn(&["signals", "3", "deaf"]);
    let _cg = PodCgroup::adopt("d4", w.pid());
    let d = start_with("dry-run", "", &["--log-format", "json"]);
    decision(&d, w.pid(), "sigchld", "dry_run", 5 * SECOND);
    decision(&d, w.pid(), "sigkill", "dry_run", 5 * SECOND);
    // Each decision is one structured JSON log line.
    let logged: Vec<Value> = d
        .log_text()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["message"] == "remediation decision")
        .collect();
    assert!(
        logged
            .iter()
            .any(|l| l["pid"].as_i64() == Some(w.pid() as i64)
                && l["action"] == "sigterm"
                && l["result"] == "dry_run"
                && l["reason"].as_str().is_some()),
        "{logged:?}"
    );
    after_passes(&d, 3);
    assert_eq!(counts(&mut w), (0, 0), "dry-run sent a signal");
    assert_eq!(d.children_of(w.pid()).len(), 3);
    assert!(
        remediations(&d)
            .iter()
            .all(|r| r["result"] != "done" || r["action"] == "none"),
        "{:?}",
        remediations(&d)
    );
}

#[test]
fn guards_hold_for_host_processes_unopted_pods_and_rate_limits() {
    // A host process, while host processes are not allowed.
    let (mut host, _) = Workload::spawn(&["signals", "3", "deaf"]);
    // A pod that has not opted in.
    let (mut unopted, _) = Workload::spawn(&["signals", "3", "deaf"]);
    let _cg = PodCgroup::adopt("d5", unopted.pid());
    let d = start("on", "opt_in_annotation: zombie-daemon.io/remediate\n");
    let r = decision(&d, host.pid(), "sigchld", "refused", 5 * SECOND);
    assert!(
        r["reason"].as_str().unwrap().contains("not in a pod"),
        "{r}"
    );
    let r = decision(&d, unopted.pid(), "sigchld", "refused", 5 * SECOND);
    assert!(r["reason"].as_str().unwrap().contains("opted in"), "{r}");
    // The daemon never acts on itself nor on us (we are host processes).
    after_passes(&d, 3);
    assert_eq!(counts(&mut host), (0, 0));
    assert_eq!(counts(&mut unopted), (0, 0));
    // Nothing at all was done: not to them, nor to us or the daemon (host processes).
    assert!(
        remediations(&d).iter().all(|r| r["result"] != "done"),
        "{:?}",
        remediations(&d)
    );
    let (_, m) = d.get("/metrics").unwrap();
    assert!(
        m.contains("zombie_remediations_total{action=\"sigchld\",result=\"refused\"}"),
        "{m}"
    );
}

#[test]
fn never_beyond_the_node_rate_limit_and_never_the_same_rung_twice() {
    // Node limit 1: the first pod is acted on, the second is refused.
    let (mut a, _) = Workload::spawn(&["signals", "3", "deaf"]);
    let (mut b, _) = Workload::spawn(&["signals", "3", "deaf"]);
    let _ca = PodCgroup::adopt("d6", a.pid());
    let _cb = PodCgroup::adopt("e6", b.pid());
    let d = start(
        "on",
        "max_actions_per_node_per_hour: 1\nsigchld_wait_seconds: 600\n",
    );
    let first = poll("one sigchld", 5 * SECOND, || {
        remediations(&d)
            .into_iter()
            .find(|r| r["action"] == "sigchld" && r["result"] == "done")
    });
    let (acted, other) = if first["pid"].as_i64() == Some(a.pid() as i64) {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    let r = decision(&d, other.pid(), "sigchld", "refused", 5 * SECOND);
    assert!(
        r["reason"]
            .as_str()
            .unwrap()
            .contains("max_actions_per_node_per_hour"),
        "{r}"
    );
    after_passes(&d, 3);
    assert_eq!(counts(other), (0, 0));
    // Still waiting after its one SIGCHLD: not signalled again.
    assert_eq!(counts(acted), (1, 0));
}

/// A second batch of zombies from the same process, within the backoff, is refused.
#[test]
fn never_the_same_process_twice_within_the_backoff() {
    let (mut w, _) = Workload::spawn(&["signals", "3", "reap-on-sigchld"]);
    let _cg = PodCgroup::adopt("d7", w.pid());
    let d = start("on", "");
    decision(&d, w.pid(), "none", "done", 5 * SECOND);
    w.send("more 3");
    let more = pids(&w.read_json(), "children");
    poll("the new zombies", 3 * SECOND, || {
        more.iter().all(|p| d.has_pid(*p)).then_some(())
    });
    let r = decision(&d, w.pid(), "sigchld", "refused", 5 * SECOND);
    assert!(r["reason"].as_str().unwrap().contains("backoff"), "{r}");
    after_passes(&d, 3);
    assert_eq!(counts(&mut w), (0, 0), "signalled again within the backoff");
    assert_eq!(d.children_of(w.pid()).len(), 3);
    w.send("reap");
    w.read_json();
}

/// Host processes whose executables are kubelet and the container runtime, with zombies,
/// are never signalled, whatever the policy allows; the same executables in a pod are
/// processes like any other (a tenant names its own files).
#[test]
fn kubelet_and_the_runtime_are_never_touched() {
    // Host processes of the node, in its mount namespace.
    let node = crate::harness::NodePrograms::new("protected");
    let mut procs = Vec::new();
    for name in [
        "kubelet",
        "containerd-shim-runc-v2",
        "runc",
        "crio",
        "dockerd",
    ] {
        let (w, _) = Workload::spawn_cmd(node.command(name).args(["signals", "3", "deaf"]));
        procs.push(w);
    }
    // A pod's process whose executable is called kubelet (a copy in the test's own files).
    struct RmDir(std::path::PathBuf);
    impl Drop for RmDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let dir = std::env::temp_dir().join(format!("zombie-e2e-protected-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let _rm = RmDir(dir.clone());
    std::fs::copy(crate::harness::workload_bin(), dir.join("kubelet")).unwrap();
    let (mut impostor, _) = Workload::spawn_cmd(
        std::process::Command::new(dir.join("kubelet")).args(["signals", "3", "deaf"]),
    );
    let _impostor_cg = PodCgroup::adopt("fa", impostor.pid());
    // Host processes are allowed here: the test process must not be one with zombies.
    let left = crate::harness::reap_leftovers();
    if left > 0 {
        eprintln!("reaped {left} children earlier tests left behind");
    }
    let d = start("dry-run", "allow_host_processes: true\n");
    for w in &procs {
        let r = decision(&d, w.pid(), "sigchld", "refused", 5 * SECOND);
        assert!(
            r["reason"].as_str().unwrap().contains("node component"),
            "{r}"
        );
    }
    let r = decision(&d, impostor.pid(), "sigchld", "dry_run", 5 * SECOND);
    assert_eq!(r["comm"], "kubelet", "{r}");
    after_passes(&d, 3);
    assert_eq!(counts(&mut impostor), (0, 0), "dry-run signals nothing");
    drop(d);
    let d = start("on", "allow_host_processes: true\n");
    for w in &procs {
        decision(&d, w.pid(), "sigchld", "refused", 5 * SECOND);
    }
    // 10 looks after the refusals, nothing was sent.
    after_passes(&d, 10);
    for w in &mut procs {
        assert_eq!(counts(w), (0, 0), "a protected process was signalled");
    }
    drop(d);
    drop(procs);
}

#[test]
fn a_bad_policy_file_is_one_clear_error_and_exit_2() {
    let path =
        std::env::temp_dir().join(format!("zombie-e2e-bad-policy-{}.yaml", std::process::id()));
    std::fs::write(&path, "min_zombies: many\n").unwrap();
    let out = std::process::Command::new(crate::harness::daemon_bin())
        .args(["run", "--remediate", "on", "--policy"])
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("remediation policy") && err.contains("min_zombies"),
        "{err}"
    );
}
