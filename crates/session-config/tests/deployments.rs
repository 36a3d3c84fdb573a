//! Deployments: one server, a Redis Cluster (`REDIS_CLUSTER_NODES`) and Sentinel
//! (`REDIS_SENTINELS`, `REDIS_SENTINEL_MASTER` and the sentinels' own credentials), replicated
//! acknowledgement and bounded reads: parsing, layers, contradictions, redaction, and the
//! options they give.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{TempDir, config_error};
use session_config::{Deployment, Settings, Sources};

fn load(sources: &Sources) -> Settings {
    Settings::load_from(sources).unwrap_or_else(|e| panic!("{e}"))
}

fn nodes(settings: &Settings) -> Vec<String> {
    match &settings.redis.deployment {
        Deployment::Cluster { nodes } => nodes.iter().map(|n| n.redacted_url()).collect(),
        other => panic!("expected a cluster, got {other:?}"),
    }
}

fn with_default_toml(text: &str) -> (TempDir, Sources) {
    let dir = TempDir::new();
    dir.write("default.toml", text);
    let sources = Sources::new().config_dir(dir.path());
    (dir, sources)
}

#[test]
fn the_default_is_one_server_without_acknowledgement_or_bounded_reads() {
    let s = load(&Sources::new());
    assert_eq!(s.redis.deployment, Deployment::Single);
    assert_eq!(s.redis.replicated_ack, None);
    assert!(!s.session.bounded_reads);
    let shown = s.to_string();
    assert!(shown.contains("redis.deployment = single"), "{shown}");
    assert!(shown.contains("redis.replicated_ack = off"), "{shown}");
    assert!(shown.contains("session.bounded_reads = false"), "{shown}");
}

#[test]
fn cluster_nodes_make_a_cluster_and_take_the_acl_user_and_password() {
    let s = load(
        &Sources::new()
            .env(
                "REDIS_CLUSTER_NODES",
                "redis://10.0.0.1:7000, redis://10.0.0.2:7001",
            )
            .env("REDIS_USERNAME", "app")
            .env("REDIS_PASSWORD", "cluster-secret"),
    );
    assert_eq!(
        nodes(&s),
        [
            "redis://app:***@10.0.0.1:7000/0",
            "redis://app:***@10.0.0.2:7001/0"
        ]
    );
    let Deployment::Cluster { nodes } = &s.redis.deployment else {
        unreachable!()
    };
    assert_eq!(nodes[1].password().unwrap().expose(), "cluster-secret");
    assert_eq!(s.redis.deployment.kind(), "cluster");
    for text in [s.to_string(), format!("{s:?}")] {
        assert!(!text.contains("cluster-secret"), "{text}");
    }
    assert!(s.warnings().is_empty(), "{:?}", s.warnings());
}

#[test]
fn redis_tls_turns_tls_on_for_every_cluster_node() {
    let s = load(
        &Sources::new()
            .env("REDIS_CLUSTER_NODES", "redis://a:7000,redis://b:7000")
            .env("REDIS_TLS", "true"),
    );
    assert_eq!(nodes(&s), ["rediss://a:7000/0", "rediss://b:7000/0"]);
}

#[test]
fn a_password_set_after_the_nodes_overrides_theirs_and_one_in_the_same_layer_must_agree() {
    // Later layer (environment over a file): overrides.
    let (_dir, sources) =
        with_default_toml("[redis]\ncluster_nodes = \"redis://:old@a:7000,redis://:old@b:7000\"\n");
    let s = load(&sources.env("REDIS_PASSWORD", "new"));
    let Deployment::Cluster { nodes } = &s.redis.deployment else {
        panic!()
    };
    assert!(
        nodes
            .iter()
            .all(|n| n.password().unwrap().expose() == "new")
    );
    // Earlier layer (a file under the environment's nodes): the nodes' own password wins.
    let (_dir, sources) = with_default_toml("[redis]\npassword = \"file\"\n");
    let s = load(&sources.env("REDIS_CLUSTER_NODES", "redis://:own@a:7000"));
    let Deployment::Cluster { nodes } = &s.redis.deployment else {
        panic!()
    };
    assert_eq!(nodes[0].password().unwrap().expose(), "own");
    // Same layer, different: an error naming both, the passwords masked.
    let (key, value, expected) = config_error(Settings::load_from(
        &Sources::new()
            .env("REDIS_CLUSTER_NODES", "redis://:one@a:7000")
            .env("REDIS_PASSWORD", "two"),
    ));
    assert_eq!((key.as_str(), value.as_str()), ("REDIS_PASSWORD", "***"));
    assert!(expected.contains("REDIS_CLUSTER_NODES"), "{expected}");
    assert!(!expected.contains(":one@"), "{expected}");
}

