//! The API under hostile clients: a thousand connections that send nothing, trickle a header
//! or idle after a request do not delay probes and scrapes, are closed by the daemon after the
//! header timeout, and cost bounded memory; beyond the connection cap the oldest idle ones
//! are shed and probes are still served.

use std::{
    io::{ErrorKind, Read, Write},
    net::TcpStream,
    os::fd::AsRawFd,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use zombie_daemon::http::{HEADER_READ_TIMEOUT, WRITE_STALL_TIMEOUT, connection_cap};

use crate::harness::{Daemon, Workload, http_get, poll};

/// Connections that connect and send nothing.
const IDLE: usize = 1000;
/// Connections that send a request line and then one header byte at a time.
const SLOW: usize = 100;
/// Connections that complete one keep-alive request and then send nothing.
const KEPT_ALIVE: usize = 20;
/// Timed requests per path.
const PROBES: usize = 10;
/// The bound: a kubelet probe must never wait behind hostile connections.
const PROBE_BOUND: Duration = Duration::from_millis(100);
/// Connections opened beyond the cap in the shedding phase.
const BEYOND_CAP: usize = 200;
/// What a held connection may add to the daemon's RSS: at most about 26 KiB are allocated for
/// one (hyper's read and write buffers once it sent a byte, its task and socket registration;
/// see `MAX_CONNECTIONS`), rounded up for allocator overhead. Idle ones cost far less.
const RSS_PER_CONNECTION: u64 = 32 * 1024;
/// Slack over the per-connection bound for the probes' own allocations.
const RSS_SLACK: u64 = 8 * 1024 * 1024;

#[test]
fn probes_are_served_at_once_while_a_thousand_hostile_connections_are_open() {
    // Start the daemon with the default soft limit (1024) of a released setup: it must raise
    // it itself. Then this process needs the hard limit for its own connections.
    let limit = OpenFiles::get();
    let d = start_with_the_released_soft_limit(limit);
    let _raised = limit.set_soft(limit.hard);
    // The bound is about how connections are handled, not about CPU share: on a machine busy
    // with other builds and tests, the daemon and this client would otherwise wait for a core
    // as long as the bound itself. A node gives the DaemonSet its CPU request the same way.
    favour(d.pid());
    favour(std::process::id() as i32);
    let soft = check_the_daemon_raised_its_soft_limit(&d, limit);

    // Warm up every path so the baseline includes what answering costs.
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(d.get(path).unwrap().0, 200);
    }
    let rss_before = rss(d.pid());

    let hostile = Hostile::open(d.port);
    let held = wait_held(&d, hostile.opened);
    check_probes_while_held(&d, held, rss_before, hostile.opened);
    check_closed_after_the_header_timeout(hostile);
    check_oldest_shed_beyond_the_cap(&d, soft, rss_before);
    assert_eq!(d.get("/healthz").unwrap().0, 200);
}

/// The daemon, started with the soft RLIMIT_NOFILE of a released setup (1024).
fn start_with_the_released_soft_limit(limit: OpenFiles) -> Daemon {
    let need = (IDLE + SLOW + KEPT_ALIVE + 100) as u64;
    assert!(
        limit.hard >= need,
        "this test holds {need} sockets: raise the hard RLIMIT_NOFILE (ulimit -Hn) above {}",
        limit.hard
    );
    let _lowered = limit.set_soft(1024);
    Daemon::start()
}

/// The daemon raised its soft RLIMIT_NOFILE to the hard one, and said so; returns it.
fn check_the_daemon_raised_its_soft_limit(d: &Daemon, limit: OpenFiles) -> u64 {
    let (soft, hard) = daemon_open_files(d.pid());
    assert_eq!(
        (soft, hard),
        (limit.hard, limit.hard),
        "the daemon did not raise its soft RLIMIT_NOFILE"
    );
    assert!(
        d.log_text().contains("soft raised to hard"),
        "{}",
        d.log_text()
    );
    soft
}

