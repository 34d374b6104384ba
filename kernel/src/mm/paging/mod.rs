//! Page tables: a four-level table walker (map, unmap, protect, translate, block splitting, W^X) generic over a descriptor format, and the kernel's `Mmu` built on it.
//!
//! Design. Everything here is plain code that runs and is tested on the host:
//!
//! - [`DescriptorFormat`] is the bit layout of one architecture's table entries. Both
//!   formats live beside the walker, in [`aarch64`] (VMSAv8-64 stage 1, 4 KiB granule,
//!   48-bit VA) and [`x86_64`] (4-level paging): they are data definitions from the ARM ARM
//!   and the Intel SDM, so keeping them in the portable crate lets `cargo test` check
//!   their encoding and the walks over them on any host. What touches registers (TCR,
//!   MAIR, SCTLR, TTBR; CR0, CR3, EFER; TLB instructions) stays in the arch crates.
//! - [`PageTable`] walks and edits one tree of tables. Levels are numbered from the top:
//!   level 0 (PGD / PML4) to level 3 (PTE), each indexing 9 bits of a 48-bit address; a
//!   leaf at level 2 is a 2 MiB block, at level 3 a 4 KiB page. Ranges are mapped with
//!   2 MiB blocks where alignment allows and [`MapOptions::blocks`] asks for them; unmap
//!   and protect split a block that a range covers only in part into 512 smaller leaves.
//!   Writable-and-executable requests are refused ([`MapError::InvalidFlags`]).
//! - Table memory comes from a [`FrameAllocator`]: the kernel's buddy allocator
//!   ([`KernelFrames`]) on the machine, a heap arena in the host tests. Tables are reached
//!   at their physical address plus a fixed offset (0: the kernel runs identity-mapped).
//! - [`TlbMaintenance`] is what the walker asks of the hardware while it edits live
//!   tables: a barrier that publishes table writes to the table walker, and TLB
//!   invalidation for break-before-make when a live block is split.
//! - [`KernelMmu`] implements [`hinoki_interface::Mmu`] for the kernel's address space and
//!   the spaces created for later processes, over an arch's [`TranslationHardware`].
//!
//! Guarded kernel stacks: [`unmap_guard_page`] removes one page from the kernel map (a
//! stack's lowest page) so an overflow faults at once; [`restore_guard_page`] maps it back
//! before the pages return to the allocator. Both work through `platform().mmu()` and do
//! nothing (returning `Ok`) on a board without an MMU.

pub mod aarch64;
pub mod kernel_map;
mod ktests;
#[cfg(test)]
pub(crate) mod tests;
pub mod x86_64;

use core::marker::PhantomData;

use hinoki_interface::{AddressSpace, MapError, Mmu, PageFlags, PhysicalAddress, VirtualAddress};

pub use kernel_map::{build_kernel_map, KernelImage, KernelMapPolicy};

use crate::sync::IrqSpinLock;

/// Bytes in a page (4 KiB granule on both architectures).
pub const PAGE_SIZE: usize = 4096;
/// Entries in one table.
pub const ENTRIES_PER_TABLE: usize = 512;
/// Levels of tables: 0 (top) to 3 (pages).
pub const LEVELS: usize = 4;
/// The last level, whose leaves are 4 KiB pages.
pub const PAGE_LEVEL: usize = LEVELS - 1;
/// The level whose leaves are 2 MiB blocks.
pub const BLOCK_LEVEL: usize = 2;
/// Bits of virtual address the tables translate.
pub const VIRTUAL_ADDRESS_BITS: u32 = 48;

/// Bytes one entry at `level` covers: 512 GiB, 1 GiB, 2 MiB, 4 KiB.
pub const fn level_size(level: usize) -> usize {
    1 << (39 - 9 * level)
}

/// Index of `virtual_address` in a table at `level`.
pub const fn level_index(virtual_address: usize, level: usize) -> usize {
    (virtual_address >> (39 - 9 * level)) & (ENTRIES_PER_TABLE - 1)
}

/// One table entry, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Descriptor {
    /// Not valid / not present: a translation fault.
    Invalid,
    /// Points at the next level's table.
    Table(PhysicalAddress),
    /// Maps `level_size(level)` bytes at `output` with `flags`.
    Leaf {
        /// Physical address of the block or page.
        output: PhysicalAddress,
        /// Permissions and memory type.
        flags: PageFlags,
    },
}

