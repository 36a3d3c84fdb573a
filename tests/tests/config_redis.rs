//! `USE_REDIS=true` through session-config on real Redis: the Redis store when Redis answers,
//! the start-up fallback to memory when it does not (or refuses the credentials), a clear error
//! under `SESSION_FALLBACK=none`, the parts like the URL (and over a URL from a file), and TLS.
//!
//! Settings come from explicit environment maps (`Sources`): the process environment is never
//! read or changed.

use std::{
    io::Write as _,
    sync::{Arc, Mutex},
};

use integration_tests::{Agent, unique, unique_id};
use redis_harness::ServerOptions;
use redis_harness::env::private_server;
use session_config::{BuiltStore, Settings, Sources};
use session_core::{Error, SessionId};

/// `USE_REDIS=true`, a key prefix no other test uses, a short connect timeout, and `vars`.
fn settings(tag: &str, vars: &[(&str, &str)]) -> Settings {
    let prefix = format!("itest:{}:", unique(tag));
    let sources = Sources::new()
        .env("USE_REDIS", "true")
        .env("REDIS_KEY_PREFIX", prefix)
        .env("REDIS_CONNECT_TIMEOUT_MS", "1500")
        .envs(vars.iter().copied());
    Settings::load_from(&sources).unwrap_or_else(|e| panic!("settings: {e}"))
}

async fn build(settings: &Settings) -> BuiltStore {
    settings
        .build_store()
        .await
        .unwrap_or_else(|e| panic!("build_store: {e}"))
}

/// A session written and read back through a manager on `built`.
async fn round_trip(settings: &Settings, built: BuiltStore) {
    let agents = settings.manager_builder::<Agent>(built).build();
    let id: SessionId = unique_id("config");
    agents
        .get_or_create(&id, Agent::new)
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));
    agents
        .modify(&id, |a| a.current_attempt += 1)
        .await
        .unwrap_or_else(|e| panic!("modify: {e}"));
    let agent = agents
        .get(&id)
        .await
        .unwrap_or_else(|e| panic!("get: {e}"))
        .unwrap_or_else(|| panic!("the session is gone"));
    assert_eq!(agent.current_attempt, 1);
    agents
        .delete(&id)
        .await
        .unwrap_or_else(|e| panic!("delete: {e}"));
}

/// The port of a server that was started and stopped: nothing listens there now.
fn stopped_server(test: &str, password: Option<&str>) -> Option<u16> {
    let mut server = private_server(
        test,
        ServerOptions {
            password: password.map(str::to_owned),
            ..Default::default()
        },
    )?;
    let port = server.port();
    server.stop().unwrap_or_else(|e| panic!("stop: {e}"));
    Some(port)
}

