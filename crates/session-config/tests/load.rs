//! Loading: the layers and their precedence, CONFIG_DIR, APP_ENV, `.env`, the shipped files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{num::NonZeroUsize, path::PathBuf, time::Duration};

use common::{TempDir, config_error};
use session_config::{ConnectionMode, Settings, Sources};
use session_core::{Codec, Compression, FallbackPolicy, Ttl};

fn shipped_config_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config")
}

#[test]
fn no_sources_give_the_built_in_defaults() {
    let settings = Settings::load_from(&Sources::new()).unwrap();
    assert_eq!(settings, Settings::default());
    assert_eq!(settings.app_env, "development");
    assert!(!settings.use_redis);
    assert_eq!(settings.fallback, FallbackPolicy::Startup);
    assert_eq!(
        settings.redis.target.to_string(),
        "redis://localhost:6379/0"
    );
    assert_eq!(settings.redis.key_prefix.as_str(), "cql:session:");
    assert_eq!(settings.redis.mode, ConnectionMode::Multiplexed);
    assert_eq!(settings.redis.connect_timeout, Duration::from_secs(2));
    assert_eq!(settings.redis.command_timeout, Duration::from_secs(1));
    assert!(settings.redis.tls.is_empty());
    assert_eq!(settings.session.ttl, Ttl::DEFAULT);
    assert_eq!(settings.session.max_size, session_core::DEFAULT_MAX_SIZE);
    assert_eq!(settings.session.sliding_expiry, None);
    assert_eq!(
        settings.session.max_modify_attempts,
        session_core::DEFAULT_MAX_ATTEMPTS
    );
    assert_eq!(settings.session.compression, Compression::Off);
    assert_eq!(settings.codec(), Codec::default());
    assert_eq!(settings.memory.capacity, None);
    assert!(settings.warnings().is_empty());
}

#[test]
fn shipped_default_toml_says_what_the_built_in_defaults_say() {
    let dir = TempDir::new();
    let text = std::fs::read_to_string(shipped_config_dir().join("default.toml")).unwrap();
    dir.write("default.toml", &text);
    let settings = Settings::load_from(&Sources::new().config_dir(dir.path())).unwrap();
    assert_eq!(settings, Settings::default());
}

#[test]
fn the_defaults_commented_out_in_default_toml_are_the_built_in_ones() {
    let dir = TempDir::new();
    let text = std::fs::read_to_string(shipped_config_dir().join("default.toml")).unwrap();
    let mut uncommented = 0;
    let text: String = text
        .lines()
        .map(|line| {
            for key in ["host", "port", "db", "enabled"] {
                if let Some(rest) = line.strip_prefix(&format!("# {key} = ")) {
                    uncommented += 1;
                    return format!("{key} = {rest}\n");
                }
            }
            format!("{line}\n")
        })
        .collect();
    assert_eq!(uncommented, 4);
    dir.write("default.toml", &text);
    let settings = Settings::load_from(&Sources::new().config_dir(dir.path())).unwrap();
    assert_eq!(settings, Settings::default());
}

#[test]
fn shipped_environment_files_load() {
    let load = |app_env: &str| {
        Settings::load_from(
            &Sources::new()
                .config_dir(shipped_config_dir())
                .env("APP_ENV", app_env),
        )
        .unwrap()
    };
    let development = load("development");
    assert!(!development.use_redis);
    assert_eq!(development.memory.capacity, NonZeroUsize::new(10_000));

    let test = load("test");
    assert_eq!(test.fallback, FallbackPolicy::None);
    assert_eq!(test.redis.key_prefix.as_str(), "test:session:");

    let production = load("production");
    assert!(production.use_redis);
    assert_eq!(production.fallback, FallbackPolicy::Runtime);
    assert_eq!(production.app_env, "production");

    // Without APP_ENV, development.toml is read.
    let implicit = Settings::load_from(&Sources::new().config_dir(shipped_config_dir())).unwrap();
    assert_eq!(implicit, development);
}