/// The hostile connections, each with when it was opened (or, kept alive, answered).
struct Hostile {
    kept_alive: Vec<(TcpStream, Instant)>,
    idle: Vec<(TcpStream, Instant)>,
    /// Sending one header byte at a time (by `trickle`).
    slow: Vec<(TcpStream, Instant)>,
    trickle: Trickle,
    /// When the last of them was opened.
    opened: Instant,
}

impl Hostile {
    fn open(port: u16) -> Self {
        let mut kept_alive = Vec::new();
        for _ in 0..KEPT_ALIVE {
            kept_alive.push(kept_alive_connection(port));
        }
        let mut idle = Vec::new();
        for _ in 0..IDLE {
            let s = connect(port);
            idle.push((s, Instant::now()));
        }
        let mut slow = Vec::new();
        for _ in 0..SLOW {
            let mut s = connect(port);
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                .unwrap();
            slow.push((s, Instant::now()));
        }
        let trickle = Trickle::start(slow.iter().map(|(s, _)| s.try_clone().unwrap()).collect());
        Hostile {
            kept_alive,
            idle,
            slow,
            trickle,
            opened: Instant::now(),
        }
    }
}

/// The daemon holds them all (none refused, none shed); returns how many it holds.
fn wait_held(d: &Daemon, opened: Instant) -> usize {
    let want = IDLE + SLOW + KEPT_ALIVE;
    let mut held = 0;
    while opened.elapsed() < Duration::from_secs(2) {
        held = connections_held(d.pid(), d.port);
        if held >= want {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        held >= want,
        "the daemon holds {held} of {want} connections"
    );
    held
}

/// With the hostile connections held, every probe answers within the bound, before any
/// header timeout, and the daemon's memory grew by at most the bound per connection.
fn check_probes_while_held(d: &Daemon, held: usize, rss_before: u64, opened: Instant) {
    let latencies = probe_all(d.port);
    let rss_during = rss(d.pid());
    let hostile = (IDLE + SLOW + KEPT_ALIVE) as u64;
    eprintln!(
        "{held} connections held; RSS before {} KiB, during {} KiB ({} B per connection)",
        rss_before / 1024,
        rss_during / 1024,
        rss_during.saturating_sub(rss_before) / hostile
    );
    for (path, l) in &latencies {
        eprintln!("{path}: {}", summary(l));
        assert!(
            l.iter().all(|t| *t < PROBE_BOUND),
            "{path} took {} with {held} hostile connections open",
            summary(l)
        );
    }
    assert!(
        opened.elapsed() < HEADER_READ_TIMEOUT - Duration::from_millis(500),
        "the probes ran too late to prove anything: {:?} after the connections opened",
        opened.elapsed()
    );
    assert!(
        rss_during <= rss_before + hostile * RSS_PER_CONNECTION + RSS_SLACK,
        "RSS grew from {} KiB to {} KiB with {hostile} connections",
        rss_before / 1024,
        rss_during / 1024
    );
}

/// Every hostile connection is closed by the daemon once its header time is up, and not
/// before (nothing was shed below the cap).
fn check_closed_after_the_header_timeout(hostile: Hostile) {
    let Hostile {
        kept_alive,
        idle,
        slow,
        trickle,
        ..
    } = hostile;
    let all: Vec<(&TcpStream, Instant)> = idle
        .iter()
        .chain(&slow)
        .chain(&kept_alive)
        .map(|(s, t)| (s, *t))
        .collect();
    let closed_after = wait_closed(&all, HEADER_READ_TIMEOUT + Duration::from_secs(3));
    drop(trickle);
    for (name, range) in [
        ("idle", 0..IDLE),
        ("slow", IDLE..IDLE + SLOW),
        ("kept alive", IDLE + SLOW..all.len()),
    ] {
        let times: Vec<Duration> = closed_after[range]
            .iter()
            .map(|t| t.unwrap_or_else(|| panic!("a {name} connection was never closed")))
            .collect();
        eprintln!("{name} connections closed after {}", summary(&times));
        for t in &times {
            assert!(
                *t >= HEADER_READ_TIMEOUT - Duration::from_millis(100)
                    && *t <= HEADER_READ_TIMEOUT + Duration::from_secs(2),
                "a {name} connection was closed after {t:?} (header timeout {HEADER_READ_TIMEOUT:?})"
            );
        }
    }
    drop((idle, slow, kept_alive));
}

/// Beyond the cap: the oldest idle connections are shed at once and probes still pass.
fn check_oldest_shed_beyond_the_cap(d: &Daemon, soft: u64, rss_before: u64) {
    let cap = connection_cap(Some(soft));
    let mut flood = Vec::new();
    for _ in 0..cap + BEYOND_CAP {
        let s = connect(d.port);
        flood.push((s, Instant::now()));
    }
    let latencies = probe_all(d.port);
    let rss_flood = rss(d.pid());
    eprintln!(
        "{} connections opened with a cap of {cap}: RSS {} KiB",
        flood.len(),
        rss_flood / 1024
    );
    for (path, l) in &latencies {
        eprintln!("{path} beyond the cap: {}", summary(l));
        assert!(
            l.iter().all(|t| *t < PROBE_BOUND),
            "{path} took {} beyond the cap",
            summary(l)
        );
    }
    let oldest: Vec<(&TcpStream, Instant)> =
        flood[..BEYOND_CAP].iter().map(|(s, t)| (s, *t)).collect();
    let shed = wait_closed(&oldest, Duration::from_secs(2));
    assert!(
        shed.iter()
            .all(|t| t.is_some_and(|t| t < HEADER_READ_TIMEOUT / 2)),
        "the oldest connections beyond the cap were not shed at once: {shed:?}"
    );
    let newest: Vec<(&TcpStream, Instant)> = flood[flood.len() - cap / 2..]
        .iter()
        .map(|(s, t)| (s, *t))
        .collect();
    assert!(
        still_open(&newest),
        "newer connections were shed before older ones"
    );
    assert!(
        rss_flood <= rss_before + (cap as u64) * RSS_PER_CONNECTION + RSS_SLACK,
        "RSS grew from {} KiB to {} KiB with {cap} connections",
        rss_before / 1024,
        rss_flood / 1024
    );
    drop(flood);
}

/// A client that asks for a large answer and never reads it: the daemon's write blocks, and
/// the connection is closed once the write has made no progress for the stall timeout, not
/// held (with its answer) for as long as the client likes.
#[test]
fn a_client_that_never_reads_its_answer_is_cut_off() {
    let d = Daemon::start();
    // Enough zombies for a /zombies answer far larger than the socket buffers.
    let (w, _) = Workload::spawn(&["never-wait", "3000"]);
    poll("3000 zombies", Duration::from_secs(10), || {
        (d.children_of(w.pid()).len() == 3000).then_some(())
    });
    let size = d.get("/zombies").unwrap().1.len();
    assert!(size > 1 << 20, "/zombies is only {size} bytes");

    let mut s = connect_with_small_receive_buffer(d.port);
    s.write_all(b"GET /zombies HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let asked = Instant::now();
    // Still held after the header timeout: the daemon is blocked writing, not idle.
    std::thread::sleep(HEADER_READ_TIMEOUT + Duration::from_secs(1));
    assert_eq!(
        connections_held(d.pid(), d.port),
        1,
        "the stalled connection was not held while its answer was being written"
    );
    let closed = poll(
        "the daemon to give up the stalled connection",
        WRITE_STALL_TIMEOUT + Duration::from_secs(3),
        || (connections_held(d.pid(), d.port) == 0).then(|| asked.elapsed()),
    );
    eprintln!("a {size}-byte answer never read: the connection was closed after {closed:?}");
    assert!(
        closed >= WRITE_STALL_TIMEOUT - Duration::from_millis(100)
            && closed <= WRITE_STALL_TIMEOUT + Duration::from_secs(2),
        "closed after {closed:?} (stall timeout {WRITE_STALL_TIMEOUT:?})"
    );
    drop(s);
    assert_eq!(d.get("/healthz").unwrap().0, 200);
}

/// Clients that ask for `/zombies` and stop reading hold at most `--http-max-bytes-in-flight`
/// of answers between them; when a reading client needs room, the one stalled the longest is
/// cut off first (and only as many as needed); the reading client gets its whole answer, and
/// pages (`?limit=`, `?after=` from `X-Next-Cursor`) and filters work meanwhile.
#[test]
fn slow_readers_hold_at_most_the_answer_budget_and_the_slowest_is_cut_off_first() {
    const CHUNK: u64 = zombie_daemon::http::ZOMBIES_CHUNK_BYTES as u64;
    // Room for four readers' chunks.
    let cap = 4 * CHUNK;
    let d = Daemon::start_with(&["--http-max-bytes-in-flight", &cap.to_string()]);
    let (w, _) = Workload::spawn(&["never-wait", "3000"]);
    poll("3000 zombies", Duration::from_secs(10), || {
        (d.children_of(w.pid()).len() == 3000).then_some(())
    });
    assert_eq!(d.metric("zombie_http_readers_shed_total"), 0.0);

    // Four clients that never read, one after another: each stalls holding one chunk, and
    // the first has stalled the longest.
    let mut stalled = vec![];
    for i in 1..=4 {
        let mut s = connect_with_small_receive_buffer(d.port);
        s.write_all(b"GET /zombies HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .unwrap();
        poll(
            "the non-reading client to hold a chunk",
            Duration::from_secs(10),
            || (d.metric("zombie_http_bytes_in_flight") >= (i * CHUNK) as f64).then_some(()),
        );
        stalled.push(s);
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(d.metric("zombie_http_bytes_in_flight"), cap as f64);
    let held: Vec<u16> = stalled
        .iter()
        .map(|s| s.local_addr().unwrap().port())
        .collect();
    assert_eq!(peers_held(d.pid(), d.port), held.iter().copied().collect());
    // Past the shedding threshold: a stalled reader may now give way.
    std::thread::sleep(zombie_daemon::inflight::SHED_AFTER);

    // A client that reads gets every zombie; to make room the first stalled one goes.
    let (status, body) = d.get("/zombies").unwrap();
    assert_eq!(status, 200);
    let all: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    assert!(all.len() >= 3000, "{} zombies listed", all.len());
    assert_eq!(d.metric("zombie_http_readers_shed_total"), 1.0);
    poll(
        "the longest-stalled client's connection to be closed",
        Duration::from_secs(5),
        || (peers_held(d.pid(), d.port) == held[1..].iter().copied().collect()).then_some(()),
    );
    assert!(d.metric("zombie_http_bytes_in_flight") <= cap as f64);

    // Pages of 1,000 zombies of the workload's parent, continued through X-Next-Cursor,
    // list each once.
    let mut seen = std::collections::HashSet::new();
    let mut path = "/zombies?limit=1000".to_string();
    let mut pages = 0;
    loop {
        let (status, headers, body) = get_with_headers(d.port, &path);
        assert_eq!(status, 200, "{path}: {body}");
        let page: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
        assert!(page.len() <= 1000);
        assert_eq!(
            header(&headers, "x-zombies-count"),
            Some(page.len().to_string())
        );
        for z in &page {
            assert!(seen.insert(z["pid"].as_u64().unwrap()), "listed twice: {z}");
        }
        pages += 1;
        match header(&headers, "x-next-cursor") {
            Some(c) => {
                assert!(header(&headers, "link").is_some_and(|l| l.contains("rel=\"next\"")));
                path = format!("/zombies?limit=1000&after={c}");
            }
            None => break,
        }
    }
    assert!(
        pages >= 3 && seen.len() >= 3000,
        "{pages} pages, {} zombies",
        seen.len()
    );
    let (status, body) = d.get("/zombies?namespace=no-such-namespace").unwrap();
    assert_eq!((status, body.as_str()), (200, "[]"));
    for bad in [
        "/zombies?limit=0",
        "/zombies?limit=x",
        "/zombies?after=nope",
        "/zombies?frob=1",
    ] {
        let (status, body) = d.get(bad).unwrap();
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(
            body.trim().lines().count(),
            1,
            "{bad}: one clear line: {body}"
        );
    }
    drop(stalled);
    poll(
        "the answers held to be given back",
        Duration::from_secs(5),
        || (d.metric("zombie_http_bytes_in_flight") == 0.0).then_some(()),
    );
    assert_eq!(d.get("/healthz").unwrap().0, 200);
}

/// Above `--max-listed-zombies`, `/metrics` still counts every zombie, `/zombies` lists the
/// oldest and the newest (a new zombie still shows) and says how many it left out, a metric
/// and the log say so; below it again, every zombie is listed.
#[test]
fn above_the_listing_ceiling_counts_stay_exact_and_details_are_sampled() {
    const MAX: u64 = 100;
    let d = Daemon::start_with(&["--max-listed-zombies", &MAX.to_string()]);
    let (mut w, _) = Workload::spawn(&["never-wait", "1000"]);
    let total = poll("1000 more zombies counted", Duration::from_secs(10), || {
        let (_, headers, _) = get_with_headers(d.port, "/zombies?limit=1");
        let total: u64 = header(&headers, "x-zombies-total")?.parse().ok()?;
        (total >= 1000).then_some(total)
    });
    let (status, headers, body) = get_with_headers(d.port, "/zombies");
    assert_eq!(status, 200);
    let listed: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(listed.len() as u64, MAX);
    assert_eq!(header(&headers, "x-zombies-listed"), Some(MAX.to_string()));
    let total_now: u64 = header(&headers, "x-zombies-total")
        .unwrap()
        .parse()
        .unwrap();
    assert!(total_now >= total.min(1000), "{total_now} of {total}");
    assert_eq!(
        header(&headers, "x-zombies-unlisted"),
        Some((total_now - MAX).to_string())
    );
    // The counts are exact: every zombie of the workload is in zombie_processes.
    assert!(d.metric("zombie_processes") >= 1000.0);
    assert!(d.metric("zombie_processes_unlisted") >= (1000 - MAX) as f64);
    assert!(
        d.log_text()
            .contains("more zombies than --max-listed-zombies")
    );

    // A new zombie is among the newest, so it is listed.
    let (newer, _) = Workload::spawn(&["never-wait", "1"]);
    poll("the new zombie listed", Duration::from_secs(5), || {
        (!d.children_of(newer.pid()).is_empty()).then_some(())
    });

    // The workload reaps its 1,000: every zombie listed again.
    w.send("reap");
    w.read_json();
    poll("every zombie listed again", Duration::from_secs(10), || {
        (d.metric("zombie_processes_unlisted") == 0.0).then_some(())
    });
    let (_, headers, _) = get_with_headers(d.port, "/zombies");
    assert_eq!(header(&headers, "x-zombies-unlisted"), None);
    assert!(
        d.log_text()
            .contains("every zombie is listed in detail again")
    );
}

/// The client ports of the established connections on `port` that `pid` holds.
fn peers_held(pid: i32, port: u16) -> std::collections::BTreeSet<u16> {
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap();
    let local = format!(":{port:04X}");
    let inodes: std::collections::HashMap<String, u16> = table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() <= 9 || !f[1].ends_with(&local) || f[3] != "01" {
                return None;
            }
            let peer = u16::from_str_radix(f[2].rsplit(':').next()?, 16).ok()?;
            Some((f[9].to_string(), peer))
        })
        .collect();
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_str()?.to_string();
            let inode = l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string();
            inodes.get(&inode).copied()
        })
        .collect()
}

