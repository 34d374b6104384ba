//! devfs, mounted at `/dev`: the memory character devices (`null`, `zero`, `full`, `random`, `urandom`), the serial `console`, and a block-device node for every disk and partition in the block registry.
//!
//! Device numbers are Linux's (Documentation/admin-guide/devices.txt): 1,3 null; 1,5 zero;
//! 1,7 full; 1,8 random; 1,9 urandom; 5,1 console; block devices carry the numbers they
//! were registered with (1,N RAM disks; the virtio-blk major for `vda`...). The directory
//! is not cached by the VFS: block devices come and go with the registry.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use crate::block::BlockDevice;
use crate::fs::vfs::{
    DeviceNumber, DirectoryEntry, Errno, FileSystem, FileSystemStatistics, FileType, InodeNumber, Metadata, MetadataChanges, Result,
    Seconds,
};
use crate::sync::SpinLock;

/// The root directory's inode number.
pub const ROOT_INODE: InodeNumber = 1;
/// The first inode number given to a block device (character devices sit below).
const FIRST_BLOCK_INODE: InodeNumber = 0x100;
/// Most bytes one read or write of a block device moves (bounds the scratch buffer).
pub const MAX_BLOCK_TRANSFER: usize = 1 << 20;
/// Longest line a console read collects.
pub const MAX_CONSOLE_LINE: usize = 4096;

/// What a character device does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CharacterKind {
    /// Reads end at once; writes are discarded.
    Null,
    /// Reads give zeros; writes are discarded.
    Zero,
    /// Reads give zeros; writes fail with `ENOSPC`.
    Full,
    /// Reads give the kernel generator's output; writes are mixed into it.
    Random,
    /// The same as `Random` (the generator is seeded before its first output).
    Urandom,
    /// The serial console: writes print, reads return a line typed on the tty.
    Console,
}

/// One character device node.
#[derive(Debug, Clone, Copy)]
pub struct CharacterNode {
    /// The name in `/dev`.
    pub name: &'static str,
    /// What it does.
    pub kind: CharacterKind,
    /// Its numbers.
    pub number: DeviceNumber,
    /// Its permission bits.
    pub permissions: u16,
}

/// The character devices, in `/dev` listing order.
pub const CHARACTER_DEVICES: [CharacterNode; 6] = [
    CharacterNode { name: "null", kind: CharacterKind::Null, number: DeviceNumber::new(1, 3), permissions: 0o666 },
    CharacterNode { name: "zero", kind: CharacterKind::Zero, number: DeviceNumber::new(1, 5), permissions: 0o666 },
    CharacterNode { name: "full", kind: CharacterKind::Full, number: DeviceNumber::new(1, 7), permissions: 0o666 },
    CharacterNode { name: "random", kind: CharacterKind::Random, number: DeviceNumber::new(1, 8), permissions: 0o666 },
    CharacterNode { name: "urandom", kind: CharacterKind::Urandom, number: DeviceNumber::new(1, 9), permissions: 0o666 },
    CharacterNode { name: "console", kind: CharacterKind::Console, number: DeviceNumber::new(5, 1), permissions: 0o600 },
];

/// How devfs reaches the console (a parameter so host tests can stand in for the tty).
#[derive(Clone, Copy)]
pub struct ConsoleOperations {
    /// Prints bytes (with the tty's `\n` to `\r\n`).
    pub write: fn(&[u8]),
    /// Waits for one typed byte.
    pub read_byte: fn() -> u8,
}

/// The kernel's console: [`crate::console::write_bytes`] and [`crate::tty::read_byte`].
pub const KERNEL_CONSOLE: ConsoleOperations = ConsoleOperations { write: crate::console::write_bytes, read_byte: crate::tty::read_byte };

/// What an inode is.
enum Node {
    Root,
    Character(CharacterNode),
    Block(String),
}

/// The mountable devfs.
pub struct DevFs {
    console: ConsoleOperations,
    created: Seconds,
    /// Block device names and the inode numbers given to them (kept when a device goes,
    /// so a name that comes back gets its old number).
    block_inodes: SpinLock<BTreeMap<String, InodeNumber>>,
    /// Typed bytes a console read has collected but not yet returned.
    console_pending: SpinLock<Vec<u8>>,
}

fn character_inode(index: usize) -> InodeNumber {
    2 + index as InodeNumber
}

fn find_block_device(name: &str) -> Result<crate::block::RegisteredDevice> {
    crate::block::find(name).ok_or(Errno::ENOENT)
}

