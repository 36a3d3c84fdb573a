//! [`Codec`]: the versioned envelope around a session's MessagePack encoding.
//!
//! Layout: `[MAGIC, FORMAT_V1, flags, body...]`. The magic byte `0xC1` is the one byte
//! MessagePack never uses, so a bare MessagePack value (or JSON text) can never pass for an
//! envelope. Named encoding keeps old sessions readable when the state type gains fields marked
//! `#[serde(default)]`.
//!
//! The flags say what the body is:
//!
//! | flags | body |
//! |---|---|
//! | `0` | `rmp_serde::to_vec_named(&state)`, the MessagePack itself |
//! | [`FLAG_COMPRESSED`] | the MessagePack's length as a little-endian `u32`, then the MessagePack as one LZ4 block (the [LZ4 block format], no frame, no checksum: `lz4_flex::block::compress_prepend_size`) |
//!
//! Every codec reads both, whatever its [`Compression`]: switching compression on or off never
//! makes a stored session unreadable. Any other flag ([`FLAG_ENCRYPTED`], unknown bits) is
//! refused as [`Error::Corrupt`].
//!
//! [LZ4 block format]: https://github.com/lz4/lz4/blob/dev/doc/lz4_Block_format.md

use std::{borrow::Cow, fmt};

use bytes::Bytes;
use serde::{Serialize, de::DeserializeOwned};

use crate::{Error, Result, SessionId};

/// First byte of every envelope.
pub const MAGIC: u8 = 0xC1;
/// The format this version writes and reads.
pub const FORMAT_V1: u8 = 1;
/// Flag bit: the body is compressed: its uncompressed length (`u32`, little endian), then one
/// LZ4 block.
pub const FLAG_COMPRESSED: u8 = 0b0000_0001;
/// Flag bit: the body is encrypted (reserved; not written nor read by this version).
pub const FLAG_ENCRYPTED: u8 = 0b0000_0010;
/// Bytes before the body.
pub const HEADER_LEN: usize = 3;
/// Default largest encoded session: 1 MiB.
pub const DEFAULT_MAX_SIZE: usize = 1024 * 1024;
/// The default threshold of [`Compression::Lz4`]: bodies of at least 1 KiB are compressed.
pub const DEFAULT_COMPRESSION_MIN_BYTES: usize = 1024;

/// Bytes of the uncompressed-length prefix of a compressed body.
const SIZE_PREFIX_LEN: usize = 4;
/// The most an LZ4 block can expand: a sequence of `n` input bytes yields at most `255 * n`
/// output bytes (each extra match-length byte adds 255). A declared length beyond this is
/// corrupt whatever the limit.
const LZ4_MAX_RATIO: usize = 255;

/// Whether and when a [`Codec`] compresses the bodies it writes. Reading always accepts
/// compressed and uncompressed envelopes alike.
///
/// The default is [`Off`](Self::Off): LZ4 (safe Rust, `lz4_flex`) costs up to about 2 µs of
/// CPU per KB written and 0.5-1 µs per KB read, for envelopes 25-50% smaller on chat-like text
/// (80-90% on repetitive states). Turn it on ([`Compression::LZ4`]) when Redis memory or network bytes
/// matter more than client CPU, once every reader of the sessions is a version that reads
/// compressed envelopes (older versions refuse them as corrupt).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Compression {
    /// Never compress.
    Off,
    /// LZ4 block compression of bodies (the MessagePack) of at least `min_bytes` bytes. A body
    /// whose compressed envelope would not be smaller is written uncompressed.
    Lz4 {
        /// The smallest body compressed, in bytes.
        min_bytes: usize,
    },
}

impl Compression {
    /// LZ4 for bodies of at least [`DEFAULT_COMPRESSION_MIN_BYTES`] bytes: what the setting
    /// `SESSION_COMPRESSION=lz4` means without a threshold.
    pub const LZ4: Self = Self::Lz4 {
        min_bytes: DEFAULT_COMPRESSION_MIN_BYTES,
    };

