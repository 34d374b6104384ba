//! The BCM2836/BCM2837 per-core local interrupt controller ("ARM local peripherals" at 0x4000_0000 on the Raspberry Pi 2/3): each core's generic-timer interrupts, four write-to-set / write-to-clear mailboxes per core used as IPIs, and the peripheral controller's output chained in as the "GPU" interrupt of one core.
//!
//! Interrupt numbers, as the kernel sees them through this driver:
//!
//! | numbers | what | hardware number (`/proc/interrupts`) |
//! |---|---|---|
//! | 0-3 | the calling core's CNTPS, CNTPNS, CNTHP, CNTV timer interrupts (per CPU) | 0-3, chip `bcm2836-timer` |
//! | 16-23 | IPIs 0-7: bits 0-7 of the target core's mailbox 0 | 0-7, chip `bcm2836-ipi` |
//! | 32 and up | the chained controller's interrupt `number - 32` | the chained controller's |
//!
//! Logical CPU ids are core numbers (the board starts core `n` as CPU `n`).
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

use core::sync::atomic::{fence, AtomicU32, Ordering};

use hinoki_interface::{Cpu, InterruptController, IpiTarget, IrqError, Trigger};

/// Register offsets from the block's base.
pub mod registers {
    /// GPU interrupt routing: bits 1:0 the core that gets the GPU IRQ.
    pub const GPU_ROUTING: usize = 0x0c;
    /// Core `n`'s timer interrupt control at `+ 4 * n`: bits 0-3 route CNTPS, CNTPNS,
    /// CNTHP, CNTV to the core's IRQ.
    pub const TIMER_CONTROL: usize = 0x40;
    /// Core `n`'s mailbox interrupt control at `+ 4 * n`: bits 0-3 enable mailbox 0-3 IRQs.
    pub const MAILBOX_CONTROL: usize = 0x50;
    /// Core `n`'s IRQ source at `+ 4 * n`: bits 0-3 timers, 4-7 mailboxes, 8 GPU, 9 PMU.
    pub const IRQ_SOURCE: usize = 0x60;
    /// Core `n`'s mailbox `m`, write 1s to set, at `+ 16 * n + 4 * m`.
    pub const MAILBOX_SET: usize = 0x80;
    /// Core `n`'s mailbox `m`, read, write 1s to clear, at `+ 16 * n + 4 * m`.
    pub const MAILBOX_CLEAR: usize = 0xc0;
    /// Size of the register block the driver uses.
    pub const SIZE: usize = 0x100;
}

/// Cores on the BCM2836/7.
pub const CORES: usize = 4;
/// The EL1 secure physical timer (CNTPS).
pub const TIMER_PHYSICAL_SECURE: u32 = 0;
/// The EL1 non-secure physical timer (CNTPNS), the kernel's tick.
pub const TIMER_PHYSICAL_NON_SECURE: u32 = 1;
/// The EL2 physical timer (CNTHP).
pub const TIMER_HYPERVISOR: u32 = 2;
/// The virtual timer (CNTV).
pub const TIMER_VIRTUAL: u32 = 3;
/// Number of the first IPI.
pub const FIRST_IPI: u32 = 16;
/// IPIs carried in mailbox 0, one bit each.
pub const IPI_COUNT: u32 = 8;
/// Number of the chained controller's interrupt 0.
pub const FIRST_CHAINED: u32 = 32;

/// IRQ source bit of mailbox 0.
const SOURCE_MAILBOX_0: u32 = 1 << 4;
/// IRQ source bit of the GPU (chained) interrupt.
const SOURCE_GPU: u32 = 1 << 8;
/// IRQ source bits of the four timers.
const SOURCE_TIMERS: u32 = 0xf;

/// What an interrupt number of this driver stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line {
    /// Core timer interrupt 0-3 of the calling core.
    Timer(u32),
    /// IPI 0-7.
    Ipi(u32),
    /// The chained controller's interrupt.
    Chained(u32),
}

/// Decodes an interrupt number.
pub fn line(irq: u32) -> Result<Line, IrqError> {
    match irq {
        0..=3 => Ok(Line::Timer(irq)),
        FIRST_IPI..FIRST_CHAINED if irq - FIRST_IPI < IPI_COUNT => Ok(Line::Ipi(irq - FIRST_IPI)),
        FIRST_CHAINED.. => Ok(Line::Chained(irq - FIRST_CHAINED)),
        _ => Err(IrqError::InvalidIrq(irq)),
    }
}

