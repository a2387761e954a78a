//! The read-only HTTP API: `/metrics`, `/healthz`, `/readyz`, `/zombies`, `/audit`,
//! `/remediations`.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};

use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, sync::Semaphore};
use tower_http::{limit::RequestBodyLimitLayer, timeout::TimeoutLayer};

use crate::{
    clock::{self, WallClock},
    daemon::Shared,
    view,
};

/// The event loop is considered hung when it has not run for this long.
const STALL_NS: u64 = 10_000_000_000;

pub const METRICS_PATH: &str = "/metrics";
pub const HEALTHZ_PATH: &str = "/healthz";
pub const READYZ_PATH: &str = "/readyz";
pub const ZOMBIES_PATH: &str = "/zombies";
pub const AUDIT_PATH: &str = "/audit";
pub const REMEDIATIONS_PATH: &str = "/remediations";

/// Limits that keep a read-only node API cheap to expose: small requests, bounded time to
/// send headers and to answer, and a bounded number of connections.
pub const MAX_CONNECTIONS: usize = 64;
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;

/// Serves `router` on `listener` until the task is dropped. Connections beyond
/// `MAX_CONNECTIONS` wait in the kernel's accept queue.
pub async fn serve(listener: TcpListener, router: Router) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .max_buf_size(MAX_REQUEST_BYTES.max(8192))
                .serve_connection(TokioIo::new(stream), service);
            let _ = conn.await;
            drop(permit);
        });
    }
}

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(METRICS_PATH, get(metrics))
        .route(HEALTHZ_PATH, get(healthz))
        .route(READYZ_PATH, get(readyz))
        .route(ZOMBIES_PATH, get(zombies))
        .route(AUDIT_PATH, get(audit))
        .route(REMEDIATIONS_PATH, get(remediations))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(RequestBodyLimitLayer::new(MAX_REQUEST_BYTES))
        .with_state(shared)
}

async fn metrics(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

async fn healthz(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    let last = s.heartbeat.load(Ordering::Relaxed);
    if clock::boottime_now().saturating_sub(last) < STALL_NS {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "event loop stalled\n")
    }
}

async fn readyz(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    if s.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: eBPF programs attaching or /proc bootstrap running\n",
        )
    }
}

async fn zombies(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    let now = clock::boottime_now();
    let wall = WallClock::now();
    let tracker = s.tracker.lock().unwrap_or_else(|e| e.into_inner());
    let mut attributor = s.attributor.lock().unwrap_or_else(|e| e.into_inner());
    Json(view::snapshot(&tracker, &mut attributor, now, &wall))
}

async fn audit(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    Json(s.audit())
}

/// Recent remediation decisions, oldest first (empty when remediation is off).
async fn remediations(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    let h = s.remediations.lock().unwrap_or_else(|e| e.into_inner());
    Json(h.iter().cloned().collect::<Vec<_>>())
}
