//! GICv2 (and the GIC-400): distributor and memory-mapped CPU interface.

use core::sync::atomic::{fence, AtomicU32, AtomicU8, Ordering};

use hinoki_interface::{Cpu, InterruptController, IpiTarget, IrqError, Trigger};

use crate::registers::{ConfigurationLock, Frame};
use crate::{
    configuration_bit, enable_bit, line_count_from_type, trigger_configuration, DEFAULT_PRIORITY, FIRST_SPECIAL_ID, FIRST_SPI, MAX_CPUS,
    PRIORITY_MASK_ALL, SGI_COUNT,
};

/// Distributor register offsets.
pub mod distributor {
    /// GICD_CTLR: bit 0 enables forwarding (Group 0, or Group 1 for a non-secure access).
    pub const CONTROL: usize = 0x000;
    /// GICD_TYPER: ITLinesNumber in bits [4:0].
    pub const TYPE: usize = 0x004;
    /// GICD_ISENABLER<n>.
    pub const SET_ENABLE: usize = 0x100;
    /// GICD_ICENABLER<n>.
    pub const CLEAR_ENABLE: usize = 0x180;
    /// GICD_ICPENDR<n>.
    pub const CLEAR_PENDING: usize = 0x280;
    /// GICD_IPRIORITYR<n>, one byte per interrupt.
    pub const PRIORITY: usize = 0x400;
    /// GICD_ITARGETSR<n>, one byte per interrupt: a mask of CPU interfaces.
    pub const TARGETS: usize = 0x800;
    /// GICD_ICFGR<n>, two bits per interrupt.
    pub const CONFIGURATION: usize = 0xc00;
    /// GICD_SGIR: generates SGIs.
    pub const SOFTWARE_INTERRUPT: usize = 0xf00;
}

/// CPU interface register offsets.
pub mod cpu_interface {
    /// GICC_CTLR: bit 0 enables signalling.
    pub const CONTROL: usize = 0x00;
    /// GICC_PMR: priority mask.
    pub const PRIORITY_MASK: usize = 0x04;
    /// GICC_BPR: binary point.
    pub const BINARY_POINT: usize = 0x08;
    /// GICC_IAR: reading acknowledges the highest-priority pending interrupt.
    pub const ACKNOWLEDGE: usize = 0x0c;
    /// GICC_EOIR: writing the acknowledged value ends the interrupt.
    pub const END_OF_INTERRUPT: usize = 0x10;
}

/// GICD_SGIR TargetListFilter (bits [25:24]): to every CPU but the sender.
const SGI_FILTER_ALL_OTHERS: u32 = 0b01 << 24;

/// The GICD_SGIR value that sends SGI `sgi` to the CPU interfaces in `target_mask`.
pub fn sgi_to_targets(target_mask: u8, sgi: u32) -> u32 {
    ((target_mask as u32) << 16) | (sgi & 0xf)
}

/// The GICD_SGIR value that sends SGI `sgi` to every CPU but the sender.
pub fn sgi_to_all_others(sgi: u32) -> u32 {
    SGI_FILTER_ALL_OTHERS | (sgi & 0xf)
}

/// A GICv2 distributor and CPU interface.
pub struct GicV2 {
    distributor: Frame,
    cpu_interface: Frame,
    cpu: &'static dyn Cpu,
    line_count: u32,
    /// Each logical CPU's CPU-interface mask (GICD_ITARGETSR bit), 0 until its `init_cpu`.
    cpu_targets: [AtomicU8; MAX_CPUS],
    /// The raw GICC_IAR value of the SGI each CPU is handling: its EOI must repeat the
    /// source CPU field. Handlers do not nest, so one slot per CPU suffices.
    active_sgi: [AtomicU32; MAX_CPUS],
    configuration: ConfigurationLock,
}

