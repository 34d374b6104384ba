//! GICv3: distributor with affinity routing, one redistributor per CPU, and the system-register CPU interface.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use hinoki_interface::{Cpu, InterruptController, IpiTarget, IrqError, Trigger};

use crate::registers::{ConfigurationLock, Frame};
use crate::{
    configuration_bit, enable_bit, line_count_from_type, trigger_configuration, DEFAULT_PRIORITY, FIRST_SPECIAL_ID, FIRST_SPI, MAX_CPUS,
    PRIORITY_MASK_ALL, SGI_COUNT,
};

/// Distributor register offsets.
pub mod distributor {
    /// GICD_CTLR.
    pub const CONTROL: usize = 0x0000;
    /// GICD_TYPER: ITLinesNumber in bits [4:0].
    pub const TYPE: usize = 0x0004;
    /// GICD_IGROUPR<n>.
    pub const GROUP: usize = 0x0080;
    /// GICD_ISENABLER<n>.
    pub const SET_ENABLE: usize = 0x0100;
    /// GICD_ICENABLER<n>.
    pub const CLEAR_ENABLE: usize = 0x0180;
    /// GICD_ICPENDR<n>.
    pub const CLEAR_PENDING: usize = 0x0280;
    /// GICD_IPRIORITYR<n>, one byte per interrupt.
    pub const PRIORITY: usize = 0x0400;
    /// GICD_ICFGR<n>, two bits per interrupt.
    pub const CONFIGURATION: usize = 0x0c00;
    /// GICD_IROUTER<n>, 64 bits per SPI (the entry for INTID n is at 0x6000 + 8n).
    pub const ROUTE: usize = 0x6000;

    /// GICD_CTLR.RWP: a register write is still taking effect.
    pub const CONTROL_REGISTER_WRITE_PENDING: u32 = 1 << 31;
    /// GICD_CTLR bit 0: EnableGrp1 (non-secure view), EnableGrp0 (single security state).
    pub const CONTROL_ENABLE_BIT0: u32 = 1 << 0;
    /// GICD_CTLR bit 1: EnableGrp1A (non-secure view), EnableGrp1 (single security state).
    pub const CONTROL_ENABLE_BIT1: u32 = 1 << 1;
    /// GICD_CTLR bit 4: ARE_NS (non-secure view), ARE (single security state).
    pub const CONTROL_AFFINITY_ROUTING: u32 = 1 << 4;
}

/// Redistributor register offsets: the RD frame, then the SGI frame 64 KiB on.
pub mod redistributor {
    /// GICR_CTLR (RD frame).
    pub const CONTROL: usize = 0x0000;
    /// GICR_TYPER (RD frame, 64 bits): affinity in [63:32], Last in bit 4, VLPIS in bit 1.
    pub const TYPE: usize = 0x0008;
    /// GICR_WAKER (RD frame).
    pub const WAKER: usize = 0x0014;
    /// Offset of the SGI frame from the RD frame.
    pub const SGI_FRAME: usize = 0x1_0000;
    /// GICR_IGROUPR0 (SGI frame).
    pub const GROUP: usize = 0x0080;
    /// GICR_ISENABLER0 (SGI frame).
    pub const SET_ENABLE: usize = 0x0100;
    /// GICR_ICENABLER0 (SGI frame).
    pub const CLEAR_ENABLE: usize = 0x0180;
    /// GICR_ICPENDR0 (SGI frame).
    pub const CLEAR_PENDING: usize = 0x0280;
    /// GICR_IPRIORITYR<n> (SGI frame).
    pub const PRIORITY: usize = 0x0400;
    /// GICR_ICFGR0 (SGI frame; ICFGR1 for the PPIs follows).
    pub const CONFIGURATION: usize = 0x0c00;

    /// GICR_CTLR.RWP.
    pub const CONTROL_REGISTER_WRITE_PENDING: u32 = 1 << 3;
    /// GICR_TYPER.Last: the last redistributor of the region.
    pub const TYPE_LAST: u64 = 1 << 4;
    /// GICR_TYPER.VLPIS: GICv4 frames (two more 64 KiB frames per redistributor).
    pub const TYPE_VIRTUAL_LPIS: u64 = 1 << 1;
    /// GICR_WAKER.ProcessorSleep.
    pub const WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
    /// GICR_WAKER.ChildrenAsleep.
    pub const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
}

