//! The HPET main counter as a clocksource (Linux's `hpet`): a memory-mapped, always-running counter with its period in femtoseconds in the capabilities register.

use hinoki_interface::clock::ClockScale;
use hinoki_interface::Clock;

/// General capabilities and ID: bits 63:32 the period in femtoseconds, bit 13 a 64-bit counter.
pub const CAPABILITIES: usize = 0x000;
/// General configuration: bit 0 enables the main counter.
pub const CONFIGURATION: usize = 0x010;
/// The main counter.
pub const MAIN_COUNTER: usize = 0x0f0;
/// CONFIGURATION bit 0.
pub const ENABLE: u64 = 1 << 0;
/// CAPABILITIES bit 13.
pub const COUNTER_IS_64_BIT: u64 = 1 << 13;
/// The HPET specification caps the period at 100 ns.
pub const MAXIMUM_PERIOD_FEMTOSECONDS: u64 = 100_000_000;

/// Counter frequency in Hz for a period in femtoseconds (0 for an impossible period).
pub fn frequency_from_period(period_femtoseconds: u64) -> u64 {
    if period_femtoseconds == 0 || period_femtoseconds > MAXIMUM_PERIOD_FEMTOSECONDS {
        return 0;
    }
    1_000_000_000_000_000 / period_femtoseconds
}

/// The HPET's main counter.
pub struct Hpet {
    base: usize,
    frequency_hz: u64,
    scale: ClockScale,
    wide: bool,
}

impl Hpet {
    /// Starts the main counter of the HPET at `base` if needed. `None` when the capabilities
    /// report an impossible period or a 32-bit counter (which would wrap within a minute).
    ///
    /// # Safety
    /// `base` must be the identity-mapped (uncached) register block of an HPET, valid
    /// forever; nothing else may stop or reset its main counter.
    pub unsafe fn new(base: usize) -> Option<Hpet> {
        let hpet = Hpet { base, frequency_hz: 0, scale: ClockScale::new(1), wide: false };
        let capabilities = hpet.read(CAPABILITIES);
        let frequency_hz = frequency_from_period(capabilities >> 32);
        let wide = capabilities & COUNTER_IS_64_BIT != 0;
        if frequency_hz == 0 || !wide {
            return None;
        }
        let configuration = hpet.read(CONFIGURATION);
        if configuration & ENABLE == 0 {
            // SAFETY: setting ENABLE_CNF starts the main counter; no comparator is armed.
            unsafe { core::ptr::write_volatile((base + CONFIGURATION) as *mut u64, configuration | ENABLE) };
        }
        Some(Hpet { base, frequency_hz, scale: ClockScale::new(frequency_hz), wide })
    }

    fn read(&self, offset: usize) -> u64 {
        // SAFETY: `new`'s contract: `base` is an HPET block; these reads have no side effects.
        unsafe { core::ptr::read_volatile((self.base + offset) as *const u64) }
    }

    /// The register block's address.
    pub fn base(&self) -> usize {
        self.base
    }
}

impl Clock for Hpet {
    fn name(&self) -> &'static str {
        "hpet"
    }

    fn frequency_hz(&self) -> u64 {
        self.frequency_hz
    }

    fn counter(&self) -> u64 {
        let value = self.read(MAIN_COUNTER);
        if self.wide {
            value
        } else {
            value & u32::MAX as u64
        }
    }

    fn nanoseconds(&self) -> u64 {
        self.scale.to_nanoseconds(self.counter())
    }
}

#[cfg(test)]
mod tests {
    use super::frequency_from_period;

    #[test]
    fn frequency_from_the_period() {
        // QEMU's HPET: 10 ns period, 100 MHz.
        assert_eq!(frequency_from_period(10_000_000), 100_000_000);
        // A typical chipset HPET: 69.841279 ns, 14.318180 MHz.
        assert_eq!(frequency_from_period(69_841_279), 14_318_179);
        assert_eq!(frequency_from_period(0), 0);
        assert_eq!(frequency_from_period(100_000_001), 0);
    }
}
