//! tower-sessions' store contract through the trait, on the memory store and on a real Redis,
//! and the error mapping.

#[macro_use]
mod common;

use std::sync::Arc;

use bytes::Bytes;
use session_core::{
    Condition, Cursor, Page, Record as StoredRecord, Result as CoreResult, SessionId, SessionStore,
    Ttl, Write, WriteOutcome, async_trait,
    testing::switch::{Fault, Switch},
};
use session_memory::MemoryStore;
use session_tower::{MAX_CREATE_ATTEMPTS, TowerStore};
use time::{Duration, OffsetDateTime};
use tower_sessions_core::{
    SessionStore as _,
    session::{Id, Record},
    session_store::Error,
};

mod memory {
    use super::*;

    async fn fresh(_test: &str) -> Option<Arc<dyn SessionStore>> {
        Some(Arc::new(MemoryStore::new()))
    }

    contract_tests!(fresh);
}

mod redis {
    use super::*;

    async fn fresh(test: &str) -> Option<Arc<dyn SessionStore>> {
        let url = redis_harness::env::redis_url(test)?;
        Some(common::redis_store(&url, &common::unique_prefix(test)).await)
    }

    contract_tests!(fresh);
}

fn record() -> Record {
    Record {
        id: Id::default(),
        data: [("user".to_owned(), serde_json::json!("ada"))].into(),
        expiry_date: OffsetDateTime::now_utc() + Duration::minutes(30),
    }
}

/// A store where every id is taken: each create is refused.
#[derive(Debug)]
struct EveryIdTaken {
    creates: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl SessionStore for EveryIdTaken {
    fn backend(&self) -> &'static str {
        "full"
    }
    async fn load(&self, _: &SessionId) -> CoreResult<Option<StoredRecord>> {
        Ok(None)
    }
    async fn write(&self, _: &SessionId, write: Write) -> CoreResult<WriteOutcome> {
        assert_eq!(write.condition, Condition::IfAbsent, "only creates here");
        self.creates
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(WriteOutcome::rejected(None))
    }
    async fn delete(&self, _: &SessionId) -> CoreResult<bool> {
        Ok(false)
    }
    async fn touch(&self, _: &SessionId, _: Ttl) -> CoreResult<bool> {
        Ok(false)
    }
    async fn list_page(&self, _: Option<&Cursor>, _: usize) -> CoreResult<Page> {
        Ok(Page::default())
    }
    async fn count(&self) -> CoreResult<u64> {
        Ok(0)
    }
    async fn ping(&self) -> CoreResult<()> {
        Ok(())
    }
}

#[tokio::test]
async fn create_gives_up_with_a_backend_error_when_every_id_is_taken() {
    let store = Arc::new(EveryIdTaken { creates: 0.into() });
    let tower = TowerStore::new(store.clone());
    let mut r = record();
    match tower.create(&mut r).await {
        Err(Error::Backend(detail)) => {
            assert!(detail.contains("full refused to create"), "{detail}");
            assert!(
                detail.contains(&MAX_CREATE_ATTEMPTS.to_string()),
                "{detail}"
            );
        }
        other => panic!("expected a backend error, got {other:?}"),
    }
    assert_eq!(
        store.creates.load(std::sync::atomic::Ordering::Relaxed),
        MAX_CREATE_ATTEMPTS
    );
}

#[tokio::test]
async fn store_faults_are_backend_errors_with_the_detail() {
    let switch = Switch::new(Arc::new(MemoryStore::new()), "redis");
    let tower = TowerStore::new(switch.clone());
    let mut r = record();
    tower.create(&mut r).await.unwrap();

    for (fault, says) in [
        (Fault::Down, "redis is unavailable"),
        (Fault::RefuseCredentials, "redis refused the credentials"),
        (Fault::OutOfMemory, "redis is out of memory"),
        (Fault::LoseReplies, "is unknown"),
    ] {
        switch.set(fault);
        let results = [
            tower.save(&r).await.map(drop),
            tower.create(&mut record()).await,
        ];
        for result in results {
            match result {
                Err(Error::Backend(detail)) => {
                    assert!(detail.contains(says), "{fault:?}: {detail}");
                }
                other => panic!("{fault:?}: expected a backend error, got {other:?}"),
            }
        }
        if fault == Fault::Down {
            assert!(matches!(tower.load(&r.id).await, Err(Error::Backend(_))));
            assert!(matches!(tower.delete(&r.id).await, Err(Error::Backend(_))));
        }
    }
    switch.set(Fault::None);
    assert_eq!(
        tower.load(&r.id).await.unwrap().map(|l| l.data),
        Some(r.data)
    );
}

#[tokio::test]
async fn a_record_over_the_size_limit_is_an_encode_error_and_nothing_is_written() {
    let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    let tower =
        TowerStore::new(Arc::clone(&store)).with_codec(session_core::Codec::with_max_size(256));
    let mut r = record();
    r.data
        .insert("essay".to_owned(), serde_json::json!("x".repeat(1000)));
    for result in [tower.save(&r).await, tower.create(&mut r.clone()).await] {
        match result {
            Err(Error::Encode(detail)) => assert!(detail.contains("over the limit"), "{detail}"),
            other => panic!("expected an encode error, got {other:?}"),
        }
    }
    assert_eq!(store.count().await.unwrap(), 0);
}

#[tokio::test]
async fn a_session_of_another_kind_is_never_taken_for_a_tower_one() {
    // A session of the same store that is not tower's (a SessionManager's) under an id that is
    // not a tower id: no tower id maps to it.
    let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    let sid = SessionId::new("user-123").unwrap();
    store
        .save(
            &sid,
            Write::new(Bytes::from_static(b"agent"), Condition::Any),
        )
        .await
        .unwrap();
    let tower = TowerStore::new(store);
    assert_eq!(tower.tower_id(&sid), None);
}

#[test]
fn invalid_prefixes_are_refused_with_what_is_allowed() {
    let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    let e = TowerStore::new(Arc::clone(&store))
        .with_prefix("tower sessions:")
        .unwrap_err();
    assert!(e.to_string().contains("A-Z a-z 0-9 _ . : @ -"), "{e}");
    let long = "p".repeat(session_tower::MAX_PREFIX_LEN + 1);
    assert!(TowerStore::new(store).with_prefix(&long).is_err());
}
