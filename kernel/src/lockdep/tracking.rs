//! The machine side of lock debugging: per-context held-lock stacks, the global dependency graph, the sleep check and the reports.

use core::cell::UnsafeCell;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use super::graph::{ClassKey, Graph, Outcome, Site, MAX_CLASSES, MAX_EDGES};
use super::{LockKind, Statistics};
use crate::sched::{self, MAX_SCHED_CPUS};

/// Most locks one context holds at once.
const MAX_HELD: usize = 24;

#[derive(Clone, Copy)]
struct Held {
    class: ClassKey,
    instance: usize,
    site: Site,
}

/// A context's held locks, innermost last. Touched only by the CPU running that context,
/// with interrupts masked (see `with_cpu`).
pub struct HeldStack {
    depth: UnsafeCell<usize>,
    entries: UnsafeCell<[Option<Held>; MAX_HELD]>,
}

// SAFETY: a stack is only read or written by the CPU currently running its context, with
// interrupts masked and the CPU's `busy` flag set, so accesses never overlap.
unsafe impl Sync for HeldStack {}
// SAFETY: as above; moving it moves plain data.
unsafe impl Send for HeldStack {}

impl HeldStack {
    pub const fn new() -> Self {
        HeldStack { depth: UnsafeCell::new(0), entries: UnsafeCell::new([None; MAX_HELD]) }
    }

    /// The held entries.
    ///
    /// # Safety
    /// The caller is the CPU running this context, inside `with_cpu`.
    unsafe fn held(&self) -> &[Option<Held>] {
        // SAFETY: per the contract nothing writes meanwhile.
        let (depth, entries) = unsafe { (*self.depth.get(), &*self.entries.get()) };
        &entries[..depth]
    }

    /// # Safety
    /// As for [`held`](Self::held).
    unsafe fn push(&self, held: Held) -> bool {
        // SAFETY: per the contract this is the only access.
        let (depth, entries) = unsafe { (&mut *self.depth.get(), &mut *self.entries.get()) };
        if *depth == MAX_HELD {
            return false;
        }
        entries[*depth] = Some(held);
        *depth += 1;
        true
    }

    /// Removes the innermost entry for `instance`; whether there was one.
    ///
    /// # Safety
    /// As for [`held`](Self::held).
    unsafe fn remove(&self, instance: usize) -> bool {
        // SAFETY: per the contract this is the only access.
        let (depth, entries) = unsafe { (&mut *self.depth.get(), &mut *self.entries.get()) };
        let Some(index) = entries[..*depth].iter().rposition(|held| held.is_some_and(|held| held.instance == instance)) else {
            return false;
        };
        entries.copy_within(index + 1..*depth, index);
        *depth -= 1;
        entries[*depth] = None;
        true
    }
}

struct CpuLockdep {
    /// Set while this CPU is inside lock debugging (its own reports take locks, untracked).
    busy: AtomicBool,
    /// The running task's stack; null until the first switch on this CPU (then `boot`).
    task: AtomicPtr<HeldStack>,
    boot: HeldStack,
    softirq: HeldStack,
    hardirq: HeldStack,
}

impl CpuLockdep {
    const fn new() -> Self {
        CpuLockdep {
            busy: AtomicBool::new(false),
            task: AtomicPtr::new(core::ptr::null_mut()),
            boot: HeldStack::new(),
            softirq: HeldStack::new(),
            hardirq: HeldStack::new(),
        }
    }

    /// The stack of the context running now.
    fn current(&self) -> &HeldStack {
        if crate::softirq::in_hardirq() {
            &self.hardirq
        } else if crate::softirq::in_interrupt() {
            &self.softirq
        } else {
            self.task_stack()
        }
    }

    fn task_stack(&self) -> &HeldStack {
        let task = self.task.load(Ordering::Acquire);
        if task.is_null() {
            &self.boot
        } else {
            // SAFETY: `switch_to` stores a pointer into the next task's `Task`, which the
            // CPU's scheduler state keeps alive while it is the current task.
            unsafe { &*task }
        }
    }
}

static ENABLED: AtomicBool = AtomicBool::new(false);
static PANIC_ON_REPORT: AtomicBool = AtomicBool::new(false);
static GRAPH: Graph = Graph::new();
static CPUS: [CpuLockdep; MAX_SCHED_CPUS] = [const { CpuLockdep::new() }; MAX_SCHED_CPUS];
static CIRCULAR_REPORTS: AtomicU64 = AtomicU64::new(0);
static SLEEP_REPORTS: AtomicU64 = AtomicU64::new(0);
/// Sites already reported for sleeping in atomic context (printed once each).
static SLEEP_SITES: [AtomicUsize; 64] = [const { AtomicUsize::new(0) }; 64];

