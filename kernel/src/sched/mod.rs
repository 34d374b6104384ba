//! The scheduler: tasks and kernel threads, per-CPU run queues with the real-time (FIFO, RR) and fair classes, preemption, sleeping, and SMP placement policy.
//!
//! The policy code ([`policy`], [`rt`], [`runqueue`], [`balance`]) is plain logic tested on
//! the host with a simulated clock; [`core`] drives it on the machine through the arch's
//! context switch ([`hinoki_interface::ContextSwitch`], supplied by the board).
//!
//! Preemption points: [`preempt_enable`], the end of interrupt handling
//! ([`preempt_schedule_irq`], called by the IRQ layer after end-of-interrupt), and every
//! blocking call. The periodic tick calls [`scheduler_tick`].

pub mod balance;
pub mod bench;
pub mod commands;
pub mod core;
pub mod policy;
pub mod proc;
pub mod rt;
pub mod runqueue;
pub mod task;

mod ktests;
mod smp_ktests;

use ::core::sync::atomic::Ordering;
use ::core::time::Duration;
use alloc::boxed::Box;

pub(crate) use self::core::wake_up_process_irqs_disabled;
pub use self::core::{
    active_mask, cpu_times, current, current_id, idle_loop, is_running, migrations, need_resched, preempt_count, preempt_disable,
    preempt_enable, preempt_schedule_irq, schedule, scheduler_tick, set_affinity, set_current_state, set_need_resched, sleep_until,
    this_cpu, wake_expired_sleepers, wake_up_process, AffinityError, CpuTimes, BALANCE_INTERVAL_TICKS, MAX_BALANCE_BACKOFF_TICKS,
    MAX_SCHED_CPUS,
};
pub use balance::CpuMask;
pub use policy::{ParameterError, Policy, SchedParams};
pub use task::{KernelStack, Task, TaskId, TaskRef, TaskState, STACK_ORDER, TASK_CACHE};

use self::core::{
    clock, enqueue_new, finish_task_switch, lock_task_run_queue, operations, send_reschedule, with_interrupts_masked, CPUS, FORKS, TASKS,
};
use crate::sync::{SpinLock, WaitQueue};

/// Why a thread could not be created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpawnError {
    /// The board supplies no context switch, or the scheduler is not initialized.
    NoScheduler,
    /// No memory for the stack.
    OutOfMemory,
    /// Invalid scheduling parameters.
    InvalidParameters(ParameterError),
    /// The affinity mask holds no CPU that runs the scheduler.
    NoAllowedCpu,
}

/// Tasks waiting for another task to exit.
static EXIT_WAITERS: WaitQueue = WaitQueue::new();
static NEXT_ID: SpinLock<TaskId> = SpinLock::new(MAX_SCHED_CPUS as TaskId);

/// Makes the calling secondary CPU join the scheduler: its boot context becomes its idle
/// task `swapper/N`. Returns `false` (the CPU stays outside the scheduler) until the boot
/// CPU ran [`init`], or if the board has no context switching.
pub fn init_secondary() -> bool {
    if operations().is_none() {
        return false;
    }
    let joined = self::core::init_cpu(crate::platform().context_switch());
    if joined {
        log::info!("sched: CPU{} joined the scheduler", this_cpu());
    }
    joined
}

/// Starts the scheduler on the boot CPU: its boot context becomes the idle task
/// `swapper/0`. Without context switching from the board, the kernel stays single-threaded.
pub fn init() {
    let platform = crate::platform();
    proc::register_proc_files();
    if self::core::init_cpu(platform.context_switch()) {
        log::info!(
            "sched: scheduler running on CPU {} (RT FIFO/RR over {} levels, fair class, HZ={})",
            this_cpu(),
            policy::MAX_RT_PRIO,
            crate::tick::HZ
        );
    } else {
        log::warn!("sched: the board supplies no context switch; running single-threaded");
    }
}

/// How to create a kernel thread.
#[derive(Clone, Copy, Debug)]
pub struct Builder<'a> {
    name: &'a str,
    params: SchedParams,
    affinity: CpuMask,
    stack_order: u32,
}

