//! Spinning reader-writer locks (Linux's `rwlock_t`): many readers or one writer; a waiting writer holds off new readers so it cannot starve. Preemption is disabled while held.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicU32, Ordering};

use crate::lockdep::{self, LockClass, LockKind};
use crate::sched;

const WRITER: u32 = 1 << 31;
const WRITER_WAITING: u32 = 1 << 30;
const READERS: u32 = WRITER_WAITING - 1;

/// A spinning reader-writer lock.
pub struct RwLock<T: ?Sized> {
    state: AtomicU32,
    class: LockClass,
    data: UnsafeCell<T>,
}

// SAFETY: readers share `&T` (needs `T: Sync`), the writer gets `&mut T` alone (needs `T: Send`).
unsafe impl<T: ?Sized + Send + Sync> Sync for RwLock<T> {}
// SAFETY: moving the lock moves its `T`.
unsafe impl<T: ?Sized + Send> Send for RwLock<T> {}

impl<T> RwLock<T> {
    /// An unlocked lock holding `data`; its lock-debugging class is the caller's site.
    #[track_caller]
    pub const fn new(data: T) -> Self {
        RwLock { state: AtomicU32::new(0), class: LockClass::new(), data: UnsafeCell::new(data) }
    }
}

impl<T: ?Sized> RwLock<T> {
    /// Takes a read lock if no writer holds or waits for the lock.
    #[cfg_attr(debug_assertions, track_caller)]
    pub fn try_read(&self) -> Option<RwLockReadGuard<'_, T>> {
        let guard = self.take_read()?;
        lockdep::acquire(&self.class, LockKind::RwLock, self.instance(), true);
        Some(guard)
    }

    fn instance(&self) -> *const () {
        self as *const Self as *const ()
    }

    fn take_read(&self) -> Option<RwLockReadGuard<'_, T>> {
        sched::preempt_disable();
        let taken = self
            .state
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |state| {
                (state & (WRITER | WRITER_WAITING) == 0 && state & READERS < READERS).then_some(state + 1)
            })
            .is_ok();
        if taken {
            Some(RwLockReadGuard { lock: self })
        } else {
            sched::preempt_enable();
            None
        }
    }

    /// Spins until a read lock is ours.
    #[cfg_attr(debug_assertions, track_caller)]
    pub fn read(&self) -> RwLockReadGuard<'_, T> {
        lockdep::acquire(&self.class, LockKind::RwLock, self.instance(), false);
        loop {
            if let Some(guard) = self.take_read() {
                return guard;
            }
            core::hint::spin_loop();
        }
    }

    /// Takes the write lock if the lock is free.
    #[cfg_attr(debug_assertions, track_caller)]
    pub fn try_write(&self) -> Option<RwLockWriteGuard<'_, T>> {
        let guard = self.take_write()?;
        lockdep::acquire(&self.class, LockKind::RwLock, self.instance(), true);
        Some(guard)
    }

    fn take_write(&self) -> Option<RwLockWriteGuard<'_, T>> {
        sched::preempt_disable();
        let taken = self
            .state
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |state| (state & (WRITER | READERS) == 0).then_some(WRITER))
            .is_ok();
        if taken {
            Some(RwLockWriteGuard { lock: self })
        } else {
            sched::preempt_enable();
            None
        }
    }

    /// Spins until the write lock is ours; announces itself so new readers wait.
    #[cfg_attr(debug_assertions, track_caller)]
    pub fn write(&self) -> RwLockWriteGuard<'_, T> {
        lockdep::acquire(&self.class, LockKind::RwLock, self.instance(), false);
        loop {
            if let Some(guard) = self.take_write() {
                return guard;
            }
            self.state.fetch_or(WRITER_WAITING, Ordering::Relaxed);
            core::hint::spin_loop();
        }
    }

    /// Number of readers holding the lock (a snapshot).
    pub fn readers(&self) -> u32 {
        self.state.load(Ordering::Relaxed) & READERS
    }
}

/// Shared access to an [`RwLock`]'s data.
pub struct RwLockReadGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
}

impl<T: ?Sized> Deref for RwLockReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a read guard exists only while no writer holds the lock.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for RwLockReadGuard<'_, T> {
    fn drop(&mut self) {
        lockdep::release(self.lock.instance());
        self.lock.state.fetch_sub(1, Ordering::Release);
        sched::preempt_enable();
    }
}

/// Exclusive access to an [`RwLock`]'s data.
pub struct RwLockWriteGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
}

impl<T: ?Sized> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the write guard is the only access while it exists.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> DerefMut for RwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for RwLockWriteGuard<'_, T> {
    fn drop(&mut self) {
        lockdep::release(self.lock.instance());
        // Clears the writer bit and any waiting announcement; a still-waiting writer sets
        // it again on its next attempt.
        self.lock.state.store(0, Ordering::Release);
        sched::preempt_enable();
    }
}

#[cfg(test)]
mod tests {
    use super::RwLock;
    use std::sync::Arc;

    #[test]
    fn readers_share_writers_exclude() {
        let lock = RwLock::new(1);
        let first = lock.read();
        let second = lock.read();
        assert_eq!(lock.readers(), 2);
        assert!(lock.try_write().is_none());
        drop((first, second));
        let mut writer = lock.write();
        *writer += 1;
        assert!(lock.try_read().is_none());
        drop(writer);
        assert_eq!(*lock.read(), 2);
    }

    #[test]
    fn counter_is_exact_under_contention() {
        let lock = Arc::new(RwLock::new((0u64, 0u64)));
        let threads: Vec<_> = (0..4)
            .map(|index| {
                let lock = Arc::clone(&lock);
                std::thread::spawn(move || {
                    for _ in 0..5_000 {
                        if index % 2 == 0 {
                            let mut guard = lock.write();
                            guard.0 += 1;
                            guard.1 += 1;
                        } else {
                            let guard = lock.read();
                            assert_eq!(guard.0, guard.1, "a reader saw a half-done write");
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(*lock.read(), (10_000, 10_000));
    }
}
