//! `sessionctl doctor`: one line per check (ok, warn, fail) with advice: configuration,
//! connection, server version, memory policy, persistence, latency and the session count.

use std::{
    collections::HashMap,
    process::ExitCode,
    time::{Duration, Instant},
};

use redis::aio::MultiplexedConnection;
use serde::Serialize;
use serde_json::json;
use session_core::SessionStore;

use crate::{
    Context,
    cli::DoctorArgs,
    error::{CliResult, EXIT_FAILURE},
    nodes::Node,
    output::{self, human_duration, human_size},
};

const POLICY_ADVICE: &str = "see README \"Redis memory policy\"";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Serialize)]
struct Check {
    check: &'static str,
    status: Status,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    advice: Option<String>,
}

impl Check {
    fn new(check: &'static str, status: Status, detail: impl Into<String>) -> Self {
        Self {
            check,
            status,
            detail: detail.into(),
            advice: None,
        }
    }

    fn advice(mut self, advice: impl Into<String>) -> Self {
        self.advice = Some(advice.into());
        self
    }
}

pub(crate) async fn run(ctx: &Context, args: DoctorArgs) -> CliResult<ExitCode> {
    let checks = checks(ctx, args.pings).await;
    let ok = checks.iter().all(|c| c.status != Status::Fail);
    if ctx.json {
        output::print_json(&json!({
            "ok": ok,
            "url": ctx.url(),
            "prefix": ctx.options.key_prefix(),
            "checks": checks,
        }))?;
    } else {
        let width = checks.iter().map(|c| c.check.len()).max().unwrap_or(0);
        for c in &checks {
            let status = match c.status {
                Status::Ok => "ok  ",
                Status::Warn => "warn",
                Status::Fail => "FAIL",
            };
            output::println_stdout(&format!("{status}  {:<width$}  {}", c.check, c.detail))?;
            if let Some(advice) = &c.advice {
                output::println_stdout(&format!("      {:<width$}  advice: {advice}", ""))?;
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILURE)
    })
}

async fn checks(ctx: &Context, pings: u32) -> Vec<Check> {
    let mut checks = vec![config_check(ctx)];
    let started = Instant::now();
    let store = match ctx.store().await {
        Ok(store) => store,
        Err(e) => {
            checks.push(
                Check::new("connect", Status::Fail, first_line(&e.to_string())).advice(format!(
                    "is redis-server running at {}? try --url",
                    ctx.url()
                )),
            );
            return checks;
        }
    };
    checks.push(Check::new(
        "connect",
        Status::Ok,
        format!(
            "connected to {} in {}",
            ctx.url(),
            micros(started.elapsed())
        ),
    ));
    match ctx.primaries().await {
        Ok(nodes) => {
            let managed = ctx.options.is_cluster() || ctx.options.sentinel().is_some();
            if managed {
                checks.push(deployment_check(ctx, &nodes));
            }
            let several = nodes.len() > 1 || ctx.options.is_cluster();
            for node in &nodes {
                node_checks(ctx, node, several, &mut checks).await;
            }
        }
        Err(e) => checks.push(Check::new(
            "deployment",
            Status::Fail,
            first_line(&e.to_string()),
        )),
    }
    checks.push(latency_check(&store, pings).await);
    checks.push(match store.count().await {
        Ok(n) => Check::new(
            "sessions",
            Status::Ok,
            format!("{n} under {:?}", ctx.options.key_prefix()),
        ),
        Err(e) => Check::new("sessions", Status::Fail, format!("cannot count: {e}")),
    });
    checks
}

/// What the store goes through: one server, Sentinel (which master, found through which
/// sentinels, now at which address) or a cluster (how many primaries).
fn deployment_check(ctx: &Context, nodes: &[Node]) -> Check {
    let options = &ctx.options;
    if let Some(sentinel) = options.sentinel() {
        let sentinels: Vec<String> = sentinel
            .sentinels
            .iter()
            .map(|s| format!("{}:{}", s.host(), s.port()))
            .collect();
        let at = nodes.first().map_or("unknown", |n| n.address.as_str());
        return Check::new(
            "deployment",
            Status::Ok,
            format!(
                "Sentinel: master {:?} at {at}, found through the sentinels {}",
                sentinel.master,
                sentinels.join(", ")
            ),
        );
    }
    if options.is_cluster() {
        let served: u32 = nodes
            .iter()
            .flat_map(|n| &n.slots)
            .map(|&(a, b)| u32::from(b) - u32::from(a) + 1)
            .sum();
        let detail = format!(
            "cluster: {} primaries serving {served} of 16384 slots (from {} seed nodes)",
            nodes.len(),
            options.cluster_nodes().len()
        );
        return if served == 16384 {
            Check::new("deployment", Status::Ok, detail)
        } else {
            Check::new("deployment", Status::Fail, detail)
                .advice("some slots have no live primary: writes to their sessions fail")
        };
    }
    Check::new("deployment", Status::Ok, "one server")
}

