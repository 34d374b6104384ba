//! ARM PrimeCell PL011 UART: polled transmit and receive, baud-rate divisors from the reference clock.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

use hinoki_interface::Console;

const DATA: usize = 0x00;
const FLAGS: usize = 0x18;
const INTEGER_BAUD: usize = 0x24;
const FRACTIONAL_BAUD: usize = 0x28;
const LINE_CONTROL: usize = 0x2c;
const CONTROL: usize = 0x30;
const INTERRUPT_MASK: usize = 0x38;
const INTERRUPT_CLEAR: usize = 0x44;

const FLAG_BUSY: u32 = 1 << 3;
const FLAG_RECEIVE_EMPTY: u32 = 1 << 4;
const FLAG_TRANSMIT_FULL: u32 = 1 << 5;

const INTERRUPT_RECEIVE: u32 = 1 << 4;
const INTERRUPT_RECEIVE_TIMEOUT: u32 = 1 << 6;

/// Integer and fractional baud divisors (IBRD, FBRD) for `clock_hz` and `baud`:
/// divisor = clock / (16 * baud), fraction in 64ths, rounded to nearest.
pub fn baud_divisors(clock_hz: u32, baud: u32) -> Option<(u32, u32)> {
    if baud == 0 {
        return None;
    }
    // divisor * 64 = clock * 4 / baud; add baud/2 to round.
    let scaled = (clock_hz as u64 * 4 + baud as u64 / 2) / baud as u64;
    let integer = (scaled >> 6) as u32;
    let fraction = (scaled & 0x3f) as u32;
    if integer == 0 || integer > 0xffff {
        return None;
    }
    Some((integer, fraction))
}

/// A PL011 at a fixed MMIO base.
pub struct Pl011 {
    base: usize,
}

impl Pl011 {
    /// Wraps the UART at `base` without touching it.
    ///
    /// # Safety
    /// `base` must be the address of a PL011 register block, mapped as device memory, and
    /// no other code may drive the same UART concurrently.
    pub const unsafe fn new(base: usize) -> Self {
        Pl011 { base }
    }

    fn read(&self, offset: usize) -> u32 {
        // SAFETY: `new`'s contract: `base + offset` is a PL011 register.
        unsafe { core::ptr::read_volatile((self.base + offset) as *const u32) }
    }

    fn write(&self, offset: usize, value: u32) {
        // SAFETY: `new`'s contract: `base + offset` is a PL011 register.
        unsafe { core::ptr::write_volatile((self.base + offset) as *mut u32, value) }
    }

    /// Programs 8N1 at `baud` from a `clock_hz` reference clock, FIFOs on, interrupts masked.
    /// Needed on real hardware; QEMU works without it.
    pub fn initialize(&self, clock_hz: u32, baud: u32) {
        self.write(CONTROL, 0);
        while self.read(FLAGS) & FLAG_BUSY != 0 {}
        self.write(INTERRUPT_MASK, 0);
        self.write(INTERRUPT_CLEAR, 0x7ff);
        if let Some((integer, fraction)) = baud_divisors(clock_hz, baud) {
            self.write(INTEGER_BAUD, integer);
            self.write(FRACTIONAL_BAUD, fraction);
        }
        // 8 data bits, FIFOs enabled.
        self.write(LINE_CONTROL, (0b11 << 5) | (1 << 4));
        // UART, transmit and receive enabled.
        self.write(CONTROL, (1 << 0) | (1 << 8) | (1 << 9));
    }

    /// The register block's base address.
    pub fn base(&self) -> usize {
        self.base
    }

    /// Acknowledges receive interrupts (the data is then read with `read_byte`).
    pub fn clear_receive_interrupt(&self) {
        self.write(INTERRUPT_CLEAR, INTERRUPT_RECEIVE | INTERRUPT_RECEIVE_TIMEOUT);
    }
}

impl Console for Pl011 {
    fn name(&self) -> &'static str {
        "pl011"
    }

    fn write_bytes(&self, bytes: &[u8]) {
        for &byte in bytes {
            while self.read(FLAGS) & FLAG_TRANSMIT_FULL != 0 {
                core::hint::spin_loop();
            }
            self.write(DATA, byte as u32);
        }
    }

    fn read_byte(&self) -> Option<u8> {
        if self.read(FLAGS) & FLAG_RECEIVE_EMPTY != 0 {
            None
        } else {
            Some((self.read(DATA) & 0xff) as u8)
        }
    }

    fn flush(&self) {
        while self.read(FLAGS) & FLAG_BUSY != 0 {
            core::hint::spin_loop();
        }
    }

    fn set_receive_interrupt(&self, enabled: bool) -> bool {
        let mask = self.read(INTERRUPT_MASK);
        let bits = INTERRUPT_RECEIVE | INTERRUPT_RECEIVE_TIMEOUT;
        self.write(INTERRUPT_MASK, if enabled { mask | bits } else { mask & !bits });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::baud_divisors;

    #[test]
    fn divisors_match_the_reference_manual() {
        // 48 MHz, 115200 baud: 26.0416 -> IBRD 26, FBRD 3 (0.0416 * 64 = 2.67 -> 3).
        assert_eq!(baud_divisors(48_000_000, 115_200), Some((26, 3)));
        // 24 MHz, 115200: 13.0208 -> 13, 1.
        assert_eq!(baud_divisors(24_000_000, 115_200), Some((13, 1)));
        assert_eq!(baud_divisors(48_000_000, 0), None);
        assert_eq!(baud_divisors(1_000, 115_200), None);
    }
}
