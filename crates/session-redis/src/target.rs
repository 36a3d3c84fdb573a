//! [`RedisTarget`]: one validated Redis server address, from a URL or from parts. The only URL
//! parser of the project: session-config builds its targets here too.

use std::{fmt, net::Ipv6Addr, str::FromStr};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use session_core::{Error, quote_for_humans};

use crate::Secret;

/// How many characters of a value (a host, a masked URL) an error message quotes.
const QUOTE_MAX_CHARS: usize = 100;

/// The Redis port when none is given.
pub const DEFAULT_PORT: u16 = 6379;
/// The Redis host when none is given.
pub const DEFAULT_HOST: &str = "localhost";

/// What a user name or password is percent-encoded with in a URL: everything but the
/// unreserved characters of RFC 3986.
const USERINFO: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// What `REDIS_URL` accepts, for error messages.
const URL_EXPECTED: &str =
    "a URL like redis://[user][:password@]host[:port][/db] (rediss:// for TLS)";
/// What a host accepts, for error messages.
const HOST_EXPECTED: &str =
    "a host name (letters, digits, '.', '-', '_'), an IPv4 address or an IPv6 address";
/// What a port accepts, for error messages.
const PORT_EXPECTED: &str = "a port number from 1 to 65535";
/// What a database index accepts, for error messages.
const DB_EXPECTED: &str = "a database number from 0 to 4294967295 (Redis has 0-15 unless \
     `databases` is raised)";

/// Where the sessions live: TLS or not, host, port, database index and credentials.
///
/// Built from a `redis://` / `rediss://` URL ([`RedisTarget::parse`]) or from parts
/// ([`RedisTarget::new`] and the `with_*` methods), validated either way. `Display` and
/// `Debug` mask the password (`redis://user:***@host:6379/0`, also
/// [`redacted_url`](Self::redacted_url)); only [`connection_url`](Self::connection_url) holds it.
///
/// Errors are [`Error::Config`] keyed as the environment spells the setting (`REDIS_URL`,
/// `REDIS_HOST`, `REDIS_PORT`); session-config re-keys them to the key the user actually set
/// (`redis.url` in a file, say).
///
/// ```
/// use session_redis::RedisTarget;
///
/// let target = RedisTarget::parse("rediss://app:s%40cret@cache.internal:6380/2")?;
/// assert!(target.tls());
/// assert_eq!((target.host(), target.port(), target.db()), ("cache.internal", 6380, 2));
/// assert_eq!(target.username(), Some("app"));
/// assert_eq!(target.password().map(|p| p.expose()), Some("s@cret"));
/// assert_eq!(target.to_string(), "rediss://app:***@cache.internal:6380/2");
/// assert_eq!(target.connection_url(), "rediss://app:s%40cret@cache.internal:6380/2");
///
/// let parts = RedisTarget::new("localhost", 6379)?.with_db(1).with_password("pw");
/// assert_eq!(parts.redacted_url(), "redis://:***@localhost:6379/1");
/// assert!(!format!("{parts:?}").contains("pw"));
/// # Ok::<(), session_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct RedisTarget {
    tls: bool,
    host: String,
    port: u16,
    db: u32,
    username: Option<String>,
    password: Option<Secret>,
}

impl RedisTarget {
    /// A plain (non-TLS) target on `host:port`, database 0, no credentials. `host` may be an
    /// IPv6 address, with or without brackets.
    ///
    /// Errors: [`Error::Config`] naming `REDIS_HOST` or `REDIS_PORT`.
    pub fn new(host: &str, port: u16) -> Result<Self, Error> {
        let host = validate_host(host).ok_or_else(|| {
            Error::config(
                "REDIS_HOST",
                quote_for_humans(host, QUOTE_MAX_CHARS),
                HOST_EXPECTED,
            )
        })?;
        if port == 0 {
            return Err(Error::config("REDIS_PORT", "0", PORT_EXPECTED));
        }
        Ok(Self {
            tls: false,
            host,
            port,
            db: 0,
            username: None,
            password: None,
        })
    }

    /// Parses a `redis://` or `rediss://` URL: `redis://[user][:password@]host[:port][/db]`.
    /// User name and password are percent-decoded; the port defaults to 6379 and the
    /// database to 0. Query strings and fragments are refused (every option has its own
    /// setting), and so is any other scheme.
    ///
    /// Errors: [`Error::Config`] naming `REDIS_URL`, with the password masked in the value.
    pub fn parse(url: &str) -> Result<Self, Error> {
        parse_url(url).map_err(|expected| Error::config("REDIS_URL", mask_url(url), expected))
    }

    /// With TLS (`rediss://`) or without.
    #[must_use]
    pub fn with_tls(mut self, tls: bool) -> Self {
        self.tls = tls;
        self
    }