/// A GET that keeps the headers: (status, lower-cased header lines, body).
fn get_with_headers(port: u16, path: &str) -> (u16, Vec<(String, String)>, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap();
    let headers = lines
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect();
    (status, headers, body.to_string())
}

fn header(headers: &[(String, String)], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

/// A TCP connection whose receive buffer (hence the window it advertises) is 4 KiB, set before
/// connecting as the window scale is fixed then.
fn connect_with_small_receive_buffer(port: u16) -> TcpStream {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket calls on a descriptor we own; it is handed to TcpStream once
    // connected, which closes it.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let s = TcpStream::from_raw_fd(fd);
        let size: libc::c_int = 4096;
        let rc = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "SO_RCVBUF: {}", std::io::Error::last_os_error());
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
            },
            sin_zero: [0; 8],
        };
        let rc = libc::connect(
            fd,
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "connect: {}", std::io::Error::last_os_error());
        s
    }
}

/// `PROBES` timed requests to each probed path, interleaved, each on a new connection as the
/// kubelet makes them: path -> latencies (connect to last byte).
fn probe_all(port: u16) -> Vec<(&'static str, Vec<Duration>)> {
    let paths = ["/healthz", "/readyz", "/metrics"];
    let mut out: Vec<(&str, Vec<Duration>)> = paths.iter().map(|p| (*p, vec![])).collect();
    for _ in 0..PROBES {
        for (path, times) in &mut out {
            let t = Instant::now();
            let (status, body) = http_get(port, path).unwrap();
            times.push(t.elapsed());
            assert_eq!(status, 200, "{path}: {body}");
        }
    }
    out
}

