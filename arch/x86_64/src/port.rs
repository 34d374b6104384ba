//! Port I/O: the `in` and `out` instructions for 8-, 16- and 32-bit device registers.

use core::arch::asm;

/// Reads a byte from `port`.
///
/// # Safety
/// `port` must be a device register whose read has no effect the caller has not accounted
/// for (reading some registers acknowledges interrupts or pops FIFOs).
pub unsafe fn read_u8(port: u16) -> u8 {
    let value: u8;
    // SAFETY: the caller vouches for the port; `in` touches no memory.
    unsafe { asm!("in al, dx", out("al") value, in("dx") port, options(nomem, nostack, preserves_flags)) };
    value
}

/// Writes a byte to `port`.
///
/// # Safety
/// `port` must be a device register the caller owns; the write may change machine state.
pub unsafe fn write_u8(port: u16, value: u8) {
    // SAFETY: the caller vouches for the port; `out` touches no memory.
    unsafe { asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags)) };
}

/// Reads a 16-bit word from `port`.
///
/// # Safety
/// As [`read_u8`].
pub unsafe fn read_u16(port: u16) -> u16 {
    let value: u16;
    // SAFETY: the caller vouches for the port; `in` touches no memory.
    unsafe { asm!("in ax, dx", out("ax") value, in("dx") port, options(nomem, nostack, preserves_flags)) };
    value
}

/// Writes a 16-bit word to `port`.
///
/// # Safety
/// As [`write_u8`].
pub unsafe fn write_u16(port: u16, value: u16) {
    // SAFETY: the caller vouches for the port; `out` touches no memory.
    unsafe { asm!("out dx, ax", in("dx") port, in("ax") value, options(nomem, nostack, preserves_flags)) };
}

/// Reads a 32-bit double word from `port`.
///
/// # Safety
/// As [`read_u8`].
pub unsafe fn read_u32(port: u16) -> u32 {
    let value: u32;
    // SAFETY: the caller vouches for the port; `in` touches no memory.
    unsafe { asm!("in eax, dx", out("eax") value, in("dx") port, options(nomem, nostack, preserves_flags)) };
    value
}

/// Writes a 32-bit double word to `port`.
///
/// # Safety
/// As [`write_u8`].
pub unsafe fn write_u32(port: u16, value: u32) {
    // SAFETY: the caller vouches for the port; `out` touches no memory.
    unsafe { asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack, preserves_flags)) };
}
