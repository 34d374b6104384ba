//! File-system shell commands: ls, cd, pwd, mkdir, rmdir, rm, mv, ln, stat, df, du, mount, umount, sync, hexdump, touch, dd, scheduler; and the redirection target of `> file` / `>> file`.

use alloc::collections::BTreeSet;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt::Write;

use super::vfs::{format_permissions, DirectoryEntry, Errno, FileType, Location, Metadata, MetadataChanges, OpenFlags, Vfs};
use crate::shell::{Arguments, Command, CommandError, CommandResult};
use crate::sync::SpinLock;

/// The shell's working directory and its path.
static CURRENT_DIRECTORY: SpinLock<Option<(Location, String)>> = SpinLock::new(None);

/// The shell's working directory (`None`: the root).
pub fn current_directory() -> Option<Location> {
    CURRENT_DIRECTORY.lock().as_ref().map(|(location, _)| *location)
}

/// What a command runs against: a VFS and a working directory.
pub struct Context<'a> {
    /// The file system tree.
    pub vfs: &'a Vfs,
    /// The working directory (`None`: the root).
    pub cwd: Option<Location>,
}

/// What a command that printed a message per failed operand returns (as `cat` does).
const SOME_FAILED: &str = "some operands failed";

fn failed(errno: Errno) -> CommandError {
    CommandError::Failed(errno.message())
}

fn with_vfs(
    arguments: &Arguments<'_>,
    out: &mut dyn Write,
    command: fn(&Context<'_>, &Arguments<'_>, &mut dyn Write) -> CommandResult,
) -> CommandResult {
    let vfs = super::vfs().ok_or(CommandError::Failed("no file systems yet (init_root has not run)"))?;
    command(&Context { vfs, cwd: current_directory() }, arguments, out)
}

/// Writes `data` to `path` for the shell's `> path` (truncating) and `>> path` (appending).
pub fn write_redirection(path: &str, data: &[u8], append: bool) -> Result<(), Errno> {
    let vfs = super::vfs().ok_or(Errno::ENOENT)?;
    vfs.write_file(current_directory(), path, data, append)
}

/// Where the shell sends a command's output: `> path` or `>> path`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redirection<'a> {
    /// The file.
    pub path: &'a str,
    /// `>>`: append instead of truncating.
    pub append: bool,
}

/// Splits a trailing `> FILE` or `>> FILE` off a command's arguments.
pub fn split_redirection<'a, 'b>(arguments: &'b [&'a str]) -> Result<(&'b [&'a str], Option<Redirection<'a>>), &'static str> {
    let operator = |word: &str| word == ">" || word == ">>";
    match arguments {
        [command @ .., last_operator, path] if operator(last_operator) && !operator(path) => {
            if command.iter().any(|word| operator(word)) {
                return Err("only one redirection per command");
            }
            if command.is_empty() {
                return Err("redirection without a command");
            }
            Ok((command, Some(Redirection { path, append: *last_operator == ">>" })))
        }
        _ if arguments.iter().any(|word| operator(word)) => Err("syntax error near the redirection: expected > FILE or >> FILE at the end"),
        _ => Ok((arguments, None)),
    }
}

/// Reads a whole file through the VFS for `cat`; `None` before the VFS exists.
pub fn read_file(path: &str) -> Option<Result<Vec<u8>, Errno>> {
    super::vfs().map(|vfs| vfs.read_to_end(current_directory(), path))
}

/// Splits `-x` flags (letters from `allowed`) from operands.
fn split_flags<'a>(arguments: &'a Arguments<'a>, allowed: &str, usage: &'static str) -> Result<(String, Vec<&'a str>), CommandError> {
    let mut flags = String::new();
    let mut operands = Vec::new();
    for argument in &arguments[1..] {
        match argument.strip_prefix('-') {
            Some(letters) if !letters.is_empty() => {
                for letter in letters.chars() {
                    if !allowed.contains(letter) {
                        return Err(CommandError::Usage(usage));
                    }
                    flags.push(letter);
                }
            }
            _ => operands.push(*argument),
        }
    }
    Ok((flags, operands))
}

/// `YYYY-MM-DD HH:MM` for seconds since the epoch (days to civil date, proleptic Gregorian).
pub fn format_time(seconds: i64, out: &mut dyn Write) {
    let days = seconds.div_euclid(86_400);
    let within = seconds.rem_euclid(86_400);
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    let _ = write!(out, "{:04}-{:02}-{:02} {:02}:{:02}", year, month, day, within / 3600, (within / 60) % 60);
}

fn long_line(context: &Context<'_>, directory: &str, name: &str, metadata: &Metadata, out: &mut dyn Write) {
    let permissions = format_permissions(metadata.permissions);
    let _ = write!(
        out,
        "{}{} {:3} {:5} {:5} ",
        metadata.kind.letter(),
        core::str::from_utf8(&permissions).unwrap_or("?????????"),
        metadata.links,
        metadata.uid,
        metadata.gid,
    );
    if matches!(metadata.kind, FileType::CharacterDevice | FileType::BlockDevice) {
        let _ = write!(out, "{:>4}, {:>3} ", metadata.rdev.major, metadata.rdev.minor);
    } else {
        let _ = write!(out, "{:9} ", metadata.size);
    }
    format_time(metadata.modification_time, out);
    let _ = write!(out, " {}", name);
    if metadata.kind == FileType::Symlink {
        let path = join(directory, name);
        if let Ok(target) = context.vfs.readlink(context.cwd, &path) {
            let _ = write!(out, " -> {}", target);
        }
    }
    let _ = writeln!(out);
}

