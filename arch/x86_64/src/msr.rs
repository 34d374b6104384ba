//! Model-specific registers: RDMSR/WRMSR and the MSR numbers the kernel uses.

use core::arch::asm;

/// IA32_APIC_BASE: local APIC base address, global enable (bit 11), x2APIC enable (bit 10).
pub const APIC_BASE: u32 = 0x1b;
/// IA32_TSC_DEADLINE: the TSC value at which the local APIC timer fires in deadline mode.
pub const TSC_DEADLINE: u32 = 0x6e0;
/// IA32_EFER: long mode, NX enable.
pub const EXTENDED_FEATURE_ENABLE: u32 = 0xc000_0080;
/// IA32_GS_BASE: the base of the GS segment (the per-CPU area in the kernel).
pub const GS_BASE: u32 = 0xc000_0101;
/// IA32_KERNEL_GS_BASE: the value SWAPGS exchanges with IA32_GS_BASE.
pub const KERNEL_GS_BASE: u32 = 0xc000_0102;

/// Reads MSR `msr`.
///
/// # Safety
/// `msr` must exist on this CPU (else #GP) and reading it must have no effect the caller
/// has not accounted for.
pub unsafe fn read(msr: u32) -> u64 {
    let low: u32;
    let high: u32;
    // SAFETY: the caller vouches for the MSR; RDMSR touches no memory.
    unsafe { asm!("rdmsr", in("ecx") msr, out("eax") low, out("edx") high, options(nomem, nostack, preserves_flags)) };
    (high as u64) << 32 | low as u64
}

/// Writes `value` to MSR `msr`.
///
/// # Safety
/// `msr` must exist and accept `value`; the write may change how the CPU behaves.
pub unsafe fn write(msr: u32, value: u64) {
    // SAFETY: the caller vouches for the MSR and value; WRMSR touches no memory.
    unsafe { asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32, options(nostack, preserves_flags)) };
}
