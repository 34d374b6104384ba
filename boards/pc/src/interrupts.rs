//! pc interrupt wiring: the APICs from the MADT (local APIC in x2APIC or xAPIC mode, I/O APICs with the interrupt source overrides), the trap handler, the LAPIC-timer tick, COM1's receive interrupt, TLB shootdowns and APIC errors.

use apic::local::InterruptCommand;
use apic::timer::{self, TimerKind};
use apic::vector::{ERROR_APIC_VECTOR, TLB_SHOOTDOWN_VECTOR};
use apic::{Apic, LapicTimer, LocalApicAccess, SourceOverride};
use hinoki_arch_x86_64::exception::{self, TrapFrame};
use hinoki_arch_x86_64::{apic as local_apic, paging, percpu, tsc, X86Cpu};
use hinoki_interface::{Clock, ClockEvent, Cpu, InterruptController, Trigger};
use hinoki_kernel::sync::Once;

use crate::acpi_tables::AcpiSummary;

/// COM1's ISA IRQ.
pub const COM1_IRQ: u32 = 4;
/// The device name Linux gives COM1 in `/proc/interrupts`.
const COM1_DEVICE_NAME: &str = "ttyS0";

/// The local APIC through the arch crate: x2APIC MSRs or xAPIC MMIO, whichever was chosen.
pub struct ArchLocalApic;

impl LocalApicAccess for ArchLocalApic {
    fn read(&self, offset: u32) -> u32 {
        local_apic::read(offset)
    }
    fn write(&self, offset: u32, value: u32) {
        local_apic::write(offset, value)
    }
    fn send(&self, command: InterruptCommand) {
        local_apic::send(command.x2apic_value(), command.xapic_value())
    }
    fn apic_id(&self) -> u32 {
        local_apic::apic_id()
    }
    fn current_vector(&self) -> u8 {
        percpu::current_vector()
    }
    fn write_tsc_deadline(&self, deadline: u64) {
        local_apic::write_tsc_deadline(deadline)
    }
    fn read_tsc(&self) -> u64 {
        tsc::read()
    }
}

static LOCAL_APIC: ArchLocalApic = ArchLocalApic;
static CONTROLLER: Once<Apic<ArchLocalApic>> = Once::new();
static TIMER: Once<LapicTimer<ArchLocalApic>> = Once::new();

/// The APICs, once [`start`] brought them up.
pub fn controller() -> Option<&'static Apic<ArchLocalApic>> {
    CONTROLLER.get()
}

/// The LAPIC timer, once [`start`] calibrated it.
pub fn timer() -> Option<&'static LapicTimer<ArchLocalApic>> {
    TIMER.get()
}

/// Vectors 32-255: APIC errors are a system vector counted in `ERR` (as on Linux, not an
/// IRQ of their own); everything else goes through the kernel's IRQ layer.
fn trap_entry(_frame: &mut TrapFrame) {
    if percpu::current_vector() == ERROR_APIC_VECTOR {
        if let Some(controller) = controller() {
            let status = controller.take_error_status();
            controller.end_of_interrupt(ERROR_APIC_VECTOR as u32);
            log::warn!("APIC error on CPU {}: ESR {:#x}", percpu::this_cpu().cpu_id(), status);
        }
        return;
    }
    hinoki_kernel::irq::handle_interrupt();
}

/// Marks the 2 MiB pages of the device registers uncached, before any CPU maps them.
fn map_devices_uncached(acpi: &AcpiSummary, xapic_base: usize) {
    let devices = acpi
        .io_apics
        .as_slice()
        .iter()
        .map(|io_apic| io_apic.address as u64)
        .chain(acpi.hpet.map(|hpet| hpet as u64))
        .chain([xapic_base as u64]);
    for address in devices {
        // SAFETY: these pages hold only the chipset's device registers (the APIC, I/O APIC
        // and HPET windows at 0xfec00000-0xfeffffff); no other CPU runs yet.
        if let Err(error) = unsafe { paging::make_uncached(address, 4096) } {
            log::warn!("pc: cannot map {:#x} uncached: {:?}", address, error);
        }
    }
}

