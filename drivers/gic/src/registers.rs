//! Volatile access to a GIC register frame, and the small lock that serializes read-modify-write configuration.

use core::sync::atomic::{AtomicBool, Ordering};

/// A memory-mapped register frame (distributor, CPU interface, redistributor).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Frame {
    base: usize,
}

impl Frame {
    /// Wraps the frame at `base`.
    ///
    /// # Safety
    /// `base` must be the address of a GIC register frame (or, in host tests, of memory
    /// standing in for one) large enough for every offset the driver uses, mapped as device
    /// memory, for as long as the frame is used.
    pub(crate) const unsafe fn new(base: usize) -> Self {
        Frame { base }
    }

    pub(crate) fn base(self) -> usize {
        self.base
    }

    /// The frame `offset` bytes further on (GICv3 SGI frames, the next redistributor).
    ///
    /// # Safety
    /// As for [`Frame::new`], for `base + offset`.
    pub(crate) const unsafe fn offset(self, offset: usize) -> Self {
        Frame { base: self.base + offset }
    }

    pub(crate) fn read32(self, offset: usize) -> u32 {
        // SAFETY: `Frame::new`'s contract: `base + offset` is a register of this frame,
        // 4-byte aligned (every offset the drivers pass is).
        unsafe { core::ptr::read_volatile((self.base + offset) as *const u32) }
    }

    pub(crate) fn write32(self, offset: usize, value: u32) {
        // SAFETY: as in `read32`.
        unsafe { core::ptr::write_volatile((self.base + offset) as *mut u32, value) }
    }

    pub(crate) fn read64(self, offset: usize) -> u64 {
        // SAFETY: as in `read32`; the drivers pass 8-byte aligned offsets of 64-bit
        // registers (GICR_TYPER, GICD_IROUTER).
        unsafe { core::ptr::read_volatile((self.base + offset) as *const u64) }
    }

    pub(crate) fn write64(self, offset: usize, value: u64) {
        // SAFETY: as in `read64`.
        unsafe { core::ptr::write_volatile((self.base + offset) as *mut u64, value) }
    }

    pub(crate) fn read8(self, offset: usize) -> u8 {
        // SAFETY: as in `read32`; byte access is architected for IPRIORITYR and ITARGETSR.
        unsafe { core::ptr::read_volatile((self.base + offset) as *const u8) }
    }

    pub(crate) fn write8(self, offset: usize, value: u8) {
        // SAFETY: as in `read8`.
        unsafe { core::ptr::write_volatile((self.base + offset) as *mut u8, value) }
    }
}

/// A test-and-set lock around read-modify-write of shared configuration registers (ICFGR).
/// Held only for a few register accesses; never taken in the acknowledge/EOI path.
pub(crate) struct ConfigurationLock {
    held: AtomicBool,
}

impl ConfigurationLock {
    pub(crate) const fn new() -> Self {
        ConfigurationLock { held: AtomicBool::new(false) }
    }

    /// Runs `update` with the lock held.
    pub(crate) fn with<T>(&self, update: impl FnOnce() -> T) -> T {
        while self.held.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            core::hint::spin_loop();
        }
        let result = update();
        self.held.store(false, Ordering::Release);
        result
    }
}