/// The checks of one primary: reachability and role, then server, memory and persistence.
/// With several nodes each check names the node.
async fn node_checks(ctx: &Context, node: &Node, several: bool, checks: &mut Vec<Check>) {
    let name = |text: String| {
        if several {
            format!("{}: {text}", node.address)
        } else {
            text
        }
    };
    let started = Instant::now();
    let managed = several || ctx.options.sentinel().is_some();
    let mut con = match node.connect().await {
        Ok(con) => con,
        Err(e) if managed => {
            checks.push(Check::new(
                "node",
                Status::Fail,
                format!(
                    "{} unreachable: {}",
                    node.address,
                    first_line(&e.to_string())
                ),
            ));
            return;
        }
        Err(e) => {
            checks.push(Check::new(
                "server",
                Status::Warn,
                format!("INFO not available: {}", first_line(&e.to_string())),
            ));
            return;
        }
    };
    let info = info(&mut con).await;
    let config = config_get(
        &mut con,
        &["maxmemory", "maxmemory-policy", "save", "appendonly"],
    )
    .await;
    let role = info.get("role").map_or("unknown role", String::as_str);
    let slots = if ctx.options.is_cluster() {
        format!(", slots {}", node.slots_text())
    } else {
        String::new()
    };
    let detail = format!(
        "{} {role}{slots}, reachable in {}",
        node.address,
        micros(started.elapsed())
    );
    // One server has no "node" check (its "connect" says it all), unless it is a replica.
    if role == "slave" {
        checks.push(
            Check::new(
                "node",
                if managed { Status::Fail } else { Status::Warn },
                detail,
            )
            .advice(
                "a replica answers where a primary was expected: writes fail (READONLY); a \
                 failover in progress?",
            ),
        );
    } else if managed {
        checks.push(Check::new("node", Status::Ok, detail));
    }
    for mut check in [
        server_check(&info),
        memory_check(&info, &config),
        persistence_check(&info, &config),
    ] {
        check.detail = name(check.detail);
        checks.push(check);
    }
}

