//! What depends on the kernel rather than on the daemon's logic: counters read after the
//! capability drop, BPF objects left behind, BTF from a file, and the DaemonSet's
//! capabilities under a small RLIMIT_MEMLOCK. `cargo xtask vm` runs these (with the other
//! kernel-facing tests) on every kernel of the matrix.

use std::process::Command;

use crate::{
    SECOND,
    harness::{self, Daemon, Workload, poll},
    pids,
};

/// A ring buffer too small for an exit storm: the loss must be seen through the kernel-side
/// counters (read after the capability drop) and followed by a resync to the exact table.
#[test]
fn a_forced_ring_overflow_is_counted_after_the_capability_drop_and_resynced() {
    // Short enough for an emulated VM.
    overflow_is_counted_and_resynced_to_the_exact_table("3000");
}

/// A storm of `storm` reaped exits with 5 kept zombies halfway, through a 4 KiB ring drained
/// once a second: losses are counted, a resync follows, and the table ends with exactly the
/// 5 zombies.
pub(crate) fn overflow_is_counted_and_resynced_to_the_exact_table(storm: &str) {
    let d = Daemon::start_with(&["--ring-buffer-bytes", "4096", "--drain-interval-ms", "1000"]);
    let (w, hello) = Workload::spawn(&["storm", storm, "5"]);
    let kids = pids(&hello, "children");
    assert_eq!(kids.len(), 5);
    poll("lost events to be counted", 5 * SECOND, || {
        (d.metric("zombie_ebpf_events_lost_total") > 0.0).then_some(())
    });
    poll("a resync after the loss", 5 * SECOND, || {
        let (_, m) = d.get("/metrics").unwrap();
        m.lines()
            .any(|l| {
                l.starts_with("zombie_resyncs_total{reason=\"lost_events\"}") && !l.ends_with(" 0")
            })
            .then_some(())
    });
    // Exactly the 5 zombies, nothing else of the storm.
    let found = poll("exactly the storm's 5 zombies", 5 * SECOND, || {
        let z = d.children_of(w.pid());
        (z.len() == 5).then_some(z)
    });
    for z in found {
        assert!(kids.contains(&(z["pid"].as_i64().unwrap() as i32)), "{z}");
    }
}

/// A BPF object the daemon holds, as its fdinfo names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Object {
    Prog(u32),
    Map(u32),
    Link(u32),
}

/// The programs, maps and links behind a process's file descriptors.
fn bpf_objects(pid: i32) -> Vec<Object> {
    let mut out = Vec::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).unwrap() {
        let Ok(text) = std::fs::read_to_string(fd.unwrap().path()) else {
            continue;
        };
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k)?.trim().parse::<u32>().ok())
        };
        // A link's fdinfo names its program too; the program is counted from its own fd.
        if let Some(id) = field("link_id:") {
            out.push(Object::Link(id));
            if let Some(p) = field("prog_id:") {
                out.push(Object::Prog(p));
            }
        } else if let Some(id) = field("prog_id:") {
            out.push(Object::Prog(id));
        } else if let Some(id) = field("map_id:") {
            out.push(Object::Map(id));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Whether the kernel still has the object: `BPF_*_GET_FD_BY_ID` succeeds (the fd is closed
/// at once) or fails with ENOENT.
fn exists(o: Object) -> bool {
    const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
    const BPF_MAP_GET_FD_BY_ID: libc::c_long = 14;
    const BPF_LINK_GET_FD_BY_ID: libc::c_long = 30;
    let (cmd, id) = match o {
        Object::Prog(id) => (BPF_PROG_GET_FD_BY_ID, id),
        Object::Map(id) => (BPF_MAP_GET_FD_BY_ID, id),
        Object::Link(id) => (BPF_LINK_GET_FD_BY_ID, id),
    };
    // union bpf_attr for these commands: { u32 id; u32 next_id; u32 open_flags; }.
    let mut attr = [0u32; 4];
    attr[0] = id;
    // SAFETY: bpf() reads `size` bytes of a valid, zeroed attr buffer.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            std::mem::size_of_val(&attr),
        )
    };
    if fd >= 0 {
        // SAFETY: the fd was just returned to us.
        unsafe { libc::close(fd as i32) };
        return true;
    }
    let err = std::io::Error::last_os_error();
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT), "{o:?}: {err}");
    false
}

