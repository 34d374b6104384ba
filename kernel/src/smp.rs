//! SMP bring-up: the boot CPU starts every CPU the platform describes, each on its own stack; a secondary CPU brings up its interrupts and tick, reports itself, then joins the scheduler and runs tasks.
//!
//! Logical CPU ids run from 0 (the boot CPU) in bring-up order; the arch layer keeps them
//! in a per-CPU register (TPIDR_EL1 on aarch64) behind [`hinoki_interface::Cpu::current_id`].
//! A secondary CPU takes interrupts (its tick, IPIs) and call-function requests
//! ([`crate::irq::call_function_single`]) from the moment it reports itself; once the boot
//! CPU has started the scheduler (`sched::init`), the secondary turns its boot context into
//! its idle task `swapper/N` ([`crate::sched::init_secondary`]), starts its `ksoftirqd/N`
//! (pinned to it) and enters the idle loop, which halts with interrupts enabled and wakes
//! on the tick or the reschedule IPI. From then on the scheduler places, wakes, balances
//! and migrates tasks over every CPU (see `sched::core`).

use core::sync::atomic::{AtomicU32, Ordering};

use crate::irq::{self, MAX_CPUS};
use crate::mm::AllocFlags;

/// Bytes of stack each secondary CPU gets.
pub const SECONDARY_STACK_SIZE: usize = 64 * 1024;

/// How long the boot CPU waits for a started CPU to report itself.
pub const START_TIMEOUT_NANOSECONDS: u64 = 1_000_000_000;

/// Bit `n` set: CPU `n` finished bring-up (the boot CPU once [`init`] ran).
static READY: AtomicU32 = AtomicU32::new(0);

/// The CPUs that finished bring-up, as a bit mask.
pub fn ready_mask() -> u32 {
    READY.load(Ordering::Acquire)
}

/// How many CPUs finished bring-up.
pub fn ready_count() -> u32 {
    ready_mask().count_ones()
}

/// Starts every secondary CPU the platform describes, one after the other, waiting for
/// each to report itself. Called once by `kernel_main` on the boot CPU, after memory
/// management and the IRQ layer are up.
pub fn init() {
    let platform = crate::platform();
    READY.fetch_or(1, Ordering::AcqRel);
    let possible = platform.possible_cpus().min(MAX_CPUS as u32);
    for cpu in 1..possible {
        let stack = match crate::mm::kmalloc(SECONDARY_STACK_SIZE, AllocFlags::ZERO) {
            Ok(stack) => stack,
            Err(error) => {
                log::error!("smp: no stack for CPU{}: {:?}", cpu, error);
                break;
            }
        };
        let stack_top = (stack.as_ptr() as usize + SECONDARY_STACK_SIZE) & !0xf;
        if let Err(error) = platform.start_cpu(cpu, stack_top, secondary_main) {
            log::error!("smp: cannot start CPU{}: {:?}", cpu, error);
            let _ = crate::mm::kfree(stack);
            continue;
        }
        let started = crate::time::since_boot_nanoseconds();
        while ready_mask() & (1 << cpu) == 0 {
            if crate::time::since_boot_nanoseconds() - started > START_TIMEOUT_NANOSECONDS {
                log::error!("smp: CPU{} did not come up within {} ms", cpu, START_TIMEOUT_NANOSECONDS / 1_000_000);
                break;
            }
            platform.cpu().relax();
        }
    }
    if possible > 1 {
        log::info!("smp: {} of {} CPUs up", ready_count(), possible);
    }
    if let Err(error) = crate::fs::procfs::register("cpuinfo", show_cpuinfo) {
        log::warn!("smp: cannot register /proc/cpuinfo: {:?}", error);
    }
}

/// `/proc/cpuinfo`: the platform's description of every online CPU, in Linux's format for
/// the architecture.
fn show_cpuinfo(out: &mut dyn core::fmt::Write) -> core::fmt::Result {
    crate::platform().write_cpuinfo(out)
}

