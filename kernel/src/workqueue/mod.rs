//! Workqueues (Linux's `kernel/workqueue.c`): work items run in process context by kernel worker threads from per-CPU and unbound worker pools, with flushing, cancelling and delayed work on the timer wheel.
//!
//! A [`Work`] wraps a function; [`queue_work`] puts it on a [`Workqueue`] unless it is
//! already pending (a work queued twice before it runs, runs once). A workqueue sends work
//! to a worker pool: each CPU has a normal and a high-priority pool (workers `kworker/N:M`
//! and `kworker/N:MH`, the latter at nice -20), and one unbound pool serves every CPU
//! (`kworker/u0:M`). A pool starts with one worker and adds one (up to
//! [`MAX_WORKERS_PER_POOL`]) when a worker takes an item while more wait and none is idle;
//! this is a simplification of Linux's concurrency management, which also notices workers
//! that block. A work item never runs on two workers at once: a worker that finds it
//! running elsewhere puts it back and yields.
//!
//! [`flush_work`] waits for the last queuing of a work to finish; [`flush_workqueue`] for
//! everything queued on a workqueue before the call; [`cancel_work`] removes a pending work
//! (any context) and [`cancel_work_sync`] also waits for a running one. A [`DelayedWork`] waits on a kernel timer
//! ([`crate::time::Timer`]) and is queued when it expires. The system workqueues are
//! [`system_wq`], [`system_highpri_wq`] and [`system_unbound_wq`].

use alloc::boxed::Box;
use alloc::collections::{BTreeSet, VecDeque};
use alloc::sync::{Arc, Weak};
use core::fmt::Write;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::sched::{self, CpuMask, SchedParams, MAX_SCHED_CPUS};
use crate::sync::{IrqSpinLock, Once, WaitQueue};
use crate::time::Timer;

mod ktests;

/// Most workers a pool grows to.
pub const MAX_WORKERS_PER_POOL: usize = 4;

/// Workqueue flags (Linux's `WQ_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct WorkqueueFlags {
    /// Served by the high-priority per-CPU pools (`WQ_HIGHPRI`).
    pub high_priority: bool,
    /// Served by the unbound pool (`WQ_UNBOUND`).
    pub unbound: bool,
}

/// A work item's function.
pub type WorkFunction = Box<dyn Fn() + Send + Sync>;

struct WorkState {
    pending: bool,
    /// Pending in a delayed work's timer, not yet in a pool.
    delayed: bool,
    running: bool,
    /// Counts queuings; the pending (or last) instance is this number.
    queued_sequence: u64,
    /// The last instance that finished or was cancelled.
    done_sequence: u64,
    /// Where the pending instance waits, and its workqueue ticket.
    pool: Option<&'static WorkerPool>,
    workqueue: Option<Arc<WorkqueueInner>>,
    ticket: u64,
}

/// A deferred function (Linux's `struct work_struct`).
pub struct Work {
    function: WorkFunction,
    state: IrqSpinLock<WorkState>,
    runs: AtomicU64,
}

impl Work {
    /// A work item calling `function` (Linux's `INIT_WORK`).
    pub fn new(function: impl Fn() + Send + Sync + 'static) -> Arc<Work> {
        Arc::new(Work {
            function: Box::new(function),
            state: IrqSpinLock::new(WorkState {
                pending: false,
                delayed: false,
                running: false,
                queued_sequence: 0,
                done_sequence: 0,
                pool: None,
                workqueue: None,
                ticket: 0,
            }),
            runs: AtomicU64::new(0),
        })
    }

    /// Whether it is queued and has not started (Linux's `work_pending`).
    pub fn is_pending(&self) -> bool {
        self.state.lock().pending
    }

    /// Whether a worker runs it now.
    pub fn is_running(&self) -> bool {
        self.state.lock().running
    }

    /// Times it has run.
    pub fn runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }
}

