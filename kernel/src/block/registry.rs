//! The registry of block devices (disks and their partitions) behind `/proc/partitions` and `/proc/diskstats`.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt::{self, Write};

use super::device::BlockDevice;
use super::partition::partitions;
use super::queue::QueuedDevice;
use super::scheduler::SchedulerKind;
use crate::errno::{Errno, Result};
use crate::sync::SpinLock;

/// Linux's major number for RAM disks.
pub const RAMDISK_MAJOR: u32 = 1;
/// The major number Linux gives virtio-blk (dynamic there, 254 on most systems).
pub const VIRTIO_BLOCK_MAJOR: u32 = 254;

/// A registered device and its numbers.
#[derive(Clone)]
pub struct RegisteredDevice {
    /// The device (a partition is a device too).
    pub device: Arc<dyn BlockDevice>,
    /// The request queue, for a whole disk (its elevator can be switched).
    pub queue: Option<Arc<QueuedDevice>>,
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
}

static DEVICES: SpinLock<Vec<RegisteredDevice>> = SpinLock::new(Vec::new());

/// Registers `entry`; `EEXIST` if its name is taken.
pub fn register(entry: RegisteredDevice) -> Result<()> {
    let mut devices = DEVICES.lock();
    if devices.iter().any(|existing| existing.device.name() == entry.device.name()) {
        return Err(Errno::EEXIST);
    }
    devices.push(entry);
    Ok(())
}

/// Puts a request queue with `scheduler` in front of `disk`, registers it as
/// (`major`, `first_minor`) and its partitions as the following minors. Returns the queued
/// disk, which is what file systems should use.
pub fn add_disk(disk: Arc<dyn BlockDevice>, major: u32, first_minor: u32, scheduler: SchedulerKind) -> Result<Arc<QueuedDevice>> {
    let queued = Arc::new(QueuedDevice::new(disk, scheduler));
    let as_device: Arc<dyn BlockDevice> = queued.clone();
    let found = partitions(&as_device).unwrap_or_else(|error| {
        log::warn!("{}: unreadable partition table ({})", as_device.name(), error);
        Vec::new()
    });
    register(RegisteredDevice { device: as_device, queue: Some(queued.clone()), major, minor: first_minor })?;
    for partition in found {
        let minor = first_minor + partition.number;
        register(RegisteredDevice { device: partition, queue: None, major, minor })?;
    }
    Ok(queued)
}

/// Removes the device named `name` (and nothing else).
pub fn unregister(name: &str) -> Result<()> {
    let mut devices = DEVICES.lock();
    let position = devices.iter().position(|entry| entry.device.name() == name).ok_or(Errno::ENODEV)?;
    devices.remove(position);
    Ok(())
}

/// The device named `name` (with or without a `/dev/` prefix).
pub fn find(name: &str) -> Option<RegisteredDevice> {
    let name = name.strip_prefix("/dev/").unwrap_or(name);
    DEVICES.lock().iter().find(|entry| entry.device.name() == name).cloned()
}

/// Every registered device, in registration order.
pub fn registered_devices() -> Vec<RegisteredDevice> {
    DEVICES.lock().clone()
}

/// Writes `/proc/partitions` for `devices`.
pub fn write_partitions(devices: &[RegisteredDevice], out: &mut dyn Write) -> fmt::Result {
    writeln!(out, "major minor  #blocks  name")?;
    writeln!(out)?;
    for entry in devices {
        writeln!(out, "{:4}  {:7} {:10} {}", entry.major, entry.minor, entry.device.size_bytes() / 1024, entry.device.name())?;
    }
    Ok(())
}

/// Writes `/proc/diskstats` for `devices` (17 counters after the name, as Linux 5.5+).
pub fn write_diskstats(devices: &[RegisteredDevice], out: &mut dyn Write) -> fmt::Result {
    for entry in devices {
        let s = entry.device.statistics();
        writeln!(
            out,
            "{:4} {:7} {} {} {} {} {} {} {} {} {} {} {} {} 0 0 0 0 {} 0",
            entry.major,
            entry.minor,
            entry.device.name(),
            s.reads_completed,
            s.reads_merged,
            s.sectors_read,
            s.milliseconds_reading,
            s.writes_completed,
            s.writes_merged,
            s.sectors_written,
            s.milliseconds_writing,
            s.in_flight,
            s.milliseconds_doing_io,
            s.weighted_milliseconds,
            s.flushes_completed,
        )?;
    }
    Ok(())
}

fn show_partitions(out: &mut dyn Write) -> fmt::Result {
    write_partitions(&registered_devices(), out)
}

fn show_diskstats(out: &mut dyn Write) -> fmt::Result {
    write_diskstats(&registered_devices(), out)
}

/// Registers `/proc/partitions` and `/proc/diskstats` (again: no effect).
pub fn register_proc_files() {
    let _ = crate::fs::procfs::register("partitions", show_partitions);
    let _ = crate::fs::procfs::register("diskstats", show_diskstats);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::partition::tests::mbr_disk;

    #[test]
    fn add_disk_registers_partitions_and_formats_like_linux() {
        let disk = Arc::new(mbr_disk());
        let queued = add_disk(disk, VIRTIO_BLOCK_MAJOR, 0, SchedulerKind::Deadline).unwrap();
        assert!(add_disk(Arc::new(mbr_disk()), VIRTIO_BLOCK_MAJOR, 16, SchedulerKind::Noop).is_err(), "vda is taken");
        let partition = find("/dev/vda5").expect("logical partition registered");
        assert_eq!((partition.major, partition.minor), (254, 5));
        partition.device.write_blocks(0, &[1; 1024]).unwrap();
        queued.flush().unwrap();
        let ours: Vec<RegisteredDevice> = registered_devices().into_iter().filter(|e| e.device.name().starts_with("vda")).collect();
        let mut text = String::new();
        write_partitions(&ours, &mut text).unwrap();
        assert_eq!(
            text,
            "major minor  #blocks  name\n\n 254        0       4096 vda\n 254        1       1024 vda1\n 254        2        512 vda2\n 254        5        499 vda5\n 254        6       1035 vda6\n"
        );
        text.clear();
        write_diskstats(&ours[..1], &mut text).unwrap();
        let fields: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(fields.len(), 20);
        assert_eq!(&fields[..3], ["254", "0", "vda"]);
        assert_eq!(fields[7], "1", "one write completed");
        assert_eq!(fields[9], "2", "two sectors written");
        assert_eq!(fields[18], "1", "one flush");
        for name in ["vda", "vda1", "vda2", "vda5", "vda6"] {
            unregister(name).unwrap();
        }
        assert!(find("vda").is_none());
        assert_eq!(unregister("vda"), Err(Errno::ENODEV));
    }
}
