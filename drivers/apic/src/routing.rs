//! ISA IRQ routing: the MADT's interrupt source overrides resolved to a global system interrupt, polarity and trigger mode per IRQ.
//!
//! ISA IRQs 0-15 default to GSI = IRQ, active high, edge-triggered. An override (MADT entry
//! type 2) moves an IRQ to another GSI and may fix its polarity and trigger mode with MPS
//! INTI flags: bits 1:0 polarity (00 bus default, 01 active high, 11 active low), bits 3:2
//! trigger mode (00 bus default, 01 edge, 11 level). A GSI below 16 that another IRQ was
//! moved onto (GSI 2 receives IRQ 0, the PIT, on PCs) is no longer reachable as its own IRQ.

use hinoki_interface::Trigger;

/// Number of ISA IRQs.
pub const ISA_IRQ_COUNT: u32 = 16;

/// An interrupt source override as the MADT lists it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceOverride {
    /// The ISA IRQ.
    pub irq: u8,
    /// The global system interrupt it is wired to.
    pub global_interrupt: u32,
    /// MPS INTI flags.
    pub flags: u16,
}

/// Signal polarity at the I/O APIC pin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Polarity {
    /// Active high.
    High,
    /// Active low.
    Low,
}

/// The firmware fixed edge where level was asked for, or the reverse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConflictingTrigger;

/// Where an IRQ arrives and how it signals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// Global system interrupt (I/O APIC input).
    pub global_interrupt: u32,
    /// Polarity the firmware fixed, if it fixed one.
    pub polarity: Option<Polarity>,
    /// Whether the firmware fixed level (`Some(true)`) or edge (`Some(false)`) triggering.
    pub level: Option<bool>,
}

impl Route {
    /// The trigger this route uses when the caller asks for `requested`: the firmware's
    /// polarity and mode win where it fixed them; `Err(ConflictingTrigger)` when they contradict the request
    /// in edge versus level.
    pub fn trigger(&self, requested: Trigger) -> Result<Trigger, ConflictingTrigger> {
        let requested_level = matches!(requested, Trigger::LevelHigh | Trigger::LevelLow);
        let level = match self.level {
            Some(level) if level != requested_level => return Err(ConflictingTrigger),
            Some(level) => level,
            None => requested_level,
        };
        let low = match self.polarity {
            Some(polarity) => polarity == Polarity::Low,
            None => matches!(requested, Trigger::LevelLow | Trigger::EdgeFalling),
        };
        Ok(match (level, low) {
            (true, false) => Trigger::LevelHigh,
            (true, true) => Trigger::LevelLow,
            (false, false) => Trigger::EdgeRising,
            (false, true) => Trigger::EdgeFalling,
        })
    }
}

fn polarity_from_flags(flags: u16) -> Option<Polarity> {
    match flags & 0b11 {
        0b01 => Some(Polarity::High),
        0b11 => Some(Polarity::Low),
        _ => None,
    }
}

fn level_from_flags(flags: u16) -> Option<bool> {
    match (flags >> 2) & 0b11 {
        0b01 => Some(false),
        0b11 => Some(true),
        _ => None,
    }
}

/// The resolved routing of the 16 ISA IRQs.
#[derive(Clone, Copy, Debug)]
pub struct IsaRouting {
    routes: [Option<Route>; ISA_IRQ_COUNT as usize],
}

impl IsaRouting {
    /// Resolves `overrides` (entries for IRQs above 15 are ignored).
    pub fn new(overrides: &[SourceOverride]) -> Self {
        let mut routes: [Option<Route>; ISA_IRQ_COUNT as usize] =
            core::array::from_fn(|irq| Some(Route { global_interrupt: irq as u32, polarity: Some(Polarity::High), level: Some(false) }));
        for entry in overrides.iter().filter(|entry| (entry.irq as u32) < ISA_IRQ_COUNT) {
            routes[entry.irq as usize] = Some(Route {
                global_interrupt: entry.global_interrupt,
                polarity: Some(polarity_from_flags(entry.flags).unwrap_or(Polarity::High)),
                level: Some(level_from_flags(entry.flags).unwrap_or(false)),
            });
        }
        // An identity-routed IRQ whose GSI another IRQ was moved onto is shadowed.
        for (irq, route) in routes.iter_mut().enumerate() {
            let taken = overrides.iter().any(|entry| entry.irq as usize != irq && entry.global_interrupt == irq as u32);
            let moved = overrides.iter().any(|entry| entry.irq as usize == irq);
            if taken && !moved {
                *route = None;
            }
        }
        IsaRouting { routes }
    }

