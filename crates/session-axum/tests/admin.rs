//! The admin router on the memory store: access control, list (paged), show, delete, and the
//! streamed export (with error lines for sessions that cannot be read).

mod common;

use std::sync::Arc;

use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode},
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use session_axum::{AdminAccess, InvalidAdminToken, admin_router};
use session_core::{SessionId, SessionManager, SessionStore, Summarize, Summary};
use session_memory::MemoryStore;

use common::send;

const TOKEN: &str = "test-admin-token-0123456789";

fn access() -> AdminAccess {
    AdminAccess::bearer_token(TOKEN).unwrap()
}

/// A GET with the admin token.
fn get(uri: &str) -> Request<Body> {
    with_auth(Request::get(uri), &format!("Bearer {TOKEN}"))
}

/// A DELETE with the admin token.
fn delete(uri: &str) -> Request<Body> {
    with_auth(Request::delete(uri), &format!("Bearer {TOKEN}"))
}

fn with_auth(builder: axum::http::request::Builder, value: &str) -> Request<Body> {
    builder
        .header("authorization", value)
        .body(Body::empty())
        .unwrap()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Agent {
    state: String,
    current_attempt: u32,
}

impl Summarize for Agent {
    fn summary(&self) -> Summary {
        Summary::new()
            .with("state", &self.state)
            .with("current_attempt", self.current_attempt)
    }
}

async fn setup(n: usize) -> (SessionManager<Agent>, Router) {
    let manager = SessionManager::builder(Arc::new(MemoryStore::new()))
        .summarize(Agent::summary)
        .build();
    for i in 0..n {
        let agent = Agent {
            state: "diagnosing".into(),
            current_attempt: i as u32,
        };
        let id = SessionId::new(format!("user-{i:02}")).unwrap();
        manager.update(&id, &agent).await.unwrap();
    }
    let app = Router::new().nest("/admin", admin_router(manager.clone(), access()));
    (manager, app)
}

#[tokio::test]
async fn without_the_token_every_admin_endpoint_is_401_and_shows_nothing() {
    let (manager, app) = setup(3).await;
    let wrong = format!("Bearer {TOKEN}x");
    let basic = format!("Basic {TOKEN}");
    let short = format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]);
    for uri in [
        "/admin/sessions",
        "/admin/sessions/user-01",
        "/admin/export",
    ] {
        let anonymous = Request::get(uri).body(Body::empty()).unwrap();
        for request in [
            anonymous,
            with_auth(Request::get(uri), &wrong),
            with_auth(Request::get(uri), &basic),
            with_auth(Request::get(uri), &short),
            with_auth(Request::get(uri), "Bearer "),
        ] {
            let response = tower::ServiceExt::oneshot(app.clone(), request)
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{uri}");
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
            let (_, body) = common::json(response).await;
            assert_eq!(body["error"], "unauthorized");
            assert!(!body.to_string().contains("user-0"), "{body}");
        }
    }
    // A delete without the token deletes nothing.
    let anonymous = Request::delete("/admin/sessions/user-01")
        .body(Body::empty())
        .unwrap();
    let (status, _) = send(&app, anonymous).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        manager
            .exists(&SessionId::new("user-01").unwrap())
            .await
            .unwrap()
    );
}

#[test]
fn weak_tokens_are_refused_and_tokens_never_show_in_debug() {
    assert_eq!(
        AdminAccess::bearer_token("short").unwrap_err(),
        InvalidAdminToken::TooShort(5)
    );
    assert_eq!(
        AdminAccess::bearer_token("a token with spaces in it").unwrap_err(),
        InvalidAdminToken::NotVisibleAscii
    );
    let debug = format!("{:?}", access());
    assert!(!debug.contains(TOKEN), "{debug}");
}

