//! [`SessionId`]: the only way to name a session, validated once at the edge.

use std::{borrow::Borrow, fmt, str::FromStr, sync::Arc};

/// Longest accepted session id, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// A validated session identifier: 1 to [`MAX_ID_LEN`] bytes of `[A-Za-z0-9_.:@-]`.
///
/// Every store key is built from a `SessionId`, so no key can carry whitespace, control
/// characters or Redis glob characters (`* ? [ ] \`). Cloning is cheap (a reference count).
///
/// ```
/// use session_core::SessionId;
///
/// let id: SessionId = "user-123".parse()?;
/// assert_eq!(id.as_str(), "user-123");
/// assert!(SessionId::new("user 123").is_err());
/// assert!(SessionId::new("cql:*").is_err());
/// # Ok::<(), session_core::InvalidId>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(Arc<str>);

impl SessionId {
    /// Validates `input` and wraps it.
    pub fn new(input: impl AsRef<str>) -> Result<Self, InvalidId> {
        let input = input.as_ref();
        validate(input)?;
        Ok(Self(Arc::from(input)))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A new id no one can guess: [`RANDOM_ID_BITS`] bits from the operating system's
    /// cryptographically secure random number generator, as 32 lowercase hex digits.
    ///
    /// An id is a bearer secret: whoever presents it gets the session. Mint ids with this
    /// (never from a counter, a timestamp, or a user name) when clients do not bring their
    /// own, and send them only over TLS.
    ///
    /// ```
    /// let id = session_core::SessionId::random()?;
    /// assert_eq!(id.as_str().len(), 32);
    /// # Ok::<(), session_core::NoRandomness>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`NoRandomness`] when the operating system cannot give random bytes (a sandbox
    /// without `getrandom(2)` or `/dev/urandom`).
    pub fn random() -> Result<Self, NoRandomness> {
        let mut bytes = [0u8; RANDOM_ID_BITS / 8];
        getrandom::fill(&mut bytes).map_err(|e| NoRandomness(e.to_string()))?;
        let mut text = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            text.push(char::from(HEX[usize::from(b >> 4)]));
            text.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        Ok(Self(Arc::from(text)))
    }
}

/// How many random bits [`SessionId::random`] draws.
pub const RANDOM_ID_BITS: usize = 128;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The operating system's random number generator failed ([`SessionId::random`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct NoRandomness(String);

/// Whether `b` may appear in a session id.
pub const fn is_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'@' | b'-')
}

fn validate(input: &str) -> Result<(), InvalidId> {
    if input.is_empty() {
        return Err(InvalidId::new(input, InvalidIdReason::Empty));
    }
    if input.len() > MAX_ID_LEN {
        return Err(InvalidId::new(
            input,
            InvalidIdReason::TooLong { len: input.len() },
        ));
    }
    if let Some((index, ch)) = input.char_indices().find(|&(_, c)| {
        // Every allowed character is ASCII, so a non-ASCII char is rejected whole.
        !(c.is_ascii() && is_id_byte(c as u8))
    }) {
        return Err(InvalidId::new(input, InvalidIdReason::Char { ch, index }));
    }
    Ok(())
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for SessionId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for SessionId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl FromStr for SessionId {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<&str> for SessionId {
    type Error = InvalidId;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl TryFrom<String> for SessionId {
    type Error = InvalidId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl serde::Serialize for SessionId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for SessionId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::new(&*s).map_err(serde::de::Error::custom)
    }
}

/// Why a string is not a valid [`SessionId`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidIdReason {
    /// The id is empty.
    Empty,
    /// The id is longer than [`MAX_ID_LEN`] bytes.
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The id contains a character outside `[A-Za-z0-9_.:@-]`.
    Char {
        /// The first offending character.
        ch: char,
        /// Its byte offset.
        index: usize,
    },
}

/// A rejected session id. Its `Display` quotes the input with every control or non-ASCII
/// character escaped, cut to a readable length, so it is safe to log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid session id {quoted}: {reason}")]
pub struct InvalidId {
    quoted: String,
    reason: InvalidIdReason,
}

impl InvalidId {
    fn new(input: &str, reason: InvalidIdReason) -> Self {
        Self {
            quoted: quote_for_humans(input, 64),
            reason,
        }
    }

    /// Why the id was rejected.
    pub fn reason(&self) -> &InvalidIdReason {
        &self.reason
    }

    /// The rejected input, quoted and escaped (and shortened when long).
    pub fn quoted_input(&self) -> &str {
        &self.quoted
    }
}

impl fmt::Display for InvalidIdReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("it is empty (expected 1 to 128 characters)"),
            Self::TooLong { len } => {
                write!(f, "it is {len} bytes long (expected at most {MAX_ID_LEN})")
            }
            Self::Char { ch, index } => write!(
                f,
                "character '{}' at byte {index} is not allowed (allowed: A-Z a-z 0-9 _ . : @ -)",
                ch.escape_default()
            ),
        }
    }
}