    /// Where IRQ-layer number `irq` arrives: through the overrides for ISA IRQs, GSI `irq`
    /// (polarity and trigger free) above them; `None` for a shadowed ISA IRQ.
    pub fn route(&self, irq: u32) -> Option<Route> {
        match self.routes.get(irq as usize) {
            Some(route) => *route,
            None => Some(Route { global_interrupt: irq, polarity: None, level: None }),
        }
    }

    /// The IRQ-layer number that GSI `global_interrupt` carries (inverse of [`route`](Self::route)).
    pub fn irq_of(&self, global_interrupt: u32) -> Option<u32> {
        if let Some(irq) = self.routes.iter().position(|route| route.map(|route| route.global_interrupt) == Some(global_interrupt)) {
            return Some(irq as u32);
        }
        (global_interrupt >= ISA_IRQ_COUNT).then_some(global_interrupt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The overrides QEMU's q35 and pc firmware lists: IRQ 0 to GSI 2, and the PCI IRQs 5,
    /// 9, 10 and 11 level-triggered, active high.
    fn qemu_overrides() -> [SourceOverride; 5] {
        [
            SourceOverride { irq: 0, global_interrupt: 2, flags: 0 },
            SourceOverride { irq: 5, global_interrupt: 5, flags: 0xd },
            SourceOverride { irq: 9, global_interrupt: 9, flags: 0xd },
            SourceOverride { irq: 10, global_interrupt: 10, flags: 0xd },
            SourceOverride { irq: 11, global_interrupt: 11, flags: 0xd },
        ]
    }

    #[test]
    fn qemu_routing() {
        let routing = IsaRouting::new(&qemu_overrides());
        let timer = routing.route(0).unwrap();
        assert_eq!(timer.global_interrupt, 2);
        assert_eq!(timer.trigger(Trigger::EdgeRising), Ok(Trigger::EdgeRising));
        assert_eq!(routing.route(2), None, "GSI 2 carries IRQ 0");
        let serial = routing.route(4).unwrap();
        assert_eq!(serial.global_interrupt, 4);
        assert_eq!(serial.trigger(Trigger::EdgeRising), Ok(Trigger::EdgeRising));
        assert_eq!(serial.trigger(Trigger::LevelHigh), Err(ConflictingTrigger), "ISA lines are edge-triggered");
        let acpi = routing.route(9).unwrap();
        assert_eq!(acpi.trigger(Trigger::LevelHigh), Ok(Trigger::LevelHigh));
        assert_eq!(acpi.trigger(Trigger::LevelLow), Ok(Trigger::LevelHigh), "firmware polarity wins");
        assert_eq!(acpi.trigger(Trigger::EdgeRising), Err(ConflictingTrigger));
        assert_eq!(routing.irq_of(2), Some(0));
        assert_eq!(routing.irq_of(4), Some(4));
        assert_eq!(routing.irq_of(0), None, "GSI 0 (the 8259 cascade) carries no IRQ");
        assert_eq!(routing.irq_of(20), Some(20));
    }

    #[test]
    fn pci_gsis_take_the_requested_trigger() {
        let routing = IsaRouting::new(&[]);
        let pci = routing.route(16).unwrap();
        assert_eq!(pci.global_interrupt, 16);
        assert_eq!(pci.trigger(Trigger::LevelLow), Ok(Trigger::LevelLow));
        assert_eq!(pci.trigger(Trigger::EdgeRising), Ok(Trigger::EdgeRising));
        assert_eq!(routing.route(2).unwrap().global_interrupt, 2, "no override: identity");
    }

    #[test]
    fn flags_decode_polarity_and_mode() {
        let routing = IsaRouting::new(&[
            SourceOverride { irq: 3, global_interrupt: 19, flags: 0b1111 },
            SourceOverride { irq: 7, global_interrupt: 7, flags: 0b0100 },
        ]);
        let moved = routing.route(3).unwrap();
        assert_eq!((moved.global_interrupt, moved.polarity, moved.level), (19, Some(Polarity::Low), Some(true)));
        assert_eq!(moved.trigger(Trigger::LevelHigh), Ok(Trigger::LevelLow));
        let edge = routing.route(7).unwrap();
        assert_eq!((edge.polarity, edge.level), (Some(Polarity::High), Some(false)));
        assert_eq!(routing.irq_of(19), Some(3));
    }
}
