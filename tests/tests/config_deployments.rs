//! `USE_REDIS=true` through session-config on a Redis Cluster and through Sentinel: the store
//! built from `REDIS_CLUSTER_NODES` or `REDIS_SENTINELS` + `REDIS_SENTINEL_MASTER`, with
//! replicated acknowledgement (`REDIS_REPLICATED_ACK=1`) and bounded reads
//! (`SESSION_BOUNDED_READS`), writes, reads, lists and deletes sessions.
//!
//! On the shared cluster and Sentinel set of `cargo xtask test` (`SESSION_TEST_CLUSTER_NODES`,
//! `SESSION_TEST_SENTINELS`, `SESSION_TEST_SENTINEL_MASTER`); skipped without them, mandatory
//! under `SESSION_REQUIRE_CLUSTER=1` / `SESSION_REQUIRE_SENTINEL=1`. Settings come from
//! explicit environment maps: the process environment is never read or changed.

use integration_tests::{Agent, unique, unique_id};
use session_config::{Deployment, Settings, Sources};

fn settings(tag: &str, vars: &[(&str, &str)]) -> Settings {
    let sources = Sources::new()
        .env("USE_REDIS", "true")
        .env("SESSION_FALLBACK", "none")
        .env("REDIS_KEY_PREFIX", format!("itest:{}:", unique(tag)))
        .env("REDIS_CONNECT_TIMEOUT_MS", "2000")
        .envs(vars.iter().copied());
    Settings::load_from(&sources).unwrap_or_else(|e| panic!("settings: {e}"))
}

/// Ten sessions written, read back and listed through a manager on the built store, then
/// deleted.
async fn sessions_round_trip(settings: &Settings) {
    let built = settings
        .build_store()
        .await
        .unwrap_or_else(|e| panic!("build_store: {e}"));
    assert_eq!(built.backend(), "redis");
    assert!(built.fallback.is_none());
    let store = built.store.clone();
    let agents = settings.manager_builder::<Agent>(built).build();
    let ids: Vec<_> = (0..10).map(|_| unique_id("deploy")).collect();
    for id in &ids {
        agents
            .get_or_create(id, Agent::new)
            .await
            .unwrap_or_else(|e| panic!("create: {e}"));
        agents
            .modify(id, |a| a.current_attempt += 1)
            .await
            .unwrap_or_else(|e| panic!("modify: {e}"));
    }
    for id in &ids {
        let agent = agents.get(id).await.unwrap().unwrap();
        assert_eq!(agent.current_attempt, 1);
    }
    assert_eq!(store.count().await.unwrap(), 10);
    assert_eq!(agents.list().await.unwrap().len(), 10);
    for id in &ids {
        agents.delete(id).await.unwrap();
    }
    assert_eq!(store.count().await.unwrap(), 0);
}

#[tokio::test]
async fn a_store_on_the_cluster_from_redis_cluster_nodes() {
    let test = "a_store_on_the_cluster_from_redis_cluster_nodes";
    let Some(nodes) = redis_harness::env::cluster_nodes(test) else {
        return;
    };
    let nodes = nodes.join(",");
    let settings = settings(
        "cluster",
        &[
            ("REDIS_CLUSTER_NODES", &nodes),
            ("REDIS_REPLICATED_ACK", "1"),
            ("REDIS_REPLICATED_ACK_TIMEOUT_MS", "500"),
            ("SESSION_BOUNDED_READS", "true"),
        ],
    );
    assert_eq!(settings.redis.deployment.kind(), "cluster");
    let options = settings.redis_options().unwrap();
    assert!(options.is_cluster());
    assert_eq!(options.replicated_ack().unwrap().replicas, 1);
    assert!(options.read_limit().is_some());
    sessions_round_trip(&settings).await;
}

#[tokio::test]
async fn a_store_through_sentinel_from_redis_sentinels() {
    let test = "a_store_through_sentinel_from_redis_sentinels";
    let Some(set) = redis_harness::env::sentinels(test) else {
        return;
    };
    let sentinels = set.sentinels.join(",");
    let settings = settings(
        "sentinel",
        &[
            ("REDIS_SENTINELS", &sentinels),
            ("REDIS_SENTINEL_MASTER", &set.master),
            ("REDIS_REPLICATED_ACK", "1"),
            ("REDIS_REPLICATED_ACK_TIMEOUT_MS", "500"),
        ],
    );
    let Deployment::Sentinel { master, .. } = &settings.redis.deployment else {
        panic!("{:?}", settings.redis.deployment)
    };
    assert_eq!(master, &set.master);
    sessions_round_trip(&settings).await;
}

#[tokio::test]
async fn a_wrong_master_name_fails_without_falling_back() {
    let test = "a_wrong_master_name_fails_without_falling_back";
    let Some(set) = redis_harness::env::sentinels(test) else {
        return;
    };
    let sentinels = set.sentinels.join(",");
    let settings = settings(
        "sentinel-wrong",
        &[
            ("REDIS_SENTINELS", &sentinels),
            ("REDIS_SENTINEL_MASTER", "no-such-master"),
            ("REDIS_CONNECT_TIMEOUT_MS", "500"),
        ],
    );
    match settings.build_store().await {
        Err(e) => assert!(!e.to_string().is_empty()),
        Ok(built) => panic!("a store on no master: {}", built.backend()),
    }
}
