//! Physical page-frame metadata (Linux's `struct page`): one [`Page`] per 4 KiB frame of the managed range.
//!
//! Every field is an atomic accessed with `Relaxed` ordering: the lock that owns a page at a
//! given moment (its zone's lock while free, its slab cache's lock while a slab) orders the
//! accesses, and atomics make shared `&Page` references sound without `unsafe` at each use.

use core::sync::atomic::{AtomicU32, AtomicU8, AtomicUsize, Ordering::Relaxed};

/// log2 of the page size.
pub const PAGE_SHIFT: u32 = 12;
/// Bytes in a page.
pub const PAGE_SIZE: usize = 1 << PAGE_SHIFT;
/// The "no page" value of page-index links.
pub const NO_PAGE: u32 = u32::MAX;

/// Who a page belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum PageOwner {
    /// Free: in the buddy allocator's free lists or a per-CPU page list.
    Free = 0,
    /// Part of a slab of a slab cache.
    Slab = 1,
    /// Allocated by kernel code through `alloc_pages` or a large `kmalloc`.
    Kernel = 2,
    /// Never allocatable: holes, firmware, the kernel image, the page array itself.
    Reserved = 3,
    /// Mapped into a user address space (for the process subsystem).
    User = 4,
}

impl PageOwner {
    #[inline]
    fn from_u8(value: u8) -> PageOwner {
        match value {
            0 => PageOwner::Free,
            1 => PageOwner::Slab,
            2 => PageOwner::Kernel,
            4 => PageOwner::User,
            _ => PageOwner::Reserved,
        }
    }
}

/// Page flag bits (Linux's `PG_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PageFlags(pub u32);

impl PageFlags {
    /// The first page of a free block on a buddy free list (`PageBuddy`).
    pub const BUDDY: PageFlags = PageFlags(1 << 0);
    /// The first page of an allocated block of order > 0 (`PG_head`).
    pub const HEAD: PageFlags = PageFlags(1 << 1);
    /// A page after the first of an allocated block; `private` holds the head's index.
    pub const TAIL: PageFlags = PageFlags(1 << 2);
    /// Free on a per-CPU page list.
    pub const PER_CPU: PageFlags = PageFlags(1 << 3);
    /// Never allocatable (`PG_reserved`).
    pub const RESERVED: PageFlags = PageFlags(1 << 4);

    /// Whether every bit of `other` is set.
    #[inline]
    pub const fn contains(self, other: PageFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

/// Metadata of one physical page frame.
#[derive(Debug)]
pub struct Page {
    flags: AtomicU32,
    order: AtomicU8,
    owner: AtomicU8,
    zone: AtomicU8,
    reference_count: AtomicU32,
    /// Next page index on whichever list holds the page (free list, slab list).
    pub(crate) next: AtomicU32,
    /// Previous page index on a doubly-linked list.
    pub(crate) prev: AtomicU32,
    /// Owner-specific word: a slab's cache address; a tail page's head index.
    pub(crate) private: AtomicUsize,
    /// A slab's first free object address (0: none).
    pub(crate) freelist: AtomicUsize,
    /// A slab's objects in use.
    pub(crate) in_use: AtomicU32,
}

impl Page {
    /// A reserved page with no links.
    pub const fn new() -> Page {
        Page {
            flags: AtomicU32::new(PageFlags::RESERVED.0),
            order: AtomicU8::new(0),
            owner: AtomicU8::new(PageOwner::Reserved as u8),
            zone: AtomicU8::new(0),
            reference_count: AtomicU32::new(1),
            next: AtomicU32::new(NO_PAGE),
            prev: AtomicU32::new(NO_PAGE),
            private: AtomicUsize::new(0),
            freelist: AtomicUsize::new(0),
            in_use: AtomicU32::new(0),
        }
    }

    /// The flag bits.
    #[inline]
    pub fn flags(&self) -> PageFlags {
        PageFlags(self.flags.load(Relaxed))
    }

    /// Whether all of `flags` are set.
    #[inline]
    pub fn has(&self, flags: PageFlags) -> bool {
        self.flags().contains(flags)
    }

    pub(crate) fn set_flags(&self, flags: PageFlags) {
        self.flags.store(flags.0, Relaxed);
    }

    pub(crate) fn remove_flags(&self, flags: PageFlags) {
        self.flags.fetch_and(!flags.0, Relaxed);
    }

    /// The order of the block this page heads (meaningful for heads and free blocks).
    #[inline]
    pub fn order(&self) -> u32 {
        u32::from(self.order.load(Relaxed))
    }

    pub(crate) fn set_order(&self, order: u32) {
        self.order.store(order as u8, Relaxed);
    }

    /// Who owns the page.
    #[inline]
    pub fn owner(&self) -> PageOwner {
        PageOwner::from_u8(self.owner.load(Relaxed))
    }

    pub(crate) fn set_owner(&self, owner: PageOwner) {
        self.owner.store(owner as u8, Relaxed);
    }

    /// Index of the zone the page belongs to.
    pub fn zone_index(&self) -> usize {
        usize::from(self.zone.load(Relaxed))
    }

    pub(crate) fn set_zone_index(&self, zone: usize) {
        self.zone.store(zone as u8, Relaxed);
    }

    /// The reference count (1 for a page just allocated, 0 for a free page).
    pub fn reference_count(&self) -> u32 {
        self.reference_count.load(Relaxed)
    }

    pub(crate) fn set_reference_count(&self, count: u32) {
        self.reference_count.store(count, Relaxed);
    }

    /// Takes one more reference (Linux's `get_page`).
    pub fn get(&self) {
        self.reference_count.fetch_add(1, Relaxed);
    }

    /// Drops one reference and says whether it was the last (Linux's `put_page_testzero`).
    pub fn put(&self) -> bool {
        self.reference_count.fetch_sub(1, Relaxed) == 1
    }
}

impl Default for Page {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_pages_are_reserved_and_flags_compose() {
        let page = Page::new();
        assert_eq!(page.owner(), PageOwner::Reserved);
        assert!(page.has(PageFlags::RESERVED));
        page.set_flags(PageFlags(PageFlags::BUDDY.0 | PageFlags::HEAD.0));
        assert!(page.has(PageFlags::BUDDY) && page.has(PageFlags::HEAD));
        page.remove_flags(PageFlags::BUDDY);
        assert_eq!(page.flags(), PageFlags::HEAD);
        for owner in [PageOwner::Free, PageOwner::Slab, PageOwner::Kernel, PageOwner::Reserved, PageOwner::User] {
            page.set_owner(owner);
            assert_eq!(page.owner(), owner);
        }
    }

    #[test]
    fn reference_counting_reports_the_last_put() {
        let page = Page::new();
        page.get();
        assert_eq!(page.reference_count(), 2);
        assert!(!page.put());
        assert!(page.put());
        assert_eq!(page.reference_count(), 0);
    }
}
