//! `FailoverStore` over a memory primary whose outages the test switches on and off: the
//! run-time fallback's rules (what switches it, what it serves, how it writes back, what it
//! does with conflicts and bounds). The same store over a real redis-server killed and
//! restarted is tested in `tests/tests/failover_redis.rs`.

mod common;

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use bytes::Bytes;
use common::{DOWN, LOSE_REPLIES, Primary, REFUSES, UP};
use session_core::{
    Condition, Error, FailoverMode, FailoverStore, Resolution, SessionId, SessionManager,
    SessionStore, Write, WriteOutcome,
};
use session_memory::MemoryStore;

fn id(s: &str) -> SessionId {
    SessionId::new(s).unwrap()
}

/// A failover store whose probe waits long enough that the tests decide when it recovers.
fn failover(primary: &Primary) -> FailoverStore {
    FailoverStore::builder(primary.store())
        .probe_backoff(Duration::from_secs(3600), Duration::from_secs(3600))
        .build()
}

fn manager(store: &FailoverStore) -> SessionManager<Vec<String>> {
    SessionManager::new(Arc::new(store.clone()))
}

async fn stored(primary: &Primary, id: &SessionId) -> Option<Vec<String>> {
    let record = primary.inner.load(id).await.unwrap()?;
    Some(
        session_core::Codec::default()
            .decode(id, &record.payload)
            .unwrap(),
    )
}

#[tokio::test]
async fn conformance_on_a_healthy_primary() {
    session_core::testing::run_conformance(|| async {
        Arc::new(FailoverStore::new(Arc::new(MemoryStore::new()))) as Arc<dyn SessionStore>
    })
    .await;
}

#[tokio::test]
async fn conformance_while_serving_from_memory() {
    // The primary never connects: every check runs on the fallback alone.
    session_core::testing::run_conformance(|| async {
        let store = FailoverStore::connecting("redis", "not reachable in this test", || async {
            Err(Error::Unavailable {
                backend: "redis",
                reason: "connection refused".into(),
                source: None,
            })
        })
        .probe_backoff(Duration::from_secs(3600), Duration::from_secs(3600))
        .build();
        assert_eq!(store.status().mode, FailoverMode::Fallback);
        Arc::new(store) as Arc<dyn SessionStore>
    })
    .await;
}

#[tokio::test]
async fn an_outage_is_served_from_the_near_copy_and_written_back_with_the_same_versions() {
    let primary = Primary::new();
    let store = failover(&primary);
    let agents = manager(&store);
    let a = id("a");
    agents.get_or_create(&a, Vec::new).await.unwrap();
    agents
        .modify(&a, |h| h.push("before".into()))
        .await
        .unwrap();

    primary.set(DOWN);
    // The first call meets the outage and is answered from memory.
    let during = agents
        .modify(&a, |h| h.push("during 1".into()))
        .await
        .unwrap();
    assert_eq!(during.version(), 3);
    assert_eq!(store.status().mode, FailoverMode::Fallback);
    assert_eq!(store.backend(), "memory");
    let during = agents
        .modify(&a, |h| h.push("during 2".into()))
        .await
        .unwrap();
    assert_eq!(during.version(), 4);
    assert_eq!(agents.get(&a).await.unwrap().unwrap().value().len(), 3);
    assert_eq!(store.status().dirty_sessions, 1);

    // Still down: recovery waits.
    assert!(!store.recover_now().await);
    primary.set(UP);
    assert!(store.recover_now().await);
    let status = store.status();
    assert_eq!(status.mode, FailoverMode::Primary);
    assert_eq!((status.dirty_sessions, status.written_back), (0, 1));
    assert_eq!(status.activations, 1);
    assert_eq!(status.recoveries, 1);
    assert_eq!(
        stored(&primary, &a).await.unwrap(),
        ["before", "during 1", "during 2"]
    );
    // The copies made during the outage stay valid bases: the next modify is not refused
    // (the memory primary counts its own versions).
    let record = primary.inner.load(&a).await.unwrap().unwrap();
    assert_eq!(record.token(), during.token());
    let after = agents.modify(&a, |h| h.push("after".into())).await.unwrap();
    assert_eq!(after.len(), 4);
    assert_eq!(store.status().conflicts, 0);
}

