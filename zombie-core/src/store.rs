//! The zombie store that snapshots publish: one compact [`Record`] per zombie, in chunks
//! shared between snapshots, and one [`Group`] per set of zombies that share their parent,
//! cgroup and origin (the strings of attribution, diagnosis and origin live there, once).
//!
//! Pure: no I/O and no clock. The snapshot builder feeds it the tracker's changes
//! ([`Writer::remove`], [`Writer::insert`]) and publishes a [`Store`], which costs one
//! pointer per chunk and per group: a chunk is copied only when a change lands in it (at
//! most [`CHUNK`] records, copy-on-write through its `Arc`), so publishing costs
//! O(changes), never a copy of the table.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::{
    attribution::Attribution,
    diagnosis::Diagnosis,
    tracker::{Comm, Ns, Origin, ProcKey},
    view::OriginView,
};

/// Records per chunk when chunks are filled in order (appends); a chunk that grows in the
/// middle is split in two at twice this.
pub const CHUNK: usize = 512;

pub use crate::attribution::Labels;

/// One zombie as the store holds it: its own facts only (64 bytes); what it shares with
/// other zombies is its [`Group`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    pub exited_at: Ns,
    pub start_ticks: u64,
    pub cgroup_id: u64,
    pub comm: Comm,
    pub pid: u32,
    pub wait_status: u32,
    pub reparented: u32,
    pub group: GroupId,
    /// Found in /proc, not seen exiting (its exit time is estimated).
    pub scanned: bool,
    pub parent_gone: bool,
}

/// The store's order: oldest first, then pid and start time (the `/zombies` order and
/// its page cursor).
pub type SortKey = (Ns, u32, u64);

impl Record {
    pub fn sort_key(&self) -> SortKey {
        (self.exited_at, self.pid, self.start_ticks)
    }

    pub fn key(&self) -> ProcKey {
        ProcKey {
            pid: self.pid,
            start_ticks: self.start_ticks,
        }
    }
}

/// A group's index in [`Store::group`]; stable while the group has zombies.
pub type GroupId = u32;

/// What makes zombies share a group: the same parent (now and at exit), origin and cgroup.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GroupKey {
    pub ppid: u32,
    pub parent_start_ticks: u64,
    pub parent_comm: Comm,
    pub exit_ppid: u32,
    pub exit_parent_comm: Comm,
    pub origin: Origin,
    pub cgroup_path: Option<Arc<str>>,
}

/// What a group's zombies show beyond their own facts. Remade (same id) when its
/// diagnosis or names are refreshed.
#[derive(Clone, Debug)]
pub struct Group {
    pub key: GroupKey,
    pub attribution: Arc<Attribution>,
    pub diagnosis: Arc<Diagnosis>,
    pub origin: Arc<OriginView>,
    pub labels: Arc<Labels>,
    /// Its parent was seen waiting when it was diagnosed.
    pub parent_waited: bool,
}

/// The published store: immutable, cheap to clone (chunks and groups are shared).
#[derive(Clone, Debug, Default)]
pub struct Store {
    /// Non-empty, each sorted, in order.
    chunks: Vec<Arc<Vec<Record>>>,
    /// The index of each chunk's first record.
    starts: Vec<usize>,
    len: usize,
    groups: Vec<Option<Arc<Group>>>,
}

impl Store {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The group of a record of this store.
    pub fn group(&self, id: GroupId) -> &Group {
        self.groups[id as usize]
            .as_deref()
            .expect("a record's group lives as long as the record")
    }

    /// The live groups.
    pub fn groups(&self) -> impl Iterator<Item = &Arc<Group>> {
        self.groups.iter().flatten()
    }

    /// The record at `index` in the store's order.
    pub fn get(&self, index: usize) -> Option<&Record> {
        if index >= self.len {
            return None;
        }
        let c = self.starts.partition_point(|&s| s <= index) - 1;
        self.chunks[c].get(index - self.starts[c])
    }

