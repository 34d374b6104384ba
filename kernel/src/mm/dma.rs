//! The kernel's DMA memory for drivers ([`hinoki_interface::DmaMemory`]): zeroed pages from the buddy allocator (ZONE_DMA32 where the platform has it), address translation through the MMU, and identity-mapped device registers (`ioremap`).

use hinoki_interface::{DmaMemory, DmaRegion, PageFlags, PhysicalAddress, VirtualAddress};

use super::{AllocFlags, MEMORY};

const PAGE_SIZE: usize = 4096;

/// Applies the buddy allocator's direct-map translation, or returns `identity` before the
/// allocator exists (the kernel then runs identity-mapped).
fn direct_map<T>(translate: impl FnOnce(&super::BuddyAllocator) -> T, identity: T) -> T {
    match MEMORY.buddy() {
        Some(buddy) => translate(buddy),
        None => identity,
    }
}

/// The buddy order that holds `pages` pages.
fn order_for(pages: usize) -> u32 {
    pages.max(1).next_power_of_two().trailing_zeros()
}

/// DMA memory as the kernel provides it; boards name this type when they create a driver.
pub struct KernelDma;

impl DmaMemory for KernelDma {
    fn allocate(pages: usize) -> Option<DmaRegion> {
        // Devices reach all RAM where the platform keeps no 32-bit zone.
        let dma32 = crate::try_platform().is_some_and(|platform| platform.dma32_zone());
        let flags = if dma32 { AllocFlags(AllocFlags::ZERO.0 | AllocFlags::DMA32.0) } else { AllocFlags::ZERO };
        let physical = super::alloc_pages(order_for(pages), flags).ok()?;
        Some(DmaRegion {
            virtual_address: direct_map(|buddy| buddy.virtual_address(physical), physical.0 as usize),
            physical_address: physical,
            pages,
        })
    }

    fn free(region: DmaRegion) {
        if let Err(error) = super::free_pages(region.physical_address, order_for(region.pages)) {
            log::error!("dma: freeing {} pages at {:#x} refused: {:?}", region.pages, region.physical_address.0, error);
        }
    }

    fn physical_address(virtual_address: usize) -> Option<PhysicalAddress> {
        match crate::try_platform().and_then(|platform| platform.mmu()) {
            Some(mmu) => {
                let page = virtual_address & !(PAGE_SIZE - 1);
                let (physical, _) = mmu.translate(mmu.kernel_space(), VirtualAddress(page))?;
                Some(PhysicalAddress(physical.0 + (virtual_address - page) as u64))
            }
            // Before the kernel's page tables (or on boards without an MMU) the kernel runs
            // identity-mapped.
            None => Some(direct_map(|buddy| buddy.physical_address(virtual_address), PhysicalAddress(virtual_address as u64))),
        }
    }

    fn map_registers(physical_address: PhysicalAddress, size: usize) -> Option<usize> {
        let Some(mmu) = crate::try_platform().and_then(|platform| platform.mmu()) else {
            return Some(physical_address.0 as usize);
        };
        let space = mmu.kernel_space();
        let start = physical_address.0 as usize & !(PAGE_SIZE - 1);
        let end = (physical_address.0 as usize).checked_add(size.max(1))?.next_multiple_of(PAGE_SIZE);
        let flags = PageFlags::READ | PageFlags::WRITE | PageFlags::DEVICE | PageFlags::GLOBAL;
        for page in (start..end).step_by(PAGE_SIZE) {
            match mmu.translate(space, VirtualAddress(page)) {
                Some((physical, _)) if physical.0 as usize == page => continue,
                Some(_) => {
                    log::error!("ioremap: {:#x} is mapped to other memory", page);
                    return None;
                }
                None => {}
            }
            if let Err(error) = mmu.map(space, VirtualAddress(page), PhysicalAddress(page as u64), PAGE_SIZE, flags) {
                log::error!("ioremap: cannot map {:#x}: {:?}", page, error);
                return None;
            }
        }
        Some(physical_address.0 as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_cover_the_pages() {
        assert_eq!(order_for(0), 0);
        assert_eq!(order_for(1), 0);
        assert_eq!(order_for(2), 1);
        assert_eq!(order_for(3), 2);
        assert_eq!(order_for(16), 4);
        assert_eq!(order_for(17), 5);
    }
}