#[tokio::test]
async fn refusals_of_a_healthy_primary_never_switch() {
    let primary = Primary::new();
    let store = failover(&primary);
    let agents = manager(&store);
    primary.set(REFUSES);
    match agents.get_or_create(&id("a"), Vec::new).await {
        Err(Error::Auth { .. }) => {}
        other => panic!("expected Auth, got {other:?}"),
    }
    assert_eq!(store.status().mode, FailoverMode::Primary);
    primary.set(UP);
    // Conflicts and missing sessions are answers too.
    store
        .save(
            &id("b"),
            Write::new(Bytes::from_static(b"x"), Condition::IfAbsent),
        )
        .await
        .unwrap();
    assert!(matches!(
        store
            .save(
                &id("b"),
                Write::new(Bytes::from_static(b"y"), Condition::IfAbsent)
            )
            .await,
        Err(Error::Conflict { .. })
    ));
    assert!(store.load(&id("nobody")).await.unwrap().is_none());
    assert_eq!(store.status().mode, FailoverMode::Primary);
    assert_eq!(store.status().activations, 0);
}

#[tokio::test]
async fn a_write_whose_outcome_is_unknown_is_kept_and_recognised_if_it_landed() {
    let primary = Primary::new();
    let store = failover(&primary);
    let agents = manager(&store);
    let a = id("a");
    agents.get_or_create(&a, Vec::new).await.unwrap();
    primary.set(LOSE_REPLIES);
    // Applied in the primary, reply lost: the caller gets success from the fallback, with
    // the same token.
    let written = agents.modify(&a, |h| h.push("once".into())).await.unwrap();
    assert_eq!(written.version(), 2);
    primary.set(UP);
    assert!(store.recover_now().await);
    assert_eq!(stored(&primary, &a).await.unwrap(), ["once"]);
    let status = store.status();
    assert_eq!((status.conflicts, status.written_back), (0, 1));
    assert_eq!(primary.inner.load(&a).await.unwrap().unwrap().version, 2);
}

#[tokio::test]
async fn a_session_changed_by_another_instance_meanwhile_is_a_conflict_the_later_wins() {
    let primary = Primary::new();
    let store = failover(&primary);
    let agents = manager(&store);
    let (a, b) = (id("a"), id("b"));
    agents.get_or_create(&a, Vec::new).await.unwrap();
    agents.get_or_create(&b, Vec::new).await.unwrap();
    primary.set(DOWN);
    agents.modify(&a, |h| h.push("ours".into())).await.unwrap();
    agents.modify(&b, |h| h.push("ours".into())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    // Another instance reached the primary meanwhile, later than our changes: on `a` only.
    let other = SessionManager::<Vec<String>>::new(Arc::new(primary.inner.clone()));
    other.modify(&a, |h| h.push("theirs".into())).await.unwrap();
    primary.set(UP);
    assert!(store.recover_now().await);
    assert_eq!(
        stored(&primary, &a).await.unwrap(),
        ["theirs"],
        "theirs is later"
    );
    assert_eq!(stored(&primary, &b).await.unwrap(), ["ours"]);
    assert_eq!(store.status().conflicts, 1);
    // After the conflict this instance reads theirs and goes on from it.
    let next = agents.modify(&a, |h| h.push("next".into())).await.unwrap();
    assert_eq!(*next, ["theirs", "next"]);
}

#[tokio::test]
async fn a_resolver_can_merge_both_versions() {
    let primary = Primary::new();
    let codec = session_core::Codec::default();
    let store = FailoverStore::builder(primary.store())
        .probe_backoff(Duration::from_secs(3600), Duration::from_secs(3600))
        .on_conflict(move |c: &session_core::WriteBackConflict<'_>| {
            let theirs: Vec<String> = codec.decode(c.id, &c.theirs.payload).unwrap();
            let Some(ours) = c.ours else {
                return Resolution::KeepTheirs;
            };
            let ours: Vec<String> = codec.decode(c.id, &ours.payload).unwrap();
            let mut merged = theirs.clone();
            merged.extend(ours.into_iter().filter(|m| !theirs.contains(m)));
            Resolution::Merged {
                payload: codec.encode(c.id, &merged).unwrap(),
                summary: session_core::Summary::new(),
            }
        })
        .build();
    let agents = manager(&store);
    let a = id("a");
    agents.get_or_create(&a, Vec::new).await.unwrap();
    primary.set(DOWN);
    agents.modify(&a, |h| h.push("ours".into())).await.unwrap();
    let other = SessionManager::<Vec<String>>::new(Arc::new(primary.inner.clone()));
    other.modify(&a, |h| h.push("theirs".into())).await.unwrap();
    primary.set(UP);
    assert!(store.recover_now().await);
    assert_eq!(stored(&primary, &a).await.unwrap(), ["theirs", "ours"]);
    assert_eq!(primary.inner.load(&a).await.unwrap().unwrap().version, 3);
}

