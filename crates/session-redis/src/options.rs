//! [`RedisOptions`]: where the store connects, how, and under which key prefix.
//!
//! Built from a URL ([`RedisOptions::from_url`]) or from a [`RedisTarget`] made of parts, then
//! adjusted with the `with_*` methods. Parsing happens once, at the edge: a
//! [`RedisStore::connect`](crate::RedisStore) never sees an unvalidated string. These types need
//! no feature (they compile without the driver), so configuration code needs no `cfg`.

use std::{fmt, num::NonZeroUsize, path::PathBuf, time::Duration};

use session_core::{Error, Result};

use crate::{KeyPrefix, RedisTarget};

/// The key prefix used when none is configured: keys look like `cql:session:user-123`.
pub const DEFAULT_KEY_PREFIX: &str = KeyPrefix::DEFAULT;
/// How long connecting may take before Redis counts as unreachable: 2 s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one command may take before it counts as failed: 1 s.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(1);

/// The longest connect or command timeout accepted: one hour, as session-config allows.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// How the store holds its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ConnectionMode {
    /// One multiplexed connection shared by every task, replaced in the background when it
    /// times out, drops, or reaches a server that does not serve (`READONLY`, `LOADING`,
    /// `MASTERDOWN`; see the crate docs). The default: pipelining makes one connection enough
    /// for most services.
    #[default]
    Multiplexed,
    /// A pool of up to `max_size` multiplexed connections (deadpool-redis), for blocking or
    /// very large commands. Needs the crate feature `pool`; without it,
    /// [`RedisStore::connect`](crate::RedisStore) fails with [`Error::Config`].
    Pool {
        /// The most connections the pool opens.
        max_size: NonZeroUsize,
    },
}

impl fmt::Display for ConnectionMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Multiplexed => f.write_str("multiplexed"),
            Self::Pool { max_size } => write!(f, "pool of up to {max_size}"),
        }
    }
}

/// Files for TLS (`rediss://`): a CA bundle to trust, and a client certificate with its key.
///
/// Paths are read when the store connects. Without a CA file the system's trust store is
/// used. Needs the crate feature `tls`.
///
/// ```
/// use session_redis::{ClientIdentity, TlsFiles};
///
/// let files = TlsFiles::new()
///     .with_ca_file("/etc/ssl/redis-ca.pem")
///     .with_client(ClientIdentity::new("/etc/ssl/client.pem", "/etc/ssl/client.key"));
/// assert!(!files.is_empty());
/// assert!(TlsFiles::default().is_empty());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsFiles {
    /// A PEM file of CA certificates to trust instead of the system's
    /// (`REDIS_TLS_CA_FILE`).
    pub ca_file: Option<PathBuf>,
    /// A client certificate and its key, for servers that require client authentication.
    pub client: Option<ClientIdentity>,
}

impl TlsFiles {
    /// No file: the system's trust store, no client certificate.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts the CA certificates in this PEM file instead of the system's.
    #[must_use]
    pub fn with_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Presents this client certificate (mutual TLS).
    #[must_use]
    pub fn with_client(mut self, client: ClientIdentity) -> Self {
        self.client = Some(client);
        self
    }

    /// Whether no file is set.
    pub fn is_empty(&self) -> bool {
        self.ca_file.is_none() && self.client.is_none()
    }
}

/// A client certificate and its private key (both PEM), which only come together: a
/// certificate without its key cannot be expressed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientIdentity {
    /// The certificate chain (`REDIS_TLS_CERT_FILE`).
    pub cert_file: PathBuf,
    /// The private key (`REDIS_TLS_KEY_FILE`).
    pub key_file: PathBuf,
}

impl ClientIdentity {
    /// A certificate and its key.
    pub fn new(cert_file: impl Into<PathBuf>, key_file: impl Into<PathBuf>) -> Self {
        Self {
            cert_file: cert_file.into(),
            key_file: key_file.into(),
        }
    }
}

