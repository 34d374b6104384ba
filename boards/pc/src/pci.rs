//! The pc board's PCI: configuration space through ECAM (q35, base from the ACPI MCFG) or ports 0xCF8/0xCFC (i440fx), and the virtio-blk disks on bus 0 with their legacy interrupt lines.

use alloc::boxed::Box;

use hinoki_arch_x86_64::port;
use hinoki_interface::{DmaMemory, PhysicalAddress, Trigger};
use hinoki_kernel::mm::dma::KernelDma;
use virtio_blk::probe::{probe_pci, PciBlock};
use virtio_blk::{Cam, ConfigurationAccess, DeviceFunction, MmioCam};

use crate::acpi_tables::AcpiSummary;

/// Configuration mechanism #1: address register.
const CONFIG_ADDRESS_PORT: u16 = 0xcf8;
/// Configuration mechanism #1: data register.
const CONFIG_DATA_PORT: u16 = 0xcfc;
/// ECAM bytes per bus (32 devices x 8 functions x 4 KiB).
const ECAM_BUS_SIZE: usize = 1 << 20;

/// The address written to 0xCF8 for a register of a function.
fn config_address(function: DeviceFunction, register: u8) -> u32 {
    (1 << 31)
        | (u32::from(function.bus) << 16)
        | (u32::from(function.device & 0x1f) << 11)
        | (u32::from(function.function & 0x7) << 8)
        | u32::from(register & 0xfc)
}

/// PCI configuration space through the legacy ports (256 bytes per function).
pub struct PortConfiguration;

impl ConfigurationAccess for PortConfiguration {
    fn read_word(&self, function: DeviceFunction, register: u8) -> u32 {
        // SAFETY: 0xCF8/0xCFC are the chipset's configuration ports; the board is their
        // only user and probing runs on one thread.
        unsafe {
            port::write_u32(CONFIG_ADDRESS_PORT, config_address(function, register));
            port::read_u32(CONFIG_DATA_PORT)
        }
    }

    fn write_word(&mut self, function: DeviceFunction, register: u8, data: u32) {
        // SAFETY: as in `read_word`.
        unsafe {
            port::write_u32(CONFIG_ADDRESS_PORT, config_address(function, register));
            port::write_u32(CONFIG_DATA_PORT, data);
        }
    }

    unsafe fn unsafe_clone(&self) -> Self {
        PortConfiguration
    }
}

/// Finds the virtio disks on PCI bus 0 and hands them to the kernel.
pub fn probe(acpi: Option<&AcpiSummary>) {
    match acpi.and_then(|acpi| acpi.pci_ecam) {
        Some(base) => {
            // Only bus 0 is probed, so only its megabyte of the ECAM window is mapped.
            let Some(address) = KernelDma::map_registers(PhysicalAddress(base), ECAM_BUS_SIZE) else {
                log::warn!("pci: cannot map the ECAM window at {:#x}", base);
                return;
            };
            // SAFETY: the MCFG names this window as segment 0's ECAM; bus 0 (the only bus
            // accessed) is mapped as device memory and nothing else drives configuration space.
            let access = unsafe { MmioCam::new(address as *mut u8, Cam::Ecam) };
            register(probe_pci::<KernelDma, _>(access).0, "ECAM");
        }
        None => register(probe_pci::<KernelDma, _>(PortConfiguration).0, "ports 0xcf8/0xcfc"),
    }
}

fn register(found: alloc::vec::Vec<PciBlock<KernelDma>>, mechanism: &str) {
    for (index, block) in found.into_iter().enumerate() {
        let (bus, device, function) = block.location;
        match block.device {
            Ok(disk) => {
                // PCI INTx lines are level-triggered; the MADT overrides give their polarity.
                let irq = block.interrupt_line.map(|line| (u32::from(line), Trigger::LevelHigh));
                if let Err(error) = hinoki_kernel::block::add_virtio_disk(Box::new(disk), irq, index as u32) {
                    log::warn!("pci {:02x}:{:02x}.{}: cannot register the disk: {}", bus, device, function, error);
                }
            }
            Err(error) => log::warn!("pci {:02x}:{:02x}.{} ({}): virtio-blk unusable: {:?}", bus, device, function, mechanism, error),
        }
    }
}
