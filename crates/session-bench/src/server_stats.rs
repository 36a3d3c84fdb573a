//! What the server saw: `INFO commandstats` and `INFO stats` deltas around a measure.
//!
//! `total_reads_processed` counts the read events the server handled; for one request at a
//! time (or one pipeline written at once) that is one per round trip, which is how the round
//! trips per operation are shown. Commands run inside Lua scripts are counted in
//! `commandstats` too (so an `EVALSHA` shows up with the `HSET`/`PEXPIRE` it ran).

use std::collections::BTreeMap;

use redis::aio::ConnectionManager;

use crate::BoxResult;

/// Counters from one snapshot: calls per command, and read events.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    calls: BTreeMap<String, u64>,
    usec: BTreeMap<String, u64>,
    reads: u64,
}

/// Per operation, between two snapshots.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub(crate) struct PerOp {
    /// `command calls-per-op`, most frequent first, e.g. `evalsha 1.00 · hset 1.00`.
    pub(crate) commands: String,
    /// Server read events per operation: round trips for sequential requests.
    pub(crate) reads: f64,
    /// Microseconds the server spent executing commands, per operation (commandstats `usec`;
    /// the commands a script runs are inside its `evalsha` time and not added again).
    pub(crate) server_us: f64,
}

/// What the save script calls; their time is already inside `evalsha`.
const SCRIPT_COMMANDS: [&str; 4] = ["hget", "hset", "pexpire", "exists"];

pub(crate) async fn snapshot(conn: &mut ConnectionManager) -> BoxResult<Snapshot> {
    let text: String = redis::cmd("INFO")
        .arg("commandstats")
        .arg("stats")
        .query_async(conn)
        .await?;
    let mut snap = Snapshot::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("cmdstat_") {
            let Some((name, fields)) = rest.split_once(':') else {
                continue;
            };
            let field = |key: &str| {
                fields
                    .split(',')
                    .find_map(|f| f.strip_prefix(key))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            snap.calls.insert(name.to_owned(), field("calls="));
            snap.usec.insert(name.to_owned(), field("usec="));
        } else if let Some(v) = line.strip_prefix("total_reads_processed:") {
            snap.reads = v.trim().parse().unwrap_or(0);
        }
    }
    Ok(snap)
}

/// The deltas between `before` and `after` per operation, `ops` operations. The `INFO` that
/// took `after` is left out.
pub(crate) fn per_op(before: &Snapshot, after: &Snapshot, ops: u64) -> PerOp {
    let ops_f = ops.max(1) as f64;
    let mut deltas: Vec<(String, u64)> = after
        .calls
        .iter()
        .filter(|(name, _)| name.as_str() != "info")
        .map(|(name, &calls)| {
            let prev = before.calls.get(name).copied().unwrap_or(0);
            (name.clone(), calls.saturating_sub(prev))
        })
        .filter(|(_, d)| *d > 0)
        .collect();
    deltas.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let commands = deltas
        .iter()
        .map(|(name, d)| format!("{name} {:.2}", *d as f64 / ops_f))
        .collect::<Vec<_>>()
        .join(" · ");
    // One read event belongs to the INFO that took `after`.
    let reads = after.reads.saturating_sub(before.reads).saturating_sub(1) as f64 / ops_f;
    let scripted = deltas.iter().any(|(name, _)| name.starts_with("evalsha"));
    let usec: u64 = after
        .usec
        .iter()
        .filter(|(name, _)| name.as_str() != "info")
        .filter(|(name, _)| !(scripted && SCRIPT_COMMANDS.contains(&name.as_str())))
        .map(|(name, &u)| u.saturating_sub(before.usec.get(name).copied().unwrap_or(0)))
        .sum();
    PerOp {
        commands,
        reads,
        server_us: usec as f64 / ops_f,
    }
}
