//! Processes that make zombies in the ways real programs do, driven by the end-to-end tests.
//!
//! Every mode prints one JSON line on stdout once its zombies exist, then obeys stdin:
//! `reap` waits for its children (and prints `{"reaped":N}`), EOF makes it exit (its zombie
//! children are then handed to a subreaper or init).
//!
//! Modes:
//! - `never-wait N [COMM]`: N children (named COMM if given) exit at once (exit code 7) and
//!   are never waited for.
//! - `ignore-sigchld N`: the same with SIGCHLD ignored: the kernel reaps them at once.
//! - `threads N`: N threads sleep, then the whole process exits with code 3.
//! - `leader-exits-first N MS`: the main thread exits first; N threads live MS ms longer.
//! - `pid1-orphans N`: meant as PID 1 of a new PID namespace: a child starts N grandchildren
//!   and exits; the grandchildren, orphaned to us, exit; we never wait.
//! - `storm N Z`: N children exit and are reaped at once (vfork), with Z never-waited
//!   zombies made halfway through.
//! - `paced RATE SECS`: children exit and are reaped at once (vfork) at RATE a second, in
//!   10 ms ticks, for SECS seconds; then prints `{"pid":..,"exits":N,"seconds":S}` and exits
//!   (one process for the whole run: the load is the exits, nothing else).
//! - `reuse`: a child exits; on `next` it is reaped and a new child is created with the same
//!   pid (clone3 set_tid), which exits too.
//! - `signals N MODE`: N never-waited children, and handlers that count SIGCHLD and SIGTERM
//!   (SIGTERM does not end it); `counts` prints what arrived since the zombies were made.
//!   MODE `reap-on-sigchld` reaps the children once a SIGCHLD arrives; `deaf` never does.
//!   `more N` makes N more never-waited children (and zeroes the counts).
//! - `soak SEED`: random churn of all of the above and more, for the soak test (see
//!   [`soak`]).

mod soak;

use std::{
    io::{BufRead, Write},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::Duration,
};

static SIGCHLDS: AtomicU32 = AtomicU32::new(0);
static SIGTERMS: AtomicU32 = AtomicU32::new(0);

extern "C" fn count_signal(sig: libc::c_int) {
    // Atomics only: async-signal-safe.
    if sig == libc::SIGCHLD {
        SIGCHLDS.fetch_add(1, Ordering::SeqCst);
    } else {
        SIGTERMS.fetch_add(1, Ordering::SeqCst);
    }
}

/// `signals N MODE` (see the module doc).
fn signals(n: u64, reap_on_sigchld: bool) {
    let handler = count_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: installing an async-signal-safe handler at start, single-threaded.
    unsafe {
        libc::signal(libc::SIGCHLD, handler);
        libc::signal(libc::SIGTERM, handler);
    }
    let mut kids: Vec<i32> = (0..n).map(|_| fork_exit(7)).collect();
    // The children's own exit signals are not what the tests count.
    thread::sleep(Duration::from_millis(200));
    SIGCHLDS.store(0, Ordering::SeqCst);
    SIGTERMS.store(0, Ordering::SeqCst);
    say(&format!(
        "{{\"pid\":{},\"children\":{}}}",
        std::process::id(),
        pids_json(&kids)
    ));
    if reap_on_sigchld {
        let to_reap = std::mem::take(&mut kids);
        thread::spawn(move || {
            while SIGCHLDS.load(Ordering::SeqCst) == 0 {
                thread::sleep(Duration::from_millis(10));
            }
            for pid in to_reap {
                wait_for(pid);
            }
        });
    }
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        match line.trim() {
            "counts" => say(&format!(
                "{{\"sigchld\":{},\"sigterm\":{}}}",
                SIGCHLDS.load(Ordering::SeqCst),
                SIGTERMS.load(Ordering::SeqCst)
            )),
            "reap" => {
                let n = kids.len();
                for pid in kids.drain(..) {
                    wait_for(pid);
                }
                say(&format!("{{\"reaped\":{n}}}"));
            }
            other if other.starts_with("more ") => {
                let n: u64 = other[5..].trim().parse().unwrap_or(1);
                let more: Vec<i32> = (0..n).map(|_| fork_exit(7)).collect();
                thread::sleep(Duration::from_millis(200));
                SIGCHLDS.store(0, Ordering::SeqCst);
                SIGTERMS.store(0, Ordering::SeqCst);
                say(&format!("{{\"children\":{}}}", pids_json(&more)));
                kids.extend(more);
            }
            _ => {}
        }
    }
}

