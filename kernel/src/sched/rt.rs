//! The real-time class's queue: one FIFO list per priority level and a bitmap of non-empty levels, so picking the next task is O(1).

use alloc::collections::VecDeque;

use super::policy::MAX_RT_PRIO;

const BITMAP_WORDS: usize = MAX_RT_PRIO.div_ceil(64);

/// Real-time tasks by kernel priority (0 most urgent, 99 least), FIFO within a level.
pub struct RtQueue<T> {
    levels: [VecDeque<T>; MAX_RT_PRIO],
    bitmap: [u64; BITMAP_WORDS],
    count: usize,
}

impl<T> RtQueue<T> {
    /// An empty queue.
    pub fn new() -> Self {
        RtQueue { levels: core::array::from_fn(|_| VecDeque::new()), bitmap: [0; BITMAP_WORDS], count: 0 }
    }

    /// Number of queued tasks.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no task is queued.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Queues `task` at kernel priority `level` (clamped to 0..=99), behind its equals or,
    /// with `at_head`, in front of them (a preempted task keeps its place).
    #[inline(always)]
    pub fn push(&mut self, level: usize, task: T, at_head: bool) {
        let level = level.min(MAX_RT_PRIO - 1);
        if at_head {
            self.levels[level].push_front(task);
        } else {
            self.levels[level].push_back(task);
        }
        self.bitmap[level / 64] |= 1 << (level % 64);
        self.count += 1;
    }

    /// The most urgent non-empty level, found through the bitmap.
    pub fn highest_level(&self) -> Option<usize> {
        self.bitmap.iter().enumerate().find(|(_, &word)| word != 0).map(|(index, word)| index * 64 + word.trailing_zeros() as usize)
    }

    /// The task that would be picked next, without removing it.
    pub fn peek(&self) -> Option<&T> {
        self.highest_level().and_then(|level| self.levels[level].front())
    }

    /// Removes and returns the first task of the most urgent level.
    pub fn pop(&mut self) -> Option<T> {
        let level = self.highest_level()?;
        let task = self.levels[level].pop_front()?;
        self.after_removal(level);
        Some(task)
    }

    /// Removes the first task at `level` matching `predicate`.
    pub fn remove(&mut self, level: usize, mut predicate: impl FnMut(&T) -> bool) -> Option<T> {
        let level = level.min(MAX_RT_PRIO - 1);
        let position = self.levels[level].iter().position(&mut predicate)?;
        let task = self.levels[level].remove(position)?;
        self.after_removal(level);
        Some(task)
    }

    /// Number of tasks queued at `level`.
    pub fn level_len(&self, level: usize) -> usize {
        self.levels.get(level).map_or(0, VecDeque::len)
    }

    /// Calls `visit` with every queued task, most urgent first.
    pub fn for_each(&self, mut visit: impl FnMut(&T)) {
        self.levels.iter().flatten().for_each(&mut visit);
    }

    fn after_removal(&mut self, level: usize) {
        if self.levels[level].is_empty() {
            self.bitmap[level / 64] &= !(1 << (level % 64));
        }
        self.count -= 1;
    }
}

impl<T> Default for RtQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_most_urgent_level_then_fifo_order() {
        let mut queue = RtQueue::new();
        queue.push(50, "a", false);
        queue.push(10, "b", false);
        queue.push(50, "c", false);
        queue.push(99, "d", false);
        queue.push(64, "e", false);
        assert_eq!(queue.len(), 5);
        assert_eq!(queue.highest_level(), Some(10));
        let order: Vec<_> = core::iter::from_fn(|| queue.pop()).collect();
        assert_eq!(order, ["b", "a", "c", "e", "d"]);
        assert!(queue.is_empty());
        assert_eq!(queue.highest_level(), None);
    }

    #[test]
    fn head_insertion_and_removal_keep_the_bitmap_right() {
        let mut queue = RtQueue::new();
        queue.push(70, 1, false);
        queue.push(70, 2, true);
        assert_eq!(queue.peek(), Some(&2));
        assert_eq!(queue.remove(70, |&t| t == 2), Some(2));
        assert_eq!(queue.remove(70, |&t| t == 2), None);
        assert_eq!(queue.highest_level(), Some(70));
        assert_eq!(queue.remove(70, |&t| t == 1), Some(1));
        assert_eq!(queue.highest_level(), None);
        assert_eq!(queue.len(), 0);
        queue.push(500, 3, false);
        assert_eq!(queue.highest_level(), Some(99));
        assert_eq!(queue.level_len(99), 1);
    }
}
