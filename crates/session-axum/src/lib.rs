//! axum adapter for durable sessions: the pieces an HTTP service needs to keep per-session
//! state with [`session_core::SessionManager`].
//!
//! - [`Sessions<T>`]: the state the extractors read: the manager, where the session id comes
//!   from ([`IdSources`]: path parameter, `x-session-id` header, cookie, in a configurable
//!   order), and optionally a factory that creates a session on first use.
//! - [`ResolvedId`]: an extractor that yields the request's validated [`SessionId`].
//! - [`LoadedSession<T>`]: an extractor that yields the loaded session; it derefs to `T`, and
//!   [`LoadedSession::save`] writes it back with a version check (409 if somebody else wrote
//!   it since).
//! - [`ApiError`]: every failure as a status and a JSON body
//!   `{"error": kind, "message": text, "session_id"?: id}`; `?` converts
//!   [`session_core::Error`] and axum's JSON, query and path rejections.
//! - [`admin_router`]: list, show, delete and export sessions as JSON, mountable in any
//!   service, behind the access it is given ([`AdminAccess`]: a bearer token, or a guard of
//!   the caller's own that the code must name).
//!
//! **A session id is a bearer secret**: whoever presents it acts as that session's user. Take
//! ids from [`SessionId::random`] (128 bits from the OS's generator; the [`mint_session_cookie`]
//! middleware hands one out in an `HttpOnly`, `Secure`, `SameSite=Lax` cookie), never
//! from anything guessable, and keep listings of ids (the admin router) behind access control.
//!
//! The crate depends on `session-core` and `axum` only: build the store however you like
//! (`session-memory`, `session-redis`, `session-config`).
//!
//! ```
//! use std::sync::Arc;
//! use axum::{Json, Router, body::Body, http::Request, routing::post};
//! use session_axum::{AdminAccess, ApiError, LoadedSession, Sessions, admin_router};
//! use session_core::SessionManager;
//! use session_memory::MemoryStore;
//! use tower::ServiceExt;
//!
//! /// `POST /carts/{id}/items` with a JSON string: adds it to the cart, created on first use.
//! async fn add_item(
//!     mut cart: LoadedSession<Vec<String>>,
//!     Json(item): Json<String>,
//! ) -> Result<Json<Vec<String>>, ApiError> {
//!     cart.push(item);
//!     cart.save().await?; // version-checked: 409 `conflict` if another request saved first
//!     Ok(Json(cart.to_vec()))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let manager = SessionManager::<Vec<String>>::new(Arc::new(MemoryStore::new()));
//! let app: Router = Router::new()
//!     .route("/carts/{id}/items", post(add_item))
//!     .with_state(Sessions::new(manager.clone()).create_with(Vec::new))
//!     .nest("/admin", admin_router(manager, AdminAccess::bearer_token("an-admin-token-of-32-characters").unwrap()));
//!
//! let request = Request::post("/carts/cart-1/items")
//!     .header("content-type", "application/json")
//!     .body(Body::from(r#""apples""#))
//!     .unwrap();
//! let response = app.clone().oneshot(request).await.unwrap();
//! assert_eq!(response.status(), 200);
//!
//! // The admin router answers only with the token.
//! let anonymous = Request::get("/admin/sessions").body(Body::empty()).unwrap();
//! assert_eq!(app.clone().oneshot(anonymous).await.unwrap().status(), 401);
//! let admin = Request::get("/admin/sessions")
//!     .header("authorization", "Bearer an-admin-token-of-32-characters")
//!     .body(Body::empty())
//!     .unwrap();
//! assert_eq!(app.oneshot(admin).await.unwrap().status(), 200);
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod admin;
mod cookie;
mod error;
mod extract;
mod source;

pub use admin::{
    AdminAccess, DEFAULT_LIMIT, ExportErrorLine, ExportLine, InvalidAdminToken, ListParams,
    MAX_LIMIT, MIN_ADMIN_TOKEN_LEN, SessionDetail, SessionItem, SessionPage, admin_router,
    ttl_secs,
};
pub use cookie::{SameSite, SessionCookie, mint_session_cookie};
pub use error::{ApiError, ErrorBody, OUT_OF_MEMORY_MESSAGE};
pub use extract::{LoadedSession, ResolvedId, Sessions};
pub use source::{DEFAULT_COOKIE, DEFAULT_HEADER, DEFAULT_PATH_PARAM, IdSource, IdSources};

// The id type the extractors yield.
pub use session_core::SessionId;
