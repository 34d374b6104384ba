//! The scheduler proper: per-CPU state, `schedule`, wakeups, the preempt count and need-resched, the tick, sleeping and the idle loop.
//!
//! Every CPU has one [`IrqSpinLock`] over its run queue, current, idle and previous task.
//! `schedule` decides under that lock, releases it with interrupts still masked, switches
//! stacks through the arch's [`ContextSwitch`], and the task switched to finishes the switch
//! (`finish_task_switch`): it clears the previous task's `on_cpu` and frees the stack of a
//! task that exited. A waker takes the run-queue lock of the task's CPU, so a task that
//! set itself sleeping and then calls `schedule` can never miss its wake-up.

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use hinoki_interface::ContextSwitch;

use super::balance::{self, CpuLoad};
use super::runqueue::{EnqueueReason, Requeue, RunQueue};
use super::task::{Task, TaskId, TaskState};
use crate::sync::{IrqSpinLock, Once};

/// Most CPUs with a scheduler.
pub const MAX_SCHED_CPUS: usize = 8;

/// One CPU's scheduling state, under its lock.
pub(super) struct CpuState {
    pub run_queue: RunQueue<Arc<Task>>,
    pub current: Arc<Task>,
    pub idle: Arc<Task>,
    /// The task switched away from, until the task switched to finishes the switch.
    pub previous: Option<Arc<Task>>,
    /// Clock at the last switch (the current task's run time is measured from it).
    pub last_switch: u64,
    /// Nanoseconds this CPU spent in its idle task.
    pub idle_time: u64,
    /// Context switches on this CPU.
    pub context_switches: u64,
}

/// A CPU's scheduler.
pub(super) struct PerCpu {
    pub state: IrqSpinLock<Option<CpuState>>,
    /// The current task's id + 1 (0 before the scheduler runs), readable without the lock.
    pub current_id: AtomicU64,
    pub need_resched: AtomicBool,
    pub preempt_count: AtomicU32,
}

impl PerCpu {
    const fn new() -> Self {
        PerCpu {
            state: IrqSpinLock::new(None),
            current_id: AtomicU64::new(0),
            need_resched: AtomicBool::new(false),
            preempt_count: AtomicU32::new(0),
        }
    }
}

pub(super) static CPUS: [PerCpu; MAX_SCHED_CPUS] = [const { PerCpu::new() }; MAX_SCHED_CPUS];
static SWITCH: Once<ContextSwitch> = Once::new();
/// Whether a periodic tick has been seen (the idle loop may then halt until an interrupt).
static TICK_SEEN: AtomicBool = AtomicBool::new(false);
/// Earliest deadline among sleeping tasks, `u64::MAX` when none.
static NEXT_WAKEUP: AtomicU64 = AtomicU64::new(u64::MAX);
/// Every task that has not exited, by id (for `ps`, `/proc` and lookups).
pub(super) static TASKS: IrqSpinLock<BTreeMap<TaskId, Arc<Task>>> = IrqSpinLock::new(BTreeMap::new());
/// Tasks created since boot (`processes` in `/proc/stat`).
pub(super) static FORKS: AtomicU64 = AtomicU64::new(0);

/// The calling CPU's index.
pub fn this_cpu() -> usize {
    crate::try_platform().map_or(0, |platform| platform.cpu().current_id().0 as usize) % MAX_SCHED_CPUS
}

/// Nanoseconds since boot, the scheduler's clock.
pub(super) fn clock() -> u64 {
    crate::time::since_boot_nanoseconds()
}

/// Whether the scheduler runs (the board supplied context switching and `init` ran).
pub fn is_running() -> bool {
    SWITCH.get().is_some() && CPUS[this_cpu()].state.lock().is_some()
}