/// Everything [`RedisStore::connect`](crate::RedisStore) needs.
///
/// With the feature `driver`, `client()` and `connection_config()` build the redis-rs client
/// the store uses, for commands the store does not offer.
///
/// ```
/// use std::time::Duration;
/// use session_redis::{ConnectionMode, RedisOptions};
///
/// let options = RedisOptions::from_url("redis://:hunter2@127.0.0.1:6380/1")?
///     .with_key_prefix("myapp:session:")?
///     .with_command_timeout(Duration::from_millis(500))
///     .with_mode(ConnectionMode::Multiplexed);
/// assert_eq!(options.redacted_url(), "redis://:***@127.0.0.1:6380/1");
/// assert!(!format!("{options:?}").contains("hunter2"));
/// # Ok::<(), session_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisOptions {
    target: RedisTarget,
    key_prefix: KeyPrefix,
    connect_timeout: Duration,
    command_timeout: Duration,
    mode: ConnectionMode,
    tls_files: TlsFiles,
    read_limit: Option<usize>,
    cluster: Vec<RedisTarget>,
    replicated_ack: Option<ReplicatedAck>,
    sentinel: Option<SentinelConfig>,
}

/// Where Sentinel finds the master ([`RedisOptions::with_sentinels`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelConfig {
    /// The sentinels; their own user and password come from the first one's URL.
    pub sentinels: Vec<RedisTarget>,
    /// The name the sentinels monitor the master under (`sentinel monitor <name> ...`).
    pub master: String,
}

/// Replicated acknowledgement ([`RedisOptions::with_replicated_ack`]): a write counts as done
/// only once this many replicas have it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicatedAck {
    /// How many replicas must confirm the write.
    pub replicas: u32,
    /// How long the primary waits for them (`WAIT`'s timeout).
    pub timeout: Duration,
}

