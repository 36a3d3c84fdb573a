//! The demo service: the seed's repair agent as a small HTTP API, its state kept by the
//! library (in memory by default, in Redis with `USE_REDIS=true`).
//!
//! - [`agent`]: the deterministic agent (no model, no network): `new_problem` ->
//!   `diagnosing` -> `awaiting_feedback` -> `resolved`, or `escalated` after `max_attempts`
//!   failed fixes.
//! - [`http`]: the routes ([`app`]); [`health`]: `/healthz` (liveness) and `/readyz`
//!   (readiness), computed live from the store and its fallback; [`store_info`]: `/store/info`,
//!   the store and the Redis server's facts for the dashboard; [`setup`]: from settings to
//!   the application state.
//!
//! Tests drive the router with `tower::ServiceExt::oneshot`:
//!
//! ```
//! use std::sync::Arc;
//! use axum::{body::Body, http::Request};
//! use session_demo::{AppState, BackendInfo, agent_manager, app};
//! use session_memory::MemoryStore;
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let manager = agent_manager(Arc::new(MemoryStore::new()));
//! let app = app(AppState::new(manager, BackendInfo::default()));
//! let request = Request::post("/sessions/user-1/messages")
//!     .header("content-type", "application/json")
//!     .body(Body::from(r#"{"message": "my printer is offline"}"#))
//!     .unwrap();
//! assert_eq!(app.oneshot(request).await.unwrap().status(), 200);
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod agent;
pub mod health;
pub mod http;
pub mod setup;
pub mod store_info;

pub use agent::Agent;
pub use http::{AppState, BackendInfo, app};
pub use setup::agent_manager;
