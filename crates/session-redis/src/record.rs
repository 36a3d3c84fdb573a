//! The session record: one Redis string per session under `{prefix}{id}`, with a fixed-width
//! header in front of the meta and the payload.
//!
//! | offset | bytes | content |
//! |---|---|---|
//! | 0 | 128 | the write tokens of the last 8 writes, newest first, 16 lowercase hex digits each; unused slots are `-` |
//! | 128 | 32 | fences: the tokens of up to two writes a resolve declared lost (they must never land), `-` when none |
//! | 160 | 4 | the magic `sr1;` |
//! | 164 | 20 | the version, decimal, zero-padded |
//! | 184 | 16 | `created_at`, milliseconds since the epoch, decimal, zero-padded |
//! | 200 | 10 | the length of the meta, decimal, zero-padded |
//! | 210 | m | the meta: MessagePack (named) of `{ updated_at, size, summary, ttl_ms, prefix }` |
//! | 210 + m | rest | the payload (codec envelope), opaque bytes |
//!
//! Why a string with a fixed header (and not the hash of the earlier layout): a write stages
//! the record with one `SET ... PX` and the guard script reads the 160 bytes it compares with
//! one `GETRANGE` (the head token at offset 0, the fences beside it), so no script ever touches
//! the payload; the update script writes the header it computes into the staged record with
//! one `SETRANGE` (the widths are fixed, so nothing moves); a read is `GET` + `PTTL`; a
//! listing reads a bounded prefix (`GETRANGE 0 1023`) and never the payload. On Redis 7.0 and
//! Valkey 9 each of these costs less server time than the hash commands it replaces (see
//! BENCHMARKS.md, the layout section). Hashes of the earlier layouts stay readable (see
//! `layout.rs`); their next write replaces them with a string.
//!
//! The offsets are also written out in the scripts (`scripts.rs`), which the tests of this
//! module check against these constants.

use std::io::Write as _;
use std::time::Duration;

use bytes::Bytes;
use redis::{RedisWrite, ToRedisArgs};
use session_core::{Error, RecentTokens, Record, Result, SessionId, Timestamp};

use crate::layout::{self, Owner};

/// Bytes of the token list.
pub(crate) const TOKENS_LEN: usize = 128;
/// Where the fences start.
pub(crate) const FENCES_AT: usize = 128;
/// Bytes of the fences (two tokens).
pub(crate) const FENCES_LEN: usize = 32;
/// Where the magic starts.
pub(crate) const MAGIC_AT: usize = 160;
/// The magic: names the layout, and tells a record from any other string.
pub(crate) const MAGIC: &[u8; 4] = b"sr1;";
/// Where the version starts.
pub(crate) const VERSION_AT: usize = 164;
const VERSION_LEN: usize = 20;
/// Where `created_at` starts.
pub(crate) const CREATED_AT: usize = 184;
const CREATED_LEN: usize = 16;
/// Where the meta's length starts.
pub(crate) const META_LEN_AT: usize = 200;
const META_LEN_LEN: usize = 10;
/// Bytes of the header: where the meta starts.
pub(crate) const HEADER_LEN: usize = 210;
/// What a listing reads of each record (`GETRANGE key 0 LIST_READ-1`): the header and up to
/// 814 bytes of meta. A record with a longer meta is read again, as far as its meta goes.
pub(crate) const LIST_READ: usize = 1024;
// The fields follow each other without a gap.
const _: () = assert!(
    FENCES_AT == TOKENS_LEN
        && FENCES_AT + FENCES_LEN == MAGIC_AT
        && MAGIC_AT + MAGIC.len() == VERSION_AT
        && VERSION_AT + VERSION_LEN == CREATED_AT
        && CREATED_AT + CREATED_LEN == META_LEN_AT
        && META_LEN_AT + META_LEN_LEN == HEADER_LEN
);

/// The filler of unused token and fence slots.
const EMPTY: u8 = b'-';

/// The parsed header of a record.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    pub(crate) tokens: RecentTokens,
    pub(crate) version: u64,
    pub(crate) created: Timestamp,
    pub(crate) meta_len: usize,
}