#[test]
fn a_toml_file_may_list_the_nodes_as_an_array() {
    let (_dir, sources) =
        with_default_toml("[redis]\ncluster_nodes = [\"redis://a:7000\", \"redis://b:7001\"]\n");
    assert_eq!(
        nodes(&load(&sources)),
        ["redis://a:7000/0", "redis://b:7001/0"]
    );
}

#[test]
fn a_cluster_refuses_another_database_naming_both_settings() {
    let (key, value, expected) = config_error(Settings::load_from(
        &Sources::new()
            .env("REDIS_CLUSTER_NODES", "redis://a:7000")
            .env("REDIS_DB", "3"),
    ));
    assert_eq!((key.as_str(), value.as_str()), ("REDIS_DB", "3"));
    assert!(expected.contains("REDIS_CLUSTER_NODES"), "{expected}");
    let (key, _, expected) = config_error(Settings::load_from(
        &Sources::new().env("REDIS_CLUSTER_NODES", "redis://a:7000/2"),
    ));
    assert_eq!(key, "REDIS_CLUSTER_NODES");
    assert!(expected.contains("database 0"), "{expected}");
}

#[test]
fn cluster_and_sentinel_together_are_an_error_unless_redis_deployment_chooses() {
    let both = Sources::new()
        .env("REDIS_CLUSTER_NODES", "redis://a:7000")
        .env("REDIS_SENTINELS", "redis://s:26379")
        .env("REDIS_SENTINEL_MASTER", "mymaster");
    let (key, _, expected) = config_error(Settings::load_from(&both));
    assert_eq!(key, "REDIS_SENTINELS");
    assert!(expected.contains("REDIS_CLUSTER_NODES"), "{expected}");
    assert!(expected.contains("REDIS_DEPLOYMENT"), "{expected}");
    let s = load(&both.clone().env("REDIS_DEPLOYMENT", "sentinel"));
    assert_eq!(s.redis.deployment.kind(), "sentinel");
    let s = load(&both.clone().env("REDIS_DEPLOYMENT", "cluster"));
    assert_eq!(s.redis.deployment.kind(), "cluster");
    let s = load(&both.env("REDIS_DEPLOYMENT", "single"));
    assert_eq!(s.redis.deployment, Deployment::Single);
}

#[test]
fn a_deployment_named_without_its_list_is_an_error() {
    let (key, value, expected) = config_error(Settings::load_from(
        &Sources::new().env("REDIS_DEPLOYMENT", "cluster"),
    ));
    assert_eq!(
        (key.as_str(), value.as_str()),
        ("REDIS_DEPLOYMENT", "\"cluster\"")
    );
    assert!(expected.contains("REDIS_CLUSTER_NODES"), "{expected}");
    let (key, _, expected) = config_error(Settings::load_from(
        &Sources::new().env("REDIS_DEPLOYMENT", "sentinel"),
    ));
    assert_eq!(key, "REDIS_DEPLOYMENT");
    assert!(expected.contains("REDIS_SENTINELS"), "{expected}");
    let (key, _, _) = config_error(Settings::load_from(
        &Sources::new().env("REDIS_DEPLOYMENT", "sharded"),
    ));
    assert_eq!(key, "REDIS_DEPLOYMENT");
}

