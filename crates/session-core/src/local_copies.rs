//! The manager's bounded memory of the last version of each session it read or wrote, so that
//! `modify` can write from it in one round trip instead of loading first.
//!
//! A copy is only ever the *basis* of a conditional write (`Condition::IfUnchanged`): if the
//! session changed since, the store refuses the write and hands back the current record, so a
//! stale copy costs one refused write. Reads (`get`) never answer from a copy.
//!
//! A session that another writer is seen to change (a refused write, or a read that finds a
//! version this instance did not write) is marked *shared*: its copy is not used as a basis
//! until a read finds it unchanged again, so sessions that instances take turns on cost a read
//! and a write (the read is the cheaper request) instead of a doomed write and a write.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use bytes::Bytes;

use crate::{Basis, Record, SessionId};

/// Default budget: the bytes kept, all sessions together (payloads, ids and a per-entry
/// allowance for the maps): 128 MiB, room for the last ~5,900 sessions of 22 KB (the
/// 100-message agent) or ~55,000 of 2.3 KB (the 10-message agent). A copy is charged its
/// encoded size + its id + 160 bytes; the process' real cost measured up to ~16% above that
/// (allocator rounding). It is a bound, not a reservation: memory grows with the sessions
/// this instance actually touches. Below the working set, `modify` takes two round trips
/// instead of one (see BENCHMARKS.md, "modify over 3,000 sessions").
pub const DEFAULT_LOCAL_COPY_BYTES: usize = 128 * 1024 * 1024;

/// What one remembered session costs besides its payload and id bytes: the entry, its key in
/// both maps and their nodes. Counted so that many small sessions cannot hold many times the
/// budget.
const ENTRY_OVERHEAD: usize = 160;

/// The bytes `copy` of `id` is charged against the budget.
fn footprint(id: &SessionId, copy: &Copy) -> usize {
    copy.payload
        .len()
        .saturating_add(id.as_str().len())
        .saturating_add(ENTRY_OVERHEAD)
}

/// What a copy holds: enough for a conditional write (the payload to decode and apply the
/// change to, and the basis that names exactly that content).
#[derive(Debug, Clone)]
pub(crate) struct Copy {
    pub(crate) payload: Bytes,
    pub(crate) basis: Basis,
}

impl From<Record> for Copy {
    fn from(r: Record) -> Self {
        Self {
            basis: r.basis(),
            payload: r.payload,
        }
    }
}

impl Copy {
    /// Whether `self` and `other` are the same content: the same token (or, for records
    /// without tokens, the same version).
    fn same_content(&self, other: &Copy) -> bool {
        match (self.basis.token(), other.basis.token()) {
            (Some(a), Some(b)) => a == b,
            (None, None) => self.basis.version() == other.basis.version(),
            _ => false,
        }
    }
}

struct Entry {
    copy: Copy,
    /// Another writer was seen: do not write from this copy without reading first.
    shared: bool,
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

    /// The copy of `id` to write from: kept, its session not expired yet, and not marked shared.
    pub(crate) fn basis(&self, id: &SessionId) -> Option<Copy> {
        if self.budget == 0 {
            return None;
        }
        let mut lru = self.lock();
        let entry = lru.entries.get(id)?;
        if entry.valid_until.is_some_and(|t| t <= Instant::now()) {
            lru.remove(id);
            return None;
        }
        if entry.shared {
            return None;
        }
        let copy = entry.copy.clone();
        lru.bump(id);
        Some(copy)
    }

    /// Keeps what a read found. If it is not what this instance last knew, another writer is
    /// at work: the session is marked shared. If it is, nobody else wrote: the mark is cleared.
    pub(crate) fn remember_read(&self, id: &SessionId, copy: Copy, ttl: Option<Duration>) {
        self.put(id, copy, ttl, |known, copy| {
            known.is_some_and(|k| !k.copy.same_content(copy))
        });
    }

    /// Keeps what this instance just wrote; the shared mark stays as it was.
    pub(crate) fn remember_write(&self, id: &SessionId, copy: Copy, ttl: Option<Duration>) {
        self.put(id, copy, ttl, |known, _| known.is_some_and(|k| k.shared));
    }

    /// Keeps the current record a refused write brought back: another writer was at work.
    pub(crate) fn remember_refusal(&self, id: &SessionId, copy: Copy, ttl: Option<Duration>) {
        self.put(id, copy, ttl, |_, _| true);
    }

    /// Keeps `copy` as the latest known state of `id`, which lives `ttl` from now; `shared`
    /// decides the mark from the entry known so far (if any) and the new copy.
    fn put(
        &self,
        id: &SessionId,
        copy: Copy,
        ttl: Option<Duration>,
        shared: impl FnOnce(Option<&Entry>, &Copy) -> bool,
    ) {
        let size = footprint(id, &copy);
        if self.budget == 0 {
            return;
        }
        let mut lru = self.lock();
        let shared = shared(lru.entries.get(id), &copy);
        lru.remove(id);
        if size > self.budget {
            return;
        }
        while lru.bytes + size > self.budget {
            let Some((_, oldest)) = lru.order.pop_first() else {
                break;
            };
            if let Some(old) = lru.entries.remove(&oldest) {
                lru.bytes -= footprint(&oldest, &old.copy);
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
                shared,
                valid_until: ttl.and_then(|ttl| Instant::now().checked_add(ttl)),
                tick,
            },
        );
    }

