//! Faults under real `session-demo` processes, each test on a private `redis-server` of its own
//! (skipped without a `redis-server` binary, mandatory under `SESSION_REQUIRE_REDIS=1`):
//!
//! - Redis rolls back (a restart from an older RDB snapshot) under two demo processes: a stale
//!   local copy must not overwrite a write acknowledged after the rollback;
//! - replies get lost between a demo and Redis (a [`redis_harness::FaultProxy`] in between)
//!   and between a client and the demo (a resend with the same `Idempotency-Key`): every
//!   message is stored once.
//!
//! The demos run as in `demo_e2e.rs` (see `common`): `USE_REDIS=true`,
//! `SESSION_FALLBACK=none`, a clean environment, loopback only.

mod common;

use std::{
    net::SocketAddr,
    thread,
    time::{Duration, Instant},
};

use common::{Binaries, Demo, DemoEnv, Scratch, user_messages};
use integration_tests::unique;
use redis_harness::{FaultProxy, ServerOptions};
use serde_json::{Value, json};

/// The bytes that start the staging `SET` of every write pipeline on the wire (RESP: the
/// command name as a bulk string of 3 bytes). Reads, resolves and deletes never send a `SET`
/// of their own, and script sources are sent as one longer bulk string.
const STAGING_SET: &[u8] = b"\r\n$3\r\nSET\r\n";

/// How long a demo may take to get through to a restarted Redis.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(15);

/// The scenario "a stale local copy overwrites an acknowledged write after Redis rolls back",
/// through two demo processes A and B on one Redis.
///
/// A creates session S with message 1; a snapshot is taken; A writes message 2 and keeps its
/// local copy of S at version 2. Redis restarts from the snapshot: message 2 is gone, S is at
/// version 1 again. B (no local copy) reads version 1 and writes message 3 as version 2,
/// acknowledged. Then A sends message 4 from its copy of version 2: a write conditioned on the
/// version alone (or on version and incarnation, which the rollback kept) would find version 2
/// and overwrite B's acknowledged message 3 with A's lost message 2. The write token of each
/// write tells B's version 2 apart from A's, so A's write is refused, A re-reads, and the
/// session ends as [1, 3, 4].
#[test]
fn a_rollback_loses_no_acknowledged_message_across_two_demo_processes() {
    const TEST: &str = "a_rollback_loses_no_acknowledged_message_across_two_demo_processes";
    let Some(mut server) = redis_harness::env::private_server(TEST, ServerOptions::default())
    else {
        return;
    };
    let bins = Binaries::build();
    let scratch = Scratch::new();
    let prefix = format!("faults-{}:", unique("rollback"));
    let env = DemoEnv {
        redis_url: server.url(),
        prefix: prefix.clone(),
        workdir: scratch.path().to_path_buf(),
        use_redis: true,
    };
    let a = Demo::start(&bins.demo, &env, "a", scratch.path());
    let b = Demo::start(&bins.demo, &env, "b", scratch.path());
    let id = unique("rollback");
    let key = format!("{prefix}{id}");
    let said = [
        "message 1: the printer jams on every page",
        "message 2: it started after I moved it",
        "message 3: the paper tray is full",
        "message 4: still jamming",
    ];

    // A creates the session: version 1. The snapshot is taken here.
    a.say(&id, said[0]);
    assert_eq!(stored_version(&server, &key), "1");
    let snapshot = scratch.path().join("snapshot.rdb");
    assert_eq!(
        server
            .command(&["SAVE"])
            .expect("SAVE on the private server"),
        "OK"
    );
    std::fs::copy(server.dir().join("dump.rdb"), &snapshot)
        .unwrap_or_else(|e| panic!("copying dump.rdb aside to {}: {e}", snapshot.display()));

    // A writes version 2 and keeps it as its local copy.
    a.say(&id, said[1]);
    assert_eq!(stored_version(&server, &key), "2");

    // Redis restarts from the snapshot: message 2 is lost.
    server
        .restart_with(|dir| std::fs::copy(&snapshot, dir.join("dump.rdb")).map(drop))
        .unwrap_or_else(|e| panic!("restarting redis-server from the snapshot: {e}"));
    assert_eq!(
        stored_version(&server, &key),
        "1",
        "the restart from the snapshot did not roll the session back"
    );

    // B reads version 1 and writes version 2: acknowledged.
    let reply = say_after_restart(&b, &id, said[2]);
    assert_eq!(reply["session_id"], id.as_str(), "{reply}");
    assert_eq!(stored_version(&server, &key), "2");
    let after_b = b.session(&id);
    assert_eq!(user_messages(&after_b), [said[0], said[2]], "{after_b}");

    // A writes from its stale copy of version 2.
    let reply = say_after_restart(&a, &id, said[3]);
    assert_eq!(reply["session_id"], id.as_str(), "{reply}");

    // B's acknowledged message 3 is there, A's lost message 2 did not come back, message 4 is
    // there; both demos read the same.
    for demo in [&a, &b] {
        let view = demo.session(&id);
        assert_eq!(
            user_messages(&view),
            [said[0], said[2], said[3]],
            "read through demo {}: {view}",
            demo.name()
        );
        assert_eq!(view["version"], 3, "one write per message: {view}");
    }
}

