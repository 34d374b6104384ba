//! Partition tables: MBR (with extended/logical partitions) and GPT, and partitions exposed as block devices.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use super::device::BlockDevice;
use crate::errno::{Errno, Result};

/// Which scheme a disk uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionScheme {
    /// No partition table: the whole disk holds one file system (or nothing).
    None,
    /// A DOS master boot record.
    Mbr,
    /// A GUID partition table.
    Gpt,
}

/// One partition as the table describes it, in device blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionEntry {
    /// Linux's partition number: MBR primaries 1-4, logicals from 5; GPT entries from 1.
    pub number: u32,
    /// First device block.
    pub first_block: u64,
    /// Length in device blocks.
    pub block_count: u64,
    /// MBR type byte (0 for GPT).
    pub mbr_type: u8,
    /// GPT type GUID as stored (zeros for MBR).
    pub gpt_type: [u8; 16],
    /// GPT partition name (empty for MBR).
    pub name: String,
}

/// A disk's partition table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionTable {
    /// The scheme found.
    pub scheme: PartitionScheme,
    /// The partitions, in number order.
    pub entries: Vec<PartitionEntry>,
}

/// Most logical partitions followed in an extended partition's chain.
pub const MAX_LOGICAL_PARTITIONS: u32 = 60;
const MBR_EXTENDED_TYPES: [u8; 3] = [0x05, 0x0f, 0x85];
const MBR_PROTECTIVE_GPT: u8 = 0xee;

fn le32(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes([bytes[offset], bytes[offset + 1], bytes[offset + 2], bytes[offset + 3]])
}

fn le64(bytes: &[u8], offset: usize) -> u64 {
    u64::from(le32(bytes, offset)) | (u64::from(le32(bytes, offset + 4)) << 32)
}

/// CRC-32 (IEEE 802.3, reflected), as GPT uses.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn read_sector(device: &dyn BlockDevice, block: u64) -> Result<Vec<u8>> {
    let mut sector = vec![0u8; device.block_size()];
    device.read_blocks(block, &mut sector)?;
    Ok(sector)
}

fn mbr_entries(sector: &[u8]) -> [(u8, u64, u64); 4] {
    core::array::from_fn(|index| {
        let entry = &sector[446 + index * 16..446 + (index + 1) * 16];
        (entry[4], u64::from(le32(entry, 8)), u64::from(le32(entry, 12)))
    })
}

fn check_range(device: &dyn BlockDevice, first_block: u64, block_count: u64) -> Result<()> {
    match first_block.checked_add(block_count) {
        Some(end) if first_block > 0 && end <= device.block_count() => Ok(()),
        _ => Err(Errno::EINVAL),
    }
}

/// Reads the partition table of `device`. A disk without an MBR signature has scheme
/// [`PartitionScheme::None`]; a table with entries outside the disk, a broken logical chain
/// or a GPT header or entry array whose CRC does not match gives `EINVAL`.
pub fn read_partition_table(device: &dyn BlockDevice) -> Result<PartitionTable> {
    let none = PartitionTable { scheme: PartitionScheme::None, entries: Vec::new() };
    if device.block_count() < 2 || device.block_size() < 512 {
        return Ok(none);
    }
    let sector = read_sector(device, 0)?;
    if sector[510] != 0x55 || sector[511] != 0xaa {
        return Ok(none);
    }
    let primaries = mbr_entries(&sector);
    if primaries.iter().any(|&(kind, _, _)| kind == MBR_PROTECTIVE_GPT) {
        return read_gpt(device);
    }
    // A FAT or ext boot sector also ends in 55 AA: require sane status bytes.
    if (0..4).any(|index| sector[446 + index * 16] & 0x7f != 0) {
        return Ok(none);
    }
    let mut entries = Vec::new();
    for (index, &(kind, first_block, block_count)) in primaries.iter().enumerate() {
        if kind == 0 || block_count == 0 {
            continue;
        }
        check_range(device, first_block, block_count)?;
        entries.push(PartitionEntry {
            number: index as u32 + 1,
            first_block,
            block_count,
            mbr_type: kind,
            gpt_type: [0; 16],
            name: String::new(),
        });
        if MBR_EXTENDED_TYPES.contains(&kind) {
            read_logical_partitions(device, first_block, block_count, &mut entries)?;
        }
    }
    Ok(PartitionTable { scheme: PartitionScheme::Mbr, entries })
}

