//! Remediation: opt-in, guarded, audited. Off by default.
//!
//! A pure [`Engine`] turns targets (a non-reaping parent and its zombies) plus the policy
//! and what was already done into [`Decision`]s; a thin executor carries them out (signals
//! through a pidfd, CRI `StopContainer`). The ladder per target, chosen by the cause:
//! SIGCHLD; then, for an ordinary parent, SIGTERM and SIGKILL after a grace period (its
//! zombies are adopted and reaped by the container's init); for a container's PID 1, a
//! container restart through the runtime (or SIGTERM/SIGKILL to PID 1 where configured).
//! One escalation counts as one action for the rate limits and the backoff.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use crate::{
    attribution::{self, Owner, cri::CriClient, names::NameCache},
    diagnosis::Cause,
    tracker::Ns,
    view::ZombieView,
};

const SECOND: Ns = 1_000_000_000;
const HOUR: Ns = 3600 * SECOND;
/// Decisions kept for `/remediations`.
pub const HISTORY_LIMIT: usize = 1000;

/// `--remediate`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Observe only.
    #[default]
    Off,
    /// Decide and log, never act.
    DryRun,
    /// Act.
    On,
}

/// What to do when the non-reaping parent is the container's PID 1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pid1Action {
    /// CRI StopContainer: the kubelet restarts it per the pod's restart policy.
    #[default]
    StopContainer,
    /// SIGTERM, then SIGKILL after the grace period, to the container's PID 1.
    Signal,
    /// Go no further than SIGCHLD.
    None,
}

fn default_deny() -> Vec<String> {
    vec!["kube-system".into()]
}

/// The policy file. Keys are a public contract (deploy/kubernetes/remediation).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// Namespaces remediation may act in (empty: all); `deny_namespaces` wins.
    pub allow_namespaces: Vec<String>,
    pub deny_namespaces: Vec<String>,
    /// Act on processes that belong to no pod.
    pub allow_host_processes: bool,
    /// A target is acted on once it has this many zombies at least `min_age_seconds` old.
    pub min_zombies: usize,
    pub min_age_seconds: f64,
    pub max_actions_per_pod_per_hour: usize,
    pub max_actions_per_node_per_hour: usize,
    /// After acting on a pod or process, wait this long before acting on it again.
    pub backoff_seconds: f64,
    /// Only pods whose annotations or labels carry this key (not "false") are remediated;
    /// empty: no opt-in needed.
    pub opt_in_annotation: String,
    /// Time the parent gets to reap after SIGCHLD.
    pub sigchld_wait_seconds: f64,
    /// Time between SIGTERM and SIGKILL (and after the last rung before giving up).
    pub grace_seconds: f64,
    pub pid1_action: Pid1Action,
    /// How often the zombie table is looked at.
    pub interval_seconds: f64,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            allow_namespaces: Vec::new(),
            deny_namespaces: default_deny(),
            allow_host_processes: false,
            min_zombies: 5,
            min_age_seconds: 300.0,
            max_actions_per_pod_per_hour: 2,
            max_actions_per_node_per_hour: 10,
            backoff_seconds: 600.0,
            opt_in_annotation: "zombie-daemon.io/remediate".into(),
            sigchld_wait_seconds: 30.0,
            grace_seconds: 30.0,
            pid1_action: Pid1Action::StopContainer,
            interval_seconds: 5.0,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read the remediation policy {}: {source} (check --policy)", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the remediation policy {} is not valid: {detail}; fix it (keys: see deploy/kubernetes/remediation/policy-configmap.yaml)", path.display())]
    Invalid { path: PathBuf, detail: String },
}

/// The largest number of seconds a policy may give (about 31 years): beyond it a value is a
/// typo, and the daemon's timers (`Duration`, `Instant`) would overflow.
pub const MAX_SECONDS: f64 = 1e9;

impl Policy {
    pub fn parse(text: &str) -> Result<Self, String> {
        let p: Policy = if text.trim().is_empty() {
            Policy::default()
        } else {
            serde_norway::from_str(text).map_err(|e| e.to_string())?
        };
        for (name, v) in [
            ("min_age_seconds", p.min_age_seconds),
            ("backoff_seconds", p.backoff_seconds),
            ("sigchld_wait_seconds", p.sigchld_wait_seconds),
            ("grace_seconds", p.grace_seconds),
        ] {
            if !(0.0..=MAX_SECONDS).contains(&v) {
                return Err(format!(
                    "{name} must be a number of seconds from 0 to {MAX_SECONDS:e}, not {v}"
                ));
            }
        }
        if !(0.05..=MAX_SECONDS).contains(&p.interval_seconds) {
            return Err(format!(
                "interval_seconds must be from 0.05 to {MAX_SECONDS:e}, not {}",
                p.interval_seconds
            ));
        }
        Ok(p)
    }

    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|detail| PolicyError::Invalid {
            path: path.to_path_buf(),
            detail,
        })
    }
}

