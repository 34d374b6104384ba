//! `/proc/interrupts` in Linux's format: a CPU header, one row per requested IRQ, the IPI rows and `Err:`.

use core::fmt::{self, Write};

use super::descriptor::{Descriptor, Ipi, MAX_CPUS};

/// Width of the first column: the digits of the highest number, at least 3 (Linux's
/// `prec`).
pub fn precision(highest_number: Option<u32>) -> usize {
    let mut width = 3;
    let mut limit = 1000u64;
    while let Some(number) = highest_number {
        if (number as u64) < limit {
            break;
        }
        width += 1;
        limit *= 10;
    }
    width
}

/// Writes the file. `next(after)` returns the requested descriptor with the lowest number
/// above `after` (a snapshot, so the table is not locked while printing); IPI descriptors
/// are printed as `IPIn:` rows in [`Ipi`] order, the others as IRQ rows.
pub fn show(
    out: &mut dyn Write,
    controller_name: &str,
    online_cpus: usize,
    highest_number: Option<u32>,
    errors: u64,
    mut next: impl FnMut(Option<u32>) -> Option<Descriptor>,
) -> fmt::Result {
    let online_cpus = online_cpus.clamp(1, MAX_CPUS);
    let width = precision(highest_number);
    write!(out, "{:width$}", "", width = width + 8)?;
    for cpu in 0..online_cpus {
        write!(out, "CPU{:<8}", cpu)?;
    }
    writeln!(out)?;
    let mut ipi_counts = [[0u64; MAX_CPUS]; Ipi::ALL.len()];
    let mut cursor = None;
    while let Some(descriptor) = next(cursor) {
        cursor = Some(descriptor.number);
        if let Some(ipi) = descriptor.ipi {
            ipi_counts[ipi as usize] = descriptor.counts;
            continue;
        }
        write!(out, "{:>width$}: ", descriptor.number, width = width)?;
        for count in &descriptor.counts[..online_cpus] {
            write!(out, "{:>10} ", count)?;
        }
        writeln!(
            out,
            " {:>8} {:>width$} {:<8}  {}",
            controller_name,
            descriptor.number,
            descriptor.trigger.short_name(),
            descriptor.name,
            width = width
        )?;
    }
    for ipi in Ipi::ALL {
        write!(out, "{:>width$}{}:{}", "IPI", ipi as usize, if width >= 4 { " " } else { "" }, width = width - 1)?;
        for count in &ipi_counts[ipi as usize][..online_cpus] {
            write!(out, "{:>10} ", count)?;
        }
        writeln!(out, "      {}", ipi.description())?;
    }
    writeln!(out, "{:>width$}: {:>10}", "Err", errors, width = width)
}

#[cfg(test)]
mod tests {
    use hinoki_interface::Trigger;

    use super::*;
    use crate::irq::descriptor::DescriptorTable;

    fn handler(_irq: u32) {}

    fn render(table: &DescriptorTable, online_cpus: usize) -> String {
        let mut out = String::new();
        show(&mut out, "GICv2", online_cpus, table.highest_number(), table.errors(), |after| table.next_after(after)).unwrap();
        out
    }

    #[test]
    fn matches_linux_layout_on_one_cpu() {
        let mut table = DescriptorTable::new();
        table.insert(Descriptor::new(33, "uart-pl011", Trigger::LevelHigh, handler, None)).unwrap();
        table.insert(Descriptor::new(30, "arch_timer", Trigger::LevelLow, handler, None)).unwrap();
        table.insert(Descriptor::new(1, "Function call interrupts", Trigger::EdgeRising, handler, Some(Ipi::CallFunction))).unwrap();
        for _ in 0..2583 {
            table.record(30, 0);
        }
        table.record(33, 0);
        table.record(1, 0);
        table.record_spurious(0);
        let expected = concat!(
            "           CPU0       \n",
            " 30:       2583     GICv2  30 Level     arch_timer\n",
            " 33:          1     GICv2  33 Level     uart-pl011\n",
            "IPI0:         0       Rescheduling interrupts\n",
            "IPI1:         1       Function call interrupts\n",
            "Err:          1\n",
        );
        assert_eq!(render(&table, 1), expected);
    }

    #[test]
    fn one_column_per_online_cpu_and_wider_numbers() {
        let mut table = DescriptorTable::new();
        table.insert(Descriptor::new(1000, "wide", Trigger::EdgeRising, handler, None)).unwrap();
        table.record(1000, 1);
        let text = render(&table, 2);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "            CPU0       CPU1       ");
        assert_eq!(lines[1], "1000:          0          1     GICv2 1000 Edge      wide");
        assert_eq!(lines[2], "IPI0:          0          0       Rescheduling interrupts");
        assert_eq!(lines[4], " Err:          0");
        assert_eq!(precision(None), 3);
        assert_eq!(precision(Some(999)), 3);
        assert_eq!(precision(Some(12_345)), 5);
    }
}
