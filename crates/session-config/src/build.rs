//! From settings to a store and a [`SessionManager`]: the memory store, or the Redis store
//! with the start-up fallback.

use std::{fmt, sync::Arc};

use serde::{Serialize, de::DeserializeOwned};
use session_core::{Error, FailoverStore, ManagerBuilder, Result, SessionManager, SessionStore};
use session_memory::MemoryStore;

use crate::Settings;

/// The gauge [`Settings::build_store`] sets through the `metrics` facade: `1` when the memory
/// store stands in for an unreachable Redis (the fallback is active), `0` otherwise.
pub const FALLBACK_ACTIVE_GAUGE: &str = session_core::observe::metric::FALLBACK_ACTIVE;

/// What [`Settings::build_store`] built: the store to use and, when Redis was asked for but
/// could not be used at start-up, why the memory store stands in for it.
///
/// Hand it to [`Settings::manager_builder`] (it converts into the `Arc<dyn SessionStore>`),
/// and keep [`fallback`](Self::fallback) for a health endpoint.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BuiltStore {
    /// The store in use: Redis, or memory.
    pub store: Arc<dyn SessionStore>,
    /// `Some` when `USE_REDIS` is true but Redis could not be used at start-up and the
    /// `startup` fallback policy chose the memory store.
    pub fallback: Option<Fallback>,
    /// With `SESSION_FALLBACK=runtime`: the failover store (the same one as
    /// [`store`](Self::store)), whose [`status`](FailoverStore::status) tells a health
    /// endpoint whether it serves from Redis or from memory, and what it owes Redis.
    pub failover: Option<FailoverStore>,
}

impl BuiltStore {
    /// The name of the backend in use: `redis` or `memory`.
    pub fn backend(&self) -> &'static str {
        self.store.backend()
    }

    /// Whether the memory store stands in for Redis: for the life of the process (the
    /// start-up fallback), or now, until Redis answers again (the run-time fallback).
    pub fn fallback_active(&self) -> bool {
        self.fallback.is_some()
            || self
                .failover
                .as_ref()
                .is_some_and(|f| f.status().mode != session_core::FailoverMode::Primary)
    }

    /// Whether this store can give every session back to Redis: `false` only for the
    /// start-up fallback, whose sessions stay in this process (a readiness check answers
    /// "not ready" then). The run-time fallback writes back what it changed.
    pub fn reconcilable(&self) -> bool {
        self.fallback.is_none()
    }
}

impl From<BuiltStore> for Arc<dyn SessionStore> {
    fn from(built: BuiltStore) -> Self {
        built.store
    }
}

/// Why sessions are kept in memory although `USE_REDIS` is true. Holds no credential.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Fallback {
    /// What failed, in words: the connect error's text, which names the redacted URL.
    pub reason: String,
    /// The Redis URL that was tried, the password masked (`redis://user:***@host:6379/0`).
    pub redis_url: String,
    /// The kind of the connect error ([`Error::kind`]): `unavailable` (not reachable, or not
    /// in time). Refused credentials never fall back.
    pub error_kind: &'static str,
}

impl fmt::Display for Fallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sessions are kept in memory because Redis at {} cannot be used: {}",
            self.redis_url, self.reason
        )
    }
}

impl Settings {
    /// The in-memory store with the configured capacity (`MEMORY_CAPACITY`), whatever
    /// `USE_REDIS` says: for development, tests, and as the fallback.
    pub fn memory_store(&self) -> Arc<dyn SessionStore> {
        match self.memory.capacity {
            Some(capacity) => Arc::new(MemoryStore::with_capacity(capacity)),
            None => Arc::new(MemoryStore::new()),
        }
    }

    /// The store these settings ask for: the memory store when `USE_REDIS` is false; when it
    /// is true, the Redis store, connected (TCP, TLS, `AUTH`, `SELECT`, `PING`) within the
    /// connect timeout.
    ///
    /// When Redis cannot be reached at start-up ([`Error::Unavailable`]: nothing answers, or
    /// not in time), the fallback policy decides:
    /// - `startup`: the memory store is returned with a [`Fallback`] saying why, and a warning
    ///   is logged (`component = "session"`, `backend = "memory"`,
    ///   `event_type = "fallback_activated"`, the reason and the redacted URL); the sessions
    ///   stay in this process for its life;
    /// - `runtime`: a [`FailoverStore`] that serves from memory, connects to Redis as soon
    ///   as it answers and writes back what changed meanwhile; the same store, connected,
    ///   when Redis answers at start-up ([`BuiltStore::failover`] tells its state). A call
    ///   that Redis does not answer within `REDIS_COMMAND_TIMEOUT_MS` is answered from memory;
    /// - `none`: that error is returned.
    ///
    /// Refused credentials ([`Error::Auth`]) never fall back: they are a configuration
    /// error, and a service that hid them behind memory would lose every session at its
    /// next restart.
    ///
    /// Either way the gauge [`FALLBACK_ACTIVE_GAUGE`] is set (`1` with a fallback, else `0`).
    ///
    /// Errors: [`Error::Config`] when `USE_REDIS` is true in a build without the `redis`
    /// feature, or for what the settings ask and the build or the files cannot give (TLS or
    /// the pool without their feature, unreadable TLS files): configuration errors are never
    /// hidden by the fallback. Any other Redis error ([`Error::Backend`], e.g. `SELECT`
    /// refused) is returned too.
    pub async fn build_store(&self) -> Result<BuiltStore> {
        let built = if self.use_redis {
            self.redis_store().await?
        } else {
            BuiltStore {
                store: self.memory_store(),
                fallback: None,
                failover: None,
            }
        };
        metrics::gauge!(FALLBACK_ACTIVE_GAUGE).set(if built.fallback_active() { 1.0 } else { 0.0 });
        Ok(built)
    }

