//! The routes: the chat endpoint, the session listing, health ([`health`](crate::health)),
//! metrics and the dashboard.
//!
//! Every error is a JSON body `{"error": kind, "message": text, "session_id"?: id}`
//! ([`session_axum::ApiError`]).

use std::time::Instant;

use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, FromRef, MatchedPath, Request, State, rejection::JsonRejection},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    middleware::{self, Next},
    response::{Html, IntoResponse, Response},
    routing::get,
};
use metrics_exporter_prometheus::PrometheusHandle;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};
use session_axum::{
    AdminAccess, ApiError, IdSource, IdSources, ListParams, ResolvedId, Sessions, admin_router,
    ttl_secs,
};
use session_core::{Error, SessionManager, SummaryValue};

pub use crate::health::{
    BackendInfo, FALLBACK_GAUGE, FailoverCounts, FallbackReport, HEALTH_TIMEOUT, HealthReport,
    RedisHealth,
};
use crate::{
    agent::{Agent, Message},
    health::{healthz, readyz},
    store_info::store_info,
};

/// Longest message accepted, in characters.
pub const MAX_MESSAGE_CHARS: usize = 4096;
/// Largest request body accepted, in bytes (a message of [`MAX_MESSAGE_CHARS`] fits easily).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// The header carrying the cursor of the next page of `GET /sessions`.
pub const NEXT_CURSOR_HEADER: &str = "x-next-cursor";

/// Counter: HTTP requests, labelled `method`, `route`, `status`.
pub const HTTP_REQUESTS: &str = "http_requests_total";
/// Histogram: HTTP request latency in seconds, labelled `method`, `route`.
pub const HTTP_DURATION: &str = "http_request_duration_seconds";

const DASHBOARD: &str = include_str!("dashboard.html");

/// Everything the routes share. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    agents: Sessions<Agent>,
    backend: BackendInfo,
    metrics: Option<PrometheusHandle>,
    admin: Option<AdminAccess>,
}

impl AppState {
    /// The state on `manager` (whose summary should be [`Agent`]'s: build it with
    /// [`agent_manager`](crate::agent_manager) or `.summarize(Agent::summary)`).
    pub fn new(manager: SessionManager<Agent>, backend: BackendInfo) -> Self {
        let agents = Sessions::new(manager)
            .id_sources(IdSources::only(IdSource::Path("id".into())))
            .create_with(Agent::new);
        Self {
            agents,
            backend,
            metrics: None,
            admin: None,
        }
    }

    /// Mounts session-axum's admin router at `/admin`, open to what `access` lets through
    /// (the binary: `SESSION_ADMIN_TOKEN`). Without it `/admin` is not served at all.
    #[must_use]
    pub fn with_admin(mut self, access: AdminAccess) -> Self {
        self.admin = Some(access);
        self
    }

    /// Serves `GET /metrics` from this Prometheus recorder.
    #[must_use]
    pub fn with_metrics(mut self, handle: PrometheusHandle) -> Self {
        self.metrics = Some(handle);
        self
    }

    /// The session manager.
    pub fn manager(&self) -> &SessionManager<Agent> {
        self.agents.manager()
    }

    /// Which store serves the sessions.
    pub fn backend(&self) -> &BackendInfo {
        &self.backend
    }
}

impl FromRef<AppState> for Sessions<Agent> {
    fn from_ref(state: &AppState) -> Self {
        state.agents.clone()
    }
}

impl FromRef<AppState> for IdSources {
    fn from_ref(state: &AppState) -> Self {
        state.agents.sources().clone()
    }
}