/// Lost replies, with `redis_harness::FaultProxy` between one demo process and Redis.
///
/// (a) The reply of Redis to a write is lost (the demo's connection closes without it): the
/// store asks Redis whether the write landed, finds that it did, and the request succeeds; the
/// message is stored once, with or without an idempotency key.
/// (b) The HTTP response is lost to the client, which sends the same message with the same
/// `Idempotency-Key` again: the demo answers with the first reply (`idempotent-replayed:
/// true`) and the message is stored once.
/// (c) Without an idempotency key a resend is a new message and is stored twice.
#[test]
fn a_resend_with_the_same_idempotency_key_after_a_dropped_reply_is_stored_once() {
    const TEST: &str =
        "a_resend_with_the_same_idempotency_key_after_a_dropped_reply_is_stored_once";
    let Some(server) = redis_harness::env::private_server(TEST, ServerOptions::default()) else {
        return;
    };
    let proxy = FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], server.port())))
        .unwrap_or_else(|e| panic!("starting the fault proxy: {e}"));
    let bins = Binaries::build();
    let scratch = Scratch::new();
    let env = DemoEnv {
        redis_url: proxy.url(),
        prefix: format!("faults-{}:", unique("idempotency")),
        workdir: scratch.path().to_path_buf(),
        use_redis: true,
    };
    let demo = Demo::start(&bins.demo, &env, "proxied", scratch.path());

    // (a) A lost Redis reply, resolved by the store itself. Every write pipeline of the store
    // stages its record with a `SET`; no read (and no resolve) sends one.
    let lost = unique("lost-reply");
    let first = "my laptop drops the wifi connection";
    proxy.drop_reply_after(STAGING_SET);
    let response = post_message(&demo, &lost, first, Some("k-1"));
    assert_eq!(
        proxy.faults_fired(),
        1,
        "the create's reply was not dropped"
    );
    assert_eq!(
        response.status, 200,
        "create with a lost reply: {response:?}"
    );
    // The closure ran once and its write landed: no replay of a second attempt.
    assert_eq!(
        response.header("idempotent-replayed"),
        None,
        "the store resent the create instead of finding that it landed: {response:?}"
    );
    let view = demo.session(&lost);
    assert_eq!(user_messages(&view), [first], "{view}");
    assert_eq!(view["version"], 1, "{view}");

    // The same on an existing session (a write from the demo's local copy) ...
    let second = "since the update yesterday, every ten minutes";
    proxy.drop_reply_after(STAGING_SET);
    let response = post_message(&demo, &lost, second, Some("k-1b"));
    assert_eq!(
        proxy.faults_fired(),
        2,
        "the update's reply was not dropped"
    );
    assert_eq!(
        response.status, 200,
        "update with a lost reply: {response:?}"
    );
    assert_eq!(response.header("idempotent-replayed"), None, "{response:?}");
    // ... and without an idempotency key, where only the store can keep it from being
    // applied twice.
    let third = "no, same as before";
    proxy.drop_reply_after(STAGING_SET);
    let response = post_message(&demo, &lost, third, None);
    assert_eq!(
        proxy.faults_fired(),
        3,
        "the keyless write's reply was not dropped"
    );
    assert_eq!(
        response.status, 200,
        "keyless write with a lost reply: {response:?}"
    );
    let view = demo.session(&lost);
    assert_eq!(user_messages(&view), [first, second, third], "{view}");
    assert_eq!(view["version"], 3, "one write per message: {view}");
    assert_eq!(proxy.faults_armed(), 0);

    // (b) The HTTP response is lost: the client sends the same message with the same key.
    let resent = unique("resent");
    let message = "the printer shows error E42";
    let original = post_message(&demo, &resent, message, Some("k-2"));
    assert_eq!(original.status, 200, "{original:?}");
    assert_eq!(original.header("idempotent-replayed"), None, "{original:?}");
    let replayed = post_message(&demo, &resent, message, Some("k-2"));
    assert_eq!(replayed.status, 200, "{replayed:?}");
    assert_eq!(
        replayed.header("idempotent-replayed"),
        Some("true"),
        "{replayed:?}"
    );
    assert_eq!(
        replayed.json()["reply"],
        original.json()["reply"],
        "the replay answers with the first reply"
    );
    assert_eq!(replayed.json(), original.json());
    let view = demo.session(&resent);
    assert_eq!(user_messages(&view), [message], "stored once: {view}");

    // (c) Without a key the demo cannot tell a resend from a new message with the same text:
    // both are handled and the message is stored twice. That is why the key exists: a client
    // that may resend (after a lost response, or an `outcome_unknown` error) sends one.
    let keyless = unique("keyless");
    for attempt in 1..=2 {
        let response = post_message(&demo, &keyless, message, None);
        assert_eq!(response.status, 200, "send {attempt}: {response:?}");
        assert_eq!(response.header("idempotent-replayed"), None, "{response:?}");
    }
    let view = demo.session(&keyless);
    assert_eq!(
        user_messages(&view),
        [message, message],
        "stored twice: {view}"
    );
}

