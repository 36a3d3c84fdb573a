//! Health: `GET /healthz` (liveness) and `GET /readyz` (readiness), both computed on every
//! request from the store in use and its fallback, never frozen at start-up.
//!
//! | state | `status` | `/healthz` | `/readyz` |
//! |---|---|---|---|
//! | the configured store answers | `ok` | 200 | 200 |
//! | the run-time fallback serves (`SESSION_FALLBACK=runtime`, Redis down; or writing back) | `degraded` | 200 | 200: what changes meanwhile is written back |
//! | the start-up fallback serves (`SESSION_FALLBACK=startup`, Redis was down at start) | `degraded` | 200 | 503: its sessions never reach Redis |
//! | the store in use does not answer (`SESSION_FALLBACK=none`, Redis down) | `unavailable` | 200 | 503 |
//!
//! `/healthz` answers 200 whenever the process serves requests: restarting it would not bring
//! Redis back. `/readyz` answers 503 when this instance should get no traffic. Both return the
//! same [`HealthReport`].

use std::time::{Duration, SystemTime};

use axum::{Json, extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};
use session_core::{Error, FailoverMode, FailoverStatus, FailoverStore, Timestamp};

use crate::http::AppState;

/// How long a health request waits for the store to answer.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// Gauge: 1 while sessions are kept in memory although Redis is configured (either fallback),
/// set from the live state on every health and metrics request (the run-time fallback also
/// sets it when it switches).
pub const FALLBACK_GAUGE: &str = session_core::observe::metric::FALLBACK_ACTIVE;

/// Which store serves the sessions, and its fallback, as the health endpoints report it.
///
/// `BackendInfo::default()` is the memory store without Redis configured.
///
/// ```
/// use session_demo::BackendInfo;
///
/// let info = BackendInfo::redis().with_startup_fallback("redis at redis://db:6379/0 is unavailable");
/// assert!(info.fallback_active());
/// assert!(!info.reconcilable());
/// assert!(BackendInfo::redis().reconcilable());
/// ```
#[derive(Debug, Clone, Default)]
pub struct BackendInfo {
    redis_configured: bool,
    startup_fallback: Option<StartupFallback>,
    failover: Option<FailoverStore>,
    /// The server `GET /store/info` asks about itself.
    #[cfg(feature = "redis")]
    redis_options: Option<session_redis::RedisOptions>,
}

/// The start-up fallback: why, and since when.
#[derive(Debug, Clone)]
struct StartupFallback {
    reason: String,
    since: Timestamp,
}

impl BackendInfo {
    /// Sessions in memory, Redis not configured (`USE_REDIS=false`).
    pub fn memory() -> Self {
        Self::default()
    }

    /// Redis configured (`USE_REDIS=true`).
    pub fn redis() -> Self {
        Self {
            redis_configured: true,
            ..Self::default()
        }
    }

    /// The start-up fallback serves, since now: Redis could not be used at start-up and the
    /// `startup` policy chose the memory store for the life of the process. `reason` says
    /// what failed (the redacted URL, no credential).
    #[must_use]
    pub fn with_startup_fallback(mut self, reason: impl Into<String>) -> Self {
        self.startup_fallback = Some(StartupFallback {
            reason: reason.into(),
            since: Timestamp::now(),
        });
        self
    }

    /// The run-time fallback (`SESSION_FALLBACK=runtime`): the failover store the manager
    /// uses, whose state is read on every health request.
    #[must_use]
    pub fn with_failover(mut self, failover: FailoverStore) -> Self {
        self.failover = Some(failover);
        self
    }

    /// The Redis server whose facts `GET /store/info` reports (version, memory, eviction
    /// policy, persistence): the configured one, also while a fallback serves.
    #[cfg(feature = "redis")]
    #[must_use]
    pub fn with_redis_options(mut self, options: session_redis::RedisOptions) -> Self {
        self.redis_options = Some(options);
        self
    }

    /// The Redis server `GET /store/info` asks, if one was given.
    #[cfg(feature = "redis")]
    pub fn redis_options(&self) -> Option<&session_redis::RedisOptions> {
        self.redis_options.as_ref()
    }

