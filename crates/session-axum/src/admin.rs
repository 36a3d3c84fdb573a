//! The JSON admin router ([`admin_router`]), who may use it ([`AdminAccess`]), and the
//! listing pieces it is built from ([`ListParams`], [`SessionItem`], [`SessionPage`],
//! [`SessionDetail`]).

use std::{fmt, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::{FromRequestParts, Path, Query, Request, State, rejection::PathRejection},
    http::{StatusCode, header, request::Parts},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use base64::Engine as _;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use session_core::{
    Cursor, Error, Session, SessionId, SessionInfo, SessionManager, SessionStore, Summary,
};

use crate::ApiError;

/// The shortest bearer token [`AdminAccess::bearer_token`] accepts, in bytes.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;

/// Who may use the admin router: a required argument of [`admin_router`], so that mounting it
/// open is a decision written in the code, never an accident.
///
/// The admin endpoints list every session id, and a session id is a bearer secret (whoever
/// knows it can act as that session's user): treat them as you treat a database console.
#[derive(Clone)]
pub struct AdminAccess(Access);

#[derive(Clone)]
enum Access {
    Token(Arc<[u8]>),
    Caller,
}

impl AdminAccess {
    /// Requests must carry `Authorization: Bearer <token>`; others get 401 with
    /// `WWW-Authenticate: Bearer` and no detail. The token is compared in constant time and
    /// never logged or shown by `Debug`. At least [`MIN_ADMIN_TOKEN_LEN`] bytes of visible
    /// ASCII (e.g. `openssl rand -hex 32`).
    pub fn bearer_token(token: impl Into<String>) -> Result<Self, InvalidAdminToken> {
        let token = token.into();
        if token.len() < MIN_ADMIN_TOKEN_LEN {
            return Err(InvalidAdminToken::TooShort(token.len()));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidAdminToken::NotVisibleAscii);
        }
        Ok(Self(Access::Token(Arc::from(token.into_bytes()))))
    }

    /// No check in the router: the application guards it itself, with its own layer
    /// (authentication middleware around the nested router) or by serving it only on a
    /// private listener. Name this only where such a guard exists.
    pub fn guarded_by_caller() -> Self {
        Self(Access::Caller)
    }
}

impl fmt::Debug for AdminAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Access::Token(_) => f.write_str("AdminAccess::BearerToken(<redacted>)"),
            Access::Caller => f.write_str("AdminAccess::GuardedByCaller"),
        }
    }
}

/// Why [`AdminAccess::bearer_token`] refused a token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidAdminToken {
    /// Shorter than [`MIN_ADMIN_TOKEN_LEN`] bytes (its length).
    TooShort(usize),
    /// It holds a space, a control character or non-ASCII (it could not travel in a header).
    NotVisibleAscii,
}

impl fmt::Display for InvalidAdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort(n) => write!(
                f,
                "the admin token has {n} bytes; at least {MIN_ADMIN_TOKEN_LEN} are required \
                 (e.g. `openssl rand -hex 32`)"
            ),
            Self::NotVisibleAscii => {
                f.write_str("the admin token must be visible ASCII (no spaces or controls)")
            }
        }
    }
}

impl std::error::Error for InvalidAdminToken {}

/// Equal in time that depends on the lengths only.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn check_token(token: Arc<[u8]>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    match presented {
        Some(p) if constant_time_eq(p.as_bytes(), &token) => next.run(request).await,
        _ => {
            let mut response = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the admin endpoints need `Authorization: Bearer <admin token>`",
            )
            .into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            response
        }
    }
}

/// Sessions per page when the request gives no `limit`.
pub const DEFAULT_LIMIT: usize = 50;
/// The largest `limit` accepted.
pub const MAX_LIMIT: usize = 1000;

