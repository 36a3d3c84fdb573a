//! Redis replies into records: arbitrary RESP through `redis::parse_redis_value`, structured
//! replies of the earlier hash layouts (fields of every kind, readable meta as the store
//! writes it), and string records as the store writes them with bytes altered, into
//! `record_from_replies` (a load) and `info_from_replies` (a listing), through
//! `session_redis::__fuzz`.
//!
//! Invariants: neither panics; a record holds exactly the reply's payload, version, tokens,
//! creation time (or the last write's when `c` is absent) and TTL, and the meta the store
//! wrote; a record is absent only for a key that is gone (`PTTL` -2), a nil `GET` or a hash
//! with none of the fields; another store's record (a nested prefix) is never read as the reader's; a load
//! and a listing of the same fields agree (a record loads exactly when its entry lists, but
//! for the payload and tokens only a load reads); a corrupt listing entry shows version 0 and
//! zero timestamps; errors are typed, and `Corrupt` texts are safe to log.
#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use session_core::{Error, RecentTokens, Record, SessionId, Summary, Timestamp, Ttl};
use session_redis::{
    __fuzz::{self, Listed},
    redis::{self, Value},
};

/// Key prefixes: the reader's, and what records name.
const PREFIXES: &[&str] = &["cql:session:", "app:", "app:s:", ""];

#[derive(Debug, Arbitrary)]
enum Field {
    Nil,
    Bulk(Vec<u8>),
    Simple(String),
    Int(i64),
    /// Any RESP value.
    Resp(Vec<u8>),
    /// A server error reply, `-CODE detail`.
    Error {
        code: String,
        detail: String,
    },
}

#[derive(Debug, Arbitrary)]
enum SummaryEntry {
    Text(String, String),
    Int(String, i64),
    Bool(String, bool),
}

#[derive(Debug, Arbitrary)]
enum MetaField {
    /// What a write stores.
    Written {
        updated_at: u64,
        size: u64,
        summary: Vec<SummaryEntry>,
        ttl_ms: u64,
        prefix: u8,
    },
    /// Meta of an older version (no TTL, no prefix) or written by hand.
    Older {
        updated_at: u64,
        size: u64,
        ttl_ms: Option<u64>,
        prefix: Option<String>,
    },
    Raw(Field),
}

#[derive(Debug, Arbitrary)]
enum Number {
    Decimal(u64),
    Raw(Field),
}

#[derive(Debug, Arbitrary)]
enum Tokens {
    Hex(Vec<u64>),
    Raw(Field),
}

#[derive(Debug, Arbitrary)]
enum Pttl {
    Millis(u32),
    NoExpiry,
    Gone,
    Raw(Field),
}

#[derive(Debug, Arbitrary)]
enum Input {
    /// Both replies as RESP.
    Resp {
        hmget: Vec<u8>,
        pttl: Vec<u8>,
        reader: u8,
    },
    /// A string record as a write stages it, then some of its bytes overwritten (offset,
    /// byte), and cut to a length.
    Record {
        tokens: Vec<u64>,
        version: u64,
        created_at: u64,
        m: MetaField,
        payload: Vec<u8>,
        changes: Vec<(u16, u8)>,
        cut: Option<u16>,
        pttl: Pttl,
        reader: u8,
    },
    /// `HMGET d m v c t` field by field (and the listing's `HMGET m v c` of the same fields).
    Fields {
        d: Field,
        m: MetaField,
        v: Number,
        c: Number,
        t: Tokens,
        pttl: Pttl,
        reader: u8,
    },
}

#[derive(Serialize)]
struct OlderMeta {
    updated_at: Timestamp,
    size: u64,
    summary: Summary,
    #[serde(skip_serializing_if = "Option::is_none")]
    ttl_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
}

fn prefix(n: u8) -> &'static str {
    PREFIXES[usize::from(n) % PREFIXES.len()]
}

fn resp(bytes: &[u8]) -> Value {
    redis::parse_redis_value(bytes).unwrap_or(Value::Nil)
}

