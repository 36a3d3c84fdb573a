//! Every invalid value fails at load time with the key as spelled, the value and what was
//! expected.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TempDir, config_error};
use session_config::{Settings, Sources};

/// The error for one environment variable set to `value`.
fn env_error(name: &str, value: &str) -> (String, String, String) {
    config_error(Settings::load_from(&Sources::new().env(name, value)))
}

/// Asserts the error names `name`, shows `value` quoted and expects something mentioning
/// `expected`.
fn assert_env_error(name: &str, value: &str, expected: &str) {
    let (key, shown, wanted) = env_error(name, value);
    assert_eq!(key, name);
    assert_eq!(shown, format!("{value:?}"), "{name}");
    assert!(
        wanted.contains(expected),
        "{name}: {wanted:?} lacks {expected:?}"
    );
    assert!(
        wanted.ends_with("(set in the environment)"),
        "{name}: {wanted:?}"
    );
}

#[test]
fn port_out_of_range() {
    assert_env_error("REDIS_PORT", "65536", "a port number from 1 to 65535");
    assert_env_error("REDIS_PORT", "0", "a port number from 1 to 65535");
    assert_env_error("REDIS_PORT", "-1", "a port number from 1 to 65535");
    assert_env_error("REDIS_PORT", "http", "a port number from 1 to 65535");
}

#[test]
fn ttl_zero_or_not_a_number() {
    assert_env_error("SESSION_TTL", "0", "a whole number of seconds");
    assert_env_error("SESSION_TTL", "1h", "a whole number of seconds");
    assert_env_error("SESSION_TTL", "3600.5", "a whole number of seconds");
    assert_env_error("SESSION_TTL", "999999999999", "a whole number of seconds");
}

#[test]
fn db_not_a_number() {
    assert_env_error("REDIS_DB", "one", "a database number");
    assert_env_error("REDIS_DB", "-1", "a database number");
}

#[test]
fn host_with_forbidden_characters() {
    assert_env_error("REDIS_HOST", "cache internal", "a host name");
    assert_env_error("REDIS_HOST", "redis://cache", "a host name");
}

#[test]
fn key_prefix_with_glob_characters_or_whitespace() {
    for bad in ["cql:*", "a?", "a[b]", "a\\b", "my app:", "\u{e9}:"] {
        let (key, _, expected) = env_error("REDIS_KEY_PREFIX", bad);
        assert_eq!(key, "REDIS_KEY_PREFIX");
        assert!(expected.contains("glob characters"), "{expected}");
    }
}

#[test]
fn booleans_other_than_the_usual_spellings() {
    assert_env_error("USE_REDIS", "maybe", "true or false");
    assert_env_error("REDIS_TLS", "2", "true or false");
}

#[test]
fn unknown_fallback_policy() {
    assert_env_error("SESSION_FALLBACK", "always", "startup");
}

#[test]
fn unknown_connection_mode_and_bad_pool_size() {
    assert_env_error("REDIS_MODE", "sharded", "multiplexed or pool");
    // `cluster` chooses the deployment, whose list is missing here.
    assert_env_error("REDIS_MODE", "cluster", "REDIS_CLUSTER_NODES");
    assert_env_error("REDIS_POOL_SIZE", "0", "from 1 to 1024");
    assert_env_error("REDIS_POOL_SIZE", "5000", "from 1 to 1024");
}

#[test]
fn zero_or_huge_timeouts() {
    assert_env_error(
        "REDIS_CONNECT_TIMEOUT_MS",
        "0",
        "milliseconds from 1 to 3600000",
    );
    assert_env_error(
        "REDIS_COMMAND_TIMEOUT_MS",
        "2s",
        "milliseconds from 1 to 3600000",
    );
}

#[test]
fn session_limits_out_of_range() {
    assert_env_error("SESSION_MAX_BYTES", "10", "bytes from 64 to 536870912");
    assert_env_error(
        "SESSION_MAX_MODIFY_ATTEMPTS",
        "0",
        "attempts from 1 to 10000",
    );
    assert_env_error(
        "SESSION_SLIDING_EXPIRY",
        "soon",
        "off, or a number of seconds",
    );
    assert_env_error("MEMORY_CAPACITY", "lots", "unbounded");
    assert_env_error(
        "SESSION_FALLBACK_MAX_SESSIONS",
        "0",
        "a number of sessions from 1",
    );
    assert_env_error(
        "SESSION_FALLBACK_MAX_BYTES",
        "10",
        "a number of bytes from 1024",
    );
}

