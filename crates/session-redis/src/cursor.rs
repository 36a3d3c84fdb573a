//! The listing cursor: where `SCAN` stands, plus the ids one `SCAN` batch returned that did not
//! fit in the page.
//!
//! Text form: `r1:<scan cursor>:<id>,<id>,...` (the id list may be empty). Every character is
//! URL-safe in a query string: digits, `[A-Za-z0-9_.:@-]` from the ids, `,` between them. A
//! SCAN cursor of `0` in a cursor means "SCAN has finished; only the carried ids remain" (the
//! very first page has no cursor at all).

use session_core::{Cursor, Error, Result, SessionId};

const VERSION_TAG: &str = "r1:";

/// A parsed listing position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListPosition {
    /// The SCAN cursor to continue from; `None` when SCAN has finished.
    pub(crate) scan: Option<u64>,
    /// Ids found by SCAN but not yet shown.
    pub(crate) pending: Vec<SessionId>,
}

impl ListPosition {
    /// The start of a listing.
    pub(crate) fn start() -> Self {
        Self {
            scan: Some(0),
            pending: Vec::new(),
        }
    }

    /// Whether nothing is left to list.
    pub(crate) fn is_done(&self) -> bool {
        self.scan.is_none() && self.pending.is_empty()
    }

    /// Parses a cursor this store produced.
    pub(crate) fn parse(cursor: &Cursor) -> Result<Self> {
        let text = cursor.as_str();
        let invalid = |reason: &str| Error::invalid_cursor(text, reason);
        let rest = text
            .strip_prefix(VERSION_TAG)
            .ok_or_else(|| invalid("not a cursor of the Redis store (expected r1:...)"))?;
        let (scan, ids) = rest
            .split_once(':')
            .ok_or_else(|| invalid("missing the SCAN position"))?;
        if scan.is_empty() || !scan.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("the SCAN position is not a number"));
        }
        let scan: u64 = scan
            .parse()
            .map_err(|_| invalid("the SCAN position is out of range"))?;
        let pending = if ids.is_empty() {
            Vec::new()
        } else {
            ids.split(',')
                .map(SessionId::new)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| invalid("it carries an invalid session id"))?
        };
        Ok(Self {
            scan: (scan != 0).then_some(scan),
            pending,
        })
    }

    /// The cursor text for this position; `None` when the listing is complete.
    pub(crate) fn to_cursor(&self) -> Option<Cursor> {
        if self.is_done() {
            return None;
        }
        let mut text = format!("{VERSION_TAG}{}:", self.scan.unwrap_or(0));
        for (n, id) in self.pending.iter().enumerate() {
            if n > 0 {
                text.push(',');
            }
            text.push_str(id.as_str());
        }
        Some(Cursor::from(text))
    }
}

const CLUSTER_TAG: &str = "k1:";

/// Where a listing of a cluster stands: the topology it walks (a fingerprint of which node
/// serves which slots), the primary it is on (named by the lowest slot it serves, which a
/// failover keeps), where `SCAN` stands there, and the ids found but not shown yet.
///
/// Text form: `k1:<fingerprint, 16 hex>:<slot>:<scan cursor>:<id>,<id>,...`; a slot of
/// `16384` means every primary is done (only the carried ids remain).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
pub(crate) struct ClusterPosition {
    pub(crate) fingerprint: u64,
    /// The lowest slot of the primary being scanned; [`ClusterPosition::DONE`] when all are.
    pub(crate) slot: u16,
    pub(crate) scan: u64,
    pub(crate) pending: Vec<SessionId>,
}

#[cfg_attr(not(feature = "cluster"), allow(dead_code))]
impl ClusterPosition {
    /// The slot value that says every primary has been scanned.
    pub(crate) const DONE: u16 = 16384;

    /// The start of a walk of the topology with `fingerprint`, at the primary whose lowest
    /// slot is `slot`.
    pub(crate) fn start(fingerprint: u64, slot: u16) -> Self {
        Self {
            fingerprint,
            slot,
            scan: 0,
            pending: Vec::new(),
        }
    }

    /// Whether nothing is left.
    pub(crate) fn is_done(&self) -> bool {
        self.slot == Self::DONE && self.pending.is_empty()
    }

