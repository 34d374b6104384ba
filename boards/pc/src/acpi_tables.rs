//! ACPI tables through the `acpi` crate: processors, I/O APICs and overrides from the MADT, the HPET, and the FADT's PM1a control and reset registers.

use core::ptr::NonNull;

use acpi::address::{AddressSpace, GenericAddress};
use acpi::fadt::Fadt;
use acpi::madt::{Madt, MadtEntry};
use acpi::mcfg::Mcfg;
use acpi::{AcpiError, AcpiHandler, AcpiTables, HpetInfo, PhysicalMapping};

/// How many entries of each MADT kind are kept for logging.
pub const ENTRY_CAPACITY: usize = 16;

/// Physical memory is identity-mapped (the boot page tables cover the low 4 GiB, where
/// firmware puts its tables), so mapping is taking the address.
#[derive(Clone, Copy, Debug)]
struct IdentityMapping;

impl AcpiHandler for IdentityMapping {
    unsafe fn map_physical_region<T>(&self, physical_address: usize, size: usize) -> PhysicalMapping<Self, T> {
        let virtual_start = NonNull::new(physical_address as *mut T).expect("ACPI table at physical address 0");
        // SAFETY: the caller guarantees a `T` at `physical_address`; with the identity map the
        // same address is its virtual address, valid for `size` bytes and never unmapped.
        unsafe { PhysicalMapping::new(physical_address, virtual_start, size, size, *self) }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

/// A local APIC from the MADT (type 0 or 9).
#[derive(Clone, Copy, Debug, Default)]
pub struct Processor {
    /// ACPI processor UID.
    pub processor_id: u32,
    /// Local APIC (or x2APIC) id.
    pub apic_id: u32,
    /// Enabled, or at least online-capable.
    pub usable: bool,
}

/// An I/O APIC from the MADT.
#[derive(Clone, Copy, Debug, Default)]
pub struct IoApic {
    /// I/O APIC id.
    pub id: u8,
    /// Register base address.
    pub address: u32,
    /// First global system interrupt it serves.
    pub interrupt_base: u32,
}

/// An ISA interrupt source override from the MADT.
#[derive(Clone, Copy, Debug, Default)]
pub struct SourceOverride {
    /// ISA IRQ.
    pub irq: u8,
    /// Global system interrupt it is wired to.
    pub global_interrupt: u32,
    /// MPS INTI flags (polarity, trigger mode).
    pub flags: u16,
}

/// Fixed-size list of up to [`ENTRY_CAPACITY`] items plus the true count.
#[derive(Clone, Copy, Debug)]
pub struct Entries<T: Copy + Default> {
    items: [T; ENTRY_CAPACITY],
    /// How many the table had (may exceed the kept items).
    pub count: usize,
}

impl<T: Copy + Default> Entries<T> {
    fn new() -> Self {
        Entries { items: [T::default(); ENTRY_CAPACITY], count: 0 }
    }

    fn push(&mut self, item: T) {
        if let Some(slot) = self.items.get_mut(self.count) {
            *slot = item;
        }
        self.count += 1;
    }

    /// The kept items.
    pub fn as_slice(&self) -> &[T] {
        &self.items[..self.count.min(ENTRY_CAPACITY)]
    }
}

/// A register named by a Generic Address Structure that the board knows how to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Register {
    /// An I/O port.
    Port(u16),
    /// A memory-mapped byte.
    Memory(u64),
}

impl Register {
    fn from_generic(address: GenericAddress) -> Option<Register> {
        match address.address_space {
            AddressSpace::SystemIo if address.address != 0 && address.address <= u16::MAX as u64 => {
                Some(Register::Port(address.address as u16))
            }
            AddressSpace::SystemMemory if address.address != 0 => Some(Register::Memory(address.address)),
            _ => None,
        }
    }
}

/// What the board uses from ACPI.
#[derive(Clone, Copy, Debug)]
pub struct AcpiSummary {
    /// RSDP revision (0: ACPI 1.0 with an RSDT, 2: XSDT).
    pub revision: u8,
    /// Local APIC base from the MADT.
    pub local_apic_address: u32,
    /// Processors (local APICs).
    pub processors: Entries<Processor>,
    /// I/O APICs.
    pub io_apics: Entries<IoApic>,
    /// Interrupt source overrides.
    pub overrides: Entries<SourceOverride>,
    /// Whether the MADT says dual 8259 PICs are present.
    pub legacy_pics: bool,
    /// HPET register block base.
    pub hpet: Option<usize>,
    /// PM1a control register (for S5 power-off).
    pub pm1a_control: Option<Register>,
    /// FADT reset register and the value to write.
    pub reset: Option<(Register, u8)>,
    /// PCI Express configuration space (ECAM) of segment 0, bus 0, from the MCFG (q35;
    /// the i440fx has none and is reached through ports 0xCF8/0xCFC).
    pub pci_ecam: Option<u64>,
}

/// Finds the tables from `rsdp` (or by scanning the BIOS areas) and extracts the summary.
///
/// # Safety
/// `rsdp`, when given, must be the physical address of an RSDP; the ACPI tables must be
/// identity-mapped and unchanged since boot.
pub unsafe fn read(rsdp: Option<usize>) -> Result<AcpiSummary, AcpiError> {
    let tables = match rsdp {
        // SAFETY: forwarded from the caller.
        Some(address) => unsafe { AcpiTables::from_rsdp(IdentityMapping, address)? },
        // SAFETY: the BIOS areas (EBDA, 0xE0000-0xFFFFF) are identity-mapped and readable.
        None => unsafe { AcpiTables::search_for_rsdp_bios(IdentityMapping)? },
    };
    let madt = tables.find_table::<Madt>()?;
    let mut summary = AcpiSummary {
        revision: tables.revision(),
        local_apic_address: madt.get().local_apic_address,
        processors: Entries::new(),
        io_apics: Entries::new(),
        overrides: Entries::new(),
        legacy_pics: madt.get().supports_8259(),
        hpet: None,
        pm1a_control: None,
        reset: None,
        pci_ecam: None,
    };
    for entry in madt.get().entries() {
        match entry {
            MadtEntry::LocalApic(local) => summary.processors.push(Processor {
                processor_id: local.processor_id as u32,
                apic_id: local.apic_id as u32,
                usable: { local.flags } & 0b11 != 0,
            }),
            MadtEntry::LocalX2Apic(local) => summary.processors.push(Processor {
                processor_id: { local.processor_uid },
                apic_id: { local.x2apic_id },
                usable: { local.flags } & 0b11 != 0,
            }),
            MadtEntry::IoApic(io_apic) => summary.io_apics.push(IoApic {
                id: io_apic.io_apic_id,
                address: { io_apic.io_apic_address },
                interrupt_base: { io_apic.global_system_interrupt_base },
            }),
            MadtEntry::InterruptSourceOverride(source) => summary.overrides.push(SourceOverride {
                irq: source.irq,
                global_interrupt: { source.global_system_interrupt },
                flags: { source.flags },
            }),
            _ => {}
        }
    }
    summary.hpet = HpetInfo::new(&tables).ok().map(|hpet| hpet.base_address);
    if let Ok(mcfg) = tables.find_table::<Mcfg>() {
        summary.pci_ecam = mcfg
            .get()
            .entries()
            .iter()
            .find(|entry| entry.pci_segment_group == 0 && entry.bus_number_start == 0)
            .map(|entry| entry.base_address);
    }
    if let Ok(fadt) = tables.find_table::<Fadt>() {
        summary.pm1a_control = fadt.pm1a_control_block().ok().and_then(Register::from_generic);
        if { fadt.flags }.supports_system_reset_via_fadt() {
            let value = fadt.reset_value;
            summary.reset = fadt.reset_register().ok().and_then(Register::from_generic).map(|register| (register, value));
        }
    }
    Ok(summary)
}

/// Logs the summary, one line per device.
pub fn log_summary(summary: &AcpiSummary) {
    log::info!(
        "ACPI: revision {}, local APIC at {:#x}, 8259 PICs {}",
        summary.revision,
        summary.local_apic_address,
        if summary.legacy_pics { "present" } else { "absent" }
    );
    log::info!("ACPI: MADT lists {} processors", summary.processors.count);
    for processor in summary.processors.as_slice() {
        log::info!(
            "ACPI:   processor {} APIC id {} {}",
            processor.processor_id,
            processor.apic_id,
            if processor.usable { "enabled" } else { "disabled" }
        );
    }
    for io_apic in summary.io_apics.as_slice() {
        log::info!("ACPI: IOAPIC id {} at {:#x}, GSI base {}", io_apic.id, io_apic.address, io_apic.interrupt_base);
    }
    for source in summary.overrides.as_slice() {
        log::info!("ACPI: interrupt source override IRQ {} -> GSI {} flags {:#x}", source.irq, source.global_interrupt, source.flags);
    }
    match summary.hpet {
        Some(base) => log::info!("ACPI: HPET at {:#x}", base),
        None => log::info!("ACPI: no HPET"),
    }
    log::info!("ACPI: PM1a control {:?}, reset register {:?}", summary.pm1a_control, summary.reset);
    match summary.pci_ecam {
        Some(base) => log::info!("ACPI: MCFG: PCI ECAM for bus 0 at {:#x}", base),
        None => log::info!("ACPI: no MCFG, PCI configuration through ports 0xcf8/0xcfc"),
    }
}