fn field(f: Field) -> Value {
    match f {
        Field::Nil => Value::Nil,
        Field::Bulk(b) => Value::BulkString(b),
        Field::Simple(s) => Value::SimpleString(s),
        Field::Int(n) => Value::Int(n),
        Field::Resp(bytes) => resp(&bytes),
        Field::Error { code, detail } => {
            let line = format!("-{code} {detail}").replace(['\r', '\n'], " ");
            resp(format!("{line}\r\n").as_bytes())
        }
    }
}

fn number(n: Number) -> Value {
    match n {
        Number::Decimal(n) => Value::BulkString(n.to_string().into_bytes()),
        Number::Raw(f) => field(f),
    }
}

fn summary(entries: Vec<SummaryEntry>) -> Summary {
    let mut summary = Summary::new();
    for entry in entries {
        match entry {
            SummaryEntry::Text(k, v) => summary.insert(k, v),
            SummaryEntry::Int(k, v) => summary.insert(k, v),
            SummaryEntry::Bool(k, v) => summary.insert(k, v),
        }
    }
    summary
}

/// What the meta field says, when it was built as a write builds it.
struct Written {
    updated_at: Timestamp,
    size: u64,
    summary: Summary,
    ttl: Option<Ttl>,
    prefix: Option<String>,
}

fn meta(m: MetaField) -> (Value, Option<Written>) {
    match m {
        MetaField::Written {
            updated_at,
            size,
            summary: entries,
            ttl_ms,
            prefix: p,
        } => {
            let updated_at = Timestamp::from_millis(updated_at);
            let summary = summary(entries);
            let ttl = Ttl::from_millis(ttl_ms % (Ttl::MAX.as_millis() + 1)).unwrap_or(Ttl::DEFAULT);
            let bytes = __fuzz::encode_meta(updated_at, size, &summary, ttl, prefix(p));
            let written = Written {
                updated_at,
                size,
                summary,
                ttl: Some(ttl),
                prefix: Some(prefix(p).to_owned()),
            };
            (Value::BulkString(bytes), Some(written))
        }
        MetaField::Older {
            updated_at,
            size,
            ttl_ms,
            prefix,
        } => {
            let older = OlderMeta {
                updated_at: Timestamp::from_millis(updated_at),
                size,
                summary: Summary::new(),
                ttl_ms,
                prefix,
            };
            let bytes = rmp_serde::to_vec_named(&older).expect("meta encodes");
            let written = Written {
                updated_at: older.updated_at,
                size,
                summary: older.summary,
                ttl: ttl_ms.and_then(|ms| Ttl::from_millis(ms).ok()),
                prefix: older.prefix,
            };
            (Value::BulkString(bytes), Some(written))
        }
        MetaField::Raw(f) => (field(f), None),
    }
}

/// A field's bytes as the layout reads them: `Ok(None)` absent, `Err(())` not a string.
fn bytes(v: &Value) -> Result<Option<Vec<u8>>, ()> {
    match v {
        Value::Nil => Ok(None),
        Value::BulkString(b) => Ok(Some(b.clone())),
        Value::SimpleString(s) => Ok(Some(s.clone().into_bytes())),
        _ => Err(()),
    }
}

