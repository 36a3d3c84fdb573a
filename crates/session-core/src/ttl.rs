//! [`Ttl`]: how long a session lives after its last write.

use std::{fmt, time::Duration};

/// A time to live: at least one millisecond, at most [`Ttl::MAX`].
///
/// ```
/// use session_core::Ttl;
/// use std::time::Duration;
///
/// assert_eq!(Ttl::DEFAULT.as_duration(), Duration::from_secs(3600));
/// assert!(Ttl::from_secs(0).is_err());
/// assert_eq!(Ttl::from_secs(90)?.as_millis(), 90_000);
/// # Ok::<(), session_core::InvalidTtl>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ttl(Duration);

impl Ttl {
    /// One hour, the seed's `SESSION_TTL`.
    pub const DEFAULT: Ttl = Ttl(Duration::from_secs(3600));
    /// The longest TTL accepted: 10 years, far below every backend's limit.
    pub const MAX: Ttl = Ttl(Duration::from_secs(10 * 365 * 24 * 3600));

    /// A TTL of `d`, rounded down to whole milliseconds.
    pub fn new(d: Duration) -> Result<Self, InvalidTtl> {
        let d = Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        if d.is_zero() {
            Err(InvalidTtl::Zero)
        } else if d > Self::MAX.0 {
            Err(InvalidTtl::TooLong(d))
        } else {
            Ok(Self(d))
        }
    }

    /// A TTL of `secs` seconds.
    pub fn from_secs(secs: u64) -> Result<Self, InvalidTtl> {
        Self::new(Duration::from_secs(secs))
    }

    /// A TTL of `ms` milliseconds.
    pub fn from_millis(ms: u64) -> Result<Self, InvalidTtl> {
        Self::new(Duration::from_millis(ms))
    }

    /// The TTL as a duration.
    pub fn as_duration(self) -> Duration {
        self.0
    }

    /// The TTL in whole milliseconds (what Redis `PEXPIRE` takes).
    pub fn as_millis(self) -> u64 {
        // Bounded by `MAX`, so this fits.
        self.0.as_millis() as u64
    }
}

/// Serialized as whole milliseconds.
impl serde::Serialize for Ttl {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.as_millis())
    }
}

/// Deserialized from whole milliseconds; out of range is an error, never a clamp.
impl<'de> serde::Deserialize<'de> for Ttl {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let ms = <u64 as serde::Deserialize>::deserialize(deserializer)?;
        Ttl::from_millis(ms).map_err(serde::de::Error::custom)
    }
}

impl Default for Ttl {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl fmt::Debug for Ttl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ttl({:?})", self.0)
    }
}

impl fmt::Display for Ttl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.subsec_millis() == 0 {
            write!(f, "{}s", self.0.as_secs())
        } else {
            write!(f, "{}ms", self.as_millis())
        }
    }
}

impl TryFrom<Duration> for Ttl {
    type Error = InvalidTtl;
    fn try_from(d: Duration) -> Result<Self, Self::Error> {
        Self::new(d)
    }
}

impl From<Ttl> for Duration {
    fn from(t: Ttl) -> Self {
        t.0
    }
}

/// A rejected TTL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidTtl {
    /// Zero (or under a millisecond): a session would expire as it is written.
    #[error("a TTL must be at least 1 ms (got zero)")]
    Zero,
    /// Longer than [`Ttl::MAX`].
    #[error("a TTL must be at most 10 years (got {0:?})")]
    TooLong(Duration),
}
