//! The kernel edge: loads the eBPF programs with this kernel's offsets, attaches them to the
//! BTF tracepoints and turns ring-buffer records into tracker events.

mod counters;
pub mod features;
pub mod offsets;

use std::{os::fd::AsRawFd, path::PathBuf, time::Duration};

use aya::{
    Btf, Ebpf, EbpfLoader, Endianness,
    maps::{Map, MapData, RingBuf},
    programs::{BtfTracePoint, FEntry},
};
use tokio::io::unix::AsyncFd;
use tracing::debug;
use zombie_ebpf::{EventKind, Offsets, OriginEvent, RawEvent, ReapEvent, flags};

use crate::tracker::{
    Comm, Event, Exit, ExitFlags, Origin, OriginInfo, OriginKind, OriginSeen, ProcKey,
};

pub use crate::clock::TickConverter;
pub use offsets::TRACEPOINTS;

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/zombie-ebpf.o"));

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Offsets(#[from] offsets::OffsetError),
    #[error("cannot parse kernel BTF at {path}: {source}")]
    Btf {
        path: String,
        #[source]
        source: aya::BtfError,
    },
    #[error(
        "cannot load the eBPF programs: {0}. Run as root or with CAP_BPF and CAP_PERFMON, and \
         CAP_SYS_RESOURCE where the kernel charges BPF maps to RLIMIT_MEMLOCK (see \
         `zombie-daemon check`)"
    )]
    Load(#[source] aya::EbpfError),
    #[error(
        "cannot load or attach the {name} program: {source}. Run `zombie-daemon check` to see \
         what this kernel lacks"
    )]
    Program {
        name: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("eBPF map {0}: {1}")]
    Map(&'static str, String),
    #[error("ring buffer size {0} must be a power of two and a multiple of the page size")]
    RingSize(u32),
}

#[derive(Clone, Debug)]
pub struct ProbeConfig {
    pub btf_path: PathBuf,
    pub ring_buffer_bytes: u32,
    /// Report a process's wait() at most once per this interval.
    pub wait_dedup: Duration,
    /// Testing only: the free program drops the events of processes with this comm (see
    /// `Offsets::fault_drop_free_comm`). None in production.
    pub fault_drop_free_comm: Option<String>,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            btf_path: PathBuf::from("/sys/kernel/btf/vmlinux"),
            ring_buffer_bytes: 4 << 20,
            wait_dedup: Duration::from_millis(100),
            fault_drop_free_comm: None,
        }
    }
}

/// Where the reap of a process is seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReapWitness {
    /// `fentry/release_task`: where the kernel releases the process, in the releasing task,
    /// at once.
    Release,
    /// `tp_btf/sched_process_free`: when the task is freed, an RCU grace period later. The
    /// kernel refused the release program for this reason.
    Free { release_refused: String },
}

impl ReapWitness {
    /// The name operators see (`check`, the log, a metric label).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Release => "release_task",
            Self::Free { .. } => "sched_process_free",
        }
    }
}

/// Loaded and attached programs. Dropping it detaches them.
pub struct Probe {
    // Field order matters: the ring buffer and counters before the object that owns the links.
    ring: AsyncFd<RingBuf<MapData>>,
    counters: counters::Counters,
    control: counters::Control,
    logger: Option<AsyncFd<aya_log::EbpfLogger<&'static dyn log::Log>>>,
    attached: usize,
    reap: ReapWitness,
    direct_reads: bool,
    _ebpf: Ebpf,
}

#[repr(transparent)]
#[derive(Clone, Copy)]
struct PodOrigin(zombie_ebpf::OriginRecord);
// SAFETY: OriginRecord is #[repr(C)], all integers, with explicit padding.
unsafe impl aya::Pod for PodOrigin {}

/// BPF_NOEXIST (uapi): insert only where the key has no value yet.
const BPF_NOEXIST: u64 = 1;

#[repr(transparent)]
#[derive(Clone, Copy)]
struct PodOffsets(Offsets);
// SAFETY: Offsets is #[repr(C)], all integers, no padding holes that matter to the kernel.
unsafe impl aya::Pod for PodOffsets {}