/// The bit layout of one architecture's table entries.
pub trait DescriptorFormat {
    /// Name for messages, e.g. `"aarch64 stage 1"`.
    const NAME: &'static str;
    /// Whether replacing a live block by a table needs break-before-make (aarch64: yes,
    /// unless FEAT_BBM; x86: no, the SDM allows a page-size change with the same frame
    /// and attributes followed by invalidation).
    const BREAK_BEFORE_MAKE: bool;

    /// A table descriptor pointing at `next` (4 KiB aligned).
    fn table(next: PhysicalAddress) -> u64;

    /// A leaf at `level` ([`BLOCK_LEVEL`] or [`PAGE_LEVEL`]) mapping `output` with `flags`.
    /// Called only with flags that passed [`check_flags`].
    fn leaf(level: usize, output: PhysicalAddress, flags: PageFlags) -> u64;

    /// Decodes an entry found at `level`.
    fn decode(level: usize, raw: u64) -> Descriptor;
}

/// Refuses what no mapping may have: writable and executable at once (W^X), executable
/// device memory, or no read permission (unmap instead).
pub fn check_flags(flags: PageFlags) -> Result<(), MapError> {
    let writable_and_executable = flags.contains(PageFlags::WRITE) && flags.contains(PageFlags::EXECUTE);
    let executable_device = flags.contains(PageFlags::DEVICE) && flags.contains(PageFlags::EXECUTE);
    if writable_and_executable || executable_device || !flags.contains(PageFlags::READ) {
        return Err(MapError::InvalidFlags);
    }
    Ok(())
}

/// Where page-table pages come from.
///
/// # Safety
///
/// [`allocate_frame`](Self::allocate_frame) must return zeroed, 4 KiB-aligned frames that
/// nothing else uses, readable and writable at their physical address plus the offset the
/// page table was created with, until they are handed back to [`free_frame`](Self::free_frame).
pub unsafe trait FrameAllocator {
    /// A zeroed 4 KiB frame, or `None` when memory is exhausted.
    fn allocate_frame(&mut self) -> Option<PhysicalAddress>;
    /// Returns a frame from [`allocate_frame`](Self::allocate_frame).
    fn free_frame(&mut self, frame: PhysicalAddress);
}

/// What the walker asks of the hardware while it edits tables that may be live.
pub trait TlbMaintenance {
    /// Makes the table writes so far visible to the hardware table walker (aarch64:
    /// `dsb ishst`; x86: nothing, the walker snoops stores).
    fn publish(&mut self);
    /// Invalidates the TLB entries of `[virtual_address, +size)` (on every CPU that may
    /// hold them); used for break-before-make.
    fn invalidate(&mut self, virtual_address: usize, size: usize);
}

/// Maintenance for tables that are not live yet: nothing to publish or invalidate.
pub struct NotLive;

impl TlbMaintenance for NotLive {
    fn publish(&mut self) {}
    fn invalidate(&mut self, _virtual_address: usize, _size: usize) {}
}

/// How [`PageTable::map`] lays out a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MapOptions {
    /// Use 2 MiB blocks where the virtual and physical addresses and the size allow.
    pub blocks: bool,
    /// Leave already-mapped parts as they are instead of failing with
    /// [`MapError::AlreadyMapped`] (for building a map from overlapping region lists).
    pub fill_holes: bool,
}

impl MapOptions {
    /// 4 KiB pages only; fail on any existing mapping.
    pub const PAGES: MapOptions = MapOptions { blocks: false, fill_holes: false };
    /// 2 MiB blocks where possible; fail on any existing mapping.
    pub const BLOCKS: MapOptions = MapOptions { blocks: true, fill_holes: false };
}

/// One leaf found by [`PageTable::for_each_mapping`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// First virtual address.
    pub virtual_address: usize,
    /// First physical address.
    pub physical_address: PhysicalAddress,
    /// Bytes: 4 KiB, 2 MiB or 1 GiB.
    pub size: usize,
    /// Permissions and memory type.
    pub flags: PageFlags,
}

/// One tree of page tables in a given format.
pub struct PageTable<F> {
    root: PhysicalAddress,
    offset: usize,
    format: PhantomData<F>,
}

/// What an operation does to each leaf of its range.
#[derive(Clone, Copy)]
enum Edit {
    Unmap,
    Protect(PageFlags),
}

