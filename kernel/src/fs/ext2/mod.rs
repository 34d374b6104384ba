//! ext2 (revision 1), read-write: block groups, bitmaps, inode tables, direct and indirect block maps, variable-length directory entries, over the page cache.
//!
//! Every number read from the disk is checked before use: a bad superblock or group
//! descriptor refuses the mount (nothing is written), and corruption found later (a block
//! number out of range, a directory entry whose `rec_len` is 0 or runs past its block, an
//! inode number past the count) fails the operation with `EUCLEAN` and a log message.

#[cfg(any(test, feature = "fuzzing"))]
pub mod exercise;
pub mod layout;

use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use layout::*;

use super::page_cache::PageCache;
use super::vfs::{
    Clock, DirectoryEntry, Errno, FileSystem, FileSystemStatistics, FileType, InodeNumber, Metadata, MetadataChanges, Result,
};
use crate::sync::Mutex;

/// Why a mount was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountError {
    /// The error number `mount` returns.
    pub errno: Errno,
    /// What was wrong, for the log and the shell.
    pub message: String,
}

impl fmt::Display for MountError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{} ({})", self.message, self.errno)
    }
}

fn refuse(errno: Errno, message: String) -> MountError {
    MountError { errno, message }
}

fn corrupt(what: fmt::Arguments<'_>) -> Errno {
    log::error!("EXT2-fs error: {}", what);
    Errno::EUCLEAN
}

/// Most links one inode may have (`EXT2_LINK_MAX`).
pub const LINK_MAX: u16 = 32000;
/// Most blocks a directory may have (larger sizes are treated as corruption).
pub const MAX_DIRECTORY_BLOCKS: u64 = 65536;
/// Longest fast symlink target (stored in `i_block`).
const FAST_SYMLINK_MAX: usize = 59;

/// The geometry the superblock describes, validated.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    block_size: u64,
    blocks_count: u32,
    inodes_count: u32,
    first_data_block: u32,
    blocks_per_group: u32,
    inodes_per_group: u32,
    inode_size: u32,
    first_inode: u32,
    group_count: u32,
    sparse_super: bool,
    filetype: bool,
}

impl Geometry {
    fn pointers_per_block(&self) -> u64 {
        self.block_size / 4
    }
    fn group_of_block(&self, block: u32) -> u32 {
        (block - self.first_data_block) / self.blocks_per_group
    }
    fn group_first_block(&self, group: u32) -> u32 {
        self.first_data_block + group * self.blocks_per_group
    }
    fn blocks_in_group(&self, group: u32) -> u32 {
        (self.blocks_count - self.group_first_block(group)).min(self.blocks_per_group)
    }
    fn sectors_per_block(&self) -> u32 {
        (self.block_size / 512) as u32
    }
    fn descriptor_blocks(&self) -> u64 {
        (u64::from(self.group_count) * GROUP_DESCRIPTOR_SIZE as u64).div_ceil(self.block_size)
    }
}

/// An inode as stored: the raw bytes (so fields we do not interpret survive a rewrite).
#[derive(Clone)]
struct Inode {
    number: u32,
    raw: Vec<u8>,
}

impl Inode {
    fn mode(&self) -> u16 {
        self.raw.u16_at(inode::MODE)
    }
    fn kind(&self) -> Option<FileType> {
        FileType::from_mode(u32::from(self.mode()))
    }
    fn size(&self) -> u64 {
        let low = u64::from(self.raw.u32_at(inode::SIZE));
        if self.kind() == Some(FileType::Regular) {
            low | (u64::from(self.raw.u32_at(inode::SIZE_HIGH)) << 32)
        } else {
            low
        }
    }
    fn set_size(&mut self, size: u64) {
        self.raw.set_u32(inode::SIZE, size as u32);
        if self.kind() == Some(FileType::Regular) {
            self.raw.set_u32(inode::SIZE_HIGH, (size >> 32) as u32);
        }
    }
    fn links(&self) -> u16 {
        self.raw.u16_at(inode::LINKS)
    }
    fn set_links(&mut self, links: u16) {
        self.raw.set_u16(inode::LINKS, links);
    }
    fn block_pointer(&self, index: usize) -> u32 {
        self.raw.u32_at(inode::BLOCK + index * 4)
    }
    fn set_block_pointer(&mut self, index: usize, block: u32) {
        self.raw.set_u32(inode::BLOCK + index * 4, block);
    }
    fn sectors(&self) -> u32 {
        self.raw.u32_at(inode::BLOCKS)
    }
    fn add_sectors(&mut self, delta: i64) {
        let value = (i64::from(self.sectors()) + delta).max(0);
        self.raw.set_u32(inode::BLOCKS, value as u32);
    }
    fn uid(&self) -> u32 {
        u32::from(self.raw.u16_at(inode::UID)) | (u32::from(self.raw.u16_at(inode::UID_HIGH)) << 16)
    }
    fn gid(&self) -> u32 {
        u32::from(self.raw.u16_at(inode::GID)) | (u32::from(self.raw.u16_at(inode::GID_HIGH)) << 16)
    }
    fn set_owner(&mut self, uid: u32, gid: u32) {
        self.raw.set_u16(inode::UID, uid as u16);
        self.raw.set_u16(inode::UID_HIGH, (uid >> 16) as u16);
        self.raw.set_u16(inode::GID, gid as u16);
        self.raw.set_u16(inode::GID_HIGH, (gid >> 16) as u16);
    }
    fn touch(&mut self, offset: usize, now: i64) {
        self.raw.set_u32(offset, now as u32);
    }
    fn is_fast_symlink(&self, block_size: u64) -> bool {
        let acl_sectors = if self.raw.u32_at(inode::FILE_ACL) != 0 { (block_size / 512) as u32 } else { 0 };
        self.kind() == Some(FileType::Symlink) && self.sectors() == acl_sectors
    }
}

/// One parsed directory entry and where it is.
#[derive(Debug, Clone)]
struct RawEntry {
    logical_block: u64,
    offset: usize,
    inode: u32,
    record_length: usize,
    name_length: usize,
    name: Vec<u8>,
}

/// A directory entry as it lies in its block, the name borrowed from the block.
struct EntryView<'a> {
    logical_block: u64,
    offset: usize,
    inode: u32,
    record_length: usize,
    name_length: usize,
    type_code: u8,
    name: &'a [u8],
}

impl EntryView<'_> {
    fn to_raw(&self) -> RawEntry {
        RawEntry {
            logical_block: self.logical_block,
            offset: self.offset,
            inode: self.inode,
            record_length: self.record_length,
            name_length: self.name_length,
            name: self.name.to_vec(),
        }
    }
}

fn entry_length(name_length: usize) -> usize {
    (8 + name_length + 3) & !3
}

/// Inodes the mount keeps parsed in memory (slots of [`State::inodes`]).
pub const INODE_CACHE_SLOTS: usize = 2048;
/// Directories whose last lookup position is remembered ([`State::find_entry`]).
const LOOKUP_HINTS: usize = 64;

/// Where a logical block's pointer is: the `i_block` slot, then the index into each level
/// of indirect block (`depth` of them).
struct BlockPath {
    slot: usize,
    indexes: [u64; 3],
    depth: usize,
}

impl BlockPath {
    fn indexes(&self) -> &[u64] {
        &self.indexes[..self.depth]
    }
}

struct State {
    cache: Arc<PageCache>,
    geometry: Geometry,
    superblock: Vec<u8>,
    groups: Vec<u8>,
    read_only: bool,
    clock: Clock,
    /// Copies of inodes as they are in the inode table, so reading one (a `stat`, each
    /// file operation) needs no page-cache lookup: direct-mapped, inode `n` in slot
    /// `n % INODE_CACHE_SLOTS`. Every inode write goes through [`State::write_inode`],
    /// which updates the copy, so it never differs from the table.
    inodes: Vec<Option<Inode>>,
    /// Per directory (direct-mapped by inode number): the logical block where its last
    /// successful lookup found the name. Only a starting point: a scan visits every block.
    lookup_hints: [(u32, u64); LOOKUP_HINTS],
}

/// A mounted ext2 file system.
pub struct Ext2 {
    /// A sleeping lock: block reads and writes under it may wait for the disk.
    state: Mutex<State>,
    read_only: bool,
    read_only_reason: Option<String>,
}

impl State {
    fn now(&self) -> i64 {
        (self.clock)()
    }

    fn check_block(&self, block: u32, what: &str) -> Result<u32> {
        if block < self.geometry.first_data_block || block >= self.geometry.blocks_count {
            return Err(corrupt(format_args!(
                "{} block {} out of range (blocks {}..{})",
                what, block, self.geometry.first_data_block, self.geometry.blocks_count
            )));
        }
        Ok(block)
    }

