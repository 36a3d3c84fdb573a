//! Which Redis sessionctl talks to: the library's settings with the command line's overrides,
//! and the connections to it (the store, and a plain connection for what the store does not
//! offer).

use std::path::Path;

use session_config::{Settings, Sources};
use session_core::Error;
use session_redis::{ConnectionMode, RedisOptions, RedisStore, RedisTarget};

use crate::{
    cli::Global,
    error::{CliError, CliResult},
};

/// Loads the settings as a service would (`./config` or `CONFIG_DIR`, `.env`, the process
/// environment), with `--config-dir` and `--env` taking the place of `CONFIG_DIR` and
/// `APP_ENV`.
pub(crate) fn load_settings(global: &Global) -> CliResult<Settings> {
    let mut sources = Sources::from_process();
    if let Some(dir) = &global.config_dir {
        if !dir.is_dir() {
            return Err(CliError::usage(format!(
                "--config-dir {}: not a directory",
                dir.display()
            )));
        }
        sources = sources.env("CONFIG_DIR", path_text(dir)?);
    }
    if let Some(env) = &global.app_env {
        sources = sources.env("APP_ENV", env.clone());
    }
    Settings::load_from(&sources).map_err(|e| {
        CliError::failure(format!("cannot load the configuration: {e}"))
            .hint("fix the setting, or point --config-dir / --env elsewhere")
    })
}

fn path_text(path: &Path) -> CliResult<String> {
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| CliError::usage(format!("--config-dir {}: not UTF-8", path.display())))
}

/// The Redis options: the settings' target, prefix, timeouts and TLS files
/// ([`Settings::redis_options`]), with `--url` and `--prefix` in place of `REDIS_URL` and
/// `REDIS_KEY_PREFIX`. Always one multiplexed connection: a command line needs no pool (so a
/// service's `REDIS_MODE=pool` does not need sessionctl built with pool support).
pub(crate) fn options(settings: &Settings, global: &Global) -> CliResult<RedisOptions> {
    let mut settings = settings.clone();
    settings.redis.mode = ConnectionMode::Multiplexed;
    if let Some(url) = &global.url {
        settings.redis.target =
            RedisTarget::parse(url).map_err(|e| CliError::usage(format!("invalid --url: {e}")))?;
    }
    let mut options = settings.redis_options().map_err(|e| {
        let tls = settings.redis.target.tls();
        let error = CliError::failure(format!("invalid Redis settings: {e}"));
        if tls {
            error.hint("this sessionctl has no TLS support: build it with `--features tls`")
        } else {
            error
        }
    })?;
    if let Some(prefix) = &global.prefix {
        options = options
            .with_key_prefix(prefix.as_str())
            .map_err(|e| CliError::usage(format!("invalid --prefix: {e}")))?;
    }
    Ok(options)
}

/// Connects the store: no fallback, one-line errors naming the redacted URL.
pub(crate) async fn connect_store(options: &RedisOptions) -> CliResult<RedisStore> {
    RedisStore::connect(options.clone())
        .await
        .map_err(|e| CliError::from_store(e, &options.redacted_url()))
}

/// A redis-rs error as a failure, classified like the store does.
pub(crate) fn redis_error(e: redis::RedisError, what: &str, url: &str) -> CliError {
    if matches!(e.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"))
        || e.kind() == redis::ErrorKind::AuthenticationFailed
    {
        return CliError::from_store(
            Error::Auth {
                backend: "redis",
                reason: format!("{what} on {url}: {e}"),
            },
            url,
        );
    }
    if e.is_io_error() || e.is_timeout() || e.is_connection_refusal() || e.is_connection_dropped() {
        return CliError::from_store(
            Error::Unavailable {
                backend: "redis",
                reason: format!("{what} on {url}: {e}"),
                source: None,
            },
            url,
        );
    }
    CliError::failure(format!("redis error while {what} on {url}: {e}"))
}
