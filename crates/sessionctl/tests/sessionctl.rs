//! sessionctl end to end: the real binary against a private redis-server, on sessions written
//! by the library as a service would write them.

mod common;

use std::time::Duration;

use common::{Agent, Env};
use redis_harness::ServerOptions;
use serde_json::{Value, json};
use session_core::{SessionId, SessionStore};

fn agents() -> Vec<(&'static str, Agent)> {
    vec![
        ("user-1", Agent::new("new_problem", 0)),
        ("user-2", Agent::new("diagnosing", 1)),
        ("user-3", Agent::new("escalated", 3)),
        ("admin-1", Agent::new("resolved", 2)),
    ]
}

fn env_with_agents(test: &str) -> Option<Env> {
    let env = common::start(test)?;
    env.write_agents(&agents());
    Some(env)
}

fn ids(doc: &Value) -> Vec<String> {
    doc["sessions"]
        .as_array()
        .expect("sessions array")
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_owned())
        .collect()
}

#[test]
fn list_shows_sessions_for_people_and_programs() {
    let Some(env) = env_with_agents("list_shows_sessions_for_people_and_programs") else {
        return;
    };
    let run = env.run(&["list"]).code(0);
    let header = run.stdout.lines().next().expect("a header line");
    for column in ["ID", "VERSION", "TTL", "UPDATED", "SIZE", "SUMMARY"] {
        assert!(header.contains(column), "{header}");
    }
    assert!(run.stdout.contains("user-2"), "{}", run.stdout);
    assert!(run.stdout.contains("state=diagnosing"), "{}", run.stdout);
    assert!(run.stderr.contains("4 sessions"), "{}", run.stderr);

    let doc = env.run(&["--json", "list"]).code(0).json();
    assert_eq!(doc["count"], 4);
    assert_eq!(ids(&doc), ["admin-1", "user-1", "user-2", "user-3"]);
    let user2 = &doc["sessions"][2];
    assert_eq!(user2["version"], 1);
    assert_eq!(
        user2["summary"],
        json!({"state": "diagnosing", "current_attempt": 1})
    );
    let ttl = user2["ttl_ms"].as_u64().expect("ttl_ms");
    assert!(ttl > 3_500_000 && ttl <= 3_600_000, "{ttl}");
    assert!(user2["size"].as_u64().expect("size") > 0);
    assert!(user2["updated_at"].as_u64().expect("updated_at") > 1_600_000_000_000);

    // --json after the subcommand works as well; --match filters; --limit caps.
    let doc = env
        .run(&["list", "--match", "user-*", "--json"])
        .code(0)
        .json();
    assert_eq!(ids(&doc), ["user-1", "user-2", "user-3"]);
    let doc = env
        .run(&["list", "--match", "user-[12]", "--json"])
        .code(0)
        .json();
    assert_eq!(ids(&doc), ["user-1", "user-2"]);
    let doc = env.run(&["list", "--limit", "2", "--json"]).code(0).json();
    assert_eq!(doc["count"], 2);
    assert_eq!(doc["truncated"], true);
}

#[test]
fn show_prints_the_state_as_pretty_json() {
    let Some(env) = env_with_agents("show_prints_the_state_as_pretty_json") else {
        return;
    };
    let run = env.run(&["show", "user-2"]).code(0);
    let state: Value = serde_json::from_str(&run.stdout).expect("stdout is the state as JSON");
    assert_eq!(
        state,
        serde_json::to_value(Agent::new("diagnosing", 1)).unwrap()
    );
    assert!(
        run.stdout.contains("\n  \"state\": \"diagnosing\""),
        "pretty: {}",
        run.stdout
    );

    let doc = env.run(&["show", "user-2", "--json"]).code(0).json();
    assert_eq!(doc["id"], "user-2");
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["state"]["current_attempt"], 1);
    assert_eq!(doc["summary"]["state"], "diagnosing");
}

#[test]
fn show_of_a_missing_id_fails_and_an_invalid_id_is_a_usage_error() {
    let Some(env) = common::start("show_of_a_missing_id_fails_and_an_invalid_id_is_a_usage_error")
    else {
        return;
    };
    let run = env.run(&["show", "nobody"]).code(1);
    assert!(
        run.stderr.contains("session nobody not found"),
        "{}",
        run.stderr
    );
    for bad in ["user 1", "user*", ""] {
        let run = env.run(&["show", bad]).code(2);
        assert!(run.stderr.contains("invalid session id"), "{}", run.stderr);
    }
    // clap's own usage errors exit with 2 as well.
    env.run(&["show"]).code(2);
    env.run(&["frobnicate"]).code(2);
}

