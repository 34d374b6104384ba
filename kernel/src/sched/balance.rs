//! SMP placement policy: CPU affinity masks, where a waking task goes, and when and how much the load balancer pulls. Pure functions over per-CPU snapshots.

/// Most CPUs the scheduler handles.
pub const MAX_CPUS: usize = 64;

/// A set of CPUs (Linux's `cpumask`), one bit per logical CPU id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuMask(pub u64);

impl CpuMask {
    /// Every CPU.
    pub const ALL: CpuMask = CpuMask(u64::MAX);

    /// Only `cpu`.
    pub const fn only(cpu: usize) -> CpuMask {
        CpuMask(1 << (cpu % MAX_CPUS))
    }

    /// Whether `cpu` is in the set.
    pub const fn contains(self, cpu: usize) -> bool {
        cpu < MAX_CPUS && self.0 & (1 << cpu) != 0
    }

    /// The set restricted to the first `count` CPUs.
    pub const fn within(self, count: usize) -> CpuMask {
        if count >= MAX_CPUS {
            self
        } else {
            CpuMask(self.0 & ((1 << count) - 1))
        }
    }

    /// Whether no CPU is in the set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// What the balancer knows of one CPU at a moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CpuLoad {
    /// Runnable tasks including the running one.
    pub nr_running: usize,
    /// Sum of weights (see `RunQueue::load`).
    pub load: u64,
    /// Whether the CPU runs its idle task.
    pub idle: bool,
}

/// Where a waking (or new) task with `affinity`, last run on `previous_cpu`, should be
/// queued among the first `cpu_count` CPUs (Linux's `select_task_rq` in its simplest form):
/// the only allowed CPU, else the previous CPU if it is idle (its caches are warm), else
/// any idle allowed CPU, else the allowed CPU with the least load (the previous one on a
/// tie). `None` if the mask allows no CPU. `load` reads a CPU's snapshot; the common
/// answers (one allowed CPU, an idle previous one) read at most one.
#[inline]
pub fn select_task_cpu(affinity: CpuMask, previous_cpu: usize, cpu_count: usize, load: impl Fn(usize) -> CpuLoad) -> Option<usize> {
    let allowed = affinity.within(cpu_count);
    if allowed.is_empty() {
        return None;
    }
    if allowed.0.is_power_of_two() {
        return Some(allowed.0.trailing_zeros() as usize);
    }
    if allowed.contains(previous_cpu) && load(previous_cpu).idle {
        return Some(previous_cpu);
    }
    let candidates = || (0..cpu_count.min(MAX_CPUS)).filter(|&cpu| allowed.contains(cpu));
    if let Some(idle) = candidates().find(|&cpu| load(cpu).idle) {
        return Some(idle);
    }
    candidates().min_by_key(|&cpu| {
        let snapshot = load(cpu);
        (snapshot.load, snapshot.nr_running, cpu != previous_cpu)
    })
}

/// Imbalance threshold in percent (Linux's `imbalance_pct` of a core-level domain).
pub const IMBALANCE_PERCENT: u64 = 117;

/// The periodic or idle balancer on `this_cpu` (Linux's `find_busiest_group` reduced to a
/// flat topology): the busiest CPU and how many tasks to pull from it, if pulling helps.
/// A CPU is busiest by load; it must run at least two tasks (one can keep running, one can
/// move), and its load must exceed ours by the threshold. Half the task difference moves,
/// at least one.
pub fn find_busiest(this_cpu: usize, cpus: &[CpuLoad]) -> Option<(usize, usize)> {
    let this = cpus.get(this_cpu)?;
    let (busiest, busiest_load) = cpus
        .iter()
        .enumerate()
        .filter(|&(cpu, load)| cpu != this_cpu && load.nr_running >= 2)
        .max_by_key(|&(cpu, load)| (load.load, load.nr_running, usize::MAX - cpu))?;
    if busiest_load.load * 100 <= this.load * IMBALANCE_PERCENT || busiest_load.nr_running <= this.nr_running + 1 {
        return None;
    }
    let difference = busiest_load.nr_running - this.nr_running;
    Some((busiest, (difference / 2).max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(nr_running: usize, idle: bool) -> CpuLoad {
        CpuLoad { nr_running, load: nr_running as u64 * 1024, idle }
    }

    #[test]
    fn masks() {
        assert!(CpuMask::only(3).contains(3));
        assert!(!CpuMask::only(3).contains(2));
        assert!(!CpuMask::ALL.contains(64));
        assert_eq!(CpuMask::ALL.within(4), CpuMask(0b1111));
        assert!(CpuMask::only(5).within(4).is_empty());
    }

    #[test]
    fn wakeup_prefers_warm_idle_then_any_idle_then_least_loaded() {
        let cpus = [cpu(2, false), cpu(0, true), cpu(1, false), cpu(0, true)];
        assert_eq!(select_task_cpu(CpuMask::ALL, 3, cpus.len(), |c| cpus[c]), Some(3));
        assert_eq!(select_task_cpu(CpuMask::ALL, 0, cpus.len(), |c| cpus[c]), Some(1));
        assert_eq!(select_task_cpu(CpuMask(0b101), 0, cpus.len(), |c| cpus[c]), Some(2));
        assert_eq!(select_task_cpu(CpuMask::only(0), 3, cpus.len(), |c| cpus[c]), Some(0), "affinity wins over idleness");
        assert_eq!(select_task_cpu(CpuMask::only(7), 0, cpus.len(), |c| cpus[c]), None);
        let busy = [cpu(1, false), cpu(1, false)];
        assert_eq!(select_task_cpu(CpuMask::ALL, 1, busy.len(), |c| busy[c]), Some(1), "ties stay on the previous CPU");
    }

    #[test]
    fn balancer_pulls_half_the_difference_only_when_it_helps() {
        let cpus = [cpu(0, true), cpu(4, false), cpu(2, false), cpu(1, false)];
        assert_eq!(find_busiest(0, &cpus), Some((1, 2)));
        assert_eq!(find_busiest(3, &cpus), Some((1, 1)));
        assert_eq!(find_busiest(2, &cpus), Some((1, 1)));
        assert_eq!(find_busiest(1, &cpus), None, "the busiest CPU pulls from nobody");
        assert_eq!(find_busiest(0, &[cpu(0, true), cpu(1, false)]), None, "a single running task stays");
        assert_eq!(find_busiest(0, &[cpu(2, false), cpu(3, false)]), None, "one task of difference is balanced");
        assert_eq!(find_busiest(5, &cpus), None);
    }

    #[test]
    fn repeated_balancing_converges() {
        let mut counts = [9usize, 0, 0, 3];
        for _ in 0..10 {
            for this in 0..counts.len() {
                let snapshot: Vec<CpuLoad> = counts.iter().map(|&n| cpu(n, n == 0)).collect();
                if let Some((busiest, moves)) = find_busiest(this, &snapshot) {
                    counts[busiest] -= moves;
                    counts[this] += moves;
                }
            }
        }
        assert_eq!(counts.iter().sum::<usize>(), 12);
        assert!(counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1, "{counts:?}");
    }
}
