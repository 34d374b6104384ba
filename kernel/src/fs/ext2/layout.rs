//! ext2's on-disk structures: the superblock, group descriptors, inodes and directory entries, with their field offsets and feature names.

use alloc::string::String;
use alloc::vec::Vec;

/// The superblock's magic number.
pub const EXT2_MAGIC: u16 = 0xef53;
/// Byte offset of the primary superblock.
pub const SUPERBLOCK_OFFSET: u64 = 1024;
/// Bytes of a superblock.
pub const SUPERBLOCK_SIZE: usize = 1024;
/// Bytes of a group descriptor (without the 64bit feature).
pub const GROUP_DESCRIPTOR_SIZE: usize = 32;
/// The root directory's inode.
pub const ROOT_INODE: u32 = 2;
/// Block pointers in an inode: 12 direct, then indirect, double and triple indirect.
pub const DIRECT_BLOCKS: usize = 12;
/// The superblock state bit for a cleanly unmounted file system.
pub const STATE_VALID: u16 = 1;
/// Inode flag: the directory has an htree index (cleared when we change it).
pub const INDEX_FLAG: u32 = 0x1000;

/// Incompatible feature: directory entries record the file type.
pub const INCOMPAT_FILETYPE: u32 = 0x2;
/// Read-only compatible feature: superblock backups only in groups 0, 1 and powers of 3, 5, 7.
pub const RO_COMPAT_SPARSE_SUPER: u32 = 0x1;
/// Read-only compatible feature: files may exceed 2 GiB.
pub const RO_COMPAT_LARGE_FILE: u32 = 0x2;
/// The incompatible features this driver supports.
pub const SUPPORTED_INCOMPAT: u32 = INCOMPAT_FILETYPE;
/// The read-only compatible features this driver supports for writing.
pub const SUPPORTED_RO_COMPAT: u32 = RO_COMPAT_SPARSE_SUPER | RO_COMPAT_LARGE_FILE;

const INCOMPAT_NAMES: [(u32, &str); 16] = [
    (0x1, "compression"),
    (0x2, "filetype"),
    (0x4, "needs_recovery"),
    (0x8, "journal_dev"),
    (0x10, "meta_bg"),
    (0x40, "extent"),
    (0x80, "64bit"),
    (0x100, "mmp"),
    (0x200, "flex_bg"),
    (0x400, "ea_inode"),
    (0x1000, "dirdata"),
    (0x2000, "metadata_csum_seed"),
    (0x4000, "large_dir"),
    (0x8000, "inline_data"),
    (0x10000, "encrypt"),
    (0x20000, "casefold"),
];

const RO_COMPAT_NAMES: [(u32, &str); 14] = [
    (0x1, "sparse_super"),
    (0x2, "large_file"),
    (0x4, "btree_dir"),
    (0x8, "huge_file"),
    (0x10, "uninit_bg"),
    (0x20, "dir_nlink"),
    (0x40, "extra_isize"),
    (0x100, "quota"),
    (0x200, "bigalloc"),
    (0x400, "metadata_csum"),
    (0x1000, "readonly"),
    (0x2000, "project"),
    (0x8000, "verity"),
    (0x10000, "orphan_present"),
];

fn feature_names(bits: u32, table: &[(u32, &str)]) -> String {
    let mut names = String::new();
    for bit in 0..32 {
        let mask = 1u32 << bit;
        if bits & mask == 0 {
            continue;
        }
        if !names.is_empty() {
            names.push(' ');
        }
        match table.iter().find(|(value, _)| *value == mask) {
            Some((_, name)) => names.push_str(name),
            None => names.push_str(&alloc::format!("FEATURE_{:#x}", mask)),
        }
    }
    names
}

/// Names of incompatible feature bits (`"extent 64bit"`).
pub fn incompat_names(bits: u32) -> String {
    feature_names(bits, &INCOMPAT_NAMES)
}

/// Names of read-only compatible feature bits.
pub fn ro_compat_names(bits: u32) -> String {
    feature_names(bits, &RO_COMPAT_NAMES)
}

/// Little-endian field access on a byte buffer.
pub trait Fields {
    /// The `u16` at `offset`.
    fn u16_at(&self, offset: usize) -> u16;
    /// The `u32` at `offset`.
    fn u32_at(&self, offset: usize) -> u32;
    /// Stores a `u16` at `offset`.
    fn set_u16(&mut self, offset: usize, value: u16);
    /// Stores a `u32` at `offset`.
    fn set_u32(&mut self, offset: usize, value: u32);
}

