//! `session-bench`: the library measured beside raw redis-rs in the same run.
//!
//! Run it through `cargo xtask bench`, which starts a private redis-server, pins it and this
//! process to one core and writes `BENCHMARKS.md`. By hand:
//!
//! ```text
//! session-bench --redis-url redis://127.0.0.1:PORT [--quick] [--json-out FILE]
//!               [--markdown-out FILE] [--svg-out FILE] [--only WORD] [--memory-cpus 0-1]
//! ```
//!
//! The Redis benchmarks run on a tokio **current_thread** runtime: pinned to the same core as
//! the server, one thread is what the process can use anyway, and the 50 throughput tasks are
//! multiplexed on it exactly as a single-threaded service would multiplex its requests. The
//! memory-store benchmarks run on a 2-worker multi-thread runtime (after `--memory-cpus`
//! widened the process' CPU set again). Databases: 0 for the per-operation measures (and the
//! peers, with the cargo feature `peers`), 1 for the 100-session listing, 2 for the
//! 100,000-session listing, so each listing's SCAN sees only its own keys, 3 for the 3,000
//! sessions `modify` goes round. The server must be a private one: the benchmark writes up to
//! 100,000 keys and leaves them there for the caller to throw away with the server.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod agent;
mod chart;
mod compression;
mod encryption;
mod layout_cost;
mod many;
#[cfg(feature = "peers")]
mod peers;
mod raw;
mod recorder;
mod report;
mod server_stats;
#[cfg(feature = "peers")]
mod tower_peer;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use session_core::{Codec, SessionId, SessionManager, SessionStore};
use session_memory::MemoryStore;
use session_redis::{ConnectionMode, RedisOptions, RedisStore};

use crate::agent::Agent;
use crate::recorder::{Latency, Plan, measure};
use crate::report::{Row, Target};
use crate::server_stats::{InnerCosts, PerOp, per_op, snapshot};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub(crate) type BoxResult<T> = Result<T, BoxError>;

const USAGE: &str = "\
session-bench: the session library beside raw redis-rs, in one run

USAGE:
    session-bench --redis-url redis://127.0.0.1:PORT [OPTIONS]

OPTIONS:
    --quick               few iterations (a smoke run; numbers are noisy)
    --json-out FILE       write every row as JSON
    --markdown-out FILE   write the result tables as markdown (what BENCHMARKS.md embeds)
    --svg-out FILE        write the chart of each operation's p50 beside its raw baseline's
                          as SVG (what BENCHMARKS.md shows); nothing when no section with
                          raw baselines ran
    --chart-title TEXT    the chart's title (default: what it shows)
    --only WORD           run only the sections whose tag contains WORD (tags: ops,
                          peers, pool, list, throughput, many, size, compression,
                          encryption, layout, cpu, memory); the peers need the cargo
                          feature `peers`
    --memory-cpus LIST    before the memory-store section, widen this process' CPU set to
                          LIST with `taskset -a -p -c LIST` (it was pinned for Redis)
    --iters N             measured iterations per latency measure (default 5000, quick 300)

The server must be private: up to 100,000 keys are written to databases 0, 1 and 2.
";

struct Args {
    redis_url: String,
    quick: bool,
    json_out: Option<PathBuf>,
    markdown_out: Option<PathBuf>,
    svg_out: Option<PathBuf>,
    chart_title: Option<String>,
    only: Option<String>,
    memory_cpus: Option<String>,
    iters: Option<usize>,
}

fn parse_args() -> BoxResult<Option<Args>> {
    let mut args = std::env::args().skip(1);
    let mut out = Args {
        redis_url: String::new(),
        quick: false,
        json_out: None,
        markdown_out: None,
        svg_out: None,
        chart_title: None,
        only: None,
        memory_cpus: None,
        iters: None,
    };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| BoxError::from(format!("{name} needs a value")))
        };
        match arg.as_str() {
            "--redis-url" => out.redis_url = value("--redis-url")?,
            "--quick" => out.quick = true,
            "--json-out" => out.json_out = Some(value("--json-out")?.into()),
            "--markdown-out" => out.markdown_out = Some(value("--markdown-out")?.into()),
            "--svg-out" => out.svg_out = Some(value("--svg-out")?.into()),
            "--chart-title" => out.chart_title = Some(value("--chart-title")?),
            "--only" => out.only = Some(value("--only")?),
            "--memory-cpus" => out.memory_cpus = Some(value("--memory-cpus")?),
            "--iters" => out.iters = Some(value("--iters")?.parse()?),
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(None);
            }
            other => return Err(format!("unknown argument `{other}`\n\n{USAGE}").into()),
        }
    }
    if out.redis_url.is_empty() {
        return Err(format!("--redis-url is required\n\n{USAGE}").into());
    }
    Ok(Some(out))
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("session-bench: error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> BoxResult<()> {
    let Some(args) = parse_args()? else {
        return Ok(());
    };
    let started = Instant::now();
    let mut rows = Vec::new();
    let redis_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    redis_rt.block_on(redis_benches(&args, &mut rows))?;
    drop(redis_rt);
    if wants(&args, "memory") {
        if let Some(cpus) = &args.memory_cpus {
            widen_cpus(cpus)?;
        }
        let memory_rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        memory_rt.block_on(memory_benches(&args, &mut rows))?;
    }
    report::resolve(&mut rows);
    println!();
    print!("{}", report::human(&rows));
    println!("(total {:.1}s)", started.elapsed().as_secs_f64());
    if let Some(path) = &args.json_out {
        std::fs::write(path, serde_json::to_vec_pretty(&rows)?)
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    if let Some(path) = &args.markdown_out {
        std::fs::write(path, report::markdown(&rows))
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    if let Some(path) = &args.svg_out {
        let title = args
            .chart_title
            .as_deref()
            .unwrap_or("p50 latency per operation beside its raw baseline");
        match chart::svg(&rows, title)? {
            Some(svg) => {
                std::fs::write(path, svg).map_err(|e| format!("writing {}: {e}", path.display()))?
            }
            None => println!("no chart: no operation with a raw baseline ran"),
        }
    }
    Ok(())
}

fn wants(args: &Args, tag: &str) -> bool {
    args.only.as_deref().is_none_or(|w| tag.contains(w))
}

fn plan(args: &Args) -> Plan {
    let (warmup, iters) = if args.quick { (50, 300) } else { (500, 5000) };
    Plan {
        warmup,
        iters: args.iters.unwrap_or(iters),
    }
}

fn throughput_time(args: &Args) -> Duration {
    if args.quick {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(3)
    }
}

/// `redis://host:port` plus `/db`, whatever database the given URL named.
fn db_url(base: &str, db: u8) -> String {
    let trimmed = base.trim_end_matches('/');
    let without_db = match trimmed.rsplit_once('/') {
        Some((head, tail))
            if !tail.is_empty()
                && tail.bytes().all(|b| b.is_ascii_digit())
                && head != "redis:/" =>
        {
            head
        }
        _ => trimmed,
    };
    format!("{without_db}/{db}")
}

fn widen_cpus(cpus: &str) -> BoxResult<()> {
    let pid = std::process::id().to_string();
    let status = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid])
        .stdout(std::process::Stdio::null())
        .status()?;
    if !status.success() {
        return Err(format!("taskset -a -p -c {cpus} {pid} failed: {status}").into());
    }
    println!("memory store: CPU set widened to {cpus}");
    Ok(())
}