/// The GICv3 CPU interface registers the driver needs, as accessors the arch crate provides
/// (`hinoki_arch_aarch64::gic_cpu_interface`). Each method acts on the calling CPU.
pub trait SystemRegisters: Sync {
    /// Sets ICC_SRE_EL1.SRE (with DFB and DIB) and synchronizes; returns whether SRE reads
    /// back as set (if not, EL2 did not enable system-register access for EL1).
    fn enable_system_register_access(&self) -> bool;
    /// Writes ICC_PMR_EL1.
    fn set_priority_mask(&self, mask: u8);
    /// Writes ICC_BPR1_EL1.
    fn set_binary_point(&self, value: u8);
    /// Writes ICC_CTLR_EL1 (0: EOI both drops priority and deactivates).
    fn set_control(&self, value: u64);
    /// Writes ICC_IGRPEN1_EL1.Enable and synchronizes.
    fn set_group1_enabled(&self, enabled: bool);
    /// Reads ICC_IAR1_EL1: acknowledges the highest-priority pending Group 1 interrupt.
    fn acknowledge(&self) -> u32;
    /// Writes ICC_EOIR1_EL1.
    fn end_of_interrupt(&self, intid: u32);
    /// Writes ICC_SGI1R_EL1, after a barrier that makes earlier memory writes visible to
    /// the target CPUs.
    fn send_sgi(&self, value: u64);
    /// MPIDR_EL1 of the calling CPU.
    fn affinity(&self) -> u64;
}

/// The affinity fields of an MPIDR value, in GICD_IROUTER's layout (Aff3 in [39:32],
/// Aff2.Aff1.Aff0 in [23:0]).
pub fn routing_affinity(mpidr: u64) -> u64 {
    mpidr & 0xff_00ff_ffff
}

/// The affinity of an MPIDR value in GICR_TYPER's layout (Aff3.Aff2.Aff1.Aff0, 32 bits).
pub fn packed_affinity(mpidr: u64) -> u32 {
    (((mpidr >> 32) & 0xff) << 24) as u32 | (mpidr & 0xff_ffff) as u32
}

/// ICC_SGI1R_EL1.IRM: to every CPU but the sender.
const SGI_ROUTE_ALL_OTHERS: u64 = 1 << 40;

/// The ICC_SGI1R_EL1 value that sends SGI `sgi` to the CPU with affinity `mpidr`:
/// TargetList bit Aff0 % 16, Aff1 [23:16], INTID [27:24], Aff2 [39:32], RS = Aff0 / 16
/// [47:44], Aff3 [55:48].
pub fn sgi_to_affinity(mpidr: u64, sgi: u32) -> u64 {
    let affinity0 = mpidr & 0xff;
    let affinity1 = (mpidr >> 8) & 0xff;
    let affinity2 = (mpidr >> 16) & 0xff;
    let affinity3 = (mpidr >> 32) & 0xff;
    (1 << (affinity0 % 16))
        | (affinity1 << 16)
        | (((sgi & 0xf) as u64) << 24)
        | (affinity2 << 32)
        | ((affinity0 / 16) << 44)
        | (affinity3 << 48)
}

/// The ICC_SGI1R_EL1 value that sends SGI `sgi` to every CPU but the sender.
pub fn sgi_to_all_others(sgi: u32) -> u64 {
    SGI_ROUTE_ALL_OTHERS | (((sgi & 0xf) as u64) << 24)
}

/// Most redistributors searched for the calling CPU's.
const MAX_REDISTRIBUTORS: usize = 256;

/// Bound on register-write-pending and wake-up polls (a stuck GIC fails, never hangs).
const POLL_LIMIT: u32 = 1_000_000;

/// Marks a recorded affinity as valid (MPIDR bit 63 is RES0 in the affinity fields used).
const AFFINITY_VALID: u64 = 1 << 63;