#[tokio::test]
async fn a_primary_that_restarted_empty_gets_the_changed_sessions_back() {
    let primary = Primary::new();
    let store = failover(&primary);
    let agents = manager(&store);
    let empty = primary.inner.snapshot();
    let (a, b) = (id("a"), id("b"));
    agents.get_or_create(&a, Vec::new).await.unwrap();
    agents.get_or_create(&b, Vec::new).await.unwrap();
    primary.set(DOWN);
    agents
        .modify(&a, |h| h.push("during".into()))
        .await
        .unwrap();
    let created = id("created-during");
    agents
        .get_or_create(&created, || vec!["new".into()])
        .await
        .unwrap();
    primary.inner.restore(&empty);
    primary.set(UP);
    assert!(store.recover_now().await);
    assert_eq!(stored(&primary, &a).await.unwrap(), ["during"]);
    assert_eq!(stored(&primary, &created).await.unwrap(), ["new"]);
    // `b` was only read: it is not this instance's to restore.
    assert!(stored(&primary, &b).await.is_none());
    assert_eq!(store.status().conflicts, 0);
}

#[tokio::test]
async fn deletes_during_the_outage_are_replayed_unless_the_session_changed_later() {
    let primary = Primary::new();
    let store = failover(&primary);
    let agents = manager(&store);
    let (a, b) = (id("a"), id("b"));
    agents.get_or_create(&a, Vec::new).await.unwrap();
    agents.get_or_create(&b, Vec::new).await.unwrap();
    primary.set(DOWN);
    assert!(agents.delete(&a).await.unwrap());
    assert!(agents.delete(&b).await.unwrap());
    assert!(agents.get(&a).await.unwrap().is_none(), "deleted in memory");
    assert_eq!(store.count().await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let other = SessionManager::<Vec<String>>::new(Arc::new(primary.inner.clone()));
    other
        .modify(&b, |h| h.push("theirs, later".into()))
        .await
        .unwrap();
    primary.set(UP);
    assert!(store.recover_now().await);
    assert!(
        stored(&primary, &a).await.is_none(),
        "the delete is replayed"
    );
    assert_eq!(stored(&primary, &b).await.unwrap(), ["theirs, later"]);
    assert_eq!(store.status().conflicts, 1);
}

#[tokio::test]
async fn changes_beyond_the_dirty_bound_fail_loudly_and_nothing_owed_is_dropped() {
    let primary = Primary::new();
    let store = FailoverStore::builder(primary.store())
        .probe_backoff(Duration::from_secs(3600), Duration::from_secs(3600))
        .dirty_limit(3, 1 << 20)
        .build();
    let agents = manager(&store);
    primary.set(DOWN);
    for n in 0..3 {
        agents
            .get_or_create(&id(&format!("s{n}")), || vec![format!("{n}")])
            .await
            .unwrap();
    }
    match agents.get_or_create(&id("s3"), Vec::new).await {
        Err(e @ Error::Unavailable { .. }) => {
            assert!(e.to_string().contains("limit"), "{e}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    // The sessions already changed can still change (they need no new room).
    agents
        .modify(&id("s0"), |h| h.push("more".into()))
        .await
        .unwrap();
    let status = store.status();
    assert_eq!((status.dirty_sessions, status.overflowed), (3, 1));
    primary.set(UP);
    assert!(store.recover_now().await);
    assert_eq!(primary.inner.count().await.unwrap(), 3);
    assert_eq!(stored(&primary, &id("s0")).await.unwrap(), ["0", "more"]);
}

#[tokio::test]
async fn the_near_copy_is_bounded_and_unknown_sessions_start_fresh() {
    let primary = Primary::new();
    let store = FailoverStore::builder(primary.store())
        .probe_backoff(Duration::from_secs(3600), Duration::from_secs(3600))
        .near_copy(2, 1 << 20)
        .build();
    let agents = manager(&store);
    for n in 0..3 {
        agents
            .get_or_create(&id(&format!("s{n}")), || vec![format!("{n}")])
            .await
            .unwrap();
    }
    let status = store.status();
    assert_eq!((status.near_copy_sessions, status.evicted), (2, 1));
    primary.set(DOWN);
    // s0 was evicted: unknown to the fallback.
    assert!(agents.get(&id("s0")).await.unwrap().is_none());
    assert_eq!(*agents.get(&id("s2")).await.unwrap().unwrap(), ["2"]);
}

#[tokio::test]
async fn the_background_probe_recovers_on_its_own() {
    let primary = Primary::new();
    let store = FailoverStore::builder(primary.store())
        .probe_backoff(Duration::from_millis(10), Duration::from_millis(50))
        .build();
    let agents = manager(&store);
    let a = id("a");
    agents.get_or_create(&a, Vec::new).await.unwrap();
    primary.set(DOWN);
    agents
        .modify(&a, |h| h.push("during".into()))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(store.status().mode, FailoverMode::Fallback);
    primary.set(UP);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.status().mode != FailoverMode::Primary {
        assert!(tokio::time::Instant::now() < deadline, "no recovery");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(stored(&primary, &a).await.unwrap(), ["during"]);
    // A second outage starts a probe again.
    primary.set(DOWN);
    agents.modify(&a, |h| h.push("again".into())).await.unwrap();
    primary.set(UP);
    while store.status().recoveries < 2 {
        assert!(tokio::time::Instant::now() < deadline, "no second recovery");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(stored(&primary, &a).await.unwrap(), ["during", "again"]);
}

#[tokio::test]
async fn a_primary_unreachable_at_start_up_is_connected_later_and_gets_the_sessions() {
    let primary = Primary::new();
    primary.set(DOWN);
    let reachable = primary.store();
    let store = FailoverStore::connecting("switch", "refused at start-up", move || {
        let primary = reachable.clone();
        async move {
            primary.ping().await?;
            Ok(primary)
        }
    })
    .probe_backoff(Duration::from_secs(3600), Duration::from_secs(3600))
    .build();
    let agents = manager(&store);
    agents
        .get_or_create(&id("a"), || vec!["hello".into()])
        .await
        .unwrap();
    assert!(!store.recover_now().await);
    primary.set(UP);
    assert!(store.recover_now().await);
    assert_eq!(stored(&primary, &id("a")).await.unwrap(), ["hello"]);
    assert_eq!(store.backend(), "switch");
}

#[tokio::test]
async fn the_fallback_refuses_a_write_while_another_of_the_same_session_is_on_its_way() {
    let primary = Primary::new();
    let store = failover(&primary);
    let a = id("a");
    store
        .save(
            &a,
            Write::new(Bytes::from_static(b"v1"), Condition::IfAbsent),
        )
        .await
        .unwrap();
    let basis = store.load(&a).await.unwrap().unwrap().basis();
    // W1 passes the gate and is slow; the primary goes down behind it.
    primary.delay_writes_ms(200);
    let w1 = {
        let store = store.clone();
        let a = a.clone();
        tokio::spawn(async move {
            store
                .write(
                    &a,
                    Write::new(Bytes::from_static(b"w1"), Condition::IfUnchanged(basis)),
                )
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    primary.set(DOWN);
    // W2 on the same basis meets the outage: the fallback must not accept it while W1 may
    // still land, or both would be acknowledged and one lost to the conflict rule.
    match store
        .write(
            &a,
            Write::new(Bytes::from_static(b"w2"), Condition::IfUnchanged(basis)),
        )
        .await
    {
        Err(Error::Unavailable { .. }) => {}
        other => panic!("expected Unavailable while W1 is in flight, got {other:?}"),
    }
    assert!(matches!(
        w1.await.unwrap(),
        Ok(WriteOutcome::Written { .. })
    ));
    // Now the fallback knows W1's result: W2 on the old basis is refused with it.
    match store
        .write(
            &a,
            Write::new(Bytes::from_static(b"w2"), Condition::IfUnchanged(basis)),
        )
        .await
        .unwrap()
    {
        WriteOutcome::Rejected {
            current: Some(current),
            ..
        } => assert_eq!(&current.payload[..], b"w1"),
        other => panic!("expected a refusal carrying W1, got {other:?}"),
    }
    primary.set(UP);
    assert!(store.recover_now().await);
    assert_eq!(
        &primary.inner.load(&a).await.unwrap().unwrap().payload[..],
        b"w1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_back_converges_while_the_sessions_keep_changing() {
    let primary = Primary::new();
    let store = failover(&primary);
    let agents = manager(&store);
    let ids: Vec<SessionId> = (0..4).map(|n| id(&format!("busy{n}"))).collect();
    for id in &ids {
        agents.get_or_create(id, Vec::new).await.unwrap();
    }
    primary.set(DOWN);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = ids
        .iter()
        .map(|id| {
            let agents = agents.clone();
            let id = id.clone();
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let m = format!("{n}");
                    agents.modify(&id, |h| h.push(m.clone())).await.unwrap();
                    acked.push(m);
                    tokio::task::yield_now().await;
                }
                (id, acked)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    primary.set(UP);
    // Every session changes all the time: the write-back must still finish.
    let recovered = tokio::time::timeout(Duration::from_secs(10), store.recover_now()).await;
    assert_eq!(recovered, Ok(true), "{:?}", store.status());
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        let (id, acked) = writer.await.unwrap();
        assert_eq!(stored(&primary, &id).await.unwrap(), acked, "{id}");
    }
    let status = store.status();
    assert_eq!((status.mode, status.conflicts), (FailoverMode::Primary, 0));
}

#[tokio::test]
async fn a_write_that_met_the_outage_and_landed_is_recognised_under_many_changes_made_after() {
    let primary = Primary::new();
    let store = failover(&primary);
    let agents = manager(&store);
    let a = id("a");
    agents.get_or_create(&a, Vec::new).await.unwrap();
    // Applied in the primary, its reply lost: the switch.
    primary.set(LOSE_REPLIES);
    agents.modify(&a, |h| h.push("0".into())).await.unwrap();
    primary.set(DOWN);
    // More changes in memory than a record keeps tokens of.
    for n in 1..=12 {
        agents.modify(&a, |h| h.push(n.to_string())).await.unwrap();
    }
    primary.set(UP);
    assert!(store.recover_now().await);
    let expected: Vec<String> = (0..=12).map(|n| n.to_string()).collect();
    assert_eq!(stored(&primary, &a).await.unwrap(), expected);
    assert_eq!(store.status().conflicts, 0, "its own write, not another's");
}