#[test]
fn a_corrupt_session_is_reported_and_raw_shows_its_fields() {
    let Some(env) = common::start("a_corrupt_session_is_reported_and_raw_shows_its_fields") else {
        return;
    };
    // A complete record whose payload is not an envelope (JSON, say, written by another tool).
    let (rt, store) = env.store();
    let write = session_core::Write::new(
        bytes::Bytes::from_static(b"{\"json\":1}"),
        session_core::Condition::Any,
    )
    .with_ttl(session_core::Ttl::from_secs(600).unwrap());
    rt.block_on(store.save(&SessionId::new("broken").unwrap(), write))
        .unwrap();
    // A hash without its meta and version fields.
    env.server
        .command(&["HSET", "cql:session:half", "d", "x"])
        .unwrap();
    env.server
        .command(&["SET", "cql:session:wrongtype", "x"])
        .unwrap();
    let run = env.run(&["show", "broken"]).code(1);
    assert!(
        run.stderr.contains("session broken is corrupt"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("not a session envelope"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("show --raw broken"), "{}", run.stderr);
    for id in ["wrongtype", "half"] {
        let run = env.run(&["show", id]).code(1);
        assert!(
            run.stderr.contains(&format!("session {id} is corrupt")),
            "{}",
            run.stderr
        );
    }

    let run = env.run(&["show", "broken", "--raw"]).code(0);
    assert!(run.stdout.contains("magic 0x7b (wrong)"), "{}", run.stdout);
    assert!(
        run.stdout.contains("\"summary\":{}"),
        "decoded meta: {}",
        run.stdout
    );
    let run = env.run(&["show", "half", "--raw"]).code(0);
    assert!(run.stdout.contains("v         (missing"), "{}", run.stdout);
    let doc = env
        .run(&["show", "broken", "--raw", "--json"])
        .code(0)
        .json();
    assert_eq!(doc["type"], "string");
    assert_eq!(doc["layout"], "record");
    assert_eq!(doc["fields"]["v"], "1");
    assert!(doc["ttl_ms"].as_u64().unwrap() <= 600_000);
    assert_eq!(doc["fields"]["d"]["hex"], "7b226a736f6e223a317d");
    let doc = env
        .run(&["show", "wrongtype", "--raw", "--json"])
        .code(0)
        .json();
    assert_eq!(doc["type"], "string");
    // Listings still work around corrupt entries, and show them so they can be deleted.
    let run = env.run(&["list"]).code(0);
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("half") && l.contains("(unreadable)")),
        "{}",
        run.stdout
    );
    // An export leaves them out, says which and why, and exits with 1.
    env.write_agents(&[("fine", Agent::new("new_problem", 0))]);
    let run = env.run(&["export", "-"]).code(1);
    assert_eq!(run.stdout.lines().count(), 1, "{}", run.stdout);
    for id in ["broken", "half", "wrongtype"] {
        assert!(
            run.stderr
                .contains(&format!("left out: session {id} is corrupt")),
            "{}",
            run.stderr
        );
    }
    env.run(&["delete", "broken", "half", "wrongtype"]).code(0);
    env.run(&["export", "-"]).code(0);
}

#[test]
fn delete_removes_sessions_and_reports_missing_ones() {
    let Some(env) = env_with_agents("delete_removes_sessions_and_reports_missing_ones") else {
        return;
    };
    let run = env.run(&["delete", "user-1", "user-2"]).code(0);
    assert!(run.stdout.contains("deleted user-1"), "{}", run.stdout);
    let run = env.run(&["delete", "user-3", "user-1"]).code(1);
    assert!(
        run.stderr.contains("session user-1 not found"),
        "{}",
        run.stderr
    );
    env.run(&["delete", "user-1", "--ignore-missing"]).code(0);
    // One bad id deletes nothing.
    env.run(&["delete", "admin-1", "bad id"]).code(2);
    let doc = env.run(&["--json", "list"]).code(0).json();
    assert_eq!(ids(&doc), ["admin-1"]);
    let doc = env
        .run(&["--json", "delete", "admin-1", "ghost"])
        .code(1)
        .json();
    assert_eq!(doc, json!({"deleted": ["admin-1"], "not_found": ["ghost"]}));
}

