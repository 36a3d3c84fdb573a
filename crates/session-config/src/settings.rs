//! [`Settings`]: every setting, validated, from the layers in [`Sources`].

use std::{fmt, num::NonZeroUsize, path::PathBuf, time::Duration};

use session_core::{
    Codec, Compression, DEFAULT_COMPRESSION_MIN_BYTES, DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_SIZE,
    EncryptionKeys, Error, FallbackPolicy, Result, Ttl,
};

use crate::{
    ClientIdentity, ConnectionMode, DEFAULT_COMMAND_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, Deployment,
    KeyPrefix, RedisTarget, ReplicatedAck, Sources, TlsFiles,
    deployment::{ChosenDeployment, deployment},
    encryption::encryption_keys,
    keys::{self, Key},
    sources::{DEFAULT_APP_ENV, Given, Resolved, resolve},
    target::{Chosen, redis_target},
    values::{self, opt},
};
/// The pool size when `REDIS_MODE=pool` and `REDIS_POOL_SIZE` is not set: 8.
pub const DEFAULT_POOL_SIZE: NonZeroUsize = NonZeroUsize::MIN.saturating_add(7);
/// The largest accepted pool size.
pub const MAX_POOL_SIZE: usize = 1024;
/// The smallest accepted `SESSION_MAX_BYTES`.
pub const MIN_SESSION_BYTES: u64 = 64;
/// The largest accepted `SESSION_MAX_BYTES`: 512 MiB, Redis' limit for one value.
pub const MAX_SESSION_BYTES: u64 = 512 * 1024 * 1024;
/// How long the primary waits for the replicas' acknowledgement when `REDIS_REPLICATED_ACK`
/// is set and `REDIS_REPLICATED_ACK_TIMEOUT_MS` is not: 100 ms.
pub const DEFAULT_REPLICATED_ACK_TIMEOUT: Duration = Duration::from_millis(100);
/// The largest accepted `SESSION_MAX_MODIFY_ATTEMPTS`.
pub const MAX_MODIFY_ATTEMPTS: u32 = 10_000;

/// Every setting of the library, validated. Load it with [`Settings::load`] (process
/// environment, `.env`, `./config`) or [`Settings::load_from`] (explicit [`Sources`]);
/// [`Settings::default`] is the built-in defaults.
///
/// Neither `Debug` nor `Display` shows a password or an encryption key.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Settings {
    /// The environment whose file was read (`APP_ENV`, default `development`).
    pub app_env: String,
    /// Whether sessions live in Redis (`USE_REDIS`); otherwise in memory.
    pub use_redis: bool,
    /// What happens when Redis cannot be reached (`SESSION_FALLBACK`).
    pub fallback: FallbackPolicy,
    /// Where and how to reach Redis.
    pub redis: RedisSettings,
    /// How sessions are kept: TTL, size limit, sliding expiry, retries.
    pub session: SessionSettings,
    /// The in-memory store (development, and the fallback).
    pub memory: MemorySettings,
    warnings: Vec<Warning>,
}

