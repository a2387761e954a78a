//! /proc as a second source of truth: the bootstrap at start and the resync after lost
//! events. (The `procfs` crate does the parsing; this module only decides what a zombie is.)

use std::{
    fs,
    path::{Path, PathBuf},
};

use ::procfs::{
    FromRead,
    process::{Process, Stat, Status},
};

use crate::{
    clock::TickConverter,
    tracker::{Comm, Ns, Origin, OriginInfo, OriginKind, ProcKey, Scan, ScanEntry},
};

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("cannot list processes in {path}: {source}. Is procfs mounted there (--proc-root)?")]
    List {
        path: String,
        #[source]
        source: ::procfs::ProcError,
    },
}

/// PF_EXITING in /proc/<pid>/stat's flags: set before the exit tracepoint fires.
const PF_EXITING: u32 = 0x4;

/// Where the kernel's pid allocator of the initial PID namespace stands, to tell which
/// pids may have been handed to a new process since an earlier reading (see
/// [`possibly_reused`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PidCursor {
    /// The last pid allocated (`kernel.ns_last_pid`): the allocator hands out pids
    /// cyclically, from the one after this, skipping pids in use.
    pub last: u32,
    /// Processes and threads created since boot (`processes` in /proc/stat).
    pub forks: u64,
    /// `kernel.pid_max`.
    pub pid_max: u32,
}

/// Pids below this are never handed out again after the allocator wraps around
/// (RESERVED_PIDS in kernel/pid.c).
const RESERVED_PIDS: u32 = 300;

/// Whether `pid` may belong to a newer process now than when `prev` was read: a zombie holds
/// its pid until it is released, and the allocator only reaches a pid again by cycling past
/// it. So only the pids the cursor passed over since `prev` are in question, unless a whole
/// cycle may have passed, the limit changed, or a pid was allocated outside the cycle
/// (`clone3` with `set_tid`, which needs CAP_CHECKPOINT_RESTORE over the initial namespace):
/// every allocation moves the cursor by at least one, so a cursor that moved less than the
/// number of forks tells that one did not.
pub fn possibly_reused(pid: u32, prev: PidCursor, now: PidCursor) -> bool {
    let forks = now.forks.saturating_sub(prev.forks);
    if forks == 0 {
        return false;
    }
    if now.pid_max != prev.pid_max {
        return true;
    }
    let cycle = u64::from(now.pid_max.saturating_sub(RESERVED_PIDS));
    let moved = if now.last >= prev.last {
        u64::from(now.last - prev.last)
    } else {
        u64::from(now.pid_max.saturating_sub(prev.last))
            + u64::from(now.last.saturating_sub(RESERVED_PIDS))
    };
    if forks >= cycle || moved < forks {
        return true;
    }
    if prev.last <= now.last {
        pid > prev.last && pid <= now.last
    } else {
        pid > prev.last || pid <= now.last
    }
}

/// Reads zombies and their parents from a procfs mount.
#[derive(Clone, Debug)]
pub struct ProcFs {
    root: PathBuf,
    ticks: TickConverter,
}

/// A process's identity and name as /proc shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcInfo {
    pub key: ProcKey,
    pub ppid: u32,
    pub comm: Comm,
    pub state: char,
}

