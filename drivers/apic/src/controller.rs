//! The APIC pair as one [`InterruptController`]: the calling CPU's local APIC (acceptance, EOI, IPIs, local vectors) and the I/O APICs (device lines routed to a chosen CPU).

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use hinoki_interface::{Cpu, InterruptController, IpiTarget, IrqError, NamedRow, RowSource, Trigger};

use crate::io_apic::{redirection_entry, IoApic};
use crate::local::{self, InterruptCommand, Shorthand};
use crate::routing::{IsaRouting, SourceOverride};
use crate::vector::{self, Incoming};
use crate::MAX_CPUS;

/// Most I/O APICs the controller drives.
pub const MAX_IO_APICS: usize = 4;

/// Access to the calling CPU's local APIC, supplied by the board from the arch crate
/// (x2APIC MSRs or xAPIC MMIO).
pub trait LocalApicAccess: Sync {
    /// Reads register `offset` (the xAPIC MMIO offset; x2APIC uses MSR `0x800 + offset / 16`).
    fn read(&self, offset: u32) -> u32;
    /// Writes register `offset`.
    fn write(&self, offset: u32, value: u32);
    /// Sends `command` through the interrupt command register, returning once the APIC has
    /// accepted it.
    fn send(&self, command: InterruptCommand);
    /// The calling CPU's APIC ID (all 32 bits in x2APIC mode, bits 31:24 of the ID register
    /// in xAPIC mode).
    fn apic_id(&self) -> u32;
    /// The vector the calling CPU is handling, as its entry stub recorded it.
    fn current_vector(&self) -> u8;
    /// Arms the TSC-deadline timer at TSC value `deadline` (0 disarms).
    fn write_tsc_deadline(&self, deadline: u64);
    /// Reads the time-stamp counter.
    fn read_tsc(&self) -> u64;
}

/// A minimal lock for the I/O APIC's index/data window. Every caller already runs with
/// interrupts masked (the IRQ layer's table lock), so it never spins against a handler.
struct WindowLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: `with` hands out the value only while `locked` is held, to one caller at a time.
unsafe impl<T: Send> Sync for WindowLock<T> {}

impl<T> WindowLock<T> {
    fn with<R>(&self, action: impl FnOnce(&mut T) -> R) -> R {
        while self.locked.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            core::hint::spin_loop();
        }
        // SAFETY: the flag is held, so no other reference to the value exists.
        let result = action(unsafe { &mut *self.value.get() });
        self.locked.store(false, Ordering::Release);
        result
    }
}

/// Per-IRQ state of the I/O APIC lines.
struct Lines {
    io_apics: [Option<IoApic>; MAX_IO_APICS],
    /// The trigger each line uses (resolved against the firmware's overrides).
    triggers: [Trigger; vector::IO_APIC_IRQ_COUNT as usize],
    /// The APIC ID each line is routed to.
    destinations: [u8; vector::IO_APIC_IRQ_COUNT as usize],
    enabled: [bool; vector::IO_APIC_IRQ_COUNT as usize],
}

// SAFETY: `IoApic` holds only an MMIO address; moving it between CPUs is fine.
unsafe impl Send for Lines {}

const NOT_ONLINE: u32 = u32::MAX;

/// Linux's x86 rows for the local vectors, in Linux's order (`arch_show_interrupts`).
const NAMED_ROWS: [NamedRow; 6] = [
    NamedRow { label: "LOC", description: "Local timer interrupts", source: RowSource::Interrupt(vector::LOCAL_TIMER_VECTOR as u32) },
    NamedRow { label: "SPU", description: "Spurious interrupts", source: RowSource::Spurious },
    NamedRow { label: "RES", description: "Rescheduling interrupts", source: RowSource::Interrupt(vector::IPI_VECTOR_BASE as u32) },
    NamedRow { label: "CAL", description: "Function call interrupts", source: RowSource::Interrupt(vector::IPI_VECTOR_BASE as u32 + 1) },
    NamedRow { label: "TLB", description: "TLB shootdowns", source: RowSource::Interrupt(vector::TLB_SHOOTDOWN_VECTOR as u32) },
    NamedRow { label: "ERR", description: "", source: RowSource::Errors },
];

