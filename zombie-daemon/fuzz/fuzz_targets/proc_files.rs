//! Any bytes as each /proc and cgroupfs file the daemon reads: `/proc/<pid>/stat` and
//! `status` (the procfs crate, and what the daemon derives from them), `sched`
//! (`se.exec_start`), `/proc/<pid>/cgroup`, `loadavg`, `pids.current`/`pids.max` and
//! `cgroup.procs`. No panic, and each value found is one the file really says.
#![no_main]

use libfuzzer_sys::fuzz_target;
use procfs::{
    FromRead,
    process::{Stat, Status},
};
use zombie_daemon::{
    attribution::cgroup_path::{self, Owner},
    budget, cgroups,
    diagnosis::{self, Disposition},
    probe::TickConverter,
    proc_scan::{parse_exec_start, parse_status},
    tracker::Comm,
};

/// A real status file after its `Name:` line (a container's PID 1 that catches SIGTERM).
const STATUS_TAIL: &str = include_str!("../seeds/proc_files/status-container-pid1");

/// A real stat line's fields after the comm (a zombie's, with its exit code last).
const STAT_TAIL: &str = "Z 1 28370 28965 0 -1 4227084 98 0 0 0 0 0 0 0 20 0 1 0 972623 0 0 \
    18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 2816";

/// procfs-core 0.18's `Stat::from_read` slices around the comm without bounds checks, so
/// it panics on lines the kernel never writes (`(x)` with no pid before it, `)` last,
/// `)(`, a multi-byte character next to a paren). The kernel always writes
/// `<pid> (<comm>) <state> …`; only such framing is handed to it. The comm itself, where
/// a process can put anything, is fuzzed by `stat_with_comm`.
fn kernel_framed(line: &str) -> bool {
    let line = line.trim();
    let (Some(open), Some(close)) = (line.find('('), line.rfind(')')) else {
        return true; // an error, not a panic
    };
    open >= 1
        && line.is_char_boundary(open - 1)
        && close > open
        && close + 2 <= line.len()
        && line.is_char_boundary(close + 2)
}

fn check_stat(stat: &Stat) {
    // What proc_scan.rs and remediate take from it.
    let comm = Comm::new(&stat.comm);
    assert!(comm.as_str().len() <= 3 * 15);
    let _ = TickConverter::new(100).ns(stat.starttime);
    let _ = TickConverter::from_system().ns(stat.starttime);
    let _ = stat.ppid.max(0) as u32;
}

/// A kernel-shaped stat line around a comm of any bytes: it parses, and the comm and the
/// fields after it come back as written.
fn stat_with_comm(data: &[u8]) {
    let comm = &data[..data.len().min(15)];
    let comm = &comm[..comm.iter().position(|&b| b == 0).unwrap_or(comm.len())];
    let mut line = b"4242 (".to_vec();
    line.extend_from_slice(comm);
    line.extend_from_slice(b") ");
    line.extend_from_slice(STAT_TAIL.as_bytes());
    line.push(b'\n');
    let stat = Stat::from_read(&line[..]).expect("a kernel-shaped stat line parses");
    assert_eq!(stat.pid, 4242);
    assert_eq!(stat.comm, String::from_utf8_lossy(comm));
    assert_eq!((stat.state, stat.ppid, stat.starttime), ('Z', 1, 972_623));
    assert_eq!((stat.num_threads, stat.exit_code), (1, Some(2816)));
    check_stat(&stat);
}

/// A kernel-shaped status file around a name of any bytes: it parses, and the name comes
/// back as the kernel wrote it (`\n` and `\\` escaped; invalid UTF-8 replaced).
fn status_with_name(data: &[u8]) {
    let comm = &data[..data.len().min(15)];
    let comm = &comm[..comm.iter().position(|&b| b == 0).unwrap_or(comm.len())];
    let mut escaped = Vec::new();
    for &b in comm {
        match b {
            b'\n' => escaped.extend_from_slice(b"\\n"),
            b'\\' => escaped.extend_from_slice(b"\\\\"),
            b => escaped.push(b),
        }
    }
    let mut text = b"Name:\t".to_vec();
    text.extend_from_slice(&escaped);
    text.push(b'\n');
    text.extend_from_slice(
        STATUS_TAIL
            .split_once('\n')
            .expect("a Name line")
            .1
            .as_bytes(),
    );
    let status = parse_status(&text).expect("a kernel-shaped status file parses");
    let want = String::from_utf8_lossy(&escaped);
    // A line ends at "\n" or "\r\n": a name's own trailing '\r' is lost.
    assert_eq!(status.name, want.strip_suffix('\r').unwrap_or(&want));
    assert_eq!(status.nspid, Some(vec![4242, 1]));
    check_status(status);
}