pub fn init(command_line: &str) {
    let mut enabled = true;
    for word in command_line.split_ascii_whitespace() {
        match word {
            "lockdep=off" => enabled = false,
            "lockdep=panic" => PANIC_ON_REPORT.store(true, Ordering::Relaxed),
            _ => {}
        }
    }
    ENABLED.store(enabled, Ordering::Release);
    if enabled {
        log::info!(
            "lockdep: checking lock order and sleeping in atomic context ({} on a report)",
            if PANIC_ON_REPORT.load(Ordering::Relaxed) { "panic" } else { "warn" }
        );
    }
}

/// Runs `body` on this CPU's state with interrupts masked and the CPU marked busy; `None`
/// when checking is off or this CPU is already inside (its own report taking locks).
fn with_cpu<R>(body: impl FnOnce(&CpuLockdep) -> R) -> Option<R> {
    if !ENABLED.load(Ordering::Acquire) {
        return None;
    }
    let platform = crate::try_platform()?;
    let saved = platform.cpu().disable_interrupts();
    let cpu = &CPUS[sched::this_cpu()];
    let result = if cpu.busy.swap(true, Ordering::Acquire) {
        None
    } else {
        let result = body(cpu);
        cpu.busy.store(false, Ordering::Release);
        Some(result)
    };
    platform.cpu().restore_interrupts(saved);
    result
}

fn turn_off(reason: &str) {
    if ENABLED.swap(false, Ordering::AcqRel) {
        log::warn!("lockdep: {}; lock debugging turned off", reason);
    }
}

fn after_report() {
    if PANIC_ON_REPORT.load(Ordering::Relaxed) {
        panic!("lockdep: report with lockdep=panic");
    }
}

pub fn acquire(class_site: Site, kind: LockKind, instance: usize, trylock: bool, site: Site) {
    let class = ClassKey::new(class_site, kind);
    let reported = with_cpu(|cpu| {
        let stack = cpu.current();
        let mut reported = false;
        if !trylock {
            // SAFETY: this CPU runs the context, inside `with_cpu`.
            for held in unsafe { stack.held() }.iter().flatten() {
                match GRAPH.add(held.class, held.site, class, site) {
                    Outcome::Circular(circular) => {
                        CIRCULAR_REPORTS.fetch_add(1, Ordering::Relaxed);
                        // SAFETY: as above.
                        print_circular(&circular, unsafe { stack.held() });
                        reported = true;
                    }
                    Outcome::Full => {
                        turn_off("the class or dependency table is full");
                        return false;
                    }
                    Outcome::Known | Outcome::Added => {}
                }
            }
        }
        // SAFETY: as above.
        if !unsafe { stack.push(Held { class, instance, site }) } {
            turn_off("a context holds too many locks");
        }
        reported
    });
    if reported == Some(true) {
        after_report();
    }
}

pub fn release(instance: usize) {
    with_cpu(|cpu| {
        // A lock taken in one context and released in another (or taken before checking
        // started) is looked for everywhere this CPU knows, and forgotten if not found.
        for stack in [cpu.current(), cpu.task_stack(), &cpu.softirq, &cpu.hardirq, &cpu.boot] {
            // SAFETY: this CPU runs these contexts, inside `with_cpu`.
            if unsafe { stack.remove(instance) } {
                return;
            }
        }
    });
}

pub fn switch_to(next: &HeldStack) {
    if !ENABLED.load(Ordering::Acquire) {
        return;
    }
    CPUS[sched::this_cpu()].task.store(next as *const HeldStack as *mut HeldStack, Ordering::Release);
}

