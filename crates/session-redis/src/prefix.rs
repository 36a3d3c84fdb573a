//! [`KeyPrefix`]: what every Redis key of a session starts with.

use std::{fmt, str::FromStr};

/// The longest accepted prefix, in bytes.
pub const MAX_PREFIX_LEN: usize = 64;

/// The prefix of every session key in Redis (`{prefix}{id}`), default `cql:session:`.
///
/// 1 to [`MAX_PREFIX_LEN`] bytes of printable ASCII without whitespace and without the Redis
/// glob characters `* ? [ ] \`, so that `SCAN MATCH {prefix}*` matches exactly the sessions;
/// a `}` only as the end of a Redis Cluster hash tag (`{sessions}:`), so that the write path's
/// staged records share the session key's slot.
/// It may not be empty: an empty prefix would make listings walk every key of the database.
///
/// ```
/// use session_redis::KeyPrefix;
///
/// assert_eq!(KeyPrefix::default().as_str(), "cql:session:");
/// assert_eq!("myapp:s:".parse::<KeyPrefix>().map(|p| p.to_string()), Ok("myapp:s:".into()));
/// assert!("my app:".parse::<KeyPrefix>().is_err());
/// assert!("app:*".parse::<KeyPrefix>().is_err());
/// assert!("".parse::<KeyPrefix>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KeyPrefix(String);

impl KeyPrefix {
    /// The default, the seed's `cql:session:`.
    pub const DEFAULT: &'static str = "cql:session:";

    /// What a valid prefix looks like, in words: the `expected` part of configuration errors.
    pub const EXPECTED: &'static str = "1 to 64 printable ASCII characters without whitespace \
         and without the Redis glob characters * ? [ ] \\, braces only as one hash tag \
         (e.g. cql:session: or {sessions}:)";

    /// Validates `prefix`. The error says what is wrong with it.
    pub fn new(prefix: impl Into<String>) -> Result<Self, InvalidPrefix> {
        let prefix = prefix.into();
        if prefix.is_empty() {
            return Err(InvalidPrefix::Empty);
        }
        if prefix.len() > MAX_PREFIX_LEN {
            return Err(InvalidPrefix::TooLong(prefix.len()));
        }
        if let Some(c) = prefix
            .chars()
            .find(|c| !c.is_ascii_graphic() || matches!(c, '*' | '?' | '[' | ']' | '\\'))
        {
            return Err(InvalidPrefix::Char(c));
        }
        // Redis Cluster hashes a key by its first `{tag}` (non-empty), else whole. The write
        // path stages records in keys of the session key's slot: `<key>~w..` when the key has
        // a tag, `{<key>}~w..` when it has none, which a `}` inside the key would cut short.
        if prefix.contains('}') && !has_hash_tag(&prefix) {
            return Err(InvalidPrefix::Braces);
        }
        Ok(Self(prefix))
    }

    /// The prefix as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether Redis Cluster would hash `key` by a `{tag}` inside it rather than whole: the first
/// `{`, then the first `}` after it, with at least one character between.
pub(crate) fn has_hash_tag(key: &str) -> bool {
    key.find('{')
        .and_then(|open| key[open + 1..].find('}'))
        .is_some_and(|len| len > 0)
}

impl Default for KeyPrefix {
    fn default() -> Self {
        Self(Self::DEFAULT.to_owned())
    }
}

impl fmt::Debug for KeyPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for KeyPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for KeyPrefix {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for KeyPrefix {
    type Err = InvalidPrefix;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// Why a string is not a valid [`KeyPrefix`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidPrefix {
    /// The prefix is empty.
    Empty,
    /// The prefix is longer than [`MAX_PREFIX_LEN`] bytes.
    TooLong(usize),
    /// The prefix contains whitespace, a control or non-ASCII character, or a glob character.
    Char(char),
    /// The prefix contains a `}` that is not the end of a Redis Cluster hash tag (`{...}`
    /// with at least one character inside, the first `{` of the prefix).
    Braces,
}

impl fmt::Display for InvalidPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("the key prefix is empty"),
            Self::TooLong(len) => write!(
                f,
                "the key prefix is {len} bytes long (at most {MAX_PREFIX_LEN})"
            ),
            Self::Char(c) => write!(
                f,
                "the key prefix contains '{}' (no whitespace, no control or non-ASCII \
                 characters, no Redis glob characters * ? [ ] \\)",
                c.escape_default()
            ),
            Self::Braces => f.write_str(
                "the key prefix contains a '}' that does not close a hash tag (braces in a \
                 prefix must form one Redis Cluster hash tag, e.g. {sessions}:)",
            ),
        }
    }
}

impl std::error::Error for InvalidPrefix {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn braces_must_form_a_hash_tag() {
        for good in ["{sessions}:", "app:{s}:", "a{b", "{x}}", "}{x}", "app:"] {
            assert!(KeyPrefix::new(good).is_ok(), "{good}");
        }
        for bad in ["a}b", "a{}b", "app:}"] {
            assert_eq!(KeyPrefix::new(bad), Err(InvalidPrefix::Braces), "{bad}");
        }
    }
}
