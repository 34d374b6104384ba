//! Read-copy-update (Linux's classic, non-preemptible "RCU-sched" flavour): readers that never block, grace periods across CPUs, `synchronize_rcu`, `call_rcu` callbacks from the RCU softirq, `rcu_barrier`, and an RCU-protected pointer.
//!
//! A read-side critical section ([`rcu_read_lock`] .. its guard's drop) disables
//! preemption, so it cannot block or be preempted. A CPU is therefore in a *quiescent
//! state* (outside every reader) whenever it switches context, runs its idle loop, or
//! takes a tick that interrupted code with preemption enabled (preempt count zero: no
//! reader, spinlock or softirq in progress). Those three points report quiescent states
//! ([`rcu_note_context_switch`], [`rcu_idle_quiescent_state`], [`rcu_sched_clock_irq`]). A
//! CPU that only idles (today's secondary CPUs halt between interrupts) reports from
//! every tick, so it never holds a grace period up; a busy CPU reports at its next switch
//! or preemptible tick. The grace-period logic is [`state::GracePeriodState`].
//!
//! Callbacks queued with [`call_rcu`] wait in one FIFO list with the grace period they
//! need; the tick raises the RCU softirq on a CPU once the first is ready, and one CPU at
//! a time runs the ready ones (so they run in queuing order, which [`rcu_barrier`] relies
//! on). [`synchronize_rcu`] is a `call_rcu` that completes a completion.
//!
//! CPUs taking part: every CPU that finished bring-up when the board has a tick and an
//! interrupt controller (each CPU then reports from its tick); otherwise the boot CPU only.

pub mod state;

mod ktests;

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};

use self::state::GracePeriodState;
use crate::sched;
use crate::softirq::{self, Softirq};
use crate::sync::{Completion, IrqSpinLock, WaitQueue};

/// An RCU callback.
pub type RcuCallback = Box<dyn FnOnce() + Send>;

static STATE: IrqSpinLock<GracePeriodState> = IrqSpinLock::new(GracePeriodState::new(1));
/// CPUs owing a quiescent state for the current grace period (mirrors `STATE`), so the
/// reporting hooks are lock-free when they owe nothing.
static WAITING: AtomicU64 = AtomicU64::new(0);
/// The last completed grace period (mirrors `STATE`).
static COMPLETED: AtomicU64 = AtomicU64::new(0);
static CALLBACKS: IrqSpinLock<VecDeque<(u64, RcuCallback)>> = IrqSpinLock::new(VecDeque::new());
/// The grace period the first queued callback needs, `u64::MAX` when none.
static FIRST_NEEDED: AtomicU64 = AtomicU64::new(u64::MAX);
static INVOKING: AtomicBool = AtomicBool::new(false);
static QUEUED: AtomicU64 = AtomicU64::new(0);
static INVOKED: AtomicU64 = AtomicU64::new(0);
static BARRIER_WAITERS: WaitQueue = WaitQueue::new();
static QUIESCENT_REPORTS: AtomicU64 = AtomicU64::new(0);

fn publish(state: &GracePeriodState) {
    WAITING.store(if state.in_progress() { state.waiting() } else { 0 }, Ordering::Release);
    COMPLETED.store(state.completed(), Ordering::Release);
}

/// Reports a quiescent state of the calling CPU (it is outside every reader now).
pub fn rcu_note_quiescent_state() {
    rcu_note_quiescent_state_on(sched::this_cpu());
}

/// [`rcu_note_quiescent_state`] for the calling CPU `cpu`, which the caller already knows
/// (with interrupts masked, so it cannot change).
fn rcu_note_quiescent_state_on(cpu: usize) {
    if WAITING.load(Ordering::Acquire) & (1 << cpu) == 0 {
        return;
    }
    let ended = {
        let mut state = STATE.lock();
        let ended = state.report_quiescent(cpu);
        publish(&state);
        ended
    };
    QUIESCENT_REPORTS.fetch_add(1, Ordering::Relaxed);
    // Callbacks ready now run without waiting for a tick (boards without one rely on it).
    if ended && FIRST_NEEDED.load(Ordering::Acquire) <= COMPLETED.load(Ordering::Acquire) {
        softirq::raise_softirq(Softirq::Rcu);
    }
}

/// The context-switch hook (Linux's `rcu_note_context_switch`): a task that calls the
/// scheduler is not in a reader.
/// `cpu` is the calling CPU (the scheduler knows it and has interrupts masked).
pub fn rcu_note_context_switch(cpu: usize) {
    rcu_note_quiescent_state_on(cpu);
}

/// The idle-loop hook: the idle task runs no reader.
pub fn rcu_idle_quiescent_state() {
    rcu_note_quiescent_state();
}