/// Turns the calling CPU's boot context into its idle task (id `cpu`, `swapper/N`).
/// Returns `false` if the platform has no context switching, leaving the scheduler off.
pub(super) fn init_cpu(operations: Option<&ContextSwitch>) -> bool {
    let Some(operations) = operations else { return false };
    SWITCH.call_once(|| *operations);
    let cpu = this_cpu();
    let mut name = [0u8; 12];
    let name = format_name(&mut name, "swapper/", cpu);
    let idle = Arc::new(Task::new(cpu as TaskId, name, 0, super::policy::SchedParams::normal(0), None, clock()));
    idle.set_state(TaskState::Idle);
    idle.set_cpu(cpu);
    idle.on_cpu.store(true, Ordering::Release);
    CPUS[cpu].current_id.store(idle.id() + 1, Ordering::Release);
    *CPUS[cpu].state.lock() = Some(CpuState {
        run_queue: RunQueue::new(),
        current: idle.clone(),
        idle: idle.clone(),
        previous: None,
        last_switch: clock(),
        idle_time: 0,
        context_switches: 0,
    });
    TASKS.lock().insert(idle.id(), idle);
    true
}

fn format_name<'a>(buffer: &'a mut [u8; 12], prefix: &str, number: usize) -> &'a str {
    let mut length = prefix.len().min(buffer.len());
    buffer[..length].copy_from_slice(&prefix.as_bytes()[..length]);
    let mut digits = [0u8; 20];
    let mut count = 0;
    let mut value = number;
    loop {
        digits[count] = b'0' + (value % 10) as u8;
        count += 1;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    for &digit in digits[..count].iter().rev() {
        if length < buffer.len() {
            buffer[length] = digit;
            length += 1;
        }
    }
    core::str::from_utf8(&buffer[..length]).unwrap_or("swapper")
}

/// The task running on the calling CPU, `None` before the scheduler runs.
pub fn current() -> Option<Arc<Task>> {
    CPUS[this_cpu()].state.lock().as_ref().map(|state| state.current.clone())
}

/// The id of the task running on the calling CPU, without taking any lock.
pub fn current_id() -> Option<TaskId> {
    CPUS[this_cpu()].current_id.load(Ordering::Acquire).checked_sub(1)
}

/// The context-switch operations.
pub(super) fn operations() -> Option<&'static ContextSwitch> {
    SWITCH.get()
}

/// Queues a new task on a CPU its affinity allows.
pub(super) fn enqueue_new(task: &Arc<Task>) {
    let cpu = select_cpu(task);
    task.set_cpu(cpu);
    let per_cpu = &CPUS[cpu];
    let mut guard = per_cpu.state.lock();
    let Some(state) = guard.as_mut() else { return };
    task.on_run_queue.store(true, Ordering::Release);
    let preempt = state.run_queue.check_preempt_wakeup_over(&state.current, &state.idle, task);
    state.run_queue.enqueue(task.clone(), EnqueueReason::New);
    if preempt {
        per_cpu.need_resched.store(true, Ordering::Release);
    }
}

fn select_cpu(task: &Arc<Task>) -> usize {
    let online = crate::try_platform().map_or(1, |platform| platform.cpu().online_count() as usize).clamp(1, MAX_SCHED_CPUS);
    let mut loads = [CpuLoad::default(); MAX_SCHED_CPUS];
    for (cpu, load) in loads.iter_mut().enumerate().take(online) {
        if let Some(state) = CPUS[cpu].state.lock().as_ref() {
            let idle = Arc::ptr_eq(&state.current, &state.idle) && state.run_queue.queued() == 0;
            *load = CpuLoad { nr_running: state.run_queue.nr_running(), load: state.run_queue.load(), idle };
        }
    }
    let ready = |cpu: usize| CPUS[cpu].state.lock().is_some();
    match balance::select_task_cpu(task.affinity(), task.cpu(), &loads[..online]) {
        Some(cpu) if ready(cpu) => cpu,
        _ => this_cpu(),
    }
}

/// Wakes a sleeping task (Linux's `wake_up_process`): makes it runnable and queues it,
/// asking for a reschedule if it should preempt. Returns whether it was asleep.
pub fn wake_up_process(task: &Arc<Task>) -> bool {
    if !task.state().is_sleeping() {
        return false;
    }
    let cpu = task.cpu();
    let per_cpu = &CPUS[cpu];
    let mut guard = per_cpu.state.lock();
    let state_now = task.state();
    if !state_now.is_sleeping() || !task.change_state(state_now, TaskState::Running) {
        return false;
    }
    let Some(state) = guard.as_mut() else { return true };
    if task.on_run_queue.load(Ordering::Acquire) {
        // Still on the CPU, between setting itself asleep and switching away: its
        // `schedule` sees it runnable again and keeps it.
        return true;
    }
    task.on_run_queue.store(true, Ordering::Release);
    let preempt = state.run_queue.check_preempt_wakeup_over(&state.current, &state.idle, task);
    state.run_queue.enqueue(task.clone(), EnqueueReason::Wakeup);
    if preempt {
        per_cpu.need_resched.store(true, Ordering::Release);
        if cpu != this_cpu() {
            send_reschedule(cpu);
        }
    }
    true
}

