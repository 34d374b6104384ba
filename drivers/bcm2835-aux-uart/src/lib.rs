//! BCM2835 auxiliary mini-UART (UART1): AUX enable, 8-bit mode, baud divisor from the core clock, polled console.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

use hinoki_interface::Console;

// Offsets from the AUX block base (the mini-UART registers start at AUX + 0x40).
const AUX_ENABLES: usize = 0x04;
const IO: usize = 0x40;
const INTERRUPT_ENABLE: usize = 0x44;
const INTERRUPT_IDENTIFY: usize = 0x48;
const LINE_CONTROL: usize = 0x4c;
const MODEM_CONTROL: usize = 0x50;
const LINE_STATUS: usize = 0x54;
const EXTRA_CONTROL: usize = 0x60;
const BAUD: usize = 0x68;

const ENABLE_MINI_UART: u32 = 1 << 0;
/// Both bits: the datasheet documents only bit 0, but 8-bit mode needs 0b11.
const LINE_CONTROL_8_BIT: u32 = 0b11;
/// Writing bits 1 and 2 of IIR clears the receive and transmit FIFOs.
const CLEAR_FIFOS: u32 = 0b110;
const EXTRA_CONTROL_RECEIVE: u32 = 1 << 0;
const EXTRA_CONTROL_TRANSMIT: u32 = 1 << 1;
const STATUS_DATA_READY: u32 = 1 << 0;
const STATUS_TRANSMIT_EMPTY: u32 = 1 << 5;
const STATUS_TRANSMIT_IDLE: u32 = 1 << 6;
const INTERRUPT_ENABLE_RECEIVE: u32 = 1 << 0;

/// The AUX_MU_BAUD value for `baud` from the VideoCore core clock `clock_hz`:
/// baud = clock / (8 * (register + 1)), rounded to the nearest divisor.
/// `None` when the rate cannot be reached with a 16-bit register within 3 %.
pub fn baud_register(clock_hz: u32, baud: u32) -> Option<u32> {
    if baud == 0 {
        return None;
    }
    let eight_baud = 8 * baud as u64;
    let divisor = (clock_hz as u64 + eight_baud / 2) / eight_baud;
    if divisor == 0 || divisor > 0x1_0000 {
        return None;
    }
    // Rounding can land far from the request when the clock is barely fast enough:
    // refuse anything more than 3 % off rather than program a rate the other end misreads.
    let actual = clock_hz as u64 / (8 * divisor);
    if actual.abs_diff(baud as u64) * 100 > 3 * baud as u64 {
        return None;
    }
    Some((divisor - 1) as u32)
}

/// The baud rate a register value gives at `clock_hz`.
pub fn actual_baud(clock_hz: u32, register: u32) -> u32 {
    (clock_hz as u64 / (8 * (register as u64 + 1))) as u32
}

/// The mini-UART of an AUX block at a fixed MMIO base.
pub struct MiniUart {
    aux_base: usize,
}

impl MiniUart {
    /// Wraps the mini-UART whose AUX block starts at `aux_base` (0x3F21_5000 on the Pi 3,
    /// 0xFE21_5000 on the Pi 4), without touching it.
    ///
    /// # Safety
    /// `aux_base` must be the address of a BCM2835 AUX register block, mapped as device
    /// memory, and no other code may drive the mini-UART concurrently. The AUX SPI
    /// controllers share AUX_ENABLES; [`MiniUart::initialize`] only sets its own bit.
    pub const unsafe fn new(aux_base: usize) -> Self {
        MiniUart { aux_base }
    }

    fn read(&self, offset: usize) -> u32 {
        // SAFETY: `new`'s contract: `aux_base + offset` is an AUX register.
        unsafe { core::ptr::read_volatile((self.aux_base + offset) as *const u32) }
    }

    fn write(&self, offset: usize, value: u32) {
        // SAFETY: `new`'s contract: `aux_base + offset` is an AUX register.
        unsafe { core::ptr::write_volatile((self.aux_base + offset) as *mut u32, value) }
    }

