//! [`SessionManager<T>`]: the typed API on any [`SessionStore`].

use std::{
    collections::{HashMap, HashSet},
    fmt,
    marker::PhantomData,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use bytes::Bytes;
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    Codec, Condition, Cursor, Error, Meta, Page, Record, Result, Session, SessionId, SessionInfo,
    SessionStore, Summary, Timestamp, Ttl, Write, WriteOutcome,
    local_copies::{Copy, DEFAULT_LOCAL_COPY_BYTES, LocalCopies},
    observe,
};

/// A `tracing` event about session `$id` of `$manager`, with the fields every session event
/// carries (see [`observe`]): `component = "session"`, `session_id`, `backend` and
/// `event_type` (the name of a constant in [`observe::event`]), then the event's own fields, if any,
/// and its message.
macro_rules! session_event {
    ($level:ident, $manager:expr, $id:expr, $event_type:ident, $($fields_and_message:tt)+) => {
        tracing::$level!(
            component = "session",
            session_id = %$id,
            backend = $manager.backend(),
            event_type = $crate::observe::event::$event_type,
            $($fields_and_message)+
        )
    };
}

/// Default bound on compare-and-set attempts in [`SessionManager::modify`].
pub const DEFAULT_MAX_ATTEMPTS: u32 = 64;

/// How many ids the sliding-expiry throttle remembers before it forgets the oldest.
const TOUCH_MEMORY: usize = 10_000;

type Summarizer<T> = dyn Fn(&T) -> Summary + Send + Sync;

/// The typed session API on any store: what the seed's `SessionManager` did, without lost
/// updates.
///
/// Cheap to clone (one `Arc`); clones share the store and settings.
///
/// ```
/// # async fn demo(store: std::sync::Arc<dyn session_core::SessionStore>) -> session_core::Result<()> {
/// use session_core::{SessionId, SessionManager};
///
/// let sessions: SessionManager<Vec<String>> = SessionManager::new(store);
/// let id = SessionId::new("user-123")?;
/// let history = sessions.get_or_create(&id, Vec::new).await?;
/// assert_eq!(history.version(), 1);
/// // Concurrent modifies, from any number of instances, lose no update.
/// let history = sessions.modify(&id, |h| h.push("hello".into())).await?;
/// assert_eq!(history.len(), 1);
/// # Ok(()) }
/// ```
pub struct SessionManager<T> {
    inner: Arc<Inner<T>>,
}

struct Inner<T> {
    store: Arc<dyn SessionStore>,
    codec: Codec,
    ttl: Ttl,
    sliding: Option<Duration>,
    max_attempts: u32,
    summarize: Option<Box<Summarizer<T>>>,
    /// When this instance last refreshed a session's TTL on read, so that a burst of reads
    /// costs one `touch`, not one per read.
    recent_touches: Mutex<HashMap<SessionId, Instant>>,
    /// The last known state of recently used sessions, the basis of one-round-trip modifies.
    copies: LocalCopies,
}

impl<T> Clone for SessionManager<T> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T> fmt::Debug for SessionManager<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionManager")
            .field("store", &self.inner.store)
            .field("ttl", &self.inner.ttl)
            .field("sliding", &self.inner.sliding)
            .field("max_attempts", &self.inner.max_attempts)
            .field("codec", &self.inner.codec)
            .finish_non_exhaustive()
    }
}

/// Builds a [`SessionManager`]: TTL, sliding expiry, size limit, retries, summary.
pub struct ManagerBuilder<T> {
    store: Arc<dyn SessionStore>,
    codec: Codec,
    ttl: Ttl,
    sliding: Option<Duration>,
    max_attempts: u32,
    summarize: Option<Box<Summarizer<T>>>,
    local_copy_bytes: usize,
    _state: PhantomData<fn() -> T>,
}

impl<T> ManagerBuilder<T> {
    /// The TTL every write sets (default one hour).
    #[must_use]
    pub fn ttl(mut self, ttl: Ttl) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sliding expiry: reads refresh the TTL too, at most once per `min_interval` for a session
    /// (a read refreshes when the TTL has run down by at least `min_interval`). Off by default.
    #[must_use]
    pub fn sliding_expiry(mut self, min_interval: Duration) -> Self {
        self.sliding = Some(min_interval);
        self
    }

    /// The codec (and with it the session size limit).
    #[must_use]
    pub fn codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    /// The largest encoded session, in bytes.
    #[must_use]
    pub fn max_size(mut self, bytes: usize) -> Self {
        self.codec = Codec::with_max_size(bytes);
        self
    }

