//! `GET /store/info`: the store behind the sessions, as the dashboard's header panel shows it:
//! the backend in use, the fallback's state, and what the configured Redis server says about
//! itself (version, mode, memory against `maxmemory`, eviction policy, persistence).
//!
//! ```json
//! {"backend": "redis", "redis_configured": true, "fallback_active": false, "fallback": null,
//!  "redis": {"reachable": true, "server": {"server": "redis", "version": "7.0.15",
//!   "mode": "standalone", "role": "master", "used_memory": 1048576, "maxmemory": 0,
//!   "maxmemory_policy": "noeviction", "aof_enabled": false, "rdb_save_points": "3600 1", ...}}}
//! ```
//!
//! The report names no address and no credential: neither the URL nor the fallback's reason
//! (which names the server) is in it, and a failure to reach Redis is given as its error
//! kind only (`unavailable`, `auth` ...; the detail goes to the log).

use axum::{Json, extract::State};
use serde::Serialize;
use session_core::FailoverStore;

use crate::{health::FallbackReport, http::AppState};

/// The body of `GET /store/info`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoreInfo {
    /// The store in use now: `memory` or `redis`.
    pub backend: String,
    /// Whether Redis is configured (`USE_REDIS`).
    pub redis_configured: bool,
    /// Whether sessions are kept in memory although Redis is configured.
    pub fallback_active: bool,
    /// The fallback's state, as in the health report but without its `reason`: always with
    /// `SESSION_FALLBACK=runtime` (mode `primary` while Redis serves), and while the start-up
    /// fallback serves.
    pub fallback: Option<FallbackReport>,
    /// The configured Redis server, asked just now; `null` when Redis is not configured.
    pub redis: Option<RedisReport>,
}

/// The `redis` part of [`StoreInfo`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RedisReport {
    /// Whether the server answered.
    pub reachable: bool,
    /// Why not, as an error kind (`unavailable`, `auth`, `config` ...), when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What the server reports about itself, when it answered.
    #[cfg(feature = "redis")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<session_redis::ServerInfo>,
}

/// `GET /store/info`.
pub(crate) async fn store_info(State(state): State<AppState>) -> Json<StoreInfo> {
    Json(report(&state).await)
}

/// The report: the store in use and the fallback's state now, and the Redis server's answer
/// (within [`HEALTH_TIMEOUT`](crate::health::HEALTH_TIMEOUT)).
pub async fn report(state: &AppState) -> StoreInfo {
    let info = state.backend();
    let redis = if info.redis_configured() {
        Some(ask_redis(state).await)
    } else {
        None
    };
    // After the question to Redis: the fallback's state as fresh as it gets.
    let failover = info.failover().map(FailoverStore::status);
    let fallback = info.report(failover.as_ref()).map(|mut report| {
        report.reason = None;
        report
    });
    StoreInfo {
        backend: state.manager().backend().to_owned(),
        redis_configured: info.redis_configured(),
        fallback_active: info.fallback_active_in(failover.as_ref()),
        fallback,
        redis,
    }
}

#[cfg(feature = "redis")]
async fn ask_redis(state: &AppState) -> RedisReport {
    use crate::health::HEALTH_TIMEOUT;

    let failed = |kind: &str| RedisReport {
        reachable: false,
        error: Some(kind.to_owned()),
        server: None,
    };
    let Some(options) = state.backend().redis_options() else {
        return failed("config");
    };
    match tokio::time::timeout(HEALTH_TIMEOUT, options.server_info()).await {
        Ok(Ok(server)) => RedisReport {
            reachable: true,
            error: None,
            server: Some(server),
        },
        Ok(Err(e)) => {
            tracing::debug!(component = "demo", error = %e, "redis server info unavailable");
            failed(e.kind())
        }
        Err(_) => failed("unavailable"),
    }
}

#[cfg(not(feature = "redis"))]
async fn ask_redis(_state: &AppState) -> RedisReport {
    RedisReport {
        reachable: false,
        error: Some("config".to_owned()),
    }
}
