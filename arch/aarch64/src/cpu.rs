//! CPU operations on aarch64: interrupt masking through DAIF, WFI, MPIDR and the MIDR model name.

use core::arch::asm;

use hinoki_interface::{Cpu, CpuId, InterruptState};

/// The aarch64 implementation of [`Cpu`].
pub struct Aarch64Cpu {
    model: [u8; 48],
    model_length: usize,
}

/// Reads MIDR_EL1.
pub fn main_id() -> u64 {
    let value: u64;
    // SAFETY: reading MIDR_EL1 has no side effects and is allowed at EL1.
    unsafe { asm!("mrs {}, midr_el1", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

/// Reads MPIDR_EL1.
pub fn multiprocessor_affinity() -> u64 {
    let value: u64;
    // SAFETY: reading MPIDR_EL1 has no side effects and is allowed at EL1.
    unsafe { asm!("mrs {}, mpidr_el1", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

/// Names a CPU from its MIDR value, e.g. `"ARM Cortex-A72 r0p3"`.
pub fn describe_main_id(midr: u64, out: &mut impl core::fmt::Write) -> core::fmt::Result {
    let implementer = (midr >> 24) & 0xff;
    let variant = (midr >> 20) & 0xf;
    let part = (midr >> 4) & 0xfff;
    let revision = midr & 0xf;
    let vendor = match implementer {
        0x41 => "ARM",
        0x42 => "Broadcom",
        0x51 => "Qualcomm",
        0x61 => "Apple",
        _ => "Unknown",
    };
    let name = match (implementer, part) {
        (0x41, 0xd03) => "Cortex-A53",
        (0x41, 0xd04) => "Cortex-A35",
        (0x41, 0xd05) => "Cortex-A55",
        (0x41, 0xd07) => "Cortex-A57",
        (0x41, 0xd08) => "Cortex-A72",
        (0x41, 0xd09) => "Cortex-A73",
        (0x41, 0xd0a) => "Cortex-A75",
        (0x41, 0xd0b) => "Cortex-A76",
        (0x41, 0xd0c) => "Neoverse-N1",
        (0x41, 0xd40) => "Neoverse-V1",
        (0x41, 0xd49) => "Neoverse-N2",
        (0x41, 0xd4f) => "Neoverse-V2",
        _ => "",
    };
    if name.is_empty() {
        write!(out, "{} part {:#05x} r{}p{}", vendor, part, variant, revision)
    } else {
        write!(out, "{} {} r{}p{}", vendor, name, variant, revision)
    }
}

struct Buffer<'a>(&'a mut [u8], usize);

impl core::fmt::Write for Buffer<'_> {
    fn write_str(&mut self, text: &str) -> core::fmt::Result {
        let take = text.len().min(self.0.len() - self.1);
        self.0[self.1..self.1 + take].copy_from_slice(&text.as_bytes()[..take]);
        self.1 += take;
        Ok(())
    }
}

impl Aarch64Cpu {
    /// Reads the model from MIDR_EL1 of the calling CPU.
    pub fn new() -> Self {
        let mut model = [0u8; 48];
        let mut buffer = Buffer(&mut model, 0);
        let _ = describe_main_id(main_id(), &mut buffer);
        let model_length = buffer.1;
        Aarch64Cpu { model, model_length }
    }
}

impl Default for Aarch64Cpu {
    fn default() -> Self {
        Self::new()
    }
}

impl Cpu for Aarch64Cpu {
    fn current_id(&self) -> CpuId {
        match crate::smp::this_cpu() {
            Some(per_cpu) => CpuId(per_cpu.id.load(core::sync::atomic::Ordering::Relaxed)),
            // Before the board set up TPIDR_EL1: the core number.
            None => CpuId((multiprocessor_affinity() & 0xff) as u32),
        }
    }

    fn online_count(&self) -> u32 {
        crate::smp::online_count()
    }

    fn disable_interrupts(&self) -> InterruptState {
        let daif: u64;
        // SAFETY: reading DAIF and masking IRQ/FIQ only affects this CPU's interrupt delivery.
        unsafe {
            asm!("mrs {}, daif", "msr daifset, #3", out(reg) daif, options(nomem, nostack, preserves_flags));
        }
        InterruptState(daif as usize)
    }

    fn restore_interrupts(&self, state: InterruptState) {
        // SAFETY: writes back a DAIF value previously read on this CPU.
        unsafe { asm!("msr daif, {}", in(reg) state.0 as u64, options(nomem, nostack, preserves_flags)) };
    }

    fn enable_interrupts(&self) {
        // SAFETY: unmasking IRQ/FIQ; the vector table is installed before any board calls this.
        unsafe { asm!("msr daifclr, #3", options(nomem, nostack, preserves_flags)) };
    }

    fn interrupts_enabled(&self) -> bool {
        let daif: u64;
        // SAFETY: reading DAIF has no side effects.
        unsafe { asm!("mrs {}, daif", out(reg) daif, options(nomem, nostack, preserves_flags)) };
        daif & (1 << 7) == 0
    }

    fn wait_for_interrupt(&self) {
        // SAFETY: WFI only pauses this CPU until an interrupt or event.
        unsafe { asm!("wfi", options(nomem, nostack, preserves_flags)) };
    }

    fn idle(&self) {
        // SAFETY: WFI wakes on a pending IRQ even with PSTATE.I set, so the wake-up the
        // caller checked for cannot slip in between; unmasking then lets the handler run.
        // Not `nomem`: the handler changes memory the caller reads next.
        unsafe { asm!("wfi", "msr daifclr, #3", options(nostack, preserves_flags)) };
    }

    fn relax(&self) {
        // SAFETY: YIELD is a hint with no architectural effect.
        unsafe { asm!("yield", options(nomem, nostack, preserves_flags)) };
    }

    #[inline(never)]
    fn frame_pointer(&self) -> usize {
        let frame_pointer: usize;
        // SAFETY: this function is never inlined and, built with frame pointers, has its
        // own frame record at x29 whose first word is the caller's frame pointer; reading
        // it is a load from this function's live stack frame.
        unsafe { asm!("ldr {}, [x29]", out(reg) frame_pointer, options(readonly, nostack, preserves_flags)) };
        frame_pointer
    }

    fn model(&self) -> &str {
        core::str::from_utf8(&self.model[..self.model_length]).unwrap_or("unknown")
    }
}
