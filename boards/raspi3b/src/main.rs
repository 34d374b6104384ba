//! The Raspberry Pi 3 Model B board: the BCM2837 memory map handed to the shared Raspberry Pi wiring, then the kernel.
#![no_std]
#![no_main]

#[allow(dead_code)]
mod memory_map;

use bcm2835_gpio::PullInterface;
use hinoki_arch_aarch64::mmu::{self, Aarch64Mmu};
use hinoki_arch_aarch64::{generic_timer, layout, semihosting, Aarch64Cpu, GenericTimerCounter};
use hinoki_interface::{Mmu, Platform};
use hinoki_board_raspi::{Architecture, Model, Raspi};
use hinoki_kernel::sync::Once;

hinoki_arch_aarch64::entry_point!(board_main);

static MODEL: Model = Model {
    board_name: "raspi3b",
    peripheral_base: memory_map::PERIPHERAL_BASE,
    device_window_start: memory_map::PERIPHERAL_BASE,
    device_window_end: memory_map::DEVICE_WINDOW_END,
    uart0: memory_map::UART0,
    gpio: memory_map::GPIO,
    aux: memory_map::AUX,
    power_management: memory_map::POWER_MANAGEMENT,
    default_ram_size: memory_map::RAM_SIZE,
    videocore_memory_size: memory_map::VIDEOCORE_MEMORY_SIZE,
    low_reserved_size: memory_map::LOW_RESERVED_SIZE,
    kernel_load_address: memory_map::KERNEL_LOAD_ADDRESS,
    pull_interface: PullInterface::Clocked,
    uart_clock_hz: memory_map::UART_CLOCK_HZ,
    core_clock_hz: memory_map::CORE_CLOCK_HZ,
};

static BOARD: Once<Raspi<Aarch64Cpu, GenericTimerCounter>> = Once::new();
static MMU: Once<Aarch64Mmu> = Once::new();

fn board_main(boot_argument: usize) -> ! {
    let architecture = Architecture {
        cpu: Aarch64Cpu::new(),
        clock: GenericTimerCounter::new(memory_map::COUNTER_FALLBACK_HZ),
        kernel_text: layout::text(),
        kernel_image: layout::image_start() as u64..layout::kernel_end() as u64,
        semihosting_exit: semihosting::exit,
        context_switch: &hinoki_arch_aarch64::context::CONTEXT_SWITCH,
        paging_init,
    };
    // SAFETY: this is the boot CPU, once, with the MMU off; MODEL is this SoC's map;
    // `boot_argument` is the x0 the firmware or QEMU passed; memory below the kernel holds
    // only the firmware stub and the boot tags, which nothing overwrites.
    let board = BOARD.call_once(|| unsafe { Raspi::new(&MODEL, boot_argument, architecture) });
    hinoki_kernel::early_init(board);
    board.log_boot();
    if generic_timer::counter_frequency() == 0 {
        log::warn!("raspi3b: CNTFRQ_EL0 is 0; assuming {} Hz", memory_map::COUNTER_FALLBACK_HZ);
    }
    hinoki_kernel::kernel_main(board)
}

/// Builds the kernel's tables and turns the MMU and caches on (the Raspberry Pi runs
/// with them off until here).
fn paging_init(platform: &dyn Platform) -> Option<&'static dyn Mmu> {
    match mmu::paging_init(platform) {
        Ok(mmu) => Some(MMU.call_once(|| mmu)),
        Err(error) => {
            log::error!("raspi3b: cannot build the kernel page tables, MMU stays off: {:?}", error);
            None
        }
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    hinoki_kernel::panic::handle_panic(info)
}
