//! What the outside sees of a zombie: the `/zombies` JSON object and the labels of its
//! metrics. Shared by the HTTP API, `list` and the metrics collector.

use std::{path::Path, sync::Arc};

use serde::{Deserialize, Serialize};

use rustc_hash::FxHashMap;

use crate::{
    attribution::{self, Attribution, names::NameCache},
    cgroups::CgroupResolver,
    clock::WallClock,
    diagnosis::{self, Cause, Diagnosis, Reaper},
    tracker::{Ns, OriginInfo, OriginKind, ProcKey, Source, Table, Zombie},
    wait_status::WaitStatus,
};

/// One object of the `/zombies` array. Field names are a public contract: add, never rename.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ZombieView {
    pub pid: u32,
    pub ppid: u32,
    /// The parent's start time in clock ticks since boot (with `ppid`, its identity:
    /// remediation acts on this process only, never on a later one with the same pid).
    #[serde(default)]
    pub parent_start_ticks: u64,
    pub comm: String,
    pub parent_comm: String,
    /// Exit code when it exited normally, else null.
    pub exit_code: Option<u8>,
    /// The signal that killed it, else null.
    pub signal: Option<u8>,
    #[serde(default)]
    pub core_dumped: bool,
    /// RFC 3339, UTC.
    pub exited_at: String,
    /// True when the zombie was found in /proc (at start or on a resync), not seen exiting:
    /// the exit time is then estimated.
    #[serde(default)]
    pub exited_at_estimated: bool,
    pub age_seconds: f64,
    pub cgroup_id: u64,
    pub cgroup_path: Option<String>,
    /// The process's start time in clock ticks since boot (with `pid`, its identity).
    #[serde(default)]
    pub start_ticks: u64,
    /// Its parent at exit has died; it is being handed to a subreaper or init.
    #[serde(default)]
    pub parent_exited: bool,
    #[serde(default)]
    pub reparented: u32,
    /// `pod`, `host` or `unknown` (a cgroup layout not recognised).
    #[serde(default)]
    pub owner: String,
    pub pod_uid: Option<String>,
    pub container_id: Option<String>,
    /// containerd, cri-o, docker, ... as the cgroup path says.
    pub runtime: Option<String>,
    /// guaranteed, burstable or besteffort.
    pub qos: Option<String>,
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub container: Option<String>,
    /// The parent when it exited (`ppid` is the parent now, after any reparenting).
    #[serde(default)]
    pub parent_at_exit: Option<ParentAtExit>,
    /// Why it exists: parent_not_waiting, pid1_not_init, shell_pid1, parent_stopped, runtime,
    /// node_agent, sandbox_not_reaping, unknown.
    #[serde(default)]
    pub cause: Option<Cause>,
    /// Who should reap it now (its current parent) and what that process is.
    #[serde(default)]
    pub reaper: Option<Reaper>,
    /// What to change.
    #[serde(default)]
    pub remedy: Option<String>,
    /// Where its lineage starts: its container's init, an exec session, the host.
    #[serde(default)]
    pub origin: Option<OriginView>,
}

/// A zombie's provenance in `/zombies`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct OriginView {
    /// init, exec, host or unknown.
    pub kind: String,
    /// The process that started the lineage (for init and exec), as the host sees it.
    pub pid: Option<u32>,
    pub start_ticks: Option<u64>,
    pub comm: Option<String>,
    /// Its command line as it was run, redacted unless `--show-cmdlines` (see
    /// [`shown_cmdline`]).
    pub cmdline: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ParentAtExit {
    pub pid: u32,
    pub comm: String,
}

pub use crate::redact::REDACTED;

/// A command line as the API shows it (see [`crate::redact::command_line`]).
pub fn shown_cmdline(argv: &[String], show: bool) -> String {
    crate::redact::command_line(argv, show)
}

/// Maps zombies to their cgroup, container and pod.
pub struct Attributor {
    proc_root: std::path::PathBuf,
    /// Views made through this attributor show full command lines (see [`shown_cmdline`]).
    /// It lives here because every reader of `/zombies` passes an attributor.
    show_cmdlines: bool,
    cgroups: CgroupResolver,
    names: Option<Arc<NameCache>>,
    names_generation: u64,
    by_path: FxHashMap<Arc<str>, Arc<Attribution>>,
    unknown: Arc<Attribution>,
}

/// Bound on cached attributions (one per cgroup with zombies).
const ATTRIBUTION_CACHE_LIMIT: usize = 16_384;

