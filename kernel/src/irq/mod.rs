//! The portable IRQ layer: request and free interrupts with a handler and a name, enable and disable them, count them per CPU, dispatch them from the arch entry, send IPIs, and show `/proc/interrupts`.
//!
//! Interrupt numbers are the controller's own (GIC INTIDs, APIC vectors); interrupts are
//! not shared. The arch crate's IRQ vector calls [`handle_interrupt`], which acknowledges
//! one interrupt at the platform's controller, counts it for the calling CPU, runs its
//! handler and signals end-of-interrupt. A spurious acknowledgement (nothing pending) and
//! an interrupt nobody requested (which is then disabled) count in the `Err:` row.
//!
//! Nested-interrupt policy: interrupts stay masked on a CPU while its handler runs (the
//! CPU masks them on exception entry and nothing unmasks them before the return), and every
//! interrupt has one GIC priority, so handlers never preempt each other. Handlers must
//! therefore be short and must not wait for another interrupt on the same CPU.
//!
//! IPIs are interrupts too: [`init`] requests one per [`Ipi`] on the numbers the controller
//! names ([`InterruptController::ipi_interrupt`]); their counts appear in the `IPIn:` rows.

pub mod descriptor;
pub mod proc;

use core::sync::atomic::{AtomicBool, Ordering};

use hinoki_interface::{InterruptController, IpiTarget, Trigger};

pub use descriptor::{Descriptor, DescriptorTable, Ipi, IrqHandler, RequestError, MAX_CPUS, MAX_DESCRIPTORS, MAX_IRQ_NUMBER};

use crate::sync::{IrqSpinLock, SpinLock};

static TABLE: IrqSpinLock<DescriptorTable> = IrqSpinLock::new(DescriptorTable::new());

fn controller() -> Result<&'static dyn InterruptController, RequestError> {
    crate::try_platform().and_then(|platform| platform.interrupt_controller()).ok_or(RequestError::NoController)
}

/// The calling CPU's index into the per-CPU counts.
pub fn current_cpu() -> usize {
    crate::try_cpu().map_or(0, |cpu| cpu.current_id().0 as usize)
}

fn controller_error(number: u32, error: hinoki_interface::IrqError) -> RequestError {
    match error {
        hinoki_interface::IrqError::InvalidIrq(_) => RequestError::InvalidIrq(number),
        other => RequestError::Controller(other),
    }
}

/// Requests interrupt `number`: records `handler` under `name`, configures `trigger` at
/// the controller and enables it (on the calling CPU, for per-CPU interrupts).
///
/// # Errors
/// [`RequestError::InvalidIrq`] for a number the kernel or controller does not have,
/// [`RequestError::AlreadyRequested`], [`RequestError::TableFull`],
/// [`RequestError::NoController`], or [`RequestError::Controller`] when the controller
/// cannot configure the trigger.
pub fn request_irq(number: u32, name: &'static str, handler: IrqHandler, trigger: Trigger) -> Result<(), RequestError> {
    request(Descriptor::new(number, name, trigger, handler, None))
}

/// Requests a per-CPU interrupt (Linux's `request_percpu_irq`): like [`request_irq`],
/// enabled on the calling CPU now and on every other CPU when it runs [`init_cpu`].
///
/// # Errors
/// As for [`request_irq`].
pub fn request_percpu_irq(number: u32, name: &'static str, handler: IrqHandler, trigger: Trigger) -> Result<(), RequestError> {
    let mut descriptor = Descriptor::new(number, name, trigger, handler, None);
    descriptor.per_cpu = true;
    request(descriptor)
}

/// Brings up interrupts on a secondary CPU: the controller's per-CPU part, then every
/// per-CPU interrupt (IPIs, local timers) that is enabled, configured and unmasked on this
/// CPU. Interrupts stay masked at the CPU; the caller unmasks them.
pub fn init_cpu() {
    let Ok(controller) = controller() else { return };
    controller.init_cpu();
    let mut cursor = None;
    while let Some(descriptor) = TABLE.lock().next_after(cursor) {
        cursor = Some(descriptor.number);
        if !descriptor.per_cpu || !descriptor.enabled {
            continue;
        }
        let configured = controller.set_trigger(descriptor.number, descriptor.trigger).and_then(|()| controller.enable(descriptor.number));
        if let Err(error) = configured {
            log::warn!("irq: CPU{} cannot enable per-CPU interrupt {}: {:?}", current_cpu(), descriptor.number, error);
        }
    }
}