pub fn might_sleep(site: Site) {
    if !ENABLED.load(Ordering::Acquire) {
        return;
    }
    let Some(platform) = crate::try_platform() else { return };
    // Before the scheduler runs and in the idle tasks (ids below MAX_SCHED_CPUS, including
    // the boot context), the sleeping primitives spin instead of sleeping.
    let Some(task_id) = sched::current_id() else { return };
    if task_id < MAX_SCHED_CPUS as u64 {
        return;
    }
    let preempt_count = sched::preempt_count();
    let irqs_disabled = !platform.cpu().interrupts_enabled();
    let in_interrupt = crate::softirq::in_interrupt();
    if preempt_count == 0 && !irqs_disabled && !in_interrupt {
        return;
    }
    SLEEP_REPORTS.fetch_add(1, Ordering::Relaxed);
    let key = site as *const _ as usize;
    let first_time = !SLEEP_SITES.iter().any(|slot| slot.load(Ordering::Relaxed) == key)
        && SLEEP_SITES.iter().any(|slot| slot.compare_exchange(0, key, Ordering::AcqRel, Ordering::Relaxed).is_ok());
    if !first_time {
        return;
    }
    let printed = with_cpu(|cpu| {
        log::error!("BUG: sleeping function called from invalid context at {}", site);
        log::error!(
            "in_atomic(): {}, irqs_disabled(): {}, in_interrupt(): {}, pid: {}, name: {}",
            u32::from(preempt_count > 0),
            u32::from(irqs_disabled),
            u32::from(in_interrupt),
            task_id,
            TaskName
        );
        log::error!("preempt_count: {}, expected: 0", preempt_count);
        // SAFETY: this CPU runs the context, inside `with_cpu`.
        print_held(unsafe { cpu.current().held() });
    });
    if printed.is_some() {
        after_report();
    }
}

/// The current task's name, printed without allocating.
struct TaskName;

impl fmt::Display for TaskName {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        match sched::current() {
            Some(task) => out.write_str(task.name()),
            None => out.write_str("?"),
        }
    }
}

struct Class(ClassKey);

impl fmt::Display for Class {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(out, "{} created at {}", self.0.kind().name(), self.0.site())
    }
}

fn print_held(held: &[Option<Held>]) {
    let count = held.iter().flatten().count();
    log::error!("{} lock{} held by {}/{} on CPU {}:", count, if count == 1 { "" } else { "s" }, TaskName, TaskId, sched::this_cpu());
    for (index, held) in held.iter().flatten().enumerate() {
        log::error!(" #{}: ({}), acquired at {}", index, Class(held.class), held.site);
    }
}

struct TaskId;

impl fmt::Display for TaskId {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        match sched::current_id() {
            Some(id) => write!(out, "{}", id),
            None => out.write_str("?"),
        }
    }
}

fn print_circular(circular: &super::graph::Circular, held: &[Option<Held>]) {
    let new_order = &circular.new_order;
    log::error!("======================================================");
    log::error!("WARNING: possible circular locking dependency detected");
    log::error!("------------------------------------------------------");
    log::error!("{}/{} on CPU {} is trying to acquire lock:", TaskName, TaskId, sched::this_cpu());
    log::error!("  ({}), at {}", Class(new_order.to), new_order.to_site);
    log::error!("but already holds lock:");
    log::error!("  ({}), acquired at {}", Class(new_order.from), new_order.from_site);
    log::error!("which lock already depends on the new lock; the existing dependency chain, as first seen:");
    for (index, order) in circular.earlier_orders().enumerate() {
        log::error!(
            "-> #{}: ({}) acquired at {} while holding ({}) acquired at {}",
            index,
            Class(order.to),
            order.to_site,
            Class(order.from),
            order.from_site
        );
    }
    print_held(held);
}

pub fn statistics() -> Statistics {
    Statistics {
        enabled: ENABLED.load(Ordering::Acquire),
        classes: GRAPH.class_count(),
        dependencies: GRAPH.edge_count(),
        circular_reports: CIRCULAR_REPORTS.load(Ordering::Relaxed),
        sleep_in_atomic_reports: SLEEP_REPORTS.load(Ordering::Relaxed),
    }
}

/// `/proc/lockdep_stats`, in Linux's layout for the lines that apply.
pub fn show_stats(out: &mut dyn Write) -> fmt::Result {
    let stats = statistics();
    writeln!(out, " lock-classes:                  {:>6} [max: {}]", stats.classes, MAX_CLASSES)?;
    writeln!(out, " direct dependencies:           {:>6} [max: {}]", stats.dependencies, MAX_EDGES)?;
    writeln!(out, " circular dependency reports:   {:>6}", stats.circular_reports)?;
    writeln!(out, " sleep in atomic reports:       {:>6}", stats.sleep_in_atomic_reports)?;
    writeln!(out, " debug_locks:                   {:>6}", u32::from(stats.enabled))
}

pub fn order_recorded(held_site: Site, held_kind: LockKind, next_site: Site, next_kind: LockKind) -> bool {
    GRAPH.knows(ClassKey::new(held_site, held_kind), ClassKey::new(next_site, next_kind))
}
