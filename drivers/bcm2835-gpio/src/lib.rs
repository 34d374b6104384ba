//! BCM2835-family GPIO controller: function select (GPFSELn) and pull-up/down control (GPPUD/GPPUDCLK on BCM2835/2837, GPIO_PUP_PDN_CNTRL on BCM2711).
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

/// Number of GPIO pins on the controller (BCM2835/2837: 54, BCM2711: 58).
pub const PIN_COUNT: u32 = 58;

const FUNCTION_SELECT_0: usize = 0x00;
const PULL_CONTROL: usize = 0x94;
const PULL_CLOCK_0: usize = 0x98;
const PULL_UP_DOWN_CONTROL_0: usize = 0xe4;

/// Cycles the BCM2835 datasheet asks to wait between the GPPUD and GPPUDCLK writes (150).
/// Each wait spins this many times; a spin takes at least one cycle, so this is a safe bound.
const PULL_SETUP_SPINS: u32 = 300;

/// What a pin is connected to (the 3-bit GPFSEL code).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Function {
    /// General-purpose input (000).
    Input,
    /// General-purpose output (001).
    Output,
    /// Alternate function 0 (100): PL011 UART0 on GPIO14/15.
    Alternate0,
    /// Alternate function 1 (101).
    Alternate1,
    /// Alternate function 2 (110).
    Alternate2,
    /// Alternate function 3 (111).
    Alternate3,
    /// Alternate function 4 (011).
    Alternate4,
    /// Alternate function 5 (010): the mini-UART on GPIO14/15.
    Alternate5,
}

impl Function {
    /// The GPFSEL field value.
    pub const fn code(self) -> u32 {
        match self {
            Function::Input => 0b000,
            Function::Output => 0b001,
            Function::Alternate0 => 0b100,
            Function::Alternate1 => 0b101,
            Function::Alternate2 => 0b110,
            Function::Alternate3 => 0b111,
            Function::Alternate4 => 0b011,
            Function::Alternate5 => 0b010,
        }
    }

    /// The function for a GPFSEL field value (only the low three bits count).
    pub const fn from_code(code: u32) -> Function {
        match code & 0b111 {
            0b000 => Function::Input,
            0b001 => Function::Output,
            0b100 => Function::Alternate0,
            0b101 => Function::Alternate1,
            0b110 => Function::Alternate2,
            0b111 => Function::Alternate3,
            0b011 => Function::Alternate4,
            _ => Function::Alternate5,
        }
    }
}

/// A pin's pull resistor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pull {
    /// No pull resistor.
    None,
    /// Pull towards 3.3 V.
    Up,
    /// Pull towards ground.
    Down,
}

/// Which pull-control mechanism the SoC has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullInterface {
    /// BCM2835/BCM2837 (Pi 1-3): GPPUD plus the GPPUDCLKn clocking sequence.
    Clocked,
    /// BCM2711 (Pi 4): one 2-bit field per pin in GPIO_PUP_PDN_CNTRL_REGn.
    Direct,
}

/// Errors from pin operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GpioError {
    /// The pin number is beyond the controller's pins.
    NoSuchPin(u32),
}

/// Register offset and bit shift of `pin`'s 3-bit function-select field.
pub fn function_select_field(pin: u32) -> Result<(usize, u32), GpioError> {
    if pin >= PIN_COUNT {
        return Err(GpioError::NoSuchPin(pin));
    }
    Ok((FUNCTION_SELECT_0 + (pin / 10) as usize * 4, (pin % 10) * 3))
}

/// Register offset and bit shift of `pin`'s 2-bit field in BCM2711 GPIO_PUP_PDN_CNTRL_REGn.
pub fn direct_pull_field(pin: u32) -> Result<(usize, u32), GpioError> {
    if pin >= PIN_COUNT {
        return Err(GpioError::NoSuchPin(pin));
    }
    Ok((PULL_UP_DOWN_CONTROL_0 + (pin / 16) as usize * 4, (pin % 16) * 2))
}

