//! Typed kernel objects in their own named slab caches: [`TypedCache`], the reference-counted [`SlabArc`] / [`SlabWeak`] and the owning [`SlabBox`].
//!
//! Stable Rust has no `Arc::new_in`, so subsystems whose objects Linux keeps in named caches
//! (`task_struct`, `inode_cache`, `dentry`) use these instead of `Arc`/`Box`. A cache is a
//! `static`:
//!
//! ```ignore
//! static TASK_CACHE: TypedCache<Task> = TypedCache::new("task_struct");
//! let task = SlabArc::try_new(&TASK_CACHE, task)?;
//! ```
//!
//! Each object is one slab object holding a header (strong count, weak count, the cache)
//! and the value. The cache registers itself with its memory manager (so it shows in
//! `/proc/slabinfo` and `slabtop`) on its first allocation. Allocation failure is an error,
//! never a panic. Before the memory manager is initialized (host tests of other
//! subsystems), objects come from the global allocator instead. The counts follow `Arc`:
//! the value is dropped when the last [`SlabArc`] goes; the object goes back to its cache
//! when the last [`SlabWeak`] goes too (all strong references together hold one weak
//! reference).

use core::alloc::Layout;
use core::fmt;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};
use core::panic::Location;
use core::ptr::{addr_of, addr_of_mut, NonNull};
use core::sync::atomic::{fence, AtomicUsize, Ordering};

use super::buddy::AllocFlags;
use super::slab::{CacheFlags, CacheStatistics, KmemCache, SlabError, SlabErrorKind};
use super::{MemoryManager, MEMORY};
use crate::sync::Once;

/// Highest reference count; past it a clone panics (reaching it needs leaked references).
const MAX_REFERENCE_COUNT: usize = isize::MAX as usize;

/// One slab object: the counts, the cache it came from, the value.
#[repr(C)]
struct SlabObject<T: 'static> {
    strong: AtomicUsize,
    weak: AtomicUsize,
    cache: &'static TypedCache<T>,
    /// Taken from the global allocator because the memory manager was not up (host tests).
    from_heap: bool,
    value: T,
}

/// A named slab cache of `T` objects (with their reference counts), for [`SlabArc`] and
/// [`SlabBox`].
pub struct TypedCache<T: 'static> {
    cache: KmemCache,
    memory: &'static MemoryManager,
    registered: Once<()>,
    _marker: PhantomData<fn() -> T>,
}

impl<T: 'static> TypedCache<T> {
    /// A cache called `name` in the kernel's memory manager. In a `static`, a type whose
    /// objects cannot be cached is a compile-time error.
    pub const fn new(name: &'static str) -> TypedCache<T> {
        Self::with_flags(name, CacheFlags::NONE, &MEMORY)
    }

    /// A cache called `name` with creation `flags`, in `memory`.
    pub const fn with_flags(name: &'static str, flags: CacheFlags, memory: &'static MemoryManager) -> TypedCache<T> {
        TypedCache {
            cache: KmemCache::new(name, core::mem::size_of::<SlabObject<T>>(), core::mem::align_of::<SlabObject<T>>(), flags, None),
            memory,
            registered: Once::new(),
            _marker: PhantomData,
        }
    }

    /// The underlying slab cache.
    pub fn kmem_cache(&self) -> &KmemCache {
        &self.cache
    }

    /// The cache's counters, as `/proc/slabinfo` prints them.
    pub fn statistics(&self) -> CacheStatistics {
        self.cache.statistics()
    }

    /// Allocates an object holding `value` with the given counts: from the cache, or, while
    /// the memory manager is not initialized (host tests of other subsystems), from the
    /// global allocator (which in the kernel is that same manager, so it fails cleanly).
    #[track_caller]
    fn allocate(&'static self, value: T, strong: usize, weak: usize) -> Result<NonNull<SlabObject<T>>, SlabError> {
        let from_heap = self.memory.buddy().is_none();
        let object = if from_heap {
            // SAFETY: `SlabObject<T>` has a non-zero size (it holds the counts).
            let memory = unsafe { alloc::alloc::alloc(Layout::new::<SlabObject<T>>()) };
            NonNull::new(memory.cast::<SlabObject<T>>()).ok_or(SlabError {
                kind: SlabErrorKind::NotInitialized,
                cache: self.cache.name(),
                caller: Location::caller(),
            })?
        } else {
            // SAFETY: `self` is `'static`, so the cache never moves, and `Once` registers it
            // exactly once with the one manager it belongs to.
            self.registered.call_once(|| unsafe { self.memory.slab().register(&self.cache) });
            self.memory.kmem_cache_alloc(&self.cache, AllocFlags::NONE)?.cast::<SlabObject<T>>()
        };
        let contents = SlabObject { strong: AtomicUsize::new(strong), weak: AtomicUsize::new(weak), cache: self, from_heap, value };
        // SAFETY: a fresh object of this cache (or of the heap with its layout): sized and
        // aligned for `SlabObject<T>` (the cache was made from its layout) and ours alone.
        unsafe { object.as_ptr().write(contents) };
        Ok(object)
    }

    /// Returns an object whose value has been dropped or moved out.
    fn release(&self, object: NonNull<SlabObject<T>>) {
        // SAFETY: the header is intact (only the value is gone).
        let from_heap = unsafe { *addr_of!((*object.as_ptr()).from_heap) };
        if from_heap {
            // SAFETY: allocated in `allocate` from the global allocator with this layout.
            unsafe { alloc::alloc::dealloc(object.as_ptr().cast(), Layout::new::<SlabObject<T>>()) };
        } else {
            // Errors are reported (logged) by the slab allocator; there is nothing more to do.
            let _ = self.memory.kmem_cache_free(&self.cache, object.cast());
        }
    }
}

