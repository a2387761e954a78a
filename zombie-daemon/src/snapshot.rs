//! What every reader sees: an immutable picture of the zombie table and of the node, built
//! off the event loop and published on a `tokio::sync::watch` channel.
//!
//! The event loop owns the table ([`crate::tracker::Tracker`]) and the attributor; after a
//! batch that changed what readers see it hands a copy of the table and the snapshot
//! builder (which owns the attributor; see `daemon::build`) to the blocking pool, which attributes and diagnoses every
//! zombie, reads the PID budgets and audits the containers as due, and publishes a new
//! `Arc<Snapshot>`. The HTTP handlers, the metric collectors and the remediation loop hold
//! only a receiver: no reader takes a lock of the core or reads /proc on request, so a
//! scrape cannot stall the loop that drains the ring buffer, and reading never acts.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::sync::{Notify, watch};

use crate::{
    attribution::Attribution,
    audit::ContainerAudit,
    budget::{CgroupBudget, NodeBudget},
    clock::{self, WallClock},
    diagnosis::{Cause, Diagnosis},
    tracker::{Ns, OriginKind, ProcKey, Zombie},
    view::{self, OriginView, ZombieView},
};

/// The published picture. Its parts are shared with the snapshot before it when they were
/// not rebuilt.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub zombies: Arc<Zombies>,
    pub budget: Arc<Budget>,
    /// Every container's PID 1 (command lines redacted unless `--show-cmdlines`).
    pub audit: Arc<Audit>,
}

/// The zombie table as readers see it.
#[derive(Clone, Debug, Default)]
pub struct Zombies {
    /// CLOCK_BOOTTIME when the table was copied.
    pub taken_at: Ns,
    /// The table's fingerprint when copied (see [`crate::tracker::Tracker::fingerprint`]).
    pub fingerprint: u64,
    /// Boot-relative to wall-clock time, as of the build.
    pub wall: WallClock,
    /// Every zombie, oldest first, attributed and diagnosed; above `--max-listed-zombies`
    /// only the oldest and the newest (see `unlisted`).
    pub views: Vec<Listed>,
    /// Zombies counted in the series below but not listed in `views` (0 unless there are
    /// more than `--max-listed-zombies`): counts stay exact, details are sampled.
    pub unlisted: u64,
    /// Per container: how many zombies and the oldest one's exit time, at most
    /// [`MAX_CONTAINER_SERIES`] series (the rest summed into `_other`).
    pub containers: Vec<ContainerZombies>,
    /// Per container and cause, with the same cap.
    pub by_cause: Vec<(Labels, Cause, u64)>,
    /// Per container and origin kind, with the same cap.
    pub by_origin: Vec<(Labels, OriginKind, u64)>,
}

/// `namespace`, `pod`, `container` label values (empty for host processes).
pub type Labels = [String; 3];

/// One zombie as listed: its facts, and what it shares with others (attribution,
/// diagnosis, origin, labels: one each per cgroup, parent or lineage). The `/zombies`
/// object is made when read ([`Zombies::aged`]), so a snapshot of 100,000 zombies holds
/// 100,000 small records, not 100,000 objects of strings.
#[derive(Clone, Debug)]
pub struct Listed {
    pub zombie: Zombie,
    pub cgroup_path: Option<Arc<str>>,
    pub attribution: Arc<Attribution>,
    pub diagnosis: Arc<Diagnosis>,
    pub origin: Arc<OriginView>,
    pub labels: Arc<Labels>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerZombies {
    pub labels: Labels,
    pub count: u64,
    /// CLOCK_BOOTTIME of the oldest zombie's exit: its age is computed when read.
    pub oldest_exited_at: Ns,
}

impl Listed {
    /// Its `/zombies` object, with its age as of `now`.
    pub fn view(&self, now: Ns, wall: &WallClock) -> ZombieView {
        view::view_of(
            &self.zombie,
            self.cgroup_path.as_deref(),
            &self.attribution,
            Some(&self.diagnosis),
            Some(OriginView::clone(&self.origin)),
            now,
            wall,
        )
    }

    /// Its place in the list's order (oldest first), as a page cursor.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            exited_at: self.zombie.exited_at,
            key: self.zombie.key,
        }
    }
}

impl Zombies {
    /// The `/zombies` objects, with ages as of `now`.
    pub fn aged(&self, now: Ns) -> Vec<ZombieView> {
        self.views.iter().map(|l| l.view(now, &self.wall)).collect()
    }

