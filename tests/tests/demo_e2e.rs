//! End to end: real `session-demo` processes, Redis and `sessionctl`.
//!
//! - two demo processes on one Redis hold one conversation (below);
//! - sessions move from a demo on memory through `/admin/export` and `sessionctl import` into
//!   Redis and go on there;
//! - Redis stops under a running demo (503s, `/healthz` unavailable) and the conversation goes
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

use std::{
    collections::HashMap,
    fs::File,
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use integration_tests::unique;
use serde_json::{Value, json};

const TEST: &str = "two_demo_processes_share_one_conversation_across_restarts";

/// How long a demo may take to answer `/healthz` after it is started.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a demo may take to exit after SIGTERM.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(15);
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

/// The `(role, content)` pairs of a `GET /sessions/{id}` body.
fn history(view: &Value) -> Vec<(String, String)> {
    view["conversation_history"]
        .as_array()
        .unwrap_or_else(|| panic!("no conversation_history: {view}"))
        .iter()
        .map(|turn| {
            (
                turn["role"].as_str().unwrap().to_owned(),
                turn["content"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
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

    let (status, export) = memory.request("GET", "/admin/export", None);
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
/// (no fallback once started: `SESSION_FALLBACK=none`), `/healthz` says `unavailable`, and
/// when Redis is back (same port, its AOF kept) the conversation continues where it was.
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
    let (status, health) = demo.request("GET", "/healthz", None);
    assert_eq!(status, 503, "{health}");
    let health: Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["status"], "unavailable", "{health}");

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

/// The binaries under test.
struct Binaries {
    demo: PathBuf,
    sessionctl: PathBuf,
}

impl Binaries {
    /// Builds `session-demo` and `sessionctl` (a no-op when fresh) and finds them in the
    /// target directory of this test executable (`target/<profile>/deps/..`).
    fn build() -> Self {
        let exe = std::env::current_exe().unwrap();
        let dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .unwrap_or_else(|| panic!("no target directory above {}", exe.display()))
            .to_path_buf();
        if let Some(cargo) = std::env::var_os("CARGO") {
            let mut cmd = Command::new(cargo);
            cmd.args([
                "build",
                "-p",
                "session-demo",
                "-p",
                "sessionctl",
                "--all-features",
            ]);
            if dir.file_name().is_some_and(|p| p == "release") {
                cmd.arg("--release");
            }
            // `CARGO_TARGET_DIR` is inherited, so the binaries land beside this executable.
            cmd.current_dir(workspace_root());
            eprintln!("{TEST}: building the binaries: {cmd:?}");
            let status = cmd.status().unwrap();
            assert!(
                status.success(),
                "building session-demo and sessionctl failed"
            );
        } else {
            eprintln!(
                "{TEST}: CARGO is not set: using the binaries in {}",
                dir.display()
            );
        }
        let find = |name: &str| {
            let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
            assert!(path.is_file(), "no {} (build it first)", path.display());
            path
        };
        Self {
            demo: find("session-demo"),
            sessionctl: find("sessionctl"),
        }
    }

    /// `sessionctl --url URL --prefix PREFIX show ID`: the state, as JSON.
    fn sessionctl_show(&self, url: &str, prefix: &str, id: &str, workdir: &Path) -> Value {
        let output = Command::new(&self.sessionctl)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("CONFIG_DIR", workspace_root().join("config"))
            .env("APP_ENV", "test")
            .current_dir(workdir)
            .args(["--url", url, "--prefix", prefix, "show", id])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "sessionctl show failed ({}): {stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("sessionctl show printed no JSON ({e}): {stdout}"))
    }
}

fn workspace_root() -> PathBuf {
    // This crate lives in `<root>/tests`.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// What every demo process gets.
struct DemoEnv {
    redis_url: String,
    prefix: String,
    workdir: PathBuf,
    /// Keep sessions in Redis (else in the process's memory).
    use_redis: bool,
}

/// A running `session-demo`, killed when dropped (SIGKILL, as a last resort on failure).
struct Demo {
    name: &'static str,
    child: Option<Child>,
    port: u16,
    log: PathBuf,
}

impl Demo {
    /// Starts a demo on a free loopback port and waits until `/healthz` reports Redis.
    fn start(binary: &Path, env: &DemoEnv, name: &'static str, logs: &Path) -> Self {
        let mut last_failure = String::new();
        // A free port can be taken between our probe and the demo's bind: try again then.
        for attempt in 0..3 {
            let port = free_port();
            let log = logs.join(format!("{name}-{attempt}.log"));
            let out = File::create(&log).unwrap();
            let err = out.try_clone().unwrap();
            let child = Command::new(binary)
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("CONFIG_DIR", workspace_root().join("config"))
                .env("APP_ENV", "test")
                .env("USE_REDIS", env.use_redis.to_string())
                .env("SESSION_FALLBACK", "none")
                .env("REDIS_URL", &env.redis_url)
                .env("REDIS_KEY_PREFIX", &env.prefix)
                .env("LOG_FORMAT", "json")
                .env("RUST_LOG", "info")
                .current_dir(&env.workdir)
                .args(["--bind", &format!("127.0.0.1:{port}")])
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
            let mut demo = Demo {
                name,
                child: Some(child),
                port,
                log,
            };
            match demo.wait_healthy(env.use_redis) {
                Ok(()) => return demo,
                Err(why) => {
                    last_failure = format!("{why}\n--- log of {name} ---\n{}", demo.log_text());
                    if let Some(mut child) = demo.child.take() {
                        let _ = child.kill();
                        let _ = child.wait();
                    }
                }
            }
        }
        panic!("demo {name} did not start: {last_failure}");
    }

    fn wait_healthy(&mut self, redis: bool) -> Result<(), String> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                return Err(format!("exited during start-up ({status})"));
            }
            if let Ok((200, body)) = try_request(self.port, "GET", "/healthz", None) {
                let health: Value = serde_json::from_str(&body).unwrap();
                let backend_ok = if redis {
                    health["backend"] == "redis" && health["redis"]["reachable"] == true
                } else {
                    health["backend"] == "memory"
                };
                if backend_ok && health["status"] == "ok" {
                    return Ok(());
                }
                return Err(format!(
                    "/healthz does not report a reachable Redis: {health}"
                ));
            }
            if Instant::now() > deadline {
                return Err(format!("no /healthz answer within {STARTUP_TIMEOUT:?}"));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// `POST /sessions/{id}/messages`; the reply, which must be 200.
    fn say(&self, id: &str, message: &str) -> Value {
        let body = json!({ "message": message }).to_string();
        let (status, reply) =
            self.request("POST", &format!("/sessions/{id}/messages"), Some(&body));
        assert_eq!(status, 200, "{} said {reply}", self.name);
        serde_json::from_str(&reply).unwrap()
    }

    /// `GET /sessions/{id}`, which must be 200.
    fn session(&self, id: &str) -> Value {
        let (status, body) = self.request("GET", &format!("/sessions/{id}"), None);
        assert_eq!(status, 200, "{} said {body}", self.name);
        serde_json::from_str(&body).unwrap()
    }

    /// `GET /sessions?limit=1000`.
    fn list(&self) -> Value {
        let (status, body) = self.request("GET", "/sessions?limit=1000", None);
        assert_eq!(status, 200, "{} said {body}", self.name);
        serde_json::from_str(&body).unwrap()
    }

    fn request(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        try_request(self.port, method, path, body).unwrap_or_else(|e| {
            panic!(
                "{method} {path} on demo {}: {e}\n--- log ---\n{}",
                self.name,
                self.log_text()
            )
        })
    }

    /// SIGTERM, then waits: a graceful shutdown exits 0 and logs `server_stopped`.
    fn terminate(&mut self) {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM {} failed", child.id());
        let exit = wait_with_timeout(&mut child, SHUTDOWN_TIMEOUT).unwrap_or_else(|| {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "demo {} did not stop within {SHUTDOWN_TIMEOUT:?} of SIGTERM\n{}",
                self.name,
                self.log_text()
            )
        });
        assert!(
            exit.success(),
            "demo {} exited with {exit} after SIGTERM\n{}",
            self.name,
            self.log_text()
        );
        let log = self.log_text();
        assert!(
            log.contains("\"event_type\":\"server_stopped\""),
            "demo {} logged no server_stopped:\n{log}",
            self.name
        );
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            if thread::panicking() {
                eprintln!("--- log of demo {} ---\n{}", self.name, self.log_text());
            }
        }
    }
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        thread::sleep(Duration::from_millis(50));
    }
    None
}

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`): status and body.
fn try_request(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let raw = String::from_utf8(raw).map_err(|e| e.to_string())?;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no end of headers in {raw:?}"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    let chunked = head.lines().any(|line| {
        line.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

/// The body of a `Transfer-Encoding: chunked` response.
fn dechunk(mut rest: &str) -> Result<String, String> {
    let mut body = String::new();
    loop {
        let (size, after) = rest
            .split_once("\r\n")
            .ok_or_else(|| "truncated chunk".to_owned())?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|e| format!("bad chunk size {size:?}: {e}"))?;
        if size == 0 {
            return Ok(body);
        }
        let chunk = after
            .get(..size)
            .ok_or_else(|| "truncated chunk".to_owned())?;
        body.push_str(chunk);
        rest = after.get(size + 2..).unwrap_or("");
    }
}

/// A directory of its own under the system's temporary directory, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        let path = std::env::temp_dir().join(unique("demo-e2e"));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("{TEST}: logs kept in {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
