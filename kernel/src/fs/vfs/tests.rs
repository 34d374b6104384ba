//! Host tests of the VFS over ramfs: path walk, mounts, open files and every operation's errors.

use super::*;
use crate::fs::ramfs::RamFs;
use alloc::sync::Arc;

fn clock() -> Seconds {
    1_700_000_000
}

fn fresh() -> Vfs {
    let vfs = Vfs::new();
    vfs.mount("rootfs", "/", Arc::new(RamFs::new(clock, 1 << 20)), false).unwrap();
    vfs
}

fn names(vfs: &Vfs, path: &str) -> Vec<String> {
    vfs.read_directory(None, path).unwrap().into_iter().map(|entry| entry.name).collect()
}

#[test]
fn create_write_read_seek_and_stat() {
    let vfs = fresh();
    vfs.mkdir(None, "/a", 0o755).unwrap();
    let file = vfs.open(None, "/a/f", OpenFlags::READ_WRITE | OpenFlags::CREATE, 0o640).unwrap();
    assert_eq!(vfs.write(&file, b"hello world").unwrap(), 11);
    assert_eq!(vfs.lseek(&file, SeekFrom::Start(6)).unwrap(), 6);
    let mut buffer = [0u8; 16];
    assert_eq!(vfs.read(&file, &mut buffer).unwrap(), 5);
    assert_eq!(&buffer[..5], b"world");
    assert_eq!(vfs.pread(&file, 0, &mut buffer[..5]).unwrap(), 5);
    assert_eq!(&buffer[..5], b"hello");
    assert_eq!(vfs.pwrite(&file, 0, b"J").unwrap(), 1);
    assert_eq!(vfs.lseek(&file, SeekFrom::Current(0)).unwrap(), 11, "pread/pwrite keep the offset");
    assert_eq!(vfs.lseek(&file, SeekFrom::End(-5)).unwrap(), 6);
    assert_eq!(vfs.lseek(&file, SeekFrom::Current(-7)), Err(Errno::EINVAL));
    let metadata = vfs.fstat(&file).unwrap();
    assert_eq!((metadata.size, metadata.permissions, metadata.kind, metadata.modification_time), (11, 0o640, FileType::Regular, clock()));
    assert_eq!(vfs.read_to_end(None, "/a/f").unwrap(), b"Jello world");
    assert_eq!(vfs.stat(None, "a/../a/./f").unwrap().inode, metadata.inode);
    assert_eq!(names(&vfs, "/a"), [".", "..", "f"]);
}

#[test]
fn open_flags_exclusive_truncate_append_and_access_modes() {
    let vfs = fresh();
    vfs.write_file(None, "/f", b"12345", false).unwrap();
    assert_eq!(vfs.open(None, "/f", OpenFlags::WRITE_ONLY | OpenFlags::CREATE | OpenFlags::EXCLUSIVE, 0o644).err(), Some(Errno::EEXIST));
    let appender = vfs.open(None, "/f", OpenFlags::WRITE_ONLY | OpenFlags::APPEND, 0).unwrap();
    vfs.write(&appender, b"67").unwrap();
    assert_eq!(vfs.read_to_end(None, "/f").unwrap(), b"1234567");
    let mut buffer = [0u8; 4];
    assert_eq!(vfs.read(&appender, &mut buffer), Err(Errno::EBADF));
    let reader = vfs.open(None, "/f", OpenFlags::READ_ONLY, 0).unwrap();
    assert_eq!(vfs.write(&reader, b"x"), Err(Errno::EBADF));
    vfs.open(None, "/f", OpenFlags::WRITE_ONLY | OpenFlags::TRUNCATE, 0).unwrap();
    assert_eq!(vfs.stat(None, "/f").unwrap().size, 0);
    assert_eq!(vfs.open(None, "/missing", OpenFlags::READ_ONLY, 0).err(), Some(Errno::ENOENT));
    assert_eq!(vfs.open(None, "/", OpenFlags::WRITE_ONLY, 0).err(), Some(Errno::EISDIR));
    assert_eq!(vfs.open(None, "/f", OpenFlags::DIRECTORY, 0).err(), Some(Errno::ENOTDIR));
    assert_eq!(vfs.open(None, "/f/x", OpenFlags::READ_ONLY, 0).err(), Some(Errno::ENOTDIR));
    let directory = vfs.open(None, "/", OpenFlags::READ_ONLY, 0).unwrap();
    assert_eq!(vfs.read(&directory, &mut buffer), Err(Errno::EISDIR));
    let mut listed = Vec::new();
    while let Some(entry) = vfs.readdir(&directory).unwrap() {
        listed.push(entry.name);
    }
    assert_eq!(listed, [".", "..", "f"]);
}

