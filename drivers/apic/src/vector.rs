//! The interrupt vector layout: which IDT vector carries which interrupt, and how vectors map to the IRQ layer's numbers.

/// Vectors 0-31 are CPU exceptions; external interrupts start here.
pub const FIRST_EXTERNAL_VECTOR: u8 = 0x20;
/// The legacy 8259 PICs are remapped to 0x20-0x2f and fully masked; anything arriving
/// there is a PIC spurious interrupt (IRQ 7 or 15).
pub const LEGACY_PIC_VECTOR_BASE: u8 = 0x20;
/// I/O APIC IRQ `n` arrives on vector `IO_APIC_VECTOR_BASE + n`.
pub const IO_APIC_VECTOR_BASE: u8 = 0x30;
/// Number of I/O APIC IRQ numbers (vectors 0x30-0xdf).
pub const IO_APIC_IRQ_COUNT: u32 = (IPI_VECTOR_BASE - IO_APIC_VECTOR_BASE) as u32;
/// IPI `n` (the kernel's `Ipi` numbers, 0-15) arrives on vector `IPI_VECTOR_BASE + n`.
pub const IPI_VECTOR_BASE: u8 = 0xe0;
/// Number of IPI vectors.
pub const IPI_COUNT: u32 = 16;
/// The local APIC timer (Linux's `LOCAL_TIMER_VECTOR`).
pub const LOCAL_TIMER_VECTOR: u8 = 0xf0;
/// TLB shootdown requests.
pub const TLB_SHOOTDOWN_VECTOR: u8 = 0xf1;
/// Local APIC error interrupts (Linux's `ERROR_APIC_VECTOR`).
pub const ERROR_APIC_VECTOR: u8 = 0xfe;
/// The local APIC's spurious-interrupt vector (Linux's `SPURIOUS_APIC_VECTOR`); never
/// acknowledged with an EOI.
pub const SPURIOUS_APIC_VECTOR: u8 = 0xff;

/// What a vector taken by the CPU means to the IRQ layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A real interrupt with this IRQ-layer number; needs an EOI.
    Interrupt(u32),
    /// The APIC's spurious vector or a masked 8259's spurious IRQ: count, no EOI.
    Spurious,
}

/// Classifies vector `vector` (32-255).
pub fn classify(vector: u8) -> Incoming {
    match vector {
        SPURIOUS_APIC_VECTOR => Incoming::Spurious,
        vector if vector < IO_APIC_VECTOR_BASE => Incoming::Spurious,
        vector if vector < IPI_VECTOR_BASE => Incoming::Interrupt((vector - IO_APIC_VECTOR_BASE) as u32),
        vector => Incoming::Interrupt(vector as u32),
    }
}

/// The vector of IRQ-layer number `irq`, or `None` for numbers the APICs do not have.
pub fn vector_of(irq: u32) -> Option<u8> {
    if irq < IO_APIC_IRQ_COUNT {
        return Some(IO_APIC_VECTOR_BASE + irq as u8);
    }
    if is_local(irq) {
        return Some(irq as u8);
    }
    None
}

/// Whether `irq` is a local APIC vector (per CPU, not routed through the I/O APIC).
pub fn is_local(irq: u32) -> bool {
    (IPI_VECTOR_BASE as u32..SPURIOUS_APIC_VECTOR as u32).contains(&irq)
}

/// The vector of IPI `ipi`.
pub fn ipi_vector(ipi: u32) -> Option<u8> {
    (ipi < IPI_COUNT).then(|| IPI_VECTOR_BASE + ipi as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_round_trip_through_numbers() {
        for irq in 0..IO_APIC_IRQ_COUNT {
            assert_eq!(classify(vector_of(irq).unwrap()), Incoming::Interrupt(irq));
        }
        for vector in IPI_VECTOR_BASE..SPURIOUS_APIC_VECTOR {
            assert_eq!(classify(vector), Incoming::Interrupt(vector as u32));
            assert_eq!(vector_of(vector as u32), Some(vector));
        }
        assert_eq!(vector_of(4), Some(0x34));
        assert_eq!(classify(0x34), Incoming::Interrupt(4));
    }

    #[test]
    fn spurious_and_invalid() {
        assert_eq!(classify(SPURIOUS_APIC_VECTOR), Incoming::Spurious);
        assert_eq!(classify(0x27), Incoming::Spurious);
        assert_eq!(classify(0x2f), Incoming::Spurious);
        assert_eq!(vector_of(0xff), None);
        assert_eq!(vector_of(1020), None);
        assert_eq!(ipi_vector(1), Some(0xe1));
        assert_eq!(ipi_vector(16), None);
        assert!(is_local(LOCAL_TIMER_VECTOR as u32));
        assert!(!is_local(4));
    }
}
