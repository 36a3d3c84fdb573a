//! The near-copy: what a [`FailoverStore`](super::FailoverStore) remembers of the sessions this
//! instance touched, and, during an outage, the sessions it serves and the changes it owes the
//! primary.
//!
//! An entry is *clean* (the record as the primary last answered it: a cache, evicted least
//! recently used first when a bound is reached) or *dirty* (changed while the primary was
//! down: never evicted, written back on recovery). A dirty entry remembers its *base*: the
//! primary's record the first change of the outage was built on, so that the write-back is a
//! compare-and-set on exactly that content.
//!
//! Everything here is synchronous and runs under the store's one lock: no `.await` while it is
//! held, so an operation in fallback mode is atomic.

use std::{
    collections::BTreeMap,
    ops::Bound,
    time::{Duration, Instant},
};

use crate::{Basis, RecentTokens, Record, SessionId, Timestamp};

/// What one entry is charged besides its payload and id: the entry and its map nodes.
const ENTRY_OVERHEAD: usize = 200;

/// The bounds of a near-copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    /// Clean and dirty entries together.
    pub(crate) entries: usize,
    /// Bytes of clean and dirty entries together.
    pub(crate) bytes: usize,
    /// Dirty entries.
    pub(crate) dirty_entries: usize,
    /// Bytes of dirty entries.
    pub(crate) dirty_bytes: usize,
}

/// A change made during an outage, owed to the primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dirty {
    /// The primary's content the change was built on (`None`: the session was not known to
    /// exist in the primary; it is written back as a create).
    pub(crate) base: Option<Basis>,
    /// Whether the content changed (`false`: only the TTL was reset).
    pub(crate) changed: bool,
    /// When the latest change was made (a delete's time, for the conflict rule).
    pub(crate) at: Timestamp,
    /// Tokens of this instance's writes of the session that were sent to the primary and
    /// may have landed there (the write that met the outage): found in the primary at
    /// write-back, they are this instance's own history, not another instance's change,
    /// however many changes were made on top in memory.
    pub(crate) sent: RecentTokens,
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The session (`None`: deleted during the outage, a tombstone to replay).
    pub(crate) record: Option<Record>,
    /// When the session expires (`None`: never).
    pub(crate) expires_at: Option<Instant>,
    pub(crate) dirty: Option<Dirty>,
    /// Set from the near-copy's clock on every change (never reused, even by an entry of
    /// the same id made after this one went), so that a write-back knows whether the entry
    /// changed while it was being written.
    pub(crate) generation: u64,
    /// The sequence number of the primary call whose answer this clean entry holds (see
    /// [`NearCopy::observe`]).
    seen: u64,
    tick: u64,
    charge: usize,
}

impl Entry {
    fn expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// The record with its TTL as of `now`.
    pub(crate) fn live_record(&self, now: Instant) -> Option<Record> {
        let record = self.record.as_ref()?;
        if self.expired(now) {
            return None;
        }
        let ttl = self.expires_at.map(|at| at.saturating_duration_since(now));
        Some(record.clone().with_ttl(ttl))
    }
}

/// One dirty entry as the write-back sees it.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub(crate) id: SessionId,
    pub(crate) record: Option<Record>,
    pub(crate) ttl_left: Option<Duration>,
    pub(crate) dirty: Dirty,
    pub(crate) generation: u64,
}

/// Why an entry could not be kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Full {
    /// The dirty bounds are reached: the change cannot be kept for write-back.
    Dirty,
}

#[derive(Debug)]
pub(crate) struct NearCopy {
    bounds: Bounds,
    entries: BTreeMap<SessionId, Entry>,
    /// Clean entries by last use, oldest first: what eviction takes.
    lru: BTreeMap<u64, SessionId>,
    clock: u64,
    bytes: usize,
    dirty_entries: usize,
    dirty_bytes: usize,
    /// Clean entries evicted to make room (counted, and logged by the caller).
    pub(crate) evicted: u64,
    /// Dirty entries dropped because their session expired before it was written back
    /// (the primary would have expired it too).
    pub(crate) expired: u64,
}