/// Where and how to reach Redis.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RedisSettings {
    /// The server: from `REDIS_URL` and the parts `REDIS_HOST`, `REDIS_PORT`, `REDIS_DB`,
    /// `REDIS_USERNAME`, `REDIS_PASSWORD` and `REDIS_TLS`, part by part (a part from a later
    /// layer than the URL overrides that part of it; see the crate documentation).
    pub target: RedisTarget,
    /// The prefix of every session key (`REDIS_KEY_PREFIX`).
    pub key_prefix: KeyPrefix,
    /// One multiplexed connection or a pool (`REDIS_MODE`, `REDIS_POOL_SIZE`).
    pub mode: ConnectionMode,
    /// How long connecting may take (`REDIS_CONNECT_TIMEOUT_MS`).
    pub connect_timeout: Duration,
    /// How long one command may take (`REDIS_COMMAND_TIMEOUT_MS`).
    pub command_timeout: Duration,
    /// CA and client certificate files for TLS. They are only accepted with a TLS target
    /// (`rediss://` or `REDIS_TLS=true`), and must exist when the settings are loaded.
    pub tls: TlsFiles,
    /// One server, a cluster or Sentinel (`REDIS_DEPLOYMENT`, `REDIS_CLUSTER_NODES`,
    /// `REDIS_SENTINELS`, `REDIS_SENTINEL_MASTER`, `REDIS_SENTINEL_USERNAME`,
    /// `REDIS_SENTINEL_PASSWORD`).
    pub deployment: Deployment,
    /// Replicated acknowledgement: every write waits until this many replicas have it
    /// (`REDIS_REPLICATED_ACK`, `REDIS_REPLICATED_ACK_TIMEOUT_MS`); off by default.
    pub replicated_ack: Option<ReplicatedAck>,
    /// The keys, as the user spelled them, that ask for an optional feature: named in the
    /// error when this build lacks it.
    pub(crate) asked: Asked,
}

/// The settings that asked for TLS or for the pool, as spelled (`REDIS_URL`, `redis.mode` ...);
/// `None` when not asked for, or not asked for by a loaded setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) struct Asked {
    pub(crate) tls: Option<&'static str>,
    pub(crate) pool: Option<&'static str>,
    pub(crate) deployment: Option<&'static str>,
}

/// How sessions are kept.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SessionSettings {
    /// The TTL every write sets (`SESSION_TTL`, seconds; default one hour).
    pub ttl: Ttl,
    /// The largest encoded session, in bytes (`SESSION_MAX_BYTES`; default 1 MiB).
    pub max_size: usize,
    /// Sliding expiry: reads refresh the TTL too, at most once per this interval
    /// (`SESSION_SLIDING_EXPIRY`, seconds; off by default).
    pub sliding_expiry: Option<Duration>,
    /// How many compare-and-set attempts `SessionManager::modify` makes before it reports a
    /// conflict (`SESSION_MAX_MODIFY_ATTEMPTS`; default 64). Named so that it cannot be
    /// mistaken for an agent's own `max_attempts`.
    pub max_modify_attempts: u32,
    /// How stored sessions are compressed (`SESSION_COMPRESSION`: `off`, the default, or
    /// `lz4`; `SESSION_COMPRESSION_MIN_BYTES`: the smallest body compressed, default
    /// [`DEFAULT_COMPRESSION_MIN_BYTES`]). Sessions are read whatever it says.
    pub compression: Compression,
    /// The keys of encryption at rest (`SESSION_ENCRYPTION_KEYS`: `id:base64key,...`, the
    /// first encrypting, all decrypting); `None`, the default: sessions are written
    /// unencrypted, and encrypted ones are refused. `Debug` shows the key ids only.
    pub encryption: Option<EncryptionKeys>,
    /// Bounded reads (`SESSION_BOUNDED_READS`; off by default): the Redis store refuses a
    /// stored session larger than [`max_size`](Self::max_size) before any of it leaves
    /// Redis, at about 10 µs of server time per load.
    pub bounded_reads: bool,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            ttl: Ttl::DEFAULT,
            max_size: DEFAULT_MAX_SIZE,
            sliding_expiry: None,
            max_modify_attempts: DEFAULT_MAX_ATTEMPTS,
            compression: Compression::Off,
            encryption: None,
            bounded_reads: false,
        }
    }
}

/// The in-memory store, and the memory of the run-time fallback.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemorySettings {
    /// The most sessions it keeps; beyond, the least recently used is evicted
    /// (`MEMORY_CAPACITY`; default unbounded).
    pub capacity: Option<NonZeroUsize>,
    /// With `SESSION_FALLBACK=runtime`: the most sessions that may be changed during an
    /// outage and wait for the write-back (`SESSION_FALLBACK_MAX_SESSIONS`; default
    /// 50,000). A change beyond fails with `Unavailable`.
    pub fallback_max_sessions: usize,
    /// The bytes those sessions may take (`SESSION_FALLBACK_MAX_BYTES`; default 64 MiB).
    pub fallback_max_bytes: usize,
}

