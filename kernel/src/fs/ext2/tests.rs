//! Host tests of ext2 against e2fsprogs: images made by `mke2fs -d` read back exactly; what we write passes `e2fsck -fn` and reads back through `debugfs`; corrupt images fail cleanly.

use super::*;
use crate::block::RamDisk;
use crate::fs::vfs::{OpenFlags, SeekFrom, Vfs};
use std::path::{Path, PathBuf};
use std::process::Command;

fn clock() -> i64 {
    1_750_000_000
}

fn have_e2fsprogs() -> bool {
    let found = Command::new("mke2fs").arg("-V").output().is_ok();
    if !found {
        eprintln!("SKIPPED: mke2fs is not installed (apt-get install e2fsprogs)");
    }
    found
}

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let path = std::env::temp_dir().join(format!("hinoki-ext2-{}-{}", name, std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Scratch(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn pattern(length: usize, seed: u32) -> Vec<u8> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..length)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect()
}

/// A tree with small, empty, indirect and double-indirect files, nested and large
/// directories and both kinds of symlink.
fn populate(root: &Path) {
    std::fs::write(root.join("hello.txt"), b"hello, ext2\n").unwrap();
    std::fs::write(root.join("empty"), b"").unwrap();
    std::fs::write(root.join("indirect.bin"), pattern(100_000, 1)).unwrap();
    std::fs::write(root.join("double.bin"), pattern(700_000, 2)).unwrap();
    std::fs::create_dir_all(root.join("a/b/c")).unwrap();
    std::fs::write(root.join("a/b/c/deep"), b"deep file").unwrap();
    std::fs::create_dir(root.join("many")).unwrap();
    for index in 0..150 {
        std::fs::write(root.join(format!("many/file-with-a-longish-name-{index:03}")), format!("{index}")).unwrap();
    }
    std::os::unix::fs::symlink("hello.txt", root.join("short-link")).unwrap();
    std::os::unix::fs::symlink(format!("a/b/{}c/deep", "./".repeat(35)), root.join("long-link")).unwrap();
}

fn make_image(scratch: &Scratch, block_size: u32, kilobytes: u32, contents: Option<&Path>) -> Vec<u8> {
    let image = scratch.0.join(format!("image-{block_size}.ext2"));
    let _ = std::fs::remove_file(&image);
    let mut command = Command::new("mke2fs");
    command.args(["-q", "-F", "-t", "ext2", "-b", &block_size.to_string(), "-E", "root_owner=0:0"]);
    if let Some(directory) = contents {
        command.arg("-d").arg(directory);
    }
    let output = command.arg(&image).arg(format!("{kilobytes}k")).env("MKE2FS_CONFIG", "/dev/null").output().unwrap();
    assert!(output.status.success(), "mke2fs failed: {}", String::from_utf8_lossy(&output.stderr));
    std::fs::read(&image).unwrap()
}

fn mount_image(bytes: Vec<u8>) -> (Arc<RamDisk>, Arc<Ext2>, Vfs) {
    let disk = Arc::new(RamDisk::from_vec("ram0", 512, bytes));
    let cache = PageCache::with_clock(disk.clone(), 1024, || 0);
    let ext2 = Ext2::mount(cache, false, clock).expect("mount");
    let vfs = Vfs::new();
    vfs.mount("/dev/ram0", "/", ext2.clone(), false).unwrap();
    (disk, ext2, vfs)
}

fn e2fsck(scratch: &Scratch, bytes: &[u8]) -> (bool, String) {
    let image = scratch.0.join("check.img");
    std::fs::write(&image, bytes).unwrap();
    let output = Command::new("e2fsck").arg("-fn").arg(&image).output().unwrap();
    (output.status.success(), format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)))
}

fn debugfs(scratch: &Scratch, bytes: &[u8], request: &str) -> Vec<u8> {
    let image = scratch.0.join("debugfs.img");
    std::fs::write(&image, bytes).unwrap();
    let output = Command::new("debugfs").arg("-R").arg(request).arg(&image).output().unwrap();
    output.stdout
}

/// Compares the mounted tree with `directory` on the host: names, types, bytes, link targets.
fn compare_tree(vfs: &Vfs, path: &str, directory: &Path) {
    let mut ours: Vec<String> = vfs
        .read_directory(None, path)
        .unwrap_or_else(|error| panic!("listing {path}: {error:?}"))
        .into_iter()
        .map(|entry| entry.name)
        .filter(|name| name != "." && name != ".." && name != "lost+found")
        .collect();
    ours.sort();
    let mut theirs: Vec<String> =
        std::fs::read_dir(directory).unwrap().map(|entry| entry.unwrap().file_name().into_string().unwrap()).collect();
    theirs.sort();
    assert_eq!(ours, theirs, "listing of {path}");
    for name in theirs {
        let host = directory.join(&name);
        let inside = if path == "/" { format!("/{name}") } else { format!("{path}/{name}") };
        let kind = std::fs::symlink_metadata(&host).unwrap().file_type();
        if kind.is_symlink() {
            assert_eq!(vfs.readlink(None, &inside).unwrap(), std::fs::read_link(&host).unwrap().to_str().unwrap());
        } else if kind.is_dir() {
            compare_tree(vfs, &inside, &host);
        } else {
            assert_eq!(vfs.read_to_end(None, &inside).unwrap(), std::fs::read(&host).unwrap(), "contents of {inside}");
        }
    }
}

