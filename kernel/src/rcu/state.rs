//! The RCU grace-period state machine: plain logic over CPU masks, host-tested with simulated CPUs.
//!
//! Grace periods are numbered. Starting grace period `g` makes every online CPU owe a
//! quiescent state; once all have reported one, `g` is complete. A callback (or a
//! `synchronize_rcu` caller) registered while no grace period runs needs the next one;
//! registered while `g` runs it needs `g + 1`, because readers that began before the
//! registration may already have been counted for `g` on their CPU. Whenever a grace
//! period ends and a later one was requested, the next starts at once.

/// Most CPUs the mask can hold.
pub const MAX_RCU_CPUS: usize = 64;

/// The grace-period state of the whole system.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GracePeriodState {
    /// The last completed grace period.
    completed: u64,
    /// The current grace period (equal to `completed` when none runs).
    current: u64,
    /// Online CPUs that have not reported a quiescent state for `current`.
    waiting: u64,
    /// CPUs that take part.
    online: u64,
    /// The latest grace period anyone needs.
    requested: u64,
}

impl GracePeriodState {
    /// No grace period yet, the CPUs in `online` taking part.
    pub const fn new(online: u64) -> Self {
        GracePeriodState { completed: 0, current: 0, waiting: 0, online, requested: 0 }
    }

    /// Whether a grace period is running.
    pub fn in_progress(&self) -> bool {
        self.current != self.completed
    }

    /// The last completed grace period.
    pub fn completed(&self) -> u64 {
        self.completed
    }

    /// The current grace period (equal to [`completed`](Self::completed) when none runs).
    pub fn current(&self) -> u64 {
        self.current
    }

    /// CPUs still owing a quiescent state.
    pub fn waiting(&self) -> u64 {
        self.waiting
    }

    /// CPUs taking part.
    pub fn online(&self) -> u64 {
        self.online
    }

    /// Asks for a grace period that covers every reader running now; returns its number
    /// (done when [`completed`](Self::completed) reaches it) and starts one if none runs.
    pub fn request(&mut self) -> u64 {
        let needed = if self.in_progress() { self.current + 1 } else { self.completed + 1 };
        self.requested = self.requested.max(needed);
        if !self.in_progress() {
            self.start();
        }
        needed
    }

    fn start(&mut self) {
        self.current = self.completed + 1;
        self.waiting = self.online;
        if self.waiting == 0 {
            self.finish();
        }
    }

    fn finish(&mut self) {
        self.completed = self.current;
        if self.requested > self.completed {
            self.start();
        }
    }

    /// Records that `cpu` passed a quiescent state now. Returns whether a grace period
    /// ended because of it.
    pub fn report_quiescent(&mut self, cpu: usize) -> bool {
        let bit = 1u64 << (cpu % MAX_RCU_CPUS);
        if !self.in_progress() || self.waiting & bit == 0 {
            return false;
        }
        self.waiting &= !bit;
        if self.waiting == 0 {
            self.finish();
            return true;
        }
        false
    }

    /// Takes `cpu` into grace periods or out of them; a CPU going offline no longer holds
    /// up the current one. Returns whether a grace period ended because of it.
    pub fn set_online(&mut self, cpu: usize, online: bool) -> bool {
        let bit = 1u64 << (cpu % MAX_RCU_CPUS);
        if online {
            self.online |= bit;
            return false;
        }
        self.online &= !bit;
        self.report_quiescent(cpu)
    }

