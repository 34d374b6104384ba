//! The local APIC timer as a per-CPU [`ClockEvent`]: TSC-deadline mode where the CPU has it (CPUID.01H:ECX[24]), else one-shot counting at a frequency calibrated against a reference clock.

use hinoki_interface::{Clock, ClockEvent};

use crate::controller::LocalApicAccess;
use crate::local::{self, TimerMode};
use crate::vector::LOCAL_TIMER_VECTOR;

/// How long [`calibrate_one_shot`] measures.
pub const CALIBRATION_NANOSECONDS: u64 = 10_000_000;

/// How the timer counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerKind {
    /// Fires when the TSC reaches IA32_TSC_DEADLINE; the TSC runs at `tsc_hz`.
    TscDeadline {
        /// TSC frequency.
        tsc_hz: u64,
    },
    /// Counts down from the initial count at `frequency_hz` (bus clock / 16).
    OneShot {
        /// Count rate after the divider.
        frequency_hz: u64,
    },
}

/// The local APIC timer of whichever CPU calls it.
pub struct LapicTimer<A: LocalApicAccess + 'static> {
    local: &'static A,
    kind: TimerKind,
}

impl<A: LocalApicAccess + 'static> LapicTimer<A> {
    /// A timer of `kind`.
    pub fn new(local: &'static A, kind: TimerKind) -> Self {
        LapicTimer { local, kind }
    }

    /// How the timer counts.
    pub fn kind(&self) -> TimerKind {
        self.kind
    }
}

/// Measures the calling CPU's timer count rate (divide by 16) against `reference` over
/// [`CALIBRATION_NANOSECONDS`]; leaves the timer stopped and masked.
///
/// The timer counts over a span that encloses the reference's (started before the first
/// reference read, read after the last), so the rate errs high: a one-shot programmed from
/// it fires at or after its deadline on the reference clock, never before.
pub fn calibrate_one_shot<A: LocalApicAccess>(local: &A, reference: &dyn Clock) -> u64 {
    // The first pass also pays for cold caches (and, under QEMU's TCG, translating the
    // loop), which only ever inflates the rate; the lower of two passes is the closer one.
    (0..2).map(|_| measure_one_shot_rate(local, reference)).min().unwrap_or(0)
}

fn measure_one_shot_rate<A: LocalApicAccess>(local: &A, reference: &dyn Clock) -> u64 {
    local.write(local::LVT_TIMER, LOCAL_TIMER_VECTOR as u32 | local::LVT_MASKED);
    local.write(local::TIMER_DIVIDE, local::TIMER_DIVIDE_BY_16);
    local.write(local::TIMER_INITIAL_COUNT, u32::MAX);
    let start = reference.nanoseconds();
    let mut now = reference.nanoseconds();
    while now - start < CALIBRATION_NANOSECONDS {
        core::hint::spin_loop();
        now = reference.nanoseconds();
    }
    let remaining = local.read(local::TIMER_CURRENT_COUNT);
    local.write(local::TIMER_INITIAL_COUNT, 0);
    local::timer_frequency((u32::MAX - remaining) as u64, now - start)
}