impl ProcFs {
    pub fn new(root: impl Into<PathBuf>, ticks: TickConverter) -> Self {
        Self {
            root: root.into(),
            ticks,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn process(&self, pid: u32) -> Option<Process> {
        Process::new_with_root(self.root.join(pid.to_string())).ok()
    }

    pub fn info(&self, pid: u32) -> Option<ProcInfo> {
        let stat = self.process(pid)?.stat().ok()?;
        Some(self.info_from_stat(&stat))
    }

    /// Whether a process (a zombie included) holds `pid`: `kill(pid, 0)`, which sends
    /// nothing. Far cheaper than reading /proc (a fraction of a microsecond), so every listed
    /// zombie can be probed often. The daemon shares the host's PID namespace, so the pid is
    /// the same number /proc shows. Denied (EPERM) still means it exists.
    pub fn pid_exists(&self, pid: u32) -> bool {
        let Some(pid) = rustix::process::Pid::from_raw(pid as i32) else {
            return false;
        };
        !matches!(
            rustix::process::test_kill_process(pid),
            Err(rustix::io::Errno::SRCH)
        )
    }

    /// The pid allocator's position (see [`PidCursor`]); None if procfs does not show it.
    pub fn pid_cursor(&self) -> Option<PidCursor> {
        let read = |p: &str| fs::read_to_string(self.root.join(p)).ok();
        let last = read("sys/kernel/ns_last_pid")?.trim().parse().ok()?;
        let pid_max = read("sys/kernel/pid_max")?.trim().parse().ok()?;
        let forks = <::procfs::KernelStats as ::procfs::FromReadSI>::from_file(
            self.root.join("stat"),
            ::procfs::current_system_info(),
        )
        .ok()?
        .processes;
        Some(PidCursor {
            last,
            forks,
            pid_max,
        })
    }

    fn info_from_stat(&self, stat: &Stat) -> ProcInfo {
        ProcInfo {
            key: ProcKey {
                pid: stat.pid as u32,
                start_ticks: stat.starttime,
            },
            ppid: stat.ppid.max(0) as u32,
            comm: Comm::new(&stat.comm),
            state: stat.state,
        }
    }

    /// Every zombie process in /proc now.
    ///
    /// A leader in state Z with live threads is not a zombie process (the main thread called
    /// pthread_exit while others run), so `num_threads` must be 1. Entries that vanish or
    /// fail to parse while we read are skipped: the next event or resync settles them.
    ///
    /// The exit time is estimated, because the kernel does not record it: a dead task's
    /// `se.exec_start` in /proc/<pid>/sched is when it last ran, i.e. its exit, in scheduler
    /// clock; it is converted with the offset between that clock and CLOCK_BOOTTIME measured
    /// on our own thread. Without /proc/<pid>/sched the scan time is used (the age is then a
    /// lower bound). The estimate is never before the process started nor after now.
    pub fn zombies(
        &self,
        now: Ns,
        cgroup_id: impl Fn(u32) -> u64,
    ) -> Result<Vec<ScanEntry>, ScanError> {
        self.scan(now, cgroup_id).map(|s| s.zombies)
    }

    /// [`Self::zombies`], and the processes still on their way to being one (see [`Scan`]).
    pub fn scan(&self, now: Ns, cgroup_id: impl Fn(u32) -> u64) -> Result<Scan, ScanError> {
        let own_offset = self.sched_clock_offset(now);
        let cpu_offsets = self.sched_clock_offsets_per_cpu();
        let all = ::procfs::process::all_processes_with_root(&self.root).map_err(|source| {
            ScanError::List {
                path: self.root.display().to_string(),
                source,
            }
        })?;
        let mut out = Vec::new();
        let mut exiting = Vec::new();
        for proc in all.flatten() {
            let Ok(stat) = proc.stat() else { continue };
            if stat.state != 'Z' || stat.num_threads > 1 {
                let in_exit = stat.state == 'Z' || stat.state == 'X';
                if in_exit || stat.flags & PF_EXITING != 0 {
                    let key = ProcKey {
                        pid: stat.pid as u32,
                        start_ticks: stat.starttime,
                    };
                    exiting.push((key, !in_exit));
                }
                continue;
            }
            let info = self.info_from_stat(&stat);
            let parent = self.info(info.ppid);
            let started = self.ticks.ns(stat.starttime);
            // A dead task's exec_start is in the task clock of the CPU it last ran on,
            // which drifts from the others by that CPU's steal and IRQ time: convert with
            // that CPU's offset where it was measured.
            let sched_offset = stat
                .processor
                .and_then(|cpu| usize::try_from(cpu).ok())
                .and_then(|cpu| cpu_offsets.get(cpu).copied().flatten())
                .or(own_offset);
            let exited = sched_offset
                .and_then(|off| {
                    self.last_ran(info.key.pid)
                        .map(|t| t.saturating_add_signed(off))
                })
                .unwrap_or(now)
                .clamp(started, now.max(started));
            let (origin, origin_info) = derive_origin(info.key.pid, |pid| self.lineage(pid));
            out.push(ScanEntry {
                key: info.key,
                ppid: info.ppid,
                parent_start_ticks: parent.as_ref().map_or(0, |p| p.key.start_ticks),
                comm: info.comm,
                parent_comm: parent.map_or_else(Comm::default, |p| p.comm),
                wait_status: stat.exit_code.unwrap_or(0) as u32,
                cgroup_id: cgroup_id(info.key.pid),
                exited_at_estimate: exited,
                origin,
                origin_info,
            });
        }
        Ok(Scan {
            zombies: out,
            exiting,
        })
    }

    /// What /proc tells of a process's place in its lineage.
    /// Of a process in the initial PID namespace (most of a node's) only status is read:
    /// the lineage walk needs no more of it than its depth.
    pub fn lineage(&self, pid: u32) -> Option<Lineage> {
        let status = read_status(&self.root.join(pid.to_string()))?;
        if status.nspid.as_ref().is_some_and(|v| v.len() == 1) {
            return Some(Lineage {
                key: ProcKey {
                    pid,
                    start_ticks: 0,
                },
                ppid: status.ppid.max(0) as u32,
                session: 0,
                nspid: vec![pid],
                comm: Comm::new(&status.name),
                cmdline: Vec::new(),
            });
        }
        let p = self.process(pid)?;
        let stat = p.stat().ok()?;
        Some(Lineage::from_proc(
            &stat,
            &status,
            p.cmdline().unwrap_or_default(),
        ))
    }

    /// The origins of the live container processes /proc can place (see [`derive_origin`]),
    /// to seed the kernel's lineage map at start: processes that predate the programs then
    /// pass their lineage on to the children they fork later. Each process's facts are read
    /// once however many chains pass through it.
    pub fn origin_seeds(&self) -> Vec<(u32, Origin, Option<OriginInfo>)> {
        let Ok(all) = ::procfs::process::all_processes_with_root(&self.root) else {
            return Vec::new();
        };
        let cache: std::cell::RefCell<rustc_hash::FxHashMap<u32, Option<Lineage>>> =
            Default::default();
        let read = |pid: u32| -> Option<Lineage> {
            if let Some(l) = cache.borrow().get(&pid) {
                return l.clone();
            }
            let l = self.lineage(pid);
            cache.borrow_mut().insert(pid, l.clone());
            l
        };
        let mut out = Vec::new();
        for proc in all.flatten() {
            let pid = proc.pid as u32;
            if read(pid).is_none_or(|l| l.depth() <= 1) {
                continue;
            }
            let (origin, info) = derive_origin(pid, read);
            if matches!(origin.kind, OriginKind::Init | OriginKind::Exec) {
                out.push((pid, origin, info));
            }
        }
        out
    }

    /// CLOCK_BOOTTIME minus the scheduler clock, from our own thread's `se.exec_start` (we are
    /// running, so it is "now" in scheduler clock, give or take our current time slice).
    fn sched_clock_offset(&self, now: Ns) -> Option<i64> {
        let own = read_exec_start(&self.root.join("thread-self/sched"))?;
        i64::try_from(now)
            .ok()?
            .checked_sub(i64::try_from(own).ok()?)
    }

    /// [`Self::sched_clock_offset`] for each CPU this thread may run on, measured by moving
    /// there (a task's exec_start is set when it is switched in on that CPU), then back.
    /// Index: CPU number; None where it could not be measured.
    fn sched_clock_offsets_per_cpu(&self) -> Vec<Option<i64>> {
        use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};
        let Ok(allowed) = sched_getaffinity(None) else {
            return Vec::new();
        };
        let cpus: Vec<usize> = (0..CpuSet::MAX_CPU)
            .filter(|&c| allowed.is_set(c))
            .collect();
        let mut out = vec![None; cpus.last().map_or(0, |c| c + 1)];
        for cpu in cpus {
            let mut one = CpuSet::new();
            one.set(cpu);
            if sched_setaffinity(None, &one).is_err() {
                continue;
            }
            std::thread::yield_now();
            out[cpu] = self.sched_clock_offset(crate::clock::boottime_now());
        }
        let _ = sched_setaffinity(None, &allowed);
        out
    }

    fn last_ran(&self, pid: u32) -> Option<u64> {
        read_exec_start(&self.root.join(pid.to_string()).join("sched"))
    }
}

/// A process's place in its lineage, from /proc/<pid>/stat, status and cmdline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lineage {
    pub key: ProcKey,
    pub ppid: u32,
    /// Its session (as the host sees it).
    pub session: u32,
    /// NSpid: its pid in each PID namespace from the initial one down to its own.
    pub nspid: Vec<u32>,
    pub comm: Comm,
    pub cmdline: Vec<String>,
}

