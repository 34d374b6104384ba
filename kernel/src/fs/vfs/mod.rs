//! The virtual file system switch: a mount table, path walk, the dentry cache, open files and the file operations every file system shares.
//!
//! A [`Vfs`] holds mounts of [`FileSystem`]s; the kernel's instance lives in
//! [`crate::fs::root`]. Paths are walked from the root or a working directory, following
//! symbolic links (at most [`MAX_SYMLINK_DEPTH`]) and crossing mount points both ways.

pub mod dcache;
pub mod file;
pub mod filesystem;
pub mod types;

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt::{self, Write};

pub use crate::errno::{Errno, Result};
pub use dcache::{CachedLookup, Dentry, DentryCache, DentryStatistics, DENTRY_CACHE};
pub use file::{FileDescriptorTable, InodeReference, Location, OpenFile, INODE_CACHE};
pub use filesystem::FileSystem;
pub use types::*;

use crate::mm::{SlabArc, SlabWeak};
use crate::sync::SpinLock;

/// Longest name of one directory entry, in bytes (`NAME_MAX`).
pub const NAME_MAX: usize = 255;
/// Longest path, in bytes (`PATH_MAX`).
pub const PATH_MAX: usize = 4096;
/// Most symbolic links followed in one walk (Linux's `MAXSYMLINKS`).
pub const MAX_SYMLINK_DEPTH: u32 = 40;
/// Dentries the cache keeps by default.
pub const DEFAULT_DENTRY_CAPACITY: usize = 4096;
/// Most `..` steps taken checking whether a directory is inside another (guards cycles).
const MAX_ANCESTRY_STEPS: usize = 4096;

/// One mounted file system.
pub struct Mount {
    /// Identifier, also the `st_dev` of its inodes.
    pub id: u32,
    /// The directory it covers (`None` for the root mount).
    pub mountpoint: Option<Location>,
    /// What was mounted (`/dev/vda`, `none`).
    pub source: String,
    /// Where, as an absolute path.
    pub target: String,
    /// The file system.
    pub file_system: Arc<dyn FileSystem>,
    /// Mounted read-only (by request or because the file system is).
    pub read_only: bool,
}

struct MountTable {
    mounts: Vec<Arc<Mount>>,
    next_id: u32,
}

/// A virtual file system: mounts, caches and the operations.
pub struct Vfs {
    mounts: SpinLock<MountTable>,
    dentries: SpinLock<DentryCache>,
    inodes: SpinLock<BTreeMap<Location, SlabWeak<InodeReference>>>,
}

fn check_name_length(name: &str) -> Result<()> {
    if name.len() > NAME_MAX {
        Err(Errno::ENAMETOOLONG)
    } else {
        Ok(())
    }
}

/// Splits `path` into its directory part and last component (`"a/b/"` gives `("a/", "b")`).
fn split_last(path: &str) -> (&str, &str) {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() && path.starts_with('/') {
        return ("/", "");
    }
    match trimmed.rfind('/') {
        Some(slash) => (&path[..slash + 1], &trimmed[slash + 1..]),
        None => ("", trimmed),
    }
}

/// Joins an absolute `path` lexically (`.` dropped, `..` removes a component).
pub fn normalize_absolute(path: &str) -> Result<String> {
    if !path.starts_with('/') {
        return Err(Errno::EINVAL);
    }
    let mut parts: Vec<&str> = Vec::new();
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    let mut text = String::new();
    for part in &parts {
        text.push('/');
        text.push_str(part);
    }
    if text.is_empty() {
        text.push('/');
    }
    Ok(text)
}

impl Default for Vfs {
    fn default() -> Self {
        Self::new()
    }
}

impl Vfs {
    /// A VFS with nothing mounted.
    pub const fn new() -> Self {
        Self::with_dentry_capacity(DEFAULT_DENTRY_CAPACITY)
    }

    /// A VFS whose dentry cache holds `capacity` entries.
    pub const fn with_dentry_capacity(capacity: usize) -> Self {
        Vfs {
            mounts: SpinLock::new(MountTable { mounts: Vec::new(), next_id: 1 }),
            dentries: SpinLock::new(DentryCache::new_const(capacity)),
            inodes: SpinLock::new(BTreeMap::new()),
        }
    }

    // ---- mounts -------------------------------------------------------------------------

    fn mount_of(&self, id: u32) -> Result<Arc<Mount>> {
        self.mounts.lock().mounts.iter().find(|mount| mount.id == id).cloned().ok_or(Errno::ENOENT)
    }

