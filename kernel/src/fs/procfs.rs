//! The procfs registry: subsystems register `/proc` files as functions that print their contents.
//!
//! The owning subsystem registers each file (irq owns `interrupts`, slab owns `slabinfo`).
//! The shell's `cat` reads them through [`read`] now; the VFS will mount the same registry.

pub mod filesystem;

use core::fmt::{self, Write};

use crate::sync::IrqSpinLock;

/// Prints a file's current contents.
pub type ShowFunction = fn(out: &mut dyn Write) -> fmt::Result;

/// Most files the registry holds.
pub const MAX_FILES: usize = 64;

/// Why registering or reading a file failed.
#[derive(Debug, PartialEq, Eq)]
pub enum ProcError {
    /// No file has that name.
    NotFound,
    /// A file with that name is registered already.
    Exists,
    /// The registry is full.
    Full,
    /// The name is empty, has a `/` or is too long.
    InvalidName,
}

/// A fixed-capacity table of named files.
pub struct Registry {
    files: [Option<(&'static str, ShowFunction)>; MAX_FILES],
}

impl Registry {
    /// An empty registry.
    pub const fn new() -> Self {
        Registry { files: [None; MAX_FILES] }
    }

    /// Adds `name` (relative to `/proc`, e.g. `"interrupts"` or `"sys/kernel/ostype"`).
    pub fn register(&mut self, name: &'static str, show: ShowFunction) -> Result<(), ProcError> {
        if name.is_empty() || name.len() > 64 || name.starts_with('/') || name.ends_with('/') || name.contains("//") {
            return Err(ProcError::InvalidName);
        }
        if self.files.iter().flatten().any(|(existing, _)| *existing == name) {
            return Err(ProcError::Exists);
        }
        let slot = self.files.iter_mut().find(|slot| slot.is_none()).ok_or(ProcError::Full)?;
        *slot = Some((name, show));
        Ok(())
    }

    /// Finds the show function of `path` (`/proc/NAME`, or `NAME` relative to `/proc`).
    pub fn lookup(&self, path: &str) -> Option<ShowFunction> {
        let name = path.strip_prefix("/proc/").unwrap_or(path);
        self.files.iter().flatten().find(|(existing, _)| *existing == name).map(|(_, show)| *show)
    }

    /// Calls `visit` with every registered name.
    pub fn for_each_name(&self, mut visit: impl FnMut(&'static str)) {
        self.files.iter().flatten().for_each(|(name, _)| visit(name));
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

static REGISTRY: IrqSpinLock<Registry> = IrqSpinLock::new(Registry::new());

/// Registers a `/proc` file.
pub fn register(name: &'static str, show: ShowFunction) -> Result<(), ProcError> {
    REGISTRY.lock().register(name, show)
}

/// Prints the contents of `path` to `out`. The registry lock is not held while printing.
pub fn read(path: &str, out: &mut dyn Write) -> Result<(), ProcError> {
    let show = REGISTRY.lock().lookup(path).ok_or(ProcError::NotFound)?;
    show(out).map_err(|_| ProcError::NotFound)
}

/// Calls `visit` with every registered file name.
pub fn for_each_name(visit: impl FnMut(&'static str)) {
    REGISTRY.lock().for_each_name(visit);
}

/// Prints one file of a task's directory (`/proc/<id>/status`); `None` when the task is gone.
pub type TaskShowFunction = fn(task: u64, out: &mut dyn Write) -> Option<fmt::Result>;

/// Where the per-task directories `/proc/<id>/` come from: the scheduler registers itself
/// (Linux's `fs/proc/base.c` reads the task list the same way).
#[derive(Clone, Copy)]
pub struct TaskDirectories {
    /// Calls the visitor with the id of every task that has a directory, in increasing order.
    pub for_each_id: fn(&mut dyn FnMut(u64)),
    /// Whether task `id` has a directory now.
    pub exists: fn(u64) -> bool,
    /// The calling task's id, the target of `/proc/self`; `None` when there is no current task.
    pub current: fn() -> Option<u64>,
    /// The files of each task's directory.
    pub files: &'static [(&'static str, TaskShowFunction)],
}

static TASK_DIRECTORIES: IrqSpinLock<Option<TaskDirectories>> = IrqSpinLock::new(None);

/// Makes `/proc/<id>/` directories appear for the tasks `directories` describes (a second
/// call replaces the first).
pub fn register_task_directories(directories: TaskDirectories) {
    *TASK_DIRECTORIES.lock() = Some(directories);
}

/// The registered task directories, if any.
pub fn task_directories() -> Option<TaskDirectories> {
    *TASK_DIRECTORIES.lock()
}

fn show_version(out: &mut dyn Write) -> fmt::Result {
    writeln!(out, "{} version {} (rustc, {}) #1 SMP", crate::KERNEL_NAME, crate::KERNEL_RELEASE, crate::platform().board_name())
}

fn show_cmdline(out: &mut dyn Write) -> fmt::Result {
    writeln!(out, "{}", crate::platform().command_line())
}

/// Registers the files the core kernel owns.
pub fn register_core_files() {
    for (name, show) in [("version", show_version as ShowFunction), ("cmdline", show_cmdline)] {
        if let Err(error) = register(name, show) {
            log::warn!("procfs: cannot register {}: {:?}", name, error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(out: &mut dyn Write) -> fmt::Result {
        writeln!(out, "hello")
    }

    #[test]
    fn registers_and_reads() {
        let mut registry = Registry::new();
        registry.register("greeting", hello).unwrap();
        let mut out = String::new();
        (registry.lookup("/proc/greeting").unwrap())(&mut out).unwrap();
        assert_eq!(out, "hello\n");
        assert!(registry.lookup("greeting").is_some());
        assert!(registry.lookup("/proc/missing").is_none());
    }

    #[test]
    fn refuses_duplicates_bad_names_and_overflow() {
        let mut registry = Registry::new();
        registry.register("a", hello).unwrap();
        assert_eq!(registry.register("a", hello), Err(ProcError::Exists));
        assert_eq!(registry.register("", hello), Err(ProcError::InvalidName));
        assert_eq!(registry.register("/abs", hello), Err(ProcError::InvalidName));
        let names: Vec<&'static str> = (0..MAX_FILES).map(|i| &*Box::leak(format!("f{i}").into_boxed_str())).collect();
        let mut result = Ok(());
        for name in names {
            result = registry.register(name, hello);
        }
        assert_eq!(result, Err(ProcError::Full));
    }
}
