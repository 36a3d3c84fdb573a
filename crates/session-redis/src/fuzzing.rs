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

/// A record from the replies of `HMGET key d m v c t` and `PTTL key`, as `load` builds it.
pub fn record_from_replies(
    id: &SessionId,
    hmget: Value,
    pttl: Value,
    prefix: Option<&str>,
) -> Result<Option<Record>> {
    layout::record_from_replies(id, hmget, pttl, prefix)
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
}

/// A listing entry from the replies of `HMGET key m v c` and `PTTL key`, as `list_page`
/// builds it.
pub fn info_from_replies(id: SessionId, hmget: Value, pttl: Value, prefix: &str) -> Listed {
    match layout::info_from_replies(id, hmget, pttl, prefix) {
        layout::Listed::Entry(info) => Listed::Entry(info),
        layout::Listed::Gone => Listed::Gone,
        layout::Listed::Corrupt(info, e) => Listed::Corrupt(info, e),
    }
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
