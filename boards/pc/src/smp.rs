//! pc SMP: application processors from the MADT started with INIT-SIPI-SIPI through the real-mode trampoline (the kernel's `Platform::start_cpu`), IST stacks from the page allocator; TLB shootdowns; `/proc/cpuinfo`.

use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use apic::local::{DeliveryMode, InterruptCommand, Shorthand};
use apic::vector::TLB_SHOOTDOWN_VECTOR;
use apic::LocalApicAccess;
use hinoki_arch_x86_64::cpuinfo::CpuInfo;
use hinoki_arch_x86_64::descriptor::{self, APPLICATION_PROCESSOR_IST_SIZE};
use hinoki_arch_x86_64::percpu::MAX_CPUS;
use hinoki_arch_x86_64::{apic as local_apic, paging, smp};
use hinoki_interface::{Clock, CpuStartError, IpiTarget, SecondaryEntry, VirtualAddress};
use hinoki_kernel::mm::paging::kernel_map::{KERNEL_DATA, KERNEL_TEXT};
use hinoki_kernel::mm::{self, AllocFlags};
use hinoki_kernel::sync::{IrqSpinLock, SpinLock};

use crate::acpi_tables::AcpiSummary;
use crate::interrupts;

const PAGE_SIZE: usize = 4096;

/// What CPUID said on each CPU, recorded as it came online.
static CPU_INFO: IrqSpinLock<[Option<CpuInfo>; MAX_CPUS]> = IrqSpinLock::new([None; MAX_CPUS]);

/// Each starting CPU's IST stack tops (double fault, NMI/machine check) and kernel entry,
/// handed over before its start-up IPI.
static IST_TOPS: [[AtomicU64; 2]; MAX_CPUS] = [const { [AtomicU64::new(0), AtomicU64::new(0)] }; MAX_CPUS];
static ENTRIES: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];

/// Records the calling CPU's CPUID description for `/proc/cpuinfo`.
pub fn record_cpu_info(cpu: u32, apic_id: u32) {
    if let Some(slot) = CPU_INFO.lock().get_mut(cpu as usize) {
        *slot = Some(CpuInfo::read(apic_id));
    }
}

fn busy_wait(clock: &dyn Clock, nanoseconds: u64) {
    let start = clock.nanoseconds();
    while clock.nanoseconds() - start < nanoseconds {
        core::hint::spin_loop();
    }
}

fn allocate_stack(order: u32) -> Option<u64> {
    let base = mm::alloc_pages(order, AllocFlags::ZERO).ok()?;
    Some(base.0 + (PAGE_SIZE << order) as u64)
}

/// The APIC ID of logical CPU `cpu`: 0 is the boot CPU, the others are the MADT's other
/// usable processors in MADT order.
pub fn apic_id_of(acpi: &AcpiSummary, cpu: u32) -> Option<u32> {
    let boot = local_apic::initial_apic_id();
    if cpu == 0 {
        return Some(boot);
    }
    acpi.processors
        .as_slice()
        .iter()
        .filter(|processor| processor.usable && processor.apic_id != boot)
        .nth(cpu as usize - 1)
        .map(|processor| processor.apic_id)
}

/// How many CPUs can be brought up: the MADT's usable processors, at most the per-CPU
/// slots; 1 without ACPI tables or APICs.
pub fn possible_cpus(acpi: Option<&AcpiSummary>) -> u32 {
    match acpi {
        Some(acpi) if interrupts::controller().is_some() => {
            acpi.processors.as_slice().iter().filter(|processor| processor.usable).count().clamp(1, MAX_CPUS) as u32
        }
        _ => 1,
    }
}

