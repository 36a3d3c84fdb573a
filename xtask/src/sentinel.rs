//! `cargo xtask sentinel start|stop|status`: one development Sentinel set per checkout: a
//! master, a replica and 3 sentinels (a `redis-harness` [`SentinelSet`]) on free loopback
//! ports.
//!
//! It lives in `.xtask/sentinel/` (gitignored): `data-0/`, `data-1/`, `sentinel-N/` are the
//! processes' directories (logs, the sentinels' rewritten `sentinel.conf`), `sentinel.state`
//! records each one's role, pid and port and the master name. It outlives xtask; `stop` stops
//! exactly those pids, the sentinels first. No persistence: `start` makes a new set.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use redis_harness::{SentinelOptions, SentinelSet, command_on, env};

use crate::detached::{self, Member, Record};
use crate::provide::{self, Kind};
use crate::{Result, process};

fn state_dir() -> PathBuf {
    process::workspace_root().join(".xtask").join("sentinel")
}

fn state_file() -> PathBuf {
    state_dir().join("sentinel.state")
}

/// `cargo xtask sentinel start [--server redis|valkey]`.
pub(crate) fn start(kind: Kind) -> Result<ExitCode> {
    if let Some(record) = Record::read(&state_file())? {
        if record.members.iter().all(Member::answers) {
            println!(
                "xtask: the {} Sentinel set is already running (stop it with `cargo xtask \
                 sentinel stop`)",
                record.server.product()
            );
            print_urls(&record);
            return Ok(ExitCode::SUCCESS);
        }
        let alive = record.alive();
        if !alive.is_empty() {
            let pids: Vec<String> = alive.iter().map(|m| m.pid.to_string()).collect();
            return Err(format!(
                "part of the last Sentinel set still runs (pids {}): `cargo xtask sentinel \
                 stop` first",
                pids.join(", ")
            )
            .into());
        }
    }
    let binary = kind.binary()?;
    let started = Instant::now();
    let set = SentinelSet::start(SentinelOptions {
        binary: Some(binary.path.clone()),
        dir: Some(state_dir()),
        ..SentinelOptions::default()
    })
    .map_err(|err| format!("cannot start the Sentinel set: {err}"))?;
    let elapsed = started.elapsed();
    let version = provide::running_version(set.data_node(0))
        .unwrap_or_else(|| "(unknown version)".to_owned());
    let record = record_of(kind, &set);
    // Record the pids before the processes outlive xtask; without a record, `set` goes down
    // with this function.
    record.write(&state_file(), "cargo xtask sentinel start")?;
    set.detach();
    println!(
        "xtask: {} Sentinel set running: a master, a replica and 3 sentinels of {} {version} \
         ({}), ready in {:.1}s",
        kind.product(),
        kind.program(),
        binary.path.display(),
        elapsed.as_secs_f64()
    );
    print_urls(&record);
    println!(
        "  directories and logs: {}/{{data,sentinel}}-N/",
        state_dir().display()
    );
    println!("  stop it with `cargo xtask sentinel stop`");
    Ok(ExitCode::SUCCESS)
}

fn record_of(kind: Kind, set: &SentinelSet) -> Record {
    let mut members: Vec<Member> = (0..set.data_node_count())
        .map(|node| Member {
            role: if node == 0 { "master" } else { "replica" }.to_owned(),
            pid: set.data_node(node).pid(),
            port: set.data_node(node).port(),
        })
        .collect();
    for (addr, pid) in set.sentinel_addrs().into_iter().zip(set.sentinel_pids()) {
        members.push(Member {
            role: "sentinel".to_owned(),
            pid,
            port: addr.port(),
        });
    }
    Record {
        server: kind,
        master_name: Some(set.master_name().to_owned()),
        members,
    }
}

fn sentinels(record: &Record) -> Vec<&Member> {
    record
        .members
        .iter()
        .filter(|m| m.role == "sentinel")
        .collect()
}

fn master_name(record: &Record) -> &str {
    record.master_name.as_deref().unwrap_or("mymaster")
}

fn print_urls(record: &Record) {
    for member in &record.members {
        println!("  {:<8} {} (pid {})", member.role, member.url(), member.pid);
    }
    println!("  master name: {}", master_name(record));
    let urls: Vec<String> = sentinels(record).into_iter().map(Member::url).collect();
    println!(
        "  export {}={} {}={}",
        env::SENTINELS,
        urls.join(","),
        env::SENTINEL_MASTER,
        master_name(record)
    );
}

/// `cargo xtask sentinel status`: exit code 0 when every process runs, the sentinels agree on
/// the master and `SENTINEL CKQUORUM` is OK.
pub(crate) fn status() -> Result<ExitCode> {
    let Some(record) = Record::read(&state_file())? else {
        println!("not running (start it with `cargo xtask sentinel start`)");
        return Ok(ExitCode::FAILURE);
    };
    let name = master_name(&record);
    let mut healthy = true;
    let mut masters = Vec::new();
    for member in &record.members {
        let state = if !member.answers() {
            healthy = false;
            match process::pid_alive(member.pid) {
                true => "NOT answering (the pid is alive)".to_owned(),
                false => "NOT running (the pid is gone)".to_owned(),
            }
        } else if member.role == "sentinel" {
            let master = command_on(
                member.port,
                None,
                &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", name],
            )
            .map(|reply| reply.replace('\n', ":"))
            .unwrap_or_else(|err| format!("? ({err})"));
            let quorum = command_on(member.port, None, &["SENTINEL", "CKQUORUM", name])
                .unwrap_or_else(|err| err.to_string());
            healthy &= quorum.starts_with("OK");
            masters.push(master.clone());
            format!("sentinel: master {name} at {master}; {quorum}")
        } else {
            let info = command_on(member.port, None, &["INFO", "replication"]).unwrap_or_default();
            let role = match info.lines().find_map(|l| l.trim().strip_prefix("role:")) {
                Some("slave") => "replica",
                Some(role) => role,
                None => "?",
            };
            format!("role {role}")
        };
        println!("{} (pid {}): {state}", member.url(), member.pid);
    }
    masters.dedup();
    if masters.len() > 1 {
        healthy = false;
        println!(
            "the sentinels disagree about the master: {}",
            masters.join(", ")
        );
    }
    println!(
        "{}: {}",
        record.server.product(),
        if healthy {
            "the Sentinel set is healthy"
        } else {
            "the Sentinel set is NOT healthy (`cargo xtask sentinel stop` then `start` makes a \
             new one)"
        }
    );
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `cargo xtask sentinel stop`: stops the recorded sentinels, then the data nodes (only those
/// pids): no failover while the set goes.
pub(crate) fn stop() -> Result<ExitCode> {
    let Some(record) = Record::read(&state_file())? else {
        println!("not running (no {})", state_file().display());
        return Ok(ExitCode::SUCCESS);
    };
    let mut members = sentinels(&record);
    members.extend(record.members.iter().filter(|m| m.role != "sentinel"));
    for line in detached::stop(&members)? {
        println!("{line}");
    }
    std::fs::remove_file(state_file())?;
    println!(
        "the Sentinel set is stopped (logs kept in {}/)",
        state_dir().display()
    );
    Ok(ExitCode::SUCCESS)
}
