//! The lock-dependency graph: lock classes, the "B was taken while A was held" edges with the sites that first showed them, and the search that finds a cycle a new edge would close.
//!
//! Readers of known edges and classes need no lock (slots only ever go from empty to a
//! value); adding a class or an edge and the cycle search run under the graph's own small
//! spin flag, which is never tracked itself.

use core::cell::UnsafeCell;
use core::panic::Location;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

pub use super::LockKind;

/// A call site (a lock's construction or acquisition).
pub type Site = &'static Location<'static>;

/// A lock class: the site that constructed the lock plus its kind, packed in one word
/// (a `Location` is 8-byte aligned, so the low 3 bits carry the kind).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassKey(usize);

impl ClassKey {
    /// The class of locks of `kind` constructed at `site`.
    pub fn new(site: Site, kind: LockKind) -> Self {
        ClassKey(site as *const Location<'static> as usize | kind as usize)
    }

    /// Where locks of this class are constructed.
    pub fn site(self) -> Site {
        // SAFETY: the key was made from a `&'static Location` whose low 3 bits are zero
        // (alignment 8) by `new`; clearing them gives back that reference.
        unsafe { &*((self.0 & !7) as *const Location<'static>) }
    }

    /// The lock kind.
    pub fn kind(self) -> LockKind {
        LockKind::from_bits(self.0 & 7)
    }
}

/// Most lock classes the graph records.
pub const MAX_CLASSES: usize = 1024;
/// Most dependencies (edges) the graph records.
pub const MAX_EDGES: usize = 4096;
const EDGE_SLOTS: usize = MAX_EDGES * 2;
/// Most edges a reported cycle lists.
pub const MAX_PATH: usize = 8;

/// One recorded order: `to` was first acquired at `to_site` while `from`, acquired at
/// `from_site`, was held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dependency {
    /// The class held.
    pub from: ClassKey,
    /// Where it had been acquired.
    pub from_site: Site,
    /// The class acquired.
    pub to: ClassKey,
    /// Where it was acquired.
    pub to_site: Site,
}

/// A cycle the new order closes: `new_order` (held `from`, acquiring `to`) against the
/// earlier chain `to -> ... -> from` in `earlier` (first `earlier_length` entries).
#[derive(Clone, Copy, Debug)]
pub struct Circular {
    /// The order seen now.
    pub new_order: Dependency,
    /// The earlier orders, from the class being acquired back to the class held.
    pub earlier: [Option<Dependency>; MAX_PATH],
}

impl Circular {
    /// The earlier orders that make up the cycle.
    pub fn earlier_orders(&self) -> impl Iterator<Item = &Dependency> {
        self.earlier.iter().flatten()
    }
}

/// What recording an order found.
#[derive(Clone, Copy, Debug)]
pub enum Outcome {
    /// The order was known already.
    Known,
    /// A new order, consistent with everything seen so far.
    Added,
    /// A new order that closes a cycle with earlier ones: a possible deadlock. The order
    /// is recorded anyway, so the same pair is reported once.
    Circular(Circular),
    /// The class or edge table is full; nothing was recorded.
    Full,
}

const NONE: u16 = u16::MAX;

struct EdgeData {
    dependency: Dependency,
    from: u16,
    to: u16,
    /// Next edge leaving the same class.
    next_from: u16,
}

struct Inner {
    edges: [Option<EdgeData>; MAX_EDGES],
    edge_count: usize,
    first_edge: [u16; MAX_CLASSES],
    visited: [u64; MAX_CLASSES / 64],
    queue: [u16; MAX_CLASSES],
    /// The edge a search reached each class through.
    reached_by: [u16; MAX_CLASSES],
    /// A found chain's edges, goal first.
    chain: [u16; MAX_CLASSES],
}

/// The dependency graph.
pub struct Graph {
    writer: AtomicBool,
    /// Class keys by slot (the slot is the class index); 0 = empty.
    classes: [AtomicUsize; MAX_CLASSES],
    class_count: AtomicUsize,
    /// Known edges, `(from + 1) << 16 | (to + 1)` by hash slot; 0 = empty.
    edge_slots: [AtomicU32; EDGE_SLOTS],
    inner: UnsafeCell<Inner>,
}

// SAFETY: `inner` is only touched by the holder of `writer` (see `locked`); everything else
// is atomic.
unsafe impl Sync for Graph {}

fn mix(value: usize) -> usize {
    let value = value as u64;
    (value.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 29) as usize
}

impl Default for Graph {
    fn default() -> Self {
        Self::new()
    }
}

impl Graph {
    /// An empty graph.
    pub const fn new() -> Self {
        Graph {
            writer: AtomicBool::new(false),
            classes: [const { AtomicUsize::new(0) }; MAX_CLASSES],
            class_count: AtomicUsize::new(0),
            edge_slots: [const { AtomicU32::new(0) }; EDGE_SLOTS],
            inner: UnsafeCell::new(Inner {
                edges: [const { None }; MAX_EDGES],
                edge_count: 0,
                first_edge: [NONE; MAX_CLASSES],
                visited: [0; MAX_CLASSES / 64],
                queue: [0; MAX_CLASSES],
                reached_by: [NONE; MAX_CLASSES],
                chain: [NONE; MAX_CLASSES],
            }),
        }
    }

    /// Classes recorded.
    pub fn class_count(&self) -> usize {
        self.class_count.load(Ordering::Relaxed)
    }

    /// Dependencies recorded.
    pub fn edge_count(&self) -> usize {
        self.locked(|inner| inner.edge_count)
    }

    fn locked<R>(&self, body: impl FnOnce(&mut Inner) -> R) -> R {
        while self.writer.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            core::hint::spin_loop();
        }
        // SAFETY: `writer` is ours until the store below, so this is the only reference.
        let result = body(unsafe { &mut *self.inner.get() });
        self.writer.store(false, Ordering::Release);
        result
    }

    /// The class index of `key`, if recorded.
    fn find_class(&self, key: ClassKey) -> Option<u16> {
        let mut slot = mix(key.0) % MAX_CLASSES;
        for _ in 0..MAX_CLASSES {
            match self.classes[slot].load(Ordering::Acquire) {
                0 => return None,
                stored if stored == key.0 => return Some(slot as u16),
                _ => slot = (slot + 1) % MAX_CLASSES,
            }
        }
        None
    }

    /// The class index of `key`, recording it if new; `None` when the table is full.
    fn class_index(&self, key: ClassKey) -> Option<u16> {
        if let Some(index) = self.find_class(key) {
            return Some(index);
        }
        let mut slot = mix(key.0) % MAX_CLASSES;
        // Keep a tenth free so probes stay short and always end at an empty slot.
        if self.class_count.load(Ordering::Relaxed) >= MAX_CLASSES - MAX_CLASSES / 10 {
            return None;
        }
        for _ in 0..MAX_CLASSES {
            match self.classes[slot].compare_exchange(0, key.0, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    self.class_count.fetch_add(1, Ordering::Relaxed);
                    return Some(slot as u16);
                }
                Err(stored) if stored == key.0 => return Some(slot as u16),
                Err(_) => slot = (slot + 1) % MAX_CLASSES,
            }
        }
        None
    }