    /// Whether Redis is configured (`USE_REDIS`).
    pub fn redis_configured(&self) -> bool {
        self.redis_configured
    }

    /// The run-time failover store, if there is one.
    pub fn failover(&self) -> Option<&FailoverStore> {
        self.failover.as_ref()
    }

    /// Whether sessions are kept in memory although Redis is configured, now: the start-up
    /// fallback, or the run-time fallback until it has written back.
    pub fn fallback_active(&self) -> bool {
        self.fallback_active_in(self.failover.as_ref().map(FailoverStore::status).as_ref())
    }

    /// [`fallback_active`](Self::fallback_active) with the run-time fallback's `status`
    /// (read once per report).
    pub(crate) fn fallback_active_in(&self, status: Option<&FailoverStatus>) -> bool {
        self.startup_fallback.is_some() || status.is_some_and(|s| s.mode != FailoverMode::Primary)
    }

    /// Why a fallback serves now, if one does: the error itself, with the redacted URL (for
    /// logs; reports say it in general words).
    pub fn fallback_reason(&self) -> Option<String> {
        if let Some(startup) = &self.startup_fallback {
            return Some(startup.reason.clone());
        }
        self.failover.as_ref().and_then(|f| f.status().reason)
    }

    /// Whether every session this instance holds reaches Redis: `false` only on the start-up
    /// fallback, whose sessions stay in this process.
    pub fn reconcilable(&self) -> bool {
        self.startup_fallback.is_none()
    }

    /// Sets [`FALLBACK_GAUGE`] from the live state.
    pub(crate) fn publish_gauge(&self) {
        publish_gauge(self.fallback_active());
    }

    /// The `fallback` part of a report, from `status` (read once per report) for the run-time
    /// fallback.
    pub(crate) fn report(&self, status: Option<&FailoverStatus>) -> Option<FallbackReport> {
        if let Some(startup) = &self.startup_fallback {
            return Some(FallbackReport {
                policy: "startup".to_owned(),
                mode: FailoverMode::Fallback.as_str().to_owned(),
                reconcilable: false,
                since: Some(startup.since.to_string()),
                seconds: Some(seconds_since(startup.since)),
                reason: Some(STARTUP_FALLBACK_REASON.to_owned()),
                counts: None,
            });
        }
        let status = status?;
        let since = status.fallback_for.map(|d| {
            let start = SystemTime::now()
                .checked_sub(d)
                .unwrap_or(SystemTime::UNIX_EPOCH);
            Timestamp::from(start).to_string()
        });
        Some(FallbackReport {
            policy: "runtime".to_owned(),
            mode: status.mode.as_str().to_owned(),
            reconcilable: true,
            since,
            seconds: status.fallback_for.map(rounded_secs),
            reason: status
                .reason
                .as_ref()
                .map(|_| RUNTIME_FALLBACK_REASON.to_owned()),
            counts: Some(FailoverCounts::from(status)),
        })
    }
}

/// The body of `GET /healthz` and `GET /readyz`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthReport {
    /// `ok`; `degraded` while a fallback serves; `unavailable` when the store in use does not
    /// answer.
    pub status: String,
    /// Whether this instance should get traffic: what `/readyz` answers (200 or 503).
    pub ready: bool,
    /// Why it should not, when it should not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_ready_reason: Option<String>,
    /// The store in use now: `memory` or `redis`.
    pub backend: String,
    /// Whether sessions are kept in memory although Redis is configured.
    pub fallback_active: bool,
    /// Why the fallback serves, when it does, in general words ([`STARTUP_FALLBACK_REASON`],
    /// [`RUNTIME_FALLBACK_REASON`]; the error itself is in the log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
    /// The fallback's state: always with `SESSION_FALLBACK=runtime` (mode `primary` while
    /// Redis serves), and while the start-up fallback serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<FallbackReport>,
    /// The TTL every write sets, in seconds (the dashboard's TTL bar is relative to it).
    pub session_ttl: u64,
    /// Redis as seen from here.
    pub redis: RedisHealth,
    /// Why the store failed its check, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The `fallback` part of [`HealthReport`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FallbackReport {
    /// `startup` or `runtime` (`SESSION_FALLBACK`).
    pub policy: String,
    /// `primary` (Redis serves), `fallback` (memory serves), `writing_back` (Redis answers
    /// again and what changed meanwhile is being written back; memory still serves).
    pub mode: String,
    /// Whether what the fallback holds reaches Redis: `true` for `runtime`, `false` for
    /// `startup` (then `/readyz` answers 503).
    pub reconcilable: bool,
    /// Since when the fallback serves, RFC 3339 (`null` on the primary).
    pub since: Option<String>,
    /// For how many seconds.
    pub seconds: Option<f64>,
    /// Why the sessions went to memory, in general words (the error, which names the server,
    /// is in the log).
    pub reason: Option<String>,
    /// The run-time fallback's counts.
    #[serde(default, flatten, skip_serializing_if = "Option::is_none")]
    pub counts: Option<FailoverCounts>,
}