impl RedisOptions {
    /// Options for `target` with every default: prefix `cql:session:`, connect timeout 2 s,
    /// command timeout 1 s, one multiplexed connection, no TLS files.
    pub fn new(target: RedisTarget) -> Self {
        Self {
            target,
            key_prefix: KeyPrefix::default(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            mode: ConnectionMode::Multiplexed,
            tls_files: TlsFiles::default(),
            read_limit: None,
            cluster: Vec::new(),
            replicated_ack: None,
            sentinel: None,
        }
    }

    /// Finds the master through Redis Sentinel (feature `sentinel` to connect): on every
    /// (re)connect the store asks `sentinels` for the master monitored as `master`, checks
    /// with `ROLE` that it is one, and connects to it. A connection that answers `READONLY`
    /// (a demoted master) or drops is replaced, and the replacement asks the sentinels again:
    /// the store follows a failover within its time bounds. The options' target gives the
    /// data nodes' user, password, database and TLS (its host and port are not used); each
    /// sentinel URL may carry the sentinels' own user and password (the first one's apply).
    ///
    /// Errors: [`Error::Config`] naming `REDIS_SENTINELS` for no sentinel or an empty master
    /// name, or a cluster as well.
    pub fn with_sentinels(
        mut self,
        sentinels: Vec<RedisTarget>,
        master: impl Into<String>,
    ) -> Result<Self> {
        let master = master.into();
        if sentinels.is_empty() {
            return Err(Error::config(
                "REDIS_SENTINELS",
                "",
                "at least one sentinel URL (redis://host:26379, comma-separated)",
            ));
        }
        if master.trim().is_empty() || master.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Error::config(
                "REDIS_SENTINEL_MASTER",
                master,
                "the master's name as the sentinels monitor it (no spaces)",
            ));
        }
        if self.is_cluster() {
            return Err(Error::config(
                "REDIS_SENTINELS",
                "(with REDIS_CLUSTER_NODES)",
                "either Sentinel or a cluster, not both",
            ));
        }
        self.sentinel = Some(SentinelConfig { sentinels, master });
        Ok(self)
    }

    /// Where Sentinel finds the master, if set.
    pub fn sentinel(&self) -> Option<&SentinelConfig> {
        self.sentinel.as_ref()
    }

    /// Options for a Redis Cluster (or Valkey in cluster mode) reached through `nodes`: a few
    /// of its nodes, from which the client learns the rest (feature `cluster` to connect).
    /// Every node takes the first one's credentials and TLS; a cluster has only database 0.
    ///
    /// A session's write stays in one slot (its staged record shares the session key's slot);
    /// listings and counts visit every primary.
    ///
    /// Errors: [`Error::Config`] naming `REDIS_CLUSTER_NODES` for no node, a database other
    /// than 0, or nodes that disagree on TLS or on credentials.
    pub fn cluster(nodes: Vec<RedisTarget>) -> Result<Self> {
        let Some(first) = nodes.first().cloned() else {
            return Err(Error::config(
                "REDIS_CLUSTER_NODES",
                "",
                "at least one node URL (redis://host:port, comma-separated)",
            ));
        };
        for node in &nodes {
            let refuse = |expected: &str| {
                Err(Error::config(
                    "REDIS_CLUSTER_NODES",
                    node.redacted_url(),
                    expected.to_owned(),
                ))
            };
            if node.db() != 0 {
                return refuse("database 0: a cluster has no other database");
            }
            if node.tls() != first.tls() {
                return refuse("the same scheme on every node (all redis:// or all rediss://)");
            }
            let credentials_differ = (node.username().is_some() || node.password().is_some())
                && (node.username() != first.username()
                    || node.password().map(|p| p.expose()) != first.password().map(|p| p.expose()));
            if credentials_differ {
                return refuse(
                    "the first node's user and password, or none (every node takes the first's)",
                );
            }
        }
        let mut options = Self::new(first);
        options.cluster = nodes;
        Ok(options)
    }

    /// [`cluster`](Self::cluster) from comma-separated `redis://`/`rediss://` URLs (what
    /// `REDIS_CLUSTER_NODES` holds).
    pub fn from_cluster_urls(urls: &str) -> Result<Self> {
        let nodes = urls
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(|u| {
                RedisTarget::parse(u).map_err(|e| match e {
                    Error::Config {
                        value, expected, ..
                    } => Error::Config {
                        key: "REDIS_CLUSTER_NODES".into(),
                        value,
                        expected,
                    },
                    other => other,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Self::cluster(nodes)
    }

    /// The cluster's seed nodes; empty for one server (or Sentinel).
    pub fn cluster_nodes(&self) -> &[RedisTarget] {
        &self.cluster
    }

    /// Whether these options name a cluster.
    pub fn is_cluster(&self) -> bool {
        !self.cluster.is_empty()
    }

    /// Options for a `redis://` or `rediss://` URL (see [`RedisTarget::parse`]).
    ///
    /// Errors: [`Error::Config`] naming `REDIS_URL`, the password masked.
    pub fn from_url(url: &str) -> Result<Self> {
        Ok(Self::new(RedisTarget::parse(url)?))
    }

    /// Sets the key prefix from text (default `cql:session:`), validated as [`KeyPrefix`]
    /// says.
    ///
    /// Errors: [`Error::Config`] naming `REDIS_KEY_PREFIX`.
    pub fn with_key_prefix(self, prefix: impl Into<String>) -> Result<Self> {
        let prefix = prefix.into();
        match KeyPrefix::new(prefix.clone()) {
            Ok(prefix) => Ok(self.with_prefix(prefix)),
            Err(e) => Err(Error::config(
                "REDIS_KEY_PREFIX",
                format!("{:?}", prefix.chars().take(100).collect::<String>()),
                format!("{} ({e})", KeyPrefix::EXPECTED),
            )),
        }
    }

    /// Sets an already validated key prefix.
    #[must_use]
    pub fn with_prefix(mut self, prefix: KeyPrefix) -> Self {
        self.key_prefix = prefix;
        self
    }

    /// Sets how long connecting (TCP, TLS, AUTH, SELECT, PING) may take (default 2 s), and so
    /// how long any request may wait for a connection: a reconnect in flight, or a free
    /// pooled connection.
    ///
    /// With the command timeout it bounds every call of the store, whatever the server does
    /// (see the crate docs, "Time bounds"): one round trip returns within connect + command
    /// timeout (3 s by default), a write within three times that (9 s).
    #[must_use]
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets how long one command may wait for its reply (default 1 s). A connection that
    /// lets a command wait this long is replaced, never reused.
    ///
    /// With the connect timeout it bounds every call of the store, whatever the server does
    /// (see the crate docs, "Time bounds"): one round trip returns within connect + command
    /// timeout (3 s by default), a write within three times that (9 s).
    #[must_use]
    pub fn with_command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// Chooses one multiplexed connection or a pool.
    #[must_use]
    pub fn with_mode(mut self, mode: ConnectionMode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets the TLS files (used with `rediss://`).
    #[must_use]
    pub fn with_tls_files(mut self, files: TlsFiles) -> Self {
        self.tls_files = files;
        self
    }

    /// Bounded reads: `load` refuses a stored payload larger than `max_bytes` with
    /// [`Error::TooLarge`](session_core::Error::TooLarge) before any of it leaves Redis
    /// (set it to the codec's size limit). Off by default.
    ///
    /// A plain load is one pipeline of `GET` and `PTTL`, which cannot look at a size before
    /// sending the payload; a bounded load is one small script (`STRLEN` and the meta's length,
    /// then `GET` and `PTTL` only if the payload fits): still one round trip, but several µs
    /// more server time per load (a Lua call's fixed cost, and the reply copied through Lua). Turn it on
    /// where anything but this library can write the session keys, or where a client must
    /// never allocate more than the limit whatever Redis holds; writes through this library
    /// never store more than the codec's limit anyway.
    #[must_use]
    pub fn with_read_limit(mut self, max_bytes: usize) -> Self {
        self.read_limit = Some(max_bytes);
        self
    }

    /// Replicated acknowledgement: every write also sends `WAIT replicas timeout` in its
    /// pipeline, and counts as done only when at least `replicas` replicas confirmed it. A
    /// write that fewer confirmed in time landed on the primary but may be lost by a failover:
    /// it ends as [`Error::OutcomeUnknown`](session_core::Error::OutcomeUnknown) (do not
    /// retry blindly), never as success. Off by default.
    ///
    /// Cost: the write's reply waits for the replicas' acknowledgement, about one more round
    /// trip between primary and replica (well under a millisecond on one host; a network
    /// hop elsewhere). `timeout` must be below the command timeout, or the request itself
    /// would time out first. Works on one server with replicas, Sentinel and Cluster
    /// (`WAIT` goes to the primary that took the write). Asynchronous replication still
    /// applies to writes in flight when a primary dies: only confirmed writes are safe.
    #[must_use]
    pub fn with_replicated_ack(mut self, replicas: u32, timeout: Duration) -> Self {
        self.replicated_ack = Some(ReplicatedAck { replicas, timeout });
        self
    }

    /// The replicated acknowledgement, if set.
    pub fn replicated_ack(&self) -> Option<ReplicatedAck> {
        self.replicated_ack
    }

    /// The bounded-read limit, if set ([`with_read_limit`](Self::with_read_limit)).
    pub fn read_limit(&self) -> Option<usize> {
        self.read_limit
    }

    /// The server and credentials.
    pub fn target(&self) -> &RedisTarget {
        &self.target
    }

    /// The key prefix.
    pub fn key_prefix(&self) -> &str {
        self.key_prefix.as_str()
    }

    /// The connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The command timeout.
    pub fn command_timeout(&self) -> Duration {
        self.command_timeout
    }

    /// The connection mode.
    pub fn mode(&self) -> ConnectionMode {
        self.mode
    }

    /// The TLS files.
    pub fn tls_files(&self) -> &TlsFiles {
        &self.tls_files
    }

    /// The target URL with the password masked.
    pub fn redacted_url(&self) -> String {
        if let Some(sentinel) = &self.sentinel {
            let sentinels: Vec<String> = sentinel
                .sentinels
                .iter()
                .map(|s| format!("{}:{}", s.host(), s.port()))
                .collect();
            format!(
                "{} (master {:?} through sentinels {})",
                self.target.redacted_url(),
                sentinel.master,
                sentinels.join(",")
            )
        } else if self.cluster.is_empty() {
            self.target.redacted_url()
        } else {
            let n = self.cluster.len();
            format!("{} (cluster, {n} seed nodes)", self.target.redacted_url())
        }
    }

    /// Checks what the types do not: timeouts above zero. Target, prefix, pool size and the
    /// certificate/key pairing are valid by construction.
    #[cfg_attr(not(feature = "driver"), allow(dead_code))]
    /// Checks the timeouts: above zero, and at most [`MAX_TIMEOUT`] (deadlines are computed
    /// as `now + timeout`, which must not overflow).
    pub(crate) fn validate(&self) -> Result<()> {
        for (key, timeout) in [
            ("REDIS_CONNECT_TIMEOUT_MS", self.connect_timeout),
            ("REDIS_COMMAND_TIMEOUT_MS", self.command_timeout),
        ] {
            if timeout.is_zero() {
                return Err(Error::config(key, "0", "a timeout above zero"));
            }
            if timeout > MAX_TIMEOUT {
                return Err(Error::config(
                    key,
                    format!("{}", timeout.as_millis()),
                    "a timeout of at most one hour (3600000 ms)",
                ));
            }
        }
        if let Some(ack) = self.replicated_ack {
            if ack.replicas == 0 {
                return Err(Error::config(
                    "REDIS_REPLICATED_ACK",
                    "0",
                    "at least one replica (or no replicated acknowledgement at all)",
                ));
            }
            if ack.timeout.is_zero() || ack.timeout >= self.command_timeout {
                return Err(Error::config(
                    "REDIS_REPLICATED_ACK_TIMEOUT_MS",
                    format!("{}", ack.timeout.as_millis()),
                    format!(
                        "a wait above zero and below the command timeout ({} ms): WAIT 0 \
                         waits for ever, and a longer wait would time the request out",
                        self.command_timeout.as_millis()
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn config_err(r: Result<impl fmt::Debug>) -> String {
        match r {
            Err(e @ Error::Config { .. }) => e.to_string(),
            other => panic!("expected Config, got {other:?}"),
        }
    }

    #[test]
    fn debug_and_redacted_url_never_show_the_password() {
        let o = RedisOptions::from_url("rediss://user:topsecret@example.com:6390/2").unwrap();
        assert_eq!(o.redacted_url(), "rediss://user:***@example.com:6390/2");
        let dbg = format!("{o:?}");
        assert!(!dbg.contains("topsecret"), "{dbg}");
        assert!(
            dbg.contains("rediss://user:***@example.com:6390/2"),
            "{dbg}"
        );
        let dbg = format!("{:?}", o.target().password());
        assert!(!dbg.contains("topsecret"), "{dbg}");
    }

    #[test]
    fn prefixes_with_glob_characters_are_refused() {
        let o = RedisOptions::new(RedisTarget::default());
        assert_eq!(o.key_prefix(), DEFAULT_KEY_PREFIX);
        for bad in [
            "",
            "a*",
            "a?",
            "a[",
            "a]",
            "a\\",
            "a b",
            "a\n",
            &"x".repeat(65),
        ] {
            let text = config_err(o.clone().with_key_prefix(bad));
            assert!(text.contains("REDIS_KEY_PREFIX"), "{text}");
        }
        assert_eq!(
            o.with_key_prefix("app:{s}:").unwrap().key_prefix(),
            "app:{s}:"
        );
    }

    #[test]
    fn validation_catches_zero_timeouts() {
        let o = RedisOptions::new(RedisTarget::default());
        config_err(o.clone().with_connect_timeout(Duration::ZERO).validate());
        config_err(o.clone().with_command_timeout(Duration::ZERO).validate());
        config_err(o.clone().with_command_timeout(Duration::MAX).validate());
        config_err(
            o.clone()
                .with_connect_timeout(MAX_TIMEOUT + Duration::from_millis(1))
                .validate(),
        );
        assert!(o.validate().is_ok());
    }

    #[test]
    fn connection_modes_read_well() {
        assert_eq!(ConnectionMode::default().to_string(), "multiplexed");
        let pool = ConnectionMode::Pool {
            max_size: NonZeroUsize::new(4).unwrap(),
        };
        assert_eq!(pool.to_string(), "pool of up to 4");
    }
}