fn id(s: &str) -> BoxResult<SessionId> {
    Ok(SessionId::new(s)?)
}

async fn connect_store(url: &str, mode: ConnectionMode) -> BoxResult<RedisStore> {
    Ok(RedisStore::connect(RedisOptions::from_url(url)?.with_mode(mode)).await?)
}

fn manager(store: Arc<dyn SessionStore>) -> SessionManager<Agent> {
    SessionManager::builder(store)
        .summarize(session_core::Summarize::summary)
        .build()
}

async fn raw_manager(url: &str) -> BoxResult<ConnectionManager> {
    Ok(redis::Client::open(url)?.get_connection_manager().await?)
}

/// The connection the server's counters are read on, and what the commands scripts run cost
/// (measured once, at the start of the run).
pub(crate) struct Stats {
    conn: ConnectionManager,
    costs: InnerCosts,
}

/// Measures `op`: `plan.warmup` unmeasured calls, then `plan.iters` measured ones with the
/// server's counters around them (so the warm-up is in neither).
pub(crate) async fn timed(
    stats: &Stats,
    plan: Plan,
    mut op: impl AsyncFnMut(usize) -> BoxResult<()>,
) -> BoxResult<(Latency, PerOp)> {
    for i in 0..plan.warmup {
        op(i).await?;
    }
    let mut conn = stats.conn.clone();
    let before = snapshot(&mut conn).await?;
    let measured = Plan {
        warmup: 0,
        iters: plan.iters,
    };
    let latency = measure(measured, async |i| op(plan.warmup + i).await).await?;
    let after = snapshot(&mut conn).await?;
    let per = per_op(&before, &after, plan.iters as u64, &stats.costs);
    println!(
        "  p50 {:>8.1} µs  p99 {:>8.1} µs  server {:>5.1} µs/op, CPU {:>5.1} µs/op, {:.2} reads/op  ({} iterations)",
        latency.p50_us, latency.p99_us, per.server_us, per.cpu_us, per.reads, latency.iters
    );
    Ok((latency, per))
}

/// What one call of `GET` and `PTTL` costs where scripts run them (a refusal's reply),
/// measured on a 10-message session of its own with `get` (every `GET` reads the whole record,
/// as a refused script does for its reply; every `PTTL` is the read's).
async fn calibrate(conn: &ConnectionManager, url: &str, args: &Args) -> BoxResult<InnerCosts> {
    let plan = plan(args);
    let m = manager(Arc::new(
        connect_store(url, ConnectionMode::Multiplexed).await?,
    ));
    let sid = id("calibrate-10")?;
    m.update(&sid, &Agent::with_messages(10)).await?;
    let mut conn = conn.clone();
    for _ in 0..plan.warmup {
        m.get(&sid).await?.ok_or("session vanished")?;
    }
    let before = snapshot(&mut conn).await?;
    for _ in 0..plan.iters {
        m.get(&sid).await?.ok_or("session vanished")?;
    }
    let after = snapshot(&mut conn).await?;
    let costs = InnerCosts {
        get_record_us: server_stats::usec_per_call(&before, &after, "get"),
        pttl_us: server_stats::usec_per_call(&before, &after, "pttl"),
    };
    m.delete(&sid).await?;
    println!(
        "calibration: GET of a 10-message record {:.2} µs/call, PTTL {:.2} µs/call",
        costs.get_record_us, costs.pttl_us
    );
    Ok(costs)
}

async fn redis_benches(args: &Args, rows: &mut Vec<Row>) -> BoxResult<()> {
    let url0 = db_url(&args.redis_url, 0);
    let conn = raw_manager(&url0).await?;
    let costs = calibrate(&conn, &url0, args).await?;
    let stats = Stats { conn, costs };
    let stats = &stats;
    if wants(args, "ops") {
        for messages in [10, 100] {
            ops_section(args, stats, &url0, messages, rows).await?;
        }
    }
    if wants(args, "peers") {
        #[cfg(feature = "peers")]
        for messages in [10, 100] {
            peers::latency_section(args, stats, &url0, messages, rows).await?;
        }
        #[cfg(not(feature = "peers"))]
        println!("peers: skipped (session-bench was built without the feature `peers`)");
    }
    if wants(args, "pool") {
        pool_section(args, stats, &url0, rows).await?;
    }
    if wants(args, "list") {
        list_section(args, stats, rows).await?;
    }
    if wants(args, "throughput") {
        throughput_section(args, stats, &url0, rows).await?;
    }
    if wants(args, "many") {
        many::section(args, stats, &db_url(&args.redis_url, 3), rows).await?;
    }
    if wants(args, "size") {
        size_section(&url0, rows).await?;
    }
    if wants(args, "compression") {
        compression::section(args, stats, &url0, rows).await?;
    }
    if wants(args, "encryption") {
        encryption::section(args, stats, &url0, rows).await?;
    }
    if wants(args, "layout") {
        layout_cost::section(args, stats, &url0, rows).await?;
    }
    if wants(args, "cpu") {
        cpu_section(args, rows).await?;
    }
    Ok(())
}

