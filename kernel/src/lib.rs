//! Hinoki's portable kernel: boot sequence, console, logging, shell, tests and subsystems.
//!
//! The kernel reaches hardware only through the [`hinoki_interface::Platform`] a board hands
//! to [`kernel_main`]. It is `no_std` and builds for the host, where `cargo test` runs the
//! unit tests of everything that is plain logic.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

extern crate alloc;

pub mod block;
pub mod console;
#[cfg(feature = "defmt")]
pub mod defmt_logger;
pub mod errno;
pub mod fs;
pub mod irq;
pub mod ktest;
pub mod lockdep;
pub mod mm;
pub mod panic;
pub mod printk;
pub mod random;
pub mod rcu;
pub mod sched;
pub mod shell;
pub mod smp;
pub mod softirq;
pub mod sync;
pub mod tick;
pub mod time;
pub mod tty;
pub mod workqueue;

use hinoki_interface::{Cpu, Platform};
use sync::Once;

/// Kernel name, as `uname -s` prints it.
pub const KERNEL_NAME: &str = "Hinoki";
/// Kernel release, as `uname -r` prints it.
pub const KERNEL_RELEASE: &str = env!("CARGO_PKG_VERSION");
/// Host name, as `uname -n` prints it.
pub const NODE_NAME: &str = "hinoki";

static PLATFORM: Once<&'static dyn Platform> = Once::new();
/// The platform's CPU operations, kept apart from [`PLATFORM`] so hot paths (the CPU index,
/// interrupt masking) make one indirect call instead of two.
static CPU: Once<&'static dyn Cpu> = Once::new();

/// The kernel heap: `alloc` collections use the slab caches and, for large requests, the
/// buddy allocator. Bare-metal builds only; host tests keep the system allocator.
#[cfg(target_os = "none")]
#[global_allocator]
static KERNEL_HEAP: mm::KernelAllocator = mm::KernelAllocator::new();

/// The platform the board registered. Panics (before the console exists) if called before
/// [`kernel_main`], which would be a bug in a board's early code.
pub fn platform() -> &'static dyn Platform {
    *PLATFORM.get().expect("platform() called before kernel_main")
}

/// The platform, or `None` this early in boot.
pub fn try_platform() -> Option<&'static dyn Platform> {
    PLATFORM.get().copied()
}

/// The platform's CPU operations (`try_platform()?.cpu()`, one call cheaper), or `None`
/// this early in boot.
#[inline]
pub fn try_cpu() -> Option<&'static dyn Cpu> {
    CPU.get().copied()
}

/// What the kernel does after boot, chosen from the command line.
#[derive(Debug, PartialEq, Eq)]
enum BootMode<'a> {
    /// Run the interactive shell.
    Shell,
    /// Run in-kernel tests matching the filter (empty: the default suite), then exit.
    Test(&'a str),
}

fn boot_mode(command_line: &str) -> BootMode<'_> {
    for word in command_line.split_ascii_whitespace() {
        if word == "ktest" {
            return BootMode::Test("");
        }
        if let Some(filter) = word.strip_prefix("ktest=") {
            return BootMode::Test(filter);
        }
    }
    BootMode::Shell
}

/// Registers the platform and starts the kernel log, so a board can log what it found
/// before calling [`kernel_main`]. Calling it again has no effect.
pub fn early_init(platform: &'static dyn Platform) {
    if PLATFORM.get().is_some() {
        return;
    }
    PLATFORM.call_once(|| platform);
    CPU.call_once(|| platform.cpu());
    time::mark_boot();
    printk::init();
    lockdep::init(platform.command_line());
}

/// The portable kernel entry point. A board calls it once, on the boot CPU, after the
/// arch crate has set up a stack, cleared BSS and made the console usable.
pub fn kernel_main(platform: &'static dyn Platform) -> ! {
    early_init(platform);
    log::info!("{} {} ({}) on {}, {}", KERNEL_NAME, KERNEL_RELEASE, platform.arch_name(), platform.board_name(), platform.cpu().model());
    log::info!("command line: {}", platform.command_line());
    log::info!("clocksource {} at {} Hz", platform.clock().name(), platform.clock().frequency_hz());
    time::real_time::init();
    let mut total_usable = 0u64;
    platform.memory_regions(&mut |region| {
        log::info!("memory: [{:#012x}-{:#012x}] {:?}", region.start.0, region.end().saturating_sub(1), region.kind);
        if region.kind == hinoki_interface::MemoryKind::Usable {
            total_usable += region.size;
        }
    });
    log::info!("memory: {} KiB usable", total_usable / 1024);
    let config = mm::BuddyConfig { direct_map_offset: 0, dma32: platform.dma32_zone() };
    // SAFETY: the Platform contract (hinoki_interface::Platform::memory_regions) promises
    // that Usable regions not covered by other regions are unused RAM, identity-mapped at
    // this point of boot; nothing has allocated from them yet.
    match unsafe { mm::init_from_platform(platform, &[], config) } {
        Ok(()) => log::info!("mm: page allocator and slab caches ready"),
        Err(error) => log::error!("mm: cannot initialize memory management: {:?}", error),
    }
    platform.paging_init();
    mm::register_proc_files();
    fs::procfs::register_core_files();
    lockdep::register_proc_files();
    irq::init();
    smp::init();

    sched::init();
    if sched::is_running() {
        softirq::init();
    }
    softirq::register_proc_files();
    time::init();
    rcu::init();
    if sched::is_running() {
        workqueue::init();
    }
    if let Err(error) = fs::root::init_root() {
        log::error!("vfs: cannot mount the root file system: {}", error);
    }
    if sched::is_running() {
        if let Err(error) = fs::root::start_writeback_thread() {
            log::error!("vfs: cannot start the write-back thread: {:?}", error);
        }
    }

    let mode = boot_mode(platform.command_line());
    let name = if matches!(mode, BootMode::Test(_)) { "ktest" } else { "shell" };
    sched::run_as_thread(name, move || {
        platform.init_devices();
        fs::root::mount_boot_disk();
        run_mode(platform, mode)
    })
}

fn run_mode(platform: &'static dyn Platform, mode: BootMode<'_>) -> usize {
    match mode {
        BootMode::Test(filter) => {
            let status = ktest::run(filter);
            platform.console().flush();
            platform.exit(status)
        }
        BootMode::Shell => {
            let clock = platform.clock();
            let in_kernel = clock.counter().saturating_sub(time::boot_counter());
            log::info!(
                "boot: {} us from kernel entry to the shell",
                hinoki_interface::clock::counter_to_nanoseconds(in_kernel, clock.frequency_hz()) / 1000
            );
            shell::run()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_mode_from_command_line() {
        assert_eq!(boot_mode(""), BootMode::Shell);
        assert_eq!(boot_mode("console=ttyAMA0 quiet"), BootMode::Shell);
        assert_eq!(boot_mode("ktest"), BootMode::Test(""));
        assert_eq!(boot_mode("quiet ktest=selftest"), BootMode::Test("selftest"));
        assert_eq!(boot_mode("ktestx"), BootMode::Shell);
    }
}
