//! In-kernel memory benchmarks (the shell's `bench mm [CPUS]`): order-0 page and kmalloc(64) alloc+free, a mixed-size workload, per CPU alone and on several CPUs at once, and the fragmentation a random workload leaves.
//!
//! Results are `mm.NAME VALUE UNIT` lines. Under QEMU with `-icount shift=0` the clock
//! counts guest instructions, so each `ns` figure of such a run is an instruction count.
//! The concurrent runs start one FIFO thread per CPU (affinity to that CPU) behind a start
//! barrier and report the CPUs the loops really ran on (`mm.concurrent.cpus_used`), so a
//! scheduler that keeps every task on one CPU shows as such rather than as scaling.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt::{self, Write};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::{AllocFlags, PhysicalAddress, MEMORY};
use crate::sched::{self, Builder, CpuMask, Policy, SchedParams};

fn now() -> u64 {
    crate::time::since_boot_nanoseconds()
}

/// A small deterministic generator (xorshift64*), so every run does the same work.
pub struct Random(u64);

impl Random {
    /// A generator from `seed` (0 is replaced by a fixed odd constant).
    pub fn new(seed: u64) -> Self {
        Random(if seed == 0 { 0x9e37_79b9_7f4a_7c15 } else { seed })
    }

    /// The next value.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `0..bound` (`bound` > 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// The workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Allocate and free one order-0 page.
    Page,
    /// `kmalloc(64)` and `kfree`.
    Kmalloc64,
    /// A working set of 64 slots; each operation frees a random slot's object and
    /// allocates a new one there: 16..=512 bytes (70 %), 513..=4096 bytes (20 %), or pages
    /// of order 0..=2 (10 %).
    Mixed,
}

impl Workload {
    /// Every workload, in report order.
    pub const ALL: [Workload; 3] = [Workload::Page, Workload::Kmalloc64, Workload::Mixed];

    /// The name in `mm.NAME` lines.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Page => "page_order0",
            Workload::Kmalloc64 => "kmalloc64",
            Workload::Mixed => "mixed",
        }
    }
}

/// Why a benchmark stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchError {
    /// An allocation failed (out of memory, or memory management not initialized).
    OutOfMemory,
    /// A free was refused: the allocator's bookkeeping is broken.
    FreeFailed,
    /// Threads could not be started.
    NoScheduler,
}

/// One live object of the mixed workload.
#[derive(Clone, Copy)]
enum Object {
    Heap(NonNull<u8>),
    Pages(PhysicalAddress, u32),
}

fn release(object: Object) -> Result<(), BenchError> {
    match object {
        Object::Heap(pointer) => MEMORY.kfree(pointer).map_err(|_| BenchError::FreeFailed),
        Object::Pages(address, order) => MEMORY.free_pages(address, order).map_err(|_| BenchError::FreeFailed),
    }
}

fn allocate_mixed(random: &mut Random) -> Result<Object, BenchError> {
    let choice = random.below(100);
    if choice < 70 {
        let size = 16 + random.below(497) as usize;
        MEMORY.kmalloc(size, AllocFlags::NONE).map(Object::Heap).map_err(|_| BenchError::OutOfMemory)
    } else if choice < 90 {
        let size = 513 + random.below(3584) as usize;
        MEMORY.kmalloc(size, AllocFlags::NONE).map(Object::Heap).map_err(|_| BenchError::OutOfMemory)
    } else {
        let order = random.below(3) as u32;
        MEMORY.alloc_pages(order, AllocFlags::NONE).map(|address| Object::Pages(address, order)).map_err(|_| BenchError::OutOfMemory)
    }
}

