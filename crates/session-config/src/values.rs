//! Parsers for single values: booleans, bounded numbers, durations. Each turns a [`Given`]
//! into a typed value or an error naming the key, the value and what was expected.

use std::{num::NonZeroUsize, path::PathBuf, time::Duration};

use session_core::{Error, FallbackPolicy, Ttl};

use crate::{
    ConnectionMode, KeyPrefix,
    sources::{Given, Resolved},
};

use crate::keys::Key;

/// What a port accepts, for error messages.
const PORT_EXPECTED: &str = "a port number from 1 to 65535";
/// What a database index accepts, for error messages.
const DB_EXPECTED: &str = "a database number from 0 to 4294967295 (Redis has 0-15 unless \
     `databases` is raised)";

/// The accepted spellings of booleans.
pub(crate) const BOOL_EXPECTED: &str = "true or false (also 1/0, yes/no, on/off)";

pub(crate) fn boolean(given: &Given) -> Result<bool, Error> {
    match given.text.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(given.invalid(BOOL_EXPECTED)),
    }
}

/// An integer in `min..=max`.
pub(crate) fn integer(given: &Given, min: u64, max: u64, what: &str) -> Result<u64, Error> {
    given
        .text
        .parse::<u64>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| given.invalid(format!("{what} from {min} to {max}")))
}

pub(crate) fn port(given: &Given) -> Result<u16, Error> {
    given
        .text
        .parse::<u16>()
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| given.invalid(PORT_EXPECTED))
}

pub(crate) fn db(given: &Given) -> Result<u32, Error> {
    given
        .text
        .parse::<u32>()
        .map_err(|_| given.invalid(DB_EXPECTED))
}

pub(crate) fn ttl(given: &Given) -> Result<Ttl, Error> {
    let expected = format!(
        "a whole number of seconds from 1 to {} (e.g. 3600)",
        Ttl::MAX.as_duration().as_secs()
    );
    let secs = given
        .text
        .parse::<u64>()
        .map_err(|_| given.invalid(&expected))?;
    Ttl::from_secs(secs).map_err(|_| given.invalid(&expected))
}

/// Milliseconds, 1 ms to one hour.
pub(crate) fn timeout(given: &Given) -> Result<Duration, Error> {
    integer(given, 1, 3_600_000, "a number of milliseconds").map(Duration::from_millis)
}

/// `off` (or `0`, `false`, `no`, `none`) or a number of seconds.
pub(crate) fn sliding_expiry(given: &Given) -> Result<Option<Duration>, Error> {
    match given.text.to_ascii_lowercase().as_str() {
        "off" | "false" | "no" | "none" | "0" => Ok(None),
        _ => integer(
            given,
            1,
            Ttl::MAX.as_duration().as_secs(),
            "off, or a number of seconds (the least time between two TTL refreshes on read)",
        )
        .map(|secs| Some(Duration::from_secs(secs))),
    }
}

/// Whether compression is on: `off` (or `none`, `false`, `no`) or `lz4`. The threshold comes
/// separately.
pub(crate) fn compression_on(given: &Given) -> Result<bool, Error> {
    match given.text.to_ascii_lowercase().as_str() {
        "off" | "none" | "false" | "no" => Ok(false),
        "lz4" => Ok(true),
        _ => Err(given.invalid(
            "off (store sessions uncompressed) or lz4 (compress bodies of at least \
             SESSION_COMPRESSION_MIN_BYTES, session.compression_min_bytes)",
        )),
    }
}

/// `unbounded` (or `0`) or a positive number of sessions.
pub(crate) fn capacity(given: &Given) -> Result<Option<NonZeroUsize>, Error> {
    if matches!(
        given.text.to_ascii_lowercase().as_str(),
        "unbounded" | "none" | "0"
    ) {
        return Ok(None);
    }
    given
        .text
        .parse::<NonZeroUsize>()
        .map(Some)
        .map_err(|_| given.invalid("unbounded (or 0), or a positive number of sessions"))
}

pub(crate) fn fallback(given: &Given) -> Result<FallbackPolicy, Error> {
    given.text.parse::<FallbackPolicy>().map_err(|_| {
        given.invalid("startup (fall back to memory when Redis is down at start) or none (fail)")
    })
}

pub(crate) fn key_prefix(given: &Given) -> Result<KeyPrefix, Error> {
    KeyPrefix::new(given.text.clone()).map_err(|_| given.invalid(KeyPrefix::EXPECTED))
}

/// `multiplexed` or `pool`; the pool size comes separately. `cluster` and `sentinel` name a
/// deployment (as `REDIS_DEPLOYMENT` does, see `deployment.rs`), whose connection is
/// multiplexed.
pub(crate) fn mode(given: &Given, pool_size: NonZeroUsize) -> Result<ConnectionMode, Error> {
    match given.text.to_ascii_lowercase().as_str() {
        "multiplexed" | "cluster" | "sentinel" => Ok(ConnectionMode::Multiplexed),
        "pool" => Ok(ConnectionMode::Pool {
            max_size: pool_size,
        }),
        _ => Err(given.invalid(
            "multiplexed or pool (or cluster or sentinel, which choose the deployment as \
             REDIS_DEPLOYMENT does)",
        )),
    }
}

/// `off` (or `0`, `false`, `no`, `none`) or a number of replicas, 1 to 1000.
pub(crate) fn replicas(given: &Given) -> Result<Option<u32>, Error> {
    match given.text.to_ascii_lowercase().as_str() {
        "off" | "false" | "no" | "none" | "0" => Ok(None),
        _ => integer(
            given,
            1,
            1000,
            "off, or a number of replicas that must confirm every write",
        )
        .map(|n| Some(n as u32)),
    }
}

/// A file that must exist.
pub(crate) fn file(given: &Given) -> Result<PathBuf, Error> {
    let path = PathBuf::from(&given.text);
    if path.is_file() {
        Ok(path)
    } else {
        Err(given.invalid("the path of an existing file"))
    }
}

/// Parses `key` with `parse` when it is given; `None` otherwise.
pub(crate) fn opt<T>(
    resolved: &Resolved,
    key: Key,
    parse: impl FnOnce(&Given) -> Result<T, Error>,
) -> Result<Option<T>, Error> {
    resolved.get(key).map(parse).transpose()
}
