//! Secondary-CPU bring-up through PSCI CPU_ON or a spin table, and the per-CPU block TPIDR_EL1 points at on every CPU (logical id and MPIDR).

use core::arch::asm;
use core::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use hinoki_interface::{CpuStartError, SecondaryEntry};

use crate::psci::{self, Conduit};

/// Most CPUs brought up.
pub const MAX_CPUS: usize = 8;

/// What TPIDR_EL1 points at on each CPU.
#[repr(C)]
pub struct PerCpu {
    /// Logical CPU id, dense from 0 (the boot CPU) in bring-up order.
    pub id: AtomicU32,
    /// The CPU's MPIDR_EL1.
    pub mpidr: AtomicU64,
}

/// What a starting secondary CPU reads in `boot.rs` (x0 of CPU_ON's context id).
#[repr(C)]
pub struct SecondaryBoot {
    /// The top of its stack (offset 0, read by the assembly).
    stack_top: AtomicUsize,
    /// The address of its [`PerCpu`] for TPIDR_EL1 (offset 8, read by the assembly).
    per_cpu: AtomicUsize,
    /// Its logical id.
    cpu: AtomicU32,
}

static PER_CPU: [PerCpu; MAX_CPUS] = [const { PerCpu { id: AtomicU32::new(0), mpidr: AtomicU64::new(0) } }; MAX_CPUS];
static SECONDARY_BOOT: [SecondaryBoot; MAX_CPUS] =
    [const { SecondaryBoot { stack_top: AtomicUsize::new(0), per_cpu: AtomicUsize::new(0), cpu: AtomicU32::new(0) } }; MAX_CPUS];
static SECONDARY_ENTRY: AtomicUsize = AtomicUsize::new(0);
/// The address of each core's [`SecondaryBoot`], by MPIDR Aff0, for a core a spin table
/// releases (read by `hinoki_aarch64_spin_table_start` in `boot.rs`, with the MMU off).
#[export_name = "hinoki_aarch64_spin_table_boot"]
static SPIN_TABLE_BOOT: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];
/// Bytes at the top of a secondary's stack written back and invalidated before it starts:
/// more than the frames it pushes with its caches off (the assembly entry and
/// `hinoki_aarch64_secondary_entry` up to the MMU switch).
const UNCACHED_STACK_BYTES: usize = 4096;
static ONLINE: AtomicU32 = AtomicU32::new(1);

extern "C" {
    /// The assembly entry in `boot.rs` (PSCI CPU_ON, x0 = the `SecondaryBoot`).
    fn hinoki_aarch64_secondary_start();
    /// The assembly entry in `boot.rs` a spin table jumps to (x0 = 0).
    fn hinoki_aarch64_spin_table_start();
}

/// The smallest data-cache line (CTR_EL0.DminLine, in words, as a power of two).
fn data_cache_line_size() -> usize {
    let value: u64;
    // SAFETY: reading CTR_EL0 has no side effects.
    unsafe { asm!("mrs {}, ctr_el0", out(reg) value, options(nomem, nostack, preserves_flags)) };
    4 << ((value >> 16) & 0xf)
}

/// Cleans and invalidates the data-cache lines of `start..start + size` to the point of
/// coherency, then waits for completion: a CPU running with its caches off reads what the
/// caller wrote, and no dirty line of the caller's later overwrites what it writes.
fn clean_and_invalidate_to_point_of_coherency(start: usize, size: usize) {
    let line = data_cache_line_size();
    let mut address = start & !(line - 1);
    while address < start + size {
        // SAFETY: `dc civac` writes a line back and drops it; the data stays the same and
        // the address is mapped (it is in the kernel's identity map or the MMU is off).
        unsafe { asm!("dc civac, {}", in(reg) address, options(nostack, preserves_flags)) };
        address += line;
    }
    // SAFETY: a barrier only waits for the maintenance above.
    unsafe { asm!("dsb sy", options(nostack, preserves_flags)) };
}

fn set_per_cpu_register(per_cpu: &'static PerCpu) {
    // SAFETY: TPIDR_EL1 is a software register the kernel reserves for the per-CPU pointer;
    // writing it affects nothing else.
    unsafe { asm!("msr tpidr_el1, {}", in(reg) per_cpu as *const PerCpu as u64, options(nomem, nostack, preserves_flags)) };
}

/// The calling CPU's [`PerCpu`], once TPIDR_EL1 is set ([`init_boot_cpu`] or bring-up).
pub fn this_cpu() -> Option<&'static PerCpu> {
    let address: usize;
    // SAFETY: reading TPIDR_EL1 has no side effects.
    unsafe { asm!("mrs {}, tpidr_el1", out(reg) address, options(nomem, nostack, preserves_flags)) };
    let offset = address.checked_sub(PER_CPU.as_ptr() as usize)?;
    if offset % core::mem::size_of::<PerCpu>() != 0 {
        return None;
    }
    PER_CPU.get(offset / core::mem::size_of::<PerCpu>())
}

/// Makes the calling (boot) CPU logical CPU 0: points TPIDR_EL1 at its block. Boards call
/// it first thing.
pub fn init_boot_cpu() {
    PER_CPU[0].id.store(0, Ordering::Relaxed);
    PER_CPU[0].mpidr.store(crate::cpu::multiprocessor_affinity(), Ordering::Relaxed);
    set_per_cpu_register(&PER_CPU[0]);
}

/// CPUs running kernel code (the boot CPU and every secondary past its assembly entry).
pub fn online_count() -> u32 {
    ONLINE.load(Ordering::Acquire)
}

