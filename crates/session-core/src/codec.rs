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
//! | [`FLAG_ENCRYPTED`], alone or with [`FLAG_COMPRESSED`] | the key id's length (one byte, 1 to [`MAX_KEY_ID_LEN`]), the key id (ASCII), a random 12-byte nonce, then the body the other flags describe encrypted with AES-256-GCM, and its 16-byte tag |
//!
//! Compression comes before encryption (ciphertext does not compress). The associated data of
//! an encrypted envelope is every byte before the nonce (header, key id length, key id), then
//! the session id's length (one byte) and the session id: a ciphertext moved to another session
//! id, or any byte of it changed, does not decrypt. Every write draws a fresh nonce from the
//! operating system's CSPRNG (`getrandom`); nothing else chooses one.
//!
//! Every codec reads plain and compressed envelopes, whatever its [`Compression`]: switching
//! compression on or off never makes a stored session unreadable. A codec with
//! [`EncryptionKeys`] also reads the encrypted envelopes of any of its keys (plain, compressed
//! and encrypted sessions live side by side); one without keys refuses encrypted envelopes as
//! [`Error::Corrupt`] saying that no key is configured. Unknown flag bits are refused as
//! [`Error::Corrupt`].
//!
//! Untrusted sizes are bounded both ways: [`Codec::encode`] stops serializing once the limit is
//! passed (a huge state is never encoded whole), and [`Codec::decode`] checks the nesting depth
//! of the MessagePack without recursion before deserializing it
//! ([`DEFAULT_MAX_DEPTH`], [`Codec::with_max_depth`]), so a hostile payload of deeply nested
//! arrays is [`Error::Corrupt`], not a stack overflow.
//!
//! [LZ4 block format]: https://github.com/lz4/lz4/blob/dev/doc/lz4_Block_format.md

mod bounded;
mod encryption;

use std::{borrow::Cow, fmt, io::Write as _, sync::Arc};

use bytes::Bytes;
use serde::{Serialize, de::DeserializeOwned};

pub use bounded::DEFAULT_MAX_DEPTH;
pub(crate) use bounded::counting_cap;
use bounded::{LimitedWriter, scan_depth};
pub use encryption::{
    EncryptionKeys, InvalidEncryptionKeys, KEY_LEN, MAX_KEY_ID_LEN, is_valid_key_id,
};
use encryption::{Sealed, TAG_LEN};

use crate::{Error, Result, SessionId};

/// First byte of every envelope.
pub const MAGIC: u8 = 0xC1;
/// The format this version writes and reads.
pub const FORMAT_V1: u8 = 1;
/// Flag bit: the body is compressed: its uncompressed length (`u32`, little endian), then one
/// LZ4 block.
pub const FLAG_COMPRESSED: u8 = 0b0000_0001;
/// Flag bit: the body is encrypted: key id length (one byte), key id, 12-byte nonce, then the
/// body the other flags describe, encrypted with AES-256-GCM, and its 16-byte tag (see
/// [`EncryptionKeys`]).
pub const FLAG_ENCRYPTED: u8 = 0b0000_0010;
/// Bytes before the body.
pub const HEADER_LEN: usize = 3;
/// Default largest encoded session: 1 MiB.
pub const DEFAULT_MAX_SIZE: usize = 1024 * 1024;
/// The default threshold of [`Compression::Lz4`]: bodies of at least 1 KiB are compressed.
pub const DEFAULT_COMPRESSION_MIN_BYTES: usize = 1024;

/// Every flag this version knows.
const KNOWN_FLAGS: u8 = FLAG_COMPRESSED | FLAG_ENCRYPTED;
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

/// What an envelope's header says about it, read without decrypting or decoding anything
/// ([`Codec::inspect`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EnvelopeInfo {
    /// Whether the body is compressed.
    pub compressed: bool,
    /// The id of the key the envelope is encrypted with (`None`: not encrypted).
    pub key_id: Option<String>,
}

impl EnvelopeInfo {
    /// The id of the key the envelope is encrypted with, if it is encrypted.
    pub fn key_id(&self) -> Option<&str> {
        self.key_id.as_deref()
    }

    /// Whether the envelope is encrypted.
    pub fn encrypted(&self) -> bool {
        self.key_id.is_some()
    }
}

/// Encodes states into envelopes and back, enforcing a size limit and a nesting depth,
/// compressing large bodies, encrypting with [`EncryptionKeys`] when it has them.
///
/// The size limit counts the envelope *uncompressed*, encryption included: a state is accepted
/// or refused the same with compression on or off, what is stored is never larger, and a small
/// compressed envelope cannot expand past the limit when it is read. (Encryption adds
/// 29 bytes and the key id to every envelope, so it takes that much off the room a
/// state has.)
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
///
/// Encryption at rest: see [`EncryptionKeys`] and [`with_encryption`](Self::with_encryption).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codec {
    max_size: usize,
    compression: Compression,
    max_depth: usize,
    keys: Option<Arc<EncryptionKeys>>,
}

impl Default for Codec {
    /// [`DEFAULT_MAX_SIZE`], no compression, no encryption, [`DEFAULT_MAX_DEPTH`].
    fn default() -> Self {
        Self::new(DEFAULT_MAX_SIZE, Compression::Off)
    }
}

