//! A bounded map of synthesised audio: at most `cap` entries, the oldest dropped first. Used for
//! whole phrases at a call's rate (`runtime::speech`) and for Piper's units (`piper`).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

pub struct BoundedCache<K, V> {
    cap: usize,
    map: HashMap<K, V>,
    order: VecDeque<K>,
}

impl<K: Eq + Hash + Clone, V: Clone> BoundedCache<K, V> {
    /// A cache of at most `cap` entries; 0 keeps nothing.
    pub fn new(cap: usize) -> Self {
        BoundedCache {
            cap,
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn get(&self, key: &K) -> Option<V> {
        self.map.get(key).cloned()
    }

    /// Keeps `value` under `key`, dropping the oldest entries beyond the size. A key already
    /// kept keeps its first value (both renderings are the same audio).
    pub fn insert(&mut self, key: K, value: V) {
        if self.cap == 0 || self.map.contains_key(&key) {
            return;
        }
        while self.order.len() >= self.cap {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            self.map.remove(&old);
        }
        self.order.push_back(key.clone());
        self.map.insert(key, value);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::BoundedCache;

    #[test]
    fn keeps_the_newest_entries_once_each() {
        let mut c = BoundedCache::new(2);
        c.insert("a", 1);
        c.insert("a", 9); // already kept: unchanged, and counted once
        c.insert("b", 2);
        assert_eq!((c.get(&"a"), c.get(&"b"), c.len()), (Some(1), Some(2), 2));
        c.insert("c", 3);
        assert_eq!(
            (c.get(&"a"), c.get(&"b"), c.get(&"c")),
            (None, Some(2), Some(3))
        );
        c.insert("d", 4);
        assert_eq!((c.get(&"b"), c.len()), (None, 2));
        let mut none = BoundedCache::new(0);
        none.insert("a", 1);
        assert!(none.is_empty());
    }
}
