//! [`FallbackPolicy`]: what a service does when its primary store (Redis) cannot be reached.

use std::{fmt, str::FromStr};

/// What happens when the primary store cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FallbackPolicy {
    /// Decide once, when the store is built: if the primary cannot be reached then, use the
    /// in-memory store for the life of the process and log a warning (the seed's behaviour).
    #[default]
    Startup,
    /// Keep serving through an outage at run time: while the primary cannot be reached
    /// (at start-up or later), sessions are served from memory, and what changed meanwhile
    /// is written back when it answers again ([`FailoverStore`](crate::FailoverStore)).
    Runtime,
    /// Never fall back: building the store fails with a clear error instead.
    None,
}

impl FallbackPolicy {
    /// The policy's name as configuration spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Startup => "startup",
            Self::Runtime => "runtime",
            Self::None => "none",
        }
    }
}

impl fmt::Display for FallbackPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A fallback policy name that is not `startup`, `runtime` or `none`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown fallback policy {0:?} (expected \"startup\", \"runtime\" or \"none\")")]
pub struct UnknownFallbackPolicy(pub String);

impl FromStr for FallbackPolicy {
    type Err = UnknownFallbackPolicy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "startup" => Ok(Self::Startup),
            "runtime" => Ok(Self::Runtime),
            "none" | "off" => Ok(Self::None),
            _ => Err(UnknownFallbackPolicy(s.to_owned())),
        }
    }
}