/// The BCM2711 field value: 00 none, 01 up, 10 down.
pub const fn direct_pull_code(pull: Pull) -> u32 {
    match pull {
        Pull::None => 0b00,
        Pull::Up => 0b01,
        Pull::Down => 0b10,
    }
}

/// The BCM2835 GPPUD value: 00 off, 01 down, 10 up (note: not the BCM2711 encoding).
pub const fn clocked_pull_code(pull: Pull) -> u32 {
    match pull {
        Pull::None => 0b00,
        Pull::Down => 0b01,
        Pull::Up => 0b10,
    }
}

/// A GPIO controller at a fixed MMIO base.
pub struct Gpio {
    base: usize,
    pull_interface: PullInterface,
}

impl Gpio {
    /// Wraps the GPIO block at `base` without touching it.
    ///
    /// # Safety
    /// `base` must be the address of a BCM2835-family GPIO register block (0xf4 bytes or
    /// more), mapped as device memory, of the kind `pull_interface` names; callers that
    /// reconfigure the same pins concurrently must serialize themselves.
    pub const unsafe fn new(base: usize, pull_interface: PullInterface) -> Self {
        Gpio { base, pull_interface }
    }

    /// The register block's base address.
    pub fn base(&self) -> usize {
        self.base
    }

    /// The pull-control mechanism in use.
    pub fn pull_interface(&self) -> PullInterface {
        self.pull_interface
    }

    fn read(&self, offset: usize) -> u32 {
        // SAFETY: `new`'s contract: `base + offset` is a register of this GPIO block.
        unsafe { core::ptr::read_volatile((self.base + offset) as *const u32) }
    }

    fn write(&self, offset: usize, value: u32) {
        // SAFETY: `new`'s contract: `base + offset` is a register of this GPIO block.
        unsafe { core::ptr::write_volatile((self.base + offset) as *mut u32, value) }
    }

    /// Connects `pin` to `function` (read-modify-write of its GPFSEL register).
    pub fn set_function(&self, pin: u32, function: Function) -> Result<(), GpioError> {
        let (offset, shift) = function_select_field(pin)?;
        let value = self.read(offset) & !(0b111 << shift);
        self.write(offset, value | (function.code() << shift));
        Ok(())
    }

    /// Reads back `pin`'s function.
    pub fn function(&self, pin: u32) -> Result<Function, GpioError> {
        let (offset, shift) = function_select_field(pin)?;
        Ok(Function::from_code(self.read(offset) >> shift))
    }

    /// Sets `pin`'s pull resistor.
    pub fn set_pull(&self, pin: u32, pull: Pull) -> Result<(), GpioError> {
        match self.pull_interface {
            PullInterface::Direct => {
                let (offset, shift) = direct_pull_field(pin)?;
                let value = self.read(offset) & !(0b11 << shift);
                self.write(offset, value | (direct_pull_code(pull) << shift));
            }
            PullInterface::Clocked => {
                if pin >= 54 {
                    return Err(GpioError::NoSuchPin(pin));
                }
                let clock_register = PULL_CLOCK_0 + (pin / 32) as usize * 4;
                // Datasheet sequence: set the control, wait 150 cycles, clock it into the
                // pin, wait 150 cycles, then remove both.
                self.write(PULL_CONTROL, clocked_pull_code(pull));
                spin(PULL_SETUP_SPINS);
                self.write(clock_register, 1 << (pin % 32));
                spin(PULL_SETUP_SPINS);
                self.write(PULL_CONTROL, 0);
                self.write(clock_register, 0);
            }
        }
        Ok(())
    }

    /// Reads back `pin`'s pull resistor where the hardware allows it (BCM2711 only;
    /// the BCM2835 pull state is write-only).
    pub fn pull(&self, pin: u32) -> Result<Option<Pull>, GpioError> {
        match self.pull_interface {
            PullInterface::Clocked => Ok(None),
            PullInterface::Direct => {
                let (offset, shift) = direct_pull_field(pin)?;
                Ok(match (self.read(offset) >> shift) & 0b11 {
                    0b00 => Some(Pull::None),
                    0b01 => Some(Pull::Up),
                    0b10 => Some(Pull::Down),
                    _ => None,
                })
            }
        }
    }
}

