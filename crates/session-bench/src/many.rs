//! `modify` over many sessions from one manager: what the local-copy budget buys.
//!
//! 3,000 sessions of the 100-message agent, modified round robin (the order an LRU serves
//! worst: with room for fewer than all of them, every copy is evicted before its turn comes
//! again). Once with the default budget, once with a budget that holds them all; reads/op
//! shows the round trips (1: written from the copy, 2: read first).

use std::sync::Arc;

use session_core::{DEFAULT_LOCAL_COPY_BYTES, SessionId, SessionManager};
use session_redis::ConnectionMode;

use crate::agent::Agent;
use crate::recorder::Plan;
use crate::report::Row;
use crate::{Args, BoxResult, Stats, agent_title, connect_store, id, plan, timed};

/// The sessions modified round robin.
const SESSIONS: usize = 3_000;

/// What `session-core/src/local_copies.rs` charges per copy beside its payload and id
/// (`ENTRY_OVERHEAD`, private there): the budget charged per session is
/// `payload + id + ENTRY_OVERHEAD`.
const ENTRY_OVERHEAD: usize = 160;

/// Resident set size of this process, in bytes (Linux `/proc/self/status`), if known.
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

pub(crate) async fn section(
    args: &Args,
    stats: &Stats,
    url: &str,
    rows: &mut Vec<Row>,
) -> BoxResult<()> {
    let agent = Agent::with_messages(100);
    let store = Arc::new(connect_store(url, ConnectionMode::Multiplexed).await?);
    // Fills the sessions without remembering any of them.
    let filler: SessionManager<Agent> = SessionManager::builder(store.clone())
        .local_copy_bytes(0)
        .build();
    let codec = filler.codec().clone();
    let section = format!(
        "modify over {} sessions round robin, one manager, {}",
        crate::thousands(SESSIONS as u64),
        agent_title(100, &codec, &agent)?
    );
    println!("{section}");
    let ids: Vec<SessionId> = (0..SESSIONS)
        .map(|i| id(&format!("many-{i:04}")))
        .collect::<BoxResult<_>>()?;
    let started = std::time::Instant::now();
    for sid in &ids {
        filler.update(sid, &agent).await?;
    }
    println!(
        " filled {SESSIONS} sessions in {:.2}s",
        started.elapsed().as_secs_f64()
    );
    let payload = codec.encode(&ids[0], &agent)?.len();
    let footprint = payload + ids[0].as_str().len() + ENTRY_OVERHEAD;
    // A budget with room for all of them (and a MiB to spare), in whole MiB.
    let all = (footprint * SESSIONS).div_ceil(1024 * 1024) * 1024 * 1024 + 1024 * 1024;
    // One pass unmeasured (it fills what the budget holds), then the measured iterations.
    let plan = Plan {
        warmup: SESSIONS,
        iters: plan(args).iters,
    };
    for (key, budget, what) in [
        ("default", DEFAULT_LOCAL_COPY_BYTES, "default budget"),
        ("all", all, "a budget that holds them all"),
    ] {
        let m: SessionManager<Agent> = SessionManager::builder(store.clone())
            .summarize(session_core::Summarize::summary)
            .local_copy_bytes(budget)
            .build();
        let held = (budget / footprint).min(SESSIONS);
        println!(" {what}: {:.1} MiB, room for {held} sessions", mib(budget));
        let rss_before = rss_bytes();
        let (l, s) = timed(stats, plan, async |i| {
            m.modify(&ids[i % SESSIONS], Agent::bump).await?;
            Ok(())
        })
        .await?;
        let rss = match (rss_before, rss_bytes()) {
            (Some(before), Some(after)) => format!(
                "; this process' RSS grew {:.1} MiB meanwhile ({:.0} B per session held)",
                after.saturating_sub(before) as f64 / (1024.0 * 1024.0),
                after.saturating_sub(before) as f64 / held.max(1) as f64
            ),
            _ => String::new(),
        };
        rows.push(
            Row::latency(
                &format!("many.{key}"),
                &section,
                &format!("modify, {what} ({:.1} MiB)", mib(budget)),
                l,
                Some(s),
            )
            .note(format!(
                "charged {footprint} B per session ({payload} B payload + id + \
                 {ENTRY_OVERHEAD} B of map entries): room for {held} of {SESSIONS}{rss}"
            )),
        );
    }
    for sid in &ids {
        filler.delete(sid).await?;
    }
    Ok(())
}
