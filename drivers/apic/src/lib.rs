//! x86 APIC drivers: the local APIC (per-CPU interrupt acceptance, EOI, timer, IPIs) and the I/O APIC (device lines), behind [`hinoki_interface::InterruptController`] and [`hinoki_interface::ClockEvent`].
//!
//! Where the asm lives: this crate is portable and host-tested. The local APIC is reached
//! either through MSRs (x2APIC) or memory-mapped registers (xAPIC), and the vector being
//! serviced is known only to the arch crate's entry stubs; [`LocalApicAccess`] carries
//! both, implemented by the board by delegating to `hinoki_arch_x86_64::apic` (host tests
//! use a recording fake).
//!
//! Interrupt numbers, as the kernel's IRQ layer sees them ([`vector`]):
//! - `0..IO_APIC_IRQ_COUNT`: Linux's x86 IRQ numbers. ISA IRQs 0-15 go through the MADT's
//!   interrupt source overrides to their global system interrupt (GSI); numbers from 16 are
//!   GSIs. IRQ `n` arrives on vector `IO_APIC_VECTOR_BASE + n`.
//! - `0xe0..=0xfe`: local APIC vectors, numbered by the vector itself: IPIs, the local timer,
//!   TLB shootdowns and APIC errors. `/proc/interrupts` shows them as Linux's named rows
//!   (`LOC`, `RES`, `CAL`, `TLB`, `SPU`, `ERR`).
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod controller;
pub mod io_apic;
pub mod local;
pub mod routing;
pub mod timer;
pub mod vector;

pub use controller::{Apic, LocalApicAccess};
pub use io_apic::IoApic;
pub use routing::{ConflictingTrigger, IsaRouting, Polarity, Route, SourceOverride};
pub use timer::LapicTimer;

/// Most CPUs the drivers keep per-CPU state for (the xtask's `--smp` limit).
pub const MAX_CPUS: usize = 8;