/// Seconds to ns; saturates (the cast does), so a huge value means "never", not a wrap.
fn secs(s: f64) -> Ns {
    (s * 1e9) as Ns
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Sigchld,
    Sigterm,
    Sigkill,
    StopContainer,
    None,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sigchld => "sigchld",
            Self::Sigterm => "sigterm",
            Self::Sigkill => "sigkill",
            Self::StopContainer => "stop_container",
            Self::None => "none",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Done,
    DryRun,
    Refused,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::DryRun => "dry_run",
            Self::Refused => "refused",
            Self::Failed => "failed",
        }
    }
}

/// A process whose children are zombies, with the facts the guards need.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Target {
    pub pid: u32,
    pub start_ticks: u64,
    pub comm: String,
    /// File name of its executable (empty if unreadable).
    pub exe: String,
    pub kernel_thread: bool,
    /// In a pod's cgroup.
    pub in_pod: bool,
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub pod_uid: Option<String>,
    pub container: Option<String>,
    pub container_id: Option<String>,
    pub pod_labels: BTreeMap<String, String>,
    pub pod_annotations: BTreeMap<String, String>,
    /// PID 1 of its PID namespace (a container's init).
    pub namespace_init: bool,
    pub cause: Option<Cause>,
    /// Zombies at least `min_age_seconds` old.
    pub zombies: usize,
    /// All its zombies, however young.
    pub all_zombies: usize,
}

impl Target {
    fn key(&self) -> (u32, u64) {
        (self.pid, self.start_ticks)
    }

    /// Rate limits and backoff are per pod; a host process is its own "pod".
    fn pod_key(&self) -> String {
        self.pod_uid
            .clone()
            .or_else(|| self.container_id.clone())
            .unwrap_or_else(|| format!("host/{}/{}", self.pid, self.start_ticks))
    }
}

/// One line of `/remediations` and of the log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// RFC 3339, UTC (filled in by the caller).
    pub time: String,
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub container: Option<String>,
    pub container_id: Option<String>,
    pub pid: u32,
    pub start_ticks: u64,
    pub comm: String,
    pub cause: Option<Cause>,
    pub zombies: usize,
    pub action: Action,
    pub result: Outcome,
    pub reason: String,
}

/// Node components and kernel-side processes that are never touched.
const PROTECTED: &[&str] = &["kubelet", "containerd", "crio", "conmon", "dockerd", "runc"];

fn protected_name(name: &str) -> bool {
    PROTECTED.contains(&name) || name.starts_with("containerd-shim") || name.starts_with("k3s")
}

/// The hard guards, and the policy's say on who may be touched.
pub fn guard(t: &Target, policy: &Policy, self_pid: u32) -> Result<(), String> {
    if t.pid <= 1 {
        return Err("never the host's PID 1".into());
    }
    if t.pid == self_pid {
        return Err("never the daemon itself".into());
    }
    if t.kernel_thread {
        return Err("never a kernel thread".into());
    }
    if protected_name(&t.comm) || protected_name(&t.exe) {
        return Err(format!(
            "never a node component ({}): kubelet and the container runtime are protected",
            if protected_name(&t.comm) {
                &t.comm
            } else {
                &t.exe
            }
        ));
    }
    if !t.in_pod {
        return if policy.allow_host_processes {
            Ok(())
        } else {
            Err("not in a pod, and the policy does not allow host processes".into())
        };
    }
    let ns = t.namespace.as_deref();
    if let Some(ns) = ns
        && policy.deny_namespaces.iter().any(|d| d == ns)
    {
        return Err(format!("namespace {ns} is denied by the policy"));
    }
    if !policy.allow_namespaces.is_empty()
        && !ns.is_some_and(|ns| policy.allow_namespaces.iter().any(|a| a == ns))
    {
        return Err(format!(
            "namespace {} is not in the policy's allow_namespaces",
            ns.unwrap_or("(unknown)")
        ));
    }
    let key = policy.opt_in_annotation.as_str();
    if !key.is_empty() {
        let opted = [&t.pod_annotations, &t.pod_labels]
            .iter()
            .any(|m| m.get(key).is_some_and(|v| v != "false"));
        if !opted {
            return Err(format!("the pod has not opted in ({key})"));
        }
    }
    Ok(())
}

