//! File systems: the VFS, the page cache, ramfs, procfs (registry and mountable file system), devfs and ext2.

mod bench;
pub mod commands;
pub mod devfs;
pub mod ext2;
pub mod interop;
mod ktests;
pub mod page_cache;
pub mod procfs;
pub mod ramfs;
pub mod root;
pub mod vfs;

pub use root::{init_root, vfs};
