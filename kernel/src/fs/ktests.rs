//! In-kernel tests of the file systems on the machine (heap, interrupt-saving locks): the root ramfs, procfs at /proc, and a RAM disk through a request queue and the page cache.

use alloc::sync::Arc;
use alloc::vec;

use crate::block::{BlockDevice, QueuedDevice, RamDisk, SchedulerKind};
use crate::fs::page_cache::PageCache;
use crate::kassert;

crate::ktest!(
    fn root_ramfs_and_proc_mount() {
        crate::fs::init_root().map_err(|errno| crate::ktest::TestFailure::new(file!(), line!(), format_args!("init_root: {}", errno)))?;
        let Some(vfs) = crate::fs::vfs() else {
            return Err(crate::ktest::TestFailure::new(file!(), line!(), format_args!("no VFS after init_root")));
        };
        kassert!(vfs.write_file(None, "/tmp/ktest", b"written in the kernel", false).is_ok(), "cannot write /tmp/ktest");
        let back = vfs.read_to_end(None, "/tmp/ktest").unwrap_or_default();
        kassert!(back == b"written in the kernel", "read back {} bytes", back.len());
        let mounts = vfs.read_to_end(None, "/proc/mounts").unwrap_or_default();
        kassert!(
            mounts.starts_with(b"rootfs / ramfs rw"),
            "/proc/mounts starts {:?}",
            core::str::from_utf8(&mounts[..mounts.len().min(40)])
        );
        let version = vfs.read_to_end(None, "/proc/version").unwrap_or_default();
        kassert!(version.starts_with(b"Hinoki"), "/proc/version through the VFS");
        kassert!(vfs.unlink(None, "/tmp/ktest").is_ok(), "cannot unlink /tmp/ktest");
        Ok(())
    }
);

crate::ktest!(
    fn ram_disk_through_queue_and_page_cache() {
        let disk = Arc::new(RamDisk::new("ktest-ram", 512, 256));
        let queued = Arc::new(QueuedDevice::new(disk.clone(), SchedulerKind::Deadline));
        let cache = PageCache::new(queued.clone(), 16);
        let data = vec![0xa5u8; 20_000];
        kassert!(cache.write(1000, &data).is_ok(), "cache write");
        kassert!(cache.sync().is_ok(), "cache sync");
        let mut back = vec![0u8; 20_000];
        kassert!(disk.read_bytes(1000, &mut back).is_ok(), "disk read");
        kassert!(back == data, "data on the disk differs");
        kassert!(disk.statistics().writes_completed < 6, "{} device writes for 6 adjacent pages", disk.statistics().writes_completed);
        Ok(())
    }
);

crate::ktest!(
    fn devfs_memory_devices_and_registered_disks() {
        crate::fs::init_root().map_err(|errno| crate::ktest::TestFailure::new(file!(), line!(), format_args!("init_root: {}", errno)))?;
        let Some(vfs) = crate::fs::vfs() else {
            return Err(crate::ktest::TestFailure::new(file!(), line!(), format_args!("no VFS after init_root")));
        };
        let names: alloc::vec::Vec<alloc::string::String> =
            vfs.read_directory(None, "/dev").unwrap_or_default().into_iter().map(|entry| entry.name).collect();
        for name in ["null", "zero", "full", "random", "urandom", "console"] {
            kassert!(names.iter().any(|listed| listed == name), "/dev/{} missing from {:?}", name, names);
        }
        let zero = vfs.open(None, "/dev/zero", crate::fs::vfs::OpenFlags::READ_ONLY, 0);
        kassert!(zero.is_ok(), "cannot open /dev/zero");
        let zero = zero.unwrap_or_else(|_| unreachable!());
        let mut buffer = [0xffu8; 64];
        kassert!(vfs.read(&zero, &mut buffer) == Ok(64) && buffer == [0; 64], "/dev/zero gave {:?}", &buffer[..8]);
        kassert!(vfs.write_file(None, "/dev/full", b"x", false) == Err(crate::errno::Errno::ENOSPC), "/dev/full accepted a write");
        let first = vfs.read_to_end(None, "/dev/null").unwrap_or_else(|_| vec![1]);
        kassert!(first.is_empty(), "/dev/null gave {} bytes", first.len());

        let disk = Arc::new(RamDisk::new("ram15", 512, 16));
        let entry =
            crate::block::RegisteredDevice { device: disk.clone(), queue: None, major: crate::block::registry::RAMDISK_MAJOR, minor: 15 };
        kassert!(crate::block::register(entry).is_ok(), "cannot register ram15");
        let metadata = vfs.stat(None, "/dev/ram15");
        kassert!(
            metadata.is_ok_and(|metadata| metadata.kind == crate::fs::vfs::FileType::BlockDevice
                && metadata.rdev == crate::fs::vfs::DeviceNumber::new(1, 15)),
            "/dev/ram15 is not block device 1,15"
        );
        let written = vfs.write_file(None, "/dev/ram15", b"through devfs", false);
        let mut back = [0u8; 13];
        let read = disk.read_bytes(0, &mut back);
        let _ = crate::block::unregister("ram15");
        kassert!(written.is_ok() && read.is_ok() && &back == b"through devfs", "write through /dev/ram15: {:?} {:?}", written, &back);
        kassert!(vfs.stat(None, "/dev/ram15").is_err(), "/dev/ram15 outlived its registration");
        Ok(())
    }
);