impl<T: 'static> fmt::Debug for TypedCache<T> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "TypedCache({})", self.cache.name())
    }
}

/// A shared reference to a `T` in a [`TypedCache`] (an `Arc` whose memory is a slab object).
pub struct SlabArc<T: 'static> {
    object: NonNull<SlabObject<T>>,
    _marker: PhantomData<SlabObject<T>>,
}

// SAFETY: as for `Arc`: clones on several CPUs share the value (so `T: Sync`) and the last
// one drops it wherever it is (so `T: Send`); the counts are atomic.
unsafe impl<T: Send + Sync + 'static> Send for SlabArc<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync + 'static> Sync for SlabArc<T> {}

impl<T: 'static> SlabArc<T> {
    /// Puts `value` in a new object of `cache`; fails (dropping `value`) if memory is short.
    #[track_caller]
    pub fn try_new(cache: &'static TypedCache<T>, value: T) -> Result<SlabArc<T>, SlabError> {
        Ok(SlabArc { object: cache.allocate(value, 1, 1)?, _marker: PhantomData })
    }

    fn strong(&self) -> &AtomicUsize {
        // SAFETY: the object lives while a strong reference does; only the count is borrowed.
        unsafe { &*addr_of!((*self.object.as_ptr()).strong) }
    }

    fn weak(&self) -> &AtomicUsize {
        // SAFETY: as in `strong`.
        unsafe { &*addr_of!((*self.object.as_ptr()).weak) }
    }

    /// A weak reference to the same object.
    pub fn downgrade(this: &SlabArc<T>) -> SlabWeak<T> {
        let old = this.weak().fetch_add(1, Ordering::Relaxed);
        assert!(old < MAX_REFERENCE_COUNT, "slab object weak count overflow");
        SlabWeak { object: this.object, _marker: PhantomData }
    }

    /// Whether both point to the same object.
    pub fn ptr_eq(this: &SlabArc<T>, other: &SlabArc<T>) -> bool {
        this.object == other.object
    }

    /// The address of the value.
    pub fn as_ptr(this: &SlabArc<T>) -> *const T {
        // SAFETY: the object is live; no reference is made.
        unsafe { addr_of!((*this.object.as_ptr()).value) }
    }

    /// Another strong reference to the value at `value`, an address [`as_ptr`](Self::as_ptr)
    /// returned (Linux's `get_task_struct` from a raw task pointer). For holders of a raw
    /// pointer that know a strong reference outlives the call, e.g. a CPU's record of the
    /// task it runs.
    ///
    /// # Safety
    /// `value` must come from `as_ptr` of a `SlabArc<T>` that stays alive (is not dropped)
    /// until this returns.
    pub unsafe fn clone_from_ptr(value: *const T) -> SlabArc<T> {
        let offset = core::mem::offset_of!(SlabObject<T>, value);
        // SAFETY: `value` lies `offset` bytes into its live object (the caller's contract).
        let object = unsafe { NonNull::new_unchecked(value.byte_sub(offset) as *mut SlabObject<T>) };
        let borrowed = core::mem::ManuallyDrop::new(SlabArc { object, _marker: PhantomData });
        SlabArc::clone(&borrowed)
    }

    /// Strong references (a snapshot).
    pub fn strong_count(this: &SlabArc<T>) -> usize {
        this.strong().load(Ordering::Relaxed)
    }

    /// Weak references, not counting the one all strong references share (a snapshot).
    pub fn weak_count(this: &SlabArc<T>) -> usize {
        this.weak().load(Ordering::Relaxed).saturating_sub(1)
    }

    /// The cache the object belongs to.
    pub fn cache(this: &SlabArc<T>) -> &'static TypedCache<T> {
        // SAFETY: the object is live and its header was written at allocation.
        unsafe { *addr_of!((*this.object.as_ptr()).cache) }
    }
}

