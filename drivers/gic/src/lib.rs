//! ARM Generic Interrupt Controller drivers: GICv2 (memory-mapped CPU interface, e.g. the GIC-400) and GICv3 (affinity routing, redistributors, system-register CPU interface).
//!
//! Both implement [`hinoki_interface::InterruptController`] with the GIC's interrupt IDs
//! (INTIDs) as interrupt numbers: 0-15 SGIs (used as IPIs), 16-31 PPIs (per-CPU, e.g. the
//! generic timer), 32-1019 SPIs (devices).
//!
//! Where the asm lives: this crate is portable and host-tested. The GICv3 CPU interface is
//! reached through system registers (`ICC_*_EL1`), whose accessors live in the aarch64
//! arch crate (`hinoki_arch_aarch64::gic_cpu_interface`); [`v3::GicV3`] takes them through
//! the small [`v3::SystemRegisters`] trait, which the board implements by delegating to
//! those accessors (host tests implement it with a recording fake).
//!
//! Both drivers learn which logical CPU runs them through [`hinoki_interface::Cpu`]:
//! [`InterruptController::init_cpu`](hinoki_interface::InterruptController::init_cpu)
//! records the calling CPU's GIC identity (GICv2 CPU-interface mask, GICv3 affinity and
//! redistributor) under its logical id, so IPIs and SPI routing can name CPUs by logical id.
//!
//! Every interrupt is set up as non-secure Group 1 where the GIC lets software choose
//! (GICv3), signalled as IRQ, all with one priority ([`DEFAULT_PRIORITY`]), so handlers never
//! preempt each other at the GIC either.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

mod registers;
pub mod v2;
pub mod v3;

use hinoki_interface::{IrqError, Trigger};

pub use v2::GicV2;
pub use v3::GicV3;

/// Most CPUs the drivers keep per-CPU state for.
pub const MAX_CPUS: usize = 8;

/// The priority given to every interrupt (lower is more urgent; the mask lets all through).
pub const DEFAULT_PRIORITY: u8 = 0xa0;

/// The priority mask that lets every implemented priority through.
pub const PRIORITY_MASK_ALL: u8 = 0xff;

/// Number of SGIs (interrupt IDs 0-15).
pub const SGI_COUNT: u32 = 16;

/// First SPI (interrupt IDs below are banked per CPU).
pub const FIRST_SPI: u32 = 32;

/// First special interrupt ID (1020-1023: spurious and reserved acknowledgements).
pub const FIRST_SPECIAL_ID: u32 = 1020;

/// Number of interrupt IDs the distributor implements, from GICD_TYPER.ITLinesNumber
/// (bits [4:0]): 32 * (N + 1), at most 1020.
pub fn line_count_from_type(type_register: u32) -> u32 {
    (32 * ((type_register & 0x1f) + 1)).min(FIRST_SPECIAL_ID)
}

/// How `irq` must be configured for `trigger`: `Some(true)` edge, `Some(false)` level,
/// `None` nothing to program (SGIs are always edge-triggered).
///
/// SGIs accept only a rising edge. PPIs accept every trigger: the polarity is fixed by the
/// SoC's wiring (the Raspberry Pi 4 describes its timer PPIs as active-low), only edge or
/// level is programmable. SPIs accept active-high level and rising edge, the only kinds the
/// GIC detects.
pub fn trigger_configuration(irq: u32, trigger: Trigger) -> Result<Option<bool>, IrqError> {
    let edge = matches!(trigger, Trigger::EdgeRising | Trigger::EdgeFalling);
    if irq < SGI_COUNT {
        return if trigger == Trigger::EdgeRising { Ok(None) } else { Err(IrqError::UnsupportedTrigger) };
    }
    if irq < FIRST_SPI {
        return Ok(Some(edge));
    }
    match trigger {
        Trigger::LevelHigh | Trigger::EdgeRising => Ok(Some(edge)),
        Trigger::LevelLow | Trigger::EdgeFalling => Err(IrqError::UnsupportedTrigger),
    }
}

/// The GICD_ICFGR (or GICR_ICFGR) register index and bit that select edge for `irq`:
/// two bits per interrupt, the upper one set for edge.
pub fn configuration_bit(irq: u32) -> (usize, u32) {
    ((irq / 16) as usize, 2 * (irq % 16) + 1)
}

/// The register index and bit of `irq` in the one-bit-per-interrupt registers
/// (IGROUPR, ISENABLER, ICENABLER, ISPENDR, ICPENDR).
pub fn enable_bit(irq: u32) -> (usize, u32) {
    ((irq / 32) as usize, irq % 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_count_follows_typer() {
        assert_eq!(line_count_from_type(0), 32);
        assert_eq!(line_count_from_type(8), 288);
        assert_eq!(line_count_from_type(0x1f), 1020);
        assert_eq!(line_count_from_type(0xffff_ffe2), 96);
    }

    #[test]
    fn trigger_rules_match_the_interrupt_kinds() {
        assert_eq!(trigger_configuration(3, Trigger::EdgeRising), Ok(None));
        assert_eq!(trigger_configuration(3, Trigger::LevelHigh), Err(IrqError::UnsupportedTrigger));
        assert_eq!(trigger_configuration(30, Trigger::LevelLow), Ok(Some(false)));
        assert_eq!(trigger_configuration(27, Trigger::EdgeFalling), Ok(Some(true)));
        assert_eq!(trigger_configuration(33, Trigger::LevelHigh), Ok(Some(false)));
        assert_eq!(trigger_configuration(79, Trigger::EdgeRising), Ok(Some(true)));
        assert_eq!(trigger_configuration(33, Trigger::LevelLow), Err(IrqError::UnsupportedTrigger));
        assert_eq!(trigger_configuration(33, Trigger::EdgeFalling), Err(IrqError::UnsupportedTrigger));
    }

    #[test]
    fn register_bits() {
        assert_eq!(configuration_bit(30), (1, 29));
        assert_eq!(configuration_bit(33), (2, 3));
        assert_eq!(enable_bit(30), (0, 30));
        assert_eq!(enable_bit(79), (2, 15));
    }
}
