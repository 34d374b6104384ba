//! `/proc/interrupts` in Linux's format: a CPU header, one row per requested IRQ, then the IPI rows and `Err:` (arm64) or the controller's named rows (x86 `LOC`, `SPU`, `RES`, `CAL`, `TLB`, `ERR`).

use core::fmt::{self, Write};

use hinoki_interface::{InterruptController, NamedRow, RowSource};

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

/// The error counts the table keeps.
#[derive(Clone, Copy, Debug, Default)]
pub struct ErrorCounts {
    /// Interrupts nobody requested.
    pub unrequested: u64,
    /// Spurious interrupts per CPU.
    pub spurious: [u64; MAX_CPUS],
}

/// Writes the file. `next(after)` returns the requested descriptor with the lowest number
/// above `after` (a snapshot, so the table is not locked while printing). Without named
/// rows from the controller, IPI descriptors are printed as `IPIn:` rows in [`Ipi`] order
/// and errors (unrequested plus spurious) as `Err:`; with them (x86), the interrupts they
/// name are printed in those rows instead, in the controller's order.
pub fn show(
    out: &mut dyn Write,
    controller: Option<&dyn InterruptController>,
    online_cpus: usize,
    highest_number: Option<u32>,
    errors: ErrorCounts,
    mut next: impl FnMut(Option<u32>) -> Option<Descriptor>,
) -> fmt::Result {
    let online_cpus = online_cpus.clamp(1, MAX_CPUS);
    let named_rows: &[NamedRow] = controller.map_or(&[], |controller| controller.named_rows());
    let extra_errors = controller.map_or(0, |controller| controller.extra_errors());
    let width = precision(highest_number);
    write!(out, "{:width$}", "", width = width + 8)?;
    for cpu in 0..online_cpus {
        write!(out, "CPU{:<8}", cpu)?;
    }
    writeln!(out)?;
    let mut ipi_counts = [[0u64; MAX_CPUS]; Ipi::ALL.len()];
    let mut named_counts = [[0u64; MAX_CPUS]; MAX_NAMED_ROWS];
    let mut cursor = None;
    while let Some(descriptor) = next(cursor) {
        cursor = Some(descriptor.number);
        if let Some(row) = named_rows.iter().take(MAX_NAMED_ROWS).position(|row| row.source == RowSource::Interrupt(descriptor.number)) {
            named_counts[row] = descriptor.counts;
            continue;
        }
        if let Some(ipi) = descriptor.ipi {
            ipi_counts[ipi as usize] = descriptor.counts;
            continue;
        }
        write!(out, "{:>width$}: ", descriptor.number, width = width)?;
        for count in &descriptor.counts[..online_cpus] {
            write!(out, "{:>10} ", count)?;
        }
        let hardware_irq = controller.map_or(descriptor.number, |controller| controller.hardware_irq(descriptor.number));
        let controller_name = controller.map_or("none", |controller| controller.chip_name(descriptor.number));
        match controller.and_then(|controller| controller.flow_name(descriptor.number, descriptor.trigger)) {
            Some(flow) => {
                writeln!(out, " {:>8} {:>width$}-{:<8}  {}", controller_name, hardware_irq, flow, descriptor.name, width = width)?
            }
            None => writeln!(
                out,
                " {:>8} {:>width$} {:<8}  {}",
                controller_name,
                hardware_irq,
                descriptor.trigger.short_name(),
                descriptor.name,
                width = width
            )?,
        }
    }
    let spurious_total: u64 = errors.spurious.iter().sum();
    if named_rows.is_empty() {
        for ipi in Ipi::ALL {
            write!(out, "{:>width$}{}:{}", "IPI", ipi as usize, if width >= 4 { " " } else { "" }, width = width - 1)?;
            for count in &ipi_counts[ipi as usize][..online_cpus] {
                write!(out, "{:>10} ", count)?;
            }
            writeln!(out, "      {}", ipi.description())?;
        }
        return writeln!(out, "{:>width$}: {:>10}", "Err", errors.unrequested + spurious_total + extra_errors, width = width);
    }
    let spurious_has_row = named_rows.iter().any(|row| row.source == RowSource::Spurious);
    for (index, row) in named_rows.iter().take(MAX_NAMED_ROWS).enumerate() {
        let counts = match row.source {
            RowSource::Interrupt(_) => &named_counts[index],
            RowSource::Spurious => &errors.spurious,
            RowSource::Errors => {
                let total = errors.unrequested + extra_errors + if spurious_has_row { 0 } else { spurious_total };
                writeln!(out, "{:>width$}: {:>10}", row.label, total, width = width)?;
                continue;
            }
        };
        write!(out, "{:>width$}: ", row.label, width = width)?;
        for count in &counts[..online_cpus] {
            write!(out, "{:>10} ", count)?;
        }
        writeln!(out, "  {}", row.description)?;
    }
    Ok(())
}

