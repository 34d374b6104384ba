//! The kernel shell on the serial console: line editing, history, and a command registry other subsystems add to.

pub mod arguments;
pub mod builtins;
pub mod line_editor;

use core::fmt::{self, Write};

pub use arguments::Arguments;
use arguments::{split_arguments, MAX_ARGUMENTS};
use line_editor::{EditEvent, LineEditor};

/// The prompt printed before each command line.
pub const PROMPT: &str = "hinoki# ";

/// Why a command did not complete.
#[derive(Debug, PartialEq, Eq)]
pub enum CommandError {
    /// Wrong arguments; the text says what the command accepts.
    Usage(&'static str),
    /// The command ran and failed; the text says why.
    Failed(&'static str),
    /// A named thing (file, test) does not exist.
    NotFound,
}

/// What a command returns.
pub type CommandResult = Result<(), CommandError>;

/// A shell command: its name, a one-line summary for `help`, and its function.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct Command {
    /// What the user types.
    pub name: &'static str,
    /// One line for `help`.
    pub summary: &'static str,
    /// Runs the command; `arguments[0]` is the command name. Output goes to `out`.
    pub run: fn(arguments: &Arguments<'_>, out: &mut dyn Write) -> CommandResult,
}

/// Registers a shell command from any subsystem (collected in a linker section).
///
/// ```ignore
/// shell_command!(LS, "ls", "list a directory", run_ls);
/// ```
#[macro_export]
macro_rules! shell_command {
    ($static_name:ident, $name:expr, $summary:expr, $function:path) => {
        $crate::shell_command!($static_name = $crate::shell::Command { name: $name, summary: $summary, run: $function });
    };
    ($static_name:ident = $command:expr) => {
        #[used]
        #[cfg_attr(target_os = "none", link_section = "shell_commands")]
        static $static_name: $crate::shell::Command = $command;
    };
}

/// Every registered command.
pub fn commands() -> &'static [Command] {
    #[cfg(target_os = "none")]
    {
        extern "C" {
            static __start_shell_commands: u8;
            static __stop_shell_commands: u8;
        }
        // SAFETY: the linker script keeps every `Command` static emitted by
        // `shell_command!` contiguously in `shell_commands` between these symbols; the
        // statics are immutable and of one type.
        unsafe {
            let start = core::ptr::addr_of!(__start_shell_commands).cast::<Command>();
            let stop = core::ptr::addr_of!(__stop_shell_commands).cast::<Command>();
            let count = (stop as usize - start as usize) / core::mem::size_of::<Command>();
            core::slice::from_raw_parts(start, count)
        }
    }
    #[cfg(not(target_os = "none"))]
    {
        builtins::BUILTINS
    }
}

/// Finds a command by name.
pub fn find_command(name: &str) -> Option<&'static Command> {
    commands().iter().find(|command| command.name == name)
}

/// Parses and runs one command line, writing output and any error message to `out`.
pub fn execute(line: &str, out: &mut dyn Write) {
    let mut storage = [""; MAX_ARGUMENTS];
    let mut scratch = [0u8; line_editor::MAX_LINE];
    let arguments = match split_arguments(line, &mut storage, &mut scratch) {
        Ok(arguments) => arguments,
        Err(error) => {
            let _ = writeln!(out, "hinoki: {}", error);
            return;
        }
    };
    let (arguments, redirection) = match crate::fs::commands::split_redirection(arguments) {
        Ok(split) => split,
        Err(message) => {
            let _ = writeln!(out, "hinoki: {}", message);
            return;
        }
    };
    let Some(&name) = arguments.first() else { return };
    let Some(command) = find_command(name) else {
        let _ = writeln!(out, "hinoki: {}: command not found (type 'help' for the list)", name);
        return;
    };
    let result = match redirection {
        None => (command.run)(arguments, out),
        Some(target) => {
            // `> FILE` / `>> FILE`: the command's output goes to the file, errors to `out`.
            let mut captured = alloc::string::String::new();
            let result = (command.run)(arguments, &mut captured);
            if let Err(errno) = crate::fs::commands::write_redirection(target.path, captured.as_bytes(), target.append) {
                let _ = writeln!(out, "hinoki: {}: {}", target.path, errno);
            }
            result
        }
    };
    match result {
        Ok(()) => {}
        Err(CommandError::Usage(usage)) => {
            let _ = writeln!(out, "usage: {}", usage);
        }
        Err(CommandError::Failed(reason)) => {
            let _ = writeln!(out, "{}: {}", name, reason);
        }
        Err(CommandError::NotFound) => {
            let _ = writeln!(out, "{}: not found", name);
        }
    }
}

/// Writes the editor's echo straight to the console.
struct Echo;

impl Write for Echo {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        crate::console::write_raw(text.as_bytes());
        Ok(())
    }
}

/// Writes command output to the console with `\n` -> `\r\n`.
struct Output;

impl Write for Output {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        crate::print!("{}", text);
        Ok(())
    }
}

/// Waits for one byte from the console: asleep until the receive interrupt where the board
/// wired one, polling otherwise (see [`crate::tty::read_byte`]).
fn read_byte() -> u8 {
    crate::tty::read_byte()
}

/// Runs the interactive shell forever.
pub fn run() -> ! {
    crate::println!(
        "\nWelcome to {} {} on {}. Type 'help' for commands.",
        crate::KERNEL_NAME,
        crate::KERNEL_RELEASE,
        crate::platform().board_name()
    );
    let mut editor = LineEditor::new();
    loop {
        crate::print!("{}", PROMPT);
        crate::console::flush_line();
        let line = loop {
            match editor.feed(read_byte(), &mut Echo) {
                EditEvent::Continue => {}
                EditEvent::Cancelled => {
                    crate::print!("{}", PROMPT);
                    crate::console::flush_line();
                }
                EditEvent::Line => break editor.take_line(),
            }
        };
        if cfg!(feature = "defmt") {
            crate::println!("{}{}", PROMPT, line.as_str());
        }
        execute(line.as_str(), &mut Output);
    }
}