/// The local APICs and I/O APICs of a PC.
pub struct Apic<A: LocalApicAccess + 'static> {
    local: &'static A,
    cpu: &'static dyn Cpu,
    routing: IsaRouting,
    lines: WindowLock<Lines>,
    /// Each logical CPU's APIC ID, [`NOT_ONLINE`] until its `init_cpu`.
    apic_ids: [AtomicU32; MAX_CPUS],
    /// APIC error interrupts seen (Linux counts them in `ERR`).
    apic_errors: AtomicU64,
}

impl<A: LocalApicAccess + 'static> Apic<A> {
    /// The controller for the I/O APICs at `io_apics` (register base, first GSI) with the
    /// MADT's interrupt source `overrides`. Masks every I/O APIC pin. Device lines are routed
    /// to the CPU that calls this (the boot CPU) until [`InterruptController::set_affinity`].
    ///
    /// # Safety
    /// Each base must be the mapped, uncached register block of an I/O APIC that nothing
    /// else programs; `local` must reach the calling CPU's local APIC.
    pub unsafe fn new(local: &'static A, cpu: &'static dyn Cpu, io_apics: &[(usize, u32)], overrides: &[SourceOverride]) -> Self {
        let mut devices: [Option<IoApic>; MAX_IO_APICS] = [const { None }; MAX_IO_APICS];
        for (slot, &(base, global_interrupt_base)) in devices.iter_mut().zip(io_apics) {
            // SAFETY: forwarded from the caller.
            *slot = Some(unsafe { IoApic::new(base, global_interrupt_base) });
        }
        let boot_apic_id = local.apic_id() as u8;
        Apic {
            local,
            cpu,
            routing: IsaRouting::new(overrides),
            lines: WindowLock {
                locked: AtomicBool::new(false),
                value: UnsafeCell::new(Lines {
                    io_apics: devices,
                    triggers: [Trigger::EdgeRising; vector::IO_APIC_IRQ_COUNT as usize],
                    destinations: [boot_apic_id; vector::IO_APIC_IRQ_COUNT as usize],
                    enabled: [false; vector::IO_APIC_IRQ_COUNT as usize],
                }),
            },
            apic_ids: [const { AtomicU32::new(NOT_ONLINE) }; MAX_CPUS],
            apic_errors: AtomicU64::new(0),
        }
    }

    /// The local APIC access this controller uses.
    pub fn local(&self) -> &'static A {
        self.local
    }

    /// Total pins over all I/O APICs.
    pub fn io_apic_pins(&self) -> u32 {
        self.lines.with(|lines| lines.io_apics.iter().flatten().map(IoApic::pins).sum())
    }

    /// The APIC ID of logical CPU `cpu`, once it ran `init_cpu`.
    pub fn apic_id_of(&self, cpu: u32) -> Result<u32, IrqError> {
        match self.apic_ids.get(cpu as usize).map(|id| id.load(Ordering::Acquire)) {
            Some(id) if id != NOT_ONLINE => Ok(id),
            _ => Err(IrqError::InvalidCpu(cpu)),
        }
    }

    /// Sends `vector` to `target` (any local vector: IPIs, TLB shootdowns).
    pub fn send_vector(&self, target: IpiTarget, vector: u8) -> Result<(), IrqError> {
        let command = match target {
            IpiTarget::Cpu(cpu) => InterruptCommand::fixed(vector, self.apic_id_of(cpu)?),
            IpiTarget::AllOthers => InterruptCommand { shorthand: Shorthand::AllExcludingSelf, ..InterruptCommand::fixed(vector, 0) },
        };
        self.local.send(command);
        Ok(())
    }

    /// Reads and clears the calling CPU's error status register, counting one APIC error
    /// (for the error interrupt's handler); returns the status bits.
    pub fn take_error_status(&self) -> u32 {
        self.local.write(local::ERROR_STATUS, 0);
        self.apic_errors.fetch_add(1, Ordering::Relaxed);
        self.local.read(local::ERROR_STATUS)
    }

    fn program_line(&self, lines: &mut Lines, irq: u32) -> Result<(), IrqError> {
        let route = self.routing.route(irq).ok_or(IrqError::InvalidIrq(irq))?;
        let index = irq as usize;
        let entry = redirection_entry(
            vector::IO_APIC_VECTOR_BASE + irq as u8,
            lines.triggers[index],
            lines.destinations[index],
            !lines.enabled[index],
        );
        let (io_apic, pin) = lines
            .io_apics
            .iter()
            .flatten()
            .find_map(|io_apic| io_apic.pin_of(route.global_interrupt).map(|pin| (io_apic, pin)))
            .ok_or(IrqError::InvalidIrq(irq))?;
        io_apic.write_entry(pin, entry);
        Ok(())
    }

    fn set_line_enabled(&self, irq: u32, enabled: bool) -> Result<(), IrqError> {
        self.lines.with(|lines| {
            let previous = lines.enabled[irq as usize];
            lines.enabled[irq as usize] = enabled;
            let result = self.program_line(lines, irq);
            if result.is_err() {
                lines.enabled[irq as usize] = previous;
            }
            result
        })
    }

    fn set_local_masked(&self, irq: u32, masked: bool) -> Result<(), IrqError> {
        let register = match irq as u8 {
            vector::LOCAL_TIMER_VECTOR => local::LVT_TIMER,
            vector::ERROR_APIC_VECTOR => local::LVT_ERROR,
            // IPI and TLB vectors cannot be masked one by one; requesting them is enough.
            _ => return Ok(()),
        };
        let value = self.local.read(register);
        self.local.write(register, if masked { value | local::LVT_MASKED } else { value & !local::LVT_MASKED });
        Ok(())
    }
}

