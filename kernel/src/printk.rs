//! Kernel log: the `log` facade's backend, timestamped lines on the console and in a ring buffer that `dmesg` prints.

use core::fmt::{self, Write};

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::sync::IrqSpinLock;

/// Capacity of the kernel log ring buffer in bytes.
pub const LOG_BUFFER_SIZE: usize = 32 * 1024;

/// A byte ring that keeps the newest `N` bytes of text.
pub struct LogRing<const N: usize> {
    bytes: [u8; N],
    /// Total bytes ever written; the write position is `written % N`.
    written: u64,
}

impl<const N: usize> LogRing<N> {
    /// An empty ring.
    pub const fn new() -> Self {
        LogRing { bytes: [0; N], written: 0 }
    }

    /// Appends bytes, overwriting the oldest when full.
    pub fn push(&mut self, data: &[u8]) {
        for &byte in data {
            self.bytes[(self.written % N as u64) as usize] = byte;
            self.written += 1;
        }
    }

    /// Calls `visit` with the retained text in order, oldest first. After a wrap the first,
    /// partly overwritten line is skipped so that output starts on a line boundary.
    pub fn for_each_chunk(&self, mut visit: impl FnMut(&[u8])) {
        if self.written <= N as u64 {
            visit(&self.bytes[..self.written as usize]);
            return;
        }
        let start = (self.written % N as u64) as usize;
        let (older, newer) = (&self.bytes[start..], &self.bytes[..start]);
        match older.iter().position(|&b| b == b'\n') {
            Some(newline) => {
                visit(&older[newline + 1..]);
                visit(newer);
            }
            None => match newer.iter().position(|&b| b == b'\n') {
                Some(newline) => visit(&newer[newline + 1..]),
                None => visit(newer),
            },
        }
    }

    /// Total bytes ever written.
    pub fn total_written(&self) -> u64 {
        self.written
    }
}

impl<const N: usize> Default for LogRing<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Write for LogRing<N> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.push(text.as_bytes());
        Ok(())
    }
}

static LOG_BUFFER: IrqSpinLock<LogRing<LOG_BUFFER_SIZE>> = IrqSpinLock::new(LogRing::new());

struct KernelLogger;

static LOGGER: KernelLogger = KernelLogger;

/// Formats a log line the way `dmesg` shows it: `[    1.234567] message`.
pub fn format_line(out: &mut impl Write, nanoseconds: u64, level: Level, message: &fmt::Arguments<'_>) -> fmt::Result {
    let seconds = nanoseconds / 1_000_000_000;
    let micros = (nanoseconds % 1_000_000_000) / 1000;
    let prefix = match level {
        Level::Error => "error: ",
        Level::Warn => "warning: ",
        _ => "",
    };
    writeln!(out, "[{:5}.{:06}] {}{}", seconds, micros, prefix, message)
}

impl Log for KernelLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let now = crate::time::since_boot_nanoseconds();
        {
            let mut ring = LOG_BUFFER.lock();
            let _ = format_line(&mut *ring, now, record.level(), record.args());
        }
        #[cfg(feature = "defmt")]
        crate::defmt_logger::log_record(record.level(), record.args());
        #[cfg(not(feature = "defmt"))]
        if record.level() <= console_level() {
            crate::console::print_arguments(format_args!("{}", LineArguments(now, record)));
        }
    }

    fn flush(&self) {}
}

#[cfg_attr(feature = "defmt", allow(dead_code))]
struct LineArguments<'a>(u64, &'a Record<'a>);

impl fmt::Display for LineArguments<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        format_line(formatter, self.0, self.1.level(), self.1.args())
    }
}

static CONSOLE_LEVEL: IrqSpinLock<Level> = IrqSpinLock::new(Level::Info);

#[cfg_attr(feature = "defmt", allow(dead_code))]
fn console_level() -> Level {
    *CONSOLE_LEVEL.lock()
}

/// Parses `loglevel=` from the command line: `error`, `warn`, `info`, `debug`, `trace`,
/// or Linux's numbers (3 error ... 7 debug).
pub fn parse_level(value: &str) -> Option<Level> {
    Some(match value {
        "error" | "0" | "1" | "2" | "3" => Level::Error,
        "warn" | "4" => Level::Warn,
        "info" | "5" | "6" => Level::Info,
        "debug" | "7" => Level::Debug,
        "trace" | "8" => Level::Trace,
        _ => return None,
    })
}

/// Installs the logger; console verbosity comes from `loglevel=` on the command line.
pub fn init() {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(LevelFilter::Debug);
    }
    if let Some(platform) = crate::try_platform() {
        let level = platform.command_line().split_ascii_whitespace().find_map(|word| word.strip_prefix("loglevel=")).and_then(parse_level);
        if let Some(level) = level {
            *CONSOLE_LEVEL.lock() = level;
        }
    }
}

/// Calls `visit` with the kernel log's text, oldest first (what `dmesg` prints).
pub fn for_each_log_chunk(visit: impl FnMut(&[u8])) {
    LOG_BUFFER.lock().for_each_chunk(visit);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect<const N: usize>(ring: &LogRing<N>) -> String {
        let mut text = Vec::new();
        ring.for_each_chunk(|chunk| text.extend_from_slice(chunk));
        String::from_utf8(text).unwrap()
    }

    #[test]
    fn keeps_everything_until_full() {
        let mut ring = LogRing::<16>::new();
        ring.push(b"one\ntwo\n");
        assert_eq!(collect(&ring), "one\ntwo\n");
    }

    #[test]
    fn drops_oldest_whole_lines_after_wrap() {
        let mut ring = LogRing::<16>::new();
        ring.push(b"first line\nsecond\nthird\n");
        assert_eq!(collect(&ring), "second\nthird\n");
        assert_eq!(ring.total_written(), 24);
    }

    #[test]
    fn formats_like_dmesg() {
        let mut out = String::new();
        format_line(&mut out, 1_234_567_890, Level::Info, &format_args!("hello {}", 7)).unwrap();
        assert_eq!(out, "[    1.234567] hello 7\n");
        out.clear();
        format_line(&mut out, 5_000, Level::Error, &format_args!("bad")).unwrap();
        assert_eq!(out, "[    0.000005] error: bad\n");
    }

    #[test]
    fn parses_levels() {
        assert_eq!(parse_level("debug"), Some(Level::Debug));
        assert_eq!(parse_level("4"), Some(Level::Warn));
        assert_eq!(parse_level("loud"), None);
    }
}
