//! A cap on the answer bytes held in memory across all HTTP connections, which sheds the
//! slowest readers first.
//!
//! A streamed answer (see `http`'s `/zombies`) holds one encoded chunk at a time per
//! connection, reserved here before it is made and released when the client has taken it
//! (hyper asks for the next chunk only once its write buffer has room again). When a
//! reservation does not fit, readers that have held their chunk for longer than
//! [`SHED_AFTER`] are shed, the longest stalled first: their connection is closed and their
//! chunk freed. Readers that keep taking chunks are never shed: when nobody is stalled, the
//! one asking waits for room. So however many clients ask and never read, the daemon holds
//! at most `cap` bytes of answers (one chunk more only when a single chunk exceeds the cap).

use std::{
    sync::{Arc, MutexGuard},
    time::{Duration, Instant},
};

use prometheus::{IntCounter, IntGauge};
use rustc_hash::FxHashMap;
use tokio::sync::Notify;

/// What closes a reader's connection when it is shed.
pub type ShedFn = Box<dyn Fn() + Send + Sync>;

/// The default of `--http-max-bytes-in-flight`.
pub const DEFAULT_CAP: usize = 16 << 20;

/// A reader that has not taken its chunk for this long may be shed for room: it reads
/// slower than a chunk a second, far below what a scraper on a node's network does.
pub const SHED_AFTER: Duration = Duration::from_secs(1);

/// The shared budget.
#[expect(
    clippy::disallowed_types,
    reason = "the answer budget's own bookkeeping (bytes per reader), held for a counter update; never the table"
)]
pub struct InFlight {
    cap: usize,
    shed_after: Duration,
    inner: std::sync::Mutex<Inner>,
    /// Woken when bytes are released.
    freed: Notify,
    gauge: Option<IntGauge>,
    shed_total: Option<IntCounter>,
}

#[derive(Default)]
struct Inner {
    total: usize,
    next_id: u64,
    readers: FxHashMap<u64, ReaderState>,
}

struct ReaderState {
    held: usize,
    /// When it last took a chunk (or started).
    progress: Instant,
    shed: ShedFn,
}

/// Why a reservation failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    #[error("this reader was shed: it made the least progress while the answer budget was full")]
    Shed,
}

/// One reader's place in the budget; gives back what it holds when dropped.
pub struct Reader {
    id: u64,
    budget: Arc<InFlight>,
}

