//! ext2 interoperability suites: disk images made with the host's `mke2fs` before a boot (optionally from a generated tree with its manifest), and `e2fsck`/`debugfs` checks of the image after QEMU exits.
//!
//! Manifest lines (shared with `kernel/src/fs/interop.rs`) are tab-separated:
//! `dir PATH NAMES` (sorted, comma-separated), `file PATH SIZE CRC32`, `link PATH TARGET`, and,
//! from the kernel only, `absent PATH`. The kernel prints the lines it expects the image to
//! hold after a prefix `interop-expect`.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

/// What a suite's disk starts with.
#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Contents {
    /// A fresh file system.
    #[default]
    Empty,
    /// The generated test tree and its `MANIFEST` (`mke2fs -d`).
    InteropTree,
    /// No file system: zeros (no `mke2fs`).
    Zeros,
}

/// A host check run on the image after QEMU exits.
#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    /// `e2fsck -fn` reports a clean file system.
    E2fsck,
    /// Every `interop-expect` line the kernel printed holds in the image, read by `debugfs`.
    Expectations,
}

/// The `disk` table of a suite in `tests/matrix.toml`.
#[derive(Deserialize, Clone, Debug)]
pub struct DiskSpec {
    /// Image size in MiB.
    pub size_mib: u64,
    /// ext2 block size (1024, 2048 or 4096).
    pub block_size: u32,
    /// What the file system holds at boot.
    #[serde(default)]
    pub contents: Contents,
    /// Checks after QEMU exits.
    #[serde(default)]
    pub checks: Vec<Check>,
    /// Reads touching this 512-byte sector fail with EIO (QEMU's blkdebug driver).
    #[serde(default)]
    pub fail_reads_at_sector: Option<u64>,
}

/// Rewrites the `-drive` argument of `image` in `arguments` to inject the spec's read
/// errors through QEMU's blkdebug driver (its rules in a file beside the image).
pub fn inject_errors(spec: &DiskSpec, image: &Path, arguments: &mut [String]) -> Result<(), String> {
    let Some(sector) = spec.fail_reads_at_sector else { return Ok(()) };
    let rules = image.with_extension("blkdebug");
    io(std::fs::write(&rules, format!("[inject-error]\nevent = \"read_aio\"\nerrno = \"5\"\nsector = \"{sector}\"\n")), &rules)?;
    let path = io(image.canonicalize(), image)?;
    let drive = arguments
        .iter_mut()
        .find(|argument| argument.starts_with(&format!("file={},", path.display())))
        .ok_or("no -drive argument for the image")?;
    let id = drive.rsplit(",id=").next().unwrap_or("disk0").to_string();
    *drive =
        format!("if=none,id={id},format=raw,file.driver=blkdebug,file.config={},file.image.filename={}", rules.display(), path.display());
    Ok(())
}

/// Prefix of the kernel's expectation lines.
const EXPECT_PREFIX: &str = "interop-expect\t";

