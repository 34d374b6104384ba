//! The Raspberry Pi platform: a per-model [`Model`] (addresses and clocks) plus the aarch64 pieces a board crate hands in, wired into one [`Platform`].

use core::sync::atomic::{AtomicBool, Ordering};

use bcm2835_aux_uart::MiniUart;
use bcm2835_gpio::{Function, Gpio, Pull, PullInterface};
use hinoki_interface::{
    Clock, ClockEvent, Console, ContextSwitch, Cpu, CpuStartError, ExitStatus, InterruptController, MemoryKind, MemoryMap, MemoryRegion,
    Mmu, Platform, SecondaryEntry,
};
use hinoki_kernel::sync::Once;
use pl011::Pl011;

use crate::boot_information::{console_choice, BootInformation, BootSource, ConsoleChoice};
use crate::interrupts::{self, InterruptWiring};
use crate::power_management::{PowerManagement, HALT_PARTITION};

/// GPIO pin of UART transmit (header pin 8).
pub const TRANSMIT_PIN: u32 = 14;
/// GPIO pin of UART receive (header pin 10).
pub const RECEIVE_PIN: u32 = 15;
/// Console speed, 8N1.
pub const CONSOLE_BAUD: u32 = 115_200;
/// The spin-table release words of cores 0-3, where the firmware's stub (and QEMU's) waits
/// for an entry address (Linux's `cpu-release-addr` in the Pi's DTB).
pub const SPIN_TABLE_RELEASE_ADDRESSES: [u64; 4] = [0xd8, 0xe0, 0xe8, 0xf0];

/// One Raspberry Pi model: where its devices are and how its clocks are set. Board crates
/// build it from their `memory_map.rs`.
pub struct Model {
    /// Board name, as `uname -i` prints it.
    pub board_name: &'static str,
    /// Start of the main peripheral block as the ARM cores see it.
    pub peripheral_base: u64,
    /// Start of the device address window (no RAM from here up to `device_window_end`).
    pub device_window_start: u64,
    /// One past the end of all device windows (peripherals, local controller, GIC).
    pub device_window_end: u64,
    /// PL011 UART0.
    pub uart0: u64,
    /// GPIO block.
    pub gpio: u64,
    /// AUX block (the mini-UART registers start at +0x40).
    pub aux: u64,
    /// PM block (watchdog).
    pub power_management: u64,
    /// Total RAM assumed when the boot loader reports none. The real size comes from the
    /// firmware's DTB (`/memory`) or ATAG_MEM; the mailbox could also report it.
    pub default_ram_size: u64,
    /// VideoCore memory at the top of the first GiB (the GPU split), kept out of the default.
    pub videocore_memory_size: u64,
    /// Low memory kept for the firmware's spin table and stub (0 to this).
    pub low_reserved_size: u64,
    /// Where the kernel is loaded: boot tags must lie below it.
    pub kernel_load_address: u64,
    /// GPIO pull-control mechanism of the SoC.
    pub pull_interface: PullInterface,
    /// PL011 reference clock, fixed by `init_uart_clock` in config.txt.
    pub uart_clock_hz: u32,
    /// VideoCore core clock feeding the mini-UART (fixed by `enable_uart=1`).
    pub core_clock_hz: u32,
    /// The interrupt controller, or `None` to run polled on the boot CPU alone.
    pub interrupts: Option<InterruptWiring>,
    /// Cores, all started by the firmware into its spin-table stub.
    pub cpu_count: u32,
}

/// The architecture-specific pieces a board crate hands in, so this crate stays portable.
pub struct Architecture<C, K> {
    /// CPU operations.
    pub cpu: C,
    /// The clocksource.
    pub clock: K,
    /// The kernel's text range.
    pub kernel_text: core::ops::Range<usize>,
    /// The whole kernel image (text to the end of the boot stacks).
    pub kernel_image: core::ops::Range<u64>,
    /// Ends a QEMU run with a status through semihosting (traps on hardware).
    pub semihosting_exit: fn(u32),
    /// The arch's context switch, for the scheduler.
    pub context_switch: &'static ContextSwitch,
    /// Builds the kernel's page tables and turns the MMU on (`Platform::paging_init`);
    /// returns the MMU, or `None` (logged) if the MMU stays off.
    pub paging_init: fn(&dyn Platform) -> Option<&'static dyn Mmu>,
    /// Installs the arch's IRQ vector handler, which calls `hinoki_kernel::irq::handle_interrupt`.
    pub install_interrupt_handler: fn(),
    /// The generic timer as the clock-event device raising `irq`, counting at the given Hz.
    pub timer: fn(irq: u32, frequency_hz: u64) -> &'static dyn ClockEvent,
    /// Releases a core from the firmware's spin table (logical id, MPIDR, release word,
    /// stack top, entry); the arch's `smp::start_cpu_spin_table`, with its safety contract.
    pub start_secondary: unsafe fn(u32, u64, usize, usize, SecondaryEntry) -> Result<(), CpuStartError>,
    /// The boot CPU's MPIDR_EL1.
    pub boot_cpu_affinity: u64,
}

