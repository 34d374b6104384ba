//! What the boot loader told the kernel: RAM ranges, reservations and the command line, read from the ATAG list (QEMU direct boot) or the DTB (Raspberry Pi firmware, QEMU `-dtb`).

use crate::atags::{utf8_prefix, AtagError, Atags, Tag};

/// Big-endian magic at the start of a flattened device tree.
pub const DEVICE_TREE_MAGIC: u32 = 0xd00d_feed;
/// Most RAM ranges and reservations recorded from the boot loader.
pub const MAX_RANGES: usize = 8;
/// Longest command line kept; longer ones are cut at a character boundary.
pub const COMMAND_LINE_CAPACITY: usize = 1024;

/// Where the boot information came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootSource {
    /// An ATAG list at `address`, `length` bytes long including ATAG_NONE.
    Atags {
        /// Physical address of ATAG_CORE.
        address: u64,
        /// Bytes up to and including the terminating tag (or the readable end).
        length: u64,
    },
    /// A flattened device tree.
    DeviceTree {
        /// Physical address of the blob.
        address: u64,
        /// The blob's total size.
        size: u64,
    },
    /// Neither: the board's built-in defaults apply.
    Nothing,
}

/// A physical range `start..end`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Range {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

/// A fixed-capacity list of ranges.
#[derive(Clone, Copy, Debug)]
pub struct Ranges {
    items: [Range; MAX_RANGES],
    count: usize,
    /// Ranges dropped because the list was full.
    pub dropped: usize,
}

impl Ranges {
    const fn new() -> Self {
        Ranges { items: [Range { start: 0, end: 0 }; MAX_RANGES], count: 0, dropped: 0 }
    }

    fn push(&mut self, start: u64, size: u64) {
        if size == 0 {
            return;
        }
        match self.items.get_mut(self.count) {
            Some(slot) => {
                *slot = Range { start, end: start.saturating_add(size) };
                self.count += 1;
            }
            None => self.dropped += 1,
        }
    }

    /// The recorded ranges.
    pub fn as_slice(&self) -> &[Range] {
        &self.items[..self.count]
    }
}

/// A command line copied out of the boot blob, so it stays valid whatever happens to the
/// memory the blob lived in.
#[derive(Clone, Copy)]
pub struct CommandLine {
    bytes: [u8; COMMAND_LINE_CAPACITY],
    length: usize,
}

impl CommandLine {
    /// An empty command line.
    pub const fn new() -> Self {
        CommandLine { bytes: [0; COMMAND_LINE_CAPACITY], length: 0 }
    }

    /// Copies `text`, cut at the last character boundary that fits, surrounding
    /// whitespace trimmed.
    pub fn from_text(text: &str) -> Self {
        let text = text.trim();
        let mut length = text.len().min(COMMAND_LINE_CAPACITY);
        while !text.is_char_boundary(length) {
            length -= 1;
        }
        let mut line = CommandLine::new();
        line.bytes[..length].copy_from_slice(&text.as_bytes()[..length]);
        line.length = length;
        line
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        utf8_prefix(&self.bytes[..self.length])
    }
}

impl Default for CommandLine {
    fn default() -> Self {
        Self::new()
    }
}

/// Everything taken from the boot loader.
#[derive(Clone, Copy)]
pub struct BootInformation {
    /// Where it came from.
    pub source: BootSource,
    /// RAM ranges (ATAG_MEM or `/memory`); empty when the loader said nothing.
    pub ram: Ranges,
    /// Reservations inside RAM (DTB memreserve and `/reserved-memory`).
    pub reserved: Ranges,
    /// The kernel command line.
    pub command_line: CommandLine,
    /// Why the ATAG walk stopped early, if it did.
    pub atag_error: Option<AtagError>,
}

impl BootInformation {
    /// No boot information: defaults apply.
    pub const fn nothing() -> Self {
        BootInformation {
            source: BootSource::Nothing,
            ram: Ranges::new(),
            reserved: Ranges::new(),
            command_line: CommandLine::new(),
            atag_error: None,
        }
    }

    /// Reads an ATAG list from `bytes`, which were found at physical `address`. Tags
    /// before a malformed one are kept; the error is recorded.
    pub fn from_atags(bytes: &[u8], address: u64) -> Self {
        let mut information = BootInformation::nothing();
        let mut walk = Atags::new(bytes);
        for tag in walk.by_ref() {
            match tag {
                Ok(Tag::Memory { start, size }) => information.ram.push(start as u64, size as u64),
                Ok(Tag::CommandLine(text)) => information.command_line = CommandLine::from_text(utf8_prefix(text)),
                Ok(_) => {}
                Err(error) => information.atag_error = Some(error),
            }
        }
        if information.atag_error == Some(AtagError::NotAtags) {
            return BootInformation { atag_error: Some(AtagError::NotAtags), ..BootInformation::nothing() };
        }
        information.source = BootSource::Atags { address, length: walk.consumed() as u64 };
        information
    }