fn first_line(text: &str) -> String {
    text.trim_start_matches("sessionctl: ")
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn config_check(ctx: &Context) -> Check {
    let detail = format!(
        "{} prefix {:?} (APP_ENV {}, USE_REDIS={})",
        ctx.url(),
        ctx.options.key_prefix(),
        ctx.settings.app_env,
        ctx.settings.use_redis
    );
    if ctx.settings.use_redis {
        Check::new("config", Status::Ok, detail)
    } else {
        Check::new("config", Status::Warn, detail).advice(
            "these settings say USE_REDIS=false: a service reading them keeps sessions in its \
             own memory, not in this Redis (set USE_REDIS=true for durable sessions)",
        )
    }
}

/// `INFO` (default sections) as a field map; empty when refused.
async fn info(con: &mut MultiplexedConnection) -> HashMap<String, String> {
    let text: redis::RedisResult<String> = redis::cmd("INFO").query_async(con).await;
    text.map(|t| parse_info(&t)).unwrap_or_default()
}

fn parse_info(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// `CONFIG GET` of each name; names the server refuses (CONFIG disabled, ACL) are absent.
async fn config_get(con: &mut MultiplexedConnection, names: &[&str]) -> HashMap<String, String> {
    let mut found = HashMap::new();
    for name in names {
        let reply: redis::RedisResult<HashMap<String, String>> = redis::cmd("CONFIG")
            .arg("GET")
            .arg(*name)
            .query_async(con)
            .await;
        if let Ok(map) = reply {
            found.extend(map);
        }
    }
    found
}

fn server_check(info: &HashMap<String, String>) -> Check {
    let Some(version) = info.get("redis_version") else {
        return Check::new("server", Status::Warn, "version unknown (INFO refused)");
    };
    let mode = info
        .get("redis_mode")
        .map_or("unknown mode", String::as_str);
    let major: u32 = version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    let detail = format!("Redis {version}, {mode}");
    if major < 6 {
        Check::new("server", Status::Warn, detail)
            .advice("Redis 6 or newer is expected (ACL users, UNLINK, RESP3)")
    } else {
        Check::new("server", Status::Ok, detail)
    }
}

fn memory_check(info: &HashMap<String, String>, config: &HashMap<String, String>) -> Check {
    let maxmemory = config
        .get("maxmemory")
        .or_else(|| info.get("maxmemory"))
        .and_then(|v| v.parse::<u64>().ok());
    let policy = config
        .get("maxmemory-policy")
        .or_else(|| info.get("maxmemory_policy"))
        .cloned();
    let used = info
        .get("used_memory")
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(String::new(), |u| format!("; used {}", human_size(u)));
    let (Some(maxmemory), Some(policy)) = (maxmemory, policy) else {
        return Check::new(
            "memory",
            Status::Warn,
            format!("maxmemory and maxmemory-policy unknown (CONFIG GET and INFO refused){used}"),
        )
        .advice("check the server's eviction policy by hand: allkeys-* policies can evict live sessions");
    };
    let limit = if maxmemory == 0 {
        "0 (unbounded)".to_owned()
    } else {
        human_size(maxmemory)
    };
    let detail = format!("maxmemory {limit}, policy {policy}{used}");
    if maxmemory == 0 {
        return Check::new("memory", Status::Warn, detail).advice(format!(
            "no memory limit: Redis grows until the machine runs out; set maxmemory with \
             volatile-lru or noeviction ({POLICY_ADVICE})"
        ));
    }
    if policy.starts_with("allkeys-") {
        Check::new("memory", Status::Warn, detail).advice(format!(
            "{policy} can evict live sessions before their TTL when memory is full; consider \
             volatile-lru or noeviction ({POLICY_ADVICE})"
        ))
    } else if policy == "noeviction" {
        Check::new("memory", Status::Ok, detail).advice(
            "sessions are never evicted; writes fail when memory is full, so size maxmemory and \
             SESSION_TTL to keep clear of it",
        )
    } else {
        Check::new("memory", Status::Ok, detail).advice(format!(
            "{policy} evicts only keys with a TTL (sessions included) under memory pressure; \
             noeviction never drops a session ({POLICY_ADVICE})"
        ))
    }
}

fn persistence_check(info: &HashMap<String, String>, config: &HashMap<String, String>) -> Check {
    let aof = config
        .get("appendonly")
        .map(|v| v == "yes")
        .or_else(|| info.get("aof_enabled").map(|v| v == "1"));
    let rdb = config.get("save").map(|s| s.trim().to_owned());
    let aof_text = match aof {
        Some(true) => "AOF on",
        Some(false) => "AOF off",
        None => "AOF unknown",
    };
    let rdb_text = match &rdb {
        Some(s) if s.is_empty() => "RDB snapshots off".to_owned(),
        Some(s) => format!("RDB snapshots \"{s}\""),
        None => "RDB schedule unknown (CONFIG GET refused)".to_owned(),
    };
    let detail = format!("{aof_text}, {rdb_text}");
    match (aof, rdb.as_deref()) {
        (Some(true), _) => Check::new("persistence", Status::Ok, detail),
        (Some(false), Some("")) => Check::new("persistence", Status::Warn, detail).advice(
            "sessions do not survive a Redis restart; set appendonly yes (or RDB snapshots)",
        ),
        (Some(false), Some(_)) => Check::new("persistence", Status::Ok, detail).advice(
            "a crash loses the writes since the last snapshot; appendonly yes loses at most ~1 s",
        ),
        _ => Check::new("persistence", Status::Warn, detail)
            .advice("check appendonly and save on the server by hand"),
    }
}

async fn latency_check<S: SessionStore>(store: &S, pings: u32) -> Check {
    let mut samples = Vec::with_capacity(pings as usize);
    for _ in 0..pings {
        match store.health().await {
            Ok(health) => samples.push(health.latency),
            Err(e) => return Check::new("latency", Status::Fail, format!("PING failed: {e}")),
        }
    }
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    let (p50, p99) = (at(0.5), at(0.99));
    let detail = format!("{pings} PINGs: p50 {}, p99 {}", micros(p50), micros(p99));
    if p99 > Duration::from_millis(50) {
        Check::new("latency", Status::Warn, detail)
            .advice("slow round trips: every session read or write pays one; is Redis far away or overloaded?")
    } else {
        Check::new("latency", Status::Ok, detail)
    }
}

/// A short duration in µs (or ms / s when long).
fn micros(d: Duration) -> String {
    if d < Duration::from_millis(10) {
        format!("{} µs", d.as_micros())
    } else {
        human_duration(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn info_text_parses() {
        let info = parse_info("# Server\r\nredis_version:7.2.4\r\nredis_mode:standalone\r\n\r\n");
        assert_eq!(info.get("redis_version").map(String::as_str), Some("7.2.4"));
        assert_eq!(server_check(&info).status, Status::Ok);
    }

    #[test]
    fn allkeys_policies_get_a_warning_with_advice() {
        let c = memory_check(
            &HashMap::new(),
            &map(&[
                ("maxmemory", "268435456"),
                ("maxmemory-policy", "allkeys-lru"),
            ]),
        );
        assert_eq!(c.status, Status::Warn);
        assert!(c.advice.unwrap().contains("volatile-lru or noeviction"));
        let c = memory_check(
            &HashMap::new(),
            &map(&[("maxmemory", "0"), ("maxmemory-policy", "noeviction")]),
        );
        assert_eq!(c.status, Status::Warn);
        assert!(c.detail.contains("unbounded"));
        let c = memory_check(&HashMap::new(), &HashMap::new());
        assert_eq!(c.status, Status::Warn);
        assert!(c.detail.contains("unknown"));
    }

    #[test]
    fn persistence_without_aof_or_rdb_warns() {
        let c = persistence_check(&HashMap::new(), &map(&[("appendonly", "no"), ("save", "")]));
        assert_eq!(c.status, Status::Warn);
        let c = persistence_check(
            &HashMap::new(),
            &map(&[("appendonly", "yes"), ("save", "")]),
        );
        assert_eq!(c.status, Status::Ok);
    }
}
