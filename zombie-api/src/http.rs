//! The read-only HTTP API: `/metrics`, `/healthz`, `/readyz`, `/zombies`, `/audit`,
//! `/remediations`.

use std::{
    collections::BTreeMap,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::body::Bytes;

use axum::{
    Router,
    extract::State,
    http::{Request, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};

use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpSocket, TcpStream},
    sync::{Notify, watch},
    time::{Instant, Sleep},
};
use tower::ServiceExt;
use tower_http::{limit::RequestBodyLimitLayer, timeout::TimeoutLayer};

use crate::{
    bounds::{self, Bound},
    clock,
    health::Health,
    metrics::Metrics,
    snapshot::{self, Demand, Part, Snapshot},
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
///
/// The connection cap is far above what Prometheus and the kubelet need (a few at a time),
/// so that a thousand or more hostile connections fit beside them; at the cap the oldest
/// connection without a request in flight is closed to make room (see [`Connections`]), so
/// a probe is served however many connections a client holds open. It also bounds memory: a
/// connection that has sent nothing costs about 1.3 KiB (its task and socket registration),
/// one that has sent part of a request up to about 26 KiB (hyper's read buffer, grown to
/// 16 KiB by the first read, and its 8 KiB write buffer), so about 52 MiB at worst, a fifth
/// of the DaemonSet's memory limit.
pub const MAX_CONNECTIONS: usize = 2048;
/// From accept to complete request headers, and again from one response to the next
/// request's headers on a kept-alive connection (hyper's header timer also runs while a
/// connection idles between requests). Probes and scrapers send their headers at once; 5 s
/// leaves room for retransmissions on a lossy network, and shedding (not this timeout) is
/// what keeps the API available when connections pile up.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A connection whose answer makes no progress for this long is closed: a client that asks
/// and never reads would otherwise hold its answer in memory for as long as it likes.
/// Scrapers read as fast as the network allows; this leaves room for a congested link.
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(10);
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;
/// File descriptors kept for everything but HTTP connections: eBPF maps, programs and links,
/// the ring buffer, the runtime socket, and the /proc and cgroup files blocking scans hold open.
pub const RESERVED_FDS: u64 = 256;

/// The open-file limit (RLIMIT_NOFILE) of the process after [`raise_open_files_limit`].
/// `None` is unlimited.
#[derive(Debug)]
pub struct OpenFilesLimit {
    pub soft_before: Option<u64>,
    pub soft: Option<u64>,
    pub hard: Option<u64>,
    /// Why the soft limit could not be raised (it is then unchanged).
    pub error: Option<io::Error>,
}

/// Raises the soft RLIMIT_NOFILE to the hard limit, as Go's runtime and most network daemons
/// do: the default soft limit (1024) would cap the API far below [`MAX_CONNECTIONS`], and the
/// hard limit is what the administrator (or container runtime) chose to allow. The daemon runs
/// no other programs, so no child inherits the raised limit.
pub fn raise_open_files_limit() -> OpenFilesLimit {
    let before = getrlimit(Resource::Nofile);
    let error = (before.current != before.maximum)
        .then(|| {
            setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: before.maximum,
                    maximum: before.maximum,
                },
            )
            .err()
        })
        .flatten()
        .map(io::Error::from);
    let after = getrlimit(Resource::Nofile);
    OpenFilesLimit {
        soft_before: before.current,
        soft: after.current,
        hard: after.maximum,
        error,
    }
}

/// The connection cap an open-file limit allows: [`MAX_CONNECTIONS`], or fewer when the limit
/// cannot hold them beside [`RESERVED_FDS`] (never less than half the limit, so a tiny limit
/// still serves).
pub fn connection_cap(open_files: Option<u64>) -> usize {
    let Some(limit) = open_files else {
        return MAX_CONNECTIONS;
    };
    let room = limit.saturating_sub(RESERVED_FDS).max(limit / 2);
    usize::try_from(room).map_or(MAX_CONNECTIONS, |r| r.clamp(1, MAX_CONNECTIONS))
}

