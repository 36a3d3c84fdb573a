//! From settings to a store and a [`SessionManager`].

use std::sync::Arc;

use serde::{Serialize, de::DeserializeOwned};
use session_core::{Error, ManagerBuilder, Result, SessionManager, SessionStore};
use session_memory::MemoryStore;

use crate::Settings;

impl Settings {
    /// The in-memory store with the configured capacity (`MEMORY_CAPACITY`), whatever
    /// `USE_REDIS` says: for development, tests, and as the fallback.
    pub fn memory_store(&self) -> Arc<dyn SessionStore> {
        match self.memory.capacity {
            Some(capacity) => Arc::new(MemoryStore::with_capacity(capacity)),
            None => Arc::new(MemoryStore::new()),
        }
    }

    /// The store these settings ask for: the memory store when `USE_REDIS` is false, the Redis
    /// store (with the fallback policy) when it is true.
    ///
    /// Errors: [`Error::Config`] when `USE_REDIS` is true in a build without the `redis`
    /// feature; with it, the Redis store's errors.
    pub async fn build_store(&self) -> Result<Arc<dyn SessionStore>> {
        if !self.use_redis {
            return Ok(self.memory_store());
        }
        self.redis_store().await
    }

    #[cfg(not(feature = "redis"))]
    async fn redis_store(&self) -> Result<Arc<dyn SessionStore>> {
        Err(Error::config(
            "USE_REDIS",
            "true",
            "false: this build has no Redis support (enable the feature `redis` of \
             session-config)",
        ))
    }

    #[cfg(feature = "redis")]
    async fn redis_store(&self) -> Result<Arc<dyn SessionStore>> {
        // The Redis store arrives with session-redis; until then the feature is a placeholder.
        Err(Error::config(
            "USE_REDIS",
            "true",
            "false: the Redis store is not wired into session-config yet",
        ))
    }

    /// A [`ManagerBuilder`] on `store` with the session settings applied: TTL, size limit,
    /// sliding expiry and the bound on `modify` attempts. Add a summary, then `build()`.
    pub fn manager_builder<T>(&self, store: Arc<dyn SessionStore>) -> ManagerBuilder<T>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        let session = &self.session;
        let builder = SessionManager::<T>::builder(store)
            .ttl(session.ttl)
            .max_size(session.max_size)
            .max_attempts(session.max_modify_attempts);
        match session.sliding_expiry {
            Some(interval) => builder.sliding_expiry(interval),
            None => builder,
        }
    }

    /// [`build_store`](Self::build_store), then a manager on it with the session settings.
    pub async fn build_manager<T>(&self) -> Result<SessionManager<T>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        let store = self.build_store().await?;
        Ok(self.manager_builder(store).build())
    }
}
