//! What the server saw: `INFO commandstats`, `INFO stats` and `INFO cpu` deltas around a
//! measure.
//!
//! - **Round trips**: `total_reads_processed` counts the read events the server handled; for
//!   one request at a time (or one pipeline written at once) that is one per round trip.
//! - **Command time** ("server µs/op"): the `usec` of the commands the clients sent. Redis and
//!   Valkey count a command a Lua script runs twice: in its own `cmdstat_<name>` entry *and*
//!   inside the `evalsha` that ran it. So the commands that ran inside scripts are taken out
//!   again, see [`inner_calls`] and [`InnerCosts`].
//! - **Server CPU** ("server CPU µs/op"): the main thread's CPU time, the sum of
//!   `used_cpu_user_main_thread` and `used_cpu_sys_main_thread` (on a server without them, the
//!   process' `used_cpu_user` and `used_cpu_sys`): everything serving the operations cost,
//!   reading and writing the sockets and the event loop included.

use std::collections::BTreeMap;

use redis::aio::ConnectionManager;

use crate::BoxResult;

/// Counters from one snapshot: calls and time per command, read events, CPU seconds.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    calls: BTreeMap<String, u64>,
    usec: BTreeMap<String, u64>,
    reads: u64,
    /// Seconds of CPU of the main thread (user + sys), or of the process.
    cpu_s: f64,
}

/// Per operation, between two snapshots.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub(crate) struct PerOp {
    /// The commands the clients sent per operation, most frequent first (`evalsha 1.00 ·
    /// hset 1.00 ...`), then, in brackets, the ones scripts ran.
    pub(crate) commands: String,
    /// Server read events per operation: round trips for sequential requests.
    pub(crate) reads: f64,
    /// Microseconds of command execution per operation, counting only the commands the
    /// clients sent (a script's inner commands are inside its `evalsha`).
    pub(crate) server_us: f64,
    /// Microseconds of the server's (main thread's) CPU per operation.
    pub(crate) cpu_us: f64,
    /// Per command (JSON only): calls per operation, of which inside scripts, and `usec` per
    /// operation (all calls).
    pub(crate) by_command: Vec<CommandDetail>,
}

/// One command's share of a measure, per operation.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub(crate) struct CommandDetail {
    pub(crate) name: String,
    pub(crate) calls: f64,
    pub(crate) in_scripts: f64,
    pub(crate) usec: f64,
}

/// What one call of a command costs when a script runs it, measured in the same run (see
/// [`crate::calibrate`]). Used only to split the time of a command that ran both on its own and
/// inside scripts in one measure.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub(crate) struct InnerCosts {
    /// A `GET` of the whole 10-message record (as a refused script reads it for its reply), µs
    /// per call; from `get`, where every `GET` is this one, sent on its own.
    pub(crate) get_record_us: f64,
    /// A `PTTL`, µs per call; from `get`.
    pub(crate) pttl_us: f64,
}

pub(crate) async fn snapshot(conn: &mut ConnectionManager) -> BoxResult<Snapshot> {
    let text: String = redis::cmd("INFO")
        .arg("commandstats")
        .arg("stats")
        .arg("cpu")
        .query_async(conn)
        .await?;
    Ok(parse(&text))
}

fn parse(text: &str) -> Snapshot {
    let mut snap = Snapshot::default();
    let mut cpu: BTreeMap<&str, f64> = BTreeMap::new();
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
        } else if let Some((key, value)) = line.split_once(':')
            && key.starts_with("used_cpu_")
            && let Ok(v) = value.trim().parse::<f64>()
        {
            cpu.insert(key, v);
        }
    }
    snap.cpu_s = match (
        cpu.get("used_cpu_user_main_thread"),
        cpu.get("used_cpu_sys_main_thread"),
    ) {
        (Some(u), Some(s)) => u + s,
        _ => {
            cpu.get("used_cpu_user").copied().unwrap_or(0.0)
                + cpu.get("used_cpu_sys").copied().unwrap_or(0.0)
        }
    };
    snap
}

