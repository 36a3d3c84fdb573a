//! Write tokens: what tells one stored content of a session from every other.
//!
//! A version number alone does not identify content: when a server loses acknowledged writes
//! (a Redis restart from an older snapshot, AOF `everysec`, a replica promoted after
//! asynchronous replication), two different records can both be "version 3". So every write
//! stores a fresh random [`WriteToken`], and a conditional write
//! ([`Condition::IfUnchanged`](crate::Condition::IfUnchanged)) compares tokens: a local copy is
//! then a valid basis only for exactly the content it saw, whatever the server forgot.
//!
//! A record keeps its last few tokens, newest first ([`RecentTokens`]), so that a writer whose
//! reply was lost can tell afterwards whether its write landed, even when another writer has
//! built on it since.

use std::fmt;

/// How many tokens a record keeps: its own and those of the writes before it.
pub const RECENT_TOKENS: usize = 8;

/// Characters of a token's text form (lowercase hex, zero-padded).
pub const TOKEN_HEX_LEN: usize = 16;

/// The identity of one write: 64 random bits, never zero.
///
/// `Display` and [`WriteToken::parse_hex`] use 16 lowercase hex digits, the form Redis stores.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WriteToken(u64);

impl WriteToken {
    /// A fresh random token.
    pub fn random() -> Self {
        Self(fastrand::u64(1..))
    }

    /// The token with these bits, or `None` for 0 (which no write ever draws).
    pub const fn from_u64(bits: u64) -> Option<Self> {
        if bits == 0 { None } else { Some(Self(bits)) }
    }

    /// The token's bits.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// Parses the 16-hex-digit form; `None` for anything else (or zero).
    pub fn parse_hex(text: &[u8]) -> Option<Self> {
        if text.len() != TOKEN_HEX_LEN {
            return None;
        }
        let mut bits = 0u64;
        for &b in text {
            let digit = match b {
                b'0'..=b'9' => b - b'0',
                b'a'..=b'f' => b - b'a' + 10,
                _ => return None,
            };
            bits = bits << 4 | u64::from(digit);
        }
        Self::from_u64(bits)
    }
}

/// `v` as 16 lowercase hex digits (what `{:016x}` writes, without the formatting machinery:
/// every write formats the record's tokens).
fn hex16(v: u64) -> [u8; TOKEN_HEX_LEN] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; TOKEN_HEX_LEN];
    for (i, digit) in out.iter_mut().enumerate() {
        *digit = DIGITS[((v >> ((TOKEN_HEX_LEN - 1 - i) * 4)) & 0xf) as usize];
    }
    out
}

/// The hex digits as text (they are ASCII).
fn hex_str(digits: &[u8; TOKEN_HEX_LEN]) -> &str {
    std::str::from_utf8(digits).unwrap_or_default()
}

impl fmt::Display for WriteToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(hex_str(&hex16(self.0)))
    }
}

impl fmt::Debug for WriteToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WriteToken({self})")
    }
}

/// The tokens of a record's last writes, newest first (at most [`RECENT_TOKENS`]).
///
/// Empty for a record that predates tokens (an older layout, or written by hand).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RecentTokens {
    tokens: [u64; RECENT_TOKENS],
    len: u8,
}

impl RecentTokens {
    /// No tokens.
    pub const fn new() -> Self {
        Self {
            tokens: [0; RECENT_TOKENS],
            len: 0,
        }
    }

    /// Just `token`: the history of a session's first write.
    pub fn first(token: WriteToken) -> Self {
        Self::new().after(token)
    }

    /// The history after a write with `token` on top of this one: `token` first, the oldest
    /// dropped when full.
    #[must_use]
    pub fn after(&self, token: WriteToken) -> Self {
        let mut next = Self::new();
        next.tokens[0] = token.0;
        let keep = usize::from(self.len).min(RECENT_TOKENS - 1);
        next.tokens[1..=keep].copy_from_slice(&self.tokens[..keep]);
        next.len = (keep + 1) as u8;
        next
    }

    /// The newest token: the current content's identity. `None` when empty.
    pub fn current(&self) -> Option<WriteToken> {
        self.iter().next()
    }

