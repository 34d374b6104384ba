//! I/O schedulers (elevators): noop (FIFO with merging) and deadline (sorted batches with read and write expiry times).

use alloc::boxed::Box;
use alloc::vec::Vec;

use super::queue::{Request, RequestDirection};

/// Most blocks one merged request may cover.
pub const MAX_MERGED_BLOCKS: u64 = 256;

/// The schedulers a queue can run, named as in `/sys/block/DEV/queue/scheduler`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedulerKind {
    /// First in, first out, merging adjacent requests.
    Noop,
    /// Sorted by block with read and write deadlines and batching.
    Deadline,
}

impl SchedulerKind {
    /// Every scheduler, in the order `/sys/block/DEV/queue/scheduler` lists them.
    pub const ALL: [SchedulerKind; 2] = [SchedulerKind::Noop, SchedulerKind::Deadline];

    /// The name users type.
    pub fn name(self) -> &'static str {
        match self {
            SchedulerKind::Noop => "noop",
            SchedulerKind::Deadline => "deadline",
        }
    }

    /// Parses a name (`mq-deadline` is accepted for `deadline`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "noop" | "none" => Some(SchedulerKind::Noop),
            "deadline" | "mq-deadline" => Some(SchedulerKind::Deadline),
            _ => None,
        }
    }

    /// A new, empty scheduler of this kind.
    pub fn create(self) -> Box<dyn IoScheduler> {
        match self {
            SchedulerKind::Noop => Box::new(Noop::default()),
            SchedulerKind::Deadline => Box::new(Deadline::new(DeadlineTunables::default())),
        }
    }
}

/// An elevator: holds queued requests and picks the next to send to the device.
pub trait IoScheduler: Send {
    /// Which scheduler this is.
    fn kind(&self) -> SchedulerKind;
    /// Queues `request` at time `now` (milliseconds), merging it into a queued adjacent
    /// request of the same direction when possible. Returns whether it merged.
    fn add(&mut self, request: Request, now: u64) -> bool;
    /// The next request to send to the device at time `now`.
    fn dispatch(&mut self, now: u64) -> Option<Request>;
    /// Number of queued (merged) requests.
    fn len(&self) -> usize;
    /// Whether nothing is queued.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Removes every queued request, oldest first (for switching schedulers).
    fn drain(&mut self) -> Vec<Request>;
}

/// Tries to merge `new` into one of `queued`; returns `new` back if no request is adjacent.
fn merge_into(queued: &mut [Request], new: Request) -> Option<Request> {
    for existing in queued.iter_mut() {
        if existing.direction != new.direction || existing.block_count() + new.block_count() > MAX_MERGED_BLOCKS {
            continue;
        }
        if existing.end_block() == new.first_block {
            existing.append(new);
            return None;
        }
        if new.end_block() == existing.first_block {
            existing.prepend(new);
            return None;
        }
    }
    Some(new)
}

/// The noop elevator: dispatch in arrival order, merging adjacent requests.
#[derive(Default)]
pub struct Noop {
    queue: Vec<Request>,
}

impl IoScheduler for Noop {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Noop
    }

    fn add(&mut self, request: Request, _now: u64) -> bool {
        match merge_into(&mut self.queue, request) {
            None => true,
            Some(request) => {
                self.queue.push(request);
                false
            }
        }
    }

    fn dispatch(&mut self, _now: u64) -> Option<Request> {
        (!self.queue.is_empty()).then(|| self.queue.remove(0))
    }

    fn len(&self) -> usize {
        self.queue.len()
    }

    fn drain(&mut self) -> Vec<Request> {
        core::mem::take(&mut self.queue)
    }
}

/// The deadline elevator's tunables, as in `/sys/block/DEV/queue/iosched/`.
#[derive(Debug, Clone, Copy)]
pub struct DeadlineTunables {
    /// Milliseconds until a read expires.
    pub read_expire: u64,
    /// Milliseconds until a write expires.
    pub write_expire: u64,
    /// Requests dispatched in one sorted batch.
    pub fifo_batch: u32,
    /// Read batches allowed while writes wait.
    pub writes_starved: u32,
}

impl Default for DeadlineTunables {
    fn default() -> Self {
        DeadlineTunables { read_expire: 500, write_expire: 5000, fifo_batch: 16, writes_starved: 2 }
    }
}