impl Fields for [u8] {
    fn u16_at(&self, offset: usize) -> u16 {
        u16::from_le_bytes([self[offset], self[offset + 1]])
    }
    fn u32_at(&self, offset: usize) -> u32 {
        u32::from_le_bytes([self[offset], self[offset + 1], self[offset + 2], self[offset + 3]])
    }
    fn set_u16(&mut self, offset: usize, value: u16) {
        self[offset..offset + 2].copy_from_slice(&value.to_le_bytes());
    }
    fn set_u32(&mut self, offset: usize, value: u32) {
        self[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
    }
}

impl Fields for Vec<u8> {
    fn u16_at(&self, offset: usize) -> u16 {
        self.as_slice().u16_at(offset)
    }
    fn u32_at(&self, offset: usize) -> u32 {
        self.as_slice().u32_at(offset)
    }
    fn set_u16(&mut self, offset: usize, value: u16) {
        self.as_mut_slice().set_u16(offset, value)
    }
    fn set_u32(&mut self, offset: usize, value: u32) {
        self.as_mut_slice().set_u32(offset, value)
    }
}

/// Superblock field offsets.
pub mod superblock {
    /// `s_inodes_count`.
    pub const INODES_COUNT: usize = 0;
    /// `s_blocks_count`.
    pub const BLOCKS_COUNT: usize = 4;
    /// `s_r_blocks_count`.
    pub const RESERVED_BLOCKS_COUNT: usize = 8;
    /// `s_free_blocks_count`.
    pub const FREE_BLOCKS_COUNT: usize = 12;
    /// `s_free_inodes_count`.
    pub const FREE_INODES_COUNT: usize = 16;
    /// `s_first_data_block`.
    pub const FIRST_DATA_BLOCK: usize = 20;
    /// `s_log_block_size`.
    pub const LOG_BLOCK_SIZE: usize = 24;
    /// `s_blocks_per_group`.
    pub const BLOCKS_PER_GROUP: usize = 32;
    /// `s_inodes_per_group`.
    pub const INODES_PER_GROUP: usize = 40;
    /// `s_mtime`.
    pub const MOUNT_TIME: usize = 44;
    /// `s_wtime`.
    pub const WRITE_TIME: usize = 48;
    /// `s_mnt_count`.
    pub const MOUNT_COUNT: usize = 52;
    /// `s_magic`.
    pub const MAGIC: usize = 56;
    /// `s_state`.
    pub const STATE: usize = 58;
    /// `s_rev_level`.
    pub const REVISION: usize = 76;
    /// `s_first_ino`.
    pub const FIRST_INODE: usize = 84;
    /// `s_inode_size`.
    pub const INODE_SIZE: usize = 88;
    /// `s_block_group_nr`.
    pub const BLOCK_GROUP_NUMBER: usize = 90;
    /// `s_feature_compat`.
    pub const FEATURE_COMPAT: usize = 92;
    /// `s_feature_incompat`.
    pub const FEATURE_INCOMPAT: usize = 96;
    /// `s_feature_ro_compat`.
    pub const FEATURE_RO_COMPAT: usize = 100;
}

/// Group descriptor field offsets.
pub mod group {
    /// `bg_block_bitmap`.
    pub const BLOCK_BITMAP: usize = 0;
    /// `bg_inode_bitmap`.
    pub const INODE_BITMAP: usize = 4;
    /// `bg_inode_table`.
    pub const INODE_TABLE: usize = 8;
    /// `bg_free_blocks_count`.
    pub const FREE_BLOCKS: usize = 12;
    /// `bg_free_inodes_count`.
    pub const FREE_INODES: usize = 14;
    /// `bg_used_dirs_count`.
    pub const USED_DIRECTORIES: usize = 16;
}

/// Inode field offsets.
pub mod inode {
    /// `i_mode`.
    pub const MODE: usize = 0;
    /// `i_uid` (low 16 bits).
    pub const UID: usize = 2;
    /// `i_size` (low 32 bits).
    pub const SIZE: usize = 4;
    /// `i_atime`.
    pub const ACCESS_TIME: usize = 8;
    /// `i_ctime`.
    pub const CHANGE_TIME: usize = 12;
    /// `i_mtime`.
    pub const MODIFICATION_TIME: usize = 16;
    /// `i_dtime`.
    pub const DELETION_TIME: usize = 20;
    /// `i_gid` (low 16 bits).
    pub const GID: usize = 24;
    /// `i_links_count`.
    pub const LINKS: usize = 26;
    /// `i_blocks` (512-byte units).
    pub const BLOCKS: usize = 28;
    /// `i_flags`.
    pub const FLAGS: usize = 32;
    /// `i_block[15]`.
    pub const BLOCK: usize = 40;
    /// `i_file_acl`.
    pub const FILE_ACL: usize = 104;
    /// `i_size_high` (`i_dir_acl` in revision 0).
    pub const SIZE_HIGH: usize = 108;
    /// `l_i_uid_high`.
    pub const UID_HIGH: usize = 120;
    /// `l_i_gid_high`.
    pub const GID_HIGH: usize = 122;
    /// `i_extra_isize` (inodes larger than 128 bytes).
    pub const EXTRA_SIZE: usize = 128;
}

/// Directory entry file-type codes (the filetype feature).
pub fn directory_type_code(kind: crate::fs::vfs::FileType) -> u8 {
    use crate::fs::vfs::FileType;
    match kind {
        FileType::Regular => 1,
        FileType::Directory => 2,
        FileType::CharacterDevice => 3,
        FileType::BlockDevice => 4,
        FileType::Fifo => 5,
        FileType::Socket => 6,
        FileType::Symlink => 7,
    }
}

/// Whether group `group` holds a superblock backup under sparse_super (0, 1, powers of 3, 5, 7).
pub fn has_superblock_backup(group: u32, sparse_super: bool) -> bool {
    if !sparse_super || group <= 1 {
        return true;
    }
    [3u32, 5, 7].iter().any(|&base| {
        let mut power = base;
        while power < group {
            power = power.saturating_mul(base);
        }
        power == group
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_super_groups_and_feature_names() {
        let groups: Vec<u32> = (0..60).filter(|&group| has_superblock_backup(group, true)).collect();
        assert_eq!(groups, [0, 1, 3, 5, 7, 9, 25, 27, 49]);
        assert!(has_superblock_backup(11, false));
        assert_eq!(incompat_names(0xc0), "extent 64bit");
        assert_eq!(ro_compat_names(0x20 | 0x1_0000_0), "dir_nlink FEATURE_0x100000");
    }
}
