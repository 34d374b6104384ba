//! `cargo xtask`: the one entry point for building, running, testing and benchmarking Hinoki.

mod bench;
mod bench_disk;
mod boards;
mod image;
mod interop;
mod profile;
mod qemu;
mod setup;
mod symbols;
mod test;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <verb> [options]

verbs:
  build [--board B] [--release]         build a board's kernel and image
  run [--board B] [--smp N] [--gdb] [--release] [--append ARGS] [--machine M] [--cpu MODEL] [--defmt] [--icount] [--disk IMAGE]...
                                        boot a board in QEMU with the console on this terminal
                                        (--defmt: logs as defmt frames, decoded by defmt-print;
                                        --icount: single-threaded TCG, -icount shift=0;
                                        --cpu: another QEMU CPU model, e.g. max for RNDR/RDRAND;
                                        --disk: attach a raw image as virtio-blk, vda first; an
                                        ext2 file system on vda or vda1 is mounted on /mnt)
  test [--board B] [--config C] [--suite PREFIX] [--no-host] [--timeout SECONDS]
                                        host tests, then the board x suite matrix under QEMU
  image --board B --out DIR [--release] write the files for a board's boot medium (SD card for the Pis)
  bench [boot] [--board B] [--runs N]   boot-time benchmark (guest entry-to-prompt, QEMU start-to-prompt)
  bench mm                              host allocator benchmarks (criterion)
  bench sched [--board B] [--timeout S] the kernel's latency and Thread-Metric benchmarks per board,
                                        wall time and instruction counts (-icount shift=0)
  bench mm-kernel [--board B] [--smp N] the kernel's memory benchmarks: 1 CPU (wall, instructions)
                                        and N CPUs at once (default 4), fragmentation
  bench disk [--board B] [--runs N]     ext2 over virtio-blk under QEMU: sequential MiB/s and
                                        metadata ops/s, cold and warm cache
  bench fs                              host ext2 read benchmark against ext4-view (criterion, needs mke2fs)
  profile [--board B] [--smp N] [--from SYMBOL] [--to SYMBOL] [--per N] COMMAND...
                                        instructions per kernel function while the shell runs
                                        COMMAND (release, -icount shift=0, QEMU's log of executed
                                        blocks); --from/--to: window between the first blocks of
                                        two functions, --per: divide by the iteration count
  boards                                list the boards

The default board is qemu-virt.";

/// The repository root (the xtask lives in ci/xtask).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repository root")
}

/// Cargo's target directory: `CARGO_TARGET_DIR` when set (relative to the repository root
/// if relative), `target/` otherwise. Every build product and report lives below it.
pub fn target_directory() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(directory) => root().join(directory),
        None => root().join("target"),
    }
}

/// Parsed command-line options shared by the verbs.
#[derive(Default, Debug)]
pub struct Options {
    pub board: Option<String>,
    pub config: Option<String>,
    pub suite: Option<String>,
    pub release: bool,
    pub smp: Option<u32>,
    pub gdb: bool,
    pub defmt: bool,
    pub icount: bool,
    pub no_host: bool,
    pub out: Option<PathBuf>,
    pub append: Option<String>,
    pub machine: Option<String>,
    pub cpu: Option<String>,
    pub timeout: Option<u64>,
    pub runs: Option<usize>,
    /// Disk images to attach as virtio-blk (`--disk`, repeatable).
    pub disks: Vec<PathBuf>,
    /// `profile`: the window's first and last function markers and the divisor.
    pub from: Option<String>,
    pub to: Option<String>,
    pub per: Option<f64>,
    pub positional: Vec<String>,
}

fn parse_options(arguments: &[String]) -> Result<Options, String> {
    let mut options = Options::default();
    let mut iterator = arguments.iter();
    while let Some(argument) = iterator.next() {
        let mut value = |name: &str| iterator.next().cloned().ok_or_else(|| format!("{name} needs a value"));
        match argument.as_str() {
            "--board" => options.board = Some(value("--board")?),
            "--config" => options.config = Some(value("--config")?),
            "--suite" => options.suite = Some(value("--suite")?),
            "--release" => options.release = true,
            "--gdb" => options.gdb = true,
            "--defmt" => options.defmt = true,
            "--icount" => options.icount = true,
            "--no-host" => options.no_host = true,
            "--smp" => {
                let count: u32 = value("--smp")?.parse().map_err(|_| "--smp needs a number".to_string())?;
                if !(1..=8).contains(&count) {
                    return Err("--smp must be between 1 and 8".into());
                }
                options.smp = Some(count);
            }
            "--disk" => options.disks.push(PathBuf::from(value("--disk")?)),
            "--out" => options.out = Some(PathBuf::from(value("--out")?)),
            "--append" => options.append = Some(value("--append")?),
            "--machine" => options.machine = Some(value("--machine")?),
            "--cpu" => options.cpu = Some(value("--cpu")?),
            "--timeout" => options.timeout = Some(value("--timeout")?.parse().map_err(|_| "--timeout needs seconds".to_string())?),
            "--from" => options.from = Some(value("--from")?),
            "--to" => options.to = Some(value("--to")?),
            "--per" => options.per = Some(value("--per")?.parse().map_err(|_| "--per needs a number".to_string())?),
            "--runs" => options.runs = Some(value("--runs")?.parse().map_err(|_| "--runs needs a number".to_string())?),
            other if other.starts_with("--") => return Err(format!("unknown option {other}")),
            other => options.positional.push(other.to_string()),
        }
    }
    Ok(options)
}

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let Some(verb) = arguments.first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let options = match parse_options(&arguments[1..]) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("xtask: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match verb.as_str() {
        "build" => boards::find(options.board.as_deref()).and_then(|board| image::build(&board, options.release).map(|_| ())),
        "run" => qemu::run_interactive(&options),
        "test" => test::run(&options),
        "image" => image::write_boot_medium(&options),
        "bench" => bench::run(&options),
        "profile" => profile::run(&options),
        "boards" => boards::list(),
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown verb '{other}'\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: error: {message}");
            ExitCode::FAILURE
        }
    }
}
