//! Counting semaphores: `down` sleeps while the count is zero, `up` adds one and wakes a waiter (Linux's `struct semaphore`).

use core::sync::atomic::{AtomicUsize, Ordering};

use super::WaitQueue;

/// A counting semaphore.
pub struct Semaphore {
    count: AtomicUsize,
    waiters: WaitQueue,
}

impl Semaphore {
    /// A semaphore holding `count` units.
    #[track_caller]
    pub const fn new(count: usize) -> Self {
        Semaphore { count: AtomicUsize::new(count), waiters: WaitQueue::new() }
    }

    /// Takes a unit if one is free, without sleeping.
    pub fn try_down(&self) -> bool {
        self.count.fetch_update(Ordering::AcqRel, Ordering::Acquire, |count| count.checked_sub(1)).is_ok()
    }

    /// Takes a unit, sleeping until one is free.
    #[track_caller]
    pub fn down(&self) {
        crate::lockdep::might_sleep();
        if !self.try_down() {
            self.waiters.wait(true, || self.try_down());
        }
    }

    /// Returns a unit and wakes one waiter.
    pub fn up(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
        if self.waiters.has_waiters() {
            self.waiters.wake_up();
        }
    }

    /// Free units now.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::Semaphore;

    #[test]
    fn counts_units() {
        let semaphore = Semaphore::new(2);
        assert!(semaphore.try_down());
        semaphore.down();
        assert!(!semaphore.try_down());
        semaphore.up();
        assert_eq!(semaphore.count(), 1);
        semaphore.down();
        assert_eq!(semaphore.count(), 0);
    }
}