/// The service's router:
///
/// | route | what |
/// |---|---|
/// | `GET /` | the dashboard |
/// | `POST /sessions/{id}/messages` | talk to the agent of session `id` (created on first use) |
/// | `GET /sessions?cursor=&limit=` | a page of sessions, as an array; next cursor in `x-next-cursor` and `Link` |
/// | `GET /sessions/{id}` | the whole agent state, with `session_id`, `version`, `ttl`, `size`, `created_at`, `updated_at` ([`SessionView`]) |
/// | `DELETE /sessions/{id}` | 204, or 404 |
/// | `GET /healthz` | liveness: 200 while the process serves, with the [`HealthReport`] (backend, fallback state, Redis reachability) |
/// | `GET /readyz` | readiness: the same report; 503 on the start-up fallback or when the store in use does not answer (see [`health`](crate::health)) |
/// | `GET /metrics` | Prometheus text |
/// | `GET /store/info` | the store in use, the fallback's state and the Redis server's facts ([`StoreInfo`](crate::store_info::StoreInfo)) |
/// | `/admin/sessions...`, `/admin/export` | session-axum's admin router, only with [`AppState::with_admin`] (`Authorization: Bearer <SESSION_ADMIN_TOKEN>`) |
pub fn app(state: AppState) -> Router {
    let admin = state
        .admin
        .clone()
        .map(|access| admin_router(state.manager().clone(), access));
    let router = Router::new()
        .route("/", get(dashboard))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/store/info", get(store_info))
        .route("/sessions", get(list_sessions))
        .route("/sessions/{id}", get(show_session).delete(delete_session))
        .route("/sessions/{id}/messages", axum::routing::post(post_message));
    let router = match admin {
        Some(admin) => router.nest("/admin", admin),
        None => router,
    };
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(observe_request))
        .with_state(state)
}

/// The body of `POST /sessions/{id}/messages`.
#[derive(Debug, Clone, Deserialize)]
pub struct MessageRequest {
    /// What the user says (1 to [`MAX_MESSAGE_CHARS`] characters).
    pub message: String,
    /// Sets the agent's `use_rag` when given.
    #[serde(default)]
    pub use_rag: Option<bool>,
    /// Sets the agent's `use_web_search` when given.
    #[serde(default)]
    pub use_web_search: Option<bool>,
}

/// The answer to `POST /sessions/{id}/messages`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageResponse {
    /// The session.
    pub session_id: String,
    /// The agent's reply.
    pub reply: String,
    /// The state after the message.
    pub state: String,
    /// The attempt after the message.
    pub current_attempt: u32,
}

/// The request header that makes a message idempotent: a resend with the same key (after a
/// lost response, or an `outcome_unknown` error) is answered with the first reply and handled
/// once. 1 to [`MAX_IDEMPOTENCY_KEY_LEN`] visible ASCII characters.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
/// Longest idempotency key accepted.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 128;
/// Response header set to `true` when the reply is a replay of an earlier request with the
/// same idempotency key.
pub const IDEMPOTENT_REPLAYED_HEADER: &str = "idempotent-replayed";

/// The `Idempotency-Key` of a request, if it has a valid one.
fn idempotency_key(
    headers: &HeaderMap,
    id: &session_core::SessionId,
) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY_HEADER) else {
        return Ok(None);
    };
    let valid = value
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY_LEN)
        .filter(|k| k.bytes().all(|b| b.is_ascii_graphic()));
    match valid {
        Some(key) => Ok(Some(key.to_owned())),
        None => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_idempotency_key",
            format!(
                "the Idempotency-Key header must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII \
                 characters"
            ),
        )
        .with_session_id(id.clone())),
    }
}

