//! The scheduler proper: per-CPU state, `schedule`, wakeups, the preempt count and need-resched, the tick, sleeping and the idle loop.
//!
//! Every CPU has one [`IrqSpinLock`] over its run queue, current, idle and previous task.
//! `schedule` decides under that lock, switches stacks through the arch's [`ContextSwitch`]
//! with the lock still held and interrupts masked, and the task switched to finishes the
//! switch (`finish_switch_irqs_disabled`): it releases the lock, clears the previous task's
//! `on_cpu` and frees the stack of a task that exited. A waker takes the run-queue lock of the task's CPU, so a task that
//! set itself sleeping and then calls `schedule` can never miss its wake-up.
//!
//! SMP rules:
//! - A task's `cpu` changes only with the run-queue locks of both the old and the new CPU
//!   held (taken in CPU order, interrupts masked; `enqueue_on`, `load_balance`,
//!   `set_affinity`), so `lock_task_run_queue` (lock the CPU the task names, then check it
//!   still names it) pins a task to one run queue, queued or on its way to one.
//! - A task is never picked, pulled or placed elsewhere while `on_cpu` is set (its registers
//!   are still being saved): the balancer skips such tasks, and a waker that moves a task to
//!   another CPU first waits for `on_cpu` to clear, holding no run-queue lock.
//! - A running task whose affinity no longer allows its CPU is not requeued when it leaves
//!   the CPU; the task switched to pushes it to an allowed CPU in `finish_task_switch`.
//! - Placement (new tasks, wake-ups) reads lock-free per-CPU load snapshots (`publish`);
//!   a remote CPU asked to preempt gets a reschedule IPI. Idle CPUs pull work before they
//!   halt and at every tick; busy CPUs balance every [`BALANCE_INTERVAL_TICKS`] ticks.

use alloc::collections::BTreeMap;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use hinoki_interface::ContextSwitch;

use super::balance::{self, CpuLoad, CpuMask};
use super::runqueue::{EnqueueReason, Requeue, RunQueue};
use super::task::{Task, TaskId, TaskRef, TaskState, TASK_CACHE};
use crate::sync::{IrqSpinLock, Once, RawSpinLockGuard};

/// Most CPUs with a scheduler.
pub const MAX_SCHED_CPUS: usize = 8;

/// One CPU's scheduling state, under its lock.
pub(super) struct CpuState {
    pub run_queue: RunQueue<TaskRef>,
    pub current: TaskRef,
    pub idle: TaskRef,
    /// The task switched away from, until the task switched to finishes the switch.
    pub previous: Option<TaskRef>,
    /// Clock at the last switch (the current task's run time is measured from it).
    pub last_switch: u64,
    /// Nanoseconds this CPU spent in its idle task.
    pub idle_time: u64,
    /// Context switches on this CPU.
    pub context_switches: u64,
    /// The previous task left runnable on a CPU its affinity no longer allows: the task
    /// switched to pushes it to an allowed CPU.
    pub push_previous: bool,
}

/// A CPU's scheduler.
pub(super) struct PerCpu {
    pub state: IrqSpinLock<Option<CpuState>>,
    /// The current task (`SlabArc::as_ptr` of `CpuState::current`), null before the
    /// scheduler runs: [`current`] and [`current_id`] read it with interrupts masked instead
    /// of taking the lock.
    pub current_task: AtomicPtr<Task>,
    pub need_resched: AtomicBool,
    pub preempt_count: AtomicU32,
    /// Whether the CPU has joined the scheduler.
    pub active: AtomicBool,
    /// Load snapshot for placement and balancing, written under the lock by `publish`.
    pub nr_running: AtomicUsize,
    pub load: AtomicU64,
    pub idle: AtomicBool,
    /// Ticks seen by this CPU's scheduler (paces the periodic balancer).
    pub ticks: AtomicU64,
    /// Tasks pulled to this CPU by the balancer, and pushed here for their affinity.
    pub migrations: AtomicU64,
    /// Tick (of `ticks`) before which the balancer does not try again after finding nothing
    /// it could move, and the current back-off in ticks (doubling up to
    /// [`MAX_BALANCE_BACKOFF_TICKS`]).
    pub balance_next: AtomicU64,
    pub balance_backoff: AtomicU64,
}

