//! `cargo xtask cluster start|stop|status`: one development Redis Cluster per checkout, 3
//! primaries and 3 replicas (a `redis-harness` [`RedisCluster`]) on free loopback ports.
//!
//! It lives in `.xtask/cluster/` (gitignored): `node-N/` are the nodes' directories
//! (`nodes.conf`, log), `cluster.state` records each node's role, pid and port. It outlives
//! xtask; `stop` stops exactly those pids. No persistence: a stopped cluster's data is gone,
//! and `start` forms a new one.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use redis_harness::{ClusterOptions, RedisCluster, command_on};

use crate::detached::{self, Member, Record};
use crate::provide::{self, Kind};
use crate::{Result, process};

fn state_dir() -> PathBuf {
    process::workspace_root().join(".xtask").join("cluster")
}

fn state_file() -> PathBuf {
    state_dir().join("cluster.state")
}

/// `cargo xtask cluster start [--server redis|valkey]`.
pub(crate) fn start(kind: Kind) -> Result<ExitCode> {
    if let Some(record) = Record::read(&state_file())? {
        if record.members.iter().all(Member::answers) {
            println!(
                "xtask: the {} Cluster is already running (stop it with `cargo xtask cluster \
                 stop`)",
                record.server.product()
            );
            print_urls(&record);
            return Ok(ExitCode::SUCCESS);
        }
        let alive = record.alive();
        if !alive.is_empty() {
            let pids: Vec<String> = alive.iter().map(|m| m.pid.to_string()).collect();
            return Err(format!(
                "part of the last cluster still runs (pids {}): `cargo xtask cluster stop` first",
                pids.join(", ")
            )
            .into());
        }
    }
    let binary = kind.binary()?;
    let started = Instant::now();
    let cluster = RedisCluster::start(ClusterOptions {
        binary: Some(binary.path.clone()),
        dir: Some(state_dir()),
        ..ClusterOptions::default()
    })
    .map_err(|err| format!("cannot start the cluster: {err}"))?;
    let elapsed = started.elapsed();
    let version = provide::running_version(cluster.server(0))
        .unwrap_or_else(|| "(unknown version)".to_owned());
    let primaries = cluster.primaries()?;
    let record = Record {
        server: kind,
        master_name: None,
        members: (0..cluster.node_count())
            .map(|node| Member {
                role: if primaries.contains(&node) {
                    "primary"
                } else {
                    "replica"
                }
                .to_owned(),
                pid: cluster.pid(node),
                port: cluster.port(node),
            })
            .collect(),
    };
    // Record the pids before the nodes outlive xtask; without a record, `cluster` goes down
    // with this function.
    record.write(&state_file(), "cargo xtask cluster start")?;
    cluster.detach();
    println!(
        "xtask: {} Cluster running: 3 primaries + 3 replicas of {} {version} ({}), formed in \
         {:.1}s",
        kind.product(),
        kind.program(),
        binary.path.display(),
        elapsed.as_secs_f64()
    );
    print_urls(&record);
    println!(
        "  nodes' directories and logs: {}/node-N/",
        state_dir().display()
    );
    println!("  stop it with `cargo xtask cluster stop`");
    Ok(ExitCode::SUCCESS)
}

fn primary_urls(record: &Record) -> Vec<String> {
    record
        .members
        .iter()
        .filter(|m| m.role == "primary")
        .map(Member::url)
        .collect()
}

fn print_urls(record: &Record) {
    for member in &record.members {
        println!("  {:<8} {} (pid {})", member.role, member.url(), member.pid);
    }
    println!(
        "  export {}={}",
        redis_harness::env::CLUSTER_NODES,
        primary_urls(record).join(",")
    );
}

/// `cargo xtask cluster status`: exit code 0 when every node runs and says `cluster_state:ok`.
pub(crate) fn status() -> Result<ExitCode> {
    let Some(record) = Record::read(&state_file())? else {
        println!("not running (start it with `cargo xtask cluster start`)");
        return Ok(ExitCode::FAILURE);
    };
    let mut healthy = true;
    for member in &record.members {
        let state = if member.answers() {
            let info = command_on(member.port, None, &["CLUSTER", "INFO"]).unwrap_or_default();
            let role = command_on(member.port, None, &["INFO", "replication"]).unwrap_or_default();
            let field = |text: &str, name: &str| {
                text.lines()
                    .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':'))
                    .unwrap_or("?")
                    .to_owned()
            };
            let state = field(&info, "cluster_state");
            healthy &= state == "ok";
            format!(
                "role {}, cluster_state:{state}",
                match field(&role, "role").as_str() {
                    "master" => "primary".to_owned(),
                    "slave" => "replica".to_owned(),
                    other => other.to_owned(),
                }
            )
        } else if process::pid_alive(member.pid) {
            healthy = false;
            "NOT answering (the pid is alive)".to_owned()
        } else {
            healthy = false;
            "NOT running (the pid is gone)".to_owned()
        };
        println!("{} (pid {}): {state}", member.url(), member.pid);
    }
    println!(
        "{}: {}",
        record.server.product(),
        if healthy {
            "the cluster is healthy"
        } else {
            "the cluster is NOT healthy (`cargo xtask cluster stop` then `start` makes a new one)"
        }
    );
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `cargo xtask cluster stop`: stops every recorded node (only those pids).
pub(crate) fn stop() -> Result<ExitCode> {
    let Some(record) = Record::read(&state_file())? else {
        println!("not running (no {})", state_file().display());
        return Ok(ExitCode::SUCCESS);
    };
    let members: Vec<&Member> = record.members.iter().collect();
    for line in detached::stop(&members)? {
        println!("{line}");
    }
    std::fs::remove_file(state_file())?;
    println!(
        "the cluster is stopped (logs kept in {}/node-N/)",
        state_dir().display()
    );
    Ok(ExitCode::SUCCESS)
}
