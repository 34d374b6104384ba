//! In-kernel tests of RCU: grace periods wait for readers that began before them and not for readers that began after this CPU's quiescent state, callbacks run after readers, `synchronize_rcu` across CPUs, the protected pointer frees after a grace period.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::time::Duration;

use super::{call_rcu, rcu_barrier, rcu_read_lock, statistics, synchronize_rcu, RcuPointer, STATE};
use crate::sched;
use crate::sync::IrqSpinLock;
use crate::tick::TICK_NANOSECONDS;
use crate::time::{since_boot_nanoseconds, Timer};
use crate::{kassert, kassert_eq, ktest};

/// How long a test waits for a grace period before failing: 50 ticks (a grace period
/// needs one tick per CPU at most when the CPUs idle).
const GRACE_PERIOD_LIMIT_NANOSECONDS: u64 = 50 * TICK_NANOSECONDS;

fn has_tick() -> bool {
    crate::try_platform().is_some_and(|platform| platform.clock_event().is_some() && platform.interrupt_controller().is_some())
        && sched::is_running()
}

/// Busy-waits (interrupts on) for `nanoseconds` or until `done()`.
fn spin_for(nanoseconds: u64, mut done: impl FnMut() -> bool) {
    let started = since_boot_nanoseconds();
    while !done() && since_boot_nanoseconds() - started < nanoseconds {
        core::hint::spin_loop();
    }
}

ktest!(
    fn callbacks_wait_for_a_reader_that_began_before_them() {
        if !has_tick() {
            log::info!("rcu: no tick on this board; nothing to test");
            return Ok(());
        }
        let softirqs_before = crate::time::ktests::proc_softirq_total("RCU");
        let ran = Arc::new(AtomicBool::new(false));
        let guard = rcu_read_lock();
        {
            let ran = ran.clone();
            call_rcu(move || ran.store(true, Ordering::Release));
        }
        // Three ticks inside the reader: other CPUs report, softirqs run, but this CPU
        // cannot pass a quiescent state, so the callback must wait.
        spin_for(3 * TICK_NANOSECONDS, || false);
        let ran_inside = ran.load(Ordering::Acquire);
        drop(guard);
        kassert!(!ran_inside, "a call_rcu callback ran while a reader that began before it was running");
        rcu_barrier();
        kassert!(ran.load(Ordering::Acquire), "rcu_barrier returned before the callback ran");
        let softirqs_after = crate::time::ktests::proc_softirq_total("RCU");
        kassert!(
            softirqs_after > softirqs_before,
            "the callback ran without an RCU softirq ({:?} -> {:?})",
            softirqs_before,
            softirqs_after
        );
        Ok(())
    }
);

ktest!(
    fn grace_periods_do_not_wait_for_later_readers() {
        if !has_tick() {
            log::info!("rcu: no tick on this board; nothing to test");
            return Ok(());
        }
        let ran = Arc::new(AtomicBool::new(false));
        let needed = {
            let ran = ran.clone();
            super::queue_callback(alloc::boxed::Box::new(move || ran.store(true, Ordering::Release)))
        };
        // Let this CPU pass a quiescent state for the grace period the callback needs (once
        // that one has started).
        let cpu = sched::this_cpu();
        let reported = || {
            let state = STATE.lock();
            state.completed() >= needed || (state.current() >= needed && state.waiting() & (1 << cpu) == 0)
        };
        let started = since_boot_nanoseconds();
        while !reported() && since_boot_nanoseconds() - started < GRACE_PERIOD_LIMIT_NANOSECONDS {
            sched::sleep(Duration::from_millis(1));
        }
        kassert!(reported(), "CPU {} never passed a quiescent state for grace period {}", cpu, needed);
        // A reader that begins now must not hold that grace period up: its callback runs
        // (from the RCU softirq) while this reader is still inside.
        let guard = rcu_read_lock();
        spin_for(GRACE_PERIOD_LIMIT_NANOSECONDS, || ran.load(Ordering::Acquire));
        let ran_inside = ran.load(Ordering::Acquire);
        drop(guard);
        kassert!(ran_inside, "a grace period waited for a reader that began after this CPU's quiescent state");
        Ok(())
    }
);

