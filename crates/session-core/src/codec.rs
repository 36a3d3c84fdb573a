//! [`Codec`]: the versioned envelope around a session's MessagePack encoding.
//!
//! Layout: `[MAGIC, FORMAT_V1, flags, body...]` where body is `rmp_serde::to_vec_named(&state)`.
//! The magic byte `0xC1` is the one byte MessagePack never uses, so a bare MessagePack value
//! (or JSON text) can never pass for an envelope. Named encoding keeps old sessions readable
//! when the state type gains fields marked `#[serde(default)]`.

use bytes::Bytes;
use serde::{Serialize, de::DeserializeOwned};

use crate::{Error, Result, SessionId};

/// First byte of every envelope.
pub const MAGIC: u8 = 0xC1;
/// The format this version writes and reads.
pub const FORMAT_V1: u8 = 1;
/// Flag bit: the body is compressed (reserved; not written by this version).
pub const FLAG_COMPRESSED: u8 = 0b0000_0001;
/// Flag bit: the body is encrypted (reserved; not written by this version).
pub const FLAG_ENCRYPTED: u8 = 0b0000_0010;
/// Bytes before the body.
pub const HEADER_LEN: usize = 3;
/// Default largest encoded session: 1 MiB.
pub const DEFAULT_MAX_SIZE: usize = 1024 * 1024;

/// Encodes states into envelopes and back, enforcing a size limit.
///
/// ```
/// use session_core::{Codec, SessionId};
///
/// let codec = Codec::default();
/// let id = SessionId::new("user-1")?;
/// let bytes = codec.encode(&id, &vec!["hello".to_string()])?;
/// let back: Vec<String> = codec.decode(&id, &bytes)?;
/// assert_eq!(back, ["hello"]);
/// assert!(codec.decode::<Vec<String>>(&id, &bytes[..bytes.len() - 1]).is_err());
/// # Ok::<(), session_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codec {
    max_size: usize,
}

impl Default for Codec {
    fn default() -> Self {
        Self {
            max_size: DEFAULT_MAX_SIZE,
        }
    }
}

impl Codec {
    /// A codec that refuses envelopes over `max_size` bytes (at least the header).
    pub fn with_max_size(max_size: usize) -> Self {
        Self {
            max_size: max_size.max(HEADER_LEN + 1),
        }
    }

    /// The largest envelope accepted, in bytes.
    pub fn max_size(&self) -> usize {
        self.max_size
    }

