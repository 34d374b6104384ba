//! Shared Raspberry Pi wiring: boot information from ATAGs or the DTB, GPIO14/15 and UART setup, the PM watchdog, and the [`Raspi`] platform parameterized by a per-model [`Model`].
//!
//! The crate has no assembly and builds on the host, where `cargo test -p hinoki-board-raspi`
//! runs the ATAG parser, console selection and watchdog encoding tests. The board crates
//! (`raspi3b`, `raspi4b`) supply the model's addresses and the aarch64 pieces.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod atags;
mod board_main;
pub mod boot_information;
pub mod interrupts;
mod ktests;
pub mod platform;
pub mod power_management;

pub use boot_information::{BootInformation, BootSource, ConsoleChoice};
pub use interrupts::InterruptWiring;
pub use platform::{Architecture, Model, Raspi, SerialConsole};