    /// Whether grace period `needed` is complete.
    pub fn is_complete(&self, needed: u64) -> bool {
        self.completed >= needed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn a_grace_period_needs_every_online_cpu() {
        let mut state = GracePeriodState::new(0b1011);
        let needed = state.request();
        assert_eq!(needed, 1);
        assert!(state.in_progress());
        assert!(!state.report_quiescent(0));
        assert!(!state.report_quiescent(0), "a second report from the same CPU does not count");
        assert!(!state.report_quiescent(2), "an offline CPU does not count");
        assert!(!state.report_quiescent(1));
        assert!(!state.is_complete(needed));
        assert!(state.report_quiescent(3));
        assert!(state.is_complete(needed));
        assert!(!state.in_progress());
    }

    #[test]
    fn a_request_during_a_grace_period_needs_the_next() {
        let mut state = GracePeriodState::new(0b11);
        assert_eq!(state.request(), 1);
        state.report_quiescent(0);
        // CPU 0 already reported for 1: a reader it starts now may run past 1's end.
        assert_eq!(state.request(), 2);
        assert!(state.report_quiescent(1));
        assert_eq!(state.completed(), 1);
        assert!(state.in_progress(), "grace period 2 was requested and starts at once");
        assert_eq!(state.current(), 2);
        assert_eq!(state.waiting(), 0b11);
        state.report_quiescent(1);
        assert!(state.report_quiescent(0));
        assert!(state.is_complete(2));
        assert!(!state.in_progress());
    }

    #[test]
    fn going_offline_releases_a_grace_period() {
        let mut state = GracePeriodState::new(0b111);
        let needed = state.request();
        state.report_quiescent(0);
        state.report_quiescent(1);
        assert!(state.set_online(2, false));
        assert!(state.is_complete(needed));
        assert_eq!(state.request(), needed + 1);
        assert_eq!(state.waiting(), 0b011);
        state.set_online(2, true);
        assert_eq!(state.online(), 0b111);
    }

    #[test]
    fn no_online_cpu_completes_at_once() {
        let mut state = GracePeriodState::new(0);
        let needed = state.request();
        assert!(state.is_complete(needed));
    }

    /// Simulated CPUs run readers and report quiescent states only outside them (as the
    /// kernel does at a context switch, in the idle loop and from a tick that interrupted
    /// preemptible code). Every time a grace period completes, no reader that began before
    /// that grace period started may still run; every requested grace period completes.
    #[test]
    fn simulated_cpus_never_end_a_grace_period_under_a_reader() {
        const CPUS: usize = 4;
        let mut seed = 0x9e37_79b9_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut state = GracePeriodState::new((1 << CPUS) - 1);
        // Per CPU: the step its current reader began at.
        let mut reader_since: [Option<u64>; CPUS] = [None; CPUS];
        // Step at which each grace period started.
        let mut started_at: Vec<(u64, u64)> = Vec::new();
        // Requests not yet complete: (grace period needed, step of the request).
        let mut pending: Vec<(u64, u64)> = Vec::new();
        let mut requests = 0;
        let mut last_current = 0;
        for step in 0..200_000u64 {
            let cpu = (next() % CPUS as u64) as usize;
            match next() % 8 {
                0 | 1 => {
                    if reader_since[cpu].is_none() {
                        reader_since[cpu] = Some(step);
                    }
                }
                2 | 3 => reader_since[cpu] = None,
                4 => {
                    pending.push((state.request(), step));
                    requests += 1;
                }
                _ => {
                    if reader_since[cpu].is_none() {
                        state.report_quiescent(cpu);
                    }
                }
            }
            if state.current() != last_current {
                last_current = state.current();
                started_at.push((last_current, step));
            }
            // A completed grace period must not have started after an active reader
            // began (that reader pre-dates it and would have to end first).
            for since in reader_since.iter().flatten() {
                for &(number, start) in &started_at {
                    if number <= state.completed() {
                        assert!(start < *since, "grace period {} (started at {}) completed under a reader from {}", number, start, since);
                    }
                }
            }
            started_at.retain(|&(number, _)| number + 1 >= state.completed());
            // A request's grace period may complete only once every reader that was
            // running when it was made has ended (what `synchronize_rcu` promises).
            for &(needed, requested_at) in &pending {
                if state.is_complete(needed) {
                    for since in reader_since.iter().flatten() {
                        assert!(*since > requested_at, "a request at step {} completed under a reader from {}", requested_at, since);
                    }
                }
            }
            pending.retain(|&(needed, _)| !state.is_complete(needed));
        }
        // Drain: readers end and every CPU reports until nothing is pending.
        for _ in 0..10 {
            for cpu in 0..CPUS {
                state.report_quiescent(cpu);
            }
        }
        assert!(pending.iter().all(|&(needed, _)| state.is_complete(needed)), "a requested grace period never completed");
        assert!(requests > 1000);
        assert!(state.completed() > 100, "too few grace periods completed: {}", state.completed());
    }
}
