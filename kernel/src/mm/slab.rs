//! The slab allocator: named caches of equal-sized objects carved from buddy pages, with per-CPU object arrays and a checking debug mode.
//!
//! Each cache ([`KmemCache`]) keeps its slabs on partial, full and free lists under one
//! lock, and in front of them one small array of free objects per CPU (Linux SLAB's
//! `array_cache`). The fast path takes an object from the calling CPU's array after one
//! uncontended atomic swap of the array's busy flag: no lock, O(1). An array that runs dry
//! is refilled with a batch under the cache lock; one that overflows gives a batch back.
//!
//! Debug mode (cache flag [`CacheFlags::DEBUG`], on for every cache with the `slab-debug`
//! feature) surrounds each object with red zones, poisons freed objects and records the
//! allocating and freeing callers, so that double frees, overruns and writes after free
//! are reported as [`SlabError`]s naming the cache and the caller.

use core::cell::UnsafeCell;
use core::fmt;
use core::panic::Location;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicUsize, Ordering};

use super::buddy::{AllocFlags, BuddyAllocator, MAX_CPUS, MAX_ORDER};
use super::page::{PageOwner, NO_PAGE, PAGE_SIZE};
use crate::sync::IrqSpinLock;

/// Capacity of a per-CPU array: the largest `limit` in `/proc/slabinfo`.
pub const CPU_CACHE_LIMIT: usize = 32;

/// Per-CPU array `limit` and `batchcount` for an object size (smaller for big objects, as
/// in Linux SLAB's `enable_cpucache`).
pub const fn cpu_cache_tunables(size: usize) -> (usize, usize) {
    if size > PAGE_SIZE {
        (8, 4)
    } else if size > 1024 {
        (24, 12)
    } else {
        (CPU_CACHE_LIMIT, CPU_CACHE_LIMIT / 2)
    }
}
/// Free slabs a cache keeps for reuse; more are returned to the buddy allocator at once.
pub const KEEP_FREE_SLABS: usize = 1;
/// Slab order a cache prefers not to exceed.
const PREFERRED_MAX_SLAB_ORDER: u32 = 3;

/// Byte written over a freed object in debug mode (Linux's `POISON_FREE`).
pub const POISON_FREE: u8 = 0x6b;
/// Last byte of a poisoned object (`POISON_END`).
pub const POISON_END: u8 = 0xa5;
/// Red-zone byte around a free object (`SLUB_RED_INACTIVE`).
pub const RED_INACTIVE: u8 = 0xbb;
/// Red-zone byte around an allocated object (`SLUB_RED_ACTIVE`).
pub const RED_ACTIVE: u8 = 0xcc;
/// Bytes of the right red zone past the object's rounded size.
const RED_ZONE: usize = 8;

/// Cache creation flags (Linux's `SLAB_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CacheFlags(pub u32);

impl CacheFlags {
    /// No flags (debug checks still on with the `slab-debug` feature).
    pub const NONE: CacheFlags = CacheFlags(0);
    /// Red zones, poisoning and caller tracking (`SLAB_RED_ZONE | SLAB_POISON | SLAB_STORE_USER`).
    pub const DEBUG: CacheFlags = CacheFlags(1 << 0);
    /// Objects are reclaimable; counted as `SReclaimable` (`SLAB_RECLAIM_ACCOUNT`).
    pub const RECLAIMABLE: CacheFlags = CacheFlags(1 << 1);

    /// Whether every flag of `other` is set.
    #[inline]
    pub const fn contains(self, other: CacheFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

/// What went wrong in a slab operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlabErrorKind {
    /// No memory for a new slab.
    OutOfMemory,
    /// Size zero, alignment not a power of two, or an object larger than the largest block.
    InvalidLayout,
    /// The pointer is not inside any slab.
    ForeignPointer,
    /// The pointer is an object of another cache.
    WrongCache {
        /// The cache the object belongs to.
        owner: &'static str,
    },
    /// The pointer is inside a slab but not at the start of an object.
    NotObjectStart,
    /// The object is already free.
    DoubleFree {
        /// Who freed it before, when the cache records callers.
        previous_free: Option<&'static Location<'static>>,
    },
    /// Bytes just before or after the object were overwritten (an overrun).
    RedZoneOverwritten {
        /// Who allocated the object, when the cache records callers.
        allocated_at: Option<&'static Location<'static>>,
    },
    /// A free object was written to (a use after free); it is taken out of service.
    PoisonOverwritten {
        /// Who freed it, when the cache records callers.
        freed_at: Option<&'static Location<'static>>,
    },
    /// The cache still has objects in use, so it cannot be destroyed.
    CacheBusy {
        /// Objects still allocated.
        active_objects: usize,
    },
    /// The memory manager is not initialized.
    NotInitialized,
}

/// A slab error: what, in which cache, and the caller that triggered the check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlabError {
    /// What went wrong.
    pub kind: SlabErrorKind,
    /// The cache the operation was on.
    pub cache: &'static str,
    /// Where the allocating or freeing call was made.
    pub caller: &'static Location<'static>,
}

impl fmt::Display for SlabError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "slab cache {}: ", self.cache)?;
        match self.kind {
            SlabErrorKind::OutOfMemory => write!(formatter, "out of memory")?,
            SlabErrorKind::InvalidLayout => write!(formatter, "invalid object size or alignment")?,
            SlabErrorKind::ForeignPointer => write!(formatter, "free of a pointer that is not a slab object")?,
            SlabErrorKind::WrongCache { owner } => write!(formatter, "free of an object that belongs to cache {}", owner)?,
            SlabErrorKind::NotObjectStart => write!(formatter, "free of a pointer inside an object")?,
            SlabErrorKind::DoubleFree { previous_free } => {
                write!(formatter, "double free")?;
                if let Some(location) = previous_free {
                    write!(formatter, " (first freed at {})", location)?;
                }
            }
            SlabErrorKind::RedZoneOverwritten { allocated_at } => {
                write!(formatter, "red zone overwritten")?;
                if let Some(location) = allocated_at {
                    write!(formatter, " (object allocated at {})", location)?;
                }
            }
            SlabErrorKind::PoisonOverwritten { freed_at } => {
                write!(formatter, "free object written to (use after free)")?;
                if let Some(location) = freed_at {
                    write!(formatter, " (object freed at {})", location)?;
                }
            }
            SlabErrorKind::CacheBusy { active_objects } => write!(formatter, "{} objects still in use", active_objects)?,
            SlabErrorKind::NotInitialized => write!(formatter, "memory manager not initialized")?,
        }
        write!(formatter, ", caller {}", self.caller)
    }
}

/// A constructor run on each object when its slab is created.
pub type Constructor = fn(object: *mut u8);