    /// With database `db`.
    #[must_use]
    pub fn with_db(mut self, db: u32) -> Self {
        self.db = db;
        self
    }

    /// Authenticates as this ACL user (`AUTH user password`; an empty name means the default
    /// user).
    #[must_use]
    pub fn with_username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into()).filter(|u| !u.is_empty());
        self
    }

    /// Authenticates with this password (`AUTH password`; an empty password means no `AUTH`).
    #[must_use]
    pub fn with_password(mut self, password: impl Into<Secret>) -> Self {
        self.password = Some(password.into()).filter(|p| !p.expose().is_empty());
        self
    }

    /// Whether the connection uses TLS (`rediss://`).
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// The host: a name, an IPv4 address or an IPv6 address (without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The database index.
    pub fn db(&self) -> u32 {
        self.db
    }

    /// The ACL user name, if any.
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// The password, if any.
    pub fn password(&self) -> Option<&Secret> {
        self.password.as_ref()
    }

    /// The scheme: `redis` or `rediss`.
    pub fn scheme(&self) -> &'static str {
        if self.tls { "rediss" } else { "redis" }
    }

    /// The full URL for the driver, **with the password in clear text** (percent-encoded).
    /// Never log it; log [`redacted_url`](Self::redacted_url) (or the target's `Display`).
    pub fn connection_url(&self) -> String {
        self.render(false)
    }

    /// The URL with the password replaced by `***`: safe for logs and errors. Same as
    /// `Display`.
    pub fn redacted_url(&self) -> String {
        self.render(true)
    }

    /// The URL, the password masked or not.
    fn render(&self, masked: bool) -> String {
        let password = self.password.as_ref().map(Secret::expose);
        let mut out = format!("{}://", self.scheme());
        if let Some(user) = &self.username {
            out.extend(utf8_percent_encode(user, USERINFO));
        }
        if let Some(password) = password {
            out.push(':');
            if masked {
                out.push_str("***");
            } else {
                out.extend(utf8_percent_encode(password, USERINFO));
            }
        }
        if self.username.is_some() || password.is_some() {
            out.push('@');
        }
        if self.host.contains(':') {
            out.push('[');
            out.push_str(&self.host);
            out.push(']');
        } else {
            out.push_str(&self.host);
        }
        out.push_str(&format!(":{}/{}", self.port, self.db));
        out
    }
}

impl Default for RedisTarget {
    /// `redis://localhost:6379/0`.
    fn default() -> Self {
        Self {
            tls: false,
            host: DEFAULT_HOST.to_owned(),
            port: DEFAULT_PORT,
            db: 0,
            username: None,
            password: None,
        }
    }
}

impl fmt::Display for RedisTarget {
    /// The URL with the password masked: `redis://user:***@host:6379/0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(true))
    }
}

impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisTarget({self})")
    }
}

