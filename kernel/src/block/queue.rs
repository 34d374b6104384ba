//! Request queues: block I/O requests pass through an I/O scheduler that merges and orders them before the device sees them.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;

use super::device::{BlockDevice, DiskStatistics};
use super::scheduler::{IoScheduler, SchedulerKind};
use crate::errno::{Errno, Result};
use crate::sync::Mutex;

/// Whether a request reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestDirection {
    /// From the device into memory.
    Read,
    /// From memory to the device.
    Write,
}

/// One piece of a (possibly merged) request: the submitter's sequence number and its blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestPart {
    /// Sequence number given at submission.
    pub sequence: u64,
    /// First block of this part.
    pub first_block: u64,
    /// Blocks in this part.
    pub block_count: u64,
}

/// A contiguous run of blocks to read or write.
#[derive(Debug)]
pub struct Request {
    /// Sequence number of the first submission (orders requests by age).
    pub sequence: u64,
    /// Read or write.
    pub direction: RequestDirection,
    /// First device block.
    pub first_block: u64,
    /// The bytes to write, or the buffer reads fill; a whole number of blocks.
    pub data: Vec<u8>,
    /// Device block size.
    pub block_size: usize,
    /// When the request expires (milliseconds), set by the deadline scheduler.
    pub deadline: u64,
    /// The submissions merged into this request, in block order.
    pub parts: Vec<RequestPart>,
}

impl Request {
    /// A request of `data.len() / block_size` blocks.
    pub fn new(sequence: u64, direction: RequestDirection, first_block: u64, data: Vec<u8>, block_size: usize) -> Self {
        let block_count = (data.len() / block_size) as u64;
        Request {
            sequence,
            direction,
            first_block,
            data,
            block_size,
            deadline: 0,
            parts: alloc::vec![RequestPart { sequence, first_block, block_count }],
        }
    }

    /// Blocks covered.
    pub fn block_count(&self) -> u64 {
        (self.data.len() / self.block_size) as u64
    }

    /// The block after the last one.
    pub fn end_block(&self) -> u64 {
        self.first_block + self.block_count()
    }

    /// Merges `next`, which starts at this request's end (a back merge).
    pub fn append(&mut self, mut next: Request) {
        self.data.append(&mut next.data);
        self.parts.append(&mut next.parts);
        self.sequence = self.sequence.min(next.sequence);
        self.deadline = self.deadline.min(next.deadline);
    }

    /// Merges `previous`, which ends where this request starts (a front merge).
    pub fn prepend(&mut self, mut previous: Request) {
        previous.data.append(&mut self.data);
        self.data = previous.data;
        previous.parts.append(&mut self.parts);
        self.parts = previous.parts;
        self.first_block = previous.first_block;
        self.sequence = self.sequence.min(previous.sequence);
        self.deadline = self.deadline.min(previous.deadline);
    }
}

/// Milliseconds from some origin, for deadlines and `/proc/diskstats` times.
pub type MillisecondClock = fn() -> u64;

fn uptime_milliseconds() -> u64 {
    crate::time::since_boot_nanoseconds() / 1_000_000
}

/// A device's request queue and its elevator.
pub struct RequestQueue {
    device: Arc<dyn BlockDevice>,
    scheduler: Box<dyn IoScheduler>,
    clock: MillisecondClock,
    next_sequence: u64,
    statistics: DiskStatistics,
    completed_reads: Vec<(u64, Vec<u8>)>,
    /// The first error of a write that completed after its submitter returned.
    deferred_error: Option<Errno>,
    /// Device calls made (each merged request is one call).
    pub device_requests: u64,
}

impl RequestQueue {
    /// A queue in front of `device`, using `scheduler` and the uptime clock.
    pub fn new(device: Arc<dyn BlockDevice>, scheduler: SchedulerKind) -> Self {
        Self::with_clock(device, scheduler, uptime_milliseconds)
    }

    /// A queue with an explicit clock (tests).
    pub fn with_clock(device: Arc<dyn BlockDevice>, scheduler: SchedulerKind, clock: MillisecondClock) -> Self {
        RequestQueue {
            device,
            scheduler: scheduler.create(),
            clock,
            next_sequence: 1,
            statistics: DiskStatistics::default(),
            completed_reads: Vec::new(),
            deferred_error: None,
            device_requests: 0,
        }
    }

    /// The scheduler in use.
    pub fn scheduler(&self) -> SchedulerKind {
        self.scheduler.kind()
    }

