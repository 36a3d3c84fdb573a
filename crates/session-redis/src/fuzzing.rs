//! Entry points for the fuzz targets in `fuzz/` at the workspace root (feature `fuzzing`):
//! thin wrappers over the crate-private parsers of listing cursors and Redis replies. Not an
//! API: hidden from the docs, no stability promise, never enabled by a default build.

use redis::Value;
use session_core::{
    Cursor, Error, Record, Result, SessionId, SessionInfo, Summary, Timestamp, Ttl,
};

use crate::{cursor::ListPosition, layout};

/// A listing position as the Redis store's cursor parser reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListCursor {
    /// The SCAN cursor to continue from; `None` when SCAN has finished.
    pub scan: Option<u64>,
    /// Ids found by SCAN but not shown yet.
    pub pending: Vec<SessionId>,
}

impl ListCursor {
    /// Parses a cursor as `list_page` does.
    pub fn parse(cursor: &Cursor) -> Result<Self> {
        let ListPosition { scan, pending } = ListPosition::parse(cursor)?;
        Ok(Self { scan, pending })
    }

    /// The cursor text `list_page` hands out for this position; `None` when nothing is left.
    pub fn to_cursor(&self) -> Option<Cursor> {
        ListPosition {
            scan: self.scan,
            pending: self.pending.clone(),
        }
        .to_cursor()
    }
}

/// A record from the replies of a read, as `load` builds it: `GET key` (a string record) or
/// `HMGET key d m v c t` (a hash of the earlier layouts), and `PTTL key`.
pub fn record_from_replies(
    id: &SessionId,
    data: Value,
    pttl: Value,
    prefix: Option<&str>,
) -> Result<Option<Record>> {
    layout::record_from_replies(id, data, pttl, prefix)
}

/// A string record as a write stages it (header, meta, payload), so that targets can build
/// readable records and mutate them.
pub fn encode_record(
    tokens: &session_core::RecentTokens,
    version: u64,
    created_at: Timestamp,
    meta: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let staged = crate::record::Staged {
        header: crate::record::header(Some(tokens), version, created_at, meta.len()),
        meta,
        payload,
    };
    redis::ToRedisArgs::to_redis_args(&staged)
        .into_iter()
        .next()
        .unwrap_or_default()
}

/// What a listing shows for one key.
#[derive(Debug)]
pub enum Listed {
    /// A readable entry.
    Entry(SessionInfo),
    /// The key is gone, or another store's.
    Gone,
    /// The key exists but its listing data cannot be read.
    Corrupt(SessionInfo, Error),
    /// Look again, reading this many bytes (a hash, or a meta longer than the first look).
    Again(usize),
}

impl From<layout::Listed> for Listed {
    fn from(listed: layout::Listed) -> Self {
        match listed {
            layout::Listed::Entry(info) => Listed::Entry(info),
            layout::Listed::Gone => Listed::Gone,
            layout::Listed::Corrupt(info, e) => Listed::Corrupt(info, e),
            layout::Listed::Again(n) => Listed::Again(n),
        }
    }
}

/// A listing entry from a first look's replies (`PTTL key` and `GETRANGE key 0 1023`, or a
/// hash's `HMGET key m v c`), as `list_page` builds it.
pub fn info_from_replies(id: SessionId, pttl: Value, first: Value, prefix: &str) -> Listed {
    layout::info_from_replies(id, pttl, first, prefix).into()
}

/// A listing entry from a second look's replies (`PTTL key`, `GETRANGE key 0 n`, `HMGET key m
/// v c`).
pub fn info_after_second_look(
    id: SessionId,
    pttl: Value,
    getrange: Value,
    hmget: Value,
    prefix: &str,
) -> Listed {
    layout::info_after_second_look(id, pttl, getrange, hmget, prefix).into()
}

/// The `m` field a write stores, so that targets can build readable records.
pub fn encode_meta(
    updated_at: Timestamp,
    size: u64,
    summary: &Summary,
    ttl: Ttl,
    prefix: &str,
) -> Vec<u8> {
    layout::encode_meta(updated_at, size, summary, ttl, prefix)
}