/// A secondary CPU's kernel entry (the [`hinoki_interface::SecondaryEntry`] the boot CPU
/// hands the platform).
fn secondary_main(cpu: u32) -> ! {
    let platform = crate::platform();
    irq::init_cpu();
    crate::tick::start_cpu();
    log::info!("smp: CPU{} up: {}", cpu, platform.cpu().model());
    READY.fetch_or(1 << cpu, Ordering::AcqRel);
    platform.cpu().enable_interrupts();
    // Interrupts only (tick, IPIs) until the boot CPU has started the scheduler; the tick
    // wakes this loop to look again.
    loop {
        let state = platform.cpu().disable_interrupts();
        if crate::sched::init_secondary() {
            platform.cpu().restore_interrupts(state);
            break;
        }
        platform.cpu().idle();
        platform.cpu().restore_interrupts(state);
    }
    // This CPU's softirq thread, pinned here, then the idle task's loop.
    crate::softirq::init();
    crate::sched::idle_loop()
}

fn cpu_identity(argument: usize) -> usize {
    (crate::irq::current_cpu() << 16) | argument
}

crate::ktest!(
    fn every_described_cpu_is_up() {
        let platform = crate::platform();
        let possible = platform.possible_cpus().min(MAX_CPUS as u32);
        crate::kassert_eq!(ready_count(), possible);
        crate::kassert_eq!(platform.cpu().online_count(), possible);
        Ok(())
    }
);

crate::ktest!(
    fn cpuinfo_lists_every_online_cpu() {
        let mut text = alloc::string::String::new();
        crate::kassert!(show_cpuinfo(&mut text).is_ok());
        let processors: alloc::vec::Vec<&str> = text.lines().filter(|line| line.starts_with("processor")).collect();
        crate::kassert_eq!(processors.len() as u32, ready_count());
        for (index, line) in processors.iter().enumerate() {
            crate::kassert_eq!(line.rsplit(':').next().map(str::trim), Some(alloc::format!("{}", index).as_str()));
        }
        Ok(())
    }
);

crate::ktest!(
    fn call_function_returns_from_each_cpu() {
        let platform = crate::platform();
        if platform.interrupt_controller().is_none() || ready_count() < 2 {
            log::info!("smp: one CPU or no interrupt controller; nothing to test");
            return Ok(());
        }
        for cpu in 0..MAX_CPUS as u32 {
            if ready_mask() & (1 << cpu) == 0 {
                continue;
            }
            let result = irq::call_function_single(cpu, cpu_identity, 0x2a);
            crate::kassert_eq!(result, Ok(((cpu as usize) << 16) | 0x2a));
        }
        Ok(())
    }
);

crate::ktest!(
    fn tick_runs_on_every_cpu() {
        let platform = crate::platform();
        let Some(event) = platform.clock_event().filter(|_| platform.interrupt_controller().is_some()) else {
            log::info!("smp: no clock-event device or interrupt controller; nothing to test");
            return Ok(());
        };
        let mask = ready_mask();
        let before: [u64; MAX_CPUS] = core::array::from_fn(|cpu| irq::count(event.irq(), cpu));
        let started = crate::time::since_boot_nanoseconds();
        let all_ticked = |before: &[u64; MAX_CPUS]| {
            (0..MAX_CPUS).filter(|cpu| mask & (1 << cpu) != 0).all(|cpu| irq::count(event.irq(), cpu) > before[cpu])
        };
        while !all_ticked(&before) && crate::time::since_boot_nanoseconds() - started < 20 * crate::tick::TICK_NANOSECONDS {
            platform.cpu().relax();
        }
        for cpu in (0..MAX_CPUS).filter(|cpu| mask & (1 << cpu) != 0) {
            let after = irq::count(event.irq(), cpu);
            crate::kassert!(after > before[cpu], "CPU{}'s timer count stayed at {}", cpu, after);
        }
        Ok(())
    }
);