fn checked_range(virtual_address: usize, size: usize) -> Result<usize, MapError> {
    if !virtual_address.is_multiple_of(PAGE_SIZE) || !size.is_multiple_of(PAGE_SIZE) {
        return Err(MapError::Misaligned);
    }
    let end = virtual_address.checked_add(size).ok_or(MapError::OutOfRange)?;
    if end > 1 << VIRTUAL_ADDRESS_BITS {
        return Err(MapError::OutOfRange);
    }
    Ok(end)
}

impl<F: DescriptorFormat> PageTable<F> {
    /// An empty tree: one zeroed top-level table from `frames`, reached at physical
    /// address plus `offset`.
    pub fn new(frames: &mut dyn FrameAllocator, offset: usize) -> Result<Self, MapError> {
        let root = frames.allocate_frame().ok_or(MapError::OutOfMemory)?;
        Ok(PageTable { root, offset, format: PhantomData })
    }

    /// The tree whose top-level table is at `root`.
    ///
    /// # Safety
    ///
    /// `root` must be the top of a tree in format `F` whose tables are all reachable at
    /// physical address plus `offset`, and nothing else may edit the tree while this value
    /// is used. Frames added to it must come from an allocator with the same offset.
    pub unsafe fn from_root(root: PhysicalAddress, offset: usize) -> Self {
        PageTable { root, offset, format: PhantomData }
    }

    /// Physical address of the top-level table (what TTBR0_EL1 / CR3 hold).
    pub fn root(&self) -> PhysicalAddress {
        self.root
    }

    fn entry_pointer(&self, table: PhysicalAddress, index: usize) -> *mut u64 {
        (table.0 as usize + self.offset + index * 8) as *mut u64
    }

    fn read(&self, table: PhysicalAddress, index: usize) -> u64 {
        // SAFETY: every table of this tree is a 4 KiB frame reachable at physical address
        // plus `offset` (the contract of `new`'s allocator and of `from_root`), and
        // `index` < 512 keeps the access inside it.
        unsafe { core::ptr::read_volatile(self.entry_pointer(table, index)) }
    }

    fn write(&mut self, table: PhysicalAddress, index: usize, value: u64) {
        // SAFETY: as in `read`; `&mut self` means no other editor of this tree runs.
        // Volatile, so the hardware walker sees every store in program order.
        unsafe { core::ptr::write_volatile(self.entry_pointer(table, index), value) }
    }