/// `POST /sessions/{id}/messages` with `message`, and an `Idempotency-Key` when given.
fn post_message(demo: &Demo, id: &str, message: &str, key: Option<&str>) -> common::Response {
    let body = json!({ "message": message }).to_string();
    let headers: Vec<(&str, &str)> = key.map(|k| ("Idempotency-Key", k)).into_iter().collect();
    demo.request_with(
        "POST",
        &format!("/sessions/{id}/messages"),
        &headers,
        Some(&body),
    )
}

/// `POST /sessions/{id}/messages` after a Redis restart: a 503 (`unavailable`: nothing was
/// written) is sent again until [`RECOVERY_TIMEOUT`]; anything but 200 or 503 fails the test,
/// `outcome_unknown` in particular (the server is up: the store can always ask it).
fn say_after_restart(demo: &Demo, id: &str, message: &str) -> Value {
    let deadline = Instant::now() + RECOVERY_TIMEOUT;
    loop {
        let response = post_message(demo, id, message, None);
        match response.status {
            200 => return response.json(),
            503 => {
                let error = response.json();
                assert_eq!(
                    error["error"],
                    "unavailable",
                    "demo {}: {response:?}",
                    demo.name()
                );
                assert!(
                    Instant::now() < deadline,
                    "demo {} still unavailable {RECOVERY_TIMEOUT:?} after the restart: \
                     {response:?}",
                    demo.name()
                );
                thread::sleep(Duration::from_millis(100));
            }
            _ => panic!(
                "demo {} answered {message:?} with {} although Redis is up: {response:?}",
                demo.name(),
                response.status
            ),
        }
    }
}

/// The version of the session record under `key`, read on the server straight (no demo, no
/// proxy): its header's 20 digits at offset 164 (`session-redis/src/record.rs`).
fn stored_version(server: &redis_harness::RedisServer, key: &str) -> String {
    let digits = server
        .command(&["GETRANGE", key, "164", "183"])
        .unwrap_or_else(|e| panic!("GETRANGE {key}: {e}"));
    digits
        .trim()
        .parse::<u64>()
        .map(|v| v.to_string())
        .unwrap_or_else(|e| panic!("{key}: version {digits:?}: {e}"))
}
