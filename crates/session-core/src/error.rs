//! The one error type of the library: callers can tell "not there" from "store down" from
//! "bad data" by matching on [`Error`].

use crate::{InvalidId, SessionId};

/// A boxed error from a backend driver, kept as the `source` of [`Error::Backend`] and friends.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong with a session operation.
///
/// No variant's `Display` or `Debug` ever contains a credential: backends redact URLs before
/// they build an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The session id is malformed; nothing was read or written.
    #[error(transparent)]
    InvalidId(#[from] InvalidId),

    /// The session does not exist (or has expired).
    #[error("session {id} not found (it may have expired)")]
    NotFound {
        /// The session asked for.
        id: SessionId,
    },

    /// A conditional write lost: somebody else wrote (or created, or deleted) the session since
    /// it was read. Nothing was written.
    #[error("session {id} was changed concurrently (the write expected {})",
        describe_version(*.expected))]
    Conflict {
        /// The session written.
        id: SessionId,
        /// The version the write expected (`None`: expected no session).
        expected: Option<u64>,
        /// The version found, when the backend reports it (`None`: no session, or unknown).
        actual: Option<u64>,
    },

    /// The stored bytes of a session cannot be decoded. The record is left as it is.
    #[error("session {id} is corrupt: {reason}")]
    Corrupt {
        /// The session read.
        id: SessionId,
        /// What is wrong with it.
        reason: String,
    },

    /// The state could not be serialized (its `Serialize` impl failed). Nothing was written.
    #[error("session {id} could not be encoded: {reason}")]
    Encode {
        /// The session written.
        id: SessionId,
        /// What the serializer said.
        reason: String,
    },

    /// An encoded session is larger than the configured limit. Nothing was written.
    #[error("session {id} is {} bytes, over the limit of {limit} bytes",
        describe_size(*.size, *.limit))]
    TooLarge {
        /// The session.
        id: SessionId,
        /// Its encoded size. The codec stops encoding a state once it has counted twice the
        /// limit (at least 64 KiB past it): from there on, at least this size.
        size: usize,
        /// The configured maximum.
        limit: usize,
    },

    /// A listing cursor was not produced by this store (or was altered).
    #[error("invalid listing cursor {cursor}: {reason}")]
    InvalidCursor {
        /// The cursor, quoted and shortened.
        cursor: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The backend could not be reached or did not answer in time. Retrying later may work.
    #[error("{backend} is unavailable: {reason}")]
    Unavailable {
        /// The backend's name (`redis`, `memory` ...).
        backend: &'static str,
        /// What happened, without credentials.
        reason: String,
        /// The driver's error.
        #[source]
        source: Option<BoxError>,
    },

    /// A write was sent but its reply was lost, and the backend could not be asked in time
    /// whether it was applied: the session may hold the new state or the old one.
    ///
    /// Unlike [`Unavailable`](Self::Unavailable), this is **not** safe to retry blindly: a
    /// retry may apply the change twice. Read the session first, or retry with an idempotency
    /// key stored in the state. The library returns it only after it tried, on a new
    /// connection, to read the record's recent write tokens and failed; a lost reply the
    /// backend can still answer for becomes success or a known refusal instead.
    #[error("the outcome of writing session {id} is unknown: {reason}")]
    OutcomeUnknown {
        /// The session written.
        id: SessionId,
        /// The backend's name.
        backend: &'static str,
        /// What happened, without credentials.
        reason: String,
    },

    /// The backend refused the credentials (wrong password, unknown ACL user, missing rights).
    #[error("{backend} refused the credentials: {reason}")]
    Auth {
        /// The backend's name.
        backend: &'static str,
        /// What the server said, without credentials.
        reason: String,
    },

    /// The backend is out of memory and refuses writes (Redis: `OOM command not allowed when
    /// used memory > 'maxmemory'`). Nothing was written. Not an outage: the server answers,
    /// and a fallback would only hide that it needs more `maxmemory` or an eviction policy
    /// that may evict sessions (`allkeys-lru`, `volatile-lru` ...).
    #[error("{backend} is out of memory: {reason}")]
    OutOfMemory {
        /// The backend's name.
        backend: &'static str,
        /// What the server said, without credentials.
        reason: String,
    },

    /// Any other backend failure.
    #[error("{backend} error: {reason}")]
    Backend {
        /// The backend's name.
        backend: &'static str,
        /// What happened, without credentials.
        reason: String,
        /// The driver's error.
        #[source]
        source: Option<BoxError>,
    },

    /// Invalid configuration: the key, the value (secrets masked) and what was expected.
    #[error("invalid configuration {key} = {value}: expected {expected}")]
    Config {
        /// The setting, as the user spells it (`SESSION_TTL`, `redis.port` ...).
        key: String,
        /// The value given, with secrets masked.
        value: String,
        /// What would have been accepted.
        expected: String,
    },
}

