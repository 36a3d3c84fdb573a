//! The run-time fallback (`FailoverStore` over `RedisStore`) with real faults on a private
//! redis-server: `kill -9` and a restart empty, a restart from an older snapshot, and a hung
//! network between one instance and Redis while another instance keeps writing.

use std::{
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use integration_tests::{Agent, unique, unique_id};
use redis_harness::{FaultProxy, RedisServer, ServerOptions, env::private_server};
use session_core::{
    FailoverMode, FailoverStore, SessionId, SessionManager, SessionStore, Summarize,
};
use session_redis::{RedisOptions, RedisStore};

const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
const COMMAND_TIMEOUT: Duration = Duration::from_millis(300);

fn options(url: &str, prefix: &str) -> RedisOptions {
    RedisOptions::from_url(url)
        .and_then(|o| o.with_key_prefix(prefix.to_owned()))
        .unwrap_or_else(|e| panic!("options for {url}: {e}"))
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_command_timeout(COMMAND_TIMEOUT)
}

async fn redis(url: &str, prefix: &str) -> Arc<dyn SessionStore> {
    Arc::new(
        RedisStore::connect(options(url, prefix))
            .await
            .unwrap_or_else(|e| panic!("connect: {e}")),
    )
}

fn failover(primary: Arc<dyn SessionStore>) -> FailoverStore {
    // The fallback's warnings and the write-back's report, in the test's output.
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_max_level(tracing::Level::INFO)
        .try_init();
    FailoverStore::builder(primary)
        .probe_backoff(Duration::from_millis(50), Duration::from_millis(400))
        .switch_after(COMMAND_TIMEOUT)
        .build()
}

fn agents(store: Arc<dyn SessionStore>) -> SessionManager<Agent> {
    SessionManager::builder(store)
        .summarize(Agent::summary)
        .build()
}

fn kill_9(server: &RedisServer) {
    let status = Command::new("kill")
        .args(["-9", &server.pid().to_string()])
        .status()
        .unwrap_or_else(|e| panic!("kill: {e}"));
    assert!(status.success(), "kill -9 {}", server.pid());
}

async fn wait_for_primary(store: &FailoverStore, what: &str) -> Duration {
    let start = Instant::now();
    while store.status().mode != FailoverMode::Primary {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what}: no recovery within 30 s: {:?}",
            store.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

async fn history(manager: &SessionManager<Agent>, id: &SessionId) -> Option<Vec<String>> {
    manager
        .get(id)
        .await
        .unwrap_or_else(|e| panic!("get {id}: {e}"))
        .map(|s| s.into_value().history)
}

async fn say(manager: &SessionManager<Agent>, id: &SessionId, text: &str) -> u64 {
    manager
        .modify(id, |a| a.history.push(text.to_owned()))
        .await
        .unwrap_or_else(|e| panic!("modify {id} ({text}): {e}"))
        .version()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_redis_is_survived_and_a_restarted_empty_one_gets_every_change_back() {
    let test = "a_killed_redis_is_survived_and_a_restarted_empty_one_gets_every_change_back";
    let Some(mut server) = private_server(test, ServerOptions::default()) else {
        return;
    };
    let url = server.url();
    let prefix = format!("fo:{}:", unique("kill"));
    let store = failover(redis(&url, &prefix).await);
    let agents = agents(Arc::new(store.clone()));
    let ids: Vec<SessionId> = (0..5).map(|n| unique_id(&format!("kill{n}"))).collect();
    for id in &ids {
        agents
            .get_or_create(id, Agent::new)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        say(&agents, id, "before").await;
    }

    kill_9(&server);
    let first = Instant::now();
    let mut versions = Vec::new();
    for id in &ids {
        versions.push(say(&agents, id, "during").await);
    }
    let first_call = first.elapsed();
    assert_eq!(store.status().mode, FailoverMode::Fallback);
    // The first call meets the outage and the fallback answers it within one command
    // timeout (`switch_after`); the rest are answered from memory at once. Plenty of slack
    // for the shared machine.
    assert!(
        first_call < COMMAND_TIMEOUT + Duration::from_secs(2),
        "{first_call:?}"
    );
    let created = unique_id("created-during");
    agents
        .get_or_create(&created, || {
            let mut a = Agent::new();
            a.history.push("hello from the outage".into());
            a
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        agents
            .delete(&ids[4])
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    );
    assert_eq!(store.status().dirty_sessions, 6);
    eprintln!("first call after kill -9 answered after {first_call:?}");

    server.restart().unwrap_or_else(|e| panic!("restart: {e}"));
    let took = wait_for_primary(&store, "restart empty").await;
    eprintln!(
        "written back {:?} after the restart",
        (took, store.status())
    );
    let status = store.status();
    assert_eq!(status.dirty_sessions, 0);
    assert_eq!(status.conflicts, 0);

    // Another instance, straight on Redis, sees every change acknowledged during the outage.
    let other = agents_on(&url, &prefix).await;
    for (id, version) in ids.iter().zip(&versions).take(4) {
        let seen = other
            .get(id)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("{id} missing"));
        assert_eq!(seen.history, ["before", "during"], "{id}");
        // Restored into an empty Redis, a session is created again: its version counts
        // from 1, and it keeps the token this instance's copies know.
        assert_eq!(seen.version(), 1, "{id}");
        assert!(*version > 1);
    }
    assert_eq!(history(&other, &ids[4]).await, None, "the delete");
    assert_eq!(
        history(&other, &created).await.unwrap_or_default(),
        ["hello from the outage"]
    );
    // And the instance goes on from its copies.
    say(&agents, &ids[0], "after").await;
    assert_eq!(
        history(&other, &ids[0]).await.unwrap_or_default(),
        ["before", "during", "after"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_failover_store_on_redis_passes_the_conformance_suite() {
    let test = "the_failover_store_on_redis_passes_the_conformance_suite";
    let Some(url) = redis_harness::env::redis_url(test) else {
        return;
    };
    // Each check's sessions are deleted when the next check starts: the listing checks scan
    // the whole database, and pages of a SCAN over many other keys may be empty.
    let previous: Arc<std::sync::Mutex<Option<Arc<dyn SessionStore>>>> = Arc::default();
    session_core::testing::run_conformance(|| {
        let url = url.clone();
        let previous = Arc::clone(&previous);
        async move {
            let old = previous.lock().map(|mut p| p.take()).unwrap_or(None);
            if let Some(old) = old {
                delete_all(old.as_ref()).await;
            }
            let prefix = format!("fo:{}:", unique("conformance"));
            let store = Arc::new(failover(redis(&url, &prefix).await)) as Arc<dyn SessionStore>;
            if let Ok(mut p) = previous.lock() {
                *p = Some(Arc::clone(&store));
            }
            store
        }
    })
    .await;
    let last = previous.lock().map(|mut p| p.take()).unwrap_or(None);
    if let Some(last) = last {
        delete_all(last.as_ref()).await;
    }
}

/// Deletes every session `store` lists.
async fn delete_all(store: &dyn SessionStore) {
    let mut cursor = None;
    loop {
        let page = store
            .list_page(cursor.as_ref(), 500)
            .await
            .unwrap_or_else(|e| panic!("list: {e}"));
        for info in &page.sessions {
            store
                .delete(&info.id)
                .await
                .unwrap_or_else(|e| panic!("delete: {e}"));
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
}

async fn agents_on(url: &str, prefix: &str) -> SessionManager<Agent> {
    agents(redis(url, prefix).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_from_an_older_snapshot_during_the_outage_loses_no_acknowledged_write() {
    let test = "a_restart_from_an_older_snapshot_during_the_outage_loses_no_acknowledged_write";
    let Some(mut server) = private_server(test, ServerOptions::default()) else {
        return;
    };
    let url = server.url();
    let prefix = format!("fo:{}:", unique("rollback"));
    let store = failover(redis(&url, &prefix).await);
    let agents = agents(Arc::new(store.clone()));
    let id = unique_id("rollback");
    agents
        .get_or_create(&id, Agent::new)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    say(&agents, &id, "1").await;
    server
        .command(&["SAVE"])
        .unwrap_or_else(|e| panic!("SAVE: {e}"));
    let snapshot = server.dir().join("older.rdb");
    std::fs::copy(server.dir().join("dump.rdb"), &snapshot)
        .unwrap_or_else(|e| panic!("keeping the snapshot: {e}"));
    // Acknowledged after the snapshot: the restart below loses it in Redis.
    say(&agents, &id, "2").await;

    kill_9(&server);
    say(&agents, &id, "3, during the outage").await;
    server
        .restart_with(|dir| std::fs::copy(&snapshot, dir.join("dump.rdb")).map(drop))
        .unwrap_or_else(|e| panic!("restart from the snapshot: {e}"));
    wait_for_primary(&store, "restart from an older snapshot").await;

    let other = agents_on(&url, &prefix).await;
    assert_eq!(
        history(&other, &id).await.unwrap_or_default(),
        ["1", "2", "3, during the outage"],
        "the rolled-back write came back with the outage's"
    );
    assert_eq!(store.status().conflicts, 0, "{:?}", store.status());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_on_both_sides_of_a_partition_are_reconciled_by_the_later_one() {
    let test = "changes_on_both_sides_of_a_partition_are_reconciled_by_the_later_one";
    let Some(server) = private_server(test, ServerOptions::default()) else {
        return;
    };
    let upstream = format!("127.0.0.1:{}", server.port())
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    let proxy = FaultProxy::start(upstream).unwrap_or_else(|e| panic!("proxy: {e}"));
    let prefix = format!("fo:{}:", unique("partition"));
    // Instance A reaches Redis through the proxy; instance B directly.
    let store = failover(redis(&proxy.url(), &prefix).await);
    let a = agents(Arc::new(store.clone()));
    let b = agents_on(&server.url(), &prefix).await;
    let (x, y, z) = (
        unique_id("part-x"),
        unique_id("part-y"),
        unique_id("part-z"),
    );
    for id in [&x, &y, &z] {
        a.get_or_create(id, Agent::new)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        say(&a, id, "shared start").await;
    }

    // A's network hangs: its next call times out and A serves from memory.
    proxy.set_stalled(true);
    say(&a, &x, "A on x, earlier").await;
    assert_eq!(store.status().mode, FailoverMode::Fallback);
    tokio::time::sleep(Duration::from_millis(20)).await;
    say(&b, &x, "B on x, later").await;
    say(&b, &z, "B on z, earlier").await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    say(&a, &z, "A on z, later").await;
    say(&a, &y, "A on y, alone").await;

    proxy.set_stalled(false);
    wait_for_primary(&store, "partition healed").await;
    let status = store.status();
    assert_eq!(status.conflicts, 2, "{status:?}");
    assert_eq!(
        history(&b, &x).await.unwrap_or_default(),
        ["shared start", "B on x, later"]
    );
    assert_eq!(
        history(&b, &y).await.unwrap_or_default(),
        ["shared start", "A on y, alone"]
    );
    assert_eq!(
        history(&b, &z).await.unwrap_or_default(),
        ["shared start", "A on z, later"]
    );
    // Both instances go on from the reconciled state without losing an update.
    say(&a, &x, "A after").await;
    say(&b, &x, "B after").await;
    assert_eq!(
        history(&a, &x).await.unwrap_or_default(),
        ["shared start", "B on x, later", "A after", "B after"]
    );
}

/// What a load of `modify` calls saw: every call's outcome and duration, and the messages
/// acknowledged per session.
#[derive(Debug, Default)]
struct Tally {
    attempted: u64,
    succeeded: u64,
    failed: u64,
    slowest: Duration,
    acknowledged: Vec<(SessionId, Vec<String>)>,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.attempted += other.attempted;
        self.succeeded += other.succeeded;
        self.failed += other.failed;
        self.slowest = self.slowest.max(other.slowest);
        self.acknowledged.extend(other.acknowledged);
    }

    /// Acknowledged messages missing from (or out of order in) what `reader` finds now.
    async fn lost(&self, reader: &SessionManager<Agent>) -> usize {
        let mut lost = 0;
        for (id, messages) in &self.acknowledged {
            let stored = history(reader, id).await.unwrap_or_default();
            let mut rest = stored.iter();
            for m in messages {
                if !rest.any(|s| s == m) {
                    lost += 1;
                }
            }
        }
        lost
    }
}

/// One task per session: `modify` calls appending `<session>-<n>`, one every 2 ms or as
/// fast as they answer, until `stop`.
async fn load(
    manager: SessionManager<Agent>,
    ids: Vec<SessionId>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Tally {
    let tasks: Vec<_> = ids
        .into_iter()
        .map(|id| {
            let manager = manager.clone();
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let mut tally = Tally::default();
                let mut acked = Vec::new();
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    n += 1;
                    let message = format!("{id}-{n}");
                    let start = Instant::now();
                    let result = manager
                        .modify_or_create(&id, Agent::new, |a| a.history.push(message.clone()))
                        .await;
                    tally.slowest = tally.slowest.max(start.elapsed());
                    tally.attempted += 1;
                    // A call served from memory never waits: without a pause these tasks
                    // would hold both runtime threads and starve the probe (and grow the
                    // sessions past the size limit).
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    match result {
                        Ok(_) => {
                            tally.succeeded += 1;
                            acked.push(message);
                        }
                        Err(_) => {
                            tally.failed += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
                tally.acknowledged.push((id, acked));
                tally
            })
        })
        .collect();
    let mut total = Tally::default();
    for task in tasks {
        total.add(task.await.unwrap_or_else(|e| panic!("load task: {e}")));
    }
    total
}

/// The faults the runtime load test causes.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// `kill -9`, then a restart with no data (nothing persisted): every session is restored
    /// by the write-back.
    KillAndRestartEmpty,
    /// `SIGSTOP`, then `SIGCONT`: a server that hangs with its connections open, and comes
    /// back with its data.
    Hang,
}

fn signal(server: &RedisServer, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &server.pid().to_string()])
        .status()
        .unwrap_or_else(|e| panic!("kill: {e}"));
    assert!(status.success(), "kill {signal} {}", server.pid());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_under_load_survive_kill_9_and_lose_nothing_with_runtime() {
    runtime_load(
        "two_instances_under_load_survive_kill_9_and_lose_nothing_with_runtime",
        Fault::KillAndRestartEmpty,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_under_load_survive_a_hung_server_and_lose_nothing_with_runtime() {
    runtime_load(
        "two_instances_under_load_survive_a_hung_server_and_lose_nothing_with_runtime",
        Fault::Hang,
    )
    .await;
}

/// Two instances, each with a `modify` load on its own four sessions, through `fault`:
/// every call succeeds (on the fallback during the outage) within the switch bound, both are
/// back on Redis soon after it answers again, and every acknowledged message is in Redis.
async fn runtime_load(test: &str, fault: Fault) {
    let Some(mut server) = private_server(test, ServerOptions::default()) else {
        return;
    };
    let url = server.url();
    let prefix = format!("fo:{}:", unique("load"));
    let stores = [
        failover(redis(&url, &prefix).await),
        failover(redis(&url, &prefix).await),
    ];
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loads: Vec<_> = stores
        .iter()
        .enumerate()
        .map(|(n, store)| {
            let ids = (0..4).map(|s| unique_id(&format!("load{n}s{s}"))).collect();
            tokio::spawn(load(
                agents(Arc::new(store.clone())),
                ids,
                Arc::clone(&stop),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    match fault {
        Fault::KillAndRestartEmpty => kill_9(&server),
        Fault::Hang => signal(&server, "-STOP"),
    }
    let faulted = Instant::now();
    for store in &stores {
        while store.status().mode == FailoverMode::Primary {
            assert!(
                faulted.elapsed() < Duration::from_secs(10),
                "no switch-over"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let switch_over = faulted.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    match fault {
        Fault::KillAndRestartEmpty => server.restart().unwrap_or_else(|e| panic!("restart: {e}")),
        Fault::Hang => signal(&server, "-CONT"),
    }
    let back = Instant::now();
    for store in &stores {
        wait_for_primary(store, "after the server came back").await;
    }
    let switch_back = back.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut tally = Tally::default();
    for l in loads {
        tally.add(l.await.unwrap_or_else(|e| panic!("{e}")));
    }
    let reader = agents_on(&url, &prefix).await;
    let lost = tally.lost(&reader).await;
    let conflicts: u64 = stores.iter().map(|s| s.status().conflicts).sum();
    eprintln!(
        "runtime under {fault:?}: attempted {}, succeeded {}, failed {}, conflicts {conflicts}, \
         lost {lost}; slowest call {:?}; switch-over {switch_over:?} after the fault, \
         switch-back {switch_back:?} after the server came back",
        tally.attempted, tally.succeeded, tally.failed, tally.slowest
    );
    assert_eq!(lost, 0, "acknowledged messages missing from Redis");
    assert_eq!(tally.failed, 0, "every call succeeds on the fallback");
    assert_eq!(conflicts, 0, "each instance wrote its own sessions");
    assert!(
        tally.slowest < COMMAND_TIMEOUT + Duration::from_secs(2),
        "{:?}",
        tally.slowest
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_fallback_calls_fail_fast_during_the_outage_and_nothing_acknowledged_is_lost() {
    let test =
        "without_a_fallback_calls_fail_fast_during_the_outage_and_nothing_acknowledged_is_lost";
    let Some(mut server) = private_server(
        test,
        ServerOptions {
            appendonly: true,
            extra_args: vec!["--appendfsync".into(), "always".into()],
            ..Default::default()
        },
    ) else {
        return;
    };
    let url = server.url();
    let prefix = format!("fo:{}:", unique("none"));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut loads = Vec::new();
    for n in 0..2 {
        let manager = agents_on(&url, &prefix).await;
        let ids = (0..4).map(|s| unique_id(&format!("none{n}s{s}"))).collect();
        loads.push(tokio::spawn(load(manager, ids, Arc::clone(&stop))));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    kill_9(&server);
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.restart().unwrap_or_else(|e| panic!("restart: {e}"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut tally = Tally::default();
    for l in loads {
        tally.add(l.await.unwrap_or_else(|e| panic!("{e}")));
    }
    let reader = agents_on(&url, &prefix).await;
    let lost = tally.lost(&reader).await;
    eprintln!(
        "none under kill -9: attempted {}, succeeded {}, failed {}, lost {lost}; slowest call {:?}",
        tally.attempted, tally.succeeded, tally.failed, tally.slowest
    );
    assert_eq!(lost, 0, "acknowledged messages missing from Redis");
    assert!(tally.failed > 0, "the outage must have been met");
    assert!(
        tally.slowest < CONNECT_TIMEOUT + COMMAND_TIMEOUT * 3 + Duration::from_secs(2),
        "{:?}",
        tally.slowest
    );
}
