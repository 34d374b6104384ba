//! Hinoki's x86_64 layer: PVH and multiboot2 entry, the long-mode trampoline, GDT/TSS/IDT with 256 entry stubs, per-CPU data, the 8259 remap, local APIC access, the kernel's page tables, HPET and TSC clocks, the application-processor trampoline, port I/O.
//!
//! Boards link this crate and name their Rust entry with [`entry_point!`]; the assembly in
//! [`boot`] runs first (32-bit protected mode to long mode, stack, BSS, SSE), then the
//! macro's function installs the GDT, TSS and IDT and calls the board.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(not(target_arch = "x86_64"))]
compile_error!("hinoki-arch-x86_64 builds only for x86_64 targets");

pub mod apic;
pub mod boot;
pub mod context;
pub mod cpu;
pub mod cpuinfo;
pub mod descriptor;
pub mod exception;
pub mod hpet;
pub mod mmu;
pub mod msr;
pub mod paging;
pub mod percpu;
pub mod pic;
pub mod port;
pub mod power;
pub mod smp;
pub mod tsc;

pub use boot::BootProtocol;
pub use cpu::X86Cpu;
pub use hpet::Hpet;
pub use tsc::Tsc;

/// Names the board's Rust entry function, called on the boot CPU in long mode with the
/// boot protocol that started the kernel (PVH `hvm_start_info` or multiboot2 information).
/// Before the board runs, the GDT with its TSS, the IDT, the remapped and masked legacy PICs
/// and CPU 0's per-CPU block are set up, so every CPU exception is reported instead of
/// triple-faulting.
///
/// ```ignore
/// hinoki_arch_x86_64::entry_point!(board_main);
/// fn board_main(protocol: hinoki_arch_x86_64::BootProtocol) -> ! { ... }
/// ```
#[macro_export]
macro_rules! entry_point {
    ($function:path) => {
        #[no_mangle]
        extern "C" fn hinoki_board_entry(boot_magic: u32, boot_information: usize) -> ! {
            let entry: fn($crate::BootProtocol) -> ! = $function;
            $crate::descriptor::initialize_boot_cpu();
            entry($crate::BootProtocol::from_registers(boot_magic, boot_information))
        }
    };
}

/// Linker-script symbols shared by every x86_64 board.
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

    /// One past the last byte the kernel uses (image, BSS, boot page tables and stacks).
    pub fn kernel_end() -> usize {
        address_of(core::ptr::addr_of!(__kernel_end))
    }
}
