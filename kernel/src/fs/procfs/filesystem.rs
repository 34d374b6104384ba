//! procfs as a mountable file system: the registry's files, read-only, under `/proc` (subdirectories come from names like `sys/kernel/ostype`), a directory per task (`/proc/<id>/`) and `/proc/self`.
//!
//! Task directories appear and vanish with the tasks, so the VFS does not cache procfs's
//! lookups ([`FileSystem::dentries_may_change`]).

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use super::TaskDirectories;
use crate::fs::vfs::{DirectoryEntry, Errno, FileSystem, FileSystemStatistics, FileType, InodeNumber, Metadata, MetadataChanges, Result};
use crate::sync::SpinLock;

/// The root directory's inode number.
pub const ROOT_INODE: InodeNumber = 1;
/// Paths remembered for inode numbers before those of exited tasks are forgotten.
const MAX_REMEMBERED_PATHS: usize = 1024;

/// The mountable procfs. Inode numbers are hashes of the path inside `/proc`.
pub struct ProcFs {
    paths: SpinLock<BTreeMap<InodeNumber, String>>,
    /// Task directories of this instance (tests); `None`: the kernel's registered ones.
    tasks: Option<TaskDirectories>,
}

impl Default for ProcFs {
    fn default() -> Self {
        Self::new()
    }
}

fn inode_of(path: &str) -> InodeNumber {
    if path.is_empty() {
        return ROOT_INODE;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in path.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash >> 1) | 0x1_0000
}

fn join(directory: &str, name: &str) -> String {
    if directory.is_empty() {
        String::from(name)
    } else {
        alloc::format!("{}/{}", directory, name)
    }
}

/// The task id a path inside `/proc` starts with and the rest of the path (`"42/status"`
/// gives `(42, Some("status"))`), if its first component is a number.
fn task_path(path: &str) -> Option<(u64, Option<&str>)> {
    let (first, rest) = match path.split_once('/') {
        Some((first, rest)) => (first, Some(rest)),
        None => (path, None),
    };
    if first.is_empty() || !first.bytes().all(|byte| byte.is_ascii_digit()) || (first.len() > 1 && first.starts_with('0')) {
        return None;
    }
    Some((first.parse().ok()?, rest))
}

/// What a path inside `/proc` is right now, with `tasks` giving the task directories.
fn kind_of_with(path: &str, tasks: Option<TaskDirectories>) -> Option<FileType> {
    if path.is_empty() {
        return Some(FileType::Directory);
    }
    if let Some((id, rest)) = task_path(path) {
        let directories = tasks?;
        if !(directories.exists)(id) {
            return None;
        }
        return match rest {
            None => Some(FileType::Directory),
            Some(name) => directories.files.iter().any(|(file, _)| *file == name).then_some(FileType::Regular),
        };
    }
    if path == "self" {
        return tasks.and_then(|directories| (directories.current)()).map(|_| FileType::Symlink);
    }
    let mut found = None;
    super::for_each_name(|name| {
        if name == path {
            found = Some(FileType::Regular);
        } else if found.is_none() && name.len() > path.len() && name.starts_with(path) && name.as_bytes()[path.len()] == b'/' {
            found = Some(FileType::Directory);
        }
    });
    found
}

impl ProcFs {
    /// A procfs over the kernel's registry.
    pub fn new() -> Self {
        ProcFs { paths: SpinLock::new(BTreeMap::new()), tasks: None }
    }

    /// A procfs whose task directories come from `tasks` instead of the kernel's registration.
    pub fn with_task_directories(tasks: TaskDirectories) -> Self {
        ProcFs { paths: SpinLock::new(BTreeMap::new()), tasks: Some(tasks) }
    }

    fn task_directories(&self) -> Option<TaskDirectories> {
        self.tasks.or_else(super::task_directories)
    }

    fn kind_of(&self, path: &str) -> Option<FileType> {
        kind_of_with(path, self.task_directories())
    }

    fn path(&self, inode: InodeNumber) -> Result<String> {
        if inode == ROOT_INODE {
            return Ok(String::new());
        }
        self.paths.lock().get(&inode).cloned().ok_or(Errno::ENOENT)
    }

    fn remember(&self, path: String) -> InodeNumber {
        let inode = inode_of(&path);
        let mut paths = self.paths.lock();
        if paths.len() >= MAX_REMEMBERED_PATHS {
            // Task directories come and go: forget the paths of tasks that are gone.
            let tasks = self.task_directories();
            paths.retain(|_, known| task_path(known).is_none_or(|(id, _)| tasks.is_some_and(|tasks| (tasks.exists)(id))));
        }
        paths.insert(inode, path);
        inode
    }

    fn contents(&self, path: &str) -> Result<String> {
        let mut text = String::new();
        if let Some((id, Some(name))) = task_path(path) {
            let directories = self.task_directories().ok_or(Errno::ENOENT)?;
            let (_, show) = directories.files.iter().find(|(file, _)| *file == name).ok_or(Errno::ENOENT)?;
            return match show(id, &mut text) {
                Some(Ok(())) => Ok(text),
                Some(Err(_)) => Err(Errno::EIO),
                None => Err(Errno::ENOENT),
            };
        }
        super::read(path, &mut text).map_err(|_| Errno::ENOENT)?;
        Ok(text)
    }
}