impl Lineage {
    pub fn from_proc(stat: &Stat, status: &Status, cmdline: Vec<String>) -> Self {
        Self {
            key: ProcKey {
                pid: stat.pid as u32,
                start_ticks: stat.starttime,
            },
            ppid: stat.ppid.max(0) as u32,
            session: stat.session.max(0) as u32,
            nspid: status
                .nspid
                .as_ref()
                .map(|v| v.iter().map(|&p| p.max(0) as u32).collect())
                .unwrap_or_default(),
            comm: Comm::new(&stat.comm),
            cmdline,
        }
    }

    fn depth(&self) -> usize {
        self.nspid.len()
    }

    fn is_namespace_init(&self) -> bool {
        self.nspid.len() > 1 && self.nspid.last() == Some(&1)
    }

    fn origin(&self, kind: OriginKind) -> (Origin, Option<OriginInfo>) {
        (
            Origin {
                kind,
                key: Some(self.key),
            },
            Some(OriginInfo {
                comm: self.comm,
                argv: self.cmdline.clone(),
            }),
        )
    }
}

/// Ancestors followed at most (PID namespaces nest 32 deep; process trees rarely more).
const MAX_LINEAGE_STEPS: usize = 256;

/// A process's origin as /proc still shows it, for zombies the kernel side did not see
/// fork (they predate the daemon). Walks the parent chain inside the process's PID namespace
/// (NSpid's length is its depth):
/// - the initial namespace: `host`;
/// - a process whose parent is outside the namespace and which is not its PID 1 was entered
///   into it from outside: `exec`, with that process's command line;
/// - reaching the namespace's PID 1: `init`. But a child of PID 1 may be its own child or an
///   orphan it adopted (orphans of an exec session are handed to it, and the chain to the
///   session is lost): only a child in PID 1's own session counts as its own; one in another
///   session (runtimes start exec sessions with setsid) is `unknown`;
/// - a chain that breaks (a process gone from /proc): `unknown`.
pub fn derive_origin(
    pid: u32,
    read: impl Fn(u32) -> Option<Lineage>,
) -> (Origin, Option<OriginInfo>) {
    let unknown = (
        Origin {
            kind: OriginKind::Unknown,
            key: None,
        },
        None,
    );
    let Some(mut cur) = read(pid) else {
        return unknown;
    };
    let depth = cur.depth();
    if depth == 1 {
        return (
            Origin {
                kind: OriginKind::Host,
                key: None,
            },
            None,
        );
    }
    if depth == 0 {
        // No NSpid line (kernels before 4.1): nothing to go by.
        return unknown;
    }
    for _ in 0..MAX_LINEAGE_STEPS {
        if cur.is_namespace_init() {
            return cur.origin(OriginKind::Init);
        }
        let Some(parent) = read(cur.ppid).filter(|_| cur.ppid != 0) else {
            return unknown;
        };
        if parent.depth() < depth {
            return cur.origin(OriginKind::Exec);
        }
        if parent.is_namespace_init() && parent.depth() == depth {
            return if cur.session == parent.session {
                parent.origin(OriginKind::Init)
            } else {
                unknown
            };
        }
        cur = parent;
    }
    unknown
}

