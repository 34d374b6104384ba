//! kmalloc: general-purpose allocations in size classes of 8 B to 8 KiB backed by slab caches, larger ones straight from the buddy allocator.
//!
//! Power-of-two classes are naturally aligned (an object of `kmalloc-512` is 512-aligned);
//! `kmalloc-96` is 32-aligned and `kmalloc-192` 64-aligned. A request is served by the
//! smallest class that is large enough and aligned enough; anything bigger, or aligned
//! beyond its class, takes whole pages.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;

use super::buddy::{AllocError, AllocFlags, BuddyAllocator, FreeError, MAX_ORDER};
use super::page::{PageOwner, PAGE_SHIFT, PAGE_SIZE};
use super::slab::{CacheFlags, KmemCache, SlabError, SlabErrorKind};
use super::{MemoryManager, PhysicalAddress};

/// Object sizes of the kmalloc caches.
pub const KMALLOC_SIZES: [usize; 13] = [8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192];
/// Number of kmalloc caches.
pub const KMALLOC_CACHES: usize = KMALLOC_SIZES.len();
/// The largest size served from a slab cache.
pub const KMALLOC_MAX_CACHE_SIZE: usize = 8192;
/// The largest size kmalloc serves at all (one block of the highest order).
pub const KMALLOC_MAX_SIZE: usize = PAGE_SIZE << MAX_ORDER;

/// Names of the kmalloc caches, as `/proc/slabinfo` shows them.
const KMALLOC_NAMES: [&str; KMALLOC_CACHES] = [
    "kmalloc-8",
    "kmalloc-16",
    "kmalloc-32",
    "kmalloc-64",
    "kmalloc-96",
    "kmalloc-128",
    "kmalloc-192",
    "kmalloc-256",
    "kmalloc-512",
    "kmalloc-1k",
    "kmalloc-2k",
    "kmalloc-4k",
    "kmalloc-8k",
];

/// Cache index by `(size - 1) / 8` for sizes up to 192 (Linux's `size_index`).
const SMALL_INDEX: [u8; 24] = [0, 1, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 6];

/// The alignment every object of a class has: the size's lowest set bit.
#[inline]
const fn class_align(size: usize) -> usize {
    size & size.wrapping_neg()
}

/// The kmalloc caches.
pub struct KmallocCaches {
    caches: [KmemCache; KMALLOC_CACHES],
}

impl KmallocCaches {
    /// The thirteen caches, not yet registered anywhere.
    pub const fn new() -> KmallocCaches {
        const fn cache(index: usize) -> KmemCache {
            let size = KMALLOC_SIZES[index];
            KmemCache::new(KMALLOC_NAMES[index], size, class_align(size), CacheFlags::NONE, None)
        }
        KmallocCaches {
            caches: [
                cache(0),
                cache(1),
                cache(2),
                cache(3),
                cache(4),
                cache(5),
                cache(6),
                cache(7),
                cache(8),
                cache(9),
                cache(10),
                cache(11),
                cache(12),
            ],
        }
    }

    /// The caches, smallest first.
    pub fn caches(&self) -> &[KmemCache; KMALLOC_CACHES] {
        &self.caches
    }

    /// The index of the cache serving `size` bytes aligned to `align`, or `None` when the
    /// request needs whole pages.
    #[inline]
    pub fn index_for(size: usize, align: usize) -> Option<usize> {
        let wanted = size.max(align).max(1);
        let mut index = if wanted <= 192 {
            usize::from(SMALL_INDEX[(wanted - 1) / 8])
        } else if wanted <= KMALLOC_MAX_CACHE_SIZE {
            7 + (wanted.next_power_of_two().trailing_zeros() as usize - 8)
        } else {
            return None;
        };
        while class_align(KMALLOC_SIZES[index]) < align {
            index += 1;
        }
        Some(index)
    }