fn summary(times: &[Duration]) -> String {
    let mut t = times.to_vec();
    t.sort();
    format!(
        "min {:?} median {:?} max {:?} (n={})",
        t[0],
        t[t.len() / 2],
        t[t.len() - 1],
        t.len()
    )
}

/// A connection to the daemon. Connecting waits for the accept queue only: a daemon that
/// stops accepting fills it, and the kernel then drops SYNs, so this fails in seconds rather
/// than retrying for minutes.
fn connect(port: u16) -> TcpStream {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("connecting to the daemon: {e} (is it still accepting?)"))
}

/// A connection that made one HTTP/1.1 request, read its answer and stays open: from then
/// on it idles between requests.
fn kept_alive_connection(port: u16) -> (TcpStream, Instant) {
    let mut s = connect(port);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut resp = Vec::new();
    let mut buf = [0u8; 1024];
    while !resp.ends_with(b"\r\n\r\nok\n") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed before the answer: {resp:?}");
        resp.extend_from_slice(&buf[..n]);
    }
    assert!(resp.starts_with(b"HTTP/1.1 200"), "{resp:?}");
    (s, Instant::now())
}

/// Waits up to `timeout` for the daemon to close each connection (EOF or reset); for each,
/// the time from its `Instant` to when it was seen closed, or `None`.
fn wait_closed(conns: &[(&TcpStream, Instant)], timeout: Duration) -> Vec<Option<Duration>> {
    let deadline = Instant::now() + timeout;
    let mut closed: Vec<Option<Duration>> = vec![None; conns.len()];
    while closed.iter().any(Option::is_none) && Instant::now() < deadline {
        let open: Vec<usize> = (0..conns.len()).filter(|i| closed[*i].is_none()).collect();
        let mut fds: Vec<libc::pollfd> = open
            .iter()
            .map(|i| libc::pollfd {
                fd: conns[*i].0.as_raw_fd(),
                events: libc::POLLIN | libc::POLLRDHUP,
                revents: 0,
            })
            .collect();
        // SAFETY: poll on a valid array of pollfd we own.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 20) };
        assert!(n >= 0, "poll: {}", std::io::Error::last_os_error());
        for (k, fd) in fds.iter().enumerate() {
            if fd.revents != 0 && is_closed(conns[open[k]].0) {
                closed[open[k]] = Some(conns[open[k]].1.elapsed());
            }
        }
    }
    closed
}