    /// Reads a DTB: `/memory*` nodes, memory reservations, `/reserved-memory` children and
    /// `/chosen/bootargs`.
    pub fn from_device_tree(tree: &fdt::Fdt<'_>, address: u64) -> Self {
        let mut information = BootInformation::nothing();
        information.source = BootSource::DeviceTree { address, size: tree.total_size() as u64 };
        for node in tree.all_nodes().filter(|node| node.name == "memory" || node.name.starts_with("memory@")) {
            for region in node.reg().into_iter().flatten() {
                information.ram.push(region.starting_address as u64, region.size.unwrap_or(0) as u64);
            }
        }
        for reservation in tree.memory_reservations() {
            information.reserved.push(reservation.address() as u64, reservation.size() as u64);
        }
        if let Some(reserved) = top_level_node(tree, "reserved-memory") {
            for child in reserved.children() {
                for region in child.reg().into_iter().flatten() {
                    information.reserved.push(region.starting_address as u64, region.size.unwrap_or(0) as u64);
                }
            }
        }
        if let Some(arguments) = top_level_node(tree, "chosen").and_then(|chosen| chosen.property("bootargs")) {
            let text = arguments.value.split(|&byte| byte == 0).next().unwrap_or(&[]);
            information.command_line = CommandLine::from_text(utf8_prefix(text));
        }
        information
    }

    /// Looks at the boot loader's `x0` and reads whatever it points to: a DTB anywhere
    /// below `ram_end`, or an ATAG list that must end below `atag_end` (the kernel image).
    ///
    /// # Safety
    /// Memory from `x0` up to `atag_end` (for ATAGs) or `ram_end` (for a DTB) must be
    /// readable RAM that nothing writes while this runs, and a DTB found there must be
    /// readable for its header's total size.
    pub unsafe fn discover(boot_argument: usize, atag_end: usize, ram_end: usize) -> Self {
        if boot_argument == 0 || !boot_argument.is_multiple_of(8) || boot_argument.saturating_add(8) > ram_end {
            return BootInformation::nothing();
        }
        // SAFETY: `x0` is 8-byte aligned and the 8 bytes there lie in RAM, which the
        // caller guarantees is readable.
        let header = unsafe { core::ptr::read_volatile(boot_argument as *const [u8; 8]) };
        if u32::from_be_bytes([header[0], header[1], header[2], header[3]]) == DEVICE_TREE_MAGIC {
            // SAFETY: a DTB header is at `x0`; the caller guarantees the blob is readable,
            // and `from_ptr` bounds every later read by the header's total size.
            return match unsafe { fdt::Fdt::from_ptr(boot_argument as *const u8) } {
                Ok(tree) => BootInformation::from_device_tree(&tree, boot_argument as u64),
                Err(_) => BootInformation::nothing(),
            };
        }
        if boot_argument >= atag_end || !Atags::looks_valid(&header) {
            return BootInformation::nothing();
        }
        // SAFETY: `[x0, atag_end)` is readable, stable RAM by the caller's guarantee.
        let bytes = unsafe { core::slice::from_raw_parts(boot_argument as *const u8, atag_end - boot_argument) };
        BootInformation::from_atags(bytes, boot_argument as u64)
    }
}

/// The node `/name`. fdt 0.1.5's path lookup misses nodes in blobs that QEMU has edited
/// (seen with `/reserved-memory` after `-dtb`), so fall back to a walk over all nodes; these
/// names are used only at the top level.
fn top_level_node<'b, 'a>(tree: &'b fdt::Fdt<'a>, name: &str) -> Option<fdt::node::FdtNode<'b, 'a>> {
    let mut path = [0u8; 32];
    let length = name.len() + 1;
    let found = path.get_mut(..length).and_then(|slot| {
        slot[0] = b'/';
        slot[1..].copy_from_slice(name.as_bytes());
        core::str::from_utf8(slot).ok()
    });
    found.and_then(|path| tree.find_node(path)).or_else(|| tree.all_nodes().find(|node| node.name == name))
}

/// Which UART carries the console.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsoleChoice {
    /// PL011 UART0 on GPIO14/15 ALT0 (`console=ttyAMA0`, the default).
    Pl011,
    /// The mini-UART on GPIO14/15 ALT5 (`console=ttyS0`, Linux's name for it on the Pi, or
    /// `console=ttyS1`, QEMU's second `-serial`).
    MiniUart,
}