/// A /proc/<pid>/status file (the process's dir is `proc_dir`), parsed by [`parse_status`].
pub fn read_status(proc_dir: &Path) -> Option<Status> {
    parse_status(&fs::read(proc_dir.join("status")).ok()?)
}

/// Parses /proc/<pid>/status with procfs, around two things procfs 0.18 gets wrong there:
/// it refuses the whole file when the name is not UTF-8 (a process may name itself with any
/// bytes, and would then vanish from the audit and the diagnosis), and its `name` stops at
/// the first ':' (`kworker/0:1H` becomes `kworker/0`). The name is kept as the kernel
/// wrote it (`\n` and `\\` escaped), invalid UTF-8 replaced.
pub fn parse_status(bytes: &[u8]) -> Option<Status> {
    let text = String::from_utf8_lossy(bytes);
    let mut status = Status::from_read(text.as_bytes()).ok()?;
    if let Some(name) = text.lines().find_map(|l| l.strip_prefix("Name:\t")) {
        status.name = name.to_string();
    }
    Some(status)
}

/// `se.exec_start` (ms with a fraction) from a /proc/<pid>/sched file, in ns. The procfs
/// crate does not parse this debug file; it is one `key : value` line.
fn read_exec_start(path: &Path) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    parse_exec_start(&text)
}