#[test]
fn ttl_reads_and_sets_the_expiry() {
    let Some(env) = env_with_agents("ttl_reads_and_sets_the_expiry") else {
        return;
    };
    let run = env.run(&["ttl", "user-1"]).code(0);
    assert!(
        run.stdout.contains("user-1: expires in 59m"),
        "{}",
        run.stdout
    );
    let run = env.run(&["ttl", "user-1", "90"]).code(0);
    assert!(run.stdout.contains("expires in 1m 30s"), "{}", run.stdout);
    let doc = env.run(&["--json", "ttl", "user-1"]).code(0).json();
    let ms = doc["ttl_ms"].as_u64().expect("ttl_ms");
    assert!(ms > 80_000 && ms <= 90_000, "{ms}");
    // Setting a TTL keeps the version.
    let doc = env.run(&["show", "user-1", "--json"]).code(0).json();
    assert_eq!(doc["version"], 1);
    env.run(&["ttl", "ghost"]).code(1);
    env.run(&["ttl", "ghost", "10"]).code(1);
    env.run(&["ttl", "user-1", "0"]).code(2);
    env.run(&["ttl", "user-1", "-5"]).code(2);
}

#[test]
fn export_purge_import_gives_the_same_sessions_back() {
    let Some(env) = env_with_agents("export_purge_import_gives_the_same_sessions_back") else {
        return;
    };
    let (rt, store) = env.store();
    let load_all = || -> Vec<(String, session_core::Record)> {
        let mut records = Vec::new();
        for (id, _) in agents() {
            let id = SessionId::new(id).unwrap();
            let record = rt
                .block_on(store.load(&id))
                .unwrap()
                .expect("session there");
            records.push((id.to_string(), record));
        }
        records
    };
    let before = load_all();

    let file = env.path("sessions.jsonl");
    let file = file.to_str().unwrap();
    let run = env.run(&["export", file]).code(0);
    assert!(run.stderr.contains("exported 4 sessions"), "{}", run.stderr);
    let text = std::fs::read_to_string(file).unwrap();
    assert_eq!(text.lines().count(), 4);
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    for field in [
        "id",
        "version",
        "ttl_ms",
        "created_at",
        "updated_at",
        "summary",
        "payload_b64",
    ] {
        assert!(first.get(field).is_some(), "{field} missing in {first}");
    }

    let run = env.run(&["purge", "--match", "*", "--yes"]).code(0);
    assert!(run.stdout.contains("deleted 4 sessions"), "{}", run.stdout);
    assert_eq!(env.run(&["--json", "list"]).code(0).json()["count"], 0);

    let doc = env.run(&["--json", "import", file]).code(0).json();
    assert_eq!(
        doc,
        json!({"imported": 4, "skipped": 0, "bad": 0, "errors": []})
    );

    let after = load_all();
    for ((id, old), (_, new)) in before.iter().zip(&after) {
        assert_eq!(old.payload, new.payload, "{id}: payload");
        assert_eq!(old.meta.summary, new.meta.summary, "{id}: summary");
        assert_eq!(old.meta.size, new.meta.size, "{id}: size");
        // Imports are new writes: version 1 on the emptied server.
        assert_eq!(new.version, 1, "{id}: version");
        let (old_ttl, new_ttl) = (old.ttl.unwrap(), new.ttl.unwrap());
        assert!(
            new_ttl <= old_ttl && old_ttl - new_ttl < Duration::from_secs(60),
            "{id}: ttl {old_ttl:?} -> {new_ttl:?}"
        );
    }
    // The states decode as the service's type.
    let run = env.run(&["show", "user-3"]).code(0);
    let state: Agent = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(state, Agent::new("escalated", 3));

    // --no-overwrite skips what is there; a second plain import rewrites (new versions).
    let doc = env
        .run(&["--json", "import", file, "--no-overwrite"])
        .code(0)
        .json();
    assert_eq!(doc["skipped"], 4);
    env.run(&["import", file]).code(0);
    assert_eq!(
        env.run(&["show", "user-1", "--json"]).code(0).json()["version"],
        2
    );
}

