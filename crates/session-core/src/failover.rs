//! [`FailoverStore`]: a primary store (Redis) that keeps serving through an outage from
//! memory, and reconciles when the primary answers again.
//!
//! - **Healthy**: every operation goes to the primary. The sessions this instance reads or
//!   writes are remembered in a bounded *near-copy* (the records exactly as the primary
//!   answered them: version, tokens, `created_at`).
//! - **Outage**: the first call that meets a connection error or a timeout
//!   ([`Error::is_outage`]: `Unavailable`, `OutcomeUnknown`; never a conflict, a missing
//!   session, corrupt data, out of memory or refused credentials) switches the store to
//!   memory and is answered from there. Reads come from the near-copy; writes are checked
//!   against it (the same conditions, versions and tokens as the primary's) and kept *dirty*,
//!   each with the primary content it was built on. A task probes the primary in the
//!   background with backoff.
//! - **Recovery**: when the primary answers, operations go to it again, and the dirty
//!   sessions are written back, each conditioned on the token it was based on (an operation
//!   on a session still owed writes it back first, so nothing is read or written past a
//!   change that has not reached the primary). Unchanged in the primary: written back, with
//!   the version and token this instance's copies know, so that they stay valid bases.
//!   Changed by another instance meanwhile: a conflict, decided by the [`ConflictResolver`]
//!   ([`LatestWins`] by default), logged with both versions and counted. Gone from the
//!   primary (it restarted empty, or the session expired there): restored. Deletes made
//!   during the outage are replayed.
//!
//! Everything is bounded: the near-copy (entries, bytes; clean entries are evicted least
//! recently used first, and counted) and the dirty set (entries, bytes: a change that does
//! not fit fails with [`Error::Unavailable`] and is counted and logged; nothing owed to the
//! primary is ever dropped silently).
//!
//! What an outage cannot give:
//! - a session this instance never touched is unknown to it: a read finds nothing, a
//!   listing shows only what it holds, a conditional write is refused as on an absent
//!   session, and a delete answers `false` and is not replayed;
//! - two instances that change the same session during the outage produce a conflict, and
//!   the rule drops one of the changes (logged, counted);
//! - the replay of a delete reads the session first and deletes it if unchanged: a write
//!   landing between those two steps is deleted too (the store trait has no conditional
//!   delete);
//! - an unconditional write (`Condition::Any`) whose outcome was unknown when the outage
//!   began may still be delivered late from a dead connection's buffers (after a partition
//!   heals) and land over what the write-back wrote. The manager's `modify` and `save`, and
//!   `update`'s first attempt, are conditional and cannot.
//!
//! While a write of a session is on its way to the primary, the fallback refuses changes to
//! that session (`Unavailable`): both could be built on the same content. A write whose
//! outcome is unknown and that the fallback cannot take keeps its `OutcomeUnknown`.

mod near;
mod resolve;

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard, PoisonError, Weak},
    time::{Duration, Instant},
};

use async_trait::async_trait;

pub use resolve::{ConflictResolver, LatestWins, Resolution, WriteBackConflict};

use self::{
    near::{Bounds, Dirty, NearCopy, Pending},
    resolve::Resolver,
};
use crate::{
    Basis, Condition, Cursor, Error, Meta, Page, RecentTokens, Record, Result, SessionId,
    SessionInfo, SessionStore, Timestamp, Ttl, Write, WriteOutcome, WriteToken,
    observe::{event, metric},
};

/// The backend name a [`FailoverStore`] reports while it serves from memory.
pub const FALLBACK_BACKEND: &str = "memory";

/// Default bound on the near-copy's bytes (clean and dirty together): 128 MiB, as much as a
/// manager's local copies ([`DEFAULT_LOCAL_COPY_BYTES`](crate::DEFAULT_LOCAL_COPY_BYTES)),
/// whose payload buffers it shares.
pub const DEFAULT_NEAR_COPY_BYTES: usize = 128 * 1024 * 1024;
/// Default bound on the near-copy's entries.
pub const DEFAULT_NEAR_COPY_ENTRIES: usize = 100_000;
/// Default bound on the bytes changed during an outage and owed to the primary: 64 MiB.
pub const DEFAULT_DIRTY_BYTES: usize = 64 * 1024 * 1024;
/// Default bound on the sessions changed during an outage.
pub const DEFAULT_DIRTY_ENTRIES: usize = 50_000;

/// Cursor text of a listing served from memory: this prefix, then the last id shown.
const CURSOR_PREFIX: &str = "f1:";

/// How many times one session's write-back is tried within one pass before it waits for the
/// next pass (another instance keeps changing it).
const WRITEBACK_ATTEMPTS: usize = 4;
/// Passes of one write-back: a session another instance keeps changing may need more than
/// one (after [`WRITEBACK_ATTEMPTS`] it waits for the next pass); what is left after them is
/// written back by the next operation on it, or the next probe.
const WRITEBACK_PASSES: usize = 16;

type Connect = Box<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<Arc<dyn SessionStore>>> + Send>> + Send + Sync,
>;

/// Where a [`FailoverStore`] is, as [`FailoverStore::status`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailoverMode {
    /// Operations go to the primary.
    Primary,
    /// The primary is unreachable: sessions are served from memory; the primary is probed.
    Fallback,
    /// The primary answers again and operations go to it; the changes made meanwhile are
    /// being written back (an operation on a session still owed writes it back first).
    WritingBack,
}

impl FailoverMode {
    /// The mode's name (`primary`, `fallback`, `writing_back`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Fallback => "fallback",
            Self::WritingBack => "writing_back",
        }
    }
}

/// A snapshot of a [`FailoverStore`]'s state, for health endpoints and tools.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FailoverStatus {
    /// Where operations go.
    pub mode: FailoverMode,
    /// The primary's backend name.
    pub primary: &'static str,
    /// Since when the fallback serves (`None` on the primary).
    pub fallback_for: Option<Duration>,
    /// Why the fallback serves: the error that switched it (no credentials in it).
    pub reason: Option<String>,
    /// Sessions changed in memory and owed to the primary.
    pub dirty_sessions: usize,
    /// Their bytes.
    pub dirty_bytes: usize,
    /// Sessions the near-copy holds (clean and dirty).
    pub near_copy_sessions: usize,
    /// Their bytes.
    pub near_copy_bytes: usize,
    /// Switches to the fallback since the store was built.
    pub activations: u64,
    /// Recoveries (write-back done, back on the primary) since the store was built.
    pub recoveries: u64,
    /// Sessions written back (including restored ones and replayed deletes).
    pub written_back: u64,
    /// Write-back conflicts (another instance changed the session meanwhile).
    pub conflicts: u64,
    /// Changes refused because the dirty bounds were reached.
    pub overflowed: u64,
    /// Near-copy entries evicted to stay within bounds.
    pub evicted: u64,
    /// Write-backs that failed for another reason than an outage (logged; the change is
    /// dropped).
    pub failed: u64,
    /// Changes dropped because their session expired before it was written back (it would
    /// have expired in the primary too).
    pub expired: u64,
}