/// A router with the admin endpoints for the sessions of `manager`, to mount anywhere
/// (`Router::nest("/admin", admin_router(manager, access))`), open only to what `access`
/// lets through (see [`AdminAccess`]):
///
/// - `GET /sessions?cursor=&limit=`: one page of the listing as a [`SessionPage`]
///   (`limit` 1 to 1000, default 50; follow `next_cursor` until it is `null`);
/// - `GET /sessions/{id}`: the whole session as a [`SessionDetail`] (the state under
///   `value`), or 404;
/// - `DELETE /sessions/{id}`: 204 No Content, or 404 when there is no such session;
/// - `GET /export`: every session as JSON Lines in the format `sessionctl import` reads
///   (one [`ExportLine`] per line), streamed page by page (memory stays bounded by one page
///   whatever the store holds): the way to move sessions out of a service's in-memory store
///   into Redis (`curl -H "Authorization: Bearer $TOKEN" .../admin/export > sessions.jsonl`,
///   then `sessionctl import sessions.jsonl`). A session that cannot be read is an
///   [`ExportErrorLine`] in its place and the export goes on; a failure of the store ends
///   the stream with an error line (no session id), since the status was already sent.
///
/// Errors are [`ApiError`] JSON bodies (400 for an invalid id, limit or cursor). The router
/// carries its own state, so it merges into a router of any state type.
///
/// ```
/// use std::sync::Arc;
/// use axum::Router;
/// use session_axum::{AdminAccess, admin_router};
/// use session_core::SessionManager;
/// use session_memory::MemoryStore;
///
/// let manager: SessionManager<Vec<String>> = SessionManager::new(Arc::new(MemoryStore::new()));
/// let token = std::env::var("ADMIN_TOKEN").unwrap_or_else(|_| "0123456789abcdef-example".into());
/// let access = AdminAccess::bearer_token(token)?;
/// let app: Router = Router::new().nest("/admin", admin_router(manager, access));
/// # Ok::<(), session_axum::InvalidAdminToken>(())
/// ```
pub fn admin_router<T, S>(manager: SessionManager<T>, access: AdminAccess) -> Router<S>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
    S: Clone + Send + Sync + 'static,
{
    let router = Router::new()
        .route("/sessions", get(list::<T>))
        .route("/sessions/{id}", get(show::<T>).delete(delete::<T>))
        .route("/export", get(export::<T>))
        .with_state(manager);
    match access.0 {
        Access::Token(token) => router.layer(middleware::from_fn(move |request, next| {
            check_token(Arc::clone(&token), request, next)
        })),
        Access::Caller => router,
    }
}

/// One session in the portable JSON Lines format shared with `sessionctl export`/`import`:
/// the stored envelope byte for byte (base64), its version, remaining TTL and times in
/// milliseconds (UTC, since the Unix epoch) and its summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportLine {
    /// The session id.
    pub id: String,
    /// Its version when exported (an import writes it anew).
    pub version: u64,
    /// Milliseconds left before it expires (`null`: no expiry).
    pub ttl_ms: Option<u64>,
    /// When it was created, ms since the epoch.
    pub created_at: u64,
    /// When it was last written, ms since the epoch.
    pub updated_at: u64,
    /// What listings show.
    pub summary: Summary,
    /// The stored envelope, standard base64 with padding.
    pub payload_b64: String,
}

/// A line of an export in place of a session that could not be exported, or, without `id`,
/// the last line of an export the store broke off:
/// `{"id": "user-1", "error": "corrupt", "message": "..."}`. `sessionctl import` reports such
/// lines and imports the rest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportErrorLine {
    /// The session, when the error is one session's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The error kind ([`Error::kind`]: `corrupt`, `unavailable` ...).
    pub error: String,
    /// What happened, in general words (a store failure's detail goes to the log only).
    pub message: String,
}

/// Sessions read per store call while exporting.
const EXPORT_PAGE: usize = 500;

/// Where a streamed export stands.
enum ExportState {
    /// The next page to read (`None`: the first).
    Page(Option<Cursor>),
    Done,
}