struct WorkqueueInner {
    name: &'static str,
    flags: WorkqueueFlags,
    /// Tickets of the work queued on it and not yet finished or cancelled.
    in_flight: IrqSpinLock<BTreeSet<u64>>,
    next_ticket: AtomicU64,
}

impl WorkqueueInner {
    fn take_ticket(&self) -> u64 {
        let ticket = self.next_ticket.fetch_add(1, Ordering::AcqRel);
        self.in_flight.lock().insert(ticket);
        ticket
    }

    fn release_ticket(&self, ticket: u64) {
        self.in_flight.lock().remove(&ticket);
    }
}

/// A workqueue (Linux's `struct workqueue_struct`); cloning shares it.
#[derive(Clone)]
pub struct Workqueue {
    inner: Arc<WorkqueueInner>,
}

impl Workqueue {
    /// Its name.
    pub fn name(&self) -> &'static str {
        self.inner.name
    }

    /// Its flags.
    pub fn flags(&self) -> WorkqueueFlags {
        self.inner.flags
    }

    fn pool(&self, cpu: Option<usize>) -> &'static WorkerPool {
        if !self.inner.flags.unbound {
            let cpu = cpu.unwrap_or_else(sched::this_cpu);
            if let Some(pools) = CPU_POOLS.get(cpu) {
                let pool = &pools[usize::from(self.inner.flags.high_priority)];
                if pool.workers.load(Ordering::Acquire) > 0 {
                    return pool;
                }
            }
        }
        &UNBOUND_POOL
    }
}

/// Creates a workqueue (Linux's `alloc_workqueue`).
pub fn alloc_workqueue(name: &'static str, flags: WorkqueueFlags) -> Workqueue {
    Workqueue {
        inner: Arc::new(WorkqueueInner { name, flags, in_flight: IrqSpinLock::new(BTreeSet::new()), next_ticket: AtomicU64::new(1) }),
    }
}

const NO_CPU: usize = usize::MAX;

/// A pool of worker threads sharing one list of work.
struct WorkerPool {
    /// The CPU of a per-CPU pool ([`NO_CPU`] for the unbound one), set when its first
    /// worker starts.
    cpu: AtomicUsize,
    high_priority: bool,
    list: IrqSpinLock<VecDeque<(Arc<Work>, u64)>>,
    wait: WaitQueue,
    workers: AtomicUsize,
    idle: AtomicUsize,
    processed: AtomicU64,
}

impl WorkerPool {
    const fn new(high_priority: bool) -> Self {
        WorkerPool {
            cpu: AtomicUsize::new(NO_CPU),
            high_priority,
            list: IrqSpinLock::new(VecDeque::new()),
            wait: WaitQueue::new(),
            workers: AtomicUsize::new(0),
            idle: AtomicUsize::new(0),
            processed: AtomicU64::new(0),
        }
    }
}

static CPU_POOLS: [[WorkerPool; 2]; MAX_SCHED_CPUS] = [const { [WorkerPool::new(false), WorkerPool::new(true)] }; MAX_SCHED_CPUS];
static UNBOUND_POOL: WorkerPool = WorkerPool::new(false);

/// Woken whenever a work item finishes or is cancelled (flushers and cancellers wait here).
static DONE: WaitQueue = WaitQueue::new();

static SYSTEM_WQ: Once<Workqueue> = Once::new();
static SYSTEM_HIGHPRI_WQ: Once<Workqueue> = Once::new();
static SYSTEM_UNBOUND_WQ: Once<Workqueue> = Once::new();

/// The default per-CPU workqueue (Linux's `system_wq`).
pub fn system_wq() -> &'static Workqueue {
    SYSTEM_WQ.call_once(|| alloc_workqueue("events", WorkqueueFlags::default()))
}

/// The high-priority per-CPU workqueue (Linux's `system_highpri_wq`).
pub fn system_highpri_wq() -> &'static Workqueue {
    SYSTEM_HIGHPRI_WQ.call_once(|| alloc_workqueue("events_highpri", WorkqueueFlags { high_priority: true, unbound: false }))
}

