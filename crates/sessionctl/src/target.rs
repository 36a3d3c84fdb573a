//! Which Redis sessionctl talks to: the library's settings with the command line's overrides,
//! and the connections to it (the store, and a plain connection for what the store does not
//! offer).

use std::path::Path;

use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo,
    RedisConnectionInfo, aio::MultiplexedConnection,
};
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

/// A plain connection for the commands the store does not offer (SCAN + UNLINK, PTTL, HGETALL,
/// INFO, CONFIG GET), with the same target, credentials, database and timeouts.
pub(crate) async fn connect_raw(options: &RedisOptions) -> CliResult<MultiplexedConnection> {
    let url = options.redacted_url();
    let target = options.target();
    let mut settings = RedisConnectionInfo::default().set_db(i64::from(target.db()));
    if let Some(user) = target.username() {
        settings = settings.set_username(user);
    }
    if let Some(password) = target.password() {
        settings = settings.set_password(password.expose());
    }
    let addr = if target.tls() {
        ConnectionAddr::TcpTls {
            host: target.host().to_owned(),
            port: target.port(),
            insecure: false,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(target.host().to_owned(), target.port())
    };
    let info: ConnectionInfo = addr
        .into_connection_info()
        .map_err(|e| CliError::failure(format!("{url}: {e}")))?
        .set_redis_settings(settings);
    let client = if target.tls() {
        tls_client(options, info).await?
    } else {
        Client::open(info).map_err(|e| CliError::failure(format!("{url}: {e}")))?
    };
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(options.connect_timeout()))
        .set_response_timeout(Some(options.command_timeout()));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| redis_error(e, "connecting", &url))
}

/// A TLS client trusting the configured CA file (or the system store) and presenting the
/// configured client certificate. The store connects first: it checks the files (PEM with at
/// least one certificate) and installs the rustls provider, with the library's own errors.
#[cfg(feature = "tls")]
async fn tls_client(options: &RedisOptions, info: ConnectionInfo) -> CliResult<Client> {
    connect_store(options).await?;
    let files = options.tls_files();
    let read = |path: &Path| {
        std::fs::read(path)
            .map_err(|e| CliError::failure(format!("cannot read {}: {e}", path.display())))
    };
    let root_cert = files.ca_file.as_deref().map(read).transpose()?;
    let client_tls = match &files.client {
        Some(identity) => Some(redis::ClientTlsConfig {
            client_cert: read(&identity.cert_file)?,
            client_key: read(&identity.key_file)?,
        }),
        None => None,
    };
    Client::build_with_tls(
        info,
        redis::TlsCertificates {
            client_tls,
            root_cert,
        },
    )
    .map_err(|e| CliError::failure(format!("{}: TLS setup: {e}", options.redacted_url())))
}

#[cfg(not(feature = "tls"))]
async fn tls_client(options: &RedisOptions, _info: ConnectionInfo) -> CliResult<Client> {
    Err(CliError::failure(format!(
        "{}: this sessionctl was built without TLS support",
        options.redacted_url()
    ))
    .hint("build it with `cargo build -p sessionctl --features tls`"))
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
