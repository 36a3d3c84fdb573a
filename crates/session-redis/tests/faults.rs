//! The fault checks of `session_core::testing::faults` on a real `redis-server` of the test's
//! own, with real faults: a restart from an older RDB snapshot (a rollback that loses
//! acknowledged writes), a proxy that forwards a write and drops its reply, and a restart while
//! a manager is idle. Multiplexed and pooled, on whatever server `cargo xtask test` provides
//! (Redis 7 and Valkey 9).
#![cfg(feature = "driver")]

mod common;

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use redis_harness::{FaultProxy, RedisServer, ServerOptions, env::private_server};
use session_core::{
    SessionId, SessionManager, SessionStore, async_trait, testing::faults::FaultHarness,
};
use session_redis::{ConnectionMode, RedisOptions, RedisStore};

/// The bytes that start the staging `SET` of every write pipeline on the wire (RESP: the
/// command name as a bulk string of 3 bytes). Reads, resolves and deletes never send a `SET`
/// of their own, and script sources are sent as one longer bulk string.
const STAGING_SET: &[u8] = b"\r\n$3\r\nSET\r\n";

/// A private server behind a fault proxy. Every store connects through the proxy.
struct RedisFaults {
    server: Mutex<RedisServer>,
    proxy: FaultProxy,
    snapshot: PathBuf,
    prefix: String,
    mode: ConnectionMode,
}

impl RedisFaults {
    fn start(test: &str, mode: ConnectionMode) -> Option<Self> {
        let server = private_server(test, ServerOptions::default())?;
        let upstream = format!("127.0.0.1:{}", server.port())
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let proxy = FaultProxy::start(upstream).unwrap_or_else(|e| panic!("proxy: {e}"));
        let snapshot = server.dir().join("snapshot.rdb");
        Some(Self {
            server: Mutex::new(server),
            proxy,
            snapshot,
            prefix: common::unique_prefix("faults"),
            mode,
        })
    }

    fn options(&self) -> RedisOptions {
        common::options(&self.proxy.url(), 0, "faults")
            .with_key_prefix(self.prefix.clone())
            .unwrap_or_else(|e| panic!("{e}"))
            .with_mode(self.mode)
            .with_command_timeout(Duration::from_millis(500))
    }

    fn server(&self) -> std::sync::MutexGuard<'_, RedisServer> {
        self.server.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn save(&self) {
        let server = self.server();
        server
            .command(&["SAVE"])
            .unwrap_or_else(|e| panic!("SAVE: {e}"));
    }
}

#[async_trait]
impl FaultHarness for RedisFaults {
    async fn store(&self) -> Arc<dyn SessionStore> {
        Arc::new(
            RedisStore::connect(self.options())
                .await
                .unwrap_or_else(|e| panic!("connect through the proxy: {e}")),
        )
    }

    async fn snapshot(&self) {
        self.save();
        let dir = self.server().dir().to_path_buf();
        std::fs::copy(dir.join("dump.rdb"), &self.snapshot)
            .unwrap_or_else(|e| panic!("keeping the snapshot: {e}"));
    }

    async fn roll_back(&self) {
        let snapshot = self.snapshot.clone();
        self.server()
            .restart_with(|dir| std::fs::copy(&snapshot, dir.join("dump.rdb")).map(drop))
            .unwrap_or_else(|e| panic!("restart from the snapshot: {e}"));
    }

    fn can_lose_replies(&self) -> bool {
        true
    }

    fn lose_next_write_reply(&self) -> bool {
        // Every write pipeline stages its record with a `SET` (and no read, nor the resolve of
        // a lost reply, sends one: the delete marker's `SET` runs inside a script): the proxy
        // forwards it, drops the reply and closes the connection.
        self.proxy.drop_reply_after(STAGING_SET);
        true
    }

    fn faults_fired(&self) -> usize {
        self.proxy.faults_fired()
    }

