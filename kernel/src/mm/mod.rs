//! Memory management: the physical page allocator, slab caches and the kernel heap.
//!
//! Layers, bottom up: [`page`] (one [`page::Page`] per frame), [`buddy`] (free lists of
//! 2^order pages per zone, per-CPU order-0 lists), [`slab`] (object caches with per-CPU
//! arrays; [`slab_object`] puts typed, reference-counted objects in named caches),
//! [`kmalloc`] (size classes, and the [`KernelAllocator`] a board installs as the
//! `#[global_allocator]`). [`MemoryManager`] ties them together; the kernel's instance is
//! [`MEMORY`], set up once by [`init_from_platform`] (or [`init`]). Until then every
//! allocation fails cleanly ([`AllocError::NotInitialized`], or null from the allocator).
//! `/proc/buddyinfo`, `/proc/slabinfo`, `/proc/meminfo` and the `slabtop` command report on it.
//! [`paging`] holds the page-table walker, the descriptor formats and the kernel's `Mmu`.

pub mod bench;
pub mod buddy;
pub mod dma;
pub mod kmalloc;
pub mod page;
pub mod paging;
pub mod slab;
pub mod slab_common;
pub mod slab_object;
pub mod vmstat;

use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, Ordering};

pub use buddy::{AllocError, AllocFlags, BuddyAllocator, BuddyConfig, FreeError, InitError, ZoneType};
pub use hinoki_interface::{MemoryKind, MemoryRegion, PhysicalAddress};
pub use kmalloc::{KernelAllocator, KmallocCaches};
pub use slab::{CacheFlags, CacheHandle, Constructor, KmemCache, SlabAllocator, SlabError, SlabErrorKind};
pub use slab_object::{SlabArc, SlabBox, SlabWeak, TypedCache};

use crate::sync::Once;

/// Most memory regions [`init_from_platform`] takes from the platform.
pub const MAX_REGIONS: usize = 64;

/// The calling CPU's id, or 0 before the platform is registered (and on the host).
#[inline]
pub fn current_cpu() -> usize {
    crate::try_cpu().map_or(0, |cpu| cpu.current_id().0 as usize)
}

/// The page allocator, the slab caches and kmalloc, as one unit.
pub struct MemoryManager {
    buddy: Once<BuddyAllocator>,
    initializing: AtomicBool,
    slab: SlabAllocator,
    kmalloc: KmallocCaches,
}

impl MemoryManager {
    /// A manager with no memory yet: every allocation fails until [`init`](Self::init).
    pub const fn new() -> MemoryManager {
        MemoryManager {
            buddy: Once::new(),
            initializing: AtomicBool::new(false),
            slab: SlabAllocator::new(),
            kmalloc: KmallocCaches::new(),
        }
    }

    /// Hands the manager the usable `regions` minus the non-usable ones and `reserved`.
    ///
    /// # Safety
    ///
    /// As for [`BuddyAllocator::new`]: the usable, unreserved memory must be RAM nothing
    /// else uses, reachable at its physical address plus `config.direct_map_offset`. And
    /// the manager must stay at its address from now on (it links its caches to itself).
    pub unsafe fn init(&self, regions: &[MemoryRegion], reserved: &[MemoryRegion], config: BuddyConfig) -> Result<(), InitError> {
        if self.initializing.swap(true, Ordering::AcqRel) {
            return Err(InitError::AlreadyInitialized);
        }
        // SAFETY: forwarded from this function's contract.
        let buddy = match unsafe { BuddyAllocator::new(regions, reserved, config) } {
            Ok(buddy) => buddy,
            Err(error) => {
                self.initializing.store(false, Ordering::Release);
                return Err(error);
            }
        };
        // SAFETY: the caller keeps `self` in place, so the caches it owns stay put; each
        // is registered exactly once, here, guarded by `initializing`.
        unsafe {
            self.slab.register_own_caches();
            for cache in self.kmalloc.caches() {
                self.slab.register(cache);
            }
        }
        let buddy = self.buddy.call_once(|| buddy);
        for zone in ZoneType::ALL {
            if buddy.zone_managed_pages(zone) > 0 {
                let (start, end) = buddy.zone_span(zone);
                log::info!(
                    "mm: zone {:<6} [{:#012x}-{:#012x}] {} pages managed",
                    zone.name(),
                    start << page::PAGE_SHIFT,
                    (end << page::PAGE_SHIFT).saturating_sub(1),
                    buddy.zone_managed_pages(zone)
                );
            }
        }
        log::info!("mm: {} KiB managed, {} KiB free", buddy.managed_page_count() * 4, buddy.free_page_count() * 4);
        Ok(())
    }

