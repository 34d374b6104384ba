//! Memory management: the physical page allocator, slab caches and the kernel heap.

pub mod buddy;
pub mod page;

/// The calling CPU's id, or 0 before the platform is registered (and on the host).
pub fn current_cpu() -> usize {
    crate::try_platform().map_or(0, |platform| platform.cpu().current_id().0 as usize)
}