impl Attributor {
    pub fn new(proc_root: &Path, cgroup_root: &Path, names: Option<Arc<NameCache>>) -> Self {
        Self {
            proc_root: proc_root.to_path_buf(),
            show_cmdlines: false,
            cgroups: CgroupResolver::new(proc_root, cgroup_root),
            names,
            names_generation: 0,
            by_path: FxHashMap::default(),
            unknown: Arc::new(Attribution {
                owner: attribution::Owner::Unknown.as_str(),
                ..Attribution::default()
            }),
        }
    }

    pub fn proc_root(&self) -> &Path {
        &self.proc_root
    }

    /// Show command lines in full (`--show-cmdlines`); redacted by default.
    pub fn set_show_cmdlines(&mut self, show: bool) {
        self.show_cmdlines = show;
    }

    pub fn show_cmdlines(&self) -> bool {
        self.show_cmdlines
    }

    /// The zombie's cgroup path (if readable) and who it belongs to.
    pub fn attribution(&mut self, z: &Zombie) -> (Option<Arc<str>>, Arc<Attribution>) {
        let Some(path) = self.cgroups.path(z.key, z.cgroup_id) else {
            return (None, self.unknown.clone());
        };
        let a = self.for_path(&path);
        (Some(path), a)
    }

    /// Who a cgroup path belongs to (cached).
    pub fn for_path(&mut self, path: &str) -> Arc<Attribution> {
        // New names from the runtime invalidate what was cached without them.
        if let Some(g) = self.names.as_ref().map(|n| n.generation())
            && g != self.names_generation
        {
            self.names_generation = g;
            self.by_path.clear();
        }
        if let Some(a) = self.by_path.get(path) {
            return a.clone();
        }
        if self.by_path.len() >= ATTRIBUTION_CACHE_LIMIT {
            self.by_path.clear();
        }
        let a = attribution::attribute_path(path, self.names.as_deref());
        self.by_path.insert(path.into(), a.clone());
        a
    }

    /// The generation of the runtime's names (0 without a runtime): labels made under an
    /// older one may lack names the runtime has since reported.
    pub fn names_generation(&self) -> u64 {
        self.names.as_ref().map_or(0, |n| n.generation())
    }

    pub fn cgroups(&self) -> &CgroupResolver {
        &self.cgroups
    }

    /// Forgets the processes not attributed since the last call (see
    /// [`CgroupResolver::forget_unused`]).
    pub fn forget_unused(&mut self) {
        self.cgroups.forget_unused();
    }

    /// `namespace`, `pod`, `container` label values (see [`Attribution::labels`]).
    pub fn labels(&mut self, z: &Zombie) -> [String; 3] {
        self.attribution(z).1.labels()
    }
}

pub fn view(
    z: &Zombie,
    attributor: &mut Attributor,
    diagnosis: Option<Diagnosis>,
    origin: Option<OriginView>,
    now: Ns,
    wall: &WallClock,
) -> ZombieView {
    let (cgroup_path, a) = attributor.attribution(z);
    view_of(
        z,
        cgroup_path.as_deref(),
        &a,
        diagnosis.as_ref(),
        origin,
        now,
        wall,
    )
}

/// A zombie's view from its attribution and diagnosis, already made.
pub fn view_of(
    z: &Zombie,
    cgroup_path: Option<&str>,
    a: &Attribution,
    diagnosis: Option<&Diagnosis>,
    origin: Option<OriginView>,
    now: Ns,
    wall: &WallClock,
) -> ZombieView {
    let status = WaitStatus::decode(z.wait_status);
    ZombieView {
        pid: z.key.pid,
        ppid: z.ppid,
        parent_start_ticks: z.parent_start_ticks,
        comm: z.comm.as_str().into_owned(),
        parent_comm: z.parent_comm.as_str().into_owned(),
        exit_code: status.exit_code,
        signal: status.signal,
        core_dumped: status.core_dumped,
        exited_at: wall.rfc3339(z.exited_at),
        exited_at_estimated: z.source == Source::Scan,
        age_seconds: (z.age_ns(now) as f64 / 1e6).round() / 1e3,
        cgroup_id: z.cgroup_id,
        cgroup_path: cgroup_path.map(|p| p.to_string()),
        start_ticks: z.key.start_ticks,
        parent_exited: z.parent_gone,
        reparented: z.reparented,
        owner: a.owner.to_string(),
        pod_uid: a.pod_uid.clone(),
        container_id: a.container_id.clone(),
        runtime: a.runtime.clone(),
        qos: a.qos.map(str::to_string),
        namespace: a.namespace.clone(),
        pod: a.pod.clone(),
        container: a.container.clone(),
        parent_at_exit: Some(ParentAtExit {
            pid: z.exit_ppid,
            comm: z.exit_parent_comm.as_str().into_owned(),
        }),
        cause: diagnosis.map(|d| d.cause),
        reaper: diagnosis.and_then(|d| d.reaper.clone()),
        remedy: diagnosis.map(|d| d.remedy.clone()),
        origin,
    }
}

