//! In-kernel tests of kernel timers and hrtimers: order, never early, within a stated tolerance; delete and delete-sync; precise hrtimer sleeps.
//!
//! Tolerances (generous, for QEMU's TCG on a loaded host): a wheel timer runs at the tick of
//! its jiffy or up to [`TIMER_TOLERANCE_JIFFIES`] later; an hrtimer or an hrtimer sleep ends
//! not before its deadline and at most [`HRTIMER_TOLERANCE_NANOSECONDS`] after it, and the
//! promptest of several sleeps within half a tick period.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::time::Duration;

use super::{since_boot_nanoseconds, HrTimer, Timer};
use crate::sched;
use crate::sync::IrqSpinLock;
use crate::tick::{jiffies, TICK_NANOSECONDS};
use crate::{kassert, kassert_eq, ktest};

/// How many jiffies after its expiry a wheel timer may run (the softirq runs at the tick
/// after the expiry jiffy was counted; a host descheduling QEMU delays that tick).
pub const TIMER_TOLERANCE_JIFFIES: u64 = 3;
/// How long after its deadline an hrtimer or hrtimer sleep may end: three tick periods.
pub const HRTIMER_TOLERANCE_NANOSECONDS: u64 = 3 * TICK_NANOSECONDS;

fn has_tick() -> bool {
    crate::try_platform().is_some_and(|platform| platform.clock_event().is_some() && platform.interrupt_controller().is_some())
        && sched::is_running()
}

/// Sleeps until `done()` or `limit` nanoseconds passed; returns `done()`.
fn wait_until(limit: u64, mut done: impl FnMut() -> bool) -> bool {
    let started = since_boot_nanoseconds();
    while !done() && since_boot_nanoseconds() - started < limit {
        sched::sleep(Duration::from_millis(1));
    }
    done()
}

ktest!(
    fn timers_fire_in_order_not_early() {
        if !has_tick() {
            log::info!("time: no tick on this board; nothing to test");
            return Ok(());
        }
        let fired: Arc<IrqSpinLock<Vec<(usize, u64, u64)>>> = Arc::new(IrqSpinLock::new(Vec::new()));
        let base = jiffies() + 2;
        // Armed out of order; three share a jiffy and must keep their arming order.
        let offsets = [5u64, 1, 3, 3, 8, 3, 2];
        let timers: Vec<Arc<Timer>> = offsets
            .iter()
            .enumerate()
            .map(|(index, &offset)| {
                let fired = fired.clone();
                let expires = base + offset;
                Timer::new(move || fired.lock().push((index, expires, jiffies())))
            })
            .collect();
        // Armed with interrupts masked, so no expiry runs between two arms even if the host
        // stalls this vCPU past some of the expiries (the order is then still by expiry).
        {
            let platform = crate::platform();
            let saved = platform.cpu().disable_interrupts();
            for (timer, &offset) in timers.iter().zip(&offsets) {
                timer.add(base + offset);
            }
            platform.cpu().restore_interrupts(saved);
        }
        let all = wait_until(30 * TICK_NANOSECONDS, || fired.lock().len() == offsets.len());
        let fired = fired.lock().clone();
        kassert!(all, "only {} of {} timers ran: {:?}", fired.len(), offsets.len(), fired);
        let order: Vec<usize> = fired.iter().map(|&(index, _, _)| index).collect();
        kassert_eq!(order, [1, 6, 2, 3, 5, 0, 4]);
        for &(index, expires, ran_at) in &fired {
            kassert!(ran_at >= expires, "timer {} due at jiffy {} ran early at {}", index, expires, ran_at);
            kassert!(
                ran_at <= expires + TIMER_TOLERANCE_JIFFIES,
                "timer {} due at jiffy {} ran at {} (tolerance {} jiffies)",
                index,
                expires,
                ran_at,
                TIMER_TOLERANCE_JIFFIES
            );
        }
        kassert!(timers.iter().all(|timer| !timer.is_pending() && timer.runs() == 1));
        Ok(())
    }
);