fn reads_mke2fs_tree(block_size: u32) {
    if !have_e2fsprogs() {
        return;
    }
    let scratch = Scratch::new(&format!("read{block_size}"));
    let source = scratch.0.join("tree");
    std::fs::create_dir(&source).unwrap();
    populate(&source);
    let bytes = make_image(&scratch, block_size, 8192, Some(&source));
    let (disk, ext2, vfs) = mount_image(bytes);
    assert_eq!(ext2.block_size(), u64::from(block_size));
    compare_tree(&vfs, "/", &source);
    assert_eq!(vfs.read_to_end(None, "/short-link").unwrap(), b"hello, ext2\n");
    assert_eq!(vfs.read_to_end(None, "/long-link").unwrap(), b"deep file");
    let file = vfs.open(None, "/double.bin", OpenFlags::READ_ONLY, 0).unwrap();
    vfs.lseek(&file, SeekFrom::Start(654_321)).unwrap();
    let mut buffer = [0u8; 1000];
    assert_eq!(vfs.read(&file, &mut buffer).unwrap(), 1000);
    assert_eq!(&buffer[..], &pattern(700_000, 2)[654_321..655_321]);
    let metadata = vfs.stat(None, "/a/b").unwrap();
    assert_eq!((metadata.kind, metadata.links), (FileType::Directory, 3));
    drop(file);
    vfs.unmount_all().unwrap();
    let _ = disk;
}

#[test]
fn reads_mke2fs_tree_with_1k_blocks() {
    reads_mke2fs_tree(1024);
}

#[test]
fn reads_mke2fs_tree_with_4k_blocks() {
    reads_mke2fs_tree(4096);
}

fn writes_pass_e2fsck_and_debugfs(block_size: u32) {
    if !have_e2fsprogs() {
        return;
    }
    let scratch = Scratch::new(&format!("write{block_size}"));
    let source = scratch.0.join("tree");
    std::fs::create_dir(&source).unwrap();
    populate(&source);
    let bytes = make_image(&scratch, block_size, 16384, Some(&source));
    let (disk, _ext2, vfs) = mount_image(bytes);
    // Small, double-indirect and sparse (triple-indirect with 1 KiB blocks) files.
    vfs.write_file(None, "/small", b"written by hinoki\n", false).unwrap();
    let big = pattern(1_500_000, 7);
    vfs.write_file(None, "/big.bin", &big, false).unwrap();
    let sparse = vfs.open(None, "/sparse", OpenFlags::READ_WRITE | OpenFlags::CREATE, 0o600).unwrap();
    vfs.pwrite(&sparse, 100 << 20, b"far away").unwrap();
    vfs.pwrite(&sparse, 5_000, b"near").unwrap();
    let sparse_blocks = vfs.fstat(&sparse).unwrap().blocks;
    assert!(sparse_blocks < 64, "holes take no blocks ({sparse_blocks} sectors)");
    drop(sparse);
    // Directories, renames (within and across directories, replacing), links, deletes.
    vfs.mkdir(None, "/new", 0o750).unwrap();
    vfs.mkdir(None, "/new/inner", 0o755).unwrap();
    vfs.rename(None, "/hello.txt", "/new/hello-moved.txt").unwrap();
    vfs.rename(None, "/a/b", "/new/inner/b").unwrap();
    vfs.write_file(None, "/new/victim", b"to be replaced", false).unwrap();
    vfs.rename(None, "/small", "/new/victim").unwrap();
    vfs.link(None, "/new/victim", "/hard").unwrap();
    vfs.symlink(None, "new/victim", "/link-to-victim").unwrap();
    vfs.unlink(None, "/indirect.bin").unwrap();
    for index in (0..150).step_by(2) {
        vfs.unlink(None, &format!("/many/file-with-a-longish-name-{index:03}")).unwrap();
    }
    vfs.rmdir(None, "/a").unwrap();
    vfs.truncate(None, "/double.bin", 300_000).unwrap();
    vfs.write_file(None, "/double.bin", b"appended", true).unwrap();
    vfs.sync().unwrap();
    vfs.unmount_all().unwrap();
    let image = disk.snapshot();
    let (clean, report) = e2fsck(&scratch, &image);
    assert!(clean, "e2fsck found problems:\n{report}");
    assert_eq!(debugfs(&scratch, &image, "cat /new/victim"), b"written by hinoki\n");
    assert_eq!(debugfs(&scratch, &image, "cat /hard"), b"written by hinoki\n");
    assert_eq!(debugfs(&scratch, &image, "cat /big.bin"), big);
    assert_eq!(debugfs(&scratch, &image, "cat /new/inner/b/c/deep"), b"deep file");
    let mut expected_double = pattern(700_000, 2)[..300_000].to_vec();
    expected_double.extend_from_slice(b"appended");
    assert_eq!(debugfs(&scratch, &image, "cat /double.bin"), expected_double);
    let sparse_bytes = debugfs(&scratch, &image, "cat /sparse");
    assert_eq!(sparse_bytes.len(), (100 << 20) + 8);
    assert_eq!(&sparse_bytes[5_000..5_004], b"near");
    assert_eq!(&sparse_bytes[100 << 20..], b"far away");
    assert!(sparse_bytes[..5_000].iter().all(|&byte| byte == 0));
    let listing = String::from_utf8(debugfs(&scratch, &image, "ls -p /many")).unwrap();
    assert!(listing.contains("file-with-a-longish-name-001") && !listing.contains("file-with-a-longish-name-000"), "{listing}");
    // Remount: the same tree.
    let (_disk, _ext2, vfs) = mount_image(image);
    assert_eq!(vfs.read_to_end(None, "/link-to-victim").unwrap(), b"written by hinoki\n");
    assert_eq!(vfs.read_to_end(None, "/big.bin").unwrap(), big);
    assert_eq!(vfs.stat(None, "/hard").unwrap().links, 2);
    assert_eq!(vfs.stat(None, "/new").unwrap().permissions, 0o750);
    assert_eq!(vfs.stat(None, "/new").unwrap().links, 3);
    assert_eq!(vfs.stat(None, "/a").err(), Some(Errno::ENOENT));
    assert_eq!(vfs.read_directory(None, "/many").unwrap().len(), 2 + 75);
    assert_eq!(vfs.stat(None, "/new/victim").unwrap().modification_time, clock());
}

