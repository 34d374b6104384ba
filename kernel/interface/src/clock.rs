//! Clocks: a monotonic clocksource and per-CPU clock-event (timer interrupt) devices.

/// A free-running, monotonic counter (Linux's clocksource).
pub trait Clock: Sync {
    /// Device name, e.g. `"arch_sys_counter"`, `"tsc"`, `"hpet"`.
    fn name(&self) -> &'static str;

    /// Counter frequency in Hz, read from the hardware or calibrated; never zero.
    fn frequency_hz(&self) -> u64;

    /// The raw counter value.
    fn counter(&self) -> u64;

    /// Nanoseconds since the counter's origin (boot, on every supported board).
    fn nanoseconds(&self) -> u64 {
        counter_to_nanoseconds(self.counter(), self.frequency_hz())
    }
}

/// Converts `ticks` at `frequency_hz` to nanoseconds without overflowing for any `u64` tick count.
pub fn counter_to_nanoseconds(ticks: u64, frequency_hz: u64) -> u64 {
    let frequency_hz = frequency_hz.max(1);
    let result = (ticks as u128 * 1_000_000_000) / frequency_hz as u128;
    result.min(u64::MAX as u128) as u64
}

/// Counter ticks to nanoseconds by a multiplication and a shift (Linux's clocksource
/// `mult`/`shift`), for clocks read on hot paths: [`counter_to_nanoseconds`] divides by the
/// frequency, a 128-bit division that costs tens of instructions on every read.
///
/// The result is never above the exact quotient and at most one nanosecond below it for
/// results under 2^62 ns (146 years; the multiplier keeps 62 or more significant bits, so the
/// error grows to a few nanoseconds only near `u64::MAX`). It is monotonic in the tick count
/// and saturates at `u64::MAX` like [`counter_to_nanoseconds`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockScale {
    multiplier: u64,
    shift: u32,
}

impl ClockScale {
    /// The scale for a counter at `frequency_hz` (zero is taken as 1 Hz).
    pub const fn new(frequency_hz: u64) -> Self {
        let frequency_hz = if frequency_hz == 0 { 1 } else { frequency_hz };
        // The largest shift whose multiplier (10^9 << shift) / frequency fits in 63 bits.
        let mut shift = 63;
        loop {
            let multiplier = (1_000_000_000u128 << shift) / frequency_hz as u128;
            if multiplier < 1 << 63 || shift == 0 {
                return ClockScale { multiplier: multiplier as u64, shift };
            }
            shift -= 1;
        }
    }

    /// Nanoseconds for `ticks`.
    #[inline]
    pub const fn to_nanoseconds(&self, ticks: u64) -> u64 {
        let nanoseconds = (ticks as u128 * self.multiplier as u128) >> self.shift;
        if nanoseconds > u64::MAX as u128 {
            u64::MAX
        } else {
            nanoseconds as u64
        }
    }
}

/// A per-CPU timer that raises an interrupt at a deadline (Linux's clock_event_device).
pub trait ClockEvent: Sync {
    /// Device name, e.g. `"arch_timer"`, `"lapic"`.
    fn name(&self) -> &'static str;

    /// The interrupt number this device raises on the calling CPU.
    fn irq(&self) -> u32;

    /// Arms a one-shot interrupt `nanoseconds` from now on the calling CPU.
    fn set_oneshot(&self, nanoseconds: u64);

    /// Stops the timer on the calling CPU.
    fn stop(&self);
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::{counter_to_nanoseconds, ClockScale};

    #[test]
    fn converts_common_frequencies() {
        assert_eq!(counter_to_nanoseconds(62_500_000, 62_500_000), 1_000_000_000);
        assert_eq!(counter_to_nanoseconds(54, 54_000_000), 1_000);
        assert_eq!(counter_to_nanoseconds(1, 1_000_000_000), 1);
    }

    #[test]
    fn scale_matches_the_exact_division_within_one_nanosecond() {
        let frequencies =
            [1, 1_000, 19_200_000, 24_000_000, 54_000_000, 62_500_000, 100_000_000, 1_000_000_000, 2_893_437_000, 3_999_999_999];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for frequency in frequencies {
            let scale = ClockScale::new(frequency);
            let mut ticks_list = std::vec![0, 1, 2, 999, frequency - 1, frequency, frequency + 1, u64::MAX / 2, u64::MAX - 1, u64::MAX];
            for _ in 0..2000 {
                // xorshift: tick counts spread over every magnitude.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ticks_list.push(state >> (state % 64));
            }
            for ticks in ticks_list {
                let exact = counter_to_nanoseconds(ticks, frequency);
                let scaled = scale.to_nanoseconds(ticks);
                let tolerance = if exact < 1 << 62 { 1 } else { 4 };
                assert!(exact - scaled <= tolerance, "{} ticks at {} Hz: {} vs exact {}", ticks, frequency, scaled, exact);
                assert!(scaled <= exact, "{} ticks at {} Hz: {} above the exact {}", ticks, frequency, scaled, exact);
            }
        }
    }

    #[test]
    fn scale_is_monotonic_and_exact_for_whole_nanosecond_periods() {
        let scale = ClockScale::new(62_500_000);
        for ticks in 0..100_000u64 {
            assert_eq!(scale.to_nanoseconds(ticks), ticks * 16);
        }
        let scale = ClockScale::new(54_000_000);
        let mut previous = 0;
        for ticks in (0..10_000_000u64).step_by(7) {
            let now = scale.to_nanoseconds(ticks);
            assert!(now >= previous);
            previous = now;
        }
        assert_eq!(ClockScale::new(0), ClockScale::new(1));
    }

    #[test]
    fn never_overflows_and_never_divides_by_zero() {
        assert_eq!(counter_to_nanoseconds(u64::MAX, 1), u64::MAX);
        assert_eq!(counter_to_nanoseconds(5, 0), 5_000_000_000);
    }
}
