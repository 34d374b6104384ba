//! File systems. For now the procfs registry; the VFS mounts it at `/proc` later.

pub mod procfs;