/// The peer closed `s`: a read gives EOF or a reset (after any answer the daemon sent, such as
/// a 408), not "would block".
fn is_closed(s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 4096];
    let mut r = s;
    let closed = loop {
        match r.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break true,
        }
    };
    s.set_nonblocking(false).unwrap();
    closed
}

fn still_open(conns: &[(&TcpStream, Instant)]) -> bool {
    conns.iter().all(|(s, _)| !is_closed(s))
}

/// Writes one more header byte to each slow connection every 250 ms until dropped.
struct Trickle {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Trickle {
    fn start(mut conns: Vec<TcpStream>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                // A connection the daemon closed fails to write: drop it.
                conns.retain_mut(|s| s.write_all(b"a").is_ok());
                std::thread::sleep(Duration::from_millis(250));
            }
        });
        Trickle {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Trickle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// This process's RLIMIT_NOFILE.
#[derive(Clone, Copy)]
struct OpenFiles {
    soft: u64,
    hard: u64,
}

/// Restores the soft limit it was made from when dropped.
struct RestoreSoft(OpenFiles);

impl OpenFiles {
    fn get() -> Self {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit with a valid out-pointer.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) }, 0);
        OpenFiles {
            soft: r.rlim_cur,
            hard: r.rlim_max,
        }
    }

    fn set(soft: u64, hard: u64) {
        let r = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: setrlimit with a valid pointer.
        let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) };
        assert_eq!(rc, 0, "setrlimit: {}", std::io::Error::last_os_error());
    }

    /// Sets the soft limit until the guard is dropped.
    fn set_soft(self, soft: u64) -> RestoreSoft {
        Self::set(soft.min(self.hard), self.hard);
        RestoreSoft(self)
    }
}

