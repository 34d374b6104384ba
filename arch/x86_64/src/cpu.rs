//! CPU operations on x86_64: the logical id from the per-CPU block, interrupt masking through RFLAGS.IF, HLT, PAUSE, the frame pointer, CPUID and the brand string.

use core::arch::asm;
use core::arch::x86_64::{__cpuid, __cpuid_count, CpuidResult};

use hinoki_interface::{Cpu, CpuId, InterruptState};

/// RFLAGS.IF, the interrupt-enable flag.
pub const INTERRUPT_FLAG: usize = 1 << 9;

/// The x86_64 implementation of [`Cpu`].
pub struct X86Cpu {
    model: [u8; 48],
    model_length: usize,
    has_rdseed: bool,
    has_rdrand: bool,
}

/// Whether the CPU has RDRAND (CPUID.01H:ECX[30]).
pub fn has_rdrand() -> bool {
    cpuid(1).ecx & (1 << 30) != 0
}

/// Whether the CPU has RDSEED (CPUID.(EAX=07H,ECX=0):EBX[18]).
pub fn has_rdseed() -> bool {
    cpuid(0).eax >= 7 && __cpuid_count(7, 0).ebx & (1 << 18) != 0
}

/// Tries RDSEED (or RDRAND when `seed` is false) up to 10 times, as Intel advises for
/// transient underflow; `None` if every try reported failure (CF clear).
///
/// # Safety
/// The CPU must implement the instruction ([`has_rdseed`] / [`has_rdrand`]); otherwise it
/// raises #UD.
pub unsafe fn read_random_number(seed: bool) -> Option<u64> {
    for _ in 0..10 {
        let value: u64;
        let succeeded: u8;
        if seed {
            // SAFETY: the caller promises RDSEED exists; it writes a register and CF only.
            unsafe { asm!("rdseed {value}", "setc {ok}", value = out(reg) value, ok = out(reg_byte) succeeded, options(nomem, nostack)) };
        } else {
            // SAFETY: the caller promises RDRAND exists; it writes a register and CF only.
            unsafe { asm!("rdrand {value}", "setc {ok}", value = out(reg) value, ok = out(reg_byte) succeeded, options(nomem, nostack)) };
        }
        if succeeded != 0 {
            return Some(value);
        }
        core::hint::spin_loop();
    }
    None
}

/// Runs CPUID `leaf` with sub-leaf 0.
pub fn cpuid(leaf: u32) -> CpuidResult {
    __cpuid(leaf)
}

/// Whether a hypervisor runs this CPU (CPUID.01H:ECX[31]); its TSC is then synthesized
/// (QEMU's TCG derives it from the host's invariant TSC).
pub fn under_hypervisor() -> bool {
    cpuid(1).ecx & (1 << 31) != 0
}

/// Reads RFLAGS.
pub fn flags() -> usize {
    let value: usize;
    // SAFETY: PUSHFQ/POP only move RFLAGS through this function's stack.
    unsafe { asm!("pushfq", "pop {}", out(reg) value, options(nomem, preserves_flags)) };
    value
}

/// Copies the CPUID brand string (leaves 0x80000002-4) into `buffer`, trimmed of NULs and
/// surrounding spaces, and returns the used length; 0 when the CPU has no brand string.
pub fn brand_string(buffer: &mut [u8; 48]) -> usize {
    if cpuid(0x8000_0000).eax < 0x8000_0004 {
        return 0;
    }
    let mut raw = [0u8; 48];
    for (index, leaf) in (0x8000_0002u32..=0x8000_0004).enumerate() {
        let result = cpuid(leaf);
        for (word_index, word) in [result.eax, result.ebx, result.ecx, result.edx].iter().enumerate() {
            let at = index * 16 + word_index * 4;
            raw[at..at + 4].copy_from_slice(&word.to_le_bytes());
        }
    }
    let text_end = raw.iter().position(|&byte| byte == 0).unwrap_or(raw.len());
    let trimmed = raw[..text_end].trim_ascii();
    buffer[..trimmed.len()].copy_from_slice(trimmed);
    trimmed.len()
}

impl X86Cpu {
    /// Reads the model from CPUID on the calling CPU.
    pub fn new() -> Self {
        let mut model = [0u8; 48];
        let mut model_length = brand_string(&mut model);
        if core::str::from_utf8(&model[..model_length]).is_err() || model_length == 0 {
            let unknown = b"unknown x86_64 CPU";
            model[..unknown.len()].copy_from_slice(unknown);
            model_length = unknown.len();
        }
        X86Cpu { model, model_length, has_rdseed: has_rdseed(), has_rdrand: has_rdrand() }
    }
}

impl Default for X86Cpu {
    fn default() -> Self {
        Self::new()
    }
}

impl Cpu for X86Cpu {
    fn current_id(&self) -> CpuId {
        CpuId(crate::percpu::this_cpu().cpu_id())
    }

    fn online_count(&self) -> u32 {
        crate::percpu::online_count()
    }

    fn idle(&self) {
        // SAFETY: STI takes effect after the next instruction, so no interrupt can arrive
        // between it and HLT: a wake-up after the caller's check still ends the HLT.
        unsafe { asm!("sti", "hlt", options(nomem, nostack)) };
    }

    fn disable_interrupts(&self) -> InterruptState {
        let state: usize;
        // SAFETY: saving RFLAGS and clearing IF only affects this CPU's interrupt delivery.
        unsafe { asm!("pushfq", "pop {}", "cli", out(reg) state, options(nomem)) };
        InterruptState(state & INTERRUPT_FLAG)
    }

    fn restore_interrupts(&self, state: InterruptState) {
        if state.0 & INTERRUPT_FLAG != 0 {
            self.enable_interrupts();
        }
    }

    fn enable_interrupts(&self) {
        // SAFETY: the IDT is installed before any board runs, so interrupts are reported.
        unsafe { asm!("sti", options(nomem, nostack)) };
    }

    fn interrupts_enabled(&self) -> bool {
        flags() & INTERRUPT_FLAG != 0
    }

    fn wait_for_interrupt(&self) {
        if self.interrupts_enabled() {
            // SAFETY: HLT pauses this CPU until the next interrupt; interrupts are enabled,
            // so it wakes up again.
            unsafe { asm!("hlt", options(nomem, nostack, preserves_flags)) };
        } else {
            // With IF clear HLT would never return: return spuriously instead.
            core::hint::spin_loop();
        }
    }

    fn relax(&self) {
        core::hint::spin_loop();
    }

    #[inline(never)]
    fn frame_pointer(&self) -> usize {
        let frame_pointer: usize;
        // SAFETY: this function is never inlined and, built with frame pointers, pushes the
        // caller's rbp at [rbp]; reading it is a load from this function's live stack frame.
        unsafe { asm!("mov {}, [rbp]", out(reg) frame_pointer, options(readonly, nostack, preserves_flags)) };
        frame_pointer
    }

    fn model(&self) -> &str {
        core::str::from_utf8(&self.model[..self.model_length]).unwrap_or("unknown")
    }

    fn hardware_random_u64(&self) -> Option<u64> {
        // SAFETY: each instruction is used only when CPUID reported it at construction.
        unsafe {
            if self.has_rdseed {
                if let Some(value) = read_random_number(true) {
                    return Some(value);
                }
            }
            if self.has_rdrand {
                return read_random_number(false);
            }
        }
        None
    }
}
