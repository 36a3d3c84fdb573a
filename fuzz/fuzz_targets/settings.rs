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

/// The password placed by `Secret`: a marker no fuzzed text may contain.
const SECRET: &str = "Pw9sEcReTmArKeR";
/// The encryption key placed by `Secret`, in base64 (32 bytes): no fuzzed text may contain it.
const KEY_B64: &str = "UHc5c0VjUmVUbUFyS2VSLWVuY3J5cHRpb24ta2V5ISE=";
/// The same key in URL-safe base64 without padding, which the setting accepts too.
const KEY_B64_URL: &str = "UHc5c0VjUmVUbUFyS2VSLWVuY3J5cHRpb24ta2V5ISE";

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

fn assert_no_secret(what: &str, shown: &str) {
    assert!(
        !shown.contains(SECRET),
        "{what} shows the password: {shown}"
    );
    assert!(
        !shown.contains(KEY_B64_URL),
        "{what} shows the encryption key: {shown}"
    );
}

fuzz_target!(|input: Input| {
    let Input {
        env,
        dotenv,
        default_toml,
        fuzz_toml,
        secret,
    } = input;
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .map(|(name, value)| {
            let name = match name {
                Name::Known(n) => NAMES[usize::from(n) % NAMES.len()].to_owned(),
                Name::Other(name) => clean(name),
            };
            (name, clean(value))
        })
        .filter(|(name, _)| name != "CONFIG_DIR")
        .collect();
    let mut dotenv = dotenv.map(clean);
    let mut default_toml = default_toml.map(clean);
    let fuzz_toml = fuzz_toml.map(clean);
    let url = format!("redis://app:{SECRET}@cache.internal:6379/0");
    match secret {
        Secret::None => {}
        Secret::EnvPassword => vars.push(("REDIS_PASSWORD".into(), SECRET.into())),
        Secret::EnvUrl => vars.push(("REDIS_URL".into(), url)),
        Secret::DotEnvPassword => dotenv = with_line(dotenv, &format!("REDIS_PASSWORD={SECRET}")),
        Secret::TomlPassword => {
            default_toml = with_line(default_toml, &format!("redis.password = \"{SECRET}\""));
        }
        Secret::TomlUrl => {
            default_toml = with_line(default_toml, &format!("redis.url = \"{url}\""))
        }
        Secret::EnvKeys { prefix, suffix } => {
            let keys = format!("{}k1:{KEY_B64}{}", clean(prefix), clean(suffix));
            vars.push(("SESSION_ENCRYPTION_KEYS".into(), keys));
        }
        Secret::TomlKeys { prefix, suffix } => {
            // Only what a TOML basic string holds as it is.
            let [prefix, suffix] = [prefix, suffix].map(|p| {
                clean(p)
                    .chars()
                    .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
                    .collect::<String>()
            });
            let line = format!("session.encryption_keys = \"{prefix}k1:{KEY_B64}{suffix}\"");
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
    assert_no_secret("Sources' Debug", &format!("{sources:?}"));

    match Settings::load_from(&sources) {
        Ok(settings) => {
            assert_no_secret("Display", &settings.to_string());
            assert_no_secret("Debug", &format!("{settings:?}"));
            assert_no_secret("the target", &settings.redis.target.to_string());
            let again = Settings::load_from(&sources).expect("loads again");
            assert_eq!(again, settings);
            assert_eq!(
                settings.codec().max_size(),
                settings.session.max_size.max(session_core::HEADER_LEN + 1)
            );
        }
        Err(e) => {
            assert!(
                matches!(e, Error::Config { .. }),
                "{e:?} is not Error::Config"
            );
            let shown = e.to_string();
            assert_no_secret("the error", &shown);
            assert_no_secret("the error's Debug", &format!("{e:?}"));
            assert!(!shown.chars().any(char::is_control), "{shown:?}");
        }
    }
});