#[test]
fn import_reports_a_corrupt_line_with_its_number_and_imports_the_rest() {
    let Some(env) =
        env_with_agents("import_reports_a_corrupt_line_with_its_number_and_imports_the_rest")
    else {
        return;
    };
    let export = env.run(&["export", "-", "--match", "user-[12]"]).code(0);
    let good: Vec<&str> = export.stdout.lines().collect();
    assert_eq!(good.len(), 2);
    env.run(&["purge", "--match", "*", "--yes"]).code(0);
    let lines = [
        good[0],
        "{this is not json",
        r#"{"id": "bad id", "payload_b64": "wQEAgA=="}"#,
        "",
        r#"{"id": "b64", "payload_b64": "!!!"}"#,
        r#"{"id": "envelope", "payload_b64": "eyJhIjoxfQ=="}"#,
        r#"{"id": "zero-ttl", "ttl_ms": 0, "state": {"a": 1}}"#,
        good[1],
        r#"{"id": "by-state", "ttl_ms": 60000, "state": {"state": "new_problem", "n": [1, 2]}}"#,
        // The error lines of session-axum's HTTP export.
        r#"{"id": "user-9", "error": "corrupt", "message": "field m is not readable meta"}"#,
        r#"{"error": "unavailable", "message": "the session store failed"}"#,
    ];
    let file = env.path("mixed.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let run = env.run(&["import", file.to_str().unwrap()]).code(1);
    for expected in [
        "line 2: not a valid session object",
        "line 3: invalid session id \"bad id\"",
        "line 5: payload_b64 of session b64 is not base64",
        "line 6: session envelope is corrupt: not a session envelope",
        "line 7: ttl_ms 0 of session zero-ttl",
        "line 10: an error line, not a session: session user-9 could not be exported (corrupt",
        "line 11: an error line, not a session: the export broke off here (unavailable",
    ] {
        assert!(
            run.stderr.contains(expected),
            "{expected:?} in {}",
            run.stderr
        );
    }
    assert!(
        !run.stderr.contains("line 1:") && !run.stderr.contains("line 4:"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("imported 3, skipped 0 (already there), bad 7"),
        "{}",
        run.stderr
    );
    let doc = env.run(&["--json", "list"]).code(0).json();
    assert_eq!(ids(&doc), ["by-state", "user-1", "user-2"]);
    let state = env.run(&["show", "by-state"]).code(0);
    let state: Value = serde_json::from_str(&state.stdout).unwrap();
    assert_eq!(state, json!({"state": "new_problem", "n": [1, 2]}));

    let doc = env
        .run_stdin(&["--json", "import", "-"], &lines[1..3].join("\n"))
        .code(1)
        .json();
    assert_eq!(doc["bad"], 2);
    assert_eq!(doc["errors"][0]["line"], 1);
    assert_eq!(doc["errors"][1]["line"], 2);
}

#[test]
fn purge_deletes_only_matching_sessions_under_the_prefix() {
    let Some(env) = env_with_agents("purge_deletes_only_matching_sessions_under_the_prefix") else {
        return;
    };
    env.server
        .command(&["SET", "other:user-9", "keep"])
        .unwrap();
    env.server
        .command(&["SET", "cql:session:user 9", "not an id"])
        .unwrap();

    // Without --yes and without a terminal: refused, nothing deleted.
    let run = env.run(&["purge", "--match", "user-*"]).code(2);
    assert!(run.stderr.contains("--yes"), "{}", run.stderr);
    let doc = env
        .run(&["--json", "purge", "--match", "user-*", "--dry-run"])
        .code(0)
        .json();
    assert_eq!(doc["matched"], 3);
    assert_eq!(doc["deleted"], 0);

    let doc = env
        .run(&["--json", "purge", "--match", "user-*", "--yes"])
        .code(0)
        .json();
    assert_eq!(doc["deleted"], 3);
    assert_eq!(
        ids(&env.run(&["--json", "list"]).code(0).json()),
        ["admin-1"]
    );
    assert_eq!(
        env.server.command(&["GET", "other:user-9"]).unwrap(),
        "keep"
    );
    assert_eq!(
        env.server
            .command(&["EXISTS", "cql:session:user 9"])
            .unwrap(),
        "1"
    );

    for bad in ["", "user\\*", "a b", "[abc", "x/*"] {
        env.run(&["purge", "--match", bad, "--yes"]).code(2);
    }
    env.run(&["purge", "--yes"]).code(2);
}

#[test]
fn stats_counts_sizes_ttls_and_states() {
    let Some(env) = env_with_agents("stats_counts_sizes_ttls_and_states") else {
        return;
    };
    env.run(&["ttl", "user-1", "30"]).code(0);
    let doc = env.run(&["stats", "--json"]).code(0).json();
    assert_eq!(doc["count"], 4);
    assert_eq!(doc["ttl"]["<1m"], 1);
    assert_eq!(doc["ttl"]["<1h"], 3);
    assert_eq!(doc["ttl"]["none"], 0);
    assert_eq!(doc["states"]["diagnosing"], 1);
    let size = &doc["size"];
    assert!(size["max"].as_u64().unwrap() >= size["average"].as_u64().unwrap());
    assert!(size["total"].as_u64().unwrap() > 0);
    let run = env.run(&["stats"]).code(0);
    assert!(run.stdout.contains("sessions    4"), "{}", run.stdout);
    assert!(run.stdout.contains("escalated"), "{}", run.stdout);
}

#[test]
fn doctor_reports_every_check() {
    let Some(env) = common::start_with(
        "doctor_reports_every_check",
        ServerOptions {
            extra_args: ["--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"]
                .map(String::from)
                .to_vec(),
            ..Default::default()
        },
    ) else {
        return;
    };
    let doc = env
        .run(&["doctor", "--json", "--pings", "5"])
        .code(0)
        .json();
    assert_eq!(doc["ok"], true);
    let checks = doc["checks"].as_array().unwrap();
    let names: Vec<&str> = checks
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "config",
            "connect",
            "server",
            "memory",
            "persistence",
            "latency",
            "sessions"
        ]
    );
    let memory = &checks[3];
    assert_eq!(memory["status"], "warn");
    assert!(memory["detail"].as_str().unwrap().contains("allkeys-lru"));
    assert!(
        memory["advice"]
            .as_str()
            .unwrap()
            .contains("volatile-lru or noeviction")
    );
    let run = env.run(&["doctor"]).code(0);
    assert!(
        run.stdout.contains("5 PINGs") || run.stdout.contains("20 PINGs"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("ok    server") && l.contains("Redis")),
        "{}",
        run.stdout
    );
}

