//! The live zombie table: a pure state machine, events in, table out.
//!
//! It knows nothing about eBPF, /proc or HTTP and never reads a clock: every event carries
//! its time (CLOCK_BOOTTIME ns) and queries take `now`. That makes it exact to unit-test with
//! synthetic sequences (out of order, duplicated, lost) and cheap to benchmark.
//!
//! Semantics, following the kernel:
//! - A process becomes a zombie when the last thread of its group exits (`Exit`), unless the
//!   kernel autoreaps it (its parent ignores SIGCHLD or set SA_NOCLDWAIT).
//! - It stops being one when its leader's task is freed (`Free`), whoever reaped it.
//! - Threads never appear here: the kernel side reports only whole-group exits and leader
//!   frees.
//! - Identity is pid + start time, so a reused pid is never taken for the old process.

use std::{collections::VecDeque, sync::Arc};

use rustc_hash::{FxHashMap, FxHashSet};

/// CLOCK_BOOTTIME nanoseconds.
pub type Ns = u64;

/// A process's identity: its pid and start time in clock ticks since boot. Ticks (not ns)
/// because /proc only gives ticks and both sources must produce the same key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcKey {
    pub pid: u32,
    pub start_ticks: u64,
}

/// A fixed-size comm (TASK_COMM_LEN), stored without allocation.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Comm(pub [u8; 16]);

impl Comm {
    pub fn new(s: &str) -> Self {
        let mut b = [0u8; 16];
        let n = s.len().min(15);
        b[..n].copy_from_slice(&s.as_bytes()[..n]);
        Self(b)
    }

    pub fn as_str(&self) -> std::borrow::Cow<'_, str> {
        let end = self.0.iter().position(|&c| c == 0).unwrap_or(self.0.len());
        String::from_utf8_lossy(&self.0[..end])
    }
}

impl std::fmt::Debug for Comm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// How the kernel will dispose of an exiting process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitFlags {
    /// Released at once: the parent ignores SIGCHLD or set SA_NOCLDWAIT.
    pub autoreap: bool,
    pub ptraced: bool,
    /// exit_signal is not SIGCHLD: only `__WALL`/`__WCLONE` waiters reap it.
    pub non_sigchld: bool,
    /// Of an exec session, and its parent is of the same session (which may reap it).
    pub parent_in_origin: bool,
}

/// Where a process's lineage starts: the provenance of a zombie.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OriginKind {
    /// Descends from its container's PID 1 (the normal process tree).
    Init,
    /// Descends from a process entered into the container from outside: a runtime's exec
    /// (exec probes, `kubectl exec`, `docker exec`) or `nsenter`.
    Exec,
    /// Outside any container (the initial PID namespace).
    Host,
    /// Not seen: forked before the daemon ran, and /proc no longer tells.
    #[default]
    Unknown,
}

impl OriginKind {
    pub const ALL: [Self; 4] = [Self::Init, Self::Exec, Self::Host, Self::Unknown];

    /// The name in JSON and metric labels (a public contract).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Init => "init",
            Self::Exec => "exec",
            Self::Host => "host",
            Self::Unknown => "unknown",
        }
    }

    /// From the kernel's `zombie_ebpf::origin` kinds.
    pub fn from_raw(kind: u32) -> Self {
        match kind {
            zombie_ebpf::origin::INIT => Self::Init,
            zombie_ebpf::origin::EXEC => Self::Exec,
            zombie_ebpf::origin::HOST => Self::Host,
            _ => Self::Unknown,
        }
    }
}

/// A zombie's provenance: the kind, and for `init` and `exec` the process that started the
/// lineage (it may be long gone; its comm and command line are in the tracker's book of
/// origins, see [`Tracker::origin_info`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Origin {
    pub kind: OriginKind,
    pub key: Option<ProcKey>,
}

/// What an origin process ran as.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OriginInfo {
    pub comm: Comm,
    /// Its command line (possibly cut by the kernel side's bound).
    pub argv: Vec<String>,
}

impl OriginInfo {
    /// From the NUL-separated bytes of a command line (as in /proc/<pid>/cmdline).
    pub fn from_cmdline(comm: Comm, bytes: &[u8]) -> Self {
        let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
        let argv = if bytes.is_empty() {
            Vec::new()
        } else {
            bytes
                .split(|&b| b == 0)
                .map(|w| String::from_utf8_lossy(w).into_owned())
                .collect()
        };
        Self { comm, argv }
    }
}

/// An origin's first exec, as the kernel reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginSeen {
    pub key: ProcKey,
    pub kind: OriginKind,
    pub info: OriginInfo,
}

/// A whole thread group exited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exit {
    pub key: ProcKey,
    pub at: Ns,
    pub ppid: u32,
    pub parent_start_ticks: u64,
    pub comm: Comm,
    pub parent_comm: Comm,
    /// The raw wait status the parent will read.
    pub wait_status: u32,
    pub cgroup_id: u64,
    pub flags: ExitFlags,
    pub origin: Origin,
}

/// Everything that changes the table: what the kernel reports, and what /proc reports.
/// [`Tracker::apply`] is the one way in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Exit(Exit),
    /// The leader's task was freed: the process was reaped.
    Free {
        key: ProcKey,
        at: Ns,
    },
    /// `pid` entered wait() (for `target`, 0 = any child).
    Wait {
        pid: u32,
        target: u32,
        at: Ns,
    },
    /// A /proc scan that started at `started`: the table is made equal to it (see
    /// [`Tracker::apply`] and [`Applied::Reconciled`]).
    Scanned {
        started: Ns,
        scan: Arc<Scan>,
    },
    /// /proc names a zombie's parent now: it was handed to a subreaper or its namespace's
    /// init after its parent exited.
    Reparented {
        key: ProcKey,
        ppid: u32,
        parent_start_ticks: u64,
        parent_comm: Comm,
    },
    /// The /proc sweep found the zombie gone (no entry, or one of a newer process) at `at`:
    /// it was reaped; its free event may still be in flight.
    Vanished {
        key: ProcKey,
        at: Ns,
    },
    /// Time passed: vanished zombies whose free has not come within `grace` were reaped
    /// unobserved.
    GraceElapsed {
        now: Ns,
        grace: Ns,
    },
    /// A process that starts a lineage ran its first exec (reported by the kernel).
    Origin(Box<OriginSeen>),
    /// Time passed: zombies held back as probably being reaped (see [`Tracker::hold_back`])
    /// that are still zombies at `now` are shown.
    HoldElapsed {
        now: Ns,
    },
}

impl Event {
    /// When the kernel reported it (CLOCK_BOOTTIME), None for what /proc reports and for
    /// an origin's exec (which carries no time).
    pub fn kernel_time(&self) -> Option<Ns> {
        match self {
            Event::Exit(e) => Some(e.at),
            Event::Free { at, .. } | Event::Wait { at, .. } => Some(*at),
            _ => None,
        }
    }
}

/// Where an entry's facts come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Seen exiting: exact exit time.
    Event,
    /// Found in /proc (at start or on a resync): the exit time is an estimate.
    Scan,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Zombie {
    pub key: ProcKey,
    pub exited_at: Ns,
    pub source: Source,
    /// The parent at exit (or as found in /proc), then updated when it is reparented.
    pub ppid: u32,
    pub parent_start_ticks: u64,
    pub parent_comm: Comm,
    pub comm: Comm,
    pub wait_status: u32,
    pub cgroup_id: u64,
    pub flags: ExitFlags,
    /// The parent it had at exit exited since: the zombie was handed to a subreaper or the
    /// namespace's init, whose identity the adapter refreshes from /proc.
    pub parent_gone: bool,
    /// How many times it was handed to another parent.
    pub reparented: u32,
    /// The parent it had when it exited (`ppid` follows reparenting).
    pub exit_ppid: u32,
    pub exit_parent_comm: Comm,
    pub origin: Origin,
}

impl Zombie {
    pub fn age_ns(&self, now: Ns) -> Ns {
        now.saturating_sub(self.exited_at)
    }
}

/// A zombie the sweep found gone from /proc whose free has not come: what a late free
/// (its reap latency) and the expiry (its log line) need of it, 40 bytes instead of a
/// whole [`Zombie`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Gone {
    /// Its exit time when the kernel showed the exit (None: found by a scan, estimated).
    seen_exiting_at: Option<Ns>,
    /// When it was found gone.
    at: Ns,
    comm: Comm,
}

impl Gone {
    fn of(z: &Zombie, at: Ns) -> Self {
        Self {
            seen_exiting_at: (z.source == Source::Event).then_some(z.exited_at),
            at,
            comm: z.comm,
        }
    }
}

/// A zombie as found by a /proc scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanEntry {
    pub key: ProcKey,
    pub ppid: u32,
    pub parent_start_ticks: u64,
    pub comm: Comm,
    pub parent_comm: Comm,
    pub wait_status: u32,
    pub cgroup_id: u64,
    pub exited_at_estimate: Ns,
    /// Derived from /proc (see the daemon's `proc_scan::derive_origin`).
    pub origin: Origin,
    pub origin_info: Option<OriginInfo>,
}

/// A /proc scan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scan {
    pub zombies: Vec<ScanEntry>,
    /// Processes /proc shows on their way to becoming a zombie process, which a reconcile
    /// must not take for reaped: a task between its exit tracepoint and exit_notify
    /// (PF_EXITING; closing files or freeing a large mm can take a while), or a leader that
    /// is already a zombie while its last thread exits. The flag is true for the former, a
    /// transient state a follow-up scan should look at again.
    pub exiting: Vec<(ProcKey, bool)>,
}

/// What one event did to the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// A new zombie.
    Zombie,
    /// Exited and released at once by the kernel.
    Autoreaped,
    /// A zombie was reaped; the latency is exact unless its exit time was estimated.
    Reaped {
        latency_ns: Option<Ns>,
    },
    /// An exit whose free had already been seen (out of order): exited and reaped.
    ExitAfterFree {
        latency_ns: Ns,
    },
    /// Already applied: ignored.
    Duplicate,
    /// An exit refining a zombie first found by a scan.
    Refined,
    /// The free of a process never seen as a zombie (exited before we started, or autoreaped).
    UnknownFree,
    Wait,
    /// A scan was reconciled with the table.
    Reconciled(ReconcileReport),
    /// A zombie's parent, as /proc reports it, was recorded (false: not in the table).
    Reparented(bool),
    /// A zombie found gone from /proc left the table (false: it was not in the table).
    Vanished(bool),
    /// Vanished zombies whose free never came: reaped unobserved.
    SettledUnobserved(usize),
    /// An origin's comm and command line, remembered.
    Origin,
    /// Zombies held back whose hold passed: shown now.
    Shown(usize),
}

/// What one applied event adds to the daemon's counters (`zombie_process_exits_total`,
/// `zombie_autoreaped_total`, `zombie_reaped_total`, `zombie_reaps_unobserved_total`, the
/// reap latency histogram). One mapping, used by `Metrics::record` and the tracker's
/// tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub exits: u64,
    pub autoreaped: u64,
    pub reaped: u64,
    pub reaps_unobserved: u64,
    /// Exit to reap, when known.
    pub reap_latency_ns: Option<Ns>,
}

