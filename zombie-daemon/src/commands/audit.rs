//! `zombie-daemon audit`: from a running daemon, or straight from the node with `--once`.

use crate::{
    audit::{self, ContainerAudit},
    cli::AuditArgs,
    commands::client::fetch_json,
};

pub async fn run(args: AuditArgs) -> anyhow::Result<()> {
    let audits: Vec<ContainerAudit> = if args.source.once {
        let root = crate::cgroups::pids_root(&args.source.paths.cgroup_root).ok_or_else(|| {
            anyhow::anyhow!(
                "no cgroup hierarchy with the pids controller under {} (--cgroup-root)",
                args.source.paths.cgroup_root.display()
            )
        })?;
        let mut audits = audit::audit(&args.source.paths.proc_root, &root);
        audit::redact(&mut audits, args.source.show_cmdlines);
        audits
    } else {
        fetch_json(&args.source.endpoint, crate::http::AUDIT_PATH, "audit").await?
    };
    if args.source.json {
        println!("{}", serde_json::to_string_pretty(&audits)?);
    } else {
        print!("{}", audit::table(&audits));
    }
    Ok(())
}
