//! High-resolution timers (Linux's `hrtimer`): per-CPU queues of nanosecond deadlines, the clock-event device programmed for the earliest of the next tick and the next hrtimer, callbacks in hard-interrupt context.
//!
//! An [`HrTimer`] is started for an absolute deadline in nanoseconds since boot
//! ([`crate::time::since_boot_nanoseconds`]) and queued on the calling CPU. When it becomes
//! the earliest deadline there, the CPU's clock-event device is re-programmed at once, so
//! the callback runs at its deadline rather than at the next tick. The clock-event
//! interrupt handler (in `tick.rs`) runs expired hrtimers first, then the tick if its
//! deadline has passed, and re-programs the device for whichever comes next
//! ([`next_event_delay`]).
//!
//! Callbacks of timers made with [`HrTimer::new`] run in hard-interrupt context with
//! interrupts masked (Linux's `HRTIMER_MODE_HARD`): they must be short and must not sleep;
//! waking a task is the common use. Timers made with [`HrTimer::new_soft`] (Linux's
//! `HRTIMER_MODE_SOFT`) are moved to a per-CPU expired list by the interrupt and run from
//! the HRTIMER softirq, interrupts enabled. A timer started while its callback runs on another CPU stays on that CPU's queue
//! (it cannot move while running); otherwise it moves to the calling CPU's. A timer
//! queued on another CPU fires at the latest at that CPU's next tick, since only the
//! owning CPU can program its device. [`HrTimer::cancel`] (Linux's `hrtimer_cancel`)
//! waits for a running callback; [`HrTimer::try_to_cancel`] does not.

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::sync::Arc;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::sched::{self, MAX_SCHED_CPUS};
use crate::sync::IrqSpinLock;

/// A time-ordered queue of keys with deadlines; equal deadlines keep their queuing order.
pub struct HrTimerQueue<K: Ord + Copy> {
    queue: BTreeMap<(u64, u64), K>,
    positions: BTreeMap<K, (u64, u64)>,
    sequence: u64,
}

impl<K: Ord + Copy> HrTimerQueue<K> {
    /// An empty queue.
    pub const fn new() -> Self {
        HrTimerQueue { queue: BTreeMap::new(), positions: BTreeMap::new(), sequence: 0 }
    }

    /// Queues `key` at `deadline`, replacing an earlier entry of it. Returns whether it is
    /// now the first to expire.
    pub fn insert(&mut self, key: K, deadline: u64) -> bool {
        self.remove(key);
        self.sequence += 1;
        let position = (deadline, self.sequence);
        self.queue.insert(position, key);
        self.positions.insert(key, position);
        self.queue.keys().next() == Some(&position)
    }

    /// Removes `key`; returns whether it was queued.
    pub fn remove(&mut self, key: K) -> bool {
        match self.positions.remove(&key) {
            Some(position) => self.queue.remove(&position).is_some(),
            None => false,
        }
    }

    /// The deadline of `key`, if queued.
    pub fn deadline(&self, key: K) -> Option<u64> {
        self.positions.get(&key).map(|&(deadline, _)| deadline)
    }

    /// The earliest deadline.
    pub fn first_deadline(&self) -> Option<u64> {
        self.queue.keys().next().map(|&(deadline, _)| deadline)
    }

    /// Takes the earliest entry if its deadline is at or before `now`.
    pub fn pop_expired(&mut self, now: u64) -> Option<(K, u64)> {
        let (&position, &key) = self.queue.iter().next()?;
        if position.0 > now {
            return None;
        }
        self.queue.remove(&position);
        self.positions.remove(&key);
        Some((key, position.0))
    }

