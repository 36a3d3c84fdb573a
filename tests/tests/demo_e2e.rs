//! End to end: real `session-demo` processes, Redis and `sessionctl`.
//!
//! - two demo processes on one Redis hold one conversation (below);
//! - sessions move from a demo on memory through `/admin/export` and `sessionctl import` into
//!   Redis and go on there;
//! - Redis stops under a running demo (503s, `/readyz` 503) and the conversation goes
//!   on when it is back.
//!
//! The test drives a repair-agent conversation through two real demo processes, taking turns,
//! then sends a burst of concurrent messages to both, and checks after every reply and at the
//! end that both processes see the same state and that every message is in the history exactly
//! once, in order. It stops both processes with SIGTERM (a graceful shutdown must exit 0),
//! starts them again on new ports, finds the conversation unchanged and continues it, and reads
//! it with `sessionctl show`.
//!
//! Redis is the shared test server of `cargo xtask test` (`SESSION_TEST_REDIS_URL`; skipped
//! without it, mandatory under `SESSION_REQUIRE_REDIS=1`), with a key prefix of its own
//! (`e2e-<unique>:`). The binaries `session-demo` and `sessionctl` are built with
//! `$CARGO build -p session-demo -p sessionctl --all-features` (cargo sets `CARGO` for tests;
//! a no-op when they are fresh) and taken from the target directory next to this test's
//! executable. The children run with a clean environment: `PATH`, the repository's `config/`
//! with `APP_ENV=test`, `USE_REDIS=true`, `SESSION_FALLBACK=none` (a Redis problem fails the
//! demo instead of sending it to memory), `REDIS_URL`, `REDIS_KEY_PREFIX`, `LOG_FORMAT=json`.

mod common;

