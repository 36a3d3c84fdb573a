//! Helpers shared by the Redis tests: unique key prefixes, stores on the shared test server.
#![allow(dead_code, unreachable_pub)]
#![cfg(feature = "driver")]

use std::{
    num::NonZeroUsize,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

use session_core::SessionStore;
use session_redis::{ConnectionMode, RedisOptions, RedisStore, RedisTarget};

/// A key prefix no other test (or earlier run) uses: `test:<tag>:<pid>.<time>.<n>:`.
pub fn unique_prefix(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "test:{tag}:{}.{nanos}.{}:",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Options for `url` on database `db` with a fresh prefix.
pub fn options(url: &str, db: u32, tag: &str) -> RedisOptions {
    let target = RedisTarget::parse(url).unwrap_or_else(|e| panic!("test URL: {e}"));
    RedisOptions::new(target.with_db(db))
        .with_key_prefix(unique_prefix(tag))
        .unwrap_or_else(|e| panic!("prefix: {e}"))
}

/// A pool of up to `n` connections.
pub fn pool(n: usize) -> ConnectionMode {
    ConnectionMode::Pool {
        max_size: NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN),
    }
}

/// Deletes every session of `store` (through the store: SCAN + UNLINK, never FLUSHDB).
pub async fn purge(store: &dyn SessionStore) {
    let mut cursor = None;
    loop {
        let page = match store.list_page(cursor.as_ref(), 1000).await {
            Ok(page) => page,
            Err(_) => return,
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

/// Runs the conformance suite with a fresh prefix per check, built from `base` (whose prefix is
/// replaced). Each check's keys are deleted when the next check starts, so the shared database
/// stays small and listings stay fast.
pub async fn conformance(base: RedisOptions, tag: &'static str) {
    let previous: Arc<Mutex<Option<RedisStore>>> = Arc::new(Mutex::new(None));
    let last = Arc::clone(&previous);
    session_core::testing::run_conformance(move || {
        let base = base.clone();
        let previous = Arc::clone(&previous);
        async move {
            let old = previous.lock().map(|mut p| p.take()).unwrap_or(None);
            if let Some(old) = old {
                purge(&old).await;
            }
            let options = base
                .with_key_prefix(unique_prefix(tag))
                .unwrap_or_else(|e| panic!("prefix: {e}"));
            let store = RedisStore::connect(options)
                .await
                .unwrap_or_else(|e| panic!("connect: {e}"));
            if let Ok(mut p) = previous.lock() {
                *p = Some(store.clone());
            }
            Arc::new(store) as Arc<dyn SessionStore>
        }
    })
    .await;
    let old = last.lock().map(|mut p| p.take()).unwrap_or(None);
    if let Some(old) = old {
        purge(&old).await;
    }
}