/// The client-side work of each operation without any I/O: the codec, on this core.
async fn cpu_section(args: &Args, rows: &mut Vec<Row>) -> BoxResult<()> {
    let plan = plan(args);
    let codec = Codec::default();
    for messages in [10, 100] {
        let agent = Agent::with_messages(messages);
        let sid = id(&format!("cpu-{messages}"))?;
        let bytes = codec.encode(&sid, &agent)?;
        let section = format!("Client CPU without I/O, {messages}-message agent");
        println!("{section}");
        let l = measure(plan, async |_| {
            std::hint::black_box(codec.encode(&sid, std::hint::black_box(&agent))?);
            Ok::<(), BoxError>(())
        })
        .await?;
        rows.push(Row::latency(
            &format!("cpu{messages}.encode"),
            &section,
            "Codec::encode (rmp_serde::to_vec_named + envelope)",
            l,
            None,
        ));
        let l = measure(plan, async |_| {
            let a: Agent = codec.decode(&sid, std::hint::black_box(&bytes))?;
            std::hint::black_box(a);
            Ok::<(), BoxError>(())
        })
        .await?;
        rows.push(Row::latency(
            &format!("cpu{messages}.decode"),
            &section,
            "Codec::decode (envelope check + rmp_serde::from_slice)",
            l,
            None,
        ));
    }
    Ok(())
}

/// The command-time target of the writes (issue "write path v2"): µs per operation at the
/// 10- and 100-message agent.
fn write_server_target(messages: usize) -> Target {
    Target::ServerUsAtMost(if messages >= 100 { 7.0 } else { 6.0 })
}

/// The title of a section on one agent: its envelope, and what is stored when the codec
/// compresses it.
pub(crate) fn agent_title(messages: usize, codec: &Codec, agent: &Agent) -> BoxResult<String> {
    let sid = id("title")?;
    let plain = compression::plain(codec).encode(&sid, agent)?.len();
    let stored = codec.encode(&sid, agent)?.len();
    Ok(if stored == plain {
        format!("{messages}-message agent ({plain} B envelope)")
    } else {
        format!(
            "{messages}-message agent ({plain} B envelope, {stored} B stored: {})",
            codec.compression()
        )
    })
}