fn send_reschedule(cpu: usize) {
    // The reschedule IPI arrives with SMP bring-up (issue 3); until then every task runs
    // on the boot CPU and this is not reached. The target notices need-resched at its next
    // tick either way.
    let _ = cpu;
}

/// Sets the calling task's state before it checks its wait condition and calls
/// [`schedule`] (Linux's `set_current_state`).
pub fn set_current_state(state: TaskState) {
    if let Some(task) = current() {
        task.set_state(state);
    }
}

/// Gives up the CPU: picks the next task and switches to it. A task whose state is not
/// running stays off the run queue until woken (a voluntary switch); a runnable one is
/// queued again behind its equals.
pub fn schedule() {
    schedule_with(Requeue::Yielded);
}

/// Reschedules as a preemption: the current task stays runnable and keeps its place (Linux's
/// `preempt_schedule`), unlike a yield.
pub fn preempt_schedule() {
    schedule_with(Requeue::Preempted);
}

/// Whether the calling CPU has been asked to reschedule.
pub fn need_resched() -> bool {
    CPUS[this_cpu()].need_resched.load(Ordering::Acquire)
}

/// Asks the calling CPU to reschedule at the next preemption point.
pub fn set_need_resched() {
    CPUS[this_cpu()].need_resched.store(true, Ordering::Release);
}

fn schedule_with(requeue: Requeue) {
    let Some(operations) = SWITCH.get() else { return };
    let Some(platform) = crate::try_platform() else { return };
    let saved = platform.cpu().disable_interrupts();
    // deferred-time: a task calling the scheduler is outside every RCU reader.
    crate::rcu::rcu_note_context_switch();
    let cpu = this_cpu();
    let per_cpu = &CPUS[cpu];
    if NEXT_WAKEUP.load(Ordering::Acquire) <= clock() {
        wake_expired_sleepers();
    }
    let switch = {
        let mut guard = per_cpu.state.lock_irqs_disabled();
        let Some(state) = guard.as_mut() else {
            drop(guard);
            platform.cpu().restore_interrupts(saved);
            return;
        };
        per_cpu.need_resched.store(false, Ordering::Release);
        let now = clock();
        let previous = state.current.clone();
        let previous_is_idle = Arc::ptr_eq(&previous, &state.idle);
        let runnable = previous.state() == TaskState::Running || previous_is_idle;
        if !previous_is_idle {
            state.run_queue.put_prev(now, runnable.then_some(requeue));
            if !runnable {
                previous.on_run_queue.store(false, Ordering::Release);
            }
        }
        let next = state.run_queue.pick_next(now, Some(previous.id())).unwrap_or_else(|| state.idle.clone());
        if Arc::ptr_eq(&next, &previous) {
            None
        } else {
            let ran = now.saturating_sub(state.last_switch);
            state.last_switch = now;
            if previous_is_idle {
                state.idle_time += ran;
            } else {
                previous.add_stime(ran);
                previous.count_switch(!runnable);
                if !previous.stack_guard_intact() {
                    panic!("sched: task {} ({}) overflowed its kernel stack into the guard page", previous.id(), previous.name());
                }
            }
            state.context_switches += 1;
            while next.on_cpu.load(Ordering::Acquire) {
                core::hint::spin_loop();
            }
            next.on_cpu.store(true, Ordering::Release);
            next.set_cpu(cpu);
            let contexts = (previous.context(), next.context(), &next.held_locks as *const crate::lockdep::HeldLocks);
            per_cpu.current_id.store(next.id() + 1, Ordering::Release);
            state.current = next;
            state.previous = Some(previous);
            Some(contexts)
        }
    };
    if let Some((from, to, next_locks)) = switch {
        // SAFETY: `next` is this CPU's current task now (its state keeps it alive), so its
        // held-lock record outlives the switch.
        crate::lockdep::switch_to(unsafe { &*next_locks });
        // `from` is the running task's context and `to` the next one's; both tasks are kept
        // alive by this CPU's state (`current`, `previous`) until the switch is finished, and
        // `to` was filled by `initialize` or by its own switch away (its `on_cpu` was clear).
        // SAFETY: both contexts are valid as above, and interrupts are masked so nothing else runs on this CPU between.
        unsafe { (operations.switch)(from, to) };
        finish_switch_irqs_disabled(&CPUS[this_cpu()]);
    }
    platform.cpu().restore_interrupts(saved);
}