/// The listen backlog: a burst of connections may fill a short accept queue (std's 128)
/// within the few milliseconds the accept loop takes to wake, and the kernel then drops new
/// SYNs, a probe's included, which are retried only after a second. The kernel caps this at
/// `net.core.somaxconn` (4096 by default).
pub const LISTEN_BACKLOG: u32 = 4096;

/// The send buffer of every connection (SO_SNDBUF, inherited from the listener; the kernel
/// doubles it). Left to autotuning, the kernel grows it to `net.ipv4.tcp_wmem`'s maximum
/// (4 MiB by default): a client that asks for a large answer and never reads it would then
/// have the whole answer queued in kernel memory, the write would complete, and
/// [`WRITE_STALL_TIMEOUT`] could never see the stall. 256 KiB is far more than a scrape
/// needs to go at full speed on a node's network.
pub const SEND_BUFFER: u32 = 256 * 1024;

/// A listener on `addr` with [`LISTEN_BACKLOG`], [`SEND_BUFFER`] (and `SO_REUSEADDR`, as std
/// sets it).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_send_buffer_size(SEND_BUFFER)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves `router` on `listener` until the task is dropped, with at most `max_connections`
/// connections open.
///
/// The accept loop never waits for a slot: a connection left in the kernel's accept queue
/// cannot be timed out or shed, so a client holding every slot would stall probes until its
/// connections time out. At the cap the oldest idle connection is closed instead.
pub async fn serve(listener: TcpListener, router: Router, max_connections: usize) {
    let connections = Arc::new(Connections::new(max_connections));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors (the limit is shared with the rest of the daemon):
                // free one by shedding, then accept again. Other errors (a connection reset
                // while queued) are retried after a pause so a persistent one cannot spin.
                let out_of_fds = matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
                tracing::debug!("accept failed: {e}");
                if out_of_fds && connections.shed_oldest_idle() {
                    tokio::task::yield_now().await;
                } else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                continue;
            }
        };
        let Some(slot) = connections.admit() else {
            // Every open connection has a request in flight: refuse this one at once.
            tracing::debug!("{max_connections} connections busy: refused one");
            continue;
        };
        tokio::spawn(serve_connection(stream, router.clone(), slot));
    }
}

async fn serve_connection(stream: TcpStream, router: Router, slot: Slot) {
    let deadline = Instant::now() + HEADER_READ_TIMEOUT;
    // Until the first byte arrives the connection holds no hyper buffers (24 KiB once read):
    // a client that only opens connections costs a socket and this task. `peek`, not
    // `readable`: a new socket may be reported readable before any byte arrived.
    let mut first = [0u8; 1];
    tokio::select! {
        () = slot.state.shed.notified() => return,
        peeked = tokio::time::timeout_at(deadline, stream.peek(&mut first)) => {
            // Time is up, the client closed, or the socket failed.
            if !matches!(peeked, Ok(Ok(1..))) {
                return;
            }
        }
    }
    let state = slot.state.clone();
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(Shedder(state.clone()));
        let busy = Busy::new(state.clone());
        let router = router.clone();
        async move {
            let response = router.oneshot(req).await;
            drop(busy);
            response
        }
    });
    // The first request's headers are due by `deadline`; hyper applies the same duration to
    // each later request on the connection, counted from the end of the previous response.
    let header_timeout = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_REQUEST_BYTES.max(8192))
        .serve_connection(TokioIo::new(StallGuard::new(stream)), service);
    tokio::select! {
        _ = conn => {}
        () = slot.state.shed.notified() => {}
    }
}