#[test]
fn writes_pass_e2fsck_and_debugfs_with_1k_blocks() {
    writes_pass_e2fsck_and_debugfs(1024);
}

#[test]
fn writes_pass_e2fsck_and_debugfs_with_2k_blocks() {
    writes_pass_e2fsck_and_debugfs(2048);
}

#[test]
fn reads_mke2fs_tree_with_2k_blocks() {
    reads_mke2fs_tree(2048);
}

#[test]
fn writes_pass_e2fsck_and_debugfs_with_4k_blocks() {
    writes_pass_e2fsck_and_debugfs(4096);
}

#[test]
fn large_file_beyond_4_gib_sets_the_feature_and_stays_consistent() {
    if !have_e2fsprogs() {
        return;
    }
    let scratch = Scratch::new("large");
    let bytes = make_image(&scratch, 4096, 4096, None);
    let (disk, _ext2, vfs) = mount_image(bytes);
    let file = vfs.open(None, "/huge", OpenFlags::WRITE_ONLY | OpenFlags::CREATE, 0o644).unwrap();
    vfs.pwrite(&file, 5 << 30, b"beyond 4 GiB").unwrap();
    assert_eq!(vfs.fstat(&file).unwrap().size, (5 << 30) + 12);
    drop(file);
    vfs.unmount_all().unwrap();
    let image = disk.snapshot();
    let (clean, report) = e2fsck(&scratch, &image);
    assert!(clean, "{report}");
    let stat = String::from_utf8(debugfs(&scratch, &image, "stat /huge")).unwrap();
    assert!(stat.contains("Size: 5368709132"), "{stat}");
}

#[test]
fn filling_the_disk_gives_enospc_and_a_consistent_image() {
    if !have_e2fsprogs() {
        return;
    }
    let scratch = Scratch::new("full");
    let bytes = make_image(&scratch, 1024, 1024, None);
    let (disk, ext2, vfs) = mount_image(bytes);
    let free_before = ext2.statistics().unwrap().free_blocks;
    let file = vfs.open(None, "/filler", OpenFlags::WRITE_ONLY | OpenFlags::CREATE, 0o644).unwrap();
    let chunk = pattern(10_000, 3);
    let mut written = 0u64;
    let error = loop {
        match vfs.write(&file, &chunk) {
            Ok(count) => written += count as u64,
            Err(error) => break error,
        }
        assert!(written < 2 << 20, "the disk never filled");
    };
    assert_eq!(error, Errno::ENOSPC);
    assert_eq!(ext2.statistics().unwrap().free_blocks, 0);
    assert_eq!(vfs.fstat(&file).unwrap().size, written);
    drop(file);
    let mut dropped = 0;
    for index in 0..2000 {
        match vfs.mkdir(None, &format!("/d{index}"), 0o755) {
            Ok(()) => {}
            Err(error) => {
                assert_eq!(error, Errno::ENOSPC);
                dropped += 1;
                break;
            }
        }
    }
    assert_eq!(dropped, 1, "mkdir on a full disk fails with ENOSPC");
    vfs.unmount_all().unwrap();
    let image = disk.snapshot();
    let (clean, report) = e2fsck(&scratch, &image);
    assert!(clean, "{report}");
    let (_disk, ext2, vfs) = mount_image(image);
    let contents = vfs.read_to_end(None, "/filler").unwrap();
    assert_eq!(contents.len() as u64, written);
    assert!(contents.chunks(10_000).all(|piece| piece == &chunk[..piece.len()]));
    vfs.unlink(None, "/filler").unwrap();
    assert!(ext2.statistics().unwrap().free_blocks + 40 >= free_before, "blocks come back after unlink");
}

