//! Changes to the boot page tables' identity map: marking the 2 MiB pages that hold device registers (local APIC, I/O APIC, HPET) uncached, swapping one 2 MiB mapping (for the TLB shootdown test), and local TLB flushes.
//!
//! The boot tables map the low 64 GiB with 2 MiB pages, write-back. Device registers must
//! not be cached: setting PCD and PWT in the page's entry selects PAT entry 3, uncached
//! (UC), whatever the MTRRs say.

use core::arch::asm;

const PRESENT: u64 = 1 << 0;
const WRITE_THROUGH: u64 = 1 << 3;
const CACHE_DISABLE: u64 = 1 << 4;
const LARGE_PAGE: u64 = 1 << 7;
const ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;
const LARGE_PAGE_SIZE: u64 = 2 << 20;

/// Why a range could not be marked uncached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UncachedError {
    /// Part of the range is not mapped.
    NotMapped(u64),
    /// Part of the range is mapped with something other than a 2 MiB page.
    NotLargePage(u64),
}

/// The page-table indices (PML4, PDPT, PD) of `address`.
pub fn indices(address: u64) -> [usize; 3] {
    [((address >> 39) & 0x1ff) as usize, ((address >> 30) & 0x1ff) as usize, ((address >> 21) & 0x1ff) as usize]
}

/// A 2 MiB page entry made uncached (PCD | PWT).
pub const fn uncached(entry: u64) -> u64 {
    entry | CACHE_DISABLE | WRITE_THROUGH
}

/// Whether a page entry is uncached.
pub const fn is_uncached(entry: u64) -> bool {
    entry & (CACHE_DISABLE | WRITE_THROUGH) == CACHE_DISABLE | WRITE_THROUGH
}

fn page_directory_entry(address: u64) -> Result<*mut u64, UncachedError> {
    let root: u64;
    // SAFETY: reading CR3 has no side effects.
    unsafe { asm!("mov {}, cr3", out(reg) root, options(nomem, nostack, preserves_flags)) };
    let [level4, level3, level2] = indices(address);
    let mut table = root & ADDRESS_MASK;
    for index in [level4, level3] {
        // SAFETY: the tables are identity-mapped (they live in the kernel image) and `index`
        // is below 512; reading an entry has no side effects.
        let entry = unsafe { core::ptr::read_volatile((table as *const u64).add(index)) };
        if entry & PRESENT == 0 {
            return Err(UncachedError::NotMapped(address));
        }
        if entry & LARGE_PAGE != 0 {
            return Err(UncachedError::NotLargePage(address));
        }
        table = entry & ADDRESS_MASK;
    }
    Ok((table as *mut u64).wrapping_add(level2))
}

/// Whether the 2 MiB page holding `address` is mapped uncached.
pub fn is_mapped_uncached(address: u64) -> Result<bool, UncachedError> {
    let entry = page_directory_entry(address)?;
    // SAFETY: `entry` points into an identity-mapped page directory.
    Ok(is_uncached(unsafe { core::ptr::read_volatile(entry) }))
}

/// Marks the 2 MiB pages covering `[address, address + size)` uncached and flushes them
/// from this CPU's TLB.
///
/// # Safety
/// Only device registers may live in those 2 MiB pages (uncached RAM would be correct but
/// slow); other CPUs must not have the pages cached in their TLBs (call before starting
/// them, or shoot the TLBs down).
pub unsafe fn make_uncached(address: u64, size: u64) -> Result<(), UncachedError> {
    let first = address & !(LARGE_PAGE_SIZE - 1);
    let mut page = first;
    while page < address + size.max(1) {
        let entry = page_directory_entry(page)?;
        // SAFETY: `entry` points into the live, identity-mapped page directory; the caller
        // vouches that only devices live in this page.
        unsafe {
            let value = core::ptr::read_volatile(entry);
            if value & PRESENT == 0 || value & LARGE_PAGE == 0 {
                return Err(if value & PRESENT == 0 { UncachedError::NotMapped(page) } else { UncachedError::NotLargePage(page) });
            }
            core::ptr::write_volatile(entry, uncached(value));
            asm!("invlpg [{}]", in(reg) page, options(nostack, preserves_flags));
        }
        page += LARGE_PAGE_SIZE;
    }
    Ok(())
}

/// Replaces the 2 MiB page entry that maps `address` with one mapping the 2 MiB-aligned
/// `physical` (present, writable, same cache bits) and flushes it from this CPU's TLB;
/// returns the previous entry for [`restore_large_page`]. Other CPUs keep their cached
/// translation until a TLB shootdown.
///
/// # Safety
/// Nothing may rely on the old mapping of that 2 MiB range while it is replaced (the kernel
/// image, its stacks and the page tables must stay mapped); `physical` must be RAM or devices
/// the caller owns.
pub unsafe fn replace_large_page(address: u64, physical: u64) -> Result<u64, UncachedError> {
    let entry = page_directory_entry(address)?;
    // SAFETY: `entry` points into the live page directory; the caller vouches for the range.
    unsafe {
        let previous = core::ptr::read_volatile(entry);
        if previous & PRESENT == 0 || previous & LARGE_PAGE == 0 {
            return Err(if previous & PRESENT == 0 { UncachedError::NotMapped(address) } else { UncachedError::NotLargePage(address) });
        }
        core::ptr::write_volatile(entry, (previous & !ADDRESS_MASK) | (physical & ADDRESS_MASK & !(LARGE_PAGE_SIZE - 1)));
        flush_page(address);
        Ok(previous)
    }
}

/// Puts back an entry [`replace_large_page`] returned.
///
/// # Safety
/// As for [`replace_large_page`].
pub unsafe fn restore_large_page(address: u64, previous: u64) -> Result<(), UncachedError> {
    let entry = page_directory_entry(address)?;
    // SAFETY: as in `replace_large_page`.
    unsafe { core::ptr::write_volatile(entry, previous) };
    flush_page(address);
    Ok(())
}

/// Drops the translation of `address` from this CPU's TLB (INVLPG).
pub fn flush_page(address: u64) {
    // SAFETY: INVLPG only drops a cached translation.
    unsafe { asm!("invlpg [{}]", in(reg) address, options(nostack, preserves_flags)) };
}

/// Drops every non-global translation from this CPU's TLB by reloading CR3.
pub fn flush_all() {
    // SAFETY: writing CR3 back with its own value keeps the address space and flushes the TLB.
    unsafe { asm!("mov {scratch}, cr3", "mov cr3, {scratch}", scratch = out(reg) _, options(nostack, preserves_flags)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_of_device_pages() {
        // The local APIC (0xfee00000) and the I/O APIC (0xfec00000) in GiB 3.
        assert_eq!(indices(0xfee0_0000), [0, 3, 0x1f7]);
        assert_eq!(indices(0xfec0_0000), [0, 3, 0x1f6]);
        assert_eq!(indices(0xfed0_0000), [0, 3, 0x1f6], "the HPET shares the I/O APIC's 2 MiB page");
        assert_eq!(indices(1 << 39), [1, 0, 0]);
    }

    #[test]
    fn uncached_bits() {
        let entry = 0xfee0_0000 | PRESENT | 2 | LARGE_PAGE;
        assert!(!is_uncached(entry));
        assert_eq!(uncached(entry), entry | 0x18);
        assert!(is_uncached(uncached(entry)));
    }
}
