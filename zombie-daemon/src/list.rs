//! `zombie-daemon list`: a ps-like table of zombies.

use std::{fmt::Write as _, time::Duration};

use anyhow::{Context, bail};
use http_body_util::{BodyExt, Empty};
use hyper::{Request, body::Bytes};
use hyper_util::rt::TokioIo;

use crate::{
    cli::ListArgs,
    clock::{self, WallClock},
    probe::TickConverter,
    procfs::ProcFs,
    tracker::Tracker,
    view::{self, Attributor, ZombieView},
};

pub async fn run(args: ListArgs) -> anyhow::Result<()> {
    let zombies = if args.source.once {
        scan_once(&args)?
    } else {
        fetch(&args.source.endpoint).await?
    };
    let zombies: Vec<ZombieView> = zombies.into_iter().filter(|z| matches(z, &args)).collect();
    if args.source.json {
        println!("{}", serde_json::to_string_pretty(&zombies)?);
    } else {
        print!("{}", table(&zombies));
    }
    Ok(())
}

/// `--namespace`, `--pod` (name or UID) and `--container` (name or ID prefix) filters.
pub fn matches(z: &ZombieView, args: &ListArgs) -> bool {
    let eq = |want: &Option<String>, have: &Option<String>| {
        want.as_ref()
            .is_none_or(|w| have.as_deref() == Some(w.as_str()))
    };
    eq(&args.namespace, &z.namespace)
        && args.pod.as_ref().is_none_or(|p| {
            z.pod.as_deref() == Some(p.as_str()) || z.pod_uid.as_deref() == Some(p.as_str())
        })
        && args.container.as_ref().is_none_or(|c| {
            z.container.as_deref() == Some(c.as_str())
                || z.container_id
                    .as_deref()
                    .is_some_and(|id| !c.is_empty() && id.starts_with(c.as_str()))
        })
}

/// "namespace/pod", the pod UID when names are unknown, "-" for host processes.
fn pod_column(z: &ZombieView) -> String {
    match (&z.namespace, &z.pod, &z.pod_uid) {
        (Some(ns), Some(pod), _) => format!("{ns}/{pod}"),
        (_, Some(pod), _) => pod.clone(),
        (_, None, Some(uid)) => uid.clone(),
        _ => "-".into(),
    }
}

fn container_column(z: &ZombieView) -> String {
    match (&z.container, &z.container_id) {
        (Some(name), _) => name.clone(),
        (None, Some(id)) => id.chars().take(13).collect(),
        _ => "-".into(),
    }
}

/// Standalone: the zombies in /proc right now.
fn scan_once(args: &ListArgs) -> anyhow::Result<Vec<ZombieView>> {
    let now = clock::boottime_now();
    let procfs = ProcFs::new(&args.source.paths.proc_root, TickConverter::from_system());
    let v2_root = crate::cgroups::detect(&args.source.paths.cgroup_root).1;
    let entries = procfs.zombies(now, |pid| {
        crate::cgroups::id_of_pid(&args.source.paths.proc_root, v2_root.as_deref(), pid)
    })?;
    let mut tracker = Tracker::default();
    tracker.reconcile(now, &entries);
    let mut attributor = Attributor::new(
        &args.source.paths.proc_root,
        &args.source.paths.cgroup_root,
        None,
    );
    attributor.set_show_cmdlines(args.source.show_cmdlines);
    Ok(view::snapshot(
        &tracker,
        &mut attributor,
        now,
        &WallClock::now(),
    ))
}

/// GET `<endpoint>/zombies` from a running daemon.
pub async fn fetch(endpoint: &str) -> anyhow::Result<Vec<ZombieView>> {
    fetch_json(endpoint, crate::http::ZOMBIES_PATH, "list").await
}

/// GET `<endpoint><path>` as JSON (plain HTTP/1.1, no TLS: it is a node-local API), for the
/// CLI command `command` (named in the hint when no daemon answers).
pub async fn fetch_json<T: serde::de::DeserializeOwned>(
    endpoint: &str,
    path: &str,
    command: &str,
) -> anyhow::Result<T> {
    // `--endpoint` was checked when the command line was parsed; this is the same check for
    // callers that did not come through clap.
    let base = crate::cli::parse_endpoint(endpoint)
        .map_err(|e| crate::cli::UsageError(format!("--endpoint {endpoint:?}: {e}")))?;
    let uri: hyper::Uri = format!("{base}{path}")
        .parse()
        .with_context(|| format!("--endpoint {endpoint:?} is not a valid URL"))?;
    let host = uri.host().context("--endpoint has no host")?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(80);
    let unreachable = || {
        format!(
            "cannot reach a zombie-daemon at {base}: is it running? \
             (or use `zombie-daemon {command} --once` to read /proc directly)"
        )
    };
    let stream = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    .map_err(anyhow::Error::msg)
    .and_then(|r| r.map_err(anyhow::Error::from))
    .with_context(unreachable)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .with_context(unreachable)?;
    tokio::spawn(conn);
    let req = Request::get(uri.path())
        .header(
            hyper::header::HOST,
            uri.authority().map_or(host.clone(), |a| a.to_string()),
        )
        .body(Empty::<Bytes>::new())?;
    let answer = async {
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, body))
    };
    let (status, body) = tokio::time::timeout(Duration::from_secs(30), answer)
        .await
        .with_context(|| format!("{base}{path} did not answer within 30 s"))?
        .with_context(|| format!("{base}{path} broke off its answer"))?;
    if !status.is_success() {
        // One line, and not a whole page of whatever server answered.
        let text = String::from_utf8_lossy(&body);
        let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let text: String = text.chars().take(200).collect();
        bail!("{base}{path} answered {status}: {text}");
    }
    serde_json::from_slice(&body)
        .with_context(|| format!("{base}{path} did not answer the expected JSON"))
}

