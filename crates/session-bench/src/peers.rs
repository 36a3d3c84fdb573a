//! The peers (crates/peer-bench: tower-sessions' and actix-session's Redis stores) beside the
//! library: same run, same pinned core, same server, same state.
//!
//! Each peer's `get` is its store's load plus the conversion of the state back from its JSON
//! form; its `update` is the conversion plus its store's save of an existing session (see
//! peer-bench's crate docs). Their ratios are to the library section's raw baselines, and the
//! library's `get` and `update` are compared with the best of them.

use std::sync::Arc;
use std::time::Duration;

use peer_bench::{ActixSession, Peer, TowerSessions};

use crate::agent::Agent;
use crate::recorder::Plan;
use crate::report::{Row, Target};
use crate::server_stats::PerOp;
use crate::{Args, BoxResult, Stats, TASKS, plan, raw, raw_manager, throughput, timed};

/// The peers' `get` and `update` on one agent size, the best of them, and the library's
/// `get` and `update` (measured in its ops section) against that best.
pub(crate) async fn latency_section(
    args: &Args,
    stats: &Stats,
    url: &str,
    messages: usize,
    rows: &mut Vec<Row>,
) -> BoxResult<()> {
    let plan = plan(args);
    let agent = Agent::with_messages(messages);
    let json = serde_json::to_vec(&agent)?.len();
    let section = format!("Peers, {messages}-message agent (the same state; {json} B as JSON)");
    println!("{section}");
    let k = |name: &str| format!("peer{messages}.{name}");
    let mut con = raw_manager(url).await?;
    let mut gets = Vec::new();
    let mut updates = Vec::new();
    let tower = TowerSessions::connect(url).await?;
    let actix = ActixSession::connect(url).await?;
    let ours = crate::tower_peer::SessionTower::connect(url).await?;
    // session-tower is this library behind tower-sessions' API, not a peer: measured beside
    // tower-sessions' own store through the same trait, and left out of "best peer".
    let (tower_get, tower_update) =
        measure_peer(&ours, stats, plan, &agent, &section, &mut con).await?;
    rows.push(
        Row {
            key: k("session_tower.get"),
            ..tower_get
        }
        .vs(&k("tower.get")),
    );
    rows.push(
        Row {
            key: k("session_tower.update"),
            ..tower_update
        }
        .vs(&k("tower.update")),
    );
    let measured = [
        (
            "tower",
            measure_peer(&tower, stats, plan, &agent, &section, &mut con).await?,
        ),
        (
            "actix",
            measure_peer(&actix, stats, plan, &agent, &section, &mut con).await?,
        ),
    ];
    for (tag, (get, update)) in measured {
        let (get_key, update_key) = (k(&format!("{tag}.get")), k(&format!("{tag}.update")));
        let base = |name: &str| format!("mux{messages}.{name}");
        rows.push(
            Row {
                key: get_key.clone(),
                ..get
            }
            .vs(&base("raw_get")),
        );
        rows.push(
            Row {
                key: update_key.clone(),
                ..update
            }
            .vs(&base("raw_set")),
        );
        gets.push(get_key);
        updates.push(update_key);
    }
    rows.push(Row::best_of(
        &k("best_get"),
        &section,
        "best peer get",
        &gets,
    ));
    rows.push(Row::best_of(
        &k("best_update"),
        &section,
        "best peer update",
        &updates,
    ));
    // The library's own get and update, measured again right beside the peers (the same
    // state, a manager on its own connection), so that noise between sections does not decide.
    let m = crate::manager(Arc::new(
        crate::connect_store(url, session_redis::ConnectionMode::Multiplexed).await?,
    ));
    let sid = crate::id(&format!("peers-{messages}"))?;
    m.update(&sid, &agent).await?;
    println!(" this library: get");
    let (l, s) = timed(stats, plan, async |_| {
        m.get(&sid).await?.ok_or("session vanished")?;
        Ok(())
    })
    .await?;
    rows.push(
        Row::latency(
            &k("lib_get"),
            &section,
            "get (this library), vs the best peer's get",
            l,
            Some(s),
        )
        .vs(&k("best_get"))
        .target(Target::RatioAtMost(1.00)),
    );
    println!(" this library: update");
    let (l, s) = timed(stats, plan, async |_| {
        m.update(&sid, &agent).await?;
        Ok(())
    })
    .await?;
    rows.push(
        Row::latency(
            &k("lib_update"),
            &section,
            "update (this library), vs the best peer's update",
            l,
            Some(s),
        )
        .vs(&k("best_update"))
        .target(Target::RatioAtMost(1.15)),
    );
    Ok(())
}

