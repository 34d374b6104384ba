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
        "sched" => sched(options),
        "mm-kernel" => mm_kernel(options),
        "disk" => crate::bench_disk::run(options),
        "fs" => fs(),
        "all" => {
            boot(options)?;
            host_bench("mm")?;
            fs()
        }
        other => Err(format!("unknown benchmark '{other}' (boot, mm, sched, mm-kernel, disk, fs, all)")),
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

/// The host file-system benchmark: Hinoki's ext2 read path against ext4-view on the same
/// mke2fs image (kernel/benches/ext2.rs; results in docs/benchmarks-fs.md).
fn fs() -> Result<(), String> {
    if Command::new("mke2fs").arg("-V").output().is_err() {
        return Err("the fs benchmark needs mke2fs (apt-get install e2fsprogs)".into());
    }
    host_bench("ext2")
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

/// One `name value unit` line of the kernel's `bench` shell command.
#[derive(Clone, Debug, PartialEq)]
struct Figure {
    name: String,
    value: f64,
    unit: String,
}

/// The figures in console output: lines `(latency|threadmetric|mm)\.NAME VALUE UNIT`.
fn parse_figures(output: &str) -> Vec<Figure> {
    let line = Regex::new(r"(?m)^((?:latency|threadmetric|mm)\.\S+) (\d+(?:\.\d+)?) (\S+)\s*$").unwrap();
    line.captures_iter(output)
        .filter_map(|captures| {
            Some(Figure { name: captures[1].to_string(), value: captures[2].parse().ok()?, unit: captures[3].to_string() })
        })
        .chain(Regex::new(r"(?m)^((?:latency|threadmetric|mm)\.\S+) n/a\b").unwrap().captures_iter(output).map(|captures| Figure {
            name: captures[1].to_string(),
            value: 0.0,
            unit: "n/a".into(),
        }))
        .collect()
}

/// Boots `board` (release) with `extra` QEMU arguments, types each of `commands` at the
/// shell prompt, waits for the next prompt, powers off, and returns the console output.
fn shell_session(
    board: &crate::boards::Board,
    built: &crate::image::Built,
    launch: &Launch,
    commands: &[&str],
    timeout: Duration,
) -> Result<String, String> {
    let command = crate::qemu::command(board, built, launch)?;
    eprintln!("xtask: {}", crate::qemu::describe(&command));
    let mut session = Session::start(command, timeout)?;
    let prompt = Regex::new("hinoki# ").unwrap();
    let mut position = session.wait_for(&prompt, 0)?;
    for line in commands {
        eprintln!("xtask: {}: {}", board.board, line);
        session.send_line(line)?;
        position = session.wait_for(&prompt, position)?;
    }
    session.send_line("poweroff")?;
    let (_, output, _) = session.finish();
    Ok(output)
}

/// Linux's figures for scale, measured in the same QEMU (virt, cortex-a72, TCG).
const LINUX_REFERENCE: [(&str, &str); 2] =
    [("latency.yield_switch", "5.8 us (sched_yield switch)"), ("latency.semaphore_ping_pong", "28 us (futex ping-pong)")];

fn format_nanoseconds(value: f64) -> String {
    if value >= 10_000.0 {
        format!("{:.1} us", value / 1000.0)
    } else if value >= 1000.0 {
        format!("{:.2} us", value / 1000.0)
    } else {
        format!("{value:.0} ns")
    }
}

/// `cargo xtask bench sched`: the kernel's latency and Thread-Metric benchmarks on each
/// board (release builds), once in wall time and once under `-icount shift=0`, where the
/// guest clock counts instructions, so each `ns` figure is an instruction count.
fn sched(options: &crate::Options) -> Result<(), String> {
    let boards = match &options.board {
        Some(name) => vec![crate::boards::find(Some(name))?],
        None => crate::boards::all()?,
    };
    let seconds = options.timeout.unwrap_or(600);
    let commands = ["bench latency", "bench threadmetric 1"];
    for board in boards {
        let built = crate::image::build(&board, true)?;
        let wall_output = shell_session(&board, &built, &Launch::default(), &commands, Duration::from_secs(seconds))?;
        let icount = Launch { extra: vec!["-icount".into(), "shift=0".into()], ..Launch::default() };
        let icount_output = shell_session(&board, &built, &icount, &commands, Duration::from_secs(seconds))?;
        let (wall, counted) = (parse_figures(&wall_output), parse_figures(&icount_output));
        if wall.is_empty() || counted.is_empty() {
            return Err(format!("{}: the kernel printed no benchmark figures; console:\n{}", board.board, wall_output));
        }
        print!("{}", sched_table(&board.board, &wall, &counted));
    }
    println!("(release builds; TCG; wall times depend on the host and its load; instructions from -icount shift=0)");
    Ok(())
}

/// The per-board tables of `bench sched`, as Markdown.
fn sched_table(board: &str, wall: &[Figure], counted: &[Figure]) -> String {
    let find = |figures: &[Figure], name: &str| figures.iter().find(|figure| figure.name == name).cloned();
    let mut text =
        format!("\n### {board}\n\n| latency | wall (TCG) | instructions (-icount shift=0) | Linux 6.1, QEMU virt cortex-a72 TCG |\n|---|---:|---:|---|\n");
    for name in unavailable(wall).iter().filter(|name| name.starts_with("latency.")) {
        text += &format!("| `{name}` | n/a | n/a | |\n");
    }
    for figure in wall.iter().filter(|figure| figure.name.starts_with("latency.") && figure.unit == "ns") {
        let instructions = find(counted, &figure.name).map_or("n/a".to_string(), |counted| format!("{:.0}", counted.value));
        let linux = LINUX_REFERENCE.iter().find(|(name, _)| *name == figure.name).map_or("", |(_, text)| text);
        text += &format!("| `{}` | {} | {} | {} |\n", figure.name, format_nanoseconds(figure.value), instructions, linux);
    }
    text += "\n| Thread-Metric (1 s intervals) | count, wall | normalized, wall | count, 10^9 instructions | normalized |\n|---|---:|---:|---:|---:|\n";
    for figure in wall.iter().filter(|figure| figure.name.starts_with("threadmetric.") && figure.unit == "count") {
        let normalized_name = format!("{}.normalized", figure.name);
        let normalized =
            |figures: &[Figure]| find(figures, &normalized_name).map_or("1.000".to_string(), |figure| format!("{:.3}", figure.value));
        let counted_value = find(counted, &figure.name).map_or("n/a".to_string(), |counted| format!("{:.0}", counted.value));
        text += &format!(
            "| {} | {:.0} | {} | {} | {} |\n",
            figure.name.trim_start_matches("threadmetric."),
            figure.value,
            normalized(wall),
            counted_value,
            normalized(counted)
        );
    }
    for name in unavailable(wall).iter().filter(|name| name.starts_with("threadmetric.")) {
        text += &format!("| {} | n/a | | n/a | |\n", name.trim_start_matches("threadmetric."));
    }
    text
}

/// Benchmarks the kernel reported as not available (`NAME n/a (REASON)`), by name.
fn unavailable(figures: &[Figure]) -> Vec<String> {
    figures.iter().filter(|figure| figure.unit == "n/a").map(|figure| figure.name.clone()).collect()
}

/// `cargo xtask bench mm-kernel`: the kernel's memory benchmarks (`bench mm`) on one
/// board (qemu-virt by default, release): with 1 CPU in wall time and under `-icount
/// shift=0` (instructions), and with `--smp N` (default 4) CPUs running loops at once.
fn mm_kernel(options: &crate::Options) -> Result<(), String> {
    let board = crate::boards::find(options.board.as_deref())?;
    let cpus = options.smp.unwrap_or(4);
    let timeout = Duration::from_secs(options.timeout.unwrap_or(600));
    let built = crate::image::build(&board, true)?;
    let single = Launch { smp: Some(1), ..Launch::default() };
    let counted = Launch { smp: Some(1), extra: vec!["-icount".into(), "shift=0".into()], ..Launch::default() };
    let several = Launch { smp: Some(cpus), ..Launch::default() };
    let single_output = shell_session(&board, &built, &single, &["bench mm 1"], timeout)?;
    let counted_output = shell_session(&board, &built, &counted, &["bench mm 1"], timeout)?;
    let command = format!("bench mm {cpus}");
    let several_output = shell_session(&board, &built, &several, &[command.as_str()], timeout)?;
    let (single_figures, counted_figures, several_figures) =
        (parse_figures(&single_output), parse_figures(&counted_output), parse_figures(&several_output));
    if single_figures.is_empty() || several_figures.is_empty() {
        return Err(format!("{}: the kernel printed no memory figures; console:\n{}", board.board, several_output));
    }
    print!("{}", mm_table(&board.board, cpus, &single_figures, &counted_figures, &several_figures));
    let buddyinfo = Regex::new(r"(?m)^buddyinfo \((\w+)\): (.*)$").unwrap();
    println!("\n/proc/buddyinfo ({} CPUs run):", cpus);
    for captures in buddyinfo.captures_iter(&several_output) {
        println!("  {:<11} {}", &captures[1], &captures[2]);
    }
    println!("(release build; TCG; wall times depend on the host and its load; instructions from -icount shift=0)");
    Ok(())
}

/// The table of `bench mm-kernel`, as Markdown.
fn mm_table(board: &str, cpus: u32, single: &[Figure], counted: &[Figure], several: &[Figure]) -> String {
    let value = |figures: &[Figure], name: &str| figures.iter().find(|figure| figure.name == name).map(|figure| figure.value);
    let show = |value: Option<f64>| value.map_or("n/a".to_string(), |value| format!("{value:.0}"));
    let mut text = format!(
        "\n### {board}: memory, 1 CPU and {cpus} CPUs at once\n\n| workload | 1 CPU: ns/op (wall) | 1 CPU: instructions/op | 1 CPU: ops/s | {cpus} loops: slowest ns/op | {cpus} loops: ops/s per loop | {cpus} loops: ops/s total |\n|---|---:|---:|---:|---:|---:|---:|\n"
    );
    for workload in ["page_order0", "kmalloc64", "mixed"] {
        text += &format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            workload,
            show(value(single, &format!("mm.single.{workload}.ns_per_op"))),
            show(value(counted, &format!("mm.single.{workload}.ns_per_op"))),
            show(value(single, &format!("mm.single.{workload}.ops_per_second"))),
            show(value(several, &format!("mm.concurrent.{workload}.slowest_ns_per_op"))),
            show(value(several, &format!("mm.concurrent.{workload}.ops_per_second_per_loop"))),
            show(value(several, &format!("mm.concurrent.{workload}.ops_per_second_total"))),
        );
    }
    text += &format!(
        "\nCPUs the {} loops ran on: {}. Largest free order: {} before, {} with a random workload's blocks half freed, {} after freeing them.\n",
        cpus,
        show(value(several, "mm.concurrent.cpus_used")),
        show(value(several, "mm.fragmentation.largest_free_order_before")),
        show(value(several, "mm.fragmentation.largest_free_order_fragmented")),
        show(value(several, "mm.fragmentation.largest_free_order_after")),
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_parsed_from_console_lines_only() {
        let output = "hinoki# bench latency\r\nlatency.yield_switch 928 ns\nlatency.irq_to_task_wakeup n/a (no interrupt controller)\n\
                      threadmetric.basic_processing 12046179 count\nthreadmetric.message_processing.normalized 0.261 ratio\n\
                      [ 1.0] log latency.fake 5 ns\n";
        let figures = parse_figures(&output.replace('\r', ""));
        let names: Vec<_> = figures.iter().map(|figure| (figure.name.as_str(), figure.value, figure.unit.as_str())).collect();
        assert_eq!(
            names,
            vec![
                ("latency.yield_switch", 928.0, "ns"),
                ("threadmetric.basic_processing", 12046179.0, "count"),
                ("threadmetric.message_processing.normalized", 0.261, "ratio"),
                ("latency.irq_to_task_wakeup", 0.0, "n/a"),
            ]
        );
    }

    #[test]
    fn the_table_pairs_wall_and_instruction_figures_and_cites_linux() {
        let figure = |name: &str, value: f64, unit: &str| Figure { name: name.into(), value, unit: unit.into() };
        let wall = vec![figure("latency.yield_switch", 9200.0, "ns"), figure("threadmetric.basic_processing", 100.0, "count")];
        let counted = vec![figure("latency.yield_switch", 928.0, "ns"), figure("threadmetric.basic_processing", 1000.0, "count")];
        let table = sched_table("qemu-virt", &wall, &counted);
        assert!(table.contains("| `latency.yield_switch` | 9.20 us | 928 | 5.8 us (sched_yield switch) |"), "{table}");
        assert!(table.contains("| basic_processing | 100 | 1.000 | 1000 | 1.000 |"), "{table}");
    }

    #[test]
    fn the_memory_table_reads_each_run() {
        let output = "mm.single.kmalloc64.ns_per_op 120 ns\nmm.concurrent.kmalloc64.slowest_ns_per_op 130 ns\n\
                      mm.concurrent.kmalloc64.ops_per_second_per_loop 7000000 ops\nmm.concurrent.cpus_used 4 count\n";
        let figures = parse_figures(output);
        let counted = parse_figures("mm.single.kmalloc64.ns_per_op 90 ns\n");
        let table = mm_table("qemu-virt", 4, &figures, &counted, &figures);
        assert!(table.contains("| kmalloc64 | 120 | 90 | n/a | 130 | 7000000 | n/a |"), "{table}");
        assert!(table.contains("ran on: 4."), "{table}");
    }
}