impl PerCpu {
    const fn new() -> Self {
        PerCpu {
            state: IrqSpinLock::new(None),
            current_task: AtomicPtr::new(core::ptr::null_mut()),
            need_resched: AtomicBool::new(false),
            preempt_count: AtomicU32::new(0),
            active: AtomicBool::new(false),
            nr_running: AtomicUsize::new(0),
            load: AtomicU64::new(0),
            idle: AtomicBool::new(true),
            ticks: AtomicU64::new(0),
            migrations: AtomicU64::new(0),
            balance_next: AtomicU64::new(0),
            balance_backoff: AtomicU64::new(0),
        }
    }

    /// Publishes the load snapshot of `state` (call with the lock held, after a change).
    pub(super) fn publish(&self, state: &CpuState) {
        let idle = TaskRef::ptr_eq(&state.current, &state.idle) && state.run_queue.queued() == 0;
        self.nr_running.store(state.run_queue.nr_running(), Ordering::Relaxed);
        self.load.store(state.run_queue.load(), Ordering::Relaxed);
        self.idle.store(idle, Ordering::Relaxed);
    }

    fn snapshot(&self) -> CpuLoad {
        CpuLoad {
            nr_running: self.nr_running.load(Ordering::Relaxed),
            load: self.load.load(Ordering::Relaxed),
            idle: self.idle.load(Ordering::Relaxed),
        }
    }
}

/// How often (in ticks) a busy CPU runs the periodic load balancer; an idle CPU balances
/// at every tick and before it halts.
pub const BALANCE_INTERVAL_TICKS: u64 = 4;

/// Longest back-off of a CPU's balancer after attempts that found no task it may take (all
/// pinned, or on their way): taking a busy CPU's run-queue lock from every idle CPU at
/// every wake-up would slow that CPU down for nothing.
pub const MAX_BALANCE_BACKOFF_TICKS: u64 = 16;

pub(super) static CPUS: [PerCpu; MAX_SCHED_CPUS] = [const { PerCpu::new() }; MAX_SCHED_CPUS];
static SWITCH: Once<ContextSwitch> = Once::new();
/// Whether a periodic tick has been seen (the idle loop may then halt until an interrupt).
static TICK_SEEN: AtomicBool = AtomicBool::new(false);
/// Earliest deadline among sleeping tasks, `u64::MAX` when none.
static NEXT_WAKEUP: AtomicU64 = AtomicU64::new(u64::MAX);
/// The CPUs whose `active` flag is set, as a mask (set once per CPU, never cleared).
static ACTIVE_MASK: AtomicU64 = AtomicU64::new(0);
/// Every task that has not exited, by id (for `ps`, `/proc` and lookups).
pub(super) static TASKS: IrqSpinLock<BTreeMap<TaskId, TaskRef>> = IrqSpinLock::new(BTreeMap::new());
/// Tasks created since boot (`processes` in `/proc/stat`).
pub(super) static FORKS: AtomicU64 = AtomicU64::new(0);

/// The calling CPU's index.
pub fn this_cpu() -> usize {
    crate::try_cpu().map_or(0, |cpu| cpu.current_id().0 as usize) % MAX_SCHED_CPUS
}

/// Nanoseconds since boot, the scheduler's clock.
pub(super) fn clock() -> u64 {
    crate::time::since_boot_nanoseconds()
}

/// Whether the scheduler runs (the board supplied context switching and `init` ran).
pub fn is_running() -> bool {
    SWITCH.get().is_some() && CPUS[this_cpu()].active.load(Ordering::Acquire)
}

