//! Scheduling policies and parameters: the real-time classes (FIFO, round-robin) over 100 priority levels and the fair class with Linux's nice-to-weight table.

/// Number of real-time priority levels (Linux's `MAX_RT_PRIO`).
pub const MAX_RT_PRIO: usize = 100;

/// Highest real-time priority a task may be given (`sched_get_priority_max(SCHED_FIFO)`).
pub const MAX_USER_RT_PRIO: u8 = 99;

/// Weight of a nice-0 task (Linux's `NICE_0_LOAD` without the fixed-point scaling).
pub const NICE_0_LOAD: u64 = 1024;

/// Round-robin time slice (Linux's `RR_TIMESLICE`, 100 ms).
pub const RR_TIMESLICE_NANOSECONDS: u64 = 100_000_000;

/// Target latency of the fair class: every runnable task runs once per period (6 ms).
pub const SCHED_LATENCY_NANOSECONDS: u64 = 6_000_000;

/// Shortest slice the fair class hands out (0.75 ms).
pub const MIN_GRANULARITY_NANOSECONDS: u64 = 750_000;

/// How far ahead in vruntime a waking task must be to preempt the current one (1 ms).
pub const WAKEUP_GRANULARITY_NANOSECONDS: u64 = 1_000_000;

/// Linux's `sched_prio_to_weight`: nice -20 at index 0 to nice 19 at index 39. Each step is
/// about 1.25x, so one nice level is about 10% of CPU time between two competing tasks.
pub const NICE_TO_WEIGHT: [u64; 40] = [
    88761, 71755, 56483, 46273, 36291, //
    29154, 23254, 18705, 14949, 11916, //
    9548, 7620, 6100, 4904, 3906, //
    3121, 2501, 1991, 1586, 1277, //
    1024, 820, 655, 526, 423, //
    335, 272, 215, 172, 137, //
    110, 87, 70, 56, 45, //
    36, 29, 23, 18, 15,
];

/// Lowest nice value (highest weight).
pub const MIN_NICE: i8 = -20;
/// Highest nice value (lowest weight).
pub const MAX_NICE: i8 = 19;

/// A scheduling policy (Linux's `SCHED_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// `SCHED_OTHER`/`SCHED_NORMAL`: the fair class, weighted by nice.
    Normal,
    /// `SCHED_FIFO`: real-time, runs until it blocks, yields or a higher priority wakes.
    Fifo,
    /// `SCHED_RR`: real-time like FIFO, with a time slice among equal priorities.
    RoundRobin,
}

impl Policy {
    /// Whether the policy belongs to the real-time class.
    pub fn is_real_time(self) -> bool {
        matches!(self, Policy::Fifo | Policy::RoundRobin)
    }

    /// The name `chrt` and `ps` print: `"OTHER"`, `"FIFO"`, `"RR"`.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Normal => "OTHER",
            Policy::Fifo => "FIFO",
            Policy::RoundRobin => "RR",
        }
    }

    /// `ps -o cls` style abbreviation: `"TS"`, `"FF"`, `"RR"`.
    pub fn class_abbreviation(self) -> &'static str {
        match self {
            Policy::Normal => "TS",
            Policy::Fifo => "FF",
            Policy::RoundRobin => "RR",
        }
    }
}

/// Why a policy/priority combination was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParameterError {
    /// A real-time priority outside 1..=99 or a non-zero priority for the fair class.
    InvalidPriority,
    /// A nice value outside -20..=19.
    InvalidNice,
}

/// A task's scheduling parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedParams {
    /// The class and policy.
    pub policy: Policy,
    /// Real-time priority 1..=99 (higher is more urgent); 0 in the fair class.
    pub rt_priority: u8,
    /// Nice value -20..=19; used by the fair class only, kept across policy changes.
    pub nice: i8,
}

impl SchedParams {
    /// Fair-class parameters with `nice`.
    pub const fn normal(nice: i8) -> Self {
        SchedParams { policy: Policy::Normal, rt_priority: 0, nice }
    }

    /// Real-time parameters.
    pub const fn real_time(policy: Policy, rt_priority: u8) -> Self {
        SchedParams { policy, rt_priority, nice: 0 }
    }

    /// Checks the ranges: RT priorities 1..=99, fair priority 0, nice -20..=19.
    pub fn validate(self) -> Result<Self, ParameterError> {
        if !(MIN_NICE..=MAX_NICE).contains(&self.nice) {
            return Err(ParameterError::InvalidNice);
        }
        let valid_priority =
            if self.policy.is_real_time() { (1..=MAX_USER_RT_PRIO).contains(&self.rt_priority) } else { self.rt_priority == 0 };
        if valid_priority {
            Ok(self)
        } else {
            Err(ParameterError::InvalidPriority)
        }
    }

    /// Linux's kernel-internal `prio`: 0..=99 for real time (lower is more urgent, 99 -
    /// rt_priority), 100..=139 for the fair class (120 + nice).
    pub fn kernel_priority(self) -> u32 {
        if self.policy.is_real_time() {
            (MAX_RT_PRIO as u32 - 1) - self.rt_priority.min(MAX_USER_RT_PRIO) as u32
        } else {
            (MAX_RT_PRIO as i32 + 20 + self.nice as i32) as u32
        }
    }

