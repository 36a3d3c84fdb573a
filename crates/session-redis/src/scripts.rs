//! The Lua script every save runs: version check, HSET, PEXPIRE in one atomic round trip.

use redis::{Script, Value};
use session_core::{Condition, Error, Result, SessionId};

/// `KEYS[1]`: the session key.
/// `ARGV`: condition (`any`, `absent`, `version`), expected version (decimal, or empty),
/// payload, meta, now (ms since the epoch, for `c` on create), TTL in ms.
///
/// Replies `{"ok", new_version}`, `{"conflict", current_version_or_nil}`, or
/// `{"corrupt", reason}` (the key holds another type, or `v` is not a number) and then writes
/// nothing. A missing `v` on an existing key is corrupt too, so that a stray hash can never be
/// mistaken for "absent" and silently overwritten. Versions are formatted with `%.0f`: Lua 5.1's
/// `tostring` would switch to exponent notation from 1e14 on.
pub(crate) const SAVE_LUA: &str = r#"
local key = KEYS[1]
local cur = redis.pcall('HGET', key, 'v')
if type(cur) == 'table' and cur.err then
  return {'corrupt', cur.err}
end
local version = false
if cur then
  if not string.match(cur, '^%d+$') then
    return {'corrupt', 'field v is not a version number'}
  end
  version = tonumber(cur)
elseif redis.call('EXISTS', key) == 1 then
  return {'corrupt', 'the session hash has no version field v'}
end
local mode = ARGV[1]
if mode == 'absent' then
  if version then return {'conflict', cur} end
elseif mode == 'version' then
  if not version or version ~= tonumber(ARGV[2]) then return {'conflict', cur} end
end
local new = string.format('%.0f', (version or 0) + 1)
if version then
  redis.call('HSET', key, 'd', ARGV[3], 'm', ARGV[4], 'v', new)
else
  redis.call('HSET', key, 'd', ARGV[3], 'm', ARGV[4], 'v', new, 'c', ARGV[5])
end
redis.call('PEXPIRE', key, ARGV[6])
return {'ok', new}
"#;

/// The compiled save script (its SHA1 is computed once).
pub(crate) fn save_script() -> Script {
    Script::new(SAVE_LUA)
}

/// The condition as the script's first two arguments.
pub(crate) fn condition_args(condition: Condition) -> (&'static str, String) {
    match condition {
        Condition::Any => ("any", String::new()),
        Condition::IfAbsent => ("absent", String::new()),
        Condition::IfVersion(v) => ("version", v.to_string()),
    }
}

/// Turns the script's reply into the new version, a conflict, or a corrupt-record error.
pub(crate) fn save_outcome(id: &SessionId, condition: Condition, reply: Value) -> Result<u64> {
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
    let value = text(items.next());
    let number = |s: &Option<String>| s.as_deref().and_then(|s| s.parse::<u64>().ok());
    match status.as_str() {
        "ok" => number(&value).ok_or_else(|| unexpected("no version")),
        "conflict" => Err(Error::Conflict {
            id: id.clone(),
            expected: match condition {
                Condition::IfVersion(v) => Some(v),
                Condition::IfAbsent | Condition::Any => None,
            },
            actual: number(&value),
        }),
        "corrupt" => {
            let reason = value.unwrap_or_default();
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

    fn reply(items: &[Option<&str>]) -> Value {
        Value::Array(
            items
                .iter()
                .map(|i| i.map_or(Value::Nil, |s| Value::BulkString(s.as_bytes().to_vec())))
                .collect(),
        )
    }

    #[test]
    fn outcomes() {
        assert_eq!(
            save_outcome(&id(), Condition::Any, reply(&[Some("ok"), Some("3")])).unwrap(),
            3
        );
        match save_outcome(
            &id(),
            Condition::IfVersion(2),
            reply(&[Some("conflict"), Some("5")]),
        ) {
            Err(Error::Conflict {
                expected: Some(2),
                actual: Some(5),
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        match save_outcome(&id(), Condition::IfAbsent, reply(&[Some("conflict"), None])) {
            Err(Error::Conflict {
                expected: None,
                actual: None,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        match save_outcome(
            &id(),
            Condition::Any,
            reply(&[Some("corrupt"), Some("WRONGTYPE Operation against a key")]),
        ) {
            Err(Error::Corrupt { reason, .. }) => assert!(reason.contains("another Redis type")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            save_outcome(&id(), Condition::Any, Value::Okay),
            Err(Error::Backend { .. })
        ));
    }

    #[test]
    fn conditions_become_arguments() {
        assert_eq!(condition_args(Condition::Any), ("any", String::new()));
        assert_eq!(
            condition_args(Condition::IfAbsent),
            ("absent", String::new())
        );
        assert_eq!(
            condition_args(Condition::IfVersion(42)),
            ("version", "42".into())
        );
    }
}