#[test]
fn metadata_survives_and_unsupported_features_are_handled() {
    if !have_e2fsprogs() {
        return;
    }
    let scratch = Scratch::new("features");
    let bytes = make_image(&scratch, 1024, 2048, None);
    // An unknown read-only-compatible feature: read-only mount, with the feature named.
    let mut ro = bytes.clone();
    let features = ro[1024 + 100] as u32 | 0x20;
    ro[1024 + 100] = features as u8;
    let disk = Arc::new(RamDisk::from_vec("ram0", 512, ro.clone()));
    let ext2 = Ext2::mount(PageCache::with_clock(disk.clone(), 64, || 0), false, clock).unwrap();
    assert!(ext2.is_read_only());
    assert!(ext2.read_only_reason().unwrap().contains("dir_nlink"), "{:?}", ext2.read_only_reason());
    assert_eq!(ext2.create(2, "x", FileType::Regular, 0o644, 0, 0), Err(Errno::EROFS));
    ext2.unmount().unwrap();
    assert!(disk.snapshot() == ro, "a read-only mount writes nothing");
    // An unknown incompatible feature: refused, named.
    let mut incompat = bytes.clone();
    incompat[1024 + 96] |= 0x40;
    let error = mount_error(incompat);
    assert!(error.message.contains("extent"), "{error}");
    // chmod/chown/utimes stick.
    let (disk, _ext2, vfs) = mount_image(bytes);
    vfs.write_file(None, "/owned", b"x", false).unwrap();
    let changes = MetadataChanges {
        permissions: Some(0o4711),
        uid: Some(70_000),
        gid: Some(1234),
        access_time: Some(11),
        modification_time: Some(22),
    };
    vfs.set_metadata(None, "/owned", &changes).unwrap();
    vfs.unmount_all().unwrap();
    let (_disk, _ext2, vfs) = mount_image(disk.snapshot());
    let metadata = vfs.stat(None, "/owned").unwrap();
    assert_eq!(
        (metadata.permissions, metadata.uid, metadata.gid, metadata.access_time, metadata.modification_time),
        (0o4711, 70_000, 1234, 11, 22)
    );
}

#[test]
fn cached_inodes_and_dentry_types_follow_changes() {
    if !have_e2fsprogs() {
        return;
    }
    let scratch = Scratch::new("caches");
    // 4 groups of 1024 inodes: directories spread over the groups, so inode numbers
    // INODE_CACHE_SLOTS apart (sharing an inode-cache slot) appear.
    let bytes = make_image(&scratch, 1024, 32768, None);
    let (disk, _ext2, vfs) = mount_image(bytes);
    crate::fs::vfs::tests::check_cached_types_follow_changes(&vfs);

    let mut paths = vec![String::from("/")];
    for group in 0..8 {
        vfs.mkdir(None, &format!("/g{group}"), 0o755).unwrap();
        paths.push(format!("/g{group}"));
        for file in 0..3 {
            vfs.write_file(None, &format!("/g{group}/f{file}"), b"", false).unwrap();
            paths.push(format!("/g{group}/f{file}"));
        }
    }
    let inode_of = |path: &str| vfs.stat(None, path).unwrap().inode as usize;
    let mut colliding = Vec::new();
    for (index, first) in paths.iter().enumerate() {
        for second in &paths[index + 1..] {
            if inode_of(first) % INODE_CACHE_SLOTS == inode_of(second) % INODE_CACHE_SLOTS {
                colliding.push((first.clone(), second.clone()));
            }
        }
    }
    assert!(!colliding.is_empty(), "inodes sharing a cache slot: {:?}", paths.iter().map(|path| inode_of(path)).collect::<Vec<_>>());
    // Changes to one inode of a pair, read back alternately with the other.
    for (round, (first, second)) in colliding.iter().enumerate() {
        let permissions = 0o600 + round as u16;
        vfs.set_metadata(None, first, &MetadataChanges { permissions: Some(permissions), ..MetadataChanges::default() }).unwrap();
        let second_before = vfs.stat(None, second).unwrap();
        assert_eq!(vfs.stat(None, first).unwrap().permissions, permissions, "{first}");
        if !vfs.stat(None, second).unwrap().is_directory() {
            vfs.write_file(None, second, &pattern(3000 + round, 9), false).unwrap();
            assert_eq!(vfs.stat(None, second).unwrap().size, 3000 + round as u64, "{second}");
        } else {
            assert_eq!(vfs.stat(None, second).unwrap(), second_before, "{second} unchanged");
        }
        assert_eq!(vfs.stat(None, first).unwrap().permissions, permissions, "{first} after {second}");
    }
    // An inode freed and reused: the new file's attributes, not the old one's.
    let old = vfs.stat(None, "/g1/f0").unwrap();
    vfs.unlink(None, "/g1/f0").unwrap();
    vfs.mkdir(None, "/g1/reused", 0o700).unwrap();
    let new = vfs.stat(None, "/g1/reused").unwrap();
    assert_eq!(new.inode, old.inode, "the freed inode number is taken again");
    assert!(new.is_directory() && new.permissions == 0o700 && new.links == 2);
    paths.retain(|path| path != "/g1/f0");
    paths.push(String::from("/g1/reused"));
    let seen: Vec<Metadata> = paths.iter().map(|path| vfs.stat(None, path).unwrap()).collect();
    vfs.unmount_all().unwrap();
    let image = disk.snapshot();
    let (clean, report) = e2fsck(&scratch, &image);
    assert!(clean, "e2fsck found problems:\n{report}");
    // What the caches showed is what is on the disk.
    let (_disk, _ext2, remounted) = mount_image(image);
    for (path, seen) in paths.iter().zip(&seen) {
        assert_eq!(&remounted.stat(None, path).unwrap(), seen, "{path}");
    }
}

