//! Wall-clock time: the real-time clock read once at boot, carried forward by the clocksource; the `date` command.

use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering};

use hinoki_interface::CivilTime;

use crate::shell::{Arguments, CommandError, CommandResult};

/// Seconds since the Unix epoch at uptime zero (0 without a real-time clock).
static BOOT_TIME_SECONDS: AtomicU64 = AtomicU64::new(0);

const DAY_NAMES: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTH_NAMES: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// Reads the platform's real-time clock, if it has one, and sets the wall time from it.
pub fn init() {
    let Some(platform) = crate::try_platform() else { return };
    let Some(clock) = platform.real_time_clock() else {
        log::info!("rtc: no real-time clock; the wall time starts at the epoch");
        return;
    };
    match clock.read_seconds() {
        Ok(seconds) => {
            let uptime = super::since_boot_nanoseconds() / 1_000_000_000;
            BOOT_TIME_SECONDS.store(seconds.saturating_sub(uptime), Ordering::Release);
            log::info!("rtc: {} set the system clock to {}", clock.name(), Date(seconds));
        }
        Err(error) => log::warn!("rtc: cannot read {}: {:?}; the wall time starts at the epoch", clock.name(), error),
    }
}

/// Seconds since the Unix epoch at boot (`btime` in `/proc/stat`).
pub fn boot_time_seconds() -> u64 {
    BOOT_TIME_SECONDS.load(Ordering::Acquire)
}

/// Seconds since the Unix epoch now.
pub fn real_time_seconds() -> u64 {
    boot_time_seconds() + super::since_boot_nanoseconds() / 1_000_000_000
}

/// Writes `seconds` since the epoch as `date` prints it in UTC, e.g.
/// `Sun Nov 22 09:30:15 UTC 2026`.
pub fn write_date(seconds: u64, out: &mut dyn Write) -> core::fmt::Result {
    let time = CivilTime::from_unix_seconds(seconds);
    write!(
        out,
        "{} {} {:2} {:02}:{:02}:{:02} UTC {}",
        DAY_NAMES[time.weekday() as usize % 7],
        MONTH_NAMES[(time.month as usize - 1) % 12],
        time.day,
        time.hour,
        time.minute,
        time.second,
        time.year
    )
}

/// Seconds since the epoch that display as [`write_date`] writes them (no allocation, so
/// usable before the memory manager is up).
pub struct Date(pub u64);

impl core::fmt::Display for Date {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write_date(self.0, formatter)
    }
}

crate::shell_command!(DATE_COMMAND, "date", "print the date and time (UTC); date +%s for seconds since the epoch", date);

fn date(arguments: &Arguments<'_>, out: &mut dyn Write) -> CommandResult {
    match arguments.get(1).copied() {
        None => {
            let _ = write_date(real_time_seconds(), out);
            let _ = writeln!(out);
            Ok(())
        }
        Some("+%s") if arguments.len() == 2 => {
            let _ = writeln!(out, "{}", real_time_seconds());
            Ok(())
        }
        Some(_) => Err(CommandError::Usage("date [+%s]")),
    }
}

crate::ktest!(
    fn wall_clock_follows_the_real_time_clock() {
        let platform = crate::platform();
        let Some(clock) = platform.real_time_clock() else {
            crate::kassert_eq!(boot_time_seconds(), 0);
            return Ok(());
        };
        let hardware = clock.read_seconds();
        crate::kassert!(hardware.is_ok(), "{} cannot be read: {:?}", clock.name(), hardware);
        let hardware = hardware.unwrap_or(0);
        let kernel = real_time_seconds();
        // QEMU starts its clocks at the host's time; the kernel's count may lag the
        // device by the second it was read in plus rounding.
        crate::kassert!(hardware.abs_diff(kernel) <= 2, "{} says {} s, the kernel {} s", clock.name(), hardware, kernel);
        crate::kassert!(kernel > 1_577_836_800, "the wall time {} s is before 2020", kernel);
        Ok(())
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_print_as_date_does_in_utc() {
        let mut text = alloc::string::String::new();
        write_date(1_795_339_815, &mut text).unwrap();
        assert_eq!(text, "Sun Nov 22 09:30:15 UTC 2026");
        text.clear();
        write_date(0, &mut text).unwrap();
        assert_eq!(text, "Thu Jan  1 00:00:00 UTC 1970");
    }
}
