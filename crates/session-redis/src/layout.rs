//! The storage layout: one Redis string per session under `{prefix}{id}` (see `record.rs`
//! for its header), with the TTL on the key (`PEXPIRE`); and the hashes of the earlier
//! layouts, which stay readable:
//!
//! | field | content |
//! |---|---|
//! | `d` | the payload (codec envelope), opaque bytes |
//! | `m` | MessagePack (named) of `{ updated_at, size, summary, ttl_ms, prefix }` |
//! | `v` | the version, a decimal integer |
//! | `c` | `created_at`, decimal milliseconds |
//! | `t` | the write tokens of the last writes, newest first: 16 lowercase hex digits each, no separator |
//!
//! Hashes of the first layout carry `i` (an incarnation) instead of `t`: they read with no
//! tokens. Any write replaces a hash with a string record (the staged string is renamed over
//! it). A read asks for the string (`GET`) and, when the key holds a hash (`WRONGTYPE`), for the
//! hash fields. This module turns Redis replies into records and reports anything unexpected as
//! [`Error::Corrupt`] for the session it concerns.

use std::time::Duration;

use bytes::Bytes;
use redis::Value;
use serde::{Deserialize, Serialize};
use session_core::{
    Error, Meta, RecentTokens, Record, Result, SessionId, SessionInfo, Summary, Timestamp, Ttl,
};

/// Field names, in the order reads fetch them.
pub(crate) const FIELD_PAYLOAD: &str = "d";
pub(crate) const FIELD_META: &str = "m";
pub(crate) const FIELD_VERSION: &str = "v";
pub(crate) const FIELD_CREATED: &str = "c";
pub(crate) const FIELD_TOKENS: &str = "t";

/// Adds the read of a whole record to `pipe`: `GET key` and `PTTL key`, whose replies
/// [`record_from_replies`] takes. A hash (`WRONGTYPE` on `GET`) is read again with
/// [`push_hash_read`].
pub(crate) fn push_record_read(pipe: &mut redis::Pipeline, key: &str) {
    pipe.cmd("GET").arg(key);
    pipe.cmd("PTTL").arg(key);
}

/// Whether a reply is `WRONGTYPE`: the key holds another type than the command reads.
pub(crate) fn is_wrong_type(v: &Value) -> bool {
    matches!(v, Value::ServerError(e) if e.code() == "WRONGTYPE")
}

/// Adds the read of a record of the hash layouts to `pipe`: `HMGET key d m v c t` and `PTTL
/// key`, whose replies [`record_from_replies`] takes too.
pub(crate) fn push_hash_read(pipe: &mut redis::Pipeline, key: &str) {
    pipe.cmd("HMGET")
        .arg(key)
        .arg(FIELD_PAYLOAD)
        .arg(FIELD_META)
        .arg(FIELD_VERSION)
        .arg(FIELD_CREATED)
        .arg(FIELD_TOKENS);
    pipe.cmd("PTTL").arg(key);
}

/// The Redis key of a session.
pub(crate) fn key(prefix: &str, id: &SessionId) -> String {
    let mut key = String::with_capacity(prefix.len() + id.as_str().len());
    key.push_str(prefix);
    key.push_str(id.as_str());
    key
}

/// The `SCAN ... MATCH` pattern for every key under `prefix`: the prefix with the glob
/// characters `* ? [ ] \` escaped, then `*`.
pub(crate) fn match_pattern(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 8);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('*');
    pattern
}

/// What `m` holds. `created_at` lives in its own field (`c`) so that an unconditional rewrite
/// keeps it without reading the old meta first.
#[derive(Serialize)]
struct StoredMetaRef<'a> {
    updated_at: Timestamp,
    size: u64,
    summary: &'a Summary,
    /// The TTL the write set, in milliseconds (sliding expiry refreshes to it).
    ttl_ms: u64,
    /// The key prefix of the store that wrote it: a store whose prefix is a prefix of this one
    /// (`app:` and `app:s:`) sees the key as one of its own ids (`s:<id>`) and skips it.
    prefix: &'a str,
}

