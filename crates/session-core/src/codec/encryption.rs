//! [`EncryptionKeys`]: the keys a [`Codec`](crate::Codec) encrypts and decrypts envelopes
//! with, and the AEAD step itself (AES-256-GCM, `ring`).
//!
//! An encrypted envelope is `[MAGIC, FORMAT_V1, flags | FLAG_ENCRYPTED, key id length (1
//! byte), key id, nonce (12 bytes), ciphertext, tag (16 bytes)]`. The plaintext is the body
//! the envelope would have without encryption (the MessagePack, or the compressed body), so a
//! body is compressed, then encrypted. The associated data is every envelope byte before the
//! nonce (header, key id length, key id), then the session id's length (one byte) and the
//! session id: a ciphertext copied under another session id, or with any header bit changed,
//! does not decrypt.

use std::fmt;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

use crate::{Error, SessionId, quote_for_humans};

/// Bytes of an encryption key: AES-256.
pub const KEY_LEN: usize = 32;
/// The longest key id, in bytes.
pub const MAX_KEY_ID_LEN: usize = 32;
/// Bytes of the random nonce of every encrypted envelope.
pub(crate) const NONCE_LEN: usize = 12;
/// Bytes of the authentication tag at the end of every encrypted envelope.
pub(crate) const TAG_LEN: usize = 16;

