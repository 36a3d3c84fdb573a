//! Connection health with real faults on real servers of the tests' own: a frozen server
//! (SIGSTOP), a connection that hangs for good, a master demoted to a replica (`REPLICAOF`),
//! a server out of memory, and a network partition (a server in a network namespace whose
//! link is cut). Every call must end within its documented bound (the crate docs' "Time
//! bounds"), with the documented error, and the store must work again once the fault is gone,
//! without a restart of the process. Bounds are checked generously (a loaded machine is slow):
//! the bound is what is proved, not the speed.
#![cfg(feature = "driver")]

mod common;

use std::{
    fmt::Debug,
    future::Future,
    time::{Duration, Instant},
};

use bytes::Bytes;
use redis_harness::{FaultProxy, Partition, RedisServer, ServerOptions, env::private_server};
use session_core::{
    Condition, Error, SessionId, SessionManager, SessionStore, Ttl, Write, WriteOutcome,
};
use session_redis::{ConnectionMode, RedisOptions, RedisStore};

/// The timeouts of every store here: short, so that the faults are quick to sit through.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
const COMMAND_TIMEOUT: Duration = Duration::from_millis(300);
/// The documented bound of one round trip: connect + command timeout.
const ROUND_TRIP: Duration = Duration::from_millis(600);
/// The documented bound of a write: three round trips.
const WRITE: Duration = Duration::from_millis(1800);
/// What a loaded machine may add to a bound.
const SLACK: Duration = Duration::from_secs(2);
/// How long a recovered server may take to serve the store again: the reconnect's longest
/// backoff (1 s) plus a connect, generously.
const RECOVERY: Duration = Duration::from_secs(10);

fn id(s: &str) -> SessionId {
    SessionId::new(s).unwrap_or_else(|e| panic!("{e}"))
}

fn write(payload: &'static [u8], condition: Condition) -> Write {
    Write::new(Bytes::from_static(payload), condition)
}

fn options(url: &str, mode: ConnectionMode) -> RedisOptions {
    common::options(url, 0, "health")
        .with_mode(mode)
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_command_timeout(COMMAND_TIMEOUT)
}

