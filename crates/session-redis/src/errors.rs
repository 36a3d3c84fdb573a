//! Mapping redis-rs errors onto [`session_core::Error`]: down or slow => `Unavailable`,
//! refused credentials => `Auth`, anything else => `Backend`. No credential ever reaches the
//! text: redis-rs errors carry no connection info, and we add only the redacted URL.

use redis::{ErrorKind, RedisError, ServerErrorKind};
use session_core::Error;

/// The backend name in every error and log line.
pub(crate) const BACKEND: &str = "redis";

/// How a redis-rs failure is classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// Not reachable, connection dropped, timed out, loading, cluster down.
    Unavailable,
    /// WRONGPASS, NOAUTH, NOPERM, a failed AUTH.
    Auth,
    /// Anything else.
    Backend,
}

pub(crate) fn classify(e: &RedisError) -> Class {
    if is_auth(e) {
        return Class::Auth;
    }
    match e.kind() {
        ErrorKind::Io
        | ErrorKind::Server(
            ServerErrorKind::BusyLoading
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::MasterDown
            | ServerErrorKind::TryAgain,
        ) => Class::Unavailable,
        _ if e.is_timeout() || e.is_connection_refusal() || e.is_connection_dropped() => {
            Class::Unavailable
        }
        _ => Class::Backend,
    }
}

fn is_auth(e: &RedisError) -> bool {
    matches!(
        e.kind(),
        ErrorKind::AuthenticationFailed | ErrorKind::Server(ServerErrorKind::NoPerm)
    ) || matches!(e.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"))
}

/// Whether a failed idempotent request may be sent once more: the connection dropped under it
/// (the reply was lost, or the request never left). Timeouts are not retried: the server may
/// just be slow, and a retry would double the wait.
pub(crate) fn is_dropped_connection(e: &RedisError) -> bool {
    !e.is_timeout() && (e.is_connection_dropped() || e.is_io_error())
}

/// Whether a request that failed with `e` may have reached the server without its reply
/// coming back: the connection dropped, broke, or timed out (anything but an answer).
pub(crate) fn is_transport(e: &RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_unrecoverable_error()
}

/// Converts a redis-rs error met while doing `what` against the server at `url` (redacted).
pub(crate) fn map(e: RedisError, what: &str, url: &str) -> Error {
    let reason = format!("{what} on {url}: {}", describe(&e));
    match classify(&e) {
        Class::Unavailable => Error::unavailable(BACKEND, reason, e),
        Class::Auth => Error::Auth {
            backend: BACKEND,
            reason,
        },
        Class::Backend => Error::backend(BACKEND, reason, e),
    }
}

/// The error in words. redis-rs' own `Display` is fine, but a timeout reads better spelled out.
fn describe(e: &RedisError) -> String {
    if e.is_timeout() {
        "timed out waiting for the server".to_owned()
    } else if e.is_connection_refusal() {
        "connection refused (is redis-server running on that port?)".to_owned()
    } else {
        e.to_string()
    }
}

/// The error for a whole operation that did not finish within its deadline.
pub(crate) fn timed_out(what: &str, url: &str, after: std::time::Duration) -> Error {
    Error::Unavailable {
        backend: BACKEND,
        reason: format!("{what} on {url}: no answer within {after:?}"),
        source: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(kind: std::io::ErrorKind) -> RedisError {
        RedisError::from(std::io::Error::new(kind, "x"))
    }

    #[test]
    fn io_failures_are_unavailable_and_dropped_ones_retryable() {
        for kind in [
            std::io::ErrorKind::ConnectionRefused,
            std::io::ErrorKind::ConnectionReset,
            std::io::ErrorKind::BrokenPipe,
            std::io::ErrorKind::UnexpectedEof,
        ] {
            let e = io(kind);
            assert_eq!(classify(&e), Class::Unavailable, "{kind:?}");
            assert!(is_dropped_connection(&e), "{kind:?}");
        }
        let timeout = io(std::io::ErrorKind::TimedOut);
        assert_eq!(classify(&timeout), Class::Unavailable);
        assert!(!is_dropped_connection(&timeout));
    }

    #[test]
    fn auth_failures_are_auth() {
        let e = RedisError::from((
            ErrorKind::AuthenticationFailed,
            "Password authentication failed",
        ));
        assert_eq!(classify(&e), Class::Auth);
        assert!(matches!(
            map(e, "connect", "redis://h:1/0"),
            Error::Auth { .. }
        ));
        let e = RedisError::from((ErrorKind::Server(ServerErrorKind::NoPerm), "no"));
        assert_eq!(classify(&e), Class::Auth);
    }

    #[test]
    fn other_failures_are_backend() {
        let e = RedisError::from((ErrorKind::Server(ServerErrorKind::ResponseError), "bad"));
        assert_eq!(classify(&e), Class::Backend);
        assert!(!is_dropped_connection(&e));
        let e = RedisError::from((ErrorKind::Server(ServerErrorKind::BusyLoading), "loading"));
        assert_eq!(classify(&e), Class::Unavailable);
    }
}
