//! x86_64 paging: the kernel's 4-level tables built from the linker layout and the board's memory regions, the switch from the boot trampoline's identity map, TLB maintenance with a shootdown hook, and the `Mmu` boards return from `Platform::mmu`.
//!
//! The boot trampoline identity-maps 64 GiB read-write-execute with 2 MiB pages. The
//! kernel's own tables keep the identity map but with W^X: text read-execute, rodata
//! read-only no-execute, data/BSS/boot stack read-write no-execute, the page under the
//! boot stack unmapped; RAM read-write no-execute (2 MiB pages where aligned: the SDM
//! allows splitting them later without break-before-make); MMIO the board reports, and
//! whatever else lies below 4 GiB (PCI holes, ACPI, the APIC/IOAPIC/HPET window), uncached
//! (PCD|PWT) and no-execute. The first MiB is RAM (read-write, no-execute): the SMP
//! trampoline page is made read-execute with `Mmu::protect` after it is written. The tables
//! come from below 4 GiB, because application processors load CR3 in 32-bit mode. CR0.WP makes the read-only pages binding
//! on the kernel too; EFER.NXE (set by the trampoline where the CPU has NX) gives NX its
//! meaning. CR4.PGE stays off (the G bits are set but inert), so a CR3 reload, which the SMP
//! code's full shootdown uses, flushes everything.
//!
//! TLB shootdown: x86 has no broadcast invalidation. [`set_tlb_shootdown`] registers the
//! function the SMP code provides (an IPI asking every other CPU to run
//! `Mmu::flush_tlb_local` on the range); until then only the calling CPU is flushed.

use core::arch::asm;
use core::ops::Range;
use core::sync::atomic::{AtomicUsize, Ordering};

use hinoki_interface::{MapError, PhysicalAddress, Platform};
use hinoki_kernel::mm::paging::kernel_map::KERNEL_DEVICE;
use hinoki_kernel::mm::paging::x86_64::FourLevel;
use hinoki_kernel::mm::paging::{
    build_kernel_map, Dma32Frames, KernelImage, KernelMapPolicy, KernelMmu, PageTable, TranslationHardware, PAGE_SIZE,
};

// The ktests read linker-script symbols that exist only in a kernel image, not in a host
// test binary.
#[cfg(target_os = "none")]
mod ktests;

/// The MMU type a PC board stores and returns from `Platform::mmu`.
pub type X86Mmu = KernelMmu<X86Paging>;

/// A function that invalidates `[virtual address, +size)` on every other CPU.
pub type TlbShootdown = fn(usize, usize);

static TLB_SHOOTDOWN: AtomicUsize = AtomicUsize::new(0);

/// Registers the TLB shootdown for other CPUs (the SMP code calls this once they run).
pub fn set_tlb_shootdown(shootdown: TlbShootdown) {
    TLB_SHOOTDOWN.store(shootdown as usize, Ordering::Release);
}

const EFER: u32 = 0xc000_0080;
const EFER_NO_EXECUTE_ENABLE: u64 = 1 << 11;
const CR0_WRITE_PROTECT: u64 = 1 << 16;
const ROOT_MASK: u64 = 0x000f_ffff_ffff_f000;
/// Above this many pages, a range flush reloads CR3 instead.
const RANGE_FLUSH_LIMIT: usize = 64;
const FOUR_GIBIBYTES: u64 = 1 << 32;

/// TLB and register operations for [`KernelMmu`].
pub struct X86Paging;

fn flush_everything_local() {
    // SAFETY: writing CR3 back with its own value keeps the address space and drops every
    // TLB entry (CR4.PGE is off, so there are no global ones).
    unsafe { asm!("mov {scratch}, cr3", "mov cr3, {scratch}", scratch = out(reg) _, options(nostack, preserves_flags)) };
}

impl TranslationHardware for X86Paging {
    type Format = FourLevel;
    /// The identity map lives below 512 GiB, in PML4 entry 0.
    const KERNEL_TOP_LEVEL: Range<usize> = 0..1;

    fn publish(&self) {
        // The page walker snoops stores; only keep the compiler from reordering them.
        core::sync::atomic::compiler_fence(Ordering::SeqCst);
    }

    fn flush_tlb_range_local(&self, virtual_address: usize, size: usize) {
        let pages = size.div_ceil(PAGE_SIZE);
        if pages > RANGE_FLUSH_LIMIT {
            flush_everything_local();
            return;
        }
        for page in 0..pages {
            // SAFETY: INVLPG only drops this CPU's cached translation of one page.
            unsafe { asm!("invlpg [{}]", in(reg) virtual_address + page * PAGE_SIZE, options(nostack, preserves_flags)) };
        }
    }

