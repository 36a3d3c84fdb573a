//! The write script on records it did not write itself (by hand, or by an older layout): the
//! conditions still mean what they say, and nothing is written behind an error.
#![cfg(feature = "driver")]

mod common;

use std::sync::Arc;

use session_core::{Error, SessionId, SessionManager, SessionStore};
use session_redis::{RedisOptions, RedisStore, redis};

fn id(s: &str) -> SessionId {
    SessionId::new(s).unwrap_or_else(|e| panic!("{e}"))
}

async fn setup(test: &str, db: u32) -> Option<(RedisStore, redis::aio::MultiplexedConnection)> {
    let url = redis_harness::env::redis_url(test)?;
    let options: RedisOptions = common::options(&url, db, "script");
    let raw = options
        .client()
        .unwrap_or_else(|e| panic!("{e}"))
        .get_multiplexed_async_connection_with_config(&options.connection_config())
        .await
        .unwrap_or_else(|e| panic!("raw connection: {e}"));
    let store = RedisStore::connect(options)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    Some((store, raw))
}

async fn raw_cmd(con: &mut redis::aio::MultiplexedConnection, args: &[&str]) -> redis::Value {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query_async(con)
        .await
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

#[tokio::test]
async fn a_session_without_a_creation_time_can_still_be_modified_and_saved() {
    let Some((store, mut raw)) = setup(
        "a_session_without_a_creation_time_can_still_be_modified_and_saved",
        5,
    )
    .await
    else {
        return;
    };
    let manager: SessionManager<Vec<String>> =
        SessionManager::new(Arc::new(store.clone()) as Arc<dyn SessionStore>);
    let legacy = id("legacy");
    manager
        .get_or_create(&legacy, Vec::new)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // A record written by hand or before `c` existed: reads accept it (created_at falls back
    // to updated_at), so conditional writes must accept it too.
    raw_cmd(&mut raw, &["HDEL", &store.key_of(&legacy), "c"]).await;

    let fresh: SessionManager<Vec<String>> =
        SessionManager::new(Arc::new(store.clone()) as Arc<dyn SessionStore>);
    let modified = fresh
        .modify(&legacy, |h| h.push("one".into()))
        .await
        .unwrap_or_else(|e| panic!("modify of a record without c: {e}"));
    assert_eq!(modified.version(), 2);
    assert_eq!(&**modified, &["one".to_owned()]);

    raw_cmd(&mut raw, &["HDEL", &store.key_of(&legacy), "c"]).await;
    let mut loaded = fresh
        .get(&legacy)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("gone"));
    loaded.push("two".into());
    fresh
        .save(&mut loaded)
        .await
        .unwrap_or_else(|e| panic!("save of a record without c: {e}"));
    let back = fresh
        .get(&legacy)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("gone"));
    assert_eq!(back.version(), 3);
    assert_eq!(&**back, &["one".to_owned(), "two".to_owned()]);
    // The write gave the record a creation time: from now on it has an identity.
    assert_eq!(back.meta().created_at, loaded.meta().created_at);
    assert!(matches!(
        raw_cmd(&mut raw, &["HEXISTS", &store.key_of(&legacy), "c"]).await,
        redis::Value::Int(1)
    ));
    let _ = store.delete(&legacy).await;
    // A stale save is still refused.
    match fresh.save(&mut loaded).await {
        Err(Error::Conflict { .. }) => {}
        other => panic!("save of a deleted session: {other:?}"),
    }
}

