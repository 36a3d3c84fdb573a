//! [`IdSources`]: where in a request the session id is found.

use std::{borrow::Cow, fmt, sync::Arc};

use axum::{
    extract::{FromRequestParts, RawPathParams, rejection::RawPathParamsRejection},
    http::{HeaderName, StatusCode, header, request::Parts},
};
use session_core::SessionId;

use crate::ApiError;

/// The header [`IdSources::default`] reads: `x-session-id`.
pub const DEFAULT_HEADER: &str = "x-session-id";
/// The path parameter [`IdSources::default`] reads: `{id}`.
pub const DEFAULT_PATH_PARAM: &str = "id";
/// The cookie [`IdSources::default`] reads: `session_id`.
pub const DEFAULT_COOKIE: &str = "session_id";

/// One place a session id may come from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdSource {
    /// A path parameter of the matched route (`/sessions/{id}` -> `Path("id")`),
    /// percent-decoded.
    Path(Cow<'static, str>),
    /// A request header (such as `x-session-id`).
    Header(HeaderName),
    /// A cookie of the `Cookie` header.
    Cookie(Cow<'static, str>),
}

impl fmt::Display for IdSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Path(name) => write!(f, "path parameter `{name}`"),
            Self::Header(name) => write!(f, "header `{name}`"),
            Self::Cookie(name) => write!(f, "cookie `{name}`"),
        }
    }
}

/// Where the session id of a request is looked for, in order.
///
/// The first source the request *has* decides: if its value is not a valid [`SessionId`] the
/// request is refused (400 `invalid_id`) rather than served from a later source, so a client
/// that names a session explicitly never lands in another one by accident. A request with none
/// of the sources gets 400 `missing_id`.
///
/// The default order is the path parameter `id`, the header `x-session-id`, the cookie
/// `session_id`. Cheap to clone.
///
/// ```
/// use axum::http::HeaderName;
/// use session_axum::{IdSource, IdSources};
///
/// let sources = IdSources::empty()
///     .header(HeaderName::from_static("x-conversation"))
///     .cookie("conv");
/// assert_eq!(sources.iter().count(), 2);
/// assert!(matches!(IdSources::default().iter().next(), Some(IdSource::Path(_))));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdSources {
    sources: Arc<[IdSource]>,
}

impl Default for IdSources {
    fn default() -> Self {
        Self::empty()
            .path(DEFAULT_PATH_PARAM)
            .header(HeaderName::from_static(DEFAULT_HEADER))
            .cookie(DEFAULT_COOKIE)
    }
}

impl FromIterator<IdSource> for IdSources {
    fn from_iter<I: IntoIterator<Item = IdSource>>(iter: I) -> Self {
        Self {
            sources: iter.into_iter().collect(),
        }
    }
}

impl IdSources {
    /// No source at all (add some with [`path`](Self::path), [`header`](Self::header),
    /// [`cookie`](Self::cookie)).
    pub fn empty() -> Self {
        Self {
            sources: Arc::from(Vec::new()),
        }
    }

    /// Only this source.
    pub fn only(source: IdSource) -> Self {
        Self::from_iter([source])
    }

    /// Adds a source, looked at after the ones already there.
    #[must_use]
    pub fn with(self, source: IdSource) -> Self {
        self.sources.iter().cloned().chain([source]).collect()
    }

    /// Adds a path parameter.
    #[must_use]
    pub fn path(self, name: impl Into<Cow<'static, str>>) -> Self {
        self.with(IdSource::Path(name.into()))
    }

    /// Adds a header (`HeaderName::from_static("x-conversation")`; header names are
    /// lowercase).
    #[must_use]
    pub fn header(self, name: HeaderName) -> Self {
        self.with(IdSource::Header(name))
    }

    /// Adds a cookie.
    #[must_use]
    pub fn cookie(self, name: impl Into<Cow<'static, str>>) -> Self {
        self.with(IdSource::Cookie(name.into()))
    }

