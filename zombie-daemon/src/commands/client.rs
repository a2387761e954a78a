//! The HTTP client of the commands that ask a running daemon (`list`, `audit`).

use std::time::Duration;

use anyhow::{Context, bail};
use http_body_util::{BodyExt, Empty};
use hyper::{Request, body::Bytes};
use hyper_util::rt::TokioIo;

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