#[test]
fn directories_rename_link_and_errors() {
    let vfs = fresh();
    vfs.mkdir(None, "/d", 0o755).unwrap();
    vfs.mkdir(None, "/d/e", 0o700).unwrap();
    assert_eq!(vfs.mkdir(None, "/d", 0o755), Err(Errno::EEXIST));
    assert_eq!(vfs.mkdir(None, "/", 0o755), Err(Errno::EEXIST));
    assert_eq!(vfs.mkdir(None, "/nope/x", 0o755), Err(Errno::ENOENT));
    assert_eq!(vfs.mkdir(None, &alloc::format!("/{}", "n".repeat(256)), 0o755), Err(Errno::ENAMETOOLONG));
    assert_eq!(vfs.rmdir(None, "/d"), Err(Errno::ENOTEMPTY));
    vfs.write_file(None, "/d/e/file", b"x", false).unwrap();
    assert_eq!(vfs.rmdir(None, "/d/e/file"), Err(Errno::ENOTDIR));
    assert_eq!(vfs.unlink(None, "/d/e"), Err(Errno::EISDIR));
    assert_eq!(vfs.stat(None, "/d").unwrap().links, 3);
    vfs.rename(None, "/d/e", "/e2").unwrap();
    assert_eq!(vfs.stat(None, "/d").unwrap().links, 2);
    assert_eq!(vfs.read_to_end(None, "/e2/file").unwrap(), b"x");
    assert_eq!(vfs.stat(None, "/d/e").err(), Some(Errno::ENOENT));
    assert_eq!(vfs.rename(None, "/e2", "/e2/inside"), Err(Errno::EINVAL));
    vfs.write_file(None, "/other", b"other", false).unwrap();
    assert_eq!(vfs.rename(None, "/e2", "/other"), Err(Errno::ENOTDIR));
    assert_eq!(vfs.rename(None, "/other", "/d"), Err(Errno::EISDIR));
    vfs.rename(None, "/other", "/e2/file").unwrap();
    assert_eq!(vfs.read_to_end(None, "/e2/file").unwrap(), b"other");
    vfs.link(None, "/e2/file", "/hard").unwrap();
    assert_eq!(vfs.stat(None, "/hard").unwrap().links, 2);
    assert_eq!(vfs.link(None, "/e2", "/dirlink"), Err(Errno::EPERM));
    vfs.unlink(None, "/e2/file").unwrap();
    assert_eq!(vfs.read_to_end(None, "/hard").unwrap(), b"other");
    vfs.rmdir(None, "/e2").unwrap();
    vfs.rmdir(None, "/d").unwrap();
    assert_eq!(names(&vfs, "/"), [".", "..", "hard"]);
}

#[test]
fn symlinks_follow_relative_targets_and_loops_give_eloop() {
    let vfs = fresh();
    vfs.mkdir(None, "/dir", 0o755).unwrap();
    vfs.write_file(None, "/dir/target", b"data", false).unwrap();
    vfs.symlink(None, "target", "/dir/rel").unwrap();
    vfs.symlink(None, "/dir", "/abs").unwrap();
    assert_eq!(vfs.read_to_end(None, "/dir/rel").unwrap(), b"data");
    assert_eq!(vfs.read_to_end(None, "/abs/rel").unwrap(), b"data");
    assert_eq!(vfs.readlink(None, "/abs").unwrap(), "/dir");
    assert_eq!(vfs.readlink(None, "/dir/target"), Err(Errno::EINVAL));
    assert_eq!(vfs.lstat(None, "/abs").unwrap().kind, FileType::Symlink);
    assert_eq!(vfs.stat(None, "/abs").unwrap().kind, FileType::Directory);
    vfs.symlink(None, "/loop2", "/loop1").unwrap();
    vfs.symlink(None, "/loop1", "/loop2").unwrap();
    assert_eq!(vfs.stat(None, "/loop1").err(), Some(Errno::ELOOP));
    assert_eq!(vfs.open(None, "/abs", OpenFlags::READ_ONLY | OpenFlags::NO_FOLLOW, 0).err(), Some(Errno::ELOOP));
    vfs.symlink(None, "/nowhere", "/dangling").unwrap();
    assert_eq!(vfs.stat(None, "/dangling").err(), Some(Errno::ENOENT));
    vfs.unlink(None, "/dangling").unwrap();
    assert_eq!(vfs.symlink(None, "x", "/abs"), Err(Errno::EEXIST));
}

