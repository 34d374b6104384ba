//! The kernel's VFS instance: the root file system (ramfs at `/`, procfs at `/proc`, devfs at `/dev`), mounting by type name, and `/proc/mounts` and `/proc/filesystems`.

use alloc::sync::Arc;
use core::fmt::{self, Write};

use super::devfs::{DevFs, KERNEL_CONSOLE};
use super::ext2::Ext2;
use super::procfs::filesystem::ProcFs;
use super::ramfs::RamFs;
use super::vfs::{current_time_seconds, Errno, FileSystem, Result, Vfs};
use crate::sync::Once;

/// Bytes of file data the root ramfs may hold.
pub const ROOT_RAMFS_CAPACITY: u64 = 64 << 20;
/// Pages an ext2 mount's page cache holds (16 MiB).
pub const EXT2_CACHE_PAGES: usize = 4096;
/// The file system types `mount -t` knows, as `/proc/filesystems` lists them.
pub const FILESYSTEM_TYPES: [(&str, bool); 5] = [("ramfs", false), ("tmpfs", false), ("proc", false), ("devtmpfs", false), ("ext2", true)];

static VFS: Once<Vfs> = Once::new();

/// The kernel's VFS, once [`init_root`] has run.
pub fn vfs() -> Option<&'static Vfs> {
    VFS.get()
}

fn show_mounts(out: &mut dyn Write) -> fmt::Result {
    match vfs() {
        Some(vfs) => vfs.write_mounts(out),
        None => Ok(()),
    }
}

fn show_filesystems(out: &mut dyn Write) -> fmt::Result {
    for (name, needs_device) in FILESYSTEM_TYPES {
        writeln!(out, "{}\t{}", if needs_device { "" } else { "nodev" }, name)?;
    }
    Ok(())
}

/// Sets up the root file system: ramfs at `/` with `/proc`, `/dev`, `/mnt` and `/tmp`,
/// procfs at `/proc`, devfs at `/dev`, and the `/proc` files of the VFS and block layer. Needs the heap.
/// Calling it again has no effect.
pub fn init_root() -> Result<()> {
    if VFS.get().is_some() {
        return Ok(());
    }
    let vfs = VFS.call_once(Vfs::new);
    vfs.mount("rootfs", "/", Arc::new(RamFs::new(current_time_seconds, ROOT_RAMFS_CAPACITY)), false)?;
    for directory in ["/proc", "/dev", "/mnt", "/tmp"] {
        vfs.mkdir(None, directory, 0o755)?;
    }
    vfs.mount("proc", "/proc", Arc::new(ProcFs::new()), false)?;
    vfs.mount("devtmpfs", "/dev", Arc::new(DevFs::new(KERNEL_CONSOLE, current_time_seconds())), false)?;
    let _ = super::procfs::register("mounts", show_mounts);
    let _ = super::procfs::register("filesystems", show_filesystems);
    crate::block::register_proc_files();
    log::info!("vfs: ramfs on /, proc on /proc, devtmpfs on /dev");
    Ok(())
}

/// Creates a file system of type `type_name` on `source` (a registered block device for
/// ext2; ignored otherwise). `ENODEV` for an unknown type or device.
pub fn create_filesystem(type_name: &str, source: &str, read_only: bool) -> Result<Arc<dyn FileSystem>> {
    match type_name {
        "ramfs" | "tmpfs" => Ok(Arc::new(RamFs::new(current_time_seconds, ROOT_RAMFS_CAPACITY))),
        "proc" => Ok(Arc::new(ProcFs::new())),
        "devtmpfs" => Ok(Arc::new(DevFs::new(KERNEL_CONSOLE, current_time_seconds()))),
        "ext2" => {
            let device = crate::block::find(source).ok_or(Errno::ENODEV)?.device;
            let cache = super::page_cache::PageCache::new(device, EXT2_CACHE_PAGES);
            match Ext2::mount(cache, read_only, current_time_seconds) {
                Ok(file_system) => Ok(file_system),
                Err(error) => {
                    log::error!("EXT2-fs ({}): {}", source, error);
                    Err(error.errno)
                }
            }
        }
        _ => Err(Errno::ENODEV),
    }
}