impl Applied {
    pub fn counts(self) -> Counts {
        let c = Counts::default();
        match self {
            Applied::Zombie | Applied::Refined => Counts { exits: 1, ..c },
            Applied::Autoreaped => Counts {
                exits: 1,
                autoreaped: 1,
                ..c
            },
            Applied::Reaped { latency_ns } => Counts {
                reaped: 1,
                reap_latency_ns: latency_ns,
                ..c
            },
            Applied::ExitAfterFree { latency_ns } => Counts {
                exits: 1,
                reaped: 1,
                reap_latency_ns: Some(latency_ns),
                ..c
            },
            Applied::SettledUnobserved(n) => Counts {
                reaps_unobserved: n as u64,
                ..c
            },
            Applied::Duplicate
            | Applied::UnknownFree
            | Applied::Wait
            | Applied::Origin
            | Applied::Reconciled(_)
            | Applied::Reparented(_)
            | Applied::Vanished(_)
            | Applied::Shown(_) => c,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Zombies in /proc the table lacked (their exits were lost or predate us).
    pub added: usize,
    /// Table entries gone from /proc (their reaps were lost).
    pub removed: usize,
    /// Processes in the middle of exiting that the table does not know: if their exit
    /// event was lost (or came before the daemon), only a later scan will find them.
    pub exiting_unknown: usize,
}

/// The last wait() seen from a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitSeen {
    pub last_at: Ns,
    pub last_target: u32,
    pub count: u64,
}

/// Recently freed processes, to recognise duplicates, out-of-order exits and zombies a
/// concurrent /proc scan saw just before they were reaped. Bounded: oldest forgotten first.
struct Tombstones {
    order: VecDeque<ProcKey>,
    map: FxHashMap<ProcKey, Tombstone>,
    capacity: usize,
}

#[derive(Clone, Copy)]
struct Tombstone {
    freed_at: Ns,
    exit_seen: bool,
}

impl Tombstones {
    fn new(capacity: usize) -> Self {
        Self {
            order: VecDeque::with_capacity(capacity.min(4096)),
            map: FxHashMap::default(),
            capacity,
        }
    }

    fn insert(&mut self, key: ProcKey, t: Tombstone) {
        if self.map.insert(key, t).is_none() {
            if self.order.len() == self.capacity
                && let Some(old) = self.order.pop_front()
            {
                self.map.remove(&old);
            }
            self.order.push_back(key);
        }
    }

    fn get_mut(&mut self, key: &ProcKey) -> Option<&mut Tombstone> {
        self.map.get_mut(key)
    }

    fn contains(&self, key: &ProcKey) -> bool {
        self.map.contains_key(key)
    }
}

/// Origins' comms and command lines by their identity, for as long as their descendants may
/// still become zombies. Bounded: oldest forgotten first (an origin is one exec session or
/// one container start, so this spans many thousands of them).
struct OriginBook {
    order: VecDeque<ProcKey>,
    map: FxHashMap<ProcKey, OriginInfo>,
    capacity: usize,
}

impl OriginBook {
    fn insert(&mut self, key: ProcKey, info: OriginInfo) {
        if self.map.insert(key, info).is_none() {
            if self.order.len() >= self.capacity
                && let Some(old) = self.order.pop_front()
            {
                self.map.remove(&old);
            }
            self.order.push_back(key);
        }
    }
}

/// Origins remembered (see [`OriginBook`]).
pub const ORIGIN_BOOK_CAPACITY: usize = 8192;

/// Bound on [`Tracker::take_left_by_exec`]'s queue when nobody takes it.
const LEFT_BY_EXEC_LIMIT: usize = 4096;

pub struct Tracker {
    origins: OriginBook,
    /// Zombies exec sessions left behind since last taken (see [`Self::take_left_by_exec`]).
    left_by_exec: Vec<Zombie>,
    zombies: FxHashMap<ProcKey, Zombie>,
    /// Zombies /proc no longer has whose free event has not come (yet), with the time the
    /// sweep found them gone. Out of the table at once; a free that still comes within the
    /// grace period is an ordinary reap with its exact latency, and those past it were
    /// reaped unobserved (see [`Self::expire_vanished`]). A compact record each (what a
    /// late free and the expiry need, not the whole zombie): when the kernel drops the
    /// frees of a mass release, the whole table passes through here at once.
    vanished: FxHashMap<ProcKey, Gone>,
    /// The earliest time any vanished zombie was found gone (None: none is): the expiry
    /// walks the vanished zombies only once the oldest one's grace may have passed.
    vanished_oldest: Option<Ns>,
    /// Zombies by their current parent pid, to find a dying parent's zombies in O(children).
    by_parent: FxHashMap<u32, FxHashSet<ProcKey>>,
    /// The start time of the zombie holding each pid. A zombie holds its pid until it is
    /// released, so a newer process seen with the same pid proves the listed one was reaped
    /// (see [`Self::supersede`]).
    by_pid: FxHashMap<u32, u64>,
    tombstones: Tombstones,
    waits: FxHashMap<u32, WaitSeen>,
    /// An order-independent digest of what the table shows (see [`Self::fingerprint`]).
    fingerprint: u64,
    /// The zombies changed since [`Self::take_changes`] last took them, each with its exit
    /// time as of then (None: not in the table then): a snapshot build applies these, never
    /// a copy of the table.
    changed: FxHashMap<ProcKey, Option<Ns>>,
    /// Origins learnt since then (their zombies show what they ran as).
    origins_learnt: Vec<ProcKey>,
    /// How long a zombie of a parent seen waiting is held back, and how stale that wait may
    /// be (see [`Self::hold_back`]); None: every zombie is shown at once.
    hold: Option<Hold>,
    /// Zombies held back: in the table (the sweep, the counts and a dying parent's
    /// children see them) but not yet in what readers see (the fingerprint and the
    /// changes), with when each is shown if it is still a zombie then.
    held: FxHashSet<ProcKey>,
    holding: VecDeque<(Ns, ProcKey)>,
}

/// See [`Tracker::hold_back`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hold {
    /// How long after its exit a held-back zombie is shown.
    pub for_ns: Ns,
    /// A wait of the parent at most this long before the exit counts as waiting for it:
    /// the kernel side reports a parent's waits once per this period at most.
    pub wait_dedup_ns: Ns,
}

/// Enough to cover the frees that arrive while a /proc scan runs (~70 ms for 5,000
/// processes, ~20k frees/s at the most on a 2-core node) with a wide margin.
pub const DEFAULT_TOMBSTONES: usize = 65_536;

impl Default for Tracker {
    fn default() -> Self {
        Self::new(DEFAULT_TOMBSTONES)
    }
}

impl Tracker {
    pub fn new(tombstone_capacity: usize) -> Self {
        Self {
            origins: OriginBook {
                order: VecDeque::new(),
                map: FxHashMap::default(),
                capacity: ORIGIN_BOOK_CAPACITY,
            },
            left_by_exec: Vec::new(),
            zombies: FxHashMap::default(),
            vanished: FxHashMap::default(),
            vanished_oldest: None,
            by_parent: FxHashMap::default(),
            by_pid: FxHashMap::default(),
            tombstones: Tombstones::new(tombstone_capacity.max(1)),
            waits: FxHashMap::default(),
            fingerprint: 0,
            changed: FxHashMap::default(),
            origins_learnt: Vec::new(),
            hold: None,
            held: FxHashSet::default(),
            holding: VecDeque::new(),
        }
    }

    /// Applies one event: the only way the table changes.
    pub fn apply(&mut self, ev: &Event) -> Applied {
        match *ev {
            Event::Exit(ref e) => self.on_exit(e),
            Event::Free { key, at } => self.on_free(key, at),
            Event::Scanned { started, ref scan } => {
                Applied::Reconciled(self.reconcile(started, scan))
            }
            Event::Reparented {
                key,
                ppid,
                parent_start_ticks,
                parent_comm,
            } => Applied::Reparented(self.set_parent(&key, ppid, parent_start_ticks, parent_comm)),
            Event::Vanished { key, at } => Applied::Vanished(self.vanish(&key, at)),
            Event::GraceElapsed { now, grace } => {
                Applied::SettledUnobserved(self.expire_vanished(now, grace))
            }
            Event::HoldElapsed { now } => Applied::Shown(self.show_due(now)),
            Event::Wait { pid, target, at } => {
                if !self.waits.contains_key(&pid) && self.by_parent.contains_key(&pid) {
                    // Its zombies' diagnosis changes: their parent is seen waiting.
                    self.fingerprint ^= mix(&[u64::from(pid), 0x77a1_7000]);
                }
                let w = self.waits.entry(pid).or_insert(WaitSeen {
                    last_at: at,
                    last_target: target,
                    count: 0,
                });
                w.last_at = w.last_at.max(at);
                w.last_target = target;
                w.count += 1;
                Applied::Wait
            }
            Event::Origin(ref o) => {
                self.origins.insert(o.key, o.info.clone());
                learnt(&mut self.origins_learnt, o.key);
                // Zombies of this lineage show its command line now.
                self.fingerprint ^= mix(&[u64::from(o.key.pid), o.key.start_ticks, 0x0419]);
                Applied::Origin
            }
        }
    }

    /// Zombies exec sessions left behind since the last call: a process of an exec session
    /// (not the session's own process, which its runtime reaps) that became a zombie with a
    /// parent outside the session, or whose parent in the session exited before reaping it.
    /// Either way nothing of the session will reap it: the leak an exec probe causes.
    pub fn take_left_by_exec(&mut self) -> Vec<Zombie> {
        std::mem::take(&mut self.left_by_exec)
    }

    fn left_by_exec(&mut self, z: Zombie) {
        if self.left_by_exec.len() < LEFT_BY_EXEC_LIMIT {
            self.left_by_exec.push(z);
        }
    }

    /// The comm and command line of a zombie's origin process, if it was seen.
    pub fn origin_info(&self, key: &ProcKey) -> Option<&OriginInfo> {
        self.origins.map.get(key)
    }

    fn on_exit(&mut self, e: &Exit) -> Applied {
        if self.superseded(&e.key) {
            // A newer process with this pid is listed: this one was released long ago and
            // its exit event comes late.
            return Applied::Duplicate;
        }
        self.supersede(&e.key, e.at);
        // The exiting process can no longer wait; its pid may be reused.
        self.waits.remove(&e.key.pid);
        self.orphan_children_of(e.key.pid, e.key.start_ticks, e.origin);

        if let Some(z) = self.zombies.get_mut(&e.key) {
            return match z.source {
                Source::Scan => {
                    // The scan saw it first; the event has the exact facts.
                    changed(&mut self.changed, z);
                    self.fingerprint ^= digest(z);
                    z.exited_at = e.at;
                    z.source = Source::Event;
                    z.wait_status = e.wait_status;
                    z.cgroup_id = e.cgroup_id;
                    z.flags = e.flags;
                    // The kernel saw the lineage; /proc could only guess it.
                    if e.origin.kind != OriginKind::Unknown {
                        z.origin = e.origin;
                    }
                    self.fingerprint ^= digest(z);
                    Applied::Refined
                }
                Source::Event => Applied::Duplicate,
            };
        }
        if self.vanished.contains_key(&e.key) {
            return Applied::Duplicate;
        }
        if let Some(t) = self.tombstones.get_mut(&e.key) {
            if t.exit_seen {
                return Applied::Duplicate;
            }
            t.exit_seen = true;
            let latency_ns = t.freed_at.saturating_sub(e.at);
            return Applied::ExitAfterFree { latency_ns };
        }
        if e.flags.autoreap {
            // Its free will follow; remember it so a duplicate exit is recognised.
            self.tombstones.insert(
                e.key,
                Tombstone {
                    freed_at: e.at,
                    exit_seen: true,
                },
            );
            return Applied::Autoreaped;
        }
        // Its parent's exit may have come first: the child read its parent before the
        // parent's exit_notify handed it to a reaper, but reserved its record later.
        let parent_gone = self.has_exited(e.ppid, e.parent_start_ticks);
        let z = Zombie {
            key: e.key,
            exited_at: e.at,
            source: Source::Event,
            ppid: e.ppid,
            parent_start_ticks: e.parent_start_ticks,
            parent_comm: e.parent_comm,
            comm: e.comm,
            wait_status: e.wait_status,
            cgroup_id: e.cgroup_id,
            flags: e.flags,
            parent_gone,
            reparented: 0,
            exit_ppid: e.ppid,
            exit_parent_comm: e.parent_comm,
            origin: e.origin,
        };
        if e.origin.kind == OriginKind::Exec
            && e.origin.key != Some(e.key)
            && (!e.flags.parent_in_origin || parent_gone)
        {
            self.left_by_exec(z);
        }
        self.insert(z);
        Applied::Zombie
    }