/// Diagnoses zombies, reading each distinct parent from /proc once.
pub struct Diagnoser<'a> {
    proc_root: &'a Path,
    /// Parents seen calling wait().
    waited: &'a rustc_hash::FxHashSet<u32>,
    /// What the zombies' origins ran as, as the kernel reported it.
    origins: &'a FxHashMap<ProcKey, OriginInfo>,
    show_cmdlines: bool,
    cache: FxHashMap<u32, Diagnosis>,
    /// What each namespace-init reaper's cgroup path says (read only for those).
    reaper_cgroups: FxHashMap<u32, Option<attribution::CgroupInfo>>,
    /// The init the `zombie-init` RuntimeClass injects, when this node has it installed.
    injected_init: Option<crate::prevention::FileId>,
}

impl<'a> Diagnoser<'a> {
    pub fn new(proc_root: &'a Path, table: &'a Table) -> Self {
        Self::with_facts(proc_root, &table.waited, &table.origins)
    }

    /// From the parents seen waiting and what origins ran as (what a table copy carries).
    pub fn with_facts(
        proc_root: &'a Path,
        waited: &'a rustc_hash::FxHashSet<u32>,
        origins: &'a FxHashMap<ProcKey, OriginInfo>,
    ) -> Self {
        Self {
            proc_root,
            waited,
            origins,
            show_cmdlines: false,
            cache: FxHashMap::default(),
            reaper_cgroups: FxHashMap::default(),
            injected_init: crate::prevention::injected_init(proc_root),
        }
    }

    /// The injected init as already looked up (see [`crate::prevention::injected_init`]),
    /// for a caller that diagnoses often and looks it up less often.
    pub fn with_injected_init(mut self, init: Option<crate::prevention::FileId>) -> Self {
        self.injected_init = init;
        self
    }

    /// Reapers' command lines in full rather than redacted.
    pub fn show_cmdlines(mut self, show: bool) -> Self {
        self.show_cmdlines = show;
        self
    }

    pub fn diagnose(&mut self, z: &Zombie) -> Diagnosis {
        let mut d = self.diagnose_reaper(z);
        if z.origin.kind == OriginKind::Exec
            && let Some(key) = z.origin.key
        {
            let info = self.origin_info(key);
            let command = info.as_ref().map(|i| self.command(i)).unwrap_or_default();
            d.remedy = diagnosis::exec_remedy(&command, key.pid, &d.remedy);
        }
        d
    }

    /// A command line as shown (redacted unless `--show-cmdlines`), else the comm.
    fn command(&self, info: &OriginInfo) -> String {
        if info.argv.is_empty() {
            info.comm.as_str().into_owned()
        } else {
            shown_cmdline(&info.argv, self.show_cmdlines)
        }
    }

    /// What an origin ran as: as the kernel reported it at its first exec, else from /proc
    /// while the same process (pid and start time) lives.
    fn origin_info(&self, key: ProcKey) -> Option<OriginInfo> {
        if let Some(i) = self.origins.get(&key) {
            return Some(i.clone());
        }
        let p = ::procfs::process::Process::new_with_root(self.proc_root.join(key.pid.to_string()))
            .ok()?;
        let stat = p.stat().ok()?;
        if stat.starttime != key.start_ticks {
            return None;
        }
        Some(OriginInfo {
            comm: crate::tracker::Comm::new(&stat.comm),
            argv: p.cmdline().unwrap_or_default(),
        })
    }

    /// The zombie's origin as `/zombies` shows it.
    pub fn origin(&self, z: &Zombie) -> OriginView {
        let info = z.origin.key.and_then(|k| self.origin_info(k));
        OriginView {
            kind: z.origin.kind.as_str().to_string(),
            pid: z.origin.key.map(|k| k.pid),
            start_ticks: z.origin.key.map(|k| k.start_ticks),
            comm: info.as_ref().map(|i| i.comm.as_str().into_owned()),
            cmdline: info
                .as_ref()
                .filter(|i| !i.argv.is_empty())
                .map(|i| shown_cmdline(&i.argv, self.show_cmdlines)),
        }
    }

