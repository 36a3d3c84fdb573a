//! `/healthz` (liveness) and `/readyz` (readiness) in each state of the store and its
//! fallback, computed on every request; and the 507 of a store out of memory. The stores
//! are in-process (a memory store behind a switch stands in for Redis); the same with real
//! processes is in `tests/tests/demo_failover.rs`.

mod common;

use std::{sync::Arc, time::Duration};

use axum::{Router, http::StatusCode};
use serde_json::json;
use session_core::{
    FailoverStore, SessionStore,
    testing::switch::{Fault, Switch},
};
use session_demo::{AppState, BackendInfo, agent_manager, app};
use session_memory::MemoryStore;

use common::{call, demo, get, say};

const UP: Fault = Fault::None;
/// Nothing answers: every call fails as a refused connection does.
const DOWN: Fault = Fault::Down;
/// Reads work, writes are refused as Redis refuses them at `maxmemory` with `noeviction`.
const OUT_OF_MEMORY: Fault = Fault::OutOfMemory;

/// A memory store behind a switch, named `redis`: what Redis' faults look like to the demo.
fn redis_switch() -> Arc<Switch> {
    Switch::new(Arc::new(MemoryStore::new()), "redis")
}

fn on(store: Arc<dyn SessionStore>, backend: BackendInfo) -> Router {
    app(AppState::new(agent_manager(store), backend))
}

#[tokio::test]
async fn the_memory_backend_is_live_and_ready() {
    let app = demo();
    let health = call(&app, get("/healthz")).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(
        health.json(),
        json!({
            "status": "ok",
            "ready": true,
            "backend": "memory",
            "fallback_active": false,
            "session_ttl": 3600,
            "redis": { "configured": false, "reachable": null, "latency_ms": null },
        })
    );
    let ready = call(&app, get("/readyz")).await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.json(), health.json());
}

#[tokio::test]
async fn redis_that_answers_is_ok_with_its_latency() {
    let app = on(redis_switch(), BackendInfo::redis());
    let body = call(&app, get("/readyz")).await.json();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["backend"], "redis");
    assert_eq!(body["redis"]["reachable"], true);
    assert!(body["redis"]["latency_ms"].is_f64(), "{body}");
    assert!(body.get("fallback").is_none(), "{body}");
}

#[tokio::test]
async fn the_startup_fallback_is_live_but_not_ready() {
    let reason = "sessions are kept in memory because Redis at redis://127.0.0.1:1/0 cannot be \
                  used: redis is unavailable: connection refused";
    let backend = BackendInfo::redis().with_startup_fallback(reason);
    let app = on(Arc::new(MemoryStore::new()), backend);
    assert_eq!(
        say(&app, "u1", "my printer is offline").await.0,
        StatusCode::OK
    );

    let health = call(&app, get("/healthz")).await;
    assert_eq!(
        health.status,
        StatusCode::OK,
        "liveness: the process serves"
    );
    let body = health.json();
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["ready"], false);
    assert_eq!(body["fallback_active"], true);
    // The reason in general words: the URL and the server's words stay in the log.
    assert_eq!(
        body["fallback_reason"],
        session_demo::health::STARTUP_FALLBACK_REASON
    );
    assert!(!health.text.contains("127.0.0.1") && !health.text.contains("redis://"));
    assert!(
        !health.text.contains("connection refused"),
        "{}",
        health.text
    );
    assert_eq!(body["fallback"]["policy"], "startup");
    assert_eq!(body["fallback"]["mode"], "fallback");
    assert_eq!(body["fallback"]["reconcilable"], false);
    assert_eq!(
        body["fallback"]["reason"],
        session_demo::health::STARTUP_FALLBACK_REASON
    );
    assert!(
        body["fallback"]["since"].as_str().unwrap().ends_with('Z'),
        "{body}"
    );
    assert_eq!(
        body["redis"],
        json!({ "configured": true, "reachable": null, "latency_ms": null })
    );

    let ready = call(&app, get("/readyz")).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    let body = ready.json();
    assert_eq!(body["status"], "degraded");
    assert!(
        body["not_ready_reason"]
            .as_str()
            .unwrap()
            .contains("start-up fallback"),
        "{body}"
    );
}

