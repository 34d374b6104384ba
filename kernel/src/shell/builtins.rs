//! The shell's built-in commands: help, uname, echo, uptime, dmesg, cat, ktest, poweroff, reboot.

use core::fmt::Write;

use super::{Arguments, Command, CommandError, CommandResult};

const HELP: Command = Command { name: "help", summary: "list the commands", run: help };
const UNAME: Command = Command { name: "uname", summary: "print system information (-a, -s, -n, -r, -v, -m, -p, -i, -o)", run: uname };
const ECHO: Command = Command { name: "echo", summary: "print the arguments (-n: no newline)", run: echo };
const UPTIME: Command = Command { name: "uptime", summary: "time since boot", run: uptime };
const DMESG: Command = Command { name: "dmesg", summary: "print the kernel log", run: dmesg };
const CAT: Command = Command { name: "cat", summary: "print files", run: cat };
const KTEST: Command = Command { name: "ktest", summary: "run in-kernel tests: ktest [FILTER] | ktest -l", run: ktest };
const POWEROFF: Command = Command { name: "poweroff", summary: "power the machine off", run: poweroff };
const REBOOT: Command = Command { name: "reboot", summary: "reset the machine", run: reboot };

crate::shell_command!(HELP_ENTRY = HELP);
crate::shell_command!(UNAME_ENTRY = UNAME);
crate::shell_command!(ECHO_ENTRY = ECHO);
crate::shell_command!(UPTIME_ENTRY = UPTIME);
crate::shell_command!(DMESG_ENTRY = DMESG);
crate::shell_command!(CAT_ENTRY = CAT);
crate::shell_command!(KTEST_ENTRY = KTEST);
crate::shell_command!(POWEROFF_ENTRY = POWEROFF);
crate::shell_command!(REBOOT_ENTRY = REBOOT);

/// The built-in commands, for host builds where no linker section collects them.
#[cfg(not(target_os = "none"))]
pub static BUILTINS: &[Command] = &[HELP, UNAME, ECHO, UPTIME, DMESG, CAT, KTEST, POWEROFF, REBOOT];

fn help(_arguments: &Arguments<'_>, out: &mut dyn Write) -> CommandResult {
    let mut commands: [Option<&Command>; 128] = [None; 128];
    let mut count = 0;
    for command in super::commands() {
        if count < commands.len() {
            commands[count] = Some(command);
            count += 1;
        }
    }
    let commands = &mut commands[..count];
    commands.sort_unstable_by_key(|command| command.map(|c| c.name));
    for command in commands.iter().flatten() {
        let _ = writeln!(out, "  {:<10} {}", command.name, command.summary);
    }
    Ok(())
}

/// What `uname` reports.
pub struct SystemInformation<'a> {
    /// Architecture (`-m`).
    pub machine: &'a str,
    /// CPU model (`-p`).
    pub processor: &'a str,
    /// Board (`-i`).
    pub board: &'a str,
}

/// Formats `uname` output for the given flags (GNU order: s n r v m p i o).
pub fn format_uname(flags: &str, information: &SystemInformation<'_>, out: &mut dyn Write) -> CommandResult {
    const ALL: &str = "snrvmpio";
    let mut wanted = [false; 8];
    for flag in flags.chars() {
        match flag {
            'a' => wanted = [true; 8],
            other => match ALL.find(other) {
                Some(index) => wanted[index] = true,
                None => return Err(CommandError::Usage("uname [-asnrvmpio]")),
            },
        }
    }
    if !wanted.contains(&true) {
        wanted[0] = true;
    }
    let version = concat!("#1 SMP ", env!("CARGO_PKG_VERSION"));
    let fields = [
        crate::KERNEL_NAME,
        crate::NODE_NAME,
        crate::KERNEL_RELEASE,
        version,
        information.machine,
        information.processor,
        information.board,
        crate::KERNEL_NAME,
    ];
    let mut first = true;
    for (field, _) in fields.iter().zip(wanted.iter()).filter(|(_, &w)| w) {
        let _ = write!(out, "{}{}", if first { "" } else { " " }, field);
        first = false;
    }
    let _ = writeln!(out);
    Ok(())
}