impl Default for MemorySettings {
    fn default() -> Self {
        Self {
            capacity: None,
            fallback_max_sessions: session_core::failover::DEFAULT_DIRTY_ENTRIES,
            fallback_max_bytes: session_core::failover::DEFAULT_DIRTY_BYTES,
        }
    }
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            target: RedisTarget::default(),
            key_prefix: KeyPrefix::default(),
            mode: ConnectionMode::default(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            tls: TlsFiles::default(),
            deployment: Deployment::default(),
            replicated_ack: None,
            asked: Asked::default(),
        }
    }
}

impl Default for Settings {
    /// The built-in defaults: what an empty environment and no configuration files give.
    fn default() -> Self {
        Self {
            app_env: DEFAULT_APP_ENV.to_owned(),
            use_redis: false,
            fallback: FallbackPolicy::default(),
            redis: RedisSettings::default(),
            session: SessionSettings::default(),
            memory: MemorySettings::default(),
            warnings: Vec::new(),
        }
    }
}

/// Something in the configuration that is allowed but probably not meant. Logged with
/// `tracing::warn!` when the settings are loaded, and kept in [`Settings::warnings`].
///
/// One setting gives one at present: a server's host or port (`REDIS_URL`, `REDIS_HOST`,
/// `REDIS_PORT`) next to a cluster or Sentinel, which do not use them. A Redis part beside a
/// `REDIS_URL`, which used to, now either overrides that part of the URL (set in a later
/// layer), fills it (a user or password the URL lacks), yields to it (an earlier layer) or,
/// contradicting the URL of its own layer, is an error (see the crate documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    keys: Vec<String>,
    message: String,
}

impl Warning {
    pub(crate) fn new(keys: Vec<String>, message: String) -> Self {
        Self { keys, message }
    }

