//! What a store keeps for one session: [`Record`], its [`Meta`] and the listing types.

use std::{
    collections::BTreeMap,
    fmt,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::{Basis, RecentTokens, SessionId, Ttl, WriteToken};

/// The stored form of one session, as a store returns it.
///
/// Built by stores with [`Record::new`] and the `with_*` setters; new fields may be added.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Record {
    /// The encoded state (a [`Codec`](crate::Codec) envelope). Stores treat it as opaque bytes.
    pub payload: Bytes,
    /// Timestamps, size and summary.
    pub meta: Meta,
    /// 1 on create, +1 on every write: the counter users see.
    pub version: u64,
    /// The time left before the session expires, when read (`None`: it does not expire).
    pub ttl: Option<Duration>,
    /// The write tokens of the record's last writes, newest first: the first one identifies
    /// this content (see [`WriteToken`]). Empty for records that predate tokens.
    pub tokens: RecentTokens,
}

impl Record {
    /// A record without TTL or tokens (set them with [`with_ttl`](Self::with_ttl) and
    /// [`with_tokens`](Self::with_tokens)).
    pub fn new(payload: Bytes, meta: Meta, version: u64) -> Self {
        Self {
            payload,
            meta,
            version,
            ttl: None,
            tokens: RecentTokens::new(),
        }
    }

    /// The record with this remaining TTL.
    #[must_use]
    pub fn with_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.ttl = ttl;
        self
    }

    /// The record with these write tokens (newest first).
    #[must_use]
    pub fn with_tokens(mut self, tokens: RecentTokens) -> Self {
        self.tokens = tokens;
        self
    }

    /// The token of the write that produced this content, if the record has one.
    pub fn token(&self) -> Option<WriteToken> {
        self.tokens.current()
    }

    /// What a conditional write built on this record needs:
    /// `Condition::IfUnchanged(record.basis())` writes only if the session still holds
    /// exactly this content.
    pub fn basis(&self) -> Basis {
        Basis::new(self.version, self.meta.created_at, self.tokens)
    }
}

/// What a store knows about a session besides its payload.
///
/// Built with [`Meta::new`]; new fields may be added.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Meta {
    /// When the session was first written.
    pub created_at: Timestamp,
    /// When it was last written.
    pub updated_at: Timestamp,
    /// The payload's size in bytes.
    pub size: u64,
    /// What a listing shows without decoding the payload.
    #[serde(default)]
    pub summary: Summary,
    /// The TTL the last write set, in milliseconds when serialized (`None`: the record was
    /// written by a version that did not keep it). Sliding expiry refreshes a session to this
    /// TTL, so a session written with a per-call TTL keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "ttl_ms")]
    pub written_ttl: Option<Ttl>,
}

impl Meta {
    /// The meta of a session created at `created_at` and last written at `updated_at`, with a
    /// payload of `size` bytes.
    pub fn new(created_at: Timestamp, updated_at: Timestamp, size: u64, summary: Summary) -> Self {
        Self {
            created_at,
            updated_at,
            size,
            summary,
            written_ttl: None,
        }
    }

    /// The meta with the TTL its last write set.
    #[must_use]
    pub fn with_written_ttl(mut self, ttl: Ttl) -> Self {
        self.written_ttl = Some(ttl);
        self
    }
}

/// A point in time, in milliseconds since the Unix epoch (UTC).
///
/// `Display` writes RFC 3339 (`2026-11-25T09:10:13.042Z`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        Self::from(SystemTime::now())
    }

    /// A timestamp from milliseconds since the Unix epoch.
    pub const fn from_millis(ms: u64) -> Self {
        Self(ms)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// The timestamp as a `SystemTime`.
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0)
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        // A clock before 1970 is clamped to the epoch rather than failing a write.
        let ms = t
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Self(ms)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0 / 1000;
        let millis = self.0 % 1000;
        let days = secs / 86_400;
        let rem = secs % 86_400;
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// What a listing shows of a session without decoding its payload: a few named values, such
/// as the agent's `state` and `current_attempt`.
///
/// ```
/// use session_core::Summary;
///
/// let summary = Summary::new().with("state", "diagnosing").with("current_attempt", 2);
/// assert_eq!(summary.get("state").and_then(|v| v.as_str()), Some("diagnosing"));
/// assert_eq!(summary.get("current_attempt").and_then(|v| v.as_i64()), Some(2));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Summary(BTreeMap<String, SummaryValue>);

impl Summary {
    /// An empty summary.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a value, builder style.
    #[must_use]
    pub fn with(mut self, key: impl Into<String>, value: impl Into<SummaryValue>) -> Self {
        self.insert(key, value);
        self
    }

