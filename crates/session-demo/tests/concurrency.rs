//! Two instances of the service on one shared store lose no message.

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use session_core::SessionStore;
use session_memory::MemoryStore;

use common::{call, get, instance, say};

#[tokio::test]
async fn two_instances_answering_alternately_share_the_conversation() {
    let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    let (a, b) = (instance(store.clone()), instance(store));
    for (i, text) in ["printer offline", "since today", "no"].iter().enumerate() {
        let app = if i % 2 == 0 { &a } else { &b };
        assert_eq!(say(app, "shared", text).await.0, StatusCode::OK);
    }
    let (_, body) = say(&b, "shared", "yes").await;
    assert_eq!(body["state"], "resolved");
    assert_eq!(body["current_attempt"], 2);
    let view = call(&a, get("/sessions/shared")).await.json();
    assert_eq!(view["conversation_history"].as_array().unwrap().len(), 8);
    assert_eq!(view["version"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_messages_through_two_instances_lose_none() {
    const TASKS_PER_INSTANCE: usize = 8;
    const MESSAGES_PER_TASK: usize = 6;
    let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    let apps = [instance(store.clone()), instance(store)];
    let mut tasks = Vec::new();
    for (n, app) in apps.iter().enumerate() {
        for t in 0..TASKS_PER_INSTANCE {
            let app = app.clone();
            tasks.push(tokio::spawn(async move {
                for m in 0..MESSAGES_PER_TASK {
                    let (status, body) = say(&app, "busy", &format!("i{n} t{t} m{m}")).await;
                    assert_eq!(status, StatusCode::OK, "{body}");
                }
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    let total = 2 * TASKS_PER_INSTANCE * MESSAGES_PER_TASK;
    let view = call(&apps[0], get("/sessions/busy")).await.json();
    let history = view["conversation_history"].as_array().unwrap();
    assert_eq!(
        history.len(),
        2 * total,
        "every message and every reply kept"
    );
    assert_eq!(view["version"], total as u64);
    // Every message is there exactly once.
    let mut user: Vec<&str> = history
        .iter()
        .filter(|turn| turn["role"] == "user")
        .map(|turn| turn["content"].as_str().unwrap())
        .collect();
    user.sort_unstable();
    user.dedup();
    assert_eq!(user.len(), total);
}
