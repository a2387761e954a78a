//! Time: the kernel stamps events with CLOCK_BOOTTIME; people read wall-clock time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::tracker::Ns;

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer; these clocks exist on every Linux we support.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Now, in CLOCK_BOOTTIME ns (what `bpf_ktime_get_boot_ns` and `start_boottime` use).
pub fn boottime_now() -> Ns {
    clock_ns(libc::CLOCK_BOOTTIME)
}

/// Converts boot-relative times to wall-clock time. The offset is taken when created, so a
/// wall-clock step after that shows up only in new conversions.
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    /// Wall-clock time at boot, ns since the epoch.
    boot_epoch_ns: u64,
}

impl Default for WallClock {
    fn default() -> Self {
        Self::now()
    }
}

impl WallClock {
    pub fn now() -> Self {
        let boot = boottime_now();
        let real = clock_ns(libc::CLOCK_REALTIME);
        Self {
            boot_epoch_ns: real.saturating_sub(boot),
        }
    }

    pub fn fixed(boot_epoch_ns: u64) -> Self {
        Self { boot_epoch_ns }
    }

    pub fn to_system_time(&self, boot_ns: Ns) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.boot_epoch_ns + boot_ns)
    }

    /// RFC 3339 with millisecond precision, UTC.
    pub fn rfc3339(&self, boot_ns: Ns) -> String {
        humantime::format_rfc3339_millis(self.to_system_time(boot_ns)).to_string()
    }
}

/// Converts kernel start times (ns) to the tick resolution /proc uses, so that both sources
/// give the same process key.
#[derive(Clone, Copy, Debug)]
pub struct TickConverter {
    ns_per_tick: u64,
}

impl TickConverter {
    pub fn new(ticks_per_second: u64) -> Self {
        Self {
            ns_per_tick: 1_000_000_000 / ticks_per_second.max(1),
        }
    }

    pub fn from_system() -> Self {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        Self::new(if hz > 0 { hz as u64 } else { 100 })
    }

    /// /proc's `starttime` is `start_boottime / (NSEC_PER_SEC / USER_HZ)`, rounded down.
    pub fn ticks(&self, ns: u64) -> u64 {
        ns / self.ns_per_tick
    }

    /// Saturates: a `starttime` read from a corrupt /proc must not overflow.
    pub fn ns(&self, ticks: u64) -> u64 {
        ticks.saturating_mul(self.ns_per_tick)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_boot_time_as_rfc3339() {
        let w = WallClock::fixed(1_700_000_000_000_000_000);
        assert_eq!(w.rfc3339(1_500_000_000), "2023-11-14T22:13:21.500Z");
    }

    #[test]
    fn boottime_advances() {
        let a = boottime_now();
        let b = boottime_now();
        assert!(b >= a && a > 0);
    }
}
