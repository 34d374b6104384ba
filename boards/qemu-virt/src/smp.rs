//! qemu-virt CPU bring-up: logical CPU ids for the DTB's `/cpus` and PSCI CPU_ON through the DTB's conduit.

use hinoki_interface::{CpuStartError, SecondaryEntry};

use crate::devicetree::{Devices, MAX_CPUS};

/// How many CPUs can be brought up: those in the DTB, at most the arch's per-CPU slots.
pub fn possible_cpus(devices: &Devices) -> u32 {
    devices.cpu_count.clamp(1, MAX_CPUS.min(hinoki_arch_aarch64::smp::MAX_CPUS)) as u32
}

/// The MPIDR of logical CPU `cpu`: 0 is the boot CPU, the others are the DTB's remaining
/// CPUs in DTB order.
pub fn affinity_of(devices: &Devices, cpu: u32) -> Option<u64> {
    let boot = hinoki_arch_aarch64::cpu::multiprocessor_affinity() & 0xff_00ff_ffff;
    let count = possible_cpus(devices) as usize;
    if cpu == 0 {
        return Some(boot);
    }
    devices.cpu_affinities[..count].iter().copied().filter(|&affinity| affinity != boot).nth(cpu as usize - 1)
}

/// Starts logical CPU `cpu` with PSCI CPU_ON.
pub fn start_cpu(devices: &Devices, cpu: u32, stack_top: usize, entry: SecondaryEntry) -> Result<(), CpuStartError> {
    let affinity = affinity_of(devices, cpu).filter(|_| cpu != 0 && cpu < possible_cpus(devices)).ok_or(CpuStartError::InvalidCpu(cpu))?;
    let conduit = devices.psci.ok_or(CpuStartError::Unsupported)?;
    hinoki_arch_aarch64::smp::start_cpu(conduit, cpu, affinity, stack_top, entry)
}
