//! Traps: assembly entry stubs for all 256 vectors, the saved register frame, a register dump for unexpected exceptions, and dispatch of vectors 32-255 to the board's interrupt handler.

use core::arch::asm;
#[cfg(target_os = "none")]
use core::arch::global_asm;
use core::fmt;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Number of architecturally defined exception vectors.
pub const EXCEPTION_COUNT: usize = 32;
/// Vector of the non-maskable interrupt.
pub const NON_MASKABLE_INTERRUPT: usize = 2;
/// Vector of the breakpoint exception (`int3`).
pub const BREAKPOINT: usize = 3;
/// Vector of the double fault.
pub const DOUBLE_FAULT: usize = 8;
/// Vector of the general-protection fault.
pub const GENERAL_PROTECTION: usize = 13;
/// Vector of the page fault.
pub const PAGE_FAULT: usize = 14;
/// Vector of the machine-check exception.
pub const MACHINE_CHECK: usize = 18;

/// Registers saved on entry, lowest address first, as the stubs push them.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TrapFrame {
    /// r15 down to r8, then rbp, rdi, rsi, rdx, rcx, rbx, rax.
    pub r15: u64,
    /// r14.
    pub r14: u64,
    /// r13.
    pub r13: u64,
    /// r12.
    pub r12: u64,
    /// r11.
    pub r11: u64,
    /// r10.
    pub r10: u64,
    /// r9.
    pub r9: u64,
    /// r8.
    pub r8: u64,
    /// rbp.
    pub rbp: u64,
    /// rdi.
    pub rdi: u64,
    /// rsi.
    pub rsi: u64,
    /// rdx.
    pub rdx: u64,
    /// rcx.
    pub rcx: u64,
    /// rbx.
    pub rbx: u64,
    /// rax.
    pub rax: u64,
    /// The vector number the stub pushed.
    pub vector: u64,
    /// The CPU's error code, or 0 for vectors without one.
    pub error_code: u64,
    /// Where the exception was taken (pushed by the CPU).
    pub rip: u64,
    /// Code segment.
    pub cs: u64,
    /// Flags.
    pub rflags: u64,
    /// Stack pointer before the exception.
    pub rsp: u64,
    /// Stack segment.
    pub ss: u64,
}

const _: () = assert!(core::mem::size_of::<TrapFrame>() == 22 * 8);

// Vectors that push an error code: #DF 8, #TS 10, #NP 11, #SS 12, #GP 13, #PF 14, #AC 17,
// #CP 21, #VC 29, #SX 30. The other stubs push a zero so the frame has one layout. Every
// one of the 256 stubs is STUB_SIZE bytes (`.org` fails the build if one grows), so a
// vector's stub is at `hinoki_interrupt_stubs + vector * STUB_SIZE`.
// The common path saves the general registers, builds a frame record [rbp, rip] so the
// backtrace runs through the interrupted function, and calls the Rust dispatcher with the
// frame. When it returns, the registers are restored and `iretq` resumes.
// Assembled only for the bare-metal target, so the host unit tests link without it.
#[cfg(target_os = "none")]
global_asm!(
    r#"
    .section .text.interrupt_stubs, "ax"
    .balign 16
    .global hinoki_interrupt_stubs
hinoki_interrupt_stubs:
    .set vector, 0
    .rept 256
    .if (vector == 8) || (vector >= 10 && vector <= 14) || (vector == 17) || (vector == 21) || (vector == 29) || (vector == 30)
    .else
    pushq   $0
    .endif
    pushq   $vector
    jmp     interrupt_common
    .org hinoki_interrupt_stubs + (vector + 1) * 16
    .set vector, vector + 1
    .endr

interrupt_common:
    pushq   %rax
    pushq   %rbx
    pushq   %rcx
    pushq   %rdx
    pushq   %rsi
    pushq   %rdi
    pushq   %rbp
    pushq   %r8
    pushq   %r9
    pushq   %r10
    pushq   %r11
    pushq   %r12
    pushq   %r13
    pushq   %r14
    pushq   %r15
    movq    %rsp, %rdi
    pushq   17 * 8(%rsp)
    pushq   %rbp
    movq    %rsp, %rbp
    cld
    call    hinoki_x86_64_trap
    addq    $16, %rsp
    popq    %r15
    popq    %r14
    popq    %r13
    popq    %r12
    popq    %r11
    popq    %r10
    popq    %r9
    popq    %r8
    popq    %rbp
    popq    %rdi
    popq    %rsi
    popq    %rdx
    popq    %rcx
    popq    %rbx
    popq    %rax
    addq    $16, %rsp
    iretq
"#,
    options(att_syntax)
);

