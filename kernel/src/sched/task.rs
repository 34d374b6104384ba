//! The task structure (Linux's `task_struct` in spirit): identity, state, scheduling parameters, affinity, kernel stack, saved context and accounting.

use alloc::boxed::Box;
use core::cell::UnsafeCell;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use hinoki_interface::SavedContext;

use super::balance::CpuMask;
use super::policy::SchedParams;
use super::runqueue::Entity;
use crate::mm::{AllocError, AllocFlags, MemoryManager, PhysicalAddress, SlabArc, TypedCache};
use crate::sync::SpinLock;

/// A task id (Linux's pid); 0 is the boot CPU's idle task.
pub type TaskId = u64;

/// Where a task is in its life (the letters `ps` prints).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum TaskState {
    /// Running or runnable (`R`).
    Running = 0,
    /// Sleeping until woken or a signal (`S`); kernel threads have no signals yet.
    Interruptible = 1,
    /// Sleeping until woken (`D`).
    Uninterruptible = 2,
    /// Exited, waiting to be joined (`Z`).
    Dead = 3,
    /// A CPU's idle task (`I`).
    Idle = 4,
}

impl TaskState {
    fn from_u8(value: u8) -> Self {
        match value {
            0 => TaskState::Running,
            1 => TaskState::Interruptible,
            2 => TaskState::Uninterruptible,
            3 => TaskState::Dead,
            _ => TaskState::Idle,
        }
    }

    /// The letter `ps` prints.
    pub fn letter(self) -> char {
        match self {
            TaskState::Running => 'R',
            TaskState::Interruptible => 'S',
            TaskState::Uninterruptible => 'D',
            TaskState::Dead => 'Z',
            TaskState::Idle => 'I',
        }
    }

    /// Whether the task waits to be woken.
    pub fn is_sleeping(self) -> bool {
        matches!(self, TaskState::Interruptible | TaskState::Uninterruptible)
    }
}

/// Page-allocator order of a kernel thread's stack: 8 pages, the lowest of them the guard.
pub const STACK_ORDER: u32 = 3;
const PAGE_SIZE: usize = 4096;
const CANARY: u64 = 0x5354_4143_4b5f_4744; // "STACK_GD"
const CANARY_WORDS: usize = 8;

/// A kernel stack from the page allocator. Its lowest page is the guard: on a board with
/// an MMU it is unmapped (`mm::paging::unmap_guard_page`), so an overflow faults at once
/// with a "kernel stack overflow" report, and mapped back before the pages are freed.
/// Without an MMU (or if unmapping fails) it holds a canary checked at every switch away
/// from the task.
pub struct KernelStack {
    physical: PhysicalAddress,
    order: u32,
    base: usize,
    manager: &'static MemoryManager,
    /// Whether the guard page is unmapped (else it holds the canary).
    unmapped: bool,
}

impl KernelStack {
    /// Allocates a stack of `4096 << order` bytes (order 1 or more) from `manager`.
    pub fn allocate(manager: &'static MemoryManager, order: u32) -> Result<Self, AllocError> {
        let order = order.max(1);
        let physical = manager.alloc_pages(order, AllocFlags::NONE)?;
        let base = manager.buddy().ok_or(AllocError::NotInitialized)?.virtual_address(physical);
        let mut stack = KernelStack { physical, order, base, manager, unmapped: false };
        for index in 0..CANARY_WORDS {
            // SAFETY: the pages were just allocated for this stack alone and are reachable
            // at `base` through the direct map; the canary words lie inside the guard page.
            unsafe { core::ptr::write_volatile(stack.canary_address(index), CANARY) };
        }
        // The guard page is mapped back at the same address when freed: only an identity
        // direct map allows that.
        let has_mmu = crate::try_platform().is_some_and(|platform| platform.mmu().is_some());
        if has_mmu && base as u64 == physical.0 {
            match crate::mm::paging::unmap_guard_page(base) {
                Ok(()) => stack.unmapped = true,
                Err(error) => log::warn!("sched: cannot unmap the guard page of a kernel stack at {:#x}: {:?}", base, error),
            }
        }
        Ok(stack)
    }

    fn canary_address(&self, index: usize) -> *mut u64 {
        (self.base + PAGE_SIZE - (index + 1) * 8) as *mut u64
    }

    /// The exclusive top of the usable stack (16-byte aligned).
    pub fn top(&self) -> usize {
        self.base + (PAGE_SIZE << self.order)
    }