impl Codec {
    /// A codec that refuses envelopes over `max_size` bytes (at least the header and one
    /// byte) and writes with `compression`, without encryption.
    pub fn new(max_size: usize, compression: Compression) -> Self {
        Self {
            max_size: max_size.max(HEADER_LEN + 1),
            compression,
            max_depth: DEFAULT_MAX_DEPTH,
            keys: None,
        }
    }

    /// A codec that refuses envelopes over `max_size` bytes (at least the header and one
    /// byte), without compression. To change the limit of a codec and keep the rest:
    /// [`with_size_limit`](Self::with_size_limit).
    pub fn with_max_size(max_size: usize) -> Self {
        Self::new(max_size, Compression::Off)
    }

    /// This codec with the limit `max_size` (at least the header and one byte); compression,
    /// depth and keys are kept.
    #[must_use]
    pub fn with_size_limit(self, max_size: usize) -> Self {
        Self {
            max_size: max_size.max(HEADER_LEN + 1),
            ..self
        }
    }

    /// This codec, writing with `compression` (reading is unchanged: it accepts both).
    #[must_use]
    pub fn with_compression(self, compression: Compression) -> Self {
        Self {
            compression,
            ..self
        }
    }

    /// This codec, encrypting everything it writes with the current (first) of `keys`, and
    /// reading envelopes encrypted with any of them as well as plain and compressed ones.
    #[must_use]
    pub fn with_encryption(self, keys: EncryptionKeys) -> Self {
        Self {
            keys: Some(Arc::new(keys)),
            ..self
        }
    }

    /// This codec without encryption keys: it writes plain (or compressed) envelopes and
    /// refuses encrypted ones.
    #[must_use]
    pub fn without_encryption(self) -> Self {
        Self { keys: None, ..self }
    }

