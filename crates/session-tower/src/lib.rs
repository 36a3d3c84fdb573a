//! [tower-sessions] on durable session stores: [`TowerStore`] implements tower-sessions'
//! `SessionStore` trait (tower-sessions-core 0.15) over any
//! `Arc<dyn session_core::SessionStore>`: the in-memory store, Redis or Valkey
//! (`session_redis::RedisStore`), the run-time fallback (`session_core::FailoverStore`), or
//! whatever `session_config` builds from the environment.
//!
//! An axum service on tower-sessions switches with one line and keeps its handlers:
//!
//! ```
//! use std::sync::Arc;
//! use axum::{Router, routing::get};
//! use session_core::SessionStore;
//! use session_memory::MemoryStore;
//! use session_tower::TowerStore;
//! use tower_sessions::{Session, SessionManagerLayer};
//!
//! /// Counts the visits of one browser.
//! async fn visits(session: Session) -> String {
//!     let n = session.get::<u64>("visits").await.ok().flatten().unwrap_or(0) + 1;
//!     let _ = session.insert("visits", n).await;
//!     n.to_string()
//! }
//!
//! // Any store: MemoryStore, session_redis::RedisStore, what session_config builds ...
//! let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
//!
//! let app: Router = Router::new().route("/", get(visits)).layer(
//!     // was: SessionManagerLayer::new(tower_sessions::MemoryStore::default())
//!     SessionManagerLayer::new(TowerStore::new(store)),
//! );
//! # let _ = app;
//! ```
//!
//! # What each operation does
//!
//! - `create` writes only if no live session has the id (the store's
//!   [`Condition::IfAbsent`], one atomic step): it never overwrites. On a collision it draws a
//!   new random id into the record and tries again, as tower-sessions' own stores do; after
//!   [`MAX_CREATE_ATTEMPTS`] taken ids in a row it gives up with `Error::Backend`.
//! - `save` writes the record whatever is stored ([`Condition::Any`]), as tower-sessions'
//!   memory store does: a session saved under an id nobody created is stored. The
//!   record's `expiry_date` becomes the session's TTL ([`Ttl`]): the time left, rounded up to
//!   whole milliseconds, at most [`Ttl::MAX`] (ten years). An expiry date that is not in the
//!   future deletes the session instead (`create` then stores nothing).
//! - `load` returns `None` for an absent or expired session (the store's TTL, and the record's
//!   own `expiry_date`, checked again). A record that does not decode is
//!   `Error::Decode`, and is left as it is.
//! - `delete` removes the session; deleting an absent one is not an error.
//!
//! tower-sessions saves whole records, the last writer wins, as with its own stores. For
//! read-modify-write updates that lose nothing under concurrency, use
//! `session_core::SessionManager::modify` instead.
//!
//! The store expires sessions itself, so `TowerStore` does not implement tower-sessions'
//! `ExpiredDeletion`: no deletion task is needed.
//!
//! # Ids
//!
//! tower's session [`Id`] is an `i128`, sent in the cookie as its 22-character URL-safe
//! base64 text (`Id`'s `Display`). The session id is that text, behind the store's prefix
//! ([`TowerStore::with_prefix`], empty by default): `tower:` + `AAECAwQFBgcICQoLDA0ODw`. The
//! text is always in [`SessionId`]'s alphabet, and the mapping is one-to-one
//! ([`TowerStore::session_id`] and [`TowerStore::tower_id`]). A prefix keeps tower's sessions
//! apart from others in the same store, and makes them easy to find in listings.
//!
//! # What is stored
//!
//! The record as a session state: a map of `id` (the tower id's text), `data` (the session's
//! values) and `expiry_date` (RFC 3339, UTC), encoded with the store's [`Codec`] like every
//! other session, so `sessionctl list`/`show`, the admin router and the dashboard see tower's
//! sessions as readable JSON. The listing summary shows `keys`, the number of values (never a
//! value).
//!
//! # Errors
//!
//! `session_core::Error::Corrupt` becomes `Error::Decode`; `Encode` and `TooLarge` (a record
//! over the codec's size limit) become `Error::Encode`; every other error (an unreachable
//! Redis, refused credentials, an unknown write outcome ...) becomes `Error::Backend`. The
//! text is the error's message and its sources, without credentials.
//!
//! [tower-sessions]: https://docs.rs/tower-sessions/0.15
//! [`Condition::IfAbsent`]: session_core::Condition::IfAbsent
//! [`Condition::Any`]: session_core::Condition::Any
//! [`Id`]: tower_sessions_core::session::Id
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod error;
mod id;
mod stored;

use std::sync::Arc;

use async_trait::async_trait;
use session_core::{Codec, Condition, SessionId, SessionStore, Ttl, Write, WriteOutcome};
use time::OffsetDateTime;
use tower_sessions_core::{
    session::{Id, Record},
    session_store::{self, Error},
};

pub use id::{InvalidPrefix, MAX_PREFIX_LEN, TOWER_ID_LEN};

use crate::{error::to_tower, id::IdMap};

/// How many ids `create` tries before it gives up: each collision draws a new random 128-bit
/// id, so a second collision in a row already means something else is wrong (a store that
/// refuses every create).
pub const MAX_CREATE_ATTEMPTS: usize = 8;