    /// Switches the elevator, moving queued requests to the new one.
    pub fn set_scheduler(&mut self, kind: SchedulerKind) {
        if kind == self.scheduler.kind() {
            return;
        }
        let mut replacement = kind.create();
        let now = (self.clock)();
        for request in self.scheduler.drain() {
            replacement.add(request, now);
        }
        self.scheduler = replacement;
    }

    /// Queues a request; returns its sequence number. Reads are answered by [`Self::take_read`].
    pub fn submit(&mut self, direction: RequestDirection, first_block: u64, data: Vec<u8>) -> Result<u64> {
        let block_size = self.device.block_size();
        if data.is_empty() || data.len() % block_size != 0 {
            return Err(Errno::EINVAL);
        }
        let blocks = (data.len() / block_size) as u64;
        if first_block.checked_add(blocks).is_none_or(|end| end > self.device.block_count()) {
            return Err(Errno::EINVAL);
        }
        if direction == RequestDirection::Write && self.device.is_read_only() {
            return Err(Errno::EROFS);
        }
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        let request = Request::new(sequence, direction, first_block, data, block_size);
        let merged = self.scheduler.add(request, (self.clock)());
        if merged {
            match direction {
                RequestDirection::Read => self.statistics.reads_merged += 1,
                RequestDirection::Write => self.statistics.writes_merged += 1,
            }
        }
        self.statistics.in_flight = self.scheduler.len() as u64;
        Ok(sequence)
    }

    /// Requests waiting for the device.
    pub fn queued(&self) -> usize {
        self.scheduler.len()
    }

    /// Sends the scheduler's next request to the device; `None` when the queue is empty.
    pub fn dispatch_one(&mut self) -> Option<Result<()>> {
        let now = (self.clock)();
        let mut request = self.scheduler.dispatch(now)?;
        self.device_requests += 1;
        let sectors = request.data.len() as u64 / 512;
        let result = match request.direction {
            RequestDirection::Read => self.device.read_blocks(request.first_block, &mut request.data),
            RequestDirection::Write => self.device.write_blocks(request.first_block, &request.data),
        };
        let elapsed = (self.clock)().saturating_sub(now);
        let parts = request.parts.len() as u64;
        if request.direction == RequestDirection::Read && result.is_ok() {
            if request.parts.len() == 1 {
                // One submitter: its buffer is the request's, handed over without a copy.
                self.completed_reads.push((request.parts[0].sequence, core::mem::take(&mut request.data)));
            } else {
                let block_size = request.block_size;
                for part in &request.parts {
                    let start = ((part.first_block - request.first_block) as usize) * block_size;
                    let end = start + part.block_count as usize * block_size;
                    self.completed_reads.push((part.sequence, request.data[start..end].to_vec()));
                }
            }
        }
        self.account(request.direction, parts, sectors, elapsed);
        Some(result)
    }

    /// Counts a completed device request of `parts` submissions and `sectors` sectors.
    fn account(&mut self, direction: RequestDirection, parts: u64, sectors: u64, elapsed: u64) {
        match direction {
            RequestDirection::Read => {
                self.statistics.reads_completed += parts;
                self.statistics.sectors_read += sectors;
                self.statistics.milliseconds_reading += elapsed;
            }
            RequestDirection::Write => {
                self.statistics.writes_completed += parts;
                self.statistics.sectors_written += sectors;
                self.statistics.milliseconds_writing += elapsed;
            }
        }
        self.statistics.milliseconds_doing_io += elapsed;
        self.statistics.weighted_milliseconds += elapsed * (self.scheduler.len() as u64 + 1);
        self.statistics.in_flight = self.scheduler.len() as u64;
    }

    /// Reads straight into `buffer`, bypassing the elevator: for a read when nothing is
    /// queued, where there is nothing to merge or order it with (and no copy to make).
    pub fn read_now(&mut self, first_block: u64, buffer: &mut [u8]) -> Result<()> {
        let block_size = self.device.block_size();
        if buffer.is_empty() || !buffer.len().is_multiple_of(block_size) {
            return Err(Errno::EINVAL);
        }
        let blocks = (buffer.len() / block_size) as u64;
        if first_block.checked_add(blocks).is_none_or(|end| end > self.device.block_count()) {
            return Err(Errno::EINVAL);
        }
        if !self.scheduler.is_empty() {
            let sequence = self.submit(RequestDirection::Read, first_block, alloc::vec![0u8; buffer.len()])?;
            let result = self.run();
            let data = self.take_read(sequence);
            result?;
            buffer.copy_from_slice(&data.ok_or(Errno::EIO)?);
            return Ok(());
        }
        let now = (self.clock)();
        self.device_requests += 1;
        let result = self.device.read_blocks(first_block, buffer);
        let elapsed = (self.clock)().saturating_sub(now);
        self.account(RequestDirection::Read, 1, buffer.len() as u64 / 512, elapsed);
        result
    }

