//! The legacy 8259 programmable interrupt controllers: remapped to vectors 0x20-0x2f, away from the CPU exceptions, and fully masked (the I/O APIC delivers device interrupts).

use crate::port;

const MASTER_COMMAND: u16 = 0x20;
const MASTER_DATA: u16 = 0x21;
const SLAVE_COMMAND: u16 = 0xa0;
const SLAVE_DATA: u16 = 0xa1;

/// Vector of the master PIC's IRQ 0 after remapping.
pub const MASTER_VECTOR_BASE: u8 = 0x20;
/// Vector of the slave PIC's IRQ 8 after remapping.
pub const SLAVE_VECTOR_BASE: u8 = 0x28;

/// ICW1: initialization, ICW4 follows, cascade mode, edge-triggered.
const INITIALIZE_WITH_ICW4: u8 = 0x11;
/// ICW3 for the master: a slave on input 2.
const MASTER_HAS_SLAVE_ON_IRQ2: u8 = 1 << 2;
/// ICW3 for the slave: its cascade identity is 2.
const SLAVE_IDENTITY: u8 = 2;
/// ICW4: 8086/88 mode.
const MODE_8086: u8 = 0x01;

fn write_slowly(port: u16, value: u8) {
    // SAFETY: the ports are the two 8259s' command and data registers on every PC, which this
    // module alone programs; port 0x80 (POST code) is the conventional I/O delay.
    unsafe {
        port::write_u8(port, value);
        port::write_u8(0x80, 0);
    }
}

/// Reinitializes both PICs with their vectors at 0x20 and 0x28 and masks every input. A
/// spurious IRQ 7 or 15 can still arrive on vector 0x27 or 0x2f; the IRQ layer counts it.
pub fn remap_and_mask() {
    write_slowly(MASTER_COMMAND, INITIALIZE_WITH_ICW4);
    write_slowly(SLAVE_COMMAND, INITIALIZE_WITH_ICW4);
    write_slowly(MASTER_DATA, MASTER_VECTOR_BASE);
    write_slowly(SLAVE_DATA, SLAVE_VECTOR_BASE);
    write_slowly(MASTER_DATA, MASTER_HAS_SLAVE_ON_IRQ2);
    write_slowly(SLAVE_DATA, SLAVE_IDENTITY);
    write_slowly(MASTER_DATA, MODE_8086);
    write_slowly(SLAVE_DATA, MODE_8086);
    write_slowly(MASTER_DATA, 0xff);
    write_slowly(SLAVE_DATA, 0xff);
}

/// The two interrupt mask registers (master, slave).
pub fn masks() -> (u8, u8) {
    // SAFETY: reading the 8259 data ports returns the mask registers (OCW1), no side effects.
    unsafe { (port::read_u8(MASTER_DATA), port::read_u8(SLAVE_DATA)) }
}
