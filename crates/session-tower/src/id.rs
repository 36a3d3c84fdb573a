//! tower-sessions' [`Id`] as a [`SessionId`], and back.
//!
//! A tower id is an `i128`; its text form (what the cookie carries, `Id`'s `Display`) is the
//! 16 little-endian bytes in URL-safe base64 without padding: always [`TOWER_ID_LEN`]
//! characters of `[A-Za-z0-9_-]`, all inside [`SessionId`]'s alphabet. The session id is that
//! text behind an optional prefix (`tower:` + `AAECAwQFBgcICQoLDA0ODw`). The mapping is
//! one-to-one: base64 without padding has exactly one text for 16 bytes, and
//! [`TowerStore::tower_id`](crate::TowerStore::tower_id) checks that the text is that one.

use std::{fmt, sync::Arc};

use session_core::{InvalidId, MAX_ID_LEN, SessionId, is_id_byte, quote_for_humans};
use tower_sessions_core::session::Id;

/// Characters of a tower-sessions id's text form (16 bytes in unpadded base64).
pub const TOWER_ID_LEN: usize = 22;

/// The longest id prefix: a prefixed id must still fit in [`MAX_ID_LEN`].
pub const MAX_PREFIX_LEN: usize = MAX_ID_LEN - TOWER_ID_LEN;

/// An id prefix that cannot be used: longer than [`MAX_PREFIX_LEN`] bytes, or with a character
/// outside `[A-Za-z0-9_.:@-]` ([`SessionId`]'s alphabet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidPrefix {
    quoted: String,
    len: usize,
}

impl fmt::Display for InvalidPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid session id prefix {} ({} bytes): expected at most {MAX_PREFIX_LEN} \
             characters of A-Z a-z 0-9 _ . : @ - (a tower-sessions id adds {TOWER_ID_LEN})",
            self.quoted, self.len
        )
    }
}

impl std::error::Error for InvalidPrefix {}

/// The prefix every id of one [`TowerStore`](crate::TowerStore) carries, validated.
#[derive(Debug, Clone, Default)]
pub(crate) struct IdMap {
    prefix: Arc<str>,
}

impl IdMap {
    pub(crate) fn with_prefix(prefix: &str) -> Result<Self, InvalidPrefix> {
        if prefix.len() > MAX_PREFIX_LEN || !prefix.bytes().all(is_id_byte) {
            return Err(InvalidPrefix {
                quoted: quote_for_humans(prefix, 64),
                len: prefix.len(),
            });
        }
        Ok(Self {
            prefix: Arc::from(prefix),
        })
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The session id of `id`. Never fails for a validated prefix: the id's text is 22
    /// characters of the base64url alphabet.
    pub(crate) fn session_id(&self, id: &Id) -> Result<SessionId, InvalidId> {
        SessionId::new(format!("{}{id}", self.prefix))
    }

    /// The tower id `id` names, if it is one of this map's.
    pub(crate) fn tower_id(&self, id: &SessionId) -> Option<Id> {
        let text = id.as_str().strip_prefix(&*self.prefix)?;
        if text.len() != TOWER_ID_LEN {
            return None;
        }
        let parsed: Id = text.parse().ok()?;
        // Only the canonical text: every id has exactly one, so the map stays one-to-one.
        (parsed.to_string() == text).then_some(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_id_maps_to_a_valid_session_id_and_back() {
        let ids = [Id(0), Id(1), Id(-1), Id(i128::MIN), Id(i128::MAX)]
            .into_iter()
            .chain((0..1000).map(|_| Id::default()));
        for prefix in ["", "tower:", &"p".repeat(MAX_PREFIX_LEN)] {
            let map = IdMap::with_prefix(prefix).unwrap();
            for id in ids.clone() {
                let sid = map.session_id(&id).unwrap();
                assert_eq!(sid.as_str().len(), prefix.len() + TOWER_ID_LEN);
                assert!(sid.as_str().starts_with(prefix));
                assert_eq!(map.tower_id(&sid), Some(id), "{sid}");
            }
        }
    }

    #[test]
    fn ids_of_other_prefixes_or_shapes_are_not_tower_ids() {
        let map = IdMap::with_prefix("tower:").unwrap();
        let id = Id(42);
        let other = IdMap::with_prefix("other:").unwrap();
        assert_eq!(map.tower_id(&other.session_id(&id).unwrap()), None);
        for text in [
            "tower:user-123",
            "tower:",
            "tower:AAAAAAAAAAAAAAAAAAAAAAA",
            // 22 characters whose last one has bits that base64 of 16 bytes leaves zero.
            "tower:AAAAAAAAAAAAAAAAAAAAAB",
        ] {
            let sid = SessionId::new(text).unwrap();
            assert_eq!(map.tower_id(&sid), None, "{text}");
        }
    }

    #[test]
    fn prefixes_outside_the_id_alphabet_or_too_long_are_refused() {
        for bad in ["a b", "a*", "é", &"p".repeat(MAX_PREFIX_LEN + 1)] {
            let e = IdMap::with_prefix(bad).unwrap_err();
            assert!(e.to_string().contains("invalid session id prefix"), "{e}");
        }
    }
}
