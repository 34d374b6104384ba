//! Boot entry: the PVH ELF note and multiboot2 header, the 32-bit to long-mode trampoline, then stack, BSS, SSE and the board's Rust entry.

#[cfg(target_os = "none")]
use core::arch::global_asm;

/// `hvm_start_info.magic`, passed as the boot magic when the PVH entry ran.
pub const PVH_MAGIC: u32 = 0x336e_c578;
/// The value a multiboot2 loader leaves in `eax`.
pub const MULTIBOOT2_BOOTLOADER_MAGIC: u32 = 0x36d7_6289;
/// Physical memory below this is identity-mapped by the boot page tables (64 GiB, the
/// `IDENTITY_MAP_GIBIBYTES` of the entry code); RAM above it is not reachable yet.
pub const IDENTITY_MAPPED_BYTES: u64 = 64 << 30;

/// How the kernel was started, with the physical address of the loader's information.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootProtocol {
    /// Xen PVH direct boot (QEMU `-kernel` with an ELF): `hvm_start_info` address.
    Pvh(usize),
    /// Multiboot2 (GRUB): boot information structure address.
    Multiboot2(usize),
    /// Entered through the multiboot2 entry with an unexpected `eax`.
    Unknown {
        /// The value found in `eax`.
        magic: u32,
        /// The value found in `ebx`.
        information: usize,
    },
}

impl BootProtocol {
    /// Decodes the registers the trampoline hands to `hinoki_board_entry`.
    pub fn from_registers(magic: u32, information: usize) -> BootProtocol {
        match magic {
            PVH_MAGIC => BootProtocol::Pvh(information),
            MULTIBOOT2_BOOTLOADER_MAGIC => BootProtocol::Multiboot2(information),
            magic => BootProtocol::Unknown { magic, information },
        }
    }
}

