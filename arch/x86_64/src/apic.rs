//! Local APIC access on the calling CPU: enabling it in x2APIC mode (MSRs) when CPUID has it, else in xAPIC mode (uncached MMIO); register reads and writes, the interrupt command register and the TSC-deadline MSR.

use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use crate::cpu::cpuid;
use crate::msr;

/// IA32_APIC_BASE bit 11: the APIC is globally enabled.
const APIC_GLOBAL_ENABLE: u64 = 1 << 11;
/// IA32_APIC_BASE bit 10: x2APIC mode.
const APIC_X2APIC_ENABLE: u64 = 1 << 10;
/// IA32_APIC_BASE bits 51:12: the xAPIC register page.
const APIC_BASE_MASK: u64 = 0x000f_ffff_ffff_f000;

/// xAPIC register offsets this module needs itself.
const ID: usize = 0x020;
const INTERRUPT_COMMAND: usize = 0x300;
const INTERRUPT_COMMAND_HIGH: usize = 0x310;
const DELIVERY_PENDING: u32 = 1 << 12;

/// How the local APICs are reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// MSRs 0x800-0x8ff, 32-bit APIC IDs.
    X2Apic,
    /// The 4 KiB register page at this physical (identity-mapped, uncached) address.
    XApic(usize),
}

const NOT_CHOSEN: u8 = 0;
const X2APIC: u8 = 1;
const XAPIC: u8 = 2;

static MODE: AtomicU8 = AtomicU8::new(NOT_CHOSEN);
static XAPIC_BASE: AtomicUsize = AtomicUsize::new(0);

/// Whether the CPU has x2APIC mode (CPUID.01H:ECX[21]).
pub fn has_x2apic() -> bool {
    cpuid(1).ecx & (1 << 21) != 0
}

/// Whether the local APIC timer has TSC-deadline mode (CPUID.01H:ECX[24]).
pub fn has_tsc_deadline() -> bool {
    cpuid(1).ecx & (1 << 24) != 0
}

/// Whether the CPU has a local APIC at all (CPUID.01H:EDX[9]).
pub fn has_apic() -> bool {
    cpuid(1).edx & (1 << 9) != 0
}

/// The xAPIC register page's physical address from IA32_APIC_BASE.
pub fn base_address() -> usize {
    // SAFETY: IA32_APIC_BASE exists on every CPU with an APIC (checked by callers via CPUID).
    (unsafe { msr::read(msr::APIC_BASE) } & APIC_BASE_MASK) as usize
}

/// Picks the mode for every CPU (x2APIC when the CPU has it and `allow_x2apic`, else xAPIC
/// at `xapic_base`); the first call decides.
pub fn choose_mode(allow_x2apic: bool, xapic_base: usize) -> Mode {
    let wanted = if allow_x2apic && has_x2apic() { X2APIC } else { XAPIC };
    XAPIC_BASE.store(xapic_base, Ordering::Relaxed);
    let _ = MODE.compare_exchange(NOT_CHOSEN, wanted, Ordering::AcqRel, Ordering::Acquire);
    mode()
}

/// The chosen mode (xAPIC at the MSR's base before [`choose_mode`]).
pub fn mode() -> Mode {
    match MODE.load(Ordering::Acquire) {
        X2APIC => Mode::X2Apic,
        XAPIC => Mode::XApic(XAPIC_BASE.load(Ordering::Relaxed)),
        _ => Mode::XApic(base_address()),
    }
}

