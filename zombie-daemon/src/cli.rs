//! Command-line interface. Subcommand and flag names are a public contract.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use clap::{
    Args, Parser, Subcommand, ValueEnum,
    builder::{EnumValueParser, TypedValueParser},
};

use crate::remediate::Mode;

#[derive(Debug, Parser)]
#[command(
    name = "zombie-daemon",
    version,
    about = "Tracks every zombie process on a node with eBPF, and the pod that leaks it"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the node agent: attach the eBPF programs, keep the zombie table, serve HTTP.
    Run(RunArgs),
    /// Show current zombies, from a running daemon or (with --once) straight from /proc.
    List(ListArgs),
    /// Preflight: say what this node lacks to run the daemon; non-zero exit if it cannot.
    Check(CheckArgs),
    /// Audit every container's PID 1: does it reap orphans, does it stop on SIGTERM?
    Audit(AuditArgs),
    /// Benchmarking only (hidden): attach empty programs on the daemon's hooks and hold them
    /// until stdin closes, so `cargo xtask bench` can measure the kernel's floor.
    #[command(hide = true)]
    Calibrate(CalibrateArgs),
}

#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// The kernel's BTF.
    #[arg(long, default_value = "/sys/kernel/btf/vmlinux")]
    pub btf_path: PathBuf,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub source: SourceArgs,
}

/// Where `list` and `audit` read from, and how they print.
#[derive(Debug, Args)]
pub struct SourceArgs {
    /// A running daemon's base URL.
    #[arg(
        long,
        default_value = "http://127.0.0.1:9899",
        env = "ZOMBIE_ENDPOINT",
        value_parser = parse_endpoint
    )]
    pub endpoint: String,
    /// Don't ask a daemon: read /proc and the cgroup tree once, directly (no runtime names;
    /// zombies' exit times are then estimates).
    #[arg(long)]
    pub once: bool,
    /// Print JSON (the daemon's `/zombies` or `/audit` array) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// With --once: show command lines in full rather than argv[0] and "[redacted]" (a
    /// running daemon answers as its own --show-cmdlines says).
    #[arg(long)]
    pub show_cmdlines: bool,
    #[command(flatten)]
    pub paths: HostPaths,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The values of `--remediate`: the CLI's spelling of [`Mode`], which stays free of clap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RemediateFlag {
    /// Observe only.
    Off,
    /// Decide and log, never act.
    DryRun,
    /// Act.
    On,
}

impl From<RemediateFlag> for Mode {
    fn from(f: RemediateFlag) -> Self {
        match f {
            RemediateFlag::Off => Mode::Off,
            RemediateFlag::DryRun => Mode::DryRun,
            RemediateFlag::On => Mode::On,
        }
    }
}

/// Where the node's kernel interfaces are (in a DaemonSet, host paths are mounted elsewhere).
#[derive(Clone, Debug, Args)]
pub struct HostPaths {
    /// The host's procfs (with hostPID).
    #[arg(long, default_value = "/proc", env = "ZOMBIE_PROC_ROOT")]
    pub proc_root: PathBuf,
    /// The host's cgroup filesystem root.
    #[arg(long, default_value = "/sys/fs/cgroup", env = "ZOMBIE_CGROUP_ROOT")]
    pub cgroup_root: PathBuf,
    /// The running kernel's BTF.
    #[arg(
        long,
        default_value = "/sys/kernel/btf/vmlinux",
        env = "ZOMBIE_BTF_PATH"
    )]
    pub btf_path: PathBuf,
    /// A cgroup path below which the node's kubepods hierarchy lives, besides the top (kind:
    /// /kubelet.slice or /kubelet; rootless k3s: its service's cgroup). Pods are recognised
    /// only at the top and below these: a pod-shaped path anywhere else (a delegated subtree
    /// can hold any name) is no pod. `*` stands for one whole segment. Repeat the flag, or
    /// separate with commas.
    #[arg(
        long = "kubepods-prefix",
        env = "ZOMBIE_KUBEPODS_PREFIX",
        value_delimiter = ',',
        value_parser = parse_kubepods_prefix
    )]
    pub kubepods_prefixes: Vec<String>,
    /// The mount namespace the node's own processes run in (kubelet, the container runtime):
    /// a host process there is a node component, told by its executable. By default that of
    /// kthreadd (`<proc-root>/2/ns/mnt`), the kernel's initial one. Where the node itself
    /// runs in a container (kind, k3d) name the node's init's: `/proc/1/ns/mnt`.
    #[arg(long, env = "ZOMBIE_NODE_MOUNT_NAMESPACE", value_name = "NS_FILE")]
    pub node_mount_namespace: Option<PathBuf>,
}