/// tower-sessions' `SessionStore` over one of ours: see the [crate documentation](crate).
///
/// Cheap to clone (the store is shared).
///
/// ```
/// use std::sync::Arc;
/// use session_memory::MemoryStore;
/// use session_tower::TowerStore;
///
/// let tower = TowerStore::new(Arc::new(MemoryStore::new())).with_prefix("tower:")?;
/// assert_eq!(tower.prefix(), "tower:");
/// # Ok::<(), session_tower::InvalidPrefix>(())
/// ```
#[derive(Debug, Clone)]
pub struct TowerStore {
    store: Arc<dyn SessionStore>,
    ids: IdMap,
    codec: Codec,
}

impl TowerStore {
    /// tower-sessions' store over `store`, with no id prefix and the default [`Codec`].
    pub fn new(store: Arc<dyn SessionStore>) -> Self {
        Self {
            store,
            ids: IdMap::default(),
            codec: Codec::default(),
        }
    }

    /// The store with every session id prefixed by `prefix`: at most [`MAX_PREFIX_LEN`]
    /// characters of `[A-Za-z0-9_.:@-]` (a tower id adds [`TOWER_ID_LEN`]).
    ///
    /// # Errors
    ///
    /// [`InvalidPrefix`] for a longer prefix or one with any other character.
    pub fn with_prefix(mut self, prefix: &str) -> Result<Self, InvalidPrefix> {
        self.ids = IdMap::with_prefix(prefix)?;
        Ok(self)
    }

    /// The store with this codec (size limit, compression), e.g. the one the service's
    /// `SessionManager`s use.
    #[must_use]
    pub fn with_codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    /// The id prefix (empty by default).
    pub fn prefix(&self) -> &str {
        self.ids.prefix()
    }

    /// The store the sessions are kept in.
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.store
    }

    /// The codec records are encoded with.
    pub fn codec(&self) -> &Codec {
        &self.codec
    }

    /// The session id tower's `id` is stored under: the prefix, then `id`'s text form.
    ///
    /// # Errors
    ///
    /// None in practice: the prefix was validated and the text is 22 characters of the
    /// URL-safe base64 alphabet. The `Result` is there because a [`SessionId`] is only ever
    /// made by validation.
    pub fn session_id(&self, id: &Id) -> Result<SessionId, session_core::InvalidId> {
        self.ids.session_id(id)
    }

    /// The tower id stored under `id`, if `id` is one of this store's: the prefix, then the
    /// canonical text of a tower id. The inverse of [`session_id`](Self::session_id).
    pub fn tower_id(&self, id: &SessionId) -> Option<Id> {
        self.ids.tower_id(id)
    }

    fn key(&self, id: &Id) -> Result<SessionId, Error> {
        self.session_id(id)
            .map_err(|e| Error::Backend(format!("tower-sessions id {id} has no session id: {e}")))
    }

    /// The write of `record` under `id` with `ttl` and `condition`.
    fn write_of(
        &self,
        id: &SessionId,
        record: &Record,
        ttl: Ttl,
        condition: Condition,
    ) -> Result<Write, Error> {
        let payload = stored::encode(&self.codec, id, record)?;
        Ok(Write::new(payload, condition)
            .with_summary(stored::summary(record))
            .with_ttl(ttl))
    }
}

#[async_trait]
impl session_store::SessionStore for TowerStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let Some(ttl) = stored::ttl_until(record.expiry_date, OffsetDateTime::now_utc()) else {
            // Expired already: nothing to store, so nothing can be overwritten either.
            return Ok(());
        };
        for _ in 0..MAX_CREATE_ATTEMPTS {
            let id = self.key(&record.id)?;
            let write = self.write_of(&id, record, ttl, Condition::IfAbsent)?;
            match self.store.write(&id, write).await.map_err(to_tower)? {
                WriteOutcome::Written { .. } => return Ok(()),
                // Taken: a new id, as tower-sessions' own stores do on a collision.
                WriteOutcome::Rejected { .. } => record.id = Id::default(),
            }
        }
        Err(Error::Backend(format!(
            "{} refused to create a session under {MAX_CREATE_ATTEMPTS} random ids in a row \
             (each one was taken)",
            self.store.backend()
        )))
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let id = self.key(&record.id)?;
        match stored::ttl_until(record.expiry_date, OffsetDateTime::now_utc()) {
            Some(ttl) => {
                let write = self.write_of(&id, record, ttl, Condition::Any)?;
                self.store.save(&id, write).await.map_err(to_tower)?;
            }
            None => {
                self.store.delete(&id).await.map_err(to_tower)?;
            }
        }
        Ok(())
    }

    async fn load(&self, session_id: &Id) -> session_store::Result<Option<Record>> {
        let id = self.key(session_id)?;
        let Some(found) = self.store.load(&id).await.map_err(to_tower)? else {
            return Ok(None);
        };
        let record = stored::decode(&self.codec, &id, session_id, &found.payload)?;
        // The store's TTL is rounded up and capped; tower's own date decides.
        Ok((record.expiry_date > OffsetDateTime::now_utc()).then_some(record))
    }

    async fn delete(&self, session_id: &Id) -> session_store::Result<()> {
        let id = self.key(session_id)?;
        self.store.delete(&id).await.map_err(to_tower)?;
        Ok(())
    }
}