    /// This codec, refusing bodies whose arrays and maps nest more than `depth` deep
    /// (default [`DEFAULT_MAX_DEPTH`]; at least 1).
    #[must_use]
    pub fn with_max_depth(self, depth: usize) -> Self {
        Self {
            max_depth: depth.max(1),
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

    /// The keys this codec encrypts and decrypts with, if any.
    pub fn encryption(&self) -> Option<&EncryptionKeys> {
        self.keys.as_deref()
    }

    /// The deepest nesting of arrays and maps a decoded body may have.
    pub fn max_depth(&self) -> usize {
        self.max_depth
    }

    /// Encodes `value` for session `id`: compressed when the policy says so and the envelope
    /// gets smaller, encrypted when the codec has keys.
    ///
    /// The serializer writes into a buffer that holds at most the limit: past it, the encoding
    /// only counts bytes, and stops once it has counted the limit again (at least 64 KiB more),
    /// so a state of any size costs at most about twice the limit in time and the limit in
    /// memory before it is refused.
    ///
    /// Errors: [`Error::Encode`] when serialization fails (or the OS has no randomness for a
    /// nonce), [`Error::TooLarge`] when the uncompressed envelope is over the limit (whether or
    /// not it would be compressed); its size is exact up to twice the limit, at least that
    /// beyond.
    pub fn encode<T: Serialize + ?Sized>(&self, id: &SessionId, value: &T) -> Result<Bytes> {
        self.seal(id, |w| {
            rmp_serde::encode::write_named(w, value)
                .map_err(|e| e.to_string())
                .map(drop)
        })
    }

    /// Writes an envelope whose MessagePack body `write_body` produces: the size limit, then
    /// compression, then encryption.
    fn seal(
        &self,
        id: &SessionId,
        write_body: impl FnOnce(&mut LimitedWriter) -> std::result::Result<(), String>,
    ) -> Result<Bytes> {
        let keys = self.keys.as_deref();
        // Room for the header and, when encrypting, the key id and nonce.
        let prefix = HEADER_LEN + keys.map_or(0, EncryptionKeys::prefix_len);
        let tag = keys.map_or(0, |_| TAG_LEN);
        let mut writer = LimitedWriter::new(
            prefix,
            self.max_size.saturating_sub(tag),
            counting_cap(self.max_size).saturating_sub(tag),
        );
        let written = write_body(&mut writer);
        if writer.over() {
            return Err(Error::TooLarge {
                id: id.clone(),
                size: writer.counted().saturating_add(tag),
                limit: self.max_size,
            });
        }
        written.map_err(|reason| Error::Encode {
            id: id.clone(),
            reason,
        })?;
        let plain = writer.into_inner();
        if plain.len() == prefix {
            return Err(Error::Encode {
                id: id.clone(),
                reason: "the state serialized to nothing".to_owned(),
            });
        }
        let (mut envelope, mut flags) = match self.compress(&plain, prefix) {
            Some(compressed) => (compressed, FLAG_COMPRESSED),
            None => (plain, 0),
        };
        if keys.is_some() {
            flags |= FLAG_ENCRYPTED;
        }
        envelope[..HEADER_LEN].copy_from_slice(&[MAGIC, FORMAT_V1, flags]);
        if let Some(keys) = keys {
            envelope.reserve_exact(TAG_LEN);
            keys.seal(id, &mut envelope)?;
        }
        Ok(Bytes::from(envelope))
    }

    /// `plain` (`prefix` bytes of room, then the MessagePack) compressed into a new buffer with
    /// the same room, when the policy applies and that makes it smaller.
    fn compress(&self, plain: &[u8], prefix: usize) -> Option<Vec<u8>> {
        let body = &plain[prefix..];
        if !self.compression.applies_to(body.len()) {
            return None;
        }
        // The prefix is 32 bits: a body over 4 GiB (only with such a limit) stays plain.
        let declared = u32::try_from(body.len()).ok()?;
        let start = prefix + SIZE_PREFIX_LEN;
        let mut out = vec![0; start + lz4_flex::block::get_maximum_output_size(body.len())];
        out[prefix..start].copy_from_slice(&declared.to_le_bytes());
        match lz4_flex::block::compress_into(body, &mut out[start..]) {
            Ok(len) if start + len < plain.len() => {
                out.truncate(start + len);
                // The buffer was sized for the worst case: give the rest back, since the
                // envelope may be kept (local copies, the memory store).
                out.shrink_to_fit();
                Some(out)
            }
            _ => None,
        }
    }

    /// Decodes an envelope of session `id`: plain, compressed, encrypted (with one of this
    /// codec's keys) or both.
    ///
    /// Errors: [`Error::TooLarge`] when the envelope, or the one it decompresses to, is over
    /// the limit; [`Error::Corrupt`] for a wrong magic byte, an unknown format or flag,
    /// truncated or trailing bytes, a compressed body that does not decompress to the length it
    /// declares, an encrypted envelope this codec has no key for or that does not decrypt
    /// (altered, copied from another session id, another key under the same id), a body
    /// nested deeper than [`max_depth`](Self::max_depth), or a body that does not fit `T`.
    pub fn decode<T: DeserializeOwned>(&self, id: &SessionId, bytes: &[u8]) -> Result<T> {
        let body = self.decode_body(id, bytes)?;
        self.check_body(id, &body)?;
        // From the slice: strings are read in place, not through `io::Read`.
        let mut de = rmp_serde::Deserializer::from_read_ref(&body[..]);
        // The scan bounded the depth already; keep rmp-serde's own bound out of its way.
        de.set_max_depth(self.max_depth.saturating_add(1));
        T::deserialize(&mut de).map_err(|e| {
            // serde quotes the stored names it did not expect as they are: a stored
            // session must not put terminal escapes into logs and error bodies.
            Error::corrupt(
                id,
                format!("state does not decode: {}", printable(&e.to_string())),
            )
        })
    }

    /// Checks that `body` is exactly one MessagePack value nested at most
    /// [`max_depth`](Self::max_depth) deep, without recursion.
    fn check_body(&self, id: &SessionId, body: &[u8]) -> Result<()> {
        let end = scan_depth(body, self.max_depth).map_err(|reason| Error::corrupt(id, reason))?;
        if end != body.len() {
            return Err(Error::corrupt(
                id,
                format!("{} unexpected bytes after the state", body.len() - end),
            ));
        }
        Ok(())
    }

    /// Checks an envelope of session `id` and returns its MessagePack body: borrowed from
    /// `bytes` when it is stored plain, decompressed or decrypted otherwise. The body is not
    /// decoded (use [`decode`](Self::decode) for the state).
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
        let (flags, rest) = header(id, bytes)?;
        if flags & !KNOWN_FLAGS != 0 {
            return Err(unknown_flags(id, flags));
        }
        let (body, overhead) = if flags & FLAG_ENCRYPTED != 0 {
            let sealed = Sealed::parse(id, bytes)?;
            let opened = sealed.open(id, self.keys.as_deref())?;
            (Cow::Owned(opened), sealed.overhead())
        } else {
            (Cow::Borrowed(rest), 0)
        };
        if flags & FLAG_COMPRESSED != 0 {
            return self.decompress(id, &body, overhead).map(Cow::Owned);
        }
        if body.is_empty() {
            return Err(Error::corrupt(id, "the envelope has no body"));
        }
        Ok(body)
    }

    /// Checks the header of a *plain* envelope and returns its body, borrowed; no size limit
    /// is applied.
    ///
    /// A compressed or encrypted envelope has no borrowed MessagePack body: it is refused here
    /// with [`Error::Corrupt`] saying so. Use [`decode_body`](Self::decode_body) (any kind,
    /// with the limit) or [`decode`](Self::decode) for envelopes as stored.
    pub fn body<'a>(id: &SessionId, bytes: &'a [u8]) -> Result<&'a [u8]> {
        let (flags, body) = header(id, bytes)?;
        match flags {
            0 => non_empty(id, body),
            _ if flags & !KNOWN_FLAGS != 0 => Err(unknown_flags(id, flags)),
            _ => Err(Error::corrupt(
                id,
                format!(
                    "the envelope is {} (flags 0x{flags:02x}): Codec::body reads only plain \
                     envelopes; Codec::decode_body decompresses and decrypts",
                    describe_flags(flags)
                ),
            )),
        }
    }

    /// What the header of an envelope of session `id` says: compressed or not, encrypted under
    /// which key id. Nothing is decrypted, decompressed or decoded, and no key is needed.
    ///
    /// Errors: [`Error::Corrupt`] for a header this version cannot read (wrong magic byte,
    /// unknown format or flags, an encrypted envelope too short for its key id, nonce and tag).
    pub fn inspect(id: &SessionId, bytes: &[u8]) -> Result<EnvelopeInfo> {
        let (flags, _) = header(id, bytes)?;
        if flags & !KNOWN_FLAGS != 0 {
            return Err(unknown_flags(id, flags));
        }
        let key_id = if flags & FLAG_ENCRYPTED != 0 {
            Some(Sealed::parse(id, bytes)?.key_id_text())
        } else {
            None
        };
        Ok(EnvelopeInfo {
            compressed: flags & FLAG_COMPRESSED != 0,
            key_id,
        })
    }

    /// Reads an envelope of session `id` (any kind this codec reads), checks that its body is
    /// one well-formed MessagePack value within the depth bound, and writes it again the way
    /// this codec writes: compressed by its policy, encrypted under its current key. The state
    /// is not decoded, so this works without knowing its type: it is what `sessionctl rekey`
    /// does to every session.
    ///
    /// Errors: as [`decode`](Self::decode) (but for the decoding into a type) and
    /// [`encode`](Self::encode).
    pub fn reencode(&self, id: &SessionId, bytes: &[u8]) -> Result<Bytes> {
        let body = self.decode_body(id, bytes)?;
        self.check_body(id, &body)?;
        self.seal(id, |w| w.write_all(&body).map_err(|e| e.to_string()))
    }

    /// The MessagePack of a compressed body: `[u32 LE length][LZ4 block]`. `overhead` is what
    /// encryption added to the envelope (counted by the limit).
    fn decompress(&self, id: &SessionId, body: &[u8], overhead: usize) -> Result<Vec<u8>> {
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
        let size = (HEADER_LEN + overhead).saturating_add(declared);
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

/// `compressed`, `encrypted` or `compressed and encrypted`, for known flags other than 0.
fn describe_flags(flags: u8) -> &'static str {
    match (flags & FLAG_COMPRESSED != 0, flags & FLAG_ENCRYPTED != 0) {
        (true, true) => "compressed and encrypted",
        (false, true) => "encrypted",
        _ => "compressed",
    }
}