    /// Every mount, in mount order.
    pub fn mounts(&self) -> Vec<Arc<Mount>> {
        self.mounts.lock().mounts.clone()
    }

    /// The root directory; `ENOENT` before anything is mounted at `/`.
    pub fn root(&self) -> Result<Location> {
        let table = self.mounts.lock();
        let root = table.mounts.iter().find(|mount| mount.mountpoint.is_none()).ok_or(Errno::ENOENT)?;
        let location = Location { mount: root.id, inode: root.file_system.root() };
        Self::cross_mounts_in(&table, location)
    }

    /// Mounts `file_system` at the absolute path `target` (the first mount must be `/`).
    /// Returns the mount's identifier.
    pub fn mount(&self, source: &str, target: &str, file_system: Arc<dyn FileSystem>, read_only: bool) -> Result<u32> {
        let target = normalize_absolute(target)?;
        // The walk takes a mount's root for a directory without reading it.
        if !file_system.metadata(file_system.root())?.is_directory() {
            return Err(Errno::ENOTDIR);
        }
        let first = self.mounts.lock().mounts.is_empty();
        let mountpoint = if first {
            if target != "/" {
                return Err(Errno::ENOENT);
            }
            None
        } else {
            let location = self.resolve(None, &target, true)?;
            if !self.metadata_at(location)?.is_directory() {
                return Err(Errno::ENOTDIR);
            }
            Some(location)
        };
        let read_only = read_only || file_system.is_read_only();
        if let Some(point) = mountpoint {
            self.dentries.lock().add_mountpoint(point.mount, point.inode);
        }
        let mut table = self.mounts.lock();
        let id = table.next_id;
        table.next_id += 1;
        table.mounts.push(Arc::new(Mount { id, mountpoint, source: source.into(), target, file_system, read_only }));
        Ok(id)
    }

    /// Unmounts the file system mounted at `target`, after flushing it. `EINVAL` if
    /// `target` is not a mount's root, `EBUSY` if files are open on it or it has mounts below.
    pub fn unmount(&self, target: &str) -> Result<()> {
        let location = self.resolve(None, target, true)?;
        let mount = self.mount_of(location.mount)?;
        if location.inode != mount.file_system.root() {
            return Err(Errno::EINVAL);
        }
        if self.mounts.lock().mounts.iter().any(|other| other.mountpoint.is_some_and(|point| point.mount == mount.id)) {
            return Err(Errno::EBUSY);
        }
        self.prune_inodes();
        if self.inodes.lock().keys().any(|key| key.mount == mount.id) {
            return Err(Errno::EBUSY);
        }
        mount.file_system.unmount()?;
        self.mounts.lock().mounts.retain(|other| other.id != mount.id);
        let mut dentries = self.dentries.lock();
        dentries.remove_mount(mount.id);
        if let Some(point) = mount.mountpoint {
            dentries.remove_mountpoint(point.mount, point.inode);
        }
        Ok(())
    }

