//! CPU operations on aarch64: interrupt masking through DAIF, WFI, MPIDR and the MIDR model name.

use core::arch::asm;

use hinoki_interface::{Cpu, CpuId, InterruptState};

/// The aarch64 implementation of [`Cpu`].
pub struct Aarch64Cpu {
    model: [u8; 48],
    model_length: usize,
    has_random_number: bool,
}

/// Whether the CPU implements RNDR/RNDRRS (FEAT_RNG: ID_AA64ISAR0_EL1.RNDR, bits 63:60, is not 0).
pub fn has_random_number_instructions() -> bool {
    instruction_set_attributes() >> 60 != 0
}

/// One RNDR read: 64 random bits, or `None` when the generator reported failure
/// (PSTATE.Z set) because it could not deliver in reasonable time.
///
/// # Safety
/// The CPU must implement FEAT_RNG ([`has_random_number_instructions`]); otherwise the
/// read is an undefined instruction.
pub unsafe fn read_random_number() -> Option<u64> {
    let value: u64;
    let failed: u64;
    // SAFETY: the caller promises FEAT_RNG; RNDR (s3_3_c2_c4_0) only reads the generator
    // and sets NZCV, which this block declares clobbered by not preserving flags.
    unsafe {
        asm!("mrs {value}, s3_3_c2_c4_0", "cset {failed}, eq", value = out(reg) value, failed = out(reg) failed, options(nomem, nostack))
    };
    (failed == 0).then_some(value)
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
        Aarch64Cpu { model, model_length, has_random_number: has_random_number_instructions() }
    }
}

impl Default for Aarch64Cpu {
    fn default() -> Self {
        Self::new()
    }
}

/// Reads ID_AA64ISAR0_EL1 (instruction-set attributes: crypto, atomics, RNDR).
fn instruction_set_attributes() -> u64 {
    let value: u64;
    // SAFETY: reading an ID register has no side effects and is allowed at EL1.
    unsafe { asm!("mrs {}, id_aa64isar0_el1", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

/// Reads ID_AA64PFR0_EL1 (processor features: FP, Advanced SIMD).
fn processor_features() -> u64 {
    let value: u64;
    // SAFETY: reading an ID register has no side effects and is allowed at EL1.
    unsafe { asm!("mrs {}, id_aa64pfr0_el1", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

/// The `Features` line of `/proc/cpuinfo`: Linux's hwcap names, in Linux's order, for
/// what the two ID registers report.
pub fn write_features(isar0: u64, pfr0: u64, out: &mut dyn core::fmt::Write) -> core::fmt::Result {
    let field = |value: u64, shift: u32| (value >> shift) & 0xf;
    let floating_point = field(pfr0, 16);
    let advanced_simd = field(pfr0, 20);
    let names = [
        ("fp", floating_point != 0xf),
        ("asimd", advanced_simd != 0xf),
        ("aes", field(isar0, 4) >= 1),
        ("pmull", field(isar0, 4) >= 2),
        ("sha1", field(isar0, 8) >= 1),
        ("sha2", field(isar0, 12) >= 1),
        ("crc32", field(isar0, 16) >= 1),
        ("atomics", field(isar0, 20) >= 2),
        ("fphp", floating_point == 1),
        ("asimdhp", advanced_simd == 1),
        ("cpuid", true),
        ("asimdrdm", field(isar0, 28) >= 1),
        ("sha3", field(isar0, 32) >= 1),
        ("sm3", field(isar0, 36) >= 1),
        ("sm4", field(isar0, 40) >= 1),
        ("asimddp", field(isar0, 44) >= 1),
        ("sha512", field(isar0, 12) >= 2),
        ("asimdfhm", field(isar0, 48) >= 1),
        ("rng", field(isar0, 60) >= 1),
    ];
    let mut first = true;
    for (name, present) in names {
        if present {
            write!(out, "{}{}", if first { "" } else { " " }, name)?;
            first = false;
        }
    }
    Ok(())
}

/// One CPU's `/proc/cpuinfo` paragraph in Linux's arm64 format, from the ID registers and
/// the generic-timer frequency (BogoMIPS is derived from it, as Linux does on arm64).
pub fn write_cpuinfo_paragraph(
    processor: u32,
    midr: u64,
    isar0: u64,
    pfr0: u64,
    timer_frequency: u64,
    out: &mut dyn core::fmt::Write,
) -> core::fmt::Result {
    writeln!(out, "processor\t: {}", processor)?;
    writeln!(out, "BogoMIPS\t: {}.{:02}", timer_frequency / 500_000, (timer_frequency / 5_000) % 100)?;
    write!(out, "Features\t: ")?;
    write_features(isar0, pfr0, out)?;
    writeln!(out)?;
    writeln!(out, "CPU implementer\t: {:#04x}", (midr >> 24) & 0xff)?;
    writeln!(out, "CPU architecture: 8")?;
    writeln!(out, "CPU variant\t: {:#x}", (midr >> 20) & 0xf)?;
    writeln!(out, "CPU part\t: {:#05x}", (midr >> 4) & 0xfff)?;
    writeln!(out, "CPU revision\t: {}", midr & 0xf)?;
    writeln!(out)
}

impl Cpu for Aarch64Cpu {
    /// The ID registers are read on the calling CPU: every board Hinoki supports has
    /// identical cores.
    fn write_cpuinfo(&self, processor: u32, out: &mut dyn core::fmt::Write) -> core::fmt::Result {
        let frequency = crate::generic_timer::counter_frequency();
        write_cpuinfo_paragraph(processor, main_id(), instruction_set_attributes(), processor_features(), frequency, out)
    }

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
        let current: u64;
        // SAFETY: reading DAIF has no side effects.
        unsafe { asm!("mrs {}, daif", out(reg) current, options(nomem, nostack, preserves_flags)) };
        // Nested masked sections restore the state already in place: skip the write, which
        // under emulation ends a translation block (a trip through QEMU's main loop).
        if current != state.0 as u64 {
            // SAFETY: writes back a DAIF value previously read on this CPU.
            unsafe { asm!("msr daif, {}", in(reg) state.0 as u64, options(nomem, nostack, preserves_flags)) };
        }
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

    fn hardware_random_u64(&self) -> Option<u64> {
        if !self.has_random_number {
            return None;
        }
        // SAFETY: `has_random_number` was read from ID_AA64ISAR0_EL1 (FEAT_RNG present).
        unsafe { read_random_number() }
    }
}
