//! In-kernel tests of the pc interrupt and SMP wiring (APIC mode, 8259 masking, I/O APIC rows, the tick on every CPU, IPIs and call-function, TLB shootdowns, CPU count, `int3` round trips) and manual benchmarks (exception round trip, IRQ latency, IPI round trip, timer jitter).

use core::sync::atomic::{AtomicU64, Ordering};

use apic::timer::TimerKind;
use apic::vector::LOCAL_TIMER_VECTOR;
use hinoki_arch_x86_64::exception::{self, TrapFrame};
use hinoki_arch_x86_64::{apic as local_apic, paging, percpu, pic, tsc};
use hinoki_interface::{Clock, Cpu, InterruptController, IpiTarget, Platform, VirtualAddress};
use hinoki_kernel::irq::{self, Ipi};
use hinoki_kernel::mm::paging::kernel_map::KERNEL_DATA;
use hinoki_kernel::mm::{self, AllocFlags};
use hinoki_kernel::{kassert, kassert_eq, ktest};

use crate::{interrupts, smp};

fn board() -> &'static crate::Pc {
    crate::BOARD.get().expect("ktests run after the board is up")
}

/// A fixed buffer `procfs::read` prints into.
struct Buffer {
    bytes: [u8; 8192],
    length: usize,
}

impl core::fmt::Write for Buffer {
    fn write_str(&mut self, text: &str) -> core::fmt::Result {
        let end = self.length + text.len();
        self.bytes.get_mut(self.length..end).ok_or(core::fmt::Error)?.copy_from_slice(text.as_bytes());
        self.length = end;
        Ok(())
    }
}

ktest!(
    fn cpu_count_matches_the_madt() {
        let acpi = board().acpi().expect("ACPI tables");
        let usable = acpi.processors.as_slice().iter().filter(|processor| processor.usable).count().min(percpu::MAX_CPUS);
        let online = board().cpu.online_count();
        kassert_eq!(online as usize, usable);
        let controller = interrupts::controller().expect("APICs are up");
        let mut apic_ids = [u32::MAX; percpu::MAX_CPUS];
        for cpu in 0..online {
            let block = percpu::block(cpu).expect("a per-CPU block per online CPU");
            kassert_eq!(block.cpu_id(), cpu);
            let apic_id = controller.apic_id_of(cpu);
            kassert!(apic_id.is_ok(), "CPU {} has no APIC ID recorded", cpu);
            let apic_id = apic_id.unwrap_or(0);
            kassert!(!apic_ids.contains(&apic_id), "APIC ID {} used twice", apic_id);
            apic_ids[cpu as usize] = apic_id;
        }
        kassert_eq!(board().cpu.current_id().0, percpu::this_cpu().cpu_id());
        log::info!("smp: {} CPUs online, APIC IDs {:?}", online, &apic_ids[..online as usize]);
        Ok(())
    }
);

ktest!(
    fn apic_mode_pic_masks_and_uncached_registers() {
        let x2apic_allowed = !board().command_line().split_ascii_whitespace().any(|word| word == "nox2apic");
        let expected_x2apic = x2apic_allowed && local_apic::has_x2apic();
        kassert_eq!(local_apic::mode() == local_apic::Mode::X2Apic, expected_x2apic);
        kassert_eq!(local_apic::apic_id(), percpu::this_cpu().apic_id());
        kassert_eq!(pic::masks(), (0xff, 0xff));
        let acpi = board().acpi().expect("ACPI tables");
        for io_apic in acpi.io_apics.as_slice() {
            kassert_eq!(paging::is_mapped_uncached(io_apic.address as u64), Ok(true));
        }
        kassert_eq!(paging::is_mapped_uncached(acpi.local_apic_address as u64), Ok(true));
        kassert_eq!(paging::is_mapped_uncached(0x10_0000), Ok(false));
        Ok(())
    }
);

