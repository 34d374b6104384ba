//! Condition variables over [`Mutex`](super::Mutex): wait releases the mutex and sleeps until notified, then takes it again.

use core::sync::atomic::{AtomicU64, Ordering};

use super::{Mutex, MutexGuard, WaitQueue};

/// A condition variable.
pub struct CondVar {
    generation: AtomicU64,
    waiters: WaitQueue,
}

impl CondVar {
    /// A condition variable with no waiters.
    #[track_caller]
    pub const fn new() -> Self {
        CondVar { generation: AtomicU64::new(0), waiters: WaitQueue::new() }
    }

    /// Unlocks `guard`'s mutex, sleeps until a notification after this call, and locks it
    /// again. As with every condition variable, callers recheck their condition in a loop.
    #[track_caller]
    pub fn wait<'a, T: ?Sized>(&self, mutex: &'a Mutex<T>, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        let generation = self.generation.load(Ordering::Acquire);
        crate::lockdep::might_sleep();
        drop(guard);
        self.waiters.wait(false, || self.generation.load(Ordering::Acquire) != generation);
        mutex.lock()
    }

    /// Waits until `condition` holds on the protected data.
    #[track_caller]
    pub fn wait_while<'a, T: ?Sized>(
        &self,
        mutex: &'a Mutex<T>,
        mut guard: MutexGuard<'a, T>,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> MutexGuard<'a, T> {
        while condition(&mut guard) {
            guard = self.wait(mutex, guard);
        }
        guard
    }

    /// Wakes every waiter (each rechecks its condition).
    pub fn notify_all(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.waiters.wake_up_all();
    }

    /// Wakes waiters; with non-exclusive waiters this is [`notify_all`](Self::notify_all),
    /// which is correct because waiters recheck their condition.
    pub fn notify_one(&self) {
        self.notify_all();
    }
}

impl Default for CondVar {
    fn default() -> Self {
        Self::new()
    }
}
