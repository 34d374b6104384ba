//! virtio block device driver over the virtio-drivers crate: MMIO and PCI probing, and the `hinoki_interface::BlockDriver` state machine with one request in flight.
//!
//! See README.md for the contracts: the driver implements [`BlockDriver`] from
//! `hinoki-interface` (the kernel adapts it, registers the interrupt and sleeps the
//! requester) and takes its DMA memory and register mappings from a [`DmaMemory`] type the
//! board names (the kernel's `KernelDma`).
#![no_std]

extern crate alloc;

mod hal;
pub mod probe;

use alloc::boxed::Box;
use core::marker::PhantomData;

use hinoki_interface::{BlockDriver, BlockError, BlockRequest, DmaMemory, DmaRegion};
use virtio_drivers::device::blk::{BlkReq, BlkResp, RespStatus, VirtIOBlk, SECTOR_SIZE};
use virtio_drivers::transport::Transport;

pub use hal::DmaHal;
pub use virtio_drivers::transport::mmio::MmioTransport;
pub use virtio_drivers::transport::pci::bus::{Cam, ConfigurationAccess, DeviceFunction, MmioCam, PciRoot};
pub use virtio_drivers::transport::pci::PciTransport;

/// The largest transfer in one request (the DMA bounce buffer): 256 KiB, so a page-cache
/// read-ahead window (128 KiB) or a run of merged write-back pages is one device request.
/// If that much contiguous DMA memory cannot be had, the buffer halves down to
/// [`MIN_TRANSFER`] and [`BlockDriver::max_transfer`] reports what was allocated.
pub const MAX_TRANSFER: usize = 256 * 1024;
/// The smallest bounce buffer the driver accepts: 4 KiB.
pub const MIN_TRANSFER: usize = 4 * 1024;

/// The request header and status the device reads and writes while a request is in flight.
#[derive(Default)]
struct RequestHeader {
    request: BlkReq,
    response: BlkResp,
}

/// The request in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InFlight {
    Read {
        token: u16,
        length: usize,
    },
    Write {
        token: u16,
        length: usize,
    },
    /// A flush ran synchronously; its result waits for `finish`.
    Flushed {
        failed: bool,
    },
}

/// A virtio block device on transport `T`, with DMA memory from `D`.
pub struct VirtioBlock<D: DmaMemory, T: Transport> {
    device: VirtIOBlk<DmaHal<D>, T>,
    /// The DMA bounce buffer of `buffer_bytes` bytes.
    buffer: DmaRegion,
    /// The bounce buffer's size: [`MAX_TRANSFER`], or less when memory was short.
    buffer_bytes: usize,
    /// Boxed so its address stays fixed while the device owns it.
    header: Box<RequestHeader>,
    in_flight: Option<InFlight>,
    _dma: PhantomData<D>,
}

// SAFETY: the driver is used by one context at a time (the kernel serializes it under a
// lock); the DMA buffer and header it points to belong to it alone.
unsafe impl<D: DmaMemory, T: Transport + Send> Send for VirtioBlock<D, T> {}

/// Why a device could not be brought up.
#[derive(Debug)]
pub enum ProbeError {
    /// No DMA memory for the bounce buffer.
    NoMemory,
    /// The virtio transport or device refused initialization.
    Device(virtio_drivers::Error),
}

impl<D: DmaMemory, T: Transport> VirtioBlock<D, T> {
    /// Negotiates features, sets up the request queue and the bounce buffer.
    pub fn new(transport: T) -> Result<Self, ProbeError> {
        let device = VirtIOBlk::<DmaHal<D>, T>::new(transport).map_err(ProbeError::Device)?;
        let mut buffer_bytes = MAX_TRANSFER;
        let buffer = loop {
            if let Some(buffer) = D::allocate(buffer_bytes.div_ceil(D::PAGE_SIZE)) {
                break buffer;
            }
            if buffer_bytes <= MIN_TRANSFER {
                return Err(ProbeError::NoMemory);
            }
            buffer_bytes /= 2;
        };
        Ok(VirtioBlock { device, buffer, buffer_bytes, header: Box::default(), in_flight: None, _dma: PhantomData })
    }

    /// The bounce buffer's first `length` bytes.
    fn buffer(&mut self, length: usize) -> &mut [u8] {
        let length = length.min(self.buffer_bytes);
        // SAFETY: the region holds `buffer_bytes` bytes of kernel-mapped DMA memory allocated
        // for this driver alone; `&mut self` makes this the only reference to it.
        unsafe { core::slice::from_raw_parts_mut(self.buffer.virtual_address as *mut u8, length) }
    }

