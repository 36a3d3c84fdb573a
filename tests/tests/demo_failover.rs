//! Fallbacks and honest health under real `session-demo` processes, each test on a private
//! `redis-server` of its own (skipped without a `redis-server` binary, mandatory under
//! `SESSION_REQUIRE_REDIS=1`):
//!
//! - `SESSION_FALLBACK=runtime`: Redis is killed (`kill -9`) under a demo holding a few
//!   conversations; the messages go on with 200 from memory, `/readyz` stays 200 (`degraded`)
//!   and `/healthz` shows the fallback and what it owes Redis; Redis comes back empty on the
//!   same port, the demo writes back, and every acknowledged message is in Redis;
//! - `runtime` in a demo started while Redis is down: it serves, and the sessions created
//!   meanwhile reach Redis when it starts;
//! - `startup` while Redis is down: the demo serves from memory but `/readyz` answers 503
//!   (its sessions never reach Redis), `/healthz` 200 with the reason;
//! - refused credentials: the demo does not start, whatever the policy;
//! - Redis out of memory (`maxmemory`, `noeviction`): a message answers 507 naming
//!   `maxmemory`, the session keeps its state, and no fallback takes over.
//!
//! The demos run as in `demo_e2e.rs` (see `common`), with the policy of the test and short
//! Redis timeouts ([`TIMEOUTS`]). Timings are printed, and bounded only generously.

mod common;

use std::{
    process::Command,
    thread,
    time::{Duration, Instant},
};

use common::{Awaited, Binaries, Demo, DemoEnv, Scratch, user_messages};
use integration_tests::unique;
use redis_harness::{RedisServer, ServerOptions};
use serde_json::{Value, json};

/// Connect and command timeouts of the demos: a call waits at most their sum (600 ms) for a
/// Redis that stopped answering before the fallback answers it.
const TIMEOUTS: &[(&str, &str)] = &[
    ("REDIS_CONNECT_TIMEOUT_MS", "300"),
    ("REDIS_COMMAND_TIMEOUT_MS", "300"),
];
/// How long one message may take during an outage: the bound above, many times over.
const OUTAGE_CALL_BOUND: Duration = Duration::from_secs(10);
/// How long a demo may take to be back on Redis once it accepts connections (the probe backs
/// off to 5 s; the target is 2 s, measured, not asserted here).
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// The environment variables of a demo with fallback `policy` and the short timeouts.
fn vars(policy: &'static str) -> Vec<(&'static str, &'static str)> {
    let mut vars = vec![("SESSION_FALLBACK", policy)];
    vars.extend_from_slice(TIMEOUTS);
    vars
}

fn demo_env(url: String, test: &str, scratch: &Scratch) -> DemoEnv {
    DemoEnv {
        redis_url: url,
        prefix: format!("failover-{}:", unique(test)),
        workdir: scratch.path().to_path_buf(),
        use_redis: true,
    }
}

/// `POST /sessions/{id}/messages`, which must answer 200 within [`OUTAGE_CALL_BOUND`]; how
/// long it took.
fn say_in_time(demo: &Demo, id: &str, message: &str) -> Duration {
    let start = Instant::now();
    demo.say(id, message);
    let took = start.elapsed();
    assert!(
        took < OUTAGE_CALL_BOUND,
        "{message:?} to {id} took {took:?} on demo {}",
        demo.name()
    );
    took
}

