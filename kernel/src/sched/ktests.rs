//! In-kernel tests of kernel threads on the running scheduler: spawn and join, yield, FIFO order, wake-up preemption, sleeping, wait queues and accounting.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use core::time::Duration;

use super::{current, set_params, spawn, yield_now, Builder, Policy, SchedParams};
use crate::sync::{SpinLock, WaitQueue};
use crate::{kassert, kassert_eq, ktest};

/// Runs `body` with the calling (test) thread at real-time FIFO priority `priority`, then
/// restores its parameters.
fn as_fifo<R>(priority: u8, body: impl FnOnce() -> R) -> R {
    let task = current().expect("ktests run in a thread");
    let saved = task.params();
    set_params(&task, SchedParams::real_time(Policy::Fifo, priority)).expect("valid parameters");
    let result = body();
    set_params(&task, saved).expect("valid parameters");
    result
}

ktest!(fn threads_return_their_exit_values() {
    let handles: Vec<_> = (0..4usize).map(|index| spawn("ktest-worker", move || index * 10 + 1).expect("spawn")).collect();
    let values: Vec<usize> = handles.into_iter().map(|handle| handle.join()).collect();
    kassert_eq!(values, [1, 11, 21, 31]);
    Ok(())
});

ktest!(fn yield_alternates_between_equal_threads() {
    let log = Arc::new(SpinLock::new(Vec::new()));
    let start = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = [1usize, 2]
        .into_iter()
        .map(|id| {
            let (log, start) = (log.clone(), start.clone());
            spawn("ktest-yield", move || {
                while !start.load(Ordering::Acquire) {
                    yield_now();
                }
                for _ in 0..5 {
                    log.lock().push(id);
                    yield_now();
                }
                0
            })
            .expect("spawn")
        })
        .collect();
    start.store(true, Ordering::Release);
    for handle in handles {
        handle.join();
    }
    let log = log.lock();
    kassert_eq!(log.len(), 10);
    kassert!(log.windows(2).all(|pair| pair[0] != pair[1]), "yield did not alternate: {:?}", &log[..]);
    Ok(())
});

ktest!(fn fifo_threads_run_in_priority_then_arrival_order() {
    let log = Arc::new(SpinLock::new(Vec::new()));
    let handles = as_fifo(50, || {
        let mut handles = Vec::new();
        for (id, priority) in [(1usize, 10u8), (2, 10), (3, 20), (4, 10)] {
            let log = log.clone();
            let handle = Builder::new("ktest-fifo")
                .params(SchedParams::real_time(Policy::Fifo, priority))
                .spawn(move || {
                    for round in 0..2 {
                        log.lock().push((id, round));
                        yield_now();
                    }
                    0
                })
                .expect("spawn");
            handles.push(handle);
        }
        kassert!(log.lock().is_empty(), "a lower-priority FIFO thread preempted its creator");
        Ok(handles)
    })?;
    for handle in handles {
        handle.join();
    }
    let expected = [(3, 0), (3, 1), (1, 0), (2, 0), (4, 0), (1, 1), (2, 1), (4, 1)];
    kassert_eq!(log.lock()[..], expected[..]);
    Ok(())
});

ktest!(fn waking_a_higher_priority_thread_preempts_the_waker() {
    let queue = Arc::new(WaitQueue::new());
    let flag = Arc::new(AtomicBool::new(false));
    let ran = Arc::new(AtomicBool::new(false));
    let handle = {
        let (queue, flag, ran) = (queue.clone(), flag.clone(), ran.clone());
        Builder::new("ktest-urgent")
            .params(SchedParams::real_time(Policy::Fifo, 40))
            .spawn(move || {
                queue.wait_event(|| flag.load(Ordering::Acquire));
                ran.store(true, Ordering::Release);
                0
            })
            .expect("spawn")
    };
    let observed = as_fifo(10, || {
        while !queue.has_waiters() {
            yield_now();
        }
        flag.store(true, Ordering::Release);
        queue.wake_up();
        ran.load(Ordering::Acquire)
    });
    handle.join();
    kassert!(observed, "the woken FIFO-40 thread had not run when wake_up returned to the FIFO-10 waker");
    Ok(())
});

ktest!(fn exclusive_wake_up_wakes_one_waiter() {
    let queue = Arc::new(WaitQueue::new());
    let tokens = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let (queue, tokens, done) = (queue.clone(), tokens.clone(), done.clone());
            spawn("ktest-waiter", move || {
                queue.wait_event_exclusive(|| tokens.fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| t.checked_sub(1)).is_ok());
                done.fetch_add(1, Ordering::AcqRel);
                0
            })
            .expect("spawn")
        })
        .collect();
    let mut guard = 0;
    while queue.waiters_count() < 3 && guard < 100_000 {
        yield_now();
        guard += 1;
    }
    kassert_eq!(queue.waiters_count(), 3);
    tokens.store(1, Ordering::Release);
    kassert_eq!(queue.wake_up(), 1);
    for _ in 0..20 {
        yield_now();
    }
    kassert_eq!(done.load(Ordering::Acquire), 1);
    kassert_eq!(queue.waiters_count(), 2);
    tokens.store(2, Ordering::Release);
    kassert_eq!(queue.wake_up_all(), 2);
    for handle in handles {
        handle.join();
    }
    kassert_eq!(done.load(Ordering::Acquire), 3);
    Ok(())
});

ktest!(fn sleep_lasts_at_least_its_duration() {
    let started = crate::time::since_boot_nanoseconds();
    super::sleep(Duration::from_millis(5));
    let elapsed = crate::time::since_boot_nanoseconds() - started;
    kassert!(elapsed >= 5_000_000, "slept only {} ns", elapsed);
    kassert!(elapsed < 5_000_000_000, "hang guard: slept {} ns", elapsed);
    Ok(())
});

ktest!(fn switches_are_counted_as_voluntary_or_not() {
    let task = current().expect("thread");
    let (voluntary, involuntary) = (task.nvcsw(), task.nivcsw());
    let other = spawn("ktest-spin", || {
        for _ in 0..3 {
            yield_now();
        }
        0
    })
    .expect("spawn");
    yield_now();
    other.join();
    kassert!(task.nivcsw() > involuntary, "yielding to a runnable thread is an involuntary switch");
    let sleeper = spawn("ktest-sleep", || {
        super::sleep(Duration::from_millis(2));
        0
    })
    .expect("spawn");
    let sleeper_task = sleeper.task().clone();
    sleeper.join();
    kassert!(task.nvcsw() > voluntary, "blocking in join is a voluntary switch");
    kassert!(sleeper_task.nvcsw() >= 1);
    kassert!(task.stack_guard_intact());
    Ok(())
});
