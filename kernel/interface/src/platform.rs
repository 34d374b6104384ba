//! Platform: the one type a board names, through which the kernel reaches every device.

use crate::clock::{Clock, ClockEvent};
use crate::console::Console;
use crate::context::ContextSwitch;
use crate::cpu::{Cpu, CpuStartError, SecondaryEntry};
use crate::irq::InterruptController;
use crate::memory::MemoryRegion;
use crate::mmu::Mmu;

/// How a run ends, for boards that can report a status to their host (QEMU).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// Everything passed.
    Success,
    /// Something failed; the code is carried to the host where the exit device allows.
    Failure(u32),
}

/// A board: its devices, its memory, and how to stop it.
pub trait Platform: Sync {
    /// Board name, e.g. `"qemu-virt"`.
    fn board_name(&self) -> &'static str;

    /// Architecture name as `uname -m` prints it: `"aarch64"`, `"x86_64"`.
    fn arch_name(&self) -> &'static str;

    /// The console the kernel logs to and the shell runs on.
    fn console(&self) -> &dyn Console;

    /// The CPU operations.
    fn cpu(&self) -> &dyn Cpu;

    /// The monotonic clocksource.
    fn clock(&self) -> &dyn Clock;

    /// The interrupt controller, once the board has brought it up.
    fn interrupt_controller(&self) -> Option<&dyn InterruptController> {
        None
    }

    /// The calling CPU's clock-event device (the timer interrupt), once the board has
    /// brought it up; the kernel's periodic tick and timer deadlines run on it.
    fn clock_event(&self) -> Option<&dyn ClockEvent> {
        None
    }

    /// The battery-backed real-time clock, if the board has one; without it the kernel's
    /// wall time starts at the Unix epoch at boot.
    fn real_time_clock(&self) -> Option<&dyn crate::rtc::RealTimeClock> {
        None
    }

    /// How many CPUs the firmware describes (DTB `/cpus`, MADT, the Pi's four cores), the
    /// boot CPU included; logical ids run from 0 (the boot CPU) to this minus one.
    fn possible_cpus(&self) -> u32 {
        1
    }

    /// Starts secondary CPU `cpu` (1 to `possible_cpus() - 1`): it sets up its own CPU state
    /// (exception level, vectors, per-CPU register) and calls `entry(cpu)` on the stack
    /// whose top is `stack_top`. Returns once the firmware accepted the request; the kernel
    /// waits for the CPU to report itself.
    fn start_cpu(&self, _cpu: u32, _stack_top: usize, _entry: SecondaryEntry) -> Result<(), CpuStartError> {
        Err(CpuStartError::Unsupported)
    }

    /// The MMU, once the board has brought it up.
    fn mmu(&self) -> Option<&dyn Mmu> {
        None
    }

    /// Builds the kernel's page tables and switches to them (Linux's `paging_init`).
    /// `kernel_main` calls it once, on the boot CPU, right after the page allocator is up;
    /// from then on [`mmu`](Self::mmu) returns the MMU. The default does nothing.
    fn paging_init(&self) {}

    /// Calls `visit` for each physical memory region the board knows of.
    ///
    /// Contract with the kernel's page allocator: every `Usable` region not covered by
    /// another region is RAM that nothing else uses, readable and writable at its physical
    /// address (identity-mapped) when `kernel_main` starts.
    fn memory_regions(&self, visit: &mut dyn FnMut(MemoryRegion));

    /// Whether the page allocator keeps memory below 4 GiB in its own zone (ZONE_DMA32) for
    /// devices that can only address 32 bits (PC).
    fn dma32_zone(&self) -> bool {
        false
    }

    /// The arch's context-switch operations; without them the kernel runs one thread.
    fn context_switch(&self) -> Option<&ContextSwitch> {
        None
    }

    /// Creates the board's devices that need the heap, the IRQ layer and the scheduler
    /// (disks: virtio-blk) and hands them to the kernel's subsystems. `kernel_main` calls it
    /// once, from the first kernel thread, before it mounts a disk on `/mnt`. The default
    /// has no such devices.
    fn init_devices(&self) {}

    /// The kernel command line from the boot loader (DTB `/chosen/bootargs`, PVH, ATAGs),
    /// empty when there is none.
    fn command_line(&self) -> &str;

    /// Writes `/proc/cpuinfo`: by default one [`Cpu::write_cpuinfo`] paragraph per online
    /// CPU. A board whose CPU descriptions are gathered per CPU at bring-up overrides it.
    fn write_cpuinfo(&self, out: &mut dyn core::fmt::Write) -> core::fmt::Result {
        for processor in 0..self.cpu().online_count() {
            self.cpu().write_cpuinfo(processor, out)?;
        }
        Ok(())
    }

    /// Range of the kernel's text, used to sanity-check return addresses in backtraces.
    fn kernel_text(&self) -> core::ops::Range<usize>;

    /// Powers the machine off; under QEMU, exits with status 0.
    fn poweroff(&self) -> !;

    /// Ends the run with `status`; under QEMU the host sees it as the exit code.
    /// On hardware without an exit channel, failure halts and success powers off.
    fn exit(&self, status: ExitStatus) -> !;

    /// Resets the machine.
    fn reboot(&self) -> !;
}