/// Polls `/healthz` until its fallback mode is `primary` (written back, on Redis again);
/// that report and how long it took.
fn wait_until_primary(demo: &Demo) -> (Value, Duration) {
    let start = Instant::now();
    loop {
        let (status, health) = demo.health("/healthz");
        assert_eq!(status, 200, "liveness during recovery: {health}");
        if health["fallback"]["mode"] == "primary" {
            return (health, start.elapsed());
        }
        assert!(
            start.elapsed() < RECOVERY_TIMEOUT,
            "demo {} not back on Redis {RECOVERY_TIMEOUT:?} after it returned: {health}",
            demo.name()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// SIGKILL to the server's own pid (no `SHUTDOWN`, nothing flushed), and waits until it is
/// gone; `restart` then brings it back on the same port, empty (no persistence).
fn kill_9(server: &mut RedisServer) {
    let pid = server.pid().to_string();
    let status = Command::new("kill").args(["-KILL", &pid]).status().unwrap();
    assert!(status.success(), "kill -KILL {pid} failed");
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.is_running() {
        assert!(
            Instant::now() < deadline,
            "redis-server {pid} survived SIGKILL"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// The user's messages of session `id` as Redis holds them (`sessionctl show`, no demo).
fn messages_in_redis(bins: &Binaries, env: &DemoEnv, id: &str) -> Vec<String> {
    let shown = bins.sessionctl_show(&env.redis_url, &env.prefix, id, &env.workdir);
    let history = find_key(&shown, "conversation_history")
        .unwrap_or_else(|| panic!("no conversation_history in `sessionctl show {id}`: {shown}"));
    user_messages(&json!({ "conversation_history": history }))
}

/// The `session_fallback_active` gauge as `/metrics` shows it.
fn fallback_gauge(demo: &Demo) -> String {
    let (status, text) = demo.request("GET", "/metrics", None);
    assert_eq!(status, 200, "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix("session_fallback_active "))
        .unwrap_or_else(|| panic!("no session_fallback_active in /metrics:\n{text}"))
        .trim()
        .to_owned()
}

/// With `runtime`, `kill -9` of Redis under a demo costs no request and no message: the
/// messages go on from memory, health says so live, and when Redis comes back empty on the
/// same port everything acknowledged meanwhile is written back to it.
#[test]
fn runtime_fallback_serves_through_kill_9_and_writes_every_message_back() {
    const TEST: &str = "runtime_fallback_serves_through_kill_9_and_writes_every_message_back";
    let Some(mut server) = redis_harness::env::private_server(TEST, ServerOptions::default())
    else {
        return;
    };
    let bins = Binaries::build();
    let scratch = Scratch::new();
    let env = demo_env(server.url(), "kill9", &scratch);
    let demo = Demo::start_with(
        &bins.demo,
        &env,
        "runtime",
        scratch.path(),
        &vars("runtime"),
        Awaited::Healthy,
    );
    let ids: Vec<String> = (0..3)
        .map(|i| unique(&format!("conversation-{i}")))
        .collect();
    // What each conversation was told and the demo acknowledged (200).
    let mut said: Vec<Vec<String>> = vec![Vec::new(); ids.len()];
    let say = |said: &mut Vec<Vec<String>>, i: usize, text: String| {
        let took = say_in_time(&demo, &ids[i], &text);
        said[i].push(text);
        took
    };
    for i in 0..ids.len() {
        say(
            &mut said,
            i,
            format!("conversation {i}: the printer is offline"),
        );
    }
    let (_, health) = demo.health("/healthz");
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["fallback"]["mode"], "primary", "{health}");
    assert_eq!(fallback_gauge(&demo), "0");

    kill_9(&mut server);
    let first = say(
        &mut said,
        0,
        "conversation 0: since this morning".to_owned(),
    );
    eprintln!("{TEST}: the first message after kill -9 took {first:?}");
    for round in 1..=2 {
        for i in 0..ids.len() {
            say(
                &mut said,
                i,
                format!("conversation {i}: outage message {round}"),
            );
        }
    }
    // A conversation begun during the outage.
    let late = unique("conversation-late");
    say_in_time(&demo, &late, "a new problem: the scanner");

    let (status, ready) = demo.health("/readyz");
    assert_eq!(status, 200, "the run-time fallback is ready: {ready}");
    assert_eq!(ready["status"], "degraded", "{ready}");
    let (status, health) = demo.health("/healthz");
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["backend"], "memory", "{health}");
    assert_eq!(health["fallback_active"], true, "{health}");
    assert_eq!(health["redis"]["reachable"], false, "{health}");
    let fallback = &health["fallback"];
    assert_eq!(fallback["policy"], "runtime", "{health}");
    assert_eq!(fallback["mode"], "fallback", "{health}");
    assert_eq!(fallback["reconcilable"], true, "{health}");
    assert_eq!(
        fallback["dirty_sessions"],
        ids.len() + 1,
        "every changed conversation is owed to Redis: {health}"
    );
    assert!(fallback["since"].is_string(), "{health}");
    assert!(fallback["reason"].is_string(), "{health}");
    assert!(!health.to_string().contains("password"), "{health}");
    assert_eq!(fallback_gauge(&demo), "1");

    // Redis comes back on the same port with nothing in it.
    server.restart().unwrap();
    let (health, took) = wait_until_primary(&demo);
    eprintln!("{TEST}: back on Redis {took:?} after it accepted connections again");
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["backend"], "redis", "{health}");
    assert_eq!(health["fallback_active"], false, "{health}");
    let fallback = &health["fallback"];
    assert_eq!(fallback["dirty_sessions"], 0, "{health}");
    assert_eq!(fallback["recoveries"], 1, "{health}");
    assert_eq!(fallback["conflicts"], 0, "{health}");
    assert_eq!(fallback["failed"], 0, "{health}");
    assert_eq!(fallback["overflowed"], 0, "{health}");
    assert!(
        fallback["written_back"].as_u64() >= Some(ids.len() as u64 + 1),
        "{health}"
    );
    assert_eq!(fallback_gauge(&demo), "0");

    // None lost: Redis itself holds every acknowledged message, in order.
    for (id, said) in ids.iter().zip(&said) {
        assert_eq!(&messages_in_redis(&bins, &env, id), said, "session {id}");
    }
    assert_eq!(
        messages_in_redis(&bins, &env, &late),
        ["a new problem: the scanner"]
    );
    // And the conversation goes on in Redis.
    say(&mut said, 1, "conversation 1: after the outage".to_owned());
    assert_eq!(messages_in_redis(&bins, &env, &ids[1]), said[1]);
}

/// With `runtime`, a demo that starts while Redis is down serves from memory and is ready;
/// when Redis starts, the sessions created meanwhile appear in it.
#[test]
fn runtime_fallback_started_while_redis_is_down_connects_and_writes_back() {
    const TEST: &str = "runtime_fallback_started_while_redis_is_down_connects_and_writes_back";
    let Some(mut server) = redis_harness::env::private_server(TEST, ServerOptions::default())
    else {
        return;
    };
    // Its port and directory are kept: `restart` starts it there later.
    server.stop().unwrap();
    let bins = Binaries::build();
    let scratch = Scratch::new();
    let env = demo_env(server.url(), "down-at-start", &scratch);
    let demo = Demo::start_with(
        &bins.demo,
        &env,
        "runtime-down",
        scratch.path(),
        &vars("runtime"),
        Awaited::Serving,
    );
    let (status, ready) = demo.health("/readyz");
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(ready["fallback"]["policy"], "runtime", "{ready}");
    assert_eq!(ready["fallback"]["mode"], "fallback", "{ready}");
    assert!(ready["fallback_reason"].is_string(), "{ready}");

    let ids = [unique("early-a"), unique("early-b")];
    let said = ["my laptop drops the wifi", "every ten minutes"];
    for id in &ids {
        for text in said {
            say_in_time(&demo, id, text);
        }
    }
    let (_, health) = demo.health("/healthz");
    assert_eq!(health["fallback"]["dirty_sessions"], 2, "{health}");

    server.restart().unwrap();
    let (health, took) = wait_until_primary(&demo);
    eprintln!("{TEST}: on Redis {took:?} after it started");
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["fallback"]["dirty_sessions"], 0, "{health}");
    assert_eq!(health["fallback"]["conflicts"], 0, "{health}");
    for id in &ids {
        assert_eq!(messages_in_redis(&bins, &env, id), said, "session {id}");
    }
    let (status, ready) = demo.health("/readyz");
    assert_eq!((status, &ready["status"]), (200, &json!("ok")), "{ready}");
}

/// With `startup`, a demo that starts while Redis is down serves from memory for its life:
/// alive, but not ready (nothing it holds ever reaches Redis).
#[test]
fn startup_fallback_is_alive_but_not_ready() {
    const TEST: &str = "startup_fallback_is_alive_but_not_ready";
    let Some(mut server) = redis_harness::env::private_server(TEST, ServerOptions::default())
    else {
        return;
    };
    server.stop().unwrap();
    let bins = Binaries::build();
    let scratch = Scratch::new();
    let env = demo_env(server.url(), "startup", &scratch);
    let demo = Demo::start_with(
        &bins.demo,
        &env,
        "startup-down",
        scratch.path(),
        &vars("startup"),
        Awaited::Serving,
    );
    let id = unique("startup");
    say_in_time(&demo, &id, "the printer is offline");

    let (status, ready) = demo.health("/readyz");
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["ready"], false, "{ready}");
    assert!(
        ready["not_ready_reason"]
            .as_str()
            .is_some_and(|r| r.contains("start-up fallback")),
        "{ready}"
    );
    let (status, health) = demo.health("/healthz");
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["backend"], "memory", "{health}");
    assert_eq!(health["fallback_active"], true, "{health}");
    // The report says what happened in general words; the server's address is in the log
    // only.
    let address = format!("127.0.0.1:{}", server.port());
    assert!(
        !health.to_string().contains(&address),
        "the health report names the server: {health}"
    );
    assert!(health["fallback_reason"].is_string(), "{health}");
    assert!(
        demo.log_text().contains(&address),
        "the log should name the server the fallback replaced"
    );
    assert_eq!(health["fallback"]["policy"], "startup", "{health}");
    assert_eq!(health["fallback"]["reconcilable"], false, "{health}");
    assert_eq!(fallback_gauge(&demo), "1");

    // Redis returning changes nothing for this instance: still not ready.
    server.restart().unwrap();
    let (status, ready) = demo.health("/readyz");
    assert_eq!(status, 503, "{ready}");
}

/// Refused credentials are a configuration error: the demo does not start, with the
/// `startup` and the `runtime` policy alike, and says why (without the password).
#[test]
fn refused_credentials_stop_the_demo_from_starting_whatever_the_policy() {
    const TEST: &str = "refused_credentials_stop_the_demo_from_starting_whatever_the_policy";
    let Some(server) = redis_harness::env::private_server(
        TEST,
        ServerOptions {
            password: Some("the-right-password".to_owned()),
            ..ServerOptions::default()
        },
    ) else {
        return;
    };
    let bins = Binaries::build();
    let scratch = Scratch::new();
    let wrong = format!("redis://:a-wrong-password@127.0.0.1:{}", server.port());
    let env = demo_env(wrong, "wrongpass", &scratch);
    for policy in ["startup", "runtime"] {
        let (status, output) = Demo::run_to_exit(
            &bins.demo,
            &env,
            if policy == "startup" {
                "wrongpass-startup"
            } else {
                "wrongpass-runtime"
            },
            scratch.path(),
            &vars(policy),
        );
        assert!(
            !status.success(),
            "{policy}: exited with {status}:\n{output}"
        );
        assert!(
            output.contains("refused the credentials"),
            "{policy}: the message says why:\n{output}"
        );
        assert!(
            !output.contains("a-wrong-password"),
            "{policy}: the password is never shown:\n{output}"
        );
        assert!(
            !output.contains("\"event_type\":\"server_started\""),
            "{policy}:\n{output}"
        );
    }
}

/// Redis at `maxmemory` with `noeviction` refuses writes: a message answers 507 with a
/// message naming `maxmemory`; the session keeps its state; the run-time fallback does not
/// take over (the server answers); when memory is freed, messages go through again.
#[test]
fn redis_out_of_memory_is_a_507_and_the_session_keeps_its_state() {
    const TEST: &str = "redis_out_of_memory_is_a_507_and_the_session_keeps_its_state";
    let Some(server) = redis_harness::env::private_server(
        TEST,
        ServerOptions {
            extra_args: vec!["--maxmemory-policy".into(), "noeviction".into()],
            ..ServerOptions::default()
        },
    ) else {
        return;
    };
    let bins = Binaries::build();
    let scratch = Scratch::new();
    let env = demo_env(server.url(), "oom", &scratch);
    let demo = Demo::start_with(
        &bins.demo,
        &env,
        "oom",
        scratch.path(),
        &vars("runtime"),
        Awaited::Healthy,
    );
    let id = unique("oom");
    demo.say(&id, "the printer is offline");
    let before = demo.session(&id);

    fill_until_writes_are_refused(&server);
    let body = json!({ "message": "since this morning" }).to_string();
    let response = demo.request_with(
        "POST",
        &format!("/sessions/{id}/messages"),
        &[],
        Some(&body),
    );
    assert_eq!(response.status, 507, "{response:?}");
    assert_eq!(response.header("retry-after"), None, "{response:?}");
    let error = response.json();
    assert_eq!(error["error"], "out_of_memory", "{error}");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.contains("maxmemory"), "{error}");
    assert!(
        !message.contains("used memory"),
        "no server detail: {error}"
    );

    // Reads still work: the session is as it was, in the demo and in Redis.
    assert_eq!(demo.session(&id), before);
    assert_eq!(
        messages_in_redis(&bins, &env, &id),
        ["the printer is offline"]
    );
    // Out of memory is not an outage: no fallback, and the instance stays ready.
    let (status, health) = demo.health("/readyz");
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["fallback_active"], false, "{health}");
    assert_eq!(health["fallback"]["mode"], "primary", "{health}");
    assert_eq!(health["fallback"]["activations"], 0, "{health}");

    // Memory freed: the conversation goes on.
    server.command(&["DEL", FILLER]).unwrap();
    demo.say(&id, "since this morning");
    assert_eq!(
        messages_in_redis(&bins, &env, &id),
        ["the printer is offline", "since this morning"]
    );
}

/// The key that fills the server (outside every demo's prefix).
const FILLER: &str = "demo-failover-oom-filler";

/// Sets `maxmemory` a little above what the server uses now and appends to [`FILLER`] until
/// the server refuses a write with `OOM`.
fn fill_until_writes_are_refused(server: &RedisServer) {
    let info = server.command(&["INFO", "memory"]).unwrap();
    let used: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no used_memory in INFO memory: {info}"));
    let limit = (used + 512 * 1024).to_string();
    server
        .command(&["CONFIG", "SET", "maxmemory", &limit])
        .unwrap();
    let chunk = "x".repeat(64 * 1024);
    for _ in 0..1_000 {
        match server.command(&["APPEND", FILLER, &chunk]) {
            Ok(_) => {}
            Err(e) if e.to_string().contains("OOM") => return,
            Err(e) => panic!("APPEND {FILLER}: {e}"),
        }
    }
    panic!("the server still accepts writes beyond maxmemory {limit}");
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