use std::{
    collections::HashMap,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use common::{Binaries, Demo, DemoEnv, Scratch, history, workspace_root};
use integration_tests::unique;
use serde_json::{Value, json};

const TEST: &str = "two_demo_processes_share_one_conversation_across_restarts";

/// Concurrent clients per demo process in the burst, and messages each sends in turn.
const BURST_CLIENTS: usize = 4;
const BURST_MESSAGES: usize = 5;

/// The conversation, one message per turn, and the agent's `state` and `current_attempt`
/// after each (see `session_demo::agent`): unclear answers use up no attempt, the third
/// failure escalates, and an escalated conversation stays escalated.
const SCRIPT: &[(&str, &str, u64)] = &[
    ("my laptop drops the wifi connection", "diagnosing", 0),
    (
        "since the update yesterday, every ten minutes",
        "awaiting_feedback",
        1,
    ),
    ("hmm, let me check", "awaiting_feedback", 1),
    ("no, same as before", "awaiting_feedback", 2),
    ("which cable do you mean", "awaiting_feedback", 2),
    ("still broken", "awaiting_feedback", 3),
    ("I tried it twice", "awaiting_feedback", 3),
    ("nope", "escalated", 3),
    ("hello, anybody there", "escalated", 3),
];

#[test]
fn two_demo_processes_share_one_conversation_across_restarts() {
    let Some(redis_url) = redis_harness::env::redis_url(TEST) else {
        return;
    };
    let bins = Binaries::build();
    let scratch = Scratch::new();
    let prefix = format!("e2e-{}:", unique("demo"));
    let env = DemoEnv {
        redis_url: redis_url.clone(),
        prefix: prefix.clone(),
        workdir: scratch.path().to_path_buf(),
        use_redis: true,
    };
    let id = unique("conversation");

    // Two instances of the service on one Redis.
    let mut a = Demo::start(&bins.demo, &env, "a1", scratch.path());
    let mut b = Demo::start(&bins.demo, &env, "b1", scratch.path());

    // One conversation, the instances taking turns; after each reply the OTHER instance must
    // see exactly what the answering one wrote.
    for (n, (message, state, attempt)) in SCRIPT.iter().enumerate() {
        let (speaker, listener) = if n % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let reply = speaker.say(&id, message);
        assert_eq!(
            reply["state"], *state,
            "after message {n} {message:?}: {reply}"
        );
        assert_eq!(
            reply["current_attempt"], *attempt,
            "after {message:?}: {reply}"
        );
        let view = listener.session(&id);
        let turns = n + 1;
        assert_eq!(view["version"], turns as u64, "{view}");
        assert_eq!(view["state"], *state, "{view}");
        assert_eq!(view["current_attempt"], *attempt, "{view}");
        let history = history(&view);
        assert_eq!(history.len(), 2 * turns, "{view}");
        assert_eq!(history[2 * n], ("user".to_owned(), message.to_string()));
        assert_eq!(
            history[2 * n + 1],
            (
                "assistant".to_owned(),
                reply["reply"].as_str().unwrap().to_owned()
            )
        );
    }

    // A burst: clients on both instances at once, each sending its messages in turn.
    let burst = thread::scope(|scope| {
        let mut clients = Vec::new();
        for (name, demo) in [("a", &a), ("b", &b)] {
            for client in 0..BURST_CLIENTS {
                let id = &id;
                clients.push(scope.spawn(move || {
                    (0..BURST_MESSAGES)
                        .map(|m| {
                            let text = format!("burst {name}{client} message {m}");
                            let reply = demo.say(id, &text);
                            // Escalated is final: no message of the burst changes it.
                            assert_eq!(reply["state"], "escalated", "{reply}");
                            assert_eq!(reply["current_attempt"], 3, "{reply}");
                            text
                        })
                        .collect::<Vec<_>>()
                }));
            }
        }
        clients
            .into_iter()
            .map(|c| c.join().unwrap())
            .collect::<Vec<_>>()
    });
    let total = SCRIPT.len() + BURST_CLIENTS * 2 * BURST_MESSAGES;

    let from_a = a.session(&id);
    let from_b = b.session(&id);
    assert_same_agent(&from_a, &from_b);
    check_history(&from_a, &burst, total);
    assert_eq!(from_a["state"], "escalated");
    assert_eq!(from_a["current_attempt"], 3);
    let listed = b.list();
    let entry = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["session_id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} not in GET /sessions: {listed}"));
    assert_eq!(entry["state"], "escalated", "{entry}");
    assert_eq!(entry["version"], total as u64, "{entry}");

    // Both stop gracefully on SIGTERM ...
    a.terminate();
    b.terminate();

    // ... and after a restart, on new ports, the conversation is still there, unchanged.
    let a = Demo::start(&bins.demo, &env, "a2", scratch.path());
    let b = Demo::start(&bins.demo, &env, "b2", scratch.path());
    for demo in [&a, &b] {
        let view = demo.session(&id);
        assert_same_agent(&view, &from_a);
        assert_eq!(view["version"], total as u64, "{view}");
    }
    // It goes on: one more message through the restarted instance B, seen by A.
    let reply = b.say(&id, "is anybody reading this after the restart");
    assert_eq!(reply["state"], "escalated", "{reply}");
    let after = a.session(&id);
    assert_eq!(after["version"], total as u64 + 1, "{after}");
    let history_after = history(&after);
    assert_eq!(history_after.len(), 2 * (total + 1));
    assert_eq!(&history_after[..2 * total], &history(&from_a)[..]);

    // sessionctl reads the same session straight from Redis.
    let shown = bins.sessionctl_show(&redis_url, &prefix, &id, scratch.path());
    let shown_history = find_key(&shown, "conversation_history")
        .unwrap_or_else(|| panic!("no conversation_history in `sessionctl show`: {shown}"));
    assert_eq!(shown_history, &after["conversation_history"]);
    assert_eq!(find_key(&shown, "state"), Some(&json!("escalated")));

    // Clean up: deleted through one instance, gone for the other.
    assert_eq!(a.request("DELETE", &format!("/sessions/{id}"), None).0, 204);
    assert_eq!(b.request("GET", &format!("/sessions/{id}"), None).0, 404);
}

/// The agents of two `GET /sessions/{id}` bodies are the same (the TTL may differ by a tick).
fn assert_same_agent(left: &Value, right: &Value) {
    let strip = |v: &Value| {
        let mut v = v.clone();
        v.as_object_mut().unwrap().remove("ttl");
        v
    };
    assert_eq!(strip(left), strip(right));
}

