//! The scheduler's `/proc` files in Linux's formats: `loadavg` (with Linux's fixed-point load averages), `uptime` (idle time summed over CPUs) and `stat`.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, Ordering};

use super::core::{cpu_times, CpuTimes, MAX_SCHED_CPUS};
use super::task::TaskState;

/// Fixed-point shift of the load averages (Linux's `FSHIFT`).
pub const FSHIFT: u32 = 11;
/// 1.0 in fixed point.
pub const FIXED_1: u64 = 1 << FSHIFT;
/// `FIXED_1 / exp(5 s / 1 min)`, `/ 5 min`, `/ 15 min` (Linux's `EXP_1`, `EXP_5`, `EXP_15`).
pub const EXP: [u64; 3] = [1884, 2014, 2037];
/// Sampling period of the load averages (Linux's `LOAD_FREQ`, 5 s).
pub const LOAD_FREQUENCY_NANOSECONDS: u64 = 5_000_000_000;

/// One step of Linux's `calc_load`: decays `load` towards `active` (both fixed point).
pub fn calc_load(load: u64, exp: u64, active: u64) -> u64 {
    let mut new_load = load * exp + active * (FIXED_1 - exp);
    if active >= load {
        new_load += FIXED_1 - 1;
    }
    new_load / FIXED_1
}

/// Formats a fixed-point load as `X.YY` the way `/proc/loadavg` does.
pub fn write_load(out: &mut dyn Write, load: u64) -> fmt::Result {
    let rounded = load + FIXED_1 / 200;
    write!(out, "{}.{:02}", rounded >> FSHIFT, ((rounded & (FIXED_1 - 1)) * 100) >> FSHIFT)
}

static AVENRUN: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];
static NEXT_SAMPLE: AtomicU64 = AtomicU64::new(LOAD_FREQUENCY_NANOSECONDS);

/// Samples the number of active tasks every 5 s (called from the tick on the boot CPU).
pub fn sample_load(now: u64) {
    let next = NEXT_SAMPLE.load(Ordering::Relaxed);
    if now < next || NEXT_SAMPLE.compare_exchange(next, next + LOAD_FREQUENCY_NANOSECONDS, Ordering::AcqRel, Ordering::Relaxed).is_err() {
        return;
    }
    let (running, blocked) = task_counts();
    let active = (running + blocked) as u64 * FIXED_1;
    for (average, exp) in AVENRUN.iter().zip(EXP) {
        average.store(calc_load(average.load(Ordering::Relaxed), exp, active), Ordering::Relaxed);
    }
}

/// Runnable tasks (without idle tasks) and tasks in uninterruptible sleep.
fn task_counts() -> (usize, usize) {
    let mut running = 0;
    let mut blocked = 0;
    for cpu in 0..MAX_SCHED_CPUS {
        if let Some(times) = cpu_times(cpu) {
            running += times.nr_running;
        }
    }
    super::for_each_task(|task| {
        if task.state() == TaskState::Uninterruptible {
            blocked += 1;
        }
    });
    (running, blocked)
}

fn show_loadavg(out: &mut dyn Write) -> fmt::Result {
    for average in &AVENRUN {
        write_load(out, average.load(Ordering::Relaxed))?;
        out.write_char(' ')?;
    }
    let (running, _) = task_counts();
    let mut total = 0;
    let mut last = 0;
    super::for_each_task(|task| {
        if task.state() != TaskState::Idle {
            total += 1;
        }
        last = last.max(task.id());
    });
    writeln!(out, "{}/{} {}", running, total, last)
}

fn online_cpus() -> usize {
    crate::try_platform().map_or(1, |platform| platform.cpu().online_count() as usize).clamp(1, MAX_SCHED_CPUS)
}

/// Idle nanoseconds of `cpu`: the scheduler's count on CPUs it runs, else all of uptime.
fn idle_nanoseconds(cpu: usize, uptime: u64) -> u64 {
    cpu_times(cpu).map_or(uptime, |times| times.idle.min(uptime))
}

fn show_uptime(out: &mut dyn Write) -> fmt::Result {
    let uptime = crate::time::since_boot_nanoseconds();
    let idle: u64 = (0..online_cpus()).map(|cpu| idle_nanoseconds(cpu, uptime)).sum();
    writeln!(out, "{}.{:02} {}.{:02}", uptime / 1_000_000_000, uptime / 10_000_000 % 100, idle / 1_000_000_000, idle / 10_000_000 % 100)
}

/// Clock ticks per second in `/proc/stat` (Linux's `USER_HZ`).
pub const USER_HZ: u64 = 100;

fn to_user_ticks(nanoseconds: u64) -> u64 {
    nanoseconds / (1_000_000_000 / USER_HZ)
}

/// Writes a `cpu` line: user nice system idle iowait irq softirq steal guest guest_nice.
fn write_cpu_line(out: &mut dyn Write, label: &str, system: u64, idle: u64) -> fmt::Result {
    writeln!(out, "{} 0 0 {} {} 0 0 0 0 0 0", label, to_user_ticks(system), to_user_ticks(idle))
}