    /// The records from `index` on, in order.
    pub fn iter_from(&self, index: usize) -> impl Iterator<Item = &Record> {
        let c = self
            .starts
            .partition_point(|&s| s <= index)
            .saturating_sub(1);
        let skip = index.saturating_sub(self.starts.get(c).copied().unwrap_or(0));
        self.chunks[c.min(self.chunks.len())..]
            .iter()
            .flat_map(|c| c.iter())
            .skip(skip)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Record> {
        self.chunks.iter().flat_map(|c| c.iter())
    }

    /// How many records sort at or before `key`.
    pub fn rank(&self, key: SortKey) -> usize {
        let c = self
            .chunks
            .partition_point(|ch| ch[ch.len() - 1].sort_key() <= key);
        match self.chunks.get(c) {
            Some(ch) => self.starts[c] + ch.partition_point(|r| r.sort_key() <= key),
            None => self.len,
        }
    }

    /// Chunks held (for tests and the log).
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }
}

/// The builder's side: the store being changed, and the group interner.
#[derive(Debug, Default)]
pub struct Writer {
    store: Store,
    ids: FxHashMap<GroupKey, GroupId>,
    /// Records per group (exact: the series are counted from these).
    counts: Vec<u64>,
    free: Vec<GroupId>,
    /// Groups whose last zombie went, kept until [`Self::forget_retired`] (the next
    /// refresh): a parent whose children are reaped as fast as they exit makes its group
    /// again with every child, and would be diagnosed (read from /proc) each time.
    retired: FxHashMap<GroupKey, Arc<Group>>,
}

/// Retired groups kept at most.
const RETIRED_LIMIT: usize = 1024;

impl Writer {
    pub fn len(&self) -> usize {
        self.store.len
    }

    pub fn is_empty(&self) -> bool {
        self.store.len == 0
    }

    /// What readers get: shares every chunk and group with the writer (and with the
    /// snapshots before), so the next change copies one chunk at most.
    pub fn publish(&mut self) -> Store {
        let mut at = 0;
        self.store.starts.clear();
        for c in &self.store.chunks {
            self.store.starts.push(at);
            at += c.len();
        }
        debug_assert_eq!(at, self.store.len);
        self.store.clone()
    }

    /// The records of each live group.
    pub fn count(&self, id: GroupId) -> u64 {
        self.counts[id as usize]
    }

    pub fn groups(&self) -> impl Iterator<Item = (GroupId, &Arc<Group>)> {
        self.store
            .groups
            .iter()
            .enumerate()
            .filter_map(|(i, g)| Some((i as GroupId, g.as_ref()?)))
    }

    pub fn group(&self, id: GroupId) -> &Group {
        self.store.group(id)
    }

    /// Replaces a live group's shown parts (its key stays).
    pub fn refresh_group(&mut self, id: GroupId, group: Group) {
        let slot = &mut self.store.groups[id as usize];
        debug_assert!(slot.as_ref().is_some_and(|g| g.key == group.key));
        *slot = Some(Arc::new(group));
    }