/// Builds a [`FailoverStore`]: bounds, probe backoff and the conflict rule.
pub struct FailoverBuilder {
    primary: Option<Arc<dyn SessionStore>>,
    connect: Option<Connect>,
    primary_name: &'static str,
    bounds: Bounds,
    probe_min: Duration,
    probe_max: Duration,
    switch_after: Option<Duration>,
    resolver: Box<dyn ConflictResolver>,
    start_reason: Option<String>,
}

impl fmt::Debug for FailoverBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailoverBuilder")
            .field("primary", &self.primary_name)
            .field("bounds", &self.bounds)
            .field("probe_min", &self.probe_min)
            .field("probe_max", &self.probe_max)
            .finish_non_exhaustive()
    }
}

impl FailoverBuilder {
    fn new(primary_name: &'static str) -> Self {
        Self {
            primary: None,
            connect: None,
            primary_name,
            bounds: Bounds {
                entries: DEFAULT_NEAR_COPY_ENTRIES,
                bytes: DEFAULT_NEAR_COPY_BYTES,
                dirty_entries: DEFAULT_DIRTY_ENTRIES,
                dirty_bytes: DEFAULT_DIRTY_BYTES,
            },
            probe_min: Duration::from_millis(100),
            probe_max: Duration::from_secs(1),
            switch_after: None,
            resolver: Box::new(LatestWins),
            start_reason: None,
        }
    }

    /// Bounds of the near-copy, clean and dirty entries together (default
    /// [`DEFAULT_NEAR_COPY_ENTRIES`], [`DEFAULT_NEAR_COPY_BYTES`]). Each entry is charged its
    /// payload, its id and ~200 bytes.
    #[must_use]
    pub fn near_copy(mut self, entries: usize, bytes: usize) -> Self {
        self.bounds.entries = entries.max(1);
        self.bounds.bytes = bytes;
        self
    }

    /// Bounds of what may be changed during an outage (default [`DEFAULT_DIRTY_ENTRIES`],
    /// [`DEFAULT_DIRTY_BYTES`]); kept within the near-copy's. A change beyond them fails with
    /// [`Error::Unavailable`].
    #[must_use]
    pub fn dirty_limit(mut self, entries: usize, bytes: usize) -> Self {
        self.bounds.dirty_entries = entries;
        self.bounds.dirty_bytes = bytes;
        self
    }

    /// The probe's backoff during an outage: the first probe after `min`, doubling (with
    /// jitter of ±50%) up to `max` (default 100 ms to 1 s: an instance is back on the
    /// primary within about 1.5 s of it answering, for one `PING` per second while down).
    #[must_use]
    pub fn probe_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.probe_min = min.max(Duration::from_millis(1));
        self.probe_max = max.max(self.probe_min);
        self
    }

    /// The longest a call may wait for the primary before the fallback answers it (default:
    /// no limit of its own, the primary's timeouts decide). Set it to the primary's command
    /// timeout so that the switch happens within one command timeout even when the primary
    /// would first spend time resolving a lost reply or reconnecting. A write cut off this
    /// way may still land: it is kept in memory with its token, and the write-back
    /// recognises it.
    #[must_use]
    pub fn switch_after(mut self, limit: Duration) -> Self {
        self.switch_after = Some(limit.max(Duration::from_millis(1)));
        self
    }

    /// The rule for write-back conflicts (default [`LatestWins`]).
    #[must_use]
    pub fn on_conflict(mut self, resolver: impl ConflictResolver) -> Self {
        self.resolver = Box::new(resolver);
        self
    }

    /// The store. One that starts without a primary ([`FailoverStore::connecting`]) is in
    /// fallback mode and starts probing at once; call `build` inside a Tokio runtime.
    pub fn build(self) -> FailoverStore {
        let mut bounds = self.bounds;
        bounds.dirty_entries = bounds.dirty_entries.min(bounds.entries);
        bounds.dirty_bytes = bounds.dirty_bytes.min(bounds.bytes);
        let mode = match (&self.primary, &self.start_reason) {
            (Some(_), _) => Mode::Primary,
            (None, reason) => Mode::Fallback {
                since: Instant::now(),
                reason: reason
                    .clone()
                    .unwrap_or_else(|| "the primary was not reachable at start-up".to_owned()),
            },
        };
        let starts_down = !matches!(mode, Mode::Primary);
        let shared = Arc::new(Shared {
            connect: self.connect,
            primary_name: self.primary_name,
            probe_min: self.probe_min,
            probe_max: self.probe_max,
            switch_after: self.switch_after,
            resolver: Resolver(self.resolver),
            recovering: tokio::sync::Mutex::new(()),
            flushing: tokio::sync::Mutex::new(()),
            state: Mutex::new(State {
                primary: self.primary,
                mode,
                writing_back: false,
                prober: false,
                near: NearCopy::new(bounds),
                stats: Stats::default(),
                in_flight: std::collections::HashMap::new(),
            }),
        });
        if starts_down {
            let mut state = shared.lock();
            state.stats.activations += 1;
            metrics::gauge!(metric::FALLBACK_ACTIVE).set(1.0);
            metrics::counter!(metric::FALLBACK_ACTIVATIONS).increment(1);
            shared.start_prober(&mut state);
        }
        FailoverStore { shared }
    }
}

/// A primary store with a run-time fallback to memory (see the [module docs](self)).
///
/// ```
/// # async fn run(redis: std::sync::Arc<dyn session_core::SessionStore>) {
/// use std::sync::Arc;
/// use session_core::{FailoverStore, SessionStore};
///
/// let store: Arc<dyn SessionStore> = Arc::new(FailoverStore::new(redis));
/// # }
/// ```
#[derive(Clone)]
pub struct FailoverStore {
    shared: Arc<Shared>,
}

impl fmt::Debug for FailoverStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.status();
        f.debug_struct("FailoverStore")
            .field("primary", &status.primary)
            .field("mode", &status.mode)
            .field("dirty_sessions", &status.dirty_sessions)
            .finish_non_exhaustive()
    }
}

impl FailoverStore {
    /// A failover store on `primary` with the default bounds and rule.
    pub fn new(primary: Arc<dyn SessionStore>) -> Self {
        Self::builder(primary).build()
    }

    /// A builder on `primary`.
    pub fn builder(primary: Arc<dyn SessionStore>) -> FailoverBuilder {
        let mut builder = FailoverBuilder::new(primary.backend());
        builder.primary = Some(primary);
        builder
    }

