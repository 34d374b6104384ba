//! Kernel panic: message, source location and a frame-pointer backtrace, then a failing exit.
//!
//! Frames are printed as `#N [<0xADDRESS>]`; the xtask resolves the addresses to symbol
//! names from the kernel ELF as it relays the console (Linux's `Call trace:` form).

use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, Ordering};

use hinoki_interface::ExitStatus;

/// Deepest backtrace printed.
pub const MAX_FRAMES: usize = 32;

/// Exit code a panic reports to the host.
pub const PANIC_EXIT_CODE: u32 = 101;

static PANICKING: AtomicBool = AtomicBool::new(false);

/// Walks a chain of frame records `[previous frame pointer, return address]` starting at
/// `frame_pointer` and calls `visit` with each return address inside `text`.
///
/// `read_word` reads one machine word, or returns `None` if the address is not readable.
/// The walk stops at a null, misaligned or non-increasing frame pointer, so a corrupted
/// stack ends the trace instead of faulting or looping.
pub fn walk_frames(
    frame_pointer: usize,
    text: core::ops::Range<usize>,
    read_word: impl Fn(usize) -> Option<usize>,
    mut visit: impl FnMut(usize),
) -> usize {
    let word = core::mem::size_of::<usize>();
    let mut current = frame_pointer;
    let mut frames = 0;
    while frames < MAX_FRAMES && current != 0 && current % word == 0 {
        let (Some(previous), Some(return_address)) = (read_word(current), read_word(current + word)) else {
            break;
        };
        if return_address == 0 {
            break;
        }
        if text.contains(&return_address) {
            visit(return_address);
            frames += 1;
        }
        if previous <= current {
            break;
        }
        current = previous;
    }
    frames
}

/// Handles a panic: the board's `#[panic_handler]` calls this.
pub fn handle_panic(info: &PanicInfo<'_>) -> ! {
    let Some(platform) = crate::try_platform() else {
        // Nothing to print to and no way to exit cleanly: spin. Boards create the platform
        // before anything that can panic.
        loop {
            core::hint::spin_loop();
        }
    };
    if PANICKING.swap(true, Ordering::SeqCst) {
        crate::console::print_arguments_unlocked(format_args!("\npanic while panicking: {}\n", info.message()));
        platform.exit(ExitStatus::Failure(PANIC_EXIT_CODE));
    }
    let _ = platform.cpu().disable_interrupts();
    let cpu = platform.cpu().current_id().0;
    crate::console::print_arguments_unlocked(format_args!("\nKernel panic on CPU {}: {}\n", cpu, info.message()));
    if let Some(location) = info.location() {
        crate::console::print_arguments_unlocked(format_args!("  at {}:{}:{}\n", location.file(), location.line(), location.column()));
    }
    print_backtrace(platform.cpu().frame_pointer());
    crate::console::print_arguments_unlocked(format_args!("---[ end Kernel panic ]---\n"));
    platform.console().flush();
    platform.exit(ExitStatus::Failure(PANIC_EXIT_CODE))
}

/// Prints the call trace starting at `frame_pointer`.
pub fn print_backtrace(frame_pointer: usize) {
    let Some(platform) = crate::try_platform() else { return };
    let text = platform.kernel_text();
    crate::console::print_arguments_unlocked(format_args!("Call trace:\n"));
    let mut index = 0;
    let stack_limit = stack_window(frame_pointer);
    walk_frames(
        frame_pointer,
        text,
        |address| {
            if !stack_limit.contains(&address) {
                return None;
            }
            // The value is only printed, never trusted as a pointer outside the window.
            // SAFETY: `address` is word aligned (checked by the walker) and lies within a
            // window around the current frame pointer on the current, mapped stack.
            Some(unsafe { core::ptr::read_volatile(address as *const usize) })
        },
        |return_address| {
            crate::console::print_arguments_unlocked(format_args!("  #{:<2} [<{:#018x}>]\n", index, return_address));
            index += 1;
        },
    );
    if index == 0 {
        crate::console::print_arguments_unlocked(format_args!("  (no frames)\n"));
    }
}

/// The span of memory a backtrace may read: from the starting frame up to 256 KiB above
/// it, which covers every kernel stack.
fn stack_window(frame_pointer: usize) -> core::ops::Range<usize> {
    frame_pointer..frame_pointer.saturating_add(256 * 1024)
}

#[cfg(test)]
mod tests {
    use super::walk_frames;
    use std::collections::HashMap;

    fn memory(words: &[(usize, usize)]) -> HashMap<usize, usize> {
        words.iter().copied().collect()
    }

    #[test]
    fn follows_a_chain_of_frames() {
        let mem = memory(&[(0x1000, 0x1100), (0x1008, 0x4010), (0x1100, 0x1200), (0x1108, 0x4020), (0x1200, 0), (0x1208, 0x4030)]);
        let mut seen = Vec::new();
        let count = walk_frames(0x1000, 0x4000..0x5000, |a| mem.get(&a).copied(), |ra| seen.push(ra));
        assert_eq!(seen, vec![0x4010, 0x4020, 0x4030]);
        assert_eq!(count, 3);
    }

    #[test]
    fn stops_on_loops_and_unreadable_memory() {
        let looping = memory(&[(0x1000, 0x1000), (0x1008, 0x4010)]);
        let mut seen = Vec::new();
        walk_frames(0x1000, 0x4000..0x5000, |a| looping.get(&a).copied(), |ra| seen.push(ra));
        assert_eq!(seen, vec![0x4010]);
        seen.clear();
        walk_frames(0x2000, 0x4000..0x5000, |_| None, |ra| seen.push(ra));
        assert!(seen.is_empty());
        walk_frames(0x1003, 0x4000..0x5000, |a| looping.get(&a).copied(), |ra| seen.push(ra));
        assert!(seen.is_empty());
    }

    #[test]
    fn skips_addresses_outside_text() {
        let mem = memory(&[(0x1000, 0x1100), (0x1008, 0x9999), (0x1100, 0), (0x1108, 0x4020)]);
        let mut seen = Vec::new();
        walk_frames(0x1000, 0x4000..0x5000, |a| mem.get(&a).copied(), |ra| seen.push(ra));
        assert_eq!(seen, vec![0x4020]);
    }
}
