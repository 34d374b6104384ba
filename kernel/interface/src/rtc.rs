//! Real-time clock: the calendar time a battery-backed clock keeps, and calendar arithmetic shared by its drivers.

/// Why a real-time clock could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtcError {
    /// The device did not answer as the driver expects (wrong identification, stuck update).
    NotResponding,
    /// The device holds a time that is not a valid calendar date.
    InvalidTime,
}

/// A battery-backed clock of wall time, read once at boot; the kernel's clocksource keeps
/// time from there.
pub trait RealTimeClock: Sync {
    /// Device name for the log, e.g. `"pl031"`.
    fn name(&self) -> &str;

    /// Seconds since 1970-01-01 00:00:00 UTC.
    ///
    /// # Errors
    /// [`RtcError::NotResponding`] if the device does not behave, [`RtcError::InvalidTime`]
    /// if what it holds is no valid date.
    fn read_seconds(&self) -> Result<u64, RtcError>;
}

/// A broken-down UTC date and time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CivilTime {
    /// The full year, e.g. 2026.
    pub year: u32,
    /// 1 to 12.
    pub month: u32,
    /// 1 to 31.
    pub day: u32,
    /// 0 to 23.
    pub hour: u32,
    /// 0 to 59.
    pub minute: u32,
    /// 0 to 59 (a leap second 60 is folded into the next minute).
    pub second: u32,
}

fn is_leap_year(year: u32) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days from 1970-01-01 to the first day of `year` (for years from 1970).
fn days_before_year(year: u32) -> u64 {
    let years = (year - 1970) as u64;
    let previous = year as u64 - 1;
    let leap_days = (previous / 4 - previous / 100 + previous / 400) - (1969 / 4 - 1969 / 100 + 1969 / 400);
    years * 365 + leap_days
}

impl CivilTime {
    /// Seconds since the Unix epoch, `None` for a date before 1970, past 9999 or not valid.
    pub fn to_unix_seconds(&self) -> Option<u64> {
        if !(1970..=9999).contains(&self.year)
            || !(1..=12).contains(&self.month)
            || self.day == 0
            || self.day > days_in_month(self.year, self.month)
            || self.hour > 23
            || self.minute > 59
            || self.second > 60
        {
            return None;
        }
        let days_before_month: u64 = (1..self.month).map(|month| days_in_month(self.year, month) as u64).sum();
        let days = days_before_year(self.year) + days_before_month + (self.day as u64 - 1);
        Some(days * 86_400 + self.hour as u64 * 3_600 + self.minute as u64 * 60 + self.second as u64)
    }

    /// The UTC date and time `seconds` after the Unix epoch.
    pub fn from_unix_seconds(seconds: u64) -> CivilTime {
        let mut days = seconds / 86_400;
        let within_day = seconds % 86_400;
        let mut year = 1970;
        loop {
            let length = if is_leap_year(year) { 366 } else { 365 };
            if days < length {
                break;
            }
            days -= length;
            year += 1;
        }
        let mut month = 1;
        while days >= days_in_month(year, month) as u64 {
            days -= days_in_month(year, month) as u64;
            month += 1;
        }
        CivilTime {
            year,
            month,
            day: days as u32 + 1,
            hour: (within_day / 3_600) as u32,
            minute: (within_day / 60 % 60) as u32,
            second: (within_day % 60) as u32,
        }
    }

    /// Day of the week, 0 = Sunday.
    pub fn weekday(&self) -> u32 {
        // 1970-01-01 was a Thursday.
        self.to_unix_seconds().map_or(0, |seconds| ((seconds / 86_400 + 4) % 7) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn civil(year: u32, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> CivilTime {
        CivilTime { year, month, day, hour, minute, second }
    }

    #[test]
    fn known_dates_convert_both_ways() {
        let cases = [
            (civil(1970, 1, 1, 0, 0, 0), 0),
            (civil(2000, 2, 29, 12, 0, 0), 951_825_600),
            (civil(2000, 3, 1, 0, 0, 0), 951_868_800),
            (civil(2026, 11, 22, 9, 30, 15), 1_795_339_815),
            (civil(2038, 1, 19, 3, 14, 8), 2_147_483_648),
            (civil(2100, 3, 1, 0, 0, 0), 4_107_542_400),
        ];
        for (time, seconds) in cases {
            assert_eq!(time.to_unix_seconds(), Some(seconds), "{:?}", time);
            assert_eq!(CivilTime::from_unix_seconds(seconds), time);
        }
    }

    #[test]
    fn every_day_of_four_centuries_round_trips() {
        let end = civil(2370, 1, 1, 0, 0, 0).to_unix_seconds().unwrap();
        let mut previous: Option<CivilTime> = None;
        for day in 0..end / 86_400 {
            let time = CivilTime::from_unix_seconds(day * 86_400 + 3_661);
            assert_eq!(time.to_unix_seconds(), Some(day * 86_400 + 3_661));
            if let Some(previous) = previous {
                assert_eq!(time.weekday(), (previous.weekday() + 1) % 7);
            }
            previous = Some(time);
        }
    }

    #[test]
    fn invalid_dates_are_refused() {
        for time in [
            civil(1969, 12, 31, 23, 59, 59),
            civil(2023, 2, 29, 0, 0, 0),
            civil(2100, 2, 29, 0, 0, 0),
            civil(2026, 13, 1, 0, 0, 0),
            civil(2026, 4, 31, 0, 0, 0),
            civil(2026, 1, 0, 0, 0, 0),
            civil(2026, 1, 1, 24, 0, 0),
            civil(2026, 1, 1, 0, 60, 0),
        ] {
            assert_eq!(time.to_unix_seconds(), None, "{:?}", time);
        }
        assert!(civil(2000, 2, 29, 0, 0, 0).to_unix_seconds().is_some());
    }

    #[test]
    fn weekday_of_known_dates() {
        assert_eq!(civil(1970, 1, 1, 0, 0, 0).weekday(), 4);
        assert_eq!(civil(2026, 11, 22, 0, 0, 0).weekday(), 0);
    }
}
