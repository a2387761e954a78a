//! Provenance end to end: which exec session, exec probe or container init left each zombie,
//! through a real containerd's CRI `ExecSync`, through `nsenter` into a runc container, and
//! after the daemon is killed with SIGKILL and restarted.

use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::{
    SECOND, containerd,
    harness::{self, Daemon, poll},
    runc,
};

/// The zombies under `pid1` whose origin has this kind and command line.
fn with_origin(d: &Daemon, pid1: i32, kind: &str, cmdline: &str) -> Vec<Value> {
    d.children_of(pid1)
        .into_iter()
        .filter(|z| z["origin"]["kind"] == kind && z["origin"]["cmdline"] == cmdline)
        .collect()
}

/// A pod whose container's PID 1 never reaps (`sleep`, after its shell made one child);
/// exec probes through CRI `ExecSync` leave orphans it adopts. Each zombie is attributed to
/// the exec that left it, with that exec's command line, also when the exec timed out; the
/// child of PID 1's own shell is `init`.
#[test]
fn exec_sync_orphans_in_a_containerd_pod_are_attributed_to_the_exec() {
    let mut c = containerd::Containerd::start();
    let d = Daemon::start_with(&["--runtime-endpoint", &c.endpoint(), "--show-cmdlines"]);
    let uid = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
    let sandbox = c.run_pod(
        "probed",
        "zombie-e2e",
        uid,
        &format!("/kubepods/besteffort/pod{uid}"),
    );
    let init_cmd = "sh -c sleep 0.2 & exec sleep 3600";
    let cid = c.run_container(
        &sandbox,
        "app",
        containerd::BUSYBOX_IMAGE,
        &["sh", "-c", "sleep 0.2 & exec sleep 3600"],
    );
    let pid1 = c.container_pid(&cid);

    // PID 1's own child (named through CRI: the daemon has learnt the new pod's names).
    let init = poll("the zombie of PID 1's own child", 5 * SECOND, || {
        let z = with_origin(&d, pid1, "init", init_cmd);
        (z.len() == 1 && z[0]["pod"] == "probed").then_some(z)
    });
    assert_eq!(init[0]["origin"]["pid"], pid1, "{:#}", init[0]);
    assert_eq!(init[0]["origin"]["comm"], "sh", "{:#}", init[0]);

    // An exec probe that leaves a child behind and exits at once.
    let probe = "sh -c sleep 0.3 & exit 0";
    assert_eq!(
        c.exec_sync(&cid, &["sh", "-c", "sleep 0.3 & exit 0"], 10),
        Ok(0)
    );
    let leaked = poll("the exec probe's zombie", 5 * SECOND, || {
        let z = with_origin(&d, pid1, "exec", probe);
        (z.len() == 1).then_some(z)
    });
    let z = &leaked[0];
    assert_eq!(z["comm"], "sleep", "{z:#}");
    assert_eq!(z["origin"]["comm"], "sh", "{z:#}");
    assert_eq!(z["container"], "app", "{z:#}");
    let origin_pid = z["origin"]["pid"].as_i64().unwrap();
    assert!(origin_pid != i64::from(pid1) && origin_pid > 0, "{z:#}");
    let remedy = z["remedy"].as_str().unwrap();
    assert!(
        remedy.starts_with(&format!(
            "the exec probe or session `{probe}` (pid {origin_pid}) leaves children behind: "
        )),
        "{remedy}"
    );

    // An exec probe that times out: containerd kills it after 1 s (the shell, which execs
    // its last command: `sleep 2.5`; `exec` says so, as shells differ in whether they do it
    // on their own, and one that does not would leave the sleeper to become a third zombie);
    // its background child is orphaned to PID 1 and becomes its zombie when it ends.
    let slow = "sh -c sleep 1.5 & exec sleep 2.5";
    let r = c.exec_sync(&cid, &["sh", "-c", "sleep 1.5 & exec sleep 2.5"], 1);
    assert!(r.is_err(), "the exec was to time out: {r:?}");

    assert!(r.as_ref().unwrap_err().contains("timeout"), "{r:?}");
    let timed_out = poll("the timed-out exec's zombie", 6 * SECOND, || {
        with_origin(&d, pid1, "exec", slow).into_iter().next()
    });
    assert_eq!(timed_out["comm"], "sleep", "{timed_out:#}");
    assert_ne!(timed_out["origin"]["pid"].as_i64().unwrap(), origin_pid);

    let series = |origin: &str, n: u32| {
        format!(
            "zombie_processes_by_origin{{container=\"app\",namespace=\"zombie-e2e\",origin=\"{origin}\",pod=\"probed\"}} {n}"
        )
    };
    let counter = "zombie_exec_session_zombies_total{container=\"app\",namespace=\"zombie-e2e\",pod=\"probed\"} 2";
    poll("origin series and the exec counter", 2 * SECOND, || {
        let (_, m) = d.get("/metrics").unwrap();
        (m.contains(&series("exec", 2)) && m.contains(&series("init", 1)) && m.contains(counter))
            .then_some(())
    });

    let endpoint = format!("http://127.0.0.1:{}", d.port);
    let out = Command::new(harness::daemon_bin())
        .args(["list", "--endpoint", &endpoint, "--pod", "probed"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().next().unwrap().contains("ORIGIN"), "{text}");
    assert_eq!(
        text.lines().filter(|l| l.contains(" exec:sh ")).count(),
        2,
        "{text}"
    );
    assert!(
        text.contains(&format!("remedy: the exec probe or session `{probe}`")),
        "{text}"
    );
}

/// `nsenter` into `pid1`'s PID namespace, as a runtime's exec does it, running `script` in
/// a new session (runtimes start exec sessions so); killed and reaped on drop.
struct Nsenter(Child);

impl Nsenter {
    fn run(pid1: i32, script: &str) -> Self {
        Self::spawn(pid1, script, Stdio::null())
    }

    fn spawn(pid1: i32, script: &str, stdin: Stdio) -> Self {
        Self(
            Command::new("nsenter")
                .args([
                    "-t",
                    &pid1.to_string(),
                    "-p",
                    "--",
                    "setsid",
                    "sh",
                    "-c",
                    script,
                ])
                .stdin(stdin)
                .stdout(Stdio::null())
                .spawn()
                .expect("nsenter (util-linux)"),
        )
    }
}

impl Drop for Nsenter {
    fn drop(&mut self) {
        // The session first, so that nsenter reaps it: a member of the container's PID
        // namespace left a zombie of ours would hold the namespace's teardown (its init
        // waits in zap_pid_ns_processes) and the container's drop with it.
        let pid = self.0.id();
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        for child in children
            .split_whitespace()
            .filter_map(|c| c.parse::<i32>().ok())
        {
            // SAFETY: killing the session this test started.
            unsafe { libc::kill(child, libc::SIGKILL) };
        }
        let _ = self.0.wait();
    }
}

/// `nsenter` into a runc container's PID namespace from outside, as runtimes exec into
/// containers: the kernel side attributes the orphans to that session. After the daemon is
/// killed with SIGKILL and restarted, the zombies are found in /proc and their origin is
/// derived from what /proc still shows: PID 1's own child is `init`, the child of a session
/// still running is `exec` with that process's command line, and an orphan whose session
/// is gone is `unknown`. A session older than the new daemon that forks after its start
/// passes on the lineage the daemon seeded into the kernel from /proc.
#[test]
fn nsenter_sessions_are_exec_origins_and_after_kill_9_proc_tells_what_it_can() {
    harness::become_subreaper();
    let d = Daemon::start_with(&["--show-cmdlines"]);
    let cgroup = format!(
        "/kubepods/besteffort/pod7b6a5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d/{}",
        "c3".repeat(32)
    );
    let c = runc::RuncContainer::start(
        "zombie-e2e-provenance",
        &cgroup,
        &["/bin/sh", "-c", "sleep 0.2 & exec sleep 3600"],
    );
    // A session that stays (its shell execs a sleeper) with a zombie child, and one that
    // ends at once, orphaning its child to PID 1.
    let staying = "sh -c sleep 0.2 & exec sleep 3600";
    let _kept = Nsenter::run(c.pid, "sleep 0.2 & exec sleep 3600");
    let mut ended = Nsenter::run(c.pid, "sleep 0.2 & exit 0");
    let _ = ended.0.wait();
    // A session that forks only when told (a line on its stdin), after the restart.
    let mut waiting = Nsenter::spawn(c.pid, "read x; sleep 0.1 & exec sleep 3600", Stdio::piped());

    let pid1_child = poll("PID 1's own zombie", 5 * SECOND, || {
        d.children_of(c.pid)
            .into_iter()
            .find(|z| z["origin"]["kind"] == "init")
    });
    assert_eq!(pid1_child["origin"]["pid"], c.pid, "{pid1_child:#}");
    let orphan = poll("the ended session's orphan", 5 * SECOND, || {
        with_origin(&d, c.pid, "exec", "setsid sh -c sleep 0.2 & exit 0")
            .into_iter()
            .next()
    });
    // The staying session's zombie is its shell's child (the shell is now `sleep 3600`).
    let session = poll("the staying session's zombie", 5 * SECOND, || {
        d.zombies().into_iter().find(|z| {
            z["origin"]["kind"] == "exec" && z["origin"]["cmdline"] == format!("setsid {staying}")
        })
    });
    let session_pid = session["ppid"].as_i64().unwrap();
    assert_eq!(session["origin"]["pid"].as_i64(), Some(session_pid));

    // SIGKILL: nothing is handed over; the new daemon knows only /proc.
    // SAFETY: killing the daemon we started.
    unsafe { libc::kill(d.pid(), libc::SIGKILL) };
    drop(d);
    let d = Daemon::start();
    let origin_of = |pid: &Value| {
        poll("the zombie after the restart", 5 * SECOND, || {
            d.zombies().into_iter().find(|z| &z["pid"] == pid)
        })["origin"]
            .clone()
    };
    let o = origin_of(&pid1_child["pid"]);
    assert_eq!(
        (o["kind"].as_str(), o["pid"].as_i64()),
        (Some("init"), Some(i64::from(c.pid))),
        "{o:#}"
    );
    let o = origin_of(&session["pid"]);
    assert_eq!(
        (o["kind"].as_str(), o["pid"].as_i64()),
        (Some("exec"), Some(session_pid)),
        "{o:#}"
    );
    // /proc shows the session's command line now (redacted without --show-cmdlines).
    assert_eq!(o["cmdline"], "sleep [redacted]", "{o:#}");
    let o = origin_of(&orphan["pid"]);
    assert_eq!(o["kind"], "unknown", "{o:#}");
    assert_eq!(o["pid"], Value::Null, "{o:#}");

    // The waiting session forks now: the kernel knows its lineage from the seed.
    let shell = poll("the waiting session's shell", 5 * SECOND, || {
        let pid = waiting.0.id();
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
        children.split_whitespace().next()?.parse::<i64>().ok()
    });
    use std::io::Write as _;
    writeln!(waiting.0.stdin.take().unwrap()).unwrap();
    let late = poll("the waiting session's zombie", 5 * SECOND, || {
        d.zombies()
            .into_iter()
            .find(|z| z["ppid"].as_i64() == Some(shell))
    });
    assert_eq!(late["exited_at_estimated"], false, "seen exiting: {late:#}");
    assert_eq!(late["origin"]["kind"], "exec", "{late:#}");
    assert_eq!(late["origin"]["pid"].as_i64(), Some(shell), "{late:#}");
    // The seed carried the session's command line as /proc showed it then (redacted).
    assert_eq!(late["origin"]["cmdline"], "sh [redacted]", "{late:#}");
}

/// The kernel side alone, with nothing but util-linux (so it runs on every kernel of the VM
/// matrix): PID 1 of a new PID namespace (a shell that execs `sleep`, never reaping) and a
/// session entered with `nsenter`. PID 1's own child is `init`, the session's orphan `exec`
/// with the session's command line; neither needs /proc after the fact.
#[test]
fn a_pid_namespaces_init_children_and_an_entered_sessions_orphans_have_their_origins() {
    let d = Daemon::start_with(&["--show-cmdlines"]);
    let unshare = KillPid1(
        Command::new("unshare")
            .args([
                "--pid",
                "--fork",
                "--",
                "sh",
                "-c",
                "sleep 0.2 & exec sleep 60",
            ])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare (util-linux)"),
    );
    let pid1 = poll("PID 1 of the new namespace", 5 * SECOND, || {
        let children =
            std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", unshare.0.id())).ok()?;
        children.split_whitespace().next()?.parse::<i32>().ok()
    });
    let own = poll("PID 1's own zombie", 5 * SECOND, || {
        d.children_of(pid1).into_iter().next()
    });
    assert_eq!(own["origin"]["kind"], "init", "{own:#}");
    assert_eq!(own["origin"]["pid"], pid1, "{own:#}");
    assert_eq!(
        own["origin"]["cmdline"], "sh -c sleep 0.2 & exec sleep 60",
        "{own:#}"
    );

    let mut session = Nsenter::run(pid1, "sleep 0.2 & exit 0");
    let _ = session.0.wait();
    let orphan = poll("the session's orphan", 5 * SECOND, || {
        d.children_of(pid1)
            .into_iter()
            .find(|z| z["origin"]["kind"] == "exec")
    });
    assert_eq!(
        orphan["origin"]["cmdline"], "setsid sh -c sleep 0.2 & exit 0",
        "{orphan:#}"
    );
    assert!(
        orphan["remedy"]
            .as_str()
            .unwrap()
            .starts_with("the exec probe or session `setsid sh -c sleep 0.2 & exit 0`"),
        "{orphan:#}"
    );
}

/// `unshare --pid --fork`, whose namespace's PID 1 is killed (and with it the namespace) on
/// drop.
struct KillPid1(Child);

impl Drop for KillPid1 {
    fn drop(&mut self) {
        let pid = self.0.id();
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        for child in children
            .split_whitespace()
            .filter_map(|c| c.parse::<i32>().ok())
        {
            // SAFETY: killing the namespace's init this test started.
            unsafe { libc::kill(child, libc::SIGKILL) };
        }
        let _ = self.0.wait();
    }
}