#[test]
fn lookups_find_every_name_whatever_block_the_last_one_ended_in() {
    if !have_e2fsprogs() {
        return;
    }
    let scratch = Scratch::new("lookup-hints");
    let source = scratch.0.join("tree");
    std::fs::create_dir(&source).unwrap();
    populate(&source);
    let (_disk, ext2, vfs) = mount_image(make_image(&scratch, 1024, 8192, Some(&source)));
    let directory = vfs.stat(None, "/many").unwrap().inode;
    assert!(vfs.stat(None, "/many").unwrap().size >= 4 * 1024, "the directory spans several blocks");
    let check = |vfs: &Vfs| {
        let entries: Vec<(String, InodeNumber)> = vfs
            .read_directory(None, "/many")
            .unwrap()
            .into_iter()
            .filter(|entry| entry.name != "." && entry.name != "..")
            .map(|entry| (entry.name, entry.inode))
            .collect();
        let count = entries.len();
        let orders: [Vec<usize>; 3] =
            [(0..count).collect(), (0..count).rev().collect(), (0..count).map(|index| index * 37 % count).collect()];
        for order in orders {
            for index in order {
                let (name, inode) = &entries[index];
                assert_eq!(ext2.lookup(directory, name), Ok(*inode), "{name}");
                assert_eq!(ext2.lookup(directory, &format!("{name}x")), Err(Errno::ENOENT));
            }
        }
        entries.len()
    };
    assert_eq!(check(&vfs), 150);
    // Names removed and added: a remembered block is only where a scan starts.
    for index in (0..150).step_by(3) {
        vfs.unlink(None, &format!("/many/file-with-a-longish-name-{index:03}")).unwrap();
    }
    for index in 0..40 {
        vfs.write_file(None, &format!("/many/new-{index}"), b"", false).unwrap();
    }
    assert_eq!(check(&vfs), 150 - 50 + 40);
    assert_eq!(ext2.lookup(directory, "file-with-a-longish-name-003"), Err(Errno::ENOENT));
}

fn mount_error(bytes: Vec<u8>) -> MountError {
    let disk = Arc::new(RamDisk::from_vec("ram0", 512, bytes.clone()));
    let result = Ext2::mount(PageCache::with_clock(disk.clone(), 64, || 0), false, clock);
    assert!(disk.snapshot() == bytes[..disk.snapshot().len()], "a refused mount writes nothing");
    match result {
        Ok(_) => panic!("mount should have failed"),
        Err(error) => error,
    }
}

fn set_u32(bytes: &mut [u8], offset: usize, value: u32) {
    bytes[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
}

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap())
}