    #[cfg(not(feature = "redis"))]
    async fn redis_store(&self) -> Result<BuiltStore> {
        Err(Error::config(
            "USE_REDIS",
            "true",
            "false: this build has no Redis support (enable the feature `redis` of \
             session-config)",
        ))
    }

    #[cfg(feature = "redis")]
    async fn redis_store(&self) -> Result<BuiltStore> {
        use session_core::{FallbackPolicy, observe::event};
        use session_redis::RedisStore;

        let options = self.redis_options()?;
        let redis_url = options.redacted_url();
        let error = match RedisStore::connect(options.clone()).await {
            Ok(store) => {
                tracing::info!(
                    component = "session",
                    backend = "redis",
                    redis_url = %redis_url,
                    fallback = %self.fallback,
                    "sessions are kept in Redis"
                );
                let store: Arc<dyn SessionStore> = Arc::new(store);
                if self.fallback == FallbackPolicy::Runtime {
                    let failover = FailoverStore::builder(store)
                        .switch_after(self.redis.command_timeout)
                        .dirty_limit(
                            self.memory.fallback_max_sessions,
                            self.memory.fallback_max_bytes,
                        )
                        .build();
                    return Ok(BuiltStore {
                        store: Arc::new(failover.clone()),
                        fallback: None,
                        failover: Some(failover),
                    });
                }
                return Ok(BuiltStore {
                    store,
                    fallback: None,
                    failover: None,
                });
            }
            Err(e) => e,
        };
        // Only an unreachable server is an outage. Refused credentials, a refused SELECT ...
        // are configuration errors: falling back would hide them behind a working service.
        if !matches!(error, Error::Unavailable { .. }) {
            return Err(error);
        }
        if self.fallback == FallbackPolicy::Runtime {
            tracing::warn!(
                component = "session",
                backend = "memory",
                event_type = event::FALLBACK_ACTIVATED,
                redis_url = %redis_url,
                reason = %error,
                "Redis cannot be reached at start-up: sessions are kept in memory until it \
                 answers, then written back to it"
            );
            let failover = FailoverStore::connecting("redis", error.to_string(), move || {
                let options = options.clone();
                async move {
                    let store = RedisStore::connect(options).await?;
                    Ok(Arc::new(store) as Arc<dyn SessionStore>)
                }
            })
            .switch_after(self.redis.command_timeout)
            .dirty_limit(
                self.memory.fallback_max_sessions,
                self.memory.fallback_max_bytes,
            )
            .build();
            return Ok(BuiltStore {
                store: Arc::new(failover.clone()),
                fallback: None,
                failover: Some(failover),
            });
        }
        if self.fallback != FallbackPolicy::Startup {
            return Err(without_fallback(error, self.fallback));
        }
        let fallback = Fallback {
            reason: error.to_string(),
            redis_url,
            error_kind: error.kind(),
        };
        tracing::warn!(
            component = "session",
            backend = "memory",
            event_type = event::FALLBACK_ACTIVATED,
            redis_url = %fallback.redis_url,
            reason = %fallback.reason,
            "Redis cannot be used at start-up: sessions are kept in memory for the life of this \
             process (lost on restart, not shared between instances)"
        );
        Ok(BuiltStore {
            store: self.memory_store(),
            fallback: Some(fallback),
            failover: None,
        })
    }