/// Most named rows a controller may list.
pub const MAX_NAMED_ROWS: usize = 16;

#[cfg(test)]
mod tests {
    use hinoki_interface::Trigger;

    use super::*;
    use crate::irq::descriptor::DescriptorTable;

    fn handler(_irq: u32) {}

    /// A controller that only names itself and, in x86 style, labels rows as the APICs do.
    struct FakeController {
        x86: bool,
    }

    const X86_ROWS: [NamedRow; 6] = [
        NamedRow { label: "LOC", description: "Local timer interrupts", source: RowSource::Interrupt(0xf0) },
        NamedRow { label: "SPU", description: "Spurious interrupts", source: RowSource::Spurious },
        NamedRow { label: "RES", description: "Rescheduling interrupts", source: RowSource::Interrupt(0xe0) },
        NamedRow { label: "CAL", description: "Function call interrupts", source: RowSource::Interrupt(0xe1) },
        NamedRow { label: "TLB", description: "TLB shootdowns", source: RowSource::Interrupt(0xf1) },
        NamedRow { label: "ERR", description: "", source: RowSource::Errors },
    ];

    impl InterruptController for FakeController {
        fn name(&self) -> &'static str {
            if self.x86 {
                "IO-APIC"
            } else {
                "GICv2"
            }
        }
        fn init_cpu(&self) {}
        fn enable(&self, _irq: u32) -> Result<(), hinoki_interface::IrqError> {
            Ok(())
        }
        fn disable(&self, _irq: u32) -> Result<(), hinoki_interface::IrqError> {
            Ok(())
        }
        fn set_trigger(&self, _irq: u32, _trigger: Trigger) -> Result<(), hinoki_interface::IrqError> {
            Ok(())
        }
        fn acknowledge(&self) -> Option<u32> {
            None
        }
        fn end_of_interrupt(&self, _irq: u32) {}
        fn hardware_irq(&self, irq: u32) -> u32 {
            if self.x86 && irq == 0 {
                2
            } else {
                irq
            }
        }
        fn flow_name(&self, _irq: u32, trigger: Trigger) -> Option<&'static str> {
            self.x86.then_some(if trigger == Trigger::LevelHigh { "fasteoi" } else { "edge" })
        }
        fn named_rows(&self) -> &[NamedRow] {
            if self.x86 {
                &X86_ROWS
            } else {
                &[]
            }
        }
        fn extra_errors(&self) -> u64 {
            if self.x86 {
                2
            } else {
                0
            }
        }
    }

    fn render_with(table: &DescriptorTable, online_cpus: usize, x86: bool) -> String {
        let mut out = String::new();
        let errors = ErrorCounts { unrequested: table.unrequested(), spurious: table.spurious_counts() };
        let controller = FakeController { x86 };
        show(&mut out, Some(&controller), online_cpus, table.highest_number(), errors, |after| table.next_after(after)).unwrap();
        out
    }

    fn render(table: &DescriptorTable, online_cpus: usize) -> String {
        render_with(table, online_cpus, false)
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

    /// A local controller with a peripheral controller chained behind it, numbered as the
    /// Pi 3's pair: local lines below 32, the chained controller's `hwirq + 32` above.
    struct ChainedController;

    impl InterruptController for ChainedController {
        fn name(&self) -> &'static str {
            "bcm2836-l1-intc"
        }
        fn init_cpu(&self) {}
        fn enable(&self, _irq: u32) -> Result<(), hinoki_interface::IrqError> {
            Ok(())
        }
        fn disable(&self, _irq: u32) -> Result<(), hinoki_interface::IrqError> {
            Ok(())
        }
        fn set_trigger(&self, _irq: u32, _trigger: Trigger) -> Result<(), hinoki_interface::IrqError> {
            Ok(())
        }
        fn acknowledge(&self) -> Option<u32> {
            None
        }
        fn end_of_interrupt(&self, _irq: u32) {}
        fn chip_name(&self, irq: u32) -> &'static str {
            if irq < 32 {
                "bcm2836-timer"
            } else {
                "ARMCTRL-level"
            }
        }
        fn hardware_irq(&self, irq: u32) -> u32 {
            if irq < 32 {
                irq
            } else {
                irq - 32
            }
        }
    }

    #[test]
    fn chained_controllers_name_the_chip_of_each_line() {
        let mut table = DescriptorTable::new();
        table.insert(Descriptor::new(1, "arch_timer", Trigger::LevelHigh, handler, None)).unwrap();
        table.insert(Descriptor::new(121, "uart-pl011", Trigger::LevelHigh, handler, None)).unwrap();
        table.record(1, 0);
        let mut out = String::new();
        let errors = ErrorCounts { unrequested: table.unrequested(), spurious: table.spurious_counts() };
        show(&mut out, Some(&ChainedController), 1, table.highest_number(), errors, |after| table.next_after(after)).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[1], "  1:          1  bcm2836-timer   1 Level     arch_timer");
        assert_eq!(lines[2], "121:          0  ARMCTRL-level  89 Level     uart-pl011");
    }

    #[test]
    fn x86_layout_with_named_rows() {
        let mut table = DescriptorTable::new();
        table.insert(Descriptor::new(4, "ttyS0", Trigger::EdgeRising, handler, None)).unwrap();
        table.insert(Descriptor::new(0, "timer", Trigger::EdgeRising, handler, None)).unwrap();
        table.insert(Descriptor::new(9, "acpi", Trigger::LevelHigh, handler, None)).unwrap();
        table.insert(Descriptor::new(0xf0, "lapic", Trigger::EdgeRising, handler, None)).unwrap();
        table.insert(Descriptor::new(0xe0, "Rescheduling interrupts", Trigger::EdgeRising, handler, Some(Ipi::Reschedule))).unwrap();
        table.insert(Descriptor::new(0xe1, "Function call interrupts", Trigger::EdgeRising, handler, Some(Ipi::CallFunction))).unwrap();
        for _ in 0..3 {
            table.record(4, 1);
        }
        table.record(0xf0, 0);
        table.record(0xf0, 1);
        table.record(0xe1, 1);
        table.record(0x77, 0);
        table.record_spurious(1);
        let text = render_with(&table, 2, true);
        let expected = concat!(
            "           CPU0       CPU1       \n",
            "  0:          0          0   IO-APIC   2-edge      timer\n",
            "  4:          0          3   IO-APIC   4-edge      ttyS0\n",
            "  9:          0          0   IO-APIC   9-fasteoi   acpi\n",
            "LOC:          1          1   Local timer interrupts\n",
            "SPU:          0          1   Spurious interrupts\n",
            "RES:          0          0   Rescheduling interrupts\n",
            "CAL:          0          1   Function call interrupts\n",
            "TLB:          0          0   TLB shootdowns\n",
            "ERR:          3\n",
        );
        assert_eq!(text, expected);
    }
}
