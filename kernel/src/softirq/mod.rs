//! Softirqs and tasklets: interrupt work deferred to the end of the hardware interrupt, with a time and restart budget, overflowing to a per-CPU `ksoftirqd` thread (Linux's `kernel/softirq.c`).
//!
//! The ten vectors are Linux's, in its order. A vector is raised with [`raise_softirq`];
//! pending vectors run at interrupt exit ([`irq_exit`], called by the IRQ layer after
//! end-of-interrupt) with interrupts enabled and preemption disabled, lowest vector first.
//! Work raised again while running restarts the loop at most [`MAX_SOFTIRQ_RESTART`] times
//! and for at most [`MAX_SOFTIRQ_NANOSECONDS`]; what is left is handed to `ksoftirqd/N`, a
//! fair-class thread, so a flood cannot starve tasks. Raised outside interrupt context,
//! vectors are also run by `ksoftirqd`.

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::sched::{self, MAX_SCHED_CPUS};
use crate::sync::{IrqSpinLock, Once, WaitQueue};

/// Linux's softirq vectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Softirq {
    /// High-priority tasklets.
    Hi = 0,
    /// Timer-wheel expiry.
    Timer = 1,
    /// Network transmit.
    NetTx = 2,
    /// Network receive.
    NetRx = 3,
    /// Block-device completion.
    Block = 4,
    /// Interrupt polling.
    IrqPoll = 5,
    /// Normal tasklets.
    Tasklet = 6,
    /// Scheduler load balancing.
    Sched = 7,
    /// High-resolution timers.
    Hrtimer = 8,
    /// RCU callbacks.
    Rcu = 9,
}

/// Number of vectors.
pub const NR_SOFTIRQS: usize = 10;
/// Names as `/proc/softirqs` prints them.
pub const SOFTIRQ_NAMES: [&str; NR_SOFTIRQS] =
    ["HI", "TIMER", "NET_TX", "NET_RX", "BLOCK", "IRQ_POLL", "TASKLET", "SCHED", "HRTIMER", "RCU"];
/// Most passes over the pending vectors at one interrupt exit.
pub const MAX_SOFTIRQ_RESTART: u32 = 10;
/// Most time spent on softirqs at one interrupt exit (2 ms, Linux's `MAX_SOFTIRQ_TIME`).
pub const MAX_SOFTIRQ_NANOSECONDS: u64 = 2_000_000;

/// A softirq handler.
pub type SoftirqHandler = fn();

struct CpuSoftirqs {
    pending: AtomicU32,
    hardirq_depth: AtomicU32,
    in_softirq: AtomicBool,
    counts: [AtomicU64; NR_SOFTIRQS],
    /// Passes run at interrupt exit and by ksoftirqd.
    runs_at_irq_exit: AtomicU64,
    runs_in_ksoftirqd: AtomicU64,
    /// Times the budget ran out and work went to ksoftirqd.
    handed_to_ksoftirqd: AtomicU64,
    ksoftirqd: Once<Arc<WaitQueue>>,
}

impl CpuSoftirqs {
    const fn new() -> Self {
        CpuSoftirqs {
            pending: AtomicU32::new(0),
            hardirq_depth: AtomicU32::new(0),
            in_softirq: AtomicBool::new(false),
            counts: [const { AtomicU64::new(0) }; NR_SOFTIRQS],
            runs_at_irq_exit: AtomicU64::new(0),
            runs_in_ksoftirqd: AtomicU64::new(0),
            handed_to_ksoftirqd: AtomicU64::new(0),
            ksoftirqd: Once::new(),
        }
    }
}

static CPUS: [CpuSoftirqs; MAX_SCHED_CPUS] = [const { CpuSoftirqs::new() }; MAX_SCHED_CPUS];
static HANDLERS: [AtomicUsize; NR_SOFTIRQS] = [const { AtomicUsize::new(0) }; NR_SOFTIRQS];

fn this_cpu() -> &'static CpuSoftirqs {
    &CPUS[sched::this_cpu()]
}

/// Installs the handler of `vector` (Linux's `open_softirq`), replacing any earlier one.
pub fn open_softirq(vector: Softirq, handler: SoftirqHandler) {
    HANDLERS[vector as usize].store(handler as usize, Ordering::Release);
}

/// Removes the handler of `vector`; raising it then only counts.
pub fn close_softirq(vector: Softirq) {
    HANDLERS[vector as usize].store(0, Ordering::Release);
}

