//! Other Rust session stores on Redis, each behind the same three calls, so that
//! `session-bench` (feature `peers`) measures them in the same run, on the same core and with
//! the same state as the library.
//!
//! Every peer is driven through its own public store API, and the state goes through the
//! conversions its users pay:
//!
//! - [`TowerSessions`]: `tower-sessions-redis-store` 0.16 (`RedisStore` on one `fred` client)
//!   through `tower_sessions_core::SessionStore`: a `Record` whose data map holds the state as
//!   a `serde_json::Value` under one key (what `Session::insert` stores), MessagePack of the
//!   whole record in a Redis string (`SET ... XX EXAT`, `GET`). Loading converts the value
//!   back with `serde_json::from_value` (what `Session::get` does, minus its clone).
//! - [`ActixSession`]: `actix-session` 0.11's `RedisSessionStore` (one redis-rs 0.32
//!   `ConnectionManager`) through `actix_session::storage::SessionStore`: a
//!   `HashMap<String, String>` whose one entry is the state as a JSON string (what
//!   `Session::insert` stores), the map as JSON in a Redis string (`SET ... XX EX`, `GET`).
//!
//! Neither store checks versions: an update overwrites whatever is there (last writer wins),
//! so their writes compare with the library's unconditional `update`.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::collections::HashMap;
use std::future::Future;

use serde::{Serialize, de::DeserializeOwned};

/// Any error of a peer, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A peer's result.
pub type Result<T> = std::result::Result<T, BoxError>;

/// The map key both peers keep the state under (one entry, as a handler would insert it).
pub const STATE_KEY: &str = "agent";

/// How long the peers' sessions live (the library's default TTL: one hour).
const TTL_SECONDS: i64 = 3600;

/// A session store driven through its public API.
pub trait Peer: Send + Sync + 'static {
    /// What names one session.
    type Key: Clone + Send + Sync + 'static;

    /// The crate and store, for the report.
    fn name(&self) -> &'static str;

    /// Creates a session holding `value`.
    fn create<T: Serialize + Sync>(
        &self,
        value: &T,
    ) -> impl Future<Output = Result<Self::Key>> + Send;

    /// Loads the session's state (`None`: no such session).
    fn load<T: DeserializeOwned>(
        &self,
        key: &Self::Key,
    ) -> impl Future<Output = Result<Option<T>>> + Send;

    /// Writes `value` over the existing session and resets its expiry.
    fn update<T: Serialize + Sync>(
        &self,
        key: &Self::Key,
        value: &T,
    ) -> impl Future<Output = Result<()>> + Send;

    /// The Redis key the session is stored under (for `MEMORY USAGE`).
    fn redis_key(&self, key: &Self::Key) -> String;
}

// ---------------------------------------------------------------------------------------------
// tower-sessions

use tower_sessions_core::SessionStore as _;
use tower_sessions_core::session::{Id, Record};
use tower_sessions_redis_store::RedisStore;
use tower_sessions_redis_store::fred::prelude::{ClientLike, Config};

/// `tower-sessions-redis-store`'s `RedisStore` on one `fred` client (one connection,
/// pipelined, like the library's multiplexed connection).
#[derive(Debug)]
pub struct TowerSessions {
    store: RedisStore<tower_sessions_redis_store::fred::prelude::Client>,
}

impl TowerSessions {
    /// Connects to `url` (`redis://host:port/db`).
    pub async fn connect(url: &str) -> Result<Self> {
        let client = tower_sessions_redis_store::fred::prelude::Client::new(
            Config::from_url(url)?,
            None,
            None,
            None,
        );
        // The connection task runs until the client is dropped.
        let _task = client.init().await?;
        Ok(Self {
            store: RedisStore::new(client),
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

impl Peer for TowerSessions {
    type Key = Id;

    fn name(&self) -> &'static str {
        "tower-sessions-redis-store 0.16 (fred 10)"
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
            .ok_or("tower-sessions record without the state entry")?;
        Ok(Some(serde_json::from_value(value)?))
    }

    async fn update<T: Serialize + Sync>(&self, key: &Id, value: &T) -> Result<()> {
        let record = Self::record(*key, value)?;
        self.store.save(&record).await?;
        Ok(())
    }

    fn redis_key(&self, key: &Id) -> String {
        key.to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// actix-session

use actix_session::storage::{RedisSessionStore, SessionKey, SessionStore as _};

/// `actix-session`'s `RedisSessionStore` (one redis-rs 0.32 `ConnectionManager`).
pub struct ActixSession {
    store: RedisSessionStore,
}

impl std::fmt::Debug for ActixSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ActixSession")
    }
}

impl ActixSession {
    /// Connects to `url` (`redis://host:port/db`).
    pub async fn connect(url: &str) -> Result<Self> {
        let store = RedisSessionStore::new(url)
            .await
            .map_err(|e| -> BoxError { e.into() })?;
        Ok(Self { store })
    }

    fn state<T: Serialize>(value: &T) -> Result<HashMap<String, String>> {
        let mut state = HashMap::with_capacity(1);
        state.insert(STATE_KEY.to_owned(), serde_json::to_string(value)?);
        Ok(state)
    }

    fn ttl() -> time::Duration {
        time::Duration::seconds(TTL_SECONDS)
    }

    fn key(key: &str) -> Result<SessionKey> {
        SessionKey::try_from(key.to_owned()).map_err(|e| -> BoxError { e.to_string().into() })
    }
}

impl Peer for ActixSession {
    /// The session key as a string (`SessionKey` is not `Clone`).
    type Key = String;

    fn name(&self) -> &'static str {
        "actix-session 0.11 RedisSessionStore (redis-rs 0.32)"
    }

    async fn create<T: Serialize + Sync>(&self, value: &T) -> Result<String> {
        let key = self
            .store
            .save(Self::state(value)?, &Self::ttl())
            .await
            .map_err(|e| -> BoxError { e.to_string().into() })?;
        Ok(key.into())
    }

    async fn load<T: DeserializeOwned>(&self, key: &String) -> Result<Option<T>> {
        let Some(state) = self
            .store
            .load(&Self::key(key)?)
            .await
            .map_err(|e| -> BoxError { e.to_string().into() })?
        else {
            return Ok(None);
        };
        let json = state
            .get(STATE_KEY)
            .ok_or("actix-session state without the state entry")?;
        Ok(Some(serde_json::from_str(json)?))
    }

    async fn update<T: Serialize + Sync>(&self, key: &String, value: &T) -> Result<()> {
        let written: String = self
            .store
            .update(Self::key(key)?, Self::state(value)?, &Self::ttl())
            .await
            .map_err(|e| -> BoxError { e.to_string().into() })?
            .into();
        if &written != key {
            // `update` falls back to creating a new session when the old one expired.
            return Err(format!("actix-session session {key} had expired").into());
        }
        Ok(())
    }

    fn redis_key(&self, key: &String) -> String {
        key.clone()
    }
}
