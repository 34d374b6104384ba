//! `cargo xtask profile`: instructions per kernel function while one shell command runs, from QEMU's log of executed translation blocks.
//!
//! The board boots its release kernel under `-icount shift=0` with `-d in_asm,nochain` (every
//! translated block's instructions go to the log, but no execution records yet) and a QEMU
//! monitor socket. At the shell prompt the monitor turns on `exec` logging (one line per
//! executed block; `nochain` keeps blocks from jumping straight into each other unlogged), the
//! command runs, and logging stops at the next prompt. Each executed block counts its
//! instructions (from its `in_asm` listing) towards the function holding its first address.
//!
//! `--from SYMBOL` / `--to SYMBOL` narrow the window to the blocks from the first one in a
//! function whose name contains SYMBOL up to the first one in a function containing the other
//! (e.g. one benchmark of `bench latency`), and `--per N` divides every figure by N (the
//! benchmark's iteration count), giving instructions per operation.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use regex::Regex;

use crate::qemu::{Launch, Session};
use crate::symbols::SymbolTable;

/// Functions listed (by instructions, most first).
const TOP_FUNCTIONS: usize = 30;

/// Runs the verb: boots, logs the command's blocks, prints the table.
pub fn run(options: &crate::Options) -> Result<(), String> {
    let command_line = options.positional.join(" ");
    if command_line.trim().is_empty() {
        return Err("profile needs the shell command to run, e.g. `cargo xtask profile --from yield_switch --to semaphore_ping_pong --per 4000 bench latency`".into());
    }
    let per = options.per.unwrap_or(1.0);
    if per.is_nan() || per <= 0.0 {
        return Err("--per must be a positive number".into());
    }
    let board = crate::boards::find(options.board.as_deref())?;
    let built = crate::image::build(&board, true)?;
    let directory = crate::target_directory().join("hinoki").join("profile");
    std::fs::create_dir_all(&directory).map_err(|e| format!("creating {}: {e}", directory.display()))?;
    let log = directory.join(format!("{}.log", board.board));
    let socket = directory.join(format!("{}.monitor", board.board));
    for path in [&log, &socket] {
        let _ = std::fs::remove_file(path);
    }
    let launch = Launch {
        smp: options.smp,
        extra: vec![
            "-icount".into(),
            "shift=0".into(),
            "-d".into(),
            "in_asm,nochain".into(),
            "-D".into(),
            log.display().to_string(),
            "-monitor".into(),
            format!("unix:{},server,nowait", socket.display()),
        ],
        ..Launch::default()
    };
    let command = crate::qemu::command(&board, &built, &launch)?;
    eprintln!("xtask: {}", crate::qemu::describe(&command));
    let timeout = Duration::from_secs(options.timeout.unwrap_or(600));
    let mut session = Session::start(command, timeout)?;
    let prompt = Regex::new("hinoki# ").unwrap();
    let mut position = session.wait_for(&prompt, 0)?;
    let mut monitor = Monitor::connect(&socket)?;
    monitor.command("log exec,nochain,in_asm")?;
    eprintln!("xtask: {}: {}", board.board, command_line);
    session.send_line(&command_line)?;
    position = session.wait_for(&prompt, position)?;
    monitor.command("log none")?;
    let output = session.output();
    session.send_line("poweroff")?;
    let _ = session.finish();
    eprint!("{}", output.get(position.min(output.len())..).unwrap_or(""));
    let symbols = SymbolTable::load(&built.elf)?;
    let profile = analyze(&log, &symbols, options.from.as_deref(), options.to.as_deref())?;
    print!("{}", profile.table(per, &command_line, options));
    Ok(())
}

/// A connection to QEMU's human monitor.
struct Monitor {
    stream: UnixStream,
}

