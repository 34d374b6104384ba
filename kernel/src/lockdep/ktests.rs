//! In-kernel tests of lock debugging: consistent orders and sleeping under a mutex stay silent; as manual tests (the matrix checks the report text), an inversion and sleeping under a spinlock are reported.

use crate::lockdep::{self, LockKind};
use crate::sync::{Completion, Mutex, SpinLock};
use crate::{kassert, kassert_eq, ktest};

fn enabled() -> bool {
    let enabled = lockdep::statistics().enabled;
    if !enabled {
        log::info!("lockdep: off in this build or by the command line; nothing to check");
    }
    enabled
}

ktest!(
    fn consistent_orders_are_recorded_and_not_reported() {
        if !enabled() {
            return Ok(());
        }
        let outer = SpinLock::new(0u32);
        let inner = crate::alloc::boxed::Box::new(Mutex::new(0u32));
        let before = lockdep::statistics();
        for _ in 0..3 {
            let mut first = inner.lock();
            let mut second = outer.lock();
            *first += 1;
            *second += 1;
        }
        // Taking one of them alone, or the inner one again after the outer one is gone, is
        // no new order.
        drop(outer.lock());
        kassert!(
            lockdep::order_recorded((inner.class(), LockKind::Mutex), (outer.class(), LockKind::Spin)),
            "mutex -> spinlock order not recorded"
        );
        kassert!(
            !lockdep::order_recorded((outer.class(), LockKind::Spin), (inner.class(), LockKind::Mutex)),
            "an order never taken was recorded"
        );
        let after = lockdep::statistics();
        kassert_eq!(after.circular_reports, before.circular_reports);
        Ok(())
    }
);

ktest!(
    fn sleeping_with_only_sleeping_locks_held_is_allowed() {
        if !enabled() {
            return Ok(());
        }
        let mutex = Mutex::new(());
        let done = Completion::new();
        let before = lockdep::statistics().sleep_in_atomic_reports;
        let guard = mutex.lock();
        done.complete();
        done.wait_for_completion();
        crate::sched::sleep(core::time::Duration::from_millis(1));
        drop(guard);
        kassert_eq!(lockdep::statistics().sleep_in_atomic_reports, before);
        Ok(())
    }
);

ktest!(
    manual fn deliberate_lock_inversion() {
        kassert!(enabled(), "lockdep is off; this test needs a debug build");
        let first = Mutex::new(());
        let second = Mutex::new(());
        let before = lockdep::statistics().circular_reports;
        {
            let _first = first.lock();
            let _second = second.lock();
        }
        kassert!(lockdep::statistics().circular_reports == before, "a first order was reported");
        // The inverse order: a possible deadlock with the one above (two tasks, one in each
        // order), even though this one task cannot deadlock with itself. A try-lock never
        // waits, so taking `first` with `try_lock` inside `second` is no inversion.
        {
            let _second = second.lock();
            let trylocked = first.try_lock();
            kassert!(trylocked.is_some(), "the mutex is free");
            drop(trylocked);
            kassert!(lockdep::statistics().circular_reports == before, "a try-lock was reported");
        }
        {
            let _second = second.lock();
            let _first = first.lock();
        }
        kassert!(lockdep::statistics().circular_reports == before + 1, "the inversion was not reported once");
        // The same inversion again is known and not reported twice.
        {
            let _second = second.lock();
            let _first = first.lock();
        }
        kassert!(lockdep::statistics().circular_reports == before + 1, "the inversion was reported twice");
        Ok(())
    }
);

ktest!(
    manual fn deliberate_sleep_in_atomic() {
        kassert!(enabled(), "lockdep is off; this test needs a debug build");
        let spinlock = SpinLock::new(());
        let done = Completion::new();
        done.complete();
        let before = lockdep::statistics().sleep_in_atomic_reports;
        {
            let _held = spinlock.lock();
            // Completed already, so it returns at once: the report is about what it may do.
            done.wait_for_completion();
        }
        kassert!(lockdep::statistics().sleep_in_atomic_reports == before + 1, "waiting under a spinlock was not reported");
        crate::sched::preempt_disable();
        crate::sched::sleep(core::time::Duration::ZERO);
        crate::sched::preempt_enable();
        kassert!(lockdep::statistics().sleep_in_atomic_reports == before + 2, "sleeping with preemption disabled was not reported");
        Ok(())
    }
);