crate::ktest!(
    fn inode_and_dentry_caches_count_open_files_and_lookups() {
        use crate::fs::vfs::{OpenFlags, DENTRY_CACHE, INODE_CACHE};
        fn active<T>(cache: &crate::mm::TypedCache<T>) -> usize {
            cache.statistics().active_objects
        }
        const FILES: usize = 8;
        crate::fs::init_root().map_err(|errno| crate::ktest::TestFailure::new(file!(), line!(), format_args!("init_root: {}", errno)))?;
        let Some(vfs) = crate::fs::vfs() else {
            return Err(crate::ktest::TestFailure::new(file!(), line!(), format_args!("no VFS after init_root")));
        };
        kassert!(vfs.mkdir(None, "/tmp/slab-objects", 0o755).is_ok(), "mkdir /tmp/slab-objects");
        kassert!(crate::fs::root::mount("ramfs", "none", "/tmp/slab-objects", false).is_ok(), "mount a ramfs on /tmp/slab-objects");
        // Closed inodes linger in the VFS's map until pruned; start from a pruned map.
        vfs.prune_inodes();
        let (dentries_before, inodes_before) = (active(&DENTRY_CACHE), active(&INODE_CACHE));
        let mut files = alloc::vec::Vec::new();
        for index in 0..FILES {
            let path = alloc::format!("/tmp/slab-objects/file{}", index);
            match vfs.open(None, &path, OpenFlags(OpenFlags::CREATE.0 | OpenFlags::READ_WRITE.0), 0o644) {
                Ok(file) => files.push(file),
                Err(errno) => return Err(crate::ktest::TestFailure::new(file!(), line!(), format_args!("open {}: {}", path, errno))),
            }
        }
        let (dentries_open, inodes_open) = (active(&DENTRY_CACHE), active(&INODE_CACHE));
        kassert!(
            dentries_open >= dentries_before + FILES,
            "dentry objects {} -> {} after {} new names",
            dentries_before,
            dentries_open,
            FILES
        );
        kassert!(
            inodes_open == inodes_before + FILES,
            "inode_cache objects {} -> {} with {} files open",
            inodes_before,
            inodes_open,
            FILES
        );
        let mut slabinfo = alloc::string::String::new();
        kassert!(crate::mm::slab_common::show_slabinfo(&mut slabinfo).is_ok(), "show_slabinfo");
        for name in ["inode_cache ", "dentry "] {
            kassert!(slabinfo.lines().any(|line| line.starts_with(name)), "/proc/slabinfo has no {}line", name);
        }
        drop(files);
        vfs.prune_inodes();
        let inodes_closed = active(&INODE_CACHE);
        kassert!(inodes_closed == inodes_before, "inode_cache objects {} after closing, {} before opening", inodes_closed, inodes_before);
        kassert!(vfs.unmount("/tmp/slab-objects").is_ok(), "unmount /tmp/slab-objects");
        let dentries_unmounted = active(&DENTRY_CACHE);
        kassert!(
            dentries_unmounted + FILES <= dentries_open,
            "dentry objects {} after unmount, {} with the files looked up",
            dentries_unmounted,
            dentries_open
        );
        kassert!(vfs.rmdir(None, "/tmp/slab-objects").is_ok(), "rmdir /tmp/slab-objects");
        Ok(())
    }
);
