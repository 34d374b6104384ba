//! Synchronization primitives for kernel code: spinlocks (plain and interrupt-saving) and one-time initialization.

mod once;
mod spinlock;

pub use once::Once;
pub use spinlock::{IrqSpinLock, IrqSpinLockGuard, SpinLock, SpinLockGuard};