fn decimal(b: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(b).ok()?;
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The TTL a record read with this `PTTL` reply has.
fn ttl(pttl: &Value) -> Option<Duration> {
    match pttl {
        Value::Int(ms) if *ms >= 0 => Some(Duration::from_millis(*ms as u64)),
        _ => None,
    }
}

fn assert_typed(e: &Error) {
    match e {
        Error::Corrupt { .. } => {
            let shown = e.to_string();
            assert!(!shown.chars().any(char::is_control), "{shown:?}");
        }
        Error::Unavailable { .. }
        | Error::Backend { .. }
        | Error::Auth { .. }
        | Error::OutOfMemory { .. } => {}
        other => panic!("a reply gave {other:?}"),
    }
}

/// The checks of one record against the fields it was built from.
fn check_record(
    record: &Record,
    [d, _m, v, c, t]: &[Value; 5],
    pttl: &Value,
    written: Option<&Written>,
) {
    assert_eq!(
        bytes(d).ok().flatten().as_deref(),
        Some(&record.payload[..])
    );
    let version = bytes(v).ok().flatten().and_then(|v| decimal(&v));
    assert_eq!(version, Some(record.version));
    match bytes(t).expect("t is a string or absent") {
        None => assert!(record.tokens.is_empty()),
        Some(t) => {
            assert_eq!(record.tokens.to_hex().as_bytes(), &t[..]);
            assert_eq!(RecentTokens::parse_hex(&t), Some(record.tokens));
        }
    }
    match bytes(c).expect("c is a string or absent") {
        None => assert_eq!(record.meta.created_at, record.meta.updated_at),
        Some(c) => assert_eq!(Some(record.meta.created_at.as_millis()), decimal(&c)),
    }
    assert_eq!(record.ttl, ttl(pttl));
    if let Some(w) = written {
        assert_eq!(record.meta.updated_at, w.updated_at);
        assert_eq!(record.meta.size, w.size);
        assert_eq!(record.meta.summary, w.summary);
        assert_eq!(record.meta.written_ttl, w.ttl);
    }
}

fn check(hmget: Value, pttl: Value, reader: &str, written: Option<&Written>) {
    let id = SessionId::new("user-1").expect("a valid id");
    let fields: Option<[Value; 5]> = match &hmget {
        Value::Array(items) => <[Value; 5]>::try_from(items.clone()).ok(),
        _ => None,
    };
    let loaded = __fuzz::record_from_replies(&id, hmget.clone(), pttl.clone(), Some(reader));
    let listing_hmget = match &fields {
        Some([_, m, v, c, _]) => Value::Array(vec![m.clone(), v.clone(), c.clone()]),
        None => hmget.clone(),
    };
    let listed = __fuzz::info_from_replies(id.clone(), pttl.clone(), listing_hmget, reader);

    match &loaded {
        Ok(Some(record)) => {
            assert!(!matches!(pttl, Value::Int(-2) | Value::ServerError(_)));
            match fields.as_ref() {
                Some(fields) => check_record(record, fields, &pttl, written),
                // A string record.
                None => {
                    assert!(matches!(hmget, Value::BulkString(_)), "a record from {hmget:?}");
                    assert_eq!(record.ttl, ttl(&pttl));
                }
            }
            if let Some(theirs) = written.and_then(|w| w.prefix.as_deref()) {
                assert_eq!(theirs, reader, "another store's record was read");
            }
        }
        Ok(None) => {
            let all_nil = fields
                .as_ref()
                .is_some_and(|f| f.iter().all(|v| matches!(v, Value::Nil)));
            // `GET` of a missing key is nil (a key created between `GET` and `PTTL` too).
            assert!(
                matches!(pttl, Value::Int(-2)) || all_nil || matches!(hmget, Value::Nil),
                "absent: {hmget:?} {pttl:?}"
            );
        }
        Err(e) => assert_typed(e),
    }

    match &listed {
        Listed::Entry(info) => {
            assert_eq!(info.id, id);
            assert!(!matches!(pttl, Value::Int(-2)));
            if !matches!(pttl, Value::ServerError(_)) {
                assert_eq!(info.ttl, ttl(&pttl));
            }
            // A three-field reply (RESP input) lists but cannot load: nothing to compare.
            let Some([d, _, _, _, t]) = fields.as_ref() else {
                return;
            };
            let t_ok = match bytes(t) {
                Ok(None) => true,
                Ok(Some(t)) => RecentTokens::parse_hex(&t).is_some(),
                Err(()) => false,
            };
            let d_ok = matches!(bytes(d), Ok(Some(_)));
            match &loaded {
                Ok(Some(record)) => {
                    assert_eq!(record.version, info.version);
                    assert_eq!(format!("{:?}", record.meta), format!("{:?}", info.meta));
                    assert_eq!(record.ttl, info.ttl);
                }
                other if d_ok && t_ok && !matches!(pttl, Value::ServerError(_)) => {
                    panic!("listed as {info:?} but loaded as {other:?}");
                }
                _ => {}
            }
        }
        Listed::Corrupt(info, e) => {
            assert_eq!(info.id, id);
            assert_eq!(info.version, 0);
            assert_eq!(info.meta.created_at.as_millis(), 0);
            assert_eq!(info.meta.updated_at.as_millis(), 0);
            assert_typed(e);
            assert!(
                !matches!(loaded, Ok(Some(_))),
                "loaded but listed as corrupt: {e}"
            );
        }
        Listed::Gone => {
            if let Ok(Some(record)) = &loaded {
                panic!("loaded {record:?} but not listed");
            }
        }
        // A hash's first look (WRONGTYPE), or a string whose meta runs past its end.
        Listed::Again(n) => {
            if let Value::BulkString(b) = &hmget {
                assert!(*n > b.len(), "asked for {n} bytes of {}", b.len());
                assert!(!matches!(loaded, Ok(Some(_))), "loaded but not listed");
            }
        }
    }
}

fuzz_target!(|input: Input| match input {
    Input::Resp {
        hmget,
        pttl,
        reader,
    } => check(resp(&hmget), resp(&pttl), prefix(reader), None),
    Input::Record {
        tokens,
        version,
        created_at,
        m,
        payload,
        changes,
        cut,
        pttl,
        reader,
    } => {
        let (m, written) = meta(m);
        let m = match m {
            Value::BulkString(b) => b,
            _ => Vec::new(),
        };
        let tokens: RecentTokens = tokens
            .iter()
            .filter_map(|&t| session_core::WriteToken::from_u64(t))
            .collect();
        let mut value = __fuzz::encode_record(
            &tokens,
            version,
            Timestamp::from_millis(created_at % 10_000_000_000_000_000),
            &m,
            &payload,
        );
        let unchanged = changes.is_empty() && cut.is_none();
        for (at, byte) in changes {
            if let Some(b) = value.get_mut(usize::from(at)) {
                *b = byte;
            }
        }
        if let Some(cut) = cut {
            value.truncate(usize::from(cut));
        }
        let pttl = match pttl {
            Pttl::Millis(ms) => Value::Int(i64::from(ms)),
            Pttl::NoExpiry => Value::Int(-1),
            Pttl::Gone => Value::Int(-2),
            Pttl::Raw(f) => field(f),
        };
        let reader = prefix(reader);
        let loaded = __fuzz::record_from_replies(
            &SessionId::new("user-1").expect("a valid id"),
            Value::BulkString(value.clone()),
            pttl.clone(),
            Some(reader),
        );
        // Unaltered and readable: exactly what was written.
        if let (true, Ok(Some(record))) = (unchanged, &loaded) {
            assert_eq!(&record.payload[..], &payload[..]);
            assert_eq!(record.version, version);
            assert_eq!(record.tokens, tokens);
        }
        // Altered bytes may rename the meta's prefix: what was written says nothing then.
        let written = if unchanged { written.as_ref() } else { None };
        check(Value::BulkString(value), pttl, reader, written);
    }
    Input::Fields {
        d,
        m,
        v,
        c,
        t,
        pttl,
        reader,
    } => {
        let (m, written) = meta(m);
        let t = match t {
            Tokens::Hex(tokens) => Value::BulkString(
                tokens
                    .iter()
                    .map(|t| format!("{t:016x}"))
                    .collect::<String>()
                    .into_bytes(),
            ),
            Tokens::Raw(f) => field(f),
        };
        let pttl = match pttl {
            Pttl::Millis(ms) => Value::Int(i64::from(ms)),
            Pttl::NoExpiry => Value::Int(-1),
            Pttl::Gone => Value::Int(-2),
            Pttl::Raw(f) => field(f),
        };
        let hmget = Value::Array(vec![field(d), m, number(v), number(c), t]);
        check(hmget, pttl, prefix(reader), written.as_ref());
    }
});
