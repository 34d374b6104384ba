//! Console: a byte-oriented serial device the kernel logs to and the shell reads from.

/// A serial console. Implementations must be usable from any CPU and from panic context,
/// so they lock internally (or not at all) and never allocate.
pub trait Console: Sync {
    /// Driver name as shown in `dmesg` and `/proc/consoles`, e.g. `"pl011"`.
    fn name(&self) -> &'static str;

    /// Writes every byte, blocking until the device has accepted them.
    /// A `\n` is written as-is; the kernel's console layer adds the `\r`.
    fn write_bytes(&self, bytes: &[u8]);

    /// Returns one received byte if the device has one, without blocking.
    fn read_byte(&self) -> Option<u8>;

    /// Waits until everything written has left the device (used before power-off).
    fn flush(&self) {}

    /// Enables or disables the receive interrupt, for controllers that have one.
    /// Returns `false` when the device cannot interrupt (the kernel then polls).
    fn set_receive_interrupt(&self, _enabled: bool) -> bool {
        false
    }
}
