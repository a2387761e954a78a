//! `zombie-daemon list`: the zombies of a running daemon, or of /proc now with `--once`.

use std::path::Path;

use crate::{
    attributor::Attributor,
    cli::ListArgs,
    clock::{self, TickConverter, WallClock},
    commands::client::fetch_json,
    daemon::snapshot_builder::{Builder, Parts},
    proc_scan::ProcFs,
    snapshot::Snapshot,
    text_table::{self, Filter},
    tracker::{Event, Scan, Tracker},
    view::ZombieView,
};

pub async fn run(args: ListArgs) -> anyhow::Result<()> {
    let zombies = if args.source.once {
        let paths = &args.source.paths;
        scan_once(
            &paths.proc_root,
            &paths.cgroup_root,
            args.source.show_cmdlines,
        )?
    } else {
        fetch(&args.source.endpoint).await?
    };
    let filter = Filter {
        namespace: args.namespace,
        pod: args.pod,
        container: args.container,
    };
    let zombies: Vec<ZombieView> = zombies.into_iter().filter(|z| filter.matches(z)).collect();
    if args.source.json {
        println!("{}", serde_json::to_string_pretty(&zombies)?);
    } else {
        print!("{}", text_table::table(&zombies));
    }
    Ok(())
}

/// Standalone: the zombies in /proc right now, attributed from the cgroup tree at
/// `cgroup_root` (no runtime names); full command lines with `show_cmdlines`. Built by the
/// daemon's own snapshot builder, so `--once` lists what a daemon would.
pub fn scan_once(
    proc_root: &Path,
    cgroup_root: &Path,
    show_cmdlines: bool,
) -> anyhow::Result<Vec<ZombieView>> {
    let now = clock::boottime_now();
    let procfs = ProcFs::new(proc_root, TickConverter::from_system());
    let v2_root = crate::cgroups::detect(cgroup_root).1;
    let entries = procfs.zombies(now, |pid| {
        crate::cgroups::id_of_pid(proc_root, v2_root.as_deref(), pid)
    })?;
    let mut tracker = Tracker::default();
    tracker.apply(&Event::Scanned {
        started: now,
        scan: std::sync::Arc::new(Scan {
            zombies: entries,
            exiting: Vec::new(),
        }),
    });
    let mut attributor = Attributor::new(proc_root, cgroup_root, None);
    attributor.set_show_cmdlines(show_cmdlines);
    // Every zombie in detail: a terminal asked for this one list.
    let mut builder = Builder::new(attributor, proc_root, None).with_max_listed(usize::MAX);
    let parts = Parts {
        refresh: true,
        ..Parts::default()
    };
    let changes = tracker.take_changes(usize::MAX);
    let snapshot = builder.build(
        &Snapshot::default(),
        Some(&changes),
        parts,
        now,
        &WallClock::now(),
    );
    Ok(snapshot.zombies.aged(now))
}

/// GET `<endpoint>/zombies` from a running daemon.
pub async fn fetch(endpoint: &str) -> anyhow::Result<Vec<ZombieView>> {
    fetch_json(endpoint, crate::http::ZOMBIES_PATH, "list").await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_daemon_is_a_clear_error() {
        let err = fetch("http://127.0.0.1:1").await.unwrap_err();
        assert!(format!("{err:#}").contains("--once"), "{err:#}");
        let err = fetch("ftp://x").await.unwrap_err();
        assert!(err.to_string().contains("http://"), "{err}");
    }
}
