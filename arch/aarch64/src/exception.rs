//! Exception vectors: register save/restore in assembly, ESR decoding, and a register dump for unexpected exceptions.

use core::arch::global_asm;
use core::fmt;

/// Registers saved on exception entry, in the order the assembly stores them.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TrapFrame {
    /// x0 to x30.
    pub registers: [u64; 31],
    /// Stack pointer before the exception.
    pub stack_pointer: u64,
    /// Exception link register: where the exception was taken.
    pub exception_link: u64,
    /// Saved program status.
    pub saved_status: u64,
    /// Exception syndrome.
    pub syndrome: u64,
    /// Fault address (valid for aborts).
    pub fault_address: u64,
}

const FRAME_SIZE: usize = core::mem::size_of::<TrapFrame>();
const _: () = assert!(FRAME_SIZE == 288 && FRAME_SIZE % 16 == 0);

// Sixteen 128-byte slots: {current EL with SP0, current EL with SPx, lower EL AArch64,
// lower EL AArch32} x {synchronous, IRQ, FIQ, SError}. Each slot saves x0/x1 and jumps to
// the common path with its index in x0. The common path saves the general registers as a
// `TrapFrame` and, below it, q0-q31, FPCR and FPSR (528 bytes), because interrupts now
// return to the code they interrupted. Handlers run with IRQs masked (PSTATE.I is set on
// entry), so interrupts do not nest.
global_asm!(
    r#"
    .macro VECTOR index
    .balign 0x80
    sub     sp, sp, #288
    stp     x0, x1, [sp, #0]
    mov     x0, #\index
    b       exception_common
    .endm

    // Synchronous exceptions from EL1 first check that the frame (and the FP/SIMD area
    // below it) can be written where SP points: `at s1e1w` translates the lowest and the
    // highest byte, with x0 parked in SP_EL0 (unused by the kernel, which runs on SP_EL1).
    // A failed translation means SP ran into a guard page: the frame is built on this
    // CPU's emergency stack instead (see `kernel_stack_overflow`).
    .macro VECTOR_STACK_CHECKED index
    .balign 0x80
    msr     sp_el0, x0
    sub     x0, sp, #(288 + 528)
    at      s1e1w, x0
    isb
    mrs     x0, par_el1
    tbnz    x0, #0, kernel_stack_overflow
    mov     x0, sp
    sub     x0, x0, #1
    at      s1e1w, x0
    isb
    mrs     x0, par_el1
    tbnz    x0, #0, kernel_stack_overflow
    mrs     x0, sp_el0
    sub     sp, sp, #288
    stp     x0, x1, [sp, #0]
    mov     x0, #\index
    b       exception_common
    .endm

    .section .text.vectors, "ax"
    .balign 0x800
    .global exception_vectors
exception_vectors:
    VECTOR 0
    VECTOR 1
    VECTOR 2
    VECTOR 3
    VECTOR_STACK_CHECKED 4
    VECTOR 5
    VECTOR 6
    VECTOR 7
    VECTOR 8
    VECTOR 9
    VECTOR 10
    VECTOR 11
    VECTOR 12
    VECTOR 13
    VECTOR 14
    VECTOR 15

    // SP points into a guard page. Keep the overflowed SP in SP_EL0 for the report (x0 is
    // lost), move to this CPU's emergency stack (MPIDR Aff0 & 7 picks one of
    // EMERGENCY_STACK_COUNT), and report it as slot 16.
kernel_stack_overflow:
    mov     x0, sp
    msr     sp_el0, x0
    adrp    x0, hinoki_emergency_stacks
    add     x0, x0, :lo12:hinoki_emergency_stacks
    mov     sp, x0
    mrs     x0, mpidr_el1
    and     x0, x0, #0x7
    add     x0, x0, #1
    lsl     x0, x0, #14
    add     sp, sp, x0
    sub     sp, sp, #288
    stp     x0, x1, [sp, #0]
    mov     x0, #16
    b       exception_common

exception_common:
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x19, [sp, #144]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    add     x2, sp, #288
    stp     x30, x2, [sp, #240]
    mrs     x2, elr_el1
    mrs     x3, spsr_el1
    stp     x2, x3, [sp, #256]
    mrs     x2, esr_el1
    mrs     x3, far_el1
    stp     x2, x3, [sp, #272]
    // FP/SIMD state below the frame: the target generates NEON code, and an interrupt
    // handler may clobber the registers of the code it interrupted.
    sub     sp, sp, #528
    stp     q0, q1, [sp, #16]
    stp     q2, q3, [sp, #48]
    stp     q4, q5, [sp, #80]
    stp     q6, q7, [sp, #112]
    stp     q8, q9, [sp, #144]
    stp     q10, q11, [sp, #176]
    stp     q12, q13, [sp, #208]
    stp     q14, q15, [sp, #240]
    stp     q16, q17, [sp, #272]
    stp     q18, q19, [sp, #304]
    stp     q20, q21, [sp, #336]
    stp     q22, q23, [sp, #368]
    stp     q24, q25, [sp, #400]
    stp     q26, q27, [sp, #432]
    stp     q28, q29, [sp, #464]
    stp     q30, q31, [sp, #496]
    mrs     x2, fpcr
    mrs     x3, fpsr
    stp     x2, x3, [sp, #0]
    mov     x1, x0
    add     x0, sp, #528
    bl      hinoki_aarch64_exception
    ldp     x2, x3, [sp, #0]
    msr     fpcr, x2
    msr     fpsr, x3
    ldp     q0, q1, [sp, #16]
    ldp     q2, q3, [sp, #48]
    ldp     q4, q5, [sp, #80]
    ldp     q6, q7, [sp, #112]
    ldp     q8, q9, [sp, #144]
    ldp     q10, q11, [sp, #176]
    ldp     q12, q13, [sp, #208]
    ldp     q14, q15, [sp, #240]
    ldp     q16, q17, [sp, #272]
    ldp     q18, q19, [sp, #304]
    ldp     q20, q21, [sp, #336]
    ldp     q22, q23, [sp, #368]
    ldp     q24, q25, [sp, #400]
    ldp     q26, q27, [sp, #432]
    ldp     q28, q29, [sp, #464]
    ldp     q30, q31, [sp, #496]
    add     sp, sp, #528
    ldp     x2, x3, [sp, #256]
    msr     elr_el1, x2
    msr     spsr_el1, x3
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldp     x18, x19, [sp, #144]
    ldp     x20, x21, [sp, #160]
    ldp     x22, x23, [sp, #176]
    ldp     x24, x25, [sp, #192]
    ldp     x26, x27, [sp, #208]
    ldp     x28, x29, [sp, #224]
    ldr     x30, [sp, #240]
    ldp     x0, x1, [sp, #0]
    add     sp, sp, #288
    eret
"#
);

/// Where an exception came from and what kind it is (the vector slot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VectorSlot(pub u64);

/// Size of each CPU's emergency stack (`1 << 14`, as the vector code computes it).
pub const EMERGENCY_STACK_SIZE: usize = 16 * 1024;
/// Number of emergency stacks (CPUs with MPIDR Aff0 0-7; higher ones share modulo 8).
pub const EMERGENCY_STACK_COUNT: usize = 8;

#[repr(C, align(16))]
struct EmergencyStacks([[u8; EMERGENCY_STACK_SIZE]; EMERGENCY_STACK_COUNT]);

/// Stacks a synchronous exception moves to when SP is in a guard page. Only the vector
/// code touches them (through the symbol), never Rust code.
#[export_name = "hinoki_emergency_stacks"]
static mut EMERGENCY_STACKS: EmergencyStacks = EmergencyStacks([[0; EMERGENCY_STACK_SIZE]; EMERGENCY_STACK_COUNT]);

impl VectorSlot {
    /// The pseudo-slot of a synchronous exception taken with SP in a guard page.
    pub const KERNEL_STACK_OVERFLOW: VectorSlot = VectorSlot(16);

    /// `"synchronous"`, `"IRQ"`, `"FIQ"` or `"SError"`.
    pub fn kind(self) -> &'static str {
        ["synchronous", "IRQ", "FIQ", "SError"][(self.0 % 4) as usize]
    }

    /// `"EL1 with SP0"`, `"EL1"`, `"EL0 (AArch64)"` or `"EL0 (AArch32)"`; the stack-overflow
    /// pseudo-slot reports `"EL1"`.
    pub fn origin(self) -> &'static str {
        if self == Self::KERNEL_STACK_OVERFLOW {
            return "EL1";
        }
        ["EL1 with SP0", "EL1", "EL0 (AArch64)", "EL0 (AArch32)"][((self.0 / 4) % 4) as usize]
    }
}

/// The decoded exception class of an ESR value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExceptionClass {
    /// EC 0x00: unknown reason, including undefined instructions.
    Undefined,
    /// EC 0x07: FP/SIMD access trapped.
    FloatingPointTrap,
    /// EC 0x15: SVC from AArch64 (reserved for system calls).
    SupervisorCall,
    /// EC 0x20/0x21: instruction abort from a lower / the current EL.
    InstructionAbort {
        /// From EL0.
        lower: bool,
    },
    /// EC 0x22: PC alignment fault.
    PcAlignment,
    /// EC 0x24/0x25: data abort from a lower / the current EL.
    DataAbort {
        /// From EL0.
        lower: bool,
    },
    /// EC 0x26: SP alignment fault.
    SpAlignment,
    /// EC 0x2f: SError.
    SystemError,
    /// EC 0x3c: BRK instruction.
    Breakpoint,
    /// Any other class.
    Other(u8),
}

impl ExceptionClass {
    /// Decodes bits [31:26] of ESR_EL1.
    pub fn from_syndrome(syndrome: u64) -> Self {
        match ((syndrome >> 26) & 0x3f) as u8 {
            0x00 => ExceptionClass::Undefined,
            0x07 => ExceptionClass::FloatingPointTrap,
            0x15 => ExceptionClass::SupervisorCall,
            0x20 => ExceptionClass::InstructionAbort { lower: true },
            0x21 => ExceptionClass::InstructionAbort { lower: false },
            0x22 => ExceptionClass::PcAlignment,
            0x24 => ExceptionClass::DataAbort { lower: true },
            0x25 => ExceptionClass::DataAbort { lower: false },
            0x26 => ExceptionClass::SpAlignment,
            0x2f => ExceptionClass::SystemError,
            0x3c => ExceptionClass::Breakpoint,
            other => ExceptionClass::Other(other),
        }
    }
}

/// Describes the fault status code (DFSC/IFSC, ISS bits [5:0]) of an abort.
pub fn fault_status_name(status: u64) -> &'static str {
    match status & 0x3f {
        0x00..=0x03 => "address size fault",
        0x04..=0x07 => "translation fault",
        0x09..=0x0b => "access flag fault",
        0x0d..=0x0f => "permission fault",
        0x10 => "synchronous external abort",
        0x21 => "alignment fault",
        0x30 => "TLB conflict abort",
        _ => "other fault",
    }
}

/// A human-readable report of an exception: the cause and a full register dump.
pub struct ExceptionReport<'a> {
    /// The saved registers.
    pub frame: &'a TrapFrame,
    /// The vector slot taken.
    pub slot: VectorSlot,
}

impl fmt::Display for ExceptionReport<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let frame = self.frame;
        let class = ExceptionClass::from_syndrome(frame.syndrome);
        if self.slot == VectorSlot::KERNEL_STACK_OVERFLOW {
            writeln!(formatter, "kernel stack overflow: sp {:#018x} ran into a guard page (x0 not saved)", frame.stack_pointer)?;
        }
        write!(formatter, "unexpected {} exception from {}: ", self.slot.kind(), self.slot.origin())?;
        match class {
            ExceptionClass::DataAbort { .. } => {
                let write = frame.syndrome & (1 << 6) != 0;
                write!(
                    formatter,
                    "data abort ({}) on {} of address {:#018x}",
                    fault_status_name(frame.syndrome),
                    if write { "write" } else { "read" },
                    frame.fault_address
                )?;
            }
            ExceptionClass::InstructionAbort { .. } => write!(
                formatter,
                "instruction abort ({}) executing address {:#018x}",
                fault_status_name(frame.syndrome),
                frame.fault_address
            )?,
            ExceptionClass::Undefined => write!(formatter, "undefined instruction")?,
            ExceptionClass::Other(code) => write!(formatter, "exception class {:#04x}", code)?,
            other => write!(formatter, "{:?}", other)?,
        }
        writeln!(formatter)?;
        writeln!(formatter, "pc : [<{:#018x}>] esr: {:#010x} far: {:#018x}", frame.exception_link, frame.syndrome, frame.fault_address)?;
        writeln!(
            formatter,
            "lr : [<{:#018x}>] sp : {:#018x} pstate: {:#010x}",
            frame.registers[30], frame.stack_pointer, frame.saved_status
        )?;
        for row in (0..30).step_by(3).rev() {
            for index in (row..row + 3).rev() {
                write!(formatter, "x{:<2}: {:016x}  ", index, frame.registers[index])?;
            }
            writeln!(formatter)?;
        }
        Ok(())
    }
}

/// A handler the kernel installs for interrupts (IRQ vector slots). Returns after handling.
pub type InterruptHandler = fn(&mut TrapFrame);

static INTERRUPT_HANDLER: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// Installs the function called for IRQs taken from EL1 or EL0.
pub fn set_interrupt_handler(handler: InterruptHandler) {
    INTERRUPT_HANDLER.store(handler as usize, core::sync::atomic::Ordering::Release);
}

static BREAKPOINT_HANDLER: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// The `brk` immediate the breakpoint handler answers (`brk #0x4b42`); every other `brk`
/// (Rust's aborts among them) stays an unexpected exception.
pub const HANDLED_BREAKPOINT: u16 = 0x4b42;

/// Installs the function called for `brk #HANDLED_BREAKPOINT` executed at EL1; execution
/// then resumes after the `brk`. Without one, it is reported as an unexpected exception.
pub fn set_breakpoint_handler(handler: InterruptHandler) {
    BREAKPOINT_HANDLER.store(handler as usize, core::sync::atomic::Ordering::Release);
}

/// The system counter at the latest IRQ entry and how many IRQs were entered, per CPU
/// (slot = logical id), for latency and jitter measurements.
static IRQ_ENTRY_COUNTER: [core::sync::atomic::AtomicU64; crate::smp::MAX_CPUS] =
    [const { core::sync::atomic::AtomicU64::new(0) }; crate::smp::MAX_CPUS];
static IRQ_ENTRIES: [core::sync::atomic::AtomicU64; crate::smp::MAX_CPUS] =
    [const { core::sync::atomic::AtomicU64::new(0) }; crate::smp::MAX_CPUS];

fn current_cpu_slot() -> usize {
    crate::smp::this_cpu()
        .map_or(0, |per_cpu| per_cpu.id.load(core::sync::atomic::Ordering::Relaxed) as usize)
        .min(crate::smp::MAX_CPUS - 1)
}

/// The calling CPU's latest IRQ entry: (system counter when the Rust dispatcher started,
/// IRQs entered so far).
pub fn last_irq_entry() -> (u64, u64) {
    let cpu = current_cpu_slot();
    let entries = IRQ_ENTRIES[cpu].load(core::sync::atomic::Ordering::Acquire);
    (IRQ_ENTRY_COUNTER[cpu].load(core::sync::atomic::Ordering::Relaxed), entries)
}

#[no_mangle]
extern "C" fn hinoki_aarch64_exception(frame: &mut TrapFrame, slot: u64) {
    let slot = VectorSlot(slot);
    if slot == VectorSlot::KERNEL_STACK_OVERFLOW {
        // The vector code parked the overflowed SP in SP_EL0; x0 was overwritten.
        let overflowed: u64;
        // SAFETY: reading SP_EL0 at EL1 (SPSel = 1) has no side effects.
        unsafe { core::arch::asm!("mrs {}, sp_el0", out(reg) overflowed, options(nomem, nostack, preserves_flags)) };
        frame.stack_pointer = overflowed;
        frame.registers[0] = 0;
    }
    if slot.kind() == "IRQ" {
        let cpu = current_cpu_slot();
        IRQ_ENTRY_COUNTER[cpu].store(crate::generic_timer::physical_count(), core::sync::atomic::Ordering::Relaxed);
        IRQ_ENTRIES[cpu].fetch_add(1, core::sync::atomic::Ordering::Release);
        let handler = INTERRUPT_HANDLER.load(core::sync::atomic::Ordering::Acquire);
        if handler != 0 {
            // SAFETY: the only non-zero value ever stored is an `InterruptHandler` function
            // pointer, written by `set_interrupt_handler`.
            let handler: InterruptHandler = unsafe { core::mem::transmute::<usize, InterruptHandler>(handler) };
            handler(frame);
            return;
        }
    }
    if slot.kind() == "synchronous"
        && slot.origin() == "EL1"
        && ExceptionClass::from_syndrome(frame.syndrome) == ExceptionClass::Breakpoint
        && frame.syndrome & 0xffff == HANDLED_BREAKPOINT as u64
    {
        let handler = BREAKPOINT_HANDLER.load(core::sync::atomic::Ordering::Acquire);
        if handler != 0 {
            // SAFETY: the only non-zero value ever stored is an `InterruptHandler` function
            // pointer, written by `set_breakpoint_handler`.
            let handler: InterruptHandler = unsafe { core::mem::transmute::<usize, InterruptHandler>(handler) };
            handler(frame);
            // ELR points at the `brk`: resume after it.
            frame.exception_link += 4;
            return;
        }
    }
    panic!("{}", ExceptionReport { frame, slot });
}
