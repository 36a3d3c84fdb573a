//! Decoding any stored state into JSON, whatever its Rust type: the envelope body is
//! MessagePack written with `rmp_serde::to_vec_named`, so maps keep their field names and a
//! self-describing decode gives the state's structure back.
//!
//! [`JsonState`] is `serde_json::Value` with a more forgiving `Deserialize`: MessagePack map
//! keys that are not strings (integers, booleans) become their JSON text, byte strings become
//! arrays of numbers, and non-finite floats become strings, so no valid MessagePack body is
//! refused for not being JSON.

use std::fmt;

use serde::{
    Deserialize, Deserializer,
    de::{MapAccess, SeqAccess, Visitor},
};
use serde_json::{Map, Number, Value};
use session_core::{Codec, Result, SessionId};

/// A state decoded into JSON.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JsonState(pub(crate) Value);

/// Decodes the envelope `payload` of session `id` into JSON. Errors are
/// [`session_core::Error::Corrupt`] (bad header, truncated or trailing bytes, not
/// MessagePack) or `TooLarge` over `codec`'s limit.
pub(crate) fn decode(codec: &Codec, id: &SessionId, payload: &[u8]) -> Result<Value> {
    codec.decode::<JsonState>(id, payload).map(|s| s.0)
}

impl<'de> Deserialize<'de> for JsonState {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor).map(JsonState)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any MessagePack value")
    }

    fn visit_bool<E>(self, v: bool) -> std::result::Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> std::result::Result<Value, E> {
        Ok(Number::from_f64(v).map_or_else(|| Value::String(v.to_string()), Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> std::result::Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> std::result::Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_bytes<E>(self, v: &[u8]) -> std::result::Result<Value, E> {
        Ok(Value::Array(v.iter().map(|&b| Value::from(b)).collect()))
    }

    fn visit_none<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(JsonState(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some((JsonState(key), JsonState(value))) = map.next_entry()? {
            let key = match key {
                Value::String(s) => s,
                other => other.to_string(),
            };
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Serialize;
    use serde_json::json;

    use super::*;

    #[derive(Serialize)]
    enum Phase {
        NewProblem,
        Trying { attempt: u32 },
    }

    #[derive(Serialize)]
    struct Agent {
        state: Phase,
        history: Vec<(String, String)>,
        flags: BTreeMap<u32, bool>,
        problem: Option<String>,
        score: f64,
    }

    fn id() -> SessionId {
        SessionId::new("s-1").unwrap()
    }

    #[test]
    fn any_named_state_decodes_to_json() {
        let codec = Codec::default();
        let agent = Agent {
            state: Phase::Trying { attempt: 2 },
            history: vec![("user".into(), "it broke".into())],
            flags: BTreeMap::from([(7, true)]),
            problem: None,
            score: 0.5,
        };
        let bytes = codec.encode(&id(), &agent).unwrap();
        assert_eq!(
            decode(&codec, &id(), &bytes).unwrap(),
            json!({
                "state": {"Trying": {"attempt": 2}},
                "history": [["user", "it broke"]],
                "flags": {"7": true},
                "problem": null,
                "score": 0.5,
            })
        );
        let unit = codec.encode(&id(), &Phase::NewProblem).unwrap();
        assert_eq!(decode(&codec, &id(), &unit).unwrap(), json!("NewProblem"));
    }

    #[test]
    fn corrupt_payloads_are_errors_not_panics() {
        let codec = Codec::default();
        let good = codec.encode(&id(), &json!({"a": 1})).unwrap();
        for bad in [
            &b"{}"[..],
            &good[..good.len() - 1],
            &[good.as_ref(), &[0xc0]].concat(),
        ] {
            let e = decode(&codec, &id(), bad).unwrap_err();
            assert_eq!(e.kind(), "corrupt", "{e}");
        }
    }
}