/// Command names that, in this project, only ever run inside the scripts
/// (`session-redis/src/scripts.rs`): `GETRANGE` (the guard's, update's and resolve's look at
/// the header), `SETRANGE` (update, resolve), `RENAME` (guard, update), `EXISTS` (delete, and a
/// guard that finds no record), and the hash commands of the earlier layouts' fallback. The
/// store never sends them itself in a measure with writes (listings send `GETRANGE`, the
/// seed-style listing baseline `GET`, both without scripts). Counted as inner only when a
/// script ran in the measure.
const SCRIPT_ONLY: [&str; 8] = [
    "getrange", "setrange", "rename", "exists", "hmget", "hget", "hset", "hmset",
];

/// How many calls of each command ran inside scripts, from the counts alone, for the commands
/// the store sends itself *and* the scripts run (`GET`, `PTTL`, `UNLINK`, `SET`). What the
/// counting relies on (the scripts and the store's pipelines, see session-redis' `write.rs`
/// and `scripts.rs`):
///
/// - a delete script runs one `EXISTS` (its marker), one `UNLINK` and, when the session
///   existed, one `SET` (the marker); no other script runs `SET`, and the store's own `SET`s
///   stage records;
/// - a script that reads the whole record for its reply (a refusal that found the session)
///   runs `GET key` + `PTTL key` after removing its staged record (`UNLINK`);
/// - every `UNLINK` the store sends itself closes a create (`RENAMENX` + `UNLINK`);
/// - no measure loses a reply, so no resolve script runs.
///
/// Returns (name, inner calls, of which calls that read the record) for the mixed names.
fn inner_calls(d: &BTreeMap<String, u64>) -> BTreeMap<&'static str, (u64, u64)> {
    let get = |name: &str| d.get(name).copied().unwrap_or(0);
    let scripts = get("evalsha") + get("eval");
    let mut inner = BTreeMap::new();
    if scripts == 0 {
        return inner;
    }
    let deletes = get("exists").min(scripts);
    let unlink_in = get("unlink").saturating_sub(get("renamenx"));
    // Reads of the whole record inside scripts: one per refusal that found the session (each
    // refusal removed its staged record first); never more than the GETs or the PTTLs.
    let record_reads = unlink_in
        .saturating_sub(deletes)
        .min(get("get"))
        .min(get("pttl"));
    inner.insert("get", (record_reads, record_reads));
    inner.insert("pttl", (record_reads, record_reads));
    inner.insert("unlink", (unlink_in, 0));
    inner.insert("set", (deletes.min(get("set")), 0));
    inner
}

/// The deltas between `before` and `after` per operation, `ops` operations. The `INFO` that
/// took `after` is left out.
pub(crate) fn per_op(before: &Snapshot, after: &Snapshot, ops: u64, costs: &InnerCosts) -> PerOp {
    let ops_f = ops.max(1) as f64;
    let delta = |a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>| -> BTreeMap<String, u64> {
        a.iter()
            .filter(|(name, _)| name.as_str() != "info")
            .map(|(name, &v)| {
                (
                    name.clone(),
                    v.saturating_sub(b.get(name).copied().unwrap_or(0)),
                )
            })
            .filter(|(_, v)| *v > 0)
            .collect()
    };
    let calls = delta(&after.calls, &before.calls);
    let usec = delta(&after.usec, &before.usec);
    let scripted = calls.contains_key("evalsha") || calls.contains_key("eval");
    let mixed = inner_calls(&calls);

    // Calls and time of what the clients sent, and of what scripts ran.
    let mut sent: Vec<(String, f64)> = Vec::new();
    let mut ran: Vec<(String, f64)> = Vec::new();
    let mut inner_usec = 0.0;
    let mut by_command = Vec::new();
    for (name, &n) in &calls {
        let u = usec.get(name).copied().unwrap_or(0) as f64;
        let (n_in, n_record) = if scripted && SCRIPT_ONLY.contains(&name.as_str()) {
            (n, 0)
        } else {
            mixed.get(name.as_str()).copied().unwrap_or((0, 0))
        };
        if n_in < n {
            sent.push((name.clone(), (n - n_in) as f64));
        }
        if n_in > 0 {
            ran.push((name.clone(), n_in as f64));
        }
        by_command.push(CommandDetail {
            name: name.clone(),
            calls: n as f64 / ops_f,
            in_scripts: n_in as f64 / ops_f,
            usec: u / ops_f,
        });
        inner_usec += if n_in >= n {
            u
        } else {
            inner_share(name, n, n_in, n_record, u, costs)
        };
    }
    let total_usec: f64 = usec.values().map(|&u| u as f64).sum();
    let list = |v: &mut Vec<(String, f64)>| {
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v.iter()
            .map(|(name, n)| format!("{name} {:.2}", n / ops_f))
            .collect::<Vec<_>>()
            .join(" · ")
    };
    let mut commands = list(&mut sent);
    if !ran.is_empty() {
        commands.push_str(&format!(" [in scripts: {}]", list(&mut ran)));
    }
    // One read event belongs to the INFO that took `after`.
    let reads = after.reads.saturating_sub(before.reads).saturating_sub(1) as f64 / ops_f;
    PerOp {
        commands,
        reads,
        server_us: (total_usec - inner_usec).max(0.0) / ops_f,
        cpu_us: (after.cpu_s - before.cpu_s).max(0.0) * 1e6 / ops_f,
        by_command,
    }
}