/// A socket whose writes fail with `TimedOut` once they have made no progress for
/// [`WRITE_STALL_TIMEOUT`]; hyper then closes the connection. Hyper has no write timeout.
struct StallGuard {
    io: TcpStream,
    /// Armed while writes are blocked; made at the first stall only.
    stall: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl StallGuard {
    fn new(io: TcpStream) -> Self {
        StallGuard {
            io,
            stall: None,
            armed: false,
        }
    }

    /// The outcome of a write: progress disarms the timer, a block arms it.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        write: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if write.is_ready() {
            self.armed = false;
            return write;
        }
        let deadline = Instant::now() + WRITE_STALL_TIMEOUT;
        let stall = self
            .stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if !self.armed {
            stall.as_mut().reset(deadline);
            self.armed = true;
        }
        match stall.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::ErrorKind::TimedOut.into())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for StallGuard {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for StallGuard {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let write = Pin::new(&mut this.io).poll_write(cx, buf);
        this.watch(cx, write)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let write = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.watch(cx, write)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// The open connections, oldest first, so that at the cap the oldest idle one can be shed.
///
/// Shedding the oldest idle connection, rather than refusing the new one, keeps the API
/// reachable however many connections a client opens: a probe or scrape is refused only if
/// `cap` newer connections arrive between its accept and its request, and a connection with a
/// request in flight is never shed.
#[expect(
    clippy::disallowed_types,
    reason = "the server's own connection registry, held for a map insert or removal; never the table"
)]
struct Connections {
    cap: usize,
    open: std::sync::Mutex<Registry>,
}

#[derive(Default)]
struct Registry {
    next: u64,
    by_age: BTreeMap<u64, Arc<ConnState>>,
}

#[derive(Default)]
struct ConnState {
    /// A request is being handled (hyper serves one request at a time per connection).
    busy: AtomicBool,
    /// Tells the connection's task to close it.
    shed: Notify,
}

/// A connection's place in [`Connections`], given up when its task ends.
struct Slot {
    id: u64,
    state: Arc<ConnState>,
    connections: Arc<Connections>,
}

/// Marks a connection busy while a request is handled.
struct Busy(Arc<ConnState>);

impl Busy {
    fn new(state: Arc<ConnState>) -> Self {
        state.busy.store(true, Ordering::Relaxed);
        Busy(state)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.store(false, Ordering::Relaxed);
    }
}

impl Connections {
    #[expect(clippy::disallowed_types, reason = "see `Connections`")]
    fn new(cap: usize) -> Self {
        Connections {
            cap: cap.max(1),
            open: std::sync::Mutex::default(),
        }
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a new connection, shedding the oldest idle one at the cap; `None` when
    /// every open connection is busy.
    fn admit(self: &Arc<Self>) -> Option<Slot> {
        let mut reg = self.registry();
        if reg.by_age.len() >= self.cap && !shed_oldest_idle(&mut reg) {
            return None;
        }
        let id = reg.next;
        reg.next += 1;
        let state = Arc::new(ConnState::default());
        reg.by_age.insert(id, state.clone());
        Some(Slot {
            id,
            state,
            connections: self.clone(),
        })
    }

    fn shed_oldest_idle(&self) -> bool {
        shed_oldest_idle(&mut self.registry())
    }
}

/// Closes the oldest connection without a request in flight; false if there is none.
fn shed_oldest_idle(reg: &mut Registry) -> bool {
    let Some(id) = reg
        .by_age
        .iter()
        .find(|(_, c)| !c.busy.load(Ordering::Relaxed))
        .map(|(id, _)| *id)
    else {
        return false;
    };
    if let Some(c) = reg.by_age.remove(&id) {
        // A stored permit: the task closes the connection at its next poll even if it is not
        // waiting on `shed` right now.
        c.shed.notify_one();
    }
    true
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.connections.registry().by_age.remove(&self.id);
    }
}