fn join(directory: &str, name: &str) -> String {
    if directory.ends_with('/') {
        alloc::format!("{}{}", directory, name)
    } else {
        alloc::format!("{}/{}", directory, name)
    }
}

/// `ls [-la] [PATH...]`.
pub fn run_ls(context: &Context<'_>, arguments: &Arguments<'_>, out: &mut dyn Write) -> CommandResult {
    let (flags, mut paths) = split_flags(arguments, "la", "ls [-la] [PATH...]")?;
    if paths.is_empty() {
        paths.push(".");
    }
    let long = flags.contains('l');
    let all = flags.contains('a');
    let mut result = Ok(());
    for path in &paths {
        let metadata = match context.vfs.stat(context.cwd, path).or_else(|_| context.vfs.lstat(context.cwd, path)) {
            Ok(metadata) => metadata,
            Err(errno) => {
                let _ = writeln!(out, "ls: cannot access '{}': {}", path, errno);
                result = Err(CommandError::Failed(SOME_FAILED));
                continue;
            }
        };
        if !metadata.is_directory() {
            if long {
                let (directory, name) = path.rsplit_once('/').map_or((".", *path), |(directory, name)| (directory, name));
                let own = context.vfs.lstat(context.cwd, path).unwrap_or(metadata);
                long_line(context, if directory.is_empty() { "/" } else { directory }, name, &own, out);
            } else {
                let _ = writeln!(out, "{}", path);
            }
            continue;
        }
        if paths.len() > 1 {
            let _ = writeln!(out, "{}:", path);
        }
        // Entries are looked at relative to the directory (as `fstatat` with its descriptor),
        // not by walking each one's whole path again.
        let listed = context
            .vfs
            .resolve(context.cwd, path, true)
            .and_then(|directory| context.vfs.read_directory(Some(directory), ".").map(|entries| (directory, entries)));
        let (directory, mut entries): (_, Vec<DirectoryEntry>) = match listed {
            Ok(listed) => listed,
            Err(errno) => {
                let _ = writeln!(out, "ls: cannot open directory '{}': {}", path, errno);
                result = Err(CommandError::Failed(SOME_FAILED));
                continue;
            }
        };
        entries.retain(|entry| all || !entry.name.starts_with('.'));
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        for entry in entries {
            if long {
                match context.vfs.lstat(Some(directory), &entry.name) {
                    Ok(metadata) => long_line(context, path, &entry.name, &metadata, out),
                    Err(errno) => {
                        let _ = writeln!(out, "ls: cannot access '{}': {}", entry.name, errno);
                    }
                }
            } else {
                let _ = writeln!(out, "{}", entry.name);
            }
        }
    }
    result
}

fn each_operand(
    context: &Context<'_>,
    arguments: &Arguments<'_>,
    allowed: &str,
    usage: &'static str,
    mut operation: impl FnMut(&Context<'_>, &str, &str, &mut dyn Write) -> Result<(), Errno>,
    out: &mut dyn Write,
) -> CommandResult {
    let (flags, operands) = split_flags(arguments, allowed, usage)?;
    if operands.is_empty() {
        return Err(CommandError::Usage(usage));
    }
    let mut result = Ok(());
    for operand in operands {
        if let Err(errno) = operation(context, &flags, operand, out) {
            let _ = writeln!(out, "{}: {}: {}", arguments[0], operand, errno);
            result = Err(CommandError::Failed(SOME_FAILED));
        }
    }
    result
}

/// `mkdir [-p] DIR...`.
pub fn run_mkdir(context: &Context<'_>, arguments: &Arguments<'_>, out: &mut dyn Write) -> CommandResult {
    each_operand(
        context,
        arguments,
        "p",
        "mkdir [-p] DIR...",
        |context, flags, path, _| {
            if !flags.contains('p') {
                return context.vfs.mkdir(context.cwd, path, 0o755);
            }
            let mut prefix = String::new();
            if path.starts_with('/') {
                prefix.push('/');
            }
            for component in path.split('/').filter(|component| !component.is_empty()) {
                prefix.push_str(component);
                match context.vfs.mkdir(context.cwd, &prefix, 0o755) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(errno) => return Err(errno),
                }
                prefix.push('/');
            }
            Ok(())
        },
        out,
    )
}

/// `rmdir DIR...`.
pub fn run_rmdir(context: &Context<'_>, arguments: &Arguments<'_>, out: &mut dyn Write) -> CommandResult {
    each_operand(context, arguments, "", "rmdir DIR...", |context, _, path, _| context.vfs.rmdir(context.cwd, path), out)
}

fn remove_recursive(context: &Context<'_>, path: &str, depth: u32) -> Result<(), Errno> {
    if depth > 64 {
        return Err(Errno::ELOOP);
    }
    let metadata = context.vfs.lstat(context.cwd, path)?;
    if !metadata.is_directory() {
        return context.vfs.unlink(context.cwd, path);
    }
    for entry in context.vfs.read_directory(context.cwd, path)? {
        if entry.name != "." && entry.name != ".." {
            remove_recursive(context, &join(path, &entry.name), depth + 1)?;
        }
    }
    context.vfs.rmdir(context.cwd, path)
}

/// `rm [-r] FILE...`.
pub fn run_rm(context: &Context<'_>, arguments: &Arguments<'_>, out: &mut dyn Write) -> CommandResult {
    each_operand(
        context,
        arguments,
        "rf",
        "rm [-r] FILE...",
        |context, flags, path, _| {
            if flags.contains('r') {
                remove_recursive(context, path, 0)
            } else {
                context.vfs.unlink(context.cwd, path)
            }
        },
        out,
    )
}

