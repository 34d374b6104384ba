//! Lock debugging in debug builds (a small lockdep): sleeping in atomic context and lock-order inversions are reported with their call sites; release builds compile it away.
//!
//! Enabled by `cfg(debug_assertions)`, so every dev-profile build (the ones `cargo xtask
//! test` and `cargo xtask run` make) checks, and release builds (benchmarks) carry none of
//! it. The kernel command line tunes it: `lockdep=off` disables it, `lockdep=panic` panics
//! after a report instead of going on.
//!
//! - [`might_sleep`] is called by every sleeping primitive (mutex lock, semaphore down,
//!   rw-semaphore, completion wait, wait-queue sleep, scheduler sleep). Called with the
//!   preempt count raised (a spinlock held, per-CPU data in use), interrupts masked, or in
//!   an interrupt or softirq, it reports `BUG: sleeping function called from invalid
//!   context at FILE:LINE:COLUMN` with the caller's site and the locks held.
//! - Lock order: every lock has a class, the site that constructed it (`#[track_caller]`
//!   constructors, so a lock built inside another type's `#[track_caller]` constructor
//!   takes that caller's site) plus its kind. Acquiring class A while holding B records
//!   "B before A" with both acquisition sites the first time it is seen ([`graph`]); an
//!   order that closes a cycle with earlier ones reports `WARNING: possible circular
//!   locking dependency detected`, naming the sites of the new and of the earlier orders.
//!   Try-locks never wait, so they record no order. Orders are tracked per context: the
//!   task's (kept in its [`Task`](crate::sched::Task) across sleeps and switches), and the
//!   CPU's softirq and hardirq contexts, which start with nothing held.
//!
//! Each report increments a counter ([`statistics`], `/proc/lockdep_stats`) and is printed
//! once per site (sleep) or per pair of classes (order).

#[cfg(any(debug_assertions, test))]
pub mod graph;
mod ktests;
#[cfg(debug_assertions)]
mod tracking;

use core::panic::Location;

/// What kind of lock a class is (one construction site may create several: a mutex and the
/// spinlock inside its wait queue).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum LockKind {
    /// `SpinLock` and `IrqSpinLock`.
    Spin = 1,
    /// `RwLock` (spinning).
    RwLock = 2,
    /// `Mutex`.
    Mutex = 3,
    /// `RwSemaphore`.
    RwSemaphore = 4,
}

impl LockKind {
    /// The kind packed in the low bits of a class key.
    pub fn from_bits(bits: usize) -> Self {
        match bits {
            1 => LockKind::Spin,
            2 => LockKind::RwLock,
            3 => LockKind::Mutex,
            _ => LockKind::RwSemaphore,
        }
    }

    /// The type's name, for reports.
    pub fn name(self) -> &'static str {
        match self {
            LockKind::Spin => "spinlock",
            LockKind::RwLock => "rwlock",
            LockKind::Mutex => "mutex",
            LockKind::RwSemaphore => "rw_semaphore",
        }
    }
}

/// A lock's class: the site that constructed it (empty in release builds).
#[derive(Clone, Copy, Debug)]
pub struct LockClass {
    #[cfg(debug_assertions)]
    site: &'static Location<'static>,
}

impl LockClass {
    /// The class of the caller's construction site.
    #[track_caller]
    pub const fn new() -> Self {
        LockClass {
            #[cfg(debug_assertions)]
            site: Location::caller(),
        }
    }

    /// Where locks of this class are constructed (`None` in release builds).
    pub fn site(&self) -> Option<&'static Location<'static>> {
        #[cfg(debug_assertions)]
        return Some(self.site);
        #[cfg(not(debug_assertions))]
        None
    }
}

impl Default for LockClass {
    #[track_caller]
    fn default() -> Self {
        Self::new()
    }
}

/// The locks one context holds; each task carries one (zero-sized in release builds).
pub struct HeldLocks {
    #[cfg(debug_assertions)]
    inner: tracking::HeldStack,
}

impl HeldLocks {
    /// Nothing held.
    pub const fn new() -> Self {
        HeldLocks {
            #[cfg(debug_assertions)]
            inner: tracking::HeldStack::new(),
        }
    }
}

impl Default for HeldLocks {
    fn default() -> Self {
        Self::new()
    }
}

/// Records that the calling context is about to wait for (or, with `trylock`, just took)
/// `instance`, a lock of `class` and `kind`, at the caller's site; reports an order that
/// closes a cycle. Call before spinning or sleeping so a deadlock is reported, not hung in.
#[track_caller]
#[inline]
pub fn acquire(class: &LockClass, kind: LockKind, instance: *const (), trylock: bool) {
    #[cfg(debug_assertions)]
    tracking::acquire(class.site, kind, instance as usize, trylock, Location::caller());
    #[cfg(not(debug_assertions))]
    let _ = (class, kind, instance, trylock);
}

/// Records that the calling context released `instance`.
#[inline]
pub fn release(instance: *const ()) {
    #[cfg(debug_assertions)]
    tracking::release(instance as usize);
    #[cfg(not(debug_assertions))]
    let _ = instance;
}

/// Declares that the caller may sleep here; reports if the context forbids it (Linux's
/// `might_sleep`). Silent before the scheduler runs and in the idle tasks.
#[track_caller]
#[inline]
pub fn might_sleep() {
    #[cfg(debug_assertions)]
    tracking::might_sleep(Location::caller());
}

/// Called by the scheduler just before it switches to the task owning `next`: from then on
/// this CPU's task context records into `next`.
#[inline]
pub fn switch_to(next: &HeldLocks) {
    #[cfg(debug_assertions)]
    tracking::switch_to(&next.inner);
    #[cfg(not(debug_assertions))]
    let _ = next;
}

/// Reads the `lockdep=` option and turns checking on (debug builds; a no-op otherwise).
pub fn init(command_line: &str) {
    #[cfg(debug_assertions)]
    tracking::init(command_line);
    #[cfg(not(debug_assertions))]
    let _ = command_line;
}

/// Registers `/proc/lockdep_stats` (debug builds).
pub fn register_proc_files() {
    #[cfg(debug_assertions)]
    if let Err(error) = crate::fs::procfs::register("lockdep_stats", tracking::show_stats) {
        log::warn!("lockdep: cannot register /proc/lockdep_stats: {:?}", error);
    }
}

/// Counts of what lock debugging has seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Statistics {
    /// Whether checking is on.
    pub enabled: bool,
    /// Lock classes that appear in a recorded order.
    pub classes: usize,
    /// Lock orders recorded.
    pub dependencies: usize,
    /// Possible circular locking dependencies found.
    pub circular_reports: u64,
    /// Sleeping calls from atomic context found.
    pub sleep_in_atomic_reports: u64,
}

/// The counters now (all zero and disabled in release builds).
pub fn statistics() -> Statistics {
    #[cfg(debug_assertions)]
    return tracking::statistics();
    #[cfg(not(debug_assertions))]
    Statistics::default()
}

/// Whether the order "`next` taken while `held` was held" has been recorded (always `false`
/// in release builds).
pub fn order_recorded(held: (&LockClass, LockKind), next: (&LockClass, LockKind)) -> bool {
    #[cfg(debug_assertions)]
    return tracking::order_recorded(held.0.site, held.1, next.0.site, next.1);
    #[cfg(not(debug_assertions))]
    {
        let _ = (held, next);
        false
    }
}
