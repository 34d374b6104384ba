//! The dentry cache: (directory, name) to inode, with negative entries for names known not to exist, and least-recently-used eviction.
//!
//! Each entry's record is an object of the `dentry` slab cache ([`DENTRY_CACHE`]), so
//! `/proc/slabinfo` counts the cached dentries.

use alloc::collections::BTreeMap;
use alloc::string::String;

use super::types::InodeNumber;
use crate::mm::{SlabBox, TypedCache};

/// The key of a dentry: mount, parent directory inode, name.
pub type DentryKey = (u32, InodeNumber, String);

/// One cached name: its target and when it was last used (Linux's `struct dentry`, in part).
#[derive(Debug)]
pub struct Dentry {
    /// The inode the name refers to; `None` for a negative entry.
    pub target: Option<InodeNumber>,
    /// The cache's clock at the last lookup or insertion.
    pub last_used: u64,
}

/// The slab cache of dentries (Linux's `dentry`).
pub static DENTRY_CACHE: TypedCache<Dentry> = TypedCache::new("dentry");

/// Lookup counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DentryStatistics {
    /// Lookups answered with an inode.
    pub hits: u64,
    /// Lookups answered "does not exist" from a negative entry.
    pub negative_hits: u64,
    /// Lookups the file system had to answer.
    pub misses: u64,
    /// Entries dropped to make room.
    pub evictions: u64,
}

/// A bounded map of names to inodes (or to "no such name").
pub struct DentryCache {
    capacity: usize,
    entries: BTreeMap<DentryKey, SlabBox<Dentry>>,
    by_age: BTreeMap<u64, DentryKey>,
    clock: u64,
    statistics: DentryStatistics,
}

/// What the cache knows about a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CachedLookup {
    /// The name refers to this inode.
    Found(InodeNumber),
    /// The name is known not to exist.
    Negative,
    /// Not cached.
    Unknown,
}

impl DentryCache {
    /// An empty cache holding at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        Self::new_const(capacity)
    }

    /// [`Self::new`] usable in a `static`.
    pub const fn new_const(capacity: usize) -> Self {
        let capacity = if capacity == 0 { 1 } else { capacity };
        DentryCache {
            capacity,
            entries: BTreeMap::new(),
            by_age: BTreeMap::new(),
            clock: 0,
            statistics: DentryStatistics { hits: 0, negative_hits: 0, misses: 0, evictions: 0 },
        }
    }

    /// Forgets everything.
    pub fn remove_all(&mut self) {
        self.entries.clear();
        self.by_age.clear();
    }

    /// Looks `key` up, marking it recently used.
    pub fn lookup(&mut self, key: &DentryKey) -> CachedLookup {
        self.clock += 1;
        let now = self.clock;
        match self.entries.get_mut(key) {
            Some(dentry) => {
                self.by_age.remove(&dentry.last_used);
                dentry.last_used = now;
                self.by_age.insert(now, key.clone());
                match dentry.target {
                    Some(inode) => {
                        self.statistics.hits += 1;
                        CachedLookup::Found(inode)
                    }
                    None => {
                        self.statistics.negative_hits += 1;
                        CachedLookup::Negative
                    }
                }
            }
            None => {
                self.statistics.misses += 1;
                CachedLookup::Unknown
            }
        }
    }

    /// Records that `key` refers to `target` (`None`: does not exist), evicting the least
    /// recently used entry if full. Without memory for the entry, the name is just not cached.
    pub fn insert(&mut self, key: DentryKey, target: Option<InodeNumber>) {
        self.clock += 1;
        let now = self.clock;
        self.remove(&key);
        let Ok(dentry) = SlabBox::try_new(&DENTRY_CACHE, Dentry { target, last_used: now }) else { return };
        while self.entries.len() >= self.capacity {
            let Some((_, oldest)) = self.by_age.pop_first() else { break };
            self.entries.remove(&oldest);
            self.statistics.evictions += 1;
        }
        self.by_age.insert(now, key.clone());
        self.entries.insert(key, dentry);
    }

    /// Forgets `key`.
    pub fn remove(&mut self, key: &DentryKey) {
        if let Some(dentry) = self.entries.remove(key) {
            self.by_age.remove(&dentry.last_used);
        }
    }

    /// Forgets every entry of mount `mount` (on unmount).
    pub fn remove_mount(&mut self, mount: u32) {
        let keys: alloc::vec::Vec<DentryKey> = self.entries.keys().filter(|key| key.0 == mount).cloned().collect();
        for key in keys {
            self.remove(&key);
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The counters.
    pub fn statistics(&self) -> DentryStatistics {
        self.statistics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> DentryKey {
        (1, 2, name.into())
    }

    #[test]
    fn positive_negative_and_lru_eviction() {
        let mut cache = DentryCache::new(2);
        cache.insert(key("a"), Some(10));
        cache.insert(key("b"), None);
        assert_eq!(cache.lookup(&key("a")), CachedLookup::Found(10));
        assert_eq!(cache.lookup(&key("b")), CachedLookup::Negative);
        assert_eq!(cache.lookup(&key("c")), CachedLookup::Unknown);
        // "a" was used before "b", so "a" goes when "c" arrives.
        cache.insert(key("c"), Some(12));
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.lookup(&key("a")), CachedLookup::Unknown);
        assert_eq!(cache.lookup(&key("b")), CachedLookup::Negative);
        let statistics = cache.statistics();
        assert_eq!((statistics.hits, statistics.negative_hits, statistics.misses, statistics.evictions), (1, 2, 2, 1));
        cache.insert(key("b"), Some(11));
        assert_eq!(cache.lookup(&key("b")), CachedLookup::Found(11));
        cache.insert((7, 2, "x".into()), Some(1));
        cache.remove_mount(1);
        assert_eq!(cache.len(), 1);
    }
}