/// `size`, or `at least size` when it is where the codec stops counting.
fn describe_size(size: usize, limit: usize) -> String {
    if size >= crate::codec::counting_cap(limit) {
        format!("at least {size}")
    } else {
        size.to_string()
    }
}

fn describe_version(v: Option<u64>) -> String {
    match v {
        Some(v) => format!("version {v}"),
        None => "no session".to_owned(),
    }
}

impl Error {
    /// A short stable name for the variant, for metrics labels and JSON error bodies.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidId(_) => "invalid_id",
            Self::NotFound { .. } => "not_found",
            Self::Conflict { .. } => "conflict",
            Self::Corrupt { .. } => "corrupt",
            Self::Encode { .. } => "encode",
            Self::TooLarge { .. } => "too_large",
            Self::InvalidCursor { .. } => "invalid_cursor",
            Self::Unavailable { .. } => "unavailable",
            Self::OutcomeUnknown { .. } => "outcome_unknown",
            Self::Auth { .. } => "auth",
            Self::OutOfMemory { .. } => "out_of_memory",
            Self::Backend { .. } => "backend",
            Self::Config { .. } => "config",
        }
    }

    /// Whether the failure is the backend's (down, timed out, refused), as opposed to the
    /// caller's input or the stored data.
    pub fn is_backend_failure(&self) -> bool {
        matches!(
            self,
            Self::Unavailable { .. }
                | Self::OutcomeUnknown { .. }
                | Self::Auth { .. }
                | Self::OutOfMemory { .. }
                | Self::Backend { .. }
        )
    }

    /// Whether the failure means the backend could not be reached or did not answer in time
    /// ([`Unavailable`](Self::Unavailable), [`OutcomeUnknown`](Self::OutcomeUnknown)): what a
    /// run-time fallback switches on. Refusals that a healthy server gives (a conflict,
    /// refused credentials, out of memory, corrupt data) are not outages.
    pub fn is_outage(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::OutcomeUnknown { .. })
    }

    /// Builds [`Error::Unavailable`] from a driver error.
    pub fn unavailable(
        backend: &'static str,
        reason: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        Self::Unavailable {
            backend,
            reason: reason.into(),
            source: Some(source.into()),
        }
    }

    /// Whether retrying the failed operation as it was is safe: the backend failed and
    /// nothing was applied ([`Unavailable`](Self::Unavailable)). `false` for
    /// [`OutcomeUnknown`](Self::OutcomeUnknown), whose write may have been applied.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    /// Builds [`Error::Backend`] from a driver error.
    pub fn backend(
        backend: &'static str,
        reason: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        Self::Backend {
            backend,
            reason: reason.into(),
            source: Some(source.into()),
        }
    }

    /// Builds [`Error::Corrupt`].
    pub fn corrupt(id: &SessionId, reason: impl Into<String>) -> Self {
        Self::Corrupt {
            id: id.clone(),
            reason: reason.into(),
        }
    }

    /// Builds [`Error::InvalidCursor`], quoting the cursor safely.
    pub fn invalid_cursor(cursor: &str, reason: impl Into<String>) -> Self {
        Self::InvalidCursor {
            cursor: crate::id::quote_for_humans(cursor, 64),
            reason: reason.into(),
        }
    }

    /// Builds [`Error::Config`].
    pub fn config(
        key: impl Into<String>,
        value: impl Into<String>,
        expected: impl Into<String>,
    ) -> Self {
        Self::Config {
            key: key.into(),
            value: value.into(),
            expected: expected.into(),
        }
    }
}