fn read_logical_partitions(
    device: &dyn BlockDevice,
    extended_start: u64,
    extended_length: u64,
    entries: &mut Vec<PartitionEntry>,
) -> Result<()> {
    let mut boot_record = extended_start;
    let mut number = 5;
    loop {
        if number >= 5 + MAX_LOGICAL_PARTITIONS {
            return Err(Errno::EINVAL);
        }
        let sector = read_sector(device, boot_record)?;
        if sector[510] != 0x55 || sector[511] != 0xaa {
            return Err(Errno::EINVAL);
        }
        let [(kind, relative_start, block_count), (next_kind, next_relative, _), _, _] = mbr_entries(&sector);
        if kind != 0 && block_count != 0 {
            let first_block = boot_record.checked_add(relative_start).ok_or(Errno::EINVAL)?;
            check_range(device, first_block, block_count)?;
            if first_block + block_count > extended_start + extended_length {
                return Err(Errno::EINVAL);
            }
            entries.push(PartitionEntry { number, first_block, block_count, mbr_type: kind, gpt_type: [0; 16], name: String::new() });
            number += 1;
        }
        if next_kind == 0 || next_relative == 0 {
            return Ok(());
        }
        let next = extended_start + next_relative;
        if next <= boot_record || next >= extended_start + extended_length {
            // Links must move forward inside the extended partition; anything else is a loop.
            return Err(Errno::EINVAL);
        }
        boot_record = next;
    }
}

fn read_gpt(device: &dyn BlockDevice) -> Result<PartitionTable> {
    let header = read_sector(device, 1)?;
    if &header[..8] != b"EFI PART" {
        return Err(Errno::EINVAL);
    }
    let header_size = le32(&header, 12) as usize;
    if !(92..=header.len()).contains(&header_size) {
        return Err(Errno::EINVAL);
    }
    let mut checked = header[..header_size].to_vec();
    checked[16..20].fill(0);
    if crc32(&checked) != le32(&header, 16) {
        return Err(Errno::EINVAL);
    }
    let first_usable = le64(&header, 40);
    let last_usable = le64(&header, 48);
    let entries_block = le64(&header, 72);
    let entry_count = le32(&header, 80) as usize;
    let entry_size = le32(&header, 84) as usize;
    if entry_count > 1024 || !(128..=4096).contains(&entry_size) || entry_size % 8 != 0 || last_usable >= device.block_count() {
        return Err(Errno::EINVAL);
    }
    let array_bytes = entry_count * entry_size;
    let array_blocks = array_bytes.div_ceil(device.block_size()) as u64;
    check_range(device, entries_block, array_blocks.max(1))?;
    let mut array = vec![0u8; array_blocks as usize * device.block_size()];
    device.read_blocks(entries_block, &mut array)?;
    if crc32(&array[..array_bytes]) != le32(&header, 88) {
        return Err(Errno::EINVAL);
    }
    let mut entries = Vec::new();
    for index in 0..entry_count {
        let entry = &array[index * entry_size..(index + 1) * entry_size];
        let gpt_type: [u8; 16] = entry[..16].try_into().map_err(|_| Errno::EINVAL)?;
        if gpt_type == [0; 16] {
            continue;
        }
        let first_block = le64(entry, 32);
        let last_block = le64(entry, 40);
        if first_block < first_usable || last_block < first_block || last_block > last_usable {
            return Err(Errno::EINVAL);
        }
        let name: String = char::decode_utf16(
            (0..36).map(|unit| u16::from_le_bytes([entry[56 + unit * 2], entry[57 + unit * 2]])).take_while(|&unit| unit != 0),
        )
        .map(|character| character.unwrap_or('?'))
        .collect();
        entries.push(PartitionEntry {
            number: index as u32 + 1,
            first_block,
            block_count: last_block - first_block + 1,
            mbr_type: 0,
            gpt_type,
            name,
        });
    }
    Ok(PartitionTable { scheme: PartitionScheme::Gpt, entries })
}

/// A partition: a window of its disk's blocks, itself a block device.
pub struct Partition {
    name: String,
    disk: Arc<dyn BlockDevice>,
    first_block: u64,
    block_count: u64,
    /// The partition number (the `N` in `vdaN`).
    pub number: u32,
}

impl Partition {
    /// The partition `entry` of `disk`, named like Linux (`vda1`, `mmcblk0p1`).
    pub fn new(disk: Arc<dyn BlockDevice>, entry: &PartitionEntry) -> Self {
        let separator = if disk.name().ends_with(|character: char| character.is_ascii_digit()) { "p" } else { "" };
        Partition {
            name: format!("{}{}{}", disk.name(), separator, entry.number),
            first_block: entry.first_block,
            block_count: entry.block_count,
            number: entry.number,
            disk,
        }
    }