#[test]
fn relative_paths_from_a_working_directory() {
    let vfs = fresh();
    vfs.mkdir(None, "/home", 0o755).unwrap();
    vfs.mkdir(None, "/home/user", 0o755).unwrap();
    let cwd = Some(vfs.resolve(None, "/home/user", true).unwrap());
    vfs.write_file(cwd, "notes", b"n", false).unwrap();
    assert_eq!(vfs.read_to_end(None, "/home/user/notes").unwrap(), b"n");
    assert_eq!(vfs.read_to_end(cwd, "../user/./notes").unwrap(), b"n");
    assert_eq!(vfs.resolve(cwd, "../../../..", true).unwrap(), vfs.root().unwrap(), ".. stops at the root");
}

#[test]
fn mounts_cross_both_ways_and_unmount_is_refused_while_busy() {
    let vfs = fresh();
    vfs.mkdir(None, "/mnt", 0o755).unwrap();
    vfs.write_file(None, "/mnt/hidden", b"under", false).unwrap();
    let inner = Arc::new(RamFs::new(clock, 1 << 20));
    vfs.mount("none", "/mnt/", inner.clone(), false).unwrap();
    assert_eq!(vfs.stat(None, "/mnt/hidden").err(), Some(Errno::ENOENT), "the mount covers the directory");
    vfs.write_file(None, "/mnt/top", b"over", false).unwrap();
    assert_eq!(inner.used_bytes(), 4);
    assert_eq!(vfs.resolve(None, "/mnt/..", true).unwrap(), vfs.root().unwrap());
    assert_eq!(vfs.rename(None, "/mnt/top", "/top"), Err(Errno::EXDEV));
    assert_eq!(vfs.link(None, "/mnt/top", "/top"), Err(Errno::EXDEV));
    assert_eq!(vfs.rmdir(None, "/mnt"), Err(Errno::EBUSY));
    let mut text = String::new();
    vfs.write_mounts(&mut text).unwrap();
    assert_eq!(text, "rootfs / ramfs rw,relatime 0 0\nnone /mnt ramfs rw,relatime 0 0\n");
    let open = vfs.open(None, "/mnt/top", OpenFlags::READ_ONLY, 0).unwrap();
    assert_eq!(vfs.unmount("/mnt"), Err(Errno::EBUSY));
    drop(open);
    assert_eq!(vfs.unmount("/mnt/top"), Err(Errno::EINVAL), "not a mount's root");
    vfs.unmount("/mnt").unwrap();
    assert_eq!(vfs.read_to_end(None, "/mnt/hidden").unwrap(), b"under");
    let read_only = Arc::new(RamFs::new(clock, 1 << 20));
    vfs.mount("none", "/mnt", read_only, true).unwrap();
    assert_eq!(vfs.write_file(None, "/mnt/x", b"x", false), Err(Errno::EROFS));
    assert_eq!(vfs.mkdir(None, "/mnt/d", 0o755), Err(Errno::EROFS));
    vfs.unmount_all().unwrap();
    assert!(vfs.mounts().is_empty());
}

#[test]
fn unlinked_open_file_lives_until_closed() {
    let vfs = Vfs::new();
    let ramfs = Arc::new(RamFs::new(clock, 1 << 20));
    vfs.mount("rootfs", "/", ramfs.clone(), false).unwrap();
    let file = vfs.open(None, "/tmpfile", OpenFlags::READ_WRITE | OpenFlags::CREATE, 0o600).unwrap();
    vfs.write(&file, b"still here").unwrap();
    vfs.unlink(None, "/tmpfile").unwrap();
    assert_eq!(vfs.stat(None, "/tmpfile").err(), Some(Errno::ENOENT));
    assert_eq!(vfs.pread(&file, 0, &mut [0u8; 10]).unwrap(), 10);
    assert_eq!(vfs.fstat(&file).unwrap().links, 0);
    let before = ramfs.inode_count();
    drop(file);
    assert_eq!(ramfs.inode_count(), before - 1, "freed on last close");
}

