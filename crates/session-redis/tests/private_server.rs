//! Tests on a redis-server of their own (started through redis-harness): command counts from
//! `INFO commandstats`, recovery after a server restart, credentials.
#![cfg(feature = "driver")]

mod common;

use std::{collections::BTreeMap, sync::Arc};

use bytes::Bytes;
use redis_harness::{RedisServer, ServerOptions, env::private_server as server};
use session_core::{
    Condition, Error, SessionId, SessionManager, SessionStore, Summary, Ttl, Write,
};
use session_redis::{ConnectionMode, RedisOptions, RedisStore};

/// One `modify` of a counter session, which must succeed.
async fn increment(counter: &SessionManager<u64>, id: &SessionId) {
    counter
        .modify(id, |n| *n += 1)
        .await
        .map(drop)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn id(s: &str) -> SessionId {
    SessionId::new(s).unwrap_or_else(|e| panic!("{e}"))
}

fn write(payload: &'static [u8], condition: Condition) -> Write {
    Write::new(Bytes::from_static(payload), condition)
        .with_summary(Summary::new().with("state", "new_problem"))
}

/// `cmdstat_<name>` calls since the last reset, without the harness' own INFO/CONFIG calls.
fn commandstats(server: &RedisServer) -> BTreeMap<String, u64> {
    let info = server
        .command(&["INFO", "commandstats"])
        .unwrap_or_else(|e| panic!("INFO: {e}"));
    info.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("cmdstat_")?;
            let (name, stats) = rest.split_once(':')?;
            let calls = stats
                .split(',')
                .find_map(|kv| kv.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        // `client|setinfo`: redis-rs sends it on connect to servers that report 7.2+ (Valkey).
        .filter(|(name, _)| {
            name != "info" && !name.starts_with("config") && !name.starts_with("client")
        })
        .collect()
}

fn reset_stats(server: &RedisServer) {
    server
        .command(&["CONFIG", "RESETSTAT"])
        .unwrap_or_else(|e| panic!("CONFIG RESETSTAT: {e}"));
}

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

async fn measure<F, Fut>(server: &RedisServer, what: &str, op: F) -> BTreeMap<String, u64>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    reset_stats(server);
    op().await;
    let stats = commandstats(server);
    eprintln!("commands for {what}: {stats:?}");
    stats
}

/// Commands per operation. The scripts' own calls (`getrange`, `rename`, `setrange`, and on
/// a refusal `unlink`, `get`, `pttl`) run inside the one `evalsha` round trip; everything
/// else is what the client sends.
async fn check_command_counts(mode: ConnectionMode, test: &str) {
    let Some(server) = server(test, ServerOptions::default()) else {
        return;
    };
    let options = RedisOptions::from_url(&server.url())
        .unwrap_or_else(|e| panic!("{e}"))
        .with_mode(mode);
    let store = RedisStore::connect(options)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let s = id("counted");

    let first = measure(&server, "first save (creates)", || async {
        store
            .save(&s, write(b"a", Condition::Any))
            .await
            .map(drop)
            .unwrap_or_else(|e| panic!("{e}"))
    })
    .await;
    // Staged by one SET ... PX as a new session; the update script reads the header
    // (GETRANGE, which finds no key) and renames the staged record into place. Over an
    // existing record (below) it also writes the header from offset 16 with SETRANGE. The
    // scripts were loaded when the store connected.
    assert_eq!(
        first,
        counts(&[("set", 1), ("evalsha", 1), ("getrange", 1), ("rename", 1)])
    );

    let save = measure(&server, "save (update)", || async {
        store
            .save(&s, write(b"b", Condition::IfVersion(1)))
            .await
            .map(drop)
            .unwrap_or_else(|e| panic!("{e}"))
    })
    .await;
    assert_eq!(
        save,
        counts(&[
            ("set", 1),
            ("evalsha", 1),
            ("getrange", 1),
            ("rename", 1),
            ("setrange", 1)
        ])
    );

    let load = measure(&server, "load", || async {
        assert!(
            store
                .load(&s)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .is_some()
        );
    })
    .await;
    assert_eq!(load, counts(&[("get", 1), ("pttl", 1)]));

    let manager = SessionManager::<u64>::new(Arc::new(store.clone()) as Arc<dyn SessionStore>);
    let c = id("counter");
    manager
        .get_or_create(&c, || 0)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let modify = measure(
        &server,
        "SessionManager::modify, this instance wrote last",
        || increment(&manager, &c),
    )
    .await;
    assert_eq!(
        modify,
        counts(&[("set", 1), ("evalsha", 1), ("getrange", 1), ("rename", 1)]),
        "one round trip from the local copy: the guard compares the token and renames"
    );

    let update = measure(
        &server,
        "SessionManager::update, this instance wrote last",
        || async {
            manager
                .update(&c, &100)
                .await
                .map(drop)
                .unwrap_or_else(|e| panic!("{e}"))
        },
    )
    .await;
    assert_eq!(
        update,
        counts(&[("set", 1), ("evalsha", 1), ("getrange", 1), ("rename", 1)]),
        "an update from the local copy takes the guard, not the update script"
    );

    let other = SessionManager::<u64>::new(Arc::new(store.clone()) as Arc<dyn SessionStore>);
    let first_sight = measure(&server, "SessionManager::modify, first sight", || {
        increment(&other, &c)
    })
    .await;
    assert_eq!(
        first_sight,
        counts(&[
            ("get", 1),
            ("pttl", 1),
            ("set", 1),
            ("evalsha", 1),
            ("getrange", 1),
            ("rename", 1)
        ]),
        "load, then one write"
    );

    // A third instance meets the session through get_or_create: one round trip (a create
    // that returns the existing record, no Lua), and the modify after it writes from that
    // copy in one more.
    let third = SessionManager::<u64>::new(Arc::new(store.clone()) as Arc<dyn SessionStore>);
    let met = measure(
        &server,
        "SessionManager::get_or_create, existing, first sight",
        || {
            let third = third.clone();
            let c = c.clone();
            async move {
                third
                    .get_or_create(&c, || 0)
                    .await
                    .map(drop)
                    .unwrap_or_else(|e| panic!("{e}"))
            }
        },
    )
    .await;
    assert_eq!(
        met,
        counts(&[
            ("set", 1),
            ("get", 1),
            ("pttl", 1),
            ("renamenx", 1),
            ("unlink", 1)
        ]),
        "one pipeline: stage, read, RENAMENX (refused), drop the staged record"
    );
    let after_met = measure(
        &server,
        "SessionManager::modify after get_or_create",
        || increment(&third, &c),
    )
    .await;
    assert_eq!(
        after_met,
        counts(&[("set", 1), ("evalsha", 1), ("getrange", 1), ("rename", 1)]),
        "the copy get_or_create brought back is the basis: one round trip"
    );
    let fresh = id("fresh");
    let created = measure(
        &server,
        "SessionManager::get_or_create, new session",
        || {
            let third = third.clone();
            let fresh = fresh.clone();
            async move {
                third
                    .get_or_create(&fresh, || 7)
                    .await
                    .map(drop)
                    .unwrap_or_else(|e| panic!("{e}"))
            }
        },
    )
    .await;
    assert_eq!(
        created,
        counts(&[
            ("set", 1),
            ("get", 1),
            ("pttl", 1),
            ("renamenx", 1),
            ("unlink", 1)
        ]),
        "a new session is one round trip and no script"
    );
    store.delete(&fresh).await.unwrap_or_else(|e| panic!("{e}"));

    let stale = measure(
        &server,
        "SessionManager::modify, another instance wrote last",
        || increment(&manager, &c),
    )
    .await;
    assert_eq!(
        stale,
        counts(&[
            ("set", 2),
            ("evalsha", 2),
            ("getrange", 2),
            ("unlink", 1),
            ("get", 1),
            ("pttl", 1),
            ("rename", 1)
        ]),
        "a refused write that returns the current record (and removes its staged record), \
         then the write"
    );

    // delete: one script call that checks its marker (`EXISTS`), removes the session and,
    // since it existed, leaves the marker (`SET ... PX`).
    let delete: &[(&str, u64)] = &[("evalsha", 1), ("exists", 1), ("unlink", 1), ("set", 1)];
    for (op, expected) in [
        ("exists", &[("exists", 1)][..]),
        ("touch", &[("pexpire", 1)][..]),
        ("delete", delete),
    ] {
        let stats = measure(&server, op, || async {
            let r = match op {
                "exists" => store.exists(&c).await,
                "touch" => store.touch(&c, Ttl::DEFAULT).await,
                _ => store.delete(&c).await,
            };
            assert!(r.unwrap_or_else(|e| panic!("{op}: {e}")));
        })
        .await;
        assert_eq!(stats, counts(expected), "{op}");
    }
    store.delete(&s).await.unwrap_or_else(|e| panic!("{e}"));

    for n in 0..100 {
        store
            .save(&id(&format!("listed-{n:03}")), write(b"x", Condition::Any))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let mut pages = 0;
    let list = measure(
        &server,
        "listing 100 sessions with list_page(limit 100)",
        || async {
            let mut cursor = None;
            let mut seen = 0;
            loop {
                let page = store
                    .list_page(cursor.as_ref(), 100)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                pages += 1;
                seen += page.sessions.len();
                match page.next {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            assert_eq!(seen, 100);
        },
    )
    .await;
    eprintln!("listing 100 sessions took {pages} page(s)");
    assert_eq!(list.get("getrange"), Some(&100));
    assert_eq!(list.get("pttl"), Some(&100));
    let scans = list.get("scan").copied().unwrap_or(0);
    // The deletes above left their markers (other keys, for a few seconds): SCAN's COUNT
    // counts them too, so one more step may be needed to find all 100.
    assert!(
        (1..=pages + 1).contains(&scans),
        "{scans} SCANs for {pages} pages"
    );
    assert_eq!(list.len(), 3, "only SCAN, GETRANGE and PTTL: {list:?}");
    let count = measure(&server, "count of 100", || async {
        assert_eq!(store.count().await.unwrap_or_else(|e| panic!("{e}")), 100);
    })
    .await;
    assert_eq!(count, counts(&[("scan", 1)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiplexed_operations_send_the_documented_commands() {
    check_command_counts(
        ConnectionMode::Multiplexed,
        "multiplexed_operations_send_the_documented_commands",
    )
    .await;
}

/// deadpool-redis' own recycle would add UNWATCH + PING to every checkout; ours adds nothing.
#[cfg(feature = "pool")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_operations_send_the_documented_commands_and_no_recycle_ping() {
    check_command_counts(
        common::pool(2),
        "pooled_operations_send_the_documented_commands_and_no_recycle_ping",
    )
    .await;
}

async fn check_restart_recovery(mode: ConnectionMode, test: &str) {
    let Some(mut server) = server(
        test,
        ServerOptions {
            appendonly: true,
            ..Default::default()
        },
    ) else {
        return;
    };
    let options = RedisOptions::from_url(&server.url())
        .unwrap_or_else(|e| panic!("{e}"))
        .with_mode(mode);
    let store = RedisStore::connect(options)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let s = id("survivor");
    store
        .save(&s, write(b"kept", Condition::Any))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    server.restart().unwrap_or_else(|e| panic!("restart: {e}"));
    // The connection the store holds died with the server: the read is retried once on a new
    // connection and succeeds on the first call.
    let rec = store
        .load(&s)
        .await
        .unwrap_or_else(|e| panic!("load right after a restart: {e}"))
        .unwrap_or_else(|| panic!("the session did not survive the restart (AOF)"));
    assert_eq!(&rec.payload[..], b"kept");
    store
        .save(&s, write(b"again", Condition::IfVersion(1)))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiplexed_reads_recover_on_the_first_call_after_a_server_restart() {
    check_restart_recovery(
        ConnectionMode::Multiplexed,
        "multiplexed_reads_recover_on_the_first_call_after_a_server_restart",
    )
    .await;
}

#[cfg(feature = "pool")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_reads_recover_on_the_first_call_after_a_server_restart() {
    check_restart_recovery(
        common::pool(2),
        "pooled_reads_recover_on_the_first_call_after_a_server_restart",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_is_unavailable_and_the_error_hides_the_password() {
    let Some(mut server) = server(
        "a_stopped_server_is_unavailable_and_the_error_hides_the_password",
        ServerOptions {
            password: Some("pw-not-for-logs".into()),
            ..Default::default()
        },
    ) else {
        return;
    };
    let url = server.url();
    let store = RedisStore::connect(RedisOptions::from_url(&url).unwrap_or_else(|e| panic!("{e}")))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    server.stop().unwrap_or_else(|e| panic!("stop: {e}"));
    for result in [
        store.load(&id("x")).await.map(drop),
        store.ping().await,
        RedisStore::connect(RedisOptions::from_url(&url).unwrap_or_else(|e| panic!("{e}")))
            .await
            .map(drop),
    ] {
        match result {
            Err(e @ Error::Unavailable { .. }) => {
                let text = format!("{e} {e:?}");
                assert!(!text.contains("pw-not-for-logs"), "{text}");
                assert!(
                    text.contains("127.0.0.1"),
                    "the error names the server: {text}"
                );
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_are_auth_errors() {
    let Some(server) = server(
        "refused_credentials_are_auth_errors",
        ServerOptions {
            password: Some("right-pw".into()),
            ..Default::default()
        },
    ) else {
        return;
    };
    let port = server.port();
    for (url, what) in [
        (
            format!("redis://:wrong-pw@127.0.0.1:{port}"),
            "wrong password",
        ),
        (format!("redis://127.0.0.1:{port}"), "no password (NOAUTH)"),
        (
            format!("redis://nobody:wrong-pw@127.0.0.1:{port}"),
            "unknown ACL user",
        ),
    ] {
        match RedisStore::connect(RedisOptions::from_url(&url).unwrap_or_else(|e| panic!("{e}")))
            .await
        {
            Err(e @ Error::Auth { .. }) => {
                assert!(!e.to_string().contains("wrong-pw"), "{what}: {e}");
            }
            other => panic!("{what}: expected Auth, got {other:?}"),
        }
    }
    // An ACL user without the right to run scripts: NOPERM on save is Auth too.
    server
        .command(&[
            "ACL",
            "SETUSER",
            "reader",
            "on",
            ">reader-pw",
            "~*",
            "+@read",
            "+ping",
            "+client",
        ])
        .unwrap_or_else(|e| panic!("ACL SETUSER: {e}"));
    let reader = RedisStore::connect(
        RedisOptions::from_url(&format!("redis://reader:reader-pw@127.0.0.1:{port}"))
            .unwrap_or_else(|e| panic!("{e}")),
    )
    .await
    .unwrap_or_else(|e| panic!("reader connect: {e}"));
    assert!(
        reader
            .load(&id("x"))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none()
    );
    match reader.save(&id("x"), write(b"a", Condition::Any)).await {
        Err(Error::Auth { .. }) => {}
        other => panic!("save without write rights: expected Auth, got {other:?}"),
    }
}