#[test]
fn bad_superblocks_refuse_the_mount_without_writing() {
    if !have_e2fsprogs() {
        return;
    }
    let scratch = Scratch::new("badsuper");
    let bytes = make_image(&scratch, 1024, 2048, None);
    let truncated = bytes[..bytes.len() / 2].to_vec();
    assert!(mount_error(truncated).message.contains("truncated"));
    assert!(mount_error(pattern(1 << 20, 9)).message.contains("magic"));
    assert_eq!(mount_error(vec![0; 1000]).errno, Errno::EINVAL);
    let mut bad_magic = bytes.clone();
    bad_magic[1024 + 56] = 0;
    assert!(mount_error(bad_magic).message.contains("magic"));
    let mut lying = bytes.clone();
    let inodes = u32_at(&lying, 1024);
    set_u32(&mut lying, 1024, inodes + 8);
    let error = mount_error(lying);
    assert!(error.message.contains("inode count"), "{error}");
    assert_eq!(error.errno, Errno::EUCLEAN);
    let mut huge_blocks = bytes.clone();
    set_u32(&mut huge_blocks, 1024 + 24, 7);
    assert!(mount_error(huge_blocks).message.contains("block size"));
    let mut descriptor = bytes.clone();
    set_u32(&mut descriptor, 2048 + 8, 0x00ff_ffff);
    assert!(mount_error(descriptor).message.contains("out of range"));
    let mut zero_groups = bytes.clone();
    set_u32(&mut zero_groups, 1024 + 32, 0);
    assert!(mount_error(zero_groups).message.contains("blocks per group"));
}

/// Finds `name`'s directory entry in the root directory block of an image.
fn root_entry_offset(ext2: &Ext2, name: &str) -> (u64, usize) {
    let mut state = ext2.state.lock();
    let mut root = state.read_inode(ROOT_INODE).unwrap();
    let entry = state.find_entry(&mut root, name).unwrap();
    let block = state.map_block(&mut root, entry.logical_block, false).unwrap().unwrap();
    (u64::from(block) * state.geometry.block_size, entry.offset)
}

fn inode_offset(ext2: &Ext2, number: u32) -> u64 {
    ext2.state.lock().inode_position(number).unwrap()
}

#[test]
fn corrupt_metadata_fails_operations_cleanly() {
    if !have_e2fsprogs() {
        return;
    }
    let scratch = Scratch::new("corrupt");
    let source = scratch.0.join("tree");
    std::fs::create_dir(&source).unwrap();
    std::fs::write(source.join("file"), pattern(50_000, 4)).unwrap();
    std::fs::create_dir(source.join("dir")).unwrap();
    let bytes = make_image(&scratch, 1024, 2048, Some(&source));
    let (_disk, ext2, vfs) = mount_image(bytes.clone());
    let file_inode = vfs.stat(None, "/file").unwrap().inode as u32;
    let dir_inode = vfs.stat(None, "/dir").unwrap().inode as u32;
    let (root_block, file_entry) = root_entry_offset(&ext2, "file");
    let file_position = inode_offset(&ext2, file_inode) as usize;
    drop(vfs);

    // A block pointer past the end of the file system.
    let mut out_of_range = bytes.clone();
    set_u32(&mut out_of_range, file_position + 40, 0x0fff_ffff);
    let (_disk, _ext2, vfs) = mount_image(out_of_range);
    assert_eq!(vfs.read_to_end(None, "/file").err(), Some(Errno::EUCLEAN));
    assert_eq!(vfs.truncate(None, "/file", 0), Err(Errno::EUCLEAN));

    // rec_len 0 and rec_len past the block in the root directory.
    for bad_length in [0u16, 2000] {
        let mut bad = bytes.clone();
        let offset = root_block as usize + file_entry + 4;
        bad[offset..offset + 2].copy_from_slice(&bad_length.to_le_bytes());
        let (_disk, _ext2, vfs) = mount_image(bad);
        assert_eq!(vfs.read_directory(None, "/").err(), Some(Errno::EUCLEAN));
        assert_eq!(vfs.stat(None, "/file").err(), Some(Errno::EUCLEAN));
        assert_eq!(vfs.write_file(None, "/new", b"x", false), Err(Errno::EUCLEAN));
    }

    // An entry pointing at an inode past the count.
    let mut past_count = bytes.clone();
    set_u32(&mut past_count, root_block as usize + file_entry, 0x7fff_ffff);
    let (_disk, _ext2, vfs) = mount_image(past_count);
    assert_eq!(vfs.read_directory(None, "/").err(), Some(Errno::EUCLEAN));

    // A directory cycle: /dir/loop is the root directory again.
    let (_disk, _ext2, vfs) = mount_image(bytes.clone());
    vfs.mkdir(None, "/dir/loop", 0o755).unwrap();
    vfs.unmount_all().unwrap();
    let image = _disk.snapshot();
    let (disk, ext2, vfs) = mount_image(image);
    {
        let mut state = ext2.state.lock();
        let mut directory = state.read_inode(dir_inode).unwrap();
        state.retarget_entry(&mut directory, "loop", ROOT_INODE, FileType::Directory).unwrap();
    }
    let _ = disk;
    assert_eq!(vfs.stat(None, "/dir/loop/dir/loop/dir/loop/file").unwrap().size, 50_000);
    assert_eq!(vfs.rename(None, "/dir", "/dir/loop/dir/moved"), Err(Errno::EINVAL), "moving a directory below itself through the cycle");
    let usage = crate::fs::commands::disk_usage(&vfs, None, "/");
    assert!(usage.is_ok(), "du terminates on a cycle: {usage:?}");
    let _ = root_block;
}