/// The BCM2836 local interrupt controller, with the peripheral controller chained behind
/// its GPU input.
pub struct Bcm2836LocalIntc {
    base: usize,
    cpu: &'static dyn Cpu,
    chained: Option<&'static dyn InterruptController>,
    /// Bit `n`: core `n` ran `init_cpu` and takes IPIs.
    online: AtomicU32,
    /// The core the GPU interrupt is routed to.
    gpu_core: AtomicU32,
}

impl Bcm2836LocalIntc {
    /// Wraps the block at `base`; `chained` is the controller whose output is the GPU
    /// interrupt (the BCM2835 one), if the board drives it.
    ///
    /// # Safety
    /// `base` must be the local controller's registers (or, in host tests, memory standing
    /// in for [`registers::SIZE`] bytes of them), mapped as device memory and driven by no
    /// one else, for as long as the driver is used.
    pub const unsafe fn new(base: usize, cpu: &'static dyn Cpu, chained: Option<&'static dyn InterruptController>) -> Self {
        Bcm2836LocalIntc { base, cpu, chained, online: AtomicU32::new(0), gpu_core: AtomicU32::new(0) }
    }

    fn read(&self, offset: usize) -> u32 {
        // SAFETY: `new`'s contract: `base + offset` is a 4-byte aligned register of the block.
        unsafe { core::ptr::read_volatile((self.base + offset) as *const u32) }
    }

    fn write(&self, offset: usize, value: u32) {
        // SAFETY: as in `read`.
        unsafe { core::ptr::write_volatile((self.base + offset) as *mut u32, value) }
    }

    fn core(&self) -> usize {
        (self.cpu.current_id().0 as usize).min(CORES - 1)
    }

    /// Routes the GPU interrupt (every chained interrupt) to the calling core and clears
    /// every mailbox. Call once, on the boot CPU, before its `init_cpu`.
    pub fn init(&self) {
        let core = self.core();
        self.write(registers::GPU_ROUTING, core as u32);
        self.gpu_core.store(core as u32, Ordering::Relaxed);
        for register in 0..CORES * 4 {
            self.write(registers::MAILBOX_CLEAR + 4 * register, u32::MAX);
        }
    }

    /// The core chained interrupts are delivered to.
    pub fn gpu_core(&self) -> u32 {
        self.gpu_core.load(Ordering::Relaxed)
    }

    fn chained(&self, irq: u32) -> Result<&'static dyn InterruptController, IrqError> {
        self.chained.ok_or(IrqError::InvalidIrq(irq))
    }

    fn set_timer_routed(&self, timer: u32, routed: bool) {
        // Each core's register is written only by that core, so this read-modify-write
        // races with nobody.
        let offset = registers::TIMER_CONTROL + 4 * self.core();
        let value = self.read(offset);
        self.write(offset, if routed { value | (1 << timer) } else { value & !(1 << timer) });
    }

    fn online_core(&self, cpu: u32) -> Result<usize, IrqError> {
        if (cpu as usize) < CORES && self.online.load(Ordering::Acquire) & (1 << cpu) != 0 {
            Ok(cpu as usize)
        } else {
            Err(IrqError::InvalidCpu(cpu))
        }
    }

    fn raise_ipi(&self, core: usize, ipi: u32) {
        self.write(registers::MAILBOX_SET + 16 * core, 1 << ipi);
    }
}