    /// Allocates `size` bytes aligned to `align` (a power of two) on CPU `cpu`.
    #[track_caller]
    pub fn alloc_on(
        &self,
        buddy: &BuddyAllocator,
        cpu: usize,
        size: usize,
        align: usize,
        flags: AllocFlags,
    ) -> Result<NonNull<u8>, AllocError> {
        if !align.is_power_of_two() {
            return Err(AllocError::InvalidOrder);
        }
        if flags.contains(AllocFlags::DMA32) {
            return Self::alloc_large(buddy, cpu, size.max(PAGE_SIZE), align, flags);
        }
        match Self::index_for(size, align) {
            Some(index) => {
                let cache = &self.caches[index];
                match cache.alloc_on(buddy, cpu, flags) {
                    Ok(pointer) => Ok(pointer),
                    Err(error) if error.kind == SlabErrorKind::OutOfMemory => Err(AllocError::OutOfMemory),
                    // A damaged object was reported and taken out of service; try once more.
                    Err(_) => cache.alloc_on(buddy, cpu, flags).map_err(|_| AllocError::OutOfMemory),
                }
            }
            None => Self::alloc_large(buddy, cpu, size, align, flags),
        }
    }

    fn alloc_large(buddy: &BuddyAllocator, cpu: usize, size: usize, align: usize, flags: AllocFlags) -> Result<NonNull<u8>, AllocError> {
        let bytes = size.max(align);
        if bytes > KMALLOC_MAX_SIZE {
            if !flags.contains(AllocFlags::NO_WARN) {
                log::warn!("kmalloc: {} bytes is above the largest block", bytes);
            }
            return Err(AllocError::InvalidOrder);
        }
        let pages = bytes.div_ceil(PAGE_SIZE);
        let order = pages.next_power_of_two().trailing_zeros();
        let address = buddy.alloc_pages_on(cpu, order, flags)?;
        Ok(NonNull::new(buddy.virtual_address(address) as *mut u8).expect("direct map has no page at 0"))
    }

    /// Frees memory from [`alloc_on`](Self::alloc_on) (or any slab object).
    #[track_caller]
    pub fn free_on(&self, buddy: &BuddyAllocator, cpu: usize, pointer: NonNull<u8>) -> Result<(), SlabError> {
        let address = pointer.as_ptr() as usize;
        let large_error = |kind| {
            let error = SlabError { kind, cache: "kmalloc-large", caller: core::panic::Location::caller() };
            log::error!("kfree: {}", error);
            error
        };
        if !buddy.contains_virtual(address) {
            return Err(large_error(SlabErrorKind::ForeignPointer));
        }
        let physical = buddy.physical_address(address);
        let (head_pfn, head) = buddy.head_of(physical).ok_or_else(|| large_error(SlabErrorKind::ForeignPointer))?;
        match head.owner() {
            PageOwner::Slab => {
                let cache = head.private.load(core::sync::atomic::Ordering::Relaxed) as *const KmemCache;
                // SAFETY: a slab page's `private` holds its owning cache, which outlives
                // its slabs.
                let cache = unsafe { &*cache };
                cache.free_on(buddy, cpu, pointer)
            }
            PageOwner::Kernel => {
                if PhysicalAddress(head_pfn << PAGE_SHIFT) != physical {
                    return Err(large_error(SlabErrorKind::NotObjectStart));
                }
                buddy.free_pages_on(cpu, physical, head.order()).map_err(|error| {
                    large_error(match error {
                        FreeError::NotAllocated => SlabErrorKind::DoubleFree { previous_free: None },
                        FreeError::NotManaged => SlabErrorKind::ForeignPointer,
                        FreeError::Misaligned | FreeError::OrderMismatch { .. } => SlabErrorKind::NotObjectStart,
                    })
                })
            }
            PageOwner::Free => Err(large_error(SlabErrorKind::DoubleFree { previous_free: None })),
            PageOwner::Reserved | PageOwner::User => Err(large_error(SlabErrorKind::ForeignPointer)),
        }
    }