/// Raw GET / SET EX (with and without the codec) and the store's get, get_or_create, update
/// and modify on one agent size.
async fn ops_section(
    args: &Args,
    stats: &Stats,
    url: &str,
    messages: usize,
    rows: &mut Vec<Row>,
) -> BoxResult<()> {
    let plan = plan(args);
    let agent = Agent::with_messages(messages);
    let sid = id(&format!("ops-{messages}"))?;
    let a = manager(Arc::new(
        connect_store(url, ConnectionMode::Multiplexed).await?,
    ));
    let b = manager(Arc::new(
        connect_store(url, ConnectionMode::Multiplexed).await?,
    ));
    let codec = a.codec().clone();
    let bytes = codec.encode(&sid, &agent)?;
    let section = format!("Multiplexed, {}", agent_title(messages, &codec, &agent)?);
    let k = |name: &str| format!("mux{messages}.{name}");
    println!("{section}");

    let mut raw = raw_manager(url).await?;
    let raw_key = format!("bench:raw:{messages}");
    raw::set_ex(&mut raw, &raw_key, &bytes).await?;
    println!(" raw GET");
    let (l, s) = timed(stats, plan, async |_| raw::get(&mut raw, &raw_key).await).await?;
    rows.push(Row::latency(
        &k("raw_get"),
        &section,
        "raw redis-rs GET",
        l,
        Some(s),
    ));
    println!(" raw SET EX");
    let (l, s) = timed(stats, plan, async |_| {
        raw::set_ex(&mut raw, &raw_key, &bytes).await
    })
    .await?;
    rows.push(Row::latency(
        &k("raw_set"),
        &section,
        "raw redis-rs SET EX",
        l,
        Some(s),
    ));
    println!(" raw GET + decode");
    let (l, s) = timed(stats, plan, async |_| {
        let got = raw::get_bytes(&mut raw, &raw_key).await?;
        let decoded: Agent = codec.decode(&sid, &got)?;
        std::hint::black_box(decoded);
        Ok(())
    })
    .await?;
    rows.push(Row::latency(
        &k("raw_get_decode"),
        &section,
        "raw redis-rs GET + Codec::decode",
        l,
        Some(s),
    ));
    println!(" raw encode + SET EX");
    let (l, s) = timed(stats, plan, async |_| {
        let encoded = codec.encode(&sid, std::hint::black_box(&agent))?;
        raw::set_ex(&mut raw, &raw_key, &encoded).await
    })
    .await?;
    rows.push(Row::latency(
        &k("raw_set_encode"),
        &section,
        "raw redis-rs Codec::encode + SET EX",
        l,
        Some(s),
    ));

    a.update(&sid, &agent).await?;

    println!(" get");
    let (l, s) = timed(stats, plan, async |_| {
        a.get(&sid).await?.ok_or("session vanished")?;
        Ok(())
    })
    .await?;
    rows.push(Row::latency(&k("get"), &section, "get", l, Some(s)).vs(&k("raw_get")));
    rows.push(
        Row::latency(
            &k("get_vs_decode"),
            &section,
            "get, vs raw GET + decode",
            l,
            None,
        )
        .vs(&k("raw_get_decode")),
    );

    println!(" get_or_create (exists)");
    let (l, s) = timed(stats, plan, async |_| {
        a.get_or_create(&sid, || Agent::with_messages(0)).await?;
        Ok(())
    })
    .await?;
    rows.push(
        Row::latency(
            &k("get_or_create"),
            &section,
            "get_or_create (session exists)",
            l,
            Some(s),
        )
        .vs(&k("raw_get")),
    );

    println!(" get_or_create (new session)");
    let new_ids: Vec<SessionId> = (0..plan.warmup + plan.iters)
        .map(|i| id(&format!("new-{messages}-{i}")))
        .collect::<BoxResult<_>>()?;
    let (l, s) = timed(stats, plan, async |i| {
        a.get_or_create(&new_ids[i], || agent.clone()).await?;
        Ok(())
    })
    .await?;
    let mut row = Row::latency(
        &k("get_or_create_new"),
        &section,
        "get_or_create (new session: creates it)",
        l,
        Some(s),
    )
    .vs(&k("raw_set"));
    row = if bytes.len() < 16 * 1024 {
        row.target(Target::RoundTripsAtMost(1.0))
    } else {
        row.note(
            "a request over 16 KB arrives in more than one read: reads/op is not round trips here",
        )
    };
    rows.push(row);
    for sid in &new_ids {
        a.delete(sid).await?;
    }

    println!(" update");
    let (l, s) = timed(stats, plan, async |_| {
        a.update(&sid, &agent).await?;
        Ok(())
    })
    .await?;
    rows.push(
        Row::latency(&k("update"), &section, "update", l, Some(s))
            .vs(&k("raw_set"))
            .target(write_server_target(messages)),
    );

    println!(" modify, this instance wrote last");
    let (l, s) = timed(stats, plan, async |_| {
        a.modify(&sid, Agent::bump).await?;
        Ok(())
    })
    .await?;
    rows.push(
        Row::latency(
            &k("modify_self"),
            &section,
            "modify, this instance wrote last",
            l,
            Some(s),
        )
        .vs(&k("raw_set"))
        .target(write_server_target(messages)),
    );

    // The run-time fallback (SESSION_FALLBACK=runtime, production's default) on a healthy
    // Redis: what its bookkeeping (mode check, near-copy) adds to the same operations.
    let failover = manager(Arc::new(session_core::FailoverStore::new(Arc::new(
        connect_store(url, ConnectionMode::Multiplexed).await?,
    ))));
    failover.update(&sid, &agent).await?;
    println!(" get, through the run-time fallback's store");
    let (l, s) = timed(stats, plan, async |_| {
        failover.get(&sid).await?.ok_or("session vanished")?;
        Ok(())
    })
    .await?;
    rows.push(
        Row::latency(
            &k("failover_get"),
            &section,
            "get, FailoverStore over Redis (healthy)",
            l,
            Some(s),
        )
        .vs(&k("get")),
    );
    println!(" update, through the run-time fallback's store");
    let (l, s) = timed(stats, plan, async |_| {
        failover.update(&sid, &agent).await?;
        Ok(())
    })
    .await?;
    rows.push(
        Row::latency(
            &k("failover_update"),
            &section,
            "update, FailoverStore over Redis (healthy)",
            l,
            Some(s),
        )
        .vs(&k("update")),
    );

    println!(" modify, another instance wrote last (two instances alternating)");
    let (l, s) = timed(stats, plan, async |i| {
        let m = if i % 2 == 0 { &a } else { &b };
        m.modify(&sid, Agent::bump).await?;
        Ok(())
    })
    .await?;
    rows.push(
        Row::latency(
            &k("modify_other"),
            &section,
            "modify, another instance wrote last",
            l,
            Some(s),
        )
        .vs(&k("raw_get"))
        .target(write_server_target(messages))
        .note("two managers on two connections alternate on one session"),
    );
    Ok(())
}