ktest!(
    fn proc_interrupts_shows_linux_x86_rows() {
        let mut buffer = Buffer { bytes: [0; 8192], length: 0 };
        kassert!(hinoki_kernel::fs::procfs::read("/proc/interrupts", &mut buffer).is_ok());
        let text = core::str::from_utf8(&buffer.bytes[..buffer.length]).unwrap_or("");
        let has_row =
            |label: &str, tail: &str| text.lines().any(|line| line.trim_start().starts_with(label) && line.trim_end().ends_with(tail));
        kassert!(
            text.lines().any(|line| line.trim_start().starts_with("4:") && line.contains("IO-APIC   4-edge      ttyS0")),
            "no COM1 row in\n{}",
            text
        );
        kassert!(has_row("LOC:", "Local timer interrupts"), "no LOC row in\n{}", text);
        kassert!(has_row("SPU:", "Spurious interrupts"));
        kassert!(has_row("RES:", "Rescheduling interrupts"));
        kassert!(has_row("CAL:", "Function call interrupts"));
        kassert!(has_row("TLB:", "TLB shootdowns"));
        kassert!(text.lines().any(|line| line.trim_start().starts_with("ERR:")));
        let local_rows = text
            .lines()
            .filter_map(|line| line.split_once(':'))
            .filter_map(|(label, _)| label.trim().parse::<u32>().ok())
            .filter(|&number| number >= apic::vector::IPI_VECTOR_BASE as u32)
            .count();
        kassert_eq!(local_rows, 0);
        let columns = text.lines().next().map_or(0, |header| header.split_ascii_whitespace().count());
        kassert_eq!(columns, board().cpu.online_count() as usize);
        Ok(())
    }
);

ktest!(
    fn periodic_tick_runs_on_every_cpu() {
        // Every CPU must take at least two more local-timer interrupts; a loaded host can
        // deschedule a vCPU for several periods (the tick then counts the missed periods in one
        // interrupt), so the window is a generous 100 periods.
        let online = board().cpu.online_count() as usize;
        let before: [u64; percpu::MAX_CPUS] = core::array::from_fn(|cpu| irq::count(LOCAL_TIMER_VECTOR as u32, cpu));
        let ticked = |cpu: usize| irq::count(LOCAL_TIMER_VECTOR as u32, cpu) >= before[cpu] + 2;
        let clock = board().clock();
        let start = clock.nanoseconds();
        while !(0..online).all(ticked) && clock.nanoseconds() - start < 100 * hinoki_kernel::tick::TICK_NANOSECONDS {
            board().cpu.relax();
        }
        for (cpu, &count) in before.iter().enumerate().take(online) {
            let after = irq::count(LOCAL_TIMER_VECTOR as u32, cpu);
            kassert!(
                after >= count + 2,
                "CPU {} took {} timer interrupts in {} ms",
                cpu,
                after - count,
                100 * hinoki_kernel::tick::TICK_NANOSECONDS / 1_000_000
            );
        }
        Ok(())
    }
);

fn identify(argument: usize) -> usize {
    board().cpu.current_id().0 as usize * 1000 + argument
}

ktest!(
    fn ipis_reach_each_cpu_and_call_function_returns_its_result() {
        let online = board().cpu.online_count();
        for cpu in 0..online {
            let calls = irq::ipi_count(Ipi::CallFunction, cpu as usize);
            let result = irq::call_function_single(cpu, identify, 7);
            kassert_eq!(result, Ok(cpu as usize * 1000 + 7));
            kassert_eq!(irq::ipi_count(Ipi::CallFunction, cpu as usize), calls + 1);
            let reschedules = irq::ipi_count(Ipi::Reschedule, cpu as usize);
            kassert_eq!(irq::send_ipi(IpiTarget::Cpu(cpu), Ipi::Reschedule), Ok(()));
            let clock = board().clock();
            let start = clock.nanoseconds();
            while irq::ipi_count(Ipi::Reschedule, cpu as usize) == reschedules && clock.nanoseconds() - start < 100_000_000 {
                board().cpu.relax();
            }
            kassert_eq!(irq::ipi_count(Ipi::Reschedule, cpu as usize), reschedules + 1);
        }
        let offline = interrupts::controller().map(|controller| controller.send_ipi(IpiTarget::Cpu(online), 0));
        kassert_eq!(offline, Some(Err(hinoki_interface::IrqError::InvalidCpu(online))));
        Ok(())
    }
);

