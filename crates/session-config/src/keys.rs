//! The catalog of settings: each one's TOML key and environment variable.

/// One setting, as files and the environment spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Key {
    /// The dotted key path in the TOML files (`redis.port`).
    pub(crate) toml: &'static str,
    /// The environment variable (`REDIS_PORT`).
    pub(crate) env: &'static str,
}

macro_rules! keys {
    ($($name:ident = $toml:literal, $env:literal;)*) => {
        $(pub(crate) const $name: Key = Key { toml: $toml, env: $env };)*
        /// Every key, in the order errors are reported.
        pub(crate) const ALL: &[Key] = &[$($name),*];
    };
}

keys! {
    USE_REDIS = "use_redis", "USE_REDIS";
    FALLBACK = "fallback", "SESSION_FALLBACK";
    REDIS_URL = "redis.url", "REDIS_URL";
    REDIS_HOST = "redis.host", "REDIS_HOST";
    REDIS_PORT = "redis.port", "REDIS_PORT";
    REDIS_DB = "redis.db", "REDIS_DB";
    REDIS_USERNAME = "redis.username", "REDIS_USERNAME";
    REDIS_PASSWORD = "redis.password", "REDIS_PASSWORD";
    REDIS_TLS = "redis.tls.enabled", "REDIS_TLS";
    REDIS_TLS_CA_FILE = "redis.tls.ca_file", "REDIS_TLS_CA_FILE";
    REDIS_TLS_CERT_FILE = "redis.tls.cert_file", "REDIS_TLS_CERT_FILE";
    REDIS_TLS_KEY_FILE = "redis.tls.key_file", "REDIS_TLS_KEY_FILE";
    REDIS_KEY_PREFIX = "redis.key_prefix", "REDIS_KEY_PREFIX";
    REDIS_MODE = "redis.mode", "REDIS_MODE";
    REDIS_POOL_SIZE = "redis.pool_size", "REDIS_POOL_SIZE";
    REDIS_CONNECT_TIMEOUT = "redis.connect_timeout_ms", "REDIS_CONNECT_TIMEOUT_MS";
    REDIS_COMMAND_TIMEOUT = "redis.command_timeout_ms", "REDIS_COMMAND_TIMEOUT_MS";
    REDIS_DEPLOYMENT = "redis.deployment", "REDIS_DEPLOYMENT";
    REDIS_CLUSTER_NODES = "redis.cluster_nodes", "REDIS_CLUSTER_NODES";
    REDIS_SENTINELS = "redis.sentinels", "REDIS_SENTINELS";
    REDIS_SENTINEL_MASTER = "redis.sentinel_master", "REDIS_SENTINEL_MASTER";
    REDIS_SENTINEL_USERNAME = "redis.sentinel_username", "REDIS_SENTINEL_USERNAME";
    REDIS_SENTINEL_PASSWORD = "redis.sentinel_password", "REDIS_SENTINEL_PASSWORD";
    REDIS_REPLICATED_ACK = "redis.replicated_ack", "REDIS_REPLICATED_ACK";
    REDIS_REPLICATED_ACK_TIMEOUT = "redis.replicated_ack_timeout_ms", "REDIS_REPLICATED_ACK_TIMEOUT_MS";
    SESSION_TTL = "session.ttl_secs", "SESSION_TTL";
    SESSION_MAX_BYTES = "session.max_bytes", "SESSION_MAX_BYTES";
    SESSION_SLIDING_EXPIRY = "session.sliding_expiry_secs", "SESSION_SLIDING_EXPIRY";
    SESSION_MAX_MODIFY_ATTEMPTS = "session.max_modify_attempts", "SESSION_MAX_MODIFY_ATTEMPTS";
    SESSION_COMPRESSION = "session.compression", "SESSION_COMPRESSION";
    SESSION_COMPRESSION_MIN_BYTES = "session.compression_min_bytes", "SESSION_COMPRESSION_MIN_BYTES";
    SESSION_ENCRYPTION_KEYS = "session.encryption_keys", "SESSION_ENCRYPTION_KEYS";
    SESSION_BOUNDED_READS = "session.bounded_reads", "SESSION_BOUNDED_READS";
    MEMORY_CAPACITY = "memory.capacity", "MEMORY_CAPACITY";
    FALLBACK_MAX_SESSIONS = "memory.fallback_max_sessions", "SESSION_FALLBACK_MAX_SESSIONS";
    FALLBACK_MAX_BYTES = "memory.fallback_max_bytes", "SESSION_FALLBACK_MAX_BYTES";
}

/// Sections of the TOML files that belong to this crate: an unknown key inside one is a typo
/// and an error. Other top-level tables belong to the application and are left alone.
pub(crate) const SECTIONS: &[&str] = &["redis", "session", "memory"];

/// Selects the `{APP_ENV}.toml` file; read from the environment or `.env` only.
pub(crate) const APP_ENV: &str = "APP_ENV";
/// Points at the configuration directory; read from the environment or `.env` only.
pub(crate) const CONFIG_DIR: &str = "CONFIG_DIR";

/// Settings that hold a comma-separated list of URLs: a TOML file may give them as an array
/// of strings too.
pub(crate) const LISTS: &[Key] = &[REDIS_CLUSTER_NODES, REDIS_SENTINELS];

/// The TOML key `toml`, if it is a known setting.
pub(crate) fn by_toml(toml: &str) -> Option<Key> {
    ALL.iter().copied().find(|k| k.toml == toml)
}
