//! An in-process [`SessionStore`]: for development, for tests, and as the fallback when Redis
//! cannot be reached.
//!
//! [`MemoryStore`] keeps records in one map behind a mutex, with:
//! - a TTL per entry: an expired entry is never returned; expired entries are removed by the
//!   operations that follow, at most [`PURGE_PER_OPERATION`] per operation (so that a mass
//!   expiry never holds the lock for long), and all at once by [`MemoryStore::purge_expired`];
//! - an optional capacity bound that evicts the least recently used session, like Redis with
//!   `maxmemory-policy allkeys-lru`;
//! - versions and conditional saves, exactly as the conformance suite of `session-core`
//!   requires;
//! - cheap clones: every clone shares the same map.
//!
//! ```
//! use std::sync::Arc;
//! use session_core::{SessionId, SessionManager};
//! use session_memory::MemoryStore;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> session_core::Result<()> {
//! let sessions: SessionManager<Vec<String>> = SessionManager::new(Arc::new(MemoryStore::new()));
//! let id = SessionId::new("user-123")?;
//! sessions.get_or_create(&id, Vec::new).await?;
//! let history = sessions.modify(&id, |h| h.push("hello".into())).await?;
//! assert_eq!(history.len(), 1);
//! assert_eq!(history.version(), 2);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    num::NonZeroUsize,
    ops::Bound,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Instant,
};

use async_trait::async_trait;
use bytes::Bytes;
use session_core::{
    Cursor, Error, Meta, Page, RecentTokens, Record, Result, SessionId, SessionInfo, SessionStore,
    Timestamp, Ttl, Write, WriteOutcome,
};

/// The backend name this store reports.
pub const BACKEND: &str = "memory";

/// The most expired sessions one operation removes (see `State::purge_some`): a mass expiry
/// is spread over many operations instead of holding the store's lock through all of it.
pub const PURGE_PER_OPERATION: usize = 256;

/// Cursor text: this prefix, then the last id of the previous page.
const CURSOR_PREFIX: &str = "m1:";

/// An in-process session store. Clones share the same sessions.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    capacity: Option<NonZeroUsize>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Ordered by id, so that a listing cursor is simply the last id shown.
    entries: BTreeMap<SessionId, Entry>,
    /// Deadlines, soonest first: expired entries are removed from the front.
    expiry: BTreeSet<(Instant, SessionId)>,
    /// Use order, oldest first (maintained only with a capacity bound).
    lru: BTreeMap<u64, SessionId>,
    clock: u64,
}

#[derive(Clone)]
struct Entry {
    payload: Bytes,
    meta: Meta,
    version: u64,
    tokens: RecentTokens,
    expires_at: Instant,
    last_used: u64,
}

/// The sessions of a [`MemoryStore`] at one moment ([`MemoryStore::snapshot`]).
#[derive(Clone)]
pub struct MemorySnapshot {
    taken_at: Instant,
    entries: BTreeMap<SessionId, Entry>,
}

impl fmt::Debug for MemorySnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemorySnapshot")
            .field("sessions", &self.entries.len())
            .finish()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("capacity", &self.inner.capacity)
            .field("len", &self.lock().entries.len())
            .finish()
    }
}

impl MemoryStore {
    /// An unbounded store.
    pub fn new() -> Self {
        Self::build(None)
    }

    /// A store that holds at most `capacity` sessions, evicting the least recently used one
    /// (read or written) to make room for a new one.
    pub fn with_capacity(capacity: NonZeroUsize) -> Self {
        Self::build(Some(capacity))
    }