impl<'a> Builder<'a> {
    /// A fair-class, nice-0 thread named `name` on any CPU with a default stack.
    pub fn new(name: &'a str) -> Self {
        Builder { name, params: SchedParams::normal(0), affinity: CpuMask::ALL, stack_order: STACK_ORDER }
    }

    /// Scheduling policy and parameters.
    pub fn params(mut self, params: SchedParams) -> Self {
        self.params = params;
        self
    }

    /// CPUs the thread may run on.
    pub fn affinity(mut self, mask: CpuMask) -> Self {
        self.affinity = mask;
        self
    }

    /// Stack size as a page-allocator order (the lowest page is the guard).
    pub fn stack_order(mut self, order: u32) -> Self {
        self.stack_order = order;
        self
    }

    /// Creates the thread and makes it runnable; it may preempt the caller at once.
    pub fn spawn(self, body: impl FnOnce() -> usize + Send + 'static) -> Result<JoinHandle, SpawnError> {
        let params = self.params.validate().map_err(SpawnError::InvalidParameters)?;
        let operations = operations().ok_or(SpawnError::NoScheduler)?;
        if self.affinity.0 & active_mask().0 == 0 {
            return Err(SpawnError::NoAllowedCpu);
        }
        let parent = current().ok_or(SpawnError::NoScheduler)?;
        let stack = KernelStack::allocate(&crate::mm::MEMORY, self.stack_order).map_err(|_| SpawnError::OutOfMemory)?;
        let top = stack.top();
        let id = {
            let mut next = NEXT_ID.lock();
            *next += 1;
            *next
        };
        let task = TaskRef::try_new(&TASK_CACHE, Task::new(id, self.name, parent.id(), params, Some(stack), clock()))
            .map_err(|_| SpawnError::OutOfMemory)?;
        drop(parent);
        task.set_affinity(self.affinity);
        *task.body.lock() = Some(Box::new(body));
        // SAFETY: the task is new and not yet visible to any scheduler, so nothing else
        // reads or writes its context.
        (operations.initialize)(unsafe { &mut *task.context() }, top, thread_start, 0);
        TASKS.lock().insert(id, task.clone());
        FORKS.fetch_add(1, Ordering::Relaxed);
        enqueue_new(&task);
        preempt_check_resched();
        Ok(JoinHandle { task })
    }
}

/// Reschedules now if a wake-up or spawn asked for it and preemption is allowed here
/// (Linux's `preempt_check_resched`).
pub fn preempt_check_resched() {
    let Some(cpu) = crate::try_cpu() else { return };
    // The flags of the CPU the caller ran on when it looked: should it move meanwhile, the
    // answer is only late (the next preemption point), never wrong.
    let per_cpu = &CPUS[cpu.current_id().0 as usize % MAX_SCHED_CPUS];
    if per_cpu.need_resched.load(Ordering::Acquire) && per_cpu.preempt_count.load(Ordering::Relaxed) == 0 && cpu.interrupts_enabled() {
        self::core::preempt_schedule();
    }
}

/// Creates a fair-class kernel thread running `body`; see [`Builder`].
pub fn spawn(name: &str, body: impl FnOnce() -> usize + Send + 'static) -> Result<JoinHandle, SpawnError> {
    Builder::new(name).spawn(body)
}

extern "C" fn thread_start(_argument: usize) -> ! {
    finish_task_switch();
    crate::platform().cpu().enable_interrupts();
    let body = current().and_then(|task| task.body.lock().take());
    let value = body.map_or(0, |body| body());
    exit(value)
}

/// Ends the calling thread with `value`, which [`JoinHandle::join`] returns.
pub fn exit(value: usize) -> ! {
    if let Some(task) = current() {
        task.set_exit_value(value);
        task.set_state(TaskState::Dead);
    }
    EXIT_WAITERS.wake_up_all();
    schedule();
    unreachable!("sched: an exited task was scheduled again")
}

/// Lets other runnable tasks of the same or higher urgency run (Linux's `sched_yield`).
pub fn yield_now() {
    schedule();
}