impl<A: LocalApicAccess + 'static> InterruptController for Apic<A> {
    fn name(&self) -> &'static str {
        "IO-APIC"
    }

    /// Software-enables the calling CPU's local APIC: every vector accepted, the timer,
    /// thermal, performance and LINT0 entries masked (devices come through the I/O APIC, not
    /// the 8259), LINT1 as NMI, errors on [`vector::ERROR_APIC_VECTOR`] (a system vector the
    /// board handles with [`Apic::take_error_status`], counted in `ERR`), spurious interrupts
    /// on [`vector::SPURIOUS_APIC_VECTOR`].
    fn init_cpu(&self) {
        let local = self.local;
        local.write(local::TASK_PRIORITY, 0);
        local.write(local::LVT_TIMER, vector::LOCAL_TIMER_VECTOR as u32 | local::LVT_MASKED);
        local.write(local::LVT_THERMAL, local::LVT_MASKED);
        local.write(local::LVT_PERFORMANCE, local::LVT_MASKED);
        local.write(local::LVT_LINT0, local::LVT_MASKED);
        local.write(local::LVT_LINT1, local::LVT_DELIVERY_NMI);
        local.write(local::LVT_ERROR, vector::ERROR_APIC_VECTOR as u32);
        local.write(local::SPURIOUS_INTERRUPT_VECTOR, vector::SPURIOUS_APIC_VECTOR as u32 | local::APIC_SOFTWARE_ENABLE);
        // The error status latches on a write; two clear anything from before.
        local.write(local::ERROR_STATUS, 0);
        local.write(local::ERROR_STATUS, 0);
        local.write(local::END_OF_INTERRUPT, 0);
        if let Some(slot) = self.apic_ids.get(self.cpu.current_id().0 as usize) {
            slot.store(local.apic_id(), Ordering::Release);
        }
    }

    fn enable(&self, irq: u32) -> Result<(), IrqError> {
        if irq < vector::IO_APIC_IRQ_COUNT {
            return self.set_line_enabled(irq, true);
        }
        if vector::is_local(irq) {
            return self.set_local_masked(irq, false);
        }
        Err(IrqError::InvalidIrq(irq))
    }

    fn disable(&self, irq: u32) -> Result<(), IrqError> {
        if irq < vector::IO_APIC_IRQ_COUNT {
            return self.set_line_enabled(irq, false);
        }
        if vector::is_local(irq) {
            return self.set_local_masked(irq, true);
        }
        Err(IrqError::InvalidIrq(irq))
    }

    fn set_trigger(&self, irq: u32, trigger: Trigger) -> Result<(), IrqError> {
        if irq < vector::IO_APIC_IRQ_COUNT {
            let route = self.routing.route(irq).ok_or(IrqError::InvalidIrq(irq))?;
            let resolved = route.trigger(trigger).map_err(|_| IrqError::UnsupportedTrigger)?;
            return self.lines.with(|lines| {
                let reachable = lines.io_apics.iter().flatten().any(|io_apic| io_apic.pin_of(route.global_interrupt).is_some());
                if !reachable {
                    return Err(IrqError::InvalidIrq(irq));
                }
                lines.triggers[irq as usize] = resolved;
                self.program_line(lines, irq)
            });
        }
        if vector::is_local(irq) {
            // Local vectors are edge-triggered messages.
            return if trigger == Trigger::EdgeRising { Ok(()) } else { Err(IrqError::UnsupportedTrigger) };
        }
        Err(IrqError::InvalidIrq(irq))
    }

    fn set_affinity(&self, irq: u32, cpu: u32) -> Result<(), IrqError> {
        if irq >= vector::IO_APIC_IRQ_COUNT {
            return Err(IrqError::InvalidIrq(irq));
        }
        let apic_id = self.apic_id_of(cpu)?;
        let destination = u8::try_from(apic_id).map_err(|_| IrqError::InvalidCpu(cpu))?;
        self.lines.with(|lines| {
            lines.destinations[irq as usize] = destination;
            self.program_line(lines, irq)
        })
    }

    fn acknowledge(&self) -> Option<u32> {
        match vector::classify(self.local.current_vector()) {
            Incoming::Interrupt(irq) => Some(irq),
            Incoming::Spurious => None,
        }
    }

    fn end_of_interrupt(&self, _irq: u32) {
        self.local.write(local::END_OF_INTERRUPT, 0);
    }

    fn send_ipi(&self, target: IpiTarget, ipi: u32) -> Result<(), IrqError> {
        let vector = vector::ipi_vector(ipi).ok_or(IrqError::Unsupported)?;
        self.send_vector(target, vector)
    }

    fn ipi_interrupt(&self, ipi: u32) -> Option<u32> {
        vector::ipi_vector(ipi).map(u32::from)
    }

    fn hardware_irq(&self, irq: u32) -> u32 {
        self.routing.route(irq).map_or(irq, |route| route.global_interrupt)
    }

    fn flow_name(&self, _irq: u32, trigger: Trigger) -> Option<&'static str> {
        Some(if matches!(trigger, Trigger::LevelHigh | Trigger::LevelLow) { "fasteoi" } else { "edge" })
    }

    fn named_rows(&self) -> &[NamedRow] {
        &NAMED_ROWS
    }

    fn extra_errors(&self) -> u64 {
        self.apic_errors.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::sync::Mutex;
    use std::vec::Vec;

    /// A local APIC that records writes and sends; reads return the last write.
    struct FakeLocal {
        registers: Mutex<[u32; 64]>,
        sent: Mutex<Vec<InterruptCommand>>,
        vector: AtomicU32,
        id: u32,
    }

    impl LocalApicAccess for FakeLocal {
        fn read(&self, offset: u32) -> u32 {
            self.registers.lock().unwrap()[(offset >> 4) as usize]
        }
        fn write(&self, offset: u32, value: u32) {
            self.registers.lock().unwrap()[(offset >> 4) as usize] = value;
        }
        fn send(&self, command: InterruptCommand) {
            self.sent.lock().unwrap().push(command);
        }
        fn apic_id(&self) -> u32 {
            self.id
        }
        fn current_vector(&self) -> u8 {
            self.vector.load(Ordering::Relaxed) as u8
        }
        fn write_tsc_deadline(&self, _deadline: u64) {}
        fn read_tsc(&self) -> u64 {
            0
        }
    }

    static CPU: hinoki_interface::testing::UniprocessorCpu = hinoki_interface::testing::UniprocessorCpu;

    fn controller(io_apic: &mut [u32; 8]) -> Apic<FakeLocal> {
        io_apic[4] = 0x0017_0020;
        let local: &'static FakeLocal = std::boxed::Box::leak(std::boxed::Box::new(FakeLocal {
            registers: Mutex::new([0; 64]),
            sent: Mutex::new(Vec::new()),
            vector: AtomicU32::new(0),
            id: 5,
        }));
        let overrides =
            [SourceOverride { irq: 0, global_interrupt: 2, flags: 0 }, SourceOverride { irq: 9, global_interrupt: 9, flags: 0xd }];
        // SAFETY: `io_apic` stands in for the register window and outlives the controller in
        // each test.
        unsafe { Apic::new(local, &CPU, &[(io_apic.as_mut_ptr() as usize, 0)], &overrides) }
    }

    #[test]
    fn init_cpu_enables_the_local_apic_and_records_its_id() {
        let mut window = [0u32; 8];
        let apic = controller(&mut window);
        assert_eq!(apic.apic_id_of(0), Err(IrqError::InvalidCpu(0)));
        apic.init_cpu();
        let local = apic.local();
        assert_eq!(local.read(local::SPURIOUS_INTERRUPT_VECTOR), 0x1ff);
        assert_eq!(local.read(local::LVT_LINT0), local::LVT_MASKED);
        assert_eq!(local.read(local::LVT_TIMER) & local::LVT_MASKED, local::LVT_MASKED);
        assert_eq!(apic.apic_id_of(0), Ok(5));
        apic.enable(vector::LOCAL_TIMER_VECTOR as u32).unwrap();
        assert_eq!(local.read(local::LVT_TIMER), 0xf0);
        apic.disable(vector::LOCAL_TIMER_VECTOR as u32).unwrap();
        assert_eq!(local.read(local::LVT_TIMER), 0xf0 | local::LVT_MASKED);
    }

    #[test]
    fn io_apic_lines_follow_the_overrides() {
        let mut window = [0u32; 8];
        let apic = controller(&mut window);
        assert_eq!(apic.io_apic_pins(), 24);
        assert_eq!(apic.set_trigger(4, Trigger::EdgeRising), Ok(()));
        assert_eq!(apic.set_trigger(4, Trigger::LevelHigh), Err(IrqError::UnsupportedTrigger));
        assert_eq!(apic.set_trigger(9, Trigger::LevelLow), Ok(()));
        assert_eq!(apic.set_trigger(2, Trigger::EdgeRising), Err(IrqError::InvalidIrq(2)), "GSI 2 carries IRQ 0");
        assert_eq!(apic.set_trigger(24, Trigger::LevelLow), Err(IrqError::InvalidIrq(24)), "past the last pin");
        assert_eq!(apic.set_trigger(1020, Trigger::LevelHigh), Err(IrqError::InvalidIrq(1020)));
        assert_eq!(apic.enable(4), Ok(()));
        // The last window write is the low half of IRQ 4's entry: vector 0x34, edge, unmasked.
        assert_eq!(window[0], 0x10 + 2 * 4);
        assert_eq!(window[4], 0x34);
        assert_eq!(apic.enable(9), Ok(()));
        assert_eq!(window[4], 0x8039, "IRQ 9 is level-triggered, active high (firmware wins)");
        assert_eq!(apic.enable(0), Ok(()));
        assert_eq!(window[0], 0x10 + 2 * 2, "IRQ 0 lands on pin 2");
        assert_eq!(apic.disable(4), Ok(()));
        assert_eq!(window[4], 0x1_0034);
        assert_eq!(apic.hardware_irq(0), 2);
        assert_eq!(apic.flow_name(9, Trigger::LevelHigh), Some("fasteoi"));
        assert_eq!(apic.set_affinity(4, 3), Err(IrqError::InvalidCpu(3)));
    }

    #[test]
    fn acknowledge_classifies_vectors_and_ipis_name_apic_ids() {
        let mut window = [0u32; 8];
        let apic = controller(&mut window);
        apic.init_cpu();
        let local = apic.local();
        local.vector.store(0x34, Ordering::Relaxed);
        assert_eq!(apic.acknowledge(), Some(4));
        local.vector.store(0xf0, Ordering::Relaxed);
        assert_eq!(apic.acknowledge(), Some(0xf0));
        local.vector.store(0xff, Ordering::Relaxed);
        assert_eq!(apic.acknowledge(), None);
        assert_eq!(apic.ipi_interrupt(1), Some(0xe1));
        apic.send_ipi(IpiTarget::Cpu(0), 1).unwrap();
        assert_eq!(apic.send_ipi(IpiTarget::Cpu(2), 0), Err(IrqError::InvalidCpu(2)));
        apic.send_ipi(IpiTarget::AllOthers, 0).unwrap();
        let sent = local.sent.lock().unwrap().clone();
        assert_eq!(sent[0].x2apic_value(), 0x0000_0005_0000_40e1);
        assert_eq!(sent[1].shorthand, Shorthand::AllExcludingSelf);
        assert_eq!(apic.named_rows()[0].label, "LOC");
    }
}
