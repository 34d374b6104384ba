//! The IRQ descriptor table: which interrupt numbers are requested, by whom, and how often each CPU took them. Plain data, tested on the host.

use hinoki_interface::Trigger;

/// Most CPUs whose interrupt counts are kept (higher CPU ids count as the last one).
pub const MAX_CPUS: usize = 8;

/// Interrupt numbers run from 0 to `MAX_IRQ_NUMBER - 1` (the GIC's INTIDs below 1020, the
/// x86 vectors below 256).
pub const MAX_IRQ_NUMBER: u32 = 1024;

/// Most interrupts requested at once (device IRQs and IPIs together).
pub const MAX_DESCRIPTORS: usize = 64;

/// An interrupt handler: runs with interrupts masked on the CPU that took `irq`, between
/// the controller's acknowledge and end-of-interrupt.
pub type IrqHandler = fn(irq: u32);

/// An inter-processor interrupt the kernel sends (Linux's arm64 `ipi_types`, in order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ipi {
    /// Makes the target CPU reconsider what to run (and wakes it from idle).
    Reschedule = 0,
    /// Runs a function the sender queued for the target CPU.
    CallFunction = 1,
}

impl Ipi {
    /// Every IPI, in number order.
    pub const ALL: [Ipi; 2] = [Ipi::Reschedule, Ipi::CallFunction];

    /// The row label's description in `/proc/interrupts`, as Linux prints it.
    pub fn description(self) -> &'static str {
        match self {
            Ipi::Reschedule => "Rescheduling interrupts",
            Ipi::CallFunction => "Function call interrupts",
        }
    }
}

/// One requested interrupt.
#[derive(Clone, Copy, Debug)]
pub struct Descriptor {
    /// The controller's interrupt number (hwirq).
    pub number: u32,
    /// Device name shown in `/proc/interrupts` (Linux's action name).
    pub name: &'static str,
    /// How the line signals.
    pub trigger: Trigger,
    /// The handler.
    pub handler: IrqHandler,
    /// `Some` when this interrupt carries an IPI (shown in the IPI rows, not as an IRQ row).
    pub ipi: Option<Ipi>,
    /// Banked per CPU (GIC SGIs and PPIs, e.g. the local timer): every CPU enables its own.
    pub per_cpu: bool,
    /// Unmasked at the controller.
    pub enabled: bool,
    /// How many times each CPU took it.
    pub counts: [u64; MAX_CPUS],
}

impl Descriptor {
    /// A descriptor for `number`, not yet enabled, never taken; per-CPU when it carries an IPI.
    pub fn new(number: u32, name: &'static str, trigger: Trigger, handler: IrqHandler, ipi: Option<Ipi>) -> Self {
        Descriptor { number, name, trigger, handler, ipi, per_cpu: ipi.is_some(), enabled: false, counts: [0; MAX_CPUS] }
    }
}

/// Why a request, free, enable or disable was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// Not an interrupt number this kernel or the controller has.
    InvalidIrq(u32),
    /// Someone requested this number already (interrupts are not shared).
    AlreadyRequested(u32),
    /// Nobody requested this number.
    NotRequested(u32),
    /// [`MAX_DESCRIPTORS`] interrupts are requested already.
    TableFull,
    /// The board has no interrupt controller (yet).
    NoController,
    /// The controller refused (unsupported trigger, CPU or capability).
    Controller(hinoki_interface::IrqError),
}

const NO_SLOT: u8 = u8::MAX;

/// The fixed-capacity table: descriptors in slots, and a number-to-slot index so the
/// dispatch path finds a handler in constant time.
pub struct DescriptorTable {
    slots: [Option<Descriptor>; MAX_DESCRIPTORS],
    index: [u8; MAX_IRQ_NUMBER as usize],
    spurious: [u64; MAX_CPUS],
    errors: u64,
}

fn cpu_slot(cpu: usize) -> usize {
    cpu.min(MAX_CPUS - 1)
}

impl DescriptorTable {
    /// An empty table.
    pub const fn new() -> Self {
        DescriptorTable { slots: [None; MAX_DESCRIPTORS], index: [NO_SLOT; MAX_IRQ_NUMBER as usize], spurious: [0; MAX_CPUS], errors: 0 }
    }

    /// Adds `descriptor`.
    pub fn insert(&mut self, descriptor: Descriptor) -> Result<(), RequestError> {
        let number = descriptor.number;
        let entry = self.index.get(number as usize).ok_or(RequestError::InvalidIrq(number))?;
        if *entry != NO_SLOT {
            return Err(RequestError::AlreadyRequested(number));
        }
        let slot = self.slots.iter().position(Option::is_none).ok_or(RequestError::TableFull)?;
        self.slots[slot] = Some(descriptor);
        self.index[number as usize] = slot as u8;
        Ok(())
    }

    /// Removes and returns the descriptor of `number`.
    pub fn remove(&mut self, number: u32) -> Result<Descriptor, RequestError> {
        let slot = self.slot_of(number)?;
        self.index[number as usize] = NO_SLOT;
        self.slots[slot].take().ok_or(RequestError::NotRequested(number))
    }

    fn slot_of(&self, number: u32) -> Result<usize, RequestError> {
        match self.index.get(number as usize) {
            None => Err(RequestError::InvalidIrq(number)),
            Some(&NO_SLOT) => Err(RequestError::NotRequested(number)),
            Some(&slot) => Ok(slot as usize),
        }
    }

    /// The descriptor of `number`.
    pub fn get(&self, number: u32) -> Option<&Descriptor> {
        self.slots[self.slot_of(number).ok()?].as_ref()
    }

