//! session-tower (this workspace's tower-sessions store) driven exactly as the tower-sessions
//! peer is: tower-sessions-core 0.15's `SessionStore` with a `Record` whose data map holds the
//! state as a `serde_json::Value` under one key. The difference measured is the store behind
//! the same API: `TowerStore` over this library's `RedisStore` (one multiplexed connection)
//! against tower-sessions-redis-store 0.16 (one fred client).

use std::collections::HashMap;
use std::sync::Arc;

use peer_bench::{Peer, Result, STATE_KEY};
use serde::{Serialize, de::DeserializeOwned};
use session_redis::{ConnectionMode, RedisStore};
use session_tower::TowerStore;
use tower_sessions_core::SessionStore as _;
use tower_sessions_core::session::{Id, Record};

/// The peers' TTL: one hour.
const TTL_SECONDS: i64 = 3600;

/// `TowerStore` over a `RedisStore` with the default key prefix.
#[derive(Debug)]
pub(crate) struct SessionTower {
    store: TowerStore,
}

impl SessionTower {
    /// Connects to `url`.
    pub(crate) async fn connect(url: &str) -> Result<Self> {
        let redis = RedisStore::connect(
            session_redis::RedisOptions::from_url(url)?.with_mode(ConnectionMode::Multiplexed),
        )
        .await?;
        Ok(Self {
            store: TowerStore::new(Arc::new(redis)),
        })
    }

    fn record<T: Serialize>(id: Id, value: &T) -> Result<Record> {
        let mut data = HashMap::with_capacity(1);
        data.insert(STATE_KEY.to_owned(), serde_json::to_value(value)?);
        Ok(Record {
            id,
            data,
            expiry_date: time::OffsetDateTime::now_utc() + time::Duration::seconds(TTL_SECONDS),
        })
    }
}

impl Peer for SessionTower {
    type Key = Id;

    fn name(&self) -> &'static str {
        "session-tower 0.1 (this library's RedisStore behind tower-sessions 0.15's API)"
    }

    async fn create<T: Serialize + Sync>(&self, value: &T) -> Result<Id> {
        let mut record = Self::record(Id::default(), value)?;
        self.store.create(&mut record).await?;
        Ok(record.id)
    }

    async fn load<T: DeserializeOwned>(&self, key: &Id) -> Result<Option<T>> {
        let Some(mut record) = self.store.load(key).await? else {
            return Ok(None);
        };
        let value = record
            .data
            .remove(STATE_KEY)
            .ok_or("session-tower record without the state entry")?;
        Ok(Some(serde_json::from_value(value)?))
    }

    async fn update<T: Serialize + Sync>(&self, key: &Id, value: &T) -> Result<()> {
        let record = Self::record(*key, value)?;
        self.store.save(&record).await?;
        Ok(())
    }

    fn redis_key(&self, key: &Id) -> String {
        let id = self
            .store
            .session_id(key)
            .map_or_else(|_| key.to_string(), |id| id.as_str().to_owned());
        format!("{}{id}", session_redis::DEFAULT_KEY_PREFIX)
    }
}