    /// The lowest usable address (just above the guard page).
    pub fn bottom(&self) -> usize {
        self.base + PAGE_SIZE
    }

    /// Whether the guard page is unmapped (an overflow faults instead of being detected late).
    pub fn guard_unmapped(&self) -> bool {
        self.unmapped
    }

    /// Whether no overflow reached the guard page: always for an unmapped guard (an
    /// overflow would have faulted), else the canary is checked.
    pub fn guard_intact(&self) -> bool {
        if self.unmapped {
            return true;
        }
        // SAFETY: the canary words lie inside this stack's own guard page, which is mapped.
        (0..CANARY_WORDS).all(|index| unsafe { core::ptr::read_volatile(self.canary_address(index)) } == CANARY)
    }
}

impl Drop for KernelStack {
    fn drop(&mut self) {
        if self.unmapped {
            if let Err(error) = crate::mm::paging::restore_guard_page(self.base) {
                // An unmapped page must not return to the allocator: leak the stack.
                log::error!("sched: cannot map back the guard page at {:#x} ({:?}); leaking the stack", self.base, error);
                return;
            }
        }
        if let Err(error) = self.manager.free_pages(self.physical, self.order) {
            log::error!("sched: cannot free a kernel stack at {:#x}: {:?}", self.physical.0, error);
        }
    }
}

/// Most bytes of a task name (Linux's `TASK_COMM_LEN` minus the NUL).
pub const NAME_LENGTH: usize = 15;

/// A kernel thread's body: returns the exit value.
pub type ThreadBody = Box<dyn FnOnce() -> usize + Send>;

/// A task.
pub struct Task {
    /// The locks this task holds, for lock debugging.
    pub(crate) held_locks: crate::lockdep::HeldLocks,
    id: TaskId,
    name: [u8; NAME_LENGTH],
    name_length: usize,
    parent: TaskId,
    state: AtomicU8,
    params: AtomicU32,
    /// Parameters before a priority-inheritance boost, or `u32::MAX` when not boosted.
    normal_params: AtomicU32,
    affinity: AtomicU64,
    cpu: AtomicU32,
    pub(super) on_run_queue: AtomicBool,
    pub(super) on_cpu: AtomicBool,
    vruntime: AtomicU64,
    time_slice: AtomicU64,
    utime: AtomicU64,
    stime: AtomicU64,
    nvcsw: AtomicU64,
    nivcsw: AtomicU64,
    start_time: u64,
    exit_value: AtomicUsize,
    pub(super) stack: SpinLock<Option<KernelStack>>,
    /// The address of the stack's first canary word while the stack has a mapped guard
    /// page with canaries, else 0: the switch path checks it without taking `stack`'s lock.
    stack_canary: AtomicUsize,
    pub(super) body: SpinLock<Option<ThreadBody>>,
    context: UnsafeCell<SavedContext>,
}

// SAFETY: every field but `context` is atomic or locked. `context` is written only by the
// context switch on the CPU that switches away from the task and read only by the CPU that
// switches to it; the scheduler orders the two through `on_cpu` (cleared with Release
// after the save, awaited with Acquire before the load), so they never overlap.
unsafe impl Sync for Task {}
// SAFETY: as above; moving a `Task` moves owned data only.
unsafe impl Send for Task {}

/// The slab cache of tasks (Linux's `task_struct` cache).
pub static TASK_CACHE: TypedCache<Task> = TypedCache::new("task_struct");

/// A shared reference to a task, in the `task_struct` slab cache.
pub type TaskRef = SlabArc<Task>;

