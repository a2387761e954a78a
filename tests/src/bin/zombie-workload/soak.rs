//! `soak SEED`: random process churn for the soak test, in the ways real programs make and
//! clear zombies, until stdin says otherwise.
//!
//! We are a child subreaper (as a container's init is), so orphans of our middle processes
//! come back to us. Each step is one of: children that exit and are kept as zombies; a
//! reap of one kept zombie or of everything waitable; an exit storm (vfork, reaped at
//! once); a middle process whose children exit and which then exits at once (its zombies
//! are orphaned to us), reaps them first, or lives on holding them until it is SIGKILLed;
//! a multithreaded process whose threads exit before it does; a process whose main thread
//! exits first; a process that ignores SIGCHLD (its children are autoreaped); a process
//! whose non-leader thread calls execve (it takes over the leader's pid); a process killed
//! by a signal; a short pause.
//!
//! Commands: `hold` stops the churn (zombies stay) and prints the counts; `resume` goes
//! on; `reap` kills the live middles and reaps everything; EOF does the same and exits.

use std::{
    sync::mpsc::{self, TryRecvError},
    thread,
    time::Duration,
};

use crate::{fork_exit, say, wait_for};

/// Kept zombies and live middles are bounded so the node's PID table is never at risk.
const MAX_HELD: usize = 1500;
const MAX_MIDDLES: usize = 40;

/// xorshift64*: reproducible from the seed the test prints.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// In `lo..hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo).max(1)
    }
}

#[derive(Default)]
struct State {
    /// Our children that have exited or will exit on their own, not yet reaped.
    held: Vec<i32>,
    /// Live middle processes that hold zombies of their own.
    middles: Vec<i32>,
    steps: u64,
    /// Processes made (each one exits).
    exits: u64,
    reaps: u64,
}

impl State {
    /// Reaps everything waitable now (kept zombies and orphans handed to us).
    fn reap_waitable(&mut self) -> u64 {
        let mut n = 0;
        loop {
            let mut status = 0;
            // SAFETY: non-blocking wait for any child, valid out-pointer.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                break;
            }
            n += 1;
            self.held.retain(|p| *p != pid);
            self.middles.retain(|p| *p != pid);
        }
        self.reaps += n;
        n
    }

    /// Kills the live middles and reaps every child until none is left.
    fn reap_all(&mut self) -> u64 {
        for pid in self.middles.drain(..) {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let mut n = 0;
        loop {
            let mut status = 0;
            // SAFETY: blocking wait for any child, valid out-pointer.
            let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
            if pid <= 0 {
                break; // ECHILD: nothing left
            }
            n += 1;
        }
        self.held.clear();
        self.reaps += n;
        n
    }

    fn counts(&self) -> String {
        format!(
            "{{\"steps\":{},\"exits\":{},\"reaps\":{},\"held\":{},\"middles\":{}}}",
            self.steps,
            self.exits,
            self.reaps,
            self.held.len(),
            self.middles.len()
        )
    }
}

/// Forks a child that runs `f` and then `_exit(code)`.
fn fork_run(code: i32, f: impl FnOnce()) -> i32 {
    // SAFETY: the child runs `f` (it may start threads: glibc keeps malloc usable after fork)
    // and leaves with _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        f();
        unsafe { libc::_exit(code) };
    }
    assert!(pid > 0, "fork failed: {}", std::io::Error::last_os_error());
    pid
}

fn step(rng: &mut Rng, s: &mut State) {
    s.steps += 1;
    if s.held.len() >= MAX_HELD {
        s.reap_waitable();
    }
    let dice = rng.range(0, 100);
    match dice {
        0..=21 | 37..=40 => keep_zombies(rng, s),
        22..=35 => reap_one(rng, s),
        // Everything waitable is reaped.
        36 => {
            s.reap_waitable();
        }
        41..=48 => exit_storm(rng, s),
        49..=60 => middle(rng, s),
        61..=65 => kill_middle(rng, s),
        66..=71 => threads_exit_first(rng, s),
        72..=75 => leader_exits_first(rng, s),
        76..=79 => ignores_sigchld(rng, s),
        80..=82 => thread_execs(s),
        83..=87 => killed_by_signal(rng, s),
        _ => thread::sleep(Duration::from_millis(rng.range(0, 20))),
    }
}

/// Children exit and are kept as zombies.
fn keep_zombies(rng: &mut Rng, s: &mut State) {
    for _ in 0..rng.range(1, 16) {
        s.held.push(fork_exit(rng.range(0, 5) as i32));
        s.exits += 1;
    }
}

/// One kept zombie (or soon-to-exit child) is reaped.
fn reap_one(rng: &mut Rng, s: &mut State) {
    if !s.held.is_empty() {
        let i = rng.range(0, s.held.len() as u64) as usize;
        wait_for(s.held.swap_remove(i));
        s.reaps += 1;
    }
}

