//! From settings to the application state: the store, the manager, the backend report.

use std::sync::Arc;

use session_config::Settings;
use session_core::{Result, SessionManager, SessionStore, Summarize};

use crate::{Agent, AppState, BackendInfo};

/// A manager for agents on `store`, with default settings and the agent's summary (state and
/// attempts) in listings.
pub fn agent_manager(store: Arc<dyn SessionStore>) -> SessionManager<Agent> {
    SessionManager::builder(store)
        .summarize(Agent::summary)
        .build()
}

/// Builds the store the settings ask for (memory, or Redis with its fallback policy) and the
/// application state on it.
///
/// What the health endpoints report comes from the built store: the start-up fallback (Redis
/// configured but not usable at start-up, `SESSION_FALLBACK=startup`: memory for the life of
/// the process, `/readyz` 503), or the run-time fallback (`SESSION_FALLBACK=runtime`: its
/// state is read on every request). With Redis configured, `GET /store/info` asks that
/// server for its facts, whichever store serves.
pub async fn build_state(settings: &Settings) -> Result<AppState> {
    let store = settings.build_store().await?;
    let mut backend = if settings.use_redis {
        BackendInfo::redis()
    } else {
        BackendInfo::memory()
    };
    if let Some(fallback) = &store.fallback {
        backend = backend.with_startup_fallback(fallback.to_string());
    }
    if let Some(failover) = &store.failover {
        backend = backend.with_failover(failover.clone());
    }
    #[cfg(feature = "redis")]
    if settings.use_redis {
        // The store was built from the same options, so they are valid; should they not be,
        // the dashboard's server panel says so and nothing else is affected.
        match settings.redis_options() {
            Ok(options) => backend = backend.with_redis_options(options),
            Err(e) => tracing::warn!(
                component = "demo",
                error = %e,
                "no Redis server facts for /store/info"
            ),
        }
    }
    let manager = settings
        .manager_builder::<Agent>(store)
        .summarize(Agent::summary)
        .build();
    Ok(AppState::new(manager, backend))
}
