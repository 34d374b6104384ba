//! Reporting on all slab caches: `/proc/slabinfo` (version 2.1) and the `slabtop` shell command, plus the slab ktests.

use core::fmt::{self, Write};

use super::slab::{CacheStatistics, SlabAllocator};
use crate::shell::{Arguments, CommandError, CommandResult};

/// Caches `slabtop` sorts at most (the rest are left out and counted).
const MAX_LISTED_CACHES: usize = 96;

/// Writes `/proc/slabinfo` for every cache of `slab`.
pub fn write_slabinfo(slab: &SlabAllocator, out: &mut dyn Write) -> fmt::Result {
    writeln!(out, "slabinfo - version: 2.1")?;
    writeln!(
        out,
        "# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>"
    )?;
    let mut result = Ok(());
    slab.for_each_cache(|cache| {
        let statistics = cache.statistics();
        let (limit, batch) = cache.tunables();
        result = result.and_then(|()| {
            writeln!(
                out,
                "{:<17} {:>6} {:>6} {:>6} {:>4} {:>4} : tunables {:>4} {:>4} {:>4} : slabdata {:>6} {:>6} {:>6}",
                cache.name(),
                statistics.active_objects,
                statistics.total_objects,
                statistics.object_size,
                statistics.objects_per_slab,
                statistics.pages_per_slab,
                limit,
                batch,
                0,
                statistics.active_slabs,
                statistics.total_slabs,
                0
            )
        });
    });
    result
}

/// Shows `/proc/slabinfo` for the kernel's memory manager.
pub fn show_slabinfo(out: &mut dyn Write) -> fmt::Result {
    write_slabinfo(super::MEMORY.slab(), out)
}

/// How `slabtop` orders its rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortOrder {
    /// Memory the cache takes, largest first (`-s c`, the default here).
    CacheSize,
    /// Number of objects, most first (`-s o`).
    Objects,
    /// Name (`-s n`).
    Name,
}

/// Percentage with one decimal, as `a / b`.
struct Percent(usize, usize);

impl fmt::Display for Percent {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tenths = (self.0 * 1000 + self.1 / 2).checked_div(self.1).unwrap_or(0);
        write!(formatter, "{}.{}%", tenths / 10, tenths % 10)
    }
}

/// Kibibytes with two decimals.
struct Kibibytes(usize);

impl fmt::Display for Kibibytes {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hundredths = self.0 * 100 / 1024;
        let text_width = formatter.width().unwrap_or(0);
        let mut buffer = [0u8; 32];
        let mut cursor = Cursor { buffer: &mut buffer, length: 0 };
        write!(cursor, "{}.{:02}K", hundredths / 100, hundredths % 100)?;
        let length = cursor.length;
        let text = core::str::from_utf8(&buffer[..length]).map_err(|_| fmt::Error)?;
        write!(formatter, "{:>width$}", text, width = text_width)
    }
}

struct Cursor<'a> {
    buffer: &'a mut [u8],
    length: usize,
}

impl Write for Cursor<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let end = self.length + text.len();
        self.buffer.get_mut(self.length..end).ok_or(fmt::Error)?.copy_from_slice(text.as_bytes());
        self.length = end;
        Ok(())
    }
}