/// Marks `vector` pending on this CPU. From task context, wakes `ksoftirqd` to run it.
pub fn raise_softirq(vector: Softirq) {
    let cpu = this_cpu();
    cpu.pending.fetch_or(1 << vector as u32, Ordering::AcqRel);
    if !in_interrupt() {
        wake_ksoftirqd(cpu);
    }
}

/// Whether this CPU is in a hardware interrupt or running softirqs.
pub fn in_interrupt() -> bool {
    let cpu = this_cpu();
    cpu.hardirq_depth.load(Ordering::Relaxed) > 0 || cpu.in_softirq.load(Ordering::Relaxed)
}

/// Whether this CPU is in a hardware interrupt handler.
pub fn in_hardirq() -> bool {
    this_cpu().hardirq_depth.load(Ordering::Relaxed) > 0
}

/// Vectors pending on this CPU (bit N: vector N).
pub fn pending() -> u32 {
    this_cpu().pending.load(Ordering::Acquire)
}

fn wake_ksoftirqd(cpu: &CpuSoftirqs) {
    if let Some(queue) = cpu.ksoftirqd.get() {
        queue.wake_up();
    }
}

/// Interrupt entry bookkeeping (Linux's `irq_enter`), called by the IRQ layer.
pub fn irq_enter() {
    this_cpu().hardirq_depth.fetch_add(1, Ordering::Relaxed);
}

/// Interrupt exit (Linux's `irq_exit`): runs pending softirqs within the budget, then the
/// preemption point. Called by the IRQ layer after end-of-interrupt, interrupts masked.
pub fn irq_exit() {
    let cpu = this_cpu();
    let depth = cpu.hardirq_depth.fetch_sub(1, Ordering::Relaxed);
    if depth == 1 && !cpu.in_softirq.load(Ordering::Relaxed) && cpu.pending.load(Ordering::Acquire) != 0 {
        cpu.runs_at_irq_exit.fetch_add(1, Ordering::Relaxed);
        if run_pending(cpu, true) {
            cpu.handed_to_ksoftirqd.fetch_add(1, Ordering::Relaxed);
            wake_ksoftirqd(cpu);
        }
    }
    sched::preempt_schedule_irq();
}

/// Runs pending vectors (interrupts enabled around the handlers, preemption disabled);
/// with `budget`, stops after the restart or time budget. Returns whether work remains.
fn run_pending(cpu: &CpuSoftirqs, budget: bool) -> bool {
    let Some(platform) = crate::try_platform() else { return false };
    if cpu.in_softirq.swap(true, Ordering::Acquire) {
        return false;
    }
    sched::preempt_disable();
    let saved = platform.cpu().disable_interrupts();
    let started = crate::time::since_boot_nanoseconds();
    let mut passes = 0;
    let remaining = loop {
        let pending = cpu.pending.swap(0, Ordering::AcqRel);
        if pending == 0 {
            break false;
        }
        platform.cpu().enable_interrupts();
        for vector in 0..NR_SOFTIRQS {
            if pending & (1 << vector) == 0 {
                continue;
            }
            cpu.counts[vector].fetch_add(1, Ordering::Relaxed);
            let handler = HANDLERS[vector].load(Ordering::Acquire);
            if handler != 0 {
                // SAFETY: the only non-zero values stored are `SoftirqHandler` pointers
                // written by `open_softirq`.
                let handler: SoftirqHandler = unsafe { core::mem::transmute::<usize, SoftirqHandler>(handler) };
                handler();
            }
        }
        let _ = platform.cpu().disable_interrupts();
        passes += 1;
        let out_of_budget = passes >= MAX_SOFTIRQ_RESTART || crate::time::since_boot_nanoseconds() - started >= MAX_SOFTIRQ_NANOSECONDS;
        if budget && out_of_budget {
            break cpu.pending.load(Ordering::Acquire) != 0;
        }
    };
    platform.cpu().restore_interrupts(saved);
    cpu.in_softirq.store(false, Ordering::Release);
    sched::preempt_enable();
    remaining
}

fn ksoftirqd_main(cpu_index: usize) -> usize {
    let cpu = &CPUS[cpu_index];
    let queue = cpu.ksoftirqd.get().cloned().expect("ksoftirqd queue set before start");
    loop {
        queue.wait_event(|| cpu.pending.load(Ordering::Acquire) != 0);
        cpu.runs_in_ksoftirqd.fetch_add(1, Ordering::Relaxed);
        run_pending(cpu, true);
        sched::yield_now();
    }
}

