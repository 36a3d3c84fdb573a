//! The demo on a Redis Cluster and through Sentinel, configured by the environment only
//! (`REDIS_CLUSTER_NODES`; `REDIS_SENTINELS` + `REDIS_SENTINEL_MASTER`, no `REDIS_URL`): two
//! demo processes hold one conversation, taking turns, each seeing what the other wrote, and
//! the session is listed.
//!
//! On the shared cluster and Sentinel set of `cargo xtask test` (`SESSION_TEST_CLUSTER_NODES`,
//! `SESSION_TEST_SENTINELS`, `SESSION_TEST_SENTINEL_MASTER`); skipped without them, mandatory
//! under `SESSION_REQUIRE_CLUSTER=1` / `SESSION_REQUIRE_SENTINEL=1`. The binaries are built as
//! in `demo_e2e.rs`.

mod common;

use common::{Awaited, Binaries, Demo, DemoEnv, Scratch, history};
use integration_tests::unique;

/// Four turns of the repair conversation and the agent's state after each.
const SCRIPT: &[(&str, &str)] = &[
    ("my laptop drops the wifi connection", "diagnosing"),
    (
        "since the update yesterday, every ten minutes",
        "awaiting_feedback",
    ),
    ("no, same as before", "awaiting_feedback"),
    ("still broken", "awaiting_feedback"),
];

/// Two demos on `vars`' deployment hold one conversation.
fn one_conversation(name: &str, vars: &[(&str, &str)]) {
    let bins = Binaries::build();
    let scratch = Scratch::new();
    let env = DemoEnv {
        // Empty: unset for the demo, whose server comes from `vars`.
        redis_url: String::new(),
        prefix: format!("{}:", unique(name)),
        workdir: scratch.path().to_path_buf(),
        use_redis: true,
    };
    let a = Demo::start_with(
        &bins.demo,
        &env,
        "a",
        scratch.path(),
        vars,
        Awaited::Healthy,
    );
    let b = Demo::start_with(
        &bins.demo,
        &env,
        "b",
        scratch.path(),
        vars,
        Awaited::Healthy,
    );
    let id = unique("conversation");
    for (n, (message, state)) in SCRIPT.iter().enumerate() {
        let (speaker, listener) = if n % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let reply = speaker.say(&id, message);
        assert_eq!(reply["state"], *state, "after {message:?}: {reply}");
        let view = listener.session(&id);
        assert_eq!(view["version"], (n + 1) as u64, "{view}");
        let history = history(&view);
        assert_eq!(history.len(), 2 * (n + 1), "{view}");
        assert_eq!(history[2 * n], ("user".to_owned(), message.to_string()));
    }
    let listed = a.list().to_string();
    assert!(listed.contains(&id), "{listed}");
}

#[test]
fn the_demo_holds_a_conversation_on_a_cluster() {
    let test = "the_demo_holds_a_conversation_on_a_cluster";
    let Some(nodes) = redis_harness::env::cluster_nodes(test) else {
        return;
    };
    let nodes = nodes.join(",");
    one_conversation("demo-cluster", &[("REDIS_CLUSTER_NODES", &nodes)]);
}

#[test]
fn the_demo_holds_a_conversation_through_sentinel() {
    let test = "the_demo_holds_a_conversation_through_sentinel";
    let Some(set) = redis_harness::env::sentinels(test) else {
        return;
    };
    let sentinels = set.sentinels.join(",");
    one_conversation(
        "demo-sentinel",
        &[
            ("REDIS_SENTINELS", &sentinels),
            ("REDIS_SENTINEL_MASTER", &set.master),
        ],
    );
}
