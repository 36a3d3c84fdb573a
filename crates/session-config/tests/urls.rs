//! `REDIS_URL` or the parts: one validated target. Which one wins, part by part and layer by
//! layer, is `precedence.rs`; the URL parser itself (session-redis' `RedisTarget`) has its own
//! property tests in session-redis.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::TempDir;
use proptest::prelude::*;
use session_config::{RedisTarget, Settings, Sources};

fn target(sources: &Sources) -> RedisTarget {
    Settings::load_from(sources).unwrap().redis.target
}

#[test]
fn the_url_comes_from_redis_url_or_from_redis_url_in_a_file() {
    let url = "rediss://bob:p%40ss%3Aw%2Frd@cache.io:6380/5";
    let from_env = target(&Sources::new().env("REDIS_URL", url));
    assert!(from_env.tls());
    assert_eq!(from_env.host(), "cache.io");
    assert_eq!(from_env.port(), 6380);
    assert_eq!(from_env.db(), 5);
    assert_eq!(from_env.username(), Some("bob"));
    assert_eq!(from_env.password().unwrap().expose(), "p@ss:w/rd");
    assert_eq!(from_env.to_string(), "rediss://bob:***@cache.io:6380/5");
    assert_eq!(from_env, RedisTarget::parse(url).unwrap());

    let dir = TempDir::new();
    dir.write("default.toml", &format!("[redis]\nurl = \"{url}\"\n"));
    let from_file = target(&Sources::new().config_dir(dir.path()));
    assert_eq!(from_file, from_env);
    // Surrounding whitespace is trimmed from a variable.
    assert_eq!(
        target(&Sources::new().env("REDIS_URL", format!("  {url}\n"))),
        from_env
    );
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
fn parts_in_an_earlier_layer_yield_to_the_url_without_a_warning() {
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

proptest! {
    /// Each part lands in its field of the target; the URL form of that target (the parser's
    /// own properties are tested in session-redis) gives the same target through `REDIS_URL`.
    #[test]
    fn parts_give_the_same_target_as_the_equivalent_url(
        tls in any::<bool>(),
        host in prop::sample::select(vec!["cache", "cache-1.internal", "10.0.0.5", "::1"]),
        port in 1u16..,
        db in any::<u32>(),
        user in prop::option::of("[ -~\u{e9}\u{4e2d}]{1,16}"),
        password in prop::option::of("[ -~\u{e9}\u{4e2d}]{1,16}"),
    ) {
        let mut sources = Sources::new()
            .env("REDIS_HOST", host)
            .env("REDIS_PORT", port.to_string())
            .env("REDIS_DB", db.to_string())
            .env("REDIS_TLS", tls.to_string());
        let mut expected = RedisTarget::new(host, port).unwrap().with_db(db).with_tls(tls);
        // Surrounding whitespace is trimmed from variables; keep the credentials clear of it.
        if let Some(user) = user.map(|u| u.trim().to_owned()).filter(|u| !u.is_empty()) {
            sources = sources.env("REDIS_USERNAME", user.clone());
            expected = expected.with_username(user);
        }
        if let Some(password) = password.map(|p| p.trim().to_owned()).filter(|p| !p.is_empty()) {
            sources = sources.env("REDIS_PASSWORD", password.clone());
            expected = expected.with_password(password);
        }
        let from_parts = target(&sources);
        prop_assert_eq!(&from_parts, &expected);
        let from_url = target(&Sources::new().env("REDIS_URL", expected.connection_url()));
        prop_assert_eq!(from_parts, from_url);
    }
}