    /// Whether a body of `len` bytes is worth trying to compress.
    fn applies_to(self, len: usize) -> bool {
        match self {
            Self::Off => false,
            Self::Lz4 { min_bytes } => len >= min_bytes,
        }
    }
}

impl Default for Compression {
    /// [`Compression::Off`].
    fn default() -> Self {
        Self::Off
    }
}

impl fmt::Display for Compression {
    /// `off`, or `lz4 (bodies of at least N bytes)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Off => f.write_str("off"),
            Self::Lz4 { min_bytes } => write!(f, "lz4 (bodies of at least {min_bytes} bytes)"),
        }
    }
}

/// Encodes states into envelopes and back, enforcing a size limit, compressing large bodies.
///
/// The size limit counts the envelope *uncompressed*: a state is accepted or refused the same
/// with compression on or off, what is stored is never larger, and a small compressed envelope
/// cannot expand past the limit when it is read.
///
/// ```
/// use session_core::{Codec, Compression, SessionId};
///
/// let codec = Codec::default(); // no compression
/// let id = SessionId::new("user-1")?;
/// let bytes = codec.encode(&id, &vec!["hello".to_string()])?;
/// let back: Vec<String> = codec.decode(&id, &bytes)?;
/// assert_eq!(back, ["hello"]);
/// assert!(codec.decode::<Vec<String>>(&id, &bytes[..bytes.len() - 1]).is_err());
///
/// // LZ4 for bodies of 1 KiB and more; every codec reads both kinds of envelope.
/// let lz4 = Codec::default().with_compression(Compression::LZ4);
/// let history = vec!["the printer shows error E042 again".to_string(); 100];
/// let small = lz4.encode(&id, &history)?;
/// let plain = codec.encode(&id, &history)?;
/// assert!(small.len() < plain.len() / 4);
/// assert_eq!(codec.decode::<Vec<String>>(&id, &small)?, history);
/// assert_eq!(lz4.decode::<Vec<String>>(&id, &plain)?, history);
/// # Ok::<(), session_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codec {
    max_size: usize,
    compression: Compression,
}

impl Default for Codec {
    /// [`DEFAULT_MAX_SIZE`], no compression.
    fn default() -> Self {
        Self::new(DEFAULT_MAX_SIZE, Compression::Off)
    }
}

impl Codec {
    /// A codec that refuses envelopes over `max_size` bytes (at least the header and one
    /// byte) and writes with `compression`.
    pub fn new(max_size: usize, compression: Compression) -> Self {
        Self {
            max_size: max_size.max(HEADER_LEN + 1),
            compression,
        }
    }

    /// A codec that refuses envelopes over `max_size` bytes (at least the header and one
    /// byte), without compression. To change the limit of a codec and keep its compression:
    /// `Codec::new(max_size, codec.compression())`.
    pub fn with_max_size(max_size: usize) -> Self {
        Self::new(max_size, Compression::Off)
    }

    /// This codec, writing with `compression` (reading is unchanged: it accepts both).
    #[must_use]
    pub fn with_compression(self, compression: Compression) -> Self {
        Self {
            compression,
            ..self
        }
    }

    /// The largest envelope accepted, in bytes, counted uncompressed.
    pub fn max_size(&self) -> usize {
        self.max_size
    }