    fn check(&self, first_block: u64, length: usize) -> Result<(), BlockError> {
        if length == 0 || !length.is_multiple_of(SECTOR_SIZE) || length > self.buffer_bytes {
            return Err(BlockError::OutOfRange);
        }
        match first_block.checked_add((length / SECTOR_SIZE) as u64) {
            Some(end) if end <= self.device.capacity() => Ok(()),
            _ => Err(BlockError::OutOfRange),
        }
    }
}

impl<D: DmaMemory, T: Transport> Drop for VirtioBlock<D, T> {
    fn drop(&mut self) {
        D::free(self.buffer);
    }
}

impl<D: DmaMemory, T: Transport + Send> BlockDriver for VirtioBlock<D, T> {
    fn block_size(&self) -> usize {
        SECTOR_SIZE
    }

    fn block_count(&self) -> u64 {
        self.device.capacity()
    }

    fn is_read_only(&self) -> bool {
        self.device.readonly()
    }

    fn max_transfer(&self) -> usize {
        self.buffer_bytes
    }

    fn start(&mut self, request: BlockRequest<'_>) -> Result<(), BlockError> {
        if self.in_flight.is_some() {
            return Err(BlockError::Busy);
        }
        let in_flight = match request {
            BlockRequest::Read { first_block, block_count } => {
                let length = block_count.checked_mul(SECTOR_SIZE).ok_or(BlockError::OutOfRange)?;
                self.check(first_block, length)?;
                let header: *mut RequestHeader = &mut *self.header;
                let buffer: *mut [u8] = self.buffer(length);
                // SAFETY: the header box and the bounce buffer belong to this driver and are
                // not touched again until `finish` completes the request with the same
                // buffers; the raw pointers only end the borrows of `self`.
                let token = unsafe {
                    self.device.read_blocks_nb(first_block as usize, &mut (*header).request, &mut *buffer, &mut (*header).response)
                }
                .map_err(|_| BlockError::Io)?;
                InFlight::Read { token, length }
            }
            BlockRequest::Write { first_block, data } => {
                if self.device.readonly() {
                    return Err(BlockError::ReadOnly);
                }
                self.check(first_block, data.len())?;
                self.buffer(data.len()).copy_from_slice(data);
                let header: *mut RequestHeader = &mut *self.header;
                let buffer: *const [u8] = self.buffer(data.len());
                // SAFETY: as for reads.
                let token =
                    unsafe { self.device.write_blocks_nb(first_block as usize, &mut (*header).request, &*buffer, &mut (*header).response) }
                        .map_err(|_| BlockError::Io)?;
                InFlight::Write { token, length: data.len() }
            }
            BlockRequest::Flush => InFlight::Flushed { failed: self.device.flush().is_err() },
        };
        self.in_flight = Some(in_flight);
        Ok(())
    }

    fn is_complete(&mut self) -> bool {
        match self.in_flight {
            Some(InFlight::Read { token, .. } | InFlight::Write { token, .. }) => self.device.peek_used() == Some(token),
            Some(InFlight::Flushed { .. }) => true,
            None => false,
        }
    }

    fn finish(&mut self, read_into: &mut [u8]) -> Result<(), BlockError> {
        if !self.is_complete() {
            return Err(BlockError::Busy);
        }
        let in_flight = self.in_flight.take().ok_or(BlockError::Busy)?;
        let header: *mut RequestHeader = &mut *self.header;
        let result = match in_flight {
            InFlight::Read { token, length } => {
                let buffer: *mut [u8] = self.buffer(length);
                // SAFETY: the same header and buffer `start` passed with this token.
                unsafe { self.device.complete_read_blocks(token, &(*header).request, &mut *buffer, &mut (*header).response) }
            }
            InFlight::Write { token, length } => {
                let buffer: *const [u8] = self.buffer(length);
                // SAFETY: as above.
                unsafe { self.device.complete_write_blocks(token, &(*header).request, &*buffer, &mut (*header).response) }
            }
            InFlight::Flushed { failed } => return if failed { Err(BlockError::Io) } else { Ok(()) },
        };
        if result.is_err() || self.header.response.status() != RespStatus::OK {
            return Err(BlockError::Io);
        }
        if let InFlight::Read { length, .. } = in_flight {
            if read_into.len() < length {
                return Err(BlockError::OutOfRange);
            }
            read_into[..length].copy_from_slice(self.buffer(length));
        }
        Ok(())
    }

    fn acknowledge_interrupt(&mut self) -> bool {
        !self.device.ack_interrupt().is_empty()
    }
}