    /// Encodes `value` for session `id`.
    ///
    /// Errors: [`Error::Encode`] when serialization fails, [`Error::TooLarge`] over the limit.
    pub fn encode<T: Serialize + ?Sized>(&self, id: &SessionId, value: &T) -> Result<Bytes> {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&[MAGIC, FORMAT_V1, 0]);
        rmp_serde::encode::write_named(&mut buf, value).map_err(|e| Error::Encode {
            id: id.clone(),
            reason: e.to_string(),
        })?;
        if buf.len() > self.max_size {
            return Err(Error::TooLarge {
                id: id.clone(),
                size: buf.len(),
                limit: self.max_size,
            });
        }
        Ok(Bytes::from(buf))
    }

    /// Decodes an envelope of session `id`.
    ///
    /// Errors: [`Error::TooLarge`] over the limit; [`Error::Corrupt`] for a wrong magic byte,
    /// an unknown format or flag, truncated or trailing bytes, or a body that does not fit `T`.
    pub fn decode<T: DeserializeOwned>(&self, id: &SessionId, bytes: &[u8]) -> Result<T> {
        if bytes.len() > self.max_size {
            return Err(Error::TooLarge {
                id: id.clone(),
                size: bytes.len(),
                limit: self.max_size,
            });
        }
        let body = Self::body(id, bytes)?;
        let mut de = rmp_serde::Deserializer::new(body);
        let value = T::deserialize(&mut de)
            .map_err(|e| Error::corrupt(id, format!("state does not decode: {e}")))?;
        let rest = de.into_inner();
        if !rest.is_empty() {
            return Err(Error::corrupt(
                id,
                format!("{} unexpected bytes after the state", rest.len()),
            ));
        }
        Ok(value)
    }

    /// Checks the header of an envelope and returns its body.
    pub fn body<'a>(id: &SessionId, bytes: &'a [u8]) -> Result<&'a [u8]> {
        let [magic, format, flags, body @ ..] = bytes else {
            return Err(Error::corrupt(
                id,
                format!(
                    "{} bytes is shorter than the {HEADER_LEN}-byte envelope header",
                    bytes.len()
                ),
            ));
        };
        if *magic != MAGIC {
            return Err(Error::corrupt(
                id,
                format!(
                    "not a session envelope (first byte 0x{magic:02x}, expected 0x{MAGIC:02x})"
                ),
            ));
        }
        if *format != FORMAT_V1 {
            return Err(Error::corrupt(
                id,
                format!("unknown envelope format {format} (this version reads {FORMAT_V1})"),
            ));
        }
        if *flags != 0 {
            let what = match *flags {
                FLAG_COMPRESSED => "compressed",
                FLAG_ENCRYPTED => "encrypted",
                f if f == FLAG_COMPRESSED | FLAG_ENCRYPTED => "compressed and encrypted",
                _ => "unknown flags",
            };
            return Err(Error::corrupt(
                id,
                format!("envelope flags 0x{flags:02x} ({what}) are not supported by this build"),
            ));
        }
        if body.is_empty() {
            return Err(Error::corrupt(id, "the envelope has no body"));
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Agent {
        state: String,
        current_attempt: u32,
        max_attempts: u32,
        conversation_history: Vec<(String, String)>,
        use_rag: bool,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct AgentV2 {
        state: String,
        current_attempt: u32,
        max_attempts: u32,
        conversation_history: Vec<(String, String)>,
        use_rag: bool,
        #[serde(default)]
        use_web_search: bool,
    }

    fn id() -> SessionId {
        SessionId::new("s-1").unwrap()
    }

    fn agent_strategy() -> impl Strategy<Value = Agent> {
        (
            "[a-z_]{0,20}",
            any::<u32>(),
            any::<u32>(),
            proptest::collection::vec((".{0,30}", ".{0,80}"), 0..12),
            any::<bool>(),
        )
            .prop_map(
                |(state, current_attempt, max_attempts, conversation_history, use_rag)| Agent {
                    state,
                    current_attempt,
                    max_attempts,
                    conversation_history,
                    use_rag,
                },
            )
    }

    #[test]
    fn old_sessions_stay_readable_when_fields_are_added() {
        let codec = Codec::default();
        let old = Agent {
            state: "diagnosing".into(),
            current_attempt: 1,
            max_attempts: 3,
            conversation_history: vec![("user".into(), "it broke".into())],
            use_rag: true,
        };
        let bytes = codec.encode(&id(), &old).unwrap();
        let new: AgentV2 = codec.decode(&id(), &bytes).unwrap();
        assert_eq!(new.state, "diagnosing");
        assert!(!new.use_web_search);
    }

    #[test]
    fn oversized_states_are_refused_on_both_sides() {
        let codec = Codec::with_max_size(64);
        let big = "x".repeat(100);
        match codec.encode(&id(), &big) {
            Err(Error::TooLarge {
                size, limit: 64, ..
            }) => assert!(size > 100),
            other => panic!("{other:?}"),
        }
        let bytes = Codec::default().encode(&id(), &big).unwrap();
        assert!(matches!(
            codec.decode::<String>(&id(), &bytes),
            Err(Error::TooLarge { .. })
        ));
    }

    #[test]
    fn header_errors_name_the_problem_and_the_session() {
        let codec = Codec::default();
        let good = codec.encode(&id(), &1u8).unwrap();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![], "shorter"),
            (b"{\"state\":1}".to_vec(), "not a session envelope"),
            (vec![MAGIC, 9, 0, 1], "unknown envelope format 9"),
            (vec![MAGIC, FORMAT_V1, FLAG_ENCRYPTED, 1], "encrypted"),
            (vec![MAGIC, FORMAT_V1, 0x80, 1], "unknown flags"),
            (vec![MAGIC, FORMAT_V1, 0], "no body"),
            ([&good[..], &[0]].concat(), "unexpected bytes"),
        ];
        for (bytes, expected) in cases {
            match codec.decode::<u8>(&id(), &bytes) {
                Err(e @ Error::Corrupt { .. }) => {
                    let text = e.to_string();
                    assert!(text.contains(expected), "{text}");
                    assert!(text.contains("s-1"), "{text}");
                }
                other => panic!("{bytes:?}: {other:?}"),
            }
        }
    }

    proptest! {
        #[test]
        fn round_trip(agent in agent_strategy()) {
            let codec = Codec::default();
            let bytes = codec.encode(&id(), &agent).unwrap();
            prop_assert_eq!(bytes[0], MAGIC);
            let back: Agent = codec.decode(&id(), &bytes).unwrap();
            prop_assert_eq!(back, agent);
        }

        #[test]
        fn every_truncation_is_rejected(agent in agent_strategy(), cut in any::<prop::sample::Index>()) {
            let codec = Codec::default();
            let bytes = codec.encode(&id(), &agent).unwrap();
            let cut = cut.index(bytes.len());
            let result = codec.decode::<Agent>(&id(), &bytes[..cut]);
            prop_assert!(matches!(result, Err(Error::Corrupt { .. })), "{:?}", result);
        }

        #[test]
        fn altered_envelopes_never_panic_and_header_changes_are_rejected(
            agent in agent_strategy(),
            pos in any::<prop::sample::Index>(),
            xor in 1u8..,
        ) {
            let codec = Codec::default();
            let mut bytes = codec.encode(&id(), &agent).unwrap().to_vec();
            let pos = pos.index(bytes.len());
            bytes[pos] ^= xor;
            let result = codec.decode::<Agent>(&id(), &bytes);
            if pos < HEADER_LEN {
                prop_assert!(matches!(result, Err(Error::Corrupt { .. })), "{:?}", result);
            } else if let Ok(back) = result {
                // A flipped byte inside a string or number can still decode; it must then
                // differ from the original, never silently equal it.
                prop_assert_ne!(back, agent);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Codec::default().decode::<Agent>(&id(), &bytes);
            let _ = Codec::default().decode::<serde_json::Value>(&id(), &bytes);
        }
    }
}
