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
    audit::ContainerAudit,
    budget::{CgroupBudget, NodeBudget},
    clock::{self, WallClock},
    diagnosis::Cause,
    store::{Group, Record, Store},
    tracker::{ExitFlags, Ns, OriginKind, ProcKey, Source, Zombie},
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
    /// Every zombie, oldest first, one compact record each (see [`crate::store`]).
    pub store: Store,
    /// How many the list shows: all of them, or above `--max-listed-zombies` only the
    /// oldest and the newest (see `unlisted`).
    pub max_listed: usize,
    /// Zombies counted in the series below but not listed (0 unless there are more than
    /// `--max-listed-zombies`): counts stay exact, details are sampled.
    pub unlisted: u64,
    /// Per container: how many zombies and the oldest one's exit time, at most
    /// [`MAX_CONTAINER_SERIES`] series (the rest summed into `_other`).
    pub containers: Vec<ContainerZombies>,
    /// Per container and cause, with the same cap.
    pub by_cause: Vec<(Labels, Cause, u64)>,
    /// Per container and origin kind, with the same cap.
    pub by_origin: Vec<(Labels, OriginKind, u64)>,
}

pub use crate::store::Labels;

/// One zombie as listed: its own facts, and what it shares with others (attribution,
/// diagnosis, origin, labels: one each per group of zombies with the same parent, cgroup
/// and origin). The `/zombies` object is made when read ([`Self::view`]), so a snapshot of
/// 100,000 zombies holds 100,000 records of 64 bytes, not 100,000 objects of strings.
#[derive(Clone, Copy, Debug)]
pub struct Entry<'a> {
    pub record: &'a Record,
    pub group: &'a Group,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerZombies {
    pub labels: Labels,
    pub count: u64,
    /// CLOCK_BOOTTIME of the oldest zombie's exit: its age is computed when read.
    pub oldest_exited_at: Ns,
}

impl Entry<'_> {
    /// The zombie as the tracker had it when the snapshot was built (its exit flags, which
    /// no reader shows, are not kept).
    pub fn zombie(&self) -> Zombie {
        let (r, g) = (self.record, &self.group.key);
        Zombie {
            key: r.key(),
            exited_at: r.exited_at,
            source: if r.scanned {
                Source::Scan
            } else {
                Source::Event
            },
            ppid: g.ppid,
            parent_start_ticks: g.parent_start_ticks,
            parent_comm: g.parent_comm,
            comm: r.comm,
            wait_status: r.wait_status,
            cgroup_id: r.cgroup_id,
            flags: ExitFlags::default(),
            parent_gone: r.parent_gone,
            reparented: r.reparented,
            exit_ppid: g.exit_ppid,
            exit_parent_comm: g.exit_parent_comm,
            origin: g.origin,
        }
    }

    /// Its `/zombies` object, with its age as of `now`.
    pub fn view(&self, now: Ns, wall: &WallClock) -> ZombieView {
        view::view_of(
            &self.zombie(),
            self.group.key.cgroup_path.as_deref(),
            &self.group.attribution,
            Some(&self.group.diagnosis),
            Some(OriginView::clone(&self.group.origin)),
            now,
            wall,
        )
    }

    /// Its place in the list's order (oldest first), as a page cursor.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            exited_at: self.record.exited_at,
            key: self.record.key(),
        }
    }
}

impl Zombies {
    /// How many zombies the list shows.
    pub fn listed(&self) -> usize {
        self.store.len().min(self.max_listed.max(2))
    }

    /// Above the ceiling the list keeps the oldest half and the newest half.
    fn kept_old(&self) -> usize {
        let listed = self.listed();
        if listed == self.store.len() {
            listed
        } else {
            listed / 2
        }
    }

    /// The store's index of the `i`th listed zombie.
    fn store_index(&self, i: usize) -> usize {
        if i < self.kept_old() {
            i
        } else {
            self.store.len() - self.listed() + i
        }
    }

    /// How many listed zombies sort at or before `key`.
    fn listed_rank(&self, key: Cursor) -> usize {
        let r = self
            .store
            .rank((key.exited_at, key.key.pid, key.key.start_ticks));
        let (old, skipped) = (self.kept_old(), self.store.len() - self.listed());
        if r <= old {
            r
        } else if r <= old + skipped {
            old
        } else {
            r - skipped
        }
    }