#[test]
fn unreachable_redis_is_one_clear_failure_without_the_password() {
    let Some(env) = common::start("unreachable_redis_is_one_clear_failure_without_the_password")
    else {
        return;
    };
    let port = redis_harness::free_port().unwrap();
    let url = format!("redis://:s3cret-pw@127.0.0.1:{port}/0");
    for args in [&["list"][..], &["show", "x"], &["doctor"], &["export", "-"]] {
        let mut cmd = env.command();
        cmd.arg("--url").arg(&url).args(args);
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("s3cret") && !stdout.contains("s3cret"),
            "{stderr}{stdout}"
        );
        assert!(
            stderr.contains(&format!("127.0.0.1:{port}"))
                || stdout.contains(&format!("127.0.0.1:{port}")),
            "{args:?}: {stderr}{stdout}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let mut cmd = env.command();
    let out = cmd.arg("--url").arg(&url).arg("list").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("hint: is redis-server running"), "{stderr}");
    // A malformed --url is a usage error, also without the password.
    let run = env.run(&["--url", "http://:s3cret-pw@h:1", "list"]).code(2);
    assert!(!run.stderr.contains("s3cret"), "{}", run.stderr);
}

#[test]
fn a_wrong_password_says_so() {
    let Some(env) = common::start_with(
        "a_wrong_password_says_so",
        ServerOptions {
            password: Some("right-pw".into()),
            ..Default::default()
        },
    ) else {
        return;
    };
    let url = format!("redis://:wrong-pw@127.0.0.1:{}/0", env.server.port());
    let mut cmd = env.command();
    let out = cmd.arg("--url").arg(&url).arg("list").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("refused the credentials"), "{stderr}");
    assert!(!stderr.contains("wrong-pw"), "{stderr}");
    // The right one works.
    env.run(&["list"]).code(0);
}