    /// A builder for a primary that could not be reached at start-up: the store starts in
    /// fallback mode, and the probe calls `connect` (with backoff) until it gives a store;
    /// then the sessions changed meanwhile are written back as after any outage.
    /// `primary_name` is the primary's backend name (`redis`); `reason` says why it is not
    /// connected (shown in [`FailoverStatus::reason`]).
    pub fn connecting<F, Fut>(
        primary_name: &'static str,
        reason: impl Into<String>,
        connect: F,
    ) -> FailoverBuilder
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Arc<dyn SessionStore>>> + Send + 'static,
    {
        let mut builder = FailoverBuilder::new(primary_name);
        builder.connect = Some(Box::new(move || Box::pin(connect())));
        builder.start_reason = Some(reason.into());
        builder
    }

    /// Where the store is, and what it holds.
    pub fn status(&self) -> FailoverStatus {
        let state = self.shared.lock();
        let (fallback_for, reason) = match &state.mode {
            Mode::Primary => (None, None),
            Mode::Fallback { since, reason } => (Some(since.elapsed()), Some(reason.clone())),
        };
        let mode = match (&state.mode, state.writing_back) {
            (Mode::Primary, false) => FailoverMode::Primary,
            (Mode::Primary, true) => FailoverMode::WritingBack,
            (Mode::Fallback { .. }, _) => FailoverMode::Fallback,
        };
        let stats = &state.stats;
        FailoverStatus {
            mode,
            primary: self.shared.primary_name,
            fallback_for,
            reason,
            dirty_sessions: state.near.dirty_len(),
            dirty_bytes: state.near.dirty_bytes(),
            near_copy_sessions: state.near.len(),
            near_copy_bytes: state.near.bytes(),
            activations: stats.activations,
            recoveries: stats.recoveries,
            written_back: stats.written_back,
            conflicts: stats.conflicts,
            overflowed: stats.overflowed,
            evicted: state.near.evicted,
            failed: stats.failed,
            expired: state.near.expired,
        }
    }

    /// Probes the primary now and, if it answers, writes back what changed and switches to
    /// it; `true` when the store is on the primary afterwards. The background probe does the
    /// same on its own; this is for tools, tests, and a service that knows the primary is
    /// back.
    pub async fn recover_now(&self) -> bool {
        self.shared.try_recover().await
    }
}

enum Mode {
    Primary,
    Fallback { since: Instant, reason: String },
}

#[derive(Debug, Default)]
struct Stats {
    activations: u64,
    recoveries: u64,
    written_back: u64,
    conflicts: u64,
    overflowed: u64,
    failed: u64,
}

struct State {
    /// The primary (`None` until a store built with `connecting` connects it).
    primary: Option<Arc<dyn SessionStore>>,
    mode: Mode,
    writing_back: bool,
    prober: bool,
    near: NearCopy,
    stats: Stats,
    /// Writes sent to the primary and not answered yet, per session. While one is in
    /// flight, the fallback refuses writes to that session: both could be built on the same
    /// content, and both acknowledged, one would be lost to the conflict rule.
    in_flight: std::collections::HashMap<SessionId, u32>,
}

/// Counts a write to the primary as in flight until dropped (answered, failed, or cut off by
/// `switch_after`).
struct InFlight<'a> {
    shared: &'a Shared,
    id: &'a SessionId,
}

impl<'a> InFlight<'a> {
    fn new(shared: &'a Shared, id: &'a SessionId) -> Self {
        *shared.lock().in_flight.entry(id.clone()).or_insert(0) += 1;
        Self { shared, id }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        if let Some(n) = state.in_flight.get_mut(self.id) {
            *n -= 1;
            if *n == 0 {
                state.in_flight.remove(self.id);
            }
        }
    }
}

struct Shared {
    connect: Option<Connect>,
    primary_name: &'static str,
    probe_min: Duration,
    probe_max: Duration,
    switch_after: Option<Duration>,
    resolver: Resolver,
    /// One recovery at a time (the probe, or [`FailoverStore::recover_now`]).
    recovering: tokio::sync::Mutex<()>,
    /// One session written back at a time (the drain, and operations writing their own
    /// session back first), so that two never write the same change back at once.
    flushing: tokio::sync::Mutex<()>,
    state: Mutex<State>,
}

