//! The raw redis-rs baselines: the same bytes, the same kind of connection, no library.

use std::time::Duration;

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use redis::{Client, RedisError, aio::MultiplexedConnection};

use crate::BoxResult;

/// `GET key` as bytes.
pub(crate) async fn get(con: &mut impl redis::aio::ConnectionLike, key: &str) -> BoxResult<()> {
    let v: Option<Vec<u8>> = redis::cmd("GET").arg(key).query_async(con).await?;
    if v.is_none() {
        return Err(format!("raw GET {key}: no value").into());
    }
    Ok(())
}

/// `GET key`: the bytes.
pub(crate) async fn get_bytes(
    con: &mut impl redis::aio::ConnectionLike,
    key: &str,
) -> BoxResult<Vec<u8>> {
    let v: Option<Vec<u8>> = redis::cmd("GET").arg(key).query_async(con).await?;
    v.ok_or_else(|| format!("raw GET {key}: no value").into())
}

/// `SET key bytes EX 3600`.
pub(crate) async fn set_ex(
    con: &mut impl redis::aio::ConnectionLike,
    key: &str,
    bytes: &[u8],
) -> BoxResult<()> {
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg(bytes)
        .arg("EX")
        .arg(3600)
        .query_async(con)
        .await?;
    Ok(())
}

/// `MEMORY USAGE key SAMPLES 0`: the bytes Redis holds for the key (all of a hash's fields).
pub(crate) async fn memory_usage(
    con: &mut impl redis::aio::ConnectionLike,
    key: &str,
) -> BoxResult<u64> {
    let usage: Option<u64> = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(key)
        .arg("SAMPLES")
        .arg(0)
        .query_async(con)
        .await?;
    usage.ok_or_else(|| format!("MEMORY USAGE {key}: no such key").into())
}

/// A deadpool manager that recycles like session-redis' pool mode (whose pool is not public):
/// no round trip for a connection used within the last 30 s, a `PING` otherwise.
pub(crate) struct FastRecycle {
    client: Client,
}

impl FastRecycle {
    pub(crate) fn new(url: &str) -> BoxResult<Self> {
        Ok(FastRecycle {
            client: Client::open(url)?,
        })
    }
}

impl managed::Manager for FastRecycle {
    type Type = MultiplexedConnection;
    type Error = RedisError;

    async fn create(&self) -> Result<MultiplexedConnection, RedisError> {
        self.client.get_multiplexed_async_connection().await
    }

    async fn recycle(
        &self,
        conn: &mut MultiplexedConnection,
        metrics: &Metrics,
    ) -> RecycleResult<RedisError> {
        if metrics.last_used() < Duration::from_secs(30) {
            return Ok(());
        }
        redis::cmd("PING")
            .query_async::<redis::Value>(conn)
            .await
            .map(drop)
            .map_err(RecycleError::Backend)
    }
}

/// A pool of [`FastRecycle`] connections.
pub(crate) type FastPool = managed::Pool<FastRecycle>;

pub(crate) fn fast_pool(url: &str, max_size: usize) -> BoxResult<FastPool> {
    Ok(managed::Pool::builder(FastRecycle::new(url)?)
        .max_size(max_size)
        .build()?)
}

/// deadpool-redis' own pool (recycles with `UNWATCH` + `PING` on every checkout).
pub(crate) fn deadpool_redis_pool(url: &str, max_size: usize) -> BoxResult<deadpool_redis::Pool> {
    let mut cfg = deadpool_redis::Config::from_url(url);
    cfg.pool = Some(deadpool_redis::PoolConfig::new(max_size));
    Ok(cfg.create_pool(Some(deadpool_redis::Runtime::Tokio1))?)
}