impl Probe {
    /// Loads the programs with offsets from this kernel's BTF and attaches all of them.
    pub fn load(cfg: &ProbeConfig) -> Result<Self, ProbeError> {
        let page = page_size();
        if !cfg.ring_buffer_bytes.is_power_of_two() || !cfg.ring_buffer_bytes.is_multiple_of(page) {
            return Err(ProbeError::RingSize(cfg.ring_buffer_bytes));
        }
        if features::maps_charge_memlock() == features::Seen::Yes {
            let limit = features::raise_memlock();
            debug!(
                limit,
                "this kernel charges BPF maps to RLIMIT_MEMLOCK: raised"
            );
        }
        let mut offsets = offsets::from_btf(&cfg.btf_path)?;
        offsets.wait_dedup_jiffies = dedup_jiffies(cfg.wait_dedup, tick_ns());
        if let Some(comm) = &cfg.fault_drop_free_comm {
            offsets.fault_drop_free_comm = zombie_ebpf::comm_words(&Comm::new(comm).0);
        }
        let btf = Btf::parse_file(&cfg.btf_path, Endianness::default()).map_err(|source| {
            ProbeError::Btf {
                path: cfg.btf_path.display().to_string(),
                source,
            }
        })?;
        // Plain loads of task fields where this kernel's verifier takes them (see
        // `zombie_ebpf::Offsets::direct_reads`), else helper reads.
        offsets.direct_reads = 1;
        match Self::load_with(cfg, offsets, &btf) {
            Ok(p) => Ok(p),
            Err(e @ ProbeError::Program { .. }) => {
                debug!("direct loads refused ({e}); loading with helper reads");
                offsets.direct_reads = 0;
                Self::load_with(cfg, offsets, &btf)
            }
            Err(e) => Err(e),
        }
    }

    fn load_with(cfg: &ProbeConfig, offsets: Offsets, btf: &Btf) -> Result<Self, ProbeError> {
        let pod = PodOffsets(offsets);
        let cpus = aya::util::nr_cpus()
            .map_err(|(path, e)| ProbeError::Map("COUNTERS", format!("cannot read {path}: {e}")))?
            as u32;
        let mut ebpf = EbpfLoader::new()
            .btf(Some(btf))
            .override_global("OFFSETS", &pod, true)
            .map_max_entries("EVENTS", cfg.ring_buffer_bytes)
            .map_max_entries("COUNTERS", counters::slots(cpus))
            .load(OBJECT)
            .map_err(ProbeError::Load)?;

        let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(l) => readable_fd(l).ok(),
            Err(e) => {
                debug!("eBPF logger not initialised: {e}");
                None
            }
        };

        let mut attached = 0;
        // The reap where it happens if the kernel lets us; else when the task is freed.
        let reap = match attach_release(&mut ebpf, btf) {
            Ok(()) => {
                attached += 1;
                ReapWitness::Release
            }
            Err(e) => ReapWitness::Free {
                // aya appends the verifier's log, which is empty when the kernel refused the
                // load before verifying (EPERM: fentry not allowed here).
                release_refused: e
                    .to_string()
                    .trim_end()
                    .trim_end_matches("Verifier output:")
                    .trim_end()
                    .trim_end_matches('.')
                    .to_string(),
            },
        };
        for name in TRACEPOINTS {
            if name == "sched_process_free" && reap == ReapWitness::Release {
                continue;
            }
            let prog: &mut BtfTracePoint = ebpf
                .program_mut(name)
                .ok_or_else(|| ProbeError::Map(name, "program missing from the object".into()))?
                .try_into()
                .map_err(|source| ProbeError::Program { name, source })?;
            prog.load(name, btf)
                .map_err(|source| ProbeError::Program { name, source })?;
            prog.attach()
                .map_err(|source| ProbeError::Program { name, source })?;
            attached += 1;
        }

