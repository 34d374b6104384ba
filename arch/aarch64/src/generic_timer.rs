//! The ARM generic timer: the system counter as the clocksource (frequency from CNTFRQ_EL0) and the EL1 non-secure physical timer as the clock-event device.

use core::arch::asm;

use hinoki_interface::clock::ClockScale;
use hinoki_interface::{Clock, ClockEvent};

/// The system counter (CNTPCT_EL0), Linux's `arch_sys_counter`.
pub struct GenericTimerCounter {
    frequency_hz: u64,
    scale: ClockScale,
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
        let frequency_hz = if frequency == 0 { fallback_hz } else { frequency };
        GenericTimerCounter { frequency_hz, scale: ClockScale::new(frequency_hz) }
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

    fn nanoseconds(&self) -> u64 {
        self.scale.to_nanoseconds(physical_count())
    }
}

/// CNTP_CTL_EL0.ENABLE.
const TIMER_ENABLE: u64 = 1 << 0;

/// Counter ticks for `nanoseconds` at `frequency_hz`, rounded up so a deadline is never
/// programmed early.
pub fn nanoseconds_to_ticks(nanoseconds: u64, frequency_hz: u64) -> u64 {
    let ticks = (nanoseconds as u128 * frequency_hz as u128).div_ceil(1_000_000_000);
    ticks.min(u64::MAX as u128) as u64
}

/// The EL1 non-secure physical timer (CNTP_*_EL0), Linux's `arch_timer` clock-event
/// device. Its interrupt is the non-secure physical timer PPI, the second entry of the
/// DTB's `arm,armv8-timer` `interrupts` (PPI 14, INTID 30, on every supported board).
/// Usable at EL1 because `boot.rs` sets CNTHCTL_EL2.{EL1PCTEN, EL1PCEN} when entered at
/// EL2. Each CPU has its own timer; every method acts on the calling CPU's.
pub struct GenericTimerEvent {
    irq: u32,
    frequency_hz: u64,
}

impl GenericTimerEvent {
    /// The timer raising interrupt `irq` (the INTID from the DTB), counting at
    /// `frequency_hz` (the clocksource's frequency).
    pub fn new(irq: u32, frequency_hz: u64) -> Self {
        GenericTimerEvent { irq, frequency_hz }
    }
}

impl ClockEvent for GenericTimerEvent {
    fn name(&self) -> &'static str {
        "arch_timer"
    }

    fn irq(&self) -> u32 {
        self.irq
    }

    fn set_oneshot(&self, nanoseconds: u64) {
        let deadline = physical_count().saturating_add(nanoseconds_to_ticks(nanoseconds, self.frequency_hz));
        // SAFETY: programming this CPU's EL1 physical timer (accessible at EL1, see the type
        // documentation): the compare value, then enable with the interrupt unmasked. The
        // timer's level interrupt drops once CVAL is in the future again or it is stopped.
        unsafe {
            asm!(
                "msr cntp_cval_el0, {deadline}",
                "msr cntp_ctl_el0, {control}",
                "isb",
                deadline = in(reg) deadline,
                control = in(reg) TIMER_ENABLE,
                options(nomem, nostack, preserves_flags)
            )
        };
    }

    fn stop(&self) {
        // SAFETY: disabling this CPU's EL1 physical timer, which also drops its interrupt.
        unsafe { asm!("msr cntp_ctl_el0, xzr", "isb", options(nomem, nostack, preserves_flags)) };
    }
}