/// Pool mode: raw GETs through deadpool-redis and through a pool that recycles like the
/// store's, and the store in `ConnectionMode::Pool`.
async fn pool_section(args: &Args, stats: &Stats, url: &str, rows: &mut Vec<Row>) -> BoxResult<()> {
    const POOL: usize = 8;
    let plan = plan(args);
    let agent = Agent::with_messages(10);
    let sid = id("pool-10")?;
    let bytes = Codec::default().encode(&sid, &agent)?;
    let section = format!(
        "Pool mode (max_size {POOL}, a checkout per operation), 10-message agent ({} B)",
        bytes.len()
    );
    println!("{section}");
    let raw_key = "bench:raw:pool";
    let mut direct = raw_manager(url).await?;
    raw::set_ex(&mut direct, raw_key, &bytes).await?;

    let dp = raw::deadpool_redis_pool(url, POOL)?;
    println!(" raw GET, deadpool-redis pool");
    let (l, s) = timed(stats, plan, async |_| {
        let mut con = dp.get().await?;
        raw::get(&mut con, raw_key).await
    })
    .await?;
    rows.push(Row::latency(
        "pool.raw_get",
        &section,
        "raw GET, deadpool-redis pool (recycle = UNWATCH + PING)",
        l,
        Some(s),
    ));
    println!(" raw SET EX, deadpool-redis pool");
    let (l, s) = timed(stats, plan, async |_| {
        let mut con = dp.get().await?;
        raw::set_ex(&mut con, raw_key, &bytes).await
    })
    .await?;
    rows.push(Row::latency(
        "pool.raw_set",
        &section,
        "raw SET EX, deadpool-redis pool",
        l,
        Some(s),
    ));

    let fp = raw::fast_pool(url, POOL)?;
    println!(" raw GET, fast-recycle pool");
    let (l, s) = timed(stats, plan, async |_| {
        let mut con = fp.get().await.map_err(|e| format!("checkout: {e}"))?;
        raw::get(&mut *con, raw_key).await
    })
    .await?;
    rows.push(
        Row::latency(
            "pool.raw_get_fast",
            &section,
            "raw GET, pool recycling like session-redis (no PING when busy)",
            l,
            Some(s),
        )
        .note("session-redis' own pool is not public; this is its recycle policy rebuilt"),
    );

    let store = connect_store(
        url,
        ConnectionMode::Pool {
            // `try_into`: compiles whether `max_size` is a `usize` or a `NonZeroUsize`.
            max_size: POOL.try_into()?,
        },
    )
    .await?;
    let m = manager(Arc::new(store));
    m.update(&sid, &agent).await?;
    println!(" get, pool mode");
    let (l, s) = timed(stats, plan, async |_| {
        m.get(&sid).await?.ok_or("session vanished")?;
        Ok(())
    })
    .await?;
    rows.push(
        Row::latency("pool.get", &section, "get, pool mode", l, Some(s))
            .vs("pool.raw_get")
            .target(Target::RatioAtMost(1.20)),
    );
    rows.push(
        Row::latency(
            "pool.get_vs_fast",
            &section,
            "get, pool mode (vs the fast-recycle raw pool)",
            l,
            None,
        )
        .vs("pool.raw_get_fast"),
    );
    println!(" update, pool mode");
    let (l, s) = timed(stats, plan, async |_| {
        m.update(&sid, &agent).await?;
        Ok(())
    })
    .await?;
    rows.push(
        Row::latency("pool.update", &section, "update, pool mode", l, Some(s)).vs("pool.raw_set"),
    );
    println!(" modify, pool mode, this instance wrote last");
    let (l, s) = timed(stats, plan, async |_| {
        m.modify(&sid, Agent::bump).await?;
        Ok(())
    })
    .await?;
    rows.push(
        Row::latency(
            "pool.modify_self",
            &section,
            "modify, pool mode, this instance wrote last",
            l,
            Some(s),
        )
        .vs("pool.raw_set"),
    );
    Ok(())
}

/// Writes `count` sessions shaped like the 10-message agent under ids `s000000`...: one
/// written by the store, the rest copies of its hash (same layout, same bytes), pipelined.
async fn fill(url: &str, count: usize) -> BoxResult<Duration> {
    let started = Instant::now();
    let m = manager(Arc::new(
        connect_store(url, ConnectionMode::Multiplexed).await?,
    ));
    let template = id("s000000")?;
    let mut agent = Agent::with_messages(10);
    m.update(&template, &agent).await?;
    let store = connect_store(url, ConnectionMode::Multiplexed).await?;
    let template_key = store.key_of(&template);
    let mut con = raw_manager(url).await?;
    // The template's record, copied under every other key (one `SET ... PX` each).
    let record: Option<Vec<u8>> = redis::cmd("GET")
        .arg(&template_key)
        .query_async(&mut con)
        .await?;
    let Some(record) = record else {
        return Err("the template session was not written".into());
    };
    let prefix = &template_key[..template_key.len() - "s000000".len()];
    const BATCH: usize = 1000;
    let mut i = 1;
    while i < count {
        let mut pipe = redis::pipe();
        for j in i..(i + BATCH).min(count) {
            let key = format!("{prefix}s{j:06}");
            pipe.cmd("SET")
                .arg(&key)
                .arg(&record)
                .arg("PX")
                .arg(3_600_000)
                .ignore();
        }
        let _: () = pipe.query_async(&mut con).await?;
        i += BATCH;
    }
    agent.bump();
    Ok(started.elapsed())
}

