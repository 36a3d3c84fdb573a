//! [`RedisOptions`]: where the store connects, how, and under which key prefix.
//!
//! Built from a URL ([`RedisOptions::from_url`]) or from parts ([`RedisTarget::new`] and its
//! setters), then adjusted with the `with_*` methods. Parsing happens here, once: a
//! [`RedisStore::connect`](crate::RedisStore::connect) never sees an unvalidated string.

use std::{fmt, path::PathBuf, time::Duration};

use session_core::{Error, Result};

/// The key prefix used when none is configured: keys look like `cql:session:user-123`.
pub const DEFAULT_KEY_PREFIX: &str = "cql:session:";
/// Connect timeout used when none is configured.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Command (response) timeout used when none is configured.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(1);
/// Port used when a URL or the parts name none.
pub const DEFAULT_PORT: u16 = 6379;
/// Longest accepted key prefix, in bytes.
pub const MAX_PREFIX_LEN: usize = 256;

const MASK: &str = "***";

/// A password that never shows in `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself: only for handing it to the driver.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

/// Which Redis server to talk to and as whom: host, port, database, ACL user, password, TLS.
///
/// ```
/// use session_redis::RedisTarget;
///
/// let target = RedisTarget::parse("redis://app:s3cret@10.0.0.5:6380/2")?;
/// assert_eq!((target.host(), target.port(), target.db()), ("10.0.0.5", 6380, 2));
/// assert_eq!(target.redacted_url(), "redis://app:***@10.0.0.5:6380/2");
/// assert!(!format!("{target:?}").contains("s3cret"));
///
/// let parts = RedisTarget::new("localhost", 6379).with_db(1).with_password("pw");
/// assert_eq!(parts.redacted_url(), "redis://:***@localhost:6379/1");
/// # Ok::<(), session_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct RedisTarget {
    host: String,
    port: u16,
    db: i64,
    username: Option<String>,
    password: Option<Secret>,
    tls: bool,
}

impl RedisTarget {
    /// A plain (no TLS, no credentials) target on database 0.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
            db: 0,
            username: None,
            password: None,
            tls: false,
        }
    }

    /// Parses `redis://[user][:password@]host[:port][/db]`, or `rediss://` for TLS.
    /// User and password are percent-decoded. Query parameters and fragments are refused
    /// (in particular redis-rs' `#insecure`, which would turn certificate checks off).
    ///
    /// Errors are [`Error::Config`] under the key `REDIS_URL`, with the password masked.
    pub fn parse(input: &str) -> Result<Self> {
        let bad = |expected: &str| Error::config("REDIS_URL", redact_raw_url(input), expected);
        let url = url::Url::parse(input.trim())
            .map_err(|e| bad(&format!("a URL like redis://host:6379/0 ({e})")))?;
        let tls = match url.scheme() {
            "redis" => false,
            "rediss" => true,
            _ => return Err(bad("a redis:// or rediss:// URL")),
        };
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad(
                "no query parameters or fragment after the database number",
            ));
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => d.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            _ => return Err(bad("a host name after ://")),
        };
        let db = match url.path().trim_start_matches('/') {
            "" => 0,
            n => n
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| bad("a database number (0, 1, ...) as the URL path"))?,
        };
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| bad("user and password in UTF-8 (percent-encoded)"))
        };
        let username = Some(decode(url.username())?).filter(|u| !u.is_empty());
        let password = url.password().map(decode).transpose()?.map(Secret);
        Ok(Self {
            host,
            port: url.port().unwrap_or(DEFAULT_PORT),
            db,
            username,
            password,
            tls,
        })
    }

    /// Selects a database (`SELECT n` on every connection).
    #[must_use]
    pub fn with_db(mut self, db: i64) -> Self {
        self.db = db;
        self
    }

    /// Authenticates as this ACL user (needs a password too).
    #[must_use]
    pub fn with_username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into()).filter(|u| !u.is_empty());
        self
    }

    /// Authenticates with this password (`AUTH password`, or `AUTH user password`).
    #[must_use]
    pub fn with_password(mut self, password: impl Into<Secret>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Uses TLS (`rediss://`).
    #[must_use]
    pub fn with_tls(mut self, tls: bool) -> Self {
        self.tls = tls;
        self
    }

    /// The host name or IP address.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The database number.
    pub fn db(&self) -> i64 {
        self.db
    }

    /// The ACL user, if any.
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// The password, if any.
    pub fn password(&self) -> Option<&Secret> {
        self.password.as_ref()
    }

    /// Whether the connection uses TLS.
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// The target as a URL with the password replaced by `***`: safe for logs and errors.
    pub fn redacted_url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let user = self.username.as_deref().unwrap_or("");
        let userinfo = match (&self.username, &self.password) {
            (_, Some(_)) => format!("{user}:{MASK}@"),
            (Some(_), None) => format!("{user}@"),
            (None, None) => String::new(),
        };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{scheme}://{userinfo}{host}:{}/{}", self.port, self.db)
    }

    fn validate(&self) -> Result<()> {
        if self.host.is_empty() || self.host.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err(Error::config(
                "REDIS_HOST",
                format!("{:?}", self.host),
                "a host name or IP address",
            ));
        }
        if self.port == 0 {
            return Err(Error::config("REDIS_PORT", "0", "a port from 1 to 65535"));
        }
        if self.db < 0 {
            return Err(Error::config(
                "REDIS_DB",
                self.db.to_string(),
                "a database number >= 0",
            ));
        }
        Ok(())
    }
}

impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RedisTarget")
            .field(&self.redacted_url())
            .finish()
    }
}

impl fmt::Display for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted_url())
    }
}

/// How the store holds its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ConnectionMode {
    /// One multiplexed connection shared by every task (`redis::aio::ConnectionManager`),
    /// reconnecting in the background after a drop. The default: pipelining makes one
    /// connection enough for most services.
    #[default]
    Multiplexed,
    /// A deadpool-redis pool of up to `max_size` multiplexed connections. Needs the crate
    /// feature `pool`; without it, [`RedisStore::connect`](crate::RedisStore::connect) fails
    /// with [`Error::Config`].
    Pool {
        /// Most connections open at once (at least 1).
        max_size: usize,
    },
}

/// Files for TLS: a CA bundle to trust and an optional client certificate (mutual TLS).
///
/// Paths are read when the store connects. Without a CA file the system's trust store is
/// used. Needs the crate feature `tls`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM file with the CA certificate(s) that signed the server's certificate.
    pub ca_file: Option<PathBuf>,
    /// PEM file with the client certificate chain, for servers that require one.
    pub client_cert: Option<PathBuf>,
    /// PEM file with the client certificate's private key.
    pub client_key: Option<PathBuf>,
}

/// Everything [`RedisStore::connect`](crate::RedisStore::connect) needs.
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
    key_prefix: String,
    connect_timeout: Duration,
    command_timeout: Duration,
    mode: ConnectionMode,
    tls_files: TlsFiles,
}

impl RedisOptions {
    /// Options for `target` with every default: prefix `cql:session:`, connect timeout 2 s,
    /// command timeout 1 s, one multiplexed connection.
    pub fn new(target: RedisTarget) -> Self {
        Self {
            target,
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            mode: ConnectionMode::Multiplexed,
            tls_files: TlsFiles::default(),
        }
    }

    /// Options for a `redis://` or `rediss://` URL (see [`RedisTarget::parse`]).
    pub fn from_url(url: &str) -> Result<Self> {
        Ok(Self::new(RedisTarget::parse(url)?))
    }

    /// Sets the key prefix (default `cql:session:`). Refuses an empty prefix, one longer
    /// than [`MAX_PREFIX_LEN`], and one with whitespace, control characters or the Redis glob
    /// characters `* ? [ ] \` (listing escapes them anyway).
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Result<Self> {
        let prefix = prefix.into();
        validate_prefix(&prefix)?;
        self.key_prefix = prefix;
        Ok(self)
    }

    /// Sets how long connecting (TCP, TLS, AUTH, SELECT, PING) may take (default 2 s).
    #[must_use]
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets how long one command may wait for its reply (default 1 s).
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

    /// The server and credentials.
    pub fn target(&self) -> &RedisTarget {
        &self.target
    }

    /// The key prefix.
    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
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
        self.target.redacted_url()
    }

    /// Checks everything that can be checked without the network.
    pub(crate) fn validate(&self) -> Result<()> {
        self.target.validate()?;
        validate_prefix(&self.key_prefix)?;
        for (key, timeout) in [
            ("REDIS_CONNECT_TIMEOUT", self.connect_timeout),
            ("REDIS_COMMAND_TIMEOUT", self.command_timeout),
        ] {
            if timeout.is_zero() {
                return Err(Error::config(key, "0", "a timeout above zero"));
            }
        }
        if let ConnectionMode::Pool { max_size: 0 } = self.mode {
            return Err(Error::config("REDIS_POOL_SIZE", "0", "at least 1"));
        }
        if (self.tls_files.client_cert.is_some()) != (self.tls_files.client_key.is_some()) {
            return Err(Error::config(
                "REDIS_TLS_CLIENT_CERT",
                "only one of certificate and key",
                "both a client certificate and its key, or neither",
            ));
        }
        Ok(())
    }
}