impl<T: 'static> Clone for SlabArc<T> {
    fn clone(&self) -> SlabArc<T> {
        // Relaxed as in `Arc`: a new reference can only come from an existing one, which
        // already keeps the object alive.
        let old = self.strong().fetch_add(1, Ordering::Relaxed);
        assert!(old < MAX_REFERENCE_COUNT, "slab object reference count overflow");
        SlabArc { object: self.object, _marker: PhantomData }
    }
}

impl<T: 'static> Deref for SlabArc<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the value lives while a strong reference does, and is only shared.
        unsafe { &*addr_of!((*self.object.as_ptr()).value) }
    }
}

impl<T: 'static> Drop for SlabArc<T> {
    fn drop(&mut self) {
        // Release so this reference's uses happen before the drop; the last one acquires
        // them all before dropping the value (as `Arc` does).
        if self.strong().fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        fence(Ordering::Acquire);
        // SAFETY: this was the last strong reference, so no one else can reach the value;
        // it is dropped once, here. Weak references never touch the value.
        unsafe { core::ptr::drop_in_place(addr_of_mut!((*self.object.as_ptr()).value)) };
        // The weak reference all strong ones shared.
        drop(SlabWeak { object: self.object, _marker: PhantomData });
    }
}

impl<T: fmt::Debug + 'static> fmt::Debug for SlabArc<T> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, formatter)
    }
}

impl<T: fmt::Display + 'static> fmt::Display for SlabArc<T> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, formatter)
    }
}

/// A weak reference to a [`SlabArc`]'s object: keeps the memory, not the value.
pub struct SlabWeak<T: 'static> {
    object: NonNull<SlabObject<T>>,
    _marker: PhantomData<SlabObject<T>>,
}

// SAFETY: as for `SlabArc`: upgrading gives a `SlabArc`.
unsafe impl<T: Send + Sync + 'static> Send for SlabWeak<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync + 'static> Sync for SlabWeak<T> {}

impl<T: 'static> SlabWeak<T> {
    fn strong(&self) -> &AtomicUsize {
        // SAFETY: the object's memory lives while a weak reference does; only the count is
        // borrowed (the value may be gone).
        unsafe { &*addr_of!((*self.object.as_ptr()).strong) }
    }

    fn weak(&self) -> &AtomicUsize {
        // SAFETY: as in `strong`.
        unsafe { &*addr_of!((*self.object.as_ptr()).weak) }
    }

    /// A strong reference, unless the value has been dropped.
    pub fn upgrade(&self) -> Option<SlabArc<T>> {
        let strong = self.strong();
        let mut count = strong.load(Ordering::Relaxed);
        loop {
            if count == 0 {
                return None;
            }
            assert!(count < MAX_REFERENCE_COUNT, "slab object reference count overflow");
            // Acquire on success, as `Arc`: pairs with the release of the drop that could
            // otherwise race to zero.
            match strong.compare_exchange_weak(count, count + 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return Some(SlabArc { object: self.object, _marker: PhantomData }),
                Err(current) => count = current,
            }
        }
    }

    /// Strong references left (a snapshot).
    pub fn strong_count(&self) -> usize {
        self.strong().load(Ordering::Relaxed)
    }

    /// Whether both point to the same object.
    pub fn ptr_eq(this: &SlabWeak<T>, other: &SlabWeak<T>) -> bool {
        this.object == other.object
    }
}