impl Task {
    /// A task record. `stack` is `None` for a CPU's boot context (its idle task).
    pub fn new(id: TaskId, name: &str, parent: TaskId, params: SchedParams, stack: Option<KernelStack>, now: u64) -> Self {
        let mut stored = [0u8; NAME_LENGTH];
        let mut name_length = 0;
        for character in name.chars() {
            let mut encoded = [0u8; 4];
            let bytes = character.encode_utf8(&mut encoded).as_bytes();
            if name_length + bytes.len() > NAME_LENGTH {
                break;
            }
            stored[name_length..name_length + bytes.len()].copy_from_slice(bytes);
            name_length += bytes.len();
        }
        let stack_canary = stack.as_ref().filter(|stack| !stack.unmapped).map_or(0, |stack| stack.canary_address(0) as usize);
        Task {
            stack_canary: AtomicUsize::new(stack_canary),
            held_locks: crate::lockdep::HeldLocks::new(),
            id,
            name: stored,
            name_length,
            parent,
            state: AtomicU8::new(TaskState::Running as u8),
            params: AtomicU32::new(params.pack()),
            normal_params: AtomicU32::new(u32::MAX),
            affinity: AtomicU64::new(CpuMask::ALL.0),
            cpu: AtomicU32::new(0),
            on_run_queue: AtomicBool::new(false),
            on_cpu: AtomicBool::new(false),
            vruntime: AtomicU64::new(0),
            time_slice: AtomicU64::new(0),
            utime: AtomicU64::new(0),
            stime: AtomicU64::new(0),
            nvcsw: AtomicU64::new(0),
            nivcsw: AtomicU64::new(0),
            start_time: now,
            exit_value: AtomicUsize::new(0),
            stack: SpinLock::new(stack),
            body: SpinLock::new(None),
            context: UnsafeCell::new(SavedContext::empty()),
        }
    }

    /// The id.
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// The name (at most 15 bytes, cut at a character boundary).
    pub fn name(&self) -> &str {
        core::str::from_utf8(&self.name[..self.name_length]).unwrap_or("?")
    }

    /// The parent's id.
    pub fn parent(&self) -> TaskId {
        self.parent
    }

    /// The state.
    pub fn state(&self) -> TaskState {
        TaskState::from_u8(self.state.load(Ordering::Acquire))
    }

    pub(super) fn set_state(&self, state: TaskState) {
        self.state.store(state as u8, Ordering::Release);
    }

    /// Marks the task sleeping (before it checks its wait condition) or running again (after).
    pub(crate) fn set_state_for_wait(&self, state: TaskState) {
        self.set_state(state);
    }

    /// Sets `to` if the state is `from`; whether it was.
    pub(super) fn change_state(&self, from: TaskState, to: TaskState) -> bool {
        self.state.compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    /// The effective scheduling parameters (boosted ones while priority inheritance lends some).
    pub fn params(&self) -> SchedParams {
        SchedParams::unpack(self.params.load(Ordering::Acquire))
    }

    pub(super) fn store_params(&self, params: SchedParams) {
        self.params.store(params.pack(), Ordering::Release);
    }

    /// The parameters the task has without any priority-inheritance boost.
    pub fn normal_params(&self) -> SchedParams {
        match self.normal_params.load(Ordering::Acquire) {
            u32::MAX => self.params(),
            packed => SchedParams::unpack(packed),
        }
    }

    pub(super) fn set_normal_params(&self, params: Option<SchedParams>) {
        self.normal_params.store(params.map_or(u32::MAX, SchedParams::pack), Ordering::Release);
    }

    /// The CPUs the task may run on.
    pub fn affinity(&self) -> CpuMask {
        CpuMask(self.affinity.load(Ordering::Relaxed))
    }

    pub(super) fn set_affinity(&self, mask: CpuMask) {
        self.affinity.store(mask.0, Ordering::Relaxed);
    }

    /// The CPU it last ran on (or is queued on).
    pub fn cpu(&self) -> usize {
        self.cpu.load(Ordering::Relaxed) as usize
    }

    pub(super) fn set_cpu(&self, cpu: usize) {
        self.cpu.store(cpu as u32, Ordering::Relaxed);
    }

    /// User time in nanoseconds (kernel threads have none yet).
    pub fn utime(&self) -> u64 {
        self.utime.load(Ordering::Relaxed)
    }

    /// System time in nanoseconds.
    pub fn stime(&self) -> u64 {
        self.stime.load(Ordering::Relaxed)
    }

    /// Only the scheduler of the CPU the task runs on calls it, under that run queue's lock
    /// (a single writer), so a load and a store do instead of an atomic read-modify-write.
    pub(super) fn add_stime(&self, nanoseconds: u64) {
        self.stime.store(self.stime.load(Ordering::Relaxed).wrapping_add(nanoseconds), Ordering::Relaxed);
    }

    /// Voluntary context switches (blocked).
    pub fn nvcsw(&self) -> u64 {
        self.nvcsw.load(Ordering::Relaxed)
    }

    /// Involuntary context switches (preempted or yielded while runnable).
    pub fn nivcsw(&self) -> u64 {
        self.nivcsw.load(Ordering::Relaxed)
    }

    /// Single writer as for [`add_stime`](Self::add_stime).
    pub(super) fn count_switch(&self, voluntary: bool) {
        let counter = if voluntary { &self.nvcsw } else { &self.nivcsw };
        counter.store(counter.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }

    /// Clock value (nanoseconds since boot) when the task was created.
    pub fn start_time(&self) -> u64 {
        self.start_time
    }

    /// The exit value (meaningful once the state is [`TaskState::Dead`]).
    pub fn exit_value(&self) -> usize {
        self.exit_value.load(Ordering::Acquire)
    }

    pub(super) fn set_exit_value(&self, value: usize) {
        self.exit_value.store(value, Ordering::Release);
    }

    /// The saved context, for the switch path only.
    pub(super) fn context(&self) -> *mut SavedContext {
        self.context.get()
    }

    /// Whether the task's stack guard is intact (true for tasks on a boot stack and for
    /// unmapped guard pages, which fault on an overflow instead).
    pub fn stack_guard_intact(&self) -> bool {
        let first = self.stack_canary.load(Ordering::Acquire);
        if first == 0 {
            return true;
        }
        // SAFETY: a non-zero `stack_canary` names the canary words of the stack this task
        // still owns (`take_stack` clears it before the stack can go); they lie in its mapped
        // guard page, below the first word's address.
        (0..CANARY_WORDS).all(|index| unsafe { core::ptr::read_volatile((first - index * 8) as *const u64) } == CANARY)
    }

    /// Takes the task's kernel stack (to free it once the task has exited for good).
    pub(super) fn take_stack(&self) -> Option<KernelStack> {
        self.stack_canary.store(0, Ordering::Release);
        self.stack.lock().take()
    }
}

impl fmt::Debug for Task {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "Task({} {:?} {:?})", self.id, self.name(), self.state())
    }
}

