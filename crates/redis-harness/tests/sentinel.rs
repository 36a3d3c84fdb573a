//! `SentinelSet` against the real server binary (`SESSION_TEST_REDIS_SERVER`, else
//! `redis-server` on `PATH`; `valkey-server` works too). Skipped (with a message) when there is
//! none, unless `SESSION_REQUIRE_SENTINEL=1` or `SESSION_REQUIRE_REDIS=1`.

use std::io;
use std::time::{Duration, Instant};

use redis_harness::{SentinelOptions, env};

fn pid_is_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, s)| !s.trim_start().starts_with('Z'))
    })
}

#[test]
fn a_sentinel_failover_moves_the_master_to_the_replica() -> io::Result<()> {
    let test = "a_sentinel_failover_moves_the_master_to_the_replica";
    let started = Instant::now();
    let options = SentinelOptions {
        password: Some("data-secret".to_owned()),
        sentinel_password: Some("sentinel-secret".to_owned()),
        ..SentinelOptions::default()
    };
    let Some(set) = env::private_sentinels(test, options) else {
        return Ok(());
    };
    eprintln!(
        "{test}: master, replica and 3 sentinels ready in {:?}",
        started.elapsed()
    );
    assert_eq!(set.master_name(), "mymaster");
    assert_eq!(set.sentinel_addrs().len(), 3);
    for addr in set.sentinel_addrs() {
        assert!(addr.ip().is_loopback());
        assert_ne!(addr.port(), 6379);
    }
    assert!(set.sentinel_urls()[0].starts_with("redis://:sentinel-secret@127.0.0.1:"));
    // The sentinels' password is theirs, not the data nodes'.
    assert!(redis_harness::command_at(set.sentinel_addrs()[0], None, &["PING"]).is_err());
    assert!(
        redis_harness::command_at(set.sentinel_addrs()[0], Some("data-secret"), &["PING"]).is_err()
    );
    assert_eq!(
        set.sentinel_command(0, &["SENTINEL", "CKQUORUM", "mymaster"])?
            .split_whitespace()
            .next(),
        Some("OK")
    );
    let old = set.master_addr()?;
    assert_eq!(old, set.data_node(0).addr());
    assert!(
        set.master_url()?
            .starts_with("redis://:data-secret@127.0.0.1:")
    );
    set.data_node(0).command(&["SET", "k", "v"])?;
    set.data_node(0)
        .wait_replicated(1, Duration::from_secs(30))?;

    let started = Instant::now();
    assert_eq!(set.failover()?, old);
    let new = set.wait_for_new_master(old)?;
    eprintln!("{test}: SENTINEL FAILOVER took {:?}", started.elapsed());
    assert_eq!(new, set.data_node(1).addr());
    assert_eq!(set.master_addr()?, new);
    assert_eq!(set.data_node(1).command(&["GET", "k"])?, "v");
    assert_eq!(set.data_node(1).command(&["SET", "k", "w"])?, "OK");
    // The sentinels turn the old master into a replica only ~10 s later; `follow` does now.
    set.follow(0)?;
    set.wait_until_ready()?;
    assert_eq!(set.data_node(0).command(&["GET", "k"])?, "w");
    Ok(())
}

#[test]
fn killing_the_master_makes_the_sentinels_promote_the_replica() -> io::Result<()> {
    let test = "killing_the_master_makes_the_sentinels_promote_the_replica";
    let Some(mut set) = env::private_sentinels(test, SentinelOptions::default()) else {
        return Ok(());
    };
    let started = Instant::now();
    let old = set.kill_master()?;
    assert!(set.is_down(0));
    assert!(!pid_is_alive(set.data_node(0).pid()));
    let new = set.wait_for_new_master(old)?;
    eprintln!(
        "{test}: failover after kill -9 took {:?}",
        started.elapsed()
    );
    assert_eq!(new, set.data_node(1).addr());

    set.restart(0)?;
    set.wait_until_ready()?;
    let info = set.data_node(0).command(&["INFO", "replication"])?;
    assert!(info.contains("role:slave"), "{info}");
    assert!(
        info.contains(&format!("master_port:{}", new.port())),
        "{info}"
    );

    let pids = set.sentinel_pids();
    let dir = set.dir().to_path_buf();
    drop(set);
    for pid in pids {
        assert!(
            !pid_is_alive(pid),
            "sentinel pid {pid} still alive after drop"
        );
    }
    assert!(!dir.exists());
    Ok(())
}

#[test]
fn the_shared_sentinels_of_cargo_xtask_test_know_their_master() -> io::Result<()> {
    let test = "the_shared_sentinels_of_cargo_xtask_test_know_their_master";
    let Some(shared) = env::sentinels(test) else {
        return Ok(());
    };
    assert_eq!(shared.sentinels.len(), 3, "{:?}", shared.sentinels);
    for url in &shared.sentinels {
        let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
        let master = redis_harness::command_on(
            port,
            None,
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", &shared.master],
        )?;
        let (ip, master_port) = master.split_once('\n').unwrap();
        assert_eq!(ip, "127.0.0.1");
        let role = redis_harness::command_on(master_port.parse().unwrap(), None, &["ROLE"])?;
        assert!(role.starts_with("master"), "{url} names a master: {role}");
    }
    Ok(())
}