    /// The usable size of an allocation (Linux's `ksize`), or `None` for a foreign pointer.
    pub fn usable_size(buddy: &BuddyAllocator, pointer: NonNull<u8>) -> Option<usize> {
        let address = pointer.as_ptr() as usize;
        if !buddy.contains_virtual(address) {
            return None;
        }
        let (_, head) = buddy.head_of(buddy.physical_address(address))?;
        match head.owner() {
            PageOwner::Slab => {
                // SAFETY: as in `free_on`.
                let cache = unsafe { &*(head.private.load(core::sync::atomic::Ordering::Relaxed) as *const KmemCache) };
                Some(cache.object_size())
            }
            PageOwner::Kernel => Some(PAGE_SIZE << head.order()),
            _ => None,
        }
    }
}

/// The kernel heap as a Rust global allocator, over a [`MemoryManager`] (the kernel's
/// [`MEMORY`](super::MEMORY) by default). Returns null before the manager is initialized
/// and when memory runs out; a bad `dealloc` is logged and the memory left alone.
///
/// ```ignore
/// #[global_allocator]
/// static ALLOCATOR: hinoki_kernel::mm::KernelAllocator = hinoki_kernel::mm::KernelAllocator::new();
/// ```
pub struct KernelAllocator {
    manager: &'static MemoryManager,
}

impl KernelAllocator {
    /// An allocator over the kernel's [`MEMORY`](super::MEMORY).
    pub const fn new() -> KernelAllocator {
        KernelAllocator { manager: &super::MEMORY }
    }

    /// An allocator over another manager (tests, or a second heap).
    pub const fn with_manager(manager: &'static MemoryManager) -> KernelAllocator {
        KernelAllocator { manager }
    }
}

impl Default for KernelAllocator {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: `alloc` returns either null or a block of at least `layout.size()` bytes aligned
// to `layout.align()` that no one else owns (kmalloc's size classes and page blocks
// guarantee both); `dealloc` frees only blocks kmalloc recognizes as live; `realloc`
// keeps the block only when its usable size already covers the new size.
unsafe impl GlobalAlloc for KernelAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.manager.kmalloc_aligned(layout.size(), layout.align(), AllocFlags::NONE).map_or(core::ptr::null_mut(), NonNull::as_ptr)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.manager.kmalloc_aligned(layout.size(), layout.align(), AllocFlags::ZERO).map_or(core::ptr::null_mut(), NonNull::as_ptr)
    }

    unsafe fn dealloc(&self, pointer: *mut u8, _layout: Layout) {
        if let Some(pointer) = NonNull::new(pointer) {
            // Errors were logged where they were found; the memory is left alone.
            let _ = self.manager.kfree(pointer);
        }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Some(old) = NonNull::new(pointer) else { return core::ptr::null_mut() };
        if self.manager.ksize(old).is_some_and(|usable| usable >= new_size && new_size * 2 > usable) {
            return pointer;
        }
        // SAFETY: the caller guarantees `layout.align()` is a power of two and `new_size`
        // rounded up to it does not overflow `isize` (`GlobalAlloc::realloc`'s contract).
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: `new_layout` has a non-zero size (the caller's contract).
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are live and distinct, and each holds at least the
            // smaller of the two sizes.
            unsafe { core::ptr::copy_nonoverlapping(pointer, new, layout.size().min(new_size)) };
            // SAFETY: `pointer` was allocated by this allocator with `layout`.
            unsafe { self.dealloc(pointer, layout) };
        }
        new
    }
}

