//! Bounded reads (`RedisOptions::with_read_limit`) on a real Redis of the test's own: a stored
//! payload over the limit is refused as `TooLarge` and its bytes never leave the server.
#![cfg(feature = "driver")]

use bytes::Bytes;
use redis_harness::{RedisServer, ServerOptions, env::private_server};
use session_core::{Condition, Error, SessionId, SessionStore, Write};
use session_redis::{RedisOptions, RedisStore, RedisTarget};

/// The server's `total_net_output_bytes`: every byte it has sent to clients.
fn output_bytes(server: &RedisServer) -> u64 {
    let info = server
        .command(&["INFO", "stats"])
        .unwrap_or_else(|e| panic!("INFO: {e}"));
    info.lines()
        .find_map(|l| l.strip_prefix("total_net_output_bytes:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no total_net_output_bytes in {info}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_over_the_read_limit_is_refused_without_leaving_the_server() {
    let Some(server) = private_server(
        "a_payload_over_the_read_limit_is_refused_without_leaving_the_server",
        ServerOptions::default(),
    ) else {
        return;
    };
    let target = RedisTarget::parse(&format!("redis://127.0.0.1:{}", server.port()))
        .unwrap_or_else(|e| panic!("{e}"));
    let connect = |options: RedisOptions| async move {
        RedisStore::connect(options)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"))
    };
    let plain = connect(RedisOptions::new(target.clone())).await;
    let bounded = connect(RedisOptions::new(target).with_read_limit(4096)).await;
    let small = SessionId::new("small").unwrap_or_else(|e| panic!("{e}"));
    let huge = SessionId::new("huge").unwrap_or_else(|e| panic!("{e}"));
    // Written by a store that does not check sizes (the codec does): 8 MB under the key.
    for (id, len) in [(&small, 100), (&huge, 8 << 20)] {
        plain
            .save(id, Write::new(Bytes::from(vec![b'x'; len]), Condition::Any))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let loaded = bounded
        .load(&small)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("small is there"));
    assert_eq!(loaded.payload.len(), 100);
    assert_eq!(loaded.version, 1);

    let before = output_bytes(&server);
    match bounded.load(&huge).await {
        Err(Error::TooLarge { id, size, limit }) => {
            assert_eq!(id, huge);
            assert_eq!(size, 8 << 20);
            assert_eq!(limit, 4096);
        }
        other => panic!("an 8 MB payload under a 4 KB read limit: {other:?}"),
    }
    let sent = output_bytes(&server) - before;
    // The refusal, and the INFO reply itself: nowhere near the 8 MB.
    assert!(
        sent < 16 * 1024,
        "the server sent {sent} bytes for a refused load"
    );
    // The session is untouched; a missing one is still None.
    assert!(
        plain
            .load(&huge)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_some()
    );
    let missing = SessionId::new("missing").unwrap_or_else(|e| panic!("{e}"));
    assert!(
        bounded
            .load(&missing)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none()
    );
}