    /// The page allocator, once initialized.
    #[inline]
    pub fn buddy(&self) -> Option<&BuddyAllocator> {
        self.buddy.get()
    }

    /// The registry of slab caches.
    pub fn slab(&self) -> &SlabAllocator {
        &self.slab
    }

    /// The kmalloc caches.
    pub fn kmalloc_caches(&self) -> &KmallocCaches {
        &self.kmalloc
    }

    /// Returns free slabs and per-CPU pages to the free lists; returns the pages freed from slabs.
    pub fn shrink(&self) -> usize {
        let Some(buddy) = self.buddy() else { return 0 };
        let released = self.slab.shrink_all(buddy);
        buddy.drain_per_cpu_pages();
        released
    }

    /// Runs `attempt` quietly; if memory is short, shrinks the slab caches and runs it
    /// once more with the caller's flags.
    fn with_reclaim<T, E>(
        &self,
        flags: AllocFlags,
        is_out_of_memory: impl Fn(&E) -> bool,
        attempt: impl Fn(AllocFlags) -> Result<T, E>,
    ) -> Result<T, E> {
        match attempt(flags | AllocFlags::NO_WARN) {
            Err(error) if is_out_of_memory(&error) && self.shrink() > 0 => attempt(flags),
            Err(error) if is_out_of_memory(&error) && !flags.contains(AllocFlags::NO_WARN) => attempt(flags),
            other => other,
        }
    }

    /// Allocates `2^order` contiguous pages (Linux's `alloc_pages`).
    pub fn alloc_pages(&self, order: u32, flags: AllocFlags) -> Result<PhysicalAddress, AllocError> {
        let buddy = self.buddy().ok_or(AllocError::NotInitialized)?;
        self.with_reclaim(flags, |error| *error == AllocError::OutOfMemory, |flags| buddy.alloc_pages(order, flags))
    }

    /// Frees pages from [`alloc_pages`](Self::alloc_pages).
    pub fn free_pages(&self, address: PhysicalAddress, order: u32) -> Result<(), FreeError> {
        self.buddy().ok_or(FreeError::NotManaged)?.free_pages(address, order)
    }

    /// Allocates `size` bytes, 8-aligned or better (naturally aligned for power-of-two sizes).
    #[track_caller]
    pub fn kmalloc(&self, size: usize, flags: AllocFlags) -> Result<NonNull<u8>, AllocError> {
        self.kmalloc_aligned(size, 1, flags)
    }

    /// Allocates `size` bytes aligned to `align` (a power of two).
    #[track_caller]
    pub fn kmalloc_aligned(&self, size: usize, align: usize, flags: AllocFlags) -> Result<NonNull<u8>, AllocError> {
        let buddy = self.buddy().ok_or(AllocError::NotInitialized)?;
        let cpu = current_cpu();
        self.with_reclaim(flags, |error| *error == AllocError::OutOfMemory, |flags| self.kmalloc.alloc_on(buddy, cpu, size, align, flags))
    }

    /// Frees memory from kmalloc (or any slab object). Bad pointers are reported, not freed.
    #[track_caller]
    pub fn kfree(&self, pointer: NonNull<u8>) -> Result<(), SlabError> {
        let Some(buddy) = self.buddy() else {
            return Err(SlabError { kind: SlabErrorKind::NotInitialized, cache: "kmalloc", caller: core::panic::Location::caller() });
        };
        self.kmalloc.free_on(buddy, current_cpu(), pointer)
    }

    /// The usable size of a kmalloc allocation (Linux's `ksize`).
    pub fn ksize(&self, pointer: NonNull<u8>) -> Option<usize> {
        KmallocCaches::usable_size(self.buddy()?, pointer)
    }

