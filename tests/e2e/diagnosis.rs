//! Diagnosis against the real things: Debian's tini and dumb-init, dash as `sh -c`, PID
//! namespaces, stopped and dying parents.

use std::process::Command;

use serde_json::Value;

use crate::{
    SECOND,
    harness::{Daemon, REAP_UNSEEN_CANDIDATE, Workload, poll, reap},
    pids,
};

/// Reaps the daemon counted, seen by the kernel side or found by its /proc confirmation.
fn reaps_seen(d: &Daemon) -> f64 {
    d.metric("zombie_reaped_total") + d.metric("zombie_reaps_unobserved_total")
}

fn unshare(args: &[&str]) -> Command {
    let mut c = Command::new("unshare");
    c.args(["--pid", "--fork", "--mount-proc", "--kill-child"])
        .args(args);
    c
}

/// Host pids of a process's children.
fn children(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn workload() -> String {
    crate::harness::workload_bin().display().to_string()
}

fn assert_cause(z: &Value, cause: &str, reaper_comm: &str, namespace_init: bool) {
    assert_eq!(z["cause"], cause, "{z:#}");
    assert_eq!(z["reaper"]["comm"], reaper_comm, "{z:#}");
    assert_eq!(z["reaper"]["namespace_init"], namespace_init, "{z:#}");
    assert!(z["remedy"].as_str().unwrap().contains(reaper_comm), "{z:#}");
}

#[test]
fn a_live_parent_that_never_waits_is_an_application_bug() {
    let d = Daemon::start_with(&["--show-cmdlines"]);
    let (w, _) = Workload::spawn(&["never-wait", "2"]);
    let zs = poll("2 zombies", SECOND, || {
        let z = d.children_of(w.pid());
        (z.len() == 2).then_some(z)
    });
    for z in &zs {
        assert_cause(z, "parent_not_waiting", "zombie-workload", false);
        assert_eq!(z["reaper"]["kind"], "application");
        assert_eq!(z["reaper"]["pid"].as_i64(), Some(w.pid() as i64));
        assert!(
            z["reaper"]["cmdline"]
                .as_str()
                .unwrap()
                .contains("never-wait")
        );
        assert_eq!(z["parent_at_exit"]["pid"].as_i64(), Some(w.pid() as i64));
    }
    let (_, m) = d.get("/metrics").unwrap();
    assert!(m.contains("cause=\"parent_not_waiting\""), "{m}");
}

#[test]
fn a_stopped_parent_reaps_nothing() {
    let d = Daemon::start();
    let (w, _) = Workload::spawn(&["never-wait", "1"]);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(w.pid(), libc::SIGSTOP) };
    let z = poll("a zombie of a stopped parent", SECOND, || {
        d.children_of(w.pid())
            .into_iter()
            .find(|z| z["cause"] == "parent_stopped")
    });
    assert_eq!(z["reaper"]["state"], "T");
    unsafe { libc::kill(w.pid(), libc::SIGCONT) };
}

