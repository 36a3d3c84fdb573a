//! The demo's HTTP API on the memory store, driven with `oneshot`.

mod common;

use axum::http::{StatusCode, header};
use serde_json::json;

use common::{call, delete, demo, get, post_raw, say};

#[tokio::test]
async fn a_conversation_ends_resolved() {
    let app = demo();
    let (status, body) = say(&app, "user-1", "my printer is offline").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["session_id"], "user-1");
    assert_eq!(body["state"], "diagnosing");
    assert_eq!(body["current_attempt"], 0);
    assert!(body["reply"].as_str().unwrap().contains("Tell me more"));

    let (_, body) = say(&app, "user-1", "since the update this morning").await;
    assert_eq!(body["state"], "awaiting_feedback");
    assert_eq!(body["current_attempt"], 1);

    let (_, body) = say(&app, "user-1", "no, still broken").await;
    assert_eq!(
        (body["state"].as_str(), body["current_attempt"].as_u64()),
        (Some("awaiting_feedback"), Some(2))
    );

    let (_, body) = say(&app, "user-1", "yes, it works now").await;
    assert_eq!(body["state"], "resolved");
    assert_eq!(body["current_attempt"], 2);
    assert_eq!(
        body.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["current_attempt", "reply", "session_id", "state"]
    );

    let view = call(&app, get("/sessions/user-1")).await.json();
    assert_eq!(view["state"], "resolved");
    assert_eq!(view["version"], 4);
    assert_eq!(view["problem"], "my printer is offline");
    assert_eq!(view["conversation_history"].as_array().unwrap().len(), 8);
    assert_eq!(
        view["conversation_history"][0],
        json!({"role": "user", "content": "my printer is offline"})
    );
}