fn fork_exit(code: i32) -> i32 {
    // SAFETY: the child only calls async-signal-safe _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        unsafe { libc::_exit(code) };
    }
    assert!(pid > 0, "fork failed");
    pid
}

/// A child that renames itself (its comm) and exits with `code`.
fn fork_named_exit(comm: &str, code: i32) -> i32 {
    let name = std::ffi::CString::new(comm).expect("a comm without NUL");
    // SAFETY: the child only calls prctl and _exit, both async-signal-safe syscalls.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        unsafe {
            libc::prctl(libc::PR_SET_NAME, name.as_ptr(), 0, 0, 0);
            libc::_exit(code)
        };
    }
    assert!(pid > 0, "fork failed");
    pid
}

/// clone3 with a chosen pid (needs CAP_SYS_ADMIN); the child exits with `code`.
fn clone_with_pid(pid: i32, code: i32) -> i32 {
    #[repr(C)]
    #[derive(Default)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    let tid: [libc::pid_t; 1] = [pid];
    let args = CloneArgs {
        exit_signal: libc::SIGCHLD as u64,
        set_tid: tid.as_ptr() as u64,
        set_tid_size: 1,
        ..Default::default()
    };
    // SAFETY: fork-like clone3 (no CLONE_VM); the child only calls _exit.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if ret == 0 {
        unsafe { libc::_exit(code) };
    }
    ret as i32
}

fn wait_for(pid: i32) {
    let mut status = 0;
    // SAFETY: plain waitpid on our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Obeys stdin until EOF: `reap` reaps `children`.
fn serve(children: &mut Vec<i32>) {
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line.trim() == "reap" {
            let n = children.len();
            for pid in children.drain(..) {
                wait_for(pid);
            }
            say(&format!("{{\"reaped\":{n}}}"));
        }
    }
}

fn pids_json(pids: &[i32]) -> String {
    let list: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
    format!("[{}]", list.join(","))
}

fn arg(args: &[String], i: usize, default: u64) -> u64 {
    args.get(i).and_then(|s| s.parse().ok()).unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("soak") => soak::soak(arg(&args, 2, 1)),
        Some("never-wait") => never_wait(&args),
        Some("orphans-to-ignoring-reaper") => orphans_to_ignoring_reaper(&args),
        Some("ignore-sigchld") => ignore_sigchld(&args),
        Some("threads") => threads(&args),
        Some("leader-exits-first") => leader_exits_first(&args),
        Some("pid1-orphans") => pid1_orphans(&args),
        Some("storm") => storm(&args),
        Some("paced") => paced(&args),
        Some("reuse") => reuse(),
        Some("signals") => {
            let reap = match args.get(3).map(String::as_str) {
                Some("reap-on-sigchld") => true,
                Some("deaf") => false,
                _ => {
                    eprintln!("usage: zombie-workload signals N reap-on-sigchld|deaf");
                    std::process::exit(2);
                }
            };
            signals(arg(&args, 2, 3), reap);
        }
        _ => {
            eprintln!(
                "usage: zombie-workload never-wait N | ignore-sigchld N | threads N | \
                 leader-exits-first N MS | pid1-orphans N | storm N Z | reuse | \
                 signals N reap-on-sigchld|deaf"
            );
            std::process::exit(2);
        }
    }
}

