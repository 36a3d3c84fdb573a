//! `GET /store/info` (the dashboard's store panel) and `GET /sessions/{id}`'s detail (the
//! dashboard's session panel): on the memory store, through both fallbacks, and on the
//! shared test Redis when there is one (`SESSION_TEST_REDIS_URL`; skipped without it,
//! mandatory under `SESSION_REQUIRE_REDIS=1`).

mod common;

use std::sync::Arc;

use axum::{Router, http::StatusCode};
use serde_json::json;
use session_core::{SessionId, SessionStore};
use session_demo::{AppState, BackendInfo, agent_manager, app};
use session_memory::MemoryStore;

use common::{call, demo, get, say};

fn on(store: Arc<dyn SessionStore>, backend: BackendInfo) -> Router {
    app(AppState::new(agent_manager(store), backend))
}

#[tokio::test]
async fn the_memory_store_reports_memory_and_no_redis() {
    let app = demo();
    let reply = call(&app, get("/store/info")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.json(),
        json!({
            "backend": "memory",
            "redis_configured": false,
            "fallback_active": false,
            "fallback": null,
            "redis": null,
        })
    );
}

#[tokio::test]
async fn a_session_shows_its_conversation_version_ttl_and_size() {
    let store = Arc::new(MemoryStore::new());
    let app = on(store.clone(), BackendInfo::memory());
    for text in [
        "my printer is offline",
        "since this morning",
        "no, still broken",
    ] {
        assert_eq!(say(&app, "printer-1", text).await.0, StatusCode::OK);
    }
    let view = call(&app, get("/sessions/printer-1")).await.json();
    assert_eq!(view["session_id"], "printer-1");
    assert_eq!(view["version"], 3);
    assert_eq!(view["ttl"], 3600);
    assert_eq!(view["state"], "awaiting_feedback");
    assert_eq!(view["current_attempt"], 2);
    let size = view["size"].as_u64().unwrap();
    assert!(
        size > 100,
        "the encoded agent is a few hundred bytes: {view}"
    );
    let record = store
        .load(&SessionId::new("printer-1").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        size,
        record.payload.len() as u64,
        "the bytes the store holds"
    );
    for field in ["created_at", "updated_at"] {
        assert!(view[field].as_str().unwrap().ends_with('Z'), "{view}");
    }
    let history = view["conversation_history"].as_array().unwrap();
    assert_eq!(history.len(), 6);
    assert_eq!(
        history[4],
        json!({"role": "user", "content": "no, still broken"})
    );
    assert_eq!(history[5]["role"], "assistant");
}

/// With the `redis` feature: the Redis server's facts, from a server that is not there and
/// from the shared test server.
#[cfg(feature = "redis")]
mod with_redis {
    use std::time::Duration;

    use session_core::{
        FailoverStore,
        testing::switch::{Fault, Switch},
    };

    use super::*;

    /// Port of a listener that was closed again: nothing answers there.
    fn closed_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// Options for a Redis that is not there, with a password that must never show.
    fn absent_redis(port: u16) -> session_redis::RedisOptions {
        session_redis::RedisOptions::from_url(&format!("redis://app:hunter2@127.0.0.1:{port}/0"))
            .unwrap()
            .with_connect_timeout(Duration::from_millis(300))
            .with_command_timeout(Duration::from_millis(300))
    }

    fn assert_names_no_server(text: &str, port: u16) {
        for secret in ["hunter2", "127.0.0.1", &port.to_string(), "redis://"] {
            assert!(!text.contains(secret), "{secret:?} in {text}");
        }
    }

    #[tokio::test]
    async fn the_startup_fallback_reports_memory_and_an_unreachable_server_by_kind_only() {
        let port = closed_port();
        let reason = format!(
            "sessions are kept in memory because Redis at redis://app:***@127.0.0.1:{port}/0 cannot \
             be used: redis is unavailable: connection refused"
        );
        let backend = BackendInfo::redis()
            .with_startup_fallback(reason)
            .with_redis_options(absent_redis(port));
        let app = on(Arc::new(MemoryStore::new()), backend);
        let reply = call(&app, get("/store/info")).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_names_no_server(&reply.text, port);
        let body = reply.json();
        assert_eq!(body["backend"], "memory");
        assert_eq!(body["redis_configured"], true);
        assert_eq!(body["fallback_active"], true);
        assert_eq!(body["fallback"]["policy"], "startup");
        assert_eq!(body["fallback"]["mode"], "fallback");
        assert_eq!(body["fallback"]["reconcilable"], false);
        assert_eq!(body["fallback"]["reason"], serde_json::Value::Null);
        assert_eq!(
            body["redis"],
            json!({"reachable": false, "error": "unavailable"})
        );
    }