#[test]
fn redis_mode_cluster_or_sentinel_chooses_the_deployment_and_pool_still_conflicts() {
    // `redis.mode = "cluster"` as the issue spells it: the deployment, multiplexed.
    let s = load(
        &Sources::new()
            .env("REDIS_MODE", "cluster")
            .env("REDIS_CLUSTER_NODES", "redis://10.0.0.1:7000"),
    );
    assert_eq!(s.redis.deployment.kind(), "cluster");
    let s = load(
        &Sources::new()
            .env("REDIS_MODE", "sentinel")
            .env("REDIS_SENTINELS", "redis://s:26379")
            .env("REDIS_SENTINEL_MASTER", "m"),
    );
    assert_eq!(s.redis.deployment.kind(), "sentinel");
    // Without its list it is the same error as REDIS_DEPLOYMENT's.
    let (_, _, expected) = config_error(Settings::load_from(
        &Sources::new().env("REDIS_MODE", "cluster"),
    ));
    assert!(expected.contains("REDIS_CLUSTER_NODES"), "{expected}");
    // Disagreeing with REDIS_DEPLOYMENT names both.
    let (key, _, expected) = config_error(Settings::load_from(
        &Sources::new()
            .env("REDIS_MODE", "cluster")
            .env("REDIS_DEPLOYMENT", "sentinel")
            .env("REDIS_SENTINELS", "redis://s:26379")
            .env("REDIS_SENTINEL_MASTER", "m"),
    ));
    assert_eq!(key, "REDIS_MODE");
    assert!(expected.contains("REDIS_DEPLOYMENT"), "{expected}");
    let (key, _, expected) = config_error(Settings::load_from(
        &Sources::new()
            .env("REDIS_MODE", "pool")
            .env("REDIS_SENTINELS", "redis://s:26379")
            .env("REDIS_SENTINEL_MASTER", "m"),
    ));
    assert_eq!(key, "REDIS_MODE");
    assert!(expected.contains("REDIS_SENTINELS"), "{expected}");
    let (key, _, expected) = config_error(Settings::load_from(
        &Sources::new()
            .env("REDIS_MODE", "pool")
            .env("REDIS_CLUSTER_NODES", "redis://a:7000"),
    ));
    assert_eq!(key, "REDIS_MODE");
    assert!(expected.contains("REDIS_CLUSTER_NODES"), "{expected}");
}

#[test]
fn sentinels_need_a_master_and_a_master_needs_sentinels() {
    let (key, value, expected) = config_error(Settings::load_from(
        &Sources::new().env("REDIS_SENTINELS", "redis://s:26379"),
    ));
    assert_eq!(
        (key.as_str(), value.as_str()),
        ("REDIS_SENTINEL_MASTER", "(not set)")
    );
    assert!(expected.contains("REDIS_SENTINELS"), "{expected}");
    let (key, _, expected) = config_error(Settings::load_from(
        &Sources::new().env("REDIS_SENTINEL_MASTER", "mymaster"),
    ));
    assert_eq!(key, "REDIS_SENTINEL_MASTER");
    assert!(expected.contains("REDIS_SENTINELS"), "{expected}");
    let (key, _, _) = config_error(Settings::load_from(
        &Sources::new()
            .env("REDIS_SENTINELS", "redis://s:26379")
            .env("REDIS_SENTINEL_MASTER", "my master"),
    ));
    assert_eq!(key, "REDIS_SENTINEL_MASTER");
}

#[test]
fn sentinel_credentials_are_separate_from_the_data_nodes_ones() {
    let s = load(
        &Sources::new()
            .env("REDIS_SENTINELS", "redis://s1:26379,redis://s2:26379")
            .env("REDIS_SENTINEL_MASTER", "mymaster")
            .env("REDIS_SENTINEL_USERNAME", "watcher")
            .env("REDIS_SENTINEL_PASSWORD", "sentinel-secret")
            .env("REDIS_USERNAME", "app")
            .env("REDIS_PASSWORD", "data-secret")
            .env("REDIS_DB", "2"),
    );
    let Deployment::Sentinel { sentinels, master } = &s.redis.deployment else {
        panic!("{:?}", s.redis.deployment)
    };
    assert_eq!(master, "mymaster");
    for sentinel in sentinels {
        assert_eq!(sentinel.username(), Some("watcher"));
        assert_eq!(sentinel.password().unwrap().expose(), "sentinel-secret");
        assert_eq!(sentinel.db(), 0);
    }
    // The data nodes' credentials and database: the target's.
    assert_eq!(s.redis.target.username(), Some("app"));
    assert_eq!(s.redis.target.password().unwrap().expose(), "data-secret");
    assert_eq!(s.redis.target.db(), 2);
    for text in [s.to_string(), format!("{s:?}")] {
        assert!(!text.contains("sentinel-secret"), "{text}");
        assert!(!text.contains("data-secret"), "{text}");
    }
    assert!(s.to_string().contains(
        "redis.deployment = sentinel (master \"mymaster\" through redis://watcher:***@s1:26379/0"
    ));
}