/// One escalation against one target.
#[derive(Clone, Debug)]
struct Episode {
    last: Action,
    next_at: Ns,
    target: Target,
}

/// The decision engine: pure, with the clock passed in.
pub struct Engine {
    pub policy: Policy,
    pub mode: Mode,
    self_pid: u32,
    episodes: HashMap<(u32, u64), Episode>,
    /// Until when a process, and a pod, may not be acted on again.
    process_backoff: HashMap<(u32, u64), Ns>,
    pod_backoff: HashMap<String, Ns>,
    pod_actions: HashMap<String, VecDeque<Ns>>,
    node_actions: VecDeque<Ns>,
    /// The last refusal per target, so a standing refusal is recorded once.
    refused: HashMap<(u32, u64), String>,
}

impl Engine {
    pub fn new(policy: Policy, mode: Mode, self_pid: u32) -> Self {
        Self {
            policy,
            mode,
            self_pid,
            episodes: HashMap::new(),
            process_backoff: HashMap::new(),
            pod_backoff: HashMap::new(),
            pod_actions: HashMap::new(),
            node_actions: VecDeque::new(),
            refused: HashMap::new(),
        }
    }

    fn decision(&self, t: &Target, action: Action, result: Outcome, reason: String) -> Decision {
        Decision {
            time: String::new(),
            namespace: t.namespace.clone(),
            pod: t.pod.clone(),
            container: t.container.clone(),
            container_id: t.container_id.clone(),
            pid: t.pid,
            start_ticks: t.start_ticks,
            comm: t.comm.clone(),
            cause: t.cause,
            zombies: t.zombies,
            action,
            result,
            reason,
        }
    }

    fn act(&self, t: &Target, action: Action, reason: String) -> Decision {
        let result = if self.mode == Mode::On {
            Outcome::Done
        } else {
            Outcome::DryRun
        };
        self.decision(t, action, result, reason)
    }

    fn next_rung(&self, last: Action, t: &Target) -> Option<Action> {
        match last {
            Action::Sigchld if t.namespace_init => match self.policy.pid1_action {
                Pid1Action::StopContainer => Some(Action::StopContainer),
                Pid1Action::Signal => Some(Action::Sigterm),
                Pid1Action::None => None,
            },
            Action::Sigchld => Some(Action::Sigterm),
            Action::Sigterm => Some(Action::Sigkill),
            _ => None,
        }
    }

    fn wait_after(&self, a: Action) -> Ns {
        match a {
            Action::Sigchld => secs(self.policy.sigchld_wait_seconds),
            _ => secs(self.policy.grace_seconds),
        }
    }

    fn end(&mut self, t: &Target, now: Ns) {
        let until = now.saturating_add(secs(self.policy.backoff_seconds));
        self.process_backoff.insert(t.key(), until);
        self.pod_backoff.insert(t.pod_key(), until);
    }

    fn refuse(&mut self, out: &mut Vec<Decision>, t: &Target, action: Action, reason: String) {
        if self.refused.get(&t.key()) != Some(&reason) {
            self.refused.insert(t.key(), reason.clone());
            out.push(self.decision(t, action, Outcome::Refused, reason));
        }
    }