/// The unbound workqueue (Linux's `system_unbound_wq`).
pub fn system_unbound_wq() -> &'static Workqueue {
    SYSTEM_UNBOUND_WQ.call_once(|| alloc_workqueue("events_unbound", WorkqueueFlags { high_priority: false, unbound: true }))
}

/// Puts a pending instance on `pool`; called with the work's state locked.
fn insert_work(state: &mut WorkState, work: &Arc<Work>, workqueue: &Workqueue, pool: &'static WorkerPool) {
    state.delayed = false;
    state.pool = Some(pool);
    state.ticket = workqueue.inner.take_ticket();
    state.workqueue = Some(workqueue.inner.clone());
    pool.list.lock().push_back((work.clone(), state.queued_sequence));
}

/// Queues `work` on `workqueue`, on the calling CPU's pool for a per-CPU workqueue
/// (Linux's `queue_work`). Returns `false` if it was already pending.
pub fn queue_work(workqueue: &Workqueue, work: &Arc<Work>) -> bool {
    queue_on(workqueue, None, work)
}

/// Queues `work` on `workqueue` for CPU `cpu` (Linux's `queue_work_on`); a CPU without
/// workers sends it to the unbound pool. Returns `false` if it was already pending.
pub fn queue_work_on(cpu: usize, workqueue: &Workqueue, work: &Arc<Work>) -> bool {
    queue_on(workqueue, Some(cpu), work)
}

/// Queues `work` on the system workqueue (Linux's `schedule_work`).
pub fn schedule_work(work: &Arc<Work>) -> bool {
    queue_work(system_wq(), work)
}

fn queue_on(workqueue: &Workqueue, cpu: Option<usize>, work: &Arc<Work>) -> bool {
    let pool = workqueue.pool(cpu);
    {
        let mut state = work.state.lock();
        if state.pending {
            return false;
        }
        state.pending = true;
        state.queued_sequence += 1;
        insert_work(&mut state, work, workqueue, pool);
    }
    pool.wait.wake_up();
    true
}

/// Waits until the last queuing of `work` has finished running (Linux's `flush_work`).
/// Returns `false` if it was idle (neither pending nor running). Task context only.
pub fn flush_work(work: &Arc<Work>) -> bool {
    let target = {
        let state = work.state.lock();
        if !state.pending && !state.running {
            return false;
        }
        state.queued_sequence
    };
    DONE.wait_event(|| work.state.lock().done_sequence >= target);
    true
}

/// Waits until every work queued on `workqueue` before the call has finished or was
/// cancelled (Linux's `flush_workqueue`). Delayed work still in its timer is not waited
/// for. Task context only.
pub fn flush_workqueue(workqueue: &Workqueue) {
    let target = workqueue.inner.next_ticket.load(Ordering::Acquire);
    DONE.wait_event(|| workqueue.inner.in_flight.lock().first().is_none_or(|&ticket| ticket >= target));
}

/// Removes `work` if pending, then waits until it is not running (Linux's
/// `cancel_work_sync`). Returns whether it was pending. Task context only, not from the
/// work itself.
pub fn cancel_work_sync(work: &Arc<Work>) -> bool {
    let was_pending = cancel_work(work);
    DONE.wait_event(|| !work.state.lock().running);
    was_pending
}

/// Removes `work` if pending, without waiting for a running instance (Linux's
/// `cancel_work`); callable from any context. Returns whether it was pending.
pub fn cancel_work(work: &Arc<Work>) -> bool {
    let was_pending = {
        let mut state = work.state.lock();
        let was_pending = state.pending;
        if was_pending {
            state.pending = false;
            state.delayed = false;
            if let Some(pool) = state.pool.take() {
                pool.list.lock().retain(|(queued, _)| !Arc::ptr_eq(queued, work));
            }
            if let Some(workqueue) = state.workqueue.take() {
                workqueue.release_ticket(state.ticket);
            }
            state.done_sequence = state.done_sequence.max(state.queued_sequence);
        }
        was_pending
    };
    if was_pending {
        DONE.wake_up_all();
    }
    was_pending
}

