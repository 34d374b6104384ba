//! Scheduler benchmarks run in the kernel: the Thread-Metric suite and switch/wake-up latencies, printed by the shell's `bench` command as `name value unit` lines.
//!
//! Under QEMU with `-icount shift=0` the clock advances one nanosecond per guest
//! instruction, so every `ns` figure of such a run is an instruction count.

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::{Builder, Policy, SchedParams};
use crate::shell::{Arguments, CommandError, CommandResult};
use crate::sync::{Mutex, Semaphore, WaitQueue};

crate::shell_command!(BENCH, "bench", "in-kernel benchmarks: bench [latency|threadmetric] [SECONDS] | bench mm [CPUS]", bench);

fn now() -> u64 {
    crate::time::since_boot_nanoseconds()
}

fn fifo(priority: u8) -> SchedParams {
    SchedParams::real_time(Policy::Fifo, priority)
}

/// Keeps the calling thread on its CPU until dropped: the benchmarks measure one CPU's
/// switches and wake-ups, so every thread of a benchmark runs on the caller's CPU.
struct PinnedHere {
    task: Option<super::TaskRef>,
    saved: super::CpuMask,
}

fn pin_here() -> PinnedHere {
    let task = super::current();
    let saved = task.as_ref().map_or(super::CpuMask::ALL, |task| task.affinity());
    if let Some(task) = task.as_ref() {
        let _ = super::set_affinity(task, super::CpuMask::only(super::this_cpu()));
    }
    PinnedHere { task, saved }
}

impl Drop for PinnedHere {
    fn drop(&mut self) {
        if let Some(task) = self.task.as_ref() {
            let _ = super::set_affinity(task, self.saved);
        }
    }
}

/// The calling CPU's mask, for the threads a benchmark creates.
fn here() -> super::CpuMask {
    super::CpuMask::only(super::this_cpu())
}

/// Runs `body` with the calling thread at FIFO priority `priority` (so benchmark threads
/// of lower priority wait until it blocks), then restores it.
fn as_fifo<R>(priority: u8, body: impl FnOnce() -> R) -> R {
    let task = super::current().expect("benchmarks run in a thread");
    let saved = task.params();
    let _ = super::set_params(&task, fifo(priority));
    let result = body();
    let _ = super::set_params(&task, saved);
    result
}

/// Nanoseconds per context switch between two FIFO threads that yield to each other.
pub fn yield_switch(iterations: u64) -> u64 {
    let _pinned = pin_here();
    let start = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = as_fifo(60, || {
        (0..2)
            .map(|_| {
                let start = start.clone();
                Builder::new("bench-yield")
                    .affinity(here())
                    .params(fifo(50))
                    .spawn(move || {
                        let _ = start.compare_exchange(0, now(), Ordering::AcqRel, Ordering::Acquire);
                        for _ in 0..iterations {
                            super::yield_now();
                        }
                        now() as usize
                    })
                    .expect("spawn")
            })
            .collect()
    });
    let end = handles.into_iter().map(|handle| handle.join() as u64).max().unwrap_or(0);
    (end - start.load(Ordering::Acquire)) / (2 * iterations)
}

/// Nanoseconds per round trip: up/down on two semaphores between two FIFO threads.
pub fn semaphore_ping_pong(iterations: u64) -> u64 {
    let _pinned = pin_here();
    let ping = Arc::new(Semaphore::new(0));
    let pong = Arc::new(Semaphore::new(0));
    let (ping2, pong2) = (ping.clone(), pong.clone());
    let (responder, initiator) = as_fifo(60, || {
        let responder = Builder::new("bench-pong")
            .affinity(here())
            .params(fifo(50))
            .spawn(move || {
                for _ in 0..iterations {
                    ping2.down();
                    pong2.up();
                }
                0
            })
            .expect("spawn");
        let initiator = Builder::new("bench-ping")
            .affinity(here())
            .params(fifo(50))
            .spawn(move || {
                let started = now();
                for _ in 0..iterations {
                    ping.up();
                    pong.down();
                }
                (now() - started) as usize
            })
            .expect("spawn");
        (responder, initiator)
    });
    let elapsed = initiator.join() as u64;
    responder.join();
    elapsed / iterations
}

