//! Running boards under QEMU: the command line, an interactive console, and scripted sessions with timeouts for tests.

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use regex::Regex;

use crate::boards::Board;
use crate::image::Built;
use crate::symbols::Symbolizer;

/// What to boot and how.
#[derive(Default, Clone)]
pub struct Launch {
    /// Replaces the value of `-M` in the board's QEMU command.
    pub machine: Option<String>,
    /// `-smp N`, for boards whose QEMU machine takes it.
    pub smp: Option<u32>,
    /// The kernel command line (`-append`).
    pub append: Option<String>,
    /// Wait for gdb on :1234.
    pub gdb: bool,
    /// Extra QEMU arguments.
    pub extra: Vec<String>,
}

/// Builds the QEMU command for `board` booting `built`.
pub fn command(board: &Board, built: &Built, launch: &Launch) -> Result<Command, String> {
    let (program, arguments) = board.qemu.split_first().ok_or("the board's QEMU command is empty")?;
    crate::setup::ensure_qemu(program)?;
    let mut arguments: Vec<String> = arguments.to_vec();
    if let Some(machine) = &launch.machine {
        match arguments.iter().position(|a| a == "-M" || a == "-machine") {
            Some(index) if index + 1 < arguments.len() => arguments[index + 1] = machine.clone(),
            _ => arguments.extend(["-M".to_string(), machine.clone()]),
        }
    }
    if let Some(count) = launch.smp {
        if board.smp_flag {
            arguments.extend(["-smp".to_string(), count.to_string()]);
        } else if count != 4 {
            eprintln!("xtask: {} always has 4 CPUs; ignoring --smp {count}", board.board);
        }
    }
    arguments.extend(["-kernel".to_string(), built.kernel.display().to_string()]);
    if let Some(append) = launch.append.as_ref().filter(|a| !a.is_empty()) {
        arguments.extend(["-append".to_string(), append.clone()]);
    }
    if launch.gdb {
        arguments.extend(["-s".to_string(), "-S".to_string()]);
    }
    arguments.extend(launch.extra.iter().cloned());
    let mut command = Command::new(program);
    command.args(&arguments);
    Ok(command)
}

/// QEMU arguments attaching each image in `disks` as a virtio-blk device: virtio-mmio on
/// the aarch64 `virt` board, virtio-pci on the PC. The first image becomes `vda`.
pub fn disk_arguments(board: &Board, disks: &[std::path::PathBuf]) -> Result<Vec<String>, String> {
    if disks.is_empty() {
        return Ok(Vec::new());
    }
    let device = match board.board.as_str() {
        "qemu-virt" => "virtio-blk-device",
        "pc" => "virtio-blk-pci",
        other => return Err(format!("--disk: {other} has no virtio-blk transport (qemu-virt and pc have)")),
    };
    let mut arguments = Vec::new();
    for (index, disk) in disks.iter().enumerate() {
        if !disk.is_file() {
            return Err(format!("--disk: {} is not a file", disk.display()));
        }
        let path = disk.canonicalize().map_err(|e| format!("--disk {}: {e}", disk.display()))?;
        arguments.push("-drive".to_string());
        arguments.push(format!("file={},format=raw,if=none,id=disk{index}", path.display()));
        arguments.push("-device".to_string());
        arguments.push(format!("{device},drive=disk{index}"));
    }
    Ok(arguments)
}

/// Shell-quoted text of a command, for printing.
pub fn describe(command: &Command) -> String {
    let mut parts = vec![command.get_program().to_string_lossy().to_string()];
    for argument in command.get_args() {
        let text = argument.to_string_lossy();
        if text.contains(' ') || text.is_empty() {
            parts.push(format!("'{text}'"));
        } else {
            parts.push(text.to_string());
        }
    }
    parts.join(" ")
}

/// `cargo xtask run`: boots a board with the serial console on this terminal.
pub fn run_interactive(options: &crate::Options) -> Result<(), String> {
    let board = crate::boards::find(options.board.as_deref())?;
    let built = crate::image::build_with(&board, options.release, options.defmt)?;
    // Deterministic timing: guest time advances one nanosecond per instruction, which
    // multi-threaded TCG cannot do.
    let mut extra = if options.icount { ["-accel", "tcg,thread=single", "-icount", "shift=0"].map(String::from).to_vec() } else { vec![] };
    extra.extend(disk_arguments(&board, &options.disks)?);
    // A later `-cpu` overrides the board's own.
    extra.extend(options.cpu.iter().flat_map(|model| ["-cpu".to_string(), model.clone()]));
    let launch = Launch { machine: options.machine.clone(), smp: options.smp, append: options.append.clone(), gdb: options.gdb, extra };
    let command = command(&board, &built, &launch)?;
    // mon:stdio multiplexes the QEMU monitor on the terminal: Ctrl-A X quits, Ctrl-A C toggles.
    let arguments: Vec<String> =
        command.get_args().map(|a| if a == "stdio" { "mon:stdio".to_string() } else { a.to_string_lossy().to_string() }).collect();
    let mut command = Command::new(command.get_program());
    command.args(&arguments);
    eprintln!("xtask: {}", describe(&command));
    eprintln!("xtask: console on this terminal; quit with Ctrl-A X (or 'poweroff' in the shell)");
    if options.gdb {
        let debugger = if board.arch == "aarch64" { "gdb-multiarch" } else { "gdb" };
        eprintln!("xtask: QEMU waits for a debugger: {debugger} -ex 'target remote :1234' {}", built.elf.display());
    }
    if options.defmt {
        return run_with_defmt_decoder(command, &built);
    }
    let symbolizer = Symbolizer::new(&built.elf).ok();
    let mut child = command
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("starting QEMU: {e}"))?;
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut line = Vec::new();
    let mut buffer = [0u8; 4096];
    let terminal = std::io::stdout();
    loop {
        let count = match stdout.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(count) => count,
        };
        let mut out = terminal.lock();
        let _ = out.write_all(&buffer[..count]);
        for &byte in &buffer[..count] {
            if byte == b'\n' {
                if let Some(annotated) = symbolizer.as_ref().and_then(|s| s.annotate(&String::from_utf8_lossy(&line))) {
                    let _ = write!(out, "{}\r\n", annotated.trim_end());
                }
                line.clear();
            } else {
                line.push(byte);
            }
        }
        let _ = out.flush();
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    match status.code() {
        Some(0) => Ok(()),
        Some(code) => Err(format!("QEMU exited with status {code}")),
        None => Err("QEMU was killed by a signal".into()),
    }
}