    /// Maps `[virtual_address, +size)` to `[physical_address, +size)` with `flags`.
    ///
    /// # Errors
    ///
    /// [`MapError::Misaligned`] for addresses or sizes not multiples of 4 KiB,
    /// [`MapError::OutOfRange`] beyond 48 bits, [`MapError::InvalidFlags`] for W^X
    /// violations, [`MapError::AlreadyMapped`] if any page is mapped (nothing is changed
    /// then), [`MapError::OutOfMemory`] if a table cannot be allocated (the part mapped
    /// so far stays mapped).
    #[allow(clippy::too_many_arguments)]
    pub fn map(
        &mut self,
        virtual_address: usize,
        physical_address: PhysicalAddress,
        size: usize,
        flags: PageFlags,
        options: MapOptions,
        frames: &mut dyn FrameAllocator,
        maintenance: &mut dyn TlbMaintenance,
    ) -> Result<(), MapError> {
        let end = checked_range(virtual_address, size)?;
        if !physical_address.0.is_multiple_of(PAGE_SIZE as u64) {
            return Err(MapError::Misaligned);
        }
        check_flags(flags)?;
        if size == 0 {
            return Ok(());
        }
        if !options.fill_holes && self.any_mapped(self.root, 0, virtual_address, end) {
            return Err(MapError::AlreadyMapped);
        }
        let offset = physical_address.0.wrapping_sub(virtual_address as u64);
        let result = self.map_level(self.root, 0, virtual_address, end, offset, flags, options, frames);
        maintenance.publish();
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn map_level(
        &mut self,
        table: PhysicalAddress,
        level: usize,
        start: usize,
        end: usize,
        offset: u64,
        flags: PageFlags,
        options: MapOptions,
        frames: &mut dyn FrameAllocator,
    ) -> Result<(), MapError> {
        let size = level_size(level);
        let mut address = start;
        while address < end {
            let index = level_index(address, level);
            let entry_start = address & !(size - 1);
            let chunk_end = (entry_start + size).min(end);
            let output = PhysicalAddress((address as u64).wrapping_add(offset));
            match F::decode(level, self.read(table, index)) {
                Descriptor::Leaf { .. } => {
                    if !options.fill_holes {
                        return Err(MapError::AlreadyMapped);
                    }
                }
                Descriptor::Table(next) => self.map_level(next, level + 1, address, chunk_end, offset, flags, options, frames)?,
                Descriptor::Invalid => {
                    let whole_entry = address == entry_start && chunk_end == entry_start + size;
                    let block = options.blocks && level == BLOCK_LEVEL && whole_entry && output.0.is_multiple_of(size as u64);
                    if level == PAGE_LEVEL || block {
                        self.write(table, index, F::leaf(level, output, flags));
                    } else {
                        let next = frames.allocate_frame().ok_or(MapError::OutOfMemory)?;
                        self.write(table, index, F::table(next));
                        self.map_level(next, level + 1, address, chunk_end, offset, flags, options, frames)?;
                    }
                }
            }
            address = chunk_end;
        }
        Ok(())
    }

    /// Whether any page of `[start, end)` under `table` is mapped.
    fn any_mapped(&self, table: PhysicalAddress, level: usize, start: usize, end: usize) -> bool {
        let size = level_size(level);
        let mut address = start;
        while address < end {
            let chunk_end = ((address & !(size - 1)) + size).min(end);
            match F::decode(level, self.read(table, level_index(address, level))) {
                Descriptor::Invalid => {}
                Descriptor::Leaf { .. } => return true,
                Descriptor::Table(next) => {
                    if self.any_mapped(next, level + 1, address, chunk_end) {
                        return true;
                    }
                }
            }
            address = chunk_end;
        }
        false
    }

    /// Whether every page of `[start, end)` under `table` is mapped.
    fn all_mapped(&self, table: PhysicalAddress, level: usize, start: usize, end: usize) -> bool {
        let size = level_size(level);
        let mut address = start;
        while address < end {
            let chunk_end = ((address & !(size - 1)) + size).min(end);
            match F::decode(level, self.read(table, level_index(address, level))) {
                Descriptor::Invalid => return false,
                Descriptor::Leaf { .. } => {}
                Descriptor::Table(next) => {
                    if !self.all_mapped(next, level + 1, address, chunk_end) {
                        return false;
                    }
                }
            }
            address = chunk_end;
        }
        true
    }

    /// Removes the mappings of `[virtual_address, +size)`, splitting blocks it covers in
    /// part. Table pages stay allocated (they are freed with the whole tree). The caller
    /// invalidates the TLB for the range afterwards.
    ///
    /// # Errors
    ///
    /// [`MapError::Misaligned`], [`MapError::OutOfRange`], [`MapError::NotMapped`] if any
    /// page of the range is not mapped (nothing is changed then), [`MapError::OutOfMemory`]
    /// if a block cannot be split.
    pub fn unmap(
        &mut self,
        virtual_address: usize,
        size: usize,
        frames: &mut dyn FrameAllocator,
        maintenance: &mut dyn TlbMaintenance,
    ) -> Result<(), MapError> {
        self.edit(virtual_address, size, Edit::Unmap, frames, maintenance)
    }

    /// Changes the flags of the mapped range `[virtual_address, +size)`, keeping its
    /// physical addresses and splitting blocks it covers in part. The caller invalidates
    /// the TLB for the range afterwards.
    ///
    /// # Errors
    ///
    /// As for [`unmap`](Self::unmap), and [`MapError::InvalidFlags`] for W^X violations.
    pub fn protect(
        &mut self,
        virtual_address: usize,
        size: usize,
        flags: PageFlags,
        frames: &mut dyn FrameAllocator,
        maintenance: &mut dyn TlbMaintenance,
    ) -> Result<(), MapError> {
        check_flags(flags)?;
        self.edit(virtual_address, size, Edit::Protect(flags), frames, maintenance)
    }

    fn edit(
        &mut self,
        virtual_address: usize,
        size: usize,
        edit: Edit,
        frames: &mut dyn FrameAllocator,
        maintenance: &mut dyn TlbMaintenance,
    ) -> Result<(), MapError> {
        let end = checked_range(virtual_address, size)?;
        if size == 0 {
            return Ok(());
        }
        if !self.all_mapped(self.root, 0, virtual_address, end) {
            return Err(MapError::NotMapped);
        }
        let result = self.edit_level(self.root, 0, virtual_address, end, edit, frames, maintenance);
        maintenance.publish();
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn edit_level(
        &mut self,
        table: PhysicalAddress,
        level: usize,
        start: usize,
        end: usize,
        edit: Edit,
        frames: &mut dyn FrameAllocator,
        maintenance: &mut dyn TlbMaintenance,
    ) -> Result<(), MapError> {
        let size = level_size(level);
        let mut address = start;
        while address < end {
            let index = level_index(address, level);
            let entry_start = address & !(size - 1);
            let chunk_end = (entry_start + size).min(end);
            match F::decode(level, self.read(table, index)) {
                Descriptor::Invalid => return Err(MapError::NotMapped),
                Descriptor::Table(next) => self.edit_level(next, level + 1, address, chunk_end, edit, frames, maintenance)?,
                Descriptor::Leaf { output, flags } => {
                    if address == entry_start && chunk_end == entry_start + size {
                        let value = match edit {
                            Edit::Unmap => 0,
                            Edit::Protect(new_flags) => F::leaf(level, output, new_flags),
                        };
                        self.write(table, index, value);
                    } else {
                        let next = self.split(table, index, level, entry_start, output, flags, frames, maintenance)?;
                        self.edit_level(next, level + 1, address, chunk_end, edit, frames, maintenance)?;
                    }
                }
            }
            address = chunk_end;
        }
        Ok(())
    }

    /// Replaces the block at `table[index]` by a table of 512 leaves with the same output
    /// and flags; returns the new table.
    #[allow(clippy::too_many_arguments)]
    fn split(
        &mut self,
        table: PhysicalAddress,
        index: usize,
        level: usize,
        entry_start: usize,
        output: PhysicalAddress,
        flags: PageFlags,
        frames: &mut dyn FrameAllocator,
        maintenance: &mut dyn TlbMaintenance,
    ) -> Result<PhysicalAddress, MapError> {
        let next = frames.allocate_frame().ok_or(MapError::OutOfMemory)?;
        let child_size = level_size(level + 1);
        for child in 0..ENTRIES_PER_TABLE {
            let child_output = PhysicalAddress(output.0 + (child * child_size) as u64);
            self.write(next, child, F::leaf(level + 1, child_output, flags));
        }
        maintenance.publish();
        if F::BREAK_BEFORE_MAKE {
            self.write(table, index, 0);
            maintenance.publish();
            maintenance.invalidate(entry_start, level_size(level));
        }
        self.write(table, index, F::table(next));
        Ok(next)
    }

    /// The physical address and flags `virtual_address` translates to.
    pub fn translate(&self, virtual_address: usize) -> Option<(PhysicalAddress, PageFlags)> {
        if virtual_address >= 1 << VIRTUAL_ADDRESS_BITS {
            return None;
        }
        let mut table = self.root;
        for level in 0..LEVELS {
            match F::decode(level, self.read(table, level_index(virtual_address, level))) {
                Descriptor::Invalid => return None,
                Descriptor::Table(next) => table = next,
                Descriptor::Leaf { output, flags } => {
                    let within = (virtual_address & (level_size(level) - 1)) as u64;
                    return Some((PhysicalAddress(output.0 + within), flags));
                }
            }
        }
        None
    }

    /// Calls `visit` for every leaf, in increasing virtual-address order.
    pub fn for_each_mapping(&self, visit: &mut dyn FnMut(Mapping)) {
        self.visit_level(self.root, 0, 0, visit);
    }

    fn visit_level(&self, table: PhysicalAddress, level: usize, base: usize, visit: &mut dyn FnMut(Mapping)) {
        for index in 0..ENTRIES_PER_TABLE {
            let virtual_address = base + index * level_size(level);
            match F::decode(level, self.read(table, index)) {
                Descriptor::Invalid => {}
                Descriptor::Table(next) => self.visit_level(next, level + 1, virtual_address, visit),
                Descriptor::Leaf { output, flags } => {
                    visit(Mapping { virtual_address, physical_address: output, size: level_size(level), flags })
                }
            }
        }
    }

    /// Calls `visit` with the physical address of every table of the tree, the top last.
    pub fn for_each_table(&self, visit: &mut dyn FnMut(PhysicalAddress)) {
        self.visit_tables(self.root, 0, visit);
    }

    fn visit_tables(&self, table: PhysicalAddress, level: usize, visit: &mut dyn FnMut(PhysicalAddress)) {
        for index in 0..ENTRIES_PER_TABLE {
            if let Descriptor::Table(next) = F::decode(level, self.read(table, index)) {
                self.visit_tables(next, level + 1, visit);
            }
        }
        visit(table);
    }

    /// Copies the top-level entries `indices` from `other` (sharing its lower tables), so
    /// a new address space sees the kernel's mappings.
    pub fn share_top_level(&mut self, other: &PageTable<F>, indices: core::ops::Range<usize>) {
        for index in indices {
            let value = other.read(other.root, index);
            self.write(self.root, index, value);
        }
    }

    /// Frees the tables of this tree to `frames`, except the lower tables behind the
    /// top-level entries `shared` (those belong to the tree they were shared from).
    pub fn free_tables(self, shared: core::ops::Range<usize>, frames: &mut dyn FrameAllocator) {
        for index in 0..ENTRIES_PER_TABLE {
            if shared.contains(&index) {
                continue;
            }
            if let Descriptor::Table(next) = F::decode(0, self.read(self.root, index)) {
                self.visit_tables(next, 1, &mut |table| frames.free_frame(table));
            }
        }
        frames.free_frame(self.root);
    }
}

/// Page-table frames from the kernel's page allocator ([`crate::mm::MEMORY`]), reached
/// identity-mapped (offset 0).
pub struct KernelFrames;

// SAFETY: `alloc_pages` with `ZERO` returns zeroed, naturally aligned order-0 frames owned
// by the caller; the Platform contract makes usable RAM identity-mapped, so each frame is
// reachable at its physical address (offset 0) for as long as it is allocated.
unsafe impl FrameAllocator for KernelFrames {
    fn allocate_frame(&mut self) -> Option<PhysicalAddress> {
        crate::mm::alloc_pages(0, crate::mm::AllocFlags::ZERO | crate::mm::AllocFlags::NO_WARN).ok()
    }

    fn free_frame(&mut self, frame: PhysicalAddress) {
        if let Err(error) = crate::mm::free_pages(frame, 0) {
            log::error!("paging: cannot free table page {:#x}: {:?}", frame.0, error);
        }
    }
}

/// Like [`KernelFrames`], from below 4 GiB (ZONE_DMA32 where the board has one): for
/// tables a CPU must reach in 32-bit mode (the x86 application-processor trampoline
/// loads CR3 before long mode).
pub struct Dma32Frames;

// SAFETY: as for `KernelFrames`; DMA32 only narrows where the frames come from.
unsafe impl FrameAllocator for Dma32Frames {
    fn allocate_frame(&mut self) -> Option<PhysicalAddress> {
        crate::mm::alloc_pages(0, crate::mm::AllocFlags::ZERO | crate::mm::AllocFlags::DMA32 | crate::mm::AllocFlags::NO_WARN).ok()
    }

    fn free_frame(&mut self, frame: PhysicalAddress) {
        KernelFrames.free_frame(frame)
    }
}

/// What an architecture supplies to run page tables of format `Self::Format`.
pub trait TranslationHardware: Sync + Send {
    /// The descriptor format.
    type Format: DescriptorFormat;
    /// Top-level entries that hold the kernel's mappings, shared into every new address
    /// space (user mappings go in the others).
    const KERNEL_TOP_LEVEL: core::ops::Range<usize>;

    /// Makes table writes visible to this CPU's table walker.
    fn publish(&self);
    /// Invalidates this CPU's TLB entries for `[virtual_address, +size)`.
    fn flush_tlb_range_local(&self, virtual_address: usize, size: usize);
    /// Invalidates the TLB entries for `[virtual_address, +size)` on every CPU that can
    /// observe them: a broadcast instruction where the architecture has one (aarch64
    /// `tlbi ...is`), else the local flush plus the shootdown the SMP code registered.
    fn flush_tlb_range_all(&self, virtual_address: usize, size: usize);
    /// The top-level table the calling CPU translates through.
    fn current_root(&self) -> PhysicalAddress;
    /// Makes the calling CPU translate through `root`.
    ///
    /// # Safety
    ///
    /// `root` must be a complete tree in `Self::Format` that maps the running code, its
    /// stack and everything the CPU touches next, as the current tables do.
    unsafe fn switch_root(&self, root: PhysicalAddress);
}

/// Most address spaces besides the kernel's that exist at once.
pub const MAX_ADDRESS_SPACES: usize = 64;

struct Spaces {
    kernel: PhysicalAddress,
    others: [Option<PhysicalAddress>; MAX_ADDRESS_SPACES],
}

/// The kernel's [`Mmu`]: its own address space plus spaces created for processes, edited
/// under one lock with tables from [`KernelFrames`].
pub struct KernelMmu<H: TranslationHardware> {
    hardware: H,
    spaces: IrqSpinLock<Spaces>,
}

struct Maintenance<'a, H: TranslationHardware>(&'a H);

impl<H: TranslationHardware> TlbMaintenance for Maintenance<'_, H> {
    fn publish(&mut self) {
        self.0.publish();
    }

