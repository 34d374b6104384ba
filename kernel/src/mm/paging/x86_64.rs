//! The x86_64 4-level paging entry format (PML4, PDPT, PD, PT; Intel SDM vol. 3, 4.5).
//!
//! Entry bits: P 0, R/W 1, U/S 2, PWT 3, PCD 4, A 5, D 6, PS 7 (PDPTE/PDE: a 1 GiB / 2 MiB
//! leaf), G 8, address `[51:12]`, XD (NX) 63. Table entries are P|R/W|U/S so the leaf
//! alone decides the access. Leaves are created with A and D set, so the CPU never writes
//! the tables itself. With the reset PAT, PCD|PWT selects UC (device memory) and PCD alone
//! UC- (uncached normal memory).

use hinoki_interface::{PageFlags, PhysicalAddress};

use super::{Descriptor, DescriptorFormat, PAGE_LEVEL};

const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const USER: u64 = 1 << 2;
const WRITE_THROUGH: u64 = 1 << 3;
const CACHE_DISABLE: u64 = 1 << 4;
const ACCESSED: u64 = 1 << 5;
const DIRTY: u64 = 1 << 6;
const PAGE_SIZE_BIT: u64 = 1 << 7;
const GLOBAL: u64 = 1 << 8;
const NO_EXECUTE: u64 = 1 << 63;
const ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;

/// The 4-level paging format.
pub struct FourLevel;

impl DescriptorFormat for FourLevel {
    const NAME: &'static str = "x86_64 4-level";
    const BREAK_BEFORE_MAKE: bool = false;

    fn table(next: PhysicalAddress) -> u64 {
        (next.0 & ADDRESS_MASK) | USER | WRITABLE | PRESENT
    }

    fn leaf(level: usize, output: PhysicalAddress, flags: PageFlags) -> u64 {
        let mut value = (output.0 & ADDRESS_MASK) | ACCESSED | DIRTY | PRESENT;
        if level != PAGE_LEVEL {
            value |= PAGE_SIZE_BIT;
        }
        if flags.contains(PageFlags::WRITE) {
            value |= WRITABLE;
        }
        if flags.contains(PageFlags::USER) {
            value |= USER;
        }
        if flags.contains(PageFlags::DEVICE) {
            value |= CACHE_DISABLE | WRITE_THROUGH;
        } else if flags.contains(PageFlags::UNCACHED) {
            value |= CACHE_DISABLE;
        }
        if flags.contains(PageFlags::GLOBAL) {
            value |= GLOBAL;
        }
        if !flags.contains(PageFlags::EXECUTE) {
            value |= NO_EXECUTE;
        }
        value
    }

    fn decode(level: usize, raw: u64) -> Descriptor {
        if raw & PRESENT == 0 {
            return Descriptor::Invalid;
        }
        let leaf = level == PAGE_LEVEL || (level != 0 && raw & PAGE_SIZE_BIT != 0);
        if !leaf {
            return Descriptor::Table(PhysicalAddress(raw & ADDRESS_MASK));
        }
        // In 2 MiB and 1 GiB leaves bit 12 is PAT, not address.
        let block_mask = !((1u64 << (39 - 9 * level as u32)) - 1);
        let output = PhysicalAddress(raw & ADDRESS_MASK & block_mask);
        let mut flags = PageFlags::READ;
        if raw & WRITABLE != 0 {
            flags = flags | PageFlags::WRITE;
        }
        if raw & USER != 0 {
            flags = flags | PageFlags::USER;
        }
        match (raw & CACHE_DISABLE != 0, raw & WRITE_THROUGH != 0) {
            (true, true) => flags = flags | PageFlags::DEVICE,
            (true, false) => flags = flags | PageFlags::UNCACHED,
            _ => {}
        }
        if raw & GLOBAL != 0 {
            flags = flags | PageFlags::GLOBAL;
        }
        if raw & NO_EXECUTE == 0 {
            flags = flags | PageFlags::EXECUTE;
        }
        Descriptor::Leaf { output, flags }
    }
}
