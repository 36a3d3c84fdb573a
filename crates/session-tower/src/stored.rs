//! tower-sessions' [`Record`] as a session state, through the [`Codec`].
//!
//! The state is a map with three fields, named as tower names them:
//!
//! | field | content |
//! |---|---|
//! | `id` | the tower id's text form (the cookie value) |
//! | `data` | the session's data, a map of JSON values |
//! | `expiry_date` | RFC 3339, UTC, with the sub-second digits it has (`2026-11-25T09:10:13.042517Z`) |
//!
//! encoded like every other session (the codec's envelope around named MessagePack), so
//! `sessionctl show` and the admin listing decode it into readable JSON.

use std::{collections::HashMap, time::Duration};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use session_core::{Codec, SessionId, Summary, Ttl};
use time::{OffsetDateTime, UtcOffset, format_description::well_known::Rfc3339};
use tower_sessions_core::session::{Id, Record};
use tower_sessions_core::session_store::Error;

/// What is encoded for a [`Record`] (borrowing its data).
#[derive(Serialize)]
struct StoredRef<'a> {
    id: String,
    data: &'a HashMap<String, Value>,
    expiry_date: String,
}

/// What is decoded into a [`Record`].
#[derive(Deserialize)]
struct Stored {
    id: String,
    data: HashMap<String, Value>,
    expiry_date: String,
}

/// The envelope of `record`, stored under `id`.
pub(crate) fn encode(codec: &Codec, id: &SessionId, record: &Record) -> Result<Bytes, Error> {
    let expiry_date = record
        .expiry_date
        .to_offset(UtcOffset::UTC)
        .format(&Rfc3339)
        .map_err(|e| {
            Error::Encode(format!(
                "session {id}: expiry date {} has no RFC 3339 form: {e}",
                record.expiry_date
            ))
        })?;
    let stored = StoredRef {
        id: record.id.to_string(),
        data: &record.data,
        expiry_date,
    };
    codec.encode(id, &stored).map_err(crate::error::to_tower)
}

/// The record stored under `id` for the tower id `tower_id`.
pub(crate) fn decode(
    codec: &Codec,
    id: &SessionId,
    tower_id: &Id,
    payload: &[u8],
) -> Result<Record, Error> {
    let stored: Stored = codec.decode(id, payload).map_err(crate::error::to_tower)?;
    if stored.id != tower_id.to_string() {
        return Err(Error::Decode(format!(
            "session {id} is corrupt: it holds the tower-sessions record of another id ({})",
            session_core::quote_for_humans(&stored.id, 64)
        )));
    }
    let expiry_date = OffsetDateTime::parse(&stored.expiry_date, &Rfc3339).map_err(|e| {
        Error::Decode(format!(
            "session {id} is corrupt: expiry_date {} is not RFC 3339: {e}",
            session_core::quote_for_humans(&stored.expiry_date, 64)
        ))
    })?;
    Ok(Record {
        id: *tower_id,
        data: stored.data,
        expiry_date,
    })
}

/// What listings show for a record: how many values it holds (`keys`). Never a value: session
/// data is the application's, and may be secret.
pub(crate) fn summary(record: &Record) -> Summary {
    Summary::new().with("keys", record.data.len())
}

/// The TTL of a record that expires at `expiry`, seen at `now`: the time left, rounded up to
/// whole milliseconds (so the store never drops a session before tower's expiry date) and at
/// most [`Ttl::MAX`]. `None` when the expiry date is not in the future.
pub(crate) fn ttl_until(expiry: OffsetDateTime, now: OffsetDateTime) -> Option<Ttl> {
    let left = expiry - now;
    if !left.is_positive() {
        return None;
    }
    let left = Duration::try_from(left).ok()?;
    let millis = left.as_nanos().div_ceil(1_000_000);
    let millis = u64::try_from(millis)
        .unwrap_or(u64::MAX)
        .min(Ttl::MAX.as_millis());
    Ttl::from_millis(millis).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn record(expiry_date: OffsetDateTime) -> Record {
        Record {
            id: Id(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
            data: HashMap::from([
                ("user".to_owned(), Value::from("ada")),
                ("n".to_owned(), Value::from(-3)),
                ("big".to_owned(), Value::from(u64::MAX)),
                ("pi".to_owned(), Value::from(3.25)),
                (
                    "nested".to_owned(),
                    serde_json::json!({"a": [1, null, true, "x"], "b": {}}),
                ),
            ]),
            expiry_date,
        }
    }

    #[test]
    fn records_round_trip_exactly_through_the_codec() {
        let codec = Codec::default();
        let sid = SessionId::new("s").unwrap();
        for expiry in [
            datetime!(2030-01-02 03:04:05.123456789 UTC),
            datetime!(2030-01-02 03:04:05 +05:30),
            datetime!(9999-12-31 23:59:59.999999999 UTC),
        ] {
            let r = record(expiry);
            let bytes = encode(&codec, &sid, &r).unwrap();
            let back = decode(&codec, &sid, &r.id, &bytes).unwrap();
            assert_eq!(back, r);
        }
    }

    #[test]
    fn a_record_of_another_id_is_a_decode_error() {
        let codec = Codec::default();
        let sid = SessionId::new("s").unwrap();
        let r = record(datetime!(2030-01-01 0:00 UTC));
        let bytes = encode(&codec, &sid, &r).unwrap();
        let e = decode(&codec, &sid, &Id(7), &bytes).unwrap_err();
        assert!(
            matches!(&e, Error::Decode(d) if d.contains("another id")),
            "{e}"
        );
    }

    #[test]
    fn ttls_round_up_to_milliseconds_and_stop_at_the_maximum() {
        let now = datetime!(2030-01-01 0:00 UTC);
        assert_eq!(ttl_until(now, now), None);
        assert_eq!(ttl_until(now - time::Duration::SECOND, now), None);
        assert_eq!(
            ttl_until(now + time::Duration::nanoseconds(1), now),
            Some(Ttl::from_millis(1).unwrap())
        );
        assert_eq!(
            ttl_until(now + time::Duration::milliseconds(1500), now),
            Some(Ttl::from_millis(1500).unwrap())
        );
        assert_eq!(
            ttl_until(datetime!(9999-01-01 0:00 UTC), now),
            Some(Ttl::MAX)
        );
    }
}
