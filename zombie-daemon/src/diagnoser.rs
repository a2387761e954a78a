//! The diagnoser: judges the zombies of a snapshot build, reading each distinct parent
//! (and each exec session's origin) from /proc once; the judgement itself is
//! `zombie_core::diagnosis`.

use std::path::Path;

use rustc_hash::FxHashMap;

use crate::{
    attribution::{self, Attribution},
    diagnosis::{self, Diagnosis},
    tracker::{OriginInfo, OriginKind, ProcKey, Zombie},
    view::OriginView,
};

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
    /// From the parents seen waiting, what origins ran as (what a table copy carries) and
    /// the injected init as the caller looked it up (see
    /// [`crate::prevention::injected_init`]): a builder diagnoses at every build and looks
    /// it up only at a refresh, not with two failing `stat`s per build.
    pub fn with_facts(
        proc_root: &'a Path,
        waited: &'a rustc_hash::FxHashSet<u32>,
        origins: &'a FxHashMap<ProcKey, OriginInfo>,
        injected_init: Option<crate::prevention::FileId>,
    ) -> Self {
        Self {
            proc_root,
            waited,
            origins,
            show_cmdlines: false,
            cache: FxHashMap::default(),
            reaper_cgroups: FxHashMap::default(),
            injected_init,
        }
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
            crate::redact::command_line(&info.argv, self.show_cmdlines)
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
                .map(|i| crate::redact::command_line(&i.argv, self.show_cmdlines)),
        }
    }

    /// The diagnosis of the zombie's reaper, once per reaper.
    fn diagnose_reaper(&mut self, z: &Zombie) -> Diagnosis {
        if let Some(d) = self.cache.get(&z.ppid) {
            return d.clone();
        }
        let facts = diagnosis::read_reaper_facts(self.proc_root, z.ppid);
        let waited = self.waited.contains(&z.ppid);
        let mut d = diagnosis::diagnose(facts.as_ref(), waited, true);
        if let (Some(r), Some(f)) = (d.reaper.as_mut(), facts.as_ref()) {
            r.cmdline = crate::redact::command_line(&f.cmdline, self.show_cmdlines);
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