impl GicV2 {
    /// Wraps the GIC at the given bases and reads how many interrupts it has.
    ///
    /// # Safety
    /// `distributor` and `cpu_interface` must be the bases of a GICv2 distributor (4 KiB)
    /// and CPU interface (8 KiB), mapped as device memory, used by no other driver.
    pub unsafe fn new(distributor: usize, cpu_interface: usize, cpu: &'static dyn Cpu) -> Self {
        // SAFETY: the caller guarantees both frames.
        let (distributor, cpu_interface) = unsafe { (Frame::new(distributor), Frame::new(cpu_interface)) };
        let line_count = line_count_from_type(distributor.read32(distributor::TYPE));
        GicV2 {
            distributor,
            cpu_interface,
            cpu,
            line_count,
            cpu_targets: [const { AtomicU8::new(0) }; MAX_CPUS],
            active_sgi: [const { AtomicU32::new(0) }; MAX_CPUS],
            configuration: ConfigurationLock::new(),
        }
    }

    /// Number of interrupt IDs the distributor implements.
    pub fn line_count(&self) -> u32 {
        self.line_count
    }

    /// The calling CPU's CPU-interface mask. The banked GICD_ITARGETSR0 reads as it on
    /// multiprocessor GICs; a uniprocessor GIC reads zero and has only interface 0.
    fn own_target_mask(&self) -> u8 {
        match self.distributor.read8(distributor::TARGETS) {
            0 => 1,
            mask => mask,
        }
    }

    /// Sets up the distributor, once, on the boot CPU: every SPI disabled, not pending,
    /// level-triggered, at [`DEFAULT_PRIORITY`], routed to the boot CPU; then forwarding on.
    pub fn init_distributor(&self) {
        let distributor = self.distributor;
        distributor.write32(distributor::CONTROL, 0);
        let target = self.own_target_mask();
        for register in (FIRST_SPI / 32)..self.line_count.div_ceil(32) {
            distributor.write32(distributor::CLEAR_ENABLE + 4 * register as usize, u32::MAX);
            distributor.write32(distributor::CLEAR_PENDING + 4 * register as usize, u32::MAX);
        }
        for irq in FIRST_SPI..self.line_count {
            distributor.write8(distributor::PRIORITY + irq as usize, DEFAULT_PRIORITY);
            distributor.write8(distributor::TARGETS + irq as usize, target);
        }
        for register in (FIRST_SPI / 16)..self.line_count.div_ceil(16) {
            distributor.write32(distributor::CONFIGURATION + 4 * register as usize, 0);
        }
        distributor.write32(distributor::CONTROL, 1);
    }

    fn check(&self, irq: u32) -> Result<(), IrqError> {
        if irq < self.line_count && irq < FIRST_SPECIAL_ID {
            Ok(())
        } else {
            Err(IrqError::InvalidIrq(irq))
        }
    }

    fn current_cpu(&self) -> usize {
        self.cpu.current_id().0 as usize
    }

    fn target_of(&self, cpu: u32) -> Result<u8, IrqError> {
        match self.cpu_targets.get(cpu as usize).map(|mask| mask.load(Ordering::Acquire)) {
            Some(mask) if mask != 0 => Ok(mask),
            _ => Err(IrqError::InvalidCpu(cpu)),
        }
    }
}

