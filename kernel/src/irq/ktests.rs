//! In-kernel tests of the IRQ layer on the booted board: counts in `/proc/interrupts`, refused requests, a self-IPI round trip.

use core::fmt::{self, Write};

use hinoki_interface::Trigger;

use super::{Ipi, RequestError};

/// The platform when it has an interrupt controller and interrupts are enabled; `None`
/// (the test has nothing to check) on boards not wired for interrupts yet.
fn interrupt_platform() -> Option<&'static dyn hinoki_interface::Platform> {
    let platform = crate::try_platform()?;
    if platform.interrupt_controller().is_none() {
        log::info!("irq: no interrupt controller on this board; nothing to test");
        return None;
    }
    Some(platform)
}

/// A fixed buffer `procfs::read` prints into.
struct Buffer {
    bytes: [u8; 4096],
    length: usize,
}

impl Write for Buffer {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let end = self.length + text.len();
        self.bytes.get_mut(self.length..end).ok_or(fmt::Error)?.copy_from_slice(text.as_bytes());
        self.length = end;
        Ok(())
    }
}

/// The count column of `cpu` in the `/proc/interrupts` row of `number`: its numbered row,
/// or the named row the controller shows it in (x86 `LOC:` for the local timer).
fn proc_count(number: u32, cpu: usize) -> Option<u64> {
    let mut buffer = Buffer { bytes: [0; 4096], length: 0 };
    crate::fs::procfs::read("/proc/interrupts", &mut buffer).ok()?;
    let text = core::str::from_utf8(&buffer.bytes[..buffer.length]).ok()?;
    let named = crate::try_platform().and_then(|platform| platform.interrupt_controller()).and_then(|controller| {
        controller.named_rows().iter().find(|row| row.source == hinoki_interface::RowSource::Interrupt(number)).map(|row| row.label)
    });
    text.lines().find_map(|line| {
        let (label, rest) = line.split_once(':')?;
        let matches = match named {
            Some(name) => label.trim() == name,
            None => label.trim().parse::<u32>().ok()? == number,
        };
        if !matches {
            return None;
        }
        rest.split_ascii_whitespace().nth(cpu)?.parse().ok()
    })
}

crate::ktest!(
    fn proc_interrupts_counts_increase() {
        let Some(platform) = interrupt_platform() else { return Ok(()) };
        let Some(event) = platform.clock_event() else { return Ok(()) };
        let cpu = super::current_cpu();
        let before = proc_count(event.irq(), cpu);
        crate::kassert!(before.is_some(), "no row for the timer IRQ {} in /proc/interrupts", event.irq());
        let target = crate::tick::jiffies() + 3;
        let started = crate::time::since_boot_nanoseconds();
        while crate::tick::jiffies() < target && crate::time::since_boot_nanoseconds() - started < 100_000_000 {
            platform.cpu().relax();
        }
        let after = proc_count(event.irq(), cpu).unwrap_or(0);
        let before = before.unwrap_or(0);
        // At least one handler run; a busy host can merge late ticks (jiffies count them).
        crate::kassert!(after > before, "timer count stayed at {} over 3 ticks", before);
        Ok(())
    }
);

fn unused_handler(_irq: u32) {}

crate::ktest!(
    fn invalid_and_duplicate_requests_fail() {
        let Some(platform) = interrupt_platform() else { return Ok(()) };
        let name = "ktest";
        crate::kassert_eq!(
            super::request_irq(super::MAX_IRQ_NUMBER + 5, name, unused_handler, Trigger::LevelHigh),
            Err(RequestError::InvalidIrq(super::MAX_IRQ_NUMBER + 5))
        );
        // 1020-1023 are the GIC's special IDs; numbers past the controller's lines are refused by it.
        crate::kassert_eq!(super::request_irq(1020, name, unused_handler, Trigger::LevelHigh), Err(RequestError::InvalidIrq(1020)));
        crate::kassert!(super::descriptor(1020).is_none(), "a refused request left a descriptor");
        if let Some(event) = platform.clock_event() {
            crate::kassert_eq!(
                super::request_irq(event.irq(), name, unused_handler, Trigger::LevelHigh),
                Err(RequestError::AlreadyRequested(event.irq()))
            );
            crate::kassert_eq!(super::descriptor(event.irq()).map(|descriptor| descriptor.name), Some(event.name()));
        }
        crate::kassert_eq!(super::free_irq(1019), Err(RequestError::NotRequested(1019)));
        crate::kassert_eq!(super::enable_irq(1019), Err(RequestError::NotRequested(1019)));
        Ok(())
    }
);

fn double_plus_one(value: usize) -> usize {
    value * 2 + 1
}