/// Bytes per entry stub.
pub const STUB_SIZE: usize = 16;
/// Number of IDT vectors, each with a stub.
pub const VECTOR_COUNT: usize = 256;

#[cfg(target_os = "none")]
extern "C" {
    static hinoki_interrupt_stubs: [u8; STUB_SIZE * VECTOR_COUNT];
}

/// Address of the entry stub for `vector` (0-255).
#[cfg(target_os = "none")]
pub fn stub_address(vector: usize) -> usize {
    core::ptr::addr_of!(hinoki_interrupt_stubs) as usize + (vector % VECTOR_COUNT) * STUB_SIZE
}

/// Address of the entry stub for `vector` (host builds have no stubs).
#[cfg(not(target_os = "none"))]
pub fn stub_address(vector: usize) -> usize {
    (vector % VECTOR_COUNT) * STUB_SIZE
}

/// Handles external interrupts (vectors 32-255): called with interrupts masked, with the
/// vector recorded for [`crate::percpu::current_vector`].
pub type InterruptHandler = fn(frame: &mut TrapFrame);

/// Handles `#BP` (`int3`) and returns to the instruction after it.
pub type BreakpointHandler = fn(frame: &mut TrapFrame);

static INTERRUPT_HANDLER: AtomicUsize = AtomicUsize::new(0);
static BREAKPOINT_HANDLER: AtomicUsize = AtomicUsize::new(0);
static UNHANDLED_INTERRUPTS: AtomicU64 = AtomicU64::new(0);

/// Installs the handler of vectors 32-255 (the board's, which calls the kernel's IRQ layer).
pub fn set_interrupt_handler(handler: InterruptHandler) {
    INTERRUPT_HANDLER.store(handler as usize, Ordering::Release);
}

/// Installs a handler for `#BP`; without one, `int3` is an unexpected exception.
pub fn set_breakpoint_handler(handler: BreakpointHandler) {
    BREAKPOINT_HANDLER.store(handler as usize, Ordering::Release);
}

/// External interrupts taken before a handler was installed (ignored).
pub fn unhandled_interrupts() -> u64 {
    UNHANDLED_INTERRUPTS.load(Ordering::Relaxed)
}

fn load_handler(slot: &AtomicUsize) -> Option<fn(&mut TrapFrame)> {
    let handler = slot.load(Ordering::Acquire);
    if handler == 0 {
        return None;
    }
    // SAFETY: the only non-zero values ever stored are `fn(&mut TrapFrame)` pointers, written
    // by `set_interrupt_handler` and `set_breakpoint_handler`.
    Some(unsafe { core::mem::transmute::<usize, fn(&mut TrapFrame)>(handler) })
}

/// The mnemonic and name of exception `vector`.
pub fn exception_name(vector: u64) -> (&'static str, &'static str) {
    match vector {
        0 => ("#DE", "divide error"),
        1 => ("#DB", "debug"),
        2 => ("NMI", "non-maskable interrupt"),
        3 => ("#BP", "breakpoint"),
        4 => ("#OF", "overflow"),
        5 => ("#BR", "bound range exceeded"),
        6 => ("#UD", "invalid opcode"),
        7 => ("#NM", "device not available"),
        8 => ("#DF", "double fault"),
        9 => ("#MF", "coprocessor segment overrun"),
        10 => ("#TS", "invalid TSS"),
        11 => ("#NP", "segment not present"),
        12 => ("#SS", "stack-segment fault"),
        13 => ("#GP", "general protection fault"),
        14 => ("#PF", "page fault"),
        16 => ("#MF", "x87 floating-point error"),
        17 => ("#AC", "alignment check"),
        18 => ("#MC", "machine check"),
        19 => ("#XM", "SIMD floating-point exception"),
        20 => ("#VE", "virtualization exception"),
        21 => ("#CP", "control protection exception"),
        28 => ("#HV", "hypervisor injection exception"),
        29 => ("#VC", "VMM communication exception"),
        30 => ("#SX", "security exception"),
        _ => ("#??", "reserved exception"),
    }
}

