//! Boot information from the loader: PVH `hvm_start_info` or multiboot2 tags, turned into a memory map, a command line and the ACPI RSDP address.

use hinoki_arch_x86_64::boot::IDENTITY_MAPPED_BYTES;
use hinoki_arch_x86_64::BootProtocol;
use hinoki_interface::{MemoryKind, MemoryMap, MemoryMapFull};

/// Capacity of the memory map (RAM ranges and reservations each).
pub const MEMORY_MAP_CAPACITY: usize = 64;
/// Longest command line kept; longer ones are cut at a character boundary.
pub const COMMAND_LINE_CAPACITY: usize = 1024;

const PVH_START_INFO_MAGIC: u32 = 0x336e_c578;
const PVH_START_INFO_SIZE: u64 = 56;
const PVH_MEMORY_MAP_ENTRY_SIZE: u64 = 24;
/// E820 / PVH / multiboot2 type of usable RAM.
const MEMORY_TYPE_RAM: u32 = 1;

const MULTIBOOT2_TAG_END: u32 = 0;
const MULTIBOOT2_TAG_COMMAND_LINE: u32 = 1;
const MULTIBOOT2_TAG_MEMORY_MAP: u32 = 6;
const MULTIBOOT2_TAG_ACPI_OLD_RSDP: u32 = 14;
const MULTIBOOT2_TAG_ACPI_NEW_RSDP: u32 = 15;

/// Why the loader's information could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootInformationError {
    /// Entered through the multiboot2 entry with a magic that is not multiboot2's.
    UnknownProtocol(u32),
    /// `hvm_start_info` does not start with its magic.
    BadPvhMagic(u32),
    /// The loader gave no memory map (PVH version 0, or no multiboot2 tag 6).
    NoMemoryMap,
    /// A null information pointer.
    NullPointer,
    /// More regions than [`MEMORY_MAP_CAPACITY`].
    TooManyRegions,
}

impl From<MemoryMapFull> for BootInformationError {
    fn from(_: MemoryMapFull) -> Self {
        BootInformationError::TooManyRegions
    }
}

/// What the loader told the kernel.
pub struct BootInformation {
    /// `"PVH"` or `"multiboot2"`.
    pub protocol: &'static str,
    /// RAM from the loader's map, with the boot information reserved.
    pub memory: MemoryMap<MEMORY_MAP_CAPACITY>,
    /// Number of RAM entries in the loader's map.
    pub ram_entries: usize,
    /// RAM above the boot identity map, left out of the memory map.
    pub unmapped_ram: u64,
    command_line: [u8; COMMAND_LINE_CAPACITY],
    command_line_length: usize,
    /// Physical address of the ACPI RSDP, when the loader passed one.
    pub rsdp: Option<usize>,
}

impl BootInformation {
    fn empty(protocol: &'static str) -> Self {
        BootInformation {
            protocol,
            memory: MemoryMap::new(),
            ram_entries: 0,
            unmapped_ram: 0,
            command_line: [0; COMMAND_LINE_CAPACITY],
            command_line_length: 0,
            rsdp: None,
        }
    }

    /// The command line (empty when the loader gave none).
    pub fn command_line(&self) -> &str {
        let bytes = &self.command_line[..self.command_line_length];
        match core::str::from_utf8(bytes) {
            Ok(text) => text,
            Err(error) => core::str::from_utf8(&bytes[..error.valid_up_to()]).unwrap_or(""),
        }
    }

    fn add_ram(&mut self, start: u64, size: u64, kind: u32) -> Result<(), BootInformationError> {
        if kind == MEMORY_TYPE_RAM && size > 0 {
            let end = start.saturating_add(size);
            let mapped_end = end.min(IDENTITY_MAPPED_BYTES);
            self.unmapped_ram += end - mapped_end.max(start);
            if mapped_end > start {
                self.memory.add_ram(start, mapped_end - start)?;
            }
            self.ram_entries += 1;
        }
        Ok(())
    }

    /// Copies the NUL-terminated string at `address`; returns the bytes it occupies (with the NUL).
    ///
    /// # Safety
    /// `address` must point at a readable NUL-terminated string (or one longer than the capacity).
    unsafe fn copy_command_line(&mut self, address: usize) -> u64 {
        let mut length = 0;
        while length < COMMAND_LINE_CAPACITY {
            // SAFETY: the caller guarantees the string is readable up to its NUL.
            let byte = unsafe { read::<u8>(address + length) };
            if byte == 0 {
                break;
            }
            self.command_line[length] = byte;
            length += 1;
        }
        self.command_line_length = length;
        length as u64 + 1
    }
}

/// Reads a `T` at physical address `address` (identity-mapped).
///
/// # Safety
/// `address .. address + size_of::<T>()` must be readable memory holding a valid `T`.
unsafe fn read<T: Copy>(address: usize) -> T {
    // SAFETY: forwarded from the caller; unaligned reads are allowed for packed loader data.
    unsafe { core::ptr::read_unaligned(address as *const T) }
}

