//! The qemu-virt board: finds its devices in the DTB, wires the PL011, PL031, generic timer, PSCI and virtio-mmio disks, and starts the kernel.
#![no_std]
#![no_main]

extern crate alloc;

mod devicetree;
mod interrupts;
#[allow(dead_code)]
mod memory_map;
mod smp;
mod virtio;

use core::sync::atomic::{AtomicBool, Ordering};

use devicetree::{Devices, GicDescription};
use hinoki_arch_aarch64::mmu::{self, Aarch64Mmu};
use hinoki_arch_aarch64::psci::{self, Conduit};
use hinoki_arch_aarch64::{semihosting, Aarch64Cpu, GenericTimerCounter};
use hinoki_interface::{
    Clock, ClockEvent, Console, ContextSwitch, Cpu, CpuStartError, ExitStatus, InterruptController, MemoryKind, MemoryRegion, Mmu,
    Platform, SecondaryEntry,
};
use hinoki_kernel::sync::Once;
use pl011::Pl011;
use pl031::Pl031;

hinoki_arch_aarch64::entry_point!(board_main);

/// The qemu-virt platform.
struct QemuVirt {
    console: Pl011,
    cpu: Aarch64Cpu,
    clock: GenericTimerCounter,
    devices: Devices,
}

static BOARD: Once<QemuVirt> = Once::new();
static MMU: Once<Aarch64Mmu> = Once::new();
static RTC: Once<Option<Pl031<pl031::Mmio>>> = Once::new();
static EXITING: AtomicBool = AtomicBool::new(false);

impl Platform for QemuVirt {
    fn board_name(&self) -> &'static str {
        "qemu-virt"
    }

    fn arch_name(&self) -> &'static str {
        "aarch64"
    }

    fn console(&self) -> &dyn Console {
        &self.console
    }

    fn cpu(&self) -> &dyn Cpu {
        &self.cpu
    }

    fn clock(&self) -> &dyn Clock {
        &self.clock
    }

    fn interrupt_controller(&self) -> Option<&dyn InterruptController> {
        interrupts::interrupt_controller()
    }

    fn clock_event(&self) -> Option<&dyn ClockEvent> {
        interrupts::clock_event()
    }

    fn real_time_clock(&self) -> Option<&dyn hinoki_interface::RealTimeClock> {
        let rtc = RTC.call_once(|| {
            // SAFETY: the DTB names this block as the PL031; it is reserved as MMIO, so it is
            // identity-mapped (device memory once paging is on) for the kernel's lifetime.
            let registers = unsafe { pl031::Mmio::new(self.devices.rtc? as usize) };
            Pl031::probe(registers).map_err(|error| log::warn!("qemu-virt: the DTB's PL031 does not answer: {:?}", error)).ok()
        });
        rtc.as_ref().map(|rtc| rtc as &dyn hinoki_interface::RealTimeClock)
    }

    fn possible_cpus(&self) -> u32 {
        smp::possible_cpus(&self.devices)
    }

    fn start_cpu(&self, cpu: u32, stack_top: usize, entry: SecondaryEntry) -> Result<(), CpuStartError> {
        smp::start_cpu(&self.devices, cpu, stack_top, entry)
    }

    fn memory_regions(&self, visit: &mut dyn FnMut(MemoryRegion)) {
        self.devices.memory.for_each(visit);
    }

    fn context_switch(&self) -> Option<&ContextSwitch> {
        Some(&hinoki_arch_aarch64::context::CONTEXT_SWITCH)
    }

    fn mmu(&self) -> Option<&dyn Mmu> {
        MMU.get().map(|mmu| mmu as &dyn Mmu)
    }

    fn paging_init(&self) {
        match mmu::paging_init(self) {
            Ok(mmu) => {
                MMU.call_once(|| mmu);
            }
            Err(error) => log::error!("qemu-virt: cannot build the kernel page tables, MMU stays off: {:?}", error),
        }
    }

    fn init_devices(&self) {
        virtio::probe(&self.devices);
    }

    fn command_line(&self) -> &str {
        self.devices.command_line
    }

    fn kernel_text(&self) -> core::ops::Range<usize> {
        hinoki_arch_aarch64::layout::text()
    }

    fn poweroff(&self) -> ! {
        self.exit(ExitStatus::Success)
    }

    fn exit(&self, status: ExitStatus) -> ! {
        self.console.flush();
        let first_attempt = !EXITING.swap(true, Ordering::SeqCst);
        match status {
            ExitStatus::Success => {}
            // Semihosting carries the code to QEMU's exit status (the xtask runs QEMU with
            // -semihosting). If it traps instead, the second attempt powers off via PSCI.
            ExitStatus::Failure(code) if first_attempt => semihosting::exit(code.max(1)),
            ExitStatus::Failure(_) => {}
        }
        psci::system_off(self.devices.psci.unwrap_or(Conduit::Hypervisor));
        halt_forever()
    }

    fn reboot(&self) -> ! {
        self.console.flush();
        psci::system_reset(self.devices.psci.unwrap_or(Conduit::Hypervisor));
        halt_forever()
    }
}