#[test]
fn each_layer_overrides_the_one_before() {
    let dir = TempDir::new();
    let dotenv = dir.path().join(".env");
    let sources = || {
        Sources::new()
            .config_dir(dir.path())
            .dotenv(&dotenv)
            .env("APP_ENV", "staging")
    };
    let ttl = |sources: Sources| {
        Settings::load_from(&sources)
            .unwrap()
            .session
            .ttl
            .as_duration()
            .as_secs()
    };

    dir.write("staging.toml", "");
    assert_eq!(ttl(sources()), 3600, "built-in default");
    dir.write("default.toml", "[session]\nttl_secs = 10\n");
    assert_eq!(ttl(sources()), 10, "default.toml");
    dir.write("staging.toml", "[session]\nttl_secs = 20\n");
    assert_eq!(ttl(sources()), 20, "APP_ENV file over default.toml");
    dir.write("local.toml", "[session]\nttl_secs = 30\n");
    assert_eq!(ttl(sources()), 30, "local.toml over the APP_ENV file");
    dir.write(".env", "SESSION_TTL=40\n");
    assert_eq!(ttl(sources()), 40, ".env over local.toml");
    assert_eq!(
        ttl(sources().env("SESSION_TTL", "50")),
        50,
        "environment over .env"
    );
}

#[test]
fn layers_merge_key_by_key() {
    let dir = TempDir::new();
    dir.write(
        "default.toml",
        "use_redis = true\n[redis]\nhost = \"cache\"\nport = 7000\n",
    );
    dir.write("development.toml", "[redis]\nport = 7001\n");
    let settings =
        Settings::load_from(&Sources::new().config_dir(dir.path()).env("REDIS_DB", "4")).unwrap();
    assert!(settings.use_redis);
    assert_eq!(settings.redis.target.to_string(), "redis://cache:7001/4");
}

#[test]
fn config_dir_points_elsewhere() {
    let dir = TempDir::new();
    dir.write("default.toml", "[session]\nttl_secs = 77\n");
    let settings = Settings::load_from(
        &Sources::new()
            .config_dir("/nonexistent/ignored")
            .env("CONFIG_DIR", dir.path().to_str().unwrap()),
    )
    .unwrap();
    assert_eq!(settings.session.ttl, Ttl::from_secs(77).unwrap());
}

#[test]
fn config_dir_can_come_from_dotenv() {
    let dir = TempDir::new();
    dir.write("conf/default.toml", "[session]\nttl_secs = 78\n");
    let dotenv = dir.write(
        ".env",
        &format!("CONFIG_DIR={}\n", dir.path().join("conf").display()),
    );
    let settings = Settings::load_from(&Sources::new().dotenv(dotenv)).unwrap();
    assert_eq!(settings.session.ttl, Ttl::from_secs(78).unwrap());
}

#[test]
fn a_missing_config_dir_named_by_config_dir_is_an_error() {
    let (key, value, expected) = config_error(Settings::load_from(
        &Sources::new().env("CONFIG_DIR", "/nonexistent/session-config"),
    ));
    assert_eq!(key, "CONFIG_DIR");
    assert_eq!(value, "\"/nonexistent/session-config\"");
    assert!(expected.contains("an existing directory"), "{expected}");
}

#[test]
fn a_missing_default_config_dir_falls_back_to_built_in_defaults() {
    let settings = Settings::load_from(
        &Sources::new()
            .config_dir("/nonexistent/config")
            .env("SESSION_TTL", "5"),
    )
    .unwrap();
    assert_eq!(settings.session.ttl, Ttl::from_secs(5).unwrap());
    assert_eq!(settings.redis, Settings::default().redis);
}

#[test]
fn an_app_env_without_its_file_names_the_files_that_exist() {
    let dir = TempDir::new();
    dir.write("default.toml", "");
    dir.write("production.toml", "");
    dir.write("test.toml", "");
    let err = Settings::load_from(
        &Sources::new()
            .config_dir(dir.path())
            .env("APP_ENV", "prodcution"),
    )
    .unwrap_err();
    let text = err.to_string();
    let (key, value, expected) = config_error(Err(err));
    assert_eq!(key, "APP_ENV");
    assert_eq!(value, "\"prodcution\"");
    assert!(expected.contains("prodcution.toml"), "{expected}");
    assert!(expected.contains("production, test"), "{expected}");
    assert!(
        text.starts_with("invalid configuration APP_ENV = \"prodcution\""),
        "{text}"
    );
}