#[tokio::test]
async fn a_version_lua_cannot_increment_exactly_is_corrupt_and_nothing_is_written() {
    let Some((store, mut raw)) = setup(
        "a_version_lua_cannot_increment_exactly_is_corrupt_and_nothing_is_written",
        5,
    )
    .await
    else {
        return;
    };
    let write = |condition| session_core::Write::new(bytes::Bytes::from_static(b"new"), condition);
    let key_of = |id: &SessionId| store.key_of(id);
    // 2^53: Lua numbers are doubles, so 2^53 + 1 is 2^53 again.
    let at_limit = id("at-limit");
    store
        .write(&at_limit, write(session_core::Condition::Any))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    raw_cmd(
        &mut raw,
        &[
            "HSET",
            &key_of(&at_limit),
            "v",
            "9007199254740992",
            "d",
            "old",
        ],
    )
    .await;
    let cas = session_core::Condition::IfVersion(9_007_199_254_740_992);
    match store.write(&at_limit, write(cas)).await {
        Err(Error::Corrupt { id: got, .. }) => assert_eq!(got, at_limit),
        // Before: written, and the version did not grow, so a second writer holding the same
        // version would be let through too (a lost update).
        other => panic!("write at version 2^53: expected Corrupt, got {other:?}"),
    }
    // Far beyond: the script wrote, then its reply did not parse (a Backend error for a write
    // that happened).
    let huge = id("huge");
    store
        .write(&huge, write(session_core::Condition::Any))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    raw_cmd(
        &mut raw,
        &[
            "HSET",
            &key_of(&huge),
            "v",
            "99999999999999999999999",
            "d",
            "old",
        ],
    )
    .await;
    match store
        .write(&huge, write(session_core::Condition::Any))
        .await
    {
        Err(Error::Corrupt { id: got, .. }) => assert_eq!(got, huge),
        other => panic!("write at a huge version: expected Corrupt, got {other:?}"),
    }
    for id in [&at_limit, &huge] {
        let d = raw_cmd(&mut raw, &["HGET", &key_of(id), "d"]).await;
        assert_eq!(
            d,
            redis::Value::BulkString(b"old".to_vec()),
            "{id}: written"
        );
        let _ = store.delete(id).await;
    }
}

/// A key of another type under a session key: every write path refuses it as corrupt, leaves
/// the foreign value as it was, and leaves no staged record behind.
#[tokio::test]
async fn a_key_of_another_type_is_corrupt_for_every_write_and_nothing_is_left_behind() {
    let Some((store, mut raw)) = setup(
        "a_key_of_another_type_is_corrupt_for_every_write_and_nothing_is_left_behind",
        5,
    )
    .await
    else {
        return;
    };
    let manager: SessionManager<Vec<String>> =
        SessionManager::new(Arc::new(store.clone()) as Arc<dyn SessionStore>);
    let s = id("foreign");
    manager
        .get_or_create(&s, Vec::new)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Someone else's data replaces the session (the manager still holds a copy: its next
    // modify goes to the guard script).
    raw_cmd(&mut raw, &["SET", &store.key_of(&s), "not a session"]).await;
    match manager.modify(&s, |m| m.push("x".into())).await {
        Err(Error::Corrupt { id: got, reason }) => {
            assert_eq!(got, s);
            assert!(reason.contains("another Redis type"), "{reason}");
        }
        other => panic!("modify over a string key: expected Corrupt, got {other:?}"),
    }
    match manager.update(&s, &vec!["y".to_owned()]).await {
        Err(Error::Corrupt { .. }) => {}
        other => panic!("update over a string key: expected Corrupt, got {other:?}"),
    }
    assert_eq!(
        raw_cmd(&mut raw, &["GET", &store.key_of(&s)]).await,
        redis::Value::BulkString(b"not a session".to_vec()),
        "a refused write changed the foreign value"
    );
    let pattern = format!("{{{}}}~w*", store.key_of(&s));
    let left = raw_cmd(&mut raw, &["SCAN", "0", "MATCH", &pattern, "COUNT", "1000"]).await;
    match left {
        redis::Value::Array(parts) => assert_eq!(
            parts.get(1),
            Some(&redis::Value::Array(vec![])),
            "staged records left behind: {parts:?}"
        ),
        other => panic!("SCAN: {other:?}"),
    }
    let _ = raw_cmd(&mut raw, &["DEL", &store.key_of(&s)]).await;
}