    /// The priority `ps` prints in `/proc/<id>/stat` (`prio - 100`: -100..-2 real time, 0..39 fair).
    pub fn displayed_priority(self) -> i32 {
        self.kernel_priority() as i32 - MAX_RT_PRIO as i32
    }

    /// The fair-class load weight of this task.
    pub fn weight(self) -> u64 {
        nice_to_weight(self.nice)
    }

    /// Packs the parameters in 32 bits (for an atomic): policy, priority, nice.
    pub fn pack(self) -> u32 {
        let policy = match self.policy {
            Policy::Normal => 0u32,
            Policy::Fifo => 1,
            Policy::RoundRobin => 2,
        };
        policy | (self.rt_priority as u32) << 8 | (self.nice as u8 as u32) << 16
    }

    /// Reverses [`pack`](Self::pack).
    pub fn unpack(packed: u32) -> Self {
        let policy = match packed & 0xff {
            1 => Policy::Fifo,
            2 => Policy::RoundRobin,
            _ => Policy::Normal,
        };
        SchedParams { policy, rt_priority: (packed >> 8) as u8, nice: (packed >> 16) as u8 as i8 }
    }
}

/// The load weight of `nice` (clamped to -20..=19).
pub fn nice_to_weight(nice: i8) -> u64 {
    NICE_TO_WEIGHT[(nice.clamp(MIN_NICE, MAX_NICE) as i32 + 20) as usize]
}

/// Linux's `calc_delta_fair`: `delta` nanoseconds of run time in virtual time for a task of
/// `weight` (a nice-0 task's vruntime advances at wall speed; heavier ones slower).
pub fn calc_delta_fair(delta: u64, weight: u64) -> u64 {
    if weight == NICE_0_LOAD {
        return delta;
    }
    ((delta as u128 * NICE_0_LOAD as u128) / weight.max(1) as u128).min(u64::MAX as u128) as u64
}

/// The fair-class scheduling period for `running` tasks: the target latency, stretched so
/// that nobody's slice falls under the minimum granularity.
pub fn sched_period(running: u64) -> u64 {
    let stretched = running.saturating_mul(MIN_GRANULARITY_NANOSECONDS);
    stretched.max(SCHED_LATENCY_NANOSECONDS)
}

/// The wall-time slice of a task of `weight` among runnable tasks of `total_weight` (Linux's
/// `sched_slice`): its share of the period, at least the minimum granularity.
pub fn sched_slice(weight: u64, total_weight: u64, running: u64) -> u64 {
    let period = sched_period(running);
    let share = (period as u128 * weight as u128 / total_weight.max(1) as u128) as u64;
    share.max(MIN_GRANULARITY_NANOSECONDS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_weights_match_linux() {
        assert_eq!(nice_to_weight(0), 1024);
        assert_eq!(nice_to_weight(-20), 88761);
        assert_eq!(nice_to_weight(19), 15);
        assert_eq!(nice_to_weight(100), 15);
        for pair in NICE_TO_WEIGHT.windows(2) {
            let ratio = pair[0] as f64 / pair[1] as f64;
            assert!((1.19..1.32).contains(&ratio), "{} / {} = {}", pair[0], pair[1], ratio);
        }
    }

    #[test]
    fn virtual_time_scales_inversely_with_weight() {
        assert_eq!(calc_delta_fair(1_000_000, 1024), 1_000_000);
        assert_eq!(calc_delta_fair(1_000_000, 2048), 500_000);
        assert_eq!(calc_delta_fair(1_000, 15), 68_266);
        assert_eq!(calc_delta_fair(u64::MAX, 1), u64::MAX);
    }

    #[test]
    fn slices_share_the_period_by_weight() {
        assert_eq!(sched_period(2), SCHED_LATENCY_NANOSECONDS);
        assert_eq!(sched_period(16), 16 * MIN_GRANULARITY_NANOSECONDS);
        assert_eq!(sched_slice(1024, 2048, 2), 3_000_000);
        assert_eq!(sched_slice(15, 88761 + 15, 2), MIN_GRANULARITY_NANOSECONDS);
    }

    #[test]
    fn parameters_validate_and_round_trip() {
        assert!(SchedParams::real_time(Policy::Fifo, 0).validate().is_err());
        assert!(SchedParams::real_time(Policy::RoundRobin, 100).validate().is_err());
        assert!(SchedParams::normal(20).validate().is_err());
        assert!(SchedParams { policy: Policy::Normal, rt_priority: 5, nice: 0 }.validate().is_err());
        for params in [
            SchedParams::normal(-20),
            SchedParams::normal(19),
            SchedParams::real_time(Policy::RoundRobin, 99),
            SchedParams::real_time(Policy::Fifo, 1),
        ] {
            assert_eq!(params.validate(), Ok(params));
            assert_eq!(SchedParams::unpack(params.pack()), params);
        }
        assert_eq!(SchedParams::real_time(Policy::Fifo, 99).kernel_priority(), 0);
        assert_eq!(SchedParams::real_time(Policy::Fifo, 1).kernel_priority(), 98);
        assert_eq!(SchedParams::normal(0).kernel_priority(), 120);
        assert_eq!(SchedParams::normal(-20).displayed_priority(), 0);
        assert_eq!(SchedParams::real_time(Policy::Fifo, 50).displayed_priority(), -51);
    }
}
