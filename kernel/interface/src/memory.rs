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

/// A board's view of physical memory: RAM ranges and the reservations inside them.
/// [`MemoryMap::for_each`] reports RAM minus reservations as page-aligned `Usable`
/// regions, followed by the reservations themselves.
pub struct MemoryMap<const N: usize> {
    ram: [(u64, u64); N],
    ram_count: usize,
    reserved: [MemoryRegion; N],
    reserved_count: usize,
}

/// The memory map's fixed capacity is exhausted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryMapFull;

const PAGE_SIZE: u64 = 4096;

impl<const N: usize> MemoryMap<N> {
    /// An empty map.
    pub const fn new() -> Self {
        MemoryMap {
            ram: [(0, 0); N],
            ram_count: 0,
            reserved: [MemoryRegion { start: PhysicalAddress(0), size: 0, kind: MemoryKind::Reserved }; N],
            reserved_count: 0,
        }
    }

    /// Adds a RAM range.
    pub fn add_ram(&mut self, start: u64, size: u64) -> Result<(), MemoryMapFull> {
        if size == 0 {
            return Ok(());
        }
        let slot = self.ram.get_mut(self.ram_count).ok_or(MemoryMapFull)?;
        *slot = (start, start.saturating_add(size));
        self.ram_count += 1;
        Ok(())
    }

    /// Reserves a range (kernel image, firmware tables, device tree, MMIO).
    pub fn reserve(&mut self, start: u64, size: u64, kind: MemoryKind) -> Result<(), MemoryMapFull> {
        if size == 0 {
            return Ok(());
        }
        let slot = self.reserved.get_mut(self.reserved_count).ok_or(MemoryMapFull)?;
        *slot = MemoryRegion { start: PhysicalAddress(start), size, kind };
        self.reserved_count += 1;
        Ok(())
    }

    /// Total RAM in bytes.
    pub fn total_ram(&self) -> u64 {
        self.ram[..self.ram_count].iter().map(|(start, end)| end - start).sum()
    }

    /// Reports usable pieces of RAM (page aligned, reservations cut out), then reservations.
    pub fn for_each(&self, visit: &mut dyn FnMut(MemoryRegion)) {
        for &(ram_start, ram_end) in &self.ram[..self.ram_count] {
            let mut cursor = ram_start;
            let emit = |from: u64, to: u64, visit: &mut dyn FnMut(MemoryRegion)| {
                let aligned_start = from.div_ceil(PAGE_SIZE) * PAGE_SIZE;
                let aligned_end = to / PAGE_SIZE * PAGE_SIZE;
                if aligned_end > aligned_start {
                    visit(MemoryRegion {
                        start: PhysicalAddress(aligned_start),
                        size: aligned_end - aligned_start,
                        kind: MemoryKind::Usable,
                    });
                }
            };
            while cursor < ram_end {
                // The lowest reservation overlapping [cursor, ram_end).
                let next = self.reserved[..self.reserved_count]
                    .iter()
                    .filter(|r| r.kind != MemoryKind::Mmio && r.start.0 < ram_end && r.end() > cursor)
                    .min_by_key(|r| r.start.0);
                match next {
                    None => {
                        emit(cursor, ram_end, visit);
                        break;
                    }
                    Some(region) => {
                        emit(cursor, region.start.0.max(cursor), visit);
                        cursor = region.end();
                    }
                }
            }
        }
        for region in &self.reserved[..self.reserved_count] {
            visit(*region);
        }
    }
}

impl<const N: usize> Default for MemoryMap<N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    fn usable<const N: usize>(map: &MemoryMap<N>) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        map.for_each(&mut |r| {
            if r.kind == MemoryKind::Usable {
                out.push((r.start.0, r.end()))
            }
        });
        out
    }

    #[test]
    fn cuts_reservations_out_of_ram() {
        let mut map = MemoryMap::<8>::new();
        map.add_ram(0x4000_0000, 0x800_0000).unwrap();
        map.reserve(0x4020_0000, 0x10_0800, MemoryKind::KernelImage).unwrap();
        map.reserve(0x4000_0000, 0x1000, MemoryKind::Reserved).unwrap();
        map.reserve(0x4400_0000, 0x10_0000, MemoryKind::Reserved).unwrap();
        map.reserve(0x0900_0000, 0x1000, MemoryKind::Mmio).unwrap();
        assert_eq!(usable(&map), [(0x4000_1000, 0x4020_0000), (0x4030_1000, 0x4400_0000), (0x4410_0000, 0x4800_0000)]);
        assert_eq!(map.total_ram(), 0x800_0000);
    }

    #[test]
    fn overlapping_and_outside_reservations() {
        let mut map = MemoryMap::<8>::new();
        map.add_ram(0x1000, 0x9000).unwrap();
        map.reserve(0x2000, 0x2000, MemoryKind::Reserved).unwrap();
        map.reserve(0x3000, 0x2000, MemoryKind::Reserved).unwrap();
        map.reserve(0x0, 0x1800, MemoryKind::Reserved).unwrap();
        map.reserve(0x9000, 0x10000, MemoryKind::Reserved).unwrap();
        assert_eq!(usable(&map), [(0x5000, 0x9000)]);
    }

    #[test]
    fn capacity_is_reported() {
        let mut map = MemoryMap::<1>::new();
        map.add_ram(0, 4096).unwrap();
        assert_eq!(map.add_ram(8192, 4096), Err(MemoryMapFull));
    }
}
