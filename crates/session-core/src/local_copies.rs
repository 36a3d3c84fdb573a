//! The manager's bounded memory of the last version of each session it read or wrote, so that
//! `modify` can write from it in one round trip instead of loading first.
//!
//! A copy is only ever the *basis* of a conditional write (`Condition::IfUnchanged`): if the
//! session changed since, the store refuses the write and hands back the current record, so a
//! stale copy costs nothing but the refused write. Reads (`get`) never answer from a copy.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use bytes::Bytes;

use crate::{Record, SessionId, Timestamp};

/// Default budget: the payload bytes kept, all sessions together.
pub const DEFAULT_LOCAL_COPY_BYTES: usize = 8 * 1024 * 1024;

/// What a copy holds: enough for a conditional write.
#[derive(Debug, Clone)]
pub(crate) struct Copy {
    pub(crate) payload: Bytes,
    pub(crate) version: u64,
    pub(crate) created_at: Timestamp,
}

impl From<Record> for Copy {
    fn from(r: Record) -> Self {
        Self {
            payload: r.payload,
            version: r.version,
            created_at: r.meta.created_at,
        }
    }
}

struct Entry {
    copy: Copy,
    /// After this the session has expired in the store too: the copy is useless.
    valid_until: Option<Instant>,
    tick: u64,
}

#[derive(Default)]
struct Lru {
    entries: HashMap<SessionId, Entry>,
    order: BTreeMap<u64, SessionId>,
    bytes: usize,
    clock: u64,
}

/// A byte-bounded LRU map of session copies.
pub(crate) struct LocalCopies {
    budget: usize,
    lru: Mutex<Lru>,
}

impl LocalCopies {
    pub(crate) fn new(budget: usize) -> Self {
        Self {
            budget,
            lru: Mutex::new(Lru::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Lru> {
        // Every mutation below is a handful of infallible map operations: a poisoned lock
        // cannot hold a half-made entry.
        self.lru.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The copy of `id`, if one is kept and its session cannot have expired yet.
    pub(crate) fn get(&self, id: &SessionId) -> Option<Copy> {
        if self.budget == 0 {
            return None;
        }
        let mut lru = self.lock();
        let entry = lru.entries.get(id)?;
        if entry.valid_until.is_some_and(|t| t <= Instant::now()) {
            lru.remove(id);
            return None;
        }
        let copy = entry.copy.clone();
        lru.bump(id);
        Some(copy)
    }

    /// Keeps `copy` as the latest known state of `id`, which lives `ttl` from now.
    pub(crate) fn put(&self, id: &SessionId, copy: Copy, ttl: Option<Duration>) {
        let size = copy.payload.len();
        if self.budget == 0 {
            return;
        }
        let mut lru = self.lock();
        lru.remove(id);
        if size > self.budget {
            return;
        }
        while lru.bytes + size > self.budget {
            let Some((_, oldest)) = lru.order.pop_first() else {
                break;
            };
            if let Some(old) = lru.entries.remove(&oldest) {
                lru.bytes -= old.copy.payload.len();
            }
        }
        lru.clock += 1;
        let tick = lru.clock;
        lru.order.insert(tick, id.clone());
        lru.bytes += size;
        lru.entries.insert(
            id.clone(),
            Entry {
                copy,
                valid_until: ttl.and_then(|ttl| Instant::now().checked_add(ttl)),
                tick,
            },
        );
    }

    /// Forgets `id` (deleted, or found absent).
    pub(crate) fn remove(&self, id: &SessionId) {
        if self.budget == 0 {
            return;
        }
        self.lock().remove(id);
    }
}

impl Lru {
    fn remove(&mut self, id: &SessionId) {
        if let Some(old) = self.entries.remove(id) {
            self.order.remove(&old.tick);
            self.bytes -= old.copy.payload.len();
        }
    }

    fn bump(&mut self, id: &SessionId) {
        self.clock += 1;
        let tick = self.clock;
        if let Some(entry) = self.entries.get_mut(id) {
            self.order.remove(&entry.tick);
            entry.tick = tick;
            self.order.insert(tick, id.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(n: usize, version: u64) -> Copy {
        Copy {
            payload: Bytes::from(vec![0; n]),
            version,
            created_at: Timestamp::from_millis(1),
        }
    }

    fn id(s: &str) -> SessionId {
        SessionId::new(s).unwrap()
    }

    #[test]
    fn keeps_within_the_byte_budget_evicting_the_least_recently_used() {
        let copies = LocalCopies::new(300);
        copies.put(&id("a"), copy(100, 1), None);
        copies.put(&id("b"), copy(100, 1), None);
        copies.put(&id("c"), copy(100, 1), None);
        assert!(copies.get(&id("a")).is_some()); // "b" is now the oldest
        copies.put(&id("d"), copy(100, 1), None);
        assert!(copies.get(&id("b")).is_none());
        for s in ["a", "c", "d"] {
            assert!(copies.get(&id(s)).is_some(), "{s}");
        }
        assert_eq!(copies.lock().bytes, 300);
        copies.put(&id("a"), copy(50, 2), None);
        assert_eq!(copies.lock().bytes, 250);
        assert_eq!(copies.get(&id("a")).map(|c| c.version), Some(2));
        copies.put(&id("huge"), copy(301, 1), None);
        assert!(copies.get(&id("huge")).is_none());
        copies.remove(&id("a"));
        assert_eq!(copies.lock().bytes, 200);
        assert_eq!(copies.lock().order.len(), 2);
    }

    #[test]
    fn copies_of_expired_sessions_are_not_used() {
        let copies = LocalCopies::new(1000);
        copies.put(&id("a"), copy(10, 1), Some(Duration::ZERO));
        assert!(copies.get(&id("a")).is_none());
        assert_eq!(copies.lock().bytes, 0);
    }

    #[test]
    fn a_zero_budget_keeps_nothing() {
        let copies = LocalCopies::new(0);
        copies.put(&id("a"), copy(10, 1), None);
        assert!(copies.get(&id("a")).is_none());
    }
}
