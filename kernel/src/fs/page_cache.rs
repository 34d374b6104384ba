//! The page cache: a block device's contents cached in 4 KiB pages, with dirty tracking, age-based write-back and the `Cached`/`Dirty`/`Writeback` counters for `/proc/meminfo`.
//!
//! File systems on block devices (ext2) do all their I/O through a [`PageCache`]. Writes
//! dirty pages; [`writeback`] (called periodically by a kernel thread, like Linux's flusher
//! threads) writes pages dirty for longer than an age; `sync`, `fsync` and unmount write all.

use alloc::collections::BTreeMap;
use alloc::sync::{Arc, Weak};
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::block::BlockDevice;
use crate::errno::{Errno, Result};
use crate::sync::SpinLock;

/// Bytes per page.
pub const PAGE_SIZE: usize = 4096;
/// Linux's default `dirty_expire_centisecs` (30 s), in milliseconds.
pub const DIRTY_EXPIRE_MILLISECONDS: u64 = 30_000;

static CACHED_PAGES: AtomicU64 = AtomicU64::new(0);
static DIRTY_PAGES: AtomicU64 = AtomicU64::new(0);
static WRITEBACK_PAGES: AtomicU64 = AtomicU64::new(0);
static CACHES: SpinLock<Vec<Weak<PageCache>>> = SpinLock::new(Vec::new());

/// `Cached:` in `/proc/meminfo`, in KiB.
pub fn cached_kilobytes() -> u64 {
    CACHED_PAGES.load(Ordering::Relaxed) * (PAGE_SIZE as u64 / 1024)
}

/// `Dirty:` in `/proc/meminfo`, in KiB.
pub fn dirty_kilobytes() -> u64 {
    DIRTY_PAGES.load(Ordering::Relaxed) * (PAGE_SIZE as u64 / 1024)
}

/// `Writeback:` in `/proc/meminfo`, in KiB.
pub fn writeback_kilobytes() -> u64 {
    WRITEBACK_PAGES.load(Ordering::Relaxed) * (PAGE_SIZE as u64 / 1024)
}