/// The header of a staged record. With `tokens`, the record is complete (the guard and a
/// create move it into place as it is); without (`None`), the token and fence slots are
/// empty and the version and creation time zero, for the update script to fill in with one
/// `SETRANGE` of the first [`META_LEN_AT`] bytes.
pub(crate) fn header(
    tokens: Option<&RecentTokens>,
    version: u64,
    created: Timestamp,
    meta_len: usize,
) -> [u8; HEADER_LEN] {
    let mut out = [EMPTY; HEADER_LEN];
    if let Some(tokens) = tokens {
        let hex = tokens.to_hex();
        let hex = hex.as_bytes();
        let n = hex.len().min(TOKENS_LEN);
        out[..n].copy_from_slice(&hex[..n]);
    }
    out[MAGIC_AT..VERSION_AT].copy_from_slice(MAGIC);
    decimal(&mut out[VERSION_AT..CREATED_AT], version);
    decimal(&mut out[CREATED_AT..META_LEN_AT], created.as_millis());
    decimal(&mut out[META_LEN_AT..HEADER_LEN], meta_len as u64);
    out
}

/// Writes `value` zero-padded into `out` (the most significant digits are lost when it does
/// not fit, which the widths rule out: 20 digits hold any `u64`, 16 any time until the year
/// 318857, 10 any meta this store writes).
fn decimal(out: &mut [u8], mut value: u64) {
    for digit in out.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// One record as a single command argument: header, meta and payload written straight into
/// the command's buffer (no intermediate copy of the payload).
pub(crate) struct Staged<'a> {
    pub(crate) header: [u8; HEADER_LEN],
    pub(crate) meta: &'a [u8],
    pub(crate) payload: &'a [u8],
}

impl ToRedisArgs for Staged<'_> {
    fn write_redis_args<W>(&self, out: &mut W)
    where
        W: ?Sized + RedisWrite,
    {
        out.reserve_space_for_args([HEADER_LEN + self.meta.len() + self.payload.len()]);
        let mut arg = out.writer_for_next_arg();
        // Writes into the command's own Vec: they cannot fail.
        let _ = arg.write_all(&self.header);
        let _ = arg.write_all(self.meta);
        let _ = arg.write_all(self.payload);
    }

    fn num_of_args(&self) -> usize {
        1
    }
}

fn digits(id: &SessionId, what: &str, bytes: &[u8]) -> Result<u64> {
    std::str::from_utf8(bytes)
        .ok()
        .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| {
            Error::corrupt(
                id,
                format!(
                    "the record's {what} is not a number: {:?}",
                    String::from_utf8_lossy(bytes)
                ),
            )
        })
}

/// The tokens in a fixed block of slots: hex slots first, then only empty ones.
fn token_slots(id: &SessionId, block: &[u8]) -> Result<RecentTokens> {
    let used = block
        .chunks(session_core::TOKEN_HEX_LEN)
        .take_while(|slot| slot.iter().any(|&b| b != EMPTY))
        .count()
        * session_core::TOKEN_HEX_LEN;
    let rest_empty = block
        .get(used..)
        .is_some_and(|r| r.iter().all(|&b| b == EMPTY));
    match block.get(..used).and_then(RecentTokens::parse_hex) {
        Some(tokens) if rest_empty => Ok(tokens),
        _ => Err(Error::corrupt(
            id,
            format!(
                "the record's token list is malformed: {:?}",
                String::from_utf8_lossy(&block[..block.len().min(48)])
            ),
        )),
    }
}

/// Parses the header at the start of `bytes` (a whole record, or a listing's prefix of one).
pub(crate) fn parse_header(id: &SessionId, bytes: &[u8]) -> Result<Header> {
    if bytes.len() < HEADER_LEN || &bytes[MAGIC_AT..VERSION_AT] != MAGIC {
        return Err(Error::corrupt(
            id,
            format!(
                "the key holds a string that is not a session record ({} bytes, no header)",
                bytes.len()
            ),
        ));
    }
    let tokens = token_slots(id, &bytes[..TOKENS_LEN])?;
    let version = digits(id, "version", &bytes[VERSION_AT..CREATED_AT])?;
    let created = digits(id, "creation time", &bytes[CREATED_AT..META_LEN_AT])?;
    let meta_len = digits(id, "meta length", &bytes[META_LEN_AT..HEADER_LEN])?;
    Ok(Header {
        tokens,
        version,
        created: Timestamp::from_millis(created),
        meta_len: usize::try_from(meta_len).unwrap_or(usize::MAX),
    })
}

