//! ATAG list parser (the 32-bit ARM boot-tag format QEMU writes at 0x100 when it has no DTB to pass): bounded, validating, never panics.

/// ATAG_NONE: ends the list.
pub const TAG_NONE: u32 = 0x0000_0000;
/// ATAG_CORE: must come first.
pub const TAG_CORE: u32 = 0x5441_0001;
/// ATAG_MEM: one physical RAM range.
pub const TAG_MEMORY: u32 = 0x5441_0002;
/// ATAG_CMDLINE: the kernel command line, NUL-terminated.
pub const TAG_COMMAND_LINE: u32 = 0x5441_0009;

/// Most tags visited, whatever the sizes say.
pub const MAX_TAGS: usize = 128;

const HEADER_WORDS: usize = 2;

/// One decoded tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tag<'a> {
    /// ATAG_CORE; the flags/page size/root device fields when present (a bare
    /// two-word ATAG_CORE is allowed).
    Core {
        /// Bit 0: root read-only.
        flags: u32,
        /// System page size.
        page_size: u32,
    },
    /// ATAG_MEM: `size` bytes of RAM at `start`.
    Memory {
        /// First byte.
        start: u32,
        /// Length in bytes.
        size: u32,
    },
    /// ATAG_CMDLINE: the bytes before the first NUL.
    CommandLine(&'a [u8]),
    /// Any other tag, with its payload.
    Other {
        /// The tag value.
        tag: u32,
        /// The payload after the two-word header.
        payload: &'a [u8],
    },
}

/// Why a walk stopped early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AtagError {
    /// The first tag is not ATAG_CORE: this is not an ATAG list.
    NotAtags,
    /// A tag claims fewer than two words, or a known tag is shorter than its fields.
    BadSize {
        /// Byte offset of the tag in the list.
        offset: usize,
    },
    /// A tag runs past the end of the readable range.
    Truncated {
        /// Byte offset of the tag in the list.
        offset: usize,
    },
    /// More than [`MAX_TAGS`] tags without ATAG_NONE.
    TooManyTags,
}

/// Walks an ATAG list held in `bytes`. Yields each tag, then stops at ATAG_NONE, at the end
/// of `bytes`, or after yielding one error.
pub struct Atags<'a> {
    bytes: &'a [u8],
    offset: usize,
    visited: usize,
    finished: bool,
}

impl<'a> Atags<'a> {
    /// Starts a walk over `bytes`, which should begin with ATAG_CORE.
    pub fn new(bytes: &'a [u8]) -> Self {
        Atags { bytes, offset: 0, visited: 0, finished: false }
    }

    /// Whether `bytes` starts with a plausible ATAG_CORE header.
    pub fn looks_valid(bytes: &[u8]) -> bool {
        matches!((word(bytes, 0), word(bytes, 4)), (Some(size), Some(TAG_CORE)) if size == 2 || size == 5)
    }

    /// Bytes walked so far, including the terminating ATAG_NONE once reached.
    pub fn consumed(&self) -> usize {
        self.offset
    }

    fn fail(&mut self, error: AtagError) -> Option<Result<Tag<'a>, AtagError>> {
        self.finished = true;
        Some(Err(error))
    }
}

fn word(bytes: &[u8], offset: usize) -> Option<u32> {
    let chunk = bytes.get(offset..offset.checked_add(4)?)?;
    Some(u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]))
}

impl<'a> Iterator for Atags<'a> {
    type Item = Result<Tag<'a>, AtagError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        let offset = self.offset;
        if self.visited == MAX_TAGS {
            return self.fail(AtagError::TooManyTags);
        }
        let (Some(size_words), Some(tag)) = (word(self.bytes, offset), word(self.bytes, offset + 4)) else {
            return self.fail(if self.visited == 0 { AtagError::NotAtags } else { AtagError::Truncated { offset } });
        };
        if self.visited == 0 && tag != TAG_CORE {
            return self.fail(AtagError::NotAtags);
        }
        if tag == TAG_NONE {
            self.finished = true;
            self.offset = (offset + HEADER_WORDS * 4).min(self.bytes.len());
            return None;
        }
        let size_words = size_words as usize;
        if size_words < HEADER_WORDS {
            return self.fail(AtagError::BadSize { offset });
        }
        let Some(end) = size_words.checked_mul(4).and_then(|length| offset.checked_add(length)) else {
            return self.fail(AtagError::Truncated { offset });
        };
        let Some(payload) = self.bytes.get(offset + HEADER_WORDS * 4..end) else {
            return self.fail(AtagError::Truncated { offset });
        };
        let parsed = match tag {
            TAG_CORE if payload.is_empty() => Tag::Core { flags: 0, page_size: 0 },
            TAG_CORE => match (word(payload, 0), word(payload, 4)) {
                (Some(flags), Some(page_size)) => Tag::Core { flags, page_size },
                _ => return self.fail(AtagError::BadSize { offset }),
            },
            TAG_MEMORY => match (word(payload, 0), word(payload, 4)) {
                (Some(size), Some(start)) => Tag::Memory { start, size },
                _ => return self.fail(AtagError::BadSize { offset }),
            },
            TAG_COMMAND_LINE => {
                let length = payload.iter().position(|&byte| byte == 0).unwrap_or(payload.len());
                Tag::CommandLine(&payload[..length])
            }
            tag => Tag::Other { tag, payload },
        };
        self.offset = end;
        self.visited += 1;
        Some(Ok(parsed))
    }
}

