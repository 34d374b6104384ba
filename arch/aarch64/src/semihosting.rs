//! ARM semihosting, used only to end a QEMU run with an exit status (`-semihosting`).

use core::arch::asm;

const SYS_EXIT: u64 = 0x18;
const ADP_STOPPED_APPLICATION_EXIT: u64 = 0x20026;

/// Asks the debugger or QEMU to end the run with `code`. Without semihosting enabled on
/// the host, the HLT instruction is undefined and raises an exception instead.
pub fn exit(code: u32) {
    let block = [ADP_STOPPED_APPLICATION_EXIT, code as u64];
    // SAFETY: the semihosting call reads the two-word parameter block, which lives on this
    // stack frame for the duration of the call.
    unsafe {
        asm!("hlt #0xf000", inout("x0") SYS_EXIT => _, in("x1") block.as_ptr(), options(nostack, readonly));
    }
}
