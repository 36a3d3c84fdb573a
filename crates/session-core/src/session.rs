//! [`Session<T>`]: a loaded state with its version, TTL and meta.

use std::{
    ops::{Deref, DerefMut},
    time::Duration,
};

use crate::{Basis, Meta, SessionId, WriteToken};

/// A session's state as loaded (or just written), with the version it was read at.
///
/// Derefs to `T`. Hand it back to [`SessionManager::save`](crate::SessionManager::save) to
/// write it only if nobody else wrote the session since.
#[derive(Debug, Clone, PartialEq)]
pub struct Session<T> {
    pub(crate) id: SessionId,
    pub(crate) value: T,
    pub(crate) basis: Basis,
    pub(crate) ttl: Option<Duration>,
    pub(crate) meta: Meta,
}

impl<T> Session<T> {
    /// The session's id.
    pub fn id(&self) -> &SessionId {
        &self.id
    }

    /// The version this state was read or written at.
    pub fn version(&self) -> u64 {
        self.basis.version()
    }

    /// The write token of the content this state was read or written as (`None`: a record
    /// from an older layout). [`SessionManager::save`](crate::SessionManager::save) writes only
    /// if the stored session still carries it.
    pub fn token(&self) -> Option<WriteToken> {
        self.basis.token()
    }

    /// The time left before expiry, as of the read or write (`None`: no expiry).
    pub fn ttl(&self) -> Option<Duration> {
        self.ttl
    }

    /// Timestamps, encoded size and summary, as of the read or write.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// The state.
    pub fn value(&self) -> &T {
        &self.value
    }

    /// The state, mutably (save it with [`SessionManager::save`](crate::SessionManager::save)).
    pub fn value_mut(&mut self) -> &mut T {
        &mut self.value
    }

    /// The state, without the session around it.
    pub fn into_value(self) -> T {
        self.value
    }
}

impl<T> Deref for Session<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> DerefMut for Session<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}
