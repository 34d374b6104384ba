//! The dentry cache: (directory, name) to inode and file type, with negative entries for names known not to exist, and least-recently-used eviction.
//!
//! Each entry's record is an object of the `dentry` slab cache ([`DENTRY_CACHE`]), so
//! `/proc/slabinfo` counts the cached dentries. Entries are found by (mount, directory,
//! hash of the name), then the name is compared: a lookup borrows the name it is given (no
//! allocation) and compares integers on the way down the map. The least-recently-used order is
//! kept lazily: a hit only stamps the entry, and eviction re-files an entry used since it
//! was filed, so the entry evicted is always the one least recently used.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use super::types::{FileType, InodeNumber};
use crate::mm::{SlabBox, TypedCache};

/// The key of a dentry: mount, parent directory inode, name.
pub type DentryKey = (u32, InodeNumber, String);

/// One cached name: its target and when it was last used (Linux's `struct dentry`, in part).
#[derive(Debug)]
pub struct Dentry {
    /// The inode the name refers to and its file type; `None` for a negative entry.
    pub target: Option<(InodeNumber, FileType)>,
    /// The cache's clock at the last lookup or insertion.
    pub last_used: u64,
    /// The clock value under which the entry is filed in the age order (at most `last_used`).
    filed_at: u64,
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
    /// The entries by (mount, directory, hash of the name); names with the same hash share
    /// a bucket.
    buckets: BTreeMap<BucketKey, Vec<(String, SlabBox<Dentry>)>>,
    /// Entries held.
    count: usize,
    /// Every entry once, under its `filed_at` stamp: the oldest first.
    by_age: BTreeMap<u64, DentryKey>,
    clock: u64,
    statistics: DentryStatistics,
    /// Directories something is mounted on (how many mounts), so a walk learns whether a
    /// name leads to a mount point under the same lock as the name (Linux's
    /// `DCACHE_MOUNTED`). The VFS marks a directory before the mount appears and unmarks
    /// it after the mount is gone, so the marks always cover every mount point.
    mountpoints: BTreeMap<(u32, InodeNumber), usize>,
    /// The name hash ([`name_hash`]; tests use one that puts every name in one bucket).
    hash: fn(&str) -> u64,
}

type BucketKey = (u32, InodeNumber, u64);

/// FNV-1a of a name: spreads names over buckets (collisions only cost a comparison).
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}

