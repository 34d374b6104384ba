//! The hierarchical timer wheel: plain logic over jiffies, keyed by caller-chosen timer keys, host-tested with a simulated clock.
//!
//! [`LEVELS`] levels of [`SLOTS`] slots each; level `L` has a granularity of `SLOTS^L`
//! jiffies, so the wheel spans `SLOTS^LEVELS` jiffies (2^36, about 21 years at HZ = 100)
//! ahead of its clock. A timer due `delta` jiffies ahead sits at the lowest level whose
//! span covers `delta`, in the slot its expiry selects there. Whenever the clock reaches a
//! multiple of a level's granularity, that level's next slot is *cascaded*: its timers are
//! inserted again, now landing one level lower or more. So every timer expires at exactly
//! the jiffy it asked for (never early, never late by the level granularity), at the price
//! of re-inserting far timers a few times. A timer further ahead than the span waits in
//! the last level and is re-inserted there until it comes within range.
//!
//! Timers due on the same jiffy expire in the order they were added. Expired timers are
//! moved to an expired list that the caller drains one by one ([`TimerWheel::pop_expired`]),
//! so it can drop its lock around each callback; a removed timer leaves that list too.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;

/// Bits of slot index per level.
pub const SLOT_BITS: u32 = 6;
/// Slots per level.
pub const SLOTS: usize = 1 << SLOT_BITS;
/// Levels of the wheel.
pub const LEVELS: usize = 6;
/// How far ahead (in jiffies) the wheel places timers exactly; later ones wait in the last level.
pub const WHEEL_SPAN: u64 = 1 << (SLOT_BITS * LEVELS as u32);

/// Where a pending timer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Location {
    Slot { level: u8, slot: u8 },
    Expired,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    expires: u64,
    location: Location,
}

/// A timer wheel over keys `K` (each key pending at most once).
pub struct TimerWheel<K: Ord + Copy> {
    /// The next jiffy to process: every timer due before it has expired.
    clock: u64,
    slots: Vec<Vec<K>>,
    /// Timers per level, to skip empty stretches quickly.
    level_counts: [usize; LEVELS],
    entries: BTreeMap<K, Entry>,
    expired: VecDeque<K>,
    cascades: u64,
}

/// Why a timer could not be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WheelError {
    /// The key is already pending; remove it first.
    AlreadyPending,
}

fn granularity_shift(level: usize) -> u32 {
    SLOT_BITS * level as u32
}

impl<K: Ord + Copy> TimerWheel<K> {
    /// An empty wheel whose next jiffy to process is `clock`.
    pub fn new(clock: u64) -> Self {
        TimerWheel {
            clock,
            slots: (0..LEVELS * SLOTS).map(|_| Vec::new()).collect(),
            level_counts: [0; LEVELS],
            entries: BTreeMap::new(),
            expired: VecDeque::new(),
            cascades: 0,
        }
    }

    /// The next jiffy to process.
    pub fn clock(&self) -> u64 {
        self.clock
    }

    /// Pending timers (in the wheel or expired and not yet popped).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no timer is pending.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Timers re-inserted by cascading so far.
    pub fn cascades(&self) -> u64 {
        self.cascades
    }

    /// Whether `key` is pending, and its expiry.
    pub fn expires(&self, key: K) -> Option<u64> {
        self.entries.get(&key).map(|entry| entry.expires)
    }

    /// Adds `key` to expire at jiffy `expires` (a past jiffy expires at the next
    /// [`advance`](Self::advance)).
    ///
    /// # Errors
    /// [`WheelError::AlreadyPending`] if `key` is pending.
    pub fn add(&mut self, key: K, expires: u64) -> Result<(), WheelError> {
        if self.entries.contains_key(&key) {
            return Err(WheelError::AlreadyPending);
        }
        let location = self.place(key, expires);
        self.entries.insert(key, Entry { expires, location });
        Ok(())
    }

