//! PC CMOS real-time clock (MC146818-compatible): date and time from the CMOS registers, BCD or binary, 12- or 24-hour, read consistently around updates.
#![no_std]
#![forbid(unsafe_code)]

use hinoki_interface::{CivilTime, RealTimeClock, RtcError};

const SECONDS: u8 = 0x00;
const MINUTES: u8 = 0x02;
const HOURS: u8 = 0x04;
const DAY_OF_MONTH: u8 = 0x07;
const MONTH: u8 = 0x08;
const YEAR: u8 = 0x09;
const STATUS_A: u8 = 0x0a;
const STATUS_B: u8 = 0x0b;

/// Status A: an update of the time registers is in progress (they may be inconsistent).
const UPDATE_IN_PROGRESS: u8 = 1 << 7;
/// Status B: values are binary (clear: BCD).
const BINARY_MODE: u8 = 1 << 2;
/// Status B: 24-hour mode (clear: 12-hour with bit 7 of the hour meaning PM).
const TWENTY_FOUR_HOUR: u8 = 1 << 1;

/// Polls of status A before the clock counts as stuck in an update (an update takes
/// under 2 ms; each poll is an I/O port access of about a microsecond).
const UPDATE_POLLS: u32 = 100_000;
/// Reads before two consecutive ones must have agreed.
const CONSISTENT_READ_ATTEMPTS: u32 = 5;

/// Access to the CMOS registers (on a PC: index to port 0x70, data from port 0x71).
pub trait CmosRegisters: Sync {
    /// The CMOS register at `index`.
    fn read(&self, index: u8) -> u8;
}

/// The CMOS real-time clock.
pub struct CmosRtc<R: CmosRegisters> {
    registers: R,
    /// The century register's index when the firmware names one (ACPI FADT `CENTURY`).
    century: Option<u8>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Raw {
    values: [u8; 7],
}

impl<R: CmosRegisters> CmosRtc<R> {
    /// A clock over `registers`; `century` is the century register's index if the
    /// firmware names one, else years 00-69 are read as 2000-2069 and 70-99 as 1970-1999.
    pub const fn new(registers: R, century: Option<u8>) -> Self {
        CmosRtc { registers, century }
    }

    fn wait_for_update_end(&self) -> Result<(), RtcError> {
        for _ in 0..UPDATE_POLLS {
            if self.registers.read(STATUS_A) & UPDATE_IN_PROGRESS == 0 {
                return Ok(());
            }
        }
        Err(RtcError::NotResponding)
    }

    fn read_raw(&self) -> Result<Raw, RtcError> {
        self.wait_for_update_end()?;
        let century = self.century.map_or(0, |index| self.registers.read(index));
        Ok(Raw {
            values: [
                self.registers.read(SECONDS),
                self.registers.read(MINUTES),
                self.registers.read(HOURS),
                self.registers.read(DAY_OF_MONTH),
                self.registers.read(MONTH),
                self.registers.read(YEAR),
                century,
            ],
        })
    }

    /// The date and time the clock holds.
    ///
    /// # Errors
    /// [`RtcError::NotResponding`] if an update never ends or reads never agree,
    /// [`RtcError::InvalidTime`] if the registers hold no valid date.
    pub fn read_civil(&self) -> Result<CivilTime, RtcError> {
        let mut previous = self.read_raw()?;
        for _ in 0..CONSISTENT_READ_ATTEMPTS {
            let current = self.read_raw()?;
            if current == previous {
                return decode(current, self.registers.read(STATUS_B), self.century.is_some());
            }
            previous = current;
        }
        Err(RtcError::NotResponding)
    }
}

fn from_bcd(value: u8) -> Result<u32, RtcError> {
    let (tens, ones) = (value >> 4, value & 0x0f);
    if tens > 9 || ones > 9 {
        return Err(RtcError::InvalidTime);
    }
    Ok(tens as u32 * 10 + ones as u32)
}

fn decode(raw: Raw, status_b: u8, has_century: bool) -> Result<CivilTime, RtcError> {
    let binary = status_b & BINARY_MODE != 0;
    let number = |value: u8| if binary { Ok(value as u32) } else { from_bcd(value) };
    let [second, minute, hour, day, month, year, century] = raw.values;
    let (hour, pm) = if status_b & TWENTY_FOUR_HOUR == 0 { (hour & 0x7f, hour & 0x80 != 0) } else { (hour, false) };
    let mut hour = number(hour)?;
    if status_b & TWENTY_FOUR_HOUR == 0 {
        if !(1..=12).contains(&hour) {
            return Err(RtcError::InvalidTime);
        }
        hour = match (hour, pm) {
            (12, false) => 0,
            (12, true) => 12,
            (hour, true) => hour + 12,
            (hour, false) => hour,
        };
    }
    let year = number(year)?;
    let full_year = if has_century {
        number(century)? * 100 + year
    } else if year < 70 {
        2000 + year
    } else {
        1900 + year
    };
    let time =
        CivilTime { year: full_year, month: number(month)?, day: number(day)?, hour, minute: number(minute)?, second: number(second)? };
    time.to_unix_seconds().map(|_| time).ok_or(RtcError::InvalidTime)
}

impl<R: CmosRegisters> RealTimeClock for CmosRtc<R> {
    fn name(&self) -> &str {
        "rtc_cmos"
    }