    /// Whether `block` holds its group's metadata: the superblock and descriptor copy (in
    /// groups with one), the bitmaps or the inode table. No file, directory or indirect
    /// block may point there; a bitmap that marks one free is corrupt.
    fn is_metadata_block(&self, block: u32) -> bool {
        if block < self.geometry.first_data_block {
            return false;
        }
        let group = self.geometry.group_of_block(block);
        if group >= self.geometry.group_count {
            return false;
        }
        let first = self.geometry.group_first_block(group);
        if has_superblock_backup(group, self.geometry.sparse_super) && u64::from(block - first) < 1 + self.geometry.descriptor_blocks() {
            return true;
        }
        let table = self.group_field(group, group::INODE_TABLE);
        let table_blocks =
            (u64::from(self.geometry.inodes_per_group) * u64::from(self.geometry.inode_size)).div_ceil(self.geometry.block_size);
        block == self.group_field(group, group::BLOCK_BITMAP)
            || block == self.group_field(group, group::INODE_BITMAP)
            || (block >= table && u64::from(block - table) < table_blocks)
    }

    /// [`Self::check_block`] for a block a file or directory points to: in range and not metadata.
    fn check_data_block(&self, block: u32, what: &str) -> Result<u32> {
        self.check_block(block, what)?;
        if self.is_metadata_block(block) {
            return Err(corrupt(format_args!("{} block {} is metadata of group {}", what, block, self.geometry.group_of_block(block))));
        }
        Ok(block)
    }

    fn read_block(&self, block: u32) -> Result<Vec<u8>> {
        let mut data = vec![0u8; self.geometry.block_size as usize];
        self.cache.read(u64::from(block) * self.geometry.block_size, &mut data)?;
        Ok(data)
    }

    fn write_block(&self, block: u32, data: &[u8]) -> Result<()> {
        self.cache.write(u64::from(block) * self.geometry.block_size, data)
    }

    // ---- group descriptors and superblock -----------------------------------------------

    fn group_field(&self, group: u32, offset: usize) -> u32 {
        let base = group as usize * GROUP_DESCRIPTOR_SIZE;
        if offset >= 12 {
            u32::from(self.groups.u16_at(base + offset))
        } else {
            self.groups.u32_at(base + offset)
        }
    }

    fn adjust_group(&mut self, group: u32, offset: usize, delta: i32) {
        let base = group as usize * GROUP_DESCRIPTOR_SIZE + offset;
        let value = (i32::from(self.groups.u16_at(base)) + delta).max(0);
        self.groups.set_u16(base, value as u16);
    }

    fn adjust_superblock(&mut self, offset: usize, delta: i64) {
        let value = (i64::from(self.superblock.u32_at(offset)) + delta).max(0);
        self.superblock.set_u32(offset, value as u32);
    }

    /// Writes the primary superblock and group descriptors into the cache.
    fn write_metadata(&mut self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        let now = self.now();
        self.superblock.set_u32(superblock::WRITE_TIME, now as u32);
        self.superblock.set_u16(superblock::BLOCK_GROUP_NUMBER, 0);
        self.cache.write(SUPERBLOCK_OFFSET, &self.superblock)?;
        let table = u64::from(self.geometry.first_data_block + 1) * self.geometry.block_size;
        self.cache.write(table, &self.groups)
    }

    /// Writes the superblock and descriptor backups (sparse_super groups).
    fn write_backups(&mut self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        for group in 1..self.geometry.group_count {
            if !has_superblock_backup(group, self.geometry.sparse_super) {
                continue;
            }
            let first = u64::from(self.geometry.group_first_block(group));
            let mut copy = self.superblock.clone();
            copy.set_u16(superblock::BLOCK_GROUP_NUMBER, group as u16);
            self.cache.write(first * self.geometry.block_size, &copy)?;
            self.cache.write((first + 1) * self.geometry.block_size, &self.groups)?;
        }
        Ok(())
    }

    // ---- inodes ----------------------------------------------------------------------------

    fn inode_position(&self, number: u32) -> Result<u64> {
        if number == 0 || number > self.geometry.inodes_count {
            return Err(corrupt(format_args!("inode number {} out of range (1..={})", number, self.geometry.inodes_count)));
        }
        let group = (number - 1) / self.geometry.inodes_per_group;
        let index = u64::from((number - 1) % self.geometry.inodes_per_group);
        let table = u64::from(self.group_field(group, group::INODE_TABLE));
        Ok(table * self.geometry.block_size + index * u64::from(self.geometry.inode_size))
    }

    /// The inode-table bytes of inode `number`, from the inode cache or the page cache.
    fn cached_inode(&mut self, number: u32) -> Result<&Inode> {
        let position = self.inode_position(number)?;
        let slot = number as usize % INODE_CACHE_SLOTS;
        if self.inodes[slot].as_ref().is_none_or(|cached| cached.number != number) {
            let mut raw = vec![0u8; self.geometry.inode_size as usize];
            self.cache.read(position, &mut raw)?;
            self.inodes[slot] = Some(Inode { number, raw });
        }
        self.inodes[slot].as_ref().ok_or(Errno::EIO)
    }

    fn read_inode_raw(&mut self, number: u32) -> Result<Inode> {
        self.cached_inode(number).cloned()
    }

    /// An inode that a name or handle refers to, checked to be in use.
    fn inode_in_use(&mut self, number: u32) -> Result<&Inode> {
        let inode = self.cached_inode(number)?;
        if inode.kind().is_none() || (inode.links() == 0 && inode.raw.u32_at(inode::DELETION_TIME) != 0) {
            return Err(corrupt(format_args!("inode {} is not in use (mode {:#o})", number, inode.mode())));
        }
        Ok(inode)
    }

    /// Reads an inode that a name or handle refers to: it must be in use.
    fn read_inode(&mut self, number: u32) -> Result<Inode> {
        self.inode_in_use(number).cloned()
    }

    fn write_inode(&mut self, inode: &Inode) -> Result<()> {
        let position = self.inode_position(inode.number)?;
        let slot = inode.number as usize % INODE_CACHE_SLOTS;
        match self.cache.write(position, &inode.raw) {
            Ok(()) => {
                match &mut self.inodes[slot] {
                    Some(cached) if cached.number == inode.number => cached.raw.copy_from_slice(&inode.raw),
                    other => *other = Some(inode.clone()),
                }
                Ok(())
            }
            Err(error) => {
                // The table may hold part of the write: read it again next time.
                self.inodes[slot] = None;
                Err(error)
            }
        }
    }

    // ---- allocation ---------------------------------------------------------------------

    fn find_clear_bit(bitmap: &[u8], limit: u32, start: u32) -> Option<u32> {
        (start..limit).find(|&bit| bitmap[(bit / 8) as usize] & (1 << (bit % 8)) == 0)
    }

    fn allocate_block(&mut self, goal_group: u32) -> Result<u32> {
        let groups = self.geometry.group_count;
        for step in 0..groups {
            let group = (goal_group + step) % groups;
            if self.group_field(group, group::FREE_BLOCKS) == 0 {
                continue;
            }
            let bitmap_block = self.group_field(group, group::BLOCK_BITMAP);
            let mut bitmap = self.read_block(bitmap_block)?;
            let Some(bit) = Self::find_clear_bit(&bitmap, self.geometry.blocks_in_group(group), 0) else {
                return Err(corrupt(format_args!("group {} claims free blocks but its bitmap is full", group)));
            };
            let block = self.geometry.group_first_block(group) + bit;
            if self.is_metadata_block(block) || block >= self.geometry.blocks_count {
                return Err(corrupt(format_args!("group {} bitmap marks block {} free, which is metadata", group, block)));
            }
            bitmap[(bit / 8) as usize] |= 1 << (bit % 8);
            self.write_block(bitmap_block, &bitmap)?;
            self.adjust_group(group, group::FREE_BLOCKS, -1);
            self.adjust_superblock(superblock::FREE_BLOCKS_COUNT, -1);
            self.write_block(block, &vec![0u8; self.geometry.block_size as usize])?;
            return Ok(block);
        }
        Err(Errno::ENOSPC)
    }

