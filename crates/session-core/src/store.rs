//! [`SessionStore`]: the one trait every backend implements, on encoded records.

use std::{fmt, time::Duration};

use async_trait::async_trait;
use bytes::Bytes;

use crate::{
    Cursor, Error, Page, RecentTokens, Record, Result, SessionId, Summary, Timestamp, Ttl,
    WriteToken,
};

/// When a [`SessionStore::write`] may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Condition {
    /// Always: create or overwrite (the seed's `SETEX`).
    Any,
    /// Only if no live session has this id: create.
    IfAbsent,
    /// Only if the session exists at exactly this version: a compare-and-set on the counter.
    /// Two different contents can carry the same version after a server lost writes; prefer
    /// [`IfUnchanged`](Self::IfUnchanged).
    IfVersion(u64),
    /// Only if the session still holds exactly the content the basis was read from: its
    /// current write token is the basis' token ([`Record::basis`]). This is what
    /// [`SessionManager`](crate::SessionManager) uses: a copy is a valid basis for the content
    /// it saw and nothing else, so neither a session deleted and created again, nor a rollback
    /// of the server to an older state followed by another writer's write, can be overwritten
    /// from it. A basis without a token (a record from an older layout) compares the version
    /// and requires the stored record to have no token either.
    IfUnchanged(Basis),
}

impl Condition {
    /// The version the condition expects, if it expects one.
    pub fn expected_version(self) -> Option<u64> {
        match self {
            Self::IfVersion(version) => Some(version),
            Self::IfUnchanged(basis) => Some(basis.version()),
            Self::Any | Self::IfAbsent => None,
        }
    }

    /// Whether a session currently at `current` (`(version, current token)`, `None`: absent)
    /// satisfies the condition. Stores that check conditions in process use this.
    pub fn allows(self, current: Option<(u64, Option<WriteToken>)>) -> bool {
        match (self, current) {
            (Self::Any, _) | (Self::IfAbsent, None) => true,
            (Self::IfVersion(expected), Some((version, _))) => version == expected,
            (Self::IfUnchanged(basis), Some((version, token))) => match basis.token() {
                Some(expected) => token == Some(expected),
                None => token.is_none() && version == basis.version(),
            },
            (Self::IfAbsent, Some(_))
            | (Self::IfVersion(_), None)
            | (Self::IfUnchanged(_), None) => false,
        }
    }
}

/// What a write built on a record knows about it: its version, creation time and write
/// tokens. Only a [`Record`] makes one ([`Record::basis`]), so that a basis always describes
/// content that was really stored.
///
/// When the token matches, the basis *is* the stored state, so a store may compute the new
/// record from it (version + 1, the same `created_at`, the tokens with the new one in front)
/// without reading anything: that is how the Redis store keeps the payload out of Lua.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Basis {
    version: u64,
    created_at: Timestamp,
    tokens: RecentTokens,
}

impl Basis {
    pub(crate) fn new(version: u64, created_at: Timestamp, tokens: RecentTokens) -> Self {
        Self {
            version,
            created_at,
            tokens,
        }
    }

    /// The version read.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// When the session read was created.
    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }

    /// The token of the content read (`None`: a record without tokens).
    pub fn token(&self) -> Option<WriteToken> {
        self.tokens.current()
    }

    /// The tokens of the record read, newest first.
    pub fn tokens(&self) -> RecentTokens {
        self.tokens
    }
}

/// What a [`SessionStore::write`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOutcome {
    /// The condition held and the session was written.
    #[non_exhaustive]
    Written {
        /// The new version.
        version: u64,
        /// When the session was created (kept from before for a rewrite).
        created_at: Timestamp,
        /// The record's write tokens now, newest first: the write's own token, then those of
        /// the writes before it.
        tokens: RecentTokens,
    },
    /// The condition failed and nothing was written. `current` is the session as it is now
    /// (`None`: absent), read in the same atomic step, so a compare-and-set loop can go on
    /// without another read.
    #[non_exhaustive]
    Rejected {
        /// The current record, if any.
        current: Option<Record>,
    },
}

impl WriteOutcome {
    /// [`WriteOutcome::Written`].
    pub fn written(version: u64, created_at: Timestamp, tokens: RecentTokens) -> Self {
        Self::Written {
            version,
            created_at,
            tokens,
        }
    }

    /// [`WriteOutcome::Rejected`].
    pub fn rejected(current: Option<Record>) -> Self {
        Self::Rejected { current }
    }
}

/// One write, as a store receives it. Built with [`Write::new`] and the `with_*` setters; new
/// fields may be added.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Write {
    /// The encoded state.
    pub payload: Bytes,
    /// What listings show for it.
    pub summary: Summary,
    /// When the write may happen.
    pub condition: Condition,
    /// The TTL the session gets (every write resets it).
    pub ttl: Ttl,
    /// The write's identity, stored with the record. A store may replace it with a fresh one
    /// when it sends the write again after a lost reply; [`WriteOutcome::Written`] tells the
    /// token that was stored.
    pub token: WriteToken,
}

impl Write {
    /// A write of `payload` under `condition`, with an empty summary, the default TTL and a
    /// fresh random token.
    pub fn new(payload: Bytes, condition: Condition) -> Self {
        Self {
            payload,
            summary: Summary::new(),
            condition,
            ttl: Ttl::DEFAULT,
            token: WriteToken::random(),
        }
    }

    /// The write with this summary.
    #[must_use]
    pub fn with_summary(mut self, summary: Summary) -> Self {
        self.summary = summary;
        self
    }

    /// The write with this TTL.
    #[must_use]
    pub fn with_ttl(mut self, ttl: Ttl) -> Self {
        self.ttl = ttl;
        self
    }

    /// The write with this token (tests and tools; writes normally draw a fresh one).
    #[must_use]
    pub fn with_token(mut self, token: WriteToken) -> Self {
        self.token = token;
        self
    }
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
/// - `version` is 1 on create and grows by one on every write;
/// - every write stores its fresh token in front of the record's recent tokens, and
///   [`Condition::IfUnchanged`] compares tokens, so a write built on content the server has
///   since lost or replaced is refused;
/// - a write's outcome is known: written, refused, or [`Error::OutcomeUnknown`] only when the
///   server cannot be asked in time;
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
    /// `created_at` is kept across writes; `updated_at` is set to now; the record keeps the
    /// write's token in front of its [`RecentTokens`].
    ///
    /// The outcome is never guessed: a store that loses the reply finds out whether the write
    /// landed before it answers, and returns [`Error::OutcomeUnknown`] only when it cannot.
    async fn write(&self, id: &SessionId, write: Write) -> Result<WriteOutcome>;

    /// [`write`](Self::write) for callers that treat a failed condition as an error: returns
    /// the new version, or [`Error::Conflict`] (and writes nothing).
    async fn save(&self, id: &SessionId, write: Write) -> Result<u64> {
        let expected = write.condition.expected_version();
        match self.write(id, write).await? {
            WriteOutcome::Written { version, .. } => Ok(version),
            WriteOutcome::Rejected { current, .. } => Err(Error::Conflict {
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
