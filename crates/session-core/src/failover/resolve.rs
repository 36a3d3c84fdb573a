//! What a write-back does when another instance changed a session while this one served it
//! from memory: [`ConflictResolver`], its default [`LatestWins`], and [`Resolution`].

use std::fmt;

use bytes::Bytes;

use crate::{Record, SessionId, Summary, Timestamp};

/// A session changed on both sides of an outage: by this instance in memory, and by another
/// instance in the primary.
#[derive(Debug)]
#[non_exhaustive]
pub struct WriteBackConflict<'a> {
    /// The session.
    pub id: &'a SessionId,
    /// This instance's version, written in memory during the outage (`None`: it deleted the
    /// session).
    pub ours: Option<&'a Record>,
    /// When this instance last changed it (its `updated_at`, or the time of the delete).
    pub ours_at: Timestamp,
    /// The version the primary holds now.
    pub theirs: &'a Record,
}

/// What to do with a [`WriteBackConflict`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Resolution {
    /// Write this instance's version over theirs (or, for a delete, delete theirs).
    KeepOurs,
    /// Keep the primary's version; this instance's change is dropped (and logged).
    KeepTheirs,
    /// Write this merged payload (a [`Codec`](crate::Codec) envelope) over theirs.
    Merged {
        /// The encoded merged state.
        payload: Bytes,
        /// What listings show for it.
        summary: Summary,
    },
}

/// Decides a [`WriteBackConflict`]. Runs inside the write-back, synchronously: keep it quick
/// and free of I/O. A service that can merge its state type decodes both payloads with its
/// [`Codec`](crate::Codec), merges, and returns [`Resolution::Merged`].
///
/// Any `Fn(&WriteBackConflict<'_>) -> Resolution` is a resolver.
pub trait ConflictResolver: Send + Sync + 'static {
    /// The resolution of `conflict`.
    fn resolve(&self, conflict: &WriteBackConflict<'_>) -> Resolution;
}

impl<F> ConflictResolver for F
where
    F: Fn(&WriteBackConflict<'_>) -> Resolution + Send + Sync + 'static,
{
    fn resolve(&self, conflict: &WriteBackConflict<'_>) -> Resolution {
        self(conflict)
    }
}

/// The default rule: the later change wins: this instance's if its `updated_at` (or the time
/// of its delete) is later than the primary's `updated_at`, else theirs. A tie keeps theirs
/// (the primary's version was acknowledged to a client that may have been told so first).
/// Clocks of different hosts drift: the rule is only as good as their synchronisation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatestWins;

impl ConflictResolver for LatestWins {
    fn resolve(&self, conflict: &WriteBackConflict<'_>) -> Resolution {
        if conflict.ours_at > conflict.theirs.meta.updated_at {
            Resolution::KeepOurs
        } else {
            Resolution::KeepTheirs
        }
    }
}

pub(crate) struct Resolver(pub(crate) Box<dyn ConflictResolver>);

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConflictResolver")
    }
}

impl Resolution {
    /// The resolution's name in logs and metric labels.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::KeepOurs => "kept_ours",
            Self::KeepTheirs => "kept_theirs",
            Self::Merged { .. } => "merged",
        }
    }
}
