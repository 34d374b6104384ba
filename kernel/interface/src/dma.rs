//! DMA memory: how a driver gets zeroed, physically contiguous pages a device can reach, the physical address of a buffer, and a mapping of device registers.
//!
//! The kernel implements it (it owns the page allocator and the page tables); a board names
//! the implementing type when it creates a driver. The methods are associated functions so
//! drivers whose helper crates expect a static hardware-abstraction layer (virtio-drivers'
//! `Hal`) can call them without a stored instance.

use crate::memory::PhysicalAddress;

/// A run of DMA pages: where the CPU sees it and where the device does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaRegion {
    /// The kernel's virtual address of the first byte.
    pub virtual_address: usize,
    /// The device's (physical) address of the first byte.
    pub physical_address: PhysicalAddress,
    /// Number of pages.
    pub pages: usize,
}

/// Memory for devices, provided by the kernel.
pub trait DmaMemory {
    /// The page size (4096 on every supported board).
    const PAGE_SIZE: usize = 4096;

    /// Allocates `pages` zeroed, physically contiguous pages that devices can address
    /// (below 4 GiB where the platform has such a zone), or `None` when memory is short.
    fn allocate(pages: usize) -> Option<DmaRegion>;

    /// Returns a region from [`allocate`](Self::allocate). Freeing anything else, or twice,
    /// is refused (logged) rather than corrupting memory.
    fn free(region: DmaRegion);

    /// The physical address behind the kernel virtual address `virtual_address`, or `None`
    /// if it is not mapped.
    fn physical_address(virtual_address: usize) -> Option<PhysicalAddress>;

    /// Maps `size` bytes of device registers at `physical_address` into the kernel's
    /// address space as device memory (Linux's `ioremap`) and returns the virtual address,
    /// or `None` when they cannot be mapped. Mapping the same registers again is allowed.
    fn map_registers(physical_address: PhysicalAddress, size: usize) -> Option<usize>;
}
