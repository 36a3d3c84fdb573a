//! `Settings::load_from` on arbitrary environment maps, `.env` files and TOML files.
//!
//! Each run writes the fuzzed `.env` and `config/default.toml` (and `config/fuzz.toml`, the
//! file of `APP_ENV=fuzz`) into a directory of its own process under the temp dir; the
//! environment map never names `CONFIG_DIR`, so nothing else is read.
//!
//! Invariants: loading never panics; it fails only with `Error::Config`, whose text is safe
//! to log (no control characters); a password or an encryption key placed in any layer (the
//! environment, a `REDIS_URL`, `.env`, a TOML file) appears neither in the error nor in the
//! loaded settings' `Display` or `Debug`; loading the same sources twice gives the same settings; the codec
//! the settings build has their size limit.
#![no_main]

use std::{path::PathBuf, sync::OnceLock};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use session_config::{Settings, Sources};
use session_core::Error;

/// The password placed by `Secret`: a marker fuzzed text is cleaned of.
const SECRET: &str = "Pw9sEcReTmArKeR";
/// The encryption key placed by `Secret`, in base64 (32 bytes), and as searched for (the
/// setting also takes URL-safe base64 without padding; this key reads the same in both).
const KEY_B64: &str = "UHc5c0VjUmVUbUFyS2VSLWVuY3J5cHRpb24ta2V5ISE=";
const KEY_B64_URL: &str = "UHc5c0VjUmVUbUFyS2VSLWVuY3J5cHRpb24ta2V5ISE";
/// Another password and key of the same lengths: a marker an output shows with these placed
/// instead came from the fuzzed text (a TOML escape can spell one), not from the secret.
const OTHER_SECRET: &str = "Qx8tFdSfUnBsLfS";
const OTHER_KEY_B64: &str = "UXg4dEZkU2ZVbkJzTGZTLWVuY3J5cHRpb24ta2V5ISE=";

/// The environment variables session-config reads (and two it does not).
const NAMES: &[&str] = &[
    "APP_ENV",
    "USE_REDIS",
    "SESSION_FALLBACK",
    "REDIS_URL",
    "REDIS_HOST",
    "REDIS_PORT",
    "REDIS_DB",
    "REDIS_USERNAME",
    "REDIS_PASSWORD",
    "REDIS_TLS",
    "REDIS_TLS_CA_FILE",
    "REDIS_TLS_CERT_FILE",
    "REDIS_TLS_KEY_FILE",
    "REDIS_KEY_PREFIX",
    "REDIS_MODE",
    "REDIS_POOL_SIZE",
    "REDIS_CONNECT_TIMEOUT_MS",
    "REDIS_COMMAND_TIMEOUT_MS",
    "SESSION_TTL",
    "SESSION_MAX_BYTES",
    "SESSION_SLIDING_EXPIRY",
    "SESSION_MAX_MODIFY_ATTEMPTS",
    "SESSION_COMPRESSION",
    "SESSION_COMPRESSION_MIN_BYTES",
    "MEMORY_CAPACITY",
    "SESSION_FALLBACK_MAX_SESSIONS",
    "SESSION_FALLBACK_MAX_BYTES",
    "SESSION_ENCRYPTION_KEYS",
    "PATH",
];

#[derive(Debug, Arbitrary)]
enum Name {
    Known(u8),
    Other(String),
}

#[derive(Debug, Arbitrary)]
enum Secret {
    None,
    EnvPassword,
    EnvUrl,
    DotEnvPassword,
    TomlPassword,
    TomlUrl,
    /// `SESSION_ENCRYPTION_KEYS`: `k1:<key>` after `prefix` (other entries) and before
    /// `suffix`.
    EnvKeys {
        prefix: String,
        suffix: String,
    },
    TomlKeys {
        prefix: String,
        suffix: String,
    },
}

#[derive(Debug, Arbitrary)]
struct Input {
    env: Vec<(Name, String)>,
    dotenv: Option<String>,
    default_toml: Option<String>,
    fuzz_toml: Option<String>,
    secret: Secret,
}

/// This process's directory: `.env` and `config/`.
fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("session-fuzz-settings-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("config")).expect("a temp dir");
        dir
    })
}

