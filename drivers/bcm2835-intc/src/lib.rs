//! The BCM2835 interrupt controller ("ARMCTRL", Raspberry Pi 1-3): three banks of level-triggered lines, the 8 ARM interrupts and the VideoCore's 64 peripheral interrupts, with write-1-to-set enable and write-1-to-clear disable registers.
//!
//! Interrupt numbers are Linux's hardware numbers for this controller: `bank * 32 + bit`,
//! bank 0 the basic (ARM) interrupts 0-7, bank 1 VideoCore (GPU) interrupts 0-31, bank 2 GPU
//! interrupts 32-63; so the PL011 (GPU interrupt 57) is 89 and the AUX block (GPU 29) is 61.
//! The controller has one output; on the BCM2836/7 it feeds the local controller's "GPU"
//! input of one core, which chains to it (see the `bcm2836-local-intc` crate).
//!
//! The pending registers are read through the basic register's summary bits: bit 8 (bank 1)
//! and bit 9 (bank 2) say the bank has pending lines other than the eleven whose status is
//! copied into basic bits 10-20 ("shortcuts"), so a bank is read when either says so. The
//! driver keeps its own copy of the enable masks (the enable registers are write-only) and
//! masks pending bits with it.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

use core::sync::atomic::{AtomicU32, Ordering};

use hinoki_interface::{InterruptController, IrqError, Trigger};

/// Register offsets from the controller's base (peripheral base + 0xB200).
pub mod registers {
    /// Basic pending: ARM interrupts (bits 0-7), bank summaries (8, 9), shortcuts (10-20).
    pub const PENDING_BASIC: usize = 0x00;
    /// GPU interrupts 0-31 pending.
    pub const PENDING_1: usize = 0x04;
    /// GPU interrupts 32-63 pending.
    pub const PENDING_2: usize = 0x08;
    /// FIQ control (unused: every line is an IRQ).
    pub const FIQ_CONTROL: usize = 0x0c;
    /// Write 1 to enable GPU interrupts 0-31.
    pub const ENABLE_1: usize = 0x10;
    /// Write 1 to enable GPU interrupts 32-63.
    pub const ENABLE_2: usize = 0x14;
    /// Write 1 to enable ARM interrupts 0-7.
    pub const ENABLE_BASIC: usize = 0x18;
    /// Write 1 to disable GPU interrupts 0-31.
    pub const DISABLE_1: usize = 0x1c;
    /// Write 1 to disable GPU interrupts 32-63.
    pub const DISABLE_2: usize = 0x20;
    /// Write 1 to disable ARM interrupts 0-7.
    pub const DISABLE_BASIC: usize = 0x24;
}

/// Basic pending bit 8: bank 1 has pending lines that have no shortcut.
const BANK_1_SUMMARY: u32 = 1 << 8;
/// Basic pending bit 9: bank 2 has pending lines that have no shortcut.
const BANK_2_SUMMARY: u32 = 1 << 9;
/// Basic pending bits 10-14: GPU interrupts 7, 9, 10, 18, 19 (bank 1).
const BANK_1_SHORTCUTS: u32 = 0x1f << 10;
/// Basic pending bits 15-20: GPU interrupts 53-57 and 62 (bank 2).
const BANK_2_SHORTCUTS: u32 = 0x3f << 15;
/// The ARM interrupts in bank 0.
const BASIC_LINES: u32 = 0xff;

/// Number of banks.
const BANKS: usize = 3;

/// The enable and disable register of each bank.
const ENABLE: [usize; BANKS] = [registers::ENABLE_BASIC, registers::ENABLE_1, registers::ENABLE_2];
const DISABLE: [usize; BANKS] = [registers::DISABLE_BASIC, registers::DISABLE_1, registers::DISABLE_2];

/// The hardware number of GPU (VideoCore) interrupt `gpu` (0-63): banks 1 and 2.
pub const fn gpu_interrupt(gpu: u32) -> u32 {
    32 + gpu
}

/// Splits a hardware number into bank and bit, or refuses one the controller lacks.
pub fn bank_and_bit(irq: u32) -> Result<(usize, u32), IrqError> {
    let (bank, bit) = ((irq / 32) as usize, irq % 32);
    if bank >= BANKS || (bank == 0 && bit >= 8) {
        return Err(IrqError::InvalidIrq(irq));
    }
    Ok((bank, bit))
}