/// What the handlers read: the published snapshot, the event loop's health, the metrics
/// registry (whose collectors read the snapshot too) and the remediation history as the
/// remediation loop last serialized it. No handler reaches the table, /proc or an action.
#[derive(Clone)]
pub struct Api {
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    /// Where a handler asks for a fresher snapshot (it never builds one itself).
    pub demand: Arc<Demand>,
    pub health: Arc<Health>,
    pub metrics: Arc<Metrics>,
    /// `/remediations` as JSON (`[]` when remediation is off).
    pub remediations: watch::Receiver<Bytes>,
    /// The cap on answer bytes held across all connections (`--http-max-bytes-in-flight`).
    pub in_flight: Arc<crate::inflight::InFlight>,
}

pub fn router(api: Api) -> Router {
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
        .with_state(api)
}

/// Runs `render` on the blocking pool: encoding a large answer (a few MB of JSON at 10,000
/// zombies) must not hold the thread the event loop shares with the handlers.
async fn off_loop(
    content_type: &'static str,
    render: impl FnOnce() -> Vec<u8> + Send + 'static,
) -> Response {
    match tokio::task::spawn_blocking(render).await {
        Ok(body) => ([(header::CONTENT_TYPE, content_type)], body).into_response(),
        Err(e) => {
            tracing::warn!("rendering a response failed: {e}");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
        }
    }
}

const JSON: &str = "application/json";

/// How old the parts a response shows may be. The zombies themselves are always current
/// (a snapshot is published after every change); the age bounds their diagnosis, which
/// follows processes that change without an event. Budgets are read when a scrape finds
/// them older than a second (a scrape then waits for one read, a millisecond or so), the
/// init metric keeps an audit for 15 s, as it always did, and `/audit` shows one taken
/// after the request came. An age at least [`snapshot::DEMAND_GAP`] means a scraper never
/// waits for the gap, only for a build.
const ZOMBIES_MAX_AGE: Duration = Duration::from_secs(1);
const BUDGET_MAX_AGE: Duration = Duration::from_secs(1);
const INIT_INFO_MAX_AGE: Duration = Duration::from_secs(15);

async fn metrics(State(api): State<Api>) -> Response {
    // The collectors read the published snapshot; make it fresh enough first.
    snapshot::fresh(
        &api.snapshot,
        &api.demand,
        &[
            (Part::Zombies, ZOMBIES_MAX_AGE),
            (Part::Budget, BUDGET_MAX_AGE),
            (Part::Audit, INIT_INFO_MAX_AGE),
        ],
    )
    .await;
    let metrics = api.metrics.clone();
    off_loop("text/plain; version=0.0.4; charset=utf-8", move || {
        metrics.render().into_bytes()
    })
    .await
}

async fn healthz(State(api): State<Api>) -> impl IntoResponse {
    if api.health.is_live(clock::boottime_now(), STALL_NS) {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "event loop stalled\n")
    }
}

async fn readyz(State(api): State<Api>) -> impl IntoResponse {
    if api.health.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: eBPF programs attaching or /proc bootstrap running\n",
        )
    }
}

/// What `/zombies` accepts: filters and a page. Names are a contract, like the paths.
#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ZombiesQuery {
    /// Only zombies of pods in this namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Only zombies of the pod of this name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// At most this many zombies (oldest first); the answer's `X-Next-Cursor` header (and a
    /// `Link: <...>; rel="next"` header) says where the next page starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Start after this cursor (a page's `X-Next-Cursor`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// The header that says where the next page of `/zombies` starts.
pub const NEXT_CURSOR_HEADER: &str = "x-next-cursor";
/// How many zombies the answer holds (known before the first byte is sent).
pub const COUNT_HEADER: &str = "x-zombies-count";
/// How many zombies the daemon lists in detail (before filters and paging).
pub const LISTED_HEADER: &str = "x-zombies-listed";
/// How many zombies there are, listed or not (see [`UNLISTED_HEADER`]).
pub const TOTAL_HEADER: &str = "x-zombies-total";
/// How many zombies are counted but not listed (above `--max-listed-zombies`: the oldest and
/// the newest are listed; counts in /metrics stay exact). Absent when every one is listed.
pub const UNLISTED_HEADER: &str = "x-zombies-unlisted";

