//! Per-CPU variables: one slot per CPU, reached by the calling CPU with preemption disabled so the task cannot migrate while it uses its slot.

use crate::sched::{self, MAX_SCHED_CPUS};

/// One `T` per CPU (Linux's `DEFINE_PER_CPU`). Slots are shared (`&T`), so `T` carries its
/// own interior mutability (atomics, or a lock for bigger data); the per-CPU layout is what
/// keeps CPUs off each other's cache lines and lock-free on the fast path.
pub struct PerCpu<T> {
    slots: [T; MAX_SCHED_CPUS],
}

impl<T> PerCpu<T> {
    /// Slots from an array (usable in statics with `[const { ... }; MAX_SCHED_CPUS]`).
    pub const fn new(slots: [T; MAX_SCHED_CPUS]) -> Self {
        PerCpu { slots }
    }

    /// Runs `body` on the calling CPU's slot with preemption disabled (Linux's
    /// `get_cpu_var`/`put_cpu_var`), so the slot stays this CPU's throughout.
    pub fn with<R>(&self, body: impl FnOnce(&T) -> R) -> R {
        sched::preempt_disable();
        let result = body(&self.slots[sched::this_cpu()]);
        sched::preempt_enable();
        result
    }

    /// `cpu`'s slot.
    pub fn get(&self, cpu: usize) -> Option<&T> {
        self.slots.get(cpu)
    }

    /// Every slot, by CPU number.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.slots.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn slots_are_separate_and_summable() {
        static COUNTS: PerCpu<AtomicU64> = PerCpu::new([const { AtomicU64::new(0) }; MAX_SCHED_CPUS]);
        COUNTS.with(|count| count.fetch_add(3, Ordering::Relaxed));
        COUNTS.get(1).unwrap().fetch_add(4, Ordering::Relaxed);
        assert_eq!(COUNTS.get(0).unwrap().load(Ordering::Relaxed), 3);
        assert_eq!(COUNTS.iter().map(|count| count.load(Ordering::Relaxed)).sum::<u64>(), 7);
        assert!(COUNTS.get(MAX_SCHED_CPUS).is_none());
    }
}