/// The longest valid UTF-8 prefix of `bytes` (a command line with stray bytes keeps its
/// readable start rather than vanishing).
pub fn utf8_prefix(bytes: &[u8]) -> &str {
    match core::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => core::str::from_utf8(&bytes[..error.valid_up_to()]).unwrap_or(""),
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    fn encode(words: &[u32]) -> Vec<u8> {
        words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    /// What QEMU 10 writes at 0x100 for `-M raspi3b -append 'ktest=foo bar'`.
    fn qemu_list() -> Vec<u8> {
        encode(&[
            5,
            TAG_CORE,
            1,
            0x1000,
            0, //
            4,
            TAG_MEMORY,
            0x3c00_0000,
            0, //
            6,
            TAG_COMMAND_LINE,
            0x7365_746b,
            0x6f66_3d74,
            0x6162_206f,
            0x0000_0072, //
            0,
            0,
        ])
    }

    #[test]
    fn parses_what_qemu_writes() {
        let bytes = qemu_list();
        assert!(Atags::looks_valid(&bytes));
        let tags: Vec<_> = Atags::new(&bytes).collect();
        assert_eq!(
            tags,
            [
                Ok(Tag::Core { flags: 1, page_size: 0x1000 }),
                Ok(Tag::Memory { start: 0, size: 0x3c00_0000 }),
                Ok(Tag::CommandLine(b"ktest=foo bar")),
            ]
        );
    }

    #[test]
    fn every_truncation_ends_cleanly() {
        let bytes = qemu_list();
        for length in 0..bytes.len() {
            let tags: Vec<_> = Atags::new(&bytes[..length]).collect();
            assert!(tags.len() <= 4, "length {}", length);
            // Anything before the cut is still reported; the last item may be an error.
            for tag in &tags[..tags.len().saturating_sub(1)] {
                assert!(tag.is_ok());
            }
        }
        // Cut inside the command line: the earlier tags survive, then Truncated.
        let tags: Vec<_> = Atags::new(&bytes[..56]).collect();
        assert_eq!(tags.last(), Some(&Err(AtagError::Truncated { offset: 36 })));
        assert_eq!(tags.len(), 3);
    }

    #[test]
    fn rejects_lists_not_starting_with_core() {
        assert_eq!(Atags::new(&[]).collect::<Vec<_>>(), [Err(AtagError::NotAtags)]);
        let bytes = encode(&[4, TAG_MEMORY, 0x1000, 0, 0, 0]);
        assert!(!Atags::looks_valid(&bytes));
        assert_eq!(Atags::new(&bytes).collect::<Vec<_>>(), [Err(AtagError::NotAtags)]);
        // A DTB header is not an ATAG list either.
        assert!(!Atags::looks_valid(&0xd00d_feedu32.to_be_bytes()));
    }

    #[test]
    fn zero_and_one_word_sizes_do_not_loop() {
        for size in [0u32, 1] {
            let bytes = encode(&[2, TAG_CORE, size, 0x1234_5678, 0, 0]);
            assert_eq!(
                Atags::new(&bytes).collect::<Vec<_>>(),
                [Ok(Tag::Core { flags: 0, page_size: 0 }), Err(AtagError::BadSize { offset: 8 })]
            );
        }
    }

    #[test]
    fn huge_sizes_and_short_known_tags() {
        let bytes = encode(&[2, TAG_CORE, u32::MAX, TAG_COMMAND_LINE, 0]);
        assert_eq!(Atags::new(&bytes).nth(1), Some(Err(AtagError::Truncated { offset: 8 })));
        let bytes = encode(&[2, TAG_CORE, 3, TAG_MEMORY, 0x1000, 0, 0]);
        assert_eq!(Atags::new(&bytes).nth(1), Some(Err(AtagError::BadSize { offset: 8 })));
    }

    #[test]
    fn endless_lists_are_cut_off() {
        let mut words = std::vec![2, TAG_CORE];
        for _ in 0..1000 {
            words.extend([2, 0x1234]);
        }
        let bytes = encode(&words);
        let tags: Vec<_> = Atags::new(&bytes).collect();
        assert_eq!(tags.len(), MAX_TAGS + 1);
        assert_eq!(tags.last(), Some(&Err(AtagError::TooManyTags)));
    }

    #[test]
    fn garbage_never_panics() {
        // A deterministic pseudo-random byte soup behind a valid ATAG_CORE.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for round in 0..2000 {
            let mut bytes = encode(&[2, TAG_CORE]);
            for _ in 0..(round % 97) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let value = state as u32;
                // Keep sizes small sometimes so tags actually parse.
                bytes.extend_from_slice(&(if value & 1 == 0 { value % 8 } else { value }).to_le_bytes());
            }
            let count = Atags::new(&bytes).count();
            assert!(count <= MAX_TAGS + 1);
        }
    }

    #[test]
    fn command_line_without_nul_and_with_bad_utf8() {
        let mut bytes = encode(&[2, TAG_CORE, 3, TAG_COMMAND_LINE]);
        bytes.extend_from_slice(b"ktst");
        bytes.extend(encode(&[0, 0]));
        assert_eq!(Atags::new(&bytes).nth(1), Some(Ok(Tag::CommandLine(b"ktst"))));
        assert_eq!(utf8_prefix(b"ktest \xff\xfe"), "ktest ");
        assert_eq!(utf8_prefix(b"console=ttyS1"), "console=ttyS1");
    }
}