/// Runs `iterations` operations of `workload` on the calling CPU; returns the elapsed
/// nanoseconds (clock units).
pub fn run(workload: Workload, iterations: u64, seed: u64) -> Result<u64, BenchError> {
    match workload {
        Workload::Page => {
            let started = now();
            for _ in 0..iterations {
                let page = MEMORY.alloc_pages(0, AllocFlags::NONE).map_err(|_| BenchError::OutOfMemory)?;
                MEMORY.free_pages(page, 0).map_err(|_| BenchError::FreeFailed)?;
            }
            Ok(now() - started)
        }
        Workload::Kmalloc64 => {
            let started = now();
            for _ in 0..iterations {
                let object = MEMORY.kmalloc(64, AllocFlags::NONE).map_err(|_| BenchError::OutOfMemory)?;
                MEMORY.kfree(object).map_err(|_| BenchError::FreeFailed)?;
            }
            Ok(now() - started)
        }
        Workload::Mixed => {
            let mut random = Random::new(seed);
            let mut slots: [Option<Object>; 64] = [None; 64];
            let started = now();
            let mut outcome = Ok(());
            for _ in 0..iterations {
                let slot = &mut slots[random.below(64) as usize];
                if let Some(object) = slot.take() {
                    outcome = release(object);
                    if outcome.is_err() {
                        break;
                    }
                }
                match allocate_mixed(&mut random) {
                    Ok(object) => *slot = Some(object),
                    Err(error) => {
                        outcome = Err(error);
                        break;
                    }
                }
            }
            let elapsed = now() - started;
            for object in slots.into_iter().flatten() {
                release(object)?;
            }
            outcome.map(|_| elapsed)
        }
    }
}

/// One loop's result in a concurrent run.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoopResult {
    /// The CPU the loop started on and the one it ended on.
    pub cpus: (usize, usize),
    /// Clock units the loop took.
    pub elapsed: u64,
}

/// Runs `workload` on `loops` threads at once, thread `n` bound to the `n`-th online CPU
/// (FIFO, behind a start barrier), `iterations` operations each.
pub fn run_concurrently(workload: Workload, loops: usize, iterations: u64) -> Result<Vec<LoopResult>, BenchError> {
    let arrived = Arc::new(AtomicUsize::new(0));
    let results: Arc<Vec<[AtomicU64; 3]>> = Arc::new((0..loops).map(|_| [const { AtomicU64::new(0) }; 3]).collect());
    let mut handles = Vec::new();
    // Loop n runs on the n-th online CPU (wrapping when there are more loops than CPUs).
    let active = sched::active_mask();
    let online: Vec<usize> = (0..sched::MAX_SCHED_CPUS).filter(|&cpu| active.contains(cpu)).collect();
    // The spawner outranks the loops until all exist, so a loop waiting at the barrier on
    // the spawner's CPU cannot starve it.
    let spawner = sched::current().ok_or(BenchError::NoScheduler)?;
    let saved = spawner.params();
    let _ = sched::set_params(&spawner, SchedParams::real_time(Policy::Fifo, 60));
    for index in 0..loops {
        let (loop_arrived, results) = (arrived.clone(), results.clone());
        let handle = Builder::new("bench-mm")
            .params(SchedParams::real_time(Policy::Fifo, 40))
            .affinity(CpuMask::only(online.get(index % online.len().max(1)).copied().unwrap_or(0)))
            .spawn(move || {
                loop_arrived.fetch_add(1, Ordering::AcqRel);
                // Wait for every loop; yielding lets loops that share a CPU get there.
                while loop_arrived.load(Ordering::Acquire) < loops {
                    sched::yield_now();
                }
                let first_cpu = sched::this_cpu();
                let outcome = run(workload, iterations, 0x1234_5678 + index as u64);
                let slot = &results[index];
                slot[0].store(first_cpu as u64, Ordering::Relaxed);
                slot[1].store(sched::this_cpu() as u64, Ordering::Relaxed);
                slot[2].store(outcome.unwrap_or(0), Ordering::Release);
                usize::from(outcome.is_err())
            })
            .map_err(|_| BenchError::NoScheduler);
        match handle {
            Ok(handle) => handles.push(handle),
            Err(error) => {
                // The loops already started wait at the barrier for ever; count them in.
                arrived.fetch_add(loops - index, Ordering::AcqRel);
                let _ = sched::set_params(&spawner, saved);
                handles.into_iter().for_each(|handle| {
                    let _ = handle.join();
                });
                return Err(error);
            }
        }
    }
    let _ = sched::set_params(&spawner, saved);
    let failures: usize = handles.into_iter().map(|handle| handle.join()).sum();
    if failures > 0 {
        return Err(BenchError::OutOfMemory);
    }
    Ok(results
        .iter()
        .map(|slot| LoopResult {
            cpus: (slot[0].load(Ordering::Relaxed) as usize, slot[1].load(Ordering::Relaxed) as usize),
            elapsed: slot[2].load(Ordering::Acquire),
        })
        .collect())
}

