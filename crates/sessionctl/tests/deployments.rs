//! sessionctl on a Redis Cluster and through Sentinel, configured as a service is
//! (`REDIS_CLUSTER_NODES`; `REDIS_SENTINELS` + `REDIS_SENTINEL_MASTER`): list, show --raw,
//! ttl, stats, export and purge see the sessions of every primary, and doctor reports per
//! node. On the shared cluster and Sentinel set of `cargo xtask test`
//! (`SESSION_TEST_CLUSTER_NODES`, `SESSION_TEST_SENTINELS`, `SESSION_TEST_SENTINEL_MASTER`);
//! skipped when they are unset, unless `SESSION_REQUIRE_CLUSTER` / `SESSION_REQUIRE_SENTINEL`
//! make them mandatory. Each test writes under a prefix of its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    path::PathBuf,
    process::{Command, Stdio},
};

use common::{Agent, Run};
use session_config::{Settings, Sources};
use session_core::{SessionId, SessionManager};

/// A scratch directory (with an empty `config/`) for sessionctl's working directory.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sessionctl-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("config")).unwrap();
    dir
}

/// `sessionctl ARGS` with a clean environment plus `vars`.
fn run(dir: &PathBuf, vars: &[(String, String)], args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_sessionctl"))
        .env_clear()
        .env("CONFIG_DIR", dir.join("config"))
        .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(dir)
        .stdin(Stdio::null())
        .args(args)
        .output()
        .unwrap();
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(!run.stderr.contains("panicked"), "{run:#?}");
    run
}

/// Writes `n` agents through a store built from the same settings (no fallback).
fn write_agents(vars: &[(String, String)], ids: &[String]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let settings = Settings::load_from(
        &Sources::new()
            .envs(vars.iter().cloned())
            .env("SESSION_FALLBACK", "none"),
    )
    .unwrap();
    rt.block_on(async {
        let built = settings.build_store().await.unwrap();
        assert_eq!(built.backend(), "redis");
        let manager: SessionManager<Agent> = settings
            .manager_builder(built)
            .summarize(Agent::summary)
            .build();
        for (n, id) in ids.iter().enumerate() {
            let id = SessionId::new(id.as_str()).unwrap();
            manager
                .update(&id, &Agent::new("diagnosing", n as u32))
                .await
                .unwrap();
        }
    });
}

/// Every admin command on `vars`' deployment: the sessions written are all listed, counted,
/// exported, shown, and purged.
fn exercise(test: &str, vars: &[(String, String)], n: usize) -> PathBuf {
    let dir = scratch(test);
    let ids: Vec<String> = (0..n).map(|i| format!("user-{i}")).collect();
    // Nothing left from an earlier run under this prefix.
    run(&dir, vars, &["purge", "--match", "*", "--yes"]).code(0);
    write_agents(vars, &ids);

    let list = run(&dir, vars, &["--json", "list"]).code(0).json();
    assert_eq!(list["count"], n, "{list}");
    let stats = run(&dir, vars, &["--json", "stats"]).code(0).json();
    assert_eq!(stats["count"], n, "{stats}");
    let export = run(&dir, vars, &["export", "-"]).code(0);
    assert_eq!(export.stdout.lines().count(), n, "{}", export.stdout);

    let show = run(&dir, vars, &["show", "--raw", "user-1"]).code(0);
    assert!(show.stdout.contains("type      string"), "{}", show.stdout);
    assert!(show.stdout.contains("v         1"), "{}", show.stdout);
    let ttl = run(&dir, vars, &["--json", "ttl", "user-2"]).code(0).json();
    assert!(ttl["ttl_ms"].as_u64().unwrap() > 0, "{ttl}");

    let purged = run(&dir, vars, &["--json", "purge", "--match", "*", "--yes"])
        .code(0)
        .json();
    assert_eq!(purged["deleted"], n, "{purged}");
    assert_eq!(
        run(&dir, vars, &["--json", "list"]).code(0).json()["count"],
        0
    );
    dir
}

