//! Reports already computed, ready to send. A report is a pure function of the data,
//! the options and the methodology version; an entry is keyed by partnership, period
//! and options, and is valid exactly while the partnership's data version (bumped in
//! the same transaction as every write that can change the report) is the one it was
//! computed at. Memory is bounded; past the bound, entries are dropped at random.

use std::{collections::HashMap, sync::Mutex};

use bytes::Bytes;

use crate::domain::{Id, Period};

pub type Key = (Id, Period, String);

#[derive(Debug)]
struct Entry {
    version: i64,
    report: Bytes,
    bytes: usize,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<Key, Entry>,
    bytes: usize,
}

#[derive(Debug)]
pub struct ReportCache {
    inner: Mutex<Inner>,
    capacity_bytes: usize,
}

/// Bookkeeping per entry beyond its bytes (key, map slot, allocation headers).
const ENTRY_OVERHEAD: usize = 128;

impl ReportCache {
    pub fn new(capacity_bytes: usize) -> Self {
        ReportCache { inner: Mutex::new(Inner::default()), capacity_bytes }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The cached report, if it was computed at `version`.
    pub fn get(&self, key: &Key, version: i64) -> Option<Bytes> {
        self.lock().entries.get(key).filter(|e| e.version == version).map(|e| e.report.clone())
    }

    pub fn put(&self, key: Key, version: i64, report: Bytes) {
        let bytes = report.len() + ENTRY_OVERHEAD;
        if bytes > self.capacity_bytes {
            return;
        }
        let mut inner = self.lock();
        if let Some(old) = inner.entries.insert(key.clone(), Entry { version, report, bytes }) {
            inner.bytes -= old.bytes;
        }
        inner.bytes += bytes;
        if inner.bytes > self.capacity_bytes {
            // Down to three quarters, in the hash map's (arbitrary) order.
            let target = self.capacity_bytes / 4 * 3;
            let mut freed = Vec::new();
            let mut total = inner.bytes;
            for (k, e) in inner.entries.iter().filter(|(k, _)| **k != key) {
                if total <= target {
                    break;
                }
                total -= e.bytes;
                freed.push(k.clone());
            }
            for k in freed {
                if let Some(e) = inner.entries.remove(&k) {
                    inner.bytes -= e.bytes;
                }
            }
        }
    }

    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: &str) -> Key {
        (Id::parse(p).unwrap(), Period::parse("2026Q3").unwrap(), String::new())
    }

    fn report(p: &str) -> Bytes {
        Bytes::from(p.as_bytes().to_vec())
    }

    #[test]
    fn an_entry_is_valid_only_at_its_version() {
        let cache = ReportCache::new(1 << 20);
        cache.put(key("pa"), 3, report("pa"));
        assert_eq!(cache.get(&key("pa"), 3).unwrap(), "pa");
        assert!(cache.get(&key("pa"), 4).is_none(), "a newer version misses");
        assert!(cache.get(&key("pb"), 3).is_none());
        cache.put(key("pa"), 4, report("pa"));
        assert!(cache.get(&key("pa"), 3).is_none(), "replaced");
        assert!(cache.get(&key("pa"), 4).is_some());
    }

    #[test]
    fn memory_stays_under_the_bound() {
        let one = report("p-0000").len() + ENTRY_OVERHEAD;
        let cache = ReportCache::new(one * 10);
        for i in 0..100 {
            cache.put(key(&format!("p-{i:04}")), 1, report(&format!("p-{i:04}")));
            assert!(cache.bytes() <= one * 10);
        }
        assert!(cache.get(&key("p-0099"), 1).is_some(), "the newest entry survives eviction");
    }
}