/// The virtual address whose mapping the TLB test changes: far above RAM, in the kernel's
/// address space.
const TEST_ADDRESS: u64 = 60 << 30;

fn read_test_word(_argument: usize) -> usize {
    // SAFETY: TEST_ADDRESS is mapped (one page) while the TLB test runs; reading it has no
    // side effects.
    unsafe { core::ptr::read_volatile(TEST_ADDRESS as *const u64) as usize }
}

ktest!(
    fn tlb_shootdown_makes_a_changed_mapping_visible_on_every_cpu() {
        let online = board().cpu.online_count();
        let Some(mmu) = hinoki_kernel::platform().mmu() else {
            kassert!(false, "no MMU");
            return Ok(());
        };
        let space = mmu.kernel_space();
        let (Ok(first), Ok(second)) = (mm::alloc_pages(0, AllocFlags::NONE), mm::alloc_pages(0, AllocFlags::NONE)) else {
            kassert!(false, "no pages for the test");
            return Ok(());
        };
        // SAFETY: both pages were just allocated for this test and are identity-mapped.
        unsafe {
            core::ptr::write_volatile(first.0 as *mut u64, 0x1111);
            core::ptr::write_volatile(second.0 as *mut u64, 0x2222);
        }
        let test_page = VirtualAddress(TEST_ADDRESS as usize);
        let mapped = mmu.map(space, test_page, first, 4096, KERNEL_DATA);
        let mut outcome = Ok(());
        for cpu in 0..online {
            if irq::call_function_single(cpu, read_test_word, 0) != Ok(0x1111) {
                outcome = Err(cpu);
            }
        }
        // Every CPU now caches the translation to `first`. Changing the mapping through the MMU
        // shoots it down everywhere (the shootdown this board registered).
        let changed = mmu.unmap(space, test_page, 4096).and_then(|()| mmu.map(space, test_page, second, 4096, KERNEL_DATA));
        let mut seen = [0usize; percpu::MAX_CPUS];
        for cpu in 0..online {
            seen[cpu as usize] = irq::call_function_single(cpu, read_test_word, 0).unwrap_or(0);
        }
        let removed = mmu.unmap(space, test_page, 4096);
        let flushed = smp::flush_tlb_all_cpus(Some(TEST_ADDRESS));
        let _ = mm::free_pages(first, 0);
        let _ = mm::free_pages(second, 0);
        kassert_eq!(mapped, Ok(()));
        kassert_eq!(outcome, Ok(()));
        kassert!(changed.is_ok() && removed.is_ok());
        kassert_eq!(flushed, Ok(online - 1));
        for (cpu, &value) in seen.iter().enumerate().take(online as usize) {
            kassert!(value == 0x2222, "CPU {} still sees {:#x} after the shootdown", cpu, value);
        }
        Ok(())
    }
);

static BREAKPOINTS: AtomicU64 = AtomicU64::new(0);

fn count_breakpoint(_frame: &mut TrapFrame) {
    BREAKPOINTS.fetch_add(1, Ordering::Relaxed);
}

