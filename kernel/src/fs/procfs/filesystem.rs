//! procfs as a mountable file system: the registry's files, read-only, under `/proc` (subdirectories come from names like `sys/kernel/ostype`).

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use crate::fs::vfs::{DirectoryEntry, Errno, FileSystem, FileSystemStatistics, FileType, InodeNumber, Metadata, MetadataChanges, Result};
use crate::sync::SpinLock;

/// The root directory's inode number.
pub const ROOT_INODE: InodeNumber = 1;

/// The mountable procfs. Inode numbers are hashes of the path inside `/proc`.
pub struct ProcFs {
    paths: SpinLock<BTreeMap<InodeNumber, String>>,
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

/// What a path inside `/proc` is right now.
fn kind_of(path: &str) -> Option<FileType> {
    if path.is_empty() {
        return Some(FileType::Directory);
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
        ProcFs { paths: SpinLock::new(BTreeMap::new()) }
    }

    fn path(&self, inode: InodeNumber) -> Result<String> {
        if inode == ROOT_INODE {
            return Ok(String::new());
        }
        self.paths.lock().get(&inode).cloned().ok_or(Errno::ENOENT)
    }

    fn remember(&self, path: String) -> InodeNumber {
        let inode = inode_of(&path);
        self.paths.lock().insert(inode, path);
        inode
    }

    fn contents(&self, path: &str) -> Result<String> {
        let mut text = String::new();
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
    fn statistics(&self) -> Result<FileSystemStatistics> {
        Ok(FileSystemStatistics { block_size: 4096, name_length: 255, ..FileSystemStatistics::default() })
    }
    fn metadata(&self, inode: InodeNumber) -> Result<Metadata> {
        let path = self.path(inode)?;
        let kind = kind_of(&path).ok_or(Errno::ENOENT)?;
        let now = crate::fs::vfs::uptime_seconds();
        Ok(Metadata {
            inode,
            kind,
            permissions: if kind == FileType::Directory { 0o555 } else { 0o444 },
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
                kind_of(&path).ok_or(Errno::ENOENT)?;
                Ok(self.remember(path))
            }
        }
    }
    fn read_directory(&self, directory: InodeNumber) -> Result<Vec<DirectoryEntry>> {
        let base = self.path(directory)?;
        if kind_of(&base) != Some(FileType::Directory) {
            return Err(Errno::ENOTDIR);
        }
        let parent = self.lookup(directory, "..")?;
        let mut children: BTreeMap<String, FileType> = BTreeMap::new();
        let prefix = if base.is_empty() { String::new() } else { alloc::format!("{}/", base) };
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
        if kind_of(&path) == Some(FileType::Directory) {
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
    fn readlink(&self, _: InodeNumber) -> Result<String> {
        Err(Errno::EINVAL)
    }
    fn release(&self, _: InodeNumber) -> Result<()> {
        Ok(())
    }
    fn sync(&self) -> Result<()> {
        Ok(())
    }
}