/// Turns the calling CPU's boot context into its idle task (id `cpu`, `swapper/N`).
/// Returns `false` if the platform has no context switching, leaving the scheduler off.
pub(super) fn init_cpu(operations: Option<&ContextSwitch>) -> bool {
    let Some(operations) = operations else { return false };
    SWITCH.call_once(|| *operations);
    let cpu = this_cpu();
    let mut name = [0u8; 12];
    let name = format_name(&mut name, "swapper/", cpu);
    let Ok(idle) = TaskRef::try_new(&TASK_CACHE, Task::new(cpu as TaskId, name, 0, super::policy::SchedParams::normal(0), None, clock()))
    else {
        log::error!("sched: no memory for CPU {}'s idle task", cpu);
        return false;
    };
    idle.set_state(TaskState::Idle);
    idle.set_cpu(cpu);
    idle.set_affinity(CpuMask::only(cpu));
    idle.on_cpu.store(true, Ordering::Release);
    let idle_task = TaskRef::as_ptr(&idle).cast_mut();
    {
        let mut guard = CPUS[cpu].state.lock();
        let state = guard.insert(CpuState {
            run_queue: RunQueue::new(),
            current: idle.clone(),
            idle: idle.clone(),
            previous: None,
            last_switch: clock(),
            idle_time: 0,
            context_switches: 0,
            push_previous: false,
        });
        CPUS[cpu].publish(state);
    }
    TASKS.lock().insert(idle.id(), idle);
    CPUS[cpu].active.store(true, Ordering::Release);
    ACTIVE_MASK.fetch_or(1 << cpu, Ordering::AcqRel);
    // Last: a non-null current task means this CPU runs the scheduler (see `current`). No
    // switch can have happened yet on this CPU, so its current task is still the idle task.
    CPUS[cpu].current_task.store(idle_task, Ordering::Release);
    true
}

/// The CPUs that joined the scheduler.
pub fn active_mask() -> CpuMask {
    CpuMask(ACTIVE_MASK.load(Ordering::Acquire))
}

/// Tasks moved to `cpu` by the balancer or for their affinity since boot.
pub fn migrations(cpu: usize) -> u64 {
    CPUS.get(cpu).map_or(0, |per_cpu| per_cpu.migrations.load(Ordering::Relaxed))
}

/// Runs `body` with interrupts masked (so the calling task stays on its CPU).
pub(super) fn with_interrupts_masked<R>(body: impl FnOnce() -> R) -> R {
    let Some(cpu) = crate::try_cpu() else { return body() };
    let saved = cpu.disable_interrupts();
    let result = body();
    cpu.restore_interrupts(saved);
    result
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
pub fn current() -> Option<TaskRef> {
    // Masked, so the task cannot move to another CPU between naming its CPU and reading it.
    with_interrupts_masked(|| {
        let task = CPUS[this_cpu()].current_task.load(Ordering::Acquire);
        // SAFETY: a non-null `current_task` is this CPU's `CpuState::current`, which keeps the
        // task alive while it is current; only this CPU changes it (in `schedule_with`, with
        // interrupts masked), and they are masked here, so it stays current during the clone.
        (!task.is_null()).then(|| unsafe { TaskRef::clone_from_ptr(task) })
    })
}

/// The id of the task running on the calling CPU, without taking any lock.
pub fn current_id() -> Option<TaskId> {
    with_interrupts_masked(|| {
        let task = CPUS[this_cpu()].current_task.load(Ordering::Acquire);
        // SAFETY: as in `current`: a non-null pointer is this CPU's current task, alive and
        // current while interrupts stay masked.
        (!task.is_null()).then(|| unsafe { (*task).id() })
    })
}

/// The context-switch operations.
pub(super) fn operations() -> Option<&'static ContextSwitch> {
    SWITCH.get()
}