impl<T: 'static> Clone for SlabWeak<T> {
    fn clone(&self) -> SlabWeak<T> {
        let old = self.weak().fetch_add(1, Ordering::Relaxed);
        assert!(old < MAX_REFERENCE_COUNT, "slab object weak count overflow");
        SlabWeak { object: self.object, _marker: PhantomData }
    }
}

impl<T: 'static> Drop for SlabWeak<T> {
    fn drop(&mut self) {
        if self.weak().fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        fence(Ordering::Acquire);
        // SAFETY: the header is intact (only the value was dropped); read before the free.
        let cache = unsafe { *addr_of!((*self.object.as_ptr()).cache) };
        cache.release(self.object);
    }
}

impl<T: 'static> fmt::Debug for SlabWeak<T> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "(SlabWeak)")
    }
}

/// An owned `T` in a [`TypedCache`] (a `Box` whose memory is a slab object).
pub struct SlabBox<T: 'static> {
    object: NonNull<SlabObject<T>>,
    _marker: PhantomData<SlabObject<T>>,
}

// SAFETY: a `SlabBox` owns its value as a `Box` does.
unsafe impl<T: Send + 'static> Send for SlabBox<T> {}
// SAFETY: as above; `&SlabBox` only gives `&T`.
unsafe impl<T: Sync + 'static> Sync for SlabBox<T> {}

impl<T: 'static> SlabBox<T> {
    /// Puts `value` in a new object of `cache`; fails (dropping `value`) if memory is short.
    #[track_caller]
    pub fn try_new(cache: &'static TypedCache<T>, value: T) -> Result<SlabBox<T>, SlabError> {
        Ok(SlabBox { object: cache.allocate(value, 1, 1)?, _marker: PhantomData })
    }

    /// Takes the value out and returns the object to its cache.
    pub fn into_inner(this: SlabBox<T>) -> T {
        let this = core::mem::ManuallyDrop::new(this);
        // SAFETY: the box owns the value; it is moved out once and the box is not dropped.
        let value = unsafe { addr_of!((*this.object.as_ptr()).value).read() };
        // SAFETY: the header is intact.
        let cache = unsafe { *addr_of!((*this.object.as_ptr()).cache) };
        cache.release(this.object);
        value
    }
}

impl<T: 'static> Deref for SlabBox<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the box owns the live value.
        unsafe { &*addr_of!((*self.object.as_ptr()).value) }
    }
}

impl<T: 'static> DerefMut for SlabBox<T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the box owns the live value, and `&mut self` makes this borrow unique.
        unsafe { &mut *addr_of_mut!((*self.object.as_ptr()).value) }
    }
}

impl<T: 'static> Drop for SlabBox<T> {
    fn drop(&mut self) {
        // SAFETY: the box owns the value, dropped once here; the header stays intact.
        let cache = unsafe {
            core::ptr::drop_in_place(addr_of_mut!((*self.object.as_ptr()).value));
            *addr_of!((*self.object.as_ptr()).cache)
        };
        cache.release(self.object);
    }
}

