//! ramfs: a file system kept entirely in memory, used as the root file system.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use super::vfs::{
    Clock, DirectoryEntry, Errno, FileSystem, FileSystemStatistics, FileType, InodeNumber, Metadata, MetadataChanges, Result, Seconds,
};
use crate::sync::SpinLock;

/// The root directory's inode number.
pub const ROOT_INODE: InodeNumber = 1;
/// Largest file ramfs accepts (`EFBIG` beyond).
pub const MAX_FILE_SIZE: u64 = 1 << 30;
const BLOCK_SIZE: u64 = 4096;

struct RamInode {
    kind: FileType,
    permissions: u16,
    uid: u32,
    gid: u32,
    links: u32,
    access_time: Seconds,
    modification_time: Seconds,
    change_time: Seconds,
    /// File contents or a symbolic link's target.
    data: Vec<u8>,
    children: BTreeMap<String, InodeNumber>,
    parent: InodeNumber,
}

struct RamState {
    inodes: BTreeMap<InodeNumber, RamInode>,
    next_inode: InodeNumber,
    used_bytes: u64,
}

/// An in-memory file system.
pub struct RamFs {
    state: SpinLock<RamState>,
    clock: Clock,
    capacity_bytes: u64,
}

impl RamState {
    fn inode(&self, inode: InodeNumber) -> Result<&RamInode> {
        self.inodes.get(&inode).ok_or(Errno::ENOENT)
    }

    fn inode_mut(&mut self, inode: InodeNumber) -> Result<&mut RamInode> {
        self.inodes.get_mut(&inode).ok_or(Errno::ENOENT)
    }

    fn directory(&self, inode: InodeNumber) -> Result<&RamInode> {
        let directory = self.inode(inode)?;
        if directory.kind != FileType::Directory {
            return Err(Errno::ENOTDIR);
        }
        Ok(directory)
    }

    fn child(&self, directory: InodeNumber, name: &str) -> Result<InodeNumber> {
        self.directory(directory)?.children.get(name).copied().ok_or(Errno::ENOENT)
    }
}

impl RamFs {
    /// An empty ramfs (a root directory) limited to `capacity_bytes` of file data.
    pub fn new(clock: Clock, capacity_bytes: u64) -> Self {
        let now = clock();
        let mut inodes = BTreeMap::new();
        inodes.insert(ROOT_INODE, RamInode::new(FileType::Directory, 0o755, 0, 0, now, ROOT_INODE));
        inodes.get_mut(&ROOT_INODE).map(|root| root.links = 2);
        RamFs { state: SpinLock::new(RamState { inodes, next_inode: ROOT_INODE + 1, used_bytes: 0 }), clock, capacity_bytes }
    }

    fn add(&self, state: &mut RamState, directory: InodeNumber, name: &str, mut inode: RamInode) -> Result<InodeNumber> {
        if state.directory(directory)?.children.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let bytes = inode.data.len() as u64;
        if state.used_bytes + bytes > self.capacity_bytes {
            return Err(Errno::ENOSPC);
        }
        state.used_bytes += bytes;
        let number = state.next_inode;
        state.next_inode += 1;
        let is_directory = inode.kind == FileType::Directory;
        if is_directory {
            inode.links = 2;
        }
        state.inodes.insert(number, inode);
        let now = (self.clock)();
        let parent = state.inode_mut(directory)?;
        parent.children.insert(String::from(name), number);
        parent.modification_time = now;
        parent.change_time = now;
        if is_directory {
            parent.links += 1;
        }
        Ok(number)
    }

    fn remove_name(&self, state: &mut RamState, directory: InodeNumber, name: &str) -> Result<InodeNumber> {
        let now = (self.clock)();
        let parent = state.inode_mut(directory)?;
        let child = parent.children.remove(name).ok_or(Errno::ENOENT)?;
        parent.modification_time = now;
        parent.change_time = now;
        let child_is_directory = state.inode(child)?.kind == FileType::Directory;
        if child_is_directory {
            state.inode_mut(directory)?.links -= 1;
            state.inode_mut(child)?.links = 0;
        } else {
            let inode = state.inode_mut(child)?;
            inode.links = inode.links.saturating_sub(1);
            inode.change_time = now;
        }
        Ok(child)
    }

    fn resize(&self, state: &mut RamState, inode: InodeNumber, size: u64) -> Result<()> {
        if size > MAX_FILE_SIZE {
            return Err(Errno::EFBIG);
        }
        let old = state.inode(inode)?.data.len() as u64;
        if size > old && state.used_bytes + (size - old) > self.capacity_bytes {
            return Err(Errno::ENOSPC);
        }
        state.used_bytes = state.used_bytes + size - old;
        state.inode_mut(inode)?.data.resize(size as usize, 0);
        Ok(())
    }
}

