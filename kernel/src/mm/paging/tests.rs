//! Host tests of the descriptor formats and the table walker: encodings, round trips, map/unmap/protect, block splitting, W^X refusal.

use std::boxed::Box;
use std::vec::Vec;

use hinoki_interface::{MapError, PageFlags, PhysicalAddress};

use super::aarch64::{self, Stage1};
use super::x86_64::FourLevel;
use super::*;

#[repr(C, align(4096))]
struct Frame([u64; ENTRIES_PER_TABLE]);

/// Frames from the host heap; a frame's "physical address" is its host address.
pub(crate) struct Arena {
    frames: Vec<Box<Frame>>,
    freed: Vec<u64>,
    limit: usize,
}

impl Arena {
    pub(crate) fn new() -> Arena {
        Arena { frames: Vec::new(), freed: Vec::new(), limit: usize::MAX }
    }
}

// SAFETY: each frame is a zeroed, 4096-aligned heap block kept alive by the arena (never
// dropped before the test ends), reachable at its address with offset 0.
unsafe impl FrameAllocator for Arena {
    fn allocate_frame(&mut self) -> Option<PhysicalAddress> {
        if self.frames.len() >= self.limit {
            return None;
        }
        let frame = Box::new(Frame([0; ENTRIES_PER_TABLE]));
        let address = &*frame as *const Frame as u64;
        self.frames.push(frame);
        Some(PhysicalAddress(address))
    }

    fn free_frame(&mut self, frame: PhysicalAddress) {
        self.freed.push(frame.0);
    }
}

/// Records the maintenance the walker asks for.
#[derive(Default)]
struct Recorder {
    published: usize,
    invalidated: Vec<(usize, usize)>,
}

impl TlbMaintenance for Recorder {
    fn publish(&mut self) {
        self.published += 1;
    }

    fn invalidate(&mut self, virtual_address: usize, size: usize) {
        self.invalidated.push((virtual_address, size));
    }
}

const RW: PageFlags = PageFlags(PageFlags::READ.0 | PageFlags::WRITE.0 | PageFlags::GLOBAL.0);
const RX: PageFlags = PageFlags(PageFlags::READ.0 | PageFlags::EXECUTE.0 | PageFlags::GLOBAL.0);
const RO: PageFlags = PageFlags(PageFlags::READ.0 | PageFlags::GLOBAL.0);
const MIB: usize = 1 << 20;

fn mappings<F: DescriptorFormat>(table: &PageTable<F>) -> Vec<Mapping> {
    let mut out = Vec::new();
    table.for_each_mapping(&mut |mapping| out.push(mapping));
    out
}

#[test]
fn aarch64_descriptors_match_the_architecture() {
    assert_eq!(aarch64::MAIR_VALUE, 0x0044_04ff);
    assert_eq!(aarch64::translation_control(0b010), 0x0000_0002_0090_3510);
    assert_eq!(aarch64::translation_control(0b110) >> 32, 0b101, "IPS is capped at 48 bits");
    // Kernel text page: read-only (AP[2]), UXN, inner shareable, AF, page type.
    assert_eq!(Stage1::leaf(3, PhysicalAddress(0x4020_0000), RX), 0x0040_0000_4020_0783);
    // Kernel data page: read-write, PXN and UXN.
    assert_eq!(Stage1::leaf(3, PhysicalAddress(0x4030_0000), RW), 0x0060_0000_4030_0703);
    // A 2 MiB device block: AttrIndx 1, not shareable, never executable.
    assert_eq!(Stage1::leaf(2, PhysicalAddress(0x0900_0000), RW | PageFlags::DEVICE), 0x0060_0000_0900_0405);
    // Uncached normal memory uses AttrIndx 2; a non-global user page sets nG and AP[1].
    assert_eq!(Stage1::leaf(3, PhysicalAddress(0x1000), RW | PageFlags::UNCACHED) >> 2 & 0b111, 2);
    let user = Stage1::leaf(3, PhysicalAddress(0x1000), PageFlags::READ | PageFlags::USER | PageFlags::EXECUTE);
    assert_eq!(user & (1 << 11 | 1 << 6 | 1 << 53 | 1 << 54), 1 << 11 | 1 << 6 | 1 << 53);
    assert_eq!(Stage1::table(PhysicalAddress(0x4100_0000)), 0x4100_0003);
    assert_eq!(Stage1::decode(1, 0x4100_0003), Descriptor::Table(PhysicalAddress(0x4100_0000)));
    assert_eq!(Stage1::decode(3, 0x4100_0001), Descriptor::Invalid, "0b01 at level 3 is reserved");
    assert_eq!(Stage1::decode(0, 0x4000_0001), Descriptor::Invalid, "no level-0 blocks");
    assert_eq!(Stage1::decode(2, 0x4000_0000), Descriptor::Invalid);
}