    /// Puts `key` in the slot for `expires` relative to the clock and returns where.
    fn place(&mut self, key: K, expires: u64) -> Location {
        let due = expires.max(self.clock);
        let delta = due - self.clock;
        let (level, index_time) = if delta >= WHEEL_SPAN {
            (LEVELS - 1, self.clock + WHEEL_SPAN - 1)
        } else {
            let level = (0..LEVELS).find(|&level| delta < 1 << granularity_shift(level + 1)).unwrap_or(LEVELS - 1);
            (level, due)
        };
        let slot = ((index_time >> granularity_shift(level)) as usize) & (SLOTS - 1);
        self.slots[level * SLOTS + slot].push(key);
        self.level_counts[level] += 1;
        Location::Slot { level: level as u8, slot: slot as u8 }
    }

    /// Removes `key`; returns whether it was pending.
    pub fn remove(&mut self, key: K) -> bool {
        let Some(entry) = self.entries.remove(&key) else { return false };
        match entry.location {
            Location::Slot { level, slot } => {
                let list = &mut self.slots[level as usize * SLOTS + slot as usize];
                if let Some(position) = list.iter().position(|&other| other == key) {
                    list.remove(position);
                    self.level_counts[level as usize] -= 1;
                }
            }
            Location::Expired => {
                if let Some(position) = self.expired.iter().position(|&other| other == key) {
                    self.expired.remove(position);
                }
            }
        }
        true
    }

    /// Processes every jiffy up to and including `now`: timers due by then move to the
    /// expired list, in expiry order (adding order within a jiffy). Returns how many
    /// expired.
    pub fn advance(&mut self, now: u64) -> usize {
        let mut expired = 0;
        while self.clock <= now {
            if self.entries.len() == self.expired.len() {
                // Nothing in the wheel: jump straight past `now`.
                self.clock = now + 1;
                break;
            }
            let index = (self.clock as usize) & (SLOTS - 1);
            if index == 0 {
                self.cascade_from(1);
            }
            let slot = core::mem::take(&mut self.slots[index]);
            self.level_counts[0] -= slot.len();
            for key in slot {
                if let Some(entry) = self.entries.get_mut(&key) {
                    entry.location = Location::Expired;
                }
                self.expired.push_back(key);
                expired += 1;
            }
            self.clock += 1;
            self.skip_empty_levels(now);
        }
        expired
    }

    /// Cascades level `level` and, while the clock sits on a multiple of a level's
    /// granularity, the levels above it (higher levels first are not needed: a level's
    /// slot is only cascaded when the levels below wrapped).
    fn cascade_from(&mut self, level: usize) {
        let mut level = level;
        while level < LEVELS {
            let slot = ((self.clock >> granularity_shift(level)) as usize) & (SLOTS - 1);
            let keys = core::mem::take(&mut self.slots[level * SLOTS + slot]);
            self.level_counts[level] -= keys.len();
            for key in keys {
                let Some(expires) = self.entries.get(&key).map(|entry| entry.expires) else { continue };
                let location = self.place(key, expires);
                if let Some(entry) = self.entries.get_mut(&key) {
                    entry.location = location;
                }
                self.cascades += 1;
            }
            if slot != 0 {
                break;
            }
            level += 1;
        }
    }

    /// While the lowest levels are empty, moves the clock to the next jiffy where
    /// something can happen (the next multiple of the lowest non-empty level's
    /// granularity below it), not past `now + 1`.
    fn skip_empty_levels(&mut self, now: u64) {
        let empty_below = self.level_counts.iter().take_while(|&&count| count == 0).count();
        if empty_below == 0 || self.clock > now {
            return;
        }
        let shift = granularity_shift(empty_below.min(LEVELS - 1));
        let boundary = ((self.clock >> shift) + u64::from(self.clock & ((1 << shift) - 1) != 0)) << shift;
        self.clock = boundary.min(now + 1).max(self.clock);
    }

    /// Takes the next expired timer: its key and the expiry it had.
    pub fn pop_expired(&mut self) -> Option<(K, u64)> {
        let key = self.expired.pop_front()?;
        let entry = self.entries.remove(&key)?;
        Some((key, entry.expires))
    }