/// Nanoseconds per uncontended lock and unlock of a mutex.
pub fn mutex_uncontended(iterations: u64) -> u64 {
    let mutex = Mutex::new(0u64);
    let started = now();
    for _ in 0..iterations {
        *mutex.lock() += 1;
    }
    (now() - started) / iterations
}

static IRQ_STAMP: AtomicU64 = AtomicU64::new(0);
static SOFTIRQ_LATENCY: AtomicU64 = AtomicU64::new(0);
static WAKE_QUEUE: WaitQueue = WaitQueue::new();
static WAKE_FLAG: AtomicBool = AtomicBool::new(false);

fn stamp_and_raise(_argument: usize) -> usize {
    IRQ_STAMP.store(now(), Ordering::Release);
    crate::softirq::raise_softirq(crate::softirq::Softirq::IrqPoll);
    0
}

fn measure_softirq() {
    SOFTIRQ_LATENCY.store(now() - IRQ_STAMP.load(Ordering::Acquire), Ordering::Release);
}

fn stamp_and_wake(_argument: usize) -> usize {
    IRQ_STAMP.store(now(), Ordering::Release);
    WAKE_FLAG.store(true, Ordering::Release);
    WAKE_QUEUE.wake_up();
    0
}

fn has_interrupts() -> bool {
    crate::try_platform().and_then(|platform| platform.interrupt_controller()).is_some()
}

fn median(values: &mut [u64]) -> u64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

/// Median nanoseconds from raising a softirq in a hardware interrupt (a self IPI) to its
/// handler running at that interrupt's exit; `None` without an interrupt controller.
pub fn softirq_raise_to_run(samples: usize) -> Option<u64> {
    let _pinned = pin_here();
    if !has_interrupts() {
        return None;
    }
    crate::softirq::open_softirq(crate::softirq::Softirq::IrqPoll, measure_softirq);
    let mut values = Vec::new();
    for _ in 0..samples {
        if crate::irq::call_function_single(super::this_cpu() as u32, stamp_and_raise, 0).is_ok() {
            values.push(SOFTIRQ_LATENCY.load(Ordering::Acquire));
        }
    }
    crate::softirq::close_softirq(crate::softirq::Softirq::IrqPoll);
    Some(median(&mut values))
}

/// Median nanoseconds from a hardware interrupt handler waking a FIFO thread to that
/// thread running (preempting the interrupted one at interrupt exit).
pub fn irq_to_task_wakeup(samples: usize) -> Option<u64> {
    let _pinned = pin_here();
    if !has_interrupts() {
        return None;
    }
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let waiter = {
        let (latencies, stop) = (latencies.clone(), stop.clone());
        Builder::new("bench-wakee")
            .affinity(here())
            .params(fifo(70))
            .spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    WAKE_QUEUE.wait_event(|| WAKE_FLAG.swap(false, Ordering::AcqRel) || stop.load(Ordering::Acquire));
                    let woke = now();
                    latencies.lock().push(woke - IRQ_STAMP.load(Ordering::Acquire));
                }
                0
            })
            .expect("spawn")
    };
    for _ in 0..samples {
        while !WAKE_QUEUE.has_waiters() {
            super::yield_now();
        }
        let _ = crate::irq::call_function_single(super::this_cpu() as u32, stamp_and_wake, 0);
    }
    stop.store(true, Ordering::Release);
    WAKE_QUEUE.wake_up_all();
    waiter.join();
    let mut values = core::mem::take(&mut *latencies.lock());
    values.truncate(samples);
    Some(median(&mut values))
}

