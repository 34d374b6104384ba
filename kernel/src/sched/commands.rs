//! Shell commands of the scheduler: `ps` (tasks with state, policy, priority, CPU, times and switches), `nice`, `chrt` and `taskset`.

use core::fmt::Write;

use super::balance::CpuMask;
use super::policy::{Policy, SchedParams};
use super::task::Task;
use crate::shell::{Arguments, CommandError, CommandResult};

crate::shell_command!(PS, "ps", "list tasks: id, name, state, policy/priority, CPU, times, switches", ps);
crate::shell_command!(NICE, "nice", "set a task's nice value: nice -n NICE ID", nice);
crate::shell_command!(TASKSET, "taskset", "show or set a task's CPUs: taskset -p [MASK] ID | taskset -cp [LIST] ID", taskset);
crate::shell_command!(CHRT, "chrt", "show or set policy and priority: chrt -p ID | chrt -f|-r|-o PRIORITY ID", chrt);

fn write_time(out: &mut dyn Write, nanoseconds: u64) {
    let centiseconds = nanoseconds / 10_000_000;
    let _ = write!(out, "{:>4}:{:02}.{:02}", centiseconds / 6000, centiseconds / 100 % 60, centiseconds % 100);
}

/// Writes one `ps` line.
pub fn write_task_line(out: &mut dyn Write, task: &Task) {
    let params = task.params();
    let priority = if params.policy.is_real_time() { alloc::format!("{}", params.rt_priority) } else { alloc::format!("{}", params.nice) };
    let _ = write!(
        out,
        "{:>5} {:>5} {} {:<3} {:>4} {:>3} ",
        task.id(),
        task.parent(),
        task.state().letter(),
        params.policy.class_abbreviation(),
        priority,
        task.cpu()
    );
    write_time(out, task.utime());
    let _ = write!(out, " ");
    write_time(out, task.stime());
    let _ = writeln!(out, " {:>7} {:>7} {}", task.nvcsw(), task.nivcsw(), task.name());
}

fn ps(arguments: &Arguments<'_>, out: &mut dyn Write) -> CommandResult {
    if arguments.len() > 1 {
        return Err(CommandError::Usage("ps"));
    }
    let _ = writeln!(out, "  PID  PPID S CLS  PRI CPU     UTIME     STIME   NVCSW  NIVCSW COMMAND");
    super::for_each_task(|task| write_task_line(out, task));
    Ok(())
}

fn find(id: &str) -> Result<super::TaskRef, CommandError> {
    let id: u64 = id.parse().map_err(|_| CommandError::Failed("not a task id"))?;
    super::find_task(id).ok_or(CommandError::NotFound)
}

fn nice(arguments: &Arguments<'_>, _out: &mut dyn Write) -> CommandResult {
    const USAGE: &str = "nice -n NICE ID";
    let [_, "-n", value, id] = arguments else { return Err(CommandError::Usage(USAGE)) };
    let value: i8 = value.parse().map_err(|_| CommandError::Usage(USAGE))?;
    let task = find(id)?;
    let mut params = task.normal_params();
    if params.policy.is_real_time() {
        return Err(CommandError::Failed("nice applies to the fair class only (see chrt)"));
    }
    params.nice = value;
    super::set_params(&task, params).map_err(|_| CommandError::Failed("nice must be -20..19"))
}

fn chrt(arguments: &Arguments<'_>, out: &mut dyn Write) -> CommandResult {
    const USAGE: &str = "chrt -p ID | chrt -f|-r|-o PRIORITY ID";
    match arguments {
        [_, "-p", id] => {
            let task = find(id)?;
            let params = task.params();
            let _ = writeln!(out, "pid {}'s current scheduling policy: SCHED_{}", task.id(), params.policy.name());
            let _ = writeln!(out, "pid {}'s current scheduling priority: {}", task.id(), params.rt_priority);
            Ok(())
        }
        [_, flag, priority, id] => {
            let policy = match *flag {
                "-f" => Policy::Fifo,
                "-r" => Policy::RoundRobin,
                "-o" => Policy::Normal,
                _ => return Err(CommandError::Usage(USAGE)),
            };
            let priority: u8 = priority.parse().map_err(|_| CommandError::Usage(USAGE))?;
            let task = find(id)?;
            let nice = task.normal_params().nice;
            let params = SchedParams { policy, rt_priority: priority, nice };
            super::set_params(&task, params).map_err(|_| CommandError::Failed("priority must be 1..99 for -f/-r and 0 for -o"))
        }
        _ => Err(CommandError::Usage(USAGE)),
    }
}

/// Parses a hexadecimal CPU mask (`f`, `0x5`), as `taskset` takes it.
pub fn parse_mask(text: &str) -> Option<CpuMask> {
    let digits = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")).unwrap_or(text);
    u64::from_str_radix(digits, 16).ok().map(CpuMask)
}

/// Parses a CPU list (`0,2-3`), as `taskset -c` takes it.
pub fn parse_list(text: &str) -> Option<CpuMask> {
    let mut bits = 0u64;
    for part in text.split(',') {
        let (first, last) = match part.split_once('-') {
            Some((first, last)) => (first.parse::<usize>().ok()?, last.parse::<usize>().ok()?),
            None => {
                let cpu = part.parse::<usize>().ok()?;
                (cpu, cpu)
            }
        };
        if first > last || last >= super::balance::MAX_CPUS {
            return None;
        }
        for cpu in first..=last {
            bits |= 1 << cpu;
        }
    }
    Some(CpuMask(bits))
}