/// The tick hook (Linux's `rcu_sched_clock_irq`), on every CPU: reports a quiescent state
/// when the interrupted code had preemption enabled (so no reader), and raises the RCU
/// softirq when callbacks are ready.
pub fn rcu_sched_clock_irq() {
    if sched::preempt_count() == 0 {
        rcu_note_quiescent_state();
    }
    if FIRST_NEEDED.load(Ordering::Acquire) <= COMPLETED.load(Ordering::Acquire) {
        softirq::raise_softirq(Softirq::Rcu);
    }
}

/// Starts a read-side critical section (Linux's `rcu_read_lock`): preemption is disabled
/// until the guard drops. Readers nest and must not sleep.
pub fn rcu_read_lock() -> RcuReadGuard {
    sched::preempt_disable();
    RcuReadGuard { _not_send: PhantomData }
}

/// A read-side critical section; dropping it is Linux's `rcu_read_unlock`.
pub struct RcuReadGuard {
    _not_send: PhantomData<*const ()>,
}

impl Drop for RcuReadGuard {
    fn drop(&mut self) {
        sched::preempt_enable();
    }
}

/// Queues `callback` to run after a grace period, from the RCU softirq (Linux's
/// `call_rcu`). Callable from any context; the callback must not sleep.
pub fn call_rcu(callback: impl FnOnce() + Send + 'static) {
    queue_callback(Box::new(callback));
}

/// Queues `callback` and returns the grace period it waits for.
fn queue_callback(callback: RcuCallback) -> u64 {
    let mut callbacks = CALLBACKS.lock();
    let needed = {
        let mut state = STATE.lock();
        let needed = state.request();
        publish(&state);
        needed
    };
    if callbacks.is_empty() {
        FIRST_NEEDED.store(needed, Ordering::Release);
    }
    callbacks.push_back((needed, callback));
    QUEUED.fetch_add(1, Ordering::AcqRel);
    needed
}

/// Waits for a full grace period: every reader that began before the call has ended
/// (Linux's `synchronize_rcu`). Task context, outside any reader.
pub fn synchronize_rcu() {
    if sched::preempt_count() > 0 {
        log::error!("rcu: synchronize_rcu called with preemption disabled (inside a reader?)");
    }
    let done = Arc::new(Completion::new());
    let signal = done.clone();
    call_rcu(move || signal.complete());
    done.wait_for_completion();
}

/// Waits until every callback queued before the call has run (Linux's `rcu_barrier`).
/// Task context.
pub fn rcu_barrier() {
    let target = QUEUED.load(Ordering::Acquire);
    BARRIER_WAITERS.wait_event(|| INVOKED.load(Ordering::Acquire) >= target);
}

/// The RCU softirq: runs the ready callbacks in queuing order, on one CPU at a time.
fn rcu_core() {
    if INVOKING.swap(true, Ordering::AcqRel) {
        return;
    }
    loop {
        let callback = {
            let mut callbacks = CALLBACKS.lock();
            let completed = COMPLETED.load(Ordering::Acquire);
            let ready = callbacks.front().is_some_and(|&(needed, _)| needed <= completed);
            let callback = if ready { callbacks.pop_front() } else { None };
            FIRST_NEEDED.store(callbacks.front().map_or(u64::MAX, |&(needed, _)| needed), Ordering::Release);
            callback
        };
        let Some((_, callback)) = callback else { break };
        callback();
        INVOKED.fetch_add(1, Ordering::AcqRel);
    }
    INVOKING.store(false, Ordering::Release);
    BARRIER_WAITERS.wake_up_all();
}

/// Counters for `/proc` and the tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RcuStatistics {
    /// The last completed grace period.
    pub completed: u64,
    /// Callbacks queued and run so far.
    pub queued: u64,
    /// Callbacks run so far.
    pub invoked: u64,
    /// Quiescent states reported (that counted for a grace period).
    pub quiescent_reports: u64,
    /// CPUs taking part.
    pub online: u64,
}

/// The counters.
pub fn statistics() -> RcuStatistics {
    let online = STATE.lock().online();
    RcuStatistics {
        completed: COMPLETED.load(Ordering::Acquire),
        queued: QUEUED.load(Ordering::Acquire),
        invoked: INVOKED.load(Ordering::Acquire),
        quiescent_reports: QUIESCENT_REPORTS.load(Ordering::Relaxed),
        online,
    }
}

/// Sets the CPUs taking part and installs the RCU softirq. Called by `kernel_main` after
/// SMP bring-up.
pub fn init() {
    let platform = crate::platform();
    let ticking = platform.clock_event().is_some() && platform.interrupt_controller().is_some();
    let online = if ticking { u64::from(crate::smp::ready_mask()) } else { 1 << sched::this_cpu() };
    {
        let mut state = STATE.lock();
        for cpu in 0..state::MAX_RCU_CPUS {
            if online & (1 << cpu) != 0 {
                state.set_online(cpu, true);
            } else if state.online() & (1 << cpu) != 0 {
                state.set_online(cpu, false);
            }
        }
        publish(&state);
    }
    softirq::open_softirq(Softirq::Rcu, rcu_core);
}