fn write(path: PathBuf, text: Option<String>) {
    match text {
        Some(text) => std::fs::write(path, text).expect("written"),
        None => {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn clean(mut text: String) -> String {
    while [SECRET, KEY_B64_URL].iter().any(|s| text.contains(s)) {
        text = text.replace(SECRET, "").replace(KEY_B64_URL, "");
    }
    text
}

fn with_line(text: Option<String>, line: &str) -> Option<String> {
    Some(format!("{}\n{line}\n", text.unwrap_or_default()))
}

/// What one load shows: every output that must not hold a secret, and how it ended.
struct Shown {
    texts: Vec<(&'static str, String)>,
    outcome: Result<Settings, Error>,
}

/// Loads the settings the input describes with `password` and `key` as the placed secrets.
fn load(input: &Input, password: &str, key: &str) -> Shown {
    let mut vars: Vec<(String, String)> = input
        .env
        .iter()
        .map(|(name, value)| {
            let name = match name {
                Name::Known(n) => NAMES[usize::from(*n) % NAMES.len()].to_owned(),
                Name::Other(name) => clean(name.clone()),
            };
            (name, clean(value.clone()))
        })
        .filter(|(name, _)| name != "CONFIG_DIR")
        .collect();
    let mut dotenv = input.dotenv.clone().map(clean);
    let mut default_toml = input.default_toml.clone().map(clean);
    let fuzz_toml = input.fuzz_toml.clone().map(clean);
    let url = format!("redis://app:{password}@cache.internal:6379/0");
    match &input.secret {
        Secret::None => {}
        Secret::EnvPassword => vars.push(("REDIS_PASSWORD".into(), password.into())),
        Secret::EnvUrl => vars.push(("REDIS_URL".into(), url)),
        Secret::DotEnvPassword => {
            dotenv = with_line(dotenv, &format!("REDIS_PASSWORD={password}"));
        }
        Secret::TomlPassword => {
            default_toml = with_line(default_toml, &format!("redis.password = \"{password}\""));
        }
        Secret::TomlUrl => {
            default_toml = with_line(default_toml, &format!("redis.url = \"{url}\""));
        }
        Secret::EnvKeys { prefix, suffix } => {
            let keys = format!("{}k1:{key}{}", clean(prefix.clone()), clean(suffix.clone()));
            vars.push(("SESSION_ENCRYPTION_KEYS".into(), keys));
        }
        Secret::TomlKeys { prefix, suffix } => {
            // Only what a TOML basic string holds as it is.
            let [prefix, suffix] = [prefix, suffix].map(|p| {
                clean(
                    p.chars()
                        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
                        .collect(),
                )
            });
            let line = format!("session.encryption_keys = \"{prefix}k1:{key}{suffix}\"");
            default_toml = with_line(default_toml, &line);
        }
    }

    let dir = dir();
    write(dir.join(".env"), dotenv);
    write(dir.join("config/default.toml"), default_toml);
    write(dir.join("config/fuzz.toml"), fuzz_toml);
    let sources = Sources::new()
        .envs(vars)
        .dotenv(dir.join(".env"))
        .config_dir(dir.join("config"));
    let mut texts = vec![("Sources' Debug", format!("{sources:?}"))];
    let outcome = Settings::load_from(&sources);
    match &outcome {
        Ok(settings) => {
            texts.push(("Display", settings.to_string()));
            texts.push(("Debug", format!("{settings:?}")));
            texts.push(("the target", settings.redis.target.to_string()));
            let again = Settings::load_from(&sources).expect("loads again");
            assert_eq!(&again, settings, "loading is not deterministic");
        }
        Err(e) => {
            texts.push(("the error", e.to_string()));
            texts.push(("the error's Debug", format!("{e:?}")));
        }
    }
    Shown { texts, outcome }
}

/// The outputs of `shown` that hold `marker` (a placed secret).
fn showing<'a>(shown: &'a Shown, marker: &str) -> Vec<&'a str> {
    shown
        .texts
        .iter()
        .filter(|(_, text)| text.contains(marker))
        .map(|(what, _)| *what)
        .collect()
}

fuzz_target!(|input: Input| {
    let shown = load(&input, SECRET, KEY_B64);
    match &shown.outcome {
        Ok(settings) => assert_eq!(
            settings.codec().max_size(),
            settings.session.max_size.max(session_core::HEADER_LEN + 1)
        ),
        Err(e) => {
            assert!(
                matches!(e, Error::Config { .. }),
                "{e:?} is not Error::Config"
            );
            let text = e.to_string();
            assert!(!text.chars().any(char::is_control), "{text:?}");
        }
    }
    for marker in [SECRET, KEY_B64_URL] {
        let leaks = showing(&shown, marker);
        if leaks.is_empty() {
            continue;
        }
        // Shown with other secrets placed too: the fuzzed text spelled it, not a leak.
        let other = load(&input, OTHER_SECRET, OTHER_KEY_B64);
        let from_input = showing(&other, marker);
        let leaked: Vec<&str> = leaks
            .into_iter()
            .filter(|w| !from_input.contains(w))
            .collect();
        assert!(
            leaked.is_empty(),
            "{leaked:?} show the placed secret {marker}: {:?}",
            shown.texts
        );
    }
});