    /// How this codec compresses what it writes.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Encodes `value` for session `id`: compressed when the policy says so and the envelope
    /// gets smaller, else as plain MessagePack.
    ///
    /// Errors: [`Error::Encode`] when serialization fails, [`Error::TooLarge`] when the
    /// uncompressed envelope is over the limit (whether or not it would be compressed).
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
        Ok(Bytes::from(self.compress(buf)))
    }

    /// `plain` (a whole uncompressed envelope) compressed when the policy applies and that
    /// makes it smaller; else `plain` itself.
    fn compress(&self, plain: Vec<u8>) -> Vec<u8> {
        let body = &plain[HEADER_LEN..];
        if !self.compression.applies_to(body.len()) {
            return plain;
        }
        // The prefix is 32 bits: a body over 4 GiB (only with such a limit) stays plain.
        let Ok(declared) = u32::try_from(body.len()) else {
            return plain;
        };
        let start = HEADER_LEN + SIZE_PREFIX_LEN;
        let mut out = vec![0; start + lz4_flex::block::get_maximum_output_size(body.len())];
        out[..HEADER_LEN].copy_from_slice(&[MAGIC, FORMAT_V1, FLAG_COMPRESSED]);
        out[HEADER_LEN..start].copy_from_slice(&declared.to_le_bytes());
        match lz4_flex::block::compress_into(body, &mut out[start..]) {
            Ok(len) if start + len < plain.len() => {
                out.truncate(start + len);
                // The buffer was sized for the worst case: give the rest back, since the
                // envelope may be kept (local copies, the memory store).
                out.shrink_to_fit();
                out
            }
            _ => plain,
        }
    }

    /// Decodes an envelope of session `id`, compressed or not.
    ///
    /// Errors: [`Error::TooLarge`] when the envelope, or the one it decompresses to, is over
    /// the limit; [`Error::Corrupt`] for a wrong magic byte, an unknown format or flag,
    /// truncated or trailing bytes, a compressed body that does not decompress to the length it
    /// declares, or a body that does not fit `T`.
    pub fn decode<T: DeserializeOwned>(&self, id: &SessionId, bytes: &[u8]) -> Result<T> {
        let body = self.decode_body(id, bytes)?;
        let mut de = rmp_serde::Deserializer::new(&body[..]);
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

    /// Checks an envelope of session `id`, compressed or not, and returns its MessagePack
    /// body: borrowed from `bytes` when it is stored uncompressed, decompressed otherwise.
    /// The body is not decoded (use [`decode`](Self::decode) for the state).
    ///
    /// A compressed body is decompressed only after its declared length has been checked
    /// against the limit (and against what LZ4 can expand its block to), so a hostile length
    /// allocates nothing.
    ///
    /// Errors: as [`decode`](Self::decode), but for the decoding of the state.
    pub fn decode_body<'a>(&self, id: &SessionId, bytes: &'a [u8]) -> Result<Cow<'a, [u8]>> {
        if bytes.len() > self.max_size {
            return Err(Error::TooLarge {
                id: id.clone(),
                size: bytes.len(),
                limit: self.max_size,
            });
        }
        let (flags, body) = header(id, bytes)?;
        match flags {
            0 => non_empty(id, body).map(Cow::Borrowed),
            FLAG_COMPRESSED => self.decompress(id, body).map(Cow::Owned),
            _ => Err(unsupported_flags(id, flags)),
        }
    }

    /// Checks the header of an *uncompressed* envelope and returns its body, borrowed; no size
    /// limit is applied.
    ///
    /// A compressed envelope has no borrowed MessagePack body: it is refused here with
    /// [`Error::Corrupt`] saying so. Use [`decode_body`](Self::decode_body) (either kind, with
    /// the limit) or [`decode`](Self::decode) for envelopes as stored.
    pub fn body<'a>(id: &SessionId, bytes: &'a [u8]) -> Result<&'a [u8]> {
        let (flags, body) = header(id, bytes)?;
        match flags {
            0 => non_empty(id, body),
            FLAG_COMPRESSED => Err(Error::corrupt(
                id,
                "the envelope is compressed (flags 0x01): Codec::body reads only uncompressed \
                 envelopes; Codec::decode_body decompresses",
            )),
            _ => Err(unsupported_flags(id, flags)),
        }
    }

    /// The MessagePack of a compressed body: `[u32 LE length][LZ4 block]`.
    fn decompress(&self, id: &SessionId, body: &[u8]) -> Result<Vec<u8>> {
        let Some((prefix, block)) = body.split_first_chunk::<SIZE_PREFIX_LEN>() else {
            return Err(Error::corrupt(
                id,
                format!(
                    "the compressed body ({} bytes) is shorter than its {SIZE_PREFIX_LEN}-byte \
                     length",
                    body.len()
                ),
            ));
        };
        let declared = usize::try_from(u32::from_le_bytes(*prefix)).unwrap_or(usize::MAX);
        if declared == 0 {
            return Err(Error::corrupt(id, "the envelope has no body"));
        }
        let most = block.len().saturating_mul(LZ4_MAX_RATIO);
        if declared > most {
            return Err(Error::corrupt(
                id,
                format!(
                    "the compressed body declares {declared} bytes, more than its {} bytes of \
                     LZ4 can hold (at most {most})",
                    block.len()
                ),
            ));
        }
        let size = HEADER_LEN.saturating_add(declared);
        if size > self.max_size {
            return Err(Error::TooLarge {
                id: id.clone(),
                size,
                limit: self.max_size,
            });
        }
        let mut out = vec![0; declared];
        let len = lz4_flex::block::decompress_into(block, &mut out).map_err(|e| {
            Error::corrupt(id, format!("the compressed body does not decompress: {e}"))
        })?;
        if len != declared {
            return Err(Error::corrupt(
                id,
                format!(
                    "the compressed body decompresses to {len} bytes, not the {declared} it declares"
                ),
            ));
        }
        Ok(out)
    }
}

