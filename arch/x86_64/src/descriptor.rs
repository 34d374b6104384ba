//! Descriptor tables: a GDT with a 64-bit TSS (IST stacks for double faults, NMIs and machine checks) per CPU, and the 256-entry IDT all CPUs share.

use core::arch::asm;
use core::cell::UnsafeCell;

use crate::exception;
use crate::percpu::MAX_CPUS;

/// Kernel code segment selector (the same slot as in the boot GDT).
pub const KERNEL_CODE_SELECTOR: u16 = 0x08;
/// Kernel data segment selector.
pub const KERNEL_DATA_SELECTOR: u16 = 0x10;
/// Task state segment selector (a 16-byte system descriptor in slots 3 and 4).
pub const TASK_STATE_SELECTOR: u16 = 0x18;
/// Interrupt stack table slot (1-based, as the gate's IST field) used for double faults.
pub const DOUBLE_FAULT_STACK_INDEX: u8 = 1;
/// Interrupt stack table slot used for NMIs and machine checks.
pub const CRITICAL_STACK_INDEX: u8 = 2;

const INTERRUPT_STACK_SIZE: usize = 16 * 1024;

/// The 64-bit task state segment (Intel SDM vol. 3, 8.7).
#[repr(C, packed(4))]
pub struct TaskStateSegment {
    reserved0: u32,
    /// Stacks loaded on a privilege change to rings 0-2.
    pub privilege_stacks: [u64; 3],
    reserved1: u64,
    /// Interrupt stack table: IST1 to IST7.
    pub interrupt_stacks: [u64; 7],
    reserved2: u64,
    reserved3: u16,
    /// Offset of the I/O permission bitmap (beyond the limit: none).
    pub io_map_base: u16,
}

const _: () = assert!(core::mem::size_of::<TaskStateSegment>() == 104);

/// One IDT gate.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct Gate {
    offset_low: u16,
    selector: u16,
    stack_index: u8,
    attributes: u8,
    offset_middle: u16,
    offset_high: u32,
    reserved: u32,
}

impl Gate {
    /// A not-present gate (raises #GP with the IDT bit in the error code if used).
    pub const EMPTY: Gate =
        Gate { offset_low: 0, selector: 0, stack_index: 0, attributes: 0, offset_middle: 0, offset_high: 0, reserved: 0 };

