//! Minting session ids: [`SessionCookie`] and the [`mint_session_cookie`] middleware, which
//! gives a request that carries no valid session id a fresh random one, and the client a
//! cookie that holds it.

use std::{borrow::Cow, fmt::Write as _, time::Duration};

use axum::{
    extract::{Request, State},
    http::{HeaderValue, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use session_core::SessionId;

use crate::{ApiError, DEFAULT_COOKIE};

/// The `SameSite` attribute of the session cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SameSite {
    /// Sent on same-site requests and top-level navigations (the default).
    #[default]
    Lax,
    /// Sent on same-site requests only.
    Strict,
    /// Sent on cross-site requests too (browsers then require `Secure`).
    None,
}

impl SameSite {
    fn as_str(self) -> &'static str {
        match self {
            Self::Lax => "Lax",
            Self::Strict => "Strict",
            Self::None => "None",
        }
    }
}

/// How the session cookie is set: its name (default [`DEFAULT_COOKIE`], which
/// [`IdSources::default`](crate::IdSources::default) reads), and attributes `HttpOnly` (always:
/// scripts never see the id), `Secure` (on unless [`insecure_for_local_http`]), `SameSite`
/// (default `Lax`), `Path` (default `/`) and `Max-Age` (default none: the browser session).
///
/// [`insecure_for_local_http`]: Self::insecure_for_local_http
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCookie {
    name: Cow<'static, str>,
    secure: bool,
    same_site: SameSite,
    path: Cow<'static, str>,
    max_age: Option<Duration>,
}

impl Default for SessionCookie {
    fn default() -> Self {
        Self::new(DEFAULT_COOKIE)
    }
}

impl SessionCookie {
    /// A cookie called `name` (a cookie token: letters, digits and `!#$%&'*+-.^_`|~`; other
    /// characters are dropped), `HttpOnly; Secure; SameSite=Lax; Path=/`.
    pub fn new(name: impl Into<Cow<'static, str>>) -> Self {
        let name: Cow<'static, str> = name.into();
        let name = if name.bytes().all(is_token_byte) && !name.is_empty() {
            name
        } else {
            let cleaned: String = name
                .chars()
                .filter(|c| c.is_ascii() && is_token_byte(*c as u8))
                .collect();
            Cow::Owned(if cleaned.is_empty() {
                DEFAULT_COOKIE.to_owned()
            } else {
                cleaned
            })
        };
        Self {
            name,
            secure: true,
            same_site: SameSite::Lax,
            path: Cow::Borrowed("/"),
            max_age: None,
        }
    }

    /// Leaves out `Secure`, so that a browser keeps the cookie over plain `http://` (a
    /// development server on localhost). Never in production: the id would travel in clear.
    #[must_use]
    pub fn insecure_for_local_http(mut self) -> Self {
        self.secure = false;
        self
    }

    /// The `SameSite` attribute.
    #[must_use]
    pub fn same_site(mut self, same_site: SameSite) -> Self {
        self.same_site = same_site;
        self
    }

    /// The `Path` attribute (default `/`). Characters a cookie attribute cannot hold (`;`,
    /// controls) are dropped.
    #[must_use]
    pub fn path(mut self, path: impl Into<Cow<'static, str>>) -> Self {
        let path: String = path
            .into()
            .chars()
            .filter(|c| *c != ';' && !c.is_control())
            .collect();
        self.path = Cow::Owned(if path.is_empty() {
            "/".to_owned()
        } else {
            path
        });
        self
    }

