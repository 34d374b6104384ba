//! `cargo xtask test`: host tests, then every board configuration x suite of `tests/matrix.toml` under QEMU, a matrix summary and a JSON report.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::boards::Board;
use crate::image::Built;
use crate::qemu::{Ending, Launch, Session};
use crate::symbols::Symbolizer;

#[derive(Deserialize)]
struct Matrix {
    config: Vec<Config>,
    suite: Vec<Suite>,
}

/// One board in one QEMU configuration.
#[derive(Deserialize, Clone)]
struct Config {
    name: String,
    board: String,
    #[serde(default)]
    machine: Option<String>,
    #[serde(default)]
    smp: Option<u32>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
enum Expected {
    Success,
    Failure,
}

/// One scenario run on every configuration.
#[derive(Deserialize, Clone)]
struct Suite {
    name: String,
    #[serde(default)]
    append: String,
    expect_exit: Expected,
    #[serde(default)]
    expect_output: Vec<String>,
    #[serde(default)]
    forbid_output: Vec<String>,
    #[serde(default)]
    steps: Vec<Step>,
    #[serde(default)]
    timeout: Option<u64>,
    /// Boards the suite runs on (all when absent).
    #[serde(default)]
    boards: Option<Vec<String>>,
    /// Build with the `defmt` feature and decode the console with defmt-print.
    #[serde(default)]
    defmt: bool,
    /// Matrix configurations the suite runs on (all when absent).
    #[serde(default)]
    configs: Option<Vec<String>>,
    /// An ext2 image made with mke2fs before the boot, attached as `vda`, and checked
    /// after QEMU exits.
    #[serde(default)]
    disk: Option<crate::interop::DiskSpec>,
}

impl Suite {
    fn applies_to(&self, config: &Config) -> bool {
        self.boards.as_ref().is_none_or(|boards| boards.contains(&config.board))
            && self.configs.as_ref().is_none_or(|configs| configs.contains(&config.name))
    }
}

/// Decodes defmt frames with `defmt-print -e ELF`.
fn decode_defmt(raw: &[u8], elf: &std::path::Path) -> Result<String, String> {
    use std::io::Write;
    crate::setup::ensure_defmt_print()?;
    let mut child = Command::new("defmt-print")
        .args(["-e", &elf.display().to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting defmt-print: {e}"))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let bytes = raw.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&bytes);
    });
    let output = child.wait_with_output().map_err(|e| e.to_string())?;
    let _ = writer.join();
    let mut text = String::from_utf8_lossy(&output.stdout).to_string();
    if !output.stderr.is_empty() {
        text.push_str("\n[defmt-print stderr] ");
        text.push_str(&String::from_utf8_lossy(&output.stderr));
    }
    Ok(text)
}

#[derive(Deserialize, Clone)]
struct Step {
    expect: String,
    #[serde(default)]
    send: Option<String>,
}

/// The outcome of one configuration x suite run, as written to the report.
#[derive(Serialize, Clone)]
struct Outcome {
    config: String,
    board: String,
    suite: String,
    passed: bool,
    reason: Option<String>,
    seconds: f64,
    ktests_passed: Option<u32>,
    ktests_failed: Option<u32>,
    exit: String,
    log: String,
}

fn template(text: &str, board: &Board) -> String {
    text.replace("{board}", &board.board).replace("{arch}", &board.arch)
}

fn compile(pattern: &str) -> Result<Regex, String> {
    Regex::new(pattern).map_err(|e| format!("bad pattern /{pattern}/ in tests/matrix.toml: {e}"))
}

fn run_suite(
    config: &Config,
    board: &Board,
    built: &Built,
    suite: &Suite,
    symbolizer: Option<&Symbolizer>,
    default_timeout: u64,
) -> Outcome {
    let mut outcome = Outcome {
        config: config.name.clone(),
        board: board.board.clone(),
        suite: suite.name.clone(),
        passed: false,
        reason: None,
        seconds: 0.0,
        ktests_passed: None,
        ktests_failed: None,
        exit: String::new(),
        log: String::new(),
    };
    let image = crate::target_directory().join("hinoki/disks").join(format!("{}.{}.img", config.name, suite.name));
    let disks = match &suite.disk {
        Some(spec) => match crate::interop::make_image(spec, &image) {
            Ok(()) => vec![image.clone()],
            Err(error) => {
                outcome.reason = Some(error);
                return outcome;
            }
        },
        None => vec![],
    };
    let extra = match crate::qemu::disk_arguments(board, &disks).and_then(|mut extra| {
        if let Some(spec) = &suite.disk {
            crate::interop::inject_errors(spec, &image, &mut extra)?;
        }
        Ok(extra)
    }) {
        Ok(extra) => extra,
        Err(error) => {
            outcome.reason = Some(error);
            return outcome;
        }
    };
    let launch =
        Launch { machine: config.machine.clone(), smp: config.smp, append: Some(template(&suite.append, board)), gdb: false, extra };
    let command = match crate::qemu::command(board, built, &launch) {
        Ok(command) => command,
        Err(error) => {
            outcome.reason = Some(error);
            return outcome;
        }
    };
    let timeout = Duration::from_secs(suite.timeout.unwrap_or(default_timeout));
    let command_line = crate::qemu::describe(&command);
    let mut session = match Session::start(command, timeout) {
        Ok(session) => session,
        Err(error) => {
            outcome.reason = Some(error);
            return outcome;
        }
    };
    let mut failure = None;
    let mut position = 0;
    for step in &suite.steps {
        let pattern = match compile(&template(&step.expect, board)) {
            Ok(pattern) => pattern,
            Err(error) => {
                failure = Some(error);
                break;
            }
        };
        match session.wait_for(&pattern, position) {
            Ok(end) => position = end,
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
        if let Some(line) = &step.send {
            if let Err(error) = session.send_line(&template(line, board)) {
                failure = Some(error);
                break;
            }
        }
    }
    let (ending, raw_bytes, elapsed) = session.finish_raw();
    let raw_output = if suite.defmt {
        match decode_defmt(&raw_bytes, &built.elf) {
            Ok(text) => text,
            Err(error) => {
                failure.get_or_insert(error);
                String::new()
            }
        }
    } else {
        String::from_utf8_lossy(&raw_bytes).replace('\r', "")
    };
    outcome.seconds = elapsed.as_secs_f64();
    let output: String = raw_output
        .lines()
        .map(|line| symbolizer.and_then(|s| s.annotate(line)).unwrap_or_else(|| line.to_string()))
        .collect::<Vec<_>>()
        .join("\n");
    outcome.exit = match &ending {
        Ending::Exited(code) => format!("exit {code}"),
        Ending::TimedOut => "timeout".into(),
        Ending::Signalled => "signal".into(),
    };
    if let Some(captures) = Regex::new(r"(?m)^(\d+) passed, (\d+) failed$").unwrap().captures_iter(&output).last() {
        outcome.ktests_passed = captures[1].parse().ok();
        outcome.ktests_failed = captures[2].parse().ok();
    }
    if failure.is_none() {
        failure = match (&ending, suite.expect_exit) {
            (Ending::TimedOut, _) => Some(format!("timed out after {} s", timeout.as_secs())),
            (Ending::Signalled, _) => Some("QEMU died from a signal".into()),
            (Ending::Exited(0), Expected::Failure) => Some("exited 0 but a failure was expected".into()),
            (Ending::Exited(code), Expected::Success) if *code != 0 => Some(format!("exited with status {code}")),
            _ => None,
        };
    }
    if failure.is_none() && suite.expect_exit == Expected::Success && output.contains("Kernel panic") {
        failure = Some("the kernel panicked".into());
    }
    if failure.is_none() {
        for pattern in &suite.expect_output {
            match compile(&template(pattern, board)) {
                Ok(regex) if !regex.is_match(&output) => {
                    failure = Some(format!("output lacks /{}/", regex.as_str()));
                    break;
                }
                Err(error) => {
                    failure = Some(error);
                    break;
                }
                _ => {}
            }
        }
    }
    if failure.is_none() {
        for pattern in &suite.forbid_output {
            match compile(&template(pattern, board)) {
                Ok(regex) => {
                    if let Some(found) = regex.find(&output) {
                        failure = Some(format!("output has forbidden /{}/: {}", regex.as_str(), found.as_str()));
                        break;
                    }
                }
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
    }
    if failure.is_none() {
        if let Some(spec) = &suite.disk {
            failure = crate::interop::check_image(spec, &image, &output).err();
        }
    }
    outcome.passed = failure.is_none();
    outcome.reason = failure;
    outcome.log = format!("$ {command_line}\n{output}");
    outcome
}

/// `cargo xtask test`.
pub fn run(options: &crate::Options) -> Result<(), String> {
    let matrix_path = crate::root().join("tests/matrix.toml");
    let matrix: Matrix =
        toml::from_str(&std::fs::read_to_string(&matrix_path).map_err(|e| format!("reading {}: {e}", matrix_path.display()))?)
            .map_err(|e| format!("{}: {e}", matrix_path.display()))?;
    let configs: Vec<&Config> = matrix
        .config
        .iter()
        .filter(|c| options.board.as_deref().is_none_or(|b| c.board == b))
        .filter(|c| options.config.as_deref().is_none_or(|n| c.name == n))
        .collect();
    if configs.is_empty() {
        return Err("no matrix configuration matches the --board/--config given".into());
    }
    let started = std::time::Instant::now();
    let mut host_ok = true;
    if !options.no_host {
        eprintln!("xtask: host tests (cargo test)");
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(crate::root())
            .args(["test", "--quiet"])
            .status()
            .map_err(|e| format!("running cargo test: {e}"))?;
        host_ok = status.success();
        if !host_ok {
            eprintln!("xtask: host tests FAILED");
        }
    }
    let mut built: BTreeMap<(String, bool), Result<(Board, Built), String>> = BTreeMap::new();
    let mut outcomes = Vec::new();
    let default_timeout = options.timeout.unwrap_or(60);
    let logs = crate::target_directory().join("hinoki/logs");
    std::fs::create_dir_all(&logs).map_err(|e| e.to_string())?;
    for config in &configs {
        for suite in matrix
            .suite
            .iter()
            .filter(|suite| suite.applies_to(config))
            .filter(|suite| options.suite.as_deref().is_none_or(|prefix| suite.name.starts_with(prefix)))
        {
            let entry = built.entry((config.board.clone(), suite.defmt)).or_insert_with(|| {
                crate::boards::find(Some(&config.board))
                    .and_then(|board| crate::image::build_with(&board, false, suite.defmt).map(|b| (board, b)))
            });
            let (board, image) = match entry {
                Ok(pair) => (&pair.0, &pair.1),
                Err(error) => {
                    outcomes.push(Outcome {
                        config: config.name.clone(),
                        board: config.board.clone(),
                        suite: suite.name.clone(),
                        passed: false,
                        reason: Some(format!("build failed: {error}")),
                        seconds: 0.0,
                        ktests_passed: None,
                        ktests_failed: None,
                        exit: "not run".into(),
                        log: String::new(),
                    });
                    continue;
                }
            };
            let symbolizer = Symbolizer::new(&image.elf).ok();
            let outcome = run_suite(config, board, image, suite, symbolizer.as_ref(), default_timeout);
            let log_path = logs.join(format!("{}.{}.log", outcome.config, outcome.suite));
            let _ = std::fs::write(&log_path, &outcome.log);
            if outcome.passed {
                eprintln!("xtask: {:<18} {:<24} ok     {:>6.2} s", outcome.config, outcome.suite, outcome.seconds);
            } else {
                eprintln!(
                    "xtask: {:<18} {:<24} FAILED {:>6.2} s: {}",
                    outcome.config,
                    outcome.suite,
                    outcome.seconds,
                    outcome.reason.as_deref().unwrap_or("")
                );
                if let Some(command_line) = outcome.log.lines().next() {
                    eprintln!("    {command_line}");
                }
                let lines: Vec<&str> = outcome.log.lines().skip(1).collect();
                let tail: Vec<&str> = lines.iter().rev().take(30).copied().collect();
                for line in tail.iter().rev() {
                    eprintln!("    | {line}");
                }
                eprintln!("    (full log: {})", log_path.display());
            }
            outcomes.push(outcome);
        }
    }
    print_matrix(&configs, &matrix.suite, &outcomes);
    let report = crate::target_directory().join("hinoki/test-report.json");
    let json = serde_json::json!({
        "host_tests_passed": if options.no_host { None } else { Some(host_ok) },
        "seconds": started.elapsed().as_secs_f64(),
        "runs": outcomes.iter().map(|o| { let mut o = o.clone(); o.log = String::new(); o }).collect::<Vec<_>>(),
    });
    std::fs::write(&report, serde_json::to_string_pretty(&json).unwrap()).map_err(|e| e.to_string())?;
    let failed: Vec<String> = outcomes.iter().filter(|o| !o.passed).map(|o| format!("{}/{}", o.config, o.suite)).collect();
    let passed = outcomes.len() - failed.len();
    println!("report: {}", report.display());
    println!("matrix: {} passed, {} failed", passed, failed.len());
    match (host_ok, failed.is_empty()) {
        (true, true) => Ok(()),
        (false, true) => Err("host tests failed".into()),
        (_, false) => Err(format!("failed: {}{}", failed.join(", "), if host_ok { "" } else { "; host tests failed" })),
    }
}

fn print_matrix(configs: &[&Config], suites: &[Suite], outcomes: &[Outcome]) {
    let width = suites.iter().map(|s| s.name.len()).max().unwrap_or(8).max(16);
    print!("\n{:<18}", "config");
    for suite in suites {
        print!(" {:<width$}", suite.name);
    }
    println!();
    for config in configs {
        print!("{:<18}", config.name);
        for suite in suites {
            let cell = match outcomes.iter().find(|o| o.config == config.name && o.suite == suite.name) {
                Some(o) => {
                    let counts = match (o.ktests_passed, o.ktests_failed) {
                        (Some(p), Some(f)) => format!(" {p}/{f}"),
                        _ => String::new(),
                    };
                    format!("{}{} {:.1}s", if o.passed { "ok" } else { "FAIL" }, counts, o.seconds)
                }
                None => "-".into(),
            };
            print!(" {:<width$}", cell);
        }
        println!();
    }
    println!("(cells: result, ktests passed/failed where the suite runs ktests, seconds)");
}