    /// Whether a copy of `id` is kept (shared or not): this instance has seen the session
    /// recently, so it most likely exists.
    pub(crate) fn knows(&self, id: &SessionId) -> bool {
        self.budget != 0 && self.lock().entries.contains_key(id)
    }

    /// Forgets `id` (deleted, found absent, or its state unknown after a failed write).
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
            self.bytes -= footprint(id, &old.copy);
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
        // One token per version, so that equal versions are equal content here.
        let token = crate::WriteToken::from_u64(version).unwrap();
        Copy {
            payload: Bytes::from(vec![0; n]),
            basis: Basis::new(
                version,
                crate::Timestamp::from_millis(1),
                crate::RecentTokens::first(token),
            ),
        }
    }

    fn id(s: &str) -> SessionId {
        SessionId::new(s).unwrap()
    }

    #[test]
    fn keeps_within_the_byte_budget_evicting_the_least_recently_used() {
        // Every id below is one byte long, so a 100-byte copy costs the same for each.
        let unit = footprint(&id("a"), &copy(100, 1));
        let copies = LocalCopies::new(3 * unit);
        copies.remember_write(&id("a"), copy(100, 1), None);
        copies.remember_write(&id("b"), copy(100, 1), None);
        copies.remember_write(&id("c"), copy(100, 1), None);
        assert!(copies.basis(&id("a")).is_some()); // "b" is now the oldest
        copies.remember_write(&id("d"), copy(100, 1), None);
        assert!(copies.basis(&id("b")).is_none());
        for s in ["a", "c", "d"] {
            assert!(copies.basis(&id(s)).is_some(), "{s}");
        }
        assert_eq!(copies.lock().bytes, 3 * unit);
        copies.remember_write(&id("a"), copy(50, 2), None);
        assert_eq!(copies.lock().bytes, 3 * unit - 50);
        assert_eq!(copies.basis(&id("a")).map(|c| c.basis.version()), Some(2));
        copies.remember_write(&id("huge"), copy(3 * unit, 1), None);
        assert!(copies.basis(&id("huge")).is_none());
        copies.remove(&id("a"));
        assert_eq!(copies.lock().bytes, 2 * unit);
        assert_eq!(copies.lock().order.len(), 2);
    }

    #[test]
    fn many_small_sessions_cannot_hold_many_times_the_budget() {
        // Small states under long ids: counting payload bytes alone kept all 10 000 copies
        // (40 KB of payloads, but over 2 MB of ids and map entries) under a 64 KiB budget.
        let budget = 64 * 1024;
        let copies = LocalCopies::new(budget);
        let long = "x".repeat(100);
        for n in 0..10_000 {
            copies.remember_write(&id(&format!("{long}{n:05}")), copy(4, 1), None);
        }
        let lru = copies.lock();
        let held: usize = lru
            .entries
            .iter()
            .map(|(id, e)| e.copy.payload.len() + id.as_str().len())
            .sum::<usize>()
            + lru.entries.len() * std::mem::size_of::<Entry>();
        assert!(
            held <= budget,
            "{} copies hold {held} bytes over a budget of {budget}",
            lru.entries.len()
        );
        assert_eq!(lru.entries.len(), lru.order.len());
    }

    #[test]
    fn copies_of_expired_sessions_are_not_used() {
        let copies = LocalCopies::new(1000);
        copies.remember_write(&id("a"), copy(10, 1), Some(Duration::ZERO));
        assert!(copies.basis(&id("a")).is_none());
        assert_eq!(copies.lock().bytes, 0);
    }

    #[test]
    fn another_writer_marks_a_session_shared_until_a_read_finds_it_unchanged() {
        let copies = LocalCopies::new(1000);
        let a = id("a");
        copies.remember_write(&a, copy(10, 1), None);
        assert!(copies.basis(&a).is_some(), "own write: write from the copy");
        copies.remember_refusal(&a, copy(10, 2), None);
        assert!(copies.basis(&a).is_none(), "refused: read first next time");
        copies.remember_write(&a, copy(10, 3), None);
        assert!(copies.basis(&a).is_none(), "a write keeps the mark");
        copies.remember_read(&a, copy(10, 4), None);
        assert!(
            copies.basis(&a).is_none(),
            "a read of another writer's version keeps it"
        );
        copies.remember_write(&a, copy(10, 5), None);
        copies.remember_read(&a, copy(10, 5), None);
        assert!(
            copies.basis(&a).is_some(),
            "a read finding our own write clears it"
        );
        let b = id("b");
        copies.remember_read(&b, copy(10, 7), None);
        assert!(copies.basis(&b).is_some(), "first sight is not shared");
    }

    #[test]
    fn a_zero_budget_keeps_nothing() {
        let copies = LocalCopies::new(0);
        copies.remember_write(&id("a"), copy(10, 1), None);
        assert!(copies.basis(&id("a")).is_none());
    }
}
