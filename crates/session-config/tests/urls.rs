//! `REDIS_URL` or the parts: one validated target, the precedence, and the warning. The URL
//! parser itself (session-redis' `RedisTarget`) has its own property tests in session-redis.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::TempDir;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use proptest::prelude::*;
use session_config::{RedisTarget, Settings, Sources};

fn target(sources: &Sources) -> RedisTarget {
    Settings::load_from(sources).unwrap().redis.target
}

#[test]
fn a_url_gives_tls_credentials_and_database() {
    let t =
        target(&Sources::new().env("REDIS_URL", "rediss://bob:p%40ss%3Aw%2Frd@cache.io:6380/5"));
    assert!(t.tls());
    assert_eq!(t.host(), "cache.io");
    assert_eq!(t.port(), 6380);
    assert_eq!(t.db(), 5);
    assert_eq!(t.username(), Some("bob"));
    assert_eq!(t.password().unwrap().expose(), "p@ss:w/rd");
    assert_eq!(t.to_string(), "rediss://bob:***@cache.io:6380/5");
}

#[test]
fn a_url_may_leave_out_port_database_and_credentials() {
    let t = target(&Sources::new().env("REDIS_URL", "redis://cache"));
    assert_eq!(t.to_string(), "redis://cache:6379/0");
    let t = target(&Sources::new().env("REDIS_URL", "redis://cache/"));
    assert_eq!(t.db(), 0);
    let t = target(&Sources::new().env("REDIS_URL", "redis://:secret@cache"));
    assert_eq!(
        (t.username(), t.password().map(|p| p.expose())),
        (None, Some("secret"))
    );
    let t = target(&Sources::new().env("REDIS_URL", "redis://[::1]:7000/2"));
    assert_eq!((t.host(), t.port(), t.db()), ("::1", 7000, 2));
    assert_eq!(t.to_string(), "redis://[::1]:7000/2");
}

#[test]
fn the_parts_give_the_same_kind_of_target() {
    let t = target(&Sources::new().envs([
        ("REDIS_HOST", "cache"),
        ("REDIS_PORT", "6390"),
        ("REDIS_DB", "7"),
        ("REDIS_USERNAME", "u"),
        ("REDIS_PASSWORD", "p w"),
        ("REDIS_TLS", "true"),
    ]));
    assert_eq!(t.connection_url(), "rediss://u:p%20w@cache:6390/7");
    assert_eq!(
        t,
        RedisTarget::parse("rediss://u:p%20w@cache:6390/7").unwrap()
    );
}

#[test]
fn the_url_wins_over_the_parts_and_a_warning_names_them() {
    let settings = Settings::load_from(&Sources::new().envs([
        ("REDIS_URL", "redis://cache:6379/1"),
        ("REDIS_HOST", "other"),
        ("REDIS_PASSWORD", "hunter2"),
    ]))
    .unwrap();
    assert_eq!(settings.redis.target.to_string(), "redis://cache:6379/1");
    assert_eq!(
        settings.redis.target.password(),
        None,
        "the URL wins wholly"
    );
    let [warning] = settings.warnings() else {
        panic!("one warning expected: {:?}", settings.warnings());
    };
    assert_eq!(warning.keys(), ["REDIS_HOST", "REDIS_PASSWORD"]);
    assert!(warning.message().contains("REDIS_URL"), "{warning}");
    assert!(warning.message().contains("REDIS_HOST"), "{warning}");
    assert!(!warning.message().contains("hunter2"), "{warning}");
    assert!(!warning.message().contains("other"), "{warning}");
}

#[test]
fn parts_in_an_earlier_layer_are_overridden_without_a_warning() {
    let dir = TempDir::new();
    dir.write(
        "default.toml",
        "[redis]\nhost = \"from-file\"\nport = 1234\n",
    );
    let settings = Settings::load_from(
        &Sources::new()
            .config_dir(dir.path())
            .env("REDIS_URL", "redis://cache:6379/0"),
    )
    .unwrap();
    assert_eq!(settings.redis.target.host(), "cache");
    assert!(settings.warnings().is_empty(), "{:?}", settings.warnings());
}

