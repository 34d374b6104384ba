//! Hinoki's aarch64 layer: boot entry, exceptions, CPU operations, the MMU, the generic timer, the GICv3 CPU-interface registers, PSCI and semihosting.
//!
//! Boards link this crate and name their Rust entry with [`entry_point!`]; the assembly in
//! [`boot`] runs first, drops to EL1, clears BSS, sets the stack and calls it.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(not(target_arch = "aarch64"))]
compile_error!("hinoki-arch-aarch64 builds only for aarch64 targets");

pub mod benchmarks;
pub mod boot;
pub mod context;
pub mod cpu;
pub mod exception;
pub mod generic_timer;
pub mod gic_cpu_interface;
pub mod mmu;
pub mod psci;
pub mod semihosting;
pub mod smp;

pub use cpu::Aarch64Cpu;
pub use generic_timer::{GenericTimerCounter, GenericTimerEvent};

/// Names the board's Rust entry function, called on the boot CPU at EL1 with the boot
/// loader's `x0` (the DTB address on QEMU `virt`, 0x100 on the Raspberry Pi firmware path).
///
/// ```ignore
/// hinoki_arch_aarch64::entry_point!(board_main);
/// fn board_main(x0: usize) -> ! { ... }
/// ```
#[macro_export]
macro_rules! entry_point {
    ($function:path) => {
        #[no_mangle]
        extern "C" fn hinoki_board_entry(boot_argument: usize) -> ! {
            let entry: fn(usize) -> ! = $function;
            entry(boot_argument)
        }
    };
}

/// Linker-script symbols shared by every aarch64 board.
pub mod layout {
    extern "C" {
        static __image_start: u8;
        static __text_start: u8;
        static __text_end: u8;
        static __kernel_end: u8;
    }

    fn address_of(symbol: *const u8) -> usize {
        symbol as usize
    }

    /// First byte of the loaded image.
    pub fn image_start() -> usize {
        address_of(core::ptr::addr_of!(__image_start))
    }

    /// The kernel's executable text.
    pub fn text() -> core::ops::Range<usize> {
        address_of(core::ptr::addr_of!(__text_start))..address_of(core::ptr::addr_of!(__text_end))
    }

    /// One past the last byte the kernel uses (image, BSS and boot stacks).
    pub fn kernel_end() -> usize {
        address_of(core::ptr::addr_of!(__kernel_end))
    }
}