    /// Where the partition starts on its disk.
    pub fn first_block(&self) -> u64 {
        self.first_block
    }

    fn translate(&self, first_block: u64, length: usize) -> Result<u64> {
        let blocks = (length / self.disk.block_size()) as u64;
        match first_block.checked_add(blocks) {
            Some(end) if end <= self.block_count && length % self.disk.block_size() == 0 => Ok(self.first_block + first_block),
            _ => Err(Errno::EINVAL),
        }
    }
}

impl BlockDevice for Partition {
    fn name(&self) -> &str {
        &self.name
    }
    fn block_size(&self) -> usize {
        self.disk.block_size()
    }
    fn block_count(&self) -> u64 {
        self.block_count
    }
    fn read_blocks(&self, first_block: u64, buffer: &mut [u8]) -> Result<()> {
        let block = self.translate(first_block, buffer.len())?;
        self.disk.read_blocks(block, buffer)
    }
    fn write_blocks(&self, first_block: u64, buffer: &[u8]) -> Result<()> {
        let block = self.translate(first_block, buffer.len())?;
        self.disk.write_blocks(block, buffer)
    }
    fn flush(&self) -> Result<()> {
        self.disk.flush()
    }
    fn is_read_only(&self) -> bool {
        self.disk.is_read_only()
    }
    fn max_transfer(&self) -> usize {
        self.disk.max_transfer()
    }
}

