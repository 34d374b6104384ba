//! Machine-level power control that needs no firmware tables: legacy resets, triple fault and halting.

use core::arch::asm;

use crate::port;

/// Resets through the PCI reset control register (0xCF9): system reset, full reset bit.
pub fn reset_through_pci_control() {
    // SAFETY: 0xCF9 is the reset control register on PC chipsets; writing it resets or is ignored.
    unsafe {
        port::write_u8(0xcf9, 0x02);
        port::write_u8(0xcf9, 0x06);
    }
}

/// Resets by pulsing the CPU reset line through the keyboard controller (command 0xFE).
pub fn reset_through_keyboard_controller() {
    for _ in 0..100_000 {
        // SAFETY: 0x64 is the 8042 status port; bit 1 says the input buffer is full.
        if unsafe { port::read_u8(0x64) } & 0x02 == 0 {
            break;
        }
        core::hint::spin_loop();
    }
    // SAFETY: command 0xFE to the 8042 pulses the reset line; nothing else uses the controller.
    unsafe { port::write_u8(0x64, 0xfe) };
}

/// Resets by triple-faulting: an empty IDT makes the breakpoint unreportable.
pub fn reset_through_triple_fault() -> ! {
    let empty = [0u16; 5];
    // SAFETY: loading a zero-limit IDT and raising an exception is the intended shutdown
    // path here; the CPU resets and nothing after it runs.
    unsafe { asm!("lidt [{}]", "int3", in(reg) &empty, options(noreturn)) }
}

/// Stops this CPU for good: interrupts off, halt in a loop.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: CLI/HLT only stop this CPU.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) };
    }
}