#[test]
fn x86_64_entries_match_the_architecture() {
    assert_eq!(FourLevel::leaf(3, PhysicalAddress(0x10_1000), RX), 0x0000_0000_0010_1161);
    assert_eq!(FourLevel::leaf(3, PhysicalAddress(0x20_0000), RW), 0x8000_0000_0020_0163);
    assert_eq!(
        FourLevel::leaf(2, PhysicalAddress(0xfee0_0000), PageFlags::READ | PageFlags::WRITE | PageFlags::DEVICE),
        0x8000_0000_fee0_00fb
    );
    assert_eq!(FourLevel::leaf(3, PhysicalAddress(0x3000), RW | PageFlags::UNCACHED) & 0x18, 0x10);
    assert_eq!(FourLevel::table(PhysicalAddress(0x5000)), 0x5007);
    // PS in a PDE is a leaf; bit 12 of a 2 MiB leaf is PAT, not address.
    assert_eq!(
        FourLevel::decode(2, 0x8000_0000_4020_10e3),
        Descriptor::Leaf { output: PhysicalAddress(0x4020_0000), flags: PageFlags::READ | PageFlags::WRITE }
    );
    assert_eq!(FourLevel::decode(3, 0x2), Descriptor::Invalid);
    assert_eq!(FourLevel::decode(0, 0x5087), Descriptor::Table(PhysicalAddress(0x5000)), "PS is reserved in a PML4E");
}

fn every_valid_flag_set() -> Vec<PageFlags> {
    (0..1u32 << 7)
        .map(PageFlags)
        .filter(|flags| check_flags(*flags).is_ok())
        .filter(|flags| !(flags.contains(PageFlags::DEVICE) && flags.contains(PageFlags::UNCACHED)))
        .collect()
}

fn round_trip<F: DescriptorFormat>() {
    let flag_sets = every_valid_flag_set();
    assert!(flag_sets.len() > 20);
    for flags in flag_sets {
        for (level, output) in [(3, 0x1234_5000u64), (2, 0x7fe0_0000), (1, 0x1_4000_0000)] {
            let raw = F::leaf(level, PhysicalAddress(output), flags);
            assert_eq!(
                F::decode(level, raw),
                Descriptor::Leaf { output: PhysicalAddress(output), flags },
                "{} level {} {:?}",
                F::NAME,
                level,
                flags
            );
        }
    }
}

#[test]
fn leaves_round_trip_every_valid_flag_set() {
    round_trip::<Stage1>();
    round_trip::<FourLevel>();
}

