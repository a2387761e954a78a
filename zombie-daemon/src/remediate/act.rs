//! Carrying decisions out: signals through a pidfd, the CRI `StopContainer` call, the log
//! line and the history kept for `/remediations`.

use std::{
    collections::{HashMap, VecDeque},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use rustix::process::{Pid, PidfdFlags, Signal, pidfd_open, pidfd_send_signal};

use super::{
    Action, Decision, Engine, Outcome, Target, guard,
    target::{ZombieFacts, confirm_zombies, read_target, targets},
};
use crate::{
    attribution::{cri::CriClient, names::NameCache},
    diagnosis::Cause,
    tracker::Ns,
};

/// Decisions kept for `/remediations`.
pub const HISTORY_LIMIT: usize = 1000;

/// Sends `sig` to exactly the process `(pid, start_ticks)`: a pidfd pins the process, and
/// /proc, read after the pidfd is open, proves it is the same one (a reused pid is never
/// signalled).
pub fn signal_exact(
    proc_root: &Path,
    pid: u32,
    start_ticks: u64,
    sig: Signal,
) -> Result<(), String> {
    let raw = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| format!("pidfd_open: {pid} is not a process id"))?;
    let fd = pidfd_open(raw, PidfdFlags::empty())
        .map_err(|e| format!("pidfd_open: {}", std::io::Error::from(e)))?;
    let same = ::procfs::process::Process::new_with_root(proc_root.join(pid.to_string()))
        .and_then(|p| p.stat())
        .is_ok_and(|s| s.starttime == start_ticks);
    if !same {
        return Err("the pid now names another process (or it is gone); not signalled".into());
    }
    pidfd_send_signal(&fd, sig)
        .map_err(|e| format!("pidfd_send_signal: {}", std::io::Error::from(e)))
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
                confirmed_zombies = d.confirmed_zombies,
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
    /// The last [`HISTORY_LIMIT`] decisions, oldest first.
    history: VecDeque<Decision>,
}

/// How long the runtime gets to say whether a container is what the cgroup path claims.
const CRI_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// The runtime's word on a container against what the target's cgroup path says: it exists
/// and runs, belongs to the pod UID the path names, and the target sits in its cgroup (the
/// container's init's cgroup, or below it). A tenant with a delegated cgroup subtree can
/// write any pod UID and container ID into its own path, but cannot move into the real
/// container's cgroup.
pub fn container_matches(
    running: bool,
    runtime_pod_uid: Option<&str>,
    container_cgroup: Option<&str>,
    target: &Target,
) -> Result<(), String> {
    if !running {
        return Err("the container runtime does not report this container running".into());
    }
    if runtime_pod_uid.is_none() || runtime_pod_uid != target.pod_uid.as_deref() {
        return Err(format!(
            "the container runtime puts this container in pod {}, not {} as its cgroup path \
             claims",
            runtime_pod_uid.unwrap_or("(none)"),
            target.pod_uid.as_deref().unwrap_or("(none)")
        ));
    }
    let (Some(theirs), Some(ours)) = (container_cgroup, target.cgroup_path.as_deref()) else {
        return Err("the container's cgroup is unknown; cannot tell the process is in it".into());
    };
    let inside = ours == theirs
        || ours
            .strip_prefix(theirs)
            .is_some_and(|rest| rest.starts_with('/'));
    if !inside {
        return Err(format!(
            "the process's cgroup {ours} is not the container's ({theirs}): a forged path"
        ));
    }
    Ok(())
}

impl Remediator {
    pub fn new(
        engine: Engine,
        proc_root: &Path,
        names: Option<Arc<NameCache>>,
        cri: Option<CriClient>,
    ) -> Self {
        Self {
            engine,
            proc_root: proc_root.to_path_buf(),
            names,
            cri,
            history: VecDeque::new(),
        }
    }

    /// The recent decisions, oldest first (what `/remediations` shows).
    pub fn history(&self) -> &VecDeque<Decision> {
        &self.history
    }

    /// Builds the targets from a snapshot's zombies (blocking: reads /proc).
    pub fn targets(&self, zombies: impl IntoIterator<Item = ZombieFacts>) -> Vec<Target> {
        targets(
            zombies,
            &self.engine.policy,
            &self.proc_root,
            self.names.as_deref(),
        )
    }

    /// Decides, carries out and records. Returns the decisions for metrics.
    pub async fn run_once(&mut self, targets: &[Target], now: Ns, wall: &str) -> Vec<Decision> {
        let mut decisions = self.engine.step(targets, now);
        let counted: HashMap<(u32, u64), &[(u32, u64)]> = targets
            .iter()
            .map(|t| ((t.pid, t.start_ticks), t.zombie_keys.as_slice()))
            .collect();
        for d in &mut decisions {
            d.time = wall.to_string();
            let keys = counted
                .get(&(d.pid, d.start_ticks))
                .copied()
                .unwrap_or_default();
            if d.result == Outcome::Done
                && d.action != Action::None
                && let Err(e) = self.execute(d, keys).await
            {
                d.result = Outcome::Failed;
                d.reason = format!("{}; {e}", d.reason);
            }
            log(d);
        }
        for d in &decisions {
            if self.history.len() >= HISTORY_LIMIT {
                self.history.pop_front();
            }
            self.history.push_back(d.clone());
        }
        decisions
    }