#[derive(Deserialize)]
struct StoredMeta {
    updated_at: Timestamp,
    size: u64,
    #[serde(default)]
    summary: Summary,
    /// Absent in records written before it existed.
    #[serde(default)]
    ttl_ms: Option<u64>,
    /// Absent in records written before it existed: such a record is taken as the reader's.
    #[serde(default)]
    prefix: Option<String>,
}

/// Encodes `m` for a write.
pub(crate) fn encode_meta(
    updated_at: Timestamp,
    size: u64,
    summary: &Summary,
    ttl: Ttl,
    prefix: &str,
) -> Vec<u8> {
    // Serializing a struct of integers and a string map into a Vec cannot fail; should it ever,
    // an empty meta is still readable (it decodes as corrupt, not as a panic).
    rmp_serde::to_vec_named(&StoredMetaRef {
        updated_at,
        size,
        summary,
        ttl_ms: ttl.as_millis(),
        prefix,
    })
    .unwrap_or_default()
}

/// Whose a record is, as far as its meta tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    /// Written under the reader's prefix, or before records named theirs.
    Ours,
    /// Written by a store whose longer prefix starts with the reader's.
    Nested,
}

fn owner(stored: &StoredMeta, prefix: Option<&str>) -> Owner {
    match (prefix, stored.prefix.as_deref()) {
        (Some(ours), Some(theirs)) if ours != theirs => Owner::Nested,
        _ => Owner::Ours,
    }
}

/// The prefix of `key` (session `id`'s key).
pub(crate) fn prefix_of<'k>(key: &'k str, id: &SessionId) -> &'k str {
    key.strip_suffix(id.as_str()).unwrap_or(key)
}

/// The meta field's owner, for `count`: `Ours` when the bytes are not readable meta (a
/// corrupt session is still counted, as listings show it).
pub(crate) fn owner_of_meta(bytes: &[u8], prefix: &str) -> Owner {
    rmp_serde::from_slice::<StoredMeta>(bytes)
        .map_or(Owner::Ours, |stored| owner(&stored, Some(prefix)))
}

/// The refusal of a record that a store with a longer prefix wrote (see [`Owner`]).
pub(crate) fn nested(id: &SessionId) -> Error {
    Error::corrupt(
        id,
        "the key holds a session of another store, whose key prefix extends this store's \
         (nested prefixes): not read",
    )
}

/// Decodes a meta (field `m`, or the string record's meta), with the creation time stored
/// beside it.
pub(crate) fn decode_meta(
    id: &SessionId,
    bytes: &[u8],
    created: Option<Timestamp>,
    prefix: Option<&str>,
) -> Result<(Meta, Owner)> {
    let stored: StoredMeta = rmp_serde::from_slice(bytes)
        .map_err(|e| Error::corrupt(id, format!("the meta is not readable: {e}")))?;
    let owner = owner(&stored, prefix);
    let meta = Meta::new(
        // Records written before `c` existed (or by hand) fall back to the last write.
        created.unwrap_or(stored.updated_at),
        stored.updated_at,
        stored.size,
        stored.summary,
    );
    // A TTL out of range (written by hand) is as good as none: the manager's default applies.
    let meta = match stored.ttl_ms.map(Ttl::from_millis) {
        Some(Ok(ttl)) => meta.with_written_ttl(ttl),
        _ => meta,
    };
    Ok((meta, owner))
}

/// The optional `c` field, parsed.
fn creation(id: &SessionId, c: Option<Vec<u8>>) -> Result<Option<Timestamp>> {
    c.map(|c| integer_field(id, FIELD_CREATED, &c).map(Timestamp::from_millis))
        .transpose()
}

