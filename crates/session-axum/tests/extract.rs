//! The extractors on the memory store: where the id comes from, loading, creating, saving.

mod common;

use std::sync::Arc;

use axum::{
    Json, Router,
    body::Body,
    extract::FromRef,
    http::{HeaderName, Request, StatusCode},
    routing::{get, post},
};
use serde_json::{Value, json};
use session_axum::{ApiError, IdSources, LoadedSession, ResolvedId, Sessions};
use session_core::{SessionId, SessionManager};
use session_memory::MemoryStore;

use common::{get as get_req, post_json, send};

type Cart = Vec<String>;

fn manager() -> SessionManager<Cart> {
    SessionManager::new(Arc::new(MemoryStore::new()))
}

async fn which(ResolvedId(id): ResolvedId) -> String {
    id.to_string()
}

async fn show(cart: LoadedSession<Cart>) -> Json<Value> {
    Json(json!({ "items": *cart, "version": cart.version(), "new": cart.is_new() }))
}

async fn add(
    mut cart: LoadedSession<Cart>,
    Json(item): Json<String>,
) -> Result<Json<Cart>, ApiError> {
    cart.push(item);
    cart.save().await?;
    Ok(Json(cart.to_vec()))
}

async fn maybe(cart: Option<LoadedSession<Cart>>) -> String {
    match cart {
        Some(cart) => format!("{} items", cart.len()),
        None => "none".to_owned(),
    }
}

fn app(sessions: Sessions<Cart>) -> Router {
    Router::new()
        .route("/id", get(which))
        .route("/id/{id}", get(which))
        .route("/carts/{id}", get(show))
        .route("/carts/{id}/items", post(add))
        .route("/cart", get(show))
        .route("/maybe", get(maybe))
        .with_state(sessions)
}

async fn text(app: &Router, request: Request<Body>) -> (StatusCode, String) {
    use tower::ServiceExt;
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn the_id_comes_from_the_path_then_the_header_then_the_cookie() {
    let app = app(Sessions::new(manager()));
    let all = Request::get("/id/from-path")
        .header("x-session-id", "from-header")
        .header("cookie", "session_id=from-cookie")
        .body(Body::empty())
        .unwrap();
    assert_eq!(text(&app, all).await, (StatusCode::OK, "from-path".into()));

    let header_and_cookie = Request::get("/id")
        .header("x-session-id", "from-header")
        .header("cookie", "theme=dark; session_id=from-cookie")
        .body(Body::empty())
        .unwrap();
    assert_eq!(text(&app, header_and_cookie).await.1, "from-header");

    let cookie_only = Request::get("/id")
        .header("cookie", "theme=dark; session_id=from-cookie")
        .body(Body::empty())
        .unwrap();
    assert_eq!(text(&app, cookie_only).await.1, "from-cookie");
}

#[tokio::test]
async fn the_order_of_sources_is_configurable() {
    let sources = IdSources::empty()
        .cookie("sid")
        .header(HeaderName::from_static("x-conversation"));
    let app = app(Sessions::new(manager()).id_sources(sources));
    let both = Request::get("/id/ignored")
        .header("x-conversation", "conv-1")
        .header("cookie", "sid=cookie-1")
        .body(Body::empty())
        .unwrap();
    assert_eq!(text(&app, both).await.1, "cookie-1");

    // The path parameter is not a source here, and x-session-id is not either.
    let (status, body) = send(
        &app,
        Request::get("/id/ignored")
            .header("x-session-id", "nope")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "missing_id");
    assert_eq!(
        body["message"],
        "the request names no session: expected the cookie `sid` or the header `x-conversation`"
    );
}

#[tokio::test]
async fn an_invalid_id_is_a_400_json_error_that_quotes_it_safely() {
    let app = app(Sessions::new(manager()));
    // Percent-decoded from the path: a space and an escape character.
    let (status, body) = send(&app, get_req("/id/a%20b%1B")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_id");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains(r#""a b\u{1b}""#), "{message}");
    assert!(
        message.ends_with("(from the path parameter `id`)"),
        "{message}"
    );
    assert!(body.get("session_id").is_none(), "{body}");

    // A present but invalid header does not fall through to the cookie.
    let request = Request::get("/id")
        .header("x-session-id", "cql:*")
        .header("cookie", "session_id=fine")
        .body(Body::empty())
        .unwrap();
    let (status, body) = send(&app, request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_id");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("header `x-session-id`")
    );

    let request = Request::get("/id")
        .header("x-session-id", "x".repeat(129))
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, request).await.1["error"], "invalid_id");
}