impl Monitor {
    fn connect(path: &Path) -> Result<Monitor, String> {
        let started = Instant::now();
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(stream) => break stream,
                Err(error) if started.elapsed() > Duration::from_secs(10) => {
                    return Err(format!("connecting to the QEMU monitor at {}: {error}", path.display()))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        stream.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
        let mut monitor = Monitor { stream };
        monitor.read_prompt()?;
        Ok(monitor)
    }

    /// Reads up to the monitor's `(qemu) ` prompt.
    fn read_prompt(&mut self) -> Result<String, String> {
        let mut received = Vec::new();
        let mut buffer = [0u8; 1024];
        while !received.ends_with(b"(qemu) ") {
            let count = self.stream.read(&mut buffer).map_err(|e| format!("reading the QEMU monitor: {e}"))?;
            if count == 0 {
                return Err("the QEMU monitor closed the connection".into());
            }
            received.extend_from_slice(&buffer[..count]);
        }
        Ok(String::from_utf8_lossy(&received).into_owned())
    }

    fn command(&mut self, line: &str) -> Result<(), String> {
        self.stream.write_all(format!("{line}\n").as_bytes()).map_err(|e| format!("writing to the QEMU monitor: {e}"))?;
        let reply = self.read_prompt()?;
        if reply.contains("Invalid") || reply.contains("unknown") {
            return Err(format!("QEMU monitor refused `{line}`: {reply}"));
        }
        Ok(())
    }
}

/// Executed instructions, blocks and entries per function over the window.
#[derive(Debug, Default, PartialEq)]
pub struct Profile {
    /// (function, instructions, blocks, entries at the function's first address)
    pub functions: Vec<(String, u64, u64, u64)>,
    /// Executed blocks whose listing was missing from the log (counted as one instruction).
    pub unlisted_blocks: u64,
}

impl Profile {
    fn total(&self) -> u64 {
        self.functions.iter().map(|f| f.1).sum()
    }