#[test]
fn dentry_cache_answers_repeat_and_missing_lookups() {
    let vfs = fresh();
    vfs.mkdir(None, "/cached", 0o755).unwrap();
    let before = vfs.dentry_statistics();
    for _ in 0..3 {
        vfs.stat(None, "/cached").unwrap();
        assert_eq!(vfs.stat(None, "/absent").err(), Some(Errno::ENOENT));
    }
    let after = vfs.dentry_statistics();
    assert!(after.hits >= before.hits + 3);
    assert!(after.negative_hits >= before.negative_hits + 2);
    vfs.write_file(None, "/absent", b"now", false).unwrap();
    assert_eq!(vfs.stat(None, "/absent").unwrap().size, 3, "creation replaces the negative entry");
}

/// Checks that the file types the dentry cache keeps follow the names: a name that was a
/// file becomes a directory, a symbolic link, a file again; each time it is walked through
/// (with every step cached) after the change. Shared with the ext2 tests.
pub(crate) fn check_cached_types_follow_changes(vfs: &Vfs) {
    vfs.write_file(None, "/x", b"file", false).unwrap();
    assert_eq!(vfs.stat(None, "/x/y").err(), Some(Errno::ENOTDIR), "/x cached as a file");
    assert_eq!(vfs.stat(None, "/x/").err(), Some(Errno::ENOTDIR));
    vfs.unlink(None, "/x").unwrap();
    vfs.mkdir(None, "/x", 0o755).unwrap();
    vfs.write_file(None, "/x/y", b"in x", false).unwrap();
    assert_eq!(vfs.read_to_end(None, "/x/y").unwrap(), b"in x", "a directory after unlink and mkdir");
    assert!(vfs.stat(None, "/x/").unwrap().is_directory());

    // A directory renamed onto a name cached as missing, and away from its old name.
    vfs.mkdir(None, "/d", 0o755).unwrap();
    vfs.write_file(None, "/d/f", b"in d", false).unwrap();
    assert_eq!(vfs.stat(None, "/e/f").err(), Some(Errno::ENOENT));
    vfs.rename(None, "/d", "/e").unwrap();
    assert_eq!(vfs.read_to_end(None, "/e/f").unwrap(), b"in d");
    assert_eq!(vfs.stat(None, "/d/f").err(), Some(Errno::ENOENT));

    // The directory name becomes a symbolic link: walks follow it.
    vfs.unlink(None, "/x/y").unwrap();
    vfs.rmdir(None, "/x").unwrap();
    vfs.symlink(None, "/e", "/x").unwrap();
    assert_eq!(vfs.lstat(None, "/x").unwrap().kind, FileType::Symlink);
    assert_eq!(vfs.read_to_end(None, "/x/f").unwrap(), b"in d", "walks through the new link");
    assert!(vfs.stat(None, "/x").unwrap().is_directory());

    // A file renamed over the link: the name is a file again.
    vfs.write_file(None, "/g", b"g", false).unwrap();
    vfs.rename(None, "/g", "/x").unwrap();
    assert_eq!(vfs.lstat(None, "/x").unwrap().kind, FileType::Regular);
    assert_eq!(vfs.stat(None, "/x/f").err(), Some(Errno::ENOTDIR));
    assert_eq!(vfs.stat(None, "/x/").err(), Some(Errno::ENOTDIR), "the cached type is the file's");
    assert_eq!(vfs.read_to_end(None, "/x").unwrap(), b"g");

    // A file renamed over a file: the target name takes the source's inode and type.
    vfs.mkdir(None, "/e/sub", 0o755).unwrap();
    vfs.rename(None, "/x", "/e/f").unwrap();
    assert_eq!(vfs.read_to_end(None, "/e/f").unwrap(), b"g");
    assert_eq!(vfs.stat(None, "/x").err(), Some(Errno::ENOENT));

    // A hard link keeps the type; removing a directory leaves a negative entry.
    vfs.link(None, "/e/f", "/h").unwrap();
    assert_eq!(vfs.stat(None, "/h/").err(), Some(Errno::ENOTDIR));
    assert_eq!(vfs.stat(None, "/h").unwrap().inode, vfs.stat(None, "/e/f").unwrap().inode);
    vfs.rmdir(None, "/e/sub").unwrap();
    assert_eq!(vfs.stat(None, "/e/sub/").err(), Some(Errno::ENOENT));
    vfs.write_file(None, "/e/sub", b"now a file", false).unwrap();
    assert_eq!(vfs.stat(None, "/e/sub/").err(), Some(Errno::ENOTDIR));
    assert_eq!(vfs.stat(None, "/e/sub").unwrap().kind, FileType::Regular);
}