/// Quotes `input` for an error message or a log line: in double quotes, with every character
/// that is not printable ASCII (controls, non-ASCII, `"` and `\`) escaped as Rust's
/// [`char::escape_default`] does, and cut after `max_chars` characters (then `"...` ends it).
///
/// What a user typed can hold terminal escapes or a whole file; quoted this way it cannot move
/// the cursor or flood a message. This is the one quoting function of the project: ids, cursors,
/// configuration values and Redis URLs (after masking) are all quoted with it.
///
/// ```
/// use session_core::quote_for_humans;
///
/// assert_eq!(quote_for_humans("a b\n\"c\"", 64), r#""a b\n\"c\"""#);
/// assert_eq!(quote_for_humans("\u{1b}[31m", 64), r#""\u{1b}[31m""#);
/// assert_eq!(quote_for_humans("abcdef", 3), r#""abc"..."#);
/// ```
pub fn quote_for_humans(input: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(input.len().min(max_chars) + 2);
    out.push('"');
    for (n, c) in input.chars().enumerate() {
        if n == max_chars {
            out.push_str("\"...");
            return out;
        }
        if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        for ok in [
            "a",
            "user-123",
            "A.b:c@d_e-F9",
            "cql.session:42",
            &"x".repeat(128),
        ] {
            assert_eq!(
                SessionId::new(ok).map(|id| id.to_string()).as_deref(),
                Ok(ok)
            );
        }
    }

    #[test]
    fn rejects_with_a_reason_that_quotes_the_input_safely() {
        let e = SessionId::new("").unwrap_err();
        assert_eq!(e.reason(), &InvalidIdReason::Empty);
        let e = SessionId::new("x".repeat(129)).unwrap_err();
        assert_eq!(e.reason(), &InvalidIdReason::TooLong { len: 129 });
        let e = SessionId::new("ab\u{1b}[31m").unwrap_err();
        assert_eq!(
            e.reason(),
            &InvalidIdReason::Char {
                ch: '\u{1b}',
                index: 2
            }
        );
        let text = e.to_string();
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(text.contains("\\u{1b}"), "{text}");
        for glob in [
            "a*", "a?", "a[", "a]", "a\\b", "a b", "a\nb", "é", "a/b", "a\"b",
        ] {
            assert!(SessionId::new(glob).is_err(), "{glob:?} accepted");
        }
    }

    #[test]
    fn quote_for_humans_escapes_and_cuts_after_max_chars() {
        assert_eq!(
            quote_for_humans("a\nb\"c\\d é", 64),
            r#""a\nb\"c\\d \u{e9}""#
        );
        assert_eq!(quote_for_humans("", 64), r#""""#);
        assert_eq!(
            quote_for_humans(&"x".repeat(100), 100),
            format!("\"{}\"", "x".repeat(100))
        );
        assert_eq!(
            quote_for_humans(&"x".repeat(101), 100),
            format!("\"{}\"...", "x".repeat(100))
        );
        // Characters, not bytes: a cut never splits one.
        assert_eq!(quote_for_humans("ééé", 2), r#""\u{e9}\u{e9}"..."#);
    }

    #[test]
    fn serde_validates() {
        let id: SessionId = serde_json::from_str("\"abc\"").unwrap();
        assert_eq!(id.as_str(), "abc");
        assert!(serde_json::from_str::<SessionId>("\"a b\"").is_err());
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"abc\"");
    }

    proptest! {
        #[test]
        fn valid_ids_round_trip(s in "[A-Za-z0-9_.:@-]{1,128}") {
            let id = SessionId::new(&s).unwrap();
            prop_assert_eq!(id.as_str(), s.as_str());
            prop_assert_eq!(id.to_string().parse::<SessionId>().unwrap(), id);
        }

        #[test]
        fn any_string_is_accepted_iff_it_matches_the_alphabet(s in any::<String>()) {
            let expected = !s.is_empty() && s.len() <= MAX_ID_LEN && s.bytes().all(is_id_byte);
            let result = SessionId::new(&s);
            prop_assert_eq!(result.is_ok(), expected);
            if let Err(e) = result {
                let text = e.to_string();
                prop_assert!(text.chars().all(|c| !c.is_control()), "control char in {:?}", text);
                prop_assert!(text.len() < 600);
            }
        }

        #[test]
        fn strings_with_a_forbidden_byte_are_rejected(
            prefix in "[a-z]{0,10}",
            bad in "[ *?\\[\\]\\\\\t\r\n/\"'%#]",
            suffix in "[a-z]{0,10}",
        ) {
            let input = format!("{prefix}{bad}{suffix}");
            prop_assert!(SessionId::new(&input).is_err());
        }
    }

    #[test]
    fn random_ids_are_valid_distinct_and_full_width() {
        let ids: std::collections::HashSet<String> = (0..1000)
            .map(|_| SessionId::random().unwrap().as_str().to_owned())
            .collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            assert_eq!(id.len(), 32);
            assert!(SessionId::new(id).is_ok());
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
        }
        // Every hex digit position varies (no constant prefix from a weak source).
        let first: std::collections::HashSet<char> =
            ids.iter().filter_map(|id| id.chars().next()).collect();
        assert_eq!(first.len(), 16);
    }
}