impl DevFs {
    /// A devfs over the block registry, with `console` behind `/dev/console`.
    pub fn new(console: ConsoleOperations, created: Seconds) -> Self {
        DevFs { console, created, block_inodes: SpinLock::new(BTreeMap::new()), console_pending: SpinLock::new(Vec::new()) }
    }

    fn block_inode(&self, name: &str) -> InodeNumber {
        let mut inodes = self.block_inodes.lock();
        if let Some(&inode) = inodes.get(name) {
            return inode;
        }
        let inode = FIRST_BLOCK_INODE + inodes.len() as InodeNumber;
        inodes.insert(String::from(name), inode);
        inode
    }

    fn node(&self, inode: InodeNumber) -> Result<Node> {
        if inode == ROOT_INODE {
            return Ok(Node::Root);
        }
        if let Some(node) = inode.checked_sub(2).and_then(|index| CHARACTER_DEVICES.get(index as usize)) {
            return Ok(Node::Character(*node));
        }
        let name = self.block_inodes.lock().iter().find(|(_, &number)| number == inode).map(|(name, _)| name.clone());
        match name {
            Some(name) if crate::block::find(&name).is_some() => Ok(Node::Block(name)),
            _ => Err(Errno::ENOENT),
        }
    }

    /// Reads one line from the console, echoing it, with backspace editing; Ctrl-D on an
    /// empty line is the end of input.
    fn read_console_line(&self) -> Vec<u8> {
        let mut line = Vec::new();
        loop {
            match (self.console.read_byte)() {
                b'\r' | b'\n' => {
                    (self.console.write)(b"\n");
                    line.push(b'\n');
                    return line;
                }
                0x04 => return line,
                0x08 | 0x7f => {
                    if line.pop().is_some() {
                        (self.console.write)(b"\x08 \x08");
                    }
                }
                byte => {
                    if line.len() + 1 < MAX_CONSOLE_LINE {
                        line.push(byte);
                        (self.console.write)(&[byte]);
                    }
                }
            }
        }
    }

    fn read_console(&self, buffer: &mut [u8]) -> usize {
        if self.console_pending.lock().is_empty() {
            let line = self.read_console_line();
            self.console_pending.lock().extend_from_slice(&line);
        }
        let mut pending = self.console_pending.lock();
        let count = buffer.len().min(pending.len());
        buffer[..count].copy_from_slice(&pending[..count]);
        pending.drain(..count);
        count
    }
}

/// Reads from a block device at a byte offset: at most to its end and [`MAX_BLOCK_TRANSFER`].
pub fn read_block_device(device: &dyn BlockDevice, offset: u64, buffer: &mut [u8]) -> Result<usize> {
    let size = device.size_bytes();
    if offset >= size || buffer.is_empty() {
        return Ok(0);
    }
    let count = buffer.len().min((size - offset).min(MAX_BLOCK_TRANSFER as u64) as usize);
    device.read_bytes(offset, &mut buffer[..count])?;
    Ok(count)
}

/// Writes to a block device at a byte offset, reading the partly covered blocks at either
/// end first. `ENOSPC` at or past the end, `EROFS` on a read-only device.
pub fn write_block_device(device: &dyn BlockDevice, offset: u64, data: &[u8]) -> Result<usize> {
    if device.is_read_only() {
        return Err(Errno::EROFS);
    }
    if data.is_empty() {
        return Ok(0);
    }
    let size = device.size_bytes();
    if offset >= size {
        return Err(Errno::ENOSPC);
    }
    let count = data.len().min((size - offset).min(MAX_BLOCK_TRANSFER as u64) as usize);
    let block_size = device.block_size() as u64;
    let first_block = offset / block_size;
    let end = offset + count as u64;
    let last_block = (end - 1) / block_size;
    let mut scratch = vec![0u8; ((last_block - first_block + 1) * block_size) as usize];
    let start = (offset - first_block * block_size) as usize;
    if start != 0 {
        device.read_blocks(first_block, &mut scratch[..block_size as usize])?;
    }
    if !end.is_multiple_of(block_size) && (last_block != first_block || start == 0) {
        let tail = scratch.len() - block_size as usize;
        device.read_blocks(last_block, &mut scratch[tail..])?;
    }
    scratch[start..start + count].copy_from_slice(&data[..count]);
    device.write_blocks(first_block, &scratch)?;
    Ok(count)
}