/// A GICv3 distributor, redistributor region and system-register CPU interface.
pub struct GicV3<R: SystemRegisters> {
    distributor: Frame,
    redistributors: Frame,
    registers: R,
    cpu: &'static dyn Cpu,
    line_count: u32,
    /// Each logical CPU's RD frame base, 0 until its `init_cpu`.
    own_redistributor: [AtomicUsize; MAX_CPUS],
    /// Each logical CPU's MPIDR with [`AFFINITY_VALID`], 0 until its `init_cpu`.
    affinities: [AtomicU64; MAX_CPUS],
    configuration: ConfigurationLock,
}

impl<R: SystemRegisters> GicV3<R> {
    /// Wraps the GIC at the given bases and reads how many interrupts it has.
    ///
    /// # Safety
    /// `distributor` must be the base of a GICv3 distributor (64 KiB) and `redistributors`
    /// of the contiguous redistributor region that holds every CPU's RD and SGI frames
    /// (ending at a redistributor with GICR_TYPER.Last), mapped as device memory, used by no
    /// other driver.
    pub unsafe fn new(distributor: usize, redistributors: usize, registers: R, cpu: &'static dyn Cpu) -> Self {
        // SAFETY: the caller guarantees both regions.
        let (distributor, redistributors) = unsafe { (Frame::new(distributor), Frame::new(redistributors)) };
        let line_count = line_count_from_type(distributor.read32(distributor::TYPE));
        GicV3 {
            distributor,
            redistributors,
            registers,
            cpu,
            line_count,
            own_redistributor: [const { AtomicUsize::new(0) }; MAX_CPUS],
            affinities: [const { AtomicU64::new(0) }; MAX_CPUS],
            configuration: ConfigurationLock::new(),
        }
    }

    /// Number of interrupt IDs the distributor implements.
    pub fn line_count(&self) -> u32 {
        self.line_count
    }

    fn wait_for_distributor_writes(&self) {
        let mut polls = 0;
        while self.distributor.read32(distributor::CONTROL) & distributor::CONTROL_REGISTER_WRITE_PENDING != 0 && polls < POLL_LIMIT {
            polls += 1;
            core::hint::spin_loop();
        }
    }

    /// Sets up the distributor, once, on the boot CPU: affinity routing on, every SPI in
    /// non-secure Group 1, disabled, not pending, level-triggered, at [`DEFAULT_PRIORITY`],
    /// routed to the boot CPU; Group 1 forwarding on.
    pub fn init_distributor(&self) {
        let distributor = self.distributor;
        distributor.write32(distributor::CONTROL, 0);
        self.wait_for_distributor_writes();
        for register in (FIRST_SPI / 32)..self.line_count.div_ceil(32) {
            let offset = 4 * register as usize;
            distributor.write32(distributor::GROUP + offset, u32::MAX);
            distributor.write32(distributor::CLEAR_ENABLE + offset, u32::MAX);
            distributor.write32(distributor::CLEAR_PENDING + offset, u32::MAX);
        }
        for irq in FIRST_SPI..self.line_count {
            distributor.write8(distributor::PRIORITY + irq as usize, DEFAULT_PRIORITY);
        }
        for register in (FIRST_SPI / 16)..self.line_count.div_ceil(16) {
            distributor.write32(distributor::CONFIGURATION + 4 * register as usize, 0);
        }
        self.wait_for_distributor_writes();
        // Bits 0, 1 and 4 enable Group 1 and affinity routing in both the non-secure view
        // of a GIC with two security states and a GIC with one (QEMU virt without EL3).
        distributor.write32(
            distributor::CONTROL,
            distributor::CONTROL_AFFINITY_ROUTING | distributor::CONTROL_ENABLE_BIT1 | distributor::CONTROL_ENABLE_BIT0,
        );
        self.wait_for_distributor_writes();
        let route = routing_affinity(self.registers.affinity());
        for irq in FIRST_SPI..self.line_count {
            distributor.write64(distributor::ROUTE + 8 * irq as usize, route);
        }
    }