/// The `se.exec_start` line of a /proc/<pid>/sched file, in ns; `None` if it is missing,
/// malformed or beyond u64 nanoseconds.
pub fn parse_exec_start(text: &str) -> Option<u64> {
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("se.exec_start"))?;
    let value = line.split(':').nth(1)?.trim();
    let (ms, frac) = value.split_once('.').unwrap_or((value, "0"));
    let ms: u64 = ms.parse().ok()?;
    let mut frac_ns: u64 = 0;
    let mut scale = 100_000u64;
    for c in frac.chars().take(6) {
        frac_ns += u64::from(c.to_digit(10)?) * scale;
        scale /= 10;
    }
    ms.checked_mul(1_000_000)?.checked_add(frac_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(last: u32, forks: u64) -> PidCursor {
        PidCursor {
            last,
            forks,
            pid_max: 32_768,
        }
    }

    #[test]
    fn only_pids_the_allocator_passed_over_may_be_reused() {
        let prev = cursor(1_000, 50);
        // Nothing forked: nothing reused, wherever the cursor is.
        assert!(!possibly_reused(1_001, prev, cursor(1_000, 50)));
        // 10 forks moved the cursor from 1000 to 1020 (skipping pids in use).
        let now = cursor(1_020, 60);
        assert!(possibly_reused(1_001, prev, now));
        assert!(possibly_reused(1_020, prev, now));
        assert!(!possibly_reused(1_000, prev, now));
        assert!(!possibly_reused(1_021, prev, now));
        assert!(!possibly_reused(400, prev, now));
        // Around the end: 32,700 -> 310 passes 32,701..=32,767 and 300..=310.
        let (prev, now) = (cursor(32_700, 0), cursor(310, 70));
        assert!(possibly_reused(32_767, prev, now));
        assert!(possibly_reused(305, prev, now));
        assert!(!possibly_reused(311, prev, now));
        assert!(!possibly_reused(32_700, prev, now));
    }

    #[test]
    fn a_whole_cycle_a_pid_outside_it_or_a_new_limit_puts_every_pid_in_question() {
        let prev = cursor(1_000, 0);
        // As many forks as the cycle has pids: it may have come round to any.
        assert!(possibly_reused(5, prev, cursor(1_000, 32_468)));
        // 20 forks but the cursor moved 5: some pid was chosen outside the cycle (set_tid).
        assert!(possibly_reused(20_000, prev, cursor(1_005, 20)));
        let mut now = cursor(1_010, 5);
        assert!(!possibly_reused(20_000, prev, now));
        now.pid_max = 4_194_304;
        assert!(possibly_reused(20_000, prev, now));
    }

    #[test]
    fn the_cursor_of_this_machine_is_read() {
        let p = ProcFs::new("/proc", crate::clock::TickConverter::new(100));
        let a = p
            .pid_cursor()
            .expect("this kernel shows ns_last_pid and processes");
        std::process::Command::new("true").status().unwrap();
        let b = p.pid_cursor().unwrap();
        assert!(b.forks > a.forks, "{a:?} {b:?}");
        assert!(possibly_reused(b.last, a, b), "{a:?} {b:?}");
    }

    #[test]
    fn parses_exec_start() {
        let text = "head (2285, #threads: 1)\n---\nse.exec_start    :        146859.453466\n";
        assert_eq!(parse_exec_start(text), Some(146_859_453_466));
        assert_eq!(parse_exec_start("se.exec_start : 12\n"), Some(12_000_000));
        assert_eq!(parse_exec_start("nothing here"), None);
        assert_eq!(parse_exec_start("se.exec_start : x.5"), None);
    }

    #[test]
    fn an_exec_start_beyond_u64_nanoseconds_is_none() {
        // u64::MAX ns is 18446744073709.551615 ms.
        assert_eq!(
            parse_exec_start("se.exec_start : 18446744073709.551615"),
            Some(u64::MAX)
        );
        assert_eq!(
            parse_exec_start("se.exec_start : 18446744073709.551616"),
            None
        );
        assert_eq!(parse_exec_start("se.exec_start : 18446744073710"), None);
        assert_eq!(
            parse_exec_start(&format!("se.exec_start : {}", u64::MAX)),
            None
        );
    }

    #[test]
    fn a_status_with_any_name_parses() {
        let real = fs::read_to_string("/proc/self/status").unwrap();
        let me = parse_status(real.as_bytes()).unwrap();
        assert_eq!(me.pid as u32, std::process::id());
        let named = |name: &[u8]| {
            let mut text = b"Name:\t".to_vec();
            text.extend_from_slice(name);
            text.push(b'\n');
            text.extend_from_slice(real.split_once('\n').unwrap().1.as_bytes());
            parse_status(&text).map(|s| s.name)
        };
        assert_eq!(named(b"kworker/0:1H").unwrap(), "kworker/0:1H");
        assert_eq!(named(b" a: b ").unwrap(), " a: b ");
        // procfs alone refuses the whole file.
        assert_eq!(named(b"x\xff\xfey").unwrap(), "x\u{fffd}\u{fffd}y");
        assert!(parse_status(b"Name:\tx\n").is_none());
    }

    /// A /proc/<pid>/stat line as this kernel writes it (a `sleep`'s, captured), with the
    /// fields the lineage walk reads put in.
    fn stat_line(pid: u32, comm: &str, state: char, ppid: u32, session: u32, start: u64) -> String {
        format!(
            "{pid} ({comm}) {state} {ppid} {ppid} {session} 0 -1 4194304 138 0 0 0 0 0 0 0 20 0 1 0 \
             {start} 2990080 411 18446744073709551615 94568569495552 94568569513481 \
             140733899348640 0 0 0 0 6 0 1 0 0 17 1 0 0 0 0 0 94568569527568 94568569528832 \
             94569559769088 140733899356905 140733899356915 140733899356915 140733899358185 0"
        )
    }

    /// A real /proc/<pid>/status (ours) with the identity lines of a process put in.
    fn status_text(pid: u32, comm: &str, ppid: u32, nspid: &[u32]) -> String {
        let real = fs::read_to_string("/proc/self/status").unwrap();
        let ns = nspid
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join("\t");
        real.lines()
            .map(|l| match l.split_once(':').map(|(k, _)| k) {
                Some("Name") => format!("Name:\t{comm}"),
                Some("Pid") | Some("Tgid") => format!("{}:\t{pid}", l.split(':').next().unwrap()),
                Some("PPid") => format!("PPid:\t{ppid}"),
                Some("NSpid") | Some("NStgid") => {
                    format!("{}:\t{ns}", l.split(':').next().unwrap())
                }
                _ => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    }

    struct Fixture(std::collections::HashMap<u32, Lineage>);

    impl Fixture {
        fn add(
            &mut self,
            nspid: &[u32],
            comm: &str,
            ppid: u32,
            session: u32,
            cmdline: &[&str],
        ) -> &mut Self {
            let pid = nspid[0];
            let stat = Stat::from_read(
                stat_line(pid, comm, 'S', ppid, session, u64::from(pid) * 10).as_bytes(),
            )
            .unwrap();
            let status = parse_status(status_text(pid, comm, ppid, nspid).as_bytes()).unwrap();
            let argv = cmdline.iter().map(|s| s.to_string()).collect();
            self.0.insert(pid, Lineage::from_proc(&stat, &status, argv));
            self
        }

        fn origin(&self, pid: u32) -> (Origin, Option<OriginInfo>) {
            derive_origin(pid, |p| self.0.get(&p).cloned())
        }
    }

    fn key(pid: u32) -> Option<ProcKey> {
        Some(ProcKey {
            pid,
            start_ticks: u64::from(pid) * 10,
        })
    }

    /// A container (PID namespace one level down) under a shim, as runc makes it: PID 1 is
    /// host pid 4000; an exec session (`sh -c`, host pid 4100, its own session as runtimes
    /// start it) entered from the shim.
    fn container() -> Fixture {
        let mut f = Fixture(Default::default());
        f.add(
            &[3999],
            "containerd-shim",
            1,
            3999,
            &["containerd-shim-runc-v2"],
        )
        .add(&[4000, 1], "app", 3999, 4000, &["/app", "--serve"])
        .add(&[4010, 5], "worker", 4000, 4000, &["/app", "--worker"])
        .add(&[4011, 6], "job", 4010, 4000, &[])
        .add(&[4012, 7], "helper", 4000, 4000, &[])
        .add(
            &[4100, 12],
            "sh",
            3999,
            4100,
            &["sh", "-c", "sleep 1 & wait"],
        )
        .add(&[4101, 13], "sleep", 4100, 4100, &[])
        .add(&[4102, 14], "sleep", 4000, 4100, &[])
        .add(&[4200, 20], "lost", 4199, 4200, &[])
        .add(&[100], "bash", 1, 100, &["bash"]);
        f
    }

    #[test]
    fn a_host_process_has_a_host_origin() {
        let (o, info) = container().origin(100);
        assert_eq!((o.kind, o.key, info), (OriginKind::Host, None, None));
    }

    #[test]
    fn descendants_of_an_exec_session_name_the_session_and_its_command() {
        let (o, info) = container().origin(4101);
        assert_eq!((o.kind, o.key), (OriginKind::Exec, key(4100)));
        let info = info.unwrap();
        assert_eq!(info.comm.as_str(), "sh");
        assert_eq!(info.argv, ["sh", "-c", "sleep 1 & wait"]);
        // The session itself is its own origin.
        assert_eq!(container().origin(4100).0.kind, OriginKind::Exec);
    }

    #[test]
    fn descendants_of_pid1_in_its_session_have_an_init_origin() {
        let f = container();
        for pid in [4011, 4012, 4010, 4000] {
            let (o, info) = f.origin(pid);
            assert_eq!((o.kind, o.key), (OriginKind::Init, key(4000)), "pid {pid}");
            assert_eq!(info.unwrap().argv, ["/app", "--serve"]);
        }
    }

    #[test]
    fn an_orphan_adopted_by_pid1_from_another_session_is_unknown() {
        assert_eq!(container().origin(4102).0, Origin::default());
    }

    #[test]
    fn a_broken_chain_or_a_vanished_process_is_unknown() {
        let f = container();
        assert_eq!(f.origin(4200).0, Origin::default());
        assert_eq!(f.origin(9999).0, Origin::default());
    }

    #[test]
    fn our_own_process_is_found_and_not_a_zombie() {
        let p = ProcFs::new("/proc", TickConverter::from_system());
        let me = p.info(std::process::id()).unwrap();
        assert_ne!(me.state, 'Z');
        assert_eq!(me.key.pid, std::process::id());
        let zombies = p.zombies(crate::clock::boottime_now(), |_| 0).unwrap();
        assert!(zombies.iter().all(|z| z.key.pid != std::process::id()));
    }

    #[test]
    fn a_missing_proc_root_is_a_clear_error() {
        let p = ProcFs::new("/nonexistent-proc", TickConverter::from_system());
        let err = p.zombies(0, |_| 0).unwrap_err();
        assert!(err.to_string().contains("--proc-root"), "{err}");
    }
}