// Both loaders enter in 32-bit protected mode with paging off and the image at its link
// address (1 MiB). The PVH entry passes the PVH magic itself (PVH leaves eax undefined);
// the multiboot2 entry forwards the loader's eax. ebp carries the magic and esi the
// information pointer to the 64-bit code.
//
// The page tables identity-map the low IDENTITY_MAPPED_BYTES (64 GiB) with 2 MiB pages:
// PML4[0] -> PDPT, PDPT[0..64] -> 64 page directories of 512 entries each. They live in
// their own NOBITS section (not BSS, which the 64-bit code clears while they are in use).
// Assembled only for the bare-metal target, so the host unit tests link without it.
#[cfg(target_os = "none")]
global_asm!(
    r#"
    .set MULTIBOOT2_MAGIC, 0xe85250d6
    .set MULTIBOOT2_ARCHITECTURE_I386, 0
    .set MULTIBOOT2_HEADER_LENGTH, multiboot2_header_end - multiboot2_header
    .set IDENTITY_MAP_GIBIBYTES, 64
    .set PAGE_TABLE_PAGES, 2 + IDENTITY_MAP_GIBIBYTES

    .section .boot_page_tables, "aw", @nobits
    .balign 4096
boot_page_tables:
    .skip PAGE_TABLE_PAGES * 4096

    .section .note.hinoki.pvh, "a", @note
    .balign 4
    .long 4
    .long 8
    .long 18
    .asciz "Xen"
    .balign 4
    .quad hinoki_pvh_entry

    .section .text.head, "ax"
    .balign 8
multiboot2_header:
    .long MULTIBOOT2_MAGIC
    .long MULTIBOOT2_ARCHITECTURE_I386
    .long MULTIBOOT2_HEADER_LENGTH
    .long -(MULTIBOOT2_MAGIC + MULTIBOOT2_ARCHITECTURE_I386 + MULTIBOOT2_HEADER_LENGTH)
    .balign 8
    .short 3
    .short 0
    .long 12
    .long hinoki_multiboot2_entry
    .balign 8
    .short 0
    .short 0
    .long 8
multiboot2_header_end:

    .code32
    .global hinoki_pvh_entry
hinoki_pvh_entry:
    cli
    cld
    movl    $0x336ec578, %ebp
    movl    %ebx, %esi
    jmp     protected_mode_common

    .global hinoki_multiboot2_entry
hinoki_multiboot2_entry:
    cli
    cld
    movl    %eax, %ebp
    movl    %ebx, %esi

protected_mode_common:
    movl    $__boot_stack_top, %esp

    // Long mode is required (CPUID 0x80000001 EDX bit 29); stop here without it.
    movl    $0x80000000, %eax
    cpuid
    cmpl    $0x80000001, %eax
    jb      no_long_mode
    movl    $0x80000001, %eax
    cpuid
    btl     $29, %edx
    jnc     no_long_mode
    // Remember whether NX exists (EDX bit 20) in edx bit 20 for the EFER write below.
    pushl   %edx

    // Clear the table pages, then fill them.
    movl    $boot_page_tables, %edi
    movl    $(PAGE_TABLE_PAGES * 4096 / 4), %ecx
    xorl    %eax, %eax
    rep stosl

    movl    $boot_page_tables, %edi
    leal    0x1003(%edi), %eax
    movl    %eax, (%edi)

    // PDPT[i] -> page directory i (present, writable).
    leal    0x1000(%edi), %ebx
    leal    0x2003(%edi), %eax
    movl    $IDENTITY_MAP_GIBIBYTES, %ecx
1:  movl    %eax, (%ebx)
    addl    $0x1000, %eax
    addl    $8, %ebx
    loop    1b

    // Page directory entries: 2 MiB pages (present, writable, large); edx holds the
    // physical address bits above 4 GiB.
    leal    0x2000(%edi), %ebx
    movl    $0x83, %eax
    xorl    %edx, %edx
    movl    $(IDENTITY_MAP_GIBIBYTES * 512), %ecx
2:  movl    %eax, (%ebx)
    movl    %edx, 4(%ebx)
    addl    $0x200000, %eax
    adcl    $0, %edx
    addl    $8, %ebx
    loop    2b

    movl    %edi, %cr3

    // CR4.PAE.
    movl    %cr4, %eax
    orl     $(1 << 5), %eax
    movl    %eax, %cr4

    // EFER.LME, plus EFER.NXE where the CPU has NX.
    popl    %ebx
    movl    $0xc0000080, %ecx
    rdmsr
    orl     $(1 << 8), %eax
    btl     $20, %ebx
    jnc     3f
    orl     $(1 << 11), %eax
3:  wrmsr

    // CR0.PG | CR0.WP | CR0.PE: paging on, which activates long mode (compatibility).
    movl    %cr0, %eax
    orl     $0x80010001, %eax
    movl    %eax, %cr0

    lgdt    boot_gdt_pointer
    ljmp    $0x08, $long_mode_entry

no_long_mode:
    hlt
    jmp     no_long_mode

    .code64
long_mode_entry:
    movw    $0x10, %ax
    movw    %ax, %ds
    movw    %ax, %es
    movw    %ax, %ss
    xorw    %ax, %ax
    movw    %ax, %fs
    movw    %ax, %gs

    movq    $__boot_stack_top, %rsp
    movl    %ebp, %r12d
    movl    %esi, %r13d

    movq    $__bss_start, %rdi
    movq    $__bss_end, %rcx
    subq    %rdi, %rcx
    xorl    %eax, %eax
    rep stosb

    // SSE: CR0.EM clear, CR0.MP set; CR4.OSFXSR | CR4.OSXMMEXCPT.
    movq    %cr0, %rax
    andq    $~(1 << 2), %rax
    orq     $(1 << 1), %rax
    movq    %rax, %cr0
    movq    %cr4, %rax
    orq     $((1 << 9) | (1 << 10)), %rax
    movq    %rax, %cr4

    movl    %r12d, %edi
    movl    %r13d, %esi
    xorl    %ebp, %ebp
    call    hinoki_board_entry
4:  cli
    hlt
    jmp     4b

    .section .rodata.boot_gdt, "a"
    .balign 16
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff
    .quad 0x00cf92000000ffff
boot_gdt_end:
    .balign 8
    .short 0
boot_gdt_pointer:
    .short boot_gdt_end - boot_gdt - 1
    .long boot_gdt
    .long 0
"#,
    options(att_syntax)
);