/// The UART carrying the console.
pub enum SerialConsole {
    /// PL011 UART0.
    Pl011(Pl011),
    /// The mini-UART.
    MiniUart(MiniUart),
}

impl SerialConsole {
    fn device(&self) -> &dyn Console {
        match self {
            SerialConsole::Pl011(uart) => uart,
            SerialConsole::MiniUart(uart) => uart,
        }
    }
}

impl Console for SerialConsole {
    fn name(&self) -> &'static str {
        self.device().name()
    }

    fn write_bytes(&self, bytes: &[u8]) {
        self.device().write_bytes(bytes)
    }

    fn read_byte(&self) -> Option<u8> {
        self.device().read_byte()
    }

    fn flush(&self) {
        self.device().flush()
    }

    fn set_receive_interrupt(&self, enabled: bool) -> bool {
        self.device().set_receive_interrupt(enabled)
    }
}

/// Facts the board records at construction for the in-kernel tests.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Facts {
    pub gpio: usize,
    pub pull_interface: PullInterface,
    pub console: ConsoleChoice,
    pub source: BootSource,
    pub kernel_image: (u64, u64),
    pub peripherals: (u64, u64),
    pub low_reserved_size: u64,
    pub interrupts: Option<InterruptWiring>,
}

pub(crate) static FACTS: Once<Facts> = Once::new();

/// A Raspberry Pi running Hinoki.
pub struct Raspi<C, K> {
    model: &'static Model,
    architecture: Architecture<C, K>,
    console: SerialConsole,
    power: PowerManagement,
    boot: BootInformation,
    memory: MemoryMap<24>,
    mini_uart_divisor: Option<u32>,
    exiting: AtomicBool,
    mmu: Once<&'static dyn Mmu>,
    controller: Once<&'static dyn InterruptController>,
    timer: Once<&'static dyn ClockEvent>,
}

impl<C: Cpu, K: Clock> Raspi<C, K> {
    /// Reads the boot information, routes GPIO14/15 to the chosen UART, programs it, and
    /// builds the memory map.
    ///
    /// # Safety
    /// Call once, on the boot CPU, with the MMU off. `model` must describe this machine
    /// (its device addresses are accessed directly), `boot_argument` must be the `x0` the
    /// firmware or QEMU passed, memory below `model.kernel_load_address` must be RAM that
    /// nothing else writes, and a DTB that `x0` points at must stay in place for good.
    pub unsafe fn new(model: &'static Model, boot_argument: usize, architecture: Architecture<C, K>) -> Self {
        // SAFETY: the caller guarantees low memory is stable RAM and `x0` came from the
        // loader; `discover` reads only below the peripheral window.
        let boot = unsafe { BootInformation::discover(boot_argument, model.kernel_load_address as usize, model.peripheral_base as usize) };
        let choice = console_choice(boot.command_line.as_str());
        // SAFETY: `model.gpio` is this SoC's GPIO block of the given kind; nothing else runs yet.
        let gpio = unsafe { Gpio::new(model.gpio as usize, model.pull_interface) };
        let function = match choice {
            ConsoleChoice::Pl011 => Function::Alternate0,
            ConsoleChoice::MiniUart => Function::Alternate5,
        };
        // Pins 14 and 15 exist on every model, so these cannot fail. Transmit has no pull,
        // receive is pulled up so an unconnected line reads idle.
        let _ = gpio.set_pull(TRANSMIT_PIN, Pull::None);
        let _ = gpio.set_pull(RECEIVE_PIN, Pull::Up);
        let _ = gpio.set_function(TRANSMIT_PIN, function);
        let _ = gpio.set_function(RECEIVE_PIN, function);
        let mut mini_uart_divisor = None;
        let console = match choice {
            ConsoleChoice::Pl011 => {
                // SAFETY: `model.uart0` is this SoC's PL011; the board drives it alone.
                let uart = unsafe { Pl011::new(model.uart0 as usize) };
                uart.initialize(model.uart_clock_hz, CONSOLE_BAUD);
                SerialConsole::Pl011(uart)
            }
            ConsoleChoice::MiniUart => {
                // SAFETY: `model.aux` is this SoC's AUX block; the board drives it alone.
                let uart = unsafe { MiniUart::new(model.aux as usize) };
                mini_uart_divisor = uart.initialize(model.core_clock_hz, CONSOLE_BAUD);
                SerialConsole::MiniUart(uart)
            }
        };
        let memory = build_memory_map(model, &boot, &architecture.kernel_image);
        FACTS.call_once(|| Facts {
            gpio: model.gpio as usize,
            pull_interface: model.pull_interface,
            console: choice,
            source: boot.source,
            kernel_image: (architecture.kernel_image.start, architecture.kernel_image.end),
            peripherals: (model.device_window_start, model.device_window_end),
            low_reserved_size: model.low_reserved_size,
            interrupts: model.interrupts,
        });
        Raspi {
            model,
            architecture,
            console,
            // SAFETY: `model.power_management` is this SoC's PM block.
            power: unsafe { PowerManagement::new(model.power_management as usize) },
            boot,
            memory,
            mini_uart_divisor,
            exiting: AtomicBool::new(false),
            mmu: Once::new(),
            controller: Once::new(),
            timer: Once::new(),
        }
    }