    /// Parses a cursor a cluster store produced.
    pub(crate) fn parse(cursor: &Cursor) -> Result<Self> {
        let text = cursor.as_str();
        let invalid = |reason: &str| Error::invalid_cursor(text, reason);
        let rest = text
            .strip_prefix(CLUSTER_TAG)
            .ok_or_else(|| invalid("not a cursor of the Redis cluster store (expected k1:...)"))?;
        let mut parts = rest.splitn(4, ':');
        let (Some(fp), Some(slot), Some(scan), Some(ids)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid("expected k1:<topology>:<slot>:<scan>:<ids>"));
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if fp.len() != 16 || !fp.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid("the topology is not 16 hex digits"));
        }
        let fingerprint =
            u64::from_str_radix(fp, 16).map_err(|_| invalid("the topology is not a number"))?;
        if !digits(slot) || !digits(scan) {
            return Err(invalid("the slot or the SCAN position is not a number"));
        }
        let slot: u16 = slot
            .parse()
            .ok()
            .filter(|s| *s <= Self::DONE)
            .ok_or_else(|| invalid("the slot is out of range"))?;
        let scan: u64 = scan
            .parse()
            .map_err(|_| invalid("the SCAN position is out of range"))?;
        let pending = if ids.is_empty() {
            Vec::new()
        } else {
            ids.split(',')
                .map(SessionId::new)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| invalid("it carries an invalid session id"))?
        };
        Ok(Self {
            fingerprint,
            slot,
            scan,
            pending,
        })
    }

    /// The cursor text; `None` when the listing is complete.
    pub(crate) fn to_cursor(&self) -> Option<Cursor> {
        if self.is_done() {
            return None;
        }
        let mut text = format!(
            "{CLUSTER_TAG}{:016x}:{}:{}:",
            self.fingerprint, self.slot, self.scan
        );
        for (n, id) in self.pending.iter().enumerate() {
            if n > 0 {
                text.push(',');
            }
            text.push_str(id.as_str());
        }
        Some(Cursor::from(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_positions_round_trip_and_foreign_ones_are_refused() {
        for pos in [
            ClusterPosition::start(0xdead_beef, 0),
            ClusterPosition {
                fingerprint: u64::MAX,
                slot: 5461,
                scan: 77,
                pending: ids(&["a", "b:c"]),
            },
            ClusterPosition {
                fingerprint: 1,
                slot: ClusterPosition::DONE,
                scan: 0,
                pending: ids(&["last"]),
            },
        ] {
            let cursor = pos.to_cursor().unwrap();
            assert_eq!(ClusterPosition::parse(&cursor).unwrap(), pos);
        }
        assert_eq!(
            ClusterPosition::start(1, ClusterPosition::DONE).to_cursor(),
            None
        );
        for bad in [
            "k1:",
            "k1:00000000000000zz:0:0:",
            "k1:0000000000000001:16385:0:",
            "k1:0000000000000001:0:x:",
            "k1:0000000000000001:0:0:a b",
            "k1:01:0:0:",
            "r1:5:",
        ] {
            assert!(
                ClusterPosition::parse(&Cursor::from(bad)).is_err(),
                "{bad:?} accepted"
            );
        }
    }

    fn ids(list: &[&str]) -> Vec<SessionId> {
        list.iter().map(|s| SessionId::new(s).unwrap()).collect()
    }

    #[test]
    fn positions_round_trip() {
        for pos in [
            ListPosition {
                scan: Some(1234),
                pending: vec![],
            },
            ListPosition {
                scan: Some(u64::MAX),
                pending: ids(&["a", "user:1@x.y-z_", "::"]),
            },
            ListPosition {
                scan: None,
                pending: ids(&["last"]),
            },
        ] {
            let cursor = pos.to_cursor().unwrap();
            assert!(
                cursor
                    .as_str()
                    .bytes()
                    .all(|b| session_core::is_id_byte(b) || b == b','),
                "{cursor}"
            );
            assert_eq!(ListPosition::parse(&cursor).unwrap(), pos);
        }
        assert_eq!(
            ListPosition {
                scan: None,
                pending: vec![]
            }
            .to_cursor(),
            None
        );
    }

    #[test]
    fn foreign_cursors_are_invalid() {
        for bad in [
            "",
            "not a cursor!",
            "%%%%",
            "\u{0}\u{1b}[2J",
            "r1:",
            "r1:12",
            "r1:x:",
            "r1:-1:",
            "r1:99999999999999999999999:",
            "r1:5:a,,b",
            "r1:5:a b",
            "r2:5:",
        ] {
            assert!(
                matches!(
                    ListPosition::parse(&Cursor::from(bad)),
                    Err(Error::InvalidCursor { .. })
                ),
                "{bad:?} accepted"
            );
        }
    }
}