/// Microseconds per call of `name` between two snapshots (NaN when it was not called).
pub(crate) fn usec_per_call(before: &Snapshot, after: &Snapshot, name: &str) -> f64 {
    let d = |m: &BTreeMap<String, u64>, n: &BTreeMap<String, u64>| {
        m.get(name)
            .copied()
            .unwrap_or(0)
            .saturating_sub(n.get(name).copied().unwrap_or(0))
    };
    let calls = d(&after.calls, &before.calls);
    if calls == 0 {
        return f64::NAN;
    }
    d(&after.usec, &before.usec) as f64 / calls as f64
}

/// The part of `usec` (all `n` calls of `name`) that the `n_in` calls inside scripts took, of
/// which `n_record` read the whole record: by the calibrated per-call costs where there are
/// some, else by the measure's own average per call. Never more than `usec`.
fn inner_share(name: &str, n: u64, n_in: u64, n_record: u64, usec: f64, c: &InnerCosts) -> f64 {
    let average = usec / n as f64;
    let or_average = |v: f64| if v.is_finite() { v } else { average };
    let share = match name {
        "get" => n_record as f64 * or_average(c.get_record_us),
        "pttl" => n_in as f64 * or_average(c.pttl_us),
        _ => n_in as f64 * average,
    };
    share.min(usec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(cmds: &[(&str, u64, u64)], reads: u64, cpu: f64) -> Snapshot {
        let mut s = Snapshot {
            reads,
            cpu_s: cpu,
            ..Snapshot::default()
        };
        for &(name, calls, usec) in cmds {
            s.calls.insert(name.to_owned(), calls);
            s.usec.insert(name.to_owned(), usec);
        }
        s
    }

    const COSTS: InnerCosts = InnerCosts {
        get_record_us: 1.0,
        pttl_us: 0.2,
    };

    #[test]
    fn parses_commandstats_reads_and_main_thread_cpu() {
        let text = "# Commandstats\r\n\
            cmdstat_hmget:calls=3,usec=12,usec_per_call=4.00,rejected_calls=0,failed_calls=0\r\n\
            cmdstat_config|resetstat:calls=1,usec=49,usec_per_call=49.00\r\n\
            # Stats\r\ntotal_reads_processed:17\r\n\
            # CPU\r\nused_cpu_sys:1.5\r\nused_cpu_user:2.5\r\n\
            used_cpu_sys_main_thread:0.25\r\nused_cpu_user_main_thread:0.5\r\n";
        let s = parse(text);
        assert_eq!(s.calls["hmget"], 3);
        assert_eq!(s.usec["hmget"], 12);
        assert_eq!(s.reads, 17);
        assert!((s.cpu_s - 0.75).abs() < 1e-9);
        let old = parse("used_cpu_sys:1.5\r\nused_cpu_user:2.5\r\n");
        assert!((old.cpu_s - 4.0).abs() < 1e-9);
    }

    #[test]
    fn a_guarded_write_counts_the_script_not_its_inner_commands() {
        // 10 modifies: SET + EVALSHA (GETRANGE + RENAME inside).
        let before = snap(&[], 0, 1.0);
        let after = snap(
            &[
                ("set", 10, 20),
                ("evalsha", 10, 30),
                ("getrange", 10, 5),
                ("rename", 10, 8),
                ("info", 1, 50),
            ],
            11,
            1.0001,
        );
        let p = per_op(&before, &after, 10, &COSTS);
        assert!((p.server_us - 5.0).abs() < 1e-9, "{p:?}");
        assert!((p.reads - 1.0).abs() < 1e-9);
        assert!((p.cpu_us - 10.0).abs() < 1e-6, "{p:?}");
        assert_eq!(
            p.commands,
            "evalsha 1.00 · set 1.00 [in scripts: getrange 1.00 · rename 1.00]"
        );
    }

    #[test]
    fn a_read_then_a_guarded_write_keeps_the_read() {
        // 10 modifies that read first: GET + PTTL, then the guarded write.
        let after = snap(
            &[
                ("get", 10, 25),
                ("pttl", 10, 2),
                ("set", 10, 20),
                ("evalsha", 10, 30),
                ("getrange", 10, 5),
                ("rename", 10, 8),
            ],
            20,
            0.0,
        );
        let p = per_op(&Snapshot::default(), &after, 10, &COSTS);
        // get and pttl stay; getrange and rename go.
        assert!((p.server_us - (25.0 + 2.0 + 20.0 + 30.0) / 10.0).abs() < 1e-9);
        assert_eq!(
            p.commands,
            "evalsha 1.00 · get 1.00 · pttl 1.00 · set 1.00 \
             [in scripts: getrange 1.00 · rename 1.00]"
        );
    }

    #[test]
    fn refusals_creates_and_deletes_split_as_the_scripts_and_pipelines_run_them() {
        // 4 guarded writes, 1 of them refused (UNLINK, GET, PTTL inside), 2 loads (GET +
        // PTTL), 1 create (SET + GET + PTTL + RENAMENX + UNLINK) and 1 delete (EXISTS,
        // UNLINK, SET inside).
        let after = snap(
            &[
                ("evalsha", 4 + 1, 50),
                ("set", 4 + 1 + 1, 12),
                ("getrange", 4, 4),
                ("rename", 3, 3),
                ("get", 1 + 2 + 1, 100),
                ("pttl", 1 + 2 + 1, 10),
                ("unlink", 1 + 1 + 1, 6),
                ("exists", 1, 1),
                ("renamenx", 1, 1),
            ],
            0,
            0.0,
        );
        let inner = inner_calls(&after.calls);
        assert_eq!(inner["get"], (1, 1));
        assert_eq!(inner["pttl"], (1, 1));
        assert_eq!(inner["unlink"], (2, 0));
        assert_eq!(inner["set"], (1, 0));
        let p = per_op(&Snapshot::default(), &after, 1, &COSTS);
        // inner: getrange 4, rename 3, exists 1, unlink 2 of 6 us, set 1 of 12 us (2 per
        // call), get 1.0, pttl 0.2.
        let expected = 50.0 + 12.0 - 2.0 + 100.0 - 1.0 + 10.0 - 0.2 + 6.0 - 4.0 + 1.0;
        assert!((p.server_us - expected).abs() < 1e-9, "{p:?}");
    }

    #[test]
    fn without_scripts_nothing_is_inner() {
        // The seed-style listing sends GET itself, a listing GETRANGE.
        let after = snap(
            &[("scan", 1, 10), ("get", 100, 40), ("getrange", 100, 30)],
            0,
            0.0,
        );
        let p = per_op(&Snapshot::default(), &after, 1, &COSTS);
        assert!((p.server_us - 80.0).abs() < 1e-9);
        assert_eq!(p.commands, "get 100.00 · getrange 100.00 · scan 1.00");
    }
}