    /// `Max-Age`: how long the browser keeps the cookie (match the session TTL). Default:
    /// none, the cookie lasts the browser session.
    #[must_use]
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = Some(max_age);
        self
    }

    /// The cookie's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `Set-Cookie` value that hands out `id`.
    pub fn set_cookie_value(&self, id: &SessionId) -> String {
        let mut value = format!("{}={}; HttpOnly", self.name, id.as_str());
        if self.secure {
            value.push_str("; Secure");
        }
        let _ = write!(value, "; SameSite={}", self.same_site.as_str());
        let _ = write!(value, "; Path={}", self.path);
        if let Some(age) = self.max_age {
            let _ = write!(value, "; Max-Age={}", age.as_secs());
        }
        value
    }
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Middleware: a request whose session cookie is missing, or holds no valid session id, gets
/// a new id from [`SessionId::random`] (128 bits from the OS's generator), set as that cookie
/// in the request (so the extractors find it) and handed to the client with `Set-Cookie`.
/// A request with a valid id passes untouched. Ids from clients are never trusted further
/// than that: the handler still creates or loads the session by the id as usual.
///
/// ```
/// use std::sync::Arc;
/// use axum::{Router, middleware, routing::get};
/// use session_axum::{LoadedSession, SessionCookie, Sessions, mint_session_cookie};
/// use session_core::SessionManager;
/// use session_memory::MemoryStore;
///
/// async fn visits(mut s: LoadedSession<u32>) -> Result<String, session_axum::ApiError> {
///     *s += 1;
///     s.save().await?;
///     Ok(s.to_string())
/// }
///
/// let manager = SessionManager::<u32>::new(Arc::new(MemoryStore::new()));
/// let app: Router = Router::new()
///     .route("/visits", get(visits))
///     .with_state(Sessions::new(manager).create_with(|| 0))
///     .layer(middleware::from_fn_with_state(SessionCookie::default(), mint_session_cookie));
/// ```
pub async fn mint_session_cookie(
    State(cookie): State<SessionCookie>,
    mut request: Request,
    next: Next,
) -> Response {
    let presented = crate::source::cookie_value(request.headers(), cookie.name());
    if presented.is_some_and(|v| SessionId::new(v).is_ok()) {
        return next.run(request).await;
    }
    let id = match SessionId::random() {
        Ok(id) => id,
        Err(e) => {
            tracing::error!(component = "session", error = %e, "cannot mint a session id");
            return ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "no session id can be made right now",
            )
            .into_response();
        }
    };
    replace_cookie(request.headers_mut(), cookie.name(), &id);
    let mut response = next.run(request).await;
    if let Ok(value) = HeaderValue::from_str(&cookie.set_cookie_value(&id)) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// Rewrites the request's `Cookie` headers with `name` holding `id` (and no other value).
fn replace_cookie(headers: &mut axum::http::HeaderMap, name: &str, id: &SessionId) {
    let mut pairs: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .map(|pair| String::from_utf8_lossy(pair).trim().to_owned())
        .filter(|pair| {
            !pair.is_empty()
                && pair
                    .split_once('=')
                    .is_none_or(|(key, _)| key.trim() != name)
        })
        .collect();
    pairs.push(format!("{name}={}", id.as_str()));
    headers.remove(header::COOKIE);
    if let Ok(value) = HeaderValue::from_str(&pairs.join("; ")) {
        headers.insert(header::COOKIE, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_http_only_secure_and_lax_by_default() {
        let id = SessionId::new("abc").unwrap();
        assert_eq!(
            SessionCookie::default().set_cookie_value(&id),
            "session_id=abc; HttpOnly; Secure; SameSite=Lax; Path=/"
        );
        let dev = SessionCookie::new("conv")
            .insecure_for_local_http()
            .same_site(SameSite::Strict)
            .path("/app;evil")
            .max_age(Duration::from_secs(3600));
        assert_eq!(
            dev.set_cookie_value(&id),
            "conv=abc; HttpOnly; SameSite=Strict; Path=/appevil; Max-Age=3600"
        );
        assert_eq!(SessionCookie::new("bad name;").name(), "badname");
    }

    #[test]
    fn replacing_the_cookie_keeps_the_others() {
        let mut headers = axum::http::HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; session_id=bad id"),
        );
        headers.append(header::COOKIE, HeaderValue::from_static("b=2"));
        replace_cookie(&mut headers, "session_id", &SessionId::new("new").unwrap());
        assert_eq!(headers.get_all(header::COOKIE).iter().count(), 1);
        assert_eq!(headers[header::COOKIE], "a=1; b=2; session_id=new");
    }
}
