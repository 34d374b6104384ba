//! Per-CPU data reached through the GS base: the logical CPU id, the APIC ID, the vector being handled, and the count of CPUs online.
//!
//! Each CPU's IA32_GS_BASE points at its [`PerCpu`] block, whose first word points at
//! itself, so `this_cpu` is one `mov rax, gs:[0]`. IA32_KERNEL_GS_BASE is left 0: there is
//! no user mode yet to SWAPGS with. The boot CPU's block is set up before the board's entry
//! runs; each application processor installs its own ([`install`]) before running Rust code
//! that asks for its id.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Most CPUs the kernel brings online (the xtask's `--smp` limit).
pub const MAX_CPUS: usize = 8;

/// One CPU's block.
#[repr(C, align(64))]
pub struct PerCpu {
    self_pointer: AtomicU64,
    cpu_id: AtomicU32,
    apic_id: AtomicU32,
    current_vector: AtomicU32,
    interrupts_taken: AtomicU64,
    /// TSC and vector of the latest external interrupt's entry (for latency measurements).
    last_entry_tsc: AtomicU64,
    last_entry_vector: AtomicU32,
}

impl PerCpu {
    const fn new() -> Self {
        PerCpu {
            self_pointer: AtomicU64::new(0),
            cpu_id: AtomicU32::new(0),
            apic_id: AtomicU32::new(0),
            current_vector: AtomicU32::new(0),
            interrupts_taken: AtomicU64::new(0),
            last_entry_tsc: AtomicU64::new(0),
            last_entry_vector: AtomicU32::new(0),
        }
    }

    /// The logical CPU id.
    pub fn cpu_id(&self) -> u32 {
        self.cpu_id.load(Ordering::Relaxed)
    }

    /// The APIC ID recorded at bring-up.
    pub fn apic_id(&self) -> u32 {
        self.apic_id.load(Ordering::Relaxed)
    }

    /// External interrupts this CPU took (all vectors 32-255).
    pub fn interrupts_taken(&self) -> u64 {
        self.interrupts_taken.load(Ordering::Relaxed)
    }

    /// The TSC when the latest external interrupt reached the dispatcher, and its vector.
    pub fn last_entry(&self) -> (u64, u8) {
        (self.last_entry_tsc.load(Ordering::Acquire), self.last_entry_vector.load(Ordering::Relaxed) as u8)
    }
}

static BLOCKS: [PerCpu; MAX_CPUS] = [const { PerCpu::new() }; MAX_CPUS];
static ONLINE: AtomicU32 = AtomicU32::new(0);

/// The block of logical CPU `cpu`.
pub fn block(cpu: u32) -> Option<&'static PerCpu> {
    BLOCKS.get(cpu as usize)
}

/// Points the calling CPU's GS base at the block of logical CPU `cpu`, records its APIC ID
/// and counts it online. Returns `false` when `cpu` is past [`MAX_CPUS`].
pub fn install(cpu: u32, apic_id: u32) -> bool {
    let Some(block) = block(cpu) else { return false };
    let address = block as *const PerCpu as u64;
    block.self_pointer.store(address, Ordering::Relaxed);
    block.cpu_id.store(cpu, Ordering::Relaxed);
    block.apic_id.store(apic_id, Ordering::Relaxed);
    // SAFETY: IA32_GS_BASE exists on every x86_64 CPU; pointing it at a static block that
    // lives forever is what every GS-relative read below relies on.
    unsafe {
        crate::msr::write(crate::msr::GS_BASE, address);
        crate::msr::write(crate::msr::KERNEL_GS_BASE, 0);
    }
    ONLINE.fetch_add(1, Ordering::AcqRel);
    true
}

/// The calling CPU's block.
#[cfg(target_os = "none")]
pub fn this_cpu() -> &'static PerCpu {
    let address: u64;
    // SAFETY: every CPU installs its block (GS base) before Rust code on it calls this; the
    // first word of a block is its own address.
    unsafe { core::arch::asm!("mov {}, gs:[0]", out(reg) address, options(readonly, nostack, preserves_flags)) };
    // SAFETY: `address` is one of the static `BLOCKS`.
    unsafe { &*(address as *const PerCpu) }
}

/// The calling CPU's block (host builds: CPU 0).
#[cfg(not(target_os = "none"))]
pub fn this_cpu() -> &'static PerCpu {
    &BLOCKS[0]
}

/// Number of CPUs that installed their block.
pub fn online_count() -> u32 {
    ONLINE.load(Ordering::Acquire).max(1)
}

/// Records `vector` as the one being handled on this CPU, entered at TSC `entry_tsc`;
/// returns the previous vector for [`leave_interrupt`].
pub fn enter_interrupt(vector: u8, entry_tsc: u64) -> u32 {
    let block = this_cpu();
    block.interrupts_taken.fetch_add(1, Ordering::Relaxed);
    block.last_entry_vector.store(vector as u32, Ordering::Relaxed);
    block.last_entry_tsc.store(entry_tsc, Ordering::Release);
    block.current_vector.swap(vector as u32, Ordering::Relaxed)
}

/// Restores the vector recorded before [`enter_interrupt`].
pub fn leave_interrupt(previous: u32) {
    this_cpu().current_vector.store(previous, Ordering::Relaxed);
}

/// The vector this CPU is handling (0 outside interrupt handlers).
pub fn current_vector() -> u8 {
    this_cpu().current_vector.load(Ordering::Relaxed) as u8
}
