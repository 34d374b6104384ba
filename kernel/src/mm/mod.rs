//! Memory management: the physical page allocator, slab caches and the kernel heap.