/// `mv SOURCE DEST` (into DEST if it is a directory).
pub fn run_mv(context: &Context<'_>, arguments: &Arguments<'_>, _out: &mut dyn Write) -> CommandResult {
    let [_, source, destination] = arguments else { return Err(CommandError::Usage("mv SOURCE DEST")) };
    let target = match context.vfs.stat(context.cwd, destination) {
        Ok(metadata) if metadata.is_directory() => join(destination, source.trim_end_matches('/').rsplit('/').next().unwrap_or(source)),
        _ => String::from(*destination),
    };
    context.vfs.rename(context.cwd, source, &target).map_err(failed)
}

/// `ln [-s] TARGET LINK`.
pub fn run_ln(context: &Context<'_>, arguments: &Arguments<'_>, _out: &mut dyn Write) -> CommandResult {
    let (flags, operands) = split_flags(arguments, "s", "ln [-s] TARGET LINK")?;
    let [target, link] = operands[..] else { return Err(CommandError::Usage("ln [-s] TARGET LINK")) };
    if flags.contains('s') { context.vfs.symlink(context.cwd, target, link) } else { context.vfs.link(context.cwd, target, link) }
        .map_err(failed)
}

fn type_name(kind: FileType) -> &'static str {
    match kind {
        FileType::Regular => "regular file",
        FileType::Directory => "directory",
        FileType::Symlink => "symbolic link",
        FileType::CharacterDevice => "character special file",
        FileType::BlockDevice => "block special file",
        FileType::Fifo => "fifo",
        FileType::Socket => "socket",
    }
}

/// `stat PATH...`, in coreutils' layout.
pub fn run_stat(context: &Context<'_>, arguments: &Arguments<'_>, out: &mut dyn Write) -> CommandResult {
    each_operand(
        context,
        arguments,
        "",
        "stat PATH...",
        |context, _, path, out| {
            let metadata = context.vfs.lstat(context.cwd, path)?;
            let mut out_text = String::new();
            let _ = write!(out_text, "  File: {}", path);
            if metadata.kind == FileType::Symlink {
                let _ = write!(out_text, " -> {}", context.vfs.readlink(context.cwd, path)?);
            }
            let _ = writeln!(out_text);
            let _ = writeln!(
                out_text,
                "  Size: {:<10}\tBlocks: {:<10} IO Block: {:<6} {}",
                metadata.size,
                metadata.blocks,
                metadata.block_size,
                type_name(metadata.kind)
            );
            let _ = write!(out_text, "Device: {}\tInode: {:<11} Links: {}", metadata.device, metadata.inode, metadata.links);
            if matches!(metadata.kind, FileType::CharacterDevice | FileType::BlockDevice) {
                let _ = write!(out_text, "\tDevice type: {},{}", metadata.rdev.major, metadata.rdev.minor);
            }
            let _ = writeln!(out_text);
            let permissions = format_permissions(metadata.permissions);
            let _ = writeln!(
                out_text,
                "Access: ({:04o}/{}{})  Uid: ({:5})   Gid: ({:5})",
                metadata.permissions,
                metadata.kind.letter(),
                core::str::from_utf8(&permissions).unwrap_or("?"),
                metadata.uid,
                metadata.gid
            );
            for (label, time) in
                [("Access", metadata.access_time), ("Modify", metadata.modification_time), ("Change", metadata.change_time)]
            {
                let _ = write!(out_text, "{}: ", label);
                format_time(time, &mut out_text);
                let _ = writeln!(out_text);
            }
            let _ = out.write_str(&out_text);
            Ok(())
        },
        out,
    )
}

/// `df`: space on every mount, in 1K blocks.
pub fn run_df(context: &Context<'_>, arguments: &Arguments<'_>, out: &mut dyn Write) -> CommandResult {
    if arguments.len() > 1 {
        return Err(CommandError::Usage("df"));
    }
    let _ = writeln!(out, "{:<16} {:>10} {:>10} {:>10} {:>4} Mounted on", "Filesystem", "1K-blocks", "Used", "Available", "Use%");
    for mount in context.vfs.mounts() {
        let Ok(statistics) = mount.file_system.statistics() else { continue };
        let kilobytes = |blocks: u64| blocks * statistics.block_size / 1024;
        let total = kilobytes(statistics.blocks);
        let used = kilobytes(statistics.blocks - statistics.free_blocks.min(statistics.blocks));
        let available = kilobytes(statistics.available_blocks);
        let percent = if used + available == 0 { 0 } else { (used * 100).div_ceil(used + available) };
        let _ = writeln!(out, "{:<16} {:>10} {:>10} {:>10} {:>3}% {}", mount.source, total, used, available, percent, mount.target);
    }
    Ok(())
}

/// Kilobytes allocated under `path`, counting each inode once and stopping at 64 levels
/// (a corrupt file system may have directory cycles).
pub fn disk_usage(vfs: &Vfs, cwd: Option<Location>, path: &str) -> Result<u64, Errno> {
    let mut seen = BTreeSet::new();
    let start = vfs.resolve(cwd, path, true)?;
    usage_below(vfs, start, &mut seen, 0)
}

fn usage_below(vfs: &Vfs, location: Location, seen: &mut BTreeSet<Location>, depth: u32) -> Result<u64, Errno> {
    if depth > 64 || !seen.insert(location) {
        return Ok(0);
    }
    let metadata = vfs.metadata_at(location)?;
    let mut total = metadata.blocks / 2;
    if metadata.is_directory() {
        let file_system = vfs.mount_at(location)?.file_system.clone();
        for entry in file_system.read_directory(location.inode)? {
            if entry.name != "." && entry.name != ".." {
                let child = Location { mount: location.mount, inode: entry.inode };
                total += usage_below(vfs, child, seen, depth + 1).unwrap_or(0);
            }
        }
    }
    Ok(total)
}

