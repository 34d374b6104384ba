//! Drives ext2 over an untrusted image for the fuzzer and the randomized host test: mount, walk every directory, stat, read and follow what it finds, make a few changes, unmount; each step bounded.
//!
//! Whatever the bytes, this must return: no panic, no endless loop. Errors are expected
//! and ignored; what it returns is a count of what it reached, so callers can see the
//! image was explored.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use super::Ext2;
use crate::block::RamDisk;
use crate::fs::page_cache::PageCache;
use crate::fs::vfs::{FileType, OpenFlags, Vfs};

/// Most directory entries looked at in one run.
pub const MAX_ENTRIES: usize = 400;
/// Deepest directory descended into.
pub const MAX_DEPTH: usize = 8;
/// Bytes read from the start of each file (and as much again from its end).
pub const READ_LENGTH: usize = 16 << 10;

/// What one run reached.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Exploration {
    /// The mount succeeded.
    pub mounted: bool,
    /// Directory entries visited.
    pub entries: usize,
    /// File bytes read.
    pub bytes_read: usize,
}

/// Mounts `image` (cut to whole 512-byte sectors) read-write and exercises it.
pub fn exercise_image(image: &[u8]) -> Exploration {
    let mut exploration = Exploration::default();
    let length = image.len() / 512 * 512;
    if length == 0 {
        return exploration;
    }
    let disk = Arc::new(RamDisk::from_vec("fuzz0", 512, image[..length].to_vec()));
    let Ok(ext2) = Ext2::mount(PageCache::with_clock(disk, 64, || 0), false, || 0) else { return exploration };
    exploration.mounted = true;
    let vfs = Vfs::new();
    if vfs.mount("fuzz0", "/", ext2, false).is_err() {
        return exploration;
    }
    walk(&vfs, String::from("/"), 0, &mut exploration);
    let _ = vfs.statfs(None, "/");
    let _ = vfs.write_file(None, "/fuzz-new", &[0x5a; 5000], false);
    let _ = vfs.mkdir(None, "/fuzz-directory", 0o755);
    let _ = vfs.rename(None, "/fuzz-new", "/fuzz-directory/moved");
    let _ = vfs.symlink(None, "/fuzz-directory/moved", "/fuzz-link");
    let _ = vfs.unlink(None, "/fuzz-directory/moved");
    let _ = vfs.rmdir(None, "/fuzz-directory");
    let _ = crate::fs::commands::disk_usage(&vfs, None, "/");
    let _ = vfs.unmount_all();
    exploration
}

fn walk(vfs: &Vfs, path: String, depth: usize, exploration: &mut Exploration) {
    let Ok(entries) = vfs.read_directory(None, &path) else { return };
    for entry in entries {
        if exploration.entries >= MAX_ENTRIES {
            return;
        }
        exploration.entries += 1;
        if entry.name == "." || entry.name == ".." {
            continue;
        }
        let child = if path.ends_with('/') { format!("{}{}", path, entry.name) } else { format!("{}/{}", path, entry.name) };
        let Ok(metadata) = vfs.lstat(None, &child) else { continue };
        match metadata.kind {
            FileType::Directory if depth < MAX_DEPTH => walk(vfs, child, depth + 1, exploration),
            FileType::Regular => exploration.bytes_read += read_ends(vfs, &child, metadata.size),
            FileType::Symlink => {
                let _ = vfs.readlink(None, &child);
                let _ = vfs.stat(None, &child);
            }
            _ => {}
        }
    }
}

/// Reads up to [`READ_LENGTH`] bytes at the start and at the end of a file.
fn read_ends(vfs: &Vfs, path: &str, size: u64) -> usize {
    let Ok(file) = vfs.open(None, path, OpenFlags::READ_ONLY, 0) else { return 0 };
    let mut buffer = vec![0u8; READ_LENGTH];
    let mut total = 0;
    for offset in [0, size.saturating_sub(READ_LENGTH as u64)] {
        if let Ok(count) = vfs.pread(&file, offset, &mut buffer) {
            total += count;
        }
    }
    total
}

/// A deterministic mutation of `image` for round `round` of a seeded run (xorshift64):
/// bit flips, bytes set to 0 or 0xff, 32-bit fields set to edge values, or a truncation.
/// Most hits land in the first `metadata_bytes` (superblock, descriptors, bitmaps, inode
/// tables, the first directories), where damage matters most.
pub fn mutate(image: &[u8], seed: u64, metadata_bytes: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut damaged = image.to_vec();
    if damaged.is_empty() {
        return damaged;
    }
    let hits = 1 + next() % 8;
    for _ in 0..hits {
        let limit = if next() % 8 == 0 { damaged.len() } else { metadata_bytes.clamp(1, damaged.len()) };
        let position = (next() % limit as u64) as usize;
        match next() % 6 {
            0 => damaged[position] ^= 1 << (next() % 8),
            1 => damaged[position] = 0,
            2 => damaged[position] = 0xff,
            3 | 4 => {
                let aligned = position & !3;
                if aligned + 4 <= damaged.len() {
                    let values = [0u32, 1, 2, 0x7fff_ffff, 0xffff_ffff, 0x0010_0000, (image.len() / 1024) as u32];
                    let value = values[(next() % values.len() as u64) as usize];
                    damaged[aligned..aligned + 4].copy_from_slice(&value.to_le_bytes());
                }
            }
            _ => {
                if next() % 4 == 0 {
                    let keep = (next() % damaged.len() as u64) as usize;
                    damaged.truncate(keep.max(512));
                }
            }
        }
    }
    damaged
}
