//! Reads the qemu-virt machine's devices and memory from the flattened device tree QEMU passes in x0.

use fdt::Fdt;
use hinoki_arch_aarch64::psci::Conduit;
use hinoki_interface::{MemoryKind, MemoryMap, Trigger};

/// Most CPUs recorded.
pub const MAX_CPUS: usize = 8;

/// Most virtio-mmio slots recorded.
pub const MAX_VIRTIO_SLOTS: usize = 32;

/// Which GIC the machine has, and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicDescription {
    /// GICv2: distributor and CPU interface.
    Version2 {
        /// Distributor base.
        distributor: u64,
        /// CPU interface base.
        cpu_interface: u64,
    },
    /// GICv3: distributor and redistributor region.
    Version3 {
        /// Distributor base.
        distributor: u64,
        /// First redistributor base.
        redistributor: u64,
    },
}

/// A virtio-mmio transport slot: registers and interrupt.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VirtioSlot {
    /// Register block base.
    pub base: u64,
    /// Register block size.
    pub size: u64,
    /// The SPI number (GIC interrupt ID minus 32).
    pub interrupt: u32,
}

/// Everything the board takes from the DTB.
pub struct Devices {
    /// RAM and reservations.
    pub memory: MemoryMap<24>,
    /// PL011 console base.
    pub uart: u64,
    /// PL011 reference clock, when the DTB names one.
    pub uart_clock_hz: Option<u32>,
    /// The PL011's interrupt (GIC INTID) and trigger, from its `interrupts` property.
    pub uart_interrupt: Option<(u32, Trigger)>,
    /// The interrupt controller.
    pub gic: Option<GicDescription>,
    /// Generic-timer PPIs: secure physical, non-secure physical, virtual, hypervisor.
    pub timer_interrupts: [u32; 4],
    /// The triggers of `timer_interrupts`.
    pub timer_triggers: [Trigger; 4],
    /// The PL031 real-time clock's register base, when the DTB lists one.
    pub rtc: Option<u64>,
    /// virtio-mmio slots.
    pub virtio: [VirtioSlot; MAX_VIRTIO_SLOTS],
    /// Number of valid entries in `virtio`.
    pub virtio_count: usize,
    /// How to reach PSCI firmware.
    pub psci: Option<Conduit>,
    /// CPUs listed under `/cpus`.
    pub cpu_count: usize,
    /// The MPIDR affinity (`reg`) of each CPU under `/cpus`, in DTB order (the first
    /// `cpu_count`, at most [`MAX_CPUS`]).
    pub cpu_affinities: [u64; MAX_CPUS],
    /// `/chosen/bootargs`.
    pub command_line: &'static str,
    /// Size of the DTB blob, reserved in the memory map.
    pub dtb_size: usize,
}

/// Why the DTB could not be used (printed with `{:?}` on the fallback console).
#[derive(Debug)]
#[allow(dead_code)]
pub enum DeviceTreeError {
    /// The blob failed validation (bad magic, truncated).
    Invalid(fdt::FdtError),
    /// A node the board cannot run without is missing.
    Missing(&'static str),
    /// More memory ranges than the map holds.
    TooManyRegions,
}

fn cells(bytes: &[u8]) -> impl Iterator<Item = u32> + '_ {
    bytes.chunks_exact(4).map(|chunk| u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]))
}

/// Decodes a three-cell GIC interrupt specifier (type: 0 SPI, 1 PPI; number; flags with the
/// trigger in bits [3:0]: 1 rising edge, 2 falling edge, 4 active-high level, 8 active-low
/// level) into the INTID (SPI n is 32 + n, PPI n is 16 + n) and trigger.
fn interrupt_specifier(cells: &[u32]) -> (u32, Trigger) {
    let intid = cells[1] + if cells[0] == 1 { 16 } else { 32 };
    let trigger = match cells[2] & 0xf {
        1 => Trigger::EdgeRising,
        2 => Trigger::EdgeFalling,
        8 => Trigger::LevelLow,
        _ => Trigger::LevelHigh,
    };
    (intid, trigger)
}

