//! `RedisTarget`: the one URL parser. Generated URLs read back into their parts, any text either
//! parses or fails with a configuration error, and no error shows the password.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use proptest::prelude::*;
use session_core::Error;
use session_redis::{RedisTarget, Secret};

fn config_error(result: Result<RedisTarget, Error>) -> (String, String, String) {
    match result {
        Err(Error::Config {
            key,
            value,
            expected,
        }) => (key, value, expected),
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

#[test]
fn urls_parse_into_parts() {
    let t = RedisTarget::parse("redis://127.0.0.1:6380/3").unwrap();
    assert_eq!(
        (t.host(), t.port(), t.db(), t.tls()),
        ("127.0.0.1", 6380, 3, false)
    );
    assert_eq!((t.username(), t.password()), (None, None));
    let t = RedisTarget::parse("rediss://localhost").unwrap();
    assert_eq!(
        (t.host(), t.port(), t.db(), t.tls()),
        ("localhost", 6379, 0, true)
    );
    let t = RedisTarget::parse("redis://app:p%40ss%3Aw%2Frd@h/").unwrap();
    assert_eq!(t.username(), Some("app"));
    assert_eq!(t.password().map(Secret::expose), Some("p@ss:w/rd"));
    assert_eq!(t.db(), 0, "a trailing slash without a database");
    let t = RedisTarget::parse("redis://:only@h:1").unwrap();
    assert_eq!(
        (t.username(), t.password().map(Secret::expose)),
        (None, Some("only"))
    );
    let t = RedisTarget::parse("redis://[::1]:7000").unwrap();
    assert_eq!(t.host(), "::1");
    assert_eq!(t.redacted_url(), "redis://[::1]:7000/0");
}

#[test]
fn bad_urls_are_config_errors_without_the_password() {
    for bad in [
        "http://:secretpw@h:1",
        "redis://:secretpw@h:1/x",
        "redis://:secretpw@h:1/-1",
        "redis://:secretpw@h:1/0?protocol=resp3",
        "rediss://:secretpw@h:1/#insecure",
        "redis://:secretpw@:1",
        "redis://:secretpw@h:99999",
        "redis://:secretpw@h:0",
        "redis://:secret/pw@h:1/0",
        "unix:///tmp/redis.sock",
    ] {
        let err = RedisTarget::parse(bad).unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(!text.contains("secretpw"), "{bad}: {text}");
        let (key, _, expected) = config_error(Err(err));
        assert_eq!(key, "REDIS_URL", "{bad}");
        assert!(expected.contains("redis://"), "{bad}: {expected}");
    }
}

#[test]
fn parts_are_validated_and_keyed_as_the_environment_spells_them() {
    let (key, value, expected) = config_error(RedisTarget::new("cache internal", 6379));
    assert_eq!(
        (key.as_str(), value.as_str()),
        ("REDIS_HOST", "\"cache internal\"")
    );
    assert!(expected.contains("a host name"), "{expected}");
    let (key, _, _) = config_error(RedisTarget::new("cache", 0));
    assert_eq!(key, "REDIS_PORT");
    for bad in ["", "a/b", "a@b", "h:6379", "[h]"] {
        assert!(RedisTarget::new(bad, 1).is_err(), "{bad}");
    }
    let t = RedisTarget::new("[::1]", 7000).unwrap();
    assert_eq!(t.host(), "::1");
}

#[test]
fn the_password_shows_only_in_the_connection_url() {
    let t = RedisTarget::new("cache", 6379)
        .unwrap()
        .with_username("app")
        .with_password("hunter 2")
        .with_db(4)
        .with_tls(true);
    for shown in [t.to_string(), format!("{t:?}"), t.redacted_url()] {
        assert!(!shown.contains("hunter"), "{shown}");
        assert!(shown.contains("rediss://app:***@cache:6379/4"), "{shown}");
    }
    assert_eq!(t.connection_url(), "rediss://app:hunter%202@cache:6379/4");
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
    fn generated_urls_parse_into_their_parts(
        tls in any::<bool>(),
        host in host(),
        port in prop::option::of(1u16..),
        db in prop::option::of(any::<u32>()),
        user in credential(),
        password in credential(),
    ) {
        let text = url(tls, &host, port, db, user.as_deref(), password.as_deref());
        let t = RedisTarget::parse(&text).unwrap();
        prop_assert_eq!(t.tls(), tls);
        prop_assert_eq!(t.host(), host.as_str());
        prop_assert_eq!(t.port(), port.unwrap_or(6379));
        prop_assert_eq!(t.db(), db.unwrap_or(0));
        prop_assert_eq!(t.username(), user.as_deref());
        prop_assert_eq!(t.password().map(|p| p.expose()), password.as_deref());
        // The driver's URL reads back into the same target.
        prop_assert_eq!(&RedisTarget::parse(&t.connection_url()).unwrap(), &t);
    }

    #[test]
    fn parts_give_the_same_target_as_the_url(
        tls in any::<bool>(),
        host in host(),
        port in 1u16..,
        db in any::<u32>(),
        user in credential(),
        password in credential(),
    ) {
        let mut parts = RedisTarget::new(&host, port).unwrap().with_db(db).with_tls(tls);
        if let Some(user) = &user {
            parts = parts.with_username(user.clone());
        }
        if let Some(password) = &password {
            parts = parts.with_password(password.clone());
        }
        let text = url(tls, &host, Some(port), Some(db), user.as_deref(), password.as_deref());
        prop_assert_eq!(parts, RedisTarget::parse(&text).unwrap());
    }

    #[test]
    fn any_string_either_parses_or_fails_with_a_config_error(text in "\\PC{0,40}") {
        match RedisTarget::parse(&text) {
            Ok(t) => prop_assert!(t.port() != 0),
            Err(Error::Config { key, .. }) => prop_assert_eq!(key, "REDIS_URL"),
            Err(other) => prop_assert!(false, "unexpected error {:?}", other),
        }
    }
}