/// Globally enables the calling CPU's local APIC in the chosen mode (xAPIC first, then
/// x2APIC: the architecture refuses a direct disabled-to-x2APIC transition).
///
/// # Safety
/// Call once per CPU after [`choose_mode`], with interrupts masked; for xAPIC mode the
/// register page must be identity-mapped uncached.
pub unsafe fn enable_on_this_cpu() {
    // SAFETY: IA32_APIC_BASE exists (the caller checked for an APIC); setting the enable bits
    // keeps the base address.
    unsafe {
        let base = msr::read(msr::APIC_BASE);
        if base & APIC_GLOBAL_ENABLE == 0 {
            msr::write(msr::APIC_BASE, base | APIC_GLOBAL_ENABLE);
        }
        if mode() == Mode::X2Apic && base & APIC_X2APIC_ENABLE == 0 {
            msr::write(msr::APIC_BASE, base | APIC_GLOBAL_ENABLE | APIC_X2APIC_ENABLE);
        }
    }
}

/// Reads local APIC register `offset` (xAPIC offset) of the calling CPU.
pub fn read(offset: u32) -> u32 {
    match mode() {
        // SAFETY: MSRs 0x800-0x8ff are the x2APIC registers once x2APIC mode is on; the
        // callers read only defined registers.
        Mode::X2Apic => unsafe { msr::read(0x800 + (offset >> 4)) as u32 },
        // SAFETY: the register page is mapped uncached (`choose_mode` contract); reads of
        // defined registers have no side effects.
        Mode::XApic(base) => unsafe { core::ptr::read_volatile((base + offset as usize) as *const u32) },
    }
}

/// Writes local APIC register `offset` of the calling CPU.
pub fn write(offset: u32, value: u32) {
    match mode() {
        // SAFETY: as in `read`; writes to defined x2APIC registers.
        Mode::X2Apic => unsafe { msr::write(0x800 + (offset >> 4), value as u64) },
        // SAFETY: as in `read`.
        Mode::XApic(base) => unsafe { core::ptr::write_volatile((base + offset as usize) as *mut u32, value) },
    }
}

/// Sends an interrupt command: the x2APIC ICR value (destination in bits 63:32) or, in
/// xAPIC mode, `xapic_halves` = (high, low), waiting until the APIC has sent it.
pub fn send(x2apic_value: u64, xapic_halves: (u32, u32)) {
    match mode() {
        // SAFETY: MSR 0x830 is the x2APIC ICR; one write sends the IPI.
        Mode::X2Apic => unsafe { msr::write(0x830, x2apic_value) },
        Mode::XApic(base) => {
            let register = |offset: usize| (base + offset) as *mut u32;
            // SAFETY: the ICR halves of the uncached register page; the high half is written
            // first because writing the low half sends.
            unsafe {
                while core::ptr::read_volatile(register(INTERRUPT_COMMAND)) & DELIVERY_PENDING != 0 {
                    core::hint::spin_loop();
                }
                core::ptr::write_volatile(register(INTERRUPT_COMMAND_HIGH), xapic_halves.0);
                core::ptr::write_volatile(register(INTERRUPT_COMMAND), xapic_halves.1);
                while core::ptr::read_volatile(register(INTERRUPT_COMMAND)) & DELIVERY_PENDING != 0 {
                    core::hint::spin_loop();
                }
            }
        }
    }
}

/// The calling CPU's APIC ID.
pub fn apic_id() -> u32 {
    match mode() {
        Mode::X2Apic => read(ID as u32),
        Mode::XApic(_) => read(ID as u32) >> 24,
    }
}

/// The APIC ID CPUID reports for the calling CPU (leaf 1, EBX[31:24]), usable before the
/// local APIC is enabled.
pub fn initial_apic_id() -> u32 {
    cpuid(1).ebx >> 24
}

/// Arms the TSC-deadline timer (0 disarms). The fence orders the preceding LVT write
/// (TSC-deadline mode) before the MSR write, as the SDM requires.
pub fn write_tsc_deadline(deadline: u64) {
    // SAFETY: IA32_TSC_DEADLINE exists when CPUID reports TSC-deadline mode, the only case in
    // which the timer driver calls this; MFENCE only orders memory accesses.
    unsafe {
        core::arch::asm!("mfence", options(nostack, preserves_flags));
        msr::write(msr::TSC_DEADLINE, deadline);
    }
}
