//! Mapping redis-rs errors and error replies onto [`session_core::Error`]: down, slow or not
//! serving => `Unavailable`, out of memory => `OutOfMemory`, refused credentials => `Auth`,
//! anything else => `Backend`. One classification for every place an error can come from: a
//! failed request, an error reply inside a pipeline's array reply, or an error a Lua script
//! raised (Redis 7 keeps the code of the command that failed inside the script: `READONLY ...
//! script: <sha>`). No credential ever reaches the text: redis-rs errors carry no connection
//! info, and we add only the redacted URL.

use redis::{ErrorKind, RedisError, ServerError, ServerErrorKind, Value};
use session_core::Error;

/// The backend name in every error and log line.
pub(crate) const BACKEND: &str = "redis";

/// How a redis-rs failure or an error reply is classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// Not reachable, connection dropped, timed out, or not serving: loading its data
    /// (`LOADING`), a replica (`READONLY`), a replica without its master (`MASTERDOWN`), a
    /// cluster down (`CLUSTERDOWN`, `TRYAGAIN`), busy with a script (`BUSY`), too few
    /// replicas (`NOREPLICAS`), writes stopped after a failed snapshot (`MISCONF`).
    Unavailable,
    /// `OOM command not allowed when used memory > 'maxmemory'`: the server refuses writes.
    OutOfMemory,
    /// WRONGPASS, NOAUTH, NOPERM, a failed AUTH.
    Auth,
    /// Anything else.
    Backend,
}

/// The class of an error reply by its code (`READONLY`, `OOM` ...), when the code decides.
fn class_of_code(code: &str) -> Option<Class> {
    match code {
        // Also refusals of a server that cannot take the command now and did nothing:
        // another client's script runs (`BUSY`), too few replicas (`NOREPLICAS`), writes
        // stopped after a failed snapshot (`MISCONF`). Retrying later may work.
        "LOADING" | "READONLY" | "MASTERDOWN" | "CLUSTERDOWN" | "TRYAGAIN" | "BUSY"
        | "NOREPLICAS" | "MISCONF" => Some(Class::Unavailable),
        "OOM" => Some(Class::OutOfMemory),
        "WRONGPASS" | "NOAUTH" | "NOPERM" => Some(Class::Auth),
        _ => None,
    }
}

pub(crate) fn classify(e: &RedisError) -> Class {
    if let Some(class) = e.code().and_then(class_of_code) {
        return class;
    }
    match e.kind() {
        ErrorKind::AuthenticationFailed | ErrorKind::Server(ServerErrorKind::NoPerm) => Class::Auth,
        ErrorKind::Io
        | ErrorKind::Server(
            ServerErrorKind::BusyLoading
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::MasterDown
            | ServerErrorKind::ReadOnly
            | ServerErrorKind::TryAgain,
        ) => Class::Unavailable,
        _ if e.is_timeout() || e.is_connection_refusal() || e.is_connection_dropped() => {
            Class::Unavailable
        }
        _ => Class::Backend,
    }
}

/// Whether an error reply says that this server, on this connection, does not serve the
/// store any more, so that the connection must be replaced rather than reused: a demoted
/// master (`READONLY`), a server loading its data after a restart (`LOADING`), a replica that
/// lost its master (`MASTERDOWN`). A new connection may reach another server (the name now
/// points to the new master) or the same one once it serves again.
/// Whether an error reply with `code` is a passing state of the server (it does not serve
/// now, or is busy), so that asking again later may get an answer.
pub(crate) fn is_transient_code(code: &str) -> bool {
    class_of_code(code) == Some(Class::Unavailable)
}

pub(crate) fn is_not_serving(code: &str) -> bool {
    matches!(code, "READONLY" | "LOADING" | "MASTERDOWN")
}

/// The first error reply in `value` (itself, or an element of its array: a pipeline's reply)
/// that says the server does not serve.
pub(crate) fn not_serving_reply(value: &Value) -> Option<&ServerError> {
    match value {
        Value::ServerError(e) if is_not_serving(e.code()) => Some(e),
        Value::Array(items) => items.iter().find_map(|item| match item {
            Value::ServerError(e) if is_not_serving(e.code()) => Some(e),
            _ => None,
        }),
        _ => None,
    }
}

