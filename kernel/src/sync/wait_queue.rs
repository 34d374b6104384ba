//! Wait queues: tasks sleep until a condition holds; wakers wake all non-exclusive waiters and a number of exclusive ones (Linux's `wait_event` / `wake_up`).

use alloc::collections::VecDeque;
use core::sync::atomic::{fence, AtomicUsize, Ordering};

use super::IrqSpinLock;
use crate::sched::{self, TaskRef, TaskState};

struct Waiter {
    task: TaskRef,
    exclusive: bool,
}

/// A queue of sleeping tasks. Non-exclusive waiters queue at the front, exclusive ones at
/// the back, as in Linux, so a wake-up reaches every non-exclusive waiter before it counts
/// exclusive ones.
pub struct WaitQueue {
    waiters: IrqSpinLock<VecDeque<Waiter>>,
    /// Number of queued waiters, readable without the lock (wakers skip empty queues).
    count: AtomicUsize,
}

impl WaitQueue {
    /// An empty queue; its lock's debugging class is the caller's site.
    #[track_caller]
    pub const fn new() -> Self {
        WaitQueue { waiters: IrqSpinLock::new(VecDeque::new()), count: AtomicUsize::new(0) }
    }

    /// Sleeps until `condition` holds (checked before each sleep and after each wake-up).
    /// Without a scheduler, spins on the condition.
    #[track_caller]
    pub fn wait_event(&self, condition: impl FnMut() -> bool) {
        crate::lockdep::might_sleep();
        self.wait(false, condition);
    }

    /// As [`wait_event`](Self::wait_event), sleeping interruptibly (Linux's
    /// `wait_event_interruptible`): the task is not counted as blocked in the load average
    /// (kernel threads idling between jobs wait this way).
    #[track_caller]
    pub fn wait_event_interruptible(&self, condition: impl FnMut() -> bool) {
        crate::lockdep::might_sleep();
        self.wait_in_state(false, TaskState::Interruptible, condition);
    }

    /// As [`wait_event`](Self::wait_event), as an exclusive waiter: a plain
    /// [`wake_up`](Self::wake_up) wakes only one of those.
    #[track_caller]
    pub fn wait_event_exclusive(&self, condition: impl FnMut() -> bool) {
        crate::lockdep::might_sleep();
        self.wait(true, condition);
    }

    /// The sleep itself, for primitives that made their own `might_sleep` check.
    pub(super) fn wait(&self, exclusive: bool, condition: impl FnMut() -> bool) {
        self.wait_in_state(exclusive, TaskState::Uninterruptible, condition);
    }

    fn wait_in_state(&self, exclusive: bool, sleep_state: TaskState, mut condition: impl FnMut() -> bool) {
        if condition() {
            return;
        }
        // `current` is `None` until the calling CPU runs the scheduler.
        let Some(task) = sched::current() else {
            while !condition() {
                core::hint::spin_loop();
            }
            return;
        };
        loop {
            task.set_state_for_wait(sleep_state);
            {
                let mut waiters = self.waiters.lock();
                if !waiters.iter().any(|waiter| TaskRef::ptr_eq(&waiter.task, &task)) {
                    let waiter = Waiter { task: task.clone(), exclusive };
                    if exclusive {
                        waiters.push_back(waiter);
                    } else {
                        waiters.push_front(waiter);
                    }
                    self.count.store(waiters.len(), Ordering::Release);
                }
            }
            // Pairs with the fence in `wake`: either the waker sees this waiter counted, or
            // this check sees the waker's condition change.
            fence(Ordering::SeqCst);
            if condition() {
                break;
            }
            sched::schedule();
            // Woken (the waker took this waiter off the queue) or not asleep after all: look
            // at the condition before queueing again, so a wake-up that satisfied it costs
            // no second trip through the queue.
            if condition() {
                break;
            }
        }
        task.set_state_for_wait(TaskState::Running);
        if self.count.load(Ordering::Acquire) > 0 {
            let mut waiters = self.waiters.lock();
            waiters.retain(|waiter| !TaskRef::ptr_eq(&waiter.task, &task));
            self.count.store(waiters.len(), Ordering::Release);
        }
    }

    /// Wakes every non-exclusive waiter and one exclusive waiter.
    pub fn wake_up(&self) -> usize {
        self.wake(1)
    }

    /// Wakes every waiter.
    pub fn wake_up_all(&self) -> usize {
        self.wake(usize::MAX)
    }

    /// Wakes every non-exclusive waiter and up to `exclusive` exclusive ones; returns how
    /// many tasks were woken.
    pub fn wake(&self, exclusive: usize) -> usize {
        fence(Ordering::SeqCst);
        if self.count.load(Ordering::Acquire) == 0 {
            return 0;
        }
        let mut waiters = self.waiters.lock();
        let mut woken = 0;
        let mut exclusive_left = exclusive;
        let mut index = 0;
        while index < waiters.len() {
            if waiters[index].exclusive && exclusive_left == 0 {
                break;
            }
            // Interrupts are masked (the queue's lock), so the masking variant is not needed.
            if sched::wake_up_process_irqs_disabled(&waiters[index].task) {
                let waiter = if index == 0 { waiters.pop_front() } else { waiters.remove(index) };
                woken += 1;
                if waiter.is_some_and(|waiter| waiter.exclusive) {
                    exclusive_left -= 1;
                }
            } else {
                index += 1;
            }
        }
        self.count.store(waiters.len(), Ordering::Release);
        // Unlocking takes a reschedule a wake-up asked for, once interrupts are back on.
        drop(waiters);
        woken
    }

    /// Number of queued waiters.
    pub fn waiters_count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Whether any task waits. Call it after changing the condition waiters check: the
    /// fence pairs with the one in `wait`, so on SMP either this sees the waiter counted or
    /// the waiter sees the change (without it the load may pass the caller's store).
    pub fn has_waiters(&self) -> bool {
        fence(Ordering::SeqCst);
        self.count.load(Ordering::Acquire) > 0
    }
}

impl Default for WaitQueue {
    fn default() -> Self {
        Self::new()
    }
}
