//! Kernel timers (Linux's `timer_list`): callbacks at a jiffy, kept in per-CPU timer wheels and run from the TIMER softirq that the tick raises.
//!
//! A [`Timer`] is created with its callback and armed with [`Timer::add`] / [`Timer::modify`]
//! for an absolute expiry in jiffies ([`crate::tick::jiffies`]); it runs once, in softirq
//! context (interrupts enabled, preemption disabled: it must not sleep) on the CPU whose
//! base holds it, at the first tick at or after its expiry. A timer joins the base of the
//! CPU that first arms it and stays there (Linux's pinned timers); every CPU with a tick
//! runs its own base, so no CPU's timers wait for another. The bases are IRQ-safe: timers
//! may be armed and deleted from any context.
//!
//! [`Timer::delete`] only removes a pending timer; [`Timer::delete_sync`] also waits until a
//! callback running on any CPU has returned, so afterwards the callback neither runs nor is
//! pending (unless it re-armed itself after the removal, which `delete_sync` also undoes).

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::wheel::TimerWheel;
use crate::sched::{self, MAX_SCHED_CPUS};
use crate::softirq::{self, Softirq};
use crate::sync::IrqSpinLock;

const NO_BASE: usize = usize::MAX;

/// A timer's callback.
pub type TimerFunction = Box<dyn Fn() + Send + Sync>;

/// A one-shot timer at a jiffy (Linux's `struct timer_list`).
pub struct Timer {
    function: TimerFunction,
    /// The CPU whose base holds it, [`NO_BASE`] until first armed.
    base: AtomicUsize,
    runs: AtomicU64,
}

struct BaseState {
    wheel: TimerWheel<usize>,
    /// The pending timers, by key (their address).
    timers: BTreeMap<usize, Arc<Timer>>,
}

struct TimerBase {
    state: IrqSpinLock<Option<BaseState>>,
    /// Key of the timer whose callback runs now on this base, 0 when none.
    running: AtomicUsize,
    pending: AtomicUsize,
    expired: AtomicU64,
}

impl TimerBase {
    const fn new() -> Self {
        TimerBase { state: IrqSpinLock::new(None), running: AtomicUsize::new(0), pending: AtomicUsize::new(0), expired: AtomicU64::new(0) }
    }
}

static BASES: [TimerBase; MAX_SCHED_CPUS] = [const { TimerBase::new() }; MAX_SCHED_CPUS];

fn key(timer: &Arc<Timer>) -> usize {
    Arc::as_ptr(timer) as usize
}

fn base_state(state: &mut Option<BaseState>) -> &mut BaseState {
    state.get_or_insert_with(|| BaseState { wheel: TimerWheel::new(crate::tick::jiffies()), timers: BTreeMap::new() })
}

impl Timer {
    /// A timer that calls `function` when it expires (Linux's `timer_setup`).
    pub fn new(function: impl Fn() + Send + Sync + 'static) -> Arc<Timer> {
        Arc::new(Timer { function: Box::new(function), base: AtomicUsize::new(NO_BASE), runs: AtomicU64::new(0) })
    }

    /// Times the callback has run.
    pub fn runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    /// The base this timer belongs to, assigning the calling CPU's on first use.
    fn base_index(&self) -> usize {
        let current = self.base.load(Ordering::Acquire);
        if current != NO_BASE {
            return current;
        }
        let cpu = sched::this_cpu();
        match self.base.compare_exchange(NO_BASE, cpu, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => cpu,
            Err(other) => other,
        }
    }

    /// Arms the timer for jiffy `expires`, or moves it there if pending (Linux's
    /// `mod_timer`). Returns whether it was pending before.
    pub fn modify(self: &Arc<Self>, expires: u64) -> bool {
        let base = &BASES[self.base_index()];
        let mut guard = base.state.lock();
        let state = base_state(&mut guard);
        let was_pending = state.wheel.remove(key(self));
        if !was_pending {
            state.timers.insert(key(self), self.clone());
            base.pending.fetch_add(1, Ordering::Relaxed);
        }
        // Cannot fail: the key was removed just above.
        let _ = state.wheel.add(key(self), expires);
        was_pending
    }

    /// Arms the timer for jiffy `expires` (Linux's `add_timer`; re-arms it if pending).
    pub fn add(self: &Arc<Self>, expires: u64) {
        self.modify(expires);
    }

    /// Disarms the timer if pending (Linux's `del_timer`); a running callback is not waited
    /// for. Returns whether it was pending.
    pub fn delete(self: &Arc<Self>) -> bool {
        let index = self.base.load(Ordering::Acquire);
        let Some(base) = BASES.get(index) else { return false };
        let mut guard = base.state.lock();
        let state = base_state(&mut guard);
        let was_pending = state.wheel.remove(key(self));
        if was_pending {
            state.timers.remove(&key(self));
            base.pending.fetch_sub(1, Ordering::Relaxed);
        }
        was_pending
    }

