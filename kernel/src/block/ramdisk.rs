//! A RAM disk: a block device over memory (a heap buffer, or a static slice such as an initrd).

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::device::{BlockDevice, DiskStatistics};
use crate::errno::{Errno, Result};
use crate::sync::SpinLock;

enum Storage {
    Owned(Vec<u8>),
    Static(&'static mut [u8]),
    StaticReadOnly(&'static [u8]),
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Owned(bytes) => bytes,
            Storage::Static(bytes) => bytes,
            Storage::StaticReadOnly(bytes) => bytes,
        }
    }
}

/// A block device whose blocks are bytes in memory.
pub struct RamDisk {
    name: String,
    block_size: usize,
    block_count: u64,
    read_only: bool,
    storage: SpinLock<Storage>,
    statistics: SpinLock<DiskStatistics>,
    /// A block whose reads fail with `EIO` (`u64::MAX`: none), to test error paths.
    failing_block: AtomicU64,
    /// The largest transfer reported by [`BlockDevice::max_transfer`].
    max_transfer: AtomicUsize,
}

impl RamDisk {
    /// A zero-filled disk of `block_count` blocks of `block_size` bytes.
    pub fn new(name: &str, block_size: usize, block_count: u64) -> Self {
        Self::from_vec(name, block_size, vec![0u8; block_size * block_count as usize])
    }

    /// A disk over `bytes`; a partial last block is not part of the device.
    pub fn from_vec(name: &str, block_size: usize, bytes: Vec<u8>) -> Self {
        Self::build(name, block_size, Storage::Owned(bytes), false)
    }

    /// A writable disk over a static region (e.g. memory the board reserved).
    pub fn from_static(name: &str, block_size: usize, bytes: &'static mut [u8]) -> Self {
        Self::build(name, block_size, Storage::Static(bytes), false)
    }

    /// A read-only disk over a static region (an initrd the boot loader passed).
    pub fn from_static_read_only(name: &str, block_size: usize, bytes: &'static [u8]) -> Self {
        Self::build(name, block_size, Storage::StaticReadOnly(bytes), true)
    }

    fn build(name: &str, block_size: usize, storage: Storage, read_only: bool) -> Self {
        assert!(block_size.is_power_of_two() && (512..=4096).contains(&block_size), "RAM disk block size must be 512..=4096");
        let block_count = (storage.bytes().len() / block_size) as u64;
        RamDisk {
            name: String::from(name),
            block_size,
            block_count,
            read_only,
            storage: SpinLock::new(storage),
            statistics: SpinLock::new(DiskStatistics::default()),
            failing_block: AtomicU64::new(u64::MAX),
            max_transfer: AtomicUsize::new(usize::MAX),
        }
    }