#[test]
fn an_app_env_without_any_config_dir_is_an_error() {
    let (key, _, expected) = config_error(Settings::load_from(
        &Sources::new()
            .config_dir("/nonexistent/config")
            .env("APP_ENV", "production"),
    ));
    assert_eq!(key, "APP_ENV");
    assert!(expected.contains("CONFIG_DIR"), "{expected}");
}

#[test]
fn an_app_env_that_is_not_a_plain_name_is_refused() {
    let dir = TempDir::new();
    let (key, value, _) = config_error(Settings::load_from(
        &Sources::new()
            .config_dir(dir.path())
            .env("APP_ENV", "../secrets"),
    ));
    assert_eq!(
        (key.as_str(), value.as_str()),
        ("APP_ENV", "\"../secrets\"")
    );
}

#[test]
fn app_env_can_come_from_dotenv() {
    let dir = TempDir::new();
    dir.write("staging.toml", "use_redis = true\n");
    let dotenv = dir.write(".env", "APP_ENV=staging\n");
    let settings =
        Settings::load_from(&Sources::new().config_dir(dir.path()).dotenv(dotenv)).unwrap();
    assert_eq!(settings.app_env, "staging");
    assert!(settings.use_redis);
}

#[test]
fn dotenv_is_parsed_with_quotes_comments_and_export() {
    let dir = TempDir::new();
    let dotenv = dir.write(
        ".env",
        "# a comment\n\
         export USE_REDIS=yes\n\
         REDIS_HOST='cache.internal'\n\
         REDIS_PASSWORD=\"p#ss word\"\n\
         SESSION_TTL=120 # two minutes\n\
         UNRELATED=whatever\n",
    );
    let settings = Settings::load_from(&Sources::new().dotenv(dotenv)).unwrap();
    assert!(settings.use_redis);
    let target = &settings.redis.target;
    assert_eq!(target.host(), "cache.internal");
    assert_eq!(target.password().unwrap().expose(), "p#ss word");
    assert_eq!(settings.session.ttl, Ttl::from_secs(120).unwrap());
}

#[test]
fn a_missing_dotenv_is_not_an_error() {
    let settings = Settings::load_from(&Sources::new().dotenv("/nonexistent/.env")).unwrap();
    assert_eq!(settings, Settings::default());
}

#[test]
fn a_malformed_dotenv_line_is_reported_without_its_value() {
    let dir = TempDir::new();
    let dotenv = dir.write(".env", "REDIS_PASSWORD=\"unterminated-s3cret\n");
    let err = Settings::load_from(&Sources::new().dotenv(&dotenv)).unwrap_err();
    let text = err.to_string();
    assert!(!text.contains("s3cret"), "{text}");
    let (key, value, _) = config_error(Err(err));
    assert!(key.ends_with(".env"), "{key}");
    assert!(value.contains("REDIS_PASSWORD"), "{value}");
}

#[test]
fn empty_environment_variables_count_as_unset() {
    let dir = TempDir::new();
    dir.write(
        "default.toml",
        "[redis]\nhost = \"cache\"\npassword = \"pw\"\n",
    );
    let settings = Settings::load_from(
        &Sources::new()
            .config_dir(dir.path())
            .env("REDIS_HOST", "")
            .env("REDIS_PASSWORD", "  ")
            .env("REDIS_URL", ""),
    )
    .unwrap();
    assert_eq!(settings.redis.target.host(), "cache");
    assert!(settings.redis.target.password().is_some());
}

#[test]
fn an_empty_string_in_a_file_clears_an_optional_setting() {
    let dir = TempDir::new();
    dir.write("default.toml", "[redis]\nurl = \"redis://far:1/0\"\n");
    dir.write("local.toml", "[redis]\nurl = \"\"\nhost = \"near\"\n");
    let settings = Settings::load_from(&Sources::new().config_dir(dir.path())).unwrap();
    assert_eq!(settings.redis.target.to_string(), "redis://near:6379/0");
}

#[test]
fn other_top_level_tables_belong_to_the_application() {
    let dir = TempDir::new();
    dir.write(
        "default.toml",
        "[server]\nport = 8080\n[llm]\nmodel = \"x\"\n",
    );
    assert!(Settings::load_from(&Sources::new().config_dir(dir.path())).is_ok());
}

