//! In-kernel tests of kernel threads on the running scheduler: spawn and join, yield, FIFO order, wake-up preemption, sleeping, wait queues and accounting.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use core::time::Duration;

use super::{current, set_params, spawn, yield_now, Builder, CpuMask, Policy, SchedParams};
use crate::sync::{SpinLock, WaitQueue};
use crate::{kassert, kassert_eq, ktest};

/// Runs `body` with the calling (test) thread pinned to the CPU it runs on, passing that
/// CPU's mask for the threads the test creates: the orderings these tests check (yield
/// hand-over, FIFO order, preemption of the waker, slices, shares) hold among threads that
/// share one CPU. The thread's affinity is restored afterwards.
fn on_one_cpu<R>(body: impl FnOnce(CpuMask) -> R) -> R {
    let task = current().expect("ktests run in a thread");
    let saved = task.affinity();
    super::set_affinity(&task, CpuMask::only(super::this_cpu())).expect("the CPU it runs on is allowed");
    // The calling thread may have moved before the mask took effect; it is pinned now.
    let result = body(CpuMask::only(super::this_cpu()));
    super::set_affinity(&task, saved).expect("the saved mask was allowed");
    result
}

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

ktest!(
    fn threads_return_their_exit_values() {
        let handles: Vec<_> = (0..4usize).map(|index| spawn("ktest-worker", move || index * 10 + 1).expect("spawn")).collect();
        let values: Vec<usize> = handles.into_iter().map(|handle| handle.join()).collect();
        kassert_eq!(values, [1, 11, 21, 31]);
        Ok(())
    }
);

ktest!(
    fn yield_alternates_between_equal_threads() {
        on_one_cpu(|cpu| {
            // Two FIFO threads of one priority: the tick never preempts them, so each yield hands
            // the CPU to the other (the fair class's yield is covered by the host tests).
            let log = Arc::new(SpinLock::new(Vec::new()));
            let handles: Vec<_> = as_fifo(50, || {
                [1usize, 2]
                    .into_iter()
                    .map(|id| {
                        let log = log.clone();
                        Builder::new("ktest-yield")
                            .affinity(cpu)
                            .params(SchedParams::real_time(Policy::Fifo, 10))
                            .spawn(move || {
                                for _ in 0..5 {
                                    log.lock().push(id);
                                    yield_now();
                                }
                                0
                            })
                            .expect("spawn")
                    })
                    .collect()
            });
            for handle in handles {
                handle.join();
            }
            let log = log.lock();
            kassert_eq!(log[..], [1, 2, 1, 2, 1, 2, 1, 2, 1, 2]);
            Ok(())
        })
    }
);

