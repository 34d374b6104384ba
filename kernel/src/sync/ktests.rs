//! In-kernel tests of the sleeping primitives between kernel threads: mutex and semaphore exclusion, semaphore capacity, completions, and priority inheritance.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::{Completion, Mutex, Semaphore};
use crate::sched::{self, Builder, Policy, SchedParams};
use crate::{kassert, kassert_eq, ktest};

const THREADS: usize = 4;
const ROUNDS: usize = 100;

/// Spawns `THREADS` threads running `body(index)` and joins them. They share one CPU (the
/// caller's), where a yield inside a critical section always hands over to another of them;
/// the all-CPU variants of these tests are in `sched::smp_ktests`.
fn run_threads(body: impl Fn(usize) + Send + Sync + 'static) {
    let body = Arc::new(body);
    // The caller too, so it creates them all before any runs, as on one CPU.
    let caller = sched::current().expect("ktests run in a thread");
    let saved_affinity = caller.affinity();
    let _ = sched::set_affinity(&caller, sched::CpuMask::only(sched::this_cpu()));
    let cpu = sched::CpuMask::only(sched::this_cpu());
    let handles: Vec<_> = (0..THREADS)
        .map(|index| {
            let body = body.clone();
            Builder::new("ktest-sync")
                .affinity(cpu)
                .spawn(move || {
                    body(index);
                    0
                })
                .expect("spawn")
        })
        .collect();
    for handle in handles {
        handle.join();
    }
    let _ = sched::set_affinity(&caller, saved_affinity);
}

ktest!(
    fn mutex_counter_is_exact_under_contention() {
        let counter = Arc::new(Mutex::new(0usize));
        let shared = counter.clone();
        run_threads(move |_| {
            for _ in 0..ROUNDS {
                let mut guard = shared.lock();
                let seen = *guard;
                // Give the CPU away inside the critical section: the others must block.
                sched::yield_now();
                *guard = seen + 1;
            }
        });
        kassert_eq!(*counter.lock(), THREADS * ROUNDS);
        kassert!(!counter.is_locked());
        Ok(())
    }
);

ktest!(
    fn semaphore_counter_is_exact_and_capacity_holds() {
        let lock = Arc::new(Semaphore::new(1));
        let counter = Arc::new(AtomicUsize::new(0));
        let (shared_lock, shared_counter) = (lock.clone(), counter.clone());
        run_threads(move |_| {
            for _ in 0..ROUNDS {
                shared_lock.down();
                let seen = shared_counter.load(Ordering::Relaxed);
                sched::yield_now();
                shared_counter.store(seen + 1, Ordering::Relaxed);
                shared_lock.up();
            }
        });
        kassert_eq!(counter.load(Ordering::Relaxed), THREADS * ROUNDS);
        kassert_eq!(lock.count(), 1);

        let slots = Arc::new(Semaphore::new(2));
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (shared_slots, shared_inside, shared_most) = (slots.clone(), inside.clone(), most.clone());
        run_threads(move |_| {
            for _ in 0..20 {
                shared_slots.down();
                let now = shared_inside.fetch_add(1, Ordering::AcqRel) + 1;
                shared_most.fetch_max(now, Ordering::AcqRel);
                sched::yield_now();
                shared_inside.fetch_sub(1, Ordering::AcqRel);
                shared_slots.up();
            }
        });
        kassert_eq!(most.load(Ordering::Acquire), 2);
        kassert_eq!(slots.count(), 2);
        Ok(())
    }
);

ktest!(
    fn completion_releases_a_waiting_thread() {
        let completion = Arc::new(Completion::new());
        let passed = Arc::new(AtomicBool::new(false));
        let handle = {
            let (completion, passed) = (completion.clone(), passed.clone());
            sched::spawn("ktest-complete", move || {
                completion.wait_for_completion();
                passed.store(true, Ordering::Release);
                7
            })
            .expect("spawn")
        };
        for _ in 0..10 {
            sched::yield_now();
        }
        kassert!(!passed.load(Ordering::Acquire), "the waiter went through before complete()");
        completion.complete();
        kassert_eq!(handle.join(), 7);
        kassert!(passed.load(Ordering::Acquire));
        Ok(())
    }
);