    /// How many compare-and-set attempts `modify` makes before it gives up with `Conflict`
    /// (at least 1; default [`DEFAULT_MAX_ATTEMPTS`]).
    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// What listings show for a state; pass `T::summary` for a type that implements
    /// [`Summarize`](crate::Summarize). Default: nothing.
    #[must_use]
    pub fn summarize(mut self, f: impl Fn(&T) -> Summary + Send + Sync + 'static) -> Self {
        self.summarize = Some(Box::new(f));
        self
    }

    /// How many bytes of recently used sessions (payloads, ids and per-entry bookkeeping) the
    /// manager remembers (default [`DEFAULT_LOCAL_COPY_BYTES`]; 0 turns it off). A remembered session is modified in one
    /// round trip (a write conditioned on the remembered version) instead of two (read, then
    /// write). Reads never answer from it.
    #[must_use]
    pub fn local_copy_bytes(mut self, bytes: usize) -> Self {
        self.local_copy_bytes = bytes;
        self
    }

    /// The manager.
    pub fn build(self) -> SessionManager<T> {
        SessionManager {
            inner: Arc::new(Inner {
                store: self.store,
                codec: self.codec,
                ttl: self.ttl,
                sliding: self.sliding,
                max_attempts: self.max_attempts,
                summarize: self.summarize,
                recent_touches: Mutex::new(HashMap::new()),
                copies: LocalCopies::new(self.local_copy_bytes),
            }),
        }
    }
}