    fn invalidate(&mut self, virtual_address: usize, size: usize) {
        self.0.flush_tlb_range_all(virtual_address, size);
    }
}

impl<H: TranslationHardware> KernelMmu<H> {
    /// Takes over the tree at `kernel_root` (the tables the arch built and switched to).
    ///
    /// # Safety
    ///
    /// `kernel_root` must be a complete tree in `H::Format` whose tables came from
    /// [`KernelFrames`] (identity-mapped), edited from now on only through this value.
    pub unsafe fn new(hardware: H, kernel_root: PhysicalAddress) -> Self {
        KernelMmu { hardware, spaces: IrqSpinLock::new(Spaces { kernel: kernel_root, others: [None; MAX_ADDRESS_SPACES] }) }
    }

    /// The arch's hardware operations.
    pub fn hardware(&self) -> &H {
        &self.hardware
    }

    /// Runs `operation` on the tree of `space`, if this MMU made it.
    fn with_table<T>(
        &self,
        space: AddressSpace,
        operation: impl FnOnce(&mut PageTable<H::Format>) -> Result<T, MapError>,
    ) -> Result<T, MapError> {
        let spaces = self.spaces.lock();
        let known = space.root == spaces.kernel || spaces.others.contains(&Some(space.root));
        if !known {
            return Err(MapError::UnknownAddressSpace);
        }
        // SAFETY: the root is the kernel's tree or one `create_address_space` built, all
        // from `KernelFrames` (identity-mapped), and the held lock makes this the only editor.
        let mut table = unsafe { PageTable::<H::Format>::from_root(space.root, 0) };
        operation(&mut table)
    }