async fn export<T>(State(manager): State<SessionManager<T>>) -> Response
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let store = Arc::clone(manager.store());
    let stream = futures_util::stream::unfold(ExportState::Page(None), move |state| {
        let store = Arc::clone(&store);
        async move {
            let ExportState::Page(cursor) = state else {
                return None;
            };
            let (chunk, next) = export_page(&*store, cursor.as_ref()).await;
            let next = match next {
                Some(cursor) => ExportState::Page(Some(cursor)),
                None => ExportState::Done,
            };
            Some((
                Ok::<Bytes, std::convert::Infallible>(Bytes::from(chunk)),
                next,
            ))
        }
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response()
}

/// One page of an export as JSON Lines, and where the next starts (`None`: the end, after a
/// last page or a failure of the store, which the text ends with as an error line).
async fn export_page(
    store: &dyn SessionStore,
    cursor: Option<&Cursor>,
) -> (String, Option<Cursor>) {
    let mut text = String::new();
    let page = match store.list_page(cursor, EXPORT_PAGE).await {
        Ok(page) => page,
        Err(e) => {
            push_error(&mut text, None, &e);
            return (text, None);
        }
    };
    for info in &page.sessions {
        match store.load(&info.id).await {
            Ok(Some(record)) => {
                let line = ExportLine {
                    id: info.id.to_string(),
                    version: record.version,
                    ttl_ms: record
                        .ttl
                        .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
                    created_at: record.meta.created_at.as_millis(),
                    updated_at: record.meta.updated_at.as_millis(),
                    summary: record.meta.summary,
                    payload_b64: base64::engine::general_purpose::STANDARD.encode(&record.payload),
                };
                push_json(&mut text, &line);
            }
            // Expired or deleted since it was listed: simply not there.
            Ok(None) => {}
            Err(e) if e.is_backend_failure() => {
                push_error(&mut text, None, &e);
                return (text, None);
            }
            Err(e) => push_error(&mut text, Some(&info.id), &e),
        }
    }
    (text, page.next)
}

fn push_json(text: &mut String, line: &impl Serialize) {
    // Plain data (strings, numbers, a summary of JSON values) always serializes.
    if let Ok(json) = serde_json::to_string(line) {
        text.push_str(&json);
        text.push('\n');
    }
}

fn push_error(text: &mut String, id: Option<&SessionId>, e: &Error) {
    let message = if e.is_backend_failure() {
        tracing::warn!(
            component = "session",
            error = %e,
            "admin export: the store failed; the export ends with an error line"
        );
        "the session store failed; the export is incomplete".to_owned()
    } else {
        e.to_string()
    };
    push_json(
        text,
        &ExportErrorLine {
            id: id.map(|id| id.to_string()),
            error: e.kind().to_owned(),
            message,
        },
    );
}

async fn list<T>(
    State(manager): State<SessionManager<T>>,
    params: ListParams,
) -> Result<Json<SessionPage>, ApiError>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let page = manager
        .list_page(params.cursor.as_ref(), params.limit)
        .await?;
    Ok(Json(SessionPage {
        sessions: page.sessions.iter().map(SessionItem::from).collect(),
        next_cursor: page.next.map(|c| c.as_str().to_owned()),
    }))
}

async fn show<T>(
    State(manager): State<SessionManager<T>>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<SessionDetail<T>>, ApiError>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let id = path_id(id)?;
    match manager.get(&id).await? {
        Some(session) => Ok(Json(SessionDetail::from(session))),
        None => Err(Error::NotFound { id }.into()),
    }
}

async fn delete<T>(
    State(manager): State<SessionManager<T>>,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let id = path_id(id)?;
    if manager.delete(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Error::NotFound { id }.into())
    }
}

fn path_id(id: Result<Path<String>, PathRejection>) -> Result<SessionId, ApiError> {
    let Path(raw) = id?;
    Ok(SessionId::new(raw)?)
}

/// The paging parameters of a listing request, `?cursor=&limit=`, validated: `limit` is 1 to
/// [`MAX_LIMIT`] (default [`DEFAULT_LIMIT`]); an empty or absent `cursor` starts at the
/// beginning. As an extractor it rejects with 400 `invalid_query` JSON; the store itself
/// rejects a cursor it did not produce (400 `invalid_cursor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListParams {
    /// Where the page starts (`None`: the beginning).
    pub cursor: Option<Cursor>,
    /// At most this many sessions.
    pub limit: usize,
}

impl Default for ListParams {
    fn default() -> Self {
        Self {
            cursor: None,
            limit: DEFAULT_LIMIT,
        }
    }
}

#[derive(Deserialize)]
struct RawListParams {
    cursor: Option<String>,
    limit: Option<String>,
}

impl ListParams {
    /// Validates raw query values.
    pub fn parse(cursor: Option<&str>, limit: Option<&str>) -> Result<Self, ApiError> {
        let limit = match limit.map(str::trim) {
            None | Some("") => DEFAULT_LIMIT,
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    return Err(ApiError::bad_request(
                        "invalid_query",
                        format!(
                            "invalid limit {}: expected a whole number from 1 to {MAX_LIMIT}",
                            serde_json::Value::from(text.chars().take(32).collect::<String>())
                        ),
                    ));
                }
            },
        };
        let cursor = cursor.filter(|c| !c.is_empty()).map(Cursor::from);
        Ok(Self { cursor, limit })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ListParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(raw) = Query::<RawListParams>::from_request_parts(parts, state).await?;
        Self::parse(raw.cursor.as_deref(), raw.limit.as_deref())
    }
}

