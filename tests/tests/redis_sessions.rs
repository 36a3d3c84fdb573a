//! The scenarios on real Redis: two service instances, restarts of the service and of
//! redis-server, TTL expiry, what `redis-cli` sees, credentials, corrupt data.

use std::{sync::Arc, time::Duration};

use integration_tests::{
    Agent, connect, options_with_unique_prefix, port_and_db, redis_cli, run_redis_cli, unique,
    unique_id,
};
use redis_harness::ServerOptions;
use redis_harness::env::private_server;
use session_core::{Error, SessionManager, SessionStore, Summarize, Ttl};
use session_redis::{RedisOptions, RedisStore, RedisTarget};

fn agents(store: RedisStore) -> SessionManager<Agent> {
    SessionManager::builder(Arc::new(store) as Arc<dyn SessionStore>)
        .summarize(Agent::summary)
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_written_by_one_instance_are_read_by_another() {
    let Some(url) =
        redis_harness::env::redis_url("sessions_written_by_one_instance_are_read_by_another")
    else {
        return;
    };
    let options = options_with_unique_prefix(&url, "two-instances");
    // Two "instances" of the service: separate stores (connections) and managers.
    let first = agents(connect(options.clone()).await);
    let second = agents(connect(options).await);
    let id = unique_id("conversation");
    first
        .get_or_create(&id, Agent::new)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    first
        .modify(&id, |a| {
            a.state = "diagnosing".into();
            a.history.push("my printer is on fire".into());
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let seen = second
        .get(&id)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("the second instance does not see the session"));
    assert_eq!(seen.state, "diagnosing");
    assert_eq!(seen.history, ["my printer is on fire"]);

    // Both instances modify concurrently: no update is lost.
    let tasks: Vec<_> = [first.clone(), second.clone()]
        .into_iter()
        .map(|m| {
            let id = id.clone();
            tokio::spawn(async move {
                for _ in 0..25 {
                    m.modify(&id, |a| a.current_attempt += 1).await?;
                }
                Ok::<_, Error>(())
            })
        })
        .collect();
    for t in tasks {
        t.await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let after = first
        .get(&id)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("missing"));
    assert_eq!(after.current_attempt, 50);
    let listed = second.list().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0]
            .meta
            .summary
            .get("current_attempt")
            .and_then(|v| v.as_i64()),
        Some(50)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_survives_a_restart_of_the_service() {
    let Some(url) = redis_harness::env::redis_url("a_session_survives_a_restart_of_the_service")
    else {
        return;
    };
    let options = options_with_unique_prefix(&url, "service-restart");
    let id = unique_id("conversation");
    {
        let before = agents(connect(options.clone()).await);
        before
            .get_or_create(&id, Agent::new)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        before
            .modify(&id, |a| a.current_attempt = 2)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    } // the "service" stops: its manager, store and connection are gone
    let after = agents(connect(options).await);
    let agent = after
        .get(&id)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("the session did not survive the service restart"));
    assert_eq!(agent.current_attempt, 2);
    assert_eq!(agent.version(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_survives_a_restart_of_redis_with_aof() {
    let test = "a_session_survives_a_restart_of_redis_with_aof";
    let Some(mut server) = private_server(
        test,
        ServerOptions {
            appendonly: true,
            ..Default::default()
        },
    ) else {
        return;
    };
    let options = RedisOptions::from_url(&server.url()).unwrap_or_else(|e| panic!("{e}"));
    let running = agents(connect(options.clone()).await);
    let id = unique_id("conversation");
    running
        .get_or_create(&id, Agent::new)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    running
        .modify(&id, |a| a.state = "resolved".into())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    server.restart().unwrap_or_else(|e| panic!("restart: {e}"));
    // The running instance reconnects by itself (its first read is retried once) ...
    let seen = running
        .get(&id)
        .await
        .unwrap_or_else(|e| panic!("read after the Redis restart: {e}"))
        .unwrap_or_else(|| panic!("the session did not survive the Redis restart"));
    assert_eq!(seen.state, "resolved");
    // ... and a freshly started one reads it too.
    let fresh = agents(connect(options).await);
    let seen = fresh
        .get(&id)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("missing for a new instance"));
    assert_eq!((seen.state.as_str(), seen.version()), ("resolved", 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_with_a_one_second_ttl_is_gone_after_it() {
    let Some(url) =
        redis_harness::env::redis_url("a_session_with_a_one_second_ttl_is_gone_after_it")
    else {
        return;
    };
    let store = connect(options_with_unique_prefix(&url, "ttl")).await;
    let key_store = store.clone();
    let ttl = Ttl::from_secs(1).unwrap_or_else(|e| panic!("{e}"));
    let short: SessionManager<Agent> =
        SessionManager::builder(Arc::new(store) as Arc<dyn SessionStore>)
            .ttl(ttl)
            .build();
    let id = unique_id("short-lived");
    short
        .get_or_create(&id, Agent::new)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let loaded = short
        .get(&id)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("missing right after the write"));
    assert!(
        loaded.ttl().is_some_and(|t| t <= Duration::from_secs(1)),
        "{:?}",
        loaded.ttl()
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        short
            .get(&id)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none()
    );
    assert!(!short.exists(&id).await.unwrap_or_else(|e| panic!("{e}")));
    assert_eq!(short.count().await.unwrap_or_else(|e| panic!("{e}")), 0);
    if let Some(cli) = redis_cli("a_session_with_a_one_second_ttl_is_gone_after_it") {
        let (port, db) = port_and_db(&url);
        assert_eq!(
            run_redis_cli(&cli, port, db, &["EXISTS", &key_store.key_of(&id)]),
            "0"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_sees_the_session_key_with_a_ttl() {
    let test = "redis_cli_sees_the_session_key_with_a_ttl";
    let Some(url) = redis_harness::env::redis_url(test) else {
        return;
    };
    let Some(cli) = redis_cli(test) else {
        return;
    };
    // The default prefix, as production uses it; the id is unique to this run.
    let store = connect(RedisOptions::from_url(&url).unwrap_or_else(|e| panic!("{e}"))).await;
    let manager = agents(store.clone());
    let id = unique_id("user");
    manager
        .get_or_create(&id, Agent::new)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let key = format!("cql:session:{id}");
    assert_eq!(store.key_of(&id), key);
    let (port, db) = port_and_db(&url);
    let found = run_redis_cli(&cli, port, db, &["--scan", "--pattern", &key]);
    assert_eq!(found, key, "redis-cli --scan does not find {key}");
    assert_eq!(run_redis_cli(&cli, port, db, &["TYPE", &key]), "string");
    let ttl: i64 = run_redis_cli(&cli, port, db, &["TTL", &key])
        .parse()
        .unwrap_or_else(|e| panic!("TTL: {e}"));
    assert!((3590..=3600).contains(&ttl), "TTL {ttl}");
    // The record's header (session-redis/src/record.rs): 16 hex digits of the write token
    // first, the magic at 160, the version at 164.
    let token = run_redis_cli(&cli, port, db, &["GETRANGE", &key, "0", "15"]);
    assert!(
        token.len() == 16 && token.bytes().all(|b| b.is_ascii_hexdigit()),
        "token {token:?}"
    );
    assert_eq!(
        run_redis_cli(&cli, port, db, &["GETRANGE", &key, "160", "183"]),
        "sr1;00000000000000000001"
    );
    manager.delete(&id).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run_redis_cli(&cli, port, db, &["EXISTS", &key]), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_an_auth_error_not_unavailable() {
    let Some(server) = private_server(
        "a_wrong_password_is_an_auth_error_not_unavailable",
        ServerOptions {
            password: Some("correct horse".into()),
            ..Default::default()
        },
    ) else {
        return;
    };
    let wrong = format!("redis://:battery-staple@127.0.0.1:{}", server.port());
    match RedisStore::connect(RedisOptions::from_url(&wrong).unwrap_or_else(|e| panic!("{e}")))
        .await
    {
        Err(e @ Error::Auth { .. }) => {
            let text = format!("{e} / {e:?}");
            assert!(!text.contains("battery-staple"), "{text}");
            assert!(e.is_backend_failure());
        }
        other => panic!("expected Error::Auth, got {other:?}"),
    }
    // The right password, given as parts instead of a URL, works.
    let target = RedisTarget::new("127.0.0.1", server.port())
        .unwrap_or_else(|e| panic!("{e}"))
        .with_password("correct horse");
    let store = connect(RedisOptions::new(target)).await;
    store.ping().await.unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_with_only_the_commands_the_store_needs_works() {
    let Some(server) = private_server(
        "an_acl_user_with_only_the_commands_the_store_needs_works",
        ServerOptions::default(),
    ) else {
        return;
    };
    // The least a RedisStore needs: its keys, and these commands (the script's own calls
    // included). redis-rs also sends `CLIENT SETINFO` when it connects (Redis 7.2+) and ignores
    // a refusal, so the user needs no `client` rights.
    let mut acl = vec![
        "ACL",
        "SETUSER",
        "sessions",
        "on",
        ">app-secret",
        "resetkeys",
        "~cql:session:*",
        // The write path stages each new record under `{<session key>}~w<nonce>`, and a
        // delete leaves its marker under `{<session key>}~d<nonce>`.
        "~{cql:session:*",
        "-@all",
        "+ping",
        "+select",
        "+evalsha",
        "+script|load",
        "+get",
        "+getrange",
        "+setrange",
        "+strlen",
        "+rename",
        "+renamenx",
        "+pttl",
        "+scan",
        "+pexpire",
        "+unlink",
        "+exists",
        // Reading (and fencing) a session still stored as a hash of the earlier layouts.
        "+hmget",
        "+hget",
        "+hset",
        "+hstrlen",
        // Staging every write, and the delete script's marker of the call.
        "+set",
    ];
    server
        .command(&acl)
        .unwrap_or_else(|e| panic!("ACL SETUSER: {e}"));
    acl.clear();
    let port = server.port();
    let url = format!("redis://sessions:app-secret@127.0.0.1:{port}");
    let via_url =
        agents(connect(RedisOptions::from_url(&url).unwrap_or_else(|e| panic!("{e}"))).await);
    let target = RedisTarget::new("127.0.0.1", port)
        .unwrap_or_else(|e| panic!("{e}"))
        .with_username("sessions")
        .with_password("app-secret");
    let via_parts = agents(connect(RedisOptions::new(target)).await);
    let id = unique_id("acl");
    via_url
        .get_or_create(&id, Agent::new)
        .await
        .unwrap_or_else(|e| panic!("create as ACL user: {e}"));
    via_parts
        .modify(&id, |a| a.current_attempt += 1)
        .await
        .unwrap_or_else(|e| panic!("modify as ACL user: {e}"));
    assert_eq!(
        via_url.list().await.unwrap_or_else(|e| panic!("{e}")).len(),
        1
    );
    assert_eq!(via_parts.count().await.unwrap_or_else(|e| panic!("{e}")), 1);
    assert!(via_url.touch(&id).await.unwrap_or_else(|e| panic!("{e}")));
    assert!(
        via_parts
            .delete(&id)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    );
    // The same user with a wrong password: Auth.
    let wrong = format!("redis://sessions:nope@127.0.0.1:{port}");
    match RedisStore::connect(RedisOptions::from_url(&wrong).unwrap_or_else(|e| panic!("{e}")))
        .await
    {
        Err(Error::Auth { .. }) => {}
        other => panic!("expected Error::Auth, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_values_written_with_redis_cli_are_corrupt_and_do_not_break_list() {
    let test = "corrupt_values_written_with_redis_cli_are_corrupt_and_do_not_break_list";
    let Some(url) = redis_harness::env::redis_url(test) else {
        return;
    };
    let Some(cli) = redis_cli(test) else {
        return;
    };
    let prefix = format!("itest:{}:", unique("corrupt"));
    let options = RedisOptions::from_url(&url)
        .and_then(|o| o.with_key_prefix(prefix.clone()))
        .unwrap_or_else(|e| panic!("{e}"));
    let store = connect(options).await;
    let manager = agents(store.clone());
    let good = unique_id("good");
    manager
        .get_or_create(&good, Agent::new)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (port, db) = port_and_db(&url);
    let cli_run = |args: &[&str]| run_redis_cli(&cli, port, db, args);
    let k = |name: &str| format!("{prefix}{name}");
    cli_run(&["SET", &k("a-string"), "not a session"]);
    cli_run(&["RPUSH", &k("a-list"), "x", "y"]);
    cli_run(&[
        "HSET",
        &k("garbage-payload"),
        "d",
        "\u{1}\u{2}garbage",
        "m",
        "junk",
        "v",
        "1",
    ]);
    cli_run(&["HSET", &k("bad-version"), "d", "x", "v", "seven"]);
    cli_run(&["HSET", &k("no-payload"), "v", "3"]);
    // A key under the prefix that is no session id at all: skipped by listings.
    cli_run(&["SET", &k("not an id"), "x"]);

    let corrupt = [
        "a-string",
        "a-list",
        "garbage-payload",
        "bad-version",
        "no-payload",
    ];
    for name in corrupt {
        let id = session_core::SessionId::new(name).unwrap_or_else(|e| panic!("{e}"));
        match manager.get(&id).await {
            Err(Error::Corrupt { id: got, .. }) => assert_eq!(got, id),
            other => panic!("{name}: expected Corrupt, got {other:?}"),
        }
    }
    // An unconditional write does not clobber a key of another type.
    let string_id = session_core::SessionId::new("a-string").unwrap_or_else(|e| panic!("{e}"));
    match manager.update(&string_id, &Agent::new()).await {
        Err(Error::Corrupt { .. }) => {}
        other => panic!("update over a STRING: expected Corrupt, got {other:?}"),
    }
    assert_eq!(cli_run(&["GET", &k("a-string")]), "not a session");

    // Listing works and shows every session key, the corrupt ones included.
    let listed = manager.list().await.unwrap_or_else(|e| panic!("list: {e}"));
    let mut names: Vec<String> = listed.iter().map(|i| i.id.to_string()).collect();
    names.sort();
    let mut expected: Vec<String> = corrupt.iter().map(|s| (*s).to_owned()).collect();
    expected.push(good.to_string());
    expected.sort();
    assert_eq!(names, expected);
    let good_info = listed
        .iter()
        .find(|i| i.id == good)
        .unwrap_or_else(|| panic!("good session not listed"));
    assert_eq!(good_info.version, 1);
    assert_eq!(
        good_info.meta.summary.get("state").and_then(|v| v.as_str()),
        Some("new_problem")
    );
    assert_eq!(manager.count().await.unwrap_or_else(|e| panic!("{e}")), 6);
    // The good session is untouched, and corrupt ones can be deleted.
    assert!(
        manager
            .get(&good)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_some()
    );
    for name in corrupt {
        let id = session_core::SessionId::new(name).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            manager.delete(&id).await.unwrap_or_else(|e| panic!("{e}")),
            "{name}"
        );
    }
    manager
        .delete(&good)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    cli_run(&["DEL", &k("not an id")]);
}
