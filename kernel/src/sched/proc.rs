//! The scheduler's `/proc` files in Linux's formats: `loadavg` (with Linux's fixed-point load averages), `uptime` (idle time summed over CPUs), `stat`, and each task's `/proc/<id>/status` and `/proc/<id>/stat`.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, Ordering};

use super::core::{cpu_times, CpuTimes, MAX_SCHED_CPUS};
use super::policy::Policy;
use super::task::{Task, TaskState};

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
    writeln!(out, "btime {}", crate::time::boot_time_seconds())?;
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

/// The state as `/proc/<id>/status` spells it.
fn state_description(state: TaskState) -> &'static str {
    match state {
        TaskState::Running => "R (running)",
        TaskState::Interruptible => "S (sleeping)",
        TaskState::Uninterruptible => "D (disk sleep)",
        TaskState::Dead => "Z (zombie)",
        TaskState::Idle => "I (idle)",
    }
}

/// Writes a CPU set as a range list (`0-3`, `0,2-3`).
fn write_cpu_list(out: &mut dyn Write, cpus: &[bool]) -> fmt::Result {
    let mut first = true;
    let mut index = 0;
    while index < cpus.len() {
        if !cpus[index] {
            index += 1;
            continue;
        }
        let start = index;
        while index + 1 < cpus.len() && cpus[index + 1] {
            index += 1;
        }
        if !first {
            out.write_char(',')?;
        }
        first = false;
        if start == index {
            write!(out, "{}", start)?;
        } else {
            write!(out, "{}-{}", start, index)?;
        }
        index += 1;
    }
    Ok(())
}

/// Writes `/proc/<id>/status` for `task` on a machine with `possible_cpus` CPUs: Linux's
/// field names and order, for the fields a kernel thread has.
pub fn write_task_status(out: &mut dyn Write, task: &Task, possible_cpus: usize) -> fmt::Result {
    let id = task.id();
    writeln!(out, "Name:\t{}", task.name())?;
    writeln!(out, "Umask:\t0022")?;
    writeln!(out, "State:\t{}", state_description(task.state()))?;
    writeln!(out, "Tgid:\t{}", id)?;
    writeln!(out, "Ngid:\t0")?;
    writeln!(out, "Pid:\t{}", id)?;
    writeln!(out, "PPid:\t{}", task.parent())?;
    writeln!(out, "TracerPid:\t0")?;
    writeln!(out, "Uid:\t0\t0\t0\t0")?;
    writeln!(out, "Gid:\t0\t0\t0\t0")?;
    writeln!(out, "FDSize:\t0")?;
    writeln!(out, "Groups:\t")?;
    writeln!(out, "NStgid:\t{}", id)?;
    writeln!(out, "NSpid:\t{}", id)?;
    writeln!(out, "NSpgid:\t0")?;
    writeln!(out, "NSsid:\t0")?;
    writeln!(out, "Kthread:\t1")?;
    writeln!(out, "Threads:\t1")?;
    writeln!(out, "SigQ:\t0/0")?;
    for name in ["SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt"] {
        writeln!(out, "{}:\t0000000000000000", name)?;
    }
    let possible_cpus = possible_cpus.clamp(1, MAX_SCHED_CPUS);
    let allowed: alloc::vec::Vec<bool> = (0..possible_cpus).map(|cpu| task.affinity().contains(cpu)).collect();
    let mask = allowed.iter().enumerate().filter(|(_, &allowed)| allowed).fold(0u64, |mask, (cpu, _)| mask | 1 << cpu);
    writeln!(out, "Cpus_allowed:\t{:x}", mask)?;
    write!(out, "Cpus_allowed_list:\t")?;
    write_cpu_list(out, &allowed)?;
    writeln!(out)?;
    writeln!(out, "Mems_allowed:\t1")?;
    writeln!(out, "Mems_allowed_list:\t0")?;
    writeln!(out, "voluntary_ctxt_switches:\t{}", task.nvcsw())?;
    writeln!(out, "nonvoluntary_ctxt_switches:\t{}", task.nivcsw())
}

/// Linux's `PF_KTHREAD` task flag.
const PF_KTHREAD: u32 = 0x0020_0000;
/// `SIGCHLD`, the exit signal kernel threads report.
const SIGCHLD: u32 = 17;