    /// One look at the table. `targets` are the processes with zombies now.
    pub fn step(&mut self, targets: &[Target], now: Ns) -> Vec<Decision> {
        let mut out = Vec::new();
        if self.mode == Mode::Off {
            return out;
        }
        let in_window = |t: &Ns| t.saturating_add(HOUR) > now;
        self.node_actions.retain(in_window);
        self.pod_actions.retain(|_, v| {
            v.retain(in_window);
            !v.is_empty()
        });
        self.process_backoff.retain(|_, until| *until > now);
        self.pod_backoff.retain(|_, until| *until > now);
        let present: HashMap<(u32, u64), &Target> = targets
            .iter()
            .filter(|t| t.zombies.max(t.all_zombies) > 0)
            .map(|t| (t.key(), t))
            .collect();
        self.refused.retain(|k, _| present.contains_key(k));

        // Escalations under way.
        let mut keys: Vec<_> = self.episodes.keys().copied().collect();
        keys.sort_unstable();
        for key in keys {
            let ep = self.episodes[&key].clone();
            let Some(t) = present.get(&key).copied() else {
                self.episodes.remove(&key);
                self.end(&ep.target, now);
                let reason = format!("zombies cleared after {}", ep.last.as_str());
                out.push(self.decision(&ep.target, Action::None, Outcome::Done, reason));
                continue;
            };
            if now < ep.next_at {
                continue;
            }
            let Some(action) = self.next_rung(ep.last, t) else {
                self.episodes.remove(&key);
                self.end(t, now);
                let reason = format!("zombies remain after {}; giving up", ep.last.as_str());
                out.push(self.decision(t, Action::None, Outcome::Failed, reason));
                continue;
            };
            if let Err(reason) = guard(t, &self.policy, self.self_pid) {
                self.episodes.remove(&key);
                self.end(t, now);
                out.push(self.decision(t, action, Outcome::Refused, reason));
                continue;
            }
            let reason = format!(
                "{} zombies remain {:.0} s after {}",
                t.zombies,
                self.wait_after(ep.last) as f64 / 1e9,
                ep.last.as_str()
            );
            out.push(self.act(t, action, reason));
            let next_at = now.saturating_add(self.wait_after(action));
            let ep = self.episodes.get_mut(&key).expect("present");
            ep.last = action;
            ep.next_at = next_at;
            ep.target = t.clone();
        }

        // New escalations.
        for t in targets {
            if t.zombies == 0
                || t.zombies < self.policy.min_zombies
                || self.episodes.contains_key(&t.key())
            {
                continue;
            }
            if let Err(reason) = guard(t, &self.policy, self.self_pid) {
                self.refuse(&mut out, t, Action::Sigchld, reason);
                continue;
            }
            if self.process_backoff.contains_key(&t.key()) {
                self.refuse(
                    &mut out,
                    t,
                    Action::Sigchld,
                    "backoff: this process was acted on recently".into(),
                );
                continue;
            }
            let pod = t.pod_key();
            if self.pod_backoff.contains_key(&pod) {
                self.refuse(
                    &mut out,
                    t,
                    Action::Sigchld,
                    "backoff: this pod was acted on recently".into(),
                );
                continue;
            }
            if self.pod_actions.get(&pod).map_or(0, VecDeque::len)
                >= self.policy.max_actions_per_pod_per_hour
            {
                self.refuse(
                    &mut out,
                    t,
                    Action::Sigchld,
                    "rate limit: max_actions_per_pod_per_hour reached".into(),
                );
                continue;
            }
            if self.node_actions.len() >= self.policy.max_actions_per_node_per_hour {
                self.refuse(
                    &mut out,
                    t,
                    Action::Sigchld,
                    "rate limit: max_actions_per_node_per_hour reached".into(),
                );
                continue;
            }
            self.refused.remove(&t.key());
            self.node_actions.push_back(now);
            self.pod_actions.entry(pod).or_default().push_back(now);
            let reason = format!(
                "{} zombies of {} (cause {})",
                t.zombies,
                t.comm,
                t.cause.map_or("unknown", Cause::as_str)
            );
            out.push(self.act(t, Action::Sigchld, reason));
            self.episodes.insert(
                t.key(),
                Episode {
                    last: Action::Sigchld,
                    next_at: now.saturating_add(self.wait_after(Action::Sigchld)),
                    target: t.clone(),
                },
            );
        }
        out
    }
}

/// Groups zombies by their current parent and reads what the guards need from /proc.
pub fn targets(
    views: &[ZombieView],
    policy: &Policy,
    proc_root: &Path,
    names: Option<&NameCache>,
) -> Vec<Target> {
    let mut by_parent: BTreeMap<u32, (usize, usize, &ZombieView)> = BTreeMap::new();
    for z in views {
        let parent = z.reaper.as_ref().map_or(z.ppid, |r| r.pid);
        let e = by_parent.entry(parent).or_insert((0, 0, z));
        e.1 += 1;
        if z.age_seconds >= policy.min_age_seconds {
            e.0 += 1;
        }
    }
    by_parent
        .into_iter()
        .filter_map(|(pid, (count, all, z))| {
            let mut t = read_target(proc_root, pid, names)?;
            t.zombies = count;
            t.all_zombies = all;
            t.cause = z.cause;
            t.namespace_init = z.reaper.as_ref().is_some_and(|r| r.namespace_init);
            Some(t)
        })
        .collect()
}

const PF_KTHREAD: u32 = 0x0020_0000;

