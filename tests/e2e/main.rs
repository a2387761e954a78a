//! End-to-end tests: the real daemon with its eBPF programs attached to this kernel, and real
//! processes making zombies. They need root (CI runs them as root via `cargo xtask test`).

mod cgroup2;
mod containerd;
mod daemonset;
mod diagnosis;
mod harness;
mod http_load;
mod kernel;
mod node;
mod prevention;
mod prometheus;
mod provenance;
mod remediate;
mod runc;
mod soak;
mod sweep;

use std::{
    os::unix::process::CommandExt,
    process::Command,
    time::{Duration, Instant},
};

use harness::{Daemon, Reaps, Workload, poll, reap};

pub(crate) const SECOND: Duration = Duration::from_secs(1);

fn pids(v: &serde_json::Value, key: &str) -> Vec<i32> {
    v[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_i64().unwrap() as i32)
        .collect()
}

#[test]
fn a_parent_that_never_waits_shows_its_zombies_until_it_reaps_them() {
    for reaps in Reaps::both("zombie-workload") {
        a_parent_that_never_waits(reaps);
    }
}

fn a_parent_that_never_waits(reaps: Reaps) {
    let d = reaps.start(&["--show-cmdlines"]);
    let (mut w, hello) = Workload::spawn(&["never-wait", "3"]);
    let kids = pids(&hello, "children");

    let found = poll("3 zombies in /zombies", SECOND, || {
        let z = d.children_of(w.pid());
        (z.len() == 3).then_some(z)
    });
    for z in &found {
        assert!(kids.contains(&(z["pid"].as_i64().unwrap() as i32)));
        assert_eq!(z["comm"], "zombie-workload");
        assert_eq!(z["parent_comm"], "zombie-workload");
        assert_eq!(z["exit_code"], 7);
        assert_eq!(z["signal"], serde_json::Value::Null);
        assert_eq!(z["exited_at_estimated"], false);
        assert!(z["age_seconds"].as_f64().unwrap() < 5.0);
        assert!(z["exited_at"].as_str().unwrap().ends_with('Z'));
        assert!(z["cgroup_id"].as_u64().is_some());
    }
    poll("zombie_processes >= 3", SECOND, || {
        (d.metric("zombie_processes") >= 3.0).then_some(())
    });
    // With --show-cmdlines the API names the parent's full command line (it is what to
    // fix); the log, even at debug level, never carries one.
    assert_eq!(
        found[0]["reaper"]["cmdline"]
            .as_str()
            .map(|c| c.ends_with("zombie-workload never-wait 3")),
        Some(true),
        "{}",
        found[0]
    );
    assert!(!d.log_text().contains("never-wait"), "{}", d.log_text());

    let (reaped, unobserved) = (
        d.metric("zombie_reaped_total"),
        d.metric("zombie_reaps_unobserved_total"),
    );
    w.send("reap");
    assert_eq!(w.read_json()["reaped"], 3);
    let t = Instant::now();
    poll("the reaped zombies to disappear", reaps.bound(), || {
        d.children_of(w.pid()).is_empty().then_some(())
    });
    eprintln!("{reaps:?}: gone {:?} after the reap", t.elapsed());
    match reaps {
        Reaps::Seen => {
            assert!(d.metric("zombie_reaped_total") - reaped >= 3.0);
            assert!(d.metric("zombie_reap_latency_seconds_count") >= 3.0);
        }
        // Counted once their free is overdue (the 2 s grace).
        Reaps::Dropped(_) => poll("3 reaps counted unobserved", 2 * reaps.bound(), || {
            (d.metric("zombie_reaps_unobserved_total") - unobserved >= 3.0).then_some(())
        }),
    }
}

