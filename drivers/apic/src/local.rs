//! Local APIC registers and their encodings: offsets (xAPIC MMIO; x2APIC MSR `0x800 + offset / 16`), the interrupt command register, LVT entries and the timer divider (Intel SDM vol. 3, chapter 11).

/// Local APIC ID.
pub const ID: u32 = 0x020;
/// Version (bits 7:0) and max LVT entry (bits 23:16).
pub const VERSION: u32 = 0x030;
/// Task priority: 0 accepts every vector.
pub const TASK_PRIORITY: u32 = 0x080;
/// End of interrupt: write 0.
pub const END_OF_INTERRUPT: u32 = 0x0b0;
/// Logical destination (xAPIC only; read-only in x2APIC).
pub const LOGICAL_DESTINATION: u32 = 0x0d0;
/// Destination format (xAPIC only).
pub const DESTINATION_FORMAT: u32 = 0x0e0;
/// Spurious-interrupt vector register: vector and the software-enable bit.
pub const SPURIOUS_INTERRUPT_VECTOR: u32 = 0x0f0;
/// Error status: write before reading to latch the errors.
pub const ERROR_STATUS: u32 = 0x280;
/// Interrupt command, low half (xAPIC; the whole 64-bit register in x2APIC).
pub const INTERRUPT_COMMAND: u32 = 0x300;
/// Interrupt command, high half (xAPIC destination in bits 31:24).
pub const INTERRUPT_COMMAND_HIGH: u32 = 0x310;
/// LVT timer.
pub const LVT_TIMER: u32 = 0x320;
/// LVT thermal sensor.
pub const LVT_THERMAL: u32 = 0x330;
/// LVT performance-monitoring counters.
pub const LVT_PERFORMANCE: u32 = 0x340;
/// LVT LINT0 (the 8259's INTR in virtual-wire mode).
pub const LVT_LINT0: u32 = 0x350;
/// LVT LINT1 (NMI on PCs).
pub const LVT_LINT1: u32 = 0x360;
/// LVT error.
pub const LVT_ERROR: u32 = 0x370;
/// Timer initial count.
pub const TIMER_INITIAL_COUNT: u32 = 0x380;
/// Timer current count.
pub const TIMER_CURRENT_COUNT: u32 = 0x390;
/// Timer divide configuration.
pub const TIMER_DIVIDE: u32 = 0x3e0;

/// The x2APIC MSR of register `offset`.
pub const fn x2apic_msr(offset: u32) -> u32 {
    0x800 + (offset >> 4)
}

/// SVR bit 8: the APIC is software-enabled.
pub const APIC_SOFTWARE_ENABLE: u32 = 1 << 8;
/// LVT bit 16: masked.
pub const LVT_MASKED: u32 = 1 << 16;
/// LVT delivery mode NMI (bits 10:8 = 100).
pub const LVT_DELIVERY_NMI: u32 = 0b100 << 8;
/// LVT timer mode, bits 18:17.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerMode {
    /// Counts down once from the initial count.
    OneShot = 0b00,
    /// Reloads the initial count.
    Periodic = 0b01,
    /// Fires when the TSC reaches IA32_TSC_DEADLINE.
    TscDeadline = 0b10,
}

/// The LVT timer entry for `vector` in `mode`, unmasked.
pub const fn lvt_timer(vector: u8, mode: TimerMode) -> u32 {
    vector as u32 | (mode as u32) << 17
}

/// Timer divide configuration value for dividing the bus clock by 16 (bits 3,1:0 = 0b011).
pub const TIMER_DIVIDE_BY_16: u32 = 0b0011;
/// The divisor [`TIMER_DIVIDE_BY_16`] selects.
pub const TIMER_DIVISOR: u64 = 16;

/// ICR delivery modes (bits 10:8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryMode {
    /// Deliver the vector.
    Fixed = 0b000,
    /// Non-maskable interrupt.
    Nmi = 0b100,
    /// INIT (reset the target to wait-for-SIPI).
    Init = 0b101,
    /// Start-up IPI: the target starts in real mode at `vector << 12`.
    Startup = 0b110,
}

/// ICR destination shorthands (bits 19:18).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shorthand {
    /// The destination field names the target.
    None = 0b00,
    /// The sending CPU.
    SelfOnly = 0b01,
    /// Every CPU, the sender included.
    AllIncludingSelf = 0b10,
    /// Every CPU but the sender.
    AllExcludingSelf = 0b11,
}

/// ICR bit 12 (xAPIC): the previous IPI is still being sent.
pub const ICR_DELIVERY_PENDING: u32 = 1 << 12;
const ICR_LEVEL_ASSERT: u64 = 1 << 14;
const ICR_TRIGGER_LEVEL: u64 = 1 << 15;

/// An interrupt command: what the ICR is written with to send an IPI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterruptCommand {
    /// Vector (fixed) or start page (startup).
    pub vector: u8,
    /// Delivery mode.
    pub delivery: DeliveryMode,
    /// Physical APIC ID of the target when `shorthand` is `None`.
    pub destination: u32,
    /// Destination shorthand.
    pub shorthand: Shorthand,
    /// Level-triggered de-assert (only for the legacy INIT level de-assert).
    pub deassert: bool,
}

impl InterruptCommand {
    /// A fixed IPI of `vector` to APIC ID `destination`.
    pub const fn fixed(vector: u8, destination: u32) -> Self {
        InterruptCommand { vector, delivery: DeliveryMode::Fixed, destination, shorthand: Shorthand::None, deassert: false }
    }

