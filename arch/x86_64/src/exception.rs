//! CPU exceptions: assembly entry stubs for vectors 0-31, the saved register frame, and a register dump for unexpected exceptions.

use core::arch::{asm, global_asm};
use core::fmt;

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
// #CP 21, #VC 29, #SX 30. The other stubs push a zero so the frame has one layout.
// The common path saves the general registers, builds a frame record [rbp, rip] so the
// backtrace runs through the interrupted function, and calls the Rust handler with the
// frame. If the handler returns, the registers are restored and `iretq` resumes.
// Assembled only for the bare-metal target, so the host unit tests link without it.
#[cfg(target_os = "none")]
global_asm!(
    r#"
    .macro EXCEPTION_STUB vector
    .balign 16
exception_stub_\vector:
    .if (\vector == 8) || (\vector >= 10 && \vector <= 14) || (\vector == 17) || (\vector == 21) || (\vector == 29) || (\vector == 30)
    .else
    push    0
    .endif
    push    \vector
    jmp     exception_common
    .endm

    .section .text.exception_stubs, "ax"
    .irp vector, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    EXCEPTION_STUB \vector
    .endr

exception_common:
    push    rax
    push    rbx
    push    rcx
    push    rdx
    push    rsi
    push    rdi
    push    rbp
    push    r8
    push    r9
    push    r10
    push    r11
    push    r12
    push    r13
    push    r14
    push    r15
    mov     rdi, rsp
    push    qword ptr [rsp + 17 * 8]
    push    rbp
    mov     rbp, rsp
    cld
    call    hinoki_x86_64_exception
    add     rsp, 16
    pop     r15
    pop     r14
    pop     r13
    pop     r12
    pop     r11
    pop     r10
    pop     r9
    pop     r8
    pop     rbp
    pop     rdi
    pop     rsi
    pop     rdx
    pop     rcx
    pop     rbx
    pop     rax
    add     rsp, 16
    iretq

    .section .rodata.exception_stubs, "a"
    .balign 8
    .global hinoki_exception_stub_table
hinoki_exception_stub_table:
    .irp vector, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad exception_stub_\vector
    .endr
"#
);

extern "C" {
    static hinoki_exception_stub_table: [usize; EXCEPTION_COUNT];
}

/// Address of the entry stub for exception `vector` (0-31).
pub fn stub_address(vector: usize) -> usize {
    // SAFETY: the table is 32 initialized addresses in read-only data, emitted above.
    unsafe { hinoki_exception_stub_table[vector] }
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
        write!(formatter, ", {}", if code & (1 << 4) != 0 { "instruction fetch" } else if code & (1 << 1) != 0 { "write" } else { "read" })?;
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
        write!(formatter, "unexpected exception {} {} (vector {})", mnemonic, name, frame.vector)?;
        if frame.vector == PAGE_FAULT as u64 {
            write!(formatter, " at address {:#018x}: {}", self.fault_address, PageFaultCode(frame.error_code))?;
        } else if frame.error_code != 0 {
            write!(formatter, ", error code {:#x}", frame.error_code)?;
        }
        writeln!(formatter)?;
        writeln!(formatter, "RIP: {:#06x}:[<{:#018x}>] error: {:#x} cr2: {:#018x}", frame.cs, frame.rip, frame.error_code, self.fault_address)?;
        writeln!(formatter, "RSP: {:#06x}:{:016x} RFLAGS: {:08x}", frame.ss, frame.rsp, frame.rflags)?;
        writeln!(formatter, "RAX: {:016x} RBX: {:016x} RCX: {:016x}", frame.rax, frame.rbx, frame.rcx)?;
        writeln!(formatter, "RDX: {:016x} RSI: {:016x} RDI: {:016x}", frame.rdx, frame.rsi, frame.rdi)?;
        writeln!(formatter, "RBP: {:016x} R08: {:016x} R09: {:016x}", frame.rbp, frame.r8, frame.r9)?;
        writeln!(formatter, "R10: {:016x} R11: {:016x} R12: {:016x}", frame.r10, frame.r11, frame.r12)?;
        writeln!(formatter, "R13: {:016x} R14: {:016x} R15: {:016x}", frame.r13, frame.r14, frame.r15)?;
        Ok(())
    }
}

#[no_mangle]
extern "C" fn hinoki_x86_64_exception(frame: &mut TrapFrame) {
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

    #[test]
    fn vectors_have_names() {
        assert_eq!(exception_name(14), ("#PF", "page fault"));
        assert_eq!(exception_name(8), ("#DF", "double fault"));
        assert_eq!(exception_name(31).0, "#??");
    }
}