fn uname(arguments: &Arguments<'_>, out: &mut dyn Write) -> CommandResult {
    let mut flags = [0u8; 16];
    let mut length = 0;
    for argument in &arguments[1..] {
        let Some(letters) = argument.strip_prefix('-').filter(|l| !l.is_empty()) else {
            return Err(CommandError::Usage("uname [-asnrvmpio]"));
        };
        for byte in letters.bytes() {
            if length == flags.len() {
                return Err(CommandError::Usage("uname [-asnrvmpio]"));
            }
            flags[length] = byte;
            length += 1;
        }
    }
    let flags = core::str::from_utf8(&flags[..length]).map_err(|_| CommandError::Usage("uname [-asnrvmpio]"))?;
    let platform = crate::platform();
    let information = SystemInformation { machine: platform.arch_name(), processor: platform.cpu().model(), board: platform.board_name() };
    format_uname(flags, &information, out)
}

fn echo(arguments: &Arguments<'_>, out: &mut dyn Write) -> CommandResult {
    let (newline, words) = match arguments.get(1) {
        Some(&"-n") => (false, &arguments[2..]),
        _ => (true, &arguments[1..]),
    };
    for (index, word) in words.iter().enumerate() {
        let _ = write!(out, "{}{}", if index == 0 { "" } else { " " }, word);
    }
    if newline {
        let _ = writeln!(out);
    }
    Ok(())
}

/// Formats uptime as ` up D days, HH:MM:SS.mmm` (Linux's `uptime` plus milliseconds).
pub fn format_uptime(nanoseconds: u64, out: &mut dyn Write) {
    let (days, hours, minutes, seconds, milliseconds) = crate::time::split_duration(nanoseconds);
    let _ = write!(out, " up ");
    if days > 0 {
        let _ = write!(out, "{} day{}, ", days, if days == 1 { "" } else { "s" });
    }
    let _ = writeln!(out, "{:02}:{:02}:{:02}.{:03}", hours, minutes, seconds, milliseconds);
}

fn uptime(arguments: &Arguments<'_>, out: &mut dyn Write) -> CommandResult {
    if arguments.len() > 1 {
        return Err(CommandError::Usage("uptime"));
    }
    format_uptime(crate::time::since_boot_nanoseconds(), out);
    Ok(())
}

/// Writes bytes that should be UTF-8, replacing invalid sequences with `?`.
pub fn write_lossy(bytes: &[u8], out: &mut dyn Write) {
    let mut rest = bytes;
    while !rest.is_empty() {
        match core::str::from_utf8(rest) {
            Ok(text) => {
                let _ = out.write_str(text);
                return;
            }
            Err(error) => {
                let valid = error.valid_up_to();
                // The prefix was just validated.
                let _ = out.write_str(core::str::from_utf8(&rest[..valid]).unwrap_or(""));
                let _ = out.write_char('?');
                rest = &rest[valid + error.error_len().unwrap_or(rest.len() - valid)..];
            }
        }
    }
}

fn dmesg(arguments: &Arguments<'_>, out: &mut dyn Write) -> CommandResult {
    if arguments.len() > 1 {
        return Err(CommandError::Usage("dmesg"));
    }
    crate::printk::for_each_log_chunk(|chunk| write_lossy(chunk, out));
    Ok(())
}

fn cat(arguments: &Arguments<'_>, out: &mut dyn Write) -> CommandResult {
    if arguments.len() < 2 {
        return Err(CommandError::Usage("cat FILE..."));
    }
    let mut missing = false;
    for path in &arguments[1..] {
        // Through the VFS once it exists (procfs is mounted at /proc), else the registry.
        match crate::fs::commands::read_file(path) {
            Some(Ok(contents)) => write_lossy(&contents, out),
            Some(Err(errno)) => {
                let _ = writeln!(out, "cat: {}: {}", path, errno);
                missing = true;
            }
            None => {
                if crate::fs::procfs::read(path, out).is_err() {
                    let _ = writeln!(out, "cat: {}: No such file or directory", path);
                    missing = true;
                }
            }
        }
    }
    if missing {
        Err(CommandError::Failed("some files could not be read"))
    } else {
        Ok(())
    }
}