/// Decoded page-fault error code bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageFaultCode(pub u64);

impl fmt::Display for PageFaultCode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = self.0;
        write!(formatter, "{}", if code & 1 != 0 { "protection violation" } else { "page not present" })?;
        write!(
            formatter,
            ", {}",
            if code & (1 << 4) != 0 {
                "instruction fetch"
            } else if code & (1 << 1) != 0 {
                "write"
            } else {
                "read"
            }
        )?;
        write!(formatter, ", {} mode", if code & (1 << 2) != 0 { "user" } else { "supervisor" })?;
        if code & (1 << 3) != 0 {
            write!(formatter, ", reserved bit set")?;
        }
        if code & (1 << 5) != 0 {
            write!(formatter, ", protection key")?;
        }
        if code & (1 << 6) != 0 {
            write!(formatter, ", shadow stack")?;
        }
        Ok(())
    }
}

/// Reads CR2, the faulting linear address of the last page fault.
pub fn fault_address() -> u64 {
    let value: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

/// The guard page a supervisor page fault hit, if it looks like a kernel-stack overflow:
/// a not-present fault within the 4 KiB below or the 64 KiB above the stack pointer
/// (pushes and calls fault just below RSP; a large frame may move RSP into the guard
/// first). Page faults run on their own IST stack, so this is reported, not re-faulted.
pub fn stack_overflow_guard(frame: &TrapFrame, fault_address: u64) -> Option<u64> {
    const PAGE_SIZE: u64 = 4096;
    let supervisor_not_present = frame.error_code & 0b101 == 0;
    let near_stack_pointer = fault_address.wrapping_sub(frame.rsp.wrapping_sub(PAGE_SIZE)) < PAGE_SIZE + 64 * 1024;
    (frame.vector == PAGE_FAULT as u64 && supervisor_not_present && near_stack_pointer).then_some(fault_address & !(PAGE_SIZE - 1))
}

/// A human-readable report of an exception: the cause and a full register dump.
pub struct ExceptionReport<'a> {
    /// The saved registers.
    pub frame: &'a TrapFrame,
    /// CR2 at entry (meaningful for page faults).
    pub fault_address: u64,
}

impl fmt::Display for ExceptionReport<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let frame = self.frame;
        let (mnemonic, name) = exception_name(frame.vector);
        if let Some(guard) = stack_overflow_guard(frame, self.fault_address) {
            writeln!(formatter, "kernel stack overflow: rsp {:#018x} ran into the guard page at {:#018x}", frame.rsp, guard)?;
        }
        write!(formatter, "unexpected exception {} {} (vector {})", mnemonic, name, frame.vector)?;
        if frame.vector == PAGE_FAULT as u64 {
            write!(formatter, " at address {:#018x}: {}", self.fault_address, PageFaultCode(frame.error_code))?;
        } else if frame.error_code != 0 {
            write!(formatter, ", error code {:#x}", frame.error_code)?;
        }
        writeln!(formatter)?;
        writeln!(
            formatter,
            "RIP: {:#06x}:[<{:#018x}>] error: {:#x} cr2: {:#018x}",
            frame.cs, frame.rip, frame.error_code, self.fault_address
        )?;
        writeln!(formatter, "RSP: {:#06x}:{:016x} RFLAGS: {:08x}", frame.ss, frame.rsp, frame.rflags)?;
        writeln!(formatter, "RAX: {:016x} RBX: {:016x} RCX: {:016x}", frame.rax, frame.rbx, frame.rcx)?;
        writeln!(formatter, "RDX: {:016x} RSI: {:016x} RDI: {:016x}", frame.rdx, frame.rsi, frame.rdi)?;
        writeln!(formatter, "RBP: {:016x} R08: {:016x} R09: {:016x}", frame.rbp, frame.r8, frame.r9)?;
        writeln!(formatter, "R10: {:016x} R11: {:016x} R12: {:016x}", frame.r10, frame.r11, frame.r12)?;
        writeln!(formatter, "R13: {:016x} R14: {:016x} R15: {:016x}", frame.r13, frame.r14, frame.r15)?;
        Ok(())
    }
}