/// The highest order with a free block in any zone, `None` if nothing is free.
pub fn largest_free_order() -> Option<usize> {
    let buddy = MEMORY.buddy()?;
    super::ZoneType::ALL.iter().filter_map(|&zone| buddy.free_blocks(zone).iter().rposition(|&count| count > 0)).max()
}

/// Allocates blocks of random orders 0..=3 until `percent` % of the free pages are taken
/// (at most `count` blocks), frees a random half of them, and calls `report` (with the
/// other half still allocated); then frees the rest.
pub fn fragment(count: usize, percent: usize, seed: u64, report: impl FnOnce()) -> Result<(), BenchError> {
    let mut random = Random::new(seed);
    let free = MEMORY.buddy().map_or(0, |buddy| buddy.free_page_count());
    let target = free / 100 * percent.min(90);
    let mut blocks = Vec::new();
    let mut taken = 0usize;
    let mut outcome = Ok(());
    while blocks.len() < count && taken < target {
        let order = random.below(4) as u32;
        taken += 1 << order;
        match MEMORY.alloc_pages(order, AllocFlags::NONE) {
            Ok(address) => blocks.push(Some((address, order))),
            Err(_) => {
                outcome = Err(BenchError::OutOfMemory);
                break;
            }
        }
    }
    if outcome.is_ok() {
        for block in blocks.iter_mut() {
            if random.below(2) == 0 {
                if let Some((address, order)) = block.take() {
                    MEMORY.free_pages(address, order).map_err(|_| BenchError::FreeFailed)?;
                }
            }
        }
        report();
    }
    for (address, order) in blocks.into_iter().flatten() {
        MEMORY.free_pages(address, order).map_err(|_| BenchError::FreeFailed)?;
    }
    outcome
}

fn per_operation(elapsed: u64, iterations: u64) -> u64 {
    elapsed / iterations.max(1)
}

fn operations_per_second(elapsed: u64, iterations: u64) -> u64 {
    (iterations as u128 * 1_000_000_000 / u128::from(elapsed.max(1))) as u64
}