#[test]
fn writable_executable_and_unreadable_mappings_are_refused() {
    assert_eq!(check_flags(PageFlags::READ | PageFlags::WRITE | PageFlags::EXECUTE), Err(MapError::InvalidFlags));
    assert_eq!(check_flags(PageFlags::READ | PageFlags::DEVICE | PageFlags::EXECUTE), Err(MapError::InvalidFlags));
    assert_eq!(check_flags(PageFlags::WRITE), Err(MapError::InvalidFlags));
    let mut arena = Arena::new();
    let mut table = PageTable::<Stage1>::new(&mut arena, 0).unwrap();
    let wx = RW | PageFlags::EXECUTE;
    assert_eq!(
        table.map(0x1000, PhysicalAddress(0x1000), 0x1000, wx, MapOptions::PAGES, &mut arena, &mut NotLive),
        Err(MapError::InvalidFlags)
    );
    table.map(0x1000, PhysicalAddress(0x1000), 0x1000, RW, MapOptions::PAGES, &mut arena, &mut NotLive).unwrap();
    assert_eq!(table.protect(0x1000, 0x1000, wx, &mut arena, &mut NotLive), Err(MapError::InvalidFlags));
    assert_eq!(table.translate(0x1000), Some((PhysicalAddress(0x1000), RW)));
}

fn map_translate_unmap<F: DescriptorFormat>() {
    let mut arena = Arena::new();
    let mut table = PageTable::<F>::new(&mut arena, 0).unwrap();
    let mut recorder = Recorder::default();
    table.map(0x4020_0000, PhysicalAddress(0x8000_0000), 5 * PAGE_SIZE, RX, MapOptions::PAGES, &mut arena, &mut recorder).unwrap();
    assert!(recorder.published > 0);
    // Levels 1, 2 and 3 below the root.
    assert_eq!(arena.frames.len(), 4);
    assert_eq!(table.translate(0x4020_2abc), Some((PhysicalAddress(0x8000_2abc), RX)));
    assert_eq!(table.translate(0x4020_5000), None);
    assert_eq!(table.translate(0x401f_f000), None);
    assert_eq!(table.translate(1 << 48), None);
    assert_eq!(mappings(&table).len(), 5);
    assert!(mappings(&table).iter().all(|mapping| mapping.size == PAGE_SIZE));

    assert_eq!(
        table.map(0x4020_4000, PhysicalAddress(0), 2 * PAGE_SIZE, RW, MapOptions::PAGES, &mut arena, &mut NotLive),
        Err(MapError::AlreadyMapped)
    );
    assert_eq!(table.translate(0x4020_5000), None, "a refused map changes nothing");

    table.unmap(0x4020_1000, 2 * PAGE_SIZE, &mut arena, &mut NotLive).unwrap();
    assert_eq!(table.translate(0x4020_1000), None);
    assert_eq!(table.translate(0x4020_2000), None);
    assert_eq!(table.translate(0x4020_3000), Some((PhysicalAddress(0x8000_3000), RX)));
    assert_eq!(table.unmap(0x4020_0000, 2 * PAGE_SIZE, &mut arena, &mut NotLive), Err(MapError::NotMapped));
    assert_eq!(table.translate(0x4020_0000), Some((PhysicalAddress(0x8000_0000), RX)), "a refused unmap changes nothing");

    table.protect(0x4020_3000, 2 * PAGE_SIZE, RO, &mut arena, &mut NotLive).unwrap();
    assert_eq!(table.translate(0x4020_4000), Some((PhysicalAddress(0x8000_4000), RO)));
    assert_eq!(table.protect(0x4020_0000, 2 * PAGE_SIZE, RO, &mut arena, &mut NotLive), Err(MapError::NotMapped));
}

#[test]
fn pages_map_translate_unmap_and_protect() {
    map_translate_unmap::<Stage1>();
    map_translate_unmap::<FourLevel>();
}

