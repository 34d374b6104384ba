//! Physical and virtual addresses and the memory map a board reports.

/// A physical address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PhysicalAddress(pub u64);

/// A virtual address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct VirtualAddress(pub usize);

/// What a range of physical memory holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryKind {
    /// RAM the kernel may allocate from.
    Usable,
    /// RAM holding the kernel image (text, data, bss, boot stacks).
    KernelImage,
    /// Firmware tables, the device tree, boot information: keep.
    Reserved,
    /// Device registers.
    Mmio,
}

/// A range of physical memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryRegion {
    /// First byte.
    pub start: PhysicalAddress,
    /// Length in bytes.
    pub size: u64,
    /// What the range holds.
    pub kind: MemoryKind,
}

impl MemoryRegion {
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.start.0.saturating_add(self.size)
    }
}
