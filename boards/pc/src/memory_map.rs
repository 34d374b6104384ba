//! PC memory and I/O map: where the kernel is linked and loaded, and the fixed legacy ports. RAM comes from the boot loader.

/// Link and load address of the kernel: 1 MiB, above the real-mode area and the BIOS.
pub const KERNEL_LOAD_ADDRESS: u64 = 0x10_0000;
/// Size of the boot CPU's stack.
pub const BOOT_STACK_SIZE: u64 = 64 * 1024;
/// The first MiB (real-mode IVT, BIOS data, EBDA, VGA, option ROMs, BIOS): never allocated.
pub const LOW_MEMORY_SIZE: u64 = 0x10_0000;
/// COM1's I/O port base.
pub const COM1_PORT: u16 = 0x3f8;
/// QEMU's isa-debug-exit device (`-device isa-debug-exit,iobase=0xf4,iosize=0x04`).
pub const DEBUG_EXIT_PORT: u16 = 0xf4;
/// PM1a control port of QEMU's ICH9 (q35), used when the FADT cannot be read.
pub const Q35_PM1A_CONTROL_PORT: u16 = 0x604;
/// PM1a control port of QEMU's PIIX4 (pc), used when the FADT cannot be read.
pub const PIIX4_PM1A_CONTROL_PORT: u16 = 0xb004;
/// The chipset's device window below 4 GiB: IOAPIC (0xFEC0_0000), HPET (0xFED0_0000),
/// local APIC (0xFEE0_0000) and the firmware flash, reported as MMIO (mapped uncached).
pub const CHIPSET_MMIO_START: u64 = 0xfec0_0000;
/// One past the chipset's device window.
pub const CHIPSET_MMIO_END: u64 = 0x1_0000_0000;