/// Starts logical CPU `cpu` with INIT-SIPI-SIPI through the real-mode trampoline; it
/// sets itself up ([`application_processor_entry`]) and calls `entry(cpu)` on `stack_top`.
/// The kernel starts CPUs one at a time and waits for each, so the trampoline's single data
/// block is free again when the next one starts.
pub fn start_cpu(
    acpi: Option<&AcpiSummary>,
    clock: &dyn Clock,
    cpu: u32,
    stack_top: usize,
    entry: SecondaryEntry,
) -> Result<(), CpuStartError> {
    let acpi = acpi.ok_or(CpuStartError::Unsupported)?;
    if interrupts::controller().is_none() {
        return Err(CpuStartError::Unsupported);
    }
    if cpu == 0 || cpu >= possible_cpus(Some(acpi)) {
        return Err(CpuStartError::InvalidCpu(cpu));
    }
    let apic_id = apic_id_of(acpi, cpu).ok_or(CpuStartError::InvalidCpu(cpu))?;
    let ist_order = (APPLICATION_PROCESSOR_IST_SIZE / PAGE_SIZE).trailing_zeros();
    let (Some(double_fault_top), Some(critical_top)) = (allocate_stack(ist_order), allocate_stack(ist_order)) else {
        return Err(CpuStartError::Firmware(-12));
    };
    IST_TOPS[cpu as usize][0].store(double_fault_top, Ordering::Relaxed);
    IST_TOPS[cpu as usize][1].store(critical_top, Ordering::Relaxed);
    ENTRIES[cpu as usize].store(entry as usize, Ordering::Release);
    let (cr0, cr3, cr4, efer) = smp::boot_cpu_state();
    let data = smp::TrampolineData {
        cr3,
        cr4,
        cr0,
        efer,
        stack_top: stack_top as u64,
        entry: application_processor_entry as *const () as u64,
        cpu: cpu as u64,
    };
    // The kernel's page tables keep the first MiB read-write and no-execute: open the
    // trampoline page for the copy, then make it read-execute for the processor that runs it.
    let trampoline_page = VirtualAddress(smp::TRAMPOLINE_ADDRESS);
    let mmu = hinoki_kernel::platform().mmu();
    if let Some(mmu) = mmu {
        mmu.protect(mmu.kernel_space(), trampoline_page, PAGE_SIZE, KERNEL_DATA).map_err(|_| CpuStartError::Unsupported)?;
    }
    // SAFETY: the trampoline page is in the first MiB, which the board keeps out of the
    // page allocator; the kernel starts CPUs one at a time and waits for each to report
    // itself, so no CPU runs the trampoline now.
    unsafe { smp::install_trampoline(&data) };
    if let Some(mmu) = mmu {
        mmu.protect(mmu.kernel_space(), trampoline_page, PAGE_SIZE, KERNEL_TEXT).map_err(|_| CpuStartError::Unsupported)?;
    }
    send_init_startup(apic_id, clock);
    Ok(())
}

/// INIT, 10 ms, start-up, 200 µs, and a second start-up unless the CPU already left the
/// trampoline (Intel SDM vol. 3, 8.4.4.1).
fn send_init_startup(apic_id: u32, clock: &dyn Clock) {
    let local = &interrupts::ArchLocalApic;
    let started_before = smp::STARTED.load(Ordering::Acquire);
    let to = |delivery, vector| InterruptCommand { vector, delivery, destination: apic_id, shorthand: Shorthand::None, deassert: false };
    local.send(to(DeliveryMode::Init, 0));
    busy_wait(clock, 10_000_000);
    for _ in 0..2 {
        local.send(to(DeliveryMode::Startup, smp::STARTUP_VECTOR));
        busy_wait(clock, 200_000);
        if smp::STARTED.load(Ordering::Acquire) != started_before {
            break;
        }
    }
}

/// Where each application processor's trampoline lands, on its kernel stack, interrupts
/// masked: descriptor tables, per-CPU block, local APIC mode, then the kernel's entry.
extern "C" fn application_processor_entry(cpu: u32) -> ! {
    let apic_id = local_apic::initial_apic_id();
    let [double_fault, critical] = [0, 1].map(|index| IST_TOPS[cpu as usize][index].load(Ordering::Relaxed));
    // SAFETY: runs once on CPU `cpu`, interrupts masked; the IST stacks were allocated for it
    // alone and are never freed.
    let installed = unsafe { descriptor::initialize_application_processor(cpu, apic_id, double_fault, critical) };
    smp::report_started();
    let entry = ENTRIES[cpu as usize].load(Ordering::Acquire);
    if !installed || entry == 0 {
        hinoki_arch_x86_64::power::halt_forever();
    }
    // SAFETY: the boot CPU chose the APIC mode before starting this CPU; interrupts are masked.
    unsafe { local_apic::enable_on_this_cpu() };
    record_cpu_info(cpu, local_apic::apic_id());
    // SAFETY: the only non-zero value stored in ENTRIES is a `SecondaryEntry` (start_cpu).
    let entry: SecondaryEntry = unsafe { core::mem::transmute::<usize, SecondaryEntry>(entry) };
    entry(cpu)
}