/// How objects are laid out in a slab.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SlotLayout {
    /// Bytes from a slot's start to its object.
    object_offset: usize,
    /// Bytes from an object's start to its free-list pointer.
    free_pointer_offset: usize,
    /// Bytes from one slot to the next.
    slot_size: usize,
    /// Slab order.
    order: u32,
    /// Objects per slab.
    objects_per_slab: usize,
    /// `u64::MAX / slot_size + 1`: `(offset * this) >> 64` is `offset / slot_size` for every
    /// offset inside a slab, without a division (Linux's `reciprocal_divide` idea).
    slot_reciprocal: u64,
}

impl SlotLayout {
    /// The slot holding byte `offset` of a slab (`offset` below 4 MiB, the largest slab).
    #[inline]
    fn slot_index(&self, offset: usize) -> usize {
        ((offset as u128 * u128::from(self.slot_reciprocal)) >> 64) as usize
    }
}

const fn round_up(value: usize, alignment: usize) -> usize {
    (value + alignment - 1) / alignment * alignment
}

const fn slot_layout(size: usize, align: usize, debug: bool, outside_free_pointer: bool) -> Option<SlotLayout> {
    if size == 0 || !align.is_power_of_two() || align > (PAGE_SIZE << MAX_ORDER) {
        return None;
    }
    let align = if align < 8 { 8 } else { align };
    let rounded = round_up(size, 8);
    let (object_offset, free_pointer_offset, slot_size) = if debug {
        // [left red zone][object][right red zone][free pointer][alloc caller][free caller]
        let left = round_up(8, align);
        (left, rounded + RED_ZONE, round_up(left + rounded + RED_ZONE + 24, align))
    } else if outside_free_pointer {
        (0, rounded, round_up(rounded + 8, align))
    } else {
        (0, 0, round_up(rounded, align))
    };
    let mut order = 0;
    while (PAGE_SIZE << order) < align {
        order += 1;
    }
    let mut chosen = None;
    while order <= MAX_ORDER {
        let bytes = PAGE_SIZE << order;
        let objects = bytes / slot_size;
        let waste = bytes - objects * slot_size;
        if objects >= 1 && chosen.is_none() {
            chosen = Some(order);
        }
        if objects >= 4 && waste * 8 <= bytes {
            chosen = Some(order);
            break;
        }
        if order >= PREFERRED_MAX_SLAB_ORDER && objects >= 1 {
            break;
        }
        order += 1;
    }
    match chosen {
        Some(order) => Some(SlotLayout {
            object_offset,
            free_pointer_offset,
            slot_size,
            order,
            objects_per_slab: (PAGE_SIZE << order) / slot_size,
            slot_reciprocal: u64::MAX / slot_size as u64 + 1,
        }),
        None => None,
    }
}

/// An intrusive list of slabs, linked through their head pages.
#[derive(Clone, Copy)]
struct SlabList {
    head: u32,
    length: usize,
}

impl SlabList {
    const EMPTY: SlabList = SlabList { head: NO_PAGE, length: 0 };

    fn push(&mut self, buddy: &BuddyAllocator, pfn: u64) {
        let index = buddy.index_of(pfn);
        let page = buddy.page(pfn).expect("slab page in range");
        page.next.store(self.head, Ordering::Relaxed);
        page.prev.store(NO_PAGE, Ordering::Relaxed);
        if self.head != NO_PAGE {
            buddy.page(buddy.pfn_of(self.head)).expect("slab link in range").prev.store(index, Ordering::Relaxed);
        }
        self.head = index;
        self.length += 1;
    }

    fn remove(&mut self, buddy: &BuddyAllocator, pfn: u64) {
        let page = buddy.page(pfn).expect("slab page in range");
        let (next, prev) = (page.next.load(Ordering::Relaxed), page.prev.load(Ordering::Relaxed));
        if prev == NO_PAGE {
            self.head = next;
        } else {
            buddy.page(buddy.pfn_of(prev)).expect("slab link in range").next.store(next, Ordering::Relaxed);
        }
        if next != NO_PAGE {
            buddy.page(buddy.pfn_of(next)).expect("slab link in range").prev.store(prev, Ordering::Relaxed);
        }
        self.length -= 1;
    }

    fn first(&self, buddy: &BuddyAllocator) -> Option<u64> {
        (self.head != NO_PAGE).then(|| buddy.pfn_of(self.head))
    }
}

/// Which list a slab is on, by its objects in use.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SlabState {
    Free,
    Partial,
    Full,
}

/// The slabs of a cache (Linux's `kmem_cache_node`).
struct CacheNode {
    partial: SlabList,
    full: SlabList,
    free: SlabList,
    /// Free objects on the slabs' own free lists.
    free_objects: usize,
}

/// One CPU's array of free objects.
struct CpuCache {
    busy: AtomicBool,
    count: AtomicU32,
    objects: UnsafeCell<[usize; CPU_CACHE_LIMIT]>,
}

// SAFETY: `objects` is only touched by whoever set `busy` from false to true (an acquire
// swap) and is released with a release store, so it is never accessed from two CPUs at once.
unsafe impl Sync for CpuCache {}

impl CpuCache {
    const fn new() -> Self {
        CpuCache { busy: AtomicBool::new(false), count: AtomicU32::new(0), objects: UnsafeCell::new([0; CPU_CACHE_LIMIT]) }
    }

    /// Takes the array if no one holds it; never spins.
    #[inline]
    fn try_acquire(&self) -> Option<CpuCacheGuard<'_>> {
        // `then`, not `then_some`: a guard built and dropped on failure would release the
        // holder's flag.
        (!self.busy.swap(true, Ordering::Acquire)).then(|| CpuCacheGuard { cache: self })
    }
}

/// Exclusive use of one [`CpuCache`]'s objects.
struct CpuCacheGuard<'a> {
    cache: &'a CpuCache,
}

impl CpuCacheGuard<'_> {
    #[inline]
    fn objects(&mut self) -> &mut [usize; CPU_CACHE_LIMIT] {
        // SAFETY: the guard exists only while `busy` is held (see `CpuCache`), and
        // `&mut self` makes this the only reference derived from it.
        unsafe { &mut *self.cache.objects.get() }
    }

    #[inline]
    fn count(&self) -> usize {
        self.cache.count.load(Ordering::Relaxed) as usize
    }

    #[inline]
    fn set_count(&self, count: usize) {
        self.cache.count.store(count as u32, Ordering::Relaxed);
    }
}

impl Drop for CpuCacheGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        self.cache.busy.store(false, Ordering::Release);
    }
}

/// Counters of one cache, as `/proc/slabinfo` prints them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CacheStatistics {
    /// Objects allocated and not freed.
    pub active_objects: usize,
    /// Object slots in all slabs.
    pub total_objects: usize,
    /// Bytes from one object slot to the next.
    pub object_size: usize,
    /// Object slots per slab.
    pub objects_per_slab: usize,
    /// Pages per slab.
    pub pages_per_slab: usize,
    /// Slabs with at least one object in use.
    pub active_slabs: usize,
    /// All slabs.
    pub total_slabs: usize,
    /// Free objects waiting in per-CPU arrays.
    pub per_cpu_objects: usize,
}