#[test]
fn booleans_accept_the_usual_spellings() {
    for (text, expected) in [
        ("true", true),
        ("TRUE", true),
        ("1", true),
        ("yes", true),
        ("On", true),
        ("false", false),
        ("0", false),
        ("No", false),
        ("off", false),
    ] {
        let settings = Settings::load_from(&Sources::new().env("USE_REDIS", text)).unwrap();
        assert_eq!(settings.use_redis, expected, "{text}");
    }
}

#[test]
fn every_setting_is_read_from_the_environment() {
    let dir = TempDir::new();
    let ca = dir.write("ca.pem", "");
    let cert = dir.write("client.pem", "");
    let key = dir.write("client.key", "");
    let settings = Settings::load_from(&Sources::new().envs([
        ("USE_REDIS", "true"),
        ("SESSION_FALLBACK", "none"),
        ("REDIS_HOST", "10.0.0.7"),
        ("REDIS_PORT", "6380"),
        ("REDIS_DB", "3"),
        ("REDIS_USERNAME", "app"),
        ("REDIS_PASSWORD", "pw"),
        ("REDIS_TLS", "on"),
        ("REDIS_TLS_CA_FILE", ca.to_str().unwrap()),
        ("REDIS_TLS_CERT_FILE", cert.to_str().unwrap()),
        ("REDIS_TLS_KEY_FILE", key.to_str().unwrap()),
        ("REDIS_KEY_PREFIX", "app:s:"),
        ("REDIS_MODE", "pool"),
        ("REDIS_POOL_SIZE", "16"),
        ("REDIS_CONNECT_TIMEOUT_MS", "250"),
        ("REDIS_COMMAND_TIMEOUT_MS", "125"),
        ("SESSION_TTL", "90"),
        ("SESSION_MAX_BYTES", "4096"),
        ("SESSION_SLIDING_EXPIRY", "30"),
        ("SESSION_MAX_MODIFY_ATTEMPTS", "5"),
        ("SESSION_COMPRESSION", "lz4"),
        ("SESSION_COMPRESSION_MIN_BYTES", "2048"),
        ("MEMORY_CAPACITY", "100"),
    ]))
    .unwrap();
    assert!(settings.use_redis);
    assert_eq!(settings.fallback, FallbackPolicy::None);
    let redis = &settings.redis;
    assert_eq!(redis.target.to_string(), "rediss://app:***@10.0.0.7:6380/3");
    assert_eq!(redis.key_prefix.as_str(), "app:s:");
    assert_eq!(
        redis.mode,
        ConnectionMode::Pool {
            max_size: NonZeroUsize::new(16).unwrap()
        }
    );
    assert_eq!(redis.connect_timeout, Duration::from_millis(250));
    assert_eq!(redis.command_timeout, Duration::from_millis(125));
    assert_eq!(redis.tls.ca_file.as_deref(), Some(ca.as_path()));
    let client = redis.tls.client.as_ref().unwrap();
    assert_eq!((&client.cert_file, &client.key_file), (&cert, &key));
    assert_eq!(settings.session.ttl, Ttl::from_secs(90).unwrap());
    assert_eq!(settings.session.max_size, 4096);
    assert_eq!(
        settings.session.sliding_expiry,
        Some(Duration::from_secs(30))
    );
    assert_eq!(settings.session.max_modify_attempts, 5);
    assert_eq!(
        settings.session.compression,
        Compression::Lz4 { min_bytes: 2048 }
    );
    assert_eq!(
        settings.codec(),
        Codec::new(4096, Compression::Lz4 { min_bytes: 2048 })
    );
    assert_eq!(settings.memory.capacity, NonZeroUsize::new(100));
}