#[test]
fn cached_file_types_follow_unlink_rename_and_symlinks() {
    check_cached_types_follow_changes(&fresh());
    // The same with a cache so small that entries are evicted on the way.
    let vfs = Vfs::with_dentry_capacity(2);
    vfs.mount("rootfs", "/", Arc::new(RamFs::new(clock, 1 << 20)), false).unwrap();
    check_cached_types_follow_changes(&vfs);
}

#[test]
fn walk_through_cached_names_reads_no_inodes_of_intermediate_directories() {
    let vfs = fresh();
    vfs.mkdir(None, "/a", 0o755).unwrap();
    vfs.mkdir(None, "/a/b", 0o755).unwrap();
    vfs.write_file(None, "/a/b/c", b"c", false).unwrap();
    vfs.stat(None, "/a/b/c").unwrap();
    let before = vfs.dentry_statistics();
    assert_eq!(vfs.lstat(None, "/a/b/c").unwrap().size, 1);
    let after = vfs.dentry_statistics();
    assert_eq!((after.hits - before.hits, after.misses - before.misses), (3, 0), "every component from the cache");
    // A mount over a cached directory is still crossed.
    vfs.mount("none", "/a/b", Arc::new(RamFs::new(clock, 1 << 20)), false).unwrap();
    assert_eq!(vfs.stat(None, "/a/b/c").err(), Some(Errno::ENOENT));
    vfs.write_file(None, "/a/b/c", b"on the mount", false).unwrap();
    assert_eq!(vfs.read_to_end(None, "/a/b/c").unwrap(), b"on the mount");
    vfs.unmount("/a/b").unwrap();
    assert_eq!(vfs.read_to_end(None, "/a/b/c").unwrap(), b"c");
}

/// A ramfs whose names may change behind the VFS (as procfs's and devfs's do), changed
/// through `inner` directly.
struct ChangingFs {
    inner: RamFs,
}

impl FileSystem for ChangingFs {
    fn type_name(&self) -> &'static str {
        "changing"
    }
    fn root(&self) -> InodeNumber {
        self.inner.root()
    }
    fn dentries_may_change(&self) -> bool {
        true
    }
    fn statistics(&self) -> Result<FileSystemStatistics> {
        self.inner.statistics()
    }
    fn metadata(&self, inode: InodeNumber) -> Result<Metadata> {
        self.inner.metadata(inode)
    }
    fn set_metadata(&self, inode: InodeNumber, changes: &MetadataChanges) -> Result<()> {
        self.inner.set_metadata(inode, changes)
    }
    fn lookup(&self, directory: InodeNumber, name: &str) -> Result<InodeNumber> {
        self.inner.lookup(directory, name)
    }
    fn read_directory(&self, directory: InodeNumber) -> Result<Vec<DirectoryEntry>> {
        self.inner.read_directory(directory)
    }
    fn create(&self, directory: InodeNumber, name: &str, kind: FileType, permissions: u16, uid: u32, gid: u32) -> Result<InodeNumber> {
        self.inner.create(directory, name, kind, permissions, uid, gid)
    }
    fn symlink(&self, directory: InodeNumber, name: &str, target: &str, uid: u32, gid: u32) -> Result<InodeNumber> {
        self.inner.symlink(directory, name, target, uid, gid)
    }
    fn link(&self, directory: InodeNumber, name: &str, inode: InodeNumber) -> Result<()> {
        self.inner.link(directory, name, inode)
    }
    fn unlink(&self, directory: InodeNumber, name: &str) -> Result<InodeNumber> {
        self.inner.unlink(directory, name)
    }
    fn rmdir(&self, directory: InodeNumber, name: &str) -> Result<InodeNumber> {
        self.inner.rmdir(directory, name)
    }
    fn rename(
        &self,
        old_directory: InodeNumber,
        old_name: &str,
        new_directory: InodeNumber,
        new_name: &str,
    ) -> Result<Option<InodeNumber>> {
        self.inner.rename(old_directory, old_name, new_directory, new_name)
    }
    fn read(&self, inode: InodeNumber, offset: u64, buffer: &mut [u8]) -> Result<usize> {
        self.inner.read(inode, offset, buffer)
    }
    fn write(&self, inode: InodeNumber, offset: u64, data: &[u8]) -> Result<usize> {
        self.inner.write(inode, offset, data)
    }
    fn truncate(&self, inode: InodeNumber, size: u64) -> Result<()> {
        self.inner.truncate(inode, size)
    }
    fn readlink(&self, inode: InodeNumber) -> Result<String> {
        self.inner.readlink(inode)
    }
    fn release(&self, inode: InodeNumber) -> Result<()> {
        self.inner.release(inode)
    }
    fn sync(&self) -> Result<()> {
        self.inner.sync()
    }
}