    /// The `i`th listed zombie.
    pub fn entry(&self, i: usize) -> Option<Entry<'_>> {
        if i >= self.listed() {
            return None;
        }
        let record = self.store.get(self.store_index(i))?;
        Some(Entry {
            record,
            group: self.store.group(record.group),
        })
    }

    /// The listed zombies, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = Entry<'_>> {
        let (old, listed) = (self.kept_old(), self.listed());
        let store = &self.store;
        store
            .iter()
            .take(old)
            .chain(
                store
                    .iter_from(store.len() - (listed - old))
                    .take(listed - old),
            )
            .map(|record| Entry {
                record,
                group: store.group(record.group),
            })
    }

    /// The `/zombies` objects, with ages as of `now`.
    pub fn aged(&self, now: Ns) -> Vec<ZombieView> {
        self.iter().map(|e| e.view(now, &self.wall)).collect()
    }

    /// Where a page of the zombies `filter` selects starts and ends: after `after` (or from
    /// the oldest), at most `limit` of them. The cursor of the page's last zombie comes
    /// with it when more follow.
    pub fn page(&self, filter: &Filter, after: Option<Cursor>, limit: Option<usize>) -> Page {
        let start = after.map_or(0, |c| self.listed_rank(c));
        let limit = limit.unwrap_or(usize::MAX);
        let mut page = Page {
            start,
            end: start,
            count: 0,
            next: None,
        };
        for i in start..self.listed() {
            let Some(e) = self.entry(i) else { break };
            if !filter.matches(&e) {
                continue;
            }
            if page.count == limit {
                // One more matches: the client continues after the last one sent.
                page.next = page
                    .end
                    .checked_sub(1)
                    .and_then(|last| self.entry(last))
                    .map(|e| e.cursor());
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
    pub fn matches(&self, e: &Entry<'_>) -> bool {
        let is = |want: &Option<String>, have: &Option<String>| {
            want.as_ref().is_none_or(|w| have.as_ref() == Some(w))
        };
        let a = &e.group.attribution;
        is(&self.namespace, &a.namespace) && is(&self.pod, &a.pod)
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
            let Some(e) = zombies.entry(self.at) else {
                self.at = self.end;
                break;
            };
            self.at += 1;
            if !self.filter.matches(&e) {
                continue;
            }
            if !std::mem::take(&mut self.first) {
                out.push(b',');
            }
            // A ZombieView serializes infallibly (strings, numbers and options only).
            let _ = serde_json::to_writer(&mut out, &e.view(self.now, &zombies.wall));
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
    Labels::new("", "_other", "_other")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        attribution::Attribution,
        diagnosis::Diagnosis,
        store::{GroupKey, Writer},
        tracker::{Comm, Origin},
    };

    fn add(w: &mut Writer, pid: u32, exited_at: Ns, namespace: &str) {
        let key = GroupKey {
            ppid: 1,
            parent_start_ticks: 1,
            parent_comm: Comm::new("parent"),
            exit_ppid: 1,
            exit_parent_comm: Comm::new("parent"),
            origin: Origin::default(),
            // One group per namespace.
            cgroup_path: Some(namespace.into()),
        };
        let group = Group {
            key: key.clone(),
            attribution: Arc::new(Attribution {
                namespace: Some(namespace.to_string()),
                pod: Some(format!("pod-{namespace}")),
                ..Attribution::default()
            }),
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
            parent_waited: false,
        };
        let record = Record {
            exited_at,
            start_ticks: 5,
            cgroup_id: 0,
            comm: Comm::new("child"),
            pid,
            wait_status: 0,
            reparented: 0,
            group: 0,
            scanned: false,
            parent_gone: false,
        };
        w.insert(record, key, || group);
    }

    fn zombies(n: u32, max_listed: usize) -> Zombies {
        let mut w = Writer::default();
        for i in 0..n {
            add(
                &mut w,
                100 + i,
                1_000 * u64::from(i),
                if i % 2 == 0 { "a" } else { "b" },
            );
        }
        Zombies {
            store: w.publish(),
            max_listed,
            ..Zombies::default()
        }
    }

    fn snapshot(n: u32) -> Arc<Snapshot> {
        Arc::new(Snapshot {
            zombies: Arc::new(zombies(n, usize::MAX)),
            ..Snapshot::default()
        })
    }

    /// Above the ceiling the list is the oldest and the newest; pages continue across the
    /// gap.
    #[test]
    fn a_sampled_list_pages_over_the_oldest_and_the_newest() {
        let z = zombies(10, 4);
        assert_eq!(z.listed(), 4);
        let pids: Vec<u32> = z.iter().map(|e| e.record.pid).collect();
        assert_eq!(pids, [100, 101, 108, 109]);
        let first = z.page(&Filter::default(), None, Some(2));
        assert_eq!((first.start, first.end), (0, 2));
        let next = z.page(&Filter::default(), first.next, Some(2));
        assert_eq!((next.start, next.end, next.next), (2, 4, None));
        assert_eq!(z.entry(2).unwrap().record.pid, 108);
        // A cursor inside the gap continues with the newest.
        let gap = Cursor {
            exited_at: 4_000,
            key: ProcKey {
                pid: 104,
                start_ticks: 5,
            },
        };
        assert_eq!(z.page(&Filter::default(), Some(gap), None).start, 2);
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

    /// A part is wanted as of the latest time any reader asked, each part on its own, and
    /// the loop is woken by an ask made before it waited.
    #[tokio::test]
    async fn demand_keeps_the_latest_ask_per_part_and_wakes_the_loop() {
        let d = Demand::default();
        for p in [Part::Zombies, Part::Budget, Part::Audit] {
            assert_eq!(d.wanted(p), 0);
        }
        d.ask(Part::Budget, 50);
        d.ask(Part::Budget, 20);
        d.ask(Part::Audit, 7);
        assert_eq!(d.wanted(Part::Budget), 50, "an older ask does not lower it");
        assert_eq!(d.wanted(Part::Audit), 7);
        assert_eq!(d.wanted(Part::Zombies), 0);
        tokio::time::timeout(Duration::from_secs(5), d.asked())
            .await
            .expect("an ask made before waiting wakes the loop");
        // Nothing asked since: it waits.
        assert!(
            tokio::time::timeout(Duration::from_millis(50), d.asked())
                .await
                .is_err()
        );
    }
}