        let ring = ebpf
            .take_map("EVENTS")
            .ok_or_else(|| ProbeError::Map("EVENTS", "missing".into()))?;
        let ring = RingBuf::try_from(ring).map_err(|e| ProbeError::Map("EVENTS", e.to_string()))?;
        let ring = readable_fd(ring).map_err(|e| ProbeError::Map("EVENTS", e.to_string()))?;
        let counters = ebpf
            .take_map("COUNTERS")
            .ok_or_else(|| ProbeError::Map("COUNTERS", "missing".into()))?;
        let Map::Array(counters) = counters else {
            return Err(ProbeError::Map("COUNTERS", "not an array".into()));
        };
        let counters = counters::Counters::map(counters, cpus)
            .map_err(|e| ProbeError::Map("COUNTERS", format!("cannot map it into memory: {e}")))?;
        let Some(Map::Array(control)) = ebpf.take_map("CONTROL") else {
            return Err(ProbeError::Map("CONTROL", "missing or not an array".into()));
        };
        let control = counters::Control::map(control)
            .map_err(|e| ProbeError::Map("CONTROL", format!("cannot map it into memory: {e}")))?;
        Ok(Self {
            ring,
            counters,
            control,
            logger,
            attached,
            reap,
            direct_reads: offsets.direct_reads != 0,
            _ebpf: ebpf,
        })
    }

    /// Whether the programs load task fields directly (else through helper reads).
    pub fn direct_reads(&self) -> bool {
        self.direct_reads
    }

    pub fn attached(&self) -> usize {
        self.attached
    }

    /// Where reaps are seen on this kernel.
    pub fn reap_witness(&self) -> &ReapWitness {
        &self.reap
    }

    /// Seeds the kernel's lineage map with origins derived from /proc for processes that
    /// predate the programs (see `ProcFs::origin_seeds`), so that what they fork from now on
    /// inherits their lineage instead of being `unknown`. A record the fork program already
    /// wrote wins. Needs bpf() privileges: call it before the capability drop. Returns how
    /// many records were written.
    pub fn seed_origins(&mut self, seeds: &[(u32, Origin)], ticks: &TickConverter) -> usize {
        let Some(map) = self._ebpf.map_mut("ORIGINS") else {
            return 0;
        };
        let Ok(mut origins) = aya::maps::HashMap::<_, u32, PodOrigin>::try_from(map) else {
            return 0;
        };
        let mut written = 0;
        for (pid, origin) in seeds {
            let kind = match origin.kind {
                OriginKind::Init => zombie_ebpf::origin::INIT,
                OriginKind::Exec => zombie_ebpf::origin::EXEC,
                OriginKind::Host | OriginKind::Unknown => continue,
            };
            let Some(key) = origin.key else { continue };
            let record = zombie_ebpf::OriginRecord {
                kind,
                // The origin's first exec is long past: nothing to report.
                flags: zombie_ebpf::origin::CAPTURED,
                pid: key.pid,
                _pad: 0,
                start_ns: ticks.ns(key.start_ticks),
            };
            if origins.insert(pid, PodOrigin(record), BPF_NOEXIST).is_ok() {
                written += 1;
            }
        }
        written
    }

    /// Waits until the kernel wakes the consumer (only while it sleeps, see
    /// [`Self::set_consumer_asleep`]).
    pub async fn readable(&self) {
        if let Ok(mut guard) = self.ring.readable().await {
            guard.clear_ready();
        }
    }

    /// Moves every pending record into `out`; returns how many records were malformed.
    pub fn drain(&mut self, out: &mut Vec<Event>, ticks: &TickConverter) -> usize {
        let mut bad = 0;
        let ring = self.ring.get_mut();
        while let Some(item) = ring.next() {
            let kind = zombie_ebpf::record_kind(&item).and_then(EventKind::from_u32);
            let ev = match kind {
                Some(EventKind::Origin) => {
                    OriginEvent::from_bytes(&item).map(|o| decode_origin(&o, ticks))
                }
                Some(EventKind::Free | EventKind::Release) => {
                    ReapEvent::from_bytes(&item).map(|r| decode_reap(&r, ticks))
                }
                _ => RawEvent::from_bytes(&item).and_then(|raw| decode(&raw, ticks)),
            };
            match ev {
                Some(ev) => out.push(ev),
                None => bad += 1,
            }
        }
        bad
    }

    /// Forwards what the programs logged (aya-log) to our log.
    pub fn flush_logs(&mut self) {
        if let Some(logger) = self.logger.as_mut() {
            logger.get_mut().flush();
        }
    }

    /// Asleep: the programs wake the consumer at the next event instead of leaving it to
    /// a drain timer (see [`zombie_ebpf::control::ASLEEP`]). The first event clears it.
    pub fn set_consumer_asleep(&self, asleep: bool) {
        self.control
            .set(zombie_ebpf::control::ASLEEP, u64::from(asleep));
    }

    /// Kernel-side counters: (events lost to a full ring buffer, failed kernel reads). Both
    /// mean events are missing and the table needs a resync.
    pub fn counters(&self) -> (u64, u64) {
        (
            self.counters.get(zombie_ebpf::counters::LOST),
            self.counters.get(zombie_ebpf::counters::READ_ERRORS),
        )
    }
}

