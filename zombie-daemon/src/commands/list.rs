//! `zombie-daemon list`: the zombies of a running daemon, or of /proc now with `--once`.

use crate::{
    cli::ListArgs,
    commands::client::fetch_json,
    list::{self, Filter},
    view::ZombieView,
};

pub async fn run(args: ListArgs) -> anyhow::Result<()> {
    let zombies = if args.source.once {
        let paths = &args.source.paths;
        list::scan_once(
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
        print!("{}", list::table(&zombies));
    }
    Ok(())
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