    /// Finds the RD frame whose GICR_TYPER affinity is `mpidr`'s.
    fn find_redistributor(&self, mpidr: u64) -> Option<Frame> {
        let wanted = packed_affinity(mpidr);
        let mut frame = self.redistributors;
        for _ in 0..MAX_REDISTRIBUTORS {
            let type_register = frame.read64(redistributor::TYPE);
            if (type_register >> 32) as u32 == wanted {
                return Some(frame);
            }
            if type_register & redistributor::TYPE_LAST != 0 {
                return None;
            }
            let stride = if type_register & redistributor::TYPE_VIRTUAL_LPIS != 0 { 0x4_0000 } else { 0x2_0000 };
            // SAFETY: the redistributor region continues past a frame without Last
            // (`GicV3::new`'s contract).
            frame = unsafe { frame.offset(stride) };
        }
        None
    }

    fn current_cpu(&self) -> usize {
        self.cpu.current_id().0 as usize
    }

    /// The calling CPU's SGI frame, once its `init_cpu` found it.
    fn own_sgi_frame(&self) -> Option<Frame> {
        let base = self.own_redistributor.get(self.current_cpu())?.load(Ordering::Acquire);
        // SAFETY: a non-zero value is an RD frame found in the region; its SGI frame follows.
        (base != 0).then(|| unsafe { Frame::new(base).offset(redistributor::SGI_FRAME) })
    }

    fn wait_for_redistributor_writes(&self, frame: Frame) {
        let mut polls = 0;
        while frame.read32(redistributor::CONTROL) & redistributor::CONTROL_REGISTER_WRITE_PENDING != 0 && polls < POLL_LIMIT {
            polls += 1;
            core::hint::spin_loop();
        }
    }

    fn check(&self, irq: u32) -> Result<(), IrqError> {
        if irq < self.line_count && irq < FIRST_SPECIAL_ID {
            Ok(())
        } else {
            Err(IrqError::InvalidIrq(irq))
        }
    }

    /// The frame and register offset holding `irq`'s bit in a one-bit-per-interrupt
    /// register at `distributor_offset` / `redistributor_offset`.
    fn bank(&self, irq: u32, distributor_offset: usize, redistributor_offset: usize) -> Result<(Frame, usize, u32), IrqError> {
        self.check(irq)?;
        let (register, bit) = enable_bit(irq);
        if irq < FIRST_SPI {
            let frame = self.own_sgi_frame().ok_or(IrqError::InvalidCpu(self.current_cpu() as u32))?;
            Ok((frame, redistributor_offset, bit))
        } else {
            Ok((self.distributor, distributor_offset + 4 * register, bit))
        }
    }

    fn affinity_of(&self, cpu: u32) -> Result<u64, IrqError> {
        match self.affinities.get(cpu as usize).map(|slot| slot.load(Ordering::Acquire)) {
            Some(value) if value & AFFINITY_VALID != 0 => Ok(value & !AFFINITY_VALID),
            _ => Err(IrqError::InvalidCpu(cpu)),
        }
    }
}

