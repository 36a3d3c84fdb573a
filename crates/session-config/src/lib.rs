//! Settings for durable sessions: `config/*.toml`, `.env` and the environment, validated
//! once at load time, and turned into a store and a [`SessionManager`](session_core::SessionManager).
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use session_config::{Settings, Sources};
//! use session_core::SessionId;
//!
//! #[derive(Serialize, Deserialize)]
//! struct Agent { state: String, current_attempt: u32 }
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! // In a service: `Settings::load()?`. Here: explicit sources, so nothing else is read.
//! let settings = Settings::load_from(&Sources::new().env("SESSION_TTL", "600"))?;
//! assert!(!settings.use_redis);
//! println!("{settings}"); // every setting, the password masked
//!
//! let agents = settings.build_manager::<Agent>().await?;
//! let id = SessionId::new("user-123")?;
//! let agent = agents
//!     .get_or_create(&id, || Agent { state: "new_problem".into(), current_attempt: 0 })
//!     .await?;
//! assert_eq!(agent.state, "new_problem");
//! assert_eq!(agents.ttl().as_millis(), 600_000);
//! # Ok::<(), session_core::Error>(())
//! # }).unwrap();
//! ```
//!
//! # Layers
//!
//! Later layers win, key by key:
//!
//! 1. the built-in defaults (the table below);
//! 2. `config/default.toml`;
//! 3. `config/{APP_ENV}.toml`, `APP_ENV` defaulting to `development`;
//! 4. `config/local.toml`, if present (keep it out of version control);
//! 5. `.env` in the current directory, if present (read into a map: the process environment
//!    is never modified);
//! 6. the process environment ([`Settings::load`]), or the map given with [`Sources::env`] and
//!    [`Sources::envs`] ([`Settings::load_from`]). A program that adds a variable to
//!    [`Sources::from_process`] replaces the process's variable of that name: its own choice
//!    is part of this layer, not a layer above it.
//!
//! Nothing comes after the environment. A program may still change the public fields of the
//! loaded [`Settings`] (sessionctl's `--url` replaces the whole target): that is the program's
//! decision, outside the layers.
//!
//! `APP_ENV` and `CONFIG_DIR` choose the files, so they come from the environment or `.env`
//! only (the environment first). `CONFIG_DIR` names another directory than `./config`; it
//! must exist. Without `CONFIG_DIR` and without a `./config` directory, the built-in defaults
//! stand in for the files. `APP_ENV` (from the environment or `.env`) must name an existing
//! `{APP_ENV}.toml` when it is set: a typo such as `APP_ENV=prodcution` fails at load instead
//! of running production on development settings. Left unset, `development.toml` is read if it
//! exists.
//!
//! Environment variables (and `.env` entries) that are empty count as unset, so
//! `REDIS_PASSWORD=` in a compose file does not override a file. In the TOML files, an empty
//! string clears an optional setting (`url = ""` in `local.toml` undoes a `url` of
//! `production.toml`). Inside the tables `[redis]`, `[session]` and `[memory]`, an unknown key
//! is an error (a typo would otherwise be silently ignored); other top-level tables are left
//! to the application.
//!
//! # Settings
//!
//! | environment variable | TOML key | meaning | default |
//! |---|---|---|---|
//! | `APP_ENV` | - | which `config/{APP_ENV}.toml` to read | `development` |
//! | `CONFIG_DIR` | - | the configuration directory | `./config` |
//! | `USE_REDIS` | `use_redis` | keep sessions in Redis (else in memory) | `false` |
//! | `SESSION_FALLBACK` | `fallback` | when Redis cannot be reached: `startup` (decided once at start-up: memory for the life of the process), `runtime` (memory during any outage, written back when Redis answers), `none` (fail); see below | `startup` |
//! | `REDIS_URL` | `redis.url` | `redis://[user][:password@]host[:port][/db]`, `rediss://` for TLS (user and password percent-encoded); the parts below override its parts from a later layer, see below | unset |
//! | `REDIS_HOST` | `redis.host` | host name or IP address | `localhost` |
//! | `REDIS_PORT` | `redis.port` | port, 1-65535 | `6379` |
//! | `REDIS_DB` | `redis.db` | database index | `0` |
//! | `REDIS_USERNAME` | `redis.username` | ACL user | unset |
//! | `REDIS_PASSWORD` | `redis.password` | password (never shown) | unset |
//! | `REDIS_TLS` | `redis.tls.enabled` | TLS for the parts form (a URL says it with `rediss://`); feature `tls` | `false` |
//! | `REDIS_TLS_CA_FILE` | `redis.tls.ca_file` | PEM CA bundle to trust instead of the system roots | unset |
//! | `REDIS_TLS_CERT_FILE` | `redis.tls.cert_file` | PEM client certificate (with the key) | unset |
//! | `REDIS_TLS_KEY_FILE` | `redis.tls.key_file` | PEM client key (with the certificate) | unset |
//! | `REDIS_KEY_PREFIX` | `redis.key_prefix` | prefix of every session key | `cql:session:` |
//! | `REDIS_MODE` | `redis.mode` | `multiplexed` (one shared connection) or `pool` (feature `pool`); `cluster` / `sentinel` choose the deployment as `REDIS_DEPLOYMENT` does | `multiplexed` |
//! | `REDIS_POOL_SIZE` | `redis.pool_size` | most connections of the pool, 1-1024 (with `pool`) | `8` |
//! | `REDIS_CONNECT_TIMEOUT_MS` | `redis.connect_timeout_ms` | connect timeout, ms, 1-3600000 | `2000` |
//! | `REDIS_COMMAND_TIMEOUT_MS` | `redis.command_timeout_ms` | timeout of one command, ms, 1-3600000 | `1000` |
//! | `REDIS_DEPLOYMENT` | `redis.deployment` | `single`, `cluster` or `sentinel`; unset: `cluster` when `REDIS_CLUSTER_NODES` is set, `sentinel` when `REDIS_SENTINELS` is, else `single` (both lists set without it is an error) | unset |
//! | `REDIS_CLUSTER_NODES` | `redis.cluster_nodes` | Redis Cluster seed nodes, comma-separated `redis://`/`rediss://` URLs (a TOML array of strings too); user, password and TLS as for one server (`REDIS_USERNAME`, `REDIS_PASSWORD`, `REDIS_TLS`), database 0 only; feature `cluster` | unset |
//! | `REDIS_SENTINELS` | `redis.sentinels` | Sentinel addresses, comma-separated URLs (a TOML array too) that may carry the sentinels' own user and password; the data nodes' user, password, database and TLS are the server's settings; feature `sentinel` | unset |
//! | `REDIS_SENTINEL_MASTER` | `redis.sentinel_master` | the master's name as the sentinels monitor it (required with `REDIS_SENTINELS`) | unset |
//! | `REDIS_SENTINEL_USERNAME` | `redis.sentinel_username` | the sentinels' ACL user (fills the sentinel URLs, as `REDIS_USERNAME` fills `REDIS_URL`) | unset |
//! | `REDIS_SENTINEL_PASSWORD` | `redis.sentinel_password` | the sentinels' password (never shown) | unset |
//! | `REDIS_REPLICATED_ACK` | `redis.replicated_ack` | replicated acknowledgement: every write waits (`WAIT`) until this many replicas have it, else ends as `OutcomeUnknown`; `off` (or `0`), or 1-1000 | `off` |
//! | `REDIS_REPLICATED_ACK_TIMEOUT_MS` | `redis.replicated_ack_timeout_ms` | how long the primary waits for them, ms; below `REDIS_COMMAND_TIMEOUT_MS` | `100` |
//! | `SESSION_TTL` | `session.ttl_secs` | session lifetime after its last write, seconds (at least 1) | `3600` |
//! | `SESSION_MAX_BYTES` | `session.max_bytes` | largest encoded session, bytes, 64 to 512 MiB | `1048576` |
//! | `SESSION_SLIDING_EXPIRY` | `session.sliding_expiry_secs` | reads refresh the TTL, at most once per this many seconds; `off` (or `0`) | `off` |
//! | `SESSION_MAX_MODIFY_ATTEMPTS` | `session.max_modify_attempts` | compare-and-set attempts of `modify` before a conflict, 1-10000 | `64` |
//! | `SESSION_COMPRESSION` | `session.compression` | how sessions are written: `off`, or `lz4` (LZ4 for bodies of at least the threshold, when that makes them smaller); sessions are read either way | `off` |
//! | `SESSION_COMPRESSION_MIN_BYTES` | `session.compression_min_bytes` | the smallest MessagePack body `lz4` compresses, bytes, 0 to 512 MiB | `1024` |
//! | `SESSION_ENCRYPTION_KEYS` | `session.encryption_keys` | encryption at rest (AES-256-GCM): `id:base64key,id:base64key`, each key 32 bytes in base64 (`openssl rand -base64 32`), ids of 1-32 `A-Z a-z 0-9 _ . -`; the first key encrypts every write, all of them decrypt (rotation: put the new key first, run `sessionctl rekey`, then drop the old one); plain and compressed sessions are read either way. Never shown: only the ids | unset (no encryption) |
//! | `SESSION_BOUNDED_READS` | `session.bounded_reads` | the Redis store refuses a stored session larger than `SESSION_MAX_BYTES` before reading it (about 10 µs of server time per load) | `false` |
//! | `SESSION_FALLBACK_MAX_SESSIONS` | `memory.fallback_max_sessions` | with `runtime`: sessions that may be changed during an outage, waiting for the write-back; beyond, a change fails with `Unavailable` | `50000` |
//! | `SESSION_FALLBACK_MAX_BYTES` | `memory.fallback_max_bytes` | with `runtime`: their bytes, 1024 to 1 TiB | `67108864` |
//! | `MEMORY_CAPACITY` | `memory.capacity` | most sessions the memory store keeps (least recently used evicted); `unbounded` (or `0`) | `unbounded` |
//!
//! Booleans accept `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`, in any case.
//!
//! # The Redis server: `REDIS_URL` and its parts
//!
//! `REDIS_URL` is one more source of each part of the server (host, port, database, user,
//! password, TLS), in the layer it is set in; each part is then decided like any setting,
//! by layer:
//!
//! - a part set in a **later** layer than the URL overrides that part of it:
//!   `docker run -e REDIS_HOST=cache-2` moves a `redis.url` of `production.toml` to another
//!   host and keeps its port, database, user, password and scheme (`password = ""` in a
//!   later file removes the URL's password, as an empty string clears any optional setting);
//! - a part set in an **earlier** layer yields to the URL, as any setting of an earlier layer
//!   does (and, overridden, is not validated); except that `REDIS_USERNAME` and
//!   `REDIS_PASSWORD` **fill** a URL without a user or a password, from any layer, so the
//!   password can stay out of the URL;
//! - a part set in the **same** layer as the URL (both in the environment, both in `.env`, or
//!   both in one file) must agree with it: a different value is a
//!   [`session_core::Error::Config`] keyed by the part, naming the URL and the layer, the
//!   password masked. A URL always says its host, its port (6379 when it names none), its
//!   database (0 when it names none) and TLS (`rediss://` or `redis://`).
//!
//! A URL in a later layer replaces a URL of an earlier layer wholly, as any setting does. The
//! README's "Which setting wins" table goes through the cases; each row has a test of that
//! name in `tests/precedence.rs`.
//!
//! # The Redis store and the fallbacks
//!
//! With `USE_REDIS=true` (and the feature `redis`), [`Settings::build_store`] connects a
//! `RedisStore` within `REDIS_CONNECT_TIMEOUT_MS`: TCP, TLS, `AUTH`, `SELECT`, `PING`. When
//! Redis is unreachable or slow ([`session_core::Error::Unavailable`]):
//!
//! - `SESSION_FALLBACK=startup` (the default, the seed's behaviour): the memory store is used
//!   for the life of the process. A warning is logged with `component = "session"`,
//!   `backend = "memory"`, `event_type = "fallback_activated"`, the reason and the redacted
//!   URL (never the password), and the returned [`BuiltStore`] carries a [`Fallback`] saying
//!   why, for a health endpoint. Its sessions never reach Redis: [`BuiltStore::reconcilable`]
//!   is `false`, and a readiness check should say so.
//! - `SESSION_FALLBACK=runtime`: a [`session_core::FailoverStore`] over Redis. It serves from
//!   memory during any outage, at start-up or later, probes Redis with backoff, and writes
//!   back what changed meanwhile when it answers (conflicts with other instances decided by
//!   the later `updated_at`, logged and counted). [`BuiltStore::failover`] reports its state.
//! - `SESSION_FALLBACK=none`: `build_store` returns that error, which says what failed.
//!
//! Refused credentials ([`session_core::Error::Auth`]: a wrong password, an unknown ACL user)
//! never fall back, whatever the policy: they are a configuration error that a fallback would
//! hide until the next restart loses every session.
//!
//! Configuration errors (a TLS file that holds no certificate, `rediss://` or the pool in a
//! build without its feature) and other Redis errors are returned whatever the policy: the
//! fallback hides only an unusable server. Every build sets the gauge
//! [`FALLBACK_ACTIVE_GAUGE`] (`session_fallback_active`: `1` with a fallback, else `0`)
//! through the `metrics` facade.
//!
//! Tools that must talk to Redis or fail (sessionctl) take `Settings::redis_options` and
//! connect themselves: no fallback there.
//!
//! # Decisions
//!
//! - **A part set after `REDIS_URL` overrides that part of it** (see "The Redis server"
//!   above). The seed's users set `REDIS_HOST` or `REDIS_PASSWORD` to change one part of a
//!   server given elsewhere; a URL that won wholly ignored them (with a warning few read).
//!   Only where nothing says which one was meant, in one layer, is it an error.
//! - **URLs**: only `redis://` and `rediss://`; user name and password are percent-decoded;
//!   the path is the database (`/3`; none or `/` is 0); any number that fits 32 bits is
//!   accepted (Redis has 16 databases unless configured otherwise). Query strings and
//!   fragments are refused: each option has its own setting.
//! - **TLS files** must exist when loaded; certificate and key come together; any of them with
//!   a plain (`redis://`) target is an error, since it means TLS was intended and would
//!   silently not happen.
//! - **Secrets**: a password never appears in `Debug`, `Display`, an error or a log line;
//!   a malformed `REDIS_URL` is shown as `redis://user:***@host`. Only
//!   [`RedisTarget::connection_url`] holds it.
//! - **One set of Redis types**: [`RedisTarget`] (and its URL parser), [`Secret`],
//!   [`KeyPrefix`], [`ConnectionMode`], [`TlsFiles`] and [`ClientIdentity`] are session-redis'
//!   own, re-exported here; session-redis compiles them without its driver, so a build
//!   without the feature `redis` has them but no Redis client.
//! - **Errors** are [`session_core::Error::Config`] with the key as the user spelled it
//!   (`REDIS_PORT` from the environment or `.env`, `redis.port` from a file), the value
//!   (masked when secret) and what was expected, followed by where it was set.
//! - **Compression is off by default.** Every codec reads compressed and uncompressed sessions,
//!   so `SESSION_COMPRESSION` can be switched at any time; but versions that predate it read a
//!   compressed session as corrupt, so turn it on once every service and tool that reads the
//!   sessions is upgraded. It costs client CPU (about 2 µs per KB written, 0.5-1 µs per KB
//!   read) for sessions 25-50% smaller on chat text; `SESSION_MAX_BYTES` counts a session
//!   uncompressed either way. [`Settings::codec`] is the codec these settings ask for.
//! - **Encryption at rest is off by default.** With `SESSION_ENCRYPTION_KEYS`, every write is
//!   encrypted under the first key (compressed first, when compression is on), and sessions
//!   written before (plain, compressed, or under any listed key) stay readable; without it, an
//!   encrypted session is refused as corrupt, saying that no key is configured. Rotation: a new
//!   key first, the old ones after it; `sessionctl rekey` rewrites every session under the new
//!   key (resumable, conditional writes); then the old key can go. A key is never shown: the
//!   settings' `Display` and `Debug` and every error name the key ids only.
//! - **Deployments have their own key, `REDIS_DEPLOYMENT`**, not `REDIS_MODE`: `REDIS_MODE` is
//!   the connection mode (multiplexed or pool), which is a different question; `REDIS_MODE=
//!   cluster` (or `sentinel`) is accepted as a synonym of the deployment, multiplexed, and an
//!   error naming both when it disagrees with `REDIS_DEPLOYMENT`. Usually it need not be set:
//!   `REDIS_CLUSTER_NODES` means a cluster and `REDIS_SENTINELS` means Sentinel; both at once
//!   is an error naming both, unless `REDIS_DEPLOYMENT` chooses (`single` turns off a cluster
//!   or Sentinel of an earlier layer). A cluster takes `REDIS_USERNAME`, `REDIS_PASSWORD` and
//!   `REDIS_TLS` as one server does (a part set in a later layer than the node list overrides
//!   the nodes' own, one in the same layer must agree, one in an earlier layer fills nodes
//!   without one); `REDIS_DB` other than 0 is an error naming both. Sentinel keeps the
//!   sentinels' credentials apart from the data nodes': `REDIS_SENTINEL_USERNAME` and
//!   `REDIS_SENTINEL_PASSWORD` (or the sentinel URLs), by the same rule. `REDIS_URL`,
//!   `REDIS_HOST` or `REDIS_PORT` next to a cluster or Sentinel is a [`Warning`]: their host
//!   and port are not used. The pool is refused with either (a cluster multiplexes per node;
//!   a pool of Sentinel-found connections is not supported).
//! - **Replicated acknowledgement is off by default** (`REDIS_REPLICATED_ACK`): it costs about
//!   one primary-to-replica round trip per write, and only matters where a failover can
//!   happen. Its wait (default 100 ms) must be below the command timeout, checked at load.
//! - **Bounded reads are one switch, `SESSION_BOUNDED_READS`**, at the session size limit
//!   (`SESSION_MAX_BYTES`), not a second number: a session this library wrote is never larger.
//!
//! # Features
//!
//! None is on by default: a memory-only service compiles no Redis client
//! (`cargo tree -p session-config -e normal` shows no `redis` crate).
//!
//! - `redis`: the Redis store (session-redis' `driver`): `USE_REDIS=true` builds a
//!   `RedisStore`, and `Settings::redis_options` exists. Without it, `USE_REDIS=true` fails
//!   at [`Settings::build_store`] with a clear error.
//! - `tls` (implies `redis`): `rediss://` targets. Without it they fail at `build_store` and
//!   `redis_options` with a configuration error naming the setting.
//! - `pool` (implies `redis`): `REDIS_MODE=pool`. Without it, likewise.
//! - `cluster` (implies `redis`; session-redis' `cluster`): `REDIS_CLUSTER_NODES`. Without
//!   it, a cluster fails at `build_store` and `redis_options` with a configuration error naming
//!   the setting and the feature.
//! - `sentinel` (implies `redis`; session-redis' `sentinel`): `REDIS_SENTINELS`. Likewise.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
#![deny(missing_docs)]

