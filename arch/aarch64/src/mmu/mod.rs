//! The aarch64 MMU: the kernel's stage-1 tables built from the linker layout and the board's memory regions, MAIR/TCR/TTBR0/SCTLR programming, TLB maintenance, and the `Mmu` boards return from `Platform::mmu`.
//!
//! The kernel runs identity-mapped through TTBR0_EL1 (48-bit VA, 4 KiB granule); TTBR1
//! walks are disabled. Text is read-execute, rodata read-only, data/BSS/boot stack and
//! RAM read-write never-execute, MMIO Device-nGnRE; SCTLR_EL1.WXN makes the hardware
//! refuse to execute any writable page as well. RAM is mapped with 4 KiB pages so a
//! kernel-stack guard page can be cut out without splitting a live block. Alignment
//! checking (SCTLR_EL1.A) stays off: the compiler may emit unaligned accesses to normal
//! memory, which the architecture allows.
//!
//! TLB shootdown needs no IPI here: the `tlbi ...is` forms broadcast to every CPU in the
//! inner-shareable domain. Secondary CPUs call [`enable_secondary`] (from the SMP entry)
//! before they touch anything but their own boot path.

use core::arch::asm;
use core::ops::Range;
use core::sync::atomic::{AtomicU64, Ordering};

use hinoki_interface::{MapError, PhysicalAddress, Platform};
use hinoki_kernel::mm::paging::aarch64::{translation_control, Stage1, MAIR_VALUE};
use hinoki_kernel::mm::paging::{
    build_kernel_map, KernelFrames, KernelImage, KernelMapPolicy, KernelMmu, PageTable, TranslationHardware, PAGE_SIZE,
};

/// The MMU type an aarch64 board stores and returns from `Platform::mmu`.
pub type Aarch64Mmu = KernelMmu<Stage1Hardware>;

mod ktests;

/// The kernel's top-level table once [`paging_init`] made it live (0 before), for
/// [`enable_secondary`].
static KERNEL_ROOT: AtomicU64 = AtomicU64::new(0);

/// SCTLR_EL1 bits this module sets: M (MMU), C (data cache), I (instruction cache), WXN.
const SCTLR_MMU: u64 = 1 << 0;
const SCTLR_ALIGNMENT_CHECK: u64 = 1 << 1;
const SCTLR_DATA_CACHE: u64 = 1 << 2;
const SCTLR_INSTRUCTION_CACHE: u64 = 1 << 12;
const SCTLR_WRITE_EXECUTE_NEVER: u64 = 1 << 19;
/// Above this many pages, a range flush invalidates the whole TLB instead.
const RANGE_FLUSH_LIMIT: usize = 64;
const ROOT_MASK: u64 = 0x0000_ffff_ffff_f000;

/// TLB and register operations for [`KernelMmu`].
pub struct Stage1Hardware;

impl TranslationHardware for Stage1Hardware {
    type Format = Stage1;
    /// The identity map lives below 512 GiB, in top-level entry 0.
    const KERNEL_TOP_LEVEL: Range<usize> = 0..1;

    fn publish(&self) {
        // SAFETY: barriers only order this CPU's memory accesses.
        unsafe { asm!("dsb ishst", "isb", options(nostack, preserves_flags)) };
    }

    fn flush_tlb_range_local(&self, virtual_address: usize, size: usize) {
        let pages = size.div_ceil(PAGE_SIZE);
        // SAFETY: TLB invalidation only drops cached translations of this CPU; the
        // barriers complete it before the next access.
        unsafe {
            asm!("dsb nshst", options(nostack, preserves_flags));
            if pages > RANGE_FLUSH_LIMIT {
                asm!("tlbi vmalle1", options(nostack, preserves_flags));
            } else {
                for page in 0..pages {
                    let operand = ((virtual_address + page * PAGE_SIZE) >> 12) as u64;
                    asm!("tlbi vaae1, {}", in(reg) operand, options(nostack, preserves_flags));
                }
            }
            asm!("dsb nsh", "isb", options(nostack, preserves_flags));
        }
    }