impl InFlight {
    #[expect(clippy::disallowed_types, reason = "see `InFlight`")]
    pub fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            shed_after: SHED_AFTER,
            inner: std::sync::Mutex::default(),
            freed: Notify::new(),
            gauge: None,
            shed_total: None,
        }
    }

    /// Reports the bytes held and the readers shed in these metrics.
    pub fn with_metrics(mut self, held: IntGauge, shed: IntCounter) -> Self {
        self.gauge = Some(held);
        self.shed_total = Some(shed);
        self
    }

    /// Readers stalled this long may be shed (see [`SHED_AFTER`]).
    pub fn shed_after(mut self, stalled: Duration) -> Self {
        self.shed_after = stalled;
        self
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    /// The bytes reserved now.
    pub fn held(&self) -> usize {
        self.lock().total
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn report(&self, inner: &Inner) {
        if let Some(g) = &self.gauge {
            g.set(inner.total as i64);
        }
    }

    /// A new reader; `shed` closes its connection.
    pub fn reader(self: &Arc<Self>, shed: ShedFn) -> Reader {
        let mut inner = self.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        inner.readers.insert(
            id,
            ReaderState {
                held: 0,
                progress: Instant::now(),
                shed,
            },
        );
        Reader {
            id,
            budget: self.clone(),
        }
    }
}

impl Reader {
    /// Gives back the chunk it held (the client took it) and reserves `bytes` for the next
    /// one: at once if they fit, else after shedding readers stalled for longer than
    /// [`SHED_AFTER`], else when room is freed. Fails if this reader was shed meanwhile.
    pub async fn reserve(&self, bytes: usize) -> Result<(), Refused> {
        let now = Instant::now();
        loop {
            let freed = self.budget.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.try_reserve(bytes, now, Instant::now())? {
                return Ok(());
            }
            // Bounded, so that a lost wakeup cannot hold a reader for good.
            let _ = tokio::time::timeout(Duration::from_millis(100), freed).await;
        }
    }

    /// One attempt; `asked` is when this reader asked (its progress).
    fn try_reserve(&self, bytes: usize, asked: Instant, now: Instant) -> Result<bool, Refused> {
        let budget = &*self.budget;
        let mut inner = budget.lock();
        let inner = &mut *inner;
        let Some(me) = inner.readers.get_mut(&self.id) else {
            return Err(Refused::Shed);
        };
        let released = std::mem::take(&mut me.held);
        me.progress = asked;
        inner.total -= released;
        if released > 0 {
            budget.freed.notify_waiters();
        }
        if inner.total + bytes > budget.cap && inner.total > 0 {
            // The slowest first: those holding a chunk they have not taken for the longest.
            let mut slower: Vec<(Instant, u64)> = inner
                .readers
                .iter()
                .filter(|(id, r)| {
                    **id != self.id
                        && r.held > 0
                        && now.saturating_duration_since(r.progress) >= budget.shed_after
                })
                .map(|(id, r)| (r.progress, *id))
                .collect();
            slower.sort_unstable();
            for (_, id) in slower {
                if inner.total + bytes <= budget.cap {
                    break;
                }
                if let Some(r) = inner.readers.remove(&id) {
                    inner.total -= r.held;
                    (r.shed)();
                    if let Some(c) = &budget.shed_total {
                        c.inc();
                    }
                    tracing::debug!(
                        held = r.held,
                        stalled_ms = now.saturating_duration_since(r.progress).as_millis() as u64,
                        "answer budget full: shed the slowest reader"
                    );
                }
            }
        }
        let fits = inner.total + bytes <= budget.cap || inner.total == 0;
        if fits {
            inner.total += bytes;
            if let Some(me) = inner.readers.get_mut(&self.id) {
                me.held = bytes;
            }
        }
        budget.report(inner);
        Ok(fits)
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let mut inner = self.budget.lock();
        if let Some(r) = inner.readers.remove(&self.id) {
            inner.total -= r.held;
            self.budget.report(&inner);
            if r.held > 0 {
                self.budget.freed.notify_waiters();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn counting(n: &Arc<AtomicUsize>) -> ShedFn {
        let n = n.clone();
        Box::new(move || {
            n.fetch_add(1, Ordering::Relaxed);
        })
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    #[expect(
        clippy::disallowed_methods,
        reason = "real time passes between two readers' progress (std Instant): the order of their stalls is what is tested"
    )]
    fn the_longest_stalled_reader_is_shed_first_and_its_bytes_come_back() {
        let budget = Arc::new(InFlight::new(100).shed_after(Duration::from_millis(1)));
        let shed: Vec<Arc<AtomicUsize>> = (0..3).map(|_| Arc::default()).collect();
        let readers: Vec<Reader> = shed.iter().map(|s| budget.reader(counting(s))).collect();
        block_on(async {
            readers[0].reserve(40).await.unwrap();
            std::thread::sleep(Duration::from_millis(2));
            readers[1].reserve(40).await.unwrap();
            std::thread::sleep(Duration::from_millis(2));
            assert_eq!(budget.held(), 80);
            // 40 more do not fit: reader 0, stalled the longest, goes; reader 1 stays.
            readers[2].reserve(40).await.unwrap();
        });
        assert_eq!(shed[0].load(Ordering::Relaxed), 1);
        assert_eq!(shed[1].load(Ordering::Relaxed), 0);
        assert_eq!(budget.held(), 80);
        // A shed reader is told so when it asks again.
        assert_eq!(block_on(readers[0].reserve(1)), Err(Refused::Shed));
        drop(readers);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn taking_the_next_chunk_gives_back_the_last_one() {
        let budget = Arc::new(InFlight::new(100));
        let r = budget.reader(Box::new(|| {}));
        block_on(async {
            for _ in 0..10 {
                r.reserve(60).await.unwrap();
            }
        });
        assert_eq!(budget.held(), 60);
    }

    #[test]
    fn a_reader_with_nobody_slower_waits_for_room() {
        let budget = Arc::new(InFlight::new(100));
        let first = budget.reader(Box::new(|| {}));
        let second = budget.reader(Box::new(|| panic!("the waiting reader is not shed")));
        block_on(async {
            // Nobody has stalled for a second: the second reader waits until the first one's
            // chunk comes back.
            second.reserve(10).await.unwrap();
            first.reserve(90).await.unwrap();
            let waiting = async {
                second.reserve(50).await.unwrap();
                budget.held()
            };
            let release = async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                drop(first);
            };
            let (held, ()) = tokio::join!(waiting, release);
            assert_eq!(held, 50);
        });
    }

    #[test]
    fn one_chunk_larger_than_the_cap_still_goes_out_alone() {
        let budget = Arc::new(InFlight::new(10));
        let r = budget.reader(Box::new(|| {}));
        block_on(r.reserve(50)).unwrap();
        assert_eq!(budget.held(), 50);
    }
}
