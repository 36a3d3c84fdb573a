//! Our errors as tower-sessions' [`Error`].
//!
//! | `session_core::Error` | `session_store::Error` |
//! |---|---|
//! | `Corrupt` (the stored bytes do not decode) | `Decode` |
//! | `Encode`, `TooLarge` (nothing was written) | `Encode` |
//! | everything else (`Unavailable`, `OutcomeUnknown`, `Auth`, `OutOfMemory`, `Backend` ...) | `Backend` |
//!
//! The text is the error's message followed by its sources (`redis is unavailable: ...:
//! connection refused`), so what tower-sessions logs says what happened. Our errors carry no
//! credentials (see `session_core::Error`).

use std::error::Error as StdError;

use tower_sessions_core::session_store::Error;

/// `err` as tower-sessions' error, with its message and sources.
pub(crate) fn to_tower(err: session_core::Error) -> Error {
    let detail = describe(&err);
    match err {
        session_core::Error::Corrupt { .. } => Error::Decode(detail),
        session_core::Error::Encode { .. } | session_core::Error::TooLarge { .. } => {
            Error::Encode(detail)
        }
        _ => Error::Backend(detail),
    }
}

/// The message of `err` and of each of its sources that it does not already contain.
fn describe(err: &(dyn StdError + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !cause_text.is_empty() && !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use session_core::SessionId;

    fn id() -> SessionId {
        SessionId::new("s").unwrap()
    }

    #[test]
    fn each_kind_maps_to_its_tower_variant_with_the_detail() {
        let e = to_tower(session_core::Error::Corrupt {
            id: id(),
            reason: "truncated envelope".into(),
        });
        assert!(
            matches!(&e, Error::Decode(d) if d.contains("truncated envelope")),
            "{e}"
        );

        let e = to_tower(session_core::Error::TooLarge {
            id: id(),
            size: 2,
            limit: 1,
        });
        assert!(
            matches!(&e, Error::Encode(d) if d.contains("over the limit")),
            "{e}"
        );

        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let e = to_tower(session_core::Error::Unavailable {
            backend: "redis",
            reason: "cannot connect to 127.0.0.1:1".into(),
            source: Some(Box::new(io)),
        });
        assert!(
            matches!(&e, Error::Backend(d)
                if d == "redis is unavailable: cannot connect to 127.0.0.1:1: connection refused"),
            "{e}"
        );
    }

    #[test]
    fn a_source_already_in_the_message_is_not_repeated() {
        let io = std::io::Error::other("boom");
        let e = to_tower(session_core::Error::Backend {
            backend: "redis",
            reason: "boom".into(),
            source: Some(Box::new(io)),
        });
        assert!(
            matches!(&e, Error::Backend(d) if d == "redis error: boom"),
            "{e}"
        );
    }
}