    /// The 64-bit x2APIC ICR value: destination in bits 63:32.
    pub const fn x2apic_value(&self) -> u64 {
        let mut value = self.vector as u64 | (self.delivery as u64) << 8 | (self.shorthand as u64) << 18;
        if self.deassert {
            value |= ICR_TRIGGER_LEVEL;
        } else {
            value |= ICR_LEVEL_ASSERT;
            if matches!(self.delivery, DeliveryMode::Init) {
                value |= ICR_TRIGGER_LEVEL;
            }
        }
        if matches!(self.shorthand, Shorthand::None) {
            value |= (self.destination as u64) << 32;
        }
        value
    }

    /// The xAPIC ICR halves (high, low): an 8-bit destination in bits 31:24 of the high
    /// half; the low half is written last (it sends).
    pub const fn xapic_value(&self) -> (u32, u32) {
        let value = self.x2apic_value();
        let high = if matches!(self.shorthand, Shorthand::None) { (self.destination & 0xff) << 24 } else { 0 };
        (high, value as u32)
    }
}

/// Timer ticks (after the divider) per second, from `ticks` counted over `reference_nanoseconds`.
pub fn timer_frequency(ticks: u64, reference_nanoseconds: u64) -> u64 {
    if reference_nanoseconds == 0 {
        return 0;
    }
    (ticks as u128 * 1_000_000_000 / reference_nanoseconds as u128) as u64
}

/// The initial count for a one-shot of `nanoseconds` at `frequency_hz` (rounded up so the
/// interrupt is never early; at least 1, at most the 32-bit counter's maximum).
pub fn one_shot_count(nanoseconds: u64, frequency_hz: u64) -> u32 {
    let ticks = (nanoseconds as u128 * frequency_hz as u128).div_ceil(1_000_000_000);
    ticks.clamp(1, u32::MAX as u128) as u32
}

/// TSC ticks for `nanoseconds` at `frequency_hz`, rounded up.
pub fn tsc_ticks(nanoseconds: u64, frequency_hz: u64) -> u64 {
    let ticks = (nanoseconds as u128 * frequency_hz as u128).div_ceil(1_000_000_000);
    ticks.min(u64::MAX as u128) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x2apic_msrs() {
        assert_eq!(x2apic_msr(ID), 0x802);
        assert_eq!(x2apic_msr(END_OF_INTERRUPT), 0x80b);
        assert_eq!(x2apic_msr(INTERRUPT_COMMAND), 0x830);
        assert_eq!(x2apic_msr(LVT_TIMER), 0x832);
        assert_eq!(x2apic_msr(TIMER_DIVIDE), 0x83e);
    }

    #[test]
    fn interrupt_command_encoding() {
        // Fixed vector 0xe1 to APIC ID 3: level assert, edge, physical.
        let fixed = InterruptCommand::fixed(0xe1, 3);
        assert_eq!(fixed.x2apic_value(), 0x0000_0003_0000_40e1);
        assert_eq!(fixed.xapic_value(), (0x0300_0000, 0x0000_40e1));
        // INIT assert: delivery 101, level, assert.
        let init =
            InterruptCommand { vector: 0, delivery: DeliveryMode::Init, destination: 1, shorthand: Shorthand::None, deassert: false };
        assert_eq!(init.x2apic_value(), 0x0000_0001_0000_c500);
        // INIT de-assert: level trigger, level bit clear.
        let deassert = InterruptCommand { deassert: true, ..init };
        assert_eq!(deassert.x2apic_value(), 0x0000_0001_0000_8500);
        // Start-up at page 8 (0x8000).
        let startup =
            InterruptCommand { vector: 0x08, delivery: DeliveryMode::Startup, destination: 2, shorthand: Shorthand::None, deassert: false };
        assert_eq!(startup.x2apic_value(), 0x0000_0002_0000_4608);
        // All but self: no destination bits.
        let broadcast = InterruptCommand { shorthand: Shorthand::AllExcludingSelf, ..InterruptCommand::fixed(0xf1, 7) };
        assert_eq!(broadcast.x2apic_value(), 0x0000_0000_000c_40f1);
        assert_eq!(broadcast.xapic_value(), (0, 0x000c_40f1));
        // x2APIC IDs above 255 keep all 32 bits.
        assert_eq!(InterruptCommand::fixed(0xe0, 0x1234).x2apic_value() >> 32, 0x1234);
    }

    #[test]
    fn timer_math() {
        assert_eq!(lvt_timer(0xf0, TimerMode::TscDeadline), 0x0004_00f0);
        assert_eq!(lvt_timer(0xf0, TimerMode::OneShot), 0xf0);
        // 62.5 million ticks in 1 s; 625 000 in 10 ms.
        assert_eq!(timer_frequency(625_000, 10_000_000), 62_500_000);
        assert_eq!(timer_frequency(5, 0), 0);
        assert_eq!(one_shot_count(10_000_000, 62_500_000), 625_000);
        assert_eq!(one_shot_count(1, 62_500_000), 1, "rounded up, never zero");
        assert_eq!(one_shot_count(0, 62_500_000), 1);
        assert_eq!(one_shot_count(u64::MAX, 62_500_000), u32::MAX);
        assert_eq!(tsc_ticks(1_000, 3_000_000_000), 3_000);
        assert_eq!(tsc_ticks(1, 3_500_000_000), 4);
    }
}