    /// Creates a named object cache (Linux's `kmem_cache_create`).
    #[track_caller]
    pub fn kmem_cache_create(
        &self,
        name: &'static str,
        size: usize,
        align: usize,
        flags: CacheFlags,
        constructor: Option<Constructor>,
    ) -> Result<CacheHandle<'_>, SlabError> {
        let Some(buddy) = self.buddy() else {
            return Err(SlabError { kind: SlabErrorKind::NotInitialized, cache: name, caller: core::panic::Location::caller() });
        };
        let is_out_of_memory = |error: &SlabError| error.kind == SlabErrorKind::OutOfMemory;
        let caller = core::panic::Location::caller();
        self.with_reclaim(AllocFlags::NONE, is_out_of_memory, |_| {
            self.slab.create(buddy, name, size, align, flags, constructor).map_err(|error| SlabError { caller, ..error })
        })
    }

    /// Allocates an object from `cache` (Linux's `kmem_cache_alloc`).
    #[track_caller]
    pub fn kmem_cache_alloc(&self, cache: &KmemCache, flags: AllocFlags) -> Result<NonNull<u8>, SlabError> {
        let caller = core::panic::Location::caller();
        let Some(buddy) = self.buddy() else {
            return Err(SlabError { kind: SlabErrorKind::NotInitialized, cache: cache.name(), caller });
        };
        let cpu = current_cpu();
        let is_out_of_memory = |error: &SlabError| error.kind == SlabErrorKind::OutOfMemory;
        self.with_reclaim(flags, is_out_of_memory, |flags| cache.alloc_on(buddy, cpu, flags).map_err(|error| SlabError { caller, ..error }))
    }

    /// Frees an object to `cache` (Linux's `kmem_cache_free`).
    #[track_caller]
    pub fn kmem_cache_free(&self, cache: &KmemCache, object: NonNull<u8>) -> Result<(), SlabError> {
        let Some(buddy) = self.buddy() else {
            return Err(SlabError { kind: SlabErrorKind::NotInitialized, cache: cache.name(), caller: core::panic::Location::caller() });
        };
        cache.free_on(buddy, current_cpu(), object)
    }

    /// Destroys a cache with no objects in use (Linux's `kmem_cache_destroy`); on error
    /// the cache is handed back.
    #[track_caller]
    pub fn kmem_cache_destroy<'a>(&'a self, cache: CacheHandle<'a>) -> Result<(), (CacheHandle<'a>, SlabError)> {
        match self.buddy() {
            Some(buddy) => self.slab.destroy(buddy, cache),
            None => {
                let error = SlabError { kind: SlabErrorKind::NotInitialized, cache: cache.name(), caller: core::panic::Location::caller() };
                Err((cache, error))
            }
        }
    }
}

impl Default for MemoryManager {
    fn default() -> Self {
        Self::new()
    }
}

/// The kernel's memory manager.
pub static MEMORY: MemoryManager = MemoryManager::new();

/// Initializes [`MEMORY`] from explicit regions.
///
/// # Safety
///
/// As for [`MemoryManager::init`] (the static never moves, so only the memory contract applies).
pub unsafe fn init(regions: &[MemoryRegion], reserved: &[MemoryRegion], config: BuddyConfig) -> Result<(), InitError> {
    // SAFETY: forwarded; `MEMORY` is a static and never moves.
    unsafe { MEMORY.init(regions, reserved, config) }
}

/// Initializes [`MEMORY`] from the platform's memory map: every `Usable` region, minus the
/// `KernelImage`, `Reserved` and `Mmio` ones and `reserved`. Regions past the first
/// [`MAX_REGIONS`] are ignored with a warning.
///
/// # Safety
///
/// The platform's `Usable` regions that no other region or `reserved` covers must be RAM
/// that nothing else uses, mapped at physical address plus `config.direct_map_offset`.
pub unsafe fn init_from_platform(
    platform: &dyn hinoki_interface::Platform,
    reserved: &[MemoryRegion],
    config: BuddyConfig,
) -> Result<(), InitError> {
    let empty = MemoryRegion { start: PhysicalAddress(0), size: 0, kind: MemoryKind::Reserved };
    let mut regions = [empty; MAX_REGIONS];
    let mut count = 0;
    let mut dropped = 0;
    platform.memory_regions(&mut |region| {
        if count < MAX_REGIONS {
            regions[count] = region;
            count += 1;
        } else {
            dropped += 1;
        }
    });
    if dropped > 0 {
        log::warn!("mm: {} memory regions past the first {} ignored", dropped, MAX_REGIONS);
    }
    // SAFETY: forwarded from this function's contract.
    unsafe { init(&regions[..count], reserved, config) }
}

/// Allocates pages from [`MEMORY`].
pub fn alloc_pages(order: u32, flags: AllocFlags) -> Result<PhysicalAddress, AllocError> {
    MEMORY.alloc_pages(order, flags)
}

/// Frees pages to [`MEMORY`].
pub fn free_pages(address: PhysicalAddress, order: u32) -> Result<(), FreeError> {
    MEMORY.free_pages(address, order)
}

/// kmalloc from [`MEMORY`].
#[track_caller]
pub fn kmalloc(size: usize, flags: AllocFlags) -> Result<NonNull<u8>, AllocError> {
    MEMORY.kmalloc(size, flags)
}

/// kfree to [`MEMORY`].
#[track_caller]
pub fn kfree(pointer: NonNull<u8>) -> Result<(), SlabError> {
    MEMORY.kfree(pointer)
}