    fn free_block(&mut self, block: u32) -> Result<()> {
        self.check_data_block(block, "freed")?;
        let group = self.geometry.group_of_block(block);
        let bit = block - self.geometry.group_first_block(group);
        let bitmap_block = self.group_field(group, group::BLOCK_BITMAP);
        let mut bitmap = self.read_block(bitmap_block)?;
        let mask = 1u8 << (bit % 8);
        if bitmap[(bit / 8) as usize] & mask == 0 {
            return Err(corrupt(format_args!("freeing block {} which is already free", block)));
        }
        bitmap[(bit / 8) as usize] &= !mask;
        self.write_block(bitmap_block, &bitmap)?;
        self.adjust_group(group, group::FREE_BLOCKS, 1);
        self.adjust_superblock(superblock::FREE_BLOCKS_COUNT, 1);
        Ok(())
    }

    fn choose_inode_group(&self, parent_group: u32, directory: bool) -> Option<u32> {
        let groups = self.geometry.group_count;
        let has_inodes = |group: u32| self.group_field(group, group::FREE_INODES) > 0;
        if directory {
            // Spread directories: the group with free inodes and the most free blocks.
            let average = self.superblock.u32_at(superblock::FREE_BLOCKS_COUNT) / groups;
            let preferred = (0..groups)
                .map(|step| (parent_group + step) % groups)
                .filter(|&group| has_inodes(group) && self.group_field(group, group::FREE_BLOCKS) >= average);
            if let Some(group) = preferred.max_by_key(|&group| {
                (self.group_field(group, group::FREE_BLOCKS), u32::MAX - self.group_field(group, group::USED_DIRECTORIES))
            }) {
                return Some(group);
            }
        }
        (0..groups).map(|step| (parent_group + step) % groups).find(|&group| has_inodes(group))
    }

    fn allocate_inode(&mut self, parent: u32, directory: bool) -> Result<u32> {
        let parent_group = (parent - 1) / self.geometry.inodes_per_group;
        let group = self.choose_inode_group(parent_group, directory).ok_or(Errno::ENOSPC)?;
        let bitmap_block = self.group_field(group, group::INODE_BITMAP);
        let mut bitmap = self.read_block(bitmap_block)?;
        let first_allowed = self.geometry.first_inode.saturating_sub(group * self.geometry.inodes_per_group + 1);
        let Some(bit) = Self::find_clear_bit(&bitmap, self.geometry.inodes_per_group, first_allowed.min(self.geometry.inodes_per_group))
        else {
            return Err(corrupt(format_args!("group {} claims free inodes but its bitmap is full", group)));
        };
        bitmap[(bit / 8) as usize] |= 1 << (bit % 8);
        self.write_block(bitmap_block, &bitmap)?;
        self.adjust_group(group, group::FREE_INODES, -1);
        self.adjust_superblock(superblock::FREE_INODES_COUNT, -1);
        if directory {
            self.adjust_group(group, group::USED_DIRECTORIES, 1);
        }
        Ok(group * self.geometry.inodes_per_group + bit + 1)
    }

    fn free_inode(&mut self, number: u32, directory: bool) -> Result<()> {
        let group = (number - 1) / self.geometry.inodes_per_group;
        let bit = (number - 1) % self.geometry.inodes_per_group;
        let bitmap_block = self.group_field(group, group::INODE_BITMAP);
        let mut bitmap = self.read_block(bitmap_block)?;
        let mask = 1u8 << (bit % 8);
        if bitmap[(bit / 8) as usize] & mask == 0 {
            return Err(corrupt(format_args!("freeing inode {} which is already free", number)));
        }
        bitmap[(bit / 8) as usize] &= !mask;
        self.write_block(bitmap_block, &bitmap)?;
        self.adjust_group(group, group::FREE_INODES, 1);
        self.adjust_superblock(superblock::FREE_INODES_COUNT, 1);
        if directory {
            self.adjust_group(group, group::USED_DIRECTORIES, -1);
        }
        Ok(())
    }

    fn new_inode(&mut self, parent: u32, kind: FileType, permissions: u16, uid: u32, gid: u32) -> Result<Inode> {
        let number = self.allocate_inode(parent, kind == FileType::Directory)?;
        let mut inode = Inode { number, raw: vec![0u8; self.geometry.inode_size as usize] };
        inode.raw.set_u16(inode::MODE, (kind.mode_bits() as u16) | (permissions & 0o7777));
        inode.set_owner(uid, gid);
        let now = self.now();
        for offset in [inode::ACCESS_TIME, inode::CHANGE_TIME, inode::MODIFICATION_TIME] {
            inode.touch(offset, now);
        }
        inode.set_links(1);
        if self.geometry.inode_size >= 160 {
            inode.raw.set_u16(inode::EXTRA_SIZE, 32);
        }
        Ok(inode)
    }

    // ---- block maps ----------------------------------------------------------------------

    /// The path through the block map to `logical`: the `i_block` slot, then indexes into
    /// each level of indirect block.
    fn block_path(&self, logical: u64) -> Result<BlockPath> {
        let per = self.geometry.pointers_per_block();
        let path = |slot, indexes: &[u64]| {
            let mut path = BlockPath { slot, indexes: [0; 3], depth: indexes.len() };
            path.indexes[..indexes.len()].copy_from_slice(indexes);
            path
        };
        let mut rest = logical;
        if rest < DIRECT_BLOCKS as u64 {
            return Ok(path(rest as usize, &[]));
        }
        rest -= DIRECT_BLOCKS as u64;
        if rest < per {
            return Ok(path(12, &[rest]));
        }
        rest -= per;
        if rest < per * per {
            return Ok(path(13, &[rest / per, rest % per]));
        }
        rest -= per * per;
        if rest < per * per * per {
            return Ok(path(14, &[rest / (per * per), (rest / per) % per, rest % per]));
        }
        Err(Errno::EFBIG)
    }

    /// The physical block of `logical` in `inode` (`None`: a hole), allocating the block and
    /// any indirect blocks on the way if `allocate`.
    fn map_block(&mut self, inode: &mut Inode, logical: u64, allocate: bool) -> Result<Option<u32>> {
        let path = self.block_path(logical)?;
        let (slot, indexes) = (path.slot, path.indexes());
        let goal = (inode.number - 1) / self.geometry.inodes_per_group;
        let mut block = inode.block_pointer(slot);
        if block == 0 {
            if !allocate {
                return Ok(None);
            }
            block = self.allocate_block(goal)?;
            inode.set_block_pointer(slot, block);
            inode.add_sectors(i64::from(self.geometry.sectors_per_block()));
        } else {
            self.check_data_block(block, "mapped")?;
        }
        for &index in indexes {
            let offset = index as usize * 4;
            let mut pointer = [0u8; 4];
            self.cache.read(u64::from(block) * self.geometry.block_size + offset as u64, &mut pointer)?;
            let next = u32::from_le_bytes(pointer);
            if next != 0 {
                block = self.check_data_block(next, "indirect-mapped")?;
                continue;
            }
            if !allocate {
                return Ok(None);
            }
            let mut table = self.read_block(block)?;
            let fresh = self.allocate_block(goal)?;
            table.set_u32(offset, fresh);
            self.write_block(block, &table)?;
            inode.add_sectors(i64::from(self.geometry.sectors_per_block()));
            block = fresh;
        }
        Ok(Some(block))
    }

    /// Like [`Self::map_block`] without allocating, remembering the indirect blocks last
    /// read at each level in `memo` (valid while the state lock is held).
    fn lookup_block(&self, inode: &Inode, logical: u64, memo: &mut [Option<(u32, Vec<u8>)>; 3]) -> Result<Option<u32>> {
        let path = self.block_path(logical)?;
        let (slot, indexes) = (path.slot, path.indexes());
        let mut block = inode.block_pointer(slot);
        if block == 0 {
            return Ok(None);
        }
        self.check_data_block(block, "mapped")?;
        for (level, index) in indexes.iter().enumerate() {
            if memo[level].as_ref().map(|(cached, _)| *cached) != Some(block) {
                memo[level] = Some((block, self.read_block(block)?));
            }
            let table = &memo[level].as_ref().ok_or(Errno::EIO)?.1;
            let next = table.u32_at(*index as usize * 4);
            if next == 0 {
                return Ok(None);
            }
            block = self.check_data_block(next, "indirect-mapped")?;
        }
        Ok(Some(block))
    }

