//! ext2 interoperability with e2fsprogs over a real disk: tree manifests (one line per directory, file and symlink) and the manual ktests the `ext2.interop.*` matrix suites boot with an image on `vda` mounted at `/mnt`.
//!
//! Manifest lines are tab-separated: `dir PATH NAME,NAME,...` (sorted, without `.` and
//! `..`), `file PATH SIZE CRC32` (hex) and `link PATH TARGET`; paths are relative to the file
//! system's root and start with `/`. The host writes one (`MANIFEST` in the image, made with
//! `mke2fs -d`) for the kernel to verify, and reads the ones the kernel prints (each line
//! prefixed with `interop-expect`) to check the image with `debugfs` after QEMU exits.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::vfs::{Errno, FileType, OpenFlags, Result, Vfs};
use crate::{kassert, kassert_eq};

/// Where the tests find the disk's file system.
pub const MOUNTPOINT: &str = "/mnt";
/// The manifest the host puts in the image's root.
pub const MANIFEST_NAME: &str = "MANIFEST";
/// The prefix of the manifest lines the kernel prints for the host.
pub const EXPECT_PREFIX: &str = "interop-expect";

/// An incremental CRC-32 (IEEE, as `crc32` and zlib compute it).
pub struct Crc32 {
    table: [u32; 256],
    value: u32,
}

impl Crc32 {
    /// A CRC of nothing yet.
    pub fn new() -> Self {
        let mut table = [0u32; 256];
        for (index, entry) in table.iter_mut().enumerate() {
            let mut crc = index as u32;
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
            }
            *entry = crc;
        }
        Crc32 { table, value: !0 }
    }

    /// Adds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.value = self.table[((self.value ^ u32::from(byte)) & 0xff) as usize] ^ (self.value >> 8);
        }
    }

    /// The CRC of everything added.
    pub fn finish(&self) -> u32 {
        !self.value
    }
}

impl Default for Crc32 {
    fn default() -> Self {
        Self::new()
    }
}

fn join(directory: &str, name: &str) -> String {
    if directory.ends_with('/') {
        format!("{}{}", directory, name)
    } else {
        format!("{}/{}", directory, name)
    }
}

/// Size and CRC-32 of the file at `path`, read through the VFS in 64 KiB pieces.
pub fn file_checksum(vfs: &Vfs, path: &str) -> Result<(u64, u32)> {
    let file = vfs.open(None, path, OpenFlags::READ_ONLY, 0)?;
    let mut crc = Crc32::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let count = vfs.read(&file, &mut buffer)?;
        if count == 0 {
            break;
        }
        crc.update(&buffer[..count]);
        size += count as u64;
    }
    Ok((size, crc.finish()))
}

/// Describes the tree below `mountpoint` + `relative` as manifest lines, directories
/// before their contents, entries in name order.
pub fn describe_tree(vfs: &Vfs, mountpoint: &str, relative: &str, lines: &mut Vec<String>) -> Result<()> {
    let absolute = if relative == "/" { String::from(mountpoint) } else { format!("{}{}", mountpoint, relative) };
    let mut entries: Vec<_> =
        vfs.read_directory(None, &absolute)?.into_iter().filter(|entry| entry.name != "." && entry.name != "..").collect();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let names: Vec<&str> = entries.iter().map(|entry| entry.name.as_str()).collect();
    lines.push(format!("dir\t{}\t{}", relative, names.join(",")));
    for entry in &entries {
        let path = join(relative, &entry.name);
        let full = join(&absolute, &entry.name);
        match vfs.lstat(None, &full)?.kind {
            FileType::Directory => describe_tree(vfs, mountpoint, &path, lines)?,
            FileType::Regular => {
                let (size, crc) = file_checksum(vfs, &full)?;
                lines.push(format!("file\t{}\t{}\t{:08x}", path, size, crc));
            }
            FileType::Symlink => lines.push(format!("link\t{}\t{}", path, vfs.readlink(None, &full)?)),
            other => lines.push(format!("other\t{}\t{:?}", path, other)),
        }
    }
    Ok(())
}