    /// Queued entries.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

impl<K: Ord + Copy> Default for HrTimerQueue<K> {
    fn default() -> Self {
        Self::new()
    }
}

/// How long from `now` until the clock-event device must fire: the earlier of the next
/// tick and the first hrtimer (all in nanoseconds), 0 if one is already due.
pub fn next_event_delay(now: u64, next_tick: u64, first_hrtimer: Option<u64>) -> u64 {
    let next = first_hrtimer.map_or(next_tick, |deadline| deadline.min(next_tick));
    next.saturating_sub(now)
}

/// An hrtimer's callback.
pub type HrTimerFunction = Box<dyn Fn() + Send + Sync>;

/// A one-shot timer at a nanosecond deadline (Linux's `struct hrtimer`).
pub struct HrTimer {
    function: HrTimerFunction,
    /// Runs from the HRTIMER softirq rather than the hard interrupt.
    soft: bool,
    /// The CPU whose queue holds it (or last held it), [`NO_BASE`] before the first start.
    base: AtomicUsize,
    runs: AtomicU64,
}

const NO_BASE: usize = usize::MAX;
/// The timer is between two queues (another CPU's [`HrTimer::start`] is moving it).
const MIGRATING: usize = usize::MAX - 1;

struct BaseState {
    order: HrTimerQueue<usize>,
    /// The queued timers, by key (their address).
    timers: BTreeMap<usize, Arc<HrTimer>>,
    /// Expired soft timers waiting for the HRTIMER softirq.
    soft_expired: VecDeque<(usize, Arc<HrTimer>)>,
}

impl BaseState {
    /// Takes `key` out of the queue or the soft expired list; returns whether it was in one.
    fn remove(&mut self, key: usize) -> bool {
        if self.order.remove(key) {
            self.timers.remove(&key);
            return true;
        }
        let before = self.soft_expired.len();
        self.soft_expired.retain(|&(other, _)| other != key);
        self.soft_expired.len() != before
    }
}

struct HrTimerBase {
    state: IrqSpinLock<BaseState>,
    /// The first deadline in `state` (`u64::MAX` when empty), readable without the lock.
    first: AtomicU64,
    /// Key of the timer whose callback runs now on this CPU in the interrupt, 0 when none.
    running: AtomicUsize,
    /// Key of the soft timer whose callback runs now in the HRTIMER softirq, 0 when none.
    running_soft: AtomicUsize,
    expired: AtomicU64,
    interrupts: AtomicU64,
}

impl HrTimerBase {
    const fn new() -> Self {
        HrTimerBase {
            state: IrqSpinLock::new(BaseState { order: HrTimerQueue::new(), timers: BTreeMap::new(), soft_expired: VecDeque::new() }),
            first: AtomicU64::new(u64::MAX),
            running: AtomicUsize::new(0),
            running_soft: AtomicUsize::new(0),
            expired: AtomicU64::new(0),
            interrupts: AtomicU64::new(0),
        }
    }
}

static BASES: [HrTimerBase; MAX_SCHED_CPUS] = [const { HrTimerBase::new() }; MAX_SCHED_CPUS];

fn key(timer: &Arc<HrTimer>) -> usize {
    Arc::as_ptr(timer) as usize
}

/// Refreshes `base.first` from its queue; called with the base locked.
fn publish_first(base: &HrTimerBase, state: &BaseState) {
    base.first.store(state.order.first_deadline().unwrap_or(u64::MAX), Ordering::Release);
}

/// The earliest hrtimer deadline on any CPU, `u64::MAX` when none (lock-free).
pub fn earliest_deadline() -> u64 {
    BASES.iter().map(|base| base.first.load(Ordering::Acquire)).min().unwrap_or(u64::MAX)
}

impl HrTimer {
    /// A timer calling `function` at its deadline in hard-interrupt context (Linux's
    /// `hrtimer_setup` with `HRTIMER_MODE_HARD`).
    pub fn new(function: impl Fn() + Send + Sync + 'static) -> Arc<HrTimer> {
        Arc::new(HrTimer { function: Box::new(function), soft: false, base: AtomicUsize::new(NO_BASE), runs: AtomicU64::new(0) })
    }

    /// A timer calling `function` from the HRTIMER softirq after its deadline (Linux's
    /// `HRTIMER_MODE_SOFT`).
    pub fn new_soft(function: impl Fn() + Send + Sync + 'static) -> Arc<HrTimer> {
        Arc::new(HrTimer { function: Box::new(function), soft: true, base: AtomicUsize::new(NO_BASE), runs: AtomicU64::new(0) })
    }

    /// Whether its callback is running on `base` now.
    fn running_on(self: &Arc<Self>, base: &HrTimerBase) -> bool {
        base.running.load(Ordering::Acquire) == key(self) || base.running_soft.load(Ordering::Acquire) == key(self)
    }

