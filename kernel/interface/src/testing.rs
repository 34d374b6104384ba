//! Test doubles for host tests of drivers (feature `testing`): a CPU that is always CPU 0 with interrupts masked.

use crate::cpu::{Cpu, CpuId, InterruptState};

/// A uniprocessor stand-in for [`Cpu`]: always CPU 0, interrupts reported masked, every
/// operation a no-op. For drivers' host tests, which need a `&'static dyn Cpu`.
pub struct UniprocessorCpu;

impl Cpu for UniprocessorCpu {
    fn current_id(&self) -> CpuId {
        CpuId(0)
    }
    fn disable_interrupts(&self) -> InterruptState {
        InterruptState(0)
    }
    fn restore_interrupts(&self, _state: InterruptState) {}
    fn enable_interrupts(&self) {}
    fn interrupts_enabled(&self) -> bool {
        false
    }
    fn wait_for_interrupt(&self) {}
    fn frame_pointer(&self) -> usize {
        0
    }
    fn model(&self) -> &str {
        "uniprocessor test double"
    }
}

/// The shared instance.
pub static UNIPROCESSOR_CPU: UniprocessorCpu = UniprocessorCpu;
