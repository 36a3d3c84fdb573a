//! What a tower-sessions store must do, checked through the trait on any of our stores.
//!
//! The first five mirror tower-sessions' own store tests (its memory store's `test_create`,
//! `test_save`, `test_load`, `test_delete`, `test_create_id_collision`); the rest are this
//! adapter's promises (see the crate docs). Each check takes a fresh, empty store.

use std::{collections::HashMap, sync::Arc, time::Duration as StdDuration};

use bytes::Bytes;
use serde_json::{Value, json};
use session_core::{Codec, Condition, SessionStore, Ttl, Write};
use session_tower::TowerStore;
use time::{Duration, OffsetDateTime};
use tower_sessions_core::{
    SessionStore as _,
    session::{Id, Record},
    session_store::Error,
};

fn record(expiry_date: OffsetDateTime) -> Record {
    Record {
        id: Id::default(),
        data: HashMap::from([
            ("user".to_owned(), json!("ada")),
            ("visits".to_owned(), json!(3)),
            (
                "cart".to_owned(),
                json!([{"sku": "a-1", "qty": 2}, null, -1.5]),
            ),
        ]),
        expiry_date,
    }
}

fn in_30_minutes() -> OffsetDateTime {
    OffsetDateTime::now_utc() + Duration::minutes(30)
}

/// tower's `test_create` and `test_load`: what `create` stored loads back equal.
pub async fn created_records_load_back_equal(store: Arc<dyn SessionStore>) {
    let tower = TowerStore::new(store);
    let mut r = record(in_30_minutes());
    let before = r.id;
    tower.create(&mut r).await.unwrap();
    assert_eq!(r.id, before, "no collision, so the id is kept");
    assert_eq!(tower.load(&r.id).await.unwrap(), Some(r));
}

/// tower's `test_save`: `save` stores a record that was never created.
pub async fn saved_records_load_back_equal(store: Arc<dyn SessionStore>) {
    let tower = TowerStore::new(store);
    let mut r = record(in_30_minutes());
    tower.save(&r).await.unwrap();
    assert_eq!(tower.load(&r.id).await.unwrap().as_ref(), Some(&r));
    r.data.insert("user".into(), json!("grace"));
    tower.save(&r).await.unwrap();
    assert_eq!(tower.load(&r.id).await.unwrap(), Some(r));
}

/// tower's `test_delete`: a deleted record loads as `None`; deleting again is no error.
pub async fn deleted_records_load_as_none(store: Arc<dyn SessionStore>) {
    let tower = TowerStore::new(store);
    let mut r = record(in_30_minutes());
    tower.create(&mut r).await.unwrap();
    tower.delete(&r.id).await.unwrap();
    assert_eq!(tower.load(&r.id).await.unwrap(), None);
    tower.delete(&r.id).await.unwrap();
    assert_eq!(tower.load(&Id::default()).await.unwrap(), None);
}

/// tower's `test_create_id_collision`: `create` on a taken id draws a new one and leaves the
/// first record as it was.
pub async fn create_on_a_taken_id_draws_a_new_one(store: Arc<dyn SessionStore>) {
    let tower = TowerStore::new(store);
    let expiry = in_30_minutes();
    let mut first = record(expiry);
    tower.create(&mut first).await.unwrap();
    let mut second = Record {
        id: first.id,
        data: HashMap::from([("user".to_owned(), json!("mallory"))]),
        expiry_date: expiry,
    };
    tower.create(&mut second).await.unwrap();
    assert_ne!(second.id, first.id);
    assert_eq!(tower.load(&first.id).await.unwrap().as_ref(), Some(&first));
    assert_eq!(tower.load(&second.id).await.unwrap(), Some(second));
}

/// `create` never overwrites a session it did not write either: one put in the store by
/// something else under the id tower would use keeps its bytes.
pub async fn create_never_overwrites_a_session_written_by_others(store: Arc<dyn SessionStore>) {
    let tower = TowerStore::new(Arc::clone(&store));
    let taken = Id::default();
    let sid = tower.session_id(&taken).unwrap();
    let theirs = Bytes::from_static(b"someone else's session");
    store
        .save(&sid, Write::new(theirs.clone(), Condition::IfAbsent))
        .await
        .unwrap();

    let mut r = record(in_30_minutes());
    r.id = taken;
    tower.create(&mut r).await.unwrap();

    assert_ne!(r.id, taken, "the record got a new id");
    let kept = store.load(&sid).await.unwrap().unwrap();
    assert_eq!(kept.payload, theirs);
    assert_eq!(kept.version, 1, "written once, by its owner");
    assert_eq!(tower.load(&r.id).await.unwrap(), Some(r));
}