impl Entity for TaskRef {
    fn id(&self) -> u64 {
        self.id
    }
    fn params(&self) -> SchedParams {
        Task::params(self)
    }
    fn vruntime(&self) -> u64 {
        self.vruntime.load(Ordering::Relaxed)
    }
    fn set_vruntime(&self, vruntime: u64) {
        self.vruntime.store(vruntime, Ordering::Relaxed)
    }
    fn time_slice(&self) -> u64 {
        self.time_slice.load(Ordering::Relaxed)
    }
    fn set_time_slice(&self, nanoseconds: u64) {
        self.time_slice.store(nanoseconds, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::policy::Policy;

    #[test]
    fn names_are_cut_at_character_boundaries() {
        let task = Task::new(7, "a-very-long-thread-name", 0, SchedParams::normal(0), None, 0);
        assert_eq!(task.name(), "a-very-long-thr");
        let task = Task::new(8, "ééééééééé", 0, SchedParams::normal(0), None, 0);
        assert_eq!(task.name(), "ééééééé");
        assert_eq!(task.state(), TaskState::Running);
        assert!(task.change_state(TaskState::Running, TaskState::Uninterruptible));
        assert!(!task.change_state(TaskState::Running, TaskState::Dead));
        assert_eq!(task.state().letter(), 'D');
    }

    #[test]
    fn boosts_keep_the_normal_parameters() {
        let task = Task::new(1, "t", 0, SchedParams::normal(3), None, 0);
        assert_eq!(task.normal_params(), SchedParams::normal(3));
        task.set_normal_params(Some(task.params()));
        task.store_params(SchedParams::real_time(Policy::Fifo, 40));
        assert_eq!(task.params().policy, Policy::Fifo);
        assert_eq!(task.normal_params(), SchedParams::normal(3));
    }

    #[test]
    fn stacks_come_from_the_page_allocator_with_a_guard() {
        let manager = crate::mm::tests::leaked_manager(4);
        let free_before = manager.buddy().unwrap().free_page_count();
        let stack = KernelStack::allocate(manager, STACK_ORDER).unwrap();
        assert_eq!(stack.top() - stack.bottom(), 7 * PAGE_SIZE);
        assert_eq!(stack.top() % 16, 0);
        assert!(stack.guard_intact());
        // SAFETY: the word is inside this test's own guard page.
        unsafe { core::ptr::write_volatile((stack.bottom() - 8) as *mut u64, 0) };
        assert!(!stack.guard_intact(), "an overflow into the guard page is noticed");
        drop(stack);
        assert_eq!(manager.buddy().unwrap().free_page_count(), free_before);
    }
}
