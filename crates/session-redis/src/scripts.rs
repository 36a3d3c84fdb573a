//! The Lua script every write runs: condition check, HSET, PEXPIRE in one atomic round trip.

use redis::{Script, Value};
use session_core::{Condition, Error, Result, SessionId, Timestamp, WriteOutcome};

use crate::layout;

/// `KEYS[1]`: the session key.
/// `ARGV`: condition (`any`, `absent`, `version`, `unchanged`), expected version (decimal, or
/// empty), payload, meta, now (ms since the epoch, for `c` on create), TTL in ms, expected
/// incarnation (for `unchanged`, else empty), the incarnation for a new session (a random
/// non-zero number the client drew; used only when the session is created).
///
/// Replies:
/// - `{"ok", new_version, created_at, incarnation}` after a write;
/// - `{"conflict"}` when the condition failed on an absent session, or
///   `{"conflict", HMGET d m v c i, PTTL}` with the current record, read in the same atomic
///   step, so that a compare-and-set loop goes on without another round trip;
/// - `{"corrupt", reason}` (the key holds another type, or `v` is not a number), writing nothing.
///
/// `unchanged` compares the incarnation `i` only when the hash has one: a hash without it (by
/// hand, or from an older layout) reads as incarnation 0, which `i` could never match. A write
/// gives such a hash the fields it lacks (`c`, `i`).
///
/// A missing `v` on an existing key is corrupt too, so that a stray hash can never be mistaken
/// for "absent" and silently overwritten. Versions are formatted with `%.0f`: Lua 5.1's
/// `tostring` would switch to exponent notation from 1e14 on. A version of 2^53 or more is
/// corrupt: Lua numbers are doubles, so it could not grow by exactly one (2^53 + 1 is 2^53,
/// which would let two writers at the same version through, and larger ones reply in a form
/// that does not parse back).
pub(crate) const SAVE_LUA: &str = r#"
local key = KEYS[1]
local cur = redis.pcall('HMGET', key, 'v', 'c', 'i')
if cur.err then
  return {'corrupt', cur.err}
end
local v, c, inc = cur[1], cur[2], cur[3]
local version = false
if v then
  if not string.match(v, '^%d+$') then
    return {'corrupt', 'field v is not a version number'}
  end
  version = tonumber(v)
  if version >= 9007199254740992 then
    return {'corrupt', 'field v is too large to be incremented exactly'}
  end
elseif redis.call('EXISTS', key) == 1 then
  return {'corrupt', 'the session hash has no version field v'}
end
local mode = ARGV[1]
local allowed = true
if mode == 'absent' then
  allowed = not version
elseif mode == 'version' then
  allowed = version and version == tonumber(ARGV[2])
elseif mode == 'unchanged' then
  -- A hash without `i` (written by hand, or by an older layout) has no incarnation to
  -- compare: readers report 0, so only the version can be checked. The write then gives it one.
  allowed = version and version == tonumber(ARGV[2]) and (not inc or inc == ARGV[7])
end
if not allowed then
  if not version then return {'conflict'} end
  return {'conflict', redis.call('HMGET', key, 'd', 'm', 'v', 'c', 'i'), redis.call('PTTL', key)}
end
local new = string.format('%.0f', (version or 0) + 1)
if version and c and inc then
  redis.call('HSET', key, 'd', ARGV[3], 'm', ARGV[4], 'v', new)
else
  c = c or ARGV[5]
  inc = inc or ARGV[8]
  redis.call('HSET', key, 'd', ARGV[3], 'm', ARGV[4], 'v', new, 'c', c, 'i', inc)
end
redis.call('PEXPIRE', key, ARGV[6])
return {'ok', new, c, inc}
"#;

/// The compiled save script (its SHA1 is computed once).
pub(crate) fn save_script() -> Script {
    Script::new(SAVE_LUA)
}

/// The condition as the script's arguments: mode, expected version, expected incarnation.
pub(crate) fn condition_args(condition: Condition) -> (&'static str, String, String) {
    match condition {
        Condition::Any => ("any", String::new(), String::new()),
        Condition::IfAbsent => ("absent", String::new(), String::new()),
        Condition::IfVersion(v) => ("version", v.to_string(), String::new()),
        Condition::IfUnchanged {
            version,
            incarnation,
        } => ("unchanged", version.to_string(), incarnation.to_string()),
    }
}