impl InterruptController for Bcm2836LocalIntc {
    fn name(&self) -> &'static str {
        "bcm2836-l1-intc"
    }

    /// Masks the calling core's timer interrupts, clears its mailbox 0 and enables that
    /// mailbox's interrupt (the IPIs).
    fn init_cpu(&self) {
        let core = self.core();
        self.write(registers::TIMER_CONTROL + 4 * core, 0);
        self.write(registers::MAILBOX_CLEAR + 16 * core, u32::MAX);
        self.write(registers::MAILBOX_CONTROL + 4 * core, 1);
        self.online.fetch_or(1 << core, Ordering::AcqRel);
    }

    fn enable(&self, irq: u32) -> Result<(), IrqError> {
        match line(irq)? {
            Line::Timer(timer) => self.set_timer_routed(timer, true),
            // Mailbox 0's interrupt is on from `init_cpu`.
            Line::Ipi(_) => {}
            Line::Chained(number) => self.chained(irq)?.enable(number)?,
        }
        Ok(())
    }

    fn disable(&self, irq: u32) -> Result<(), IrqError> {
        match line(irq)? {
            Line::Timer(timer) => self.set_timer_routed(timer, false),
            // Mailbox bits cannot be masked one by one; IPIs stay deliverable.
            Line::Ipi(_) => {}
            Line::Chained(number) => self.chained(irq)?.disable(number)?,
        }
        Ok(())
    }

    /// Timer lines are level-triggered by the core (either polarity is accepted: it is the
    /// core's wiring); IPIs take whatever the IRQ layer asks; chained lines are the chained
    /// controller's business.
    fn set_trigger(&self, irq: u32, trigger: Trigger) -> Result<(), IrqError> {
        match line(irq)? {
            Line::Timer(_) => match trigger {
                Trigger::LevelHigh | Trigger::LevelLow => Ok(()),
                _ => Err(IrqError::UnsupportedTrigger),
            },
            Line::Ipi(_) => Ok(()),
            Line::Chained(number) => self.chained(irq)?.set_trigger(number, trigger),
        }
    }

    /// Chained interrupts all reach the one core the GPU routing names.
    fn set_affinity(&self, irq: u32, cpu: u32) -> Result<(), IrqError> {
        match line(irq)? {
            Line::Chained(_) if cpu == self.gpu_core() => Ok(()),
            Line::Chained(_) => Err(IrqError::Unsupported),
            _ => Err(IrqError::Unsupported),
        }
    }

    /// Reads the calling core's IRQ source: a timer first, then an IPI (its mailbox bit is
    /// cleared here, before the handler runs, so a new one raised meanwhile is not lost),
    /// then the chained controller.
    fn acknowledge(&self) -> Option<u32> {
        let core = self.core();
        let source = self.read(registers::IRQ_SOURCE + 4 * core);
        if source & SOURCE_TIMERS != 0 {
            return Some((source & SOURCE_TIMERS).trailing_zeros());
        }
        if source & SOURCE_MAILBOX_0 != 0 {
            let pending = self.read(registers::MAILBOX_CLEAR + 16 * core);
            if pending != 0 {
                let bit = pending.trailing_zeros();
                if bit >= IPI_COUNT {
                    // Not an IPI this driver sends: drop all such bits.
                    self.write(registers::MAILBOX_CLEAR + 16 * core, pending & !((1 << IPI_COUNT) - 1));
                    return None;
                }
                self.write(registers::MAILBOX_CLEAR + 16 * core, 1 << bit);
                return Some(FIRST_IPI + bit);
            }
        }
        if source & SOURCE_GPU != 0 {
            return self.chained?.acknowledge().map(|number| FIRST_CHAINED + number);
        }
        None
    }

    fn end_of_interrupt(&self, irq: u32) {
        if let (Ok(Line::Chained(number)), Some(chained)) = (line(irq), self.chained) {
            chained.end_of_interrupt(number);
        }
    }

    fn send_ipi(&self, target: IpiTarget, ipi: u32) -> Result<(), IrqError> {
        if ipi >= IPI_COUNT {
            return Err(IrqError::InvalidIrq(ipi));
        }
        // The sender's earlier writes must be visible before the target takes the IPI.
        fence(Ordering::SeqCst);
        match target {
            IpiTarget::Cpu(cpu) => self.raise_ipi(self.online_core(cpu)?, ipi),
            IpiTarget::AllOthers => {
                let own = self.core();
                let online = self.online.load(Ordering::Acquire);
                for core in (0..CORES).filter(|&core| core != own && online & (1 << core) != 0) {
                    self.raise_ipi(core, ipi);
                }
            }
        }
        Ok(())
    }

    fn ipi_interrupt(&self, ipi: u32) -> Option<u32> {
        (ipi < IPI_COUNT).then_some(FIRST_IPI + ipi)
    }

    fn chip_name(&self, irq: u32) -> &'static str {
        match (line(irq), self.chained) {
            (Ok(Line::Timer(_)), _) => "bcm2836-timer",
            (Ok(Line::Chained(number)), Some(chained)) => chained.chip_name(number),
            _ => "bcm2836-ipi",
        }
    }

    fn hardware_irq(&self, irq: u32) -> u32 {
        match (line(irq), self.chained) {
            (Ok(Line::Timer(timer)), _) => timer,
            (Ok(Line::Ipi(ipi)), _) => ipi,
            (Ok(Line::Chained(number)), Some(chained)) => chained.hardware_irq(number),
            _ => irq,
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec;
    use std::vec::Vec;

    use core::sync::atomic::AtomicI64;

    use super::*;

    static CPU: hinoki_interface::testing::UniprocessorCpu = hinoki_interface::testing::UniprocessorCpu;

    /// A chained controller that records the last call and returns a set number.
    struct FakeChained {
        pending: AtomicI64,
        last_enabled: AtomicI64,
        last_ended: AtomicI64,
    }

    impl InterruptController for FakeChained {
        fn name(&self) -> &'static str {
            "ARMCTRL-level"
        }
        fn init_cpu(&self) {}
        fn enable(&self, irq: u32) -> Result<(), IrqError> {
            if irq >= 96 {
                return Err(IrqError::InvalidIrq(irq));
            }
            self.last_enabled.store(irq as i64, Ordering::Relaxed);
            Ok(())
        }
        fn disable(&self, _irq: u32) -> Result<(), IrqError> {
            Ok(())
        }
        fn set_trigger(&self, _irq: u32, _trigger: Trigger) -> Result<(), IrqError> {
            Ok(())
        }
        fn acknowledge(&self) -> Option<u32> {
            u32::try_from(self.pending.load(Ordering::Relaxed)).ok()
        }
        fn end_of_interrupt(&self, irq: u32) {
            self.last_ended.store(irq as i64, Ordering::Relaxed);
        }
    }

    static CHAINED: FakeChained =
        FakeChained { pending: AtomicI64::new(-1), last_enabled: AtomicI64::new(-1), last_ended: AtomicI64::new(-1) };

    struct Fake(Vec<u32>);

    impl Fake {
        fn new() -> Self {
            Fake(vec![0; registers::SIZE / 4])
        }
        fn driver(&mut self, chained: Option<&'static dyn InterruptController>) -> Bcm2836LocalIntc {
            // SAFETY: the vector outlives the driver in each test and covers the block.
            unsafe { Bcm2836LocalIntc::new(self.0.as_mut_ptr() as usize, &CPU, chained) }
        }
        fn word(&self, offset: usize) -> u32 {
            // SAFETY: reading back what the driver wrote with volatile stores.
            unsafe { core::ptr::read_volatile(self.0.as_ptr().add(offset / 4)) }
        }
        fn set(&mut self, offset: usize, value: u32) {
            // SAFETY: as above, in bounds.
            unsafe { core::ptr::write_volatile(self.0.as_mut_ptr().add(offset / 4), value) }
        }
    }

    #[test]
    fn numbers_decode_into_lines() {
        assert_eq!(line(1), Ok(Line::Timer(1)));
        assert_eq!(line(17), Ok(Line::Ipi(1)));
        assert_eq!(line(32 + 89), Ok(Line::Chained(89)));
        assert_eq!(line(4), Err(IrqError::InvalidIrq(4)));
        assert_eq!(line(24), Err(IrqError::InvalidIrq(24)));
    }

    #[test]
    fn init_routes_the_gpu_and_opens_mailbox_zero() {
        let mut fake = Fake::new();
        fake.set(registers::GPU_ROUTING, 3);
        fake.set(registers::TIMER_CONTROL, 0xf);
        let intc = fake.driver(None);
        intc.init();
        intc.init_cpu();
        assert_eq!(fake.word(registers::GPU_ROUTING), 0);
        assert_eq!(fake.word(registers::TIMER_CONTROL), 0);
        assert_eq!(fake.word(registers::MAILBOX_CONTROL), 1);
        assert_eq!(fake.word(registers::MAILBOX_CLEAR + 16 * 3 + 12), u32::MAX);
    }

    #[test]
    fn timers_are_routed_on_the_calling_core_only() {
        let mut fake = Fake::new();
        let intc = fake.driver(None);
        intc.init_cpu();
        intc.enable(TIMER_PHYSICAL_NON_SECURE).unwrap();
        intc.enable(TIMER_VIRTUAL).unwrap();
        assert_eq!(fake.word(registers::TIMER_CONTROL), 0b1010);
        intc.disable(TIMER_VIRTUAL).unwrap();
        assert_eq!(fake.word(registers::TIMER_CONTROL), 0b0010);
        assert_eq!(fake.word(registers::TIMER_CONTROL + 4), 0);
        assert_eq!(intc.set_trigger(1, Trigger::EdgeRising), Err(IrqError::UnsupportedTrigger));
        // Without a chained controller, its numbers do not exist.
        assert_eq!(intc.enable(32 + 89), Err(IrqError::InvalidIrq(32 + 89)));
    }

    #[test]
    fn ipis_set_the_target_mailbox_and_acknowledge_clears_one_bit() {
        let mut fake = Fake::new();
        let intc = fake.driver(None);
        assert_eq!(intc.send_ipi(IpiTarget::Cpu(0), 1), Err(IrqError::InvalidCpu(0)));
        intc.init_cpu();
        intc.send_ipi(IpiTarget::Cpu(0), 1).unwrap();
        assert_eq!(fake.word(registers::MAILBOX_SET), 1 << 1);
        assert_eq!(intc.send_ipi(IpiTarget::Cpu(2), 1), Err(IrqError::InvalidCpu(2)));
        assert_eq!(intc.send_ipi(IpiTarget::Cpu(0), 8), Err(IrqError::InvalidIrq(8)));
        assert_eq!(intc.ipi_interrupt(1), Some(17));
        // Mailbox 0 of core 0 holds IPIs 0 and 1: the lowest is taken and cleared alone.
        fake.set(registers::IRQ_SOURCE, SOURCE_MAILBOX_0);
        fake.set(registers::MAILBOX_CLEAR, 0b11);
        assert_eq!(intc.acknowledge(), Some(FIRST_IPI));
        assert_eq!(fake.word(registers::MAILBOX_CLEAR), 0b01);
        // A bit no IPI uses is cleared and reported as spurious.
        fake.set(registers::MAILBOX_CLEAR, 1 << 12);
        assert_eq!(intc.acknowledge(), None);
        assert_eq!(fake.word(registers::MAILBOX_CLEAR), 1 << 12);
    }

    #[test]
    fn timer_then_chained_interrupts_are_acknowledged_and_named() {
        let mut fake = Fake::new();
        let intc = fake.driver(Some(&CHAINED));
        intc.init();
        intc.init_cpu();
        fake.set(registers::IRQ_SOURCE, SOURCE_GPU | 0b10);
        assert_eq!(intc.acknowledge(), Some(TIMER_PHYSICAL_NON_SECURE));
        fake.set(registers::IRQ_SOURCE, SOURCE_GPU);
        CHAINED.pending.store(89, Ordering::Relaxed);
        assert_eq!(intc.acknowledge(), Some(32 + 89));
        intc.end_of_interrupt(32 + 89);
        assert_eq!(CHAINED.last_ended.load(Ordering::Relaxed), 89);
        intc.enable(32 + 89).unwrap();
        assert_eq!(CHAINED.last_enabled.load(Ordering::Relaxed), 89);
        assert_eq!(intc.enable(32 + 96), Err(IrqError::InvalidIrq(96)));
        CHAINED.pending.store(-1, Ordering::Relaxed);
        assert_eq!(intc.acknowledge(), None);
        fake.set(registers::IRQ_SOURCE, 0);
        assert_eq!(intc.acknowledge(), None);
        assert_eq!(intc.chip_name(1), "bcm2836-timer");
        assert_eq!(intc.chip_name(32 + 89), "ARMCTRL-level");
        assert_eq!(intc.hardware_irq(32 + 89), 89);
        assert_eq!(intc.hardware_irq(1), 1);
        assert_eq!(intc.set_affinity(32 + 89, 0), Ok(()));
        assert_eq!(intc.set_affinity(32 + 89, 1), Err(IrqError::Unsupported));
    }
}