/// What the run-time fallback holds and has done ([`FailoverStatus`]), in a [`FallbackReport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverCounts {
    /// Sessions changed in memory and owed to Redis.
    pub dirty_sessions: usize,
    /// Their bytes.
    pub dirty_bytes: usize,
    /// Sessions this instance holds a copy of (clean and dirty).
    pub near_copy_sessions: usize,
    /// Their bytes.
    pub near_copy_bytes: usize,
    /// Switches to memory since start-up.
    pub activations: u64,
    /// Returns to Redis (write-back done) since start-up.
    pub recoveries: u64,
    /// Sessions written back (restored ones and replayed deletes included).
    pub written_back: u64,
    /// Write-backs that met a change by another instance (resolved by the rule, logged).
    pub conflicts: u64,
    /// Changes refused during an outage because the fallback's bounds were reached.
    pub overflowed: u64,
    /// Copies dropped to stay within bounds.
    pub evicted: u64,
    /// Write-backs that failed for another reason than an outage (logged).
    pub failed: u64,
}

impl From<&FailoverStatus> for FailoverCounts {
    fn from(s: &FailoverStatus) -> Self {
        Self {
            dirty_sessions: s.dirty_sessions,
            dirty_bytes: s.dirty_bytes,
            near_copy_sessions: s.near_copy_sessions,
            near_copy_bytes: s.near_copy_bytes,
            activations: s.activations,
            recoveries: s.recoveries,
            written_back: s.written_back,
            conflicts: s.conflicts,
            overflowed: s.overflowed,
            evicted: s.evicted,
            failed: s.failed,
        }
    }
}

/// The `redis` part of [`HealthReport`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RedisHealth {
    /// Whether Redis is configured (`USE_REDIS`).
    pub configured: bool,
    /// Whether it answers: from a ping just now while it serves; `false` while the run-time
    /// fallback serves because it does not, `true` while that fallback writes back; `null`
    /// when it is not in use (not configured, or the start-up fallback serves instead).
    pub reachable: Option<bool>,
    /// How long the ping took, in milliseconds (only when pinged just now).
    pub latency_ms: Option<f64>,
}

/// `GET /healthz`: 200 while the process serves requests, with the report.
pub(crate) async fn healthz(State(state): State<AppState>) -> Json<HealthReport> {
    Json(report(&state).await)
}

/// `GET /readyz`: 200 when this instance should get traffic, else 503; the same report.
pub(crate) async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<HealthReport>) {
    let report = report(&state).await;
    let code = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(report))
}