impl CacheStatistics {
    /// Bytes of memory the cache's slabs take.
    pub fn memory_bytes(&self) -> usize {
        self.total_slabs * self.pages_per_slab * PAGE_SIZE
    }
}

/// A named cache of equal-sized objects (Linux's `struct kmem_cache`).
pub struct KmemCache {
    name: &'static str,
    object_size: usize,
    align: usize,
    flags: CacheFlags,
    constructor: Option<Constructor>,
    layout: SlotLayout,
    limit: usize,
    batch: usize,
    node: IrqSpinLock<CacheNode>,
    cpu: [CpuCache; MAX_CPUS],
    total_slabs: AtomicUsize,
    /// The next cache in the slab allocator's list of caches.
    pub(crate) next: AtomicPtr<KmemCache>,
}

impl KmemCache {
    /// A cache of `size`-byte objects aligned to `align` (at least 8). Panics on an invalid
    /// layout, which in a `static` is a compile-time error; see [`try_new`](Self::try_new).
    pub const fn new(name: &'static str, size: usize, align: usize, flags: CacheFlags, constructor: Option<Constructor>) -> KmemCache {
        match Self::try_new(name, size, align, flags, constructor) {
            Some(cache) => cache,
            None => panic!("invalid slab cache layout"),
        }
    }

    /// A cache, or `None` if `size` is zero, `align` is not a power of two, or an object
    /// does not fit in the largest block.
    pub const fn try_new(
        name: &'static str,
        size: usize,
        align: usize,
        flags: CacheFlags,
        constructor: Option<Constructor>,
    ) -> Option<KmemCache> {
        let flags = if cfg!(feature = "slab-debug") { CacheFlags(flags.0 | CacheFlags::DEBUG.0) } else { flags };
        let debug = flags.contains(CacheFlags::DEBUG);
        let Some(layout) = slot_layout(size, align, debug, constructor.is_some()) else { return None };
        let (limit, batch) = cpu_cache_tunables(layout.slot_size);
        Some(KmemCache {
            limit,
            batch,
            name,
            object_size: size,
            align: if align < 8 { 8 } else { align },
            flags,
            constructor,
            layout,
            node: IrqSpinLock::new(CacheNode { partial: SlabList::EMPTY, full: SlabList::EMPTY, free: SlabList::EMPTY, free_objects: 0 }),
            cpu: [const { CpuCache::new() }; MAX_CPUS],
            total_slabs: AtomicUsize::new(0),
            next: AtomicPtr::new(core::ptr::null_mut()),
        })
    }

    /// The cache's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The object size asked for at creation.
    pub fn object_size(&self) -> usize {
        self.object_size
    }

    /// The alignment every object has.
    pub fn align(&self) -> usize {
        self.align
    }

    /// The per-CPU array `(limit, batchcount)`.
    pub fn tunables(&self) -> (usize, usize) {
        (self.limit, self.batch)
    }

    /// The creation flags (with `DEBUG` added under the `slab-debug` feature).
    pub fn flags(&self) -> CacheFlags {
        self.flags
    }

    #[inline]
    fn debug(&self) -> bool {
        self.flags.contains(CacheFlags::DEBUG)
    }

    fn poisons(&self) -> bool {
        self.debug() && self.constructor.is_none()
    }

    #[track_caller]
    fn error(&self, kind: SlabErrorKind) -> SlabError {
        SlabError { kind, cache: self.name, caller: Location::caller() }
    }

    #[track_caller]
    fn report(&self, kind: SlabErrorKind) -> SlabError {
        let error = self.error(kind);
        log::error!("{}", error);
        error
    }

    fn state(&self, in_use: usize) -> SlabState {
        if in_use == 0 {
            SlabState::Free
        } else if in_use == self.layout.objects_per_slab {
            SlabState::Full
        } else {
            SlabState::Partial
        }
    }

