//! Generates the linker script's memory part from `src/memory_map.rs`, the one source of addresses.

#[allow(dead_code)]
#[path = "src/memory_map.rs"]
mod memory_map;

fn main() {
    hinoki_linker::LinkerScript::new("aarch64")
        .symbol("KERNEL_LOAD_ADDRESS", memory_map::KERNEL_LOAD_ADDRESS)
        .symbol("KERNEL_TEXT_OFFSET", memory_map::KERNEL_TEXT_OFFSET)
        .symbol("BOOT_STACK_SIZE", memory_map::BOOT_STACK_SIZE)
        .emit();
}
