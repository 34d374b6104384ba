//! In-kernel tests of workqueues: flushing waits for all queued work, cancel prevents a pending run, double queuing runs once, delayed work is not early, workers carry Linux's names.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;

use super::{
    alloc_workqueue, cancel_delayed_work_sync, cancel_work, cancel_work_sync, flush_work, flush_workqueue, queue_delayed_work, queue_work,
    queue_work_on, system_highpri_wq, system_unbound_wq, system_wq, DelayedWork, Work, WorkqueueFlags,
};
use crate::sched;
use crate::tick::{jiffies, TICK_NANOSECONDS};
use crate::{kassert, kassert_eq, ktest};

/// How many jiffies after its delay a delayed work may start (timer tolerance plus a
/// worker wake-up on a loaded TCG host).
pub const DELAYED_WORK_TOLERANCE_JIFFIES: u64 = 5;

fn counting_work(counter: &Arc<AtomicU64>, sleep_milliseconds: u64) -> Arc<Work> {
    let counter = counter.clone();
    Work::new(move || {
        if sleep_milliseconds > 0 {
            sched::sleep(Duration::from_millis(sleep_milliseconds));
        }
        counter.fetch_add(1, Ordering::AcqRel);
    })
}

ktest!(
    fn flush_workqueue_waits_for_all_queued_work() {
        if !sched::is_running() {
            return Ok(());
        }
        for workqueue in [system_wq(), system_highpri_wq(), system_unbound_wq()] {
            let counter = Arc::new(AtomicU64::new(0));
            let works: Vec<Arc<Work>> = (0..8).map(|index| counting_work(&counter, 1 + index % 3)).collect();
            for work in &works {
                kassert!(queue_work(workqueue, work));
            }
            flush_workqueue(workqueue);
            kassert_eq!(counter.load(Ordering::Acquire), 8);
            kassert!(works.iter().all(|work| !work.is_pending() && !work.is_running() && work.runs() == 1));
        }
        // A private workqueue too, with flush_work of one item.
        let private = alloc_workqueue("ktest_wq", WorkqueueFlags::default());
        let counter = Arc::new(AtomicU64::new(0));
        let work = counting_work(&counter, 2);
        kassert!(queue_work(&private, &work));
        kassert!(flush_work(&work));
        kassert_eq!(counter.load(Ordering::Acquire), 1);
        kassert!(!flush_work(&work), "flush_work of an idle work reports idle");
        flush_workqueue(&private);
        Ok(())
    }
);

ktest!(
    fn cancel_prevents_a_pending_work_from_running() {
        if !sched::is_running() {
            return Ok(());
        }
        let counter = Arc::new(AtomicU64::new(0));
        let work = counting_work(&counter, 0);
        let cpu = sched::this_cpu();
        // With preemption disabled the worker bound to this CPU cannot run in between.
        sched::preempt_disable();
        let queued = queue_work_on(cpu, system_wq(), &work);
        let pending = work.is_pending();
        let cancelled = cancel_work(&work);
        sched::preempt_enable();
        kassert!(queued && pending);
        kassert!(cancelled, "cancel_work of a pending work reports it was pending");
        kassert!(!cancel_work_sync(&work), "a cancelled work is no longer pending");
        sched::sleep(Duration::from_nanos(3 * TICK_NANOSECONDS));
        kassert_eq!(counter.load(Ordering::Acquire), 0);
        kassert!(!work.is_pending());
        // A delayed work cancelled while in its timer never runs.
        let delayed_counter = Arc::new(AtomicU64::new(0));
        let delayed = {
            let counter = delayed_counter.clone();
            DelayedWork::new(move || {
                counter.fetch_add(1, Ordering::AcqRel);
            })
        };
        // 20 jiffies: far enough that only a host stall of 200 ms between the two calls
        // could let it run first; then wait past the delay.
        kassert!(queue_delayed_work(system_wq(), &delayed, 20));
        kassert!(cancel_delayed_work_sync(&delayed), "a delayed work in its timer is pending");
        sched::sleep(Duration::from_nanos(25 * TICK_NANOSECONDS));
        kassert_eq!(delayed_counter.load(Ordering::Acquire), 0);
        // The work can be queued again after a cancel.
        kassert!(queue_work(system_wq(), &work));
        flush_work(&work);
        kassert!(counter.load(Ordering::Acquire) >= 1);
        Ok(())
    }
);

ktest!(
    fn a_work_queued_twice_while_pending_runs_once() {
        if !sched::is_running() {
            return Ok(());
        }
        let counter = Arc::new(AtomicU64::new(0));
        let work = counting_work(&counter, 0);
        let cpu = sched::this_cpu();
        sched::preempt_disable();
        let first = queue_work_on(cpu, system_wq(), &work);
        let second = queue_work_on(cpu, system_wq(), &work);
        let third = queue_work(system_highpri_wq(), &work);
        sched::preempt_enable();
        kassert!(first);
        kassert!(!second && !third, "queuing a pending work must report it already pending");
        flush_work(&work);
        flush_workqueue(system_wq());
        flush_workqueue(system_highpri_wq());
        kassert_eq!(counter.load(Ordering::Acquire), 1);
        kassert_eq!(work.runs(), 1);
        Ok(())
    }
);

