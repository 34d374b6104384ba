//! Interrupt controller: the GIC, the BCM2836/BCM2835 pair or the APICs, behind one trait.

/// How an interrupt line signals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Level-triggered, active high.
    LevelHigh,
    /// Level-triggered, active low.
    LevelLow,
    /// Edge-triggered, rising edge.
    EdgeRising,
    /// Edge-triggered, falling edge.
    EdgeFalling,
}

impl Trigger {
    /// Linux's short form in `/proc/interrupts`: `"Level"` or `"Edge"`.
    pub fn short_name(self) -> &'static str {
        match self {
            Trigger::LevelHigh | Trigger::LevelLow => "Level",
            Trigger::EdgeRising | Trigger::EdgeFalling => "Edge",
        }
    }
}

/// Which CPUs an inter-processor interrupt goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpiTarget {
    /// One CPU by logical id.
    Cpu(u32),
    /// Every online CPU except the sender.
    AllOthers,
}

/// Why an interrupt-controller request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqError {
    /// The number is not an interrupt this controller has.
    InvalidIrq(u32),
    /// The controller cannot configure this trigger mode for this line.
    UnsupportedTrigger,
    /// The target CPU is not online or does not exist.
    InvalidCpu(u32),
    /// The controller has no such capability (e.g. IPIs on a uniprocessor controller).
    Unsupported,
}

/// Where the counts of a named `/proc/interrupts` row come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowSource {
    /// The per-CPU counts of this interrupt number (zeros while nobody requested it).
    Interrupt(u32),
    /// The per-CPU spurious-interrupt counts.
    Spurious,
    /// The single total of errors: unrequested and spurious interrupts plus
    /// [`InterruptController::extra_errors`]; printed as one count, like Linux's `ERR:`.
    Errors,
}

/// A named row of `/proc/interrupts`, such as x86's `LOC: ... Local timer interrupts`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NamedRow {
    /// The label before the colon, e.g. `"LOC"`.
    pub label: &'static str,
    /// The text after the counts, e.g. `"Local timer interrupts"`.
    pub description: &'static str,
    /// Where the counts come from.
    pub source: RowSource,
}

/// An interrupt controller. Numbers are the controller's own (hardware IRQ numbers).
pub trait InterruptController: Sync {
    /// Name shown in `/proc/interrupts`, e.g. `"GICv2"`, `"IO-APIC"`.
    fn name(&self) -> &'static str;

    /// Initializes the per-CPU part (GIC CPU interface, LAPIC) on the calling CPU.
    fn init_cpu(&self);

    /// Unmasks `irq` (on the calling CPU for per-CPU interrupts).
    fn enable(&self, irq: u32) -> Result<(), IrqError>;

    /// Masks `irq`.
    fn disable(&self, irq: u32) -> Result<(), IrqError>;

    /// Sets the trigger mode of `irq`.
    fn set_trigger(&self, irq: u32, trigger: Trigger) -> Result<(), IrqError>;

    /// Routes a shared interrupt to one CPU.
    fn set_affinity(&self, _irq: u32, cpu: u32) -> Result<(), IrqError> {
        Err(IrqError::InvalidCpu(cpu))
    }

    /// Claims the highest-priority pending interrupt, if any; `None` when spurious.
    fn acknowledge(&self) -> Option<u32>;

    /// Signals completion of a claimed interrupt.
    fn end_of_interrupt(&self, irq: u32);

    /// Sends inter-processor interrupt `ipi` (a controller-relative number).
    fn send_ipi(&self, _target: IpiTarget, _ipi: u32) -> Result<(), IrqError> {
        Err(IrqError::Unsupported)
    }

    /// The interrupt number inter-processor interrupt `ipi` arrives as on the receiving
    /// CPU (the GIC's SGI `ipi`, an APIC vector), or `None` when the controller has no such
    /// IPI. The IRQ layer uses it to tell IPIs from device interrupts.
    fn ipi_interrupt(&self, _ipi: u32) -> Option<u32> {
        None
    }

    /// The chip name `/proc/interrupts` prints for `irq`: the controller that owns the line
    /// when several are chained behind this one (the Pi 3's `bcm2836-timer` and
    /// `ARMCTRL-level`); [`name`](Self::name) by default.
    fn chip_name(&self, _irq: u32) -> &'static str {
        self.name()
    }

    /// The hardware number `/proc/interrupts` prints for `irq` (the I/O APIC input of an x86
    /// IRQ after interrupt source overrides); the number itself by default.
    fn hardware_irq(&self, irq: u32) -> u32 {
        irq
    }

    /// The flow-handler name Linux prints after the hardware number (`4-edge`,
    /// `9-fasteoi` on x86); `None` (the default) prints the trigger as `Level` or `Edge`.
    fn flow_name(&self, _irq: u32, _trigger: Trigger) -> Option<&'static str> {
        None
    }

    /// Named rows printed after the numbered ones, in this order, in Linux's per-arch style
    /// (x86: `LOC`, `SPU`, `RES`, `CAL`, `TLB`, `ERR`). Interrupts a named row shows get no
    /// numbered or `IPIn:` row. Empty (the default): IPIs print as `IPIn:` rows and errors as
    /// `Err:`, as on arm64.
    fn named_rows(&self) -> &[NamedRow] {
        &[]
    }

    /// Errors the controller counted itself (x86 APIC error interrupts), added to the
    /// error row.
    fn extra_errors(&self) -> u64 {
        0
    }
}