/// An exit storm: children exit and are reaped at once.
fn exit_storm(rng: &mut Rng, s: &mut State) {
    for _ in 0..rng.range(200, 3000) {
        // SAFETY: the vfork child only calls _exit.
        #[allow(deprecated)]
        let pid = unsafe { libc::vfork() };
        if pid == 0 {
            unsafe { libc::_exit(0) };
        }
        wait_for(pid);
        s.exits += 1;
        s.reaps += 1;
    }
}

/// A middle process with children of its own.
fn middle(rng: &mut Rng, s: &mut State) {
    let kids = rng.range(1, 20);
    let how = rng.range(0, 3);
    let linger = rng.range(0, 50);
    if how == 2 && s.middles.len() >= MAX_MIDDLES {
        return;
    }
    let pid = fork_run(0, move || {
        let pids: Vec<i32> = (0..kids).map(|_| fork_exit(1)).collect();
        match how {
            // Exit at once: the zombies are orphaned to us.
            0 => {}
            // Reap them after a while, then exit.
            1 => {
                thread::sleep(Duration::from_millis(linger));
                pids.into_iter().for_each(wait_for);
            }
            // Hold them until killed.
            _ => loop {
                // SAFETY: plain pause.
                unsafe { libc::pause() };
            },
        }
    });
    s.exits += kids + 1;
    if how == 2 {
        s.middles.push(pid);
    } else {
        s.held.push(pid);
    }
}

/// A middle is killed: it and its zombies become ours to reap.
fn kill_middle(rng: &mut Rng, s: &mut State) {
    if !s.middles.is_empty() {
        let i = rng.range(0, s.middles.len() as u64) as usize;
        let pid = s.middles.swap_remove(i);
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        s.held.push(pid);
    }
}

/// Threads exit (no zombie), then the process does.
fn threads_exit_first(rng: &mut Rng, s: &mut State) {
    let threads = rng.range(1, 8);
    s.held.push(fork_run(3, move || {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                thread::spawn(move || {
                    if i % 2 == 1 {
                        thread::sleep(Duration::from_secs(60));
                    }
                })
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            if i % 2 == 0 {
                let _ = h.join();
            }
        }
    }));
    s.exits += 1;
}

/// The main thread exits first; the process is a zombie only when the last one does.
fn leader_exits_first(rng: &mut Rng, s: &mut State) {
    let ms = rng.range(1, 40);
    s.held.push(fork_run(0, move || {
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(ms));
            // SAFETY: ends the whole process from the last thread.
            unsafe { libc::_exit(4) };
        });
        // The exit syscall, not exit_group (nor pthread_exit, which would unwind
        // through Rust frames): only the main thread ends.
        // SAFETY: nothing of this thread is used afterwards.
        unsafe { libc::syscall(libc::SYS_exit, 0) };
    }));
    s.exits += 1;
}

/// SIGCHLD ignored: its children are reaped by the kernel and never zombies.
fn ignores_sigchld(rng: &mut Rng, s: &mut State) {
    let kids = rng.range(1, 10);
    s.held.push(fork_run(0, move || {
        // SAFETY: setting a disposition in the single-threaded child.
        unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
        for _ in 0..kids {
            fork_exit(0);
        }
        thread::sleep(Duration::from_millis(5));
    }));
    s.exits += kids + 1;
}

/// A non-leader thread execs: it takes over the leader's pid, then exits.
fn thread_execs(s: &mut State) {
    s.held.push(fork_run(5, || {
        let t = thread::spawn(|| {
            let path = c"/bin/true";
            let argv = [path.as_ptr(), std::ptr::null()];
            let envp = [std::ptr::null()];
            // SAFETY: NUL-terminated path, argv and envp.
            unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        });
        let _ = t.join();
        thread::sleep(Duration::from_secs(5)); // only if execve failed
    }));
    s.exits += 1;
}

/// Killed by a signal.
fn killed_by_signal(rng: &mut Rng, s: &mut State) {
    let pid = fork_run(0, || {
        loop {
            // SAFETY: plain pause.
            unsafe { libc::pause() };
        }
    });
    let sig = if rng.range(0, 2) == 0 {
        libc::SIGKILL
    } else {
        libc::SIGTERM
    };
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, sig) };
    s.held.push(pid);
    s.exits += 1;
}

pub fn soak(seed: u64) {
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let (tx, rx) = mpsc::channel::<String>();
    thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.send(line.trim().to_string()).is_err() {
                break;
            }
        }
    });
    let mut rng = Rng(seed.max(1));
    let mut s = State::default();
    let mut running = true;
    say(&format!(
        "{{\"pid\":{},\"seed\":{seed}}}",
        std::process::id()
    ));
    loop {
        let cmd = if running {
            match rx.try_recv() {
                Ok(c) => Some(c),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => break,
            }
        } else {
            match rx.recv() {
                Ok(c) => Some(c),
                Err(_) => break,
            }
        };
        match cmd.as_deref() {
            Some("hold") => {
                running = false;
                say(&s.counts());
            }
            Some("resume") => running = true,
            Some("reap") => {
                let n = s.reap_all();
                say(&format!("{{\"reaped\":{n}}}"));
            }
            _ => {}
        }
        if running {
            step(&mut rng, &mut s);
        }
    }
    s.reap_all();
}