    /// Disarms the timer and waits until its callback is not running anywhere (Linux's
    /// `del_timer_sync`). Must not be called from the callback itself, nor from interrupt
    /// context. Returns whether it was pending.
    pub fn delete_sync(self: &Arc<Self>) -> bool {
        let mut was_pending = false;
        loop {
            was_pending |= self.delete();
            let index = self.base.load(Ordering::Acquire);
            let Some(base) = BASES.get(index) else { return was_pending };
            if base.running.load(Ordering::Acquire) != key(self) {
                // The callback may have re-armed it between the delete and this check.
                if !self.is_pending() {
                    return was_pending;
                }
                continue;
            }
            while base.running.load(Ordering::Acquire) == key(self) {
                core::hint::spin_loop();
            }
        }
    }

    /// Whether the timer is armed (Linux's `timer_pending`).
    pub fn is_pending(self: &Arc<Self>) -> bool {
        let Some(base) = BASES.get(self.base.load(Ordering::Acquire)) else { return false };
        let guard = base.state.lock();
        guard.as_ref().is_some_and(|state| state.wheel.expires(key(self)).is_some())
    }

    /// The jiffy it is armed for, if pending.
    pub fn expires(self: &Arc<Self>) -> Option<u64> {
        let base = BASES.get(self.base.load(Ordering::Acquire))?;
        let guard = base.state.lock();
        guard.as_ref().and_then(|state| state.wheel.expires(key(self)))
    }
}

/// `mod_timer` by its Linux name.
pub fn mod_timer(timer: &Arc<Timer>, expires: u64) -> bool {
    timer.modify(expires)
}

/// `add_timer` by its Linux name.
pub fn add_timer(timer: &Arc<Timer>, expires: u64) {
    timer.add(expires)
}

/// `del_timer` by its Linux name.
pub fn del_timer(timer: &Arc<Timer>) -> bool {
    timer.delete()
}

/// `del_timer_sync` by its Linux name.
pub fn del_timer_sync(timer: &Arc<Timer>) -> bool {
    timer.delete_sync()
}

/// The TIMER softirq: expires this CPU's due timers, running each callback with the base
/// unlocked (so callbacks may re-arm or delete timers).
fn run_timer_softirq() {
    let cpu = sched::this_cpu();
    let base = &BASES[cpu];
    let now = crate::tick::jiffies();
    let mut guard = base.state.lock();
    let state = base_state(&mut guard);
    state.wheel.advance(now);
    while let Some(state) = guard.as_mut() {
        let Some((key, _expires)) = state.wheel.pop_expired() else { break };
        let Some(timer) = state.timers.remove(&key) else { continue };
        base.pending.fetch_sub(1, Ordering::Relaxed);
        base.running.store(key, Ordering::Release);
        drop(guard);
        (timer.function)();
        timer.runs.fetch_add(1, Ordering::Relaxed);
        base.expired.fetch_add(1, Ordering::Relaxed);
        guard = base.state.lock();
        base.running.store(0, Ordering::Release);
    }
}

/// The timer wheel's part of the tick (Linux's `run_local_timers`): raises TIMER on this
/// CPU when its base has timers. Called from the tick interrupt on every CPU.
pub fn run_local_timers() {
    let cpu = sched::this_cpu();
    if BASES[cpu].pending.load(Ordering::Relaxed) > 0 {
        softirq::raise_softirq(Softirq::Timer);
    }
}

/// Installs the TIMER softirq handler.
pub fn init() {
    softirq::open_softirq(Softirq::Timer, run_timer_softirq);
}

/// Pending and expired-so-far timers of `cpu`'s base.
pub fn base_statistics(cpu: usize) -> (usize, u64) {
    BASES.get(cpu).map_or((0, 0), |base| (base.pending.load(Ordering::Relaxed), base.expired.load(Ordering::Relaxed)))
}

/// Writes the timer-wheel part of `/proc/timer_list`.
pub fn write_timer_list(out: &mut dyn Write, cpus: usize) -> fmt::Result {
    writeln!(out, "jiffies: {}", crate::tick::jiffies())?;
    for (cpu, base) in BASES.iter().enumerate().take(cpus) {
        let next = base.state.lock().as_ref().and_then(|state| state.wheel.next_expiry());
        write!(
            out,
            "cpu: {}\n timer base: pending {}, expired {}, next expiry ",
            cpu,
            base.pending.load(Ordering::Relaxed),
            base.expired.load(Ordering::Relaxed)
        )?;
        match next {
            Some(jiffy) => writeln!(out, "{}", jiffy)?,
            None => writeln!(out, "none")?,
        }
    }
    Ok(())
}