/// Compares a manifest with a description: every manifest line must be described, and every
/// described directory must be in the manifest (its listing catches extra entries). Lines
/// about `skip` (the manifest file itself) are ignored. Returns the differences.
pub fn compare_manifest(manifest: &str, described: &[String], skip: &str) -> Vec<String> {
    let expected: Vec<&str> = manifest.lines().filter(|line| !line.trim().is_empty()).collect();
    let mut differences = Vec::new();
    for line in &expected {
        if !described.iter().any(|have| have == line) {
            differences.push(format!("missing or different: {}", line));
        }
    }
    for line in described {
        let is_skipped = line.split('\t').nth(1) == Some(skip);
        if line.starts_with("dir\t") && !is_skipped && !expected.contains(&line.as_str()) {
            differences.push(format!("unexpected: {}", line));
        }
    }
    differences
}

/// The byte at offset `index` of the generated test files (a pattern no run of blocks repeats).
pub fn pattern_byte(index: u64) -> u8 {
    ((index.wrapping_mul(7)) ^ (index >> 12) ^ (index >> 20)) as u8
}

/// Writes the `size` pattern bytes of file offsets `offset..offset + size` to `path`
/// (created if missing); a write that makes no progress is `ENOSPC`.
fn write_pattern(vfs: &Vfs, path: &str, offset: u64, size: u64) -> Result<()> {
    let file = vfs.open(None, path, OpenFlags(OpenFlags::WRITE_ONLY.0 | OpenFlags::CREATE.0), 0o644)?;
    let mut buffer = vec![0u8; 64 * 1024];
    let mut done = 0u64;
    while done < size {
        let count = (size - done).min(buffer.len() as u64) as usize;
        for (index, byte) in buffer[..count].iter_mut().enumerate() {
            *byte = pattern_byte(offset + done + index as u64);
        }
        let written = vfs.pwrite(&file, offset + done, &buffer[..count])?;
        if written == 0 {
            return Err(Errno::ENOSPC);
        }
        done += written as u64;
    }
    Ok(())
}

fn failure(line: u32, message: core::fmt::Arguments<'_>) -> crate::ktest::TestFailure {
    crate::ktest::TestFailure::new(file!(), line, message)
}

fn the_vfs() -> core::result::Result<&'static Vfs, crate::ktest::TestFailure> {
    super::vfs().ok_or_else(|| failure(line!(), format_args!("no VFS")))
}

/// Fails unless an ext2 file system is mounted on [`MOUNTPOINT`].
fn require_disk(vfs: &Vfs) -> core::result::Result<(), crate::ktest::TestFailure> {
    let mut text = String::new();
    let _ = vfs.write_mounts(&mut text);
    if text.lines().any(|line| line.split(' ').nth(1) == Some(MOUNTPOINT) && line.split(' ').nth(2) == Some("ext2")) {
        Ok(())
    } else {
        Err(failure(line!(), format_args!("no ext2 file system on {} (boot with a disk image); mounts: {}", MOUNTPOINT, text)))
    }
}

/// Prints `lines` for the host, each prefixed with [`EXPECT_PREFIX`].
fn print_expectations(lines: &[String]) {
    for line in lines {
        crate::println!("{}\t{}", EXPECT_PREFIX, line);
    }
}

/// Syncs and unmounts the disk so the image is complete when QEMU exits.
fn sync_and_unmount(vfs: &Vfs) -> core::result::Result<(), crate::ktest::TestFailure> {
    vfs.sync().map_err(|errno| failure(line!(), format_args!("sync: {}", errno)))?;
    vfs.unmount(MOUNTPOINT).map_err(|errno| failure(line!(), format_args!("unmount {}: {}", MOUNTPOINT, errno)))?;
    super::page_cache::writeback(0).map_err(|errno| failure(line!(), format_args!("write-back: {}", errno)))?;
    Ok(())
}

macro_rules! check {
    ($result:expr, $what:expr) => {
        $result.map_err(|errno| failure(line!(), format_args!("{}: {}", $what, errno)))?
    };
}