    fn table(&self, per: f64, command_line: &str, options: &crate::Options) -> String {
        let mut out = String::new();
        let window = match (&options.from, &options.to) {
            (None, None) => "the whole command".to_string(),
            (from, to) => format!("from `{}` to `{}`", from.as_deref().unwrap_or("start"), to.as_deref().unwrap_or("end")),
        };
        out.push_str(&format!(
            "`{command_line}`, {window}, per {per}: {:.1} instructions (-icount shift=0, release)\n\n",
            self.total() as f64 / per
        ));
        out.push_str("| function | instructions | blocks | calls |\n|---|---:|---:|---:|\n");
        for (name, instructions, blocks, entries) in self.functions.iter().take(TOP_FUNCTIONS) {
            out.push_str(&format!(
                "| `{}` | {:.1} | {:.1} | {:.2} |\n",
                name,
                *instructions as f64 / per,
                *blocks as f64 / per,
                *entries as f64 / per
            ));
        }
        if self.functions.len() > TOP_FUNCTIONS {
            let rest: u64 = self.functions[TOP_FUNCTIONS..].iter().map(|f| f.1).sum();
            out.push_str(&format!("| ({} more functions) | {:.1} | | |\n", self.functions.len() - TOP_FUNCTIONS, rest as f64 / per));
        }
        if self.unlisted_blocks > 0 {
            out.push_str(&format!(
                "\n{} executed blocks had no listing in the log and count one instruction each.\n",
                self.unlisted_blocks
            ));
        }
        out
    }
}

/// Reads a QEMU log of `in_asm` listings and `exec` records and attributes the executed
/// instructions between the `from` and `to` markers to functions.
pub fn analyze(log: &Path, symbols: &SymbolTable, from: Option<&str>, to: Option<&str>) -> Result<Profile, String> {
    let file = std::fs::File::open(log).map_err(|e| format!("opening {}: {e}", log.display()))?;
    analyze_lines(BufReader::new(file).lines().map_while(Result::ok), symbols, from, to)
}

fn analyze_lines(
    lines: impl Iterator<Item = String>,
    symbols: &SymbolTable,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<Profile, String> {
    let address = Regex::new(r"^0x([0-9a-fA-F]+):").unwrap();
    let executed = Regex::new(r"^Trace \d+: 0x[0-9a-fA-F]+ \[[0-9a-fA-F]+/([0-9a-fA-F]+)/").unwrap();
    let mut block_sizes: HashMap<u64, u64> = HashMap::new();
    let mut listing: Option<(u64, u64)> = None;
    let mut trace: Vec<u64> = Vec::new();
    for line in lines {
        if line.starts_with("IN:") {
            listing = Some((0, 0));
            continue;
        }
        if let Some((start, count)) = listing.as_mut() {
            if let Some(captures) = address.captures(&line) {
                if *count == 0 {
                    *start = u64::from_str_radix(&captures[1], 16).unwrap_or(0);
                }
                *count += 1;
                continue;
            }
            if *count > 0 {
                block_sizes.entry(*start).or_insert(*count);
            }
            listing = None;
        }
        if let Some(captures) = executed.captures(&line) {
            trace.push(u64::from_str_radix(&captures[1], 16).map_err(|e| e.to_string())?);
        }
    }
    if let Some((start, count)) = listing.filter(|&(_, count)| count > 0) {
        block_sizes.entry(start).or_insert(count);
    }
    if trace.is_empty() {
        return Err("the log holds no executed blocks (did `log exec` take effect?)".into());
    }
    let functions: Vec<Option<(u64, String)>> = trace.iter().map(|&pc| symbols.function(pc)).collect();
    let contains = |index: usize, marker: &str| functions[index].as_ref().is_some_and(|(_, name)| name.contains(marker));
    let start = match from {
        Some(marker) => {
            (0..trace.len()).find(|&i| contains(i, marker)).ok_or_else(|| format!("no executed block in a function matching `{marker}`"))?
        }
        None => 0,
    };
    let end = match to {
        Some(marker) => (start..trace.len())
            .find(|&i| contains(i, marker))
            .ok_or_else(|| format!("no executed block in a function matching `{marker}` after the start"))?,
        None => trace.len(),
    };
    let mut totals: HashMap<String, (u64, u64, u64)> = HashMap::new();
    let mut unlisted_blocks = 0;
    for index in start..end {
        let pc = trace[index];
        let size = match block_sizes.get(&pc) {
            Some(&size) => size,
            None => {
                unlisted_blocks += 1;
                1
            }
        };
        let (name, entry) = match &functions[index] {
            Some((function_start, name)) => (name.clone(), *function_start == pc),
            None => (format!("{pc:#x}"), false),
        };
        let total = totals.entry(name).or_default();
        total.0 += size;
        total.1 += 1;
        total.2 += u64::from(entry);
    }
    let mut functions: Vec<(String, u64, u64, u64)> = totals.into_iter().map(|(name, (i, b, e))| (name, i, b, e)).collect();
    functions.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(Profile { functions, unlisted_blocks })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> SymbolTable {
        SymbolTable::from_symbols(vec![
            (0x1000, 0x100, "outer".into()),
            (0x1100, 0x40, "inner".into()),
            (0x2000, 0x10, "marker_end".into()),
        ])
    }

    const LOG: &str = "\
IN: outer
0x00001000:  d503201f  nop
0x00001004:  d503201f  nop
0x00001008:  94000040  bl       #0x1100

IN: inner
0x00001100:  d65f03c0  ret

IN: outer
0x0000100c:  d65f03c0  ret

IN: marker_end
0x00002000:  d65f03c0  ret

Trace 0: 0x7f0000000000 [00004000/0000000000001000/00000021/ff022200] 
Trace 0: 0x7f0000000100 [00004000/0000000000001100/00000021/ff022200] 
Trace 0: 0x7f0000000200 [00004000/000000000000100c/00000021/ff022200] 
Trace 0: 0x7f0000000000 [00004000/0000000000001000/00000021/ff022200] 
Trace 0: 0x7f0000000100 [00004000/0000000000001100/00000021/ff022200] 
Trace 0: 0x7f0000000200 [00004000/000000000000100c/00000021/ff022200] 
Trace 0: 0x7f0000000300 [00004000/0000000000002000/00000021/ff022200] 
Trace 0: 0x7f0000000000 [00004000/0000000000001000/00000021/ff022200] 
";

    #[test]
    fn attributes_block_instructions_to_functions_within_the_window() {
        let profile = analyze_lines(LOG.lines().map(String::from), &table(), Some("outer"), Some("marker_end")).unwrap();
        assert_eq!(profile.functions, vec![("outer".to_string(), 8, 4, 2), ("inner".to_string(), 2, 2, 2)]);
        assert_eq!(profile.unlisted_blocks, 0);
    }

    #[test]
    fn whole_log_and_unlisted_blocks() {
        let log = format!("{LOG}Trace 0: 0x7f0000000400 [00004000/0000000000001010/00000021/ff022200] \n");
        let profile = analyze_lines(log.lines().map(String::from), &table(), None, None).unwrap();
        let outer = profile.functions.iter().find(|f| f.0 == "outer").unwrap();
        assert_eq!((outer.1, outer.2), (3 * 3 + 2 + 1, 6));
        assert_eq!(profile.unlisted_blocks, 1);
    }

    #[test]
    fn missing_markers_and_empty_logs_are_errors() {
        assert!(analyze_lines(LOG.lines().map(String::from), &table(), Some("absent"), None).is_err());
        assert!(analyze_lines("IN: outer\n0x00001000:  d503201f  nop\n".lines().map(String::from), &table(), None, None).is_err());
    }
}