/// `du [PATH...]`: kilobytes used, like `du -s`.
pub fn run_du(context: &Context<'_>, arguments: &Arguments<'_>, out: &mut dyn Write) -> CommandResult {
    let paths: Vec<&str> = if arguments.len() > 1 { arguments[1..].to_vec() } else { vec!["."] };
    for path in paths {
        let usage = disk_usage(context.vfs, context.cwd, path).map_err(failed)?;
        let _ = writeln!(out, "{}\t{}", usage, path);
    }
    Ok(())
}

/// `mount` (list), `mount [-t TYPE] [-o ro] SOURCE TARGET`.
pub fn run_mount(context: &Context<'_>, arguments: &Arguments<'_>, out: &mut dyn Write) -> CommandResult {
    const USAGE: &str = "mount [-t TYPE] [-o ro|rw] SOURCE TARGET";
    if arguments.len() == 1 {
        let _ = context.vfs.write_mounts(out);
        return Ok(());
    }
    let mut type_name = "ext2";
    let mut read_only = false;
    let mut operands = Vec::new();
    let mut index = 1;
    while index < arguments.len() {
        match arguments[index] {
            "-t" => {
                type_name = arguments.get(index + 1).ok_or(CommandError::Usage(USAGE))?;
                index += 1;
            }
            "-o" => {
                read_only = match *arguments.get(index + 1).ok_or(CommandError::Usage(USAGE))? {
                    "ro" => true,
                    "rw" => false,
                    _ => return Err(CommandError::Usage(USAGE)),
                };
                index += 1;
            }
            operand => operands.push(operand),
        }
        index += 1;
    }
    let [source, target] = operands[..] else { return Err(CommandError::Usage(USAGE)) };
    let target = absolute(context, target)?;
    let file_system = super::root::create_filesystem(type_name, source, read_only).map_err(failed)?;
    context.vfs.mount(source, &target, file_system, read_only).map(|_| ()).map_err(failed)
}

fn absolute(context: &Context<'_>, path: &str) -> Result<String, CommandError> {
    if path.starts_with('/') {
        return Ok(String::from(path));
    }
    let base = CURRENT_DIRECTORY.lock().as_ref().map(|(_, text)| text.clone()).unwrap_or_else(|| String::from("/"));
    let _ = context;
    super::vfs::normalize_absolute(&join(&base, path)).map_err(failed)
}

/// `umount TARGET`.
pub fn run_umount(context: &Context<'_>, arguments: &Arguments<'_>, _out: &mut dyn Write) -> CommandResult {
    let [_, target] = arguments else { return Err(CommandError::Usage("umount TARGET")) };
    context.vfs.unmount(&absolute(context, target)?).map_err(failed)
}

/// `sync`.
pub fn run_sync(context: &Context<'_>, arguments: &Arguments<'_>, _out: &mut dyn Write) -> CommandResult {
    if arguments.len() > 1 {
        return Err(CommandError::Usage("sync"));
    }
    context.vfs.sync().map_err(failed)
}

/// Writes `data` as `hexdump -C` does, offsets starting at `base`.
pub fn write_hexdump(data: &[u8], base: u64, out: &mut dyn Write) {
    let mut previous: Option<&[u8]> = None;
    let mut starred = false;
    for (index, line) in data.chunks(16).enumerate() {
        if previous == Some(line) && line.len() == 16 {
            if !starred {
                let _ = writeln!(out, "*");
                starred = true;
            }
            continue;
        }
        starred = false;
        previous = Some(line);
        let _ = write!(out, "{:08x}  ", base + index as u64 * 16);
        for column in 0..16 {
            match line.get(column) {
                Some(byte) => {
                    let _ = write!(out, "{:02x} ", byte);
                }
                None => {
                    let _ = write!(out, "   ");
                }
            }
            if column == 7 {
                let _ = write!(out, " ");
            }
        }
        let _ = write!(out, " |");
        for &byte in line {
            let _ = out.write_char(if (0x20..0x7f).contains(&byte) { byte as char } else { '.' });
        }
        let _ = writeln!(out, "|");
    }
    let _ = writeln!(out, "{:08x}", base + data.len() as u64);
}

/// `hexdump [-C] [-n LENGTH] [-s OFFSET] FILE`: at most LENGTH bytes from OFFSET (so
/// endless devices such as `/dev/urandom` can be dumped), at most [`Vfs::MAX_READ_TO_END`].
pub fn run_hexdump(context: &Context<'_>, arguments: &Arguments<'_>, out: &mut dyn Write) -> CommandResult {
    const USAGE: &str = "hexdump [-C] [-n LENGTH] [-s OFFSET] FILE";
    let (mut length, mut offset, mut path) = (Vfs::MAX_READ_TO_END as u64, 0u64, None);
    let mut index = 1;
    while index < arguments.len() {
        match arguments[index] {
            "-C" => {}
            "-n" | "-s" => {
                let value = arguments.get(index + 1).and_then(|text| parse_number(text)).ok_or(CommandError::Usage(USAGE))?;
                if arguments[index] == "-n" {
                    length = value.min(length);
                } else {
                    offset = value;
                }
                index += 1;
            }
            operand if path.is_none() && !operand.starts_with('-') => path = Some(operand),
            _ => return Err(CommandError::Usage(USAGE)),
        }
        index += 1;
    }
    let path = path.ok_or(CommandError::Usage(USAGE))?;
    let file = context.vfs.open(context.cwd, path, OpenFlags::READ_ONLY, 0).map_err(failed)?;
    let mut data = Vec::new();
    let mut chunk = vec![0u8; 4096];
    while (data.len() as u64) < length {
        let want = (length - data.len() as u64).min(chunk.len() as u64) as usize;
        let count = context.vfs.pread(&file, offset + data.len() as u64, &mut chunk[..want]).map_err(failed)?;
        if count == 0 {
            break;
        }
        data.extend_from_slice(&chunk[..count]);
    }
    write_hexdump(&data, offset, out);
    Ok(())
}

