//! `cargo xtask bench disk`: ext2 over virtio-blk under QEMU — boots a release kernel with a fresh `mke2fs` image on `/mnt`, runs the kernel's `fsbench` (sequential MiB/s, metadata ops/s, cold and warm cache) and prints the medians.

use std::collections::BTreeMap;
use std::time::Duration;

use regex::Regex;

use crate::interop::{make_image, Check, Contents, DiskSpec};
use crate::qemu::{Launch, Session};

/// Image size: room for the sequential file and the metadata files.
const IMAGE_MIB: u64 = 128;
/// The ext2 block size of the image.
const BLOCK_SIZE: u32 = 4096;

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[values.len() / 2]
}

/// Runs the benchmark on `--board` (default: qemu-virt and pc), `--runs` times (default 3).
pub fn run(options: &crate::Options) -> Result<(), String> {
    let boards = match &options.board {
        Some(name) => vec![crate::boards::find(Some(name))?],
        None => vec![crate::boards::find(Some("qemu-virt"))?, crate::boards::find(Some("pc"))?],
    };
    let runs = options.runs.unwrap_or(3).max(1);
    let line = Regex::new(r"fsbench: (.+): ([0-9.]+) (MiB/s|ops/s)").unwrap();
    let prompt = Regex::new("hinoki# ").unwrap();
    let done = Regex::new("fsbench: (done|failed.*)").unwrap();
    let spec = DiskSpec {
        size_mib: IMAGE_MIB,
        block_size: BLOCK_SIZE,
        contents: Contents::Empty,
        checks: vec![Check::E2fsck],
        fail_reads_at_sector: None,
    };
    println!(
        "ext2 ({} KiB blocks, {} MiB image) over virtio-blk, release kernel, TCG, median of {} runs",
        BLOCK_SIZE / 1024,
        IMAGE_MIB,
        runs
    );
    for board in boards {
        let built = crate::image::build(&board, true)?;
        let image = crate::target_directory().join("hinoki/disks").join(format!("bench-{}.img", board.board));
        let mut results: BTreeMap<String, (Vec<f64>, String)> = BTreeMap::new();
        let mut order = Vec::new();
        for _ in 0..runs {
            make_image(&spec, &image)?;
            let launch = Launch { extra: crate::qemu::disk_arguments(&board, std::slice::from_ref(&image))?, ..Launch::default() };
            let command = crate::qemu::command(&board, &built, &launch)?;
            let mut session = Session::start(command, Duration::from_secs(600))?;
            session.wait_for(&prompt, 0)?;
            session.send_line("fsbench /mnt")?;
            let end = session.wait_for(&done, 0)?;
            let output = session.output();
            session.send_line("poweroff")?;
            let _ = session.finish();
            if output[..end].contains("fsbench: failed") {
                return Err(format!("{}: fsbench failed:\n{}", board.board, output));
            }
            for captures in line.captures_iter(&output) {
                let name = captures[1].to_string();
                if !order.contains(&name) {
                    order.push(name.clone());
                }
                let entry = results.entry(name).or_insert_with(|| (Vec::new(), captures[3].to_string()));
                entry.0.push(captures[2].parse().unwrap_or(0.0));
            }
            crate::interop::check_image(&spec, &image, &output)?;
        }
        println!("\n{}:", board.board);
        for name in &order {
            let (values, unit) = results.get_mut(name).expect("recorded");
            println!("  {:<48} {:>10.2} {}", name, median(values), unit);
        }
    }
    Ok(())
}