/// Locks the run queue of the CPU `task` is on, with interrupts already masked: takes the
/// lock of the CPU the task names, then checks it still names it (a migration changes it
/// only under both locks).
pub(super) fn lock_task_run_queue(task: &Task) -> (usize, RawSpinLockGuard<'static, Option<CpuState>>) {
    loop {
        let cpu = task.cpu();
        let guard = CPUS[cpu].state.lock_irqs_disabled();
        if task.cpu() == cpu {
            return (cpu, guard);
        }
    }
}

/// Locks two different CPUs' run queues in CPU order (interrupts already masked); the
/// guards come back in the order of the arguments.
fn lock_two(first: usize, second: usize) -> (RawSpinLockGuard<'static, Option<CpuState>>, RawSpinLockGuard<'static, Option<CpuState>>) {
    debug_assert_ne!(first, second);
    if first < second {
        let a = CPUS[first].state.lock_irqs_disabled();
        let b = CPUS[second].state.lock_irqs_disabled();
        (a, b)
    } else {
        let b = CPUS[second].state.lock_irqs_disabled();
        let a = CPUS[first].state.lock_irqs_disabled();
        (a, b)
    }
}

/// Queues a new task on a CPU its affinity allows.
pub(super) fn enqueue_new(task: &TaskRef) {
    with_interrupts_masked(|| {
        let cpu = select_cpu(task);
        task.set_cpu(cpu);
        task.on_run_queue.store(true, Ordering::Release);
        enqueue_on(cpu, task, EnqueueReason::New);
    })
}

/// Queues `task` (runnable, on no run queue, not on any CPU) on `cpu`, asking that CPU to
/// reschedule if the task should preempt what runs there. Interrupts must be masked.
/// Moving the task to another CPU takes the old CPU's lock too: whoever holds the lock of
/// the CPU the task names (a priority change) then sees it either before or after the move.
fn enqueue_on(cpu: usize, task: &TaskRef, reason: EnqueueReason) {
    let per_cpu = &CPUS[cpu];
    let preempt = {
        let from = task.cpu();
        let (_from_guard, mut guard) = if from != cpu {
            let (from_guard, guard) = lock_two(from, cpu);
            (Some(from_guard), guard)
        } else {
            (None, per_cpu.state.lock_irqs_disabled())
        };
        task.set_cpu(cpu);
        let Some(state) = guard.as_mut() else { return };
        enqueue_locked(cpu, state, task, reason)
    };
    if preempt && cpu != this_cpu() {
        send_reschedule(cpu);
    }
}

/// The part of [`enqueue_on`] under `cpu`'s run-queue lock (`state` is that CPU's, and
/// `task` names it): queues the task and sets need-resched if it should preempt. Returns
/// whether it should; a remote CPU then needs a reschedule IPI.
fn enqueue_locked(cpu: usize, state: &mut CpuState, task: &TaskRef, reason: EnqueueReason) -> bool {
    let per_cpu = &CPUS[cpu];
    let preempt = state.run_queue.check_preempt_wakeup_over(&state.current, &state.idle, task);
    if reason == EnqueueReason::Migrated {
        state.run_queue.attach_migrated(task.clone());
        per_cpu.migrations.fetch_add(1, Ordering::Relaxed);
    } else {
        state.run_queue.enqueue(task.clone(), reason);
    }
    per_cpu.publish(state);
    if preempt {
        per_cpu.need_resched.store(true, Ordering::Release);
    }
    preempt
}

/// Where `task` should be queued (Linux's `select_task_rq`): see
/// [`balance::select_task_cpu`], over the CPUs that joined the scheduler.
fn select_cpu(task: &TaskRef) -> usize {
    let allowed = CpuMask(task.affinity().0 & active_mask().0);
    let previous = task.cpu();
    match balance::select_task_cpu(allowed, previous, MAX_SCHED_CPUS, |cpu| CPUS[cpu].snapshot()) {
        Some(cpu) => cpu,
        // No allowed CPU is running the scheduler: stay where the task was.
        None => {
            if CPUS[previous].active.load(Ordering::Acquire) {
                previous
            } else {
                this_cpu()
            }
        }
    }
}