#[tokio::test]
async fn a_router_guarded_by_the_caller_has_no_check_of_its_own() {
    let manager: SessionManager<Agent> = SessionManager::new(Arc::new(MemoryStore::new()));
    let app = Router::new().nest(
        "/admin",
        admin_router(manager, AdminAccess::guarded_by_caller()),
    );
    let (status, _) = send(
        &app,
        Request::get("/admin/sessions").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

/// The memory store, except that one session reads as corrupt and, after `fail_after` pages,
/// listing fails as an unreachable server does.
#[derive(Debug)]
struct Flawed {
    inner: MemoryStore,
    corrupt: SessionId,
    fail_after: Option<usize>,
    pages: std::sync::atomic::AtomicUsize,
}

#[session_core::async_trait]
impl SessionStore for Flawed {
    fn backend(&self) -> &'static str {
        "flawed"
    }
    async fn load(&self, id: &SessionId) -> session_core::Result<Option<session_core::Record>> {
        if *id == self.corrupt {
            return Err(session_core::Error::corrupt(
                id,
                "field m is not readable meta",
            ));
        }
        self.inner.load(id).await
    }
    async fn write(
        &self,
        id: &SessionId,
        write: session_core::Write,
    ) -> session_core::Result<session_core::WriteOutcome> {
        self.inner.write(id, write).await
    }
    async fn delete(&self, id: &SessionId) -> session_core::Result<bool> {
        self.inner.delete(id).await
    }
    async fn touch(&self, id: &SessionId, ttl: session_core::Ttl) -> session_core::Result<bool> {
        self.inner.touch(id, ttl).await
    }
    async fn list_page(
        &self,
        cursor: Option<&session_core::Cursor>,
        limit: usize,
    ) -> session_core::Result<session_core::Page> {
        let n = self.pages.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.fail_after.is_some_and(|after| n >= after) {
            return Err(session_core::Error::unavailable(
                "flawed",
                "redis://10.1.2.3:6380/4 refused the connection",
                std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
            ));
        }
        self.inner.list_page(cursor, limit).await
    }
    async fn count(&self) -> session_core::Result<u64> {
        self.inner.count().await
    }
    async fn ping(&self) -> session_core::Result<()> {
        self.inner.ping().await
    }
}

async fn export_lines(fail_after: Option<usize>) -> Vec<serde_json::Value> {
    use axum::body::to_bytes;
    let store = Arc::new(Flawed {
        inner: MemoryStore::new(),
        corrupt: SessionId::new("user-0003").unwrap(),
        fail_after,
        pages: Default::default(),
    });
    let manager: SessionManager<Agent> = SessionManager::new(store);
    for i in 0..1200 {
        let agent = Agent {
            state: "diagnosing".into(),
            current_attempt: i,
        };
        manager
            .update(&SessionId::new(format!("user-{i:04}")).unwrap(), &agent)
            .await
            .unwrap();
    }
    let app = Router::new().nest("/admin", admin_router(manager, access()));
    let response = tower::ServiceExt::oneshot(app, get("/admin/export"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = to_bytes(response.into_body(), 64 << 20).await.unwrap();
    String::from_utf8(bytes.to_vec())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn the_export_writes_a_session_it_cannot_read_as_an_error_line_and_goes_on() {
    let lines = export_lines(None).await;
    assert_eq!(
        lines.len(),
        1200,
        "every session, the corrupt one as an error line"
    );
    let errors: Vec<_> = lines.iter().filter(|l| l.get("error").is_some()).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["id"], "user-0003");
    assert_eq!(errors[0]["error"], "corrupt");
    assert!(
        lines.iter().any(|l| l["id"] == "user-1199"),
        "the export stopped early"
    );
}

#[tokio::test]
async fn a_store_failure_ends_the_export_with_an_error_line_and_no_detail() {
    // The export reads 500 sessions per page: the second page fails.
    let lines = export_lines(Some(1)).await;
    assert_eq!(
        lines.len(),
        501,
        "the first page, its error line, the failure line"
    );
    let last = lines.last().unwrap();
    assert_eq!(last["error"], "unavailable");
    assert!(last.get("id").is_none(), "{last}");
    let text = last.to_string();
    assert!(
        !text.contains("10.1.2.3"),
        "the store's address leaked: {text}"
    );
}

#[tokio::test]
async fn list_shows_every_session_with_its_summary() {
    let (_, app) = setup(2).await;
    let (status, body) = send(&app, get("/admin/sessions")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["next_cursor"], json!(null));
    let sessions = body["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    let first = &sessions[0];
    assert_eq!(first["session_id"], "user-00");
    assert_eq!(first["version"], 1);
    assert_eq!(first["ttl"], 3600);
    assert_eq!(
        first["summary"],
        json!({ "current_attempt": 0, "state": "diagnosing" })
    );
    assert!(first["size"].as_u64().unwrap() > 0);
    for key in ["created_at", "updated_at"] {
        let t = first[key].as_str().unwrap();
        assert!(
            t.len() == 24 && t.ends_with('Z') && t.as_bytes()[10] == b'T',
            "{t}"
        );
    }
}

#[tokio::test]
async fn pages_follow_the_cursor_until_the_listing_is_complete() {
    let (_, app) = setup(7).await;
    let mut seen = Vec::new();
    let mut uri = "/admin/sessions?limit=3".to_owned();
    let mut pages = 0;
    loop {
        let (status, body) = send(&app, get(&uri)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let sessions = body["sessions"].as_array().unwrap();
        assert!(sessions.len() <= 3);
        seen.extend(
            sessions
                .iter()
                .map(|s| s["session_id"].as_str().unwrap().to_owned()),
        );
        pages += 1;
        match body["next_cursor"].as_str() {
            Some(cursor) => {
                uri = format!("/admin/sessions?limit=3&cursor={}", urlencode(cursor));
            }
            None => break,
        }
    }
    assert!(pages >= 3, "{pages} pages");
    let expected: Vec<String> = (0..7).map(|i| format!("user-{i:02}")).collect();
    assert_eq!(seen, expected);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn bad_limits_and_cursors_are_400_json() {
    let (_, app) = setup(1).await;
    for uri in [
        "/admin/sessions?limit=0",
        "/admin/sessions?limit=1001",
        "/admin/sessions?limit=many",
    ] {
        let (status, body) = send(&app, get(uri)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(body["error"], "invalid_query", "{uri}");
    }
    let (status, body) = send(&app, get("/admin/sessions?cursor=not-a-cursor")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_cursor");
}

#[tokio::test]
async fn show_returns_the_whole_state_with_its_meta() {
    let (_, app) = setup(2).await;
    let (status, body) = send(&app, get("/admin/sessions/user-01")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["session_id"], "user-01");
    assert_eq!(body["version"], 1);
    assert_eq!(body["ttl"], 3600);
    assert_eq!(
        body["value"],
        json!({ "state": "diagnosing", "current_attempt": 1 })
    );
    assert_eq!(body["summary"]["current_attempt"], 1);

    let (status, body) = send(&app, get("/admin/sessions/nobody")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "not_found");
    assert_eq!(body["session_id"], "nobody");

    let (status, body) = send(&app, get("/admin/sessions/bad%20id")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_id");
}

#[tokio::test]
async fn delete_is_204_then_404() {
    let (manager, app) = setup(2).await;
    let (status, body) = send(&app, delete("/admin/sessions/user-00")).await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, json!(null)));
    assert_eq!(manager.count().await.unwrap(), 1);
    let (status, body) = send(&app, delete("/admin/sessions/user-00")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "not_found");
}

#[tokio::test]
async fn export_writes_every_session_as_a_json_line_with_its_envelope() {
    use axum::body::to_bytes;
    use base64::Engine as _;
    use session_core::Codec;
    use tower::ServiceExt;

    let (manager, app) = setup(1203).await;
    let response = app.oneshot(get("/admin/export")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let bytes = to_bytes(response.into_body(), 64 << 20).await.unwrap();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let lines: Vec<session_axum::ExportLine> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1203, "every session once, across export pages");
    let line = lines.iter().find(|l| l.id == "user-07").unwrap();
    let payload = base64::engine::general_purpose::STANDARD
        .decode(&line.payload_b64)
        .unwrap();
    let id = SessionId::new("user-07").unwrap();
    let agent: Agent = Codec::default().decode(&id, &payload).unwrap();
    assert_eq!(agent.current_attempt, 7);
    let stored = manager.get(&id).await.unwrap().unwrap();
    assert_eq!(line.version, stored.version());
    assert_eq!(line.created_at, stored.meta().created_at.as_millis());
    assert_eq!(line.summary, stored.meta().summary);
    assert!(line.ttl_ms.is_some_and(|t| t > 3_500_000 && t <= 3_600_000));
}