fn worker_main(pool: &'static WorkerPool) -> usize {
    loop {
        pool.idle.fetch_add(1, Ordering::AcqRel);
        // Idle workers do not count as blocked tasks in the load average.
        pool.wait.wait_event_interruptible(|| !pool.list.lock().is_empty());
        pool.idle.fetch_sub(1, Ordering::AcqRel);
        let (work, sequence, more) = {
            let mut list = pool.list.lock();
            let Some((work, sequence)) = list.pop_front() else { continue };
            (work, sequence, !list.is_empty())
        };
        let instance = {
            let mut state = work.state.lock();
            if !state.pending || state.delayed || state.queued_sequence != sequence {
                // Cancelled, or a stale entry of an instance queued elsewhere since.
                None
            } else if state.running {
                Some(None)
            } else {
                state.pending = false;
                state.running = true;
                state.pool = None;
                Some(Some((state.workqueue.take(), state.ticket)))
            }
        };
        let Some(instance) = instance else { continue };
        let Some((workqueue, ticket)) = instance else {
            // It runs on another worker: after that one, in order.
            pool.list.lock().push_back((work, sequence));
            sched::yield_now();
            continue;
        };
        if more && pool.idle.load(Ordering::Acquire) == 0 {
            spawn_worker(pool);
        }
        (work.function)();
        work.runs.fetch_add(1, Ordering::Relaxed);
        pool.processed.fetch_add(1, Ordering::Relaxed);
        {
            let mut state = work.state.lock();
            state.running = false;
            state.done_sequence = state.done_sequence.max(sequence);
        }
        if let Some(workqueue) = workqueue {
            workqueue.release_ticket(ticket);
        }
        DONE.wake_up_all();
    }
}

/// Adds a worker to `pool` unless it has [`MAX_WORKERS_PER_POOL`]; task context.
fn spawn_worker(pool: &'static WorkerPool) -> bool {
    let Ok(index) =
        pool.workers.fetch_update(Ordering::AcqRel, Ordering::Acquire, |count| (count < MAX_WORKERS_PER_POOL).then_some(count + 1))
    else {
        return false;
    };
    let cpu = Some(pool.cpu.load(Ordering::Acquire)).filter(|&cpu| cpu != NO_CPU);
    let mut name = alloc::string::String::new();
    let _ = match cpu {
        Some(cpu) => write!(name, "kworker/{}:{}{}", cpu, index, if pool.high_priority { "H" } else { "" }),
        None => write!(name, "kworker/u0:{}", index),
    };
    let params = if pool.high_priority { SchedParams::normal(-20) } else { SchedParams::normal(0) };
    let affinity = cpu.map_or(CpuMask::ALL, CpuMask::only);
    match sched::Builder::new(&name).params(params).affinity(affinity).spawn(move || worker_main(pool)) {
        Ok(handle) => {
            drop(handle);
            true
        }
        Err(error) => {
            pool.workers.fetch_sub(1, Ordering::AcqRel);
            log::warn!("workqueue: cannot start {}: {:?}", name, error);
            false
        }
    }
}

/// Starts one worker in the pools of every CPU that is up and in the unbound pool, and
/// creates the system workqueues. Needs the scheduler.
pub fn init() {
    let ready = crate::smp::ready_mask();
    for (cpu, pools) in CPU_POOLS.iter().enumerate() {
        if ready & (1 << cpu) != 0 {
            for pool in pools {
                pool.cpu.store(cpu, Ordering::Release);
                spawn_worker(pool);
            }
        }
    }
    spawn_worker(&UNBOUND_POOL);
    system_wq();
    system_highpri_wq();
    system_unbound_wq();
}