fn request(descriptor: Descriptor) -> Result<(), RequestError> {
    let controller = controller()?;
    let number = descriptor.number;
    let mut table = TABLE.lock();
    table.insert(descriptor)?;
    let configured = controller.set_trigger(number, descriptor.trigger).and_then(|()| controller.enable(number));
    match configured {
        Ok(()) => {
            if let Some(entry) = table.get_mut(number) {
                entry.enabled = true;
            }
            Ok(())
        }
        Err(error) => {
            let _ = table.remove(number);
            Err(controller_error(number, error))
        }
    }
}

/// Disables interrupt `number` at the controller and forgets its handler.
///
/// # Errors
/// [`RequestError::NotRequested`] or [`RequestError::InvalidIrq`] when nobody holds it.
pub fn free_irq(number: u32) -> Result<(), RequestError> {
    let controller = controller()?;
    let mut table = TABLE.lock();
    table.get(number).ok_or(RequestError::NotRequested(number))?;
    let _ = controller.disable(number);
    table.remove(number).map(|_| ())
}

fn set_enabled(number: u32, enabled: bool) -> Result<(), RequestError> {
    let controller = controller()?;
    let mut table = TABLE.lock();
    let descriptor = table.get_mut(number).ok_or(RequestError::NotRequested(number))?;
    let result = if enabled { controller.enable(number) } else { controller.disable(number) };
    result.map_err(|error| controller_error(number, error))?;
    descriptor.enabled = enabled;
    Ok(())
}

/// Unmasks a requested interrupt at the controller.
///
/// # Errors
/// [`RequestError::NotRequested`] when nobody holds `number`, or the controller's refusal.
pub fn enable_irq(number: u32) -> Result<(), RequestError> {
    set_enabled(number, true)
}

/// Masks a requested interrupt at the controller (it stays requested).
///
/// # Errors
/// As for [`enable_irq`].
pub fn disable_irq(number: u32) -> Result<(), RequestError> {
    set_enabled(number, false)
}

/// A copy of the descriptor of `number`, with its counts.
pub fn descriptor(number: u32) -> Option<Descriptor> {
    TABLE.lock().get(number).copied()
}

/// How many times `cpu` took interrupt `number` (0 when it is not requested).
pub fn count(number: u32, cpu: usize) -> u64 {
    descriptor(number).map_or(0, |descriptor| descriptor.counts[cpu.min(MAX_CPUS - 1)])
}

/// How many times `cpu` received `ipi`.
pub fn ipi_count(ipi: Ipi, cpu: usize) -> u64 {
    TABLE.lock().ipi_descriptor(ipi).map_or(0, |descriptor| descriptor.counts[cpu.min(MAX_CPUS - 1)])
}

/// Spurious interrupts taken on `cpu`.
pub fn spurious_count(cpu: usize) -> u64 {
    TABLE.lock().spurious(cpu)
}

/// The IRQ entry: the arch crate's interrupt vector calls this with interrupts masked.
/// Acknowledges one interrupt, counts it, runs its handler, ends it.
pub fn handle_interrupt() {
    crate::softirq::irq_enter();
    dispatch_interrupt();
    // Softirqs within their budget, then the preemption point: the tick or a wake-up may
    // have asked for a reschedule; the interrupted task's registers are on its own stack.
    crate::softirq::irq_exit();
}

fn dispatch_interrupt() {
    let Ok(controller) = controller() else { return };
    let cpu = current_cpu();
    let Some(number) = controller.acknowledge() else {
        TABLE.lock().record_spurious(cpu);
        return;
    };
    let handler = TABLE.lock().record(number, cpu);
    match handler {
        Some(handler) => handler(number),
        // Nobody asked for it: mask it so a level-triggered line cannot storm.
        None => {
            let _ = controller.disable(number);
        }
    }
    controller.end_of_interrupt(number);
}

static INITIALIZED: AtomicBool = AtomicBool::new(false);

