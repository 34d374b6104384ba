//! The Raspberry Pi 3 Model B board: the BCM2837 memory map handed to the shared Raspberry Pi wiring, then the kernel.
#![no_std]
#![no_main]

#[allow(dead_code)]
mod memory_map;

use bcm2835_gpio::PullInterface;
use hinoki_board_raspi::{InterruptWiring, Model};

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
    interrupts: Some(InterruptWiring::Bcm2836 {
        local: memory_map::LOCAL_INTERRUPT_CONTROLLER,
        peripheral: memory_map::PERIPHERAL_INTERRUPT_CONTROLLER,
        timer: memory_map::TIMER_INTERRUPT,
        uart0: memory_map::UART0_INTERRUPT,
        mini_uart: memory_map::AUX_INTERRUPT,
    }),
    cpu_count: memory_map::CPU_COUNT,
};

hinoki_board_raspi::raspi_board!(model: MODEL, counter_fallback_hz: memory_map::COUNTER_FALLBACK_HZ);