/// The first error reply among a read pipeline's replies that concerns the server rather than
/// one key (anything but `WRONGTYPE`, which says that one key holds another type), as the
/// library's error: a `LOADING` inside a listing's pipeline is an outage, not a corrupt entry.
pub(crate) fn server_failure_in(replies: &[Value], what: &str, url: &str) -> Option<Error> {
    replies.iter().find_map(|reply| match reply {
        Value::ServerError(e) if e.code() != "WRONGTYPE" => {
            Some(map(RedisError::from(e.clone()), what, url))
        }
        _ => None,
    })
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
    classified(e, reason)
}

/// `e` as the library's error of its [`Class`], with `reason` as its text.
pub(crate) fn classified(e: RedisError, reason: String) -> Error {
    match classify(&e) {
        Class::Unavailable => Error::unavailable(BACKEND, reason, e),
        Class::OutOfMemory => Error::OutOfMemory {
            backend: BACKEND,
            reason: format!(
                "{reason} (raise maxmemory, or choose a maxmemory-policy that may evict \
                 sessions, e.g. volatile-lru)"
            ),
        },
        Class::Auth => Error::Auth {
            backend: BACKEND,
            reason,
        },
        Class::Backend => Error::backend(BACKEND, reason, e),
    }
}

/// The error in words. redis-rs' own `Display` is fine, but a timeout reads better spelled out,
/// and an error reply reads best as the server sent it (`OOM command not allowed ...`, where
/// redis-rs shows `"OOM": command not allowed ...` or `ReadOnly: You can't ...`).
pub(crate) fn describe(e: &RedisError) -> String {
    if e.is_timeout() {
        "timed out waiting for the server".to_owned()
    } else if e.is_connection_refusal() {
        "connection refused (is redis-server running on that port?)".to_owned()
    } else if let (Some(code), Some(detail)) = (e.code(), e.detail()) {
        format!("{code} {detail}")
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

    /// An error reply as the server sends it (`-CODE detail`), parsed by redis-rs.
    fn reply(line: &str) -> Value {
        redis::parse_redis_value(format!("{line}\r\n").as_bytes()).unwrap()
    }

    fn server_error(line: &str) -> RedisError {
        match reply(line) {
            Value::ServerError(e) => RedisError::from(e),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn error_replies_are_classified_by_their_code_also_from_scripts() {
        for (line, class) in [
            (
                "-READONLY You can't write against a read only replica.",
                Class::Unavailable,
            ),
            (
                "-READONLY You can't write against a read only replica. script: e6a8, on @user_script:1.",
                Class::Unavailable,
            ),
            (
                "-LOADING Redis is loading the dataset in memory",
                Class::Unavailable,
            ),
            ("-MASTERDOWN Link with MASTER is down", Class::Unavailable),
            (
                "-BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
                Class::Unavailable,
            ),
            (
                "-NOREPLICAS Not enough good replicas to write.",
                Class::Unavailable,
            ),
            (
                "-MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk.",
                Class::Unavailable,
            ),
            (
                "-OOM command not allowed when used memory > 'maxmemory'.",
                Class::OutOfMemory,
            ),
            (
                "-OOM command not allowed when used memory > 'maxmemory'. script: e6a8, on @user_script:1.",
                Class::OutOfMemory,
            ),
            (
                "-NOPERM User u has no permissions to run the 'hset' command",
                Class::Auth,
            ),
            ("-WRONGPASS invalid username-password pair", Class::Auth),
            ("-ERR unknown command", Class::Backend),
        ] {
            assert_eq!(classify(&server_error(line)), class, "{line}");
        }
        let oom = map(
            server_error("-OOM command not allowed when used memory > 'maxmemory'."),
            "saving",
            "redis://h:1/0",
        );
        assert!(matches!(oom, Error::OutOfMemory { .. }), "{oom:?}");
        assert!(
            oom.to_string()
                .contains("OOM command not allowed when used memory > 'maxmemory'."),
            "{oom}"
        );
        assert!(oom.to_string().contains("maxmemory-policy"), "{oom}");
    }

    #[test]
    fn in_a_read_pipeline_only_errors_about_the_server_fail_the_read() {
        let wrongtype = reply("-WRONGTYPE Operation against a key holding the wrong kind of value");
        let loading = reply("-LOADING Redis is loading the dataset in memory");
        assert!(server_failure_in(&[wrongtype.clone(), Value::Nil], "load", "u").is_none());
        assert!(matches!(
            server_failure_in(&[wrongtype, loading], "load", "u"),
            Some(Error::Unavailable { .. })
        ));
        assert!(
            not_serving_reply(&Value::Array(vec![Value::Nil, reply("-READONLY no")])).is_some()
        );
    }
}