#[tokio::test]
async fn a_missing_session_is_404_without_a_factory() {
    let app = app(Sessions::new(manager()));
    let (status, body) = send(&app, get_req("/carts/cart-1")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({
            "error": "not_found",
            "message": "session cart-1 not found (it may have expired)",
            "session_id": "cart-1",
        })
    );
}

#[tokio::test]
async fn a_factory_creates_the_session_on_first_use() {
    let manager = manager();
    let app = app(Sessions::new(manager.clone()).create_with(Vec::new));
    let (status, body) = send(&app, get_req("/carts/cart-1")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({ "items": [], "version": 1, "new": true }));

    let (_, body) = send(&app, post_json("/carts/cart-1/items", r#""apples""#)).await;
    assert_eq!(body, json!(["apples"]));
    let (_, body) = send(&app, get_req("/carts/cart-1")).await;
    assert_eq!(
        body,
        json!({ "items": ["apples"], "version": 2, "new": false })
    );

    let id = SessionId::new("cart-1").unwrap();
    assert_eq!(manager.get(&id).await.unwrap().unwrap().len(), 1);
}

#[tokio::test]
async fn the_cookie_alone_names_the_session_to_load() {
    let manager = manager();
    let id = SessionId::new("cookie-cart").unwrap();
    manager
        .update(&id, &vec!["pears".to_owned()])
        .await
        .unwrap();
    let app = app(Sessions::new(manager));
    let request = Request::get("/cart")
        .header("cookie", "session_id=cookie-cart")
        .body(Body::empty())
        .unwrap();
    let (status, body) = send(&app, request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["items"], json!(["pears"]));
}

#[tokio::test]
async fn a_stale_save_is_a_409_conflict_and_writes_nothing() {
    let manager = manager();
    let id = SessionId::new("cart-1").unwrap();
    manager.update(&id, &vec!["a".to_owned()]).await.unwrap();

    // A handler that loads, lets another writer in, then saves.
    let other = manager.clone();
    let racing = move |mut cart: LoadedSession<Cart>| {
        let other = other.clone();
        async move {
            let id = cart.id().clone();
            other.modify(&id, |c| c.push("theirs".into())).await?;
            cart.push("mine".into());
            cart.save().await?;
            Ok::<_, ApiError>(Json(cart.to_vec()))
        }
    };
    let app = Router::new()
        .route("/carts/{id}/race", post(racing))
        .with_state(Sessions::new(manager.clone()));
    let (status, body) = send(&app, post_json("/carts/cart-1/race", "{}")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"], "conflict");
    assert_eq!(body["session_id"], "cart-1");
    let stored = manager.get(&id).await.unwrap().unwrap();
    assert_eq!(stored.value(), &vec!["a".to_owned(), "theirs".to_owned()]);
}

#[tokio::test]
async fn a_handle_can_be_saved_twice() {
    let manager = manager();
    let twice = |mut cart: LoadedSession<Cart>| async move {
        cart.push("one".into());
        cart.save().await?;
        cart.push("two".into());
        cart.save().await?;
        Ok::<_, ApiError>(cart.version().to_string())
    };
    let app = Router::new()
        .route("/carts/{id}/twice", post(twice))
        .with_state(Sessions::new(manager).create_with(Vec::new));
    let (status, body) = text(&app, post_json("/carts/c/twice", "")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "3"));
}

#[tokio::test]
async fn an_optional_session_is_none_when_absent_and_never_created() {
    let manager = manager();
    let app = app(Sessions::new(manager.clone()).create_with(Vec::new));
    assert_eq!(text(&app, get_req("/maybe")).await.1, "none");
    let named = || {
        Request::get("/maybe")
            .header("x-session-id", "cart-9")
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(text(&app, named()).await.1, "none");
    assert_eq!(manager.count().await.unwrap(), 0);
    manager
        .update(&SessionId::new("cart-9").unwrap(), &vec!["x".into()])
        .await
        .unwrap();
    assert_eq!(text(&app, named()).await.1, "1 items");
    let bad = Request::get("/maybe")
        .header("x-session-id", "a b")
        .body(Body::empty())
        .unwrap();
    assert_eq!(text(&app, bad).await.0, StatusCode::BAD_REQUEST);
}

/// An application state of its own, holding the extractors' state.
#[derive(Clone)]
struct AppState {
    carts: Sessions<Cart>,
    greeting: &'static str,
}

impl FromRef<AppState> for Sessions<Cart> {
    fn from_ref(state: &AppState) -> Self {
        state.carts.clone()
    }
}

impl FromRef<AppState> for IdSources {
    fn from_ref(state: &AppState) -> Self {
        state.carts.sources().clone()
    }
}

#[tokio::test]
async fn the_extractors_work_inside_an_application_state() {
    async fn hello(
        axum::extract::State(state): axum::extract::State<AppState>,
        ResolvedId(id): ResolvedId,
        cart: LoadedSession<Cart>,
    ) -> String {
        format!("{} {id}: {}", state.greeting, cart.len())
    }
    let state = AppState {
        carts: Sessions::new(manager()).create_with(Vec::new),
        greeting: "hello",
    };
    let app = Router::new()
        .route("/hello/{id}", get(hello))
        .with_state(state);
    assert_eq!(text(&app, get_req("/hello/u1")).await.1, "hello u1: 0");
}

/// `GET /visits`: counts the visits of the cookie's session (created on first use).
async fn visits(mut count: LoadedSession<u32>) -> Result<String, ApiError> {
    *count += 1;
    count.save().await?;
    Ok(format!("{} {}", count.id(), *count))
}

fn minting_app(manager: SessionManager<u32>) -> Router {
    Router::new()
        .route("/visits", get(visits))
        .with_state(
            Sessions::new(manager)
                .id_sources(IdSources::empty().cookie("sid"))
                .create_with(|| 0),
        )
        .layer(axum::middleware::from_fn_with_state(
            session_axum::SessionCookie::new("sid"),
            session_axum::mint_session_cookie,
        ))
}

async fn visit(app: &Router, cookie: Option<&str>) -> (String, Option<String>) {
    let mut request = Request::get("/visits");
    if let Some(c) = cookie {
        request = request.header("cookie", c);
    }
    let response = tower::ServiceExt::oneshot(app.clone(), request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let set_cookie = response
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    (String::from_utf8(body.to_vec()).unwrap(), set_cookie)
}

#[tokio::test]
async fn a_request_without_a_session_gets_a_random_id_in_a_safe_cookie() {
    let manager: SessionManager<u32> = SessionManager::new(Arc::new(MemoryStore::new()));
    let app = minting_app(manager.clone());
    let (body, set_cookie) = visit(&app, None).await;
    let set_cookie = set_cookie.expect("a new visitor gets a cookie");
    let (pair, attributes) = set_cookie.split_once("; ").unwrap();
    assert_eq!(attributes, "HttpOnly; Secure; SameSite=Lax; Path=/");
    let id = pair.strip_prefix("sid=").unwrap();
    assert_eq!(id.len(), 32, "128 random bits as hex: {id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(body, format!("{id} 1"));
    // The cookie brings the same session back, and no new cookie is set.
    let (body, again) = visit(&app, Some(&format!("other=1; sid={id}"))).await;
    assert_eq!(body, format!("{id} 2"));
    assert_eq!(again, None);
    // Two new visitors never share an id.
    let (_, second) = visit(&app, None).await;
    assert_ne!(second.unwrap(), set_cookie);
    assert_eq!(manager.count().await.unwrap(), 2);
}

#[tokio::test]
async fn an_invalid_session_cookie_is_replaced_not_an_error() {
    let manager: SessionManager<u32> = SessionManager::new(Arc::new(MemoryStore::new()));
    let app = minting_app(manager);
    let (body, set_cookie) = visit(&app, Some("sid=\"bad id;\"; theme=dark")).await;
    let set_cookie = set_cookie.expect("a replacement cookie");
    let id = set_cookie
        .split_once("; ")
        .and_then(|(pair, _)| pair.strip_prefix("sid="))
        .unwrap();
    assert_eq!(body, format!("{id} 1"));
}
