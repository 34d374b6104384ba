//! Block storage: the contract a disk driver (virtio-blk) implements and the kernel's block layer adapts into its request queues.
//!
//! A driver is a state machine with one request in flight: [`BlockDriver::start`] hands a
//! request to the device and returns at once; the kernel then sleeps until the device's
//! interrupt (or, before the scheduler runs, polling) makes [`BlockDriver::is_complete`]
//! true, and collects the result with [`BlockDriver::finish`]. Locking, sleeping and
//! interrupt registration are the kernel's business, so a driver needs no lock, no
//! scheduler and no unsafe lifetime tricks: it owns the DMA buffer the data passes through.

/// Why a block request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockError {
    /// The device reported an error, or the transport failed (the kernel's `EIO`).
    Io,
    /// The request reaches past the end of the device, or its buffer is not a whole number
    /// of blocks or is larger than [`BlockDriver::max_transfer`] (`EINVAL`).
    OutOfRange,
    /// A write to a read-only device (`EROFS`).
    ReadOnly,
    /// The device does not support the request (the kernel reports `EINVAL`).
    Unsupported,
    /// [`BlockDriver::start`] while a request is in flight, or [`BlockDriver::finish`]
    /// without one (`EBUSY`): a bug in the caller.
    Busy,
}

/// One request to a block device.
#[derive(Debug)]
pub enum BlockRequest<'a> {
    /// Read `block_count` blocks from `first_block`; the data comes back in
    /// [`BlockDriver::finish`].
    Read {
        /// First block (in units of [`BlockDriver::block_size`]).
        first_block: u64,
        /// Number of blocks.
        block_count: usize,
    },
    /// Write `data` (a whole number of blocks) at `first_block`.
    Write {
        /// First block.
        first_block: u64,
        /// The bytes to write; the driver copies them before `start` returns.
        data: &'a [u8],
    },
    /// Make every completed write durable.
    Flush,
}

/// A disk driver as the kernel's block layer sees it.
pub trait BlockDriver: Send {
    /// Bytes per block (512 for virtio-blk).
    fn block_size(&self) -> usize;

    /// Number of blocks.
    fn block_count(&self) -> u64;

    /// Whether the device refuses writes.
    fn is_read_only(&self) -> bool;

    /// The largest request, in bytes (a multiple of the block size).
    fn max_transfer(&self) -> usize;

    /// Hands `request` to the device and returns without waiting.
    ///
    /// # Errors
    /// [`BlockError::Busy`] when a request is in flight, [`BlockError::OutOfRange`],
    /// [`BlockError::ReadOnly`], or [`BlockError::Io`] when the device cannot take it.
    fn start(&mut self, request: BlockRequest<'_>) -> Result<(), BlockError>;

    /// Whether the request in flight has completed (reads the device's completion ring;
    /// cheap, callable from an interrupt handler or a polling loop).
    fn is_complete(&mut self) -> bool;

    /// Collects the completed request: for a read, copies the data into `read_into` (at
    /// least the requested length); ignored for writes and flushes.
    ///
    /// # Errors
    /// [`BlockError::Io`] when the device reported a failure, [`BlockError::Busy`] when no
    /// request was in flight or it has not completed.
    fn finish(&mut self, read_into: &mut [u8]) -> Result<(), BlockError>;

    /// Acknowledges the device's interrupt; returns whether it had signalled one.
    fn acknowledge_interrupt(&mut self) -> bool;
}