/// The deadline elevator: serves requests in block order in batches, prefers reads, and
/// jumps to the oldest request of a direction when it has expired.
pub struct Deadline {
    tunables: DeadlineTunables,
    queues: [Vec<Request>; 2],
    batch_direction: RequestDirection,
    batch_remaining: u32,
    next_block: [u64; 2],
    starved: u32,
}

impl Deadline {
    /// An empty scheduler with `tunables`.
    pub fn new(tunables: DeadlineTunables) -> Self {
        Deadline {
            tunables,
            queues: [Vec::new(), Vec::new()],
            batch_direction: RequestDirection::Read,
            batch_remaining: 0,
            next_block: [0, 0],
            starved: 0,
        }
    }

    fn index(direction: RequestDirection) -> usize {
        match direction {
            RequestDirection::Read => 0,
            RequestDirection::Write => 1,
        }
    }

    fn take(&mut self, direction: RequestDirection, position: usize) -> Request {
        let index = Self::index(direction);
        let request = self.queues[index].remove(position);
        self.next_block[index] = request.end_block();
        request
    }

    /// Position of the next request in block order from the last dispatched one, if any lies ahead.
    fn next_in_order(&self, direction: RequestDirection) -> Option<usize> {
        let index = Self::index(direction);
        let from = self.next_block[index];
        self.queues[index]
            .iter()
            .enumerate()
            .filter(|(_, request)| request.first_block >= from)
            .min_by_key(|(_, request)| request.first_block)
            .map(|(position, _)| position)
    }

    /// Position of the oldest request if it has expired at `now`.
    fn expired(&self, direction: RequestDirection, now: u64) -> Option<usize> {
        let index = Self::index(direction);
        self.queues[index]
            .iter()
            .enumerate()
            .min_by_key(|(_, request)| (request.deadline, request.sequence))
            .filter(|(_, request)| request.deadline <= now)
            .map(|(position, _)| position)
    }

    fn lowest(&self, direction: RequestDirection) -> Option<usize> {
        self.queues[Self::index(direction)].iter().enumerate().min_by_key(|(_, request)| request.first_block).map(|(position, _)| position)
    }
}

