//! Regression tests for races and edge cases of `FailoverStore` found in review, each on a
//! memory primary behind a switch that can refuse, lose replies, and delay answers.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{DOWN, LOSE_REPLIES, Primary, UP};
use session_core::{
    Condition, Error, FailoverBuilder, FailoverMode, FailoverStore, Resolution, SessionId,
    SessionStore, Summary, Ttl, Write, WriteBackConflict, WriteOutcome,
};

fn id(s: &str) -> SessionId {
    SessionId::new(s).unwrap()
}

fn builder(primary: &Primary) -> FailoverBuilder {
    FailoverStore::builder(primary.store())
        .probe_backoff(Duration::from_secs(3600), Duration::from_secs(3600))
}

fn write(payload: &'static [u8], condition: Condition) -> Write {
    Write::new(Bytes::from_static(payload), condition)
}

async fn in_primary(primary: &Primary, id: &SessionId) -> Option<Vec<u8>> {
    primary
        .inner
        .load(id)
        .await
        .unwrap()
        .map(|r| r.payload.to_vec())
}

#[tokio::test]
async fn a_touch_while_a_write_is_on_its_way_is_refused_so_the_write_is_not_hidden() {
    let primary = Primary::new();
    let store = builder(&primary).build();
    let a = id("a");
    store
        .save(&a, write(b"v1", Condition::IfAbsent))
        .await
        .unwrap();
    let v1 = store.load(&a).await.unwrap().unwrap().basis();
    primary.delay_writes_ms(200);
    let w1 = {
        let (store, a) = (store.clone(), a.clone());
        tokio::spawn(async move {
            store
                .write(&a, write(b"w1", Condition::IfUnchanged(v1)))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    primary.set(DOWN);
    assert!(matches!(
        store.touch(&a, Ttl::DEFAULT).await,
        Err(Error::Unavailable { .. })
    ));
    assert!(matches!(
        w1.await.unwrap(),
        Ok(WriteOutcome::Written { .. })
    ));
    primary.delay_writes_ms(0);
    let now = store.load(&a).await.unwrap().unwrap();
    assert_eq!(
        &now.payload[..],
        b"w1",
        "the fallback serves the acknowledged write"
    );
    store
        .save(&a, write(b"w3", Condition::IfUnchanged(now.basis())))
        .await
        .unwrap();
    primary.set(UP);
    assert!(store.recover_now().await);
    assert_eq!(in_primary(&primary, &a).await.unwrap(), b"w3");
    assert_eq!(store.status().conflicts, 0);
}

#[tokio::test]
async fn a_slow_read_answering_after_a_newer_write_does_not_roll_the_near_copy_back() {
    let primary = Primary::new();
    let store = builder(&primary).build();
    let a = id("a");
    store
        .save(&a, write(b"v1", Condition::IfAbsent))
        .await
        .unwrap();
    let v1 = store.load(&a).await.unwrap().unwrap().basis();
    primary.switch.delay_next_load(Duration::from_millis(150));
    let slow = {
        let (store, a) = (store.clone(), a.clone());
        tokio::spawn(async move { store.load(&a).await })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    store
        .save(&a, write(b"w2", Condition::IfUnchanged(v1)))
        .await
        .unwrap();
    assert_eq!(&slow.await.unwrap().unwrap().unwrap().payload[..], b"v1");
    primary.set(DOWN);
    let now = store.load(&a).await.unwrap().unwrap();
    assert_eq!(
        &now.payload[..],
        b"w2",
        "the near-copy keeps the newer write"
    );
    store
        .save(&a, write(b"w3", Condition::IfUnchanged(now.basis())))
        .await
        .unwrap();
    primary.set(UP);
    assert!(store.recover_now().await);
    assert_eq!(in_primary(&primary, &a).await.unwrap(), b"w3");
    assert_eq!(store.status().conflicts, 0);
}

#[tokio::test]
async fn a_write_in_doubt_that_the_fallback_cannot_take_stays_in_doubt() {
    let primary = Primary::new();
    // Room for one session: `a` is evicted when `b` is seen.
    let store = builder(&primary).near_copy(1, 1 << 20).build();
    let (a, b) = (id("a"), id("b"));
    store
        .save(&a, write(b"v1", Condition::IfAbsent))
        .await
        .unwrap();
    let v1 = store.load(&a).await.unwrap().unwrap().basis();
    store
        .save(&b, write(b"b", Condition::IfAbsent))
        .await
        .unwrap();
    primary.set(LOSE_REPLIES);
    // Applied in the primary, the reply lost; the fallback does not hold `a`.
    match store
        .write(&a, write(b"x", Condition::IfUnchanged(v1)))
        .await
    {
        Err(Error::OutcomeUnknown { .. }) => {}
        other => panic!("expected OutcomeUnknown, got {other:?}"),
    }
    assert_eq!(in_primary(&primary, &a).await.unwrap(), b"x");
}

#[tokio::test]
async fn a_delete_of_a_session_not_held_here_is_not_replayed_over_another_instances() {
    let primary = Primary::new();
    let store = builder(&primary).build();
    let a = id("a");
    primary.set(DOWN);
    assert!(!store.delete(&a).await.unwrap());
    primary
        .inner
        .save(&a, write(b"theirs", Condition::IfAbsent))
        .await
        .unwrap();
    primary.set(UP);
    assert!(store.recover_now().await);
    assert_eq!(in_primary(&primary, &a).await.unwrap(), b"theirs");
    assert_eq!(store.status().conflicts, 0);
}

#[tokio::test]
async fn a_delete_after_a_write_that_landed_in_doubt_is_replayed_without_a_conflict() {
    let primary = Primary::new();
    let store = builder(&primary)
        .on_conflict(|_: &WriteBackConflict<'_>| Resolution::KeepTheirs)
        .build();
    let a = id("a");
    store
        .save(&a, write(b"v1", Condition::IfAbsent))
        .await
        .unwrap();
    let v1 = store.load(&a).await.unwrap().unwrap().basis();
    primary.set(LOSE_REPLIES);
    store
        .save(&a, write(b"w1", Condition::IfUnchanged(v1)))
        .await
        .unwrap();
    primary.set(DOWN);
    assert!(store.delete(&a).await.unwrap());
    primary.set(UP);
    assert!(store.recover_now().await);
    assert!(
        in_primary(&primary, &a).await.is_none(),
        "the delete is replayed"
    );
    assert_eq!(store.status().conflicts, 0);
}

#[tokio::test]
async fn a_change_made_during_the_write_back_of_a_merge_meets_the_resolver_again() {
    let primary = Primary::new();
    let store = builder(&primary)
        .on_conflict(|_: &WriteBackConflict<'_>| Resolution::Merged {
            payload: Bytes::from_static(b"merged"),
            summary: Summary::new(),
        })
        .build();
    let a = id("a");
    store
        .save(&a, write(b"v1", Condition::IfAbsent))
        .await
        .unwrap();
    let v1 = store.load(&a).await.unwrap().unwrap().basis();
    primary.set(DOWN);
    store
        .save(&a, write(b"ours1", Condition::IfUnchanged(v1)))
        .await
        .unwrap();
    let ours1 = store.load(&a).await.unwrap().unwrap().basis();
    primary
        .inner
        .save(&a, write(b"theirs", Condition::IfUnchanged(v1)))
        .await
        .unwrap();
    primary.set(UP);
    primary.delay_writes_ms(150);
    let recovering = {
        let store = store.clone();
        tokio::spawn(async move { store.recover_now().await })
    };
    tokio::time::sleep(Duration::from_millis(40)).await;
    primary.set(DOWN);
    let _ = store.count().await.unwrap();
    let _ = recovering.await.unwrap();
    // The write-back of the merge may have landed; a change built on ours1 must not
    // overwrite the merge unasked.
    let _ = store
        .write(&a, write(b"ours2", Condition::IfUnchanged(ours1)))
        .await;
    primary.delay_writes_ms(0);
    primary.set(UP);
    for _ in 0..10 {
        if store.recover_now().await {
            break;
        }
    }
    assert_eq!(store.status().mode, FailoverMode::Primary);
    assert_eq!(in_primary(&primary, &a).await.unwrap(), b"merged");
}

#[tokio::test]
async fn operations_on_other_sessions_do_not_wait_for_a_slow_write_back() {
    let primary = Primary::new();
    let store = builder(&primary)
        .switch_after(Duration::from_millis(50))
        .build();
    let (a, b) = (id("a"), id("b"));
    store
        .save(&a, write(b"v1", Condition::IfAbsent))
        .await
        .unwrap();
    store
        .save(&b, write(b"b", Condition::IfAbsent))
        .await
        .unwrap();
    primary.set(DOWN);
    store.save(&a, write(b"x", Condition::Any)).await.unwrap();
    primary.set(UP);
    primary.delay_writes_ms(400);
    let recovering = {
        let store = store.clone();
        tokio::spawn(async move { store.recover_now().await })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    let start = Instant::now();
    assert!(store.load(&b).await.unwrap().is_some());
    let took = start.elapsed();
    // Bounded by `switch_after` (50 ms), not by the 400 ms write-back; generous slack.
    assert!(took < Duration::from_millis(300), "{took:?}");
    let _ = recovering.await;
}

#[tokio::test]
async fn a_touch_past_the_dirty_bound_still_answers() {
    let primary = Primary::new();
    let store = builder(&primary).dirty_limit(1, 1 << 20).build();
    let (a, b) = (id("a"), id("b"));
    store
        .save(&a, write(b"a", Condition::IfAbsent))
        .await
        .unwrap();
    store
        .save(&b, write(b"b", Condition::IfAbsent))
        .await
        .unwrap();
    primary.set(DOWN);
    store.save(&a, write(b"x", Condition::Any)).await.unwrap();
    assert!(store.touch(&b, Ttl::DEFAULT).await.unwrap());
}

#[tokio::test]
async fn a_change_that_expires_before_the_write_back_is_counted_as_expired() {
    let primary = Primary::new();
    let store = builder(&primary).build();
    let a = id("a");
    primary.set(DOWN);
    store
        .save(
            &a,
            write(b"x", Condition::Any).with_ttl(Ttl::from_millis(30).unwrap()),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(40)).await;
    primary.set(UP);
    assert!(store.recover_now().await);
    let status = store.status();
    assert_eq!((status.expired, status.written_back), (1, 0), "{status:?}");
    assert!(in_primary(&primary, &a).await.is_none());
}