    /// The sources, in the order they are looked at.
    pub fn iter(&self) -> impl Iterator<Item = &IdSource> {
        self.sources.iter()
    }

    /// Finds the session id of a request: the first source present decides.
    ///
    /// Errors (as [`ApiError`], so a handler can return them): 400 `invalid_id` when the value
    /// found is not a valid id (quoted safely in the message), 400 `missing_id` when no source
    /// is present.
    pub async fn resolve(&self, parts: &mut Parts) -> Result<SessionId, ApiError> {
        for source in self.iter() {
            if let Some(raw) = find(source, parts).await? {
                return SessionId::new(&*raw).map_err(|e| {
                    let e = ApiError::from(e);
                    let message = format!("{} (from the {source})", e.message());
                    ApiError::new(e.status(), "invalid_id", message)
                });
            }
        }
        Err(self.missing())
    }

    fn missing(&self) -> ApiError {
        let expected = match self.sources.len() {
            0 => "no source is configured".to_owned(),
            _ => {
                let names: Vec<String> = self.iter().map(ToString::to_string).collect();
                format!("expected the {}", names.join(" or the "))
            }
        };
        ApiError::bad_request(
            "missing_id",
            format!("the request names no session: {expected}"),
        )
    }
}

/// The raw value a source holds in this request, if it holds one.
async fn find(source: &IdSource, parts: &mut Parts) -> Result<Option<String>, ApiError> {
    match source {
        IdSource::Path(name) => match RawPathParams::from_request_parts(parts, &()).await {
            Ok(params) => Ok(params
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.to_owned())),
            // The route has no parameters: this source is simply absent.
            Err(RawPathParamsRejection::MissingPathParams(_)) => Ok(None),
            Err(e) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_id",
                e.body_text(),
            )),
        },
        IdSource::Header(name) => Ok(parts
            .headers
            .get(name)
            // Bytes that are not text still get a (safely quoted) invalid-id error.
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())),
        IdSource::Cookie(name) => Ok(cookie(parts, name)),
    }
}

/// The value of cookie `name` in the request's `Cookie` headers (RFC 6265 `name=value` pairs
/// separated by `;`; a value may be double-quoted).
fn cookie(parts: &Parts, name: &str) -> Option<String> {
    cookie_value(&parts.headers, name)
}

/// The value of cookie `name` in `headers`' `Cookie` headers (see [`cookie`]).
pub(crate) fn cookie_value(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .filter_map(|pair| {
            let pair = String::from_utf8_lossy(pair);
            let (key, value) = pair.split_once('=')?;
            (key.trim() == name).then(|| {
                let value = value.trim();
                value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(value)
                    .to_owned()
            })
        })
        .next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn parts(cookies: &[&str]) -> Parts {
        let mut req = Request::builder().uri("/");
        for c in cookies {
            req = req.header(header::COOKIE, *c);
        }
        req.body(()).unwrap().into_parts().0
    }

    #[test]
    fn cookies_are_found_by_exact_name_in_any_cookie_header() {
        let p = parts(&["a=1; session_idx=no; session_id=user-7; b=2"]);
        assert_eq!(cookie(&p, "session_id").as_deref(), Some("user-7"));
        let p = parts(&["a=1", "session_id=\"quoted\""]);
        assert_eq!(cookie(&p, "session_id").as_deref(), Some("quoted"));
        let p = parts(&["a=1;;=;b"]);
        assert_eq!(cookie(&p, "session_id"), None);
    }

    #[tokio::test]
    async fn missing_id_lists_every_source_it_looked_at() {
        let mut p = parts(&[]);
        let e = IdSources::default().resolve(&mut p).await.unwrap_err();
        assert_eq!(e.kind(), "missing_id");
        assert_eq!(
            e.message(),
            "the request names no session: expected the path parameter `id` or the header \
             `x-session-id` or the cookie `session_id`"
        );
    }
}
