//! Raspberry Pi interrupt wiring: which controller a model has (the Pi 4's GIC-400, the Pi 3's BCM2836 local controller chained to the BCM2835 one), the generic-timer tick and the console's receive interrupt on it.

use bcm2835_intc::Bcm2835Intc;
use bcm2836_local_intc::Bcm2836LocalIntc;
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
    /// The BCM2836 per-core local controller with the BCM2835 (ARMCTRL) controller chained
    /// behind its GPU input, as on the BCM2837: numbers as the `bcm2836-local-intc` crate
    /// defines them (core timers 0-3, IPIs 16-23, ARMCTRL hardware number + 32).
    Bcm2836 {
        /// The local controller's block (0x4000_0000).
        local: u64,
        /// The BCM2835 controller's registers (peripheral base + 0xB200).
        peripheral: u64,
        /// The EL1 non-secure physical timer (CNTPNS, local interrupt 1).
        timer: u32,
        /// The PL011 (GPU interrupt 57).
        uart0: u32,
        /// The AUX block (GPU interrupt 29).
        mini_uart: u32,
    },
}

impl InterruptWiring {
    /// The timer interrupt and its trigger: the firmware's DTB describes the Pi 4's timer
    /// PPIs as active-low level.
    pub fn timer(&self) -> (u32, Trigger) {
        match *self {
            InterruptWiring::Gic400 { timer, .. } => (timer, Trigger::LevelLow),
            InterruptWiring::Bcm2836 { timer, .. } => (timer, Trigger::LevelHigh),
        }
    }

    /// The console UART's receive interrupt (`mini_uart` selects the AUX block's) and its
    /// trigger.
    pub fn console(&self, mini_uart: bool) -> (u32, Trigger) {
        match *self {
            InterruptWiring::Gic400 { uart0, mini_uart: aux, .. } | InterruptWiring::Bcm2836 { uart0, mini_uart: aux, .. } => {
                (if mini_uart { aux } else { uart0 }, Trigger::LevelHigh)
            }
        }
    }
}

static GIC: Once<GicV2> = Once::new();
static ARMCTRL: Once<Bcm2835Intc> = Once::new();
static LOCAL: Once<Bcm2836LocalIntc> = Once::new();

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
        InterruptWiring::Bcm2836 { local, peripheral, .. } => {
            // SAFETY: the caller guarantees this is the BCM2835 controller, used by no one else.
            let armctrl: &'static Bcm2835Intc = ARMCTRL.call_once(|| unsafe { Bcm2835Intc::new(peripheral as usize) });
            armctrl.init();
            // SAFETY: as above, for the local controller's block.
            let local = LOCAL.call_once(|| unsafe { Bcm2836LocalIntc::new(local as usize, cpu, Some(armctrl)) });
            local.init();
            local
        }
    };
    controller.init_cpu();
    controller
}
