//! MMU: mapping, unmapping and protecting ranges of an address space, and TLB maintenance.

use crate::memory::{PhysicalAddress, VirtualAddress};

/// Access permissions and memory type of a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PageFlags(pub u32);

impl PageFlags {
    /// Readable.
    pub const READ: PageFlags = PageFlags(1 << 0);
    /// Writable.
    pub const WRITE: PageFlags = PageFlags(1 << 1);
    /// Executable.
    pub const EXECUTE: PageFlags = PageFlags(1 << 2);
    /// Accessible from user mode (EL0 / ring 3).
    pub const USER: PageFlags = PageFlags(1 << 3);
    /// Device memory (nGnRE on aarch64, uncached on x86_64).
    pub const DEVICE: PageFlags = PageFlags(1 << 4);
    /// Present in every address space (kernel mappings).
    pub const GLOBAL: PageFlags = PageFlags(1 << 5);
    /// Normal memory that bypasses the caches (Normal non-cacheable on aarch64, PCD|PWT
    /// on x86_64), for buffers shared with devices that do not snoop.
    pub const UNCACHED: PageFlags = PageFlags(1 << 6);

    /// Whether every flag in `other` is set in `self`.
    pub const fn contains(self, other: PageFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The union of two flag sets.
    pub const fn union(self, other: PageFlags) -> PageFlags {
        PageFlags(self.0 | other.0)
    }
}

impl core::ops::BitOr for PageFlags {
    type Output = PageFlags;
    fn bitor(self, other: PageFlags) -> PageFlags {
        self.union(other)
    }
}

/// Why a mapping request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// An address or size is not page aligned.
    Misaligned,
    /// Part of the range is already mapped.
    AlreadyMapped,
    /// Part of the range is not mapped.
    NotMapped,
    /// No memory for page tables.
    OutOfMemory,
    /// Writable and executable at once (W^X), executable device memory, not readable, or
    /// otherwise not expressible.
    InvalidFlags,
    /// The range goes beyond the virtual addresses the tables translate.
    OutOfRange,
    /// The address space was not created by this MMU (or was destroyed).
    UnknownAddressSpace,
    /// The address space is in use by the calling CPU.
    InUse,
}

/// An address space, named by the physical address of its top-level table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressSpace {
    /// Physical address of the top-level translation table.
    pub root: PhysicalAddress,
}

/// The memory-management unit of one architecture.
pub trait Mmu: Sync {
    /// The page size in bytes (4096 on every supported board).
    fn page_size(&self) -> usize {
        4096
    }

    /// The kernel's own address space.
    fn kernel_space(&self) -> AddressSpace;

    /// Maps `size` bytes at `virtual_address` to `physical_address`.
    fn map(
        &self,
        space: AddressSpace,
        virtual_address: VirtualAddress,
        physical_address: PhysicalAddress,
        size: usize,
        flags: PageFlags,
    ) -> Result<(), MapError>;

    /// Removes the mappings of a range.
    fn unmap(&self, space: AddressSpace, virtual_address: VirtualAddress, size: usize) -> Result<(), MapError>;

    /// Changes the permissions of a mapped range.
    fn protect(&self, space: AddressSpace, virtual_address: VirtualAddress, size: usize, flags: PageFlags) -> Result<(), MapError>;

    /// Looks up the physical address and flags behind `virtual_address`.
    fn translate(&self, space: AddressSpace, virtual_address: VirtualAddress) -> Option<(PhysicalAddress, PageFlags)>;

    /// Calls `visit(virtual address, physical address, size, flags)` for every mapping of
    /// `space`, in address order, as the live tables hold it (for checks such as W^X).
    fn for_each_mapping(
        &self,
        space: AddressSpace,
        visit: &mut dyn FnMut(VirtualAddress, PhysicalAddress, usize, PageFlags),
    ) -> Result<(), MapError>;

    /// Invalidates the calling CPU's TLB entries for a range.
    fn flush_tlb_local(&self, virtual_address: VirtualAddress, size: usize);

    /// Invalidates the TLB entries for a range on every CPU (TLB shootdown). The default
    /// flushes only the calling CPU, which is all there is on a uniprocessor.
    fn flush_tlb(&self, virtual_address: VirtualAddress, size: usize) {
        self.flush_tlb_local(virtual_address, size)
    }

    /// Creates an address space that shares the kernel's mappings (for a process).
    fn create_address_space(&self) -> Result<AddressSpace, MapError>;

    /// Frees the tables of an address space made by
    /// [`create_address_space`](Self::create_address_space); the kernel's shared tables stay.
    fn destroy_address_space(&self, space: AddressSpace) -> Result<(), MapError>;

    /// Makes the calling CPU translate through `space`.
    fn switch_address_space(&self, space: AddressSpace) -> Result<(), MapError>;

    /// The address space the calling CPU translates through.
    fn current_address_space(&self) -> AddressSpace;
}