/// `touch FILE...`: creates, or sets the times to now.
pub fn run_touch(context: &Context<'_>, arguments: &Arguments<'_>, out: &mut dyn Write) -> CommandResult {
    each_operand(
        context,
        arguments,
        "",
        "touch FILE...",
        |context, _, path, _| match context.vfs.stat(context.cwd, path) {
            Ok(_) => {
                let now = super::vfs::current_time_seconds();
                context.vfs.set_metadata(
                    context.cwd,
                    path,
                    &MetadataChanges { access_time: Some(now), modification_time: Some(now), ..MetadataChanges::default() },
                )
            }
            Err(Errno::ENOENT) => context.vfs.open(context.cwd, path, OpenFlags::WRITE_ONLY | OpenFlags::CREATE, 0o644).map(|_| ()),
            Err(errno) => Err(errno),
        },
        out,
    )
}

/// Where `dd` reads or writes: a file, or a registered block device (`/dev/NAME`).
enum Endpoint {
    File(alloc::sync::Arc<super::vfs::OpenFile>),
    Device(alloc::sync::Arc<dyn crate::block::BlockDevice>),
}

fn parse_number(text: &str) -> Option<u64> {
    let (digits, multiplier) = match text.as_bytes().last()? {
        b'K' | b'k' => (&text[..text.len() - 1], 1024),
        b'M' => (&text[..text.len() - 1], 1 << 20),
        b'G' => (&text[..text.len() - 1], 1 << 30),
        _ => (text, 1),
    };
    digits.parse::<u64>().ok()?.checked_mul(multiplier)
}

/// `dd if=IN of=OUT [bs=N] [count=N] [skip=N] [seek=N]`: block copy with a throughput figure.
pub fn run_dd(context: &Context<'_>, arguments: &Arguments<'_>, out: &mut dyn Write) -> CommandResult {
    const USAGE: &str = "dd if=IN of=OUT [bs=N] [count=N] [skip=N] [seek=N]";
    let (mut input, mut output, mut block_size, mut count, mut skip, mut seek) = (None, None, 512u64, u64::MAX, 0u64, 0u64);
    for argument in &arguments[1..] {
        let (key, value) = argument.split_once('=').ok_or(CommandError::Usage(USAGE))?;
        match key {
            "if" => input = Some(value),
            "of" => output = Some(value),
            "bs" => block_size = parse_number(value).filter(|&size| size > 0 && size <= 1 << 24).ok_or(CommandError::Usage(USAGE))?,
            "count" => count = parse_number(value).ok_or(CommandError::Usage(USAGE))?,
            "skip" => skip = parse_number(value).ok_or(CommandError::Usage(USAGE))?,
            "seek" => seek = parse_number(value).ok_or(CommandError::Usage(USAGE))?,
            _ => return Err(CommandError::Usage(USAGE)),
        }
    }
    let (Some(input), Some(output)) = (input, output) else { return Err(CommandError::Usage(USAGE)) };
    let open = |path: &str, writing: bool| -> Result<Endpoint, Errno> {
        if let Some(device) = path.strip_prefix("/dev/").and_then(crate::block::find) {
            return Ok(Endpoint::Device(device.device));
        }
        let flags = if writing { OpenFlags::WRITE_ONLY | OpenFlags::CREATE | OpenFlags::TRUNCATE } else { OpenFlags::READ_ONLY };
        context.vfs.open(context.cwd, path, flags, 0o644).map(Endpoint::File)
    };
    let source = open(input, false).map_err(failed)?;
    let destination = open(output, true).map_err(failed)?;
    let start = crate::time::since_boot_nanoseconds();
    let mut buffer = vec![0u8; block_size as usize];
    let (mut records, mut partial, mut copied) = (0u64, 0u64, 0u64);
    while records + partial < count {
        let position = (skip + records + partial) * block_size;
        let got = match &source {
            Endpoint::File(file) => context.vfs.pread(file, position, &mut buffer).map_err(failed)?,
            Endpoint::Device(device) => {
                let available = device.size_bytes().saturating_sub(position).min(block_size) as usize;
                if available > 0 {
                    device.read_bytes(position, &mut buffer[..available]).map_err(failed)?;
                }
                available
            }
        };
        if got == 0 {
            break;
        }
        let target = (seek * block_size) + copied;
        match &destination {
            Endpoint::File(file) => {
                context.vfs.pwrite(file, target, &buffer[..got]).map_err(failed)?;
            }
            Endpoint::Device(device) => {
                let device_block = device.block_size() as u64;
                if target % device_block != 0 || got as u64 % device_block != 0 {
                    return Err(CommandError::Failed("device writes must be whole device blocks"));
                }
                device.write_blocks(target / device_block, &buffer[..got]).map_err(failed)?;
            }
        }
        copied += got as u64;
        if got as u64 == block_size {
            records += 1;
        } else {
            partial += 1;
            break;
        }
    }
    if let Endpoint::Device(device) = &destination {
        device.flush().map_err(failed)?;
    }
    let elapsed = crate::time::since_boot_nanoseconds().saturating_sub(start).max(1);
    let _ = writeln!(out, "{}+{} records in\n{}+{} records out", records, partial, records, partial);
    let _ = writeln!(
        out,
        "{} bytes copied, {}.{:06} s, {} kB/s",
        copied,
        elapsed / 1_000_000_000,
        (elapsed / 1000) % 1_000_000,
        copied * 1_000_000 / elapsed
    );
    Ok(())
}

