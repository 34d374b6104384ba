//! qemu-virt interrupt wiring: the GIC the DTB describes, the IRQ vector, the generic-timer tick and the PL011 receive interrupt.

use gic::v3::SystemRegisters;
use gic::{GicV2, GicV3};
use hinoki_arch_aarch64::exception::{self, TrapFrame};
use hinoki_arch_aarch64::{gic_cpu_interface, Aarch64Cpu, GenericTimerEvent};
use hinoki_interface::{ClockEvent, Cpu, InterruptController};
use hinoki_kernel::sync::Once;

use crate::devicetree::{Devices, GicDescription};

/// The Linux device name of the PL011 in `/proc/interrupts`.
const UART_DEVICE_NAME: &str = "uart-pl011";

/// The DTB's `arm,armv8-timer` interrupts are secure physical, non-secure physical,
/// virtual, hypervisor; the kernel runs on the EL1 non-secure physical timer.
const NON_SECURE_PHYSICAL_TIMER: usize = 1;

/// The GICv3 CPU interface through the arch crate's ICC_* accessors.
struct IccRegisters;

impl SystemRegisters for IccRegisters {
    fn enable_system_register_access(&self) -> bool {
        gic_cpu_interface::enable_system_register_access()
    }
    fn set_priority_mask(&self, mask: u8) {
        gic_cpu_interface::set_priority_mask(mask)
    }
    fn set_binary_point(&self, value: u8) {
        gic_cpu_interface::set_binary_point(value)
    }
    fn set_control(&self, value: u64) {
        gic_cpu_interface::set_control(value)
    }
    fn set_group1_enabled(&self, enabled: bool) {
        gic_cpu_interface::set_group1_enabled(enabled)
    }
    fn acknowledge(&self) -> u32 {
        gic_cpu_interface::acknowledge()
    }
    fn end_of_interrupt(&self, intid: u32) {
        gic_cpu_interface::end_of_interrupt(intid)
    }
    fn send_sgi(&self, value: u64) {
        gic_cpu_interface::send_sgi(value)
    }
    fn affinity(&self) -> u64 {
        hinoki_arch_aarch64::cpu::multiprocessor_affinity()
    }
}

static GIC_VERSION_2: Once<GicV2> = Once::new();
static GIC_VERSION_3: Once<GicV3<IccRegisters>> = Once::new();
static CONTROLLER: Once<&'static dyn InterruptController> = Once::new();
static TIMER: Once<GenericTimerEvent> = Once::new();

/// The GIC, once [`start`] brought it up.
pub fn interrupt_controller() -> Option<&'static dyn InterruptController> {
    CONTROLLER.get().copied()
}

/// The generic timer's clock-event device, once [`start`] set it up.
pub fn clock_event() -> Option<&'static dyn ClockEvent> {
    TIMER.get().map(|timer| timer as &dyn ClockEvent)
}

fn irq_entry(_frame: &mut TrapFrame) {
    hinoki_kernel::irq::handle_interrupt();
}

/// Creates the GIC from the DTB's description and initializes its distributor and the boot
/// CPU's interface.
fn create_controller(description: GicDescription, cpu: &'static Aarch64Cpu) -> Option<&'static dyn InterruptController> {
    let controller: &'static dyn InterruptController = match description {
        GicDescription::Version2 { distributor, cpu_interface } => {
            // SAFETY: the DTB names these as the machine's GICv2 frames; the MMU is off, so
            // they are device memory, and nothing else drives the GIC.
            let gic = GIC_VERSION_2.call_once(|| unsafe { GicV2::new(distributor as usize, cpu_interface as usize, cpu) });
            gic.init_distributor();
            gic
        }
        GicDescription::Version3 { distributor, redistributor } => {
            if !gic_cpu_interface::has_system_register_interface() {
                log::error!("qemu-virt: the DTB has a GICv3 but the CPU has no GICv3 system registers");
                return None;
            }
            // SAFETY: as above, for the GICv3 distributor and redistributor region.
            let gic = GIC_VERSION_3.call_once(|| unsafe { GicV3::new(distributor as usize, redistributor as usize, IccRegisters, cpu) });
            gic.init_distributor();
            gic
        }
    };
    controller.init_cpu();
    Some(*CONTROLLER.call_once(|| controller))
}

/// Brings up interrupts on the boot CPU: the GIC, the IRQ vector, the periodic tick on the
/// non-secure physical timer, the PL011 receive interrupt; then unmasks IRQs. Anything
/// missing from the DTB leaves the kernel polling, as on boards without a GIC.
pub fn start(devices: &Devices, cpu: &'static Aarch64Cpu, counter_frequency_hz: u64) {
    let Some(description) = devices.gic else { return };
    let Some(controller) = create_controller(description, cpu) else { return };
    exception::set_interrupt_handler(irq_entry);
    log::info!("qemu-virt: {} up, IRQ handler installed", controller.name());
    let timer_interrupt = devices.timer_interrupts[NON_SECURE_PHYSICAL_TIMER];
    if timer_interrupt != 0 {
        TIMER.call_once(|| GenericTimerEvent::new(timer_interrupt, counter_frequency_hz));
        if let Err(error) = hinoki_kernel::tick::start(devices.timer_triggers[NON_SECURE_PHYSICAL_TIMER]) {
            log::warn!("qemu-virt: no periodic tick: {:?}", error);
        }
    }
    if let Some((uart_interrupt, trigger)) = devices.uart_interrupt {
        if let Err(error) = hinoki_kernel::tty::start_receive_interrupt(uart_interrupt, trigger, UART_DEVICE_NAME) {
            log::warn!("qemu-virt: console receive stays polled: {:?}", error);
        }
    }
    cpu.enable_interrupts();
}