/// The final history: the script in order, then every burst message exactly once, each
/// client's in the order it sent them; every message directly followed by its reply.
fn check_history(view: &Value, burst: &[Vec<String>], total: usize) {
    let history = history(view);
    assert_eq!(history.len(), 2 * total, "every message and reply is kept");
    assert_eq!(view["version"], total as u64, "one write per message");
    for pair in history.chunks(2) {
        assert_eq!(pair[0].0, "user", "{pair:?}");
        assert_eq!(pair[1].0, "assistant", "{pair:?}");
    }
    let user: Vec<&str> = history
        .iter()
        .filter(|(role, _)| role == "user")
        .map(|(_, content)| content.as_str())
        .collect();
    let scripted: Vec<&str> = SCRIPT.iter().map(|(m, _, _)| *m).collect();
    assert_eq!(
        &user[..SCRIPT.len()],
        &scripted[..],
        "the conversation, in order"
    );
    let rest = &user[SCRIPT.len()..];
    let mut position = HashMap::new();
    for (i, text) in rest.iter().enumerate() {
        assert!(
            position.insert(*text, i).is_none(),
            "{text:?} is in the history twice"
        );
    }
    for client in burst {
        let positions: Vec<usize> = client
            .iter()
            .map(|text| {
                *position
                    .get(text.as_str())
                    .unwrap_or_else(|| panic!("{text:?} was lost"))
            })
            .collect();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "one client's messages out of order: {client:?} at {positions:?}"
        );
    }
    assert_eq!(rest.len(), burst.iter().map(Vec::len).sum::<usize>());
}

/// The migration path from a service's memory to Redis: a demo on the in-memory store holds
/// conversations; its admin export (`GET /admin/export`, JSON Lines) goes through
/// `sessionctl import` into Redis; a demo on Redis then continues every conversation where it
/// stood.
#[test]
fn sessions_move_from_a_memory_demo_into_redis() {
    const TEST: &str = "sessions_move_from_a_memory_demo_into_redis";
    let Some(redis_url) = redis_harness::env::redis_url(TEST) else {
        return;
    };
    let bins = Binaries::build();
    let scratch = Scratch::new();
    let prefix = format!("e2e-{}:", unique("migrate"));
    let mut env = DemoEnv {
        redis_url: redis_url.clone(),
        prefix: prefix.clone(),
        workdir: scratch.path().to_path_buf(),
        use_redis: false,
    };
    let ids = [unique("printer"), unique("wifi"), unique("laptop")];
    let mut memory = Demo::start(&bins.demo, &env, "memory", scratch.path());
    for (n, id) in ids.iter().enumerate() {
        for message in SCRIPT.iter().take(n + 2).map(|(m, _, _)| m) {
            memory.say(id, message);
        }
    }
    let before: Vec<Value> = ids.iter().map(|id| memory.session(id)).collect();

    // The admin router answers only with the token the demo was started with.
    let (status, refused) = memory.request("GET", "/admin/export", None);
    assert_eq!(status, 401, "{refused}");
    let bearer = format!("Bearer {}", common::ADMIN_TOKEN);
    let response = memory.request_with(
        "GET",
        "/admin/export",
        &[("authorization", bearer.as_str())],
        None,
    );
    let (status, export) = (response.status, response.body);
    assert_eq!(status, 200, "{export}");
    assert_eq!(export.lines().count(), ids.len(), "{export}");
    let file = scratch.path().join("sessions.jsonl");
    std::fs::write(&file, &export).unwrap();
    memory.terminate();

    let output = Command::new(&bins.sessionctl)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("CONFIG_DIR", workspace_root().join("config"))
        .env("APP_ENV", "test")
        .current_dir(scratch.path())
        .args(["--url", &redis_url, "--prefix", &prefix, "--json", "import"])
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "sessionctl import failed ({}): {stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["imported"], ids.len() as u64, "{report}");
    assert_eq!(report["bad"], 0, "{report}");

    env.use_redis = true;
    let redis = Demo::start(&bins.demo, &env, "redis", scratch.path());
    for (id, was) in ids.iter().zip(&before) {
        let now = redis.session(id);
        assert_eq!(
            history(&now),
            history(was),
            "{id}: the conversation changed"
        );
        assert_eq!(now["state"], was["state"], "{now}");
        assert_eq!(now["current_attempt"], was["current_attempt"], "{now}");
    }
    // ... and the conversation goes on where it stood.
    let reply = redis.say(&ids[2], "yes, that fixed it");
    assert_eq!(
        history(&redis.session(&ids[2])).len(),
        history(&before[2]).len() + 2
    );
    assert!(reply["state"].is_string(), "{reply}");
}