fn breakpoint() {
    // SAFETY: INT3 raises #BP, whose installed handler counts it and returns after it.
    unsafe { core::arch::asm!("int3", options(nomem, nostack)) };
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

/// Median of `values` (sorted in place).
fn median(values: &mut [u64]) -> u64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

ktest!(manual fn benchmark_exception_round_trip() {
    exception::set_breakpoint_handler(count_breakpoint);
    const ROUNDS: u64 = 10_000;
    let mut samples = [0u64; 16];
    for sample in samples.iter_mut() {
        let start = tsc::read();
        for _ in 0..ROUNDS / 16 {
            breakpoint();
        }
        *sample = (tsc::read() - start) / (ROUNDS / 16);
    }
    log::info!("bench: exception entry+exit (int3 to iretq): median {} TSC cycles per round trip", median(&mut samples));
    Ok(())
});

ktest!(manual fn benchmark_irq_latency() {
    let (Some(timer), Some(event)) = (interrupts::timer(), board().clock_event()) else {
        kassert!(false, "no LAPIC timer");
        return Ok(());
    };
    let tsc_hz = board().clock.frequency_hz();
    let cpu = &board().cpu;
    let mut latencies = [0u64; 64];
    for latency in latencies.iter_mut() {
        let state = cpu.disable_interrupts();
        event.stop();
        let armed = tsc::read();
        // 50 µs ahead: in TSC-deadline mode the deadline is exact; in one-shot mode it is
        // where the calibrated count says the interrupt is due.
        let deadline = armed + tsc_hz / 20_000;
        event.set_oneshot(50_000);
        cpu.restore_interrupts(state);
        loop {
            let (entry, vector) = percpu::this_cpu().last_entry();
            if entry > armed && vector == LOCAL_TIMER_VECTOR {
                *latency = entry.saturating_sub(deadline);
                break;
            }
            core::hint::spin_loop();
        }
    }
    hinoki_kernel::tick::start_cpu();
    let mode = match timer.kind() {
        TimerKind::TscDeadline { .. } => "TSC-deadline",
        TimerKind::OneShot { .. } => "one-shot",
    };
    let (best, worst) = (*latencies.iter().min().unwrap_or(&0), *latencies.iter().max().unwrap_or(&0));
    log::info!("bench: IRQ latency ({} LAPIC timer, deadline to dispatcher entry): best {} median {} worst {} TSC cycles", mode, best, median(&mut latencies), worst);
    Ok(())
});

fn nothing(argument: usize) -> usize {
    argument
}

ktest!(manual fn benchmark_ipi_round_trip() {
    let online = board().cpu.online_count();
    for target in [0, 1].into_iter().filter(|&cpu| cpu < online) {
        let mut samples = [0u64; 64];
        for sample in samples.iter_mut() {
            let start = tsc::read();
            let result = irq::call_function_single(target, nothing, 5);
            *sample = tsc::read() - start;
            kassert_eq!(result, Ok(5));
        }
        log::info!("bench: IPI round trip (call-function from CPU {} to CPU {}): median {} TSC cycles", board().cpu.current_id().0, target, median(&mut samples));
    }
    Ok(())
});

ktest!(manual fn benchmark_timer_jitter() {
    const TICKS: usize = 100;
    let tsc_hz = board().clock.frequency_hz();
    let mut entries = [0u64; TICKS + 1];
    let mut last = percpu::this_cpu().last_entry().0;
    let mut index = 0;
    while index <= TICKS {
        let (entry, vector) = percpu::this_cpu().last_entry();
        if entry != last {
            last = entry;
            if vector == LOCAL_TIMER_VECTOR {
                entries[index] = entry;
                index += 1;
            }
        }
        core::hint::spin_loop();
    }
    let period = tsc_hz / hinoki_kernel::tick::HZ;
    let mut deviations = [0u64; TICKS];
    for (deviation, pair) in deviations.iter_mut().zip(entries.windows(2)) {
        *deviation = (pair[1] - pair[0]).abs_diff(period) * 1_000_000_000 / tsc_hz;
    }
    let worst = *deviations.iter().max().unwrap_or(&0);
    let mean = deviations.iter().sum::<u64>() / TICKS as u64;
    log::info!("bench: timer jitter over {} ticks at {} Hz: |interval - period| mean {} ns, median {} ns, worst {} ns", TICKS, hinoki_kernel::tick::HZ, mean, median(&mut deviations), worst);
    Ok(())
});