/// Fills logical CPU `cpu`'s [`PerCpu`] and [`SecondaryBoot`] and records `entry`.
fn prepare(cpu: u32, mpidr: u64, stack_top: usize, entry: SecondaryEntry) -> Result<&'static SecondaryBoot, CpuStartError> {
    let index = cpu as usize;
    if cpu == 0 || index >= MAX_CPUS {
        return Err(CpuStartError::InvalidCpu(cpu));
    }
    PER_CPU[index].id.store(cpu, Ordering::Relaxed);
    PER_CPU[index].mpidr.store(mpidr, Ordering::Relaxed);
    let boot = &SECONDARY_BOOT[index];
    boot.stack_top.store(stack_top, Ordering::Relaxed);
    boot.per_cpu.store(&PER_CPU[index] as *const PerCpu as usize, Ordering::Relaxed);
    boot.cpu.store(cpu, Ordering::Relaxed);
    SECONDARY_ENTRY.store(entry as usize, Ordering::Relaxed);
    // The new CPU reads all of this with its MMU and caches off.
    fence(Ordering::SeqCst);
    Ok(boot)
}

/// Starts logical CPU `cpu` (whose MPIDR is `mpidr`) with PSCI CPU_ON through `conduit`:
/// it drops to EL1 like the boot CPU, takes the stack ending at `stack_top`, points
/// TPIDR_EL1 at its [`PerCpu`] and calls `entry(cpu)`.
///
/// # Errors
/// [`CpuStartError::InvalidCpu`] for CPU 0 or past [`MAX_CPUS`];
/// [`CpuStartError::Firmware`] with PSCI's return code.
pub fn start_cpu(conduit: Conduit, cpu: u32, mpidr: u64, stack_top: usize, entry: SecondaryEntry) -> Result<(), CpuStartError> {
    let boot = prepare(cpu, mpidr, stack_top, entry)?;
    let result = psci::call(
        conduit,
        psci::CPU_ON_64,
        mpidr,
        hinoki_aarch64_secondary_start as *const () as u64,
        boot as *const SecondaryBoot as u64,
    );
    if result == 0 {
        Ok(())
    } else {
        Err(CpuStartError::Firmware(result))
    }
}

/// Starts logical CPU `cpu` (whose MPIDR is `mpidr`) from a spin table, the Raspberry Pi
/// way (and Linux's `enable-method = "spin-table"`): the core waits in WFE in the firmware's
/// stub until the 64-bit word at `release_address` is non-zero, then jumps there with
/// x0 = 0 at the exception level the boot CPU entered at. This writes the entry address
/// there, makes everything the core reads with its caches off visible in memory, and wakes
/// it with SEV; the core then drops to EL1 and runs `entry(cpu)` on `stack_top`, as
/// [`start_cpu`] does.
///
/// # Errors
/// [`CpuStartError::InvalidCpu`] for CPU 0, past [`MAX_CPUS`], or a core number
/// (MPIDR Aff0) past the spin-table slots.
///
/// # Safety
/// `release_address` must be the release word of the core `mpidr` names, mapped writable
/// (identity) or with the MMU off, and that core must be waiting on it in the firmware's
/// stub; the stack below `stack_top` must be at least 4 KiB, owned by the new CPU.
pub unsafe fn start_cpu_spin_table(
    cpu: u32,
    mpidr: u64,
    release_address: usize,
    stack_top: usize,
    entry: SecondaryEntry,
) -> Result<(), CpuStartError> {
    let core = (mpidr & 0xff) as usize;
    if core >= MAX_CPUS {
        return Err(CpuStartError::InvalidCpu(cpu));
    }
    let boot = prepare(cpu, mpidr, stack_top, entry)?;
    SPIN_TABLE_BOOT[core].store(boot as *const SecondaryBoot as usize, Ordering::Release);
    clean_and_invalidate_to_point_of_coherency(boot as *const SecondaryBoot as usize, core::mem::size_of::<SecondaryBoot>());
    clean_and_invalidate_to_point_of_coherency(&SPIN_TABLE_BOOT[core] as *const AtomicUsize as usize, 8);
    clean_and_invalidate_to_point_of_coherency(stack_top - UNCACHED_STACK_BYTES, UNCACHED_STACK_BYTES);
    // SAFETY: the caller guarantees `release_address` is this core's mapped release word;
    // the firmware stub polls it, nothing else uses it.
    unsafe { core::ptr::write_volatile(release_address as *mut u64, hinoki_aarch64_spin_table_start as *const () as u64) };
    clean_and_invalidate_to_point_of_coherency(release_address, 8);
    // SAFETY: SEV only wakes cores waiting in WFE; the DSB above completed the write.
    unsafe { asm!("sev", options(nomem, nostack, preserves_flags)) };
    Ok(())
}

#[no_mangle]
extern "C" fn hinoki_aarch64_secondary_entry(boot: &'static SecondaryBoot) -> ! {
    // The boot CPU's page tables, caches and W^X, before touching shared data.
    crate::mmu::enable_secondary();
    ONLINE.fetch_add(1, Ordering::AcqRel);
    let entry = SECONDARY_ENTRY.load(Ordering::Acquire);
    // SAFETY: `start_cpu` stored a `SecondaryEntry` function pointer before starting this
    // CPU, and it is the only value ever stored.
    let entry: SecondaryEntry = unsafe { core::mem::transmute::<usize, SecondaryEntry>(entry) };
    entry(boot.cpu.load(Ordering::Relaxed))
}