/// The peers' get + update throughput (50 tasks, own session each) in the throughput section,
/// the best of them, and the library's get + update against it.
pub(crate) async fn throughput_rows(
    stats: &Stats,
    url: &str,
    time: Duration,
    section: &str,
    rows: &mut Vec<Row>,
) -> BoxResult<()> {
    let agent = Agent::with_messages(10);
    let mut keys = Vec::new();
    for (tag, name, result) in [
        {
            let peer = Arc::new(TowerSessions::connect(url).await?);
            println!(" {}: get + update, own session per task", peer.name());
            (
                "tower",
                peer.name(),
                peer_throughput(stats, peer, time, &agent).await?,
            )
        },
        {
            let peer = Arc::new(ActixSession::connect(url).await?);
            println!(" {}: get + update, own session per task", peer.name());
            (
                "actix",
                peer.name(),
                peer_throughput(stats, peer, time, &agent).await?,
            )
        },
    ] {
        let (ops, s) = result;
        let key = format!("tp.{tag}");
        rows.push(
            Row::throughput(
                &key,
                section,
                &format!("{name}: get + update, own session per task"),
                ops,
                Some(s),
            )
            .vs("tp.raw_codec"),
        );
        keys.push(key);
    }
    rows.push(Row::best_of(
        "tp.best_peer",
        section,
        "best peer get + update",
        &keys,
    ));
    if let Some(ops) = rows
        .iter()
        .find(|r| r.key == "tp.store_update")
        .and_then(|r| r.ops_per_s)
    {
        rows.push(
            Row::throughput(
                "tp.lib_vs_peer",
                section,
                "get + update (this library), vs the best peer's",
                ops,
                None,
            )
            .vs("tp.best_peer"),
        );
    }
    Ok(())
}

async fn peer_throughput<P: Peer>(
    stats: &Stats,
    peer: Arc<P>,
    time: Duration,
    agent: &Agent,
) -> BoxResult<(f64, PerOp)> {
    let mut keys = Vec::with_capacity(TASKS);
    for _ in 0..TASKS {
        keys.push(peer.create(agent).await?);
    }
    let keys = Arc::new(keys);
    throughput(stats, TASKS, time, 2, move |t| {
        let (peer, keys) = (peer.clone(), keys.clone());
        async move {
            let mut state: Agent = peer.load(&keys[t]).await?.ok_or("peer session vanished")?;
            state.bump();
            peer.update(&keys[t], &state).await
        }
    })
    .await
}

/// A peer's `get` and `update` rows (keys and baselines still to set).
async fn measure_peer<P: Peer>(
    peer: &P,
    stats: &Stats,
    plan: Plan,
    agent: &Agent,
    section: &str,
    con: &mut redis::aio::ConnectionManager,
) -> BoxResult<(Row, Row)> {
    let session = peer.create(agent).await?;
    let redis_key = peer.redis_key(&session);
    // Every store keeps a string (this library's: its 210-byte header, the meta, the payload:
    // all of it counted); a hash of this library's earlier layouts counts its payload `d`.
    let kind: String = redis::cmd("TYPE")
        .arg(&redis_key)
        .query_async(&mut *con)
        .await?;
    let stored: u64 = if kind == "hash" {
        redis::cmd("HSTRLEN")
            .arg(&redis_key)
            .arg("d")
            .query_async(&mut *con)
            .await?
    } else {
        redis::cmd("STRLEN")
            .arg(&redis_key)
            .query_async(&mut *con)
            .await?
    };
    let usage = raw::memory_usage(&mut *con, &redis_key).await?;
    let note = format!("stores {stored} B (MEMORY USAGE {usage} B)");
    println!(" {}: get", peer.name());
    let (l, s) = timed(stats, plan, async |_| {
        let state: Agent = peer.load(&session).await?.ok_or("peer session vanished")?;
        std::hint::black_box(state);
        Ok(())
    })
    .await?;
    let get = Row::latency(
        "get",
        section,
        &format!("{}: get (load + from JSON)", peer.name()),
        l,
        Some(s),
    )
    .note(note.clone());
    println!(" {}: update", peer.name());
    let (l, s) = timed(stats, plan, async |_| peer.update(&session, agent).await).await?;
    let update = Row::latency(
        "update",
        section,
        &format!("{}: update (to JSON + save)", peer.name()),
        l,
        Some(s),
    )
    .note(note);
    Ok((get, update))
}
