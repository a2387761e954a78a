//! `zombie-daemon check`: exit 0 when the daemon can run here, 1 when a check fails.

use crate::{
    check::{self, Verdict},
    cli::CheckArgs,
};

pub fn run(args: CheckArgs) -> anyhow::Result<i32> {
    if args.print_requirements {
        println!("{}", serde_json::to_string_pretty(&check::requirements())?);
        return Ok(0);
    }
    let findings = check::run_checks(
        &args.paths.proc_root,
        &args.paths.cgroup_root,
        &args.paths.btf_path,
    );
    let failed = findings.iter().any(|f| f.verdict == Verdict::Fail);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&findings)?);
    } else {
        print!("{}", check::text(&findings));
    }
    Ok(if failed { 1 } else { 0 })
}
