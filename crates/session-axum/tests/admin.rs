//! The admin router on the memory store: list (paged), show, delete.

mod common;

use std::sync::Arc;

use axum::{Router, http::StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;
use session_axum::admin_router;
use session_core::{SessionId, SessionManager, Summarize, Summary};
use session_memory::MemoryStore;

use common::{delete, get, send};

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
    let app = Router::new().nest("/admin", admin_router(manager.clone()));
    (manager, app)
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