/// The empty programs of the benchmark's calibration (see the eBPF crate's `floor`), on the
/// same hooks as the real ones, attached while the value lives.
pub struct Floor {
    attached: Vec<&'static str>,
    _ebpf: Ebpf,
}

/// The floor programs: (program, tracepoint); `floor_release` is the fentry one.
const FLOOR: [(&str, &str); 5] = [
    ("floor_exit", "sched_process_exit"),
    ("floor_free", "sched_process_free"),
    ("floor_wait", "sched_process_wait"),
    ("floor_fork", "sched_process_fork"),
    ("floor_exec", "sched_process_exec"),
];

impl Floor {
    /// Loads and attaches the empty programs (the release one where fentry is allowed).
    pub fn attach(btf_path: &std::path::Path) -> Result<Self, ProbeError> {
        let btf =
            Btf::parse_file(btf_path, Endianness::default()).map_err(|source| ProbeError::Btf {
                path: btf_path.display().to_string(),
                source,
            })?;
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&btf))
            .load(OBJECT)
            .map_err(ProbeError::Load)?;
        let mut attached = Vec::new();
        for (name, tp) in FLOOR {
            let prog: &mut BtfTracePoint = ebpf
                .program_mut(name)
                .ok_or_else(|| ProbeError::Map(name, "program missing from the object".into()))?
                .try_into()
                .map_err(|source| ProbeError::Program { name, source })?;
            prog.load(tp, &btf)
                .map_err(|source| ProbeError::Program { name, source })?;
            prog.attach()
                .map_err(|source| ProbeError::Program { name, source })?;
            attached.push(name);
        }
        let release: Result<(), aya::programs::ProgramError> = (|| {
            let prog: &mut FEntry = ebpf
                .program_mut("floor_release")
                .ok_or(aya::programs::ProgramError::NotLoaded)?
                .try_into()?;
            prog.load("release_task", &btf)?;
            prog.attach()?;
            Ok(())
        })();
        if release.is_ok() {
            attached.push("floor_release");
        }
        Ok(Self {
            attached,
            _ebpf: ebpf,
        })
    }

    pub fn attached(&self) -> &[&'static str] {
        &self.attached
    }
}

/// Loads and attaches the release program (fentry needs BTF trampolines, and some kernels
/// forbid attaching to functions by policy: then this fails and the caller falls back).
fn attach_release(ebpf: &mut Ebpf, btf: &Btf) -> Result<(), aya::programs::ProgramError> {
    let prog: &mut FEntry = ebpf
        .program_mut("release_task")
        .ok_or(aya::programs::ProgramError::NotLoaded)?
        .try_into()?;
    prog.load("release_task", btf)?;
    if let Err(e) = prog.attach() {
        // Loaded but not attachable: unload so it holds nothing in the kernel.
        let _ = prog.unload();
        return Err(e);
    }
    Ok(())
}

/// Turns a ring-buffer record into a tracker event; `None` for an unknown kind.
pub fn decode(raw: &RawEvent, ticks: &TickConverter) -> Option<Event> {
    let key = ProcKey {
        pid: raw.pid,
        start_ticks: ticks.ticks(raw.start_ns),
    };
    Some(match EventKind::from_u32(raw.kind)? {
        EventKind::Exit => Event::Exit(Exit {
            key,
            at: raw.ts_ns,
            ppid: raw.ppid,
            parent_start_ticks: if raw.flags & flags::PARTIAL != 0 {
                0
            } else {
                ticks.ticks(raw.parent_start_ns)
            },
            comm: Comm(raw.comm),
            parent_comm: Comm(raw.parent_comm),
            wait_status: zombie_ebpf::wait_status(
                raw.exit_code,
                raw.group_exit_code,
                raw.signal_flags,
            ),
            cgroup_id: raw.cgroup_id,
            flags: ExitFlags {
                autoreap: raw.flags & flags::AUTOREAP != 0,
                ptraced: raw.flags & flags::PTRACED != 0,
                non_sigchld: raw.flags & flags::NON_SIGCHLD != 0,
                parent_in_origin: raw.flags & flags::PARENT_IN_ORIGIN != 0,
            },
            origin: Origin {
                kind: OriginKind::from_raw(raw.origin_kind),
                key: (raw.origin_pid != 0).then(|| ProcKey {
                    pid: raw.origin_pid,
                    start_ticks: ticks.ticks(raw.origin_start_ns),
                }),
            },
        }),
        // Carried by a ReapEvent or an OriginEvent, never a RawEvent.
        EventKind::Free | EventKind::Release | EventKind::Origin => return None,
        EventKind::Wait => Event::Wait {
            pid: raw.pid,
            target: raw.ppid,
            at: raw.ts_ns,
        },
    })
}