    fn flush_tlb_range_all(&self, virtual_address: usize, size: usize) {
        let pages = size.div_ceil(PAGE_SIZE);
        // SAFETY: as above, broadcast to the inner-shareable domain (every CPU).
        unsafe {
            asm!("dsb ishst", options(nostack, preserves_flags));
            if pages > RANGE_FLUSH_LIMIT {
                asm!("tlbi vmalle1is", options(nostack, preserves_flags));
            } else {
                for page in 0..pages {
                    let operand = ((virtual_address + page * PAGE_SIZE) >> 12) as u64;
                    asm!("tlbi vaae1is, {}", in(reg) operand, options(nostack, preserves_flags));
                }
            }
            asm!("dsb ish", "isb", options(nostack, preserves_flags));
        }
    }

    fn current_root(&self) -> PhysicalAddress {
        let value: u64;
        // SAFETY: reading TTBR0_EL1 has no side effects.
        unsafe { asm!("mrs {}, ttbr0_el1", out(reg) value, options(nomem, nostack, preserves_flags)) };
        PhysicalAddress(value & ROOT_MASK)
    }

    unsafe fn switch_root(&self, root: PhysicalAddress) {
        // SAFETY: the caller guarantees `root` maps everything this CPU runs on; no ASIDs
        // are in use, so the whole non-global TLB content is dropped.
        unsafe {
            asm!(
                "dsb ishst",
                "msr ttbr0_el1, {}",
                "isb",
                "tlbi vmalle1",
                "dsb nsh",
                "isb",
                in(reg) root.0,
                options(nostack, preserves_flags)
            )
        };
    }
}

extern "C" {
    static __text_start: u8;
    static __text_end: u8;
    static __rodata_end: u8;
    static __boot_stack_guard: u8;
    static __boot_stack_bottom: u8;
    static __boot_stack_top: u8;
}

/// The kernel image's sections from the linker script (`linker/aarch64.ld`).
pub fn kernel_image() -> KernelImage {
    let address = |symbol: *const u8| symbol as usize;
    let guard = address(core::ptr::addr_of!(__boot_stack_guard));
    KernelImage {
        text: address(core::ptr::addr_of!(__text_start))..address(core::ptr::addr_of!(__text_end)),
        read_only: address(core::ptr::addr_of!(__text_end))..address(core::ptr::addr_of!(__rodata_end)),
        writable: address(core::ptr::addr_of!(__rodata_end))..guard,
        boot_stack_guard: guard..guard + PAGE_SIZE,
        boot_stack: address(core::ptr::addr_of!(__boot_stack_bottom))..address(core::ptr::addr_of!(__boot_stack_top)),
    }
}