/// Pipes QEMU's console through `defmt-print -e ELF`, installing defmt-print if needed.
fn run_with_defmt_decoder(mut command: Command, built: &Built) -> Result<(), String> {
    crate::setup::ensure_defmt_print()?;
    let mut qemu = command
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("starting QEMU: {e}"))?;
    let frames = qemu.stdout.take().expect("piped stdout");
    let mut decoder = Command::new("defmt-print")
        .args(["-e", &built.elf.display().to_string(), "--show-skipped-frames"])
        .stdin(Stdio::from(frames))
        .spawn()
        .map_err(|e| format!("starting defmt-print: {e}"))?;
    let status = qemu.wait().map_err(|e| e.to_string())?;
    let _ = decoder.wait();
    match status.code() {
        Some(0) => Ok(()),
        Some(code) => Err(format!("QEMU exited with status {code}")),
        None => Err("QEMU was killed by a signal".into()),
    }
}

/// How a scripted session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// QEMU exited with this status.
    Exited(i32),
    /// QEMU was killed after the timeout.
    TimedOut,
    /// QEMU died from a signal.
    Signalled,
}

/// A QEMU process whose console is read into a buffer and written from a script.
pub struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    output: Arc<Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    deadline: Instant,
    /// When QEMU started.
    pub started: Instant,
}

impl Session {
    /// Starts QEMU with piped console; `timeout` bounds the whole session.
    pub fn start(mut command: Command, timeout: Duration) -> Result<Session, String> {
        let started = Instant::now();
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting QEMU: {e}"))?;
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let sink = Arc::clone(&output);
        let reader = std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(count) = stdout.read(&mut buffer) {
                if count == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buffer[..count]);
            }
        });
        let error_sink = Arc::clone(&output);
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = stderr.read_to_end(&mut text);
            if !text.is_empty() {
                let mut sink = error_sink.lock().unwrap();
                sink.extend_from_slice(b"\n[qemu stderr] ");
                sink.extend_from_slice(&text);
            }
        });
        let stdin = child.stdin.take();
        Ok(Session { child, stdin, output, reader: Some(reader), deadline: started + timeout, started })
    }

    /// Everything the console printed so far.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).replace('\r', "")
    }

    /// Waits until the output after byte `from` matches `pattern`; returns the end of the
    /// match (for the next wait), or an error on timeout or QEMU exit.
    pub fn wait_for(&mut self, pattern: &Regex, from: usize) -> Result<usize, String> {
        loop {
            let text = self.output();
            if let Some(found) = text.get(from..).and_then(|rest| pattern.find(rest)) {
                return Ok(from + found.end());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(50));
                let text = self.output();
                if let Some(found) = text.get(from..).and_then(|rest| pattern.find(rest)) {
                    return Ok(from + found.end());
                }
                return Err(format!("QEMU exited ({status}) before the console showed /{pattern}/"));
            }
            if Instant::now() > self.deadline {
                return Err(format!("timed out waiting for /{pattern}/"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Types a line into the console (with a carriage return, as a terminal sends).
    pub fn send_line(&mut self, line: &str) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("console input closed")?;
        stdin
            .write_all(line.as_bytes())
            .and_then(|_| stdin.write_all(b"\r"))
            .and_then(|_| stdin.flush())
            .map_err(|e| format!("writing to the console: {e}"))
    }

    /// Waits for QEMU to exit, killing it at the deadline.
    pub fn finish(self) -> (Ending, String, Duration) {
        let (ending, raw, elapsed) = self.finish_raw();
        (ending, String::from_utf8_lossy(&raw).replace('\r', ""), elapsed)
    }

    /// Like [`Session::finish`], returning the console's bytes as they came (for decoders).
    pub fn finish_raw(mut self) -> (Ending, Vec<u8>, Duration) {
        let ending = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status.code().map(Ending::Exited).unwrap_or(Ending::Signalled),
                Ok(None) if Instant::now() > self.deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break Ending::TimedOut;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(_) => break Ending::Signalled,
            }
        };
        let elapsed = self.started.elapsed();
        drop(self.stdin.take());
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        std::thread::sleep(Duration::from_millis(20));
        let raw = self.output.lock().unwrap().clone();
        (ending, raw, elapsed)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