    fn read_seconds(&self) -> Result<u64, RtcError> {
        self.read_civil()?.to_unix_seconds().ok_or(RtcError::InvalidTime)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use core::sync::atomic::{AtomicU32, AtomicU8, Ordering};

    struct Fake {
        registers: [AtomicU8; 128],
        /// Reads of status A that still report an update in progress.
        updating_reads: AtomicU32,
    }

    impl Fake {
        fn new(values: &[(u8, u8)], status_b: u8) -> Fake {
            let fake = Fake { registers: core::array::from_fn(|_| AtomicU8::new(0)), updating_reads: AtomicU32::new(0) };
            for &(index, value) in values {
                fake.registers[index as usize].store(value, Ordering::Relaxed);
            }
            fake.registers[STATUS_B as usize].store(status_b, Ordering::Relaxed);
            fake
        }
    }

    impl CmosRegisters for &Fake {
        fn read(&self, index: u8) -> u8 {
            if index == STATUS_A {
                let busy = self.updating_reads.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok();
                return if busy { UPDATE_IN_PROGRESS } else { 0 };
            }
            self.registers[index as usize].load(Ordering::Relaxed)
        }
    }

    const NOVEMBER_22_2026_BCD: [(u8, u8); 6] =
        [(SECONDS, 0x15), (MINUTES, 0x30), (HOURS, 0x09), (DAY_OF_MONTH, 0x22), (MONTH, 0x11), (YEAR, 0x26)];

    #[test]
    fn bcd_twenty_four_hour_time_after_an_update() {
        let fake = Fake::new(&NOVEMBER_22_2026_BCD, TWENTY_FOUR_HOUR);
        fake.updating_reads.store(50, Ordering::Relaxed);
        assert_eq!(CmosRtc::new(&fake, None).read_seconds(), Ok(1_795_339_815));
    }

    #[test]
    fn binary_twelve_hour_pm_with_a_century_register() {
        let fake = Fake::new(
            &[(SECONDS, 15), (MINUTES, 30), (HOURS, 0x80 | 9), (DAY_OF_MONTH, 22), (MONTH, 11), (YEAR, 26), (0x32, 20)],
            BINARY_MODE,
        );
        let time = CmosRtc::new(&fake, Some(0x32)).read_civil().unwrap();
        assert_eq!((time.year, time.hour), (2026, 21));
        let midnight = Fake::new(&[(HOURS, 12), (DAY_OF_MONTH, 1), (MONTH, 1), (YEAR, 99)], BINARY_MODE);
        let time = CmosRtc::new(&midnight, None).read_civil().unwrap();
        assert_eq!((time.year, time.hour), (1999, 0));
    }

    #[test]
    fn garbage_and_stuck_clocks_are_errors() {
        let bad_bcd = Fake::new(&[(SECONDS, 0x1a), (DAY_OF_MONTH, 1), (MONTH, 1)], TWENTY_FOUR_HOUR);
        assert_eq!(CmosRtc::new(&bad_bcd, None).read_seconds(), Err(RtcError::InvalidTime));
        let february_30 = Fake::new(&[(DAY_OF_MONTH, 0x30), (MONTH, 0x02), (YEAR, 0x26)], TWENTY_FOUR_HOUR);
        assert_eq!(CmosRtc::new(&february_30, None).read_seconds(), Err(RtcError::InvalidTime));
        let stuck = Fake::new(&NOVEMBER_22_2026_BCD, TWENTY_FOUR_HOUR);
        stuck.updating_reads.store(u32::MAX, Ordering::Relaxed);
        assert_eq!(CmosRtc::new(&stuck, None).read_seconds(), Err(RtcError::NotResponding));
    }
}