    /// Frees every block of the subtree at `block` (an indirect block of `level`, 1 =
    /// pointing at data) holding logical blocks from `base`, that lies at or past `keep`.
    /// Returns whether the whole subtree is now empty (so `block` itself can go).
    fn truncate_subtree(&mut self, inode: &mut Inode, block: u32, level: u32, base: u64, keep: u64, depth_guard: u32) -> Result<bool> {
        if depth_guard > 3 {
            return Err(Errno::EUCLEAN);
        }
        self.check_data_block(block, "indirect")?;
        let per = self.geometry.pointers_per_block();
        let span = per.pow(level - 1);
        let mut table = self.read_block(block)?;
        let mut changed = false;
        for index in 0..per {
            let child = table.u32_at(index as usize * 4);
            if child == 0 {
                continue;
            }
            let child_base = base + index * span;
            if child_base + span <= keep {
                continue;
            }
            let free_child = if level == 1 {
                child_base >= keep
            } else {
                self.truncate_subtree(inode, child, level - 1, child_base, keep, depth_guard + 1)?
            };
            if free_child {
                self.free_block(child)?;
                inode.add_sectors(-i64::from(self.geometry.sectors_per_block()));
                table.set_u32(index as usize * 4, 0);
                changed = true;
            }
        }
        if changed {
            self.write_block(block, &table)?;
        }
        Ok((0..per).all(|index| table.u32_at(index as usize * 4) == 0))
    }

    fn truncate_blocks(&mut self, inode: &mut Inode, size: u64) -> Result<()> {
        if inode.is_fast_symlink(self.geometry.block_size) {
            for slot in 0..15 {
                inode.set_block_pointer(slot, 0);
            }
            return Ok(());
        }
        let block_size = self.geometry.block_size;
        let keep = size.div_ceil(block_size);
        let per = self.geometry.pointers_per_block();
        for slot in 0..DIRECT_BLOCKS {
            let block = inode.block_pointer(slot);
            if block != 0 && slot as u64 >= keep {
                self.free_block(block)?;
                inode.add_sectors(-i64::from(self.geometry.sectors_per_block()));
                inode.set_block_pointer(slot, 0);
            }
        }
        let mut base = DIRECT_BLOCKS as u64;
        for (slot, level) in [(12usize, 1u32), (13, 2), (14, 3)] {
            let span = per.pow(level);
            let block = inode.block_pointer(slot);
            if block != 0 && base + span > keep && self.truncate_subtree(inode, block, level, base, keep, 0)? {
                self.free_block(block)?;
                inode.add_sectors(-i64::from(self.geometry.sectors_per_block()));
                inode.set_block_pointer(slot, 0);
            }
            base += span;
        }
        // Zero the tail of a partial last block so a later extension reads zeros.
        let within = size % block_size;
        if within != 0 {
            if let Some(block) = self.map_block(inode, size / block_size, false)? {
                let mut data = self.read_block(block)?;
                data[within as usize..].fill(0);
                self.write_block(block, &data)?;
            }
        }
        Ok(())
    }

    // ---- file data -------------------------------------------------------------------------

    fn read_data(&mut self, inode: &mut Inode, offset: u64, buffer: &mut [u8]) -> Result<usize> {
        let size = inode.size();
        if offset >= size {
            return Ok(0);
        }
        let count = buffer.len().min((size - offset) as usize);
        let block_size = self.geometry.block_size;
        let mut done = 0;
        // Runs of physically contiguous blocks are read with one page-cache call.
        let mut run: Option<(u64, usize, usize)> = None;
        let mut memo = [None, None, None];
        while done < count {
            let position = offset + done as u64;
            let within = (position % block_size) as usize;
            let chunk = (block_size as usize - within).min(count - done);
            match self.lookup_block(inode, position / block_size, &mut memo)? {
                Some(block) => {
                    let device_offset = u64::from(block) * block_size + within as u64;
                    match &mut run {
                        Some((start, buffer_start, length)) if *start + *length as u64 == device_offset => {
                            let _ = buffer_start;
                            *length += chunk;
                        }
                        _ => {
                            if let Some((start, buffer_start, length)) = run.take() {
                                self.cache.read(start, &mut buffer[buffer_start..buffer_start + length])?;
                            }
                            run = Some((device_offset, done, chunk));
                        }
                    }
                }
                None => {
                    if let Some((start, buffer_start, length)) = run.take() {
                        self.cache.read(start, &mut buffer[buffer_start..buffer_start + length])?;
                    }
                    buffer[done..done + chunk].fill(0);
                }
            }
            done += chunk;
        }
        if let Some((start, buffer_start, length)) = run {
            self.cache.read(start, &mut buffer[buffer_start..buffer_start + length])?;
        }
        Ok(count)
    }

