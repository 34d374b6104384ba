//! Raspberry Pi 3 Model B (BCM2837) memory map: kernel load address, peripherals, RAM and clocks. Also read by build.rs for the linker script.

/// RAM starts at 0 on every Pi.
pub const RAM_BASE: u64 = 0;
/// The firmware (and QEMU) load `kernel8.img` here; the arm64 header's text_offset says so too.
pub const KERNEL_TEXT_OFFSET: u64 = 0x8_0000;
/// Link and load address of the kernel.
pub const KERNEL_LOAD_ADDRESS: u64 = RAM_BASE + KERNEL_TEXT_OFFSET;
/// Size of the boot CPU's stack.
pub const BOOT_STACK_SIZE: u64 = 64 * 1024;
/// Low memory holding the firmware stub and the spin-table release addresses (0xd8-0xf0);
/// ATAGs start at 0x100.
pub const LOW_RESERVED_SIZE: u64 = 0x1000;

/// BCM2837 peripherals as the ARM sees them (bus address 0x7E00_0000).
pub const PERIPHERAL_BASE: u64 = 0x3F00_0000;
/// The BCM2836 per-core local interrupt controller (timers, mailboxes).
pub const LOCAL_INTERRUPT_CONTROLLER: u64 = 0x4000_0000;
/// The BCM2835 (ARMCTRL) interrupt controller's registers.
pub const PERIPHERAL_INTERRUPT_CONTROLLER: u64 = PERIPHERAL_BASE + 0xB200;
/// The EL1 non-secure physical timer (CNTPNS) as the local controller's interrupt 1.
pub const TIMER_INTERRUPT: u32 = 1;
/// The chained ARMCTRL's numbers start here in the local controller's numbering.
const FIRST_PERIPHERAL_INTERRUPT: u32 = 32;
/// PL011 UART0: GPU interrupt 57, ARMCTRL hardware number 89 (bank 2, bit 25).
pub const UART0_INTERRUPT: u32 = FIRST_PERIPHERAL_INTERRUPT + 32 + 57;
/// AUX block (mini-UART): GPU interrupt 29, ARMCTRL hardware number 61.
pub const AUX_INTERRUPT: u32 = FIRST_PERIPHERAL_INTERRUPT + 32 + 29;
/// Cortex-A53 cores.
pub const CPU_COUNT: u32 = 4;
/// One past the last device address: the local controller spans 256 KiB.
pub const DEVICE_WINDOW_END: u64 = LOCAL_INTERRUPT_CONTROLLER + 0x4_0000;
/// PM block: watchdog, reset control and status.
pub const POWER_MANAGEMENT: u64 = PERIPHERAL_BASE + 0x10_0000;
/// GPIO block.
pub const GPIO: u64 = PERIPHERAL_BASE + 0x20_0000;
/// PL011 UART0 (QEMU's first -serial).
pub const UART0: u64 = PERIPHERAL_BASE + 0x20_1000;
/// AUX block; the mini-UART (QEMU's second -serial) is at +0x40.
pub const AUX: u64 = PERIPHERAL_BASE + 0x21_5000;

/// The Pi 3 has 1 GiB. The ARM gets it minus the GPU split at the top (default 64 MiB with
/// `gpu_mem=64`; QEMU's ATAG_MEM also says 0x3C00_0000). The real size comes from the
/// firmware's DTB `/memory` node or ATAG_MEM (or the mailbox), which the board reads when
/// present; these constants are only the fallback.
pub const RAM_SIZE: u64 = 1 << 30;
/// The GPU split assumed by the fallback.
pub const VIDEOCORE_MEMORY_SIZE: u64 = 64 << 20;

/// PL011 reference clock: `init_uart_clock=48000000` in config.txt fixes it.
pub const UART_CLOCK_HZ: u32 = 48_000_000;
/// Core clock feeding the mini-UART: 250 MHz once `enable_uart=1` pins core_freq.
pub const CORE_CLOCK_HZ: u32 = 250_000_000;
/// Generic-timer frequency used only if CNTFRQ_EL0 reads 0 (firmware that did not set it):
/// the Pi 3's 19.2 MHz crystal. QEMU and current firmware program CNTFRQ.
pub const COUNTER_FALLBACK_HZ: u64 = 19_200_000;