mod build;
mod deployment;
mod encryption;
mod keys;
mod settings;
mod sources;
mod target;
mod values;

pub use build::{BuiltStore, FALLBACK_ACTIVE_GAUGE, Fallback};
pub use deployment::Deployment;
/// The Redis target types, defined once in session-redis (which compiles them without its
/// driver) and re-exported here so that configuration code needs one import.
pub use session_redis::{
    ClientIdentity, ConnectionMode, DEFAULT_COMMAND_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_HOST,
    DEFAULT_PORT, InvalidPrefix, KeyPrefix, MAX_PREFIX_LEN, RedisTarget, ReplicatedAck, Secret,
    SentinelConfig, TlsFiles,
};
#[cfg(feature = "redis")]
pub use session_redis::{RedisOptions, RedisStore};
pub use settings::{
    DEFAULT_POOL_SIZE, DEFAULT_REPLICATED_ACK_TIMEOUT, MAX_MODIFY_ATTEMPTS, MAX_POOL_SIZE,
    MAX_SESSION_BYTES, MIN_SESSION_BYTES, MemorySettings, RedisSettings, SessionSettings, Settings,
    Warning,
};
pub use sources::{DEFAULT_APP_ENV, Sources};

/// The README's examples, compiled (and run, unless marked `no_run`) as doctests of this crate,
/// which depends on everything they use.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
