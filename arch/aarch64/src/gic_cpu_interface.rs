//! GICv3 CPU interface system registers (`ICC_*_EL1`): the accessors the portable GICv3 driver reaches through its `SystemRegisters` trait.
//!
//! EL1 may use these only when the system-register interface is enabled: at EL1 by
//! ICC_SRE_EL1.SRE (set by [`enable_system_register_access`]) and, when the kernel was
//! entered at EL2, by ICC_SRE_EL2.{Enable, SRE}, which `boot.rs` sets before dropping to EL1
//! on CPUs that have a GICv3 CPU interface.

use core::arch::asm;

/// Whether this CPU implements the GICv3 system-register CPU interface
/// (ID_AA64PFR0_EL1.GIC, bits [27:24], non-zero).
pub fn has_system_register_interface() -> bool {
    let value: u64;
    // SAFETY: reading ID_AA64PFR0_EL1 has no side effects.
    unsafe { asm!("mrs {}, id_aa64pfr0_el1", out(reg) value, options(nomem, nostack, preserves_flags)) };
    (value >> 24) & 0xf != 0
}

/// Sets ICC_SRE_EL1.{SRE, DFB, DIB}, synchronizes, and returns whether SRE reads back set.
pub fn enable_system_register_access() -> bool {
    let value: u64;
    // SAFETY: ICC_SRE_EL1 only selects how this CPU reaches its GIC CPU interface; the
    // caller checked that the interface exists (GICv3), and the ISB makes the change take
    // effect before any later ICC_* access.
    unsafe {
        asm!(
            "mrs {value}, icc_sre_el1",
            "orr {value}, {value}, #0x7",
            "msr icc_sre_el1, {value}",
            "isb",
            "mrs {value}, icc_sre_el1",
            value = out(reg) value,
            options(nomem, nostack, preserves_flags)
        )
    };
    value & 1 != 0
}

/// Writes ICC_PMR_EL1: interrupts with a priority value below `mask` are signalled.
pub fn set_priority_mask(mask: u8) {
    // SAFETY: the priority mask only filters which interrupts this CPU is signalled.
    unsafe { asm!("msr icc_pmr_el1, {}", in(reg) mask as u64, options(nomem, nostack, preserves_flags)) };
}

/// Writes ICC_BPR1_EL1 (priority grouping for preemption).
pub fn set_binary_point(value: u8) {
    // SAFETY: the binary point only affects preemption between priority groups.
    unsafe { asm!("msr icc_bpr1_el1, {}", in(reg) value as u64, options(nomem, nostack, preserves_flags)) };
}

/// Writes ICC_CTLR_EL1 (0: EOImode 0, the EOI write both drops priority and deactivates).
pub fn set_control(value: u64) {
    // SAFETY: ICC_CTLR_EL1 configures this CPU's interface's EOI mode and reporting.
    unsafe { asm!("msr icc_ctlr_el1, {}", in(reg) value, options(nomem, nostack, preserves_flags)) };
}

/// Writes ICC_IGRPEN1_EL1.Enable and synchronizes.
pub fn set_group1_enabled(enabled: bool) {
    // SAFETY: enabling Group 1 lets the GIC signal IRQs to this CPU; IRQs stay masked by
    // PSTATE.I until the kernel unmasks them, and the vector table is installed at boot.
    unsafe { asm!("msr icc_igrpen1_el1, {}", "isb", in(reg) enabled as u64, options(nomem, nostack, preserves_flags)) };
}

/// Reads ICC_IAR1_EL1: acknowledges and returns the highest-priority pending interrupt ID
/// (1023 when none).
pub fn acknowledge() -> u32 {
    let value: u64;
    // SAFETY: acknowledging changes the interface's state (the interrupt becomes active);
    // the caller ends it with `end_of_interrupt`. The DSB-free read is what the
    // architecture requires; memory is not touched.
    unsafe { asm!("mrs {}, icc_iar1_el1", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value as u32
}

/// Writes ICC_EOIR1_EL1: ends interrupt `intid`, acknowledged earlier on this CPU.
pub fn end_of_interrupt(intid: u32) {
    // SAFETY: ending an interrupt this CPU acknowledged; the ISB makes the priority drop
    // take effect before the handler path returns.
    unsafe { asm!("msr icc_eoir1_el1, {}", "isb", in(reg) intid as u64, options(nomem, nostack, preserves_flags)) };
}

/// Writes ICC_SGI1R_EL1 after a DSB, so memory written before the IPI is visible to its
/// targets when they take it (a system-register write is not ordered by DMB).
pub fn send_sgi(value: u64) {
    // SAFETY: generating an SGI only raises an interrupt on the CPUs the value names.
    unsafe { asm!("dsb ishst", "msr icc_sgi1r_el1, {}", "isb", in(reg) value, options(nostack, preserves_flags)) };
}
