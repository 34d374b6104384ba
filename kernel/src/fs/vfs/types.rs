//! The VFS's value types: file types, metadata (`struct stat`), directory entries, open flags and file-system statistics.

use alloc::string::String;

/// An inode number within one file system.
pub type InodeNumber = u64;

/// Seconds since the epoch (since boot on a board without a real-time clock).
pub type Seconds = i64;

/// A clock the file systems stamp inodes with.
pub type Clock = fn() -> Seconds;

/// The kernel's clock for timestamps: seconds since the epoch, from the real-time clock
/// read at boot (since boot on a board without one).
pub fn current_time_seconds() -> Seconds {
    crate::time::real_time_seconds() as Seconds
}

/// What an inode is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    /// A regular file.
    Regular,
    /// A directory.
    Directory,
    /// A symbolic link.
    Symlink,
    /// A character device.
    CharacterDevice,
    /// A block device.
    BlockDevice,
    /// A named pipe.
    Fifo,
    /// A socket.
    Socket,
}

impl FileType {
    /// The `S_IFMT` bits.
    pub fn mode_bits(self) -> u32 {
        match self {
            FileType::Regular => 0o100000,
            FileType::Directory => 0o040000,
            FileType::Symlink => 0o120000,
            FileType::CharacterDevice => 0o020000,
            FileType::BlockDevice => 0o060000,
            FileType::Fifo => 0o010000,
            FileType::Socket => 0o140000,
        }
    }

    /// The type from `S_IFMT` bits.
    pub fn from_mode(mode: u32) -> Option<Self> {
        Some(match mode & 0o170000 {
            0o100000 => FileType::Regular,
            0o040000 => FileType::Directory,
            0o120000 => FileType::Symlink,
            0o020000 => FileType::CharacterDevice,
            0o060000 => FileType::BlockDevice,
            0o010000 => FileType::Fifo,
            0o140000 => FileType::Socket,
            _ => return None,
        })
    }

    /// The letter `ls -l` shows.
    pub fn letter(self) -> char {
        match self {
            FileType::Regular => '-',
            FileType::Directory => 'd',
            FileType::Symlink => 'l',
            FileType::CharacterDevice => 'c',
            FileType::BlockDevice => 'b',
            FileType::Fifo => 'p',
            FileType::Socket => 's',
        }
    }
}

/// An inode's attributes (`struct stat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metadata {
    /// Inode number.
    pub inode: InodeNumber,
    /// File type.
    pub kind: FileType,
    /// Permission bits (`0o7777`).
    pub permissions: u16,
    /// Hard links.
    pub links: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// 512-byte blocks allocated.
    pub blocks: u64,
    /// Preferred I/O size.
    pub block_size: u32,
    /// Last access.
    pub access_time: Seconds,
    /// Last modification of the contents.
    pub modification_time: Seconds,
    /// Last change of the inode.
    pub change_time: Seconds,
    /// The mount's device number (filled in by the VFS).
    pub device: u64,
    /// The device a character or block special file stands for (`st_rdev`).
    pub rdev: DeviceNumber,
}

/// A device's major and minor numbers (Linux's `dev_t`, Documentation/admin-guide/devices.txt).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeviceNumber {
    /// The driver class (1 memory devices and RAM disks, 5 the console, ...).
    pub major: u32,
    /// The instance within the class.
    pub minor: u32,
}

impl DeviceNumber {
    /// `major:minor`.
    pub const fn new(major: u32, minor: u32) -> Self {
        DeviceNumber { major, minor }
    }
}

impl Metadata {
    /// `st_mode`: type and permission bits.
    pub fn mode(&self) -> u32 {
        self.kind.mode_bits() | u32::from(self.permissions)
    }

    /// Whether this is a directory.
    pub fn is_directory(&self) -> bool {
        self.kind == FileType::Directory
    }
}

/// Attribute changes for `chmod`, `chown` and `utimes` (fields left `None` stay).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetadataChanges {
    /// New permission bits.
    pub permissions: Option<u16>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New access time.
    pub access_time: Option<Seconds>,
    /// New modification time.
    pub modification_time: Option<Seconds>,
}

