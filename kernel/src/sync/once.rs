//! One-time initialization of a global, safe to race from several CPUs.

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU8, Ordering};

const INCOMPLETE: u8 = 0;
const RUNNING: u8 = 1;
const COMPLETE: u8 = 2;

/// A value written once and read many times.
pub struct Once<T> {
    state: AtomicU8,
    value: UnsafeCell<MaybeUninit<T>>,
}

// SAFETY: the value is written exactly once, before `state` becomes COMPLETE with Release
// ordering, and only read after observing COMPLETE with Acquire ordering, so sharing
// `&Once<T>` across threads is as safe as sharing `&T` (which needs `T: Sync`), and moving
// the initializer's result across threads needs `T: Send`.
unsafe impl<T: Send + Sync> Sync for Once<T> {}

impl<T> Once<T> {
    /// An uninitialized cell.
    pub const fn new() -> Self {
        Once { state: AtomicU8::new(INCOMPLETE), value: UnsafeCell::new(MaybeUninit::uninit()) }
    }

    /// Runs `init` if no one has yet, waits if someone is running it, and returns the value.
    pub fn call_once(&self, init: impl FnOnce() -> T) -> &T {
        if self.state.compare_exchange(INCOMPLETE, RUNNING, Ordering::Acquire, Ordering::Acquire).is_ok() {
            // SAFETY: the successful compare-exchange made this caller the only writer; no
            // reader touches the value until `state` is COMPLETE.
            unsafe { (*self.value.get()).write(init()) };
            self.state.store(COMPLETE, Ordering::Release);
        }
        while self.state.load(Ordering::Acquire) != COMPLETE {
            core::hint::spin_loop();
        }
        // SAFETY: `state` is COMPLETE, so the value was written and is never written again.
        unsafe { (*self.value.get()).assume_init_ref() }
    }

    /// The value, if initialization has completed.
    pub fn get(&self) -> Option<&T> {
        if self.state.load(Ordering::Acquire) == COMPLETE {
            // SAFETY: as in `call_once`, COMPLETE means written once and never again.
            Some(unsafe { (*self.value.get()).assume_init_ref() })
        } else {
            None
        }
    }
}

impl<T> Default for Once<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::Once;

    #[test]
    fn initializes_once() {
        let once = Once::new();
        assert!(once.get().is_none());
        assert_eq!(*once.call_once(|| 5), 5);
        assert_eq!(*once.call_once(|| 6), 5);
        assert_eq!(once.get(), Some(&5));
    }

    #[test]
    fn racing_threads_see_one_value() {
        static CELL: Once<usize> = Once::new();
        let handles: Vec<_> = (0..8).map(|i| std::thread::spawn(move || *CELL.call_once(|| i))).collect();
        let values: Vec<usize> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(values.iter().all(|&v| v == values[0]));
    }
}