/// A process's identity, kind and pod, from /proc. `None` when it is gone.
pub fn read_target(proc_root: &Path, pid: u32, names: Option<&NameCache>) -> Option<Target> {
    let dir = proc_root.join(pid.to_string());
    let p = ::procfs::process::Process::new_with_root(dir.clone()).ok()?;
    let stat = p.stat().ok()?;
    let cmdline_empty = std::fs::read(dir.join("cmdline")).map_or(true, |c| c.is_empty());
    let exe = std::fs::read_link(dir.join("exe"))
        .ok()
        .and_then(|e| e.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let cgroup = std::fs::read_to_string(dir.join("cgroup")).unwrap_or_default();
    let prefer_v2 = cgroup.lines().count() == 1;
    let a = crate::cgroups::pick_path(&cgroup, prefer_v2)
        .map(|path| attribution::attribute_path(&path, names));
    let mut t = Target {
        pid,
        start_ticks: stat.starttime,
        comm: stat.comm.clone(),
        exe,
        kernel_thread: stat.flags & PF_KTHREAD != 0
            || stat.ppid == 2
            || (pid == 2)
            || (cmdline_empty && stat.state != 'Z'),
        ..Target::default()
    };
    if let Some(a) = a
        && a.owner == Owner::Pod.as_str()
    {
        t.in_pod = true;
        t.namespace = a.namespace.clone();
        t.pod = a.pod.clone();
        t.pod_uid = a.pod_uid.clone();
        t.container = a.container.clone();
        t.container_id = a.container_id.clone();
        if let Some(n) = a
            .container_id
            .as_deref()
            .and_then(|id| names.and_then(|c| c.container(id)))
        {
            t.pod_labels = n.pod_labels;
            t.pod_annotations = n.pod_annotations;
        }
    }
    Some(t)
}

/// Sends `sig` to exactly the process `(pid, start_ticks)`: a pidfd pins the process, and
/// /proc, read after the pidfd is open, proves it is the same one (a reused pid is never
/// signalled).
pub fn signal_exact(proc_root: &Path, pid: u32, start_ticks: u64, sig: i32) -> Result<(), String> {
    // SAFETY: pidfd_open with a pid and no flags; returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(format!("pidfd_open: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: fd is a fresh descriptor we own.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) };
    let same = ::procfs::process::Process::new_with_root(proc_root.join(pid.to_string()))
        .and_then(|p| p.stat())
        .is_ok_and(|s| s.starttime == start_ticks);
    if !same {
        return Err("the pid now names another process (or it is gone); not signalled".into());
    }
    use std::os::fd::AsRawFd;
    // SAFETY: pidfd_send_signal on our pidfd with no siginfo and no flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc != 0 {
        return Err(format!(
            "pidfd_send_signal: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// One structured log line per decision (JSON with `--log-format json`).
fn log(d: &Decision) {
    macro_rules! emit {
        ($level:ident) => {
            tracing::$level!(
                namespace = d.namespace.as_deref().unwrap_or(""),
                pod = d.pod.as_deref().unwrap_or(""),
                container = d.container.as_deref().unwrap_or(""),
                container_id = d.container_id.as_deref().unwrap_or(""),
                pid = d.pid,
                start_ticks = d.start_ticks,
                comm = %d.comm,
                cause = d.cause.map_or("", Cause::as_str),
                zombies = d.zombies,
                action = d.action.as_str(),
                result = d.result.as_str(),
                reason = %d.reason,
                "remediation decision"
            )
        };
    }
    match d.result {
        Outcome::Failed => emit!(warn),
        _ => emit!(info),
    }
}

/// The engine, its executor and the record of what was decided.
pub struct Remediator {
    pub engine: Engine,
    proc_root: PathBuf,
    names: Option<Arc<NameCache>>,
    cri: Option<CriClient>,
    pub history: Arc<Mutex<VecDeque<Decision>>>,
}

impl Remediator {
    pub fn new(
        engine: Engine,
        proc_root: &Path,
        names: Option<Arc<NameCache>>,
        cri: Option<CriClient>,
        history: Arc<Mutex<VecDeque<Decision>>>,
    ) -> Self {
        Self {
            engine,
            proc_root: proc_root.to_path_buf(),
            names,
            cri,
            history,
        }
    }

    /// Builds the targets from a snapshot (blocking: reads /proc).
    pub fn targets(&self, views: &[ZombieView]) -> Vec<Target> {
        targets(
            views,
            &self.engine.policy,
            &self.proc_root,
            self.names.as_deref(),
        )
    }

    /// Decides, carries out and records. Returns the decisions for metrics.
    pub async fn run_once(&mut self, targets: &[Target], now: Ns, wall: &str) -> Vec<Decision> {
        let mut decisions = self.engine.step(targets, now);
        for d in &mut decisions {
            d.time = wall.to_string();
            if d.result == Outcome::Done
                && d.action != Action::None
                && let Err(e) = self.execute(d).await
            {
                d.result = Outcome::Failed;
                d.reason = format!("{}; {e}", d.reason);
            }
            log(d);
        }
        let mut h = self.history.lock().unwrap_or_else(|e| e.into_inner());
        for d in &decisions {
            if h.len() >= HISTORY_LIMIT {
                h.pop_front();
            }
            h.push_back(d.clone());
        }
        decisions
    }

    async fn execute(&mut self, d: &Decision) -> Result<(), String> {
        // The guards again, on what /proc says now.
        let now = read_target(&self.proc_root, d.pid, self.names.as_deref())
            .ok_or("the process is gone")?;
        if now.start_ticks != d.start_ticks {
            return Err("the pid now names another process; not signalled".into());
        }
        guard(&now, &self.engine.policy, std::process::id())?;
        let sig = match d.action {
            Action::Sigchld => libc::SIGCHLD,
            Action::Sigterm => libc::SIGTERM,
            Action::Sigkill => libc::SIGKILL,
            Action::StopContainer => return self.stop_container(d).await,
            Action::None => return Ok(()),
        };
        signal_exact(&self.proc_root, d.pid, d.start_ticks, sig)
    }

    async fn stop_container(&mut self, d: &Decision) -> Result<(), String> {
        let id = d
            .container_id
            .as_deref()
            .ok_or("no container id for this process")?;
        let cri = self
            .cri
            .as_ref()
            .ok_or("no container runtime connection (set --runtime-endpoint)")?;
        let req = k8s_cri::v1::StopContainerRequest {
            container_id: id.to_string(),
            timeout: self.engine.policy.grace_seconds.ceil() as i64,
        };
        let mut service = cri.service();
        let call = service.stop_container(req);
        let budget =
            std::time::Duration::try_from_secs_f64(self.engine.policy.grace_seconds + 10.0)
                .unwrap_or(std::time::Duration::MAX);
        match tokio::time::timeout(budget, call).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(status)) => Err(format!("CRI StopContainer: {}", status.message())),
            Err(_) => Err("CRI StopContainer timed out".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_target(pid: u32) -> Target {
        Target {
            pid,
            start_ticks: 100 + pid as u64,
            comm: "app".into(),
            exe: "app".into(),
            in_pod: true,
            namespace: Some("default".into()),
            pod: Some(format!("pod{pid}")),
            pod_uid: Some(format!("uid{pid}")),
            container: Some("c".into()),
            container_id: Some(format!("cid{pid}")),
            pod_annotations: [("zombie-daemon.io/remediate".to_string(), "true".to_string())]
                .into(),
            cause: Some(Cause::ParentNotWaiting),
            zombies: 5,
            ..Target::default()
        }
    }

    fn policy() -> Policy {
        Policy {
            min_age_seconds: 0.0,
            sigchld_wait_seconds: 10.0,
            grace_seconds: 10.0,
            backoff_seconds: 600.0,
            ..Policy::default()
        }
    }

    fn engine(mode: Mode) -> Engine {
        Engine::new(policy(), mode, 4242)
    }

    fn actions(ds: &[Decision]) -> Vec<(Action, Outcome)> {
        ds.iter().map(|d| (d.action, d.result)).collect()
    }

    #[test]
    fn the_deployed_policy_parses_with_its_keys() {
        let text = include_str!("../../deploy/kubernetes/remediation/policy-configmap.yaml");
        let body: String = text
            .split_once("policy.yaml: |\n")
            .unwrap()
            .1
            .lines()
            .map(|l| l.strip_prefix("    ").unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n");
        let p = Policy::parse(&body).unwrap();
        assert_eq!(p.deny_namespaces, vec!["kube-system"]);
        assert_eq!(p.min_zombies, 5);
        assert_eq!(p.max_actions_per_node_per_hour, 10);
        assert_eq!(p.opt_in_annotation, "zombie-daemon.io/remediate");
        assert_eq!(p, Policy::default());
    }

    #[test]
    fn a_bad_policy_is_one_clear_error() {
        assert!(Policy::parse("min_zombies: lots").is_err());
        let e = Policy::parse("allow_namespace: [a]").unwrap_err();
        assert!(e.contains("allow_namespace"), "{e}");
        assert!(Policy::parse("backoff_seconds: -1").is_err());
        for huge in [
            "min_age_seconds: 1e300",
            "grace_seconds: .inf",
            "interval_seconds: 1e10",
            "sigchld_wait_seconds: .nan",
        ] {
            let e = Policy::parse(huge).unwrap_err();
            assert!(e.contains("seconds"), "{huge}: {e}");
        }
        assert!(Policy::parse("backoff_seconds: 1e9\ninterval_seconds: 1e9").is_ok());
    }

    #[test]
    fn huge_waits_and_times_saturate() {
        // Not through `parse`: the engine's policy is public.
        let mut e = Engine::new(
            Policy {
                sigchld_wait_seconds: 1e300,
                backoff_seconds: f64::MAX,
                ..policy()
            },
            Mode::On,
            4242,
        );
        let t = pod_target(10);
        let late = u64::MAX - SECOND;
        assert_eq!(
            actions(&e.step(std::slice::from_ref(&t), late)),
            [(Action::Sigchld, Outcome::Done)]
        );
        assert!(e.step(std::slice::from_ref(&t), u64::MAX - 1).is_empty());
        assert_eq!(
            actions(&e.step(std::slice::from_ref(&t), u64::MAX)),
            [(Action::Sigterm, Outcome::Done)]
        );
        assert_eq!(
            actions(&e.step(&[], u64::MAX)),
            [(Action::None, Outcome::Done)]
        );
    }

    #[test]
    fn the_ladder_for_a_parent_is_sigchld_sigterm_sigkill() {
        let mut e = engine(Mode::On);
        let t = pod_target(10);
        assert_eq!(
            actions(&e.step(std::slice::from_ref(&t), 0)),
            [(Action::Sigchld, Outcome::Done)]
        );
        assert!(
            e.step(std::slice::from_ref(&t), 5 * SECOND).is_empty(),
            "waits after SIGCHLD"
        );
        assert_eq!(
            actions(&e.step(std::slice::from_ref(&t), 10 * SECOND)),
            [(Action::Sigterm, Outcome::Done)]
        );
        assert_eq!(
            actions(&e.step(std::slice::from_ref(&t), 20 * SECOND)),
            [(Action::Sigkill, Outcome::Done)]
        );
        assert_eq!(
            actions(&e.step(&[], 21 * SECOND)),
            [(Action::None, Outcome::Done)]
        );
    }

    #[test]
    fn the_ladder_for_a_pid1_restarts_the_container() {
        let mut e = engine(Mode::On);
        let t = Target {
            namespace_init: true,
            cause: Some(Cause::Pid1NotInit),
            ..pod_target(10)
        };
        e.step(std::slice::from_ref(&t), 0);
        assert_eq!(
            actions(&e.step(std::slice::from_ref(&t), 10 * SECOND)),
            [(Action::StopContainer, Outcome::Done)]
        );
        e.policy.pid1_action = Pid1Action::Signal;
        let t2 = Target {
            namespace_init: true,
            ..pod_target(11)
        };
        e.step(std::slice::from_ref(&t2), 0);
        assert_eq!(
            actions(&e.step(&[t2], 10 * SECOND)),
            [(Action::Sigterm, Outcome::Done)]
        );
    }

    #[test]
    fn zombies_that_clear_after_sigchld_end_the_escalation() {
        let mut e = engine(Mode::On);
        let t = pod_target(10);
        e.step(std::slice::from_ref(&t), 0);
        let d = e.step(&[], SECOND);
        assert_eq!(actions(&d), [(Action::None, Outcome::Done)]);
        assert!(d[0].reason.contains("cleared after sigchld"));
    }

    #[test]
    fn dry_run_decides_but_marks_everything_dry_run() {
        let mut e = engine(Mode::DryRun);
        let t = pod_target(10);
        assert_eq!(
            actions(&e.step(std::slice::from_ref(&t), 0)),
            [(Action::Sigchld, Outcome::DryRun)]
        );
        assert_eq!(
            actions(&e.step(&[t], 10 * SECOND)),
            [(Action::Sigterm, Outcome::DryRun)]
        );
        assert!(engine(Mode::Off).step(&[pod_target(1)], 0).is_empty());
    }

    #[test]
    fn hard_guards_hold() {
        let p = policy();
        let ok = pod_target(10);
        assert!(guard(&ok, &p, 4242).is_ok());
        let cases = [
            Target {
                pid: 1,
                ..ok.clone()
            },
            Target {
                pid: 4242,
                ..ok.clone()
            },
            Target {
                kernel_thread: true,
                ..ok.clone()
            },
            Target {
                comm: "kubelet".into(),
                ..ok.clone()
            },
            Target {
                exe: "containerd".into(),
                ..ok.clone()
            },
            Target {
                comm: "containerd-shim".into(),
                ..ok.clone()
            },
            Target {
                comm: "crio".into(),
                ..ok.clone()
            },
            Target {
                comm: "conmon".into(),
                ..ok.clone()
            },
            Target {
                comm: "dockerd".into(),
                ..ok.clone()
            },
            Target {
                comm: "runc".into(),
                ..ok.clone()
            },
            Target {
                in_pod: false,
                ..ok.clone()
            },
            Target {
                namespace: Some("kube-system".into()),
                ..ok.clone()
            },
            Target {
                pod_annotations: BTreeMap::new(),
                ..ok.clone()
            },
        ];
        for t in &cases {
            assert!(guard(t, &p, 4242).is_err(), "{t:?}");
            let mut e = Engine::new(p.clone(), Mode::On, 4242);
            let d = e.step(std::slice::from_ref(t), 0);
            assert_eq!(actions(&d), [(Action::Sigchld, Outcome::Refused)], "{t:?}");
            assert!(
                e.step(std::slice::from_ref(t), SECOND).is_empty(),
                "refusal logged once"
            );
        }
        let labelled = Target {
            pod_annotations: BTreeMap::new(),
            pod_labels: [("zombie-daemon.io/remediate".to_string(), "yes".to_string())].into(),
            ..ok.clone()
        };
        assert!(guard(&labelled, &p, 4242).is_ok());
        let host = Target {
            in_pod: false,
            ..ok.clone()
        };
        assert!(
            guard(
                &host,
                &Policy {
                    allow_host_processes: true,
                    ..p.clone()
                },
                4242
            )
            .is_ok()
        );
        let allow = Policy {
            allow_namespaces: vec!["prod".into()],
            ..p.clone()
        };
        assert!(guard(&ok, &allow, 4242).is_err());
        assert!(
            guard(
                &Target {
                    namespace: None,
                    ..ok.clone()
                },
                &allow,
                4242
            )
            .is_err()
        );
    }

    #[test]
    fn never_the_same_process_or_pod_twice_within_the_backoff() {
        let mut e = engine(Mode::On);
        let t = pod_target(10);
        e.step(std::slice::from_ref(&t), 0);
        e.step(&[], SECOND); // cleared: backoff starts
        let d = e.step(std::slice::from_ref(&t), 2 * SECOND);
        assert_eq!(actions(&d), [(Action::Sigchld, Outcome::Refused)]);
        assert!(d[0].reason.contains("backoff"));
        // Another process of the same pod.
        let sibling = Target {
            pid: 11,
            start_ticks: 5,
            ..t.clone()
        };
        let d = e.step(&[sibling], 3 * SECOND);
        assert!(d[0].reason.contains("backoff"), "{d:?}");
        // After the backoff, again.
        let d = e.step(&[t], 602 * SECOND);
        assert_eq!(actions(&d), [(Action::Sigchld, Outcome::Done)]);
    }

    #[test]
    fn rate_limits_per_pod_and_node() {
        let p = Policy {
            backoff_seconds: 0.0,
            max_actions_per_pod_per_hour: 1,
            max_actions_per_node_per_hour: 2,
            ..policy()
        };
        let mut e = Engine::new(p, Mode::On, 4242);
        let a = pod_target(10);
        e.step(std::slice::from_ref(&a), 0);
        e.step(&[], SECOND);
        let d = e.step(std::slice::from_ref(&a), 2 * SECOND);
        assert!(
            d[0].reason.contains("max_actions_per_pod_per_hour"),
            "{d:?}"
        );
        let (b, c) = (pod_target(20), pod_target(30));
        let d = e.step(&[b.clone(), c.clone()], 3 * SECOND);
        assert_eq!(
            actions(&d),
            [
                (Action::Sigchld, Outcome::Done),
                (Action::Sigchld, Outcome::Refused)
            ]
        );
        assert!(d[1].reason.contains("max_actions_per_node_per_hour"));
        // An hour later the window has moved on.
        let d = e.step(&[c], HOUR + 4 * SECOND);
        assert!(
            d.iter()
                .any(|d| d.result == Outcome::Done && d.action == Action::Sigchld),
            "{d:?}"
        );
    }

    #[test]
    fn thresholds_gate_action() {
        let mut e = engine(Mode::On);
        let few = Target {
            zombies: 4,
            ..pod_target(10)
        };
        assert!(e.step(&[few], 0).is_empty());
    }

    #[test]
    fn a_reused_pid_is_never_signalled() {
        let me = std::process::id();
        let err = signal_exact(Path::new("/proc"), me, 1, 0).unwrap_err();
        assert!(err.contains("another process"), "{err}");
        let start = ::procfs::process::Process::myself()
            .unwrap()
            .stat()
            .unwrap()
            .starttime;
        signal_exact(Path::new("/proc"), me, start, 0).unwrap();
    }
}