static READER_TIMER: IrqSpinLock<Option<Arc<Timer>>> = IrqSpinLock::new(None);
static READER_STARTED: AtomicBool = AtomicBool::new(false);
static READER_ENDED_AT: AtomicU64 = AtomicU64::new(0);

fn arm_reader_here(_argument: usize) -> usize {
    if let Some(timer) = READER_TIMER.lock().as_ref() {
        timer.add(crate::tick::jiffies() + 1);
    }
    sched::this_cpu()
}

ktest!(
    fn synchronize_rcu_waits_for_a_reader_on_another_cpu() {
        if !has_tick() || crate::smp::ready_count() < 2 {
            log::info!("rcu: one CPU or no tick; no reader can run beside this task");
            return Ok(());
        }
        READER_STARTED.store(false, Ordering::Release);
        READER_ENDED_AT.store(0, Ordering::Release);
        // The reader runs on CPU 1 from a timer callback: 30 ms inside rcu_read_lock.
        let timer = Timer::new(|| {
            let guard = rcu_read_lock();
            READER_STARTED.store(true, Ordering::Release);
            spin_for(3 * TICK_NANOSECONDS, || false);
            READER_ENDED_AT.store(since_boot_nanoseconds(), Ordering::Release);
            drop(guard);
        });
        *READER_TIMER.lock() = Some(timer.clone());
        kassert_eq!(crate::irq::call_function_single(1, arm_reader_here, 0), Ok(1));
        let started = since_boot_nanoseconds();
        while !READER_STARTED.load(Ordering::Acquire) && since_boot_nanoseconds() - started < GRACE_PERIOD_LIMIT_NANOSECONDS {
            core::hint::spin_loop();
        }
        kassert!(READER_STARTED.load(Ordering::Acquire), "the reader on CPU 1 never started");
        synchronize_rcu();
        let returned_at = since_boot_nanoseconds();
        let ended_at = READER_ENDED_AT.load(Ordering::Acquire);
        kassert!(ended_at != 0 && ended_at <= returned_at, "synchronize_rcu returned while a reader that began before it ran on CPU 1");
        timer.delete_sync();
        *READER_TIMER.lock() = None;
        Ok(())
    }
);

struct Tracked {
    value: u64,
    dropped: Arc<AtomicBool>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::Release);
    }
}

ktest!(
    fn rcu_pointer_frees_the_old_value_after_readers() {
        if !has_tick() {
            log::info!("rcu: no tick on this board; nothing to test");
            return Ok(());
        }
        let first_dropped = Arc::new(AtomicBool::new(false));
        let second_dropped = Arc::new(AtomicBool::new(false));
        let pointer = RcuPointer::new(Tracked { value: 1, dropped: first_dropped.clone() });
        let guard = rcu_read_lock();
        let old = pointer.dereference(&guard).map(|tracked| tracked as *const Tracked);
        kassert_eq!(pointer.dereference(&guard).map(|tracked| tracked.value), Some(1));
        drop(pointer.assign(Some(Tracked { value: 2, dropped: second_dropped.clone() })));
        kassert_eq!(pointer.dereference(&guard).map(|tracked| tracked.value), Some(2));
        spin_for(3 * TICK_NANOSECONDS, || false);
        let freed_under_reader = first_dropped.load(Ordering::Acquire);
        // SAFETY: the reader that loaded `old` is still running (guard held) and the value
        // was seen not freed just above, so the pointer is still valid.
        let old_value = if freed_under_reader { None } else { old.map(|pointer| unsafe { (*pointer).value }) };
        drop(guard);
        kassert!(!freed_under_reader, "the replaced value was freed while a reader could hold it");
        kassert_eq!(old_value, Some(1));
        rcu_barrier();
        kassert!(first_dropped.load(Ordering::Acquire), "the replaced value was never freed");
        // Synchronous retirement hands the value back after a grace period.
        let retired = pointer.assign(None).synchronize();
        kassert_eq!(retired.as_ref().map(|tracked| tracked.value), Some(2));
        drop(retired);
        kassert!(second_dropped.load(Ordering::Acquire));
        let guard = rcu_read_lock();
        kassert!(pointer.dereference(&guard).is_none());
        drop(guard);
        let statistics = statistics();
        kassert!(statistics.completed > 0 && statistics.invoked > 0);
        kassert_eq!(statistics.online.count_ones(), crate::smp::ready_count());
        Ok(())
    }
);
