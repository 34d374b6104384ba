//! A CPU's run queue: the real-time queue, the fair class's vruntime-ordered tree, the current task's accounting, and the decisions of the tick and of wakeups.
//!
//! Pure logic over an [`Entity`] handle, driven by a clock the caller passes in, so the host
//! tests run it with a simulated clock. The current task is kept out of the queues (as
//! Linux's CFS keeps `curr` out of its tree) and goes back through [`RunQueue::put_prev`].

use alloc::collections::BTreeMap;

use super::policy::{
    calc_delta_fair, sched_slice, Policy, SchedParams, RR_TIMESLICE_NANOSECONDS, SCHED_LATENCY_NANOSECONDS, WAKEUP_GRANULARITY_NANOSECONDS,
};
use super::rt::RtQueue;

/// What the run queue needs of a task. Handles are cheap to clone (an `Arc`, an index);
/// the per-task scheduling state lives behind them, written only by the run queue that
/// holds the task.
pub trait Entity: Clone {
    /// A unique id.
    fn id(&self) -> u64;
    /// Policy, priority and nice.
    fn params(&self) -> SchedParams;
    /// The fair class's virtual run time, in nanoseconds.
    fn vruntime(&self) -> u64;
    /// Sets the virtual run time.
    fn set_vruntime(&self, vruntime: u64);
    /// The round-robin slice left, in nanoseconds.
    fn time_slice(&self) -> u64;
    /// Sets the round-robin slice left.
    fn set_time_slice(&self, nanoseconds: u64);
}

/// Why a task is being queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnqueueReason {
    /// A new task: starts at the queue's minimum vruntime, with a full RR slice.
    New,
    /// A sleeper woke: its vruntime is lifted to at most half a latency behind the minimum,
    /// so long sleeps do not buy unbounded CPU time.
    Wakeup,
    /// Moved here from another CPU with its vruntime already made relative to this queue.
    Migrated,
}

/// Why the current task leaves the CPU while still runnable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requeue {
    /// Preempted by a more urgent task: an RT task keeps its place at the head of its level.
    Preempted,
    /// Gave the CPU up (yield, or slice expired): behind its equals.
    Yielded,
}

/// One CPU's runnable tasks.
pub struct RunQueue<T: Entity> {
    rt: RtQueue<T>,
    fair: BTreeMap<(u64, u64), T>,
    fair_weight: u64,
    min_vruntime: u64,
    current: Option<T>,
    /// Clock value when the current task's run time was last accounted.
    exec_start: u64,
    /// Run time of the current task since it was picked.
    runtime_since_pick: u64,
    /// A fair task that yielded: skipped by the next pick if another fair task waits
    /// (Linux's skip buddy), so `sched_yield` between equals alternates.
    skip: Option<u64>,
    /// Context switches decided by this queue (`pick_next` results different from the previous task).
    pub switches: u64,
}

impl<T: Entity> RunQueue<T> {
    /// An empty queue with no current task (the CPU runs its idle task).
    pub fn new() -> Self {
        RunQueue {
            rt: RtQueue::new(),
            fair: BTreeMap::new(),
            fair_weight: 0,
            min_vruntime: 0,
            current: None,
            exec_start: 0,
            runtime_since_pick: 0,
            skip: None,
            switches: 0,
        }
    }

    /// Queued tasks, not counting the current one.
    pub fn queued(&self) -> usize {
        self.rt.len() + self.fair.len()
    }

    /// Runnable tasks including the current one (Linux's `nr_running`).
    pub fn nr_running(&self) -> usize {
        self.queued() + usize::from(self.current.is_some())
    }

    /// Sum of the fair weights of the runnable tasks, plus a nice-0 weight per RT task: the
    /// load the balancer compares.
    pub fn load(&self) -> u64 {
        let current = self.current.as_ref().map_or(0, |task| task.params().weight());
        self.fair_weight + current + self.rt.len() as u64 * super::policy::NICE_0_LOAD
    }

    /// The fair class's minimum vruntime (monotonic).
    pub fn min_vruntime(&self) -> u64 {
        self.min_vruntime
    }

    /// The task on the CPU, `None` while idle.
    pub fn current(&self) -> Option<&T> {
        self.current.as_ref()
    }