impl<A: LocalApicAccess + 'static> ClockEvent for LapicTimer<A> {
    fn name(&self) -> &'static str {
        match self.kind {
            TimerKind::TscDeadline { .. } => "lapic-deadline",
            TimerKind::OneShot { .. } => "lapic",
        }
    }

    fn irq(&self) -> u32 {
        LOCAL_TIMER_VECTOR as u32
    }

    fn set_oneshot(&self, nanoseconds: u64) {
        match self.kind {
            TimerKind::TscDeadline { tsc_hz } => {
                self.local.write(local::LVT_TIMER, local::lvt_timer(LOCAL_TIMER_VECTOR, TimerMode::TscDeadline));
                let deadline = self.local.read_tsc().saturating_add(local::tsc_ticks(nanoseconds, tsc_hz).max(1));
                self.local.write_tsc_deadline(deadline);
            }
            TimerKind::OneShot { frequency_hz } => {
                self.local.write(local::LVT_TIMER, local::lvt_timer(LOCAL_TIMER_VECTOR, TimerMode::OneShot));
                self.local.write(local::TIMER_DIVIDE, local::TIMER_DIVIDE_BY_16);
                self.local.write(local::TIMER_INITIAL_COUNT, local::one_shot_count(nanoseconds, frequency_hz));
            }
        }
    }

    fn stop(&self) {
        match self.kind {
            TimerKind::TscDeadline { .. } => self.local.write_tsc_deadline(0),
            TimerKind::OneShot { .. } => self.local.write(local::TIMER_INITIAL_COUNT, 0),
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::local::InterruptCommand;
    use core::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;

    /// A local APIC whose timer counts down 1 per `read_tsc` unit and a TSC that advances
    /// 1000 per read.
    struct FakeLocal {
        registers: Mutex<[u32; 64]>,
        tsc: AtomicU64,
        deadline: AtomicU64,
    }

    impl LocalApicAccess for FakeLocal {
        fn read(&self, offset: u32) -> u32 {
            let registers = self.registers.lock().unwrap();
            if offset == local::TIMER_CURRENT_COUNT {
                // 62.5 MHz after the divider: 62.5 counts per microsecond of fake time.
                let elapsed_ns = self.tsc.load(Ordering::Relaxed);
                return registers[(local::TIMER_INITIAL_COUNT >> 4) as usize].saturating_sub((elapsed_ns * 625 / 10_000) as u32);
            }
            registers[(offset >> 4) as usize]
        }
        fn write(&self, offset: u32, value: u32) {
            if offset == local::TIMER_INITIAL_COUNT {
                self.tsc.store(0, Ordering::Relaxed);
            }
            self.registers.lock().unwrap()[(offset >> 4) as usize] = value;
        }
        fn send(&self, _command: InterruptCommand) {}
        fn apic_id(&self) -> u32 {
            0
        }
        fn current_vector(&self) -> u8 {
            0
        }
        fn write_tsc_deadline(&self, deadline: u64) {
            self.deadline.store(deadline, Ordering::Relaxed);
        }
        fn read_tsc(&self) -> u64 {
            self.tsc.load(Ordering::Relaxed)
        }
    }

    /// A reference clock reading the fake TSC as nanoseconds, advancing 1 µs per read.
    struct FakeClock(&'static FakeLocal);

    impl Clock for FakeClock {
        fn name(&self) -> &'static str {
            "fake"
        }
        fn frequency_hz(&self) -> u64 {
            1_000_000_000
        }
        fn counter(&self) -> u64 {
            self.0.tsc.fetch_add(1000, Ordering::Relaxed) + 1000
        }
    }

    fn fake() -> &'static FakeLocal {
        std::boxed::Box::leak(std::boxed::Box::new(FakeLocal {
            registers: Mutex::new([0; 64]),
            tsc: AtomicU64::new(0),
            deadline: AtomicU64::new(0),
        }))
    }

    #[test]
    fn calibration_measures_the_count_rate() {
        let local = fake();
        let frequency = calibrate_one_shot(local, &FakeClock(local));
        assert!((62_000_000..=63_000_000).contains(&frequency), "{frequency}");
        assert_eq!(local.read(local::TIMER_INITIAL_COUNT), 0, "left stopped");
    }

    #[test]
    fn one_shot_and_deadline_programming() {
        let local = fake();
        let one_shot = LapicTimer::new(local, TimerKind::OneShot { frequency_hz: 62_500_000 });
        one_shot.set_oneshot(10_000_000);
        assert_eq!(local.read(local::LVT_TIMER), 0xf0);
        assert_eq!(local.read(local::TIMER_INITIAL_COUNT), 625_000);
        assert_eq!(one_shot.name(), "lapic");
        one_shot.stop();
        assert_eq!(local.read(local::TIMER_INITIAL_COUNT), 0);

        local.tsc.store(5_000, Ordering::Relaxed);
        let deadline = LapicTimer::new(local, TimerKind::TscDeadline { tsc_hz: 2_000_000_000 });
        deadline.set_oneshot(1_000);
        assert_eq!(local.read(local::LVT_TIMER), 0x4_00f0);
        assert_eq!(local.deadline.load(Ordering::Relaxed), 7_000);
        assert_eq!(deadline.irq(), 0xf0);
        deadline.stop();
        assert_eq!(local.deadline.load(Ordering::Relaxed), 0);
    }
}
