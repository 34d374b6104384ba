//! Context switch on x86_64: saves rbx, rbp, r12-r15, rsp and the resume address of the outgoing thread and loads the incoming one's; starts new threads through a trampoline.
//!
//! Layout of [`SavedContext`] words: 0 rbx, 1 rbp, 2-5 r12-r15, 6 rsp (after the return),
//! 7 the resume address. FP/SIMD is switched eagerly and costs nothing here: the System V
//! ABI has no callee-saved vector registers, so the caller's are dead across the call, and
//! an interrupted thread's vector state is saved by the interrupt entry. The MXCSR and x87
//! control words are not per thread (the kernel never changes them).

use core::arch::global_asm;

use hinoki_interface::{ContextSwitch, SavedContext, ThreadEntry};

global_asm!(
    r#"
    .section .text.context, "ax"
    .global hinoki_x86_64_context_switch
    .balign 16
hinoki_x86_64_context_switch:
    mov     [rdi + 0], rbx
    mov     [rdi + 8], rbp
    mov     [rdi + 16], r12
    mov     [rdi + 24], r13
    mov     [rdi + 32], r14
    mov     [rdi + 40], r15
    pop     rax
    mov     [rdi + 48], rsp
    mov     [rdi + 56], rax
    mov     rbx, [rsi + 0]
    mov     rbp, [rsi + 8]
    mov     r12, [rsi + 16]
    mov     r13, [rsi + 24]
    mov     r14, [rsi + 32]
    mov     r15, [rsi + 40]
    mov     rsp, [rsi + 48]
    jmp     qword ptr [rsi + 56]

    .global hinoki_x86_64_thread_start
    .balign 16
hinoki_x86_64_thread_start:
    mov     rdi, r13
    call    r12
    ud2
"#
);

extern "C" {
    fn hinoki_x86_64_context_switch(from: *mut SavedContext, to: *const SavedContext);
    fn hinoki_x86_64_thread_start();
}

const RBP: usize = 1;
const R12: usize = 2;
const R13: usize = 3;
const STACK_POINTER: usize = 6;
const RESUME: usize = 7;

/// Prepares `context` to start `entry(argument)` on the stack ending at `stack_top`.
pub fn initialize(context: &mut SavedContext, stack_top: usize, entry: ThreadEntry, argument: usize) {
    *context = SavedContext::empty();
    context.words[RBP] = 0;
    context.words[R12] = entry as usize;
    context.words[R13] = argument;
    context.words[STACK_POINTER] = stack_top & !15;
    context.words[RESUME] = hinoki_x86_64_thread_start as *const () as usize;
}

/// The x86_64 context-switch operations, for `Platform::context_switch`.
pub static CONTEXT_SWITCH: ContextSwitch = ContextSwitch { initialize, switch: hinoki_x86_64_context_switch };

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use core::sync::atomic::{AtomicUsize, Ordering};
    use std::boxed::Box;
    use std::vec;

    static mut MAIN: SavedContext = SavedContext::empty();
    static mut THREAD: SavedContext = SavedContext::empty();
    static STEPS: AtomicUsize = AtomicUsize::new(0);
    static ALIGNMENT: AtomicUsize = AtomicUsize::new(usize::MAX);

    extern "C" fn thread_body(argument: usize) -> ! {
        STEPS.fetch_add(argument, Ordering::SeqCst);
        #[repr(align(16))]
        struct Aligned(u8);
        let local = core::hint::black_box(Aligned(1));
        core::hint::black_box(local.0);
        ALIGNMENT.store(&local as *const Aligned as usize % 16, Ordering::SeqCst);
        loop {
            STEPS.fetch_add(1, Ordering::SeqCst);
            // SAFETY: both statics are only touched by this test, one side at a time; MAIN
            // was filled by the switch that started this thread.
            unsafe { (CONTEXT_SWITCH.switch)(&raw mut THREAD, &raw const MAIN) };
        }
    }

    #[test]
    fn switches_to_a_new_thread_and_back_keeping_callee_saved_state() {
        let stack = Box::leak(vec![0u8; 64 * 1024].into_boxed_slice());
        let top = stack.as_ptr() as usize + stack.len();
        // SAFETY: single-threaded use of the test's statics (see thread_body).
        unsafe { (CONTEXT_SWITCH.initialize)(&mut *(&raw mut THREAD), top, thread_body, 100) };
        let kept = core::hint::black_box(0x1234_5678usize);
        for round in 1..=3 {
            // SAFETY: THREAD holds a context made by initialize or saved by the thread's own
            // switch back; its leaked stack lives forever.
            unsafe { (CONTEXT_SWITCH.switch)(&raw mut MAIN, &raw const THREAD) };
            assert_eq!(STEPS.load(Ordering::SeqCst), 100 + round);
        }
        assert_eq!(core::hint::black_box(kept), 0x1234_5678);
        assert_eq!(ALIGNMENT.load(Ordering::SeqCst), 0, "the ABI's 16-byte stack alignment holds in the new thread");
    }
}