    /// Flushes and unmounts everything, innermost first (for poweroff). Returns the first error.
    pub fn unmount_all(&self) -> Result<()> {
        let mut first_error = None;
        let mounts = self.mounts();
        for mount in mounts.iter().rev() {
            if let Err(error) = mount.file_system.unmount() {
                first_error.get_or_insert(error);
            }
        }
        let removed = core::mem::take(&mut self.mounts.lock().mounts);
        let mut dentries = self.dentries.lock();
        dentries.remove_all();
        for point in removed.iter().filter_map(|mount| mount.mountpoint) {
            dentries.remove_mountpoint(point.mount, point.inode);
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Writes `/proc/mounts`.
    pub fn write_mounts(&self, out: &mut dyn Write) -> fmt::Result {
        for mount in self.mounts() {
            writeln!(
                out,
                "{} {} {} {},relatime 0 0",
                mount.source,
                mount.target,
                mount.file_system.type_name(),
                if mount.read_only { "ro" } else { "rw" }
            )?;
        }
        Ok(())
    }

    /// The mount a location belongs to.
    pub fn mount_at(&self, location: Location) -> Result<Arc<Mount>> {
        self.mount_of(location.mount)
    }

    fn writable_mount(&self, location: Location) -> Result<Arc<Mount>> {
        let mount = self.mount_of(location.mount)?;
        if mount.read_only {
            return Err(Errno::EROFS);
        }
        Ok(mount)
    }

    fn is_mountpoint(&self, location: Location) -> bool {
        self.mounts.lock().mounts.iter().any(|mount| mount.mountpoint == Some(location))
    }

    fn cross_mounts(&self, location: Location) -> Result<Location> {
        Self::cross_mounts_in(&self.mounts.lock(), location)
    }

    /// The root of the mount on top of `location`, if any, with the mount table held.
    fn cross_mounts_in(table: &MountTable, mut location: Location) -> Result<Location> {
        for _ in 0..=table.mounts.len() {
            match table.mounts.iter().rev().find(|mount| mount.mountpoint == Some(location)) {
                Some(mount) => location = Location { mount: mount.id, inode: mount.file_system.root() },
                None => return Ok(location),
            }
        }
        Err(Errno::ELOOP)
    }

    // ---- inodes and dentries -----------------------------------------------------------

    /// Attributes of the inode at `location`, with `device` set to the mount.
    pub fn metadata_at(&self, location: Location) -> Result<Metadata> {
        let mount = self.mount_of(location.mount)?;
        let mut metadata = mount.file_system.metadata(location.inode)?;
        metadata.device = u64::from(location.mount);
        Ok(metadata)
    }

    fn inode_reference(&self, location: Location) -> Result<SlabArc<InodeReference>> {
        let mount = self.mount_of(location.mount)?;
        let mut inodes = self.inodes.lock();
        if let Some(existing) = inodes.get(&location).and_then(SlabWeak::upgrade) {
            return Ok(existing);
        }
        // Entries of closed inodes hold their memory in `inode_cache`: drop them first.
        inodes.retain(|_, reference| reference.strong_count() > 0);
        let reference = SlabArc::try_new(&INODE_CACHE, InodeReference { location, file_system: mount.file_system.clone() })
            .map_err(|_| Errno::ENOMEM)?;
        inodes.insert(location, SlabArc::downgrade(&reference));
        Ok(reference)
    }

    /// Forgets inodes no open file uses, returning their memory to `inode_cache`.
    pub fn prune_inodes(&self) {
        self.inodes.lock().retain(|_, reference| reference.strong_count() > 0);
    }

    fn release_if_unreferenced(&self, location: Location) -> Result<()> {
        let referenced = self.inodes.lock().get(&location).is_some_and(|reference| reference.strong_count() > 0);
        if referenced {
            return Ok(());
        }
        self.mount_of(location.mount)?.file_system.release(location.inode)
    }

    /// Dentry cache counters.
    pub fn dentry_statistics(&self) -> DentryStatistics {
        self.dentries.lock().statistics()
    }

    /// The location `name` refers to in `directory`, with its file type when known
    /// (always, unless the file system's names may change behind the cache).
    fn lookup_raw(&self, directory: Location, name: &str) -> Result<(Location, Option<FileType>)> {
        self.lookup_entry(directory, name).map(|(location, kind, _)| (location, kind))
    }

    /// [`Self::lookup_raw`], also telling whether the location may be a mount point (when
    /// `false`, it certainly is not one).
    fn lookup_entry(&self, directory: Location, name: &str) -> Result<(Location, Option<FileType>, bool)> {
        let at = |inode| Location { mount: directory.mount, inode };
        // File systems whose names may change have no dentries, so a hit is never theirs.
        {
            let mut dentries = self.dentries.lock();
            match dentries.lookup(directory.mount, directory.inode, name) {
                CachedLookup::Found(inode, kind) => return Ok((at(inode), Some(kind), dentries.is_mountpoint(directory.mount, inode))),
                CachedLookup::Negative => return Err(Errno::ENOENT),
                CachedLookup::Unknown => {}
            }
        }
        let mount = self.mount_of(directory.mount)?;
        if mount.file_system.dentries_may_change() {
            return mount.file_system.lookup(directory.inode, name).map(|inode| (at(inode), None, true));
        }
        match mount.file_system.lookup_with_kind(directory.inode, name) {
            Ok((inode, kind)) => {
                self.dentries.lock().insert(directory.mount, directory.inode, name, Some((inode, kind)));
                Ok((at(inode), Some(kind), true))
            }
            Err(Errno::ENOENT) => {
                self.dentries.lock().insert(directory.mount, directory.inode, name, None);
                Err(Errno::ENOENT)
            }
            Err(error) => Err(error),
        }
    }

    /// Records what `name` in `directory` now is, after a change made through the VFS. Not
    /// for file systems whose names may change behind the cache: their dentries must never
    /// exist (a lookup trusts any entry it finds).
    fn set_dentry(&self, directory: Location, name: &str, target: Option<(InodeNumber, FileType)>) {
        if self.mount_of(directory.mount).is_ok_and(|mount| !mount.file_system.dentries_may_change()) {
            self.dentries.lock().insert(directory.mount, directory.inode, name, target);
        }
    }

    fn parent(&self, mut location: Location) -> Result<Location> {
        let limit = self.mounts.lock().mounts.len();
        for _ in 0..=limit {
            let mount = self.mount_of(location.mount)?;
            if location.inode != mount.file_system.root() {
                let inode = mount.file_system.lookup(location.inode, "..")?;
                return Ok(Location { mount: location.mount, inode });
            }
            match mount.mountpoint {
                Some(point) => location = point,
                None => return Ok(location),
            }
        }
        Err(Errno::ELOOP)
    }

    // ---- path walk -----------------------------------------------------------------------

    /// Walks `path` from `cwd` (`None`: the root), following a final symbolic link if
    /// `follow_last`.
    pub fn resolve(&self, cwd: Option<Location>, path: &str, follow_last: bool) -> Result<Location> {
        let start = match cwd {
            Some(location) => location,
            None => self.root()?,
        };
        let mut depth = 0;
        self.walk(start, path, follow_last, &mut depth)
    }

    fn walk(&self, start: Location, path: &str, follow_last: bool, depth: &mut u32) -> Result<Location> {
        if path.is_empty() {
            return Err(Errno::ENOENT);
        }
        if path.len() > PATH_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        let absolute = path.starts_with('/');
        let mut current = if absolute { self.root()? } else { start };
        let must_be_directory = path.ends_with('/');
        let mut components = path.split('/').filter(|component| !component.is_empty()).peekable();
        // Whether `current` is a directory, when the previous step learned its type (from
        // the dentry cache, or by reading its inode to see whether it is a symbolic link),
        // so a cached component costs no inode read.
        // The root is a mount's root, a directory (checked when mounted).
        let mut known_directory: Option<bool> = absolute.then_some(true);
        let is_directory = |vfs: &Self, location: Location, known: Option<bool>| -> Result<bool> {
            match known {
                Some(answer) => Ok(answer),
                None => Ok(vfs.metadata_at(location)?.is_directory()),
            }
        };
        while let Some(component) = components.next() {
            let last = components.peek().is_none();
            if !is_directory(self, current, known_directory.take())? {
                return Err(Errno::ENOTDIR);
            }
            current = match component {
                "." => {
                    known_directory = Some(true);
                    current
                }
                ".." => self.parent(current)?,
                name => {
                    check_name_length(name)?;
                    let (found, kind, may_be_mountpoint) = self.lookup_entry(current, name)?;
                    let child = if may_be_mountpoint { self.cross_mounts(found)? } else { found };
                    // A mount's root stands in for the name: its type is read if needed.
                    let kind = if child == found { kind } else { None };
                    if !last || follow_last || must_be_directory {
                        match kind {
                            Some(kind) if kind != FileType::Symlink => {
                                known_directory = Some(kind == FileType::Directory);
                                child
                            }
                            _ => {
                                let (target, kind) = self.follow(current, child, depth)?;
                                known_directory = kind.map(|kind| kind == FileType::Directory);
                                target
                            }
                        }
                    } else {
                        child
                    }
                }
            };
        }
        if must_be_directory && !is_directory(self, current, known_directory)? {
            return Err(Errno::ENOTDIR);
        }
        Ok(current)
    }

    /// Resolves `location` if it is a symbolic link (relative to `directory`); returns where
    /// it leads and, when no link was followed, the file type read on the way.
    fn follow(&self, directory: Location, location: Location, depth: &mut u32) -> Result<(Location, Option<FileType>)> {
        let metadata = self.metadata_at(location)?;
        if metadata.kind != FileType::Symlink {
            return Ok((location, Some(metadata.kind)));
        }
        *depth += 1;
        if *depth > MAX_SYMLINK_DEPTH {
            return Err(Errno::ELOOP);
        }
        let target = self.mount_of(location.mount)?.file_system.readlink(location.inode)?;
        self.walk(directory, &target, true, depth).map(|location| (location, None))
    }

    /// The directory that would hold `path`'s last component, and that component.
    fn resolve_parent(&self, cwd: Option<Location>, path: &str) -> Result<(Location, String)> {
        if path.is_empty() {
            return Err(Errno::ENOENT);
        }
        let (directory, name) = split_last(path);
        let parent = if directory.is_empty() {
            match cwd {
                Some(location) => location,
                None => self.root()?,
            }
        } else {
            self.resolve(cwd, directory, true)?
        };
        if !self.metadata_at(parent)?.is_directory() {
            return Err(Errno::ENOTDIR);
        }
        check_name_length(name)?;
        let name = if name.is_empty() { "." } else { name };
        Ok((parent, String::from(name)))
    }

    // ---- open files ----------------------------------------------------------------------

    /// Opens (and with `CREATE`, creates) a file.
    pub fn open(&self, cwd: Option<Location>, path: &str, flags: OpenFlags, permissions: u16) -> Result<Arc<OpenFile>> {
        let follow = !flags.contains(OpenFlags::NO_FOLLOW);
        let location = if flags.contains(OpenFlags::CREATE) {
            let (parent, name) = self.resolve_parent(cwd, path)?;
            let existing = if name == "." || name == ".." {
                self.resolve(cwd, path, follow).map(Some)?
            } else {
                match self.lookup_raw(parent, &name) {
                    Ok(_) => Some(self.resolve(cwd, path, follow)?),
                    Err(Errno::ENOENT) => None,
                    Err(error) => return Err(error),
                }
            };
            match existing {
                Some(_) if flags.contains(OpenFlags::EXCLUSIVE) => return Err(Errno::EEXIST),
                Some(location) => location,
                None => {
                    if path.ends_with('/') {
                        return Err(Errno::EISDIR);
                    }
                    let mount = self.writable_mount(parent)?;
                    let inode = mount.file_system.create(parent.inode, &name, FileType::Regular, permissions & 0o7777, 0, 0)?;
                    self.set_dentry(parent, &name, Some((inode, FileType::Regular)));
                    Location { mount: parent.mount, inode }
                }
            }
        } else {
            self.resolve(cwd, path, follow)?
        };
        let metadata = self.metadata_at(location)?;
        if metadata.kind == FileType::Symlink {
            return Err(Errno::ELOOP);
        }
        if flags.contains(OpenFlags::DIRECTORY) && !metadata.is_directory() {
            return Err(Errno::ENOTDIR);
        }
        if metadata.is_directory() && (flags.writable() || flags.contains(OpenFlags::TRUNCATE)) {
            return Err(Errno::EISDIR);
        }
        if flags.writable() {
            self.writable_mount(location)?;
        }
        let inode = self.inode_reference(location)?;
        if flags.contains(OpenFlags::TRUNCATE) && flags.writable() && metadata.kind == FileType::Regular && metadata.size != 0 {
            inode.file_system.truncate(location.inode, 0)?;
        }
        Ok(Arc::new(OpenFile { inode, flags, offset: crate::sync::Mutex::new(0) }))
    }

    /// Reads at the file's offset and advances it.
    pub fn read(&self, file: &OpenFile, buffer: &mut [u8]) -> Result<usize> {
        let mut offset = file.offset.lock();
        let count = self.pread(file, *offset, buffer)?;
        *offset += count as u64;
        Ok(count)
    }

    /// Reads at `offset` without moving the file's offset.
    pub fn pread(&self, file: &OpenFile, offset: u64, buffer: &mut [u8]) -> Result<usize> {
        if !file.flags.readable() {
            return Err(Errno::EBADF);
        }
        let location = file.location();
        if self.metadata_at(location)?.is_directory() {
            return Err(Errno::EISDIR);
        }
        file.inode.file_system.read(location.inode, offset, buffer)
    }

    /// Writes at the file's offset (at the end with `APPEND`) and advances it.
    pub fn write(&self, file: &OpenFile, data: &[u8]) -> Result<usize> {
        let mut offset = file.offset.lock();
        if file.flags.contains(OpenFlags::APPEND) {
            *offset = self.metadata_at(file.location())?.size;
        }
        let count = self.pwrite(file, *offset, data)?;
        *offset += count as u64;
        Ok(count)
    }

    /// Writes at `offset` without moving the file's offset.
    pub fn pwrite(&self, file: &OpenFile, offset: u64, data: &[u8]) -> Result<usize> {
        if !file.flags.writable() {
            return Err(Errno::EBADF);
        }
        let location = file.location();
        self.writable_mount(location)?;
        file.inode.file_system.write(location.inode, offset, data)
    }

    /// Moves the file's offset; returns the new one.
    pub fn lseek(&self, file: &OpenFile, position: SeekFrom) -> Result<u64> {
        let mut offset = file.offset.lock();
        let target = match position {
            SeekFrom::Start(absolute) => i128::from(absolute),
            SeekFrom::Current(delta) => i128::from(*offset) + i128::from(delta),
            SeekFrom::End(delta) => i128::from(self.metadata_at(file.location())?.size) + i128::from(delta),
        };
        if target < 0 || target > i128::from(i64::MAX) {
            return Err(Errno::EINVAL);
        }
        *offset = target as u64;
        Ok(*offset)
    }

    /// Attributes of an open file.
    pub fn fstat(&self, file: &OpenFile) -> Result<Metadata> {
        self.metadata_at(file.location())
    }

    /// Flushes an open file's data and metadata.
    pub fn fsync(&self, file: &OpenFile) -> Result<()> {
        file.inode.file_system.fsync(file.location().inode)
    }

    /// Sets an open file's size.
    pub fn ftruncate(&self, file: &OpenFile, size: u64) -> Result<()> {
        if !file.flags.writable() {
            return Err(Errno::EINVAL);
        }
        self.writable_mount(file.location())?;
        file.inode.file_system.truncate(file.location().inode, size)
    }

    /// The next entry of an open directory, or `None` at the end.
    pub fn readdir(&self, file: &OpenFile) -> Result<Option<DirectoryEntry>> {
        let location = file.location();
        if !self.metadata_at(location)?.is_directory() {
            return Err(Errno::ENOTDIR);
        }
        let mut offset = file.offset.lock();
        let entries = file.inode.file_system.read_directory(location.inode)?;
        let entry = entries.into_iter().nth(*offset as usize);
        if entry.is_some() {
            *offset += 1;
        }
        Ok(entry)
    }

    // ---- path operations -----------------------------------------------------------------

    /// `stat`: attributes, following a final symbolic link.
    pub fn stat(&self, cwd: Option<Location>, path: &str) -> Result<Metadata> {
        self.metadata_at(self.resolve(cwd, path, true)?)
    }

    /// `lstat`: attributes of a symbolic link itself.
    pub fn lstat(&self, cwd: Option<Location>, path: &str) -> Result<Metadata> {
        self.metadata_at(self.resolve(cwd, path, false)?)
    }

    /// Every entry of the directory at `path`.
    pub fn read_directory(&self, cwd: Option<Location>, path: &str) -> Result<Vec<DirectoryEntry>> {
        let location = self.resolve(cwd, path, true)?;
        if !self.metadata_at(location)?.is_directory() {
            return Err(Errno::ENOTDIR);
        }
        self.mount_of(location.mount)?.file_system.read_directory(location.inode)
    }

    /// `mkdir`.
    pub fn mkdir(&self, cwd: Option<Location>, path: &str, permissions: u16) -> Result<()> {
        let (parent, name) = self.resolve_parent(cwd, path)?;
        if name == "." || name == ".." {
            return Err(Errno::EEXIST);
        }
        match self.lookup_raw(parent, &name) {
            Ok(_) => return Err(Errno::EEXIST),
            Err(Errno::ENOENT) => {}
            Err(error) => return Err(error),
        }
        let mount = self.writable_mount(parent)?;
        let inode = mount.file_system.create(parent.inode, &name, FileType::Directory, permissions & 0o7777, 0, 0)?;
        self.set_dentry(parent, &name, Some((inode, FileType::Directory)));
        Ok(())
    }

    /// `rmdir`.
    pub fn rmdir(&self, cwd: Option<Location>, path: &str) -> Result<()> {
        let (parent, name) = self.resolve_parent(cwd, path)?;
        match name.as_str() {
            "." => return Err(Errno::EINVAL),
            ".." => return Err(Errno::ENOTEMPTY),
            _ => {}
        }
        let (child, _) = self.lookup_raw(parent, &name)?;
        if !self.metadata_at(child)?.is_directory() {
            return Err(Errno::ENOTDIR);
        }
        if self.is_mountpoint(child) {
            return Err(Errno::EBUSY);
        }
        let mount = self.writable_mount(parent)?;
        mount.file_system.rmdir(parent.inode, &name)?;
        self.set_dentry(parent, &name, None);
        self.release_if_unreferenced(child)
    }

    /// `unlink`: removes a name of a non-directory.
    pub fn unlink(&self, cwd: Option<Location>, path: &str) -> Result<()> {
        let (parent, name) = self.resolve_parent(cwd, path)?;
        if name == "." || name == ".." {
            return Err(Errno::EISDIR);
        }
        let (child, _) = self.lookup_raw(parent, &name)?;
        if self.metadata_at(child)?.is_directory() {
            return Err(Errno::EISDIR);
        }
        let mount = self.writable_mount(parent)?;
        mount.file_system.unlink(parent.inode, &name)?;
        self.set_dentry(parent, &name, None);
        self.release_if_unreferenced(child)
    }

    /// Whether `directory` is `ancestor` or lies below it (same mount).
    fn is_within(&self, directory: Location, ancestor: Location) -> Result<bool> {
        let file_system = self.mount_of(directory.mount)?.file_system.clone();
        let mut current = directory.inode;
        for _ in 0..MAX_ANCESTRY_STEPS {
            if current == ancestor.inode {
                return Ok(true);
            }
            if current == file_system.root() {
                return Ok(false);
            }
            current = file_system.lookup(current, "..")?;
        }
        Err(Errno::ELOOP)
    }

    /// `rename`: moves a name, across directories, replacing a file or an empty directory.
    pub fn rename(&self, cwd: Option<Location>, old_path: &str, new_path: &str) -> Result<()> {
        let (old_parent, old_name) = self.resolve_parent(cwd, old_path)?;
        let (new_parent, new_name) = self.resolve_parent(cwd, new_path)?;
        for name in [&old_name, &new_name] {
            if name == "." || name == ".." {
                return Err(Errno::EBUSY);
            }
        }
        if old_parent.mount != new_parent.mount {
            return Err(Errno::EXDEV);
        }
        let (source, _) = self.lookup_raw(old_parent, &old_name)?;
        let source_metadata = self.metadata_at(source)?;
        if self.is_mountpoint(source) {
            return Err(Errno::EBUSY);
        }
        let mount = self.writable_mount(old_parent)?;
        let replaced = match self.lookup_raw(new_parent, &new_name) {
            Ok((target, _)) => {
                if target == source {
                    return Ok(());
                }
                let target_metadata = self.metadata_at(target)?;
                if self.is_mountpoint(target) {
                    return Err(Errno::EBUSY);
                }
                match (source_metadata.is_directory(), target_metadata.is_directory()) {
                    (true, false) => return Err(Errno::ENOTDIR),
                    (false, true) => return Err(Errno::EISDIR),
                    _ => {}
                }
                Some(target)
            }
            Err(Errno::ENOENT) => None,
            Err(error) => return Err(error),
        };
        if source_metadata.is_directory() && self.is_within(new_parent, source)? {
            return Err(Errno::EINVAL);
        }
        mount.file_system.rename(old_parent.inode, &old_name, new_parent.inode, &new_name)?;
        self.set_dentry(old_parent, &old_name, None);
        self.set_dentry(new_parent, &new_name, Some((source.inode, source_metadata.kind)));
        if let Some(target) = replaced {
            self.release_if_unreferenced(target)?;
        }
        Ok(())
    }

    /// `link`: a new name for an existing non-directory (a final symbolic link is not followed).
    pub fn link(&self, cwd: Option<Location>, existing: &str, new_path: &str) -> Result<()> {
        let source = self.resolve(cwd, existing, false)?;
        let source_kind = self.metadata_at(source)?.kind;
        if source_kind == FileType::Directory {
            return Err(Errno::EPERM);
        }
        let (parent, name) = self.resolve_parent(cwd, new_path)?;
        if name == "." || name == ".." {
            return Err(Errno::EEXIST);
        }
        if parent.mount != source.mount {
            return Err(Errno::EXDEV);
        }
        match self.lookup_raw(parent, &name) {
            Ok(_) => return Err(Errno::EEXIST),
            Err(Errno::ENOENT) => {}
            Err(error) => return Err(error),
        }
        let mount = self.writable_mount(parent)?;
        mount.file_system.link(parent.inode, &name, source.inode)?;
        self.set_dentry(parent, &name, Some((source.inode, source_kind)));
        Ok(())
    }

    /// `symlink`: creates `link_path` pointing at `target`.
    pub fn symlink(&self, cwd: Option<Location>, target: &str, link_path: &str) -> Result<()> {
        if target.is_empty() {
            return Err(Errno::ENOENT);
        }
        if target.len() >= PATH_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        let (parent, name) = self.resolve_parent(cwd, link_path)?;
        if name == "." || name == ".." {
            return Err(Errno::EEXIST);
        }
        match self.lookup_raw(parent, &name) {
            Ok(_) => return Err(Errno::EEXIST),
            Err(Errno::ENOENT) => {}
            Err(error) => return Err(error),
        }
        let mount = self.writable_mount(parent)?;
        let inode = mount.file_system.symlink(parent.inode, &name, target, 0, 0)?;
        self.set_dentry(parent, &name, Some((inode, FileType::Symlink)));
        Ok(())
    }

    /// `readlink`: a symbolic link's target; `EINVAL` for anything else.
    pub fn readlink(&self, cwd: Option<Location>, path: &str) -> Result<String> {
        let location = self.resolve(cwd, path, false)?;
        if self.metadata_at(location)?.kind != FileType::Symlink {
            return Err(Errno::EINVAL);
        }
        self.mount_of(location.mount)?.file_system.readlink(location.inode)
    }

    /// `truncate`: sets the size of the file at `path`.
    pub fn truncate(&self, cwd: Option<Location>, path: &str, size: u64) -> Result<()> {
        let location = self.resolve(cwd, path, true)?;
        if self.metadata_at(location)?.is_directory() {
            return Err(Errno::EISDIR);
        }
        self.writable_mount(location)?.file_system.truncate(location.inode, size)
    }

    /// `chmod`, `chown` and `utimes` in one: applies `changes` to the inode at `path`.
    pub fn set_metadata(&self, cwd: Option<Location>, path: &str, changes: &MetadataChanges) -> Result<()> {
        let location = self.resolve(cwd, path, true)?;
        self.writable_mount(location)?.file_system.set_metadata(location.inode, changes)
    }

    /// `statfs` of the file system holding `path`.
    pub fn statfs(&self, cwd: Option<Location>, path: &str) -> Result<FileSystemStatistics> {
        let location = self.resolve(cwd, path, true)?;
        self.mount_of(location.mount)?.file_system.statistics()
    }

    /// `sync`: flushes every mounted file system; returns the first error.
    pub fn sync(&self) -> Result<()> {
        let mut first_error = None;
        for mount in self.mounts() {
            if let Err(error) = mount.file_system.sync() {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Most bytes [`Vfs::read_to_end`] collects before giving up with `EFBIG` (an endless
    /// device such as `/dev/zero` must not exhaust memory).
    pub const MAX_READ_TO_END: usize = 64 << 20;

    /// Reads a whole file (a convenience for the shell and tests); `EFBIG` past
    /// [`Vfs::MAX_READ_TO_END`] bytes.
    pub fn read_to_end(&self, cwd: Option<Location>, path: &str) -> Result<Vec<u8>> {
        let file = self.open(cwd, path, OpenFlags::READ_ONLY, 0)?;
        // Read straight into a buffer of the stated size (procfs states 0), then grow.
        // One byte more than the stated size, so the end is seen without growing.
        let expected = self.fstat(&file)?.size.min(64 << 20) as usize;
        let mut contents = alloc::vec![0u8; expected.max(4095) + 1];
        let mut filled = 0;
        loop {
            if filled == contents.len() {
                if filled >= Self::MAX_READ_TO_END {
                    return Err(Errno::EFBIG);
                }
                contents.resize((contents.len() * 2).min(Self::MAX_READ_TO_END + 1), 0);
            }
            let count = self.read(&file, &mut contents[filled..])?;
            filled += count;
            if count == 0 {
                contents.truncate(filled);
                return Ok(contents);
            }
        }
    }

    /// Creates or replaces the file at `path` with `data` (a convenience).
    pub fn write_file(&self, cwd: Option<Location>, path: &str, data: &[u8], append: bool) -> Result<()> {
        let mode = if append { OpenFlags::APPEND } else { OpenFlags::TRUNCATE };
        let file = self.open(cwd, path, OpenFlags::WRITE_ONLY | OpenFlags::CREATE | mode, 0o644)?;
        let mut written = 0;
        while written < data.len() {
            let count = self.write(&file, &data[written..])?;
            if count == 0 {
                return Err(Errno::EIO);
            }
            written += count;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests;