    fn on_free(&mut self, key: ProcKey, at: Ns) -> Applied {
        self.supersede(&key, at);
        if let Some(t) = self.tombstones.get_mut(&key) {
            // An autoreaped process's free (expected), or a duplicate.
            t.freed_at = at;
            return Applied::Duplicate;
        }
        let applied = match self
            .remove(&key)
            .map(|z| Gone::of(&z, at))
            .or_else(|| self.vanished.remove(&key))
        {
            Some(g) => Applied::Reaped {
                latency_ns: g.seen_exiting_at.map(|t| at.saturating_sub(t)),
            },
            None => Applied::UnknownFree,
        };
        self.tombstones.insert(
            key,
            Tombstone {
                freed_at: at,
                exit_seen: applied != Applied::UnknownFree,
            },
        );
        applied
    }

    /// Up to `limit` zombies that could have been reaped unseen, taken in the table's
    /// iteration order from position `from` on (wrapping around once), and the position to
    /// continue from: a rotating sample for the sweep that checks zombies still exist (see
    /// [`Self::vanish`]). The in-memory test runs over the whole table if need be (cheap);
    /// `limit` bounds the /proc reads the caller makes, so a candidate waits at most
    /// candidates / `limit` passes however many zombies that cannot be reaped share the
    /// table.
    ///
    /// Candidates are the zombies that can have been reaped without a wait() the kernel
    /// side reported: those whose parent called wait() since they exited, whose parent
    /// exited (handed to a reaper whose identity may be unknown: its /proc entry can be gone
    /// before the parent refresh reads it), or that were handed to a new parent (which may
    /// release them without any wait(): SIGCHLD ignored or SA_NOCLDWAIT). The zombies of a
    /// live parent that never waits (the leak this daemon is for) are left to the slower
    /// pass over the whole table. `wait_dedup` is how long the kernel side suppresses a
    /// parent's repeated waits: a wait just after the exit may have gone unreported if one
    /// was reported before it.
    pub fn sweep_batch(
        &self,
        from: usize,
        exited_before: Ns,
        wait_dedup: Ns,
        limit: usize,
    ) -> (Vec<ProcKey>, usize) {
        let n = self.zombies.len();
        let from = if from >= n { 0 } else { from };
        let candidate = |z: &Zombie| {
            z.exited_at < exited_before
                && (z.parent_gone
                    || z.reparented > 0
                    || self
                        .waits
                        .get(&z.ppid)
                        .is_some_and(|w| w.last_at.saturating_add(wait_dedup) >= z.exited_at))
        };
        let mut keys = Vec::new();
        let mut consumed = 0;
        for z in self
            .zombies
            .values()
            .skip(from)
            .chain(self.zombies.values().take(from))
        {
            if keys.len() == limit {
                break;
            }
            consumed += 1;
            if candidate(z) {
                keys.push(z.key);
            }
        }
        (keys, (from + consumed) % n.max(1))
    }

    /// A zombie /proc no longer has (its pid is gone or belongs to a newer process) was
    /// reaped: it leaves the table now, and its free event, if it is only late, settles it
    /// as an ordinary reap. Returns false if it was not in the table.
    fn vanish(&mut self, key: &ProcKey, now: Ns) -> bool {
        let Some(z) = self.remove(key) else {
            return false;
        };
        self.vanished.insert(*key, Gone::of(&z, now));
        self.vanished_oldest = Some(self.vanished_oldest.map_or(now, |t| t.min(now)));
        true
    }

    /// `key` exists (or existed): a listed zombie with the same pid and an older start was
    /// released before the kernel could hand the pid to `key`, whether or not its free was
    /// seen. It leaves the table as [`Self::vanish`] does.
    fn supersede(&mut self, key: &ProcKey, at: Ns) {
        if let Some(&start) = self.by_pid.get(&key.pid)
            && start < key.start_ticks
        {
            let old = ProcKey {
                pid: key.pid,
                start_ticks: start,
            };
            self.vanish(&old, at);
        }
    }

    /// Whether a newer process than `key` holds its pid in the table.
    fn superseded(&self, key: &ProcKey) -> bool {
        self.by_pid
            .get(&key.pid)
            .is_some_and(|&start| start > key.start_ticks)
    }

    /// Vanished zombies whose free has not come within `grace` of their vanishing were
    /// reaped unobserved (the kernel never ran the free program for them): tombstoned and
    /// counted. Returns how many.
    fn expire_vanished(&mut self, now: Ns, grace: Ns) -> usize {
        // Nothing can be due before the oldest one's grace: no walk (this runs after every
        // drain while any is vanished, and a mass release may hold the whole table here).
        if self
            .vanished_oldest
            .is_none_or(|t| now.saturating_sub(t) < grace)
        {
            return 0;
        }
        let (tombstones, mut expired, mut oldest) = (&mut self.tombstones, 0, None::<Ns>);
        self.vanished.retain(|key, g| {
            if now.saturating_sub(g.at) < grace {
                oldest = Some(oldest.map_or(g.at, |t| t.min(g.at)));
                return true;
            }
            // Which reaps the kernel never showed, for whoever needs to tell them apart
            // from the node's others (the count alone is a metric). Logged under the
            // daemon's target, as before the core was a crate of its own: filters such
            // as `--log-level zombie_daemon=debug` keep showing it.
            tracing::debug!(
                target: "zombie_daemon::tracker",
                pid = key.pid,
                comm = %g.comm.as_str(),
                "reaped unobserved: gone from /proc and no release event came"
            );
            tombstones.insert(
                *key,
                Tombstone {
                    freed_at: now,
                    exit_seen: true,
                },
            );
            expired += 1;
            false
        });
        self.vanished_oldest = oldest;
        if self.vanished.is_empty() {
            // A mass release may have grown it to the table's size: give that back.
            self.vanished = FxHashMap::default();
        }
        expired
    }

    /// Holds back, for `hold.for_ns` after its exit, a new zombie whose parent was seen
    /// waiting just before it exited: a parent that waits reaps its children within
    /// milliseconds, and the release that shows it (the free, an RCU grace period later)
    /// comes tens of milliseconds after the exit. Held back, such a zombie is in the table
    /// (counted, swept, handed over when its parent dies) but not in what readers see, so
    /// the children of a fork/exec/wait loop do not make a snapshot build each; if it is
    /// still a zombie when its hold ends ([`Event::HoldElapsed`]), it is shown. The zombies
    /// of a parent that never waits (the leak) are never held back.
    pub fn hold_back(&mut self, hold: Option<Hold>) {
        self.hold = hold.filter(|h| h.for_ns > 0);
        if self.hold.is_none() {
            let now = Ns::MAX;
            self.show_due(now);
        }
    }

    /// When the next held-back zombie is due to be shown (None: none is held back).
    pub fn next_shown_at(&self) -> Option<Ns> {
        self.holding
            .iter()
            .find(|(_, k)| self.held.contains(k))
            .map(|(at, _)| *at)
    }

