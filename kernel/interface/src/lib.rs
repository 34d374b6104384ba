//! The hardware contract: small traits, one per hardware concept, that arch crates, drivers and boards implement and the portable kernel consumes.
//!
//! Nothing here touches hardware. A board names one type implementing [`Platform`]; the
//! kernel reaches every device through it, so a missing piece is a type error, not a
//! link error.
#![no_std]
#![forbid(unsafe_code)]

pub mod block;
pub mod clock;
pub mod console;
pub mod context;
pub mod cpu;
pub mod dma;
pub mod irq;
pub mod memory;
pub mod mmu;
pub mod platform;
pub mod rtc;
#[cfg(feature = "testing")]
pub mod testing;

pub use block::{BlockDriver, BlockError, BlockRequest};
pub use clock::{Clock, ClockEvent};
pub use console::Console;
pub use context::{ContextSwitch, SavedContext, ThreadEntry};
pub use cpu::{Cpu, CpuId, CpuStartError, InterruptState, SecondaryEntry};
pub use dma::{DmaMemory, DmaRegion};
pub use irq::{InterruptController, IpiTarget, IrqError, NamedRow, RowSource, Trigger};
pub use memory::{MemoryKind, MemoryMap, MemoryMapFull, MemoryRegion, PhysicalAddress, VirtualAddress};
pub use mmu::{AddressSpace, MapError, Mmu, PageFlags};
pub use platform::{ExitStatus, Platform};
pub use rtc::{CivilTime, RealTimeClock, RtcError};
