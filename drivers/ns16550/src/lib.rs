//! NS16550-compatible UART: register access through port I/O or MMIO, divisor-latch baud setup, polled transmit and receive.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

use hinoki_interface::Console;

/// Receive buffer (read) / transmit holding (write); divisor low byte while DLAB is set.
pub const DATA: usize = 0;
/// Interrupt enable; divisor high byte while DLAB is set.
pub const INTERRUPT_ENABLE: usize = 1;
/// FIFO control (write).
pub const FIFO_CONTROL: usize = 2;
/// Line control: word length, parity, stop bits, DLAB.
pub const LINE_CONTROL: usize = 3;
/// Modem control: DTR, RTS, OUT2, loopback.
pub const MODEM_CONTROL: usize = 4;
/// Line status.
pub const LINE_STATUS: usize = 5;
/// Scratch register.
pub const SCRATCH: usize = 7;

const LINE_CONTROL_8N1: u8 = 0b0000_0011;
const LINE_CONTROL_DIVISOR_LATCH: u8 = 1 << 7;
const FIFO_ENABLE_AND_CLEAR: u8 = 0b0000_0111;
const FIFO_TRIGGER_14_BYTES: u8 = 0b1100_0000;
const MODEM_DATA_TERMINAL_READY: u8 = 1 << 0;
const MODEM_REQUEST_TO_SEND: u8 = 1 << 1;
const MODEM_OUTPUT_2: u8 = 1 << 3;
const LINE_STATUS_DATA_READY: u8 = 1 << 0;
const LINE_STATUS_TRANSMIT_HOLDING_EMPTY: u8 = 1 << 5;
const LINE_STATUS_TRANSMITTER_EMPTY: u8 = 1 << 6;
const INTERRUPT_RECEIVE_DATA: u8 = 1 << 0;

/// The classic PC UART reference clock: 1.8432 MHz.
pub const PC_CLOCK_HZ: u32 = 1_843_200;

/// How the driver reaches the UART's eight registers (numbered 0-7). Boards supply it:
/// port I/O on PCs, [`MmioRegisters`] on memory-mapped UARTs.
pub trait RegisterAccess: Sync {
    /// Reads register `register`.
    fn read(&self, register: usize) -> u8;
    /// Writes `value` to register `register`.
    fn write(&self, register: usize, value: u8);
}

/// Memory-mapped registers `stride` bytes apart, accessed as bytes.
pub struct MmioRegisters {
    base: usize,
    stride: usize,
}

impl MmioRegisters {
    /// Registers at `base`, `stride` bytes apart (1 on most boards, 4 on some SoCs).
    ///
    /// # Safety
    /// `base + register * stride` must be a mapped 16550 register for registers 0-7, and no
    /// other code may drive the same UART concurrently.
    pub const unsafe fn new(base: usize, stride: usize) -> Self {
        MmioRegisters { base, stride }
    }
}

impl RegisterAccess for MmioRegisters {
    fn read(&self, register: usize) -> u8 {
        // SAFETY: `new`'s contract: the address is a 16550 register.
        unsafe { core::ptr::read_volatile((self.base + register * self.stride) as *const u8) }
    }

    fn write(&self, register: usize, value: u8) {
        // SAFETY: `new`'s contract: the address is a 16550 register.
        unsafe { core::ptr::write_volatile((self.base + register * self.stride) as *mut u8, value) }
    }
}

/// The divisor latch value for `baud` from a `clock_hz` reference clock:
/// clock / (16 * baud), rounded to nearest. `None` when it does not fit 1..=0xffff.
pub fn divisor(clock_hz: u32, baud: u32) -> Option<u16> {
    if baud == 0 {
        return None;
    }
    let sixteen_baud = 16 * baud as u64;
    let value = (clock_hz as u64 + sixteen_baud / 2) / sixteen_baud;
    if value == 0 || value > 0xffff {
        return None;
    }
    Some(value as u16)
}

/// Why [`Ns16550::initialize`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitializeError {
    /// No divisor in 1..=0xffff gives the baud rate from this clock.
    UnreachableBaudRate,
    /// The scratch register did not hold a written value: no UART answers there.
    NotPresent,
}

/// A 16550 reached through `A`.
pub struct Ns16550<A: RegisterAccess> {
    registers: A,
}

impl<A: RegisterAccess> Ns16550<A> {
    /// Wraps the UART without touching it.
    pub const fn new(registers: A) -> Self {
        Ns16550 { registers }
    }

