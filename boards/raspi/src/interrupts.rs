//! Raspberry Pi interrupt wiring: which controller a model has (the Pi 4's GIC-400, the Pi 3's BCM2836 local controller chained to the BCM2835 one), the generic-timer tick and the console's receive interrupt on it.

use gic::GicV2;
use hinoki_interface::{Cpu, InterruptController, Trigger};
use hinoki_kernel::sync::Once;

/// The interrupt controller of a model and the interrupt numbers the board uses on it.
#[derive(Clone, Copy, Debug)]
pub enum InterruptWiring {
    /// A GIC-400 (GICv2), as on the BCM2711: INTIDs as numbers.
    Gic400 {
        /// The distributor frame.
        distributor: u64,
        /// The CPU-interface frame.
        cpu_interface: u64,
        /// The EL1 non-secure physical timer's PPI (INTID 30).
        timer: u32,
        /// The PL011's SPI as an INTID.
        uart0: u32,
        /// The AUX block's (mini-UART's) SPI as an INTID.
        mini_uart: u32,
    },
}

impl InterruptWiring {
    /// The timer interrupt and its trigger: the firmware's DTB describes the Pi 4's timer
    /// PPIs as active-low level.
    pub fn timer(&self) -> (u32, Trigger) {
        match *self {
            InterruptWiring::Gic400 { timer, .. } => (timer, Trigger::LevelLow),
        }
    }

    /// The console UART's receive interrupt (`mini_uart` selects the AUX block's) and its
    /// trigger.
    pub fn console(&self, mini_uart: bool) -> (u32, Trigger) {
        match *self {
            InterruptWiring::Gic400 { uart0, mini_uart: aux, .. } => (if mini_uart { aux } else { uart0 }, Trigger::LevelHigh),
        }
    }
}

static GIC: Once<GicV2> = Once::new();

/// Creates the controller `wiring` describes and brings up its shared part (the GIC
/// distributor) and the calling CPU's part.
///
/// # Safety
/// Call once, on the boot CPU; `wiring` must describe this machine's controller, whose
/// registers nothing else drives and which are reachable at their physical addresses.
pub unsafe fn create_controller(wiring: &InterruptWiring, cpu: &'static dyn Cpu) -> &'static dyn InterruptController {
    let controller: &'static dyn InterruptController = match *wiring {
        InterruptWiring::Gic400 { distributor, cpu_interface, .. } => {
            // SAFETY: the caller guarantees these are the GIC-400's frames, used by no one else.
            let gic = GIC.call_once(|| unsafe { GicV2::new(distributor as usize, cpu_interface as usize, cpu) });
            gic.init_distributor();
            gic
        }
    };
    controller.init_cpu();
    controller
}
