//! The I/O APIC: an index/data register window (IOREGSEL at +0x00, IOWIN at +0x10) over the version register and one 64-bit redirection entry per input pin (82093AA datasheet; ACPI's global system interrupts).

use hinoki_interface::Trigger;

const REGISTER_SELECT: usize = 0x00;
const REGISTER_WINDOW: usize = 0x10;
const VERSION: u32 = 0x01;
const REDIRECTION_TABLE: u32 = 0x10;

/// Redirection entry bit 13: active low.
const ACTIVE_LOW: u64 = 1 << 13;
/// Redirection entry bit 15: level-triggered.
const LEVEL_TRIGGERED: u64 = 1 << 15;
/// Redirection entry bit 16: masked.
pub const MASKED: u64 = 1 << 16;

/// A redirection entry delivering `vector` (fixed delivery, physical destination) to the
/// local APIC `destination`, with the pin's `trigger`, masked or not.
pub const fn redirection_entry(vector: u8, trigger: Trigger, destination: u8, masked: bool) -> u64 {
    let mut entry = vector as u64 | (destination as u64) << 56;
    if matches!(trigger, Trigger::LevelHigh | Trigger::LevelLow) {
        entry |= LEVEL_TRIGGERED;
    }
    if matches!(trigger, Trigger::LevelLow | Trigger::EdgeFalling) {
        entry |= ACTIVE_LOW;
    }
    if masked {
        entry |= MASKED;
    }
    entry
}

/// The number of input pins from the version register (bits 23:16 hold the last entry).
pub const fn pin_count_from_version(version: u32) -> u32 {
    ((version >> 16) & 0xff) + 1
}

/// One I/O APIC. Not internally locked: the register window is an index/data pair, so the
/// owner serializes every call.
pub struct IoApic {
    base: usize,
    global_interrupt_base: u32,
    pins: u32,
}

impl IoApic {
    /// Reads the pin count of the I/O APIC at `base` and masks every pin.
    ///
    /// # Safety
    /// `base` must be the mapped (uncached) register block of an I/O APIC that nothing
    /// else programs, valid for the life of the returned value.
    pub unsafe fn new(base: usize, global_interrupt_base: u32) -> Self {
        let mut io_apic = IoApic { base, global_interrupt_base, pins: 0 };
        io_apic.pins = pin_count_from_version(io_apic.read(VERSION));
        for pin in 0..io_apic.pins {
            io_apic.write_entry(pin, redirection_entry(0, Trigger::EdgeRising, 0, true));
        }
        io_apic
    }

    fn read(&self, register: u32) -> u32 {
        // SAFETY: `new`'s contract: `base` is this I/O APIC's register block; selecting a
        // register and reading the window has no other effect.
        unsafe {
            core::ptr::write_volatile((self.base + REGISTER_SELECT) as *mut u32, register);
            core::ptr::read_volatile((self.base + REGISTER_WINDOW) as *const u32)
        }
    }

    fn write(&self, register: u32, value: u32) {
        // SAFETY: as in `read`; the owner serializes access to the window.
        unsafe {
            core::ptr::write_volatile((self.base + REGISTER_SELECT) as *mut u32, register);
            core::ptr::write_volatile((self.base + REGISTER_WINDOW) as *mut u32, value);
        }
    }

    /// Number of input pins.
    pub fn pins(&self) -> u32 {
        self.pins
    }

    /// Whether global system interrupt `global_interrupt` is one of this I/O APIC's pins,
    /// and which.
    pub fn pin_of(&self, global_interrupt: u32) -> Option<u32> {
        let pin = global_interrupt.checked_sub(self.global_interrupt_base)?;
        (pin < self.pins).then_some(pin)
    }

    /// Reads the redirection entry of `pin`.
    pub fn read_entry(&self, pin: u32) -> u64 {
        let low = self.read(REDIRECTION_TABLE + 2 * pin);
        let high = self.read(REDIRECTION_TABLE + 2 * pin + 1);
        (high as u64) << 32 | low as u64
    }

    /// Writes the redirection entry of `pin`: masked while the halves change, the low half
    /// (with the final mask bit) last.
    pub fn write_entry(&self, pin: u32, entry: u64) {
        self.write(REDIRECTION_TABLE + 2 * pin, MASKED as u32);
        self.write(REDIRECTION_TABLE + 2 * pin + 1, (entry >> 32) as u32);
        self.write(REDIRECTION_TABLE + 2 * pin, entry as u32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirection_entries() {
        assert_eq!(redirection_entry(0x34, Trigger::EdgeRising, 0, false), 0x34);
        assert_eq!(redirection_entry(0x39, Trigger::LevelHigh, 2, false), 0x0200_0000_0000_8039);
        assert_eq!(redirection_entry(0x40, Trigger::LevelLow, 1, true), 0x0100_0000_0001_a040);
        assert_eq!(redirection_entry(0x41, Trigger::EdgeFalling, 0, false), 0x2041);
    }

    #[test]
    fn pins_from_version() {
        // QEMU's I/O APIC: version 0x20, 24 pins.
        assert_eq!(pin_count_from_version(0x0017_0020), 24);
        assert_eq!(pin_count_from_version(0), 1);
    }

    #[test]
    fn window_programming_on_fake_registers() {
        // A block of memory standing in for the register window: the select register at 0
        // and the window at 0x10 just hold the last value written.
        let mut block = [0u32; 8];
        block[4] = 0x0017_0020;
        // SAFETY: `block` outlives the driver and is 32 bytes, covering both registers.
        let io_apic = unsafe { IoApic::new(block.as_mut_ptr() as usize, 0) };
        assert_eq!(io_apic.pins(), 24);
        assert_eq!(block[4], MASKED as u32, "every pin was masked, the last low half written last");
        assert_eq!(block[0], 0x10 + 2 * 23);
        assert_eq!(io_apic.pin_of(23), Some(23));
        assert_eq!(io_apic.pin_of(24), None);
    }
}
