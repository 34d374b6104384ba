//! Finding virtio block devices: one virtio-mmio slot at a time, or every virtio-pci function on PCI bus 0 (BARs mapped, memory decoding and bus mastering enabled, legacy interrupt line read).

use alloc::vec::Vec;
use core::ptr::NonNull;

use hinoki_interface::{DmaMemory, PhysicalAddress};
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::transport::pci::bus::{BarInfo, Command, ConfigurationAccess, PciRoot};
use virtio_drivers::transport::pci::{virtio_device_type, PciTransport};
use virtio_drivers::transport::{DeviceType, Transport};

use crate::{ProbeError, VirtioBlock};

/// What a virtio-mmio slot holds.
pub enum MmioSlot<D: DmaMemory> {
    /// Nothing (QEMU leaves unused slots with device ID 0), or registers that are not virtio.
    Empty,
    /// A virtio device of another type.
    Other(DeviceType),
    /// A block device, ready.
    Block(alloc::boxed::Box<VirtioBlock<D, MmioTransport<'static>>>),
    /// A block device that failed to initialize.
    Failed(ProbeError),
}

/// Probes the virtio-mmio slot of `size` bytes at `base`.
///
/// # Safety
/// `base` and `size` must describe a virtio-mmio register block (from the firmware's
/// description) that nothing else drives.
pub unsafe fn probe_mmio<D: DmaMemory>(base: u64, size: usize) -> MmioSlot<D> {
    let Some(address) = D::map_registers(PhysicalAddress(base), size) else { return MmioSlot::Empty };
    let Some(header) = NonNull::new(address as *mut VirtIOHeader) else { return MmioSlot::Empty };
    // SAFETY: the caller guarantees a virtio-mmio block of `size` bytes, now mapped at
    // `header`, owned by this driver from here on.
    let transport = match unsafe { MmioTransport::new(header, size) } {
        Ok(transport) => transport,
        Err(_) => return MmioSlot::Empty,
    };
    match transport.device_type() {
        DeviceType::Block => match VirtioBlock::new(transport) {
            Ok(device) => MmioSlot::Block(alloc::boxed::Box::new(device)),
            Err(error) => MmioSlot::Failed(error),
        },
        other => MmioSlot::Other(other),
    }
}

/// A virtio block device found on PCI.
pub struct PciBlock<D: DmaMemory> {
    /// Bus, device and function, for the log.
    pub location: (u8, u8, u8),
    /// The legacy INTx line the firmware assigned (configuration register 0x3C), if any.
    pub interrupt_line: Option<u8>,
    /// The device, or why it could not be used.
    pub device: Result<VirtioBlock<D, PciTransport>, ProbeError>,
}

/// Offset of the interrupt line and pin in a type-0 configuration header.
const INTERRUPT_REGISTER: u8 = 0x3c;

/// Finds every virtio block device on PCI bus 0 reached through `access`: maps its memory
/// BARs with `D`, enables memory decoding and bus mastering, and initializes it. Also
/// returns how many virtio functions of any type were seen (for `virtioN` numbering).
pub fn probe_pci<D: DmaMemory, C: ConfigurationAccess>(access: C) -> (Vec<PciBlock<D>>, u32) {
    // SAFETY: the clone reads only the header and the interrupt-line register; the root
    // below does the writes, and both live only during this probe.
    let reader = unsafe { access.unsafe_clone() };
    let mut root = PciRoot::new(access);
    let mut found = Vec::new();
    let mut virtio_functions = 0;
    let functions: Vec<_> = root.enumerate_bus(0).collect();
    for (function, info) in functions {
        let Some(kind) = virtio_device_type(&info) else { continue };
        virtio_functions += 1;
        if kind != DeviceType::Block {
            continue;
        }
        let line = reader.read_word(function, INTERRUPT_REGISTER) as u8;
        let interrupt_line = (line != 0 && line != 0xff).then_some(line);
        let mut mapped = true;
        if let Ok(bars) = root.bars(function) {
            for bar in bars.iter().flatten() {
                if let BarInfo::Memory { address, size, .. } = bar {
                    if *size > 0 && D::map_registers(PhysicalAddress(*address), *size as usize).is_none() {
                        mapped = false;
                    }
                }
            }
        }
        let (_, command) = root.get_status_command(function);
        root.set_command(function, command | Command::MEMORY_SPACE | Command::BUS_MASTER);
        let device = if mapped {
            PciTransport::new::<crate::DmaHal<D>, C>(&mut root, function)
                .map_err(|_| ProbeError::Device(virtio_drivers::Error::InvalidParam))
                .and_then(VirtioBlock::new)
        } else {
            Err(ProbeError::NoMemory)
        };
        found.push(PciBlock { location: (function.bus, function.device, function.function), interrupt_line, device });
    }
    (found, virtio_functions)
}