    /// Adds (or replaces) a value.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<SummaryValue>) {
        self.0.insert(key.into(), value.into());
    }

    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<&SummaryValue> {
        self.0.get(key)
    }

    /// Whether the summary holds nothing.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The values, ordered by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &SummaryValue)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }
}

/// One value of a [`Summary`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SummaryValue {
    /// A flag.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// Text.
    Text(String),
}

impl SummaryValue {
    /// The text, if this is text.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Text(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is an integer.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Self::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The flag, if this is a flag.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Self::Bool(b) => Some(*b),
            _ => None,
        }
    }
}

impl fmt::Display for SummaryValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bool(b) => b.fmt(f),
            Self::Int(i) => i.fmt(f),
            Self::Float(x) => x.fmt(f),
            Self::Text(s) => s.fmt(f),
        }
    }
}

macro_rules! summary_from {
    ($($t:ty => $variant:ident as $conv:ty),* $(,)?) => {$(
        impl From<$t> for SummaryValue {
            fn from(v: $t) -> Self {
                Self::$variant(<$conv>::from(v))
            }
        }
    )*};
}

summary_from! {
    bool => Bool as bool,
    i8 => Int as i64, i16 => Int as i64, i32 => Int as i64, i64 => Int as i64,
    u8 => Int as i64, u16 => Int as i64, u32 => Int as i64,
    f32 => Float as f64, f64 => Float as f64,
    String => Text as String, &str => Text as String,
}

impl From<&String> for SummaryValue {
    fn from(v: &String) -> Self {
        Self::Text(v.clone())
    }
}

impl From<usize> for SummaryValue {
    fn from(v: usize) -> Self {
        i64::try_from(v).map_or(Self::Float(v as f64), Self::Int)
    }
}

impl From<u64> for SummaryValue {
    fn from(v: u64) -> Self {
        i64::try_from(v).map_or(Self::Float(v as f64), Self::Int)
    }
}

/// Implemented by state types that want their listings to show something: the agent shows
/// its `state` and `current_attempt`. The default summary is empty.
///
/// ```
/// use session_core::{Summarize, Summary};
///
/// struct Agent { state: String, current_attempt: u32 }
///
/// impl Summarize for Agent {
///     fn summary(&self) -> Summary {
///         Summary::new()
///             .with("state", &self.state)
///             .with("current_attempt", self.current_attempt)
///     }
/// }
/// ```
pub trait Summarize {
    /// The values a listing shows for this state.
    fn summary(&self) -> Summary {
        Summary::default()
    }
}

/// One entry of a listing: everything but the payload. Built with [`SessionInfo::new`]; new
/// fields may be added.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct SessionInfo {
    /// The session.
    pub id: SessionId,
    /// Its timestamps, size and summary.
    pub meta: Meta,
    /// Its version.
    pub version: u64,
    /// The time left before it expires (`None`: it does not expire).
    pub ttl: Option<Duration>,
}

impl SessionInfo {
    /// A listing entry.
    pub fn new(id: SessionId, meta: Meta, version: u64, ttl: Option<Duration>) -> Self {
        Self {
            id,
            meta,
            version,
            ttl,
        }
    }
}

/// One page of a listing. Built with [`Page::new`]; new fields may be added.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Page {
    /// The sessions of this page, at most the requested limit.
    pub sessions: Vec<SessionInfo>,
    /// Where the next page starts; `None` when the listing is complete.
    pub next: Option<Cursor>,
}

impl Page {
    /// A page of `sessions`, followed by the page at `next` (`None`: the last page).
    pub fn new(sessions: Vec<SessionInfo>, next: Option<Cursor>) -> Self {
        Self { sessions, next }
    }
}

/// An opaque position in a listing, produced by a store and handed back to it.
///
/// Cursors travel through URLs and command lines as text ([`Cursor::as_str`],
/// [`Cursor::from`]); a store rejects a cursor it did not produce with
/// [`Error::InvalidCursor`](crate::Error::InvalidCursor).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cursor(String);

impl Cursor {
    /// The cursor as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<String> for Cursor {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for Cursor {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_display_as_rfc3339() {
        assert_eq!(
            Timestamp::from_millis(0).to_string(),
            "1970-01-01T00:00:00.000Z"
        );
        assert_eq!(
            Timestamp::from_millis(1_795_597_813_042).to_string(),
            "2026-11-25T09:10:13.042Z"
        );
        assert_eq!(
            Timestamp::from_millis(951_782_400_000).to_string(),
            "2000-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn summary_round_trips_through_msgpack() {
        let s = Summary::new()
            .with("state", "new_problem")
            .with("current_attempt", 3u32)
            .with("use_rag", true)
            .with("score", 0.5);
        let bytes = rmp_serde::to_vec_named(&s).unwrap();
        let back: Summary = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, s);
    }
}
