//! The pc board: PVH or multiboot2 boot information, ACPI discovery, COM1, the TSC and HPET clocks, the APICs and SMP bring-up, ACPI power control, virtio-blk disks on PCI, then the kernel.
#![no_std]
#![no_main]

extern crate alloc;

mod acpi_tables;
mod boot_information;
mod checks;
mod interrupt_checks;
mod interrupts;
#[allow(dead_code)]
mod memory_map;
mod pci;
mod smp;

use core::sync::atomic::{AtomicBool, Ordering};

use acpi_tables::{AcpiSummary, Register};
use boot_information::BootInformation;
use hinoki_arch_x86_64::mmu::{self as kernel_mmu, X86Mmu};
use hinoki_arch_x86_64::{port, power, tsc, BootProtocol, Hpet, Tsc, X86Cpu};
use hinoki_interface::{
    Clock, ClockEvent, Console, ContextSwitch, Cpu, CpuStartError, ExitStatus, InterruptController, MemoryKind, MemoryRegion, Mmu,
    Platform, SecondaryEntry,
};
use hinoki_kernel::sync::Once;
use ns16550::{Ns16550, RegisterAccess};

hinoki_arch_x86_64::entry_point!(board_main);

/// S5 soft-off: SLP_TYPa for S5 (0 on QEMU's q35 and pc) and SLP_EN.
const SLEEP_TYPE_S5: u16 = 0;
const SLEEP_ENABLE: u16 = 1 << 13;

/// A 16550's registers as eight consecutive I/O ports.
struct PortRegisters {
    base: u16,
}

impl RegisterAccess for PortRegisters {
    fn read(&self, register: usize) -> u8 {
        // SAFETY: `base` is COM1, owned by this board; register is one of its eight ports.
        unsafe { port::read_u8(self.base + register as u16) }
    }

    fn write(&self, register: usize, value: u8) {
        // SAFETY: as in `read`.
        unsafe { port::write_u8(self.base + register as u16, value) }
    }
}

/// The PC platform.
struct Pc {
    console: Ns16550<PortRegisters>,
    cpu: X86Cpu,
    /// The TSC (calibrated against the HPET or the PIT).
    clock: Tsc,
    hpet: Option<Hpet>,
    /// The clocksource: the TSC when it is invariant or synthesized by a hypervisor at a
    /// constant rate (QEMU derives it from the host's), else the HPET; `clocksource=tsc` or
    /// `clocksource=hpet` on the command line overrides the choice, as on Linux.
    clocksource_is_tsc: bool,
    boot: BootInformation,
    acpi: Result<AcpiSummary, acpi::AcpiError>,
}

static BOARD: Once<Pc> = Once::new();
static MMU: Once<X86Mmu> = Once::new();
static EXITING: AtomicBool = AtomicBool::new(false);

impl Pc {
    fn acpi(&self) -> Option<&AcpiSummary> {
        self.acpi.as_ref().ok()
    }
}

/// The CMOS registers behind index port 0x70 and data port 0x71.
struct CmosPorts;

/// Held from selecting a CMOS register to reading it.
static CMOS_INDEX: hinoki_kernel::sync::IrqSpinLock<()> = hinoki_kernel::sync::IrqSpinLock::new(());

impl cmos_rtc::CmosRegisters for CmosPorts {
    fn read(&self, index: u8) -> u8 {
        let _selected = CMOS_INDEX.lock();
        // SAFETY: ports 0x70/0x71 are the PC's CMOS index and data ports; selecting a
        // register (bit 7, the NMI mask, left clear) and reading it has no other effect, and
        // the lock keeps another CPU from selecting between the two accesses.
        unsafe {
            port::write_u8(0x70, index & 0x7f);
            port::read_u8(0x71)
        }
    }
}

/// The battery-backed clock; QEMU's `mc146818rtc` on both machines. Without the FADT's
/// century register, two-digit years read as 1970-2069.
static CMOS_RTC: cmos_rtc::CmosRtc<CmosPorts> = cmos_rtc::CmosRtc::new(CmosPorts, None);

