//! `zombie-daemon check`: a preflight that names what a node lacks, and the daemon's own
//! statement of what it needs from its host (used to keep the DaemonSet honest).

use std::{fmt::Write as _, fs, os::unix::fs::MetadataExt, path::Path};

use caps::{CapSet, Capability};
use serde::Serialize;

use crate::{
    cgroups::{self, CgroupMode},
    http,
    probe::{
        self, ProbeConfig,
        features::{self, Seen},
    },
};

/// The oldest upstream kernel with what the programs use: BTF tracepoints,
/// `bpf_ktime_get_boot_ns`, ring buffers. Only a hint: distribution kernels backport
/// features, so the BTF, memlock, counters and load probes decide.
pub const MIN_KERNEL: (u32, u32) = (5, 8);
/// The inode of the initial PID namespace (PROC_PID_INIT_INO), fixed in the kernel ABI.
const PROC_PID_INIT_INO: u64 = 0xEFFF_FFFC;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
}

#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub verdict: Verdict,
    pub detail: String,
}

fn finding(check: &'static str, verdict: Verdict, detail: impl Into<String>) -> Finding {
    Finding {
        check,
        verdict,
        detail: detail.into(),
    }
}

/// A host mount the daemon reads.
#[derive(Clone, Debug, Serialize)]
pub struct HostPath {
    pub host_path: &'static str,
    pub mount_path: &'static str,
    pub read_only: bool,
    pub why: &'static str,
}

#[derive(Clone, Debug, Serialize)]
pub struct Requirements {
    pub capabilities: Vec<&'static str>,
    /// Needed on kernels before 5.11 only, and only there granted by the manifests: a
    /// runtime whose bounding set lacks one refuses to start the container.
    pub capabilities_kernel_before_5_11: Vec<&'static str>,
    pub capabilities_remediation: Vec<&'static str>,
    pub host_pid: bool,
    pub host_paths: Vec<HostPath>,
    pub port: u16,
    pub liveness_path: &'static str,
    pub readiness_path: &'static str,
    pub metrics_path: &'static str,
}

/// What the daemon needs from a Kubernetes node, derived from the code's own constants.
pub fn requirements() -> Requirements {
    Requirements {
        // bpf() program/map creation needs CAP_BPF; attaching tracing programs CAP_PERFMON;
        // /proc shows exit codes and namespace links of other root processes only to a
        // reader that passes the ptrace read check: CAP_SYS_PTRACE (ptrace itself is denied
        // by the daemon's own seccomp filter). All but SYS_PTRACE are dropped after the load.
        capabilities: vec!["BPF", "PERFMON", "SYS_PTRACE"],
        // Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK, which the daemon raises
        // with CAP_SYS_RESOURCE (`check` says so where it is missing).
        capabilities_kernel_before_5_11: vec!["SYS_RESOURCE"],
        capabilities_remediation: vec!["KILL"],
        // Events carry pids of the initial PID namespace; /proc must show the same ones.
        host_pid: true,
        host_paths: vec![
            HostPath {
                host_path: "/sys/kernel/btf",
                mount_path: "/sys/kernel/btf",
                read_only: true,
                why: "kernel BTF: struct offsets and BTF tracepoint types",
            },
            HostPath {
                host_path: "/proc",
                mount_path: "/host/proc",
                read_only: true,
                why: "bootstrap and resync of the zombie table, parents, cgroup paths",
            },
            HostPath {
                host_path: "/sys/fs/cgroup",
                mount_path: "/host/sys/fs/cgroup",
                read_only: true,
                why: "cgroup ids to paths, cgroup mode, pids limits",
            },
            HostPath {
                host_path: "/run/containerd",
                mount_path: "/host/run/containerd",
                // connect() on a unix socket works through a read-only mount; the directory
                // (not the socket file) survives the runtime recreating its socket.
                read_only: true,
                why: "the container runtime's CRI socket: pod, namespace and container names",
            },
        ],
        port: 9899,
        liveness_path: http::HEALTHZ_PATH,
        readiness_path: http::READYZ_PATH,
        metrics_path: http::METRICS_PATH,
    }
}

