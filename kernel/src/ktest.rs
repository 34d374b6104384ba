//! In-kernel tests (`ktest`): registered with the [`ktest!`](crate::ktest!) macro into a linker section and run on the booted kernel.
//!
//! Boot with `ktest` on the command line to run the default suite, or `ktest=FILTER` to run
//! the tests whose dotted name starts with one of the comma-separated filters. Tests marked
//! `manual` (deliberate failures, crashes) run only when a filter names them exactly.
//! Output: one `name ... ok` / `name ... FAILED: reason` line per test, then `N passed, N failed`.

use core::fmt::{self, Write};

use hinoki_interface::ExitStatus;

/// The outcome of one test.
pub type TestResult = Result<(), TestFailure>;

/// One registered test. Created by the [`ktest!`](crate::ktest!) macro only.
#[derive(Debug)]
#[repr(C)]
pub struct KernelTest {
    /// `module_path!()` of the test.
    pub module: &'static str,
    /// Function name.
    pub name: &'static str,
    /// The test body.
    pub run: fn() -> TestResult,
    /// Runs only when named exactly (deliberate failures and crashes).
    pub manual: bool,
}

/// Why a test failed: the source location and a short message.
pub struct TestFailure {
    /// File of the failed check.
    pub file: &'static str,
    /// Line of the failed check.
    pub line: u32,
    message: [u8; 192],
    length: usize,
}

impl TestFailure {
    /// A failure at `file:line` with a formatted message (truncated to 192 bytes).
    pub fn new(file: &'static str, line: u32, message: fmt::Arguments<'_>) -> Self {
        let mut failure = TestFailure { file, line, message: [0; 192], length: 0 };
        let _ = failure.write_fmt(message);
        failure
    }

    /// The message text.
    pub fn message(&self) -> &str {
        core::str::from_utf8(&self.message[..self.length]).unwrap_or("(message not UTF-8)")
    }
}

impl Write for TestFailure {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for character in text.chars() {
            let mut encoded = [0u8; 4];
            let bytes = character.encode_utf8(&mut encoded).as_bytes();
            if self.length + bytes.len() > self.message.len() {
                break;
            }
            self.message[self.length..self.length + bytes.len()].copy_from_slice(bytes);
            self.length += bytes.len();
        }
        Ok(())
    }
}

impl fmt::Debug for TestFailure {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}:{}: {}", self.file, self.line, self.message())
    }
}

impl fmt::Display for TestFailure {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, formatter)
    }
}

/// Registers an in-kernel test. The body returns [`TestResult`]; use
/// [`kassert!`](crate::kassert!) and [`kassert_eq!`](crate::kassert_eq!) inside it.
///
/// ```ignore
/// ktest!(fn counter_starts_at_zero() { kassert_eq!(counter(), 0); Ok(()) });
/// ktest!(manual fn deliberate_crash() { ... });
/// ```
#[macro_export]
macro_rules! ktest {
    (fn $name:ident() $body:block) => {
        $crate::ktest!(@register false, $name, $body);
    };
    (manual fn $name:ident() $body:block) => {
        $crate::ktest!(@register true, $name, $body);
    };
    (@register $manual:expr, $name:ident, $body:block) => {
        #[allow(clippy::result_large_err)]
        fn $name() -> $crate::ktest::TestResult $body
        const _: () = {
            #[used]
            #[cfg_attr(target_os = "none", link_section = "ktest_array")]
            static TEST: $crate::ktest::KernelTest = $crate::ktest::KernelTest {
                module: module_path!(),
                name: stringify!($name),
                run: $name,
                manual: $manual,
            };
        };
    };
}

/// Fails the current ktest unless `condition` holds.
#[macro_export]
macro_rules! kassert {
    ($condition:expr) => {
        if !$condition {
            return Err($crate::ktest::TestFailure::new(file!(), line!(), format_args!("assertion failed: {}", stringify!($condition))));
        }
    };
    ($condition:expr, $($message:tt)+) => {
        if !$condition {
            return Err($crate::ktest::TestFailure::new(file!(), line!(), format_args!($($message)+)));
        }
    };
}

/// Fails the current ktest unless the two values are equal.
#[macro_export]
macro_rules! kassert_eq {
    ($left:expr, $right:expr) => {
        match (&$left, &$right) {
            (left, right) => {
                if !(*left == *right) {
                    return Err($crate::ktest::TestFailure::new(
                        file!(),
                        line!(),
                        format_args!("{} == {} failed (left: {:?}, right: {:?})", stringify!($left), stringify!($right), left, right),
                    ));
                }
            }
        }
    };
}

/// Writes a test's dotted name: `hinoki_kernel::printk` + `ring` -> `kernel.printk.ring`,
/// `hinoki_arch_aarch64::mmu` + `x` -> `arch.aarch64.mmu.x`.
pub fn write_dotted_name(out: &mut (impl Write + ?Sized), module: &str, name: &str) -> fmt::Result {
    let module = module.strip_prefix("hinoki_").unwrap_or(module);
    let mut segments = module.split("::");
    if let Some(crate_name) = segments.next() {
        match crate_name.split_once('_') {
            Some((group, rest)) => write!(out, "{}.{}", group, rest)?,
            None => out.write_str(crate_name)?,
        }
    }
    for segment in segments {
        write!(out, ".{}", segment)?;
    }
    write!(out, ".{}", name)
}

/// A fixed buffer holding one dotted name.
struct NameBuffer {
    bytes: [u8; 160],
    length: usize,
}

impl NameBuffer {
    fn of(test: &KernelTest) -> Self {
        let mut buffer = NameBuffer { bytes: [0; 160], length: 0 };
        let _ = write_dotted_name(&mut buffer, test.module, test.name);
        buffer
    }

    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.length]).unwrap_or("?")
    }
}