/// `never-wait N [COMM]` (see the module doc).
fn never_wait(args: &[String]) {
    let me = std::process::id();
    let mut kids: Vec<i32> = match args.get(3) {
        Some(comm) => (0..arg(args, 2, 1))
            .map(|_| fork_named_exit(comm, 7))
            .collect(),
        None => (0..arg(args, 2, 1)).map(|_| fork_exit(7)).collect(),
    };
    say(&format!(
        "{{\"pid\":{me},\"children\":{}}}",
        pids_json(&kids)
    ));
    serve(&mut kids);
}

/// `orphans-to-ignoring-reaper N [COMM]`: a subreaper that ignores SIGCHLD, a middle process
/// with N zombie children (named COMM); on `release` the middle exits and the kernel releases
/// its zombies at once in the middle's exit, without anyone calling wait().
fn orphans_to_ignoring_reaper(args: &[String]) {
    let me = std::process::id();
    let n = arg(args, 2, 1);
    let comm = args.get(3).cloned().unwrap_or_else(|| "zd-orphan".into());
    let mut fds = [0; 2];
    // SAFETY: plain syscalls with valid pointers; single-threaded at this point.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
    }
    // SAFETY: the middle child only forks, writes and reads, then _exits.
    let middle = unsafe { libc::fork() };
    if middle == 0 {
        let kids: Vec<i32> = (0..n).map(|_| fork_named_exit(&comm, 4)).collect();
        say(&format!(
            "{{\"pid\":{me},\"middle\":{},\"children\":{}}}",
            std::process::id(),
            pids_json(&kids)
        ));
        let mut b = [0u8; 1];
        // SAFETY: reading one byte into a local buffer.
        unsafe {
            libc::read(fds[0], b.as_mut_ptr().cast(), 1);
            libc::_exit(0);
        }
    }
    assert!(middle > 0, "fork failed");
    // SAFETY: setting a disposition; the middle has its own copy (default).
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line.trim() == "release" {
            // SAFETY: writing one byte from a local buffer.
            unsafe { libc::write(fds[1], b"x".as_ptr().cast(), 1) };
            say("{\"released\":true}");
        }
    }
}

/// `ignore-sigchld N` (see the module doc).
fn ignore_sigchld(args: &[String]) {
    let me = std::process::id();
    // SAFETY: setting a disposition at start, single-threaded.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
    let kids: Vec<i32> = (0..arg(args, 2, 1)).map(|_| fork_exit(7)).collect();
    thread::sleep(Duration::from_millis(200));
    say(&format!(
        "{{\"pid\":{me},\"children\":{}}}",
        pids_json(&kids)
    ));
    serve(&mut Vec::new());
}

/// `threads N` (see the module doc).
fn threads(args: &[String]) {
    let me = std::process::id();
    let n = arg(args, 2, 4);
    let handles: Vec<_> = (0..n)
        .map(|_| thread::spawn(|| thread::sleep(Duration::from_secs(3600))))
        .collect();
    thread::sleep(Duration::from_millis(200));
    say(&format!(
        "{{\"pid\":{me},\"threads\":{}}}",
        handles.len() + 1
    ));
    // exit_group with threads still running: one process exits, not N+1.
    std::process::exit(3);
}

/// `leader-exits-first N MS` (see the module doc).
fn leader_exits_first(args: &[String]) {
    let me = std::process::id();
    let n = arg(args, 2, 4);
    let ms = arg(args, 3, 1000);
    for i in 0..n {
        thread::spawn(move || {
            if i == 0 {
                // Once the leader is gone, a marker: a child that becomes a zombie
                // (`{"marker":PID}`). Events reach the daemon in order, so once it
                // lists the marker it has seen whatever the leader's exit made.
                let stat = format!("/proc/{me}/task/{me}/stat");
                while !std::fs::read_to_string(&stat).is_ok_and(|s| s.contains(") Z ")) {
                    thread::sleep(Duration::from_millis(5));
                }
                say(&format!("{{\"marker\":{}}}", fork_exit(9)));
            }
            thread::sleep(Duration::from_millis(ms));
            // SAFETY: ends the whole process from the last thread standing.
            unsafe { libc::_exit(0) };
        });
    }
    say(&format!("{{\"pid\":{me},\"threads\":{}}}", n + 1));
    // The main thread alone leaves (the exit syscall, not exit_group); the process lives
    // on in its threads. Not pthread_exit: it would unwind through Rust frames.
    // SAFETY: ends only this thread; nothing of it is used afterwards.
    unsafe { libc::syscall(libc::SYS_exit, 0) };
    unreachable!();
}

