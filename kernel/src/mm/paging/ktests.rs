//! In-kernel tests of the live page tables on every board: W^X over the whole kernel map, translation of known addresses, map/unmap/protect with real accesses, address spaces, guard pages; and the deliberate faults (manual, one boot each).

use core::sync::atomic::{AtomicU64, Ordering};

use hinoki_interface::{MapError, Mmu, PageFlags, PhysicalAddress, VirtualAddress};

use crate::ktest::TestFailure;
use crate::mm::{AllocFlags, MEMORY};
use crate::{kassert, kassert_eq, ktest};

use super::kernel_map::{KERNEL_DATA, KERNEL_TEXT};
use super::{unmap_guard_page, PAGE_SIZE};

/// A virtual range no board uses (just below 512 GiB, in the kernel's top-level slot).
const SCRATCH: usize = 0x7f_0000_0000;

static DATA_WORD: AtomicU64 = AtomicU64::new(0x1234_5678);

#[allow(clippy::result_large_err)]
fn mmu() -> Result<&'static dyn Mmu, TestFailure> {
    crate::platform()
        .mmu()
        .ok_or_else(|| TestFailure::new(file!(), line!(), format_args!("the board has no MMU (paging_init did not run or failed)")))
}

fn failure(error: MapError, what: &str) -> TestFailure {
    TestFailure::new(file!(), line!(), format_args!("{} failed: {:?}", what, error))
}

ktest!(
    fn no_kernel_page_is_writable_and_executable() {
        let mmu = mmu()?;
        let text = crate::platform().kernel_text();
        // Code outside the text (an SMP trampoline in firmware-reserved low memory) is allowed
        // read-execute, but never in the kernel image's data or in RAM the allocator hands out.
        let mut data_ranges = [(0u64, 0u64); 64];
        let mut data_count = 0;
        crate::platform().memory_regions(&mut |region| {
            let data = matches!(region.kind, hinoki_interface::MemoryKind::Usable | hinoki_interface::MemoryKind::KernelImage);
            if data && data_count < data_ranges.len() {
                data_ranges[data_count] = (region.start.0, region.end());
                data_count += 1;
            }
        });
        let mut mappings = 0usize;
        let mut writable_executable = None;
        let mut executable_outside_text = None;
        mmu.for_each_mapping(mmu.kernel_space(), &mut |virtual_address, _, size, flags| {
            mappings += 1;
            if flags.contains(PageFlags::WRITE) && flags.contains(PageFlags::EXECUTE) {
                writable_executable.get_or_insert(virtual_address.0);
            }
            let inside_text = virtual_address.0 >= text.start && virtual_address.0 + size <= text.end.next_multiple_of(PAGE_SIZE);
            let (start, end) = (virtual_address.0 as u64, (virtual_address.0 + size) as u64);
            let in_data = data_ranges[..data_count].iter().any(|&(data_start, data_end)| start < data_end && data_start < end);
            if flags.contains(PageFlags::EXECUTE) && !inside_text && in_data {
                executable_outside_text.get_or_insert(virtual_address.0);
            }
        })
        .map_err(|error| failure(error, "walking the kernel's tables"))?;
        kassert!(mappings > 16, "only {} mappings in the kernel's tables", mappings);
        kassert!(writable_executable.is_none(), "page {:#x} is writable and executable", writable_executable.unwrap_or(0));
        kassert!(executable_outside_text.is_none(), "page {:#x} (kernel data or RAM) is executable", executable_outside_text.unwrap_or(0));
        Ok(())
    }
);

ktest!(
    fn known_addresses_translate_with_their_section_flags() {
        let mmu = mmu()?;
        let space = mmu.kernel_space();
        let code = no_kernel_page_is_writable_and_executable as *const () as usize;
        let Some((physical, flags)) = mmu.translate(space, VirtualAddress(code)) else {
            return Err(TestFailure::new(file!(), line!(), format_args!("text at {:#x} is not mapped", code)));
        };
        kassert_eq!(physical.0, code as u64);
        kassert_eq!(flags, KERNEL_TEXT);
        let data = &DATA_WORD as *const AtomicU64 as usize;
        let (physical, flags) =
            mmu.translate(space, VirtualAddress(data)).ok_or_else(|| failure(MapError::NotMapped, "translating data"))?;
        kassert_eq!(physical.0, data as u64);
        kassert_eq!(flags, KERNEL_DATA);
        let local = 0u64;
        let stack = core::hint::black_box(&local) as *const u64 as usize;
        let (_, flags) =
            mmu.translate(space, VirtualAddress(stack)).ok_or_else(|| failure(MapError::NotMapped, "translating the stack"))?;
        kassert!(flags.contains(PageFlags::WRITE) && !flags.contains(PageFlags::EXECUTE), "stack flags {:?}", flags);
        let mut device = None;
        crate::platform().memory_regions(&mut |region| {
            if region.kind == hinoki_interface::MemoryKind::Mmio && device.is_none() {
                device = Some(region.start.0 as usize);
            }
        });
        let device = device.ok_or_else(|| TestFailure::new(file!(), line!(), format_args!("the board reports no MMIO region")))?;
        let (_, flags) = mmu.translate(space, VirtualAddress(device)).ok_or_else(|| failure(MapError::NotMapped, "translating MMIO"))?;
        kassert!(flags.contains(PageFlags::DEVICE) && !flags.contains(PageFlags::EXECUTE), "MMIO at {:#x} has flags {:?}", device, flags);
        kassert!(mmu.translate(space, VirtualAddress(SCRATCH)).is_none(), "the scratch range is mapped");
        Ok(())
    }
);

