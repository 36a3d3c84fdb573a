//! The pooled mode (feature `pool`): deadpool-redis connections with a cheaper recycle.
//!
//! deadpool-redis 0.23's own `Manager::recycle` sends `UNWATCH` + `PING` (one extra round trip)
//! on *every* checkout, and has no setting to turn that off. This store never uses `WATCH`,
//! `MULTI` or `SELECT` after connecting (writes are Lua scripts), so a pooled connection holds
//! no state to reset. [`FastRecycle`] therefore keeps deadpool-redis' `Manager` for creating
//! connections and recycles in one of two ways, like deadpool-postgres' `RecyclingMethod`:
//!
//! - used within the last [`VERIFY_AFTER_IDLE`]: handed out as is, no round trip ("fast");
//! - idle longer: one `PING` first ("verified"), since idle connections are the ones that
//!   firewalls and server `timeout` settings cut.
//!
//! A connection whose request fails with a dropped-connection or protocol error is taken out of
//! the pool instead of being returned, so the next checkout gets a fresh one.

use std::{num::NonZeroUsize, time::Duration};

use deadpool::managed::{self, Metrics, Object, Pool, RecycleError, RecycleResult, Timeouts};
use redis::{AsyncConnectionConfig, ConnectionInfo, RedisError, aio::MultiplexedConnection};
use session_core::{Error, Result};

use crate::{
    connection::{Failure, Request},
    errors::BACKEND,
    options::RedisOptions,
};

/// A pooled connection idle longer than this is checked with a `PING` before reuse.
pub const VERIFY_AFTER_IDLE: Duration = Duration::from_secs(30);

/// deadpool-redis' manager with a recycle that costs no round trip for busy connections.
pub(crate) struct FastRecycle {
    inner: deadpool_redis::Manager,
}

impl managed::Manager for FastRecycle {
    type Type = MultiplexedConnection;
    type Error = RedisError;

    async fn create(&self) -> Result<MultiplexedConnection, RedisError> {
        managed::Manager::create(&self.inner).await
    }

    async fn recycle(
        &self,
        conn: &mut MultiplexedConnection,
        metrics: &Metrics,
    ) -> RecycleResult<RedisError> {
        if metrics.last_used() < VERIFY_AFTER_IDLE {
            return Ok(());
        }
        redis::cmd("PING")
            .query_async::<redis::Value>(conn)
            .await
            .map(drop)
            .map_err(RecycleError::Backend)
    }
}

/// The pool.
#[derive(Clone)]
pub(crate) struct RedisPool {
    pool: Pool<FastRecycle>,
}

impl RedisPool {
    pub(crate) fn new(
        info: ConnectionInfo,
        driver_config: AsyncConnectionConfig,
        max_size: NonZeroUsize,
        options: &RedisOptions,
    ) -> Result<Self> {
        let inner = deadpool_redis::Manager::new_with_config(info, driver_config).map_err(|e| {
            Error::config(
                "REDIS_URL",
                options.redacted_url(),
                format!("a usable Redis address ({e})"),
            )
        })?;
        let pool = Pool::builder(FastRecycle { inner })
            .max_size(max_size.get())
            .runtime(deadpool::Runtime::Tokio1)
            .timeouts(Timeouts {
                // Waiting for a free connection when all are busy.
                wait: Some(options.connect_timeout()),
                create: Some(options.connect_timeout()),
                recycle: Some(options.command_timeout()),
            })
            .build()
            .map_err(|e| {
                Error::config(
                    "REDIS_POOL_SIZE",
                    max_size.to_string(),
                    format!("a pool that can be built ({e})"),
                )
            })?;
        Ok(Self { pool })
    }

    pub(crate) async fn run(&self, request: &Request<'_>) -> Result<redis::Value, Failure> {
        let mut conn = self.pool.get().await.map_err(pool_failure)?;
        let result = request.run(&mut *conn).await;
        if let Err(e) = &result
            && (e.is_unrecoverable_error() || e.is_io_error())
        {
            // Do not hand a broken connection to the next caller.
            drop(Object::take(conn));
        }
        result.map_err(Failure::Redis)
    }
}

fn pool_failure(e: managed::PoolError<RedisError>) -> Failure {
    match e {
        managed::PoolError::Backend(e) => Failure::Redis(e),
        managed::PoolError::Timeout(_) => Failure::Other(Error::Unavailable {
            backend: BACKEND,
            reason: "no pooled connection became available in time".to_owned(),
            source: None,
        }),
        other => Failure::Other(Error::Backend {
            backend: BACKEND,
            reason: format!("connection pool: {other}"),
            source: None,
        }),
    }
}