    fn list<'a>(node: &'a mut CacheNode, state: SlabState) -> &'a mut SlabList {
        match state {
            SlabState::Free => &mut node.free,
            SlabState::Partial => &mut node.partial,
            SlabState::Full => &mut node.full,
        }
    }

    #[inline]
    fn read_free_pointer(&self, object: usize) -> usize {
        // SAFETY: `object` is a free object of this cache; its free pointer slot lies inside
        // its slot, 8-aligned (objects are 8-aligned and the offset is a multiple of 8).
        unsafe { ((object + self.layout.free_pointer_offset) as *const usize).read() }
    }

    #[inline]
    fn write_free_pointer(&self, object: usize, next: usize) {
        // SAFETY: as in `read_free_pointer`; the object is free, so the slot is ours.
        unsafe { ((object + self.layout.free_pointer_offset) as *mut usize).write(next) }
    }

    /// Debug metadata words after the free pointer: 0 the allocating caller, 1 the freeing one.
    fn track_word(&self, object: usize, which: usize) -> *mut usize {
        (object + self.layout.free_pointer_offset + 8 + 8 * which) as *mut usize
    }

    fn read_track(&self, object: usize, which: usize) -> Option<&'static Location<'static>> {
        // SAFETY: debug slots reserve two 8-aligned words after the free pointer, written
        // only with 0 or the address of a `&'static Location` (see `write_track`).
        let word = unsafe { self.track_word(object, which).read() };
        // SAFETY: a non-zero word was written from a `&'static Location<'static>`.
        (word != 0).then(|| unsafe { &*(word as *const Location<'static>) })
    }

    fn write_track(&self, object: usize, which: usize, location: Option<&'static Location<'static>>) {
        let word = location.map_or(0, |location| location as *const Location<'static> as usize);
        // SAFETY: the words lie in this object's debug metadata (see `read_track`).
        unsafe { self.track_word(object, which).write(word) }
    }

    #[allow(clippy::mut_from_ref)]
    /// The red-zone bytes of an object: before it, then after it up to the free pointer.
    fn red_zones(&self, object: usize) -> (&mut [u8], &mut [u8]) {
        let left = self.layout.object_offset;
        let right = self.layout.free_pointer_offset - self.object_size;
        // SAFETY: in debug layouts the `object_offset` bytes before the object and the
        // bytes from its end to the free pointer belong to this object's slot and to no one
        // else; the caller owns the object (allocating, freeing or creating it).
        unsafe {
            (
                core::slice::from_raw_parts_mut((object - left) as *mut u8, left),
                core::slice::from_raw_parts_mut((object + self.object_size) as *mut u8, right),
            )
        }
    }

    #[allow(clippy::mut_from_ref)]
    fn object_bytes(&self, object: usize) -> &mut [u8] {
        // SAFETY: the object's `object_size` bytes are in its slot, and the caller owns it.
        unsafe { core::slice::from_raw_parts_mut(object as *mut u8, self.object_size) }
    }

    fn poison(&self, object: usize) {
        if self.poisons() {
            let bytes = self.object_bytes(object);
            bytes.fill(POISON_FREE);
            if let Some(last) = bytes.last_mut() {
                *last = POISON_END;
            }
        }
    }

    /// Prepares a new object in debug mode: inactive red zones, poison, no callers.
    fn debug_initialize(&self, object: usize) {
        let (left, right) = self.red_zones(object);
        left.fill(RED_INACTIVE);
        right.fill(RED_INACTIVE);
        self.poison(object);
        self.write_track(object, 0, None);
        self.write_track(object, 1, None);
    }

    /// Debug checks when an object leaves the cache; on success marks it allocated.
    #[track_caller]
    fn debug_on_alloc(&self, object: usize) -> Result<(), SlabError> {
        let freed_at = self.read_track(object, 1);
        if self.poisons() {
            let bytes = self.object_bytes(object);
            let (last, body) = bytes.split_last().expect("objects are not empty");
            if *last != POISON_END || body.iter().any(|&byte| byte != POISON_FREE) {
                return Err(self.report(SlabErrorKind::PoisonOverwritten { freed_at }));
            }
        }
        let (left, right) = self.red_zones(object);
        if left.iter().chain(right.iter()).any(|&byte| byte != RED_INACTIVE) {
            return Err(self.report(SlabErrorKind::RedZoneOverwritten { allocated_at: self.read_track(object, 0) }));
        }
        left.fill(RED_ACTIVE);
        right.fill(RED_ACTIVE);
        self.write_track(object, 0, Some(Location::caller()));
        Ok(())
    }

    /// Debug checks when an object comes back; on success marks it free and poisons it.
    #[track_caller]
    fn debug_on_free(&self, object: usize) -> Result<(), SlabError> {
        let (left, right) = self.red_zones(object);
        let all = |zone: &[u8], byte: u8| zone.iter().all(|&b| b == byte);
        if all(left, RED_INACTIVE) && all(right, RED_INACTIVE) {
            return Err(self.report(SlabErrorKind::DoubleFree { previous_free: self.read_track(object, 1) }));
        }
        if !all(left, RED_ACTIVE) || !all(right, RED_ACTIVE) {
            return Err(self.report(SlabErrorKind::RedZoneOverwritten { allocated_at: self.read_track(object, 0) }));
        }
        left.fill(RED_INACTIVE);
        right.fill(RED_INACTIVE);
        self.poison(object);
        self.write_track(object, 1, Some(Location::caller()));
        Ok(())
    }

    /// Allocates a slab from the buddy allocator and puts it on the free list.
    fn grow(&self, buddy: &BuddyAllocator, node: &mut CacheNode, flags: AllocFlags) -> Option<u64> {
        let quiet = AllocFlags(flags.0 & AllocFlags::NO_WARN.0);
        let address = buddy.alloc_pages(self.layout.order, quiet).ok()?;
        let pfn = address.0 >> super::page::PAGE_SHIFT;
        for offset in 0..1u64 << self.layout.order {
            buddy.page(pfn + offset).expect("slab page in range").set_owner(PageOwner::Slab);
        }
        let head = buddy.page(pfn).expect("slab page in range");
        head.private.store(self as *const KmemCache as usize, Ordering::Relaxed);
        let base = buddy.virtual_address(address);
        let mut next = 0;
        for index in (0..self.layout.objects_per_slab).rev() {
            let object = base + index * self.layout.slot_size + self.layout.object_offset;
            if let Some(constructor) = self.constructor {
                constructor(object as *mut u8);
            }
            if self.debug() {
                self.debug_initialize(object);
            }
            self.write_free_pointer(object, next);
            next = object;
        }
        head.freelist.store(next, Ordering::Relaxed);
        head.in_use.store(0, Ordering::Relaxed);
        node.free.push(buddy, pfn);
        node.free_objects += self.layout.objects_per_slab;
        self.total_slabs.fetch_add(1, Ordering::Relaxed);
        Some(pfn)
    }

    /// Returns a free slab to the buddy allocator.
    fn release_slab(&self, buddy: &BuddyAllocator, node: &mut CacheNode, pfn: u64) {
        node.free.remove(buddy, pfn);
        node.free_objects -= self.layout.objects_per_slab;
        self.total_slabs.fetch_sub(1, Ordering::Relaxed);
        let address = super::PhysicalAddress(pfn << super::page::PAGE_SHIFT);
        if let Err(error) = buddy.free_pages(address, self.layout.order) {
            log::error!("slab cache {}: cannot release slab at {:#x}: {:?}", self.name, address.0, error);
        }
    }

    /// Takes one object off the slabs, growing the cache when they are all full.
    fn take_object_locked(&self, buddy: &BuddyAllocator, node: &mut CacheNode, flags: AllocFlags, may_grow: bool) -> Option<usize> {
        let pfn = match node.partial.first(buddy).or_else(|| node.free.first(buddy)) {
            Some(pfn) => pfn,
            None if may_grow => self.grow(buddy, node, flags)?,
            None => return None,
        };
        let page = buddy.page(pfn).expect("slab page in range");
        let object = page.freelist.load(Ordering::Relaxed);
        page.freelist.store(self.read_free_pointer(object), Ordering::Relaxed);
        let in_use = page.in_use.fetch_add(1, Ordering::Relaxed) as usize;
        node.free_objects -= 1;
        let (before, after) = (self.state(in_use), self.state(in_use + 1));
        if before != after {
            Self::list(node, before).remove(buddy, pfn);
            Self::list(node, after).push(buddy, pfn);
        }
        Some(object)
    }

    /// Puts one object back on its slab, releasing surplus free slabs.
    fn put_object_locked(&self, buddy: &BuddyAllocator, node: &mut CacheNode, object: usize) {
        let (pfn, page) = buddy.head_of(buddy.physical_address(object)).expect("object in a slab");
        self.write_free_pointer(object, page.freelist.load(Ordering::Relaxed));
        page.freelist.store(object, Ordering::Relaxed);
        let in_use = page.in_use.fetch_sub(1, Ordering::Relaxed) as usize;
        node.free_objects += 1;
        let (before, after) = (self.state(in_use), self.state(in_use - 1));
        if before != after {
            Self::list(node, before).remove(buddy, pfn);
            Self::list(node, after).push(buddy, pfn);
        }
        if after == SlabState::Free && node.free.length > KEEP_FREE_SLABS {
            self.release_slab(buddy, node, pfn);
        }
    }

    /// Allocates one object on the calling CPU.
    #[track_caller]
    pub fn alloc(&self, buddy: &BuddyAllocator, flags: AllocFlags) -> Result<NonNull<u8>, SlabError> {
        self.alloc_on(buddy, super::current_cpu(), flags)
    }

    /// Allocates one object through CPU `cpu`'s array.
    #[track_caller]
    pub fn alloc_on(&self, buddy: &BuddyAllocator, cpu: usize, flags: AllocFlags) -> Result<NonNull<u8>, SlabError> {
        let object = match self.cpu[cpu % MAX_CPUS].try_acquire() {
            Some(mut guard) => {
                let mut count = guard.count();
                if count == 0 {
                    let mut node = self.node.lock();
                    let objects = guard.objects();
                    // Grow by at most one slab per refill.
                    while count < self.batch {
                        let Some(object) = self.take_object_locked(buddy, &mut node, flags, count == 0) else { break };
                        objects[count] = object;
                        count += 1;
                    }
                }
                if count == 0 {
                    None
                } else {
                    count -= 1;
                    guard.set_count(count);
                    Some(guard.objects()[count])
                }
            }
            None => self.take_object_locked(buddy, &mut self.node.lock(), flags, true),
        };
        let Some(object) = object else {
            let error = self.error(SlabErrorKind::OutOfMemory);
            if !flags.contains(AllocFlags::NO_WARN) {
                log::warn!("{}", error);
            }
            return Err(error);
        };
        if self.debug() {
            self.debug_on_alloc(object)?;
        }
        if flags.contains(AllocFlags::ZERO) {
            self.object_bytes(object).fill(0);
        }
        Ok(NonNull::new(object as *mut u8).expect("objects are not at address 0"))
    }

    /// Checks that `object` is the start of an object of this cache.
    #[track_caller]
    #[inline]
    fn validate(&self, buddy: &BuddyAllocator, object: usize) -> Result<(), SlabError> {
        if !buddy.contains_virtual(object) {
            return Err(self.report(SlabErrorKind::ForeignPointer));
        }
        let Some((pfn, page)) = buddy.head_of(buddy.physical_address(object)) else {
            return Err(self.report(SlabErrorKind::ForeignPointer));
        };
        if page.owner() != PageOwner::Slab {
            return Err(self.report(SlabErrorKind::ForeignPointer));
        }
        let owner = page.private.load(Ordering::Relaxed);
        if owner != self as *const KmemCache as usize {
            // SAFETY: a slab page's `private` holds the address of the cache that owns it,
            // and a cache outlives its slabs (destroy releases them all first).
            let owner = unsafe { &*(owner as *const KmemCache) };
            return Err(self.report(SlabErrorKind::WrongCache { owner: owner.name }));
        }
        let offset = object - buddy.virtual_address(super::PhysicalAddress(pfn << super::page::PAGE_SHIFT));
        let index = self.layout.slot_index(offset);
        if index * self.layout.slot_size + self.layout.object_offset != offset || index >= self.layout.objects_per_slab {
            return Err(self.report(SlabErrorKind::NotObjectStart));
        }
        Ok(())
    }

    /// Frees an object of this cache on the calling CPU.
    #[track_caller]
    pub fn free(&self, buddy: &BuddyAllocator, object: NonNull<u8>) -> Result<(), SlabError> {
        self.free_on(buddy, super::current_cpu(), object)
    }

    /// Frees an object of this cache through CPU `cpu`'s array. A pointer that is not a
    /// live object of this cache is reported and left alone.
    #[track_caller]
    pub fn free_on(&self, buddy: &BuddyAllocator, cpu: usize, object: NonNull<u8>) -> Result<(), SlabError> {
        let object = object.as_ptr() as usize;
        self.validate(buddy, object)?;
        if self.debug() {
            self.debug_on_free(object)?;
        }
        match self.cpu[cpu % MAX_CPUS].try_acquire() {
            Some(mut guard) => {
                let mut count = guard.count();
                if count > 0 && guard.objects()[count - 1] == object {
                    return Err(self.report(SlabErrorKind::DoubleFree { previous_free: None }));
                }
                if count >= self.limit {
                    let mut node = self.node.lock();
                    let objects = guard.objects();
                    for &old in &objects[..self.batch] {
                        self.put_object_locked(buddy, &mut node, old);
                    }
                    objects.copy_within(self.batch..count, 0);
                    count -= self.batch;
                }
                guard.objects()[count] = object;
                guard.set_count(count + 1);
            }
            None => self.put_object_locked(buddy, &mut self.node.lock(), object),
        }
        Ok(())
    }

    /// Gives every CPU's cached objects back to the slabs. Arrays in use right now are skipped.
    pub fn drain_cpu_caches(&self, buddy: &BuddyAllocator) {
        for cpu_cache in &self.cpu {
            if cpu_cache.count.load(Ordering::Relaxed) == 0 {
                continue;
            }
            if let Some(mut guard) = cpu_cache.try_acquire() {
                let count = guard.count();
                let mut node = self.node.lock();
                for index in 0..count {
                    let object = guard.objects()[index];
                    self.put_object_locked(buddy, &mut node, object);
                }
                guard.set_count(0);
            }
        }
    }

    /// Drains the per-CPU arrays and returns every free slab to the buddy allocator
    /// (Linux's `kmem_cache_shrink`). Returns the number of pages released.
    pub fn shrink(&self, buddy: &BuddyAllocator) -> usize {
        self.drain_cpu_caches(buddy);
        let mut node = self.node.lock();
        let mut released = 0;
        while let Some(pfn) = node.free.first(buddy) {
            self.release_slab(buddy, &mut node, pfn);
            released += 1 << self.layout.order;
        }
        released
    }

    /// Releases everything, provided no object is in use.
    pub(crate) fn release_all(&self, buddy: &BuddyAllocator) -> Result<(), SlabErrorKind> {
        self.drain_cpu_caches(buddy);
        let active = self.statistics().active_objects;
        if active != 0 {
            return Err(SlabErrorKind::CacheBusy { active_objects: active });
        }
        self.shrink(buddy);
        Ok(())
    }

    /// Current counters (a snapshot; per-CPU counts are read without stopping the CPUs).
    pub fn statistics(&self) -> CacheStatistics {
        let node = self.node.lock();
        let per_slab = self.layout.objects_per_slab;
        let total_slabs = node.partial.length + node.full.length + node.free.length;
        let total_objects = total_slabs * per_slab;
        let per_cpu_objects: usize = self.cpu.iter().map(|cpu| cpu.count.load(Ordering::Relaxed) as usize).sum();
        CacheStatistics {
            active_objects: total_objects.saturating_sub(node.free_objects + per_cpu_objects),
            total_objects,
            object_size: self.layout.slot_size,
            objects_per_slab: per_slab,
            pages_per_slab: 1 << self.layout.order,
            active_slabs: node.partial.length + node.full.length,
            total_slabs,
            per_cpu_objects,
        }
    }

    /// Pages held by the cache's slabs.
    pub fn slab_pages(&self) -> usize {
        self.total_slabs.load(Ordering::Relaxed) << self.layout.order
    }
}

/// The slab allocator's registry of caches.
pub struct SlabAllocator {
    head: AtomicPtr<KmemCache>,
    registry: IrqSpinLock<()>,
    cache_cache: KmemCache,
}

impl SlabAllocator {
    /// An empty registry, with the cache that holds cache descriptors.
    pub const fn new() -> SlabAllocator {
        SlabAllocator {
            head: AtomicPtr::new(core::ptr::null_mut()),
            registry: IrqSpinLock::new(()),
            cache_cache: KmemCache::new(
                "kmem_cache",
                core::mem::size_of::<KmemCache>(),
                core::mem::align_of::<KmemCache>(),
                CacheFlags::NONE,
                None,
            ),
        }
    }

    /// Adds a cache to the list `/proc/slabinfo` and shrinking walk.
    ///
    /// # Safety
    ///
    /// `cache` must stay at its address until [`unregister`](Self::unregister) or for as
    /// long as this registry is used, and must not be registered already.
    pub unsafe fn register(&self, cache: &KmemCache) {
        let _registry = self.registry.lock();
        cache.next.store(self.head.load(Ordering::Relaxed), Ordering::Relaxed);
        self.head.store(cache as *const KmemCache as *mut KmemCache, Ordering::Release);
    }

    fn unregister(&self, cache: &KmemCache) {
        let _registry = self.registry.lock();
        let target = cache as *const KmemCache as *mut KmemCache;
        let mut link = &self.head;
        loop {
            let current = link.load(Ordering::Relaxed);
            if current.is_null() {
                return;
            }
            if current == target {
                link.store(cache.next.load(Ordering::Relaxed), Ordering::Release);
                return;
            }
            // SAFETY: registered caches stay valid while registered (`register`'s contract).
            link = unsafe { &(*current).next };
        }
    }

    /// Registers the descriptor cache itself.
    ///
    /// # Safety
    ///
    /// As for [`register`](Self::register): `self` must not move afterwards. Call once.
    pub unsafe fn register_own_caches(&self) {
        // SAFETY: the caller keeps `self`, and so `cache_cache`, in place.
        unsafe { self.register(&self.cache_cache) };
    }

    /// Calls `visit` with every registered cache, under the registry lock.
    pub fn for_each_cache(&self, mut visit: impl FnMut(&KmemCache)) {
        let _registry = self.registry.lock();
        let mut current = self.head.load(Ordering::Acquire);
        while !current.is_null() {
            // SAFETY: registered caches stay valid while registered, and unregistering needs
            // the lock held here.
            let cache = unsafe { &*current };
            visit(cache);
            current = cache.next.load(Ordering::Relaxed);
        }
    }

    /// Shrinks every cache; returns the pages released.
    pub fn shrink_all(&self, buddy: &BuddyAllocator) -> usize {
        let mut released = 0;
        self.for_each_cache(|cache| released += cache.shrink(buddy));
        released
    }

    /// Creates a named cache with its descriptor allocated from the `kmem_cache` cache
    /// (Linux's `kmem_cache_create`).
    #[track_caller]
    pub fn create<'a>(
        &'a self,
        buddy: &BuddyAllocator,
        name: &'static str,
        size: usize,
        align: usize,
        flags: CacheFlags,
        constructor: Option<Constructor>,
    ) -> Result<CacheHandle<'a>, SlabError> {
        let caller = Location::caller();
        let cache = KmemCache::try_new(name, size, align, flags, constructor).ok_or(SlabError {
            kind: SlabErrorKind::InvalidLayout,
            cache: name,
            caller,
        })?;
        let memory = self.cache_cache.alloc(buddy, AllocFlags::NONE)?.cast::<KmemCache>();
        // SAFETY: `memory` is a fresh `kmem_cache` object, sized and aligned for a
        // `KmemCache`, and ours alone.
        unsafe { memory.as_ptr().write(cache) };
        // SAFETY: the descriptor stays where it is until `destroy` unregisters it.
        let cache = unsafe { &*memory.as_ptr() };
        // SAFETY: as above; registered once, here.
        unsafe { self.register(cache) };
        Ok(CacheHandle { cache })
    }

    /// Destroys a cache made by [`create`](Self::create), which must have no object in use
    /// (Linux's `kmem_cache_destroy`). On error the cache is handed back unchanged.
    #[track_caller]
    pub fn destroy<'a>(&'a self, buddy: &BuddyAllocator, handle: CacheHandle<'a>) -> Result<(), (CacheHandle<'a>, SlabError)> {
        let cache = handle.cache;
        if let Err(kind) = cache.release_all(buddy) {
            let error = cache.error(kind);
            return Err((handle, error));
        }
        self.unregister(cache);
        let pointer = NonNull::from(cache).cast::<u8>();
        self.cache_cache.free(buddy, pointer).map_err(|error| (handle, error))
    }
}