async fn list_section(args: &Args, stats: &Stats, rows: &mut Vec<Row>) -> BoxResult<()> {
    let plan = if args.quick {
        Plan {
            warmup: 20,
            iters: 100,
        }
    } else {
        Plan {
            warmup: 100,
            iters: args.iters.map_or(1000, |n| n.min(2000)),
        }
    };
    let section = "Listing (10-message agents, list_page limit 100)";
    println!("{section}");

    // 100 sessions, alone in database 1.
    let url1 = db_url(&args.redis_url, 1);
    let fill_time = fill(&url1, 100).await?;
    println!(" filled 100 sessions in {:.2}s", fill_time.as_secs_f64());
    let m = manager(Arc::new(
        connect_store(&url1, ConnectionMode::Multiplexed).await?,
    ));
    let mut listed = 0usize;
    println!(" list_page(None, 100), 100 stored");
    let (l, s) = timed(stats, plan, async |_| {
        let page = m.list_page(None, 100).await?;
        listed = page.sessions.len();
        Ok(())
    })
    .await?;
    rows.push(
        Row::latency(
            "list.100",
            section,
            "list_page(100), 100 stored",
            l,
            Some(s),
        )
        .target(Target::P50AtMostUs(600.0))
        .note(format!("first page held {listed} sessions")),
    );

    // The seed's way, without KEYS: every key, then one read per key, one after the other.
    let store1 = connect_store(&url1, ConnectionMode::Multiplexed).await?;
    let pattern = format!("{}*", store1.key_prefix());
    let mut con = raw_manager(&url1).await?;
    let seed_plan = Plan {
        warmup: plan.warmup / 10 + 1,
        iters: plan.iters / 10 + 1,
    };
    println!(" seed-style listing: SCAN all + one GET per key, 100 stored");
    let (l, s) = timed(stats, seed_plan, async |_| {
        let mut cursor = 0u64;
        let mut keys: Vec<String> = Vec::new();
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut con)
                .await?;
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        for key in keys.iter().take(100) {
            let _: Option<Vec<u8>> = redis::cmd("GET").arg(key).query_async(&mut con).await?;
        }
        Ok(())
    })
    .await?;
    rows.push(
        Row::latency(
            "list.seed100",
            section,
            "seed-style: SCAN all + 1 GET per key (sequential), 100 stored",
            l,
            Some(s),
        )
        .note("stands in for the seed's KEYS + GET per key; no decoding"),
    );
    rows.push(
        Row::latency(
            "list.100_vs_seed",
            section,
            "list_page(100), 100 stored, vs the seed-style listing (ratio < 1: faster)",
            rows.iter()
                .find(|r| r.key == "list.100")
                .and_then(|r| r.latency)
                .ok_or("missing list.100")?,
            None,
        )
        .vs("list.seed100")
        .note(
            "the issue's 15x is against the seed's ~10 ms (Python); this stand-in is a Rust client",
        ),
    );

    // 100,000 sessions in database 2.
    let url2 = db_url(&args.redis_url, 2);
    let count = 100_000;
    let fill_time = fill(&url2, count).await?;
    println!(
        " filled {count} sessions in {:.2}s",
        fill_time.as_secs_f64()
    );
    let m = manager(Arc::new(
        connect_store(&url2, ConnectionMode::Multiplexed).await?,
    ));
    println!(" list_page(None, 100), {count} stored");
    let (l, s) = timed(stats, plan, async |_| {
        let page = m.list_page(None, 100).await?;
        listed = page.sessions.len();
        Ok(())
    })
    .await?;
    rows.push(
        Row::latency(
            "list.100k",
            section,
            "list_page(100), 100,000 stored",
            l,
            Some(s),
        )
        .target(Target::P50AtMostUs(2000.0))
        .note(format!(
            "first page held {listed} sessions; filled by pipelined SET in {:.1}s",
            fill_time.as_secs_f64()
        )),
    );
    // Walking on: every call follows the cursor of the one before (starting over at the end).
    let mut cursor = m.list_page(None, 100).await?.next;
    let mut pages = 0usize;
    let mut total = 0usize;
    println!(" list_page(cursor, 100), following pages, {count} stored");
    let (l, s) = timed(stats, plan, async |_| {
        let page = m.list_page(cursor.as_ref(), 100).await?;
        pages += 1;
        total += page.sessions.len();
        cursor = page.next;
        Ok(())
    })
    .await?;
    rows.push(
        Row::latency(
            "list.100k_next",
            section,
            "list_page(cursor, 100), following pages, 100,000 stored",
            l,
            Some(s),
        )
        .note(format!(
            "pages held {:.1} sessions on average",
            total as f64 / pages.max(1) as f64
        )),
    );
    Ok(())
}

/// Runs `tasks` tasks for `time`, each calling `op(task)` in a loop; returns ops/s, where one
/// call of `op` counts `ops_per_call` operations.
async fn run_tasks<F, Fut>(tasks: usize, time: Duration, ops_per_call: u64, op: F) -> BoxResult<f64>
where
    F: Fn(usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = BoxResult<()>> + Send + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut handles = Vec::with_capacity(tasks);
    for t in 0..tasks {
        let (stop, done, op) = (stop.clone(), done.clone(), op.clone());
        handles.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                op(t).await?;
                done.fetch_add(ops_per_call, Ordering::Relaxed);
            }
            Ok::<(), BoxError>(())
        }));
    }
    tokio::time::sleep(time).await;
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(done.load(Ordering::Relaxed) as f64 / elapsed)
}