/// Bytes of JSON encoded per chunk of a streamed `/zombies`: each reader holds one chunk
/// at a time (see [`crate::inflight`]).
pub const ZOMBIES_CHUNK_BYTES: usize = 64 * 1024;

fn bad_request(msg: String) -> Response {
    (StatusCode::BAD_REQUEST, format!("{msg}\n")).into_response()
}

/// Closes this request's connection (set by [`serve`]; absent in tests that call the router
/// directly).
#[derive(Clone)]
struct Shedder(Arc<ConnState>);

async fn zombies(
    State(api): State<Api>,
    shedder: Option<axum::Extension<Shedder>>,
    query: Result<axum::extract::Query<ZombiesQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let query = match query {
        Ok(axum::extract::Query(q)) => q,
        Err(e) => {
            return bad_request(format!(
                "{}; /zombies accepts namespace, pod, limit and after",
                e.body_text()
            ));
        }
    };
    if query.limit == Some(0) {
        return bad_request("limit must be at least 1".into());
    }
    let after = match query.after.as_deref().map(str::parse::<snapshot::Cursor>) {
        None => None,
        Some(Ok(c)) => Some(c),
        Some(Err(e)) => return bad_request(format!("after: {e}")),
    };
    let snapshot = snapshot::fresh(
        &api.snapshot,
        &api.demand,
        &[(Part::Zombies, ZOMBIES_MAX_AGE)],
    )
    .await;
    let now = clock::boottime_now();
    let filter = snapshot::Filter {
        namespace: query.namespace.clone(),
        pod: query.pod.clone(),
    };
    let page = snapshot.zombies.page(&filter, after, query.limit);
    let mut headers = axum::http::HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static(JSON),
    );
    headers.insert(COUNT_HEADER, page.count.into());
    let z = &snapshot.zombies;
    headers.insert(LISTED_HEADER, z.listed().into());
    headers.insert(TOTAL_HEADER, z.store.len().into());
    if z.unlisted > 0 {
        headers.insert(UNLISTED_HEADER, z.unlisted.into());
    }
    if let Some(next) = page.next {
        let next_query = ZombiesQuery {
            after: Some(next.to_string()),
            ..query
        };
        let link = serde_urlencoded::to_string(&next_query)
            .ok()
            .and_then(|q| format!("<{ZOMBIES_PATH}?{q}>; rel=\"next\"").parse().ok());
        if let Some(link) = link {
            headers.insert(header::LINK, link);
        }
        if let Ok(v) = next.to_string().parse() {
            headers.insert(NEXT_CURSOR_HEADER, v);
        }
    }
    let shed: crate::inflight::ShedFn = match shedder {
        Some(axum::Extension(Shedder(conn))) => Box::new(move || conn.shed.notify_one()),
        None => Box::new(|| {}),
    };
    let reader = api.in_flight.reader(shed);
    let chunks = snapshot::Chunks::new(snapshot, filter, page, now);
    let body = futures_util::stream::unfold(Some((chunks, reader)), |state| async move {
        let (mut chunks, reader) = state?;
        if chunks.is_done() {
            return None;
        }
        if let Err(e) = reader.reserve(ZOMBIES_CHUNK_BYTES).await {
            return Some((Err(io::Error::other(e)), None));
        }
        // Encoding costs about a millisecond per chunk: off the thread the event loop shares.
        match tokio::task::spawn_blocking(move || {
            let bytes = chunks.next_chunk(ZOMBIES_CHUNK_BYTES);
            (bytes, chunks)
        })
        .await
        {
            Ok((bytes, chunks)) => Some((Ok(Bytes::from(bytes)), Some((chunks, reader)))),
            Err(e) => Some((Err(io::Error::other(e)), None)),
        }
    });
    (headers, axum::body::Body::from_stream(body)).into_response()
}