    async fn restart(&self) -> bool {
        self.save();
        self.server()
            .restart()
            .unwrap_or_else(|e| panic!("restart: {e}"));
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiplexed_store_passes_the_fault_checks() {
    let Some(harness) = RedisFaults::start(
        "multiplexed_store_passes_the_fault_checks",
        ConnectionMode::Multiplexed,
    ) else {
        return;
    };
    session_core::testing::faults::run_fault_checks(&harness).await;
}

#[cfg(feature = "pool")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_store_passes_the_fault_checks() {
    let Some(harness) = RedisFaults::start("pooled_store_passes_the_fault_checks", common::pool(3))
    else {
        return;
    };
    session_core::testing::faults::run_fault_checks(&harness).await;
}

/// A write whose reply never comes because the server is frozen (SIGSTOP) cannot be resolved
/// either: the caller gets `OutcomeUnknown`, not a retryable `Unavailable`, within the
/// documented bound; after the server resumes, the write has landed at most once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_to_a_frozen_server_ends_as_outcome_unknown_in_bounded_time() {
    let Some(harness) = RedisFaults::start(
        "a_write_to_a_frozen_server_ends_as_outcome_unknown_in_bounded_time",
        ConnectionMode::Multiplexed,
    ) else {
        return;
    };
    let options = harness
        .options()
        .with_connect_timeout(Duration::from_millis(300));
    let store = Arc::new(
        RedisStore::connect(options)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let manager: SessionManager<Vec<String>> = SessionManager::new(store.clone());
    let id = SessionId::new("frozen").unwrap_or_else(|e| panic!("{e}"));
    manager
        .get_or_create(&id, Vec::new)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let pid = harness.server().pid();
    signal(pid, "-STOP");
    let started = std::time::Instant::now();
    let result = manager.modify(&id, |m| m.push("maybe".into())).await;
    let took = started.elapsed();
    signal(pid, "-CONT");
    match result {
        Err(session_core::Error::OutcomeUnknown { .. }) => {}
        other => panic!("a write to a frozen server: expected OutcomeUnknown, got {other:?}"),
    }
    assert!(
        !session_core::Error::OutcomeUnknown {
            id: id.clone(),
            backend: "redis",
            reason: String::new()
        }
        .is_retryable()
    );
    // command timeout (500 ms) + resolve within connect + command timeout (800 ms), plus slack
    // for a loaded machine: the bound is what matters, not the speed.
    assert!(took < Duration::from_secs(10), "took {took:?}");
    // Once the server answers again, the session holds the change once or not at all.
    let mut messages = None;
    for _ in 0..100 {
        match manager.get(&id).await {
            Ok(Some(session)) => {
                messages = Some(session.into_value());
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let messages = messages.unwrap_or_else(|| panic!("the server did not come back"));
    assert!(
        messages.len() <= 1,
        "the change was applied more than once: {messages:?}"
    );
}

/// Sends a signal to the test's own server process, by pid (`kill`, the command: no unsafe).
fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap_or_else(|e| panic!("kill {sig} {pid}: {e}"));
    assert!(status.success(), "kill {sig} {pid} failed");
}

/// A `modify` whose reply is lost while other writers land on top of it: with fewer writes
/// on top than the record keeps tokens of, the lost write is recognised (success, applied
/// once); with as many as it keeps, the server cannot tell, and the answer is
/// `OutcomeUnknown`, never a second application of the change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_write_buried_under_other_writes_is_never_applied_twice() {
    for on_top in [
        session_core::RECENT_TOKENS as u64 - 1,
        session_core::RECENT_TOKENS as u64,
    ] {
        let test = "a_lost_write_buried_under_other_writes_is_never_applied_twice";
        let Some(harness) = RedisFaults::start(test, ConnectionMode::Multiplexed) else {
            return;
        };
        let through_proxy: SessionManager<u64> = SessionManager::new(harness.store().await);
        let direct_url = harness.server().url();
        let direct = Arc::new(
            RedisStore::connect(
                common::options(&direct_url, 0, "faults")
                    .with_key_prefix(harness.prefix.clone())
                    .unwrap_or_else(|e| panic!("{e}")),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        );
        let other: SessionManager<u64> = SessionManager::new(direct);
        let id = SessionId::new("buried").unwrap_or_else(|e| panic!("{e}"));
        through_proxy
            .get_or_create(&id, || 0)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // The proxy stalls as soon as the server answers the lost write, which holds the
        // resolve until the other writes have landed on top of it. (Stalling from here once
        // the fault fired raced with the proxy's forwarding: the stall could hold the write
        // itself, which then came after the others, failed its guard and was retried, a
        // correct answer to a different test.)
        harness.proxy.drop_reply_after_then_stall(STAGING_SET);
        let lost = {
            let m = through_proxy.clone();
            let id = id.clone();
            tokio::spawn(async move { m.modify(&id, |n| *n += 1).await })
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let seen = other.get(&id).await.unwrap_or_else(|e| panic!("{e}"));
            if seen.is_some_and(|session| *session == 1) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the lost write never landed"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        for _ in 0..on_top {
            other
                .modify(&id, |n| *n += 1000)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        harness.proxy.set_stalled(false);
        let result = lost.await.unwrap_or_else(|e| panic!("{e}"));
        let stored = *other
            .get(&id)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("gone"));
        assert_eq!(
            stored,
            on_top * 1000 + 1,
            "the lost change must be stored exactly once ({on_top} writes on top)"
        );
        match (on_top < session_core::RECENT_TOKENS as u64, result) {
            (true, Ok(session)) => assert_eq!(*session % 1000, 1),
            (false, Err(session_core::Error::OutcomeUnknown { .. })) => {}
            (_, other) => panic!("{on_top} writes on top of a lost write: got {other:?}"),
        }
    }
}

/// A delete whose reply is lost after Redis applied it: the store sends it once more on a new
/// connection, and that second send still reports that the session existed (a second plain
/// `UNLINK` would have said it did not). Multiplexed and pooled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_whose_reply_is_lost_still_reports_that_the_session_existed() {
    let mut modes = vec![ConnectionMode::Multiplexed];
    #[cfg(feature = "pool")]
    modes.push(common::pool(2));
    for mode in modes {
        let Some(harness) = RedisFaults::start(
            "a_delete_whose_reply_is_lost_still_reports_that_the_session_existed",
            mode,
        ) else {
            return;
        };
        let store = harness.store().await;
        let manager: SessionManager<Vec<String>> = SessionManager::new(store.clone());
        let id = SessionId::new("deleted-once").unwrap_or_else(|e| panic!("{e}"));
        manager
            .update(&id, &vec!["hello".to_owned()])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // The delete script's marker key (`~d`) is in the delete's request only.
        harness.proxy.drop_reply_after(b"~d");
        let existed = store.delete(&id).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            harness.faults_fired(),
            1,
            "{mode:?}: the reply was not dropped"
        );
        assert!(
            existed,
            "{mode:?}: a delete that removed the session said it did not exist"
        );
        assert!(
            store
                .load(&id)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .is_none()
        );
        // Deleting what is gone says so, and the marker is never listed as a session.
        assert!(!store.delete(&id).await.unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(store.count().await.unwrap_or_else(|e| panic!("{e}")), 0);
    }
}