fn ktest(arguments: &Arguments<'_>, out: &mut dyn Write) -> CommandResult {
    match arguments {
        [_, "-l"] => {
            for test in crate::ktest::registry() {
                let _ = crate::ktest::write_dotted_name(out, test.module, test.name);
                let _ = writeln!(out, "{}", if test.manual { " (manual)" } else { "" });
            }
            Ok(())
        }
        [_] | [_, _] => {
            let filter = arguments.get(1).copied().unwrap_or("");
            match crate::ktest::run(filter) {
                hinoki_interface::ExitStatus::Success => Ok(()),
                hinoki_interface::ExitStatus::Failure(_) => Err(CommandError::Failed("some tests failed")),
            }
        }
        _ => Err(CommandError::Usage("ktest [FILTER] | ktest -l")),
    }
}

fn poweroff(arguments: &Arguments<'_>, out: &mut dyn Write) -> CommandResult {
    if arguments.len() > 1 {
        return Err(CommandError::Usage("poweroff"));
    }
    crate::fs::root::shutdown();
    let _ = writeln!(out, "reboot: Power down");
    let platform = crate::platform();
    platform.console().flush();
    platform.poweroff()
}

fn reboot(arguments: &Arguments<'_>, out: &mut dyn Write) -> CommandResult {
    if arguments.len() > 1 {
        return Err(CommandError::Usage("reboot"));
    }
    crate::fs::root::shutdown();
    let _ = writeln!(out, "reboot: Restarting system");
    let platform = crate::platform();
    platform.console().flush();
    platform.reboot()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(command: fn(&Arguments<'_>, &mut dyn Write) -> CommandResult, arguments: &[&str]) -> (CommandResult, String) {
        let mut out = String::new();
        let result = command(arguments, &mut out);
        (result, out)
    }

    #[test]
    fn echo_prints_arguments() {
        assert_eq!(run(echo, &["echo", "a", "b"]).1, "a b\n");
        assert_eq!(run(echo, &["echo", "-n", "x"]).1, "x");
        assert_eq!(run(echo, &["echo"]).1, "\n");
    }

    #[test]
    fn uname_follows_gnu_order() {
        let information = SystemInformation { machine: "aarch64", processor: "Cortex-A72", board: "qemu-virt" };
        let mut out = String::new();
        format_uname("a", &information, &mut out).unwrap();
        assert!(out.starts_with("Hinoki hinoki "), "{out}");
        assert!(out.trim_end().ends_with("aarch64 Cortex-A72 qemu-virt Hinoki"), "{out}");
        out.clear();
        format_uname("", &information, &mut out).unwrap();
        assert_eq!(out, "Hinoki\n");
        out.clear();
        format_uname("mi", &information, &mut out).unwrap();
        assert_eq!(out, "aarch64 qemu-virt\n");
        assert!(format_uname("z", &information, &mut out).is_err());
    }

    #[test]
    fn uname_rejects_bad_arguments() {
        assert_eq!(run(uname, &["uname", "a"]).0, Err(CommandError::Usage("uname [-asnrvmpio]")));
        assert_eq!(run(uname, &["uname", "-"]).0, Err(CommandError::Usage("uname [-asnrvmpio]")));
    }

    #[test]
    fn uptime_formats() {
        let mut out = String::new();
        format_uptime(3_723_004_000_000, &mut out);
        assert_eq!(out, " up 01:02:03.004\n");
        out.clear();
        format_uptime(86_400_000_000_000 * 2, &mut out);
        assert_eq!(out, " up 2 days, 00:00:00.000\n");
    }

    #[test]
    fn lossy_output_replaces_bad_bytes() {
        let mut out = String::new();
        write_lossy(b"ok\xffyes\xe2\x82", &mut out);
        assert_eq!(out, "ok?yes?");
    }

    #[test]
    fn execute_reports_unknown_commands_and_usage() {
        let mut out = String::new();
        super::super::execute("frobnicate now", &mut out);
        assert_eq!(out, "hinoki: frobnicate: command not found (type 'help' for the list)\n");
        out.clear();
        super::super::execute("uptime extra", &mut out);
        assert_eq!(out, "usage: uptime\n");
        out.clear();
        super::super::execute("echo \"unterminated", &mut out);
        assert_eq!(out, "hinoki: unterminated quote\n");
        out.clear();
        super::super::execute("echo 'a  b' c", &mut out);
        assert_eq!(out, "a  b c\n");
        out.clear();
        super::super::execute("help", &mut out);
        assert!(out.contains("poweroff") && out.contains("uname"));
    }
}
