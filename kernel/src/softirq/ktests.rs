//! In-kernel tests of softirqs and tasklets: softirqs raised in a hardware interrupt run at its exit, a self-raising flood moves to ksoftirqd, tasklets never nest and coalesce.

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use core::time::Duration;

use super::{close_softirq, in_hardirq, in_interrupt, open_softirq, raise_softirq, statistics, Softirq, Tasklet};
use crate::sched;
use crate::{kassert, kassert_eq, ktest};

static RUNS: AtomicU64 = AtomicU64::new(0);
static RAN_IN_SOFTIRQ_CONTEXT: AtomicBool = AtomicBool::new(true);
static FLOOD_TARGET: AtomicU64 = AtomicU64::new(0);

fn counting_handler() {
    RUNS.fetch_add(1, Ordering::AcqRel);
    if !in_interrupt() || in_hardirq() {
        RAN_IN_SOFTIRQ_CONTEXT.store(false, Ordering::Release);
    }
    if RUNS.load(Ordering::Acquire) < FLOOD_TARGET.load(Ordering::Acquire) {
        raise_softirq(Softirq::IrqPoll);
    }
}

fn raise_in_hardirq(_argument: usize) -> usize {
    raise_softirq(Softirq::IrqPoll);
    usize::from(in_hardirq())
}

/// Raises IRQ_POLL from a real hardware interrupt on this CPU (a call-function IPI to
/// itself); `false` when the board has no interrupt controller yet.
fn raise_from_interrupt() -> Result<bool, crate::ktest::TestFailure> {
    if crate::try_platform().and_then(|platform| platform.interrupt_controller()).is_none() {
        log::info!("softirq: no interrupt controller on this board; interrupt-exit processing is not exercised");
        return Ok(false);
    }
    let result = crate::irq::call_function_single(sched::this_cpu() as u32, raise_in_hardirq, 0);
    kassert!(result == Ok(1), "the call-function IPI did not run in hardirq context: {:?}", result);
    Ok(true)
}

ktest!(
    fn softirqs_raised_in_an_interrupt_run_at_its_exit() {
        RUNS.store(0, Ordering::Release);
        FLOOD_TARGET.store(0, Ordering::Release);
        RAN_IN_SOFTIRQ_CONTEXT.store(true, Ordering::Release);
        open_softirq(Softirq::IrqPoll, counting_handler);
        let cpu = sched::this_cpu();
        let before = statistics(cpu);
        let raised = raise_from_interrupt();
        let after = statistics(cpu);
        close_softirq(Softirq::IrqPoll);
        if !raised? {
            return Ok(());
        }
        kassert_eq!(RUNS.load(Ordering::Acquire), 1);
        kassert!(RAN_IN_SOFTIRQ_CONTEXT.load(Ordering::Acquire), "the handler did not run in softirq context");
        kassert!(after.runs_at_irq_exit > before.runs_at_irq_exit);
        kassert_eq!(after.runs_in_ksoftirqd, before.runs_in_ksoftirqd);
        kassert_eq!(after.counts[Softirq::IrqPoll as usize], before.counts[Softirq::IrqPoll as usize] + 1);
        Ok(())
    }
);

ktest!(
    fn a_softirq_flood_moves_to_ksoftirqd() {
        RUNS.store(0, Ordering::Release);
        FLOOD_TARGET.store(500, Ordering::Release);
        open_softirq(Softirq::IrqPoll, counting_handler);
        let cpu = sched::this_cpu();
        let before = statistics(cpu);
        let raised = match raise_from_interrupt() {
            Ok(raised) => raised,
            Err(failure) => {
                close_softirq(Softirq::IrqPoll);
                return Err(failure);
            }
        };
        if !raised {
            // From task context the whole flood belongs to ksoftirqd.
            raise_softirq(Softirq::IrqPoll);
        }
        let started = crate::time::since_boot_nanoseconds();
        while RUNS.load(Ordering::Acquire) < 500 && crate::time::since_boot_nanoseconds() - started < 5_000_000_000 {
            sched::sleep(Duration::from_millis(1));
        }
        close_softirq(Softirq::IrqPoll);
        let after = statistics(cpu);
        kassert_eq!(RUNS.load(Ordering::Acquire), 500);
        kassert!(after.runs_in_ksoftirqd > before.runs_in_ksoftirqd, "ksoftirqd never ran the flood");
        if raised {
            kassert!(after.handed_to_ksoftirqd > before.handed_to_ksoftirqd, "interrupt exit never gave up on the flood");
            let at_exit_runs = (after.counts[Softirq::IrqPoll as usize] - before.counts[Softirq::IrqPoll as usize]).min(500);
            kassert!(at_exit_runs >= super::MAX_SOFTIRQ_RESTART as u64);
        }
        Ok(())
    }
);

static NESTED: AtomicUsize = AtomicUsize::new(0);
static INSIDE: AtomicBool = AtomicBool::new(false);
static SELF_RESCHEDULING: Tasklet = Tasklet::new(reschedule_self, 20);

fn reschedule_self(limit: usize) {
    if INSIDE.swap(true, Ordering::AcqRel) {
        NESTED.fetch_add(1, Ordering::Relaxed);
    }
    if (SELF_RESCHEDULING.runs() as usize) + 1 < limit {
        SELF_RESCHEDULING.schedule();
    }
    INSIDE.store(false, Ordering::Release);
}

ktest!(
    fn a_tasklet_never_runs_inside_itself_and_reruns_when_rescheduled() {
        let before = SELF_RESCHEDULING.runs();
        kassert_eq!(before, 0);
        SELF_RESCHEDULING.schedule();
        let started = crate::time::since_boot_nanoseconds();
        while SELF_RESCHEDULING.runs() < 20 && crate::time::since_boot_nanoseconds() - started < 5_000_000_000 {
            sched::sleep(Duration::from_millis(1));
        }
        SELF_RESCHEDULING.kill();
        kassert_eq!(SELF_RESCHEDULING.runs(), 20);
        kassert_eq!(NESTED.load(Ordering::Relaxed), 0);
        Ok(())
    }
);

static COALESCED_RUNS: AtomicUsize = AtomicUsize::new(0);
static COALESCING: Tasklet = Tasklet::new(count_coalesced, 0);

fn count_coalesced(_data: usize) {
    COALESCED_RUNS.fetch_add(1, Ordering::Relaxed);
}

ktest!(
    fn scheduling_a_pending_tasklet_coalesces_and_disable_defers() {
        COALESCING.disable();
        for _ in 0..5 {
            COALESCING.schedule();
        }
        sched::sleep(Duration::from_millis(3));
        kassert!(COALESCED_RUNS.load(Ordering::Relaxed) == 0, "a disabled tasklet ran");
        COALESCING.enable();
        COALESCING.kill();
        let runs = COALESCED_RUNS.load(Ordering::Relaxed);
        kassert!(runs == 1, "five schedules of a pending tasklet ran it {} times", runs);
        Ok(())
    }
);