fn blocks_split<F: DescriptorFormat>() -> Vec<(usize, usize)> {
    let mut arena = Arena::new();
    let mut table = PageTable::<F>::new(&mut arena, 0).unwrap();
    // 6 MiB from 1 MiB below a 2 MiB boundary: pages, two blocks, pages.
    let start = 0x4000_0000 + MIB;
    table.map(start, PhysicalAddress(start as u64), 6 * MIB, RW, MapOptions::BLOCKS, &mut arena, &mut NotLive).unwrap();
    let sizes: Vec<usize> = mappings(&table).iter().map(|mapping| mapping.size).collect();
    assert_eq!(sizes.iter().filter(|size| **size == 2 * MIB).count(), 2);
    assert_eq!(sizes.iter().filter(|size| **size == PAGE_SIZE).count(), 2 * 256);
    // Unmap one page inside the first block: it becomes 511 pages.
    let mut recorder = Recorder::default();
    let hole = 0x4020_0000 + 0x7000;
    table.unmap(hole, PAGE_SIZE, &mut arena, &mut recorder).unwrap();
    assert_eq!(table.translate(hole), None);
    assert_eq!(table.translate(hole - PAGE_SIZE + 8), Some((PhysicalAddress((hole - PAGE_SIZE + 8) as u64), RW)));
    assert_eq!(table.translate(hole + PAGE_SIZE), Some((PhysicalAddress((hole + PAGE_SIZE) as u64), RW)));
    let after: Vec<Mapping> = mappings(&table);
    assert_eq!(after.iter().filter(|mapping| mapping.size == 2 * MIB).count(), 1);
    assert_eq!(after.iter().filter(|mapping| mapping.size == PAGE_SIZE).count(), 2 * 256 + 511);
    // Protect a range across the second block's lower half: split, flags change only there.
    table.protect(0x4040_0000, MIB, RO, &mut arena, &mut recorder).unwrap();
    assert_eq!(table.translate(0x4040_0000).unwrap().1, RO);
    assert_eq!(table.translate(0x404f_f000).unwrap().1, RO);
    assert_eq!(table.translate(0x4050_0000).unwrap().1, RW);
    assert!(mappings(&table).iter().all(|mapping| mapping.size == PAGE_SIZE));
    // The physical addresses stayed contiguous through both splits.
    let mut expected = start;
    for mapping in mappings(&table) {
        if expected == hole {
            expected += PAGE_SIZE;
        }
        assert_eq!(mapping.physical_address.0, mapping.virtual_address as u64);
        assert_eq!(mapping.virtual_address, expected);
        expected += mapping.size;
    }
    // Whole-block operations need no split.
    let frames_before = arena.frames.len();
    table.unmap(0x4040_0000, 2 * MIB, &mut arena, &mut NotLive).unwrap();
    assert_eq!(arena.frames.len(), frames_before);
    recorder.invalidated
}

#[test]
fn blocks_are_split_with_break_before_make_where_the_architecture_needs_it() {
    assert_eq!(blocks_split::<Stage1>(), [(0x4020_0000, 2 * MIB), (0x4040_0000, 2 * MIB)]);
    assert_eq!(blocks_split::<FourLevel>(), []);
}

#[test]
fn unaligned_out_of_range_and_empty_requests() {
    let mut arena = Arena::new();
    let mut table = PageTable::<FourLevel>::new(&mut arena, 0).unwrap();
    assert_eq!(
        table.map(0x1001, PhysicalAddress(0), PAGE_SIZE, RW, MapOptions::PAGES, &mut arena, &mut NotLive),
        Err(MapError::Misaligned)
    );
    assert_eq!(
        table.map(0x1000, PhysicalAddress(0x10), PAGE_SIZE, RW, MapOptions::PAGES, &mut arena, &mut NotLive),
        Err(MapError::Misaligned)
    );
    assert_eq!(table.map(0x1000, PhysicalAddress(0), 100, RW, MapOptions::PAGES, &mut arena, &mut NotLive), Err(MapError::Misaligned));
    assert_eq!(
        table.map((1 << 48) - PAGE_SIZE, PhysicalAddress(0), 2 * PAGE_SIZE, RW, MapOptions::PAGES, &mut arena, &mut NotLive),
        Err(MapError::OutOfRange)
    );
    assert_eq!(table.unmap(usize::MAX & !0xfff, PAGE_SIZE, &mut arena, &mut NotLive), Err(MapError::OutOfRange));
    table.map(0x1000, PhysicalAddress(0), 0, RW, MapOptions::PAGES, &mut arena, &mut NotLive).unwrap();
    assert!(mappings(&table).is_empty());
    // The last page below 2^48 works.
    table.map((1 << 48) - PAGE_SIZE, PhysicalAddress(0x5000), PAGE_SIZE, RW, MapOptions::PAGES, &mut arena, &mut NotLive).unwrap();
    assert_eq!(table.translate((1 << 48) - 1), Some((PhysicalAddress(0x5fff), RW)));
}