ktest!(
    fn deleted_and_modified_timers() {
        if !has_tick() {
            log::info!("time: no tick on this board; nothing to test");
            return Ok(());
        }
        let runs = Arc::new(AtomicU64::new(0));
        let ran_at = Arc::new(AtomicU64::new(0));
        let deleted = {
            let runs = runs.clone();
            Timer::new(move || {
                runs.fetch_add(1, Ordering::AcqRel);
            })
        };
        let moved = {
            let ran_at = ran_at.clone();
            Timer::new(move || ran_at.store(jiffies(), Ordering::Release))
        };
        // Interrupts masked from arming to modifying, so a host stall cannot let the timers
        // expire in between.
        let platform = crate::platform();
        let saved = platform.cpu().disable_interrupts();
        let start = jiffies();
        deleted.add(start + 2);
        moved.add(start + 2);
        let pending = deleted.is_pending();
        let first_delete = deleted.delete();
        let second_delete = deleted.delete();
        let modified_pending = moved.modify(start + 6);
        let expires = moved.expires();
        platform.cpu().restore_interrupts(saved);
        kassert!(pending);
        kassert!(first_delete, "a pending timer must report pending when deleted");
        kassert!(!second_delete);
        kassert!(modified_pending, "modify of a pending timer reports it pending");
        kassert_eq!(expires, Some(start + 6));
        let done = wait_until(30 * TICK_NANOSECONDS, || ran_at.load(Ordering::Acquire) != 0);
        kassert!(done, "the modified timer never ran");
        kassert!(
            ran_at.load(Ordering::Acquire) >= start + 6,
            "ran at {} before its new expiry {}",
            ran_at.load(Ordering::Acquire),
            start + 6
        );
        kassert_eq!(runs.load(Ordering::Acquire), 0);
        // A far-future timer stays pending and is deleted cleanly.
        moved.modify(jiffies() + 1_000_000_000);
        kassert!(moved.is_pending());
        kassert!(moved.delete_sync());
        kassert!(!moved.is_pending());
        Ok(())
    }
);

static SYNC_TIMER: IrqSpinLock<Option<Arc<Timer>>> = IrqSpinLock::new(None);
static CALLBACK_STARTED: AtomicBool = AtomicBool::new(false);
static CALLBACK_FINISHED: AtomicBool = AtomicBool::new(false);

fn arm_sync_timer_here(_argument: usize) -> usize {
    if let Some(timer) = SYNC_TIMER.lock().as_ref() {
        timer.add(jiffies() + 1);
    }
    sched::this_cpu()
}

ktest!(
    fn delete_sync_waits_for_a_running_callback() {
        let platform = crate::platform();
        if !has_tick() || crate::smp::ready_count() < 2 {
            log::info!("time: one CPU or no tick; a callback cannot run beside this task");
            return Ok(());
        }
        CALLBACK_STARTED.store(false, Ordering::Release);
        CALLBACK_FINISHED.store(false, Ordering::Release);
        let timer = Timer::new(|| {
            CALLBACK_STARTED.store(true, Ordering::Release);
            let started = since_boot_nanoseconds();
            while since_boot_nanoseconds() - started < 20_000_000 {
                core::hint::spin_loop();
            }
            CALLBACK_FINISHED.store(true, Ordering::Release);
        });
        *SYNC_TIMER.lock() = Some(timer.clone());
        // Armed on CPU 1, so its callback runs there while this task watches from here.
        let cpu = crate::irq::call_function_single(1, arm_sync_timer_here, 0);
        kassert_eq!(cpu, Ok(1));
        let started = since_boot_nanoseconds();
        while !CALLBACK_STARTED.load(Ordering::Acquire) && since_boot_nanoseconds() - started < 50 * TICK_NANOSECONDS {
            platform.cpu().relax();
        }
        kassert!(CALLBACK_STARTED.load(Ordering::Acquire), "the timer on CPU 1 never ran");
        timer.delete_sync();
        kassert!(CALLBACK_FINISHED.load(Ordering::Acquire), "delete_sync returned while the callback was running");
        *SYNC_TIMER.lock() = None;
        Ok(())
    }
);