/// The same orphan-making program as PID 1, under tini, and under dumb-init.
#[test]
fn a_non_reaping_pid1_leaks_orphans_where_tini_and_dumb_init_reap_them() {
    let d = Daemon::start();
    let wl = workload();

    // Plain: the program is PID 1 and never reaps its 3 orphans nor its child.
    let (mut w, _) = Workload::spawn_cmd(&mut unshare(&[&wl, "pid1-orphans", "3"]));
    let pid1 = poll("PID 1", SECOND, || children(w.pid()).first().copied());
    let zs = poll("4 zombies under a plain PID 1", 3 * SECOND, || {
        let z = d.children_of(pid1);
        (z.len() == 4).then_some(z)
    });
    for z in &zs {
        assert_cause(z, "pid1_not_init", "zombie-workload", true);
    }
    unsafe { libc::kill(pid1, libc::SIGKILL) };
    w.wait();

    for init in [&["tini", "--"][..], &["tini", "-s", "--"], &["dumb-init"]] {
        let mut args: Vec<&str> = init.to_vec();
        args.extend([wl.as_str(), "pid1-orphans", "3"]);
        let seen = reaps_seen(&d);
        let (mut w, _) = Workload::spawn_cmd(&mut unshare(&args));
        let init_pid = poll("the init", SECOND, || children(w.pid()).first().copied());
        let app = poll("the program under the init", SECOND, || {
            children(init_pid).first().copied()
        });
        // Its own child (never waited for) is the program's zombie; the orphans were reaped
        // by the init.
        let z = poll("the program's one zombie", 3 * SECOND, || {
            let z = d.children_of(app);
            (z.len() == 1).then_some(z)
        });
        assert_cause(&z[0], "parent_not_waiting", "zombie-workload", false);
        // The init reaps the orphans (/proc says when: the program is its only child), and
        // the daemon sees those reaps; only then does their absence from /zombies mean
        // anything.
        poll(
            &format!("{init:?} to reap the 3 orphans"),
            3 * SECOND,
            || (children(init_pid) == [app]).then_some(()),
        );
        poll(
            "3 more reaps seen by the daemon",
            REAP_UNSEEN_CANDIDATE,
            || (reaps_seen(&d) - seen >= 3.0).then_some(()),
        );
        poll(
            &format!("no zombie left under {init:?}"),
            REAP_UNSEEN_CANDIDATE,
            || d.children_of(init_pid).is_empty().then_some(()),
        );
        unsafe { libc::kill(init_pid, libc::SIGKILL) };
        w.wait();
    }
}

#[test]
fn a_shell_as_pid1_is_named_as_such() {
    let d = Daemon::start();
    // dash (Debian's sh) does not reap background jobs while a builtin blocks.
    let (mut w, _) = Workload::spawn_cmd(
        unshare(&["sh", "-c", "sleep 0.1 & sleep 0.1 & echo '{}'; read x"])
            .stdin(std::process::Stdio::piped()),
    );
    let pid1 = poll("PID 1", SECOND, || children(w.pid()).first().copied());
    let zs = poll("2 zombies under sh", 3 * SECOND, || {
        let z = d.children_of(pid1);
        (z.len() == 2).then_some(z)
    });
    for z in &zs {
        assert_cause(z, "shell_pid1", "sh", true);
        assert_eq!(z["reaper"]["kind"], "shell");
    }
    w.close_stdin();
    w.wait();
}

#[test]
fn a_dying_parent_hands_its_zombies_to_the_reaper_who_reaps_them() {
    let d = Daemon::start();
    let (mut w, hello) = Workload::spawn(&["never-wait", "2"]);
    let kids = pids(&hello, "children");
    poll("2 zombies", SECOND, || {
        (d.children_of(w.pid()).len() == 2).then_some(())
    });
    // The parent dies; we (a subreaper) adopt the zombies. Before we reap them, the daemon
    // shows the new parent and keeps the old one.
    w.close_stdin();
    w.wait();
    let me = std::process::id() as i64;
    let adopted = poll("the zombies reparented to us", 3 * SECOND, || {
        let z: Vec<Value> = d
            .zombies()
            .into_iter()
            .filter(|z| {
                kids.contains(&(z["pid"].as_i64().unwrap() as i32))
                    && z["ppid"].as_i64() == Some(me)
            })
            .collect();
        (z.len() == 2).then_some(z)
    });
    for z in &adopted {
        assert_eq!(z["parent_at_exit"]["pid"].as_i64(), Some(w.pid() as i64));
        assert_eq!(z["reparented"], 1);
        assert_eq!(z["reaper"]["pid"].as_i64(), Some(me));
    }
    for pid in &kids {
        reap(*pid);
    }
    poll("reaped by the reaper", SECOND, || {
        kids.iter().all(|p| !d.has_pid(*p)).then_some(())
    });
}
