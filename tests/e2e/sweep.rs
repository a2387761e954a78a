//! Reaps whose free event the kernel never delivers: the free program is told to drop the
//! events of chosen processes (a hidden testing flag, inert otherwise), and the /proc sweep
//! must take exactly those zombies out of the table and count exactly those as unobserved.
use crate::{
    SECOND,
    harness::{Daemon, REAP_SEEN, REAP_UNSEEN_CANDIDATE, Workload, hold, poll, reap},
    pids,
};

/// The comm whose frees the kernel side drops in these tests.
const LOST: &str = "zd-lostfree";

/// Where the count of reaps seen unobserved stood: the metric and the daemon's log.
struct Before {
    metric: f64,
    log_len: usize,
}

fn unobserved(d: &Daemon) -> Before {
    Before {
        metric: d.metric("zombie_reaps_unobserved_total"),
        log_len: d.log_text().len(),
    }
}

/// The pids the daemon logged as reaped unobserved since `before`, one per line it wrote.
fn logged_unobserved(d: &Daemon, before: &Before) -> Vec<i32> {
    let log = d.log_text();
    log.get(before.log_len..)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("reaped unobserved:"))
        .filter_map(|l| {
            let rest = &l[l.find(" pid=")? + 5..];
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// Waits until each of `pids` was counted unobserved, then checks the count stays there:
/// each counted once (no late free turns into a second count), and the metric moved by
/// exactly the reaps the daemon logged. The kernels here also drop frees of other processes
/// (the machine's own), so others may be among them; the test's own are counted exactly.
fn expect_unobserved(d: &Daemon, before: Before, pids: &[i32]) {
    poll(
        &format!("{} reaps counted unobserved", pids.len()),
        10 * SECOND,
        || {
            let logged = logged_unobserved(d, &before);
            pids.iter().all(|p| logged.contains(p)).then_some(())
        },
    );
    // A free that comes late is still an ordinary reap within the daemon's grace, and
    // after that cannot count again: for the documented bound, none is counted twice.
    hold("each reap counted once", REAP_UNSEEN_CANDIDATE, || {
        let logged = logged_unobserved(d, &before);
        match pids
            .iter()
            .find(|p| logged.iter().filter(|l| l == p).count() != 1)
        {
            Some(p) => Err(format!(
                "pid {p} counted {} times: {}",
                logged.iter().filter(|l| *l == p).count(),
                d.log_text()
            )),
            None => Ok(()),
        }
    });
    let logged = logged_unobserved(d, &before);
    let counted = d.metric("zombie_reaps_unobserved_total") - before.metric;
    assert_eq!(counted, logged.len() as f64, "{}", d.log_text());
}

/// A parent that waits for its children: their frees never come, the sweep settles them.
#[test]
fn reaps_without_a_free_event_leave_the_table_and_are_counted_exactly() {
    let d = Daemon::start_with(&["--fault-drop-free-comm", LOST]);
    let (mut lost, hello) = Workload::spawn(&["never-wait", "25", LOST]);
    let lost_kids = pids(&hello, "children");
    let (mut control, hello) = Workload::spawn(&["never-wait", "5"]);
    let control_kids = pids(&hello, "children");
    poll("30 zombies listed", 5 * SECOND, || {
        (d.children_of(lost.pid()).len() == 25 && d.children_of(control.pid()).len() == 5)
            .then_some(())
    });
    for z in d.children_of(lost.pid()) {
        assert_eq!(z["comm"], LOST);
    }
    let before = unobserved(&d);
    lost.send("reap");
    lost.read_json();
    control.send("reap");
    control.read_json();
    // The control's frees arrive: gone at once, as ever.
    poll("the control's zombies reaped", REAP_SEEN, || {
        control_kids.iter().all(|p| !d.has_pid(*p)).then_some(())
    });
    // The dropped ones: the /proc confirmation finds them gone.
    poll(
        "the zombies whose free never came out of the table",
        REAP_UNSEEN_CANDIDATE,
        || lost_kids.iter().all(|p| !d.has_pid(*p)).then_some(()),
    );
    expect_unobserved(&d, before, &lost_kids);
}

/// A parent that dies with its zombies, reaped at once by the subreaper they were handed
/// to: /proc can no longer name their new parent, and their frees never come.
#[test]
fn zombies_of_a_dead_parent_reaped_without_a_free_event_are_swept() {
    let d = Daemon::start_with(&["--fault-drop-free-comm", LOST]);
    let (mut w, hello) = Workload::spawn(&["never-wait", "10", LOST]);
    let kids = pids(&hello, "children");
    poll("10 zombies listed", 5 * SECOND, || {
        (d.children_of(w.pid()).len() == 10).then_some(())
    });
    let before = unobserved(&d);
    // The parent exits: its zombies come to us (the test is a subreaper); reap them before
    // the daemon's parent refresh can read who their new parent is.
    w.close_stdin();
    w.wait();
    for pid in &kids {
        reap(*pid);
    }
    poll(
        "the orphans out of the table",
        REAP_UNSEEN_CANDIDATE,
        || kids.iter().all(|p| !d.has_pid(*p)).then_some(()),
    );
    expect_unobserved(&d, before, &kids);
}

/// A mass release: a parent dies with 2,000 zombies under a subreaper that ignores SIGCHLD,
/// so the kernel releases them all at once in the parent's exit, and none of their reaps is
/// reported; meanwhile a waiting parent reaps 20 more, unreported too. All of them leave the
/// table within the bound, and each is counted once.
#[test]
fn two_thousand_zombies_released_at_once_without_a_reap_event_leave_within_the_bound() {
    const N: usize = 2_000;
    let d = Daemon::start_with(&["--fault-drop-free-comm", LOST]);
    let (mut reaper, hello) =
        Workload::spawn(&["orphans-to-ignoring-reaper", &N.to_string(), LOST]);
    let kids = pids(&hello, "children");
    let middle = hello["middle"].as_i64().unwrap() as i32;
    let (mut waiter, hello) = Workload::spawn(&["never-wait", "20", LOST]);
    let waited = pids(&hello, "children");
    poll(&format!("{} zombies listed", N + 20), 10 * SECOND, || {
        let zs = d.zombies();
        let of = |p: i32| {
            zs.iter()
                .filter(|z| z["ppid"].as_i64() == Some(p as i64))
                .count()
        };
        (of(middle) == N && of(waiter.pid()) == 20).then_some(())
    });
    let before = unobserved(&d);
    reaper.send("release");
    assert_eq!(reaper.read_json()["released"], true);
    waiter.send("reap");
    waiter.read_json();
    let t = std::time::Instant::now();
    poll(
        "every released zombie out of the table",
        REAP_UNSEEN_CANDIDATE,
        || {
            let listed: std::collections::HashSet<i64> = d
                .zombies()
                .iter()
                .filter_map(|z| z["pid"].as_i64())
                .collect();
            kids.iter()
                .chain(&waited)
                .all(|p| !listed.contains(&(*p as i64)))
                .then_some(())
        },
    );
    eprintln!(
        "{} released zombies out of the table {:?} after the release",
        N + 20,
        t.elapsed()
    );
    let all: Vec<i32> = kids.iter().chain(&waited).copied().collect();
    expect_unobserved(&d, before, &all);
}