ktest!(
    fn hrtimers_fire_in_order_not_early() {
        if !has_tick() {
            log::info!("time: no tick on this board; nothing to test");
            return Ok(());
        }
        let fired: Arc<IrqSpinLock<Vec<(usize, u64, u64)>>> = Arc::new(IrqSpinLock::new(Vec::new()));
        let now = since_boot_nanoseconds();
        let deadlines = [now + 3_000_000, now + 1_000_000, now + 2_500_000, now + 1_500_000];
        let timers: Vec<Arc<HrTimer>> = deadlines
            .iter()
            .enumerate()
            .map(|(index, &deadline)| {
                let fired = fired.clone();
                HrTimer::new(move || fired.lock().push((index, deadline, since_boot_nanoseconds())))
            })
            .collect();
        {
            let platform = crate::platform();
            let saved = platform.cpu().disable_interrupts();
            for (timer, &deadline) in timers.iter().zip(&deadlines) {
                timer.start(deadline);
            }
            platform.cpu().restore_interrupts(saved);
        }
        let cancelled_ran = Arc::new(AtomicBool::new(false));
        let cancelled = {
            let cancelled_ran = cancelled_ran.clone();
            HrTimer::new(move || cancelled_ran.store(true, Ordering::Release))
        };
        {
            // Masked, so this CPU's interrupt cannot run the timer between start and cancel
            // however long the host stalls this vCPU.
            let platform = crate::platform();
            let saved = platform.cpu().disable_interrupts();
            cancelled.start(now + 2_000_000);
            let removed = cancelled.cancel();
            platform.cpu().restore_interrupts(saved);
            kassert!(removed, "cancel did not find the pending hrtimer");
        }
        let all = wait_until(20 * TICK_NANOSECONDS, || fired.lock().len() == deadlines.len());
        let fired = fired.lock().clone();
        kassert!(all, "only {} of {} hrtimers ran", fired.len(), deadlines.len());
        let order: Vec<usize> = fired.iter().map(|&(index, _, _)| index).collect();
        kassert_eq!(order, [1, 3, 2, 0]);
        kassert!(!cancelled_ran.load(Ordering::Acquire), "a cancelled hrtimer ran");
        for &(index, deadline, ran_at) in &fired {
            kassert!(ran_at >= deadline, "hrtimer {} ran {} ns early", index, deadline - ran_at);
            kassert!(
                ran_at - deadline <= HRTIMER_TOLERANCE_NANOSECONDS,
                "hrtimer {} ran {} ns late (tolerance {} ns)",
                index,
                ran_at - deadline,
                HRTIMER_TOLERANCE_NANOSECONDS
            );
        }
        Ok(())
    }
);

ktest!(
    fn hrtimer_sleeps_are_precise() {
        if !has_tick() {
            log::info!("time: no tick on this board; nothing to test");
            return Ok(());
        }
        let interrupts_between_ticks = || (0..crate::sched::MAX_SCHED_CPUS).map(super::hrtimer::interrupts_between_ticks).sum::<u64>();
        let mut latenesses = Vec::new();
        for round in 0..9u64 {
            let duration = 1_000_000 + (round % 3) * 1_000_000;
            let before_interrupts = interrupts_between_ticks();
            let start = since_boot_nanoseconds();
            sched::sleep(Duration::from_nanos(duration));
            let slept = since_boot_nanoseconds() - start;
            kassert!(slept >= duration, "a {} ns sleep ended after {} ns", duration, slept);
            kassert!(
                slept - duration <= HRTIMER_TOLERANCE_NANOSECONDS,
                "a {} ns sleep ended {} ns late (tolerance {} ns)",
                duration,
                slept - duration,
                HRTIMER_TOLERANCE_NANOSECONDS
            );
            latenesses.push((slept - duration, interrupts_between_ticks() > before_interrupts));
        }
        // The sleeps are woken by the hrtimer interrupt, not by the tick: most end on an
        // interrupt between ticks, and the promptest well within half a tick.
        let between_ticks = latenesses.iter().filter(|&&(_, between)| between).count();
        let mut values: Vec<u64> = latenesses.iter().map(|&(lateness, _)| lateness).collect();
        let median = crate::tick::median(&mut values);
        log::info!(
            "time: hrtimer sleeps of 1-3 ms: lateness best {} ns, median {} ns, worst {} ns; {} of {} woken between ticks",
            values[0],
            median,
            values[values.len() - 1],
            between_ticks,
            values.len()
        );
        kassert!(values[0] <= TICK_NANOSECONDS / 2, "every sleep ended at least {} ns late", values[0]);
        kassert!(between_ticks > 0, "no sleep was woken by an interrupt between ticks (tick-rounded sleeping)");
        Ok(())
    }
);