fn halt_forever() -> ! {
    loop {
        core::hint::spin_loop();
    }
}

fn board_main(dtb_address: usize) -> ! {
    hinoki_arch_aarch64::smp::init_boot_cpu();
    // SAFETY: QEMU passes the DTB address in x0 when booting an arm64 Image; the blob lies
    // in RAM below the kernel's reach and the memory map reserves it for good.
    let mut devices = match unsafe { devicetree::parse(dtb_address) } {
        Ok(devices) => devices,
        Err(error) => early_failure(dtb_address, &error),
    };
    // SAFETY: the DTB names this PL011; nothing else drives it.
    let console = unsafe { Pl011::new(devices.uart as usize) };
    if let Some(clock_hz) = devices.uart_clock_hz {
        console.initialize(clock_hz, 115_200);
    }
    let image_start = hinoki_arch_aarch64::layout::image_start() as u64;
    let image_size = hinoki_arch_aarch64::layout::kernel_end() as u64 - image_start;
    if devices.memory.reserve(image_start, image_size, MemoryKind::KernelImage).is_err() {
        early_failure(dtb_address, &devicetree::DeviceTreeError::TooManyRegions);
    }
    let board = BOARD.call_once(|| QemuVirt { console, cpu: Aarch64Cpu::new(), clock: GenericTimerCounter::new(62_500_000), devices });
    hinoki_kernel::early_init(board);
    if image_start != memory_map::KERNEL_LOAD_ADDRESS {
        log::warn!("qemu-virt: loaded at {:#x}, linked for {:#x}", image_start, memory_map::KERNEL_LOAD_ADDRESS);
    }
    log_devices(board);
    interrupts::start(&board.devices, &board.cpu, board.clock.frequency_hz());
    hinoki_kernel::kernel_main(board)
}

/// Logs the devices found in the DTB.
fn log_devices(board: &QemuVirt) {
    let devices = &board.devices;
    log::info!("qemu-virt: {} CPUs in DTB, UART pl011 at {:#x}", devices.cpu_count, devices.uart);
    match devices.gic {
        Some(GicDescription::Version2 { distributor, cpu_interface }) => {
            log::info!("qemu-virt: GICv2 distributor {:#x}, CPU interface {:#x}", distributor, cpu_interface)
        }
        Some(GicDescription::Version3 { distributor, redistributor }) => {
            log::info!("qemu-virt: GICv3 distributor {:#x}, redistributors {:#x}", distributor, redistributor)
        }
        None => log::warn!("qemu-virt: no GIC in the DTB"),
    }
    log::info!("qemu-virt: generic timer PPIs (INTIDs) {:?}", devices.timer_interrupts);
    log::info!("qemu-virt: {} virtio-mmio slots", devices.virtio_count);
    if let Some(first) = devices.virtio[..devices.virtio_count].first() {
        log::info!("qemu-virt: virtio-mmio slot 0 at {:#x} size {:#x} SPI {}", first.base, first.size, first.interrupt);
    }
    log::info!("qemu-virt: PSCI via {:?}, DTB {} bytes", devices.psci, devices.dtb_size);
}

/// The DTB is unusable: say so on the machine's fixed UART and stop QEMU.
fn early_failure(dtb_address: usize, error: &devicetree::DeviceTreeError) -> ! {
    use core::fmt::Write;
    struct Fallback(Pl011);
    impl Write for Fallback {
        fn write_str(&mut self, text: &str) -> core::fmt::Result {
            self.0.write_bytes(text.as_bytes());
            Ok(())
        }
    }
    // SAFETY: the virt machine's first PL011 is at this address; nothing else runs yet.
    let mut console = Fallback(unsafe { Pl011::new(memory_map::FALLBACK_UART as usize) });
    let _ = write!(console, "qemu-virt: cannot use the device tree at {:#x}: {:?}\r\n", dtb_address, error);
    semihosting::exit(2);
    psci::system_off(Conduit::Hypervisor);
    halt_forever()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    hinoki_kernel::panic::handle_panic(info)
}
