//! Disks driven by a [`BlockDriver`] (the hardware contract in `hinoki-interface`): the kernel adapts them into its block layer, registers their interrupt, and sleeps the requesting task until the device completes.
//!
//! The driver is a state machine with one request in flight; this adapter supplies what
//! the driver deliberately lacks: an interrupt-safe lock around it, a sleeping lock that
//! serializes requests, a wait queue the interrupt handler wakes, and the split of large
//! transfers. The waiting task sleeps when it may (scheduler running, preemption enabled)
//! and polls the device's completion ring otherwise (early boot, or a caller holding a
//! spinlock), so a request completes in every context. Device errors become `EIO`.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use hinoki_interface::{BlockDriver, BlockError, BlockRequest, Trigger};

use super::device::BlockDevice;
use super::queue::QueuedDevice;
use super::registry::{add_disk, VIRTIO_BLOCK_MAJOR};
use super::scheduler::SchedulerKind;
use crate::errno::{Errno, Result};
use crate::sync::{IrqSpinLock, Mutex, WaitQueue};

/// Minors per virtio disk (the whole disk and 15 partitions), as Linux's virtio-blk.
pub const MINORS_PER_DISK: u32 = 16;

/// The kernel's error for a driver's.
pub fn errno_from(error: BlockError) -> Errno {
    match error {
        BlockError::Io => Errno::EIO,
        BlockError::OutOfRange => Errno::EINVAL,
        BlockError::ReadOnly => Errno::EROFS,
        BlockError::Unsupported => Errno::EINVAL,
        BlockError::Busy => Errno::EBUSY,
    }
}

/// A disk whose driver implements [`BlockDriver`].
pub struct DriverDisk {
    name: String,
    driver: IrqSpinLock<Box<dyn BlockDriver>>,
    /// Serializes requests (the driver has one in flight); a task sleeps on it.
    request_lock: Mutex<()>,
    /// Woken by the interrupt handler when the device completes a request.
    completion: WaitQueue,
    block_size: usize,
    block_count: u64,
    read_only: bool,
    max_transfer: usize,
    /// Whether an interrupt handler wakes `completion` (else waits poll).
    interrupt_driven: core::sync::atomic::AtomicBool,
    /// Interrupts taken, and requests that completed while the requester slept.
    interrupts: AtomicU64,
    sleeping_waits: AtomicU64,
}

impl DriverDisk {
    /// Wraps `driver` under the block-device name `name`.
    pub fn new(name: &str, driver: Box<dyn BlockDriver>) -> Self {
        let block_size = driver.block_size();
        let max_transfer = driver.max_transfer().max(block_size) / block_size * block_size;
        DriverDisk {
            name: name.into(),
            block_count: driver.block_count(),
            read_only: driver.is_read_only(),
            block_size,
            max_transfer,
            driver: IrqSpinLock::new(driver),
            request_lock: Mutex::new(()),
            completion: WaitQueue::new(),
            interrupt_driven: core::sync::atomic::AtomicBool::new(false),
            interrupts: AtomicU64::new(0),
            sleeping_waits: AtomicU64::new(0),
        }
    }

    /// The interrupt handler's work: acknowledge the device, wake the waiter.
    pub fn handle_interrupt(&self) {
        let acknowledged = self.driver.lock().acknowledge_interrupt();
        if acknowledged {
            self.interrupts.fetch_add(1, Ordering::Relaxed);
        }
        self.completion.wake_up_all();
    }

    /// Interrupts the device raised so far.
    pub fn interrupt_count(&self) -> u64 {
        self.interrupts.load(Ordering::Relaxed)
    }

    /// Requests whose task slept (rather than polled) until completion.
    pub fn sleeping_wait_count(&self) -> u64 {
        self.sleeping_waits.load(Ordering::Relaxed)
    }

    fn may_sleep(&self) -> bool {
        self.interrupt_driven.load(Ordering::Acquire)
            && crate::sched::is_running()
            && crate::sched::current().is_some()
            && crate::sched::preempt_count() == 0
            && crate::try_platform().is_none_or(|platform| platform.cpu().interrupts_enabled())
    }

    /// Runs one request to completion: start, wait (sleeping or polling), finish.
    fn run(&self, request: BlockRequest<'_>, read_into: &mut [u8]) -> Result<()> {
        let sectors_per_block = (self.block_size / 512) as u64;
        let (operation, sector) = match &request {
            BlockRequest::Read { first_block, .. } => ("READ", first_block * sectors_per_block),
            BlockRequest::Write { first_block, .. } => ("WRITE", first_block * sectors_per_block),
            BlockRequest::Flush => ("FLUSH", 0),
        };
        let _serialized = self.request_lock.lock();
        self.driver.lock().start(request).map_err(errno_from)?;
        if self.may_sleep() {
            self.sleeping_waits.fetch_add(1, Ordering::Relaxed);
            self.completion.wait_event(|| self.driver.lock().is_complete());
        } else {
            while !self.driver.lock().is_complete() {
                core::hint::spin_loop();
            }
        }
        self.driver.lock().finish(read_into).map_err(|error| {
            log::error!("I/O error, dev {}, sector {} op {} ({:?})", self.name, sector, operation, error);
            errno_from(error)
        })
    }