/// The sum over CPUs of the `name` line of `/proc/softirqs`.
pub(crate) fn proc_softirq_total(name: &str) -> Option<u64> {
    let mut text = alloc::string::String::new();
    crate::fs::procfs::read("/proc/softirqs", &mut text).ok()?;
    let line = text.lines().find(|line| line.trim_start().starts_with(name) && line.trim_start()[name.len()..].starts_with(':'))?;
    let (_, counts) = line.split_once(':')?;
    counts.split_whitespace().map(|count| count.parse::<u64>().ok()).sum()
}

ktest!(
    fn proc_timer_list_and_timer_softirq_counts() {
        if !has_tick() {
            log::info!("time: no tick on this board; nothing to test");
            return Ok(());
        }
        let before = proc_softirq_total("TIMER");
        kassert!(before.is_some(), "/proc/softirqs has no TIMER line");
        let ran = Arc::new(AtomicBool::new(false));
        let timer = {
            let ran = ran.clone();
            Timer::new(move || ran.store(true, Ordering::Release))
        };
        timer.add(jiffies() + 1);
        kassert!(wait_until(30 * TICK_NANOSECONDS, || ran.load(Ordering::Acquire)), "the timer never ran");
        let after = proc_softirq_total("TIMER");
        kassert!(after > before, "TIMER softirq count went from {:?} to {:?} across a timer", before, after);
        let mut text = alloc::string::String::new();
        kassert!(crate::fs::procfs::read("/proc/timer_list", &mut text).is_ok());
        let cpus = crate::platform().cpu().online_count() as usize;
        kassert!(text.lines().any(|line| line.starts_with("jiffies: ")), "no jiffies line in {:?}", text);
        kassert_eq!(text.lines().filter(|line| line.starts_with(" hrtimer base:")).count(), cpus);
        kassert_eq!(text.lines().filter(|line| line.starts_with(" timer base:")).count(), cpus);
        Ok(())
    }
);

ktest!(
    fn soft_hrtimers_run_from_the_hrtimer_softirq() {
        if !has_tick() {
            log::info!("time: no tick on this board; nothing to test");
            return Ok(());
        }
        let before = proc_softirq_total("HRTIMER");
        // (ran at, in softirq context, not in a hard interrupt)
        let observed: Arc<IrqSpinLock<Option<(u64, bool, bool)>>> = Arc::new(IrqSpinLock::new(None));
        let timer = {
            let observed = observed.clone();
            HrTimer::new_soft(move || {
                *observed.lock() = Some((since_boot_nanoseconds(), crate::softirq::in_interrupt(), !crate::softirq::in_hardirq()));
            })
        };
        let deadline = since_boot_nanoseconds() + 1_500_000;
        timer.start(deadline);
        let cancelled = HrTimer::new_soft(|| {});
        // A deadline far enough out that a stalled host (or a preemption here) cannot let
        // it expire before the cancel: the cancel must find it pending.
        cancelled.start(since_boot_nanoseconds() + 1_000_000_000);
        kassert!(cancelled.cancel(), "cancelling a pending soft hrtimer failed");
        kassert!(wait_until(20 * TICK_NANOSECONDS, || observed.lock().is_some()), "the soft hrtimer never ran");
        let (ran_at, in_softirq, not_hardirq) = observed.lock().unwrap_or_default();
        kassert!(ran_at >= deadline, "a soft hrtimer ran {} ns early", deadline - ran_at);
        kassert!(
            ran_at - deadline <= HRTIMER_TOLERANCE_NANOSECONDS,
            "a soft hrtimer ran {} ns late (tolerance {} ns)",
            ran_at - deadline,
            HRTIMER_TOLERANCE_NANOSECONDS
        );
        kassert!(in_softirq && not_hardirq, "the soft hrtimer did not run in softirq context");
        kassert_eq!(cancelled.runs(), 0);
        let after = proc_softirq_total("HRTIMER");
        kassert!(after > before, "HRTIMER softirq count went from {:?} to {:?}", before, after);
        Ok(())
    }
);