/// What the cache knows about a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CachedLookup {
    /// The name refers to this inode, of this type.
    Found(InodeNumber, FileType),
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
            buckets: BTreeMap::new(),
            count: 0,
            by_age: BTreeMap::new(),
            clock: 0,
            statistics: DentryStatistics { hits: 0, negative_hits: 0, misses: 0, evictions: 0 },
            mountpoints: BTreeMap::new(),
            hash: name_hash,
        }
    }

    fn bucket_key(&self, mount: u32, directory: InodeNumber, name: &str) -> BucketKey {
        (mount, directory, (self.hash)(name))
    }

    /// Forgets every name (the mount point marks stay).
    pub fn remove_all(&mut self) {
        self.buckets.clear();
        self.by_age.clear();
        self.count = 0;
    }

    /// Marks inode `inode` of mount `mount` as having one more mount on it.
    pub fn add_mountpoint(&mut self, mount: u32, inode: InodeNumber) {
        *self.mountpoints.entry((mount, inode)).or_insert(0) += 1;
    }

    /// Takes back one [`Self::add_mountpoint`].
    pub fn remove_mountpoint(&mut self, mount: u32, inode: InodeNumber) {
        if let Some(count) = self.mountpoints.get_mut(&(mount, inode)) {
            *count -= 1;
            if *count == 0 {
                self.mountpoints.remove(&(mount, inode));
            }
        }
    }

    /// Whether something may be mounted on inode `inode` of mount `mount`.
    pub fn is_mountpoint(&self, mount: u32, inode: InodeNumber) -> bool {
        !self.mountpoints.is_empty() && self.mountpoints.contains_key(&(mount, inode))
    }

    /// Looks `name` up in `directory` of `mount`, marking it recently used.
    pub fn lookup(&mut self, mount: u32, directory: InodeNumber, name: &str) -> CachedLookup {
        self.clock += 1;
        let now = self.clock;
        let found = self
            .buckets
            .get_mut(&self.bucket_key(mount, directory, name))
            .and_then(|bucket| bucket.iter_mut().find(|(held, _)| held == name));
        match found {
            Some((_, dentry)) => {
                dentry.last_used = now;
                match dentry.target {
                    Some((inode, kind)) => {
                        self.statistics.hits += 1;
                        CachedLookup::Found(inode, kind)
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

    /// Records that `name` in `directory` of `mount` refers to `target` (`None`: does not
    /// exist), evicting the least recently used entry if full. Without memory for the
    /// entry, the name is just not cached.
    pub fn insert(&mut self, mount: u32, directory: InodeNumber, name: &str, target: Option<(InodeNumber, FileType)>) {
        self.clock += 1;
        let now = self.clock;
        self.remove(mount, directory, name);
        let Ok(dentry) = SlabBox::try_new(&DENTRY_CACHE, Dentry { target, last_used: now, filed_at: now }) else { return };
        while self.count >= self.capacity {
            if !self.evict_oldest() {
                break;
            }
        }
        self.by_age.insert(now, (mount, directory, String::from(name)));
        self.buckets.entry(self.bucket_key(mount, directory, name)).or_default().push((String::from(name), dentry));
        self.count += 1;
    }

    /// Drops the least recently used entry; `false` if there is none.
    fn evict_oldest(&mut self) -> bool {
        while let Some((filed_at, key)) = self.by_age.pop_first() {
            let (mount, directory, name) = &key;
            let bucket_key = self.bucket_key(*mount, *directory, name);
            let Some(bucket) = self.buckets.get_mut(&bucket_key) else { continue };
            let Some(position) = bucket.iter().position(|(held, _)| held == name) else { continue };
            let dentry = &mut bucket[position].1;
            if dentry.last_used != filed_at {
                // Used since it was filed: file it again under its last use.
                dentry.filed_at = dentry.last_used;
                let stamp = dentry.last_used;
                self.by_age.insert(stamp, key);
                continue;
            }
            bucket.swap_remove(position);
            if bucket.is_empty() {
                self.buckets.remove(&bucket_key);
            }
            self.count -= 1;
            self.statistics.evictions += 1;
            return true;
        }
        false
    }

    /// Forgets `name` in `directory` of `mount`.
    pub fn remove(&mut self, mount: u32, directory: InodeNumber, name: &str) {
        let key = self.bucket_key(mount, directory, name);
        let Some(bucket) = self.buckets.get_mut(&key) else { return };
        if let Some(position) = bucket.iter().position(|(held, _)| held == name) {
            let (_, dentry) = bucket.swap_remove(position);
            self.by_age.remove(&dentry.filed_at);
            self.count -= 1;
        }
        if bucket.is_empty() {
            self.buckets.remove(&key);
        }
    }

    /// Forgets every entry of mount `mount` (on unmount).
    pub fn remove_mount(&mut self, mount: u32) {
        let keys: Vec<BucketKey> = self.buckets.range((mount, 0, 0)..=(mount, InodeNumber::MAX, u64::MAX)).map(|(key, _)| *key).collect();
        for key in keys {
            if let Some(bucket) = self.buckets.remove(&key) {
                for (_, dentry) in &bucket {
                    self.by_age.remove(&dentry.filed_at);
                }
                self.count -= bucket.len();
            }
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The counters.
    pub fn statistics(&self) -> DentryStatistics {
        self.statistics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: FileType = FileType::Regular;

    /// A cache whose names all share one bucket per directory.
    fn colliding(capacity: usize) -> DentryCache {
        DentryCache { hash: |_| 7, ..DentryCache::new(capacity) }
    }

    #[test]
    fn positive_negative_and_lru_eviction() {
        for cache in [DentryCache::new(2), colliding(2)] {
            check_positive_negative_and_lru_eviction(cache);
        }
    }

    fn check_positive_negative_and_lru_eviction(mut cache: DentryCache) {
        cache.insert(1, 2, "a", Some((10, FILE)));
        cache.insert(1, 2, "b", None);
        assert_eq!(cache.lookup(1, 2, "a"), CachedLookup::Found(10, FILE));
        assert_eq!(cache.lookup(1, 2, "b"), CachedLookup::Negative);
        assert_eq!(cache.lookup(1, 2, "c"), CachedLookup::Unknown);
        // "a" was used before "b", so "a" goes when "c" arrives.
        cache.insert(1, 2, "c", Some((12, FileType::Directory)));
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.lookup(1, 2, "a"), CachedLookup::Unknown);
        assert_eq!(cache.lookup(1, 2, "b"), CachedLookup::Negative);
        let statistics = cache.statistics();
        assert_eq!((statistics.hits, statistics.negative_hits, statistics.misses, statistics.evictions), (1, 2, 2, 1));
        cache.insert(1, 2, "b", Some((11, FILE)));
        assert_eq!(cache.lookup(1, 2, "b"), CachedLookup::Found(11, FILE));
        cache.insert(7, 2, "x", Some((1, FILE)));
        cache.remove_mount(1);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.lookup(7, 2, "x"), CachedLookup::Found(1, FILE));
    }

    #[test]
    fn eviction_follows_use_order_across_directories() {
        for cache in [DentryCache::new(3), colliding(3)] {
            check_eviction_follows_use_order_across_directories(cache);
        }
    }

    fn check_eviction_follows_use_order_across_directories(mut cache: DentryCache) {
        cache.insert(1, 2, "a", Some((10, FILE)));
        cache.insert(1, 3, "a", Some((11, FILE)));
        cache.insert(1, 4, "a", Some((12, FILE)));
        // Use them in the order 4, 2, 3: 4 becomes the least recently used.
        cache.lookup(1, 4, "a");
        cache.lookup(1, 2, "a");
        cache.lookup(1, 3, "a");
        cache.insert(1, 5, "a", None);
        assert_eq!(cache.lookup(1, 4, "a"), CachedLookup::Unknown);
        // Now 2 is the oldest; a re-insertion of it renews it, so 3 goes next.
        cache.insert(1, 2, "a", Some((20, FileType::Directory)));
        cache.insert(1, 6, "a", None);
        assert_eq!(cache.lookup(1, 3, "a"), CachedLookup::Unknown);
        assert_eq!(cache.lookup(1, 2, "a"), CachedLookup::Found(20, FileType::Directory));
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.statistics().evictions, 2);
        // Removing entries keeps the count and the age order consistent.
        cache.remove(1, 2, "a");
        cache.remove(1, 2, "a");
        assert_eq!(cache.len(), 2);
        for name in ["p", "q", "r", "s"] {
            cache.insert(1, 9, name, None);
        }
        assert_eq!(cache.len(), 3);
        assert_eq!([cache.lookup(1, 9, "q"), cache.lookup(1, 9, "r"), cache.lookup(1, 9, "s")], [CachedLookup::Negative; 3]);
        cache.remove_all();
        assert!(cache.is_empty());
        assert_eq!(cache.lookup(1, 9, "s"), CachedLookup::Unknown);
    }

    #[test]
    fn mount_point_marks_count_stacked_mounts() {
        let mut cache = DentryCache::new(4);
        assert!(!cache.is_mountpoint(1, 5));
        cache.add_mountpoint(1, 5);
        cache.add_mountpoint(1, 5);
        assert!(cache.is_mountpoint(1, 5) && !cache.is_mountpoint(1, 6) && !cache.is_mountpoint(2, 5));
        cache.remove_mountpoint(1, 5);
        assert!(cache.is_mountpoint(1, 5), "one mount is still there");
        cache.remove_mountpoint(1, 5);
        cache.remove_mountpoint(1, 5);
        assert!(!cache.is_mountpoint(1, 5));
    }
}
