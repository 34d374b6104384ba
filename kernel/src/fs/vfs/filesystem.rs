//! The interface a file system type implements for the VFS (Linux's `super_operations` and `inode_operations` rolled into one).

use alloc::string::String;
use alloc::vec::Vec;

use super::types::{DirectoryEntry, FileSystemStatistics, FileType, InodeNumber, Metadata, MetadataChanges};
use crate::errno::Result;

/// One mounted file system (a superblock).
///
/// The VFS has already checked names (not empty, no `/`, at most 255 bytes, not `.` or
/// `..`), the mount's read-only flag, and the types involved (e.g. `rmdir` is called on a
/// directory, `unlink` on anything else, `rename` never moves a directory into itself).
/// A file system still checks what only it knows: existing names (`EEXIST`), empty
/// directories (`ENOTEMPTY`), space (`ENOSPC`), and its own metadata (`EUCLEAN` when corrupt).
pub trait FileSystem: Send + Sync {
    /// The type name, as `/proc/filesystems` lists it (`ext2`, `ramfs`, `proc`).
    fn type_name(&self) -> &'static str;
    /// The root directory's inode.
    fn root(&self) -> InodeNumber;
    /// Whether the file system refuses all changes.
    fn is_read_only(&self) -> bool {
        false
    }
    /// Whether names may appear or vanish without going through the VFS (procfs's task
    /// directories, devfs's block devices): the VFS then does not cache this file system's
    /// lookups, positive or negative (Linux revalidates such dentries with `d_revalidate`).
    fn dentries_may_change(&self) -> bool {
        false
    }
    /// Space and inode counts.
    fn statistics(&self) -> Result<FileSystemStatistics>;
    /// An inode's attributes.
    fn metadata(&self, inode: InodeNumber) -> Result<Metadata>;
    /// Changes attributes (chmod, chown, utimes); updates the change time.
    fn set_metadata(&self, inode: InodeNumber, changes: &MetadataChanges) -> Result<()>;
    /// The inode `name` refers to in `directory` (`..` included).
    fn lookup(&self, directory: InodeNumber, name: &str) -> Result<InodeNumber>;
    /// [`FileSystem::lookup`] with the file type of the inode found (what the dentry cache
    /// keeps, so a path walk needs no inode read for a cached name). The type must be the
    /// inode's own, not a hint such as a directory entry's type code.
    fn lookup_with_kind(&self, directory: InodeNumber, name: &str) -> Result<(InodeNumber, FileType)> {
        let inode = self.lookup(directory, name)?;
        Ok((inode, self.metadata(inode)?.kind))
    }
    /// Every entry of `directory`, `.` and `..` first.
    fn read_directory(&self, directory: InodeNumber) -> Result<Vec<DirectoryEntry>>;
    /// Creates a regular file or a directory named `name`.
    fn create(&self, directory: InodeNumber, name: &str, kind: FileType, permissions: u16, uid: u32, gid: u32) -> Result<InodeNumber>;
    /// Creates a symbolic link to `target`.
    fn symlink(&self, directory: InodeNumber, name: &str, target: &str, uid: u32, gid: u32) -> Result<InodeNumber>;
    /// Adds a hard link to the non-directory `inode`.
    fn link(&self, directory: InodeNumber, name: &str, inode: InodeNumber) -> Result<()>;
    /// Removes a non-directory's name; returns its inode (freed on [`FileSystem::release`]).
    fn unlink(&self, directory: InodeNumber, name: &str) -> Result<InodeNumber>;
    /// Removes an empty directory; returns its inode.
    fn rmdir(&self, directory: InodeNumber, name: &str) -> Result<InodeNumber>;
    /// Moves `old_name` to `new_name`, replacing a file there or an empty directory;
    /// returns the replaced inode, if any.
    fn rename(&self, old_directory: InodeNumber, old_name: &str, new_directory: InodeNumber, new_name: &str)
        -> Result<Option<InodeNumber>>;
    /// Reads file bytes at `offset`; returns how many (0 at or past the end).
    fn read(&self, inode: InodeNumber, offset: u64, buffer: &mut [u8]) -> Result<usize>;
    /// Writes file bytes at `offset`, extending the file; returns how many.
    fn write(&self, inode: InodeNumber, offset: u64, data: &[u8]) -> Result<usize>;
    /// Sets a file's size, freeing or zero-extending.
    fn truncate(&self, inode: InodeNumber, size: u64) -> Result<()>;
    /// A symbolic link's target.
    fn readlink(&self, inode: InodeNumber) -> Result<String>;
    /// The VFS dropped its last reference to `inode`: free it if no name links to it.
    fn release(&self, inode: InodeNumber) -> Result<()>;
    /// Writes one file's dirty data and metadata to the device.
    fn fsync(&self, _inode: InodeNumber) -> Result<()> {
        self.sync()
    }
    /// Writes everything dirty to the device.
    fn sync(&self) -> Result<()>;
    /// Called once when unmounted: flushes everything and marks the file system clean.
    fn unmount(&self) -> Result<()> {
        self.sync()
    }
}