    /// A present ring-0 interrupt gate (interrupts masked on entry) to `handler`.
    pub fn interrupt(handler: usize, stack_index: u8) -> Gate {
        Gate {
            offset_low: handler as u16,
            selector: KERNEL_CODE_SELECTOR,
            stack_index,
            attributes: 0x8e,
            offset_middle: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }

    /// The handler address this gate points at.
    pub fn handler(&self) -> usize {
        self.offset_low as usize | (self.offset_middle as usize) << 16 | (self.offset_high as usize) << 32
    }

    /// Whether the gate is present.
    pub fn is_present(&self) -> bool {
        self.attributes & 0x80 != 0
    }
}

/// Storage written before the CPU that uses it loads it: the IDT once on the boot CPU, each
/// CPU's GDT and TSS slot by that CPU alone, before it loads them.
struct BootCell<T>(UnsafeCell<T>);

// SAFETY: the IDT is written only by `initialize_boot_cpu`, which runs once on the boot CPU
// before other CPUs or interrupts exist; slot `n` of the per-CPU arrays is written only by
// CPU `n` while it sets itself up. Afterwards the CPUs read them and software only reads.
unsafe impl<T> Sync for BootCell<T> {}

#[repr(C, align(16))]
struct InterruptStack([u8; INTERRUPT_STACK_SIZE]);

static DOUBLE_FAULT_STACK: BootCell<InterruptStack> = BootCell(UnsafeCell::new(InterruptStack([0; INTERRUPT_STACK_SIZE])));
static CRITICAL_STACK: BootCell<InterruptStack> = BootCell(UnsafeCell::new(InterruptStack([0; INTERRUPT_STACK_SIZE])));

const EMPTY_TASK_STATE: TaskStateSegment = TaskStateSegment {
    reserved0: 0,
    privilege_stacks: [0; 3],
    reserved1: 0,
    interrupt_stacks: [0; 7],
    reserved2: 0,
    reserved3: 0,
    io_map_base: core::mem::size_of::<TaskStateSegment>() as u16,
};

static TASK_STATES: BootCell<[TaskStateSegment; MAX_CPUS]> = BootCell(UnsafeCell::new([EMPTY_TASK_STATE; MAX_CPUS]));

/// Null, kernel code, kernel data, TSS (two slots).
const BOOT_DESCRIPTORS: [u64; 5] = [0, 0x00af_9a00_0000_ffff, 0x00cf_9200_0000_ffff, 0, 0];

/// One GDT per CPU: a TSS descriptor is marked busy when loaded, so CPUs cannot share one.
static GLOBAL_DESCRIPTORS: BootCell<[[u64; 5]; MAX_CPUS]> = BootCell(UnsafeCell::new([BOOT_DESCRIPTORS; MAX_CPUS]));

/// Number of IDT gates: the 32 exceptions and the 224 external interrupt vectors.
pub const GATE_COUNT: usize = 256;

#[repr(C, align(16))]
struct InterruptDescriptorTable([Gate; GATE_COUNT]);

static INTERRUPT_DESCRIPTORS: BootCell<InterruptDescriptorTable> =
    BootCell(UnsafeCell::new(InterruptDescriptorTable([Gate::EMPTY; GATE_COUNT])));

#[repr(C, packed(2))]
struct DescriptorPointer {
    limit: u16,
    base: u64,
}

/// The two GDT slots describing an available 64-bit TSS at `base`.
fn task_state_descriptor(base: u64) -> [u64; 2] {
    let limit = (core::mem::size_of::<TaskStateSegment>() - 1) as u64;
    let low = (limit & 0xffff) | (base & 0xff_ffff) << 16 | 0x89 << 40 | ((limit >> 16) & 0xf) << 48 | ((base >> 24) & 0xff) << 56;
    [low, base >> 32]
}

fn stack_top(stack: &BootCell<InterruptStack>) -> u64 {
    stack.0.get() as u64 + INTERRUPT_STACK_SIZE as u64
}

/// Size of each IST stack an application processor needs ([`initialize_application_processor`]).
pub const APPLICATION_PROCESSOR_IST_SIZE: usize = INTERRUPT_STACK_SIZE;

/// Fills CPU `cpu`'s TSS (IST stacks at the given tops) and GDT, then loads them.
///
/// # Safety
/// Only CPU `cpu` may call this, once; the stack tops must be the exclusive ends of
/// 16-byte-aligned stacks of [`APPLICATION_PROCESSOR_IST_SIZE`] bytes that live forever.
unsafe fn install_cpu_descriptors(cpu: usize, double_fault_stack_top: u64, critical_stack_top: u64) {
    // SAFETY: slot `cpu` belongs to the calling CPU alone (caller contract, BootCell's rule).
    let descriptors = unsafe {
        let task_state = &mut (*TASK_STATES.0.get())[cpu];
        task_state.interrupt_stacks[(DOUBLE_FAULT_STACK_INDEX - 1) as usize] = double_fault_stack_top;
        task_state.interrupt_stacks[(CRITICAL_STACK_INDEX - 1) as usize] = critical_stack_top;
        let descriptors = &mut (*GLOBAL_DESCRIPTORS.0.get())[cpu];
        let [low, high] = task_state_descriptor(task_state as *const TaskStateSegment as u64);
        descriptors[3] = low;
        descriptors[4] = high;
        descriptors as *const [u64; 5] as u64
    };
    load_global_descriptors(descriptors);
}

/// Installs the boot CPU's GDT (with its TSS and IST stacks), the shared IDT with a gate for
/// every vector, remaps and masks the legacy 8259 PICs, and points the GS base at CPU 0's
/// per-CPU block. Runs once, on the boot CPU, before the board's entry.
pub fn initialize_boot_cpu() {
    // SAFETY: runs once on the boot CPU with interrupts disabled and nothing else running,
    // so the exclusive accesses to the descriptor statics cannot race.
    unsafe {
        let gates = &mut (*INTERRUPT_DESCRIPTORS.0.get()).0;
        for (vector, gate) in gates.iter_mut().enumerate() {
            let stack_index = match vector {
                exception::DOUBLE_FAULT => DOUBLE_FAULT_STACK_INDEX,
                exception::NON_MASKABLE_INTERRUPT | exception::MACHINE_CHECK => CRITICAL_STACK_INDEX,
                // Page faults share the double-fault stack, so a kernel-stack overflow into
                // a guard page is reported from a good stack. Every page fault is fatal in
                // the kernel today; with demand paging, #PF moves back to the thread's stack
                // and overflow detection to #DF.
                exception::PAGE_FAULT => DOUBLE_FAULT_STACK_INDEX,
                _ => 0,
            };
            *gate = Gate::interrupt(exception::stub_address(vector), stack_index);
        }
        install_cpu_descriptors(0, stack_top(&DOUBLE_FAULT_STACK), stack_top(&CRITICAL_STACK));
    }
    load_interrupt_descriptors();
    crate::pic::remap_and_mask();
    crate::percpu::install(0, crate::apic::initial_apic_id());
}

/// Sets up application processor `cpu` (1 or more): its own GDT and TSS with IST stacks at
/// the given tops, the shared IDT, and its per-CPU block (GS base) with `apic_id`.
///
/// # Safety
/// Call once, on CPU `cpu` itself, with interrupts masked; the stack tops must be the
/// exclusive ends of 16-byte-aligned, [`APPLICATION_PROCESSOR_IST_SIZE`]-byte stacks that
/// live forever and that nothing else uses.
pub unsafe fn initialize_application_processor(cpu: u32, apic_id: u32, double_fault_stack_top: u64, critical_stack_top: u64) -> bool {
    if cpu == 0 || cpu as usize >= MAX_CPUS {
        return false;
    }
    // SAFETY: forwarded from the caller.
    unsafe { install_cpu_descriptors(cpu as usize, double_fault_stack_top, critical_stack_top) };
    load_interrupt_descriptors();
    crate::percpu::install(cpu, apic_id)
}

fn load_global_descriptors(table: u64) {
    let pointer = DescriptorPointer { limit: (core::mem::size_of::<[u64; 5]>() - 1) as u16, base: table };
    // SAFETY: the GDT is a static that lives forever; its code and data descriptors match the
    // boot GDT's selectors, so reloading CS (far return) and the data segments keeps the same
    // flat 64-bit view, and the TSS descriptor points at a valid, available TSS.
    unsafe {
        asm!(
            "lgdt [{pointer}]",
            "push {code}",
            "lea {scratch}, [rip + 2f]",
            "push {scratch}",
            "retfq",
            "2:",
            "mov ss, {data:x}",
            "mov ds, {data:x}",
            "mov es, {data:x}",
            "ltr {task:x}",
            pointer = in(reg) &pointer,
            code = in(reg) KERNEL_CODE_SELECTOR as u64,
            data = in(reg) KERNEL_DATA_SELECTOR as u64,
            task = in(reg) TASK_STATE_SELECTOR as u64,
            scratch = out(reg) _,
        );
    }
}

fn load_interrupt_descriptors() {
    let pointer = DescriptorPointer {
        limit: (core::mem::size_of::<InterruptDescriptorTable>() - 1) as u16,
        base: INTERRUPT_DESCRIPTORS.0.get() as u64,
    };
    // SAFETY: the IDT is a static that lives forever and every present gate points at an
    // entry stub in this crate.
    unsafe { asm!("lidt [{}]", in(reg) &pointer, options(readonly, nostack, preserves_flags)) };
}

/// Reads the IDT register: (base, limit).
pub fn current_interrupt_table() -> (u64, u16) {
    let mut pointer = DescriptorPointer { limit: 0, base: 0 };
    // SAFETY: SIDT stores ten bytes into the local `pointer`.
    unsafe { asm!("sidt [{}]", in(reg) &mut pointer, options(nostack, preserves_flags)) };
    (pointer.base, pointer.limit)
}

/// The IDT gate for `vector`, as installed.
pub fn gate(vector: usize) -> Option<Gate> {
    // SAFETY: after `initialize_boot_cpu` the table is only read.
    unsafe { (*INTERRUPT_DESCRIPTORS.0.get()).0.get(vector).copied() }
}

/// Reads the task register (the loaded TSS selector).
pub fn current_task_register() -> u16 {
    let selector: u16;
    // SAFETY: STR only reads the task register.
    unsafe { asm!("str {:x}", out(reg) selector, options(nomem, nostack, preserves_flags)) };
    selector
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_state_descriptor_encodes_base_and_limit() {
        let [low, high] = task_state_descriptor(0x1234_5678_9abc_def0);
        assert_eq!(low & 0xffff, 103);
        assert_eq!((low >> 16) & 0xff_ffff, 0xbc_def0);
        assert_eq!((low >> 40) & 0xff, 0x89);
        assert_eq!(low >> 56, 0x9a);
        assert_eq!(high, 0x1234_5678);
    }

    #[test]
    fn gates_round_trip_handler_addresses() {
        let gate = Gate::interrupt(0xffff_8000_0012_3456, 1);
        assert_eq!(gate.handler(), 0xffff_8000_0012_3456);
        assert!(gate.is_present());
        assert!(!Gate::EMPTY.is_present());
    }
}