impl FileSystem for DevFs {
    fn type_name(&self) -> &'static str {
        "devtmpfs"
    }
    fn root(&self) -> InodeNumber {
        ROOT_INODE
    }
    fn dentries_may_change(&self) -> bool {
        true
    }
    fn statistics(&self) -> Result<FileSystemStatistics> {
        Ok(FileSystemStatistics { block_size: 4096, name_length: 255, ..FileSystemStatistics::default() })
    }
    fn metadata(&self, inode: InodeNumber) -> Result<Metadata> {
        let (kind, permissions, rdev, links) = match self.node(inode)? {
            Node::Root => (FileType::Directory, 0o755, DeviceNumber::default(), 2),
            Node::Character(node) => (FileType::CharacterDevice, node.permissions, node.number, 1),
            Node::Block(name) => {
                let entry = find_block_device(&name)?;
                (FileType::BlockDevice, 0o660, DeviceNumber::new(entry.major, entry.minor), 1)
            }
        };
        Ok(Metadata {
            inode,
            kind,
            permissions,
            links,
            uid: 0,
            gid: 0,
            size: 0,
            blocks: 0,
            block_size: 4096,
            access_time: self.created,
            modification_time: self.created,
            change_time: self.created,
            device: 0,
            rdev,
        })
    }
    fn set_metadata(&self, _inode: InodeNumber, _changes: &MetadataChanges) -> Result<()> {
        Err(Errno::EPERM)
    }
    fn lookup(&self, directory: InodeNumber, name: &str) -> Result<InodeNumber> {
        if !matches!(self.node(directory)?, Node::Root) {
            return Err(Errno::ENOTDIR);
        }
        if name == "." || name == ".." {
            return Ok(ROOT_INODE);
        }
        if let Some(index) = CHARACTER_DEVICES.iter().position(|node| node.name == name) {
            return Ok(character_inode(index));
        }
        find_block_device(name)?;
        Ok(self.block_inode(name))
    }
    fn read_directory(&self, directory: InodeNumber) -> Result<Vec<DirectoryEntry>> {
        if !matches!(self.node(directory)?, Node::Root) {
            return Err(Errno::ENOTDIR);
        }
        let mut entries = vec![
            DirectoryEntry { name: ".".into(), inode: ROOT_INODE, kind: FileType::Directory },
            DirectoryEntry { name: "..".into(), inode: ROOT_INODE, kind: FileType::Directory },
        ];
        for (index, node) in CHARACTER_DEVICES.iter().enumerate() {
            entries.push(DirectoryEntry { name: node.name.into(), inode: character_inode(index), kind: FileType::CharacterDevice });
        }
        for entry in crate::block::registered_devices() {
            let name = String::from(entry.device.name());
            let inode = self.block_inode(&name);
            entries.push(DirectoryEntry { name, inode, kind: FileType::BlockDevice });
        }
        Ok(entries)
    }
    fn create(
        &self,
        _directory: InodeNumber,
        _name: &str,
        _kind: FileType,
        _permissions: u16,
        _uid: u32,
        _gid: u32,
    ) -> Result<InodeNumber> {
        Err(Errno::EPERM)
    }
    fn symlink(&self, _directory: InodeNumber, _name: &str, _target: &str, _uid: u32, _gid: u32) -> Result<InodeNumber> {
        Err(Errno::EPERM)
    }
    fn link(&self, _directory: InodeNumber, _name: &str, _inode: InodeNumber) -> Result<()> {
        Err(Errno::EPERM)
    }
    fn unlink(&self, _directory: InodeNumber, _name: &str) -> Result<InodeNumber> {
        Err(Errno::EPERM)
    }
    fn rmdir(&self, _directory: InodeNumber, _name: &str) -> Result<InodeNumber> {
        Err(Errno::EPERM)
    }
    fn rename(
        &self,
        _old_directory: InodeNumber,
        _old_name: &str,
        _new_directory: InodeNumber,
        _new_name: &str,
    ) -> Result<Option<InodeNumber>> {
        Err(Errno::EPERM)
    }
    fn read(&self, inode: InodeNumber, offset: u64, buffer: &mut [u8]) -> Result<usize> {
        match self.node(inode)? {
            Node::Root => Err(Errno::EISDIR),
            Node::Character(node) => Ok(match node.kind {
                CharacterKind::Null => 0,
                CharacterKind::Zero | CharacterKind::Full => {
                    buffer.fill(0);
                    buffer.len()
                }
                CharacterKind::Random | CharacterKind::Urandom => {
                    crate::random::get_random_bytes(buffer);
                    buffer.len()
                }
                CharacterKind::Console => {
                    if buffer.is_empty() {
                        0
                    } else {
                        self.read_console(buffer)
                    }
                }
            }),
            Node::Block(name) => read_block_device(&*find_block_device(&name)?.device, offset, buffer),
        }
    }
    fn write(&self, inode: InodeNumber, offset: u64, data: &[u8]) -> Result<usize> {
        match self.node(inode)? {
            Node::Root => Err(Errno::EISDIR),
            Node::Character(node) => match node.kind {
                CharacterKind::Null | CharacterKind::Zero => Ok(data.len()),
                CharacterKind::Full => Err(Errno::ENOSPC),
                CharacterKind::Random | CharacterKind::Urandom => {
                    crate::random::add_device_randomness(data);
                    Ok(data.len())
                }
                CharacterKind::Console => {
                    (self.console.write)(data);
                    Ok(data.len())
                }
            },
            Node::Block(name) => write_block_device(&*find_block_device(&name)?.device, offset, data),
        }
    }
    fn truncate(&self, inode: InodeNumber, _size: u64) -> Result<()> {
        match self.node(inode)? {
            Node::Root => Err(Errno::EISDIR),
            _ => Ok(()),
        }
    }
    fn readlink(&self, _inode: InodeNumber) -> Result<String> {
        Err(Errno::EINVAL)
    }
    fn release(&self, _inode: InodeNumber) -> Result<()> {
        Ok(())
    }
    fn fsync(&self, inode: InodeNumber) -> Result<()> {
        match self.node(inode)? {
            Node::Block(name) => find_block_device(&name)?.device.flush(),
            _ => Ok(()),
        }
    }
    fn sync(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{RamDisk, RegisteredDevice};
    use crate::fs::ramfs::RamFs;
    use crate::fs::vfs::{OpenFlags, Vfs};
    use alloc::sync::Arc;
    use std::sync::Mutex;

    static PRINTED: Mutex<Vec<u8>> = Mutex::new(Vec::new());
    static TYPED: Mutex<Vec<u8>> = Mutex::new(Vec::new());

    fn test_write(bytes: &[u8]) {
        PRINTED.lock().unwrap().extend_from_slice(bytes);
    }

    fn test_read_byte() -> u8 {
        let mut typed = TYPED.lock().unwrap();
        if typed.is_empty() {
            0x04
        } else {
            typed.remove(0)
        }
    }

    fn vfs_with_dev() -> Vfs {
        let vfs = Vfs::new();
        vfs.mount("rootfs", "/", Arc::new(RamFs::new(|| 0, 1 << 20)), false).unwrap();
        vfs.mkdir(None, "/dev", 0o755).unwrap();
        vfs.mount("devtmpfs", "/dev", Arc::new(DevFs::new(ConsoleOperations { write: test_write, read_byte: test_read_byte }, 0)), false)
            .unwrap();
        vfs
    }

    fn read(vfs: &Vfs, path: &str, length: usize) -> crate::errno::Result<Vec<u8>> {
        let file = vfs.open(None, path, OpenFlags::READ_ONLY, 0)?;
        let mut buffer = vec![0xaa; length];
        let count = vfs.read(&file, &mut buffer)?;
        buffer.truncate(count);
        Ok(buffer)
    }

    #[test]
    fn memory_devices_behave_like_linux() {
        let vfs = vfs_with_dev();
        assert_eq!(read(&vfs, "/dev/null", 16).unwrap(), b"");
        assert_eq!(read(&vfs, "/dev/zero", 16).unwrap(), [0; 16]);
        assert_eq!(read(&vfs, "/dev/full", 8).unwrap(), [0; 8]);
        vfs.write_file(None, "/dev/null", b"discarded", false).unwrap();
        vfs.write_file(None, "/dev/zero", b"discarded", false).unwrap();
        assert_eq!(vfs.write_file(None, "/dev/full", b"x", false), Err(Errno::ENOSPC));
        let first = read(&vfs, "/dev/urandom", 64).unwrap();
        let second = read(&vfs, "/dev/random", 64).unwrap();
        assert_eq!(first.len(), 64);
        assert_ne!(first, second);
        assert_ne!(first, vec![0xaa; 64]);
        vfs.write_file(None, "/dev/random", b"mixed in", false).unwrap();
        for (path, major, minor) in [
            ("/dev/null", 1, 3),
            ("/dev/zero", 1, 5),
            ("/dev/full", 1, 7),
            ("/dev/random", 1, 8),
            ("/dev/urandom", 1, 9),
            ("/dev/console", 5, 1),
        ] {
            let metadata = vfs.stat(None, path).unwrap();
            assert_eq!(metadata.kind, FileType::CharacterDevice, "{path}");
            assert_eq!(metadata.rdev, DeviceNumber::new(major, minor), "{path}");
        }
        assert_eq!(vfs.mkdir(None, "/dev/sub", 0o755), Err(Errno::EPERM));
        assert_eq!(vfs.unlink(None, "/dev/null"), Err(Errno::EPERM));
        assert_eq!(vfs.stat(None, "/dev/nothing").unwrap_err(), Errno::ENOENT);
    }

    #[test]
    fn console_writes_print_and_reads_return_a_typed_line() {
        let vfs = vfs_with_dev();
        vfs.write_file(None, "/dev/console", b"to the console\n", true).unwrap();
        assert!(PRINTED.lock().unwrap().ends_with(b"to the console\n"));
        TYPED.lock().unwrap().extend_from_slice(b"helo\x7flo there\rsecond\r");
        let file = vfs.open(None, "/dev/console", OpenFlags::READ_ONLY, 0).unwrap();
        let mut small = [0u8; 5];
        assert_eq!(vfs.read(&file, &mut small).unwrap(), 5);
        assert_eq!(&small, b"hello");
        let mut rest = [0u8; 64];
        let count = vfs.read(&file, &mut rest).unwrap();
        assert_eq!(&rest[..count], b" there\n", "the rest of the line, then the next read takes a new one");
        let count = vfs.read(&file, &mut rest).unwrap();
        assert_eq!(&rest[..count], b"second\n");
        assert_eq!(vfs.read(&file, &mut rest).unwrap(), 0, "Ctrl-D on an empty line is the end");
        assert!(PRINTED.lock().unwrap().windows(3).any(|window| window == b"\x08 \x08"), "backspace is echoed as erase");
    }

    #[test]
    fn block_devices_from_the_registry_are_readable_and_writable() {
        let disk = Arc::new(RamDisk::new("ram7", 512, 8));
        crate::block::register(RegisteredDevice { device: disk.clone(), queue: None, major: 1, minor: 7 }).unwrap();
        let vfs = vfs_with_dev();
        let names: Vec<String> = vfs.read_directory(None, "/dev").unwrap().into_iter().map(|entry| entry.name).collect();
        assert!(names.starts_with(&[".".into(), "..".into(), "null".into(), "zero".into()]), "{names:?}");
        assert!(names.contains(&"ram7".into()), "{names:?}");
        let metadata = vfs.stat(None, "/dev/ram7").unwrap();
        assert_eq!((metadata.kind, metadata.rdev), (FileType::BlockDevice, DeviceNumber::new(1, 7)));

        let file = vfs.open(None, "/dev/ram7", OpenFlags::READ_WRITE, 0).unwrap();
        let pattern: Vec<u8> = (0..700u32).map(|value| (value % 251) as u8).collect();
        assert_eq!(vfs.pwrite(&file, 300, &pattern).unwrap(), 700, "an unaligned write across blocks");
        let mut whole = vec![0u8; 4096];
        disk.read_blocks(0, &mut whole).unwrap();
        assert_eq!(&whole[300..1000], &pattern[..]);
        assert!(whole[..300].iter().chain(&whole[1000..]).all(|&byte| byte == 0), "bytes around the write are kept");
        vfs.pwrite(&file, 10, b"ab").unwrap();
        let mut back = [0u8; 4];
        assert_eq!(vfs.pread(&file, 9, &mut back).unwrap(), 4);
        assert_eq!(&back, &[0, b'a', b'b', 0]);
        assert_eq!(vfs.pread(&file, 4094, &mut back).unwrap(), 2, "reads stop at the end");
        assert_eq!(vfs.pread(&file, 4096, &mut back).unwrap(), 0);
        assert_eq!(vfs.pwrite(&file, 4094, b"xyz").unwrap(), 2, "writes stop at the end");
        assert_eq!(vfs.pwrite(&file, 4096, b"x"), Err(Errno::ENOSPC));
        assert_eq!(vfs.read_to_end(None, "/dev/ram7").unwrap(), {
            let mut expected = vec![0u8; 4096];
            disk.read_blocks(0, &mut expected).unwrap();
            expected
        });
        drop(file);

        crate::block::unregister("ram7").unwrap();
        assert_eq!(vfs.stat(None, "/dev/ram7").unwrap_err(), Errno::ENOENT, "a device that goes leaves /dev at once");
        assert!(!vfs.read_directory(None, "/dev").unwrap().iter().any(|entry| entry.name == "ram7"));
    }
}