#[test]
fn random_corruption_never_panics() {
    if !have_e2fsprogs() {
        return;
    }
    let scratch = Scratch::new("random");
    let source = scratch.0.join("tree");
    std::fs::create_dir(&source).unwrap();
    populate(&source);
    let bytes = make_image(&scratch, 1024, 2048, Some(&source));
    let noise = pattern(4096, 77);
    for round in 0..60usize {
        let mut damaged = bytes.clone();
        // Damage metadata: superblock, descriptors, bitmaps and inode tables live early.
        for hit in 0..8 {
            let position = 1024 + (usize::from(noise[(round * 8 + hit) % 4096]) * 257 + round * 911 + hit * 131) % (300 * 1024);
            damaged[position] ^= noise[(round * 13 + hit) % 4096] | 1;
        }
        let disk = Arc::new(RamDisk::from_vec("ram0", 512, damaged));
        let Ok(ext2) = Ext2::mount(PageCache::with_clock(disk, 256, || 0), false, clock) else { continue };
        let vfs = Vfs::new();
        vfs.mount("ram0", "/", ext2, false).unwrap();
        let _ = crate::fs::commands::disk_usage(&vfs, None, "/");
        for path in ["/hello.txt", "/double.bin", "/many/file-with-a-longish-name-010", "/long-link"] {
            let _ = vfs.read_to_end(None, path);
        }
        let _ = vfs.write_file(None, "/many/new", &[1; 3000], false);
        let _ = vfs.unlink(None, "/indirect.bin");
        let _ = vfs.rename(None, "/a", "/many/a");
        let _ = vfs.unmount_all();
    }
}

/// The stable counterpart of the cargo-fuzz target (fuzz/): a fixed seed, a bounded number
/// of mutated images, each mounted, walked, read and changed by `exercise_image`. A refused
/// mount must leave the image untouched.
#[test]
fn seeded_mutations_mount_walk_and_read_without_panic() {
    if !have_e2fsprogs() {
        return;
    }
    let scratch = Scratch::new("mutations");
    let source = scratch.0.join("tree");
    std::fs::create_dir(&source).unwrap();
    populate(&source);
    for block_size in [1024u32, 4096] {
        let bytes = make_image(&scratch, block_size, 2048, Some(&source));
        let pristine = super::exercise::exercise_image(&bytes);
        assert!(pristine.mounted && pristine.entries > 150 && pristine.bytes_read > 60_000, "{pristine:?}");
        let (mut mounted, mut refused) = (0, 0);
        for seed in 0..250u64 {
            let damaged = super::exercise::mutate(&bytes, seed + u64::from(block_size) * 1000, 320 * 1024);
            let usable = damaged.len() / 512 * 512;
            let disk = Arc::new(RamDisk::from_vec("ram0", 512, damaged[..usable].to_vec()));
            if Ext2::mount(PageCache::with_clock(disk.clone(), 64, || 0), false, clock).is_err() {
                assert!(disk.snapshot() == damaged[..usable], "seed {seed}: a refused mount wrote to the image");
                refused += 1;
                continue;
            }
            mounted += 1;
            super::exercise::exercise_image(&damaged);
        }
        assert!(mounted > 50 && refused > 5, "the mutations reach both outcomes: {mounted} mounted, {refused} refused");
    }
}

/// The fuzzer's seed (fuzz/seeds, made by mke2fs as docs/fuzzing.md says) is a valid image
/// the exercise driver explores completely.
#[test]
fn fuzz_seed_image_is_explored() {
    let seed = include_bytes!("../../../../fuzz/seeds/small-1k.ext2");
    let exploration = super::exercise::exercise_image(seed);
    // Entries with . and ..: / (lost+found, hello, dir) 5, /lost+found 2, /dir (data, link,
    // sub) 5, /dir/sub 2. Each file is read at its start and its end.
    assert_eq!(exploration, super::exercise::Exploration { mounted: true, entries: 14, bytes_read: 14000 * 2 + 6 * 2 });
}

