//! Host benchmarks of the memory subsystem against other allocators: page alloc+free, kmalloc(64), a mixed workload, and free cost against free-list length.
//!
//! Run: `cargo bench -p hinoki-kernel --bench mm`. Every allocator manages a heap block of
//! the same kind (4 MiB-aligned, from the system allocator); results are in
//! `docs/benchmarks-memory.md`.

use std::alloc::{alloc, GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use hinoki_interface::{MemoryKind, MemoryRegion, PhysicalAddress};
use hinoki_kernel::mm::{AllocFlags, BuddyAllocator, BuddyConfig, KernelAllocator, KmallocCaches, MemoryManager};

const MIB: usize = 1 << 20;
const PAGE: usize = 4096;
const PHYSICAL_BASE: u64 = 0x4000_0000;

/// A leaked, 4 MiB-aligned heap block of `bytes`.
fn arena(bytes: usize) -> *mut u8 {
    // SAFETY: non-zero size, power-of-two alignment.
    let pointer = unsafe { alloc(Layout::from_size_align(bytes, 4 * MIB).unwrap()) };
    assert!(!pointer.is_null());
    pointer
}

fn region_and_config(pointer: *mut u8, bytes: usize) -> (MemoryRegion, BuddyConfig) {
    let region = MemoryRegion { start: PhysicalAddress(PHYSICAL_BASE), size: bytes as u64, kind: MemoryKind::Usable };
    (region, BuddyConfig { direct_map_offset: (pointer as usize).wrapping_sub(PHYSICAL_BASE as usize), dma32: false })
}

fn buddy(bytes: usize) -> &'static BuddyAllocator {
    let pointer = arena(bytes);
    let (region, config) = region_and_config(pointer, bytes);
    // SAFETY: the arena is leaked, so it is ours for the rest of the process.
    Box::leak(Box::new(unsafe { BuddyAllocator::new(&[region], &[], config).unwrap() }))
}

fn manager(bytes: usize) -> &'static MemoryManager {
    let pointer = arena(bytes);
    let (region, config) = region_and_config(pointer, bytes);
    let manager: &'static MemoryManager = Box::leak(Box::new(MemoryManager::new()));
    // SAFETY: the arena is leaked and the manager never moves.
    unsafe { manager.init(&[region], &[], config).unwrap() };
    manager
}

fn talc(bytes: usize) -> talc::TalcCell<talc::source::Claim> {
    // SAFETY: the leaked arena is handed to talc alone.
    talc::TalcCell::new(unsafe { talc::source::Claim::new(arena(bytes), bytes) })
}

fn linked_list(bytes: usize) -> linked_list_allocator::LockedHeap {
    let heap = linked_list_allocator::LockedHeap::empty();
    // SAFETY: the leaked arena is handed to the heap alone.
    unsafe { heap.lock().init(arena(bytes), bytes) };
    heap
}

fn buddy_system(bytes: usize) -> buddy_system_allocator::LockedHeap<33> {
    let heap = buddy_system_allocator::LockedHeap::<33>::new();
    // SAFETY: the leaked arena is handed to the heap alone.
    unsafe { heap.lock().init(arena(bytes) as usize, bytes) };
    heap
}

/// One alloc+free through `GlobalAlloc`.
fn global_round_trip(allocator: &dyn GlobalAlloc, layout: Layout) {
    // SAFETY: a valid layout; the block is freed with it at once.
    unsafe {
        let pointer = allocator.alloc(layout);
        assert!(!pointer.is_null());
        black_box(pointer).write(1);
        allocator.dealloc(pointer, layout);
    }
}

fn configured() -> Criterion {
    Criterion::default().warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_millis(1500)).sample_size(20)
}

fn page_alloc_free(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("page_order0_alloc_free");
    let hinoki = buddy(64 * MIB);
    group.bench_function("hinoki_buddy_per_cpu", |bencher| {
        bencher.iter(|| {
            let page = hinoki.alloc_pages_on(0, 0, AllocFlags::NONE).unwrap();
            hinoki.free_pages_on(0, black_box(page), 0).unwrap();
        })
    });
    group.bench_function("hinoki_buddy_order1_zone_lists", |bencher| {
        bencher.iter(|| {
            let block = hinoki.alloc_pages_on(0, 1, AllocFlags::NONE).unwrap();
            hinoki.free_pages_on(0, black_box(block), 1).unwrap();
        })
    });
    let theirs = buddy_system(64 * MIB);
    let layout = Layout::from_size_align(PAGE, PAGE).unwrap();
    group.bench_function("buddy_system_allocator_heap", |bencher| bencher.iter(|| global_round_trip(&theirs, layout)));
    let mut frames = buddy_system_allocator::FrameAllocator::<33>::new();
    frames.add_frame(0x40000, 0x40000 + 64 * MIB / PAGE);
    group.bench_function("buddy_system_allocator_frames", |bencher| {
        bencher.iter(|| {
            let frame = frames.alloc(1).unwrap();
            frames.dealloc(black_box(frame), 1);
        })
    });
    group.finish();
}