    fn flush_after_edit(&self, space: AddressSpace, virtual_address: usize, size: usize) {
        let kernel = self.spaces.lock().kernel;
        if space.root == kernel || space.root == self.hardware.current_root() {
            self.hardware.flush_tlb_range_all(virtual_address, size);
        }
    }
}

impl<H: TranslationHardware> Mmu for KernelMmu<H> {
    fn kernel_space(&self) -> AddressSpace {
        AddressSpace { root: self.spaces.lock().kernel }
    }

    fn map(
        &self,
        space: AddressSpace,
        virtual_address: VirtualAddress,
        physical_address: PhysicalAddress,
        size: usize,
        flags: PageFlags,
    ) -> Result<(), MapError> {
        self.with_table(space, |table| {
            table.map(
                virtual_address.0,
                physical_address,
                size,
                flags,
                MapOptions::PAGES,
                &mut KernelFrames,
                &mut Maintenance(&self.hardware),
            )
        })
    }

    fn unmap(&self, space: AddressSpace, virtual_address: VirtualAddress, size: usize) -> Result<(), MapError> {
        self.with_table(space, |table| table.unmap(virtual_address.0, size, &mut KernelFrames, &mut Maintenance(&self.hardware)))?;
        self.flush_after_edit(space, virtual_address.0, size);
        Ok(())
    }