static SHOOTDOWN: SpinLock<()> = SpinLock::new(());
/// The page to flush, or [`FLUSH_ALL`].
static SHOOTDOWN_ADDRESS: AtomicU64 = AtomicU64::new(FLUSH_ALL);
static SHOOTDOWN_PENDING: AtomicU32 = AtomicU32::new(0);
const FLUSH_ALL: u64 = u64::MAX;
/// How long a shootdown waits for the other CPUs.
const SHOOTDOWN_TIMEOUT_NANOSECONDS: u64 = 1_000_000_000;

/// Why a TLB shootdown did not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShootdownError {
    /// The caller has interrupts masked (two shootdowns could wait on each other).
    InterruptsDisabled,
    /// No APIC to send the IPI with.
    NoController,
    /// Some CPUs did not acknowledge within the timeout.
    Timeout(u32),
}

/// Flushes `address` (or everything, for `None`) from every online CPU's TLB: locally, then
/// by IPI on the others (INVLPG, or a CR3 reload), waiting until each one has done it.
/// Returns how many other CPUs flushed.
pub fn flush_tlb_all_cpus(address: Option<u64>) -> Result<u32, ShootdownError> {
    let platform = hinoki_kernel::platform();
    if !platform.cpu().interrupts_enabled() {
        return Err(ShootdownError::InterruptsDisabled);
    }
    let controller = interrupts::controller().ok_or(ShootdownError::NoController)?;
    let _serialized = SHOOTDOWN.lock();
    match address {
        Some(address) => paging::flush_page(address),
        None => paging::flush_all(),
    }
    let others = platform.cpu().online_count() - 1;
    if others == 0 {
        return Ok(0);
    }
    SHOOTDOWN_ADDRESS.store(address.unwrap_or(FLUSH_ALL), Ordering::Release);
    SHOOTDOWN_PENDING.store(others, Ordering::Release);
    controller.send_vector(IpiTarget::AllOthers, TLB_SHOOTDOWN_VECTOR).map_err(|_| ShootdownError::NoController)?;
    let clock = platform.clock();
    let start = clock.nanoseconds();
    while SHOOTDOWN_PENDING.load(Ordering::Acquire) != 0 {
        if clock.nanoseconds() - start > SHOOTDOWN_TIMEOUT_NANOSECONDS {
            return Err(ShootdownError::Timeout(SHOOTDOWN_PENDING.swap(0, Ordering::AcqRel)));
        }
        core::hint::spin_loop();
    }
    Ok(others)
}

/// The shootdown the kernel's MMU runs after changing a mapping (registered with
/// `hinoki_arch_x86_64::mmu::set_tlb_shootdown`): one page by INVLPG, more by CR3 reload.
pub fn shootdown_range(virtual_address: usize, size: usize) {
    let address = (size <= PAGE_SIZE).then_some(virtual_address as u64);
    if let Err(error) = flush_tlb_all_cpus(address) {
        if error != ShootdownError::InterruptsDisabled || hinoki_kernel::platform().cpu().online_count() > 1 {
            log::warn!("smp: TLB shootdown of {:#x}+{:#x} failed: {:?}", virtual_address, size, error);
        }
    }
}

/// The TLB shootdown vector's handler on the receiving CPUs.
pub fn handle_tlb_shootdown(_irq: u32) {
    match SHOOTDOWN_ADDRESS.load(Ordering::Acquire) {
        FLUSH_ALL => paging::flush_all(),
        address => paging::flush_page(address),
    }
    let _ = SHOOTDOWN_PENDING.fetch_update(Ordering::AcqRel, Ordering::Acquire, |pending| pending.checked_sub(1));
}

/// `/proc/cpuinfo`: one paragraph per online CPU, Linux's x86 layout.
pub fn show_cpuinfo(out: &mut dyn core::fmt::Write) -> core::fmt::Result {
    let platform = hinoki_kernel::platform();
    let online = platform.cpu().online_count();
    let cpu_khz = platform_tsc_khz();
    let infos = *CPU_INFO.lock();
    for (processor, info) in infos.iter().enumerate() {
        if let Some(info) = info {
            info.write(out, processor as u32, cpu_khz, online)?;
        }
    }
    Ok(())
}

fn platform_tsc_khz() -> u64 {
    crate::BOARD.get().map_or(0, |board| board.clock.frequency_hz() / 1000)
}