    /// The keys concerned, as the user spelled them.
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// What is wrong, in words (never with a secret).
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Settings {
    /// Loads the settings of this process: `./config` (or `CONFIG_DIR`), `.env` in the current
    /// directory and the process environment. See the crate documentation for the layers.
    ///
    /// Errors: [`Error::Config`] naming the first invalid setting, its value (secrets masked)
    /// and what was expected.
    pub fn load() -> Result<Self> {
        Self::load_from(&Sources::from_process())
    }

    /// Loads the settings from explicit sources; nothing else is read.
    pub fn load_from(sources: &Sources) -> Result<Self> {
        let resolved = resolve(sources)?;
        let settings = Self::from_resolved(&resolved)?;
        for warning in &settings.warnings {
            tracing::warn!(
                component = "session",
                event_type = "config_warning",
                keys = ?warning.keys,
                "{}",
                warning.message
            );
        }
        Ok(settings)
    }

    /// The codec the session settings ask for: the size limit (`SESSION_MAX_BYTES`), the
    /// compression (`SESSION_COMPRESSION`, `SESSION_COMPRESSION_MIN_BYTES`) and the
    /// encryption keys (`SESSION_ENCRYPTION_KEYS`). It reads plain and compressed sessions
    /// alike, and encrypted ones under any of the keys; tools that decode or encode sessions
    /// (sessionctl) should use it too.
    pub fn codec(&self) -> Codec {
        let codec = Codec::new(self.session.max_size, self.session.compression);
        match &self.session.encryption {
            Some(keys) => codec.with_encryption(keys.clone()),
            None => codec,
        }
    }

    /// What looked wrong but was accepted when the settings were loaded.
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    fn from_resolved(r: &Resolved) -> Result<Self> {
        let mut warnings = Vec::new();
        let use_redis = opt(r, keys::USE_REDIS, values::boolean)?.unwrap_or(false);
        let fallback = opt(r, keys::FALLBACK, values::fallback)?.unwrap_or_default();
        let Chosen {
            target,
            tls_asked_by,
        } = redis_target(r)?;
        let key_prefix = opt(r, keys::REDIS_KEY_PREFIX, values::key_prefix)?.unwrap_or_default();
        let pool_size = opt(r, keys::REDIS_POOL_SIZE, |g| {
            values::integer(g, 1, MAX_POOL_SIZE as u64, "a number of connections")
                .map(|n| NonZeroUsize::new(n as usize).unwrap_or(DEFAULT_POOL_SIZE))
        })?
        .unwrap_or(DEFAULT_POOL_SIZE);
        let mode = opt(r, keys::REDIS_MODE, |g| values::mode(g, pool_size))?.unwrap_or_default();
        let connect_timeout = opt(r, keys::REDIS_CONNECT_TIMEOUT, values::timeout)?
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let command_timeout = opt(r, keys::REDIS_COMMAND_TIMEOUT, values::timeout)?
            .unwrap_or(DEFAULT_COMMAND_TIMEOUT);
        let ChosenDeployment {
            deployment,
            asked_by: deployment_asked_by,
            tls_asked_by: nodes_tls_asked_by,
        } = deployment(r, &target, mode, &mut warnings)?;
        let tls_anywhere = target.tls()
            || match &deployment {
                Deployment::Cluster { nodes } => nodes.iter().any(RedisTarget::tls),
                _ => false,
            };
        let tls = tls_files(r, &target, tls_anywhere)?;
        let replicated_ack = replicated_ack(r, command_timeout)?;
        let asked = Asked {
            tls: tls_asked_by.or(nodes_tls_asked_by),
            deployment: deployment_asked_by,
            pool: matches!(mode, ConnectionMode::Pool { .. })
                .then(|| r.get(keys::REDIS_MODE).map(|g| g.spelled))
                .flatten(),
        };

        let session = SessionSettings {
            ttl: opt(r, keys::SESSION_TTL, values::ttl)?.unwrap_or(Ttl::DEFAULT),
            max_size: opt(r, keys::SESSION_MAX_BYTES, |g| {
                values::integer(g, MIN_SESSION_BYTES, MAX_SESSION_BYTES, "a number of bytes")
            })?
            .map_or(DEFAULT_MAX_SIZE, |n| n as usize),
            sliding_expiry: opt(r, keys::SESSION_SLIDING_EXPIRY, values::sliding_expiry)?.flatten(),
            max_modify_attempts: opt(r, keys::SESSION_MAX_MODIFY_ATTEMPTS, |g| {
                values::integer(g, 1, u64::from(MAX_MODIFY_ATTEMPTS), "a number of attempts")
            })?
            .map_or(DEFAULT_MAX_ATTEMPTS, |n| n as u32),
            compression: compression(r)?,
            encryption: opt(r, keys::SESSION_ENCRYPTION_KEYS, encryption_keys)?.flatten(),
            bounded_reads: opt(r, keys::SESSION_BOUNDED_READS, values::boolean)?.unwrap_or(false),
        };
        let defaults = MemorySettings::default();
        let memory = MemorySettings {
            capacity: opt(r, keys::MEMORY_CAPACITY, values::capacity)?.flatten(),
            fallback_max_sessions: opt(r, keys::FALLBACK_MAX_SESSIONS, |g| {
                values::integer(g, 1, 100_000_000, "a number of sessions")
            })?
            .map_or(defaults.fallback_max_sessions, |n| n as usize),
            fallback_max_bytes: opt(r, keys::FALLBACK_MAX_BYTES, |g| {
                values::integer(g, 1024, 1 << 40, "a number of bytes")
            })?
            .map_or(defaults.fallback_max_bytes, |n| n as usize),
        };
        Ok(Self {
            app_env: r.app_env.clone(),
            use_redis,
            fallback,
            redis: RedisSettings {
                target,
                key_prefix,
                mode,
                connect_timeout,
                command_timeout,
                tls,
                deployment,
                replicated_ack,
                asked,
            },
            session,
            memory,
            warnings,
        })
    }
}

/// `SESSION_COMPRESSION` with its threshold. The threshold is validated even when compression
/// is off, so that a typo does not wait for the day compression is turned on.
fn compression(r: &Resolved) -> Result<Compression> {
    let min_bytes = opt(r, keys::SESSION_COMPRESSION_MIN_BYTES, |g| {
        values::integer(g, 0, MAX_SESSION_BYTES, "a number of bytes")
    })?
    .map_or(DEFAULT_COMPRESSION_MIN_BYTES, |n| n as usize);
    let on = opt(r, keys::SESSION_COMPRESSION, values::compression_on)?.unwrap_or(false);
    Ok(if on {
        Compression::Lz4 { min_bytes }
    } else {
        Compression::Off
    })
}

/// `REDIS_REPLICATED_ACK` with its timeout, which must be below the command timeout (or the
/// request would time out before `WAIT` answers). The timeout is validated even when the
/// acknowledgement is off.
fn replicated_ack(r: &Resolved, command_timeout: Duration) -> Result<Option<ReplicatedAck>> {
    let timeout = opt(r, keys::REDIS_REPLICATED_ACK_TIMEOUT, values::timeout)?;
    let Some(replicas) = opt(r, keys::REDIS_REPLICATED_ACK, values::replicas)?.flatten() else {
        return Ok(None);
    };
    let timeout_given = r.get(keys::REDIS_REPLICATED_ACK_TIMEOUT);
    let timeout = timeout.unwrap_or(DEFAULT_REPLICATED_ACK_TIMEOUT);
    if timeout >= command_timeout {
        let command = r
            .get(keys::REDIS_COMMAND_TIMEOUT)
            .map_or("REDIS_COMMAND_TIMEOUT_MS (default)".to_owned(), |g| {
                format!("{} (set in {})", g.spelled, g.origin)
            });
        let expected = format!(
            "a wait below the command timeout, {} ms of {command}: the request would time out \
             before WAIT answers; lower this wait or raise the command timeout",
            command_timeout.as_millis()
        );
        return Err(match timeout_given {
            Some(given) => given.invalid(expected),
            None => Error::config(
                "REDIS_REPLICATED_ACK_TIMEOUT_MS",
                format!("{} (default)", timeout.as_millis()),
                expected,
            ),
        });
    }
    Ok(Some(ReplicatedAck { replicas, timeout }))
}

/// A value that is set and not empty (an empty TOML string clears an optional setting).
fn non_empty(r: &Resolved, key: Key) -> Option<&Given> {
    r.get(key).filter(|g| !g.text.is_empty())
}

/// The TLS files: each must exist, certificate and key come together, and only with TLS.
fn tls_files(r: &Resolved, target: &RedisTarget, tls: bool) -> Result<TlsFiles> {
    let file = |key| {
        non_empty(r, key)
            .map(|g| values::file(g).map(|p| (g, p)))
            .transpose()
    };
    let ca = file(keys::REDIS_TLS_CA_FILE)?;
    let cert = file(keys::REDIS_TLS_CERT_FILE)?;
    let key = file(keys::REDIS_TLS_KEY_FILE)?;
    let client = match (cert, key) {
        (Some((_, cert)), Some((_, key))) => Some(ClientIdentity::new(cert, key)),
        (None, None) => None,
        (Some((given, _)), None) => return Err(missing_pair(given, keys::REDIS_TLS_KEY_FILE)),
        (None, Some((given, _))) => return Err(missing_pair(given, keys::REDIS_TLS_CERT_FILE)),
    };
    if !tls {
        let first = [
            keys::REDIS_TLS_CA_FILE,
            keys::REDIS_TLS_CERT_FILE,
            keys::REDIS_TLS_KEY_FILE,
        ]
        .into_iter()
        .find_map(|key| non_empty(r, key));
        if let Some(given) = first {
            return Err(given.invalid(format!(
                "no TLS file for a plain connection ({target}): use a rediss:// URL or set \
                 REDIS_TLS=true (redis.tls.enabled), or remove {}",
                given.spelled
            )));
        }
    }
    let mut files = TlsFiles::new();
    files.ca_file = ca.map(|(_, path)| path);
    files.client = client;
    Ok(files)
}

/// The error for a certificate without its key or a key without its certificate.
fn missing_pair(given: &Given, missing: Key) -> Error {
    let missing_name = if given.spelled.contains('.') {
        missing.toml
    } else {
        missing.env
    };
    Error::config(
        missing_name,
        "(not set)",
        format!(
            "a file, since {} is set in {}: a client certificate and its key come together",
            given.spelled, given.origin
        ),
    )
}

impl fmt::Display for Settings {
    /// One `key = value` line per setting, the password masked; what `sessionctl doctor`
    /// shows.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = |p: &Option<PathBuf>| {
            p.as_ref()
                .map_or_else(|| "-".to_owned(), |p| p.display().to_string())
        };
        let redis = &self.redis;
        writeln!(f, "app_env = {}", self.app_env)?;
        writeln!(f, "use_redis = {}", self.use_redis)?;
        writeln!(f, "fallback = {}", self.fallback)?;
        writeln!(f, "redis.target = {}", redis.target)?;
        writeln!(f, "redis.key_prefix = {}", redis.key_prefix)?;
        writeln!(f, "redis.mode = {}", redis.mode)?;
        writeln!(f, "redis.connect_timeout = {:?}", redis.connect_timeout)?;
        writeln!(f, "redis.command_timeout = {:?}", redis.command_timeout)?;
        writeln!(f, "redis.deployment = {}", redis.deployment)?;
        match redis.replicated_ack {
            Some(ack) => writeln!(
                f,
                "redis.replicated_ack = {} replica(s) within {:?}",
                ack.replicas, ack.timeout
            )?,
            None => writeln!(f, "redis.replicated_ack = off")?,
        }
        writeln!(f, "redis.tls.ca_file = {}", path(&redis.tls.ca_file))?;
        let (cert, key) = match &redis.tls.client {
            Some(c) => (Some(c.cert_file.clone()), Some(c.key_file.clone())),
            None => (None, None),
        };
        writeln!(f, "redis.tls.cert_file = {}", path(&cert))?;
        writeln!(f, "redis.tls.key_file = {}", path(&key))?;
        writeln!(f, "session.ttl = {}", self.session.ttl)?;
        writeln!(f, "session.max_bytes = {}", self.session.max_size)?;
        match self.session.sliding_expiry {
            Some(d) => writeln!(f, "session.sliding_expiry = {d:?}")?,
            None => writeln!(f, "session.sliding_expiry = off")?,
        }
        writeln!(
            f,
            "session.max_modify_attempts = {}",
            self.session.max_modify_attempts
        )?;
        match self.session.compression {
            Compression::Lz4 { min_bytes } => {
                writeln!(f, "session.compression = lz4")?;
                writeln!(f, "session.compression_min_bytes = {min_bytes}")?;
            }
            other => writeln!(f, "session.compression = {other}")?,
        }
        match &self.session.encryption {
            Some(keys) => writeln!(f, "session.encryption_keys = {keys}")?,
            None => writeln!(f, "session.encryption_keys = off")?,
        }
        writeln!(f, "session.bounded_reads = {}", self.session.bounded_reads)?;
        match self.memory.capacity {
            Some(n) => writeln!(f, "memory.capacity = {n}")?,
            None => writeln!(f, "memory.capacity = unbounded")?,
        }
        writeln!(
            f,
            "memory.fallback_max_sessions = {}",
            self.memory.fallback_max_sessions
        )?;
        write!(
            f,
            "memory.fallback_max_bytes = {}",
            self.memory.fallback_max_bytes
        )
    }
}