    fn protect(&self, space: AddressSpace, virtual_address: VirtualAddress, size: usize, flags: PageFlags) -> Result<(), MapError> {
        self.with_table(space, |table| table.protect(virtual_address.0, size, flags, &mut KernelFrames, &mut Maintenance(&self.hardware)))?;
        self.flush_after_edit(space, virtual_address.0, size);
        Ok(())
    }

    fn translate(&self, space: AddressSpace, virtual_address: VirtualAddress) -> Option<(PhysicalAddress, PageFlags)> {
        self.with_table(space, |table| table.translate(virtual_address.0).ok_or(MapError::NotMapped)).ok()
    }

    fn for_each_mapping(
        &self,
        space: AddressSpace,
        visit: &mut dyn FnMut(VirtualAddress, PhysicalAddress, usize, PageFlags),
    ) -> Result<(), MapError> {
        self.with_table(space, |table| {
            table.for_each_mapping(&mut |mapping| {
                visit(VirtualAddress(mapping.virtual_address), mapping.physical_address, mapping.size, mapping.flags)
            });
            Ok(())
        })
    }

    fn flush_tlb_local(&self, virtual_address: VirtualAddress, size: usize) {
        self.hardware.flush_tlb_range_local(virtual_address.0, size);
    }

    fn flush_tlb(&self, virtual_address: VirtualAddress, size: usize) {
        self.hardware.flush_tlb_range_all(virtual_address.0, size);
    }