impl Default for SlabAllocator {
    fn default() -> Self {
        Self::new()
    }
}

/// A cache made by [`SlabAllocator::create`]; give it back to `destroy` to free it.
pub struct CacheHandle<'a> {
    cache: &'a KmemCache,
}

impl core::ops::Deref for CacheHandle<'_> {
    type Target = KmemCache;
    fn deref(&self) -> &KmemCache {
        self.cache
    }
}

impl fmt::Debug for CacheHandle<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "CacheHandle({})", self.cache.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::buddy::tests::Arena;
    use proptest::prelude::*;

    const MIB: usize = 1 << 20;

    fn setup(megabytes: usize) -> (Arena, BuddyAllocator) {
        let arena = Arena::new(megabytes * MIB, 0x4000_0000);
        let buddy = arena.allocator();
        (arena, buddy)
    }

    fn fill(object: NonNull<u8>, size: usize, byte: u8) {
        // SAFETY: the object is allocated to the test and `size` bytes long.
        unsafe { core::ptr::write_bytes(object.as_ptr(), byte, size) };
    }

    fn holds(object: NonNull<u8>, size: usize, byte: u8) -> bool {
        // SAFETY: as in `fill`.
        unsafe { core::slice::from_raw_parts(object.as_ptr(), size) }.iter().all(|&b| b == byte)
    }

    #[test]
    fn layouts_are_aligned_and_sized() {
        for (size, align) in [(1, 1), (8, 8), (24, 8), (96, 32), (100, 64), (4096, 4096), (8192, 8192), (5000, 8)] {
            for debug in [false, true] {
                let layout = slot_layout(size, align, debug, false).unwrap();
                assert_eq!(layout.slot_size % align.max(8), 0);
                assert_eq!(layout.object_offset % align.max(8), 0);
                assert!(layout.objects_per_slab >= 1);
                assert!(layout.slot_size * layout.objects_per_slab <= PAGE_SIZE << layout.order);
                assert!(PAGE_SIZE << layout.order >= align);
                if !debug {
                    assert!(layout.objects_per_slab >= 4 || layout.order >= PREFERRED_MAX_SLAB_ORDER);
                }
            }
        }
        assert!(slot_layout(0, 8, false, false).is_none());
        assert!(slot_layout(8, 3, false, false).is_none());
        assert!(slot_layout(8 << 20, 8, false, false).is_none());
        assert_eq!(slot_layout(64, 8, false, false).unwrap().slot_size, 64);
    }

    #[test]
    fn slot_index_divides_exactly() {
        for slot in (8..=(PAGE_SIZE << MAX_ORDER)).step_by(8).filter(|slot| slot % 4096 == 8 || *slot < 4096 || slot.is_power_of_two()) {
            let layout = SlotLayout {
                object_offset: 0,
                free_pointer_offset: 0,
                slot_size: slot,
                order: 0,
                objects_per_slab: 1,
                slot_reciprocal: u64::MAX / slot as u64 + 1,
            };
            for offset in [0, 1, slot - 1, slot, slot + 1, 3 * slot - 1, 3 * slot, (PAGE_SIZE << MAX_ORDER) - 1] {
                assert_eq!(layout.slot_index(offset), offset / slot, "offset {} slot {}", offset, slot);
            }
        }
    }

    #[test]
    fn alloc_free_returns_every_page() {
        let (_arena, buddy) = setup(4);
        let free_at_start = buddy.free_page_count();
        let cache = KmemCache::new("test-48", 48, 8, CacheFlags::NONE, None);
        let mut objects = Vec::new();
        for index in 0..1000 {
            let object = cache.alloc_on(&buddy, index % 3, AllocFlags::NONE).unwrap();
            assert_eq!(object.as_ptr() as usize % 8, 0);
            fill(object, 48, index as u8);
            objects.push(object);
        }
        let statistics = cache.statistics();
        assert_eq!(statistics.active_objects, 1000);
        assert!(statistics.total_objects >= 1000);
        for (index, object) in objects.iter().enumerate() {
            assert!(holds(*object, 48, index as u8));
        }
        for (index, object) in objects.into_iter().enumerate() {
            cache.free_on(&buddy, index % 2, object).unwrap();
        }
        assert_eq!(cache.statistics().active_objects, 0);
        assert!(cache.shrink(&buddy) > 0);
        assert_eq!(cache.statistics().total_slabs, 0);
        buddy.drain_per_cpu_pages();
        assert_eq!(buddy.free_page_count(), free_at_start);
        buddy.verify().unwrap();
    }

    #[test]
    fn constructor_runs_once_per_object_and_state_survives_free() {
        fn construct(object: *mut u8) {
            // SAFETY: the slab allocator passes a fresh object of at least 16 bytes.
            unsafe { object.cast::<u64>().write(0x1234_5678) };
        }
        for flags in [CacheFlags::NONE, CacheFlags::DEBUG] {
            let (_arena, buddy) = setup(4);
            let cache = KmemCache::new("constructed", 16, 8, flags, Some(construct));
            let object = cache.alloc(&buddy, AllocFlags::NONE).unwrap();
            // SAFETY: a live 16-byte object.
            assert_eq!(unsafe { object.cast::<u64>().read() }, 0x1234_5678);
            cache.free(&buddy, object).unwrap();
            let again = cache.alloc(&buddy, AllocFlags::NONE).unwrap();
            assert_eq!(again, object);
            // SAFETY: a live 16-byte object.
            assert_eq!(unsafe { again.cast::<u64>().read() }, 0x1234_5678);
        }
    }

    #[test]
    fn bad_frees_are_reported_with_cache_and_caller() {
        let (_arena, buddy) = setup(4);
        let cache = KmemCache::new("checked", 40, 8, CacheFlags::NONE, None);
        let other = KmemCache::new("other", 40, 8, CacheFlags::NONE, None);
        let object = cache.alloc(&buddy, AllocFlags::NONE).unwrap();
        let error = other.free(&buddy, object).unwrap_err();
        assert_eq!(error.kind, SlabErrorKind::WrongCache { owner: "checked" });
        assert_eq!(error.cache, "other");
        assert!(error.caller.file().ends_with("slab.rs"));
        let inside = NonNull::new(object.as_ptr().wrapping_add(4)).unwrap();
        assert_eq!(cache.free(&buddy, inside).unwrap_err().kind, SlabErrorKind::NotObjectStart);
        let mut local = 0u64;
        assert_eq!(cache.free(&buddy, NonNull::from(&mut local).cast()).unwrap_err().kind, SlabErrorKind::ForeignPointer);
        let page = buddy.alloc_pages(0, AllocFlags::NONE).unwrap();
        let page_pointer = NonNull::new(buddy.virtual_address(page) as *mut u8).unwrap();
        assert_eq!(cache.free(&buddy, page_pointer).unwrap_err().kind, SlabErrorKind::ForeignPointer);
        cache.free(&buddy, object).unwrap();
        assert!(matches!(cache.free(&buddy, object).unwrap_err().kind, SlabErrorKind::DoubleFree { .. }));
        let text = format!("{}", other.free(&buddy, cache.alloc(&buddy, AllocFlags::NONE).unwrap()).unwrap_err());
        assert!(text.contains("slab cache other: free of an object that belongs to cache checked, caller"), "{}", text);
    }

    #[test]
    fn debug_mode_catches_double_free_overrun_and_use_after_free() {
        let (_arena, buddy) = setup(4);
        let cache = KmemCache::new("debugged", 20, 8, CacheFlags::DEBUG, None);
        let first = cache.alloc(&buddy, AllocFlags::NONE).unwrap();
        let second = cache.alloc(&buddy, AllocFlags::NONE).unwrap();
        fill(first, 20, 1);
        cache.free(&buddy, first).unwrap();
        let freed_here = line!() - 1;
        cache.free(&buddy, second).unwrap();
        // First was freed before second, so it is not on top of the per-CPU array: only the
        // red zones can tell this double free.
        let error = cache.free(&buddy, first).unwrap_err();
        match error.kind {
            SlabErrorKind::DoubleFree { previous_free: Some(location) } => assert_eq!(location.line(), freed_here),
            other => panic!("expected a double free with its first free, got {:?}", other),
        }
        assert_eq!(error.caller.line(), line!() - 5);
        let third = cache.alloc(&buddy, AllocFlags::NONE).unwrap();
        // SAFETY: deliberately one byte past the 20-byte object, into the red zone.
        unsafe { third.as_ptr().add(20).write(0) };
        assert!(matches!(cache.free(&buddy, third).unwrap_err().kind, SlabErrorKind::RedZoneOverwritten { allocated_at: Some(_) }));
        let fourth = cache.alloc(&buddy, AllocFlags::NONE).unwrap();
        // SAFETY: deliberately one byte before the object, into the left red zone.
        unsafe { fourth.as_ptr().sub(1).write(0) };
        assert!(matches!(cache.free(&buddy, fourth).unwrap_err().kind, SlabErrorKind::RedZoneOverwritten { .. }));
        // Use after free: write into a freed object, then allocate it again.
        let fifth = cache.alloc(&buddy, AllocFlags::NONE).unwrap();
        cache.free(&buddy, fifth).unwrap();
        // SAFETY: deliberately writing to a freed (but still mapped) object.
        unsafe { fifth.as_ptr().add(3).write(0x42) };
        let error = cache.alloc(&buddy, AllocFlags::NONE).unwrap_err();
        assert!(matches!(error.kind, SlabErrorKind::PoisonOverwritten { freed_at: Some(_) }), "{:?}", error);
        // The damaged object was taken out of service; the next allocation is a healthy one.
        let sixth = cache.alloc(&buddy, AllocFlags::NONE).unwrap();
        assert_ne!(sixth, fifth);
        // SAFETY: a live object in a debug cache: freshly allocated objects hold the poison.
        assert_eq!(unsafe { sixth.as_ptr().read() }, POISON_FREE);
    }

    #[test]
    fn exhaustion_is_an_error_and_shrinking_recovers_pages() {
        let (_arena, buddy) = setup(4);
        let big = KmemCache::new("big", 3000, 8, CacheFlags::NONE, None);
        let mut objects = Vec::new();
        while let Ok(object) = big.alloc(&buddy, AllocFlags::NO_WARN) {
            objects.push(object);
        }
        assert!(objects.len() > 900);
        assert_eq!(big.alloc(&buddy, AllocFlags::NO_WARN).unwrap_err().kind, SlabErrorKind::OutOfMemory);
        assert!(buddy.alloc_pages(big.layout.order, AllocFlags::NO_WARN).is_err());
        for object in objects.drain(..) {
            big.free(&buddy, object).unwrap();
        }
        // Freed objects sit in per-CPU arrays and kept free slabs until shrunk.
        assert!(big.shrink(&buddy) > 0);
        assert!(buddy.alloc_pages(MAX_ORDER - 1, AllocFlags::NONE).is_ok());
    }

    #[test]
    fn registry_creates_lists_and_destroys_caches() {
        let (_arena, buddy) = setup(4);
        let slab = Box::new(SlabAllocator::new());
        // SAFETY: the box keeps the registry in place for the test.
        unsafe { slab.register_own_caches() };
        let handle = slab.create(&buddy, "inode_cache", 600, 64, CacheFlags::RECLAIMABLE, None).unwrap();
        let object = handle.alloc(&buddy, AllocFlags::ZERO).unwrap();
        assert_eq!(object.as_ptr() as usize % 64, 0);
        assert!(holds(object, 600, 0));
        let mut names = Vec::new();
        slab.for_each_cache(|cache| names.push(cache.name()));
        assert_eq!(names, vec!["inode_cache", "kmem_cache"]);
        let (handle, error) = slab.destroy(&buddy, handle).unwrap_err();
        assert_eq!(error.kind, SlabErrorKind::CacheBusy { active_objects: 1 });
        handle.free(&buddy, object).unwrap();
        slab.destroy(&buddy, handle).unwrap();
        names.clear();
        slab.for_each_cache(|cache| names.push(cache.name()));
        assert_eq!(names, vec!["kmem_cache"]);
        assert_eq!(slab.create(&buddy, "bad", 0, 8, CacheFlags::NONE, None).unwrap_err().kind, SlabErrorKind::InvalidLayout);
        assert_eq!(slab.cache_cache.statistics().active_objects, 0);
    }

    #[test]
    fn concurrent_threads_on_one_cpu_id_stay_consistent() {
        let (_arena, buddy) = setup(8);
        let cache = KmemCache::new("shared", 64, 64, CacheFlags::NONE, None);
        std::thread::scope(|scope| {
            for thread in 0..2u8 {
                let (cache, buddy) = (&cache, &buddy);
                scope.spawn(move || {
                    let mut live = Vec::new();
                    for round in 0..1000usize {
                        if round % 3 == 2 {
                            let object: NonNull<u8> = live.pop().unwrap();
                            assert!(holds(object, 64, thread));
                            cache.free_on(buddy, 0, object).unwrap();
                        } else {
                            let object = cache.alloc_on(buddy, 0, AllocFlags::NONE).unwrap();
                            fill(object, 64, thread);
                            live.push(object);
                        }
                    }
                    for object in live {
                        assert!(holds(object, 64, thread));
                        cache.free_on(buddy, 0, object).unwrap();
                    }
                });
            }
        });
        assert_eq!(cache.statistics().active_objects, 0);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn random_sequences_keep_counts_and_contents(
            size in 1usize..700,
            align_shift in 3u32..8,
            debug in any::<bool>(),
            operations in proptest::collection::vec((any::<bool>(), 0usize..3, any::<u16>()), 1..300),
        ) {
            let (_arena, buddy) = setup(4);
            let free_at_start = buddy.free_page_count();
            let flags = if debug { CacheFlags::DEBUG } else { CacheFlags::NONE };
            let cache = KmemCache::new("property", size, 1 << align_shift, flags, None);
            let mut live: Vec<(NonNull<u8>, u8)> = Vec::new();
            for (step, (allocate, cpu, pick)) in operations.into_iter().enumerate() {
                if allocate || live.is_empty() {
                    let object = cache.alloc_on(&buddy, cpu, AllocFlags::NONE).unwrap();
                    let start = object.as_ptr() as usize;
                    prop_assert_eq!(start % (1 << align_shift), 0);
                    for &(other, _) in &live {
                        let other = other.as_ptr() as usize;
                        prop_assert!(start + size <= other || other + size <= start, "overlap");
                    }
                    fill(object, size, step as u8);
                    live.push((object, step as u8));
                } else {
                    let (object, byte) = live.swap_remove(pick as usize % live.len());
                    prop_assert!(holds(object, size, byte));
                    cache.free_on(&buddy, cpu, object).unwrap();
                }
                let statistics = cache.statistics();
                prop_assert_eq!(statistics.active_objects, live.len());
                prop_assert_eq!(statistics.total_slabs * statistics.objects_per_slab, statistics.total_objects);
            }
            for (object, byte) in live {
                prop_assert!(holds(object, size, byte));
                cache.free(&buddy, object).unwrap();
            }
            cache.shrink(&buddy);
            prop_assert_eq!(cache.statistics(), CacheStatistics { object_size: cache.layout.slot_size, objects_per_slab: cache.layout.objects_per_slab, pages_per_slab: 1 << cache.layout.order, ..CacheStatistics::default() });
            buddy.drain_per_cpu_pages();
            prop_assert_eq!(buddy.free_page_count(), free_at_start);
            buddy.verify().map_err(TestCaseError::fail)?;
        }
    }
}