async fn post_message(
    ResolvedId(id): ResolvedId,
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<MessageRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers, &id)?;
    let Json(request) = body?;
    let chars = request.message.chars().count();
    if chars > MAX_MESSAGE_CHARS {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "message_too_large",
            format!(
                "the message is {chars} characters long; at most {MAX_MESSAGE_CHARS} are accepted"
            ),
        )
        .with_session_id(id));
    }
    if request.message.trim().is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "empty_message",
            "the message is empty",
        )
        .with_session_id(id));
    }
    let message = Message {
        text: &request.message,
        use_rag: request.use_rag,
        use_web_search: request.use_web_search,
    };
    // One compare-and-set: two instances answering the same session never lose a message, and
    // the idempotency check is part of it.
    let (agent, (reply, replayed)) = state
        .manager()
        .modify_or_create(&id, Agent::new, |agent| {
            agent.handle_once(key.as_deref(), message)
        })
        .await?;
    tracing::info!(
        component = "agent",
        session_id = %id,
        event_type = "message_handled",
        state = %agent.state,
        current_attempt = agent.current_attempt,
        version = agent.version(),
        replayed,
        "agent replied"
    );
    let mut response = Json(MessageResponse {
        session_id: id.to_string(),
        reply,
        state: agent.state.to_string(),
        current_attempt: agent.current_attempt,
    })
    .into_response();
    if replayed {
        response
            .headers_mut()
            .insert(IDEMPOTENT_REPLAYED_HEADER, HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// One entry of `GET /sessions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionListItem {
    /// The session.
    pub session_id: String,
    /// The agent's state (`null` if the session has no summary).
    pub state: Option<String>,
    /// The agent's attempt.
    pub current_attempt: Option<i64>,
    /// The agent's attempt limit.
    pub max_attempts: Option<i64>,
    /// Seconds before the session expires (rounded up; `null`: never).
    pub ttl: Option<u64>,
    /// When it was last written, RFC 3339.
    pub updated_at: String,
    /// Its version.
    pub version: u64,
}

async fn list_sessions(
    State(state): State<AppState>,
    params: ListParams,
) -> Result<Response, ApiError> {
    let page = state
        .manager()
        .list_page(params.cursor.as_ref(), params.limit)
        .await?;
    let items: Vec<SessionListItem> = page
        .sessions
        .iter()
        .map(|info| {
            let summary = &info.meta.summary;
            let int = |key| summary.get(key).and_then(SummaryValue::as_i64);
            SessionListItem {
                session_id: info.id.to_string(),
                state: summary
                    .get("state")
                    .and_then(SummaryValue::as_str)
                    .map(str::to_owned),
                current_attempt: int("current_attempt"),
                max_attempts: int("max_attempts"),
                ttl: ttl_secs(info.ttl),
                updated_at: info.meta.updated_at.to_string(),
                version: info.version,
            }
        })
        .collect();
    let mut headers = HeaderMap::new();
    if let Some(next) = page.next {
        if let Ok(value) = HeaderValue::from_str(next.as_str()) {
            headers.insert(NEXT_CURSOR_HEADER, value);
        }
        let link = format!(
            "</sessions?cursor={}&limit={}>; rel=\"next\"",
            utf8_percent_encode(next.as_str(), QUERY_VALUE),
            params.limit
        );
        if let Ok(value) = HeaderValue::from_str(&link) {
            headers.insert(header::LINK, value);
        }
    }
    Ok((headers, Json(items)).into_response())
}

/// What a query value must escape: everything but the unreserved characters.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `GET /sessions/{id}`: the whole agent with the session's identity and what the store
/// knows about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionView {
    /// The session.
    pub session_id: String,
    /// Its version.
    pub version: u64,
    /// Seconds before it expires (rounded up; `null`: never).
    pub ttl: Option<u64>,
    /// The stored payload's size in bytes (the codec's envelope, compressed when it was).
    pub size: u64,
    /// When it was created, RFC 3339.
    pub created_at: String,
    /// When it was last written, RFC 3339.
    pub updated_at: String,
    /// The agent.
    #[serde(flatten)]
    pub agent: Agent,
}

async fn show_session(
    ResolvedId(id): ResolvedId,
    State(state): State<AppState>,
) -> Result<Json<SessionView>, ApiError> {
    let Some(session) = state.manager().get(&id).await? else {
        return Err(Error::NotFound { id }.into());
    };
    let meta = session.meta();
    Ok(Json(SessionView {
        session_id: id.to_string(),
        version: session.version(),
        ttl: ttl_secs(session.ttl()),
        size: meta.size,
        created_at: meta.created_at.to_string(),
        updated_at: meta.updated_at.to_string(),
        agent: session.into_value(),
    }))
}

async fn delete_session(
    ResolvedId(id): ResolvedId,
    State(state): State<AppState>,
) -> Result<StatusCode, ApiError> {
    if state.manager().delete(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Error::NotFound { id }.into())
    }
}

async fn metrics_text(State(state): State<AppState>) -> Result<Response, ApiError> {
    let Some(handle) = &state.metrics else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "metrics_disabled",
            "no metrics recorder is installed in this process",
        ));
    };
    state.backend.publish_gauge();
    let body = handle.render();
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        body,
    )
        .into_response())
}

async fn dashboard() -> Html<&'static str> {
    Html(DASHBOARD)
}

async fn not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_route",
        format!("no route for {method} {}", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// Counts requests and their latency per route, and logs each at debug level.
async fn observe_request(request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let elapsed = start.elapsed();
    metrics::counter!(
        HTTP_REQUESTS,
        "method" => method.to_string(),
        "route" => route.clone(),
        "status" => status.clone()
    )
    .increment(1);
    metrics::histogram!(HTTP_DURATION, "method" => method.to_string(), "route" => route.clone())
        .record(elapsed.as_secs_f64());
    tracing::debug!(
        component = "http",
        event_type = "http_request",
        method = %method,
        route,
        status,
        latency_ms = elapsed.as_secs_f64() * 1e3,
        "request served"
    );
    response
}
