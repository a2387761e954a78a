use std::time::Duration;

use clap::Parser;
use tracing_subscriber::{EnvFilter, fmt};
use zombie_daemon::{
    cli::{self, Cli, Command, LogFormat, RunArgs},
    commands,
    daemon::{self, RunConfig},
    probe::ProbeConfig,
    remediate,
};

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.exit_code() == 0 => e.exit(), // --help, --version
        Err(e) => usage_error(&cli::one_line(&e)),
    };
    if matches!(cli.command, Command::Run(_)) {
        daemon::bound_allocator();
    }
    let applied = match &cli.command {
        Command::Run(a) => a.paths.apply(),
        Command::List(a) => a.source.paths.apply(),
        Command::Check(a) => a.paths.apply(),
        Command::Audit(a) => a.source.paths.apply(),
        Command::Calibrate(_) => Ok(()),
    };
    if let Err(e) = applied {
        usage_error(&e.to_string());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("cannot start the tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run(args).await.map(|()| 0),
            Command::List(args) => commands::list::run(args).await.map(|()| 0),
            Command::Check(args) => commands::check::run(args),
            Command::Audit(args) => commands::audit::run(args).await.map(|()| 0),
            Command::Calibrate(args) => calibrate(&args),
        }
    });
    // Don't wait for blocking /proc scans still in flight.
    runtime.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) if e.is::<cli::UsageError>() => usage_error(&e.to_string()),
        Err(e) => {
            eprintln!("zombie-daemon: error: {e:#}");
            std::process::exit(1);
        }
    }
}

/// A bad flag, environment variable, policy or filter: one line, exit 2.
fn usage_error(msg: &str) -> ! {
    eprintln!("zombie-daemon: error: {msg}");
    std::process::exit(2);
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    init_logging(args.log_format, &args.log_level)?;
    let policy = match &args.policy {
        Some(path) => remediate::load_policy(path).map_err(|e| cli::UsageError(e.to_string()))?,
        None => remediate::Policy::default(),
    };
    let cfg = RunConfig {
        listen: args.listen,
        proc_root: args.paths.proc_root,
        cgroup_root: args.paths.cgroup_root,
        probe: ProbeConfig {
            btf_path: args.paths.btf_path,
            ring_buffer_bytes: args.ring_buffer_bytes,
            fault_drop_free_comm: args.fault_drop_free_comm,
            ..ProbeConfig::default()
        },
        runtime_endpoint: args.runtime_endpoint,
        names_grace: Duration::from_secs(600),
        drain_interval: Duration::from_millis(args.drain_interval_ms),
        resync_interval: Duration::from_secs(args.resync_interval_secs),
        remediate: args.remediate,
        policy,
        show_cmdlines: args.show_cmdlines,
        http_max_bytes_in_flight: args.http_max_bytes_in_flight,
        max_listed_zombies: args.max_listed_zombies,
    };
    daemon::run(cfg).await
}

/// Holds the empty programs (see `probe::Floor`) until stdin closes; says which attached.
fn calibrate(args: &cli::CalibrateArgs) -> anyhow::Result<i32> {
    let floor = zombie_daemon::probe::Floor::attach(&args.btf_path)?;
    println!("{}", serde_json::json!({ "attached": floor.attached() }));
    std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink())?;
    Ok(0)
}

fn init_logging(format: LogFormat, level: &str) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(level).map_err(|e| {
        cli::UsageError(format!("--log-level {level:?} is not a valid filter: {e}"))
    })?;
    let builder = fmt().with_env_filter(filter);
    match format {
        // Fields carry what tenants wrote (comm, argv): escaped, so no log line is forged and
        // no terminal sequence reaches whoever tails the log. Colours would be escaped too.
        LogFormat::Text => builder
            .with_ansi(false)
            .with_writer(|| zombie_daemon::escape::EscapingWriter(std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder
            .with_writer(std::io::stderr)
            .json()
            .flatten_event(true)
            .try_init(),
    }
    .map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}
