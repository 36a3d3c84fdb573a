//! Replicated acknowledgement (`RedisOptions::with_replicated_ack`) on real servers of the
//! test's own: a primary and a replica. A write counts as done only when the replica
//! confirmed it; a write no replica confirms in time ends as `OutcomeUnknown`, never as
//! success (it landed on the primary, and a failover could lose it).
#![cfg(feature = "driver")]

use std::time::Duration;

use bytes::Bytes;
use redis_harness::{RedisServer, ServerOptions, env::private_server};
use session_core::{Condition, Error, SessionId, SessionStore, Write};
use session_redis::{RedisOptions, RedisStore, RedisTarget};

fn replicate(replica: &RedisServer, primary: &RedisServer) {
    replica
        .command(&["REPLICAOF", "127.0.0.1", &primary.port().to_string()])
        .unwrap_or_else(|e| panic!("REPLICAOF: {e}"));
    // Within 20 s: a loaded 2-core machine can be slow to fork and load the snapshot.
    for _ in 0..400 {
        let info = replica
            .command(&["INFO", "replication"])
            .unwrap_or_else(|e| panic!("INFO: {e}"));
        if info.contains("master_link_status:up") {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the replica did not sync");
}

fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap_or_else(|e| panic!("kill: {e}"));
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_counts_only_once_a_replica_has_it() {
    const TEST: &str = "a_write_counts_only_once_a_replica_has_it";
    // A full sync otherwise waits `repl-diskless-sync-delay` (5 s by default) for more
    // replicas to join before it starts.
    let primary_options = ServerOptions {
        extra_args: vec!["--repl-diskless-sync-delay".into(), "0".into()],
        ..ServerOptions::default()
    };
    let Some(primary) = private_server(TEST, primary_options) else {
        return;
    };
    let Some(replica) = private_server(TEST, ServerOptions::default()) else {
        return;
    };
    replicate(&replica, &primary);
    // A replica whose link is up may not be online for the primary yet (that waits for its
    // first acknowledgement): until it is, `WAIT` counts it out. CI once saw the first write
    // below confirmed by 0 of 1 replicas within 200 ms for that reason.
    primary
        .wait_replicated(1, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}"));
    let target = RedisTarget::parse(&format!("redis://127.0.0.1:{}", primary.port()))
        .unwrap_or_else(|e| panic!("{e}"));
    // A confirmation takes well under a millisecond on loopback; the bound leaves a loaded
    // machine room.
    let options = RedisOptions::new(target)
        .with_command_timeout(Duration::from_millis(3000))
        .with_replicated_ack(1, Duration::from_millis(1000));
    let store = RedisStore::connect(options)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let id = SessionId::new("acked").unwrap_or_else(|e| panic!("{e}"));
    let write = |body: &'static [u8]| Write::new(Bytes::from_static(body), Condition::Any);

    // With the replica up: acknowledged, and the replica has it.
    let version = store
        .save(&id, write(b"one"))
        .await
        .unwrap_or_else(|e| panic!("an acknowledged write: {e}"));
    assert_eq!(version, 1);
    let on_replica = replica
        .command(&["GET", "cql:session:acked"])
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        on_replica.contains("one"),
        "the replica lacks it: {on_replica:?}"
    );

    // The replica frozen: the primary applies the write, but it is not acknowledged.
    signal(replica.pid(), "-STOP");
    let started = std::time::Instant::now();
    let result = store.save(&id, write(b"two")).await;
    let took = started.elapsed();
    signal(replica.pid(), "-CONT");
    match result {
        Err(Error::OutcomeUnknown { reason, .. }) => {
            assert!(reason.contains("0 of 1 replica"), "{reason}");
        }
        other => panic!("a write no replica confirmed: expected OutcomeUnknown, got {other:?}"),
    }
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let record = store
        .load(&id)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("gone"));
    assert_eq!(&record.payload[..], b"two", "the primary applied it");

    // An option that cannot work is a configuration error.
    let bad = RedisOptions::new(
        RedisTarget::parse(&format!("redis://127.0.0.1:{}", primary.port()))
            .unwrap_or_else(|e| panic!("{e}")),
    )
    .with_command_timeout(Duration::from_millis(500))
    .with_replicated_ack(1, Duration::from_millis(500));
    assert!(matches!(
        RedisStore::connect(bad).await,
        Err(Error::Config { .. })
    ));
}