/// The dispatcher every stub calls: exceptions are reported (and fail the kernel), except
/// `#BP` with a handler installed; vectors 32-255 go to the interrupt handler.
#[no_mangle]
extern "C" fn hinoki_x86_64_trap(frame: &mut TrapFrame) {
    if frame.vector >= EXCEPTION_COUNT as u64 {
        let entry_tsc = crate::tsc::read();
        let previous = crate::percpu::enter_interrupt(frame.vector as u8, entry_tsc);
        match load_handler(&INTERRUPT_HANDLER) {
            Some(handler) => handler(frame),
            None => {
                UNHANDLED_INTERRUPTS.fetch_add(1, Ordering::Relaxed);
            }
        }
        crate::percpu::leave_interrupt(previous);
        return;
    }
    if frame.vector == BREAKPOINT as u64 {
        if let Some(handler) = load_handler(&BREAKPOINT_HANDLER) {
            handler(frame);
            return;
        }
    }
    let fault_address = fault_address();
    panic!("{}", ExceptionReport { frame, fault_address });
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::format;

    #[test]
    fn page_fault_codes_are_decoded() {
        assert_eq!(format!("{}", PageFaultCode(0b0010)), "page not present, write, supervisor mode");
        assert_eq!(format!("{}", PageFaultCode(0b1_0001)), "protection violation, instruction fetch, supervisor mode");
        assert_eq!(format!("{}", PageFaultCode(0b1100)), "page not present, read, user mode, reserved bit set");
    }

    fn page_fault(error_code: u64, rsp: u64) -> TrapFrame {
        let mut frame: TrapFrame = zeroed_frame();
        frame.vector = PAGE_FAULT as u64;
        frame.error_code = error_code;
        frame.rsp = rsp;
        frame
    }

    fn zeroed_frame() -> TrapFrame {
        TrapFrame {
            r15: 0,
            r14: 0,
            r13: 0,
            r12: 0,
            r11: 0,
            r10: 0,
            r9: 0,
            r8: 0,
            rbp: 0,
            rdi: 0,
            rsi: 0,
            rdx: 0,
            rcx: 0,
            rbx: 0,
            rax: 0,
            vector: 0,
            error_code: 0,
            rip: 0,
            cs: 0,
            rflags: 0,
            rsp: 0,
            ss: 0,
        }
    }

    #[test]
    fn stack_overflows_are_told_from_other_page_faults() {
        // A push just below RSP into a not-present page.
        assert_eq!(stack_overflow_guard(&page_fault(0b010, 0x20_1008), 0x20_1000), Some(0x20_1000));
        assert_eq!(stack_overflow_guard(&page_fault(0b010, 0x20_2000), 0x20_1ff8), Some(0x20_1000));
        // RSP already inside the guard page.
        assert_eq!(stack_overflow_guard(&page_fault(0b010, 0x20_1800), 0x20_1900), Some(0x20_1000));
        // A write to read-only memory, a user fault, or an address far from RSP: no.
        assert_eq!(stack_overflow_guard(&page_fault(0b011, 0x20_2000), 0x20_1ff8), None);
        assert_eq!(stack_overflow_guard(&page_fault(0b110, 0x20_2000), 0x20_1ff8), None);
        assert_eq!(stack_overflow_guard(&page_fault(0b010, 0x20_2000), 0x4000_0000), None);
        assert_eq!(stack_overflow_guard(&page_fault(0b010, 0x20_2000), 0x10_0000), None);
    }

    #[test]
    fn vectors_have_names() {
        assert_eq!(exception_name(14), ("#PF", "page fault"));
        assert_eq!(exception_name(8), ("#DF", "double fault"));
        assert_eq!(exception_name(31).0, "#??");
    }
}
