//! [`IdGlob`]: a Redis-style glob over session ids (`--match`), validated so that it can never
//! reach past the key prefix.
//!
//! Accepted: the id alphabet `[A-Za-z0-9_.:@-]` and `*`, `?`, `[...]` (with ranges `a-z` and
//! negation `^`). Refused: backslash escapes (no id needs one), anything outside the id
//! alphabet, an unclosed `[`. The Redis `MATCH` pattern is the escaped prefix followed by the
//! glob, so the prefix is always matched literally; ids are also matched client-side with the
//! same rules.

use session_core::is_id_byte;

use crate::error::CliError;

/// Longest glob accepted.
const MAX_GLOB_LEN: usize = 256;

/// A validated glob over session ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IdGlob(String);

impl IdGlob {
    /// Validates `input`; a usage error (exit 2) names what is wrong.
    pub(crate) fn parse(input: &str) -> Result<Self, CliError> {
        let bad = |why: &str| {
            CliError::usage(format!(
                "invalid glob {:?} for --match: {why}",
                input.chars().take(64).collect::<String>()
            ))
            .hint("globs use the id characters A-Z a-z 0-9 _ . : @ - and * ? [abc] [a-z] [^a]")
        };
        if input.is_empty() {
            return Err(bad("it is empty (use '*' for every session)"));
        }
        if input.len() > MAX_GLOB_LEN {
            return Err(bad("it is longer than 256 bytes"));
        }
        let bytes = input.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'*' | b'?' => i += 1,
                b'[' => {
                    let close = bytes[i + 1..]
                        .iter()
                        .position(|&b| b == b']')
                        .ok_or_else(|| bad("a [ is not closed by ]"))?;
                    let class = &bytes[i + 1..i + 1 + close];
                    let class = class.strip_prefix(b"^").unwrap_or(class);
                    if class.is_empty() {
                        return Err(bad("an empty [] matches nothing"));
                    }
                    if let Some(&b) = class.iter().find(|&&b| !is_id_byte(b)) {
                        return Err(bad(&format!(
                            "'{}' inside [...] is not an id character",
                            char::from(b).escape_default()
                        )));
                    }
                    i += close + 2;
                }
                b']' => return Err(bad("a ] has no opening [")),
                b'\\' => {
                    return Err(bad(
                        "backslash escapes are not needed: ids hold no glob characters",
                    ));
                }
                b if is_id_byte(b) => i += 1,
                _ => {
                    let ch = input[i..].chars().next().unwrap_or('?');
                    return Err(bad(&format!(
                        "'{}' is not an id character",
                        ch.escape_default()
                    )));
                }
            }
        }
        Ok(Self(input.to_owned()))
    }

    /// The glob as given.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// The Redis `SCAN ... MATCH` pattern for keys `{prefix}{id}` with a matching id: the
    /// prefix with its glob characters escaped, then the glob.
    pub(crate) fn redis_pattern(&self, prefix: &str) -> String {
        let mut pattern = escape_prefix(prefix);
        pattern.push_str(&self.0);
        pattern
    }

    /// Whether `id` matches (the same rules as Redis' `stringmatchlen`, case-sensitive).
    pub(crate) fn matches(&self, id: &str) -> bool {
        glob_match(self.0.as_bytes(), id.as_bytes())
    }
}

/// The prefix with the Redis glob characters `* ? [ ] \` escaped.
pub(crate) fn escape_prefix(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 4);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where to resume after the last `*`: its pattern position and the text it swallowed up to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        let step = match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
                continue;
            }
            Some(b'?') => Some(p + 1),
            Some(b'[') => {
                class_match(&pattern[p..], text[t]).and_then(|(ok, len)| ok.then_some(p + len))
            }
            Some(&c) if c == text[t] => Some(p + 1),
            _ => None,
        };
        match (step, star) {
            (Some(next), _) => {
                p = next;
                t += 1;
            }
            (None, Some((sp, st))) => {
                p = sp + 1;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            (None, None) => return false,
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// Matches `c` against the class at the start of `pattern` (`[...]`): whether it matches and
/// the class's length. `None` for an unclosed class (validation refuses those).
fn class_match(pattern: &[u8], c: u8) -> Option<(bool, usize)> {
    let close = pattern[1..].iter().position(|&b| b == b']')? + 1;
    let mut class = &pattern[1..close];
    let negate = class.first() == Some(&b'^');
    if negate {
        class = &class[1..];
    }
    let mut found = false;
    let mut i = 0;
    while i < class.len() {
        if i + 2 < class.len() && class[i + 1] == b'-' {
            let (lo, hi) = (class[i].min(class[i + 2]), class[i].max(class[i + 2]));
            found |= (lo..=hi).contains(&c);
            i += 3;
        } else {
            found |= class[i] == c;
            i += 1;
        }
    }
    Some((found != negate, close + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_globs_match_like_redis() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", "anything", true),
            ("user-*", "user-123", true),
            ("user-*", "admin-1", false),
            ("user-?", "user-1", true),
            ("user-?", "user-12", false),
            ("*-1", "a-b-1", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("[abc]x", "bx", true),
            ("[^abc]x", "bx", false),
            ("[a-c]x", "cx", true),
            ("[a-c]x", "dx", false),
            ("s[0-9]*", "s7-tail", true),
            ("exact", "exact", true),
            ("exact", "exactly", false),
        ];
        for (glob, id, expected) in cases {
            let g = IdGlob::parse(glob).unwrap();
            assert_eq!(g.matches(id), *expected, "{glob} vs {id}");
        }
    }

    #[test]
    fn bad_globs_are_usage_errors() {
        for bad in [
            "", "a b", "a\\*", "[abc", "a]", "[]", "x/y", "é*", "[a b]", "a\n",
        ] {
            let e = IdGlob::parse(bad).unwrap_err();
            assert!(e.is_usage(), "{bad:?}");
        }
    }

    #[test]
    fn the_prefix_is_escaped_so_the_glob_cannot_reach_past_it() {
        let g = IdGlob::parse("*").unwrap();
        assert_eq!(g.redis_pattern("cql:session:"), "cql:session:*");
        assert_eq!(g.redis_pattern("a[1]*?\\:"), "a\\[1\\]\\*\\?\\\\:*");
    }
}