/// SIGTERM detaches: every program, link and map the daemon held is gone from the kernel
/// once it has exited (checked by id, so other BPF users on the machine do not matter).
#[test]
fn sigterm_leaves_no_program_link_or_map_of_the_daemon_in_the_kernel() {
    let mut d = Daemon::start();
    let held = bpf_objects(d.pid());
    let progs = held.iter().filter(|o| matches!(o, Object::Prog(_))).count();
    let links = held.iter().filter(|o| matches!(o, Object::Link(_))).count();
    assert!(progs >= 3 && links >= 3, "{held:?}");
    assert!(held.iter().all(|o| exists(*o)), "{held:?}");
    let (_, code) = d.terminate();
    assert_eq!(code, Some(0), "{}", d.log_text());
    // Maps go once the programs that use them are freed (after an RCU grace period): give
    // the kernel 5 s, then say what is still there.
    let deadline = std::time::Instant::now() + 5 * SECOND;
    let left = loop {
        let left: Vec<Object> = held.iter().copied().filter(|o| exists(*o)).collect();
        if left.is_empty() || std::time::Instant::now() > deadline {
            break left;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(
        left.is_empty(),
        "still in the kernel 5 s after the daemon exited: {left:?} of {held:?}"
    );
}

/// A temporary directory, removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(what: &str) -> Self {
        let p = std::env::temp_dir().join(format!("zombie-e2e-{what}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A node without `/sys/kernel/btf/vmlinux`: the kernel's BTF is given as a file, and the
/// daemon runs in a mount namespace where /sys/kernel/btf is an empty tmpfs.
#[test]
fn the_daemon_loads_with_the_kernels_btf_given_as_a_file() {
    let dir = TempDir::new("btf");
    let btf = dir.0.join("vmlinux.btf");
    std::fs::copy("/sys/kernel/btf/vmlinux", &btf).unwrap();
    let btf = btf.to_str().unwrap();
    let hide = "mount -t tmpfs none /sys/kernel/btf && exec \"$@\"";
    let wrapper = ["unshare", "--mount", "sh", "-c", hide, "sh"];

    let out = Command::new(wrapper[0])
        .args(&wrapper[1..])
        .arg(harness::daemon_bin())
        .args(["check", "--btf-path", btf])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("ok") && l.contains("btf") && l.contains(btf)),
        "{text}"
    );

    let d = Daemon::start_wrapped(&wrapper, &["--btf-path", btf]);
    let (w, hello) = Workload::spawn(&["never-wait", "2"]);
    let kids = pids(&hello, "children");
    let found = poll("2 zombies", SECOND, || {
        let z = d.children_of(w.pid());
        (z.len() == 2).then_some(z)
    });
    for z in &found {
        assert!(kids.contains(&(z["pid"].as_i64().unwrap() as i32)), "{z}");
        assert_eq!(z["exit_code"], 7);
        assert_eq!(z["cause"], "parent_not_waiting", "{z}");
    }
}

/// The capability set the DaemonSet grants on this kernel (from `check --print-requirements`,
/// the source of the manifests: the base set, plus SYS_RESOURCE before 5.11 as the
/// kernel-before-5.11 overlay and the chart's `sysResourceCapability` add it) is enough to
/// load the default 4 MiB ring buffer even under a 64 KiB RLIMIT_MEMLOCK, which kernels
/// before 5.11 charge BPF maps to; after the load the daemon keeps only what it reads /proc
/// with.
#[test]
fn the_daemonsets_capabilities_load_the_default_ring_under_a_small_memlock_limit() {
    let out = Command::new(harness::daemon_bin())
        .args(["check", "--print-requirements"])
        .output()
        .unwrap();
    let req: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut version = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let before_5_11 = (version.next().unwrap(), version.next().unwrap()) < (5, 11);
    let mut sets = vec![&req["capabilities"]];
    if before_5_11 {
        sets.push(&req["capabilities_kernel_before_5_11"]);
    }
    let caps: Vec<String> = sets
        .into_iter()
        .flat_map(|set| set.as_array().unwrap().iter())
        .map(|c| format!("+{}", c.as_str().unwrap().to_lowercase()))
        .collect();
    let bounding = format!("--bounding-set=-all,{}", caps.join(","));
    let wrapper = [
        "prlimit",
        "--memlock=65536:65536",
        "setpriv",
        bounding.as_str(),
        "--inh-caps=-all",
        "--",
    ];

    let out = Command::new(wrapper[0])
        .args(&wrapper[1..])
        .arg(harness::daemon_bin())
        .arg("check")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("memlock"), "{text}");

    let d = Daemon::start_wrapped(&wrapper, &[]);
    const CAP_SYS_PTRACE: u64 = 1 << 19;
    for (task, fields) in d.privileges() {
        for (k, v) in fields {
            if k == "CapEff" || k == "CapPrm" {
                assert_eq!(v, CAP_SYS_PTRACE, "{task}: {k}\n{}", d.log_text());
            }
        }
    }
    let (_w, hello) = Workload::spawn(&["never-wait", "1"]);
    let kid = pids(&hello, "children")[0];
    poll("the zombie", SECOND, || d.has_pid(kid).then_some(()));
}
