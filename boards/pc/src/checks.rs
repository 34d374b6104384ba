//! In-kernel tests (ktest) of what only the booted PC can show: TSC calibration, descriptor tables, ACPI, the memory map and the command line.

use hinoki_arch_x86_64::{descriptor, exception, layout, tsc};
use hinoki_interface::{Clock, MemoryKind, Platform};
use hinoki_kernel::{kassert, kassert_eq, ktest};

fn board() -> &'static crate::Pc {
    crate::BOARD.get().expect("ktests run after the board is up")
}

ktest!(
    fn tsc_frequency_is_calibrated_and_monotonic() {
        let clock = &board().clock;
        let frequency = clock.frequency_hz();
        kassert!((10_000_000..=50_000_000_000).contains(&frequency), "TSC frequency {} Hz out of bounds", frequency);
        let mut previous = clock.counter();
        for _ in 0..10_000 {
            let now = clock.counter();
            kassert!(now >= previous, "TSC went backwards: {} then {}", previous, now);
            previous = now;
        }
        Ok(())
    }
);

ktest!(
    fn tsc_agrees_with_the_hpet() {
        let Some(base) = board().acpi().and_then(|acpi| acpi.hpet) else {
            return Ok(());
        };
        // Measure 10 ms of TSC time against the HPET main counter again; the calibrated
        // frequency must predict it within 10 %. Under TCG on a busy host the vCPU can be
        // descheduled between the two clocks' reads, so a single window can disagree through
        // no fault of the calibration: the best of five windows must agree.
        let read = |offset: usize| {
            // SAFETY: `base` is the HPET from the ACPI table, identity-mapped; these reads
            // (capabilities, main counter) have no side effects.
            unsafe { core::ptr::read_volatile((base + offset) as *const u64) }
        };
        let period_femtoseconds = read(0) >> 32;
        kassert!(period_femtoseconds > 0 && period_femtoseconds <= 100_000_000, "HPET period {} fs is out of spec", period_femtoseconds);
        let wanted = 10_000_000_000_000 / period_femtoseconds;
        let mut best = (u64::MAX, 0, 0);
        for _ in 0..5 {
            let hpet_start = read(0xf0);
            let tsc_start = board().clock.nanoseconds();
            while read(0xf0).wrapping_sub(hpet_start) < wanted {
                core::hint::spin_loop();
            }
            let tsc_nanoseconds = board().clock.nanoseconds() - tsc_start;
            let hpet_nanoseconds = (read(0xf0).wrapping_sub(hpet_start) as u128 * period_femtoseconds as u128 / 1_000_000) as u64;
            let difference = tsc_nanoseconds.abs_diff(hpet_nanoseconds);
            if difference < best.0 {
                best = (difference, tsc_nanoseconds, hpet_nanoseconds);
            }
        }
        let (difference, tsc_nanoseconds, hpet_nanoseconds) = best;
        kassert!(
            difference * 10 <= hpet_nanoseconds,
            "best of 5 windows: TSC measured {} ns, HPET {} ns",
            tsc_nanoseconds,
            hpet_nanoseconds
        );
        kassert!(tsc::read() > 0);
        Ok(())
    }
);

ktest!(
    fn descriptor_tables_cover_every_exception() {
        let (_, limit) = descriptor::current_interrupt_table();
        kassert_eq!(limit as usize, descriptor::GATE_COUNT * 16 - 1);
        for vector in 0..exception::EXCEPTION_COUNT {
            let gate = descriptor::gate(vector).unwrap();
            kassert!(gate.is_present(), "vector {} has no gate", vector);
            kassert_eq!(gate.handler(), exception::stub_address(vector));
            kassert!(layout::text().contains(&gate.handler()));
        }
        kassert_eq!(descriptor::current_task_register(), descriptor::TASK_STATE_SELECTOR);
        Ok(())
    }
);

ktest!(
    fn acpi_tables_describe_the_machine() {
        let Some(acpi) = board().acpi() else {
            kassert!(false, "no ACPI tables found");
            return Ok(());
        };
        kassert!(acpi.processors.count >= 1, "MADT lists no processors");
        kassert!(acpi.processors.as_slice().iter().any(|processor| processor.usable));
        kassert!(acpi.io_apics.count >= 1, "MADT lists no I/O APIC");
        kassert!(acpi.pm1a_control.is_some(), "FADT has no PM1a control block");
        Ok(())
    }
);

ktest!(
    fn memory_map_excludes_the_kernel_and_low_memory() {
        let image = layout::image_start() as u64..layout::kernel_end() as u64;
        let mut usable_bytes = 0u64;
        let mut overlaps = 0;
        let mut kernel_reported = false;
        board().memory_regions(&mut |region| match region.kind {
            MemoryKind::Usable => {
                usable_bytes += region.size;
                if region.start.0 < image.end && region.end() > image.start || region.start.0 < crate::memory_map::LOW_MEMORY_SIZE {
                    overlaps += 1;
                }
            }
            MemoryKind::KernelImage => kernel_reported = region.start.0 == image.start && region.end() == image.end,
            _ => {}
        });
        kassert!(usable_bytes >= 16 * 1024 * 1024, "only {} bytes usable", usable_bytes);
        kassert_eq!(overlaps, 0);
        kassert!(kernel_reported, "kernel image not reported as such");
        Ok(())
    }
);

ktest!(
    fn command_line_round_trips() {
        let command_line = board().command_line();
        kassert!(
            command_line.split_ascii_whitespace().any(|word| word == "ktest" || word.starts_with("ktest=")),
            "command line {:?} lacks ktest",
            command_line
        );
        kassert_eq!(command_line, hinoki_kernel::platform().command_line());
        Ok(())
    }
);