fn spin(count: u32) {
    for _ in 0..count {
        core::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    extern crate std;
    use std::boxed::Box;

    /// A fake register block in ordinary memory, reached only through raw pointers.
    struct FakeRegisters(*mut u32);

    impl FakeRegisters {
        fn get(&self, offset: usize) -> u32 {
            // SAFETY: the block has 64 words and every offset used here is below 0x100.
            unsafe { core::ptr::read_volatile(self.0.add(offset / 4)) }
        }

        fn set(&self, offset: usize, value: u32) {
            // SAFETY: as in `get`.
            unsafe { core::ptr::write_volatile(self.0.add(offset / 4), value) }
        }
    }

    fn with_registers(pull_interface: PullInterface, check: impl FnOnce(&Gpio, &FakeRegisters)) {
        let block = Box::into_raw(Box::new([0u32; 64])).cast::<u32>();
        // SAFETY: the block outlives the `Gpio` and covers every offset it touches (< 0x100).
        let gpio = unsafe { Gpio::new(block as usize, pull_interface) };
        check(&gpio, &FakeRegisters(block));
        // SAFETY: `block` came from `Box::into_raw` above and is no longer used.
        drop(unsafe { Box::from_raw(block.cast::<[u32; 64]>()) });
    }

    #[test]
    fn function_fields() {
        assert_eq!(function_select_field(14), Ok((0x04, 12)));
        assert_eq!(function_select_field(15), Ok((0x04, 15)));
        assert_eq!(function_select_field(0), Ok((0x00, 0)));
        assert_eq!(function_select_field(57), Ok((0x14, 21)));
        assert_eq!(function_select_field(58), Err(GpioError::NoSuchPin(58)));
        for code in 0..8 {
            assert_eq!(Function::from_code(code).code(), code);
        }
    }

    #[test]
    fn uart_pins_to_alternate_functions() {
        with_registers(PullInterface::Clocked, |gpio, registers| {
            registers.set(0x04, 0xffff_ffff);
            gpio.set_function(14, Function::Alternate0).unwrap();
            gpio.set_function(15, Function::Alternate0).unwrap();
            // GPFSEL1 bits 12-17 hold 100 100, everything else untouched.
            assert_eq!(registers.get(0x04), !(0o77 << 12) | (0o44 << 12));
            assert_eq!(gpio.function(14), Ok(Function::Alternate0));
            gpio.set_function(15, Function::Alternate5).unwrap();
            assert_eq!(gpio.function(15), Ok(Function::Alternate5));
            assert_eq!(gpio.function(14), Ok(Function::Alternate0));
        });
    }

    #[test]
    fn direct_pull_fields() {
        assert_eq!(direct_pull_field(14), Ok((0xe4, 28)));
        assert_eq!(direct_pull_field(15), Ok((0xe4, 30)));
        assert_eq!(direct_pull_field(16), Ok((0xe8, 0)));
        assert_eq!(direct_pull_field(57), Ok((0xf0, 18)));
        with_registers(PullInterface::Direct, |gpio, registers| {
            registers.set(0xe4, 0xffff_ffff);
            gpio.set_pull(14, Pull::None).unwrap();
            gpio.set_pull(15, Pull::Up).unwrap();
            assert_eq!(registers.get(0xe4), 0x4fff_ffff);
            assert_eq!(gpio.pull(15), Ok(Some(Pull::Up)));
            assert_eq!(gpio.pull(14), Ok(Some(Pull::None)));
        });
    }

    #[test]
    fn clocked_pull_leaves_the_sequence_idle() {
        with_registers(PullInterface::Clocked, |gpio, registers| {
            gpio.set_pull(15, Pull::Up).unwrap();
            assert_eq!(registers.get(0x94), 0);
            assert_eq!(registers.get(0x98), 0);
            assert_eq!(gpio.pull(15), Ok(None));
            assert_eq!(gpio.set_pull(54, Pull::Up), Err(GpioError::NoSuchPin(54)));
        });
        assert_eq!(clocked_pull_code(Pull::Up), 0b10);
        assert_eq!(direct_pull_code(Pull::Up), 0b01);
    }
}