/// The record held in `value` (the reply of `GET`), with `ttl` (from `PTTL`). With `prefix`
/// (the reader's key prefix), a record of a store whose longer prefix starts with it is
/// refused as `Corrupt`, as in the hash layout.
pub(crate) fn record_from_value(
    id: &SessionId,
    value: Vec<u8>,
    ttl: Option<Duration>,
    prefix: Option<&str>,
) -> Result<Record> {
    let header = parse_header(id, &value)?;
    let meta_end = HEADER_LEN
        .checked_add(header.meta_len)
        .filter(|&end| end <= value.len())
        .ok_or_else(|| {
            Error::corrupt(
                id,
                format!(
                    "the record's meta length {} runs past its end ({} bytes)",
                    header.meta_len,
                    value.len()
                ),
            )
        })?;
    let (meta, owner) = layout::decode_meta(
        id,
        &value[HEADER_LEN..meta_end],
        Some(header.created),
        prefix,
    )?;
    if owner == Owner::Nested {
        return Err(layout::nested(id));
    }
    // The payload is a view into the reply's buffer, not a copy.
    let payload = Bytes::from(value).slice(meta_end..);
    Ok(Record::new(payload, meta, header.version)
        .with_ttl(ttl)
        .with_tokens(header.tokens))
}

/// Where the meta of a record sits, from its first bytes (no id, for `count`): `None` when
/// they are no record header.
pub(crate) fn meta_span(bytes: &[u8]) -> Option<std::ops::Range<usize>> {
    if bytes.len() < HEADER_LEN || &bytes[MAGIC_AT..VERSION_AT] != MAGIC {
        return None;
    }
    let len = std::str::from_utf8(&bytes[META_LEN_AT..HEADER_LEN])
        .ok()?
        .parse::<usize>()
        .ok()?;
    Some(HEADER_LEN..HEADER_LEN.checked_add(len)?)
}

/// The parts of a stored session record (the string under a session key), as they are
/// stored, for tools that show them (`sessionctl show --raw`): nothing is decoded but the
/// header's framing. See the crate docs for the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordParts<'a> {
    /// The write tokens, newest first (16 hex digits each), without the unused slots.
    pub tokens: &'a [u8],
    /// The fences (tokens of writes declared lost), without the unused slots.
    pub fences: &'a [u8],
    /// The version's digits, without the zero padding.
    pub version: &'a [u8],
    /// `created_at`'s digits (milliseconds since the epoch), without the zero padding.
    pub created_at: &'a [u8],
    /// The meta (MessagePack).
    pub meta: &'a [u8],
    /// The payload (the codec's envelope).
    pub payload: &'a [u8],
}

impl<'a> RecordParts<'a> {
    /// Splits a stored record into its parts; `None` when `value` has no record header (no
    /// magic, a meta length that is not a number or runs past the end).
    pub fn split(value: &'a [u8]) -> Option<Self> {
        let span = meta_span(value)?;
        let meta = value.get(span.clone())?;
        let used = |block: &'a [u8]| {
            let n = block
                .iter()
                .position(|&b| b == EMPTY)
                .unwrap_or(block.len());
            &block[..n]
        };
        let digits = |field: &'a [u8]| {
            let n = field.iter().take_while(|&&b| b == b'0').count();
            if n == field.len() {
                &field[n - 1..]
            } else {
                &field[n..]
            }
        };
        Some(Self {
            tokens: used(&value[..TOKENS_LEN]),
            fences: used(&value[FENCES_AT..MAGIC_AT]),
            version: digits(&value[VERSION_AT..CREATED_AT]),
            created_at: digits(&value[CREATED_AT..META_LEN_AT]),
            meta,
            payload: &value[span.end..],
        })
    }
}

/// What a listing's prefix of a record (`GETRANGE key 0 LIST_READ-1`) shows.
pub(crate) enum Prefix {
    /// The header and the whole meta.
    Info {
        header: Header,
        meta: session_core::Meta,
        owner: Owner,
    },
    /// The meta goes on past the bytes read: read this many bytes from the start.
    Longer(usize),
}