/// Writes `/proc/<id>/stat`: Linux's 52 fields in order, 0 for those that do not apply to
/// a kernel thread (memory, signals, process groups).
pub fn write_task_stat(out: &mut dyn Write, task: &Task) -> fmt::Result {
    let params = task.params();
    let (priority, nice, policy) = match params.policy {
        Policy::Normal => (20 + i64::from(params.nice), i64::from(params.nice), 0),
        Policy::Fifo => (-1 - i64::from(params.rt_priority), 0, 1),
        Policy::RoundRobin => (-1 - i64::from(params.rt_priority), 0, 2),
    };
    let exit_code = if task.state() == TaskState::Dead { (task.exit_value() as u64 & 0xff) << 8 } else { 0 };
    // pid (comm) state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt
    write!(out, "{} ({}) {} {} 0 0 0 -1 {} 0 0 0 0 ", task.id(), task.name(), task.state().letter(), task.parent(), PF_KTHREAD)?;
    // utime stime cutime cstime priority nice num_threads itrealvalue starttime vsize rss rsslim
    write!(
        out,
        "{} {} 0 0 {} {} 1 0 {} 0 0 {} ",
        to_user_ticks(task.utime()),
        to_user_ticks(task.stime()),
        priority,
        nice,
        to_user_ticks(task.start_time()),
        u64::MAX
    )?;
    // startcode endcode startstack kstkesp kstkeip signal blocked sigignore sigcatch wchan
    // nswap cnswap exit_signal processor rt_priority policy delayacct_blkio_ticks
    // guest_time cguest_time start_data end_data start_brk arg_start arg_end env_start
    // env_end exit_code
    writeln!(
        out,
        "0 0 0 0 0 0 0 0 0 0 0 0 {} {} {} {} 0 0 0 0 0 0 0 0 0 0 {}",
        SIGCHLD,
        task.cpu(),
        if params.policy.is_real_time() { params.rt_priority } else { 0 },
        policy,
        exit_code
    )
}

fn possible_cpus() -> usize {
    crate::try_platform().map_or(1, |platform| platform.possible_cpus() as usize)
}

/// Whether task `id` gets a `/proc/<id>/` directory: every task but the idle tasks, which
/// Linux does not list either.
fn has_directory(task: &Task) -> bool {
    task.state() != TaskState::Idle
}

fn for_each_task_id(visit: &mut dyn FnMut(u64)) {
    let mut ids = alloc::vec::Vec::new();
    super::for_each_task(|task| {
        if has_directory(task) {
            ids.push(task.id());
        }
    });
    ids.sort_unstable();
    ids.into_iter().for_each(visit);
}

fn task_exists(id: u64) -> bool {
    super::find_task(id).is_some_and(|task| has_directory(&task))
}

fn current_task_id() -> Option<u64> {
    super::current_id().filter(|&id| task_exists(id))
}

fn show_task_status(id: u64, out: &mut dyn Write) -> Option<fmt::Result> {
    super::find_task(id).map(|task| write_task_status(out, &task, possible_cpus()))
}

fn show_task_stat(id: u64, out: &mut dyn Write) -> Option<fmt::Result> {
    super::find_task(id).map(|task| write_task_stat(out, &task))
}

/// The files of each `/proc/<id>/` directory.
pub const TASK_FILES: [(&str, crate::fs::procfs::TaskShowFunction); 2] = [("status", show_task_status), ("stat", show_task_stat)];

