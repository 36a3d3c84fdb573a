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

/// Rewrites the session `key` (a string record the store wrote) as a hash of the earlier
/// layouts, with fields `d`, `m` and `v` only (no creation time `c`, no tokens `t`).
async fn as_legacy_hash(con: &mut redis::aio::MultiplexedConnection, key: &str, version: u64) {
    as_hash(con, key, version, &[]).await;
}

/// Rewrites the session `key` (a string record the store wrote) as a hash of the earlier
/// layouts: fields `d`, `m`, `v`, and `extra` (`c`, `t` ...).
async fn as_hash(
    con: &mut redis::aio::MultiplexedConnection,
    key: &str,
    version: u64,
    extra: &[(&str, &[u8])],
) {
    let value = match raw_cmd(con, &["GET", key]).await {
        redis::Value::BulkString(v) => v,
        other => panic!("GET {key}: {other:?}"),
    };
    // The record's header: the meta's length at 200..210, the meta from 210 (record.rs).
    let meta_len: usize = std::str::from_utf8(&value[200..210])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no meta length in {key}"));
    let (meta, payload) = value[210..].split_at(meta_len);
    raw_cmd(con, &["DEL", key]).await;
    let mut hset = redis::cmd("HSET");
    hset.arg(key)
        .arg("d")
        .arg(payload)
        .arg("m")
        .arg(meta)
        .arg("v")
        .arg(version);
    for (field, value) in extra {
        hset.arg(*field).arg(*value);
    }
    let _: redis::Value = hset
        .query_async(con)
        .await
        .unwrap_or_else(|e| panic!("HSET {key}: {e}"));
    raw_cmd(con, &["PEXPIRE", key, "3600000"]).await;
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
    // A record of the first layout (a hash written before `c` and `t` existed): reads accept
    // it (created_at falls back to updated_at), so conditional writes must accept it too.
    as_legacy_hash(&mut raw, &store.key_of(&legacy), 1).await;

    let fresh: SessionManager<Vec<String>> =
        SessionManager::new(Arc::new(store.clone()) as Arc<dyn SessionStore>);
    let modified = fresh
        .modify(&legacy, |h| h.push("one".into()))
        .await
        .unwrap_or_else(|e| panic!("modify of a record without c: {e}"));
    assert_eq!(modified.version(), 2);
    assert_eq!(&**modified, &["one".to_owned()]);

    // The write replaced the hash with a string record.
    assert_eq!(
        raw_cmd(&mut raw, &["TYPE", &store.key_of(&legacy)]).await,
        redis::Value::SimpleString("string".to_owned())
    );
    as_legacy_hash(&mut raw, &store.key_of(&legacy), 2).await;
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
    // The write gave the record a creation time and tokens: from now on it has an identity.
    assert_eq!(back.meta().created_at, loaded.meta().created_at);
    assert!(back.token().is_some());
    let _ = store.delete(&legacy).await;
    // A stale save is still refused.
    match fresh.save(&mut loaded).await {
        Err(Error::Conflict { .. }) => {}
        other => panic!("save of a deleted session: {other:?}"),
    }
}

