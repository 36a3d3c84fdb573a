//! [`SessionStore`]: the one trait every backend implements, on encoded records.

use std::{fmt, time::Duration};

use async_trait::async_trait;
use bytes::Bytes;

use crate::{Cursor, Page, Record, Result, SessionId, Summary, Ttl};

/// When a [`SessionStore::save`] may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// Always: create or overwrite (the seed's `SETEX`).
    Any,
    /// Only if no live session has this id: create.
    IfAbsent,
    /// Only if the session exists at exactly this version: a compare-and-set.
    IfVersion(u64),
}

/// One write, as a store receives it.
#[derive(Debug, Clone)]
pub struct Write {
    /// The encoded state.
    pub payload: Bytes,
    /// What listings show for it.
    pub summary: Summary,
    /// When the write may happen.
    pub condition: Condition,
    /// The TTL the session gets (every write resets it).
    pub ttl: Ttl,
}

/// A backend's answer to a health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// The backend's name.
    pub backend: &'static str,
    /// How long the check took.
    pub latency: Duration,
}

/// Storage of encoded sessions: the contract every backend keeps.
///
/// Object safe: services hold an `Arc<dyn SessionStore>`. Operations work on [`Record`]s, never
/// on the state type; [`SessionManager`](crate::SessionManager) adds the types on top.
///
/// The promises, proved for every store by the conformance suite
/// (`session_core::testing`, feature `testing`):
/// - a save is atomic: a reader sees the old record or the new one, never a mix;
/// - `version` is 1 on create and grows by one on every write; conditional saves compare it;
/// - a write resets the TTL; an expired session is never returned by any operation;
/// - a listing started with `None` and followed through `next` shows every session that lives
///   throughout it at least once, and never more than `limit` per page.
#[async_trait]
pub trait SessionStore: Send + Sync + fmt::Debug + 'static {
    /// The backend's short name (`memory`, `redis` ...), for logs, metrics and health.
    fn backend(&self) -> &'static str;

    /// Reads a session: payload, meta, version and remaining TTL. `None` when absent or expired.
    async fn load(&self, id: &SessionId) -> Result<Option<Record>>;

    /// Writes a session if `write.condition` holds, resetting its TTL, and returns the new
    /// version. A failed condition gives [`Error::Conflict`](crate::Error::Conflict) and
    /// writes nothing. `created_at` is kept across writes; `updated_at` is set to now.
    async fn save(&self, id: &SessionId, write: Write) -> Result<u64>;

    /// Removes a session. `true` if it existed.
    async fn delete(&self, id: &SessionId) -> Result<bool>;

    /// Resets a session's TTL without writing it. `true` if it existed.
    async fn touch(&self, id: &SessionId, ttl: Ttl) -> Result<bool>;

    /// Whether a live session has this id.
    async fn exists(&self, id: &SessionId) -> Result<bool> {
        Ok(self.load(id).await?.is_some())
    }

    /// One page of at most `limit` sessions (`limit` 0 is taken as 1), starting at `cursor`
    /// (`None`: the beginning). A page may hold fewer than `limit` sessions while more follow;
    /// the listing is complete when `next` is `None`.
    async fn list_page(&self, cursor: Option<&Cursor>, limit: usize) -> Result<Page>;

    /// How many live sessions the store holds.
    async fn count(&self) -> Result<u64>;

    /// Checks that the backend answers.
    async fn ping(&self) -> Result<()>;

    /// Pings and reports how long it took.
    async fn health(&self) -> Result<Health> {
        let start = std::time::Instant::now();
        self.ping().await?;
        Ok(Health {
            backend: self.backend(),
            latency: start.elapsed(),
        })
    }
}