ktest!(
    fn priority_inheritance_bounds_an_inversion() {
        // Low (FIFO 10) holds the mutex; high (FIFO 30) blocks on it; medium (FIFO 20) spins
        // until high got the mutex or a hang guard expires. Without inheritance, medium
        // starves low and spins to the guard; with it, low runs boosted, unlocks, high goes.
        let mutex = Arc::new(Mutex::new(()));
        let locked = Arc::new(AtomicBool::new(false));
        let go = Arc::new(super::WaitQueue::new());
        let go_flag = Arc::new(AtomicBool::new(false));
        let high_done = Arc::new(AtomicBool::new(false));
        let creator = sched::current().expect("thread");
        let saved = creator.params();
        sched::set_params(&creator, SchedParams::real_time(Policy::Fifo, 50)).expect("valid");
        let fifo = |priority| Builder::new("ktest-pi").params(SchedParams::real_time(Policy::Fifo, priority));
        let low = {
            let (mutex, locked, go, go_flag) = (mutex.clone(), locked.clone(), go.clone(), go_flag.clone());
            fifo(10).spawn(move || {
                let guard = mutex.lock();
                locked.store(true, Ordering::Release);
                go.wait_event(|| go_flag.load(Ordering::Acquire));
                drop(guard);
                0
            })
        }
        .expect("spawn");
        while !locked.load(Ordering::Acquire) {
            sched::sleep(core::time::Duration::from_millis(1));
        }
        let high = {
            let (mutex, high_done) = (mutex.clone(), high_done.clone());
            fifo(30).spawn(move || {
                let guard = mutex.lock();
                high_done.store(true, Ordering::Release);
                drop(guard);
                0
            })
        }
        .expect("spawn");
        let medium = {
            let high_done = high_done.clone();
            fifo(20).spawn(move || {
                let deadline = crate::time::since_boot_nanoseconds() + 2_000_000_000;
                while !high_done.load(Ordering::Acquire) && crate::time::since_boot_nanoseconds() < deadline {
                    core::hint::spin_loop();
                }
                usize::from(high_done.load(Ordering::Acquire))
            })
        }
        .expect("spawn");
        go_flag.store(true, Ordering::Release);
        go.wake_up();
        let medium_saw_high_done = medium.join();
        high.join();
        low.join();
        sched::set_params(&creator, saved).expect("valid");
        kassert_eq!(medium_saw_high_done, 1);
        kassert!(!mutex.is_locked());
        Ok(())
    }
);

/// One round of the reader-writer workload: even-numbered threads write both halves of
/// the pair (with a compiler barrier between), odd ones read and count a torn pair.
pub(crate) fn rwlock_round(lock: &super::RwLock<(usize, usize)>, torn: &AtomicUsize, index: usize) {
    if index % 2 == 0 {
        let mut guard = lock.write();
        guard.0 += 1;
        core::hint::black_box(&mut *guard);
        guard.1 += 1;
    } else {
        let guard = lock.read();
        if guard.0 != guard.1 {
            torn.fetch_add(1, Ordering::Relaxed);
        }
    }
}

ktest!(
    fn rwlock_readers_never_see_half_writes_and_counts_are_exact() {
        let lock = Arc::new(super::RwLock::new((0usize, 0usize)));
        let torn = Arc::new(AtomicUsize::new(0));
        let (shared, shared_torn) = (lock.clone(), torn.clone());
        run_threads(move |index| {
            for round in 0..ROUNDS {
                rwlock_round(&shared, &shared_torn, index);
                if round % 10 == 0 {
                    sched::yield_now();
                }
            }
        });
        kassert_eq!(*lock.read(), (2 * ROUNDS, 2 * ROUNDS));
        kassert_eq!(torn.load(Ordering::Relaxed), 0);
        Ok(())
    }
);

