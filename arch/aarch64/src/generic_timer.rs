//! The ARM generic timer's system counter as the clocksource (frequency from CNTFRQ_EL0).

use core::arch::asm;

use hinoki_interface::Clock;

/// The system counter (CNTPCT_EL0), Linux's `arch_sys_counter`.
pub struct GenericTimerCounter {
    frequency_hz: u64,
}

/// Reads CNTFRQ_EL0, the counter frequency the firmware or QEMU programmed.
pub fn counter_frequency() -> u64 {
    let value: u64;
    // SAFETY: reading CNTFRQ_EL0 has no side effects.
    unsafe { asm!("mrs {}, cntfrq_el0", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

/// Reads CNTPCT_EL0 after an ISB, so the read is not hoisted before earlier instructions.
#[inline(always)]
pub fn physical_count() -> u64 {
    let value: u64;
    // SAFETY: reading the physical counter is permitted at EL1 (and at EL0 once CNTKCTL allows).
    unsafe { asm!("isb", "mrs {}, cntpct_el0", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

impl GenericTimerCounter {
    /// Reads the frequency; a zero CNTFRQ (firmware that forgot it) falls back to `fallback_hz`.
    pub fn new(fallback_hz: u64) -> Self {
        let frequency = counter_frequency();
        GenericTimerCounter { frequency_hz: if frequency == 0 { fallback_hz } else { frequency } }
    }
}

impl Clock for GenericTimerCounter {
    fn name(&self) -> &'static str {
        "arch_sys_counter"
    }

    fn frequency_hz(&self) -> u64 {
        self.frequency_hz
    }

    fn counter(&self) -> u64 {
        physical_count()
    }
}
