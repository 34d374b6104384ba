//! `fsbench DIR`: file-system throughput on a mounted disk — sequential write and read (cold and warm cache) in MiB/s, and create, stat (cold and warm) and unlink in operations per second.
//!
//! "Cold" means after an unmount and a fresh mount of the same device, which drops the
//! mount's page cache; the device (QEMU's image file) may still be in the host's cache.
//! `cargo xtask bench disk` boots a board with an image and runs it.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use core::fmt::Write;

use super::vfs::{Errno, OpenFlags, Vfs};
use crate::shell::{Arguments, Command, CommandError, CommandResult};

const USAGE: &str = "usage: fsbench [-s MIB] [-n FILES] DIRECTORY (on a disk mounted there; files are created in DIRECTORY/fsbench)";

fn now() -> u64 {
    crate::time::since_boot_nanoseconds()
}

/// Rate per second of `amount` done in `nanoseconds`, with two decimals.
fn rate(amount: f64, nanoseconds: u64) -> String {
    format!("{:.2}", amount * 1e9 / nanoseconds.max(1) as f64)
}

/// The source mounted at `target`, from the mount table.
fn mount_source(vfs: &Vfs, target: &str) -> Option<(String, String)> {
    let mut table = String::new();
    let _ = vfs.write_mounts(&mut table);
    table.lines().find_map(|line| {
        let mut fields = line.split(' ');
        let (source, mountpoint, kind) = (fields.next()?, fields.next()?, fields.next()?);
        (mountpoint == target).then(|| (String::from(source), String::from(kind)))
    })
}

/// Unmounts and mounts `target` again, dropping its page cache.
fn remount(vfs: &Vfs, target: &str) -> Result<(), Errno> {
    let (source, kind) = mount_source(vfs, target).ok_or(Errno::EINVAL)?;
    vfs.sync()?;
    vfs.unmount(target)?;
    super::root::mount(&kind, &source, target, false)
}

struct Settings {
    megabytes: u64,
    files: u64,
}

fn sequential(vfs: &Vfs, mountpoint: &str, directory: &str, settings: &Settings, out: &mut dyn Write) -> Result<(), Errno> {
    let path = format!("{}/sequential", directory);
    let chunk = vec![0x5au8; 64 * 1024];
    let total = settings.megabytes << 20;
    let start = now();
    let file = vfs.open(None, &path, OpenFlags(OpenFlags::WRITE_ONLY.0 | OpenFlags::CREATE.0 | OpenFlags::TRUNCATE.0), 0o644)?;
    let mut written = 0;
    while written < total {
        written += vfs.write(&file, &chunk)? as u64;
    }
    vfs.fsync(&file)?;
    drop(file);
    let _ = writeln!(
        out,
        "fsbench: sequential write {} MiB (with fsync): {} MiB/s",
        settings.megabytes,
        rate(settings.megabytes as f64, now() - start)
    );
    let mut buffer = vec![0u8; 64 * 1024];
    for pass in ["cold", "warm"] {
        if pass == "cold" {
            remount(vfs, mountpoint)?;
        }
        let start = now();
        let file = vfs.open(None, &path, OpenFlags::READ_ONLY, 0)?;
        let mut read = 0u64;
        loop {
            let count = vfs.read(&file, &mut buffer)?;
            if count == 0 {
                break;
            }
            read += count as u64;
        }
        drop(file);
        if read != total {
            return Err(Errno::EIO);
        }
        let _ = writeln!(
            out,
            "fsbench: sequential read {} MiB, {} cache: {} MiB/s",
            settings.megabytes,
            pass,
            rate(settings.megabytes as f64, now() - start)
        );
    }
    vfs.unlink(None, &path)
}

fn metadata(vfs: &Vfs, mountpoint: &str, directory: &str, settings: &Settings, out: &mut dyn Write) -> Result<(), Errno> {
    let name = |index: u64| format!("{}/file{:05}", directory, index);
    let start = now();
    for index in 0..settings.files {
        drop(vfs.open(None, &name(index), OpenFlags(OpenFlags::WRITE_ONLY.0 | OpenFlags::CREATE.0 | OpenFlags::EXCLUSIVE.0), 0o644)?);
    }
    vfs.sync()?;
    let _ = writeln!(out, "fsbench: create {} files (with sync): {} ops/s", settings.files, rate(settings.files as f64, now() - start));
    for pass in ["cold", "warm"] {
        if pass == "cold" {
            remount(vfs, mountpoint)?;
        }
        let start = now();
        for index in 0..settings.files {
            vfs.stat(None, &name(index))?;
        }
        let _ =
            writeln!(out, "fsbench: stat {} files, {} cache: {} ops/s", settings.files, pass, rate(settings.files as f64, now() - start));
    }
    let start = now();
    for index in 0..settings.files {
        vfs.unlink(None, &name(index))?;
    }
    vfs.sync()?;
    let _ = writeln!(out, "fsbench: unlink {} files (with sync): {} ops/s", settings.files, rate(settings.files as f64, now() - start));
    Ok(())
}

fn run_fsbench(arguments: &Arguments<'_>, out: &mut dyn Write) -> CommandResult {
    let mut settings = Settings { megabytes: 8, files: 500 };
    let mut mountpoint = None;
    let mut index = 1;
    while index < arguments.len() {
        match arguments[index] {
            "-s" | "-n" => {
                let value: u64 =
                    arguments.get(index + 1).and_then(|v| v.parse().ok()).filter(|v| *v > 0).ok_or(CommandError::Usage(USAGE))?;
                if arguments[index] == "-s" {
                    settings.megabytes = value.min(1024);
                } else {
                    settings.files = value.min(100_000);
                }
                index += 2;
            }
            other if !other.starts_with('-') && mountpoint.is_none() => {
                mountpoint = Some(other);
                index += 1;
            }
            _ => return Err(CommandError::Usage(USAGE)),
        }
    }
    let mountpoint = mountpoint.ok_or(CommandError::Usage(USAGE))?.trim_end_matches('/');
    let vfs = super::vfs().ok_or(CommandError::Failed("no file systems yet"))?;
    if mount_source(vfs, mountpoint).is_none() {
        return Err(CommandError::Failed("not a mount point (fsbench remounts it to drop the cache)"));
    }
    let directory = format!("{}/fsbench", mountpoint);
    vfs.mkdir(None, &directory, 0o755).map_err(|errno| CommandError::Failed(errno.message()))?;
    let result =
        sequential(vfs, mountpoint, &directory, &settings, out).and_then(|()| metadata(vfs, mountpoint, &directory, &settings, out));
    let cleanup = vfs.rmdir(None, &directory).and_then(|()| vfs.sync());
    result.and(cleanup).map_err(|errno| {
        let _ = writeln!(out, "fsbench: failed: {}", errno);
        CommandError::Failed(errno.message())
    })?;
    let _ = writeln!(out, "fsbench: done");
    Ok(())
}

static FSBENCH: Command =
    Command { name: "fsbench", summary: "file-system throughput on a mounted disk (fsbench [-s MIB] [-n FILES] DIR)", run: run_fsbench };
crate::shell_command!(FSBENCH_ENTRY = FSBENCH);
