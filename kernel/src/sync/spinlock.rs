//! Fair (ticket) spinlocks that disable preemption while held, with an interrupt-saving variant for data shared with handlers.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicU32, Ordering};

use hinoki_interface::InterruptState;

use crate::lockdep::{self, LockClass, LockKind};

/// A ticket spinlock: waiters acquire in arrival order. Does not mask interrupts; use
/// [`IrqSpinLock`] for data an interrupt handler also touches.
pub struct SpinLock<T: ?Sized> {
    next_ticket: AtomicU32,
    now_serving: AtomicU32,
    class: LockClass,
    data: UnsafeCell<T>,
}

// SAFETY: the lock hands out at most one guard at a time, so `&SpinLock<T>` gives exclusive
// access to `T` to one thread at a time, which is sound when `T: Send`.
unsafe impl<T: ?Sized + Send> Sync for SpinLock<T> {}
// SAFETY: moving the lock moves the `T` it owns.
unsafe impl<T: ?Sized + Send> Send for SpinLock<T> {}

impl<T> SpinLock<T> {
    /// An unlocked lock holding `data`; its lock-debugging class is the caller's site.
    #[track_caller]
    pub const fn new(data: T) -> Self {
        SpinLock { next_ticket: AtomicU32::new(0), now_serving: AtomicU32::new(0), class: LockClass::new(), data: UnsafeCell::new(data) }
    }
}

impl<T: ?Sized> SpinLock<T> {
    /// Spins until the lock is ours. Preemption stays disabled on this CPU while it is
    /// held (a preempted holder would make waiters on the same CPU spin forever).
    #[cfg_attr(debug_assertions, track_caller)]
    pub fn lock(&self) -> SpinLockGuard<'_, T> {
        lockdep::acquire(&self.class, LockKind::Spin, self.instance(), false);
        crate::sched::preempt_disable();
        let ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        while self.now_serving.load(Ordering::Acquire) != ticket {
            core::hint::spin_loop();
        }
        SpinLockGuard { lock: self }
    }

    /// Takes the lock only if it is free right now.
    #[cfg_attr(debug_assertions, track_caller)]
    pub fn try_lock(&self) -> Option<SpinLockGuard<'_, T>> {
        crate::sched::preempt_disable();
        let serving = self.now_serving.load(Ordering::Relaxed);
        let taken = self.next_ticket.compare_exchange(serving, serving.wrapping_add(1), Ordering::Acquire, Ordering::Relaxed).is_ok();
        if taken {
            lockdep::acquire(&self.class, LockKind::Spin, self.instance(), true);
            Some(SpinLockGuard { lock: self })
        } else {
            crate::sched::preempt_enable();
            None
        }
    }

    /// The lock-debugging class (the construction site).
    pub fn class(&self) -> &LockClass {
        &self.class
    }

    /// Whether someone holds the lock (a snapshot, for diagnostics).
    pub fn is_locked(&self) -> bool {
        self.next_ticket.load(Ordering::Relaxed) != self.now_serving.load(Ordering::Relaxed)
    }

    fn instance(&self) -> *const () {
        self as *const Self as *const ()
    }

    fn unlock(&self) {
        lockdep::release(self.instance());
        self.now_serving.fetch_add(1, Ordering::Release);
        crate::sched::preempt_enable();
    }
}

/// Exclusive access to a [`SpinLock`]'s data; unlocks on drop.
pub struct SpinLockGuard<'a, T: ?Sized> {
    lock: &'a SpinLock<T>,
}

impl<T: ?Sized> Deref for SpinLockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while this thread holds the lock.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> DerefMut for SpinLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard exists only while this thread holds the lock, and `&mut self`
        // makes this the only reference derived from it.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for SpinLockGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.unlock();
    }
}

/// A spinlock that masks interrupts on the local CPU while held (Linux's `spin_lock_irqsave`).
pub struct IrqSpinLock<T: ?Sized> {
    inner: SpinLock<T>,
}

impl<T> IrqSpinLock<T> {
    /// An unlocked lock holding `data`; its lock-debugging class is the caller's site.
    #[track_caller]
    pub const fn new(data: T) -> Self {
        IrqSpinLock { inner: SpinLock::new(data) }
    }
}

impl<T: ?Sized> IrqSpinLock<T> {
    /// Masks interrupts, then spins until the lock is ours.
    #[cfg_attr(debug_assertions, track_caller)]
    pub fn lock(&self) -> IrqSpinLockGuard<'_, T> {
        let saved = disable_local_interrupts();
        IrqSpinLockGuard { guard: Some(self.inner.lock()), saved }
    }

    /// Spins until the lock is ours without touching the interrupt mask, for callers that
    /// already masked interrupts on this CPU (Linux's `raw_spin_lock` inside an irqsave
    /// region). Taking it with interrupts enabled risks a deadlock with an interrupt handler.
    #[cfg_attr(debug_assertions, track_caller)]
    pub fn lock_irqs_disabled(&self) -> SpinLockGuard<'_, T> {
        self.inner.lock()
    }

    /// Takes the lock only if it is free right now (interrupts stay as they were otherwise).
    #[cfg_attr(debug_assertions, track_caller)]
    pub fn try_lock(&self) -> Option<IrqSpinLockGuard<'_, T>> {
        let saved = disable_local_interrupts();
        match self.inner.try_lock() {
            Some(guard) => Some(IrqSpinLockGuard { guard: Some(guard), saved }),
            None => {
                restore_local_interrupts(saved);
                None
            }
        }
    }
}

fn disable_local_interrupts() -> Option<InterruptState> {
    crate::try_platform().map(|platform| platform.cpu().disable_interrupts())
}

fn restore_local_interrupts(saved: Option<InterruptState>) {
    if let (Some(platform), Some(state)) = (crate::try_platform(), saved) {
        platform.cpu().restore_interrupts(state);
    }
}

/// Exclusive access to an [`IrqSpinLock`]'s data; unlocks, then restores interrupts, on drop.
pub struct IrqSpinLockGuard<'a, T: ?Sized> {
    guard: Option<SpinLockGuard<'a, T>>,
    saved: Option<InterruptState>,
}

impl<T: ?Sized> Deref for IrqSpinLockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.guard.as_ref().expect("guard present until drop")
    }
}

impl<T: ?Sized> DerefMut for IrqSpinLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.guard.as_mut().expect("guard present until drop")
    }
}

impl<T: ?Sized> Drop for IrqSpinLockGuard<'_, T> {
    fn drop(&mut self) {
        drop(self.guard.take());
        restore_local_interrupts(self.saved.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn counter_is_exact_under_contention() {
        let lock = Arc::new(SpinLock::new(0u64));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let lock = Arc::clone(&lock);
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        *lock.lock() += 1;
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(*lock.lock(), 40_000);
    }

    #[test]
    fn try_lock_fails_while_held() {
        let lock = SpinLock::new(1);
        let guard = lock.lock();
        assert!(lock.is_locked());
        assert!(lock.try_lock().is_none());
        drop(guard);
        assert!(lock.try_lock().is_some());
        let irq_lock = IrqSpinLock::new(2);
        let held = irq_lock.lock();
        assert!(irq_lock.try_lock().is_none());
        drop(held);
        assert_eq!(*irq_lock.lock(), 2);
    }
}
