//! Sleeping mutexes with an owner and priority inheritance: a real-time task waiting for a mutex lends its priority to the owner until it unlocks (Linux's `rt_mutex` idea on a `mutex`).

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::WaitQueue;
use crate::lockdep::{self, LockClass, LockKind};
use crate::sched;

const UNLOCKED: u64 = 0;

/// A mutual-exclusion lock that sleeps while contended. The owner is recorded (task id),
/// and while a more urgent real-time task waits, the owner runs with that task's
/// parameters, which bounds a priority inversion to the owner's critical section.
pub struct Mutex<T: ?Sized> {
    /// Owner's task id + 1, or 0 when unlocked.
    owner: AtomicU64,
    /// Whether the owner runs boosted through this mutex.
    boosted: AtomicBool,
    waiters: WaitQueue,
    class: LockClass,
    data: UnsafeCell<T>,
}

// SAFETY: the lock gives one task at a time access to `T`, so sharing the mutex is sound
// when `T` may move between tasks.
unsafe impl<T: ?Sized + Send> Sync for Mutex<T> {}
// SAFETY: moving the mutex moves its `T`.
unsafe impl<T: ?Sized + Send> Send for Mutex<T> {}

/// The id a mutex records for the calling context (task id + 1; CPU-bound contexts before
/// the scheduler count as task 0).
fn owner_token() -> u64 {
    sched::current_id().map_or(1, |id| id + 1)
}

impl<T> Mutex<T> {
    /// An unlocked mutex holding `data`; its lock-debugging class is the caller's site.
    #[track_caller]
    pub const fn new(data: T) -> Self {
        Mutex {
            owner: AtomicU64::new(UNLOCKED),
            boosted: AtomicBool::new(false),
            waiters: WaitQueue::new(),
            class: LockClass::new(),
            data: UnsafeCell::new(data),
        }
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Takes the mutex if it is free, without sleeping.
    #[cfg_attr(debug_assertions, track_caller)]
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        let taken = self.try_take();
        if taken {
            lockdep::acquire(&self.class, LockKind::Mutex, self.instance(), true);
        }
        taken.then_some(MutexGuard { mutex: self })
    }

    fn try_take(&self) -> bool {
        self.owner.compare_exchange(UNLOCKED, owner_token(), Ordering::Acquire, Ordering::Relaxed).is_ok()
    }

    fn instance(&self) -> *const () {
        self as *const Self as *const ()
    }

    /// Takes the mutex, sleeping while another task holds it. Panics if the caller holds it.
    #[cfg_attr(debug_assertions, track_caller)]
    pub fn lock(&self) -> MutexGuard<'_, T> {
        lockdep::might_sleep();
        lockdep::acquire(&self.class, LockKind::Mutex, self.instance(), false);
        if self.try_take() {
            return MutexGuard { mutex: self };
        }
        assert!(self.owner.load(Ordering::Relaxed) != owner_token(), "mutex: recursive lock by task {}", owner_token() - 1);
        self.waiters.wait(true, || {
            if self.owner.compare_exchange(UNLOCKED, owner_token(), Ordering::Acquire, Ordering::Relaxed).is_ok() {
                return true;
            }
            self.lend_priority();
            false
        });
        MutexGuard { mutex: self }
    }

    /// Boosts the owner to the caller's parameters if the caller is more urgent.
    fn lend_priority(&self) {
        let owner = self.owner.load(Ordering::Acquire);
        let Some(waiter) = sched::current() else { return };
        let waiter_params = waiter.params();
        if owner == UNLOCKED || !waiter_params.policy.is_real_time() {
            return;
        }
        let Some(owner_task) = sched::find_task(owner - 1) else { return };
        if waiter_params.kernel_priority() < owner_task.params().kernel_priority() {
            self.boosted.store(true, Ordering::Release);
            sched::boost(&owner_task, waiter_params);
        }
    }

    /// The lock-debugging class (the construction site).
    pub fn class(&self) -> &LockClass {
        &self.class
    }

    /// The owner's task id, `None` when unlocked.
    pub fn owner(&self) -> Option<sched::TaskId> {
        match self.owner.load(Ordering::Acquire) {
            UNLOCKED => None,
            token => Some(token - 1),
        }
    }

    /// Whether the mutex is held.
    pub fn is_locked(&self) -> bool {
        self.owner.load(Ordering::Relaxed) != UNLOCKED
    }

    fn unlock(&self) {
        lockdep::release(self.instance());
        let boosted = self.boosted.swap(false, Ordering::AcqRel);
        self.owner.store(UNLOCKED, Ordering::Release);
        // Wake the waiter before giving the boost back: once unboosted, an interrupt could
        // let a middle-priority task preempt this one before the wake-up, and the waiter
        // that lent its priority would stay asleep behind it (the inversion returns).
        if self.waiters.has_waiters() {
            self.waiters.wake_up();
        }
        if boosted {
            if let Some(task) = sched::current() {
                sched::unboost(&task);
            }
        }
    }
}

/// Access to a [`Mutex`]'s data; unlocks on drop.
pub struct MutexGuard<'a, T: ?Sized> {
    mutex: &'a Mutex<T>,
}

impl<T: ?Sized> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while its task holds the mutex.
        unsafe { &*self.mutex.data.get() }
    }
}

impl<T: ?Sized> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this the only reference from the guard.
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<T: ?Sized> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        self.mutex.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::Mutex;

    #[test]
    fn locks_and_records_an_owner() {
        let mutex = Mutex::new(5);
        assert_eq!(mutex.owner(), None);
        {
            let mut guard = mutex.lock();
            *guard += 1;
            assert!(mutex.is_locked());
            assert_eq!(mutex.owner(), Some(0));
            assert!(mutex.try_lock().is_none());
        }
        assert!(!mutex.is_locked());
        assert_eq!(*mutex.lock(), 6);
    }
}
