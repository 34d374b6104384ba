//! Console output: `print!`/`println!`, newline translation and cross-CPU serialization.

use core::fmt::{self, Write};

use crate::sync::IrqSpinLock;

static CONSOLE_LOCK: IrqSpinLock<()> = IrqSpinLock::new(());

/// Writes to the platform console, turning `\n` into `\r\n`.
pub struct ConsoleWriter;

impl Write for ConsoleWriter {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        write_translated(text.as_bytes());
        Ok(())
    }
}

fn write_translated(bytes: &[u8]) {
    let Some(platform) = crate::try_platform() else { return };
    let console = platform.console();
    for chunk in bytes.split_inclusive(|&b| b == b'\n') {
        if let Some(line) = chunk.strip_suffix(b"\n") {
            console.write_bytes(line);
            console.write_bytes(b"\r\n");
        } else {
            console.write_bytes(chunk);
        }
    }
}

/// Writes raw bytes (no translation), e.g. terminal control sequences. With the `defmt`
/// feature the console carries only frames, so raw echo is dropped (the shell prints each
/// accepted command line instead).
pub fn write_raw(bytes: &[u8]) {
    if cfg!(feature = "defmt") {
        return;
    }
    let _guard = CONSOLE_LOCK.lock();
    if let Some(platform) = crate::try_platform() {
        platform.console().write_bytes(bytes);
    }
}

/// Writes bytes under the console lock with `\n` turned into `\r\n` (a tty's output
/// processing), for `/dev/console`.
pub fn write_bytes(bytes: &[u8]) {
    if cfg!(feature = "defmt") {
        if let Ok(text) = core::str::from_utf8(bytes) {
            print_arguments(format_args!("{}", text));
        }
        return;
    }
    let _guard = CONSOLE_LOCK.lock();
    write_translated(bytes);
}

/// Formats to the console under the console lock, so lines from several CPUs do not mix.
pub fn print_arguments(arguments: fmt::Arguments<'_>) {
    #[cfg(feature = "defmt")]
    {
        crate::defmt_logger::print_arguments(arguments);
        return;
    }
    #[allow(unreachable_code)]
    let _guard = CONSOLE_LOCK.lock();
    let _ = ConsoleWriter.write_fmt(arguments);
}

/// Formats to the console without taking the lock: for the panic path, where the lock may
/// be held by the code that panicked.
pub fn print_arguments_unlocked(arguments: fmt::Arguments<'_>) {
    #[cfg(feature = "defmt")]
    {
        crate::defmt_logger::print_arguments_unbuffered(arguments);
        return;
    }
    #[allow(unreachable_code)]
    let _ = ConsoleWriter.write_fmt(arguments);
}

/// Sends a partly written line (such as a prompt) to the host now. Only the defmt console
/// buffers lines; on a plain UART every byte is already out.
pub fn flush_line() {
    #[cfg(feature = "defmt")]
    crate::defmt_logger::flush_line();
}

/// Prints to the kernel console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::print_arguments(format_args!($($arg)*)) };
}

/// Prints a line to the kernel console.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::console::print_arguments(format_args!("{}\n", format_args!($($arg)*))) };
}
