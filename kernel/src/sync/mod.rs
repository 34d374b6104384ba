//! Synchronization primitives for kernel code: spinlocks (plain and interrupt-saving), one-time initialization, and the sleeping primitives built on the scheduler.

mod completion;
mod condvar;
pub(crate) mod ktests;
mod mutex;
mod once;
mod percpu;
mod rwlock;
mod rwsem;
mod semaphore;
mod seqlock;
mod spinlock;
mod wait_queue;

pub use completion::Completion;
pub use condvar::CondVar;
pub use mutex::{Mutex, MutexGuard};
pub use once::Once;
pub use percpu::PerCpu;
pub use rwlock::{RwLock, RwLockReadGuard, RwLockWriteGuard};
pub use rwsem::{RwSemaphore, RwSemaphoreReadGuard, RwSemaphoreWriteGuard};
pub use semaphore::Semaphore;
pub use seqlock::{SeqCount, SeqLock};
pub use spinlock::{IrqSpinLock, IrqSpinLockGuard, RawSpinLockGuard, SpinLock, SpinLockGuard};
pub use wait_queue::WaitQueue;