    /// The tokens, newest first.
    pub fn iter(&self) -> impl Iterator<Item = WriteToken> + '_ {
        self.tokens[..usize::from(self.len)]
            .iter()
            .copied()
            .filter_map(WriteToken::from_u64)
    }

    /// How many writes back `token` is (0: it is the current one), if it is kept.
    pub fn position(&self, token: WriteToken) -> Option<usize> {
        self.iter().position(|t| t == token)
    }

    /// The history as it was right after the write `position` writes back: what
    /// [`position`](Self::position) found, with the newer tokens removed.
    #[must_use]
    pub fn since(&self, position: usize) -> Self {
        let mut out = Self::new();
        let len = usize::from(self.len);
        if position < len {
            let rest = len - position;
            out.tokens[..rest].copy_from_slice(&self.tokens[position..len]);
            out.len = rest as u8;
        }
        out
    }

    /// How many tokens are kept.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether no token is kept.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The hex form Redis stores: [`TOKEN_HEX_LEN`] digits per token, newest first, no
    /// separator.
    pub fn to_hex(&self) -> String {
        let mut out = String::with_capacity(self.len() * TOKEN_HEX_LEN);
        for token in self.iter() {
            out.push_str(hex_str(&hex16(token.0)));
        }
        out
    }

    /// Parses [`to_hex`](Self::to_hex)'s form. `None` for a length that is not a multiple of
    /// [`TOKEN_HEX_LEN`], more than [`RECENT_TOKENS`] tokens, or a malformed token. Empty text
    /// is an empty history.
    pub fn parse_hex(text: &[u8]) -> Option<Self> {
        if !text.len().is_multiple_of(TOKEN_HEX_LEN) || text.len() > RECENT_TOKENS * TOKEN_HEX_LEN {
            return None;
        }
        let mut out = Self::new();
        for (n, chunk) in text.chunks(TOKEN_HEX_LEN).enumerate() {
            out.tokens[n] = WriteToken::parse_hex(chunk)?.0;
            out.len = (n + 1) as u8;
        }
        Some(out)
    }
}

impl fmt::Debug for RecentTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl FromIterator<WriteToken> for RecentTokens {
    /// Newest first; tokens past [`RECENT_TOKENS`] are dropped.
    fn from_iter<I: IntoIterator<Item = WriteToken>>(iter: I) -> Self {
        let mut out = Self::new();
        for token in iter.into_iter().take(RECENT_TOKENS) {
            out.tokens[usize::from(out.len)] = token.0;
            out.len += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(n: u64) -> WriteToken {
        WriteToken::from_u64(n).unwrap()
    }

    #[test]
    fn histories_keep_the_newest_tokens_first() {
        let mut h = RecentTokens::first(t(1));
        for n in 2..=20 {
            h = h.after(t(n));
        }
        assert_eq!(h.len(), RECENT_TOKENS);
        assert_eq!(h.current(), Some(t(20)));
        let all: Vec<u64> = h.iter().map(WriteToken::as_u64).collect();
        assert_eq!(all, (13..=20).rev().collect::<Vec<_>>());
        assert_eq!(h.position(t(18)), Some(2));
        assert_eq!(h.position(t(12)), None);
        assert_eq!(h.since(2).current(), Some(t(18)));
        assert_eq!(h.since(2).len(), RECENT_TOKENS - 2);
        assert!(h.since(99).is_empty());
    }

    #[test]
    fn hex_round_trips_and_rejects_malformed_text() {
        let h: RecentTokens = [t(0xabc), t(u64::MAX), t(1)].into_iter().collect();
        let hex = h.to_hex();
        assert_eq!(hex.len(), 3 * TOKEN_HEX_LEN);
        assert!(hex.starts_with("0000000000000abc"));
        assert_eq!(RecentTokens::parse_hex(hex.as_bytes()), Some(h));
        assert_eq!(RecentTokens::parse_hex(b""), Some(RecentTokens::new()));
        for bad in [
            &b"123"[..],
            b"000000000000000g",
            b"0000000000000000",
            b"000000000000000A",
        ] {
            assert_eq!(RecentTokens::parse_hex(bad), None, "{bad:?}");
        }
        let too_many = "0000000000000001".repeat(RECENT_TOKENS + 1);
        assert_eq!(RecentTokens::parse_hex(too_many.as_bytes()), None);
    }

    #[test]
    fn tokens_display_as_16_lowercase_hex_digits() {
        for v in [1, 0xabc, 0x0123_4567_89ab_cdef, u64::MAX, 1 << 63] {
            assert_eq!(t(v).to_string(), format!("{v:016x}"));
        }
        for _ in 0..1000 {
            let token = WriteToken::random();
            assert_eq!(
                WriteToken::parse_hex(token.to_string().as_bytes()),
                Some(token)
            );
        }
    }

    #[test]
    fn random_tokens_are_never_zero() {
        for _ in 0..1000 {
            assert_ne!(WriteToken::random().as_u64(), 0);
        }
    }
}