impl<R: SystemRegisters> InterruptController for GicV3<R> {
    fn name(&self) -> &'static str {
        "GICv3"
    }

    /// Wakes the calling CPU's redistributor, puts its SGIs and PPIs in Group 1 (disabled,
    /// at [`DEFAULT_PRIORITY`]), enables the system-register CPU interface, opens the
    /// priority mask and enables Group 1.
    fn init_cpu(&self) {
        let mpidr = self.registers.affinity();
        let cpu = self.current_cpu();
        if let Some(frame) = self.find_redistributor(mpidr) {
            let waker = frame.read32(redistributor::WAKER);
            frame.write32(redistributor::WAKER, waker & !redistributor::WAKER_PROCESSOR_SLEEP);
            let mut polls = 0;
            while frame.read32(redistributor::WAKER) & redistributor::WAKER_CHILDREN_ASLEEP != 0 && polls < POLL_LIMIT {
                polls += 1;
                core::hint::spin_loop();
            }
            // SAFETY: the SGI frame follows the RD frame found in the region.
            let sgi_frame = unsafe { frame.offset(redistributor::SGI_FRAME) };
            sgi_frame.write32(redistributor::GROUP, u32::MAX);
            sgi_frame.write32(redistributor::CLEAR_ENABLE, u32::MAX);
            sgi_frame.write32(redistributor::CLEAR_PENDING, u32::MAX);
            for irq in 0..FIRST_SPI {
                sgi_frame.write8(redistributor::PRIORITY + irq as usize, DEFAULT_PRIORITY);
            }
            self.wait_for_redistributor_writes(frame);
            if let Some(slot) = self.own_redistributor.get(cpu) {
                slot.store(frame.base(), Ordering::Release);
            }
        }
        if let Some(slot) = self.affinities.get(cpu) {
            slot.store(routing_affinity(mpidr) | AFFINITY_VALID, Ordering::Release);
        }
        self.registers.enable_system_register_access();
        self.registers.set_priority_mask(PRIORITY_MASK_ALL);
        self.registers.set_binary_point(0);
        self.registers.set_control(0);
        self.registers.set_group1_enabled(true);
    }

    fn enable(&self, irq: u32) -> Result<(), IrqError> {
        let (frame, offset, bit) = self.bank(irq, distributor::SET_ENABLE, redistributor::SET_ENABLE)?;
        frame.write32(offset, 1 << bit);
        Ok(())
    }

    fn disable(&self, irq: u32) -> Result<(), IrqError> {
        let (frame, offset, bit) = self.bank(irq, distributor::CLEAR_ENABLE, redistributor::CLEAR_ENABLE)?;
        frame.write32(offset, 1 << bit);
        if irq >= FIRST_SPI {
            self.wait_for_distributor_writes();
        }
        Ok(())
    }

    fn set_trigger(&self, irq: u32, trigger: Trigger) -> Result<(), IrqError> {
        self.check(irq)?;
        let Some(edge) = trigger_configuration(irq, trigger)? else { return Ok(()) };
        let (register, bit) = configuration_bit(irq);
        let (frame, offset) = if irq < FIRST_SPI {
            (self.own_sgi_frame().ok_or(IrqError::InvalidCpu(self.current_cpu() as u32))?, redistributor::CONFIGURATION + 4 * register)
        } else {
            (self.distributor, distributor::CONFIGURATION + 4 * register)
        };
        self.configuration.with(|| {
            let value = frame.read32(offset);
            frame.write32(offset, if edge { value | (1 << bit) } else { value & !(1 << bit) });
        });
        Ok(())
    }

    fn set_affinity(&self, irq: u32, cpu: u32) -> Result<(), IrqError> {
        self.check(irq)?;
        if irq < FIRST_SPI {
            return Err(IrqError::Unsupported);
        }
        let affinity = self.affinity_of(cpu)?;
        self.distributor.write64(distributor::ROUTE + 8 * irq as usize, affinity);
        Ok(())
    }

    fn acknowledge(&self) -> Option<u32> {
        let intid = self.registers.acknowledge() & 0xff_ffff;
        (!(FIRST_SPECIAL_ID..=1023).contains(&intid)).then_some(intid)
    }

    fn end_of_interrupt(&self, irq: u32) {
        self.registers.end_of_interrupt(irq);
    }

    fn send_ipi(&self, target: IpiTarget, ipi: u32) -> Result<(), IrqError> {
        if ipi >= SGI_COUNT {
            return Err(IrqError::InvalidIrq(ipi));
        }
        let value = match target {
            IpiTarget::Cpu(cpu) => sgi_to_affinity(self.affinity_of(cpu)?, ipi),
            IpiTarget::AllOthers => sgi_to_all_others(ipi),
        };
        self.registers.send_sgi(value);
        Ok(())
    }

    fn ipi_interrupt(&self, ipi: u32) -> Option<u32> {
        (ipi < SGI_COUNT).then_some(ipi)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::sync::Mutex;
    use std::vec;
    use std::vec::Vec;

    use super::*;

    static CPU: hinoki_interface::testing::UniprocessorCpu = hinoki_interface::testing::UniprocessorCpu;

    /// Records system-register writes; acknowledges a preset INTID.
    #[derive(Default)]
    struct FakeRegisters {
        mpidr: u64,
        pending: Mutex<u32>,
        writes: Mutex<Vec<(&'static str, u64)>>,
    }

    impl FakeRegisters {
        fn record(&self, name: &'static str, value: u64) {
            self.writes.lock().unwrap().push((name, value));
        }
    }

    impl SystemRegisters for &FakeRegisters {
        fn enable_system_register_access(&self) -> bool {
            self.record("ICC_SRE_EL1", 7);
            true
        }
        fn set_priority_mask(&self, mask: u8) {
            self.record("ICC_PMR_EL1", mask as u64);
        }
        fn set_binary_point(&self, value: u8) {
            self.record("ICC_BPR1_EL1", value as u64);
        }
        fn set_control(&self, value: u64) {
            self.record("ICC_CTLR_EL1", value);
        }
        fn set_group1_enabled(&self, enabled: bool) {
            self.record("ICC_IGRPEN1_EL1", enabled as u64);
        }
        fn acknowledge(&self) -> u32 {
            *self.pending.lock().unwrap()
        }
        fn end_of_interrupt(&self, intid: u32) {
            self.record("ICC_EOIR1_EL1", intid as u64);
        }
        fn send_sgi(&self, value: u64) {
            self.record("ICC_SGI1R_EL1", value);
        }
        fn affinity(&self) -> u64 {
            self.mpidr
        }
    }

    /// A distributor and a region of `cpus` redistributors (RD + SGI frames each).
    struct FakeGic {
        distributor: Vec<u64>,
        redistributors: Vec<u64>,
    }

    impl FakeGic {
        fn new(type_register: u32, affinities: &[u32]) -> Self {
            let mut distributor = vec![0u64; 0x1_0000 / 8];
            distributor[distributor::TYPE / 8] = (type_register as u64) << 32;
            let mut redistributors = vec![0u64; affinities.len() * 0x2_0000 / 8];
            for (index, affinity) in affinities.iter().enumerate() {
                let last = if index + 1 == affinities.len() { redistributor::TYPE_LAST } else { 0 };
                redistributors[(index * 0x2_0000 + redistributor::TYPE) / 8] = ((*affinity as u64) << 32) | last;
                // Asleep until woken: ProcessorSleep set (ChildrenAsleep clears at once here).
                redistributors[(index * 0x2_0000 + redistributor::WAKER) / 8] = (redistributor::WAKER_PROCESSOR_SLEEP as u64) << 32;
            }
            FakeGic { distributor, redistributors }
        }

        fn driver<'a>(&mut self, registers: &'a FakeRegisters) -> GicV3<&'a FakeRegisters> {
            // SAFETY: the vectors outlive the driver in every test and cover every offset
            // the driver uses for the configured line count and redistributors.
            unsafe { GicV3::new(self.distributor.as_mut_ptr() as usize, self.redistributors.as_mut_ptr() as usize, registers, &CPU) }
        }

        fn word(memory: &[u64], offset: usize) -> u32 {
            // SAFETY: a 4-byte read inside the vector.
            unsafe { core::ptr::read_volatile((memory.as_ptr() as *const u8).add(offset) as *const u32) }
        }

        fn double_word(memory: &[u64], offset: usize) -> u64 {
            // SAFETY: an 8-byte aligned read inside the vector.
            unsafe { core::ptr::read_volatile((memory.as_ptr() as *const u8).add(offset) as *const u64) }
        }
    }

    #[test]
    fn affinity_encodings() {
        let mpidr = 0x8000_0000 | (0x12 << 32) | (0x03 << 16) | (0x02 << 8) | 0x15;
        assert_eq!(routing_affinity(mpidr), (0x12 << 32) | 0x03_0215);
        assert_eq!(packed_affinity(mpidr), 0x1203_0215);
        let value = sgi_to_affinity(mpidr, 5);
        assert_eq!(value & 0xffff, 1 << 5, "target list bit Aff0 % 16");
        assert_eq!((value >> 16) & 0xff, 0x02, "Aff1");
        assert_eq!((value >> 24) & 0xf, 5, "INTID");
        assert_eq!((value >> 32) & 0xff, 0x03, "Aff2");
        assert_eq!((value >> 44) & 0xf, 1, "range selector Aff0 / 16");
        assert_eq!((value >> 48) & 0xff, 0x12, "Aff3");
        assert_eq!(sgi_to_all_others(1), (1 << 40) | (1 << 24));
    }

    #[test]
    fn initialization_finds_and_wakes_the_own_redistributor() {
        let registers = FakeRegisters { mpidr: 0x8000_0001, ..Default::default() };
        let mut fake = FakeGic::new(2, &[0, 1, 2]);
        let gic = fake.driver(&registers);
        assert_eq!(gic.line_count(), 96);
        gic.init_distributor();
        gic.init_cpu();
        let control = FakeGic::word(&fake.distributor, distributor::CONTROL);
        assert_eq!(control, 0b1_0011);
        assert_eq!(FakeGic::word(&fake.distributor, distributor::GROUP + 4), u32::MAX);
        assert_eq!(FakeGic::double_word(&fake.distributor, distributor::ROUTE + 8 * 95), 1);
        // The second redistributor (affinity 1) was woken and configured, the others not.
        let own = 0x2_0000;
        assert_eq!(FakeGic::word(&fake.redistributors, own + redistributor::WAKER), 0);
        assert_eq!(FakeGic::word(&fake.redistributors, own + redistributor::SGI_FRAME + redistributor::GROUP), u32::MAX);
        assert_eq!(FakeGic::word(&fake.redistributors, redistributor::SGI_FRAME + redistributor::GROUP), 0);
        assert_ne!(FakeGic::word(&fake.redistributors, 2 * 0x2_0000 + redistributor::WAKER), 0);
        let writes = registers.writes.lock().unwrap().clone();
        assert_eq!(writes.first(), Some(&("ICC_SRE_EL1", 7)));
        assert!(writes.contains(&("ICC_PMR_EL1", 0xff)));
        assert_eq!(writes.last(), Some(&("ICC_IGRPEN1_EL1", 1)));
    }

    #[test]
    fn ppis_use_the_redistributor_and_spis_the_distributor() {
        let registers = FakeRegisters { mpidr: 0x8000_0000, ..Default::default() };
        let mut fake = FakeGic::new(2, &[0]);
        let gic = fake.driver(&registers);
        assert_eq!(gic.enable(30), Err(IrqError::InvalidCpu(0)), "before init_cpu there is no redistributor");
        gic.init_cpu();
        gic.enable(30).unwrap();
        assert_eq!(FakeGic::word(&fake.redistributors, redistributor::SGI_FRAME + redistributor::SET_ENABLE), 1 << 30);
        gic.set_trigger(27, Trigger::EdgeRising).unwrap();
        assert_eq!(FakeGic::word(&fake.redistributors, redistributor::SGI_FRAME + redistributor::CONFIGURATION + 4), 1 << 23);
        gic.enable(33).unwrap();
        assert_eq!(FakeGic::word(&fake.distributor, distributor::SET_ENABLE + 4), 1 << 1);
        assert_eq!(gic.enable(96), Err(IrqError::InvalidIrq(96)));
        assert_eq!(gic.enable(1021), Err(IrqError::InvalidIrq(1021)));
        gic.set_affinity(40, 0).unwrap();
        assert_eq!(FakeGic::double_word(&fake.distributor, distributor::ROUTE + 8 * 40), 0);
        assert_eq!(gic.set_affinity(40, 3), Err(IrqError::InvalidCpu(3)));
    }

    #[test]
    fn acknowledge_end_of_interrupt_and_ipis() {
        let registers = FakeRegisters { mpidr: 0x8000_0000, ..Default::default() };
        let mut fake = FakeGic::new(2, &[0]);
        let gic = fake.driver(&registers);
        *registers.pending.lock().unwrap() = 1023;
        assert_eq!(gic.acknowledge(), None);
        *registers.pending.lock().unwrap() = 30;
        assert_eq!(gic.acknowledge(), Some(30));
        gic.end_of_interrupt(30);
        assert_eq!(gic.send_ipi(IpiTarget::Cpu(0), 1), Err(IrqError::InvalidCpu(0)));
        gic.init_cpu();
        gic.send_ipi(IpiTarget::Cpu(0), 1).unwrap();
        gic.send_ipi(IpiTarget::AllOthers, 2).unwrap();
        assert_eq!(gic.send_ipi(IpiTarget::Cpu(0), 16), Err(IrqError::InvalidIrq(16)));
        let writes = registers.writes.lock().unwrap().clone();
        assert!(writes.contains(&("ICC_EOIR1_EL1", 30)));
        assert!(writes.contains(&("ICC_SGI1R_EL1", (1 << 24) | 1)));
        assert!(writes.contains(&("ICC_SGI1R_EL1", (1 << 40) | (2 << 24))));
    }
}