crate::ktest!(
    manual fn read_tree_from_mke2fs() {
        let vfs = the_vfs()?;
        require_disk(vfs)?;
        let manifest = check!(vfs.read_to_end(None, &join(MOUNTPOINT, MANIFEST_NAME)), "reading the manifest");
        let manifest = String::from_utf8(manifest).map_err(|_| failure(line!(), format_args!("the manifest is not UTF-8")))?;
        let mut described = Vec::new();
        check!(describe_tree(vfs, MOUNTPOINT, "/", &mut described), "walking the tree");
        let differences = compare_manifest(&manifest, &described, &format!("/{}", MANIFEST_NAME));
        for difference in &differences {
            crate::println!("interop: {}", difference);
        }
        let entries = manifest.lines().filter(|line| !line.is_empty()).count();
        kassert!(entries >= 8, "the manifest has only {} entries", entries);
        kassert!(differences.is_empty(), "{} of {} manifest entries differ", differences.len(), entries);
        crate::println!("interop: {} manifest entries match", entries);
        // The reads completed by interrupt while the test's task slept.
        if let Some(disk) = crate::block::driver::find_driver_disk("vda") {
            crate::println!("interop: vda: {} interrupts, {} sleeping waits", disk.interrupt_count(), disk.sleeping_wait_count());
            kassert!(disk.interrupt_count() > 0 && disk.sleeping_wait_count() > 0, "vda completed no request by interrupt");
        }
        sync_and_unmount(vfs)
    }
);

crate::ktest!(
    manual fn write_tree_for_e2fsck() {
        let vfs = the_vfs()?;
        require_disk(vfs)?;
        let block_size = check!(vfs.statfs(None, MOUNTPOINT), "statfs").block_size;
        let root = join(MOUNTPOINT, "w");
        for directory in ["", "/a", "/a/b", "/old", "/gone", "/gone/deeper"] {
            check!(vfs.mkdir(None, &format!("{}{}", root, directory), 0o755), directory);
        }
        check!(vfs.write_file(None, &join(&root, "small.txt"), b"hello from the Hinoki ext2 writer\n", false), "small.txt");
        // Past the direct (12) and single-indirect (block_size / 4) blocks.
        let big_size = (12 + block_size / 4 + 3) * block_size + 77;
        check!(write_pattern(vfs, &join(&root, "big.bin"), 0, big_size), "big.bin");
        check!(write_pattern(vfs, &join(&root, "sparse.bin"), 3 << 20, 4096), "sparse.bin at 3 MiB");
        check!(write_pattern(vfs, &join(&root, "sparse.bin"), 5 << 20, 5), "sparse.bin at 5 MiB");
        check!(vfs.write_file(None, &join(&root, "a/b/nested.txt"), b"nested\n", false), "nested.txt");
        check!(vfs.rename(None, &join(&root, "a/b/nested.txt"), &join(&root, "a/moved.txt")), "rename a file");
        check!(vfs.write_file(None, &join(&root, "old/inner.txt"), b"inner\n", false), "inner.txt");
        check!(vfs.rename(None, &join(&root, "old"), &join(&root, "new")), "rename a directory");
        for name in ["gone/x.txt", "gone/deeper/y.txt"] {
            check!(vfs.write_file(None, &join(&root, name), &[0x5a; 3000], false), name);
        }
        check!(vfs.unlink(None, &join(&root, "gone/deeper/y.txt")), "unlink y.txt");
        check!(vfs.rmdir(None, &join(&root, "gone/deeper")), "rmdir deeper");
        check!(vfs.unlink(None, &join(&root, "gone/x.txt")), "unlink x.txt");
        check!(vfs.rmdir(None, &join(&root, "gone")), "rmdir gone");
        check!(vfs.symlink(None, "small.txt", &join(&root, "link")), "symlink");
        check!(vfs.truncate(None, &join(&root, "a/moved.txt"), 3), "truncate");

        // What was written reads back through the VFS (and later, on the host, through debugfs).
        let mut crc = Crc32::new();
        let mut piece = vec![0u8; 64 * 1024];
        let mut offset = 0;
        while offset < big_size {
            let count = (big_size - offset).min(piece.len() as u64) as usize;
            for (index, byte) in piece[..count].iter_mut().enumerate() {
                *byte = pattern_byte(offset + index as u64);
            }
            crc.update(&piece[..count]);
            offset += count as u64;
        }
        kassert_eq!(check!(file_checksum(vfs, &join(&root, "big.bin")), "reading big.bin"), (big_size, crc.finish()));
        let mut sparse = Crc32::new();
        let zeros = vec![0u8; 64 * 1024];
        let mut position = 0u64;
        for (offset, length) in [(3u64 << 20, 4096u64), (5 << 20, 5)] {
            while position < offset {
                let count = (offset - position).min(zeros.len() as u64) as usize;
                sparse.update(&zeros[..count]);
                position += count as u64;
            }
            let data: Vec<u8> = (offset..offset + length).map(pattern_byte).collect();
            sparse.update(&data);
            position += length;
        }
        kassert_eq!(check!(file_checksum(vfs, &join(&root, "sparse.bin")), "reading sparse.bin"), ((5u64 << 20) + 5, sparse.finish()));
        let sparse_blocks = check!(vfs.stat(None, &join(&root, "sparse.bin")), "stat sparse.bin").blocks;
        kassert!(sparse_blocks < 2 * 4096 / 512 + 64, "sparse.bin allocates {} sectors: holes were filled", sparse_blocks);
        kassert!(vfs.stat(None, &join(&root, "gone")) == Err(Errno::ENOENT), "gone still exists");

        let mut lines = Vec::new();
        check!(describe_tree(vfs, MOUNTPOINT, "/w", &mut lines), "describing /w");
        lines.push(String::from("absent\t/w/gone"));
        lines.push(String::from("absent\t/w/old"));
        sync_and_unmount(vfs)?;
        print_expectations(&lines);
        Ok(())
    }
);