crate::ktest!(
    fn every_size_class_round_trips() {
        let memory = &super::MEMORY;
        crate::kassert!(memory.buddy().is_some(), "mm not initialized: the board must call mm::init_from_platform");
        let sizes = [1usize, 8, 24, 64, 96, 150, 256, 700, 2048, 4000, 8192, 12_000, 100_000];
        let mut pointers = [NonNull::<u8>::dangling(); 13];
        for (index, &size) in sizes.iter().enumerate() {
            let pointer = memory.kmalloc(size, AllocFlags::NONE);
            crate::kassert!(pointer.is_ok(), "kmalloc({}) failed", size);
            let pointer = pointer.unwrap_or(NonNull::dangling());
            crate::kassert!(memory.ksize(pointer).is_some_and(|usable| usable >= size), "ksize too small for {}", size);
            // SAFETY: `size` bytes were just allocated.
            unsafe { core::ptr::write_bytes(pointer.as_ptr(), 0x40 + index as u8, size) };
            pointers[index] = pointer;
        }
        for (index, (&size, &pointer)) in sizes.iter().zip(pointers.iter()).enumerate() {
            // SAFETY: still allocated.
            let bytes = unsafe { core::slice::from_raw_parts(pointer.as_ptr(), size) };
            crate::kassert!(bytes.iter().all(|&b| b == 0x40 + index as u8), "kmalloc({}) was overwritten", size);
            crate::kassert!(memory.kfree(pointer).is_ok(), "kfree of kmalloc({}) failed", size);
        }
        let mut local = 0u64;
        crate::kassert!(memory.kfree(NonNull::from(&mut local).cast()).is_err(), "kfree of a stack address was accepted");
        Ok(())
    }
);

impl Default for KmallocCaches {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::buddy::tests::Arena;
    use proptest::prelude::*;

    #[test]
    fn size_classes_cover_sizes_and_alignments() {
        assert_eq!(KmallocCaches::index_for(1, 1), Some(0));
        assert_eq!(KmallocCaches::index_for(8, 8), Some(0));
        assert_eq!(KmallocCaches::index_for(9, 1), Some(1));
        assert_eq!(KmallocCaches::index_for(65, 8), Some(4));
        assert_eq!(KmallocCaches::index_for(65, 64), Some(5));
        assert_eq!(KmallocCaches::index_for(150, 8), Some(6));
        assert_eq!(KmallocCaches::index_for(193, 8), Some(7));
        assert_eq!(KmallocCaches::index_for(8192, 8), Some(12));
        assert_eq!(KmallocCaches::index_for(8193, 8), None);
        assert_eq!(KmallocCaches::index_for(8, 16384), None);
        for size in 1..=KMALLOC_MAX_CACHE_SIZE {
            for align in [1, 8, 32, 64, 256, 4096] {
                let index = KmallocCaches::index_for(size, align).unwrap();
                assert!(KMALLOC_SIZES[index] >= size && class_align(KMALLOC_SIZES[index]) >= align);
                assert!(index == 0 || KMALLOC_SIZES[index - 1] < size.max(align) || class_align(KMALLOC_SIZES[index - 1]) < align);
            }
        }
    }

    #[test]
    fn small_and_large_allocations_round_trip() {
        let arena = Arena::new(8 << 20, 0x4000_0000);
        let buddy = arena.allocator();
        let caches = KmallocCaches::new();
        let free_at_start = buddy.free_page_count();
        let mut allocations = Vec::new();
        for (step, size) in [1usize, 8, 50, 64, 100, 200, 1000, 4096, 8192, 9000, 70_000].into_iter().enumerate() {
            let pointer = caches.alloc_on(&buddy, 0, size, 8, AllocFlags::ZERO).unwrap();
            // SAFETY: `size` bytes were just allocated.
            let bytes = unsafe { core::slice::from_raw_parts_mut(pointer.as_ptr(), size) };
            assert!(bytes.iter().all(|&b| b == 0));
            bytes.fill(step as u8);
            assert!(KmallocCaches::usable_size(&buddy, pointer).unwrap() >= size);
            allocations.push((pointer, size, step as u8));
        }
        let aligned = caches.alloc_on(&buddy, 0, 100, 4096, AllocFlags::NONE).unwrap();
        assert_eq!(aligned.as_ptr() as usize % 4096, 0);
        caches.free_on(&buddy, 0, aligned).unwrap();
        for (pointer, size, byte) in allocations {
            // SAFETY: still allocated.
            assert!(unsafe { core::slice::from_raw_parts(pointer.as_ptr(), size) }.iter().all(|&b| b == byte));
            caches.free_on(&buddy, 0, pointer).unwrap();
        }
        let large = caches.alloc_on(&buddy, 0, 20_000, 8, AllocFlags::NONE).unwrap();
        caches.free_on(&buddy, 0, large).unwrap();
        assert_eq!(caches.free_on(&buddy, 0, large).unwrap_err().kind, SlabErrorKind::DoubleFree { previous_free: None });
        assert_eq!(caches.alloc_on(&buddy, 0, KMALLOC_MAX_SIZE + 1, 8, AllocFlags::NO_WARN), Err(AllocError::InvalidOrder));
        for cache in caches.caches() {
            cache.shrink(&buddy);
        }
        buddy.drain_per_cpu_pages();
        assert_eq!(buddy.free_page_count(), free_at_start);
    }

