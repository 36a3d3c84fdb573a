//! Helpers shared by the tests: a small axum app on tower-sessions, served on a real socket,
//! an HTTP/1.1 client with a cookie jar, and stores on the shared test Redis.
#![allow(dead_code, unreachable_pub)]

#[macro_use]
pub mod contract;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

use axum::{
    Router,
    extract::Query,
    http::StatusCode,
    routing::{get, post},
};
use session_core::SessionStore;
use session_redis::{RedisOptions, RedisStore, RedisTarget};
use session_tower::TowerStore;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};
use tower_sessions::{Expiry, Session, SessionManagerLayer};

/// `POST /login?user=NAME`: stores the user in the session.
async fn login(session: Session, Query(query): Query<BTreeMap<String, String>>) -> StatusCode {
    let Some(user) = query.get("user") else {
        return StatusCode::BAD_REQUEST;
    };
    match session.insert("user", user).await {
        Ok(()) => StatusCode::NO_CONTENT,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `GET /me`: the logged-in user, or 401.
async fn me(session: Session) -> (StatusCode, String) {
    match session.get::<String>("user").await {
        Ok(Some(user)) => (StatusCode::OK, user),
        Ok(None) => (StatusCode::UNAUTHORIZED, "anonymous".to_owned()),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `POST /visit`: counts the session's visits, returns the count.
async fn visit(session: Session) -> (StatusCode, String) {
    let n = match session.get::<u64>("visits").await {
        Ok(n) => n.unwrap_or(0) + 1,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    match session.insert("visits", n).await {
        Ok(()) => (StatusCode::OK, n.to_string()),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `POST /logout`: removes the session.
async fn logout(session: Session) -> StatusCode {
    match session.flush().await {
        Ok(()) => StatusCode::NO_CONTENT,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `POST /cycle`: a new session id for the same data (what a service does on login).
async fn cycle(session: Session) -> StatusCode {
    match session.cycle_id().await {
        Ok(()) => StatusCode::NO_CONTENT,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The app: its handlers know nothing of the store; `expiry` as tower-sessions takes it.
pub fn app(store: TowerStore, expiry: Option<Expiry>) -> Router {
    let mut layer = SessionManagerLayer::new(store).with_secure(false);
    if let Some(expiry) = expiry {
        layer = layer.with_expiry(expiry);
    }
    Router::new()
        .route("/login", post(login))
        .route("/me", get(me))
        .route("/visit", post(visit))
        .route("/logout", post(logout))
        .route("/cycle", post(cycle))
        .layer(layer)
}

/// One app instance serving on a loopback port; stopped when dropped.
pub struct Instance {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Instance {
    /// Serves `app` on `127.0.0.1:0`.
    pub async fn start(app: Router) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { addr, task }
    }

    /// Stops serving (what a restart or a crash does to the process's state).
    pub async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A response: status, headers (names lowercase), body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// The `Set-Cookie` header values.
    pub fn set_cookies(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(name, _)| name == "set-cookie")
            .map(|(_, value)| value.as_str())
            .collect()
    }
}

/// A browser, as far as sessions go: HTTP/1.1 over a new connection per request, and a
/// cookie jar (name -> value; `Max-Age=0` or an empty value removes a cookie).
#[derive(Debug, Default, Clone)]
pub struct Browser {
    pub cookies: BTreeMap<String, String>,
}

impl Browser {
    pub fn new() -> Self {
        Self::default()
    }

    /// The session cookie's value (tower-sessions' default name `id`).
    pub fn session_cookie(&self) -> Option<&str> {
        self.cookies.get("id").map(String::as_str)
    }

    pub async fn get(&mut self, addr: SocketAddr, path: &str) -> Response {
        self.send(addr, "GET", path).await
    }

    pub async fn post(&mut self, addr: SocketAddr, path: &str) -> Response {
        self.send(addr, "POST", path).await
    }

    /// Sends one request with the jar's cookies and stores the cookies the response sets.
    pub async fn send(&mut self, addr: SocketAddr, method: &str, path: &str) -> Response {
        let response = request(addr, method, path, &self.cookie_header()).await;
        for set_cookie in response.set_cookies() {
            self.store_cookie(set_cookie);
        }
        response
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn store_cookie(&mut self, set_cookie: &str) {
        let mut parts = set_cookie.split(';').map(str::trim);
        let Some((name, value)) = parts.next().and_then(|pair| pair.split_once('=')) else {
            return;
        };
        let removed = value.is_empty() || parts.any(|attr| attr.eq_ignore_ascii_case("max-age=0"));
        if removed {
            self.cookies.remove(name);
        } else {
            self.cookies.insert(name.to_owned(), value.to_owned());
        }
    }
}

/// One HTTP/1.1 request on a new connection (`Connection: close`), read to the end.
pub async fn request(addr: SocketAddr, method: &str, path: &str, cookie: &str) -> Response {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let cookie = if cookie.is_empty() {
        String::new()
    } else {
        format!("Cookie: {cookie}\r\n")
    };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{cookie}\
         Content-Length: 0\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        stream.read_to_end(&mut raw),
    )
    .await
    .unwrap_or_else(|_| panic!("{method} {path}: no complete answer in 30 s"))
    .unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {raw:?}"));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(name, value)| name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Response {
        status,
        headers,
        body,
    }
}

/// The body of a chunked transfer coding.
fn dechunk(mut rest: &str) -> String {
    let mut body = String::new();
    loop {
        let (size, after) = rest
            .split_once("\r\n")
            .unwrap_or_else(|| panic!("bad chunk in {rest:?}"));
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size {size:?}"));
        if size == 0 {
            return body;
        }
        body.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
}

/// A key prefix no other test (or earlier run) uses: `test:tower-<tag>:<pid>.<time>.<n>:`,
/// with the tag cut to 10 characters (a Redis key prefix has at most 64).
pub fn unique_prefix(tag: &str) -> String {
    let tag: String = tag.chars().take(10).collect();
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "test:tower-{tag}:{}.{nanos}.{}:",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Options for the shared test Redis at `url` with `prefix`.
pub fn redis_options(url: &str, prefix: &str) -> RedisOptions {
    let target = RedisTarget::parse(url).unwrap_or_else(|e| panic!("test URL: {e}"));
    RedisOptions::new(target)
        .with_key_prefix(prefix)
        .unwrap_or_else(|e| panic!("prefix: {e}"))
}

/// A new store object (its own connection) on the shared test Redis, with `prefix`.
pub async fn redis_store(url: &str, prefix: &str) -> Arc<dyn SessionStore> {
    let store = RedisStore::connect(redis_options(url, prefix))
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    Arc::new(store)
}

/// Deletes every session of `store` (through the store: never FLUSHDB).
pub async fn purge(store: &dyn SessionStore) {
    let mut cursor = None;
    loop {
        let Ok(page) = store.list_page(cursor.as_ref(), 1000).await else {
            return;
        };
        for info in &page.sessions {
            let _ = store.delete(&info.id).await;
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => return,
        }
    }
}