    fn check_range(&self, first_block: u64, length: usize) -> Result<()> {
        if !length.is_multiple_of(self.block_size) {
            return Err(Errno::EINVAL);
        }
        let blocks = (length / self.block_size) as u64;
        match first_block.checked_add(blocks) {
            Some(end) if end <= self.block_count => Ok(()),
            _ => Err(Errno::EINVAL),
        }
    }
}

impl BlockDevice for DriverDisk {
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
        self.check_range(first_block, buffer.len())?;
        for (index, chunk) in buffer.chunks_mut(self.max_transfer).enumerate() {
            let block = first_block + (index * self.max_transfer / self.block_size) as u64;
            let block_count = chunk.len() / self.block_size;
            self.run(BlockRequest::Read { first_block: block, block_count }, chunk)?;
        }
        Ok(())
    }

    fn write_blocks(&self, first_block: u64, buffer: &[u8]) -> Result<()> {
        if self.read_only {
            return Err(Errno::EROFS);
        }
        self.check_range(first_block, buffer.len())?;
        for (index, chunk) in buffer.chunks(self.max_transfer).enumerate() {
            let block = first_block + (index * self.max_transfer / self.block_size) as u64;
            self.run(BlockRequest::Write { first_block: block, data: chunk }, &mut [])?;
        }
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        self.run(BlockRequest::Flush, &mut [])
    }

    fn is_read_only(&self) -> bool {
        self.read_only
    }

    fn max_transfer(&self) -> usize {
        self.max_transfer
    }
}

/// The disks with an interrupt, by interrupt number, for the shared handler.
static INTERRUPT_DISKS: IrqSpinLock<Vec<(u32, Arc<DriverDisk>)>> = IrqSpinLock::new(Vec::new());
static NEXT_DISK: AtomicU32 = AtomicU32::new(0);
/// Every disk added, for statistics.
static DISKS: crate::sync::SpinLock<Vec<Arc<DriverDisk>>> = crate::sync::SpinLock::new(Vec::new());

/// The driver-backed disk named `name` (`vda`), for its interrupt and wait counts.
pub fn find_driver_disk(name: &str) -> Option<Arc<DriverDisk>> {
    DISKS.lock().iter().find(|disk| disk.name == name).cloned()
}

/// The handler of every disk interrupt: PCI INTx lines are shared, so each disk on the line
/// acknowledges its own device (a level-triggered line left asserted would storm).
fn disk_interrupt(irq: u32) {
    let disks: Vec<Arc<DriverDisk>> =
        INTERRUPT_DISKS.lock().iter().filter(|(number, _)| *number == irq).map(|(_, disk)| disk.clone()).collect();
    for disk in disks {
        disk.handle_interrupt();
    }
}

/// `vda`, `vdb`, ..., `vdz`, `vdaa`, ... for disk `index`.
pub fn virtio_disk_name(index: u32) -> String {
    let letter = |value: u32| (b'a' + value as u8) as char;
    if index < 26 {
        format!("vd{}", letter(index))
    } else {
        format!("vd{}{}", letter(index / 26 - 1), letter(index % 26))
    }
}

/// What [`add_virtio_disk`] registered.
pub struct AddedDisk {
    /// The driver-facing disk (interrupt counts).
    pub disk: Arc<DriverDisk>,
    /// The queued disk in the registry (`vda`), what file systems use.
    pub queued: Arc<QueuedDevice>,
}