/// Whether `id` may name an encryption key: 1 to [`MAX_KEY_ID_LEN`] bytes of
/// `[A-Za-z0-9_.-]` (so that it reads in a log line and cannot be mistaken for the `id:key`
/// and `,` separators of `SESSION_ENCRYPTION_KEYS`).
pub fn is_valid_key_id(id: &str) -> bool {
    (1..=MAX_KEY_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Why a set of [`EncryptionKeys`] could not be made. Never shows a key, only ids.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidEncryptionKeys {
    /// No key was given: at least one is needed (the first encrypts).
    #[error("no encryption key given: at least one is needed (the first encrypts)")]
    Empty,
    /// A key id is not 1 to 32 characters of `A-Z a-z 0-9 _ . -`.
    #[error("key id {id} is not 1 to {MAX_KEY_ID_LEN} characters of A-Z a-z 0-9 _ . -")]
    InvalidId {
        /// The id, quoted and shortened.
        id: String,
    },
    /// Two keys have the same id: an envelope names the key it was encrypted with by its id,
    /// so ids must be unique.
    #[error("key id {id} is given twice (key ids must be unique)")]
    DuplicateId {
        /// The id given twice.
        id: String,
    },
    /// The AES-256-GCM implementation refused the key (it accepts any 32 bytes, so this
    /// should not happen).
    #[error("key {id} was refused by AES-256-GCM")]
    Refused {
        /// The id of the key.
        id: String,
    },
}

/// One key: its id, its bytes (for equality only) and the AEAD key made from them.
#[derive(Clone)]
struct Key {
    id: String,
    bytes: [u8; KEY_LEN],
    aead: LessSafeKey,
}

/// The keys of encryption at rest: the first (the *current* key) encrypts every envelope the
/// codec writes; every key decrypts the envelopes that name it. Rotation is adding a new key in
/// front and keeping the old ones until no session is encrypted under them any more
/// (`sessionctl rekey` rewrites every session under the current key).
///
/// Neither `Debug` nor `Display` shows a key, only the ids.
///
/// An encrypted envelope is `[MAGIC, FORMAT_V1, flags | FLAG_ENCRYPTED, key id length (1 byte),
/// key id, nonce (12 bytes), ciphertext, tag (16 bytes)]`, AES-256-GCM. The plaintext is the
/// body the envelope would have without encryption (compressed first, when it is). Every write
/// draws a fresh random nonce from the operating system. The associated data is every byte
/// before the nonce, then the session id's length (one byte) and the session id: an envelope
/// copied under another session id, or altered anywhere, does not decrypt
/// ([`Error::Corrupt`](crate::Error::Corrupt)).
///
/// ```
/// use session_core::{Codec, EncryptionKeys, SessionId};
///
/// let old = EncryptionKeys::new("k1", [7; 32])?;
/// let rotated = EncryptionKeys::from_keys([("k2", [9; 32]), ("k1", [7; 32])])?;
/// assert_eq!(rotated.current_id(), "k2");
/// assert_eq!(format!("{rotated:?}"), r#"EncryptionKeys { encrypts: "k2", decrypts: ["k2", "k1"] }"#);
///
/// let id = SessionId::new("user-1")?;
/// let written = Codec::default().with_encryption(old).encode(&id, &"hello")?;
/// // The rotated codec writes under k2 and still reads what k1 encrypted.
/// let codec = Codec::default().with_encryption(rotated);
/// assert_eq!(codec.decode::<String>(&id, &written)?, "hello");
/// assert_eq!(Codec::inspect(&id, &codec.encode(&id, &"hi")?)?.key_id(), Some("k2"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct EncryptionKeys {
    /// The key that encrypts.
    first: Key,
    /// The other keys, which only decrypt.
    rest: Vec<Key>,
}

impl EncryptionKeys {
    /// One key, `id`, that encrypts and decrypts.
    ///
    /// Errors: [`InvalidEncryptionKeys::InvalidId`] when `id` is not a valid key id
    /// ([`is_valid_key_id`]).
    pub fn new(id: impl Into<String>, key: [u8; KEY_LEN]) -> Result<Self, InvalidEncryptionKeys> {
        Self::from_keys([(id, key)])
    }

    /// Several keys: the first encrypts, all decrypt.
    ///
    /// Errors: [`InvalidEncryptionKeys`] when there is none, when an id is invalid or when an
    /// id is given twice.
    pub fn from_keys<I, S>(keys: I) -> Result<Self, InvalidEncryptionKeys>
    where
        I: IntoIterator<Item = (S, [u8; KEY_LEN])>,
        S: Into<String>,
    {
        let mut keys = keys.into_iter();
        let Some((id, bytes)) = keys.next() else {
            return Err(InvalidEncryptionKeys::Empty);
        };
        let mut out = Self {
            first: Key::new(id.into(), bytes)?,
            rest: Vec::new(),
        };
        for (id, bytes) in keys {
            out = out.with_old_key(id, bytes)?;
        }
        Ok(out)
    }

    /// These keys and one more that only decrypts (an older key, kept while sessions
    /// encrypted under it remain).
    ///
    /// Errors: as [`from_keys`](Self::from_keys).
    pub fn with_old_key(
        mut self,
        id: impl Into<String>,
        key: [u8; KEY_LEN],
    ) -> Result<Self, InvalidEncryptionKeys> {
        let key = Key::new(id.into(), key)?;
        if self.contains(&key.id) {
            return Err(InvalidEncryptionKeys::DuplicateId { id: key.id });
        }
        self.rest.push(key);
        Ok(self)
    }

    /// The id of the key that encrypts (the first).
    pub fn current_id(&self) -> &str {
        &self.current().id
    }

    /// Every key id, the current one first.
    pub fn ids(&self) -> impl Iterator<Item = &str> + '_ {
        self.keys().map(|k| k.id.as_str())
    }

    /// Whether a key of this id is among these keys.
    pub fn contains(&self, id: &str) -> bool {
        self.keys().any(|k| k.id == id)
    }

    fn keys(&self) -> impl Iterator<Item = &Key> + '_ {
        std::iter::once(&self.first).chain(&self.rest)
    }

    fn current(&self) -> &Key {
        &self.first
    }

    fn find(&self, id: &[u8]) -> Option<&Key> {
        self.keys().find(|k| k.id.as_bytes() == id)
    }

    /// Bytes between the 3-byte header and the ciphertext when the current key encrypts.
    pub(crate) fn prefix_len(&self) -> usize {
        1 + self.current().id.len() + NONCE_LEN
    }

    /// Encrypts `envelope[prefix_len..]` in place under the current key and a fresh random
    /// nonce, writes the key id and nonce after the 3-byte header (which the caller filled
    /// in, with [`FLAG_ENCRYPTED`](crate::FLAG_ENCRYPTED)) and appends the tag.
    pub(crate) fn seal(&self, id: &SessionId, envelope: &mut Vec<u8>) -> Result<(), Error> {
        let key = self.current();
        let header_len = crate::HEADER_LEN;
        let id_len = key.id.len();
        let nonce_at = header_len + 1 + id_len;
        let body_at = nonce_at + NONCE_LEN;
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| Error::Encode {
            id: id.clone(),
            reason: format!("no random nonce for the encryption: {e}"),
        })?;
        // Key ids are at most 32 bytes: the length fits its byte.
        envelope[header_len] = id_len as u8;
        envelope[header_len + 1..nonce_at].copy_from_slice(key.id.as_bytes());
        envelope[nonce_at..body_at].copy_from_slice(&nonce);
        let aad = associated_data(&envelope[..nonce_at], id);
        let tag = key
            .aead
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut envelope[body_at..],
            )
            .map_err(|_| Error::Encode {
                id: id.clone(),
                reason: "the body is too long to encrypt".to_owned(),
            })?;
        envelope.extend_from_slice(tag.as_ref());
        Ok(())
    }
}