/// Writes one `slabtop` screen: the totals, then one row per cache in `order`.
pub fn write_slabtop(slab: &SlabAllocator, order: SortOrder, out: &mut dyn Write) -> fmt::Result {
    let mut rows: [Option<(&'static str, CacheStatistics)>; MAX_LISTED_CACHES] = [None; MAX_LISTED_CACHES];
    let (mut count, mut left_out) = (0, 0);
    slab.for_each_cache(|cache| {
        if count < MAX_LISTED_CACHES {
            rows[count] = Some((cache.name(), cache.statistics()));
            count += 1;
        } else {
            left_out += 1;
        }
    });
    let rows = &mut rows[..count];
    let (mut active_objects, mut objects, mut active_slabs, mut slabs, mut active_caches) = (0, 0, 0, 0, 0);
    let (mut active_bytes, mut total_bytes, mut minimum, mut maximum, mut size_sum) = (0, 0, usize::MAX, 0, 0);
    for (_, statistics) in rows.iter().flatten() {
        active_objects += statistics.active_objects;
        objects += statistics.total_objects;
        active_slabs += statistics.active_slabs;
        slabs += statistics.total_slabs;
        active_caches += usize::from(statistics.active_objects > 0);
        active_bytes += statistics.active_objects * statistics.object_size;
        total_bytes += statistics.total_objects * statistics.object_size;
        minimum = minimum.min(statistics.object_size);
        maximum = maximum.max(statistics.object_size);
        size_sum += statistics.object_size;
    }
    let average = size_sum.checked_div(count).unwrap_or(0);
    writeln!(out, " Active / Total Objects (% used)    : {} / {} ({})", active_objects, objects, Percent(active_objects, objects))?;
    writeln!(out, " Active / Total Slabs (% used)      : {} / {} ({})", active_slabs, slabs, Percent(active_slabs, slabs))?;
    writeln!(out, " Active / Total Caches (% used)     : {} / {} ({})", active_caches, count, Percent(active_caches, count))?;
    writeln!(
        out,
        " Active / Total Size (% used)       : {} / {} ({})",
        Kibibytes(active_bytes),
        Kibibytes(total_bytes),
        Percent(active_bytes, total_bytes)
    )?;
    writeln!(
        out,
        " Minimum / Average / Maximum Object : {} / {} / {}",
        Kibibytes(minimum.min(maximum)),
        Kibibytes(average),
        Kibibytes(maximum)
    )?;
    writeln!(out)?;
    writeln!(out, "  OBJS ACTIVE  USE OBJ SIZE  SLABS OBJ/SLAB CACHE SIZE NAME")?;
    rows.sort_unstable_by(|left, right| {
        let (Some((left_name, left)), Some((right_name, right))) = (left, right) else { return core::cmp::Ordering::Equal };
        match order {
            SortOrder::CacheSize => right.memory_bytes().cmp(&left.memory_bytes()).then(left_name.cmp(right_name)),
            SortOrder::Objects => right.total_objects.cmp(&left.total_objects).then(left_name.cmp(right_name)),
            SortOrder::Name => left_name.cmp(right_name),
        }
    });
    for (name, statistics) in rows.iter().flatten() {
        let used = (statistics.active_objects * 100).checked_div(statistics.total_objects).unwrap_or(0);
        writeln!(
            out,
            "{:>6} {:>6} {:>3}% {:>8} {:>6} {:>8} {:>9}K {}",
            statistics.total_objects,
            statistics.active_objects,
            used,
            Kibibytes(statistics.object_size),
            statistics.total_slabs,
            statistics.objects_per_slab,
            statistics.memory_bytes() / 1024,
            name
        )?;
    }
    if left_out > 0 {
        writeln!(out, "({} more caches not shown)", left_out)?;
    }
    Ok(())
}

/// Parses `slabtop` arguments: `(once, order)`.
pub fn parse_slabtop_arguments(arguments: &Arguments<'_>) -> Result<(bool, SortOrder), CommandError> {
    const USAGE: &str = "slabtop [-o] [-s c|o|n]  (-o: print once; -s: sort by cache size, objects or name)";
    let (mut once, mut order) = (false, SortOrder::CacheSize);
    let mut words = arguments.iter().skip(1);
    while let Some(&word) = words.next() {
        match word {
            "-o" | "--once" => once = true,
            "-s" | "--sort" => {
                order = match words.next().copied() {
                    Some("c") => SortOrder::CacheSize,
                    Some("o") => SortOrder::Objects,
                    Some("n") => SortOrder::Name,
                    _ => return Err(CommandError::Usage(USAGE)),
                }
            }
            _ => return Err(CommandError::Usage(USAGE)),
        }
    }
    Ok((once, order))
}

fn slabtop(arguments: &Arguments<'_>, out: &mut dyn Write) -> CommandResult {
    let (once, order) = parse_slabtop_arguments(arguments)?;
    let slab = super::MEMORY.slab();
    if once {
        return write_slabtop(slab, order, out).map_err(|_| CommandError::Failed("output error"));
    }
    // Refresh every 3 seconds until `q` (Linux slabtop's default delay).
    let platform = crate::platform();
    loop {
        let _ = write!(out, "\x1b[H\x1b[2J");
        write_slabtop(slab, order, out).map_err(|_| CommandError::Failed("output error"))?;
        let _ = writeln!(out, "\n(q to quit)");
        let deadline = crate::time::since_boot_nanoseconds() + 3_000_000_000;
        while crate::time::since_boot_nanoseconds() < deadline {
            match platform.console().read_byte() {
                Some(b'q' | b'Q' | 3) => return Ok(()),
                _ => platform.cpu().relax(),
            }
        }
    }
}

crate::shell_command!(SLABTOP, "slabtop", "slab cache usage: slabtop [-o] [-s c|o|n]", slabtop);

crate::ktest!(
    fn cache_objects_keep_their_bytes_and_counts_return() {
        let memory = &super::MEMORY;
        crate::kassert!(memory.buddy().is_some(), "mm not initialized: the board must call mm::init_from_platform");
        let cache = match memory.kmem_cache_create("ktest-object", 200, 16, super::CacheFlags::DEBUG, None) {
            Ok(cache) => cache,
            Err(error) => return Err(crate::ktest::TestFailure::new(file!(), line!(), format_args!("{}", error))),
        };
        let mut objects = [core::ptr::NonNull::<u8>::dangling(); 300];
        for (index, slot) in objects.iter_mut().enumerate() {
            let object = memory.kmem_cache_alloc(&cache, super::AllocFlags::NONE);
            crate::kassert!(object.is_ok(), "allocation {} failed", index);
            let object = object.unwrap_or(core::ptr::NonNull::dangling());
            crate::kassert_eq!(object.as_ptr() as usize % 16, 0);
            // SAFETY: a live 200-byte object of the cache.
            unsafe { core::ptr::write_bytes(object.as_ptr(), index as u8, 200) };
            *slot = object;
        }
        crate::kassert_eq!(cache.statistics().active_objects, 300);
        for (index, object) in objects.iter().enumerate() {
            // SAFETY: still live.
            let bytes = unsafe { core::slice::from_raw_parts(object.as_ptr(), 200) };
            crate::kassert!(bytes.iter().all(|&b| b == index as u8), "object {} was overwritten", index);
            crate::kassert!(memory.kmem_cache_free(&cache, *object).is_ok());
        }
        let double_free = memory.kmem_cache_free(&cache, objects[0]);
        crate::kassert!(
            matches!(double_free, Err(super::SlabError { kind: super::SlabErrorKind::DoubleFree { .. }, .. })),
            "expected a double free, got {:?}",
            double_free
        );
        crate::kassert_eq!(cache.statistics().active_objects, 0);
        crate::kassert!(memory.kmem_cache_destroy(cache).is_ok(), "destroy failed");
        Ok(())
    }
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::{AllocFlags, CacheFlags};

    #[test]
    fn slabinfo_matches_linux_format() {
        let manager = crate::mm::tests::leaked_manager(4);
        let cache = manager.kmem_cache_create("task_struct", 1000, 64, CacheFlags::NONE, None).unwrap();
        let object = manager.kmem_cache_alloc(&cache, AllocFlags::NONE).unwrap();
        let mut text = String::new();
        write_slabinfo(manager.slab(), &mut text).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "slabinfo - version: 2.1");
        assert!(lines[1].starts_with("# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>"));
        if cfg!(feature = "slab-debug") {
            assert!(lines[2].starts_with("task_struct            1 "), "{}", lines[2]);
        } else {
            assert_eq!(
                lines[2],
                "task_struct            1      4   1024    4    1 : tunables   32   16    0 : slabdata      1      1      0"
            );
        }
        assert!(lines.iter().any(|line| line.starts_with("kmalloc-64 ")));
        assert!(lines.last().unwrap().starts_with("kmem_cache "));
        manager.kmem_cache_free(&cache, object).unwrap();
    }

    #[test]
    fn slabtop_prints_totals_and_sorts_by_size() {
        let manager = crate::mm::tests::leaked_manager(4);
        let small = manager.kmalloc(64, AllocFlags::NONE).unwrap();
        let large = manager.kmalloc(3000, AllocFlags::NONE).unwrap();
        let mut text = String::new();
        write_slabtop(manager.slab(), SortOrder::CacheSize, &mut text).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with(" Active / Total Objects (% used)    : 2 / "), "{}", lines[0]);
        assert!(lines[2].starts_with(" Active / Total Caches (% used)     : 2 / 14 (14.3%)"), "{}", lines[2]);
        assert_eq!(lines[6], "  OBJS ACTIVE  USE OBJ SIZE  SLABS OBJ/SLAB CACHE SIZE NAME");
        assert!(lines[7].ends_with(" kmalloc-4k"), "{}", lines[7]);
        if !cfg!(feature = "slab-debug") {
            assert!(lines[7].starts_with("     4      1  25%    4.00K      1        4        16K"), "{}", lines[7]);
        }
        assert_eq!(lines.len(), 7 + 14);
        text.clear();
        write_slabtop(manager.slab(), SortOrder::Name, &mut text).unwrap();
        assert!(text.lines().nth(7).unwrap().ends_with(" kmalloc-128"));
        manager.kfree(small).unwrap();
        manager.kfree(large).unwrap();
    }

    #[test]
    fn slabtop_arguments() {
        assert_eq!(parse_slabtop_arguments(&["slabtop", "-o"]), Ok((true, SortOrder::CacheSize)));
        assert_eq!(parse_slabtop_arguments(&["slabtop", "-s", "n", "-o"]), Ok((true, SortOrder::Name)));
        assert_eq!(parse_slabtop_arguments(&["slabtop"]), Ok((false, SortOrder::CacheSize)));
        assert!(parse_slabtop_arguments(&["slabtop", "-x"]).is_err());
        assert!(parse_slabtop_arguments(&["slabtop", "-s"]).is_err());
    }
}