    /// The held-back zombies whose hold ends by `now` (to be checked before
    /// [`Event::HoldElapsed`] shows them: the kernel may have dropped their release).
    pub fn held_due(&self, now: Ns) -> impl Iterator<Item = ProcKey> + '_ {
        self.holding
            .iter()
            .take_while(move |(at, _)| *at <= now)
            .filter(|(_, k)| self.held.contains(k))
            .map(|(_, k)| *k)
    }

    /// How many zombies are held back.
    pub fn held_len(&self) -> usize {
        self.held.len()
    }

    /// When `z` is to be shown if it is held back now (None: shown at once).
    fn held_until(&self, z: &Zombie) -> Option<Ns> {
        let hold = self.hold?;
        let waiting = self
            .waits
            .get(&z.ppid)
            .is_some_and(|w| w.last_at.saturating_add(hold.wait_dedup_ns) >= z.exited_at);
        (z.source == Source::Event && waiting && !self.zombies.contains_key(&z.key))
            .then(|| z.exited_at.saturating_add(hold.for_ns))
    }

    /// Shows `key` if it is held back: readers see it from the next build.
    fn show(&mut self, key: &ProcKey) {
        if self.held.remove(key)
            && let Some(z) = self.zombies.get(key)
        {
            // Not in the table as of the last take: a new zombie to the builder.
            self.changed.entry(*key).or_insert(None);
            self.fingerprint ^= digest(z);
        }
    }

    /// Shows the held-back zombies whose hold ended by `now`; returns how many.
    fn show_due(&mut self, now: Ns) -> usize {
        let mut shown = 0;
        while let Some(&(at, key)) = self.holding.front() {
            if at > now {
                break;
            }
            self.holding.pop_front();
            if self.held.contains(&key) {
                self.show(&key);
                shown += 1;
            }
        }
        if self.holding.is_empty() && self.holding.capacity() > 4096 {
            self.holding = VecDeque::new();
        }
        shown
    }

    /// Zombies that left the table because /proc lacks them and whose free has not come.
    pub fn vanished_len(&self) -> usize {
        self.vanished.len()
    }

    /// Whether the table knows this process has exited (a zombie, or reaped).
    fn has_exited(&self, pid: u32, start_ticks: u64) -> bool {
        let key = ProcKey { pid, start_ticks };
        start_ticks != 0
            && (self.zombies.contains_key(&key)
                || self.vanished.contains_key(&key)
                || self.tombstones.contains(&key))
    }

    /// A process exited: its zombie children are being handed to a new parent.
    /// Marks the zombies of an exiting parent as handed to a reaper; those of the parent's
    /// own exec session are now left by it (see [`Self::take_left_by_exec`]).
    fn orphan_children_of(&mut self, pid: u32, start_ticks: u64, origin: Origin) {
        let Some(children) = self.by_parent.get(&pid) else {
            return;
        };
        let mut left = Vec::new();
        // Its zombies are no longer being reaped by it: shown now.
        let keys: Vec<ProcKey> = children.iter().copied().collect();
        for key in &keys {
            self.show(key);
        }
        for key in &keys {
            if let Some(z) = self.zombies.get_mut(key)
                && (z.parent_start_ticks == start_ticks || z.parent_start_ticks == 0)
                && !z.parent_gone
            {
                changed(&mut self.changed, z);
                self.fingerprint ^= digest(z);
                if origin.kind == OriginKind::Exec && z.origin == origin {
                    left.push(*z);
                }
                z.parent_gone = true;
                self.fingerprint ^= digest(z);
            }
        }
        for z in left {
            self.left_by_exec(z);
        }
    }

    fn insert(&mut self, z: Zombie) {
        self.supersede(&z.key, z.exited_at);
        self.by_parent.entry(z.ppid).or_default().insert(z.key);
        self.by_pid.insert(z.key.pid, z.key.start_ticks);
        if let Some(at) = self.held_until(&z) {
            self.held.insert(z.key);
            self.holding.push_back((at, z.key));
            self.zombies.insert(z.key, z);
            return;
        }
        self.show(&z.key);
        self.fingerprint ^= digest(&z);
        let was = self.zombies.get(&z.key).map(|old| old.exited_at);
        self.changed.entry(z.key).or_insert(was);
        if let Some(old) = self.zombies.insert(z.key, z) {
            self.fingerprint ^= digest(&old);
            if old.ppid != z.ppid {
                self.unlink_parent(old.ppid, &old.key);
            }
        }
    }

    fn remove(&mut self, key: &ProcKey) -> Option<Zombie> {
        let z = self.zombies.remove(key)?;
        if self.by_pid.get(&key.pid) == Some(&key.start_ticks) {
            self.by_pid.remove(&key.pid);
        }
        // A held-back zombie was never shown: its going changes nothing readers saw.
        if !self.held.remove(key) {
            changed(&mut self.changed, &z);
            self.fingerprint ^= digest(&z);
        }
        self.unlink_parent(z.ppid, key);
        Some(z)
    }

    fn unlink_parent(&mut self, ppid: u32, key: &ProcKey) {
        if let Some(set) = self.by_parent.get_mut(&ppid) {
            set.remove(key);
            if set.is_empty() {
                self.by_parent.remove(&ppid);
            }
        }
    }

    /// A zombie's parent changed (reparenting after its parent died, as read from /proc).
    fn set_parent(
        &mut self,
        key: &ProcKey,
        ppid: u32,
        parent_start_ticks: u64,
        comm: Comm,
    ) -> bool {
        self.show(key);
        let Some(z) = self.zombies.get(key).copied() else {
            return false;
        };
        let gone = self.has_exited(ppid, parent_start_ticks);
        let mut new = z;
        if z.ppid == ppid && z.parent_start_ticks == parent_start_ticks {
            // Still the parent that exited: /proc was read between its exit and its
            // exit_notify, which has yet to hand the child over. Look again next time.
            new.parent_gone = gone;
        } else {
            self.unlink_parent(z.ppid, key);
            self.by_parent.entry(ppid).or_default().insert(*key);
            new.ppid = ppid;
            new.parent_start_ticks = parent_start_ticks;
            new.parent_comm = comm;
            new.parent_gone = gone;
            new.reparented += 1;
        }
        self.fingerprint ^= digest(&z) ^ digest(&new);
        changed(&mut self.changed, &z);
        self.zombies.insert(*key, new);
        true
    }

    /// Applies a /proc scan that started at `started` (what [`Event::Scanned`] does),
    /// returning its report: the typed entry for the one owner that scans, so that it need
    /// not match the [`Applied`] a scan always gives.
    pub fn reconcile(&mut self, started: Ns, scan: &Scan) -> ReconcileReport {
        self.reconcile_scan(started, &scan.zombies, &scan.exiting)
    }

    /// Makes the table equal to a /proc scan that started at `scan_started`.
    ///
    /// Events keep flowing while a scan runs, so: an entry missing from the scan is removed
    /// only if it exited before the scan started (a zombie then would have been listed); a
    /// scanned zombie is added only if its free has not been seen. An exit event that arrives
    /// after the scan added the same process refines it (see `Applied::Refined`).
    /// A process still exiting is not taken for reaped.
    fn reconcile_scan(
        &mut self,
        scan_started: Ns,
        scan: &[ScanEntry],
        exiting: &[(ProcKey, bool)],
    ) -> ReconcileReport {
        let mut report = ReconcileReport::default();
        let mut seen: FxHashSet<ProcKey> = scan.iter().map(|e| e.key).collect();
        report.exiting_unknown = exiting
            .iter()
            .filter(|(k, transient)| {
                *transient && !self.zombies.contains_key(k) && !self.tombstones.contains(k)
            })
            .count();
        seen.extend(exiting.iter().map(|(k, _)| *k));
        let gone: Vec<ProcKey> = self
            .zombies
            .values()
            .filter(|z| z.exited_at < scan_started && !seen.contains(&z.key))
            .map(|z| z.key)
            .collect();
        for key in gone {
            self.remove(&key);
            self.tombstones.insert(
                key,
                Tombstone {
                    freed_at: scan_started,
                    exit_seen: true,
                },
            );
            report.removed += 1;
        }
        for e in scan {
            if let Some(z) = self.zombies.get(&e.key) {
                // A parent's lost exit left this one's parent stale: /proc knows better.
                if z.ppid != e.ppid || z.parent_start_ticks != e.parent_start_ticks {
                    self.set_parent(&e.key, e.ppid, e.parent_start_ticks, e.parent_comm);
                }
                continue;
            }
            if self.tombstones.contains(&e.key) || self.vanished.contains_key(&e.key) {
                continue;
            }
            self.insert(Zombie {
                key: e.key,
                exited_at: e.exited_at_estimate,
                source: Source::Scan,
                ppid: e.ppid,
                parent_start_ticks: e.parent_start_ticks,
                parent_comm: e.parent_comm,
                comm: e.comm,
                wait_status: e.wait_status,
                cgroup_id: e.cgroup_id,
                flags: ExitFlags::default(),
                parent_gone: false,
                reparented: 0,
                exit_ppid: e.ppid,
                exit_parent_comm: e.parent_comm,
                origin: e.origin,
            });
            if let (Some(k), Some(info)) = (e.origin.key, &e.origin_info) {
                self.origins.insert(k, info.clone());
                learnt(&mut self.origins_learnt, k);
            }
            report.added += 1;
        }
        report
    }

    pub fn len(&self) -> usize {
        self.zombies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.zombies.is_empty()
    }

    pub fn get(&self, key: &ProcKey) -> Option<&Zombie> {
        self.zombies.get(key)
    }

    pub fn zombies(&self) -> impl Iterator<Item = &Zombie> {
        self.zombies.values()
    }

    /// The identity of every listed zombie (for the pass that re-confirms them all).
    pub fn keys(&self) -> impl Iterator<Item = ProcKey> + '_ {
        self.zombies.keys().copied()
    }

    /// Zombies whose parent exited and whose new parent is not known yet.
    pub fn parent_gone(&self) -> impl Iterator<Item = &Zombie> {
        self.zombies.values().filter(|z| z.parent_gone)
    }

    pub fn children_of(&self, ppid: u32) -> impl Iterator<Item = &Zombie> {
        self.by_parent
            .get(&ppid)
            .into_iter()
            .flatten()
            .filter_map(|k| self.zombies.get(k))
    }

    pub fn last_wait(&self, pid: u32) -> Option<&WaitSeen> {
        self.waits.get(&pid)
    }

    /// A copy of what readers need: the zombies, and which of their parents were seen
    /// waiting. The event loop hands it to a snapshot build off the loop.
    pub fn table(&self) -> Table {
        let zombies: Vec<Zombie> = self
            .zombies
            .values()
            .filter(|z| !self.held.contains(&z.key))
            .copied()
            .collect();
        let waited = self
            .by_parent
            .keys()
            .copied()
            .filter(|ppid| self.waits.contains_key(ppid))
            .collect();
        let origins = zombies
            .iter()
            .filter_map(|z| z.origin.key)
            .filter_map(|k| Some((k, self.origin_info(&k)?.clone())))
            .collect();
        Table {
            zombies,
            waited,
            origins,
            fingerprint: self.fingerprint,
        }
    }

    /// A digest of everything the table shows (its zombies, their parents and whether
    /// those were seen waiting), independent of the order of changes: equal fingerprints
    /// mean nothing a reader sees has changed, so a published view of the table is current.
    /// (A 64-bit digest: two different tables share one with negligible probability, and
    /// the next change corrects it.)
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// The oldest zombie's age, or 0 with none.
    pub fn oldest_age_ns(&self, now: Ns) -> Ns {
        self.zombies
            .values()
            .map(|z| z.age_ns(now))
            .max()
            .unwrap_or(0)
    }
}

impl Tracker {
    /// Up to `max` of the zombies changed since the last call, as they were then and as
    /// they are now, with what a build needs to diagnose them: O(changes), however large
    /// the table. More stay for the next call when there are more than `max`.
    pub fn take_changes(&mut self, max: usize) -> Changes {
        self.shrink();
        let keys: Vec<(ProcKey, Option<Ns>)> = if self.changed.len() <= max {
            // Taken whole, not drained: a storm's worth of capacity is given back.
            std::mem::take(&mut self.changed).into_iter().collect()
        } else {
            let keys: Vec<_> = self
                .changed
                .iter()
                .take(max)
                .map(|(k, w)| (*k, *w))
                .collect();
            for (k, _) in &keys {
                self.changed.remove(k);
            }
            keys
        };
        let changes: Vec<Change> = keys
            .into_iter()
            .filter_map(|(key, was)| {
                let now = self.zombies.get(&key).copied();
                // Added and gone again since: nothing to show.
                (was.is_some() || now.is_some()).then_some(Change { key, was, now })
            })
            .collect();
        let learnt = std::mem::take(&mut self.origins_learnt);
        let origins = changes
            .iter()
            .filter_map(|c| c.now?.origin.key)
            .chain(learnt.iter().copied())
            .filter_map(|k| Some((k, self.origin_info(&k)?.clone())))
            .collect();
        let waited = self
            .by_parent
            .keys()
            .copied()
            .filter(|ppid| self.waits.contains_key(ppid))
            .collect();
        Changes {
            changes,
            more: !self.changed.is_empty(),
            learnt,
            waited,
            origins,
            fingerprint: self.fingerprint,
        }
    }

    /// Gives back what the tables hold beyond four times their contents (a hash table
    /// never shrinks by itself: after a mass release it would keep its largest size).
    fn shrink(&mut self) {
        fn fit<K: Eq + std::hash::Hash, V>(m: &mut FxHashMap<K, V>) {
            if m.capacity() > 4 * m.len() + 1024 {
                m.shrink_to(2 * m.len());
            }
        }
        fit(&mut self.zombies);
        fit(&mut self.by_pid);
        fit(&mut self.by_parent);
        fit(&mut self.waits);
    }

    /// Every zombie counts as changed and new (after the reader of changes lost what it
    /// had: it starts again from an empty store).
    pub fn change_all(&mut self) {
        self.changed = self
            .zombies
            .keys()
            .filter(|k| !self.held.contains(k))
            .map(|k| (*k, None))
            .collect();
    }
}