impl Write for NameBuffer {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let take = text.len().min(self.bytes.len() - self.length);
        self.bytes[self.length..self.length + take].copy_from_slice(&text.as_bytes()[..take]);
        self.length += take;
        Ok(())
    }
}

/// Whether a test with dotted `name` runs under `filter` (see the module documentation).
pub fn selected(name: &str, manual: bool, filter: &str) -> bool {
    if filter.is_empty() {
        return !manual;
    }
    filter.split(',').filter(|f| !f.is_empty()).any(|f| if manual { name == f } else { name.starts_with(f) })
}

/// Every registered test.
pub fn registry() -> &'static [KernelTest] {
    #[cfg(target_os = "none")]
    {
        extern "C" {
            static __start_ktest_array: u8;
            static __stop_ktest_array: u8;
        }
        // SAFETY: the linker script places every `KernelTest` static emitted by `ktest!`
        // contiguously in `ktest_array` and defines these two symbols around it; the
        // statics are immutable and of one type, so the range is a valid slice.
        unsafe {
            let start = core::ptr::addr_of!(__start_ktest_array).cast::<KernelTest>();
            let stop = core::ptr::addr_of!(__stop_ktest_array).cast::<KernelTest>();
            let count = (stop as usize - start as usize) / core::mem::size_of::<KernelTest>();
            core::slice::from_raw_parts(start, count)
        }
    }
    #[cfg(not(target_os = "none"))]
    {
        &[]
    }
}

/// Runs the selected tests, printing one line each and the summary; returns the status the
/// board should exit with.
pub fn run(filter: &str) -> ExitStatus {
    let tests = registry();
    let selected_count = tests.iter().filter(|t| selected(NameBuffer::of(t).as_str(), t.manual, filter)).count();
    crate::println!("ktest: running {} of {} tests (filter '{}')", selected_count, tests.len(), filter);
    let (mut passed, mut failed) = (0u32, 0u32);
    for test in tests {
        let name = NameBuffer::of(test);
        if !selected(name.as_str(), test.manual, filter) {
            continue;
        }
        let started = crate::time::since_boot_nanoseconds();
        let result = (test.run)();
        let elapsed_us = (crate::time::since_boot_nanoseconds() - started) / 1000;
        match result {
            Ok(()) => {
                passed += 1;
                crate::println!("{} ... ok ({} us)", name.as_str(), elapsed_us);
            }
            Err(failure) => {
                failed += 1;
                crate::println!("{} ... FAILED: {}", name.as_str(), failure);
            }
        }
    }
    if selected_count == 0 {
        crate::println!("ktest: no test matches '{}'", filter);
    }
    crate::println!("{} passed, {} failed", passed, failed);
    if failed == 0 && selected_count > 0 {
        ExitStatus::Success
    } else {
        ExitStatus::Failure(1)
    }
}

crate::ktest!(
    fn registry_contains_this_test() {
        let found = registry().iter().any(|t| t.name == "registry_contains_this_test");
        crate::kassert!(found, "the ktest_array section does not hold this test");
        Ok(())
    }
);

crate::ktest!(manual fn deliberate_failure() {
    crate::kassert_eq!(1 + 1, 3);
    Ok(())
});

crate::ktest!(manual fn deliberate_panic() {
    let values = [1, 2, 3];
    let index = crate::time::since_boot_nanoseconds() as usize | 8;
    panic!("deliberate panic from a ktest: index {} into {} values is {}", index, values.len(), values[index % 16]);
});

#[cfg(test)]
mod tests {
    use super::*;

    fn dotted(module: &str, name: &str) -> String {
        let mut out = String::new();
        write_dotted_name(&mut out, module, name).unwrap();
        out
    }

    #[test]
    fn names_are_dotted() {
        assert_eq!(dotted("hinoki_kernel::printk", "ring"), "kernel.printk.ring");
        assert_eq!(dotted("hinoki_arch_aarch64::mmu::tables", "wx"), "arch.aarch64.mmu.tables.wx");
        assert_eq!(dotted("hinoki_kernel", "top"), "kernel.top");
    }

    #[test]
    fn filters_select_by_prefix_and_manual_by_exact_name() {
        assert!(selected("kernel.printk.ring", false, ""));
        assert!(!selected("kernel.ktest.deliberate_failure", true, ""));
        assert!(selected("kernel.printk.ring", false, "kernel.printk"));
        assert!(selected("kernel.printk.ring", false, "arch,kernel"));
        assert!(!selected("kernel.printk.ring", false, "arch"));
        assert!(!selected("kernel.ktest.deliberate_failure", true, "kernel.ktest"));
        assert!(selected("kernel.ktest.deliberate_failure", true, "kernel.ktest.deliberate_failure"));
    }

    #[test]
    fn failure_messages_truncate_safely() {
        let long = "é".repeat(200);
        let failure = TestFailure::new("f.rs", 3, format_args!("{}", long));
        assert!(failure.message().len() <= 192);
        assert!(failure.message().chars().all(|c| c == 'é'));
        assert_eq!(format!("{}", TestFailure::new("f.rs", 3, format_args!("x"))), "f.rs:3: x");
    }

    #[test]
    fn kassert_macros_report_location_and_values() {
        fn check() -> TestResult {
            crate::kassert_eq!(2 + 2, 5);
            Ok(())
        }
        let failure = check().unwrap_err();
        assert!(failure.message().contains("left: 4, right: 5"), "{}", failure.message());
        assert!(failure.file.ends_with("ktest.rs"));
    }
}
