//! The programs' counters, read from the map's memory, never through bpf().
//!
//! Kernels before 5.19 refuse every bpf() command to a caller without CAP_BPF or
//! CAP_SYS_ADMIN while `kernel.unprivileged_bpf_disabled` is set (Debian's default is 2), so
//! after the capability drop a map lookup fails there with EPERM. The array is created
//! mmapable (BPF_F_MMAPABLE, Linux 5.5) and mapped once at load; a read is a load from
//! memory on every kernel.

use std::{
    io,
    os::fd::{AsFd, AsRawFd},
    ptr::NonNull,
};

use aya::maps::MapData;

/// The counters array, mapped read-only into our memory.
pub struct Counters {
    base: NonNull<u64>,
    cpus: u32,
    bytes: usize,
    _map: MapData,
}

/// Slots per CPU in the map.
const STRIDE: u32 = zombie_ebpf::counters::STRIDE;

// SAFETY: the mapping belongs to the process and lives as long as this value; it is only
// read, with volatile loads of aligned u64s, from whichever thread holds the value.
unsafe impl Send for Counters {}

impl Counters {
    /// Maps the `cpus * STRIDE` u64 slots of an array created with BPF_F_MMAPABLE.
    pub fn map(map: MapData, cpus: u32) -> io::Result<Self> {
        let page = super::page_size() as usize;
        let bytes = (slots(cpus) as usize * 8).div_ceil(page).max(1) * page;
        Ok(Self {
            base: map_values(&map, bytes, libc::PROT_READ)?,
            cpus,
            bytes,
            _map: map,
        })
    }

    /// Counter `index` summed over CPUs (0 for an index past the counters).
    pub fn get(&self, index: u32) -> u64 {
        if index >= STRIDE {
            return 0;
        }
        (0..self.cpus)
            .map(|cpu| {
                let slot = (cpu * STRIDE + index) as usize;
                // SAFETY: in bounds of the mapping (slot < cpus * STRIDE u64s from a
                // page-aligned base); volatile because the kernel writes it behind the
                // compiler's back.
                unsafe { std::ptr::read_volatile(self.base.as_ptr().add(slot)) }
            })
            .fold(0u64, u64::wrapping_add)
    }
}

/// The `CONTROL` array, mapped read-write: flags the programs read (see
/// [`zombie_ebpf::control`]). Written with plain stores to shared memory, so it works after
/// the capability drop on every kernel, like [`Counters`].
pub struct Control {
    base: NonNull<u64>,
    bytes: usize,
    _map: MapData,
}

// SAFETY: as for Counters; writes are volatile stores of aligned u64s.
unsafe impl Send for Control {}

impl Control {
    pub fn map(map: MapData) -> io::Result<Self> {
        let bytes = super::page_size() as usize;
        Ok(Self {
            // One page holds the array's `control::LEN` u64s.
            base: map_values(&map, bytes, libc::PROT_READ | libc::PROT_WRITE)?,
            bytes,
            _map: map,
        })
    }

    /// Sets slot `index` (ignored past the slots).
    pub fn set(&self, index: u32, value: u64) {
        if index >= zombie_ebpf::control::LEN {
            return;
        }
        // SAFETY: in bounds of the mapping; volatile because the programs read it.
        unsafe { std::ptr::write_volatile(self.base.as_ptr().add(index as usize), value) };
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `map`.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.bytes) };
    }
}

/// Maps `bytes` of a BPF_F_MMAPABLE array's value area, shared, with `prot`.
fn map_values(map: &MapData, bytes: usize, prot: libc::c_int) -> io::Result<NonNull<u64>> {
    let fd = map.fd().as_fd().as_raw_fd();
    // SAFETY: a fresh shared mapping of the map's value area; the kernel checks the length
    // against the map and fails on a map that is not mmapable (or, for PROT_WRITE, frozen).
    let p = unsafe { libc::mmap(std::ptr::null_mut(), bytes, prot, libc::MAP_SHARED, fd, 0) };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(p.cast()).ok_or_else(|| io::Error::other("mmap returned NULL"))
}

/// The map's size for `cpus` possible CPUs.
pub fn slots(cpus: u32) -> u32 {
    cpus.max(1) * STRIDE
}

impl Drop for Counters {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `map`, which nothing uses any more.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.bytes) };
    }
}