impl FromStr for RedisTarget {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Parses a URL; the error is what was expected instead.
fn parse_url(text: &str) -> Result<RedisTarget, String> {
    let text = text.trim();
    if !text.contains("://") {
        // `host:port` would parse as a URL of scheme `host`.
        return Err(format!("{URL_EXPECTED}: the scheme redis:// is missing"));
    }
    let url = url::Url::parse(text).map_err(|e| match e {
        url::ParseError::EmptyHost => format!("{URL_EXPECTED}: the host is missing"),
        url::ParseError::InvalidPort => format!("{URL_EXPECTED}: {PORT_EXPECTED}"),
        url::ParseError::RelativeUrlWithoutBase => {
            format!("{URL_EXPECTED}: the scheme is missing")
        }
        other => format!("{URL_EXPECTED}: {other}"),
    })?;
    let tls = match url.scheme() {
        "redis" => false,
        "rediss" => true,
        "unix" | "redis+unix" => {
            return Err(format!(
                "a redis:// or rediss:// URL (got scheme `{}`: Unix sockets are not supported)",
                url.scheme()
            ));
        }
        other => {
            return Err(format!(
                "a redis:// or rediss:// URL (got scheme `{other}`)"
            ));
        }
    };
    if url.query().is_some() {
        return Err(format!(
            "{URL_EXPECTED} without a query string (each option has its own setting)"
        ));
    }
    if url.fragment().is_some() {
        return Err(format!("{URL_EXPECTED} without a '#' fragment"));
    }
    let host = match url.host() {
        None => return Err(format!("{URL_EXPECTED}: the host is missing")),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        Some(url::Host::Domain(domain)) => {
            let decoded = percent_decode_str(domain)
                .decode_utf8()
                .map_err(|_| format!("{URL_EXPECTED}: {HOST_EXPECTED}"))?;
            validate_host(&decoded).ok_or_else(|| format!("{URL_EXPECTED}: {HOST_EXPECTED}"))?
        }
    };
    let port = url.port().unwrap_or(DEFAULT_PORT);
    if port == 0 {
        return Err(format!("{URL_EXPECTED}: {PORT_EXPECTED}"));
    }
    let db = match url.path().trim_start_matches('/') {
        "" => 0,
        path => path
            .parse::<u32>()
            .map_err(|_| format!("{URL_EXPECTED}: the path must be {DB_EXPECTED}"))?,
    };
    if url.path().matches('/').count() > 1 {
        return Err(format!("{URL_EXPECTED}: the path must be {DB_EXPECTED}"));
    }
    let username = decode_userinfo(url.username())
        .ok_or_else(|| format!("{URL_EXPECTED}: the user name is not percent-encoded UTF-8"))?;
    let password =
        match url.password() {
            None => None,
            Some(p) => Some(decode_userinfo(p).ok_or_else(|| {
                format!("{URL_EXPECTED}: the password is not percent-encoded UTF-8")
            })?),
        };
    Ok(RedisTarget {
        tls,
        host,
        port,
        db,
        username: Some(username).filter(|u| !u.is_empty()),
        password: password.filter(|p| !p.is_empty()).map(Secret::new),
    })
}

fn decode_userinfo(encoded: &str) -> Option<String> {
    percent_decode_str(encoded)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// A valid host, normalised (IPv6 without brackets), or `None`.
fn validate_host(host: &str) -> Option<String> {
    // Brackets are for IPv6 addresses only.
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    if let Ok(ip) = bare.unwrap_or(host).parse::<Ipv6Addr>() {
        return Some(ip.to_string());
    }
    let ok = bare.is_none()
        && !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    ok.then(|| host.to_owned())
}

/// `text` with whatever could be a password masked, for error messages about a URL that may
/// not even parse: the part between the first `:` of the user info and the last `@` becomes
/// `***`, and so does everything after a `?` or `#` (a `?password=` or redis-rs' `#insecure`).
fn mask_url(text: &str) -> String {
    let (scheme, rest) = match text.find("://") {
        Some(i) => text.split_at(i + 3),
        None => ("", text),
    };
    let rest = match rest.rfind('@') {
        Some(at) => {
            let (userinfo, host) = rest.split_at(at);
            match userinfo.find(':') {
                Some(colon) => format!("{}:***{host}", &userinfo[..colon]),
                None => format!("{userinfo}{host}"),
            }
        }
        None => rest.to_owned(),
    };
    let rest = match rest.find(['?', '#']) {
        Some(i) => format!("{}***", &rest[..=i]),
        None => rest,
    };
    quote_for_humans(&format!("{scheme}{rest}"), QUOTE_MAX_CHARS)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn mask_url_hides_whatever_could_be_a_password() {
        for (input, shown) in [
            ("redis://u:pw@h:1/0", "redis://u:***@h:1/0"),
            ("redis://:pw@h", "redis://:***@h"),
            ("redis://u@h", "redis://u@h"),
            ("redis://h:6379/0", "redis://h:6379/0"),
            ("redis://u:p@w/x@h", "redis://u:***@h"),
            ("u:pw@h:6379", "u:***@h:6379"),
            ("redis://h/0?password=pw", "redis://h/0?***"),
            ("redis://h/0#pw", "redis://h/0#***"),
            ("redis://u:p?w#x@h", "redis://u:***@h"),
        ] {
            assert_eq!(mask_url(input), format!("{shown:?}"), "{input}");
        }
    }

    #[test]
    fn mask_url_escapes_and_shortens() {
        assert_eq!(mask_url("redis://a\nb\"c"), r#""redis://a\nb\"c""#);
        let long = format!("redis://{}", "x".repeat(150));
        assert_eq!(
            mask_url(&long),
            format!("{:?}...", &long[..QUOTE_MAX_CHARS])
        );
    }

    #[test]
    fn hosts_are_names_or_addresses() {
        assert_eq!(validate_host("[::1]").as_deref(), Some("::1"));
        assert_eq!(validate_host("0:0::1").as_deref(), Some("::1"));
        assert_eq!(
            validate_host("redis_1.local").as_deref(),
            Some("redis_1.local")
        );
        for bad in ["", "a b", "a/b", "a@b", "h:6379", "[h]"] {
            assert_eq!(validate_host(bad), None, "{bad}");
        }
    }

    #[test]
    fn parts_build_a_target() {
        let t = RedisTarget::new("cache", 1)
            .unwrap()
            .with_db(2)
            .with_tls(true)
            .with_username("")
            .with_password("");
        assert_eq!(t.connection_url(), "rediss://cache:1/2");
        assert!(RedisTarget::new("cache", 0).is_err());
        assert!(RedisTarget::new("ca che", 1).is_err());
    }
}