    /// Dispatches everything queued (Linux's unplug). Returns the first error.
    pub fn run(&mut self) -> Result<()> {
        let mut first_error = None;
        while let Some(result) = self.dispatch_one() {
            if let Err(error) = result {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The data of a completed read, once.
    pub fn take_read(&mut self, sequence: u64) -> Option<Vec<u8>> {
        let position = self.completed_reads.iter().position(|(done, _)| *done == sequence)?;
        Some(self.completed_reads.swap_remove(position).1)
    }

    /// Counters for `/proc/diskstats`, merges included.
    pub fn statistics(&self) -> DiskStatistics {
        DiskStatistics { flushes_completed: self.device.statistics().flushes_completed, ..self.statistics }
    }
}

/// Queued writes beyond which a write unplugs the queue.
pub const MAX_QUEUED_REQUESTS: usize = 64;

/// A block device whose writes are queued, merged and ordered by a [`RequestQueue`].
///
/// Writes return once queued; the queue is unplugged when it fills, before any read
/// (so reads see earlier writes) and on [`BlockDevice::flush`], which also reports a
/// failure of any write that completed late.
pub struct QueuedDevice {
    name: alloc::string::String,
    device: Arc<dyn BlockDevice>,
    /// A sleeping lock: the device may sleep waiting for its interrupt under it.
    queue: Mutex<RequestQueue>,
}

impl QueuedDevice {
    /// Puts a queue with `scheduler` in front of `device`.
    pub fn new(device: Arc<dyn BlockDevice>, scheduler: SchedulerKind) -> Self {
        QueuedDevice { name: device.name().into(), queue: Mutex::new(RequestQueue::new(device.clone(), scheduler)), device }
    }

    /// The elevator in use.
    pub fn scheduler(&self) -> SchedulerKind {
        self.queue.lock().scheduler()
    }

    /// Switches the elevator at run time.
    pub fn set_scheduler(&self, kind: SchedulerKind) {
        self.queue.lock().set_scheduler(kind);
    }

    /// Device calls made so far (merged requests count once).
    pub fn device_requests(&self) -> u64 {
        self.queue.lock().device_requests
    }

    fn unplug(queue: &mut RequestQueue) -> Result<()> {
        if let Err(error) = queue.run() {
            queue.deferred_error.get_or_insert(error);
        }
        Ok(())
    }
}

impl BlockDevice for QueuedDevice {
    fn name(&self) -> &str {
        &self.name
    }

    fn block_size(&self) -> usize {
        self.device.block_size()
    }

    fn block_count(&self) -> u64 {
        self.device.block_count()
    }

    fn read_blocks(&self, first_block: u64, buffer: &mut [u8]) -> Result<()> {
        let mut queue = self.queue.lock();
        Self::unplug(&mut queue)?;
        queue.read_now(first_block, buffer)
    }

    fn write_blocks(&self, first_block: u64, buffer: &[u8]) -> Result<()> {
        let mut queue = self.queue.lock();
        queue.submit(RequestDirection::Write, first_block, buffer.to_vec())?;
        if queue.queued() >= MAX_QUEUED_REQUESTS {
            Self::unplug(&mut queue)?;
        }
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        let mut queue = self.queue.lock();
        Self::unplug(&mut queue)?;
        if let Some(error) = queue.deferred_error.take() {
            return Err(error);
        }
        self.device.flush()
    }

    fn is_read_only(&self) -> bool {
        self.device.is_read_only()
    }

    fn max_transfer(&self) -> usize {
        self.device.max_transfer()
    }

    fn statistics(&self) -> DiskStatistics {
        self.queue.lock().statistics()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::RamDisk;
    use alloc::vec;

    #[test]
    fn adjacent_writes_become_one_device_request() {
        let disk = Arc::new(RamDisk::new("ram0", 512, 64));
        let queued = QueuedDevice::new(disk.clone(), SchedulerKind::Deadline);
        for block in (0..8).rev() {
            queued.write_blocks(block, &[block as u8 + 1; 512]).unwrap();
        }
        assert_eq!(disk.statistics().writes_completed, 0, "writes wait in the queue");
        let mut back = [0u8; 512];
        queued.read_blocks(3, &mut back).unwrap();
        assert_eq!(back, [4; 512], "a read sees queued writes");
        assert_eq!(disk.statistics().writes_completed, 1, "eight writes merged into one");
        let statistics = queued.statistics();
        assert_eq!((statistics.writes_completed, statistics.writes_merged, statistics.sectors_written), (8, 7, 8));
        assert_eq!(statistics.reads_completed, 1);
        queued.flush().unwrap();
        assert_eq!(queued.statistics().flushes_completed, 1);
    }

    #[test]
    fn merged_reads_are_split_back() {
        let disk = Arc::new(RamDisk::new("ram0", 512, 16));
        for block in 0..16 {
            disk.write_blocks(block, &[block as u8; 512]).unwrap();
        }
        let mut queue = RequestQueue::with_clock(disk.clone(), SchedulerKind::Noop, || 0);
        let first = queue.submit(RequestDirection::Read, 4, vec![0; 1024]).unwrap();
        let second = queue.submit(RequestDirection::Read, 6, vec![0; 512]).unwrap();
        assert_eq!(queue.queued(), 1);
        queue.run().unwrap();
        assert_eq!(queue.device_requests, 1);
        let first_data = queue.take_read(first).unwrap();
        assert_eq!((first_data[0], first_data[600], first_data.len()), (4, 5, 1024));
        assert_eq!(queue.take_read(second).unwrap(), vec![6; 512]);
        assert!(queue.take_read(second).is_none());
    }

    #[test]
    fn bad_requests_are_refused() {
        let disk = Arc::new(RamDisk::new("ram0", 512, 4));
        let mut queue = RequestQueue::with_clock(disk, SchedulerKind::Noop, || 0);
        assert_eq!(queue.submit(RequestDirection::Write, 3, vec![0; 1024]), Err(Errno::EINVAL));
        assert_eq!(queue.submit(RequestDirection::Write, 0, vec![0; 100]), Err(Errno::EINVAL));
        assert_eq!(queue.submit(RequestDirection::Write, 0, Vec::new()), Err(Errno::EINVAL));
        static IMAGE: [u8; 512] = [0; 512];
        let read_only = Arc::new(RamDisk::from_static_read_only("initrd", 512, &IMAGE));
        let mut queue = RequestQueue::with_clock(read_only, SchedulerKind::Noop, || 0);
        assert_eq!(queue.submit(RequestDirection::Write, 0, vec![0; 512]), Err(Errno::EROFS));
    }

    #[test]
    fn reads_go_straight_to_the_device_and_are_counted() {
        let disk = Arc::new(RamDisk::new("ram0", 512, 64));
        disk.write_blocks(10, &[7; 1024]).unwrap();
        disk.set_failing_block(Some(40));
        let queued = QueuedDevice::new(disk.clone(), SchedulerKind::Deadline);
        queued.write_blocks(11, &[9; 512]).unwrap();
        let mut back = [0u8; 1024];
        queued.read_blocks(10, &mut back).unwrap();
        assert_eq!((back[0], back[600]), (7, 9), "the queued write went first");
        assert_eq!(queued.read_blocks(39, &mut back), Err(Errno::EIO));
        assert_eq!(queued.read_blocks(63, &mut back), Err(Errno::EINVAL), "past the end");
        queued.read_blocks(41, &mut back).unwrap();
        let statistics = queued.statistics();
        assert_eq!((statistics.reads_completed, statistics.sectors_read, statistics.in_flight), (3, 6, 0));
        assert_eq!(queued.device_requests(), 4, "one write and three reads reached the disk");
    }

    #[test]
    fn scheduler_switches_at_run_time() {
        let disk = Arc::new(RamDisk::new("ram0", 512, 64));
        let queued = QueuedDevice::new(disk, SchedulerKind::Noop);
        queued.write_blocks(9, &[1; 512]).unwrap();
        queued.set_scheduler(SchedulerKind::Deadline);
        assert_eq!(queued.scheduler(), SchedulerKind::Deadline);
        queued.flush().unwrap();
        let mut back = [0; 512];
        queued.read_blocks(9, &mut back).unwrap();
        assert_eq!(back, [1; 512]);
    }
}
