//! A password never shows: not in `Debug`, `Display`, errors or warnings, not even when two
//! passwords contradict each other.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use proptest::prelude::*;
use session_config::{RedisTarget, Settings, Sources};

/// Everything a user (or a log) can see of a load's outcome.
fn visible(result: &Result<Settings, session_core::Error>) -> String {
    match result {
        Ok(settings) => {
            let warnings: Vec<String> = settings
                .warnings()
                .iter()
                .map(|w| format!("{w} {w:?}"))
                .collect();
            format!(
                "{settings} {settings:?} {} {:?}",
                warnings.join(" "),
                settings.redis.target
            )
        }
        Err(e) => format!("{e} {e:?}"),
    }
}

#[test]
fn a_malformed_url_is_shown_with_the_password_masked() {
    let err =
        Settings::load_from(&Sources::new().env("REDIS_URL", "redis://user:hunter2@cache:99999/0"))
            .unwrap_err();
    let text = err.to_string();
    assert!(!text.contains("hunter2"), "{text}");
    assert!(
        text.contains("\"redis://user:***@cache:99999/0\""),
        "{text}"
    );

    // A password with an unencoded '/' or '@' breaks the URL; it is still masked.
    for url in [
        "redis://user:hun/ter2@cache:6379/0",
        "redis://user:hun@ter2@cache:6379/0x",
        "http://:hunter2@cache",
        "redis://cache:6379/0?password=hunter2",
    ] {
        let result = Settings::load_from(&Sources::new().env("REDIS_URL", url));
        let text = visible(&result);
        assert!(
            !text.contains("hunter2") && !text.contains("ter2"),
            "{url}: {text}"
        );
    }
}

#[test]
fn settings_never_show_the_password() {
    for sources in [
        Sources::new().env("REDIS_URL", "redis://app:hunter2@cache:6379/0"),
        Sources::new().env("REDIS_PASSWORD", "hunter2"),
        // Both: the password fills the URL that has none.
        Sources::new()
            .env("REDIS_URL", "redis://cache:6379/0")
            .env("REDIS_PASSWORD", "hunter2"),
    ] {
        let result = Settings::load_from(&sources);
        assert!(result.is_ok());
        let text = visible(&result);
        assert!(!text.contains("hunter2"), "{text}");
        assert!(format!("{sources:?}").contains("REDIS_"));
        assert!(!format!("{sources:?}").contains("hunter2"));
    }
}

fn password() -> impl Strategy<Value = String> {
    // A marker keeps the password from matching ordinary text by chance.
    "[ -~\u{e9}\u{4e2d}]{4,20}".prop_map(|s| format!("PW{s}"))
}

proptest! {
    #[test]
    fn no_password_shows_anywhere(pw in password(), bad_port in prop::bool::ANY) {
        let encoded: String = utf8_percent_encode(&pw, NON_ALPHANUMERIC).collect();
        let port = if bad_port { "70000" } else { "6379" };
        let cases = [
            // Well-formed URL, with or without an error elsewhere.
            Sources::new().env("REDIS_URL", format!("redis://user:{encoded}@cache:{port}/0")),
            // The password raw in the URL: may or may not parse.
            Sources::new().env("REDIS_URL", format!("redis://user:{pw}@cache:{port}/0")),
            // The parts.
            Sources::new().env("REDIS_PASSWORD", pw.clone()).env("REDIS_PORT", port),
            // Both forms: the password fills the URL.
            Sources::new()
                .env("REDIS_URL", format!("rediss://cache:{port}/1"))
                .env("REDIS_PASSWORD", pw.clone()),
            // Two passwords in one layer: an error naming both settings, showing neither.
            Sources::new()
                .env("REDIS_URL", format!("redis://user:{encoded}@cache:{port}/0"))
                .env("REDIS_PASSWORD", format!("{pw}-other")),
            Sources::new()
                .env("REDIS_URL", format!("redis://user:other-{encoded}@cache:{port}/0"))
                .env("REDIS_PASSWORD", pw.clone()),
        ];
        for sources in cases {
            let text = visible(&Settings::load_from(&sources));
            prop_assert!(!text.contains(&pw), "password in {}", text);
            prop_assert!(!text.contains(&encoded), "encoded password in {}", text);
        }
        let target = RedisTarget::new("cache", 6379)
            .unwrap()
            .with_password(pw.clone());
        let shown = format!("{target} {target:?}");
        prop_assert!(!shown.contains(&pw));
    }
}
