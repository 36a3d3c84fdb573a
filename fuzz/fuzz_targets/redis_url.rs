//! `RedisTarget::parse` on arbitrary text, and on URLs built around a known password.
//!
//! Invariants: `parse` and `FromStr` agree; an accepted URL's `connection_url` parses back to
//! the same target, and its `redacted_url` (= `Display`) to the same target with the password
//! `***`; its host is one `RedisTarget::new` accepts unchanged; `Display` and `Debug` do not
//! depend on the password at all (so cannot show it), and neither does the text of a refusal
//! show a password it was given; refusals are `Error::Config` keyed `REDIS_URL`, safe to log.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use session_core::Error;
use session_redis::RedisTarget;

/// The password of `Input::WithSecret`: a marker no fuzzed part may contain.
const SECRET: &str = "Pw9sEcReTmArKeR";

#[derive(Debug, Arbitrary)]
enum Input {
    /// Any text.
    Text(String),
    /// `<scheme>://<user>:<SECRET><tail>@<rest>`: the password is known, so the outputs can
    /// be searched for it whether the URL is accepted or not.
    WithSecret {
        tls: bool,
        user: String,
        tail: String,
        rest: String,
    },
}

fn check(text: &str, secret: Option<&str>) {
    let parsed = RedisTarget::parse(text);
    assert_eq!(
        parsed.as_ref().ok(),
        text.parse::<RedisTarget>().as_ref().ok(),
        "FromStr"
    );
    let target = match parsed {
        Ok(target) => target,
        Err(e) => {
            let Error::Config { key, .. } = &e else {
                panic!("{text:?}: {e:?} is not Error::Config");
            };
            assert_eq!(key, "REDIS_URL");
            for shown in [e.to_string(), format!("{e:?}")] {
                assert!(!shown.chars().any(char::is_control), "{shown:?}");
                if let Some(secret) = secret {
                    assert!(!shown.contains(secret), "{text:?} refused as {shown}");
                }
            }
            return;
        }
    };
    let again = RedisTarget::parse(&target.connection_url())
        .unwrap_or_else(|e| panic!("{text:?}: {} does not parse: {e}", target.connection_url()));
    assert_eq!(
        again,
        target,
        "{text:?} through {}",
        target.connection_url()
    );

    let shown = target.to_string();
    assert_eq!(shown, target.redacted_url());
    let redacted = RedisTarget::parse(&shown)
        .unwrap_or_else(|e| panic!("{text:?}: {shown} does not parse: {e}"));
    let expected = match target.password() {
        Some(_) => target.clone().with_password("***"),
        None => target.clone(),
    };
    assert_eq!(redacted, expected, "{text:?} shown as {shown}");

    let host = RedisTarget::new(target.host(), target.port())
        .unwrap_or_else(|e| panic!("{text:?}: host {:?} refused: {e}", target.host()));
    assert_eq!(host.host(), target.host());

    // Display and Debug must not change with the password: then they cannot show it.
    if target.password().is_some() {
        let other = target.clone().with_password("another password");
        assert_eq!(other.to_string(), shown);
        assert_eq!(format!("{other:?}"), format!("{target:?}"));
    }
    if let (Some(secret), Some(password)) = (secret, target.password()) {
        assert!(password.expose().contains(secret), "{text:?}");
        assert!(!format!("{target:?}").contains(secret));
        assert!(!format!("{:?}", target.password()).contains(secret));
    }
}

fuzz_target!(|input: Input| match input {
    Input::Text(text) => check(&text, None),
    Input::WithSecret {
        tls,
        user,
        tail,
        rest,
    } => {
        let scheme = if tls { "rediss" } else { "redis" };
        let [user, tail, rest] = [user, tail, rest].map(|part| part.replace(SECRET, ""));
        let text = format!("{scheme}://{user}:{SECRET}{tail}@{rest}");
        if text.contains(SECRET) && text.matches(SECRET).count() == 1 {
            check(&text, Some(SECRET));
        }
    }
});