/// One name in a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryEntry {
    /// The name.
    pub name: String,
    /// Its inode.
    pub inode: InodeNumber,
    /// Its type.
    pub kind: FileType,
}

/// `statfs` results.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileSystemStatistics {
    /// Block size in bytes.
    pub block_size: u64,
    /// Total blocks.
    pub blocks: u64,
    /// Free blocks.
    pub free_blocks: u64,
    /// Free blocks for unprivileged users.
    pub available_blocks: u64,
    /// Total inodes.
    pub inodes: u64,
    /// Free inodes.
    pub free_inodes: u64,
    /// Longest name.
    pub name_length: u64,
}

/// `open` flags with Linux's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpenFlags(pub u32);

impl OpenFlags {
    /// Read only.
    pub const READ_ONLY: OpenFlags = OpenFlags(0);
    /// Write only.
    pub const WRITE_ONLY: OpenFlags = OpenFlags(0o1);
    /// Read and write.
    pub const READ_WRITE: OpenFlags = OpenFlags(0o2);
    /// Create if missing (`O_CREAT`).
    pub const CREATE: OpenFlags = OpenFlags(0o100);
    /// With `CREATE`: fail if it exists (`O_EXCL`).
    pub const EXCLUSIVE: OpenFlags = OpenFlags(0o200);
    /// Truncate to zero length (`O_TRUNC`).
    pub const TRUNCATE: OpenFlags = OpenFlags(0o1000);
    /// Every write goes to the end (`O_APPEND`).
    pub const APPEND: OpenFlags = OpenFlags(0o2000);
    /// Fail unless a directory (`O_DIRECTORY`).
    pub const DIRECTORY: OpenFlags = OpenFlags(0o200000);
    /// Do not follow a final symbolic link (`O_NOFOLLOW`).
    pub const NO_FOLLOW: OpenFlags = OpenFlags(0o400000);

    /// Whether every bit of `other` is set.
    pub fn contains(self, other: OpenFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether reads are allowed.
    pub fn readable(self) -> bool {
        self.0 & 3 != 1
    }

    /// Whether writes are allowed.
    pub fn writable(self) -> bool {
        matches!(self.0 & 3, 1 | 2)
    }
}

impl core::ops::BitOr for OpenFlags {
    type Output = OpenFlags;
    fn bitor(self, other: OpenFlags) -> OpenFlags {
        OpenFlags(self.0 | other.0)
    }
}

/// Where `lseek` counts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeekFrom {
    /// From the start (`SEEK_SET`).
    Start(u64),
    /// From the current offset (`SEEK_CUR`).
    Current(i64),
    /// From the end (`SEEK_END`).
    End(i64),
}

/// Formats permission bits as `ls -l` does (`rwxr-xr-x`, with setuid/setgid/sticky letters).
pub fn format_permissions(permissions: u16) -> [u8; 9] {
    let mut text = *b"---------";
    for (index, letter) in b"rwxrwxrwx".iter().enumerate() {
        if permissions & (0o400 >> index) != 0 {
            text[index] = *letter;
        }
    }
    for (bit, index, lower) in [(0o4000, 2, b's'), (0o2000, 5, b's'), (0o1000, 8, b't')] {
        if permissions & bit != 0 {
            text[index] = if text[index] == b'x' { lower } else { lower.to_ascii_uppercase() };
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_modes() {
        let flags = OpenFlags::WRITE_ONLY | OpenFlags::CREATE | OpenFlags::APPEND;
        assert!(flags.writable() && !flags.readable() && flags.contains(OpenFlags::CREATE));
        assert!(OpenFlags::READ_WRITE.readable() && OpenFlags::READ_WRITE.writable());
        assert!(!OpenFlags::READ_ONLY.writable());
        assert_eq!(FileType::from_mode(0o120777), Some(FileType::Symlink));
        assert_eq!(FileType::from_mode(0o777), None);
        assert_eq!(&format_permissions(0o755), b"rwxr-xr-x");
        assert_eq!(&format_permissions(0o4644), b"rwSr--r--");
        assert_eq!(&format_permissions(0o1777), b"rwxrwxrwt");
    }
}
