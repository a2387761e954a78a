//! Reaps whose free event the kernel never delivers: the free program is told to drop the
//! events of chosen processes (a hidden testing flag, inert otherwise), and the /proc sweep
//! must take exactly those zombies out of the table and count exactly those as unobserved.

use std::time::Duration;

use crate::{
    SECOND,
    harness::{Daemon, Workload, poll, reap},
    pids,
};

/// The comm whose frees the kernel side drops in these tests.
const LOST: &str = "zd-lostfree";

fn unobserved(d: &Daemon) -> f64 {
    d.metric("zombie_reaps_unobserved_total")
}

/// Waits until `want` more reaps were counted unobserved than `before`, then checks the
/// count stays there (no late free turns into a second count, nothing else is counted).
fn expect_unobserved(d: &Daemon, before: f64, want: f64) {
    poll(
        &format!("{want} reaps counted unobserved"),
        10 * SECOND,
        || (unobserved(d) - before >= want).then_some(()),
    );
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(unobserved(d) - before, want, "{}", d.log_text());
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
    poll("the control's zombies reaped", 2 * SECOND, || {
        control_kids.iter().all(|p| !d.has_pid(*p)).then_some(())
    });
    // The dropped ones: the sweep finds them gone from /proc within seconds.
    poll(
        "the zombies whose free never came out of the table",
        6 * SECOND,
        || lost_kids.iter().all(|p| !d.has_pid(*p)).then_some(()),
    );
    expect_unobserved(&d, before, 25.0);
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
    poll("the orphans out of the table", 6 * SECOND, || {
        kids.iter().all(|p| !d.has_pid(*p)).then_some(())
    });
    expect_unobserved(&d, before, 10.0);
}