/// Seconds left before expiry, rounded up so that a live session never shows 0; `None` for
/// no expiry.
pub fn ttl_secs(ttl: Option<Duration>) -> Option<u64> {
    ttl.map(|d| d.as_millis().div_ceil(1000).try_into().unwrap_or(u64::MAX))
}

/// One session of a listing, as JSON:
///
/// ```json
/// {"session_id": "user-1", "version": 3, "ttl": 3598,
///  "created_at": "2026-11-25T09:10:13.042Z", "updated_at": "2026-11-25T09:10:15.512Z",
///  "size": 412, "summary": {"state": "diagnosing", "current_attempt": 1}}
/// ```
///
/// `ttl` is in seconds, rounded up (`null`: no expiry); times are RFC 3339, UTC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionItem {
    /// The session.
    pub session_id: String,
    /// Its version (1 on create, +1 per write).
    pub version: u64,
    /// Seconds left before it expires.
    pub ttl: Option<u64>,
    /// When it was created.
    pub created_at: String,
    /// When it was last written.
    pub updated_at: String,
    /// Its encoded size in bytes.
    pub size: u64,
    /// What the state type's summary shows.
    pub summary: Summary,
}

impl From<&SessionInfo> for SessionItem {
    fn from(info: &SessionInfo) -> Self {
        Self {
            session_id: info.id.to_string(),
            version: info.version,
            ttl: ttl_secs(info.ttl),
            created_at: info.meta.created_at.to_string(),
            updated_at: info.meta.updated_at.to_string(),
            size: info.meta.size,
            summary: info.meta.summary.clone(),
        }
    }
}

/// One page of a listing: `{"sessions": [SessionItem ...], "next_cursor": "..." | null}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionPage {
    /// The sessions of this page.
    pub sessions: Vec<SessionItem>,
    /// Pass as `?cursor=` for the next page; `null` when the listing is complete.
    pub next_cursor: Option<String>,
}

/// A whole session, as JSON: the [`SessionItem`] fields plus the state under `value`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionDetail<T> {
    /// Id, version, TTL, times, size and summary.
    #[serde(flatten)]
    pub info: SessionItem,
    /// The state.
    pub value: T,
}

impl<T> From<Session<T>> for SessionDetail<T> {
    fn from(session: Session<T>) -> Self {
        let meta = session.meta();
        let info = SessionItem {
            session_id: session.id().to_string(),
            version: session.version(),
            ttl: ttl_secs(session.ttl()),
            created_at: meta.created_at.to_string(),
            updated_at: meta.updated_at.to_string(),
            size: meta.size,
            summary: meta.summary.clone(),
        };
        Self {
            info,
            value: session.into_value(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_checked_and_default_to_fifty() {
        assert_eq!(ListParams::parse(None, None).unwrap().limit, 50);
        assert_eq!(ListParams::parse(None, Some("")).unwrap().limit, 50);
        assert_eq!(ListParams::parse(None, Some("1000")).unwrap().limit, 1000);
        for bad in ["0", "1001", "-1", "ten", "1e3"] {
            let e = ListParams::parse(None, Some(bad)).unwrap_err();
            assert_eq!(e.status(), StatusCode::BAD_REQUEST);
            assert_eq!(e.kind(), "invalid_query");
        }
        assert_eq!(ListParams::parse(Some(""), None).unwrap().cursor, None);
        assert_eq!(
            ListParams::parse(Some("m1:a"), None).unwrap().cursor,
            Some(Cursor::from("m1:a"))
        );
    }

    #[test]
    fn ttl_rounds_up_to_whole_seconds() {
        assert_eq!(ttl_secs(None), None);
        assert_eq!(ttl_secs(Some(Duration::from_millis(1))), Some(1));
        assert_eq!(ttl_secs(Some(Duration::from_millis(3_600_000))), Some(3600));
        assert_eq!(ttl_secs(Some(Duration::from_millis(3_599_001))), Some(3600));
    }
}