#[test]
fn every_setting_is_read_from_a_file() {
    let dir = TempDir::new();
    dir.write(
        "default.toml",
        r#"
use_redis = true
fallback = "none"
[redis]
url = "rediss://app:pw@cache:6390/2"
key_prefix = "f:"
mode = "pool"
pool_size = 3
connect_timeout_ms = 10
command_timeout_ms = 20
[redis.tls]
enabled = true
[session]
ttl_secs = 33
max_bytes = 100
sliding_expiry_secs = 7
max_modify_attempts = 2
compression = "lz4"
compression_min_bytes = 0
[memory]
capacity = 9
"#,
    );
    let settings = Settings::load_from(&Sources::new().config_dir(dir.path())).unwrap();
    assert!(settings.use_redis);
    assert_eq!(settings.fallback, FallbackPolicy::None);
    assert_eq!(
        settings.redis.target.connection_url(),
        "rediss://app:pw@cache:6390/2"
    );
    assert_eq!(settings.redis.key_prefix.as_str(), "f:");
    assert_eq!(
        settings.redis.mode,
        ConnectionMode::Pool {
            max_size: NonZeroUsize::new(3).unwrap()
        }
    );
    assert_eq!(settings.redis.connect_timeout, Duration::from_millis(10));
    assert_eq!(settings.redis.command_timeout, Duration::from_millis(20));
    assert_eq!(settings.session.ttl, Ttl::from_secs(33).unwrap());
    assert_eq!(settings.session.max_size, 100);
    assert_eq!(
        settings.session.sliding_expiry,
        Some(Duration::from_secs(7))
    );
    assert_eq!(settings.session.max_modify_attempts, 2);
    assert_eq!(
        settings.session.compression,
        Compression::Lz4 { min_bytes: 0 }
    );
    assert_eq!(settings.memory.capacity, NonZeroUsize::new(9));
    // `tls.enabled` sits in the same file as the URL and agrees with its `rediss://`.
    assert!(settings.warnings().is_empty(), "{:?}", settings.warnings());
}

#[test]
fn display_lists_every_setting() {
    let text = Settings::default().to_string();
    for key in [
        "app_env = development",
        "use_redis = false",
        "fallback = startup",
        "redis.target = redis://localhost:6379/0",
        "redis.key_prefix = cql:session:",
        "redis.mode = multiplexed",
        "session.ttl = 3600s",
        "session.sliding_expiry = off",
        "session.compression = off",
        "memory.capacity = unbounded",
    ] {
        assert!(text.contains(key), "{key} missing from\n{text}");
    }
    assert!(!text.contains("compression_min_bytes"), "{text}");
    let lz4 = Settings::load_from(&Sources::new().env("SESSION_COMPRESSION", "lz4")).unwrap();
    let text = lz4.to_string();
    for key in [
        "session.compression = lz4\n",
        "session.compression_min_bytes = 1024\n",
    ] {
        assert!(text.contains(key), "{key} missing from\n{text}");
    }
}

#[test]
fn compression_and_its_threshold() {
    let load = |vars: &[(&str, &str)]| {
        Settings::load_from(&Sources::new().envs(vars.iter().copied()))
            .unwrap()
            .session
            .compression
    };
    assert_eq!(load(&[]), Compression::Off);
    assert_eq!(load(&[("SESSION_COMPRESSION", "lz4")]), Compression::LZ4);
    assert_eq!(load(&[("SESSION_COMPRESSION", " LZ4 ")]), Compression::LZ4);
    for off in ["off", "OFF", "none", "false", "no"] {
        assert_eq!(
            load(&[("SESSION_COMPRESSION", off)]),
            Compression::Off,
            "{off}"
        );
    }
    // The threshold applies to lz4 only.
    assert_eq!(
        load(&[("SESSION_COMPRESSION_MIN_BYTES", "64")]),
        Compression::Off
    );
    assert_eq!(
        load(&[
            ("SESSION_COMPRESSION", "off"),
            ("SESSION_COMPRESSION_MIN_BYTES", "64")
        ]),
        Compression::Off
    );
    assert_eq!(
        load(&[
            ("SESSION_COMPRESSION", "lz4"),
            ("SESSION_COMPRESSION_MIN_BYTES", "536870912")
        ]),
        Compression::Lz4 {
            min_bytes: 512 * 1024 * 1024
        }
    );

    // A file turns it on, the environment sets the threshold (and could turn it off again).
    let dir = TempDir::new();
    dir.write(
        "default.toml",
        "[session]\ncompression = \"lz4\"\ncompression_min_bytes = 4096\n",
    );
    let from = |vars: &[(&str, &str)]| {
        Settings::load_from(
            &Sources::new()
                .config_dir(dir.path())
                .envs(vars.iter().copied()),
        )
        .unwrap()
        .session
        .compression
    };
    assert_eq!(from(&[]), Compression::Lz4 { min_bytes: 4096 });
    assert_eq!(
        from(&[("SESSION_COMPRESSION_MIN_BYTES", "512")]),
        Compression::Lz4 { min_bytes: 512 }
    );
    assert_eq!(from(&[("SESSION_COMPRESSION", "off")]), Compression::Off);
}