impl InterruptController for GicV2 {
    fn name(&self) -> &'static str {
        "GICv2"
    }

    /// Disables the calling CPU's PPIs and SGIs, gives them [`DEFAULT_PRIORITY`], opens the
    /// priority mask and enables the CPU interface.
    fn init_cpu(&self) {
        let distributor = self.distributor;
        distributor.write32(distributor::CLEAR_ENABLE, u32::MAX);
        distributor.write32(distributor::CLEAR_PENDING, u32::MAX);
        for irq in 0..FIRST_SPI {
            distributor.write8(distributor::PRIORITY + irq as usize, DEFAULT_PRIORITY);
        }
        if let Some(slot) = self.cpu_targets.get(self.current_cpu()) {
            slot.store(self.own_target_mask(), Ordering::Release);
        }
        let cpu_interface = self.cpu_interface;
        cpu_interface.write32(cpu_interface::PRIORITY_MASK, PRIORITY_MASK_ALL as u32);
        cpu_interface.write32(cpu_interface::BINARY_POINT, 0);
        cpu_interface.write32(cpu_interface::CONTROL, 1);
    }

    fn enable(&self, irq: u32) -> Result<(), IrqError> {
        self.check(irq)?;
        let (register, bit) = enable_bit(irq);
        self.distributor.write32(distributor::SET_ENABLE + 4 * register, 1 << bit);
        Ok(())
    }

    fn disable(&self, irq: u32) -> Result<(), IrqError> {
        self.check(irq)?;
        let (register, bit) = enable_bit(irq);
        self.distributor.write32(distributor::CLEAR_ENABLE + 4 * register, 1 << bit);
        Ok(())
    }

    fn set_trigger(&self, irq: u32, trigger: Trigger) -> Result<(), IrqError> {
        self.check(irq)?;
        let Some(edge) = trigger_configuration(irq, trigger)? else { return Ok(()) };
        let (register, bit) = configuration_bit(irq);
        let offset = distributor::CONFIGURATION + 4 * register;
        self.configuration.with(|| {
            let value = self.distributor.read32(offset);
            let value = if edge { value | (1 << bit) } else { value & !(1 << bit) };
            self.distributor.write32(offset, value);
        });
        Ok(())
    }

    fn set_affinity(&self, irq: u32, cpu: u32) -> Result<(), IrqError> {
        self.check(irq)?;
        if irq < FIRST_SPI {
            return Err(IrqError::Unsupported);
        }
        let mask = self.target_of(cpu)?;
        self.distributor.write8(distributor::TARGETS + irq as usize, mask);
        Ok(())
    }

    fn acknowledge(&self) -> Option<u32> {
        let raw = self.cpu_interface.read32(cpu_interface::ACKNOWLEDGE);
        let irq = raw & 0x3ff;
        if irq >= FIRST_SPECIAL_ID {
            return None;
        }
        if irq < SGI_COUNT {
            if let Some(slot) = self.active_sgi.get(self.current_cpu()) {
                slot.store(raw, Ordering::Relaxed);
            }
        }
        Some(irq)
    }

    fn end_of_interrupt(&self, irq: u32) {
        let value =
            if irq < SGI_COUNT { self.active_sgi.get(self.current_cpu()).map_or(irq, |slot| slot.load(Ordering::Relaxed)) } else { irq };
        self.cpu_interface.write32(cpu_interface::END_OF_INTERRUPT, value);
    }

    fn send_ipi(&self, target: IpiTarget, ipi: u32) -> Result<(), IrqError> {
        if ipi >= SGI_COUNT {
            return Err(IrqError::InvalidIrq(ipi));
        }
        let value = match target {
            IpiTarget::Cpu(cpu) => sgi_to_targets(self.target_of(cpu)?, ipi),
            IpiTarget::AllOthers => sgi_to_all_others(ipi),
        };
        // Make the sender's earlier writes visible before the IPI can be taken.
        fence(Ordering::SeqCst);
        self.distributor.write32(distributor::SOFTWARE_INTERRUPT, value);
        Ok(())
    }

    fn ipi_interrupt(&self, ipi: u32) -> Option<u32> {
        (ipi < SGI_COUNT).then_some(ipi)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec;
    use std::vec::Vec;

    use super::*;

    static CPU: hinoki_interface::testing::UniprocessorCpu = hinoki_interface::testing::UniprocessorCpu;

    /// Plain memory standing in for the two register frames.
    struct FakeGic {
        distributor: Vec<u32>,
        cpu_interface: Vec<u32>,
    }

    impl FakeGic {
        fn new(type_register: u32) -> Self {
            let mut distributor = vec![0u32; 0x1000 / 4];
            distributor[distributor::TYPE / 4] = type_register;
            FakeGic { distributor, cpu_interface: vec![0u32; 0x2000 / 4] }
        }

        fn driver(&mut self) -> GicV2 {
            // SAFETY: both vectors outlive the driver in every test and are large enough for
            // every offset the driver uses.
            unsafe { GicV2::new(self.distributor.as_mut_ptr() as usize, self.cpu_interface.as_mut_ptr() as usize, &CPU) }
        }

        fn distributor_word(&self, offset: usize) -> u32 {
            // SAFETY: reading back what the driver wrote through volatile stores.
            unsafe { core::ptr::read_volatile(self.distributor.as_ptr().add(offset / 4)) }
        }

        fn distributor_byte(&self, offset: usize) -> u8 {
            // SAFETY: as above, one byte inside the vector.
            unsafe { core::ptr::read_volatile((self.distributor.as_ptr() as *const u8).add(offset)) }
        }
    }

    #[test]
    fn initialization_programs_spis_and_the_cpu_interface() {
        let mut fake = FakeGic::new(2);
        let gic = fake.driver();
        assert_eq!(gic.line_count(), 96);
        gic.init_distributor();
        gic.init_cpu();
        assert_eq!(fake.distributor_word(distributor::CONTROL), 1);
        assert_eq!(fake.distributor_word(distributor::CLEAR_ENABLE + 4), u32::MAX);
        assert_eq!(fake.distributor_byte(distributor::PRIORITY + 95), DEFAULT_PRIORITY);
        assert_eq!(fake.distributor_byte(distributor::PRIORITY + 30), DEFAULT_PRIORITY);
        // Uniprocessor: ITARGETSR0 reads zero, so SPIs go to interface 0.
        assert_eq!(fake.distributor_byte(distributor::TARGETS + 40), 1);
        assert_eq!(fake.cpu_interface[cpu_interface::PRIORITY_MASK / 4], 0xff);
        assert_eq!(fake.cpu_interface[cpu_interface::CONTROL / 4], 1);
    }

    #[test]
    fn enable_trigger_and_range_checks() {
        let mut fake = FakeGic::new(2);
        let gic = fake.driver();
        gic.enable(40).unwrap();
        assert_eq!(fake.distributor_word(distributor::SET_ENABLE + 4), 1 << 8);
        gic.disable(30).unwrap();
        assert_eq!(fake.distributor_word(distributor::CLEAR_ENABLE), 1 << 30);
        gic.set_trigger(40, Trigger::EdgeRising).unwrap();
        assert_eq!(fake.distributor_word(distributor::CONFIGURATION + 8), 1 << 17);
        gic.set_trigger(40, Trigger::LevelHigh).unwrap();
        assert_eq!(fake.distributor_word(distributor::CONFIGURATION + 8), 0);
        assert_eq!(gic.enable(96), Err(IrqError::InvalidIrq(96)));
        assert_eq!(gic.set_trigger(40, Trigger::LevelLow), Err(IrqError::UnsupportedTrigger));
    }

    #[test]
    fn ipis_and_sgi_end_of_interrupt_carry_the_source() {
        let mut fake = FakeGic::new(2);
        let gic = fake.driver();
        assert_eq!(gic.send_ipi(IpiTarget::Cpu(0), 1), Err(IrqError::InvalidCpu(0)));
        gic.init_cpu();
        gic.send_ipi(IpiTarget::Cpu(0), 1).unwrap();
        assert_eq!(fake.distributor_word(distributor::SOFTWARE_INTERRUPT), 0x0001_0001);
        gic.send_ipi(IpiTarget::AllOthers, 2).unwrap();
        assert_eq!(fake.distributor_word(distributor::SOFTWARE_INTERRUPT), 0x0100_0002);
        assert_eq!(gic.send_ipi(IpiTarget::Cpu(5), 1), Err(IrqError::InvalidCpu(5)));
        // SGI 2 from CPU interface 3: the EOI repeats the source field.
        fake.cpu_interface[cpu_interface::ACKNOWLEDGE / 4] = (3 << 10) | 2;
        assert_eq!(gic.acknowledge(), Some(2));
        gic.end_of_interrupt(2);
        assert_eq!(fake.cpu_interface[cpu_interface::END_OF_INTERRUPT / 4], (3 << 10) | 2);
        fake.cpu_interface[cpu_interface::ACKNOWLEDGE / 4] = 1023;
        assert_eq!(gic.acknowledge(), None);
        assert_eq!(sgi_to_targets(0b1010, 7), 0x000a_0007);
    }
}