/// Registers `/proc/interrupts` and, when the platform has an interrupt controller with
/// IPIs, requests the IPI interrupts. Called once by `kernel_main`.
pub fn init() {
    if INITIALIZED.swap(true, Ordering::AcqRel) {
        return;
    }
    if let Err(error) = crate::fs::procfs::register("interrupts", show_interrupts) {
        log::warn!("irq: cannot register /proc/interrupts: {:?}", error);
    }
    let Ok(controller) = controller() else {
        log::info!("irq: no interrupt controller; the console is polled");
        return;
    };
    for ipi in Ipi::ALL {
        if let Some(number) = controller.ipi_interrupt(ipi as u32) {
            let descriptor = Descriptor::new(number, ipi.description(), Trigger::EdgeRising, handle_ipi, Some(ipi));
            if let Err(error) = request(descriptor) {
                log::warn!("irq: cannot request IPI{} on interrupt {}: {:?}", ipi as u32, number, error);
            }
        }
    }
    log::info!("irq: {} interrupt controller, IPIs {:?}", controller.name(), Ipi::ALL.map(|ipi| controller.ipi_interrupt(ipi as u32)));
}

fn show_interrupts(out: &mut dyn core::fmt::Write) -> core::fmt::Result {
    let online_cpus = crate::try_platform().map_or(1, |platform| platform.cpu().online_count() as usize);
    let (highest, errors) = {
        let table = TABLE.lock();
        (table.highest_number(), proc::ErrorCounts { unrequested: table.unrequested(), spurious: table.spurious_counts() })
    };
    proc::show(out, controller().ok(), online_cpus, highest, errors, |after| TABLE.lock().next_after(after))
}

/// Sends `ipi` to `target`.
///
/// # Errors
/// [`RequestError::NoController`], or the controller's refusal (no IPIs, CPU offline).
pub fn send_ipi(target: IpiTarget, ipi: Ipi) -> Result<(), RequestError> {
    controller()?.send_ipi(target, ipi as u32).map_err(RequestError::Controller)
}

/// A function one CPU asks another to run, with its argument and, once run, its result.
#[derive(Clone, Copy)]
struct CallRequest {
    function: fn(usize) -> usize,
    argument: usize,
    result: Option<usize>,
}

/// One pending call per target CPU; senders are serialized by [`CALL_SENDER`].
static CALL_QUEUE: [IrqSpinLock<Option<CallRequest>>; MAX_CPUS] = [const { IrqSpinLock::new(None) }; MAX_CPUS];
static CALL_SENDER: SpinLock<()> = SpinLock::new(());

/// How long [`call_function_single`] waits for the target CPU.
pub const CALL_TIMEOUT_NANOSECONDS: u64 = 1_000_000_000;

/// Why a cross-CPU call did not return a result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallError {
    /// The IPI could not be sent.
    Ipi(RequestError),
    /// The caller has interrupts masked (it could deadlock with another caller).
    InterruptsDisabled,
    /// The target did not run the function within [`CALL_TIMEOUT_NANOSECONDS`].
    Timeout,
}

/// Runs `function(argument)` on `cpu` through a call-function IPI (also when `cpu` is the
/// caller, which makes it an IPI round trip) and returns its result. The caller must have
/// interrupts enabled.
///
/// # Errors
/// See [`CallError`].
pub fn call_function_single(cpu: u32, function: fn(usize) -> usize, argument: usize) -> Result<usize, CallError> {
    let platform = crate::platform();
    if !platform.cpu().interrupts_enabled() {
        return Err(CallError::InterruptsDisabled);
    }
    let slot = CALL_QUEUE.get(cpu as usize).ok_or(CallError::Ipi(RequestError::Controller(hinoki_interface::IrqError::InvalidCpu(cpu))))?;
    let _sender = CALL_SENDER.lock();
    *slot.lock() = Some(CallRequest { function, argument, result: None });
    if let Err(error) = send_ipi(IpiTarget::Cpu(cpu), Ipi::CallFunction) {
        *slot.lock() = None;
        return Err(CallError::Ipi(error));
    }
    let started = crate::time::since_boot_nanoseconds();
    loop {
        {
            let mut pending = slot.lock();
            if let Some(result) = pending.and_then(|request| request.result) {
                *pending = None;
                return Ok(result);
            }
        }
        if crate::time::since_boot_nanoseconds().saturating_sub(started) > CALL_TIMEOUT_NANOSECONDS {
            *slot.lock() = None;
            return Err(CallError::Timeout);
        }
        platform.cpu().relax();
    }
}