/// Writes back, in every page cache, the pages dirty for at least `older_than_milliseconds`
/// (0: all). Returns the pages written; the first error is returned after trying them all.
pub fn writeback(older_than_milliseconds: u64) -> Result<usize> {
    let caches: Vec<Arc<PageCache>> = {
        let mut list = CACHES.lock();
        list.retain(|cache| cache.strong_count() > 0);
        list.iter().filter_map(Weak::upgrade).collect()
    };
    let mut written = 0;
    let mut first_error = None;
    for cache in caches {
        match cache.writeback(older_than_milliseconds) {
            Ok(count) => written += count,
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    first_error.map_or(Ok(written), Err)
}

struct Page {
    data: Vec<u8>,
    dirty_since: Option<u64>,
    last_used: u64,
}

struct CacheState {
    pages: BTreeMap<u64, Page>,
    by_use: BTreeMap<u64, u64>,
    use_clock: u64,
    statistics: PageCacheStatistics,
}

/// One cache's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageCacheStatistics {
    /// Page lookups found in the cache.
    pub hits: u64,
    /// Page lookups that read the device.
    pub misses: u64,
    /// Pages written to the device.
    pub written_back: u64,
    /// Pages dropped to make room.
    pub evictions: u64,
    /// Pages held now.
    pub pages: u64,
    /// Dirty pages now.
    pub dirty: u64,
}

/// A block device's page cache.
pub struct PageCache {
    device: Arc<dyn BlockDevice>,
    capacity_pages: usize,
    clock: fn() -> u64,
    /// A sleeping lock: page reads and write-back wait for the disk under it.
    state: crate::sync::Mutex<CacheState>,
}

fn uptime_milliseconds() -> u64 {
    crate::time::since_boot_nanoseconds() / 1_000_000
}

impl PageCache {
    /// A cache of at most `capacity_pages` pages over `device`, registered for [`writeback`].
    pub fn new(device: Arc<dyn BlockDevice>, capacity_pages: usize) -> Arc<Self> {
        Self::with_clock(device, capacity_pages, uptime_milliseconds)
    }

    /// As [`Self::new`] with a millisecond clock for dirty ages (tests).
    pub fn with_clock(device: Arc<dyn BlockDevice>, capacity_pages: usize, clock: fn() -> u64) -> Arc<Self> {
        let cache = Arc::new(PageCache {
            device,
            capacity_pages: capacity_pages.max(4),
            clock,
            state: crate::sync::Mutex::new(CacheState {
                pages: BTreeMap::new(),
                by_use: BTreeMap::new(),
                use_clock: 0,
                statistics: PageCacheStatistics::default(),
            }),
        });
        let mut caches = CACHES.lock();
        // Forget caches already dropped, so mounting and unmounting many times (the fuzzer)
        // does not grow the list.
        caches.retain(|cache| cache.strong_count() > 0);
        caches.push(Arc::downgrade(&cache));
        drop(caches);
        cache
    }

    /// The device under the cache.
    pub fn device(&self) -> &Arc<dyn BlockDevice> {
        &self.device
    }

    /// Size of the device in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.device.size_bytes()
    }

    /// Counters.
    pub fn statistics(&self) -> PageCacheStatistics {
        let state = self.state.lock();
        PageCacheStatistics {
            pages: state.pages.len() as u64,
            dirty: state.pages.values().filter(|page| page.dirty_since.is_some()).count() as u64,
            ..state.statistics
        }
    }

    fn page_bytes(&self, index: u64) -> usize {
        let start = index * PAGE_SIZE as u64;
        (self.device.size_bytes().saturating_sub(start)).min(PAGE_SIZE as u64) as usize
    }

    fn write_page(&self, index: u64, data: &[u8]) -> Result<()> {
        let length = self.page_bytes(index);
        WRITEBACK_PAGES.fetch_add(1, Ordering::Relaxed);
        let block_size = self.device.block_size();
        let result = self.device.write_blocks(index * (PAGE_SIZE / block_size) as u64, &data[..length]);
        WRITEBACK_PAGES.fetch_sub(1, Ordering::Relaxed);
        result
    }

    /// Makes page `index` present (reading it unless `will_overwrite`), marks it used.
    fn ensure_page<'a>(&self, state: &'a mut CacheState, index: u64, will_overwrite: bool) -> Result<&'a mut Page> {
        state.use_clock += 1;
        let now = state.use_clock;
        if state.pages.contains_key(&index) {
            state.statistics.hits += 1;
        } else {
            state.statistics.misses += 1;
            let length = self.page_bytes(index);
            if length == 0 {
                return Err(Errno::EINVAL);
            }
            let mut data = vec![0u8; PAGE_SIZE];
            if !will_overwrite {
                let block_size = self.device.block_size();
                self.device.read_blocks(index * (PAGE_SIZE / block_size) as u64, &mut data[..length])?;
            }
            self.make_room(state)?;
            state.pages.insert(index, Page { data, dirty_since: None, last_used: 0 });
            CACHED_PAGES.fetch_add(1, Ordering::Relaxed);
        }
        let page = state.pages.get_mut(&index).ok_or(Errno::EIO)?;
        let previous = page.last_used;
        page.last_used = now;
        state.by_use.remove(&previous);
        state.by_use.insert(now, index);
        state.pages.get_mut(&index).ok_or(Errno::EIO)
    }

    fn make_room(&self, state: &mut CacheState) -> Result<()> {
        while state.pages.len() >= self.capacity_pages {
            let Some((_, index)) = state.by_use.pop_first() else { return Ok(()) };
            let Some(page) = state.pages.remove(&index) else { continue };
            if page.dirty_since.is_some() {
                self.write_page(index, &page.data)?;
                DIRTY_PAGES.fetch_sub(1, Ordering::Relaxed);
                state.statistics.written_back += 1;
            }
            CACHED_PAGES.fetch_sub(1, Ordering::Relaxed);
            state.statistics.evictions += 1;
        }
        Ok(())
    }

    /// Reads `buffer.len()` bytes at byte `offset` of the device.
    pub fn read(&self, offset: u64, buffer: &mut [u8]) -> Result<()> {
        let end = offset.checked_add(buffer.len() as u64).ok_or(Errno::EINVAL)?;
        if end > self.device.size_bytes() {
            return Err(Errno::EIO);
        }
        let mut state = self.state.lock();
        let mut done = 0;
        while done < buffer.len() {
            let position = offset + done as u64;
            let index = position / PAGE_SIZE as u64;
            let within = (position % PAGE_SIZE as u64) as usize;
            let count = (PAGE_SIZE - within).min(buffer.len() - done);
            let page = self.ensure_page(&mut state, index, false)?;
            buffer[done..done + count].copy_from_slice(&page.data[within..within + count]);
            done += count;
        }
        Ok(())
    }

    /// Writes `data` at byte `offset` of the device into the cache, dirtying pages.
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<()> {
        let end = offset.checked_add(data.len() as u64).ok_or(Errno::EINVAL)?;
        if end > self.device.size_bytes() {
            return Err(Errno::EIO);
        }
        if self.device.is_read_only() {
            return Err(Errno::EROFS);
        }
        let now = (self.clock)();
        let mut state = self.state.lock();
        let mut done = 0;
        while done < data.len() {
            let position = offset + done as u64;
            let index = position / PAGE_SIZE as u64;
            let within = (position % PAGE_SIZE as u64) as usize;
            let count = (PAGE_SIZE - within).min(data.len() - done);
            let whole = within == 0 && count == self.page_bytes(index);
            let page = self.ensure_page(&mut state, index, whole)?;
            page.data[within..within + count].copy_from_slice(&data[done..done + count]);
            if page.dirty_since.is_none() {
                page.dirty_since = Some(now);
                DIRTY_PAGES.fetch_add(1, Ordering::Relaxed);
            }
            done += count;
        }
        Ok(())
    }

    /// Writes pages dirty for at least `older_than_milliseconds`, in page order (so the
    /// request queue merges neighbours). Returns how many.
    pub fn writeback(&self, older_than_milliseconds: u64) -> Result<usize> {
        let now = (self.clock)();
        let mut state = self.state.lock();
        let due: Vec<u64> = state
            .pages
            .iter()
            .filter(|(_, page)| page.dirty_since.is_some_and(|since| now.saturating_sub(since) >= older_than_milliseconds))
            .map(|(&index, _)| index)
            .collect();
        let mut first_error = None;
        let mut written = 0;
        for index in due {
            let Some(page) = state.pages.get(&index) else { continue };
            match self.write_page(index, &page.data) {
                Ok(()) => {
                    if let Some(page) = state.pages.get_mut(&index) {
                        page.dirty_since = None;
                    }
                    DIRTY_PAGES.fetch_sub(1, Ordering::Relaxed);
                    state.statistics.written_back += 1;
                    written += 1;
                }
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        first_error.map_or(Ok(written), Err)
    }

    /// Writes every dirty page, then flushes the device.
    pub fn sync(&self) -> Result<()> {
        self.writeback(0)?;
        self.device.flush()
    }

    /// Drops every clean page (dirty pages stay).
    pub fn drop_clean(&self) {
        let mut state = self.state.lock();
        let clean: Vec<(u64, u64)> =
            state.pages.iter().filter(|(_, page)| page.dirty_since.is_none()).map(|(&index, page)| (index, page.last_used)).collect();
        for (index, last_used) in clean {
            state.pages.remove(&index);
            state.by_use.remove(&last_used);
            CACHED_PAGES.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for PageCache {
    fn drop(&mut self) {
        let state = self.state.lock();
        let dirty = state.pages.values().filter(|page| page.dirty_since.is_some()).count() as u64;
        CACHED_PAGES.fetch_sub(state.pages.len() as u64, Ordering::Relaxed);
        DIRTY_PAGES.fetch_sub(dirty, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{QueuedDevice, RamDisk, SchedulerKind};
    use std::sync::atomic::AtomicU64 as TestClock;

    static NOW: TestClock = TestClock::new(0);
    fn test_clock() -> u64 {
        NOW.load(Ordering::Relaxed)
    }

    #[test]
    fn caches_reads_and_writes_back_by_age_through_a_merging_queue() {
        let disk = Arc::new(RamDisk::new("ram9", 512, 256));
        let queued: Arc<QueuedDevice> = Arc::new(QueuedDevice::new(disk.clone(), SchedulerKind::Deadline));
        let cache = PageCache::with_clock(queued.clone(), 64, test_clock);
        NOW.store(1_000, Ordering::Relaxed);
        cache.write(100, &[1; 10_000]).unwrap();
        NOW.store(20_000, Ordering::Relaxed);
        cache.write(60_000, b"late").unwrap();
        assert_eq!(cache.statistics().dirty, 4);
        assert_eq!(disk.statistics().writes_completed, 0, "nothing written before write-back");
        let mut back = vec![0u8; 10_000];
        cache.read(100, &mut back).unwrap();
        assert_eq!(back, vec![1; 10_000]);
        NOW.store(31_500, Ordering::Relaxed);
        assert_eq!(cache.writeback(DIRTY_EXPIRE_MILLISECONDS).unwrap(), 3, "only the old pages");
        assert_eq!(cache.statistics().dirty, 1);
        queued.flush().unwrap();
        assert_eq!(disk.statistics().writes_completed, 1, "three adjacent pages merged into one device write");
        assert_eq!(&disk.snapshot()[100..110], &[1; 10]);
        cache.sync().unwrap();
        assert_eq!(&disk.snapshot()[60_000..60_004], b"late");
        assert_eq!(cache.statistics().dirty, 0);
    }

    #[test]
    fn eviction_writes_dirty_pages_and_counters_follow() {
        let disk = Arc::new(RamDisk::new("ram8", 4096, 32));
        let cache = PageCache::with_clock(disk.clone(), 4, || 0);
        for page in 0..8u64 {
            cache.write(page * 4096, &[page as u8 + 1; 4096]).unwrap();
        }
        let statistics = cache.statistics();
        assert_eq!(statistics.pages, 4);
        assert_eq!(statistics.evictions, 4);
        assert_eq!(statistics.misses, 8);
        assert!(cached_kilobytes() >= 16);
        assert_eq!(disk.snapshot()[0], 1, "evicted dirty page was written");
        let mut byte = [0u8; 1];
        cache.read(4096 * 2 + 7, &mut byte).unwrap();
        assert_eq!(byte, [3]);
        assert_eq!(cache.read(32 * 4096, &mut byte), Err(Errno::EIO));
        // The cache is registered for the flush thread's global `writeback`. The test calls
        // the cache's own write-back: the global one would also lock the caches of other
        // tests running at the same time, and on the host every thread is "task 0" to the
        // sleeping mutex, which would take the contention for a recursive lock.
        assert!(CACHES.lock().iter().any(|registered| registered.ptr_eq(&Arc::downgrade(&cache))));
        assert_eq!(cache.writeback(0).map(|count| count >= 3), Ok(true));
        assert_eq!(cache.statistics().dirty, 0);
        let _ = dirty_kilobytes();
        assert_eq!(writeback_kilobytes() % 4, 0);
    }
}