/// Creates a cache in [`MEMORY`] (Linux's `kmem_cache_create(name, size, align, flags, ctor)`
/// with no flags; see [`MemoryManager::kmem_cache_create`] for flags).
#[track_caller]
pub fn kmem_cache_create(
    name: &'static str,
    size: usize,
    align: usize,
    constructor: Option<Constructor>,
) -> Result<CacheHandle<'static>, SlabError> {
    MEMORY.kmem_cache_create(name, size, align, CacheFlags::NONE, constructor)
}

/// Registers `/proc/buddyinfo`, `/proc/slabinfo` and `/proc/meminfo`.
pub fn register_proc_files() {
    let files: [(&'static str, crate::fs::procfs::ShowFunction); 3] =
        [("buddyinfo", vmstat::show_buddyinfo), ("slabinfo", slab_common::show_slabinfo), ("meminfo", vmstat::show_meminfo)];
    for (name, show) in files {
        if let Err(error) = crate::fs::procfs::register(name, show) {
            log::warn!("mm: cannot register /proc/{}: {:?}", name, error);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::mm::buddy::tests::Arena;

    /// A leaked manager over a leaked arena, for tests that need `'static`.
    pub(crate) fn leaked_manager(megabytes: usize) -> &'static MemoryManager {
        let arena = Box::leak(Box::new(Arena::new(megabytes << 20, 0x4000_0000)));
        let manager = Box::leak(Box::new(MemoryManager::new()));
        // SAFETY: the arena is leaked, so it outlives the manager, which is leaked in place.
        unsafe { manager.init(&[arena.region()], &[], arena.config()).unwrap() };
        manager
    }

    #[test]
    fn uninitialized_manager_fails_cleanly() {
        let manager = MemoryManager::new();
        assert_eq!(manager.alloc_pages(0, AllocFlags::NONE), Err(AllocError::NotInitialized));
        assert_eq!(manager.kmalloc(8, AllocFlags::NONE), Err(AllocError::NotInitialized));
        assert_eq!(manager.shrink(), 0);
        let mut local = 0u8;
        assert_eq!(manager.kfree(NonNull::from(&mut local)).unwrap_err().kind, SlabErrorKind::NotInitialized);
    }

    #[test]
    fn init_twice_is_refused_and_failed_init_can_be_retried() {
        let arena = Arena::new(4 << 20, 0x4000_0000);
        let manager = Box::new(MemoryManager::new());
        let hole = MemoryRegion { start: PhysicalAddress(0x4000_0000), size: 4 << 20, kind: MemoryKind::Reserved };
        // SAFETY: the arena outlives the manager.
        unsafe {
            assert_eq!(manager.init(&[arena.region()], &[hole], arena.config()), Err(InitError::NoUsableMemory));
            manager.init(&[arena.region()], &[], arena.config()).unwrap();
            assert_eq!(manager.init(&[arena.region()], &[], arena.config()), Err(InitError::AlreadyInitialized));
        }
        let names: Vec<&str> = {
            let mut names = Vec::new();
            manager.slab().for_each_cache(|cache| names.push(cache.name()));
            names
        };
        assert_eq!(names.first(), Some(&"kmalloc-8k"));
        assert_eq!(names.last(), Some(&"kmem_cache"));
        assert_eq!(names.len(), kmalloc::KMALLOC_CACHES + 1);
    }

    #[test]
    fn memory_pressure_shrinks_slabs_to_serve_pages() {
        let manager = leaked_manager(4);
        let buddy = manager.buddy().unwrap();
        let cache = manager.kmem_cache_create("pressure", 2000, 8, CacheFlags::NONE, None).unwrap();
        let mut objects = Vec::new();
        while let Ok(object) = manager.kmem_cache_alloc(&cache, AllocFlags::NO_WARN) {
            objects.push(object);
        }
        assert_eq!(manager.alloc_pages(0, AllocFlags::NO_WARN), Err(AllocError::OutOfMemory));
        for object in objects.drain(..) {
            manager.kmem_cache_free(&cache, object).unwrap();
        }
        // The freed objects sit in per-CPU arrays and a kept slab; a page allocation that
        // finds the free lists empty shrinks the caches and succeeds.
        let address = manager.alloc_pages(MAX_ORDER_FOR_TESTS, AllocFlags::NONE).unwrap();
        manager.free_pages(address, MAX_ORDER_FOR_TESTS).unwrap();
        manager.kmem_cache_destroy(cache).unwrap();
        manager.shrink();
        assert_eq!(buddy.free_page_count(), buddy.managed_page_count());
    }

    const MAX_ORDER_FOR_TESTS: u32 = 8;
}
