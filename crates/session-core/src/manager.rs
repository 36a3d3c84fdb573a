//! [`SessionManager<T>`]: the typed API on any [`SessionStore`].

use std::{
    collections::{HashMap, HashSet},
    fmt,
    marker::PhantomData,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use serde::{Serialize, de::DeserializeOwned};

use crate::{
    Codec, Cursor, Page, Record, Result, Session, SessionId, SessionInfo, SessionStore, Summary,
    Ttl,
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
pub(crate) use session_event;

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
    pub(crate) inner: Arc<Inner<T>>,
}

pub(crate) struct Inner<T> {
    pub(crate) store: Arc<dyn SessionStore>,
    pub(crate) codec: Codec,
    pub(crate) ttl: Ttl,
    sliding: Option<Duration>,
    pub(crate) max_attempts: u32,
    summarize: Option<Box<Summarizer<T>>>,
    /// When this instance last refreshed a session's TTL on read, so that a burst of reads
    /// costs one `touch`, not one per read.
    recent_touches: Mutex<HashMap<SessionId, Instant>>,
    /// The last known state of recently used sessions, the basis of one-round-trip modifies.
    pub(crate) copies: LocalCopies,
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
    ///
    /// A read refreshes a session to the TTL its last write set (a per-call TTL stays), and
    /// the interval counts as at most half that TTL (an interval at or above the TTL would
    /// never refresh). A refresh that fails is logged; the read still returns the session.
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

    /// The largest encoded session, in bytes (the codec's compression, depth bound and
    /// encryption keys are kept).
    #[must_use]
    pub fn max_size(mut self, bytes: usize) -> Self {
        self.codec = self.codec.with_size_limit(bytes);
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

    pub(crate) async fn load(&self, id: &SessionId) -> Result<Option<Session<T>>> {
        let Some(record) = self.inner.store.load(id).await? else {
            self.inner.copies.remove(id);
            return Ok(None);
        };
        let mut session = self.adopt(id, record)?;
        // A session keeps the TTL it was written with (a per-call TTL included); records
        // from before the meta kept it get the manager's.
        let ttl = session.meta.written_ttl.unwrap_or(self.inner.ttl);
        if self.should_refresh(id, ttl, session.ttl) {
            // The read succeeded: a refresh that fails is logged and leaves the TTL as it
            // was, it never turns the read into an error.
            match self.inner.store.touch(id, ttl).await {
                Ok(true) => {
                    session.ttl = Some(ttl.as_duration());
                    session_event!(
                        debug,
                        self,
                        id,
                        SESSION_TOUCHED,
                        "session TTL refreshed on read"
                    );
                }
                Ok(false) => {}
                Err(e) => {
                    self.forget_refresh(id);
                    tracing::warn!(
                        component = "session",
                        session_id = %id,
                        backend = self.backend(),
                        error = %e,
                        "sliding expiry: refreshing the TTL failed; the read stands"
                    );
                }
            }
        }
        Ok(Some(session))
    }

    /// Decodes a record read from the store and remembers it as the local copy.
    pub(crate) fn adopt(&self, id: &SessionId, record: Record) -> Result<Session<T>> {
        let value = self.inner.codec.decode(id, &record.payload)?;
        let basis = record.basis();
        let Record {
            payload, meta, ttl, ..
        } = record;
        self.inner
            .copies
            .remember_read(id, Copy { payload, basis }, ttl);
        Ok(Session {
            id: id.clone(),
            value,
            basis,
            ttl,
            meta,
        })
    }

    /// Sliding expiry: refresh when the TTL has run down by the interval and this instance
    /// has not refreshed the session within it. The interval is at most half the session's
    /// TTL, so that an interval at or above the TTL still refreshes.
    fn should_refresh(&self, id: &SessionId, ttl: Ttl, remaining: Option<Duration>) -> bool {
        let (Some(min_interval), Some(remaining)) = (self.inner.sliding, remaining) else {
            return false;
        };
        let min_interval = min_interval.min(ttl.as_duration() / 2);
        if ttl.as_duration().saturating_sub(remaining) < min_interval {
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

    /// Lets the next read try the refresh again (after a failed one).
    fn forget_refresh(&self, id: &SessionId) {
        self.inner
            .recent_touches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }

    pub(crate) fn summary(&self, value: &T) -> Summary {
        self.inner
            .summarize
            .as_ref()
            .map(|f| f(value))
            .unwrap_or_default()
    }
}