#[test]
fn unknown_compression_or_bad_threshold() {
    for bad in ["gzip", "zstd", "on", "true", "lz4:2048", "1"] {
        assert_env_error("SESSION_COMPRESSION", bad, "off (");
        assert_env_error("SESSION_COMPRESSION", bad, "or lz4 (");
    }
    for bad in ["-1", "1k", "1024.5", "536870913", "lots"] {
        assert_env_error(
            "SESSION_COMPRESSION_MIN_BYTES",
            bad,
            "a number of bytes from 0 to 536870912",
        );
    }
    // A bad threshold fails even while compression is off: it would otherwise wait for the day
    // compression is turned on.
    let (key, _, _) = config_error(Settings::load_from(
        &Sources::new()
            .env("SESSION_COMPRESSION", "off")
            .env("SESSION_COMPRESSION_MIN_BYTES", "big"),
    ));
    assert_eq!(key, "SESSION_COMPRESSION_MIN_BYTES");
}

#[test]
fn bad_compression_in_a_file_names_the_toml_key_and_the_file() {
    let dir = TempDir::new();
    let file = dir.write("default.toml", "[session]\ncompression = \"brotli\"\n");
    let (key, value, expected) =
        config_error(Settings::load_from(&Sources::new().config_dir(dir.path())));
    assert_eq!(key, "session.compression");
    assert_eq!(value, "\"brotli\"");
    assert!(
        expected.contains("off (") && expected.contains("lz4"),
        "{expected}"
    );
    assert!(
        expected.ends_with(&format!("(set in {})", file.display())),
        "{expected}"
    );

    let file = dir.write("default.toml", "[session]\ncompression_min_bytes = -5\n");
    let (key, value, expected) =
        config_error(Settings::load_from(&Sources::new().config_dir(dir.path())));
    assert_eq!(key, "session.compression_min_bytes");
    assert_eq!(value, "\"-5\"");
    assert!(expected.contains("a number of bytes"), "{expected}");
    assert!(
        expected.ends_with(&format!("(set in {})", file.display())),
        "{expected}"
    );
}

#[test]
fn malformed_url() {
    for bad in [
        "localhost:6379",
        "redis://",
        "redis://host:99999",
        "redis://host:0",
        "redis://host/abc",
        "redis://host/1/2",
        "redis://host/0?timeout=1",
        "redis://host/0#x",
        "redis://ca che",
    ] {
        let (key, value, expected) = env_error("REDIS_URL", bad);
        assert_eq!(key, "REDIS_URL");
        assert_eq!(
            value.trim_matches('"').split(['?', '#']).next(),
            bad.split(['?', '#']).next()
        );
        assert!(
            expected.starts_with("a URL like redis://"),
            "{bad}: {expected}"
        );
    }
}

#[test]
fn unknown_url_scheme_is_named() {
    let (key, _, expected) = env_error("REDIS_URL", "http://cache:6379");
    assert_eq!(key, "REDIS_URL");
    assert!(expected.contains("redis:// or rediss://"), "{expected}");
    assert!(expected.contains("`http`"), "{expected}");
    let (_, _, expected) = env_error("REDIS_URL", "unix:///tmp/redis.sock");
    assert!(expected.contains("Unix sockets"), "{expected}");
}

#[test]
fn a_file_value_is_named_by_its_toml_key_and_file() {
    let dir = TempDir::new();
    let local = dir.write("local.toml", "[redis]\nport = 70000\n");
    let (key, value, expected) =
        config_error(Settings::load_from(&Sources::new().config_dir(dir.path())));
    assert_eq!(key, "redis.port");
    assert_eq!(value, "\"70000\"");
    assert!(
        expected.ends_with(&format!("(set in {})", local.display())),
        "{expected}"
    );
}