/// Wakes a sleeping task (Linux's `wake_up_process`): makes it runnable and queues it on
/// the CPU [`select_cpu`] picks, asking for a reschedule (by IPI on another CPU) if it
/// should preempt. Returns whether it was asleep.
pub fn wake_up_process(task: &TaskRef) -> bool {
    if !task.state().is_sleeping() {
        return false;
    }
    with_interrupts_masked(|| wake_up_process_irqs_disabled(task))
}

/// [`wake_up_process`] for callers that already masked interrupts (a wait queue's waker
/// under its `IrqSpinLock`).
pub(crate) fn wake_up_process_irqs_disabled(task: &TaskRef) -> bool {
    if !task.state().is_sleeping() {
        return false;
    }
    {
        let (cpu, mut guard) = lock_task_run_queue(task);
        let state_now = task.state();
        if !state_now.is_sleeping() || !task.change_state(state_now, TaskState::Running) {
            return false;
        }
        let Some(state) = guard.as_mut() else { return true };
        if task.on_run_queue.load(Ordering::Acquire) {
            // Still on its CPU, between setting itself asleep and switching away: its
            // `schedule` sees it runnable again and keeps it.
            return true;
        }
        // Ours now: running, on no run queue, and no other waker will queue it.
        task.on_run_queue.store(true, Ordering::Release);
        // Registers saved and its place is the CPU whose lock is held: queue it there
        // now rather than locking that run queue a second time.
        if !task.on_cpu.load(Ordering::Acquire) && select_cpu(task) == cpu {
            let preempt = enqueue_locked(cpu, state, task, EnqueueReason::Wakeup);
            drop(guard);
            if preempt && cpu != this_cpu() {
                send_reschedule(cpu);
            }
            return true;
        }
    }
    // Its CPU may still be saving its registers: only then may it run elsewhere.
    while task.on_cpu.load(Ordering::Acquire) {
        core::hint::spin_loop();
    }
    let cpu = select_cpu(task);
    enqueue_on(cpu, task, EnqueueReason::Wakeup);
    true
}

pub(super) fn send_reschedule(cpu: usize) {
    // Linux's `smp_send_reschedule`: the target's IPI handler sets need-resched and its
    // interrupt exit switches. Without IPIs the target notices at its next tick.
    let _ = crate::irq::send_ipi(hinoki_interface::IpiTarget::Cpu(cpu as u32), crate::irq::Ipi::Reschedule);
}