/// The optional `t` field, parsed: no field is no tokens (an older layout).
pub(crate) fn tokens(id: &SessionId, t: Option<&[u8]>) -> Result<RecentTokens> {
    match t {
        None => Ok(RecentTokens::new()),
        Some(t) => RecentTokens::parse_hex(t).ok_or_else(|| {
            Error::corrupt(
                id,
                format!(
                    "field t is not a list of write tokens: {:?}",
                    String::from_utf8_lossy(&t[..t.len().min(48)])
                ),
            )
        }),
    }
}

/// A field's bytes, or `None` when the field is absent.
fn bytes_of(id: &SessionId, field: &str, v: Value) -> Result<Option<Vec<u8>>> {
    match v {
        Value::Nil => Ok(None),
        Value::BulkString(b) => Ok(Some(b)),
        Value::SimpleString(s) => Ok(Some(s.into_bytes())),
        other => Err(Error::corrupt(
            id,
            format!(
                "field {field} has an unexpected reply {}",
                value_kind(&other)
            ),
        )),
    }
}

fn integer_field(id: &SessionId, field: &str, bytes: &[u8]) -> Result<u64> {
    std::str::from_utf8(bytes)
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| {
            Error::corrupt(
                id,
                format!(
                    "field {field} is not an integer: {:?}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(32)])
                ),
            )
        })
}

/// The reply of `PTTL`: `Ok(None)` when the key is gone, `Ok(Some(None))` without expiry.
fn ttl_of(v: &Value) -> Option<Option<Duration>> {
    match v {
        Value::Int(-2) => None,
        Value::Int(ms) if *ms >= 0 => Some(Some(Duration::from_millis(*ms as u64))),
        // -1: no expiry. Any other reply is not worth failing a read over.
        _ => Some(None),
    }
}

/// A server error inside a pipeline reply: `WRONGTYPE` for a key of another type, anything
/// else classified like a failed request (`LOADING` is an outage ...).
fn server_error(id: &SessionId, v: &Value) -> Result<()> {
    match v {
        Value::ServerError(e) if e.code() == "WRONGTYPE" => Err(Error::corrupt(
            id,
            "the key holds another Redis type, not a session (delete it to reuse the id)",
        )),
        Value::ServerError(e) => Err(crate::errors::classified(
            redis::RedisError::from(e.clone()),
            format!("reading session {id}: {e}"),
        )),
        _ => Ok(()),
    }
}

fn value_kind(v: &Value) -> &'static str {
    match v {
        Value::Nil => "nil",
        Value::Int(_) => "integer",
        Value::BulkString(_) => "bulk string",
        Value::Array(_) => "array",
        Value::SimpleString(_) => "simple string",
        Value::Okay => "OK",
        Value::Map(_) => "map",
        Value::Set(_) => "set",
        Value::Double(_) => "double",
        Value::Boolean(_) => "boolean",
        Value::ServerError(_) => "error",
        _ => "other value",
    }
}

fn split5(id: &SessionId, v: Value) -> Result<[Value; 5]> {
    match v {
        Value::Array(items) => <[Value; 5]>::try_from(items)
            .map_err(|items| Error::corrupt(id, format!("HMGET gave {} values", items.len()))),
        other => Err(Error::corrupt(
            id,
            format!("HMGET gave {}", value_kind(&other)),
        )),
    }
}

/// Builds a record from the replies of a read: `GET key` (a string record, or nil) or `HMGET
/// key d m v c t` (a hash of the earlier layouts), and `PTTL key`.
///
/// With `prefix` (the reader's key prefix), a record written by a store with a longer prefix
/// that starts with it (`app:s:` under `app:`) is refused as `Corrupt`: it is not this
/// store's session, although its key looks like one.
pub(crate) fn record_from_replies(
    id: &SessionId,
    data: Value,
    pttl: Value,
    prefix: Option<&str>,
) -> Result<Option<Record>> {
    server_error(id, &data)?;
    server_error(id, &pttl)?;
    let Some(ttl) = ttl_of(&pttl) else {
        return Ok(None);
    };
    match data {
        // The key is absent (a session created between `GET` and `PTTL` reads as absent too).
        Value::Nil => Ok(None),
        Value::BulkString(value) => {
            crate::record::record_from_value(id, value, ttl, prefix).map(Some)
        }
        hmget => record_from_hash(id, hmget, ttl, prefix),
    }
}