    fn edge_key(from: u16, to: u16) -> u32 {
        (u32::from(from) + 1) << 16 | (u32::from(to) + 1)
    }

    fn has_edge(&self, from: u16, to: u16) -> bool {
        let key = Self::edge_key(from, to);
        let mut slot = mix(key as usize) % EDGE_SLOTS;
        for _ in 0..EDGE_SLOTS {
            match self.edge_slots[slot].load(Ordering::Acquire) {
                0 => return false,
                stored if stored == key => return true,
                _ => slot = (slot + 1) % EDGE_SLOTS,
            }
        }
        false
    }

    fn insert_edge_slot(&self, from: u16, to: u16) {
        let key = Self::edge_key(from, to);
        let mut slot = mix(key as usize) % EDGE_SLOTS;
        while self.edge_slots[slot].load(Ordering::Relaxed) != 0 {
            slot = (slot + 1) % EDGE_SLOTS;
        }
        self.edge_slots[slot].store(key, Ordering::Release);
    }

    /// Whether the order "`to` acquired while `from` held" was recorded (no locking).
    pub fn knows(&self, from: ClassKey, to: ClassKey) -> bool {
        match (self.find_class(from), self.find_class(to)) {
            (Some(from), Some(to)) => self.has_edge(from, to),
            _ => false,
        }
    }

