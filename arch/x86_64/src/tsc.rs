//! The time-stamp counter as the clocksource, its frequency calibrated at boot against the HPET or the PIT.

use core::arch::asm;

use hinoki_interface::clock::ClockScale;
use hinoki_interface::Clock;

use crate::port;

/// How long each calibration measures, in microseconds.
const CALIBRATION_MICROSECONDS: u64 = 10_000;
/// The PIT's input clock in Hz.
pub const PIT_FREQUENCY_HZ: u64 = 1_193_182;

use crate::hpet::{
    CAPABILITIES as HPET_CAPABILITIES, CONFIGURATION as HPET_CONFIGURATION, COUNTER_IS_64_BIT as HPET_COUNTER_IS_64_BIT,
    ENABLE as HPET_ENABLE, MAIN_COUNTER as HPET_MAIN_COUNTER, MAXIMUM_PERIOD_FEMTOSECONDS as HPET_MAXIMUM_PERIOD_FEMTOSECONDS,
};

/// Reads the TSC, ordered after earlier loads by LFENCE.
#[inline(always)]
pub fn read() -> u64 {
    let low: u32;
    let high: u32;
    // SAFETY: LFENCE and RDTSC only read the counter (CR4.TSD is clear in ring 0 anyway).
    unsafe { asm!("lfence", "rdtsc", out("eax") low, out("edx") high, options(nomem, nostack, preserves_flags)) };
    (high as u64) << 32 | low as u64
}

/// The reference a TSC frequency was measured against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CalibrationSource {
    /// The HPET main counter, period from its capabilities register.
    Hpet,
    /// PIT channel 2 counting down in mode 0.
    Pit,
    /// The nominal frequency CPUID leaf 0x16 reports (no timer answered).
    CpuidNominal,
}

/// TSC ticks per second from `tsc_ticks` elapsed over `reference_femtoseconds`.
pub fn frequency_from(tsc_ticks: u64, reference_femtoseconds: u128) -> u64 {
    if reference_femtoseconds == 0 {
        return 0;
    }
    (tsc_ticks as u128 * 1_000_000_000_000_000 / reference_femtoseconds) as u64
}

/// Measures the TSC frequency against the HPET whose registers start at `base`. Returns
/// `None` when the capabilities register reports an impossible period.
///
/// # Safety
/// `base` must be the identity-mapped address of an HPET register block that nothing else
/// is reprogramming.
pub unsafe fn calibrate_with_hpet(base: usize) -> Option<u64> {
    let read = |offset: usize| {
        // SAFETY: the caller guarantees `base` is an HPET block; these are its registers.
        unsafe { core::ptr::read_volatile((base + offset) as *const u64) }
    };
    let capabilities = read(HPET_CAPABILITIES);
    let period_femtoseconds = capabilities >> 32;
    if period_femtoseconds == 0 || period_femtoseconds > HPET_MAXIMUM_PERIOD_FEMTOSECONDS {
        return None;
    }
    let configuration = read(HPET_CONFIGURATION);
    if configuration & HPET_ENABLE == 0 {
        // SAFETY: setting ENABLE_CNF starts the main counter; no comparators are armed.
        unsafe { core::ptr::write_volatile((base + HPET_CONFIGURATION) as *mut u64, configuration | HPET_ENABLE) };
    }
    let counter_mask = if capabilities & HPET_COUNTER_IS_64_BIT != 0 { u64::MAX } else { u32::MAX as u64 };
    // Five windows of a fifth of the calibration time each, median frequency: under a
    // hypervisor (or TCG on a busy host) the vCPU can be descheduled between reading the
    // two clocks, which skews one window; the median ignores up to two such windows.
    let wanted_ticks = CALIBRATION_MICROSECONDS / CALIBRATION_WINDOWS as u64 * 1_000_000_000 / period_femtoseconds;
    let mut frequencies = [0u64; CALIBRATION_WINDOWS];
    for frequency in frequencies.iter_mut() {
        // Bracket the HPET read with two TSC reads and take their midpoint.
        let before = read_tsc_now();
        let hpet_start = read(HPET_MAIN_COUNTER) & counter_mask;
        let after = read_tsc_now();
        let tsc_start = before + (after - before) / 2;
        let mut hpet_now;
        let mut spins = 0u64;
        loop {
            hpet_now = read(HPET_MAIN_COUNTER) & counter_mask;
            if hpet_now.wrapping_sub(hpet_start) & counter_mask >= wanted_ticks {
                break;
            }
            spins += 1;
            if spins > 100_000_000 {
                return None;
            }
            core::hint::spin_loop();
        }
        let tsc_end = read_tsc_now();
        let elapsed_ticks = hpet_now.wrapping_sub(hpet_start) & counter_mask;
        *frequency = frequency_from(tsc_end - tsc_start, elapsed_ticks as u128 * period_femtoseconds as u128);
    }
    Some(median(&mut frequencies))
}

