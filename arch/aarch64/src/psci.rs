//! PSCI calls (power off, reset, CPU on) through HVC or SMC, the conduit named by the DTB.

use core::arch::asm;

/// How PSCI calls reach the firmware.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conduit {
    /// `hvc #0` (QEMU virt without EL2 emulation).
    Hypervisor,
    /// `smc #0`.
    SecureMonitor,
}

impl Conduit {
    /// Parses the DTB's `/psci` `method` property (`"hvc"` or `"smc"`).
    pub fn from_method(method: &str) -> Option<Conduit> {
        match method {
            "hvc" => Some(Conduit::Hypervisor),
            "smc" => Some(Conduit::SecureMonitor),
            _ => None,
        }
    }
}

/// PSCI 0.2 SYSTEM_OFF.
pub const SYSTEM_OFF: u32 = 0x8400_0008;
/// PSCI 0.2 SYSTEM_RESET.
pub const SYSTEM_RESET: u32 = 0x8400_0009;
/// PSCI 0.2 CPU_ON (64-bit).
pub const CPU_ON_64: u32 = 0xc400_0003;

/// Makes a PSCI call and returns the firmware's result (x0).
pub fn call(conduit: Conduit, function: u32, argument1: u64, argument2: u64, argument3: u64) -> i64 {
    let mut result = function as u64;
    match conduit {
        // SAFETY: a PSCI call follows the SMC calling convention: x0-x3 in, x0 out, and
        // x4-x17 may be clobbered by the firmware; all are declared.
        Conduit::Hypervisor => unsafe {
            asm!("hvc #0", inout("x0") result, inout("x1") argument1 => _, inout("x2") argument2 => _, inout("x3") argument3 => _,
                 out("x4") _, out("x5") _, out("x6") _, out("x7") _, out("x8") _, out("x9") _, out("x10") _, out("x11") _,
                 out("x12") _, out("x13") _, out("x14") _, out("x15") _, out("x16") _, out("x17") _, options(nostack))
        },
        // SAFETY: as above, through the secure monitor.
        Conduit::SecureMonitor => unsafe {
            asm!("smc #0", inout("x0") result, inout("x1") argument1 => _, inout("x2") argument2 => _, inout("x3") argument3 => _,
                 out("x4") _, out("x5") _, out("x6") _, out("x7") _, out("x8") _, out("x9") _, out("x10") _, out("x11") _,
                 out("x12") _, out("x13") _, out("x14") _, out("x15") _, out("x16") _, out("x17") _, options(nostack))
        },
    }
    result as i64
}

/// Powers the system off. Returns only if the firmware refused.
pub fn system_off(conduit: Conduit) {
    call(conduit, SYSTEM_OFF, 0, 0, 0);
}

/// Resets the system. Returns only if the firmware refused.
pub fn system_reset(conduit: Conduit) {
    call(conduit, SYSTEM_RESET, 0, 0, 0);
}