async fn connect(url: &str, mode: ConnectionMode) -> RedisStore {
    RedisStore::connect(options(url, mode))
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// Runs `op`, which must fail as an outage (`Unavailable`, or for a write also
/// `OutcomeUnknown`) within `bound` (plus slack).
async fn fails_within<T: Debug>(
    what: &str,
    bound: Duration,
    write: bool,
    op: impl Future<Output = session_core::Result<T>>,
) {
    let started = Instant::now();
    let result = op.await;
    let took = started.elapsed();
    match &result {
        Err(Error::Unavailable { .. }) => {}
        Err(Error::OutcomeUnknown { .. }) if write => {}
        other => panic!("{what}: expected an outage, got {other:?}"),
    }
    assert!(
        took < bound + SLACK,
        "{what} took {took:?}: over its bound of {bound:?} (+ {SLACK:?})"
    );
    eprintln!("{what}: {took:?} (bound {bound:?})");
}

/// Every operation of the store fails as an outage within its bound. Mutations go to
/// `other`, so that one delivered late (after the fault) cannot change the session `kept`.
async fn every_operation_fails_within_its_bound(store: &RedisStore, other: &SessionId) {
    fails_within("load", ROUND_TRIP, false, store.load(other)).await;
    let w = write(b"during the fault", Condition::Any);
    fails_within("write", WRITE, true, store.write(other, w)).await;
    let w = write(b"during the fault", Condition::IfAbsent);
    fails_within("create", WRITE, true, store.write(other, w)).await;
    fails_within("delete", ROUND_TRIP, false, store.delete(other)).await;
    fails_within("touch", ROUND_TRIP, false, store.touch(other, Ttl::DEFAULT)).await;
    fails_within("exists", ROUND_TRIP, false, store.exists(other)).await;
    fails_within("list_page", ROUND_TRIP, false, store.list_page(None, 10)).await;
    fails_within("count", ROUND_TRIP, false, store.count()).await;
    fails_within("ping", ROUND_TRIP, false, store.ping()).await;
}

/// The store answers again within [`RECOVERY`], and then every operation works at once: no
/// connection is left that still hangs. `kept` holds `payload`.
async fn every_operation_works_again(store: &RedisStore, kept: &SessionId, payload: &[u8]) {
    let deadline = Instant::now() + RECOVERY;
    let mut last = None;
    while Instant::now() < deadline {
        match store.ping().await {
            Ok(()) => {
                last = None;
                break;
            }
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if let Some(e) = last {
        panic!("the store did not recover within {RECOVERY:?}: {e}");
    }
    let record = store
        .load(kept)
        .await
        .unwrap_or_else(|e| panic!("load after recovery: {e}"))
        .unwrap_or_else(|| panic!("the session is gone"));
    assert_eq!(&record.payload[..], payload);
    let outcome = store
        .write(
            kept,
            write(b"after", Condition::IfUnchanged(record.basis())),
        )
        .await
        .unwrap_or_else(|e| panic!("write after recovery: {e}"));
    assert!(
        matches!(outcome, WriteOutcome::Written { .. }),
        "{outcome:?}"
    );
    for (what, result) in [
        ("touch", store.touch(kept, Ttl::DEFAULT).await),
        ("exists", store.exists(kept).await),
    ] {
        assert!(result.unwrap_or_else(|e| panic!("{what} after recovery: {e}")));
    }
    let page = store
        .list_page(None, 100)
        .await
        .unwrap_or_else(|e| panic!("list_page after recovery: {e}"));
    assert!(page.sessions.iter().any(|s| &s.id == kept));
    assert!(store.count().await.unwrap_or_else(|e| panic!("{e}")) >= 1);
}

/// Sends a signal to the test's own server process, by pid (`kill`, the command: no unsafe).
fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap_or_else(|e| panic!("kill {sig} {pid}: {e}"));
    assert!(status.success(), "kill {sig} {pid} failed");
}

/// A server stopped with SIGSTOP until this is dropped (also on a panic: a stopped server would
/// make the harness wait for its shutdown).
struct Frozen(u32);

impl Frozen {
    fn new(pid: u32) -> Self {
        signal(pid, "-STOP");
        Self(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .status();
    }
}

async fn check_frozen_server(mode: ConnectionMode, test: &str) {
    let Some(server) = private_server(test, ServerOptions::default()) else {
        return;
    };
    let store = connect(&server.url(), mode).await;
    let (kept, other) = (id("kept"), id("other"));
    store
        .write(&kept, write(b"before", Condition::IfAbsent))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    {
        let _frozen = Frozen::new(server.pid());
        every_operation_fails_within_its_bound(&store, &other).await;
        // A store that connects while the server is frozen fails within its bound too.
        let started = Instant::now();
        let connecting = RedisStore::connect(options(&server.url(), mode)).await;
        assert!(
            matches!(connecting, Err(Error::Unavailable { .. })),
            "{connecting:?}"
        );
        assert!(started.elapsed() < ROUND_TRIP + SLACK);
    }
    every_operation_works_again(&store, &kept, b"before").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiplexed_calls_to_a_frozen_server_end_within_the_bound_and_recover() {
    check_frozen_server(
        ConnectionMode::Multiplexed,
        "multiplexed_calls_to_a_frozen_server_end_within_the_bound_and_recover",
    )
    .await;
}

#[cfg(feature = "pool")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_calls_to_a_frozen_server_end_within_the_bound_and_recover() {
    check_frozen_server(
        common::pool(3),
        "pooled_calls_to_a_frozen_server_end_within_the_bound_and_recover",
    )
    .await;
}

/// A connection that hangs for good (the network holds its bytes, nothing closes it) costs
/// one timeout: the next calls go to a new connection and succeed. A store that kept the
/// connection would time out on every call until the process restarted.
async fn check_hung_connection(mode: ConnectionMode, test: &str) {
    let Some(server) = private_server(test, ServerOptions::default()) else {
        return;
    };
    let upstream = server.addr();
    let proxy = FaultProxy::start(upstream).unwrap_or_else(|e| panic!("proxy: {e}"));
    let store = connect(&proxy.url(), mode).await;
    let kept = id("kept");
    store
        .write(&kept, write(b"before", Condition::IfAbsent))
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // A read on the hung connection times out; the next one uses a new connection.
    assert!(proxy.hang_open_connections() >= 1);
    fails_within(
        "load on a hung connection",
        ROUND_TRIP,
        false,
        store.load(&kept),
    )
    .await;
    let record = store
        .load(&kept)
        .await
        .unwrap_or_else(|e| panic!("the load after the timeout: {e}"))
        .unwrap_or_else(|| panic!("the session is gone"));
    assert_eq!(&record.payload[..], b"before");

    // A write on a hung connection: its reply is lost, the resolve on a new connection finds
    // it not landed (the request never left the proxy) and fences it, and the resend lands.
    assert!(proxy.hang_open_connections() >= 1);
    let started = Instant::now();
    let outcome = store
        .write(
            &kept,
            write(b"written", Condition::IfUnchanged(record.basis())),
        )
        .await
        .unwrap_or_else(|e| panic!("a write on a hung connection: {e}"));
    assert!(
        matches!(outcome, WriteOutcome::Written { .. }),
        "{outcome:?}"
    );
    assert!(started.elapsed() < WRITE + SLACK, "{:?}", started.elapsed());
    let record = store
        .load(&kept)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("gone"));
    assert_eq!(&record.payload[..], b"written");
    assert_eq!(record.version, 2, "applied exactly once");

    // The whole network stalled, then released: calls fail within their bound meanwhile,
    // and afterwards work at once.
    proxy.set_stalled(true);
    fails_within("ping while stalled", ROUND_TRIP, false, store.ping()).await;
    fails_within("load while stalled", ROUND_TRIP, false, store.load(&kept)).await;
    proxy.set_stalled(false);
    every_operation_works_again(&store, &kept, b"written").await;
    // The connections that replaced the hung one have TCP keepalive on, like the first.
    keepalive_on_connections_to(proxy.port());
}

/// Every established connection of this process to `port` has a TCP keepalive timer (`ss`
/// shows `timer:(keepalive,...)`). Skipped, with a message, without `ss`.
fn keepalive_on_connections_to(port: u16) {
    let filter = format!("( dport = :{port} )");
    let output = std::process::Command::new("ss")
        .args(["-tnoH", "state", "established", &filter])
        .output();
    let Ok(output) = output.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()) else {
        eprintln!("no `ss`: not checking TCP keepalive on the store's connections");
        return;
    };
    let ours: Vec<&str> = output.lines().collect();
    assert!(!ours.is_empty(), "no connection to port {port}");
    for line in ours {
        assert!(line.contains("timer:(keepalive"), "no keepalive: {line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiplexed_store_replaces_a_connection_that_hangs() {
    check_hung_connection(
        ConnectionMode::Multiplexed,
        "multiplexed_store_replaces_a_connection_that_hangs",
    )
    .await;
}

#[cfg(feature = "pool")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_store_replaces_a_connection_that_hangs() {
    check_hung_connection(
        common::pool(2),
        "pooled_store_replaces_a_connection_that_hangs",
    )
    .await;
}

/// The ids of the store's connections on `server` (normal clients; the harness' own is left
/// out, and a replica's link to its master is not a normal client).
fn store_connections(server: &RedisServer) -> Vec<u64> {
    server
        .clients()
        .unwrap_or_else(|e| panic!("CLIENT LIST: {e}"))
        .into_iter()
        .filter(|c| c.flags == "N")
        .map(|c| c.id)
        .collect()
}

/// Waits (bounded) until `done` holds.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + RECOVERY;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {RECOVERY:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A master demoted to a replica (`REPLICAOF`) answers writes with `READONLY`: they fail as
/// `Unavailable` (nothing written), and the store drops the connection instead of sending
/// every write to the replica until it restarts. Once the server is a master again, writes
/// succeed again on a new connection.
async fn check_demoted_master(mode: ConnectionMode, test: &str) {
    let Some(first) = private_server(test, ServerOptions::default()) else {
        return;
    };
    let Some(second) = private_server(test, ServerOptions::default()) else {
        return;
    };
    let store = connect(&first.url(), mode).await;
    let s = id("demoted");
    store
        .write(&s, write(b"before", Condition::Any))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let before = store_connections(&first);
    assert!(!before.is_empty(), "the store's connection is not listed");

    let port = second.port().to_string();
    first
        .command(&["REPLICAOF", "127.0.0.1", &port])
        .unwrap_or_else(|e| panic!("REPLICAOF: {e}"));
    for n in 0..5 {
        fails_within(
            &format!("write {n} to a replica"),
            WRITE,
            false,
            store.write(&s, write(b"refused", Condition::Any)),
        )
        .await;
    }
    if mode == ConnectionMode::Multiplexed {
        // The connection that met READONLY is closed, not kept for the next write.
        eventually("the store's first connection closes", || {
            let now = store_connections(&first);
            before.iter().all(|old| !now.contains(old))
        })
        .await;
    }

    first
        .command(&["REPLICAOF", "NO", "ONE"])
        .unwrap_or_else(|e| panic!("REPLICAOF NO ONE: {e}"));
    let deadline = Instant::now() + RECOVERY;
    loop {
        match store.write(&s, write(b"after", Condition::Any)).await {
            Ok(outcome) => {
                assert!(
                    matches!(outcome, WriteOutcome::Written { .. }),
                    "{outcome:?}"
                );
                break;
            }
            Err(e @ Error::Unavailable { .. }) => {
                assert!(Instant::now() < deadline, "writes did not come back: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("a write to a promoted server: {e}"),
        }
    }
    let record = store
        .load(&s)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("gone"));
    assert_eq!(&record.payload[..], b"after");
    let after = store_connections(&first);
    assert!(
        after.iter().any(|new| !before.contains(new)),
        "no new connection: before {before:?}, after {after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiplexed_writes_to_a_demoted_master_are_unavailable_and_heal_on_a_new_connection() {
    check_demoted_master(
        ConnectionMode::Multiplexed,
        "multiplexed_writes_to_a_demoted_master_are_unavailable_and_heal_on_a_new_connection",
    )
    .await;
}

#[cfg(feature = "pool")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_writes_to_a_demoted_master_are_unavailable_and_heal_on_a_new_connection() {
    check_demoted_master(
        common::pool(2),
        "pooled_writes_to_a_demoted_master_are_unavailable_and_heal_on_a_new_connection",
    )
    .await;
}

/// Staged records left in the database: `{<session key>}~w<nonce>` (SCAN, never KEYS).
fn staged_keys(server: &RedisServer) -> Vec<String> {
    let reply = server
        .command(&["SCAN", "0", "MATCH", "*~w*", "COUNT", "100000"])
        .unwrap_or_else(|e| panic!("SCAN: {e}"));
    // The rendering is the cursor, then the keys one per line, or `(empty array)`.
    reply
        .lines()
        .skip(1)
        .filter(|line| *line != "(empty array)")
        .map(str::to_owned)
        .collect()
}

/// A server at `maxmemory` with `noeviction` refuses writes: each kind of write (guarded,
/// unconditional, create) returns `OutOfMemory`, not a generic backend error and not an
/// unknown outcome (the staging HSET is what is refused: nothing was written), the session
/// still reads as before, and no staged record is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_refused_for_memory_is_out_of_memory_and_leaves_nothing_behind() {
    let test = "a_write_refused_for_memory_is_out_of_memory_and_leaves_nothing_behind";
    let Some(server) = private_server(
        test,
        ServerOptions {
            extra_args: ["--maxmemory-policy", "noeviction"]
                .map(String::from)
                .into(),
            ..ServerOptions::default()
        },
    ) else {
        return;
    };
    // 1 MB, or half a megabyte above what the empty server uses where that is more (Valkey
    // with libc malloc starts above 1 MB).
    let info = server
        .command(&["INFO", "memory"])
        .unwrap_or_else(|e| panic!("INFO: {e}"));
    let used: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no used_memory in {info}"));
    let limit = (used + 512 * 1024).max(1024 * 1024).to_string();
    server
        .command(&["CONFIG", "SET", "maxmemory", &limit])
        .unwrap_or_else(|e| panic!("CONFIG SET maxmemory: {e}"));
    let store = std::sync::Arc::new(connect(&server.url(), ConnectionMode::Multiplexed).await);
    let manager: SessionManager<Vec<u8>> = SessionManager::new(store.clone());
    let kept = id("kept");
    manager
        .get_or_create(&kept, || vec![1, 2, 3])
        .await
        .unwrap_or_else(|e| panic!("a session below the limit: {e}"));

    // Fill the server until it refuses: the first refusal must already be OutOfMemory.
    static FILLER: [u8; 16 * 1024] = [b'x'; 16 * 1024];
    let mut refused = None;
    for n in 0..1000 {
        let w = Write::new(Bytes::from_static(&FILLER), Condition::Any);
        match store.write(&id(&format!("filler-{n}")), w).await {
            Ok(_) => {}
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    match refused {
        Some(Error::OutOfMemory { reason, .. }) => {
            assert!(reason.contains("maxmemory"), "{reason}");
            assert!(reason.contains("maxmemory-policy"), "{reason}");
        }
        other => panic!("filling the server: expected OutOfMemory, got {other:?}"),
    }

    let big = FILLER.to_vec();
    let guarded = manager.modify(&kept, |state| state.clone_from(&big)).await;
    assert!(
        matches!(guarded, Err(Error::OutOfMemory { .. })),
        "{guarded:?}"
    );
    let any = store
        .write(
            &kept,
            Write::new(Bytes::from_static(&FILLER), Condition::Any),
        )
        .await;
    assert!(matches!(any, Err(Error::OutOfMemory { .. })), "{any:?}");
    let create = store
        .write(
            &id("new"),
            Write::new(Bytes::from_static(&FILLER), Condition::IfAbsent),
        )
        .await;
    assert!(
        matches!(create, Err(Error::OutOfMemory { .. })),
        "{create:?}"
    );
    assert!(
        Error::OutOfMemory {
            backend: "redis",
            reason: String::new()
        }
        .kind()
            == "out_of_memory"
    );

    let state = manager
        .get(&kept)
        .await
        .unwrap_or_else(|e| panic!("a read under OOM: {e}"))
        .unwrap_or_else(|| panic!("the session is gone"));
    assert_eq!(*state, vec![1, 2, 3], "a refused write changed the session");
    assert!(
        !store
            .exists(&id("new"))
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        "a refused create left a session"
    );
    assert_eq!(
        staged_keys(&server),
        Vec::<String>::new(),
        "staged records left behind"
    );
}

/// A network partition: the server sits in a network namespace of the test's own, and its
/// link is cut, so that packets vanish (no refusal, no reset). Every call ends within its
/// bound; once the link is back, the store works again.
async fn check_partition(mode: ConnectionMode, test: &str) {
    let Some(binary) = redis_harness::env::server_binary(test) else {
        return;
    };
    let Some(partition) = Partition::for_test(test) else {
        return;
    };
    // Declared after the partition: dropped (stopped, by its pid) before it.
    let server = RedisServer::start(partition.server_options(ServerOptions {
        binary: Some(binary),
        ..ServerOptions::default()
    }))
    .unwrap_or_else(|e| panic!("{test}: a server in {}: {e}", partition.namespace()));
    let store = connect(&server.url(), mode).await;
    let (kept, other) = (id("kept"), id("other"));
    store
        .write(&kept, write(b"before", Condition::IfAbsent))
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    partition.cut().unwrap_or_else(|e| panic!("cut: {e}"));
    every_operation_fails_within_its_bound(&store, &other).await;
    let started = Instant::now();
    let connecting = RedisStore::connect(options(&server.url(), mode)).await;
    assert!(
        matches!(connecting, Err(Error::Unavailable { .. })),
        "{connecting:?}"
    );
    assert!(started.elapsed() < ROUND_TRIP + SLACK);
    partition.heal().unwrap_or_else(|e| panic!("heal: {e}"));
    every_operation_works_again(&store, &kept, b"before").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiplexed_calls_across_a_partition_end_within_the_bound_and_recover() {
    check_partition(
        ConnectionMode::Multiplexed,
        "multiplexed_calls_across_a_partition_end_within_the_bound_and_recover",
    )
    .await;
}

#[cfg(feature = "pool")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_calls_across_a_partition_end_within_the_bound_and_recover() {
    check_partition(
        common::pool(3),
        "pooled_calls_across_a_partition_end_within_the_bound_and_recover",
    )
    .await;
}

/// After a restart every pooled connection is dead: the first calls must not take them one
/// at a time (a read would fail its one resend, a write its resolve).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_after_a_server_restart_serves_the_next_calls() {
    let test = "a_full_pool_after_a_server_restart_serves_the_next_calls";
    let Some(mut server) = private_server(test, ServerOptions::default()) else {
        return;
    };
    let size = std::num::NonZeroUsize::new(8).unwrap_or(std::num::NonZeroUsize::MIN);
    let store = connect(&server.url(), ConnectionMode::Pool { max_size: size }).await;
    let a = id("pooled-restart");
    store
        .save(&a, write(b"v1", Condition::Any))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Fill the pool: eight requests at once make eight connections.
    let loads: Vec<_> = (0..8).map(|_| store.load(&a)).collect();
    for r in futures_join(loads).await {
        r.unwrap_or_else(|e| panic!("{e}"));
    }
    server.restart().unwrap_or_else(|e| panic!("restart: {e}"));
    // Not persisted: the session is gone, and both calls must answer, not fail.
    let start = Instant::now();
    assert!(
        store
            .load(&a)
            .await
            .unwrap_or_else(|e| panic!("first load after the restart: {e}"))
            .is_none()
    );
    match store.write(&a, write(b"v2", Condition::Any)).await {
        Ok(WriteOutcome::Written { .. }) => {}
        other => panic!("first write after the restart: {other:?}"),
    }
    assert!(start.elapsed() < ROUND_TRIP * 3 + Duration::from_secs(2));
}

async fn futures_join<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut out = Vec::with_capacity(futures.len());
    let handles: Vec<_> = futures.into_iter().map(Box::pin).collect();
    // Poll them together: started at once, they need one connection each.
    let mut pending: Vec<_> = handles.into_iter().map(Some).collect();
    let results = std::future::poll_fn(|cx| {
        let mut done = true;
        for slot in &mut pending {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        out.push(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    });
    results.await;
    out
}