ktest!(
    fn map_unmap_and_protect_a_scratch_page() {
        let mmu = mmu()?;
        let space = mmu.kernel_space();
        let frame = MEMORY
            .alloc_pages(0, AllocFlags::ZERO)
            .map_err(|error| TestFailure::new(file!(), line!(), format_args!("no page: {:?}", error)))?;
        let scratch = VirtualAddress(SCRATCH);
        let result = (|| {
            kassert_eq!(mmu.map(space, scratch, frame, PAGE_SIZE, KERNEL_DATA | PageFlags::EXECUTE), Err(MapError::InvalidFlags));
            mmu.map(space, scratch, frame, PAGE_SIZE, KERNEL_DATA).map_err(|error| failure(error, "map"))?;
            kassert_eq!(mmu.map(space, scratch, frame, PAGE_SIZE, KERNEL_DATA), Err(MapError::AlreadyMapped));
            kassert_eq!(mmu.translate(space, scratch), Some((frame, KERNEL_DATA)));
            // A write through the new mapping lands in the frame (read back identity-mapped).
            // SAFETY: SCRATCH now maps `frame`, a page this test owns.
            unsafe { core::ptr::write_volatile((SCRATCH + 8) as *mut u64, 0x5ca1_ab1e) };
            // SAFETY: the frame is identity-mapped RAM owned by this test.
            let seen = unsafe { core::ptr::read_volatile((frame.0 as usize + 8) as *const u64) };
            kassert_eq!(seen, 0x5ca1_ab1e);
            let read_only = PageFlags::READ | PageFlags::GLOBAL;
            mmu.protect(space, scratch, PAGE_SIZE, read_only).map_err(|error| failure(error, "protect"))?;
            kassert_eq!(mmu.translate(space, scratch), Some((frame, read_only)));
            // SAFETY: reading the read-only mapping of the test's own frame.
            let again = unsafe { core::ptr::read_volatile((SCRATCH + 8) as *const u64) };
            kassert_eq!(again, 0x5ca1_ab1e);
            mmu.unmap(space, scratch, PAGE_SIZE).map_err(|error| failure(error, "unmap"))?;
            kassert!(mmu.translate(space, scratch).is_none());
            kassert_eq!(mmu.unmap(space, scratch, PAGE_SIZE), Err(MapError::NotMapped));
            kassert_eq!(mmu.map(space, VirtualAddress(SCRATCH + 1), frame, PAGE_SIZE, KERNEL_DATA), Err(MapError::Misaligned));
            Ok(())
        })();
        let _ = mmu.unmap(space, scratch, PAGE_SIZE);
        let _ = MEMORY.free_pages(frame, 0);
        result
    }
);

