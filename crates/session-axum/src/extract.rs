//! The extractors: [`ResolvedId`] (just the id) and [`LoadedSession`] (the loaded state), on
//! the [`Sessions`] state.

use std::{
    fmt,
    ops::{Deref, DerefMut},
    sync::Arc,
};

use axum::{
    extract::{FromRef, FromRequestParts, OptionalFromRequestParts},
    http::request::Parts,
};
use serde::{Serialize, de::DeserializeOwned};
use session_core::{Error, Session, SessionId, SessionManager};

use crate::{ApiError, IdSources};

type Factory<T> = dyn Fn() -> T + Send + Sync;

/// What the extractors need from the application state: the manager, where ids come from, and
/// optionally how to create a session on first use.
///
/// Use it as the router's state, or put it in your own state and implement
/// `FromRef<YourState>` for `Sessions<T>` (and for [`IdSources`], if you use [`ResolvedId`]).
/// Cheap to clone.
///
/// ```
/// use std::sync::Arc;
/// use axum::http::HeaderName;
/// use session_axum::{IdSources, Sessions};
/// use session_core::SessionManager;
/// use session_memory::MemoryStore;
///
/// let manager: SessionManager<Vec<String>> = SessionManager::new(Arc::new(MemoryStore::new()));
/// let sessions = Sessions::new(manager)
///     .id_sources(IdSources::empty().header(HeaderName::from_static("x-cart")))
///     .create_with(Vec::new);
/// assert!(sessions.creates_on_first_use());
/// ```
pub struct Sessions<T> {
    manager: SessionManager<T>,
    sources: IdSources,
    factory: Option<Arc<Factory<T>>>,
}

impl<T> Clone for Sessions<T> {
    fn clone(&self) -> Self {
        Self {
            manager: self.manager.clone(),
            sources: self.sources.clone(),
            factory: self.factory.clone(),
        }
    }
}

impl<T> fmt::Debug for Sessions<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sessions")
            .field("manager", &self.manager)
            .field("sources", &self.sources)
            .field("creates_on_first_use", &self.factory.is_some())
            .finish()
    }
}

impl<T> Sessions<T> {
    /// The extractors' state on `manager`, with the default [`IdSources`] and no factory (a
    /// [`LoadedSession`] of a missing session is then 404).
    pub fn new(manager: SessionManager<T>) -> Self {
        Self {
            manager,
            sources: IdSources::default(),
            factory: None,
        }
    }

    /// Where ids are looked for.
    #[must_use]
    pub fn id_sources(mut self, sources: IdSources) -> Self {
        self.sources = sources;
        self
    }

    /// Creates a missing session from `factory` when a [`LoadedSession`] asks for it, instead
    /// of answering 404.
    #[must_use]
    pub fn create_with(mut self, factory: impl Fn() -> T + Send + Sync + 'static) -> Self {
        self.factory = Some(Arc::new(factory));
        self
    }

    /// The manager.
    pub fn manager(&self) -> &SessionManager<T> {
        &self.manager
    }

    /// Where ids are looked for.
    pub fn sources(&self) -> &IdSources {
        &self.sources
    }

    /// Whether a missing session is created on first use.
    pub fn creates_on_first_use(&self) -> bool {
        self.factory.is_some()
    }
}

impl<T> FromRef<Sessions<T>> for IdSources {
    fn from_ref(sessions: &Sessions<T>) -> Self {
        sessions.sources.clone()
    }
}

impl<T> FromRef<Sessions<T>> for SessionManager<T> {
    fn from_ref(sessions: &Sessions<T>) -> Self {
        sessions.manager.clone()
    }
}

/// The session id a request names, found through the state's [`IdSources`]; nothing is
/// loaded. Rejects with 400 JSON (`missing_id`, `invalid_id`).
///
/// Needs `IdSources: FromRef<S>` (given when the state is a [`Sessions<T>`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedId(pub SessionId);

impl<S> FromRequestParts<S> for ResolvedId
where
    IdSources: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        IdSources::from_ref(state).resolve(parts).await.map(Self)
    }
}

impl Deref for ResolvedId {
    type Target = SessionId;
    fn deref(&self) -> &SessionId {
        &self.0
    }
}

