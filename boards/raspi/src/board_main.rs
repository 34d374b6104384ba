//! `raspi_board!`: the entry, statics, MMU hook, IRQ vector, timer, spin-table start and panic handler every Raspberry Pi board binary needs, from one model description.

/// Expands, in a Raspberry Pi board binary, to its entry point, its platform statics, the
/// MMU start-up hook and the panic handler, wiring the aarch64 arch crate to the shared
/// [`Raspi`](crate::Raspi) platform for `model` (a `static Model`). The binary must depend
/// on `hinoki-arch-aarch64`, `hinoki-interface`, `hinoki-kernel` and `log` (the expansion
/// names them; this crate itself stays free of arch code so it tests on the host).
///
/// ```ignore
/// static MODEL: Model = Model { board_name: "raspi3b", /* ... */ };
/// hinoki_board_raspi::raspi_board!(model: MODEL, counter_fallback_hz: memory_map::COUNTER_FALLBACK_HZ);
/// ```
#[macro_export]
macro_rules! raspi_board {
    (model: $model:path, counter_fallback_hz: $fallback:expr) => {
        ::hinoki_arch_aarch64::entry_point!(board_main);

        static BOARD: ::hinoki_kernel::sync::Once<
            $crate::Raspi<::hinoki_arch_aarch64::Aarch64Cpu, ::hinoki_arch_aarch64::GenericTimerCounter>,
        > = ::hinoki_kernel::sync::Once::new();
        static MMU: ::hinoki_kernel::sync::Once<::hinoki_arch_aarch64::mmu::Aarch64Mmu> = ::hinoki_kernel::sync::Once::new();
        static TIMER: ::hinoki_kernel::sync::Once<::hinoki_arch_aarch64::GenericTimerEvent> = ::hinoki_kernel::sync::Once::new();

        fn board_main(boot_argument: usize) -> ! {
            use ::hinoki_arch_aarch64::layout;
            ::hinoki_arch_aarch64::smp::init_boot_cpu();
            let architecture = $crate::Architecture {
                cpu: ::hinoki_arch_aarch64::Aarch64Cpu::new(),
                clock: ::hinoki_arch_aarch64::GenericTimerCounter::new($fallback),
                kernel_text: layout::text(),
                kernel_image: layout::image_start() as u64..layout::kernel_end() as u64,
                semihosting_exit: ::hinoki_arch_aarch64::semihosting::exit,
                context_switch: &::hinoki_arch_aarch64::context::CONTEXT_SWITCH,
                paging_init,
                install_interrupt_handler,
                timer,
                start_secondary: ::hinoki_arch_aarch64::smp::start_cpu_spin_table,
                boot_cpu_affinity: ::hinoki_arch_aarch64::cpu::multiprocessor_affinity(),
            };
            // SAFETY: this is the boot CPU, once, with the MMU off; the model is this SoC's
            // map; `boot_argument` is the x0 the firmware or QEMU passed; memory below the
            // kernel holds only the firmware stub and the boot tags, which nothing overwrites.
            let board = BOARD.call_once(|| unsafe { $crate::Raspi::new(&$model, boot_argument, architecture) });
            ::hinoki_kernel::early_init(board);
            board.log_boot();
            if ::hinoki_arch_aarch64::generic_timer::counter_frequency() == 0 {
                ::log::warn!("{}: CNTFRQ_EL0 is 0; assuming {} Hz", $model.board_name, $fallback);
            }
            board.start_interrupts();
            ::hinoki_kernel::kernel_main(board)
        }

        fn irq_entry(_frame: &mut ::hinoki_arch_aarch64::exception::TrapFrame) {
            ::hinoki_kernel::irq::handle_interrupt();
        }

        fn install_interrupt_handler() {
            ::hinoki_arch_aarch64::exception::set_interrupt_handler(irq_entry);
        }

        fn timer(irq: u32, frequency_hz: u64) -> &'static dyn ::hinoki_interface::ClockEvent {
            TIMER.call_once(|| ::hinoki_arch_aarch64::GenericTimerEvent::new(irq, frequency_hz))
        }

        /// Builds the kernel's tables and turns the MMU and caches on (the Raspberry Pi
        /// runs with them off until here).
        fn paging_init(platform: &dyn ::hinoki_interface::Platform) -> Option<&'static dyn ::hinoki_interface::Mmu> {
            match ::hinoki_arch_aarch64::mmu::paging_init(platform) {
                Ok(mmu) => Some(MMU.call_once(|| mmu)),
                Err(error) => {
                    ::log::error!("{}: cannot build the kernel page tables, MMU stays off: {:?}", $model.board_name, error);
                    None
                }
            }
        }

        #[panic_handler]
        fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
            ::hinoki_kernel::panic::handle_panic(info)
        }
    };
}