    #[tokio::test]
    async fn the_runtime_fallback_is_reported_while_it_serves_and_after() {
        let port = closed_port();
        let primary = Switch::new(Arc::new(MemoryStore::new()), "redis");
        let failover = FailoverStore::builder(primary.clone())
            .probe_backoff(Duration::from_secs(3600), Duration::from_secs(3600))
            .build();
        let backend = BackendInfo::redis()
            .with_failover(failover.clone())
            .with_redis_options(absent_redis(port));
        let app = on(Arc::new(failover.clone()), backend);
        say(&app, "u1", "my printer is offline").await;

        let body = call(&app, get("/store/info")).await.json();
        assert_eq!(body["backend"], "redis");
        assert_eq!(body["fallback_active"], false);
        assert_eq!(body["fallback"]["mode"], "primary");

        primary.set(Fault::Down);
        assert_eq!(say(&app, "u1", "since today").await.0, StatusCode::OK);
        let reply = call(&app, get("/store/info")).await;
        assert_names_no_server(&reply.text, port);
        let body = reply.json();
        assert_eq!(body["backend"], "memory");
        assert_eq!(body["fallback_active"], true);
        assert_eq!(body["fallback"]["policy"], "runtime");
        assert_eq!(body["fallback"]["mode"], "fallback");
        assert_eq!(body["fallback"]["dirty_sessions"], 1);
        assert!(body["fallback"]["since"].as_str().unwrap().ends_with('Z'));
        assert_eq!(body["fallback"]["reason"], serde_json::Value::Null);
        assert_eq!(body["redis"]["reachable"], false);

        primary.set(Fault::None);
        assert!(failover.recover_now().await);
        let body = call(&app, get("/store/info")).await.json();
        assert_eq!(body["backend"], "redis");
        assert_eq!(body["fallback_active"], false);
        assert_eq!(body["fallback"]["mode"], "primary");
        assert_eq!(body["fallback"]["written_back"], 1);
    }

    #[tokio::test]
    async fn redis_reports_its_version_memory_policy_and_persistence() {
        use session_redis::{KeyPrefix, RedisOptions, RedisStore};

        const TEST: &str = "redis_reports_its_version_memory_policy_and_persistence";
        let Some(url) = redis_harness::env::redis_url(TEST) else {
            return;
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let prefix = KeyPrefix::new(format!("demo-info-{}-{nanos}:", std::process::id())).unwrap();
        let options = RedisOptions::from_url(&url).unwrap().with_prefix(prefix);
        let store = RedisStore::connect(options.clone()).await.unwrap();
        let app = on(
            Arc::new(store),
            BackendInfo::redis().with_redis_options(options),
        );

        let reply = call(&app, get("/store/info")).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert!(!reply.text.contains("redis://"), "{}", reply.text);
        let body = reply.json();
        assert_eq!(body["backend"], "redis");
        assert_eq!(body["fallback_active"], false);
        assert_eq!(body["redis"]["reachable"], true, "{body}");
        let server = &body["redis"]["server"];
        assert_eq!(
            server["server"],
            redis_harness::env::server_kind(),
            "{body}"
        );
        assert!(
            server["version"]
                .as_str()
                .unwrap()
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit()),
            "{body}"
        );
        assert_eq!(server["mode"], "standalone");
        assert_eq!(server["role"], "master");
        assert!(server["used_memory"].as_u64().unwrap() > 0, "{body}");
        assert!(server["maxmemory"].is_u64(), "{body}");
        assert!(server["maxmemory_policy"].is_string(), "{body}");
        assert!(server["aof_enabled"].is_boolean(), "{body}");

        // The session panel's data comes from Redis the same way.
        for text in ["wifi drops", "every hour"] {
            assert_eq!(say(&app, "r-1", text).await.0, StatusCode::OK);
        }
        let view = call(&app, get("/sessions/r-1")).await.json();
        assert_eq!(view["version"], 2);
        assert!(view["ttl"].as_u64().unwrap() > 3590, "{view}");
        assert!(view["size"].as_u64().unwrap() > 100, "{view}");
        assert_eq!(view["conversation_history"].as_array().unwrap().len(), 4);
        assert_eq!(
            call(&app, common::delete("/sessions/r-1")).await.status,
            StatusCode::NO_CONTENT
        );
    }
}