    fn flush_tlb_range_all(&self, virtual_address: usize, size: usize) {
        self.flush_tlb_range_local(virtual_address, size);
        let shootdown = TLB_SHOOTDOWN.load(Ordering::Acquire);
        if shootdown != 0 {
            // SAFETY: the only non-zero value stored is a `TlbShootdown` from `set_tlb_shootdown`.
            let shootdown: TlbShootdown = unsafe { core::mem::transmute::<usize, TlbShootdown>(shootdown) };
            shootdown(virtual_address, size);
        }
    }

    fn current_root(&self) -> PhysicalAddress {
        let value: u64;
        // SAFETY: reading CR3 has no side effects.
        unsafe { asm!("mov {}, cr3", out(reg) value, options(nomem, nostack, preserves_flags)) };
        PhysicalAddress(value & ROOT_MASK)
    }

    unsafe fn switch_root(&self, root: PhysicalAddress) {
        // SAFETY: the caller guarantees `root` maps everything this CPU runs on; the CR3
        // write drops the non-global TLB entries.
        unsafe { asm!("mov cr3, {}", in(reg) root.0, options(nostack, preserves_flags)) };
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

/// The kernel image's sections from the linker script (`linker/x86_64.ld`).
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

fn read_model_specific(register: u32) -> u64 {
    let (low, high): (u32, u32);
    // SAFETY: EFER exists on every long-mode CPU; reading it has no side effects.
    unsafe { asm!("rdmsr", in("ecx") register, out("eax") low, out("edx") high, options(nomem, nostack, preserves_flags)) };
    (high as u64) << 32 | low as u64
}

/// Whether no-execute is in force (EFER.NXE) and supervisor writes honour read-only
/// pages (CR0.WP).
pub fn protection_enabled() -> (bool, bool) {
    let cr0: u64;
    // SAFETY: reading CR0 has no side effects.
    unsafe { asm!("mov {}, cr0", out(reg) cr0, options(nomem, nostack, preserves_flags)) };
    (read_model_specific(EFER) & EFER_NO_EXECUTE_ENABLE != 0, cr0 & CR0_WRITE_PROTECT != 0)
}

/// Builds the kernel's tables, switches CR3 to them, turns on CR0.WP, and
/// returns the MMU for the board to keep. Call once, on the boot CPU, after the page
/// allocator is up (from `Platform::paging_init`).
///
/// # Errors
///
/// [`MapError::InvalidFlags`] if the CPU has no NX (the boot tables stay, without W^X),
/// [`MapError::OutOfMemory`] if the tables do not fit.
pub fn paging_init(platform: &dyn Platform) -> Result<X86Mmu, MapError> {
    if !protection_enabled().0 {
        return Err(MapError::InvalidFlags);
    }
    let image = kernel_image();
    // Whatever lies below 4 GiB and is neither RAM nor reported MMIO (PCI windows, ACPI,
    // the chipset's APIC/HPET window): uncached, so firmware tables and device BARs stay
    // reachable.
    let firmware_and_devices = [(0..FOUR_GIBIBYTES, KERNEL_DEVICE)];
    let table: PageTable<FourLevel> = build_kernel_map(
        &image,
        &mut |visit| platform.memory_regions(visit),
        &firmware_and_devices,
        KernelMapPolicy { ram_blocks: true },
        &mut Dma32Frames,
    )?;
    let mut tables = 0;
    table.for_each_table(&mut |_| tables += 1);
    // SAFETY: the tree identity-maps the image (text executable, data and stacks
    // writable), all RAM and the devices below 4 GiB, so execution continues unchanged.
    unsafe { X86Paging.switch_root(table.root()) };
    let cr0: u64;
    // SAFETY: reading CR0 has no side effects.
    unsafe { asm!("mov {}, cr0", out(reg) cr0, options(nomem, nostack, preserves_flags)) };
    // SAFETY: CR0.WP makes supervisor writes honour read-only pages, which the tables
    // only set where nothing writes.
    unsafe { asm!("mov cr0, {}", in(reg) cr0 | CR0_WRITE_PROTECT, options(nostack, preserves_flags)) };
    log::info!(
        "paging: kernel tables live, {} table pages; text {:#x}-{:#x} r-x, rodata -{:#x} r--, data -{:#x} rw-, boot stack guard at {:#x}",
        tables,
        image.text.start,
        image.text.end,
        image.read_only.end,
        image.writable.end,
        image.boot_stack_guard.start
    );
    // SAFETY: the tree came from the kernel's page allocator (`Dma32Frames`, identity-mapped,
    // freed like `KernelFrames`) and is edited only through the returned MMU.
    Ok(unsafe { KernelMmu::new(X86Paging, table.root()) })
}