/// `scheduler DEVICE [noop|deadline]`: shows or switches a disk's I/O scheduler.
pub fn run_scheduler(arguments: &Arguments<'_>, out: &mut dyn Write) -> CommandResult {
    const USAGE: &str = "scheduler DEVICE [noop|deadline]";
    let (Some(name), choice) = (arguments.get(1), arguments.get(2)) else { return Err(CommandError::Usage(USAGE)) };
    let queue = crate::block::find(name)
        .ok_or(CommandError::NotFound)?
        .queue
        .ok_or(CommandError::Failed("not a whole disk with a request queue"))?;
    if let Some(choice) = choice {
        let kind = crate::block::SchedulerKind::from_name(choice).ok_or(CommandError::Usage(USAGE))?;
        queue.set_scheduler(kind);
    }
    let current = queue.scheduler();
    for (index, kind) in crate::block::SchedulerKind::ALL.iter().enumerate() {
        let separator = if index == 0 { "" } else { " " };
        if *kind == current {
            let _ = write!(out, "{}[{}]", separator, kind.name());
        } else {
            let _ = write!(out, "{}{}", separator, kind.name());
        }
    }
    let _ = writeln!(out);
    Ok(())
}

/// `cd [DIR]`.
pub fn run_cd(arguments: &Arguments<'_>, _out: &mut dyn Write) -> CommandResult {
    let vfs = super::vfs().ok_or(CommandError::Failed("no file systems yet"))?;
    let path = arguments.get(1).copied().unwrap_or("/");
    let context = Context { vfs, cwd: current_directory() };
    let text = absolute(&context, path)?;
    let location = vfs.resolve(None, &text, true).map_err(failed)?;
    if !vfs.metadata_at(location).map_err(failed)?.is_directory() {
        return Err(failed(Errno::ENOTDIR));
    }
    *CURRENT_DIRECTORY.lock() = Some((location, text));
    Ok(())
}

/// `pwd`.
pub fn run_pwd(_arguments: &Arguments<'_>, out: &mut dyn Write) -> CommandResult {
    let text = CURRENT_DIRECTORY.lock().as_ref().map(|(_, text)| text.clone()).unwrap_or_else(|| String::from("/"));
    let _ = writeln!(out, "{}", text);
    Ok(())
}

macro_rules! vfs_command {
    ($entry:ident, $wrapper:ident, $name:expr, $summary:expr, $function:path) => {
        fn $wrapper(arguments: &Arguments<'_>, out: &mut dyn Write) -> CommandResult {
            with_vfs(arguments, out, $function)
        }
        crate::shell_command!($entry = Command { name: $name, summary: $summary, run: $wrapper });
    };
}

