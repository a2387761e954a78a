//! Carrying decisions out: signals through a pidfd, the CRI `StopContainer` call, the log
//! line and the history kept for `/remediations`.

use std::{
    collections::VecDeque,
    path::{Path, PathBuf},
    sync::Arc,
};

use rustix::process::{Pid, PidfdFlags, Signal, pidfd_open, pidfd_send_signal};

use super::{
    engine::{Action, Decision, Engine, Outcome, Target, guard},
    target::{read_target, targets},
};
use crate::{
    attribution::{cri::CriClient, names::NameCache},
    diagnosis::Cause,
    tracker::Ns,
    view::ZombieView,
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
    pub fn targets(&self, views: impl IntoIterator<Item = ZombieView>) -> Vec<Target> {
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
        for d in &decisions {
            if self.history.len() >= HISTORY_LIMIT {
                self.history.pop_front();
            }
            self.history.push_back(d.clone());
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
            Action::Sigchld => Signal::CHILD,
            Action::Sigterm => Signal::TERM,
            Action::Sigkill => Signal::KILL,
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