/// The Thread-Metric tests, each a count of work units over `interval` nanoseconds.
pub mod thread_metric {
    use super::*;

    /// Basic processing: a single thread's arithmetic loop (the normalizing score).
    pub fn basic_processing(interval: u64) -> u64 {
        let deadline = now() + interval;
        let mut count = 0u64;
        let mut scratch = [0u32; 16];
        while now() < deadline {
            for (index, slot) in scratch.iter_mut().enumerate() {
                *slot = slot.wrapping_add(index as u32 ^ count as u32);
            }
            core::hint::black_box(&scratch);
            count += 1;
        }
        count
    }

    /// Cooperative scheduling: five equal-priority threads, each relinquishing in turn.
    pub fn cooperative_scheduling(interval: u64) -> u64 {
        let _pinned = pin_here();
        let counter = Arc::new(AtomicU64::new(0));
        // Set once every thread exists: the threads run only after this one blocks.
        let deadline = Arc::new(AtomicU64::new(u64::MAX));
        let handles: Vec<_> = as_fifo(60, || {
            let handles = (0..5)
                .map(|_| {
                    let (counter, deadline) = (counter.clone(), deadline.clone());
                    Builder::new("tm-coop")
                        .affinity(here())
                        .params(fifo(40))
                        .spawn(move || {
                            while now() < deadline.load(Ordering::Acquire) {
                                counter.fetch_add(1, Ordering::Relaxed);
                                super::super::yield_now();
                            }
                            0
                        })
                        .expect("spawn")
                })
                .collect();
            deadline.store(now() + interval, Ordering::Release);
            handles
        });
        handles.into_iter().for_each(|handle| {
            handle.join();
        });
        counter.load(Ordering::Relaxed)
    }

    /// Preemptive scheduling: five threads of rising priority; each resumes the next
    /// higher one, which preempts it, and the highest suspends back down the chain.
    pub fn preemptive_scheduling(interval: u64) -> u64 {
        let _pinned = pin_here();
        let counter = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let gates: Arc<Vec<Semaphore>> = Arc::new((0..5).map(|_| Semaphore::new(0)).collect());
        // The measuring thread outranks the chain, so its sleep's end preempts level 0,
        // which never blocks.
        as_fifo(60, || {
            let handles: Vec<_> = (0..5usize)
                .map(|level| {
                    let (counter, stop, gates) = (counter.clone(), stop.clone(), gates.clone());
                    Builder::new("tm-preempt")
                        .affinity(here())
                        .params(fifo(10 + level as u8))
                        .spawn(move || {
                            while !stop.load(Ordering::Acquire) {
                                if level > 0 {
                                    gates[level].down();
                                }
                                counter.fetch_add(1, Ordering::Relaxed);
                                if level + 1 < 5 {
                                    gates[level + 1].up();
                                }
                            }
                            0
                        })
                        .expect("spawn")
                })
                .collect();
            super::super::sleep(core::time::Duration::from_nanos(interval));
            let result = counter.load(Ordering::Relaxed);
            stop.store(true, Ordering::Release);
            for gate in gates.iter() {
                gate.up();
            }
            handles.into_iter().for_each(|handle| {
                handle.join();
            });
            result
        })
    }

    /// Message processing: a thread sends a 4-word message through a queue to itself and
    /// receives it back.
    pub fn message_processing(interval: u64) -> u64 {
        let queue: Mutex<VecDeque<[u64; 4]>> = Mutex::new(VecDeque::with_capacity(8));
        let available = Semaphore::new(0);
        let deadline = now() + interval;
        let mut count = 0u64;
        while now() < deadline {
            queue.lock().push_back([count, 1, 2, 3]);
            available.up();
            available.down();
            let message = queue.lock().pop_front();
            core::hint::black_box(message);
            count += 1;
        }
        count
    }

