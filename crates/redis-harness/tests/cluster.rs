//! `RedisCluster` against the real server binary (`SESSION_TEST_REDIS_SERVER`, else
//! `redis-server` on `PATH`; `valkey-server` works too). Skipped (with a message) when there is
//! none, unless `SESSION_REQUIRE_CLUSTER=1` or `SESSION_REQUIRE_REDIS=1`.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use redis_harness::{ClusterOptions, SLOTS, env, key_slot};

fn pid_is_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, s)| !s.trim_start().starts_with('Z'))
    })
}

#[test]
fn a_cluster_forms_and_keys_land_on_the_node_serving_their_slot() -> io::Result<()> {
    let test = "a_cluster_forms_and_keys_land_on_the_node_serving_their_slot";
    let started = Instant::now();
    let Some(cluster) = env::private_cluster(test, ClusterOptions::default()) else {
        return Ok(());
    };
    eprintln!(
        "{test}: 3 primaries + 3 replicas formed in {:?}",
        started.elapsed()
    );
    assert_eq!(cluster.node_count(), 6);
    for node in 0..cluster.node_count() {
        assert_ne!(cluster.port(node), 6379);
        assert!(cluster.addr(node).ip().is_loopback());
        let info = cluster.command(node, &["CLUSTER", "INFO"])?;
        assert!(info.contains("cluster_state:ok"), "node {node}: {info}");
        assert!(
            info.contains("cluster_known_nodes:6"),
            "node {node}: {info}"
        );
        assert!(
            info.contains("cluster_slots_assigned:16384"),
            "node {node}: {info}"
        );
    }
    assert_eq!(cluster.primaries()?, [0, 1, 2]);
    assert_eq!(cluster.replicas()?, [3, 4, 5]);
    for primary in 0..3 {
        assert_eq!(cluster.replicas_of(primary)?, [primary + 3]);
    }
    assert_eq!(cluster.primary_urls()?.len(), 3);
    let topology = cluster.topology()?;
    let served: usize = topology.iter().map(|node| node.slot_count()).sum();
    assert_eq!(served, usize::from(SLOTS));

    for n in 0..30 {
        let key = format!("key:{n}");
        let slot = key_slot(key.as_bytes());
        assert_eq!(
            cluster.command(0, &["CLUSTER", "KEYSLOT", &key])?,
            slot.to_string(),
            "our slot of {key} is the server's"
        );
        let owner = cluster.node_for_key(&key)?;
        assert_eq!(cluster.command(owner, &["SET", &key, "v"])?, "OK");
        assert_eq!(cluster.command_for_key(&key, &["GET", &key])?, "v");
        let other = (owner + 1) % 3;
        let refused = cluster
            .command(other, &["GET", &key])
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains(&format!("MOVED {slot} {}", cluster.addr(owner))),
            "{key} on node {other}: {refused}"
        );
    }
    // Hash tags keep keys together.
    assert_eq!(
        cluster.node_for_key("{s:42}")?,
        cluster.node_for_key("{s:42}~w1234")?
    );
    Ok(())
}

#[test]
fn killing_a_primary_promotes_its_replica_and_it_rejoins_as_a_replica() -> io::Result<()> {
    let test = "killing_a_primary_promotes_its_replica_and_it_rejoins_as_a_replica";
    let Some(mut cluster) = env::private_cluster(test, ClusterOptions::default()) else {
        return Ok(());
    };
    let key = "session:1";
    let slot = key_slot(key.as_bytes());
    cluster.command_for_key(key, &["SET", key, "before"])?;
    let old = cluster.primary_of_slot(slot)?;
    let replica = cluster.replicas_of(old)?[0];
    // The write reached the replica before the kill.
    cluster
        .node(old)
        .wait_replicated(1, Duration::from_secs(30))?;

    let started = Instant::now();
    let killed = cluster.kill_primary_of(slot)?;
    assert_eq!(killed, old);
    assert!(cluster.is_down(killed));
    assert!(!pid_is_alive(cluster.pid(killed)));
    let promoted = cluster.wait_for_failover(slot)?;
    eprintln!(
        "{test}: failover after kill -9 took {:?}",
        started.elapsed()
    );
    assert_eq!(promoted, replica);
    assert_eq!(cluster.primary_of_slot(slot)?, replica);
    assert_eq!(cluster.command_for_key(key, &["GET", key])?, "before");
    assert!(!cluster.primaries()?.contains(&killed));

    let started = Instant::now();
    cluster.restart(killed)?;
    eprintln!(
        "{test}: the restarted node rejoined in {:?}",
        started.elapsed()
    );
    assert!(!cluster.is_down(killed));
    assert_eq!(cluster.replicas_of(replica)?, [killed]);
    assert_eq!(cluster.primary_of_slot(slot)?, replica);
    Ok(())
}

