//! Application-processor start-up: a real-mode trampoline copied below 1 MiB (16-bit, then 32-bit protected mode, then long mode on the boot page tables) and the INIT-SIPI-SIPI sequence that starts each processor there.
//!
//! The trampoline is assembled for [`TRAMPOLINE_ADDRESS`] and copied there. Its data block
//! ([`TrampolineData`]) carries the boot CPU's CR3, CR4, CR0 and EFER, the new CPU's stack
//! top, its logical id and the 64-bit entry to call. Processors start one at a time, so one
//! data block serves them all: the starter waits until the new CPU reports itself before it
//! reuses the block.

use core::sync::atomic::{AtomicU32, Ordering};

/// Physical address the trampoline runs at: page-aligned, below 1 MiB, in the first MiB the
/// board keeps out of the page allocator. The start-up IPI's vector is its page number.
pub const TRAMPOLINE_ADDRESS: usize = 0x8000;
/// The SIPI vector field: the start page.
pub const STARTUP_VECTOR: u8 = (TRAMPOLINE_ADDRESS >> 12) as u8;

/// What the trampoline reads; the layout matches the `ap_data` labels in the assembly.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TrampolineData {
    /// Page-table root (must be below 4 GiB: loaded from 32-bit mode).
    pub cr3: u64,
    /// CR4 (PAE and the SSE bits) to load before paging.
    pub cr4: u64,
    /// CR0 (PE, PG, WP, MP) that turns paging on.
    pub cr0: u64,
    /// EFER (LME, NXE).
    pub efer: u64,
    /// The new CPU's stack top (16-byte aligned).
    pub stack_top: u64,
    /// `extern "C" fn(cpu: u32) -> !`, called in long mode on that stack.
    pub entry: u64,
    /// The new CPU's logical id.
    pub cpu: u64,
}

// The trampoline. CS:IP is 0x0800:0000 after the SIPI; the code computes every address
// from TRAMPOLINE_BASE, so it only works copied there.
#[cfg(target_os = "none")]
core::arch::global_asm!(
    r#"
    .set TRAMPOLINE_BASE, 0x8000

    .section .rodata.ap_trampoline, "a"
    .balign 16
    .global hinoki_ap_trampoline_start
hinoki_ap_trampoline_start:
    .code16
    cli
    cld
    xorw    %ax, %ax
    movw    %ax, %ds
    lgdtl   ap_gdt_pointer - hinoki_ap_trampoline_start + TRAMPOLINE_BASE
    movl    %cr0, %eax
    orl     $1, %eax
    movl    %eax, %cr0
    ljmpl   $0x08, $(ap_protected_mode - hinoki_ap_trampoline_start + TRAMPOLINE_BASE)

    .code32
ap_protected_mode:
    movw    $0x10, %ax
    movw    %ax, %ds
    movw    %ax, %es
    movw    %ax, %ss
    movl    ap_data_cr4 - hinoki_ap_trampoline_start + TRAMPOLINE_BASE, %eax
    movl    %eax, %cr4
    movl    ap_data_cr3 - hinoki_ap_trampoline_start + TRAMPOLINE_BASE, %eax
    movl    %eax, %cr3
    movl    $0xc0000080, %ecx
    movl    ap_data_efer - hinoki_ap_trampoline_start + TRAMPOLINE_BASE, %eax
    xorl    %edx, %edx
    wrmsr
    movl    ap_data_cr0 - hinoki_ap_trampoline_start + TRAMPOLINE_BASE, %eax
    movl    %eax, %cr0
    ljmpl   $0x18, $(ap_long_mode - hinoki_ap_trampoline_start + TRAMPOLINE_BASE)

    .code64
ap_long_mode:
    xorl    %eax, %eax
    movw    %ax, %fs
    movw    %ax, %gs
    movq    ap_data_stack - hinoki_ap_trampoline_start + TRAMPOLINE_BASE, %rsp
    movq    ap_data_entry - hinoki_ap_trampoline_start + TRAMPOLINE_BASE, %rax
    movl    ap_data_cpu - hinoki_ap_trampoline_start + TRAMPOLINE_BASE, %edi
    xorl    %ebp, %ebp
    callq   *%rax
1:  cli
    hlt
    jmp     1b

    .balign 8
ap_gdt:
    .quad 0
    .quad 0x00cf9a000000ffff
    .quad 0x00cf92000000ffff
    .quad 0x00af9a000000ffff
ap_gdt_end:
    .balign 8
    .short 0
ap_gdt_pointer:
    .short ap_gdt_end - ap_gdt - 1
    .long (ap_gdt - hinoki_ap_trampoline_start + TRAMPOLINE_BASE)

    .balign 8
    .global hinoki_ap_trampoline_data
hinoki_ap_trampoline_data:
ap_data_cr3:    .quad 0
ap_data_cr4:    .quad 0
ap_data_cr0:    .quad 0
ap_data_efer:   .quad 0
ap_data_stack:  .quad 0
ap_data_entry:  .quad 0
ap_data_cpu:    .quad 0
    .global hinoki_ap_trampoline_end
hinoki_ap_trampoline_end:
"#,
    options(att_syntax)
);