    /// The diagnosis of the zombie's reaper, once per reaper.
    fn diagnose_reaper(&mut self, z: &Zombie) -> Diagnosis {
        if let Some(d) = self.cache.get(&z.ppid) {
            return d.clone();
        }
        let facts = crate::diagnosis::read_reaper_facts(self.proc_root, z.ppid);
        let waited = self.waited.contains(&z.ppid);
        let mut d = diagnosis::diagnose(facts.as_ref(), waited, true);
        if let (Some(r), Some(f)) = (d.reaper.as_mut(), facts.as_ref()) {
            r.cmdline = shown_cmdline(&f.cmdline, self.show_cmdlines);
        }
        if let Some(init) = self.injected_init
            && let Some(pid) =
                crate::prevention::injected_namespace_init(self.proc_root, z.ppid, init)
        {
            d = diagnosis::under_injected_init(d, pid);
        }
        self.cache.insert(z.ppid, d.clone());
        d
    }

    /// [`Self::diagnose`], then [`diagnosis::in_shared_pod_namespace`] with the zombie's
    /// attribution: a namespace init in another container of the zombie's pod is the pod's
    /// sandbox.
    pub fn diagnose_attributed(&mut self, z: &Zombie, a: &Attribution) -> Diagnosis {
        let d = self.diagnose(z);
        if !d.reaper.as_ref().is_some_and(|r| r.namespace_init) || a.container_id.is_none() {
            return d;
        }
        let proc_root = self.proc_root;
        let reaper = self.reaper_cgroups.entry(z.ppid).or_insert_with(|| {
            crate::cgroups::path_of_pid(proc_root, z.ppid, crate::cgroups::Prefer::V2)
                .map(|p| attribution::cgroup_path::parse(&p))
        });
        diagnosis::in_shared_pod_namespace(
            d,
            (a.pod_uid.as_deref(), a.container_id.as_deref()),
            reaper.as_ref(),
        )
    }
}

/// Every zombie of a copy of the table, oldest first, attributed and diagnosed.
pub fn snapshot(
    table: &Table,
    attributor: &mut Attributor,
    now: Ns,
    wall: &WallClock,
) -> Vec<ZombieView> {
    let mut zombies: Vec<&Zombie> = table.zombies.iter().collect();
    zombies.sort_by_key(|z| (z.exited_at, z.key));
    let proc_root = attributor.proc_root().to_path_buf();
    let mut diagnoser = Diagnoser::new(&proc_root, table).show_cmdlines(attributor.show_cmdlines());
    zombies
        .into_iter()
        .map(|z| {
            let a = attributor.attribution(z).1;
            let d = diagnoser.diagnose_attributed(z, &a);
            let origin = diagnoser.origin(z);
            view(z, attributor, Some(d), Some(origin), now, wall)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn command_lines_keep_only_the_program_unless_shown() {
        let secret = argv(&["/usr/bin/app", "--token=s3cr3t", "serve"]);
        assert_eq!(shown_cmdline(&secret, false), "/usr/bin/app [redacted]");
        assert_eq!(
            shown_cmdline(&secret, true),
            "/usr/bin/app --token=s3cr3t serve"
        );
        assert_eq!(shown_cmdline(&argv(&["sleep"]), false), "sleep");
        assert_eq!(shown_cmdline(&[], false), "");
        assert_eq!(shown_cmdline(&[], true), "");
    }

    /// nginx, postgres and setproctitle keep their title, arguments included, in argv[0].
    #[test]
    fn a_title_rewritten_into_argv0_is_redacted() {
        let title = argv(&["myapp --db-password=s3cr3t --serve"]);
        assert_eq!(shown_cmdline(&title, false), "myapp [redacted]");
        assert_eq!(
            shown_cmdline(&title, true),
            "myapp --db-password=s3cr3t --serve"
        );
    }

    #[test]
    fn attributors_redact_by_default() {
        let mut a = Attributor::new(Path::new("/proc"), Path::new("/sys/fs/cgroup"), None);
        assert!(!a.show_cmdlines());
        a.set_show_cmdlines(true);
        assert!(a.show_cmdlines());
    }
}
