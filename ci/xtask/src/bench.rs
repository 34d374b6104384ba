//! `cargo xtask bench`: boot time per board under QEMU, and the host allocator benchmarks.

use std::process::Command;
use std::time::Duration;

use regex::Regex;

use crate::qemu::{Launch, Session};

/// Runs the benchmark named by the first positional argument (`boot` by default).
pub fn run(options: &crate::Options) -> Result<(), String> {
    match options.positional.first().map(String::as_str).unwrap_or("boot") {
        "boot" => boot(options),
        "mm" => host_bench("mm"),
        "disk" => crate::bench_disk::run(options),
        "all" => {
            boot(options)?;
            host_bench("mm")
        }
        other => Err(format!("unknown benchmark '{other}' (boot, mm, disk, all)")),
    }
}

fn host_bench(name: &str) -> Result<(), String> {
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(crate::root())
        .args(["bench", "--package", "hinoki-kernel", "--bench", name])
        .status()
        .map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo bench --bench {name} failed"))
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[values.len() / 2]
}

/// Boot time: guest microseconds from kernel entry to the prompt (the kernel's own
/// counter-based log line) and host wall time from QEMU start to the prompt on the console.
fn boot(options: &crate::Options) -> Result<(), String> {
    let boards = match &options.board {
        Some(name) => vec![crate::boards::find(Some(name))?],
        None => crate::boards::all()?,
    };
    let runs = options.runs.unwrap_or(5).max(1);
    let guest_pattern = Regex::new(r"boot: (\d+) us from kernel entry to the shell").unwrap();
    let prompt = Regex::new("hinoki# ").unwrap();
    println!("{:<10} {:>6} {:>24} {:>26}", "board", "runs", "guest entry-to-prompt", "QEMU start-to-prompt (wall)");
    for board in boards {
        let built = crate::image::build(&board, true)?;
        let (mut guest, mut wall) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let command = crate::qemu::command(&board, &built, &Launch::default())?;
            let mut session = Session::start(command, Duration::from_secs(30))?;
            session.wait_for(&prompt, 0)?;
            wall.push(session.started.elapsed().as_secs_f64() * 1000.0);
            let output = session.output();
            if let Some(captures) = guest_pattern.captures(&output) {
                guest.push(captures[1].parse::<f64>().unwrap_or(0.0) / 1000.0);
            }
            session.send_line("poweroff")?;
            let _ = session.finish();
        }
        let guest_text = if guest.is_empty() { "n/a".to_string() } else { format!("{:.2} ms", median(&mut guest)) };
        println!("{:<10} {:>6} {:>24} {:>26}", board.board, runs, guest_text, format!("{:.0} ms", median(&mut wall)));
    }
    println!("(medians; release builds; TCG)");
    Ok(())
}