/// Marks a zombie changed (its exit time as of the last [`Tracker::take_changes`], if this
/// is its first change since).
fn changed(changed: &mut FxHashMap<ProcKey, Option<Ns>>, z: &Zombie) {
    changed.entry(z.key).or_insert(Some(z.exited_at));
}

/// Bound on origins learnt between two builds (beyond it, zombies show what their origin ran
/// as from the next refresh on).
const ORIGINS_LEARNT_LIMIT: usize = 4096;

fn learnt(learnt: &mut Vec<ProcKey>, key: ProcKey) {
    if learnt.len() < ORIGINS_LEARNT_LIMIT {
        learnt.push(key);
    }
}

/// A zombie that changed: where it was in the table's order (its exit time as of the last
/// take; None: not listed then) and what it is now (None: gone).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    pub key: ProcKey,
    pub was: Option<Ns>,
    pub now: Option<Zombie>,
}

/// What changed in the table since the last build (see [`Tracker::take_changes`]).
#[derive(Clone, Debug, Default)]
pub struct Changes {
    pub changes: Vec<Change>,
    /// More changes wait for the next take.
    pub more: bool,
    /// Origins learnt (their zombies' shown origin changes).
    pub learnt: Vec<ProcKey>,
    /// Parents of zombies that were seen calling wait().
    pub waited: FxHashSet<u32>,
    /// What the changed zombies' origins (and the learnt ones) ran as.
    pub origins: FxHashMap<ProcKey, OriginInfo>,
    pub fingerprint: u64,
}

/// A copy of the table for readers (see [`Tracker::table`]).
#[derive(Clone, Debug, Default)]
pub struct Table {
    pub zombies: Vec<Zombie>,
    /// Parents of zombies that were seen calling wait().
    pub waited: FxHashSet<u32>,
    /// What the zombies' origins ran as, where the kernel reported it.
    pub origins: FxHashMap<ProcKey, OriginInfo>,
    pub fingerprint: u64,
}

/// A 64-bit mix of words (splitmix64 steps), for [`Tracker::fingerprint`].
fn mix(words: &[u64]) -> u64 {
    let mut h = 0x9e37_79b9_7f4a_7c15u64;
    for &w in words {
        h = (h ^ w).wrapping_add(0x9e37_79b9_7f4a_7c15);
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^= h >> 31;
    }
    h
}