struct DelayedInner {
    work: Arc<Work>,
    timer: Once<Arc<Timer>>,
    target: IrqSpinLock<Option<(Workqueue, Option<usize>)>>,
}

/// Work queued after a delay in jiffies (Linux's `struct delayed_work`); cloning shares it.
#[derive(Clone)]
pub struct DelayedWork {
    inner: Arc<DelayedInner>,
}

impl DelayedWork {
    /// A delayed work item calling `function` (Linux's `INIT_DELAYED_WORK`).
    pub fn new(function: impl Fn() + Send + Sync + 'static) -> DelayedWork {
        let inner = Arc::new(DelayedInner { work: Work::new(function), timer: Once::new(), target: IrqSpinLock::new(None) });
        let weak: Weak<DelayedInner> = Arc::downgrade(&inner);
        inner.timer.call_once(|| {
            Timer::new(move || {
                if let Some(inner) = weak.upgrade() {
                    delayed_work_timer_fired(&inner);
                }
            })
        });
        DelayedWork { inner }
    }

    /// The work item itself (for [`flush_work`] and the state queries).
    pub fn work(&self) -> &Arc<Work> {
        &self.inner.work
    }

    fn timer(&self) -> &Arc<Timer> {
        self.inner.timer.get().expect("timer set at creation")
    }
}

fn delayed_work_timer_fired(inner: &DelayedInner) {
    let Some((workqueue, cpu)) = inner.target.lock().clone() else { return };
    let pool = workqueue.pool(cpu);
    {
        let mut state = inner.work.state.lock();
        if !state.pending || !state.delayed {
            return;
        }
        insert_work(&mut state, &inner.work, &workqueue, pool);
    }
    pool.wait.wake_up();
}

/// Queues `work` on `workqueue` after `delay` jiffies (Linux's `queue_delayed_work`); no
/// delay queues it at once. Returns `false` if it was already pending.
pub fn queue_delayed_work(workqueue: &Workqueue, work: &DelayedWork, delay: u64) -> bool {
    queue_delayed_on(workqueue, None, work, delay)
}

/// As [`queue_delayed_work`], for CPU `cpu` (Linux's `queue_delayed_work_on`).
pub fn queue_delayed_work_on(cpu: usize, workqueue: &Workqueue, work: &DelayedWork, delay: u64) -> bool {
    queue_delayed_on(workqueue, Some(cpu), work, delay)
}

fn queue_delayed_on(workqueue: &Workqueue, cpu: Option<usize>, work: &DelayedWork, delay: u64) -> bool {
    if delay == 0 {
        return queue_on(workqueue, cpu, work.work());
    }
    {
        let mut state = work.inner.work.state.lock();
        if state.pending {
            return false;
        }
        state.pending = true;
        state.delayed = true;
        state.queued_sequence += 1;
        *work.inner.target.lock() = Some((workqueue.clone(), cpu));
    }
    work.timer().modify(crate::tick::jiffies() + delay);
    true
}

/// Cancels a delayed work whether in its timer or queued, and waits for a running
/// instance (Linux's `cancel_delayed_work_sync`). Returns whether it was pending.
pub fn cancel_delayed_work_sync(work: &DelayedWork) -> bool {
    work.timer().delete_sync();
    cancel_work_sync(work.work())
}

/// Work items run by each pool so far, for the tests: (cpu or `None` for unbound, high
/// priority, workers, processed).
pub fn pool_statistics() -> alloc::vec::Vec<(Option<usize>, bool, usize, u64)> {
    CPU_POOLS
        .iter()
        .flatten()
        .chain(core::iter::once(&UNBOUND_POOL))
        .filter(|pool| pool.workers.load(Ordering::Relaxed) > 0)
        .map(|pool| {
            (
                Some(pool.cpu.load(Ordering::Relaxed)).filter(|&cpu| cpu != NO_CPU),
                pool.high_priority,
                pool.workers.load(Ordering::Relaxed),
                pool.processed.load(Ordering::Relaxed),
            )
        })
        .collect()
}
