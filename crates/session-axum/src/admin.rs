//! The JSON admin router ([`admin_router`]) and the listing pieces it is built from
//! ([`ListParams`], [`SessionItem`], [`SessionPage`], [`SessionDetail`]).

use std::time::Duration;

use axum::{
    Json, Router,
    extract::{FromRequestParts, Path, Query, State, rejection::PathRejection},
    http::{StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
    routing::get,
};
use base64::Engine as _;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use session_core::{Cursor, Error, Session, SessionId, SessionInfo, SessionManager, Summary};

use crate::ApiError;

/// Sessions per page when the request gives no `limit`.
pub const DEFAULT_LIMIT: usize = 50;
/// The largest `limit` accepted.
pub const MAX_LIMIT: usize = 1000;

/// A router with the admin endpoints for the sessions of `manager`, to mount anywhere
/// (`Router::nest("/admin", admin_router(manager))`):
///
/// - `GET /sessions?cursor=&limit=`: one page of the listing as a [`SessionPage`]
///   (`limit` 1 to 1000, default 50; follow `next_cursor` until it is `null`);
/// - `GET /sessions/{id}`: the whole session as a [`SessionDetail`] (the state under
///   `value`), or 404;
/// - `DELETE /sessions/{id}`: 204 No Content, or 404 when there is no such session;
/// - `GET /export`: every session as JSON Lines in the format `sessionctl import` reads
///   (one [`ExportLine`] per line): the way to move sessions out of a service's in-memory
///   store into Redis (`curl .../admin/export > sessions.jsonl`, then
///   `sessionctl import sessions.jsonl`).
///
/// Errors are [`ApiError`] JSON bodies (400 for an invalid id, limit or cursor). The router
/// carries its own state, so it merges into a router of any state type.
///
/// ```
/// use std::sync::Arc;
/// use axum::Router;
/// use session_core::SessionManager;
/// use session_memory::MemoryStore;
///
/// let manager: SessionManager<Vec<String>> = SessionManager::new(Arc::new(MemoryStore::new()));
/// let app: Router = Router::new().nest("/admin", session_axum::admin_router(manager));
/// ```
pub fn admin_router<T, S>(manager: SessionManager<T>) -> Router<S>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/sessions", get(list::<T>))
        .route("/sessions/{id}", get(show::<T>).delete(delete::<T>))
        .route("/export", get(export::<T>))
        .with_state(manager)
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

/// Sessions read per store call while exporting.
const EXPORT_PAGE: usize = 500;

async fn export<T>(State(manager): State<SessionManager<T>>) -> Result<Response, ApiError>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let store = manager.store();
    let mut body = String::new();
    let mut cursor = None;
    loop {
        let page = store.list_page(cursor.as_ref(), EXPORT_PAGE).await?;
        for info in &page.sessions {
            // A session that expired or was deleted since it was listed is simply not there.
            let Some(record) = store.load(&info.id).await? else {
                continue;
            };
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
            let text = serde_json::to_string(&line).map_err(|e| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "export", e.to_string())
            })?;
            body.push_str(&text);
            body.push('\n');
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
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