#[test]
fn a_sentinel_url_keeps_its_own_password_unless_a_later_layer_says_otherwise() {
    let (_dir, sources) = with_default_toml(
        "[redis]\nsentinels = \"redis://:in-url@s:26379\"\nsentinel_master = \"m\"\n",
    );
    let sentinel = |s: &Settings| match &s.redis.deployment {
        Deployment::Sentinel { sentinels, .. } => {
            sentinels[0].password().map(|p| p.expose().to_owned())
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(sentinel(&load(&sources)).as_deref(), Some("in-url"));
    let later = sources.clone().env("REDIS_SENTINEL_PASSWORD", "later");
    assert_eq!(sentinel(&load(&later)).as_deref(), Some("later"));
    let (key, value, _) = config_error(Settings::load_from(
        &Sources::new()
            .env("REDIS_SENTINELS", "redis://:one@s:26379")
            .env("REDIS_SENTINEL_MASTER", "m")
            .env("REDIS_SENTINEL_PASSWORD", "two"),
    ));
    assert_eq!(
        (key.as_str(), value.as_str()),
        ("REDIS_SENTINEL_PASSWORD", "***")
    );
}

#[test]
fn a_host_next_to_a_cluster_is_not_used_and_says_so() {
    let (_dir, sources) = with_default_toml("[redis]\nurl = \"redis://:pw@cache:6379\"\n");
    let s = load(&sources.env("REDIS_CLUSTER_NODES", "redis://a:7000"));
    assert_eq!(s.warnings().len(), 1, "{:?}", s.warnings());
    let warning = &s.warnings()[0];
    assert!(warning.message().contains("not used"), "{warning}");
    assert!(!warning.message().contains("pw"), "{warning}");
    // The URL's password still applies to the nodes.
    let Deployment::Cluster { nodes } = &s.redis.deployment else {
        panic!()
    };
    assert_eq!(nodes[0].password().unwrap().expose(), "pw");
}

#[test]
fn a_malformed_node_url_is_reported_masked() {
    let (key, value, _) = config_error(Settings::load_from(
        &Sources::new().env("REDIS_CLUSTER_NODES", "redis://a:7000,http://u:hunter2@b"),
    ));
    assert_eq!(key, "REDIS_CLUSTER_NODES");
    assert!(!value.contains("hunter2"), "{value}");
}

#[test]
fn replicated_ack_is_off_by_default_and_waits_100_ms_when_on() {
    let s = load(&Sources::new().env("REDIS_REPLICATED_ACK", "1"));
    let ack = s.redis.replicated_ack.unwrap();
    assert_eq!((ack.replicas, ack.timeout), (1, Duration::from_millis(100)));
    assert!(
        s.to_string()
            .contains("redis.replicated_ack = 1 replica(s) within 100ms")
    );
    let s = load(
        &Sources::new()
            .env("REDIS_REPLICATED_ACK", "2")
            .env("REDIS_REPLICATED_ACK_TIMEOUT_MS", "250"),
    );
    let ack = s.redis.replicated_ack.unwrap();
    assert_eq!((ack.replicas, ack.timeout), (2, Duration::from_millis(250)));
    for off in ["off", "0", "no"] {
        let s = load(&Sources::new().env("REDIS_REPLICATED_ACK", off));
        assert_eq!(s.redis.replicated_ack, None);
    }
    let (key, _, _) = config_error(Settings::load_from(
        &Sources::new().env("REDIS_REPLICATED_ACK", "many"),
    ));
    assert_eq!(key, "REDIS_REPLICATED_ACK");
}

#[test]
fn the_acknowledgement_must_wait_less_than_the_command_timeout() {
    let (key, value, expected) = config_error(Settings::load_from(
        &Sources::new()
            .env("REDIS_REPLICATED_ACK", "1")
            .env("REDIS_REPLICATED_ACK_TIMEOUT_MS", "1000"),
    ));
    assert_eq!(
        (key.as_str(), value.as_str()),
        ("REDIS_REPLICATED_ACK_TIMEOUT_MS", "\"1000\"")
    );
    assert!(expected.contains("REDIS_COMMAND_TIMEOUT_MS"), "{expected}");
    // The default wait against a short command timeout: both named.
    let (key, _, expected) = config_error(Settings::load_from(
        &Sources::new()
            .env("REDIS_REPLICATED_ACK", "1")
            .env("REDIS_COMMAND_TIMEOUT_MS", "50"),
    ));
    assert_eq!(key, "REDIS_REPLICATED_ACK_TIMEOUT_MS");
    assert!(expected.contains("REDIS_COMMAND_TIMEOUT_MS"), "{expected}");
}

#[test]
fn bounded_reads_are_a_boolean() {
    let s = load(&Sources::new().env("SESSION_BOUNDED_READS", "true"));
    assert!(s.session.bounded_reads);
    let (key, _, _) = config_error(Settings::load_from(
        &Sources::new().env("SESSION_BOUNDED_READS", "maybe"),
    ));
    assert_eq!(key, "SESSION_BOUNDED_READS");
}

#[cfg(feature = "redis")]
mod options {
    use super::*;

    #[test]
    fn the_options_carry_the_acknowledgement_and_the_read_limit() {
        let s = load(
            &Sources::new()
                .env("REDIS_REPLICATED_ACK", "1")
                .env("SESSION_BOUNDED_READS", "yes")
                .env("SESSION_MAX_BYTES", "4096"),
        );
        let o = s.redis_options().unwrap();
        assert_eq!(o.replicated_ack().unwrap().replicas, 1);
        assert_eq!(o.read_limit(), Some(4096));
        let o = load(&Sources::new()).redis_options().unwrap();
        assert_eq!((o.replicated_ack(), o.read_limit()), (None, None));
    }

    #[test]
    fn a_cluster_gives_cluster_options_or_names_the_missing_feature() {
        let s = load(&Sources::new().env("REDIS_CLUSTER_NODES", "redis://a:7000,redis://b:7000"));
        match (s.redis_options(), cfg!(feature = "cluster")) {
            (Ok(o), true) => {
                assert_eq!(o.cluster_nodes().len(), 2);
            }
            (Err(session_core::Error::Config { key, expected, .. }), false) => {
                assert_eq!(key, "REDIS_CLUSTER_NODES");
                assert!(expected.contains("feature `cluster`"), "{expected}");
            }
            (other, _) => panic!("{other:?}"),
        }
    }

    #[test]
    fn sentinel_gives_sentinel_options_or_names_the_missing_feature() {
        let s = load(
            &Sources::new()
                .env("REDIS_DEPLOYMENT", "sentinel")
                .env("REDIS_SENTINELS", "redis://:sp@s:26379")
                .env("REDIS_SENTINEL_MASTER", "mymaster"),
        );
        match (s.redis_options(), cfg!(feature = "sentinel")) {
            (Ok(o), true) => {
                let sentinel = o.sentinel().unwrap();
                assert_eq!(sentinel.master, "mymaster");
                assert!(!o.redacted_url().contains("sp@"));
            }
            (Err(session_core::Error::Config { key, expected, .. }), false) => {
                assert_eq!(key, "REDIS_DEPLOYMENT");
                assert!(expected.contains("feature `sentinel`"), "{expected}");
            }
            (other, _) => panic!("{other:?}"),
        }
    }
}