/// A record of the hash layouts from `HMGET key d m v c t`.
fn record_from_hash(
    id: &SessionId,
    hmget: Value,
    ttl: Option<Duration>,
    prefix: Option<&str>,
) -> Result<Option<Record>> {
    let [d, m, v, c, t] = split5(id, hmget)?;
    // HMGET and PTTL are two commands: a session created between them (its key absent for
    // HMGET, present for PTTL) must read as absent, not as a corrupt hash. Writes are atomic,
    // so a session hash never lacks all these fields; a foreign hash that does is still refused
    // by every write (the script reports it corrupt) and listed as corrupt.
    if [&d, &m, &v, &c, &t].iter().all(|f| matches!(f, Value::Nil)) {
        return Ok(None);
    }
    let payload = bytes_of(id, FIELD_PAYLOAD, d)?;
    let meta = bytes_of(id, FIELD_META, m)?;
    let version = bytes_of(id, FIELD_VERSION, v)?;
    let created = bytes_of(id, FIELD_CREATED, c)?;
    let t = bytes_of(id, FIELD_TOKENS, t)?;
    let (Some(payload), Some(version)) = (payload, version) else {
        return Err(Error::corrupt(
            id,
            "the session hash lacks its payload (d) or version (v) field",
        ));
    };
    let version = integer_field(id, FIELD_VERSION, &version)?;
    let created = creation(id, created)?;
    let tokens = tokens(id, t.as_deref())?;
    let meta = match meta {
        Some(m) => match decode_meta(id, &m, created, prefix)? {
            (meta, Owner::Ours) => meta,
            (_, Owner::Nested) => return Err(nested(id)),
        },
        None => {
            return Err(Error::corrupt(
                id,
                "the session hash lacks its meta (m) field",
            ));
        }
    };
    Ok(Some(
        Record::new(Bytes::from(payload), meta, version)
            .with_ttl(ttl)
            .with_tokens(tokens),
    ))
}

/// Adds a listing's first look at one key to `pipe`: `PTTL key`, then `GETRANGE key 0
/// LIST_READ-1` (the header and the meta of a string record, never the payload), whose
/// replies [`info_from_replies`] takes. `PTTL` first: a key deleted between the two reads as
/// gone, one created between is not listed yet (it is newer than the look).
pub(crate) fn push_listing_read(pipe: &mut redis::Pipeline, key: &str) {
    pipe.cmd("PTTL").arg(key);
    pipe.cmd("GETRANGE")
        .arg(key)
        .arg(0)
        .arg(crate::record::LIST_READ - 1);
}

/// Adds a listing's second look at one key ([`Listed::Again`]) to `pipe`: `PTTL key`,
/// `GETRANGE key 0 len-1` and `HMGET key m v c`, for [`info_after_second_look`]: one of the
/// two reads fits the key's type.
pub(crate) fn push_second_look(pipe: &mut redis::Pipeline, key: &str, len: usize) {
    pipe.cmd("PTTL").arg(key);
    pipe.cmd("GETRANGE").arg(key).arg(0).arg(len.max(1) - 1);
    pipe.cmd("HMGET")
        .arg(key)
        .arg(FIELD_META)
        .arg(FIELD_VERSION)
        .arg(FIELD_CREATED);
}

/// What a listing shows for one key.
pub(crate) enum Listed {
    /// A readable entry.
    Entry(SessionInfo),
    /// The key expired or was deleted between SCAN and the fetch, or is another store's.
    Gone,
    /// The key exists but its listing data cannot be read.
    Corrupt(SessionInfo, Error),
    /// Look again ([`push_second_look`]), reading this many bytes of a string record: the key
    /// holds a hash of an earlier layout, or a record whose meta is longer than the first look
    /// read.
    Again(usize),
}