/// Writes a mask as a CPU list (`0-3`, `0,2`), as `taskset -c` prints it.
pub fn write_list(out: &mut dyn Write, mask: CpuMask) {
    let mut first = true;
    let mut cpu = 0;
    while cpu < super::balance::MAX_CPUS {
        if !mask.contains(cpu) {
            cpu += 1;
            continue;
        }
        let start = cpu;
        while cpu + 1 < super::balance::MAX_CPUS && mask.contains(cpu + 1) {
            cpu += 1;
        }
        let separator = if first { "" } else { "," };
        let _ = if start == cpu { write!(out, "{}{}", separator, start) } else { write!(out, "{}{}-{}", separator, start, cpu) };
        first = false;
        cpu += 1;
    }
}

fn possible_cpus() -> usize {
    crate::try_platform().map_or(1, |platform| platform.possible_cpus() as usize).clamp(1, super::MAX_SCHED_CPUS)
}

/// Writes `taskset`'s line for a mask, limited to the first `possible` CPUs.
fn write_affinity(out: &mut dyn Write, id: u64, which: &str, mask: CpuMask, as_list: bool, possible: usize) {
    let mask = mask.within(possible);
    if as_list {
        let _ = write!(out, "pid {}'s {} affinity list: ", id, which);
        write_list(out, mask);
        let _ = writeln!(out);
    } else {
        let _ = writeln!(out, "pid {}'s {} affinity mask: {:x}", id, which, mask.0);
    }
}

fn taskset(arguments: &Arguments<'_>, out: &mut dyn Write) -> CommandResult {
    const USAGE: &str = "taskset -p [MASK] ID | taskset -cp [LIST] ID";
    let (as_list, rest) = match arguments {
        [_, "-p", rest @ ..] => (false, rest),
        [_, "-cp" | "-pc", rest @ ..] | [_, "-c", "-p", rest @ ..] => (true, rest),
        _ => return Err(CommandError::Usage(USAGE)),
    };
    let (new_mask, id) = match rest {
        [id] => (None, id),
        [mask, id] => {
            let parsed = if as_list { parse_list(mask) } else { parse_mask(mask) };
            (Some(parsed.ok_or(CommandError::Failed(if as_list { "not a CPU list" } else { "not a hexadecimal CPU mask" }))?), id)
        }
        _ => return Err(CommandError::Usage(USAGE)),
    };
    let task = find(id)?;
    write_affinity(out, task.id(), "current", task.affinity(), as_list, possible_cpus());
    if let Some(mask) = new_mask {
        super::set_affinity(&task, mask).map_err(|error| match error {
            super::AffinityError::NoAllowedCpu => CommandError::Failed("the mask holds no online CPU"),
            super::AffinityError::IdleTask => CommandError::Failed("an idle task stays on its CPU"),
        })?;
        write_affinity(out, task.id(), "new", task.affinity(), as_list, possible_cpus());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_lines_show_the_columns() {
        let task = Task::new(42, "worker", 1, SchedParams::real_time(Policy::Fifo, 50), None, 0);
        let mut out = alloc::string::String::new();
        write_task_line(&mut out, &task);
        assert_eq!(out, "   42     1 R FF    50   0    0:00.00    0:00.00       0       0 worker\n");
    }

    #[test]
    fn bad_arguments_are_usage_errors() {
        let mut out = alloc::string::String::new();
        assert_eq!(nice(&["nice", "5"], &mut out), Err(CommandError::Usage("nice -n NICE ID")));
        assert!(matches!(chrt(&["chrt", "-x", "1", "2"], &mut out), Err(CommandError::Usage(_))));
        assert_eq!(chrt(&["chrt", "-p", "99999"], &mut out), Err(CommandError::NotFound));
        assert!(matches!(taskset(&["taskset", "5"], &mut out), Err(CommandError::Usage(_))));
        assert!(matches!(taskset(&["taskset", "-p", "xyz", "1"], &mut out), Err(CommandError::Failed(_))));
        assert!(matches!(taskset(&["taskset", "-cp", "3-1", "1"], &mut out), Err(CommandError::Failed(_))));
        assert_eq!(taskset(&["taskset", "-p", "99999"], &mut out), Err(CommandError::NotFound));
    }

    #[test]
    fn cpu_masks_and_lists_parse_and_print_as_taskset_does() {
        assert_eq!(parse_mask("f"), Some(CpuMask(0xf)));
        assert_eq!(parse_mask("0x5"), Some(CpuMask(5)));
        assert_eq!(parse_mask("g"), None);
        assert_eq!(parse_list("0,2-3"), Some(CpuMask(0b1101)));
        assert_eq!(parse_list("1"), Some(CpuMask(0b10)));
        assert_eq!(parse_list("2-1"), None);
        assert_eq!(parse_list("64"), None);
        assert_eq!(parse_list(""), None);
        let mut out = alloc::string::String::new();
        write_list(&mut out, CpuMask(0b1101_0111));
        assert_eq!(out, "0-2,4,6-7");
        let mut out = alloc::string::String::new();
        write_affinity(&mut out, 7, "current", CpuMask::ALL, false, 2);
        write_affinity(&mut out, 7, "new", CpuMask(0x2), true, 2);
        assert_eq!(out, "pid 7's current affinity mask: 3\npid 7's new affinity list: 1\n");
    }
}