fn kernel_release() -> Option<String> {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|s| s.trim().to_string())
}

pub fn parse_kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

/// Every check, against the host's procfs, cgroup filesystem and kernel BTF at these paths.
pub fn run_checks(proc_root: &Path, cgroup_root: &Path, btf_path: &Path) -> Vec<Finding> {
    let mut out = vec![kernel_finding()];
    let effective = caps::read(None, CapSet::Effective).unwrap_or_default();
    let has = |c: Capability| effective.contains(&c);
    let privileged = privilege_findings(&mut out, &effective);
    let btf_ok = btf_finding(&mut out, btf_path);
    out.push(pid_namespace_finding());
    out.push(procfs_finding(proc_root));
    out.push(cgroups_finding(cgroup_root));
    out.push(confinement(
        fs::read_to_string("/proc/self/attr/apparmor/current")
            .ok()
            .as_deref(),
        fs::read_to_string("/proc/self/attr/current")
            .ok()
            .as_deref(),
    ));

    let tracefs = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        .iter()
        .find(|p| Path::new(p).join("events").exists());
    out.push(finding(
        "tracefs",
        Verdict::Ok,
        match tracefs {
            Some(p) => format!("mounted at {p} (not needed: BTF tracepoints attach without it)"),
            None => "not mounted; not needed: BTF tracepoints attach without it".into(),
        },
    ));

    let memlock_ok = memlock_finding(&mut out, has(Capability::CAP_SYS_RESOURCE));
    if privileged {
        out.push(counters_finding());
    }
    if privileged && btf_ok && memlock_ok {
        out.extend(ebpf_findings(btf_path));
    } else {
        out.push(finding(
            "ebpf",
            Verdict::Fail,
            "not tried: fix the failures above first",
        ));
    }
    out
}

/// The running kernel against the oldest one the programs are known to work on.
fn kernel_finding() -> Finding {
    match kernel_release() {
        Some(rel) => match parse_kernel_version(&rel) {
            Some(v) if v >= MIN_KERNEL => finding("kernel", Verdict::Ok, rel),
            _ => finding(
                "kernel",
                Verdict::Warn,
                format!(
                    "{rel}: older than Linux {}.{}, which has everything the programs use; \
                     the probes below decide whether this one has it backported",
                    MIN_KERNEL.0, MIN_KERNEL.1
                ),
            ),
        },
        None => finding("kernel", Verdict::Warn, "cannot read the kernel release"),
    }
}

/// The capabilities to load the programs and to read other processes' /proc files;
/// returns whether the programs can be loaded.
fn privilege_findings(out: &mut Vec<Finding>, effective: &caps::CapsHashSet) -> bool {
    let caps: u64 = effective.iter().map(|c| c.bitmask()).sum();
    let has = |c: Capability| effective.contains(&c);
    let privileged = (has(Capability::CAP_BPF) && has(Capability::CAP_PERFMON))
        || has(Capability::CAP_SYS_ADMIN);
    out.push(if privileged {
        finding("privileges", Verdict::Ok, format!("CapEff {caps:#x}"))
    } else {
        finding(
            "privileges",
            Verdict::Fail,
            "missing CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN): run as root or grant them",
        )
    });
    if !has(Capability::CAP_SYS_PTRACE) {
        out.push(finding(
            "proc_access",
            Verdict::Warn,
            "missing CAP_SYS_PTRACE: /proc hides exit codes of zombies found at start and \
             the PID namespaces of root processes in containers; grant it",
        ));
    }
    privileged
}

/// The kernel's BTF: the task_struct offsets the programs need; returns whether resolved.
fn btf_finding(out: &mut Vec<Finding>, btf_path: &Path) -> bool {
    match probe::offsets::from_btf(btf_path) {
        Ok(o) => {
            out.push(finding(
                "btf",
                Verdict::Ok,
                format!(
                    "{}: task_struct offsets resolved (pid@{}, start_boottime@{}), tracepoints {}",
                    btf_path.display(),
                    o.task_pid,
                    o.task_start_boottime,
                    probe::TRACEPOINTS.join(", ")
                ),
            ));
            true
        }
        Err(e) => {
            out.push(finding("btf", Verdict::Fail, e.to_string()));
            false
        }
    }
}