fn validate_prefix(prefix: &str) -> Result<()> {
    let bad = |expected: &str| {
        Error::config(
            "REDIS_KEY_PREFIX",
            format!("{:?}", prefix.chars().take(64).collect::<String>()),
            expected,
        )
    };
    if prefix.is_empty() {
        return Err(bad("a non-empty prefix such as cql:session:"));
    }
    if prefix.len() > MAX_PREFIX_LEN {
        return Err(bad("at most 256 bytes"));
    }
    if prefix
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '*' | '?' | '[' | ']' | '\\'))
    {
        return Err(bad(
            "no whitespace, control characters or glob characters * ? [ ] \\",
        ));
    }
    Ok(())
}

/// Masks the userinfo of a URL that may not even parse, for error messages.
pub(crate) fn redact_raw_url(input: &str) -> String {
    let input = input.trim();
    let Some(scheme_end) = input.find("://") else {
        // Not a URL at all: it might be a bare password pasted in the wrong place.
        return "<not a URL; not shown>".to_owned();
    };
    let rest = &input[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let shown = match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}://{MASK}@{}", &input[..scheme_end], &rest[at + 1..]),
        None => input.to_owned(),
    };
    shown
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_err(r: Result<impl fmt::Debug>) -> String {
        match r {
            Err(e @ Error::Config { .. }) => e.to_string(),
            other => panic!("expected Config, got {other:?}"),
        }
    }

    #[test]
    fn urls_parse_into_parts() {
        let t = RedisTarget::parse("redis://127.0.0.1:6380/3").unwrap();
        assert_eq!(
            (t.host(), t.port(), t.db(), t.tls()),
            ("127.0.0.1", 6380, 3, false)
        );
        assert_eq!((t.username(), t.password()), (None, None));
        let t = RedisTarget::parse("rediss://localhost").unwrap();
        assert_eq!(
            (t.host(), t.port(), t.db(), t.tls()),
            ("localhost", 6379, 0, true)
        );
        let t = RedisTarget::parse("redis://app:p%40ss%3Aw@h/").unwrap();
        assert_eq!(t.username(), Some("app"));
        assert_eq!(t.password().map(Secret::expose), Some("p@ss:w"));
        let t = RedisTarget::parse("redis://:only@h:1").unwrap();
        assert_eq!(
            (t.username(), t.password().map(Secret::expose)),
            (None, Some("only"))
        );
        let t = RedisTarget::parse("redis://[::1]:7000").unwrap();
        assert_eq!(t.host(), "::1");
        assert_eq!(t.redacted_url(), "redis://[::1]:7000/0");
    }

    #[test]
    fn bad_urls_are_config_errors_without_the_password() {
        for bad in [
            "http://:secretpw@h:1",
            "redis://:secretpw@h:1/x",
            "redis://:secretpw@h:1/-1",
            "redis://:secretpw@h:1/0?protocol=resp3",
            "rediss://:secretpw@h:1/#insecure",
            "redis://:secretpw@:1",
            "secretpw",
            "redis://:secretpw@h:99999",
        ] {
            let text = config_err(RedisTarget::parse(bad));
            assert!(!text.contains("secretpw"), "{bad}: {text}");
            assert!(text.contains("REDIS_URL"), "{text}");
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
        let o = RedisOptions::new(RedisTarget::new("h", 1));
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
            &"x".repeat(257),
        ] {
            config_err(o.clone().with_key_prefix(bad));
        }
        assert_eq!(
            o.with_key_prefix("app:{s}:").unwrap().key_prefix(),
            "app:{s}:"
        );
    }

    #[test]
    fn validation_catches_zero_values() {
        let o = RedisOptions::new(RedisTarget::new("h", 1));
        config_err(o.clone().with_connect_timeout(Duration::ZERO).validate());
        config_err(
            o.clone()
                .with_mode(ConnectionMode::Pool { max_size: 0 })
                .validate(),
        );
        config_err(RedisOptions::new(RedisTarget::new("h", 0)).validate());
        config_err(RedisOptions::new(RedisTarget::new("", 1)).validate());
        let half = TlsFiles {
            client_cert: Some("c.pem".into()),
            ..TlsFiles::default()
        };
        config_err(o.clone().with_tls_files(half).validate());
        assert!(o.validate().is_ok());
    }

    #[test]
    fn raw_url_redaction() {
        assert_eq!(redact_raw_url("redis://u:pw@h:1/0"), "redis://***@h:1/0");
        assert_eq!(redact_raw_url("redis://h:1/0"), "redis://h:1/0");
        assert_eq!(redact_raw_url("pw"), "<not a URL; not shown>");
        assert_eq!(redact_raw_url("redis://a@b@h/x@y"), "redis://***@h/x@y");
    }
}