/// Turns the script's reply into a write outcome, or a corrupt-record error.
pub(crate) fn write_outcome(id: &SessionId, reply: Value) -> Result<WriteOutcome> {
    let unexpected = |what: &str| Error::Backend {
        backend: crate::errors::BACKEND,
        reason: format!("saving session {id}: unexpected script reply ({what})"),
        source: None,
    };
    let Value::Array(items) = reply else {
        return Err(unexpected("not an array"));
    };
    let mut items = items.into_iter();
    let status = text(items.next()).ok_or_else(|| unexpected("no status"))?;
    let number = |v: Option<Value>| text(v).and_then(|s| s.parse::<u64>().ok());
    match status.as_str() {
        "ok" => {
            let version = number(items.next()).ok_or_else(|| unexpected("no version"))?;
            let created_at = number(items.next())
                .map(Timestamp::from_millis)
                .ok_or_else(|| unexpected("no creation time"))?;
            let incarnation = number(items.next()).ok_or_else(|| unexpected("no incarnation"))?;
            Ok(WriteOutcome::Written {
                version,
                created_at,
                incarnation,
            })
        }
        "conflict" => {
            let current = match (items.next(), items.next()) {
                (Some(hmget), Some(pttl)) => layout::record_from_replies(id, hmget, pttl)?,
                _ => None,
            };
            Ok(WriteOutcome::Rejected { current })
        }
        "corrupt" => {
            let reason = text(items.next()).unwrap_or_default();
            let reason = if reason.starts_with("WRONGTYPE") {
                "the key holds another Redis type, not a session hash (delete it to reuse the id)"
                    .to_owned()
            } else {
                reason
            };
            Err(Error::corrupt(id, reason))
        }
        other => Err(unexpected(other)),
    }
}

fn text(v: Option<Value>) -> Option<String> {
    match v? {
        Value::BulkString(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        Value::SimpleString(s) => Some(s),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> SessionId {
        SessionId::new("s").unwrap()
    }

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn outcomes() {
        let ok = Value::Array(vec![
            bulk("ok"),
            bulk("3"),
            bulk("1700000000000"),
            bulk("77"),
        ]);
        assert_eq!(
            write_outcome(&id(), ok).unwrap(),
            WriteOutcome::Written {
                version: 3,
                created_at: Timestamp::from_millis(1_700_000_000_000),
                incarnation: 77,
            }
        );
        let absent = Value::Array(vec![bulk("conflict")]);
        assert_eq!(
            write_outcome(&id(), absent).unwrap(),
            WriteOutcome::Rejected { current: None }
        );
        let meta = layout::encode_meta(Timestamp::from_millis(5), 1, &Default::default());
        let current = Value::Array(vec![
            bulk("conflict"),
            Value::Array(vec![
                bulk("p"),
                Value::BulkString(meta),
                bulk("5"),
                bulk("4"),
                bulk("99"),
            ]),
            Value::Int(60_000),
        ]);
        match write_outcome(&id(), current).unwrap() {
            WriteOutcome::Rejected {
                current: Some(record),
            } => {
                assert_eq!(record.version, 5);
                assert_eq!(&record.payload[..], b"p");
                assert_eq!(record.meta.created_at, Timestamp::from_millis(4));
                assert_eq!(record.meta.incarnation, 99);
            }
            other => panic!("{other:?}"),
        }
        let wrongtype = Value::Array(vec![
            bulk("corrupt"),
            bulk("WRONGTYPE Operation against a key"),
        ]);
        match write_outcome(&id(), wrongtype) {
            Err(Error::Corrupt { reason, .. }) => assert!(reason.contains("another Redis type")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            write_outcome(&id(), Value::Okay),
            Err(Error::Backend { .. })
        ));
        assert!(matches!(
            write_outcome(&id(), Value::Array(vec![bulk("ok")])),
            Err(Error::Backend { .. })
        ));
    }

    #[test]
    fn conditions_become_arguments() {
        let none = String::new;
        assert_eq!(condition_args(Condition::Any), ("any", none(), none()));
        assert_eq!(
            condition_args(Condition::IfAbsent),
            ("absent", none(), none())
        );
        assert_eq!(
            condition_args(Condition::IfVersion(42)),
            ("version", "42".into(), none())
        );
        assert_eq!(
            condition_args(Condition::IfUnchanged {
                version: 7,
                incarnation: 99
            }),
            ("unchanged", "7".into(), "99".into())
        );
    }
}