    /// Makes every read that covers `block` fail with `EIO` (`None`: no failures), as a
    /// disk with a bad sector would. Writes still succeed.
    pub fn set_failing_block(&self, block: Option<u64>) {
        self.failing_block.store(block.unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Sets the transfer size the disk reports as its largest (rounded down to whole
    /// blocks, at least one); the disk itself takes any size.
    pub fn set_max_transfer(&self, bytes: usize) {
        self.max_transfer.store((bytes / self.block_size).max(1) * self.block_size, Ordering::Relaxed);
    }

    /// A copy of the whole disk's bytes.
    pub fn snapshot(&self) -> Vec<u8> {
        let storage = self.storage.lock();
        storage.bytes()[..self.block_size * self.block_count as usize].to_vec()
    }

    fn range(&self, first_block: u64, length: usize) -> Result<core::ops::Range<usize>> {
        if length % self.block_size != 0 {
            return Err(Errno::EINVAL);
        }
        let blocks = (length / self.block_size) as u64;
        let end = first_block.checked_add(blocks).ok_or(Errno::EINVAL)?;
        if end > self.block_count {
            return Err(Errno::EINVAL);
        }
        let start = first_block as usize * self.block_size;
        Ok(start..start + length)
    }
}

impl BlockDevice for RamDisk {
    fn name(&self) -> &str {
        &self.name
    }

    fn block_size(&self) -> usize {
        self.block_size
    }

    fn block_count(&self) -> u64 {
        self.block_count
    }

    fn read_blocks(&self, first_block: u64, buffer: &mut [u8]) -> Result<()> {
        let range = self.range(first_block, buffer.len())?;
        let failing_block = self.failing_block.load(Ordering::Relaxed);
        let blocks = (buffer.len() / self.block_size) as u64;
        if (first_block..first_block + blocks).contains(&failing_block) {
            return Err(Errno::EIO);
        }
        buffer.copy_from_slice(&self.storage.lock().bytes()[range]);
        let mut statistics = self.statistics.lock();
        statistics.reads_completed += 1;
        statistics.sectors_read += buffer.len() as u64 / 512;
        Ok(())
    }

    fn write_blocks(&self, first_block: u64, buffer: &[u8]) -> Result<()> {
        if self.read_only {
            return Err(Errno::EROFS);
        }
        let range = self.range(first_block, buffer.len())?;
        match &mut *self.storage.lock() {
            Storage::Owned(bytes) => bytes[range].copy_from_slice(buffer),
            Storage::Static(bytes) => bytes[range].copy_from_slice(buffer),
            Storage::StaticReadOnly(_) => return Err(Errno::EROFS),
        }
        let mut statistics = self.statistics.lock();
        statistics.writes_completed += 1;
        statistics.sectors_written += buffer.len() as u64 / 512;
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        self.statistics.lock().flushes_completed += 1;
        Ok(())
    }

    fn is_read_only(&self) -> bool {
        self.read_only
    }

    fn max_transfer(&self) -> usize {
        self.max_transfer.load(Ordering::Relaxed)
    }

    fn statistics(&self) -> DiskStatistics {
        *self.statistics.lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_writes_and_checks_bounds() {
        let disk = RamDisk::new("ram0", 1024, 8);
        assert_eq!(disk.block_count(), 8);
        assert_eq!(disk.size_bytes(), 8192);
        let data = vec![0x5a; 2048];
        disk.write_blocks(6, &data).unwrap();
        let mut back = vec![0; 2048];
        disk.read_blocks(6, &mut back).unwrap();
        assert_eq!(back, data);
        assert_eq!(disk.write_blocks(7, &data), Err(Errno::EINVAL));
        assert_eq!(disk.read_blocks(0, &mut [0; 100]), Err(Errno::EINVAL));
        assert_eq!(disk.read_blocks(u64::MAX, &mut back), Err(Errno::EINVAL));
        let statistics = disk.statistics();
        assert_eq!((statistics.reads_completed, statistics.writes_completed, statistics.sectors_written), (1, 1, 4));
        assert_eq!(disk.snapshot()[6 * 1024], 0x5a);
    }

    #[test]
    fn static_read_only_disk_refuses_writes() {
        static IMAGE: [u8; 1024] = [7; 1024];
        let disk = RamDisk::from_static_read_only("initrd", 512, &IMAGE);
        assert!(disk.is_read_only());
        assert_eq!(disk.write_blocks(0, &[0; 512]), Err(Errno::EROFS));
        let mut block = [0; 512];
        disk.read_blocks(1, &mut block).unwrap();
        assert_eq!(block, [7; 512]);
    }

    #[test]
    fn a_failing_block_fails_the_reads_that_cover_it() {
        let disk = RamDisk::new("ram2", 512, 8);
        disk.set_failing_block(Some(5));
        let mut buffer = vec![0; 1024];
        assert_eq!(disk.read_blocks(4, &mut buffer), Err(Errno::EIO));
        assert_eq!(disk.read_blocks(5, &mut buffer[..512]), Err(Errno::EIO));
        assert_eq!(disk.read_blocks(6, &mut buffer), Ok(()));
        assert_eq!(disk.read_blocks(3, &mut buffer), Ok(()));
        assert_eq!(disk.write_blocks(5, &[1; 512]), Ok(()), "writes still succeed");
        disk.set_failing_block(None);
        assert_eq!(disk.read_blocks(4, &mut buffer), Ok(()));
        assert_eq!(buffer[512], 1);
        assert_eq!(disk.statistics().reads_completed, 3, "failed reads are not counted as completed");
        assert_eq!(disk.max_transfer(), usize::MAX);
        disk.set_max_transfer(1500);
        assert_eq!(disk.max_transfer(), 1024);
    }

    #[test]
    fn partial_last_block_is_not_exposed() {
        let disk = RamDisk::from_vec("ram1", 512, vec![1; 1300]);
        assert_eq!(disk.block_count(), 2);
        assert_eq!(disk.snapshot().len(), 1024);
    }
}
