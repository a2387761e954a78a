//! The real daemon and real workloads, started and always cleaned up.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    sync::Once,
    time::{Duration, Instant},
};

use serde_json::Value;

/// The workspace's target dir (tests run from `tests/`).
fn target_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target")
}

pub fn daemon_bin() -> PathBuf {
    std::env::var_os("ZOMBIE_DAEMON_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("debug/zombie-daemon"))
}

/// The `zombie-init-runtime` wrapper (`cargo build --workspace` builds it; `cargo xtask test`
/// does so before the end-to-end tests).
pub fn init_runtime_bin() -> PathBuf {
    let bin = std::env::var_os("ZOMBIE_INIT_RUNTIME_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("debug/zombie-init-runtime"));
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build -p zombie-init-runtime` (cargo xtask test builds it)",
        bin.display()
    );
    bin
}

pub fn workload_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_zombie-workload"))
}

/// Programs of the node: copies of zombie-workload under the names of node components
/// (kubelet, containerd-shim, ...), started as host processes: outside every pod, in the
/// suite's own mount namespace, which is the node's (`cargo xtask fresh` runs the suite in
/// a mount namespace of its own and tells the daemon so with `ZOMBIE_NODE_MOUNT_NAMESPACE`).
pub struct NodePrograms {
    dir: PathBuf,
}

impl NodePrograms {
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("zd-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self { dir }
    }

    /// Installs zombie-workload as `name` (a copy, not a symlink: a node component is told
    /// by its executable's own name) and returns a command that runs it.
    pub fn command(&self, name: &str) -> Command {
        let dest = self.dir.join(name);
        if !dest.exists() {
            std::fs::copy(workload_bin(), &dest).unwrap();
        }
        Command::new(dest)
    }
}

impl Drop for NodePrograms {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Orphans of our workloads come to us, not to the machine's init (which may not reap);
/// tests reap what they made.
pub fn become_subreaper() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: prctl with plain integer arguments.
        let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        assert_eq!(rc, 0, "PR_SET_CHILD_SUBREAPER failed");
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "the end-to-end tests load eBPF programs: run them as root (cargo xtask test)"
        );
    });
}

/// Reaps every child of ours that has already exited: what an earlier test left behind
/// (orphans handed to us, the subreaper). A test whose daemon may act on host processes
/// calls it first, so that the test process itself is not a parent with zombies.
pub fn reap_leftovers() -> usize {
    let mut n = 0;
    loop {
        let mut status = 0;
        // SAFETY: non-blocking waitpid with a valid out-pointer.
        if unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) } <= 0 {
            return n;
        }
        n += 1;
    }
}

/// Reaps `pid` if it is our child (or was handed to us); ignores it otherwise.
pub fn reap(pid: i32) {
    let mut status = 0;
    // SAFETY: waitpid with a valid out-pointer.
    unsafe { libc::waitpid(pid, &mut status, 0) };
}

/// A minimal HTTP/1.0 GET on 127.0.0.1:`port`: (status, body). No client crate: the tests
/// only need status and body from servers on loopback.
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    http_get_full(port, path).map(|(status, _, body)| (status, body))
}

/// GET `path`: (status, header lines "name: value" with names in lower case, body).
pub fn http_get_full(port: u16, path: &str) -> std::io::Result<(u16, Vec<String>, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let headers = head
        .lines()
        .skip(1)
        .map(|l| match l.split_once(':') {
            Some((name, value)) => format!("{}: {}", name.to_ascii_lowercase(), value.trim()),
            None => l.to_string(),
        })
        .collect();
    Ok((status, headers, body.to_string()))
}

/// The value of header `name` (lower case) in `http_get_full`'s header lines.
pub fn header<'a>(headers: &'a [String], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
}

/// CLOCK_BOOTTIME now, in nanoseconds: the clock the daemon stamps what it publishes with.
pub fn boottime_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec for the kernel to fill.
    assert_eq!(
        unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) },
        0
    );
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// How old an audit `/audit` may answer with (the daemon's `http::AUDIT_MAX_AGE`).
pub const AUDIT_MAX_AGE: Duration = Duration::from_secs(2);

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn poll<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Checks `f` every 20 ms for `duration` and panics at its first failure: for what must stay
/// true for a bound the daemon documents (that nothing is counted twice, say), where a
/// single look after a sleep would miss a violation that came and went.
pub fn hold(what: &str, duration: Duration, mut f: impl FnMut() -> Result<(), String>) {
    let start = Instant::now();
    loop {
        if let Err(e) = f() {
            panic!("{what} stopped holding after {:?}: {e}", start.elapsed());
        }
        if start.elapsed() >= duration {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Removes cgroup directories, deepest first, once their processes have been moved out:
/// the kernel lets a cgroup go only after its last task has left (an exiting task leaves a
/// moment after its SIGKILL), so each removal is retried until it succeeds or `within` has
/// passed; what is still there then is returned.
pub fn remove_cgroup_dirs(dirs: &[PathBuf], within: Duration) -> Vec<PathBuf> {
    let start = Instant::now();
    let mut left: Vec<PathBuf> = dirs.iter().filter(|d| d.exists()).cloned().collect();
    left.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    loop {
        left.retain(|d| std::fs::remove_dir(d).is_err() && d.exists());
        if left.is_empty() || start.elapsed() > within {
            return left;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The daemon's documented bounds (README, "When the kernel loses events"): how long after
/// its reap a zombie can still be listed.
///
/// A reap the kernel reported.
pub const REAP_SEEN: Duration = Duration::from_secs(2);
/// A reap the kernel never reported, of a zombie whose parent waited, exited or handed it
/// to a new parent since it exited.
pub const REAP_UNSEEN_CANDIDATE: Duration = Duration::from_secs(3);

/// How a reap test runs the daemon: as it ships, and with every reap event (release and
/// free) of processes with the given comm dropped in the kernel, so that only the /proc
/// confirmation can take the reaped zombies out.
#[derive(Clone, Copy, Debug)]
pub enum Reaps {
    Seen,
    Dropped(&'static str),
}

impl Reaps {
    /// Both ways, the second dropping the reaps of `comm`.
    pub fn both(comm: &'static str) -> [Self; 2] {
        [Self::Seen, Self::Dropped(comm)]
    }

    pub fn start(self, extra: &[&str]) -> Daemon {
        match self {
            Self::Seen => Daemon::start_with(extra),
            Self::Dropped(comm) => {
                let mut args = vec!["--fault-drop-free-comm", comm];
                args.extend_from_slice(extra);
                Daemon::start_with(&args)
            }
        }
    }

    /// The documented bound for a reaped candidate zombie to leave /zombies.
    pub fn bound(self) -> Duration {
        match self {
            Self::Seen => REAP_SEEN,
            Self::Dropped(_) => REAP_UNSEEN_CANDIDATE,
        }
    }
}

/// How long a daemon may take to answer 200 on /readyz: 30 s, or `ZOMBIE_TEST_READY_SECS`
/// (the VM guests under TCG on a loaded machine set more: their load takes longer).
pub fn ready_bound() -> Duration {
    std::env::var("ZOMBIE_TEST_READY_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_secs(30), Duration::from_secs)
}

/// A running `zombie-daemon run`, stopped on drop.
pub struct Daemon {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

impl Daemon {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Self {
        Self::start_wrapped(&[], extra)
    }

    /// Starts the daemon through `wrapper` (a command that ends by exec'ing its arguments,
    /// e.g. `setpriv ... --`), so that the pid is still the daemon's.
    pub fn start_wrapped(wrapper: &[&str], extra: &[&str]) -> Self {
        become_subreaper();
        let port = free_port();
        let log = std::env::temp_dir().join(format!("zombie-daemon-e2e-{port}.log"));
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(daemon_bin());
                c
            }
            None => Command::new(daemon_bin()),
        };
        let child = cmd
            .args([
                "run",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--log-level",
                "info,zombie_daemon=debug",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", daemon_bin().display()));
        let mut d = Daemon { child, port, log };
        let start = Instant::now();
        loop {
            if let Some(status) = d.child.try_wait().unwrap() {
                panic!("the daemon exited with {status}:\n{}", d.log_text());
            }
            if let Ok((200, _)) = d.get("/readyz") {
                break;
            }
            if start.elapsed() > ready_bound() {
                panic!(
                    "the daemon was not ready within {:?}:\n{}",
                    ready_bound(),
                    d.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Every thread's capability sets, no_new_privs and seccomp mode, as
    /// /proc/<pid>/task/*/status shows them: (thread, [("CapInh", mask), ..., ("Seccomp", 2)]).
    pub fn privileges(&self) -> Vec<(String, Vec<(String, u64)>)> {
        let mut out = Vec::new();
        for task in std::fs::read_dir(format!("/proc/{}/task", self.pid())).unwrap() {
            let task = task.unwrap().path();
            let Ok(status) = std::fs::read_to_string(task.join("status")) else {
                continue; // a blocking-pool thread that just ended
            };
            let fields = status
                .lines()
                .filter_map(|l| l.split_once(':'))
                .filter(|(k, _)| k.starts_with("Cap") || *k == "NoNewPrivs" || *k == "Seccomp")
                .map(|(k, v)| (k.to_string(), u64::from_str_radix(v.trim(), 16).unwrap()))
                .collect();
            out.push((task.display().to_string(), fields));
        }
        out
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET `path` from the daemon: (status, body).
    pub fn get(&self, path: &str) -> std::io::Result<(u16, String)> {
        http_get(self.port, path)
    }

    /// GET `path` from the daemon: (status, header lines, body); see [`http_get_full`].
    pub fn get_full(&self, path: &str) -> std::io::Result<(u16, Vec<String>, String)> {
        http_get_full(self.port, path)
    }

    /// The containers of an audit taken after `since` (CLOCK_BOOTTIME ns, see
    /// [`boottime_ns`]): `/audit` answers with one up to [`AUDIT_MAX_AGE`] old, so this waits
    /// for the next walk when the last one is older than the change a test made.
    pub fn audit_since(&self, since: u64) -> Vec<Value> {
        poll(
            "an audit taken after the change",
            AUDIT_MAX_AGE + Duration::from_secs(3),
            || {
                let (status, headers, body) = self.get_full("/audit").ok()?;
                assert_eq!(status, 200, "{body}");
                let taken: u64 = header(&headers, "x-audit-taken-at-boottime-ns")?
                    .parse()
                    .ok()?;
                (taken >= since).then(|| serde_json::from_str(&body).expect("/audit is JSON"))
            },
        )
    }

    /// The containers of an audit taken after this call.
    pub fn audit(&self) -> Vec<Value> {
        self.audit_since(boottime_ns())
    }

    pub fn zombies(&self) -> Vec<Value> {
        let (status, body) = self.get("/zombies").expect("GET /zombies");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<Vec<Value>>(&body).expect("/zombies is a JSON array")
    }

    /// Zombies whose parent is `ppid`.
    pub fn children_of(&self, ppid: i32) -> Vec<Value> {
        self.zombies()
            .into_iter()
            .filter(|z| z["ppid"].as_i64() == Some(ppid as i64))
            .collect()
    }

    pub fn has_pid(&self, pid: i32) -> bool {
        self.zombies()
            .iter()
            .any(|z| z["pid"].as_i64() == Some(pid as i64))
    }

    /// The value of an unlabelled metric, or the sum over a labelled one's series.
    pub fn metric(&self, name: &str) -> f64 {
        let (_, body) = self.get("/metrics").expect("GET /metrics");
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.split(['{', ' ']).next() == Some(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// SIGTERM; returns how long the daemon took to exit and its exit code.
    pub fn terminate(&mut self) -> (Duration, Option<i32>) {
        let start = Instant::now();
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        let status = poll("daemon exit", Duration::from_secs(10), || {
            self.child.try_wait().unwrap()
        });
        (start.elapsed(), status.code())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(self.pid(), libc::SIGTERM) };
            let start = Instant::now();
            while self.child.try_wait().ok().flatten().is_none() {
                if start.elapsed() > Duration::from_secs(5) {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if std::thread::panicking() {
            eprintln!("--- daemon log ---\n{}", self.log_text());
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A running `zombie-workload`, killed and reaped (with its children) on drop.
pub struct Workload {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    /// Pids this workload reported, reaped on drop in case they were handed to us.
    pub known: Vec<i32>,
}

impl Workload {
    pub fn spawn(args: &[&str]) -> (Self, Value) {
        Self::spawn_cmd(Command::new(workload_bin()).args(args))
    }

    /// Starts a workload without waiting for its first line (read it with `read_json`).
    pub fn spawn_nowait(args: &[&str]) -> Self {
        Self::start(Command::new(workload_bin()).args(args))
    }

    fn start(cmd: &mut Command) -> Self {
        become_subreaper();
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn workload");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Workload {
            child,
            stdin,
            stdout,
            known: vec![],
        }
    }

    pub fn spawn_cmd(cmd: &mut Command) -> (Self, Value) {
        let mut w = Self::start(cmd);
        let first = w.read_json();
        (w, first)
    }

    fn remember(&mut self, v: &Value) {
        if let Some(kids) = v["children"].as_array() {
            self.known
                .extend(kids.iter().filter_map(|p| p.as_i64()).map(|p| p as i32));
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn read_json(&mut self) -> Value {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("workload output");
        let v: Value = serde_json::from_str(line.trim())
            .unwrap_or_else(|e| panic!("workload said {line:?}: {e}"));
        self.remember(&v);
        v
    }

    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Closes stdin: the workload exits (its zombies are handed to us, the subreaper).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for the workload itself to exit and reaps it.
    pub fn wait(&mut self) -> Option<i32> {
        self.child.wait().ok().and_then(|s| s.code())
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in &self.known {
            // Only reaps what was handed to us; a stranger's pid is not our child (ECHILD).
            let mut status = 0;
            // SAFETY: non-blocking waitpid with a valid out-pointer.
            unsafe { libc::waitpid(*pid, &mut status, libc::WNOHANG) };
        }
    }
}