#[test]
fn filling_holes_keeps_earlier_mappings() {
    let mut arena = Arena::new();
    let mut table = PageTable::<Stage1>::new(&mut arena, 0).unwrap();
    table.map(0x4020_0000, PhysicalAddress(0x4020_0000), 2 * PAGE_SIZE, RX, MapOptions::PAGES, &mut arena, &mut NotLive).unwrap();
    let fill = MapOptions { blocks: true, fill_holes: true };
    table.map(0x4000_0000, PhysicalAddress(0x4000_0000), 8 * MIB, RW, fill, &mut arena, &mut NotLive).unwrap();
    assert_eq!(table.translate(0x4020_1000).unwrap().1, RX);
    assert_eq!(table.translate(0x4020_2000).unwrap().1, RW);
    let blocks = mappings(&table).iter().filter(|mapping| mapping.size == 2 * MIB).count();
    assert_eq!(blocks, 3, "the 2 MiB range holding the text is mapped with pages, the others with blocks");
}

#[test]
fn running_out_of_table_memory_is_reported() {
    let mut arena = Arena::new();
    let mut table = PageTable::<FourLevel>::new(&mut arena, 0).unwrap();
    arena.limit = 2;
    assert_eq!(table.map(0, PhysicalAddress(0), PAGE_SIZE, RW, MapOptions::PAGES, &mut arena, &mut NotLive), Err(MapError::OutOfMemory));
    arena.limit = 3;
    table.map(0x20_0000, PhysicalAddress(0), 2 * MIB, RW, MapOptions::BLOCKS, &mut arena, &mut NotLive).unwrap();
    assert_eq!(table.unmap(0x20_0000, PAGE_SIZE, &mut arena, &mut NotLive), Err(MapError::OutOfMemory));
    assert_eq!(table.translate(0x20_0000), Some((PhysicalAddress(0), RW)), "a failed split leaves the block");
}

#[test]
fn address_spaces_share_the_kernel_part_and_free_the_rest() {
    let mut arena = Arena::new();
    let mut kernel = PageTable::<Stage1>::new(&mut arena, 0).unwrap();
    kernel.map(0x4000_0000, PhysicalAddress(0x4000_0000), PAGE_SIZE, RW, MapOptions::PAGES, &mut arena, &mut NotLive).unwrap();
    let mut process = PageTable::<Stage1>::new(&mut arena, 0).unwrap();
    process.share_top_level(&kernel, 0..1);
    assert_eq!(process.translate(0x4000_0000), kernel.translate(0x4000_0000));
    let user = PageFlags::READ | PageFlags::WRITE | PageFlags::USER;
    process.map(1 << 40, PhysicalAddress(0x9000), PAGE_SIZE, user, MapOptions::PAGES, &mut arena, &mut NotLive).unwrap();
    assert_eq!(kernel.translate(1 << 40), None);
    let mut all_tables = Vec::new();
    process.for_each_table(&mut |table| all_tables.push(table.0));
    let kernel_tables = arena.frames.len() - all_tables.len();
    process.free_tables(0..1, &mut arena);
    // The process's root and its three tables for the user page; the kernel's stay.
    assert_eq!(arena.freed.len(), 4);
    assert_eq!(kernel_tables, 1);
    assert_eq!(kernel.translate(0x4000_0000).unwrap().0, PhysicalAddress(0x4000_0000));
}
