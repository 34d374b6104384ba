//! Memory statistics: `/proc/buddyinfo` and `/proc/meminfo`, in Linux's formats.

use core::fmt::{self, Write};

use super::buddy::{BuddyAllocator, ZoneType};
use super::page::PAGE_SIZE;
use super::slab::{CacheFlags, SlabAllocator};

/// What `/proc/meminfo` reports, in pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MemoryInfo {
    /// Pages the page allocator manages.
    pub total: usize,
    /// Free pages (free lists and per-CPU lists).
    pub free: usize,
    /// Pages that could be had without swapping: free plus reclaimable slab.
    pub available: usize,
    /// Pages in slabs of all caches.
    pub slab: usize,
    /// Pages in slabs of caches created with [`CacheFlags::RECLAIMABLE`].
    pub slab_reclaimable: usize,
}

impl MemoryInfo {
    /// Collects the counters of a page allocator and its slab caches.
    pub fn collect(buddy: &BuddyAllocator, slab: &SlabAllocator) -> MemoryInfo {
        let (mut slab_pages, mut reclaimable) = (0, 0);
        slab.for_each_cache(|cache| {
            let pages = cache.slab_pages();
            slab_pages += pages;
            if cache.flags().contains(CacheFlags::RECLAIMABLE) {
                reclaimable += pages;
            }
        });
        let free = buddy.free_page_count();
        MemoryInfo {
            total: buddy.managed_page_count(),
            free,
            available: free + reclaimable,
            slab: slab_pages,
            slab_reclaimable: reclaimable,
        }
    }

    /// Writes the `/proc/meminfo` lines. Counters of subsystems that do not exist yet
    /// (page cache, swap, kernel stacks, page tables) are 0.
    pub fn write(&self, out: &mut dyn Write) -> fmt::Result {
        let kilobytes = |pages: usize| pages * (PAGE_SIZE / 1024);
        let lines: [(&str, usize); 13] = [
            ("MemTotal:", self.total),
            ("MemFree:", self.free),
            ("MemAvailable:", self.available),
            ("Buffers:", 0),
            ("Cached:", 0),
            ("SwapCached:", 0),
            ("SwapTotal:", 0),
            ("SwapFree:", 0),
            ("Slab:", self.slab),
            ("SReclaimable:", self.slab_reclaimable),
            ("SUnreclaim:", self.slab - self.slab_reclaimable),
            ("KernelStack:", 0),
            ("PageTables:", 0),
        ];
        for (label, pages) in lines {
            writeln!(out, "{:<16}{:>8} kB", label, kilobytes(pages))?;
        }
        Ok(())
    }
}

/// Writes `/proc/buddyinfo`: one line per populated zone, free blocks per order.
pub fn write_buddyinfo(buddy: &BuddyAllocator, out: &mut dyn Write) -> fmt::Result {
    for zone in ZoneType::ALL {
        if buddy.zone_managed_pages(zone) == 0 {
            continue;
        }
        write!(out, "Node 0, zone {:>8} ", zone.name())?;
        for count in buddy.free_blocks(zone) {
            write!(out, "{:>6} ", count)?;
        }
        writeln!(out)?;
    }
    Ok(())
}

/// Shows `/proc/buddyinfo` for the kernel's memory manager.
pub fn show_buddyinfo(out: &mut dyn Write) -> fmt::Result {
    match super::MEMORY.buddy() {
        Some(buddy) => write_buddyinfo(buddy, out),
        None => Ok(()),
    }
}

/// Shows `/proc/meminfo` for the kernel's memory manager.
pub fn show_meminfo(out: &mut dyn Write) -> fmt::Result {
    let information = super::MEMORY.buddy().map(|buddy| MemoryInfo::collect(buddy, super::MEMORY.slab())).unwrap_or_default();
    information.write(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::buddy::AllocFlags;

    #[test]
    fn buddyinfo_uses_linux_spacing() {
        let manager = crate::mm::tests::leaked_manager(8);
        let buddy = manager.buddy().unwrap();
        let mut text = String::new();
        write_buddyinfo(buddy, &mut text).unwrap();
        assert_eq!(text, "Node 0, zone   Normal      0      0      1      1      0      1      1      1      1      1      1 \n");
        let _page = buddy.alloc_pages(10, AllocFlags::NONE).unwrap();
        text.clear();
        write_buddyinfo(buddy, &mut text).unwrap();
        assert!(text.ends_with("     1      0 \n"), "{:?}", text);
    }

    #[test]
    fn meminfo_reports_totals_and_slab_in_kilobytes() {
        let manager = crate::mm::tests::leaked_manager(4);
        let buddy = manager.buddy().unwrap();
        let cache = manager.kmem_cache_create("dentry", 192, 8, CacheFlags::RECLAIMABLE, None).unwrap();
        let object = manager.kmem_cache_alloc(&cache, AllocFlags::NONE).unwrap();
        let information = MemoryInfo::collect(buddy, manager.slab());
        assert_eq!(information.total, buddy.managed_page_count());
        assert_eq!(information.slab_reclaimable, 1);
        let mut slab_pages = 0;
        manager.slab().for_each_cache(|cache| slab_pages += cache.statistics().total_slabs * cache.statistics().pages_per_slab);
        assert_eq!(information.slab, slab_pages);
        assert!(information.slab > information.slab_reclaimable);
        let mut text = String::new();
        information.write(&mut text).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], format!("MemTotal:       {:>8} kB", buddy.managed_page_count() * 4));
        assert_eq!(lines[9], "SReclaimable:          4 kB");
        assert!(lines.iter().all(|line| line.len() == 27), "{:?}", lines);
        manager.kmem_cache_free(&cache, object).unwrap();
    }
}