impl<T> SessionManager<T>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// A manager with the default settings on `store`.
    pub fn new(store: Arc<dyn SessionStore>) -> Self {
        Self::builder(store).build()
    }

    /// A builder on `store`.
    pub fn builder(store: Arc<dyn SessionStore>) -> ManagerBuilder<T> {
        ManagerBuilder {
            store,
            codec: Codec::default(),
            ttl: Ttl::DEFAULT,
            sliding: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            summarize: None,
            local_copy_bytes: DEFAULT_LOCAL_COPY_BYTES,
            _state: PhantomData,
        }
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.inner.store
    }

    /// The backend's name.
    pub fn backend(&self) -> &'static str {
        self.inner.store.backend()
    }

    /// The TTL every write sets.
    pub fn ttl(&self) -> Ttl {
        self.inner.ttl
    }

    /// The codec in use.
    pub fn codec(&self) -> &Codec {
        &self.inner.codec
    }

    /// Loads the session, or creates it from `create` if there is none (the seed's
    /// `get_or_create_agent`). Two instances racing to create the same id end up with one
    /// session: the loser returns the winner's state.
    pub async fn get_or_create(
        &self,
        id: &SessionId,
        create: impl FnOnce() -> T + Send,
    ) -> Result<Session<T>> {
        let start = Instant::now();
        let result = self.get_or_create_inner(id, create).await;
        observe::record("get_or_create", self.backend(), start, &result);
        result
    }

    async fn get_or_create_inner(
        &self,
        id: &SessionId,
        create: impl FnOnce() -> T + Send,
    ) -> Result<Session<T>> {
        if let Some(session) = self.load(id).await? {
            return Ok(session);
        }
        let value = create();
        let payload = self.inner.codec.encode(id, &value)?;
        let summary = self.summary(&value);
        for _ in 0..self.inner.max_attempts {
            let write = self.write_request(payload.clone(), summary.clone(), Condition::IfAbsent);
            match self.write(id, write).await? {
                Written::Yes { version, meta } => {
                    self.created(id);
                    return Ok(self.session(id, value, version, meta));
                }
                // Another instance created it first: theirs is the session.
                Written::No {
                    current: Some(record),
                } => return self.adopt(id, record),
                // ... and it vanished again (deleted or expired): try to create once more.
                Written::No { current: None } => {}
            }
        }
        Err(self.gave_up(id, None))
    }

    /// Loads a session. `None` when there is none (or it expired).
    pub async fn get(&self, id: &SessionId) -> Result<Option<Session<T>>> {
        let start = Instant::now();
        let result = self.load(id).await;
        observe::record("get", self.backend(), start, &result);
        result
    }

    /// Whether a live session has this id.
    pub async fn exists(&self, id: &SessionId) -> Result<bool> {
        let start = Instant::now();
        let result = self.inner.store.exists(id).await;
        observe::record("exists", self.backend(), start, &result);
        result
    }

    /// Writes `value` whatever is stored (creating the session if needed) and resets the TTL:
    /// the seed's `update_agent`. Returns the new version. Prefer [`modify`](Self::modify) or
    /// [`save`](Self::save) when another instance may write the same session.
    pub async fn update(&self, id: &SessionId, value: &T) -> Result<u64> {
        self.update_with_ttl(id, value, self.inner.ttl).await
    }

    /// [`update`](Self::update) with a TTL for this write only.
    pub async fn update_with_ttl(&self, id: &SessionId, value: &T, ttl: Ttl) -> Result<u64> {
        let start = Instant::now();
        let result = async {
            let payload = self.inner.codec.encode(id, value)?;
            let mut write = self.write_request(payload, self.summary(value), Condition::Any);
            write.ttl = ttl;
            match self.write(id, write).await? {
                Written::Yes { version, .. } => Ok(version),
                // `Any` cannot be refused; a store that does is broken.
                Written::No { .. } => Err(Error::Backend {
                    backend: self.backend(),
                    reason: format!("the store refused an unconditional write of session {id}"),
                    source: None,
                }),
            }
        }
        .await;
        observe::record("update", self.backend(), start, &result);
        result
    }

    /// Writes a loaded session back only if nobody wrote it since it was loaded; on success the
    /// session's version and meta are brought up to date. Otherwise [`Error::Conflict`] and
    /// nothing is written: load again, reapply, save again (or use [`modify`](Self::modify)).
    pub async fn save(&self, session: &mut Session<T>) -> Result<()> {
        let start = Instant::now();
        let result = async {
            let id = session.id.clone();
            let payload = self.inner.codec.encode(&id, &session.value)?;
            let condition = Condition::IfUnchanged {
                version: session.version,
                incarnation: session.meta.incarnation,
            };
            let write = self.write_request(payload, self.summary(&session.value), condition);
            match self.write(&id, write).await? {
                Written::Yes { version, meta } => {
                    session.version = version;
                    session.meta = meta;
                    session.ttl = Some(self.inner.ttl.as_duration());
                    Ok(())
                }
                Written::No { current } => Err(Error::Conflict {
                    id,
                    expected: Some(session.version),
                    actual: current.map(|r| r.version),
                }),
            }
        }
        .await;
        observe::record("save", self.backend(), start, &result);
        result
    }

    /// Loads the session, applies `f`, and writes the result if nobody wrote in between;
    /// otherwise applies `f` again to the current state (so `f` may run more than once), up to
    /// the configured number of attempts. Concurrent modifies from any number of instances lose
    /// no update. [`Error::NotFound`] when there is no session.
    ///
    /// When this instance read or wrote the session last, the write starts from its local copy
    /// and takes one round trip; a refused write returns the current state, so a conflict costs
    /// no extra read.
    pub async fn modify<F, R>(&self, id: &SessionId, f: F) -> Result<Session<T>>
    where
        F: FnMut(&mut T) -> R + Send,
        R: Send,
    {
        self.modify_with(id, f).await.map(|(session, _)| session)
    }

    /// [`modify`](Self::modify), also returning what `f` returned on the attempt that won.
    pub async fn modify_with<F, R>(&self, id: &SessionId, f: F) -> Result<(Session<T>, R)>
    where
        F: FnMut(&mut T) -> R + Send,
        R: Send,
    {
        let start = Instant::now();
        let result = self.modify_inner(id, None::<fn() -> T>, f).await;
        observe::record("modify", self.backend(), start, &result);
        result
    }

    /// [`modify_with`](Self::modify_with) that creates the session from `create` first when
    /// there is none (then applies `f` to the new state): "create on first message".
    pub async fn modify_or_create<C, F, R>(
        &self,
        id: &SessionId,
        create: C,
        f: F,
    ) -> Result<(Session<T>, R)>
    where
        C: FnMut() -> T + Send,
        F: FnMut(&mut T) -> R + Send,
        R: Send,
    {
        let start = Instant::now();
        let result = self.modify_inner(id, Some(create), f).await;
        observe::record("modify", self.backend(), start, &result);
        result
    }

    async fn modify_inner<C, F, R>(
        &self,
        id: &SessionId,
        mut create: Option<C>,
        mut f: F,
    ) -> Result<(Session<T>, R)>
    where
        C: FnMut() -> T + Send,
        F: FnMut(&mut T) -> R + Send,
        R: Send,
    {
        // What the next attempt starts from: a known state, known absence, or nothing (read).
        let mut basis = match self.inner.copies.basis(id) {
            Some(copy) => Basis::Known(copy),
            None => Basis::Unknown,
        };
        let mut conflicts = 0;
        let mut last_seen = None;
        for _ in 0..self.inner.max_attempts {
            if matches!(basis, Basis::Unknown) {
                basis = match self.inner.store.load(id).await? {
                    Some(record) => {
                        let ttl = record.ttl;
                        let copy = Copy::from(record);
                        self.inner.copies.remember_read(id, copy.clone(), ttl);
                        Basis::Known(copy)
                    }
                    None => {
                        self.inner.copies.remove(id);
                        Basis::Absent
                    }
                };
            }
            let (mut value, condition) = match std::mem::replace(&mut basis, Basis::Unknown) {
                Basis::Known(copy) => {
                    last_seen = Some(copy.version);
                    let value = self.inner.codec.decode(id, &copy.payload)?;
                    let condition = Condition::IfUnchanged {
                        version: copy.version,
                        incarnation: copy.incarnation,
                    };
                    (value, condition)
                }
                Basis::Absent | Basis::Unknown => match create.as_mut() {
                    Some(create) => (create(), Condition::IfAbsent),
                    None => return Err(Error::NotFound { id: id.clone() }),
                },
            };
            let out = f(&mut value);
            let payload = self.inner.codec.encode(id, &value)?;
            let write = self.write_request(payload, self.summary(&value), condition);
            match self.write(id, write).await? {
                Written::Yes { version, meta } => {
                    if condition == Condition::IfAbsent {
                        self.created(id);
                    }
                    return Ok((self.session(id, value, version, meta), out));
                }
                Written::No { current } => {
                    basis = match current {
                        Some(record) => Basis::Known(Copy::from(record)),
                        None => Basis::Absent,
                    };
                    conflicts += 1;
                    self.retry_after_conflict(id, conflicts).await;
                }
            }
        }
        Err(self.gave_up(id, last_seen))
    }

    /// Deletes a session. `true` if it existed.
    pub async fn delete(&self, id: &SessionId) -> Result<bool> {
        let start = Instant::now();
        let result = self.inner.store.delete(id).await;
        self.inner.copies.remove(id);
        if let Ok(true) = result {
            session_event!(info, self, id, SESSION_DELETED, "session deleted");
        }
        observe::record("delete", self.backend(), start, &result);
        result
    }

    /// Resets a session's TTL to the default without writing it. `true` if it existed.
    pub async fn touch(&self, id: &SessionId) -> Result<bool> {
        let start = Instant::now();
        let result = self.inner.store.touch(id, self.inner.ttl).await;
        observe::record("touch", self.backend(), start, &result);
        result
    }

    /// One page of the listing (see [`SessionStore::list_page`]).
    pub async fn list_page(&self, cursor: Option<&Cursor>, limit: usize) -> Result<Page> {
        let start = Instant::now();
        let result = self.inner.store.list_page(cursor, limit).await;
        observe::record("list_page", self.backend(), start, &result);
        result
    }

    /// Every live session (the seed's `list_sessions`), each once. Reads page by page; prefer
    /// [`list_page`](Self::list_page) for large stores.
    pub async fn list(&self) -> Result<Vec<SessionInfo>> {
        let start = Instant::now();
        let result = async {
            let mut seen = HashSet::new();
            let mut all = Vec::new();
            let mut cursor = None;
            loop {
                let page = self.inner.store.list_page(cursor.as_ref(), 500).await?;
                for info in page.sessions {
                    // A backend cursor (Redis SCAN) may return a session twice.
                    if seen.insert(info.id.clone()) {
                        all.push(info);
                    }
                }
                match page.next {
                    Some(next) => cursor = Some(next),
                    None => return Ok(all),
                }
            }
        }
        .await;
        observe::record("list", self.backend(), start, &result);
        result
    }

    /// How many live sessions there are.
    pub async fn count(&self) -> Result<u64> {
        let start = Instant::now();
        let result = self.inner.store.count().await;
        observe::record("count", self.backend(), start, &result);
        result
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Session<T>>> {
        let Some(record) = self.inner.store.load(id).await? else {
            self.inner.copies.remove(id);
            return Ok(None);
        };
        let mut session = self.adopt(id, record)?;
        if self.should_refresh(id, session.ttl)
            && self.inner.store.touch(id, self.inner.ttl).await?
        {
            session.ttl = Some(self.inner.ttl.as_duration());
            session_event!(
                debug,
                self,
                id,
                SESSION_TOUCHED,
                "session TTL refreshed on read"
            );
        }
        Ok(Some(session))
    }

    /// Decodes a record read from the store, remembers it as the local copy, and refreshes
    /// its TTL when sliding expiry asks for it.
    fn adopt(&self, id: &SessionId, record: Record) -> Result<Session<T>> {
        let value = self.inner.codec.decode(id, &record.payload)?;
        let Record {
            payload,
            meta,
            version,
            ttl,
        } = record;
        self.inner.copies.remember_read(
            id,
            Copy {
                payload,
                version,
                incarnation: meta.incarnation,
            },
            ttl,
        );
        Ok(Session {
            id: id.clone(),
            value,
            version,
            ttl,
            meta,
        })
    }

    /// Sliding expiry: refresh when the TTL has run down by `min_interval` and this instance
    /// has not refreshed the session within `min_interval`.
    fn should_refresh(&self, id: &SessionId, remaining: Option<Duration>) -> bool {
        let (Some(min_interval), Some(remaining)) = (self.inner.sliding, remaining) else {
            return false;
        };
        if self.inner.ttl.as_duration().saturating_sub(remaining) < min_interval {
            return false;
        }
        let now = Instant::now();
        let mut recent = self
            .inner
            .recent_touches
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if recent
            .get(id)
            .is_some_and(|last| now.duration_since(*last) < min_interval)
        {
            return false;
        }
        if recent.len() >= TOUCH_MEMORY {
            recent.retain(|_, last| now.duration_since(*last) < min_interval);
            if recent.len() >= TOUCH_MEMORY {
                recent.clear();
            }
        }
        recent.insert(id.clone(), now);
        true
    }

    fn summary(&self, value: &T) -> Summary {
        self.inner
            .summarize
            .as_ref()
            .map(|f| f(value))
            .unwrap_or_default()
    }

    fn write_request(&self, payload: Bytes, summary: Summary, condition: Condition) -> Write {
        Write {
            payload,
            summary,
            condition,
            ttl: self.inner.ttl,
        }
    }

    /// Writes, keeps the local copy up to date either way, and logs the save.
    async fn write(&self, id: &SessionId, write: Write) -> Result<Written> {
        let payload = write.payload.clone();
        let summary = write.summary.clone();
        let ttl = write.ttl.as_duration();
        match self.inner.store.write(id, write).await? {
            WriteOutcome::Written {
                version,
                created_at,
                incarnation,
            } => {
                session_event!(debug, self, id, SESSION_SAVED, version, "session saved");
                let meta = Meta {
                    created_at,
                    updated_at: Timestamp::now(),
                    size: payload.len() as u64,
                    summary,
                    incarnation,
                };
                let copy = Copy {
                    payload,
                    version,
                    incarnation,
                };
                self.inner.copies.remember_write(id, copy, Some(ttl));
                Ok(Written::Yes { version, meta })
            }
            WriteOutcome::Rejected { current } => {
                match &current {
                    Some(record) => self.inner.copies.remember_refusal(
                        id,
                        Copy::from(record.clone()),
                        record.ttl,
                    ),
                    None => self.inner.copies.remove(id),
                }
                Ok(Written::No { current })
            }
        }
    }

    /// Counts and logs the `conflicts`-th refused write of a `modify`, then waits before the
    /// next attempt.
    async fn retry_after_conflict(&self, id: &SessionId, conflicts: u32) {
        metrics::counter!(observe::metric::CONFLICT_RETRIES, "backend" => self.backend())
            .increment(1);
        session_event!(
            debug,
            self,
            id,
            CONFLICT_RETRY,
            conflicts,
            "version conflict, retrying"
        );
        backoff(conflicts).await;
    }

    fn created(&self, id: &SessionId) {
        session_event!(info, self, id, AGENT_CREATED, "session created");
    }

    fn session(&self, id: &SessionId, value: T, version: u64, meta: Meta) -> Session<T> {
        Session {
            id: id.clone(),
            value,
            version,
            ttl: Some(self.inner.ttl.as_duration()),
            meta,
        }
    }

    fn gave_up(&self, id: &SessionId, last_seen: Option<u64>) -> Error {
        Error::Conflict {
            id: id.clone(),
            expected: last_seen,
            actual: None,
        }
    }
}

/// The outcome of [`SessionManager::write`].
enum Written {
    Yes { version: u64, meta: Meta },
    No { current: Option<Record> },
}

/// What a `modify` attempt starts from.
enum Basis {
    /// Not read yet.
    Unknown,
    /// Known to be absent.
    Absent,
    /// Known state.
    Known(Copy),
}

/// Waits after the `conflicts`-th refused write: no wait after the first (a stale local copy is
/// not contention), then a random wait under a cap that doubles up to 20 ms, so that racing
/// writers spread out.
async fn backoff(conflicts: u32) {
    let attempt = conflicts;
    if attempt <= 1 {
        return;
    }
    let cap_us = (100u64 << (attempt - 2).min(8)).min(20_000);
    tokio::time::sleep(Duration::from_micros(fastrand::u64(0..=cap_us))).await;
}