/// Parses the DTB at `address`.
///
/// # Safety
/// `address` must point to memory that holds a DTB or is at least readable for its header,
/// and the blob must stay in place, unmodified, for the rest of the kernel's life.
pub unsafe fn parse(address: usize) -> Result<Devices, DeviceTreeError> {
    // SAFETY: the caller guarantees a readable, permanent blob at `address`; `from_ptr`
    // validates the header and bounds every later read by its total size.
    let tree: Fdt<'static> = unsafe { Fdt::from_ptr(address as *const u8) }.map_err(DeviceTreeError::Invalid)?;
    let mut memory = MemoryMap::new();
    for region in tree.memory().regions() {
        memory.add_ram(region.starting_address as u64, region.size.unwrap_or(0) as u64).map_err(|_| DeviceTreeError::TooManyRegions)?;
    }
    for reservation in tree.memory_reservations() {
        memory
            .reserve(reservation.address() as u64, reservation.size() as u64, MemoryKind::Reserved)
            .map_err(|_| DeviceTreeError::TooManyRegions)?;
    }
    if let Some(reserved) = tree.find_node("/reserved-memory") {
        for child in reserved.children() {
            for region in child.reg().into_iter().flatten() {
                memory
                    .reserve(region.starting_address as u64, region.size.unwrap_or(0) as u64, MemoryKind::Reserved)
                    .map_err(|_| DeviceTreeError::TooManyRegions)?;
            }
        }
    }
    memory.reserve(address as u64, tree.total_size() as u64, MemoryKind::Reserved).map_err(|_| DeviceTreeError::TooManyRegions)?;

    let uart_node = tree
        .chosen()
        .stdout()
        .filter(|node| node.compatible().is_some_and(|c| c.all().any(|s| s == "arm,pl011")))
        .or_else(|| tree.find_compatible(&["arm,pl011"]))
        .ok_or(DeviceTreeError::Missing("arm,pl011 UART"))?;
    let uart =
        uart_node.reg().and_then(|mut regions| regions.next()).ok_or(DeviceTreeError::Missing("UART registers"))?.starting_address as u64;
    let uart_clock_hz = uart_node
        .property("clocks")
        .and_then(|clocks| cells(clocks.value).next())
        .and_then(|phandle| tree.find_phandle(phandle))
        .and_then(|clock| clock.property("clock-frequency"))
        .and_then(|frequency| frequency.as_usize())
        .map(|hz| hz as u32);

    let uart_interrupt = uart_node.property("interrupts").and_then(|property| {
        let mut specifier = [0u32; 3];
        for (slot, value) in specifier.iter_mut().zip(cells(property.value)) {
            *slot = value;
        }
        (property.value.len() >= 12).then(|| interrupt_specifier(&specifier))
    });

    let gic = if let Some(node) = tree.find_compatible(&["arm,gic-v3"]) {
        let mut regions = node.reg().into_iter().flatten();
        match (regions.next(), regions.next()) {
            (Some(distributor), Some(redistributor)) => Some(GicDescription::Version3 {
                distributor: distributor.starting_address as u64,
                redistributor: redistributor.starting_address as u64,
            }),
            _ => None,
        }
    } else if let Some(node) = tree.find_compatible(&["arm,cortex-a15-gic", "arm,gic-400"]) {
        let mut regions = node.reg().into_iter().flatten();
        match (regions.next(), regions.next()) {
            (Some(distributor), Some(cpu_interface)) => Some(GicDescription::Version2 {
                distributor: distributor.starting_address as u64,
                cpu_interface: cpu_interface.starting_address as u64,
            }),
            _ => None,
        }
    } else {
        None
    };

    let mut timer_interrupts = [0u32; 4];
    let mut timer_triggers = [Trigger::LevelHigh; 4];
    if let Some(timer) = tree.find_compatible(&["arm,armv8-timer", "arm,armv7-timer"]) {
        if let Some(property) = timer.property("interrupts") {
            // Three cells per interrupt: type (1 = PPI), number, flags. PPI n is INTID 16 + n.
            let values: [u32; 12] = {
                let mut all = [0u32; 12];
                for (slot, value) in all.iter_mut().zip(cells(property.value)) {
                    *slot = value;
                }
                all
            };
            for (index, interrupt) in timer_interrupts.iter_mut().enumerate() {
                (*interrupt, timer_triggers[index]) = interrupt_specifier(&values[index * 3..index * 3 + 3]);
            }
        }
    }

    let mut virtio = [VirtioSlot::default(); MAX_VIRTIO_SLOTS];
    let mut virtio_count = 0;
    for node in tree.all_nodes().filter(|node| node.compatible().is_some_and(|c| c.all().any(|s| s == "virtio,mmio"))) {
        let Some(region) = node.reg().and_then(|mut regions| regions.next()) else { continue };
        let interrupt = node.property("interrupts").map(|p| cells(p.value).nth(1).unwrap_or(0)).unwrap_or(0);
        if virtio_count < MAX_VIRTIO_SLOTS {
            virtio[virtio_count] = VirtioSlot { base: region.starting_address as u64, size: region.size.unwrap_or(0) as u64, interrupt };
            virtio_count += 1;
        }
    }
    // The DTB lists slots from the highest address down; keep them in address order.
    virtio[..virtio_count].sort_unstable_by_key(|slot| slot.base);

    // Device registers the kernel maps as device memory: the UART, every GIC frame, and
    // the virtio-mmio slots as one span.
    let mut mmio = [(0u64, 0u64); 10];
    let mut mmio_count = 0;
    let uart_registers = uart_node.reg().and_then(|mut regions| regions.next());
    let gic_node = tree.find_compatible(&["arm,gic-v3", "arm,cortex-a15-gic", "arm,gic-400"]);
    let gic_registers = gic_node.and_then(|node| node.reg()).into_iter().flatten();
    let rtc_node = tree.find_compatible(&["arm,pl031"]);
    let rtc_registers = rtc_node.and_then(|node| node.reg()).and_then(|mut regions| regions.next());
    let rtc = rtc_registers.as_ref().map(|region| region.starting_address as u64);
    for region in uart_registers.into_iter().chain(gic_registers).chain(rtc_registers) {
        if mmio_count < mmio.len() {
            mmio[mmio_count] = (region.starting_address as u64, region.size.unwrap_or(0) as u64);
            mmio_count += 1;
        }
    }
    if let (Some(first), Some(last)) = (virtio[..virtio_count].first(), virtio[..virtio_count].last()) {
        mmio[mmio_count.min(mmio.len() - 1)] = (first.base, last.base + last.size - first.base);
        mmio_count = (mmio_count + 1).min(mmio.len());
    }
    for &(start, size) in &mmio[..mmio_count] {
        memory.reserve(start, size, MemoryKind::Mmio).map_err(|_| DeviceTreeError::TooManyRegions)?;
    }

    let psci =
        tree.find_node("/psci").and_then(|node| node.property("method")).and_then(|method| method.as_str()).and_then(Conduit::from_method);

    let mut cpu_affinities = [0u64; MAX_CPUS];
    for (slot, cpu) in cpu_affinities.iter_mut().zip(tree.cpus()) {
        *slot = cpu.ids().first() as u64;
    }

    Ok(Devices {
        memory,
        uart,
        uart_clock_hz,
        uart_interrupt,
        gic,
        rtc,
        timer_interrupts,
        timer_triggers,
        virtio,
        virtio_count,
        psci,
        cpu_count: tree.cpus().count(),
        cpu_affinities,
        command_line: tree.chosen().bootargs().unwrap_or(""),
        dtb_size: tree.total_size(),
    })
}