#[test]
fn settings_come_from_the_environment_and_flags_override_them() {
    let Some(env) = env_with_agents("settings_come_from_the_environment_and_flags_override_them")
    else {
        return;
    };
    let port = env.server.port().to_string();
    // USE_REDIS=false still talks to the Redis the settings describe (the parts here).
    let parts = [
        ("REDIS_HOST", "127.0.0.1"),
        ("REDIS_PORT", port.as_str()),
        ("USE_REDIS", "false"),
    ];
    let doc = env.run_env(&parts, &["--json", "list"]).code(0).json();
    assert_eq!(doc["count"], 4);
    // A part beside REDIS_URL in the same layer must agree with it: another port is a
    // configuration error naming both, the same port is no contradiction.
    let run = env
        .run_env(
            &[("REDIS_URL", env.url.as_str()), ("REDIS_PORT", "1")],
            &["--json", "list"],
        )
        .code(1);
    assert!(
        run.stderr.contains("REDIS_PORT") && run.stderr.contains("REDIS_URL"),
        "{}",
        run.stderr
    );
    let doc = env
        .run_env(
            &[
                ("REDIS_URL", env.url.as_str()),
                ("REDIS_PORT", port.as_str()),
            ],
            &["--json", "list"],
        )
        .code(0)
        .json();
    assert_eq!(doc["count"], 4);
    // A service's pool setting does not matter to a command line.
    let pool = [("REDIS_URL", env.url.as_str()), ("REDIS_MODE", "pool")];
    assert_eq!(
        env.run_env(&pool, &["--json", "list"]).code(0).json()["count"],
        4
    );
    // REDIS_KEY_PREFIX from the environment, --prefix over it.
    let other = [
        ("REDIS_URL", env.url.as_str()),
        ("REDIS_KEY_PREFIX", "other:"),
    ];
    assert_eq!(
        env.run_env(&other, &["--json", "list"]).code(0).json()["count"],
        0
    );
    let doc = env
        .run_env(&other, &["--prefix", "cql:session:", "--json", "list"])
        .code(0)
        .json();
    assert_eq!(doc["count"], 4);
    // --url over REDIS_URL.
    let dead = [("REDIS_URL", "redis://127.0.0.1:1/0")];
    env.run_env(&dead, &["list"]).code(1);
    env.run_env(&dead, &["--url", env.url.as_str(), "list"])
        .code(0);
    // Configuration files through --config-dir, and a bad setting is a clear failure.
    let dir = env.path("conf");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("default.toml"),
        format!("[redis]\nurl = \"{}\"\n", env.url),
    )
    .unwrap();
    let dir = dir.to_str().unwrap();
    assert_eq!(
        env.run_env(&[], &["--config-dir", dir, "--json", "list"])
            .code(0)
            .json()["count"],
        4
    );
    let run = env.run_env(&[("SESSION_TTL", "soon")], &["list"]).code(1);
    assert!(run.stderr.contains("SESSION_TTL"), "{}", run.stderr);
}

#[test]
fn help_is_complete() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sessionctl"))
        .arg("--help")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for word in [
        "list",
        "show",
        "delete",
        "purge",
        "ttl",
        "export",
        "import",
        "rekey",
        "stats",
        "doctor",
        "--url",
        "--prefix",
        "--json",
        "Exit codes",
        "Examples",
        "USE_REDIS",
    ] {
        assert!(help.contains(word), "{word} missing from --help:\n{help}");
    }
    for sub in [
        "list", "show", "delete", "purge", "ttl", "export", "import", "rekey", "stats", "doctor",
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sessionctl"))
            .args([sub, "--help"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{sub}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Examples"),
            "{sub}"
        );
    }
}

#[cfg(feature = "tls")]
#[test]
fn tls_targets_work_for_the_store_and_the_direct_commands() {
    let Some(env) = common::start_with(
        "tls_targets_work_for_the_store_and_the_direct_commands",
        ServerOptions {
            tls: true,
            ..Default::default()
        },
    ) else {
        return;
    };
    env.write_agents(&agents());
    let tls_url = env.server.tls_url().unwrap();
    let ca = env.server.tls_files().unwrap().ca_cert.clone();
    let vars = [
        ("REDIS_URL", tls_url.as_str()),
        ("REDIS_TLS_CA_FILE", ca.to_str().unwrap()),
    ];
    assert_eq!(
        env.run_env(&vars, &["--json", "list"]).code(0).json()["count"],
        4
    );
    env.run_env(&vars, &["ttl", "user-1"]).code(0);
    env.run_env(&vars, &["show", "user-1", "--raw"]).code(0);
    let doc = env
        .run_env(&vars, &["--json", "purge", "--match", "user-3", "--yes"])
        .code(0)
        .json();
    assert_eq!(doc["deleted"], 1);
    assert_eq!(
        env.run_env(&vars, &["doctor", "--json"]).code(0).json()["ok"],
        true
    );
}
