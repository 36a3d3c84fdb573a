//! [`ApiError`]: every failure as an HTTP status and a JSON body.

use std::{borrow::Cow, fmt};

use axum::{
    Json,
    extract::rejection::{JsonRejection, PathRejection, QueryRejection},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use session_core::{Error, InvalidId, SessionId};

/// An error as a handler returns it: a status, a stable `kind` and a message, rendered as
///
/// ```json
/// {"error": "not_found", "message": "session user-1 not found (it may have expired)", "session_id": "user-1"}
/// ```
///
/// (`session_id` only when the error names a valid session). Built from
/// [`session_core::Error`] with `?`, where the status follows the variant:
///
/// | kind | status |
/// |---|---|
/// | `invalid_id`, `invalid_cursor` | 400 Bad Request |
/// | `not_found` | 404 Not Found |
/// | `conflict` | 409 Conflict |
/// | `too_large` | 413 Payload Too Large |
/// | `unavailable`, `auth` | 503 Service Unavailable (with `Retry-After: 1`): nothing was written, retrying is safe |
/// | `outcome_unknown` | 500 Internal Server Error, **no** `Retry-After`: the write may have been applied; a client must read the session first, or retry with the same idempotency key, never blindly |
/// | `out_of_memory` | 507 Insufficient Storage, **no** `Retry-After`: the store refuses writes until an operator gives it memory ([`OUT_OF_MEMORY_MESSAGE`]) |
/// | `corrupt`, `backend`, `encode`, `config` | 500 Internal Server Error |
///
/// A client error's message says what was wrong with the request. A server error's (5xx)
/// message is a fixed sentence per kind: the detail (the store's address and user, the
/// server's words) is logged when the response is built and stays available through
/// [`session_error`](Self::session_error), never in the body.
///
/// and from axum's JSON, query and path rejections (`invalid_json`, `invalid_query`,
/// `invalid_path` ..., with the rejection's own status), so that a client never gets a plain
/// text error. Messages are the `Display` of the error: ids are quoted safely by
/// `session_core`, and backend errors carry no credentials. `out_of_memory` is the exception:
/// its message says what an operator can do and nothing of what the server said.
///
/// ```
/// use axum::{http::StatusCode, response::IntoResponse};
/// use session_axum::ApiError;
/// use session_core::{Error, SessionId};
///
/// let id = SessionId::new("user-1")?;
/// let e = ApiError::from(Error::NotFound { id });
/// assert_eq!(e.status(), StatusCode::NOT_FOUND);
/// assert_eq!(e.kind(), "not_found");
/// assert_eq!(e.into_response().status(), StatusCode::NOT_FOUND);
///
/// let e = ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "message_too_large", "at most 4096 characters");
/// assert_eq!(e.message(), "at most 4096 characters");
/// # Ok::<(), session_core::InvalidId>(())
/// ```
#[derive(Debug)]
pub struct ApiError(Box<Repr>);

// Boxed: handlers return `Result<_, ApiError>` everywhere, and the library error is large.
#[derive(Debug)]
struct Repr {
    status: StatusCode,
    kind: Cow<'static, str>,
    message: String,
    session_id: Option<SessionId>,
    source: Option<Error>,
}

/// The JSON body of an [`ApiError`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ErrorBody {
    /// The stable kind (`not_found`, `conflict`, `invalid_id` ...).
    pub error: String,
    /// What happened, for people.
    pub message: String,
    /// The session concerned, when the error names a valid one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
}

impl ApiError {
    /// An error with this status, kind and message.
    pub fn new(
        status: StatusCode,
        kind: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self(Box::new(Repr {
            status,
            kind: kind.into(),
            message: message.into(),
            session_id: None,
            source: None,
        }))
    }

    /// A 400 Bad Request with this kind and message.
    pub fn bad_request(kind: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, kind, message)
    }

    /// Names the session the error is about (the `session_id` field of the body).
    #[must_use]
    pub fn with_session_id(mut self, id: SessionId) -> Self {
        self.0.session_id = Some(id);
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    /// The stable kind, the `error` field of the body.
    pub fn kind(&self) -> &str {
        &self.0.kind
    }

    /// The message, the `message` field of the body.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// The session the error is about, if any.
    pub fn session_id(&self) -> Option<&SessionId> {
        self.0.session_id.as_ref()
    }

    /// The library error this was built from, if any.
    pub fn session_error(&self) -> Option<&Error> {
        self.0.source.as_ref()
    }

    /// The body as it is sent.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.0.kind.to_string(),
            message: self.0.message.clone(),
            session_id: self.0.session_id.as_ref().map(|id| id.to_string()),
        }
    }
}

/// The message of an `out_of_memory` error (507): what to do about it, without the server's
/// words (they name its memory figures, which a client has no use for).
pub const OUT_OF_MEMORY_MESSAGE: &str = "the session store is out of memory and refuses writes \
     (nothing was written): raise Redis' maxmemory, or set an eviction policy such as \
     allkeys-lru or volatile-lru (maxmemory-policy)";