/// A pointer to RCU-protected data (Linux's `__rcu` pointer): readers follow it inside a
/// read-side critical section, writers replace it and free the old value after a grace
/// period.
pub struct RcuPointer<T: Send + Sync + 'static> {
    pointer: AtomicPtr<T>,
}

/// A value unpublished from an [`RcuPointer`]: readers may still see it until a grace
/// period has passed. Dropping it frees the value after a grace period (through
/// [`call_rcu`]); [`Retired::synchronize`] waits and hands it back.
pub struct Retired<T: Send + Sync + 'static> {
    pointer: *mut T,
}

// SAFETY: a `Retired` owns its value exclusively once a grace period has passed, and `T`
// is `Send`; the raw pointer is only turned back into a `Box` then.
unsafe impl<T: Send + Sync + 'static> Send for Retired<T> {}

struct SendPointer<T>(*mut T);
// SAFETY: used only to move a `Retired` value (of a `Send` type) into its `call_rcu`
// callback, which is then its sole owner.
unsafe impl<T: Send> Send for SendPointer<T> {}

impl<T: Send + Sync + 'static> RcuPointer<T> {
    /// A pointer to nothing.
    pub const fn null() -> Self {
        RcuPointer { pointer: AtomicPtr::new(core::ptr::null_mut()) }
    }

    /// A pointer to `value`.
    pub fn new(value: T) -> Self {
        RcuPointer { pointer: AtomicPtr::new(Box::into_raw(Box::new(value))) }
    }

    /// Follows the pointer inside a reader (Linux's `rcu_dereference`); the reference lives
    /// as long as the read-side critical section.
    pub fn dereference<'a>(&'a self, _guard: &'a RcuReadGuard) -> Option<&'a T> {
        let pointer = self.pointer.load(Ordering::Acquire);
        // A value unpublished by `assign` is freed only after a grace period, which this
        // reader (holding `_guard`, preemption disabled) delays.
        // SAFETY: a non-null pointer came from `Box::into_raw`, and lives as long as the guard.
        unsafe { pointer.as_ref() }
    }

    /// Publishes `value` (Linux's `rcu_assign_pointer`, with release ordering so readers
    /// see it initialized) and returns the value it replaces.
    pub fn assign(&self, value: Option<T>) -> Retired<T> {
        let new = value.map_or(core::ptr::null_mut(), |value| Box::into_raw(Box::new(value)));
        Retired { pointer: self.pointer.swap(new, Ordering::AcqRel) }
    }
}

impl<T: Send + Sync + 'static> Drop for RcuPointer<T> {
    fn drop(&mut self) {
        let pointer = *self.pointer.get_mut();
        if !pointer.is_null() {
            // SAFETY: dropping the `RcuPointer` ends every borrow of it, so no reader holds
            // a reference from `dereference` (those borrow the pointer); the value came
            // from `Box::into_raw`.
            drop(unsafe { Box::from_raw(pointer) });
        }
    }
}

impl<T: Send + Sync + 'static> Retired<T> {
    /// Waits for a grace period (Linux's `synchronize_rcu` before `kfree`) and returns the
    /// value, now unreachable by readers. Task context.
    pub fn synchronize(mut self) -> Option<T> {
        let pointer = core::mem::replace(&mut self.pointer, core::ptr::null_mut());
        if pointer.is_null() {
            return None;
        }
        synchronize_rcu();
        // SAFETY: the pointer came from `Box::into_raw`, was unpublished before the grace
        // period that just ended, so no reader can still reach it.
        Some(*unsafe { Box::from_raw(pointer) })
    }
}

impl<T: Send + Sync + 'static> Drop for Retired<T> {
    fn drop(&mut self) {
        if self.pointer.is_null() {
            return;
        }
        let pointer = SendPointer(self.pointer);
        call_rcu(move || {
            let pointer = pointer;
            // SAFETY: as in `synchronize`: from `Box::into_raw`, unpublished before the
            // grace period this callback waited for, and owned by this callback alone.
            drop(unsafe { Box::from_raw(pointer.0) });
        });
    }
}

/// `rcu_dereference` by its Linux name.
pub fn rcu_dereference<'a, T: Send + Sync + 'static>(pointer: &'a RcuPointer<T>, guard: &'a RcuReadGuard) -> Option<&'a T> {
    pointer.dereference(guard)
}

/// `rcu_assign_pointer` by its Linux name; returns the replaced value.
pub fn rcu_assign_pointer<T: Send + Sync + 'static>(pointer: &RcuPointer<T>, value: Option<T>) -> Retired<T> {
    pointer.assign(value)
}
