//! Boot entry: the arm64 Image header, exception-level drop to EL1, FP enable, stack and BSS, then the board's Rust entry; and the secondary-CPU entries PSCI CPU_ON and spin tables start.

use core::arch::global_asm;

// The header follows the Linux arm64 boot protocol so QEMU (`-kernel Image`) and the
// Raspberry Pi firmware honour `text_offset`. The image is linked at its run address, so
// the code runs with the MMU off at the addresses it was linked for.
//
// Secondary cores the firmware starts at the image entry (the Raspberry Pi starts all four)
// park in `wfe`; SMP bring-up starts secondaries at `hinoki_aarch64_secondary_start`
// (PSCI) or `hinoki_aarch64_spin_table_start` (spin table).
global_asm!(
    r#"
    .section .text.head, "ax"
    .global _start
_start:
    b       primary_entry
    .long   0
    .quad   __text_offset
    .quad   __kernel_size
    .quad   0xa
    .quad   0
    .quad   0
    .quad   0
    .ascii  "ARM\x64"
    .long   0

primary_entry:
    mov     x19, x0
    mrs     x1, mpidr_el1
    and     x1, x1, #0xff
    cbz     x1, 1f
0:  wfe
    b       0b

1:  adr     x20, primary_at_el1
    b       drop_to_el1

    // Secondary CPUs started by PSCI CPU_ON enter here with x0 = their `SecondaryBoot`
    // block (see `smp.rs`), at the exception level the boot CPU entered at.
    .global hinoki_aarch64_secondary_start
hinoki_aarch64_secondary_start:
    mov     x19, x0
    adr     x20, secondary_at_el1
    b       drop_to_el1

    // Secondary CPUs a spin table releases (the Raspberry Pi firmware stub, whose release
    // addresses `smp::start_cpu_spin_table` writes) enter here with x0 = 0, at the boot
    // CPU's exception level and with the MMU off. The core number (MPIDR Aff0) picks the
    // `SecondaryBoot` block published for it; a core with none parks again.
    .global hinoki_aarch64_spin_table_start
hinoki_aarch64_spin_table_start:
    mrs     x1, mpidr_el1
    and     x1, x1, #0xff
    cmp     x1, #{spin_table_slots}
    b.hs    7f
    ldr     x2, =hinoki_aarch64_spin_table_boot
    ldr     x0, [x2, x1, lsl #3]
    cbnz    x0, hinoki_aarch64_secondary_start
7:  wfe
    b       7b

    // Continues at x20 at EL1 (x19 and x20 are preserved).
drop_to_el1:
    mrs     x1, CurrentEL
    lsr     x1, x1, #2
    cmp     x1, #3
    b.eq    from_el3
    cmp     x1, #2
    b.eq    from_el2
    br      x20

from_el3:
    // EL3 (an ELF handed to the Raspberry Pi machine): non-secure, EL2 is AArch64.
    mov     x1, #0x5b1
    msr     scr_el3, x1
    mov     x1, #0x3c9
    msr     spsr_el3, x1
    adr     x1, from_el2
    msr     elr_el3, x1
    eret

from_el2:
    // EL1 is AArch64, EL1 may use the physical counter and timer, no virtual offset.
    mov     x1, #(1 << 31)
    msr     hcr_el2, x1
    mrs     x1, cnthctl_el2
    orr     x1, x1, #3
    msr     cnthctl_el2, x1
    msr     cntvoff_el2, xzr
    // With a GICv3 CPU interface (ID_AA64PFR0_EL1.GIC != 0), let EL1 use the ICC_*
    // system registers: ICC_SRE_EL2.Enable (bit 3) and SRE (bit 0). Without one, ICC_SRE_EL2
    // does not exist (GICv2 machines), so the check comes first.
    mrs     x1, id_aa64pfr0_el1
    ubfx    x1, x1, #24, #4
    cbz     x1, 5f
    mrs     x1, icc_sre_el2
    orr     x1, x1, #0x8
    orr     x1, x1, #0x1
    msr     icc_sre_el2, x1
    isb
5:
    // No traps of FP/SIMD from EL1/EL0 to EL2.
    mov     x1, #0x33ff
    msr     cptr_el2, x1
    msr     hstr_el2, xzr
    // EL1 stage-1 MMU off, caches off, little endian, RES1 bits set.
    ldr     x1, =0x30d00800
    msr     sctlr_el1, x1
    mov     x1, #0x3c5
    msr     spsr_el2, x1
    msr     elr_el2, x20
    eret

primary_at_el1:
    // The target enables FP/SIMD code generation: stop FP/SIMD accesses from trapping.
    mov     x1, #(3 << 20)
    msr     cpacr_el1, x1
    isb
    ldr     x1, =__boot_stack_top
    mov     sp, x1
    mov     x29, xzr
    mov     x30, xzr
    ldr     x1, =__bss_start
    ldr     x2, =__bss_end
2:  cmp     x1, x2
    b.hs    3f
    str     xzr, [x1], #8
    b       2b
3:  ldr     x1, =exception_vectors
    msr     vbar_el1, x1
    isb
    mov     x0, x19
    bl      hinoki_board_entry
4:  wfe
    b       4b

secondary_at_el1:
    mov     x1, #(3 << 20)
    msr     cpacr_el1, x1
    isb
    // SecondaryBoot: stack top at 0, the per-CPU block for TPIDR_EL1 at 8.
    ldr     x1, [x19, #0]
    mov     sp, x1
    ldr     x1, [x19, #8]
    msr     tpidr_el1, x1
    mov     x29, xzr
    mov     x30, xzr
    ldr     x1, =exception_vectors
    msr     vbar_el1, x1
    isb
    mov     x0, x19
    bl      hinoki_aarch64_secondary_entry
6:  wfe
    b       6b
"#,
    spin_table_slots = const crate::smp::MAX_CPUS,
);