    /// Brings up interrupts on the boot CPU: the model's controller, the IRQ vector, the
    /// periodic tick on the EL1 non-secure physical timer and the console's receive
    /// interrupt; then unmasks IRQs. Without a controller the kernel stays polled on one
    /// CPU. Call once, on the boot CPU, after `hinoki_kernel::early_init`.
    pub fn start_interrupts(&'static self) {
        let board = self.model.board_name;
        let Some(wiring) = self.model.interrupts else {
            log::info!("{}: no interrupt controller driver: polled console, one CPU", board);
            return;
        };
        // SAFETY: called once on the boot CPU (the caller's contract); the model describes
        // this SoC's controller and the board drives it alone.
        let controller = unsafe { interrupts::create_controller(&wiring, &self.architecture.cpu) };
        self.controller.call_once(|| controller);
        (self.architecture.install_interrupt_handler)();
        log::info!("{}: {} up, IRQ handler installed", board, controller.name());
        let (timer_interrupt, timer_trigger) = wiring.timer();
        let timer = (self.architecture.timer)(timer_interrupt, self.architecture.clock.frequency_hz());
        self.timer.call_once(|| timer);
        if let Err(error) = hinoki_kernel::tick::start(timer_trigger) {
            log::warn!("{}: no periodic tick: {:?}", board, error);
        }
        let (console_interrupt, console_trigger) = wiring.console(matches!(self.console, SerialConsole::MiniUart(_)));
        let name = match self.console {
            SerialConsole::Pl011(_) => "uart-pl011",
            SerialConsole::MiniUart(_) => "serial",
        };
        if let Err(error) = hinoki_kernel::tty::start_receive_interrupt(console_interrupt, console_trigger, name) {
            log::warn!("{}: console receive stays polled: {:?}", board, error);
        }
        self.architecture.cpu.enable_interrupts();
    }

    /// Logs what the board found (call after `hinoki_kernel::early_init`).
    pub fn log_boot(&self) {
        let board = self.model.board_name;
        match self.boot.source {
            BootSource::Atags { address, length } => log::info!("{}: ATAGs at {:#x} ({} bytes)", board, address, length),
            BootSource::DeviceTree { address, size } => log::info!("{}: device tree at {:#x} ({} bytes)", board, address, size),
            BootSource::Nothing => log::warn!("{}: no ATAGs or DTB in x0: default memory map, empty command line", board),
        }
        if let Some(error) = self.boot.atag_error {
            log::warn!("{}: ATAG list ends early: {:?}", board, error);
        }
        if self.boot.ram.dropped + self.boot.reserved.dropped > 0 {
            log::warn!("{}: boot loader listed more memory ranges than kept", board);
        }
        match &self.console {
            SerialConsole::Pl011(uart) => {
                log::info!(
                    "{}: console pl011 at {:#x}, GPIO14/15 ALT0, {} baud from {} Hz",
                    board,
                    uart.base(),
                    CONSOLE_BAUD,
                    self.model.uart_clock_hz
                )
            }
            SerialConsole::MiniUart(uart) => log::info!(
                "{}: console mini-UART at {:#x}, GPIO14/15 ALT5, {} baud from {} Hz core clock (divisor {:?})",
                board,
                uart.aux_base() + 0x40,
                CONSOLE_BAUD,
                self.model.core_clock_hz,
                self.mini_uart_divisor
            ),
        }
        log::info!("{}: peripherals at {:#x}, PM watchdog at {:#x}", board, self.model.peripheral_base, self.model.power_management);
    }