impl<T: fmt::Debug + 'static> fmt::Debug for SlabBox<T> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, formatter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::tests::leaked_manager;
    use std::sync::atomic::AtomicUsize as Counter;

    fn leaked_cache<T>(name: &'static str) -> &'static TypedCache<T> {
        Box::leak(Box::new(TypedCache::with_flags(name, CacheFlags::NONE, leaked_manager(4))))
    }

    /// Counts its drops in a shared counter.
    struct Tracked {
        drops: &'static Counter,
        payload: [u64; 5],
    }

    impl Drop for Tracked {
        fn drop(&mut self) {
            self.drops.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counter() -> &'static Counter {
        Box::leak(Box::new(Counter::new(0)))
    }

    #[test]
    fn clone_from_ptr_adds_a_reference_to_the_same_object() {
        let cache = leaked_cache::<Tracked>("test_arc_raw");
        let drops = counter();
        let first = SlabArc::try_new(cache, Tracked { drops, payload: [3; 5] }).unwrap();
        let pointer = SlabArc::as_ptr(&first);
        // SAFETY: `first` is alive throughout.
        let second = unsafe { SlabArc::clone_from_ptr(pointer) };
        assert!(SlabArc::ptr_eq(&first, &second));
        assert_eq!(SlabArc::strong_count(&first), 2);
        assert_eq!(second.payload, [3; 5]);
        drop(first);
        assert_eq!(drops.load(Ordering::SeqCst), 0, "the clone keeps the value alive");
        drop(second);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        assert_eq!(cache.statistics().active_objects, 0);
    }

    #[test]
    fn counts_follow_clones_and_downgrades() {
        let cache = leaked_cache::<Tracked>("test_arc");
        let drops = counter();
        let first = SlabArc::try_new(cache, Tracked { drops, payload: [7; 5] }).unwrap();
        assert_eq!((SlabArc::strong_count(&first), SlabArc::weak_count(&first)), (1, 0));
        let second = first.clone();
        let weak = SlabArc::downgrade(&first);
        assert_eq!((SlabArc::strong_count(&first), SlabArc::weak_count(&first)), (2, 1));
        assert!(SlabArc::ptr_eq(&first, &second));
        assert_eq!(second.payload, [7; 5]);
        assert_eq!(cache.statistics().active_objects, 1);
        drop(first);
        assert_eq!(weak.strong_count(), 1);
        let upgraded = weak.upgrade().unwrap();
        assert!(SlabArc::ptr_eq(&upgraded, &second));
        drop(upgraded);
        drop(second);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        assert!(weak.upgrade().is_none(), "upgrade after the last strong reference went");
        // The weak reference still holds the memory.
        assert_eq!(cache.statistics().active_objects, 1);
        drop(weak);
        assert_eq!(cache.statistics().active_objects, 0);
        assert_eq!(drops.load(Ordering::SeqCst), 1, "the destructor ran exactly once");
    }

    #[test]
    fn objects_come_from_their_own_cache_and_go_back() {
        let cache = leaked_cache::<Tracked>("test_return");
        let drops = counter();
        let objects: Vec<_> = (0..100).map(|index| SlabArc::try_new(cache, Tracked { drops, payload: [index; 5] }).unwrap()).collect();
        let statistics = cache.statistics();
        assert_eq!(statistics.active_objects, 100);
        assert!(statistics.object_size >= core::mem::size_of::<SlabObject<Tracked>>());
        for (index, object) in objects.iter().enumerate() {
            assert_eq!(object.payload, [index as u64; 5]);
            assert!((SlabArc::as_ptr(object) as usize).is_multiple_of(core::mem::align_of::<Tracked>()));
        }
        drop(objects);
        assert_eq!(cache.statistics().active_objects, 0);
        assert_eq!(drops.load(Ordering::SeqCst), 100);
        // The cache registered itself with its manager, so `/proc/slabinfo` lists it.
        let mut names = Vec::new();
        cache.memory.slab().for_each_cache(|each| names.push(each.name()));
        assert_eq!(names.iter().filter(|name| **name == "test_return").count(), 1);
        let mut text = String::new();
        crate::mm::slab_common::write_slabinfo(cache.memory.slab(), &mut text).unwrap();
        assert!(text.lines().any(|line| line.starts_with("test_return ")), "{}", text);
    }

    #[test]
    fn boxes_drop_once_and_return() {
        let cache = leaked_cache::<Tracked>("test_box");
        let drops = counter();
        let mut boxed = SlabBox::try_new(cache, Tracked { drops, payload: [1; 5] }).unwrap();
        boxed.payload[2] = 9;
        assert_eq!(boxed.payload, [1, 1, 9, 1, 1]);
        assert_eq!(cache.statistics().active_objects, 1);
        drop(boxed);
        assert_eq!((drops.load(Ordering::SeqCst), cache.statistics().active_objects), (1, 0));
        let boxed = SlabBox::try_new(cache, Tracked { drops, payload: [3; 5] }).unwrap();
        let value = SlabBox::into_inner(boxed);
        assert_eq!((drops.load(Ordering::SeqCst), cache.statistics().active_objects), (1, 0));
        assert_eq!(value.payload, [3; 5]);
        drop(value);
        assert_eq!(drops.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn exhaustion_is_an_error() {
        let cache = leaked_cache::<[u64; 300]>("test_full");
        let mut objects = Vec::new();
        let error = loop {
            match SlabArc::try_new(cache, [5u64; 300]) {
                Ok(object) => objects.push(object),
                Err(error) => break error,
            }
        };
        assert_eq!(error.kind, SlabErrorKind::OutOfMemory);
        assert!(objects.len() > 500, "a 4 MiB arena holds more than 500 objects of 2.4 KB, got {}", objects.len());
        drop(objects);
        assert!(SlabArc::try_new(cache, [0u64; 300]).is_ok());
    }

    #[test]
    fn without_a_memory_manager_objects_come_from_the_heap() {
        let manager: &'static MemoryManager = Box::leak(Box::new(MemoryManager::new()));
        let cache: &'static TypedCache<Tracked> = Box::leak(Box::new(TypedCache::with_flags("test_heap", CacheFlags::NONE, manager)));
        let drops = counter();
        let shared = SlabArc::try_new(cache, Tracked { drops, payload: [4; 5] }).unwrap();
        let weak = SlabArc::downgrade(&shared);
        let boxed = SlabBox::try_new(cache, Tracked { drops, payload: [6; 5] }).unwrap();
        assert_eq!((shared.payload, boxed.payload), ([4; 5], [6; 5]));
        assert_eq!(cache.statistics().active_objects, 0);
        drop((shared, boxed));
        assert!(weak.upgrade().is_none());
        drop(weak);
        assert_eq!(drops.load(Ordering::SeqCst), 2);
        let mut names = Vec::new();
        manager.slab().for_each_cache(|each| names.push(each.name()));
        assert!(names.is_empty(), "an uninitialized manager registers nothing: {:?}", names);
    }

    #[test]
    fn concurrent_clones_and_drops_free_once() {
        let cache = leaked_cache::<Tracked>("test_threads");
        let drops = counter();
        for round in 0..20u64 {
            let shared = SlabArc::try_new(cache, Tracked { drops, payload: [round; 5] }).unwrap();
            let weak = SlabArc::downgrade(&shared);
            std::thread::scope(|scope| {
                for _ in 0..4 {
                    let (mine, weak) = (shared.clone(), weak.clone());
                    scope.spawn(move || {
                        let mut held = Vec::new();
                        for step in 0..200 {
                            if step % 3 == 0 {
                                if let Some(strong) = weak.upgrade() {
                                    held.push(strong);
                                }
                            } else {
                                held.push(mine.clone());
                            }
                            if held.len() > 8 {
                                held.clear();
                            }
                        }
                        assert!(held.iter().all(|each| each.payload == [round; 5]));
                    });
                }
            });
            assert_eq!(SlabArc::strong_count(&shared), 1);
            drop(shared);
            assert!(weak.upgrade().is_none());
            drop(weak);
        }
        assert_eq!(drops.load(Ordering::SeqCst), 20);
        assert_eq!(cache.statistics().active_objects, 0);
    }

    #[test]
    fn last_drop_on_another_thread_races_with_upgrades() {
        let cache = leaked_cache::<Tracked>("test_race");
        let drops = counter();
        for _ in 0..50 {
            let shared = SlabArc::try_new(cache, Tracked { drops, payload: [0; 5] }).unwrap();
            let weak = SlabArc::downgrade(&shared);
            std::thread::scope(|scope| {
                scope.spawn(move || drop(shared));
                scope.spawn(|| {
                    for _ in 0..100 {
                        if let Some(strong) = weak.upgrade() {
                            assert_eq!(strong.payload, [0; 5]);
                        }
                    }
                });
            });
            assert!(weak.upgrade().is_none());
        }
        assert_eq!(drops.load(Ordering::SeqCst), 50);
        assert_eq!(cache.statistics().active_objects, 0);
    }
}