    /// Where a page of the zombies `filter` selects starts and ends: after `after` (or from
    /// the oldest), at most `limit` of them. The cursor of the page's last zombie comes
    /// with it when more follow.
    pub fn page(&self, filter: &Filter, after: Option<Cursor>, limit: Option<usize>) -> Page {
        let start = after.map_or(0, |c| {
            self.views
                .partition_point(|l| (l.zombie.exited_at, l.zombie.key) <= (c.exited_at, c.key))
        });
        let limit = limit.unwrap_or(usize::MAX);
        let mut page = Page {
            start,
            end: start,
            count: 0,
            next: None,
        };
        for (i, l) in self.views.iter().enumerate().skip(start) {
            if !filter.matches(l) {
                continue;
            }
            if page.count == limit {
                // One more matches: the client continues after the last one sent.
                page.next = self.views[..page.end].last().map(Listed::cursor);
                break;
            }
            page.count += 1;
            page.end = i + 1;
        }
        page
    }
}

/// Which zombies a `/zombies` request wants (`?namespace=`, `?pod=`; none: all).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub namespace: Option<String>,
    pub pod: Option<String>,
}

impl Filter {
    pub fn matches(&self, l: &Listed) -> bool {
        let is = |want: &Option<String>, have: &Option<String>| {
            want.as_ref().is_none_or(|w| have.as_ref() == Some(w))
        };
        is(&self.namespace, &l.attribution.namespace) && is(&self.pod, &l.attribution.pod)
    }
}

/// A place in the list's order (exit time, then pid and start time): a page starts after
/// it. As text, `EXITED_AT_NS-PID-START_TICKS`; stable across snapshots, so a client pages
/// through a list that changes meanwhile without seeing a zombie twice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub exited_at: Ns,
    pub key: ProcKey,
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}-{}-{}",
            self.exited_at, self.key.pid, self.key.start_ticks
        )
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a cursor: expected EXITED_AT_NS-PID-START_TICKS as sent in X-Next-Cursor")]
pub struct BadCursor;

impl std::str::FromStr for Cursor {
    type Err = BadCursor;

    fn from_str(s: &str) -> Result<Self, BadCursor> {
        let mut parts = s.splitn(3, '-').map(str::parse::<u64>);
        let mut next = || parts.next().and_then(Result::ok).ok_or(BadCursor);
        let (exited_at, pid, start_ticks) = (next()?, next()?, next()?);
        Ok(Cursor {
            exited_at,
            key: ProcKey {
                pid: u32::try_from(pid).map_err(|_| BadCursor)?,
                start_ticks,
            },
        })
    }
}

/// A page of `/zombies` (see [`Zombies::page`]): the views in `start..end` that match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    pub start: usize,
    pub end: usize,
    /// How many zombies the page holds.
    pub count: usize,
    /// Where the next page starts (None: this is the last).
    pub next: Option<Cursor>,
}

/// A page of `/zombies` encoded a chunk at a time, so that an answer of any size costs one
/// chunk of memory per reader (with ages as of the request).
pub struct Chunks {
    snapshot: Arc<Snapshot>,
    filter: Filter,
    at: usize,
    end: usize,
    now: Ns,
    /// Nothing written yet (the `[` is due).
    opened: bool,
    first: bool,
    done: bool,
}