/// Sets the CPUs `task` may run on (Linux's `set_cpus_allowed_ptr`). A task queued on a CPU
/// the mask leaves out moves at once; a running one moves when it next leaves its CPU (at
/// once for the calling task, unless it disabled preemption).
///
/// # Errors
/// [`AffinityError::NoAllowedCpu`] when the mask holds no CPU running the scheduler,
/// [`AffinityError::IdleTask`] for a CPU's idle task (it never moves).
pub fn set_affinity(task: &TaskRef, mask: CpuMask) -> Result<(), AffinityError> {
    if task.state() == TaskState::Idle {
        return Err(AffinityError::IdleTask);
    }
    if SWITCH.get().is_none() {
        task.set_affinity(mask);
        return Ok(());
    }
    let allowed = CpuMask(mask.0 & active_mask().0);
    if allowed.is_empty() {
        return Err(AffinityError::NoAllowedCpu);
    }
    let kick = with_interrupts_masked(|| loop {
        let (cpu, mut guard) = lock_task_run_queue(task);
        task.set_affinity(mask);
        if allowed.contains(cpu) {
            return None;
        }
        let Some(state) = guard.as_mut() else { return None };
        if TaskRef::ptr_eq(&state.current, task) {
            // Running there: it leaves at its CPU's next reschedule and is pushed then.
            CPUS[cpu].need_resched.store(true, Ordering::Release);
            return Some(cpu);
        }
        if !task.on_run_queue.load(Ordering::Acquire) {
            // Asleep: its wake-up places it by the new mask.
            return None;
        }
        drop(guard);
        if task.on_cpu.load(Ordering::Acquire) {
            // Being switched away from its CPU: look again once that is done.
            core::hint::spin_loop();
            continue;
        }
        let target = select_cpu(task);
        if target == cpu {
            return None;
        }
        let (mut source_guard, mut target_guard) = lock_two(cpu, target);
        if task.cpu() != cpu || task.on_cpu.load(Ordering::Acquire) {
            continue;
        }
        let (Some(source), Some(destination)) = (source_guard.as_mut(), target_guard.as_mut()) else { return None };
        let Some(moved) = source.run_queue.detach(task) else { continue };
        task.set_cpu(target);
        let preempt = destination.run_queue.check_preempt_wakeup_over(&destination.current, &destination.idle, task);
        destination.run_queue.attach_migrated(moved);
        CPUS[cpu].publish(source);
        CPUS[target].publish(destination);
        CPUS[target].migrations.fetch_add(1, Ordering::Relaxed);
        if preempt {
            CPUS[target].need_resched.store(true, Ordering::Release);
            return Some(target);
        }
        return None;
    });
    match kick {
        Some(cpu) if cpu == this_cpu() => super::preempt_check_resched(),
        Some(cpu) => send_reschedule(cpu),
        None => {}
    }
    Ok(())
}

/// Why [`set_affinity`] refused a mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AffinityError {
    /// The mask holds no CPU that runs the scheduler.
    NoAllowedCpu,
    /// Idle tasks stay on their CPU.
    IdleTask,
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
    let Some(cpu_operations) = crate::try_cpu() else { return };
    let saved = cpu_operations.disable_interrupts();
    let cpu = cpu_operations.current_id().0 as usize % MAX_SCHED_CPUS;
    // deferred-time: a task calling the scheduler is outside every RCU reader.
    crate::rcu::rcu_note_context_switch(cpu);
    let per_cpu = &CPUS[cpu];
    let now = clock();
    if NEXT_WAKEUP.load(Ordering::Acquire) <= now {
        wake_expired_sleepers();
    }
    let mut guard = per_cpu.state.lock_irqs_disabled();
    let Some(state) = guard.as_mut() else {
        drop(guard);
        cpu_operations.restore_interrupts(saved);
        return;
    };
    per_cpu.need_resched.store(false, Ordering::Release);
    let previous = &state.current;
    let previous_is_idle = TaskRef::ptr_eq(previous, &state.idle);
    // A preempted task stays runnable whatever state it set (Linux's preempt_schedule):
    // it may have marked itself sleeping but not yet be where a waker can find it (on a
    // wait queue, among the sleepers), or be exiting with waiters still to wake.
    let runnable = previous_is_idle || requeue == Requeue::Preempted || previous.state() == TaskState::Running;
    // Runnable but no longer allowed here: not requeued, pushed once switched away.
    let push = runnable && !previous_is_idle && !previous.affinity().contains(cpu);
    if !previous_is_idle {
        state.run_queue.put_prev(now, (runnable && !push).then_some(requeue));
        if !runnable {
            previous.on_run_queue.store(false, Ordering::Release);
        }
    }
    let next = state.run_queue.pick_next(now, Some(previous.id())).unwrap_or_else(|| state.idle.clone());
    if TaskRef::ptr_eq(&next, previous) {
        per_cpu.publish(state);
        drop(guard);
        cpu_operations.restore_interrupts(saved);
        return;
    }
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
    per_cpu.current_task.store(TaskRef::as_ptr(&next).cast_mut(), Ordering::Release);
    let previous = core::mem::replace(&mut state.current, next);
    let this_task = TaskRef::as_ptr(&previous);
    let (from, to) = (previous.context(), state.current.context());
    let next_locks = &state.current.held_locks as *const crate::lockdep::HeldLocks;
    state.previous = Some(previous);
    state.push_previous = push;
    per_cpu.publish(state);
    // The run-queue lock stays held across the switch (so it is taken once per switch); the
    // task switched to releases it in `finish_switch_irqs_disabled`.
    guard.hand_over();
    // SAFETY: `next` is this CPU's current task now (its state keeps it alive), so its
    // held-lock record outlives the switch.
    crate::lockdep::switch_to(unsafe { &*next_locks });
    // `from` is the running task's context and `to` the next one's; both tasks are kept
    // alive by this CPU's state (`current`, `previous`) until the switch is finished, and
    // `to` was filled by `initialize` or by its own switch away (its `on_cpu` was clear).
    // SAFETY: both contexts are valid as above, and interrupts are masked so nothing else runs on this CPU between.
    unsafe { (operations.switch)(from, to) };
    // Back on some CPU (perhaps another one: the task may have moved while switched out),
    // holding that CPU's run-queue lock, handed over by the task that switched here, which
    // also set this task's `cpu` to it.
    // SAFETY: this task runs again, so it is alive (its CPU's state holds it as current).
    let cpu_now = unsafe { (*this_task).cpu() };
    finish_switch_irqs_disabled(&CPUS[cpu_now]);
    cpu_operations.restore_interrupts(saved);
}