/// The report, from a check of the store in use and the fallback's state after it (the check
/// itself may switch the run-time fallback on).
pub async fn report(state: &AppState) -> HealthReport {
    let store = state.manager().store();
    let before = store.backend();
    let check = match tokio::time::timeout(HEALTH_TIMEOUT, store.health()).await {
        Ok(result) => result,
        Err(_) => Err(Error::Unavailable {
            backend: before,
            reason: format!("no answer within {} s", HEALTH_TIMEOUT.as_secs()),
            source: None,
        }),
    };
    let info = state.backend();
    let backend = store.backend();
    // One snapshot of the run-time fallback for the whole report.
    let failover = info.failover().map(FailoverStore::status);
    let fallback_active = info.fallback_active_in(failover.as_ref());
    // The reasons name the server (a redacted URL: host, port, database, user) and quote
    // its words: they went to the log when the fallback took over; the report says what
    // happened in general words only.
    let fallback_reason = match &info.startup_fallback {
        Some(_) => Some(STARTUP_FALLBACK_REASON.to_owned()),
        None => failover
            .as_ref()
            .and_then(|s| s.reason.as_ref())
            .map(|_| RUNTIME_FALLBACK_REASON.to_owned()),
    };
    publish_gauge(fallback_active);

    let pinged = check.as_ref().ok().filter(|h| h.backend == "redis");
    let reachable = match failover.as_ref().map(|s| s.mode) {
        Some(FailoverMode::Fallback) => Some(false),
        Some(FailoverMode::WritingBack) => Some(true),
        _ if backend == "redis" => Some(check.is_ok()),
        _ => None,
    };
    let latency_ms = pinged.map(|h| (h.latency.as_secs_f64() * 1e6).round() / 1e3);

    if let Err(e) = &check {
        tracing::debug!(component = "demo", error = %e, "health check: the store does not answer");
    }
    let (status, error) = match &check {
        Err(e) => ("unavailable", Some(store_failure(e))),
        Ok(_) if fallback_active => ("degraded", None),
        Ok(_) => ("ok", None),
    };
    let not_ready_reason = match &check {
        Err(e) => Some(store_failure(e)),
        Ok(_) if !info.reconcilable() => Some(
            "sessions are served from the start-up fallback: they stay in this process and \
             never reach Redis (restart the instance once Redis answers)"
                .to_owned(),
        ),
        Ok(_) => None,
    };
    HealthReport {
        status: status.to_owned(),
        ready: not_ready_reason.is_none(),
        not_ready_reason,
        backend: backend.to_owned(),
        fallback_active,
        fallback_reason,
        fallback: info.report(failover.as_ref()),
        session_ttl: state.manager().ttl().as_duration().as_secs(),
        redis: RedisHealth {
            configured: info.redis_configured(),
            reachable,
            latency_ms,
        },
        error,
    }
}

/// What a report says about a failed check: the error's kind, never its detail.
fn store_failure(e: &Error) -> String {
    format!(
        "the session store does not answer ({}; the service log has the detail)",
        e.kind()
    )
}

/// The report's reason for the start-up fallback (the error itself is in the log).
pub const STARTUP_FALLBACK_REASON: &str = "Redis could not be used at start-up: sessions are \
     kept in this process's memory (the service log has the error)";
/// The report's reason for the run-time fallback (the error itself is in the log).
pub const RUNTIME_FALLBACK_REASON: &str = "Redis stopped answering: sessions are served from \
     memory and written back when it answers (the service log has the error)";

fn publish_gauge(active: bool) {
    metrics::gauge!(FALLBACK_GAUGE).set(if active { 1.0 } else { 0.0 });
}

fn seconds_since(t: Timestamp) -> f64 {
    let elapsed = SystemTime::now()
        .duration_since(t.to_system_time())
        .unwrap_or_default();
    rounded_secs(elapsed)
}

/// Seconds, to the millisecond.
fn rounded_secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e3).round() / 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_with_the_runtime_counts_reads_back_as_written() {
        let report = FallbackReport {
            policy: "runtime".into(),
            mode: "fallback".into(),
            reconcilable: true,
            since: Some("2026-01-01T00:00:00.000Z".into()),
            seconds: Some(1.5),
            reason: Some("redis is unavailable: timed out".into()),
            counts: Some(FailoverCounts {
                dirty_sessions: 3,
                dirty_bytes: 300,
                near_copy_sessions: 4,
                near_copy_bytes: 400,
                activations: 1,
                recoveries: 0,
                written_back: 0,
                conflicts: 0,
                overflowed: 0,
                evicted: 0,
                failed: 0,
            }),
        };
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["dirty_sessions"], 3, "the counts are flat: {json}");
        let back: FallbackReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, report);

        let startup = FallbackReport {
            counts: None,
            policy: "startup".into(),
            reconcilable: false,
            ..report
        };
        let json = serde_json::to_value(&startup).unwrap();
        assert!(json.get("dirty_sessions").is_none(), "{json}");
        let back: FallbackReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, startup);
    }
}