    /// The AUX block's base address.
    pub fn aux_base(&self) -> usize {
        self.aux_base
    }

    /// Enables the mini-UART and programs 8N1 at `baud` from the core clock `clock_hz`
    /// (250 MHz on a Pi 3 and 500 MHz on a Pi 4 once `enable_uart=1` fixes the core
    /// frequency). Returns the divisor register written, `None` if `baud` is unreachable
    /// (the UART is then left disabled).
    pub fn initialize(&self, clock_hz: u32, baud: u32) -> Option<u32> {
        let register = baud_register(clock_hz, baud)?;
        self.write(AUX_ENABLES, self.read(AUX_ENABLES) | ENABLE_MINI_UART);
        self.write(EXTRA_CONTROL, 0);
        self.write(INTERRUPT_ENABLE, 0);
        self.write(LINE_CONTROL, LINE_CONTROL_8_BIT);
        self.write(MODEM_CONTROL, 0);
        self.write(INTERRUPT_IDENTIFY, CLEAR_FIFOS);
        self.write(BAUD, register);
        self.write(EXTRA_CONTROL, EXTRA_CONTROL_RECEIVE | EXTRA_CONTROL_TRANSMIT);
        Some(register)
    }

    /// Whether AUX_ENABLES has the mini-UART switched on.
    pub fn is_enabled(&self) -> bool {
        self.read(AUX_ENABLES) & ENABLE_MINI_UART != 0
    }
}

impl Console for MiniUart {
    fn name(&self) -> &'static str {
        "bcm2835-aux-uart"
    }

    fn write_bytes(&self, bytes: &[u8]) {
        for &byte in bytes {
            while self.read(LINE_STATUS) & STATUS_TRANSMIT_EMPTY == 0 {
                core::hint::spin_loop();
            }
            self.write(IO, byte as u32);
        }
    }

    fn read_byte(&self) -> Option<u8> {
        if self.read(LINE_STATUS) & STATUS_DATA_READY == 0 {
            None
        } else {
            Some((self.read(IO) & 0xff) as u8)
        }
    }

    fn flush(&self) {
        while self.read(LINE_STATUS) & STATUS_TRANSMIT_IDLE == 0 {
            core::hint::spin_loop();
        }
    }

    fn set_receive_interrupt(&self, enabled: bool) -> bool {
        let value = self.read(INTERRUPT_ENABLE);
        let value = if enabled { value | INTERRUPT_ENABLE_RECEIVE } else { value & !INTERRUPT_ENABLE_RECEIVE };
        self.write(INTERRUPT_ENABLE, value);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn divisor_for_the_raspberry_pi_core_clocks() {
        // Pi 3 with enable_uart=1: core clock 250 MHz -> 271.27 - 1 -> 270.
        assert_eq!(baud_register(250_000_000, 115_200), Some(270));
        // Pi 4: core clock 500 MHz -> 542.53 rounds to 543 -> 542.
        assert_eq!(baud_register(500_000_000, 115_200), Some(542));
        assert_eq!(actual_baud(250_000_000, 270), 115_313);
        assert_eq!(actual_baud(500_000_000, 542), 115_101);
    }

    #[test]
    fn divisor_error_stays_small() {
        for clock in [200_000_000u32, 250_000_000, 400_000_000, 500_000_000] {
            for baud in [9_600u32, 38_400, 115_200, 230_400, 921_600] {
                let register = baud_register(clock, baud).unwrap();
                let actual = actual_baud(clock, register) as i64;
                let error = (actual - baud as i64).abs() * 1000 / baud as i64;
                assert!(error <= 15, "{} Hz, {} baud: got {} baud", clock, baud, actual);
            }
        }
    }

    #[test]
    fn unreachable_rates() {
        assert_eq!(baud_register(250_000_000, 0), None);
        // Faster than clock / 8.
        assert_eq!(baud_register(8_000_000, 2_000_000), None);
        // Needs a divisor above 65536.
        assert_eq!(baud_register(250_000_000, 300), None);
        assert_eq!(baud_register(250_000_000, 477), Some(65_513));
    }
}
