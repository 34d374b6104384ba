//! Context switch: the saved registers of a suspended kernel thread and the two operations an arch supplies to start and switch threads.
//!
//! Floating point: every thread's FP/SIMD state is switched eagerly. A switch is a
//! function call, so the compiler already treats the caller-saved vector registers as
//! clobbered; the arch saves the callee-saved part (d8-d15 on aarch64; x86_64 has no
//! callee-saved vector registers, and the MXCSR/x87 control words are saved too) in
//! [`SavedContext`]. State live in any register at an interrupt is saved by the interrupt
//! entry, on the interrupted thread's stack, before the kernel may switch away from it.

/// The callee-saved state of a thread that is not running, laid out by the arch crate
/// (aarch64: x19-x29, the resume address, sp, d8-d15, FPCR; x86_64: rbx, rbp, r12-r15,
/// rsp, the resume address, MXCSR and the x87 control word). Opaque to the kernel.
#[repr(C, align(16))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SavedContext {
    /// Register values in the arch's layout.
    pub words: [usize; SAVED_CONTEXT_WORDS],
}

/// Capacity of [`SavedContext`] in machine words.
pub const SAVED_CONTEXT_WORDS: usize = 24;

impl SavedContext {
    /// An all-zero context: valid only as the `from` of a switch, which fills it.
    pub const fn empty() -> Self {
        SavedContext { words: [0; SAVED_CONTEXT_WORDS] }
    }
}

impl Default for SavedContext {
    fn default() -> Self {
        Self::empty()
    }
}

/// Where a new thread starts: called once, on its own stack, with the argument given to
/// [`ContextSwitch::initialize`]; it never returns.
pub type ThreadEntry = extern "C" fn(argument: usize) -> !;

/// The arch's context-switch operations, handed to the kernel by the board through
/// [`crate::Platform::context_switch`].
#[derive(Clone, Copy, Debug)]
pub struct ContextSwitch {
    /// Fills `context` so that switching to it calls `entry(argument)` with the stack
    /// pointer at `stack_top` (the exclusive end of the stack, 16-byte aligned), with
    /// interrupts as they were at the switch.
    pub initialize: fn(context: &mut SavedContext, stack_top: usize, entry: ThreadEntry, argument: usize),
    /// Saves the calling thread's callee-saved registers in `from` and resumes the thread
    /// saved in `to`; returns when another switch resumes `from`.
    ///
    /// Safety contract for callers: `from` and `to` point to valid, distinct contexts that
    /// stay in place until the switch back; `to` was filled by `initialize` or by an earlier
    /// switch away from it, its stack is alive, and no other CPU resumes it concurrently.
    pub switch: unsafe extern "C" fn(from: *mut SavedContext, to: *const SavedContext),
}