    fn write_data(&mut self, inode: &mut Inode, offset: u64, data: &[u8]) -> Result<usize> {
        let block_size = self.geometry.block_size;
        let end = offset.checked_add(data.len() as u64).ok_or(Errno::EFBIG)?;
        self.block_path(end.saturating_sub(1) / block_size)?;
        let mut done = 0;
        let mut failure = None;
        while done < data.len() {
            let position = offset + done as u64;
            let within = (position % block_size) as usize;
            let chunk = (block_size as usize - within).min(data.len() - done);
            match self.map_block(inode, position / block_size, true) {
                Ok(Some(block)) => self.cache.write(u64::from(block) * block_size + within as u64, &data[done..done + chunk])?,
                Ok(None) => return Err(Errno::EIO),
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
            done += chunk;
        }
        let written_end = offset + done as u64;
        if written_end > inode.size() {
            inode.set_size(written_end);
            if written_end > i32::MAX as u64 && self.superblock.u32_at(superblock::FEATURE_RO_COMPAT) & RO_COMPAT_LARGE_FILE == 0 {
                let features = self.superblock.u32_at(superblock::FEATURE_RO_COMPAT) | RO_COMPAT_LARGE_FILE;
                self.superblock.set_u32(superblock::FEATURE_RO_COMPAT, features);
            }
        }
        if done > 0 {
            let now = self.now();
            inode.touch(inode::MODIFICATION_TIME, now);
            inode.touch(inode::CHANGE_TIME, now);
        }
        self.write_inode(inode)?;
        self.write_metadata()?;
        match failure {
            Some(error) if done == 0 => Err(error),
            _ => Ok(done),
        }
    }

    // ---- directories -----------------------------------------------------------------------

    /// Visits every entry of `directory` in order, each checked before `visit` sees it,
    /// reading the blocks into one buffer (no allocation per entry); stops at the first
    /// `Some` that `visit` returns and returns it.
    fn scan_entries<T>(
        &mut self,
        directory: &mut Inode,
        visit: impl FnMut(&mut Self, &EntryView<'_>) -> Result<Option<T>>,
    ) -> Result<Option<T>> {
        self.scan_entries_from(directory, 0, visit)
    }

    /// [`Self::scan_entries`] starting at logical block `first_block` (then wrapping around to
    /// the blocks before it), so every block is still visited once.
    fn scan_entries_from<T>(
        &mut self,
        directory: &mut Inode,
        first_block: u64,
        mut visit: impl FnMut(&mut Self, &EntryView<'_>) -> Result<Option<T>>,
    ) -> Result<Option<T>> {
        if directory.kind() != Some(FileType::Directory) {
            return Err(Errno::ENOTDIR);
        }
        let block_size = self.geometry.block_size as usize;
        let blocks = directory.size() / block_size as u64;
        if directory.size() % block_size as u64 != 0 || blocks > MAX_DIRECTORY_BLOCKS {
            return Err(corrupt(format_args!("directory {} has size {}", directory.number, directory.size())));
        }
        let mut data = vec![0u8; block_size];
        let first_block = if first_block < blocks { first_block } else { 0 };
        for logical in (first_block..blocks).chain(0..first_block) {
            let Some(block) = self.map_block(directory, logical, false)? else {
                return Err(corrupt(format_args!("directory {} has a hole at block {}", directory.number, logical)));
            };
            self.cache.read(u64::from(block) * self.geometry.block_size, &mut data)?;
            let mut offset = 0;
            while offset < block_size {
                if offset + 8 > block_size {
                    return Err(corrupt(format_args!("directory {} block {}: entry header past the block", directory.number, logical)));
                }
                let inode = data.u32_at(offset);
                let record_length = usize::from(data.u16_at(offset + 4));
                let name_length = if self.geometry.filetype { usize::from(data[offset + 6]) } else { usize::from(data.u16_at(offset + 6)) };
                let type_code = if self.geometry.filetype { data[offset + 7] } else { 0 };
                if record_length < 8
                    || record_length % 4 != 0
                    || offset + record_length > block_size
                    || (inode != 0 && entry_length(name_length) > record_length)
                {
                    return Err(corrupt(format_args!(
                        "directory {} block {} offset {}: bad rec_len {} (name_len {})",
                        directory.number, logical, offset, record_length, name_length
                    )));
                }
                if inode > self.geometry.inodes_count {
                    return Err(corrupt(format_args!(
                        "directory {} entry points to inode {} past the inode count",
                        directory.number, inode
                    )));
                }
                let name = &data[offset + 8..offset + 8 + name_length.min(record_length - 8)];
                let entry = EntryView { logical_block: logical, offset, inode, record_length, name_length, type_code, name };
                if let Some(found) = visit(self, &entry)? {
                    return Ok(Some(found));
                }
                offset += record_length;
            }
        }
        Ok(None)
    }

    fn entries(&mut self, directory: &mut Inode) -> Result<Vec<RawEntry>> {
        let mut entries = Vec::new();
        self.scan_entries(directory, |_, entry| {
            entries.push(entry.to_raw());
            Ok(None::<()>)
        })?;
        Ok(entries)
    }

    /// The entry named `name` (the scan stops there). The scan starts at the block where
    /// the directory's last successful lookup ended (Linux's `i_dir_start_lookup`): looking
    /// up a directory's names in listing order (`ls -l`) then scans a block or so each
    /// instead of the directory from its start.
    fn find_entry(&mut self, directory: &mut Inode, name: &str) -> Result<RawEntry> {
        let name = name.as_bytes();
        let hint = directory.number as usize % LOOKUP_HINTS;
        let start = match self.lookup_hints[hint] {
            (number, block) if number == directory.number => block,
            _ => 0,
        };
        // Names of one directory often share a prefix (`file-001`, `file-002`): the last
        // byte tells most of them apart before a full comparison.
        let matches = |held: &[u8]| held.len() == name.len() && held.last() == name.last() && held == name;
        let entry = self
            .scan_entries_from(directory, start, |_, entry| Ok((entry.inode != 0 && matches(entry.name)).then(|| entry.to_raw())))?
            .ok_or(Errno::ENOENT)?;
        self.lookup_hints[hint] = (directory.number, entry.logical_block);
        Ok(entry)
    }

    fn directory_block(&mut self, directory: &mut Inode, logical: u64) -> Result<(u32, Vec<u8>)> {
        let block = self.map_block(directory, logical, false)?.ok_or(Errno::EUCLEAN)?;
        Ok((block, self.read_block(block)?))
    }

    fn encode_entry(&self, data: &mut [u8], offset: usize, inode: u32, record_length: usize, name: &[u8], kind: FileType) {
        data.set_u32(offset, inode);
        data.set_u16(offset + 4, record_length as u16);
        if self.geometry.filetype {
            data[offset + 6] = name.len() as u8;
            data[offset + 7] = directory_type_code(kind);
        } else {
            data.set_u16(offset + 6, name.len() as u16);
        }
        data[offset + 8..offset + 8 + name.len()].copy_from_slice(name);
    }

    fn add_entry(&mut self, directory: &mut Inode, name: &str, inode: u32, kind: FileType) -> Result<()> {
        let needed = entry_length(name.len());
        let entries = self.entries(directory)?;
        let slot = entries.iter().find_map(|entry| {
            if entry.inode == 0 && entry.record_length >= needed {
                Some((entry.logical_block, entry.offset, entry.record_length, None))
            } else if entry.inode != 0 && entry.record_length >= entry_length(entry.name_length) + needed {
                let used = entry_length(entry.name_length);
                Some((entry.logical_block, entry.offset + used, entry.record_length - used, Some((entry.offset, used))))
            } else {
                None
            }
        });
        let block_size = self.geometry.block_size as usize;
        match slot {
            Some((logical, offset, record_length, shrink)) => {
                let (block, mut data) = self.directory_block(directory, logical)?;
                if let Some((previous, used)) = shrink {
                    data.set_u16(previous + 4, used as u16);
                }
                self.encode_entry(&mut data, offset, inode, record_length, name.as_bytes(), kind);
                self.write_block(block, &data)?;
            }
            None => {
                let logical = directory.size() / block_size as u64;
                let block = self.map_block(directory, logical, true)?.ok_or(Errno::EIO)?;
                let mut data = vec![0u8; block_size];
                self.encode_entry(&mut data, 0, inode, block_size, name.as_bytes(), kind);
                self.write_block(block, &data)?;
                directory.set_size((logical + 1) * block_size as u64);
            }
        }
        let now = self.now();
        directory.touch(inode::MODIFICATION_TIME, now);
        directory.touch(inode::CHANGE_TIME, now);
        let flags = directory.raw.u32_at(inode::FLAGS) & !INDEX_FLAG;
        directory.raw.set_u32(inode::FLAGS, flags);
        self.write_inode(directory)
    }

    fn remove_entry(&mut self, directory: &mut Inode, name: &str) -> Result<RawEntry> {
        let entries = self.entries(directory)?;
        let position = entries.iter().position(|entry| entry.inode != 0 && entry.name == name.as_bytes()).ok_or(Errno::ENOENT)?;
        let entry = entries[position].clone();
        let (block, mut data) = self.directory_block(directory, entry.logical_block)?;
        let previous = entries[..position].iter().rev().find(|other| other.logical_block == entry.logical_block);
        match previous {
            Some(previous) if entry.offset != 0 => data.set_u16(previous.offset + 4, (previous.record_length + entry.record_length) as u16),
            _ => data.set_u32(entry.offset, 0),
        }
        self.write_block(block, &data)?;
        let now = self.now();
        directory.touch(inode::MODIFICATION_TIME, now);
        directory.touch(inode::CHANGE_TIME, now);
        let flags = directory.raw.u32_at(inode::FLAGS) & !INDEX_FLAG;
        directory.raw.set_u32(inode::FLAGS, flags);
        self.write_inode(directory)?;
        Ok(entry)
    }

    fn retarget_entry(&mut self, directory: &mut Inode, name: &str, inode: u32, kind: FileType) -> Result<()> {
        let entry = self.find_entry(directory, name)?;
        let (block, mut data) = self.directory_block(directory, entry.logical_block)?;
        data.set_u32(entry.offset, inode);
        if self.geometry.filetype {
            data[entry.offset + 7] = directory_type_code(kind);
        }
        self.write_block(block, &data)
    }

    fn is_empty_directory(&mut self, directory: &mut Inode) -> Result<bool> {
        let other =
            self.scan_entries(directory, |_, entry| Ok((entry.inode != 0 && entry.name != b"." && entry.name != b"..").then_some(())))?;
        Ok(other.is_none())
    }

    /// The type of an entry's inode: from the entry's type code, else from the inode.
    fn kind_of_entry(&mut self, inode: u32, type_code: u8) -> Result<FileType> {
        let from_code = match type_code {
            1 => Some(FileType::Regular),
            2 => Some(FileType::Directory),
            3 => Some(FileType::CharacterDevice),
            4 => Some(FileType::BlockDevice),
            5 => Some(FileType::Fifo),
            6 => Some(FileType::Socket),
            7 => Some(FileType::Symlink),
            _ => None,
        };
        match from_code {
            Some(kind) => Ok(kind),
            None => self.inode_in_use(inode)?.kind().ok_or(Errno::EUCLEAN),
        }
    }

    fn check_writable(&self) -> Result<()> {
        if self.read_only {
            Err(Errno::EROFS)
        } else {
            Ok(())
        }
    }

    fn inode_number(number: InodeNumber) -> Result<u32> {
        u32::try_from(number).map_err(|_| Errno::ENOENT)
    }

    fn sync(&mut self) -> Result<()> {
        if !self.read_only {
            self.write_metadata()?;
            self.write_backups()?;
        }
        self.cache.sync()
    }
}

impl Ext2 {
    /// Mounts the ext2 file system on `cache`'s device. Checks the superblock and every
    /// group descriptor first; a refused mount writes nothing. Unknown incompatible
    /// features refuse the mount; unknown read-only-compatible features force `read_only`.
    pub fn mount(cache: Arc<PageCache>, read_only: bool, clock: Clock) -> core::result::Result<Arc<Ext2>, MountError> {
        let device_size = cache.size_bytes();
        if device_size < SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE as u64 {
            return Err(refuse(Errno::EINVAL, alloc::format!("device of {} bytes is too small for an ext2 superblock", device_size)));
        }
        let mut sb = vec![0u8; SUPERBLOCK_SIZE];
        cache.read(SUPERBLOCK_OFFSET, &mut sb).map_err(|errno| refuse(errno, "cannot read the superblock".to_string()))?;
        if sb.u16_at(superblock::MAGIC) != EXT2_MAGIC {
            return Err(refuse(
                Errno::EINVAL,
                alloc::format!("bad magic number {:#06x} in superblock (not ext2)", sb.u16_at(superblock::MAGIC)),
            ));
        }
        let revision = sb.u32_at(superblock::REVISION);
        if revision > 1 {
            return Err(refuse(Errno::EINVAL, alloc::format!("unsupported revision {}", revision)));
        }
        let log_block_size = sb.u32_at(superblock::LOG_BLOCK_SIZE);
        if log_block_size > 2 {
            return Err(refuse(Errno::EINVAL, alloc::format!("unsupported block size 1024 << {}", log_block_size)));
        }
        let block_size = 1024u64 << log_block_size;
        let (incompat, ro_compat, inode_size, first_inode) = if revision == 0 {
            (0, 0, 128, 11)
        } else {
            (
                sb.u32_at(superblock::FEATURE_INCOMPAT),
                sb.u32_at(superblock::FEATURE_RO_COMPAT),
                u32::from(sb.u16_at(superblock::INODE_SIZE)),
                sb.u32_at(superblock::FIRST_INODE),
            )
        };
        let unsupported = incompat & !SUPPORTED_INCOMPAT;
        if unsupported != 0 {
            return Err(refuse(
                Errno::EINVAL,
                alloc::format!("couldn't mount because of unsupported optional features: {}", incompat_names(unsupported)),
            ));
        }
        let mut read_only_reason = None;
        let unknown_ro = ro_compat & !SUPPORTED_RO_COMPAT;
        if unknown_ro != 0 {
            read_only_reason =
                Some(alloc::format!("couldn't mount read-write because of unsupported optional features: {}", ro_compat_names(unknown_ro)));
        }
        if cache.device().is_read_only() && read_only_reason.is_none() && !read_only {
            read_only_reason = Some("the device is read-only".to_string());
        }
        let geometry = Geometry {
            block_size,
            blocks_count: sb.u32_at(superblock::BLOCKS_COUNT),
            inodes_count: sb.u32_at(superblock::INODES_COUNT),
            first_data_block: sb.u32_at(superblock::FIRST_DATA_BLOCK),
            blocks_per_group: sb.u32_at(superblock::BLOCKS_PER_GROUP),
            inodes_per_group: sb.u32_at(superblock::INODES_PER_GROUP),
            inode_size,
            first_inode,
            group_count: 0,
            sparse_super: ro_compat & RO_COMPAT_SPARSE_SUPER != 0,
            filetype: incompat & INCOMPAT_FILETYPE != 0,
        };
        let geometry = validate_geometry(geometry, &sb, device_size)?;
        let descriptor_bytes = geometry.group_count as usize * GROUP_DESCRIPTOR_SIZE;
        let mut groups = vec![0u8; descriptor_bytes];
        cache
            .read(u64::from(geometry.first_data_block + 1) * block_size, &mut groups)
            .map_err(|errno| refuse(errno, "cannot read the group descriptors".to_string()))?;
        validate_groups(&geometry, &groups)?;
        let read_only = read_only || read_only_reason.is_some();
        if let Some(reason) = &read_only_reason {
            log::warn!("EXT2-fs: {}; mounting read-only", reason);
        }
        let mut state = State {
            cache,
            geometry,
            superblock: sb,
            groups,
            read_only,
            clock,
            inodes: vec![None; INODE_CACHE_SLOTS],
            lookup_hints: [(0, 0); LOOKUP_HINTS],
        };
        let root = state.read_inode(ROOT_INODE).map_err(|errno| refuse(errno, "the root inode is not in use".to_string()))?;
        if root.kind() != Some(FileType::Directory) {
            return Err(refuse(Errno::EUCLEAN, "the root inode is not a directory".to_string()));
        }
        let ext2 = Arc::new(Ext2 { state: Mutex::new(state), read_only, read_only_reason });
        if !read_only {
            let mut state = ext2.state.lock();
            let now = state.now();
            state.superblock.set_u32(superblock::MOUNT_TIME, now as u32);
            let count = state.superblock.u16_at(superblock::MOUNT_COUNT).wrapping_add(1);
            state.superblock.set_u16(superblock::MOUNT_COUNT, count);
            let flags = state.superblock.u16_at(superblock::STATE) & !STATE_VALID;
            state.superblock.set_u16(superblock::STATE, flags);
            state.write_metadata().map_err(|errno| refuse(errno, "cannot write the superblock".to_string()))?;
        }
        Ok(ext2)
    }

    /// Why the mount is read-only although read-write was asked (unknown ro_compat
    /// features, a read-only device), if it is.
    pub fn read_only_reason(&self) -> Option<&str> {
        self.read_only_reason.as_deref()
    }

    /// The block size.
    pub fn block_size(&self) -> u64 {
        self.state.lock().geometry.block_size
    }

    fn with_inode<T>(&self, number: InodeNumber, operation: impl FnOnce(&mut State, &mut Inode) -> Result<T>) -> Result<T> {
        let mut state = self.state.lock();
        let mut inode = state.read_inode(State::inode_number(number)?)?;
        operation(&mut state, &mut inode)
    }
}

fn validate_geometry(mut geometry: Geometry, sb: &[u8], device_size: u64) -> core::result::Result<Geometry, MountError> {
    let bad = |message: String| Err(refuse(Errno::EUCLEAN, message));
    let bits_per_block = geometry.block_size as u32 * 8;
    if geometry.blocks_per_group == 0 || geometry.blocks_per_group > bits_per_block {
        return bad(alloc::format!("blocks per group {} out of range", geometry.blocks_per_group));
    }
    if geometry.inodes_per_group == 0 || geometry.inodes_per_group > bits_per_block {
        return bad(alloc::format!("inodes per group {} out of range", geometry.inodes_per_group));
    }
    if geometry.inode_size < 128 || !geometry.inode_size.is_power_of_two() || u64::from(geometry.inode_size) > geometry.block_size {
        return bad(alloc::format!("inode size {} unsupported", geometry.inode_size));
    }
    let expected_first = if geometry.block_size == 1024 { 1 } else { 0 };
    if geometry.first_data_block != expected_first {
        return bad(alloc::format!("first data block {} (expected {})", geometry.first_data_block, expected_first));
    }
    if geometry.blocks_count <= geometry.first_data_block + 1 {
        return bad(alloc::format!("block count {} too small", geometry.blocks_count));
    }
    let needed = u64::from(geometry.blocks_count) * geometry.block_size;
    if needed > device_size {
        return Err(refuse(
            Errno::EINVAL,
            alloc::format!(
                "truncated image: the superblock says {} blocks ({} bytes), the device has {} bytes",
                geometry.blocks_count,
                needed,
                device_size
            ),
        ));
    }
    geometry.group_count = (geometry.blocks_count - geometry.first_data_block).div_ceil(geometry.blocks_per_group);
    if u64::from(geometry.inodes_per_group) * u64::from(geometry.group_count) != u64::from(geometry.inodes_count) {
        return bad(alloc::format!(
            "inode count {} does not match {} groups of {} inodes",
            geometry.inodes_count,
            geometry.group_count,
            geometry.inodes_per_group
        ));
    }
    if geometry.first_inode <= ROOT_INODE || geometry.first_inode > geometry.inodes_count {
        return bad(alloc::format!("first inode {} out of range", geometry.first_inode));
    }
    if sb.u32_at(superblock::FREE_BLOCKS_COUNT) > geometry.blocks_count || sb.u32_at(superblock::FREE_INODES_COUNT) > geometry.inodes_count
    {
        return bad("free counts exceed the totals".to_string());
    }
    if 1 + geometry.descriptor_blocks() >= u64::from(geometry.blocks_per_group) {
        return bad("group descriptors do not fit in the first group".to_string());
    }
    Ok(geometry)
}

fn validate_groups(geometry: &Geometry, groups: &[u8]) -> core::result::Result<(), MountError> {
    let table_blocks = (u64::from(geometry.inodes_per_group) * u64::from(geometry.inode_size)).div_ceil(geometry.block_size);
    let in_range =
        |block: u32, length: u64| block >= geometry.first_data_block && u64::from(block) + length <= u64::from(geometry.blocks_count);
    let mut free_blocks = 0u64;
    let mut free_inodes = 0u64;
    for group in 0..geometry.group_count {
        let base = group as usize * GROUP_DESCRIPTOR_SIZE;
        let block_bitmap = groups.u32_at(base + group::BLOCK_BITMAP);
        let inode_bitmap = groups.u32_at(base + group::INODE_BITMAP);
        let inode_table = groups.u32_at(base + group::INODE_TABLE);
        if !in_range(block_bitmap, 1) || !in_range(inode_bitmap, 1) || !in_range(inode_table, table_blocks) {
            return Err(refuse(
                Errno::EUCLEAN,
                alloc::format!(
                    "group {}: bitmap or inode table block out of range (block bitmap {}, inode bitmap {}, inode table {})",
                    group,
                    block_bitmap,
                    inode_bitmap,
                    inode_table
                ),
            ));
        }
        let group_free_blocks = u32::from(groups.u16_at(base + group::FREE_BLOCKS));
        let group_free_inodes = u32::from(groups.u16_at(base + group::FREE_INODES));
        if group_free_blocks > geometry.blocks_in_group(group) || group_free_inodes > geometry.inodes_per_group {
            return Err(refuse(Errno::EUCLEAN, alloc::format!("group {}: free counts exceed the group's size", group)));
        }
        free_blocks += u64::from(group_free_blocks);
        free_inodes += u64::from(group_free_inodes);
    }
    let _ = (free_blocks, free_inodes);
    Ok(())
}

impl FileSystem for Ext2 {
    fn type_name(&self) -> &'static str {
        "ext2"
    }

    fn root(&self) -> InodeNumber {
        InodeNumber::from(ROOT_INODE)
    }

    fn is_read_only(&self) -> bool {
        self.read_only
    }

    fn statistics(&self) -> Result<FileSystemStatistics> {
        let state = self.state.lock();
        let sb = &state.superblock;
        let free = u64::from(sb.u32_at(superblock::FREE_BLOCKS_COUNT));
        let reserved = u64::from(sb.u32_at(superblock::RESERVED_BLOCKS_COUNT));
        Ok(FileSystemStatistics {
            block_size: state.geometry.block_size,
            blocks: u64::from(state.geometry.blocks_count),
            free_blocks: free,
            available_blocks: free.saturating_sub(reserved),
            inodes: u64::from(state.geometry.inodes_count),
            free_inodes: u64::from(sb.u32_at(superblock::FREE_INODES_COUNT)),
            name_length: 255,
        })
    }

    fn metadata(&self, number: InodeNumber) -> Result<Metadata> {
        let mut state = self.state.lock();
        let block_size = state.geometry.block_size as u32;
        let inode = state.inode_in_use(State::inode_number(number)?)?;
        let time = |offset| i64::from(inode.raw.u32_at(offset));
        Ok(Metadata {
            inode: number,
            kind: inode.kind().ok_or(Errno::EUCLEAN)?,
            permissions: inode.mode() & 0o7777,
            links: u32::from(inode.links()),
            uid: inode.uid(),
            gid: inode.gid(),
            size: inode.size(),
            blocks: u64::from(inode.sectors()),
            block_size,
            access_time: time(inode::ACCESS_TIME),
            modification_time: time(inode::MODIFICATION_TIME),
            change_time: time(inode::CHANGE_TIME),
            device: 0,
            rdev: Default::default(),
        })
    }

    fn set_metadata(&self, number: InodeNumber, changes: &MetadataChanges) -> Result<()> {
        self.with_inode(number, |state, inode| {
            state.check_writable()?;
            if let Some(permissions) = changes.permissions {
                let mode = (inode.mode() & 0o170000) | (permissions & 0o7777);
                inode.raw.set_u16(inode::MODE, mode);
            }
            if changes.uid.is_some() || changes.gid.is_some() {
                inode.set_owner(changes.uid.unwrap_or(inode.uid()), changes.gid.unwrap_or(inode.gid()));
            }
            if let Some(time) = changes.access_time {
                inode.touch(inode::ACCESS_TIME, time);
            }
            if let Some(time) = changes.modification_time {
                inode.touch(inode::MODIFICATION_TIME, time);
            }
            let now = state.now();
            inode.touch(inode::CHANGE_TIME, now);
            state.write_inode(inode)
        })
    }

    fn lookup(&self, directory: InodeNumber, name: &str) -> Result<InodeNumber> {
        self.with_inode(directory, |state, inode| Ok(InodeNumber::from(state.find_entry(inode, name)?.inode)))
    }

    fn lookup_with_kind(&self, directory: InodeNumber, name: &str) -> Result<(InodeNumber, FileType)> {
        self.with_inode(directory, |state, inode| {
            let number = state.find_entry(inode, name)?.inode;
            let kind = state.inode_in_use(number)?.kind().ok_or(Errno::EUCLEAN)?;
            Ok((InodeNumber::from(number), kind))
        })
    }

    fn read_directory(&self, directory: InodeNumber) -> Result<Vec<DirectoryEntry>> {
        self.with_inode(directory, |state, inode| {
            let mut listing = Vec::new();
            state.scan_entries(inode, |state, entry| {
                if entry.inode != 0 {
                    let kind = state.kind_of_entry(entry.inode, entry.type_code)?;
                    let name = String::from_utf8_lossy(entry.name).into_owned();
                    listing.push(DirectoryEntry { name, inode: InodeNumber::from(entry.inode), kind });
                }
                Ok(None::<()>)
            })?;
            Ok(listing)
        })
    }

    fn create(&self, directory: InodeNumber, name: &str, kind: FileType, permissions: u16, uid: u32, gid: u32) -> Result<InodeNumber> {
        if !matches!(kind, FileType::Regular | FileType::Directory) {
            return Err(Errno::EINVAL);
        }
        self.with_inode(directory, |state, parent| {
            state.check_writable()?;
            match state.find_entry(parent, name) {
                Ok(_) => return Err(Errno::EEXIST),
                Err(Errno::ENOENT) => {}
                Err(error) => return Err(error),
            }
            if kind == FileType::Directory && parent.links() >= LINK_MAX {
                return Err(Errno::EMLINK);
            }
            let mut inode = state.new_inode(parent.number, kind, permissions, uid, gid)?;
            if kind == FileType::Directory {
                inode.set_links(2);
                let block_size = state.geometry.block_size as usize;
                let block = match state.map_block(&mut inode, 0, true) {
                    Ok(Some(block)) => block,
                    Ok(None) | Err(_) => {
                        state.free_inode(inode.number, true)?;
                        state.write_metadata()?;
                        return Err(Errno::ENOSPC);
                    }
                };
                let mut data = vec![0u8; block_size];
                state.encode_entry(&mut data, 0, inode.number, 12, b".", FileType::Directory);
                state.encode_entry(&mut data, 12, parent.number, block_size - 12, b"..", FileType::Directory);
                state.write_block(block, &data)?;
                inode.set_size(block_size as u64);
            }
            state.write_inode(&inode)?;
            if let Err(error) = state.add_entry(parent, name, inode.number, kind) {
                state.truncate_blocks(&mut inode, 0)?;
                state.free_inode(inode.number, kind == FileType::Directory)?;
                state.write_metadata()?;
                return Err(error);
            }
            if kind == FileType::Directory {
                parent.set_links(parent.links() + 1);
                state.write_inode(parent)?;
            }
            state.write_metadata()?;
            Ok(InodeNumber::from(inode.number))
        })
    }

    fn symlink(&self, directory: InodeNumber, name: &str, target: &str, uid: u32, gid: u32) -> Result<InodeNumber> {
        self.with_inode(directory, |state, parent| {
            state.check_writable()?;
            if target.len() as u64 >= state.geometry.block_size {
                return Err(Errno::ENAMETOOLONG);
            }
            match state.find_entry(parent, name) {
                Ok(_) => return Err(Errno::EEXIST),
                Err(Errno::ENOENT) => {}
                Err(error) => return Err(error),
            }
            let mut inode = state.new_inode(parent.number, FileType::Symlink, 0o777, uid, gid)?;
            if target.len() <= FAST_SYMLINK_MAX {
                inode.raw[inode::BLOCK..inode::BLOCK + target.len()].copy_from_slice(target.as_bytes());
                inode.set_size(target.len() as u64);
            } else if let Err(error) = state.write_data(&mut inode, 0, target.as_bytes()) {
                state.truncate_blocks(&mut inode, 0)?;
                state.free_inode(inode.number, false)?;
                state.write_metadata()?;
                return Err(error);
            }
            state.write_inode(&inode)?;
            if let Err(error) = state.add_entry(parent, name, inode.number, FileType::Symlink) {
                state.truncate_blocks(&mut inode, 0)?;
                state.free_inode(inode.number, false)?;
                state.write_metadata()?;
                return Err(error);
            }
            state.write_metadata()?;
            Ok(InodeNumber::from(inode.number))
        })
    }

    fn link(&self, directory: InodeNumber, name: &str, target: InodeNumber) -> Result<()> {
        self.with_inode(directory, |state, parent| {
            state.check_writable()?;
            let mut inode = state.read_inode(State::inode_number(target)?)?;
            let kind = inode.kind().ok_or(Errno::EUCLEAN)?;
            if kind == FileType::Directory {
                return Err(Errno::EPERM);
            }
            if inode.links() >= LINK_MAX {
                return Err(Errno::EMLINK);
            }
            match state.find_entry(parent, name) {
                Ok(_) => return Err(Errno::EEXIST),
                Err(Errno::ENOENT) => {}
                Err(error) => return Err(error),
            }
            state.add_entry(parent, name, inode.number, kind)?;
            inode.set_links(inode.links() + 1);
            let now = state.now();
            inode.touch(inode::CHANGE_TIME, now);
            state.write_inode(&inode)?;
            state.write_metadata()
        })
    }

    fn unlink(&self, directory: InodeNumber, name: &str) -> Result<InodeNumber> {
        self.with_inode(directory, |state, parent| {
            state.check_writable()?;
            let entry = state.find_entry(parent, name)?;
            let mut inode = state.read_inode(entry.inode)?;
            if inode.kind() == Some(FileType::Directory) {
                return Err(Errno::EISDIR);
            }
            state.remove_entry(parent, name)?;
            inode.set_links(inode.links().saturating_sub(1));
            let now = state.now();
            inode.touch(inode::CHANGE_TIME, now);
            state.write_inode(&inode)?;
            state.write_metadata()?;
            Ok(InodeNumber::from(inode.number))
        })
    }

    fn rmdir(&self, directory: InodeNumber, name: &str) -> Result<InodeNumber> {
        self.with_inode(directory, |state, parent| {
            state.check_writable()?;
            let entry = state.find_entry(parent, name)?;
            let mut child = state.read_inode(entry.inode)?;
            if child.kind() != Some(FileType::Directory) {
                return Err(Errno::ENOTDIR);
            }
            if child.number == parent.number || !state.is_empty_directory(&mut child)? {
                return Err(Errno::ENOTEMPTY);
            }
            state.remove_entry(parent, name)?;
            child.set_links(0);
            state.write_inode(&child)?;
            parent.set_links(parent.links().saturating_sub(1));
            state.write_inode(parent)?;
            state.write_metadata()?;
            Ok(InodeNumber::from(child.number))
        })
    }

    fn rename(
        &self,
        old_directory: InodeNumber,
        old_name: &str,
        new_directory: InodeNumber,
        new_name: &str,
    ) -> Result<Option<InodeNumber>> {
        let mut state = self.state.lock();
        state.check_writable()?;
        let mut old_parent = state.read_inode(State::inode_number(old_directory)?)?;
        let source_entry = state.find_entry(&mut old_parent, old_name)?;
        let mut source = state.read_inode(source_entry.inode)?;
        let source_kind = source.kind().ok_or(Errno::EUCLEAN)?;
        let same_directory = old_directory == new_directory;
        let mut new_parent = if same_directory { old_parent.clone() } else { state.read_inode(State::inode_number(new_directory)?)? };
        let replaced = match state.find_entry(&mut new_parent, new_name) {
            Ok(entry) => {
                if entry.inode == source.number {
                    return Ok(None);
                }
                let mut target = state.read_inode(entry.inode)?;
                let target_is_directory = target.kind() == Some(FileType::Directory);
                if target_is_directory != (source_kind == FileType::Directory) {
                    return Err(if target_is_directory { Errno::EISDIR } else { Errno::ENOTDIR });
                }
                if target_is_directory && !state.is_empty_directory(&mut target)? {
                    return Err(Errno::ENOTEMPTY);
                }
                state.retarget_entry(&mut new_parent, new_name, source.number, source_kind)?;
                if target_is_directory {
                    target.set_links(0);
                    new_parent.set_links(new_parent.links().saturating_sub(1));
                } else {
                    target.set_links(target.links().saturating_sub(1));
                }
                let now = state.now();
                target.touch(inode::CHANGE_TIME, now);
                state.write_inode(&target)?;
                state.write_inode(&new_parent)?;
                Some(InodeNumber::from(target.number))
            }
            Err(Errno::ENOENT) => {
                if source_kind == FileType::Directory && !same_directory && new_parent.links() >= LINK_MAX {
                    return Err(Errno::EMLINK);
                }
                state.add_entry(&mut new_parent, new_name, source.number, source_kind)?;
                None
            }
            Err(error) => return Err(error),
        };
        if same_directory {
            old_parent = new_parent.clone();
        }
        state.remove_entry(&mut old_parent, old_name)?;
        if same_directory {
            new_parent = old_parent.clone();
        }
        if source_kind == FileType::Directory && !same_directory {
            state.retarget_entry(&mut source, "..", new_parent.number, FileType::Directory)?;
            old_parent.set_links(old_parent.links().saturating_sub(1));
            new_parent.set_links(new_parent.links() + 1);
            state.write_inode(&old_parent)?;
            state.write_inode(&new_parent)?;
        }
        let now = state.now();
        source.touch(inode::CHANGE_TIME, now);
        state.write_inode(&source)?;
        state.write_metadata()?;
        Ok(replaced)
    }

    fn read(&self, number: InodeNumber, offset: u64, buffer: &mut [u8]) -> Result<usize> {
        self.with_inode(number, |state, inode| match inode.kind() {
            Some(FileType::Directory) => Err(Errno::EISDIR),
            _ => state.read_data(inode, offset, buffer),
        })
    }

    fn write(&self, number: InodeNumber, offset: u64, data: &[u8]) -> Result<usize> {
        self.with_inode(number, |state, inode| {
            state.check_writable()?;
            if inode.kind() != Some(FileType::Regular) {
                return Err(Errno::EINVAL);
            }
            state.write_data(inode, offset, data)
        })
    }

    fn truncate(&self, number: InodeNumber, size: u64) -> Result<()> {
        self.with_inode(number, |state, inode| {
            state.check_writable()?;
            if inode.kind() != Some(FileType::Regular) {
                return Err(Errno::EINVAL);
            }
            let block_size = state.geometry.block_size;
            if size > 0 {
                state.block_path((size - 1) / block_size)?;
            }
            if size < inode.size() {
                state.truncate_blocks(inode, size)?;
            }
            inode.set_size(size);
            let now = state.now();
            inode.touch(inode::MODIFICATION_TIME, now);
            inode.touch(inode::CHANGE_TIME, now);
            state.write_inode(inode)?;
            state.write_metadata()
        })
    }

    fn readlink(&self, number: InodeNumber) -> Result<String> {
        self.with_inode(number, |state, inode| {
            if inode.kind() != Some(FileType::Symlink) {
                return Err(Errno::EINVAL);
            }
            let size = inode.size() as usize;
            if size as u64 >= state.geometry.block_size {
                return Err(corrupt(format_args!("symlink {} is {} bytes long", inode.number, size)));
            }
            let bytes = if inode.is_fast_symlink(state.geometry.block_size) {
                if size > 60 {
                    return Err(Errno::EUCLEAN);
                }
                inode.raw[inode::BLOCK..inode::BLOCK + size].to_vec()
            } else {
                let mut buffer = vec![0u8; size];
                state.read_data(inode, 0, &mut buffer)?;
                buffer
            };
            String::from_utf8(bytes).map_err(|_| Errno::EINVAL)
        })
    }

    fn release(&self, number: InodeNumber) -> Result<()> {
        let mut state = self.state.lock();
        if state.read_only {
            return Ok(());
        }
        let number = State::inode_number(number)?;
        let mut inode = state.read_inode_raw(number)?;
        if inode.links() != 0 || inode.kind().is_none() || inode.raw.u32_at(inode::DELETION_TIME) != 0 {
            return Ok(());
        }
        let directory = inode.kind() == Some(FileType::Directory);
        state.truncate_blocks(&mut inode, 0)?;
        inode.set_size(0);
        // e2fsck reads a zero dtime as "not deleted" and one below the inode count as a link
        // in ext3's orphan list; without a real-time clock the time is seconds since boot,
        // so a deletion is stamped no earlier than the inode count.
        let now = state.now().max(i64::from(state.geometry.inodes_count));
        inode.touch(inode::DELETION_TIME, now);
        state.write_inode(&inode)?;
        state.free_inode(number, directory)?;
        state.write_metadata()
    }

    fn sync(&self) -> Result<()> {
        self.state.lock().sync()
    }

    fn unmount(&self) -> Result<()> {
        let mut state = self.state.lock();
        if !state.read_only {
            let flags = state.superblock.u16_at(superblock::STATE) | STATE_VALID;
            state.superblock.set_u16(superblock::STATE, flags);
        }
        state.sync()
    }
}

#[cfg(test)]
mod tests;
