//! Console input: the receive-interrupt handler moves bytes from the console into a ring and wakes the readers, so an idle shell sleeps (in the scheduler's wait queue, or in WFI before the scheduler runs); without a receive interrupt the console is polled.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use hinoki_interface::Trigger;

use crate::irq::{self, RequestError};
use crate::sync::{IrqSpinLock, WaitQueue};

/// Bytes the ring holds.
pub const INPUT_CAPACITY: usize = 256;

/// A byte ring; when full, new bytes are dropped and counted (Linux's tty overrun).
pub struct InputRing {
    bytes: [u8; INPUT_CAPACITY],
    head: usize,
    length: usize,
    overruns: u64,
}

impl InputRing {
    /// An empty ring.
    pub const fn new() -> Self {
        InputRing { bytes: [0; INPUT_CAPACITY], head: 0, length: 0, overruns: 0 }
    }

    /// Appends `byte`, or counts an overrun when full.
    pub fn push(&mut self, byte: u8) {
        if self.length == INPUT_CAPACITY {
            self.overruns += 1;
            return;
        }
        self.bytes[(self.head + self.length) % INPUT_CAPACITY] = byte;
        self.length += 1;
    }

    /// Takes the oldest byte.
    pub fn pop(&mut self) -> Option<u8> {
        if self.length == 0 {
            return None;
        }
        let byte = self.bytes[self.head];
        self.head = (self.head + 1) % INPUT_CAPACITY;
        self.length -= 1;
        Some(byte)
    }

    /// Bytes dropped because the ring was full.
    pub fn overruns(&self) -> u64 {
        self.overruns
    }
}

impl Default for InputRing {
    fn default() -> Self {
        Self::new()
    }
}

static INPUT: IrqSpinLock<InputRing> = IrqSpinLock::new(InputRing::new());
static RECEIVE_INTERRUPT: AtomicBool = AtomicBool::new(false);
static RECEIVE_INTERRUPTS: AtomicU64 = AtomicU64::new(0);
static READERS: WaitQueue = WaitQueue::new();

/// Requests the console's receive interrupt `number` (with the board's `trigger` and the
/// device `name` for `/proc/interrupts`) and enables it at the device. From then on
/// [`read_byte`] sleeps instead of polling.
///
/// # Errors
/// The IRQ layer's refusal, or [`RequestError::Controller`] (`Unsupported`) when the console
/// cannot interrupt.
pub fn start_receive_interrupt(number: u32, trigger: Trigger, name: &'static str) -> Result<(), RequestError> {
    irq::request_irq(number, name, handle_receive, trigger)?;
    if !crate::platform().console().set_receive_interrupt(true) {
        let _ = irq::free_irq(number);
        return Err(RequestError::Controller(hinoki_interface::IrqError::Unsupported));
    }
    RECEIVE_INTERRUPT.store(true, Ordering::Release);
    Ok(())
}

/// Receive interrupts handled so far.
pub fn receive_interrupts() -> u64 {
    RECEIVE_INTERRUPTS.load(Ordering::Relaxed)
}

fn handle_receive(_irq: u32) {
    RECEIVE_INTERRUPTS.fetch_add(1, Ordering::Relaxed);
    let console = crate::platform().console();
    let mut received = false;
    {
        let mut input = INPUT.lock();
        // Draining the device's FIFO also clears its receive interrupt.
        while let Some(byte) = console.read_byte() {
            input.push(byte);
            received = true;
        }
    }
    if received {
        READERS.wake_up_all();
    }
}

/// One received byte, if there is one: from the ring, else straight from the device (both
/// under the ring's lock, so bytes keep their order).
pub fn try_read_byte() -> Option<u8> {
    let mut input = INPUT.lock();
    input.pop().or_else(|| crate::try_platform().and_then(|platform| platform.console().read_byte()))
}

/// Waits for one byte. With the receive interrupt on and interrupts enabled, the caller
/// sleeps between bytes: in a wait queue the receive handler wakes, once the scheduler runs
/// (other threads get the CPU), and before that in the CPU's idle state (checking and
/// going to sleep without a window in which a byte could be missed). Otherwise it polls.
pub fn read_byte() -> u8 {
    let platform = crate::platform();
    let cpu = platform.cpu();
    loop {
        let interrupt_driven = RECEIVE_INTERRUPT.load(Ordering::Acquire) && cpu.interrupts_enabled();
        if interrupt_driven && crate::sched::is_running() {
            let mut received = None;
            READERS.wait_event(|| {
                received = try_read_byte();
                received.is_some()
            });
            if let Some(byte) = received {
                return byte;
            }
        } else if interrupt_driven {
            let state = cpu.disable_interrupts();
            if let Some(byte) = try_read_byte() {
                cpu.restore_interrupts(state);
                return byte;
            }
            cpu.idle();
            cpu.restore_interrupts(state);
        } else {
            if let Some(byte) = try_read_byte() {
                return byte;
            }
            cpu.relax();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_order_and_counts_overruns() {
        let mut ring = InputRing::new();
        assert_eq!(ring.pop(), None);
        for round in 0..3u8 {
            for byte in 0..200u8 {
                ring.push(byte.wrapping_add(round));
            }
            for byte in 0..200u8 {
                assert_eq!(ring.pop(), Some(byte.wrapping_add(round)));
            }
        }
        for byte in 0..=255u8 {
            ring.push(byte);
        }
        ring.push(7);
        assert_eq!(ring.overruns(), 1);
        assert_eq!(ring.pop(), Some(0));
        ring.push(8);
        let rest: Vec<u8> = core::iter::from_fn(|| ring.pop()).collect();
        assert_eq!(rest.len(), INPUT_CAPACITY);
        assert_eq!(rest.last(), Some(&8));
    }
}