    /// Synchronization processing: semaphore get and put by one thread.
    pub fn synchronization_processing(interval: u64) -> u64 {
        let semaphore = Semaphore::new(1);
        let deadline = now() + interval;
        let mut count = 0u64;
        while now() < deadline {
            semaphore.down();
            semaphore.up();
            count += 1;
        }
        count
    }

    /// Memory allocation: a 128-byte block allocated and freed.
    pub fn memory_allocation(interval: u64) -> u64 {
        let deadline = now() + interval;
        let mut count = 0u64;
        while now() < deadline {
            if let Ok(block) = crate::mm::kmalloc(128, crate::mm::AllocFlags::NONE) {
                core::hint::black_box(block);
                let _ = crate::mm::kfree(block);
            }
            count += 1;
        }
        count
    }

    fn self_interrupt(_argument: usize) -> usize {
        INTERRUPTS.fetch_add(1, Ordering::Relaxed);
        0
    }

    static INTERRUPTS: AtomicU64 = AtomicU64::new(0);

    /// Interrupt processing: a thread raises an interrupt (a self IPI) whose handler runs
    /// and returns; `None` without an interrupt controller.
    pub fn interrupt_processing(interval: u64) -> Option<u64> {
        if !has_interrupts() {
            return None;
        }
        INTERRUPTS.store(0, Ordering::Relaxed);
        let deadline = now() + interval;
        while now() < deadline {
            if crate::irq::call_function_single(super::super::this_cpu() as u32, self_interrupt, 0).is_err() {
                break;
            }
        }
        Some(INTERRUPTS.load(Ordering::Relaxed))
    }

    /// Interrupt preemption processing: the interrupt handler wakes a higher-priority
    /// thread, which preempts the interrupted thread at interrupt exit; counts the wake-ups.
    pub fn interrupt_preemption_processing(interval: u64) -> Option<u64> {
        let _pinned = pin_here();
        if !has_interrupts() {
            return None;
        }
        let count = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (count, stop) = (count.clone(), stop.clone());
            Builder::new("tm-irq-preempt")
                .affinity(here())
                .params(fifo(70))
                .spawn(move || {
                    while !stop.load(Ordering::Acquire) {
                        WAKE_QUEUE.wait_event(|| WAKE_FLAG.swap(false, Ordering::AcqRel) || stop.load(Ordering::Acquire));
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    0
                })
                .expect("spawn")
        };
        let deadline = now() + interval;
        while now() < deadline {
            let _ = crate::irq::call_function_single(super::super::this_cpu() as u32, stamp_and_wake, 0);
        }
        stop.store(true, Ordering::Release);
        WAKE_QUEUE.wake_up_all();
        waiter.join();
        Some(count.load(Ordering::Relaxed))
    }
}