/// Sleeps at least `duration`.
#[track_caller]
pub fn sleep(duration: Duration) {
    let nanoseconds = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
    sleep_until(clock().saturating_add(nanoseconds));
}

/// A handle on a spawned thread; dropping it detaches the thread.
pub struct JoinHandle {
    task: TaskRef,
}

impl JoinHandle {
    /// The thread's task.
    pub fn task(&self) -> &TaskRef {
        &self.task
    }

    /// Waits until the thread exits and returns its exit value.
    pub fn join(self) -> usize {
        EXIT_WAITERS.wait_event(|| self.task.state() == TaskState::Dead);
        self.task.exit_value()
    }

    /// Whether the thread has exited.
    pub fn is_finished(&self) -> bool {
        self.task.state() == TaskState::Dead
    }
}

/// Changes a task's policy and priority (and nice), moving it within its run queue.
pub fn set_params(task: &TaskRef, params: SchedParams) -> Result<(), ParameterError> {
    let params = params.validate()?;
    let boosted = task.normal_params() != task.params();
    if boosted {
        task.set_normal_params(Some(params));
        return Ok(());
    }
    change_effective_params(task, params);
    Ok(())
}

/// Sets the parameters the scheduler uses now (a boost, or its end), requeueing the task if
/// it waits in a run queue.
pub(crate) fn change_effective_params(task: &TaskRef, params: SchedParams) {
    let kick = with_interrupts_masked(|| {
        let (cpu, mut guard) = lock_task_run_queue(task);
        let per_cpu = &CPUS[cpu];
        let Some(state) = guard.as_mut() else {
            task.store_params(params);
            return None;
        };
        let queued = state.run_queue.dequeue(task).is_some();
        task.store_params(params);
        let mut resched = false;
        if queued {
            state.run_queue.enqueue(task.clone(), runqueue::EnqueueReason::Migrated);
            resched = state.run_queue.check_preempt_wakeup_over(&state.current, &state.idle, task);
        } else if TaskRef::ptr_eq(&state.current, task) {
            let waiting = state.run_queue.highest_waiting_priority();
            resched = waiting.is_some_and(|priority| priority < params.kernel_priority());
        }
        per_cpu.publish(state);
        if resched {
            per_cpu.need_resched.store(true, Ordering::Release);
        }
        resched.then_some(cpu)
    });
    if let Some(cpu) = kick.filter(|&cpu| cpu != this_cpu()) {
        send_reschedule(cpu);
    }
}

/// Lends `params` to `task` for priority inheritance (kept until [`unboost`]).
pub(crate) fn boost(task: &TaskRef, params: SchedParams) {
    if task.normal_params() == task.params() {
        task.set_normal_params(Some(task.params()));
    }
    change_effective_params(task, params);
}

/// Ends a priority-inheritance boost of `task`.
pub(crate) fn unboost(task: &TaskRef) {
    let normal = task.normal_params();
    task.set_normal_params(None);
    if normal != task.params() {
        change_effective_params(task, normal);
    }
}

/// A task by id.
pub fn find_task(id: TaskId) -> Option<TaskRef> {
    TASKS.lock().get(&id).cloned()
}

/// Calls `visit` with every live task, by id.
pub fn for_each_task(mut visit: impl FnMut(&TaskRef)) {
    let tasks: alloc::vec::Vec<TaskRef> = TASKS.lock().values().cloned().collect();
    tasks.iter().for_each(&mut visit);
}

/// Tasks created since boot.
pub fn forks() -> u64 {
    FORKS.load(Ordering::Relaxed)
}

/// Runs `main` as the first kernel thread and turns the boot context into the idle loop;
/// without a scheduler, runs `main` right here.
pub fn run_as_thread(name: &str, main: impl FnOnce() -> usize + Send + 'static) -> ! {
    if operations().is_some() {
        match Builder::new(name).stack_order(5).spawn(main) {
            Ok(handle) => {
                drop(handle);
                idle_loop()
            }
            Err(error) => panic!("sched: cannot start {}: {:?}", name, error),
        }
    }
    let value = main();
    panic!("sched: {} returned {} with no scheduler to return to", name, value)
}