/// What the store knows of one session while it serves from memory.
enum Known {
    Live(Record, Option<Dirty>),
    Deleted(Dirty),
    Unknown,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every mutation under this lock is a few infallible map operations: a panic cannot
        // leave it half-done, so a poisoned lock is safe to go on with.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn primary(&self) -> Option<Arc<dyn SessionStore>> {
        self.lock().primary.clone()
    }

    /// `call` to the primary, within [`FailoverBuilder::switch_after`] if set.
    async fn bounded<T>(&self, call: impl Future<Output = Result<T>>) -> Result<T> {
        let Some(limit) = self.switch_after else {
            return call.await;
        };
        match tokio::time::timeout(limit, call).await {
            Ok(result) => result,
            Err(_) => Err(Error::Unavailable {
                backend: self.primary_name,
                reason: format!("no answer within {limit:?}"),
                source: None,
            }),
        }
    }

    /// A write to the primary within [`FailoverBuilder::switch_after`]: cut off, it may have
    /// landed, so its outcome is unknown (not `Unavailable`).
    async fn bounded_write(
        &self,
        id: &SessionId,
        call: impl Future<Output = Result<WriteOutcome>>,
    ) -> Result<WriteOutcome> {
        let Some(limit) = self.switch_after else {
            return call.await;
        };
        match tokio::time::timeout(limit, call).await {
            Ok(result) => result,
            Err(_) => Err(Error::OutcomeUnknown {
                id: id.clone(),
                backend: self.primary_name,
                reason: format!("no answer within {limit:?}"),
            }),
        }
    }

    fn observe(&self, id: &SessionId, record: Option<Record>, seq: u64) {
        let mut state = self.lock();
        let before = state.near.evicted;
        state.near.observe(id, record, seq, Instant::now());
        count_evictions(state.near.evicted - before);
    }

    /// Switches to the fallback after `error` (an outage), once.
    fn activate(self: &Arc<Self>, error: &Error) {
        let mut state = self.lock();
        if !matches!(state.mode, Mode::Primary) {
            return;
        }
        state.mode = Mode::Fallback {
            since: Instant::now(),
            reason: error.to_string(),
        };
        state.stats.activations += 1;
        metrics::gauge!(metric::FALLBACK_ACTIVE).set(1.0);
        metrics::counter!(metric::FALLBACK_ACTIVATIONS).increment(1);
        tracing::warn!(
            component = "session",
            backend = FALLBACK_BACKEND,
            primary = self.primary_name,
            event_type = event::FALLBACK_ACTIVATED,
            error = %error,
            near_copy_sessions = state.near.len(),
            "the primary store is unreachable: serving sessions from memory, writing back when \
             it answers again"
        );
        self.start_prober(&mut state);
    }

    fn start_prober(self: &Arc<Self>, state: &mut State) {
        if state.prober {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                component = "session",
                primary = self.primary_name,
                "no Tokio runtime: the primary is probed only by FailoverStore::recover_now"
            );
            return;
        };
        state.prober = true;
        let weak = Arc::downgrade(self);
        runtime.spawn(probe(weak, self.probe_min, self.probe_max));
    }

    /// Probes the primary (connecting it first if it never was), switches to it, and writes
    /// back what changed meanwhile. `true` when nothing is owed any more.
    ///
    /// The switch comes first: from then on every operation goes to the primary, and one on
    /// a session still owed first writes that session back ([`route`](Self::route)). So no
    /// change is made in memory any more, and the write-back converges however busy the
    /// service is (while serving from memory, a session changed every few milliseconds would
    /// be dirty again after every pass).
    async fn try_recover(self: &Arc<Self>) -> bool {
        let _one = self.recovering.lock().await;
        let on_primary = {
            let state = self.lock();
            if matches!(state.mode, Mode::Primary) && !state.writing_back {
                return true;
            }
            matches!(state.mode, Mode::Primary)
        };
        let primary = match self.primary() {
            Some(primary) => primary,
            None => {
                let Some(connect) = &self.connect else {
                    return false;
                };
                match connect().await {
                    Ok(primary) => {
                        self.lock().primary = Some(primary.clone());
                        primary
                    }
                    Err(e) => {
                        tracing::debug!(component = "session", primary = self.primary_name, error = %e, "primary not reachable yet");
                        return false;
                    }
                }
            }
        };
        if !on_primary {
            if let Err(e) = self.bounded(primary.ping()).await {
                tracing::debug!(component = "session", primary = self.primary_name, error = %e, "primary not reachable yet");
                return false;
            }
            let mut state = self.lock();
            let outage = match std::mem::replace(&mut state.mode, Mode::Primary) {
                Mode::Fallback { since, .. } => since.elapsed(),
                Mode::Primary => Duration::ZERO,
            };
            state.writing_back = true;
            metrics::gauge!(metric::FALLBACK_ACTIVE).set(0.0);
            metrics::histogram!(metric::FALLBACK_DURATION).record(outage.as_secs_f64());
            tracing::info!(
                component = "session",
                backend = self.primary_name,
                event_type = event::BACKEND_RECOVERED,
                outage_ms = outage.as_millis() as u64,
                dirty_sessions = state.near.dirty_len(),
                "the primary store answers again: sessions are served from it, and what \
                 changed meanwhile is written back"
            );
        }
        let started = Instant::now();
        let result = self.drain(primary.as_ref()).await;
        let mut state = self.lock();
        match result {
            Ok(report) if state.near.dirty_len() == 0 && matches!(state.mode, Mode::Primary) => {
                state.writing_back = false;
                state.stats.recoveries += 1;
                let took = started.elapsed();
                metrics::gauge!(metric::FALLBACK_DIRTY).set(0.0);
                metrics::histogram!(metric::WRITEBACK_DURATION).record(took.as_secs_f64());
                tracing::info!(
                    component = "session",
                    backend = self.primary_name,
                    event_type = event::WRITEBACK_DONE,
                    sessions = report.sessions,
                    conflicts = report.conflicts,
                    expired = report.expired,
                    failed = report.failed,
                    duration_ms = took.as_millis() as u64,
                    "the sessions changed during the outage are written back"
                );
                true
            }
            // Some sessions are still contested (another instance keeps changing them):
            // operations on them write them back first; the probe goes on.
            Ok(_) => false,
            Err(e) => {
                tracing::info!(
                    component = "session",
                    primary = self.primary_name,
                    error = %e,
                    dirty_sessions = state.near.dirty_len(),
                    "write-back interrupted; it goes on at the next probe"
                );
                drop(state);
                if e.is_outage() {
                    self.activate(&e);
                }
                false
            }
        }
    }

    /// Where an operation on `id` (`None`: one that names no session) goes: `Some((primary,
    /// seq))`, with the sequence number its answer is remembered under, after writing `id`
    /// back first if the outage's changes are still being written back; `None`: to the
    /// fallback (the primary is down, or met an outage just now).
    async fn route(
        self: &Arc<Self>,
        id: Option<&SessionId>,
    ) -> Result<Option<(Arc<dyn SessionStore>, u64)>> {
        // One lock on the common path: the mode and the call's sequence number together.
        let (primary, draining, mut seq) = {
            let mut state = self.lock();
            let Some(primary) = state.primary.clone() else {
                return Ok(None);
            };
            if !matches!(state.mode, Mode::Primary) {
                return Ok(None);
            }
            (primary, state.writing_back, state.near.next_seq())
        };
        if let (true, Some(id)) = (draining, id) {
            match self.flush(id, primary.as_ref()).await {
                Ok(()) => {}
                Err(e) if e.is_outage() => {
                    self.activate(&e);
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
            // Numbered after the flush, whose write-back the near-copy remembers.
            seq = self.lock().near.next_seq();
        }
        Ok(Some((primary, seq)))
    }

    /// Writes `id` back if it is still owed to the primary. A session that stays owed (another
    /// instance keeps changing it) cannot be used until it is settled: `Unavailable`.
    async fn flush(&self, id: &SessionId, primary: &dyn SessionStore) -> Result<()> {
        if !self.lock().near.is_dirty(id) {
            return Ok(());
        }
        let _one = self.flushing.lock().await;
        let item = {
            let mut state = self.lock();
            let (pending, _) = state.near.pending_one(id, Instant::now());
            pending
        };
        let Some(item) = item else {
            return Ok(());
        };
        let mut report = Report::default();
        self.write_back_entry(primary, item, &mut report).await?;
        if self.lock().near.is_dirty(id) {
            return Err(Error::Unavailable {
                backend: self.primary_name,
                reason: format!(
                    "session {id}: its change made while {} was unreachable is not written \
                     back yet (another instance keeps changing it)",
                    self.primary_name
                ),
                source: None,
            });
        }
        Ok(())
    }

    /// Writes back every dirty session, pass after pass until none is left (or only
    /// contested ones). `Err`: the primary failed again (or is out of memory).
    async fn drain(&self, primary: &dyn SessionStore) -> Result<Report> {
        let mut report = Report::default();
        for _ in 0..WRITEBACK_PASSES {
            let pending = {
                let mut state = self.lock();
                let (pending, expired) = state.near.pending(Instant::now());
                report.expired += expired;
                if expired > 0 {
                    metrics::counter!(metric::WRITEBACK_SESSIONS, "outcome" => "expired")
                        .increment(expired as u64);
                }
                pending
            };
            if pending.is_empty() {
                break;
            }
            for item in pending {
                let _one = self.flushing.lock().await;
                // An operation may have written it back meanwhile.
                let current = {
                    let mut state = self.lock();
                    state.near.pending_one(&item.id, Instant::now()).0
                };
                if let Some(item) = current {
                    self.write_back_entry(primary, item, &mut report).await?;
                }
            }
        }
        Ok(report)
    }

    /// Writes one dirty session back and settles its entry. A failure that is not the
    /// primary's unavailability is logged and counted, and the change dropped (it cannot be
    /// written, and keeping it would keep the store on the write-back for good).
    async fn write_back_entry(
        &self,
        primary: &dyn SessionStore,
        item: Pending,
        report: &mut Report,
    ) -> Result<()> {
        let id = item.id.clone();
        let generation = item.generation;
        let step = match self.write_back_one(primary, item, report).await {
            Ok(step) => step,
            Err(e) if e.is_outage() || is_out_of_memory(&e) => return Err(e),
            Err(e) => {
                tracing::error!(
                    component = "session",
                    session_id = %id,
                    backend = self.primary_name,
                    error = %e,
                    "write-back failed: the change made during the outage is dropped"
                );
                report.failed += 1;
                metrics::counter!(metric::WRITEBACK_SESSIONS, "outcome" => "failed").increment(1);
                let mut state = self.lock();
                state.stats.failed += 1;
                state.near.remove(&id);
                metrics::gauge!(metric::FALLBACK_DIRTY).set(state.near.dirty_len() as f64);
                return Ok(());
            }
        };
        if let Step::Settled(primary_now, outcome, ours) = step {
            metrics::counter!(metric::WRITEBACK_SESSIONS, "outcome" => outcome).increment(1);
            let mut state = self.lock();
            match outcome {
                "expired" => report.expired += 1,
                "failed" => {
                    report.failed += 1;
                    state.stats.failed += 1;
                }
                _ => {
                    report.sessions += 1;
                    state.stats.written_back += 1;
                }
            }
            state
                .near
                .settle(&id, generation, primary_now, ours, Instant::now());
            metrics::gauge!(metric::FALLBACK_DIRTY).set(state.near.dirty_len() as f64);
        }
        Ok(())
    }

    async fn write_back_one(
        &self,
        primary: &dyn SessionStore,
        item: Pending,
        report: &mut Report,
    ) -> Result<Step> {
        let Pending {
            id,
            record,
            ttl_left,
            dirty,
            ..
        } = item;
        let ttl = match ttl_left {
            Some(left) => match Ttl::new(left) {
                Ok(ttl) => ttl,
                Err(_) => return Ok(Step::Settled(None, "expired", true)),
            },
            None => Ttl::DEFAULT,
        };
        let Some(ours) = record else {
            return self.replay_delete(primary, &id, dirty, report).await;
        };
        if !dirty.changed {
            self.bounded(primary.touch(&id, ttl)).await?;
            return Ok(Step::Settled(None, "touched", true));
        }
        let mut ours = ours;
        let mut expected = dirty.base;
        let mut restored = false;
        let mut resolved: Option<&'static str> = None;
        // The write-back carries the token of this instance's last change, so that its local
        // copies stay valid bases. A token the primary has *fenced* (declared lost by the
        // resolve of a lost reply, delivered late once the network healed) cannot be stored
        // again: then a fresh one (the copies cost one refused write each).
        let mut fresh: Option<crate::WriteToken> = None;
        for _ in 0..WRITEBACK_ATTEMPTS {
            let Some(token) = fresh.or(ours.token()) else {
                return Ok(Step::Settled(None, "failed", true));
            };
            let condition = match expected {
                Some(base) => Condition::IfUnchanged(continuing(&base, &ours)),
                None => Condition::IfAbsent,
            };
            let write = Write::new(ours.payload.clone(), condition)
                .with_summary(ours.meta.summary.clone())
                .with_ttl(ttl)
                .with_token(token);
            let outcome = match self.bounded_write(&id, primary.write(&id, write)).await {
                Ok(outcome) => outcome,
                Err(e) if fresh.is_none() && !e.is_outage() && !is_out_of_memory(&e) => {
                    tracing::debug!(
                        component = "session",
                        session_id = %id,
                        error = %e,
                        "write-back refused with this instance's token; again with a fresh one"
                    );
                    fresh = Some(crate::WriteToken::random());
                    continue;
                }
                Err(e) => return Err(e),
            };
            match outcome {
                WriteOutcome::Written {
                    version,
                    created_at,
                    tokens,
                } => {
                    let meta = Meta::new(
                        created_at,
                        Timestamp::now(),
                        ours.payload.len() as u64,
                        ours.meta.summary.clone(),
                    )
                    .with_written_ttl(ttl);
                    let now = Record::new(ours.payload.clone(), meta, version)
                        .with_ttl(Some(ttl.as_duration()))
                        .with_tokens(tokens);
                    let outcome = resolved.unwrap_or(if restored { "restored" } else { "written" });
                    // A merge is not this instance's content: a change made meanwhile must
                    // meet it as a conflict.
                    return Ok(Step::Settled(Some(now), outcome, outcome != "merged"));
                }
                WriteOutcome::Rejected { current: None, .. } => {
                    // Gone from the primary: it restarted empty or lost it, or the session
                    // expired or was deleted there. What this instance changed comes back.
                    restored = expected.is_some();
                    expected = None;
                }
                WriteOutcome::Rejected {
                    current: Some(theirs),
                    ..
                } => {
                    let their_token = theirs.token();
                    if their_token.is_some() && their_token == ours.token() {
                        // Already there: an earlier write-back (or the write that met the
                        // outage) landed.
                        return Ok(Step::Settled(
                            Some(theirs),
                            resolved.unwrap_or("written"),
                            true,
                        ));
                    }
                    if ours
                        .token()
                        .is_some_and(|t| theirs.tokens.position(t).is_some())
                    {
                        // It landed, and another instance has built on it since: theirs
                        // holds this instance's change.
                        return Ok(Step::Settled(
                            Some(theirs),
                            resolved.unwrap_or("written"),
                            false,
                        ));
                    }
                    if their_token.is_some_and(|t| {
                        ours.tokens.position(t).is_some() || dirty.sent.position(t).is_some()
                    }) {
                        // The primary holds one of this instance's own writes of the outage
                        // (one that met it and landed after all): go on from it.
                        expected = Some(theirs.basis());
                        continue;
                    }
                    // (Changed again while a resolution was being written: decide again.)
                    let resolution = self.conflict(&id, Some(&ours), ours.meta.updated_at, &theirs);
                    report.conflicts += 1;
                    match resolution {
                        Resolution::KeepTheirs => {
                            return Ok(Step::Settled(Some(theirs), "kept_theirs", false));
                        }
                        Resolution::KeepOurs => {
                            resolved = Some("kept_ours");
                            ours.version = ours.version.max(theirs.version.saturating_add(1));
                            expected = Some(theirs.basis());
                        }
                        Resolution::Merged { payload, summary } => {
                            resolved = Some("merged");
                            let token = crate::WriteToken::random();
                            let meta = Meta::new(
                                theirs.meta.created_at,
                                Timestamp::now(),
                                payload.len() as u64,
                                summary,
                            );
                            ours = Record::new(payload, meta, theirs.version.saturating_add(1))
                                .with_tokens(ours.tokens.after(token));
                            expected = Some(theirs.basis());
                        }
                    }
                }
            }
        }
        Ok(Step::Again)
    }

    async fn replay_delete(
        &self,
        primary: &dyn SessionStore,
        id: &SessionId,
        dirty: Dirty,
        report: &mut Report,
    ) -> Result<Step> {
        let Some(theirs) = self.bounded(primary.load(id)).await? else {
            return Ok(Step::Settled(None, "deleted", true));
        };
        let ours = |t: WriteToken| dirty.sent.position(t).is_some();
        let unchanged = match dirty.base {
            Some(base) => match base.token() {
                Some(token) => theirs.token() == Some(token) || theirs.token().is_some_and(ours),
                None => theirs.tokens.is_empty() && theirs.version == base.version(),
            },
            // Created here during the outage: only a write of it that reached the primary
            // is this instance's to delete; anything else is another instance's session.
            None => theirs.token().is_some_and(ours),
        };
        if unchanged {
            self.bounded(primary.delete(id)).await?;
            return Ok(Step::Settled(None, "deleted", true));
        }
        if dirty.base.is_none() {
            return Ok(Step::Settled(Some(theirs), "kept_theirs", false));
        }
        report.conflicts += 1;
        match self.conflict(id, None, dirty.at, &theirs) {
            Resolution::KeepOurs => {
                self.bounded(primary.delete(id)).await?;
                Ok(Step::Settled(None, "kept_ours", true))
            }
            Resolution::KeepTheirs => Ok(Step::Settled(Some(theirs), "kept_theirs", false)),
            Resolution::Merged { payload, summary } => {
                let ttl = theirs
                    .ttl
                    .and_then(|t| Ttl::new(t).ok())
                    .unwrap_or(Ttl::DEFAULT);
                let write = Write::new(payload, Condition::IfUnchanged(theirs.basis()))
                    .with_summary(summary)
                    .with_ttl(ttl);
                match self.bounded_write(id, primary.write(id, write)).await? {
                    WriteOutcome::Written { .. } => Ok(Step::Settled(None, "merged", false)),
                    WriteOutcome::Rejected { .. } => Ok(Step::Again),
                }
            }
        }
    }

    /// Asks the resolver, logs both versions and counts the conflict.
    fn conflict(
        &self,
        id: &SessionId,
        ours: Option<&Record>,
        ours_at: Timestamp,
        theirs: &Record,
    ) -> Resolution {
        let resolution = self.resolver.0.resolve(&WriteBackConflict {
            id,
            ours,
            ours_at,
            theirs,
        });
        self.lock().stats.conflicts += 1;
        metrics::counter!(metric::WRITEBACK_CONFLICTS, "resolution" => resolution.as_str())
            .increment(1);
        tracing::warn!(
            component = "session",
            session_id = %id,
            backend = self.primary_name,
            event_type = event::WRITEBACK_CONFLICT,
            resolution = resolution.as_str(),
            ours_version = ours.map(|r| r.version),
            ours_updated_at = %ours_at,
            ours_size = ours.map(|r| r.payload.len()),
            ours_deleted = ours.is_none(),
            ours_token = ?ours.and_then(Record::token),
            theirs_version = theirs.version,
            theirs_updated_at = %theirs.meta.updated_at,
            theirs_size = theirs.payload.len(),
            theirs_token = ?theirs.token(),
            "session changed here during the outage and by another instance meanwhile"
        );
        resolution
    }

    // --- operations while serving from memory (all under the lock, no await) ---

    fn known(state: &mut State, id: &SessionId, now: Instant) -> Known {
        match state.near.get(id, now) {
            Some(entry) => match (&entry.record, entry.dirty) {
                (Some(record), dirty) => Known::Live(record.clone(), dirty),
                (None, Some(dirty)) => Known::Deleted(dirty),
                (None, None) => Known::Unknown,
            },
            None => Known::Unknown,
        }
    }

    fn fallback_load(&self, id: &SessionId) -> Option<Record> {
        let now = Instant::now();
        let mut state = self.lock();
        state.near.get(id, now).and_then(|e| e.live_record(now))
    }

    /// Refuses a change served from memory while a write of the same session is on its way
    /// to the primary: both could be built on the same content (and the write's answer,
    /// arriving later, would not replace a dirty entry), so one would be lost.
    fn not_in_flight(&self, state: &State, id: &SessionId) -> Result<()> {
        if !state.in_flight.contains_key(id) {
            return Ok(());
        }
        Err(Error::Unavailable {
            backend: FALLBACK_BACKEND,
            reason: format!(
                "session {id}: {} stopped answering while a write of this session was on its \
                 way to it; nothing was changed",
                self.primary_name
            ),
            source: None,
        })
    }

    /// A write served from memory. `sent`: it was sent to the primary first and may have
    /// landed there.
    fn fallback_write(
        self: &Arc<Self>,
        id: &SessionId,
        write: Write,
        sent: bool,
    ) -> Result<WriteOutcome> {
        let now = Instant::now();
        let stamp = Timestamp::now();
        let mut state = self.lock();
        self.not_in_flight(&state, id)?;
        let known = Self::known(&mut state, id, now);
        // The content the write goes on from, and the primary content a write-back is
        // conditioned on.
        let earlier_sent = match &known {
            Known::Live(_, Some(dirty)) | Known::Deleted(dirty) => dirty.sent,
            _ => RecentTokens::new(),
        };
        let (previous, base): (Option<Basis>, Option<Basis>) = match &known {
            Known::Live(record, dirty) => {
                if !write
                    .condition
                    .allows(Some((record.version, record.token())))
                {
                    let ttl = state.near.get(id, now).and_then(|e| e.live_record(now));
                    return Ok(WriteOutcome::rejected(ttl));
                }
                let base = match dirty {
                    Some(dirty) => dirty.base,
                    None => Some(record.basis()),
                };
                (Some(record.basis()), base)
            }
            Known::Deleted(dirty) => {
                if !write.condition.allows(None) {
                    return Ok(WriteOutcome::rejected(None));
                }
                (None, dirty.base)
            }
            Known::Unknown => match write.condition {
                Condition::Any | Condition::IfAbsent => (None, None),
                // A basis or a version of a session this instance does not hold cannot be
                // checked (a basis may even come from another session): as far as this
                // instance can tell, the session is absent, as a read of it answers.
                _ => return Ok(WriteOutcome::rejected(None)),
            },
        };
        let version = previous.map_or(1, |b| b.version().saturating_add(1));
        let created_at = previous.map_or(stamp, |b| b.created_at());
        let tokens = previous.map_or_else(
            || RecentTokens::first(write.token),
            |b| b.tokens().after(write.token),
        );
        let meta = Meta::new(created_at, stamp, write.payload.len() as u64, write.summary)
            .with_written_ttl(write.ttl);
        let record = Record::new(write.payload, meta, version).with_tokens(tokens);
        let dirty = Dirty {
            base,
            changed: true,
            at: stamp,
            sent: if sent {
                earlier_sent.after(write.token)
            } else {
                earlier_sent
            },
        };
        let expires_at = Some(now + write.ttl.as_duration());
        self.change(&mut state, id, Some(record), expires_at, dirty)?;
        Ok(WriteOutcome::written(version, created_at, tokens))
    }

    fn change(
        self: &Arc<Self>,
        state: &mut State,
        id: &SessionId,
        record: Option<Record>,
        expires_at: Option<Instant>,
        dirty: Dirty,
    ) -> Result<()> {
        let before = state.near.evicted;
        let result = state.near.change(id, record, expires_at, dirty);
        count_evictions(state.near.evicted - before);
        metrics::gauge!(metric::FALLBACK_DIRTY).set(state.near.dirty_len() as f64);
        if result.is_ok() {
            if matches!(state.mode, Mode::Primary) {
                // An operation routed to memory just before the store switched back (and
                // the write-back finished): it is owed like any other, so the write-back
                // and the probe go on.
                state.writing_back = true;
                self.start_prober(state);
            }
            return Ok(());
        }
        state.stats.overflowed += 1;
        metrics::counter!(metric::FALLBACK_OVERFLOWS, "what" => "dirty").increment(1);
        tracing::error!(
            component = "session",
            session_id = %id,
            backend = FALLBACK_BACKEND,
            event_type = event::FALLBACK_OVERFLOW,
            dirty_sessions = state.near.dirty_len(),
            dirty_bytes = state.near.dirty_bytes(),
            "the fallback holds as many changes as it may keep for write-back: change refused"
        );
        Err(Error::Unavailable {
            backend: FALLBACK_BACKEND,
            reason: format!(
                "session {id}: {} is unreachable and the fallback already holds {} changed \
                 sessions ({} bytes), its limit",
                self.primary_name,
                state.near.dirty_len(),
                state.near.dirty_bytes()
            ),
            source: None,
        })
    }

    fn fallback_delete(self: &Arc<Self>, id: &SessionId) -> Result<bool> {
        let now = Instant::now();
        let stamp = Timestamp::now();
        let mut state = self.lock();
        self.not_in_flight(&state, id)?;
        let (base, sent) = match Self::known(&mut state, id, now) {
            Known::Live(record, dirty) => (
                dirty.map_or(Some(record.basis()), |d| d.base),
                dirty.map_or(RecentTokens::new(), |d| d.sent),
            ),
            Known::Deleted(_) => return Ok(false),
            // Not held here: as far as this instance can tell it does not exist (as a read
            // answers), and deleting blindly on recovery could remove another instance's
            // session.
            Known::Unknown => return Ok(false),
        };
        if base.is_none() && sent.is_empty() {
            // Created here during the outage and never sent: nothing to replay.
            state.near.remove(id);
            metrics::gauge!(metric::FALLBACK_DIRTY).set(state.near.dirty_len() as f64);
            return Ok(true);
        }
        let dirty = Dirty {
            base,
            changed: true,
            at: stamp,
            sent,
        };
        self.change(&mut state, id, None, None, dirty)?;
        Ok(true)
    }

    fn fallback_touch(self: &Arc<Self>, id: &SessionId, ttl: Ttl) -> Result<bool> {
        let now = Instant::now();
        let mut state = self.lock();
        self.not_in_flight(&state, id)?;
        let Known::Live(record, dirty) = Self::known(&mut state, id, now) else {
            return Ok(false);
        };
        let dirty = dirty.unwrap_or(Dirty {
            base: Some(record.basis()),
            changed: false,
            at: Timestamp::now(),
            sent: RecentTokens::new(),
        });
        let expires_at = now + ttl.as_duration();
        if self
            .change(&mut state, id, Some(record), Some(expires_at), dirty)
            .is_err()
        {
            // No room to owe the TTL reset to the primary (counted and logged by `change`):
            // the session still lives on here; in the primary it keeps its own TTL.
            state.near.set_expiry(id, expires_at);
        }
        Ok(true)
    }

    fn fallback_page(&self, cursor: Option<&Cursor>, limit: usize) -> Result<Page> {
        let after = match cursor {
            None => None,
            Some(cursor) => Some(parse_cursor(cursor).ok_or_else(|| {
                Error::invalid_cursor(
                    cursor.as_str(),
                    format!(
                        "not a cursor of the memory fallback: while {} is unreachable, a \
                         listing started on it cannot go on (start it again to list the \
                         sessions this instance holds)",
                        self.primary_name
                    ),
                )
            })?),
        };
        let now = Instant::now();
        let limit = limit.max(1);
        let state = self.lock();
        let (page, more) = state.near.page(after.as_ref(), limit, now);
        let next = match page.last() {
            Some((id, _)) if more => Some(Cursor::from(format!("{CURSOR_PREFIX}{id}"))),
            _ => None,
        };
        let sessions = page
            .into_iter()
            .map(|(id, r)| SessionInfo::new(id, r.meta, r.version, r.ttl))
            .collect();
        Ok(Page::new(sessions, next))
    }
}

/// The basis for writing `ours` back over the primary's `base`: the primary's token (what
/// the guard compares) and history, and `ours`' version less one, so that the primary stores
/// exactly the version this instance's copies know (a store computes the new version from
/// the basis; the memory store counts its own).
fn continuing(base: &Basis, ours: &Record) -> Basis {
    let version = ours.version.max(base.version().saturating_add(1)) - 1;
    Basis::new(version, base.created_at(), base.tokens())
}

/// Out of memory ends a write-back pass like an outage: the primary answers, but cannot take
/// the changes yet; the next probe tries again.
fn is_out_of_memory(e: &Error) -> bool {
    matches!(e, Error::OutOfMemory { .. })
}

fn parse_cursor(cursor: &Cursor) -> Option<SessionId> {
    let rest = cursor.as_str().strip_prefix(CURSOR_PREFIX)?;
    SessionId::new(rest).ok()
}

fn count_evictions(evicted: u64) {
    if evicted > 0 {
        metrics::counter!(metric::FALLBACK_OVERFLOWS, "what" => "near_copy").increment(evicted);
    }
}

#[derive(Debug, Default)]
struct Report {
    sessions: usize,
    conflicts: usize,
    expired: usize,
    failed: usize,
}

// A short-lived return value of one write-back step, moved once: boxing the record would
// only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Step {
    /// Done: the primary now holds this (`None`: nothing, or not worth keeping a copy of).
    /// `ours`: the primary holds this instance's content (not theirs, nor a merge).
    Settled(Option<Record>, &'static str, bool),
    /// Not settled in this pass.
    Again,
}

async fn probe(shared: Weak<Shared>, min: Duration, max: Duration) {
    let mut delay = min;
    loop {
        let jittered = delay.mul_f64(0.5 + fastrand::f64());
        tokio::time::sleep(jittered).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        shared.try_recover().await;
        {
            // Decided under the lock that `activate` takes: a new outage either finds this
            // probe still running, or starts a new one.
            let mut state = shared.lock();
            if matches!(state.mode, Mode::Primary) && !state.writing_back {
                state.prober = false;
                return;
            }
        }
        delay = (delay * 2).min(max);
    }
}

#[async_trait]
impl SessionStore for FailoverStore {
    fn backend(&self) -> &'static str {
        match self.shared.lock().mode {
            Mode::Primary => self.shared.primary_name,
            Mode::Fallback { .. } => FALLBACK_BACKEND,
        }
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Record>> {
        if let Some((primary, seq)) = self.shared.route(Some(id)).await? {
            match self.shared.bounded(primary.load(id)).await {
                Ok(record) => {
                    self.shared.observe(id, record.clone(), seq);
                    return Ok(record);
                }
                Err(e) if e.is_outage() => self.shared.activate(&e),
                Err(e) => return Err(e),
            }
        }
        Ok(self.shared.fallback_load(id))
    }

    async fn write(&self, id: &SessionId, write: Write) -> Result<WriteOutcome> {
        if let Some((primary, seq)) = self.shared.route(Some(id)).await? {
            // The parts of the write kept for the near-copy, and for the fallback should the
            // primary not answer (one clone of the summary, none of the payload's bytes).
            let Write {
                payload,
                summary,
                condition,
                ttl,
                token,
                ..
            } = write;
            let sent = Write::new(payload.clone(), condition)
                .with_summary(summary.clone())
                .with_ttl(ttl)
                .with_token(token);
            let in_flight = InFlight::new(&self.shared, id);
            let result = self.shared.bounded_write(id, primary.write(id, sent)).await;
            if result.is_err() {
                drop(in_flight);
            }
            match result {
                Ok(outcome) => {
                    let seen = match &outcome {
                        WriteOutcome::Written {
                            version,
                            created_at,
                            tokens,
                        } => {
                            let meta = Meta::new(
                                *created_at,
                                Timestamp::now(),
                                payload.len() as u64,
                                summary,
                            )
                            .with_written_ttl(ttl);
                            Some(
                                Record::new(payload, meta, *version)
                                    .with_ttl(Some(ttl.as_duration()))
                                    .with_tokens(*tokens),
                            )
                        }
                        WriteOutcome::Rejected { current } => current.clone(),
                    };
                    self.shared.observe(id, seen, seq);
                    return Ok(outcome);
                }
                // A write whose outcome is unknown may have landed: it is kept in memory
                // with the same token, and the write-back recognises it if it did. If the
                // fallback cannot take it, the truth is still that the outcome is unknown.
                // (`Unavailable` means nothing was sent: the fallback's answer is the truth.)
                Err(e) if e.is_outage() => {
                    self.shared.activate(&e);
                    let write = Write::new(payload, condition)
                        .with_summary(summary)
                        .with_ttl(ttl)
                        .with_token(token);
                    let in_doubt = matches!(e, Error::OutcomeUnknown { .. });
                    return match self.shared.fallback_write(id, write, in_doubt) {
                        Ok(outcome @ WriteOutcome::Written { .. }) => Ok(outcome),
                        _ if in_doubt => Err(e),
                        other => other,
                    };
                }
                Err(e) => return Err(e),
            }
        }
        self.shared.fallback_write(id, write, false)
    }

    async fn delete(&self, id: &SessionId) -> Result<bool> {
        if let Some((primary, seq)) = self.shared.route(Some(id)).await? {
            match self.shared.bounded(primary.delete(id)).await {
                Ok(existed) => {
                    self.shared.observe(id, None, seq);
                    return Ok(existed);
                }
                Err(e) if e.is_outage() => self.shared.activate(&e),
                Err(e) => return Err(e),
            }
        }
        self.shared.fallback_delete(id)
    }

    async fn touch(&self, id: &SessionId, ttl: Ttl) -> Result<bool> {
        if let Some((primary, seq)) = self.shared.route(Some(id)).await? {
            match self.shared.bounded(primary.touch(id, ttl)).await {
                Ok(existed) => {
                    let mut state = self.shared.lock();
                    if existed {
                        state
                            .near
                            .set_expiry(id, Instant::now() + ttl.as_duration());
                    } else {
                        state.near.observe(id, None, seq, Instant::now());
                    }
                    return Ok(existed);
                }
                Err(e) if e.is_outage() => self.shared.activate(&e),
                Err(e) => return Err(e),
            }
        }
        self.shared.fallback_touch(id, ttl)
    }

    async fn list_page(&self, cursor: Option<&Cursor>, limit: usize) -> Result<Page> {
        if let Some((primary, _)) = self.shared.route(None).await? {
            // A listing begun from memory goes on from the start on the primary: a page
            // may repeat sessions, never skip one.
            let cursor = cursor.filter(|c| !c.as_str().starts_with(CURSOR_PREFIX));
            match self.shared.bounded(primary.list_page(cursor, limit)).await {
                Ok(page) => return Ok(page),
                Err(e) if e.is_outage() => self.shared.activate(&e),
                Err(e) => return Err(e),
            }
        }
        self.shared.fallback_page(cursor, limit)
    }

    async fn count(&self) -> Result<u64> {
        if let Some((primary, _)) = self.shared.route(None).await? {
            match self.shared.bounded(primary.count()).await {
                Ok(n) => return Ok(n),
                Err(e) if e.is_outage() => self.shared.activate(&e),
                Err(e) => return Err(e),
            }
        }
        Ok(self.shared.lock().near.live(Instant::now()) as u64)
    }

    async fn ping(&self) -> Result<()> {
        if let Some((primary, _)) = self.shared.route(None).await? {
            match self.shared.bounded(primary.ping()).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_outage() => self.shared.activate(&e),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