fn corrupt_entry(id: SessionId, ttl: Option<Duration>, error: Error) -> Listed {
    let zero = Timestamp::from_millis(0);
    let meta = Meta::new(zero, zero, 0, Summary::new());
    Listed::Corrupt(SessionInfo::new(id, meta, 0, ttl), error)
}

/// The listing entry from a first look ([`push_listing_read`]): the replies of `PTTL key` and
/// `GETRANGE key 0 LIST_READ-1` (or, from a second look, `HMGET key m v c` of a hash).
pub(crate) fn info_from_replies(id: SessionId, pttl: Value, first: Value, prefix: &str) -> Listed {
    let ttl = match (&pttl, ttl_of(&pttl)) {
        (Value::ServerError(_), _) => None,
        (_, None) => return Listed::Gone,
        (_, Some(ttl)) => ttl,
    };
    match first {
        Value::ServerError(e) if e.code() == "WRONGTYPE" => Listed::Again(crate::record::LIST_READ),
        // Deleted since `PTTL` (GETRANGE reads a missing key as empty).
        Value::Nil => Listed::Gone,
        Value::BulkString(b) if b.is_empty() => Listed::Gone,
        Value::BulkString(b) => match crate::record::parse_prefix(&id, &b, prefix) {
            Ok(crate::record::Prefix::Info {
                header,
                meta,
                owner: Owner::Ours,
            }) => Listed::Entry(SessionInfo::new(id, meta, header.version, ttl)),
            // A session of a nested prefix (`app:s:` under `app:`) is that store's to list.
            Ok(crate::record::Prefix::Info { .. }) => Listed::Gone,
            Ok(crate::record::Prefix::Longer(n)) if n > b.len() => Listed::Again(n),
            Ok(crate::record::Prefix::Longer(_)) => corrupt_entry(
                id.clone(),
                ttl,
                Error::corrupt(&id, "the record's meta length does not add up"),
            ),
            Err(e) => corrupt_entry(id, ttl, e),
        },
        hmget => match parse_info(&id, hmget, prefix) {
            Ok(Some((meta, version, Owner::Ours))) => {
                Listed::Entry(SessionInfo::new(id, meta, version, ttl))
            }
            Ok(Some((_, _, Owner::Nested))) | Ok(None) => Listed::Gone,
            Err(e) => corrupt_entry(id, ttl, e),
        },
    }
}

/// The listing entry from a second look ([`push_second_look`]): the replies of `PTTL key`,
/// `GETRANGE key 0 len-1` and `HMGET key m v c`. A string record reads from the first, a hash
/// from the second; a hash without the session fields, an empty string or a key of another
/// type is corrupt (listed, so that it can be found and deleted).
pub(crate) fn info_after_second_look(
    id: SessionId,
    pttl: Value,
    getrange: Value,
    hmget: Value,
    prefix: &str,
) -> Listed {
    let ttl = match ttl_of(&pttl) {
        None if !matches!(pttl, Value::ServerError(_)) => return Listed::Gone,
        ttl => ttl.flatten(),
    };
    let corrupt = |why: &str| corrupt_entry(id.clone(), ttl, Error::corrupt(&id, why.to_owned()));
    match (&getrange, &hmget) {
        (Value::BulkString(b), _) if !b.is_empty() => {
            info_from_replies(id.clone(), pttl, getrange, prefix)
        }
        (_, Value::Array(items)) if is_wrong_type(&getrange) => {
            if items.iter().all(|v| matches!(v, Value::Nil)) {
                corrupt("the session hash lacks its meta (m) and version (v) fields")
            } else {
                match info_from_replies(id.clone(), pttl, hmget, prefix) {
                    Listed::Again(_) => corrupt("the session hash cannot be read"),
                    listed => listed,
                }
            }
        }
        // Both reads found nothing: deleted since `PTTL`.
        (Value::BulkString(_), Value::Array(items))
            if items.iter().all(|v| matches!(v, Value::Nil)) =>
        {
            Listed::Gone
        }
        (Value::BulkString(_), _) => corrupt("the key holds an empty string, not a session"),
        _ => corrupt("the key holds another Redis type, not a session (delete it to reuse the id)"),
    }
}

