//! Context switch on aarch64: saves x19-x30, sp and d8-d15 of the outgoing thread and loads the incoming one's; starts new threads through a trampoline.
//!
//! Layout of [`SavedContext`] words: 0-10 x19-x29, 11 x30 (the resume address), 12 sp,
//! 13-20 d8-d15. FP/SIMD is switched eagerly: d8-d15 are the callee-saved part of the
//! vector registers (AAPCS64); the caller-saved ones are dead across the call, and an
//! interrupted thread's full vector state is saved by the exception entry. FPCR and FPSR
//! are not per thread (the kernel never changes the rounding mode or reads the flags).

use core::arch::global_asm;

use hinoki_interface::{ContextSwitch, SavedContext, ThreadEntry};

global_asm!(
    r#"
    .section .text.context, "ax"
    .global hinoki_aarch64_context_switch
    .balign 16
hinoki_aarch64_context_switch:
    stp     x19, x20, [x0, #0]
    stp     x21, x22, [x0, #16]
    stp     x23, x24, [x0, #32]
    stp     x25, x26, [x0, #48]
    stp     x27, x28, [x0, #64]
    stp     x29, x30, [x0, #80]
    mov     x9, sp
    str     x9, [x0, #96]
    stp     d8, d9, [x0, #104]
    stp     d10, d11, [x0, #120]
    stp     d12, d13, [x0, #136]
    stp     d14, d15, [x0, #152]
    ldp     x19, x20, [x1, #0]
    ldp     x21, x22, [x1, #16]
    ldp     x23, x24, [x1, #32]
    ldp     x25, x26, [x1, #48]
    ldp     x27, x28, [x1, #64]
    ldp     x29, x30, [x1, #80]
    ldr     x9, [x1, #96]
    mov     sp, x9
    ldp     d8, d9, [x1, #104]
    ldp     d10, d11, [x1, #120]
    ldp     d12, d13, [x1, #136]
    ldp     d14, d15, [x1, #152]
    ret

    .global hinoki_aarch64_thread_start
    .balign 16
hinoki_aarch64_thread_start:
    mov     x0, x20
    blr     x19
    brk     #0x5e
"#
);

extern "C" {
    fn hinoki_aarch64_context_switch(from: *mut SavedContext, to: *const SavedContext);
    fn hinoki_aarch64_thread_start();
}

const X19: usize = 0;
const X20: usize = 1;
const X29: usize = 10;
const X30: usize = 11;
const STACK_POINTER: usize = 12;

/// Prepares `context` to start `entry(argument)` on the stack ending at `stack_top`.
pub fn initialize(context: &mut SavedContext, stack_top: usize, entry: ThreadEntry, argument: usize) {
    *context = SavedContext::empty();
    context.words[X19] = entry as usize;
    context.words[X20] = argument;
    context.words[X29] = 0;
    context.words[X30] = hinoki_aarch64_thread_start as *const () as usize;
    context.words[STACK_POINTER] = stack_top & !15;
}

/// The aarch64 context-switch operations, for `Platform::context_switch`.
pub static CONTEXT_SWITCH: ContextSwitch = ContextSwitch { initialize, switch: hinoki_aarch64_context_switch };