fn kmalloc_64(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("kmalloc64_alloc_free");
    let layout = Layout::from_size_align(64, 8).unwrap();
    let memory = manager(64 * MIB);
    let buddy = memory.buddy().unwrap();
    let cache = &memory.kmalloc_caches().caches()[KmallocCaches::index_for(64, 8).unwrap()];
    group.bench_function("hinoki_slab_fast_path", |bencher| {
        bencher.iter(|| {
            let object = cache.alloc_on(buddy, 0, AllocFlags::NONE).unwrap();
            cache.free_on(buddy, 0, black_box(object)).unwrap();
        })
    });
    group.bench_function("hinoki_kmalloc", |bencher| {
        bencher.iter(|| {
            let object = memory.kmalloc(black_box(64), AllocFlags::NONE).unwrap();
            memory.kfree(black_box(object)).unwrap();
        })
    });
    let kernel_allocator = KernelAllocator::with_manager(memory);
    group.bench_function("hinoki_global_alloc", |bencher| bencher.iter(|| global_round_trip(&kernel_allocator, layout)));
    let talc = talc(64 * MIB);
    group.bench_function("talc", |bencher| bencher.iter(|| global_round_trip(&talc, layout)));
    let linked = linked_list(64 * MIB);
    group.bench_function("linked_list_allocator", |bencher| bencher.iter(|| global_round_trip(&linked, layout)));
    group.bench_function("system", |bencher| bencher.iter(|| global_round_trip(&System, layout)));
    group.finish();
}

/// A ring of 256 live blocks of pseudo-random sizes 8..4096 (a few 16 KiB): each step
/// frees the oldest and allocates a new one.
fn mixed_workload(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("mixed_sizes_ring256");
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let sizes: Vec<usize> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            if state % 64 == 0 {
                16 * 1024
            } else {
                8 + (state as usize >> 8) % 4088
            }
        })
        .collect();
    let run = |allocator: &dyn GlobalAlloc, bencher: &mut criterion::Bencher<'_>| {
        let mut ring: Vec<(*mut u8, Layout)> = Vec::with_capacity(256);
        let mut index = 0usize;
        bencher.iter(|| {
            let layout = Layout::from_size_align(sizes[index % sizes.len()], 8).unwrap();
            index += 1;
            // SAFETY: valid layouts; every block is freed once with its own layout.
            unsafe {
                if ring.len() == 256 {
                    let (pointer, old) = ring.swap_remove(index % 256);
                    allocator.dealloc(pointer, old);
                }
                let pointer = allocator.alloc(layout);
                assert!(!pointer.is_null());
                pointer.write(1);
                ring.push((pointer, layout));
            }
        });
        for (pointer, layout) in ring {
            // SAFETY: still live, freed once with its layout.
            unsafe { allocator.dealloc(pointer, layout) };
        }
    };
    let hinoki = KernelAllocator::with_manager(manager(64 * MIB));
    group.bench_function("hinoki_global_alloc", |bencher| run(&hinoki, bencher));
    let talc = talc(64 * MIB);
    group.bench_function("talc", |bencher| run(&talc, bencher));
    let linked = linked_list(64 * MIB);
    group.bench_function("linked_list_allocator", |bencher| run(&linked, bencher));
    let theirs = buddy_system(64 * MIB);
    group.bench_function("buddy_system_allocator", |bencher| run(&theirs, bencher));
    group.bench_function("system", |bencher| run(&System, bencher));
    group.finish();
}

/// Time per free of an order-1 block whose buddy is one of `free_blocks` free order-1
/// blocks (so every timed free coalesces, taking the buddy off a list that long). The
/// buddies are freed in address order, which walks from the list's tail: a list that had
/// to be searched would cost O(free_blocks) per free.
fn free_cost_against_free_blocks(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("buddy_free_with_n_free_blocks");
    group.measurement_time(Duration::from_millis(800)).sample_size(10);
    let hinoki = buddy(128 * MIB);
    for free_blocks in [16usize, 256, 4096] {
        group.bench_with_input(BenchmarkId::from_parameter(free_blocks), &free_blocks, |bencher, &free_blocks| {
            bencher.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                let mut done = 0u64;
                while done < iterations {
                    let mut blocks: Vec<PhysicalAddress> =
                        (0..2 * free_blocks + 64).map(|_| hinoki.alloc_pages_on(0, 1, AllocFlags::NONE).unwrap()).collect();
                    blocks.sort();
                    let (mut first_halves, mut second_halves, mut others) = (Vec::new(), Vec::new(), Vec::new());
                    let mut paired = std::collections::HashSet::new();
                    for &block in &blocks {
                        let buddy = PhysicalAddress(block.0 ^ (2 * PAGE as u64));
                        if block < buddy && blocks.binary_search(&buddy).is_ok() && first_halves.len() < free_blocks {
                            first_halves.push(block);
                            second_halves.push(buddy);
                            paired.insert(buddy);
                        } else if !paired.contains(&block) {
                            others.push(block);
                        }
                    }
                    for &block in &first_halves {
                        hinoki.free_pages_on(0, block, 1).unwrap();
                    }
                    let count = (second_halves.len() as u64).min(iterations - done) as usize;
                    let start = Instant::now();
                    for &block in &second_halves[..count] {
                        hinoki.free_pages_on(0, black_box(block), 1).unwrap();
                    }
                    total += start.elapsed();
                    for &block in second_halves[count..].iter().chain(&others) {
                        hinoki.free_pages_on(0, block, 1).unwrap();
                    }
                    done += count as u64;
                }
                total
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = configured();
    targets = page_alloc_free, kmalloc_64, mixed_workload, free_cost_against_free_blocks
}
criterion_main!(benches);