#[tokio::test]
async fn a_store_that_does_not_answer_is_live_but_not_ready() {
    let store = redis_switch();
    store.set(DOWN);
    let app = on(store, BackendInfo::redis());
    let health = call(&app, get("/healthz")).await;
    assert_eq!(health.status, StatusCode::OK);
    let body = health.json();
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["ready"], false);
    assert_eq!(body["redis"]["reachable"], false);
    // The kind of failure, not the store's detail.
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("unavailable"), "{body}");
    assert!(!error.contains("connection refused"), "{body}");
    let ready = call(&app, get("/readyz")).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json()["status"], "unavailable");
}

#[tokio::test]
async fn the_runtime_fallback_is_ready_and_reported_live_through_an_outage() {
    let primary = redis_switch();
    let failover = FailoverStore::builder(primary.clone())
        // The test recovers by hand; the background probe waits.
        .probe_backoff(Duration::from_secs(3600), Duration::from_secs(3600))
        .build();
    let backend = BackendInfo::redis().with_failover(failover.clone());
    let app = on(Arc::new(failover.clone()), backend);

    say(&app, "u1", "my printer is offline").await;
    let body = call(&app, get("/healthz")).await.json();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["backend"], "redis");
    assert_eq!(body["fallback_active"], false);
    assert_eq!(body["fallback"]["policy"], "runtime");
    assert_eq!(body["fallback"]["mode"], "primary");
    assert_eq!(body["fallback"]["since"], serde_json::Value::Null);
    assert_eq!(body["fallback"]["dirty_sessions"], 0);

    // Redis goes away: the next message switches to memory and is answered there.
    primary.set(DOWN);
    assert_eq!(
        say(&app, "u1", "since this morning").await.0,
        StatusCode::OK
    );
    assert_eq!(say(&app, "u2", "wifi drops").await.0, StatusCode::OK);
    for path in ["/healthz", "/readyz"] {
        let reply = call(&app, get(path)).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text);
        let body = reply.json();
        assert_eq!(body["status"], "degraded", "{path}: {body}");
        assert_eq!(body["ready"], true);
        assert_eq!(body["backend"], "memory");
        assert_eq!(body["fallback_active"], true);
        assert_eq!(
            body["fallback_reason"],
            session_demo::health::RUNTIME_FALLBACK_REASON,
            "{body}"
        );
        assert!(!reply.text.contains("connection refused"), "{}", reply.text);
        assert_eq!(body["redis"]["reachable"], false);
        let fallback = &body["fallback"];
        assert_eq!(fallback["mode"], "fallback", "{body}");
        assert_eq!(fallback["reconcilable"], true);
        assert_eq!(fallback["dirty_sessions"], 2, "{body}");
        assert_eq!(fallback["activations"], 1);
        assert!(fallback["since"].as_str().unwrap().ends_with('Z'), "{body}");
    }

    // Redis is back: once written back, the report says so on the next request.
    primary.set(UP);
    assert!(failover.recover_now().await);
    let body = call(&app, get("/healthz")).await.json();
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(body["backend"], "redis");
    assert_eq!(body["fallback_active"], false);
    assert_eq!(body["fallback"]["mode"], "primary");
    assert_eq!(body["fallback"]["dirty_sessions"], 0);
    assert_eq!(body["fallback"]["recoveries"], 1);
    assert_eq!(body["fallback"]["written_back"], 2);
    assert_eq!(body["fallback"]["conflicts"], 0);
    assert_eq!(
        primary.inner().count().await.unwrap(),
        2,
        "both sessions reached the primary"
    );
}

#[tokio::test]
async fn a_store_out_of_memory_answers_507_and_keeps_the_session_as_it_was() {
    let store = redis_switch();
    let app = on(store.clone(), BackendInfo::redis());
    say(&app, "u1", "my printer is offline").await;
    let before = call(&app, get("/sessions/u1")).await.json();

    store.set(OUT_OF_MEMORY);
    let (status, body) = say(&app, "u1", "since this morning").await;
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{body}");
    assert_eq!(body["error"], "out_of_memory");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("maxmemory"), "{message}");
    assert!(message.contains("allkeys-lru"), "{message}");
    assert!(
        !message.contains("OOM command"),
        "no server detail: {message}"
    );
    // Reads still work, and the session is as it was.
    assert_eq!(call(&app, get("/sessions/u1")).await.json(), before);
    // Not an outage: the store is ready (it answers), and nothing pretends otherwise.
    let health = call(&app, get("/readyz")).await;
    assert_eq!(health.status, StatusCode::OK);
}