#[tokio::test]
async fn a_conversation_ends_escalated_after_three_failed_attempts() {
    let app = demo();
    for text in ["wifi keeps dropping", "every hour or so", "no", "nope"] {
        let (status, _) = say(&app, "user-2", text).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (_, body) = say(&app, "user-2", "didn't work").await;
    assert_eq!(body["state"], "escalated");
    assert_eq!(body["current_attempt"], 3);
    let (_, body) = say(&app, "user-2", "hello?").await;
    assert_eq!(body["state"], "escalated");
}

#[tokio::test]
async fn flags_are_stored_with_the_session() {
    let app = demo();
    let body = json!({ "message": "slow laptop", "use_rag": true, "use_web_search": true });
    let reply = call(
        &app,
        post_raw("/sessions/u-flags/messages", body.to_string()),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let view = call(&app, get("/sessions/u-flags")).await.json();
    assert_eq!(
        (view["use_rag"].as_bool(), view["use_web_search"].as_bool()),
        (Some(true), Some(true))
    );
    assert_eq!(view["max_attempts"], 3);
}

#[tokio::test]
async fn list_show_delete() {
    let app = demo();
    say(&app, "user-a", "hello").await;
    say(&app, "user-b", "hello").await;
    say(&app, "user-b", "details").await;

    let reply = call(&app, get("/sessions")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.headers.get("x-next-cursor").is_none());
    let list = reply.json();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["session_id"], "user-a");
    assert_eq!(list[0]["state"], "diagnosing");
    assert_eq!(list[1]["state"], "awaiting_feedback");
    assert_eq!(list[1]["current_attempt"], 1);
    assert_eq!(list[1]["version"], 2);
    assert_eq!(list[1]["ttl"], 3600);
    assert!(list[1]["updated_at"].as_str().unwrap().ends_with('Z'));

    let reply = call(&app, delete("/sessions/user-a")).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert!(reply.text.is_empty());
    let reply = call(&app, delete("/sessions/user-a")).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.json()["error"], "not_found");
    let reply = call(&app, get("/sessions/user-a")).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(
        reply.json(),
        json!({"error": "not_found", "message": "session user-a not found (it may have expired)", "session_id": "user-a"})
    );
    assert_eq!(
        call(&app, get("/sessions"))
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn the_listing_pages_with_a_next_cursor_header() {
    let app = demo();
    for i in 0..5 {
        say(&app, &format!("user-{i}"), "hello").await;
    }
    let mut seen = Vec::new();
    let mut uri = "/sessions?limit=2".to_owned();
    loop {
        let reply = call(&app, get(&uri)).await;
        assert_eq!(reply.status, StatusCode::OK);
        for item in reply.json().as_array().unwrap() {
            seen.push(item["session_id"].as_str().unwrap().to_owned());
        }
        let Some(next) = reply.headers.get("x-next-cursor") else {
            break;
        };
        let link = reply.headers[header::LINK].to_str().unwrap();
        assert!(
            link.starts_with("</sessions?cursor=") && link.ends_with(">; rel=\"next\""),
            "{link}"
        );
        // The Link target is usable as it is.
        uri = link
            .trim_start_matches('<')
            .split('>')
            .next()
            .unwrap()
            .to_owned();
        assert!(uri.contains("limit=2"), "{uri}");
        assert!(!next.is_empty());
    }
    assert_eq!(seen, ["user-0", "user-1", "user-2", "user-3", "user-4"]);
    let reply = call(&app, get("/sessions?limit=0")).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["error"], "invalid_query");
}

#[tokio::test]
async fn bad_requests_get_json_errors() {
    let app = demo();
    // Invalid id: quoted safely.
    let reply = call(
        &app,
        post_raw("/sessions/bad%20id%1B/messages", r#"{"message":"hi"}"#),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let body = reply.json();
    assert_eq!(body["error"], "invalid_id");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains(r#""bad id\u{1b}""#),
        "{body}"
    );
    assert!(!reply.text.contains('\u{1b}'));

    // Malformed JSON.
    let reply = call(&app, post_raw("/sessions/u1/messages", r#"{"message": "#)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["error"], "invalid_json");

    // Well-formed JSON of the wrong shape.
    let reply = call(&app, post_raw("/sessions/u1/messages", r#"{"text": "hi"}"#)).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.json()["error"], "invalid_json");

    // No JSON content type.
    let request = axum::http::Request::post("/sessions/u1/messages")
        .body(axum::body::Body::from(r#"{"message":"hi"}"#))
        .unwrap();
    let reply = call(&app, request).await;
    assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(reply.json()["error"], "unsupported_media_type");

    // Oversized message, and an oversized body.
    let long = json!({ "message": "x".repeat(4097) }).to_string();
    let reply = call(&app, post_raw("/sessions/u1/messages", long)).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.json()["error"], "message_too_large");
    let huge = json!({ "message": "x".repeat(100_000) }).to_string();
    let reply = call(&app, post_raw("/sessions/u1/messages", huge)).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.json()["error"], "payload_too_large");
    // Exactly at the limit is fine, counted in characters.
    let at_limit = json!({ "message": "é".repeat(4096) }).to_string();
    assert_eq!(
        call(&app, post_raw("/sessions/u1/messages", at_limit))
            .await
            .status,
        StatusCode::OK
    );

    // Empty message.
    let reply = call(
        &app,
        post_raw("/sessions/u2/messages", r#"{"message": "  "}"#),
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.json()["error"], "empty_message");

    // Nothing was created by the failed requests.
    let list = call(&app, get("/sessions")).await.json();
    assert_eq!(list.as_array().unwrap().len(), 1);

    // Unknown route and method.
    let reply = call(&app, get("/nope")).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.json()["error"], "no_route");
    let reply = call(&app, delete("/sessions")).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.json()["error"], "method_not_allowed");
}

#[tokio::test]
async fn metrics_show_operations_latency_requests_and_fallback() {
    let app = demo();
    say(&app, "metrics-1", "hello").await;
    call(&app, get("/sessions/nobody")).await;
    let reply = call(&app, get("/metrics")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = reply.text;
    for name in [
        "session_operations_total",
        "session_operation_duration_seconds",
        "session_fallback_active",
        "http_requests_total",
        "http_request_duration_seconds",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    assert!(text.contains(r#"op="modify""#), "{text}");
    assert!(
        text.contains(r#"route="/sessions/{id}/messages""#),
        "{text}"
    );
}

#[tokio::test]
async fn the_dashboard_is_served_without_external_assets() {
    let reply = call(&demo(), get("/")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(reply.text.contains("fetch(\"/sessions?limit=200\")"));
    assert!(reply.text.contains("fetch(\"/healthz\")"));
    assert!(reply.text.contains("setInterval(refresh, 2000)"));
    assert!(!reply.text.contains("http://") && !reply.text.contains("https://"));
}

#[tokio::test]
async fn the_generic_admin_router_is_mounted_under_admin_behind_its_token() {
    let app = demo();
    say(&app, "user-x", "hello").await;
    let page = call(&app, common::admin_get("/admin/sessions"))
        .await
        .json();
    assert_eq!(page["sessions"][0]["session_id"], "user-x");
    assert_eq!(page["sessions"][0]["summary"]["state"], "diagnosing");
    let detail = call(&app, common::admin_get("/admin/sessions/user-x"))
        .await
        .json();
    assert_eq!(detail["value"]["state"], "diagnosing");
    // Without the token: 401, and nothing about the sessions.
    let anonymous = call(&app, get("/admin/sessions")).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert!(!anonymous.text.contains("user-x"), "{}", anonymous.text);
}

#[tokio::test]
async fn without_an_admin_token_the_demo_serves_no_admin_router() {
    let app = common::demo_without_admin();
    say(&app, "user-y", "hello").await;
    for uri in ["/admin/sessions", "/admin/export", "/admin/sessions/user-y"] {
        let reply = call(&app, common::admin_get(uri)).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(reply.json()["error"], "no_route", "{}", reply.text);
    }
}

fn keyed(id: &str, message: &str, key: &str) -> axum::http::Request<axum::body::Body> {
    let mut request = post_raw(
        &format!("/sessions/{id}/messages"),
        json!({ "message": message }).to_string(),
    );
    request
        .headers_mut()
        .insert("idempotency-key", key.parse().unwrap());
    request
}

#[tokio::test]
async fn a_message_resent_with_the_same_idempotency_key_is_handled_once() {
    let app = demo();
    let first = call(&app, keyed("u-idem", "my screen flickers", "k-1")).await;
    assert_eq!(first.status, StatusCode::OK);
    assert!(first.headers.get("idempotent-replayed").is_none());
    let again = call(&app, keyed("u-idem", "my screen flickers", "k-1")).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.json()["reply"], first.json()["reply"]);
    assert_eq!(again.json()["state"], "diagnosing");
    // A new key is a new message.
    let next = call(&app, keyed("u-idem", "since yesterday", "k-2")).await;
    assert_eq!(next.json()["state"], "awaiting_feedback");
    let view = call(&app, get("/sessions/u-idem")).await.json();
    let said: Vec<&str> = view["conversation_history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["role"] == "user")
        .map(|t| t["content"].as_str().unwrap())
        .collect();
    assert_eq!(said, ["my screen flickers", "since yesterday"]);
}

#[tokio::test]
async fn a_malformed_idempotency_key_is_a_400_and_changes_nothing() {
    let app = demo();
    for bad in ["", "has space", &"k".repeat(129)] {
        let mut request = post_raw(
            "/sessions/u-bad-key/messages",
            json!({ "message": "hello" }).to_string(),
        );
        request.headers_mut().insert(
            "idempotency-key",
            axum::http::HeaderValue::from_str(bad).unwrap(),
        );
        let reply = call(&app, request).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad:?}");
        assert_eq!(reply.json()["error"], "invalid_idempotency_key");
    }
    assert_eq!(
        call(&app, get("/sessions/u-bad-key")).await.status,
        StatusCode::NOT_FOUND
    );
}