/// An encrypted envelope taken apart: which key, which nonce, what is sealed.
pub(crate) struct Sealed<'a> {
    /// Everything before the nonce: header, key id length, key id (associated data).
    pub(crate) head: &'a [u8],
    pub(crate) key_id: &'a [u8],
    nonce: [u8; NONCE_LEN],
    /// Ciphertext and tag.
    sealed: &'a [u8],
}

impl<'a> Sealed<'a> {
    /// Splits `envelope` (flags with [`FLAG_ENCRYPTED`](crate::FLAG_ENCRYPTED)) into its parts.
    pub(crate) fn parse(id: &SessionId, envelope: &'a [u8]) -> Result<Self, Error> {
        let header_len = crate::HEADER_LEN;
        let rest = &envelope[header_len.min(envelope.len())..];
        let Some((&id_len, after)) = rest.split_first() else {
            return Err(Error::corrupt(
                id,
                "the encrypted envelope ends before its key id",
            ));
        };
        let id_len = usize::from(id_len);
        if id_len == 0 || id_len > MAX_KEY_ID_LEN {
            return Err(Error::corrupt(
                id,
                format!(
                    "the encrypted envelope's key id is {id_len} bytes long (1 to \
                     {MAX_KEY_ID_LEN} expected)"
                ),
            ));
        }
        let Some((key_id, after)) = after.split_at_checked(id_len) else {
            return Err(Error::corrupt(
                id,
                "the encrypted envelope ends inside its key id",
            ));
        };
        let valid = std::str::from_utf8(key_id).is_ok_and(is_valid_key_id);
        if !valid {
            return Err(Error::corrupt(
                id,
                "the encrypted envelope's key id is not a valid key id",
            ));
        }
        let Some((nonce, sealed)) = after.split_first_chunk::<NONCE_LEN>() else {
            return Err(Error::corrupt(
                id,
                "the encrypted envelope ends inside its nonce",
            ));
        };
        if sealed.len() < TAG_LEN {
            return Err(Error::corrupt(
                id,
                format!(
                    "the encrypted envelope's ciphertext and tag are {} bytes, shorter than \
                     the {TAG_LEN}-byte tag",
                    sealed.len()
                ),
            ));
        }
        Ok(Self {
            head: &envelope[..header_len + 1 + id_len],
            key_id,
            nonce: *nonce,
            sealed,
        })
    }