impl RamInode {
    fn new(kind: FileType, permissions: u16, uid: u32, gid: u32, now: Seconds, parent: InodeNumber) -> Self {
        RamInode {
            kind,
            permissions,
            uid,
            gid,
            links: 1,
            access_time: now,
            modification_time: now,
            change_time: now,
            data: Vec::new(),
            children: BTreeMap::new(),
            parent,
        }
    }
}

impl FileSystem for RamFs {
    fn type_name(&self) -> &'static str {
        "ramfs"
    }

    fn root(&self) -> InodeNumber {
        ROOT_INODE
    }

    fn statistics(&self) -> Result<FileSystemStatistics> {
        let state = self.state.lock();
        let blocks = self.capacity_bytes / BLOCK_SIZE;
        let used = state.used_bytes.div_ceil(BLOCK_SIZE);
        Ok(FileSystemStatistics {
            block_size: BLOCK_SIZE,
            blocks,
            free_blocks: blocks.saturating_sub(used),
            available_blocks: blocks.saturating_sub(used),
            inodes: state.inodes.len() as u64,
            free_inodes: 0,
            name_length: 255,
        })
    }

    fn metadata(&self, inode: InodeNumber) -> Result<Metadata> {
        let state = self.state.lock();
        let node = state.inode(inode)?;
        let size = match node.kind {
            FileType::Directory => BLOCK_SIZE,
            _ => node.data.len() as u64,
        };
        Ok(Metadata {
            inode,
            kind: node.kind,
            permissions: node.permissions,
            links: node.links,
            uid: node.uid,
            gid: node.gid,
            size,
            blocks: size.div_ceil(512),
            block_size: BLOCK_SIZE as u32,
            access_time: node.access_time,
            modification_time: node.modification_time,
            change_time: node.change_time,
            device: 0,
            rdev: Default::default(),
        })
    }

    fn set_metadata(&self, inode: InodeNumber, changes: &MetadataChanges) -> Result<()> {
        let now = (self.clock)();
        let mut state = self.state.lock();
        let node = state.inode_mut(inode)?;
        if let Some(permissions) = changes.permissions {
            node.permissions = permissions & 0o7777;
        }
        if let Some(uid) = changes.uid {
            node.uid = uid;
        }
        if let Some(gid) = changes.gid {
            node.gid = gid;
        }
        if let Some(time) = changes.access_time {
            node.access_time = time;
        }
        if let Some(time) = changes.modification_time {
            node.modification_time = time;
        }
        node.change_time = now;
        Ok(())
    }

    fn lookup(&self, directory: InodeNumber, name: &str) -> Result<InodeNumber> {
        let state = self.state.lock();
        match name {
            "." => state.directory(directory).map(|_| directory),
            ".." => state.directory(directory).map(|node| node.parent),
            _ => state.child(directory, name),
        }
    }

    fn read_directory(&self, directory: InodeNumber) -> Result<Vec<DirectoryEntry>> {
        let state = self.state.lock();
        let node = state.directory(directory)?;
        let mut entries = alloc::vec![
            DirectoryEntry { name: ".".into(), inode: directory, kind: FileType::Directory },
            DirectoryEntry { name: "..".into(), inode: node.parent, kind: FileType::Directory },
        ];
        for (name, &inode) in &node.children {
            entries.push(DirectoryEntry { name: name.clone(), inode, kind: state.inode(inode)?.kind });
        }
        Ok(entries)
    }

    fn create(&self, directory: InodeNumber, name: &str, kind: FileType, permissions: u16, uid: u32, gid: u32) -> Result<InodeNumber> {
        if !matches!(kind, FileType::Regular | FileType::Directory) {
            return Err(Errno::EINVAL);
        }
        let now = (self.clock)();
        let mut state = self.state.lock();
        self.add(&mut state, directory, name, RamInode::new(kind, permissions, uid, gid, now, directory))
    }

    fn symlink(&self, directory: InodeNumber, name: &str, target: &str, uid: u32, gid: u32) -> Result<InodeNumber> {
        let now = (self.clock)();
        let mut node = RamInode::new(FileType::Symlink, 0o777, uid, gid, now, directory);
        node.data = target.as_bytes().to_vec();
        let mut state = self.state.lock();
        self.add(&mut state, directory, name, node)
    }

    fn link(&self, directory: InodeNumber, name: &str, inode: InodeNumber) -> Result<()> {
        let now = (self.clock)();
        let mut state = self.state.lock();
        if state.inode(inode)?.kind == FileType::Directory {
            return Err(Errno::EPERM);
        }
        if state.directory(directory)?.children.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let node = state.inode_mut(inode)?;
        node.links += 1;
        node.change_time = now;
        let parent = state.inode_mut(directory)?;
        parent.children.insert(String::from(name), inode);
        parent.modification_time = now;
        Ok(())
    }

    fn unlink(&self, directory: InodeNumber, name: &str) -> Result<InodeNumber> {
        let mut state = self.state.lock();
        let child = state.child(directory, name)?;
        if state.inode(child)?.kind == FileType::Directory {
            return Err(Errno::EISDIR);
        }
        self.remove_name(&mut state, directory, name)
    }

    fn rmdir(&self, directory: InodeNumber, name: &str) -> Result<InodeNumber> {
        let mut state = self.state.lock();
        let child = state.child(directory, name)?;
        if !state.directory(child)?.children.is_empty() {
            return Err(Errno::ENOTEMPTY);
        }
        self.remove_name(&mut state, directory, name)
    }

    fn rename(
        &self,
        old_directory: InodeNumber,
        old_name: &str,
        new_directory: InodeNumber,
        new_name: &str,
    ) -> Result<Option<InodeNumber>> {
        let mut state = self.state.lock();
        let source = state.child(old_directory, old_name)?;
        state.directory(new_directory)?;
        let replaced = match state.child(new_directory, new_name) {
            Ok(target) => {
                let target_node = state.inode(target)?;
                if target_node.kind == FileType::Directory && !target_node.children.is_empty() {
                    return Err(Errno::ENOTEMPTY);
                }
                self.remove_name(&mut state, new_directory, new_name)?;
                Some(target)
            }
            Err(Errno::ENOENT) => None,
            Err(error) => return Err(error),
        };
        let now = (self.clock)();
        let is_directory = state.inode(source)?.kind == FileType::Directory;
        let old_parent = state.inode_mut(old_directory)?;
        old_parent.children.remove(old_name);
        old_parent.modification_time = now;
        if is_directory {
            old_parent.links -= 1;
        }
        let new_parent = state.inode_mut(new_directory)?;
        new_parent.children.insert(String::from(new_name), source);
        new_parent.modification_time = now;
        if is_directory {
            new_parent.links += 1;
        }
        let node = state.inode_mut(source)?;
        node.parent = new_directory;
        node.change_time = now;
        Ok(replaced)
    }

    fn read(&self, inode: InodeNumber, offset: u64, buffer: &mut [u8]) -> Result<usize> {
        let state = self.state.lock();
        let node = state.inode(inode)?;
        if node.kind == FileType::Directory {
            return Err(Errno::EISDIR);
        }
        let length = node.data.len() as u64;
        if offset >= length {
            return Ok(0);
        }
        let count = buffer.len().min((length - offset) as usize);
        buffer[..count].copy_from_slice(&node.data[offset as usize..offset as usize + count]);
        Ok(count)
    }

    fn write(&self, inode: InodeNumber, offset: u64, data: &[u8]) -> Result<usize> {
        let now = (self.clock)();
        let mut state = self.state.lock();
        if state.inode(inode)?.kind != FileType::Regular {
            return Err(Errno::EINVAL);
        }
        let end = offset.checked_add(data.len() as u64).ok_or(Errno::EFBIG)?;
        if end > state.inode(inode)?.data.len() as u64 {
            self.resize(&mut state, inode, end)?;
        }
        let node = state.inode_mut(inode)?;
        node.data[offset as usize..end as usize].copy_from_slice(data);
        node.modification_time = now;
        node.change_time = now;
        Ok(data.len())
    }

    fn truncate(&self, inode: InodeNumber, size: u64) -> Result<()> {
        let now = (self.clock)();
        let mut state = self.state.lock();
        if state.inode(inode)?.kind != FileType::Regular {
            return Err(Errno::EINVAL);
        }
        self.resize(&mut state, inode, size)?;
        let node = state.inode_mut(inode)?;
        node.modification_time = now;
        node.change_time = now;
        Ok(())
    }

    fn readlink(&self, inode: InodeNumber) -> Result<String> {
        let state = self.state.lock();
        let node = state.inode(inode)?;
        if node.kind != FileType::Symlink {
            return Err(Errno::EINVAL);
        }
        String::from_utf8(node.data.clone()).map_err(|_| Errno::EINVAL)
    }

    fn release(&self, inode: InodeNumber) -> Result<()> {
        let mut state = self.state.lock();
        if inode != ROOT_INODE && state.inodes.get(&inode).is_some_and(|node| node.links == 0) {
            let node = state.inodes.remove(&inode).ok_or(Errno::ENOENT)?;
            state.used_bytes -= node.data.len() as u64;
        }
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        Ok(())
    }
}

impl RamFs {
    /// Bytes of file data held.
    pub fn used_bytes(&self) -> u64 {
        self.state.lock().used_bytes
    }

    /// Inodes held (the root included).
    pub fn inode_count(&self) -> usize {
        self.state.lock().inodes.len()
    }
}