/// An expiry date that is not in the future: `save` deletes, `create` stores nothing.
pub async fn expiry_in_the_past_is_not_stored(store: Arc<dyn SessionStore>) {
    let tower = TowerStore::new(Arc::clone(&store));
    let mut r = record(in_30_minutes());
    tower.create(&mut r).await.unwrap();
    r.expiry_date = OffsetDateTime::now_utc() - Duration::seconds(1);
    tower.save(&r).await.unwrap();
    assert_eq!(tower.load(&r.id).await.unwrap(), None);
    assert!(
        !store
            .exists(&tower.session_id(&r.id).unwrap())
            .await
            .unwrap()
    );

    let mut gone = record(OffsetDateTime::now_utc());
    tower.create(&mut gone).await.unwrap();
    assert!(
        !store
            .exists(&tower.session_id(&gone.id).unwrap())
            .await
            .unwrap()
    );
}

/// The expiry date is the store's TTL (rounded up to milliseconds), so a session expires in
/// the store on time.
pub async fn expiry_date_is_the_store_ttl(store: Arc<dyn SessionStore>) {
    let tower = TowerStore::new(Arc::clone(&store));
    let mut r = record(OffsetDateTime::now_utc() + Duration::hours(1));
    tower.create(&mut r).await.unwrap();
    let ttl = store
        .load(&tower.session_id(&r.id).unwrap())
        .await
        .unwrap()
        .unwrap()
        .ttl
        .unwrap();
    assert!(ttl <= StdDuration::from_secs(3600), "{ttl:?}");
    assert!(ttl > StdDuration::from_secs(3590), "{ttl:?}");

    // Farther than the store keeps anything: the TTL stops at Ttl::MAX, the date is kept.
    let mut far = record(OffsetDateTime::now_utc() + Duration::days(365 * 20));
    tower.save(&far).await.unwrap();
    let ttl = store
        .load(&tower.session_id(&far.id).unwrap())
        .await
        .unwrap()
        .unwrap()
        .ttl
        .unwrap();
    assert!(ttl <= Ttl::MAX.as_duration(), "{ttl:?}");
    assert!(
        ttl > Ttl::MAX.as_duration() - StdDuration::from_secs(60),
        "{ttl:?}"
    );
    assert_eq!(tower.load(&far.id).await.unwrap().as_ref(), Some(&far));
    far.data.clear();
    tower.save(&far).await.unwrap();
    assert_eq!(tower.load(&far.id).await.unwrap(), Some(far));
}

/// A record loads until its expiry date and then never again (the store drops it).
pub async fn expired_records_load_as_none(store: Arc<dyn SessionStore>) {
    let tower = TowerStore::new(Arc::clone(&store));
    let mut r = record(OffsetDateTime::now_utc() + Duration::milliseconds(400));
    tower.create(&mut r).await.unwrap();
    assert_eq!(tower.load(&r.id).await.unwrap().as_ref(), Some(&r));
    tokio::time::sleep(StdDuration::from_millis(700)).await;
    assert_eq!(tower.load(&r.id).await.unwrap(), None);
    assert!(
        !store
            .exists(&tower.session_id(&r.id).unwrap())
            .await
            .unwrap()
    );
}

/// A record whose own expiry date has passed loads as `None` even while the store still
/// holds it (written with a longer TTL by something else).
pub async fn a_record_past_its_expiry_date_loads_as_none(store: Arc<dyn SessionStore>) {
    let tower = TowerStore::new(Arc::clone(&store));
    let id = Id::default();
    let sid = tower.session_id(&id).unwrap();
    let payload = Codec::default()
        .encode(
            &sid,
            &json!({"id": id.to_string(), "data": {"user": "ada"}, "expiry_date": "2001-01-01T00:00:00Z"}),
        )
        .unwrap();
    store
        .save(&sid, Write::new(payload, Condition::Any))
        .await
        .unwrap();
    assert_eq!(tower.load(&id).await.unwrap(), None);
}