/// `/audit` answers with an audit taken at most this long before the request came. Requests
/// closer together share one walk of the kubepods tree, so no client can make the daemon walk
/// it per request; each such request counts as `bound="audit_requests"` and the answer's
/// `Age` header says how old its audit is (whole seconds, as HTTP caches say it) and
/// [`AUDIT_TAKEN_AT`] exactly when it was taken.
pub const AUDIT_MAX_AGE: Duration = Duration::from_secs(2);

async fn audit(State(api): State<Api>) -> Response {
    let asked = clock::boottime_now();
    let snapshot =
        snapshot::fresh(&api.snapshot, &api.demand, &[(Part::Audit, AUDIT_MAX_AGE)]).await;
    let taken_at = snapshot.audit.taken_at;
    if taken_at > 0 && taken_at < asked {
        bounds::reached(
            Bound::AuditRequests,
            "an /audit request was answered with an audit taken before it came \
             (requests within 2 s share one walk)",
        );
    }
    let age = Duration::from_nanos(asked.saturating_sub(taken_at)).as_secs();
    let mut response = off_loop(JSON, move || {
        serde_json::to_vec(&snapshot.audit.containers).unwrap_or_default()
    })
    .await;
    let headers = response.headers_mut();
    headers.insert(header::AGE, age.into());
    // The exact moment, on the clock the daemon stamps everything with (CLOCK_BOOTTIME, as
    // `/proc/uptime` counts it): a client that made a change can wait for an audit after it.
    headers.insert(AUDIT_TAKEN_AT, taken_at.into());
    response
}

/// When the audit in an `/audit` answer was taken: CLOCK_BOOTTIME in nanoseconds.
pub const AUDIT_TAKEN_AT: &str = "x-audit-taken-at-boottime-ns";

/// Recent remediation decisions, oldest first (empty when remediation is off).
async fn remediations(State(api): State<Api>) -> Response {
    let body = api.remediations.borrow().clone();
    ([(header::CONTENT_TYPE, JSON)], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_ids(c: &Connections) -> Vec<u64> {
        c.registry().by_age.keys().copied().collect()
    }

    /// The shed signal is stored: the connection's task sees it at its next poll.
    fn was_shed(slot: &Slot) -> bool {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(async {
                tokio::time::timeout(Duration::from_millis(10), slot.state.shed.notified())
                    .await
                    .is_ok()
            })
    }

    #[test]
    fn at_the_cap_the_oldest_idle_connection_is_shed_never_a_busy_one() {
        let c = Arc::new(Connections::new(2));
        let oldest = c.admit().unwrap();
        let older = c.admit().unwrap();
        let busy = Busy::new(oldest.state.clone());
        let new = c.admit().unwrap();
        assert_eq!(open_ids(&c), [oldest.id, new.id]);
        assert!(was_shed(&older) && !was_shed(&oldest));

        // Every open connection busy: the new one is refused, nothing is shed.
        let busy_too = Busy::new(new.state.clone());
        assert!(c.admit().is_none());
        assert_eq!(open_ids(&c), [oldest.id, new.id]);

        // Idle again: the oldest goes first.
        drop(busy);
        let newest = c.admit().unwrap();
        assert!(was_shed(&oldest));
        assert_eq!(open_ids(&c), [new.id, newest.id]);
        drop(busy_too);

        // A connection that ends gives its place back.
        drop(newest);
        assert_eq!(open_ids(&c), [new.id]);
    }

    #[test]
    fn the_cap_fits_the_open_files_limit() {
        assert_eq!(connection_cap(None), MAX_CONNECTIONS);
        assert_eq!(connection_cap(Some(1_048_576)), MAX_CONNECTIONS);
        assert_eq!(connection_cap(Some(1024)), 1024 - RESERVED_FDS as usize);
        assert_eq!(connection_cap(Some(300)), 150);
        assert_eq!(connection_cap(Some(0)), 1);
    }
}
