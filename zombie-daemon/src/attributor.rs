//! The attributor: a zombie's cgroup path and who it belongs to, with the caches that make
//! it one lookup per cgroup (every zombie of a container shares one).

use std::{path::Path, sync::Arc};

use rustc_hash::FxHashMap;

use crate::{
    attribution::{self, Attribution, Owner, names::NameCache},
    cgroups::CgroupResolver,
    tracker::Zombie,
};

/// Maps zombies to their cgroup, container and pod.
pub struct Attributor {
    proc_root: std::path::PathBuf,
    /// Views made through this attributor show full command lines (see [`crate::redact::command_line`]).
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
                owner: Owner::Unknown.as_str(),
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
    pub fn labels(&mut self, z: &Zombie) -> attribution::Labels {
        self.attribution(z).1.labels()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributors_redact_by_default() {
        let mut a = Attributor::new(Path::new("/proc"), Path::new("/sys/fs/cgroup"), None);
        assert!(!a.show_cmdlines());
        a.set_show_cmdlines(true);
        assert!(a.show_cmdlines());
    }
}
