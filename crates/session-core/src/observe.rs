//! Logs and metrics: the event names and metric names the library emits.
//!
//! The library only emits; the binary chooses a `tracing` subscriber and a `metrics` recorder.
//! Every event carries `component = "session"`, `session_id`, `backend` and `event_type`.

use std::time::Instant;

use crate::{Error, Result};

/// The `event_type` values the library emits.
pub mod event {
    /// `get_or_create` created a session.
    pub const AGENT_CREATED: &str = "agent_created";
    /// A session was loaded.
    pub const SESSION_LOADED: &str = "session_loaded";
    /// A session was written.
    pub const SESSION_SAVED: &str = "session_saved";
    /// A session was deleted.
    pub const SESSION_DELETED: &str = "session_deleted";
    /// A session's TTL was reset by a read (sliding expiry).
    pub const SESSION_TOUCHED: &str = "session_touched";
    /// A compare-and-set lost and `modify` is trying again.
    pub const CONFLICT_RETRY: &str = "conflict_retry";
    /// A stored session could not be decoded.
    pub const SESSION_CORRUPT: &str = "session_corrupt";
    /// A store switched to its fallback.
    pub const FALLBACK_ACTIVATED: &str = "fallback_activated";
    /// A store's primary backend answers again (and what was changed meanwhile is written
    /// back).
    pub const BACKEND_RECOVERED: &str = "backend_recovered";
    /// The write-back after an outage finished: the sessions changed in memory are in the
    /// primary again.
    pub const WRITEBACK_DONE: &str = "writeback_done";
    /// A session changed during an outage was also changed by another instance; the
    /// conflict rule decided which version stays.
    pub const WRITEBACK_CONFLICT: &str = "writeback_conflict";
    /// A change during an outage could not be kept for write-back: the fallback's bounds
    /// were reached (the call failed; nothing was dropped silently).
    pub const FALLBACK_OVERFLOW: &str = "fallback_overflow";
}

/// Metric names (through the `metrics` facade).
pub mod metric {
    /// Counter: operations, labelled `op`, `backend`, `outcome` (`ok` or an error kind).
    pub const OPERATIONS: &str = "session_operations_total";
    /// Histogram: operation latency in seconds, labelled `op`, `backend`.
    pub const DURATION: &str = "session_operation_duration_seconds";
    /// Counter: compare-and-set retries in `modify`, labelled `backend`.
    pub const CONFLICT_RETRIES: &str = "session_conflict_retries_total";
    /// Gauge: `1` while sessions are served from memory instead of the primary.
    pub const FALLBACK_ACTIVE: &str = "session_fallback_active";
    /// Counter: switches to the run-time fallback.
    pub const FALLBACK_ACTIVATIONS: &str = "session_fallback_activations_total";
    /// Histogram: how long the run-time fallback lasted, seconds (observed at recovery).
    pub const FALLBACK_DURATION: &str = "session_fallback_duration_seconds";
    /// Gauge: sessions changed in memory and owed to the primary.
    pub const FALLBACK_DIRTY: &str = "session_fallback_dirty_sessions";
    /// Counter: changes refused because the fallback's dirty bounds were reached, and
    /// near-copy entries evicted, labelled `what` (`dirty`, `near_copy`).
    pub const FALLBACK_OVERFLOWS: &str = "session_fallback_overflow_total";
    /// Counter: sessions handled by the write-back, labelled `outcome` (`written`,
    /// `restored`, `deleted`, `touched`, `kept_ours`, `kept_theirs`, `merged`, `expired`,
    /// `failed`).
    pub const WRITEBACK_SESSIONS: &str = "session_writeback_sessions_total";
    /// Counter: write-back conflicts, labelled `resolution`.
    pub const WRITEBACK_CONFLICTS: &str = "session_writeback_conflicts_total";
    /// Histogram: how long a write-back took, seconds.
    pub const WRITEBACK_DURATION: &str = "session_writeback_duration_seconds";
}

/// Records one manager operation's outcome and latency.
pub(crate) fn record<T>(
    op: &'static str,
    backend: &'static str,
    start: Instant,
    result: &Result<T>,
) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(e) => e.kind(),
    };
    metrics::counter!(metric::OPERATIONS, "op" => op, "backend" => backend, "outcome" => outcome)
        .increment(1);
    metrics::histogram!(metric::DURATION, "op" => op, "backend" => backend)
        .record(start.elapsed().as_secs_f64());
    if let Err(e) = result {
        log_error(op, backend, e);
    }
}

fn log_error(op: &'static str, backend: &'static str, e: &Error) {
    match e {
        Error::NotFound { .. } | Error::Conflict { .. } | Error::InvalidId(_) => {}
        Error::Corrupt { id, .. } => tracing::warn!(
            component = "session",
            session_id = %id,
            backend,
            event_type = event::SESSION_CORRUPT,
            op,
            error = %e,
            "stored session cannot be decoded"
        ),
        _ => {
            tracing::warn!(component = "session", backend, op, error = %e, "session operation failed")
        }
    }
}
