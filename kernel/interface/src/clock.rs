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
    use super::counter_to_nanoseconds;

    #[test]
    fn converts_common_frequencies() {
        assert_eq!(counter_to_nanoseconds(62_500_000, 62_500_000), 1_000_000_000);
        assert_eq!(counter_to_nanoseconds(54, 54_000_000), 1_000);
        assert_eq!(counter_to_nanoseconds(1, 1_000_000_000), 1);
    }

    #[test]
    fn never_overflows_and_never_divides_by_zero() {
        assert_eq!(counter_to_nanoseconds(u64::MAX, 1), u64::MAX);
        assert_eq!(counter_to_nanoseconds(5, 0), 5_000_000_000);
    }
}