/// Completes a switch on the task switched to: the previous task may run elsewhere now;
/// an exited one gives its stack back.
pub(super) fn finish_task_switch() {
    let Some(platform) = crate::try_platform() else { return };
    let saved = platform.cpu().disable_interrupts();
    finish_switch_irqs_disabled(&CPUS[this_cpu()]);
    platform.cpu().restore_interrupts(saved);
}

fn finish_switch_irqs_disabled(per_cpu: &PerCpu) {
    let previous = per_cpu.state.lock_irqs_disabled().as_mut().and_then(|state| state.previous.take());
    if let Some(previous) = previous {
        previous.on_cpu.store(false, Ordering::Release);
        if previous.state() == TaskState::Dead {
            let stack = previous.stack.lock().take();
            drop(stack);
            TASKS.lock().remove(&previous.id());
        }
    }
}

/// The preempt count of the calling CPU (non-zero: no preemption).
pub fn preempt_count() -> u32 {
    CPUS[this_cpu()].preempt_count.load(Ordering::Relaxed)
}

/// Disables preemption on the calling CPU (nests).
pub fn preempt_disable() {
    CPUS[this_cpu()].preempt_count.fetch_add(1, Ordering::Relaxed);
    core::sync::atomic::compiler_fence(Ordering::SeqCst);
}

/// Re-enables preemption; reschedules here if it was asked for meanwhile and this is a
/// preemption point (count back to zero, interrupts on).
pub fn preempt_enable() {
    core::sync::atomic::compiler_fence(Ordering::SeqCst);
    let per_cpu = &CPUS[this_cpu()];
    let previous = per_cpu.preempt_count.fetch_sub(1, Ordering::Relaxed);
    debug_assert!(previous > 0, "preempt_enable without preempt_disable");
    if previous == 1 && per_cpu.need_resched.load(Ordering::Acquire) {
        let interrupts_on = crate::try_platform().is_some_and(|platform| platform.cpu().interrupts_enabled());
        if interrupts_on {
            schedule_with(Requeue::Preempted);
        }
    }
}

/// The preemption point at interrupt exit (Linux's `preempt_schedule_irq`): call after the
/// interrupt was handled and acknowledged, with interrupts still masked, on the stack of
/// the interrupted task. Switches away if the tick or a wake-up asked for it and the
/// interrupted code did not disable preemption.
pub fn preempt_schedule_irq() {
    let per_cpu = &CPUS[this_cpu()];
    if per_cpu.need_resched.load(Ordering::Acquire) && per_cpu.preempt_count.load(Ordering::Relaxed) == 0 {
        schedule_with(Requeue::Preempted);
    }
}

/// The scheduler's part of the periodic tick, from the timer interrupt: accounts the
/// current task, wakes sleepers whose time has come and sets need-resched when the RR or
/// fair slice is used up.
pub fn scheduler_tick() {
    // A CPU that has not joined the scheduler (a secondary CPU idling outside it) leaves
    // sleepers and accounting to the CPUs that run tasks.
    if !is_running() {
        return;
    }
    TICK_SEEN.store(true, Ordering::Relaxed);
    wake_expired_sleepers();
    let per_cpu = &CPUS[this_cpu()];
    let mut guard = per_cpu.state.lock();
    let Some(state) = guard.as_mut() else { return };
    let idle = Arc::ptr_eq(&state.current, &state.idle);
    if state.run_queue.tick(clock()) || (idle && state.run_queue.queued() > 0) {
        per_cpu.need_resched.store(true, Ordering::Release);
    }
    drop(guard);
    if this_cpu() == 0 {
        super::proc::sample_load(clock());
    }
}

