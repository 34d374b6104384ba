//! qemu-virt memory map: where the kernel is linked and loaded. Devices come from the DTB.

/// Start of RAM on the virt machine.
pub const RAM_BASE: u64 = 0x4000_0000;
/// Offset of the image from the 2 MiB-aligned RAM base (arm64 Image `text_offset`).
pub const KERNEL_TEXT_OFFSET: u64 = 0x20_0000;
/// Link and load address of the kernel (QEMU places an Image at RAM base + 2 MiB).
pub const KERNEL_LOAD_ADDRESS: u64 = RAM_BASE + KERNEL_TEXT_OFFSET;
/// Size of the boot CPU's stack.
pub const BOOT_STACK_SIZE: u64 = 64 * 1024;
/// Console used only when the DTB cannot be read (QEMU's fixed PL011 address).
pub const FALLBACK_UART: u64 = 0x0900_0000;