    /// The key id as text (validated by [`parse`](Self::parse)).
    pub(crate) fn key_id_text(&self) -> String {
        String::from_utf8_lossy(self.key_id).into_owned()
    }

    /// Bytes encryption added to the envelope.
    pub(crate) fn overhead(&self) -> usize {
        1 + self.key_id.len() + NONCE_LEN + TAG_LEN
    }

    /// Decrypts with the key it names among `keys` (`None`: the codec has none).
    pub(crate) fn open(
        &self,
        id: &SessionId,
        keys: Option<&EncryptionKeys>,
    ) -> Result<Vec<u8>, Error> {
        let Some(keys) = keys else {
            return Err(Error::corrupt(
                id,
                format!(
                    "the envelope is encrypted (key {}) and no encryption key is configured \
                     (SESSION_ENCRYPTION_KEYS)",
                    self.key_id_text()
                ),
            ));
        };
        let Some(key) = keys.find(self.key_id) else {
            return Err(Error::corrupt(
                id,
                format!(
                    "the envelope is encrypted under key {}, which is not among the configured \
                     keys ({})",
                    self.key_id_text(),
                    keys.ids().collect::<Vec<_>>().join(", ")
                ),
            ));
        };
        let mut buf = self.sealed.to_vec();
        let aad = associated_data(self.head, id);
        let len = key
            .aead
            .open_in_place(
                Nonce::assume_unique_for_key(self.nonce),
                Aad::from(aad),
                &mut buf,
            )
            .map_err(|_| {
                Error::corrupt(
                    id,
                    format!(
                        "the envelope does not decrypt under key {}: it was altered, copied \
                         from another session, or encrypted with another key of that id",
                        key.id
                    ),
                )
            })?
            .len();
        buf.truncate(len);
        Ok(buf)
    }
}

/// `head` (header, key id length, key id), then the session id's length and the session id.
fn associated_data(head: &[u8], id: &SessionId) -> Vec<u8> {
    let sid = id.as_str().as_bytes();
    let mut aad = Vec::with_capacity(head.len() + 1 + sid.len());
    aad.extend_from_slice(head);
    // Session ids are at most 128 bytes: the length fits its byte.
    aad.push(sid.len() as u8);
    aad.extend_from_slice(sid);
    aad
}

impl Key {
    fn new(id: String, bytes: [u8; KEY_LEN]) -> Result<Self, InvalidEncryptionKeys> {
        if !is_valid_key_id(&id) {
            return Err(InvalidEncryptionKeys::InvalidId {
                id: quote_for_humans(&id, MAX_KEY_ID_LEN + 8),
            });
        }
        // AES-256-GCM takes any 32 bytes: `new` fails only for a wrong length.
        let aead = UnboundKey::new(&AES_256_GCM, &bytes)
            .map_err(|_| InvalidEncryptionKeys::Refused { id: id.clone() })?;
        Ok(Self {
            id,
            bytes,
            aead: LessSafeKey::new(aead),
        })
    }
}

impl PartialEq for EncryptionKeys {
    /// The same ids, in the same order, with the same keys.
    fn eq(&self, other: &Self) -> bool {
        self.rest.len() == other.rest.len()
            && self
                .keys()
                .zip(other.keys())
                .all(|(a, b)| a.id == b.id && a.bytes == b.bytes)
    }
}

impl Eq for EncryptionKeys {}

impl fmt::Debug for EncryptionKeys {
    /// The ids only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptionKeys")
            .field("encrypts", &self.current_id())
            .field("decrypts", &self.ids().collect::<Vec<_>>())
            .finish()
    }
}

impl fmt::Display for EncryptionKeys {
    /// `k2 (encrypts), k1`: the ids only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, id) in self.ids().enumerate() {
            if n == 0 {
                write!(f, "{id} (encrypts)")?;
            } else {
                write!(f, ", {id}")?;
            }
        }
        Ok(())
    }
}
