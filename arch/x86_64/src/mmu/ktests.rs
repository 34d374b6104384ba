//! In-kernel tests of the x86_64 paging state: NX and CR0.WP on, the kernel's tables in CR3 below 4 GiB, the boot-stack guard page unmapped.

use hinoki_interface::{Mmu, PageFlags, VirtualAddress};
use hinoki_kernel::ktest::TestFailure;
use hinoki_kernel::{kassert, kassert_eq, ktest};

use super::{kernel_image, protection_enabled, X86Paging};
use hinoki_kernel::mm::paging::TranslationHardware;

#[allow(clippy::result_large_err)]
fn mmu() -> Result<&'static dyn Mmu, TestFailure> {
    hinoki_kernel::platform().mmu().ok_or_else(|| TestFailure::new(file!(), line!(), format_args!("the board has no MMU")))
}

ktest!(
    fn no_execute_and_write_protect_are_on() {
        let mmu = mmu()?;
        kassert!(protection_enabled() == (true, true), "(EFER.NXE, CR0.WP) = {:?}", protection_enabled());
        kassert_eq!(X86Paging.current_root(), mmu.kernel_space().root);
        kassert!(mmu.kernel_space().root.0 < 1 << 32, "application processors cannot load CR3 {:#x}", mmu.kernel_space().root.0);
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
        let (_, stack) = mmu
            .translate(space, VirtualAddress(image.boot_stack.start))
            .ok_or_else(|| TestFailure::new(file!(), line!(), format_args!("boot stack not mapped")))?;
        kassert!(stack.contains(PageFlags::WRITE) && !stack.contains(PageFlags::EXECUTE), "boot stack flags {:?}", stack);
        // The chipset window (local APIC) is uncached device memory.
        let (_, apic) = mmu
            .translate(space, VirtualAddress(0xfee0_0000))
            .ok_or_else(|| TestFailure::new(file!(), line!(), format_args!("local APIC not mapped")))?;
        kassert!(apic.contains(PageFlags::DEVICE) && !apic.contains(PageFlags::EXECUTE), "local APIC flags {:?}", apic);
        Ok(())
    }
);
