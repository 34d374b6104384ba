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
        self.spin_for_ticket();
        SpinLockGuard { lock: self }
    }

    /// Serves the next ticket. Only the holder writes `now_serving`, so a load and a
    /// release store do (no atomic read-modify-write, which is dearer, above all emulated).
    #[inline]
    fn release_ticket(&self) {
        self.now_serving.store(self.now_serving.load(Ordering::Relaxed).wrapping_add(1), Ordering::Release);
    }

    /// Takes the next ticket only if it is served at once (the lock is free).
    #[inline]
    fn try_take_ticket(&self) -> bool {
        let serving = self.now_serving.load(Ordering::Relaxed);
        self.next_ticket.compare_exchange(serving, serving.wrapping_add(1), Ordering::Acquire, Ordering::Relaxed).is_ok()
    }

    #[inline]
    fn spin_for_ticket(&self) {
        let ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        while self.now_serving.load(Ordering::Acquire) != ticket {
            core::hint::spin_loop();
            // Host tests run the lock on OS threads, which can be descheduled while their
            // ticket is up: give the CPU away so a busy host does not turn every hand-off
            // into a wait for the next time slice.
            #[cfg(test)]
            std::thread::yield_now();
        }
    }

    /// Takes the lock only if it is free right now.
    #[cfg_attr(debug_assertions, track_caller)]
    pub fn try_lock(&self) -> Option<SpinLockGuard<'_, T>> {
        crate::sched::preempt_disable();
        if self.try_take_ticket() {
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
        self.release_ticket();
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

/// Exclusive access to an [`IrqSpinLock`]'s data taken with interrupts already masked
/// ([`IrqSpinLock::lock_irqs_disabled`]): no preempt count; unlocks on drop.
pub struct RawSpinLockGuard<'a, T: ?Sized> {
    lock: &'a SpinLock<T>,
}

impl<T: ?Sized> RawSpinLockGuard<'_, T> {
    /// Leaves the lock held for the task this CPU switches to, which takes it with
    /// [`IrqSpinLock::take_over`]. For lock debugging the calling task no longer holds it.
    pub fn hand_over(self) {
        lockdep::release(self.lock.instance());
        core::mem::forget(self);
    }
}

impl<T: ?Sized> Deref for RawSpinLockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while this CPU holds the lock.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> DerefMut for RawSpinLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this the only access.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for RawSpinLockGuard<'_, T> {
    fn drop(&mut self) {
        lockdep::release(self.lock.instance());
        self.lock.release_ticket();
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
    /// Masks interrupts, then spins until the lock is ours. The preempt count is left
    /// alone: with interrupts masked nothing preempts the holder, and the unlock checks
    /// for a reschedule asked for meanwhile once interrupts are back on (as Linux's
    /// `spin_unlock_irqrestore` does through `preempt_enable`).
    #[cfg_attr(debug_assertions, track_caller)]
    pub fn lock(&self) -> IrqSpinLockGuard<'_, T> {
        let saved = disable_local_interrupts();
        let lock = &self.inner;
        lockdep::acquire(&lock.class, LockKind::Spin, lock.instance(), false);
        lock.spin_for_ticket();
        IrqSpinLockGuard { lock, saved }
    }

    /// Spins until the lock is ours without touching the interrupt mask or the preempt
    /// count, for callers that already masked interrupts on this CPU (Linux's
    /// `raw_spin_lock` inside an irqsave region): with interrupts masked nothing can
    /// preempt the holder. Interrupts must stay masked until the guard is dropped (or
    /// handed over); taking it with interrupts enabled risks a deadlock with a handler.
    #[cfg_attr(debug_assertions, track_caller)]
    pub fn lock_irqs_disabled(&self) -> RawSpinLockGuard<'_, T> {
        let lock = &self.inner;
        lockdep::acquire(&lock.class, LockKind::Spin, lock.instance(), false);
        lock.spin_for_ticket();
        RawSpinLockGuard { lock }
    }

    /// A guard for the lock a [`RawSpinLockGuard::hand_over`] on this CPU left held: the
    /// scheduler keeps a CPU's run-queue lock across a context switch and the task switched
    /// to releases it (Linux's `finish_lock_switch`).
    ///
    /// # Safety
    /// The lock must be held, handed over on this CPU with interrupts masked since, and no
    /// other guard for it may exist.
    #[cfg_attr(debug_assertions, track_caller)]
    pub unsafe fn take_over(&self) -> RawSpinLockGuard<'_, T> {
        let lock = &self.inner;
        debug_assert!(lock.is_locked(), "take_over of a lock nobody holds");
        lockdep::acquire(&lock.class, LockKind::Spin, lock.instance(), true);
        RawSpinLockGuard { lock }
    }

    /// Takes the lock only if it is free right now (interrupts stay as they were otherwise).
    #[cfg_attr(debug_assertions, track_caller)]
    pub fn try_lock(&self) -> Option<IrqSpinLockGuard<'_, T>> {
        let saved = disable_local_interrupts();
        let lock = &self.inner;
        if lock.try_take_ticket() {
            lockdep::acquire(&lock.class, LockKind::Spin, lock.instance(), true);
            Some(IrqSpinLockGuard { lock, saved })
        } else {
            restore_local_interrupts(saved);
            None
        }
    }
}

fn disable_local_interrupts() -> Option<InterruptState> {
    crate::try_cpu().map(|cpu| cpu.disable_interrupts())
}

fn restore_local_interrupts(saved: Option<InterruptState>) {
    if let (Some(cpu), Some(state)) = (crate::try_cpu(), saved) {
        cpu.restore_interrupts(state);
    }
}

/// Exclusive access to an [`IrqSpinLock`]'s data; unlocks, restores interrupts and, if
/// that turned them back on, takes a reschedule asked for meanwhile, on drop.
pub struct IrqSpinLockGuard<'a, T: ?Sized> {
    lock: &'a SpinLock<T>,
    saved: Option<InterruptState>,
}

impl<T: ?Sized> Deref for IrqSpinLockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while this CPU holds the lock.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> DerefMut for IrqSpinLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this the only access.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for IrqSpinLockGuard<'_, T> {
    fn drop(&mut self) {
        lockdep::release(self.lock.instance());
        self.lock.release_ticket();
        if let (Some(cpu), Some(state)) = (crate::try_cpu(), self.saved) {
            cpu.restore_interrupts(state);
            // Switches only if interrupts are on again (and a reschedule is due).
            crate::sched::preempt_check_resched();
        }
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