vfs_command!(LS_COMMAND, ls, "ls", "list directories (-l long, -a all)", run_ls);
vfs_command!(MKDIR_COMMAND, mkdir, "mkdir", "make directories (-p: parents too)", run_mkdir);
vfs_command!(RMDIR_COMMAND, rmdir, "rmdir", "remove empty directories", run_rmdir);
vfs_command!(RM_COMMAND, rm, "rm", "remove files (-r: directories too)", run_rm);
vfs_command!(MV_COMMAND, mv, "mv", "move or rename a file", run_mv);
vfs_command!(LN_COMMAND, ln, "ln", "make a hard link (-s: symbolic)", run_ln);
vfs_command!(STAT_COMMAND, stat, "stat", "show a file's inode", run_stat);
vfs_command!(DF_COMMAND, df, "df", "space used and free on each mount", run_df);
vfs_command!(DU_COMMAND, du, "du", "space used under a path", run_du);
vfs_command!(MOUNT_COMMAND, mount, "mount", "list mounts, or mount [-t TYPE] [-o ro] SOURCE TARGET", run_mount);
vfs_command!(UMOUNT_COMMAND, umount, "umount", "unmount a file system", run_umount);
vfs_command!(SYNC_COMMAND, sync, "sync", "write all cached data to the disks", run_sync);
vfs_command!(HEXDUMP_COMMAND, hexdump, "hexdump", "show a file in hex and ASCII (-C layout; -n LENGTH, -s OFFSET)", run_hexdump);
vfs_command!(TOUCH_COMMAND, touch, "touch", "create files or update their times", run_touch);
vfs_command!(DD_COMMAND, dd, "dd", "copy blocks: dd if=IN of=OUT [bs=N] [count=N] [skip=N] [seek=N]", run_dd);
crate::shell_command!(SCHEDULER_COMMAND, "scheduler", "show or set a disk's I/O scheduler: scheduler DEV [noop|deadline]", run_scheduler);
crate::shell_command!(CD_COMMAND, "cd", "change the working directory", run_cd);
crate::shell_command!(PWD_COMMAND, "pwd", "print the working directory", run_pwd);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::ramfs::RamFs;
    use alloc::sync::Arc;

    fn context_vfs() -> Vfs {
        let vfs = Vfs::new();
        vfs.mount("rootfs", "/", Arc::new(RamFs::new(|| 1_700_000_000, 1 << 20)), false).unwrap();
        vfs
    }

    fn run(
        vfs: &Vfs,
        command: fn(&Context<'_>, &Arguments<'_>, &mut dyn Write) -> CommandResult,
        line: &[&str],
    ) -> (CommandResult, String) {
        let mut out = String::new();
        let result = command(&Context { vfs, cwd: None }, line, &mut out);
        (result, out)
    }

    #[test]
    fn file_commands_work_together() {
        let vfs = context_vfs();
        assert_eq!(run(&vfs, run_mkdir, &["mkdir", "-p", "/a/b/c"]).0, Ok(()));
        assert_eq!(run(&vfs, run_touch, &["touch", "/a/file"]).0, Ok(()));
        vfs.write_file(None, "/a/file", b"hello\n", false).unwrap();
        assert_eq!(run(&vfs, run_ln, &["ln", "-s", "file", "/a/link"]).0, Ok(()));
        assert_eq!(run(&vfs, run_ln, &["ln", "/a/file", "/a/hard"]).0, Ok(()));
        assert_eq!(run(&vfs, run_ls, &["ls", "/a"]).1, "b\nfile\nhard\nlink\n");
        let long = run(&vfs, run_ls, &["ls", "-l", "/a"]).1;
        assert!(long.contains("lrwxrwxrwx") && long.contains("link -> file"), "{long}");
        assert!(long.contains("-rw-r--r--   2     0     0         6 2023-11-14 22:13 file"), "{long}");
        assert_eq!(run(&vfs, run_mv, &["mv", "/a/hard", "/a/b"]).0, Ok(()));
        assert_eq!(vfs.read_to_end(None, "/a/b/hard").unwrap(), b"hello\n");
        let (result, out) = run(&vfs, run_rmdir, &["rmdir", "/a"]);
        assert_eq!(result, Err(CommandError::Failed(SOME_FAILED)));
        assert_eq!(out, "rmdir: /a: Directory not empty\n");
        let stat = run(&vfs, run_stat, &["stat", "/a/file"]).1;
        assert!(stat.contains("Size: 6") && stat.contains("regular file") && stat.contains("Access: (0644/-rw-r--r--)"), "{stat}");
        assert!(run(&vfs, run_du, &["du", "/a"]).1.ends_with("\t/a\n"));
        assert!(run(&vfs, run_df, &["df"]).1.contains("rootfs"));
        assert_eq!(run(&vfs, run_rm, &["rm", "-r", "/a"]).0, Ok(()));
        assert_eq!(run(&vfs, run_ls, &["ls", "/"]).1, "");
        assert_eq!(run(&vfs, run_ls, &["ls", "/missing"]).1, "ls: cannot access '/missing': No such file or directory\n");
    }

    #[test]
    fn ls_long_looks_at_entries_relative_to_the_listed_directory() {
        let vfs = context_vfs();
        vfs.mkdir(None, "/d", 0o755).unwrap();
        vfs.write_file(None, "/d/f", b"12345", false).unwrap();
        vfs.mkdir(None, "/d/sub", 0o700).unwrap();
        vfs.symlink(None, "/d", "/to-d").unwrap();
        let expected = run(&vfs, run_ls, &["ls", "-l", "/d"]).1;
        let lines: Vec<&str> = expected.lines().collect();
        assert_eq!(lines.len(), 2, "{expected}");
        assert!(lines[0].starts_with("-rw-r--r--") && lines[0].contains(" 5 ") && lines[0].ends_with(" f"), "{expected}");
        assert!(lines[1].starts_with("drwx------") && lines[1].ends_with(" sub"), "{expected}");
        assert_eq!(run(&vfs, run_ls, &["ls", "-l", "/to-d"]).1, expected, "through a link to the directory");
        let cwd = vfs.resolve(None, "/d/sub", true).unwrap();
        for path in ["..", "/to-d/sub/.."] {
            let mut out = String::new();
            assert_eq!(run_ls(&Context { vfs: &vfs, cwd: Some(cwd) }, &["ls", "-l", path], &mut out), Ok(()));
            assert_eq!(out, expected, "{path} from /d/sub");
        }
    }

    #[test]
    fn hexdump_and_dd() {
        let vfs = context_vfs();
        let mut out = String::new();
        write_hexdump(b"hello, world\n\x00\x01\x02\x03 and more", 0, &mut out);
        assert_eq!(
            out,
            "00000000  68 65 6c 6c 6f 2c 20 77  6f 72 6c 64 0a 00 01 02  |hello, world....|\n00000010  03 20 61 6e 64 20 6d 6f  72 65                    |. and more|\n0000001a\n"
        );
        out.clear();
        write_hexdump(&[0; 64], 0, &mut out);
        assert_eq!(out, "00000000  00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00  |................|\n*\n00000040\n");
        vfs.write_file(None, "/in", &(0..=255u8).cycle().take(5000).collect::<Vec<u8>>(), false).unwrap();
        let (result, text) = run(&vfs, run_dd, &["dd", "if=/in", "of=/out", "bs=1K", "count=3", "skip=1"]);
        assert_eq!(result, Ok(()));
        assert!(text.starts_with("3+0 records in\n3+0 records out\n3072 bytes copied"), "{text}");
        assert_eq!(vfs.read_to_end(None, "/out").unwrap(), vfs.read_to_end(None, "/in").unwrap()[1024..4096]);
        let (_, text) = run(&vfs, run_dd, &["dd", "if=/in", "of=/all", "bs=2K"]);
        assert!(text.starts_with("2+1 records in"), "{text}");
        assert_eq!(run(&vfs, run_dd, &["dd", "if=/in"]).0, Err(CommandError::Usage("dd if=IN of=OUT [bs=N] [count=N] [skip=N] [seek=N]")));
        assert_eq!(run(&vfs, run_hexdump, &["hexdump", "-C", "/nothing"]).0, Err(CommandError::Failed("No such file or directory")));
    }

    #[test]
    fn devices_list_with_numbers_and_dump_with_a_length() {
        let vfs = context_vfs();
        vfs.mkdir(None, "/dev", 0o755).unwrap();
        let devfs = crate::fs::devfs::DevFs::new(crate::fs::devfs::ConsoleOperations { write: |_| {}, read_byte: || 0x04 }, 1_700_000_000);
        vfs.mount("devtmpfs", "/dev", Arc::new(devfs), false).unwrap();
        let listing = run(&vfs, run_ls, &["ls", "-l", "/dev"]).1;
        assert!(listing.contains("crw-rw-rw-   1     0     0    1,   3 2023-11-14 22:13 null\n"), "{listing}");
        assert!(listing.contains("crw-------   1     0     0    5,   1 2023-11-14 22:13 console\n"), "{listing}");
        let stat = run(&vfs, run_stat, &["stat", "/dev/urandom"]).1;
        assert!(stat.contains("character special file") && stat.contains("Device type: 1,9"), "{stat}");
        let (result, dump) = run(&vfs, run_hexdump, &["hexdump", "-C", "-n", "20", "-s", "3", "/dev/zero"]);
        assert_eq!(result, Ok(()));
        assert_eq!(dump, "00000003  00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00  |................|\n00000013  00 00 00 00                                       |....|\n00000017\n");
        let (_, dump) = run(&vfs, run_hexdump, &["hexdump", "-n", "32", "/dev/urandom"]);
        assert_eq!(dump.lines().count(), 3, "{dump}");
        assert!(matches!(run(&vfs, run_hexdump, &["hexdump", "-n"]).0, Err(CommandError::Usage(_))));
        let (result, text) = run(&vfs, run_dd, &["dd", "if=/dev/zero", "of=/zeros", "bs=1K", "count=4"]);
        assert_eq!(result, Ok(()), "{text}");
        assert_eq!(vfs.read_to_end(None, "/zeros").unwrap(), vec![0u8; 4096]);
        assert_eq!(run(&vfs, run_dd, &["dd", "if=/zeros", "of=/dev/full"]).0, Err(CommandError::Failed("No space left on device")));
        assert_eq!(vfs.read_to_end(None, "/dev/zero"), Err(Errno::EFBIG), "an endless device ends in EFBIG, not in exhausted memory");
    }

    #[test]
    fn mount_lists_and_mounts_by_type() {
        let vfs = context_vfs();
        vfs.mkdir(None, "/mnt", 0o755).unwrap();
        assert_eq!(run(&vfs, run_mount, &["mount", "-t", "tmpfs", "none", "/mnt"]).0, Ok(()));
        assert_eq!(run(&vfs, run_mount, &["mount"]).1, "rootfs / ramfs rw,relatime 0 0\nnone /mnt ramfs rw,relatime 0 0\n");
        assert_eq!(run(&vfs, run_mount, &["mount", "-t", "nfs", "x", "/mnt"]).0, Err(CommandError::Failed("No such device")));
        assert_eq!(run(&vfs, run_umount, &["umount", "/mnt"]).0, Ok(()));
        assert_eq!(run(&vfs, run_umount, &["umount", "/mnt"]).0, Err(CommandError::Failed("Invalid argument")));
    }

    #[test]
    fn redirection_is_split_off_the_end() {
        assert_eq!(split_redirection(&["echo", "a", "b"]), Ok((&["echo", "a", "b"][..], None)));
        assert_eq!(split_redirection(&["echo", "a", ">", "/f"]), Ok((&["echo", "a"][..], Some(Redirection { path: "/f", append: false }))));
        assert_eq!(split_redirection(&["echo", ">>", "/f"]), Ok((&["echo"][..], Some(Redirection { path: "/f", append: true }))));
        assert!(split_redirection(&["echo", ">"]).is_err());
        assert!(split_redirection(&["echo", ">", "a", "b"]).is_err());
        assert!(split_redirection(&[">", "/f"]).is_err());
        assert!(split_redirection(&["echo", ">", "/a", ">", "/b"]).is_err());
    }

    #[test]
    fn shell_redirects_into_the_root_file_system_and_cat_reads_it_back() {
        crate::fs::init_root().unwrap();
        let mut out = String::new();
        crate::shell::execute("echo hello > /tmp/redirected", &mut out);
        crate::shell::execute("echo 'and again' >> /tmp/redirected", &mut out);
        assert_eq!(out, "", "nothing reaches the console");
        crate::shell::execute("cat /tmp/redirected", &mut out);
        assert_eq!(out, "hello\nand again\n");
        out.clear();
        crate::shell::execute("echo x > /no/such/dir/file", &mut out);
        assert_eq!(out, "hinoki: /no/such/dir/file: No such file or directory\n");
        out.clear();
        crate::shell::execute("cat /proc/mounts /proc/filesystems", &mut out);
        assert!(out.starts_with("rootfs / ramfs rw,relatime 0 0\nproc /proc proc rw,relatime 0 0\n"), "{out}");
        assert!(out.contains("nodev\tramfs\n") && out.contains("\text2\n"), "{out}");
        out.clear();
        crate::shell::execute("cat /tmp/missing", &mut out);
        assert_eq!(out, "cat: /tmp/missing: No such file or directory\ncat: some files could not be read\n");
    }

    #[test]
    fn time_formatting_matches_the_calendar() {
        let mut out = String::new();
        format_time(0, &mut out);
        format_time(951_782_400, &mut out);
        format_time(1_700_000_000, &mut out);
        assert_eq!(out, "1970-01-01 00:002000-02-29 00:002023-11-14 22:13");
    }
}