/// Turns a reap record (the release or the free of a leader) into a tracker event.
pub fn decode_reap(r: &ReapEvent, ticks: &TickConverter) -> Event {
    Event::Free {
        key: ProcKey {
            pid: r.pid,
            start_ticks: ticks.ticks(r.start_ns),
        },
        at: r.ts_ns,
    }
}

/// Turns an origin's first-exec record into a tracker event.
pub fn decode_origin(o: &OriginEvent, ticks: &TickConverter) -> Event {
    let len = (o.cmdline_len as usize).min(o.cmdline.len());
    Event::Origin(Box::new(OriginSeen {
        key: ProcKey {
            pid: o.pid,
            start_ticks: ticks.ticks(o.start_ns),
        },
        kind: OriginKind::from_raw(o.origin_kind),
        info: OriginInfo::from_cmdline(Comm(o.comm), &o.cmdline[..len]),
    }))
}

/// Registers an owned fd with the reactor for readability.
fn readable_fd<T: AsRawFd>(inner: T) -> std::io::Result<AsyncFd<T>> {
    // SAFETY: `inner` owns its fd (an aya map or logger) and keeps it open, unchanged, for as
    // long as it lives; the AsyncFd owns `inner`.
    unsafe { AsyncFd::register_with_interest(inner, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
}

fn page_size() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 { p as u32 } else { 4096 }
}

/// The kernel's tick (1/HZ) in ns: the resolution of the coarse clocks, which advance once
/// per tick. 4 ms (HZ=250, the most common) if it cannot be read.
fn tick_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec for the kernel to fill.
    let ok = unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut ts) } == 0;
    let ns = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
    if ok && ns > 0 { ns } else { 4_000_000 }
}

/// The wait program's window in ticks for a window of `window`: rounded down, less one, so
/// that the time it spans (up to one tick more than its count, as jiffies advance in steps)
/// never exceeds `window`, which the sweep assumes. 0 (every wait reported) for a window
/// shorter than two ticks.
pub fn dedup_jiffies(window: Duration, tick_ns: u64) -> u64 {
    (window.as_nanos() as u64 / tick_ns.max(1)).saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The window in ticks never spans more time than the window asked for.
    #[test]
    fn the_wait_window_in_ticks_stays_within_the_window() {
        let window = Duration::from_millis(100);
        for (hz, ticks) in [(100, 9), (250, 24), (300, 29), (1000, 99)] {
            let tick = 1_000_000_000 / hz;
            let n = dedup_jiffies(window, tick);
            assert_eq!(n, ticks, "HZ={hz}");
            assert!((n + 1) * tick <= window.as_nanos() as u64, "HZ={hz}");
        }
        assert_eq!(dedup_jiffies(Duration::from_millis(5), 4_000_000), 0);
        assert!(
            tick_ns() >= 1_000_000 && tick_ns() <= 10_000_000,
            "{}",
            tick_ns()
        );
    }

    #[test]
    fn a_reap_record_is_the_reap_of_that_process_at_that_time() {
        let ticks = TickConverter::new(100);
        let r = ReapEvent {
            kind: EventKind::Release as u32,
            pid: 42,
            ts_ns: 5_000_000_000,
            start_ns: 1_230_000_000,
        };
        let mut bytes = [0u8; ReapEvent::SIZE];
        // SAFETY: a plain-integer repr(C) record copied into a byte buffer of its size.
        unsafe { core::ptr::write_unaligned(bytes.as_mut_ptr().cast::<ReapEvent>(), r) };
        let back = ReapEvent::from_bytes(&bytes).unwrap();
        assert_eq!(
            decode_reap(&back, &ticks),
            Event::Free {
                key: ProcKey {
                    pid: 42,
                    start_ticks: 123
                },
                at: 5_000_000_000
            }
        );
        assert!(ReapEvent::from_bytes(&bytes[..ReapEvent::SIZE - 1]).is_none());
        // A full-size record claiming to be a reap is not decoded as an exit.
        let mut raw = RawEvent::zeroed();
        raw.kind = EventKind::Free as u32;
        assert!(decode(&raw, &ticks).is_none());
    }
}