/// Windows the calibration takes the median of.
const CALIBRATION_WINDOWS: usize = 5;

/// The median of a few measurements (sorts them in place).
pub fn median(values: &mut [u64]) -> u64 {
    values.sort_unstable();
    values[values.len() / 2]
}

fn read_tsc_now() -> u64 {
    read()
}

/// Measures the TSC frequency against PIT channel 2 (gate through port 0x61). Returns
/// `None` when the output never rises (no PIT).
pub fn calibrate_with_pit() -> Option<u64> {
    let count = PIT_FREQUENCY_HZ * CALIBRATION_MICROSECONDS / 1_000_000;
    // SAFETY: ports 0x61 (NMI status and control), 0x43 (PIT mode) and 0x42 (channel 2) are
    // the PC's legacy timer; channel 2 only drives the speaker, which stays disconnected.
    unsafe {
        let control = port::read_u8(0x61);
        port::write_u8(0x61, (control & !0x02) | 0x01);
        // Channel 2, low byte then high byte, mode 0 (interrupt on terminal count), binary.
        port::write_u8(0x43, 0b1011_0000);
        port::write_u8(0x42, count as u8);
        port::write_u8(0x42, (count >> 8) as u8);
    }
    let tsc_start = read();
    let mut spins = 0u64;
    // SAFETY: reading port 0x61 has no side effects; bit 5 is channel 2's output.
    while unsafe { port::read_u8(0x61) } & 0x20 == 0 {
        spins += 1;
        if spins > 50_000_000 {
            return None;
        }
    }
    let tsc_end = read();
    Some(frequency_from(tsc_end - tsc_start, count as u128 * 1_000_000_000_000_000 / PIT_FREQUENCY_HZ as u128))
}

/// Whether the TSC runs at a constant rate in every P-, C- and T-state (CPUID.80000007H:EDX[8]),
/// which makes it usable as the clocksource.
pub fn is_invariant() -> bool {
    crate::cpu::cpuid(0x8000_0000).eax >= 0x8000_0007 && crate::cpu::cpuid(0x8000_0007).edx & (1 << 8) != 0
}

/// The nominal TSC frequency from CPUID leaf 0x16 (base MHz), if the CPU reports one.
pub fn nominal_frequency() -> Option<u64> {
    if crate::cpu::cpuid(0).eax < 0x16 {
        return None;
    }
    let megahertz = crate::cpu::cpuid(0x16).eax as u64 & 0xffff;
    (megahertz != 0).then_some(megahertz * 1_000_000)
}

/// The TSC, Linux's `tsc` clocksource.
pub struct Tsc {
    frequency_hz: u64,
    scale: ClockScale,
    origin: u64,
    source: CalibrationSource,
}

impl Tsc {
    /// Calibrates against the HPET at `hpet_base` when given, else the PIT, else CPUID's
    /// nominal frequency. Returns `None` when nothing gives a frequency.
    ///
    /// # Safety
    /// `hpet_base`, when given, must satisfy [`calibrate_with_hpet`]'s contract.
    pub unsafe fn calibrate(hpet_base: Option<usize>) -> Option<Tsc> {
        let origin = read();
        // SAFETY: forwarded from the caller.
        let from_hpet = hpet_base.and_then(|base| unsafe { calibrate_with_hpet(base) }).filter(|&hz| hz > 0);
        let (frequency_hz, source) = match from_hpet {
            Some(hz) => (hz, CalibrationSource::Hpet),
            None => match calibrate_with_pit().filter(|&hz| hz > 0) {
                Some(hz) => (hz, CalibrationSource::Pit),
                None => (nominal_frequency()?, CalibrationSource::CpuidNominal),
            },
        };
        Some(Tsc { frequency_hz, scale: ClockScale::new(frequency_hz), origin, source })
    }

    /// What the frequency was measured against.
    pub fn source(&self) -> CalibrationSource {
        self.source
    }
}

impl Clock for Tsc {
    fn name(&self) -> &'static str {
        "tsc"
    }

    fn frequency_hz(&self) -> u64 {
        self.frequency_hz
    }

    fn counter(&self) -> u64 {
        read().wrapping_sub(self.origin)
    }

    fn nanoseconds(&self) -> u64 {
        self.scale.to_nanoseconds(self.counter())
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn median_ignores_outliers() {
        let mut values = [2_000_000_000, 1_999_000_000, 3_100_000_000, 2_001_000_000, 900_000_000];
        assert_eq!(super::median(&mut values), 2_000_000_000);
    }

    use super::frequency_from;

    #[test]
    fn frequency_from_reference_time() {
        // 30 million ticks in 10 ms (10^13 fs) is 3 GHz.
        assert_eq!(frequency_from(30_000_000, 10_000_000_000_000), 3_000_000_000);
        assert_eq!(frequency_from(5, 0), 0);
    }
}