    /// The records in order (for the series' oldest exit per container).
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.store.iter()
    }

    /// Removes the zombie `key` that exited at `exited_at`; false when not held.
    pub fn remove(&mut self, key: ProcKey, exited_at: Ns) -> bool {
        let k = (exited_at, key.pid, key.start_ticks);
        let chunks = &mut self.store.chunks;
        let c = chunks.partition_point(|ch| ch[ch.len() - 1].sort_key() < k);
        let Some(chunk) = chunks.get_mut(c) else {
            return false;
        };
        let Ok(at) = chunk.binary_search_by(|r| r.sort_key().cmp(&k)) else {
            return false;
        };
        let removed = Arc::make_mut(chunk).remove(at);
        if chunk.is_empty() {
            chunks.remove(c);
        }
        self.store.len -= 1;
        self.release(removed.group);
        true
    }

    /// Adds a zombie (or replaces the record with its sort key) in group `key`, made by
    /// `make` when no zombie has it yet.
    pub fn insert(&mut self, mut record: Record, key: GroupKey, make: impl FnOnce() -> Group) {
        record.group = self.intern(key, make);
        let k = record.sort_key();
        let chunks = &mut self.store.chunks;
        let c = chunks.partition_point(|ch| ch[ch.len() - 1].sort_key() < k);
        if c == chunks.len() {
            // After every record: appended, in a new chunk when the last one is full.
            match chunks.last_mut() {
                Some(last) if last.len() < CHUNK => Arc::make_mut(last).push(record),
                _ => {
                    let mut v = Vec::with_capacity(CHUNK);
                    v.push(record);
                    chunks.push(Arc::new(v));
                }
            }
            self.store.len += 1;
            return;
        }
        let chunk = Arc::make_mut(&mut chunks[c]);
        match chunk.binary_search_by(|r| r.sort_key().cmp(&k)) {
            Ok(at) => {
                let old = std::mem::replace(&mut chunk[at], record);
                self.release(old.group);
            }
            Err(at) => {
                chunk.insert(at, record);
                self.store.len += 1;
                if chunk.len() >= 2 * CHUNK {
                    let tail = chunk.split_off(CHUNK);
                    chunk.shrink_to_fit();
                    chunks.insert(c + 1, Arc::new(tail));
                }
            }
        }
    }

    fn intern(&mut self, key: GroupKey, make: impl FnOnce() -> Group) -> GroupId {
        if let Some(&id) = self.ids.get(&key) {
            self.counts[id as usize] += 1;
            return id;
        }
        let group = match self.retired.remove(&key) {
            Some(g) => g,
            None => Arc::new(make()),
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.store.groups[id as usize] = Some(group);
                self.counts[id as usize] = 1;
                id
            }
            None => {
                self.store.groups.push(Some(group));
                self.counts.push(1);
                (self.store.groups.len() - 1) as GroupId
            }
        };
        self.ids.insert(key, id);
        id
    }

    fn release(&mut self, id: GroupId) {
        let n = &mut self.counts[id as usize];
        *n -= 1;
        if *n == 0
            && let Some(g) = self.store.groups[id as usize].take()
        {
            self.ids.remove(&g.key);
            self.free.push(id);
            if self.retired.len() < RETIRED_LIMIT {
                self.retired.insert(g.key.clone(), g);
            }
        }
    }

    /// Keeps the retired groups that `keep` says are still as diagnosed.
    pub fn retain_retired(&mut self, keep: impl Fn(&Group) -> bool) {
        self.retired.retain(|_, g| keep(g));
    }

    /// Forgets the retired groups (their diagnosis is as old as the last refresh).
    pub fn forget_retired(&mut self) {
        self.retired = FxHashMap::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnosis::Cause;

    fn group(ppid: u32) -> (GroupKey, Group) {
        let key = GroupKey {
            ppid,
            parent_start_ticks: 1,
            parent_comm: Comm::new("parent"),
            exit_ppid: ppid,
            exit_parent_comm: Comm::new("parent"),
            origin: Origin::default(),
            cgroup_path: None,
        };
        let g = Group {
            key: key.clone(),
            attribution: Arc::default(),
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
        (key, g)
    }

    fn record(pid: u32, exited_at: Ns) -> Record {
        Record {
            exited_at,
            start_ticks: 7,
            cgroup_id: 0,
            comm: Comm::new("child"),
            pid,
            wait_status: 0,
            reparented: 0,
            group: 0,
            scanned: false,
            parent_gone: false,
        }
    }

    fn add(w: &mut Writer, pid: u32, at: Ns, ppid: u32) {
        let (k, g) = group(ppid);
        w.insert(record(pid, at), k, || g);
    }

    fn pids(s: &Store) -> Vec<u32> {
        s.iter().map(|r| r.pid).collect()
    }

    #[test]
    fn a_record_is_at_most_64_bytes() {
        assert!(std::mem::size_of::<Record>() <= 64);
    }

    /// Records stay in order through inserts anywhere, replacement and removal; a published
    /// store shares every chunk a later change did not touch.
    #[test]
    fn publishing_shares_what_did_not_change() {
        let mut w = Writer::default();
        // 3 full chunks and a bit, appended in order.
        for i in 0..(3 * CHUNK as u32 + 10) {
            add(&mut w, 1000 + i, u64::from(i) * 10, i % 3);
        }
        let first = w.publish();
        assert_eq!(first.len(), 3 * CHUNK + 10);
        assert_eq!(first.chunk_count(), 4);
        assert_eq!(first.groups().count(), 3);
        // One new zombie in the middle (a scan found it): one chunk copied.
        add(&mut w, 5, 15, 9);
        let second = w.publish();
        let shared = (0..4)
            .filter(|&i| Arc::ptr_eq(&first.chunks[i], &second.chunks[i]))
            .count();
        assert_eq!(shared, 3);
        assert_eq!(second.get(2).map(|r| r.pid), Some(5));
        assert_eq!(second.rank((15, 5, 7)), 3);
        assert_eq!(pids(&first).len() + 1, pids(&second).len());
        // The published store is immutable: the first still has no pid 5.
        assert!(!pids(&first).contains(&5));
        // Removal; a record not held is not removed.
        assert!(w.remove(
            ProcKey {
                pid: 5,
                start_ticks: 7
            },
            15
        ));
        assert!(!w.remove(
            ProcKey {
                pid: 5,
                start_ticks: 7
            },
            15
        ));
        assert!(!w.remove(
            ProcKey {
                pid: 1000,
                start_ticks: 7
            },
            1
        ));
        assert_eq!(w.publish().iter().count(), 3 * CHUNK + 10);
        // Groups are counted, and freed with their last record (and their id reused).
        assert!(w.groups().all(|(_, g)| g.key.ppid != 9));
        let id0 = w.groups().find(|(_, g)| g.key.ppid == 0).unwrap().0;
        assert_eq!(w.count(id0), (3 * CHUNK as u64 + 10).div_ceil(3));
        let s = w.publish();
        let sorted = s.iter().map(Record::sort_key).collect::<Vec<_>>();
        assert!(sorted.windows(2).all(|p| p[0] < p[1]));
        // Iterating from an index.
        assert_eq!(
            s.iter_from(CHUNK - 1)
                .take(2)
                .map(|r| r.pid)
                .collect::<Vec<_>>(),
            [1000 + CHUNK as u32 - 1, 1000 + CHUNK as u32]
        );
    }

    #[test]
    fn chunks_split_when_they_grow_in_the_middle_and_go_when_empty() {
        let mut w = Writer::default();
        add(&mut w, 1, 0, 1);
        add(&mut w, 2, u64::MAX - 1, 1);
        // Everything between the two: the first chunk grows and splits.
        for i in 0..(3 * CHUNK as u32) {
            add(&mut w, 10 + i, 1 + u64::from(i), 1);
        }
        let s = w.publish();
        assert_eq!(s.len(), 3 * CHUNK + 2);
        assert!(
            s.chunks
                .iter()
                .all(|c| c.len() < 2 * CHUNK && !c.is_empty())
        );
        let sorted = s.iter().map(Record::sort_key).collect::<Vec<_>>();
        assert!(sorted.windows(2).all(|p| p[0] < p[1]));
        for i in 0..(3 * CHUNK as u32) {
            assert!(w.remove(
                ProcKey {
                    pid: 10 + i,
                    start_ticks: 7
                },
                1 + u64::from(i)
            ));
        }
        let s = w.publish();
        assert_eq!(pids(&s), [1, 2]);
        assert!(s.chunk_count() <= 2);
        // Replacing a record (same sort key) keeps one.
        add(&mut w, 2, u64::MAX - 1, 4);
        let s = w.publish();
        assert_eq!(s.len(), 2);
        assert_eq!(s.group(s.get(1).unwrap().group).key.ppid, 4);
        assert_eq!(s.groups().count(), 2);
    }
}
