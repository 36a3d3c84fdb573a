//! The Redis server from `REDIS_URL` and its parts (`REDIS_HOST`, `REDIS_PORT`, `REDIS_DB`,
//! `REDIS_USERNAME`, `REDIS_PASSWORD`, `REDIS_TLS`), part by part and layer by layer.
//!
//! A URL is one more source of each part, in the layer it is set in:
//!
//! - a part set in a **later** layer than the URL overrides that part of it (`REDIS_HOST` in
//!   the environment beats the host of `redis.url` in `production.toml`);
//! - a part set in an **earlier** layer is overridden by the URL, like any setting of an
//!   earlier layer (and, overridden, it is not validated); but the user and the password also
//!   **fill** a URL that has none, from any layer;
//! - a part set in the **same** layer as the URL must agree with it: a different host, port,
//!   database, user, password or scheme is a configuration error naming both settings. A URL
//!   always says its host, port (6379 when it names none), database (0) and TLS (the scheme).

use std::cmp::Ordering;

use session_core::{Error, Result, quote_for_humans};

use crate::{
    DEFAULT_HOST, DEFAULT_PORT, RedisTarget,
    keys::{self, Key},
    sources::{Given, Resolved},
    values::{self, opt},
};

/// How many characters of a value an error message quotes.
const QUOTE_MAX_CHARS: usize = 100;

/// The target, and the setting (as spelled) that asked for TLS when it is on.
pub(crate) struct Chosen {
    pub(crate) target: RedisTarget,
    pub(crate) tls_asked_by: Option<&'static str>,
}

/// The Redis target the layers describe: the URL with the parts applied over it, or the
/// parts alone.
pub(crate) fn redis_target(r: &Resolved) -> Result<Chosen> {
    match r.get(keys::REDIS_URL).filter(|g| !g.text.is_empty()) {
        Some(url) => from_url(r, url),
        None => from_parts(r),
    }
}

/// Without a URL: each part from its own highest layer, the defaults for the rest.
fn from_parts(r: &Resolved) -> Result<Chosen> {
    let host = r.get(keys::REDIS_HOST);
    let port = opt(r, keys::REDIS_PORT, values::port)?.unwrap_or(DEFAULT_PORT);
    let db = opt(r, keys::REDIS_DB, values::db)?.unwrap_or(0);
    let tls = opt(r, keys::REDIS_TLS, values::boolean)?.unwrap_or(false);
    let username = optional_text(r, keys::REDIS_USERNAME);
    let password = optional_text(r, keys::REDIS_PASSWORD);
    let target = build(host, host.map_or(DEFAULT_HOST, |g| g.text.as_str()), port)?
        .with_db(db)
        .with_tls(tls)
        .with_username(username.unwrap_or_default())
        .with_password(password.unwrap_or_default());
    let tls_asked_by = tls
        .then(|| r.get(keys::REDIS_TLS).map(|g| g.spelled))
        .flatten();
    Ok(Chosen {
        target,
        tls_asked_by,
    })
}

/// Where a part stands against the URL.
enum Rank<'a> {
    /// Not set, or set in an earlier layer: the URL's (a user or password still fills a URL
    /// without one).
    Earlier(Option<&'a Given>),
    /// Set in the URL's layer: it must agree with the URL.
    Same(&'a Given),
    /// Set in a later layer: it overrides the URL's.
    Later(&'a Given),
}

fn rank<'a>(r: &'a Resolved, key: Key, url: &Given) -> Rank<'a> {
    match r.get(key) {
        None => Rank::Earlier(None),
        Some(part) => match part.layer.cmp(&url.layer) {
            Ordering::Less => Rank::Earlier(Some(part)),
            Ordering::Equal => Rank::Same(part),
            Ordering::Greater => Rank::Later(part),
        },
    }
}