    fn halt(&self) -> ! {
        // Partition 63: the firmware halts instead of booting; QEMU shuts down.
        self.power.reset_into(HALT_PARTITION);
        loop {
            self.architecture.cpu.wait_for_interrupt();
        }
    }
}

/// RAM (from the boot loader, else the model's default) cut below the device window,
/// minus low memory, the boot blob, loader reservations and the kernel image.
fn build_memory_map(model: &Model, boot: &BootInformation, kernel_image: &core::ops::Range<u64>) -> MemoryMap<24> {
    let mut memory = MemoryMap::new();
    const GIBIBYTE: u64 = 1 << 30;
    let first_gibibyte = model.default_ram_size.min(GIBIBYTE);
    let default_ram = [
        crate::boot_information::Range { start: 0, end: first_gibibyte.saturating_sub(model.videocore_memory_size) },
        crate::boot_information::Range { start: GIBIBYTE, end: model.default_ram_size.max(GIBIBYTE) },
    ];
    let ram = if boot.ram.as_slice().is_empty() { &default_ram[..] } else { boot.ram.as_slice() };
    for range in ram {
        // Keep what lies below and above the device window (8 GiB Pi 4s list RAM past 4 GiB).
        let below_end = range.end.min(model.device_window_start);
        if below_end > range.start {
            let _ = memory.add_ram(range.start, below_end - range.start);
        }
        let above_start = range.start.max(model.device_window_end);
        if range.end > above_start {
            let _ = memory.add_ram(above_start, range.end - above_start);
        }
    }
    let _ = memory.reserve(0, model.low_reserved_size, MemoryKind::Reserved);
    match boot.source {
        BootSource::Atags { address, length } => {
            let _ = memory.reserve(address, length, MemoryKind::Reserved);
        }
        BootSource::DeviceTree { address, size } => {
            let _ = memory.reserve(address, size, MemoryKind::Reserved);
        }
        BootSource::Nothing => {}
    }
    for range in boot.reserved.as_slice() {
        let _ = memory.reserve(range.start, range.end - range.start, MemoryKind::Reserved);
    }
    let _ = memory.reserve(kernel_image.start, kernel_image.end - kernel_image.start, MemoryKind::KernelImage);
    let _ = memory.reserve(model.device_window_start, model.device_window_end - model.device_window_start, MemoryKind::Mmio);
    memory
}