/// Completes a switch on the task switched to: releases the run-queue lock the switching
/// task handed over, lets the previous task run elsewhere, gives an exited one's stack back.
/// Interrupts are masked (they have been since the switch began).
pub(super) fn finish_task_switch() {
    finish_switch_irqs_disabled(&CPUS[this_cpu()]);
}

#[inline(always)]
fn finish_switch_irqs_disabled(per_cpu: &PerCpu) {
    let (previous, push) = {
        // SAFETY: every switch to a task goes through `schedule_with`, which handed this
        // CPU's run-queue lock over with interrupts masked; they stayed masked since.
        let mut guard = unsafe { per_cpu.state.take_over() };
        let Some(state) = guard.as_mut() else { return };
        let push = core::mem::take(&mut state.push_previous);
        let previous = state.previous.take();
        if let Some(previous) = previous.as_ref().filter(|_| push) {
            // Relative to this queue, as the balancer detaches; the destination adds its own.
            state.run_queue.make_relative(previous);
        }
        (previous, push)
    };
    if let Some(previous) = previous {
        previous.on_cpu.store(false, Ordering::Release);
        if push {
            let cpu = select_cpu(&previous);
            enqueue_on(cpu, &previous, EnqueueReason::Migrated);
        } else if previous.state() == TaskState::Dead && !previous.on_run_queue.load(Ordering::Acquire) {
            // Exited and switched away for good (a preempted exiting task is still queued).
            // Its stack goes back.
            let stack = previous.take_stack();
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
    // Masked so the task cannot move between naming its CPU and counting there.
    with_interrupts_masked(|| CPUS[this_cpu()].preempt_count.fetch_add(1, Ordering::Relaxed));
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
        let interrupts_on = crate::try_cpu().is_some_and(|cpu| cpu.interrupts_enabled());
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
    let cpu = this_cpu();
    let per_cpu = &CPUS[cpu];
    let ticks = per_cpu.ticks.fetch_add(1, Ordering::Relaxed) + 1;
    {
        let mut guard = per_cpu.state.lock();
        let Some(state) = guard.as_mut() else { return };
        let idle = TaskRef::ptr_eq(&state.current, &state.idle);
        if state.run_queue.tick(clock()) || (idle && state.run_queue.queued() > 0) {
            per_cpu.need_resched.store(true, Ordering::Release);
        }
        per_cpu.publish(state);
    }
    // Busy CPUs balance in turn (staggered by CPU number), idle ones at every tick.
    if per_cpu.idle.load(Ordering::Relaxed) || ticks % BALANCE_INTERVAL_TICKS == cpu as u64 % BALANCE_INTERVAL_TICKS {
        load_balance(cpu);
    }
    if cpu == 0 {
        super::proc::sample_load(clock());
    }
}

/// Pulls tasks from the busiest CPU to `this` if [`balance::find_busiest`] says it helps
/// (Linux's `load_balance` over a flat topology). Only queued tasks whose affinity allows
/// `this` and whose registers are saved (`on_cpu` clear) move. Returns how many moved.
pub(super) fn load_balance(this: usize) -> usize {
    let active = active_mask();
    if !active.contains(this) || active.0.count_ones() < 2 {
        return 0;
    }
    let loads: [CpuLoad; MAX_SCHED_CPUS] =
        core::array::from_fn(|cpu| if active.contains(cpu) { CPUS[cpu].snapshot() } else { CpuLoad::default() });
    let Some((busiest, count)) = balance::find_busiest(this, &loads) else { return 0 };
    let per_cpu = &CPUS[this];
    let ticks = per_cpu.ticks.load(Ordering::Relaxed);
    if ticks < per_cpu.balance_next.load(Ordering::Relaxed) {
        return 0;
    }
    let moved = with_interrupts_masked(|| {
        let (mut here_guard, mut there_guard) = lock_two(this, busiest);
        let (Some(here), Some(there)) = (here_guard.as_mut(), there_guard.as_mut()) else { return 0 };
        let mut moved = 0;
        while moved < count {
            let allowed = |task: &TaskRef| task.affinity().contains(this) && !task.on_cpu.load(Ordering::Acquire);
            let Some(task) = there.run_queue.detach_for_migration(allowed) else { break };
            task.set_cpu(this);
            if here.run_queue.check_preempt_wakeup_over(&here.current, &here.idle, &task) {
                CPUS[this].need_resched.store(true, Ordering::Release);
            }
            here.run_queue.attach_migrated(task);
            moved += 1;
        }
        if moved > 0 {
            CPUS[this].publish(here);
            CPUS[busiest].publish(there);
            CPUS[this].migrations.fetch_add(moved as u64, Ordering::Relaxed);
        }
        moved
    });
    if moved > 0 {
        per_cpu.balance_backoff.store(0, Ordering::Relaxed);
        per_cpu.balance_next.store(0, Ordering::Relaxed);
    } else {
        let backoff = (per_cpu.balance_backoff.load(Ordering::Relaxed) * 2).clamp(1, MAX_BALANCE_BACKOFF_TICKS);
        per_cpu.balance_backoff.store(backoff, Ordering::Relaxed);
        per_cpu.balance_next.store(ticks + backoff, Ordering::Relaxed);
    }
    moved
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
        // Idle balancing (Linux's `newidle_balance`): pull work before halting.
        if load_balance(this_cpu()) > 0 {
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
    let idle_now = TaskRef::ptr_eq(&state.current, &state.idle);
    let idle = state.idle_time + if idle_now { clock().saturating_sub(state.last_switch) } else { 0 };
    let running_current = usize::from(!idle_now);
    Some(CpuTimes { idle, context_switches: state.context_switches, nr_running: state.run_queue.queued() + running_current })
}

/// The calling task's run time so far including the current stretch, in nanoseconds.
pub fn current_runtime() -> u64 {
    let guard = CPUS[this_cpu()].state.lock();
    guard.as_ref().map_or(0, |state| state.current.stime() + clock().saturating_sub(state.last_switch))
}

impl RunQueue<TaskRef> {
    /// `check_preempt_wakeup` where the CPU may be running its idle task (always preempted).
    pub(super) fn check_preempt_wakeup_over(&self, current: &TaskRef, idle: &TaskRef, woken: &TaskRef) -> bool {
        TaskRef::ptr_eq(current, idle) || self.check_preempt_wakeup(woken)
    }
}