/// Starts `ksoftirqd/N` for the calling CPU and installs the tasklet vectors.
pub fn init() {
    open_softirq(Softirq::Hi, run_high_tasklets);
    open_softirq(Softirq::Tasklet, run_tasklets);
    let index = sched::this_cpu();
    CPUS[index].ksoftirqd.call_once(|| Arc::new(WaitQueue::new()));
    let mut name = [0u8; 16];
    let name = format_cpu_name(&mut name, "ksoftirqd/", index);
    match sched::Builder::new(name).affinity(sched::CpuMask::only(index)).spawn(move || ksoftirqd_main(index)) {
        Ok(handle) => drop(handle),
        Err(error) => log::error!("softirq: cannot start ksoftirqd/{}: {:?}", index, error),
    }
}

fn format_cpu_name<'a>(buffer: &'a mut [u8; 16], prefix: &str, cpu: usize) -> &'a str {
    let mut writer = NameWriter { buffer, length: 0 };
    let _ = write!(writer, "{}{}", prefix, cpu);
    let length = writer.length;
    core::str::from_utf8(&buffer[..length]).unwrap_or("ksoftirqd")
}

struct NameWriter<'a> {
    buffer: &'a mut [u8; 16],
    length: usize,
}

impl Write for NameWriter<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let take = text.len().min(self.buffer.len() - self.length);
        self.buffer[self.length..self.length + take].copy_from_slice(&text.as_bytes()[..take]);
        self.length += take;
        Ok(())
    }
}

/// Counters of one CPU, for `/proc/softirqs`, `/proc/stat` and the tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SoftirqStatistics {
    /// Runs of each vector.
    pub counts: [u64; NR_SOFTIRQS],
    /// Passes started at interrupt exit.
    pub runs_at_irq_exit: u64,
    /// Passes run by ksoftirqd.
    pub runs_in_ksoftirqd: u64,
    /// Budget overflows handed to ksoftirqd.
    pub handed_to_ksoftirqd: u64,
}

/// The counters of `cpu`.
pub fn statistics(cpu: usize) -> SoftirqStatistics {
    let Some(cpu) = CPUS.get(cpu) else { return SoftirqStatistics::default() };
    SoftirqStatistics {
        counts: core::array::from_fn(|vector| cpu.counts[vector].load(Ordering::Relaxed)),
        runs_at_irq_exit: cpu.runs_at_irq_exit.load(Ordering::Relaxed),
        runs_in_ksoftirqd: cpu.runs_in_ksoftirqd.load(Ordering::Relaxed),
        handed_to_ksoftirqd: cpu.handed_to_ksoftirqd.load(Ordering::Relaxed),
    }
}

/// Writes `/proc/softirqs` for `cpus` CPUs in Linux's format: a header of CPU columns, then
/// one line per vector with its per-CPU counts.
pub fn write_proc_softirqs(out: &mut dyn Write, cpus: usize, counts: impl Fn(usize) -> [u64; NR_SOFTIRQS]) -> fmt::Result {
    write!(out, "{:20}", "")?;
    for cpu in 0..cpus {
        write!(out, "CPU{:<8}", cpu)?;
    }
    writeln!(out)?;
    let per_cpu: alloc::vec::Vec<[u64; NR_SOFTIRQS]> = (0..cpus).map(&counts).collect();
    for (vector, name) in SOFTIRQ_NAMES.iter().enumerate() {
        write!(out, "{:>12}:", name)?;
        for counts in &per_cpu {
            write!(out, " {:>10}", counts[vector])?;
        }
        writeln!(out)?;
    }
    Ok(())
}

fn show_softirqs(out: &mut dyn Write) -> fmt::Result {
    let cpus = crate::try_platform().map_or(1, |platform| platform.cpu().online_count() as usize).clamp(1, MAX_SCHED_CPUS);
    write_proc_softirqs(out, cpus, |cpu| statistics(cpu).counts)
}

/// Registers `/proc/softirqs`.
pub fn register_proc_files() {
    if let Err(error) = crate::fs::procfs::register("softirqs", show_softirqs) {
        log::warn!("softirq: cannot register /proc/softirqs: {:?}", error);
    }
}

/// A tasklet's function.
pub type TaskletFunction = fn(usize);