/// The error for flags with bits this version does not know.
fn unknown_flags(id: &SessionId, flags: u8) -> Error {
    Error::corrupt(
        id,
        format!(
            "envelope flags 0x{flags:02x} (unknown flags 0x{:02x}) are not supported by this \
             build",
            flags & !KNOWN_FLAGS
        ),
    )
}

/// `text` with every control character escaped (`\u{1b}`), printable characters kept.
fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
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
            (
                vec![MAGIC, FORMAT_V1, FLAG_ENCRYPTED],
                "ends before its key id",
            ),
            (
                vec![MAGIC, FORMAT_V1, FLAG_ENCRYPTED, 1],
                "ends inside its key id",
            ),
            (
                vec![MAGIC, FORMAT_V1, FLAG_COMPRESSED | FLAG_ENCRYPTED, 0, b'k'],
                "key id is 0 bytes long",
            ),
            (
                vec![MAGIC, FORMAT_V1, FLAG_ENCRYPTED, 33],
                "key id is 33 bytes long",
            ),
            (
                vec![MAGIC, FORMAT_V1, FLAG_ENCRYPTED, 1, b'*', 0],
                "not a valid key id",
            ),
            (
                [&[MAGIC, FORMAT_V1, FLAG_ENCRYPTED, 1, b'k'][..], &[0; 11]].concat(),
                "ends inside its nonce",
            ),
            (
                [
                    &[MAGIC, FORMAT_V1, FLAG_ENCRYPTED, 1, b'k'][..],
                    &[0; 12 + 15],
                ]
                .concat(),
                "shorter than the 16-byte tag",
            ),
            (
                [
                    &[MAGIC, FORMAT_V1, FLAG_ENCRYPTED, 1, b'k'][..],
                    &[0; 12 + 16],
                ]
                .concat(),
                "the envelope is encrypted (key k) and no encryption key is configured",
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
            "0xc1, which MessagePack never uses",
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

    // --- encryption at rest -------------------------------------------------------------

    fn key_k1() -> EncryptionKeys {
        EncryptionKeys::new("k1", [1; KEY_LEN]).unwrap()
    }

    /// k2 encrypts, k1 (the older key) still decrypts.
    fn rotated() -> EncryptionKeys {
        EncryptionKeys::from_keys([("k2", [2; KEY_LEN]), ("k1", [1; KEY_LEN])]).unwrap()
    }

    /// The encrypting codecs: plain, eager LZ4 and LZ4 from 1 KiB, each under the keys k2, k1.
    fn encrypting() -> [Codec; 3] {
        codecs().map(|c| c.with_encryption(rotated()))
    }

    #[test]
    fn plain_compressed_and_encrypted_sessions_are_read_together() {
        let agent = chatty(40);
        let plain_bytes = plain().encode(&id(), &agent).unwrap();
        let compressed = lz4().encode(&id(), &agent).unwrap();
        let encrypted = plain()
            .with_encryption(rotated())
            .encode(&id(), &agent)
            .unwrap();
        let both = lz4()
            .with_encryption(rotated())
            .encode(&id(), &agent)
            .unwrap();
        assert_eq!(plain_bytes[2], 0);
        assert_eq!(compressed[2], FLAG_COMPRESSED);
        assert_eq!(encrypted[2], FLAG_ENCRYPTED);
        assert_eq!(both[2], FLAG_COMPRESSED | FLAG_ENCRYPTED);
        assert!(
            both.len() < encrypted.len() / 2,
            "compressed before encrypted"
        );
        // A codec with keys reads all four, whatever it writes.
        for reader in encrypting() {
            for bytes in [&plain_bytes, &compressed, &encrypted, &both] {
                assert_eq!(reader.decode::<Agent>(&id(), bytes).unwrap(), agent);
            }
        }
        // A codec without keys reads the first two and refuses the others, saying why.
        for reader in codecs() {
            assert_eq!(reader.decode::<Agent>(&id(), &plain_bytes).unwrap(), agent);
            assert_eq!(reader.decode::<Agent>(&id(), &compressed).unwrap(), agent);
            for bytes in [&encrypted, &both] {
                expect_corrupt(
                    reader.decode::<Agent>(&id(), bytes),
                    "the envelope is encrypted (key k2) and no encryption key is configured",
                );
            }
        }
    }

    #[test]
    fn the_first_key_encrypts_and_every_key_decrypts() {
        let agent = chatty(3);
        let old = plain()
            .with_encryption(key_k1())
            .encode(&id(), &agent)
            .unwrap();
        let codec = plain().with_encryption(rotated());
        let new = codec.encode(&id(), &agent).unwrap();
        assert_eq!(Codec::inspect(&id(), &old).unwrap().key_id(), Some("k1"));
        assert_eq!(Codec::inspect(&id(), &new).unwrap().key_id(), Some("k2"));
        assert_eq!(codec.decode::<Agent>(&id(), &old).unwrap(), agent);
        assert_eq!(codec.decode::<Agent>(&id(), &new).unwrap(), agent);
        // Once k1 is retired, what it encrypted is refused, naming the key and the keys known.
        let k2_only = plain().with_encryption(EncryptionKeys::new("k2", [2; KEY_LEN]).unwrap());
        assert_eq!(k2_only.decode::<Agent>(&id(), &new).unwrap(), agent);
        expect_corrupt(
            k2_only.decode::<Agent>(&id(), &old),
            "encrypted under key k1, which is not among the configured keys (k2)",
        );
        // An older key added with with_old_key decrypts too.
        let added = EncryptionKeys::new("k2", [2; KEY_LEN])
            .unwrap()
            .with_old_key("k1", [1; KEY_LEN])
            .unwrap();
        assert_eq!(added, rotated());
        let codec = plain().with_encryption(added);
        assert_eq!(codec.decode::<Agent>(&id(), &old).unwrap(), agent);
    }

    #[test]
    fn a_wrong_key_under_the_same_id_is_corrupt() {
        let bytes = plain()
            .with_encryption(key_k1())
            .encode(&id(), &chatty(3))
            .unwrap();
        let impostor = plain().with_encryption(EncryptionKeys::new("k1", [9; KEY_LEN]).unwrap());
        expect_corrupt(
            impostor.decode::<Agent>(&id(), &bytes),
            "does not decrypt under key k1",
        );
    }

    #[test]
    fn a_ciphertext_moved_to_another_session_does_not_decrypt() {
        let codec = lz4().with_encryption(rotated());
        let bytes = codec.encode(&id(), &chatty(40)).unwrap();
        let other = SessionId::new("s-2").unwrap();
        match codec.decode::<Agent>(&other, &bytes) {
            Err(e @ Error::Corrupt { .. }) => {
                let text = e.to_string();
                assert!(
                    text.contains("s-2") && text.contains("does not decrypt"),
                    "{text}"
                );
            }
            other => panic!("{other:?}"),
        }
        // Nor does a plain envelope moved over pass for encrypted: it is read as what it is.
        assert!(codec.decode::<Agent>(&id(), &bytes).is_ok());
    }

    #[test]
    fn every_altered_byte_of_an_encrypted_envelope_is_corrupt() {
        for codec in encrypting() {
            let original = codec.encode(&id(), &chatty(6)).unwrap();
            for pos in 0..original.len() {
                for xor in [0x01, 0x02, 0x80, 0xff] {
                    let mut bytes = original.to_vec();
                    bytes[pos] ^= xor;
                    let result = codec.decode::<Agent>(&id(), &bytes);
                    assert!(
                        matches!(result, Err(Error::Corrupt { .. })),
                        "byte {pos} ^ {xor:#x}: {result:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_truncation_of_an_encrypted_envelope_is_corrupt() {
        for codec in encrypting() {
            let bytes = codec.encode(&id(), &chatty(6)).unwrap();
            for cut in 0..bytes.len() {
                let result = codec.decode::<Agent>(&id(), &bytes[..cut]);
                assert!(
                    matches!(result, Err(Error::Corrupt { .. })),
                    "{cut}: {result:?}"
                );
            }
            // And a byte more is no better.
            let longer = [&bytes[..], &[0]].concat();
            expect_corrupt(codec.decode::<Agent>(&id(), &longer), "does not decrypt");
        }
    }

    #[test]
    fn every_write_draws_a_fresh_nonce() {
        let codec = plain().with_encryption(key_k1());
        let nonce_at = HEADER_LEN + 1 + 2;
        let mut nonces = std::collections::HashSet::new();
        for _ in 0..2000 {
            let bytes = codec.encode(&id(), &"the same state").unwrap();
            assert!(nonces.insert(bytes[nonce_at..nonce_at + 12].to_vec()));
        }
    }

    #[test]
    fn the_envelope_layout_is_header_key_id_nonce_ciphertext_tag() {
        let state = "printer";
        let body = rmp_serde::to_vec_named(&state).unwrap();
        let bytes = plain()
            .with_encryption(rotated())
            .encode(&id(), &state)
            .unwrap();
        assert_eq!(
            bytes[..6],
            [MAGIC, FORMAT_V1, FLAG_ENCRYPTED, 2, b'k', b'2']
        );
        assert_eq!(bytes.len(), 6 + 12 + body.len() + 16);
        // No plaintext in it.
        assert!(!bytes.windows(state.len()).any(|w| w == state.as_bytes()));
        // The associated data is the bytes before the nonce, then the session id: the same
        // envelope opened by hand with ring.
        use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[2; KEY_LEN]).unwrap());
        let aad = [&bytes[..6], &[3], b"s-1"].concat();
        let nonce = Nonce::try_assume_unique_for_key(&bytes[6..18]).unwrap();
        let mut sealed = bytes[18..].to_vec();
        let opened = key
            .open_in_place(nonce, Aad::from(aad), &mut sealed)
            .unwrap();
        assert_eq!(opened, &body[..]);
    }

    #[test]
    fn the_limit_counts_the_encryption_overhead() {
        let agent = chatty(10);
        let plain_len = plain().encode(&id(), &agent).unwrap().len();
        let codec = plain().with_encryption(rotated());
        let encrypted_len = codec.encode(&id(), &agent).unwrap().len();
        assert_eq!(encrypted_len, plain_len + 1 + 2 + 12 + 16);
        // At the limit: written and read back by the same codec; one byte below: refused.
        let at = codec.clone().with_size_limit(encrypted_len);
        let bytes = at.encode(&id(), &agent).unwrap();
        assert_eq!(at.decode::<Agent>(&id(), &bytes).unwrap(), agent);
        match codec
            .with_size_limit(encrypted_len - 1)
            .encode(&id(), &agent)
        {
            Err(Error::TooLarge { size, limit, .. }) => {
                assert_eq!((size, limit), (encrypted_len, encrypted_len - 1));
            }
            other => panic!("{other:?}"),
        }
        // Compressed and encrypted: the declared length plus the overhead is what counts.
        let both = lz4().with_encryption(rotated());
        let big = chatty(40);
        let full = both
            .clone()
            .without_encryption()
            .with_compression(Compression::Off);
        let limit = full.encode(&id(), &big).unwrap().len() + 1 + 2 + 12 + 16;
        let small = both
            .clone()
            .with_size_limit(limit)
            .encode(&id(), &big)
            .unwrap();
        assert_eq!(small[2], FLAG_COMPRESSED | FLAG_ENCRYPTED);
        assert!(
            both.clone()
                .with_size_limit(limit)
                .decode::<Agent>(&id(), &small)
                .is_ok()
        );
        assert!(matches!(
            both.with_size_limit(limit - 1)
                .decode::<Agent>(&id(), &small),
            Err(Error::TooLarge { .. })
        ));
    }

    #[test]
    fn inspect_reads_the_header_without_any_key() {
        let agent = chatty(40);
        let info = |codec: &Codec| Codec::inspect(&id(), &codec.encode(&id(), &agent).unwrap());
        let plain_info = info(&plain()).unwrap();
        assert!(!plain_info.compressed && !plain_info.encrypted());
        assert!(info(&lz4()).unwrap().compressed);
        let both = info(&lz4().with_encryption(rotated())).unwrap();
        assert!(both.compressed && both.encrypted());
        assert_eq!(both.key_id(), Some("k2"));
        expect_corrupt(
            Codec::inspect(&id(), &[MAGIC, FORMAT_V1, 0x40]),
            "unknown flags 0x40",
        );
        expect_corrupt(
            Codec::inspect(&id(), &[MAGIC, FORMAT_V1, FLAG_ENCRYPTED, 1, b'k']),
            "nonce",
        );
        expect_corrupt(
            Codec::body(
                &id(),
                &lz4()
                    .with_encryption(rotated())
                    .encode(&id(), &agent)
                    .unwrap(),
            ),
            "compressed and encrypted",
        );
    }

    #[test]
    fn reencode_writes_any_envelope_under_the_current_key() {
        let agent = chatty(40);
        let codec = lz4().with_encryption(rotated());
        for writer in [
            plain(),
            lz4(),
            plain().with_encryption(key_k1()),
            codec.clone(),
        ] {
            let before = writer.encode(&id(), &agent).unwrap();
            let after = codec.reencode(&id(), &before).unwrap();
            assert_eq!(after[2], FLAG_COMPRESSED | FLAG_ENCRYPTED);
            assert_eq!(Codec::inspect(&id(), &after).unwrap().key_id(), Some("k2"));
            assert_eq!(codec.decode::<Agent>(&id(), &after).unwrap(), agent);
        }
        // Back to plain, for a codec without keys (decryption needs the keys, though).
        let encrypted = codec.encode(&id(), &agent).unwrap();
        let plain_again = plain().with_encryption(rotated());
        let decrypted = plain_again.reencode(&id(), &encrypted).unwrap();
        assert_eq!(
            Codec::inspect(&id(), &decrypted).unwrap().key_id(),
            Some("k2")
        );
        // A body that is not one MessagePack value is refused, not re-encrypted.
        for bad in [
            vec![MAGIC, FORMAT_V1, 0, 0x92, 1],
            vec![MAGIC, FORMAT_V1, 0, 1, 2],
        ] {
            assert!(matches!(
                codec.reencode(&id(), &bad),
                Err(Error::Corrupt { .. })
            ));
        }
    }

    #[test]
    fn keys_show_their_ids_never_their_bytes() {
        let keys =
            EncryptionKeys::from_keys([("k2", [0xAB; KEY_LEN]), ("k1", [0xCD; KEY_LEN])]).unwrap();
        assert_eq!(keys.to_string(), "k2 (encrypts), k1");
        assert_eq!(keys.current_id(), "k2");
        assert_eq!(keys.ids().collect::<Vec<_>>(), ["k2", "k1"]);
        assert!(keys.contains("k1") && !keys.contains("k3"));
        let codec = Codec::default().with_encryption(keys);
        let shown = format!("{codec:?} {:?}", codec.encryption());
        for leak in ["171", "205", "0xab", "0xcd", "ab, ab", "AB", "CD"] {
            assert!(!shown.contains(leak), "{shown}");
        }
        assert!(shown.contains("k2"), "{shown}");
    }

    #[test]
    fn invalid_key_sets_are_refused() {
        let none: [(&str, [u8; KEY_LEN]); 0] = [];
        assert_eq!(
            EncryptionKeys::from_keys(none),
            Err(InvalidEncryptionKeys::Empty)
        );
        for bad in [
            "",
            "a:b",
            "a,b",
            "key id",
            &"k".repeat(MAX_KEY_ID_LEN + 1),
            "é",
        ] {
            assert!(
                matches!(
                    EncryptionKeys::new(bad, [0; KEY_LEN]),
                    Err(InvalidEncryptionKeys::InvalidId { .. })
                ),
                "{bad:?}"
            );
            assert!(!is_valid_key_id(bad));
        }
        assert!(is_valid_key_id(&"k".repeat(MAX_KEY_ID_LEN)));
        assert!(is_valid_key_id("2026-01.primary_key"));
        let dup = EncryptionKeys::from_keys([("k1", [1; KEY_LEN]), ("k1", [2; KEY_LEN])]);
        assert_eq!(
            dup.unwrap_err().to_string(),
            "key id k1 is given twice (key ids must be unique)"
        );
        assert!(matches!(
            key_k1().with_old_key("k1", [3; KEY_LEN]),
            Err(InvalidEncryptionKeys::DuplicateId { .. })
        ));
    }

    // --- bounds on untrusted sizes --------------------------------------------------------

    /// A sequence of `items` strings of 64 bytes, made as they are serialized (nothing of it
    /// exists before), counting how many the serializer asked for.
    struct Lazy {
        items: usize,
        serialized: std::cell::Cell<usize>,
    }

    impl Serialize for Lazy {
        fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            use serde::ser::SerializeSeq;
            let chunk = "x".repeat(64);
            let mut seq = s.serialize_seq(Some(self.items))?;
            for _ in 0..self.items {
                self.serialized.set(self.serialized.get() + 1);
                seq.serialize_element(&chunk)?;
            }
            seq.end()
        }
    }

    #[test]
    fn a_huge_state_is_refused_without_being_encoded_whole() {
        // 64 MiB of state against the 1 MiB default limit.
        let state = Lazy {
            items: 1 << 20,
            serialized: std::cell::Cell::new(0),
        };
        for codec in [Codec::default(), lz4().with_encryption(rotated())] {
            state.serialized.set(0);
            match codec.encode(&id(), &state) {
                Err(e @ Error::TooLarge { .. }) => {
                    let Error::TooLarge { size, limit, .. } = e else {
                        unreachable!()
                    };
                    assert_eq!(limit, DEFAULT_MAX_SIZE);
                    assert!(
                        (2 * DEFAULT_MAX_SIZE..2 * DEFAULT_MAX_SIZE + 64).contains(&size),
                        "{size}"
                    );
                    assert!(
                        e.to_string().contains(&format!("is at least {size} bytes")),
                        "{e}"
                    );
                }
                other => panic!("{other:?}"),
            }
            // It stopped at twice the limit: about 32,000 of the 1,048,576 strings.
            let serialized = state.serialized.get();
            assert!(serialized < 2 * DEFAULT_MAX_SIZE / 64 + 10, "{serialized}");
        }
        // Just over the limit, the size is exact.
        let codec = Codec::with_max_size(4096);
        let over = Lazy {
            items: 100,
            serialized: std::cell::Cell::new(0),
        };
        let exact = plain().encode(&id(), &over).unwrap().len();
        match codec.encode(&id(), &over) {
            Err(e @ Error::TooLarge { .. }) => {
                assert!(
                    e.to_string()
                        .contains(&format!("is {exact} bytes, over the limit of 4096")),
                    "{e}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    /// A plain envelope of `depth` arrays, one inside the other, around `1`.
    fn nested_arrays(depth: usize) -> Vec<u8> {
        let mut bytes = vec![MAGIC, FORMAT_V1, 0];
        bytes.extend(std::iter::repeat_n(0x91, depth));
        bytes.push(0x01);
        bytes
    }

    /// A type whose values nest as deep as the data says: through enums (maps of one entry),
    /// which rmp-serde's own depth bound does not count.
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    enum Tree {
        Leaf(u8),
        Node(Box<Tree>),
    }

    #[test]
    fn deeply_nested_payloads_are_corrupt_not_a_stack_overflow() {
        let hostile = nested_arrays(100_000);
        let codec = Codec::with_max_size(usize::MAX);
        expect_corrupt(
            codec.decode::<serde_json::Value>(&id(), &hostile),
            "nests arrays and maps more than 128 deep",
        );
        // Through enums: `{"Node": {"Node": ... {"Leaf": 1}}}`.
        let mut tree = vec![MAGIC, FORMAT_V1, 0];
        for _ in 0..100_000 {
            tree.extend([0x81, 0xa4]);
            tree.extend(b"Node");
        }
        tree.extend([0x81, 0xa4]);
        tree.extend(b"Leaf");
        tree.push(1);
        expect_corrupt(codec.decode::<Tree>(&id(), &tree), "more than 128 deep");
        // Compressed and encrypted, the body is checked once opened.
        let keyed = codec
            .clone()
            .with_compression(Compression::Lz4 { min_bytes: 0 })
            .with_encryption(rotated());
        let sealed = keyed.reencode(&id(), &nested_arrays(100)).unwrap();
        assert_eq!(sealed[2], FLAG_COMPRESSED | FLAG_ENCRYPTED);
        let shallow = keyed.clone().with_max_depth(50);
        expect_corrupt(
            shallow.decode::<serde_json::Value>(&id(), &sealed),
            "more than 50 deep",
        );
        assert!(keyed.decode::<serde_json::Value>(&id(), &sealed).is_ok());
        // At the bound, it decodes (on a test thread's stack, in a debug build).
        let value: serde_json::Value = codec.decode(&id(), &nested_arrays(128)).unwrap();
        assert!(value.is_array());
        expect_corrupt(
            codec.decode::<serde_json::Value>(&id(), &nested_arrays(129)),
            "128 deep",
        );
        let tree_ok = [
            &[MAGIC, FORMAT_V1, 0][..],
            &tree[tree.len() - 127 * 6 - 7..],
        ]
        .concat();
        if let Err(e) = codec.decode::<Tree>(&id(), &tree_ok) {
            panic!("{e}");
        }
        assert_eq!(Codec::default().max_depth(), DEFAULT_MAX_DEPTH);
        assert_eq!(Codec::default().with_max_depth(0).max_depth(), 1);
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
                        // then differ from the original, unless the flip turned a MessagePack
                        // marker into another encoding of the same value (str 8/16/32 into
                        // bin 8/16/32, which serde reads as the same UTF-8 string; uint into
                        // int of the same width). A plain body has no checksum by design.
                        let same_value_markers = [
                            (0xd9, 0xc4), (0xda, 0xc5), (0xdb, 0xc6),
                            (0xcc, 0xd0), (0xcd, 0xd1), (0xce, 0xd2), (0xcf, 0xd3),
                        ];
                        let (was, now) = (original[pos], bytes[pos]);
                        let equivalent = same_value_markers
                            .iter()
                            .any(|&(a, b)| (was, now) == (a, b) || (was, now) == (b, a));
                        if !equivalent {
                            prop_assert_ne!(back, agent.clone());
                        }
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
            let keyed = Codec::default().with_encryption(rotated());
            let _ = keyed.decode::<serde_json::Value>(&id(), &bytes);
            let _ = keyed.reencode(&id(), &bytes);
            let _ = Codec::inspect(&id(), &bytes);
        }

        #[test]
        fn encrypted_round_trip(agent in any_agent()) {
            for codec in encrypting() {
                let bytes = codec.encode(&id(), &agent).unwrap();
                prop_assert_eq!(bytes[2] & FLAG_ENCRYPTED, FLAG_ENCRYPTED);
                for reader in encrypting() {
                    let back: Agent = reader.decode(&id(), &bytes).unwrap();
                    prop_assert_eq!(&back, &agent);
                }
                let refused = plain().decode::<Agent>(&id(), &bytes);
                prop_assert!(matches!(refused, Err(Error::Corrupt { .. })), "{:?}", refused);
            }
        }

        #[test]
        fn altered_encrypted_envelopes_are_corrupt(
            agent in any_agent(),
            pos in any::<prop::sample::Index>(),
            xor in 1u8..,
        ) {
            for codec in encrypting() {
                let mut bytes = codec.encode(&id(), &agent).unwrap().to_vec();
                let pos = pos.index(bytes.len());
                bytes[pos] ^= xor;
                // Every byte after the header is authenticated, and so is the header. (A flag
                // byte flipped to "not encrypted" reads the rest as a plain or compressed body:
                // for these small states, corrupt too.)
                let result = codec.decode::<Agent>(&id(), &bytes);
                prop_assert!(matches!(result, Err(Error::Corrupt { .. })), "{:?}", result);
            }
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