/// Checks magic and format; returns the flags and the body.
fn header<'a>(id: &SessionId, bytes: &'a [u8]) -> Result<(u8, &'a [u8])> {
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
            format!("not a session envelope (first byte 0x{magic:02x}, expected 0x{MAGIC:02x})"),
        ));
    }
    if *format != FORMAT_V1 {
        return Err(Error::corrupt(
            id,
            format!("unknown envelope format {format} (this version reads {FORMAT_V1})"),
        ));
    }
    Ok((*flags, body))
}

fn non_empty<'a>(id: &SessionId, body: &'a [u8]) -> Result<&'a [u8]> {
    if body.is_empty() {
        return Err(Error::corrupt(id, "the envelope has no body"));
    }
    Ok(body)
}

/// The error for flags other than none and [`FLAG_COMPRESSED`].
fn unsupported_flags(id: &SessionId, flags: u8) -> Error {
    let what = if flags & !(FLAG_COMPRESSED | FLAG_ENCRYPTED) != 0 {
        "unknown flags"
    } else if flags == FLAG_ENCRYPTED {
        "encrypted"
    } else {
        "compressed and encrypted"
    };
    Error::corrupt(
        id,
        format!("envelope flags 0x{flags:02x} ({what}) are not supported by this build"),
    )
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

    fn plain() -> Codec {
        Codec::default().with_compression(Compression::Off)
    }

    /// Compresses every body that gets smaller, however short.
    fn eager() -> Codec {
        Codec::default().with_compression(Compression::Lz4 { min_bytes: 0 })
    }

    /// LZ4 with the default threshold.
    fn lz4() -> Codec {
        Codec::default().with_compression(Compression::LZ4)
    }

    /// The codecs every property runs with: plain, eager LZ4 and LZ4 from 1 KiB.
    fn codecs() -> [Codec; 3] {
        [plain(), eager(), lz4()]
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

    /// Agents whose messages are made of a few words, so that LZ4 has something to find.
    fn chat_strategy() -> impl Strategy<Value = Agent> {
        let word =
            prop::sample::select(&["error", "printer", "again", "the", "tray", "é", "🙂"][..]);
        let message = (
            prop::sample::select(&["user", "assistant"][..]),
            proptest::collection::vec(word, 0..60),
        )
            .prop_map(|(role, words)| (role.to_owned(), words.join(" ")));
        (any::<u32>(), proptest::collection::vec(message, 0..30)).prop_map(
            |(current_attempt, conversation_history)| Agent {
                state: "gathering_details".into(),
                current_attempt,
                max_attempts: 3,
                conversation_history,
                use_rag: false,
            },
        )
    }

    /// Either kind of agent: mostly incompressible text, or chat that compresses.
    fn any_agent() -> impl Strategy<Value = Agent> {
        prop_oneof![agent_strategy(), chat_strategy()]
    }

    /// A conversation whose text repeats the way chat does (same words, different sentences).
    fn chatty(messages: usize) -> Agent {
        let words = [
            "the",
            "printer",
            "shows",
            "error",
            "again",
            "after",
            "I",
            "replaced",
            "paper",
            "tray",
            "and",
            "restarted",
            "it",
            "twice",
            "driver",
            "cable",
            "job",
            "queue",
        ];
        Agent {
            state: "gathering_details".into(),
            current_attempt: 1,
            max_attempts: 3,
            conversation_history: (0..messages)
                .map(|i| {
                    let text: Vec<&str> = (0..30)
                        .map(|j| words[(i * 7 + j * j) % words.len()])
                        .collect();
                    (
                        if i % 2 == 0 { "user" } else { "assistant" }.into(),
                        text.join(" "),
                    )
                })
                .collect(),
            use_rag: true,
        }
    }

    fn expect_corrupt(result: Result<impl fmt::Debug>, expected: &str) {
        match result {
            Err(e @ Error::Corrupt { .. }) => {
                let text = e.to_string();
                assert!(text.contains(expected), "{text}");
                assert!(text.contains("s-1"), "{text}");
            }
            other => panic!("expected Corrupt with {expected:?}: {other:?}"),
        }
    }

    /// A compressed envelope around `block`, declaring `declared` bytes.
    fn compressed_envelope(declared: u32, block: &[u8]) -> Vec<u8> {
        [
            &[MAGIC, FORMAT_V1, FLAG_COMPRESSED][..],
            &declared.to_le_bytes(),
            block,
        ]
        .concat()
    }

    #[test]
    fn old_sessions_stay_readable_when_fields_are_added() {
        for codec in codecs() {
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
        let bytes = plain().encode(&id(), &big).unwrap();
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
            (
                vec![MAGIC, FORMAT_V1, FLAG_COMPRESSED | FLAG_ENCRYPTED, 1],
                "compressed and encrypted",
            ),
            (vec![MAGIC, FORMAT_V1, 0x80, 1], "unknown flags"),
            (vec![MAGIC, FORMAT_V1, 0x81, 1], "unknown flags"),
            (vec![MAGIC, FORMAT_V1, 0], "no body"),
            (
                vec![MAGIC, FORMAT_V1, FLAG_COMPRESSED],
                "shorter than its 4-byte length",
            ),
            (
                vec![MAGIC, FORMAT_V1, FLAG_COMPRESSED, 1, 0],
                "shorter than its 4-byte length",
            ),
            (compressed_envelope(0, &[0x10, 1]), "no body"),
            ([&good[..], &[0]].concat(), "unexpected bytes"),
        ];
        for (bytes, expected) in cases {
            expect_corrupt(codec.decode::<u8>(&id(), &bytes), expected);
        }
    }

    #[test]
    fn large_bodies_are_compressed_and_read_back_by_every_codec() {
        let agent = chatty(40);
        let small = lz4().encode(&id(), &agent).unwrap();
        let big = plain().encode(&id(), &agent).unwrap();
        assert_eq!(small[..HEADER_LEN], [MAGIC, FORMAT_V1, FLAG_COMPRESSED]);
        assert_eq!(big[..HEADER_LEN], [MAGIC, FORMAT_V1, 0]);
        assert!(
            small.len() * 2 < big.len(),
            "{} vs {}",
            small.len(),
            big.len()
        );
        // Old (plain) and new (compressed) envelopes are read alike, whatever the policy.
        for codec in codecs() {
            assert_eq!(codec.decode::<Agent>(&id(), &small).unwrap(), agent);
            assert_eq!(codec.decode::<Agent>(&id(), &big).unwrap(), agent);
        }
        // The body is the same MessagePack either way.
        let borrowed = plain().decode_body(&id(), &big).unwrap();
        assert!(matches!(borrowed, Cow::Borrowed(_)));
        let owned = plain().decode_body(&id(), &small).unwrap();
        assert!(matches!(owned, Cow::Owned(_)));
        assert_eq!(borrowed, owned);
        assert_eq!(Codec::body(&id(), &big).unwrap(), &borrowed[..]);
        expect_corrupt(Codec::body(&id(), &small), "compressed");
    }

    #[test]
    fn the_threshold_counts_the_uncompressed_body() {
        let agent = chatty(10);
        let body_len = plain().encode(&id(), &agent).unwrap().len() - HEADER_LEN;
        let at = Codec::default().with_compression(Compression::Lz4 {
            min_bytes: body_len,
        });
        let above = Codec::default().with_compression(Compression::Lz4 {
            min_bytes: body_len + 1,
        });
        assert_eq!(at.encode(&id(), &agent).unwrap()[2], FLAG_COMPRESSED);
        assert_eq!(above.encode(&id(), &agent).unwrap()[2], 0);
        // Small states stay plain under the default threshold.
        assert_eq!(lz4().encode(&id(), &chatty(1)).unwrap()[2], 0);
    }

    #[test]
    fn incompressible_bodies_stay_uncompressed() {
        let mut rng = fastrand::Rng::with_seed(7);
        let noise: Vec<u64> = (0..2000).map(|_| rng.u64(..)).collect();
        let written = eager().encode(&id(), &noise).unwrap();
        assert_eq!(written, plain().encode(&id(), &noise).unwrap());
        assert_eq!(written[2], 0);
        // Too short for LZ4 to gain anything.
        assert_eq!(eager().encode(&id(), &"tiny").unwrap()[2], 0);
    }

    #[test]
    fn the_limit_counts_the_uncompressed_envelope_when_writing() {
        let agent = chatty(40);
        let plain_len = plain().encode(&id(), &agent).unwrap().len();
        let compressed_len = lz4().encode(&id(), &agent).unwrap().len();
        // The compressed envelope would fit, the state does not: refused, as without
        // compression, so that switching compression never changes what is accepted.
        let codec = Codec::new(plain_len - 1, Compression::LZ4);
        assert!(compressed_len < codec.max_size());
        match codec.encode(&id(), &agent) {
            Err(Error::TooLarge { size, limit, .. }) => {
                assert_eq!((size, limit), (plain_len, plain_len - 1));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            Codec::new(plain_len, Compression::LZ4)
                .encode(&id(), &agent)
                .is_ok()
        );
    }

    #[test]
    fn oversized_decompressed_bodies_are_refused() {
        let agent = chatty(40);
        let plain_len = plain().encode(&id(), &agent).unwrap().len();
        let small = lz4().encode(&id(), &agent).unwrap();
        // Stored, the envelope fits the smaller limit; decompressed, it would not.
        let codec = Codec::new(plain_len - 1, Compression::Off);
        assert!(small.len() <= codec.max_size());
        match codec.decode::<Agent>(&id(), &small) {
            Err(e @ Error::TooLarge { .. }) => {
                let text = e.to_string();
                assert!(text.contains("s-1"), "{text}");
                assert!(text.contains(&format!("{plain_len} bytes")), "{text}");
            }
            other => panic!("{other:?}"),
        }
        let codec = Codec::new(plain_len, Compression::Off);
        assert_eq!(codec.decode::<Agent>(&id(), &small).unwrap(), agent);
    }

    #[test]
    fn hostile_length_prefixes_are_refused_before_anything_is_allocated() {
        // 4 GiB declared for a few bytes: more than any LZ4 block of that size can hold.
        for codec in [Codec::default(), Codec::new(usize::MAX, Compression::LZ4)] {
            let bytes = compressed_envelope(u32::MAX, &[0x1f, b'a', 1, 0, 0xff, 0xff]);
            expect_corrupt(
                codec.decode::<Agent>(&id(), &bytes),
                "declares 4294967295 bytes",
            );
            expect_corrupt(codec.decode_body(&id(), &bytes), "more than its 6 bytes");
        }
        // A length LZ4 could reach but over the limit: TooLarge, from the prefix alone (the
        // block is garbage, so decompressing it would have been Corrupt).
        let block = vec![0xff; 16 * 1024];
        let bytes = compressed_envelope(2 * 1024 * 1024, &block);
        match Codec::default().decode::<Agent>(&id(), &bytes) {
            Err(Error::TooLarge { size, limit, .. }) => {
                assert_eq!(
                    (size, limit),
                    (HEADER_LEN + 2 * 1024 * 1024, DEFAULT_MAX_SIZE)
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn corrupt_compressed_bodies_are_corrupt_naming_the_session() {
        let agent = chatty(40);
        let good = lz4().encode(&id(), &agent).unwrap().to_vec();
        assert_eq!(good[2], FLAG_COMPRESSED);
        let declared = u32::from_le_bytes(good[3..7].try_into().unwrap());
        let with_declared = |n: u32| {
            let mut bytes = good.clone();
            bytes[3..7].copy_from_slice(&n.to_le_bytes());
            bytes
        };
        // Declared length one short, one over: the block does not fit, or falls short.
        expect_corrupt(
            Codec::default().decode::<Agent>(&id(), &with_declared(declared - 1)),
            "does not decompress",
        );
        expect_corrupt(
            Codec::default().decode::<Agent>(&id(), &with_declared(declared + 1)),
            "decompresses to",
        );
        // An offset pointing before the start of the output.
        expect_corrupt(
            Codec::default().decode::<u8>(
                &id(),
                &compressed_envelope(40, &[0x04, b'a', 0xff, 0xff, 0x00]),
            ),
            "does not decompress",
        );
        // Literals running past the end of the block.
        expect_corrupt(
            Codec::default().decode::<u8>(&id(), &compressed_envelope(10, &[0xa0, b'a'])),
            "does not decompress",
        );
        // A block that decompresses, to something that is not MessagePack of the state.
        let not_state = compressed_envelope(3, &[0x30, 0xc1, 0xc1, 0xc1]);
        expect_corrupt(
            Codec::default().decode::<u8>(&id(), &not_state),
            "state does not decode",
        );
    }

    #[test]
    fn the_expansion_bound_admits_the_most_compressible_bodies() {
        // A body of one repeated byte is LZ4's best case, close to the 255:1 bound.
        let zeros = vec![0u8; 4 * DEFAULT_MAX_SIZE];
        let body = rmp_serde::to_vec_named(&serde_bytes_like(&zeros)).unwrap();
        let codec = Codec::new(8 * DEFAULT_MAX_SIZE, Compression::LZ4);
        let bytes = codec.encode(&id(), &serde_bytes_like(&zeros)).unwrap();
        assert_eq!(bytes[2], FLAG_COMPRESSED);
        let block = bytes.len() - HEADER_LEN - SIZE_PREFIX_LEN;
        assert!(body.len() > block * 200, "{} from {block}", body.len());
        assert_eq!(codec.decode_body(&id(), &bytes).unwrap(), body);
    }

    /// `bytes` as MessagePack `bin` (not an array of integers).
    fn serde_bytes_like(bytes: &[u8]) -> impl Serialize + '_ {
        struct Bin<'a>(&'a [u8]);
        impl Serialize for Bin<'_> {
            fn serialize<S: serde::Serializer>(
                &self,
                s: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_bytes(self.0)
            }
        }
        Bin(bytes)
    }

    #[test]
    fn compression_is_off_by_default_and_shows_itself() {
        assert_eq!(Codec::default().compression(), Compression::Off);
        assert_eq!(Codec::with_max_size(100).compression(), Compression::Off);
        assert_eq!(Compression::default(), Compression::Off);
        assert_eq!(
            Compression::LZ4,
            Compression::Lz4 {
                min_bytes: DEFAULT_COMPRESSION_MIN_BYTES
            }
        );
        assert_eq!(Compression::Off.to_string(), "off");
        assert_eq!(
            Compression::LZ4.to_string(),
            "lz4 (bodies of at least 1024 bytes)"
        );
        let codec = Codec::with_max_size(100).with_compression(Compression::LZ4);
        assert_eq!(
            (codec.max_size(), codec.compression()),
            (100, Compression::LZ4)
        );
        assert_eq!(Codec::new(100, Compression::LZ4), codec);
        // Nothing below the header and one byte.
        assert_eq!(Codec::new(0, Compression::Off).max_size(), HEADER_LEN + 1);
    }

    proptest! {
        #[test]
        fn round_trip(agent in any_agent()) {
            let plain_bytes = plain().encode(&id(), &agent).unwrap();
            for codec in codecs() {
                let bytes = codec.encode(&id(), &agent).unwrap();
                prop_assert_eq!(bytes[0], MAGIC);
                // Compressed exactly when asked to and smaller.
                if bytes[2] == FLAG_COMPRESSED {
                    prop_assert!(bytes.len() < plain_bytes.len());
                    prop_assert!(codec.compression().applies_to(plain_bytes.len() - HEADER_LEN));
                } else {
                    prop_assert_eq!(&bytes, &plain_bytes);
                }
                // Every codec reads what every codec wrote.
                for reader in codecs() {
                    let back: Agent = reader.decode(&id(), &bytes).unwrap();
                    prop_assert_eq!(&back, &agent);
                }
            }
        }

        #[test]
        fn every_truncation_is_rejected(agent in any_agent(), cut in any::<prop::sample::Index>()) {
            for codec in codecs() {
                let bytes = codec.encode(&id(), &agent).unwrap();
                let cut = cut.index(bytes.len());
                let result = codec.decode::<Agent>(&id(), &bytes[..cut]);
                prop_assert!(matches!(result, Err(Error::Corrupt { .. })), "{:?}", result);
            }
        }

        #[test]
        fn altered_envelopes_never_panic_and_header_changes_are_rejected(
            agent in any_agent(),
            pos in any::<prop::sample::Index>(),
            xor in 1u8..,
        ) {
            for codec in codecs() {
                let original = codec.encode(&id(), &agent).unwrap();
                let mut bytes = original.to_vec();
                let pos = pos.index(bytes.len());
                bytes[pos] ^= xor;
                let result = codec.decode::<Agent>(&id(), &bytes);
                if pos < HEADER_LEN {
                    prop_assert!(matches!(result, Err(Error::Corrupt { .. })), "{:?}", result);
                } else if original[2] == 0 {
                    if let Ok(back) = result {
                        // A flipped byte inside a string or number can still decode; it must
                        // then differ from the original, never silently equal it.
                        prop_assert_ne!(back, agent.clone());
                    }
                } else {
                    // An LZ4 block has no checksum: a flipped byte may decode to anything
                    // (even the same state, through another match), or be refused.
                    prop_assert!(
                        matches!(result, Ok(_) | Err(Error::Corrupt { .. } | Error::TooLarge { .. })),
                        "{:?}", result
                    );
                }
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Codec::default().decode::<Agent>(&id(), &bytes);
            let _ = Codec::default().decode::<serde_json::Value>(&id(), &bytes);
        }

        #[test]
        fn arbitrary_compressed_bodies_never_panic(
            declared in prop_oneof![0u32..4096, any::<u32>()],
            block in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let bytes = compressed_envelope(declared, &block);
            let result = Codec::default().decode::<serde_json::Value>(&id(), &bytes);
            prop_assert!(
                matches!(result, Ok(_) | Err(Error::Corrupt { .. } | Error::TooLarge { .. })),
                "{:?}", result
            );
        }
    }
}