    /// The earliest expiry among pending timers (a linear look at the entries).
    pub fn next_expiry(&self) -> Option<u64> {
        self.entries.values().map(|entry| entry.expires).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn drain(wheel: &mut TimerWheel<u32>) -> Vec<(u32, u64)> {
        core::iter::from_fn(|| wheel.pop_expired()).collect()
    }

    /// Steps the clock one jiffy at a time to `end`, recording (key, expiry, jiffy it expired at).
    fn run_until(wheel: &mut TimerWheel<u32>, end: u64) -> Vec<(u32, u64, u64)> {
        let mut fired = Vec::new();
        for now in wheel.clock()..=end {
            wheel.advance(now);
            for (key, expires) in drain(wheel) {
                fired.push((key, expires, now));
            }
        }
        fired
    }

    #[test]
    fn timers_expire_in_order_on_their_jiffy() {
        let mut wheel = TimerWheel::new(0);
        wheel.add(1, 5).unwrap();
        wheel.add(2, 3).unwrap();
        wheel.add(3, 5).unwrap();
        wheel.add(4, 0).unwrap();
        let fired = run_until(&mut wheel, 10);
        assert_eq!(fired, vec![(4, 0, 0), (2, 3, 3), (1, 5, 5), (3, 5, 5)]);
        assert!(wheel.is_empty());
    }

    #[test]
    fn far_timers_cascade_and_expire_exactly() {
        let mut wheel = TimerWheel::new(10);
        let expiries = [63u64, 64, 65, 100, 4095, 4096, 4097, 5000, 262_143, 262_144, 300_001];
        for (key, &expires) in expiries.iter().enumerate() {
            wheel.add(key as u32, expires + 10).unwrap();
        }
        let fired = run_until(&mut wheel, 300_100);
        assert_eq!(fired.len(), expiries.len());
        for (index, &(key, expires, at)) in fired.iter().enumerate() {
            assert_eq!(key as usize, index, "expired out of order");
            assert_eq!(expires, at, "timer {} due at {} expired at {}", key, expires, at);
        }
        assert!(wheel.cascades() > 0, "timers beyond level 0 must have cascaded");
    }

    #[test]
    fn advancing_in_big_steps_expires_everything_due() {
        let mut wheel = TimerWheel::new(0);
        for key in 0..200u32 {
            wheel.add(key, (key as u64 * 7919) % 100_000).unwrap();
        }
        wheel.advance(50_000);
        let fired = drain(&mut wheel);
        assert!(fired.iter().all(|&(_, expires)| expires <= 50_000));
        assert!(fired.windows(2).all(|pair| pair[0].1 <= pair[1].1), "not in expiry order");
        let due = (0..200u64).filter(|key| (key * 7919) % 100_000 <= 50_000).count();
        assert_eq!(fired.len(), due);
        wheel.advance(100_000);
        assert_eq!(drain(&mut wheel).len(), 200 - due);
    }

    #[test]
    fn modify_and_delete_pending_timers() {
        let mut wheel = TimerWheel::new(0);
        wheel.add(1, 100).unwrap();
        wheel.add(2, 5000).unwrap();
        assert_eq!(wheel.add(1, 7), Err(WheelError::AlreadyPending));
        // Modify: remove and add again at a new expiry.
        assert!(wheel.remove(1));
        wheel.add(1, 7).unwrap();
        assert!(wheel.remove(2));
        assert!(!wheel.remove(2));
        assert_eq!(run_until(&mut wheel, 6000), vec![(1, 7, 7)]);
    }

    #[test]
    fn removing_an_expired_timer_before_it_is_popped() {
        let mut wheel = TimerWheel::new(0);
        wheel.add(1, 2).unwrap();
        wheel.add(2, 2).unwrap();
        assert_eq!(wheel.advance(2), 2);
        assert!(wheel.remove(1));
        assert_eq!(drain(&mut wheel), vec![(2, 2)]);
        assert!(wheel.is_empty());
    }

    #[test]
    fn past_deadlines_expire_at_once() {
        let mut wheel = TimerWheel::new(1000);
        wheel.add(9, 3).unwrap();
        wheel.advance(1000);
        assert_eq!(drain(&mut wheel), vec![(9, 3)]);
    }

    #[test]
    fn timers_beyond_the_span_wait_in_the_last_level() {
        let start = 5;
        let mut wheel = TimerWheel::new(start);
        let far = start + WHEEL_SPAN * 2 + 12_345;
        wheel.add(1, far).unwrap();
        wheel.add(2, start + WHEEL_SPAN - 1).unwrap();
        wheel.advance(far - 1);
        assert_eq!(drain(&mut wheel), vec![(2, start + WHEEL_SPAN - 1)]);
        assert_eq!(wheel.expires(1), Some(far));
        wheel.advance(far);
        assert_eq!(drain(&mut wheel), vec![(1, far)]);
    }

    #[test]
    fn re_adding_from_a_callback_for_a_later_jiffy() {
        let mut wheel = TimerWheel::new(0);
        wheel.add(1, 3).unwrap();
        let mut fired_at = Vec::new();
        for now in 0..=40 {
            wheel.advance(now);
            while let Some((key, _)) = wheel.pop_expired() {
                fired_at.push(now);
                if fired_at.len() < 4 {
                    wheel.add(key, now + 10).unwrap();
                }
            }
        }
        assert_eq!(fired_at, vec![3, 13, 23, 33]);
    }

    /// As the kernel drives it: the wheel is advanced only while it holds timers, so its
    /// clock lags the jiffies counter; timers are armed relative to jiffies, sometimes
    /// between two advances of several jiffies.
    #[test]
    fn a_lagging_clock_still_expires_in_order() {
        let mut seed = 0x1234_5678_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut wheel = TimerWheel::new(0);
        let mut jiffies = 0u64;
        let mut model: BTreeMap<u32, u64> = BTreeMap::new();
        let mut key = 0u32;
        for _ in 0..20_000 {
            jiffies += next() % [1, 3, 70, 5000][(next() % 4) as usize];
            if next() % 3 == 0 {
                for _ in 0..(next() % 8) {
                    key += 1;
                    // At the earliest the next jiffy: a timer armed for a jiffy the wheel already
                    // processed expires at the next advance instead.
                    let expires = jiffies + 1 + next() % [4, 70, 5000][(next() % 3) as usize];
                    wheel.add(key, expires).unwrap();
                    model.insert(key, expires);
                }
            }
            if !wheel.is_empty() {
                wheel.advance(jiffies);
                let fired = drain(&mut wheel);
                assert!(fired.windows(2).all(|pair| pair[0].1 <= pair[1].1), "out of order: {:?}", fired);
                for (key, expires) in &fired {
                    assert!(*expires <= jiffies);
                    assert_eq!(model.remove(key), Some(*expires));
                }
                assert!(model.values().all(|&expires| expires > jiffies), "a due timer did not expire");
            }
        }
    }

    #[test]
    fn randomized_against_a_sorted_model() {
        // A fixed pseudo-random sequence of adds, removes and clock steps, checked against
        // the obvious model: every timer expires exactly at its jiffy, none lost.
        let mut seed = 0x2545_f491_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut wheel = TimerWheel::new(0);
        let mut model: BTreeMap<u32, u64> = BTreeMap::new();
        let mut now = 0u64;
        for _ in 0..3000 {
            let key = (next() % 64) as u32;
            match next() % 4 {
                0 | 1 => {
                    let expires = now + next() % [10, 100, 5000, 300_000][(next() % 4) as usize];
                    wheel.remove(key);
                    wheel.add(key, expires).unwrap();
                    model.insert(key, expires);
                }
                2 => assert_eq!(wheel.remove(key), model.remove(&key).is_some()),
                _ => {
                    let target = now + next() % 3000;
                    wheel.advance(target);
                    let fired = drain(&mut wheel);
                    let expected: Vec<(u32, u64)> = model.iter().filter(|(_, &expires)| expires <= target).map(|(&k, &e)| (k, e)).collect();
                    assert_eq!(fired.len(), expected.len());
                    for (key, expires) in &fired {
                        assert_eq!(model.remove(key), Some(*expires));
                    }
                    assert!(fired.windows(2).all(|pair| pair[0].1 <= pair[1].1));
                    now = target + 1;
                }
            }
        }
        assert_eq!(wheel.len(), model.len());
    }
}
