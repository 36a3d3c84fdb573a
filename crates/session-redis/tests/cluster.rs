//! `RedisStore` on a real Redis Cluster (3 primaries + 3 replicas, as `cargo xtask cluster
//! start` and `cargo xtask test` make them): the conformance suite, listings that visit every
//! primary, and counts. The cluster's seed nodes come from `SESSION_TEST_CLUSTER_NODES`
//! (comma-separated URLs); without it the tests skip, unless `SESSION_REQUIRE_CLUSTER=1`.
#![cfg(feature = "cluster")]

mod common;

use std::collections::HashMap;

use bytes::Bytes;
use session_core::{Condition, Cursor, SessionId, SessionStore, Write};
use session_redis::{RedisOptions, RedisStore};

/// The shared cluster's seed nodes, or `None` (the test skips) when none is configured.
fn cluster_nodes(test: &str) -> Option<String> {
    redis_harness::env::cluster_nodes(test).map(|nodes| nodes.join(","))
}

fn options(nodes: &str, tag: &str) -> RedisOptions {
    RedisOptions::from_cluster_urls(nodes)
        .unwrap_or_else(|e| panic!("cluster nodes: {e}"))
        .with_key_prefix(common::unique_prefix(tag))
        .unwrap_or_else(|e| panic!("prefix: {e}"))
}

async fn store(options: RedisOptions) -> RedisStore {
    RedisStore::connect(options)
        .await
        .unwrap_or_else(|e| panic!("connect to the cluster: {e}"))
}

fn id(s: &str) -> SessionId {
    SessionId::new(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_store_passes_the_conformance_suite() {
    let Some(nodes) = cluster_nodes("a_cluster_store_passes_the_conformance_suite") else {
        return;
    };
    common::conformance(options(&nodes, "cl-conf"), "cl-conf").await;
}

/// Every id of a listing at `limit`, with how often each came.
async fn list(store: &RedisStore, limit: usize) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    let mut cursor: Option<Cursor> = None;
    loop {
        let page = store
            .list_page(cursor.as_ref(), limit)
            .await
            .unwrap_or_else(|e| panic!("list_page: {e}"));
        assert!(page.sessions.len() <= limit);
        for info in page.sessions {
            *seen.entry(info.id.as_str().to_owned()).or_insert(0) += 1;
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => return seen,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_sessions_over_the_cluster_are_listed_once_each_and_counted() {
    let Some(nodes) =
        cluster_nodes("ten_thousand_sessions_over_the_cluster_are_listed_once_each_and_counted")
    else {
        return;
    };
    let store = store(options(&nodes, "cl-10k")).await;
    let ids: Vec<SessionId> = (0..10_000).map(|n| id(&format!("s-{n:05}"))).collect();
    for chunk in ids.chunks(500) {
        let mut tasks = tokio::task::JoinSet::new();
        for id in chunk {
            let store = store.clone();
            let id = id.clone();
            tasks.spawn(async move {
                store
                    .save(
                        &id,
                        Write::new(Bytes::from_static(b"state"), Condition::Any),
                    )
                    .await
                    .unwrap_or_else(|e| panic!("save {id}: {e}"))
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap_or_else(|e| panic!("{e}"));
        }
    }
    let started = std::time::Instant::now();
    let seen = list(&store, 500).await;
    eprintln!("listed {} sessions in {:?}", seen.len(), started.elapsed());
    assert_eq!(seen.len(), 10_000, "sessions missing from the listing");
    assert!(
        seen.values().all(|n| *n == 1),
        "a session listed twice on a stable cluster"
    );
    assert_eq!(
        store.count().await.unwrap_or_else(|e| panic!("{e}")),
        10_000
    );
    common::purge(&store).await;
    assert_eq!(store.count().await.unwrap_or_else(|e| panic!("{e}")), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_server_cursor_is_refused_by_a_cluster_store() {
    let Some(nodes) = cluster_nodes("a_single_server_cursor_is_refused_by_a_cluster_store") else {
        return;
    };
    let store = store(options(&nodes, "cl-cursor")).await;
    for bad in ["r1:0:", "k1:zz:0:0:", "garbage"] {
        assert!(
            matches!(
                store.list_page(Some(&Cursor::from(bad)), 10).await,
                Err(session_core::Error::InvalidCursor { .. })
            ),
            "{bad:?} accepted"
        );
    }
}