/// The daemon must share the kernel's PID numbers (hostPID).
fn pid_namespace_finding() -> Finding {
    match fs::metadata("/proc/self/ns/pid") {
        Ok(m) if m.ino() == PROC_PID_INIT_INO => finding(
            "pid namespace",
            Verdict::Ok,
            "initial PID namespace (hostPID)",
        ),
        Ok(_) => finding(
            "pid namespace",
            Verdict::Fail,
            "not in the initial PID namespace: pids from the kernel would not match /proc; \
             in Kubernetes set hostPID: true",
        ),
        Err(e) => finding("pid namespace", Verdict::Warn, format!("cannot tell: {e}")),
    }
}

fn procfs_finding(proc_root: &Path) -> Finding {
    if proc_root.join("1/stat").exists() {
        finding("procfs", Verdict::Ok, proc_root.display().to_string())
    } else {
        finding(
            "procfs",
            Verdict::Fail,
            format!(
                "{} is not a procfs (no 1/stat): pass the host's /proc with --proc-root",
                proc_root.display()
            ),
        )
    }
}

fn cgroups_finding(cgroup_root: &Path) -> Finding {
    let (mode, v2) = cgroups::detect(cgroup_root);
    match mode {
        CgroupMode::Unified | CgroupMode::Hybrid => finding(
            "cgroups",
            Verdict::Ok,
            format!(
                "{mode:?} (cgroup2 at {})",
                v2.as_deref().unwrap_or(Path::new("?")).display()
            )
            .to_lowercase(),
        ),
        CgroupMode::Legacy => finding(
            "cgroups",
            Verdict::Warn,
            "cgroup v1 only: zombies are attributed from /proc/<pid>/cgroup, not cgroup ids",
        ),
        CgroupMode::None => finding(
            "cgroups",
            Verdict::Warn,
            format!(
                "no cgroup filesystem at {} (--cgroup-root): no container attribution",
                cgroup_root.display()
            ),
        ),
    }
}

/// How the counters are read after the capability drop.
fn counters_finding() -> Finding {
    finding(
        "counters",
        Verdict::Ok,
        match features::bpf_refused_without_capabilities() {
            Seen::Yes => format!(
                "this kernel refuses every bpf() command to a caller without CAP_BPF \
                     (kernel.unprivileged_bpf_disabled={}): the daemon reads its counters \
                     through mmap and makes no bpf() call after its capability drop",
                sysctl("kernel/unprivileged_bpf_disabled")
            ),
            Seen::No => "bpf() on held maps works without CAP_BPF here; counters are read \
                             through mmap all the same"
                .into(),
            Seen::Unknown => "read through mmap (no bpf() call after the capability drop)".into(),
        },
    )
}

/// Loads and attaches the programs (then detaches them): the proof that this kernel runs
/// them, and where it shows reaps.
fn ebpf_findings(btf_path: &Path) -> Vec<Finding> {
    let cfg = ProbeConfig {
        btf_path: btf_path.to_path_buf(),
        ..ProbeConfig::default()
    };
    match probe::Probe::load(&cfg) {
        Ok(p) => vec![
            finding(
                "ebpf",
                Verdict::Ok,
                format!(
                    "{} programs loaded and attached (then detached); task fields read {}",
                    p.attached(),
                    if p.direct_reads() {
                        "with plain loads"
                    } else {
                        "through bpf_probe_read_kernel (this verifier refused plain loads)"
                    }
                ),
            ),
            reap_finding(p.reap_witness()),
        ],
        Err(e) => vec![finding("ebpf", Verdict::Fail, format!("{e:#}"))],
    }
}