/// A `tracing` writer that keeps everything in memory, for checking what a warning says.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        let bytes = self.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut bytes) = self.0.lock() {
            bytes.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Self;
    fn make_writer(&'a self) -> Self {
        self.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn use_redis_with_a_reachable_server_builds_the_redis_store() {
    let test = "use_redis_with_a_reachable_server_builds_the_redis_store";
    let Some(url) = redis_harness::env::redis_url(test) else {
        return;
    };
    let settings = settings("reachable", &[("REDIS_URL", &url)]);
    let built = build(&settings).await;
    assert_eq!(built.backend(), "redis");
    assert_eq!(built.fallback, None);
    assert!(!built.fallback_active());
    round_trip(&settings, built).await;
    // build_manager gives the same.
    let manager = settings
        .build_manager::<Agent>()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(manager.backend(), "redis");
}

// Current-thread: the warning is emitted on this thread, where the capturing subscriber is set.
#[tokio::test]
async fn a_stopped_server_falls_back_to_memory_and_says_why() {
    let test = "a_stopped_server_falls_back_to_memory_and_says_why";
    let Some(port) = stopped_server(test, Some("pw-never-shown")) else {
        return;
    };
    let url = format!("redis://:pw-never-shown@127.0.0.1:{port}/0");
    let settings = settings("stopped", &[("REDIS_URL", &url)]);

    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_max_level(tracing::Level::INFO)
        .finish();
    let built = {
        let _guard = tracing::subscriber::set_default(subscriber);
        build(&settings).await
    };

    assert_eq!(built.backend(), "memory");
    let fallback = built
        .fallback
        .clone()
        .unwrap_or_else(|| panic!("expected a fallback"));
    let redacted = format!("redis://:***@127.0.0.1:{port}/0");
    assert_eq!(fallback.redis_url, redacted);
    assert_eq!(fallback.error_kind, "unavailable");
    assert!(fallback.reason.contains(&redacted), "{}", fallback.reason);
    assert!(
        fallback.reason.contains("unavailable"),
        "{}",
        fallback.reason
    );
    let shown = format!("{fallback} {fallback:?} {built:?}");
    assert!(!shown.contains("pw-never-shown"), "{shown}");

    let logged = logs.text();
    eprintln!("captured: {logged}");
    assert!(logged.contains("WARN"), "{logged}");
    for field in [
        "component=\"session\"",
        "backend=\"memory\"",
        "event_type=\"fallback_activated\"",
    ] {
        assert!(logged.contains(field), "{field} missing from {logged}");
    }
    assert!(logged.contains(&redacted), "{logged}");
    assert!(!logged.contains("pw-never-shown"), "{logged}");

    // The memory store works as the store of the service.
    round_trip(&settings, built).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_under_policy_none_is_unavailable() {
    let test = "a_stopped_server_under_policy_none_is_unavailable";
    let Some(port) = stopped_server(test, Some("pw-never-shown")) else {
        return;
    };
    let url = format!("redis://:pw-never-shown@127.0.0.1:{port}");
    let settings = settings(
        "stopped-none",
        &[("REDIS_URL", &url), ("SESSION_FALLBACK", "none")],
    );
    match settings.build_store().await {
        Err(e @ Error::Unavailable { .. }) => {
            let text = format!("{e} {e:?}");
            assert!(!text.contains("pw-never-shown"), "{text}");
            assert!(
                text.contains(&format!("redis://:***@127.0.0.1:{port}/0")),
                "{text}"
            );
            assert!(text.contains("SESSION_FALLBACK is none"), "{text}");
        }
        other => panic!("expected Error::Unavailable, got {other:?}"),
    }
    match settings.build_manager::<Agent>().await {
        Err(Error::Unavailable { .. }) => {}
        other => panic!("expected Error::Unavailable, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_reported_as_refused_credentials() {
    let test = "a_wrong_password_is_reported_as_refused_credentials";
    let Some(server) = private_server(
        test,
        ServerOptions {
            password: Some("right-pw".into()),
            ..Default::default()
        },
    ) else {
        return;
    };
    let port = server.port();
    let url = format!("redis://:wrong-pw@127.0.0.1:{port}");

    // Refused credentials never fall back, whatever the policy: a configuration error.
    for policy in ["startup", "runtime"] {
        let settings = settings(
            "wrong-pw",
            &[("REDIS_URL", &url), ("SESSION_FALLBACK", policy)],
        );
        match settings.build_store().await {
            Err(e @ Error::Auth { .. }) => {
                let text = e.to_string();
                assert!(text.contains("refused the credentials"), "{policy}: {text}");
                assert!(!text.contains("wrong-pw"), "{policy}: {text}");
            }
            other => panic!("{policy}: expected Error::Auth, got {other:?}"),
        }
    }

    // Policy none: Error::Auth.
    let settings = settings(
        "wrong-pw-none",
        &[("REDIS_URL", &url), ("SESSION_FALLBACK", "none")],
    );
    match settings.build_store().await {
        Err(e @ Error::Auth { .. }) => {
            let text = e.to_string();
            assert!(text.contains("refused the credentials"), "{text}");
            assert!(!text.contains("wrong-pw"), "{text}");
        }
        other => panic!("expected Error::Auth, got {other:?}"),
    }

    // No password at all (NOAUTH) is refused credentials too.
    match settings_without_password(port).build_store().await {
        Err(Error::Auth { .. }) => {}
        other => panic!("NOAUTH: expected Error::Auth, got {other:?}"),
    }
}

/// The seed's deployments: the address in a configuration file, the port and the password
/// from the environment, each overriding (or filling) that part of the file's URL (issue 12:
/// the URL won wholly, and the environment's parts were silently ignored).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_in_a_file_with_the_port_and_password_from_the_environment_reaches_the_server() {
    let test = "a_url_in_a_file_with_the_port_and_password_from_the_environment_reaches_the_server";
    let Some(server) = private_server(
        test,
        ServerOptions {
            password: Some("p@ss word".into()),
            ..Default::default()
        },
    ) else {
        return;
    };
    let dir = std::env::temp_dir().join(unique("config-dir"));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    // Port 1: nothing listens there; the environment's REDIS_PORT must win.
    std::fs::write(
        dir.join("default.toml"),
        "[redis]\nurl = \"redis://127.0.0.1:1/2\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let port = server.port().to_string();
    let settings = settings(
        "file-url",
        &[
            ("CONFIG_DIR", dir.to_str().unwrap_or_default()),
            ("REDIS_PORT", port.as_str()),
            ("REDIS_PASSWORD", "p@ss word"),
            ("SESSION_FALLBACK", "none"),
        ],
    );
    assert_eq!(
        settings.redis.target.to_string(),
        format!("redis://:***@127.0.0.1:{port}/2")
    );
    let built = build(&settings).await;
    assert_eq!(built.backend(), "redis");
    round_trip(&settings, built).await;
    let _ = std::fs::remove_dir_all(&dir);
}

fn settings_without_password(port: u16) -> Settings {
    settings(
        "no-pw",
        &[
            ("REDIS_HOST", "127.0.0.1"),
            ("REDIS_PORT", &port.to_string()),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_parts_work_like_the_url() {
    let test = "the_parts_work_like_the_url";
    let Some(server) = private_server(
        test,
        ServerOptions {
            password: Some("p@ss word".into()),
            ..Default::default()
        },
    ) else {
        return;
    };
    let port = server.port().to_string();
    let parts = [
        ("REDIS_HOST", "127.0.0.1"),
        ("REDIS_PORT", port.as_str()),
        ("REDIS_DB", "2"),
        ("REDIS_PASSWORD", "p@ss word"),
    ];
    let settings = settings("parts", &parts);
    assert_eq!(
        settings.redis.target.to_string(),
        format!("redis://:***@127.0.0.1:{port}/2")
    );
    let built = build(&settings).await;
    assert_eq!(built.backend(), "redis");
    assert_eq!(built.fallback, None);
    round_trip(&settings, built).await;

    // The same server as a URL (the password percent-encoded) gives the same target.
    let url = format!("redis://:p%40ss%20word@127.0.0.1:{port}/2");
    let from_url = Settings::load_from(&Sources::new().env("REDIS_URL", url))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(from_url.redis.target, settings.redis.target);

    // A wrong password given as a part: refused credentials, no fallback.
    let wrong = [
        ("REDIS_HOST", "127.0.0.1"),
        ("REDIS_PORT", port.as_str()),
        ("REDIS_PASSWORD", "nope"),
    ];
    match self::settings("parts-wrong", &wrong).build_store().await {
        Err(e @ Error::Auth { .. }) => assert!(!e.to_string().contains("nope"), "{e}"),
        other => panic!("expected Error::Auth, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_options_connect_without_any_fallback() {
    let test = "redis_options_connect_without_any_fallback";
    let Some(url) = redis_harness::env::redis_url(test) else {
        return;
    };
    let settings = settings(
        "options",
        &[("REDIS_URL", &url), ("REDIS_COMMAND_TIMEOUT_MS", "700")],
    );
    let options = settings.redis_options().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(options.key_prefix(), settings.redis.key_prefix.as_str());
    assert_eq!(options.command_timeout().as_millis(), 700);
    assert_eq!(options.connect_timeout().as_millis(), 1500);
    let store = session_redis::RedisStore::connect(options)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(store.key_prefix(), settings.redis.key_prefix.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_through_the_settings_with_a_ca_and_a_client_certificate() {
    let test = "tls_through_the_settings_with_a_ca_and_a_client_certificate";
    let Some(tls) = redis_harness::env::tls(test) else {
        return;
    };
    let ca = tls.ca.display().to_string();
    let cert = tls.client_cert.display().to_string();
    let key = tls.client_key.display().to_string();

    // rediss:// and the CA.
    let settings = settings(
        "tls-ca",
        &[("REDIS_URL", &tls.url), ("REDIS_TLS_CA_FILE", &ca)],
    );
    let built = build(&settings).await;
    assert_eq!(built.backend(), "redis", "{:?}", built.fallback);
    round_trip(&settings, built).await;

    // rediss://, the CA and a client certificate, in pool mode.
    let settings = self::settings(
        "tls-mtls",
        &[
            ("REDIS_URL", &tls.url),
            ("REDIS_TLS_CA_FILE", &ca),
            ("REDIS_TLS_CERT_FILE", &cert),
            ("REDIS_TLS_KEY_FILE", &key),
            ("REDIS_MODE", "pool"),
            ("REDIS_POOL_SIZE", "2"),
        ],
    );
    let built = build(&settings).await;
    assert_eq!(built.backend(), "redis", "{:?}", built.fallback);
    round_trip(&settings, built).await;

    // The parts with REDIS_TLS=true reach the same server.
    let target = session_redis::RedisTarget::parse(&tls.url).unwrap_or_else(|e| panic!("{e}"));
    let port = target.port().to_string();
    let settings = self::settings(
        "tls-parts",
        &[
            ("REDIS_HOST", "127.0.0.1"),
            ("REDIS_PORT", &port),
            ("REDIS_TLS", "true"),
            ("REDIS_TLS_CA_FILE", &ca),
        ],
    );
    let built = build(&settings).await;
    assert_eq!(built.backend(), "redis", "{:?}", built.fallback);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_tls_file_is_a_config_error_the_fallback_does_not_hide() {
    let dir = std::env::temp_dir().join(format!("itest-bad-ca-{}", unique("ca")));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let ca = dir.join("not-a-ca.pem");
    std::fs::File::create(&ca)
        .and_then(|mut f| f.write_all(b"this is not PEM"))
        .unwrap_or_else(|e| panic!("{e}"));
    // Nothing needs to listen: the files are read before connecting. A free port, never 6379.
    let port = redis_harness::free_port()
        .unwrap_or_else(|e| panic!("{e}"))
        .to_string();
    let settings = settings(
        "bad-ca",
        &[
            ("REDIS_URL", &format!("rediss://127.0.0.1:{port}")),
            ("REDIS_TLS_CA_FILE", ca.to_str().unwrap_or_default()),
        ],
    );
    let result = settings.build_store().await;
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Err(Error::Config { key, .. }) => assert_eq!(key, "REDIS_TLS_CA_FILE"),
        other => panic!("expected Error::Config, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_fallback_wraps_a_reachable_redis() {
    let test = "the_runtime_fallback_wraps_a_reachable_redis";
    let Some(url) = redis_harness::env::redis_url(test) else {
        return;
    };
    let settings = settings(
        "runtime-up",
        &[("REDIS_URL", &url), ("SESSION_FALLBACK", "runtime")],
    );
    let built = build(&settings).await;
    assert_eq!(built.backend(), "redis");
    assert!(!built.fallback_active());
    assert!(built.reconcilable());
    let failover = built
        .failover
        .clone()
        .unwrap_or_else(|| panic!("runtime builds a failover store"));
    assert_eq!(failover.status().mode, session_core::FailoverMode::Primary);
    round_trip(&settings, built).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_fallback_connects_a_redis_that_was_down_at_start_up() {
    let test = "the_runtime_fallback_connects_a_redis_that_was_down_at_start_up";
    let Some(port) = stopped_server(test, None) else {
        return;
    };
    let url = format!("redis://127.0.0.1:{port}/0");
    let settings = settings(
        "runtime-down",
        &[
            ("REDIS_URL", &url),
            ("SESSION_FALLBACK", "runtime"),
            ("REDIS_CONNECT_TIMEOUT_MS", "300"),
        ],
    );
    let built = build(&settings).await;
    // Serving from memory, but reconcilable: not the start-up fallback.
    assert_eq!(built.backend(), "memory");
    assert!(built.fallback.is_none());
    assert!(built.fallback_active());
    assert!(built.reconcilable());
    let failover = built
        .failover
        .clone()
        .unwrap_or_else(|| panic!("runtime builds a failover store"));
    let agents = settings.manager_builder::<Agent>(built).build();
    let id = unique_id("born-in-memory");
    agents
        .get_or_create(&id, Agent::new)
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));
    agents
        .modify(&id, |a| a.history.push("while Redis was down".into()))
        .await
        .unwrap_or_else(|e| panic!("modify: {e}"));

    // Redis comes up on the configured port: the probe connects and writes back.
    let Some(server) = private_server(
        test,
        ServerOptions {
            port: Some(port),
            ..Default::default()
        },
    ) else {
        return;
    };
    let start = std::time::Instant::now();
    while failover.status().mode != session_core::FailoverMode::Primary {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "no recovery: {:?}",
            failover.status()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let prefix = settings.redis.key_prefix.as_str().to_owned();
    let key = format!("{prefix}{id}");
    // The record's version: 20 digits at offset 164 of its header.
    let version = server
        .command(&["GETRANGE", &key, "164", "183"])
        .unwrap_or_else(|e| panic!("GETRANGE: {e}"));
    assert_eq!(version.trim(), "00000000000000000001", "{key}: version");
    let agent = agents
        .get(&id)
        .await
        .unwrap_or_else(|e| panic!("get: {e}"))
        .unwrap_or_else(|| panic!("the session is gone"));
    assert_eq!(agent.history, ["while Redis was down"]);
    assert_eq!(agents.backend(), "redis");
}