    fn create_address_space(&self) -> Result<AddressSpace, MapError> {
        let mut spaces = self.spaces.lock();
        let slot = spaces.others.iter().position(Option::is_none).ok_or(MapError::OutOfMemory)?;
        let mut table = PageTable::<H::Format>::new(&mut KernelFrames, 0)?;
        // SAFETY: the kernel's root is a tree from `KernelFrames`; the held lock excludes editors.
        let kernel = unsafe { PageTable::<H::Format>::from_root(spaces.kernel, 0) };
        table.share_top_level(&kernel, H::KERNEL_TOP_LEVEL);
        self.hardware.publish();
        spaces.others[slot] = Some(table.root());
        Ok(AddressSpace { root: table.root() })
    }

    fn destroy_address_space(&self, space: AddressSpace) -> Result<(), MapError> {
        let mut spaces = self.spaces.lock();
        let slot = spaces.others.iter().position(|root| *root == Some(space.root)).ok_or(MapError::UnknownAddressSpace)?;
        if self.hardware.current_root() == space.root {
            return Err(MapError::InUse);
        }
        spaces.others[slot] = None;
        // SAFETY: the root was built by `create_address_space` and is no longer listed, so
        // no one else reaches it; it is not the calling CPU's current tree.
        let table = unsafe { PageTable::<H::Format>::from_root(space.root, 0) };
        table.free_tables(H::KERNEL_TOP_LEVEL, &mut KernelFrames);
        Ok(())
    }

    fn switch_address_space(&self, space: AddressSpace) -> Result<(), MapError> {
        let spaces = self.spaces.lock();
        if space.root != spaces.kernel && !spaces.others.contains(&Some(space.root)) {
            return Err(MapError::UnknownAddressSpace);
        }
        // SAFETY: every known tree maps the kernel (its top-level entries are shared from
        // the kernel's tree), so the running code and stack stay mapped across the switch.
        unsafe { self.hardware.switch_root(space.root) };
        Ok(())
    }

    fn current_address_space(&self) -> AddressSpace {
        AddressSpace { root: self.hardware.current_root() }
    }
}

/// Unmaps the page at `address` from the kernel's address space, making it a guard page
/// (the lowest page of a kernel stack). Without an MMU nothing happens.
///
/// # Errors
///
/// As for [`Mmu::unmap`].
pub fn unmap_guard_page(address: usize) -> Result<(), MapError> {
    let Some(mmu) = crate::try_platform().and_then(|platform| platform.mmu()) else { return Ok(()) };
    mmu.unmap(mmu.kernel_space(), VirtualAddress(address), PAGE_SIZE)
}

/// Maps a guard page made by [`unmap_guard_page`] back (identity, read-write, not
/// executable), before its memory returns to the page allocator.
///
/// # Errors
///
/// As for [`Mmu::map`].
pub fn restore_guard_page(address: usize) -> Result<(), MapError> {
    let Some(mmu) = crate::try_platform().and_then(|platform| platform.mmu()) else { return Ok(()) };
    mmu.map(
        mmu.kernel_space(),
        VirtualAddress(address),
        PhysicalAddress(address as u64),
        PAGE_SIZE,
        PageFlags::READ | PageFlags::WRITE | PageFlags::GLOBAL,
    )
}