    fn build(capacity: Option<NonZeroUsize>) -> Self {
        Self {
            inner: Arc::new(Inner {
                capacity,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// The capacity bound, if any.
    pub fn capacity(&self) -> Option<NonZeroUsize> {
        self.inner.capacity
    }

    /// Removes every expired session now and returns how many were removed. Every operation
    /// does this too; call it to free memory in a process that stops using the store.
    pub fn purge_expired(&self) -> usize {
        self.lock().purge_expired(Instant::now())
    }

    /// A copy of every live session as it is now, to [`restore`](Self::restore) later.
    ///
    /// For tests and tools: restoring an older snapshot is what a Redis restart from an
    /// older RDB file does to a server, and the conformance suite uses it to prove that a
    /// stale local copy never overwrites a newer acknowledged write after such a rollback.
    pub fn snapshot(&self) -> MemorySnapshot {
        let now = Instant::now();
        let mut state = self.lock();
        state.purge_expired(now);
        MemorySnapshot {
            taken_at: now,
            entries: state.entries.clone(),
        }
    }

    /// Replaces every session with those of `snapshot`, each with the TTL it had left when
    /// the snapshot was taken (as Redis restores keys from an RDB file: versions, tokens and
    /// payloads as they were then).
    pub fn restore(&self, snapshot: &MemorySnapshot) {
        let now = Instant::now();
        let bounded = self.inner.capacity.is_some();
        let mut state = self.lock();
        *state = State::default();
        for (id, entry) in &snapshot.entries {
            let left = entry
                .expires_at
                .saturating_duration_since(snapshot.taken_at);
            if left.is_zero() {
                continue;
            }
            let mut entry = entry.clone();
            entry.expires_at = now + left;
            entry.last_used = state.next_tick();
            if bounded {
                state.lru.insert(entry.last_used, id.clone());
            }
            state.expiry.insert((entry.expires_at, id.clone()));
            state.entries.insert(id.clone(), entry);
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-made entry (every mutation is a
        // few infallible map operations), so a poisoned lock is safe to keep using.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    /// Removes every expired entry (for [`MemoryStore::purge_expired`] and snapshots).
    fn purge_expired(&mut self, now: Instant) -> usize {
        self.purge_some(now, usize::MAX)
    }

    /// Removes at most `limit` expired entries, soonest first. Every operation does this
    /// with [`PURGE_PER_OPERATION`], so that a mass expiry (a million sessions created in
    /// the same second) is spread over many operations instead of holding the lock for all
    /// of it; the entries not removed yet are hidden by [`live`](Self::live).
    fn purge_some(&mut self, now: Instant, limit: usize) -> usize {
        let mut removed = 0;
        while removed < limit
            && let Some((deadline, _)) = self.expiry.first()
        {
            if *deadline > now {
                break;
            }
            if let Some((_, id)) = self.expiry.pop_first() {
                if let Some(entry) = self.entries.remove(&id) {
                    self.lru.remove(&entry.last_used);
                }
                removed += 1;
            }
        }
        removed
    }

    /// The entry of `id` if it has not expired (an expired one is removed).
    fn live(&mut self, id: &SessionId, now: Instant) -> Option<&Entry> {
        if self.entries.get(id).is_some_and(|e| e.expires_at <= now) {
            self.remove(id);
            return None;
        }
        self.entries.get(id)
    }

    /// How many entries have expired but are not removed yet.
    fn expired_left(&self, now: Instant) -> usize {
        self.expiry.iter().take_while(|(at, _)| *at <= now).count()
    }

    fn next_tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Marks `id` as just used (capacity-bounded stores only).
    fn bump(&mut self, id: &SessionId, bounded: bool) {
        if !bounded {
            return;
        }
        let tick = self.next_tick();
        if let Some(entry) = self.entries.get_mut(id) {
            self.lru.remove(&entry.last_used);
            entry.last_used = tick;
            self.lru.insert(tick, id.clone());
        }
    }

    fn remove(&mut self, id: &SessionId) -> Option<Entry> {
        let entry = self.entries.remove(id)?;
        self.expiry.remove(&(entry.expires_at, id.clone()));
        self.lru.remove(&entry.last_used);
        Some(entry)
    }

    fn evict_lru(&mut self) {
        if let Some((_, id)) = self.lru.pop_first() {
            if let Some(entry) = self.entries.remove(&id) {
                self.expiry.remove(&(entry.expires_at, id.clone()));
            }
            tracing::debug!(
                component = "session",
                backend = BACKEND,
                session_id = %id,
                event_type = "session_evicted",
                "memory store full: evicted the least recently used session"
            );
        }
    }

    fn record(entry: &Entry, now: Instant) -> Record {
        Record::new(entry.payload.clone(), entry.meta.clone(), entry.version)
            .with_ttl(Some(entry.expires_at.saturating_duration_since(now)))
            .with_tokens(entry.tokens)
    }

    fn info(id: &SessionId, entry: &Entry, now: Instant) -> SessionInfo {
        SessionInfo::new(
            id.clone(),
            entry.meta.clone(),
            entry.version,
            Some(entry.expires_at.saturating_duration_since(now)),
        )
    }
}

fn parse_cursor(cursor: &Cursor) -> Result<SessionId> {
    let text = cursor.as_str();
    let rest = text
        .strip_prefix(CURSOR_PREFIX)
        .ok_or_else(|| Error::invalid_cursor(text, "not a cursor of the memory store"))?;
    SessionId::new(rest)
        .map_err(|_| Error::invalid_cursor(text, "not a cursor of the memory store"))
}

#[async_trait]
impl SessionStore for MemoryStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Record>> {
        let now = Instant::now();
        let mut state = self.lock();
        state.purge_some(now, PURGE_PER_OPERATION);
        if state.live(id, now).is_none() {
            return Ok(None);
        }
        state.bump(id, self.inner.capacity.is_some());
        Ok(state.entries.get(id).map(|entry| State::record(entry, now)))
    }

    async fn write(&self, id: &SessionId, write: Write) -> Result<WriteOutcome> {
        let now = Instant::now();
        let stamp = Timestamp::now();
        let mut state = self.lock();
        state.purge_some(now, PURGE_PER_OPERATION);
        let current = state
            .live(id, now)
            .map(|e| (e.version, e.meta.created_at, e.tokens));
        if !write
            .condition
            .allows(current.map(|(version, _, tokens)| (version, tokens.current())))
        {
            let current = state.entries.get(id).map(|entry| State::record(entry, now));
            return Ok(WriteOutcome::rejected(current));
        }
        let version = current.map_or(1, |(v, _, _)| v + 1);
        let created_at = current.map_or(stamp, |(_, c, _)| c);
        let tokens = current.map_or_else(
            || RecentTokens::first(write.token),
            |(_, _, tokens)| tokens.after(write.token),
        );
        let replaced = state.remove(id).is_some();
        if let (false, Some(capacity)) = (replaced, self.inner.capacity) {
            while state.entries.len() >= capacity.get() {
                // Expired sessions make room first, then the least recently used.
                if state.purge_some(now, 1) == 0 {
                    state.evict_lru();
                }
            }
        }
        let expires_at = now + write.ttl.as_duration();
        let last_used = state.next_tick();
        if self.inner.capacity.is_some() {
            state.lru.insert(last_used, id.clone());
        }
        state.expiry.insert((expires_at, id.clone()));
        state.entries.insert(
            id.clone(),
            Entry {
                meta: Meta::new(created_at, stamp, write.payload.len() as u64, write.summary)
                    .with_written_ttl(write.ttl),
                payload: write.payload,
                version,
                tokens,
                expires_at,
                last_used,
            },
        );
        Ok(WriteOutcome::written(version, created_at, tokens))
    }

    async fn delete(&self, id: &SessionId) -> Result<bool> {
        let now = Instant::now();
        let mut state = self.lock();
        state.purge_some(now, PURGE_PER_OPERATION);
        let existed = state.live(id, now).is_some();
        state.remove(id);
        Ok(existed)
    }

    async fn touch(&self, id: &SessionId, ttl: Ttl) -> Result<bool> {
        let now = Instant::now();
        let mut state = self.lock();
        state.purge_some(now, PURGE_PER_OPERATION);
        let expires_at = now + ttl.as_duration();
        if state.live(id, now).is_none() {
            return Ok(false);
        }
        let Some(entry) = state.entries.get_mut(id) else {
            return Ok(false);
        };
        let old = std::mem::replace(&mut entry.expires_at, expires_at);
        state.expiry.remove(&(old, id.clone()));
        state.expiry.insert((expires_at, id.clone()));
        state.bump(id, self.inner.capacity.is_some());
        Ok(true)
    }

    async fn exists(&self, id: &SessionId) -> Result<bool> {
        let now = Instant::now();
        let mut state = self.lock();
        state.purge_some(now, PURGE_PER_OPERATION);
        Ok(state.live(id, now).is_some())
    }

    async fn list_page(&self, cursor: Option<&Cursor>, limit: usize) -> Result<Page> {
        let after = cursor.map(parse_cursor).transpose()?;
        let limit = limit.max(1);
        let now = Instant::now();
        let mut state = self.lock();
        state.purge_some(now, PURGE_PER_OPERATION);
        let lower = match &after {
            Some(id) => Bound::Excluded(id),
            None => Bound::Unbounded,
        };
        let mut range = state
            .entries
            .range::<SessionId, _>((lower, Bound::Unbounded))
            .filter(|(_, entry)| entry.expires_at > now);
        let sessions: Vec<SessionInfo> = range
            .by_ref()
            .take(limit)
            .map(|(id, entry)| State::info(id, entry, now))
            .collect();
        let more = range.next().is_some();
        let next = match sessions.last() {
            Some(last) if more => Some(Cursor::from(format!("{CURSOR_PREFIX}{}", last.id))),
            _ => None,
        };
        Ok(Page::new(sessions, next))
    }

    async fn count(&self) -> Result<u64> {
        let now = Instant::now();
        let mut state = self.lock();
        state.purge_some(now, PURGE_PER_OPERATION);
        let expired = state.expired_left(now);
        Ok(state.entries.len().saturating_sub(expired) as u64)
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use session_core::Condition;
    use std::time::Duration;

    fn id(s: &str) -> SessionId {
        SessionId::new(s).unwrap()
    }

    fn write(ttl_ms: u64) -> Write {
        Write::new(Bytes::from_static(b"x"), Condition::Any)
            .with_ttl(Ttl::from_millis(ttl_ms).unwrap())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conformance() {
        session_core::testing::run_conformance(|| async {
            Arc::new(MemoryStore::new()) as Arc<dyn SessionStore>
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conformance_with_a_capacity_bound() {
        session_core::testing::run_conformance(|| async {
            Arc::new(MemoryStore::with_capacity(
                NonZeroUsize::new(10_000).unwrap(),
            )) as Arc<dyn SessionStore>
        })
        .await;
    }

    /// The memory store's real fault: a restore of an older snapshot (what a restart from an
    /// older RDB file does to Redis). It has no reply to lose and no restart.
    struct Rollbacks {
        store: MemoryStore,
        snapshot: std::sync::Mutex<Option<MemorySnapshot>>,
    }

    #[async_trait]
    impl session_core::testing::faults::FaultHarness for Rollbacks {
        async fn store(&self) -> Arc<dyn SessionStore> {
            Arc::new(self.store.clone())
        }

        async fn snapshot(&self) {
            *self.snapshot.lock().unwrap() = Some(self.store.snapshot());
        }

        async fn roll_back(&self) {
            let snapshot = self.snapshot.lock().unwrap().clone().expect("no snapshot");
            self.store.restore(&snapshot);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fault_checks() {
        let harness = Rollbacks {
            store: MemoryStore::new(),
            snapshot: std::sync::Mutex::new(None),
        };
        session_core::testing::faults::run_fault_checks(&harness).await;
    }

    #[tokio::test]
    async fn a_restored_snapshot_brings_back_versions_tokens_and_ttls() {
        let store = MemoryStore::new();
        store.save(&id("a"), write(60_000)).await.unwrap();
        let before = store.load(&id("a")).await.unwrap().unwrap();
        let snapshot = store.snapshot();
        store.save(&id("a"), write(60_000)).await.unwrap();
        store.save(&id("b"), write(60_000)).await.unwrap();
        store.restore(&snapshot);
        let after = store.load(&id("a")).await.unwrap().unwrap();
        assert_eq!(
            (after.version, after.tokens),
            (before.version, before.tokens)
        );
        assert!(after.ttl.unwrap() <= before.ttl.unwrap());
        assert!(store.load(&id("b")).await.unwrap().is_none());
        assert_eq!(store.count().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn expired_entries_are_removed_not_just_hidden() {
        let store = MemoryStore::new();
        for i in 0..50 {
            store.save(&id(&format!("s{i}")), write(50)).await.unwrap();
        }
        store.save(&id("keeper"), write(60_000)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(store.purge_expired(), 50);
        let state = store.lock();
        assert_eq!(state.entries.len(), 1);
        assert_eq!(state.expiry.len(), 1);
    }

    #[tokio::test]
    async fn any_operation_removes_expired_entries() {
        let store = MemoryStore::new();
        store.save(&id("a"), write(30)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(!store.exists(&id("zzz")).await.unwrap());
        assert!(store.lock().entries.is_empty());
    }

    #[tokio::test]
    async fn capacity_evicts_the_least_recently_used() {
        let store = MemoryStore::with_capacity(NonZeroUsize::new(3).unwrap());
        for s in ["a", "b", "c"] {
            store.save(&id(s), write(60_000)).await.unwrap();
        }
        // Reading "a" makes "b" the least recently used.
        assert!(store.load(&id("a")).await.unwrap().is_some());
        store.save(&id("d"), write(60_000)).await.unwrap();
        assert!(
            store.load(&id("b")).await.unwrap().is_none(),
            "b should be evicted"
        );
        for s in ["a", "c", "d"] {
            assert!(store.load(&id(s)).await.unwrap().is_some(), "{s} evicted");
        }
        assert_eq!(store.count().await.unwrap(), 3);
        // Rewriting an existing session never evicts another.
        store.save(&id("a"), write(60_000)).await.unwrap();
        assert_eq!(store.count().await.unwrap(), 3);
        let state = store.lock();
        assert_eq!(state.lru.len(), 3);
        assert_eq!(state.expiry.len(), 3);
    }

    #[tokio::test]
    async fn clones_share_sessions() {
        let a = MemoryStore::new();
        let b = a.clone();
        a.save(&id("shared"), write(60_000)).await.unwrap();
        assert!(b.load(&id("shared")).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn a_mass_expiry_is_spread_over_operations_and_never_shown() {
        let store = MemoryStore::new();
        let start = Instant::now();
        for n in 0..2_000 {
            store
                .write(&id(&format!("s{n}")), write(1_000))
                .await
                .unwrap();
        }
        store.write(&id("alive"), write(60_000)).await.unwrap();
        assert!(
            start.elapsed() < Duration::from_millis(900),
            "too slow to test"
        );
        std::thread::sleep(Duration::from_millis(1_100).saturating_sub(start.elapsed()));
        // One operation removes a bounded number, and every answer hides the rest.
        assert_eq!(store.count().await.unwrap(), 1);
        assert_eq!(
            store.lock().entries.len(),
            2_001 - PURGE_PER_OPERATION,
            "one operation purges at most PURGE_PER_OPERATION"
        );
        assert!(store.load(&id("s1999")).await.unwrap().is_none());
        assert!(!store.exists(&id("s5")).await.unwrap());
        assert!(!store.touch(&id("s6"), Ttl::DEFAULT).await.unwrap());
        assert!(!store.delete(&id("s7")).await.unwrap());
        let page = store.list_page(None, 10).await.unwrap();
        let ids: Vec<_> = page.sessions.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["alive"]);
        assert!(page.next.is_none());
        let left_over = store.lock().entries.len() - 1;
        assert!(left_over > 0);
        assert_eq!(store.purge_expired(), left_over);
    }
}
