//! The kernel's own address space: the image mapped per section with W^X, the boot stack under an unmapped guard page, RAM and MMIO identity-mapped from the board's memory regions.

use core::ops::Range;

use hinoki_interface::{MapError, MemoryKind, MemoryRegion, PageFlags, PhysicalAddress};

use super::{DescriptorFormat, FrameAllocator, MapOptions, NotLive, PageTable, PAGE_SIZE};

/// The kernel image's parts, page aligned, from the linker script (identity-mapped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelImage {
    /// Code: read and execute.
    pub text: Range<usize>,
    /// Constants, the ktest and shell-command tables: read only.
    pub read_only: Range<usize>,
    /// Data and BSS (and any boot tables): read and write.
    pub writable: Range<usize>,
    /// Left unmapped so a boot-stack overflow faults.
    pub boot_stack_guard: Range<usize>,
    /// The boot CPU's stack: read and write.
    pub boot_stack: Range<usize>,
}

impl KernelImage {
    /// The whole image, text to the top of the boot stack.
    pub fn span(&self) -> Range<usize> {
        self.text.start..self.boot_stack.end
    }
}

/// Kernel text: read, execute, in every address space.
pub const KERNEL_TEXT: PageFlags = PageFlags(PageFlags::READ.0 | PageFlags::EXECUTE.0 | PageFlags::GLOBAL.0);
/// Kernel constants: read only, not executable.
pub const KERNEL_READ_ONLY: PageFlags = PageFlags(PageFlags::READ.0 | PageFlags::GLOBAL.0);
/// Kernel data and RAM: read, write, not executable.
pub const KERNEL_DATA: PageFlags = PageFlags(PageFlags::READ.0 | PageFlags::WRITE.0 | PageFlags::GLOBAL.0);
/// Device registers: read, write, device memory, not executable.
pub const KERNEL_DEVICE: PageFlags = PageFlags(PageFlags::READ.0 | PageFlags::WRITE.0 | PageFlags::DEVICE.0 | PageFlags::GLOBAL.0);

/// Something that calls its argument once per memory region (`Platform::memory_regions`).
pub type RegionWalk<'a> = dyn FnMut(&mut dyn FnMut(MemoryRegion)) + 'a;

/// How RAM is laid out in the kernel map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelMapPolicy {
    /// Map RAM with 2 MiB blocks where aligned (x86: splitting them later is allowed
    /// without break-before-make). With 4 KiB pages (aarch64), guard pages can be cut out
    /// of RAM without ever invalidating a live block that holds a stack or a table.
    pub ram_blocks: bool,
}

fn page_rounded(start: u64, end: u64) -> Range<usize> {
    let page = PAGE_SIZE as u64;
    (start / page * page) as usize..end.div_ceil(page).saturating_mul(page) as usize
}

/// Identity-maps `range` minus `exclude` with `flags`, keeping what is already mapped.
fn map_outside<F: DescriptorFormat>(
    table: &mut PageTable<F>,
    range: Range<usize>,
    exclude: &Range<usize>,
    flags: PageFlags,
    blocks: bool,
    frames: &mut dyn FrameAllocator,
) -> Result<(), MapError> {
    let options = MapOptions { blocks, fill_holes: true };
    let pieces = [range.start..range.end.min(exclude.start), range.start.max(exclude.end)..range.end];
    for piece in pieces {
        if piece.start < piece.end {
            table.map(piece.start, PhysicalAddress(piece.start as u64), piece.end - piece.start, flags, options, frames, &mut NotLive)?;
        }
    }
    Ok(())
}