fn check_status(status: Status) {
    let (ign, cgt, blk) = (status.sigign, status.sigcgt, status.sigblk);
    let nspid = status.nspid.as_ref().and_then(|v| v.last().copied());
    let facts = zombie_daemon::diagnosis::reaper_facts_from_status(7, status, vec!["/bin/sh".into(), "-c".into()]);
    assert_eq!(facts.ns_pid, nspid.map(|p| p as u32));
    assert!(facts.state.chars().count() <= 1);
    for (sig, got) in [(17, facts.sigchld), (15, facts.sigterm)] {
        let bit = 1u64 << (sig - 1);
        let want = if cgt & bit != 0 {
            Disposition::Caught
        } else if blk & bit != 0 {
            Disposition::Blocked
        } else if ign & bit != 0 {
            Disposition::Ignored
        } else {
            Disposition::Default
        };
        assert_eq!(got, want, "signal {sig}");
    }
    let _ = facts.kind();
    let d = diagnosis::diagnose(Some(&facts), false, true);
    assert!(!d.remedy.is_empty());
}

fn check_sched(text: &str) {
    let Some(ns) = parse_exec_start(text) else {
        return;
    };
    // The value is on the first `se.exec_start` line, after its first ':'.
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("se.exec_start"))
        .expect("a value comes from an se.exec_start line");
    let value = line.split(':').nth(1).expect("after a ':'").trim();
    let ms = value.split('.').next().unwrap_or(value);
    assert_eq!(ms.parse::<u64>().ok(), Some(ns / 1_000_000), "{value:?}");
    round_trip_exec_start(ns);
}

/// The kernel's own format (`%Ld.%06ld` ms) parses back to the same ns.
fn round_trip_exec_start(ns: u64) {
    let text = format!(
        "x (1, #threads: 1)\n---\nse.exec_start : {}.{:06}\nse.vruntime : 1.0\n",
        ns / 1_000_000,
        ns % 1_000_000
    );
    assert_eq!(parse_exec_start(&text), Some(ns), "{text:?}");
}

fn check_cgroup_file(text: &str) {
    for prefer in [cgroups::Prefer::V2, cgroups::Prefer::V1] {
        let Some(path) = cgroups::pick(text, prefer) else {
            continue;
        };
        if cgroup_path::parse(&path).owner == Owner::Pod {
            assert!(cgroup_path::parse(&path).pod_uid.is_some());
        }
        // It is the path field of one of the lines, without " (deleted)".
        assert!(
            text.lines().any(|l| {
                let p = l.splitn(3, ':').nth(2).unwrap_or("");
                p == path || p.strip_suffix(" (deleted)") == Some(path.as_str())
            }),
            "{path:?}"
        );
    }
}

fn check_numbers(text: &str) {
    if let Some(n) = budget::parse_u64(text) {
        assert_eq!(budget::parse_u64(&format!("{n}\n")), Some(n));
    }
    if let Some(tasks) = budget::parse_loadavg_tasks(text) {
        let field = text.split_whitespace().nth(3).expect("a fourth field");
        assert!(field.contains('/'), "{field:?}");
        assert_eq!(
            budget::parse_loadavg_tasks(&format!("0.00 0.00 0.00 1/{tasks} 1\n")),
            Some(tasks)
        );
    }
    let pids = cgroups::parse_cgroup_procs(text);
    assert!(pids.len() <= text.lines().count());
}

fuzz_target!(|data: &[u8]| {
    let lossy = String::from_utf8_lossy(data);
    if kernel_framed(&lossy)
        && let Ok(stat) = Stat::from_read(data)
    {
        check_stat(&stat);
    }
    stat_with_comm(data);
    if let Some(status) = parse_status(data) {
        check_status(status);
    }
    status_with_name(data);
    check_sched(&lossy);
    if data.len() >= 8 {
        round_trip_exec_start(u64::from_le_bytes(data[..8].try_into().unwrap()));
    }
    check_cgroup_file(&lossy);
    check_numbers(&lossy);
});