fn charge(id: &SessionId, record: Option<&Record>) -> usize {
    record
        .map_or(0, |r| r.payload.len())
        .saturating_add(id.as_str().len())
        .saturating_add(ENTRY_OVERHEAD)
}

impl NearCopy {
    pub(crate) fn new(bounds: Bounds) -> Self {
        Self {
            bounds,
            entries: BTreeMap::new(),
            lru: BTreeMap::new(),
            clock: 0,
            bytes: 0,
            dirty_entries: 0,
            dirty_bytes: 0,
            evicted: 0,
            expired: 0,
        }
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn dirty_len(&self) -> usize {
        self.dirty_entries
    }

    pub(crate) fn dirty_bytes(&self) -> usize {
        self.dirty_bytes
    }

    /// The entry of `id`, dropping it first if it expired (a dirty entry that expired is owed
    /// nothing any more: the session would have expired in the primary too).
    pub(crate) fn get(&mut self, id: &SessionId, now: Instant) -> Option<&Entry> {
        if self.entries.get(id).is_some_and(|e| e.expired(now)) {
            if self.remove(id).is_some_and(|e| e.dirty.is_some()) {
                self.expired += 1;
            }
            return None;
        }
        let tick = self.tick();
        let entry = self.entries.get_mut(id)?;
        if entry.dirty.is_none() {
            self.lru.remove(&entry.tick);
            self.lru.insert(tick, id.clone());
        }
        entry.tick = tick;
        Some(entry)
    }

    /// Whether `id` holds a change owed to the primary.
    pub(crate) fn is_dirty(&self, id: &SessionId) -> bool {
        self.entries.get(id).is_some_and(|e| e.dirty.is_some())
    }

    /// Removes `id`'s entry, clean or dirty.
    pub(crate) fn remove(&mut self, id: &SessionId) -> Option<Entry> {
        let entry = self.entries.remove(id)?;
        self.bytes = self.bytes.saturating_sub(entry.charge);
        if entry.dirty.is_some() {
            self.dirty_entries = self.dirty_entries.saturating_sub(1);
            self.dirty_bytes = self.dirty_bytes.saturating_sub(entry.charge);
        } else {
            self.lru.remove(&entry.tick);
        }
        Some(entry)
    }

    /// A sequence number for a primary call about to start: [`observe`](Self::observe) uses
    /// it to tell an answer from a call that started earlier than the one already remembered.
    pub(crate) fn next_seq(&mut self) -> u64 {
        self.tick()
    }

    /// Remembers what the primary answered for `id` (`None`: it has no such session) to a
    /// call numbered `seq` ([`next_seq`](Self::next_seq), taken before the call), unless the
    /// entry holds a change still owed to the primary, or holds a newer answer: a record
    /// whose history contains the answered one's token (a write acknowledged after the read
    /// that is answering now), or the answer to a call that started later.
    pub(crate) fn observe(
        &mut self,
        id: &SessionId,
        record: Option<Record>,
        seq: u64,
        now: Instant,
    ) {
        if let Some(entry) = self.entries.get(id) {
            if entry.dirty.is_some() {
                return;
            }
            let held = entry.record.as_ref();
            let newer_held = match (held, record.as_ref()) {
                (Some(held), Some(answered)) => match (held.token(), answered.token()) {
                    // The same content: only the TTL may be newer.
                    (Some(h), Some(a)) if h == a => entry.seen > seq,
                    // What is held was written on top of what is answered.
                    (Some(_), Some(a)) if held.tokens.position(a).is_some() => true,
                    // What is answered was written on top of what is held.
                    (Some(h), Some(_)) if answered.tokens.position(h).is_some() => false,
                    _ => entry.seen > seq,
                },
                _ => entry.seen > seq,
            };
            if newer_held {
                return;
            }
        }
        let Some(record) = record else {
            self.remove(id);
            return;
        };
        let new_charge = charge(id, Some(&record));
        if let Some(entry) = self.entries.get_mut(id)
            && (self.bytes - entry.charge).saturating_add(new_charge) <= self.bounds.bytes
        {
            // The common case, a session seen again: replaced in place, no new key.
            self.clock += 1;
            let tick = self.clock;
            self.lru.remove(&entry.tick);
            self.lru.insert(tick, id.clone());
            self.bytes = self.bytes - entry.charge + new_charge;
            entry.expires_at = record.ttl.map(|ttl| now + ttl);
            entry.record = Some(record.with_ttl(None));
            entry.tick = tick;
            entry.charge = new_charge;
            entry.seen = seq;
            return;
        }
        self.remove(id);
        let expires_at = record.ttl.map(|ttl| now + ttl);
        let record = record.with_ttl(None);
        let charge = new_charge;
        if charge > self.bounds.bytes {
            return;
        }
        self.make_room(charge, 1);
        let tick = self.tick();
        self.lru.insert(tick, id.clone());
        self.bytes += charge;
        self.entries.insert(
            id.clone(),
            Entry {
                record: Some(record),
                expires_at,
                dirty: None,
                generation: tick,
                seen: seq,
                tick,
                charge,
            },
        );
    }

    /// Evicts clean entries, least recently used first, until `bytes` more and `entries` more
    /// fit (or nothing clean is left).
    fn make_room(&mut self, bytes: usize, entries: usize) {
        while self.entries.len() + entries > self.bounds.entries
            || self.bytes.saturating_add(bytes) > self.bounds.bytes
        {
            let Some((_, id)) = self.lru.pop_first() else {
                break;
            };
            if let Some(entry) = self.entries.remove(&id) {
                self.bytes = self.bytes.saturating_sub(entry.charge);
                self.evicted += 1;
            }
        }
    }

    /// Stores a change made during the outage: `record` (`None`: deleted) expiring at
    /// `expires_at`, owed to the primary as `dirty`. Refused, changing nothing, when the dirty
    /// bounds would be passed.
    pub(crate) fn change(
        &mut self,
        id: &SessionId,
        record: Option<Record>,
        expires_at: Option<Instant>,
        dirty: Dirty,
    ) -> Result<(), Full> {
        let charge = charge(id, record.as_ref());
        let (old_charge, was_dirty) = self
            .entries
            .get(id)
            .map_or((0, false), |e| (e.charge, e.dirty.is_some()));
        let dirty_entries = self.dirty_entries + usize::from(!was_dirty);
        let dirty_bytes = self
            .dirty_bytes
            .saturating_sub(if was_dirty { old_charge } else { 0 })
            .saturating_add(charge);
        if dirty_entries > self.bounds.dirty_entries || dirty_bytes > self.bounds.dirty_bytes {
            return Err(Full::Dirty);
        }
        self.remove(id);
        self.make_room(charge, 1);
        let tick = self.tick();
        self.bytes += charge;
        self.dirty_entries += 1;
        self.dirty_bytes += charge;
        self.entries.insert(
            id.clone(),
            Entry {
                record: record.map(|r| r.with_ttl(None)),
                expires_at,
                dirty: Some(dirty),
                generation: tick,
                seen: 0,
                tick,
                charge,
            },
        );
        Ok(())
    }

    /// Resets the expiry of a live entry; `false` if there is none.
    pub(crate) fn set_expiry(&mut self, id: &SessionId, expires_at: Instant) -> bool {
        match self.entries.get_mut(id) {
            Some(entry) if entry.record.is_some() => {
                self.clock += 1;
                entry.expires_at = Some(expires_at);
                entry.generation = self.clock;
                true
            }
            _ => false,
        }
    }

    /// Every dirty entry, for a write-back pass. Dirty entries that expired are dropped here.
    pub(crate) fn pending(&mut self, now: Instant) -> (Vec<Pending>, usize) {
        let expired: Vec<SessionId> = self
            .entries
            .iter()
            .filter(|(_, e)| e.dirty.is_some() && e.record.is_some() && e.expired(now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            self.remove(id);
        }
        self.expired += expired.len() as u64;
        let pending = self
            .entries
            .iter()
            .filter_map(|(id, e)| {
                let dirty = e.dirty?;
                Some(Pending {
                    id: id.clone(),
                    record: e.record.clone(),
                    ttl_left: e.expires_at.map(|at| at.saturating_duration_since(now)),
                    dirty,
                    generation: e.generation,
                })
            })
            .collect();
        (pending, expired.len())
    }

    /// `id`'s entry for a write-back if it is dirty (and not expired; an expired one is
    /// dropped, and counted in the second value).
    pub(crate) fn pending_one(&mut self, id: &SessionId, now: Instant) -> (Option<Pending>, usize) {
        let Some(entry) = self.entries.get(id) else {
            return (None, 0);
        };
        let Some(dirty) = entry.dirty else {
            return (None, 0);
        };
        if entry.record.is_some() && entry.expired(now) {
            self.remove(id);
            self.expired += 1;
            return (None, 1);
        }
        let pending = Pending {
            id: id.clone(),
            record: entry.record.clone(),
            ttl_left: entry.expires_at.map(|at| at.saturating_duration_since(now)),
            dirty,
            generation: entry.generation,
        };
        (Some(pending), 0)
    }

    /// After a write-back of `id` at `generation`: the primary now holds `record` (`None`:
    /// nothing); `ours`: that is this instance's content (written back), not another
    /// instance's (a conflict decided for theirs, or a merge). If the entry did not change
    /// meanwhile it becomes clean (or goes); if it did, it stays dirty: based on what was
    /// written back when that was ours, else on the old base, so that the next pass meets
    /// theirs as a conflict again (the new change was built on this instance's old content,
    /// not on theirs). Returns whether it is settled.
    pub(crate) fn settle(
        &mut self,
        id: &SessionId,
        generation: u64,
        primary: Option<Record>,
        ours: bool,
        now: Instant,
    ) -> bool {
        let Some(entry) = self.entries.get_mut(id) else {
            return true;
        };
        if entry.generation != generation {
            if let (Some(dirty), true) = (entry.dirty.as_mut(), ours) {
                dirty.base = primary.as_ref().map(Record::basis);
            }
            return false;
        }
        self.remove(id);
        let seq = self.next_seq();
        self.observe(id, primary, seq, now);
        true
    }

    /// Live sessions after `after` (exclusive), in id order: at most `limit`, and whether more
    /// follow.
    pub(crate) fn page(
        &self,
        after: Option<&SessionId>,
        limit: usize,
        now: Instant,
    ) -> (Vec<(SessionId, Record)>, bool) {
        let lower = match after {
            Some(id) => Bound::Excluded(id),
            None => Bound::Unbounded,
        };
        let mut live = self
            .entries
            .range::<SessionId, _>((lower, Bound::Unbounded))
            .filter_map(|(id, e)| e.live_record(now).map(|r| (id.clone(), r)));
        let page: Vec<_> = live.by_ref().take(limit).collect();
        let more = live.next().is_some();
        (page, more)
    }

    /// How many live sessions the near-copy holds.
    pub(crate) fn live(&self, now: Instant) -> usize {
        self.entries
            .values()
            .filter(|e| e.record.is_some() && !e.expired(now))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::{Meta, Summary, WriteToken};

    fn id(s: &str) -> SessionId {
        SessionId::new(s).unwrap()
    }

    fn record(version: u64, size: usize) -> Record {
        let now = Timestamp::now();
        Record::new(
            Bytes::from(vec![b'x'; size]),
            Meta::new(now, now, size as u64, Summary::new()),
            version,
        )
        .with_tokens(RecentTokens::first(WriteToken::random()))
    }

    fn bounds() -> Bounds {
        Bounds {
            entries: 3,
            bytes: 10_000,
            dirty_entries: 2,
            dirty_bytes: 10_000,
        }
    }

    fn dirty() -> Dirty {
        Dirty {
            base: None,
            changed: true,
            at: Timestamp::now(),
            sent: RecentTokens::new(),
        }
    }

    #[test]
    fn clean_entries_are_evicted_oldest_first_and_dirty_ones_never() {
        let now = Instant::now();
        let mut near = NearCopy::new(bounds());
        near.change(&id("d"), Some(record(1, 10)), None, dirty())
            .unwrap();
        for name in ["a", "b", "c"] {
            let seq = near.next_seq();
            near.observe(&id(name), Some(record(1, 10)), seq, now);
        }
        assert_eq!(near.len(), 3);
        assert!(near.get(&id("d"), now).is_some(), "dirty entries stay");
        assert!(
            near.get(&id("a"), now).is_none(),
            "the oldest clean one went"
        );
        assert_eq!(near.evicted, 1);
    }

    #[test]
    fn the_dirty_bound_refuses_changes_and_changes_nothing() {
        let mut near = NearCopy::new(bounds());
        near.change(&id("a"), Some(record(1, 10)), None, dirty())
            .unwrap();
        near.change(&id("b"), Some(record(1, 10)), None, dirty())
            .unwrap();
        assert_eq!(
            near.change(&id("c"), Some(record(1, 10)), None, dirty()),
            Err(Full::Dirty)
        );
        // Changing an entry that is already dirty needs no new room.
        near.change(&id("a"), Some(record(2, 10)), None, dirty())
            .unwrap();
        assert_eq!(near.dirty_len(), 2);
    }

    #[test]
    fn observe_never_replaces_a_change_owed_to_the_primary() {
        let now = Instant::now();
        let mut near = NearCopy::new(bounds());
        near.change(&id("a"), Some(record(5, 10)), None, dirty())
            .unwrap();
        let seq = near.next_seq();
        near.observe(&id("a"), Some(record(9, 10)), seq, now);
        let entry = near.get(&id("a"), now).unwrap();
        assert_eq!(entry.record.as_ref().unwrap().version, 5);
    }

    #[test]
    fn settle_keeps_an_entry_dirty_that_changed_during_its_write_back() {
        let now = Instant::now();
        let mut near = NearCopy::new(bounds());
        near.change(&id("a"), Some(record(2, 10)), None, dirty())
            .unwrap();
        let (pending, _) = near.pending(now);
        let generation = pending[0].generation;
        near.change(&id("a"), Some(record(3, 10)), None, dirty())
            .unwrap();
        let written = record(2, 10);
        assert!(!near.settle(&id("a"), generation, Some(written.clone()), true, now));
        let entry = near.get(&id("a"), now).unwrap();
        assert_eq!(entry.dirty.unwrap().base, Some(written.basis()));
        let (pending, _) = near.pending(now);
        assert!(near.settle(
            &id("a"),
            pending[0].generation,
            Some(record(3, 10)),
            true,
            now
        ));
        assert_eq!(near.dirty_len(), 0);
        assert_eq!(near.len(), 1);
    }

    #[test]
    fn expired_entries_are_never_served_nor_written_back() {
        let now = Instant::now();
        let mut near = NearCopy::new(bounds());
        near.change(
            &id("a"),
            Some(record(1, 10)),
            Some(now + Duration::from_millis(5)),
            dirty(),
        )
        .unwrap();
        let later = now + Duration::from_millis(10);
        assert_eq!(near.live(later), 0);
        let (pending, expired) = near.pending(later);
        assert!(pending.is_empty());
        assert_eq!(expired, 1);
        assert_eq!(near.dirty_len(), 0);
    }
}