impl Platform for Pc {
    fn board_name(&self) -> &'static str {
        "pc"
    }

    fn arch_name(&self) -> &'static str {
        "x86_64"
    }

    fn console(&self) -> &dyn Console {
        &self.console
    }

    fn cpu(&self) -> &dyn Cpu {
        &self.cpu
    }

    fn clock(&self) -> &dyn Clock {
        match &self.hpet {
            Some(hpet) if !self.clocksource_is_tsc => hpet,
            _ => &self.clock,
        }
    }

    fn interrupt_controller(&self) -> Option<&dyn InterruptController> {
        interrupts::controller().map(|controller| controller as &dyn InterruptController)
    }

    fn clock_event(&self) -> Option<&dyn ClockEvent> {
        interrupts::timer().map(|timer| timer as &dyn ClockEvent)
    }

    fn real_time_clock(&self) -> Option<&dyn hinoki_interface::RealTimeClock> {
        Some(&CMOS_RTC)
    }

    fn possible_cpus(&self) -> u32 {
        smp::possible_cpus(self.acpi())
    }

    fn start_cpu(&self, cpu: u32, stack_top: usize, entry: SecondaryEntry) -> Result<(), CpuStartError> {
        smp::start_cpu(self.acpi(), self.clock(), cpu, stack_top, entry)
    }

    fn memory_regions(&self, visit: &mut dyn FnMut(MemoryRegion)) {
        self.boot.memory.for_each(visit);
    }

    fn mmu(&self) -> Option<&dyn Mmu> {
        MMU.get().map(|mmu| mmu as &dyn Mmu)
    }

    fn paging_init(&self) {
        match kernel_mmu::paging_init(self) {
            Ok(mmu) => {
                MMU.call_once(|| mmu);
                kernel_mmu::set_tlb_shootdown(smp::shootdown_range);
            }
            Err(error) => log::error!("pc: cannot build the kernel page tables, the boot identity map stays: {:?}", error),
        }
    }

    fn dma32_zone(&self) -> bool {
        true
    }

    fn context_switch(&self) -> Option<&ContextSwitch> {
        Some(&hinoki_arch_x86_64::context::CONTEXT_SWITCH)
    }

    fn init_devices(&self) {
        pci::probe(self.acpi());
    }

    fn command_line(&self) -> &str {
        self.boot.command_line()
    }

    fn write_cpuinfo(&self, out: &mut dyn core::fmt::Write) -> core::fmt::Result {
        smp::show_cpuinfo(out)
    }

    fn kernel_text(&self) -> core::ops::Range<usize> {
        hinoki_arch_x86_64::layout::text()
    }

    fn poweroff(&self) -> ! {
        self.console.flush();
        let fadt_port = match self.acpi().and_then(|acpi| acpi.pm1a_control) {
            Some(Register::Port(port)) => Some(port),
            _ => None,
        };
        let ports = [fadt_port, Some(memory_map::Q35_PM1A_CONTROL_PORT), Some(memory_map::PIIX4_PM1A_CONTROL_PORT)];
        for port in ports.into_iter().flatten() {
            // SAFETY: the FADT names this port as PM1a control (or it is the chipset's fixed
            // PM1a control port); writing SLP_TYP | SLP_EN enters S5, other values are ignored.
            unsafe { port::write_u16(port, (SLEEP_TYPE_S5 << 10) | SLEEP_ENABLE) };
        }
        power::halt_forever()
    }

    fn exit(&self, status: ExitStatus) -> ! {
        self.console.flush();
        let first_attempt = !EXITING.swap(true, Ordering::SeqCst);
        match status {
            ExitStatus::Success => self.poweroff(),
            ExitStatus::Failure(code) => {
                if first_attempt {
                    // SAFETY: QEMU's isa-debug-exit at this port ends the run with status
                    // (code << 1) | 1; on a machine without it the port is unused.
                    unsafe { port::write_u32(memory_map::DEBUG_EXIT_PORT, code) };
                }
                power::halt_forever()
            }
        }
    }

    fn reboot(&self) -> ! {
        self.console.flush();
        match self.acpi().and_then(|acpi| acpi.reset) {
            // SAFETY: the FADT names this port as the reset register and the value to write.
            Some((Register::Port(port), value)) => unsafe { port::write_u8(port, value) },
            // SAFETY: the FADT names this identity-mapped address as the reset register.
            Some((Register::Memory(address), value)) => unsafe { core::ptr::write_volatile(address as *mut u8, value) },
            None => {}
        }
        power::reset_through_pci_control();
        power::reset_through_keyboard_controller();
        power::reset_through_triple_fault()
    }
}

