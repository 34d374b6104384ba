//! Time: uptime from the platform clocksource, kernel timers on the jiffies timer wheel, and high-resolution timers on the clock-event device.

pub mod hrtimer;
pub mod real_time;
pub mod timer;
pub mod wheel;

pub(crate) mod ktests;

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, Ordering};

use hinoki_interface::Clock;

use crate::sync::Once;

pub use hrtimer::HrTimer;
pub use real_time::{boot_time_seconds, real_time_seconds};
pub use timer::Timer;

static BOOT_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Records the clocksource value at kernel entry as the origin of uptime. The counter on
/// every supported board starts near zero at reset, so boot time before the kernel is
/// also visible as `boot_counter()`.
pub fn mark_boot() {
    if let Some(platform) = crate::try_platform() {
        let clock = CLOCK.call_once(|| platform.clock());
        BOOT_COUNTER.store(clock.counter(), Ordering::Relaxed);
    }
}

/// The platform's clocksource, kept so reading the time makes one indirect call.
static CLOCK: Once<&'static dyn Clock> = Once::new();

/// The clocksource value when `kernel_main` started.
pub fn boot_counter() -> u64 {
    BOOT_COUNTER.load(Ordering::Relaxed)
}

/// Nanoseconds since the clocksource origin (machine reset), 0 before the platform exists.
pub fn since_reset_nanoseconds() -> u64 {
    CLOCK.get().map_or(0, |clock| clock.nanoseconds())
}

/// Nanoseconds since the clocksource origin; this is the kernel's uptime clock.
pub fn since_boot_nanoseconds() -> u64 {
    since_reset_nanoseconds()
}

/// Installs the TIMER and HRTIMER softirq handlers and registers `/proc/timer_list`.
pub fn init() {
    timer::init();
    hrtimer::init();
    if let Err(error) = crate::fs::procfs::register("timer_list", show_timer_list) {
        log::warn!("time: cannot register /proc/timer_list: {:?}", error);
    }
}

fn show_timer_list(out: &mut dyn Write) -> fmt::Result {
    let cpus = crate::try_platform().map_or(1, |platform| platform.cpu().online_count() as usize).clamp(1, crate::sched::MAX_SCHED_CPUS);
    writeln!(out, "Timer List Version: hinoki-1")?;
    hrtimer::write_timer_list(out, cpus)?;
    timer::write_timer_list(out, cpus)
}

/// Splits nanoseconds into (days, hours, minutes, seconds, milliseconds).
pub fn split_duration(nanoseconds: u64) -> (u64, u64, u64, u64, u64) {
    let milliseconds = nanoseconds / 1_000_000;
    let seconds = milliseconds / 1000;
    (seconds / 86_400, (seconds / 3600) % 24, (seconds / 60) % 60, seconds % 60, milliseconds % 1000)
}

#[cfg(test)]
mod tests {
    use super::split_duration;

    #[test]
    fn splits_durations() {
        assert_eq!(split_duration(0), (0, 0, 0, 0, 0));
        assert_eq!(split_duration(90_061_001_000_000), (1, 1, 1, 1, 1));
    }
}