/// Puts the calling task to sleep until the clock reaches `deadline` (nanoseconds since
/// boot) or someone wakes it. Woken by a high-resolution timer at the deadline, not
/// rounded to the tick (deferred-time: the body is the hrtimer sleep).
#[track_caller]
pub fn sleep_until(deadline: u64) {
    crate::lockdep::might_sleep();
    let Some(task) = current().filter(|_| SWITCH.get().is_some()) else {
        while clock() < deadline {
            core::hint::spin_loop();
        }
        return;
    };
    if clock() >= deadline {
        return;
    }
    let sleeper = task.clone();
    let timer = crate::time::HrTimer::new(move || {
        wake_up_process(&sleeper);
    });
    while clock() < deadline {
        task.set_state(TaskState::Interruptible);
        timer.start(deadline);
        NEXT_WAKEUP.fetch_min(deadline, Ordering::AcqRel);
        schedule();
    }
    timer.cancel();
    task.set_state(TaskState::Running);
}

/// Runs this CPU's expired high-resolution timers (sleepers among them) and notes the next
/// deadline; the clock-event interrupt runs them too, `schedule` and the idle loop poll
/// here for boards without a tick (deferred-time: the body is the hrtimer expiry).
pub fn wake_expired_sleepers() {
    crate::time::hrtimer::run_expired_local();
    NEXT_WAKEUP.store(crate::time::hrtimer::earliest_deadline(), Ordering::Release);
}

/// The idle task's loop: runs whatever becomes runnable and otherwise halts the CPU until
/// an interrupt. Before any periodic tick exists it polls instead (nothing would wake it).
pub fn idle_loop() -> ! {
    let platform = crate::platform();
    platform.cpu().enable_interrupts();
    loop {
        wake_expired_sleepers();
        // deferred-time: the idle task is outside every RCU reader.
        crate::rcu::rcu_idle_quiescent_state();
        let work = {
            let guard = CPUS[this_cpu()].state.lock();
            guard.as_ref().is_some_and(|state| state.run_queue.queued() > 0)
        };
        if work || need_resched() {
            schedule_with(Requeue::Yielded);
            continue;
        }
        if TICK_SEEN.load(Ordering::Relaxed) {
            // Masked while checking, then halted and unmasked in one step, so a wake-up
            // arriving after the check is not slept through.
            let _ = platform.cpu().disable_interrupts();
            let idle = !need_resched() && CPUS[this_cpu()].state.lock().as_ref().is_some_and(|state| state.run_queue.queued() == 0);
            if idle && NEXT_WAKEUP.load(Ordering::Acquire) > clock() {
                platform.cpu().idle();
            } else {
                platform.cpu().enable_interrupts();
            }
        } else {
            platform.cpu().relax();
        }
    }
}

/// Snapshot of one CPU's counters for `/proc/stat` and `/proc/uptime`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// Nanoseconds in the idle task (including the current idle stretch).
    pub idle: u64,
    /// Context switches.
    pub context_switches: u64,
    /// Runnable tasks including the running one, without the idle task.
    pub nr_running: usize,
}

/// Counters of `cpu`, `None` if it has no scheduler.
pub fn cpu_times(cpu: usize) -> Option<CpuTimes> {
    let guard = CPUS.get(cpu)?.state.lock();
    let state = guard.as_ref()?;
    let idle_now = Arc::ptr_eq(&state.current, &state.idle);
    let idle = state.idle_time + if idle_now { clock().saturating_sub(state.last_switch) } else { 0 };
    let running_current = usize::from(!idle_now);
    Some(CpuTimes { idle, context_switches: state.context_switches, nr_running: state.run_queue.queued() + running_current })
}

/// The calling task's run time so far including the current stretch, in nanoseconds.
pub fn current_runtime() -> u64 {
    let guard = CPUS[this_cpu()].state.lock();
    guard.as_ref().map_or(0, |state| state.current.stime() + clock().saturating_sub(state.last_switch))
}

impl RunQueue<Arc<Task>> {
    /// `check_preempt_wakeup` where the CPU may be running its idle task (always preempted).
    fn check_preempt_wakeup_over(&self, current: &Arc<Task>, idle: &Arc<Task>, woken: &Arc<Task>) -> bool {
        Arc::ptr_eq(current, idle) || self.check_preempt_wakeup(woken)
    }
}