/// Registers `loadavg`, `uptime`, `stat` and the per-task directories.
pub fn register_proc_files() {
    crate::fs::procfs::register_task_directories(crate::fs::procfs::TaskDirectories {
        for_each_id: for_each_task_id,
        exists: task_exists,
        current: current_task_id,
        files: &TASK_FILES,
    });
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

crate::ktest!(
    fn task_directories_follow_the_task_list() {
        use core::sync::atomic::AtomicBool;
        static RELEASE: AtomicBool = AtomicBool::new(false);
        crate::kassert!(crate::fs::init_root().is_ok(), "init_root failed");
        let Some(vfs) = crate::fs::vfs() else { return Err(crate::ktest::TestFailure::new(file!(), line!(), format_args!("no VFS"))) };
        let Some(me) = super::current_id() else {
            return Err(crate::ktest::TestFailure::new(file!(), line!(), format_args!("no current task")));
        };
        let myself = alloc::format!("{}", me);
        crate::kassert_eq!(vfs.readlink(None, "/proc/self").ok(), Some(myself.clone()));
        let listed = |id: &str| vfs.read_directory(None, "/proc").unwrap_or_default().iter().any(|entry| entry.name == id);
        crate::kassert!(listed(&myself), "/proc does not list the running task {}", me);
        let status = vfs.read_to_end(None, "/proc/self/status").unwrap_or_default();
        let status = alloc::string::String::from_utf8_lossy(&status).into_owned();
        crate::kassert!(status.contains(&alloc::format!("\nPid:\t{}\n", me)) && status.contains("\nState:\tR (running)\n"), "{}", status);

        RELEASE.store(false, Ordering::SeqCst);
        let Ok(handle) = super::spawn("proc-probe", || {
            while !RELEASE.load(Ordering::SeqCst) {
                super::sleep(core::time::Duration::from_millis(1));
            }
            0
        }) else {
            return Err(crate::ktest::TestFailure::new(file!(), line!(), format_args!("cannot spawn")));
        };
        let id = alloc::format!("{}", handle.task().id());
        crate::kassert!(listed(&id), "/proc does not list the new task {}", id);
        let status = vfs.read_to_end(None, &alloc::format!("/proc/{}/status", id)).unwrap_or_default();
        crate::kassert!(status.starts_with(b"Name:\tproc-probe\n"), "{:?}", alloc::string::String::from_utf8_lossy(&status));
        let stat = vfs.read_to_end(None, &alloc::format!("/proc/{}/stat", id)).unwrap_or_default();
        let stat = alloc::string::String::from_utf8_lossy(&stat).into_owned();
        crate::kassert!(stat.starts_with(&alloc::format!("{} (proc-probe) ", id)) && stat.split_whitespace().count() == 52, "{}", stat);
        RELEASE.store(true, Ordering::SeqCst);
        handle.join();
        // The exited task leaves the task list when its CPU switches away from it.
        let mut gone = false;
        for _ in 0..200 {
            if vfs.stat(None, &alloc::format!("/proc/{}", id)).is_err() && !listed(&id) {
                gone = true;
                break;
            }
            super::sleep(core::time::Duration::from_millis(5));
        }
        crate::kassert!(gone, "/proc/{} outlived its task", id);
        Ok(())
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_status_and_stat_use_linux_fields() {
        use crate::sched::policy::SchedParams;
        let task = Task::new(42, "worker", 3, SchedParams::normal(-5), None, 1_500_000_000);
        task.set_affinity(crate::sched::CpuMask(0b1101));
        let mut status = String::new();
        write_task_status(&mut status, &task, 4).unwrap();
        for line in [
            "Name:\tworker\n",
            "State:\tR (running)\n",
            "Tgid:\t42\n",
            "Pid:\t42\n",
            "PPid:\t3\n",
            "Cpus_allowed:\td\n",
            "Cpus_allowed_list:\t0,2-3\n",
            "voluntary_ctxt_switches:\t0\n",
            "nonvoluntary_ctxt_switches:\t0\n",
        ] {
            assert!(status.contains(line), "{line:?} missing from\n{status}");
        }
        assert!(status.starts_with("Name:\tworker\nUmask:"), "{status}");
        let mut stat = String::new();
        write_task_stat(&mut stat, &task).unwrap();
        let fields: Vec<&str> = stat.split_whitespace().collect();
        assert_eq!(fields.len(), 52, "{stat}");
        assert_eq!(&fields[..4], ["42", "(worker)", "R", "3"]);
        assert_eq!(fields[17], "15", "priority = 20 + nice");
        assert_eq!(fields[18], "-5", "nice");
        assert_eq!(fields[21], "150", "start time in USER_HZ ticks");
        assert_eq!(fields[40], "0", "SCHED_NORMAL");

        let real_time = Task::new(9, "irq/5", 2, SchedParams::real_time(Policy::Fifo, 50), None, 0);
        stat.clear();
        write_task_stat(&mut stat, &real_time).unwrap();
        let fields: Vec<&str> = stat.split_whitespace().collect();
        assert_eq!((fields[17], fields[18], fields[39], fields[40]), ("-51", "0", "50", "1"));
        let mut list = String::new();
        write_cpu_list(&mut list, &[true, true, true, true]).unwrap();
        assert_eq!(list, "0-3");
    }

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