/// Warms up for a tenth of `time`, then measures with the server's counters around it.
pub(crate) async fn throughput<F, Fut>(
    stats: &Stats,
    tasks: usize,
    time: Duration,
    ops_per_call: u64,
    op: F,
) -> BoxResult<(f64, PerOp)>
where
    F: Fn(usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = BoxResult<()>> + Send + 'static,
{
    run_tasks(tasks, time / 10, ops_per_call, op.clone()).await?;
    let mut conn = stats.conn.clone();
    let before = snapshot(&mut conn).await?;
    let started = Instant::now();
    let ops_per_s = run_tasks(tasks, time, ops_per_call, op).await?;
    let after = snapshot(&mut conn).await?;
    let ops = (ops_per_s * started.elapsed().as_secs_f64()).round() as u64;
    let per = per_op(&before, &after, ops, &stats.costs);
    println!(
        "  {:.0} ops/s  server {:.1} µs/op, CPU {:.1} µs/op",
        ops_per_s, per.server_us, per.cpu_us
    );
    Ok((ops_per_s, per))
}

/// The tasks of the throughput section, and the section's title.
pub(crate) const TASKS: usize = 50;

pub(crate) fn throughput_title(time: Duration, codec: &Codec, agent: &Agent) -> BoxResult<String> {
    Ok(format!(
        "Throughput: {TASKS} tasks on one current_thread runtime, {}, {:.1}s",
        agent_title(10, codec, agent)?,
        time.as_secs_f64()
    ))
}

async fn throughput_section(
    args: &Args,
    stats: &Stats,
    url: &str,
    rows: &mut Vec<Row>,
) -> BoxResult<()> {
    let time = throughput_time(args);
    let agent = Agent::with_messages(10);
    let m = manager(Arc::new(
        connect_store(url, ConnectionMode::Multiplexed).await?,
    ));
    let codec = m.codec().clone();
    let bytes = codec.encode(&id("tp-0")?, &agent)?;
    let section = throughput_title(time, &codec, &agent)?;
    println!("{section}");

    let raw = raw_manager(url).await?;
    let keys: Arc<Vec<String>> = Arc::new((0..TASKS).map(|t| format!("bench:tp:{t}")).collect());
    for key in keys.iter() {
        raw::set_ex(&mut raw.clone(), key, &bytes).await?;
    }
    println!(" raw GET + SET EX");
    let (ops, s) = throughput(stats, TASKS, time, 2, {
        let (raw, keys, bytes) = (raw.clone(), keys.clone(), bytes.clone());
        move |t| {
            let (mut raw, keys, bytes) = (raw.clone(), keys.clone(), bytes.clone());
            async move {
                raw::get(&mut raw, &keys[t]).await?;
                raw::set_ex(&mut raw, &keys[t], &bytes).await
            }
        }
    })
    .await?;
    rows.push(Row::throughput(
        "tp.raw",
        &section,
        "raw redis-rs GET + SET EX, own key per task",
        ops,
        Some(s),
    ));
    println!(" raw GET + decode + change + encode + SET EX");
    let sid0 = id("tp-0")?;
    let (ops, s) = throughput(stats, TASKS, time, 2, {
        let (raw, keys, sid0, codec) = (raw.clone(), keys.clone(), sid0.clone(), codec.clone());
        move |t| {
            let (mut raw, keys, sid0, codec) =
                (raw.clone(), keys.clone(), sid0.clone(), codec.clone());
            async move {
                let got = raw::get_bytes(&mut raw, &keys[t]).await?;
                let mut state: Agent = codec.decode(&sid0, &got)?;
                state.bump();
                let encoded = codec.encode(&sid0, &state)?;
                raw::set_ex(&mut raw, &keys[t], &encoded).await
            }
        }
    })
    .await?;
    rows.push(Row::throughput(
        "tp.raw_codec",
        &section,
        "raw redis-rs GET + Codec::decode, change, Codec::encode + SET EX, own key per task",
        ops,
        Some(s),
    ));

    let ids: Arc<Vec<SessionId>> = Arc::new(
        (0..TASKS)
            .map(|t| id(&format!("tp-{t}")))
            .collect::<BoxResult<_>>()?,
    );
    for sid in ids.iter() {
        m.update(sid, &agent).await?;
    }
    println!(" get + modify, own session per task");
    let (ops, s) = throughput(stats, TASKS, time, 2, {
        let (m, ids) = (m.clone(), ids.clone());
        move |t| {
            let (m, ids) = (m.clone(), ids.clone());
            async move {
                m.get(&ids[t]).await?.ok_or("session vanished")?;
                m.modify(&ids[t], Agent::bump).await?;
                Ok(())
            }
        }
    })
    .await?;
    rows.push(
        Row::throughput(
            "tp.store",
            &section,
            "get + modify, own session per task",
            ops,
            Some(s),
        )
        .vs("tp.raw_codec")
        .target(Target::ThroughputAtLeast(0.80)),
    );
    rows.push(
        Row::throughput(
            "tp.store_vs_raw",
            &section,
            "get + modify, vs raw GET + SET EX without the codec",
            ops,
            None,
        )
        .vs("tp.raw"),
    );
    println!(" get + update, own session per task");
    let (ops, s) = throughput(stats, TASKS, time, 2, {
        let (m, ids) = (m.clone(), ids.clone());
        move |t| {
            let (m, ids) = (m.clone(), ids.clone());
            async move {
                let mut session = m.get(&ids[t]).await?.ok_or("session vanished")?;
                session.value_mut().bump();
                m.update(&ids[t], session.value()).await?;
                Ok(())
            }
        }
    })
    .await?;
    rows.push(
        Row::throughput(
            "tp.store_update",
            &section,
            "get + update, own session per task",
            ops,
            Some(s),
        )
        .vs("tp.raw_codec")
        .target(Target::ThroughputAtLeast(0.80)),
    );

    #[cfg(feature = "peers")]
    if wants(args, "peers") {
        peers::throughput_rows(stats, url, time, &section, rows).await?;
    }

    println!(" get + modify, 10 tasks per session");
    // Ten writers hammering one session in a tight loop is contention no service should see:
    // a modify may then lose every one of its bounded attempts and give up with Conflict.
    // That is the designed outcome, so it is counted, not treated as a failure of the run.
    let gave_up = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (ops, s) = throughput(stats, TASKS, time, 2, {
        let (m, ids, gave_up) = (m.clone(), ids.clone(), gave_up.clone());
        move |t| {
            let (m, ids, gave_up) = (m.clone(), ids.clone(), gave_up.clone());
            async move {
                let sid = &ids[t % 5];
                m.get(sid).await?.ok_or("session vanished")?;
                match m.modify(sid, Agent::bump).await {
                    Ok(_) => {}
                    Err(session_core::Error::Conflict { .. }) => {
                        gave_up.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => return Err(e.into()),
                }
                Ok(())
            }
        }
    })
    .await?;
    println!(
        "  {} modifies gave up after {} attempts",
        gave_up.load(Ordering::Relaxed),
        session_core::DEFAULT_MAX_ATTEMPTS
    );
    rows.push(
        Row::throughput(
            "tp.shared",
            &section,
            "get + modify, 5 sessions shared by 10 tasks each (conflicts)",
            ops,
            Some(s),
        )
        .vs("tp.raw_codec"),
    );
    Ok(())
}

/// The seed's `maxmemory` (256mb: Redis reads `mb` as MiB).
pub(crate) const SEED_MAXMEMORY: u64 = 256 * 1024 * 1024;

/// "about N sessions in the seed's maxmemory 256mb".
pub(crate) fn sessions_in_maxmemory(usage: u64) -> String {
    format!(
        "~{} sessions in the seed's maxmemory 256mb (256 MiB / MEMORY USAGE, an estimate)",
        thousands(SEED_MAXMEMORY / usage.max(1))
    )
}

/// `12345` as `12,345`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

async fn size_section(url: &str, rows: &mut Vec<Row>) -> BoxResult<()> {
    let section = "Size per session";
    println!("{section}");
    let m = manager(Arc::new(
        connect_store(url, ConnectionMode::Multiplexed).await?,
    ));
    let codec = m.codec().clone();
    let store = connect_store(url, ConnectionMode::Multiplexed).await?;
    let mut con = raw_manager(url).await?;
    for messages in [10, 100] {
        let agent = Agent::with_messages(messages);
        let sid = id(&format!("size-{messages}"))?;
        let plain = compression::plain(&codec).encode(&sid, &agent)?.len();
        let stored = codec.encode(&sid, &agent)?;
        let json = serde_json::to_vec(&agent)?.len();
        m.update(&sid, &agent).await?;
        let usage = raw::memory_usage(&mut con, &store.key_of(&sid)).await?;
        let raw_key = format!("bench:size:{messages}");
        raw::set_ex(&mut con, &raw_key, &stored).await?;
        let raw_usage = raw::memory_usage(&mut con, &raw_key).await?;
        let stored_text = if stored.len() == plain {
            String::new()
        } else {
            format!(", {} B stored ({})", stored.len(), codec.compression())
        };
        let note = format!(
            "envelope {plain} B ({:.0}% of JSON's {json} B){stored_text}; Redis MEMORY USAGE: \
             session hash {usage} B, a plain string of the stored envelope {raw_usage} B \
             (+{} B for m, v, c, t (128 B of write tokens) and the hash's overhead); {}",
            plain as f64 * 100.0 / json as f64,
            usage.saturating_sub(raw_usage),
            sessions_in_maxmemory(usage)
        );
        println!("  {messages} messages: {note}");
        let mut row = Row::latency(
            &format!("size.{messages}"),
            section,
            &format!("{messages}-message agent"),
            Latency::from_samples(Vec::new()),
            None,
        )
        .note(note);
        row.latency = None;
        rows.push(row);
    }
    Ok(())
}

async fn memory_benches(args: &Args, rows: &mut Vec<Row>) -> BoxResult<()> {
    let plan = {
        let p = plan(args);
        Plan {
            warmup: p.warmup * 4,
            iters: p.iters * 4,
        }
    };
    let time = throughput_time(args).min(Duration::from_secs(2));
    let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    let m = manager(store);
    for messages in [10, 100] {
        let agent = Agent::with_messages(messages);
        let sid = id(&format!("mem-{messages}"))?;
        let bytes = Codec::default().encode(&sid, &agent)?.len();
        let section =
            format!("Memory store, {messages}-message agent ({bytes} B), 2 worker threads");
        println!("{section}");
        m.update(&sid, &agent).await?;
        println!(" get");
        let l = measure(plan, async |_| {
            m.get(&sid).await?.ok_or("session vanished")?;
            Ok::<(), BoxError>(())
        })
        .await?;
        println!("  p50 {:.2} µs  p99 {:.2} µs", l.p50_us, l.p99_us);
        let mut row = Row::latency(&format!("mem{messages}.get"), &section, "get", l, None);
        if messages == 10 {
            row = row.target(Target::P50AtMostUs(3.0));
        }
        rows.push(row);
        println!(" modify");
        let l = measure(plan, async |_| {
            m.modify(&sid, Agent::bump).await?;
            Ok::<(), BoxError>(())
        })
        .await?;
        println!("  p50 {:.2} µs  p99 {:.2} µs", l.p50_us, l.p99_us);
        rows.push(Row::latency(
            &format!("mem{messages}.modify"),
            &section,
            "modify",
            l,
            None,
        ));
        // The run-time fallback's bookkeeping on a primary that costs no network: what a
        // FailoverStore adds to each call, in CPU, without the noise of a round trip.
        let failover = manager(Arc::new(session_core::FailoverStore::new(Arc::new(
            MemoryStore::new(),
        ))));
        failover.update(&sid, &agent).await?;
        for (what, key, modify) in [("get", "get", false), ("modify", "modify", true)] {
            println!(" {what}, FailoverStore over the memory store");
            let l = measure(plan, async |_| {
                if modify {
                    failover.modify(&sid, Agent::bump).await?;
                } else {
                    failover.get(&sid).await?.ok_or("session vanished")?;
                }
                Ok::<(), BoxError>(())
            })
            .await?;
            println!("  p50 {:.2} µs  p99 {:.2} µs", l.p50_us, l.p99_us);
            rows.push(
                Row::latency(
                    &format!("mem{messages}.failover_{key}"),
                    &section,
                    &format!("{what}, FailoverStore over the memory store (healthy)"),
                    l,
                    None,
                )
                .vs(&format!("mem{messages}.{key}")),
            );
        }

        let ids: Arc<Vec<SessionId>> = Arc::new(vec![
            id(&format!("mem-{messages}-a"))?,
            id(&format!("mem-{messages}-b"))?,
        ]);
        for sid in ids.iter() {
            m.update(sid, &agent).await?;
        }
        for (what, with_modify) in [("get", false), ("get + modify", true)] {
            println!(" {what}, 2 tasks on 2 threads");
            let ops = {
                let (m, ids) = (m.clone(), ids.clone());
                run_tasks(2, time, if with_modify { 2 } else { 1 }, move |t| {
                    let (m, ids) = (m.clone(), ids.clone());
                    async move {
                        m.get(&ids[t]).await?.ok_or("session vanished")?;
                        if with_modify {
                            m.modify(&ids[t], Agent::bump).await?;
                        }
                        // The memory store never waits: yield so the stop flag is seen.
                        tokio::task::yield_now().await;
                        Ok(())
                    }
                })
                .await?
            };
            println!("  {ops:.0} ops/s");
            rows.push(Row::throughput(
                &format!(
                    "mem{messages}.tp.{}",
                    if with_modify { "mix" } else { "get" }
                ),
                &section,
                &format!("{what}, 2 tasks on 2 threads, own session each"),
                ops,
                None,
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::db_url;

    #[test]
    fn db_url_replaces_the_database() {
        assert_eq!(
            db_url("redis://127.0.0.1:7000", 2),
            "redis://127.0.0.1:7000/2"
        );
        assert_eq!(
            db_url("redis://127.0.0.1:7000/", 1),
            "redis://127.0.0.1:7000/1"
        );
        assert_eq!(
            db_url("redis://127.0.0.1:7000/5", 0),
            "redis://127.0.0.1:7000/0"
        );
    }
}