    /// Programs `baud` from `clock_hz`, 8 data bits, no parity, one stop bit, FIFOs on,
    /// interrupts off, DTR/RTS/OUT2 asserted.
    pub fn initialize(&self, clock_hz: u32, baud: u32) -> Result<(), InitializeError> {
        let divisor = divisor(clock_hz, baud).ok_or(InitializeError::UnreachableBaudRate)?;
        self.registers.write(SCRATCH, 0x5a);
        if self.registers.read(SCRATCH) != 0x5a {
            return Err(InitializeError::NotPresent);
        }
        self.registers.write(INTERRUPT_ENABLE, 0);
        self.registers.write(LINE_CONTROL, LINE_CONTROL_DIVISOR_LATCH);
        self.registers.write(DATA, divisor as u8);
        self.registers.write(INTERRUPT_ENABLE, (divisor >> 8) as u8);
        self.registers.write(LINE_CONTROL, LINE_CONTROL_8N1);
        self.registers.write(FIFO_CONTROL, FIFO_ENABLE_AND_CLEAR | FIFO_TRIGGER_14_BYTES);
        self.registers.write(MODEM_CONTROL, MODEM_DATA_TERMINAL_READY | MODEM_REQUEST_TO_SEND | MODEM_OUTPUT_2);
        Ok(())
    }

    fn write_byte(&self, byte: u8) {
        while self.registers.read(LINE_STATUS) & LINE_STATUS_TRANSMIT_HOLDING_EMPTY == 0 {
            core::hint::spin_loop();
        }
        self.registers.write(DATA, byte);
    }
}

impl<A: RegisterAccess> Console for Ns16550<A> {
    fn name(&self) -> &'static str {
        "ns16550"
    }

    fn write_bytes(&self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_byte(byte);
        }
    }

    fn read_byte(&self) -> Option<u8> {
        if self.registers.read(LINE_STATUS) & LINE_STATUS_DATA_READY != 0 {
            Some(self.registers.read(DATA))
        } else {
            None
        }
    }

    fn flush(&self) {
        while self.registers.read(LINE_STATUS) & LINE_STATUS_TRANSMITTER_EMPTY == 0 {
            core::hint::spin_loop();
        }
    }

    fn set_receive_interrupt(&self, enabled: bool) -> bool {
        self.registers.write(INTERRUPT_ENABLE, if enabled { INTERRUPT_RECEIVE_DATA } else { 0 });
        true
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use core::cell::RefCell;
    use std::vec::Vec;

    #[test]
    fn divisors_for_the_pc_clock() {
        assert_eq!(divisor(PC_CLOCK_HZ, 115_200), Some(1));
        assert_eq!(divisor(PC_CLOCK_HZ, 57_600), Some(2));
        assert_eq!(divisor(PC_CLOCK_HZ, 38_400), Some(3));
        assert_eq!(divisor(PC_CLOCK_HZ, 9_600), Some(12));
        assert_eq!(divisor(PC_CLOCK_HZ, 50), Some(2304));
        // 48 MHz SoC clock: 26.04 rounds to 26.
        assert_eq!(divisor(48_000_000, 115_200), Some(26));
    }

    #[test]
    fn unreachable_rates_are_refused() {
        assert_eq!(divisor(PC_CLOCK_HZ, 0), None);
        assert_eq!(divisor(PC_CLOCK_HZ, 1_000_000), None);
        assert_eq!(divisor(u32::MAX, 1), None);
    }

    /// Records writes and answers reads from a register file, like a UART that is always ready.
    struct Recorder {
        registers: RefCell<[u8; 8]>,
        writes: RefCell<Vec<(usize, u8)>>,
    }

    // SAFETY: each test uses its recorder from one thread only; Sync is needed only by the trait bound.
    unsafe impl Sync for Recorder {}

    impl RegisterAccess for Recorder {
        fn read(&self, register: usize) -> u8 {
            if register == LINE_STATUS {
                return LINE_STATUS_TRANSMIT_HOLDING_EMPTY | LINE_STATUS_TRANSMITTER_EMPTY;
            }
            self.registers.borrow()[register]
        }
        fn write(&self, register: usize, value: u8) {
            self.registers.borrow_mut()[register] = value;
            self.writes.borrow_mut().push((register, value));
        }
    }

    #[test]
    fn initialize_programs_the_divisor_latch_then_8n1() {
        let uart = Ns16550::new(Recorder { registers: RefCell::new([0; 8]), writes: RefCell::new(Vec::new()) });
        uart.initialize(PC_CLOCK_HZ, 115_200).unwrap();
        uart.write_bytes(b"ok");
        let writes = uart.registers.writes.borrow();
        let latch = writes.iter().position(|&write| write == (LINE_CONTROL, LINE_CONTROL_DIVISOR_LATCH)).unwrap();
        assert_eq!(writes[latch + 1], (DATA, 1));
        assert_eq!(writes[latch + 2], (INTERRUPT_ENABLE, 0));
        assert_eq!(writes[latch + 3], (LINE_CONTROL, LINE_CONTROL_8N1));
        assert_eq!(&writes[writes.len() - 2..], &[(DATA, b'o'), (DATA, b'k')]);
    }
}