/// By default the API shows a command line's program only: arguments often carry secrets,
/// and anyone who reaches the port can read /zombies (and `list`, which reads it).
#[test]
fn command_lines_are_redacted_by_default() {
    let d = Daemon::start();
    let (w, _) = Workload::spawn(&["never-wait", "2"]);
    let found = poll("2 zombies in /zombies", SECOND, || {
        let z = d.children_of(w.pid());
        (z.len() == 2).then_some(z)
    });
    let program = harness::workload_bin().display().to_string();
    for z in &found {
        assert_eq!(
            z["reaper"]["cmdline"].as_str(),
            Some(format!("{program} [redacted]").as_str()),
            "{z}"
        );
    }
    let (_, body) = d.get("/zombies").unwrap();
    assert!(!body.contains("never-wait"), "{body}");
    let out = Command::new(harness::daemon_bin())
        .args(["list", "--json", "--endpoint"])
        .arg(format!("http://127.0.0.1:{}", d.port))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("[redacted]") && !text.contains("never-wait"),
        "{text}"
    );

    // Straight from /proc (`--once`): redacted too, in full with --show-cmdlines.
    let once = |extra: &[&str]| -> Vec<String> {
        let out = Command::new(harness::daemon_bin())
            .args(["list", "--once", "--json"])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let all: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        all.iter()
            .filter(|z| z["ppid"].as_i64() == Some(w.pid() as i64))
            .map(|z| {
                z["reaper"]["cmdline"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    };
    assert_eq!(once(&[]), vec![format!("{program} [redacted]"); 2]);
    assert_eq!(
        once(&["--show-cmdlines"]),
        vec![format!("{program} never-wait 2"); 2]
    );
}

#[test]
fn zombies_disappear_when_their_parent_dies_and_the_reaper_collects_them() {
    for reaps in Reaps::both("zombie-workload") {
        let d = reaps.start(&[]);
        let (mut w, hello) = Workload::spawn(&["never-wait", "2"]);
        let kids = pids(&hello, "children");
        poll("2 zombies", SECOND, || {
            (d.children_of(w.pid()).len() == 2).then_some(())
        });

        // The parent exits; its zombies are handed to us (the subreaper), and we reap them
        // as an init would.
        w.close_stdin();
        w.wait();
        for pid in &kids {
            reap(*pid);
        }
        poll("orphaned zombies to disappear", reaps.bound(), || {
            kids.iter().all(|p| !d.has_pid(*p)).then_some(())
        });
    }
}

#[test]
fn a_non_reaping_pid1_of_a_new_pid_namespace_has_all_its_orphans_counted() {
    for reaps in Reaps::both("zombie-workload") {
        a_non_reaping_pid1(reaps);
    }
}

fn a_non_reaping_pid1(reaps: Reaps) {
    let d = reaps.start(&[]);
    let (mut w, hello) = Workload::spawn_cmd(
        Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
            .arg(harness::workload_bin())
            .args(["pid1-orphans", "5"]),
    );
    assert_eq!(hello["pid"], 1, "the workload is PID 1 of its namespace");
    // The namespace's PID 1, seen from the host: unshare's only child.
    let pid1 = poll("PID 1's host pid", SECOND, || {
        let text = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", w.pid())).ok()?;
        text.split_whitespace().next()?.parse::<i32>().ok()
    });
    // 5 orphans adopted by PID 1, plus the child that made them.
    let zombies = poll("6 zombies under the namespace's PID 1", 3 * SECOND, || {
        let z = d.children_of(pid1);
        (z.len() == 6).then_some(z)
    });
    assert_eq!(zombies.iter().filter(|z| z["exit_code"] == 5).count(), 5);
    assert!(d.metric("zombie_processes") >= 6.0);

    // Killing PID 1 tears the namespace down; the kernel reaps everything in it.
    // SAFETY: signalling a process we started.
    unsafe { libc::kill(pid1, libc::SIGKILL) };
    w.wait();
    poll(
        "the namespace's zombies to disappear",
        reaps.bound(),
        || d.children_of(pid1).is_empty().then_some(()),
    );
}

#[test]
fn children_of_a_parent_that_ignores_sigchld_are_never_counted() {
    let d = Daemon::start();
    let before = d.metric("zombie_autoreaped_total");
    let (w, hello) = Workload::spawn(&["ignore-sigchld", "20"]);
    assert_eq!(pids(&hello, "children").len(), 20);
    poll("20 autoreaped exits", SECOND, || {
        (d.metric("zombie_autoreaped_total") - before >= 20.0).then_some(())
    });
    assert!(
        d.children_of(w.pid()).is_empty(),
        "{:?}",
        d.children_of(w.pid())
    );
}

#[test]
fn a_multithreaded_process_that_exits_is_one_zombie_and_no_thread_is() {
    for reaps in Reaps::both("zombie-workload") {
        let d = reaps.start(&[]);
        let (mut w, hello) = Workload::spawn(&["threads", "8"]);
        assert_eq!(hello["threads"], 9);
        let pid = w.pid();
        // The test is the parent and does not wait yet: the process is a zombie.
        let z = poll("the process's zombie", SECOND, || {
            d.zombies()
                .into_iter()
                .find(|z| z["pid"].as_i64() == Some(pid as i64))
        });
        assert_eq!(z["exit_code"], 3);
        assert_eq!(z["ppid"].as_i64(), Some(std::process::id() as i64));
        // No thread of it is anywhere in the table.
        let ours: Vec<_> = d.children_of(std::process::id() as i32);
        assert_eq!(
            ours.iter()
                .filter(|z| z["comm"] == "zombie-workload")
                .count(),
            1,
            "{ours:?}"
        );
        w.wait();
        poll("reaped", reaps.bound(), || (!d.has_pid(pid)).then_some(()));
    }
}

#[test]
fn a_process_whose_main_thread_exits_first_is_not_a_zombie_until_the_last_thread_exits() {
    for reaps in Reaps::both("zombie-workload") {
        let d = reaps.start(&[]);
        let (mut w, _) = Workload::spawn(&["leader-exits-first", "3", "1500"]);
        let pid = w.pid();
        // A thread forks a marker zombie once /proc shows the leader as Z (its threads run
        // on): when the daemon lists the marker, it has seen the leader's exit.
        let marker = w.read_json()["marker"].as_i64().unwrap() as i32;
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        assert!(
            state.contains(") Z "),
            "the leader should look like a zombie in /proc: {state}"
        );
        poll("the marker zombie", SECOND, || {
            d.has_pid(marker).then_some(())
        });
        assert!(!d.has_pid(pid), "counted a live process as a zombie");
        // After the last thread exits it is one.
        poll("the zombie after the last thread exits", 3 * SECOND, || {
            d.has_pid(pid).then_some(())
        });
        w.wait();
        reap(marker);
        poll("reaped", reaps.bound(), || {
            (!d.has_pid(pid) && !d.has_pid(marker)).then_some(())
        });
    }
}

#[test]
fn zombies_that_exist_before_the_daemon_starts_are_found_with_their_parent() {
    let (w, hello) = Workload::spawn(&["never-wait", "2"]);
    let kids = pids(&hello, "children");
    std::thread::sleep(Duration::from_millis(1200));
    let d = Daemon::start();
    let found = d.children_of(w.pid());
    assert_eq!(found.len(), 2, "{found:?}");
    for z in &found {
        assert!(kids.contains(&(z["pid"].as_i64().unwrap() as i32)));
        assert_eq!(z["exited_at_estimated"], true);
        assert_eq!(z["parent_comm"], "zombie-workload");
        assert_eq!(z["exit_code"], 7);
        // They exited about 1.2 s before the daemon started; the estimate must say so.
        let age = z["age_seconds"].as_f64().unwrap();
        assert!((0.9..30.0).contains(&age), "estimated age {age}");
    }
}

#[test]
fn a_reused_pid_is_a_new_process_not_the_old_zombie() {
    // With the old zombie's reap unseen, the new process holding its pid is the proof it
    // was reaped.
    for reaps in Reaps::both("zombie-workload") {
        a_reused_pid(reaps);
    }
}

fn a_reused_pid(reaps: Reaps) {
    let d = reaps.start(&[]);
    let (mut w, hello) = Workload::spawn(&["reuse"]);
    let first = pids(&hello, "children")[0];
    let old = poll("the first zombie", SECOND, || {
        d.zombies()
            .into_iter()
            .find(|z| z["pid"].as_i64() == Some(first as i64))
    });
    w.send("next");
    let again = w.read_json();
    let second = pids(&again, "children")[0];
    assert_eq!(second, first, "clone3 set_tid must reuse the pid");
    let new = poll("the second zombie with the same pid", SECOND, || {
        d.zombies().into_iter().find(|z| {
            z["pid"].as_i64() == Some(first as i64) && z["start_ticks"] != old["start_ticks"]
        })
    });
    assert_eq!(new["exit_code"], 2);
    assert_eq!(old["exit_code"], 1);
    let same_pid: Vec<_> = d
        .zombies()
        .into_iter()
        .filter(|z| z["pid"].as_i64() == Some(first as i64))
        .collect();
    assert_eq!(
        same_pid.len(),
        1,
        "the old process must be gone: {same_pid:?}"
    );
    w.send("reap");
    w.read_json();
    poll("reaped", reaps.bound(), || {
        (!d.has_pid(first)).then_some(())
    });
}

#[test]
fn sigterm_detaches_and_exits_zero_within_a_second() {
    let mut d = Daemon::start();
    assert_eq!(d.metric("zombie_ebpf_programs_attached"), 5.0);
    let (took, code) = d.terminate();
    assert_eq!(code, Some(0), "{}", d.log_text());
    assert!(took < SECOND, "took {took:?}");
    assert!(d.log_text().contains("programs detached"));
}

#[test]
fn after_the_load_the_daemon_holds_only_what_it_reads_proc_with_and_still_sees_everything() {
    let d = Daemon::start();
    let threads = d.privileges();
    assert!(!threads.is_empty());
    const CAP_SYS_PTRACE: u64 = 1 << 19;
    for (task, fields) in &threads {
        for (k, v) in fields {
            let want = match k.as_str() {
                // Kept to read other processes' /proc entries in full; ptrace is denied.
                "CapEff" | "CapPrm" | "CapBnd" => CAP_SYS_PTRACE,
                "NoNewPrivs" => 1,
                "Seccomp" => 2, // filter mode
                _ => 0,
            };
            assert_eq!(*v, want, "{task}: {k} is {v:#x}\n{}", d.log_text());
        }
    }
    assert!(
        d.log_text()
            .contains("capabilities not needed after the load dropped")
    );
    // Zombies of another user's process, the /proc scans and the init audit all still work.
    let (_w, hello) = Workload::spawn_cmd(
        Command::new(harness::workload_bin())
            .args(["never-wait", "2"])
            .uid(65534)
            .gid(65534),
    );
    let kids = pids(&hello, "children");
    poll("the zombies seen", 5 * SECOND, || {
        kids.iter().all(|p| d.has_pid(*p)).then_some(())
    });
    assert_eq!(d.get("/audit").unwrap().0, 200);
}

/// `/audit` requests closer together than 2 s share one walk of the kubepods tree: a client
/// asking in a loop costs one walk per 2 s (before, each request waited for a walk of its
/// own: 20 requests made 20 walks), each answer says how old its audit is, and the sharing
/// is counted.
#[test]
fn audit_requests_share_one_walk() {
    let d = Daemon::start();
    let before = d.audit();
    assert!(before.iter().all(|a| a.is_object()));
    let start = Instant::now();
    let mut walks = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let (status, headers, body) = d.get_full("/audit").unwrap();
        assert_eq!(status, 200, "{body}");
        let taken: u64 = harness::header(&headers, "x-audit-taken-at-boottime-ns")
            .expect("the audit's time in the answer")
            .parse()
            .unwrap();
        let age: u64 = harness::header(&headers, "age")
            .expect("an Age header")
            .parse()
            .unwrap();
        assert!(age <= harness::AUDIT_MAX_AGE.as_secs(), "{headers:?}");
        walks.insert(taken);
    }
    let secs = start.elapsed().as_secs();
    // One walk per 2 s, and the one the loop may have started in the middle of.
    assert!(
        walks.len() as u64 <= secs / 2 + 2,
        "{} walks for 20 requests in {secs} s",
        walks.len()
    );
    let (_, m) = d.get("/metrics").unwrap();
    let shared: f64 = m
        .lines()
        .find_map(|l| {
            l.strip_prefix("zombie_bound_reached_total{bound=\"audit_requests\"} ")?
                .parse()
                .ok()
        })
        .expect("the audit_requests bound's series");
    assert!(shared >= (20 - walks.len()) as f64, "{shared}\n{m}");
}

#[test]
fn health_and_readiness_endpoints_answer() {
    let d = Daemon::start();
    assert_eq!(d.get("/healthz").unwrap().0, 200);
    assert_eq!(d.get("/readyz").unwrap().0, 200);
    assert_eq!(d.get("/nope").unwrap().0, 404);
    let (_, metrics) = d.get("/metrics").unwrap();
    for name in [
        "zombie_processes",
        "zombie_oldest_age_seconds",
        "zombie_process_exits_total",
        "zombie_reaped_total",
        "zombie_reap_latency_seconds_bucket",
        "zombie_ebpf_events_lost_total",
        "zombie_resyncs_total",
        "zombie_build_info",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
}

#[test]
fn list_shows_the_daemons_zombies_and_scans_proc_with_once() {
    let d = Daemon::start();
    let (w, hello) = Workload::spawn(&["never-wait", "1"]);
    let kid = pids(&hello, "children")[0];
    poll("the zombie", SECOND, || d.has_pid(kid).then_some(()));
    let endpoint = format!("http://127.0.0.1:{}", d.port);
    let out = Command::new(harness::daemon_bin())
        .args(["list", "--endpoint", &endpoint])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("PID"), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with(&kid.to_string())),
        "{text}"
    );

    let out = Command::new(harness::daemon_bin())
        .args(["list", "--once", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v.iter().any(
        |z| z["pid"].as_i64() == Some(kid as i64) && z["ppid"].as_i64() == Some(w.pid() as i64)
    ));

    let out = Command::new(harness::daemon_bin())
        .args(["list", "--endpoint", "http://127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "one clear error line: {err}");
}

#[test]
fn check_passes_here_and_bad_flags_exit_2() {
    let out = Command::new(harness::daemon_bin())
        .arg("check")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = Command::new(harness::daemon_bin())
        .args(["check", "--btf-path", "/nonexistent"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL  btf"));
    let bad_policy = std::env::temp_dir().join("zombie-e2e-bad-policy.yaml");
    std::fs::write(&bad_policy, "grace_seconds: [\n").unwrap();
    let bad_policy = bad_policy.to_str().unwrap();
    for bad in [
        &["run", "--listen", "nope"][..],
        &["run", "--bogus"],
        &["frobnicate"],
        &["list", "--endpoint", "::::"],
        &["audit", "--endpoint", "ftp://127.0.0.1:1"],
        &["run", "--listen", "127.0.0.1:0", "--policy", bad_policy],
        &["run", "--listen", "127.0.0.1:0", "--policy", "/nonexistent"],
        &["run", "--listen", "127.0.0.1:0", "--log-level", "=x="],
        &[
            "run",
            "--listen",
            "127.0.0.1:0",
            "--node-mount-namespace",
            "/nonexistent",
        ],
        &[
            "run",
            "--listen",
            "127.0.0.1:0",
            "--node-mount-namespace",
            "/proc/self/ns/net",
        ],
    ] {
        let out = Command::new(harness::daemon_bin())
            .args(bad)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{bad:?}: one line: {err}");
        assert!(err.starts_with("zombie-daemon: error: "), "{err}");
    }
    let _ = std::fs::remove_file(bad_policy);
    // Without a daemon, each command's hint names that command.
    for cmd in ["list", "audit"] {
        let out = Command::new(harness::daemon_bin())
            .args([cmd, "--endpoint", "http://127.0.0.1:1"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{cmd}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains(&format!("`zombie-daemon {cmd} --once`")),
            "{err}"
        );
    }
    // A bad BTF path for `run` is one clear error, exit 1, no panic.
    let out = Command::new(harness::daemon_bin())
        .args([
            "run",
            "--listen",
            "127.0.0.1:0",
            "--btf-path",
            "/nonexistent",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("BTF") && !err.contains("panicked"), "{err}");
}

/// Zombies under a container's non-reaping PID 1 (`sh -c '...; exec sleep'`), in real runc
/// containers placed in kubepods cgroups as both kubelet cgroup drivers name them.
#[test]
fn zombies_in_runc_containers_are_attributed_to_their_pod_and_container() {
    let d = Daemon::start();
    let uid = "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b";
    let cases = [
        (
            "cgroupfs",
            format!("/kubepods/besteffort/pod{uid}/{}", "a1".repeat(32)),
            "a1".repeat(32),
            "besteffort",
            None,
        ),
        (
            "systemd",
            format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{}.scope",
                uid.replace('-', "_"),
                "b2".repeat(32)
            ),
            "b2".repeat(32),
            "burstable",
            Some("containerd"),
        ),
    ];
    for (driver, cgroup, id, qos, runtime) in cases {
        let c = runc::RuncContainer::start(
            &format!("zombie-e2e-{driver}"),
            &cgroup,
            &["/bin/sh", "-c", "sleep 0.2 & sleep 0.2 & exec sleep 3600"],
        );
        let zombies = poll(
            &format!("2 zombies in the {driver} container"),
            3 * SECOND,
            || {
                let z = d.children_of(c.pid);
                (z.len() == 2).then_some(z)
            },
        );
        for z in &zombies {
            assert_eq!(z["owner"], "pod", "{driver}: {z}");
            assert_eq!(z["pod_uid"], uid, "{driver}: {z}");
            assert_eq!(
                z["container_id"].as_str(),
                Some(id.as_str()),
                "{driver}: {z}"
            );
            assert_eq!(z["qos"], qos, "{driver}: {z}");
            assert_eq!(z["runtime"].as_str(), runtime, "{driver}: {z}");
            assert_eq!(
                z["cgroup_path"].as_str(),
                Some(cgroup.as_str()),
                "{driver}: {z}"
            );
            assert_eq!(z["parent_comm"], "sleep");
        }
        let (_, metrics) = d.get("/metrics").unwrap();
        let series =
            format!("zombie_processes{{container=\"{id}\",namespace=\"\",pod=\"{uid}\"}} 2");
        assert!(
            metrics.contains(&series),
            "{driver}: no {series} in\n{metrics}"
        );
        let pid1 = c.pid;
        drop(c);
        poll("the container's zombies to go with it", SECOND, || {
            d.children_of(pid1).is_empty().then_some(())
        });
    }
    // The series of the gone containers are gone too (once the container's PID 1, reaped by
    // us on drop, is freed).
    poll("no series left for the gone pod", SECOND, || {
        let (_, metrics) = d.get("/metrics").unwrap();
        (!metrics.contains(uid)).then_some(())
    });
}

/// A ring buffer too small for an exit storm loses events; the daemon counts the loss,
/// resyncs from /proc and ends with exactly the zombies that exist.
#[test]
fn lost_events_trigger_a_resync_that_restores_the_exact_table() {
    kernel::overflow_is_counted_and_resynced_to_the_exact_table("20000");
}

/// `/metrics` follows Prometheus conventions (names, units, help, types), as promtool checks.
#[test]
fn metrics_pass_promtool_lint() {
    let d = Daemon::start();
    let (w, _) = Workload::spawn(&["never-wait", "2"]);
    poll("2 zombies", SECOND, || {
        (d.children_of(w.pid()).len() == 2).then_some(())
    });
    let (_, metrics) = d.get("/metrics").unwrap();
    for name in ["zombie_node_pids", "zombie_node_pid_limit"] {
        assert!(metrics.contains(name), "{name} missing");
    }
    // The daemon's own use (the prometheus crate's process collector), to watch against the
    // pod's limits: plausible values, not just names.
    let rss = d.metric("process_resident_memory_bytes");
    assert!(
        rss > 1e6 && rss < 1e10,
        "process_resident_memory_bytes {rss}"
    );
    assert!(d.metric("process_open_fds") >= 3.0, "{metrics}");
    assert!(d.metric("process_max_fds") >= d.metric("process_open_fds"));
    let started = d.metric("process_start_time_seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        now - started < 600.0 && now >= started - 5.0,
        "started {started}, now {now}"
    );
    assert!(metrics.contains("process_cpu_seconds_total"), "{metrics}");
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is missing: cargo xtask setup --test installs it");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What a tenant writes (its comm, its file names) is data everywhere: the /proc scan
/// parses a comm with `)` and spaces in it, `/zombies` (JSON) carries it exactly, `list`
/// shows it escaped, and `/metrics` stays valid for promtool with a container's PID 1 whose
/// executable is named with quotes, a backslash and terminal sequences.
#[test]
fn hostile_names_are_data_in_the_scan_json_table_and_metrics() {
    // 13 bytes (a comm holds 15): a forged end of the comm field, then clear-screen.
    const COMM: &str = "q\") Z 1 (\x1b[2J";
    let dir = std::env::temp_dir().join(format!("zombie-e2e-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join("init\"\\ \x1b]52;c;eA==\x07");
    std::fs::copy(harness::workload_bin(), &exe).unwrap();
    let (w, hello) = Workload::spawn_cmd(Command::new(&exe).args(["never-wait", "2", COMM]));
    let kids = pids(&hello, "children");
    let _cg = remediate::PodCgroup::adopt("ee", w.pid());
    // The zombies exist before the daemon starts: the start-up /proc scan finds them.
    let d = Daemon::start();
    let zs = poll("both zombies listed", 5 * SECOND, || {
        let zs = d.children_of(w.pid());
        (zs.len() == 2).then_some(zs)
    });
    for z in &zs {
        assert!(kids.contains(&(z["pid"].as_i64().unwrap() as i32)), "{z}");
        assert_eq!(z["comm"], COMM, "{z}");
        assert_eq!(z["ppid"].as_i64(), Some(w.pid() as i64), "{z}");
        assert_eq!(z["exit_code"], 7, "{z}");
        assert_eq!(z["exited_at_estimated"], true, "found by the scan: {z}");
    }
    let endpoint = format!("http://127.0.0.1:{}", d.port);
    let out = Command::new(harness::daemon_bin())
        .args(["list", "--endpoint", &endpoint])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains('\x1b'), "{text:?}");
    for kid in &kids {
        let rows: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with(&format!("{kid} ")))
            .collect();
        assert_eq!(rows.len(), 1, "{text}");
        assert!(rows[0].contains("q\") Z 1 (\\x1b[2J"), "{}", rows[0]);
    }
    // The container's PID 1 is that executable: its series, escaped, and valid text.
    let metrics = poll("the init series of the container", 20 * SECOND, || {
        let (_, m) = d.get("/metrics").unwrap();
        m.lines()
            .any(|l| l.starts_with("zombie_container_init_info{") && l.contains("pid1=\"init\\\""))
            .then_some(m)
    });
    assert!(
        metrics.contains("pid1=\"init\\\"\\\\ \x1b]52;c;eA==\x07\""),
        "{}",
        metrics
            .lines()
            .filter(|l| l.starts_with("zombie_container_init_info"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is missing: cargo xtask setup --test installs it");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    drop(d);
    drop(w);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A real containerd (Debian's, its CRI plugin answering on its socket) runs a pod whose
/// PID 1 leaks zombies; the daemon names them through CRI.
#[test]
fn zombies_in_a_containerd_pod_are_named_through_cri() {
    let mut c = containerd::Containerd::start();
    let d = Daemon::start_with(&["--runtime-endpoint", &c.endpoint()]);
    let uid = "3d6b0e8a-1f2c-4a5b-9c8d-7e6f5a4b3c2d";
    let sandbox = c.run_pod(
        "leaky",
        "zombie-e2e",
        uid,
        &format!("/kubepods/besteffort/pod{uid}"),
    );
    let cid = c.run_container(
        &sandbox,
        "app",
        containerd::BUSYBOX_IMAGE,
        &["sh", "-c", "sleep 0.2 & sleep 0.2 & exec sleep 3600"],
    );
    let pid = c.container_pid(&cid);
    let zs = poll("2 zombies named through CRI", 5 * SECOND, || {
        let z: Vec<_> = d
            .children_of(pid)
            .into_iter()
            .filter(|z| z["pod"] == "leaky")
            .collect();
        // The container's name comes with a later CRI listing than the pod's when the
        // container was created after the first one (seen with containerd 2.1 under TCG).
        (z.len() == 2 && z.iter().all(|z| z["container"] == "app")).then_some(z)
    });
    for z in &zs {
        assert_eq!(z["namespace"], "zombie-e2e", "{z:#}");
        assert_eq!(z["container"], "app", "{z:#}");
        assert_eq!(z["container_id"].as_str(), Some(cid.as_str()));
        assert_eq!(z["pod_uid"], uid);
        assert_eq!(z["qos"], "besteffort");
        assert_eq!(z["cause"], "pid1_not_init", "{z:#}");
    }
    let series = "zombie_processes{container=\"app\",namespace=\"zombie-e2e\",pod=\"leaky\"} 2";
    poll("the named series", SECOND, || {
        let (_, m) = d.get("/metrics").unwrap();
        m.contains(series).then_some(())
    });

    let endpoint = format!("http://127.0.0.1:{}", d.port);
    let list = |args: &[&str]| {
        let out = Command::new(harness::daemon_bin())
            .args(["list", "--endpoint", &endpoint])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let text = list(&["--namespace", "zombie-e2e", "--container", "app"]);
    assert_eq!(
        text.lines()
            .filter(|l| l.contains("zombie-e2e/leaky"))
            .count(),
        2,
        "{text}"
    );
    assert!(
        text.lines().next().unwrap().contains("NAMESPACE/POD"),
        "{text}"
    );
    let text = list(&["--namespace", "elsewhere"]);
    assert!(!text.contains("leaky"), "{text}");
    let text = list(&["--pod", uid]);
    assert_eq!(
        text.lines()
            .filter(|l| l.contains("zombie-e2e/leaky"))
            .count(),
        2,
        "{text}"
    );
}

/// A runtime socket that is gone: the daemon still runs, labels what it knows, and says so
/// once, however often it tries again: each zombie of a container it cannot name yet makes
/// it try (at most once a second), so three containers make at least three more attempts.
#[test]
fn without_a_runtime_socket_the_daemon_runs_and_says_so_once() {
    let d = Daemon::start_with(&["--runtime-endpoint", "unix:///nonexistent/containerd.sock"]);
    let attempts = |d: &Daemon| {
        d.log_text()
            .lines()
            .filter(|l| l.contains("container runtime attempt failed"))
            .count()
    };
    let mut held = Vec::new();
    for id in ["a7", "b7", "c7"] {
        let before = attempts(&d);
        let cg = remediate::PodCgroup::empty(id);
        let mut cmd = Command::new(harness::workload_bin());
        cmd.args(["never-wait", "1"]);
        cg.join_on_exec(&mut cmd);
        let (w, _) = Workload::spawn_cmd(&mut cmd);
        poll(
            &format!("an attempt for container {id}"),
            5 * SECOND,
            || (attempts(&d) > before).then_some(()),
        );
        held.push((w, cg));
    }
    assert_eq!(d.get("/readyz").unwrap().0, 200);
    let log = d.log_text();
    let said = log
        .lines()
        .filter(|l| l.contains(" WARN ") && l.contains("/nonexistent/containerd.sock"))
        .count();
    assert_eq!(said, 1, "{log}");
    assert!(attempts(&d) >= 4, "{log}");
    assert!(!log.contains("panicked"));
    for (w, _) in &held {
        assert_eq!(d.children_of(w.pid()).len(), 1, "still listed, by pod UID");
    }
}

/// The init audit of real containers: a plain PID 1, tini, dumb-init, a shell, a PID 1 that
/// traps SIGTERM, and a pod with a shared PID namespace whose container's main process
/// exited while its child lives on.
#[test]
fn the_init_audit_judges_each_containers_pid1() {
    let d = Daemon::start();
    let containers = start_audited_containers();
    // A pod with a shared PID namespace: "pause" is PID 1. In the app container's cgroup, a
    // main process started in that namespace exits at once and leaves its child behind,
    // handed to pause. (runc itself kills what is left when a container's init exits, so the
    // container is made by hand: a cgroup and `nsenter`.)
    let pause = runc::RuncContainer::start(
        "zombie-audit-c6",
        &audited_cgroup("c6"),
        &["/bin/sleep", "3600"],
    );
    let app = runc::LeftoverInSharedPidNs::start(pause.pid, &audited_cgroup("c7"));
    check_plain_pid1_audit(&d);
    check_init_shell_and_trap_audits(&d);
    check_leftover_in_shared_pid_namespace_audit(&d);
    check_the_info_metric_and_the_command_agree(&d);
    drop(app);
    drop(pause);
    drop(containers);
}

/// The cgroup of the init audit's container `id` (its id is `id` repeated to 64 characters).
fn audited_cgroup(id: &str) -> String {
    let uid = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";
    format!("/kubepods/besteffort/pod{uid}/{}", id.repeat(32))
}

/// c1 a plain PID 1, c2 tini, c3 dumb-init, c4 a shell, c5 a PID 1 that traps SIGTERM.
fn start_audited_containers() -> Vec<runc::RuncContainer> {
    let long = "while :; do sleep 1; done";
    let trap = format!("trap 'exit 0' TERM; {long}");
    let cases: Vec<(&str, Vec<&str>, &[&str])> = vec![
        ("c1", vec!["/bin/sleep", "3600"], &[]),
        (
            "c2",
            vec!["/bin/tini-static", "--", "/bin/sleep", "3600"],
            &["/usr/bin/tini-static"],
        ),
        (
            "c3",
            vec!["/bin/dumb-init", "/bin/sleep", "3600"],
            &["/usr/bin/dumb-init"],
        ),
        (
            "c4",
            vec!["/bin/bash", "-c", "sleep 3600; true"],
            &["/bin/bash"],
        ),
        ("c5", vec!["/bin/sh", "-c", trap.as_str()], &[]),
    ];
    let mut containers = Vec::new();
    for (id, args, bins) in &cases {
        let opts = runc::Options {
            bins,
            ..Default::default()
        };
        containers.push(runc::RuncContainer::start_with(
            &format!("zombie-audit-{id}"),
            &audited_cgroup(id),
            args,
            opts,
        ));
    }
    containers
}

/// The audit of container `id`, from an audit taken now.
fn audit_of(d: &Daemon, id: &str) -> serde_json::Value {
    let all = d.audit();
    all.iter()
        .find(|a| a["container_id"].as_str() == Some(id.repeat(32).as_str()))
        .cloned()
        .unwrap_or_else(|| panic!("no audit of {id} in {all:#?}"))
}

/// c1: a plain PID 1 neither reaps nor handles SIGTERM.
fn check_plain_pid1_audit(d: &Daemon) {
    let a = audit_of(d, "c1");
    // The daemon runs without --show-cmdlines: PID 1's arguments are redacted.
    assert_eq!(a["pid1_cmdline"], "/bin/sleep [redacted]", "{a:#}");
    assert_eq!(
        (
            a["pid1_comm"].as_str(),
            a["reaps"].as_bool(),
            a["handles_sigterm"].as_bool()
        ),
        (Some("sleep"), Some(false), Some(false)),
        "{a:#}"
    );
    assert!(
        a["verdict"].as_str().unwrap().contains("does not reap"),
        "{a:#}"
    );
    assert!(a["verdict"].as_str().unwrap().contains("SIGKILL"), "{a:#}");
}

/// c2 and c3: real inits are ok; c4: a shell is named; c5: a trapped SIGTERM is handled.
fn check_init_shell_and_trap_audits(d: &Daemon) {
    for (id, init) in [("c2", "tini-static"), ("c3", "dumb-init")] {
        let a = audit_of(d, id);
        assert_eq!(a["kind"], "init", "{a:#}");
        assert_eq!(a["init"], init, "{a:#}");
        assert_eq!(a["reaps"], true, "{a:#}");
        assert_eq!(a["handles_sigterm"], true, "{a:#}");
        assert_eq!(a["verdict"], "ok", "{a:#}");
    }
    let a = audit_of(d, "c4");
    assert_eq!(
        (a["pid1_comm"].as_str(), a["shell"].as_bool()),
        (Some("bash"), Some(true)),
        "{a:#}"
    );
    assert!(a["verdict"].as_str().unwrap().contains("shell"), "{a:#}");
    let a = audit_of(d, "c5");
    assert_eq!(
        (a["sigterm"].as_str(), a["handles_sigterm"].as_bool()),
        (Some("caught"), Some(true)),
        "{a:#}"
    );
}

/// c7: the child its main process left behind in the pod's shared PID namespace; c6 (the
/// pod's PID 1) has none.
fn check_leftover_in_shared_pid_namespace_audit(d: &Daemon) {
    let a = poll(
        "the leftover child in the shared PID namespace",
        3 * SECOND,
        || {
            let a = audit_of(d, "c7");
            (a["leftover_pids"].as_array().is_some_and(|l| l.len() == 1)).then_some(a)
        },
    );
    assert_eq!(a["shared_pid_namespace"], true, "{a:#}");
    assert!(
        a["verdict"]
            .as_str()
            .unwrap()
            .contains("keep the container from stopping"),
        "{a:#}"
    );
    assert_eq!(
        audit_of(d, "c6")["leftover_pids"].as_array().unwrap().len(),
        0
    );
}

/// The info metric and the command agree.
fn check_the_info_metric_and_the_command_agree(d: &Daemon) {
    let (_, m) = d.get("/metrics").unwrap();
    assert!(
        m.contains("zombie_container_init_info{") && m.contains("pid1=\"tini-static\""),
        "{m}"
    );
    let out = Command::new(harness::daemon_bin())
        .args([
            "audit",
            "--endpoint",
            &format!("http://127.0.0.1:{}", d.port),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.starts_with("NAMESPACE/POD"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("dumb-init") && l.ends_with("ok")),
        "{text}"
    );
    let out = Command::new(harness::daemon_bin())
        .args(["audit", "--once", "--json"])
        .output()
        .unwrap();
    let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v.len() >= 7);
}

/// The HTTP API is read-only and bounded: a client that never finishes its headers is cut
/// off, an oversized request is refused, writes are not allowed; the daemon keeps serving.
#[test]
fn http_requests_are_bounded_in_size_and_time() {
    use std::io::{Read, Write};
    let d = Daemon::start();
    let addr = ("127.0.0.1", d.port);

    let mut slow = std::net::TcpStream::connect(addr).unwrap();
    slow.set_read_timeout(Some(std::time::Duration::from_secs(15)))
        .unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let t = std::time::Instant::now();
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf);
    let took = t.elapsed();
    assert!(
        took < std::time::Duration::from_secs(10),
        "a slow client was held {took:?}"
    );

    let mut big = std::net::TcpStream::connect(addr).unwrap();
    big.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let _ = big.write_all(
        format!(
            "GET /zombies HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(64 * 1024)
        )
        .as_bytes(),
    );
    let mut resp = String::new();
    let _ = big.read_to_string(&mut resp);
    assert!(
        !resp.starts_with("HTTP/1.1 200"),
        "an oversized request was served: {}",
        &resp[..resp.len().min(200)]
    );

    let mut post = std::net::TcpStream::connect(addr).unwrap();
    post.write_all(b"POST /zombies HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}")
        .unwrap();
    let mut resp = String::new();
    post.read_to_string(&mut resp).unwrap();
    assert!(
        resp.starts_with("HTTP/1.0 405") || resp.starts_with("HTTP/1.1 405"),
        "{resp}"
    );

    assert_eq!(d.get("/healthz").unwrap().0, 200);
}

/// `kill -9` of the daemon in the middle of an exit storm; a new daemon rebuilds the exact
/// table from /proc.
#[test]
fn a_daemon_killed_mid_storm_is_replaced_by_one_with_the_exact_table() {
    let d = Daemon::start();
    let exits = d.metric("zombie_process_exits_total");
    let mut storm = Workload::spawn_nowait(&["storm", "60000", "4"]);
    // Mid-storm: the daemon has applied thousands of the storm's exits (of 60,000).
    poll("the daemon to be in the storm", 30 * SECOND, || {
        (d.metric("zombie_process_exits_total") - exits >= 5_000.0).then_some(())
    });
    // SAFETY: killing the daemon we started.
    unsafe { libc::kill(d.pid(), libc::SIGKILL) };
    drop(d);
    let d = Daemon::start();
    let hello = storm.read_json();
    let kids = pids(&hello, "children");
    assert_eq!(kids.len(), 4);
    let found = poll("exactly the storm's 4 zombies", 3 * SECOND, || {
        let z = d.children_of(storm.pid());
        (z.len() == 4).then_some(z)
    });
    for z in &found {
        assert!(kids.contains(&(z["pid"].as_i64().unwrap() as i32)), "{z}");
    }
    // The table equals /proc: every zombie /proc shows is in it and nothing else is.
    let in_proc: Vec<i64> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i64>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
            })
        })
        .collect();
    let table: Vec<i64> = d
        .zombies()
        .iter()
        .map(|z| z["pid"].as_i64().unwrap())
        .collect();
    for pid in &kids {
        assert!(in_proc.contains(&(*pid as i64)) && table.contains(&(*pid as i64)));
    }
    for pid in &table {
        // A table entry not in /proc can only be one reaped in the last instant.
        if !in_proc.contains(pid) {
            poll("a stale entry to go", SECOND, || {
                (!d.has_pid(*pid as i32)).then_some(())
            });
        }
    }
}

/// PIDs wrap around inside a PID namespace (and on the host: pid_max is 32768 here) while
/// zombies from before the wrap still exist: no zombie is confused with a newer process.
#[test]
fn pid_wraparound_inside_a_pid_namespace_confuses_nothing() {
    let d = Daemon::start();
    let pid_max: u64 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Enough exits to wrap the namespace's pids (and the host's, when pid_max is small).
    let n = (pid_max + 2000).min(70_000).to_string();
    let (w, _) = Workload::spawn_cmd(
        Command::new("unshare")
            .args(["--pid", "--fork", "--kill-child"])
            .arg(harness::workload_bin())
            .args(["storm", &n, "6"]),
    );
    let pid1 = poll("the namespace's PID 1", SECOND, || {
        let t = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", w.pid())).ok()?;
        t.split_whitespace().next()?.parse::<i32>().ok()
    });
    let zs = poll("the 6 zombies made mid-storm", 5 * SECOND, || {
        let z = d.children_of(pid1);
        (z.len() == 6).then_some(z)
    });
    let mut seen = std::collections::HashSet::new();
    for z in &zs {
        assert!(
            seen.insert(z["pid"].as_i64().unwrap()),
            "a pid listed twice: {zs:?}"
        );
        assert_eq!(z["exit_code"], 7);
    }
    assert_eq!(
        d.metric("zombie_ebpf_events_lost_total"),
        0.0,
        "the storm overflowed the ring"
    );
}
