//! Sequence counters and seqlocks (Linux's `seqcount_t`/`seqlock_t`): writers bump an odd/even sequence around updates; lock-free readers retry when the sequence moved.

use core::cell::UnsafeCell;
use core::sync::atomic::{fence, AtomicU32, Ordering};

use super::SpinLock;

/// A sequence counter. Writers must be serialized by the caller (see [`SeqLock`]).
pub struct SeqCount {
    sequence: AtomicU32,
}

impl SeqCount {
    /// A counter at 0 (no write in progress).
    pub const fn new() -> Self {
        SeqCount { sequence: AtomicU32::new(0) }
    }

    /// Starts a read: waits out a write in progress and returns the sequence to check.
    pub fn read_begin(&self) -> u32 {
        loop {
            let sequence = self.sequence.load(Ordering::Acquire);
            if sequence & 1 == 0 {
                return sequence;
            }
            core::hint::spin_loop();
        }
    }

    /// Whether the read that began at `start` overlapped a write and must be redone.
    pub fn read_retry(&self, start: u32) -> bool {
        fence(Ordering::Acquire);
        self.sequence.load(Ordering::Relaxed) != start
    }

    /// Starts a write (the sequence becomes odd).
    pub fn write_begin(&self) {
        self.sequence.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::Release);
    }

    /// Ends a write (the sequence becomes even again).
    pub fn write_end(&self) {
        self.sequence.fetch_add(1, Ordering::Release);
    }

    /// The raw sequence (a snapshot).
    pub fn sequence(&self) -> u32 {
        self.sequence.load(Ordering::Relaxed)
    }
}

impl Default for SeqCount {
    fn default() -> Self {
        Self::new()
    }
}

/// A value written under a spinlock and read without locking, for small `Copy` data read
/// far more often than written (the clock's base values, statistics).
pub struct SeqLock<T: Copy> {
    count: SeqCount,
    writer: SpinLock<()>,
    value: UnsafeCell<T>,
}

// SAFETY: writers are serialized by `writer`; readers only copy the value out with volatile
// reads and discard any copy whose sequence check fails, so no torn value is ever returned.
unsafe impl<T: Copy + Send> Sync for SeqLock<T> {}

impl<T: Copy> SeqLock<T> {
    /// A seqlock holding `value`; its writer lock's debugging class is the caller's site.
    #[track_caller]
    pub const fn new(value: T) -> Self {
        SeqLock { count: SeqCount::new(), writer: SpinLock::new(()), value: UnsafeCell::new(value) }
    }

    /// Reads a consistent copy, retrying across writers; returns it and the retry count.
    pub fn read_counting_retries(&self) -> (T, u32) {
        let mut retries = 0;
        loop {
            let start = self.count.read_begin();
            // SAFETY: a volatile copy of plain `Copy` data; if a writer overlapped, the
            // sequence check below fails and the copy is discarded.
            let value = unsafe { core::ptr::read_volatile(self.value.get()) };
            if !self.count.read_retry(start) {
                return (value, retries);
            }
            retries += 1;
        }
    }

    /// Reads a consistent copy.
    pub fn read(&self) -> T {
        self.read_counting_retries().0
    }

    /// Replaces the value.
    pub fn write(&self, value: T) {
        self.update(|stored| *stored = value);
    }

    /// Changes the value in place under the write lock.
    pub fn update(&self, change: impl FnOnce(&mut T)) {
        let _guard = self.writer.lock();
        self.count.write_begin();
        // SAFETY: the writer lock makes this the only writer; readers tolerate the
        // concurrent change through the sequence check.
        change(unsafe { &mut *self.value.get() });
        self.count.write_end();
    }

    /// The sequence counter (for readers that interleave other work).
    pub fn count(&self) -> &SeqCount {
        &self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_overlapping_a_write_retries() {
        let count = SeqCount::new();
        let start = count.read_begin();
        assert!(!count.read_retry(start));
        count.write_begin();
        assert_eq!(count.sequence() & 1, 1);
        count.write_end();
        assert!(count.read_retry(start));
        let lock = SeqLock::new((1u64, 1u64));
        lock.update(|pair| {
            pair.0 += 1;
            pair.1 += 1;
        });
        assert_eq!(lock.read_counting_retries(), ((2, 2), 0));
    }
}