/// The URL with the parts of the same and later layers applied.
fn from_url(r: &Resolved, url: &Given) -> Result<Chosen> {
    let base = RedisTarget::parse(&url.text).map_err(|e| url.rekey(e))?;

    let (host, host_given) = match rank(r, keys::REDIS_HOST, url) {
        Rank::Earlier(_) => (base.host().to_owned(), None),
        Rank::Later(part) => (part.text.clone(), Some(part)),
        Rank::Same(part) => {
            // Validated and normalised (an IPv6 address loses its brackets) as a host alone
            // would be, then compared as host names are: without regard to case.
            let normal = build(Some(part), &part.text, DEFAULT_PORT)?;
            if !normal.host().eq_ignore_ascii_case(base.host()) {
                return Err(contradiction(
                    part,
                    quote(&part.text),
                    url,
                    &base,
                    format!("the host {}", quote(base.host())),
                ));
            }
            (base.host().to_owned(), None)
        }
    };

    let port = match rank(r, keys::REDIS_PORT, url) {
        Rank::Earlier(_) => base.port(),
        Rank::Later(part) => values::port(part)?,
        Rank::Same(part) => {
            let port = values::port(part)?;
            if port != base.port() {
                return Err(contradiction(
                    part,
                    quote(&part.text),
                    url,
                    &base,
                    format!("the port {}", base.port()),
                ));
            }
            port
        }
    };

    let db = match rank(r, keys::REDIS_DB, url) {
        Rank::Earlier(_) => base.db(),
        Rank::Later(part) => values::db(part)?,
        Rank::Same(part) => {
            let db = values::db(part)?;
            if db != base.db() {
                return Err(contradiction(
                    part,
                    quote(&part.text),
                    url,
                    &base,
                    format!("the database {}", base.db()),
                ));
            }
            db
        }
    };

    let (tls, tls_asked_by) = match rank(r, keys::REDIS_TLS, url) {
        Rank::Earlier(_) => (base.tls(), url.spelled),
        Rank::Later(part) => (values::boolean(part)?, part.spelled),
        Rank::Same(part) => {
            let tls = values::boolean(part)?;
            if tls != base.tls() {
                let says = if base.tls() {
                    "TLS (rediss://)"
                } else {
                    "no TLS (redis://)"
                };
                return Err(contradiction(
                    part,
                    quote(&part.text),
                    url,
                    &base,
                    says.to_owned(),
                ));
            }
            (tls, url.spelled)
        }
    };

    let username = credential(
        r,
        keys::REDIS_USERNAME,
        url,
        &base,
        base.username(),
        |given| quote(&given.text),
        |name| format!("the user {}", quote(name)),
    )?;
    let password = credential(
        r,
        keys::REDIS_PASSWORD,
        url,
        &base,
        base.password().map(|p| p.expose()),
        |_| "***".to_owned(),
        |_| "another password".to_owned(),
    )?;

    let target = build(host_given, &host, port)?
        .with_db(db)
        .with_tls(tls)
        .with_username(username.unwrap_or_default())
        .with_password(password.unwrap_or_default());
    Ok(Chosen {
        tls_asked_by: tls.then_some(tls_asked_by),
        target,
    })
}

/// The user or the password: a later layer's overrides the URL's (an empty value clears
/// it); the URL's own wins over an earlier layer's and must agree with its own layer's; the
/// setting fills a URL without one from any layer. `shown` is the setting's value as an
/// error may show it, `says` what the URL holds instead, in words.
pub(crate) fn credential(
    r: &Resolved,
    key: Key,
    url: &Given,
    base: &RedisTarget,
    in_url: Option<&str>,
    shown: impl Fn(&Given) -> String,
    says: impl Fn(&str) -> String,
) -> Result<Option<String>> {
    let in_url = in_url.map(str::to_owned);
    Ok(match rank(r, key, url) {
        Rank::Later(part) => Some(part.text.clone()),
        Rank::Earlier(None) => in_url,
        Rank::Earlier(Some(part)) => in_url.or_else(|| Some(part.text.clone())),
        Rank::Same(part) => match in_url {
            Some(own) if !part.text.is_empty() && part.text != own => {
                return Err(contradiction(part, shown(part), url, base, says(&own)));
            }
            Some(own) => Some(own),
            None => Some(part.text.clone()),
        },
    })
}

/// A target on `host:port`; an invalid host is reported against the setting it came from.
fn build(given: Option<&Given>, host: &str, port: u16) -> Result<RedisTarget> {
    RedisTarget::new(host, port).map_err(|e| match given {
        Some(given) => given.rekey(e),
        None => e,
    })
}

/// A setting that is set and not empty, as text.
fn optional_text(r: &Resolved, key: Key) -> Option<String> {
    r.get(key)
        .filter(|g| !g.text.is_empty())
        .map(|g| g.text.clone())
}

fn quote(text: &str) -> String {
    quote_for_humans(text, QUOTE_MAX_CHARS)
}

/// The error for a part that says otherwise than the URL of its own layer: it names both
/// settings and the layer, and shows the URL with its password masked. `shown` is the part's
/// value as it may be shown, `says` what the URL says instead.
fn contradiction(
    part: &Given,
    shown: String,
    url: &Given,
    base: &RedisTarget,
    says: String,
) -> Error {
    Error::config(
        part.spelled,
        shown,
        format!(
            "what {url_key} = {base} says, {says}, since both are set in {origin}: remove one \
             of them or make them agree (set in a later layer, {part_key} would override that \
             part of {url_key})",
            url_key = url.spelled,
            part_key = part.spelled,
            origin = part.origin,
        ),
    )
}