ktest!(
    fn fifo_threads_run_in_priority_then_arrival_order() {
        on_one_cpu(|cpu| {
            let log = Arc::new(SpinLock::new(Vec::new()));
            let handles = as_fifo(50, || {
                let mut handles = Vec::new();
                for (id, priority) in [(1usize, 10u8), (2, 10), (3, 20), (4, 10)] {
                    let log = log.clone();
                    let handle = Builder::new("ktest-fifo")
                        .affinity(cpu)
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
        })
    }
);

ktest!(
    fn waking_a_higher_priority_thread_preempts_the_waker() {
        on_one_cpu(|cpu| {
            let queue = Arc::new(WaitQueue::new());
            let flag = Arc::new(AtomicBool::new(false));
            let ran = Arc::new(AtomicBool::new(false));
            let handle = {
                let (queue, flag, ran) = (queue.clone(), flag.clone(), ran.clone());
                Builder::new("ktest-urgent")
                    .affinity(cpu)
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
        })
    }
);

ktest!(
    fn exclusive_wake_up_wakes_one_waiter() {
        on_one_cpu(|cpu| {
            let queue = Arc::new(WaitQueue::new());
            let tokens = Arc::new(AtomicUsize::new(0));
            let done = Arc::new(AtomicUsize::new(0));
            let handles: Vec<_> = (0..3)
                .map(|_| {
                    let (queue, tokens, done) = (queue.clone(), tokens.clone(), done.clone());
                    Builder::new("ktest-waiter")
                        .affinity(cpu)
                        .spawn(move || {
                            queue.wait_event_exclusive(|| {
                                tokens.fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| t.checked_sub(1)).is_ok()
                            });
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
        })
    }
);

ktest!(
    fn sleep_lasts_at_least_its_duration() {
        let started = crate::time::since_boot_nanoseconds();
        super::sleep(Duration::from_millis(5));
        let elapsed = crate::time::since_boot_nanoseconds() - started;
        kassert!(elapsed >= 5_000_000, "slept only {} ns", elapsed);
        kassert!(elapsed < 5_000_000_000, "hang guard: slept {} ns", elapsed);
        Ok(())
    }
);

ktest!(
    fn switches_are_counted_as_voluntary_or_not() {
        on_one_cpu(|cpu| {
            let task = current().expect("thread");
            let (voluntary, involuntary) = (task.nvcsw(), task.nivcsw());
            let other = Builder::new("ktest-spin")
                .affinity(cpu)
                .spawn(|| {
                    for _ in 0..3 {
                        yield_now();
                    }
                    0
                })
                .expect("spawn");
            yield_now();
            other.join();
            kassert!(task.nivcsw() > involuntary, "yielding to a runnable thread is an involuntary switch");
            // The sleeper blocks on a semaphore that is only raised once it sleeps: a timed
            // sleep could find its deadline passed on a stalled host and never block.
            let gate = Arc::new(crate::sync::Semaphore::new(0));
            let gate_for_sleeper = gate.clone();
            let sleeper = Builder::new("ktest-sleep")
                .affinity(cpu)
                .spawn(move || {
                    gate_for_sleeper.down();
                    0
                })
                .expect("spawn");
            let sleeper_task = sleeper.task().clone();
            while !sleeper_task.state().is_sleeping() {
                super::sleep(Duration::from_millis(1));
            }
            gate.up();
            sleeper.join();
            kassert!(task.nvcsw() > voluntary, "blocking (in sleep, in join) is a voluntary switch");
            kassert!(sleeper_task.nvcsw() >= 1);
            kassert!(task.stack_guard_intact());
            Ok(())
        })
    }
);

/// Whether the periodic tick runs on this board (the preemption tests need it).
fn tick_running() -> bool {
    let running =
        crate::try_platform().is_some_and(|platform| platform.clock_event().is_some() && platform.interrupt_controller().is_some());
    if !running {
        log::info!("sched: no periodic tick on this board; preemption by the tick is not exercised");
    }
    running
}

/// Busy-waits until the clock reaches `deadline` or `stop` is set, never yielding.
fn spin_until(deadline: u64, stop: &AtomicBool) {
    while crate::time::since_boot_nanoseconds() < deadline && !stop.load(Ordering::Acquire) {
        core::hint::spin_loop();
    }
}

ktest!(
    fn higher_priority_wakeup_from_the_tick_preempts_within_a_tick() {
        on_one_cpu(|cpu| {
            if !tick_running() {
                return Ok(());
            }
            use core::sync::atomic::AtomicU64;
            // Both are created while this thread outranks them: the sleeper (FIFO 30) goes to
            // sleep first, then the spinner (FIFO 10) spins without ever yielding; only the tick's
            // wake-up and the preemption at interrupt exit can run the sleeper before the spinner
            // ends. "Within a tick" is counted in tick interrupts, not wall time: the spinner notes
            // the tick count when it first sees the deadline passed, the sleeper the count when it
            // runs; at most one tick may separate them.
            let stop = Arc::new(AtomicBool::new(false));
            let deadline = Arc::new(AtomicU64::new(u64::MAX));
            let seen_at_tick = Arc::new(AtomicU64::new(u64::MAX));
            let woke_at_tick = Arc::new(AtomicU64::new(0));
            let (spinner, sleeper) = as_fifo(50, || {
                let spinner = {
                    let (stop, deadline, seen_at_tick) = (stop.clone(), deadline.clone(), seen_at_tick.clone());
                    Builder::new("ktest-spinner")
                        .affinity(cpu)
                        .params(SchedParams::real_time(Policy::Fifo, 10))
                        .spawn(move || {
                            let guard = crate::time::since_boot_nanoseconds() + 2_000_000_000;
                            while !stop.load(Ordering::Acquire) && crate::time::since_boot_nanoseconds() < guard {
                                if seen_at_tick.load(Ordering::Relaxed) == u64::MAX
                                    && crate::time::since_boot_nanoseconds() >= deadline.load(Ordering::Acquire)
                                {
                                    seen_at_tick.store(crate::tick::statistics().ticks, Ordering::Release);
                                }
                                core::hint::spin_loop();
                            }
                            usize::from(stop.load(Ordering::Acquire))
                        })
                        .expect("spawn")
                };
                let sleeper = {
                    let (stop, deadline, woke_at_tick) = (stop.clone(), deadline.clone(), woke_at_tick.clone());
                    Builder::new("ktest-sleeper")
                        .affinity(cpu)
                        .params(SchedParams::real_time(Policy::Fifo, 30))
                        .spawn(move || {
                            let wake = crate::time::since_boot_nanoseconds() + 3 * crate::tick::TICK_NANOSECONDS;
                            deadline.store(wake, Ordering::Release);
                            super::sleep_until(wake);
                            woke_at_tick.store(crate::tick::statistics().ticks, Ordering::Release);
                            stop.store(true, Ordering::Release);
                            0
                        })
                        .expect("spawn")
                };
                (spinner, sleeper)
            });
            sleeper.join();
            let spinner_stopped_by_sleeper = spinner.join();
            kassert_eq!(spinner_stopped_by_sleeper, 1);
            let (seen, woke) = (seen_at_tick.load(Ordering::Acquire), woke_at_tick.load(Ordering::Acquire));
            kassert!(
                seen == u64::MAX || woke <= seen + 1,
                "the sleeper ran {} tick interrupts after the spinner saw its deadline pass",
                woke.saturating_sub(seen)
            );
            Ok(())
        })
    }
);

ktest!(
    fn round_robin_threads_take_turns_by_slices() {
        on_one_cpu(|cpu| {
            if !tick_running() {
                return Ok(());
            }
            let log = Arc::new(SpinLock::new(Vec::new()));
            let deadline = crate::time::since_boot_nanoseconds() + 3 * super::policy::RR_TIMESLICE_NANOSECONDS + 50_000_000;
            let handles = as_fifo(50, || {
                (1usize..=2)
                    .map(|id| {
                        let log = log.clone();
                        Builder::new("ktest-rr")
                            .affinity(cpu)
                            .params(SchedParams::real_time(Policy::RoundRobin, 10))
                            .spawn(move || {
                                while crate::time::since_boot_nanoseconds() < deadline {
                                    let mut log = log.lock();
                                    if log.last() != Some(&id) {
                                        log.push(id);
                                    }
                                }
                                0
                            })
                            .expect("spawn")
                    })
                    .collect::<Vec<_>>()
            });
            for handle in handles {
                handle.join();
            }
            let log = log.lock();
            kassert!(log.len() >= 3, "two spinning RR threads did not take turns over three slices: {:?}", &log[..]);
            kassert!(log.len() <= 8, "RR threads switched more often than their slices allow: {:?}", &log[..]);
            Ok(())
        })
    }
);

ktest!(
    fn fair_shares_follow_nice_weights() {
        on_one_cpu(|cpu| {
            if !tick_running() {
                return Ok(());
            }
            // Nice 0 against nice 5: weights 1024 and 335, an expected share of 75.3% for the
            // first. Tolerance: 10 percentage points (10 ms ticks over 600 ms).
            let deadline = crate::time::since_boot_nanoseconds() + 600_000_000;
            let handles: Vec<_> = [0i8, 5]
                .into_iter()
                .map(|nice| {
                    Builder::new("ktest-fair")
                        .affinity(cpu)
                        .params(SchedParams::normal(nice))
                        .spawn(move || {
                            let stop = AtomicBool::new(false);
                            spin_until(deadline, &stop);
                            super::core::current_runtime() as usize
                        })
                        .expect("spawn")
                })
                .collect();
            let times: Vec<usize> = handles.into_iter().map(|handle| handle.join()).collect();
            let share = times[0] as f64 / (times[0] + times[1]).max(1) as f64;
            kassert!(
                (share - 0.753).abs() < 0.1,
                "nice 0 got {:.3} of the CPU against nice 5 (expected 0.753); times {:?}",
                share,
                &times[..]
            );
            Ok(())
        })
    }
);

/// Recurses with a 1 KiB frame until the stack runs into its guard page.
#[inline(never)]
fn descend(depth: usize) -> usize {
    let mut frame = [0u8; 1024];
    frame[depth % 1024] = depth as u8;
    let frame = core::hint::black_box(&mut frame);
    if depth > 1 << 20 {
        return frame[0] as usize;
    }
    descend(depth + 1) + frame[1] as usize
}

ktest!(
    fn kernel_thread_stacks_have_an_unmapped_guard_page() {
        let mmu = crate::try_platform().is_some_and(|platform| platform.mmu().is_some());
        // The thread waits until its stack was looked at (an exited thread's stack is freed).
        let looked = Arc::new(AtomicBool::new(false));
        let handle = {
            let looked = looked.clone();
            spawn("ktest-guard", move || {
                while !looked.load(Ordering::Acquire) {
                    super::sleep(Duration::from_millis(1));
                }
                0
            })
            .expect("spawn")
        };
        let unmapped = handle.task().stack.lock().as_ref().is_some_and(super::KernelStack::guard_unmapped);
        looked.store(true, Ordering::Release);
        handle.join();
        kassert!(unmapped == mmu, "guard page unmapped: {} on a board with an MMU: {}", unmapped, mmu);
        // Stacks come back mapped: many spawn/exit rounds neither leak pages nor fault.
        let free_before = crate::mm::MEMORY.buddy().map(|buddy| buddy.free_page_count());
        for _ in 0..16 {
            spawn("ktest-guard", || 0).expect("spawn").join();
        }

        if let Some(before) = free_before {
            crate::mm::MEMORY.shrink();
            let after = crate::mm::MEMORY.buddy().map_or(0, |buddy| buddy.free_page_count());
            // Tolerance 64 pages: the last stack may still wait for its free, and splitting the
            // direct map for guard pages keeps a few page-table pages; leaked stacks would be
            // 17 x 8 = 136 pages.
            kassert!(after + 64 >= before, "17 thread stacks leaked pages: {} free before, {} after", before, after);
        }
        Ok(())
    }
);

ktest!(manual fn overflow_a_kernel_thread_stack() {
    // A kernel thread recurses until it runs into the unmapped page under its stack: the
    // fault report must name a kernel stack overflow (tests/matrix.toml, suite
    // sched.kthread-stack-overflow).
    let handle = spawn("ktest-overflow", || {
        crate::console::print_arguments(format_args!("sched: thread ktest-overflow overflowing its stack\n"));
        descend(0)
    })
    .expect("spawn");
    let result = handle.join();
    Err(crate::ktest::TestFailure::new(file!(), line!(), format_args!("the kernel thread stack overflow did not fault ({})", result)))
});

ktest!(
    fn threads_live_in_the_task_struct_cache() {
        const THREADS: usize = 8;
        let active = || super::TASK_CACHE.statistics().active_objects;
        // Tasks of earlier tests may still be waiting to be reaped: start from a count that
        // has stayed put for 50 ms (at most 2 s of settling).
        let mut before = active();
        let mut steady = 0;
        for _ in 0..200 {
            super::sleep(Duration::from_millis(10));
            let now = active();
            steady = if now == before { steady + 1 } else { 0 };
            before = now;
            if steady == 5 {
                break;
            }
        }
        let release = Arc::new(AtomicBool::new(false));
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let release = release.clone();
                spawn("ktest-slab", move || {
                    while !release.load(Ordering::Acquire) {
                        super::sleep(Duration::from_millis(1));
                    }
                    0
                })
                .expect("spawn")
            })
            .collect();
        let running = active();
        release.store(true, Ordering::Release);
        for handle in handles {
            handle.join();
        }
        kassert!(running >= before + THREADS, "task_struct objects {} -> {} with {} threads alive", before, running, THREADS);
        // Exited tasks are reaped when their CPU switches away from them: give that up to
        // two seconds (generous; it takes a few scheduler ticks).
        let mut after = active();
        for _ in 0..200 {
            if after <= before {
                break;
            }
            super::sleep(Duration::from_millis(10));
            after = active();
        }
        kassert!(after <= before, "task_struct objects {} after the threads exited, {} before", after, before);
        Ok(())
    }
);