fn parse_kubepods_prefix(s: &str) -> Result<String, String> {
    crate::attribution::cgroup_path::check_prefix(s).map_err(|e| e.to_string())
}

impl HostPaths {
    /// Makes `--kubepods-prefix` the prefixes every cgroup path is read with, and
    /// `--node-mount-namespace` the node's mount namespace.
    pub fn apply(&self) -> Result<(), UsageError> {
        crate::attribution::cgroup_path::set_kubepods_prefixes(self.kubepods_prefixes.clone());
        match &self.node_mount_namespace {
            Some(ns) => set_node_mount_namespace(ns),
            None => Ok(()),
        }
    }
}

/// Makes the mount namespace behind `ns` (a `/proc/PID/ns/mnt` link) the node's, as
/// `--node-mount-namespace` does.
pub fn set_node_mount_namespace(ns: &Path) -> Result<(), UsageError> {
    let id = std::fs::read_link(ns).map_err(|e| {
        UsageError(format!(
            "--node-mount-namespace {}: cannot read the namespace link: {e}",
            ns.display()
        ))
    })?;
    let id = id.to_string_lossy().into_owned();
    if !id.starts_with("mnt:[") {
        return Err(UsageError(format!(
            "--node-mount-namespace {}: {id} is not a mount namespace",
            ns.display()
        )));
    }
    crate::diagnosis::set_node_mount_namespace(id);
    Ok(())
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Address for /metrics, /healthz, /readyz, /zombies, /audit and /remediations.
    #[arg(long, default_value = "0.0.0.0:9899", env = "ZOMBIE_LISTEN")]
    pub listen: SocketAddr,
    /// Show full command lines in /zombies and /audit. By default only argv[0] is shown,
    /// followed by "[redacted]": arguments often carry secrets, and the API has no
    /// authentication.
    #[arg(long, env = "ZOMBIE_SHOW_CMDLINES")]
    pub show_cmdlines: bool,
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "ZOMBIE_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `zombie_daemon=debug`.
    #[arg(long, default_value = "info", env = "ZOMBIE_LOG_LEVEL")]
    pub log_level: String,
    #[command(flatten)]
    pub paths: HostPaths,
    /// The container runtime's CRI socket, for pod and container names
    /// (default: the first of containerd's, k3s's, CRI-O's, cri-dockerd's that exists).
    #[arg(long, env = "ZOMBIE_RUNTIME_ENDPOINT")]
    pub runtime_endpoint: Option<String>,
    /// Ring buffer size in bytes (a power of two, a multiple of the page size).
    #[arg(long, default_value_t = 4 << 20, value_parser = parse_ring_size)]
    pub ring_buffer_bytes: u32,
    /// Drain the ring buffer at least this often (ms); bounds detection latency.
    #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub drain_interval_ms: u64,
    /// Full /proc resync this often as a safety net, in seconds (0: only after lost events).
    #[arg(long, default_value_t = 300)]
    pub resync_interval_secs: u64,
    /// Remediation: off (observe only), dry-run (decide and log, never act) or on.
    #[arg(
        long,
        value_parser = EnumValueParser::<RemediateFlag>::new().map(Mode::from),
        default_value = "off",
        env = "ZOMBIE_REMEDIATE"
    )]
    pub remediate: Mode,
    /// The remediation policy (YAML); without it, the built-in defaults.
    #[arg(long, env = "ZOMBIE_POLICY")]
    pub policy: Option<PathBuf>,
    /// Bytes of HTTP answers held in memory at most, across all connections. `/zombies` is
    /// streamed in 64 KiB chunks; when the cap is reached, clients that stopped reading for
    /// a second or more are cut off, the longest stalled first, and the others wait.
    #[arg(
        long,
        default_value_t = crate::inflight::DEFAULT_CAP,
        env = "ZOMBIE_HTTP_MAX_BYTES_IN_FLIGHT",
        value_parser = clap::value_parser!(u64).range(65_536..).map(|n| n as usize)
    )]
    pub http_max_bytes_in_flight: usize,
    /// Zombies listed in detail in /zombies at most. Beyond, counts per container, cause and
    /// origin stay exact in /metrics, and /zombies lists the oldest half and the newest half
    /// (its X-Zombies-Unlisted header, the zombie_processes_unlisted metric and the log say
    /// so). Bounds what /zombies answers; every zombie, listed or not, costs a 64-byte
    /// record in the snapshot (the exact counts need it).
    #[arg(
        long,
        default_value_t = crate::daemon::DEFAULT_MAX_LISTED,
        env = "ZOMBIE_MAX_LISTED_ZOMBIES",
        value_parser = clap::value_parser!(u64).range(2..).map(|n| n as usize)
    )]
    pub max_listed_zombies: usize,
    /// Testing only (hidden): the kernel side drops the free events of processes with this
    /// comm, as some kernels do on their own, to prove the /proc sweep settles them.
    #[arg(long, hide = true, value_parser = parse_comm)]
    pub fault_drop_free_comm: Option<String>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Only zombies of pods in this namespace.
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Only zombies of this pod (name or UID).
    #[arg(long)]
    pub pod: Option<String>,
    /// Only zombies of this container (name or ID prefix).
    #[arg(long)]
    pub container: Option<String>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub paths: HostPaths,
    /// Only print what the daemon needs from its host (capabilities, mounts, ports) as JSON.
    #[arg(long)]
    pub print_requirements: bool,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
}

