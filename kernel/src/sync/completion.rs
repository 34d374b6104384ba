//! Completions: one task waits until another signals that something finished (Linux's `struct completion`).

use core::sync::atomic::{AtomicUsize, Ordering};

use super::WaitQueue;

const ALL: usize = usize::MAX / 2;

/// A count of completions, with waiters.
pub struct Completion {
    done: AtomicUsize,
    waiters: WaitQueue,
}

impl Completion {
    /// Not completed.
    #[track_caller]
    pub const fn new() -> Self {
        Completion { done: AtomicUsize::new(0), waiters: WaitQueue::new() }
    }

    /// Signals one completion: one waiter (or the next to wait) proceeds.
    pub fn complete(&self) {
        let _ = self.done.fetch_update(Ordering::AcqRel, Ordering::Acquire, |done| (done < ALL).then_some(done + 1));
        self.waiters.wake_up();
    }

    /// Signals completion for every present and future waiter until [`reinit`](Self::reinit).
    pub fn complete_all(&self) {
        self.done.store(ALL, Ordering::Release);
        self.waiters.wake_up_all();
    }

    /// Consumes one completion if there is one, without sleeping.
    pub fn try_wait(&self) -> bool {
        self.done
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |done| match done {
                0 => None,
                ALL => Some(ALL),
                other => Some(other - 1),
            })
            .is_ok()
    }

    /// Sleeps until completed, consuming one completion.
    #[track_caller]
    pub fn wait_for_completion(&self) {
        crate::lockdep::might_sleep();
        self.waiters.wait(true, || self.try_wait());
    }

    /// Whether a completion is pending.
    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire) > 0
    }

    /// Back to not completed.
    pub fn reinit(&self) {
        self.done.store(0, Ordering::Release);
    }
}

impl Default for Completion {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::Completion;

    #[test]
    fn counts_completions_and_complete_all_sticks() {
        let completion = Completion::new();
        assert!(!completion.try_wait());
        completion.complete();
        completion.complete();
        assert!(completion.try_wait());
        completion.wait_for_completion();
        assert!(!completion.is_done());
        completion.complete_all();
        for _ in 0..5 {
            completion.wait_for_completion();
        }
        completion.reinit();
        assert!(!completion.try_wait());
    }
}