crate::ktest!(
    manual fn fill_until_enospc_and_remount() {
        let vfs = the_vfs()?;
        require_disk(vfs)?;
        let source = {
            let mut text = String::new();
            let _ = vfs.write_mounts(&mut text);
            text.lines().find(|line| line.split(' ').nth(1) == Some(MOUNTPOINT)).and_then(|line| line.split(' ').next()).map(String::from)
        }
        .unwrap_or_else(|| String::from("vda"));
        check!(vfs.mkdir(None, "/mnt/fill", 0o755), "mkdir /mnt/fill");
        let mut error = None;
        let mut files = 0;
        while files < 10_000 {
            let path = format!("/mnt/fill/f{:04}", files);
            files += 1;
            if let Err(errno) = write_pattern(vfs, &path, 0, 100 * 1024) {
                error = Some(errno);
                break;
            }
        }
        kassert_eq!(error, Some(Errno::ENOSPC));
        let statistics = check!(vfs.statfs(None, MOUNTPOINT), "statfs");
        kassert!(statistics.available_blocks * statistics.block_size < 100 * 1024, "{} blocks still free", statistics.available_blocks);
        crate::println!("interop: ENOSPC after {} files, {} blocks free", files, statistics.free_blocks);
        // A full disk still takes deletions, and then writes again.
        check!(vfs.unlink(None, "/mnt/fill/f0000"), "unlink after ENOSPC");
        check!(write_pattern(vfs, "/mnt/fill/again", 0, 10 * 1024), "writing after freeing space");

        let mut before = Vec::new();
        check!(describe_tree(vfs, MOUNTPOINT, "/", &mut before), "describing the full disk");
        sync_and_unmount(vfs)?;
        check!(super::root::mount("ext2", &source, MOUNTPOINT, false), "mounting again");
        let mut after = Vec::new();
        check!(describe_tree(vfs, MOUNTPOINT, "/", &mut after), "describing after the remount");
        kassert!(before == after, "the tree differs after unmount and mount ({} lines before, {} after)", before.len(), after.len());
        sync_and_unmount(vfs)?;
        print_expectations(&after);
        Ok(())
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_the_check_value_in_pieces() {
        let mut crc = Crc32::new();
        crc.update(b"1234");
        crc.update(b"56789");
        assert_eq!(crc.finish(), 0xcbf4_3926);
        assert_eq!(crc.finish(), crate::block::partition::crc32(b"123456789"));
    }

    #[test]
    fn manifest_comparison_finds_missing_changed_and_extra_entries() {
        let described: Vec<String> = ["dir\t/\tMANIFEST,a,b", "file\t/a\t3\t00000001", "link\t/b\ta", "file\t/MANIFEST\t9\t12345678"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(compare_manifest("dir\t/\tMANIFEST,a,b\nfile\t/a\t3\t00000001\nlink\t/b\ta\n", &described, "/MANIFEST").is_empty());
        let differences = compare_manifest("dir\t/\tMANIFEST,a\nfile\t/a\t3\t00000002\n", &described, "/MANIFEST");
        assert_eq!(differences.len(), 3, "{differences:?}");
    }
}
