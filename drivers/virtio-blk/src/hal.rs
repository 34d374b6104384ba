//! virtio-drivers' static `Hal` over the kernel's `DmaMemory`: DMA pages, buffer sharing by address translation (DMA is cache-coherent on the supported machines), register mapping.

use core::marker::PhantomData;
use core::ptr::NonNull;

use hinoki_interface::{DmaMemory, DmaRegion, PhysicalAddress};
use virtio_drivers::{BufferDirection, Hal, PhysAddr};

/// The `Hal` virtio-drivers calls, forwarding to the DMA memory type `D`.
pub struct DmaHal<D: DmaMemory>(PhantomData<D>);

// SAFETY: `dma_alloc` returns zeroed, page-aligned, exclusively owned pages from `D` (or the
// null physical address on failure, which virtio-drivers reports as `DmaError`);
// `mmio_phys_to_virt` returns the mapping `D` made for the registers; `share` returns the
// physical address of the caller's buffer, which the device may access until `unshare`.
unsafe impl<D: DmaMemory> Hal for DmaHal<D> {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        match D::allocate(pages).and_then(|region| Some((region.physical_address.0, NonNull::new(region.virtual_address as *mut u8)?))) {
            Some(allocation) => allocation,
            None => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        D::free(DmaRegion { virtual_address: vaddr.as_ptr() as usize, physical_address: PhysicalAddress(paddr), pages });
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, size: usize) -> NonNull<u8> {
        // The probe mapped every BAR before creating the transport; mapping again only
        // looks the pages up. Identity is the kernel's layout for device memory.
        let address = D::map_registers(PhysicalAddress(paddr), size).unwrap_or(paddr as usize);
        NonNull::new(address as *mut u8).unwrap_or(NonNull::dangling())
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        let address = buffer.as_ptr() as *mut u8 as usize;
        // Kernel memory is always mapped; an unmapped buffer would be a kernel bug, and
        // the identity fallback matches the kernel's direct map.
        D::physical_address(address).map_or(address as PhysAddr, |physical| physical.0)
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}