/// A deferred function run in softirq context (Linux's `tasklet_struct`): scheduling it
/// while it is pending does nothing; it never runs on two CPUs at once (a CPU finding it
/// running elsewhere requeues it); it can be disabled (runs are deferred) and killed.
pub struct Tasklet {
    function: TaskletFunction,
    data: usize,
    /// Bit 0: scheduled; bit 1: running.
    state: AtomicU32,
    disabled: AtomicU32,
    runs: AtomicU64,
}

const TASKLET_SCHEDULED: u32 = 1;
const TASKLET_RUNNING: u32 = 2;

static TASKLETS: IrqSpinLock<VecDeque<&'static Tasklet>> = IrqSpinLock::new(VecDeque::new());
static HIGH_TASKLETS: IrqSpinLock<VecDeque<&'static Tasklet>> = IrqSpinLock::new(VecDeque::new());

impl Tasklet {
    /// A tasklet calling `function(data)`.
    pub const fn new(function: TaskletFunction, data: usize) -> Self {
        Tasklet { function, data, state: AtomicU32::new(0), disabled: AtomicU32::new(0), runs: AtomicU64::new(0) }
    }

    /// Queues it on the TASKLET vector unless it is already scheduled (`tasklet_schedule`).
    pub fn schedule(&'static self) {
        self.schedule_on(&TASKLETS, Softirq::Tasklet);
    }

    /// Queues it on the HI vector (`tasklet_hi_schedule`).
    pub fn schedule_high(&'static self) {
        self.schedule_on(&HIGH_TASKLETS, Softirq::Hi);
    }

    fn schedule_on(&'static self, list: &IrqSpinLock<VecDeque<&'static Tasklet>>, vector: Softirq) {
        if self.state.fetch_or(TASKLET_SCHEDULED, Ordering::AcqRel) & TASKLET_SCHEDULED == 0 {
            list.lock().push_back(self);
            raise_softirq(vector);
        }
    }

    /// Defers runs until [`enable`](Self::enable) (nests).
    pub fn disable(&self) {
        self.disabled.fetch_add(1, Ordering::AcqRel);
        while self.state.load(Ordering::Acquire) & TASKLET_RUNNING != 0 {
            core::hint::spin_loop();
        }
    }

    /// Undoes one [`disable`](Self::disable).
    pub fn enable(&self) {
        self.disabled.fetch_sub(1, Ordering::AcqRel);
    }

    /// Waits until it is neither scheduled nor running (`tasklet_kill`); task context only.
    pub fn kill(&self) {
        while self.state.load(Ordering::Acquire) & (TASKLET_SCHEDULED | TASKLET_RUNNING) != 0 {
            sched::yield_now();
        }
    }

    /// Times it has run.
    pub fn runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }
}

fn run_tasklet_list(list: &IrqSpinLock<VecDeque<&'static Tasklet>>, vector: Softirq) {
    let batch: VecDeque<&'static Tasklet> = core::mem::take(&mut *list.lock());
    let mut requeue = false;
    for tasklet in batch {
        let running = tasklet.state.fetch_or(TASKLET_RUNNING, Ordering::AcqRel) & TASKLET_RUNNING != 0;
        if running || tasklet.disabled.load(Ordering::Acquire) > 0 {
            if !running {
                tasklet.state.fetch_and(!TASKLET_RUNNING, Ordering::AcqRel);
            }
            list.lock().push_back(tasklet);
            requeue = true;
            continue;
        }
        tasklet.state.fetch_and(!TASKLET_SCHEDULED, Ordering::AcqRel);
        (tasklet.function)(tasklet.data);
        tasklet.runs.fetch_add(1, Ordering::Relaxed);
        tasklet.state.fetch_and(!TASKLET_RUNNING, Ordering::AcqRel);
    }
    if requeue {
        this_cpu().pending.fetch_or(1 << vector as u32, Ordering::AcqRel);
    }
}

fn run_tasklets() {
    run_tasklet_list(&TASKLETS, Softirq::Tasklet);
}

fn run_high_tasklets() {
    run_tasklet_list(&HIGH_TASKLETS, Softirq::Hi);
}

mod ktests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_softirqs_has_linux_layout() {
        let mut out = alloc::string::String::new();
        write_proc_softirqs(&mut out, 2, |cpu| core::array::from_fn(|vector| (cpu * 100 + vector) as u64)).unwrap();
        let lines: alloc::vec::Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 11);
        assert_eq!(lines[0], "                    CPU0       CPU1       ");
        assert_eq!(lines[1], "          HI:          0        100");
        assert_eq!(lines[10], "         RCU:          9        109");
    }
}