/// The console the command line asks for: the last `console=` naming a UART this board has
/// wins (options after a comma, like `,115200n8`, are ignored); PL011 otherwise.
pub fn console_choice(command_line: &str) -> ConsoleChoice {
    let mut choice = ConsoleChoice::Pl011;
    for word in command_line.split_ascii_whitespace() {
        let Some(value) = word.strip_prefix("console=") else { continue };
        match value.split(',').next().unwrap_or("") {
            "ttyAMA0" => choice = ConsoleChoice::Pl011,
            "ttyS0" | "ttyS1" => choice = ConsoleChoice::MiniUart,
            _ => {}
        }
    }
    choice
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::atags::{TAG_COMMAND_LINE, TAG_CORE, TAG_MEMORY};
    use std::vec::Vec;

    fn encode(words: &[u32]) -> Vec<u8> {
        words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    #[test]
    fn atags_give_memory_and_command_line() {
        let mut bytes = encode(&[5, TAG_CORE, 1, 0x1000, 0, 4, TAG_MEMORY, 0x3c00_0000, 0, 4, TAG_COMMAND_LINE]);
        bytes.extend_from_slice(b"ktest\0\0\0");
        bytes.extend(encode(&[0, 0]));
        bytes.extend([0xaa; 64]);
        let information = BootInformation::from_atags(&bytes, 0x100);
        assert_eq!(information.source, BootSource::Atags { address: 0x100, length: 60 });
        assert_eq!(information.ram.as_slice(), [Range { start: 0, end: 0x3c00_0000 }]);
        assert_eq!(information.command_line.as_str(), "ktest");
        assert_eq!(information.atag_error, None);
    }

    #[test]
    fn truncated_atags_keep_what_parsed() {
        let bytes = encode(&[5, TAG_CORE, 1, 0x1000, 0, 4, TAG_MEMORY, 0x3c00_0000, 0, 40, TAG_COMMAND_LINE, 0]);
        let information = BootInformation::from_atags(&bytes, 0x100);
        assert_eq!(information.ram.as_slice().len(), 1);
        assert_eq!(information.command_line.as_str(), "");
        assert!(matches!(information.atag_error, Some(AtagError::Truncated { offset: 36 })));
        let garbage = BootInformation::from_atags(&[0xff; 32], 0x100);
        assert_eq!(garbage.source, BootSource::Nothing);
    }

    #[test]
    fn command_lines_are_cut_on_character_boundaries() {
        let long = "é".repeat(COMMAND_LINE_CAPACITY);
        let line = CommandLine::from_text(&long);
        assert_eq!(line.as_str().len(), COMMAND_LINE_CAPACITY);
        assert!(line.as_str().chars().all(|c| c == 'é'));
        assert_eq!(CommandLine::from_text("  ktest \n").as_str(), "ktest");
    }

    #[test]
    fn ranges_report_overflow() {
        let mut ranges = Ranges::new();
        for index in 0..(MAX_RANGES as u64 + 3) {
            ranges.push(index * 0x1000, 0x1000);
        }
        ranges.push(0, 0);
        assert_eq!(ranges.as_slice().len(), MAX_RANGES);
        assert_eq!(ranges.dropped, 3);
    }

    #[test]
    fn console_selection() {
        assert_eq!(console_choice(""), ConsoleChoice::Pl011);
        assert_eq!(console_choice("ktest console=ttyS1"), ConsoleChoice::MiniUart);
        assert_eq!(console_choice("console=ttyS0,115200 console=tty1"), ConsoleChoice::MiniUart);
        assert_eq!(console_choice("console=ttyS1 console=ttyAMA0,115200n8"), ConsoleChoice::Pl011);
        assert_eq!(console_choice("xconsole=ttyS1"), ConsoleChoice::Pl011);
    }
}

#[cfg(test)]
mod device_tree_tests {
    use super::*;

    /// Written by `testdata/make_minimal_dtb.py`: /memory@0 of 0x3b40_0000 bytes, a
    /// memreserve at 0x200_0000, a /reserved-memory child at 0x100_0000, bootargs.
    const MINIMAL: &[u8] = include_bytes!("testdata/minimal.dtb");
    /// The same blob as QEMU 10 hands it to the kernel (`-M raspi3b,dumpdtb=...`): QEMU
    /// rewrites /memory to 0x3c00_0000 and pads the blob.
    const EDITED_BY_QEMU: &[u8] = include_bytes!("testdata/qemu.dtb");

    #[test]
    fn device_tree_edited_by_qemu() {
        let tree = fdt::Fdt::new(EDITED_BY_QEMU).unwrap();
        let information = BootInformation::from_device_tree(&tree, 0x800_0000);
        assert_eq!(information.ram.as_slice(), [Range { start: 0, end: 0x3c00_0000 }]);
        assert_eq!(
            information.reserved.as_slice(),
            [Range { start: 0x200_0000, end: 0x200_4000 }, Range { start: 0x100_0000, end: 0x101_0000 }]
        );
        assert_eq!(information.command_line.as_str(), "ktest from-dtb");
    }

    #[test]
    fn device_tree_gives_memory_reservations_and_bootargs() {
        let tree = fdt::Fdt::new(MINIMAL).unwrap();
        let information = BootInformation::from_device_tree(&tree, 0x800_0000);
        assert_eq!(information.source, BootSource::DeviceTree { address: 0x800_0000, size: MINIMAL.len() as u64 });
        assert_eq!(information.ram.as_slice(), [Range { start: 0, end: 0x3b40_0000 }]);
        assert_eq!(
            information.reserved.as_slice(),
            [Range { start: 0x200_0000, end: 0x200_4000 }, Range { start: 0x100_0000, end: 0x101_0000 }]
        );
        assert_eq!(information.command_line.as_str(), "ktest from-dtb");
    }
}
