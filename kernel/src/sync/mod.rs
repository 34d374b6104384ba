//! Synchronization primitives for kernel code: spinlocks (plain and interrupt-saving), one-time initialization, and the sleeping primitives built on the scheduler.

mod completion;
mod ktests;
mod mutex;
mod once;
mod semaphore;
mod spinlock;
mod wait_queue;

pub use completion::Completion;
pub use mutex::{Mutex, MutexGuard};
pub use once::Once;
pub use semaphore::Semaphore;
pub use spinlock::{IrqSpinLock, IrqSpinLockGuard, SpinLock, SpinLockGuard};
pub use wait_queue::WaitQueue;