/// A fault: the Redis under a running demo stops. Requests then get a 503 with a JSON body
/// (no fallback once started: `SESSION_FALLBACK=none`), `/healthz` says `unavailable` and
/// `/readyz` answers 503, and when Redis is back (same port, its AOF kept) the conversation
/// continues where it was.
#[test]
fn a_redis_outage_is_a_503_and_the_demo_recovers_when_redis_returns() {
    const TEST: &str = "a_redis_outage_is_a_503_and_the_demo_recovers_when_redis_returns";
    let Some(mut redis) = redis_harness::env::private_server(
        TEST,
        redis_harness::ServerOptions {
            appendonly: true,
            ..redis_harness::ServerOptions::default()
        },
    ) else {
        return;
    };
    let bins = Binaries::build();
    let scratch = Scratch::new();
    let env = DemoEnv {
        redis_url: redis.url(),
        prefix: "cql:session:".to_owned(),
        workdir: scratch.path().to_path_buf(),
        use_redis: true,
    };
    let demo = Demo::start(&bins.demo, &env, "outage", scratch.path());
    let id = unique("outage");
    demo.say(&id, SCRIPT[0].0);
    demo.say(&id, SCRIPT[1].0);

    redis.stop().unwrap();
    let body = json!({ "message": SCRIPT[2].0 }).to_string();
    // The first write meets the connection that died with the server. Redis closed it, so
    // nothing can have been applied, but the client cannot tell a request the server never
    // read from one whose reply was lost, and the server is not there to ask: the outcome is
    // unknown (500, no Retry-After). Or the driver had noticed already: unavailable (503).
    let (status, reply) = demo.request("POST", &format!("/sessions/{id}/messages"), Some(&body));
    let error: Value = serde_json::from_str(&reply).unwrap();
    match status {
        500 => assert_eq!(error["error"], "outcome_unknown", "{error}"),
        503 => assert_eq!(error["error"], "unavailable", "{error}"),
        other => panic!("first write during the outage: {other} {reply}"),
    }
    assert!(!reply.contains("password"), "{reply}");
    // From then on the connection is known to be down: nothing is sent, and that is known.
    let (status, reply) = demo.request("POST", &format!("/sessions/{id}/messages"), Some(&body));
    assert_eq!(status, 503, "{reply}");
    let error: Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(error["error"], "unavailable", "{error}");
    assert!(!reply.contains("password"), "{reply}");
    // Liveness: the process serves (a restart would not bring Redis back). Readiness: no
    // traffic for an instance that cannot keep sessions.
    let (status, health) = demo.health("/healthz");
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "unavailable", "{health}");
    assert_eq!(health["ready"], false, "{health}");
    let (status, ready) = demo.health("/readyz");
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["status"], "unavailable", "{ready}");

    redis.restart().unwrap();
    // The driver reconnects on its own; the first requests after the restart may still fail.
    let deadline = Instant::now() + Duration::from_secs(10);
    let reply = loop {
        let (status, reply) =
            demo.request("POST", &format!("/sessions/{id}/messages"), Some(&body));
        if status == 200 {
            break reply;
        }
        assert_eq!(status, 503, "{reply}");
        assert!(
            Instant::now() < deadline,
            "no recovery after the restart: {reply}"
        );
        thread::sleep(Duration::from_millis(100));
    };
    let reply: Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(reply["state"], SCRIPT[2].1, "{reply}");
    let view = demo.session(&id);
    let said: Vec<String> = history(&view)
        .into_iter()
        .filter(|(role, _)| role == "user")
        .map(|(_, text)| text)
        .collect();
    assert_eq!(said, [SCRIPT[0].0, SCRIPT[1].0, SCRIPT[2].0], "{view}");
    assert_eq!(view["version"], 3, "{view}");
}

/// The value of the first `key` found anywhere in `value` (depth first).
fn find_key<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    match value {
        Value::Object(map) => map
            .get(key)
            .or_else(|| map.values().find_map(|v| find_key(v, key))),
        Value::Array(items) => items.iter().find_map(|v| find_key(v, key)),
        _ => None,
    }
}