/// Builds the kernel's tables (not yet live): the image by section, then every memory
/// region the board reports (RAM kinds as normal memory, `Mmio` as device memory), then
/// `extra` ranges, each identity-mapped, later ones only where nothing is mapped yet.
/// Nothing outside the image's own sections is mapped inside the image span, so the
/// boot-stack guard stays a hole.
///
/// # Errors
///
/// [`MapError::OutOfMemory`] when `frames` runs out; [`MapError::OutOfRange`] for a
/// region beyond 48 bits; [`MapError::Misaligned`] for an unaligned image layout.
pub fn build_kernel_map<F: DescriptorFormat>(
    image: &KernelImage,
    regions: &mut RegionWalk<'_>,
    extra: &[(Range<u64>, PageFlags)],
    policy: KernelMapPolicy,
    frames: &mut dyn FrameAllocator,
) -> Result<PageTable<F>, MapError> {
    let mut table = PageTable::<F>::new(frames, 0)?;
    let sections = [
        (&image.text, KERNEL_TEXT),
        (&image.read_only, KERNEL_READ_ONLY),
        (&image.writable, KERNEL_DATA),
        (&image.boot_stack, KERNEL_DATA),
    ];
    for (range, flags) in sections {
        let size = range.end.saturating_sub(range.start);
        table.map(range.start, PhysicalAddress(range.start as u64), size, flags, MapOptions::PAGES, frames, &mut NotLive)?;
    }
    let span = image.span();
    let mut result = Ok(());
    regions(&mut |region| {
        if result.is_err() || region.size == 0 {
            return;
        }
        let range = page_rounded(region.start.0, region.end());
        let (flags, blocks) = match region.kind {
            MemoryKind::Mmio => (KERNEL_DEVICE, true),
            MemoryKind::Usable | MemoryKind::Reserved | MemoryKind::KernelImage => (KERNEL_DATA, policy.ram_blocks),
        };
        result = map_outside(&mut table, range, &span, flags, blocks, frames);
    });
    result?;
    for (range, flags) in extra {
        map_outside(&mut table, page_rounded(range.start, range.end), &span, *flags, true, frames)?;
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::super::aarch64::Stage1;
    use super::super::tests::Arena;
    use super::*;
    use hinoki_interface::PhysicalAddress;

    fn image() -> KernelImage {
        KernelImage {
            text: 0x4020_0000..0x4024_0000,
            read_only: 0x4024_0000..0x4026_0000,
            writable: 0x4026_0000..0x4028_0000,
            boot_stack_guard: 0x4028_0000..0x4028_1000,
            boot_stack: 0x4028_1000..0x4029_1000,
        }
    }

    #[test]
    fn the_kernel_map_keeps_w_xor_x_and_the_guard_hole() {
        let mut arena = Arena::new();
        let regions = [
            MemoryRegion { start: PhysicalAddress(0x4000_0000), size: 0x20_0000, kind: MemoryKind::Usable },
            MemoryRegion { start: PhysicalAddress(0x4029_1000), size: 0x07d6_f000, kind: MemoryKind::Usable },
            MemoryRegion { start: PhysicalAddress(0x4020_0000), size: 0x9_1000, kind: MemoryKind::KernelImage },
            MemoryRegion { start: PhysicalAddress(0x4800_0123), size: 0x100, kind: MemoryKind::Reserved },
            MemoryRegion { start: PhysicalAddress(0x0900_0000), size: 0x1000, kind: MemoryKind::Mmio },
        ];
        let table = build_kernel_map::<Stage1>(
            &image(),
            &mut |visit| regions.iter().for_each(|region| visit(*region)),
            &[],
            KernelMapPolicy { ram_blocks: false },
            &mut arena,
        )
        .unwrap();
        assert_eq!(table.translate(0x4020_0000).unwrap().1, KERNEL_TEXT);
        assert_eq!(table.translate(0x4025_0000).unwrap().1, KERNEL_READ_ONLY);
        assert_eq!(table.translate(0x4027_f000).unwrap().1, KERNEL_DATA);
        assert_eq!(table.translate(0x4028_0000), None, "the guard page is a hole");
        assert_eq!(table.translate(0x4029_0ff8).unwrap().1, KERNEL_DATA);
        assert_eq!(table.translate(0x4800_0000).unwrap().1, KERNEL_DATA, "reservations are rounded out to pages");
        assert_eq!(table.translate(0x0900_0000).unwrap().1, KERNEL_DEVICE);
        assert_eq!(table.translate(0x0900_1000), None);
        let mut writable_and_executable = 0;
        let mut pages = 0;
        table.for_each_mapping(&mut |mapping| {
            pages += 1;
            if mapping.flags.contains(PageFlags::WRITE) && mapping.flags.contains(PageFlags::EXECUTE) {
                writable_and_executable += 1;
            }
            assert_eq!(mapping.physical_address.0, mapping.virtual_address as u64, "identity");
        });
        assert_eq!(writable_and_executable, 0);
        assert!(pages > 0x8000);
    }

    #[test]
    fn extra_ranges_fill_only_holes_and_blocks_are_used_where_allowed() {
        let mut arena = Arena::new();
        let regions = [MemoryRegion { start: PhysicalAddress(0x4000_0000), size: 0x80_0000, kind: MemoryKind::Usable }];
        let device = [(0x4000_0000..0x4100_0000u64, KERNEL_DEVICE)];
        let table = build_kernel_map::<Stage1>(
            &image(),
            &mut |visit| regions.iter().for_each(|region| visit(*region)),
            &device,
            KernelMapPolicy { ram_blocks: true },
            &mut arena,
        )
        .unwrap();
        assert_eq!(table.translate(0x4060_0000).unwrap().1, KERNEL_DATA);
        assert_eq!(table.translate(0x4080_0000).unwrap().1, KERNEL_DEVICE);
        assert_eq!(table.translate(0x4028_0000), None);
        let mut blocks = 0;
        table.for_each_mapping(&mut |mapping| blocks += usize::from(mapping.size == 0x20_0000));
        // RAM: 0x4000_0000, 0x4040_0000, 0x4060_0000; device: 0x4080_0000 up to 0x4100_0000.
        assert_eq!(blocks, 3 + 4);
    }
}
