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
//! A connection the transport condemns (its request timed out or dropped, or it answered
//! `READONLY`, `LOADING` or `MASTERDOWN`: see `transport.rs`) is taken out of the pool instead
//! of being returned, so the next checkout gets another one, or a new one.

use std::{num::NonZeroUsize, sync::Arc, time::Duration, time::Instant};

use deadpool::managed::{self, Metrics, Object, Pool, RecycleError, RecycleResult, Timeouts};
use redis::{AsyncConnectionConfig, ConnectionInfo, RedisError, aio::MultiplexedConnection};
use session_core::{Error, Result};

use crate::{
    errors::{self, BACKEND},
    options::RedisOptions,
    transport::{Condemned, Transport},
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

/// The pool. Cloning is cheap.
#[derive(Clone)]
pub(crate) struct RedisPool {
    pool: Pool<FastRecycle>,
    url: Arc<str>,
}

impl RedisPool {
    /// A pool of up to `max_size` connections made from `info` with `driver_config` (the
    /// same TCP settings, TLS and credentials as the store's client). Connects nothing yet.
    pub(crate) fn new(
        info: ConnectionInfo,
        driver_config: AsyncConnectionConfig,
        max_size: NonZeroUsize,
        options: &RedisOptions,
        url: Arc<str>,
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
                // Waiting for a free connection when all are busy. The transport bounds the
                // whole checkout by the connect timeout as well: a checkout may recycle
                // several idle connections before it finds a good one.
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
        Ok(Self { pool, url })
    }
}

impl Transport for RedisPool {
    type Lease = Object<FastRecycle>;
    type Conn = MultiplexedConnection;

    async fn checkout(&self, by: Instant) -> Result<Object<FastRecycle>> {
        match tokio::time::timeout_at(by.into(), self.pool.get()).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(pool_failure(e, &self.url)),
            Err(_) => Err(no_connection_in_time(&self.url)),
        }
    }

    fn connection(lease: &mut Object<FastRecycle>) -> &mut MultiplexedConnection {
        lease
    }

    fn condemn(&self, lease: Object<FastRecycle>, why: &Condemned) {
        tracing::debug!(
            component = "session",
            backend = BACKEND,
            url = %self.url,
            reason = %why,
            "taking a pooled connection out of the pool"
        );
        drop(Object::take(lease));
        if matches!(why, Condemned::Broken(_) | Condemned::NotServing(_)) {
            // A connection that broke usually means the server restarted (or a link
            // dropped), and one that does not serve means the server was demoted: the idle
            // connections made before it are in the same state. Handed out one at a time,
            // each would cost a request its resend (and a write its resolve).
            let now = Instant::now();
            let dropped = self
                .pool
                .retain(|_, metrics| metrics.created > now)
                .removed
                .len();
            if dropped > 0 {
                tracing::debug!(
                    component = "session",
                    backend = BACKEND,
                    url = %self.url,
                    dropped,
                    "dropped the idle pooled connections made before it"
                );
            }
        }
    }
}

fn no_connection_in_time(url: &str) -> Error {
    Error::Unavailable {
        backend: BACKEND,
        reason: format!("no pooled connection to {url} became available in time"),
        source: None,
    }
}

fn pool_failure(e: managed::PoolError<RedisError>, url: &str) -> Error {
    match e {
        // Creating a connection failed: refused, timed out, credentials refused ...
        managed::PoolError::Backend(e) => errors::map(e, "connecting", url),
        managed::PoolError::Timeout(_) => no_connection_in_time(url),
        other => Error::Backend {
            backend: BACKEND,
            reason: format!("connection pool for {url}: {other}"),
            source: None,
        },
    }
}
