//! The qemu-virt board's virtio-mmio disks: probes every slot the DTB lists and hands the block devices to the kernel's block layer with their interrupts.

use hinoki_interface::Trigger;
use hinoki_kernel::mm::dma::KernelDma;
use virtio_blk::probe::{probe_mmio, MmioSlot};

use crate::devicetree::Devices;

/// GIC INTID of SPI 0.
const FIRST_SPI: u32 = 32;

/// Probes the virtio-mmio slots; block devices become `vda`, `vdb`, ... in command-line order.
pub fn probe(devices: &Devices) {
    let mut present = 0u32;
    // Highest address first: QEMU puts the first `-device` there and lists it first in the DTB,
    // so `vda` is the first disk on the command line, as on Linux.
    for slot in devices.virtio[..devices.virtio_count].iter().rev() {
        // SAFETY: the DTB lists this slot as a virtio-mmio register block; only this probe
        // drives it.
        match unsafe { probe_mmio::<KernelDma>(slot.base, slot.size as usize) } {
            MmioSlot::Empty => continue,
            MmioSlot::Other(kind) => log::info!("virtio-mmio {:#x}: {:?} device, no driver", slot.base, kind),
            MmioSlot::Failed(error) => log::warn!("virtio-mmio {:#x}: block device unusable: {:?}", slot.base, error),
            MmioSlot::Block(device) => {
                // QEMU drives the line as a level (set while the interrupt status is non-zero).
                let irq = Some((FIRST_SPI + slot.interrupt, Trigger::LevelHigh));
                if let Err(error) = hinoki_kernel::block::add_virtio_disk(device, irq, present) {
                    log::warn!("virtio-mmio {:#x}: cannot register the disk: {}", slot.base, error);
                }
            }
        }
        present += 1;
    }
}