    /// Makes `task` the current task without queueing it (the first task of a CPU).
    pub fn set_current(&mut self, task: T, now: u64) {
        self.current = Some(task);
        self.exec_start = now;
        self.runtime_since_pick = 0;
    }

    /// Queues a runnable task.
    pub fn enqueue(&mut self, task: T, reason: EnqueueReason) {
        let params = task.params();
        if params.policy.is_real_time() {
            if reason == EnqueueReason::New || task.time_slice() == 0 {
                task.set_time_slice(RR_TIMESLICE_NANOSECONDS);
            }
            self.rt.push(params.kernel_priority() as usize, task, false);
            return;
        }
        match reason {
            EnqueueReason::New => task.set_vruntime(self.min_vruntime),
            EnqueueReason::Wakeup => {
                let floor = self.min_vruntime.saturating_sub(SCHED_LATENCY_NANOSECONDS / 2);
                task.set_vruntime(task.vruntime().max(floor));
            }
            EnqueueReason::Migrated => {}
        }
        self.insert_fair(task);
    }

    fn insert_fair(&mut self, task: T) {
        self.fair_weight += task.params().weight();
        self.fair.insert((task.vruntime(), task.id()), task);
    }

    /// Removes a queued (not current) task, e.g. to migrate it or change its policy.
    pub fn dequeue(&mut self, task: &T) -> Option<T> {
        let params = task.params();
        let id = task.id();
        if params.policy.is_real_time() {
            return self.rt.remove(params.kernel_priority() as usize, |queued| queued.id() == id);
        }
        let removed = self.fair.remove(&(task.vruntime(), id))?;
        self.fair_weight -= removed.params().weight();
        Some(removed)
    }

    /// Accounts the current task's run time up to `now` (Linux's `update_curr`): its
    /// vruntime (fair) or slice (RR). Returns the nanoseconds accounted.
    pub fn update_current(&mut self, now: u64) -> u64 {
        let params = self.current.as_ref().map(Entity::params);
        self.update_current_with(now, params)
    }

    /// [`update_current`](Self::update_current) with the current task's parameters already
    /// read (`None` while idle).
    #[inline(always)]
    fn update_current_with(&mut self, now: u64, params: Option<SchedParams>) -> u64 {
        let delta = now.saturating_sub(self.exec_start);
        self.exec_start = now;
        let (Some(current), Some(params)) = (self.current.as_ref(), params) else { return delta };
        self.runtime_since_pick += delta;
        match params.policy {
            Policy::Normal => {
                current.set_vruntime(current.vruntime().saturating_add(calc_delta_fair(delta, params.weight())));
                self.update_min_vruntime();
            }
            Policy::RoundRobin => current.set_time_slice(current.time_slice().saturating_sub(delta)),
            Policy::Fifo => {}
        }
        delta
    }

