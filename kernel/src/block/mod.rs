//! The block layer: the block-device interface, disks behind hardware drivers, RAM disks, request queues with I/O schedulers, partitions, and the device registry behind `/proc/partitions` and `/proc/diskstats`.

pub mod device;
pub mod driver;
pub mod partition;
pub mod queue;
pub mod ramdisk;
pub mod registry;
pub mod scheduler;

pub use device::{BlockDevice, DiskStatistics};
pub use driver::{add_virtio_disk, AddedDisk, DriverDisk};
pub use partition::{read_partition_table, Partition, PartitionEntry, PartitionTable};
pub use queue::{QueuedDevice, Request, RequestDirection, RequestQueue};
pub use ramdisk::RamDisk;
pub use registry::{add_disk, find, register, register_proc_files, registered_devices, unregister, RegisteredDevice};
pub use scheduler::{IoScheduler, SchedulerKind};