/// The shell's `bench mm [CPUS]`: every workload on the calling CPU, then on `cpus` CPUs
/// at once, then the fragmentation report.
pub fn report(cpus: usize, out: &mut dyn Write) -> Result<(), BenchError> {
    const ITERATIONS: u64 = 20_000;
    let line = |out: &mut dyn Write, arguments: fmt::Arguments<'_>| {
        let _ = out.write_fmt(arguments);
        let _ = out.write_str("\n");
    };
    for workload in Workload::ALL {
        // One untimed pass warms the per-CPU lists and slab caches.
        run(workload, ITERATIONS / 10, 1)?;
        let elapsed = run(workload, ITERATIONS, 1)?;
        line(out, format_args!("mm.single.{}.ns_per_op {} ns", workload.name(), per_operation(elapsed, ITERATIONS)));
        line(out, format_args!("mm.single.{}.ops_per_second {} ops", workload.name(), operations_per_second(elapsed, ITERATIONS)));
    }
    let mut used = 0u64;
    for workload in Workload::ALL {
        let results = run_concurrently(workload, cpus, ITERATIONS)?;
        let mut total = 0u64;
        for (index, result) in results.iter().enumerate() {
            used |= 1 << result.cpus.0 | 1 << result.cpus.1;
            total += operations_per_second(result.elapsed, ITERATIONS);
            line(
                out,
                format_args!("mm.concurrent.{}.loop{}.ns_per_op {} ns", workload.name(), index, per_operation(result.elapsed, ITERATIONS)),
            );
        }
        let slowest = results.iter().map(|result| result.elapsed).max().unwrap_or(0);
        line(out, format_args!("mm.concurrent.{}.slowest_ns_per_op {} ns", workload.name(), per_operation(slowest, ITERATIONS)));
        line(out, format_args!("mm.concurrent.{}.ops_per_second_per_loop {} ops", workload.name(), total / cpus.max(1) as u64));
        line(out, format_args!("mm.concurrent.{}.ops_per_second_total {} ops", workload.name(), total));
    }
    line(out, format_args!("mm.concurrent.loops {} count", cpus));
    line(out, format_args!("mm.concurrent.cpus_used {} count", used.count_ones()));
    line(out, format_args!("mm.fragmentation.largest_free_order_before {} order", largest_free_order().unwrap_or(0)));
    fragment(1 << 20, 75, 7, || {
        line(out, format_args!("mm.fragmentation.largest_free_order_fragmented {} order", largest_free_order().unwrap_or(0)));
        let _ = out.write_str("buddyinfo (fragmented): ");
        let _ = crate::mm::vmstat::show_buddyinfo(out);
    })?;
    line(out, format_args!("mm.fragmentation.largest_free_order_after {} order", largest_free_order().unwrap_or(0)));
    let _ = out.write_str("buddyinfo (after): ");
    let _ = crate::mm::vmstat::show_buddyinfo(out);
    Ok(())
}

crate::ktest!(
    fn benchmarks_run_and_give_memory_back() {
        // A smoke test with few iterations: no speed is asserted, only that each workload
        // runs, frees what it allocated, and the fragmentation pass leaves no block behind.
        let Some(buddy) = MEMORY.buddy() else {
            crate::kassert!(false, "no page allocator");
            return Ok(());
        };
        let free_before = buddy.free_page_count() + buddy.per_cpu_page_count();
        for workload in Workload::ALL {
            crate::kassert!(run(workload, 200, 3).is_ok(), "{:?} failed", workload);
        }
        let results = run_concurrently(Workload::Kmalloc64, 2, 100);
        crate::kassert!(results.as_ref().is_ok_and(|results| results.len() == 2), "concurrent run: {:?}", results);
        let mut reported = None;
        let fragmented = fragment(256, 50, 5, || reported = largest_free_order());
        crate::kassert!(fragmented.is_ok(), "fragmentation pass: {:?}", fragmented);
        crate::kassert!(reported.is_some(), "nothing free while fragmented");
        let free_after = buddy.free_page_count() + buddy.per_cpu_page_count();
        // Slab caches may keep a few pages they grew by; a leak of the workloads' pages
        // (hundreds) would show far beyond this margin.
        crate::kassert!(free_after + 64 >= free_before, "{} pages free before, {} after", free_before, free_after);
        Ok(())
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_is_deterministic_and_bounded() {
        let (mut first, mut second) = (Random::new(42), Random::new(42));
        let values: Vec<u64> = (0..100).map(|_| first.below(7)).collect();
        assert_eq!(values, (0..100).map(|_| second.below(7)).collect::<Vec<_>>());
        assert!(values.iter().all(|&value| value < 7));
        assert!((0..7).all(|wanted| values.contains(&wanted)), "every value in range appears in 100 draws");
        assert_ne!(Random::new(0).next(), 0);
    }

    #[test]
    fn rates_handle_zero_elapsed_time() {
        assert_eq!(per_operation(1000, 10), 100);
        assert_eq!(per_operation(1000, 0), 1000);
        assert_eq!(operations_per_second(1_000_000_000, 5), 5);
        assert_eq!(operations_per_second(0, 5), 5_000_000_000);
    }
}