/// Where reaps are seen, and what follows when only the free tracepoint is there.
pub fn reap_finding(w: &probe::ReapWitness) -> Finding {
    match w {
        probe::ReapWitness::Release => finding(
            "reap",
            Verdict::Ok,
            "reaps seen where they happen (fentry/release_task)",
        ),
        probe::ReapWitness::Free { release_refused } => finding(
            "reap",
            Verdict::Ok,
            format!(
                "fentry/release_task refused ({release_refused}): reaps seen at \
                 sched_process_free, which this kernel may skip; /proc confirms every listed \
                 zombie, so a missed reap leaves the table within 10 s"
            ),
        ),
    }
}

/// What an LSM confining this process breaks. `apparmor` is
/// `/proc/self/attr/apparmor/current` (kernels with LSM stacking), `current` is
/// `/proc/self/attr/current` (the first major LSM's label); unreadable files are None.
pub fn confinement(apparmor: Option<&str>, current: Option<&str>) -> Finding {
    let label = apparmor
        .or(current)
        .map(|s| s.trim_end_matches(['\n', '\0']).trim());
    match label {
        None | Some("") => finding("lsm", Verdict::Ok, "no AppArmor or SELinux label"),
        Some("unconfined") => finding("lsm", Verdict::Ok, "AppArmor: unconfined"),
        // SELinux: user:role:type:level.
        Some(l) if apparmor.is_none() && l.split(':').count() >= 3 => {
            let ty = l.split(':').nth(2).unwrap_or_default();
            if matches!(ty, "spc_t" | "unconfined_t" | "super_t" | "kernel_t") {
                finding("lsm", Verdict::Ok, format!("SELinux: {l}"))
            } else {
                finding(
                    "lsm",
                    Verdict::Warn,
                    format!(
                        "SELinux type {ty} ({l}): a container type may not connect to the \
                         runtime's CRI socket (no pod names) nor read other containers' /proc; \
                         in Kubernetes set securityContext.seLinuxOptions.type: spc_t"
                    ),
                )
            }
        }
        Some(l) if l.ends_with("(complain)") || l.ends_with("(unconfined)") => {
            finding("lsm", Verdict::Ok, format!("AppArmor: {l} (not enforced)"))
        }
        Some(l) => finding(
            "lsm",
            Verdict::Warn,
            format!(
                "AppArmor profile {l} confines the daemon: exit codes and ns/pid of processes \
                 under other profiles (the host, other containers) are hidden (ptrace read is \
                 denied) and remediation cannot signal them; in Kubernetes set \
                 securityContext.appArmorProfile.type: Unconfined (before 1.30: the annotation \
                 container.apparmor.security.beta.kubernetes.io/<container>: unconfined)"
            ),
        ),
    }
}

fn sysctl(name: &str) -> String {
    fs::read_to_string(Path::new("/proc/sys").join(name))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Whether BPF maps are charged to RLIMIT_MEMLOCK here and, if so, whether the daemon can
/// raise it; returns false when the load would fail for it.
fn memlock_finding(out: &mut Vec<Finding>, sys_resource: bool) -> bool {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit with a valid out-pointer.
    unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) };
    let enough = limit.rlim_cur == libc::RLIM_INFINITY || limit.rlim_max == libc::RLIM_INFINITY;
    let (verdict, detail) = match features::maps_charge_memlock() {
        Seen::No => (
            Verdict::Ok,
            "BPF maps are charged to the memory cgroup: RLIMIT_MEMLOCK does not matter".to_string(),
        ),
        Seen::Yes if sys_resource || enough => (
            Verdict::Ok,
            "this kernel charges BPF maps to RLIMIT_MEMLOCK (before 5.11): the daemon raises it \
             at start (CAP_SYS_RESOURCE, dropped after the load)"
                .to_string(),
        ),
        Seen::Yes => (
            Verdict::Fail,
            format!(
                "this kernel charges BPF maps to RLIMIT_MEMLOCK (before 5.11) and the limit is \
                 {} KiB: grant CAP_SYS_RESOURCE so the daemon can raise it (deploy/kubernetes/\
                 kernel-before-5.11, Helm sysResourceCapability)",
                limit.rlim_max / 1024
            ),
        ),
        Seen::Unknown => (
            Verdict::Warn,
            "cannot tell whether BPF maps count against RLIMIT_MEMLOCK (no privilege to create \
             a map?)"
                .to_string(),
        ),
    };
    let ok = verdict != Verdict::Fail;
    out.push(finding("memlock", verdict, detail));
    ok
}

