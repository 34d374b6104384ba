//! The defmt global logger: frames go to the platform console, serialized across CPUs with interrupts masked.

use core::sync::atomic::{AtomicBool, Ordering};

use hinoki_interface::InterruptState;

#[defmt::global_logger]
struct ConsoleFrameLogger;

static TAKEN: AtomicBool = AtomicBool::new(false);
static SAVED_INTERRUPTS: crate::sync::SpinLock<Option<InterruptState>> = crate::sync::SpinLock::new(None);
static ENCODER: crate::sync::SpinLock<defmt::Encoder> = crate::sync::SpinLock::new(defmt::Encoder::new());

fn write_console(bytes: &[u8]) {
    if let Some(platform) = crate::try_platform() {
        platform.console().write_bytes(bytes);
    }
}

// SAFETY: `acquire` masks interrupts and takes the `TAKEN` flag, so at most one frame is
// being written at a time on any CPU; `release` undoes both in reverse order. `write` and
// `flush` are only called by defmt between acquire and release, as the trait requires.
unsafe impl defmt::Logger for ConsoleFrameLogger {
    fn acquire() {
        let saved = crate::try_platform().map(|platform| platform.cpu().disable_interrupts());
        while TAKEN.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            core::hint::spin_loop();
        }
        *SAVED_INTERRUPTS.lock() = saved;
        ENCODER.lock().start_frame(write_console);
    }

    unsafe fn flush() {
        if let Some(platform) = crate::try_platform() {
            platform.console().flush();
        }
    }

    unsafe fn release() {
        ENCODER.lock().end_frame(write_console);
        let saved = SAVED_INTERRUPTS.lock().take();
        TAKEN.store(false, Ordering::Release);
        if let (Some(platform), Some(state)) = (crate::try_platform(), saved) {
            platform.cpu().restore_interrupts(state);
        }
    }

    unsafe fn write(bytes: &[u8]) {
        ENCODER.lock().write(bytes, write_console);
    }
}

defmt::timestamp!("{=u64:us}", crate::time::since_boot_nanoseconds() / 1000);

/// A fixed buffer that formats text for one frame, truncating what does not fit.
pub struct FrameText {
    bytes: [u8; 256],
    length: usize,
}

impl FrameText {
    /// An empty buffer.
    pub const fn new() -> Self {
        FrameText { bytes: [0; 256], length: 0 }
    }

    /// The text, cut at a character boundary.
    pub fn as_str(&self) -> &str {
        match core::str::from_utf8(&self.bytes[..self.length]) {
            Ok(text) => text,
            Err(error) => core::str::from_utf8(&self.bytes[..error.valid_up_to()]).unwrap_or(""),
        }
    }
}

impl core::fmt::Write for FrameText {
    fn write_str(&mut self, text: &str) -> core::fmt::Result {
        let take = text.len().min(self.bytes.len() - self.length);
        self.bytes[self.length..self.length + take].copy_from_slice(&text.as_bytes()[..take]);
        self.length += take;
        Ok(())
    }
}

/// Console text waiting for the end of its line.
static PENDING_LINE: crate::sync::IrqSpinLock<FrameText> = crate::sync::IrqSpinLock::new(FrameText::new());

impl FrameText {
    fn clear(&mut self) {
        self.length = 0;
    }

    fn is_empty(&self) -> bool {
        self.length == 0
    }

    fn is_full(&self) -> bool {
        self.length == self.bytes.len()
    }
}

/// Buffers console text and sends one frame per completed line, so pieces written with
/// several `write!` calls arrive as one line on the host.
pub fn print_arguments(arguments: core::fmt::Arguments<'_>) {
    use core::fmt::Write;
    let mut text = FrameText::new();
    let _ = text.write_fmt(arguments);
    let mut pending = PENDING_LINE.lock();
    let mut rest = text.as_str();
    while let Some(newline) = rest.find('\n') {
        let _ = pending.write_str(&rest[..newline]);
        defmt::println!("{=str}", pending.as_str());
        pending.clear();
        rest = &rest[newline + 1..];
    }
    let _ = pending.write_str(rest);
    if pending.is_full() {
        defmt::println!("{=str}", pending.as_str());
        pending.clear();
    }
}

/// Sends a partly written line (a prompt) as a frame now.
pub fn flush_line() {
    let mut pending = PENDING_LINE.lock();
    if !pending.is_empty() {
        defmt::println!("{=str}", pending.as_str());
        pending.clear();
    }
}

/// Sends text as frames without taking the line buffer's lock (the panic path).
pub fn print_arguments_unbuffered(arguments: core::fmt::Arguments<'_>) {
    use core::fmt::Write;
    let mut text = FrameText::new();
    let _ = text.write_fmt(arguments);
    for line in text.as_str().trim_end_matches('\n').split('\n') {
        defmt::println!("{=str}", line);
    }
}

/// Sends a log record as a defmt frame at its level.
pub fn log_record(level: log::Level, arguments: &core::fmt::Arguments<'_>) {
    use core::fmt::Write;
    let mut text = FrameText::new();
    let _ = text.write_fmt(*arguments);
    let message = text.as_str();
    match level {
        log::Level::Error => defmt::error!("{=str}", message),
        log::Level::Warn => defmt::warn!("{=str}", message),
        log::Level::Info => defmt::info!("{=str}", message),
        log::Level::Debug => defmt::debug!("{=str}", message),
        log::Level::Trace => defmt::trace!("{=str}", message),
    }
}