/// Parses the loader's information for `protocol`.
///
/// # Safety
/// The address in `protocol` must be the loader's information structure, identity-mapped and
/// unchanged since boot, and every address inside it must point at what the protocol says.
pub unsafe fn parse(protocol: BootProtocol) -> Result<BootInformation, BootInformationError> {
    match protocol {
        // SAFETY: forwarded from the caller.
        BootProtocol::Pvh(address) => unsafe { parse_pvh(address) },
        // SAFETY: forwarded from the caller.
        BootProtocol::Multiboot2(address) => unsafe { parse_multiboot2(address) },
        BootProtocol::Unknown { magic, .. } => Err(BootInformationError::UnknownProtocol(magic)),
    }
}

/// # Safety
/// As [`parse`], for a PVH `hvm_start_info`.
unsafe fn parse_pvh(address: usize) -> Result<BootInformation, BootInformationError> {
    if address == 0 {
        return Err(BootInformationError::NullPointer);
    }
    // SAFETY (all reads below): the caller guarantees `address` is an `hvm_start_info`,
    // whose fixed fields are at these offsets (Xen's public arch-x86/hvm/start_info.h).
    let magic = unsafe { read::<u32>(address) };
    if magic != PVH_START_INFO_MAGIC {
        return Err(BootInformationError::BadPvhMagic(magic));
    }
    let mut information = BootInformation::empty("PVH");
    // SAFETY: see above.
    let (version, command_line, rsdp) = unsafe { (read::<u32>(address + 4), read::<u64>(address + 24), read::<u64>(address + 32)) };
    if version < 1 {
        return Err(BootInformationError::NoMemoryMap);
    }
    // SAFETY: version 1 adds the memory map fields.
    let (map_address, map_entries) = unsafe { (read::<u64>(address + 40), read::<u32>(address + 48)) };
    if map_address == 0 || map_entries == 0 {
        return Err(BootInformationError::NoMemoryMap);
    }
    for index in 0..map_entries as u64 {
        let entry = (map_address + index * PVH_MEMORY_MAP_ENTRY_SIZE) as usize;
        // SAFETY: the loader's map has `map_entries` entries of {address, size, type, reserved}.
        let (start, size, kind) = unsafe { (read::<u64>(entry), read::<u64>(entry + 8), read::<u32>(entry + 16)) };
        information.add_ram(start, size, kind)?;
    }
    information.memory.reserve(address as u64, PVH_START_INFO_SIZE, MemoryKind::Reserved)?;
    information.memory.reserve(map_address, map_entries as u64 * PVH_MEMORY_MAP_ENTRY_SIZE, MemoryKind::Reserved)?;
    if command_line != 0 {
        // SAFETY: `cmdline_paddr` points at a NUL-terminated string.
        let occupied = unsafe { information.copy_command_line(command_line as usize) };
        information.memory.reserve(command_line, occupied, MemoryKind::Reserved)?;
    }
    information.rsdp = (rsdp != 0).then_some(rsdp as usize);
    Ok(information)
}

/// # Safety
/// As [`parse`], for a multiboot2 boot information structure.
unsafe fn parse_multiboot2(address: usize) -> Result<BootInformation, BootInformationError> {
    if address == 0 {
        return Err(BootInformationError::NullPointer);
    }
    let mut information = BootInformation::empty("multiboot2");
    // SAFETY: the structure starts with its total size.
    let total_size = unsafe { read::<u32>(address) } as usize;
    let end = address + total_size;
    let mut tag = address + 8;
    let mut saw_memory_map = false;
    while tag + 8 <= end {
        // SAFETY: tags lie within `total_size` and start with {type, size}.
        let (kind, size) = unsafe { (read::<u32>(tag), read::<u32>(tag + 4) as usize) };
        if kind == MULTIBOOT2_TAG_END || size < 8 {
            break;
        }
        match kind {
            MULTIBOOT2_TAG_COMMAND_LINE => {
                // SAFETY: tag 1 holds a NUL-terminated string after its header.
                unsafe { information.copy_command_line(tag + 8) };
            }
            MULTIBOOT2_TAG_MEMORY_MAP => {
                // SAFETY: tag 6: entry_size, entry_version, then entries of {base, length, type, reserved}.
                let entry_size = unsafe { read::<u32>(tag + 8) } as usize;
                if entry_size >= 20 {
                    let mut entry = tag + 16;
                    while entry + entry_size <= tag + size {
                        // SAFETY: inside the tag, as above.
                        let (start, length, memory_type) = unsafe { (read::<u64>(entry), read::<u64>(entry + 8), read::<u32>(entry + 16)) };
                        information.add_ram(start, length, memory_type)?;
                        entry += entry_size;
                    }
                    saw_memory_map = true;
                }
            }
            MULTIBOOT2_TAG_ACPI_NEW_RSDP => information.rsdp = Some(tag + 8),
            MULTIBOOT2_TAG_ACPI_OLD_RSDP if information.rsdp.is_none() => information.rsdp = Some(tag + 8),
            _ => {}
        }
        tag += size.div_ceil(8) * 8;
    }
    if !saw_memory_map {
        return Err(BootInformationError::NoMemoryMap);
    }
    information.memory.reserve(address as u64, total_size as u64, MemoryKind::Reserved)?;
    Ok(information)
}