/// `pid1-orphans N` (see the module doc).
fn pid1_orphans(args: &[String]) {
    let me = std::process::id();
    let n = arg(args, 2, 3);
    // SAFETY: the child forks and exits; async-signal-safe calls only.
    let child = unsafe { libc::fork() };
    if child == 0 {
        for _ in 0..n {
            // SAFETY: as above.
            if unsafe { libc::fork() } == 0 {
                unsafe { libc::usleep(100_000) };
                unsafe { libc::_exit(5) };
            }
        }
        unsafe { libc::_exit(0) };
    }
    say(&format!("{{\"pid\":{me},\"orphans\":{n}}}"));
    // A PID 1 that never reaps: sleep until killed.
    loop {
        thread::sleep(Duration::from_secs(3600));
    }
}

/// `storm N Z` (see the module doc).
fn storm(args: &[String]) {
    let me = std::process::id();
    let n = arg(args, 2, 10_000);
    let z = arg(args, 3, 0);
    let mut kids = vec![];
    for i in 0..n {
        if i == n / 2 {
            kids.extend((0..z).map(|_| fork_exit(7)));
        }
        // vfork is the fastest way to make exits (~15k/s per loop on 2 cores, fork
        // ~2k/s). The deprecation is about children that touch memory or return;
        // this one only calls _exit.
        // SAFETY: the child shares our memory and stack until it calls _exit.
        #[allow(deprecated)]
        let pid = unsafe { libc::vfork() };
        if pid == 0 {
            unsafe { libc::_exit(0) };
        }
        wait_for(pid);
    }
    say(&format!(
        "{{\"pid\":{me},\"children\":{}}}",
        pids_json(&kids)
    ));
    serve(&mut kids);
}

/// `paced RATE SECS` (see the module doc).
fn paced(args: &[String]) {
    let me = std::process::id();
    let (rate, secs) = (arg(args, 2, 1_000), arg(args, 3, 10));
    let tick = std::time::Duration::from_millis(10);
    let per_tick = (rate / 100).max(1);
    let t0 = std::time::Instant::now();
    let (mut exits, mut ticks) = (0u64, 0u32);
    while t0.elapsed() < std::time::Duration::from_secs(secs) {
        for _ in 0..per_tick {
            // SAFETY: as in `storm`: the child only calls _exit.
            #[allow(deprecated)]
            let pid = unsafe { libc::vfork() };
            if pid == 0 {
                unsafe { libc::_exit(0) };
            }
            wait_for(pid);
            exits += 1;
        }
        ticks += 1;
        if let Some(d) = (tick * ticks).checked_sub(t0.elapsed()) {
            std::thread::sleep(d);
        }
    }
    say(&format!(
        "{{\"pid\":{me},\"exits\":{exits},\"seconds\":{}}}",
        t0.elapsed().as_secs_f64()
    ));
}

/// `reuse` (see the module doc).
fn reuse() {
    let me = std::process::id();
    let first = fork_exit(1);
    say(&format!("{{\"pid\":{me},\"children\":[{first}]}}"));
    let mut kids = vec![];
    let mut line = String::new();
    // One line only: `serve` below takes the stdin lock again.
    while std::io::stdin().read_line(&mut line).unwrap_or(0) > 0 {
        if line.trim() == "next" {
            wait_for(first);
            // Later than the first one's start tick, so /proc tells them apart too.
            thread::sleep(Duration::from_millis(30));
            let second = clone_with_pid(first, 2);
            say(&format!("{{\"pid\":{me},\"children\":[{second}]}}"));
            if second > 0 {
                kids.push(second);
            }
            break;
        }
        line.clear();
    }
    serve(&mut kids);
}