/// "45s", "12m03s", "3h20m", "2d04h".
pub fn human_age(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// Left-aligned columns, the last one unpadded.
pub fn render_rows<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, (c, w)) in r.iter().zip(widths).enumerate() {
            if i + 1 == N {
                line.push_str(c);
            } else {
                let _ = write!(line, "{c:<w$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

pub fn table(zombies: &[ZombieView]) -> String {
    let mut rows: Vec<[String; 9]> = vec![[
        "PID".into(),
        "PPID".into(),
        "COMM".into(),
        "PARENT".into(),
        "AGE".into(),
        "STATUS".into(),
        "NAMESPACE/POD".into(),
        "CONTAINER".into(),
        "CAUSE".into(),
    ]];
    for z in zombies {
        let status = crate::status::WaitStatus {
            exit_code: z.exit_code,
            signal: z.signal,
            core_dumped: z.core_dumped,
        };
        let age = human_age(z.age_seconds);
        rows.push([
            z.pid.to_string(),
            z.ppid.to_string(),
            z.comm.clone(),
            z.parent_comm.clone(),
            if z.exited_at_estimated {
                format!("~{age}")
            } else {
                age
            },
            status.describe(),
            pod_column(z),
            container_column(z),
            z.cause.map_or("-", |c| c.as_str()).to_string(),
        ]);
    }
    let mut out = render_rows(&rows);
    if zombies.is_empty() {
        out.push_str("(no zombie processes)\n");
    }
    // One remedy per distinct one, below the table.
    let mut remedies: Vec<&str> = zombies.iter().filter_map(|z| z.remedy.as_deref()).collect();
    remedies.sort_unstable();
    remedies.dedup();
    if !remedies.is_empty() {
        out.push('\n');
        for r in remedies {
            let _ = writeln!(out, "remedy: {r}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_naturally() {
        assert_eq!(human_age(5.2), "5s");
        assert_eq!(human_age(125.0), "2m05s");
        assert_eq!(human_age(3.0 * 3600.0 + 61.0), "3h01m");
        assert_eq!(human_age(2.0 * 86400.0 + 7200.0), "2d02h");
        assert_eq!(human_age(-1.0), "0s");
    }

    #[test]
    fn table_has_a_header_and_a_row_per_zombie() {
        let z = ZombieView {
            pid: 42,
            ppid: 1,
            comm: "sleep".into(),
            parent_comm: "bash".into(),
            exit_code: Some(0),
            signal: None,
            core_dumped: false,
            exited_at: "2026-01-01T00:00:00.000Z".into(),
            exited_at_estimated: false,
            age_seconds: 61.0,
            cgroup_id: 7,
            cgroup_path: Some("/kubepods/x".into()),
            start_ticks: 1,
            parent_exited: false,
            reparented: 0,
            owner: "pod".into(),
            pod_uid: Some("uid-1".into()),
            container_id: Some("abcdef0123456789".into()),
            runtime: None,
            qos: None,
            namespace: Some("shop".into()),
            pod: Some("cart-1".into()),
            container: None,
            parent_at_exit: None,
            cause: Some(crate::diagnosis::Cause::ShellPid1),
            reaper: None,
            remedy: Some("sh (pid 1): exec it".into()),
        };
        let t = table(std::slice::from_ref(&z));
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("PID"));
        assert!(
            lines[1].contains("sleep") && lines[1].contains("1m01s") && lines[1].contains("exit 0")
        );
        assert!(lines[1].contains("shop/cart-1") && lines[1].contains("abcdef0123456"));
        assert!(lines[1].ends_with("shell_pid1"));
        assert!(t.contains("remedy: sh (pid 1): exec it"));
        assert!(table(&[]).contains("no zombie processes"));
        let args = |ns: Option<&str>, pod: Option<&str>, c: Option<&str>| ListArgs {
            source: crate::cli::SourceArgs {
                endpoint: String::new(),
                once: false,
                json: false,
                show_cmdlines: false,
                paths: crate::cli::HostPaths {
                    proc_root: "/proc".into(),
                    cgroup_root: "/sys/fs/cgroup".into(),
                    btf_path: "/x".into(),
                },
            },
            namespace: ns.map(Into::into),
            pod: pod.map(Into::into),
            container: c.map(Into::into),
        };
        assert!(matches(&z, &args(None, None, None)));
        assert!(matches(
            &z,
            &args(Some("shop"), Some("uid-1"), Some("abcdef"))
        ));
        assert!(!matches(&z, &args(Some("other"), None, None)));
        assert!(!matches(&z, &args(None, Some("cart-2"), None)));
        assert!(!matches(&z, &args(None, None, Some("fff"))));
    }

    #[tokio::test]
    async fn an_unreachable_daemon_is_a_clear_error() {
        let err = fetch("http://127.0.0.1:1").await.unwrap_err();
        assert!(format!("{err:#}").contains("--once"), "{err:#}");
        let err = fetch("ftp://x").await.unwrap_err();
        assert!(err.to_string().contains("http://"), "{err}");
    }
}