impl IoScheduler for Deadline {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Deadline
    }

    fn add(&mut self, mut request: Request, now: u64) -> bool {
        let index = Self::index(request.direction);
        let expire = match request.direction {
            RequestDirection::Read => self.tunables.read_expire,
            RequestDirection::Write => self.tunables.write_expire,
        };
        request.deadline = now + expire;
        match merge_into(&mut self.queues[index], request) {
            None => true,
            Some(request) => {
                self.queues[index].push(request);
                false
            }
        }
    }

    fn dispatch(&mut self, now: u64) -> Option<Request> {
        if self.batch_remaining > 0 {
            let direction = self.batch_direction;
            if self.expired(direction, now).is_none() {
                if let Some(position) = self.next_in_order(direction) {
                    self.batch_remaining -= 1;
                    return Some(self.take(direction, position));
                }
            }
        }
        let reads = !self.queues[0].is_empty();
        let writes = !self.queues[1].is_empty();
        let direction = if reads && (!writes || self.starved < self.tunables.writes_starved) {
            if writes {
                self.starved += 1;
            }
            RequestDirection::Read
        } else if writes {
            self.starved = 0;
            RequestDirection::Write
        } else {
            return None;
        };
        let position = self.expired(direction, now).or_else(|| self.next_in_order(direction)).or_else(|| self.lowest(direction))?;
        self.batch_direction = direction;
        self.batch_remaining = self.tunables.fifo_batch.saturating_sub(1);
        Some(self.take(direction, position))
    }

    fn len(&self) -> usize {
        self.queues[0].len() + self.queues[1].len()
    }

    fn drain(&mut self) -> Vec<Request> {
        let mut all: Vec<Request> = self.queues.iter_mut().flat_map(core::mem::take).collect();
        all.sort_by_key(|request| request.sequence);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn write(sequence: u64, first_block: u64, blocks: u64) -> Request {
        Request::new(sequence, RequestDirection::Write, first_block, vec![sequence as u8; (blocks * 512) as usize], 512)
    }

    fn read(sequence: u64, first_block: u64, blocks: u64) -> Request {
        Request::new(sequence, RequestDirection::Read, first_block, vec![0; (blocks * 512) as usize], 512)
    }

    fn order(scheduler: &mut dyn IoScheduler, now: u64) -> Vec<(RequestDirection, u64)> {
        let mut out = Vec::new();
        while let Some(request) = scheduler.dispatch(now) {
            out.push((request.direction, request.first_block));
        }
        out
    }

    #[test]
    fn noop_keeps_arrival_order_and_merges_both_ways() {
        let mut noop = Noop::default();
        assert!(!noop.add(write(1, 10, 1), 0));
        assert!(!noop.add(write(2, 2, 1), 0));
        assert!(noop.add(write(3, 11, 2), 0), "back merge");
        assert!(noop.add(write(4, 9, 1), 0), "front merge");
        assert!(!noop.add(read(5, 13, 1), 0), "a read does not merge with a write");
        assert_eq!(noop.len(), 3);
        let first = noop.dispatch(0).unwrap();
        assert_eq!((first.first_block, first.block_count()), (9, 4));
        assert_eq!(first.data[..512], [4; 512]);
        assert_eq!(first.data[512..1024], [1; 512]);
        assert_eq!(first.data[1024..], [3; 1024]);
        assert_eq!(first.parts.len(), 3);
        assert_eq!(order(&mut noop, 0), [(RequestDirection::Write, 2), (RequestDirection::Read, 13)]);
    }

    #[test]
    fn merging_stops_at_the_size_limit() {
        let mut noop = Noop::default();
        noop.add(write(1, 0, MAX_MERGED_BLOCKS), 0);
        assert!(!noop.add(write(2, MAX_MERGED_BLOCKS, 1), 0));
        assert_eq!(noop.len(), 2);
    }

    #[test]
    fn deadline_sorts_batches_and_prefers_reads() {
        let mut deadline = Deadline::new(DeadlineTunables { fifo_batch: 2, writes_starved: 1, ..DeadlineTunables::default() });
        for (sequence, block) in [(1, 50), (2, 10), (3, 30)] {
            deadline.add(write(sequence, block, 1), 0);
        }
        for (sequence, block) in [(4, 80), (5, 20), (6, 60)] {
            deadline.add(read(sequence, block, 1), 0);
        }
        use RequestDirection::{Read, Write};
        // Reads first in block order (a batch of two), then writes get their turn (starved
        // once), then the remaining read, then the rest of the writes in order.
        assert_eq!(order(&mut deadline, 1), [(Read, 20), (Read, 60), (Write, 10), (Write, 30), (Read, 80), (Write, 50)]);
    }

    #[test]
    fn deadline_serves_expired_requests_first() {
        let mut deadline = Deadline::new(DeadlineTunables { fifo_batch: 4, ..DeadlineTunables::default() });
        deadline.add(read(1, 900, 1), 0);
        deadline.add(read(2, 5, 1), 400);
        deadline.add(read(3, 7, 1), 400);
        use RequestDirection::Read;
        // At t=100 nothing has expired: block order from 0.
        let mut early = Deadline::new(DeadlineTunables::default());
        early.add(read(1, 900, 1), 0);
        early.add(read(2, 5, 1), 0);
        assert_eq!(order(&mut early, 100), [(Read, 5), (Read, 900)]);
        // At t=600 the read at 900 (deadline 500) has expired and goes first.
        assert_eq!(order(&mut deadline, 600)[0], (Read, 900));
    }

    #[test]
    fn switching_schedulers_keeps_requests() {
        let mut deadline = SchedulerKind::Deadline.create();
        deadline.add(write(2, 100, 1), 0);
        deadline.add(read(1, 5, 1), 0);
        deadline.add(write(3, 40, 1), 0);
        let mut noop = SchedulerKind::from_name("noop").unwrap().create();
        for request in deadline.drain() {
            noop.add(request, 0);
        }
        assert!(deadline.is_empty());
        assert_eq!(noop.len(), 3);
        assert_eq!(noop.dispatch(0).unwrap().sequence, 1);
        assert_eq!(SchedulerKind::from_name("mq-deadline"), Some(SchedulerKind::Deadline));
        assert_eq!(SchedulerKind::from_name("bfq"), None);
    }
}