#[test]
fn a_dotenv_value_is_named_by_its_variable_and_the_file() {
    let dir = TempDir::new();
    let dotenv = dir.write(".env", "SESSION_TTL=0\n");
    let (key, _, expected) = config_error(Settings::load_from(&Sources::new().dotenv(&dotenv)));
    assert_eq!(key, "SESSION_TTL");
    assert!(
        expected.ends_with(&format!("(set in {})", dotenv.display())),
        "{expected}"
    );
}

#[test]
fn an_unknown_key_in_our_tables_is_a_typo() {
    let dir = TempDir::new();
    dir.write("default.toml", "[redis]\nprot = 6380\n");
    let (key, _, expected) =
        config_error(Settings::load_from(&Sources::new().config_dir(dir.path())));
    assert_eq!(key, "redis.prot");
    assert!(expected.contains("redis.port"), "{expected}");
}

#[test]
fn a_table_where_a_value_belongs() {
    let dir = TempDir::new();
    dir.write("default.toml", "[session]\nttl_secs = [1, 2]\n");
    let (key, _, expected) =
        config_error(Settings::load_from(&Sources::new().config_dir(dir.path())));
    assert_eq!(key, "session.ttl_secs");
    assert!(expected.contains("a single value"), "{expected}");
}

#[test]
fn invalid_toml_is_reported_without_the_offending_line() {
    let dir = TempDir::new();
    let file = dir.write(
        "default.toml",
        "[redis]\npassword = \"s3cret-unterminated\n",
    );
    let err = Settings::load_from(&Sources::new().config_dir(dir.path())).unwrap_err();
    let text = err.to_string();
    assert!(!text.contains("s3cret"), "{text}");
    let (key, _, expected) = config_error(Err(err));
    assert_eq!(key, file.display().to_string());
    assert!(expected.contains("line 2"), "{expected}");
}

#[test]
fn a_client_certificate_needs_its_key() {
    let dir = TempDir::new();
    let cert = dir.write("client.pem", "");
    let (key, value, expected) = config_error(Settings::load_from(
        &Sources::new()
            .env("REDIS_TLS", "true")
            .env("REDIS_TLS_CERT_FILE", cert.to_str().unwrap()),
    ));
    assert_eq!(
        (key.as_str(), value.as_str()),
        ("REDIS_TLS_KEY_FILE", "(not set)")
    );
    assert!(expected.contains("REDIS_TLS_CERT_FILE"), "{expected}");

    let dir2 = TempDir::new();
    let key_file = dir2.write("client.key", "");
    dir2.write(
        "default.toml",
        &format!(
            "[redis.tls]\nenabled = true\nkey_file = {:?}\n",
            key_file.to_str().unwrap()
        ),
    );
    let (key, _, _) = config_error(Settings::load_from(&Sources::new().config_dir(dir2.path())));
    assert_eq!(key, "redis.tls.cert_file");
}

#[test]
fn tls_files_with_a_plain_target_are_refused() {
    let dir = TempDir::new();
    let ca = dir.write("ca.pem", "");
    let (key, _, expected) = config_error(Settings::load_from(
        &Sources::new()
            .env("REDIS_URL", "redis://cache:6379/0")
            .env("REDIS_TLS_CA_FILE", ca.to_str().unwrap()),
    ));
    assert_eq!(key, "REDIS_TLS_CA_FILE");
    assert!(expected.contains("rediss://"), "{expected}");
    // With rediss:// it is fine.
    let settings = Settings::load_from(
        &Sources::new()
            .env("REDIS_URL", "rediss://cache:6379/0")
            .env("REDIS_TLS_CA_FILE", ca.to_str().unwrap()),
    )
    .unwrap();
    assert_eq!(settings.redis.tls.ca_file.as_deref(), Some(ca.as_path()));
}

#[test]
fn tls_files_must_exist() {
    assert_env_error(
        "REDIS_TLS_CA_FILE",
        "/nonexistent/ca.pem",
        "the path of an existing file",
    );
}

#[test]
fn errors_read_as_sentences() {
    let err = Settings::load_from(&Sources::new().env("REDIS_PORT", "99999")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid configuration REDIS_PORT = \"99999\": expected a port number from 1 to 65535 \
         (set in the environment)"
    );
    assert_eq!(err.kind(), "config");
}
