//! [`SessionStore`]: the one trait every backend implements, on encoded records.

use std::{fmt, time::Duration};

use async_trait::async_trait;
use bytes::Bytes;

use crate::{Cursor, Error, Page, Record, Result, SessionId, Summary, Timestamp, Ttl};

/// When a [`SessionStore::save`] may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// Always: create or overwrite (the seed's `SETEX`).
    Any,
    /// Only if no live session has this id: create.
    IfAbsent,
    /// Only if the session exists at exactly this version: a compare-and-set.
    IfVersion(u64),
    /// Only if the session exists at exactly this version *and* is the same incarnation
    /// ([`Meta::incarnation`](crate::Meta::incarnation)): a compare-and-set that also tells a
    /// session apart from a later one with the same id (deleted or expired, then created again
    /// and written up to the same version). This is what
    /// [`SessionManager`](crate::SessionManager) uses. A stored record without an incarnation
    /// (0, from an older layout) is compared by version only.
    IfUnchanged {
        /// The version read.
        version: u64,
        /// The incarnation read.
        incarnation: u64,
    },
}

impl Condition {
    /// The version the condition expects, if it expects one.
    pub fn expected_version(self) -> Option<u64> {
        match self {
            Self::IfVersion(version) | Self::IfUnchanged { version, .. } => Some(version),
            Self::Any | Self::IfAbsent => None,
        }
    }

    /// Whether a session currently at `current` (`(version, incarnation)`, `None`: absent)
    /// satisfies the condition. Stores that check conditions in process use this.
    pub fn allows(self, current: Option<(u64, u64)>) -> bool {
        match (self, current) {
            (Self::Any, _) | (Self::IfAbsent, None) => true,
            (Self::IfVersion(expected), Some((version, _))) => version == expected,
            (
                Self::IfUnchanged {
                    version,
                    incarnation,
                },
                Some((v, i)),
            ) => v == version && (i == 0 || i == incarnation),
            (Self::IfAbsent, Some(_))
            | (Self::IfVersion(_), None)
            | (Self::IfUnchanged { .. }, None) => false,
        }
    }
}

/// What a [`SessionStore::write`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOutcome {
    /// The condition held and the session was written.
    Written {
        /// The new version.
        version: u64,
        /// When the session was created (kept from before for a rewrite).
        created_at: Timestamp,
        /// Its incarnation (drawn on create, kept by rewrites).
        incarnation: u64,
    },
    /// The condition failed and nothing was written. `current` is the session as it is now
    /// (`None`: absent), read in the same atomic step, so a compare-and-set loop can go on
    /// without another read.
    Rejected {
        /// The current record, if any.
        current: Option<Record>,
    },
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

    /// Writes a session if `write.condition` holds, resetting its TTL; otherwise writes nothing
    /// and returns the current record. One atomic step: in Redis, one round trip.
    /// `created_at` is kept across writes; `updated_at` is set to now.
    async fn write(&self, id: &SessionId, write: Write) -> Result<WriteOutcome>;

    /// [`write`](Self::write) for callers that treat a failed condition as an error: returns
    /// the new version, or [`Error::Conflict`] (and writes nothing).
    async fn save(&self, id: &SessionId, write: Write) -> Result<u64> {
        let expected = write.condition.expected_version();
        match self.write(id, write).await? {
            WriteOutcome::Written { version, .. } => Ok(version),
            WriteOutcome::Rejected { current } => Err(Error::Conflict {
                id: id.clone(),
                expected,
                actual: current.map(|r| r.version),
            }),
        }
    }

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