    #[test]
    fn global_allocator_serves_collections_and_refuses_before_init() {
        let uninitialized: &'static MemoryManager = Box::leak(Box::new(MemoryManager::new()));
        let early = KernelAllocator::with_manager(uninitialized);
        // SAFETY: a valid non-zero layout.
        assert!(unsafe { early.alloc(Layout::from_size_align(64, 8).unwrap()) }.is_null());
        let allocator = KernelAllocator::with_manager(crate::mm::tests::leaked_manager(8));
        let layout = Layout::from_size_align(100, 16).unwrap();
        // SAFETY: valid layouts; every block is freed with the layout it was made with.
        unsafe {
            let block = allocator.alloc_zeroed(layout);
            assert!(!block.is_null() && block as usize % 16 == 0);
            assert!(core::slice::from_raw_parts(block, 100).iter().all(|&b| b == 0));
            block.write_bytes(7, 100);
            let same = allocator.realloc(block, layout, 120);
            assert_eq!(same, block);
            let grown = allocator.realloc(same, Layout::from_size_align(120, 16).unwrap(), 5000);
            assert_ne!(grown, block);
            assert!(core::slice::from_raw_parts(grown, 100).iter().all(|&b| b == 7));
            allocator.dealloc(grown, Layout::from_size_align(5000, 16).unwrap());
            let huge = allocator.alloc(Layout::from_size_align(KMALLOC_MAX_SIZE * 2, 8).unwrap());
            assert!(huge.is_null());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn random_sizes_never_overlap_and_all_memory_returns(requests in proptest::collection::vec((1usize..20_000, 0u32..7, any::<bool>()), 1..150)) {
            let arena = Arena::new(8 << 20, 0x4000_0000);
            let buddy = arena.allocator();
            let caches = KmallocCaches::new();
            let free_at_start = buddy.free_page_count();
            let mut live: Vec<(usize, usize, u8)> = Vec::new();
            for (step, (size, align_shift, free_one)) in requests.into_iter().enumerate() {
                if free_one && !live.is_empty() {
                    let (start, size, byte) = live.swap_remove(step % live.len());
                    // SAFETY: still allocated.
                    let intact = unsafe { core::slice::from_raw_parts(start as *const u8, size) }.iter().all(|&b| b == byte);
                    prop_assert!(intact);
                    caches.free_on(&buddy, step % 2, NonNull::new(start as *mut u8).unwrap()).unwrap();
                    continue;
                }
                let align = 1usize << align_shift;
                let pointer = caches.alloc_on(&buddy, step % 2, size, align, AllocFlags::NO_WARN).unwrap();
                let start = pointer.as_ptr() as usize;
                prop_assert_eq!(start % align, 0);
                for &(other, other_size, _) in &live {
                    prop_assert!(start + size <= other || other + other_size <= start, "overlap");
                }
                // SAFETY: `size` bytes were just allocated.
                unsafe { core::ptr::write_bytes(pointer.as_ptr(), step as u8, size) };
                live.push((start, size, step as u8));
            }
            for (start, _, _) in live {
                caches.free_on(&buddy, 0, NonNull::new(start as *mut u8).unwrap()).unwrap();
            }
            for cache in caches.caches() {
                cache.shrink(&buddy);
                prop_assert_eq!(cache.statistics().total_slabs, 0);
            }
            buddy.drain_per_cpu_pages();
            prop_assert_eq!(buddy.free_page_count(), free_at_start);
            buddy.verify().map_err(TestCaseError::fail)?;
        }
    }
}
