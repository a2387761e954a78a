//! The decision engine: targets, the policy and what was already done in, [`Decision`]s
//! out. Pure: no /proc, no signals, the clock passed in.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::{
    Mode,
    policy::{Pid1Action, Policy},
};
use crate::{diagnosis::Cause, tracker::Ns};

const SECOND: Ns = 1_000_000_000;
const HOUR: Ns = 3600 * SECOND;

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
    /// File name of its executable (empty if unreadable). Shown, never trusted: a tenant
    /// names its own binaries.
    pub exe: String,
    /// Set by the kernel (PF_KTHREAD, a child of kthreadd).
    pub kernel_thread: bool,
    /// Which runtime process or node agent it is, told by its executable in the node's own
    /// mount namespace outside every pod (see `target::read_target`); never by its name.
    pub node_component: Option<String>,
    /// Its cgroup path as /proc shows it (the runtime is asked whether its container sits
    /// there before anything is done to a pod's process).
    pub cgroup_path: Option<String>,
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
    /// The zombies counted in `zombies` (pid, start time), each confirmed in /proc.
    pub zombie_keys: Vec<(u32, u64)>,
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
    /// The pod UID its cgroup path named when decided.
    #[serde(default)]
    pub pod_uid: Option<String>,
    pub pid: u32,
    pub start_ticks: u64,
    pub comm: String,
    pub cause: Option<Cause>,
    pub zombies: usize,
    /// How many of its counted zombies /proc showed just before the action was carried out
    /// (state Z, the same start time, this parent); null when nothing was carried out.
    #[serde(default)]
    pub confirmed_zombies: Option<usize>,
    pub action: Action,
    pub result: Outcome,
    pub reason: String,
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
    if let Some(c @ (Cause::Runtime | Cause::NodeAgent)) = t.cause {
        return Err(format!(
            "never a node component (cause {}): a runtime or node agent bug is fixed by \
             upgrading it, not by signals",
            c.as_str()
        ));
    }
    if t.cause == Some(Cause::SandboxNotReaping) {
        return Err(
            "never a pod's sandbox: stopping it stops the pod; fix the runtime's sandbox image"
                .into(),
        );
    }
    if let Some(c) = &t.node_component {
        return Err(format!(
            "never a node component ({c}): kubelet and the container runtime are protected"
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
    match ns {
        Some(ns) if policy.deny_namespaces.iter().any(|d| d == ns) => {
            return Err(format!("namespace {ns} is denied by the policy"));
        }
        // Without the runtime's names the pod may be in a denied namespace: unknown is no.
        None if !policy.deny_namespaces.is_empty() => {
            return Err(
                "the pod's namespace is unknown (no names from the container runtime yet), \
                 and the policy denies some namespaces"
                    .into(),
            );
        }
        _ => {}
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
            .any(|m| m.get(key).is_some_and(|v| v == "true"));
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
            pod_uid: t.pod_uid.clone(),
            pid: t.pid,
            start_ticks: t.start_ticks,
            comm: t.comm.clone(),
            cause: t.cause,
            zombies: t.zombies,
            confirmed_zombies: None,
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
        let present = self.forget_past(targets, now);
        self.escalate(&present, now, &mut out);
        self.start_new(targets, now, &mut out);
        out
    }

    /// Forgets actions outside the rate-limit window, ended backoffs and refusals of
    /// targets gone; returns the targets with zombies, by key.
    fn forget_past<'t>(
        &mut self,
        targets: &'t [Target],
        now: Ns,
    ) -> HashMap<(u32, u64), &'t Target> {
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
        present
    }

    /// Escalations under way: the next rung where its wait is over, an end where the
    /// zombies are gone or no rung is left.
    fn escalate(
        &mut self,
        present: &HashMap<(u32, u64), &Target>,
        now: Ns,
        out: &mut Vec<Decision>,
    ) {
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
    }

    /// New escalations: a SIGCHLD to each target with enough zombies that no guard, backoff
    /// or rate limit refuses.
    fn start_new(&mut self, targets: &[Target], now: Ns, out: &mut Vec<Decision>) {
        for t in targets {
            if t.zombies == 0
                || t.zombies < self.policy.min_zombies
                || self.episodes.contains_key(&t.key())
            {
                continue;
            }
            if let Err(reason) = guard(t, &self.policy, self.self_pid) {
                self.refuse(out, t, Action::Sigchld, reason);
                continue;
            }
            if self.process_backoff.contains_key(&t.key()) {
                self.refuse(
                    out,
                    t,
                    Action::Sigchld,
                    "backoff: this process was acted on recently".into(),
                );
                continue;
            }
            let pod = t.pod_key();
            if self.pod_backoff.contains_key(&pod) {
                self.refuse(
                    out,
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
                    out,
                    t,
                    Action::Sigchld,
                    "rate limit: max_actions_per_pod_per_hour reached".into(),
                );
                continue;
            }
            if self.node_actions.len() >= self.policy.max_actions_per_node_per_hour {
                self.refuse(
                    out,
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
                node_component: Some("kubelet".into()),
                ..ok.clone()
            },
            Target {
                node_component: Some("containerd-shim*".into()),
                ..ok.clone()
            },
            Target {
                in_pod: false,
                ..ok.clone()
            },
            Target {
                comm: "crun".into(),
                cause: Some(Cause::Runtime),
                ..ok.clone()
            },
            Target {
                comm: "node-problem-de".into(),
                cause: Some(Cause::NodeAgent),
                ..ok.clone()
            },
            Target {
                comm: "sleep".into(),
                cause: Some(Cause::SandboxNotReaping),
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
            pod_labels: [("zombie-daemon.io/remediate".to_string(), "true".to_string())].into(),
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

    /// Names are the tenant's: a pod process called kubelet, containerd-shim or tini, with
    /// any argv, is judged like any other (the node-component guard reads facts, see
    /// `target::read_target`).
    #[test]
    fn a_name_alone_protects_nothing() {
        let p = policy();
        for name in [
            "kubelet",
            "containerd-shim-runc-v2",
            "tini",
            "runc",
            "k3s",
            "",
        ] {
            let t = Target {
                comm: name.into(),
                exe: name.into(),
                ..pod_target(10)
            };
            assert!(guard(&t, &p, 4242).is_ok(), "{name}");
        }
    }

    /// `deny_namespaces` fails closed: without the runtime's names the namespace is unknown,
    /// and an unknown namespace may be a denied one.
    #[test]
    fn an_unknown_namespace_is_denied_while_some_namespace_is() {
        let unnamed = Target {
            namespace: None,
            pod: None,
            ..pod_target(10)
        };
        let e = guard(&unnamed, &policy(), 4242).unwrap_err();
        assert!(e.contains("namespace is unknown"), "{e}");
        let deny_none = Policy {
            deny_namespaces: Vec::new(),
            ..policy()
        };
        assert!(guard(&unnamed, &deny_none, 4242).is_ok());
    }

    /// Only the exact value `true` opts a pod in.
    #[test]
    fn only_true_opts_in() {
        let p = policy();
        for (value, ok) in [
            ("true", true),
            ("True", false),
            ("TRUE", false),
            ("yes", false),
            ("1", false),
            ("", false),
            ("false", false),
            (" true", false),
        ] {
            let t = Target {
                pod_annotations: [("zombie-daemon.io/remediate".to_string(), value.to_string())]
                    .into(),
                ..pod_target(10)
            };
            assert_eq!(guard(&t, &p, 4242).is_ok(), ok, "{value:?}");
            let labelled = Target {
                pod_annotations: BTreeMap::new(),
                pod_labels: [("zombie-daemon.io/remediate".to_string(), value.to_string())].into(),
                ..pod_target(10)
            };
            assert_eq!(guard(&labelled, &p, 4242).is_ok(), ok, "label {value:?}");
        }
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
}
