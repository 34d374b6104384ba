//! Fuzz target: any bytes as an ext2 image. Mounting, walking the tree, reading every file and a few writes must never panic or hang.

#![no_main]

use std::sync::Arc;

use hinoki_kernel::block::RamDisk;
use hinoki_kernel::fs::commands::disk_usage;
use hinoki_kernel::fs::ext2::Ext2;
use hinoki_kernel::fs::page_cache::PageCache;
use hinoki_kernel::fs::vfs::Vfs;
use libfuzzer_sys::fuzz_target;

fn read_everything(vfs: &Vfs, path: &str, depth: u32) {
    if depth > 8 {
        return;
    }
    let Ok(entries) = vfs.read_directory(None, path) else { return };
    for entry in entries.iter().take(64) {
        if entry.name == "." || entry.name == ".." {
            continue;
        }
        let child = if path == "/" { format!("/{}", entry.name) } else { format!("{}/{}", path, entry.name) };
        match vfs.lstat(None, &child) {
            Ok(metadata) if metadata.is_directory() => read_everything(vfs, &child, depth + 1),
            Ok(metadata) if metadata.size < (1 << 20) => {
                let _ = vfs.read_to_end(None, &child);
                let _ = vfs.readlink(None, &child);
            }
            _ => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let disk = Arc::new(RamDisk::from_vec("fuzz", 512, data.to_vec()));
    let Ok(ext2) = Ext2::mount(PageCache::with_clock(disk, 64, || 0), false, || 0) else { return };
    let vfs = Vfs::new();
    if vfs.mount("fuzz", "/", ext2, false).is_err() {
        return;
    }
    let _ = disk_usage(&vfs, None, "/");
    read_everything(&vfs, "/", 0);
    let _ = vfs.write_file(None, "/fuzz-new", &[7; 5000], false);
    let _ = vfs.mkdir(None, "/fuzz-dir", 0o755);
    let _ = vfs.rename(None, "/fuzz-new", "/fuzz-dir/moved");
    let _ = vfs.unlink(None, "/fuzz-dir/moved");
    let _ = vfs.unmount_all();
});