/// The status an error of the library maps to.
fn status_of(e: &Error) -> StatusCode {
    match e {
        Error::InvalidId(_) | Error::InvalidCursor { .. } => StatusCode::BAD_REQUEST,
        Error::NotFound { .. } => StatusCode::NOT_FOUND,
        Error::Conflict { .. } => StatusCode::CONFLICT,
        Error::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        Error::Unavailable { .. } | Error::Auth { .. } => StatusCode::SERVICE_UNAVAILABLE,
        // Not 503: a 503 invites a retry, and a retry of a write that may have landed can
        // apply it twice.
        Error::OutcomeUnknown { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        // Not 503 either: retrying does not help until an operator acts, and a fallback must
        // not take over (the server answers).
        Error::OutOfMemory { .. } => StatusCode::INSUFFICIENT_STORAGE,
        // Corrupt, Encode, Backend, Config, and whatever a later version adds.
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The session an error names, if any.
fn id_of(e: &Error) -> Option<SessionId> {
    match e {
        Error::NotFound { id }
        | Error::Conflict { id, .. }
        | Error::Corrupt { id, .. }
        | Error::Encode { id, .. }
        | Error::TooLarge { id, .. }
        | Error::OutcomeUnknown { id, .. } => Some(id.clone()),
        _ => None,
    }
}

/// The message of the body. A client error says what was wrong with the request (the error's
/// `Display`, which quotes only the client's own input). A server error says what happened in
/// general words and what to do: its detail (the store's host, port, database and user, the
/// server's own words) stays in the logs ([`ApiError::into_response`] logs it) and in
/// [`ApiError::session_error`], never in a body a client sees.
fn message_of(e: &Error, status: StatusCode) -> String {
    if !status.is_server_error() {
        return e.to_string();
    }
    match e {
        Error::OutOfMemory { .. } => OUT_OF_MEMORY_MESSAGE,
        Error::Unavailable { .. } => {
            "the session store is unavailable; nothing was changed, try again later"
        }
        Error::OutcomeUnknown { .. } => {
            "the session store did not confirm whether the change was saved; read the session \
             before trying again"
        }
        Error::Auth { .. } => {
            "the session store refused this service's credentials (a configuration error of \
             the service)"
        }
        Error::Corrupt { .. } => "the stored session cannot be read",
        Error::Encode { .. } => "the session could not be encoded",
        _ => "the session store failed",
    }
    .to_owned()
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status = status_of(&e);
        Self(Box::new(Repr {
            status,
            kind: Cow::Borrowed(e.kind()),
            message: message_of(&e, status),
            session_id: id_of(&e),
            source: Some(e),
        }))
    }
}

impl From<InvalidId> for ApiError {
    fn from(e: InvalidId) -> Self {
        Self::from(Error::from(e))
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let kind = match &r {
            JsonRejection::MissingJsonContentType(_) => "unsupported_media_type",
            _ if r.status() == StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            _ => "invalid_json",
        };
        Self::new(r.status(), kind, r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::new(r.status(), "invalid_query", r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        let status = r.status();
        // A failed path extraction in a matched route is the client's input, except when the
        // route and the extractor disagree (a programming error, reported as 500 by axum).
        Self::new(status, "invalid_path", r.body_text())
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.0.status, self.0.kind, self.0.message)
    }
}

impl std::error::Error for ApiError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0
            .source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl IntoResponse for ApiError {
    /// The status and the JSON body. A server error's detail, which the body leaves out, is
    /// logged here (`tracing`, target `session_axum::error`): the kind, the session, and the
    /// library error in full (URLs redacted, never a credential).
    fn into_response(self) -> Response {
        if self.0.status.is_server_error()
            && let Some(e) = &self.0.source
        {
            tracing::warn!(
                component = "session",
                status = self.0.status.as_u16(),
                kind = %self.0.kind,
                session_id = self.0.session_id.as_ref().map(SessionId::as_str),
                error = %e,
                "request failed in the session store"
            );
        }
        let mut response = (self.0.status, Json(self.body())).into_response();
        if self.0.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> SessionId {
        SessionId::new("user-1").unwrap()
    }

    #[test]
    fn every_library_error_maps_to_its_documented_status() {
        let cases: Vec<(Error, StatusCode, &str)> = vec![
            (
                SessionId::new("a b").unwrap_err().into(),
                StatusCode::BAD_REQUEST,
                "invalid_id",
            ),
            (
                Error::invalid_cursor("zz", "not mine"),
                StatusCode::BAD_REQUEST,
                "invalid_cursor",
            ),
            (
                Error::NotFound { id: id() },
                StatusCode::NOT_FOUND,
                "not_found",
            ),
            (
                Error::Conflict {
                    id: id(),
                    expected: Some(1),
                    actual: Some(2),
                },
                StatusCode::CONFLICT,
                "conflict",
            ),
            (
                Error::TooLarge {
                    id: id(),
                    size: 10,
                    limit: 5,
                },
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
            ),
            (
                Error::corrupt(&id(), "bad magic byte"),
                StatusCode::INTERNAL_SERVER_ERROR,
                "corrupt",
            ),
            (
                Error::Unavailable {
                    backend: "redis",
                    reason: "connection refused".into(),
                    source: None,
                },
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
            ),
            (
                Error::Auth {
                    backend: "redis",
                    reason: "WRONGPASS".into(),
                },
                StatusCode::SERVICE_UNAVAILABLE,
                "auth",
            ),
            (
                Error::Backend {
                    backend: "redis",
                    reason: "OOM".into(),
                    source: None,
                },
                StatusCode::INTERNAL_SERVER_ERROR,
                "backend",
            ),
            (
                Error::Encode {
                    id: id(),
                    reason: "map key".into(),
                },
                StatusCode::INTERNAL_SERVER_ERROR,
                "encode",
            ),
            (
                Error::config("SESSION_TTL", "0", "a positive number of seconds"),
                StatusCode::INTERNAL_SERVER_ERROR,
                "config",
            ),
        ];
        for (error, status, kind) in cases {
            let text = error.to_string();
            let e = ApiError::from(error);
            assert_eq!(e.status(), status, "{kind}");
            assert_eq!(e.kind(), kind);
            if status.is_server_error() {
                // The detail stays with the service, not in the body.
                assert_ne!(e.message(), text, "{kind}");
                assert_eq!(e.session_error().map(ToString::to_string), Some(text));
            } else {
                assert_eq!(e.message(), text);
            }
        }
    }

    #[test]
    fn server_errors_tell_no_host_user_or_server_words() {
        let cases = [
            Error::Unavailable {
                backend: "redis",
                reason: "load on redis://app:***@10.1.2.3:6390/4: connection refused".into(),
                source: None,
            },
            Error::Auth {
                backend: "redis",
                reason: "connecting on redis://app:***@10.1.2.3:6390/4: WRONGPASS invalid".into(),
            },
            Error::Backend {
                backend: "redis",
                reason: "saving on redis://app:***@10.1.2.3:6390/4: ERR unknown command".into(),
                source: None,
            },
            Error::OutcomeUnknown {
                id: id(),
                backend: "redis",
                reason: "reply lost on redis://app:***@10.1.2.3:6390/4".into(),
            },
        ];
        for error in cases {
            let body = serde_json::to_string(&ApiError::from(error).body()).unwrap();
            for detail in ["10.1.2.3", "6390", "app", "WRONGPASS", "ERR", "redis://"] {
                assert!(!body.contains(detail), "{detail} in {body}");
            }
        }
    }

    #[test]
    fn out_of_memory_is_a_507_that_says_what_to_do_and_not_what_the_server_said() {
        let reason = "OOM command not allowed when used memory > 'maxmemory'. \
                      used_memory:1048712 maxmemory:1048576 at 10.0.0.7:6379";
        let e = ApiError::from(Error::OutOfMemory {
            backend: "redis",
            reason: reason.into(),
        });
        assert_eq!(e.status(), StatusCode::INSUFFICIENT_STORAGE);
        assert_eq!(e.kind(), "out_of_memory");
        assert_eq!(e.message(), OUT_OF_MEMORY_MESSAGE);
        for named in [
            "maxmemory",
            "allkeys-lru",
            "volatile-lru",
            "eviction policy",
        ] {
            assert!(e.message().contains(named), "{named}: {}", e.message());
        }
        for detail in ["used_memory", "10.0.0.7", "6379", "OOM command"] {
            assert!(!e.message().contains(detail), "{detail}: {}", e.message());
        }
        assert_eq!(e.body().session_id, None);
        assert!(
            matches!(e.session_error(), Some(Error::OutOfMemory { reason: r, .. }) if r == reason),
            "the server's words stay available to the service's logs"
        );
        let response = e.into_response();
        assert_eq!(response.status(), StatusCode::INSUFFICIENT_STORAGE);
        assert!(
            response.headers().get(header::RETRY_AFTER).is_none(),
            "a retry does not help until an operator gives Redis memory"
        );
    }

    #[test]
    fn the_body_names_the_session_only_when_the_error_does() {
        let e = ApiError::from(Error::NotFound { id: id() });
        assert_eq!(e.body().session_id.as_deref(), Some("user-1"));
        let e = ApiError::from(SessionId::new("a\u{1b}b").unwrap_err());
        assert_eq!(e.body().session_id, None);
        assert!(!e.message().contains('\u{1b}'), "{}", e.message());
    }

    #[test]
    fn unavailable_tells_clients_when_to_retry() {
        let unknown = ApiError::from(Error::OutcomeUnknown {
            id: id(),
            backend: "redis",
            reason: "the reply was lost".into(),
        })
        .into_response();
        assert_eq!(unknown.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            unknown.headers().get(header::RETRY_AFTER).is_none(),
            "a write that may have landed must not invite a retry"
        );
        let e = ApiError::from(Error::Unavailable {
            backend: "redis",
            reason: "timed out".into(),
            source: None,
        });
        let response = e.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }
}