#[cfg(target_os = "none")]
extern "C" {
    static hinoki_ap_trampoline_start: u8;
    static hinoki_ap_trampoline_data: u8;
    static hinoki_ap_trampoline_end: u8;
}

/// The trampoline's bytes and the offset of its data block.
#[cfg(target_os = "none")]
fn trampoline() -> (&'static [u8], usize) {
    let start = core::ptr::addr_of!(hinoki_ap_trampoline_start) as usize;
    let data = core::ptr::addr_of!(hinoki_ap_trampoline_data) as usize;
    let end = core::ptr::addr_of!(hinoki_ap_trampoline_end) as usize;
    // SAFETY: the three symbols delimit the trampoline in read-only data, emitted above.
    (unsafe { core::slice::from_raw_parts(start as *const u8, end - start) }, data - start)
}

/// The current CR0, CR3, CR4 and EFER, for the trampoline to copy.
#[cfg(target_os = "none")]
pub fn boot_cpu_state() -> (u64, u64, u64, u64) {
    let (cr0, cr3, cr4): (u64, u64, u64);
    // SAFETY: reading control registers has no side effects.
    unsafe {
        core::arch::asm!("mov {}, cr0", "mov {}, cr3", "mov {}, cr4", out(reg) cr0, out(reg) cr3, out(reg) cr4, options(nomem, nostack, preserves_flags))
    };
    // SAFETY: EFER exists on every x86_64 CPU.
    let efer = unsafe { crate::msr::read(crate::msr::EXTENDED_FEATURE_ENABLE) };
    (cr0, cr3, cr4, efer)
}

/// Copies the trampoline to [`TRAMPOLINE_ADDRESS`] with `data`.
///
/// # Safety
/// The page at [`TRAMPOLINE_ADDRESS`] must be identity-mapped RAM that nothing else uses,
/// and no processor may be running the trampoline.
#[cfg(target_os = "none")]
pub unsafe fn install_trampoline(data: &TrampolineData) {
    let (code, data_offset) = trampoline();
    assert!(code.len() <= 4096 && data_offset + core::mem::size_of::<TrampolineData>() <= code.len());
    // SAFETY: the caller hands over the page; the copy and the data write stay inside it.
    unsafe {
        core::ptr::copy_nonoverlapping(code.as_ptr(), TRAMPOLINE_ADDRESS as *mut u8, code.len());
        core::ptr::write_volatile((TRAMPOLINE_ADDRESS + data_offset) as *mut TrampolineData, *data);
    }
}

/// Incremented by every application processor once it runs Rust code on its own stack; the
/// starter waits for it before reusing the trampoline's data block.
pub static STARTED: AtomicU32 = AtomicU32::new(0);

/// Tells the starter that this CPU left the trampoline.
pub fn report_started() {
    STARTED.fetch_add(1, Ordering::AcqRel);
}