/// CRC-32 (IEEE), as the kernel computes it.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut table = [0u32; 256];
    for (index, entry) in table.iter_mut().enumerate() {
        let mut crc = index as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
        *entry = crc;
    }
    let mut crc = !0u32;
    for &byte in bytes {
        crc = table[((crc ^ u32::from(byte)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// The generated files' byte at `index` (the kernel's `pattern_byte`).
fn pattern_byte(index: u64) -> u8 {
    ((index.wrapping_mul(7)) ^ (index >> 12) ^ (index >> 20)) as u8
}

fn io<T>(result: std::io::Result<T>, what: &Path) -> Result<T, String> {
    result.map_err(|e| format!("{}: {e}", what.display()))
}

/// Writes the test tree into `root` (emptied first): nested directories, small files, a
/// file reaching double-indirect blocks at `block_size`, a sparse file, fast and slow
/// symlinks; then its `MANIFEST`.
pub fn generate_tree(root: &Path, block_size: u32) -> Result<(), String> {
    if root.exists() {
        io(std::fs::remove_dir_all(root), root)?;
    }
    let write = |relative: &str, data: &[u8]| -> Result<(), String> {
        let path = root.join(relative);
        io(std::fs::create_dir_all(path.parent().unwrap()), &path)?;
        io(std::fs::write(&path, data), &path)
    };
    write("hello.txt", b"hello, ext2\n")?;
    write("docs/readme.txt", "Hinoki reads what mke2fs wrote.\n".repeat(12).as_bytes())?;
    write("docs/empty", b"")?;
    write("nested/a/b/c/deep.txt", b"deep inside\n")?;
    for index in 0..20u64 {
        let data: Vec<u8> = (0..index * 37 + 1).map(|i| pattern_byte(i + index)).collect();
        write(&format!("small/f{index:02}"), &data)?;
    }
    let block = u64::from(block_size);
    let big_size = (12 + block / 4 + 5) * block + 123;
    write("big.bin", &(0..big_size).map(pattern_byte).collect::<Vec<u8>>())?;
    let sparse_path = root.join("sparse.bin");
    let mut sparse = io(std::fs::File::create(&sparse_path), &sparse_path)?;
    for (offset, length) in [(1u64 << 20, 5000u64), (6 << 20, 100)] {
        io(sparse.seek(SeekFrom::Start(offset)), &sparse_path)?;
        io(sparse.write_all(&(offset..offset + length).map(pattern_byte).collect::<Vec<u8>>()), &sparse_path)?;
    }
    io(sparse.set_len((6 << 20) + 4096), &sparse_path)?;
    drop(sparse);
    let link = root.join("link");
    io(std::os::unix::fs::symlink("hello.txt", &link), &link)?;
    let long_link = root.join("nested/long-link");
    // Longer than the 60 bytes a fast symlink holds in its inode.
    let long_target = format!("a/b/c/{}deep.txt", "./".repeat(40));
    io(std::os::unix::fs::symlink(long_target, &long_link), &long_link)?;

    let mut lines = Vec::new();
    describe(root, "/", &mut lines)?;
    // mke2fs adds lost+found; the manifest names itself but carries no line for its own bytes.
    let mut root_line: Vec<String> = lines[0].split('\t').map(String::from).collect();
    let mut names: Vec<&str> = root_line[2].split(',').filter(|n| !n.is_empty()).collect();
    names.extend(["MANIFEST", "lost+found"]);
    names.sort_unstable();
    root_line[2] = names.join(",");
    lines[0] = root_line.join("\t");
    lines.push("dir\t/lost+found\t".to_string());
    let manifest = root.join("MANIFEST");
    io(std::fs::write(&manifest, lines.join("\n") + "\n"), &manifest)
}

/// Manifest lines for the host directory `root` + `relative`.
fn describe(root: &Path, relative: &str, lines: &mut Vec<String>) -> Result<(), String> {
    let directory = root.join(relative.trim_start_matches('/'));
    let mut entries: Vec<_> = io(std::fs::read_dir(&directory), &directory)?.filter_map(|e| e.ok()).collect();
    entries.sort_by_key(|e| e.file_name());
    let names: Vec<String> = entries.iter().map(|e| e.file_name().to_string_lossy().to_string()).collect();
    lines.push(format!("dir\t{relative}\t{}", names.join(",")));
    for (entry, name) in entries.iter().zip(&names) {
        let path = if relative == "/" { format!("/{name}") } else { format!("{relative}/{name}") };
        let kind = io(entry.file_type(), &entry.path())?;
        if kind.is_symlink() {
            lines.push(format!("link\t{path}\t{}", io(std::fs::read_link(entry.path()), &entry.path())?.display()));
        } else if kind.is_dir() {
            describe(root, &path, lines)?;
        } else {
            let data = io(std::fs::read(entry.path()), &entry.path())?;
            lines.push(format!("file\t{path}\t{}\t{:08x}", data.len(), crc32(&data)));
        }
    }
    Ok(())
}

fn run(command: &mut Command) -> Result<(bool, String), String> {
    let output = command.output().map_err(|e| format!("running {:?}: {e}", command.get_program()))?;
    let mut text = String::from_utf8_lossy(&output.stdout).to_string();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Ok((output.status.success(), text))
}

/// Makes the suite's image at `image` (its tree, if any, beside it) with `mke2fs`.
pub fn make_image(spec: &DiskSpec, image: &Path) -> Result<(), String> {
    if let Some(parent) = image.parent() {
        io(std::fs::create_dir_all(parent), parent)?;
    }
    let _ = std::fs::remove_file(image);
    if spec.contents == Contents::Zeros {
        let file = io(std::fs::File::create(image), image)?;
        return io(file.set_len(spec.size_mib << 20), image);
    }
    let mut command = Command::new("mke2fs");
    command.args(["-q", "-F", "-t", "ext2", "-b", &spec.block_size.to_string()]);
    if spec.contents == Contents::InteropTree {
        let tree = tree_directory(image);
        generate_tree(&tree, spec.block_size)?;
        command.arg("-d").arg(&tree);
    }
    command.arg(image).arg(format!("{}M", spec.size_mib));
    let (ok, text) = run(&mut command)?;
    if ok {
        Ok(())
    } else {
        Err(format!("mke2fs failed: {text}"))
    }
}

fn tree_directory(image: &Path) -> PathBuf {
    image.with_extension("tree")
}

fn debugfs(image: &Path, request: &str) -> Result<String, String> {
    let (_, text) = run(Command::new("debugfs").arg("-R").arg(request).arg(image))?;
    Ok(text)
}

/// Checks one expectation line against the image; `Err` says how it differs.
fn check_expectation(image: &Path, line: &str, scratch: &Path) -> Result<(), String> {
    let fields: Vec<&str> = line.split('\t').collect();
    match fields.as_slice() {
        ["dir", path, names] => {
            let listing = debugfs(image, &format!("ls -p {path}"))?;
            // `ls -p` prints /inode/mode/uid/gid/name/size/ per entry.
            let mut found: Vec<&str> = listing
                .lines()
                .filter_map(|l| l.strip_prefix('/'))
                .filter_map(|l| l.split('/').nth(4))
                .filter(|n| !n.is_empty() && *n != "." && *n != "..")
                .collect();
            found.sort_unstable();
            let expected: Vec<&str> = names.split(',').filter(|n| !n.is_empty()).collect();
            if found == expected {
                Ok(())
            } else {
                Err(format!("debugfs lists {:?}", found))
            }
        }
        ["file", path, size, crc] => {
            let _ = std::fs::remove_file(scratch);
            debugfs(image, &format!("dump {path} {}", scratch.display()))?;
            let data = std::fs::read(scratch).map_err(|e| format!("debugfs could not dump it: {e}"))?;
            let have = format!("{}\t{:08x}", data.len(), crc32(&data));
            if have == format!("{size}\t{crc}") {
                Ok(())
            } else {
                Err(format!("debugfs reads size and CRC {have}"))
            }
        }
        ["link", path, target] => {
            let stat = debugfs(image, &format!("stat {path}"))?;
            let fast = stat.lines().find_map(|l| l.trim().strip_prefix("Fast link dest: \"").and_then(|r| r.strip_suffix('"')));
            let found = match fast {
                Some(found) => found.to_string(),
                None => {
                    let _ = std::fs::remove_file(scratch);
                    debugfs(image, &format!("dump {path} {}", scratch.display()))?;
                    String::from_utf8_lossy(&std::fs::read(scratch).unwrap_or_default()).trim_end_matches('\0').to_string()
                }
            };
            if found == *target {
                Ok(())
            } else {
                Err(format!("debugfs reads the target {found:?}"))
            }
        }
        ["absent", path] => {
            let stat = debugfs(image, &format!("stat {path}"))?;
            if stat.contains("File not found") {
                Ok(())
            } else {
                Err("it exists".into())
            }
        }
        _ => Err("malformed line".into()),
    }
}

/// Runs the suite's checks on `image` after QEMU exited; `output` is the console log.
pub fn check_image(spec: &DiskSpec, image: &Path, output: &str) -> Result<(), String> {
    for check in &spec.checks {
        match check {
            Check::E2fsck => {
                let (ok, text) = run(Command::new("e2fsck").arg("-fn").arg(image))?;
                if !ok {
                    return Err(format!("e2fsck -fn found problems:\n{text}"));
                }
            }
            Check::Expectations => {
                let lines: Vec<&str> = output
                    .lines()
                    .filter_map(|l| l.split_once(EXPECT_PREFIX).map(|(_, rest)| rest.trim_end_matches(['\r', '\n'])))
                    .collect();
                if lines.is_empty() {
                    return Err("the kernel printed no interop-expect lines".into());
                }
                let scratch = image.with_extension("dump");
                let failures: Vec<String> = lines
                    .iter()
                    .filter_map(|line| check_expectation(image, line, &scratch).err().map(|why| format!("{line:?}: {why}")))
                    .collect();
                let _ = std::fs::remove_file(&scratch);
                if !failures.is_empty() {
                    return Err(format!("{} of {} expectations fail in the image:\n{}", failures.len(), lines.len(), failures.join("\n")));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_the_check_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn generated_tree_round_trips_through_mke2fs_and_debugfs() {
        if Command::new("mke2fs").arg("-V").output().is_err() || Command::new("debugfs").arg("-V").output().is_err() {
            eprintln!("skipped: e2fsprogs not installed");
            return;
        }
        let directory = std::env::temp_dir().join(format!("hinoki-interop-{}", std::process::id()));
        let image = directory.join("test.img");
        let spec = DiskSpec {
            size_mib: 16,
            block_size: 1024,
            contents: Contents::InteropTree,
            checks: vec![Check::E2fsck],
            fail_reads_at_sector: None,
        };
        make_image(&spec, &image).unwrap();
        let manifest = std::fs::read_to_string(tree_directory(&image).join("MANIFEST")).unwrap();
        assert!(manifest.starts_with("dir\t/\tMANIFEST,big.bin,docs,hello.txt,link,lost+found,nested,small,sparse.bin\n"), "{manifest}");
        let output: String =
            manifest.lines().filter(|l| !l.starts_with("file\t/MANIFEST")).map(|l| format!("{EXPECT_PREFIX}{l}\n")).collect();
        let with_expectations = DiskSpec { checks: vec![Check::E2fsck, Check::Expectations], ..spec };
        check_image(&with_expectations, &image, &output).unwrap();
        let wrong = output.replace("hello.txt\t12\t", "hello.txt\t13\t");
        let error = check_image(&with_expectations, &image, &wrong).unwrap_err();
        assert!(error.contains("1 of"), "{error}");
        std::fs::remove_dir_all(&directory).unwrap();
    }
}