    /// The descriptor of `number`, to change.
    pub fn get_mut(&mut self, number: u32) -> Option<&mut Descriptor> {
        let slot = self.slot_of(number).ok()?;
        self.slots[slot].as_mut()
    }

    /// Counts one interrupt `number` taken on `cpu` and returns its handler, or counts an
    /// error and returns `None` when nobody requested it.
    pub fn record(&mut self, number: u32, cpu: usize) -> Option<IrqHandler> {
        match self.slot_of(number).ok().and_then(|slot| self.slots[slot].as_mut()) {
            Some(descriptor) => {
                descriptor.counts[cpu_slot(cpu)] += 1;
                Some(descriptor.handler)
            }
            None => {
                self.errors += 1;
                None
            }
        }
    }

    /// Counts a spurious interrupt (the controller had nothing pending) on `cpu`.
    pub fn record_spurious(&mut self, cpu: usize) {
        self.spurious[cpu_slot(cpu)] += 1;
    }

    /// Spurious interrupts taken on `cpu`.
    pub fn spurious(&self, cpu: usize) -> u64 {
        self.spurious[cpu_slot(cpu)]
    }

    /// Interrupts nobody requested.
    pub fn unrequested(&self) -> u64 {
        self.errors
    }

    /// Spurious interrupts per CPU.
    pub fn spurious_counts(&self) -> [u64; MAX_CPUS] {
        self.spurious
    }

    /// Interrupts nobody requested, plus spurious ones on every CPU: Linux's `Err:` row.
    pub fn errors(&self) -> u64 {
        self.errors + self.spurious.iter().sum::<u64>()
    }

    /// The requested descriptor with the lowest number above `after` (`None`: from the
    /// start), for walking the table in number order without holding it.
    pub fn next_after(&self, after: Option<u32>) -> Option<Descriptor> {
        let start = after.map_or(0, |number| number as usize + 1);
        let (_, &slot) = self.index.iter().enumerate().skip(start).find(|(_, &slot)| slot != NO_SLOT)?;
        self.slots[slot as usize]
    }

    /// The descriptor carrying `ipi`, if one was requested.
    pub fn ipi_descriptor(&self, ipi: Ipi) -> Option<&Descriptor> {
        self.slots.iter().flatten().find(|descriptor| descriptor.ipi == Some(ipi))
    }

    /// The highest requested number, for the width of `/proc/interrupts`' first column.
    pub fn highest_number(&self) -> Option<u32> {
        self.index.iter().rposition(|&slot| slot != NO_SLOT).map(|number| number as u32)
    }
}

impl Default for DescriptorTable {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handler(_irq: u32) {}

    fn device(number: u32) -> Descriptor {
        Descriptor::new(number, "device", Trigger::LevelHigh, handler, None)
    }

    #[test]
    fn insert_refuses_duplicates_invalid_numbers_and_overflow() {
        let mut table = DescriptorTable::new();
        table.insert(device(30)).unwrap();
        assert_eq!(table.insert(device(30)).unwrap_err(), RequestError::AlreadyRequested(30));
        assert_eq!(table.insert(device(MAX_IRQ_NUMBER)).unwrap_err(), RequestError::InvalidIrq(MAX_IRQ_NUMBER));
        for number in 100..100 + MAX_DESCRIPTORS as u32 - 1 {
            table.insert(device(number)).unwrap();
        }
        assert_eq!(table.insert(device(999)).unwrap_err(), RequestError::TableFull);
        table.remove(100).unwrap();
        table.insert(device(999)).unwrap();
        assert_eq!(table.get(999).unwrap().number, 999);
    }

    #[test]
    fn remove_and_lookup() {
        let mut table = DescriptorTable::new();
        assert_eq!(table.remove(33).unwrap_err(), RequestError::NotRequested(33));
        assert_eq!(table.remove(5000).unwrap_err(), RequestError::InvalidIrq(5000));
        table.insert(device(33)).unwrap();
        assert_eq!(table.remove(33).unwrap().number, 33);
        assert!(table.get(33).is_none());
        assert!(table.record(33, 0).is_none(), "a freed interrupt has no handler");
        assert_eq!(table.errors(), 1);
    }

    #[test]
    fn counts_per_cpu_errors_and_spurious() {
        let mut table = DescriptorTable::new();
        table.insert(device(30)).unwrap();
        assert!(table.record(30, 0).is_some());
        assert!(table.record(30, 0).is_some());
        assert!(table.record(30, 3).is_some());
        assert!(table.record(30, 50).is_some(), "CPUs past the capacity count as the last slot");
        let counts = table.get(30).unwrap().counts;
        assert_eq!((counts[0], counts[3], counts[MAX_CPUS - 1]), (2, 1, 1));
        assert!(table.record(31, 1).is_none());
        table.record_spurious(1);
        table.record_spurious(1);
        assert_eq!(table.spurious(1), 2);
        assert_eq!(table.errors(), 3);
    }

    #[test]
    fn walks_in_number_order_and_finds_ipis() {
        let mut table = DescriptorTable::new();
        for number in [79, 30, 1, 33] {
            let ipi = (number == 1).then_some(Ipi::CallFunction);
            table.insert(Descriptor::new(number, "x", Trigger::EdgeRising, handler, ipi)).unwrap();
        }
        let mut seen = Vec::new();
        let mut cursor = None;
        while let Some(descriptor) = table.next_after(cursor) {
            seen.push(descriptor.number);
            cursor = Some(descriptor.number);
        }
        assert_eq!(seen, [1, 30, 33, 79]);
        assert_eq!(table.highest_number(), Some(79));
        assert_eq!(table.ipi_descriptor(Ipi::CallFunction).unwrap().number, 1);
        assert!(table.ipi_descriptor(Ipi::Reschedule).is_none());
    }
}