    /// Times the callback has run.
    pub fn runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    /// Starts (or restarts) the timer for `deadline` nanoseconds since boot, on the calling
    /// CPU (Linux's `hrtimer_start` in absolute mode). A deadline already past fires at
    /// once (from the interrupt the re-programming raises).
    pub fn start(self: &Arc<Self>, deadline: u64) {
        // Interrupts stay masked from taking the timer off its old queue to putting it on
        // the new one, so nothing on this CPU sees it half-moved; other CPUs wait
        // ([`MIGRATING`]). The two queues are never locked together.
        let platform = crate::try_platform();
        let saved = platform.map(|platform| platform.cpu().disable_interrupts());
        let this = sched::this_cpu();
        let first = loop {
            let old = self.stable_base();
            if old == this {
                let base = &BASES[this];
                let mut state = base.state.lock();
                if self.base.load(Ordering::Acquire) != this {
                    continue;
                }
                state.remove(key(self));
                let first = state.order.insert(key(self), deadline);
                state.timers.insert(key(self), self.clone());
                publish_first(base, &state);
                break first;
            }
            if old == NO_BASE {
                if self.base.compare_exchange(NO_BASE, MIGRATING, Ordering::AcqRel, Ordering::Acquire).is_err() {
                    continue;
                }
            } else {
                let base = &BASES[old];
                let mut state = base.state.lock();
                if self.base.load(Ordering::Acquire) != old {
                    continue;
                }
                state.remove(key(self));
                if self.running_on(base) {
                    // Running there: it stays on that queue.
                    state.order.insert(key(self), deadline);
                    state.timers.insert(key(self), self.clone());
                    publish_first(base, &state);
                    break false;
                }
                publish_first(base, &state);
                self.base.store(MIGRATING, Ordering::Release);
            }
            // This CPU owns the timer while it is MIGRATING.
            let base = &BASES[this];
            let mut state = base.state.lock();
            let first = state.order.insert(key(self), deadline);
            state.timers.insert(key(self), self.clone());
            publish_first(base, &state);
            self.base.store(this, Ordering::Release);
            break first;
        };
        if first {
            crate::tick::reprogram_clock_event();
        }
        if let (Some(platform), Some(saved)) = (platform, saved) {
            platform.cpu().restore_interrupts(saved);
        }
    }

    /// The base index once no other CPU is moving the timer.
    fn stable_base(&self) -> usize {
        loop {
            let base = self.base.load(Ordering::Acquire);
            if base != MIGRATING {
                return base;
            }
            core::hint::spin_loop();
        }
    }

    /// Removes the timer if queued, without waiting for a running callback (Linux's
    /// `hrtimer_try_to_cancel`). Returns whether it was queued.
    pub fn try_to_cancel(self: &Arc<Self>) -> bool {
        loop {
            let index = self.stable_base();
            let Some(base) = BASES.get(index) else { return false };
            let mut state = base.state.lock();
            if self.base.load(Ordering::Acquire) != index {
                continue;
            }
            let was_queued = state.remove(key(self));
            if was_queued {
                publish_first(base, &state);
            }
            return was_queued;
        }
    }

    /// Removes the timer and waits until its callback is not running (Linux's
    /// `hrtimer_cancel`); not from the callback itself. Returns whether it was queued.
    pub fn cancel(self: &Arc<Self>) -> bool {
        let mut was_queued = false;
        loop {
            was_queued |= self.try_to_cancel();
            let Some(base) = BASES.get(self.stable_base()) else { return was_queued };
            if !self.running_on(base) {
                if !self.is_queued() {
                    return was_queued;
                }
                continue;
            }
            while self.running_on(base) {
                core::hint::spin_loop();
            }
        }
    }

    /// Whether the timer is queued (Linux's `hrtimer_is_queued`).
    pub fn is_queued(self: &Arc<Self>) -> bool {
        self.deadline().is_some()
    }