/// Registers a virtio disk: the next name (`vda`, `vdb`, ...), its interrupt `irq` (with
/// `trigger`) as `virtioN` in `/proc/interrupts` (`N` is `transport_index`, the transport's
/// number on its bus; a line shared with an earlier disk keeps that disk's name), a
/// deadline-scheduled request queue, and its partitions.
/// Without an interrupt (or when it cannot be requested) requests are polled.
pub fn add_virtio_disk(driver: Box<dyn BlockDriver>, irq: Option<(u32, Trigger)>, transport_index: u32) -> Result<AddedDisk> {
    let index = NEXT_DISK.fetch_add(1, Ordering::Relaxed);
    let name = virtio_disk_name(index);
    let disk = Arc::new(DriverDisk::new(&name, driver));
    if let Some((number, trigger)) = irq {
        let shared = {
            let mut disks = INTERRUPT_DISKS.lock();
            let shared = disks.iter().any(|(other, _)| *other == number);
            disks.push((number, disk.clone()));
            shared
        };
        // The name lives as long as the interrupt, which is never freed.
        let irq_name: &'static str = Box::leak(format!("virtio{}", transport_index).into_boxed_str());
        let requested = if shared { Ok(()) } else { crate::irq::request_irq(number, irq_name, disk_interrupt, trigger) };
        match requested {
            Ok(()) => disk.interrupt_driven.store(true, Ordering::Release),
            Err(error) => {
                log::warn!("{}: cannot request IRQ {} ({:?}), requests are polled", name, number, error);
                INTERRUPT_DISKS.lock().retain(|(_, other)| !Arc::ptr_eq(other, &disk));
            }
        }
    }
    DISKS.lock().push(disk.clone());
    let as_device: Arc<dyn BlockDevice> = disk.clone();
    let queued = add_disk(as_device, VIRTIO_BLOCK_MAJOR, index * MINORS_PER_DISK, SchedulerKind::Deadline)?;
    log::info!(
        "{}: {} {}-byte logical blocks ({} MiB){}{}",
        name,
        disk.block_count,
        disk.block_size,
        disk.size_bytes() >> 20,
        if disk.read_only { ", read-only" } else { "" },
        match irq {
            Some((number, _)) if disk.interrupt_driven.load(Ordering::Acquire) => format!(", IRQ {}", number),
            _ => String::from(", polled"),
        }
    );
    Ok(AddedDisk { disk, queued })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// A driver over a vector that completes each request after `delay` polls and fails
    /// reads of block `bad_block`.
    struct FakeDriver {
        data: Vec<u8>,
        in_flight: Option<(bool, u64, usize)>,
        polls_left: u32,
        bad_block: u64,
        starts: Arc<AtomicU32>,
    }

    impl BlockDriver for FakeDriver {
        fn block_size(&self) -> usize {
            512
        }
        fn block_count(&self) -> u64 {
            (self.data.len() / 512) as u64
        }
        fn is_read_only(&self) -> bool {
            false
        }
        fn max_transfer(&self) -> usize {
            1024
        }
        fn start(&mut self, request: BlockRequest<'_>) -> core::result::Result<(), BlockError> {
            if self.in_flight.is_some() {
                return Err(BlockError::Busy);
            }
            self.starts.fetch_add(1, Ordering::Relaxed);
            self.polls_left = 3;
            self.in_flight = Some(match request {
                BlockRequest::Read { first_block, block_count } => (true, first_block, block_count * 512),
                BlockRequest::Write { first_block, data } => {
                    assert!(data.len() <= 1024, "the adapter splits large transfers");
                    let start = first_block as usize * 512;
                    self.data[start..start + data.len()].copy_from_slice(data);
                    (false, first_block, data.len())
                }
                BlockRequest::Flush => (false, 0, 0),
            });
            Ok(())
        }
        fn is_complete(&mut self) -> bool {
            self.polls_left = self.polls_left.saturating_sub(1);
            self.in_flight.is_some() && self.polls_left == 0
        }
        fn finish(&mut self, read_into: &mut [u8]) -> core::result::Result<(), BlockError> {
            let (read, first_block, length) = self.in_flight.take().ok_or(BlockError::Busy)?;
            if read {
                if (first_block..first_block + (length / 512) as u64).contains(&self.bad_block) {
                    return Err(BlockError::Io);
                }
                let start = first_block as usize * 512;
                read_into[..length].copy_from_slice(&self.data[start..start + length]);
            }
            Ok(())
        }
        fn acknowledge_interrupt(&mut self) -> bool {
            true
        }
    }

    fn disk() -> (DriverDisk, Arc<AtomicU32>) {
        let starts = Arc::new(AtomicU32::new(0));
        let driver = FakeDriver { data: vec![0; 512 * 16], in_flight: None, polls_left: 0, bad_block: 13, starts: starts.clone() };
        (DriverDisk::new("vdz", Box::new(driver)), starts)
    }

    #[test]
    fn large_transfers_are_split_and_read_back() {
        let (disk, starts) = disk();
        let pattern: Vec<u8> = (0..512 * 5).map(|i| (i % 253) as u8).collect();
        disk.write_blocks(2, &pattern).unwrap();
        assert_eq!(starts.load(Ordering::Relaxed), 3, "2560 bytes in 1024-byte requests");
        let mut back = vec![0u8; 512 * 5];
        disk.read_blocks(2, &mut back).unwrap();
        assert_eq!(back, pattern);
        disk.flush().unwrap();
        assert_eq!(disk.sleeping_wait_count(), 0, "no interrupt: every wait polled");
    }

    #[test]
    fn device_errors_and_bad_ranges_are_errnos() {
        let (disk, _) = disk();
        let mut buffer = vec![0u8; 1024];
        assert_eq!(disk.read_blocks(12, &mut buffer), Err(Errno::EIO));
        assert_eq!(disk.read_blocks(15, &mut buffer), Err(Errno::EINVAL), "past the end");
        assert_eq!(disk.read_blocks(u64::MAX, &mut buffer), Err(Errno::EINVAL));
        assert_eq!(disk.write_blocks(0, &buffer[..100]), Err(Errno::EINVAL), "not whole blocks");
        assert_eq!(disk.read_blocks(0, &mut buffer), Ok(()), "the disk still works after an error");
    }

    #[test]
    fn names_follow_linux() {
        assert_eq!(virtio_disk_name(0), "vda");
        assert_eq!(virtio_disk_name(25), "vdz");
        assert_eq!(virtio_disk_name(26), "vdaa");
        assert_eq!(virtio_disk_name(27), "vdab");
        assert_eq!(errno_from(BlockError::Io), Errno::EIO);
    }
}
