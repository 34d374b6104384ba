//! In-kernel tests of the Raspberry Pi wiring: boot information, memory map, UART pins, the console and the counter, checked on the running machine.

use bcm2835_gpio::{Function, Gpio, Pull, PullInterface};
use hinoki_interface::MemoryKind;
use hinoki_kernel::ktest::TestFailure;
use hinoki_kernel::{kassert, kassert_eq, ktest};

use crate::boot_information::{BootSource, ConsoleChoice};
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
