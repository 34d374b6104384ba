//! In-kernel tests of the Raspberry Pi wiring: boot information, memory map, UART pins, the console and the counter, checked on the running machine.

use bcm2835_gpio::{Function, Gpio, Pull, PullInterface};
use hinoki_interface::MemoryKind;
use hinoki_kernel::ktest::TestFailure;
use hinoki_kernel::{kassert, kassert_eq, ktest};

use crate::boot_information::{BootSource, ConsoleChoice};
use crate::interrupts::InterruptWiring;
use crate::platform::{FACTS, RECEIVE_PIN, TRANSMIT_PIN};

fn no_board() -> TestFailure {
    TestFailure::new(file!(), line!(), format_args!("no Raspberry Pi board registered"))
}

fn overlaps(start: u64, end: u64, other: (u64, u64)) -> bool {
    start < other.1 && other.0 < end
}

ktest!(
    fn command_line_from_the_boot_loader() {
        let Some(facts) = FACTS.get().copied() else { return Err(no_board()) };
        kassert!(facts.source != BootSource::Nothing, "x0 pointed at neither ATAGs nor a DTB");
        // This test runs only when the command line asked for ktests, so the word must be there.
        let command_line = hinoki_kernel::platform().command_line();
        kassert!(
            command_line.split_ascii_whitespace().any(|word| word == "ktest" || word.starts_with("ktest=")),
            "command line '{}' lacks the ktest word that selected this run",
            command_line
        );
        Ok(())
    }
);

ktest!(
    fn memory_map_covers_ram_and_excludes_the_kernel() {
        let Some(facts) = FACTS.get().copied() else { return Err(no_board()) };
        let (image_start, image_end) = facts.kernel_image;
        let mut usable = 0u64;
        let mut above_kernel = false;
        let mut image_reported = false;
        let mut problem = None;
        hinoki_kernel::platform().memory_regions(&mut |region| {
            let (start, end) = (region.start.0, region.end());
            match region.kind {
                MemoryKind::Usable => {
                    usable += region.size;
                    above_kernel |= start >= image_end;
                    if overlaps(start, end, (image_start, image_end)) {
                        problem = Some(("usable RAM overlaps the kernel image", start));
                    } else if overlaps(start, end, facts.peripherals) {
                        problem = Some(("usable RAM overlaps the peripherals", start));
                    } else if start < facts.low_reserved_size {
                        problem = Some(("usable RAM includes the firmware's low page", start));
                    } else if start % 4096 != 0 || end % 4096 != 0 {
                        problem = Some(("usable RAM not page aligned", start));
                    }
                }
                MemoryKind::KernelImage => image_reported |= start == image_start && end == image_end,
                _ => {}
            }
        });
        if let Some((message, address)) = problem {
            kassert!(false, "{} at {:#x}", message, address);
        }
        kassert!(image_reported, "the kernel image [{:#x}, {:#x}) is not reported", image_start, image_end);
        kassert!(above_kernel, "no usable RAM above the kernel");
        kassert!(usable >= 256 << 20, "only {} KiB usable", usable / 1024);
        Ok(())
    }
);

ktest!(
    fn uart_pins_select_the_console_uart() {
        let Some(facts) = FACTS.get().copied() else { return Err(no_board()) };
        // SAFETY: the board built its GPIO driver on this same base; reads have no side effects.
        let gpio = unsafe { Gpio::new(facts.gpio, facts.pull_interface) };
        let expected = match facts.console {
            ConsoleChoice::Pl011 => Function::Alternate0,
            ConsoleChoice::MiniUart => Function::Alternate5,
        };
        kassert_eq!(gpio.function(TRANSMIT_PIN), Ok(expected));
        kassert_eq!(gpio.function(RECEIVE_PIN), Ok(expected));
        if facts.pull_interface == PullInterface::Direct {
            kassert_eq!(gpio.pull(TRANSMIT_PIN), Ok(Some(Pull::None)));
            kassert_eq!(gpio.pull(RECEIVE_PIN), Ok(Some(Pull::Up)));
        }
        Ok(())
    }
);

ktest!(
    fn console_is_the_chosen_uart() {
        let Some(facts) = FACTS.get().copied() else { return Err(no_board()) };
        let expected = match facts.console {
            ConsoleChoice::Pl011 => "pl011",
            ConsoleChoice::MiniUart => "bcm2835-aux-uart",
        };
        kassert_eq!(hinoki_kernel::platform().console().name(), expected);
        Ok(())
    }
);

ktest!(
    fn counter_frequency_set_and_counter_advances() {
        let clock = hinoki_kernel::platform().clock();
        let frequency = clock.frequency_hz();
        kassert!((1_000_000..=1_000_000_000).contains(&frequency), "implausible counter frequency {} Hz", frequency);
        let mut previous = clock.counter();
        let first = previous;
        for _ in 0..100_000 {
            let now = clock.counter();
            kassert!(now >= previous, "counter went back from {} to {}", previous, now);
            previous = now;
        }
        kassert!(previous > first, "counter stuck at {}", first);
        Ok(())
    }
);

ktest!(
    fn timer_and_console_interrupts_are_wired_as_the_model_says() {
        let Some(facts) = FACTS.get().copied() else { return Err(no_board()) };
        let Some(wiring) = facts.interrupts else {
            log::info!("raspi: no interrupt controller on this model; nothing to test");
            return Ok(());
        };
        let platform = hinoki_kernel::platform();
        let Some(controller) = platform.interrupt_controller() else {
            kassert!(false, "the model has an interrupt controller but none is up");
            return Ok(());
        };
        let (timer, _) = wiring.timer();
        let (console, _) = wiring.console(facts.console == ConsoleChoice::MiniUart);
        kassert_eq!(platform.clock_event().map(|event| event.irq()), Some(timer));
        let Some(tick) = hinoki_kernel::irq::descriptor(timer) else {
            kassert!(false, "the tick's interrupt {} is not requested", timer);
            return Ok(());
        };
        kassert!(
            tick.per_cpu && tick.enabled && tick.name == "arch_timer",
            "tick descriptor {:?}",
            (tick.name, tick.per_cpu, tick.enabled)
        );
        let Some(uart) = hinoki_kernel::irq::descriptor(console) else {
            kassert!(false, "the console's receive interrupt {} is not requested", console);
            return Ok(());
        };
        kassert!(uart.enabled && !uart.per_cpu, "console descriptor {:?}", (uart.name, uart.per_cpu, uart.enabled));
        // /proc/interrupts names each line as Linux does on this SoC.
        let (timer_line, console_line) = match wiring {
            InterruptWiring::Gic400 { .. } => (("GICv2", 30), ("GICv2", console)),
            InterruptWiring::Bcm2836 { .. } => (("bcm2836-timer", 1), ("ARMCTRL-level", console - 32)),
        };
        kassert_eq!((controller.chip_name(timer), controller.hardware_irq(timer)), timer_line);
        kassert_eq!((controller.chip_name(console), controller.hardware_irq(console)), console_line);
        if facts.console == ConsoleChoice::Pl011 {
            // The PL011 is VideoCore interrupt 57: GIC SPI 121 on the Pi 4, ARMCTRL 89 on the Pi 3.
            kassert!(console_line.1 == 153 || console_line.1 == 89, "PL011 on hardware interrupt {}", console_line.1);
        }
        Ok(())
    }
);
