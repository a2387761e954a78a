//! The two facts the wrapper needs from a runc command line: the subcommand and, for
//! `create` and `run`, the bundle directory.
//!
//! Hand-written on purpose: the whole command line goes to runc unchanged, so it must not
//! be parsed into a model that could drop or reorder what this wrapper does not know
//! (runc grows flags between releases, and the shim passes whichever it knows). Only the
//! option names below are read; anything else is skipped as runc would skip it.

use std::path::PathBuf;

/// runc's global options that take a value (`runc --help`, runc 1.1 to 1.3).
const GLOBAL_WITH_VALUE: &[&str] = &["--root", "--log", "--log-format", "--criu", "--rootless"];

/// What a runc command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub struct RuncCall {
    /// `create`, `run`, `state`, `kill`, ... (`None`: no subcommand, e.g. `--version`).
    pub command: Option<String>,
    /// The bundle of `create`/`run`: `--bundle`/`-b`, else runc's default, the working
    /// directory (`None` here).
    pub bundle: Option<PathBuf>,
    /// The container id (the last positional argument of `create`/`run`).
    pub id: Option<String>,
    /// runc's `--log` file: where runc and the shim look for a runtime's messages.
    pub log: Option<PathBuf>,
}

impl RuncCall {
    /// The call needs its bundle rewritten first.
    pub fn creates(&self) -> bool {
        matches!(self.command.as_deref(), Some("create" | "run"))
    }
}

/// Splits `--name=value` into its parts.
fn split_eq(arg: &str) -> (&str, Option<&str>) {
    match arg.split_once('=') {
        Some((n, v)) if n.starts_with('-') => (n, Some(v)),
        _ => (arg, None),
    }
}

/// Reads a runc command line (without argv[0]).
pub fn parse(args: &[String]) -> RuncCall {
    let mut call = RuncCall {
        command: None,
        bundle: None,
        id: None,
        log: None,
    };
    let mut i = 0;
    // Global options, up to the subcommand.
    while i < args.len() {
        let (name, inline) = split_eq(&args[i]);
        if !name.starts_with('-') {
            call.command = Some(name.to_string());
            i += 1;
            break;
        }
        if GLOBAL_WITH_VALUE.contains(&name) {
            let value = match inline {
                Some(v) => Some(v.to_string()),
                None => {
                    i += 1;
                    args.get(i).cloned()
                }
            };
            if name == "--log" {
                call.log = value.map(PathBuf::from);
            }
        }
        i += 1;
    }
    if !call.creates() {
        return call;
    }
    // `create`/`run` options: only --bundle/-b is read; the others that take a value must be
    // skipped with it, so that a value is never taken for the container id.
    const WITH_VALUE: &[&str] = &[
        "--bundle",
        "-b",
        "--console-socket",
        "--pid-file",
        "--preserve-fds",
    ];
    let mut positional = Vec::new();
    while i < args.len() {
        let (name, inline) = split_eq(&args[i]);
        if name == "--" {
            positional.extend(args[i + 1..].iter().cloned());
            break;
        }
        if name.starts_with('-') && name.len() > 1 {
            if WITH_VALUE.contains(&name) {
                let value = match inline {
                    Some(v) => Some(v.to_string()),
                    None => {
                        i += 1;
                        args.get(i).cloned()
                    }
                };
                if matches!(name, "--bundle" | "-b") {
                    call.bundle = value.map(PathBuf::from);
                }
            }
        } else {
            positional.push(args[i].clone());
        }
        i += 1;
    }
    call.id = positional.pop();
    call
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &str) -> RuncCall {
        parse(
            &line
                .split_whitespace()
                .map(String::from)
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn the_shims_create_call_gives_bundle_id_and_log() {
        // What containerd-shim-runc-v2 (go-runc) runs.
        let c = p(
            "--root /run/containerd/runc/k8s.io --log /run/b/log.json --log-format json \
                   create --bundle /run/b --pid-file /run/b/init.pid --console-socket /tmp/c abc123",
        );
        assert_eq!(c.command.as_deref(), Some("create"));
        assert!(c.creates());
        assert_eq!(c.bundle, Some(PathBuf::from("/run/b")));
        assert_eq!(c.id.as_deref(), Some("abc123"));
        assert_eq!(c.log, Some(PathBuf::from("/run/b/log.json")));
    }

    #[test]
    fn inline_values_short_flags_and_booleans() {
        let c = p("--systemd-cgroup --root=/r --log=/l run -d -b=/bb --no-pivot --pid-file=/p x");
        assert_eq!(c.command.as_deref(), Some("run"));
        assert_eq!(c.bundle, Some(PathBuf::from("/bb")));
        assert_eq!(c.id.as_deref(), Some("x"));
        assert_eq!(c.log, Some(PathBuf::from("/l")));
        let c = p("create --pid-file /p y");
        assert_eq!((c.bundle, c.id.as_deref()), (None, Some("y")));
    }

    #[test]
    fn other_commands_are_only_named() {
        for (line, cmd) in [
            ("--root /r state abc", "state"),
            ("--root /r kill --all abc 15", "kill"),
            ("--root /r --log /l delete --force abc", "delete"),
            ("--root /r exec --process /p.json -d abc", "exec"),
            ("--root /r pause abc", "pause"),
            ("--root /r update --resources - abc", "update"),
        ] {
            let c = p(line);
            assert_eq!(c.command.as_deref(), Some(cmd), "{line}");
            assert!(!c.creates(), "{line}");
            assert_eq!(c.bundle, None);
        }
        assert_eq!(p("--version").command, None);
        assert_eq!(p("").command, None);
    }

    #[test]
    fn a_value_named_like_a_command_is_not_one() {
        // `--root create` is the root dir, not the subcommand.
        let c = p("--root create --log run state x");
        assert_eq!(c.command.as_deref(), Some("state"));
        assert_eq!(c.log, Some(PathBuf::from("run")));
    }
}