#[test]
fn parts_in_a_later_layer_than_the_url_are_ignored_with_a_warning() {
    let dir = TempDir::new();
    dir.write(
        "production.toml",
        "[redis]\nurl = \"redis://cache:6379/0\"\n",
    );
    let settings = Settings::load_from(
        &Sources::new()
            .config_dir(dir.path())
            .env("APP_ENV", "production")
            .env("REDIS_PORT", "7000"),
    )
    .unwrap();
    assert_eq!(settings.redis.target.port(), 6379);
    assert_eq!(settings.warnings().len(), 1);
    assert_eq!(settings.warnings()[0].keys(), ["REDIS_PORT"]);
    assert!(settings.warnings()[0].message().contains("redis.url"));
}

#[test]
fn a_url_uncommented_in_the_shipped_default_toml_gives_no_warning() {
    let dir = TempDir::new();
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/default.toml"),
    )
    .unwrap();
    let text = shipped.replace("# url = ", "url = ");
    assert_ne!(text, shipped);
    dir.write("default.toml", &text);
    let settings = Settings::load_from(&Sources::new().config_dir(dir.path())).unwrap();
    assert!(settings.warnings().is_empty(), "{:?}", settings.warnings());
}

#[test]
fn ignored_parts_are_not_validated() {
    let settings = Settings::load_from(
        &Sources::new()
            .env("REDIS_URL", "redis://cache")
            .env("REDIS_PORT", "not-a-port"),
    )
    .unwrap();
    assert_eq!(settings.redis.target.port(), 6379);
    assert_eq!(settings.warnings().len(), 1);
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,10}(\\.[a-z][a-z0-9-]{0,10}){0,3}",
        any::<[u8; 4]>().prop_map(|b| format!("{}.{}.{}.{}", b[0], b[1], b[2], b[3])),
        any::<std::net::Ipv6Addr>().prop_map(|ip| ip.to_string()),
    ]
}

fn credential() -> impl Strategy<Value = Option<String>> {
    prop::option::of("[ -~\u{e9}\u{4e2d}]{1,16}")
}

/// The URL form of a target, every credential percent-encoded.
fn url(
    tls: bool,
    host: &str,
    port: Option<u16>,
    db: Option<u32>,
    user: Option<&str>,
    password: Option<&str>,
) -> String {
    let mut out = if tls { "rediss://" } else { "redis://" }.to_owned();
    if let Some(user) = user {
        out.extend(utf8_percent_encode(user, NON_ALPHANUMERIC));
    }
    if let Some(password) = password {
        out.push(':');
        out.extend(utf8_percent_encode(password, NON_ALPHANUMERIC));
    }
    if user.is_some() || password.is_some() {
        out.push('@');
    }
    if host.contains(':') {
        out.push_str(&format!("[{host}]"));
    } else {
        out.push_str(host);
    }
    if let Some(port) = port {
        out.push_str(&format!(":{port}"));
    }
    if let Some(db) = db {
        out.push_str(&format!("/{db}"));
    }
    out
}

proptest! {
    #[test]
    fn parts_give_the_same_target_as_the_equivalent_url(
        tls in any::<bool>(),
        host in host(),
        port in 1u16..,
        db in any::<u32>(),
        user in credential(),
        password in credential(),
    ) {
        let mut sources = Sources::new()
            .env("REDIS_HOST", host.clone())
            .env("REDIS_PORT", port.to_string())
            .env("REDIS_DB", db.to_string())
            .env("REDIS_TLS", tls.to_string());
        // Surrounding whitespace is trimmed from variables; keep the credentials clear of it.
        let user = user.map(|u| u.trim().to_owned()).filter(|u| !u.is_empty());
        let password = password.map(|p| p.trim().to_owned()).filter(|p| !p.is_empty());
        if let Some(user) = &user {
            sources = sources.env("REDIS_USERNAME", user.clone());
        }
        if let Some(password) = &password {
            sources = sources.env("REDIS_PASSWORD", password.clone());
        }
        let from_parts = target(&sources);
        let text = url(tls, &host, Some(port), Some(db), user.as_deref(), password.as_deref());
        let from_url = target(&Sources::new().env("REDIS_URL", text));
        prop_assert_eq!(from_parts, from_url);
    }

}