/// Parses a listing's prefix of a record.
pub(crate) fn parse_prefix(id: &SessionId, bytes: &[u8], prefix: &str) -> Result<Prefix> {
    let header = parse_header(id, bytes)?;
    let meta_end = HEADER_LEN.saturating_add(header.meta_len);
    let Some(meta) = bytes.get(HEADER_LEN..meta_end) else {
        return Ok(Prefix::Longer(meta_end));
    };
    let (meta, owner) = layout::decode_meta(id, meta, Some(header.created), Some(prefix))?;
    Ok(Prefix::Info {
        header,
        meta,
        owner,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use session_core::{Summary, Ttl, WriteToken};

    fn id(s: &str) -> SessionId {
        SessionId::new(s).unwrap()
    }

    fn encoded(tokens: &RecentTokens, version: u64, meta: &[u8], payload: &[u8]) -> Vec<u8> {
        let staged = Staged {
            header: header(
                Some(tokens),
                version,
                Timestamp::from_millis(1234),
                meta.len(),
            ),
            meta,
            payload,
        };
        let args = staged.to_redis_args();
        assert_eq!(args.len(), 1);
        args.into_iter().next().unwrap()
    }

    fn meta() -> Vec<u8> {
        layout::encode_meta(
            Timestamp::from_millis(2000),
            3,
            &Summary::new().with("state", "new_problem"),
            Ttl::DEFAULT,
            "p:",
        )
    }

    #[test]
    fn the_header_has_its_fields_at_their_offsets() {
        let t = |n| WriteToken::from_u64(n).unwrap();
        let tokens: RecentTokens = [t(0xab), t(1)].into_iter().collect();
        let value = encoded(&tokens, 42, b"mm", b"payload");
        assert_eq!(&value[..16], b"00000000000000ab");
        assert_eq!(&value[16..32], b"0000000000000001");
        assert!(value[32..MAGIC_AT].iter().all(|&b| b == b'-'));
        assert_eq!(&value[MAGIC_AT..VERSION_AT], b"sr1;");
        assert_eq!(&value[VERSION_AT..CREATED_AT], b"00000000000000000042");
        assert_eq!(&value[CREATED_AT..META_LEN_AT], b"0000000000001234");
        assert_eq!(&value[META_LEN_AT..HEADER_LEN], b"0000000002");
        assert_eq!(&value[HEADER_LEN..], b"mmpayload");
        // An unfilled header (the update script's to fill) is still a well-formed one.
        let blank = header(None, 0, Timestamp::from_millis(0), 7);
        assert!(blank[..MAGIC_AT].iter().all(|&b| b == b'-'));
        assert_eq!(&blank[MAGIC_AT..VERSION_AT], b"sr1;");
    }

    #[test]
    fn the_scripts_use_the_same_offsets() {
        use crate::scripts::{BOUNDED_LOAD_LUA, GUARD_LUA, RESOLVE_LUA, UPDATE_LUA};
        // Lua's string.sub counts from 1, GETRANGE/SETRANGE from 0.
        let guard_read = format!("'GETRANGE', KEYS[1], 0, {}", MAGIC_AT - 1);
        assert!(GUARD_LUA.contains(&guard_read), "guard: {guard_read}");
        assert!(RESOLVE_LUA.contains(&guard_read), "resolve: {guard_read}");
        assert!(RESOLVE_LUA.contains(&format!("'SETRANGE', KEYS[1], {FENCES_AT},")));
        assert!(UPDATE_LUA.contains(&format!("'GETRANGE', KEYS[1], 0, {}", META_LEN_AT - 1)));
        let magic = std::str::from_utf8(MAGIC).unwrap();
        assert!(UPDATE_LUA.contains(&format!(
            "string.find(h, '{magic}', {}, true) ~= {}",
            MAGIC_AT + 1,
            MAGIC_AT + 1
        )));
        // The header from offset 16: 7 old token slots, empty fences, the magic, version,
        // creation time.
        let tail = format!("'{}{magic}' .. new .. c", "-".repeat(FENCES_LEN));
        assert!(UPDATE_LUA.contains(&tail), "{tail}");
        assert!(UPDATE_LUA.contains("'SETRANGE', KEYS[1], 16, tokens"));
        assert!(UPDATE_LUA.contains(&format!("string.sub(h, 1, {})", TOKENS_LEN - 16)));
        assert!(UPDATE_LUA.contains("'%020d'"));
        assert!(GUARD_LUA.contains(&format!("string.find(h, ARGV[2], {}, true)", FENCES_AT + 1)));
        assert!(UPDATE_LUA.contains(&format!(
            "f <= {}",
            FENCES_AT + FENCES_LEN - session_core::TOKEN_HEX_LEN + 1
        )));
        assert!(UPDATE_LUA.contains(&format!(
            "string.sub(h, {}, {})",
            VERSION_AT + 1,
            CREATED_AT
        )));
        assert!(UPDATE_LUA.contains(&format!(
            "string.sub(h, {}, {})",
            CREATED_AT + 1,
            META_LEN_AT
        )));
        assert!(BOUNDED_LOAD_LUA.contains(&format!(
            "'GETRANGE', KEYS[1], {META_LEN_AT}, {}",
            HEADER_LEN - 1
        )));
        assert!(BOUNDED_LOAD_LUA.contains(&format!("- {HEADER_LEN} -")));
    }

    #[test]
    fn a_record_reads_back_and_its_payload_is_not_copied() {
        let t = |n| WriteToken::from_u64(n).unwrap();
        let tokens: RecentTokens = [t(3), t(2), t(1)].into_iter().collect();
        let m = meta();
        let value = encoded(&tokens, 7, &m, b"abc");
        let record =
            record_from_value(&id("a"), value, Some(Duration::from_secs(5)), Some("p:")).unwrap();
        assert_eq!(&record.payload[..], b"abc");
        assert_eq!(record.version, 7);
        assert_eq!(record.tokens, tokens);
        assert_eq!(record.ttl, Some(Duration::from_secs(5)));
        assert_eq!(record.meta.created_at, Timestamp::from_millis(1234));
        assert_eq!(record.meta.updated_at, Timestamp::from_millis(2000));
        assert_eq!(
            record.meta.summary.get("state").and_then(|v| v.as_str()),
            Some("new_problem")
        );
        // Another store's (nested prefix) record is refused.
        let value = encoded(&tokens, 7, &m, b"abc");
        assert!(matches!(
            record_from_value(&id("a"), value, None, Some("other:")),
            Err(Error::Corrupt { .. })
        ));
    }

    #[test]
    fn a_listing_prefix_shows_the_meta_or_asks_for_more() {
        let tokens = RecentTokens::first(WriteToken::from_u64(9).unwrap());
        let m = meta();
        let value = encoded(&tokens, 2, &m, &[b'x'; 5000]);
        match parse_prefix(&id("a"), &value[..LIST_READ], "p:").unwrap() {
            Prefix::Info {
                header,
                meta,
                owner,
            } => {
                assert_eq!(header.version, 2);
                assert_eq!(meta.size, 3);
                assert_eq!(owner, Owner::Ours);
            }
            Prefix::Longer(_) => panic!("the meta fits"),
        }
        match parse_prefix(&id("a"), &value[..HEADER_LEN + 2], "p:").unwrap() {
            Prefix::Longer(n) => assert_eq!(n, HEADER_LEN + m.len()),
            Prefix::Info { .. } => panic!("the meta was cut"),
        }
    }

    #[test]
    fn a_record_splits_into_its_stored_parts() {
        let tokens = RecentTokens::first(WriteToken::from_u64(0x1f).unwrap());
        let value = encoded(&tokens, 12, b"meta", b"payload");
        let parts = RecordParts::split(&value).unwrap();
        assert_eq!(parts.tokens, b"000000000000001f");
        assert_eq!(parts.fences, b"");
        assert_eq!(parts.version, b"12");
        assert_eq!(parts.created_at, b"1234");
        assert_eq!(parts.meta, b"meta");
        assert_eq!(parts.payload, b"payload");
        assert!(RecordParts::split(b"not a record").is_none());
        assert!(RecordParts::split(&value[..HEADER_LEN + 2]).is_none());
    }

    #[test]
    fn anything_odd_is_corrupt_for_that_id() {
        let tokens = RecentTokens::first(WriteToken::from_u64(9).unwrap());
        let m = meta();
        let good = encoded(&tokens, 2, &m, b"p");
        let mut cases: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"1".to_vec(),
            good[..HEADER_LEN - 1].to_vec(),
            good[..HEADER_LEN + 1].to_vec(), // the meta is cut
        ];
        let mut altered = |at: usize, byte: u8| {
            let mut v = good.clone();
            v[at] = byte;
            cases.push(v);
        };
        altered(MAGIC_AT, b'x'); // not the magic
        altered(VERSION_AT + 3, b'a'); // version not digits
        altered(CREATED_AT, b' '); // creation time not digits
        altered(META_LEN_AT + 7, b'9'); // meta length past the end
        altered(3, b'g'); // a token slot that is not hex
        altered(0, b'-'); // an empty slot before a used one
        altered(HEADER_LEN, 0xc1); // meta that is not MessagePack
        for (n, case) in cases.into_iter().enumerate() {
            match record_from_value(&id("bad"), case, None, None) {
                Err(Error::Corrupt { id: got, .. }) => assert_eq!(got.as_str(), "bad"),
                other => panic!("case {n}: expected Corrupt, got {other:?}"),
            }
        }
        // A version that does not fit a u64 is corrupt too, never wrapped.
        let mut v = good.clone();
        v[VERSION_AT..CREATED_AT].copy_from_slice(b"99999999999999999999");
        assert!(record_from_value(&id("bad"), v, None, None).is_err());
    }
}