/// Mounts a new file system of `type_name` from `source` at `target` in the kernel's VFS.
pub fn mount(type_name: &str, source: &str, target: &str, read_only: bool) -> Result<()> {
    let vfs = vfs().ok_or(Errno::ENODEV)?;
    let file_system = create_filesystem(type_name, source, read_only)?;
    vfs.mount(source, target, file_system, read_only).map(|_| ())
}

/// ext2's superblock magic, at byte 56 of the superblock (byte 1080 of the device).
const EXT2_MAGIC: u16 = 0xef53;
const EXT2_MAGIC_OFFSET: u64 = 1024 + 56;

/// Whether `device` carries ext2's superblock magic; the magic found otherwise.
fn ext2_magic(name: &str) -> core::result::Result<(), alloc::string::String> {
    let device = crate::block::find(name).ok_or_else(|| alloc::string::String::from("no such device"))?.device;
    let mut magic = [0u8; 2];
    device.read_bytes(EXT2_MAGIC_OFFSET, &mut magic).map_err(|error| alloc::format!("cannot read the superblock: {}", error))?;
    match u16::from_le_bytes(magic) {
        EXT2_MAGIC => Ok(()),
        other => Err(alloc::format!("no ext2 superblock (magic {:#06x})", other)),
    }
}

/// The directory the boot disk is mounted on.
pub const BOOT_DISK_MOUNTPOINT: &str = "/mnt";

/// Mounts the ext2 file system of the first disk, `vda` (or its first partition `vda1`),
/// on [`BOOT_DISK_MOUNTPOINT`], read-write unless ext2 forces read-only (it logs why). Without a disk nothing happens; a disk without
/// ext2, or one the ext2 driver refuses, is logged and left unmounted.
pub fn mount_boot_disk() {
    if crate::block::find("vda").is_none() {
        return;
    }
    let candidates = ["vda", "vda1"];
    let mut reasons = alloc::vec::Vec::new();
    for name in candidates {
        if crate::block::find(name).is_none() {
            continue;
        }
        if let Err(reason) = ext2_magic(name) {
            reasons.push(alloc::format!("{}: {}", name, reason));
            continue;
        }
        match mount("ext2", &alloc::format!("/dev/{}", name), BOOT_DISK_MOUNTPOINT, false) {
            Ok(()) => {
                log::info!("EXT2-fs ({}): mounted on {}", name, BOOT_DISK_MOUNTPOINT);
                return;
            }
            Err(error) => {
                log::error!("EXT2-fs ({}): mount on {} refused: {}", name, BOOT_DISK_MOUNTPOINT, error);
                return;
            }
        }
    }
    log::warn!("vda: not mounted on {}: {}", BOOT_DISK_MOUNTPOINT, reasons.join("; "));
}

/// Writes everything cached and unmounts every file system, innermost first; `poweroff`
/// and `reboot` call it so nothing written is lost by a clean shutdown.
pub fn shutdown() {
    if let Some(vfs) = vfs() {
        if let Err(error) = vfs.unmount_all() {
            log::error!("vfs: flushing file systems at shutdown failed: {}", error);
        }
    }
    if let Err(error) = super::page_cache::writeback(0) {
        log::error!("page cache: write-back at shutdown failed: {}", error);
    }
}

/// Seconds between two runs of the write-back thread (Linux's `dirty_writeback_centisecs`).
pub const WRITEBACK_INTERVAL_SECONDS: u64 = 5;

/// Starts the `flush` kernel thread: every [`WRITEBACK_INTERVAL_SECONDS`] it writes the pages
/// dirty for longer than [`super::page_cache::DIRTY_EXPIRE_MILLISECONDS`]. Needs the scheduler.
pub fn start_writeback_thread() -> core::result::Result<(), crate::sched::SpawnError> {
    crate::sched::spawn("flush", || loop {
        crate::sched::sleep(core::time::Duration::from_secs(WRITEBACK_INTERVAL_SECONDS));
        periodic_writeback();
    })
    .map(drop)
}

/// What a kernel thread calls periodically (every few seconds): writes pages dirty for
/// longer than [`super::page_cache::DIRTY_EXPIRE_MILLISECONDS`] (Linux's flusher threads).
pub fn periodic_writeback() {
    if let Err(error) = super::page_cache::writeback(super::page_cache::DIRTY_EXPIRE_MILLISECONDS) {
        log::warn!("page cache: periodic write-back failed: {}", error);
    }
}