/// The pending, enabled interrupt with the lowest hardware number, from the basic
/// register and a reader of the bank registers (called only for banks that have some).
pub fn highest_pending(basic: u32, enabled: [u32; BANKS], mut read_bank: impl FnMut(usize) -> u32) -> Option<u32> {
    let arm = basic & BASIC_LINES & enabled[0];
    if arm != 0 {
        return Some(arm.trailing_zeros());
    }
    for (bank, summary) in [(1, BANK_1_SUMMARY | BANK_1_SHORTCUTS), (2, BANK_2_SUMMARY | BANK_2_SHORTCUTS)] {
        if basic & summary == 0 {
            continue;
        }
        let pending = read_bank(bank) & enabled[bank];
        if pending != 0 {
            return Some(bank as u32 * 32 + pending.trailing_zeros());
        }
    }
    None
}

/// The BCM2835 interrupt controller.
pub struct Bcm2835Intc {
    base: usize,
    /// Software copy of each bank's enable mask.
    enabled: [AtomicU32; BANKS],
}

impl Bcm2835Intc {
    /// Wraps the controller at `base`.
    ///
    /// # Safety
    /// `base` must be the BCM2835 interrupt controller's registers (peripheral base +
    /// 0xB200), or in host tests memory standing in for them (0x28 bytes), mapped as device
    /// memory and driven by no one else, for as long as the driver is used.
    pub const unsafe fn new(base: usize) -> Self {
        Bcm2835Intc { base, enabled: [const { AtomicU32::new(0) }; BANKS] }
    }

    fn read(&self, offset: usize) -> u32 {
        // SAFETY: `new`'s contract: `base + offset` is a 4-byte aligned register of this
        // controller.
        unsafe { core::ptr::read_volatile((self.base + offset) as *const u32) }
    }

    fn write(&self, offset: usize, value: u32) {
        // SAFETY: as in `read`.
        unsafe { core::ptr::write_volatile((self.base + offset) as *mut u32, value) }
    }

    /// Disables every line (the firmware may leave some enabled).
    pub fn init(&self) {
        for bank in 0..BANKS {
            self.write(DISABLE[bank], u32::MAX);
            self.enabled[bank].store(0, Ordering::Relaxed);
        }
        self.write(registers::FIQ_CONTROL, 0);
    }

    fn enabled_masks(&self) -> [u32; BANKS] {
        core::array::from_fn(|bank| self.enabled[bank].load(Ordering::Relaxed))
    }
}