fn bench(arguments: &Arguments<'_>, out: &mut dyn Write) -> CommandResult {
    const USAGE: &str = "bench [latency|threadmetric] [SECONDS] | bench mm [CPUS]";
    if arguments.get(1) == Some(&"mm") {
        return bench_memory(arguments, out);
    }
    let (which, seconds) = match arguments {
        [_] => ("all", 1),
        [_, which] => (*which, 1),
        [_, which, seconds] => (*which, seconds.parse::<u64>().map_err(|_| CommandError::Usage(USAGE))?),
        _ => return Err(CommandError::Usage(USAGE)),
    };
    if !matches!(which, "all" | "latency" | "threadmetric") {
        return Err(CommandError::Usage(USAGE));
    }
    if !super::is_running() {
        return Err(CommandError::Failed("the scheduler is not running"));
    }
    if matches!(which, "all" | "latency") {
        let _ = writeln!(out, "latency.yield_switch {} ns", yield_switch(2000));
        let _ = writeln!(out, "latency.semaphore_ping_pong {} ns", semaphore_ping_pong(2000));
        let _ = writeln!(out, "latency.mutex_uncontended {} ns", mutex_uncontended(20000));
        match irq_to_task_wakeup(200) {
            Some(value) => writeln!(out, "latency.irq_to_task_wakeup {} ns", value),
            None => writeln!(out, "latency.irq_to_task_wakeup n/a (no interrupt controller)"),
        }
        .map_err(|_| CommandError::Failed("output"))?;
        match softirq_raise_to_run(200) {
            Some(value) => writeln!(out, "latency.softirq_raise_to_run {} ns", value),
            None => writeln!(out, "latency.softirq_raise_to_run n/a (no interrupt controller)"),
        }
        .map_err(|_| CommandError::Failed("output"))?;
    }
    if matches!(which, "all" | "threadmetric") {
        use thread_metric::*;
        let interval = seconds.max(1) * 1_000_000_000;
        let basic = basic_processing(interval).max(1);
        let _ = writeln!(out, "threadmetric.basic_processing {} count", basic);
        let results: [(&str, Option<u64>); 7] = [
            ("cooperative_scheduling", Some(cooperative_scheduling(interval))),
            ("preemptive_scheduling", Some(preemptive_scheduling(interval))),
            ("interrupt_processing", interrupt_processing(interval)),
            ("interrupt_preemption_processing", interrupt_preemption_processing(interval)),
            ("message_processing", Some(message_processing(interval))),
            ("synchronization_processing", Some(synchronization_processing(interval))),
            ("memory_allocation", Some(memory_allocation(interval))),
        ];
        for (name, count) in results {
            match count {
                Some(count) => {
                    let _ = writeln!(out, "threadmetric.{} {} count", name, count);
                    let _ = writeln!(out, "threadmetric.{}.normalized {}.{:03} ratio", name, count / basic, count % basic * 1000 / basic);
                }
                None => {
                    let _ = writeln!(out, "threadmetric.{} n/a (no interrupt controller)", name);
                }
            }
        }
    }
    Ok(())
}

/// `bench mm [CPUS]`: the memory benchmarks (`mm::bench`), concurrent loops on CPUS CPUs
/// (default: every online CPU).
fn bench_memory(arguments: &Arguments<'_>, out: &mut dyn Write) -> CommandResult {
    const USAGE: &str = "bench mm [CPUS]";
    let online = crate::try_platform().map_or(1, |platform| platform.cpu().online_count() as usize).clamp(1, super::MAX_SCHED_CPUS);
    let cpus = match arguments {
        [_, _] => online,
        [_, _, cpus] => {
            cpus.parse::<usize>().ok().filter(|cpus| (1..=super::MAX_SCHED_CPUS).contains(cpus)).ok_or(CommandError::Usage(USAGE))?
        }
        _ => return Err(CommandError::Usage(USAGE)),
    };
    if !super::is_running() {
        return Err(CommandError::Failed("the scheduler is not running"));
    }
    crate::mm::bench::report(cpus, out).map_err(|error| match error {
        crate::mm::bench::BenchError::OutOfMemory => CommandError::Failed("out of memory"),
        crate::mm::bench::BenchError::FreeFailed => CommandError::Failed("the allocator refused a free"),
        crate::mm::bench::BenchError::NoScheduler => CommandError::Failed("cannot start the benchmark threads"),
    })
}

crate::ktest!(
    fn benchmarks_measure_something() {
        // A smoke test of the benchmark code paths with few iterations; no speed is asserted.
        crate::kassert!(yield_switch(10) > 0);
        crate::kassert!(semaphore_ping_pong(10) > 0);
        crate::kassert!(thread_metric::cooperative_scheduling(20_000_000) > 0);
        crate::kassert!(thread_metric::preemptive_scheduling(50_000_000) > 0);
        if let Some(latency) = irq_to_task_wakeup(5) {
            crate::kassert!(latency > 0 && latency < 1_000_000_000, "hang guard: {} ns", latency);
        }
        Ok(())
    }
);
