//! Manual benchmark ktests of the aarch64 exception and interrupt paths (exception round trip, IRQ latency, IPI round trip, timer jitter), measured with the system counter; docs/benchmarks-arch.md has the figures and commands.

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

use hinoki_kernel::{irq, kassert, kassert_eq, ktest};

use crate::exception::{self, TrapFrame};
use crate::generic_timer::physical_count;

static BREAKPOINTS: AtomicU64 = AtomicU64::new(0);

fn count_breakpoint(_frame: &mut TrapFrame) {
    BREAKPOINTS.fetch_add(1, Ordering::Relaxed);
}

fn breakpoint() {
    // SAFETY: this BRK raises a synchronous exception whose installed handler counts it
    // and resumes after the instruction.
    unsafe { asm!("brk #{immediate}", immediate = const exception::HANDLED_BREAKPOINT, options(nomem, nostack)) };
}

/// Median of `values` (sorted in place).
fn median(values: &mut [u64]) -> u64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

fn frequency_hz() -> u64 {
    hinoki_kernel::platform().clock().frequency_hz().max(1)
}

/// Counter ticks in nanoseconds.
fn nanoseconds(ticks: u64) -> u64 {
    (ticks as u128 * 1_000_000_000 / frequency_hz() as u128) as u64
}

fn cpu_index() -> usize {
    hinoki_kernel::platform().cpu().current_id().0 as usize
}

ktest!(
    fn breakpoint_exceptions_enter_and_return() {
        exception::set_breakpoint_handler(count_breakpoint);
        let before = BREAKPOINTS.load(Ordering::Relaxed);
        for _ in 0..3 {
            breakpoint();
        }
        kassert_eq!(BREAKPOINTS.load(Ordering::Relaxed), before + 3);
        Ok(())
    }
);

ktest!(manual fn benchmark_exception_round_trip() {
    exception::set_breakpoint_handler(count_breakpoint);
    const ROUNDS: u64 = 16_000;
    let mut samples = [0u64; 16];
    for sample in samples.iter_mut() {
        let start = physical_count();
        for _ in 0..ROUNDS / 16 {
            breakpoint();
        }
        // Picoseconds per round trip, so the counter's resolution is not lost.
        *sample = nanoseconds((physical_count() - start) * 1000) / (ROUNDS / 16);
    }
    let per_trip = median(&mut samples);
    log::info!("bench: exception entry+exit (brk to eret): median {}.{:03} ns per round trip", per_trip / 1000, per_trip % 1000);
    Ok(())
});

fn timer_compare_value() -> u64 {
    let value: u64;
    // SAFETY: reading CNTP_CVAL_EL0 has no side effects.
    unsafe { asm!("mrs {}, cntp_cval_el0", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

ktest!(manual fn benchmark_irq_latency() {
    let platform = hinoki_kernel::platform();
    let Some(event) = platform.clock_event() else {
        kassert!(false, "no clock-event device");
        return Ok(());
    };
    let cpu = platform.cpu();
    let mut latencies = [0u64; 64];
    hinoki_kernel::sched::preempt_disable();
    for latency in latencies.iter_mut() {
        let state = cpu.disable_interrupts();
        event.stop();
        let timer_count = irq::count(event.irq(), cpu_index());
        event.set_oneshot(50_000);
        let deadline = timer_compare_value();
        cpu.restore_interrupts(state);
        let started = physical_count();
        while irq::count(event.irq(), cpu_index()) == timer_count {
            if physical_count() - started > frequency_hz() {
                hinoki_kernel::tick::start_cpu();
                hinoki_kernel::sched::preempt_enable();
                kassert!(false, "the timer interrupt did not come within a second");
            }
            core::hint::spin_loop();
        }
        *latency = nanoseconds(exception::last_irq_entry().0.saturating_sub(deadline));
    }
    hinoki_kernel::tick::start_cpu();
    hinoki_kernel::sched::preempt_enable();
    let (best, worst) = (*latencies.iter().min().unwrap_or(&0), *latencies.iter().max().unwrap_or(&0));
    log::info!(
        "bench: IRQ latency (EL1 physical timer deadline to dispatcher entry, counter at {} Hz): best {} median {} worst {} ns",
        frequency_hz(),
        best,
        median(&mut latencies),
        worst
    );
    Ok(())
});

fn nothing(argument: usize) -> usize {
    argument
}

ktest!(manual fn benchmark_ipi_round_trip() {
    let platform = hinoki_kernel::platform();
    kassert!(platform.interrupt_controller().is_some(), "no interrupt controller");
    let online = platform.cpu().online_count();
    for target in [0, 1].into_iter().filter(|&cpu| cpu < online) {
        let mut samples = [0u64; 64];
        for sample in samples.iter_mut() {
            let start = physical_count();
            let result = irq::call_function_single(target, nothing, 5);
            *sample = physical_count() - start;
            kassert_eq!(result, Ok(5));
        }
        log::info!(
            "bench: IPI round trip (call-function from CPU {} to CPU {}): median {} ns",
            cpu_index(),
            target,
            nanoseconds(median(&mut samples))
        );
    }
    Ok(())
});

ktest!(manual fn benchmark_timer_jitter() {
    const TICKS: usize = 100;
    let platform = hinoki_kernel::platform();
    let Some(event) = platform.clock_event() else {
        kassert!(false, "no clock-event device");
        return Ok(());
    };
    let mut entries = [0u64; TICKS + 1];
    // On this CPU, without other threads taking turns (the ticks still come).
    hinoki_kernel::sched::preempt_disable();
    let mut count = irq::count(event.irq(), cpu_index());
    let started = physical_count();
    let mut index = 0;
    while index <= TICKS {
        let now = irq::count(event.irq(), cpu_index());
        if now != count {
            count = now;
            entries[index] = exception::last_irq_entry().0;
            index += 1;
        }
        if physical_count() - started > 10 * frequency_hz() {
            hinoki_kernel::sched::preempt_enable();
            kassert!(false, "fewer than {} ticks in 10 s", TICKS);
        }
        core::hint::spin_loop();
    }
    hinoki_kernel::sched::preempt_enable();
    let period = frequency_hz() / hinoki_kernel::tick::HZ;
    let mut deviations = [0u64; TICKS];
    for (deviation, pair) in deviations.iter_mut().zip(entries.windows(2)) {
        *deviation = nanoseconds((pair[1] - pair[0]).abs_diff(period));
    }
    let worst = *deviations.iter().max().unwrap_or(&0);
    let mean = deviations.iter().sum::<u64>() / TICKS as u64;
    log::info!(
        "bench: timer jitter over {} ticks at {} Hz: |interval - period| mean {} ns, median {} ns, worst {} ns",
        TICKS,
        hinoki_kernel::tick::HZ,
        mean,
        median(&mut deviations),
        worst
    );
    Ok(())
});
