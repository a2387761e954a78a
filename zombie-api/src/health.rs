//! Liveness and readiness of the event loop, as the probes (`/healthz`, `/readyz`) see it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::{clock, tracker::Ns};

/// Written by the event loop, read by the HTTP handlers: two atomics, no lock.
#[derive(Debug)]
pub struct Health {
    ready: AtomicBool,
    /// CLOCK_BOOTTIME of the event loop's last iteration.
    heartbeat: AtomicU64,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            ready: AtomicBool::new(false),
            heartbeat: AtomicU64::new(clock::boottime_now()),
        }
    }
}

impl Health {
    /// Ready: the programs are attached, the table was bootstrapped from /proc and a
    /// snapshot that includes it was published.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn beat(&self, now: Ns) {
        self.heartbeat.store(now, Ordering::Relaxed);
    }

    /// Whether the event loop ran within `stall_ns` of `now`.
    pub fn is_live(&self, now: Ns, stall_ns: Ns) -> bool {
        now.saturating_sub(self.heartbeat.load(Ordering::Relaxed)) < stall_ns
    }
}