    /// The options for connecting to Redis directly, without any fallback (for tools such as
    /// `sessionctl` that must talk to Redis or fail): target, key prefix, timeouts, connection
    /// mode and TLS files, as loaded.
    ///
    /// With a cluster the options name its nodes ([`RedisOptions::cluster`]), with Sentinel
    /// the sentinels and the master ([`RedisOptions::with_sentinels`]); replicated
    /// acknowledgement (`REDIS_REPLICATED_ACK`) and bounded reads (`SESSION_BOUNDED_READS`,
    /// at `SESSION_MAX_BYTES`) are applied when set.
    ///
    /// Errors: [`Error::Config`] when the settings ask for TLS (`rediss://`, `REDIS_TLS`) in a
    /// build without the `tls` feature, for `REDIS_MODE=pool` without the `pool` feature, or
    /// for a cluster or Sentinel without the `cluster` or `sentinel` feature; the error names
    /// the setting as the user spelled it.
    ///
    /// [`RedisOptions::cluster`]: session_redis::RedisOptions::cluster
    /// [`RedisOptions::with_sentinels`]: session_redis::RedisOptions::with_sentinels
    #[cfg(feature = "redis")]
    pub fn redis_options(&self) -> Result<session_redis::RedisOptions> {
        use crate::Deployment;

        let redis = &self.redis;
        let tls = match &redis.deployment {
            Deployment::Single => redis.target.tls(),
            Deployment::Cluster { nodes } => nodes.iter().any(crate::RedisTarget::tls),
            Deployment::Sentinel { sentinels, .. } => {
                redis.target.tls() || sentinels.iter().any(crate::RedisTarget::tls)
            }
        };
        if tls && !cfg!(feature = "tls") {
            let key = redis.asked.tls.unwrap_or("REDIS_URL");
            let value = if key.contains("TLS") || key.contains("tls") {
                "\"true\"".to_owned()
            } else if key.contains("URL") || key.contains("url") {
                format!("{:?}", redis.target.redacted_url())
            } else {
                "(rediss://)".to_owned()
            };
            return Err(Error::config(
                key,
                value,
                "a plain redis:// connection: this build has no TLS support (enable the \
                 feature `tls` of session-config)",
            ));
        }
        if matches!(redis.mode, crate::ConnectionMode::Pool { .. }) && !cfg!(feature = "pool") {
            return Err(Error::config(
                redis.asked.pool.unwrap_or("REDIS_MODE"),
                "\"pool\"",
                "multiplexed: this build has no connection pool (enable the feature `pool` of \
                 session-config)",
            ));
        }
        let missing_feature = |feature: &str, default_key: &str| {
            Error::config(
                redis.asked.deployment.unwrap_or(default_key),
                format!("(a {feature} deployment: {})", redis.deployment),
                format!(
                    "one server: this build has no {feature} support (enable the feature \
                     `{feature}` of session-config)"
                ),
            )
        };
        let options = match &redis.deployment {
            Deployment::Single => session_redis::RedisOptions::new(redis.target.clone()),
            Deployment::Cluster { nodes } => {
                if !cfg!(feature = "cluster") {
                    return Err(missing_feature("cluster", "REDIS_CLUSTER_NODES"));
                }
                session_redis::RedisOptions::cluster(nodes.clone())?
            }
            Deployment::Sentinel { sentinels, master } => {
                if !cfg!(feature = "sentinel") {
                    return Err(missing_feature("sentinel", "REDIS_SENTINELS"));
                }
                session_redis::RedisOptions::new(redis.target.clone())
                    .with_sentinels(sentinels.clone(), master.clone())?
            }
        };
        let mut options = options
            .with_prefix(redis.key_prefix.clone())
            .with_connect_timeout(redis.connect_timeout)
            .with_command_timeout(redis.command_timeout)
            .with_mode(redis.mode)
            .with_tls_files(redis.tls.clone());
        if let Some(ack) = redis.replicated_ack {
            options = options.with_replicated_ack(ack.replicas, ack.timeout);
        }
        if self.session.bounded_reads {
            options = options.with_read_limit(self.session.max_size);
        }
        Ok(options)
    }

    /// A [`ManagerBuilder`] on `store` (an `Arc<dyn SessionStore>` or a [`BuiltStore`]) with
    /// the session settings applied: TTL, the [`codec`](Self::codec) (size limit,
    /// compression and encryption keys), sliding expiry and the bound on `modify` attempts. Add a summary, then
    /// `build()`.
    pub fn manager_builder<T>(&self, store: impl Into<Arc<dyn SessionStore>>) -> ManagerBuilder<T>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        let session = &self.session;
        let builder = SessionManager::<T>::builder(store.into())
            .ttl(session.ttl)
            .codec(self.codec())
            .max_attempts(session.max_modify_attempts);
        match session.sliding_expiry {
            Some(interval) => builder.sliding_expiry(interval),
            None => builder,
        }
    }

    /// [`build_store`](Self::build_store), then a manager on it with the session settings.
    ///
    /// A fallback to memory is logged and counted in [`FALLBACK_ACTIVE_GAUGE`]; a caller that
    /// must know about it (a health endpoint) calls `build_store` and
    /// [`manager_builder`](Self::manager_builder) instead, and keeps [`BuiltStore::fallback`].
    pub async fn build_manager<T>(&self) -> Result<SessionManager<T>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        let built = self.build_store().await?;
        Ok(self.manager_builder(built).build())
    }
}

/// `error` (Redis unavailable, or credentials refused) with a word on why there was no
/// fallback, so that the operator knows the service stopped on purpose.
#[cfg(feature = "redis")]
fn without_fallback(error: Error, policy: session_core::FallbackPolicy) -> Error {
    let note = format!(" (SESSION_FALLBACK is {policy}: no fallback to memory)");
    match error {
        Error::Unavailable {
            backend,
            reason,
            source,
        } => Error::Unavailable {
            backend,
            reason: reason + &note,
            source,
        },
        Error::Auth { backend, reason } => Error::Auth {
            backend,
            reason: reason + &note,
        },
        other => other,
    }
}
