//! ARM PrimeCell PL031 real-time clock: a 32-bit count of seconds since the epoch, identified by its PrimeCell ID registers.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

use hinoki_interface::{RealTimeClock, RtcError};

/// Data register: the current count of seconds.
const DATA: usize = 0x000;
/// Control register: bit 0 starts the counter (it cannot be stopped once started).
const CONTROL: usize = 0x00c;
/// First of the eight identification registers (peripheral ID 0-3, PrimeCell ID 0-3),
/// one byte each in the low bits of a word.
const IDENTIFICATION: usize = 0xfe0;

/// Peripheral ID 0-3 of a PL031 (part number 0x031, designer ARM 0x41), revision bits
/// masked, then the PrimeCell ID 0-3 every PrimeCell carries.
const EXPECTED_IDENTIFICATION: [u8; 8] = [0x31, 0x10, 0x04, 0x00, 0x0d, 0xf0, 0x05, 0xb1];

/// Reads and writes 32-bit device registers at byte offsets (MMIO on hardware, an array in
/// tests).
pub trait Registers: Sync {
    /// The register at `offset`.
    fn read(&self, offset: usize) -> u32;
    /// Writes the register at `offset`.
    fn write(&self, offset: usize, value: u32);
}

/// Registers at a fixed MMIO base, mapped as device memory.
pub struct Mmio {
    base: usize,
}

impl Mmio {
    /// The register block at `base`.
    ///
    /// # Safety
    /// `base` must be the PL031's register block (4 KiB), mapped as device memory for as
    /// long as the value lives.
    pub const unsafe fn new(base: usize) -> Mmio {
        Mmio { base }
    }
}

impl Registers for Mmio {
    fn read(&self, offset: usize) -> u32 {
        // SAFETY: `new`'s contract: the block is mapped device memory; offsets come from the
        // PL031's register map, all inside the 4 KiB block and word-aligned.
        unsafe { core::ptr::read_volatile((self.base + offset) as *const u32) }
    }

    fn write(&self, offset: usize, value: u32) {
        // SAFETY: as for `read`.
        unsafe { core::ptr::write_volatile((self.base + offset) as *mut u32, value) }
    }
}

/// A PL031 real-time clock.
pub struct Pl031<R: Registers> {
    registers: R,
}

impl<R: Registers> Pl031<R> {
    /// Checks the identification registers and starts the counter if it is stopped.
    ///
    /// # Errors
    /// [`RtcError::NotResponding`] if the block does not identify as a PL031.
    pub fn probe(registers: R) -> Result<Self, RtcError> {
        for (index, &expected) in EXPECTED_IDENTIFICATION.iter().enumerate() {
            let mut value = (registers.read(IDENTIFICATION + index * 4) & 0xff) as u8;
            if index == 2 {
                // Peripheral ID 2: revision in the high nibble, designer bits in the low one.
                value &= 0x0f;
            }
            if value != expected {
                return Err(RtcError::NotResponding);
            }
        }
        if registers.read(CONTROL) & 1 == 0 {
            registers.write(CONTROL, 1);
        }
        Ok(Pl031 { registers })
    }
}

impl<R: Registers> RealTimeClock for Pl031<R> {
    fn name(&self) -> &str {
        "pl031"
    }

    fn read_seconds(&self) -> Result<u64, RtcError> {
        Ok(self.registers.read(DATA) as u64)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use core::sync::atomic::{AtomicU32, Ordering};

    struct Fake {
        words: [AtomicU32; 1024],
    }

    impl Fake {
        fn pl031(seconds: u32, revision: u32) -> Fake {
            let fake = Fake { words: core::array::from_fn(|_| AtomicU32::new(0)) };
            for (index, &byte) in EXPECTED_IDENTIFICATION.iter().enumerate() {
                let value = if index == 2 { byte as u32 | (revision << 4) } else { byte as u32 };
                fake.words[(IDENTIFICATION >> 2) + index].store(value, Ordering::Relaxed);
            }
            fake.words[DATA >> 2].store(seconds, Ordering::Relaxed);
            fake
        }
    }

    impl Registers for &Fake {
        fn read(&self, offset: usize) -> u32 {
            self.words[offset >> 2].load(Ordering::Relaxed)
        }

        fn write(&self, offset: usize, value: u32) {
            self.words[offset >> 2].store(value, Ordering::Relaxed);
        }
    }

    #[test]
    fn reads_the_seconds_and_starts_the_counter() {
        let fake = Fake::pl031(1_795_339_815, 1);
        let rtc = Pl031::probe(&fake).expect("a PL031");
        assert_eq!(rtc.read_seconds(), Ok(1_795_339_815));
        assert_eq!(fake.words[CONTROL >> 2].load(Ordering::Relaxed), 1);
    }

    #[test]
    fn another_primecell_is_refused() {
        let fake = Fake::pl031(0, 0);
        // A PL011's part number.
        fake.words[IDENTIFICATION >> 2].store(0x11, Ordering::Relaxed);
        assert!(matches!(Pl031::probe(&fake), Err(RtcError::NotResponding)));
        let empty = Fake { words: core::array::from_fn(|_| AtomicU32::new(0)) };
        assert!(matches!(Pl031::probe(&empty), Err(RtcError::NotResponding)));
    }
}