/// A daemon's base URL: `http://host[:port]`, nothing after the authority but an optional
/// `/` (the API's paths are appended to it).
pub fn parse_endpoint(s: &str) -> Result<String, String> {
    let uri: hyper::Uri = s
        .parse()
        .map_err(|e| format!("not a URL ({e}); expected http://HOST:PORT"))?;
    if uri.scheme_str() != Some("http") {
        return Err("expected an http:// URL (the API is plain HTTP on the node)".into());
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("the URL has no host; expected http://HOST:PORT".into());
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err("expected a base URL without a path or query, e.g. http://HOST:PORT".into());
    }
    Ok(s.trim_end_matches('/').to_string())
}

/// A usage error that is not clap's own (a policy file, a log filter): the binary prints it
/// on one line and exits 2, like a bad flag.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Clap's error as one line: its message without the "error: " prefix, the usage block and
/// the "try --help" hint (kept for --help and --version, which are not errors).
pub fn one_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    format!("{} (see --help)", first.trim_end())
}

fn parse_comm(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 15 || s.contains('\0') {
        return Err("a comm is 1 to 15 bytes without NUL".into());
    }
    Ok(s.to_string())
}

fn parse_ring_size(s: &str) -> Result<u32, String> {
    let n: u32 = s.parse().map_err(|e| format!("{e}"))?;
    if n.is_power_of_two() && n >= 4096 && n.is_multiple_of(4096) {
        Ok(n)
    } else {
        Err(format!("{n} is not a power of two of at least 4096"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_and_bad_input() {
        let cli = Cli::try_parse_from(["zombie-daemon", "run"]).unwrap();
        let Command::Run(run) = cli.command else {
            panic!()
        };
        assert_eq!(run.listen.to_string(), "0.0.0.0:9899");
        assert_eq!(run.ring_buffer_bytes, 4 << 20);
        assert_eq!(run.remediate, Mode::Off);
        assert!(!run.show_cmdlines, "command lines are redacted by default");
        assert_eq!(run.http_max_bytes_in_flight, 16 << 20);
        assert_eq!(run.max_listed_zombies, 50_000);
        let cli = Cli::try_parse_from(["zombie-daemon", "run", "--show-cmdlines"]).unwrap();
        let Command::Run(run) = cli.command else {
            panic!()
        };
        assert!(run.show_cmdlines);
        let cli = Cli::try_parse_from(["zombie-daemon", "run", "--remediate=dry-run"]).unwrap();
        let Command::Run(run) = cli.command else {
            panic!()
        };
        assert_eq!(run.remediate, Mode::DryRun);
        for bad in [
            vec!["zombie-daemon", "run", "--listen", "nope"],
            vec!["zombie-daemon", "run", "--ring-buffer-bytes", "1000"],
            vec!["zombie-daemon", "run", "--http-max-bytes-in-flight", "1000"],
            vec!["zombie-daemon", "run", "--max-listed-zombies", "1"],
            vec!["zombie-daemon", "run", "--log-format", "xml"],
            vec!["zombie-daemon", "frobnicate"],
            vec!["zombie-daemon", "run", "--remediate", "yes"],
            vec!["zombie-daemon", "list", "--endpoint", "::::"],
            vec!["zombie-daemon", "list", "--endpoint", "https://node:9899"],
            vec!["zombie-daemon", "audit", "--endpoint", "http://"],
            vec![
                "zombie-daemon",
                "audit",
                "--endpoint",
                "http://node:9899/zombies",
            ],
            vec!["zombie-daemon", "list", "--endpoint", "127.0.0.1:9899"],
        ] {
            let err = Cli::try_parse_from(&bad).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad:?}");
            let line = one_line(&err);
            assert!(!line.contains('\n') && !line.starts_with("error"), "{line}");
        }
        for ok in ["http://127.0.0.1:9899", "http://[::1]:9899/", "http://node"] {
            assert!(parse_endpoint(ok).is_ok(), "{ok}");
        }
        assert_eq!(parse_endpoint("http://node:1/").unwrap(), "http://node:1");
    }
}
