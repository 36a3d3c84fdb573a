//! Helpers shared by the demo's HTTP tests.
#![allow(dead_code, unreachable_pub)]

use std::sync::{Arc, OnceLock};

use axum::{
    Router,
    body::{Body, to_bytes},
    http::{HeaderMap, Request, StatusCode},
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::{Value, json};
use session_core::SessionStore;
use session_demo::{AppState, BackendInfo, agent_manager, app};
use session_memory::MemoryStore;
use tower::ServiceExt;

/// The process-wide Prometheus recorder (a recorder can be installed once per process).
pub fn metrics() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| PrometheusBuilder::new().install_recorder().unwrap())
        .clone()
}

/// The admin token of the test instances.
pub const ADMIN_TOKEN: &str = "demo-test-admin-token-0123";

/// The demo on `store`, as one instance of the service (admin router on, with
/// [`ADMIN_TOKEN`]).
pub fn instance(store: Arc<dyn SessionStore>) -> Router {
    app(AppState::new(agent_manager(store), BackendInfo::default())
        .with_metrics(metrics())
        .with_admin(session_axum::AdminAccess::bearer_token(ADMIN_TOKEN).unwrap()))
}

/// The demo on a fresh memory store without the admin router (as the binary runs without
/// `SESSION_ADMIN_TOKEN`).
pub fn demo_without_admin() -> Router {
    app(AppState::new(
        agent_manager(Arc::new(MemoryStore::new())),
        BackendInfo::default(),
    )
    .with_metrics(metrics()))
}

/// A GET with the admin token.
pub fn admin_get(uri: &str) -> Request<Body> {
    Request::get(uri)
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .body(Body::empty())
        .unwrap()
}

/// The demo on a fresh memory store.
pub fn demo() -> Router {
    instance(Arc::new(MemoryStore::new()))
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
}

pub async fn call(app: &Router, request: Request<Body>) -> Reply {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = to_bytes(response.into_body(), 1 << 22).await.unwrap();
    Reply {
        status,
        headers,
        text: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

pub fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

pub fn delete(uri: &str) -> Request<Body> {
    Request::delete(uri).body(Body::empty()).unwrap()
}

pub fn post_raw(uri: &str, body: impl Into<String>) -> Request<Body> {
    Request::post(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.into()))
        .unwrap()
}

/// Sends `message` to session `id` and returns the status and JSON answer.
pub async fn say(app: &Router, id: &str, message: &str) -> (StatusCode, Value) {
    let body = json!({ "message": message }).to_string();
    let reply = call(app, post_raw(&format!("/sessions/{id}/messages"), body)).await;
    let value = reply.json();
    (reply.status, value)
}