    /// Records that `to` is acquired at `to_site` while `from` (acquired at `from_site`) is
    /// held, and says whether that closes a cycle. Orders within one class are not
    /// recorded (they report `Known`).
    pub fn add(&self, from: ClassKey, from_site: Site, to: ClassKey, to_site: Site) -> Outcome {
        if from == to {
            return Outcome::Known;
        }
        let (Some(from_index), Some(to_index)) = (self.class_index(from), self.class_index(to)) else { return Outcome::Full };
        if self.has_edge(from_index, to_index) {
            return Outcome::Known;
        }
        let dependency = Dependency { from, from_site, to, to_site };
        self.locked(|inner| {
            if self.has_edge(from_index, to_index) {
                return Outcome::Known;
            }
            if inner.edge_count >= MAX_EDGES {
                return Outcome::Full;
            }
            let cycle = Self::find_path(inner, to_index, from_index);
            let edge = inner.edge_count;
            inner.edges[edge] =
                Some(EdgeData { dependency, from: from_index, to: to_index, next_from: inner.first_edge[from_index as usize] });
            inner.first_edge[from_index as usize] = edge as u16;
            inner.edge_count += 1;
            self.insert_edge_slot(from_index, to_index);
            match cycle {
                Some(earlier) => Outcome::Circular(Circular { new_order: dependency, earlier }),
                None => Outcome::Added,
            }
        })
    }