impl FileSystem for ProcFs {
    fn type_name(&self) -> &'static str {
        "proc"
    }
    fn root(&self) -> InodeNumber {
        ROOT_INODE
    }
    fn is_read_only(&self) -> bool {
        false
    }
    fn dentries_may_change(&self) -> bool {
        true
    }
    fn statistics(&self) -> Result<FileSystemStatistics> {
        Ok(FileSystemStatistics { block_size: 4096, name_length: 255, ..FileSystemStatistics::default() })
    }
    fn metadata(&self, inode: InodeNumber) -> Result<Metadata> {
        let path = self.path(inode)?;
        let kind = self.kind_of(&path).ok_or(Errno::ENOENT)?;
        let now = crate::fs::vfs::current_time_seconds();
        Ok(Metadata {
            inode,
            kind,
            permissions: match kind {
                FileType::Directory => 0o555,
                FileType::Symlink => 0o777,
                _ => 0o444,
            },
            links: if kind == FileType::Directory { 2 } else { 1 },
            uid: 0,
            gid: 0,
            size: 0,
            blocks: 0,
            block_size: 1024,
            access_time: now,
            modification_time: now,
            change_time: now,
            device: 0,
            rdev: Default::default(),
        })
    }
    fn set_metadata(&self, _inode: InodeNumber, _changes: &MetadataChanges) -> Result<()> {
        Err(Errno::EPERM)
    }
    fn lookup(&self, directory: InodeNumber, name: &str) -> Result<InodeNumber> {
        let base = self.path(directory)?;
        match name {
            "." => Ok(directory),
            ".." => Ok(self.remember(String::from(base.rsplit_once('/').map_or("", |(parent, _)| parent)))),
            _ => {
                let path = join(&base, name);
                self.kind_of(&path).ok_or(Errno::ENOENT)?;
                Ok(self.remember(path))
            }
        }
    }
    fn read_directory(&self, directory: InodeNumber) -> Result<Vec<DirectoryEntry>> {
        let base = self.path(directory)?;
        if self.kind_of(&base) != Some(FileType::Directory) {
            return Err(Errno::ENOTDIR);
        }
        let parent = self.lookup(directory, "..")?;
        let mut children: BTreeMap<String, FileType> = BTreeMap::new();
        let prefix = if base.is_empty() { String::new() } else { alloc::format!("{}/", base) };
        let mut tasks = Vec::new();
        if let Some(directories) = self.task_directories() {
            match task_path(&base) {
                Some((_, None)) => {
                    for (name, _) in directories.files {
                        children.insert(String::from(*name), FileType::Regular);
                    }
                }
                _ if base.is_empty() => {
                    (directories.for_each_id)(&mut |id| tasks.push(id));
                    if (directories.current)().is_some() {
                        children.insert(String::from("self"), FileType::Symlink);
                    }
                }
                _ => {}
            }
        }
        super::for_each_name(|name| {
            if let Some(rest) = name.strip_prefix(prefix.as_str()) {
                match rest.split_once('/') {
                    Some((directory_name, _)) => children.insert(String::from(directory_name), FileType::Directory),
                    None => children.insert(String::from(rest), FileType::Regular),
                };
            }
        });
        let mut entries = alloc::vec![
            DirectoryEntry { name: ".".into(), inode: directory, kind: FileType::Directory },
            DirectoryEntry { name: "..".into(), inode: parent, kind: FileType::Directory },
        ];
        for (name, kind) in children {
            let inode = self.remember(join(&base, &name));
            entries.push(DirectoryEntry { name, inode, kind });
        }
        // Task directories last, in id order (Linux lists them after the fixed entries).
        for id in tasks {
            let name = alloc::format!("{}", id);
            let inode = self.remember(name.clone());
            entries.push(DirectoryEntry { name, inode, kind: FileType::Directory });
        }
        Ok(entries)
    }
    fn create(&self, _: InodeNumber, _: &str, _: FileType, _: u16, _: u32, _: u32) -> Result<InodeNumber> {
        Err(Errno::EACCES)
    }
    fn symlink(&self, _: InodeNumber, _: &str, _: &str, _: u32, _: u32) -> Result<InodeNumber> {
        Err(Errno::EACCES)
    }
    fn link(&self, _: InodeNumber, _: &str, _: InodeNumber) -> Result<()> {
        Err(Errno::EACCES)
    }
    fn unlink(&self, _: InodeNumber, _: &str) -> Result<InodeNumber> {
        Err(Errno::EACCES)
    }
    fn rmdir(&self, _: InodeNumber, _: &str) -> Result<InodeNumber> {
        Err(Errno::EACCES)
    }
    fn rename(&self, _: InodeNumber, _: &str, _: InodeNumber, _: &str) -> Result<Option<InodeNumber>> {
        Err(Errno::EACCES)
    }
    fn read(&self, inode: InodeNumber, offset: u64, buffer: &mut [u8]) -> Result<usize> {
        let path = self.path(inode)?;
        if self.kind_of(&path) == Some(FileType::Directory) {
            return Err(Errno::EISDIR);
        }
        let text = self.contents(&path)?;
        let bytes = text.as_bytes();
        if offset >= bytes.len() as u64 {
            return Ok(0);
        }
        let count = buffer.len().min(bytes.len() - offset as usize);
        buffer[..count].copy_from_slice(&bytes[offset as usize..offset as usize + count]);
        Ok(count)
    }
    fn write(&self, _: InodeNumber, _: u64, _: &[u8]) -> Result<usize> {
        Err(Errno::EACCES)
    }
    fn truncate(&self, _: InodeNumber, _: u64) -> Result<()> {
        Err(Errno::EACCES)
    }
    fn readlink(&self, inode: InodeNumber) -> Result<String> {
        if self.path(inode)? != "self" {
            return Err(Errno::EINVAL);
        }
        let current = self.task_directories().and_then(|directories| (directories.current)()).ok_or(Errno::ENOENT)?;
        Ok(alloc::format!("{}", current))
    }
    fn release(&self, _: InodeNumber) -> Result<()> {
        Ok(())
    }
    fn sync(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::ramfs::RamFs;
    use crate::fs::vfs::Vfs;
    use alloc::sync::Arc;
    use core::fmt::Write;
    use core::sync::atomic::{AtomicU64, Ordering};

    /// Task ids alive in the fake task list: a bit per id below 64.
    static ALIVE: AtomicU64 = AtomicU64::new(0);

    fn for_each_id(visit: &mut dyn FnMut(u64)) {
        (0..64).filter(|&id| exists(id)).for_each(visit);
    }
    fn exists(id: u64) -> bool {
        id < 64 && ALIVE.load(Ordering::SeqCst) & (1 << id) != 0
    }
    fn current() -> Option<u64> {
        exists(7).then_some(7)
    }
    fn show_status(id: u64, out: &mut dyn Write) -> Option<core::fmt::Result> {
        exists(id).then(|| writeln!(out, "Name:\ttask{}\nPid:\t{}", id, id))
    }
    const FILES: [(&str, super::super::TaskShowFunction); 1] = [("status", show_status)];

    #[test]
    fn task_directories_come_and_go_and_self_points_at_the_current_task() {
        ALIVE.store(1 << 7 | 1 << 12, Ordering::SeqCst);
        let vfs = Vfs::new();
        vfs.mount("rootfs", "/", Arc::new(RamFs::new(|| 0, 1 << 20)), false).unwrap();
        vfs.mkdir(None, "/proc", 0o755).unwrap();
        let tasks = TaskDirectories { for_each_id, exists, current, files: &FILES };
        vfs.mount("proc", "/proc", Arc::new(ProcFs::with_task_directories(tasks)), false).unwrap();

        let names: Vec<String> = vfs.read_directory(None, "/proc").unwrap().into_iter().map(|entry| entry.name).collect();
        assert!(names.ends_with(&["7".into(), "12".into()]), "{names:?}");
        assert!(names.contains(&"self".into()));
        assert_eq!(vfs.read_to_end(None, "/proc/12/status").unwrap(), b"Name:\ttask12\nPid:\t12\n");
        assert_eq!(vfs.readlink(None, "/proc/self").unwrap(), "7");
        assert_eq!(vfs.read_to_end(None, "/proc/self/status").unwrap(), b"Name:\ttask7\nPid:\t7\n");
        let listing: Vec<String> = vfs.read_directory(None, "/proc/12").unwrap().into_iter().map(|entry| entry.name).collect();
        assert_eq!(listing, [".", "..", "status"]);
        assert_eq!(vfs.stat(None, "/proc/13").unwrap_err(), Errno::ENOENT, "no such task yet");
        assert_eq!(vfs.stat(None, "/proc/12/nothing").unwrap_err(), Errno::ENOENT);
        assert_eq!(vfs.stat(None, "/proc/012").unwrap_err(), Errno::ENOENT, "ids have no leading zeros");

        let open = vfs.open(None, "/proc/12/status", crate::fs::vfs::OpenFlags::READ_ONLY, 0).unwrap();
        ALIVE.store(1 << 7 | 1 << 13, Ordering::SeqCst);
        assert_eq!(vfs.stat(None, "/proc/12").unwrap_err(), Errno::ENOENT, "an exited task's directory is gone at once");
        let mut buffer = [0u8; 16];
        assert_eq!(vfs.read(&open, &mut buffer), Err(Errno::ENOENT), "reading a file of an exited task fails");
        assert!(vfs.stat(None, "/proc/13").unwrap().is_directory(), "a new task's directory appears (no stale negative dentry)");
        ALIVE.store(1 << 13, Ordering::SeqCst);
        assert_eq!(vfs.readlink(None, "/proc/self").unwrap_err(), Errno::ENOENT, "no current task, no /proc/self");
    }
}