impl InterruptController for Bcm2835Intc {
    /// Linux's name for this controller's chip: every line is level-triggered.
    fn name(&self) -> &'static str {
        "ARMCTRL-level"
    }

    /// Nothing per CPU: the controller has one output.
    fn init_cpu(&self) {}

    fn enable(&self, irq: u32) -> Result<(), IrqError> {
        let (bank, bit) = bank_and_bit(irq)?;
        self.enabled[bank].fetch_or(1 << bit, Ordering::Relaxed);
        self.write(ENABLE[bank], 1 << bit);
        Ok(())
    }

    fn disable(&self, irq: u32) -> Result<(), IrqError> {
        let (bank, bit) = bank_and_bit(irq)?;
        self.write(DISABLE[bank], 1 << bit);
        self.enabled[bank].fetch_and(!(1 << bit), Ordering::Relaxed);
        Ok(())
    }

    /// Every line is active-high level; nothing is programmable.
    fn set_trigger(&self, irq: u32, trigger: Trigger) -> Result<(), IrqError> {
        bank_and_bit(irq)?;
        match trigger {
            Trigger::LevelHigh => Ok(()),
            _ => Err(IrqError::UnsupportedTrigger),
        }
    }

    fn acknowledge(&self) -> Option<u32> {
        let basic = self.read(registers::PENDING_BASIC);
        highest_pending(basic, self.enabled_masks(), |bank| self.read(if bank == 1 { registers::PENDING_1 } else { registers::PENDING_2 }))
    }

    /// Nothing to signal: the line drops when the device is serviced.
    fn end_of_interrupt(&self, _irq: u32) {}
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec;
    use std::vec::Vec;

    use super::*;

    struct Fake(Vec<u32>);

    impl Fake {
        fn new() -> Self {
            Fake(vec![0; 0x28 / 4])
        }
        fn driver(&mut self) -> Bcm2835Intc {
            // SAFETY: the vector outlives the driver in each test and covers every register.
            unsafe { Bcm2835Intc::new(self.0.as_mut_ptr() as usize) }
        }
        fn word(&self, offset: usize) -> u32 {
            // SAFETY: reading back what the driver wrote with volatile stores.
            unsafe { core::ptr::read_volatile(self.0.as_ptr().add(offset / 4)) }
        }
        fn set(&mut self, offset: usize, value: u32) {
            // SAFETY: as above, in bounds.
            unsafe { core::ptr::write_volatile(self.0.as_mut_ptr().add(offset / 4), value) }
        }
    }

    #[test]
    fn hardware_numbers_follow_the_banks() {
        assert_eq!(gpu_interrupt(57), 89);
        assert_eq!(bank_and_bit(89), Ok((2, 25)));
        assert_eq!(bank_and_bit(61), Ok((1, 29)));
        assert_eq!(bank_and_bit(3), Ok((0, 3)));
        assert_eq!(bank_and_bit(8), Err(IrqError::InvalidIrq(8)));
        assert_eq!(bank_and_bit(96), Err(IrqError::InvalidIrq(96)));
    }

    #[test]
    fn enable_and_disable_write_one_bit_of_the_right_bank() {
        let mut fake = Fake::new();
        let intc = fake.driver();
        intc.init();
        assert_eq!(fake.word(registers::DISABLE_2), u32::MAX);
        intc.enable(89).unwrap();
        assert_eq!(fake.word(registers::ENABLE_2), 1 << 25);
        intc.enable(2).unwrap();
        assert_eq!(fake.word(registers::ENABLE_BASIC), 1 << 2);
        intc.disable(89).unwrap();
        assert_eq!(fake.word(registers::DISABLE_2), 1 << 25);
        assert_eq!(intc.enable(100), Err(IrqError::InvalidIrq(100)));
        assert_eq!(intc.set_trigger(89, Trigger::LevelHigh), Ok(()));
        assert_eq!(intc.set_trigger(89, Trigger::EdgeRising), Err(IrqError::UnsupportedTrigger));
    }

    #[test]
    fn acknowledge_finds_enabled_pending_lines_through_summaries_and_shortcuts() {
        let mut fake = Fake::new();
        let intc = fake.driver();
        intc.enable(89).unwrap();
        intc.enable(33).unwrap();
        // The PL011 (GPU 57) has a shortcut: basic bit 19, bank 2 summary clear.
        fake.set(registers::PENDING_BASIC, 1 << 19);
        fake.set(registers::PENDING_2, 1 << 25);
        assert_eq!(intc.acknowledge(), Some(89));
        // GPU 1 through the bank 1 summary; the PL011 line still pending loses to it.
        fake.set(registers::PENDING_BASIC, BANK_1_SUMMARY | (1 << 19));
        fake.set(registers::PENDING_1, 1 << 1);
        assert_eq!(intc.acknowledge(), Some(33));
        // A pending line that is not enabled is ignored; nothing else: spurious.
        fake.set(registers::PENDING_BASIC, BANK_1_SUMMARY);
        fake.set(registers::PENDING_1, 1 << 4);
        assert_eq!(intc.acknowledge(), None);
        fake.set(registers::PENDING_BASIC, 0);
        assert_eq!(intc.acknowledge(), None);
    }

    #[test]
    fn arm_interrupts_come_first_and_banks_are_read_only_when_flagged() {
        let mut reads = Vec::new();
        let found = highest_pending(1 << 3 | BANK_2_SUMMARY, [0xff, 0, u32::MAX], |bank| {
            reads.push(bank);
            1
        });
        assert_eq!(found, Some(3));
        assert!(reads.is_empty());
        let found = highest_pending(BANK_2_SUMMARY, [0, u32::MAX, u32::MAX], |bank| {
            reads.push(bank);
            1 << 31
        });
        assert_eq!(found, Some(95));
        assert_eq!(reads, [2]);
    }
}
