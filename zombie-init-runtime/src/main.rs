//! `zombie-init-runtime`: an OCI runtime that starts a container under a static init that
//! reaps orphans (Debian's `tini-static`), then hands every call over to runc.
//!
//! containerd's runc shim runs it in runc's place (`BinaryName` of a runtime entry, the
//! handler of the `zombie-init` RuntimeClass). On `create` and `run` it rewrites the
//! bundle's `config.json` (see [`spec`]); every call, those included, then execs runc with
//! the same arguments, so `state`, `kill`, `delete`, `exec`, `pause`, `update`, ... are
//! runc's own. `zombie-init-runtime install` sets a node up (see [`install`]).

mod args;
mod install;
mod spec;
mod wrap;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

/// The node-side commands (runc has no `install`, so the two never meet).
#[derive(Parser)]
#[command(name = "zombie-init-runtime", version)]
struct Cli {
    #[command(subcommand)]
    command: Admin,
}

#[derive(Subcommand)]
enum Admin {
    /// Copy this wrapper and a static init to PREFIX/bin and add the `zombie-init` runtime
    /// to containerd's config (version 2: containerd 1.6/1.7; version 3: containerd 2.x).
    Install {
        #[arg(long, default_value = install::DEFAULT_PREFIX)]
        prefix: PathBuf,
        /// The static init to inject (Debian: `apt-get install tini`).
        #[arg(long, default_value = "/usr/bin/tini-static")]
        init: PathBuf,
        /// containerd's config (written from `containerd config default` when missing).
        #[arg(long, default_value = install::DEFAULT_CONFIG)]
        containerd_config: PathBuf,
        /// Restart containerd afterwards (`systemctl restart containerd`), so that it
        /// reads the new runtime; running containers are not affected.
        #[arg(long)]
        restart_containerd: bool,
    },
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().map(String::as_str) == Some("install") {
        let Admin::Install {
            prefix,
            init,
            containerd_config,
            restart_containerd,
        } = Cli::parse().command;
        return match install::install(&install::Install {
            prefix,
            init,
            config: containerd_config,
            restart: restart_containerd,
        }) {
            Ok(done) => {
                for line in done {
                    println!("zombie-init-runtime: {line}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("zombie-init-runtime: error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    // Returns only when runc could not be started (or the bundle was refused).
    let e = wrap::run(&argv);
    eprintln!("zombie-init-runtime: error: {e}");
    ExitCode::FAILURE
}
