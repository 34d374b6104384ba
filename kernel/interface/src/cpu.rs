//! CPU: identity, interrupt masking, idling and the frame pointer, per processor.

/// A logical CPU number, dense from 0 (the boot CPU) in bring-up order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CpuId(pub u32);

/// The interrupt mask as it was before [`Cpu::disable_interrupts`]; opaque to the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "the saved state must be handed back to restore_interrupts"]
pub struct InterruptState(pub usize);

/// Why a secondary CPU could not be started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuStartError {
    /// The board cannot start CPUs (not implemented, or no firmware interface).
    Unsupported,
    /// No such CPU, or it is the boot CPU.
    InvalidCpu(u32),
    /// The firmware refused (PSCI return code, or the board's own error number).
    Firmware(i64),
}

/// The Rust entry of a secondary CPU: runs on the stack the kernel gave it, at the
/// kernel's exception level, with interrupts masked, and receives the logical CPU id.
pub type SecondaryEntry = fn(cpu: u32) -> !;

/// Operations on the CPU the caller runs on.
pub trait Cpu: Sync {
    /// The calling CPU's logical id.
    fn current_id(&self) -> CpuId;

    /// Number of CPUs that are online.
    fn online_count(&self) -> u32 {
        1
    }

    /// Masks interrupts on this CPU and returns the previous state.
    fn disable_interrupts(&self) -> InterruptState;

    /// Restores the mask saved by [`Cpu::disable_interrupts`].
    fn restore_interrupts(&self, state: InterruptState);

    /// Unmasks interrupts on this CPU.
    fn enable_interrupts(&self);

    /// Whether interrupts are unmasked on this CPU.
    fn interrupts_enabled(&self) -> bool;

    /// Sleeps until the next interrupt (WFI / HLT). May return spuriously.
    fn wait_for_interrupt(&self);

    /// Idles until an interrupt: called with interrupts masked, right after the caller
    /// checked that it has nothing to do; sleeps until an interrupt is pending, then unmasks
    /// interrupts (so the handler runs) and returns with them enabled. Implementations make
    /// the sleep and the unmask one step (WFI with PSTATE.I set still wakes on aarch64;
    /// `sti; hlt` on x86), so a wake-up arriving after the caller's check is not lost. The
    /// default enables interrupts and then waits, which can oversleep until the next one.
    fn idle(&self) {
        self.enable_interrupts();
        self.wait_for_interrupt();
    }

    /// A hint inside busy-wait loops (YIELD / PAUSE).
    fn relax(&self) {
        core::hint::spin_loop();
    }

    /// The frame pointer (x29 / rbp) of the function that called this method, the start of
    /// a backtrace; valid while that function runs. Both supported ABIs store
    /// `[previous frame pointer, return address]` at it.
    fn frame_pointer(&self) -> usize;

    /// Human-readable processor model, e.g. `"ARM Cortex-A72 r0p3"`.
    fn model(&self) -> &str;

    /// Writes logical CPU `processor`'s paragraph of `/proc/cpuinfo` in Linux's format for
    /// the architecture, ending with an empty line. The default writes the processor number
    /// and [`Cpu::model`].
    fn write_cpuinfo(&self, processor: u32, out: &mut dyn core::fmt::Write) -> core::fmt::Result {
        writeln!(out, "processor\t: {}", processor)?;
        writeln!(out, "model name\t: {}", self.model())?;
        writeln!(out)
    }

    /// 64 bits from the CPU's own random number generator (RNDR on aarch64, RDSEED or
    /// RDRAND on x86_64), or `None` when the CPU has none or it failed to deliver. The
    /// kernel mixes these into its generator's seed; it never uses them alone.
    fn hardware_random_u64(&self) -> Option<u64> {
        None
    }
}