/// The findings as `zombie-daemon check` prints them: one line each, then the verdict.
pub fn text(findings: &[Finding]) -> String {
    let mut out = String::new();
    for f in findings {
        let v = match f.verdict {
            Verdict::Ok => "ok  ",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
        };
        let _ = writeln!(out, "{v}  {:<14} {}", f.check, f.detail);
    }
    let failed = findings.iter().any(|f| f.verdict == Verdict::Fail);
    out.push_str(if failed {
        "zombie-daemon cannot run here: fix the FAIL lines above.\n"
    } else {
        "zombie-daemon can run here.\n"
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions() {
        assert_eq!(parse_kernel_version("6.18.44-fc-v782"), Some((6, 18)));
        assert_eq!(parse_kernel_version("5.8.0"), Some((5, 8)));
        assert!(parse_kernel_version("5.4.0-generic").unwrap() < MIN_KERNEL);
        assert_eq!(parse_kernel_version("garbage"), None);
    }

    #[test]
    fn confining_profiles_are_named_with_what_breaks() {
        let ok = |a, c| confinement(a, c).verdict == Verdict::Ok;
        assert!(ok(None, None));
        assert!(ok(None, Some("unconfined\n")));
        assert!(ok(Some("unconfined\n"), Some("unconfined\n")));
        assert!(ok(Some("cri-containerd.apparmor.d (complain)\n"), None));
        assert!(ok(None, Some("system_u:system_r:spc_t:s0\0")));
        assert!(ok(
            None,
            Some("unconfined_u:unconfined_r:unconfined_t:s0-s0:c0.c1023")
        ));
        let aa = confinement(None, Some("cri-containerd.apparmor.d (enforce)\n"));
        assert_eq!(aa.verdict, Verdict::Warn);
        assert!(
            aa.detail.contains("cri-containerd.apparmor.d (enforce)"),
            "{}",
            aa.detail
        );
        assert!(
            aa.detail.contains("appArmorProfile.type: Unconfined"),
            "{}",
            aa.detail
        );
        // With stacking, the AppArmor file wins over another LSM's label.
        let stacked = confinement(Some("docker-default (enforce)"), Some("system_u:r:x_t:s0"));
        assert!(
            stacked
                .detail
                .starts_with("AppArmor profile docker-default"),
            "{}",
            stacked.detail
        );
        let se = confinement(None, Some("system_u:system_r:container_t:s0:c12,c34\0"));
        assert_eq!(se.verdict, Verdict::Warn);
        assert!(
            se.detail.contains("container_t") && se.detail.contains("spc_t"),
            "{}",
            se.detail
        );
    }

    #[test]
    fn text_has_a_line_per_finding_and_the_verdict() {
        let ok = finding("kernel", Verdict::Ok, "6.18");
        let t = text(std::slice::from_ref(&ok));
        assert_eq!(
            t,
            "ok    kernel         6.18\nzombie-daemon can run here.\n"
        );
        let t = text(&[ok, finding("btf", Verdict::Fail, "no BTF")]);
        assert!(t.contains("\nFAIL  btf            no BTF\n"), "{t}");
        assert!(
            t.ends_with("cannot run here: fix the FAIL lines above.\n"),
            "{t}"
        );
    }

    #[test]
    fn requirements_match_the_http_paths() {
        let r = requirements();
        assert_eq!(r.liveness_path, "/healthz");
        assert_eq!(r.readiness_path, "/readyz");
        assert!(r.host_paths.iter().all(|p| p.read_only));
    }
}