#[test]
fn migrating_slots_moves_their_keys_to_the_other_primary() -> io::Result<()> {
    let test = "migrating_slots_moves_their_keys_to_the_other_primary";
    let Some(cluster) = env::private_cluster(test, ClusterOptions::default()) else {
        return Ok(());
    };
    // Keys in the first slots node 0 serves.
    let keys: Vec<String> = (0..5000)
        .map(|n| format!("k{n}"))
        .filter(|key| key_slot(key.as_bytes()) < 40)
        .collect();
    assert!(!keys.is_empty());
    for key in &keys {
        cluster.command(0, &["SET", key, key])?;
    }
    let started = Instant::now();
    let moved = cluster.migrate_slots(0, 1, 40)?;
    eprintln!(
        "{test}: 40 slots, {} keys moved in {:?}",
        keys.len(),
        started.elapsed()
    );
    assert_eq!(moved, (0..40).collect::<Vec<u16>>());
    for key in &keys {
        assert_eq!(cluster.node_for_key(key)?, 1);
        assert_eq!(cluster.command(1, &["GET", key])?, *key);
    }
    assert_eq!(cluster.command(0, &["DBSIZE"])?, "0");
    // And one back, alone.
    cluster.migrate_slot(7, 0)?;
    assert_eq!(cluster.primary_of_slot(7)?, 0);
    cluster.wait_until_ok()?;
    Ok(())
}

#[test]
fn drop_kills_only_the_clusters_own_processes_and_removes_its_dir() -> io::Result<()> {
    let test = "drop_kills_only_the_clusters_own_processes_and_removes_its_dir";
    let Some(binary) = env::server_binary(test) else {
        return Ok(());
    };
    let Some(bystander) = env::private_server(test, Default::default()) else {
        return Ok(());
    };
    let options = ClusterOptions {
        binary: Some(binary),
        primaries: 1,
        replicas_per_primary: 0,
        password: Some("pw with space".to_owned()),
        ..ClusterOptions::default()
    };
    let cluster = redis_harness::RedisCluster::start(options)?;
    assert_eq!(
        cluster.urls()[0],
        format!("redis://:pw%20with%20space@{}", cluster.addr(0))
    );
    assert_eq!(cluster.command(0, &["SET", "a", "1"])?, "OK");
    let (pid, dir) = (cluster.pid(0), cluster.dir().to_path_buf());
    assert!(Path::new(&dir).join("node-0").join("nodes.conf").is_file());
    drop(cluster);
    assert!(!pid_is_alive(pid), "pid {pid} still alive after drop");
    assert!(!dir.exists(), "{} still exists after drop", dir.display());
    assert_eq!(bystander.command(&["PING"])?, "PONG");
    Ok(())
}

#[test]
fn the_shared_cluster_of_cargo_xtask_test_is_healthy() -> io::Result<()> {
    let test = "the_shared_cluster_of_cargo_xtask_test_is_healthy";
    let Some(primaries) = env::cluster_nodes(test) else {
        return Ok(());
    };
    assert_eq!(primaries.len(), 3, "{primaries:?}");
    for url in &primaries {
        let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
        let info = redis_harness::command_on(port, None, &["CLUSTER", "INFO"])?;
        assert!(info.contains("cluster_state:ok"), "{url}: {info}");
        let role = redis_harness::command_on(port, None, &["ROLE"])?;
        assert!(role.starts_with("master"), "{url} is a primary: {role}");
    }
    Ok(())
}