/// Bytes that are no tower record are `Error::Decode` with the reason, and stay as they are.
pub async fn corrupt_records_are_decode_errors(store: Arc<dyn SessionStore>) {
    let tower = TowerStore::new(Arc::clone(&store));
    let codec = Codec::default();
    let id = Id::default();
    let sid = tower.session_id(&id).unwrap();
    let cases: Vec<(Bytes, &str)> = vec![
        (Bytes::from_static(b"\xC1\x01\x00\xff\xff"), "truncated envelope"),
        (Bytes::from_static(b"{\"user\":\"ada\"}"), "not an envelope"),
        (
            codec
                .encode(&sid, &json!({"state": "new_problem", "current_attempt": 1}))
                .unwrap(),
            "another state type",
        ),
        (
            codec
                .encode(
                    &sid,
                    &json!({"id": id.to_string(), "data": {}, "expiry_date": "tomorrow"}),
                )
                .unwrap(),
            "a bad expiry date",
        ),
        (
            codec
                .encode(
                    &sid,
                    &json!({"id": Id::default().to_string(), "data": {}, "expiry_date": "2999-01-01T00:00:00Z"}),
                )
                .unwrap(),
            "another id's record",
        ),
    ];
    for (bytes, what) in cases {
        store
            .save(&sid, Write::new(bytes.clone(), Condition::Any))
            .await
            .unwrap();
        match tower.load(&id).await {
            Err(Error::Decode(detail)) => {
                assert!(detail.contains(sid.as_str()), "{what}: {detail}");
            }
            other => panic!("{what}: expected a decode error, got {other:?}"),
        }
        let kept = store.load(&sid).await.unwrap().unwrap();
        assert_eq!(kept.payload, bytes, "{what}: left as it was");
    }
}

/// What is stored is the record as a readable state (what `sessionctl show` prints), and
/// listings show its number of values; the prefix is in front of every id.
pub async fn records_are_stored_as_readable_state(store: Arc<dyn SessionStore>) {
    let tower = TowerStore::new(Arc::clone(&store))
        .with_prefix("tower:")
        .unwrap();
    let mut r = record(in_30_minutes());
    tower.create(&mut r).await.unwrap();
    let sid = tower.session_id(&r.id).unwrap();
    assert_eq!(sid.as_str(), format!("tower:{}", r.id));
    assert_eq!(tower.tower_id(&sid), Some(r.id));

    let stored = store.load(&sid).await.unwrap().unwrap();
    let state: Value = Codec::default().decode(&sid, &stored.payload).unwrap();
    assert_eq!(state["id"], json!(r.id.to_string()));
    assert_eq!(state["data"]["user"], json!("ada"));
    assert_eq!(state["data"]["cart"][0]["qty"], json!(2));
    let expiry = state["expiry_date"].as_str().unwrap();
    assert!(expiry.ends_with('Z'), "{expiry}");

    let mut listed = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.list_page(cursor.as_ref(), 100).await.unwrap();
        listed.extend(page.sessions);
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let info = listed
        .iter()
        .find(|info| info.id == sid)
        .unwrap_or_else(|| panic!("{sid} not listed in {listed:?}"));
    assert_eq!(
        info.meta.summary.get("keys").and_then(|v| v.as_i64()),
        Some(3)
    );
    // Nothing of the data itself in the listing.
    assert!(!format!("{:?}", info.meta.summary).contains("ada"));

    // The same store without the prefix does not see it.
    assert_eq!(TowerStore::new(store).load(&r.id).await.unwrap(), None);
}

/// One `#[tokio::test]` per check, each on a store from `$fresh(test_name)`, an async fn
/// returning `Option<Arc<dyn SessionStore>>` (`None`: skipped, e.g. no Redis).
#[allow(unused_macros)]
macro_rules! contract_tests {
    ($fresh:path) => {
        contract_tests!(@each $fresh,
            created_records_load_back_equal,
            saved_records_load_back_equal,
            deleted_records_load_as_none,
            create_on_a_taken_id_draws_a_new_one,
            create_never_overwrites_a_session_written_by_others,
            expiry_in_the_past_is_not_stored,
            expiry_date_is_the_store_ttl,
            expired_records_load_as_none,
            a_record_past_its_expiry_date_loads_as_none,
            corrupt_records_are_decode_errors,
            records_are_stored_as_readable_state,
        );
    };
    (@each $fresh:path, $($check:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $check() {
            let Some(store) = $fresh(stringify!($check)).await else {
                return;
            };
            $crate::common::contract::$check(std::sync::Arc::clone(&store)).await;
            // Passed: leave nothing behind in a shared server.
            $crate::common::purge(&*store).await;
        }
    )*};
}