ktest!(
    fn delayed_work_runs_not_before_its_delay() {
        if !sched::is_running() || crate::try_platform().and_then(|platform| platform.clock_event()).is_none() {
            return Ok(());
        }
        for (delay, workqueue) in [(4u64, system_wq()), (2, system_unbound_wq()), (6, system_highpri_wq())] {
            let ran_at = Arc::new(AtomicU64::new(0));
            let delayed = {
                let ran_at = ran_at.clone();
                DelayedWork::new(move || ran_at.store(jiffies(), Ordering::Release))
            };
            // Both queuings with interrupts masked: the timer cannot expire in between.
            let platform = crate::platform();
            let saved = platform.cpu().disable_interrupts();
            let queued_at = jiffies();
            let first = queue_delayed_work(workqueue, &delayed, delay);
            let second = queue_delayed_work(workqueue, &delayed, delay);
            platform.cpu().restore_interrupts(saved);
            kassert!(first);
            kassert!(!second, "queued twice while in its timer");
            let started = crate::time::since_boot_nanoseconds();
            while ran_at.load(Ordering::Acquire) == 0 && crate::time::since_boot_nanoseconds() - started < 40 * TICK_NANOSECONDS {
                sched::sleep(Duration::from_millis(1));
            }
            let ran = ran_at.load(Ordering::Acquire);
            kassert!(ran != 0, "a delayed work of {} jiffies never ran", delay);
            kassert!(ran >= queued_at + delay, "a delayed work of {} jiffies queued at {} ran at {}", delay, queued_at, ran);
            kassert!(
                ran <= queued_at + delay + DELAYED_WORK_TOLERANCE_JIFFIES,
                "a delayed work of {} jiffies queued at {} ran at {} (tolerance {})",
                delay,
                queued_at,
                ran,
                DELAYED_WORK_TOLERANCE_JIFFIES
            );
            kassert!(!flush_work(delayed.work()) || delayed.work().runs() == 1);
        }
        Ok(())
    }
);

ktest!(
    fn workers_have_linux_names() {
        if !sched::is_running() {
            return Ok(());
        }
        let mut names = Vec::new();
        sched::for_each_task(|task| {
            if task.name().starts_with("kworker/") {
                names.push(alloc::string::String::from(task.name()));
            }
        });
        for expected in ["kworker/0:0", "kworker/0:0H", "kworker/u0:0"] {
            kassert!(names.iter().any(|name| name == expected), "no {} among {:?}", expected, names);
        }
        let cpus = crate::smp::ready_count() as usize;
        let per_cpu = names.iter().filter(|name| name.ends_with(":0")).count();
        kassert!(per_cpu >= cpus, "{} CPUs up but only {} first normal workers: {:?}", cpus, per_cpu, names);
        Ok(())
    }
);

ktest!(
    fn idle_workers_are_not_counted_as_blocked() {
        if !sched::is_running() {
            return Ok(());
        }
        flush_workqueue(system_wq());
        flush_workqueue(system_highpri_wq());
        flush_workqueue(system_unbound_wq());
        // Let every worker reach its idle wait.
        sched::sleep(Duration::from_millis(5));
        let mut blocked_workers = Vec::new();
        sched::for_each_task(|task| {
            if task.name().starts_with("kworker/") && task.state() == sched::TaskState::Uninterruptible {
                blocked_workers.push(alloc::string::String::from(task.name()));
            }
        });
        kassert!(blocked_workers.is_empty(), "idle workers counted as blocked (load average): {:?}", blocked_workers);
        // /proc/stat's procs_blocked and /proc/loadavg's task count agree with the task list.
        let mut stat = alloc::string::String::new();
        kassert!(crate::fs::procfs::read("/proc/stat", &mut stat).is_ok());
        let blocked: Option<usize> = stat.lines().find_map(|line| line.strip_prefix("procs_blocked ")).and_then(|value| value.parse().ok());
        let mut uninterruptible = 0;
        let mut tasks = 0;
        sched::for_each_task(|task| {
            if task.state() == sched::TaskState::Uninterruptible {
                uninterruptible += 1;
            }
            if task.state() != sched::TaskState::Idle {
                tasks += 1;
            }
        });
        kassert!(
            blocked.is_some_and(|blocked| blocked <= uninterruptible + 2),
            "procs_blocked {:?}, {} tasks uninterruptible",
            blocked,
            uninterruptible
        );
        let mut loadavg = alloc::string::String::new();
        kassert!(crate::fs::procfs::read("/proc/loadavg", &mut loadavg).is_ok());
        let total: Option<usize> =
            loadavg.split_whitespace().nth(3).and_then(|field| field.split_once('/')).and_then(|(_, total)| total.parse().ok());
        kassert!(total.is_some_and(|total| total.abs_diff(tasks) <= 2), "/proc/loadavg counts {:?} tasks, the task list {}", total, tasks);
        Ok(())
    }
);