impl Chunks {
    pub fn new(snapshot: Arc<Snapshot>, filter: Filter, page: Page, now: Ns) -> Self {
        Self {
            snapshot,
            filter,
            at: page.start,
            end: page.end,
            now,
            opened: false,
            first: true,
            done: false,
        }
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The next chunk, of about `bytes` bytes (more by at most one zombie's object); empty
    /// when the answer is complete.
    pub fn next_chunk(&mut self, bytes: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(bytes + 4096);
        if self.done {
            return out;
        }
        if !std::mem::replace(&mut self.opened, true) {
            out.push(b'[');
        }
        let zombies = &self.snapshot.zombies;
        while self.at < self.end && out.len() < bytes {
            let l = &zombies.views[self.at];
            self.at += 1;
            if !self.filter.matches(l) {
                continue;
            }
            if !std::mem::take(&mut self.first) {
                out.push(b',');
            }
            // A ZombieView serializes infallibly (strings, numbers and options only).
            let _ = serde_json::to_writer(&mut out, &l.view(self.now, &zombies.wall));
        }
        if self.at >= self.end {
            out.push(b']');
            self.done = true;
        }
        out
    }
}

/// The PID budget of the node and of every pod and container cgroup.
#[derive(Clone, Debug, Default)]
pub struct Budget {
    /// CLOCK_BOOTTIME when read (0: never).
    pub taken_at: Ns,
    pub node: Option<NodeBudget>,
    /// With their labels (`container` empty for a pod's own cgroup).
    pub cgroups: Vec<(CgroupBudget, Labels)>,
}

#[derive(Clone, Debug, Default)]
pub struct Audit {
    /// CLOCK_BOOTTIME when taken (0: never).
    pub taken_at: Ns,
    /// Unredacted PID 1 names are in `pid1_comm`; `pid1_cmdline` follows `--show-cmdlines`.
    pub containers: Vec<ContainerAudit>,
}

/// The parts of a snapshot a reader can ask to be fresh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Zombies,
    Budget,
    Audit,
}

impl Snapshot {
    /// When `part` was taken (CLOCK_BOOTTIME; 0: never).
    pub fn taken_at(&self, part: Part) -> Ns {
        match part {
            Part::Zombies => self.zombies.taken_at,
            Part::Budget => self.budget.taken_at,
            Part::Audit => self.audit.taken_at,
        }
    }
}

/// Readers' requests for fresher parts. A reader never reads /proc or the table itself: it
/// records what it wants here and waits (bounded) for the event loop to publish it. The
/// loop starts such builds at most once per [`DEMAND_GAP`] for each part, so a client that
/// floods the API costs at most one build per gap, off the loop.
#[derive(Debug, Default)]
pub struct Demand {
    /// Per part, the latest time a reader wants it taken at or after.
    wanted: [AtomicU64; 3],
    notify: Notify,
}

/// At most one build a reader asked for per part in this time.
pub const DEMAND_GAP: Duration = Duration::from_millis(250);
/// A reader waits at most this long for a fresher part, then takes what is published.
pub const DEMAND_WAIT: Duration = Duration::from_secs(2);

impl Demand {
    /// `part` is wanted taken at or after `as_of`.
    pub fn ask(&self, part: Part, as_of: Ns) {
        self.wanted[part as usize].fetch_max(as_of, Ordering::AcqRel);
        self.notify.notify_one();
    }

    /// The latest time `part` is wanted taken at or after (0: never asked).
    pub fn wanted(&self, part: Part) -> Ns {
        self.wanted[part as usize].load(Ordering::Acquire)
    }

    /// Resolves when a reader asked for something (for the event loop).
    pub async fn asked(&self) {
        self.notify.notified().await;
    }
}

/// The published snapshot, with each of `parts` taken no earlier than `max_age` before
/// now (asking the event loop for newer ones and waiting up to [`DEMAND_WAIT`] for them;
/// on timeout, what is published).
pub async fn fresh(
    rx: &watch::Receiver<Arc<Snapshot>>,
    demand: &Demand,
    parts: &[(Part, Duration)],
) -> Arc<Snapshot> {
    let now = clock::boottime_now();
    let wants: Vec<(Part, Ns)> = parts
        .iter()
        .map(|(p, age)| (*p, now.saturating_sub(age.as_nanos() as u64)))
        .collect();
    let fresh_enough = |s: &Snapshot| {
        wants
            .iter()
            .all(|(p, as_of)| s.taken_at(*p) >= *as_of && s.taken_at(*p) > 0)
    };
    let mut rx = rx.clone();
    let current = rx.borrow_and_update().clone();
    if fresh_enough(&current) {
        return current;
    }
    for (p, as_of) in &wants {
        if current.taken_at(*p) < *as_of || current.taken_at(*p) == 0 {
            demand.ask(*p, *as_of);
        }
    }
    let deadline = tokio::time::Instant::now() + DEMAND_WAIT;
    loop {
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {
                let s = rx.borrow_and_update().clone();
                if fresh_enough(&s) {
                    return s;
                }
            }
            // Timed out, or the loop is gone: what there is.
            _ => return rx.borrow().clone(),
        }
    }
}

/// At most this many containers get their own zombie series; a node with more containers
/// with zombies is broken enough that the top ones tell the story.
pub const MAX_CONTAINER_SERIES: usize = 500;