ktest!(
    fn rw_semaphore_readers_share_and_writers_exclude() {
        let semaphore = Arc::new(super::RwSemaphore::new(0usize));
        let inside = Arc::new(AtomicUsize::new(0));
        let most_readers = Arc::new(AtomicUsize::new(0));
        let writer_saw_readers = Arc::new(AtomicUsize::new(0));
        let (shared, shared_inside, shared_most, shared_saw) =
            (semaphore.clone(), inside.clone(), most_readers.clone(), writer_saw_readers.clone());
        run_threads(move |index| {
            for _ in 0..20 {
                if index == 0 {
                    let mut guard = shared.write();
                    shared_saw.fetch_add(shared_inside.load(Ordering::Acquire), Ordering::Relaxed);
                    sched::yield_now();
                    *guard += 1;
                    shared_saw.fetch_add(shared_inside.load(Ordering::Acquire), Ordering::Relaxed);
                } else {
                    let guard = shared.read();
                    let now = shared_inside.fetch_add(1, Ordering::AcqRel) + 1;
                    shared_most.fetch_max(now, Ordering::AcqRel);
                    sched::yield_now();
                    core::hint::black_box(*guard);
                    shared_inside.fetch_sub(1, Ordering::AcqRel);
                }
                sched::yield_now();
            }
        });
        kassert_eq!(*semaphore.read(), 20);
        kassert_eq!(writer_saw_readers.load(Ordering::Relaxed), 0);
        kassert!(most_readers.load(Ordering::Acquire) >= 2, "readers never held the semaphore together");
        Ok(())
    }
);

ktest!(
    fn seqcount_readers_retry_across_writers() {
        let count = Arc::new(super::SeqCount::new());
        let values = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
        let stop = Arc::new(AtomicBool::new(false));
        // Reader and writer share one CPU: the reader's yield between its two loads is what
        // lets a write overlap the read.
        let reader = sched::current().expect("thread");
        let saved_affinity = reader.affinity();
        sched::set_affinity(&reader, sched::CpuMask::only(sched::this_cpu())).expect("the CPU it runs on");
        let writer = {
            let (count, values, stop) = (count.clone(), values.clone(), stop.clone());
            Builder::new("ktest-seqwriter")
                .affinity(sched::CpuMask::only(sched::this_cpu()))
                .spawn(move || {
                    let mut writes = 0;
                    while !stop.load(Ordering::Acquire) {
                        count.write_begin();
                        values.0.fetch_add(1, Ordering::Relaxed);
                        values.1.fetch_add(1, Ordering::Relaxed);
                        count.write_end();
                        writes += 1;
                        sched::yield_now();
                    }
                    writes
                })
                .expect("spawn")
        };
        let (mut retries, mut inconsistent_accepted) = (0, 0);
        for _ in 0..50 {
            loop {
                let start = count.read_begin();
                let first = values.0.load(Ordering::Relaxed);
                sched::yield_now();
                let second = values.1.load(Ordering::Relaxed);
                if count.read_retry(start) {
                    retries += 1;
                    if retries >= 5 {
                        // Enough overlaps seen: let the writer finish so a read can succeed.
                        stop.store(true, Ordering::Release);
                    }
                    continue;
                }
                if first != second {
                    inconsistent_accepted += 1;
                }
                break;
            }
            if retries >= 5 {
                break;
            }
        }
        stop.store(true, Ordering::Release);
        let writes = writer.join();
        sched::set_affinity(&reader, saved_affinity).expect("the saved mask");
        kassert!(writes > 0);
        kassert!(retries >= 1, "no read overlapped a write ({} writes)", writes);
        kassert_eq!(inconsistent_accepted, 0);
        Ok(())
    }
);

ktest!(
    fn condition_variable_hands_over_every_item() {
        let queue = Arc::new((Mutex::new(alloc::collections::VecDeque::new()), super::CondVar::new()));
        let consumer = {
            let queue = queue.clone();
            sched::spawn("ktest-consumer", move || {
                let (mutex, condvar) = (&queue.0, &queue.1);
                let mut sum = 0;
                let mut received = 0;
                while received < 100 {
                    let mut guard = condvar.wait_while(mutex, mutex.lock(), |items| items.is_empty());
                    while let Some(item) = guard.pop_front() {
                        sum += item;
                        received += 1;
                    }
                }
                sum
            })
            .expect("spawn")
        };
        for item in 1..=100usize {
            queue.0.lock().push_back(item);
            queue.1.notify_one();
            if item % 7 == 0 {
                sched::yield_now();
            }
        }
        kassert_eq!(consumer.join(), 5050);
        Ok(())
    }
);