impl Drop for RestoreSoft {
    fn drop(&mut self) {
        OpenFiles::set(self.0.soft, self.0.hard);
    }
}

/// Raises the scheduling priority of every thread of process `pid` to nice -10. On Linux
/// `setpriority(PRIO_PROCESS, id)` sets one thread's (the one whose TID is `id`), so each
/// of /proc/<pid>/task is set, and threads started later inherit it from their creator.
/// Checked: every thread's nice (field 19 of its stat) is -10 afterwards.
fn favour(pid: i32) {
    let tasks = || -> Vec<i32> {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect()
    };
    for tid in tasks() {
        // SAFETY: setpriority with plain integer arguments.
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, -10) };
        assert_eq!(
            rc,
            0,
            "setpriority {tid}: {}",
            std::io::Error::last_os_error()
        );
    }
    for tid in tasks() {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).unwrap();
        // After the comm's closing parenthesis: state is field 3, nice field 19.
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let nice: i32 = after.split_whitespace().nth(16).unwrap().parse().unwrap();
        assert_eq!(nice, -10, "thread {tid} of {pid} is not favoured: {stat}");
    }
}

/// The daemon's open-files limit, (soft, hard), from /proc/<pid>/limits.
fn daemon_open_files(pid: i32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or_else(|| panic!("no open files limit in {limits}"));
    let mut n = line
        .split_whitespace()
        .filter_map(|w| w.parse::<u64>().ok());
    (n.next().unwrap(), n.next().unwrap())
}

fn rss(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in {status}"));
    kib * 1024
}

/// Established TCP connections on `port` whose socket `pid` holds (accepted, not queued).
fn connections_held(pid: i32, port: u16) -> usize {
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap();
    let local = format!(":{port:04X}");
    let inodes: std::collections::HashSet<String> = table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 9 && f[1].ends_with(&local) && f[3] == "01").then(|| f[9].to_string())
        })
        .collect();
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_str()?.to_string();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .filter(|inode| inodes.contains(inode))
        .count()
}
