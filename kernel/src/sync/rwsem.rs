//! Sleeping reader-writer semaphores (Linux's `rw_semaphore`): readers share, a writer excludes; contenders sleep, and a waiting writer holds off new readers.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicU32, Ordering};

use super::WaitQueue;
use crate::lockdep::{self, LockClass, LockKind};

const WRITER: u32 = 1 << 31;
const WRITERS_WAITING: u32 = 1 << 30;
const READERS: u32 = WRITERS_WAITING - 1;

/// A sleeping reader-writer lock.
pub struct RwSemaphore<T: ?Sized> {
    state: AtomicU32,
    waiting_writers: AtomicU32,
    waiters: WaitQueue,
    class: LockClass,
    data: UnsafeCell<T>,
}

// SAFETY: as for a reader-writer lock: shared `&T` needs `T: Sync`, exclusive `&mut T` needs `T: Send`.
unsafe impl<T: ?Sized + Send + Sync> Sync for RwSemaphore<T> {}
// SAFETY: moving the semaphore moves its `T`.
unsafe impl<T: ?Sized + Send> Send for RwSemaphore<T> {}

impl<T> RwSemaphore<T> {
    /// An unlocked semaphore holding `data`; its lock-debugging class is the caller's site.
    #[track_caller]
    pub const fn new(data: T) -> Self {
        RwSemaphore {
            state: AtomicU32::new(0),
            waiting_writers: AtomicU32::new(0),
            waiters: WaitQueue::new(),
            class: LockClass::new(),
            data: UnsafeCell::new(data),
        }
    }
}

impl<T: ?Sized> RwSemaphore<T> {
    fn try_down_read(&self) -> bool {
        self.state
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |state| {
                (state & (WRITER | WRITERS_WAITING) == 0 && state & READERS < READERS).then_some(state + 1)
            })
            .is_ok()
    }

    fn try_down_write(&self) -> bool {
        self.state
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |state| {
                (state & (WRITER | READERS) == 0).then_some((state & WRITERS_WAITING) | WRITER)
            })
            .is_ok()
    }

    /// Takes a read lock, sleeping while a writer holds or waits for it.
    #[cfg_attr(debug_assertions, track_caller)]
    pub fn read(&self) -> RwSemaphoreReadGuard<'_, T> {
        lockdep::might_sleep();
        lockdep::acquire(&self.class, LockKind::RwSemaphore, self.instance(), false);
        if !self.try_down_read() {
            self.waiters.wait(false, || self.try_down_read());
        }
        RwSemaphoreReadGuard { semaphore: self }
    }

    /// Takes the write lock, sleeping until readers and the writer are gone.
    #[cfg_attr(debug_assertions, track_caller)]
    pub fn write(&self) -> RwSemaphoreWriteGuard<'_, T> {
        lockdep::might_sleep();
        lockdep::acquire(&self.class, LockKind::RwSemaphore, self.instance(), false);
        if !self.try_down_write() {
            self.waiting_writers.fetch_add(1, Ordering::AcqRel);
            self.state.fetch_or(WRITERS_WAITING, Ordering::AcqRel);
            self.waiters.wait(true, || {
                self.state.fetch_or(WRITERS_WAITING, Ordering::AcqRel);
                self.try_down_write()
            });
            if self.waiting_writers.fetch_sub(1, Ordering::AcqRel) == 1 {
                self.state.fetch_and(!WRITERS_WAITING, Ordering::AcqRel);
            }
        }
        RwSemaphoreWriteGuard { semaphore: self }
    }

    fn instance(&self) -> *const () {
        self as *const Self as *const ()
    }

    /// Readers holding the semaphore (a snapshot).
    pub fn readers(&self) -> u32 {
        self.state.load(Ordering::Relaxed) & READERS
    }

    fn wake(&self) {
        if self.waiters.has_waiters() {
            self.waiters.wake_up();
        }
    }
}

/// Shared access to an [`RwSemaphore`]'s data.
pub struct RwSemaphoreReadGuard<'a, T: ?Sized> {
    semaphore: &'a RwSemaphore<T>,
}

impl<T: ?Sized> Deref for RwSemaphoreReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a read guard exists only while no writer holds the semaphore.
        unsafe { &*self.semaphore.data.get() }
    }
}

impl<T: ?Sized> Drop for RwSemaphoreReadGuard<'_, T> {
    fn drop(&mut self) {
        lockdep::release(self.semaphore.instance());
        let previous = self.semaphore.state.fetch_sub(1, Ordering::Release);
        if previous & READERS == 1 {
            self.semaphore.wake();
        }
    }
}

/// Exclusive access to an [`RwSemaphore`]'s data.
pub struct RwSemaphoreWriteGuard<'a, T: ?Sized> {
    semaphore: &'a RwSemaphore<T>,
}

impl<T: ?Sized> Deref for RwSemaphoreWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the write guard is the only access while it exists.
        unsafe { &*self.semaphore.data.get() }
    }
}

impl<T: ?Sized> DerefMut for RwSemaphoreWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference.
        unsafe { &mut *self.semaphore.data.get() }
    }
}

impl<T: ?Sized> Drop for RwSemaphoreWriteGuard<'_, T> {
    fn drop(&mut self) {
        lockdep::release(self.semaphore.instance());
        self.semaphore.state.fetch_and(!WRITER, Ordering::Release);
        // Every reader and one writer: whoever's condition holds proceeds.
        self.semaphore.waiters.wake_up();
    }
}

#[cfg(test)]
mod tests {
    use super::RwSemaphore;

    #[test]
    fn readers_share_and_the_writer_is_alone() {
        let semaphore = RwSemaphore::new(0);
        {
            let first = semaphore.read();
            let second = semaphore.read();
            assert_eq!(*first + *second, 0);
            assert_eq!(semaphore.readers(), 2);
            assert!(!semaphore.try_down_write());
        }
        *semaphore.write() += 5;
        assert_eq!(*semaphore.read(), 5);
    }
}