fn parse_info(id: &SessionId, hmget: Value, prefix: &str) -> Result<Option<(Meta, u64, Owner)>> {
    server_error(id, &hmget)?;
    let items = match hmget {
        Value::Array(items) if items.len() == 3 => items,
        other => {
            return Err(Error::corrupt(
                id,
                format!("HMGET gave {}", value_kind(&other)),
            ));
        }
    };
    let mut items = items.into_iter();
    let mut next = |field| bytes_of(id, field, items.next().unwrap_or(Value::Nil));
    let (m, v, c) = (
        next(FIELD_META)?,
        next(FIELD_VERSION)?,
        next(FIELD_CREATED)?,
    );
    // Deleted since `PTTL`: not listed.
    if m.is_none() && v.is_none() && c.is_none() {
        return Ok(None);
    }
    let (Some(m), Some(v)) = (m, v) else {
        return Err(Error::corrupt(
            id,
            "the session hash lacks its meta (m) or version (v) field",
        ));
    };
    let version = integer_field(id, FIELD_VERSION, &v)?;
    let created = creation(id, c)?;
    let (meta, owner) = decode_meta(id, &m, created, Some(prefix))?;
    Ok(Some((meta, version, owner)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SessionId {
        SessionId::new(s).unwrap()
    }

    fn bulk(b: &[u8]) -> Value {
        Value::BulkString(b.to_vec())
    }

    /// `HMGET d m v c t` of a hash without `t` (the older layout).
    fn hmget(d: Option<&[u8]>, m: Option<Vec<u8>>, v: Option<&[u8]>, c: Option<&[u8]>) -> Value {
        with_tokens(hmget_parts(d, m, v, c), None)
    }

    fn hmget_parts(
        d: Option<&[u8]>,
        m: Option<Vec<u8>>,
        v: Option<&[u8]>,
        c: Option<&[u8]>,
    ) -> Vec<Value> {
        vec![
            d.map_or(Value::Nil, bulk),
            m.map_or(Value::Nil, Value::BulkString),
            v.map_or(Value::Nil, bulk),
            c.map_or(Value::Nil, bulk),
        ]
    }

    fn with_tokens(mut parts: Vec<Value>, t: Option<&[u8]>) -> Value {
        parts.push(t.map_or(Value::Nil, bulk));
        Value::Array(parts)
    }

    fn meta() -> Vec<u8> {
        encode_meta(
            Timestamp::from_millis(2000),
            3,
            &Summary::new().with("state", "new_problem"),
            Ttl::DEFAULT,
            "p:",
        )
    }

    #[test]
    fn keys_and_patterns() {
        assert_eq!(key("cql:session:", &id("u-1")), "cql:session:u-1");
        assert_eq!(match_pattern("cql:session:"), "cql:session:*");
        assert_eq!(match_pattern(r"a*b?c[d]e\f"), r"a\*b\?c\[d\]e\\f*");
    }

    #[test]
    fn a_full_hash_reads_back() {
        let rec = record_from_replies(
            &id("a"),
            hmget(Some(b"abc"), Some(meta()), Some(b"7"), Some(b"1000")),
            Value::Int(5000),
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(&rec.payload[..], b"abc");
        assert_eq!(rec.version, 7);
        assert_eq!(rec.ttl, Some(Duration::from_millis(5000)));
        assert_eq!(rec.meta.created_at, Timestamp::from_millis(1000));
        assert_eq!(rec.meta.updated_at, Timestamp::from_millis(2000));
        assert!(rec.tokens.is_empty(), "no t field: no tokens");
        let with_t = record_from_replies(
            &id("a"),
            with_tokens(
                hmget_parts(Some(b"abc"), Some(meta()), Some(b"7"), Some(b"1000")),
                Some(b"00000000000000ff0000000000000001"),
            ),
            Value::Int(5000),
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(with_t.token().map(|t| t.as_u64()), Some(0xff));
        assert_eq!(with_t.tokens.len(), 2);
        assert_eq!(rec.meta.size, 3);
        assert_eq!(
            rec.meta.summary.get("state").and_then(|v| v.as_str()),
            Some("new_problem")
        );
        let no_expiry = record_from_replies(
            &id("a"),
            hmget(Some(b"abc"), Some(meta()), Some(b"7"), None),
            Value::Int(-1),
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(no_expiry.ttl, None);
        assert_eq!(no_expiry.meta.created_at, Timestamp::from_millis(2000));
    }

    #[test]
    fn a_session_created_between_hmget_and_pttl_reads_as_absent() {
        let absent_then_created = hmget(None, None, None, None);
        assert!(matches!(
            record_from_replies(
                &id("racing"),
                absent_then_created,
                Value::Int(3_600_000),
                None
            ),
            Ok(None)
        ));
    }

    #[test]
    fn a_missing_key_is_none() {
        let r = record_from_replies(
            &id("a"),
            hmget(None, None, None, None),
            Value::Int(-2),
            None,
        );
        assert!(matches!(r, Ok(None)));
    }

    #[test]
    fn anything_odd_is_corrupt_for_that_id() {
        let cases = [
            hmget(Some(b"x"), Some(meta()), None, None),
            hmget(None, Some(meta()), Some(b"1"), None),
            hmget(Some(b"x"), Some(meta()), Some(b"one"), None),
            hmget(Some(b"x"), Some(meta()), Some(b"-1"), None),
            hmget(Some(b"x"), Some(b"\xc1garbage".to_vec()), Some(b"1"), None),
            hmget(Some(b"x"), None, Some(b"1"), None),
            hmget(Some(b"x"), Some(meta()), Some(b"1"), Some(b"yesterday")),
            with_tokens(
                hmget_parts(Some(b"x"), Some(meta()), Some(b"1"), Some(b"5")),
                Some(b"not a token list"),
            ),
            Value::Int(3),
        ];
        for (n, case) in cases.into_iter().enumerate() {
            match record_from_replies(&id("bad"), case, Value::Int(1000), None) {
                Err(Error::Corrupt { id: got, .. }) => assert_eq!(got.as_str(), "bad"),
                other => panic!("case {n}: expected Corrupt, got {other:?}"),
            }
        }
    }

    #[test]
    fn listing_marks_corrupt_entries_and_skips_gone_ones() {
        // Hash entries come from a second look's HMGET (the first look's GETRANGE gave
        // WRONGTYPE).
        let ok = Value::Array(vec![Value::BulkString(meta()), bulk(b"2"), Value::Nil]);
        assert!(matches!(
            info_from_replies(id("a"), Value::Int(10), ok.clone(), "p:"),
            Listed::Entry(SessionInfo { version: 2, .. })
        ));
        assert!(matches!(
            info_from_replies(id("a"), Value::Int(-2), ok, "p:"),
            Listed::Gone
        ));
        let bad = Value::Array(vec![bulk(b"zz"), bulk(b"2"), Value::Nil]);
        assert!(matches!(
            info_from_replies(id("a"), Value::Int(10), bad, "p:"),
            Listed::Corrupt(SessionInfo { version: 0, .. }, Error::Corrupt { .. })
        ));
        // A string that is not a record is corrupt; an empty one is a key deleted since PTTL.
        assert!(matches!(
            info_from_replies(id("a"), Value::Int(10), bulk(b"hello"), "p:"),
            Listed::Corrupt(..)
        ));
        assert!(matches!(
            info_from_replies(id("a"), Value::Int(10), bulk(b""), "p:"),
            Listed::Gone
        ));
    }

    /// A string record as a write stages it: one token, `version`, `meta`, `payload`.
    fn string_record(token: u64, version: u64, meta: &[u8], payload: &[u8]) -> Vec<u8> {
        let tokens = RecentTokens::first(session_core::WriteToken::from_u64(token).unwrap());
        let staged = crate::record::Staged {
            header: crate::record::header(
                Some(&tokens),
                version,
                Timestamp::from_millis(1),
                meta.len(),
            ),
            meta,
            payload,
        };
        redis::ToRedisArgs::to_redis_args(&staged).remove(0)
    }

    fn wrong_type() -> Value {
        redis::parse_redis_value(
            b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
        )
        .unwrap()
    }

    #[test]
    fn a_hash_or_a_long_meta_is_looked_at_again() {
        assert!(matches!(
            info_from_replies(id("h"), Value::Int(10), wrong_type(), "p:"),
            Listed::Again(crate::record::LIST_READ)
        ));
        let nil3 = || Value::Array(vec![Value::Nil, Value::Nil, Value::Nil]);
        // Second look: a hash without the session fields is corrupt, listed.
        assert!(matches!(
            info_after_second_look(id("half"), Value::Int(10), wrong_type(), nil3(), "p:"),
            Listed::Corrupt(..)
        ));
        // A hash with them is an entry.
        let created = Value::Array(vec![Value::BulkString(meta()), bulk(b"1"), Value::Nil]);
        assert!(matches!(
            info_after_second_look(id("new"), Value::Int(10), wrong_type(), created, "p:"),
            Listed::Entry(SessionInfo { version: 1, .. })
        ));
        // Deleted between: gone. Another type, or an empty string: corrupt.
        assert!(matches!(
            info_after_second_look(id("x"), Value::Int(10), bulk(b""), nil3(), "p:"),
            Listed::Gone
        ));
        assert!(matches!(
            info_after_second_look(id("x"), Value::Int(10), wrong_type(), wrong_type(), "p:"),
            Listed::Corrupt(..)
        ));
        assert!(matches!(
            info_after_second_look(id("x"), Value::Int(10), bulk(b""), wrong_type(), "p:"),
            Listed::Corrupt(..)
        ));
        assert!(matches!(
            info_after_second_look(id("x"), Value::Int(-2), wrong_type(), nil3(), "p:"),
            Listed::Gone
        ));
        // A partial hash is still corrupt.
        let partial = Value::Array(vec![Value::Nil, bulk(b"2"), Value::Nil]);
        assert!(matches!(
            info_after_second_look(id("half"), Value::Int(10), wrong_type(), partial, "p:"),
            Listed::Corrupt(..)
        ));
        // A record whose meta runs past the first look's bytes is read again, as far as
        // its meta goes.
        let big = Summary::new().with("notes", "n".repeat(2000));
        let m = encode_meta(Timestamp::from_millis(1), 3, &big, Ttl::DEFAULT, "p:");
        let value = string_record(1, 4, &m, b"payload");
        let first = bulk(&value[..crate::record::LIST_READ]);
        match info_from_replies(id("long"), Value::Int(10), first, "p:") {
            Listed::Again(n) => assert_eq!(n, crate::record::HEADER_LEN + m.len()),
            _ => panic!("expected a second look"),
        }
        assert!(matches!(
            info_after_second_look(id("long"), Value::Int(10), bulk(&value), wrong_type(), "p:"),
            Listed::Entry(SessionInfo { version: 4, .. })
        ));
    }

    #[test]
    fn string_records_read_through_the_same_entry_point() {
        let m = meta();
        let value = string_record(5, 3, &m, b"abc");
        let rec = record_from_replies(&id("s"), bulk(&value), Value::Int(100), Some("p:"))
            .unwrap()
            .unwrap();
        assert_eq!(&rec.payload[..], b"abc");
        assert_eq!(rec.version, 3);
        // A key created between GET and PTTL reads as absent; a hash answer is a hash.
        assert!(matches!(
            record_from_replies(&id("s"), Value::Nil, Value::Int(100), None),
            Ok(None)
        ));
        assert!(matches!(
            record_from_replies(&id("s"), wrong_type(), Value::Int(100), None),
            Err(Error::Corrupt { .. })
        ));
    }
}