    #[inline(always)]
    fn update_min_vruntime(&mut self) {
        if self.fair.is_empty() && self.current.as_ref().is_none_or(|task| task.params().policy != Policy::Normal) {
            // Nothing fair runs or waits (an RT-only queue): nothing to follow.
            return;
        }
        let current = self.current.as_ref().filter(|task| task.params().policy == Policy::Normal).map(Entity::vruntime);
        let leftmost = self.fair.keys().next().map(|&(vruntime, _)| vruntime);
        let candidate = match (current, leftmost) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => return,
        };
        self.min_vruntime = self.min_vruntime.max(candidate);
    }

    /// The periodic tick for the current task: accounts time and says whether it should be
    /// preempted (RR slice used up with an equal waiting, fair slice used up, or a more
    /// urgent class waiting).
    pub fn tick(&mut self, now: u64) -> bool {
        self.update_current(now);
        let Some(current) = self.current.clone() else { return self.queued() > 0 };
        let params = current.params();
        match params.policy {
            Policy::Fifo => false,
            Policy::RoundRobin => {
                if current.time_slice() > 0 {
                    return false;
                }
                if self.rt.level_len(params.kernel_priority() as usize) > 0 {
                    // Used up with an equal waiting: `put_prev` queues it behind its
                    // equals and refills the slice.
                    return true;
                }
                current.set_time_slice(RR_TIMESLICE_NANOSECONDS);
                false
            }
            Policy::Normal => {
                if !self.rt.is_empty() {
                    return true;
                }
                let Some((&(leftmost_vruntime, _), _)) = self.fair.iter().next() else { return false };
                let running = self.fair.len() as u64 + 1;
                let ideal = sched_slice(params.weight(), self.fair_weight + params.weight(), running);
                if self.runtime_since_pick >= ideal {
                    return true;
                }
                if self.runtime_since_pick < super::policy::MIN_GRANULARITY_NANOSECONDS {
                    return false;
                }
                current.vruntime().saturating_sub(leftmost_vruntime) > ideal
            }
        }
    }

    /// Whether waking `woken` should preempt the current task (Linux's
    /// `check_preempt_curr`): always over idle; RT over fair; a more urgent RT priority;
    /// a fair task far enough behind in vruntime.
    pub fn check_preempt_wakeup(&self, woken: &T) -> bool {
        let Some(current) = self.current.as_ref() else { return true };
        let (current_params, woken_params) = (current.params(), woken.params());
        match (current_params.policy.is_real_time(), woken_params.policy.is_real_time()) {
            (false, true) => true,
            (true, false) => false,
            (true, true) => woken_params.kernel_priority() < current_params.kernel_priority(),
            (false, false) => {
                let granularity = calc_delta_fair(WAKEUP_GRANULARITY_NANOSECONDS, woken_params.weight());
                current.vruntime() > woken.vruntime().saturating_add(granularity)
            }
        }
    }

    /// Takes the current task off the CPU at `now`, queueing it again if it is still
    /// runnable. Returns its id.
    #[inline(always)]
    pub fn put_prev(&mut self, now: u64, requeue: Option<Requeue>) -> Option<u64> {
        let params = self.current.as_ref()?.params();
        self.update_current_with(now, Some(params));
        let previous = self.current.take()?;
        let id = previous.id();
        if let Some(requeue) = requeue {
            if params.policy.is_real_time() {
                let slice = previous.time_slice();
                let at_head = requeue == Requeue::Preempted && slice > 0;
                if slice == 0 {
                    previous.set_time_slice(RR_TIMESLICE_NANOSECONDS);
                }
                self.rt.push(params.kernel_priority() as usize, previous, at_head);
            } else {
                if requeue == Requeue::Yielded {
                    self.skip = Some(id);
                }
                self.insert_fair(previous);
            }
        }
        Some(id)
    }

    /// Picks the next task to run at `now` (RT before fair, then the smallest vruntime),
    /// removes it from the queues and makes it current; `None` means run the idle task.
    /// The previous task must have been put back with [`put_prev`](Self::put_prev).
    #[inline(always)]
    pub fn pick_next(&mut self, now: u64, previous_id: Option<u64>) -> Option<T> {
        debug_assert!(self.current.is_none(), "pick_next with a current task");
        let (next, fair) = match self.rt.pop() {
            Some(task) => (task, false),
            None => {
                let skip = self.skip.take();
                let mut keys = self.fair.keys();
                let first = *keys.next()?;
                let key = match keys.next() {
                    Some(&second) if Some(first.1) == skip => second,
                    _ => first,
                };
                let task = self.fair.remove(&key)?;
                self.fair_weight -= task.params().weight();
                (task, true)
            }
        };
        if previous_id != Some(next.id()) {
            self.switches += 1;
        }
        self.set_current(next.clone(), now);
        // An RT pick leaves the fair tree as it was, and `update_current` (in `put_prev`)
        // already followed the previous task: min_vruntime stands.
        if fair {
            self.update_min_vruntime();
        }
        Some(next)
    }

    /// The highest urgency waiting: an RT kernel priority (0..=99), 120 + nice for fair
    /// work, `None` when nothing is queued.
    pub fn highest_waiting_priority(&self) -> Option<u32> {
        if let Some(level) = self.rt.highest_level() {
            return Some(level as u32);
        }
        self.fair.values().next().map(|task| task.params().kernel_priority())
    }

    /// Calls `visit` with every queued task (RT by priority, then fair by vruntime).
    pub fn for_each_queued(&self, mut visit: impl FnMut(&T)) {
        self.rt.for_each(&mut visit);
        self.fair.values().for_each(visit);
    }

    /// Takes a queued task the balancer may move, preferring the fair class's last (least
    /// owed) task; its vruntime is made relative (the destination adds its own minimum).
    pub fn detach_for_migration(&mut self, mut allowed: impl FnMut(&T) -> bool) -> Option<T> {
        let key = self.fair.iter().rev().find(|(_, task)| allowed(task)).map(|(key, _)| *key);
        if let Some(key) = key {
            let task = self.fair.remove(&key)?;
            self.fair_weight -= task.params().weight();
            task.set_vruntime(task.vruntime().saturating_sub(self.min_vruntime));
            return Some(task);
        }
        let mut found = None;
        self.rt.for_each(|task| {
            if found.is_none() && allowed(task) {
                found = Some((task.id(), task.params().kernel_priority()));
            }
        });
        let (id, level) = found?;
        self.rt.remove(level as usize, |task| task.id() == id)
    }

    /// Removes a queued task to move it to another CPU, its vruntime made relative as
    /// [`detach_for_migration`](Self::detach_for_migration) does.
    pub fn detach(&mut self, task: &T) -> Option<T> {
        let task = self.dequeue(task)?;
        self.make_relative(&task);
        Some(task)
    }

    /// Makes the vruntime of a fair task leaving this queue relative to its minimum (a
    /// task taken off the CPU without being queued again, to run elsewhere).
    pub fn make_relative(&self, task: &T) {
        if !task.params().policy.is_real_time() {
            task.set_vruntime(task.vruntime().saturating_sub(self.min_vruntime));
        }
    }

    /// Queues a task detached from another CPU by [`detach_for_migration`](Self::detach_for_migration).
    pub fn attach_migrated(&mut self, task: T) {
        if !task.params().policy.is_real_time() {
            task.set_vruntime(task.vruntime().saturating_add(self.min_vruntime));
        }
        self.enqueue(task, EnqueueReason::Migrated);
    }
}