crate::ktest!(
    fn self_ipi_round_trip() {
        let Some(platform) = interrupt_platform() else { return Ok(()) };
        let controller = platform.interrupt_controller().expect("checked above");
        if controller.ipi_interrupt(Ipi::CallFunction as u32).is_none() {
            log::info!("irq: {} has no IPIs; nothing to test", controller.name());
            return Ok(());
        }
        let cpu = super::current_cpu();
        let reschedules = super::ipi_count(Ipi::Reschedule, cpu);
        let calls = super::ipi_count(Ipi::CallFunction, cpu);
        let result = super::call_function_single(cpu as u32, double_plus_one, 20);
        crate::kassert_eq!(result, Ok(41));
        crate::kassert_eq!(super::ipi_count(Ipi::CallFunction, cpu), calls + 1);
        let sent = super::send_ipi(hinoki_interface::IpiTarget::Cpu(cpu as u32), Ipi::Reschedule);
        crate::kassert_eq!(sent, Ok(()));
        let started = crate::time::since_boot_nanoseconds();
        while super::ipi_count(Ipi::Reschedule, cpu) == reschedules && crate::time::since_boot_nanoseconds() - started < 10_000_000 {
            platform.cpu().relax();
        }
        crate::kassert_eq!(super::ipi_count(Ipi::Reschedule, cpu), reschedules + 1);
        Ok(())
    }
);

crate::ktest!(
    fn request_enable_disable_free_round_trip() {
        let Some(platform) = interrupt_platform() else { return Ok(()) };
        // An interrupt only software raises: the last IPI number, which the kernel does not use.
        let Some(number) = platform.interrupt_controller().and_then(|controller| controller.ipi_interrupt(15)) else {
            log::info!("irq: the controller has no IPI 15; nothing to test");
            return Ok(());
        };
        crate::kassert_eq!(super::request_irq(number, "ktest", unused_handler, Trigger::EdgeRising), Ok(()));
        crate::kassert_eq!(super::descriptor(number).map(|descriptor| descriptor.enabled), Some(true));
        crate::kassert_eq!(super::disable_irq(number), Ok(()));
        crate::kassert_eq!(super::descriptor(number).map(|descriptor| descriptor.enabled), Some(false));
        crate::kassert_eq!(super::enable_irq(number), Ok(()));
        crate::kassert_eq!(super::free_irq(number), Ok(()));
        crate::kassert!(super::descriptor(number).is_none(), "freed interrupt still has a descriptor");
        crate::kassert_eq!(super::free_irq(number), Err(RequestError::NotRequested(number)));
        Ok(())
    }
);

/// A test failure reporting `error`.
fn failure(error: impl core::fmt::Debug) -> crate::ktest::TestFailure {
    crate::ktest::TestFailure::new(file!(), line!(), format_args!("{:?}", error))
}

/// CPUs that have entered [`wait_for_every_target`] in the current call.
static ARRIVED: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// Counts itself in and waits (bounded, 1 s) until `expected` CPUs are in: returns the CPU
/// number in the low 16 bits and 1 above them if every target was inside at once.
fn wait_for_every_target(expected: usize) -> usize {
    use core::sync::atomic::Ordering;
    ARRIVED.fetch_add(1, Ordering::AcqRel);
    let started = crate::time::since_boot_nanoseconds();
    while ARRIVED.load(Ordering::Acquire) < expected && crate::time::since_boot_nanoseconds() - started < 1_000_000_000 {
        core::hint::spin_loop();
    }
    let together = usize::from(ARRIVED.load(Ordering::Acquire) >= expected);
    (together << 16) | super::current_cpu()
}

crate::ktest!(
    fn call_function_many_runs_on_every_cpu_in_the_mask_at_once() {
        use core::sync::atomic::Ordering;
        let Some(_platform) = interrupt_platform() else { return Ok(()) };
        let online = crate::smp::ready_mask() as u64;
        let count = online.count_ones() as usize;
        // Every CPU waits inside the function until all are in: only concurrent calls finish
        // together (a serial implementation would see one CPU at a time and time out inside).
        ARRIVED.store(0, Ordering::Release);
        let results = super::call_function_many(crate::sched::CpuMask::ALL, wait_for_every_target, count).map_err(failure)?;
        for cpu in 0..super::MAX_CPUS {
            if online & (1 << cpu) == 0 {
                crate::kassert!(results[cpu].is_none(), "CPU{} is not online but returned {:?}", cpu, results[cpu]);
                continue;
            }
            crate::kassert!(
                results[cpu] == Some((1 << 16) | cpu),
                "CPU{} returned {:?} (expected {:#x}: its number, all CPUs inside together)",
                cpu,
                results[cpu],
                (1 << 16) | cpu
            );
        }
        // A mask without the caller's CPU (pinned there meanwhile): the caller does not run it.
        let pinned = crate::sched::current().expect("thread");
        crate::sched::set_affinity(&pinned, crate::sched::CpuMask::only(crate::sched::this_cpu())).map_err(failure)?;
        let here = super::current_cpu();
        let others = crate::sched::CpuMask(online & !(1 << here));
        ARRIVED.store(0, Ordering::Release);
        let results = super::call_function_many(others, wait_for_every_target, others.0.count_ones() as usize);
        crate::sched::set_affinity(&pinned, crate::sched::CpuMask::ALL).map_err(failure)?;
        let results = results.map_err(failure)?;
        crate::kassert!(results[here].is_none(), "the caller's CPU{} ran a call its mask left out", here);
        for cpu in (0..super::MAX_CPUS).filter(|&cpu| others.contains(cpu)) {
            crate::kassert!(results[cpu] == Some((1 << 16) | cpu), "CPU{} returned {:?}", cpu, results[cpu]);
        }
        Ok(())
    }
);