ktest!(
    fn address_spaces_share_the_kernel_and_switch() {
        let mmu = mmu()?;
        let kernel = mmu.kernel_space();
        kassert_eq!(mmu.current_address_space(), kernel);
        let space = mmu.create_address_space().map_err(|error| failure(error, "create"))?;
        let code = address_spaces_share_the_kernel_and_switch as *const () as usize;
        kassert_eq!(mmu.translate(space, VirtualAddress(code)), mmu.translate(kernel, VirtualAddress(code)));
        let frame = MEMORY
            .alloc_pages(0, AllocFlags::ZERO)
            .map_err(|error| TestFailure::new(file!(), line!(), format_args!("no page: {:?}", error)))?;
        // A mapping in the new space's own part (above the kernel's top-level slot).
        let private = VirtualAddress(1 << 40);
        let result = (|| {
            mmu.map(space, private, frame, PAGE_SIZE, KERNEL_DATA).map_err(|error| failure(error, "map in the new space"))?;
            kassert!(mmu.translate(kernel, private).is_none(), "a private mapping leaked into the kernel's space");
            mmu.switch_address_space(space).map_err(|error| failure(error, "switch"))?;
            kassert_eq!(mmu.current_address_space(), space);
            // SAFETY: `private` maps `frame` in the space now current; the frame is the test's.
            unsafe { core::ptr::write_volatile(private.0 as *mut u64, 77) };
            let data = DATA_WORD.load(Ordering::Relaxed);
            mmu.switch_address_space(kernel).map_err(|error| failure(error, "switch back"))?;
            kassert_eq!(data, 0x1234_5678);
            // SAFETY: identity-mapped RAM owned by this test.
            kassert_eq!(unsafe { core::ptr::read_volatile(frame.0 as *const u64) }, 77);
            Ok(())
        })();
        let _ = mmu.switch_address_space(kernel);
        kassert_eq!(mmu.destroy_address_space(kernel), Err(MapError::UnknownAddressSpace));
        mmu.destroy_address_space(space).map_err(|error| failure(error, "destroy"))?;
        kassert_eq!(mmu.switch_address_space(space), Err(MapError::UnknownAddressSpace));
        let _ = MEMORY.free_pages(frame, 0);
        result
    }
);

ktest!(
    fn guard_pages_are_unmapped_and_restored() {
        let mmu = mmu()?;
        let frame = MEMORY
            .alloc_pages(1, AllocFlags::NONE)
            .map_err(|error| TestFailure::new(file!(), line!(), format_args!("no pages: {:?}", error)))?;
        let guard = frame.0 as usize;
        let result = (|| {
            unmap_guard_page(guard).map_err(|error| failure(error, "unmap_guard_page"))?;
            kassert!(mmu.translate(mmu.kernel_space(), VirtualAddress(guard)).is_none(), "the guard page is still mapped");
            let above = mmu.translate(mmu.kernel_space(), VirtualAddress(guard + PAGE_SIZE));
            kassert_eq!(above, Some((PhysicalAddress(frame.0 + PAGE_SIZE as u64), KERNEL_DATA)));
            super::restore_guard_page(guard).map_err(|error| failure(error, "restore_guard_page"))?;
            kassert_eq!(mmu.translate(mmu.kernel_space(), VirtualAddress(guard)), Some((frame, KERNEL_DATA)));
            Ok(())
        })();
        let _ = MEMORY.free_pages(frame, 1);
        result
    }
);

ktest!(manual fn write_to_kernel_text() {
    let target = write_to_kernel_text as *const () as usize;
    crate::console::print_arguments(format_args!("paging: writing to kernel text at {:#x}\n", target));
    // SAFETY: deliberately unsound: the text is mapped read-only, so this store must fault
    // and the exception report end the run; if it does not, the test fails below.
    unsafe { core::ptr::write_volatile(target as *mut u32, 0) };
    Err(TestFailure::new(file!(), line!(), format_args!("a write to kernel text at {:#x} did not fault", target)))
});

ktest!(manual fn execute_kernel_data() {
    let target = &DATA_WORD as *const AtomicU64 as usize;
    crate::console::print_arguments(format_args!("paging: executing kernel data at {:#x}\n", target));
    // SAFETY: deliberately unsound: the data page is never-execute, so the fetch must fault
    // before any instruction there runs; if it does not, the test fails below.
    let function: extern "C" fn() = unsafe { core::mem::transmute::<usize, extern "C" fn()>(target) };
    function();
    Err(TestFailure::new(file!(), line!(), format_args!("executing kernel data at {:#x} did not fault", target)))
});

/// Recurses with a 1 KiB frame until the stack runs into the guard page.
#[inline(never)]
fn descend(depth: usize) -> usize {
    let mut frame = [0u8; 1024];
    frame[depth % 1024] = depth as u8;
    let frame = core::hint::black_box(&mut frame);
    if depth > 1 << 20 {
        return frame[0] as usize;
    }
    descend(depth + 1) + frame[1] as usize
}

ktest!(manual fn overflow_the_stack_into_a_guard_page() {
    // Make the page 8 KiB below the current stack position a guard page, then recurse.
    let local = 0u8;
    let position = core::hint::black_box(&local) as *const u8 as usize;
    let guard = (position & !(PAGE_SIZE - 1)) - 2 * PAGE_SIZE;
    unmap_guard_page(guard).map_err(|error| failure(error, "unmap_guard_page"))?;
    crate::console::print_arguments(format_args!("paging: guard page at {:#x}, overflowing the stack\n", guard));
    let result = descend(0);
    Err(TestFailure::new(file!(), line!(), format_args!("the stack overflow did not fault ({})", result)))
});