/// The labels of the series that sums the containers beyond the cap.
pub fn other_labels() -> Labels {
    [String::new(), "_other".into(), "_other".into()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::{Comm, ExitFlags, Origin, Source};

    fn listed(pid: u32, exited_at: Ns, namespace: &str) -> Listed {
        let attribution = Arc::new(Attribution {
            namespace: Some(namespace.to_string()),
            pod: Some(format!("pod-{namespace}")),
            ..Attribution::default()
        });
        Listed {
            zombie: Zombie {
                key: ProcKey {
                    pid,
                    start_ticks: 5,
                },
                exited_at,
                source: Source::Event,
                ppid: 1,
                parent_start_ticks: 1,
                parent_comm: Comm::new("parent"),
                comm: Comm::new("child"),
                wait_status: 0,
                cgroup_id: 0,
                flags: ExitFlags::default(),
                parent_gone: false,
                reparented: 0,
                exit_ppid: 1,
                exit_parent_comm: Comm::new("parent"),
                origin: Origin::default(),
            },
            cgroup_path: None,
            attribution,
            diagnosis: Arc::new(Diagnosis {
                cause: Cause::Unknown,
                reaper: None,
                remedy: String::new(),
            }),
            origin: Arc::new(OriginView {
                kind: "unknown".into(),
                pid: None,
                start_ticks: None,
                comm: None,
                cmdline: None,
            }),
            labels: Arc::default(),
        }
    }

    fn snapshot(n: u32) -> Arc<Snapshot> {
        let views = (0..n)
            .map(|i| {
                listed(
                    100 + i,
                    1_000 * u64::from(i),
                    if i % 2 == 0 { "a" } else { "b" },
                )
            })
            .collect();
        Arc::new(Snapshot {
            zombies: Arc::new(Zombies {
                views,
                ..Zombies::default()
            }),
            ..Snapshot::default()
        })
    }

    /// The whole streamed answer, in chunks of about `bytes`.
    fn stream(s: &Arc<Snapshot>, filter: &Filter, page: Page, bytes: usize) -> (Vec<u32>, usize) {
        let mut chunks = Chunks::new(s.clone(), filter.clone(), page, 10_000_000);
        let (mut body, mut n) = (Vec::new(), 0);
        while !chunks.is_done() {
            body.extend(chunks.next_chunk(bytes));
            n += 1;
        }
        let views: Vec<ZombieView> = serde_json::from_slice(&body).unwrap();
        (views.iter().map(|v| v.pid).collect(), n)
    }

    #[test]
    fn pages_filter_and_continue_after_their_cursor() {
        let s = snapshot(10);
        let all = Filter::default();
        let page = s.zombies.page(&all, None, None);
        assert_eq!((page.count, page.next), (10, None));
        let (pids, chunks) = stream(&s, &all, page, 1);
        assert_eq!(pids, (100..110).collect::<Vec<_>>());
        // With one-byte chunks: the `[` alone, then one zombie per chunk (the stream never
        // holds more than a chunk and one object).
        assert_eq!(chunks, 11);

        // Pages of 3 of namespace b: 101, 103, 105 | 107, 109.
        let b = Filter {
            namespace: Some("b".into()),
            pod: None,
        };
        let first = s.zombies.page(&b, None, Some(3));
        assert_eq!(stream(&s, &b, first, 1 << 20).0, [101, 103, 105]);
        let cursor = first.next.expect("more follow");
        assert_eq!(cursor.to_string(), "5000-105-5");
        let again: Cursor = cursor.to_string().parse().unwrap();
        let second = s.zombies.page(&b, Some(again), Some(3));
        assert_eq!(second.next, None);
        assert_eq!(stream(&s, &b, second, 1 << 20).0, [107, 109]);
        // A page that ends exactly at the last match says there is no more.
        let exact = s.zombies.page(&b, None, Some(5));
        assert_eq!((exact.count, exact.next), (5, None));

        let pod = Filter {
            namespace: Some("a".into()),
            pod: Some("pod-a".into()),
        };
        assert_eq!(s.zombies.page(&pod, None, None).count, 5);
        let none = Filter {
            namespace: Some("c".into()),
            pod: None,
        };
        let empty = s.zombies.page(&none, None, None);
        assert_eq!(stream(&s, &none, empty, 1).0, Vec::<u32>::new());
        // After the last zombie: an empty page.
        let end = Cursor {
            exited_at: u64::MAX,
            key: ProcKey {
                pid: 0,
                start_ticks: 0,
            },
        };
        assert_eq!(s.zombies.page(&all, Some(end), None).count, 0);
    }

    #[test]
    fn cursors_are_checked() {
        for bad in ["", "1-2", "a-b-c", "1-2-3-4", "1-99999999999-3", "-1-2-3"] {
            assert_eq!(bad.parse::<Cursor>(), Err(BadCursor), "{bad:?}");
        }
        let c: Cursor = "7-8-9".parse().unwrap();
        assert_eq!((c.exited_at, c.key.pid, c.key.start_ticks), (7, 8, 9));
    }
}