/// A zombie's contribution to the fingerprint: everything a reader sees of it.
fn digest(z: &Zombie) -> u64 {
    let comm = |c: &Comm| u64::from_le_bytes(c.0[..8].try_into().expect("8 bytes"));
    mix(&[
        u64::from(z.key.pid),
        z.key.start_ticks,
        z.exited_at,
        u64::from(z.ppid) | (u64::from(z.reparented) << 32),
        z.parent_start_ticks,
        comm(&z.parent_comm),
        u64::from(z.wait_status)
            | (u64::from(z.parent_gone) << 32)
            | ((z.source == Source::Scan) as u64) << 33
            | (z.origin.kind as u64) << 34,
        z.cgroup_id,
        z.origin
            .key
            .map_or(0, |k| u64::from(k.pid) ^ k.start_ticks.rotate_left(32)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Ns = 1_000_000;

    /// What the daemon counts from the results of `apply`: summed [`Applied::counts`], the
    /// mapping `Metrics::record` uses.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    struct Totals {
        exits: u64,
        autoreaped: u64,
        reaped: u64,
        reaped_unobserved: u64,
    }

    impl Totals {
        fn add(&mut self, a: Applied) {
            let c = a.counts();
            self.exits += c.exits;
            self.autoreaped += c.autoreaped;
            self.reaped += c.reaped;
            self.reaped_unobserved += c.reaps_unobserved;
        }
    }

    /// The tracker as the daemon drives it: every change an event through `apply`, and the
    /// totals counted from what `apply` returned.
    #[derive(Default)]
    struct Tracker {
        t: super::Tracker,
        totals: Totals,
    }

    impl std::ops::Deref for Tracker {
        type Target = super::Tracker;
        fn deref(&self) -> &super::Tracker {
            &self.t
        }
    }

    impl Tracker {
        fn new(tombstones: usize) -> Self {
            Self {
                t: super::Tracker::new(tombstones),
                totals: Totals::default(),
            }
        }

        fn apply(&mut self, ev: &Event) -> Applied {
            let a = self.t.apply(ev);
            self.totals.add(a);
            a
        }

        fn totals(&self) -> Totals {
            self.totals
        }

        fn take_left_by_exec(&mut self) -> Vec<Zombie> {
            self.t.take_left_by_exec()
        }

        fn hold_back(&mut self, hold: Option<Hold>) {
            self.t.hold_back(hold);
        }

        fn take_changes(&mut self, max: usize) -> Changes {
            self.t.take_changes(max)
        }

        fn reconcile(&mut self, started: Ns, zombies: &[ScanEntry]) -> ReconcileReport {
            self.reconcile_scan(started, zombies, &[])
        }

        fn reconcile_scan(
            &mut self,
            started: Ns,
            zombies: &[ScanEntry],
            exiting: &[(ProcKey, bool)],
        ) -> ReconcileReport {
            let scan = Arc::new(Scan {
                zombies: zombies.to_vec(),
                exiting: exiting.to_vec(),
            });
            match self.apply(&Event::Scanned { started, scan }) {
                Applied::Reconciled(r) => r,
                a => panic!("a scan applied as {a:?}"),
            }
        }

        fn vanish(&mut self, key: &ProcKey, at: Ns) -> bool {
            self.apply(&Event::Vanished { key: *key, at }) == Applied::Vanished(true)
        }

        fn expire_vanished(&mut self, now: Ns, grace: Ns) -> usize {
            match self.apply(&Event::GraceElapsed { now, grace }) {
                Applied::SettledUnobserved(n) => n,
                a => panic!("grace applied as {a:?}"),
            }
        }

        fn set_parent(&mut self, key: &ProcKey, ppid: u32, parent_start_ticks: u64, comm: Comm) {
            self.apply(&Event::Reparented {
                key: *key,
                ppid,
                parent_start_ticks,
                parent_comm: comm,
            });
        }
    }

    fn key(pid: u32, start: u64) -> ProcKey {
        ProcKey {
            pid,
            start_ticks: start,
        }
    }

    fn exit(pid: u32, start: u64, ppid: u32, at: Ns) -> Event {
        Event::Exit(Exit {
            key: key(pid, start),
            at,
            ppid,
            parent_start_ticks: 1,
            comm: Comm::new("child"),
            parent_comm: Comm::new("parent"),
            wait_status: 0,
            cgroup_id: 1,
            flags: ExitFlags::default(),
            origin: Origin::default(),
        })
    }

    fn free(pid: u32, start: u64, at: Ns) -> Event {
        Event::Free {
            key: key(pid, start),
            at,
        }
    }

    fn scan_entry(pid: u32, start: u64, ppid: u32, at: Ns) -> ScanEntry {
        ScanEntry {
            key: key(pid, start),
            ppid,
            parent_start_ticks: 1,
            comm: Comm::new("child"),
            parent_comm: Comm::new("parent"),
            wait_status: 0,
            cgroup_id: 1,
            exited_at_estimate: at,
            origin: Origin::default(),
            origin_info: None,
        }
    }

    fn origin(kind: OriginKind, pid: u32) -> Origin {
        Origin {
            kind,
            key: Some(key(pid, 3)),
        }
    }

    #[test]
    fn a_zombie_keeps_the_origin_its_exit_carried_and_the_origins_command() {
        let mut t = Tracker::default();
        let seen = OriginSeen {
            key: key(50, 3),
            kind: OriginKind::Exec,
            info: OriginInfo::from_cmdline(Comm::new("sh"), b"sh\0-c\0sleep 1 &\0"),
        };
        assert_eq!(
            t.apply(&Event::Origin(Box::new(seen.clone()))),
            Applied::Origin
        );
        let Event::Exit(mut e) = exit(100, 5, 1, MS) else {
            unreachable!()
        };
        e.origin = origin(OriginKind::Exec, 50);
        t.apply(&Event::Exit(e));
        let z = t.get(&key(100, 5)).unwrap();
        assert_eq!(z.origin, origin(OriginKind::Exec, 50));
        let info = t.origin_info(&key(50, 3)).unwrap();
        assert_eq!(info.argv, ["sh", "-c", "sleep 1 &"]);
        assert_eq!(info.comm.as_str(), "sh");
        // Another process with the same pid is another origin.
        assert!(t.origin_info(&key(50, 4)).is_none());
    }

    #[test]
    fn zombies_an_exec_session_leaves_are_counted_once_and_its_own_reaped_ones_not() {
        let session = origin(OriginKind::Exec, 50);
        let exit_of = |pid: u32, ppid: u32, in_session: bool| {
            let Event::Exit(mut e) = exit(pid, 5, ppid, MS) else {
                unreachable!()
            };
            e.origin = session;
            e.parent_start_ticks = 3;
            e.flags.parent_in_origin = in_session;
            e
        };
        let mut t = Tracker::default();
        // The session's own process: its runtime reaps it.
        let mut own = exit_of(50, 7, false);
        own.key = key(50, 3);
        // A child of the session's shell, which may still reap it.
        t.apply(&Event::Exit(exit_of(101, 50, true)));
        assert!(t.take_left_by_exec().is_empty());
        // An orphan already handed to PID 1.
        t.apply(&Event::Exit(exit_of(102, 1, false)));
        let left = t.take_left_by_exec();
        assert_eq!(left.iter().map(|z| z.key.pid).collect::<Vec<_>>(), [102]);
        // The shell exits without reaping 101: now 101 is left, once.
        t.apply(&Event::Exit(own));
        t.apply(&Event::Exit(own));
        let left = t.take_left_by_exec();
        assert_eq!(left.iter().map(|z| z.key.pid).collect::<Vec<_>>(), [101]);
        // A process of the init lineage is never counted.
        let Event::Exit(mut e) = exit(103, 5, 1, MS) else {
            unreachable!()
        };
        e.origin = origin(OriginKind::Init, 1);
        t.apply(&Event::Exit(e));
        assert!(t.take_left_by_exec().is_empty());
    }

    #[test]
    fn an_exit_refines_a_scanned_origin_unless_it_knows_less() {
        let mut t = Tracker::default();
        let mut scanned = scan_entry(100, 5, 1, MS);
        scanned.origin = origin(OriginKind::Init, 1);
        scanned.origin_info = Some(OriginInfo::from_cmdline(Comm::new("app"), b"/app\0"));
        t.reconcile(2 * MS, &[scanned]);
        assert_eq!(t.origin_info(&key(1, 3)).unwrap().argv, ["/app"]);
        let Event::Exit(e) = exit(100, 5, 1, MS) else {
            unreachable!()
        };
        // The kernel did not see its fork: keep what /proc told.
        assert_eq!(t.apply(&Event::Exit(e)), Applied::Refined);
        assert_eq!(t.get(&key(100, 5)).unwrap().origin.kind, OriginKind::Init);

        let mut scanned = scan_entry(200, 5, 1, MS);
        scanned.origin = origin(OriginKind::Init, 1);
        t.reconcile(2 * MS, &[scanned]);
        let Event::Exit(mut e) = exit(200, 5, 1, MS) else {
            unreachable!()
        };
        e.origin = origin(OriginKind::Exec, 60);
        t.apply(&Event::Exit(e));
        assert_eq!(
            t.get(&key(200, 5)).unwrap().origin,
            origin(OriginKind::Exec, 60)
        );
    }

    #[test]
    fn the_book_of_origins_is_bounded() {
        let mut t = Tracker::default();
        for pid in 0..(ORIGIN_BOOK_CAPACITY as u32 + 10) {
            t.apply(&Event::Origin(Box::new(OriginSeen {
                key: key(pid, 1),
                kind: OriginKind::Exec,
                info: OriginInfo::default(),
            })));
        }
        assert_eq!(t.origins.map.len(), ORIGIN_BOOK_CAPACITY);
        assert!(t.origin_info(&key(0, 1)).is_none());
        assert!(
            t.origin_info(&key(ORIGIN_BOOK_CAPACITY as u32 + 9, 1))
                .is_some()
        );
    }

    #[test]
    fn command_lines_split_on_nul_and_an_empty_one_has_no_words() {
        let i = OriginInfo::from_cmdline(Comm::new("x"), b"a\0b c\0");
        assert_eq!(i.argv, ["a", "b c"]);
        // Cut by the kernel side's bound: the last word is kept as far as it goes.
        assert_eq!(
            OriginInfo::from_cmdline(Comm::new("x"), b"a\0bc").argv,
            ["a", "bc"]
        );
        assert!(
            OriginInfo::from_cmdline(Comm::new("x"), b"")
                .argv
                .is_empty()
        );
    }

    #[test]
    fn exit_then_free_is_a_zombie_then_reaped() {
        let mut t = Tracker::default();
        assert_eq!(t.apply(&exit(100, 5, 1, 10 * MS)), Applied::Zombie);
        assert_eq!(t.len(), 1);
        assert_eq!(t.oldest_age_ns(40 * MS), 30 * MS);
        assert_eq!(
            t.apply(&free(100, 5, 25 * MS)),
            Applied::Reaped {
                latency_ns: Some(15 * MS)
            }
        );
        assert!(t.is_empty());
        assert_eq!(t.totals().exits, 1);
        assert_eq!(t.totals().reaped, 1);
    }

    #[test]
    fn autoreaped_child_never_counts_as_zombie() {
        let mut t = Tracker::default();
        let Event::Exit(mut e) = exit(100, 5, 1, MS) else {
            unreachable!()
        };
        e.flags.autoreap = true;
        assert_eq!(t.apply(&Event::Exit(e)), Applied::Autoreaped);
        assert!(t.is_empty());
        // Its free and a duplicated exit change nothing.
        assert_eq!(t.apply(&free(100, 5, 2 * MS)), Applied::Duplicate);
        assert_eq!(t.apply(&Event::Exit(e)), Applied::Duplicate);
        assert_eq!(t.totals().exits, 1);
        assert_eq!(t.totals().autoreaped, 1);
        assert_eq!(t.totals().reaped, 0);
    }

    #[test]
    fn pid_reuse_is_a_different_process() {
        let mut t = Tracker::default();
        t.apply(&exit(100, 5, 1, MS));
        // The same pid, started later, exits: the kernel gave the pid to a new process, so
        // the old zombie was released (its free may still come, or never).
        assert_eq!(t.apply(&exit(100, 9, 1, 2 * MS)), Applied::Zombie);
        assert_eq!(t.len(), 1);
        assert!(t.get(&key(100, 9)).is_some());
        assert_eq!(t.vanished_len(), 1);
        // The old one's late free is its reap and does not touch the new one.
        assert_eq!(
            t.apply(&free(100, 5, 3 * MS)),
            Applied::Reaped {
                latency_ns: Some(2 * MS)
            }
        );
        assert_eq!(t.len(), 1);
        // A free for a start time never seen is not this zombie.
        assert_eq!(t.apply(&free(100, 7, 4 * MS)), Applied::UnknownFree);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn a_zombie_whose_pid_a_newer_process_holds_was_reaped_even_if_no_free_comes() {
        let mut t = Tracker::default();
        t.apply(&exit(100, 5, 1, MS));
        t.apply(&exit(200, 5, 1, MS));
        // Its free never comes; the pid is reused by a process that is autoreaped, then by
        // one a scan finds: each proves the zombie before it gone.
        let mut e = exit(100, 9, 1, 2 * MS);
        if let Event::Exit(ref mut x) = e {
            x.flags.autoreap = true;
        }
        assert_eq!(t.apply(&e), Applied::Autoreaped);
        assert!(t.get(&key(100, 5)).is_none());
        let r = t.reconcile(3 * MS, &[scan_entry(200, 5, 1, MS)]);
        assert_eq!(r.removed, 0);
        t.apply(&Event::Scanned {
            started: 4 * MS,
            scan: Arc::new(Scan {
                zombies: vec![scan_entry(200, 5, 1, MS), scan_entry(300, 7, 1, 3 * MS)],
                exiting: vec![],
            }),
        });
        // Unobserved once the grace passes without its free.
        assert_eq!(t.expire_vanished(2 * MS + GRACE, GRACE), 1);
        assert_eq!(t.totals().reaped_unobserved, 1);
        // A late exit of the old process (out of order) does not bring it back.
        t.apply(&exit(300, 9, 1, 5 * MS));
        assert_eq!(t.apply(&exit(300, 7, 1, 3 * MS)), Applied::Duplicate);
        assert!(t.get(&key(300, 7)).is_none());
        assert!(t.get(&key(300, 9)).is_some());
    }

    #[test]
    fn zombies_handed_to_a_new_parent_stay_sweep_candidates() {
        let mut t = Tracker::default();
        t.apply(&exit(500, 3, 50, MS));
        t.apply(&exit(501, 3, 60, MS));
        // Parent 50 exits; /proc names the new parent, which never calls wait() but may
        // release it (SIGCHLD ignored).
        t.apply(&exit(50, 1, 1, 2 * MS));
        t.set_parent(&key(500, 3), 1, 1, Comm::new("init"));
        assert!(!t.get(&key(500, 3)).unwrap().parent_gone);
        let (keys, _) = t.sweep_batch(0, 10 * MS, 0, 100);
        assert_eq!(keys, [key(500, 3)]);
        assert_eq!(t.keys().count(), 3);
    }

    #[test]
    fn duplicated_events_are_idempotent() {
        let mut t = Tracker::default();
        let e = exit(100, 5, 1, MS);
        assert_eq!(t.apply(&e), Applied::Zombie);
        assert_eq!(t.apply(&e), Applied::Duplicate);
        assert_eq!(
            t.apply(&free(100, 5, 2 * MS)),
            Applied::Reaped {
                latency_ns: Some(MS)
            }
        );
        assert_eq!(t.apply(&free(100, 5, 2 * MS)), Applied::Duplicate);
        assert_eq!(t.apply(&e), Applied::Duplicate);
        assert!(t.is_empty());
        assert_eq!(t.totals().exits, 1);
        assert_eq!(t.totals().reaped, 1);
    }

    #[test]
    fn free_before_exit_leaves_no_phantom() {
        let mut t = Tracker::default();
        assert_eq!(t.apply(&free(100, 5, 3 * MS)), Applied::UnknownFree);
        assert_eq!(
            t.apply(&exit(100, 5, 1, MS)),
            Applied::ExitAfterFree { latency_ns: 2 * MS }
        );
        assert!(t.is_empty());
        assert_eq!(t.totals().reaped, 1);
    }

    #[test]
    fn lost_free_is_repaired_by_reconcile() {
        let mut t = Tracker::default();
        t.apply(&exit(100, 5, 1, MS));
        t.apply(&exit(101, 5, 1, 2 * MS));
        // 100's free was lost; the scan (started at 10 ms) shows only 101.
        let report = t.reconcile(10 * MS, &[scan_entry(101, 5, 1, 0)]);
        assert_eq!(
            report,
            ReconcileReport {
                added: 0,
                removed: 1,
                exiting_unknown: 0
            }
        );
        assert_eq!(t.len(), 1);
        assert_eq!(t.get(&key(101, 5)).unwrap().source, Source::Event);
        // A late free for the removed one is a duplicate, not an error.
        assert_eq!(t.apply(&free(100, 5, 11 * MS)), Applied::Duplicate);
    }

    #[test]
    fn lost_exit_is_repaired_by_reconcile_and_refined_by_a_late_event() {
        let mut t = Tracker::default();
        let report = t.reconcile(10 * MS, &[scan_entry(200, 7, 1, 4 * MS)]);
        assert_eq!(
            report,
            ReconcileReport {
                added: 1,
                removed: 0,
                exiting_unknown: 0
            }
        );
        let z = t.get(&key(200, 7)).unwrap();
        assert_eq!(z.source, Source::Scan);
        assert_eq!(z.exited_at, 4 * MS);
        // The exit event was only queued, not lost: it refines the estimate.
        assert_eq!(t.apply(&exit(200, 7, 1, 9 * MS)), Applied::Refined);
        let z = t.get(&key(200, 7)).unwrap();
        assert_eq!((z.source, z.exited_at), (Source::Event, 9 * MS));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn reconcile_keeps_exits_newer_than_the_scan() {
        let mut t = Tracker::default();
        t.apply(&exit(300, 1, 1, 20 * MS));
        // The scan started before this exit and could not have seen it.
        let report = t.reconcile(10 * MS, &[]);
        assert_eq!(report.removed, 0);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn reconcile_keeps_a_process_still_on_its_way_out() {
        let mut t = Tracker::default();
        t.apply(&exit(310, 1, 1, 5 * MS));
        // The scan read it between its exit tracepoint and exit_notify: not yet 'Z'.
        let report = t.reconcile_scan(10 * MS, &[], &[(key(310, 1), true)]);
        assert_eq!((report.removed, report.exiting_unknown), (0, 0));
        assert_eq!(t.len(), 1);
        // One the table does not know is reported, so that a follow-up scan finds it; a
        // zombie leader waiting for its last thread is not a reason for one.
        let report = t.reconcile_scan(
            10 * MS,
            &[],
            &[
                (key(311, 1), true),
                (key(312, 1), false),
                (key(310, 1), true),
            ],
        );
        assert_eq!((report.removed, report.exiting_unknown), (0, 1));
        // Gone from /proc altogether: it was reaped.
        assert_eq!(t.reconcile(20 * MS, &[]).removed, 1);
        assert!(t.is_empty());
    }

    #[test]
    fn reconcile_does_not_resurrect_a_process_freed_during_the_scan() {
        let mut t = Tracker::default();
        t.apply(&exit(400, 1, 1, MS));
        // Freed while the scan ran; the scan had already listed it as a zombie.
        t.apply(&free(400, 1, 12 * MS));
        let report = t.reconcile(10 * MS, &[scan_entry(400, 1, 1, MS)]);
        assert_eq!(report, ReconcileReport::default());
        assert!(t.is_empty());
        // Same when the process was never seen exiting at all.
        t.apply(&free(401, 1, 12 * MS));
        t.reconcile(10 * MS, &[scan_entry(401, 1, 1, MS)]);
        assert!(t.is_empty());
    }

    #[test]
    fn dying_parent_marks_its_zombies_and_reparenting_updates_them() {
        let mut t = Tracker::default();
        t.apply(&exit(500, 3, 50, MS));
        t.apply(&exit(501, 3, 50, MS));
        t.apply(&exit(600, 3, 60, MS));
        // The parent (pid 50, start 1) exits.
        t.apply(&exit(50, 1, 1, 2 * MS));
        let gone: Vec<u32> = {
            let mut v: Vec<u32> = t.parent_gone().map(|z| z.key.pid).collect();
            v.sort();
            v
        };
        assert_eq!(gone, vec![500, 501]);
        t.set_parent(&key(500, 3), 1, 0, Comm::new("init"));
        let z = t.get(&key(500, 3)).unwrap();
        assert_eq!((z.ppid, z.parent_gone, z.reparented), (1, false, 1));
        assert_eq!(t.children_of(1).count(), 2); // 500 and the dead parent 50 itself
        assert_eq!(t.children_of(50).count(), 1);
    }

    #[test]
    fn a_child_whose_exit_comes_after_its_parents_is_marked_until_handed_over() {
        let mut t = Tracker::default();
        // The parent (pid 50, start 1) exits first; its child read ppid 50 before the
        // parent's exit_notify reparented it, and reserved its record after the parent's.
        t.apply(&exit(50, 1, 1, MS));
        t.apply(&exit(500, 3, 50, 2 * MS));
        let gone: Vec<u32> = t.parent_gone().map(|z| z.key.pid).collect();
        assert_eq!(gone, [500]);
        // /proc read before that exit_notify still shows the dead parent: keep looking.
        t.set_parent(&key(500, 3), 50, 1, Comm::new("parent"));
        assert!(t.get(&key(500, 3)).unwrap().parent_gone);
        t.set_parent(&key(500, 3), 1, 0, Comm::new("init"));
        let z = t.get(&key(500, 3)).unwrap();
        assert_eq!((z.ppid, z.parent_gone, z.reparented), (1, false, 1));
        // A parent already reaped counts too.
        t.apply(&free(60, 1, 3 * MS));
        t.apply(&exit(600, 3, 60, 4 * MS));
        assert!(t.get(&key(600, 3)).unwrap().parent_gone);
        // A live parent does not.
        t.apply(&exit(700, 3, 70, 5 * MS));
        assert!(!t.get(&key(700, 3)).unwrap().parent_gone);
    }

    #[test]
    fn a_resync_corrects_a_parent_whose_exit_was_lost() {
        let mut t = Tracker::default();
        t.apply(&exit(500, 3, 50, MS));
        // Parent 50 exited (event lost); the kernel handed 500 to pid 1 (start 1).
        let mut e = scan_entry(500, 3, 1, MS);
        e.parent_start_ticks = 1;
        t.reconcile(10 * MS, &[e]);
        let z = t.get(&key(500, 3)).unwrap();
        assert_eq!((z.ppid, z.parent_gone, z.reparented), (1, false, 1));
        assert_eq!(z.source, Source::Event, "the event's facts are kept");
    }

    #[test]
    fn the_sweep_rotates_through_old_zombies_and_forgets_the_reaped() {
        let mut t = Tracker::default();
        for pid in 0..10 {
            t.apply(&exit(100 + pid, 1, 1, MS * u64::from(pid)));
        }
        // Children of a parent that never waited are not looked at.
        assert!(t.sweep_batch(0, 5 * MS, 0, 20).0.is_empty());
        // Parent 1 waits at 3 ms; with 1 ms of dedup that covers exits up to 4 ms.
        t.apply(&Event::Wait {
            pid: 1,
            target: 0,
            at: 3 * MS,
        });
        // Exited before 5 ms (and so by 4 ms): pids 100..=104, two candidates per batch.
        let (a, next) = t.sweep_batch(0, 5 * MS, MS, 2);
        let (b, next) = t.sweep_batch(next, 5 * MS, MS, 2);
        let (c, next) = t.sweep_batch(next, 5 * MS, MS, 2);
        assert_eq!((a.len(), b.len(), c.len()), (2, 2, 2));
        let mut seen: Vec<u32> = a.iter().chain(&b).chain(&c).map(|k| k.pid).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen, [100, 101, 102, 103, 104]);
        // Around the end: from the start again, each candidate once per turn.
        let (d, _) = t.sweep_batch(next, 5 * MS, MS, 20);
        assert_eq!(d.len(), 5, "{d:?}");
        // A wait at 3 ms with no dedup slack does not cover the exit at 4 ms.
        let (all, _) = t.sweep_batch(0, 10 * MS, 0, 20);
        assert_eq!(all.len(), 4, "{all:?}");
        assert!(t.vanish(&key(100, 1), 20 * MS));
        assert!(!t.vanish(&key(100, 1), 20 * MS));
        assert_eq!((t.len(), t.vanished_len()), (9, 1));
        assert_eq!(t.expire_vanished(20 * MS + GRACE, GRACE), 1);
        assert_eq!((t.vanished_len(), t.totals().reaped_unobserved), (0, 1));
        // Its free, arriving at last, is a duplicate.
        assert_eq!(t.apply(&free(100, 1, 21 * MS + GRACE)), Applied::Duplicate);
    }

    const GRACE: Ns = 2_000 * MS;

    #[test]
    fn zombies_whose_parent_died_are_swept_even_when_nobody_waited() {
        let mut t = Tracker::default();
        t.apply(&exit(500, 3, 50, MS));
        t.apply(&exit(501, 3, 60, MS));
        // Parent 50 (start tick 1) dies; its zombie goes to a reaper that /proc can no longer
        // name once the zombie is gone. Parent 60 lives and never waits.
        t.apply(&exit(50, 1, 1, 2 * MS));
        let (keys, _) = t.sweep_batch(0, 10 * MS, 0, 100);
        assert_eq!(keys, [key(500, 3)]);
    }

    #[test]
    fn a_candidate_among_many_zombies_that_cannot_be_reaped_is_found_in_one_pass() {
        let mut t = Tracker::default();
        // 10,000 zombies of a live parent that never waits, and one of a parent that does.
        for pid in 0..10_000 {
            t.apply(&exit(1_000 + pid, 1, 2, MS));
        }
        t.apply(&exit(500, 3, 50, MS));
        t.apply(&Event::Wait {
            pid: 50,
            target: 0,
            at: 2 * MS,
        });
        for from in [0, 1, 5_000, 9_999, 10_000] {
            let (keys, _) = t.sweep_batch(from, 10 * MS, 0, 512);
            assert_eq!(keys, [key(500, 3)], "from {from}");
        }
    }

    #[test]
    fn a_free_that_comes_after_the_sweep_is_an_ordinary_reap() {
        let mut t = Tracker::default();
        t.apply(&exit(500, 3, 50, MS));
        assert!(t.vanish(&key(500, 3), 1_000 * MS));
        assert!(t.get(&key(500, 3)).is_none(), "out of the table at once");
        assert_eq!(t.expire_vanished(1_100 * MS, GRACE), 0);
        // The free was only late: a reap with its exact latency, nothing unobserved.
        assert_eq!(
            t.apply(&free(500, 3, 1_200 * MS)),
            Applied::Reaped {
                latency_ns: Some(1_199 * MS)
            }
        );
        assert_eq!(t.expire_vanished(10_000 * MS, GRACE), 0);
        let totals = t.totals();
        assert_eq!((totals.reaped, totals.reaped_unobserved), (1, 0));
        // A duplicate exit or free changes nothing.
        assert_eq!(t.apply(&exit(500, 3, 50, MS)), Applied::Duplicate);
        assert_eq!(t.apply(&free(500, 3, 1_300 * MS)), Applied::Duplicate);
    }

    #[test]
    fn a_free_that_never_comes_is_counted_unobserved_after_the_grace() {
        let mut t = Tracker::default();
        t.apply(&exit(500, 3, 50, MS));
        t.apply(&exit(501, 3, 50, MS));
        assert!(t.vanish(&key(500, 3), 1_000 * MS));
        assert!(t.vanish(&key(501, 3), 1_500 * MS));
        // A duplicate of the exit while it waits for its free is not a new zombie.
        assert_eq!(t.apply(&exit(500, 3, 50, MS)), Applied::Duplicate);
        assert_eq!(t.len(), 0);
        assert_eq!(t.expire_vanished(1_000 * MS + GRACE, GRACE), 1);
        assert_eq!(t.expire_vanished(1_500 * MS + GRACE, GRACE), 1);
        let totals = t.totals();
        assert_eq!((totals.reaped, totals.reaped_unobserved), (0, 2));
        assert_eq!(t.apply(&free(500, 3, 9_000 * MS)), Applied::Duplicate);
        // A resync that races with it does not bring it back.
        t.reconcile(9_000 * MS, &[]);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn a_different_process_with_the_parents_pid_does_not_orphan() {
        let mut t = Tracker::default();
        t.apply(&exit(500, 3, 50, MS)); // parent 50 started at tick 1
        t.apply(&exit(50, 99, 1, 2 * MS)); // another process that reused pid 50
        assert_eq!(t.parent_gone().count(), 0);
    }

    #[test]
    fn waits_are_recorded_and_forgotten_when_the_waiter_exits() {
        let mut t = Tracker::default();
        t.apply(&Event::Wait {
            pid: 70,
            target: 0,
            at: MS,
        });
        t.apply(&Event::Wait {
            pid: 70,
            target: 71,
            at: 2 * MS,
        });
        let w = t.last_wait(70).unwrap();
        assert_eq!((w.count, w.last_at, w.last_target), (2, 2 * MS, 71));
        t.apply(&exit(70, 1, 1, 3 * MS));
        assert!(t.last_wait(70).is_none());
    }

    #[test]
    fn tombstones_are_bounded() {
        let mut t = Tracker::new(4);
        for pid in 0..100 {
            t.apply(&free(pid, 1, MS));
        }
        assert_eq!(t.tombstones.map.len(), 4);
        assert_eq!(t.tombstones.order.len(), 4);
    }

    /// A deterministic xorshift64 generator from `seed`, for the randomised tests.
    fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
        move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        }
    }

    /// A random interleaving of exits, frees, duplicates and losses, checked against a model
    /// after a final reconcile against the ground truth.
    #[test]
    fn random_sequences_converge_to_the_truth_after_reconcile() {
        let mut rand = xorshift(0x9e37_79b9_7f4a_7c15);
        for _round in 0..50 {
            let mut t = Tracker::new(1 << 16);
            let mut alive_zombies: FxHashSet<ProcKey> = FxHashSet::default();
            // 64 pid slots; each free bumps the slot's start time (pid reuse).
            let mut generation = [0u64; 64];
            let mut now = MS;
            for _ in 0..2_000u32 {
                now += MS;
                let slot = (rand() % 64) as usize;
                let k = key(1000 + slot as u32, generation[slot]);
                let drop_event = rand().is_multiple_of(10);
                let dup = rand().is_multiple_of(10);
                if alive_zombies.remove(&k) {
                    generation[slot] += 1;
                    if !drop_event {
                        t.apply(&free(k.pid, k.start_ticks, now));
                    }
                    if dup {
                        t.apply(&free(k.pid, k.start_ticks, now));
                    }
                } else {
                    alive_zombies.insert(k);
                    if !drop_event {
                        t.apply(&exit(k.pid, k.start_ticks, 1, now));
                    }
                    if dup {
                        t.apply(&exit(k.pid, k.start_ticks, 1, now));
                    }
                }
            }
            now += MS;
            let truth: Vec<ScanEntry> = alive_zombies
                .iter()
                .map(|k| scan_entry(k.pid, k.start_ticks, 1, 0))
                .collect();
            t.reconcile(now, &truth);
            let mut got: Vec<ProcKey> = t.zombies().map(|z| z.key).collect();
            let mut want: Vec<ProcKey> = alive_zombies.into_iter().collect();
            got.sort();
            want.sort();
            assert_eq!(got, want);
        }
    }

    /// The fingerprint decides whether a snapshot is rebuilt: it must not depend on the
    /// order changes came in, must change with everything a reader sees (a zombie, its
    /// parent, whether that parent waits), and must come back when a change is undone.
    #[test]
    fn the_fingerprint_follows_what_readers_see_in_any_order() {
        let evs = [
            exit(10, 1, 1, MS),
            exit(11, 1, 1, 2 * MS),
            exit(12, 1, 2, 3 * MS),
        ];
        let (mut a, mut b) = (Tracker::default(), Tracker::default());
        let empty = a.fingerprint();
        for e in &evs {
            a.apply(e);
        }
        for e in evs.iter().rev() {
            b.apply(e);
        }
        assert_eq!(a.fingerprint(), b.fingerprint(), "order-independent");
        assert_ne!(a.fingerprint(), empty);
        let three = a.fingerprint();
        // A duplicate changes nothing a reader sees.
        a.apply(&evs[0]);
        assert_eq!(a.fingerprint(), three);
        // The parent of 10 and 11 is seen waiting: their diagnosis changes.
        a.apply(&Event::Wait {
            pid: 1,
            target: 0,
            at: 4 * MS,
        });
        let waited = a.fingerprint();
        assert_ne!(waited, three);
        // Reparented: the parent readers see changes.
        a.set_parent(&key(12, 1), 99, 5, Comm::new("init"));
        let reparented = a.fingerprint();
        assert_ne!(reparented, waited);
        // Reaped: gone from the table, and from the fingerprint.
        a.apply(&free(12, 1, 6 * MS));
        b.apply(&Event::Wait {
            pid: 1,
            target: 0,
            at: 4 * MS,
        });
        b.apply(&free(12, 1, 6 * MS));
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), reparented);
        let two = a.fingerprint();
        a.apply(&free(10, 1, 7 * MS));
        assert_ne!(a.fingerprint(), two);
        a.apply(&free(11, 1, 7 * MS));
        // The last reaps undo the zombies' parts (the parent's waiting mark stays: one
        // spare rebuild at most).
        let mut c = Tracker::default();
        c.apply(&evs[0]);
        c.apply(&Event::Wait {
            pid: 1,
            target: 0,
            at: 4 * MS,
        });
        c.apply(&free(10, 1, 7 * MS));
        assert_eq!(a.fingerprint(), c.fingerprint());
    }

    const HOLD_TEST: Hold = Hold {
        for_ns: 100 * MS,
        wait_dedup_ns: 200 * MS,
    };

    fn wait(pid: u32, at: Ns) -> Event {
        Event::Wait { pid, target: 0, at }
    }

    /// The zombies a reader that applies every take of changes has, by key.
    fn read(t: &mut Tracker, reader: &mut FxHashMap<ProcKey, Zombie>) {
        for c in t.take_changes(usize::MAX).changes {
            reader.remove(&c.key);
            if let Some(z) = c.now {
                reader.insert(c.key, z);
            }
        }
    }

    /// A child of a parent that waits is reaped within milliseconds: held back, its exit
    /// and its reap change nothing readers see (no build); one still a zombie when its hold
    /// ends is shown, as new; a leak (a parent that never waited) is shown at once.
    #[test]
    fn a_waiting_parents_child_is_held_back_and_shown_only_if_still_a_zombie() {
        let mut t = Tracker::default();
        t.hold_back(Some(HOLD_TEST));
        let mut reader = FxHashMap::default();
        let empty = t.fingerprint();
        t.apply(&wait(1, MS));
        read(&mut t, &mut reader);
        let waiting = t.fingerprint();
        // Reaped within its hold: never seen by readers, still counted as a reap.
        t.apply(&exit(10, 1, 1, 2 * MS));
        assert_eq!((t.len(), t.held_len(), t.fingerprint()), (1, 1, waiting));
        assert_eq!(t.next_shown_at(), Some(102 * MS));
        assert!(
            matches!(t.apply(&free(10, 1, 30 * MS)), Applied::Reaped { latency_ns: Some(l) } if l == 28 * MS)
        );
        assert_eq!((t.len(), t.held_len(), t.fingerprint()), (0, 0, waiting));
        read(&mut t, &mut reader);
        assert!(reader.is_empty());
        // Still a zombie when its hold ends: shown then, not before.
        t.apply(&exit(11, 1, 1, 40 * MS));
        assert_eq!(t.held_due(139 * MS).count(), 0);
        assert_eq!(
            t.apply(&Event::HoldElapsed { now: 139 * MS }),
            Applied::Shown(0)
        );
        assert_eq!(t.fingerprint(), waiting);
        assert_eq!(t.held_due(140 * MS).collect::<Vec<_>>(), vec![key(11, 1)]);
        assert_eq!(
            t.apply(&Event::HoldElapsed { now: 140 * MS }),
            Applied::Shown(1)
        );
        assert_ne!(t.fingerprint(), waiting);
        read(&mut t, &mut reader);
        assert_eq!(reader.keys().copied().collect::<Vec<_>>(), vec![key(11, 1)]);
        // A parent that never waited: its zombie is shown at once.
        t.apply(&exit(20, 1, 2, 150 * MS));
        assert_eq!(t.held_len(), 0);
        read(&mut t, &mut reader);
        assert!(reader.contains_key(&key(20, 1)));
        // A wait long before the exit (beyond the window) holds nothing back.
        t.apply(&exit(12, 1, 1, 400 * MS));
        assert_eq!(t.held_len(), 0);
        assert_ne!(t.fingerprint(), empty);
    }

    /// What changes a held-back zombie shows it first: its parent's exit (it is handed
    /// to a reaper, no longer being reaped), a new parent read from /proc. Found gone, it
    /// leaves without readers having seen it.
    #[test]
    fn a_held_back_zombie_is_shown_when_its_parent_dies_and_leaves_unseen_when_gone() {
        let mut t = Tracker::default();
        t.hold_back(Some(HOLD_TEST));
        let mut reader = FxHashMap::default();
        t.apply(&wait(1, MS));
        t.apply(&exit(10, 1, 1, 2 * MS));
        t.apply(&exit(11, 1, 1, 3 * MS));
        t.apply(&exit(12, 1, 1, 4 * MS));
        assert_eq!(t.held_len(), 3);
        // Found gone by the check at the end of its hold: out, unseen; its late free is
        // an ordinary reap.
        assert_eq!(
            t.apply(&Event::Vanished {
                key: key(12, 1),
                at: 104 * MS
            }),
            Applied::Vanished(true)
        );
        read(&mut t, &mut reader);
        assert!(reader.is_empty());
        assert!(matches!(
            t.apply(&free(12, 1, 105 * MS)),
            Applied::Reaped { .. }
        ));
        // A new parent from /proc: shown with it.
        t.set_parent(&key(11, 1), 99, 5, Comm::new("init"));
        read(&mut t, &mut reader);
        assert_eq!(reader[&key(11, 1)].ppid, 99);
        // The parent exits (its own exit event): its held zombie is shown, handed over.
        let parent = Event::Exit(Exit {
            parent_start_ticks: 0,
            ..match exit(1, 1, 0, 6 * MS) {
                Event::Exit(e) => e,
                _ => unreachable!(),
            }
        });
        t.apply(&parent);
        read(&mut t, &mut reader);
        assert!(reader[&key(10, 1)].parent_gone);
        assert_eq!(t.held_len(), 0);
    }

    /// Holding back changes when readers see a zombie, never what they see in the end:
    /// random exits, waits, reaps, parents' deaths and takes of changes, with and without
    /// a hold; once every hold ended, the same fingerprint, table and reader's copy.
    #[test]
    fn held_back_or_not_readers_end_with_the_same_table() {
        let mut rand = xorshift(0x2545_f491_4f6c_dd1d);
        for _round in 0..40 {
            let (mut plain, mut held) = (Tracker::default(), Tracker::default());
            held.hold_back(Some(HOLD_TEST));
            let mut reader = FxHashMap::default();
            let mut alive: Vec<ProcKey> = Vec::new();
            let mut next_start = 1u64;
            let mut now = MS;
            for _ in 0..600 {
                now += (rand() % 20) * MS;
                let ev = match rand() % 6 {
                    0 | 1 => {
                        let k = key(100 + (rand() % 50) as u32, next_start);
                        next_start += 1;
                        alive.push(k);
                        exit(k.pid, k.start_ticks, 1 + (rand() % 4) as u32, now)
                    }
                    2 if !alive.is_empty() => {
                        let k = alive.swap_remove((rand() as usize) % alive.len());
                        free(k.pid, k.start_ticks, now)
                    }
                    3 => wait(1 + (rand() % 4) as u32, now),
                    4 => Event::HoldElapsed { now },
                    _ => {
                        read(&mut held, &mut reader);
                        continue;
                    }
                };
                plain.apply(&ev);
                held.apply(&ev);
            }
            held.apply(&Event::HoldElapsed { now: Ns::MAX });
            read(&mut held, &mut reader);
            assert_eq!(held.held_len(), 0);
            assert_eq!(held.fingerprint(), plain.fingerprint());
            let mut want: Vec<ProcKey> = plain.zombies().map(|z| z.key).collect();
            let mut got: Vec<ProcKey> = reader.keys().copied().collect();
            want.sort();
            got.sort();
            assert_eq!(got, want);
            for k in &want {
                assert_eq!(Some(&reader[k]), plain.zombies.get(k));
            }
        }
    }

    /// A mass release whose frees the kernel dropped passes through the vanished zombies:
    /// a compact record each, and the expiry walks them only once the oldest is due.
    #[test]
    fn vanished_zombies_are_compact_and_expire_when_due() {
        assert!(std::mem::size_of::<Gone>() <= 40);
        let mut t = Tracker::default();
        for pid in 0..1000 {
            t.apply(&exit(10_000 + pid, 1, 1, MS));
        }
        for pid in 0..1000 {
            t.vanish(&key(10_000 + pid, 1), 10 * MS + u64::from(pid) * MS);
        }
        assert_eq!((t.len(), t.vanished_len()), (0, 1000));
        assert_eq!(t.expire_vanished(10 * MS + GRACE - 1, GRACE), 0);
        // Due one by one as their grace passes.
        assert_eq!(t.expire_vanished(10 * MS + GRACE, GRACE), 1);
        assert_eq!(t.expire_vanished(10 * MS + GRACE + 499 * MS, GRACE), 499);
        assert!(matches!(
            t.apply(&free(10_000 + 999, 1, 10 * MS + GRACE + 500 * MS)),
            Applied::Reaped {
                latency_ns: Some(_)
            }
        ));
        assert_eq!(t.expire_vanished(Ns::MAX, GRACE), 499);
        assert_eq!((t.vanished_len(), t.totals().reaped_unobserved), (0, 999));
    }
}