    /// Carries out `d` after checking again, on what /proc and the runtime say now, that
    /// the target is the process decided on (pid and start time), that the guards hold, that
    /// its zombies `keys` are still its zombies, and for a pod's process that it is in the
    /// container decided on and the runtime agrees.
    async fn execute(&mut self, d: &mut Decision, keys: &[(u32, u64)]) -> Result<(), String> {
        let now = read_target(&self.proc_root, d.pid, self.names.as_deref())
            .ok_or("the process is gone")?;
        if now.start_ticks != d.start_ticks {
            return Err("the pid now names another process; not signalled".into());
        }
        guard(&now, &self.engine.policy, std::process::id())?;
        let confirmed = confirm_zombies(&self.proc_root, d.pid, keys).len();
        d.confirmed_zombies = Some(confirmed);
        let needed = match d.action {
            Action::Sigchld => self.engine.policy.min_zombies.max(1),
            _ => 1,
        };
        if confirmed < needed {
            return Err(format!(
                "only {confirmed} of its {} counted zombies are still its zombies in /proc \
                 (state Z, same start time, this parent); not acted on",
                keys.len()
            ));
        }
        d.reason = format!(
            "{}; {confirmed} zombies confirmed in /proc just before (state Z, same start time, \
             this parent)",
            d.reason
        );
        if now.in_pod {
            if now.container_id != d.container_id || now.pod_uid != d.pod_uid {
                return Err("the process is no longer in the container decided on".into());
            }
            if self.engine.policy.verify_with_runtime {
                self.verify_container(&now).await?;
            }
        }
        let sig = match d.action {
            Action::Sigchld => Signal::CHILD,
            Action::Sigterm => Signal::TERM,
            Action::Sigkill => Signal::KILL,
            Action::StopContainer => return self.stop_container(d).await,
            Action::None => return Ok(()),
        };
        signal_exact(&self.proc_root, d.pid, d.start_ticks, sig)
    }

    /// Asks the runtime about the target's container (see [`container_matches`]).
    async fn verify_container(&self, t: &Target) -> Result<(), String> {
        let id = t
            .container_id
            .as_deref()
            .ok_or("no container id in the process's cgroup path; the runtime cannot vouch")?;
        let cri = self.cri.as_ref().ok_or(
            "no container runtime connection to confirm the container (set --runtime-endpoint, \
             or verify_with_runtime: false in the policy)",
        )?;
        let req = k8s_cri::v1::ContainerStatusRequest {
            container_id: id.to_string(),
            verbose: true,
        };
        let mut service = cri.service();
        let status =
            match tokio::time::timeout(CRI_CHECK_TIMEOUT, service.container_status(req)).await {
                Ok(Ok(r)) => r.into_inner(),
                Ok(Err(status)) => {
                    return Err(format!(
                        "the container runtime does not know container {id}: {}",
                        status.message()
                    ));
                }
                Err(_) => return Err("the container runtime did not answer in time".into()),
            };
        let s = status
            .status
            .ok_or("the container runtime sent no status")?;
        let running = s.state == k8s_cri::v1::ContainerState::ContainerRunning as i32;
        let uid = s.labels.get("io.kubernetes.pod.uid").map(String::as_str);
        let init = status
            .info
            .get("info")
            .and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok())
            .and_then(|v| v.get("pid").and_then(serde_json::Value::as_u64))
            .and_then(|p| u32::try_from(p).ok());
        let cgroup = init.and_then(|pid| {
            crate::cgroups::path_of_pid(&self.proc_root, pid, crate::cgroups::Prefer::V1)
        });
        container_matches(running, uid, cgroup.as_deref(), t)
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

    #[test]
    fn the_runtime_must_vouch_for_the_pod_and_the_cgroup() {
        let t = Target {
            in_pod: true,
            pod_uid: Some("u1".into()),
            container_id: Some("c1".into()),
            cgroup_path: Some("/kubepods/besteffort/podu1/c1".into()),
            ..Target::default()
        };
        let cg = Some("/kubepods/besteffort/podu1/c1");
        assert!(container_matches(true, Some("u1"), cg, &t).is_ok());
        let below = Target {
            cgroup_path: Some("/kubepods/besteffort/podu1/c1/container".into()),
            ..t.clone()
        };
        assert!(container_matches(true, Some("u1"), cg, &below).is_ok());
        // A forged path in a delegated subtree names the real pod and container.
        let forged = Target {
            cgroup_path: Some(
                "/user.slice/user-1000.slice/user@1000.service/kubepods/besteffort/podu1/c1".into(),
            ),
            ..t.clone()
        };
        let e = container_matches(true, Some("u1"), cg, &forged).unwrap_err();
        assert!(e.contains("forged"), "{e}");
        let sibling = Target {
            cgroup_path: Some("/kubepods/besteffort/podu1/c10".into()),
            ..t.clone()
        };
        assert!(container_matches(true, Some("u1"), cg, &sibling).is_err());
        assert!(container_matches(true, Some("u2"), cg, &t).is_err());
        assert!(container_matches(true, None, cg, &t).is_err());
        assert!(container_matches(false, Some("u1"), cg, &t).is_err());
        assert!(container_matches(true, Some("u1"), None, &t).is_err());
    }

    #[test]
    fn a_reused_pid_is_never_signalled() {
        let me = std::process::id();
        let err = signal_exact(Path::new("/proc"), me, 1, Signal::CHILD).unwrap_err();
        assert!(err.contains("another process"), "{err}");
        let start = ::procfs::process::Process::myself()
            .unwrap()
            .stat()
            .unwrap()
            .starttime;
        // SIGCHLD is ignored by default: reaching ourselves proves the signal went out.
        signal_exact(Path::new("/proc"), me, start, Signal::CHILD).unwrap();
    }
}