    /// Its deadline, if queued.
    pub fn deadline(self: &Arc<Self>) -> Option<u64> {
        let base = BASES.get(self.stable_base())?;
        base.state.lock().order.deadline(key(self))
    }
}

/// The earliest hrtimer deadline on the calling CPU.
pub fn first_deadline_local() -> Option<u64> {
    BASES[sched::this_cpu()].state.lock().order.first_deadline()
}

/// Runs the calling CPU's expired hrtimers (Linux's `hrtimer_interrupt`), each with the
/// queue unlocked; called from the clock-event interrupt (and polled by the idle loop when
/// there is no tick). Returns how many ran.
pub fn run_expired_local() -> usize {
    let saved = crate::try_platform().map(|platform| platform.cpu().disable_interrupts());
    let base = &BASES[sched::this_cpu()];
    let mut ran = 0;
    loop {
        let now = super::since_boot_nanoseconds();
        let mut state = base.state.lock();
        let Some((key, _deadline)) = state.order.pop_expired(now) else { break };
        let timer = state.timers.remove(&key);
        publish_first(base, &state);
        if let Some(timer) = timer.as_ref().filter(|timer| timer.soft) {
            state.soft_expired.push_back((key, timer.clone()));
            drop(state);
            crate::softirq::raise_softirq(crate::softirq::Softirq::Hrtimer);
            continue;
        }
        base.running.store(key, Ordering::Release);
        drop(state);
        if let Some(timer) = timer {
            (timer.function)();
            timer.runs.fetch_add(1, Ordering::Relaxed);
            ran += 1;
        }
        base.running.store(0, Ordering::Release);
    }
    base.expired.fetch_add(ran as u64, Ordering::Relaxed);
    if let (Some(platform), Some(saved)) = (crate::try_platform(), saved) {
        platform.cpu().restore_interrupts(saved);
    }
    ran
}

/// The HRTIMER softirq: runs this CPU's expired soft timers, each with the queue unlocked.
fn run_soft_expired() {
    let base = &BASES[sched::this_cpu()];
    loop {
        let mut state = base.state.lock();
        let Some((key, timer)) = state.soft_expired.pop_front() else { break };
        base.running_soft.store(key, Ordering::Release);
        drop(state);
        (timer.function)();
        timer.runs.fetch_add(1, Ordering::Relaxed);
        base.expired.fetch_add(1, Ordering::Relaxed);
        base.running_soft.store(0, Ordering::Release);
    }
}

/// Installs the HRTIMER softirq handler.
pub fn init() {
    crate::softirq::open_softirq(crate::softirq::Softirq::Hrtimer, run_soft_expired);
}

/// Counts an interrupt of the clock-event device that ran hrtimers before the tick.
pub(crate) fn count_early_interrupt() {
    BASES[sched::this_cpu()].interrupts.fetch_add(1, Ordering::Relaxed);
}

/// Interrupts of `cpu`'s clock-event device that ran hrtimers between ticks.
pub fn interrupts_between_ticks(cpu: usize) -> u64 {
    BASES.get(cpu).map_or(0, |base| base.interrupts.load(Ordering::Relaxed))
}

/// Writes the hrtimer part of `/proc/timer_list`.
pub fn write_timer_list(out: &mut dyn Write, cpus: usize) -> fmt::Result {
    writeln!(out, "now at {} nsecs", super::since_boot_nanoseconds())?;
    for (cpu, base) in BASES.iter().enumerate().take(cpus) {
        let (queued, first) = {
            let state = base.state.lock();
            (state.order.len(), state.order.first_deadline())
        };
        write!(
            out,
            "cpu: {}\n hrtimer base: queued {}, expired {}, interrupts between ticks {}, next expiry ",
            cpu,
            queued,
            base.expired.load(Ordering::Relaxed),
            base.interrupts.load(Ordering::Relaxed)
        )?;
        match first {
            Some(deadline) => writeln!(out, "{} nsecs", deadline)?,
            None => writeln!(out, "none")?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn queue_expires_in_deadline_order_fifo_on_ties() {
        let mut queue = HrTimerQueue::new();
        assert!(queue.insert(1, 500));
        assert!(!queue.insert(2, 700));
        assert!(queue.insert(3, 100));
        assert!(!queue.insert(4, 500));
        assert_eq!(queue.first_deadline(), Some(100));
        assert_eq!(queue.pop_expired(99), None);
        let popped: Vec<(u32, u64)> = core::iter::from_fn(|| queue.pop_expired(600)).collect();
        assert_eq!(popped, [(3, 100), (1, 500), (4, 500)]);
        assert_eq!(queue.len(), 1);
    }

    #[test]
    fn restart_and_remove() {
        let mut queue = HrTimerQueue::new();
        queue.insert(1, 50);
        queue.insert(2, 60);
        assert!(queue.insert(2, 10), "moving earlier makes it first");
        assert_eq!(queue.deadline(2), Some(10));
        assert_eq!(queue.len(), 2);
        assert!(queue.remove(1));
        assert!(!queue.remove(1));
        assert_eq!(queue.pop_expired(1000), Some((2, 10)));
        assert!(queue.is_empty());
    }

    #[test]
    fn device_fires_at_the_earlier_of_tick_and_hrtimer() {
        assert_eq!(next_event_delay(1000, 11_000, None), 10_000);
        assert_eq!(next_event_delay(1000, 11_000, Some(2_500)), 1_500);
        assert_eq!(next_event_delay(1000, 11_000, Some(20_000)), 10_000);
        assert_eq!(next_event_delay(1000, 11_000, Some(900)), 0);
    }
}