fn vars(pairs: &[(&str, String)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

#[test]
fn every_command_sees_every_primary_of_a_cluster() {
    let test = "every_command_sees_every_primary_of_a_cluster";
    let Some(nodes) = redis_harness::env::cluster_nodes(test) else {
        return;
    };
    let vars = vars(&[
        ("USE_REDIS", "true".to_owned()),
        ("REDIS_CLUSTER_NODES", nodes.join(",")),
        (
            "REDIS_KEY_PREFIX",
            format!("ctl-cluster-{}:", std::process::id()),
        ),
    ]);
    // 40 ids spread over the three primaries.
    let dir = exercise(test, &vars, 40);

    let doctor = run(&dir, &vars, &["--json", "doctor", "--pings", "3"])
        .code(0)
        .json();
    assert_eq!(doctor["ok"], true, "{doctor}");
    let checks = doctor["checks"].as_array().unwrap();
    let deployment = checks.iter().find(|c| c["check"] == "deployment").unwrap();
    assert!(
        deployment["detail"]
            .as_str()
            .unwrap()
            .contains("serving 16384 of 16384 slots"),
        "{deployment}"
    );
    let primaries: Vec<&str> = checks
        .iter()
        .filter(|c| c["check"] == "node")
        .map(|c| c["detail"].as_str().unwrap())
        .collect();
    assert!(primaries.len() >= 3, "{doctor}");
    assert!(
        primaries
            .iter()
            .all(|d| d.contains(" master, slots ") && d.contains("reachable")),
        "{primaries:?}"
    );
    // Memory and persistence are reported per node, named by address.
    let memory = checks.iter().filter(|c| c["check"] == "memory").count();
    assert_eq!(memory, primaries.len(), "{doctor}");
    let text = run(&dir, &vars, &["doctor", "--pings", "2"]).code(0);
    assert!(text.stdout.contains("cluster: "), "{}", text.stdout);
}

#[test]
fn every_command_goes_through_the_sentinels_to_the_master() {
    let test = "every_command_goes_through_the_sentinels_to_the_master";
    let Some(set) = redis_harness::env::sentinels(test) else {
        return;
    };
    let vars = vars(&[
        ("USE_REDIS", "true".to_owned()),
        ("REDIS_SENTINELS", set.sentinels.join(",")),
        ("REDIS_SENTINEL_MASTER", set.master.clone()),
        (
            "REDIS_KEY_PREFIX",
            format!("ctl-sentinel-{}:", std::process::id()),
        ),
    ]);
    let dir = exercise(test, &vars, 5);

    let doctor = run(&dir, &vars, &["--json", "doctor", "--pings", "3"])
        .code(0)
        .json();
    assert_eq!(doctor["ok"], true, "{doctor}");
    let checks = doctor["checks"].as_array().unwrap();
    let deployment = checks.iter().find(|c| c["check"] == "deployment").unwrap();
    let detail = deployment["detail"].as_str().unwrap();
    assert!(
        detail.starts_with(&format!("Sentinel: master {:?} at ", set.master)),
        "{detail}"
    );
    assert!(detail.contains("found through the sentinels"), "{detail}");
    let node = checks.iter().find(|c| c["check"] == "node").unwrap();
    assert_eq!(node["status"], "ok", "{node}");
    assert!(
        node["detail"].as_str().unwrap().contains(" master"),
        "{node}"
    );
}

#[test]
fn a_wrong_master_name_is_one_clear_failure() {
    let test = "a_wrong_master_name_is_one_clear_failure";
    let Some(set) = redis_harness::env::sentinels(test) else {
        return;
    };
    let dir = scratch(test);
    let vars = vars(&[
        ("REDIS_SENTINELS", set.sentinels.join(",")),
        ("REDIS_SENTINEL_MASTER", "no-such-master".to_owned()),
        ("REDIS_CONNECT_TIMEOUT_MS", "500".to_owned()),
    ]);
    let out = run(&dir, &vars, &["show", "--raw", "x"]).code(1);
    assert!(out.stderr.contains("no-such-master"), "{}", out.stderr);
}
