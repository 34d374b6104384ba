//! The block-device interface every disk driver implements (virtio-blk, RAM disk, partitions).

use alloc::vec;

use crate::errno::{Errno, Result};

/// A device addressed in fixed-size blocks.
///
/// Methods take `&self`: a device is shared (file systems, partitions, the registry) and
/// serializes access internally. Every method returns `EIO` for a device failure and
/// `EINVAL` for a request outside the device or a buffer that is not a whole number of blocks.
pub trait BlockDevice: Send + Sync {
    /// The device's name, e.g. `vda` or `ram0`.
    fn name(&self) -> &str;

    /// Bytes per block: a power of two from 512 to 4096.
    fn block_size(&self) -> usize;

    /// Number of blocks.
    fn block_count(&self) -> u64;

    /// Reads `buffer.len() / block_size()` blocks starting at `first_block`.
    fn read_blocks(&self, first_block: u64, buffer: &mut [u8]) -> Result<()>;

    /// Writes `buffer.len() / block_size()` blocks starting at `first_block`.
    /// Returns `EROFS` on a read-only device.
    fn write_blocks(&self, first_block: u64, buffer: &[u8]) -> Result<()>;

    /// Makes every completed write durable (a cache flush on real disks).
    fn flush(&self) -> Result<()>;

    /// Whether writes are refused.
    fn is_read_only(&self) -> bool {
        false
    }

    /// The largest transfer the device takes in one request, in bytes (a whole number of
    /// blocks). Larger reads and writes are still accepted (the device splits them); callers
    /// that build requests, like the page cache's read-ahead, size them by it.
    fn max_transfer(&self) -> usize {
        usize::MAX
    }

    /// Size in bytes.
    fn size_bytes(&self) -> u64 {
        self.block_count() * self.block_size() as u64
    }

    /// I/O counters for `/proc/diskstats`, if the device keeps them.
    fn statistics(&self) -> DiskStatistics {
        DiskStatistics::default()
    }

    /// Reads `buffer.len()` bytes at byte `offset`, which need not be block-aligned.
    fn read_bytes(&self, offset: u64, buffer: &mut [u8]) -> Result<()> {
        let block_size = self.block_size() as u64;
        let end = offset.checked_add(buffer.len() as u64).ok_or(Errno::EINVAL)?;
        if end > self.size_bytes() {
            return Err(Errno::EINVAL);
        }
        if buffer.is_empty() {
            return Ok(());
        }
        let first_block = offset / block_size;
        let last_block = (end - 1) / block_size;
        let mut scratch = vec![0u8; ((last_block - first_block + 1) * block_size) as usize];
        self.read_blocks(first_block, &mut scratch)?;
        let start = (offset - first_block * block_size) as usize;
        buffer.copy_from_slice(&scratch[start..start + buffer.len()]);
        Ok(())
    }
}

/// Counters in `/proc/diskstats` order (Documentation/admin-guide/iostats.rst).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskStatistics {
    /// Reads completed.
    pub reads_completed: u64,
    /// Adjacent reads merged into one.
    pub reads_merged: u64,
    /// 512-byte sectors read.
    pub sectors_read: u64,
    /// Milliseconds spent reading.
    pub milliseconds_reading: u64,
    /// Writes completed.
    pub writes_completed: u64,
    /// Adjacent writes merged into one.
    pub writes_merged: u64,
    /// 512-byte sectors written.
    pub sectors_written: u64,
    /// Milliseconds spent writing.
    pub milliseconds_writing: u64,
    /// Requests queued and not completed.
    pub in_flight: u64,
    /// Milliseconds with requests in flight.
    pub milliseconds_doing_io: u64,
    /// Weighted milliseconds doing I/O.
    pub weighted_milliseconds: u64,
    /// Flushes completed.
    pub flushes_completed: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::RamDisk;

    #[test]
    fn unaligned_byte_reads_cross_blocks() {
        let disk = RamDisk::new("ram0", 512, 4);
        let pattern: Vec<u8> = (0..2048).map(|i| (i % 251) as u8).collect();
        disk.write_blocks(0, &pattern).unwrap();
        let mut buffer = [0u8; 600];
        disk.read_bytes(500, &mut buffer).unwrap();
        assert_eq!(&buffer[..], &pattern[500..1100]);
        assert_eq!(disk.read_bytes(2000, &mut buffer), Err(Errno::EINVAL));
        assert_eq!(disk.read_bytes(u64::MAX, &mut buffer), Err(Errno::EINVAL));
    }
}
