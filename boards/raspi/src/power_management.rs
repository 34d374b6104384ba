//! BCM2835 power-management watchdog (PM block at peripheral base + 0x10_0000): full-chip reset, and halt through the firmware's "boot partition 63" convention.

const RESET_CONTROL: usize = 0x1c;
const RESET_STATUS: usize = 0x20;
const WATCHDOG: usize = 0x24;

/// Every PM register write must carry this in bits 24-31, or the block ignores it.
pub const PASSWORD: u32 = 0x5a00_0000;
/// The password byte, cleared from a value read back before it is rewritten.
const PASSWORD_FIELD: u32 = 0xff00_0000;
const RESET_CONTROL_CONFIGURATION_MASK: u32 = 0b11 << 4;
const RESET_CONTROL_FULL_RESET: u32 = 0b10 << 4;
/// The six partition bits of RSTS sit at the even positions 0, 2, ..., 10.
const RESET_STATUS_PARTITION_MASK: u32 = 0x555;
/// Watchdog ticks (about 16 us each) before the reset fires.
const WATCHDOG_TICKS: u32 = 10;

/// The partition number the firmware treats as "halt, do not boot" (Linux's
/// `PM_RSTS_RASPBERRYPI_HALT`; QEMU's bcm2835_powermgt shuts the machine down for it).
pub const HALT_PARTITION: u8 = 63;

/// RSTS bits for booting from `partition` next (bit i of the number goes to bit 2i).
pub const fn partition_bits(partition: u8) -> u32 {
    let mut bits = 0;
    let mut index = 0;
    while index < 6 {
        if partition & (1 << index) != 0 {
            bits |= 1 << (2 * index);
        }
        index += 1;
    }
    bits
}

/// The three register values of a watchdog reset into `partition`, given the current
/// RSTC and RSTS: (RSTS, WDOG, RSTC), all carrying the password.
pub const fn reset_sequence(reset_control: u32, reset_status: u32, partition: u8) -> (u32, u32, u32) {
    let status = PASSWORD | (reset_status & !PASSWORD_FIELD & !RESET_STATUS_PARTITION_MASK) | partition_bits(partition);
    let control = PASSWORD | (reset_control & !PASSWORD_FIELD & !RESET_CONTROL_CONFIGURATION_MASK) | RESET_CONTROL_FULL_RESET;
    (status, PASSWORD | WATCHDOG_TICKS, control)
}

/// The PM watchdog.
pub struct PowerManagement {
    base: usize,
}

impl PowerManagement {
    /// Wraps the PM block at `base`.
    ///
    /// # Safety
    /// `base` must be the address of the BCM2835-family PM register block, mapped as
    /// device memory. Its methods reset the whole machine.
    pub const unsafe fn new(base: usize) -> Self {
        PowerManagement { base }
    }

    fn read(&self, offset: usize) -> u32 {
        // SAFETY: `new`'s contract: `base + offset` is a PM register.
        unsafe { core::ptr::read_volatile((self.base + offset) as *const u32) }
    }

    fn write(&self, offset: usize, value: u32) {
        // SAFETY: `new`'s contract: `base + offset` is a PM register.
        unsafe { core::ptr::write_volatile((self.base + offset) as *mut u32, value) }
    }

    /// Arms the watchdog for a full reset that the firmware will continue from
    /// `partition`, and returns once the writes are issued (the reset follows in
    /// about 160 us).
    pub fn reset_into(&self, partition: u8) {
        let (status, watchdog, control) = reset_sequence(self.read(RESET_CONTROL), self.read(RESET_STATUS), partition);
        self.write(RESET_STATUS, status);
        self.write(WATCHDOG, watchdog);
        self.write(RESET_CONTROL, control);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_63_is_the_halt_pattern() {
        assert_eq!(partition_bits(HALT_PARTITION), 0x555);
        assert_eq!(partition_bits(0), 0);
        assert_eq!(partition_bits(1), 1);
        assert_eq!(partition_bits(2), 4);
        assert_eq!(partition_bits(0b10_1010), 0x444);
    }

    #[test]
    fn sequences_carry_the_password_and_keep_other_bits() {
        // QEMU's reset value of RSTS is 0x1000.
        let (status, watchdog, control) = reset_sequence(0x0000_0102, 0x0000_1000, HALT_PARTITION);
        assert_eq!(status, 0x5a00_1555);
        assert_eq!(watchdog, 0x5a00_000a);
        assert_eq!(control, 0x5a00_0122);
        let (status, _, control) = reset_sequence(0xff00_0030, 0xff00_0fff, 0);
        assert_eq!(status, 0x5a00_0aaa);
        assert_eq!(control, 0x5a00_0020);
    }
}