/// The session a request names, loaded: derefs (mutably) to `T`, and [`save`](Self::save)
/// writes it back only if nobody wrote it since it was loaded.
///
/// As an extractor it needs `Sessions<T>: FromRef<S>`, and rejects with JSON:
/// 400 (`missing_id`, `invalid_id`), 404 `not_found` when the session does not exist and the
/// [`Sessions`] have no factory ([`Sessions::create_with`]), 503/500 when the store fails.
/// With a factory, a missing session is created (race-free: two requests creating the same id
/// end up with one session), and [`is_new`](Self::is_new) says so.
///
/// `Option<LoadedSession<T>>` never creates: it is `None` when the request names no session or
/// the session does not exist, and still rejects an invalid id.
///
/// ```
/// use axum::Json;
/// use session_axum::{ApiError, LoadedSession};
///
/// async fn add_item(
///     mut cart: LoadedSession<Vec<String>>,
///     Json(item): Json<String>,
/// ) -> Result<Json<Vec<String>>, ApiError> {
///     cart.push(item);
///     cart.save().await?; // 409 `conflict` if another request saved it first
///     Ok(Json(cart.to_vec()))
/// }
/// ```
pub struct LoadedSession<T> {
    session: Session<T>,
    manager: SessionManager<T>,
    created: bool,
}

impl<T> LoadedSession<T>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// Loads session `id` through `sessions` (creating it when a factory is set), as the
    /// extractor does. Useful when the id comes from somewhere the extractors do not look.
    pub async fn load(sessions: &Sessions<T>, id: &SessionId) -> Result<Self, ApiError> {
        let manager = sessions.manager.clone();
        if let Some(session) = manager.get(id).await? {
            return Ok(Self {
                session,
                manager,
                created: false,
            });
        }
        let Some(factory) = sessions.factory.clone() else {
            return Err(Error::NotFound { id: id.clone() }.into());
        };
        let session = manager.get_or_create(id, move || factory()).await?;
        // A racing request may have created it first: either way it is new at version 1.
        let created = session.version() == 1;
        Ok(Self {
            session,
            manager,
            created,
        })
    }

    /// Writes the state back if nobody wrote the session since it was loaded (or last saved
    /// through this handle); the handle then holds the new version, so it can be saved again.
    ///
    /// Errors: 409 `conflict` when somebody else wrote first (nothing is written: reload and
    /// reapply, or use [`SessionManager::modify`]), 413 `too_large`, 503 `unavailable` ...
    pub async fn save(&mut self) -> Result<(), ApiError> {
        self.manager
            .save(&mut self.session)
            .await
            .map_err(Into::into)
    }

    /// Deletes the session. `true` if it still existed.
    pub async fn delete(self) -> Result<bool, ApiError> {
        self.manager
            .delete(self.session.id())
            .await
            .map_err(Into::into)
    }
}

impl<T> LoadedSession<T> {
    /// The session's id.
    pub fn id(&self) -> &SessionId {
        self.session.id()
    }

    /// The version the state was loaded (or last saved) at.
    pub fn version(&self) -> u64 {
        self.session.version()
    }

    /// Whether the session was just created through the factory (a request racing to create
    /// the same id may see `true` as well: both got the one new session).
    pub fn is_new(&self) -> bool {
        self.created
    }

    /// The session: state, version, TTL and meta.
    pub fn session(&self) -> &Session<T> {
        &self.session
    }

    /// The manager it was loaded through.
    pub fn manager(&self) -> &SessionManager<T> {
        &self.manager
    }

    /// The session, without the handle.
    pub fn into_session(self) -> Session<T> {
        self.session
    }
}

impl<T> Deref for LoadedSession<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.session
    }
}

impl<T> DerefMut for LoadedSession<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.session
    }
}

impl<T: fmt::Debug> fmt::Debug for LoadedSession<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedSession")
            .field("session", &self.session)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

impl<S, T> FromRequestParts<S> for LoadedSession<T>
where
    Sessions<T>: FromRef<S>,
    S: Send + Sync,
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let sessions = Sessions::<T>::from_ref(state);
        let id = sessions.sources.resolve(parts).await?;
        Self::load(&sessions, &id).await
    }
}

impl<S, T> OptionalFromRequestParts<S> for LoadedSession<T>
where
    Sessions<T>: FromRef<S>,
    S: Send + Sync,
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        let sessions = Sessions::<T>::from_ref(state);
        let id = match sessions.sources.resolve(parts).await {
            Ok(id) => id,
            Err(e) if e.kind() == "missing_id" => return Ok(None),
            Err(e) => return Err(e),
        };
        let manager = sessions.manager.clone();
        Ok(manager.get(&id).await?.map(|session| Self {
            session,
            manager,
            created: false,
        }))
    }
}
