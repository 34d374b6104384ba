//! Shell commands of the scheduler: `ps` (tasks with state, policy, priority, CPU, times and switches), `nice` and `chrt`.

use core::fmt::Write;

use super::policy::{Policy, SchedParams};
use super::task::Task;
use crate::shell::{Arguments, CommandError, CommandResult};

crate::shell_command!(PS, "ps", "list tasks: id, name, state, policy/priority, CPU, times, switches", ps);
crate::shell_command!(NICE, "nice", "set a task's nice value: nice -n NICE ID", nice);
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

fn find(id: &str) -> Result<alloc::sync::Arc<Task>, CommandError> {
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
    }
}