fn physical_address_range() -> u64 {
    let value: u64;
    // SAFETY: reading ID_AA64MMFR0_EL1 has no side effects.
    unsafe { asm!("mrs {}, id_aa64mmfr0_el1", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value & 0xf
}

fn data_cache_line_size() -> usize {
    let value: u64;
    // SAFETY: reading CTR_EL0 has no side effects.
    unsafe { asm!("mrs {}, ctr_el0", out(reg) value, options(nomem, nostack, preserves_flags)) };
    4 << ((value >> 16) & 0xf)
}

/// Discards cached copies of `[start, +size)` so a non-cacheable writer's data (the tables,
/// written with the MMU off) is what the cached walker and the kernel read afterwards.
fn invalidate_data_cache(start: usize, size: usize) {
    let line = data_cache_line_size();
    let mut address = start & !(line - 1);
    while address < start + size {
        // SAFETY: the range holds table pages written with caches off; invalidating their
        // lines only drops stale copies (there are no newer cached writes to lose).
        unsafe { asm!("dc ivac, {}", in(reg) address, options(nostack, preserves_flags)) };
        address += line;
    }
    // SAFETY: a barrier only.
    unsafe { asm!("dsb sy", options(nostack, preserves_flags)) };
}

/// Builds the kernel's tables, turns the MMU and caches on with them, and returns the
/// MMU for the board to keep. Call once, on the boot CPU, after the page allocator is up
/// (from `Platform::paging_init`).
///
/// # Errors
///
/// [`MapError::OutOfMemory`] if the page allocator cannot hold the tables (the MMU stays
/// off), or another [`MapError`] from an unusable memory region.
pub fn paging_init(platform: &dyn Platform) -> Result<Aarch64Mmu, MapError> {
    let image = kernel_image();
    let table: PageTable<Stage1> = build_kernel_map(
        &image,
        &mut |visit| platform.memory_regions(visit),
        &[],
        KernelMapPolicy { ram_blocks: false },
        &mut KernelFrames,
    )?;
    let mut tables = 0;
    table.for_each_table(&mut |frame| {
        invalidate_data_cache(frame.0 as usize, PAGE_SIZE);
        tables += 1;
    });
    // SAFETY: the tree maps the image (text executable, data and stack writable), all RAM
    // the kernel uses and the board's MMIO, identity, so execution continues unchanged.
    unsafe { enable(table.root()) };
    KERNEL_ROOT.store(table.root().0, Ordering::Release);
    // Secondary CPUs read the root with their caches off: push it out to memory.
    // SAFETY: cleaning a data-cache line only writes its contents back.
    unsafe { asm!("dc cvac, {}", "dsb sy", in(reg) &KERNEL_ROOT as *const AtomicU64 as usize, options(nostack, preserves_flags)) };
    log::info!(
        "mmu: stage 1 on, {} table pages; text {:#x}-{:#x} r-x, rodata -{:#x} r--, data -{:#x} rw-, boot stack guard at {:#x}",
        tables,
        image.text.start,
        image.text.end,
        image.read_only.end,
        image.writable.end,
        image.boot_stack_guard.start
    );
    // SAFETY: the tree came from `KernelFrames` and is edited only through the returned MMU.
    Ok(unsafe { KernelMmu::new(Stage1Hardware, table.root()) })
}

/// Turns the MMU on for the calling CPU with the tables at `root`.
///
/// # Safety
///
/// `root` must be a stage-1 tree that identity-maps everything the CPU executes and
/// touches from here on (code, stack, data, devices), as [`paging_init`] builds it.
pub unsafe fn enable(root: PhysicalAddress) {
    let control = translation_control(physical_address_range());
    let mut system_control: u64;
    // SAFETY: reading SCTLR_EL1 has no side effects.
    unsafe { asm!("mrs {}, sctlr_el1", out(reg) system_control, options(nomem, nostack, preserves_flags)) };
    system_control |= SCTLR_MMU | SCTLR_DATA_CACHE | SCTLR_INSTRUCTION_CACHE | SCTLR_WRITE_EXECUTE_NEVER;
    system_control &= !SCTLR_ALIGNMENT_CHECK;
    // SAFETY: the caller guarantees the identity map covers everything in use, so the
    // instruction after the SCTLR write fetches from the same address through the new
    // translation. TLBs and the instruction cache are invalidated before and after.
    unsafe {
        asm!(
            "msr mair_el1, {mair}",
            "msr tcr_el1, {tcr}",
            "msr ttbr0_el1, {root}",
            "isb",
            "tlbi vmalle1",
            "dsb nsh",
            "ic iallu",
            "dsb nsh",
            "isb",
            "msr sctlr_el1, {sctlr}",
            "isb",
            "ic iallu",
            "dsb nsh",
            "isb",
            mair = in(reg) MAIR_VALUE,
            tcr = in(reg) control,
            root = in(reg) root.0,
            sctlr = in(reg) system_control,
            options(nostack, preserves_flags)
        )
    };
}

/// Turns the MMU and caches on for a secondary CPU with the kernel's tables, once
/// [`paging_init`] has built them on the boot CPU (before that, nothing happens). The SMP
/// entry calls it first thing, before the CPU touches shared data.
pub fn enable_secondary() {
    let root = KERNEL_ROOT.load(Ordering::Acquire);
    if root != 0 && !is_enabled() {
        // SAFETY: the kernel's tree identity-maps the image, all RAM (this CPU's stack
        // included) and the MMIO, so execution continues unchanged.
        unsafe { enable(PhysicalAddress(root)) };
    }
}

/// Whether the calling CPU runs with the stage-1 MMU on.
pub fn is_enabled() -> bool {
    let value: u64;
    // SAFETY: reading SCTLR_EL1 has no side effects.
    unsafe { asm!("mrs {}, sctlr_el1", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value & SCTLR_MMU != 0
}
