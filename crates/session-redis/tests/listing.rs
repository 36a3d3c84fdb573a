//! Listings on a real Redis of the test's own: nested key prefixes stay apart, and a cursor
//! stays small whatever the page size and the id length.
#![cfg(feature = "driver")]

mod common;

use std::collections::HashMap;

use bytes::Bytes;
use redis_harness::{ServerOptions, env::private_server};
use session_core::{Condition, Cursor, Error, SessionId, SessionStore, Write};
use session_redis::{MAX_CURSOR_BYTES, RedisOptions, RedisStore, RedisTarget};

fn id(s: &str) -> SessionId {
    SessionId::new(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

async fn store(port: u16, prefix: &str) -> RedisStore {
    let target =
        RedisTarget::parse(&format!("redis://127.0.0.1:{port}")).unwrap_or_else(|e| panic!("{e}"));
    let options = RedisOptions::new(target)
        .with_key_prefix(prefix.to_owned())
        .unwrap_or_else(|e| panic!("{e}"));
    RedisStore::connect(options)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"))
}

async fn put(store: &RedisStore, id: &SessionId) {
    store
        .save(id, Write::new(Bytes::from_static(b"state"), Condition::Any))
        .await
        .unwrap_or_else(|e| panic!("save {id}: {e}"));
}

/// Every id of a listing at `limit`, how often each came, and the longest cursor seen.
async fn list(store: &RedisStore, limit: usize) -> (HashMap<String, usize>, usize) {
    let mut seen = HashMap::new();
    let mut cursor: Option<Cursor> = None;
    let mut longest = 0;
    loop {
        let page = store
            .list_page(cursor.as_ref(), limit)
            .await
            .unwrap_or_else(|e| panic!("list_page({limit}): {e}"));
        assert!(page.sessions.len() <= limit, "a page above its limit");
        for info in page.sessions {
            *seen.entry(info.id.as_str().to_owned()).or_insert(0) += 1;
        }
        match page.next {
            Some(next) => {
                longest = longest.max(next.as_str().len());
                cursor = Some(next);
            }
            None => return (seen, longest),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_never_lists_counts_reads_or_purges_the_sessions_of_a_nested_prefix() {
    let Some(server) = private_server(
        "a_prefix_never_lists_counts_reads_or_purges_the_sessions_of_a_nested_prefix",
        ServerOptions::default(),
    ) else {
        return;
    };
    let outer = store(server.port(), "app:").await;
    let nested = store(server.port(), "app:s:").await;
    // The outer store's own ids, one with a `:` (ids may hold it).
    for s in ["a1", "a2", "t:1"] {
        put(&outer, &id(s)).await;
    }
    for s in ["u1", "u2", "u:3"] {
        put(&nested, &id(s)).await;
    }
    let (outer_ids, _) = list(&outer, 10).await;
    let mut outer_ids: Vec<_> = outer_ids.into_keys().collect();
    outer_ids.sort();
    assert_eq!(
        outer_ids,
        ["a1", "a2", "t:1"],
        "the outer prefix listed nested sessions"
    );
    let (nested_ids, _) = list(&nested, 10).await;
    let mut nested_ids: Vec<_> = nested_ids.into_keys().collect();
    nested_ids.sort();
    assert_eq!(nested_ids, ["u1", "u2", "u:3"]);
    assert_eq!(outer.count().await.unwrap_or_else(|e| panic!("{e}")), 3);
    assert_eq!(nested.count().await.unwrap_or_else(|e| panic!("{e}")), 3);
    // The nested session's key, seen from the outer store as its id `s:u1`: not readable as
    // the outer store's session.
    match outer.load(&id("s:u1")).await {
        Err(Error::Corrupt { id: got, reason }) => {
            assert_eq!(got.as_str(), "s:u1");
            assert!(reason.contains("nested"), "{reason}");
        }
        other => panic!("reading a nested prefix's session through the outer one: {other:?}"),
    }
    // Purging the outer prefix (list, then delete what was listed) leaves the nested one.
    common::purge(&outer).await;
    assert_eq!(outer.count().await.unwrap_or_else(|e| panic!("{e}")), 0);
    assert_eq!(nested.count().await.unwrap_or_else(|e| panic!("{e}")), 3);
    assert!(
        nested
            .load(&id("u1"))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_cursors_stay_small_for_every_page_size_and_cover_each_session_once() {
    let Some(server) = private_server(
        "listing_cursors_stay_small_for_every_page_size_and_cover_each_session_once",
        ServerOptions::default(),
    ) else {
        return;
    };
    let store = store(server.port(), "big:").await;
    // 3,000 sessions with 100-character ids: a carried id costs 101 bytes of cursor. Small
    // pages are the hard case: each SCAN step asks for at least 32 keys, so a page of 1 used
    // to carry about 31 ids (3 KB) to the next.
    let ids: Vec<SessionId> = (0..3000)
        .map(|n| id(&format!("{n:05}-{}", "x".repeat(94))))
        .collect();
    for chunk in ids.chunks(200) {
        futures_join(&store, chunk).await;
    }
    for limit in [10_000, 1000, 250, 33, 7, 1] {
        let (seen, longest) = list(&store, limit).await;
        assert!(
            longest <= MAX_CURSOR_BYTES,
            "limit {limit}: a cursor of {longest} bytes (cap {MAX_CURSOR_BYTES})"
        );
        assert_eq!(seen.len(), ids.len(), "limit {limit}: sessions missing");
        let repeated = seen.values().filter(|n| **n > 1).count();
        assert_eq!(
            repeated, 0,
            "limit {limit}: {repeated} sessions listed twice"
        );
        eprintln!("limit {limit}: longest cursor {longest} bytes");
    }
}

/// Saves `ids` concurrently.
async fn futures_join(store: &RedisStore, ids: &[SessionId]) {
    let mut tasks = tokio::task::JoinSet::new();
    for id in ids {
        let store = store.clone();
        let id = id.clone();
        tasks.spawn(async move { put(&store, &id).await });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap_or_else(|e| panic!("{e}"));
    }
}
