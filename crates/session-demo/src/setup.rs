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
/// The fallback is active when Redis is configured but could not be used at start-up and the
/// `startup` policy chose the memory store; `/healthz` then says why.
pub async fn build_state(settings: &Settings) -> Result<AppState> {
    let store = settings.build_store().await?;
    let backend = BackendInfo {
        redis_configured: settings.use_redis,
        fallback_active: store.fallback_active(),
        fallback_reason: store.fallback.as_ref().map(ToString::to_string),
    };
    let manager = settings
        .manager_builder::<Agent>(store)
        .summarize(Agent::summary)
        .build();
    Ok(AppState::new(manager, backend))
}