/// What [`call_function_many`] returns: the result of each CPU that ran the function, by
/// CPU number (`None` for CPUs outside the mask or not online).
pub type CallResults = [Option<usize>; MAX_CPUS];

/// Runs `function(argument)` on every online CPU in `mask` at once (Linux's
/// `smp_call_function_many` with `wait`): the others through call-function IPIs, the
/// caller's own CPU (if in the mask) directly, with interrupts masked as in an IPI handler,
/// after the IPIs are sent. Waits for every CPU and returns the results by CPU. The caller
/// must have interrupts enabled; CPUs in the mask that are not online are skipped.
///
/// # Errors
/// [`CallError::InterruptsDisabled`]; [`CallError::Ipi`] if an IPI could not be sent (the
/// calls already sent are withdrawn or waited for); [`CallError::Timeout`] if a CPU did not
/// run the function within [`CALL_TIMEOUT_NANOSECONDS`].
pub fn call_function_many(mask: crate::sched::CpuMask, function: fn(usize) -> usize, argument: usize) -> Result<CallResults, CallError> {
    let platform = crate::platform();
    if !platform.cpu().interrupts_enabled() {
        return Err(CallError::InterruptsDisabled);
    }
    let online = crate::smp::ready_mask() as u64;
    let targets = crate::sched::CpuMask(mask.0 & online);
    let mut results: CallResults = [None; MAX_CPUS];
    // Holding the sender lock keeps this task on its CPU (preemption is off) and the slots ours.
    let _sender = CALL_SENDER.lock();
    let me = current_cpu();
    let mut sent = 0u64;
    let mut failure = None;
    for cpu in (0..MAX_CPUS).filter(|&cpu| cpu != me && targets.contains(cpu)) {
        *CALL_QUEUE[cpu].lock() = Some(CallRequest { function, argument, result: None });
        match send_ipi(IpiTarget::Cpu(cpu as u32), Ipi::CallFunction) {
            Ok(()) => sent |= 1 << cpu,
            Err(error) => {
                *CALL_QUEUE[cpu].lock() = None;
                failure = Some(CallError::Ipi(error));
                break;
            }
        }
    }
    if failure.is_none() && targets.contains(me) {
        let saved = platform.cpu().disable_interrupts();
        results[me] = Some(function(argument));
        platform.cpu().restore_interrupts(saved);
    }
    let started = crate::time::since_boot_nanoseconds();
    let mut waiting = sent;
    while waiting != 0 {
        let still = waiting;
        for cpu in (0..MAX_CPUS).filter(|&cpu| still & (1 << cpu) != 0) {
            let mut pending = CALL_QUEUE[cpu].lock();
            if let Some(result) = pending.and_then(|request| request.result) {
                *pending = None;
                results[cpu] = Some(result);
                waiting &= !(1 << cpu);
            }
        }
        if waiting != 0 && crate::time::since_boot_nanoseconds().saturating_sub(started) > CALL_TIMEOUT_NANOSECONDS {
            for cpu in (0..MAX_CPUS).filter(|&cpu| waiting & (1 << cpu) != 0) {
                *CALL_QUEUE[cpu].lock() = None;
            }
            return Err(CallError::Timeout);
        }
        platform.cpu().relax();
    }
    match failure {
        Some(error) => Err(error),
        None => Ok(results),
    }
}

fn handle_ipi(number: u32) {
    let Some(ipi) = descriptor(number).and_then(|descriptor| descriptor.ipi) else { return };
    match ipi {
        // Linux's scheduler_ipi: mark this CPU; the preemption point at the end of
        // `handle_interrupt` switches tasks (a CPU without a scheduler just leaves idle).
        Ipi::Reschedule => crate::sched::set_need_resched(),
        Ipi::CallFunction => {
            let Some(slot) = CALL_QUEUE.get(current_cpu()) else { return };
            let mut pending = slot.lock();
            if let Some(request) = pending.as_mut().filter(|request| request.result.is_none()) {
                request.result = Some((request.function)(request.argument));
            }
        }
    }
}

mod ktests;