impl<C: Cpu, K: Clock> Platform for Raspi<C, K> {
    fn board_name(&self) -> &'static str {
        self.model.board_name
    }

    fn arch_name(&self) -> &'static str {
        "aarch64"
    }

    fn console(&self) -> &dyn Console {
        &self.console
    }

    fn cpu(&self) -> &dyn Cpu {
        &self.architecture.cpu
    }

    fn clock(&self) -> &dyn Clock {
        &self.architecture.clock
    }

    fn interrupt_controller(&self) -> Option<&dyn InterruptController> {
        self.controller.get().copied()
    }

    fn clock_event(&self) -> Option<&dyn ClockEvent> {
        self.timer.get().copied()
    }

    /// The model's cores once an interrupt controller is up (secondaries need IPIs and
    /// their own tick); the boot CPU alone before.
    fn possible_cpus(&self) -> u32 {
        if self.controller.get().is_some() {
            self.model.cpu_count.clamp(1, SPIN_TABLE_RELEASE_ADDRESSES.len() as u32)
        } else {
            1
        }
    }

    /// Releases core `cpu` (logical ids are core numbers: the firmware boots on core 0)
    /// from the firmware's spin table.
    fn start_cpu(&self, cpu: u32, stack_top: usize, entry: SecondaryEntry) -> Result<(), CpuStartError> {
        if cpu == 0 || cpu >= self.possible_cpus() {
            return Err(CpuStartError::InvalidCpu(cpu));
        }
        let release_address = SPIN_TABLE_RELEASE_ADDRESSES[cpu as usize] as usize;
        let affinity = (self.architecture.boot_cpu_affinity & !0xff) | cpu as u64;
        // The release words sit in page 0, reserved for the firmware stub: identity-mapped
        // RAM nothing else writes; core `cpu` waits on its word.
        // SAFETY: as above, and the kernel hands each CPU its own 64 KiB stack.
        unsafe { (self.architecture.start_secondary)(cpu, affinity, release_address, stack_top, entry) }
    }

    fn memory_regions(&self, visit: &mut dyn FnMut(MemoryRegion)) {
        self.memory.for_each(visit);
    }

    fn context_switch(&self) -> Option<&ContextSwitch> {
        Some(self.architecture.context_switch)
    }

    fn mmu(&self) -> Option<&dyn Mmu> {
        self.mmu.get().copied()
    }

    fn paging_init(&self) {
        if let Some(mmu) = (self.architecture.paging_init)(self) {
            self.mmu.call_once(|| mmu);
        }
    }

    fn command_line(&self) -> &str {
        self.boot.command_line.as_str()
    }

    fn kernel_text(&self) -> core::ops::Range<usize> {
        self.architecture.kernel_text.clone()
    }

    fn poweroff(&self) -> ! {
        self.console.flush();
        self.halt()
    }

    fn exit(&self, status: ExitStatus) -> ! {
        self.console.flush();
        // A plain load and store, not a swap: with the MMU off, exclusive accesses to the
        // (then Device) memory are not guaranteed on real Cortex-A53/A72 cores, and only the
        // exit path of this one CPU comes here twice.
        let first_attempt = !self.exiting.load(Ordering::SeqCst);
        self.exiting.store(true, Ordering::SeqCst);
        // Semihosting carries a failure code to QEMU (the xtask enables it). On hardware the
        // HLT traps; the panic that follows comes back here and halts.
        if let (ExitStatus::Failure(code), true) = (status, first_attempt) {
            (self.architecture.semihosting_exit)(code.max(1));
        }
        self.halt()
    }

    fn reboot(&self) -> ! {
        self.console.flush();
        self.power.reset_into(0);
        loop {
            self.architecture.cpu.wait_for_interrupt();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODEL: Model = Model {
        board_name: "test",
        peripheral_base: 0x3f00_0000,
        device_window_start: 0x3f00_0000,
        device_window_end: 0x4004_0000,
        uart0: 0x3f20_1000,
        gpio: 0x3f20_0000,
        aux: 0x3f21_5000,
        power_management: 0x3f10_0000,
        default_ram_size: 0x4000_0000,
        videocore_memory_size: 0x400_0000,
        low_reserved_size: 0x1000,
        kernel_load_address: 0x8_0000,
        pull_interface: PullInterface::Clocked,
        uart_clock_hz: 48_000_000,
        core_clock_hz: 250_000_000,
        interrupts: None,
        cpu_count: 4,
    };

    fn usable(memory: &MemoryMap<24>) -> [(u64, u64); 4] {
        let mut out = [(0, 0); 4];
        let mut index = 0;
        memory.for_each(&mut |region| {
            if region.kind == MemoryKind::Usable && index < 4 {
                out[index] = (region.start.0, region.end());
                index += 1;
            }
        });
        out
    }

    #[test]
    fn memory_map_from_atags_excludes_low_memory_and_kernel() {
        // A loader claiming the whole GiB: cut at the peripheral window.
        let mut bytes = [0u8; 64];
        let words = [5u32, 0x5441_0001, 1, 0x1000, 0, 4, 0x5441_0002, 0x4000_0000, 0, 0, 0];
        for (index, word) in words.iter().enumerate() {
            bytes[index * 4..index * 4 + 4].copy_from_slice(&word.to_le_bytes());
        }
        let boot = BootInformation::from_atags(&bytes, 0x100);
        let memory = build_memory_map(&MODEL, &boot, &(0x8_0000..0x12_3456));
        assert_eq!(usable(&memory), [(0x1000, 0x8_0000), (0x12_4000, 0x3f00_0000), (0, 0), (0, 0)]);
    }

    #[test]
    fn ram_around_the_device_window_is_kept() {
        let mut bytes = [0u8; 64];
        let words = [5u32, 0x5441_0001, 1, 0x1000, 0, 4, 0x5441_0002, 0x1000_0000, 0x3800_0000, 0, 0];
        for (index, word) in words.iter().enumerate() {
            bytes[index * 4..index * 4 + 4].copy_from_slice(&word.to_le_bytes());
        }
        let boot = BootInformation::from_atags(&bytes, 0x100);
        let memory = build_memory_map(&MODEL, &boot, &(0x8_0000..0x10_0000));
        // 0x3800_0000..0x4800_0000 minus the window 0x3f00_0000..0x4004_0000.
        assert_eq!(memory.total_ram(), 0x700_0000 + 0x7fc_0000);
    }

    #[test]
    fn memory_map_defaults_without_boot_information() {
        let memory = build_memory_map(&MODEL, &BootInformation::nothing(), &(0x8_0000..0x10_0000));
        assert_eq!(memory.total_ram(), 0x3c00_0000);
        assert_eq!(usable(&memory)[1], (0x10_0000, 0x3c00_0000));
    }
}