impl<T: Entity> Default for RunQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    /// A host-side task for the policy tests.
    #[derive(Debug)]
    pub(crate) struct FakeTask {
        pub id: u64,
        pub params: Cell<SchedParams>,
        pub vruntime: Cell<u64>,
        pub slice: Cell<u64>,
        pub ran: Cell<u64>,
    }

    pub(crate) type Handle = Rc<FakeTask>;

    impl Entity for Handle {
        fn id(&self) -> u64 {
            self.id
        }
        fn params(&self) -> SchedParams {
            self.params.get()
        }
        fn vruntime(&self) -> u64 {
            self.vruntime.get()
        }
        fn set_vruntime(&self, vruntime: u64) {
            self.vruntime.set(vruntime)
        }
        fn time_slice(&self) -> u64 {
            self.slice.get()
        }
        fn set_time_slice(&self, nanoseconds: u64) {
            self.slice.set(nanoseconds)
        }
    }

    pub(crate) fn task(id: u64, params: SchedParams) -> Handle {
        Rc::new(FakeTask { id, params: Cell::new(params), vruntime: Cell::new(0), slice: Cell::new(0), ran: Cell::new(0) })
    }

    const TICK: u64 = 1_000_000;

    /// Runs the queue for `duration` with a 1 ms tick, always-runnable tasks, and returns
    /// nothing; every task's `ran` accumulates its CPU time.
    fn simulate(queue: &mut RunQueue<Handle>, start: u64, duration: u64) -> u64 {
        let mut now = start;
        if queue.current().is_none() {
            queue.pick_next(now, None);
        }
        while now < start + duration {
            now += TICK;
            let current = queue.current().unwrap().clone();
            current.ran.set(current.ran.get() + TICK);
            if queue.tick(now) {
                let previous = queue.put_prev(now, Some(Requeue::Preempted)).unwrap();
                queue.pick_next(now, Some(previous));
            }
        }
        now
    }

    #[test]
    fn real_time_runs_before_fair_and_fifo_never_slices() {
        let mut queue = RunQueue::new();
        let fair = task(1, SchedParams::normal(-20));
        let fifo_low = task(2, SchedParams::real_time(Policy::Fifo, 10));
        let fifo_high = task(3, SchedParams::real_time(Policy::Fifo, 20));
        queue.enqueue(fair.clone(), EnqueueReason::New);
        queue.enqueue(fifo_low.clone(), EnqueueReason::New);
        queue.enqueue(fifo_high.clone(), EnqueueReason::New);
        assert_eq!(queue.nr_running(), 3);
        assert_eq!(queue.pick_next(0, None).unwrap().id, 3);
        simulate(&mut queue, 0, 500 * TICK);
        assert_eq!(fifo_high.ran.get(), 500 * TICK);
        assert_eq!(fifo_low.ran.get() + fair.ran.get(), 0);
        queue.put_prev(500 * TICK, None);
        assert_eq!(queue.pick_next(500 * TICK, Some(3)).unwrap().id, 2);
    }

    #[test]
    fn round_robin_slices_among_equals() {
        let mut queue = RunQueue::new();
        let tasks: Vec<_> = (0..3).map(|id| task(id, SchedParams::real_time(Policy::RoundRobin, 50))).collect();
        for t in &tasks {
            queue.enqueue(t.clone(), EnqueueReason::New);
        }
        let mut order = Vec::new();
        let mut now = 0;
        queue.pick_next(now, None);
        for _ in 0..6 {
            order.push(queue.current().unwrap().id);
            let mut ticks = 0;
            loop {
                now += TICK;
                ticks += 1;
                if queue.tick(now) {
                    break;
                }
            }
            assert_eq!(ticks * TICK, RR_TIMESLICE_NANOSECONDS);
            let previous = queue.put_prev(now, Some(Requeue::Preempted)).unwrap();
            queue.pick_next(now, Some(previous));
        }
        assert_eq!(order, [0, 1, 2, 0, 1, 2]);
        let alone = task(9, SchedParams::real_time(Policy::RoundRobin, 80));
        let mut solo = RunQueue::new();
        solo.enqueue(alone, EnqueueReason::New);
        solo.pick_next(0, None);
        assert!(!solo.tick(RR_TIMESLICE_NANOSECONDS * 3), "a lone RR task is not preempted");
    }

    #[test]
    fn preempted_rt_task_keeps_its_place() {
        let mut queue = RunQueue::new();
        let first = task(1, SchedParams::real_time(Policy::RoundRobin, 5));
        let second = task(2, SchedParams::real_time(Policy::RoundRobin, 5));
        queue.enqueue(first.clone(), EnqueueReason::New);
        queue.enqueue(second.clone(), EnqueueReason::New);
        queue.pick_next(0, None);
        queue.put_prev(TICK, Some(Requeue::Preempted));
        assert_eq!(queue.pick_next(TICK, Some(1)).unwrap().id, 1);
        queue.put_prev(2 * TICK, Some(Requeue::Yielded));
        assert_eq!(queue.pick_next(2 * TICK, Some(1)).unwrap().id, 2);
    }

    #[test]
    fn fair_shares_follow_nice_weights() {
        for (nice_a, nice_b) in [(0, 0), (0, 5), (-5, 5), (0, 19)] {
            let mut queue = RunQueue::new();
            let a = task(1, SchedParams::normal(nice_a));
            let b = task(2, SchedParams::normal(nice_b));
            queue.enqueue(a.clone(), EnqueueReason::New);
            queue.enqueue(b.clone(), EnqueueReason::New);
            simulate(&mut queue, 0, 20_000 * TICK);
            let expected = a.params().weight() as f64 / (a.params().weight() + b.params().weight()) as f64;
            let share = a.ran.get() as f64 / (a.ran.get() + b.ran.get()) as f64;
            assert!((share - expected).abs() < 0.02, "nice {nice_a} vs {nice_b}: share {share}, expected {expected}");
        }
    }

    #[test]
    fn fair_slices_rotate_within_the_latency() {
        let mut queue = RunQueue::new();
        let tasks: Vec<_> = (0..3).map(|id| task(id, SchedParams::normal(0))).collect();
        for t in &tasks {
            queue.enqueue(t.clone(), EnqueueReason::New);
        }
        simulate(&mut queue, 0, 12 * TICK);
        for t in &tasks {
            assert!(t.ran.get() >= 2 * TICK, "task {} ran {} in two latency periods", t.id, t.ran.get());
        }
        assert!(queue.switches >= 6);
    }

    #[test]
    fn wakeup_placement_and_preemption() {
        let mut queue = RunQueue::new();
        let runner = task(1, SchedParams::normal(0));
        queue.enqueue(runner.clone(), EnqueueReason::New);
        simulate(&mut queue, 0, 100 * TICK);
        assert_eq!(queue.min_vruntime(), 100 * TICK);
        let sleeper = task(2, SchedParams::normal(0));
        assert!(queue.check_preempt_wakeup(&sleeper), "a task far behind preempts");
        queue.enqueue(sleeper.clone(), EnqueueReason::Wakeup);
        assert_eq!(sleeper.vruntime(), 100 * TICK - SCHED_LATENCY_NANOSECONDS / 2, "a sleeper gets at most half a latency of credit");
        let close = task(3, SchedParams::normal(0));
        close.set_vruntime(100 * TICK - WAKEUP_GRANULARITY_NANOSECONDS / 2);
        assert!(!queue.check_preempt_wakeup(&close), "within the wakeup granularity: no preemption");
        assert!(queue.check_preempt_wakeup(&task(4, SchedParams::real_time(Policy::Fifo, 1))));
        let mut rt_queue = RunQueue::new();
        rt_queue.enqueue(task(5, SchedParams::real_time(Policy::Fifo, 50)), EnqueueReason::New);
        rt_queue.pick_next(0, None);
        assert!(rt_queue.check_preempt_wakeup(&task(6, SchedParams::real_time(Policy::Fifo, 51))));
        assert!(!rt_queue.check_preempt_wakeup(&task(7, SchedParams::real_time(Policy::Fifo, 50))));
        assert!(!rt_queue.check_preempt_wakeup(&task(8, SchedParams::normal(-20))));
        assert!(RunQueue::<Handle>::new().check_preempt_wakeup(&task(9, SchedParams::normal(19))), "anything preempts idle");
    }

    #[test]
    fn yield_alternates_between_fair_equals() {
        let mut queue = RunQueue::new();
        let a = task(1, SchedParams::normal(0));
        let b = task(2, SchedParams::normal(0));
        queue.enqueue(a.clone(), EnqueueReason::New);
        queue.enqueue(b.clone(), EnqueueReason::New);
        let mut now = 0;
        let mut previous = queue.pick_next(now, None).unwrap().id;
        let mut order = vec![previous];
        for _ in 0..5 {
            now += 10;
            queue.put_prev(now, Some(Requeue::Yielded));
            previous = queue.pick_next(now, Some(previous)).unwrap().id;
            order.push(previous);
        }
        assert_eq!(order, [1, 2, 1, 2, 1, 2]);
        let mut alone = RunQueue::new();
        alone.enqueue(a.clone(), EnqueueReason::New);
        alone.pick_next(0, None);
        alone.put_prev(5, Some(Requeue::Yielded));
        assert_eq!(alone.pick_next(5, Some(1)).map(|t| t.id), Some(1), "a lone yielder runs again");
    }

    #[test]
    fn dequeue_and_migration_keep_weights_consistent() {
        let mut source = RunQueue::new();
        let mut destination = RunQueue::new();
        let a = task(1, SchedParams::normal(0));
        let b = task(2, SchedParams::normal(5));
        let r = task(3, SchedParams::real_time(Policy::Fifo, 3));
        for t in [&a, &b, &r] {
            source.enqueue(t.clone(), EnqueueReason::New);
        }
        assert_eq!(source.load(), 1024 + 335 + 1024);
        assert!(source.dequeue(&b).is_some());
        assert!(source.dequeue(&b).is_none());
        assert_eq!(source.load(), 1024 + 1024);
        let moved = source.detach_for_migration(|t| t.id != 1);
        assert_eq!(moved.as_ref().map(|t| t.id), Some(3), "the RT task is the only allowed one");
        destination.attach_migrated(moved.unwrap());
        assert_eq!(source.detach_for_migration(|_| false).map(|t| t.id), None);
        assert_eq!((source.queued(), destination.queued()), (1, 1));
        assert_eq!(source.load() + destination.load(), 2048);
    }
}
