//! Raspberry Pi 4 Model B (BCM2711) memory map in low-peripheral mode: kernel load address, peripherals, RAM and clocks. Also read by build.rs for the linker script.

/// RAM starts at 0 on every Pi.
pub const RAM_BASE: u64 = 0;
/// The firmware (and QEMU) load `kernel8.img` here; the arm64 header's text_offset says so too.
pub const KERNEL_TEXT_OFFSET: u64 = 0x8_0000;
/// Link and load address of the kernel.
pub const KERNEL_LOAD_ADDRESS: u64 = RAM_BASE + KERNEL_TEXT_OFFSET;
/// Size of the boot CPU's stack.
pub const BOOT_STACK_SIZE: u64 = 64 * 1024;
/// Low memory holding armstub8 and the spin-table release addresses (0xd8-0xf0); ATAGs
/// start at 0x100.
pub const LOW_RESERVED_SIZE: u64 = 0x1000;

/// Start of the low-peripheral device window (`arm_peri_high=0`, the default).
pub const DEVICE_WINDOW_START: u64 = 0xFC00_0000;
/// One past the last device address (ARM local peripherals and the GIC end at 4 GiB).
pub const DEVICE_WINDOW_END: u64 = 0x1_0000_0000;
/// BCM2711 main peripherals as the ARM sees them in low-peripheral mode (bus 0x7E00_0000).
pub const PERIPHERAL_BASE: u64 = 0xFE00_0000;
/// GIC-400 (GICv2) distributor: the GIC sits at +0x4_0000 in the ARM local peripherals
/// (0xFF80_0000), distributor at +0x1000 (BCM2711 ARM peripherals documentation, the
/// firmware's DTB `interrupt-controller@40041000`, QEMU's bcm2838).
pub const GIC_DISTRIBUTOR: u64 = 0xFF84_1000;
/// GIC-400 CPU interface (GICC), +0x2000 in the GIC block.
pub const GIC_CPU_INTERFACE: u64 = 0xFF84_2000;
/// The EL1 non-secure physical timer's PPI 14, as an INTID (the DTB's
/// `<GIC_PPI 14 IRQ_TYPE_LEVEL_LOW>`).
pub const TIMER_INTERRUPT: u32 = 16 + 14;
/// First GIC SPI, as an INTID.
const FIRST_SPI: u32 = 32;
/// PL011 UART0: VideoCore interrupt 57, GIC SPI 121 (the DTB's `<GIC_SPI 121 ...>`).
pub const UART0_INTERRUPT: u32 = FIRST_SPI + 121;
/// AUX block (mini-UART): VideoCore interrupt 29, GIC SPI 93.
pub const AUX_INTERRUPT: u32 = FIRST_SPI + 93;
/// Cortex-A72 cores.
pub const CPU_COUNT: u32 = 4;
/// PM block: watchdog, reset control and status.
pub const POWER_MANAGEMENT: u64 = PERIPHERAL_BASE + 0x10_0000;
/// GPIO block.
pub const GPIO: u64 = PERIPHERAL_BASE + 0x20_0000;
/// PL011 UART0 (QEMU's first -serial).
pub const UART0: u64 = PERIPHERAL_BASE + 0x20_1000;
/// AUX block; the mini-UART (QEMU's second -serial) is at +0x40.
pub const AUX: u64 = PERIPHERAL_BASE + 0x21_5000;

/// QEMU's raspi4b has 2 GiB (real boards 1-8 GiB): the first GiB minus the GPU split, then
/// from 1 GiB up. The real layout comes from the firmware's DTB `/memory` node or ATAG_MEM
/// (or the mailbox), which the board reads when present; QEMU's ATAG_MEM reports only the
/// low 0x3C00_0000 bytes. These constants are only the fallback.
pub const RAM_SIZE: u64 = 2 << 30;
/// The GPU split assumed by the fallback.
pub const VIDEOCORE_MEMORY_SIZE: u64 = 64 << 20;

/// PL011 reference clock: `init_uart_clock=48000000` in config.txt fixes it.
pub const UART_CLOCK_HZ: u32 = 48_000_000;
/// Core clock feeding the mini-UART: 500 MHz once `enable_uart=1` pins core_freq.
pub const CORE_CLOCK_HZ: u32 = 500_000_000;
/// Generic-timer frequency used only if CNTFRQ_EL0 reads 0: the BCM2711's 54 MHz.
pub const COUNTER_FALLBACK_HZ: u64 = 54_000_000;