#[test]
fn names_that_may_change_behind_the_vfs_are_never_cached() {
    let vfs = Vfs::new();
    let changing = Arc::new(ChangingFs { inner: RamFs::new(clock, 1 << 20) });
    vfs.mount("none", "/", changing.clone(), false).unwrap();
    let root = changing.root();
    // Changes through the VFS, then the opposite change behind it: the VFS sees the latter.
    vfs.mkdir(None, "/d", 0o755).unwrap();
    changing.inner.rmdir(root, "d").unwrap();
    assert_eq!(vfs.stat(None, "/d").err(), Some(Errno::ENOENT), "no positive entry left by mkdir");
    vfs.write_file(None, "/f", b"f", false).unwrap();
    vfs.unlink(None, "/f").unwrap();
    changing.inner.create(root, "f", FileType::Directory, 0o755, 0, 0).unwrap();
    assert!(vfs.stat(None, "/f/").unwrap().is_directory(), "no negative entry left by unlink");
    vfs.symlink(None, "/f", "/l").unwrap();
    changing.inner.unlink(root, "l").unwrap();
    changing.inner.create(root, "l", FileType::Regular, 0o644, 0, 0).unwrap();
    assert_eq!(vfs.lstat(None, "/l").unwrap().kind, FileType::Regular, "no type left by symlink");
    assert_eq!(vfs.dentry_statistics().hits, 0);
}

#[test]
fn truncate_metadata_changes_and_space_limits() {
    let vfs = Vfs::new();
    vfs.mount("rootfs", "/", Arc::new(RamFs::new(clock, 100)), false).unwrap();
    vfs.write_file(None, "/f", &[7; 60], false).unwrap();
    assert_eq!(vfs.write_file(None, "/g", &[7; 60], false), Err(Errno::ENOSPC));
    vfs.truncate(None, "/f", 10).unwrap();
    vfs.write_file(None, "/g", &[7; 60], false).unwrap();
    vfs.truncate(None, "/f", 20).unwrap();
    assert_eq!(vfs.read_to_end(None, "/f").unwrap(), [&[7u8; 10][..], &[0u8; 10][..]].concat());
    assert_eq!(vfs.truncate(None, "/", 0), Err(Errno::EISDIR));
    let changes = MetadataChanges {
        permissions: Some(0o600),
        uid: Some(1000),
        gid: Some(100),
        modification_time: Some(5),
        ..MetadataChanges::default()
    };
    vfs.set_metadata(None, "/f", &changes).unwrap();
    let metadata = vfs.stat(None, "/f").unwrap();
    assert_eq!((metadata.permissions, metadata.uid, metadata.gid, metadata.modification_time), (0o600, 1000, 100, 5));
    vfs.sync().unwrap();
    assert_eq!(vfs.statfs(None, "/").unwrap().block_size, 4096);
}

#[test]
fn descriptor_table_reuses_lowest_and_refuses_bad_descriptors() {
    let vfs = fresh();
    let mut table = FileDescriptorTable::new();
    let first = table.install(vfs.open(None, "/", OpenFlags::READ_ONLY, 0).unwrap()).unwrap();
    let second = table.install(vfs.open(None, "/", OpenFlags::READ_ONLY, 0).unwrap()).unwrap();
    assert_eq!((first, second), (0, 1));
    table.close(0).unwrap();
    assert_eq!(table.close(0), Err(Errno::EBADF));
    assert_eq!(table.get(7).err(), Some(Errno::EBADF));
    assert_eq!(table.install(table.get(1).unwrap()).unwrap(), 0);
    assert_eq!(table.duplicate_to(1, 5).unwrap(), 5);
    assert_eq!(table.count(), 3);
    for _ in 0..file::MAX_FILE_DESCRIPTORS {
        let _ = table.install(table.get(1).unwrap());
    }
    assert_eq!(table.install(table.get(1).unwrap()).err(), Some(Errno::EMFILE));
}

#[test]
fn path_helpers() {
    assert_eq!(split_last("/a/b/"), ("/a/", "b"));
    assert_eq!(split_last("name"), ("", "name"));
    assert_eq!(split_last("/"), ("/", ""));
    assert_eq!(normalize_absolute("/a/./b/../c//").unwrap(), "/a/c");
    assert_eq!(normalize_absolute("/..").unwrap(), "/");
    assert_eq!(normalize_absolute("rel"), Err(Errno::EINVAL));
}