fn show_stat(out: &mut dyn Write) -> fmt::Result {
    let uptime = crate::time::since_boot_nanoseconds();
    let cpus = online_cpus();
    let idle: alloc::vec::Vec<u64> = (0..cpus).map(|cpu| idle_nanoseconds(cpu, uptime)).collect();
    let total_idle: u64 = idle.iter().sum();
    write!(out, "cpu ")?;
    write_cpu_line(out, "", uptime * cpus as u64 - total_idle, total_idle)?;
    for (cpu, &idle) in idle.iter().enumerate() {
        write_cpu_line(out, &alloc::format!("cpu{}", cpu), uptime - idle, idle)?;
    }
    let highest = (0..crate::irq::MAX_IRQ_NUMBER).rev().find(|&number| crate::irq::descriptor(number).is_some());
    let per_number = |number: u32| (0..cpus).map(|cpu| crate::irq::count(number, cpu)).sum::<u64>();
    let total: u64 = highest.map_or(0, |highest| (0..=highest).map(per_number).sum());
    write!(out, "intr {}", total)?;
    if let Some(highest) = highest {
        for number in 0..=highest {
            write!(out, " {}", per_number(number))?;
        }
    }
    writeln!(out)?;
    let switches: u64 = (0..MAX_SCHED_CPUS).filter_map(cpu_times).map(|times: CpuTimes| times.context_switches).sum();
    writeln!(out, "ctxt {}", switches)?;
    writeln!(out, "btime 0")?;
    writeln!(out, "processes {}", super::forks())?;
    let (running, blocked) = task_counts();
    writeln!(out, "procs_running {}", running)?;
    writeln!(out, "procs_blocked {}", blocked)?;
    let softirqs: alloc::vec::Vec<[u64; crate::softirq::NR_SOFTIRQS]> =
        (0..cpus).map(|cpu| crate::softirq::statistics(cpu).counts).collect();
    let per_vector: alloc::vec::Vec<u64> =
        (0..crate::softirq::NR_SOFTIRQS).map(|vector| softirqs.iter().map(|counts| counts[vector]).sum()).collect();
    write!(out, "softirq {}", per_vector.iter().sum::<u64>())?;
    for count in per_vector {
        write!(out, " {}", count)?;
    }
    writeln!(out)
}

/// Registers `loadavg`, `uptime` and `stat`.
pub fn register_proc_files() {
    let files: [(&'static str, crate::fs::procfs::ShowFunction); 3] =
        [("loadavg", show_loadavg), ("uptime", show_uptime), ("stat", show_stat)];
    for (name, show) in files {
        if let Err(error) = crate::fs::procfs::register(name, show) {
            log::warn!("sched: cannot register /proc/{}: {:?}", name, error);
        }
    }
}

crate::ktest!(
    fn proc_files_have_linux_formats() {
        let mut text = alloc::string::String::new();
        crate::kassert!(crate::fs::procfs::read("/proc/uptime", &mut text).is_ok());
        let fields: alloc::vec::Vec<&str> = text.split_whitespace().collect();
        crate::kassert!(fields.len() == 2 && fields.iter().all(|field| field.contains('.')), "uptime: {:?}", text);
        text.clear();
        crate::kassert!(crate::fs::procfs::read("/proc/loadavg", &mut text).is_ok());
        crate::kassert_eq!(text.split_whitespace().count(), 5);
        text.clear();
        crate::kassert!(crate::fs::procfs::read("/proc/stat", &mut text).is_ok());
        for key in ["cpu ", "cpu0 ", "intr ", "ctxt ", "btime ", "processes ", "procs_running ", "procs_blocked ", "softirq "] {
            crate::kassert!(text.lines().any(|line| line.starts_with(key)), "/proc/stat has no '{}' line", key);
        }
        let switches: u64 = text.lines().find_map(|line| line.strip_prefix("ctxt ")).and_then(|value| value.parse().ok()).unwrap_or(0);
        crate::kassert!(switches > 0, "no context switch counted");
        Ok(())
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_average_follows_linux_decay() {
        let mut load = 0;
        for _ in 0..12 {
            load = calc_load(load, EXP[0], 2 * FIXED_1);
        }
        // One minute of two busy tasks: 2 * (1 - 1/e) = 1.26.
        let mut text = String::new();
        write_load(&mut text, load).unwrap();
        assert_eq!(text, "1.27");
        for _ in 0..100 {
            load = calc_load(load, EXP[0], 0);
        }
        text.clear();
        write_load(&mut text, load).unwrap();
        assert_eq!(text, "0.00");
        text.clear();
        write_load(&mut text, 3 * FIXED_1 + FIXED_1 / 4).unwrap();
        assert_eq!(text, "3.25");
    }
}
