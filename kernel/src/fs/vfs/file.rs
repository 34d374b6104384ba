//! Open files (an inode reference, flags and an offset) and the file-descriptor table a task will own.

use alloc::sync::Arc;
use alloc::vec::Vec;

use super::filesystem::FileSystem;
use super::types::{InodeNumber, OpenFlags};
use crate::errno::{Errno, Result};
use crate::mm::{SlabArc, TypedCache};
use crate::sync::Mutex;

/// Where an inode lives: a mount and an inode number in its file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    /// The mount's identifier.
    pub mount: u32,
    /// The inode in that mount's file system.
    pub inode: InodeNumber,
}

/// The VFS's in-memory inode: shared by every open file on it. When the last reference
/// goes, the file system is told, so an unlinked file's blocks are freed on last close.
/// Kept in the `inode_cache` slab cache ([`INODE_CACHE`]).
pub struct InodeReference {
    /// Where the inode is.
    pub location: Location,
    /// Its file system.
    pub file_system: Arc<dyn FileSystem>,
}

/// The slab cache of in-memory inodes (Linux's `inode_cache`).
pub static INODE_CACHE: TypedCache<InodeReference> = TypedCache::new("inode_cache");

impl Drop for InodeReference {
    fn drop(&mut self) {
        if let Err(error) = self.file_system.release(self.location.inode) {
            log::warn!("vfs: releasing inode {} failed: {}", self.location.inode, error);
        }
    }
}

/// An open file description (`struct file`).
pub struct OpenFile {
    /// The inode.
    pub inode: SlabArc<InodeReference>,
    /// The flags it was opened with.
    pub flags: OpenFlags,
    /// The offset reads and writes use (or the next directory entry's index).
    /// A sleeping lock: reads and writes under it may wait for a disk.
    pub offset: Mutex<u64>,
}

impl OpenFile {
    /// Where the file's inode is.
    pub fn location(&self) -> Location {
        self.inode.location
    }
}

/// Most descriptors one table holds (`RLIMIT_NOFILE`).
pub const MAX_FILE_DESCRIPTORS: usize = 256;

/// A task's file descriptors: small integers naming open files.
#[derive(Default)]
pub struct FileDescriptorTable {
    files: Vec<Option<Arc<OpenFile>>>,
}

impl FileDescriptorTable {
    /// An empty table.
    pub fn new() -> Self {
        FileDescriptorTable { files: Vec::new() }
    }

    /// Installs `file` at the lowest free descriptor; `EMFILE` when full.
    pub fn install(&mut self, file: Arc<OpenFile>) -> Result<usize> {
        if let Some(free) = self.files.iter().position(Option::is_none) {
            self.files[free] = Some(file);
            return Ok(free);
        }
        if self.files.len() >= MAX_FILE_DESCRIPTORS {
            return Err(Errno::EMFILE);
        }
        self.files.push(Some(file));
        Ok(self.files.len() - 1)
    }

    /// The open file behind `descriptor`; `EBADF` if none.
    pub fn get(&self, descriptor: usize) -> Result<Arc<OpenFile>> {
        self.files.get(descriptor).and_then(Clone::clone).ok_or(Errno::EBADF)
    }

    /// Closes `descriptor`; `EBADF` if it was not open.
    pub fn close(&mut self, descriptor: usize) -> Result<()> {
        let slot = self.files.get_mut(descriptor).ok_or(Errno::EBADF)?;
        slot.take().ok_or(Errno::EBADF)?;
        while matches!(self.files.last(), Some(None)) {
            self.files.pop();
        }
        Ok(())
    }

    /// Makes `new` refer to the same open file as `old` (`dup2`).
    pub fn duplicate_to(&mut self, old: usize, new: usize) -> Result<usize> {
        let file = self.get(old)?;
        if new >= MAX_FILE_DESCRIPTORS {
            return Err(Errno::EBADF);
        }
        if self.files.len() <= new {
            self.files.resize(new + 1, None);
        }
        self.files[new] = Some(file);
        Ok(new)
    }

    /// Open descriptors.
    pub fn count(&self) -> usize {
        self.files.iter().flatten().count()
    }
}
