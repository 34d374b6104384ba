//! In-kernel tests of the aarch64 MMU state: every online CPU translates through the kernel's tables with the MMU, caches and WXN on; the boot-stack guard page is unmapped.

use core::arch::asm;

use hinoki_interface::{Mmu, PageFlags, VirtualAddress};
use hinoki_kernel::ktest::TestFailure;
use hinoki_kernel::{kassert, ktest};

use super::{kernel_image, SCTLR_DATA_CACHE, SCTLR_INSTRUCTION_CACHE, SCTLR_MMU, SCTLR_WRITE_EXECUTE_NEVER};

const REQUIRED: u64 = SCTLR_MMU | SCTLR_DATA_CACHE | SCTLR_INSTRUCTION_CACHE | SCTLR_WRITE_EXECUTE_NEVER;

#[allow(clippy::result_large_err)]
fn mmu() -> Result<&'static dyn Mmu, TestFailure> {
    hinoki_kernel::platform().mmu().ok_or_else(|| TestFailure::new(file!(), line!(), format_args!("the board has no MMU")))
}

/// The calling CPU's SCTLR_EL1 bits of interest, and (above bit 32) whether TTBR0_EL1
/// holds `root`.
fn translation_state(root: usize) -> usize {
    let (control, table): (u64, u64);
    // SAFETY: reading SCTLR_EL1 and TTBR0_EL1 has no side effects.
    unsafe {
        asm!("mrs {}, sctlr_el1", out(reg) control, options(nomem, nostack, preserves_flags));
        asm!("mrs {}, ttbr0_el1", out(reg) table, options(nomem, nostack, preserves_flags));
    }
    let same_root = (table & super::ROOT_MASK) == root as u64;
    (control & REQUIRED) as usize | usize::from(same_root) << 32
}

ktest!(
    fn every_cpu_runs_with_the_kernel_tables_caches_and_wxn() {
        let root = mmu()?.kernel_space().root.0 as usize;
        let current = hinoki_kernel::platform().cpu().current_id().0;
        let ready = hinoki_kernel::smp::ready_mask();
        let mut checked = 0;
        for cpu in (0..32).filter(|cpu| ready & (1 << cpu) != 0) {
            let state = if cpu == current {
                translation_state(root)
            } else {
                hinoki_kernel::irq::call_function_single(cpu, translation_state, root)
                    .map_err(|error| TestFailure::new(file!(), line!(), format_args!("CPU{} did not answer: {:?}", cpu, error)))?
            };
            kassert!(state as u64 & REQUIRED == REQUIRED, "CPU{}: SCTLR_EL1 lacks M/C/I/WXN", cpu);
            kassert!(state >> 32 == 1, "CPU{} translates through another table than the kernel's", cpu);
            checked += 1;
        }
        kassert!(checked >= 1);
        Ok(())
    }
);

ktest!(
    fn boot_stack_guard_is_unmapped() {
        let mmu = mmu()?;
        let image = kernel_image();
        let space = mmu.kernel_space();
        kassert!(
            mmu.translate(space, VirtualAddress(image.boot_stack_guard.start)).is_none(),
            "the boot-stack guard at {:#x} is mapped",
            image.boot_stack_guard.start
        );
        let (_, below) = mmu
            .translate(space, VirtualAddress(image.boot_stack_guard.start - 8))
            .ok_or_else(|| TestFailure::new(file!(), line!(), format_args!("BSS end not mapped")))?;
        let (_, stack) = mmu
            .translate(space, VirtualAddress(image.boot_stack.start))
            .ok_or_else(|| TestFailure::new(file!(), line!(), format_args!("boot stack not mapped")))?;
        for flags in [below, stack] {
            kassert!(flags.contains(PageFlags::WRITE) && !flags.contains(PageFlags::EXECUTE), "flags {:?}", flags);
        }
        Ok(())
    }
);