fn board_main(protocol: BootProtocol) -> ! {
    let console = Ns16550::new(PortRegisters { base: memory_map::COM1_PORT });
    // Without a UART the kernel still runs; nothing is printed.
    let _ = console.initialize(ns16550::PC_CLOCK_HZ, 115_200);
    // SAFETY: the entry code passes the loader's information pointer unchanged, the low
    // 4 GiB are identity-mapped, and nothing has overwritten loader memory yet.
    let mut boot = match unsafe { boot_information::parse(protocol) } {
        Ok(boot) => boot,
        Err(error) => early_failure(&console, format_args!("cannot use the boot information ({:?}): {:?}", protocol, error)),
    };
    let image_start = hinoki_arch_x86_64::layout::image_start() as u64;
    let image_size = hinoki_arch_x86_64::layout::kernel_end() as u64 - image_start;
    let reserved = boot
        .memory
        .reserve(0, memory_map::LOW_MEMORY_SIZE, MemoryKind::Reserved)
        .and_then(|()| boot.memory.reserve(image_start, image_size, MemoryKind::KernelImage))
        .and_then(|()| {
            boot.memory.reserve(
                memory_map::CHIPSET_MMIO_START,
                memory_map::CHIPSET_MMIO_END - memory_map::CHIPSET_MMIO_START,
                MemoryKind::Mmio,
            )
        });
    if reserved.is_err() {
        early_failure(&console, format_args!("memory map full"));
    }
    // SAFETY: the RSDP address comes from the loader (or is searched for in the BIOS areas);
    // firmware tables are identity-mapped and untouched.
    let acpi = unsafe { acpi_tables::read(boot.rsdp) };
    let hpet = acpi.as_ref().ok().and_then(|acpi| acpi.hpet);
    // SAFETY: the HPET address comes from the ACPI HPET table; the identity map covers it
    // and nothing else programs the HPET yet.
    let Some(clock) = (unsafe { Tsc::calibrate(hpet) }) else {
        early_failure(&console, format_args!("cannot calibrate the TSC: no HPET, PIT or CPUID frequency"));
    };
    // SAFETY: as for the calibration above; the HPET's main counter keeps running.
    let hpet = hpet.and_then(|base| unsafe { Hpet::new(base) });
    // Linux's `clocksource=` parameter overrides the choice.
    let requested = boot.command_line().split_ascii_whitespace().find_map(|word| word.strip_prefix("clocksource="));
    let clocksource_is_tsc = match requested {
        Some("tsc") => true,
        Some("hpet") => hpet.is_none(),
        _ => tsc::is_invariant() || hinoki_arch_x86_64::cpu::under_hypervisor() || hpet.is_none(),
    };
    let board = BOARD.call_once(|| Pc { console, cpu: X86Cpu::new(), clock, hpet, clocksource_is_tsc, boot, acpi });
    hinoki_kernel::early_init(board);
    if image_start != memory_map::KERNEL_LOAD_ADDRESS {
        log::warn!("pc: loaded at {:#x}, linked for {:#x}", image_start, memory_map::KERNEL_LOAD_ADDRESS);
    }
    log_devices(board);
    smp::record_cpu_info(0, hinoki_arch_x86_64::apic::initial_apic_id());
    interrupts::start(board.acpi(), &board.cpu, board.clock(), board.clock.frequency_hz(), board.command_line());
    smp::record_cpu_info(0, hinoki_arch_x86_64::apic::apic_id());
    hinoki_kernel::kernel_main(board)
}

/// Logs what the loader and the firmware tables described.
fn log_devices(board: &Pc) {
    log::info!(
        "pc: booted via {}, {} RAM ranges, UART ns16550 at port {:#x}",
        board.boot.protocol,
        board.boot.ram_entries,
        memory_map::COM1_PORT
    );
    if board.boot.unmapped_ram > 0 {
        log::warn!("pc: {} MiB of RAM above the identity map left unused", board.boot.unmapped_ram >> 20);
    }
    log::info!(
        "pc: TSC at {} kHz calibrated against {:?}, {}{}; clocksource {}",
        board.clock.frequency_hz() / 1000,
        board.clock.source(),
        if tsc::is_invariant() { "invariant" } else { "not invariant" },
        if hinoki_arch_x86_64::cpu::under_hypervisor() { ", under a hypervisor" } else { "" },
        board.clock().name()
    );
    match &board.acpi {
        Ok(summary) => acpi_tables::log_summary(summary),
        Err(error) => log::warn!("pc: no usable ACPI tables: {:?}", error),
    }
}

/// The boot information is unusable: say so on COM1 and stop QEMU.
fn early_failure(console: &Ns16550<PortRegisters>, message: core::fmt::Arguments<'_>) -> ! {
    use core::fmt::Write;
    struct Writer<'a>(&'a Ns16550<PortRegisters>);
    impl Write for Writer<'_> {
        fn write_str(&mut self, text: &str) -> core::fmt::Result {
            self.0.write_bytes(text.as_bytes());
            Ok(())
        }
    }
    let _ = write!(Writer(console), "pc: {}\r\n", message);
    console.flush();
    // SAFETY: QEMU's isa-debug-exit ends the run with status 5; elsewhere the port is unused.
    unsafe { port::write_u32(memory_map::DEBUG_EXIT_PORT, 2) };
    power::halt_forever()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    hinoki_kernel::panic::handle_panic(info)
}