    /// A shortest chain of recorded orders from class `start` to class `goal` (breadth
    /// first), listed from `start`; `None` if `goal` is not reachable.
    fn find_path(inner: &mut Inner, start: u16, goal: u16) -> Option<[Option<Dependency>; MAX_PATH]> {
        inner.visited = [0; MAX_CLASSES / 64];
        let mark = |visited: &mut [u64; MAX_CLASSES / 64], class: u16| visited[class as usize / 64] |= 1 << (class % 64);
        let seen = |visited: &[u64; MAX_CLASSES / 64], class: u16| visited[class as usize / 64] & (1 << (class % 64)) != 0;
        mark(&mut inner.visited, start);
        inner.queue[0] = start;
        inner.reached_by[start as usize] = NONE;
        let (mut head, mut tail) = (0, 1);
        let mut found = false;
        while head < tail {
            let class = inner.queue[head];
            head += 1;
            if class == goal {
                found = true;
                break;
            }
            let mut edge = inner.first_edge[class as usize];
            while edge != NONE {
                let Some(data) = inner.edges[edge as usize].as_ref() else { break };
                if !seen(&inner.visited, data.to) {
                    mark(&mut inner.visited, data.to);
                    inner.reached_by[data.to as usize] = edge;
                    inner.queue[tail] = data.to;
                    tail += 1;
                }
                edge = data.next_from;
            }
        }
        if !found {
            return None;
        }
        // Walk back from the goal; the chain may be longer than MAX_PATH, keep its start.
        let mut length = 0;
        let mut class = goal;
        while class != start {
            let edge = inner.reached_by[class as usize];
            let Some(data) = inner.edges[edge as usize].as_ref() else { break };
            inner.chain[length] = edge;
            length += 1;
            class = data.from;
        }
        let mut path = [None; MAX_PATH];
        for (slot, &edge) in path.iter_mut().zip(inner.chain[..length].iter().rev()) {
            *slot = inner.edges[edge as usize].as_ref().map(|data| data.dependency);
        }
        Some(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::boxed::Box;

    #[track_caller]
    fn site() -> Site {
        Location::caller()
    }

    fn class(kind: LockKind) -> (ClassKey, Site) {
        let location: Site = Box::leak(Box::new(*Location::caller()));
        (ClassKey::new(location, kind), location)
    }

    #[test]
    fn class_keys_keep_site_and_kind() {
        let here = site();
        let key = ClassKey::new(here, LockKind::Mutex);
        assert_eq!(key.site(), here);
        assert_eq!(key.kind(), LockKind::Mutex);
        assert_ne!(key, ClassKey::new(here, LockKind::Spin));
    }

    #[test]
    fn consistent_orders_are_added_once_and_then_known() {
        let graph = Box::new(Graph::new());
        let (a, a_site) = class(LockKind::Spin);
        let (b, b_site) = class(LockKind::Spin);
        let (c, c_site) = class(LockKind::Mutex);
        assert!(matches!(graph.add(a, a_site, b, b_site), Outcome::Added));
        assert!(matches!(graph.add(b, b_site, c, c_site), Outcome::Added));
        assert!(matches!(graph.add(a, a_site, c, c_site), Outcome::Added));
        assert!(matches!(graph.add(a, site(), b, site()), Outcome::Known));
        assert!(matches!(graph.add(a, a_site, a, a_site), Outcome::Known), "one class nested in itself is not an order");
        assert!(graph.knows(a, b) && graph.knows(b, c) && !graph.knows(b, a));
        assert_eq!((graph.class_count(), graph.edge_count()), (3, 3));
    }

    #[test]
    fn an_inverted_pair_is_circular_and_names_the_first_sites() {
        let graph = Box::new(Graph::new());
        let (a, a_site) = class(LockKind::Spin);
        let (b, b_site) = class(LockKind::Mutex);
        let (first_a, first_b) = (site(), site());
        assert!(matches!(graph.add(a, first_a, b, first_b), Outcome::Added));
        // The same order again from other sites keeps the first sites.
        assert!(matches!(graph.add(a, a_site, b, b_site), Outcome::Known));
        let (held_b, taking_a) = (site(), site());
        let Outcome::Circular(circular) = graph.add(b, held_b, a, taking_a) else { panic!("inversion not detected") };
        assert_eq!(circular.new_order, Dependency { from: b, from_site: held_b, to: a, to_site: taking_a });
        let earlier: Vec<_> = circular.earlier_orders().copied().collect();
        assert_eq!(earlier, vec![Dependency { from: a, from_site: first_a, to: b, to_site: first_b }]);
        // Reported once: the inverted order is known now.
        assert!(matches!(graph.add(b, held_b, a, taking_a), Outcome::Known));
    }

    #[test]
    fn a_longer_cycle_is_found_with_its_whole_chain() {
        let graph = Box::new(Graph::new());
        let classes: Vec<_> = (0..5).map(|_| class(LockKind::Spin)).collect();
        for pair in classes.windows(2) {
            assert!(matches!(graph.add(pair[0].0, pair[0].1, pair[1].0, pair[1].1), Outcome::Added));
        }
        // A side branch that does not lead back must not matter.
        let (side, side_site) = class(LockKind::RwLock);
        assert!(matches!(graph.add(classes[1].0, classes[1].1, side, side_site), Outcome::Added));
        let (last, first) = (classes[4], classes[0]);
        let Outcome::Circular(circular) = graph.add(last.0, last.1, first.0, first.1) else { panic!("4-step cycle not detected") };
        let chain: Vec<_> = circular.earlier_orders().map(|order| (order.from, order.to)).collect();
        let expected: Vec<_> = classes.windows(2).map(|pair| (pair[0].0, pair[1].0)).collect();
        assert_eq!(chain, expected);
    }

    #[test]
    fn unrelated_orders_do_not_report() {
        let graph = Box::new(Graph::new());
        let (a, a_site) = class(LockKind::Spin);
        let (b, b_site) = class(LockKind::Spin);
        let (c, c_site) = class(LockKind::Spin);
        assert!(matches!(graph.add(a, a_site, b, b_site), Outcome::Added));
        assert!(matches!(graph.add(c, c_site, b, b_site), Outcome::Added));
        assert!(matches!(graph.add(c, c_site, a, a_site), Outcome::Added), "c->a with a->b and c->b is no cycle");
    }

    #[test]
    fn a_full_class_table_says_so_instead_of_failing() {
        let graph = Box::new(Graph::new());
        let (anchor, anchor_site) = class(LockKind::Spin);
        let mut full = false;
        for _ in 0..MAX_CLASSES {
            let (other, other_site) = class(LockKind::Spin);
            if matches!(graph.add(anchor, anchor_site, other, other_site), Outcome::Full) {
                full = true;
                break;
            }
        }
        assert!(full, "the class table never reported full");
        assert!(graph.class_count() < MAX_CLASSES);
    }
}