/// Counts that lie, bitmaps that free metadata, block pointers into metadata, and a
/// directory that is its own parent: each fails with a clear error, and metadata is never
/// overwritten.
#[test]
fn corrupt_images_fail_cleanly_everywhere() {
    if !have_e2fsprogs() {
        return;
    }
    let scratch = Scratch::new("lying");
    let source = scratch.0.join("tree");
    std::fs::create_dir(&source).unwrap();
    std::fs::write(source.join("file"), pattern(5000, 6)).unwrap();
    std::fs::create_dir_all(source.join("dir/sub")).unwrap();
    std::fs::create_dir(source.join("other")).unwrap();
    let bytes = make_image(&scratch, 1024, 2048, Some(&source));
    let descriptor = 2048;
    let block_bitmap = u32_at(&bytes, descriptor) as usize;
    let inode_table = u32_at(&bytes, descriptor + 8);

    // Free counts larger than the totals refuse the mount.
    let mut lying = bytes.clone();
    set_u32(&mut lying, 1024 + 12, u32_at(&bytes, 1024 + 4) + 1);
    assert!(mount_error(lying).message.contains("free counts exceed"));
    let mut lying = bytes.clone();
    lying[descriptor + 12..descriptor + 14].copy_from_slice(&60_000u16.to_le_bytes());
    assert!(mount_error(lying).message.contains("free counts exceed the group"));

    // The block bitmap marks the first inode-table block free: allocation refuses it
    // instead of zeroing the table (which holds the root inode).
    let mut freed_table = bytes.clone();
    let bit = (inode_table - 1) as usize;
    freed_table[block_bitmap * 1024 + bit / 8] &= !(1 << (bit % 8));
    let (disk, _ext2, vfs) = mount_image(freed_table);
    assert_eq!(vfs.write_file(None, "/new", &[7; 3000], false), Err(Errno::EUCLEAN));
    let _ = vfs.unmount_all();
    let (_disk, _ext2, vfs) = mount_image(disk.snapshot());
    assert!(vfs.read_to_end(None, "/file").unwrap() == pattern(5000, 6), "the root inode and the file survive");

    // Every bitmap full while the descriptors claim free blocks.
    let mut full = bytes.clone();
    let groups = u32_at(&bytes, 1024 + 4).div_ceil(u32_at(&bytes, 1024 + 32));
    for group in 0..groups as usize {
        let bitmap = u32_at(&bytes, descriptor + group * 32) as usize;
        full[bitmap * 1024..bitmap * 1024 + 1024].fill(0xff);
    }
    let (_disk, _ext2, vfs) = mount_image(full);
    assert_eq!(vfs.write_file(None, "/file", &[1; 3000], true), Err(Errno::EUCLEAN));
    // The append fills the last block's tail (a short write), then allocation fails.
    let contents = vfs.read_to_end(None, "/file").unwrap();
    assert!(
        contents.len() == 5120 && contents[..5000] == pattern(5000, 6)[..],
        "a failed append keeps the data ({} bytes)",
        contents.len()
    );
    assert!(contents[5000..].iter().all(|&byte| byte == 1));

    // A file's first block pointer aims at the inode table: reads, writes and truncation
    // all fail, and the table is not touched.
    let (_disk, ext2, vfs) = mount_image(bytes.clone());
    let file_inode = vfs.stat(None, "/file").unwrap().inode as u32;
    let position = inode_offset(&ext2, file_inode) as usize;
    drop(vfs);
    let mut into_table = bytes.clone();
    set_u32(&mut into_table, position + 40, inode_table);
    let table_before = into_table[inode_table as usize * 1024..inode_table as usize * 1024 + 1024].to_vec();
    let (disk, _ext2, vfs) = mount_image(into_table);
    assert_eq!(vfs.read_to_end(None, "/file"), Err(Errno::EUCLEAN));
    assert_eq!(vfs.write_file(None, "/file", b"overwrite", false), Err(Errno::EUCLEAN));
    assert_eq!(vfs.truncate(None, "/file", 0), Err(Errno::EUCLEAN));
    let snapshot = disk.snapshot();
    let table_after = &snapshot[inode_table as usize * 1024..inode_table as usize * 1024 + 1024];
    // Inode 1 (bad blocks) and 2 (root) lie in the first table block; only the root's
    // times may change, and nothing is zeroed.
    assert_eq!(&table_after[..128], &table_before[..128], "inode 1 untouched");
    assert_eq!(u32_at(table_after, 128 + 40), u32_at(&table_before, 128 + 40), "the root's first block pointer survives");

    // /dir's ".." entry points at /dir itself: walking up from it is bounded (ELOOP).
    let (disk, ext2, vfs) = mount_image(bytes.clone());
    let dir_inode = vfs.stat(None, "/dir").unwrap().inode as u32;
    {
        let mut state = ext2.state.lock();
        let mut directory = state.read_inode(dir_inode).unwrap();
        state.retarget_entry(&mut directory, "..", dir_inode, FileType::Directory).unwrap();
    }
    let _ = disk;
    assert_eq!(vfs.rename(None, "/other", "/dir/moved"), Err(Errno::ELOOP), "the ancestry walk stops");
    assert!(vfs.stat(None, "/dir/sub").unwrap().is_directory(), "walking down still works");
    assert!(crate::fs::commands::disk_usage(&vfs, None, "/").is_ok());
}