/// A session stored by an earlier version of the crate (a hash with `d m v c t`) is read,
/// listed and counted as it is, bounded reads take it, and its next write (the guard, from a
/// copy read off the hash) replaces it with a string record.
#[tokio::test]
async fn a_session_of_the_hash_layout_reads_lists_and_becomes_a_string_on_its_next_write() {
    let Some((store, mut raw)) = setup(
        "a_session_of_the_hash_layout_reads_lists_and_becomes_a_string_on_its_next_write",
        6,
    )
    .await
    else {
        return;
    };
    let manager: SessionManager<Vec<String>> =
        SessionManager::new(Arc::new(store.clone()) as Arc<dyn SessionStore>);
    let old = id("hash-layout");
    manager
        .update(&old, &vec!["from the hash".to_owned()])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let key = store.key_of(&old);
    let tokens = b"00000000000000aa00000000000000bb";
    as_hash(&mut raw, &key, 4, &[("c", b"1700000000000"), ("t", tokens)]).await;

    let fresh: SessionManager<Vec<String>> =
        SessionManager::new(Arc::new(store.clone()) as Arc<dyn SessionStore>);
    let read = fresh
        .get(&old)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("the hash did not read"));
    assert_eq!(&**read, &["from the hash".to_owned()]);
    assert_eq!(read.version(), 4);
    assert_eq!(read.token().map(|t| t.as_u64()), Some(0xaa));
    assert_eq!(read.meta().created_at.as_millis(), 1_700_000_000_000);

    let page = store
        .list_page(None, 10)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let listed: Vec<_> = page.sessions.iter().filter(|i| i.id == old).collect();
    assert_eq!(listed.len(), 1, "{:?}", page.sessions);
    assert_eq!(listed[0].version, 4);
    assert!(store.count().await.unwrap_or_else(|e| panic!("{e}")) >= 1);
    let url = redis_harness::env::redis_url("a_session_of_the_hash_layout (bounded)")
        .unwrap_or_else(|| panic!("the test server went away"));
    let bounded = RedisStore::connect(
        common::options(&url, 6, "script")
            .with_key_prefix(store.key_prefix().to_owned())
            .unwrap_or_else(|e| panic!("{e}"))
            .with_read_limit(1 << 20),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let record = bounded
        .load(&old)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("the bounded read missed the hash"));
    assert_eq!(record.version, 4);

    // The guard compares the hash's head token, and the rename makes it a string.
    let modified = fresh
        .modify(&old, |m| m.push("and now a string".into()))
        .await
        .unwrap_or_else(|e| panic!("modify of a hash record: {e}"));
    assert_eq!(modified.version(), 5);
    assert_eq!(
        raw_cmd(&mut raw, &["TYPE", &key]).await,
        redis::Value::SimpleString("string".to_owned())
    );
    let back = manager
        .get(&old)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("gone"));
    assert_eq!(back.version(), 5);
    assert_eq!(back.meta().created_at.as_millis(), 1_700_000_000_000);
    assert_eq!(
        &**back,
        &["from the hash".to_owned(), "and now a string".to_owned()]
    );
    // The tokens carried over: the hash's head is one write back.
    assert_eq!(
        modified.token().map(|t| t.as_u64()),
        back.token().map(|t| t.as_u64())
    );
    let _ = store.delete(&old).await;
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
    // 2^53: Lua numbers are doubles, so 2^53 + 1 is 2^53 again. In a hash of the earlier
    // layouts ...
    let at_limit = id("at-limit");
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
    // ... and in a string record (the version at offset 164, 20 digits).
    for (name, version) in [
        ("s-at-limit", "00009007199254740992"),
        ("s-huge", "99999999999999999999"),
    ] {
        let s = id(name);
        store
            .write(&s, write(session_core::Condition::Any))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        raw_cmd(&mut raw, &["SETRANGE", &key_of(&s), "164", version]).await;
        let before = raw_cmd(&mut raw, &["GET", &key_of(&s)]).await;
        match store.write(&s, write(session_core::Condition::Any)).await {
            Err(Error::Corrupt { id: got, .. }) => assert_eq!(got, s),
            other => panic!("write at version {version}: expected Corrupt, got {other:?}"),
        }
        assert_eq!(
            raw_cmd(&mut raw, &["GET", &key_of(&s)]).await,
            before,
            "{s}: written"
        );
        let _ = store.delete(&s).await;
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
    // modify goes to the guard script): a plain string, then a list.
    let key = store.key_of(&s);
    for (foreign, why) in [
        ("string", "not a session record"),
        ("list", "another Redis type"),
    ] {
        let _ = raw_cmd(&mut raw, &["DEL", &key]).await;
        if foreign == "string" {
            raw_cmd(&mut raw, &["SET", &key, "not a session"]).await;
        } else {
            raw_cmd(&mut raw, &["RPUSH", &key, "not a session"]).await;
        }
        match manager.modify(&s, |m| m.push("x".into())).await {
            Err(Error::Corrupt { id: got, reason }) => {
                assert_eq!(got, s);
                assert!(reason.contains(why), "{foreign}: {reason}");
            }
            other => panic!("modify over a {foreign} key: expected Corrupt, got {other:?}"),
        }
        match manager.update(&s, &vec!["y".to_owned()]).await {
            Err(Error::Corrupt { .. }) => {}
            other => panic!("update over a {foreign} key: expected Corrupt, got {other:?}"),
        }
        let now = if foreign == "string" {
            raw_cmd(&mut raw, &["GET", &key]).await
        } else {
            raw_cmd(&mut raw, &["LINDEX", &key, "0"]).await
        };
        assert_eq!(
            now,
            redis::Value::BulkString(b"not a session".to_vec()),
            "a refused write changed the foreign {foreign}"
        );
        let pattern = format!("{{{key}}}~w*");
        let left = raw_cmd(&mut raw, &["SCAN", "0", "MATCH", &pattern, "COUNT", "1000"]).await;
        match left {
            redis::Value::Array(parts) => assert_eq!(
                parts.get(1),
                Some(&redis::Value::Array(vec![])),
                "staged records left behind: {parts:?}"
            ),
            other => panic!("SCAN: {other:?}"),
        }
    }
    let _ = raw_cmd(&mut raw, &["DEL", &key]).await;
}
