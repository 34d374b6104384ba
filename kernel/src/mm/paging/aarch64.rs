//! The aarch64 VMSAv8-64 stage-1 descriptor format (4 KiB granule, four levels, 48-bit VA) and the MAIR_EL1 / TCR_EL1 values that go with it.
//!
//! Descriptor bits (ARM ARM D8.3): `[1:0]` 0b11 table (levels 0-2) or page (level 3),
//! 0b01 block (levels 1-2); `[4:2]` AttrIndx into MAIR_EL1; `[7:6]` AP (bit 6 EL0
//! access, bit 7 read-only); `[9:8]` SH; bit 10 AF; bit 11 nG; `[47:12]` output or
//! next-table address; bit 53 PXN; bit 54 UXN.

use hinoki_interface::{PageFlags, PhysicalAddress};

use super::{Descriptor, DescriptorFormat, PAGE_LEVEL};

/// MAIR_EL1 attribute index of Normal memory, inner and outer write-back, read- and
/// write-allocate.
pub const MEMORY_NORMAL: u64 = 0;
/// MAIR_EL1 attribute index of Device-nGnRE memory.
pub const MEMORY_DEVICE_NGNRE: u64 = 1;
/// MAIR_EL1 attribute index of Normal non-cacheable memory.
pub const MEMORY_NORMAL_NON_CACHEABLE: u64 = 2;
/// MAIR_EL1: Attr0 = 0xff (Normal WB RW-allocate), Attr1 = 0x04 (Device-nGnRE), Attr2 =
/// 0x44 (Normal non-cacheable).
pub const MAIR_VALUE: u64 = 0xff << (8 * MEMORY_NORMAL) | 0x04 << (8 * MEMORY_DEVICE_NGNRE) | 0x44 << (8 * MEMORY_NORMAL_NON_CACHEABLE);

const VALID: u64 = 1 << 0;
const TABLE_OR_PAGE: u64 = 1 << 1;
const ATTRIBUTE_INDEX_SHIFT: u32 = 2;
const ACCESS_EL0: u64 = 1 << 6;
const READ_ONLY: u64 = 1 << 7;
const INNER_SHAREABLE: u64 = 0b11 << 8;
const ACCESS_FLAG: u64 = 1 << 10;
const NOT_GLOBAL: u64 = 1 << 11;
const PRIVILEGED_EXECUTE_NEVER: u64 = 1 << 53;
const UNPRIVILEGED_EXECUTE_NEVER: u64 = 1 << 54;
const ADDRESS_MASK: u64 = 0x0000_ffff_ffff_f000;

/// TCR_EL1 for TTBR0 only: T0SZ = 16 (48-bit VA), 4 KiB granule, table walks inner and
/// outer write-back write-allocate, inner shareable; TTBR1 walks disabled (EPD1); IPS from
/// ID_AA64MMFR0_EL1.PARange (`physical_range`, capped at 48 bits).
pub const fn translation_control(physical_range: u64) -> u64 {
    let t0sz = 16;
    let inner_write_back = 0b01 << 8;
    let outer_write_back = 0b01 << 10;
    let inner_shareable = 0b11 << 12;
    let granule_4k = 0b00 << 14;
    let t1sz = 16 << 16;
    let disable_ttbr1_walks = 1 << 23;
    let physical_range = if physical_range > 0b101 { 0b101 } else { physical_range };
    t0sz | inner_write_back | outer_write_back | inner_shareable | granule_4k | t1sz | disable_ttbr1_walks | physical_range << 32
}

/// The stage-1 format.
pub struct Stage1;

impl DescriptorFormat for Stage1 {
    const NAME: &'static str = "aarch64 stage 1";
    const BREAK_BEFORE_MAKE: bool = true;

    fn table(next: PhysicalAddress) -> u64 {
        (next.0 & ADDRESS_MASK) | TABLE_OR_PAGE | VALID
    }

    fn leaf(level: usize, output: PhysicalAddress, flags: PageFlags) -> u64 {
        let attribute_index = if flags.contains(PageFlags::DEVICE) {
            MEMORY_DEVICE_NGNRE
        } else if flags.contains(PageFlags::UNCACHED) {
            MEMORY_NORMAL_NON_CACHEABLE
        } else {
            MEMORY_NORMAL
        };
        let mut value = (output.0 & ADDRESS_MASK) | attribute_index << ATTRIBUTE_INDEX_SHIFT | ACCESS_FLAG | VALID;
        if level == PAGE_LEVEL {
            value |= TABLE_OR_PAGE;
        }
        if !flags.contains(PageFlags::DEVICE) {
            value |= INNER_SHAREABLE;
        }
        if !flags.contains(PageFlags::WRITE) {
            value |= READ_ONLY;
        }
        if !flags.contains(PageFlags::GLOBAL) {
            value |= NOT_GLOBAL;
        }
        let execute = flags.contains(PageFlags::EXECUTE);
        if flags.contains(PageFlags::USER) {
            // The kernel never executes user pages.
            value |= ACCESS_EL0 | PRIVILEGED_EXECUTE_NEVER;
            if !execute {
                value |= UNPRIVILEGED_EXECUTE_NEVER;
            }
        } else {
            value |= UNPRIVILEGED_EXECUTE_NEVER;
            if !execute {
                value |= PRIVILEGED_EXECUTE_NEVER;
            }
        }
        value
    }

    fn decode(level: usize, raw: u64) -> Descriptor {
        if raw & VALID == 0 {
            return Descriptor::Invalid;
        }
        let is_table_or_page = raw & TABLE_OR_PAGE != 0;
        match (level, is_table_or_page) {
            (0..=2, true) => return Descriptor::Table(PhysicalAddress(raw & ADDRESS_MASK)),
            // Level-0 blocks do not exist with a 4 KiB granule; 0b01 at level 3 is reserved.
            (0, false) | (3, false) => return Descriptor::Invalid,
            _ => {}
        }
        let block_mask = !((1u64 << (39 - 9 * level as u32)) - 1);
        let output = PhysicalAddress(raw & ADDRESS_MASK & block_mask);
        let user = raw & ACCESS_EL0 != 0;
        let mut flags = PageFlags::READ;
        if raw & READ_ONLY == 0 {
            flags = flags | PageFlags::WRITE;
        }
        if user {
            flags = flags | PageFlags::USER;
        }
        let execute_never = if user { UNPRIVILEGED_EXECUTE_NEVER } else { PRIVILEGED_EXECUTE_NEVER };
        if raw & execute_never == 0 {
            flags = flags | PageFlags::EXECUTE;
        }
        match (raw >> ATTRIBUTE_INDEX_SHIFT) & 0b111 {
            MEMORY_DEVICE_NGNRE => flags = flags | PageFlags::DEVICE,
            MEMORY_NORMAL_NON_CACHEABLE => flags = flags | PageFlags::UNCACHED,
            _ => {}
        }
        if raw & NOT_GLOBAL == 0 {
            flags = flags | PageFlags::GLOBAL;
        }
        Descriptor::Leaf { output, flags }
    }
}