/// Brings up interrupts on the boot CPU: the local APIC (x2APIC unless the command line
/// says `nox2apic` or the CPU lacks it), the I/O APICs, the trap handler, the LAPIC timer
/// (TSC-deadline mode where the CPU has it, else one-shot calibrated against `reference`) as
/// the periodic tick, COM1's receive interrupt, TLB shootdowns and APIC errors; then unmasks
/// interrupts. Without an APIC or ACPI tables the kernel stays polled.
pub fn start(acpi: Option<&AcpiSummary>, cpu: &'static X86Cpu, reference: &'static dyn Clock, tsc_hz: u64, command_line: &str) {
    let Some(acpi) = acpi else { return };
    if !local_apic::has_apic() || acpi.io_apics.count == 0 {
        log::warn!("pc: no local APIC or I/O APIC; the console stays polled");
        return;
    }
    let xapic_base = if acpi.local_apic_address != 0 { acpi.local_apic_address as usize } else { local_apic::base_address() };
    map_devices_uncached(acpi, xapic_base);
    let allow_x2apic = !command_line.split_ascii_whitespace().any(|word| word == "nox2apic");
    let mode = local_apic::choose_mode(allow_x2apic, xapic_base);
    // SAFETY: the mode is chosen, interrupts are masked, and the xAPIC page (if used) was
    // just mapped uncached.
    unsafe { local_apic::enable_on_this_cpu() };
    let mut io_apics = [(0usize, 0u32); apic::controller::MAX_IO_APICS];
    for (slot, io_apic) in io_apics.iter_mut().zip(acpi.io_apics.as_slice()) {
        *slot = (io_apic.address as usize, io_apic.interrupt_base);
    }
    let io_apic_count = acpi.io_apics.count.min(io_apics.len());
    let mut overrides = [SourceOverride::default(); crate::acpi_tables::ENTRY_CAPACITY];
    for (slot, source) in overrides.iter_mut().zip(acpi.overrides.as_slice()) {
        *slot = SourceOverride { irq: source.irq, global_interrupt: source.global_interrupt, flags: source.flags };
    }
    let override_count = acpi.overrides.as_slice().len();
    let controller = CONTROLLER.call_once(|| {
        // SAFETY: the I/O APIC bases come from the MADT and were mapped uncached above;
        // nothing else programs them. LOCAL_APIC reaches the calling CPU's local APIC.
        unsafe { Apic::new(&LOCAL_APIC, cpu, &io_apics[..io_apic_count], &overrides[..override_count]) }
    });
    controller.init_cpu();
    exception::set_interrupt_handler(trap_entry);
    log::info!(
        "pc: local APIC in {} mode, ID {}; {} I/O APIC pins; 8259 PICs remapped to {:#x} and masked",
        match mode {
            local_apic::Mode::X2Apic => "x2APIC",
            local_apic::Mode::XApic(_) => "xAPIC",
        },
        local_apic::apic_id(),
        controller.io_apic_pins(),
        hinoki_arch_x86_64::pic::MASTER_VECTOR_BASE
    );

    let kind = if local_apic::has_tsc_deadline() {
        TimerKind::TscDeadline { tsc_hz }
    } else {
        TimerKind::OneShot { frequency_hz: timer::calibrate_one_shot(&LOCAL_APIC, reference) }
    };
    let timer = TIMER.call_once(|| LapicTimer::new(&LOCAL_APIC, kind));
    log::info!("pc: LAPIC timer {} ({:?}), calibrated against {}", timer.name(), kind, reference.name());
    if let Err(error) = hinoki_kernel::tick::start(Trigger::EdgeRising) {
        log::warn!("pc: no periodic tick: {:?}", error);
    }
    if let Err(error) = hinoki_kernel::irq::request_percpu_irq(
        TLB_SHOOTDOWN_VECTOR as u32,
        "TLB shootdowns",
        crate::smp::handle_tlb_shootdown,
        Trigger::EdgeRising,
    ) {
        log::warn!("pc: no TLB shootdown vector: {:?}", error);
    }
    if let Err(error) = hinoki_kernel::tty::start_receive_interrupt(COM1_IRQ, Trigger::EdgeRising, COM1_DEVICE_NAME) {
        log::warn!("pc: console receive stays polled: {:?}", error);
    }
    cpu.enable_interrupts();
}