/// The partitions of `disk` as block devices (none if it has no table).
pub fn partitions(disk: &Arc<dyn BlockDevice>) -> Result<Vec<Arc<Partition>>> {
    let table = read_partition_table(disk.as_ref())?;
    Ok(table
        .entries
        .iter()
        .filter(|entry| !MBR_EXTENDED_TYPES.contains(&entry.mbr_type))
        .map(|entry| Arc::new(Partition::new(disk.clone(), entry)))
        .collect())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::block::RamDisk;

    fn set_mbr_entry(sector: &mut [u8], index: usize, kind: u8, start: u32, length: u32) {
        let entry = &mut sector[446 + index * 16..446 + (index + 1) * 16];
        entry[4] = kind;
        entry[8..12].copy_from_slice(&start.to_le_bytes());
        entry[12..16].copy_from_slice(&length.to_le_bytes());
    }

    fn write_sector(disk: &RamDisk, block: u64, sector: &[u8]) {
        disk.write_blocks(block, sector).unwrap();
    }

    /// A 4 MiB disk with two primaries and an extended partition holding two logicals.
    pub(crate) fn mbr_disk() -> RamDisk {
        let disk = RamDisk::new("vda", 512, 8192);
        let mut mbr = vec![0u8; 512];
        set_mbr_entry(&mut mbr, 0, 0x83, 2048, 2048);
        set_mbr_entry(&mut mbr, 1, 0x0c, 4096, 1024);
        set_mbr_entry(&mut mbr, 2, 0x05, 5120, 3072);
        mbr[510] = 0x55;
        mbr[511] = 0xaa;
        write_sector(&disk, 0, &mbr);
        let mut first_ebr = vec![0u8; 512];
        set_mbr_entry(&mut first_ebr, 0, 0x83, 1, 999);
        set_mbr_entry(&mut first_ebr, 1, 0x05, 1000, 2072);
        first_ebr[510] = 0x55;
        first_ebr[511] = 0xaa;
        write_sector(&disk, 5120, &first_ebr);
        let mut second_ebr = vec![0u8; 512];
        set_mbr_entry(&mut second_ebr, 0, 0x83, 1, 2071);
        second_ebr[510] = 0x55;
        second_ebr[511] = 0xaa;
        write_sector(&disk, 6120, &second_ebr);
        disk
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn reads_mbr_primaries_and_logicals() {
        let disk = mbr_disk();
        let table = read_partition_table(&disk).unwrap();
        assert_eq!(table.scheme, PartitionScheme::Mbr);
        let summary: Vec<(u32, u64, u64)> = table.entries.iter().map(|e| (e.number, e.first_block, e.block_count)).collect();
        assert_eq!(summary, [(1, 2048, 2048), (2, 4096, 1024), (3, 5120, 3072), (5, 5121, 999), (6, 6121, 2071)]);
        let disk: Arc<dyn BlockDevice> = Arc::new(disk);
        let devices = partitions(&disk).unwrap();
        let names: Vec<&str> = devices.iter().map(|p| p.name()).collect();
        assert_eq!(names, ["vda1", "vda2", "vda5", "vda6"]);
        devices[0].write_blocks(0, &[9; 512]).unwrap();
        let mut back = [0; 512];
        disk.read_blocks(2048, &mut back).unwrap();
        assert_eq!(back, [9; 512]);
        assert_eq!(devices[0].write_blocks(2048, &[0; 512]), Err(Errno::EINVAL), "writes stay inside the partition");
    }

    #[test]
    fn looping_logical_chain_is_refused() {
        let disk = mbr_disk();
        let mut second_ebr = vec![0u8; 512];
        set_mbr_entry(&mut second_ebr, 0, 0x83, 1, 10);
        set_mbr_entry(&mut second_ebr, 1, 0x05, 1000, 10);
        second_ebr[510] = 0x55;
        second_ebr[511] = 0xaa;
        write_sector(&disk, 6120, &second_ebr);
        assert_eq!(read_partition_table(&disk), Err(Errno::EINVAL));
    }

    #[test]
    fn partition_past_the_disk_is_refused_and_no_signature_means_none() {
        let disk = RamDisk::new("vdb", 512, 100);
        assert_eq!(read_partition_table(&disk).unwrap().scheme, PartitionScheme::None);
        let mut mbr = vec![0u8; 512];
        set_mbr_entry(&mut mbr, 0, 0x83, 50, 51);
        mbr[510] = 0x55;
        mbr[511] = 0xaa;
        write_sector(&disk, 0, &mbr);
        assert_eq!(read_partition_table(&disk), Err(Errno::EINVAL));
    }

    fn gpt_disk(corrupt_entries: bool) -> RamDisk {
        let disk = RamDisk::new("mmcblk0", 512, 4096);
        let mut mbr = vec![0u8; 512];
        set_mbr_entry(&mut mbr, 0, MBR_PROTECTIVE_GPT, 1, 4095);
        mbr[510] = 0x55;
        mbr[511] = 0xaa;
        write_sector(&disk, 0, &mbr);
        let mut array = vec![0u8; 128 * 128];
        let entry = &mut array[128..256];
        entry[..16].copy_from_slice(&[0xaf; 16]);
        entry[32..40].copy_from_slice(&100u64.to_le_bytes());
        entry[40..48].copy_from_slice(&1099u64.to_le_bytes());
        for (index, unit) in "root".encode_utf16().enumerate() {
            entry[56 + index * 2..58 + index * 2].copy_from_slice(&unit.to_le_bytes());
        }
        let array_crc = crc32(&array);
        if corrupt_entries {
            array[300] ^= 1;
        }
        disk.write_blocks(2, &array).unwrap();
        let mut header = vec![0u8; 512];
        header[..8].copy_from_slice(b"EFI PART");
        header[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        header[12..16].copy_from_slice(&92u32.to_le_bytes());
        header[24..32].copy_from_slice(&1u64.to_le_bytes());
        header[32..40].copy_from_slice(&4095u64.to_le_bytes());
        header[40..48].copy_from_slice(&34u64.to_le_bytes());
        header[48..56].copy_from_slice(&4062u64.to_le_bytes());
        header[72..80].copy_from_slice(&2u64.to_le_bytes());
        header[80..84].copy_from_slice(&128u32.to_le_bytes());
        header[84..88].copy_from_slice(&128u32.to_le_bytes());
        header[88..92].copy_from_slice(&array_crc.to_le_bytes());
        let header_crc = crc32(&header[..92]);
        header[16..20].copy_from_slice(&header_crc.to_le_bytes());
        write_sector(&disk, 1, &header);
        disk
    }

    #[test]
    fn reads_gpt_and_checks_crcs() {
        let disk = gpt_disk(false);
        let table = read_partition_table(&disk).unwrap();
        assert_eq!(table.scheme, PartitionScheme::Gpt);
        assert_eq!(table.entries.len(), 1);
        let entry = &table.entries[0];
        assert_eq!((entry.number, entry.first_block, entry.block_count, entry.name.as_str()), (2, 100, 1000, "root"));
        let disk: Arc<dyn BlockDevice> = Arc::new(disk);
        assert_eq!(partitions(&disk).unwrap()[0].name(), "mmcblk0p2");
        assert_eq!(read_partition_table(&gpt_disk(true)), Err(Errno::EINVAL));
        let disk = gpt_disk(false);
        let mut header = vec![0u8; 512];
        disk.read_blocks(1, &mut header).unwrap();
        header[40] ^= 1;
        disk.write_blocks(1, &header).unwrap();
        assert_eq!(read_partition_table(&disk), Err(Errno::EINVAL), "header CRC mismatch");
    }
}
